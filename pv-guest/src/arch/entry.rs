//! Image header, entry point and EL1 exception vectors (assembly).
//!
//! The loader enters at the first byte of the image, in EL1h with the MMU and caches off
//! and x0 = the device tree's address, like Linux on Xen. Before any Rust runs, the
//! entry code:
//! 1. applies the R_AARCH64_RELATIVE relocations of `.rela.dyn` (the image is linked at
//!    0, so each fix-up is `*(base + r_offset) = base + r_addend`);
//! 2. invalidates the bss lines from the data cache (no stale dirty line may later be
//!    evicted over what we write with the MMU off), then zeroes bss;
//! 3. sets SP to the boot stack (in bss) and VBAR_EL1 to [`exception_vectors`];
//! 4. calls `pv_guest_main(device_tree, load_base, bad_relocations)`.
//!
//! A secondary CPU started with PSCI `CPU_ON` enters at `secondary_entry` (MMU off).
//! It finds its [`SecondaryBoot`] (which the boot CPU cleaned to memory) by comparing
//! MPIDR_EL1 with each block's `mpidr` field; it does not trust x0 (the `CPU_ON`
//! context): on Xen 4.17, a `CPU_ON` issued just after `AFFINITY_INFO` reports the vCPU
//! off can see x0 overwritten with 0 (seen in about half the runs under QEMU without
//! icount; the likely cause is the vCPU's own `CPU_OFF` call still writing its result
//! into the new context). It turns on its MMU with the boot CPU's registers before
//! touching any memory through the cache, then sets SP and `VBAR_EL1` and calls
//! `pv_guest_secondary_main(boot, x0 at entry)`.
//!
//! The vectors save x0..x30, ELR_EL1 and SPSR_EL1 in an [`ExceptionFrame`] on the
//! stack and call `pv_guest_exception(frame, kind)`; whatever the handler leaves in the
//! frame is restored before `eret`.
//!
//! [`ExceptionFrame`]: crate::exceptions::ExceptionFrame
//! [`SecondaryBoot`]: crate::smp::SecondaryBoot

/// Size of the boot stack in bss.
pub const STACK_SIZE: usize = 64 * 1024;

core::arch::global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    /* Linux arm64 Image header (Documentation/arch/arm64/booting.rst). */
    b       primary_entry           /* code0 */
    .long   0                       /* code1 */
    .quad   0                       /* text_offset */
    .quad   __image_size            /* image_size: the whole image, bss included */
    .quad   0xa                     /* flags: LE, 4 KiB pages, place anywhere */
    .quad   0                       /* res2 */
    .quad   0                       /* res3 */
    .quad   0                       /* res4 */
    .long   0x644d5241              /* magic "ARM\x64" */
    .long   0                       /* res5 */

    .section .text.boot, "ax"
primary_entry:
    msr     daifset, #0xf
    mov     x19, x0                 /* device tree */
    adr     x20, _start             /* where we were loaded */
    mov     x21, #0                 /* relocations of a type we do not know */

    /* 1. Relocate. */
    adrp    x1, __rela_start
    add     x1, x1, :lo12:__rela_start
    adrp    x2, __rela_end
    add     x2, x2, :lo12:__rela_end
