//! Entry from the boot loader: the arm64 Image header, self-relocation, the boot stack,
//! and the jump into Rust.
//!
//! The image is linked at address 0 and built position independent, so whichever address
//! QEMU or the Raspberry Pi firmware loads it at, the entry code applies its own
//! `R_AARCH64_RELATIVE` relocations before any Rust code runs. The MMU and data cache are
//! off at this point, so the relocated words go straight to memory.

use core::arch::global_asm;

/// Bytes of boot stack for each physical CPU.
pub const BOOT_STACK_SIZE: usize = 128 * 1024;
unsafe extern "C" {
    /// Where PSCI CPU_ON starts a secondary CPU (x0 = its CPU index).
    pub fn secondary_entry();
    /// [`MAX_CPUS`] stubs of 8 bytes; stub `n` enters [`secondary_entry`] with `x0 = n`.
    fn spin_table_entries();
}

/// Where a CPU released from a spin table must jump to start as CPU `index`.
pub fn spin_table_entry(index: usize) -> u64 {
    spin_table_entries as *const () as u64 + 8 * (index.min(MAX_CPUS - 1) as u64)
}

/// Physical CPUs the hypervisor can run on.
pub const MAX_CPUS: usize = 8;

/// Per-CPU hypervisor stacks, 16-byte aligned (the AAPCS64 stack alignment).
#[repr(C, align(16))]
pub struct Stacks(pub [[u8; BOOT_STACK_SIZE]; MAX_CPUS]);

/// The stacks live in .bss; the entry code points SP at the top of CPU 0's.
#[unsafe(no_mangle)]
pub static mut HYP_STACKS: Stacks = Stacks([[0; BOOT_STACK_SIZE]; MAX_CPUS]);

global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    /* arm64 Image header (Documentation/arch/arm64/booting.rst) */
    b       1f                  /* code0: branch over the header */
    .word   0                   /* code1 */
    .quad   0x80000             /* text_offset: load 512 KiB above a 2 MiB boundary */
    .quad   __image_size        /* image_size, including .bss */
    .quad   0xa                 /* flags: little endian, 4 KiB pages, place anywhere */
    .quad   0, 0, 0             /* res2, res3, res4 */
    .ascii  "ARM\x64"           /* magic */
    .word   0                   /* res5 */
1:
    mov     x19, x0             /* x0 = physical address of the device tree */
    adr     x20, _start         /* where we were loaded (we are linked at 0) */

    /* Only EL2 can host guests: anything else parks the CPU. */
    mrs     x1, CurrentEL
    cmp     x1, #(2 << 2)
    b.ne    .Lpark

    /* The loader cleaned the image to the point of coherency (booting.rst), but lines of
     * it may still sit in the data cache from before. Invalidate them all now, so none can
     * be written back over what we store below with the caches off. */
    mov     x1, x20
    adrp    x2, __image_end
    add     x2, x2, :lo12:__image_end
    bic     x1, x1, #63
6:  dc      ivac, x1
    add     x1, x1, #64
    cmp     x1, x2
    b.lo    6b
    dsb     sy

    /* Apply R_AARCH64_RELATIVE relocations: *(base + offset) = base + addend. */
    adrp    x1, __rela_start
    add     x1, x1, :lo12:__rela_start
    adrp    x2, __rela_end
    add     x2, x2, :lo12:__rela_end
2:  cmp     x1, x2
    b.hs    3f
    ldp     x3, x4, [x1], #16   /* r_offset, r_info */
    ldr     x5, [x1], #8        /* r_addend */
    cmp     w4, #1027           /* R_AARCH64_RELATIVE */
    b.ne    .Lpark              /* any other kind means a broken build */
    add     x5, x5, x20
    str     x5, [x20, x3]
    b       2b
3:
    /* Zero .bss (stacks included). */
    adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
4:  cmp     x1, x2
    b.hs    5f
    stp     xzr, xzr, [x1], #16
    b       4b
5:
    adrp    x1, HYP_STACKS
    add     x1, x1, :lo12:HYP_STACKS
    mov     x2, #{stack_size}
    add     sp, x1, x2
    mov     x0, x19
    mov     x1, x20
    bl      hyp_main
.Lpark:
    wfe
    b       .Lpark

/* Secondary CPUs enter here from PSCI CPU_ON with x0 = their CPU index, MMU off. The
 * image is already relocated; each CPU takes the stack of its index. */
    .global secondary_entry
secondary_entry:
    mrs     x1, CurrentEL
    cmp     x1, #(2 << 2)
    b.ne    .Lpark
    adrp    x1, HYP_STACKS
    add     x1, x1, :lo12:HYP_STACKS
    mov     x2, #{stack_size}
    madd    x1, x0, x2, x1
    add     sp, x1, x2
    bl      secondary_main
    b       .Lpark

    /* Spin-table entry stubs: a CPU released through its cpu-release-addr arrives with no
       argument, so stub n loads index n and goes on as a PSCI-started CPU would. */
    .balign 8
    .global spin_table_entries
spin_table_entries:
    .irp    n, 0, 1, 2, 3, 4, 5, 6, 7
    mov     x0, #\n
    b       secondary_entry
    .endr
    "#,
    stack_size = const BOOT_STACK_SIZE,
);
