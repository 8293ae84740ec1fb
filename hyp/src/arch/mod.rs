//! The architecture interface: the only way portable code reaches the hardware.
//!
//! On the target this is `arch::aarch64`; in host tests it is `arch::fake`, which backs
//! "physical" memory with an ordinary buffer and records what would have been done.

/// A physical interrupt acknowledged at this CPU's GIC ([`acknowledge_interrupt`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acknowledged {
    /// The value the acknowledge register gave, for [`end_interrupt`].
    pub raw: u32,
    /// The interrupt's INTID.
    pub intid: u32,
}

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
#[cfg(target_arch = "aarch64")]
pub use aarch64 as current;

#[cfg(not(target_arch = "aarch64"))]
pub mod fake;
#[cfg(not(target_arch = "aarch64"))]
pub use fake as current;

pub use current::{
    acknowledge_interrupt, allow_fp, arm_timer, arm_timer_before, clean_invalidate_data_cache,
    copy_registers, el2_timer_intid, enable_spi, end_interrupt, inject_exception, kick_cpu,
    kick_intid, list_register_count, maintenance_intid, mask_virtual_timer, phys_to_virt,
    power_off, read_counter, read_counter_frequency, read_list_register, restore_el1, restore_fp,
    restore_virtual_interface, save_el1, save_fp, save_virtual_interface, set_stage2,
    set_virtual_interface, table_write_barrier, tlb_invalidate_vmid, translate_guest_address,
    trap_fp, virtual_cpu_interface, virtual_timer_intid, wait_for_interrupt, write_list_register,
    Translation, DEVICE_PRIORITY,
};
