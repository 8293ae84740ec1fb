//! Interrupt dispatch and waiting.
//!
//! IRQs stay masked (PSTATE.I = 1) except inside [`wait_until`] (and the few places a
//! scenario measures delivery with them open). The IRQ vector reads CNTVCT_EL0 first,
//! then acknowledges interrupts until the GIC reports none, dispatching each by INTID
//! to the role registered for it, and ends each one.
//!
//! SGIs and PPIs (INTIDs 0..32) are banked per CPU: a role registered here applies on
//! every CPU, but each CPU enables its own lines ([`crate::gic::enable_private`]).

use core::sync::atomic::{AtomicU32, AtomicU8, Ordering};

use crate::arch::cpu;
use crate::{events, gic, smp, timer};

/// What an INTID is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    /// Nothing registered: counted as unexpected.
    None = 0,
    /// The Xen event-channel upcall PPI.
    Events = 1,
    /// The virtual timer PPI.
    Timer = 2,
    /// An SGI (inter-processor interrupt).
    Ipi = 3,
}

/// Most INTIDs with a role (SGIs and PPIs).
const PRIVATE_INTIDS: usize = 32;
static ROLES: [AtomicU8; PRIVATE_INTIDS] = [const { AtomicU8::new(0) }; PRIVATE_INTIDS];
/// Interrupts acknowledged with no role.
static UNEXPECTED: AtomicU32 = AtomicU32::new(0);
/// The last INTID with no role.
static LAST_UNEXPECTED: AtomicU32 = AtomicU32::new(0);

/// Registers `role` for `intid` (< 32); false if out of range.
pub fn set_role(intid: u32, role: Role) -> bool {
    match ROLES.get(intid as usize) {
        Some(slot) => {
            slot.store(role as u8, Ordering::Release);
            true
        }
        None => false,
    }
}

fn role(intid: u32) -> Role {
    match ROLES
        .get(intid as usize)
        .map(|slot| slot.load(Ordering::Acquire))
    {
        Some(1) => Role::Events,
        Some(2) => Role::Timer,
        Some(3) => Role::Ipi,
        _ => Role::None,
    }
}

/// Interrupts seen with no registered role: (count, last INTID).
pub fn unexpected() -> (u32, u32) {
    (
        UNEXPECTED.load(Ordering::Relaxed),
        LAST_UNEXPECTED.load(Ordering::Relaxed),
    )
}

/// The IRQ exception: `entry_time` is CNTVCT_EL0 read at the vector. Returns false if
/// no GIC is configured (the caller treats the IRQ as unexpected).
pub fn handle(entry_time: u64) -> bool {
    if gic::configured_version().is_none() {
        return false;
    }
    // The vector's time for the first interrupt, a fresh one for any taken after it.
    let mut time = entry_time;
    loop {
        let (raw, intid) = gic::acknowledge();
        if intid >= gic::FIRST_SPECIAL_INTID {
            return true;
        }
        match role(intid) {
            Role::Events => events::upcall(time),
            Role::Timer => timer::interrupt(time),
            Role::Ipi => smp::sgi(intid),
            Role::None => {
                UNEXPECTED.fetch_add(1, Ordering::Relaxed);
                LAST_UNEXPECTED.store(intid, Ordering::Relaxed);
            }
        }
        gic::end_of_interrupt(raw);
        time = cpu::counter();
    }
}

/// Counter ticks in `microseconds`.
pub fn ticks(microseconds: u64) -> u64 {
    cpu::counter_frequency() * microseconds / 1_000_000
}

/// Nanoseconds in `ticks` counter ticks.
pub fn nanoseconds(ticks: u64) -> u64 {
    let frequency = cpu::counter_frequency().max(1);
    (ticks as u128 * 1_000_000_000 / frequency as u128) as u64
}

/// How [`wait_until`] waits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// `WFI` between checks; the virtual timer is armed at the timeout as a wake-up
    /// source (unless the timer scenario owns it), so a lost interrupt cannot hang.
    Sleep,
    /// Open the IRQ window between checks without sleeping.
    Spin,
}

/// Waits until `done()` or `timeout` counter ticks pass; returns `done()`. IRQs are
/// taken only between checks.
pub fn wait_until(timeout: u64, how: Wait, done: impl Fn() -> bool) -> bool {
    let deadline = cpu::counter().saturating_add(timeout);
    let watchdog = how == Wait::Sleep && timer::start_watchdog(deadline);
    let result = loop {
        if done() {
            break true;
        }
        if cpu::counter() >= deadline {
            break done();
        }
        match how {
            Wait::Sleep => cpu::wait_for_interrupt(),
            Wait::Spin => cpu::take_pending_interrupts(),
        }
    };
    if watchdog {
        timer::stop_watchdog();
    }
    result
}
