//! `ipi`: a second vCPU and software-generated interrupts (needs 2 vCPUs).
//!
//! vCPU 1 is started with PSCI `CPU_ON` (MPIDR from the device tree's second cpu node,
//! entry `secondary_entry`, context its boot block). vCPU 0 sends SGI 1 (GICv2:
//! GICD_SGIR, GICv3: ICC_SGI1R_EL1); vCPU 1's handler counts it and answers SGI 2,
//! which vCPU 0 counts: [`ROUND_TRIPS`] round trips, none lost. Then vCPU 1 turns
//! itself off with `CPU_OFF` and `AFFINITY_INFO` reports it off.
//!
//! With one vCPU the scenario prints `ipi: needs 2 vCPUs, found 1` and has no tests.
//! Only when named on the command line.

use super::{Context, Failure, Scenario, Test, TestResult};
use crate::abi::psci;
use crate::arch::cpu;
use crate::irq::{self, Wait};
use crate::{gic, platform, println, smp};

/// The scenario.
pub const SCENARIO: Scenario = Scenario {
    needs_cpus: 2,
    ..Scenario::named(
        "ipi",
        &[
            Test::new("cpu_on", cpu_on),
            Test::new("sgi_round_trips", sgi_round_trips),
            Test::new("cpu_off", cpu_off),
        ],
    )
};

/// Round trips in `sgi_round_trips`.
const ROUND_TRIPS: u32 = 1000;
/// How long a vCPU may take to come up or go down, in microseconds.
const START_TIMEOUT_US: u64 = 10_000_000;
/// How long one round trip may take, in microseconds.
const ROUND_TRIP_TIMEOUT_US: u64 = 100_000;

/// Starts vCPU 1 and waits until it reports itself online (also used by `evtchn-ipi`).
pub fn cpu_on(context: &Context) -> TestResult {
    platform::ensure(&context.boot)?;
    let result = smp::start(1);
    if result != i64::from(psci::SUCCESS) {
        return Err(Failure::new(
            format_args!("CPU_ON({:#x}) -> SUCCESS", smp::mpidr(1)),
            format_args!("{result}"),
        ));
    }
    irq::wait_until(irq::ticks(START_TIMEOUT_US), Wait::Spin, || {
        smp::is_online(1)
    });
    if !smp::is_online(1) || smp::setup_error(1) != 0 {
        return Err(Failure::new(
            format_args!("vCPU 1 online with its GIC interface and vcpu_info set up"),
            format_args!(
                "online {}, setup stage {} (1 entered, 2 GIC done, 4 online), error {} (1 GIC, 2 events, 3 SGIs), AFFINITY_INFO {}, earlier CPU_OFF returned {}",
                smp::is_online(1),
                smp::progress(1),
                smp::setup_error(1),
                smp::affinity_info(1),
                smp::cpu_off_result(1)
            ),
        ));
    }
    let (bad, last) = smp::bad_contexts();
    if bad != 0 {
        println!(
            "ipi::cpu_on: {bad} secondary starts so far had x0 = {last:#x}, not the CPU_ON context (found by MPIDR instead)"
        );
    }
    let affinity = smp::affinity_info(1);
    if affinity != i64::from(psci::AFFINITY_ON) {
        return Err(Failure::new(
            format_args!("AFFINITY_INFO(vCPU 1) -> ON (0)"),
            format_args!("{affinity}"),
        ));
    }
    Ok(())
}

fn sgi_round_trips(_context: &Context) -> TestResult {
    if !smp::is_online(1) {
        return Err(Failure::new(
            format_args!("vCPU 1 online (ipi::cpu_on)"),
            format_args!("it offline"),
        ));
    }
    let (sent_before, back_before) = (smp::sgis(1), smp::sgis(0));
    let start = cpu::counter();
    for round in 1..=ROUND_TRIPS {
        if let Err(error) = gic::send_sgi(1, smp::mpidr(1), smp::SGI_PING) {
            return Err(Failure::new(
                format_args!("an SGI sent"),
                format_args!("{error}"),
            ));
        }
        let back = irq::wait_until(irq::ticks(ROUND_TRIP_TIMEOUT_US), Wait::Sleep, || {
            smp::sgis(0) - back_before >= round
        });
        if !back {
            return Err(Failure::new(
                format_args!("round trip {round} completed"),
                format_args!(
                    "vCPU 1 got {} SGIs, vCPU 0 got {} answers",
                    smp::sgis(1) - sent_before,
                    smp::sgis(0) - back_before
                ),
            ));
        }
    }
    let elapsed = cpu::counter() - start;
    let (received, answered) = (smp::sgis(1) - sent_before, smp::sgis(0) - back_before);
    println!(
        "ipi::sgi_round_trips: {ROUND_TRIPS} round trips, {} ns each on average",
        irq::nanoseconds(elapsed) / u64::from(ROUND_TRIPS)
    );
    if received != ROUND_TRIPS || answered != ROUND_TRIPS {
        return Err(Failure::new(
            format_args!("{ROUND_TRIPS} SGIs each way"),
            format_args!("{received} to vCPU 1, {answered} back"),
        ));
    }
    Ok(())
}

/// Asks vCPU 1 to `CPU_OFF` and waits until `AFFINITY_INFO` reports it off (also used
/// by `evtchn-ipi`).
pub fn cpu_off(_context: &Context) -> TestResult {
    smp::stop(1);
    let off = irq::wait_until(irq::ticks(START_TIMEOUT_US), Wait::Spin, || {
        smp::affinity_info(1) == i64::from(psci::AFFINITY_OFF)
    });
    if !off {
        return Err(Failure::new(
            format_args!("AFFINITY_INFO(vCPU 1) -> OFF (1) after CPU_OFF"),
            format_args!(
                "{} (CPU_OFF returned {}: {} means it did not)",
                smp::affinity_info(1),
                smp::cpu_off_result(1),
                smp::NEVER_RETURNED
            ),
        ));
    }
    Ok(())
}
