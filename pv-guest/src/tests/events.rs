//! `events`: Xen event channels (2-level ABI) on a loopback channel.
//!
//! `EVTCHNOP_alloc_unbound(remote DOMID_SELF)` gives port A, `EVTCHNOP_bind_interdomain
//! (DOMID_SELF, A)` port B: two ends of one channel in the same domain. Sending on one
//! end raises the upcall (the `/hypervisor` PPI) and the walk delivers the other end.
//! Only when named on the command line.

use core::sync::atomic::{AtomicU32, Ordering};

use super::{Context, Failure, Scenario, Test, TestResult};
use crate::abi::errno::Errno;
use crate::abi::event_channel_op::{Port, STAT_CLOSED, STAT_INTERDOMAIN, STAT_UNBOUND};
use crate::abi::guest::{
    evtchn_alloc_unbound, evtchn_bind_interdomain, evtchn_close, evtchn_send, evtchn_status,
};
use crate::abi::shared::DOMID_SELF;
use crate::arch::cpu;
use crate::irq::{self, Wait};
use crate::{events, platform, println};

/// The scenario.
pub const SCENARIO: Scenario = Scenario::named(
    "events",
    &[
        Test::new("loopback", loopback),
        Test::new("round_trips", round_trips),
        Test::new("mask_suppresses_upcall", mask_suppresses_upcall),
        Test::new("status_interdomain", status_interdomain),
        Test::new("close_unbinds_peer", close_unbinds_peer),
        Test::new("send_on_closed_port", send_on_closed_port),
    ],
);

/// Round trips in `round_trips`.
const ROUND_TRIPS: usize = 1000;
/// How long a delivery may take, in microseconds (generous: QEMU without icount).
const DELIVERY_TIMEOUT_US: u64 = 100_000;
/// How long `mask_suppresses_upcall` waits for an upcall that must not come.
const QUIET_US: u64 = 10_000;

/// The loopback channel's two ports (0 = none yet).
static PORT_A: AtomicU32 = AtomicU32::new(0);
static PORT_B: AtomicU32 = AtomicU32::new(0);

/// A failure for a call `what` that returned `errno`.
pub(super) fn errno_failure(what: core::fmt::Arguments<'_>, errno: Errno) -> Failure {
    Failure::new(format_args!("{what} -> Ok"), format_args!("-{errno:?}"))
}

/// The channel made by `loopback`.
fn channel() -> Result<(Port, Port), Failure> {
    let (a, b) = (
        PORT_A.load(Ordering::Relaxed),
        PORT_B.load(Ordering::Relaxed),
    );
    if a == 0 || b == 0 {
        return Err(Failure::new(
            format_args!("the loopback channel from events::loopback"),
            format_args!("none"),
        ));
    }
    Ok((Port(a), Port(b)))
}

/// Sends on `from` with IRQs open around the hypercall, and waits until `to` is
/// delivered once more. Returns the send-to-handler latency in counter ticks (CNTVCT
/// before the `hvc` to CNTVCT at the IRQ vector).
pub fn send_and_wait(from: Port, to: Port) -> Result<u64, Failure> {
    let before = events::count(to);
    let start = cpu::counter();
    cpu::enable_interrupts();
    let sent = evtchn_send(from);
    cpu::disable_interrupts();
    sent.map_err(|errno| errno_failure(format_args!("EVTCHNOP_send({})", from.0), errno))?;
    let arrived = irq::wait_until(irq::ticks(DELIVERY_TIMEOUT_US), Wait::Spin, || {
        events::count(to) != before
    });
    let after = events::count(to);
    if !arrived || after != before + 1 {
        return Err(Failure::new(
            format_args!(
                "port {} delivered once after a send on port {}",
                to.0, from.0
            ),
            format_args!(
                "{} deliveries, {} upcalls, pending {}, masked {}",
                after - before,
                events::upcalls(0),
                events::is_pending(to),
                events::is_masked(to)
            ),
        ));
    }
    let (port, time) = events::last_delivery();
    Ok(if port == to {
        time.saturating_sub(start)
    } else {
        0
    })
}

/// Opens a loopback channel (`EVTCHNOP_alloc_unbound(remote DOMID_SELF)` = A,
/// `EVTCHNOP_bind_interdomain(DOMID_SELF, A)` = B) with both ports unmasked; returns
/// (A, B). Interrupts and events must be set up (`platform::ensure`).
pub fn open_loopback() -> Result<(Port, Port), Failure> {
    let a = evtchn_alloc_unbound(DOMID_SELF).map_err(|errno| {
        errno_failure(
            format_args!("EVTCHNOP_alloc_unbound(remote DOMID_SELF)"),
            errno,
        )
    })?;
    let b = evtchn_bind_interdomain(DOMID_SELF, a).map_err(|errno| {
        errno_failure(
            format_args!("EVTCHNOP_bind_interdomain(DOMID_SELF, {})", a.0),
            errno,
        )
    })?;
    for port in [a, b] {
        events::unmask(port)
            .map_err(|errno| errno_failure(format_args!("EVTCHNOP_unmask({})", port.0), errno))?;
    }
    Ok((a, b))
}

