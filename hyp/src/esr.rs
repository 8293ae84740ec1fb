//! Decoding of ESR_EL2 (the exception syndrome) into the reasons a guest exits to us.
//!
//! Pure functions of the register values, so they are unit-tested on the host and can be
//! fuzzed: a guest controls what it traps with, so every syndrome must decode to something.

use crate::addr::{GuestVirtAddr, IntermediatePhysAddr};

/// Exception classes (ESR_ELx.EC) the hypervisor distinguishes (Arm ARM D24.2.40).
pub mod class {
    /// Unknown reason (also what an injected UNDEF reports).
    pub const UNKNOWN: u32 = 0x00;
    /// WFI or WFE trapped.
    pub const WFI_WFE: u32 = 0x01;
    /// FP/SIMD access trapped by CPTR_EL2.TFP.
    pub const FP_ACCESS: u32 = 0x07;
    /// HVC from AArch64 state.
    pub const HVC64: u32 = 0x16;
    /// SMC from AArch64 state.
    pub const SMC64: u32 = 0x17;
    /// MSR, MRS or system instruction trapped.
    pub const SYSTEM_REGISTER: u32 = 0x18;
    /// Instruction abort from a lower exception level.
    pub const INSTRUCTION_ABORT_LOWER: u32 = 0x20;
    /// Instruction abort at the same exception level.
    pub const INSTRUCTION_ABORT_SAME: u32 = 0x21;
    /// PC alignment fault.
    pub const PC_ALIGNMENT: u32 = 0x22;
    /// Data abort from a lower exception level.
    pub const DATA_ABORT_LOWER: u32 = 0x24;
    /// Data abort at the same exception level.
    pub const DATA_ABORT_SAME: u32 = 0x25;
    /// SP alignment fault.
    pub const SP_ALIGNMENT: u32 = 0x26;
    /// SError interrupt.
    pub const SERROR: u32 = 0x2f;
    /// BRK instruction from AArch64 state.
    pub const BRK64: u32 = 0x3c;
}

/// The exception class field of a syndrome.
pub const fn exception_class(esr: u64) -> u32 {
    ((esr >> 26) & 0x3f) as u32
}

/// The instruction-specific syndrome field.
pub const fn iss(esr: u64) -> u32 {
    (esr & 0x01ff_ffff) as u32
}

/// Whether the trapped instruction was 32 bits long (IL); always true for AArch64 guests
/// except for some UNKNOWN syndromes.
pub const fn instruction_is_32bit(esr: u64) -> bool {
    esr & (1 << 25) != 0
}

/// A data access the hypervisor can emulate: the syndrome describes the instruction
/// (ESR ISV = 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmulatableAccess {
    /// Access size in bytes: 1, 2, 4 or 8.
    pub size: u8,
    /// Sign-extend a load (SSE).
    pub sign_extend: bool,
    /// The general register transferred (SRT); 31 means XZR.
    pub register: u8,
    /// Load into a 64-bit register (SF).
    pub sixty_four_bit: bool,
    /// Acquire/release semantics (AR).
    pub acquire_release: bool,
}

impl EmulatableAccess {
    /// Whether the register transferred is x0-x18, x30 or XZR: those a vector that saved
    /// only the caller-saved registers holds in the frame (x19-x29 are still live).
    pub const fn in_partial_frame(&self) -> bool {
        matches!(self.register, 0..=18 | 30 | 31)
    }
}

/// Why a stage-2 abort happened (the fault status code, DFSC/IFSC).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// No translation at this level (0-3).
    Translation(u8),
    /// Access flag fault at this level.
    AccessFlag(u8),
    /// Permission fault at this level.
    Permission(u8),
    /// Anything else (alignment, external abort, TLB conflict, ...): the raw status code.
    Other(u8),
}

