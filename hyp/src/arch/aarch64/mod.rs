//! The AArch64 (EL2) implementation of the architecture interface. All of the hypervisor's
//! assembly lives in this directory: `boot` (entry), `exceptions` (vectors) and `cpu`
//! (system registers).

pub mod boot;
pub mod cpu;
pub mod exceptions;
pub mod gic;
pub mod timer;

use crate::addr::PhysAddr;

pub use cpu::{
    clean_invalidate_data_cache, inject_exception, power_off, read_counter, read_counter_frequency,
    restore_el1, restore_fp, save_el1, save_fp, set_stage2, table_write_barrier,
    tlb_invalidate_vmid, translate_guest_address, Translation,
};

/// The hypervisor maps the physical memory it uses with VA == PA.
pub fn phys_to_virt(address: PhysAddr) -> *mut u8 {
    address.raw() as *mut u8
}

/// Acknowledges the highest-priority pending physical interrupt at this CPU's GIC; the
/// raw value goes back to [`end_interrupt`]. `None` when nothing is pending.
pub fn acknowledge_interrupt() -> Option<u32> {
    gic::Gic::get().and_then(gic::Gic::acknowledge)
}

/// The INTID inside an acknowledged value.
pub fn interrupt_id(acknowledged: u32) -> u32 {
    gic::Gic::get().map_or(acknowledged & 0x3ff, |gic| gic.interrupt_id(acknowledged))
}

/// Ends a physical interrupt the hypervisor handled itself (priority drop and deactivate).
pub fn end_interrupt(acknowledged: u32) {
    if let Some(gic) = gic::Gic::get() {
        gic.end_of_interrupt(acknowledged);
    }
}

/// The INTID of the EL2 physical timer.
pub fn el2_timer_intid() -> u32 {
    timer::el2_timer_intid()
}

/// Arms this CPU's EL2 timer for `deadline` (counter ticks), or disarms it.
pub fn arm_timer(deadline: Option<u64>) {
    match deadline {
        Some(deadline) => timer::arm_at(deadline),
        None => timer::disarm(),
    }
}

/// Waits until an interrupt is pending (interrupts stay masked at EL2: WFI still wakes).
pub fn wait_for_interrupt() {
    // SAFETY: WFI only waits; a DSB first so nothing is left in flight.
    unsafe { core::arch::asm!("dsb sy", "wfi", options(nomem, nostack, preserves_flags)) };
}
