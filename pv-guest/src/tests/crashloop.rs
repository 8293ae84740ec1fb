//! `crashloop` and `crash-peer`: a domain the hypervisor restarts after every crash
//! (`on_crash = "restart"`), and a peer that watches it over their pre-connected channel.
//! Only run when named.
//!
//! `crashloop` reads its incarnation from `/hypervisor` `hyp,restarts` (0 on the first
//! boot), checks that its channel to the peer is connected again, and crashes, a
//! different way each time: a store to an IPA with no stage-2 mapping (the hypervisor
//! ends it), an undefined instruction (its own exception handler finds it unhandled and
//! calls SCHEDOP_shutdown(SHUTDOWN_crash), as Linux does on a panic), SCHEDOP_shutdown
//! with SHUTDOWN_crash directly, and, every [`WATCHDOG_EVERY`]th incarnation, a watchdog
//! (SCHEDOP_watchdog) it never pets, so the hypervisor shuts it down with
//! SHUTDOWN_watchdog. Its report never ends; the hypervisor's log tells the story.
//!
//! `crash-peer` fills memory with a pattern, signals the crasher that it is set up (the
//! first incarnation waits for that before crashing), then waits on its channel: each crash of its
//! peer closes the channel (the hypervisor signals the peer's end), each restart binds it
//! again (another event). When the port stays unbound for [`GONE_AFTER_US`], the peer is
//! gone for good: it checks it saw the peer come and go, and that its own memory is intact.

use core::sync::atomic::{AtomicU32, Ordering};

use super::{Context, Failure, Scenario, Test, TestResult};
use crate::abi::event_channel_op::{Port, STAT_INTERDOMAIN, STAT_UNBOUND};
use crate::abi::guest::{evtchn_send, evtchn_status, sched_shutdown, sched_watchdog};
use crate::abi::sched_op::ShutdownReason;
use crate::irq::{self, Wait};
use crate::{events, platform, println};

/// The restarting domain.
pub const SCENARIO: Scenario = Scenario::named(
    "crashloop",
    &[
        Test::new("channel_reconnected", channel_reconnected),
        Test::new("crash", crash),
    ],
);

/// The peer that keeps running.
pub const PEER_SCENARIO: Scenario = Scenario {
    name: "crash-peer",
    in_default_set: false,
    introduce: None,
    needs_cpus: 0,
    available: None,
    tests: &[
        Test {
            name: "peer_comes_and_goes",
            run: peer_comes_and_goes,
        },
        Test {
            name: "memory_intact",
            run: memory_intact,
        },
    ],
};

/// Every this many incarnations (the last of each run of this many) the watchdog ends it:
/// a watchdog's shortest timeout is one second.
pub const WATCHDOG_EVERY: u32 = 20;
/// Not an IPA of RAM or of any device we are given (as in `crash`).
const UNMAPPED_IPA: usize = 0x1000_0000;
/// How long the first incarnation waits for the peer to be ready.
const PEER_READY_US: u64 = 10_000_000;
/// The peer counts as gone once its end stays unbound this long.
const GONE_AFTER_US: u64 = 3_000_000;
/// How long the peer waits in all.
const PEER_TIMEOUT_US: u64 = 120_000_000;
/// Words of the peer's memory pattern (256 KiB).
const PATTERN_WORDS: usize = 32 * 1024;

/// How this incarnation crashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Stage2Fault,
    UndefinedInstruction,
    ShutdownCrash,
    Watchdog,
}

fn kind(incarnation: u32) -> Kind {
    if incarnation % WATCHDOG_EVERY == WATCHDOG_EVERY - 1 {
        return Kind::Watchdog;
    }
    match incarnation % 3 {
        0 => Kind::Stage2Fault,
        1 => Kind::UndefinedInstruction,
        _ => Kind::ShutdownCrash,
    }
}

fn channel_reconnected(context: &Context) -> TestResult {
    let incarnation = context.boot.restarts.unwrap_or(0);
    println!(
        "crashloop: incarnation {incarnation}, crashing by {:?}",
        kind(incarnation)
    );
    let Some(channel) = context.boot.channel(0) else {
        return Ok(());
    };
    let port = Port(channel.port);
    let status = evtchn_status(port).map(|status| status.status);
    if status != Ok(STAT_INTERDOMAIN) {
        return Err(Failure::new(
            format_args!("port {} interdomain again", channel.port),
            format_args!("status {status:?}"),
        ));
    }
    if incarnation == 0 {
        // The first crash waits until the peer has set itself up (it signals then), so
        // that every teardown finds the same memory in use elsewhere.
        platform::ensure(&context.boot)?;
        events::unmask(port).map_err(|errno| {
            Failure::new(
                format_args!("EVTCHNOP_unmask({}) -> Ok", port.0),
                format_args!("-{errno:?}"),
            )
        })?;
        if !irq::wait_until(irq::ticks(PEER_READY_US), Wait::Sleep, || {
            events::count(port) > 0
        }) {
            return Err(Failure::new(
                format_args!("the peer's ready event on port {}", port.0),
                format_args!("none within {} s", PEER_READY_US / 1_000_000),
            ));
        }
    }
    Ok(())
}

