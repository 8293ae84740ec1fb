//! EL1 exception handling, and "expected faults" for tests.
//!
//! Every exception reaches [`pv_guest_exception`] with the saved registers. An IRQ
//! from EL1 goes to [`crate::irq::handle`] once a GIC is configured. An
//! unexpected one is reported (`unexpected exception ESR=.. ELR=.. FAR=..`) and the
//! domain shuts down with `SHUTDOWN_crash`.
//!
//! A test that provokes a synchronous exception on purpose first calls [`arm`] with the
//! address of the instruction that faults. If the next synchronous exception's ELR is
//! that address (or the next instruction: an exception-generating instruction such as
//! HVC reports the address after itself), the handler records ESR and ELR, resumes at
//! the next instruction and disarms. The test then reads the record with [`take`].

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::abi::guest::sched_shutdown;
use crate::abi::sched_op::ShutdownReason;
use crate::arch::cpu;
use crate::console::emergency_print;
use crate::irq;

/// Registers saved by the vectors (layout shared with `arch/entry.rs`).
#[repr(C)]
pub struct ExceptionFrame {
    /// x0..x30.
    pub registers: [u64; 31],
    /// ELR_EL1: where `eret` returns.
    pub exception_link: u64,
    /// SPSR_EL1.
    pub saved_status: u64,
    /// Keeps the frame a multiple of 16 bytes.
    padding: u64,
}

const _: () = assert!(core::mem::size_of::<ExceptionFrame>().is_multiple_of(16));

/// The four vector groups, in vector-table order.
const GROUP_NAMES: [&str; 4] = [
    "current EL with SP_EL0",
    "current EL with SP_ELx",
    "lower EL AArch64",
    "lower EL AArch32",
];
/// The four kinds within a group.
const KIND_NAMES: [&str; 4] = ["synchronous", "IRQ", "FIQ", "SError"];

/// A fault a test has armed: the faulting instruction's address (0 = not armed).
static EXPECTED_ADDRESS: AtomicU64 = AtomicU64::new(0);
static FIRED: AtomicBool = AtomicBool::new(false);
static RECORDED_SYNDROME: AtomicU64 = AtomicU64::new(0);
static RECORDED_LINK: AtomicU64 = AtomicU64::new(0);
/// The expected fault resumes at x30 (the caller's return address) instead of the next
/// instruction: for a call into memory that cannot be executed.
static RESUME_AT_RETURN: AtomicBool = AtomicBool::new(false);

/// What an expected fault looked like.
#[derive(Clone, Copy, Debug)]
pub struct FaultRecord {
    /// ESR_EL1.
    pub syndrome: u64,
    /// ELR_EL1 as the exception left it.
    pub exception_link: u64,
}

impl FaultRecord {
    /// ESR_EL1.EC.
    pub fn exception_class(&self) -> u64 {
        (self.syndrome >> 26) & 0x3f
    }
}

/// Expects one synchronous exception at `instruction` (see the module docs).
pub fn arm(instruction: usize) {
    RESUME_AT_RETURN.store(false, Ordering::SeqCst);
    FIRED.store(false, Ordering::SeqCst);
    EXPECTED_ADDRESS.store(instruction as u64, Ordering::SeqCst);
}

/// Expects one instruction abort at `target`, reached by a call (`blr`): the handler
/// records it and resumes at the caller's return address (x30), as if the call had
/// returned.
pub fn arm_call(target: usize) {
    arm(target);
    RESUME_AT_RETURN.store(true, Ordering::SeqCst);
}

/// Disarms, and returns the record if the expected fault happened.
pub fn take() -> Option<FaultRecord> {
    EXPECTED_ADDRESS.store(0, Ordering::SeqCst);
    if FIRED.swap(false, Ordering::SeqCst) {
        Some(FaultRecord {
            syndrome: RECORDED_SYNDROME.load(Ordering::SeqCst),
            exception_link: RECORDED_LINK.load(Ordering::SeqCst),
        })
    } else {
        None
    }
}

/// Vector index of an IRQ taken from EL1 using SP_EL1 (group 1, kind 1).
const IRQ_CURRENT_EL_SPX: u64 = 5;

/// Called by the vectors with the saved registers and the vector index (0..16).
#[no_mangle]
extern "C" fn pv_guest_exception(frame: &mut ExceptionFrame, vector: u64) {
    if vector == IRQ_CURRENT_EL_SPX {
        // The counter first: handlers measure delivery latency from here.
        let entry_time = cpu::counter();
        if irq::handle(entry_time) {
            return;
        }
    }
    let syndrome = cpu::exception_syndrome();
    let is_synchronous = vector.is_multiple_of(4);
    let expected = EXPECTED_ADDRESS.load(Ordering::SeqCst);
    if is_synchronous
        && expected != 0
        && (frame.exception_link == expected || frame.exception_link == expected + 4)
    {
        RECORDED_SYNDROME.store(syndrome, Ordering::SeqCst);
        RECORDED_LINK.store(frame.exception_link, Ordering::SeqCst);
        FIRED.store(true, Ordering::SeqCst);
        EXPECTED_ADDRESS.store(0, Ordering::SeqCst);
        frame.exception_link = if RESUME_AT_RETURN.swap(false, Ordering::SeqCst) {
            frame.registers[30]
        } else {
            expected + 4
        };
        return;
    }

    let group = GROUP_NAMES[(vector as usize / 4) % 4];
    let kind = KIND_NAMES[vector as usize % 4];
    if is_synchronous {
        emergency_print(format_args!(
            "unexpected exception ESR={:#x} ELR={:#x} FAR={:#x} ({kind}, {group})\n",
            syndrome,
            frame.exception_link,
            cpu::fault_address(),
        ));
    } else {
        emergency_print(format_args!(
            "unexpected {kind} exception ({group}) ELR={:#x}\n",
            frame.exception_link,
        ));
    }
    sched_shutdown(ShutdownReason::Crash);
    cpu::halt();
}
