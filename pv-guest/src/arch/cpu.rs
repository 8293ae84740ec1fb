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

/// Reads the virtual counter CNTVCT_EL0 (after an ISB, so it is not read early).
pub fn counter() -> u64 {
    let value: u64;
    // SAFETY: reading the virtual counter has no side effects.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) value, options(nomem, nostack)) };
    value
}

/// Reads the physical counter CNTPCT_EL0 (after an ISB): counter ticks since the
/// machine started, whatever offset the hypervisor gives the virtual counter. Both our
/// hypervisor and Xen let EL1 read it (CNTHCTL_EL2.EL1PCTEN).
pub fn physical_counter() -> u64 {
    let value: u64;
    // SAFETY: reading the physical counter has no side effects.
    unsafe { asm!("isb", "mrs {}, cntpct_el0", out(reg) value, options(nomem, nostack)) };
    value
}

/// Whether an IRQ is pending for this CPU (ISR_EL1.I), masked or not.
pub fn interrupt_pending() -> bool {
    let value: u64;
    // SAFETY: reading ISR_EL1 has no side effects.
    unsafe { asm!("isb", "mrs {}, isr_el1", out(reg) value, options(nomem, nostack)) };
    value & (1 << 7) != 0
}

/// Reads CNTFRQ_EL0: counter ticks per second.
pub fn counter_frequency() -> u64 {
    let value: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effects.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) value, options(nomem, nostack)) };
    value
}

/// CNTV_CTL_EL0.ENABLE.
pub const TIMER_ENABLE: u64 = 1 << 0;
/// CNTV_CTL_EL0.IMASK.
pub const TIMER_MASK: u64 = 1 << 1;
/// CNTV_CTL_EL0.ISTATUS (read only).
pub const TIMER_STATUS: u64 = 1 << 2;

/// Arms the virtual timer: CNTV_CVAL_EL0 = `deadline`, then CNTV_CTL_EL0 = ENABLE.
pub fn arm_virtual_timer(deadline: u64) {
    // SAFETY: programming this CPU's virtual timer affects only its interrupt line.
    unsafe {
        asm!(
            "msr cntv_cval_el0, {deadline}",
            "msr cntv_ctl_el0, {control}",
            "isb",
            deadline = in(reg) deadline,
            control = in(reg) TIMER_ENABLE,
            options(nomem, nostack),
        );
    }
}

/// Disables the virtual timer (CNTV_CTL_EL0 = IMASK, not enabled).
pub fn stop_virtual_timer() {
    // SAFETY: as in `arm_virtual_timer`.
    unsafe {
        asm!(
            "msr cntv_ctl_el0, {control}",
            "isb",
            control = in(reg) TIMER_MASK,
            options(nomem, nostack),
        );
    }
}

/// Reads CNTV_CTL_EL0.
pub fn virtual_timer_control() -> u64 {
    let value: u64;
    // SAFETY: reading CNTV_CTL_EL0 has no side effects.
    unsafe { asm!("mrs {}, cntv_ctl_el0", out(reg) value, options(nomem, nostack)) };
    value
}

/// Reads MPIDR_EL1.
pub fn multiprocessor_affinity() -> u64 {
    let value: u64;
    // SAFETY: reading MPIDR_EL1 has no side effects.
    unsafe { asm!("mrs {}, mpidr_el1", out(reg) value, options(nomem, nostack)) };
    value
}

/// Records this CPU's index (vCPU id) in TPIDR_EL1.
pub fn set_cpu_index(index: usize) {
    // SAFETY: TPIDR_EL1 is a scratch register that only pv-guest uses.
    unsafe { asm!("msr tpidr_el1, {}", in(reg) index, options(nomem, nostack)) };
}

/// This CPU's index (vCPU id), from TPIDR_EL1 (written by [`set_cpu_index`] when the
/// CPU starts).
pub fn cpu_index() -> usize {
    let value: usize;
    // SAFETY: reading TPIDR_EL1 has no side effects.
    unsafe { asm!("mrs {}, tpidr_el1", out(reg) value, options(nomem, nostack)) };
    value
}

/// Unmasks IRQs (PSTATE.I = 0).
pub fn enable_interrupts() {
    // SAFETY: the IRQ vector is installed; interrupt handlers run on this stack and
    // preserve every register (the asm is a compiler barrier: handlers change memory).
    unsafe { asm!("msr daifclr, #2", "isb", options(nostack)) };
}

/// Masks IRQs (PSTATE.I = 1).
pub fn disable_interrupts() {
    // SAFETY: masking IRQs only delays them.
    unsafe { asm!("msr daifset, #2", options(nostack)) };
}

/// With IRQs masked: takes any IRQ that is pending now, then masks again.
pub fn take_pending_interrupts() {
    // SAFETY: as in `enable_interrupts`; the window is closed before returning.
    unsafe {
        asm!(
            "msr daifclr, #2",
            "isb",
            "msr daifset, #2",
            options(nostack)
        )
    };
}

/// With IRQs masked: waits for an interrupt (WFI wakes on a pending IRQ even while it
/// is masked, so none is missed between the caller's check and the WFI), then takes
/// it and masks again.
pub fn wait_for_interrupt() {
    // SAFETY: as in `take_pending_interrupts`.
    unsafe {
        asm!(
            "wfi",
            "msr daifclr, #2",
            "isb",
            "msr daifset, #2",
            options(nostack)
        )
    };
}

