//! EL2 system registers: CPU set-up, the EL2 MMU, stage-2 activation, vCPU context
//! switching, guest address translation and TLB maintenance.

use crate::addr::{GuestVirtAddr, PhysAddr};
use crate::cpu::CpuState;
use crate::vcpu::{El1Context, FpContext, GuestRegisters};
use core::arch::asm;

/// Everything one physical CPU owns. TPIDR_EL2 points at it; the exception vectors rely on
/// the guest register frame being at offset 0 (the start of [`CpuState`]).
#[repr(C)]
pub struct PerCpu {
    /// Portable per-CPU state; its first field is the trap frame.
    pub cpu: CpuState,
    /// Top of this CPU's hypervisor stack, reloaded on every entry to a guest.
    pub stack_top: u64,
}

// Single system-register reads go through `aarch64-cpu`; only batches (the EL1 context
// switch, FP state) and instructions it does not model (AT, TLBI, DC) use asm here.
use aarch64_cpu::registers::{
    Readable, CNTFRQ_EL0, CNTPCT_EL0, ESR_EL2, FAR_EL2, HPFAR_EL2, ID_AA64MMFR0_EL1, MIDR_EL1,
    MPIDR_EL1,
};

/// ESR_EL2: syndrome of the exception being handled.
#[inline(always)]
pub fn read_esr_el2() -> u64 {
    ESR_EL2.get()
}

/// FAR_EL2: faulting virtual address.
#[inline(always)]
pub fn read_far_el2() -> u64 {
    FAR_EL2.get()
}

/// HPFAR_EL2: faulting IPA page of a stage-2 abort.
#[inline(always)]
pub fn read_hpfar_el2() -> u64 {
    HPFAR_EL2.get()
}

/// CNTPCT_EL0: the physical counter.
#[inline(always)]
pub fn read_counter() -> u64 {
    CNTPCT_EL0.get()
}

/// CNTFRQ_EL0: counter frequency in Hz, as the firmware set it (never assumed).
pub fn read_counter_frequency() -> u64 {
    CNTFRQ_EL0.get()
}

/// ID_AA64MMFR0_EL1: supported physical address size and granules.
pub fn read_id_aa64mmfr0() -> u64 {
    ID_AA64MMFR0_EL1.get()
}

/// MIDR_EL1: this CPU's identification.
pub fn read_midr() -> u64 {
    MIDR_EL1.get()
}

/// MPIDR_EL1: this CPU's affinity.
pub fn read_mpidr() -> u64 {
    MPIDR_EL1.get()
}

/// HCR_EL2 while guests run: VM (stage 2), SWIO, FMO/IMO/AMO (interrupts to EL2), FB
/// (broadcast TLB/cache maintenance), BSU inner shareable, TWI (WFI traps), TSC (SMC traps),
/// RW (EL1 is AArch64).
pub const HCR_EL2_GUEST: u64 = (1 << 0)
    | (1 << 1)
    | (1 << 3)
    | (1 << 4)
    | (1 << 5)
    | (1 << 9)
    | (1 << 10)
    | (1 << 13)
    | (1 << 19)
    | (1 << 31);

/// SCTLR_EL2 with the MMU, data and instruction caches on, SP alignment checks, and
/// writable memory never executable (WXN); RES1 bits set.
const SCTLR_EL2_ON: u64 = 0x30c5_0830 | (1 << 0) | (1 << 2) | (1 << 3) | (1 << 12) | (1 << 19);

/// CPTR_EL2: no traps of FP/SIMD (guests own those registers; the hypervisor is soft-float).
const CPTR_EL2_VALUE: u64 = 0x33ff;
/// CPTR_EL2.TFP: FP/SIMD instructions at EL0, EL1 and EL2 trap to EL2.
const CPTR_EL2_TFP: u64 = 1 << 10;

/// Makes the guest's next FP/SIMD instruction trap (for a vCPU whose FP/SIMD registers
/// are not loaded). The `eret` into the guest synchronises the write.
pub fn trap_fp() {
    // SAFETY: CPTR_EL2 only controls traps to EL2; the hypervisor itself touches FP/SIMD
    // only in `save_fp`/`restore_fp`, which run after `allow_fp`.
    unsafe {
        asm!("msr cptr_el2, {}", in(reg) CPTR_EL2_VALUE | CPTR_EL2_TFP, options(nomem, nostack, preserves_flags))
    };
}

