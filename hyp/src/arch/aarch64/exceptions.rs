//! EL2 exception vectors: save a trapping vCPU's general registers into this CPU's frame,
//! call the Rust handler, and resume whichever vCPU the frame then holds.
//!
//! TPIDR_EL2 points at this CPU's [`PerCpu`], whose first field is the register frame, so
//! the save and restore paths need no other state. The hypervisor itself never runs with
//! interrupts unmasked: it is entered only from guests and leaves by `eret`.
//!
//! One hypercall never reaches Rust: `xen_version(XENVER_version)`, whose answer is a
//! constant of the build and needs no state, no lock and no saved frame. Guests (Linux
//! among them) issue it to probe for the hypervisor and benchmarks use it as the null
//! hypercall, so the vector answers it in 15 instructions from two scratch registers. Every
//! other exit, and this one with any other sub-op, takes the full path below; both paths
//! give the same answer (`hypercall::XEN_VERSION`).
//!
//! Three kinds of exit go half way first: only the registers a call clobbers (x0-x18,
//! x30) and the return address are saved before a handler that may answer by itself. A
//! load with a valid syndrome goes to `handle_guest_read` (a read of a virtual GIC
//! register: an identification register without the lock, any other through
//! `Hypervisor::answer_register_read`); a hypercall that involves only its
//! caller (`hypercall::is_local`: xen_version, console_io) to
//! `handle_guest_local_hypercall` (`Hypervisor::answer_local_hypercall`); an
//! event_channel_op, which never switches vCPUs here, to `handle_guest_event_channel_op`
//! (`Hypervisor::answer_event_channel_op`); and every
//! physical interrupt to `handle_guest_irq_partially`, which acknowledges it and handles
//! the guest's virtual timer (`Hypervisor::answer_interrupt`), passing any other on
//! acknowledged. When the handler declines, the vector saves the rest (x19-x29, still
//! live, and SPSR) and takes the full path.

use super::cpu::PerCpu;
use core::arch::global_asm;

