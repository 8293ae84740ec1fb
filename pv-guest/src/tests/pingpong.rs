//! `pingpong`: event ping-pong between two domains over a channel the hypervisor
//! pre-connected (system configuration `[[channel]]`, device tree `/hypervisor`
//! `hyp,channels` / `hyp,channel-peers`). Run it in both domains of the channel; only
//! when named on the command line.
//!
//! The first pre-connected channel is used. `EVTCHNOP_status` on the local port must say
//! interdomain, to the domain the device tree names, and gives the remote port: the
//! initiator is the end with the lower port number; on a tie, the end with the lower
//! domain id (its own id comes from `EVTCHNOP_status` of a port allocated unbound for
//! `DOMID_SELF`, see [`own_domain_id`]). The initiator sends and waits
//! for the answer, [`DEFAULT_ROUNDS`] times (`pingpong=N` on the command line changes
//! that); the responder waits for each event and sends one back. Every wait is bounded
//! (a lost event fails the test instead of hanging it), every arrival must raise the
//! port's count by exactly one, and after the last round the responder may receive
//! nothing more within [`QUIET_US`] (the initiator listens longer, see
//! [`quiet_after_last_round`]).

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use super::{Context, Failure, Scenario, Test, TestResult};
use crate::abi::errno::Errno;
use crate::abi::event_channel_op::{Port, STAT_INTERDOMAIN, STAT_UNBOUND};
use crate::abi::guest::{evtchn_alloc_unbound, evtchn_close, evtchn_send, evtchn_status};
use crate::abi::shared::DOMID_SELF;
use crate::arch::cpu;
use crate::irq::{self, Wait};
use crate::{events, platform, println};

/// The scenario.
pub const SCENARIO: Scenario = Scenario::named(
    "pingpong",
    &[
        Test::new("channel_present", channel_present),
        Test::new("round_trips", round_trips),
    ],
);

/// Round trips unless `pingpong=N` says otherwise.
const DEFAULT_ROUNDS: u32 = 5000;
/// How long one event may take to arrive, in microseconds of counter time.
const EVENT_TIMEOUT_US: u64 = 2_000_000;
/// The same for the first event, which also waits for the other domain to boot.
const FIRST_EVENT_TIMEOUT_US: u64 = 10_000_000;
/// How long an end listens for an event that must not come after the last round.
const QUIET_US: u64 = 10_000;
/// How long the initiator listens after the last round: past the responder's
/// [`QUIET_US`], with a margin.
const LINGER_US: u64 = 50_000;

/// This end's port (0 = `channel_present` did not succeed).
static PORT: AtomicU32 = AtomicU32::new(0);
/// This end starts each round.
static INITIATOR: AtomicBool = AtomicBool::new(false);
/// Run after every round when set (`victim` rechecks its memory there).
static ROUND_HOOK: AtomicUsize = AtomicUsize::new(0);

/// Makes [`round_trips`] call `hook` after every round (and fail with its failure).
pub(super) fn set_round_hook(hook: Option<fn() -> TestResult>) {
    ROUND_HOOK.store(hook.map_or(0, |hook| hook as usize), Ordering::Release);
}

fn after_round() -> TestResult {
    match ROUND_HOOK.load(Ordering::Acquire) {
        0 => Ok(()),
        hook => {
            // SAFETY: only `set_round_hook` stores here, and it stores a `fn() -> TestResult`.
            let hook = unsafe { core::mem::transmute::<usize, fn() -> TestResult>(hook) };
            hook()
        }
    }
}

