//! `bench-pair`: the two-domain micro-benchmarks of Dall et al. (ISCA 2016): VM Switch and
//! I/O Latency Out / In, for two domains that share one physical CPU. Only when named;
//! both domains run it, and `quick` runs a tenth of the rounds.
//!
//! The domain with id 0 plays the host's part ("Dom0": Xen's dom0, or our first domain),
//! the other the guest's ("VM", domain id 1, `peer=N` changes it). Dom0 allocates an
//! unbound port for the VM; the VM binds to it (trying dom0's ports in turn, so no port
//! number has to be passed). Every wait blocks in WFI, so each notification also hands
//! the CPU to the other domain, as an I/O request does when both share a CPU.
//!
//! One-way latencies need the sender's start time at the receiver, and the two domains
//! share no memory (and on Xen the VM cannot print): the sender starts each round
//! exactly at a multiple of [`PERIOD_TICKS`] of the physical counter (CNTPCT_EL0, which
//! both hypervisors let EL1 read and which is the same for every domain), so the
//! receiver's handler-entry time modulo the period is the latency. So dom0 reports
//! `io-out` (VM to dom0) and `vm-switch` (half a round trip of `SCHEDOP_yield` between
//! the two), and the VM reports `io-in` (dom0 to VM).

use super::events::errno_failure;
use super::{Context, Failure, Scenario, Test, TestResult};
use crate::abi::event_channel_op::Port;
use crate::abi::guest::{evtchn_alloc_unbound, evtchn_bind_interdomain, evtchn_send, sched_yield};
use crate::arch::cpu;
use crate::irq::{self, Wait};
use crate::{events, platform, println};
use core::sync::atomic::{AtomicU32, Ordering};

/// The scenario.
pub const SCENARIO: Scenario = Scenario::named(
    "bench-pair",
    &[
        Test::new("channel", channel),
        Test::new("io_out", io_out),
        Test::new("io_in", io_in),
        Test::new("vm_switch", vm_switch),
    ],
);

/// Rounds of each benchmark (a tenth with `quick`).
const ROUNDS: u32 = 2_000;
/// The grid senders start on, in counter ticks: far longer than any latency measured
/// (4096 ticks are 65 536 instructions at QEMU's 62.5 MHz under icount), so a latency
/// never wraps; a measurement of half the period or more fails the test.
const PERIOD_TICKS: u64 = 4096;
/// How long one awaited event may take, in microseconds.
const WAIT_US: u64 = 2_000_000;
/// How long the VM keeps trying to bind, in microseconds (dom0 may boot later).
const BIND_US: u64 = 20_000_000;
/// Ports of dom0 the VM tries.
const MAX_PORT: u32 = 64;

/// This domain's port (0: no channel yet).
static PORT: AtomicU32 = AtomicU32::new(0);
/// Events this domain has taken so far: what the protocol expects, not a count sampled
/// at a phase start, which an early event of the other end would already include.
static RECEIVED: AtomicU32 = AtomicU32::new(0);
/// Whether this is dom0 (1) or the VM (2); 0 before `channel`.
static ROLE: AtomicU32 = AtomicU32::new(0);

const DOM0: u32 = 1;
const VM: u32 = 2;

fn port() -> Result<Port, Failure> {
    match PORT.load(Ordering::Relaxed) {
        0 => Err(Failure::new(
            format_args!("a channel (test channel)"),
            format_args!("none"),
        )),
        port => Ok(Port(port)),
    }
}

/// CNTPCT minus CNTVCT, read so that both fall in the same counter tick.
fn counter_offset() -> u64 {
    loop {
        let before = cpu::counter();
        let physical = cpu::physical_counter();
        if cpu::counter() == before {
            return physical.wrapping_sub(before);
        }
    }
}

/// Spins until the physical counter reaches the next multiple of [`PERIOD_TICKS`].
fn wait_for_grid() {
    let next = (cpu::physical_counter() / PERIOD_TICKS + 1) * PERIOD_TICKS;
    while cpu::physical_counter() < next {}
}

/// Blocks until the next event of the protocol arrives on `port`.
fn next_event(port: Port, round: u32) -> TestResult {
    let count = RECEIVED.load(Ordering::Relaxed) + 1;
    if irq::wait_until(irq::ticks(WAIT_US), Wait::Sleep, || {
        events::count(port) >= count
    }) {
        RECEIVED.store(count, Ordering::Relaxed);
        Ok(())
    } else {
        Err(Failure::new(
            format_args!("event {count} on port {} in round {round}", port.0),
            format_args!("{} events", events::count(port)),
        ))
    }
}

fn send(port: Port) -> TestResult {
    evtchn_send(port)
        .map_err(|errno| errno_failure(format_args!("EVTCHNOP_send({})", port.0), errno))
}