1:  cmp     x1, x2
    b.hs    3f
    ldp     x3, x4, [x1]            /* r_offset, r_info */
    ldr     x5, [x1, #16]           /* r_addend */
    add     x1, x1, #24
    cmp     x4, #1027               /* R_AARCH64_RELATIVE, no symbol */
    b.eq    2f
    add     x21, x21, #1
    b       1b
2:  add     x5, x5, x20
    str     x5, [x20, x3]
    b       1b

    /* 2. Invalidate, then zero bss. */
3:  adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
    mrs     x3, ctr_el0
    ubfx    x3, x3, #16, #4         /* DminLine: log2(words) */
    mov     x4, #4
    lsl     x4, x4, x3              /* smallest data cache line, bytes */
    sub     x5, x4, #1
    bic     x3, x1, x5
4:  cmp     x3, x2
    b.hs    5f
    dc      ivac, x3
    add     x3, x3, x4
    b       4b
5:  dsb     sy
6:  cmp     x1, x2
    b.hs    7f
    stp     xzr, xzr, [x1], #16
    b       6b

    /* 3. Stack and vectors. */
7:  adrp    x1, {stack} + {stack_size}
    add     x1, x1, :lo12:{stack} + {stack_size}
    mov     sp, x1
    adrp    x1, exception_vectors
    add     x1, x1, :lo12:exception_vectors
    msr     vbar_el1, x1
    isb

    /* 4. Rust. */
    mov     x0, x19
    mov     x1, x20
    mov     x2, x21
    bl      pv_guest_main
8:  wfi
    b       8b

    /* Secondary CPUs (PSCI CPU_ON), MMU off. The boot block is found by MPIDR, not
     * taken from x0 (see the module docs). */
    .global secondary_entry
    .balign 8
secondary_entry:
    msr     daifset, #0xf
    mov     x20, x0                 /* the CPU_ON context, only to check it */
    mrs     x1, mpidr_el1
    and     x2, x1, #0xffffff       /* Aff2.Aff1.Aff0 */
    ubfx    x3, x1, #32, #8         /* Aff3 */
    orr     x1, x2, x3, lsl #32
    orr     x1, x1, #(1 << 63)      /* the "filled in" mark */
    adrp    x19, {boot}
    add     x19, x19, :lo12:{boot}
    mov     x2, #{boot_count}
1:  ldr     x3, [x19, #{boot_mpidr}]
    cmp     x3, x1
    b.eq    3f
    add     x19, x19, #{boot_size}
    subs    x2, x2, #1
    b.ne    1b
2:  wfi                             /* no block for this CPU */
    b       2b
3:
    ldr     x1, [x19, #{boot_mair}]
    ldr     x2, [x19, #{boot_tcr}]
    ldr     x3, [x19, #{boot_ttbr}]
    ldr     x4, [x19, #{boot_sctlr}]
    msr     mair_el1, x1
    msr     tcr_el1, x2
    msr     ttbr0_el1, x3
    isb
    tlbi    vmalle1
    ic      iallu
    dsb     ish
    isb
    msr     sctlr_el1, x4
    isb
    ldr     x1, [x19, #{boot_stack}]
    mov     sp, x1
    adrp    x1, exception_vectors
    add     x1, x1, :lo12:exception_vectors
    msr     vbar_el1, x1
    isb
    mov     x0, x19
    mov     x1, x20
    bl      pv_guest_secondary_main
9:  wfi
    b       9b

    /* Exception vectors: 16 entries of 128 bytes, 2 KiB aligned. */
    .section .text.vectors, "ax"
    .balign 2048
    .global exception_vectors
exception_vectors:
    .irp    kind, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    .balign 128
    sub     sp, sp, #{frame_size}
    stp     x0, x1, [sp, #0]
    mov     x0, #\kind
    b       exception_common
    .endr

exception_common:
    stp     x2, x3, [sp, #16]
    stp     x4, x5, [sp, #32]
    stp     x6, x7, [sp, #48]
    stp     x8, x9, [sp, #64]
    stp     x10, x11, [sp, #80]
    stp     x12, x13, [sp, #96]
    stp     x14, x15, [sp, #112]
    stp     x16, x17, [sp, #128]
    stp     x18, x19, [sp, #144]
    stp     x20, x21, [sp, #160]
    stp     x22, x23, [sp, #176]
    stp     x24, x25, [sp, #192]
    stp     x26, x27, [sp, #208]
    stp     x28, x29, [sp, #224]
    mrs     x2, elr_el1
    stp     x30, x2, [sp, #240]
    mrs     x2, spsr_el1
    str     x2, [sp, #256]
    mov     x1, x0
    mov     x0, sp
    bl      pv_guest_exception
    ldr     x2, [sp, #256]
    msr     spsr_el1, x2
    ldp     x30, x2, [sp, #240]
    msr     elr_el1, x2
    ldp     x28, x29, [sp, #224]
    ldp     x26, x27, [sp, #208]
    ldp     x24, x25, [sp, #192]
    ldp     x22, x23, [sp, #176]
    ldp     x20, x21, [sp, #160]
    ldp     x18, x19, [sp, #144]
    ldp     x16, x17, [sp, #128]
    ldp     x14, x15, [sp, #112]
    ldp     x12, x13, [sp, #96]
    ldp     x10, x11, [sp, #80]
    ldp     x8, x9, [sp, #64]
    ldp     x6, x7, [sp, #48]
    ldp     x4, x5, [sp, #32]
    ldp     x2, x3, [sp, #16]
    ldp     x0, x1, [sp, #0]
    add     sp, sp, #{frame_size}
    eret
    "#,
    stack = sym BOOT_STACK,
    stack_size = const STACK_SIZE,
    frame_size = const core::mem::size_of::<crate::exceptions::ExceptionFrame>(),
    boot_mair = const core::mem::offset_of!(crate::smp::SecondaryBoot, memory_attributes),
    boot_tcr = const core::mem::offset_of!(crate::smp::SecondaryBoot, translation_control),
    boot_ttbr = const core::mem::offset_of!(crate::smp::SecondaryBoot, table_base),
    boot_sctlr = const core::mem::offset_of!(crate::smp::SecondaryBoot, system_control),
    boot_stack = const core::mem::offset_of!(crate::smp::SecondaryBoot, stack_top),
    boot_mpidr = const core::mem::offset_of!(crate::smp::SecondaryBoot, mpidr),
    boot_size = const core::mem::size_of::<crate::smp::SecondaryBoot>(),
    boot_count = const crate::dt::MAX_CPUS,
    boot = sym crate::smp::BOOT,
);

extern "C" {
    /// Where a secondary CPU enters (PSCI `CPU_ON`), see the module docs.
    fn secondary_entry();
}

/// The address of the secondary entry point (an IPA: the map is the identity).
pub fn secondary_entry_address() -> u64 {
    secondary_entry as *const () as u64
}

/// The boot stack: 16-byte aligned, in bss (zeroed by the entry code before use).
#[repr(C, align(16))]
pub struct BootStack([u8; STACK_SIZE]);

/// Only ever touched through SP; a `static mut` so it lands in bss and is writable.
#[no_mangle]
pub static mut BOOT_STACK: BootStack = BootStack([0; STACK_SIZE]);