/// Lets FP/SIMD instructions run (before `restore_fp`, and for the guest that owns them).
pub fn allow_fp() {
    // SAFETY: as in `trap_fp`; the ISB makes the write apply to the FP/SIMD accesses of
    // `save_fp`/`restore_fp` that follow.
    unsafe {
        asm!("msr cptr_el2, {}", "isb", in(reg) CPTR_EL2_VALUE, options(nomem, nostack, preserves_flags))
    };
}

/// Sets up this CPU's EL2 state that does not depend on a domain, and installs `per_cpu`.
///
/// # Safety
/// Must run once per CPU at EL2 before any guest; `per_cpu` must live for ever and be this
/// CPU's alone.
pub unsafe fn init_el2(per_cpu: *mut PerCpu, vtcr: u64) {
    let vectors = core::ptr::addr_of!(super::exceptions::hyp_vectors) as u64;
    let midr = read_midr();
    // SAFETY: these writes configure EL2 itself; no guest is running and the vector table
    // and per-CPU block are valid for the hypervisor's lifetime (caller's contract).
    unsafe {
        asm!(
            "msr vbar_el2, {vectors}",
            "msr tpidr_el2, {per_cpu}",
            "msr cptr_el2, {cptr}",
            "msr vtcr_el2, {vtcr}",
            "msr vpidr_el2, {midr}",
            // EL1 may read the physical counter and timer registers (CNTHCTL EL1PCTEN/EL1PCEN).
            "mov {tmp}, #3",
            "msr cnthctl_el2, {tmp}",
            "msr cntvoff_el2, xzr",
            // Give guests the performance counters: MDCR_EL2.HPMN = PMCR_EL0.N.
            "mrs {tmp}, pmcr_el0",
            "ubfx {tmp}, {tmp}, #11, #5",
            "msr mdcr_el2, {tmp}",
            "msr hcr_el2, {hcr}",
            "isb",
            vectors = in(reg) vectors,
            per_cpu = in(reg) per_cpu,
            cptr = in(reg) CPTR_EL2_VALUE,
            vtcr = in(reg) vtcr,
            midr = in(reg) midr,
            hcr = in(reg) HCR_EL2_GUEST,
            tmp = out(reg) _,
            options(nostack),
        );
    }
}

