//! 32-bit MMIO accesses for emulated devices (the GIC distributor and redistributors).
//!
//! Each access is exactly one `ldr wN, [xM]` or `str wN, [xM]`: no pair, no
//! writeback, no offset addressing, so a trapped access always carries a valid
//! syndrome (ESR_EL2.ISV) the hypervisor can emulate from.

use core::arch::asm;

/// Reads the 32-bit register at `address`.
///
/// # Safety
/// `address` must be a 4-byte aligned device register mapped as Device memory, whose
/// read side effects (if any) the caller wants.
pub unsafe fn read32(address: usize) -> u32 {
    let value: u32;
    // SAFETY: the caller guarantees the address; one plain load.
    unsafe {
        asm!("ldr {value:w}, [{address}]", value = out(reg) value, address = in(reg) address, options(nostack))
    };
    value
}

/// Writes the 32-bit register at `address`.
///
/// # Safety
/// `address` must be a 4-byte aligned device register mapped as Device memory, and the
/// write must be one the caller wants.
pub unsafe fn write32(address: usize, value: u32) {
    // SAFETY: the caller guarantees the address; one plain store.
    unsafe {
        asm!("str {value:w}, [{address}]", value = in(reg) value, address = in(reg) address, options(nostack))
    };
}
