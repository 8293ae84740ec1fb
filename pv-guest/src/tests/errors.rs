//! `errors`: how the hypervisor refuses what it must refuse.
//!
//! Every expected value here is what Xen 4.17 answers (checked by booting this guest as
//! dom0 of Xen 4.17, and against Xen's sources); the hypervisor copies it.

use super::{expect_errno, expect_return, Context, Failure, Scenario, Test, TestResult};
use crate::abi::console_io::WRITE;
use crate::abi::errno::Errno;
use crate::abi::guest::{hypercall, smccc_call};
use crate::abi::hypercall::{CONSOLE_IO, SCHED_OP, XEN_VERSION};
use crate::abi::psci::PSCI_VERSION;
use crate::arch::cpu;
use crate::exceptions;
use crate::println;

/// The scenario.
pub const SCENARIO: Scenario = Scenario {
    in_default_set: true,
    ..Scenario::named(
        "errors",
        &[
            Test::new("unknown_hypercall_enosys", unknown_hypercall_enosys),
            Test::new("xen_version_unknown_subop", xen_version_unknown_subop),
            Test::new("console_bad_pointer_efault", console_bad_pointer_efault),
            Test::new("console_unknown_subop", console_unknown_subop),
            Test::new("sched_op_unknown", sched_op_unknown),
            Test::new("hvc_bad_immediate_undef", hvc_bad_immediate_undef),
            Test::new("psci_version", psci_version),
            Test::new("smccc_unknown_function", smccc_unknown_function),
        ],
    )
};

/// A sub-op number no interface defines.
const UNKNOWN_SUBOP: u64 = 99;
/// A guest virtual address beyond our 39-bit address space: never mapped.
pub const UNMAPPED_ADDRESS: u64 = 0xdead_0000_0000;

/// `console_io(CONSOLEIO_write, count, address)`, raw.
pub fn console_write_raw(count: u64, address: u64) -> u64 {
    // SAFETY: console_io only reads guest memory; a bad address is the hypervisor's to
    // refuse.
    unsafe { hypercall(CONSOLE_IO, [u64::from(WRITE), count, address, 0, 0]) }
}

fn unknown_hypercall_enosys(_context: &Context) -> TestResult {
    for number in [63, 1000] {
        // SAFETY: no hypercall has these numbers; no pointer is passed.
        let got = unsafe { hypercall(number, [0; 5]) };
        expect_errno(format_args!("hypercall {number}"), got, Errno::ENOSYS)?;
    }
    Ok(())
}

fn xen_version_unknown_subop(_context: &Context) -> TestResult {
    // SAFETY: an unknown sub-op with a null argument.
    let got = unsafe { hypercall(XEN_VERSION, [UNKNOWN_SUBOP, 0, 0, 0, 0]) };
    expect_errno(
        format_args!("xen_version({UNKNOWN_SUBOP})"),
        got,
        Errno::ENOSYS,
    )
}

fn console_bad_pointer_efault(context: &Context) -> TestResult {
    let got = console_write_raw(8, UNMAPPED_ADDRESS);
    expect_errno(
        format_args!("console write from {UNMAPPED_ADDRESS:#x}"),
        got,
        Errno::EFAULT,
    )?;
    // 3 readable bytes at the end of RAM, then 5 past it; deliberately unaligned.
    let straddling = context.boot.memory_end().saturating_sub(3);
    let got = console_write_raw(8, straddling);
    expect_errno(
        format_args!("console write of 8 bytes from {straddling:#x} (end of RAM - 3)"),
        got,
        Errno::EFAULT,
    )
}

fn console_unknown_subop(_context: &Context) -> TestResult {
    // SAFETY: an unknown sub-op; the buffer pointer is null and count 0.
    let got = unsafe { hypercall(CONSOLE_IO, [UNKNOWN_SUBOP, 0, 0, 0, 0]) };
    expect_errno(
        format_args!("console_io({UNKNOWN_SUBOP})"),
        got,
        Errno::ENOSYS,
    )
}

fn sched_op_unknown(_context: &Context) -> TestResult {
    // SAFETY: an unknown sub-op with a null argument.
    let got = unsafe { hypercall(SCHED_OP, [UNKNOWN_SUBOP, 0, 0, 0, 0]) };
    expect_errno(
        format_args!("sched_op({UNKNOWN_SUBOP})"),
        got,
        Errno::ENOSYS,
    )
}

fn hvc_bad_immediate_undef(_context: &Context) -> TestResult {
    let instruction = cpu::hvc_bad_immediate_address();
    exceptions::arm(instruction);
    // SAFETY: the UNDEF it provokes is armed just above.
    unsafe { cpu::hvc_bad_immediate() };
    let Some(record) = exceptions::take() else {
        return Err(Failure::new(
            format_args!("an UNDEF for hvc #0x1234"),
            format_args!("no exception"),
        ));
    };
    println!(
        "errors::hvc_bad_immediate_undef: ESR={:#x} ELR={:#x} (hvc at {instruction:#x})",
        record.syndrome, record.exception_link
    );
    if record.exception_class() != 0 || record.syndrome != HVC_UNDEF_SYNDROME {
        return Err(Failure::new(
            format_args!("ESR {HVC_UNDEF_SYNDROME:#x} (EC 0, unknown reason; IL 1)"),
            format_args!(
                "ESR {:#x} (EC {:#x})",
                record.syndrome,
                record.exception_class()
            ),
        ));
    }
    let expected_link = instruction as u64 + HVC_UNDEF_LINK_OFFSET;
    if record.exception_link != expected_link {
        return Err(Failure::new(
            format_args!("ELR {expected_link:#x} (hvc at {instruction:#x})"),
            format_args!("ELR {:#x}", record.exception_link),
        ));
    }
    Ok(())
}

/// Where Xen's injected UNDEF for a bad HVC immediate leaves ELR_EL1, relative to the
/// HVC instruction: Xen 4.17 injects with the trapped ELR_EL2, which for HVC is the
/// preferred return address, the instruction *after* the HVC.
const HVC_UNDEF_LINK_OFFSET: u64 = 4;

/// The ESR_EL1 Xen 4.17 injects: EC 0 (unknown reason), IL 1 (32-bit instruction),
/// ISS 0.
const HVC_UNDEF_SYNDROME: u64 = 0x0200_0000;

fn psci_version(_context: &Context) -> TestResult {
    let [version, ..] = smccc_call(PSCI_VERSION, [0; 3]);
    println!(
        "errors::psci_version: PSCI {}.{} ({version:#x})",
        (version >> 16) & 0xffff,
        version & 0xffff
    );
    if !(0x0001_0000..=0xffff_ffff).contains(&version) {
        return Err(Failure::new(
            format_args!("PSCI_VERSION >= 0x10000 (1.0)"),
            format_args!("{version:#x}"),
        ));
    }
    Ok(())
}

/// A function id in the vendor-hypervisor range that nothing implements.
const UNKNOWN_FUNCTION: u32 = 0x8600_ff77;

fn smccc_unknown_function(_context: &Context) -> TestResult {
    let [result, ..] = smccc_call(UNKNOWN_FUNCTION, [0; 3]);
    expect_return(
        format_args!("SMCCC {UNKNOWN_FUNCTION:#x}"),
        result,
        SMCCC_UNKNOWN_FUNCTION,
    )
}

/// SMCCC_RET_NOT_SUPPORTED / unknown function: -1 in the whole of x0.
const SMCCC_UNKNOWN_FUNCTION: u64 = u64::MAX;
