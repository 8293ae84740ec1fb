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
