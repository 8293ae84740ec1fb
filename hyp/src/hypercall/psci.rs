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
    /// PSCI CPU_ON: start vCPU `vcpu` of the caller's domain at `entry` with x0 = `context`.
    CpuOn {
        /// Target vCPU index (MPIDR affinity 0; higher levels must be 0).
        vcpu: u64,
        /// Entry point (an IPA: the target starts with its MMU off).
        entry: u64,
        /// Value for the target's x0.
        context: u64,
    },
    /// PSCI CPU_OFF: the calling vCPU stops until a CPU_ON.
    CpuOff,
    /// PSCI AFFINITY_INFO at level 0 for vCPU `vcpu`.
    AffinityInfo {
        /// Target vCPU index.
        vcpu: u64,
    },
}

/// PSCI return codes as they appear in x0 (sign-extended 32-bit values).
pub fn psci_return(code: i32) -> u64 {
    i64::from(code) as u64
}

/// The vCPU index an MPIDR names: affinity level 0, with every higher level zero (vCPUs
/// of a domain are numbered flat, as their device tree says).
fn vcpu_of(mpidr: u64) -> Option<u64> {
    let higher_levels = mpidr & 0xff_00ff_ff00;
    (higher_levels == 0).then_some(mpidr & 0xff)
}

/// Handles an SMCCC call with function id `function` (x0) and arguments x1-x3.
pub fn dispatch(function: u64, args: [u64; 3]) -> SmcccOutcome {
    match decode_smccc(function, args) {
        SmcccCall::PsciVersion => SmcccOutcome::Return(PSCI_VERSION),
        SmcccCall::SmcccVersion => SmcccOutcome::Return(SMCCC_VERSION),
        SmcccCall::MigrateInfoType => SmcccOutcome::Return(2), // no trusted OS to migrate
        SmcccCall::SystemOff => SmcccOutcome::Shutdown(ShutdownReason::Poweroff),
        SmcccCall::SystemReset => SmcccOutcome::Shutdown(ShutdownReason::Reboot),
        SmcccCall::PsciFeatures { function } => {
            SmcccOutcome::Return(psci_return(hypercall_abi::decode::psci_features(function)))
        }
        SmcccCall::CpuOn {
            target_mpidr,
            entry,
            context,
        } => match vcpu_of(target_mpidr) {
            Some(vcpu) => SmcccOutcome::CpuOn {
                vcpu,
                entry,
                context,
            },
            None => SmcccOutcome::Return(psci_return(psci::INVALID_PARAMETERS)),
        },
        SmcccCall::CpuOff => SmcccOutcome::CpuOff,
        SmcccCall::AffinityInfo {
            target_affinity,
            lowest_level,
        } => match (lowest_level, vcpu_of(target_affinity)) {
            (0, Some(vcpu)) => SmcccOutcome::AffinityInfo { vcpu },
            _ => SmcccOutcome::Return(psci_return(psci::INVALID_PARAMETERS)),
        },
        _ => SmcccOutcome::Return(NOT_SUPPORTED),
    }
}
