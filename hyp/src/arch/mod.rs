//! The architecture interface: the only way portable code reaches the hardware.
//!
//! On the target this is `arch::aarch64`; in host tests it is `arch::fake`, which backs
//! "physical" memory with an ordinary buffer and records what would have been done.

#[cfg(target_arch = "aarch64")]
pub mod aarch64;
#[cfg(target_arch = "aarch64")]
pub use aarch64 as current;

#[cfg(not(target_arch = "aarch64"))]
pub mod fake;
#[cfg(not(target_arch = "aarch64"))]
pub use fake as current;

pub use current::{
    mask_virtual_timer, virtual_timer_intid, maintenance_intid, virtual_cpu_interface, list_register_count, read_list_register, restore_virtual_interface,
    save_virtual_interface, set_virtual_interface, write_list_register, acknowledge_interrupt, arm_timer, el2_timer_intid, end_interrupt, interrupt_id,
    wait_for_interrupt, clean_invalidate_data_cache, inject_exception, phys_to_virt, power_off, read_counter,
    read_counter_frequency, restore_el1, restore_fp, save_el1, save_fp, set_stage2,
    table_write_barrier, tlb_invalidate_vmid, translate_guest_address, Translation,
};
