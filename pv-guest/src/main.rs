//! pv-guest: a paravirtualised AArch64 guest kernel, the hypervisor's test vehicle.
//!
//! It is entered like Linux on Xen (EL1h, MMU and caches off, x0 = device tree, at the
//! first byte of its image), is position independent (relocates itself), and speaks to
//! the hypervisor only through Xen's guest ABI (`hypercall-abi`). The same image boots
//! on our hypervisor and as dom0 of real Xen 4.17, which is the reference.
//!
//! Boot: `arch/entry.rs` (relocate, bss, stack, vectors) → [`pv_guest_main`]: read the
//! device tree, build the identity map and turn on the MMU and caches, then run the
//! scenarios the command line names (`tests/`) and shut down: poweroff when every test
//! passed, crash otherwise.
//!
//! Interrupts (only for the scenarios that need them, set up by [`platform`]): a GIC
//! driver ([`gic`]), IRQ dispatch and waiting ([`irq`]), Xen event channels
//! ([`events`]), the virtual timer ([`timer`]) and secondary vCPUs ([`smp`]); grant
//! tables ([`grants`]) for the block split driver's scenarios.

#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]

mod arch;
mod console;
mod dt;
mod events;
mod exceptions;
mod gic;
mod grants;
mod irq;
mod mmu;
mod platform;
mod smp;
mod tests;
mod timer;

/// The hypercall ABI (Xen's guest ABI: numbers, errno, `hvc` wrappers).
use hypercall_abi as abi;

use abi::guest::sched_shutdown;
use abi::sched_op::ShutdownReason;
use dt::{DtError, MemoryRange};

extern "C" {
    /// First byte of the image (linker script).
    static __image_start: u8;
    /// One past the last byte of the image, bss included (linker script).
    static __image_end: u8;
}

/// Rust entry, called once by `arch/entry.rs` with the MMU off.
///
/// `device_tree` is x0 at entry, `load_base` where the image was loaded, and
/// `bad_relocations` how many relocations were not R_AARCH64_RELATIVE (and skipped).
#[no_mangle]
extern "C" fn pv_guest_main(device_tree: u64, load_base: u64, bad_relocations: u64) -> ! {
    arch::cpu::set_cpu_index(0);
    // SAFETY: x0 points at the tree the hypervisor gave us (checked for null and
    // alignment inside); it stays in RAM we never write.
    let tree = unsafe { dt::read(device_tree) };
    let image = (
        core::ptr::addr_of!(__image_start) as usize,
        core::ptr::addr_of!(__image_end) as usize,
    );

    // Without a memory node, map the gigabyte we were loaded into as RAM: enough to run
    // and report the error.
    let fallback = [MemoryRange {
        base: load_base & !((1 << 30) - 1),
        size: 1 << 30,
    }];
    let ram: &[MemoryRange] = match &tree {
        Ok(info) => info.memory(),
        Err(_) => &fallback,
    };
    // SAFETY: called once, MMU off; `ram` holds the image, stack and tree (they are in
    // the RAM the tree describes, or in the gigabyte we were loaded into).
    let map_report = unsafe { mmu::build_and_enable(ram, image) };

    // The report's first line must be `running N tests`: only problems print before it.
    if bad_relocations != 0 {
        println!("pv-guest: error: {bad_relocations} relocations were not R_AARCH64_RELATIVE");
    }
    if map_report.ram_out_of_range != 0 || map_report.ram_without_table != 0 {
        println!(
            "pv-guest: warning: RAM not mapped: {} ranges beyond 39 bits, {} gigabytes without a table",
            map_report.ram_out_of_range, map_report.ram_without_table
        );
    }
    let boot = match tree {
        Ok(info) => info,
        Err(error) => fail_boot(error),
    };
    console::set_fallback_uart(boot.sbsa_uart);
    if boot.memory_dropped != 0 {
        println!(
            "pv-guest: warning: {} memory ranges beyond the first {} ignored",
            boot.memory_dropped,
            dt::MAX_MEMORY_RANGES
        );
    }

    let context = tests::Context { boot };
    let (_passed, failed) = tests::run(&context);
    console::flush();
    let reason = if failed == 0 {
        ShutdownReason::Poweroff
    } else {
        ShutdownReason::Crash
    };
    let errno = sched_shutdown(reason);
    println!("pv-guest: SCHEDOP_shutdown({reason:?}) returned -{errno:?}");
    sched_shutdown(ShutdownReason::Crash);
    arch::cpu::halt();
}

/// Reports an unusable device tree and crashes the domain.
fn fail_boot(error: DtError) -> ! {
    println!("pv-guest: error: device tree: {error}");
    sched_shutdown(ShutdownReason::Crash);
    arch::cpu::halt();
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    console::emergency_print(format_args!("pv-guest: panic: {info}\n"));
    sched_shutdown(ShutdownReason::Crash);
    arch::cpu::halt();
}
