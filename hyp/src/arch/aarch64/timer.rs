//! The Arm generic timer as the hypervisor uses it: the EL2 physical timer
//! (`CNTHP_CTL_EL2`, `CNTHP_CVAL_EL2`, `CNTHP_TVAL_EL2`) for the hypervisor's own deadlines,
//! the physical counter (`CNTPCT_EL0`) and its frequency (`CNTFRQ_EL0`), and access to the
//! virtual timer (`CNTV_CTL_EL0`, `CNTV_CVAL_EL0`) of the vCPU loaded on this CPU.
//!
//! The counter frequency is read, never assumed: QEMU's named CPUs run at 62.5 MHz,
//! `-cpu max` at 1 GHz, the Raspberry Pi 4 at 54 MHz. Conversions between nanoseconds and
//! ticks go through `u128`, so they neither overflow nor lose precision.
//!
//! The EL2 timer raises a level-sensitive PPI ([`el2_timer_intid`], 26 on every supported
//! board) while it is enabled, unmasked and its deadline has passed: [`disarm`] it before
//! ending the interrupt at the GIC, or the interrupt is pending again at once.

use crate::platform;
use aarch64_cpu::registers::{
    Readable, Writeable, CNTFRQ_EL0, CNTHP_CTL_EL2, CNTPCT_EL0, CNTV_CTL_EL0, CNTV_CVAL_EL0,
};
use core::arch::asm;
use core::sync::atomic::{AtomicU32, Ordering};

/// Nanoseconds per second.
const NANOSECONDS_PER_SECOND: u128 = 1_000_000_000;

/// `CNT*_CTL` bit 0: the timer is enabled.
pub const CONTROL_ENABLE: u64 = 1 << 0;
/// `CNT*_CTL` bit 1: the timer's interrupt is masked.
pub const CONTROL_INTERRUPT_MASK: u64 = 1 << 1;
/// `CNT*_CTL` bit 2 (read-only): the timer condition is met.
pub const CONTROL_STATUS: u64 = 1 << 2;

/// INTIDs the architecture recommends (SBSA) until [`init`] records the device tree's.
const DEFAULT_EL2_TIMER_INTID: u32 = 26;
const DEFAULT_VIRTUAL_TIMER_INTID: u32 = 27;
const DEFAULT_PHYSICAL_TIMER_INTID: u32 = 30;

static EL2_TIMER_INTID: AtomicU32 = AtomicU32::new(DEFAULT_EL2_TIMER_INTID);
static VIRTUAL_TIMER_INTID: AtomicU32 = AtomicU32::new(DEFAULT_VIRTUAL_TIMER_INTID);
static PHYSICAL_TIMER_INTID: AtomicU32 = AtomicU32::new(DEFAULT_PHYSICAL_TIMER_INTID);

/// Records the timer INTIDs the device tree gives (`platform.timer`); call once at boot.
/// The EL2 timer starts disarmed (`CNTHP_CTL_EL2` = 0).
pub fn init(timer: &platform::Timer) {
    EL2_TIMER_INTID.store(timer.hyp_intid, Ordering::Relaxed);
    VIRTUAL_TIMER_INTID.store(timer.virtual_intid, Ordering::Relaxed);
    PHYSICAL_TIMER_INTID.store(timer.physical_intid, Ordering::Relaxed);
    disarm();
}

/// The EL2 physical timer's INTID (a PPI; the device tree's, 26 before [`init`]).
pub fn el2_timer_intid() -> u32 {
    EL2_TIMER_INTID.load(Ordering::Relaxed)
}

/// The virtual timer's INTID (a PPI; the device tree's, 27 before [`init`]): the vGIC
/// injects it into the vCPU whose `CNTV_CTL_EL0` fires.
pub fn virtual_timer_intid() -> u32 {
    VIRTUAL_TIMER_INTID.load(Ordering::Relaxed)
}

/// The non-secure EL1 physical timer's INTID (a PPI; the device tree's, 30 before
/// [`init`]).
pub fn physical_timer_intid() -> u32 {
    PHYSICAL_TIMER_INTID.load(Ordering::Relaxed)
}

/// The physical counter, `CNTPCT_EL0`, in ticks (read after an ISB, so not earlier than
/// the instructions before it).
pub fn now() -> u64 {
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
    CNTPCT_EL0.get()
}

/// The counter frequency in Hz, `CNTFRQ_EL0` (as the firmware programmed it).
pub fn frequency() -> u64 {
    CNTFRQ_EL0.get() & 0xffff_ffff
}

