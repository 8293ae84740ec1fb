//! SMCCC and PSCI calls from guests (`HVC #0`, or a trapped `SMC #0`), answered the way
//! Xen's virtual PSCI 1.1 does.

use hypercall_abi::decode::{decode_smccc, SmcccCall};
use hypercall_abi::psci;
use hypercall_abi::sched_op::ShutdownReason;

/// PSCI version we implement: 1.1.
pub const PSCI_VERSION: u64 = 0x0001_0001;
/// SMCCC version we implement: 1.1.
pub const SMCCC_VERSION: u64 = 0x0001_0001;

/// SMCCC "not supported" (-1) as it appears in x0.
pub const NOT_SUPPORTED: u64 = u64::MAX;

/// What an SMCCC call asks of the hypervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmcccOutcome {
    /// Write `x0` and resume the caller.
    Return(u64),
    /// The domain asked to power off or reset.
    Shutdown(ShutdownReason),
}

/// Handles an SMCCC call with function id `function` (x0) and arguments x1-x3.
pub fn dispatch(function: u64, args: [u64; 3]) -> SmcccOutcome {
    match decode_smccc(function, args) {
        SmcccCall::PsciVersion => SmcccOutcome::Return(PSCI_VERSION),
        SmcccCall::SmcccVersion => SmcccOutcome::Return(SMCCC_VERSION),
        SmcccCall::MigrateInfoType => SmcccOutcome::Return(2), // no trusted OS to migrate
        SmcccCall::SystemOff => SmcccOutcome::Shutdown(ShutdownReason::Poweroff),
        SmcccCall::SystemReset => SmcccOutcome::Shutdown(ShutdownReason::Reboot),
        SmcccCall::PsciFeatures { function } => SmcccOutcome::Return(match function {
            psci::PSCI_VERSION
            | psci::SYSTEM_OFF
            | psci::SYSTEM_RESET
            | psci::MIGRATE_INFO_TYPE
            | psci::PSCI_FEATURES
            | psci::SMCCC_VERSION => 0,
            _ => NOT_SUPPORTED,
        }),
        _ => SmcccOutcome::Return(NOT_SUPPORTED),
    }
}