fn loopback(context: &Context) -> TestResult {
    platform::ensure(&context.boot)?;
    let (a, b) = open_loopback()?;
    println!("events::loopback: ports {} and {}", a.0, b.0);
    PORT_A.store(a.0, Ordering::Relaxed);
    PORT_B.store(b.0, Ordering::Relaxed);
    send_and_wait(b, a)?;
    send_and_wait(a, b)?;
    Ok(())
}

fn round_trips(_context: &Context) -> TestResult {
    let (a, b) = channel()?;
    let (count_a, count_b) = (events::count(a), events::count(b));
    let (mut minimum, mut maximum, mut total, mut measured) = (u64::MAX, 0u64, 0u64, 0u64);
    for _ in 0..ROUND_TRIPS {
        for (from, to) in [(b, a), (a, b)] {
            let latency = send_and_wait(from, to)?;
            if latency != 0 {
                minimum = minimum.min(latency);
                maximum = maximum.max(latency);
                total += latency;
                measured += 1;
            }
        }
    }
    let (delivered_a, delivered_b) = (events::count(a) - count_a, events::count(b) - count_b);
    if delivered_a as usize != ROUND_TRIPS || delivered_b as usize != ROUND_TRIPS {
        return Err(Failure::new(
            format_args!("{ROUND_TRIPS} deliveries on each end"),
            format_args!("{delivered_a} and {delivered_b}"),
        ));
    }
    let average = total / measured.max(1);
    println!(
        "events::round_trips: {} sends, send -> handler: min {} avg {} max {} ticks = min {} avg {} max {} ns",
        2 * ROUND_TRIPS,
        minimum,
        average,
        maximum,
        irq::nanoseconds(minimum),
        irq::nanoseconds(average),
        irq::nanoseconds(maximum)
    );
    Ok(())
}

fn mask_suppresses_upcall(_context: &Context) -> TestResult {
    let (a, b) = channel()?;
    events::mask(a);
    let before = events::count(a);
    evtchn_send(b).map_err(|errno| errno_failure(format_args!("EVTCHNOP_send({})", b.0), errno))?;
    irq::wait_until(irq::ticks(QUIET_US), Wait::Spin, || {
        events::count(a) != before
    });
    if events::count(a) != before || !events::is_pending(a) {
        return Err(Failure::new(
            format_args!("masked port {} pending and not delivered", a.0),
            format_args!(
                "{} deliveries, pending {}",
                events::count(a) - before,
                events::is_pending(a)
            ),
        ));
    }
    let used_hypercall = events::unmask(a)
        .map_err(|errno| errno_failure(format_args!("EVTCHNOP_unmask({})", a.0), errno))?;
    if !used_hypercall {
        return Err(Failure::new(
            format_args!("unmask of a pending port to call EVTCHNOP_unmask"),
            format_args!("the port no longer pending"),
        ));
    }
    let arrived = irq::wait_until(irq::ticks(DELIVERY_TIMEOUT_US), Wait::Spin, || {
        events::count(a) != before
    });
    if !arrived || events::count(a) != before + 1 || events::is_masked(a) {
        return Err(Failure::new(
            format_args!("one delivery after EVTCHNOP_unmask, port unmasked"),
            format_args!(
                "{} deliveries, masked {}",
                events::count(a) - before,
                events::is_masked(a)
            ),
        ));
    }
    Ok(())
}

fn expect_status(port: Port, status: u32, peer: Option<Port>) -> TestResult {
    let got = evtchn_status(port)
        .map_err(|errno| errno_failure(format_args!("EVTCHNOP_status({})", port.0), errno))?;
    let peer_ok = peer.is_none_or(|peer| got.u[1] == peer.0);
    if got.status != status || !peer_ok {
        return Err(Failure::new(
            format_args!(
                "port {} status {status} (remote port {:?})",
                port.0,
                peer.map(|peer| peer.0)
            ),
            format_args!(
                "status {} vcpu {} u {:#x} {:#x}",
                got.status, got.vcpu, got.u[0], got.u[1]
            ),
        ));
    }
    Ok(())
}

fn status_interdomain(_context: &Context) -> TestResult {
    let (a, b) = channel()?;
    expect_status(a, STAT_INTERDOMAIN, Some(b))?;
    expect_status(b, STAT_INTERDOMAIN, Some(a))
}

fn close_unbinds_peer(_context: &Context) -> TestResult {
    let (a, b) = channel()?;
    evtchn_close(a)
        .map_err(|errno| errno_failure(format_args!("EVTCHNOP_close({})", a.0), errno))?;
    expect_status(a, STAT_CLOSED, None)?;
    expect_status(b, STAT_UNBOUND, None)
}

fn send_on_closed_port(_context: &Context) -> TestResult {
    let (a, b) = channel()?;
    match evtchn_send(a) {
        Err(Errno::EINVAL) => {}
        other => {
            return Err(Failure::new(
                format_args!("EVTCHNOP_send on closed port {} -> -EINVAL", a.0),
                format_args!("{other:?}"),
            ))
        }
    }
    // The unbound end has no peer: Xen drops the event and answers 0.
    evtchn_send(b).map_err(|errno| {
        errno_failure(format_args!("EVTCHNOP_send on unbound port {}", b.0), errno)
    })?;
    evtchn_close(b)
        .map_err(|errno| errno_failure(format_args!("EVTCHNOP_close({})", b.0), errno))?;
    PORT_A.store(0, Ordering::Relaxed);
    PORT_B.store(0, Ordering::Relaxed);
    Ok(())
}