impl FaultKind {
    /// Decodes a DFSC/IFSC value.
    pub const fn from_status(status: u8) -> Self {
        let level = status & 0x3;
        match status & 0x3c {
            0x04 => Self::Translation(level),
            0x08 => Self::AccessFlag(level),
            0x0c => Self::Permission(level),
            _ => Self::Other(status),
        }
    }
}

/// A stage-2 (or stage-1 walk) abort taken from the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Abort {
    /// The faulting guest virtual address (FAR_EL2), when valid.
    pub virtual_address: GuestVirtAddr,
    /// The faulting intermediate physical address (from HPFAR_EL2 plus FAR's page offset).
    pub ipa: IntermediatePhysAddr,
    /// The access was a write (WnR); always false for instruction aborts.
    pub write: bool,
    /// The fault happened during a stage-1 table walk (S1PTW).
    pub stage1_walk: bool,
    /// The fault status.
    pub kind: FaultKind,
    /// Set when the access can be emulated (ISV = 1, data aborts only).
    pub access: Option<EmulatableAccess>,
}

/// A trapped system-register access (ESR ISS for EC 0x18).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SystemRegisterAccess {
    /// The register's encoding: (op0, op1, CRn, CRm, op2).
    pub encoding: (u8, u8, u8, u8, u8),
    /// The general register transferred (31 = XZR).
    pub register: u8,
    /// MRS (a read) rather than MSR.
    pub read: bool,
}

/// ICC_SGI1R_EL1's encoding: op0 3, op1 0, CRn 12, CRm 11, op2 5.
pub const ICC_SGI1R_EL1: (u8, u8, u8, u8, u8) = (3, 0, 12, 11, 5);

/// Why a guest vCPU stopped running and entered the hypervisor synchronously.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestExit {
    /// `HVC #immediate`. The preferred return address is already past the instruction.
    Hypercall {
        /// The instruction's immediate (0xEA1 for Xen hypercalls, 0 for SMCCC).
        immediate: u16,
    },
    /// `SMC #immediate` trapped by HCR_EL2.TSC; the return address is the SMC itself.
    SecureMonitorCall {
        /// The instruction's immediate.
        immediate: u16,
    },
    /// WFI (`wait_for_event` false) or WFE (true).
    WaitFor {
        /// The instruction was WFE.
        wait_for_event: bool,
    },
    /// A data abort (load or store) the hypervisor must resolve or refuse.
    DataAbort(Abort),
    /// An instruction fetch abort.
    InstructionAbort(Abort),
    /// A trapped MSR/MRS (for instance a GICv3 SGI through ICC_SGI1R_EL1).
    SystemRegister(SystemRegisterAccess),
    /// The vCPU's first FP/SIMD instruction (CPTR_EL2.TFP): the return address is that
    /// instruction, to run again once its FP/SIMD registers are loaded.
    FloatingPoint,
    /// Something the hypervisor neither expects nor emulates.
    Unhandled {
        /// The exception class.
        class: u32,
    },
}

/// Decodes a synchronous exit from a lower exception level.
///
/// `far` is FAR_EL2 and `hpfar` HPFAR_EL2, both as read right after the exception.
pub fn decode_guest_exit(esr: u64, far: u64, hpfar: u64) -> GuestExit {
    let syndrome = iss(esr);
    match exception_class(esr) {
        class::HVC64 => GuestExit::Hypercall {
            immediate: (syndrome & 0xffff) as u16,
        },
        class::SMC64 => GuestExit::SecureMonitorCall {
            immediate: (syndrome & 0xffff) as u16,
        },
        class::WFI_WFE => GuestExit::WaitFor {
            wait_for_event: syndrome & 1 != 0,
        },
        class::SYSTEM_REGISTER => GuestExit::SystemRegister(SystemRegisterAccess {
            encoding: (
                ((syndrome >> 20) & 0x3) as u8,
                ((syndrome >> 14) & 0x7) as u8,
                ((syndrome >> 10) & 0xf) as u8,
                ((syndrome >> 1) & 0xf) as u8,
                ((syndrome >> 17) & 0x7) as u8,
            ),
            register: ((syndrome >> 5) & 0x1f) as u8,
            read: syndrome & 1 != 0,
        }),
        class::FP_ACCESS => GuestExit::FloatingPoint,
        class::DATA_ABORT_LOWER => GuestExit::DataAbort(decode_abort(syndrome, far, hpfar, true)),
        class::INSTRUCTION_ABORT_LOWER => {
            GuestExit::InstructionAbort(decode_abort(syndrome, far, hpfar, false))
        }
        other => GuestExit::Unhandled { class: other },
    }
}