global_asm!(
    r#"
/* The partial save of an exit a handler may answer by itself: only the registers a call
   clobbers (x0-x18, x30) and the return address; x19-x29 stay live in the callee-saved
   registers throughout. x0 = this CPU's PerCpu; the guest's x0 and x1 are on the stack;
   x1 is left as it was (the handler's second argument). */
.macro SAVE_CALLER_SAVED
    stp     x2, x3, [x0, #16]
    stp     x4, x5, [x0, #32]
    stp     x6, x7, [x0, #48]
    stp     x8, x9, [x0, #64]
    stp     x10, x11, [x0, #80]
    stp     x12, x13, [x0, #96]
    stp     x14, x15, [x0, #112]
    stp     x16, x17, [x0, #128]
    str     x18, [x0, #144]
    mrs     x2, elr_el2
    stp     x30, x2, [x0, #240]
    ldp     x2, x3, [sp], #16
    stp     x2, x3, [x0]
.endm

/* The rest of the frame: x19-x29 and SPSR (x0 = this CPU's PerCpu; clobbers x1). */
.macro SAVE_CALLEE_SAVED
    str     x19, [x0, #152]
    stp     x20, x21, [x0, #160]
    stp     x22, x23, [x0, #176]
    stp     x24, x25, [x0, #192]
    stp     x26, x27, [x0, #208]
    stp     x28, x29, [x0, #224]
    mrs     x1, spsr_el2
    str     x1, [x0, #256]
.endm

/* The whole frame. The guest's x0 and x1 are already on the stack (the vectors' first
   instruction). */
.macro SAVE_GUEST_REGISTERS_REST
    mrs     x0, tpidr_el2
    SAVE_CALLER_SAVED
    SAVE_CALLEE_SAVED
.endm

/* Returns to the guest with the frame's x0-x18, x30 and return address (x0 = this
   CPU's PerCpu): all a partial save saved; x19-x29 and SPSR are live or restored. */
.macro RESUME_CALLER_SAVED
    ldp     x30, x1, [x0, #240]
    msr     elr_el2, x1
    ldp     x2, x3, [x0, #16]
    ldp     x4, x5, [x0, #32]
    ldp     x6, x7, [x0, #48]
    ldp     x8, x9, [x0, #64]
    ldp     x10, x11, [x0, #80]
    ldp     x12, x13, [x0, #96]
    ldp     x14, x15, [x0, #112]
    ldp     x16, x17, [x0, #128]
    ldr     x18, [x0, #144]
    ldp     x0, x1, [x0]
    eret
    dsb     nsh
    isb
.endm

.macro SAVE_GUEST_REGISTERS
    stp     x0, x1, [sp, #-16]!
    SAVE_GUEST_REGISTERS_REST
.endm

.macro VECTOR target
    .balign 0x80
    b       \target
.endm

    .section .text.vectors, "ax"
    .balign 0x800
    .global hyp_vectors
hyp_vectors:
    VECTOR  hyp_fault_entry         /* current EL, SP0: sync */
    VECTOR  hyp_fault_entry         /* irq */
    VECTOR  hyp_fault_entry         /* fiq */
    VECTOR  hyp_fault_entry         /* serror */
    VECTOR  hyp_fault_entry         /* current EL, SPx: sync */
    VECTOR  hyp_fault_entry         /* irq */
    VECTOR  hyp_fault_entry         /* fiq */
    VECTOR  hyp_fault_entry         /* serror */
    VECTOR  guest_sync_entry        /* lower EL, AArch64: sync */
    VECTOR  guest_irq_entry         /* irq */
    VECTOR  guest_irq_entry         /* fiq */
    VECTOR  guest_serror_entry      /* serror */
    VECTOR  hyp_fault_entry         /* lower EL, AArch32: never (HCR_EL2.RW = 1) */
    VECTOR  hyp_fault_entry
    VECTOR  hyp_fault_entry
    VECTOR  hyp_fault_entry

guest_sync_entry:
    stp     x0, x1, [sp, #-16]!
    /* Fast path: HVC #0xEA1 (EC 0x16, IL 1) with x16 = xen_version and w0 = XENVER_version.
       Xen's ABI lets a hypercall clobber x16 and its argument registers; this one
       clobbers nothing but x0, the result. */
    mrs     x0, esr_el2
    movz    x1, #{hvc_esr_low}
    movk    x1, #{hvc_esr_high}, lsl #16
    cmp     x0, x1
    b.ne    guest_sync_other
    ldr     x0, [sp]
    cmp     x16, #{xen_version_number}
    ccmp    w0, #{xenver_version}, #0, eq
    b.ne    guest_hypercall_other
    movz    x0, #{version_low}
    movk    x0, #{version_high}, lsl #16
    ldr     x1, [sp, #8]
    add     sp, sp, #16
    eret
    dsb     nsh
    isb
guest_hypercall_other:
    /* xen_version's other sub-ops and console_io involve only the caller, its console and
       its memory (hypercall::is_local): answered by handle_guest_local_hypercall with
       only the caller-saved registers saved. */
    cmp     x16, #{event_channel_op_number}
    b.eq    guest_event_channel_op
    cmp     x16, #{xen_version_number}
    ccmp    x16, #{console_io_number}, #4, ne
    b.ne    guest_sync_full
    mrs     x0, tpidr_el2
    SAVE_CALLER_SAVED
    bl      handle_guest_local_hypercall    /* (PerCpu) */
    cbz     w0, guest_partial_declined
    mrs     x0, tpidr_el2
    RESUME_CALLER_SAVED

guest_event_channel_op:
    /* Every event-channel operation lets its caller go on: answered by
       handle_guest_event_channel_op with only the caller-saved registers saved. */
    mrs     x0, tpidr_el2
    SAVE_CALLER_SAVED
    bl      handle_guest_event_channel_op   /* (PerCpu) */
    cbz     w0, guest_partial_declined
    mrs     x0, tpidr_el2
    RESUME_CALLER_SAVED

guest_sync_other:
    /* A load with a valid syndrome (data abort, ISV = 1, WnR = 0) may be one the handler
       answers by itself (handle_guest_read). The handler checks the syndrome again. */
    tbz     x0, #24, guest_sync_full
    tbnz    x0, #6, guest_sync_full
    lsr     x1, x0, #26
    cmp     x1, #{data_abort_lower}
    b.ne    guest_sync_full
    mov     x1, x0
    mrs     x0, tpidr_el2
    SAVE_CALLER_SAVED
    bl      handle_guest_read               /* (PerCpu, ESR) */
    cbz     w0, guest_partial_declined
    mrs     x0, tpidr_el2
    RESUME_CALLER_SAVED

guest_partial_declined:
    /* The frame holds all but x19-x29 and SPSR, unchanged by the handler: complete it. */
    mrs     x0, tpidr_el2
    SAVE_CALLEE_SAVED
    bl      handle_guest_sync
    b       guest_resume

guest_sync_full:
    SAVE_GUEST_REGISTERS_REST
    bl      handle_guest_sync
    b       guest_resume

guest_irq_entry:
    /* Half way first: the guest's virtual timer is handled with only the caller-saved
       registers saved (handle_guest_irq_partially); any other interrupt, acknowledged,
       goes on to the full path. */
    stp     x0, x1, [sp, #-16]!
    mrs     x0, tpidr_el2
    SAVE_CALLER_SAVED
    bl      handle_guest_irq_partially      /* (PerCpu) */
    cbz     w0, guest_irq_declined
    mrs     x0, tpidr_el2
    RESUME_CALLER_SAVED
guest_irq_declined:
    mrs     x0, tpidr_el2
    SAVE_CALLEE_SAVED
    bl      handle_guest_irq
    b       guest_resume

guest_serror_entry:
    SAVE_GUEST_REGISTERS
    bl      handle_guest_serror
    b       guest_resume

hyp_fault_entry:
    mrs     x0, esr_el2
    mrs     x1, elr_el2
    mrs     x2, far_el2
    bl      handle_hyp_fault
    b       .

/* Restores the frame of TPIDR_EL2's PerCpu and returns to that vCPU. */
    .global guest_resume
guest_resume:
    mrs     x0, tpidr_el2
    ldr     x1, [x0, #256]
    msr     spsr_el2, x1
    ldr     x19, [x0, #152]
    ldp     x20, x21, [x0, #160]
    ldp     x22, x23, [x0, #176]
    ldp     x24, x25, [x0, #192]
    ldp     x26, x27, [x0, #208]
    ldp     x28, x29, [x0, #224]
    RESUME_CALLER_SAVED

/* Drops the current hypervisor stack and enters the vCPU in this CPU's frame. */
    .global enter_guest
enter_guest:
    mrs     x0, tpidr_el2
    ldr     x1, [x0, #{stack_top}]
    mov     sp, x1
    b       guest_resume
"#,
    stack_top = const core::mem::offset_of!(PerCpu, stack_top),
    data_abort_lower = const crate::esr::class::DATA_ABORT_LOWER,
    hvc_esr_low = const HYPERCALL_ESR & 0xffff,
    hvc_esr_high = const HYPERCALL_ESR >> 16,
    xen_version_number = const hypercall_abi::hypercall::XEN_VERSION,
    console_io_number = const hypercall_abi::hypercall::CONSOLE_IO,
    event_channel_op_number = const hypercall_abi::hypercall::EVENT_CHANNEL_OP,
    xenver_version = const hypercall_abi::xen_version::VERSION,
    version_low = const crate::hypercall::XEN_VERSION & 0xffff,
    version_high = const crate::hypercall::XEN_VERSION >> 16,
);

/// ESR_EL2 of `HVC #0xEA1` from AArch64: exception class 0x16, a 32-bit instruction, the
/// Xen tag as the immediate.
const HYPERCALL_ESR: u64 =
    (crate::esr::class::HVC64 as u64) << 26 | 1 << 25 | hypercall_abi::HYPERCALL_IMMEDIATE as u64;
const _: () = assert!(crate::hypercall::XEN_VERSION >> 32 == 0);

unsafe extern "C" {
    /// The vector table (2 KiB aligned), for VBAR_EL2.
    pub static hyp_vectors: u8;
    /// Resets SP to this CPU's stack top and enters the vCPU held in its frame.
    pub fn enter_guest() -> !;
}

#[unsafe(no_mangle)]
extern "C" fn handle_guest_sync(per_cpu: &mut PerCpu) {
    let esr = super::cpu::read_esr_el2();
    let far = super::cpu::read_far_el2();
    let hpfar = super::cpu::read_hpfar_el2();
    let exit = crate::esr::decode_guest_exit(esr, far, hpfar);
    crate::hypervisor::handle_guest_exit(&mut per_cpu.cpu, exit, esr);
}

/// A load that trapped (the vectors pass its ESR_EL2), with only x0-x18, x30 and the
/// return address in the frame: true when answered (the vectors restore those and
/// resume), false to take the full path.
#[unsafe(no_mangle)]
extern "C" fn handle_guest_read(per_cpu: &mut PerCpu, esr: u64) -> bool {
    let far = super::cpu::read_far_el2();
    let hpfar = super::cpu::read_hpfar_el2();
    crate::hypervisor::handle_guest_read(&mut per_cpu.cpu, esr, far, hpfar)
}

/// `HVC #0xEA1` with x16 = xen_version or console_io, with only x0-x18, x30 and the
/// return address in the frame: true when answered (the vectors restore those and
/// resume), false to take the full path.
#[unsafe(no_mangle)]
extern "C" fn handle_guest_local_hypercall(per_cpu: &mut PerCpu) -> bool {
    crate::hypervisor::handle_guest_local_hypercall(&mut per_cpu.cpu)
}

/// `HVC #0xEA1` with x16 = event_channel_op, with only x0-x18, x30 and the return address
/// in the frame: true when answered, false to take the full path.
#[unsafe(no_mangle)]
extern "C" fn handle_guest_event_channel_op(per_cpu: &mut PerCpu) -> bool {
    crate::hypervisor::handle_guest_event_channel_op(&mut per_cpu.cpu)
}

/// A physical interrupt taken from a guest, with only x0-x18, x30 and the return address
/// in the frame: true when handled (the vectors restore those and resume), false to take
/// the full path, [`handle_guest_irq`].
#[unsafe(no_mangle)]
extern "C" fn handle_guest_irq_partially(per_cpu: &mut PerCpu) -> bool {
    crate::hypervisor::handle_guest_interrupt_partially(&mut per_cpu.cpu)
}

#[unsafe(no_mangle)]
extern "C" fn handle_guest_irq(per_cpu: &mut PerCpu) {
    crate::hypervisor::handle_guest_interrupt(&mut per_cpu.cpu);
}

#[unsafe(no_mangle)]
extern "C" fn handle_guest_serror(per_cpu: &mut PerCpu) {
    let esr = super::cpu::read_esr_el2();
    crate::hypervisor::handle_guest_serror(&mut per_cpu.cpu, esr);
}

// An exception taken from EL2 itself is a hypervisor bug, never a guest's doing (guest
// faults arrive at the lower-EL vectors): stop everything, loudly.
#[allow(clippy::panic)]
#[unsafe(no_mangle)]
extern "C" fn handle_hyp_fault(esr: u64, elr: u64, far: u64) -> ! {
    panic!(
        "hypervisor fault: ESR {:#x} at PC {:#x}, FAR {:#x}",
        esr, elr, far
    );
}