/// Ticks of a `frequency` Hz counter in `nanoseconds`, rounded up (a deadline computed
/// with it is never early); saturates at `u64::MAX`.
pub fn nanoseconds_to_ticks_at(nanoseconds: u64, frequency: u64) -> u64 {
    let ticks = (u128::from(nanoseconds) * u128::from(frequency)).div_ceil(NANOSECONDS_PER_SECOND);
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// Nanoseconds in `ticks` of a `frequency` Hz counter, rounded down; saturates at
/// `u64::MAX`, and is 0 for a frequency of 0.
pub fn ticks_to_nanoseconds_at(ticks: u64, frequency: u64) -> u64 {
    if frequency == 0 {
        return 0;
    }
    let nanoseconds = u128::from(ticks) * NANOSECONDS_PER_SECOND / u128::from(frequency);
    u64::try_from(nanoseconds).unwrap_or(u64::MAX)
}

/// [`nanoseconds_to_ticks_at`] this CPU's counter [`frequency`].
pub fn nanoseconds_to_ticks(nanoseconds: u64) -> u64 {
    nanoseconds_to_ticks_at(nanoseconds, frequency())
}

/// [`ticks_to_nanoseconds_at`] this CPU's counter [`frequency`].
pub fn ticks_to_nanoseconds(ticks: u64) -> u64 {
    ticks_to_nanoseconds_at(ticks, frequency())
}

/// Arms this CPU's EL2 timer to fire when the counter reaches `deadline` (ticks):
/// `CNTHP_CVAL_EL2` = `deadline`, then `CNTHP_CTL_EL2` = ENABLE (interrupt unmasked). A
/// deadline in the past fires at once.
pub fn arm_at(deadline: u64) {
    // SAFETY: the EL2 timer belongs to the hypervisor; setting its compare value only
    // decides when its interrupt is raised.
    unsafe {
        asm!("msr cnthp_cval_el2, {}", in(reg) deadline, options(nomem, nostack, preserves_flags));
    }
    CNTHP_CTL_EL2.write(CNTHP_CTL_EL2::ENABLE::SET + CNTHP_CTL_EL2::IMASK::CLEAR);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Arms this CPU's EL2 timer `ticks` from [`now`] (through `CNTHP_CVAL_EL2`, not the
/// 32-bit `CNTHP_TVAL_EL2`, so long delays are exact).
pub fn arm_in(ticks: u64) {
    arm_at(now().saturating_add(ticks));
}

/// Disarms this CPU's EL2 timer (`CNTHP_CTL_EL2` = 0: disabled), which also withdraws its
/// interrupt.
pub fn disarm() {
    CNTHP_CTL_EL2.set(0);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Whether this CPU's EL2 timer is armed and its deadline has passed
/// (`CNTHP_CTL_EL2.ENABLE` and `ISTATUS`).
pub fn pending() -> bool {
    CNTHP_CTL_EL2.is_set(CNTHP_CTL_EL2::ENABLE) && CNTHP_CTL_EL2.is_set(CNTHP_CTL_EL2::ISTATUS)
}

/// The armed deadline of this CPU's EL2 timer, `CNTHP_CVAL_EL2`.
pub fn deadline() -> u64 {
    let value: u64;
    // SAFETY: reading the compare value has no side effects.
    unsafe {
        asm!("mrs {}, cnthp_cval_el2", out(reg) value, options(nomem, nostack, preserves_flags));
    }
    value
}

/// Signed ticks until the EL2 timer's deadline (negative once passed), `CNTHP_TVAL_EL2`;
/// only 32 bits wide, so meaningless for deadlines more than 2^31 ticks away (about 34 s
/// at 62.5 MHz): use [`deadline`] and [`now`] for those.
pub fn ticks_until_deadline() -> i32 {
    let value: u64;
    // SAFETY: reading the timer value has no side effects.
    unsafe {
        asm!("mrs {}, cnthp_tval_el2", out(reg) value, options(nomem, nostack, preserves_flags));
    }
    value as u32 as i32
}

/// The loaded vCPU's virtual timer control, `CNTV_CTL_EL0` ([`CONTROL_ENABLE`],
/// [`CONTROL_INTERRUPT_MASK`], [`CONTROL_STATUS`]).
pub fn read_virtual_control() -> u64 {
    CNTV_CTL_EL0.get()
}

/// Writes `CNTV_CTL_EL0` (bit 2, ISTATUS, is read-only).
pub fn write_virtual_control(value: u64) {
    CNTV_CTL_EL0.set(value & (CONTROL_ENABLE | CONTROL_INTERRUPT_MASK));
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// The loaded vCPU's virtual timer compare value, `CNTV_CVAL_EL0` (virtual counter ticks:
/// physical minus `CNTVOFF_EL2`, which the hypervisor keeps at 0).
pub fn read_virtual_compare() -> u64 {
    CNTV_CVAL_EL0.get()
}

/// Writes `CNTV_CVAL_EL0`.
pub fn write_virtual_compare(value: u64) {
    CNTV_CVAL_EL0.set(value);
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// Masks the virtual timer's interrupt (sets `CNTV_CTL_EL0.IMASK`) and returns the control
/// value before, for a vCPU being descheduled: its timer can no longer raise the physical
/// virtual-timer PPI on this CPU while another vCPU (or none) runs. Restore the returned
/// value with [`write_virtual_control`] when the vCPU runs again.
pub fn mask_virtual_timer() -> u64 {
    let control = read_virtual_control();
    write_virtual_control(control | CONTROL_INTERRUPT_MASK);
    control
}

/// Whether a virtual-timer control value says the timer's interrupt is asserted: enabled,
/// condition met, not masked.
pub fn virtual_timer_firing(control: u64) -> bool {
    control & (CONTROL_ENABLE | CONTROL_STATUS | CONTROL_INTERRUPT_MASK)
        == CONTROL_ENABLE | CONTROL_STATUS
}
