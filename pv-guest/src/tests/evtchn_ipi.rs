//! `evtchn-ipi`: event-channel IPIs between vCPUs (needs 2 vCPUs).
//!
//! vCPU 1 is started as in `ipi`. `EVTCHNOP_bind_ipi(vcpu 1)` gives port P1 and
//! `EVTCHNOP_bind_ipi(vcpu 0)` port P0; vCPU 1's upcall answers every P1 with a send on
//! P0. vCPU 0 sends on P1 [`ROUND_TRIPS`] times and waits for each answer; every P1 must
//! have been handled on vCPU 1. Then both ports are closed and vCPU 1 turns itself off.
//! Only when named on the command line.

use super::{ipi, Context, Failure, Scenario, Test, TestResult};
use crate::abi::errno::Errno;
use crate::abi::event_channel_op::{Port, STAT_IPI};
use crate::abi::guest::{evtchn_bind_ipi, evtchn_close, evtchn_send, evtchn_status};
use crate::arch::cpu;
use crate::irq::{self, Wait};
use crate::{events, println, smp};

/// The scenario.
pub const SCENARIO: Scenario = Scenario {
    needs_cpus: 2,
    ..Scenario::named(
        "evtchn-ipi",
        &[
            Test::new("cpu_on", ipi::cpu_on),
            Test::new("bind_ipi_round_trips", bind_ipi_round_trips),
            Test::new("cpu_off", ipi::cpu_off),
        ],
    )
};

/// Round trips.
const ROUND_TRIPS: u32 = 1000;
/// How long one round trip may take, in microseconds.
const ROUND_TRIP_TIMEOUT_US: u64 = 100_000;

fn bind(vcpu: u32) -> Result<Port, Failure> {
    let port = evtchn_bind_ipi(vcpu).map_err(|errno: Errno| {
        Failure::new(
            format_args!("EVTCHNOP_bind_ipi(vcpu {vcpu}) -> Ok"),
            format_args!("-{errno:?}"),
        )
    })?;
    let status = evtchn_status(port).map_err(|errno| {
        Failure::new(
            format_args!("EVTCHNOP_status({}) -> Ok", port.0),
            format_args!("-{errno:?}"),
        )
    })?;
    if status.status != STAT_IPI || status.vcpu != vcpu {
        return Err(Failure::new(
            format_args!("port {} status IPI ({STAT_IPI}) on vcpu {vcpu}", port.0),
            format_args!("status {} vcpu {}", status.status, status.vcpu),
        ));
    }
    events::unmask(port).map_err(|errno| {
        Failure::new(
            format_args!("EVTCHNOP_unmask({}) -> Ok", port.0),
            format_args!("-{errno:?}"),
        )
    })?;
    Ok(port)
}

fn bind_ipi_round_trips(_context: &Context) -> TestResult {
    if !smp::is_online(1) {
        return Err(Failure::new(
            format_args!("vCPU 1 online (evtchn-ipi::cpu_on)"),
            format_args!("it offline"),
        ));
    }
    let to_one = bind(1)?;
    let to_zero = bind(0)?;
    println!(
        "evtchn-ipi: port {} -> vCPU 1, port {} -> vCPU 0",
        to_one.0, to_zero.0
    );
    let errors_before = events::set_reply(0, to_one, to_zero);
    let (one_before, zero_before) = (events::count(to_one), events::count(to_zero));
    let mut result = Ok(());
    let start = cpu::counter();
    for round in 1..=ROUND_TRIPS {
        if let Err(errno) = evtchn_send(to_one) {
            result = Err(Failure::new(
                format_args!("EVTCHNOP_send({}) -> Ok", to_one.0),
                format_args!("-{errno:?}"),
            ));
            break;
        }
        let back = irq::wait_until(irq::ticks(ROUND_TRIP_TIMEOUT_US), Wait::Sleep, || {
            events::count(to_zero) - zero_before >= round
        });
        if !back || events::handled_by(to_one) != 1 {
            result = Err(Failure::new(
                format_args!("round trip {round}: port {} handled on vCPU 1", to_one.0),
                format_args!(
                    "{} deliveries to vCPU 1 (last on vCPU {}), {} answers, {} upcalls on vCPU 1",
                    events::count(to_one) - one_before,
                    events::handled_by(to_one),
                    events::count(to_zero) - zero_before,
                    events::upcalls(1)
                ),
            ));
            break;
        }
    }
    let elapsed = cpu::counter() - start;
    let reply_errors = events::set_reply(0, Port(0), Port(0)) - errors_before;
    for port in [to_one, to_zero] {
        let _ = evtchn_close(port);
    }
    result?;
    let (there, back) = (
        events::count(to_one) - one_before,
        events::count(to_zero) - zero_before,
    );
    println!(
        "evtchn-ipi::bind_ipi_round_trips: {ROUND_TRIPS} round trips, {} ns each on average",
        irq::nanoseconds(elapsed) / u64::from(ROUND_TRIPS)
    );
    if there != ROUND_TRIPS || back != ROUND_TRIPS || reply_errors != 0 {
        return Err(Failure::new(
            format_args!("{ROUND_TRIPS} events each way"),
            format_args!("{there} to vCPU 1, {back} back, {reply_errors} failed replies"),
        ));
    }
    Ok(())
}
