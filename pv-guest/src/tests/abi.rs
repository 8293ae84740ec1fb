//! `abi`: Xen ABI conformance, identical on Xen 4.17 (as dom0) and on our hypervisor.
//!
//! The tests never ask which hypervisor they run on; where the two may legitimately
//! differ (dom0 or not, direct-mapped or not) they accept both.

use core::sync::atomic::{AtomicBool, Ordering};

use super::errors::{console_write_raw, UNMAPPED_ADDRESS};
use super::{expect_errno, expect_return, Context, Failure, Return, Scenario, Test, TestResult};
use crate::abi::errno::Errno;
use crate::abi::features::{
    ARM_SMCCC_SUPPORTED, AUTO_TRANSLATED_PHYSMAP, DIRECT_MAPPED, DOM0, NOT_DIRECT_MAPPED,
};
use crate::abi::guest::{console_write, get_features, hypercall};
use crate::abi::hypercall::{
    CONSOLE_IO, EVENT_CHANNEL_OP, GRANT_TABLE_OP, HVM_OP, MEMORY_OP, SCHED_OP, XEN_VERSION,
};
use crate::abi::sched_op::ShutdownReason;
use crate::println;

/// The scenario.
pub const SCENARIO: Scenario = Scenario {
    in_default_set: true,
    ..Scenario::named(
        "abi",
        &[
            Test::new("features", features),
            Test::new("console_short", console_short),
            Test::new("console_long", console_long),
            Test::new("console_empty", console_empty),
            Test::new("console_bad_pointer", console_bad_pointer),
            Test::new("unknown_hypercall", unknown_hypercall),
            Test::new("unknown_subops", unknown_subops),
            Test::new("shutdown_reason_values", shutdown_reason_values),
            Test::new("gic_read_into_any_register", gic_read_into_any_register),
        ],
    )
};

fn features(_context: &Context) -> TestResult {
    let submap = get_features(0).map_err(|errno| {
        Failure::new(
            format_args!("get_features(0) -> Ok"),
            format_args!("-{errno:?}"),
        )
    })?;
    println!("abi::features: submap 0 = {submap:#010x}");
    let has = |bit| submap & (1u32 << bit) != 0;
    for (bit, name) in [
        (AUTO_TRANSLATED_PHYSMAP, "auto_translated_physmap"),
        (ARM_SMCCC_SUPPORTED, "ARM_SMCCC_supported"),
    ] {
        if !has(bit) {
            return Err(Failure::new(
                format_args!("submap 0 with bit {bit} ({name})"),
                format_args!("{submap:#010x}"),
            ));
        }
    }
    // Exactly one of not_direct_mapped / direct_mapped (Xen's dom0 is direct-mapped and
    // reports dom0 as well; our hypervisor reports not_direct_mapped).
    if has(NOT_DIRECT_MAPPED) == has(DIRECT_MAPPED) {
        return Err(Failure::new(
            format_args!(
                "submap 0 with exactly one of bits {NOT_DIRECT_MAPPED} and {DIRECT_MAPPED}"
            ),
            format_args!("{submap:#010x}"),
        ));
    }
    if has(DIRECT_MAPPED) && !has(DOM0) {
        println!("abi::features: direct-mapped but not dom0 (a dom0less direct-mapped domain)");
    }
    // Xen 4.17 knows only submap 0 (XENFEAT_NR_SUBMAPS = 1): any other is -EINVAL.
    match get_features(1) {
        Err(Errno::EINVAL) => Ok(()),
        Ok(other) => Err(Failure::new(
            format_args!("get_features(1) -> -EINVAL"),
            format_args!("{other:#010x}"),
        )),
        Err(errno) => Err(Failure::new(
            format_args!("get_features(1) -> -EINVAL"),
            format_args!("-{errno:?}"),
        )),
    }
}

fn console_result(what: &str, result: Result<(), Errno>) -> TestResult {
    result.map_err(|errno| Failure::new(format_args!("{what} -> Ok"), format_args!("-{errno:?}")))
}

fn console_short(_context: &Context) -> TestResult {
    // The one byte is a newline, so it does not run into the next report line.
    console_result("a 1-byte console write", console_write(b"\n"))
}

/// Bytes written by `console_long`.
const LONG_LENGTH: usize = 4000;
/// Where in [`LongBuffer`] the write starts: it crosses the page boundary at 4096.
const LONG_OFFSET: usize = 2048;

/// Two pages, page aligned.
#[repr(C, align(4096))]
struct LongBuffer([u8; 8192]);

/// The buffer; only `console_long` touches it, guarded by [`LONG_BUFFER_TAKEN`].
static mut LONG_BUFFER: LongBuffer = LongBuffer([0; 8192]);
static LONG_BUFFER_TAKEN: AtomicBool = AtomicBool::new(false);

fn console_long(_context: &Context) -> TestResult {
    if LONG_BUFFER_TAKEN.swap(true, Ordering::Acquire) {
        return Err(Failure::new(
            format_args!("the long buffer free"),
            format_args!("it in use"),
        ));
    }
    // SAFETY: LONG_BUFFER_TAKEN was false and is now ours: no other reference exists.
    let buffer = unsafe { &mut *core::ptr::addr_of_mut!(LONG_BUFFER) };
    let line = &mut buffer.0[LONG_OFFSET..LONG_OFFSET + LONG_LENGTH];
    for (byte, pattern) in line.iter_mut().zip(b"abcdefghij".iter().cycle()) {
        *byte = *pattern;
    }
    line[LONG_LENGTH - 1] = b'\n';
    let result = console_result(
        "a 4000-byte console write across a page",
        console_write(line),
    );
    LONG_BUFFER_TAKEN.store(false, Ordering::Release);
    result
}

