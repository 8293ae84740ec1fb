//! SMCCC and PSCI function ids and return codes, called with `HVC #0`
//! (Arm DEN0022 PSCI, DEN0028 SMCCC; Linux `include/uapi/linux/psci.h`).
//!
//! The function id is in `w0`, arguments in `x1`..`x3`, results in `x0`..`x3`.
//! For SMC32 ids (bit 30 clear) only the low 32 bits of each argument count.

/// `PSCI_VERSION`: returns [`PSCI_VERSION_1_1`].
pub const PSCI_VERSION: u32 = 0x8400_0000;
/// `CPU_SUSPEND` (SMC32).
pub const CPU_SUSPEND_32: u32 = 0x8400_0001;
/// `CPU_SUSPEND` (SMC64): power_state, entry, context.
pub const CPU_SUSPEND_64: u32 = 0xC400_0001;
/// `CPU_OFF`: stop the calling vCPU; returns only on failure.
pub const CPU_OFF: u32 = 0x8400_0002;
/// `CPU_ON` (SMC32).
pub const CPU_ON_32: u32 = 0x8400_0003;
/// `CPU_ON` (SMC64): target MPIDR, entry point (IPA), context id (in the new vCPU's x0).
pub const CPU_ON_64: u32 = 0xC400_0003;
/// `AFFINITY_INFO` (SMC32).
pub const AFFINITY_INFO_32: u32 = 0x8400_0004;
/// `AFFINITY_INFO` (SMC64): target affinity, lowest affinity level.
pub const AFFINITY_INFO_64: u32 = 0xC400_0004;
/// `MIGRATE_INFO_TYPE`: returns [`MIGRATE_INFO_TYPE_TOS_MP`] (no trusted OS to migrate).
pub const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
/// `SYSTEM_OFF`: power the domain off.
pub const SYSTEM_OFF: u32 = 0x8400_0008;
/// `SYSTEM_RESET`: reboot the domain.
pub const SYSTEM_RESET: u32 = 0x8400_0009;
/// `PSCI_FEATURES`: whether a PSCI or SMCCC function id is implemented.
pub const PSCI_FEATURES: u32 = 0x8400_000A;
/// `SYSTEM_SUSPEND` (SMC64).
pub const SYSTEM_SUSPEND_64: u32 = 0xC400_000E;
/// `SYSTEM_RESET2` (SMC64).
pub const SYSTEM_RESET2_64: u32 = 0xC400_0012;

/// `SMCCC_VERSION`: returns [`SMCCC_VERSION_1_2`].
pub const SMCCC_VERSION: u32 = 0x8000_0000;
/// `SMCCC_ARCH_FEATURES`: whether an Arm architecture call is implemented.
pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
/// `SMCCC_ARCH_WORKAROUND_1` (Spectre v2 mitigation).
pub const SMCCC_ARCH_WORKAROUND_1: u32 = 0x8000_8000;
/// `SMCCC_ARCH_WORKAROUND_2` (Spectre v4 mitigation).
pub const SMCCC_ARCH_WORKAROUND_2: u32 = 0x8000_7FFF;
/// Vendor-specific hypervisor service: call UID query (Linux probes it).
pub const VENDOR_HYP_CALL_UID: u32 = 0x8600_FF01;

/// PSCI 1.1, the version Xen's vPSCI reports: `major << 16 | minor`.
pub const PSCI_VERSION_1_1: u32 = 0x0001_0001;
/// SMCCC 1.2, the version Xen reports: `major << 16 | minor`.
pub const SMCCC_VERSION_1_2: u32 = 0x0001_0002;

/// `MIGRATE_INFO_TYPE` result: a trusted OS is MP-capable or absent; no migration.
pub const MIGRATE_INFO_TYPE_TOS_MP: i32 = 2;

/// `AFFINITY_INFO` result: the target is on.
pub const AFFINITY_ON: i32 = 0;
/// `AFFINITY_INFO` result: the target is off.
pub const AFFINITY_OFF: i32 = 1;
/// `AFFINITY_INFO` result: the target is being turned on.
pub const AFFINITY_ON_PENDING: i32 = 2;

/// PSCI `SUCCESS`.
pub const SUCCESS: i32 = 0;
/// PSCI `NOT_SUPPORTED` (also SMCCC's "unknown function").
pub const NOT_SUPPORTED: i32 = -1;
/// PSCI `INVALID_PARAMETERS`.
pub const INVALID_PARAMETERS: i32 = -2;
/// PSCI `DENIED`.
pub const DENIED: i32 = -3;
/// PSCI `ALREADY_ON`: `CPU_ON` for a running vCPU.
pub const ALREADY_ON: i32 = -4;
/// PSCI `ON_PENDING`: `CPU_ON` for a vCPU that is starting.
pub const ON_PENDING: i32 = -5;
/// PSCI `INTERNAL_FAILURE`.
pub const INTERNAL_FAILURE: i32 = -6;
/// PSCI `NOT_PRESENT`.
pub const NOT_PRESENT: i32 = -7;
/// PSCI `DISABLED`.
pub const DISABLED: i32 = -8;
/// PSCI `INVALID_ADDRESS`: bad `CPU_ON` entry point.
pub const INVALID_ADDRESS: i32 = -9;

/// The `x0` value for a PSCI/SMCCC return code: sign-extended to 64 bits.
pub const fn ret(code: i32) -> u64 {
    code as i64 as u64
}

/// Whether a function id uses the SMC64 calling convention (bit 30).
pub const fn is_smc64(function_id: u32) -> bool {
    function_id & (1 << 30) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_codes_sign_extend() {
        assert_eq!(ret(NOT_SUPPORTED), u64::MAX);
        assert_eq!(ret(INVALID_ADDRESS), (-9i64) as u64);
        assert_eq!(ret(SUCCESS), 0);
    }

    #[test]
    fn calling_convention_bit() {
        assert!(is_smc64(CPU_ON_64));
        assert!(!is_smc64(CPU_ON_32));
        assert!(!is_smc64(SMCCC_VERSION));
    }
}
