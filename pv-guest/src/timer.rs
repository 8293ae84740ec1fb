//! The EL1 virtual timer (CNTV_CVAL_EL0 / CNTV_CTL_EL0) as an interrupt source.
//!
//! Two uses, one at a time:
//! - ticks ([`start_ticks`]): N deadlines `period` apart; the handler records for each
//!   how late it ran (CNTVCT at the IRQ vector minus the deadline), then programs the
//!   next deadline or disables the timer after the last;
//! - a watchdog for [`crate::irq::wait_until`] on the boot CPU: a deadline that wakes a
//!   WFI; its interrupt only disables the timer.
//!
//! A tick is an interrupt with CNTV_CTL_EL0.ISTATUS set (the deadline has passed);
//! an interrupt without it is counted as spurious and the deadline stays armed. Xen
//! may inject the interrupt of a vCPU blocked in WFI a little early (its software timer
//! for the deadline has a slop), so the vector's time can precede the deadline; such
//! ticks are counted apart and recorded as 0 late.
//!
//! The timer's PPI is level-triggered (and Xen sets CNTV_CTL_EL0.IMASK when it injects
//! it): the handler always rewrites CNTV_CTL_EL0 before ending the interrupt.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::arch::cpu;

/// Most ticks recorded.
pub const MAX_TICKS: usize = 64;

const IDLE: u8 = 0;
const WATCHDOG: u8 = 1;
const TICKS: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(IDLE);
/// The timer PPI is enabled on the boot CPU (the watchdog may be used).
static READY: AtomicBool = AtomicBool::new(false);
static WANTED: AtomicU32 = AtomicU32::new(0);
static FIRED: AtomicU32 = AtomicU32::new(0);
static EARLY: AtomicU32 = AtomicU32::new(0);
static SPURIOUS: AtomicU32 = AtomicU32::new(0);
static PERIOD: AtomicU64 = AtomicU64::new(0);
static DEADLINE: AtomicU64 = AtomicU64::new(0);
static LATENCY: [AtomicU64; MAX_TICKS] = [const { AtomicU64::new(0) }; MAX_TICKS];

/// Marks the timer PPI as enabled on the boot CPU (see [`crate::platform`]).
pub fn set_ready() {
    READY.store(true, Ordering::Release);
}

/// Arms the watchdog at `deadline` if the timer is free; returns whether it did.
pub fn start_watchdog(deadline: u64) -> bool {
    if !READY.load(Ordering::Acquire) || cpu::cpu_index() != 0 {
        return false;
    }
    if MODE
        .compare_exchange(IDLE, WATCHDOG, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return false;
    }
    cpu::arm_virtual_timer(deadline);
    true
}

/// Disarms the watchdog.
pub fn stop_watchdog() {
    if MODE
        .compare_exchange(WATCHDOG, IDLE, Ordering::AcqRel, Ordering::Acquire)
        .is_ok()
    {
        cpu::stop_virtual_timer();
    }
}

/// Starts `count` (at most [`MAX_TICKS`]) deadlines `period` ticks apart, the first one
/// `period` from now. Returns false if the timer is in use.
pub fn start_ticks(count: u32, period: u64) -> bool {
    if MODE
        .compare_exchange(IDLE, TICKS, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return false;
    }
    WANTED.store(count.min(MAX_TICKS as u32), Ordering::Relaxed);
    FIRED.store(0, Ordering::Relaxed);
    EARLY.store(0, Ordering::Relaxed);
    SPURIOUS.store(0, Ordering::Relaxed);
    PERIOD.store(period, Ordering::Relaxed);
    let first = cpu::counter() + period;
    DEADLINE.store(first, Ordering::Release);
    cpu::arm_virtual_timer(first);
    true
}

/// Stops the ticks (if any) and frees the timer.
pub fn stop_ticks() {
    cpu::stop_virtual_timer();
    let _ = MODE.compare_exchange(TICKS, IDLE, Ordering::AcqRel, Ordering::Acquire);
}

/// Ticks handled so far.
pub fn fired() -> u32 {
    FIRED.load(Ordering::Acquire)
}

/// Since [`start_ticks`]: (ticks whose interrupt reached the vector before the
/// deadline although ISTATUS was set when the handler looked, interrupts with ISTATUS
/// clear: not a tick, the timer stays armed).
pub fn anomalies() -> (u32, u32) {
    (
        EARLY.load(Ordering::Relaxed),
        SPURIOUS.load(Ordering::Relaxed),
    )
}

/// How late tick `index` was handled, in counter ticks.
pub fn latency(index: usize) -> u64 {
    LATENCY
        .get(index)
        .map_or(0, |slot| slot.load(Ordering::Relaxed))
}

/// The timer PPI handler; `entry_time` is CNTVCT at the IRQ vector.
pub fn interrupt(entry_time: u64) {
    if MODE.load(Ordering::Acquire) != TICKS {
        // The watchdog (or a stray level): it has done its job of waking us.
        cpu::stop_virtual_timer();
        return;
    }
    if cpu::virtual_timer_control() & cpu::TIMER_STATUS == 0 {
        SPURIOUS.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let deadline = DEADLINE.load(Ordering::Acquire);
    let index = FIRED.load(Ordering::Relaxed) as usize;
    if entry_time < deadline {
        EARLY.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(slot) = LATENCY.get(index) {
        slot.store(entry_time.saturating_sub(deadline), Ordering::Relaxed);
    }
    FIRED.store(index as u32 + 1, Ordering::Release);
    if index as u32 + 1 < WANTED.load(Ordering::Relaxed) {
        let next = deadline + PERIOD.load(Ordering::Relaxed);
        DEADLINE.store(next, Ordering::Release);
        cpu::arm_virtual_timer(next);
    } else {
        cpu::stop_virtual_timer();
    }
}