/// Data-abort ISS bits.
const ISV: u32 = 1 << 24;
const WRITE_NOT_READ: u32 = 1 << 6;
const STAGE1_WALK: u32 = 1 << 7;

/// A load the hypervisor may emulate without the rest of the exit machinery: a data abort
/// (EC 0x24) that is a read, has a valid instruction syndrome and is not a stage-1 table
/// walk. Returns the IPA read and the access, or `None` for any other exit. What
/// [`decode_guest_exit`] gives for the same registers says the same (host tests).
pub fn decode_emulatable_read(
    esr: u64,
    far: u64,
    hpfar: u64,
) -> Option<(IntermediatePhysAddr, EmulatableAccess)> {
    let syndrome = iss(esr);
    let wanted = ISV;
    let mask = ISV | WRITE_NOT_READ | STAGE1_WALK;
    (exception_class(esr) == class::DATA_ABORT_LOWER && syndrome & mask == wanted)
        .then(|| (fault_ipa(far, hpfar), emulatable_access(syndrome)))
}

/// The faulting IPA: HPFAR_EL2.FIPA holds IPA[51:12] in bits [43:4], FAR the page offset.
const fn fault_ipa(far: u64, hpfar: u64) -> IntermediatePhysAddr {
    let ipa_page = ((hpfar >> 4) & 0xff_ffff_ffff) << 12;
    IntermediatePhysAddr::new(ipa_page | (far & 0xfff))
}

/// The access an ISV = 1 data-abort syndrome describes.
const fn emulatable_access(syndrome: u32) -> EmulatableAccess {
    EmulatableAccess {
        size: 1 << ((syndrome >> 22) & 0x3),
        sign_extend: syndrome & (1 << 21) != 0,
        register: ((syndrome >> 16) & 0x1f) as u8,
        sixty_four_bit: syndrome & (1 << 15) != 0,
        acquire_release: syndrome & (1 << 14) != 0,
    }
}