fn crash(context: &Context) -> TestResult {
    let incarnation = context.boot.restarts.unwrap_or(0);
    match kind(incarnation) {
        Kind::Stage2Fault => {
            // SAFETY: not memory safety in the Rust sense: the address is no Rust object,
            // and the hypervisor ends the domain at this store.
            unsafe { core::ptr::write_volatile(UNMAPPED_IPA as *mut u32, incarnation) };
        }
        Kind::UndefinedInstruction => {
            // SAFETY: raises an undefined-instruction exception, which our handler
            // reports and turns into SCHEDOP_shutdown(SHUTDOWN_crash).
            unsafe { core::arch::asm!("udf #0", options(nomem, nostack)) };
        }
        Kind::ShutdownCrash => {
            let errno = sched_shutdown(ShutdownReason::Crash);
            return Err(Failure::new(
                format_args!("SCHEDOP_shutdown(SHUTDOWN_crash) not to return"),
                format_args!("{errno:?}"),
            ));
        }
        Kind::Watchdog => return starve_watchdog(),
    }
    Err(Failure::new(
        format_args!("the domain to end at its crash"),
        format_args!("it went on"),
    ))
}

/// Sets up a watchdog the Xen way (a second one created and destroyed, the first
/// re-armed) and never pets it again; the hypervisor must shut the domain down.
fn starve_watchdog() -> TestResult {
    let check = |what: &str, got: Result<u32, crate::abi::errno::Errno>, wanted: u32| {
        if got == Ok(wanted) {
            Ok(())
        } else {
            Err(Failure::new(
                format_args!("SCHEDOP_watchdog {what} -> {wanted}"),
                format_args!("{got:?}"),
            ))
        }
    };
    check("create (1 s)", sched_watchdog(0, 1), 1)?;
    check("create a second (10 s)", sched_watchdog(0, 10), 2)?;
    check("destroy the second", sched_watchdog(2, 0), 0)?;
    check("re-arm the first (1 s)", sched_watchdog(1, 1), 0)?;
    println!("crashloop: watchdog 1 armed for 1 s, not petted");
    irq::wait_until(irq::ticks(10_000_000), Wait::Sleep, || false);
    Err(Failure::new(
        format_args!("the watchdog to end the domain within 1 s"),
        format_args!("still running after 10 s"),
    ))
}

/// Events the peer saw on its channel.
static PEER_EVENTS: AtomicU32 = AtomicU32::new(0);
/// The peer's memory pattern.
static mut PATTERN: [u64; PATTERN_WORDS] = [0; PATTERN_WORDS];

fn pattern_word(index: usize) -> u64 {
    (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed
}

fn peer_comes_and_goes(context: &Context) -> TestResult {
    // SAFETY: only this test and `memory_intact`, one after the other on vCPU 0, use it.
    let pattern = unsafe { &mut *core::ptr::addr_of_mut!(PATTERN) };
    for (index, word) in pattern.iter_mut().enumerate() {
        *word = pattern_word(index);
    }
    let Some(channel) = context.boot.channel(0) else {
        return Err(Failure::new(
            format_args!("a pre-connected channel"),
            format_args!("none in /hypervisor"),
        ));
    };
    platform::ensure(&context.boot)?;
    let port = Port(channel.port);
    events::unmask(port).map_err(|errno| {
        Failure::new(
            format_args!("EVTCHNOP_unmask({}) -> Ok", port.0),
            format_args!("-{errno:?}"),
        )
    })?;
    // Set up: the first incarnation of the peer may crash now.
    evtchn_send(port).map_err(|errno| {
        Failure::new(
            format_args!("EVTCHNOP_send({}) -> Ok", port.0),
            format_args!("-{errno:?}"),
        )
    })?;
    let status = || evtchn_status(port).map(|status| status.status);
    let deadline = irq::ticks(PEER_TIMEOUT_US);
    let start = crate::arch::cpu::counter();
    let mut unbound_since = None;
    let gone = loop {
        let elapsed = crate::arch::cpu::counter().saturating_sub(start);
        if elapsed > deadline {
            break false;
        }
        let before = events::count(port);
        irq::wait_until(irq::ticks(100_000), Wait::Sleep, || {
            events::count(port) != before
        });
        let now = crate::arch::cpu::counter();
        match status() {
            Ok(STAT_UNBOUND) => {
                let since = *unbound_since.get_or_insert(now);
                if now.saturating_sub(since) >= irq::ticks(GONE_AFTER_US) {
                    break true;
                }
            }
            _ => unbound_since = None,
        }
    };
    let seen = events::count(port);
    PEER_EVENTS.store(seen, Ordering::Relaxed);
    println!(
        "crash-peer: {seen} events from the restarting peer; its end now {:?}",
        status()
    );
    if !gone {
        return Err(Failure::new(
            format_args!(
                "the peer's end unbound for good within {} s",
                PEER_TIMEOUT_US / 1_000_000
            ),
            format_args!("status {:?} after {seen} events", status()),
        ));
    }
    // Each crash closes (one event), each restart binds again (another); events coalesce
    // while we are not looking, so only a floor is certain.
    let wanted = context
        .parameter("restarts")
        .and_then(|text| text.parse::<u32>().ok())
        .map_or(1, |restarts| (restarts / 10).max(1));
    if seen < wanted {
        return Err(Failure::new(
            format_args!("at least {wanted} events on port {}", port.0),
            format_args!("{seen}"),
        ));
    }
    Ok(())
}

fn memory_intact(_context: &Context) -> TestResult {
    // SAFETY: see `peer_comes_and_goes`.
    let pattern = unsafe { &*core::ptr::addr_of!(PATTERN) };
    match pattern
        .iter()
        .enumerate()
        .find(|(index, word)| **word != pattern_word(*index))
    {
        None => Ok(()),
        Some((index, word)) => Err(Failure::new(
            format_args!("word {index} = {:#x}", pattern_word(index)),
            format_args!("{word:#x}"),
        )),
    }
}
