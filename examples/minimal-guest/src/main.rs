//! minimal-guest: the smallest correct guest, a template to copy (see `README.md`).
//!
//! Entered like Linux on Xen: at the image's first byte, EL1h, MMU and caches off,
//! x0 = device tree. `_start` (assembly below) relocates the image, zeroes bss, sets SP
//! and the exception vectors; [`guest_main`] prints one line (`CONSOLEIO_write`) and
//! powers off (`SCHEDOP_shutdown`). It needs only `hypercall-abi`, so it runs on our
//! hypervisor and on real Xen alike.

#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

use core::fmt::{self, Write};
use hypercall_abi::guest::{console_write, sched_shutdown, xen_version};
use hypercall_abi::sched_op::ShutdownReason;

core::arch::global_asm!(
    r#"
    .section .text.head, "ax"
    .global _start
_start:
    /* Linux arm64 Image header: 64 bytes, read by the loader (see README.md). */
    b       entry                   /* code0: executed first */
    .long   0                       /* code1 */
    .quad   0                       /* text_offset: load at the 2 MiB boundary itself */
    .quad   __image_size            /* image_size: file + bss (link.ld) */
    .quad   0xa                     /* flags: little-endian, 4 KiB pages, anywhere */
    .quad   0, 0, 0                 /* res2..res4 */
    .ascii  "ARM\x64"               /* magic, at offset 56 */
    .long   0                       /* res5 */

entry:                              /* x0 = device tree: left alone until the call */
    msr     daifset, #0xf           /* no interrupts: we have no handlers for them */
    adr     x20, _start             /* load base = where we run, linked at 0 */

    /* 1. Caches are off: our writes go straight to memory. First invalidate the image
     *    and bss from the D-cache, so no stale line can be written back over them. */
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
    mrs     x3, ctr_el0
    ubfx    x3, x3, #16, #4         /* DminLine = log2(words per line) */
    mov     x4, #4
    lsl     x4, x4, x3              /* smallest D-cache line in bytes */
    mov     x1, x20                 /* 2 MiB aligned, so line aligned */
1:  dc      ivac, x1
    add     x1, x1, x4
    cmp     x1, x2
    b.lo    1b
    dsb     sy

    /* 2. Relocate: each R_AARCH64_RELATIVE entry (offset, info, addend) means
     *    *(base + offset) = base + addend. x21 counts entries of any other type. */
    mov     x21, #0
    adrp    x1, __rela_start        /* adrp+add: PC-relative, +-4 GiB */
    add     x1, x1, :lo12:__rela_start
    adrp    x2, __rela_end
    add     x2, x2, :lo12:__rela_end
2:  cmp     x1, x2
    b.hs    3f
    ldp     x3, x4, [x1], #16       /* r_offset, r_info */
    ldr     x5, [x1], #8            /* r_addend */
    cmp     x4, #1027               /* R_AARCH64_RELATIVE? */
    cinc    x21, x21, ne            /* no: count it and skip it */
    b.ne    2b
    add     x5, x5, x20
    str     x5, [x20, x3]
    b       2b

    /* 3. Zero bss (link.ld makes it a whole number of 16-byte blocks). */
3:  adrp    x1, __bss_start
    add     x1, x1, :lo12:__bss_start
    adrp    x2, __bss_end
    add     x2, x2, :lo12:__bss_end
4:  stp     xzr, xzr, [x1], #16
    cmp     x1, x2
    b.lo    4b

    /* 4. Stack (top of bss) and exception vectors, then Rust. */
    adrp    x1, __stack_top
    add     x1, x1, :lo12:__stack_top
    mov     sp, x1
    adr     x1, vectors
    msr     vbar_el1, x1
    isb
    mov     x1, x21                 /* x0 still holds the device tree */
    bl      guest_main              /* never returns */

    /* 16 vectors of 128 bytes, 2 KiB aligned: all report and crash the domain. */
    .balign 2048
vectors:
    .rept   16
    .balign 128
    b       unexpected_exception
    .endr
    "#
);

/// `println!("...", ...)` to the hypervisor console (see [`Console`]).
macro_rules! println {
    ($($arg:tt)*) => { let _ = writeln!(Console, $($arg)*); };
}
/// `fail!("...", ...)`: prints `minimal-guest: error: ...` and crashes the domain.
macro_rules! fail {
    ($($arg:tt)*) => {{ println!("minimal-guest: error: {}", format_args!($($arg)*)); crash() }};
}

/// Rust entry, called once by `_start` with the MMU off: `device_tree` is the boot
/// `x0` (unused here), `bad_relocations` counts relocations `_start` could not apply.
#[no_mangle]
extern "C" fn guest_main(_device_tree: u64, bad_relocations: u64) -> ! {
    if bad_relocations != 0 {
        fail!("{bad_relocations} relocations not applied");
    }
    // The first hypercall: XENVER_version cannot fail, it answers major << 16 | minor.
    let (major, minor) = xen_version();
    println!("Hello from minimal-guest on Xen {major}.{minor}");
    // Returns only if the hypervisor refused, with the errno it answered.
    let errno = sched_shutdown(ShutdownReason::Poweroff);
    fail!("SCHEDOP_shutdown(poweroff) returned -{errno:?}")
}

/// Target of every exception vector: we expect none, so report and crash.
#[no_mangle]
extern "C" fn unexpected_exception() -> ! {
    let (esr, elr): (u64, u64);
    // SAFETY: reading two EL1 system registers has no side effects.
    unsafe { core::arch::asm!("mrs {}, esr_el1", "mrs {}, elr_el1", out(reg) esr, out(reg) elr) };
    fail!("unexpected exception ESR={esr:#x} ELR={elr:#x}")
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    fail!("panic: {info}")
}

/// `SCHEDOP_shutdown(crash)`: the hypervisor reports the domain as crashed.
fn crash() -> ! {
    sched_shutdown(ShutdownReason::Crash);
    loop {
        // SAFETY: `wfi` only waits; reached only if even the crash shutdown failed.
        unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
    }
}

/// The hypervisor console as a [`fmt::Write`]: one `CONSOLEIO_write` per piece of text.
/// A refusal comes back as `Err(Errno)` (e.g. `EPERM` for a domU of a release Xen);
/// with nowhere else to print, [`println!`] ignores it.
struct Console;

impl Write for Console {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        console_write(text.as_bytes()).map_err(|_errno| fmt::Error)
    }
}