fn console_empty(_context: &Context) -> TestResult {
    let byte = b"x";
    let got = console_write_raw(0, byte.as_ptr() as u64);
    expect_return(format_args!("console write of 0 bytes"), got, 0)
}

fn console_bad_pointer(_context: &Context) -> TestResult {
    let got = console_write_raw(8, UNMAPPED_ADDRESS);
    expect_errno(
        format_args!("console write from {UNMAPPED_ADDRESS:#x}"),
        got,
        Errno::EFAULT,
    )
}

fn unknown_hypercall(_context: &Context) -> TestResult {
    // SAFETY: no hypercall has this number; no pointer is passed.
    let got = unsafe { hypercall(63, [0; 5]) };
    expect_errno(format_args!("hypercall 63"), got, Errno::ENOSYS)
}

/// A sub-op no interface defines.
const UNKNOWN_SUBOP: u64 = 0x7777;

/// Each hypercall with sub-op 0x7777, and Xen 4.17's answer.
///
/// grant_table_op is -EINVAL, not -ENOSYS: `do_grant_table_op` rejects a command with
/// bits above GNTTABOP_CMD_MASK (0xfff, the continuation argument) before its switch,
/// unless the command is cache_flush. memory_op masks the command to
/// `cmd & MEMOP_CMD_MASK` (0x37 here) and falls to `arch_memory_op`'s -ENOSYS.
const UNKNOWN_SUBOP_ANSWERS: [(&str, u64, Errno); 7] = [
    ("xen_version", XEN_VERSION, Errno::ENOSYS),
    ("console_io", CONSOLE_IO, Errno::ENOSYS),
    ("sched_op", SCHED_OP, Errno::ENOSYS),
    ("memory_op", MEMORY_OP, Errno::ENOSYS),
    ("event_channel_op", EVENT_CHANNEL_OP, Errno::ENOSYS),
    ("grant_table_op", GRANT_TABLE_OP, Errno::EINVAL),
    ("hvm_op", HVM_OP, Errno::ENOSYS),
];

fn unknown_subops(_context: &Context) -> TestResult {
    let mut first_failure = None;
    for (name, number, errno) in UNKNOWN_SUBOP_ANSWERS {
        // SAFETY: an unknown sub-op with null pointer and zero count.
        let got = unsafe { hypercall(number, [UNKNOWN_SUBOP, 0, 0, 0, 0]) };
        if got != errno.to_return() {
            println!(
                "abi::unknown_subops: {name}({UNKNOWN_SUBOP:#x}) -> {}, Xen answers -{errno:?}",
                Return(got)
            );
            first_failure.get_or_insert((name, got, errno));
        }
    }
    match first_failure {
        None => Ok(()),
        Some((name, got, errno)) => {
            expect_errno(format_args!("{name}({UNKNOWN_SUBOP:#x})"), got, errno)
        }
    }
}

/// Xen's SHUTDOWN_* values (`public/sched.h`), checked at compile time.
const _: () = {
    assert!(ShutdownReason::Poweroff as u32 == 0);
    assert!(ShutdownReason::Reboot as u32 == 1);
    assert!(ShutdownReason::Suspend as u32 == 2);
    assert!(ShutdownReason::Crash as u32 == 3);
    assert!(ShutdownReason::Watchdog as u32 == 4);
    assert!(ShutdownReason::SoftReset as u32 == 5);
};

fn shutdown_reason_values(_context: &Context) -> TestResult {
    let values = [
        ShutdownReason::Poweroff as u32,
        ShutdownReason::Reboot as u32,
        ShutdownReason::Suspend as u32,
        ShutdownReason::Crash as u32,
        ShutdownReason::Watchdog as u32,
        ShutdownReason::SoftReset as u32,
    ];
    if values != [0, 1, 2, 3, 4, 5] {
        return Err(Failure::new(
            format_args!("SHUTDOWN_* = [0, 1, 2, 3, 4, 5]"),
            format_args!("{values:?}"),
        ));
    }
    Ok(())
}

/// A trapped load of an emulated distributor register (GICD_TYPER) gives the same value
/// whichever general register it lands in, x20 and x28 included, and leaves the other
/// registers alone: a hypervisor may answer some loads without saving every register.
fn gic_read_into_any_register(context: &Context) -> TestResult {
    crate::platform::ensure(&context.boot)?;
    let Some(([first, into_x20, into_x28], kept)) =
        crate::gic::distributor_type_in_every_register()
    else {
        return Err(Failure::new(
            format_args!("a configured GIC"),
            format_args!("none"),
        ));
    };
    if first == 0 || into_x20 != first || into_x28 != first {
        return Err(Failure::new(
            format_args!("GICD_TYPER alike in any register"),
            format_args!("{first:#x}, x20 {into_x20:#x}, x28 {into_x28:#x}"),
        ));
    }
    if !kept {
        return Err(Failure::new(
            format_args!("x20 and x28 kept across a trapped load"),
            format_args!("changed"),
        ));
    }
    Ok(())
}