pub(super) fn channel_present(context: &Context) -> TestResult {
    let Some(channel) = context.boot.channel(0) else {
        return Err(Failure::new(
            format_args!("a pre-connected channel in /hypervisor hyp,channels"),
            format_args!(
                "{} bytes of hyp,channels, {} of hyp,channel-peers",
                context.boot.channels.len(),
                context.boot.channel_peers.len()
            ),
        ));
    };
    let peer = core::str::from_utf8(channel.peer).unwrap_or("?");
    platform::ensure(&context.boot)?;
    let port = Port(channel.port);
    let status = evtchn_status(port).map_err(|errno| {
        Failure::new(
            format_args!("EVTCHNOP_status({}) -> Ok", port.0),
            format_args!("-{errno:?}"),
        )
    })?;
    let (remote_domain, remote_port) = (status.u[0] & 0xffff, status.u[1]);
    if status.status != STAT_INTERDOMAIN || remote_domain != channel.remote_domain {
        return Err(Failure::new(
            format_args!(
                "port {} interdomain ({STAT_INTERDOMAIN}) to domain {} ({peer})",
                port.0, channel.remote_domain
            ),
            format_args!(
                "status {} u {:#x} {:#x}",
                status.status, status.u[0], status.u[1]
            ),
        ));
    }
    // Only a tie needs our own id; it is shown in any case.
    let own = own_domain_id();
    let initiator = match own {
        _ if channel.port != remote_port => channel.port < remote_port,
        Ok(own) => own < channel.remote_domain,
        Err(errno) => {
            return Err(Failure::new(
                format_args!(
                    "our domain id (to break the port tie {}/{remote_port}) from EVTCHNOP_status of an alloc_unbound(DOMID_SELF) port",
                    port.0
                ),
                format_args!("-{errno:?}"),
            ))
        }
    };
    println!(
        "pingpong: domain {} port {} to domain {} ({peer}) port {remote_port}, {} channel(s); {}",
        OwnId(own.ok()),
        port.0,
        channel.remote_domain,
        context.boot.channel_count(),
        if initiator { "initiator" } else { "responder" }
    );
    events::unmask(port).map_err(|errno| {
        Failure::new(
            format_args!("EVTCHNOP_unmask({}) -> Ok", port.0),
            format_args!("-{errno:?}"),
        )
    })?;
    INITIATOR.store(initiator, Ordering::Relaxed);
    PORT.store(port.0, Ordering::Relaxed);
    Ok(())
}

/// This domain's id, learnt the way Xen allows: `EVTCHNOP_alloc_unbound(remote
/// DOMID_SELF)` records the caller's real id as the remote domain, which
/// `EVTCHNOP_status` of the new (unbound) port reports; the port is closed again.
pub(super) fn own_domain_id() -> Result<u32, Errno> {
    let probe = evtchn_alloc_unbound(DOMID_SELF)?;
    let status = evtchn_status(probe);
    let _ = evtchn_close(probe);
    let status = status?;
    if status.status != STAT_UNBOUND {
        return Err(Errno::EINVAL);
    }
    Ok(status.u[0] & 0xffff)
}

/// Our domain id for printing: `?` when unknown.
struct OwnId(Option<u32>);

impl core::fmt::Display for OwnId {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Some(id) => write!(formatter, "{id}"),
            None => formatter.write_str("?"),
        }
    }
}

/// The rounds asked for on the command line (`pingpong=N`), else [`DEFAULT_ROUNDS`].
fn rounds(context: &Context) -> Result<u32, Failure> {
    match context.parameter("pingpong") {
        None => Ok(DEFAULT_ROUNDS),
        Some(text) => match text.parse::<u32>() {
            Ok(rounds) if rounds > 0 => Ok(rounds),
            _ => Err(Failure::new(
                format_args!("pingpong=N with N a positive integer"),
                format_args!("pingpong={text}"),
            )),
        },
    }
}

/// Waits until `port` has been delivered `wanted` times in all; fails if it does not
/// happen within `timeout_us` or if it was delivered more often.
fn wait_for(port: Port, wanted: u32, timeout_us: u64, round: u32) -> TestResult {
    let arrived = irq::wait_until(irq::ticks(timeout_us), Wait::Sleep, || {
        events::count(port) >= wanted
    });
    let got = events::count(port);
    if !arrived || got != wanted {
        return Err(Failure::new(
            format_args!(
                "round {round}: event {wanted} on port {} within {} ms",
                port.0,
                timeout_us / 1000
            ),
            format_args!(
                "{got} events so far, pending {}, masked {}, {} upcalls",
                events::is_pending(port),
                events::is_masked(port),
                events::upcalls(0)
            ),
        ));
    }
    Ok(())
}