fn decode_abort(syndrome: u32, far: u64, hpfar: u64, data: bool) -> Abort {
    let valid_syndrome = data && syndrome & ISV != 0;
    Abort {
        virtual_address: GuestVirtAddr::new(far),
        ipa: fault_ipa(far, hpfar),
        write: data && syndrome & WRITE_NOT_READ != 0,
        stage1_walk: syndrome & STAGE1_WALK != 0,
        kind: FaultKind::from_status((syndrome & 0x3f) as u8),
        access: valid_syndrome.then(|| emulatable_access(syndrome)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esr(class: u32, iss: u32) -> u64 {
        (u64::from(class) << 26) | (1 << 25) | u64::from(iss)
    }

    #[test]
    fn hypercall_immediates() {
        assert_eq!(
            decode_guest_exit(esr(class::HVC64, 0xea1), 0, 0),
            GuestExit::Hypercall { immediate: 0xea1 }
        );
        assert_eq!(
            decode_guest_exit(esr(class::SMC64, 0), 0, 0),
            GuestExit::SecureMonitorCall { immediate: 0 }
        );
    }

    #[test]
    fn a_trapped_fp_instruction_is_its_own_exit() {
        // EC 0x07 with ISS COND fields (CV=1, COND=0xe) as a trapped AArch64 FP access.
        let exit = decode_guest_exit(esr(class::FP_ACCESS, (1 << 24) | (0xe << 20)), 0, 0);
        assert_eq!(exit, GuestExit::FloatingPoint);
    }

    #[test]
    fn data_abort_with_valid_syndrome() {
        // ISV, 4-byte access (SAS=2), register x5, write, translation fault level 3.
        let syndrome = (1 << 24) | (2 << 22) | (5 << 16) | (1 << 6) | 0x07;
        let exit = decode_guest_exit(esr(class::DATA_ABORT_LOWER, syndrome), 0x1234, 0x3001 << 4);
        let GuestExit::DataAbort(abort) = exit else {
            panic!("{exit:?}")
        };
        assert_eq!(abort.ipa, IntermediatePhysAddr::new(0x0300_1234));
        assert!(abort.write);
        assert_eq!(abort.kind, FaultKind::Translation(3));
        assert_eq!(
            abort.access,
            Some(EmulatableAccess {
                size: 4,
                sign_extend: false,
                register: 5,
                sixty_four_bit: false,
                acquire_release: false
            })
        );
    }

    #[test]
    fn data_abort_without_valid_syndrome_is_not_emulatable() {
        let exit = decode_guest_exit(esr(class::DATA_ABORT_LOWER, 0x0d), 0, 0);
        let GuestExit::DataAbort(abort) = exit else {
            panic!("{exit:?}")
        };
        assert_eq!(abort.access, None);
        assert_eq!(abort.kind, FaultKind::Permission(1));
    }

    #[test]
    fn trapped_sgi_register_write() {
        // MSR ICC_SGI1R_EL1, x3: op0 3 (bits 21:20), op2 5 (19:17), op1 0, CRn 12 (13:10),
        // Rt 3 (9:5), CRm 11 (4:1), direction 0 (write).
        let syndrome = (3 << 20) | (5 << 17) | (12 << 10) | (3 << 5) | (11 << 1);
        assert_eq!(
            decode_guest_exit(esr(class::SYSTEM_REGISTER, syndrome), 0, 0),
            GuestExit::SystemRegister(SystemRegisterAccess {
                encoding: ICC_SGI1R_EL1,
                register: 3,
                read: false
            })
        );
    }

    #[test]
    fn the_emulatable_read_decode_agrees_with_the_full_one() {
        let status = [0x07, 0x0d, 0x06, 0x10];
        for class in [
            class::DATA_ABORT_LOWER,
            class::INSTRUCTION_ABORT_LOWER,
            class::HVC64,
        ] {
            for bits in 0..(1u32 << 3) {
                for register in [0, 18, 19, 30, 31] {
                    for size in 0..4 {
                        let flag =
                            |bit: u32, value: u32| if bits >> bit & 1 != 0 { value } else { 0 };
                        let syndrome = flag(0, ISV)
                            | flag(1, WRITE_NOT_READ)
                            | flag(2, STAGE1_WALK)
                            | size << 22
                            | register << 16
                            | (1 << 15)
                            | status[size as usize];
                        let esr = esr(class, syndrome);
                        let (far, hpfar) = (0x1234_5678, 0x3001 << 4);
                        let light = decode_emulatable_read(esr, far, hpfar);
                        let expected = match decode_guest_exit(esr, far, hpfar) {
                            GuestExit::DataAbort(abort) if !abort.write && !abort.stage1_walk => {
                                abort.access.map(|access| (abort.ipa, access))
                            }
                            _ => None,
                        };
                        assert_eq!(light, expected, "ESR {esr:#x}");
                    }
                }
            }
        }
    }

    #[test]
    fn every_class_decodes() {
        for class in 0..64u32 {
            for iss in [0, 0x01ff_ffff, 0x0100_0000, 0xea1] {
                let _ = decode_guest_exit(esr(class, iss), u64::MAX, u64::MAX);
            }
        }
    }
}