/// Cleans and invalidates the data cache lines covering `[start, start + size)` to the point
/// of coherency, so a guest reading or writing that memory uncached and the hypervisor's
/// cached view agree.
pub fn clean_invalidate_data_cache(start: PhysAddr, size: u64) {
    let mut line = start.raw() & !63;
    let end = start.raw().saturating_add(size);
    while line < end {
        // SAFETY: cleaning and invalidating lines of mapped RAM only moves data to memory.
        unsafe { asm!("dc civac, {}", in(reg) line, options(nostack, preserves_flags)) };
        line += 64;
    }
    // SAFETY: barrier only.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// Cleans the data cache lines covering `[start, start + size)` to the point of coherency,
/// so a CPU that reads the memory with its caches off (a secondary CPU starting) sees it.
pub fn clean_data_cache(start: PhysAddr, size: u64) {
    let mut line = start.raw() & !63;
    let end = start.raw().saturating_add(size);
    while line < end {
        // SAFETY: cleaning a line only writes its data back to memory.
        unsafe { asm!("dc cvac, {}", in(reg) line, options(nostack, preserves_flags)) };
        line += 64;
    }
    // SAFETY: barrier only.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// Invalidates the data cache lines covering `[start, start + size)` to the point of
/// coherency, so data written with the caches off is not shadowed by stale lines.
pub fn invalidate_data_cache(start: PhysAddr, size: u64) {
    let mut line = start.raw() & !63;
    let end = start.raw().saturating_add(size);
    while line < end {
        // SAFETY: invalidating a line of memory the hypervisor owns and wrote with the
        // caches off discards nothing but stale copies.
        unsafe { asm!("dc ivac, {}", in(reg) line, options(nostack, preserves_flags)) };
        line += 64;
    }
    // SAFETY: barrier only.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// Turns on the EL2 MMU and caches with the given translation registers.
///
/// # Safety
/// The tables behind `ttbr0` must identity-map all code, data and stack in use, and the
/// memory they occupy must have been invalidated from the data cache.
pub unsafe fn enable_mmu(mair: u64, tcr: u64, ttbr0: u64) {
    // SAFETY: per the caller's contract the new translation maps what runs now at the same
    // addresses, so execution continues seamlessly after the ISB.
    unsafe {
        asm!(
            "msr mair_el2, {mair}",
            "msr tcr_el2, {tcr}",
            "msr ttbr0_el2, {ttbr0}",
            "dsb ish",
            "isb",
            "tlbi alle2",
            "ic iallu",
            "dsb ish",
            "isb",
            "msr sctlr_el2, {sctlr}",
            "isb",
            mair = in(reg) mair,
            tcr = in(reg) tcr,
            ttbr0 = in(reg) ttbr0,
            sctlr = in(reg) SCTLR_EL2_ON,
            options(nostack),
        );
    }
}

/// Makes new page-table descriptors visible to the table walkers.
pub fn table_write_barrier() {
    // SAFETY: barrier only.
    unsafe { asm!("dsb ishst", options(nostack, preserves_flags)) };
}

/// Selects the stage-2 tables (and VMID) used for EL1/EL0 from now on.
pub fn set_stage2(vttbr: u64) {
    // SAFETY: VTTBR_EL2 only affects EL1/EL0 translation, and no guest runs until eret.
    unsafe { asm!("msr vttbr_el2, {}", "isb", in(reg) vttbr, options(nostack, preserves_flags)) };
}

/// Invalidates all stage-1 and stage-2 TLB entries tagged with `vmid`, on every CPU, after
/// making earlier descriptor writes visible (DSB ISHST first, DSB ISH + ISB after).
pub fn tlb_invalidate_vmid(vmid: u16) {
    // SAFETY: TLBI VMALLS12E1IS acts on the VMID in VTTBR_EL2; we switch to the target VMID
    // (keeping the same tables address is harmless: no EL1 code runs in between) and back.
    unsafe {
        asm!(
            "dsb ishst",
            "mrs {saved}, vttbr_el2",
            "bic {tmp}, {saved}, #(0xff << 48)",
            "orr {tmp}, {tmp}, {vmid}, lsl #48",
            "msr vttbr_el2, {tmp}",
            "isb",
            "tlbi vmalls12e1is",
            "dsb ish",
            "msr vttbr_el2, {saved}",
            "isb",
            saved = out(reg) _,
            tmp = out(reg) _,
            vmid = in(reg) u64::from(vmid & 0xff),
            options(nostack, preserves_flags),
        );
    }
}

/// The result of translating a guest virtual address through both stages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The physical address.
    pub address: PhysAddr,
    /// The guest sees this memory as write-back cacheable (inner and outer). When it does
    /// not (its MMU is off, or it mapped the page non-cacheable), the hypervisor's cacheable
    /// view must be cleaned and invalidated around each access.
    pub cacheable: bool,
}

/// Translates `address` as the current vCPU's EL1 would for a read (or a write), through
/// its stage-1 and its stage-2. `None` if either stage faults.
pub fn translate_guest_address(address: GuestVirtAddr, write: bool) -> Option<Translation> {
    let par: u64;
    // SAFETY: AT writes only PAR_EL1, which belongs to the guest: it is saved before and
    // restored after. The guest's EL1 regime is the one loaded, as we are handling its trap.
    unsafe {
        if write {
            asm!(
                "mrs {saved}, par_el1",
                "at s12e1w, {address}",
                "isb",
                "mrs {par}, par_el1",
                "msr par_el1, {saved}",
                address = in(reg) address.raw(),
                saved = out(reg) _,
                par = out(reg) par,
                options(nostack, preserves_flags),
            );
        } else {
            asm!(
                "mrs {saved}, par_el1",
                "at s12e1r, {address}",
                "isb",
                "mrs {par}, par_el1",
                "msr par_el1, {saved}",
                address = in(reg) address.raw(),
                saved = out(reg) _,
                par = out(reg) par,
                options(nostack, preserves_flags),
            );
        }
    }
    if par & 1 != 0 {
        return None;
    }
    Some(Translation {
        address: PhysAddr::new((par & 0x000f_ffff_ffff_f000) | address.page_offset()),
        cacheable: crate::guest_memory::attributes_cacheable((par >> 56) as u8),
    })
}

macro_rules! el1_registers {
    ($macro:ident) => {
        $macro! {
            sctlr_el1, ttbr0_el1, ttbr1_el1, tcr_el1, mair_el1, amair_el1, vbar_el1,
            contextidr_el1, tpidr_el0, tpidrro_el0, tpidr_el1, sp_el0, sp_el1, elr_el1,
            spsr_el1, esr_el1, far_el1, afsr0_el1, afsr1_el1, par_el1, cpacr_el1,
            cntkctl_el1, csselr_el1, cntv_ctl_el0, cntv_cval_el0, vmpidr_el2
        }
    };
}

/// Copies a vCPU's general registers (a context switch does it twice). The compiler's
/// `memcpy` took about 155 instructions for these 264 bytes; pairs of words take 34.
pub fn copy_registers(destination: &mut GuestRegisters, source: &GuestRegisters) {
    const _: () = assert!(core::mem::size_of::<GuestRegisters>() == 264);
    // SAFETY: reads the 264 bytes of `source` and writes the 264 bytes of `destination`,
    // both valid, 8-byte aligned and distinct (one is borrowed shared, one exclusively).
    unsafe {
        asm!(
            "ldp {first}, {second}, [{source}, #0]",
            "stp {first}, {second}, [{destination}, #0]",
            "ldp {first}, {second}, [{source}, #16]",
            "stp {first}, {second}, [{destination}, #16]",
            "ldp {first}, {second}, [{source}, #32]",
            "stp {first}, {second}, [{destination}, #32]",
            "ldp {first}, {second}, [{source}, #48]",
            "stp {first}, {second}, [{destination}, #48]",
            "ldp {first}, {second}, [{source}, #64]",
            "stp {first}, {second}, [{destination}, #64]",
            "ldp {first}, {second}, [{source}, #80]",
            "stp {first}, {second}, [{destination}, #80]",
            "ldp {first}, {second}, [{source}, #96]",
            "stp {first}, {second}, [{destination}, #96]",
            "ldp {first}, {second}, [{source}, #112]",
            "stp {first}, {second}, [{destination}, #112]",
            "ldp {first}, {second}, [{source}, #128]",
            "stp {first}, {second}, [{destination}, #128]",
            "ldp {first}, {second}, [{source}, #144]",
            "stp {first}, {second}, [{destination}, #144]",
            "ldp {first}, {second}, [{source}, #160]",
            "stp {first}, {second}, [{destination}, #160]",
            "ldp {first}, {second}, [{source}, #176]",
            "stp {first}, {second}, [{destination}, #176]",
            "ldp {first}, {second}, [{source}, #192]",
            "stp {first}, {second}, [{destination}, #192]",
            "ldp {first}, {second}, [{source}, #208]",
            "stp {first}, {second}, [{destination}, #208]",
            "ldp {first}, {second}, [{source}, #224]",
            "stp {first}, {second}, [{destination}, #224]",
            "ldp {first}, {second}, [{source}, #240]",
            "stp {first}, {second}, [{destination}, #240]",
            "ldr {first}, [{source}, #256]",
            "str {first}, [{destination}, #256]",
            source = in(reg) source as *const GuestRegisters,
            destination = in(reg) destination as *mut GuestRegisters,
            first = out(reg) _,
            second = out(reg) _,
            options(nostack, preserves_flags),
        );
    }
}

/// Saves the EL1 system registers of the vCPU leaving this CPU.
pub fn save_el1(context: &mut El1Context) {
    macro_rules! save {
        ($($register:ident),*) => {
            $(
                // SAFETY: reading an EL1 register from EL2 has no side effects.
                unsafe { asm!(concat!("mrs {}, ", stringify!($register)), out(reg) context.$register, options(nomem, nostack, preserves_flags)) };
            )*
        };
    }
    el1_registers!(save);
}

/// Loads the EL1 system registers of the vCPU about to run on this CPU.
pub fn restore_el1(context: &El1Context) {
    macro_rules! restore {
        ($($register:ident),*) => {
            $(
                // SAFETY: EL1 registers only affect EL1/EL0, and no guest runs until eret.
                unsafe { asm!(concat!("msr ", stringify!($register), ", {}"), in(reg) context.$register, options(nomem, nostack, preserves_flags)) };
            )*
        };
    }
    el1_registers!(restore);
    // SAFETY: synchronises the writes above before the eret that follows.
    unsafe { asm!("isb", options(nomem, nostack, preserves_flags)) };
}

/// Saves the FP/SIMD registers of the vCPU leaving this CPU.
pub fn save_fp(context: &mut FpContext) {
    let base = context as *mut FpContext;
    // SAFETY: stores 32 x 16 bytes and two words into `context`, which is 16-byte aligned
    // and large enough (its layout is checked by a unit test).
    unsafe {
        asm!(
            ".arch_extension fp",
            ".arch_extension simd",
            "stp q0, q1, [{base}, #0]",
            "stp q2, q3, [{base}, #32]",
            "stp q4, q5, [{base}, #64]",
            "stp q6, q7, [{base}, #96]",
            "stp q8, q9, [{base}, #128]",
            "stp q10, q11, [{base}, #160]",
            "stp q12, q13, [{base}, #192]",
            "stp q14, q15, [{base}, #224]",
            "stp q16, q17, [{base}, #256]",
            "stp q18, q19, [{base}, #288]",
            "stp q20, q21, [{base}, #320]",
            "stp q22, q23, [{base}, #352]",
            "stp q24, q25, [{base}, #384]",
            "stp q26, q27, [{base}, #416]",
            "stp q28, q29, [{base}, #448]",
            "stp q30, q31, [{base}, #480]",
            "mrs {tmp}, fpcr",
            "str {tmp}, [{base}, #512]",
            "mrs {tmp}, fpsr",
            "str {tmp}, [{base}, #520]",
            base = in(reg) base,
            tmp = out(reg) _,
            options(nostack, preserves_flags),
        );
    }
}

/// Loads the FP/SIMD registers of the vCPU about to run on this CPU.
pub fn restore_fp(context: &FpContext) {
    let base = context as *const FpContext;
    // SAFETY: loads from `context` (layout as in `save_fp`); the hypervisor never uses
    // FP/SIMD registers itself, so nothing of ours is overwritten.
    unsafe {
        asm!(
            ".arch_extension fp",
            ".arch_extension simd",
            "ldp q0, q1, [{base}, #0]",
            "ldp q2, q3, [{base}, #32]",
            "ldp q4, q5, [{base}, #64]",
            "ldp q6, q7, [{base}, #96]",
            "ldp q8, q9, [{base}, #128]",
            "ldp q10, q11, [{base}, #160]",
            "ldp q12, q13, [{base}, #192]",
            "ldp q14, q15, [{base}, #224]",
            "ldp q16, q17, [{base}, #256]",
            "ldp q18, q19, [{base}, #288]",
            "ldp q20, q21, [{base}, #320]",
            "ldp q22, q23, [{base}, #352]",
            "ldp q24, q25, [{base}, #384]",
            "ldp q26, q27, [{base}, #416]",
            "ldp q28, q29, [{base}, #448]",
            "ldp q30, q31, [{base}, #480]",
            "ldr {tmp}, [{base}, #512]",
            "msr fpcr, {tmp}",
            "ldr {tmp}, [{base}, #520]",
            "msr fpsr, {tmp}",
            base = in(reg) base,
            tmp = out(reg) _,
            options(nostack, preserves_flags),
        );
    }
}

/// Makes an SMCCC call to the firmware (PSCI on QEMU virt) and returns x0.
pub fn firmware_call(function: u32, arguments: [u64; 3]) -> u64 {
    let result: u64;
    // SAFETY: an SMCCC call to firmware preserves x18-x30 and the stack; x0-x17 may change.
    unsafe {
        asm!(
            "smc #0",
            inout("x0") u64::from(function) => result,
            inout("x1") arguments[0] => _,
            inout("x2") arguments[1] => _,
            inout("x3") arguments[2] => _,
            out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
            out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _,
            out("x15") _, out("x16") _, out("x17") _,
            options(nostack),
        );
    }
    result
}

/// Waits for an event, for ever.
pub fn park() -> ! {
    loop {
        // SAFETY: WFE only waits.
        unsafe { asm!("wfe", options(nomem, nostack, preserves_flags)) };
    }
}

/// Makes the vCPU in `frame` take an exception to its EL1 with syndrome `esr`, as if the
/// instruction at `instruction_address` had raised it (Xen's `inject_undef64_exception`).
pub fn inject_exception(
    frame: &mut crate::vcpu::GuestRegisters,
    esr: u64,
    instruction_address: u64,
) {
    let vbar: u64;
    // SAFETY: the vCPU's EL1 registers are live on this CPU while we handle its trap; we
    // write exactly what the architecture writes when it takes an exception to EL1.
    unsafe {
        asm!("mrs {}, vbar_el1", out(reg) vbar, options(nomem, nostack, preserves_flags));
        asm!(
            "msr elr_el1, {elr}",
            "msr spsr_el1, {spsr}",
            "msr esr_el1, {esr}",
            elr = in(reg) instruction_address,
            spsr = in(reg) frame.pstate,
            esr = in(reg) esr,
            options(nomem, nostack, preserves_flags),
        );
    }
    frame.pc = vbar.wrapping_add(crate::vcpu::el1_vector_offset(frame.pstate));
    frame.pstate = crate::vcpu::INITIAL_PSTATE;
}

/// Powers the machine off through PSCI SYSTEM_OFF when the firmware offers it over SMC;
/// otherwise parks this CPU.
pub fn power_off(psci_over_smc: bool) -> ! {
    if psci_over_smc {
        firmware_call(hypercall_abi::psci::SYSTEM_OFF, [0; 3]);
    }
    park()
}