fn send(port: Port, round: u32) -> TestResult {
    evtchn_send(port).map_err(|errno| {
        Failure::new(
            format_args!("round {round}: EVTCHNOP_send({}) -> Ok", port.0),
            format_args!("-{errno:?}"),
        )
    })
}

/// After the last round: the responder listens [`QUIET_US`] and must receive nothing.
/// The initiator listens [`LINGER_US`], longer, so that it cannot end (and its domain
/// die) while the responder listens; in that time the responder's domain usually
/// shuts down, and our hypervisor notifies the peer ports of a dying domain (Xen does
/// not), so one more event is accepted there if the port has become unbound.
fn quiet_after_last_round(port: Port, rounds: u32, initiator: bool) -> TestResult {
    let listen = if initiator { LINGER_US } else { QUIET_US };
    let start = cpu::counter();
    // Wake at the first event after the last round (to find when it came), then listen
    // out the rest of the window.
    irq::wait_until(irq::ticks(listen), Wait::Sleep, || {
        events::count(port) != rounds
    });
    let first_extra = cpu::counter() - start;
    let rest = irq::ticks(listen).saturating_sub(first_extra);
    irq::wait_until(rest, Wait::Sleep, || false);
    let after = events::count(port);
    if after == rounds {
        return Ok(());
    }
    let status = evtchn_status(port).map(|status| status.status);
    if initiator && after == rounds + 1 && status == Ok(STAT_UNBOUND) {
        println!(
            "pingpong: one event {} us after the last round with the port now unbound: the responder's domain died and the hypervisor notified us (Xen would not)",
            irq::nanoseconds(first_extra) / 1000
        );
        return Ok(());
    }
    Err(Failure::new(
        format_args!(
            "exactly {rounds} events on port {}, none in the {} ms after the last round",
            port.0,
            listen / 1000
        ),
        format_args!(
            "{after}, the first extra one {} us after the last round; EVTCHNOP_status now {status:?}",
            irq::nanoseconds(first_extra) / 1000
        ),
    ))
}

pub(super) fn round_trips(context: &Context) -> TestResult {
    let port = Port(PORT.load(Ordering::Relaxed));
    if port.0 == 0 {
        return Err(Failure::new(
            format_args!("the channel from pingpong::channel_present"),
            format_args!("none"),
        ));
    }
    let rounds = rounds(context)?;
    let initiator = INITIATOR.load(Ordering::Relaxed);
    // Counts are absolute: nothing but this scenario uses the port, and nothing can be
    // delivered on it before `channel_present` unmasked it.
    let (mut minimum, mut maximum, mut total, mut measured) = (u64::MAX, 0u64, 0u64, 0u64);
    let start = cpu::counter();
    for round in 1..=rounds {
        let timeout = if round == 1 {
            FIRST_EVENT_TIMEOUT_US
        } else {
            EVENT_TIMEOUT_US
        };
        if initiator {
            let sent_at = cpu::counter();
            send(port, round)?;
            wait_for(port, round, timeout, round)?;
            // The first round also waits for the peer to boot: not a round trip time.
            let (last, arrived_at) = events::last_delivery();
            if round > 1 && last == port {
                let trip = arrived_at.saturating_sub(sent_at);
                minimum = minimum.min(trip);
                maximum = maximum.max(trip);
                total += trip;
                measured += 1;
            }
        } else {
            wait_for(port, round, timeout, round)?;
            send(port, round)?;
        }
        after_round()?;
    }
    let elapsed = cpu::counter() - start;
    quiet_after_last_round(port, rounds, initiator)?;
    if initiator {
        let average = total / measured.max(1);
        println!(
            "pingpong: {rounds} round trips as initiator; round trip (send -> answer at the vector, rounds 2..): min {} avg {} max {} ticks = min {} avg {} max {} ns",
            minimum,
            average,
            maximum,
            irq::nanoseconds(minimum),
            irq::nanoseconds(average),
            irq::nanoseconds(maximum)
        );
    } else {
        println!(
            "pingpong: {rounds} events answered as responder in {} us",
            irq::nanoseconds(elapsed) / 1000
        );
    }
    Ok(())
}
