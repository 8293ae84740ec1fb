//! System registers, cache and TLB maintenance, and the few single instructions tests
//! need (assembly). Everything else in the crate is plain Rust.

use core::arch::asm;

/// Reads ESR_EL1 (syndrome of the last exception taken to EL1).
pub fn exception_syndrome() -> u64 {
    let value: u64;
    // SAFETY: reading ESR_EL1 at EL1 has no side effects.
    unsafe { asm!("mrs {}, esr_el1", out(reg) value, options(nomem, nostack)) };
    value
}

/// Reads FAR_EL1 (faulting virtual address of the last abort taken to EL1).
pub fn fault_address() -> u64 {
    let value: u64;
    // SAFETY: reading FAR_EL1 at EL1 has no side effects.
    unsafe { asm!("mrs {}, far_el1", out(reg) value, options(nomem, nostack)) };
    value
}

/// Reads ID_AA64MMFR0_EL1.PARange (bits 3:0).
pub fn physical_address_range() -> u64 {
    let value: u64;
    // SAFETY: reading an ID register has no side effects.
    unsafe { asm!("mrs {}, id_aa64mmfr0_el1", out(reg) value, options(nomem, nostack)) };
    value & 0xf
}

/// Reads SCTLR_EL1.
pub fn system_control() -> u64 {
    let value: u64;
    // SAFETY: reading SCTLR_EL1 has no side effects.
    unsafe { asm!("mrs {}, sctlr_el1", out(reg) value, options(nomem, nostack)) };
    value
}

/// Smallest data cache line in bytes (CTR_EL0.DminLine).
fn data_cache_line() -> usize {
    let value: u64;
    // SAFETY: reading CTR_EL0 has no side effects.
    unsafe { asm!("mrs {}, ctr_el0", out(reg) value, options(nomem, nostack)) };
    4 << ((value >> 16) & 0xf)
}

/// Invalidates `[start, end)` from the data cache to the point of coherency.
///
/// Used with the MMU off on memory written with non-cacheable accesses, so no stale
/// line can later hide or overwrite it.
///
/// # Safety
/// Any dirty data in the range is lost: the range must hold nothing that was written
/// through a cacheable mapping and not yet cleaned.
pub unsafe fn invalidate_data_cache(start: usize, end: usize) {
    let line = data_cache_line();
    let mut address = start & !(line - 1);
    while address < end {
        // SAFETY: the caller accepts losing dirty lines in the range; DC IVAC does
        // nothing else.
        unsafe { asm!("dc ivac, {}", in(reg) address, options(nostack)) };
        address += line;
    }
    // SAFETY: a barrier.
    unsafe { asm!("dsb sy", options(nostack)) };
}

/// Register values that turn the stage-1 MMU on.
pub struct MmuSettings {
    /// MAIR_EL1.
    pub memory_attributes: u64,
    /// TCR_EL1.
    pub translation_control: u64,
    /// TTBR0_EL1 (physical address of the level-1 table).
    pub table_base: u64,
}

/// Installs the translation registers and sets SCTLR_EL1.{M, C, I}.
///
/// # Safety
/// The tables at `settings.table_base` must identity-map all code, data and stack in
/// use, and must have reached memory (written with the MMU off, or cleaned).
pub unsafe fn enable_mmu(settings: &MmuSettings) {
    const SCTLR_M: u64 = 1 << 0;
    const SCTLR_A: u64 = 1 << 1;
    const SCTLR_C: u64 = 1 << 2;
    const SCTLR_I: u64 = 1 << 12;
    const SCTLR_WXN: u64 = 1 << 19;
    const SCTLR_E0E: u64 = 1 << 24;
    const SCTLR_EE: u64 = 1 << 25;
    let control = (system_control() | SCTLR_M | SCTLR_C | SCTLR_I)
        & !(SCTLR_A | SCTLR_WXN | SCTLR_E0E | SCTLR_EE);
    // SAFETY: the caller guarantees the identity map covers everything in use, so the
    // instruction after the final ISB is fetched through the same address.
    unsafe {
        asm!(
            "msr mair_el1, {mair}",
            "msr tcr_el1, {tcr}",
            "msr ttbr0_el1, {ttbr}",
            "isb",
            "tlbi vmalle1",
            "ic iallu",
            "dsb ish",
            "isb",
            "msr sctlr_el1, {sctlr}",
            "isb",
            mair = in(reg) settings.memory_attributes,
            tcr = in(reg) settings.translation_control,
            ttbr = in(reg) settings.table_base,
            sctlr = in(reg) control,
            options(nostack),
        );
    }
}

extern "C" {
    /// `hvc #0x1234; ret`: a hypercall with an immediate that is neither Xen's 0xEA1
    /// nor SMCCC's 0. The hypervisor must inject UNDEF.
    fn pv_guest_hvc_bad_immediate();
}

core::arch::global_asm!(
    r#"
    .section .text.probes, "ax"
    .global pv_guest_hvc_bad_immediate
    .balign 4
pv_guest_hvc_bad_immediate:
    hvc     #0x1234
    ret
    "#
);

/// Address of the `hvc #0x1234` instruction (its resume point is 4 bytes later).
pub fn hvc_bad_immediate_address() -> usize {
    pv_guest_hvc_bad_immediate as *const () as usize
}

/// Executes `hvc #0x1234`.
///
/// # Safety
/// An expected fault must be armed for [`hvc_bad_immediate_address`], or the UNDEF
/// the hypervisor injects crashes the guest.
pub unsafe fn hvc_bad_immediate() {
    // SAFETY: the probe touches no memory and no register but the ones an AAPCS64 call
    // may clobber; the caller armed the UNDEF it causes.
    unsafe { pv_guest_hvc_bad_immediate() };
}

/// Waits for an interrupt, forever.
pub fn halt() -> ! {
    loop {
        // SAFETY: WFI only waits.
        unsafe { asm!("wfi", options(nomem, nostack)) };
    }
}