/// Cleans `[start, end)` from the data cache to the point of coherency, so that a CPU
/// with its MMU off (non-cacheable reads) sees what was written through the cache.
pub fn clean_data_cache(start: usize, end: usize) {
    let line = data_cache_line();
    let mut address = start & !(line - 1);
    while address < end {
        // SAFETY: DC CVAC writes dirty lines back and changes no data.
        unsafe { asm!("dc cvac, {}", in(reg) address, options(nostack)) };
        address += line;
    }
    // SAFETY: a barrier.
    unsafe { asm!("dsb sy", options(nostack)) };
}

/// The current MAIR_EL1, TCR_EL1, TTBR0_EL1 and SCTLR_EL1, for a secondary CPU to
/// turn its MMU on with the same map.
pub fn current_mmu_settings() -> (MmuSettings, u64) {
    let (mair, tcr, ttbr): (u64, u64, u64);
    // SAFETY: reading translation registers has no side effects.
    unsafe {
        asm!(
            "mrs {mair}, mair_el1",
            "mrs {tcr}, tcr_el1",
            "mrs {ttbr}, ttbr0_el1",
            mair = out(reg) mair,
            tcr = out(reg) tcr,
            ttbr = out(reg) ttbr,
            options(nomem, nostack),
        );
    }
    let settings = MmuSettings {
        memory_attributes: mair,
        translation_control: tcr,
        table_base: ttbr,
    };
    (settings, system_control())
}

/// GICv3 CPU interface system registers (ICC_*_EL1).
pub mod icc {
    use core::arch::asm;

    /// Reads ICC_SRE_EL1.
    pub fn system_register_enable() -> u64 {
        let value: u64;
        // SAFETY: reading ICC_SRE_EL1 has no side effects.
        unsafe { asm!("mrs {}, icc_sre_el1", out(reg) value, options(nomem, nostack)) };
        value
    }

    /// Writes ICC_SRE_EL1, then ISB.
    pub fn set_system_register_enable(value: u64) {
        // SAFETY: selects the system-register interface of this CPU's GIC.
        unsafe { asm!("msr icc_sre_el1, {}", "isb", in(reg) value, options(nomem, nostack)) };
    }

    /// Writes ICC_PMR_EL1 (priority mask).
    pub fn set_priority_mask(value: u64) {
        // SAFETY: changes which interrupts this CPU is signalled.
        unsafe { asm!("msr icc_pmr_el1, {}", in(reg) value, options(nomem, nostack)) };
    }

    /// Writes ICC_BPR1_EL1 (binary point).
    pub fn set_binary_point(value: u64) {
        // SAFETY: as above.
        unsafe { asm!("msr icc_bpr1_el1, {}", in(reg) value, options(nomem, nostack)) };
    }

    /// Writes ICC_IGRPEN1_EL1, then ISB.
    pub fn set_group1_enable(value: u64) {
        // SAFETY: as above.
        unsafe { asm!("msr icc_igrpen1_el1, {}", "isb", in(reg) value, options(nomem, nostack)) };
    }

    /// Reads ICC_IAR1_EL1: acknowledges the highest-priority pending interrupt.
    pub fn acknowledge() -> u64 {
        let value: u64;
        // SAFETY: acknowledging changes only the GIC's state for this CPU; the caller
        // ends the interrupt.
        unsafe { asm!("mrs {}, icc_iar1_el1", out(reg) value, options(nomem, nostack)) };
        value
    }

    /// Writes ICC_EOIR1_EL1: ends (drops priority and deactivates) an interrupt.
    pub fn end_of_interrupt(value: u64) {
        // SAFETY: ends an interrupt this CPU acknowledged.
        unsafe { asm!("msr icc_eoir1_el1, {}", "isb", in(reg) value, options(nomem, nostack)) };
    }

    /// Writes ICC_SGI1R_EL1: sends a group-1 SGI.
    pub fn send_sgi(value: u64) {
        // SAFETY: raises an SGI at the named CPUs; the DSB makes prior stores visible
        // to them first.
        unsafe { asm!("dsb ish", "msr icc_sgi1r_el1, {}", "isb", in(reg) value, options(nostack)) };
    }
}

/// `DSB ISH`: earlier memory accesses complete (as seen by the other CPUs) first.
pub fn data_barrier() {
    // SAFETY: a barrier.
    unsafe { asm!("dsb ish", options(nostack)) };
}

/// After a translation-table entry was made invalid: waits for the store to reach the
/// walkers (table walks are cacheable, inner shareable: no cache maintenance), then
/// invalidates every EL1&0 stage-1 TLB entry of this VMID on all CPUs of the inner
/// shareable domain, and waits for that.
pub fn invalidate_translations() {
    // SAFETY: TLB maintenance and barriers only; the asm is a compiler barrier, so the
    // table stores before it are emitted before it.
    unsafe {
        asm!(
            "dsb ishst",
            "tlbi vmalle1is",
            "dsb ish",
            "isb",
            options(nostack)
        )
    };
}

/// After a translation-table entry was made valid: waits for the store to reach the
/// walkers and resynchronises this CPU's instruction stream.
pub fn publish_translation() {
    // SAFETY: barriers only.
    unsafe { asm!("dsb ishst", "isb", options(nostack)) };
}