/// Dom0 allocates a port for the VM and waits for its first event; the VM binds to it
/// and sends that event (each benchmark then starts with the receiver's "ready").
fn channel(context: &Context) -> TestResult {
    platform::ensure(&context.boot)?;
    let own = super::pingpong::own_domain_id()
        .map_err(|errno| errno_failure(format_args!("our domain id"), errno))?;
    let peer = context
        .parameter("peer")
        .and_then(|text| text.parse::<u16>().ok())
        .unwrap_or(1);
    if own == 0 {
        ROLE.store(DOM0, Ordering::Relaxed);
        let port = evtchn_alloc_unbound(peer).map_err(|errno| {
            errno_failure(format_args!("EVTCHNOP_alloc_unbound(remote {peer})"), errno)
        })?;
        events::unmask(port)
            .map_err(|errno| errno_failure(format_args!("EVTCHNOP_unmask({})", port.0), errno))?;
        PORT.store(port.0, Ordering::Relaxed);
        if !irq::wait_until(irq::ticks(BIND_US), Wait::Sleep, || {
            events::count(port) >= 1
        }) {
            return Err(Failure::new(
                format_args!("domain {peer} bound to port {} and sent an event", port.0),
                format_args!("nothing"),
            ));
        }
        RECEIVED.store(1, Ordering::Relaxed);
        println!("bench-pair: dom0, port {} bound by domain {peer}", port.0);
        return Ok(());
    }
    ROLE.store(VM, Ordering::Relaxed);
    let deadline = cpu::counter() + irq::ticks(BIND_US);
    let port = loop {
        let bound = (1..MAX_PORT).find_map(|remote| evtchn_bind_interdomain(0, Port(remote)).ok());
        if let Some(port) = bound {
            break port;
        }
        if cpu::counter() > deadline {
            return Err(Failure::new(
                format_args!("an unbound port of domain 0 for us"),
                format_args!("none among ports 1..{MAX_PORT}"),
            ));
        }
        let _ = sched_yield();
    };
    events::unmask(port)
        .map_err(|errno| errno_failure(format_args!("EVTCHNOP_unmask({})", port.0), errno))?;
    PORT.store(port.0, Ordering::Relaxed);
    // Binding sets our port pending (Xen's evtchn_bind_interdomain does, for
    // notifications the unbound port may have missed): take it now and start counting
    // after it, before dom0 can have sent anything.
    cpu::take_pending_interrupts();
    RECEIVED.store(events::count(port), Ordering::Relaxed);
    println!(
        "bench-pair: domain {own}, bound port {} to domain 0",
        port.0
    );
    send(port)
}

/// One direction: once the other end says it is ready, `sender` starts each round on the
/// grid and sends, then waits for the answer; the other end waits, takes the handler-entry time modulo the period, and
/// answers. The receiving end reports `name`.
fn one_way(context: &Context, name: &str, sender: u32) -> TestResult {
    let port = port()?;
    let rounds = super::bench::repetitions(context, ROUNDS);
    if ROLE.load(Ordering::Relaxed) == sender {
        // The receiver's "ready": it has taken everything sent before, so the first
        // round's event cannot merge with an earlier one still pending there.
        next_event(port, 0)?;
        for round in 0..rounds {
            wait_for_grid();
            send(port)?;
            next_event(port, round)?;
        }
        return Ok(());
    }
    let offset = counter_offset();
    send(port)?;
    let mut total = 0u64;
    for round in 0..rounds {
        next_event(port, round)?;
        let (_, entry) = events::last_delivery();
        let latency = entry.wrapping_add(offset) % PERIOD_TICKS;
        if latency >= PERIOD_TICKS / 2 {
            return Err(Failure::new(
                format_args!("{name}: a latency under {} ticks", PERIOD_TICKS / 2),
                format_args!("{latency} ticks in round {round}"),
            ));
        }
        total += latency;
        send(port)?;
    }
    super::bench::report(name, total, rounds.into());
    super::bench::measured(name, total)
}

/// `io-out`: from the VM's `EVTCHNOP_send` to dom0's upcall handler.
fn io_out(context: &Context) -> TestResult {
    one_way(context, "io-out", VM)
}

/// `io-in`: from dom0's `EVTCHNOP_send` to the VM's upcall handler.
fn io_in(context: &Context) -> TestResult {
    one_way(context, "io-in", DOM0)
}

/// `vm-switch`: both domains call `SCHEDOP_yield` in a loop on their shared CPU; each of
/// dom0's yields returns after the VM ran, so half of dom0's round is one switch (with
/// its yield). Dom0 then sends one event to end the VM's loop.
fn vm_switch(context: &Context) -> TestResult {
    let port = port()?;
    let rounds = super::bench::repetitions(context, ROUNDS);
    if ROLE.load(Ordering::Relaxed) == VM {
        let before = RECEIVED.load(Ordering::Relaxed);
        let deadline = cpu::counter() + irq::ticks(BIND_US);
        let mut yields = 0u64;
        while events::count(port) == before {
            let _ = sched_yield();
            cpu::take_pending_interrupts();
            yields += 1;
            if cpu::counter() > deadline {
                return Err(Failure::new(
                    format_args!("dom0's end-of-switching event"),
                    format_args!("nothing after {yields} yields"),
                ));
            }
        }
        println!("bench-pair: {yields} yields");
        // Each of dom0's yields must have let us run once: otherwise its figure timed
        // yields that switched nothing.
        if yields < u64::from(rounds) {
            return Err(Failure::new(
                format_args!("at least {rounds} yields (one per yield of dom0)"),
                format_args!("{yields}"),
            ));
        }
        return Ok(());
    }
    // The VM is still finishing io-in: let it reach its loop first.
    let _ = sched_yield();
    let start = cpu::counter();
    for _ in 0..rounds {
        let _ = sched_yield();
    }
    let ticks = cpu::counter() - start;
    send(port)?;
    super::bench::report("vm-switch", ticks, 2 * u64::from(rounds));
    super::bench::measured("vm-switch", ticks)
}
