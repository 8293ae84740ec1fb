//! ESR_EL2 decoding (`hyp::esr::decode_guest_exit`) of arbitrary syndromes, FAR and HPFAR
//! values: it never panics, and what it reports is exactly what the syndrome encodes
//! (sizes 1/2/4/8, registers 0-31, fault levels 0-3, the IPA's page from HPFAR and its
//! offset from FAR), so no later stage is handed an impossible value. The IPA is then
//! classified as the vGIC would (`vgic::Shape::decode_ipa`), whose offsets must fall in the frame.
//! The exit vectors' shorter decode of a load (`esr::decode_emulatable_read`) must agree.
#![no_main]

use hyp::esr::{self, FaultKind, GuestExit};
use hyp::vgic::{self, Frame, GicVersion};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u64, u64, u64, u8)| {
    let (esr_value, far, hpfar, vcpus) = input;
    let class = esr::exception_class(esr_value);
    assert!(class < 64);
    let syndrome = esr::iss(esr_value);
    assert!(syndrome < 1 << 25);
    // The exit vectors' decode of a load they may answer alone agrees with the full one.
    let light = esr::decode_emulatable_read(esr_value, far, hpfar);
    match esr::decode_guest_exit(esr_value, far, hpfar) {
        GuestExit::DataAbort(abort) if !abort.write && !abort.stage1_walk => {
            assert_eq!(light, abort.access.map(|access| (abort.ipa, access)));
        }
        _ => assert_eq!(light, None),
    }
    match esr::decode_guest_exit(esr_value, far, hpfar) {
        GuestExit::Hypercall { immediate } => {
            assert_eq!(class, esr::class::HVC64);
            assert_eq!(u32::from(immediate), syndrome & 0xffff);
        }
        GuestExit::SecureMonitorCall { immediate } => {
            assert_eq!(class, esr::class::SMC64);
            assert_eq!(u32::from(immediate), syndrome & 0xffff);
        }
        GuestExit::WaitFor { wait_for_event } => {
            assert_eq!(class, esr::class::WFI_WFE);
            assert_eq!(wait_for_event, syndrome & 1 != 0);
        }
        GuestExit::FloatingPoint => assert_eq!(class, esr::class::FP_ACCESS),
        GuestExit::SystemRegister(access) => {
            assert_eq!(class, esr::class::SYSTEM_REGISTER);
            let (op0, op1, crn, crm, op2) = access.encoding;
            assert!(op0 < 4 && op1 < 8 && crn < 16 && crm < 16 && op2 < 8);
            assert!(access.register < 32);
        }
        GuestExit::DataAbort(abort) | GuestExit::InstructionAbort(abort) => {
            let data = class == esr::class::DATA_ABORT_LOWER;
            assert!(data || class == esr::class::INSTRUCTION_ABORT_LOWER);
            assert_eq!(abort.virtual_address.raw(), far);
            assert_eq!(abort.ipa.raw() & 0xfff, far & 0xfff);
            assert!(abort.ipa.raw() < 1 << 52, "IPA beyond 52 bits");
            assert_eq!(abort.ipa.raw() >> 12, (hpfar >> 4) & 0xff_ffff_ffff);
            assert!(
                data || !abort.write,
                "an instruction fetch is never a write"
            );
            assert!(data || abort.access.is_none());
            match abort.kind {
                FaultKind::Translation(level)
                | FaultKind::AccessFlag(level)
                | FaultKind::Permission(level) => assert!(level < 4),
                FaultKind::Other(status) => assert!(status < 64),
            }
            if let Some(access) = abort.access {
                assert!(matches!(access.size, 1 | 2 | 4 | 8));
                assert!(access.register < 32);
            }
            let vcpus = usize::from(vcpus % 10);
            for version in [GicVersion::V2, GicVersion::V3] {
                if let Some((frame, offset)) =
                    vgic::Shape::new(version, vcpus).decode_ipa(abort.ipa.raw())
                {
                    let limit = match (frame, version) {
                        (Frame::Distributor, GicVersion::V2) => vgic::DISTRIBUTOR_V2_SIZE,
                        (Frame::Distributor, GicVersion::V3) => vgic::DISTRIBUTOR_V3_SIZE,
                        (Frame::Redistributors, GicVersion::V3) => {
                            vcpus.clamp(1, vgic::MAX_VCPUS) as u64 * vgic::REDISTRIBUTOR_STRIDE
                        }
                        (Frame::Redistributors, GicVersion::V2) => {
                            panic!("GICv2 has no redistributors")
                        }
                    };
                    assert!(offset < limit);
                }
            }
        }
        GuestExit::Unhandled { class: unhandled } => {
            assert_eq!(unhandled, class);
            assert!(![
                esr::class::HVC64,
                esr::class::SMC64,
                esr::class::WFI_WFE,
                esr::class::FP_ACCESS,
                esr::class::SYSTEM_REGISTER,
                esr::class::DATA_ABORT_LOWER,
                esr::class::INSTRUCTION_ABORT_LOWER
            ]
            .contains(&class));
        }
    }
});
