//! The hypervisor's face: register-level decoding of `HVC #0xEA1` hypercalls and of
//! `HVC #0` SMCCC/PSCI calls.
//!
//! [`decode`] does every check that needs no guest memory and no domain state, and
//! answers the errno Xen 4.17 answers for unknown hypercalls and sub-ops. What is
//! left for the hypervisor is stated on each [`Call`] variant: copying the argument
//! struct through the guest's stage-1 translation (`-EFAULT` when that fails),
//! checking ids against domain state, and doing the work.
//!
//! Xen truncates most arguments to the C types of its handlers (`int cmd`,
//! `unsigned int count`, ...): this module does the same, so the upper 32 bits of such
//! registers are ignored exactly as on Xen. The exceptions are `memory_op` and
//! `hvm_op`, whose command is an `unsigned long` on Xen.

use crate::errno::Errno;
use crate::{
    console_io, event_channel_op, grant_table_op, hvm_op, hypercall, memory_op, psci, sched_op,
    vcpu_op, vm_assist, xen_version,
};

/// A guest virtual address taken from a register or a struct.
///
/// The crate never dereferences it: the hypervisor translates it with the calling
/// vCPU's stage-1 tables (Xen's `copy_from_guest` semantics) and fails the call with
/// `-EFAULT` when that is not possible.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct GuestPtr(pub u64);

impl GuestPtr {
    /// The null pointer (some calls require or allow it).
    pub const NULL: GuestPtr = GuestPtr(0);

    /// Whether the pointer is 0.
    pub const fn is_null(self) -> bool {
        self.0 == 0
    }
}

/// The registers of a trapped `HVC #0xEA1`: the number from `x16`, arguments from
/// `x0`..`x4`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HypercallArgs {
    /// `x16`.
    pub number: u64,
    /// `x0`..`x4`.
    pub args: [u64; 5],
}

/// A decoded, register-validated hypercall.
///
/// Sub-op commands (`cmd`) are the validated values of the constants in the sub-op
/// modules (for example [`crate::event_channel_op::SEND`]); only values the variant's
/// documentation lists can appear.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Call {
    /// `xen_version(cmd, arg)`; `cmd` is any of [`crate::xen_version`]'s constants
    /// ([`xen_version::VERSION`] ..= [`xen_version::BUILD_ID`]).
    /// [`xen_version::VERSION`] ignores `arg`; [`xen_version::GET_FEATURES`] reads a
    /// [`xen_version::FeatureInfo`] and answers `-EINVAL` for a `submap_idx` other
    /// than 0.
    XenVersion {
        /// The sub-op.
        cmd: u32,
        /// The argument (meaning depends on `cmd`).
        arg: GuestPtr,
    },
    /// `console_io(CONSOLEIO_write, count, buffer)`: print `count` bytes; result 0.
    ConsoleWrite {
        /// Bytes to write (a 32-bit value).
        count: u64,
        /// The bytes.
        buffer: GuestPtr,
    },
    /// `console_io(CONSOLEIO_read, count, buffer)`: result = bytes copied (0 if none).
    /// `count` is at most [`console_io::READ_MAX_COUNT`] (checked here).
    ConsoleRead {
        /// Room in the buffer.
        count: u64,
        /// Where to copy input to.
        buffer: GuestPtr,
    },
    /// `sched_op(SCHEDOP_yield)`: result 0.
    SchedYield,
    /// `sched_op(SCHEDOP_block)`: sleep until an event is pending; result 0.
    SchedBlock,
    /// `sched_op(SCHEDOP_shutdown, arg)`: read a [`sched_op::SchedShutdown`]; a reason
    /// outside [`sched_op::ShutdownReason`] is `-EINVAL`. No return on success.
    SchedShutdown {
        /// Address of the [`sched_op::SchedShutdown`].
        arg: GuestPtr,
    },
    /// `sched_op(SCHEDOP_poll, arg)`: read a [`sched_op::SchedPoll`].
    SchedPoll {
        /// Address of the [`sched_op::SchedPoll`].
        arg: GuestPtr,
    },
    /// `sched_op(SCHEDOP_watchdog, arg)`: read a [`sched_op::SchedWatchdog`]; id 0 creates
    /// one (result: its id), otherwise timeout 0 destroys and a timeout re-arms it.
    SchedWatchdog {
        /// Address of the [`sched_op::SchedWatchdog`].
        arg: GuestPtr,
    },
    /// `memory_op(cmd, arg)`; `cmd` is one of [`memory_op::INCREASE_RESERVATION`],
    /// [`memory_op::DECREASE_RESERVATION`], [`memory_op::POPULATE_PHYSMAP`]
    /// (argument [`memory_op::MemoryReservation`]), [`memory_op::ADD_TO_PHYSMAP`]
    /// ([`memory_op::AddToPhysmap`]), [`memory_op::REMOVE_FROM_PHYSMAP`]
    /// ([`memory_op::RemoveFromPhysmap`]).
    MemoryOp {
        /// The sub-op (continuation bits already checked to be 0).
        cmd: u32,
        /// Address of the argument struct.
        arg: GuestPtr,
    },
    /// `event_channel_op(cmd, arg)`; `cmd` is one of the 2-level operations:
    /// [`event_channel_op::BIND_INTERDOMAIN`], [`event_channel_op::BIND_VIRQ`],
    /// [`event_channel_op::CLOSE`], [`event_channel_op::SEND`],
    /// [`event_channel_op::STATUS`], [`event_channel_op::ALLOC_UNBOUND`],
    /// [`event_channel_op::BIND_IPI`], [`event_channel_op::BIND_VCPU`],
    /// [`event_channel_op::UNMASK`].
    EventChannelOp {
        /// The sub-op.
        cmd: u32,
        /// Address of the argument struct.
        arg: GuestPtr,
    },
    /// `grant_table_op(cmd, arg, count)`; `cmd` is one of
    /// [`grant_table_op::MAP_GRANT_REF`], [`grant_table_op::UNMAP_GRANT_REF`],
    /// [`grant_table_op::SETUP_TABLE`], [`grant_table_op::COPY`],
    /// [`grant_table_op::QUERY_SIZE`], [`grant_table_op::SET_VERSION`],
    /// [`grant_table_op::GET_VERSION`]. `arg` points at `count` structs.
    GrantTableOp {
        /// The sub-op (continuation bits already checked to be 0).
        cmd: u32,
        /// Address of the first argument struct.
        arg: GuestPtr,
        /// Number of structs, at most `i32::MAX` (checked here).
        count: u32,
    },
    /// `vcpu_op(cmd, vcpu, arg)`; `cmd` is one of
    /// [`vcpu_op::REGISTER_VCPU_INFO`], [`vcpu_op::REGISTER_RUNSTATE_MEMORY_AREA`],
    /// [`vcpu_op::SET_SINGLESHOT_TIMER`], [`vcpu_op::STOP_SINGLESHOT_TIMER`].
    /// The hypervisor answers `-ENOENT` when `vcpu` does not exist.
    VcpuOp {
        /// The sub-op.
        cmd: u32,
        /// The target vCPU id.
        vcpu: u32,
        /// Address of the argument struct (unused by `STOP_SINGLESHOT_TIMER`).
        arg: GuestPtr,
    },
    /// `hvm_op(op, arg)`; `op` is [`hvm_op::SET_PARAM`] or [`hvm_op::GET_PARAM`],
    /// argument [`hvm_op::HvmParam`].
    HvmOp {
        /// The sub-op.
        op: u64,
        /// Address of the [`hvm_op::HvmParam`].
        arg: GuestPtr,
    },
    /// `vm_assist(cmd, kind)`, fully validated: `cmd` is
    /// [`vm_assist::CMD_ENABLE`] or [`vm_assist::CMD_DISABLE`] and `kind` is
    /// [`vm_assist::TYPE_RUNSTATE_UPDATE_FLAG`]. Result 0.
    VmAssist {
        /// Enable or disable.
        cmd: u32,
        /// The assist type.
        kind: u32,
    },
    /// A hypercall that exists but that this ABI answers with a fixed errno without
    /// looking at its arguments (`physdev_op`, `platform_op`, `multicall`, `sysctl`,
    /// `domctl`, `dm_op`: all `-ENOSYS`).
    Unsupported(Errno),
}

/// Decodes a trapped `HVC #0xEA1`.
///
/// `Err` carries the errno for `x0`; `Ok` is a call that passed every register-level
/// check. Unknown hypercall numbers are `-ENOSYS` (Xen/ARM `do_trap_hypercall`).
pub fn decode(args: &HypercallArgs) -> Result<Call, Errno> {
    let [a0, a1, a2, _, _] = args.args;
    // Xen's handlers take `int`/`unsigned int` commands and counts: the low 32 bits.
    let cmd = a0 as u32;
    match args.number {
        hypercall::XEN_VERSION => decode_xen_version(cmd, GuestPtr(a1)),
        hypercall::CONSOLE_IO => decode_console_io(cmd, a1 as u32, GuestPtr(a2)),
        hypercall::SCHED_OP => decode_sched_op(cmd, GuestPtr(a1)),
        hypercall::MEMORY_OP => decode_memory_op(a0, GuestPtr(a1)),
        hypercall::EVENT_CHANNEL_OP => decode_event_channel_op(cmd, GuestPtr(a1)),
        hypercall::GRANT_TABLE_OP => decode_grant_table_op(cmd, GuestPtr(a1), a2 as u32),
        hypercall::VCPU_OP => decode_vcpu_op(cmd, a1 as u32, GuestPtr(a2)),
        hypercall::HVM_OP => decode_hvm_op(a0, GuestPtr(a1)),
        hypercall::VM_ASSIST => decode_vm_assist(cmd, a1 as u32),
        hypercall::PHYSDEV_OP
        | hypercall::PLATFORM_OP
        | hypercall::MULTICALL
        | hypercall::SYSCTL
        | hypercall::DOMCTL
        | hypercall::DM_OP => Ok(Call::Unsupported(Errno::ENOSYS)),
        _ => Err(Errno::ENOSYS),
    }
}

/// Turns a hypercall outcome into the value for `x0`: the result itself, or the
/// sign-extended negative errno.
pub const fn encode_result(result: Result<u64, Errno>) -> u64 {
    match result {
        Ok(value) => value,
        Err(errno) => errno.to_return(),
    }
}

/// `do_xen_version` (`xen/common/kernel.c`): unknown commands fall through to
/// `return -ENOSYS`.
fn decode_xen_version(cmd: u32, arg: GuestPtr) -> Result<Call, Errno> {
    if cmd <= xen_version::BUILD_ID {
        Ok(Call::XenVersion { cmd, arg })
    } else {
        Err(Errno::ENOSYS)
    }
}

/// `do_console_io` (`xen/drivers/char/console.c`): a read count above `INT_MAX` is
/// `-E2BIG`; unknown commands are `-ENOSYS`. Xen's XSM check, which refuses domUs
/// (`-EPERM`) in release builds, is deliberately not applied.
fn decode_console_io(cmd: u32, count: u32, buffer: GuestPtr) -> Result<Call, Errno> {
    match cmd {
        console_io::WRITE => Ok(Call::ConsoleWrite {
            count: count.into(),
            buffer,
        }),
        console_io::READ if count > console_io::READ_MAX_COUNT => Err(Errno::E2BIG),
        console_io::READ => Ok(Call::ConsoleRead {
            count: count.into(),
            buffer,
        }),
        _ => Err(Errno::ENOSYS),
    }
}

/// `do_sched_op` (`xen/common/sched/core.c`): unknown commands are `-ENOSYS`.
/// `remote_shutdown`, `shutdown_code` and `pin_override` are not modelled and are
/// answered `-ENOSYS` too.
fn decode_sched_op(cmd: u32, arg: GuestPtr) -> Result<Call, Errno> {
    match cmd {
        sched_op::YIELD => Ok(Call::SchedYield),
        sched_op::BLOCK => Ok(Call::SchedBlock),
        sched_op::SHUTDOWN => Ok(Call::SchedShutdown { arg }),
        sched_op::POLL => Ok(Call::SchedPoll { arg }),
        sched_op::WATCHDOG => Ok(Call::SchedWatchdog { arg }),
        _ => Err(Errno::ENOSYS),
    }
}

/// `do_memory_op` (`xen/common/memory.c`) → `arch_memory_op` (`xen/arch/arm/mm.c`):
/// unknown operations are `-ENOSYS`. The bits above [`memory_op::MEMOP_EXTENT_SHIFT`]
/// are Xen's continuation state; this ABI never creates continuations and answers a
/// non-zero value with `-EINVAL`.
fn decode_memory_op(raw_cmd: u64, arg: GuestPtr) -> Result<Call, Errno> {
    let op = (raw_cmd & memory_op::MEMOP_CMD_MASK) as u32;
    let known = matches!(
        op,
        memory_op::INCREASE_RESERVATION
            | memory_op::DECREASE_RESERVATION
            | memory_op::POPULATE_PHYSMAP
            | memory_op::ADD_TO_PHYSMAP
            | memory_op::REMOVE_FROM_PHYSMAP
    );
    if !known {
        return Err(Errno::ENOSYS);
    }
    if raw_cmd >> memory_op::MEMOP_EXTENT_SHIFT != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(Call::MemoryOp { cmd: op, arg })
}

/// `do_event_channel_op` (`xen/common/event_channel.c`): unknown commands are
/// `-ENOSYS`. The FIFO operations, `bind_pirq` and `reset` are answered `-ENOSYS` on
/// purpose: this ABI is 2-level only and has no physical IRQs.
fn decode_event_channel_op(cmd: u32, arg: GuestPtr) -> Result<Call, Errno> {
    use event_channel_op as e;
    match cmd {
        e::BIND_INTERDOMAIN
        | e::BIND_VIRQ
        | e::CLOSE
        | e::SEND
        | e::STATUS
        | e::ALLOC_UNBOUND
        | e::BIND_IPI
        | e::BIND_VCPU
        | e::UNMASK => Ok(Call::EventChannelOp { cmd, arg }),
        _ => Err(Errno::ENOSYS),
    }
}

/// `do_grant_table_op` (`xen/common/grant_table.c`), in Xen's order: a count that is
/// negative as an `int` is `-EINVAL`; non-zero bits above [`grant_table_op::CMD_MASK`]
/// are `-EINVAL` except for `cache_flush`; unknown operations are `-ENOSYS`.
/// `dump_table`, `transfer`, `unmap_and_replace`, `get_status_frames`,
/// `swap_grant_ref` and `cache_flush` are not modelled and are answered `-ENOSYS`.
fn decode_grant_table_op(raw_cmd: u32, arg: GuestPtr, count: u32) -> Result<Call, Errno> {
    use grant_table_op as g;
    if count > i32::MAX as u32 {
        return Err(Errno::EINVAL);
    }
    let cmd = raw_cmd & g::CMD_MASK;
    let opaque = raw_cmd & !g::CMD_MASK;
    if cmd != g::CACHE_FLUSH && opaque != 0 {
        return Err(Errno::EINVAL);
    }
    match cmd {
        g::MAP_GRANT_REF
        | g::UNMAP_GRANT_REF
        | g::SETUP_TABLE
        | g::COPY
        | g::QUERY_SIZE
        | g::SET_VERSION
        | g::GET_VERSION => Ok(Call::GrantTableOp { cmd, arg, count }),
        _ => Err(Errno::ENOSYS),
    }
}

/// `do_vcpu_op` on ARM (`xen/arch/arm/domain.c`): every command other than the two
/// registration calls is `-EINVAL`. This ABI also accepts the one-shot timer calls.
/// Xen checks the vCPU id (`-ENOENT`) before the command; without domain state this
/// decoder cannot, so an unsupported command with a bad vCPU id is `-EINVAL` here.
fn decode_vcpu_op(cmd: u32, vcpu: u32, arg: GuestPtr) -> Result<Call, Errno> {
    match cmd {
        vcpu_op::REGISTER_VCPU_INFO
        | vcpu_op::REGISTER_RUNSTATE_MEMORY_AREA
        | vcpu_op::SET_SINGLESHOT_TIMER
        | vcpu_op::STOP_SINGLESHOT_TIMER => Ok(Call::VcpuOp { cmd, vcpu, arg }),
        _ => Err(Errno::EINVAL),
    }
}

/// `do_hvm_op` on ARM (`xen/arch/arm/hvm.c`): unknown operations are `-ENOSYS`.
/// `guest_request_vm_event` (a monitor hook) is not modelled and is `-ENOSYS` too.
fn decode_hvm_op(op: u64, arg: GuestPtr) -> Result<Call, Errno> {
    match op {
        hvm_op::SET_PARAM | hvm_op::GET_PARAM => Ok(Call::HvmOp { op, arg }),
        _ => Err(Errno::ENOSYS),
    }
}

/// `do_vm_assist` (`xen/common/domain.c`): a type outside the ARM valid set is
/// `-EINVAL` (checked first), then an unknown command is `-ENOSYS`.
fn decode_vm_assist(cmd: u32, kind: u32) -> Result<Call, Errno> {
    if kind >= 64 || vm_assist::ARM_VALID_TYPES & (1 << kind) == 0 {
        return Err(Errno::EINVAL);
    }
    match cmd {
        vm_assist::CMD_ENABLE | vm_assist::CMD_DISABLE => Ok(Call::VmAssist { cmd, kind }),
        _ => Err(Errno::ENOSYS),
    }
}

/// A decoded `HVC #0` (SMCCC) call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmcccCall {
    /// `PSCI_VERSION`: answer [`psci::PSCI_VERSION_1_1`].
    PsciVersion,
    /// `PSCI_FEATURES(function)`: answer with [`psci_features`].
    PsciFeatures {
        /// The function id asked about.
        function: u32,
    },
    /// `CPU_ON` (either width; SMC32 arguments are zero-extended from 32 bits).
    CpuOn {
        /// MPIDR affinity of the vCPU to start.
        target_mpidr: u64,
        /// Entry point (guest physical; the new vCPU starts with the MMU off).
        entry: u64,
        /// Value for the new vCPU's `x0`.
        context: u64,
    },
    /// `CPU_OFF`: stop the calling vCPU.
    CpuOff,
    /// `AFFINITY_INFO` (either width).
    AffinityInfo {
        /// MPIDR affinity of the vCPU asked about.
        target_affinity: u64,
        /// Lowest affinity level; only 0 is valid for vCPUs.
        lowest_level: u32,
    },
    /// `MIGRATE_INFO_TYPE`: answer [`psci::MIGRATE_INFO_TYPE_TOS_MP`].
    MigrateInfoType,
    /// `SYSTEM_OFF`: power the domain off.
    SystemOff,
    /// `SYSTEM_RESET`: reboot the domain.
    SystemReset,
    /// `SMCCC_VERSION`: answer [`psci::SMCCC_VERSION_1_2`].
    SmcccVersion,
    /// `SMCCC_ARCH_FEATURES(function)`.
    SmcccArchFeatures {
        /// The function id asked about.
        function: u32,
    },
    /// Anything else (including `CPU_SUSPEND`, `SYSTEM_SUSPEND`, `SYSTEM_RESET2`, the
    /// vendor hypervisor UID and the Spectre workarounds): answer
    /// [`psci::NOT_SUPPORTED`] in `x0`.
    Unknown(u32),
}

/// Decodes an `HVC #0`: `function_id` is `x0` (only `w0` counts, as in SMCCC),
/// `args` are `x1`..`x3`.
pub fn decode_smccc(function_id: u64, args: [u64; 3]) -> SmcccCall {
    let function = function_id as u32;
    let [a1, a2, a3] = args;
    let narrow = |v: u64| v as u32 as u64;
    match function {
        psci::PSCI_VERSION => SmcccCall::PsciVersion,
        psci::PSCI_FEATURES => SmcccCall::PsciFeatures {
            function: a1 as u32,
        },
        psci::CPU_ON_64 => SmcccCall::CpuOn {
            target_mpidr: a1,
            entry: a2,
            context: a3,
        },
        psci::CPU_ON_32 => SmcccCall::CpuOn {
            target_mpidr: narrow(a1),
            entry: narrow(a2),
            context: narrow(a3),
        },
        psci::CPU_OFF => SmcccCall::CpuOff,
        psci::AFFINITY_INFO_64 => SmcccCall::AffinityInfo {
            target_affinity: a1,
            lowest_level: a2 as u32,
        },
        psci::AFFINITY_INFO_32 => SmcccCall::AffinityInfo {
            target_affinity: narrow(a1),
            lowest_level: a2 as u32,
        },
        psci::MIGRATE_INFO_TYPE => SmcccCall::MigrateInfoType,
        psci::SYSTEM_OFF => SmcccCall::SystemOff,
        psci::SYSTEM_RESET => SmcccCall::SystemReset,
        psci::SMCCC_VERSION => SmcccCall::SmcccVersion,
        psci::SMCCC_ARCH_FEATURES => SmcccCall::SmcccArchFeatures {
            function: a1 as u32,
        },
        other => SmcccCall::Unknown(other),
    }
}

/// The `PSCI_FEATURES` answer for `function`: [`psci::SUCCESS`] (0, no feature flags)
/// for every function [`decode_smccc`] models, [`psci::NOT_SUPPORTED`] otherwise.
pub const fn psci_features(function: u32) -> i32 {
    match function {
        psci::PSCI_VERSION
        | psci::PSCI_FEATURES
        | psci::CPU_ON_32
        | psci::CPU_ON_64
        | psci::CPU_OFF
        | psci::AFFINITY_INFO_32
        | psci::AFFINITY_INFO_64
        | psci::MIGRATE_INFO_TYPE
        | psci::SYSTEM_OFF
        | psci::SYSTEM_RESET
        | psci::SMCCC_VERSION => psci::SUCCESS,
        _ => psci::NOT_SUPPORTED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(number: u64, args: [u64; 5]) -> Result<Call, Errno> {
        decode(&HypercallArgs { number, args })
    }

    const HI: u64 = 0xDEAD_BEEF_0000_0000;

    #[test]
    fn unknown_numbers_are_enosys() {
        for n in [
            0, 1, 6, 11, 14, 15, 16, 19, 22, 23, 25, 30, 31, 37, 40, 42, 63, 64, 1000,
        ] {
            assert_eq!(call(n, [0; 5]), Err(Errno::ENOSYS), "number {n}");
        }
        assert_eq!(call(u64::MAX, [0; 5]), Err(Errno::ENOSYS));
        assert_eq!(
            call(hypercall::XEN_VERSION | 1 << 32, [0; 5]),
            Err(Errno::ENOSYS)
        );
    }

    #[test]
    fn fixed_answer_hypercalls() {
        for n in [
            hypercall::PHYSDEV_OP,
            hypercall::PLATFORM_OP,
            hypercall::MULTICALL,
            hypercall::SYSCTL,
            hypercall::DOMCTL,
            hypercall::DM_OP,
        ] {
            assert_eq!(
                call(n, [1, 2, 3, 4, 5]),
                Ok(Call::Unsupported(Errno::ENOSYS))
            );
        }
    }

    #[test]
    fn xen_version() {
        for cmd in 0..=10u32 {
            assert_eq!(
                call(hypercall::XEN_VERSION, [cmd as u64 | HI, 0x1000, 0, 0, 0]),
                Ok(Call::XenVersion {
                    cmd,
                    arg: GuestPtr(0x1000)
                })
            );
        }
        assert_eq!(
            call(hypercall::XEN_VERSION, [11, 0, 0, 0, 0]),
            Err(Errno::ENOSYS)
        );
        assert_eq!(
            call(hypercall::XEN_VERSION, [u32::MAX as u64, 0, 0, 0, 0]),
            Err(Errno::ENOSYS)
        );
    }

    #[test]
    fn console_io() {
        assert_eq!(
            call(hypercall::CONSOLE_IO, [0, 5 | HI, 0x4000, 0, 0]),
            Ok(Call::ConsoleWrite {
                count: 5,
                buffer: GuestPtr(0x4000)
            })
        );
        assert_eq!(
            call(hypercall::CONSOLE_IO, [0, u32::MAX as u64, 0x4000, 0, 0]),
            Ok(Call::ConsoleWrite {
                count: u32::MAX as u64,
                buffer: GuestPtr(0x4000)
            })
        );
        assert_eq!(
            call(hypercall::CONSOLE_IO, [1, 16, 0x8000, 0, 0]),
            Ok(Call::ConsoleRead {
                count: 16,
                buffer: GuestPtr(0x8000)
            })
        );
        assert_eq!(
            call(hypercall::CONSOLE_IO, [1, i32::MAX as u64, 0x8000, 0, 0]),
            Ok(Call::ConsoleRead {
                count: i32::MAX as u64,
                buffer: GuestPtr(0x8000)
            })
        );
        // A "negative" count (-1 as int) is E2BIG for reads, as in Xen.
        assert_eq!(
            call(hypercall::CONSOLE_IO, [1, u32::MAX as u64, 0, 0, 0]),
            Err(Errno::E2BIG)
        );
        assert_eq!(
            call(hypercall::CONSOLE_IO, [1, 1 << 31, 0, 0, 0]),
            Err(Errno::E2BIG)
        );
        assert_eq!(
            call(hypercall::CONSOLE_IO, [2, 0, 0, 0, 0]),
            Err(Errno::ENOSYS)
        );
        assert_eq!(
            call(hypercall::CONSOLE_IO, [1 << 32, 3, 0x10, 0, 0]),
            Ok(Call::ConsoleWrite {
                count: 3,
                buffer: GuestPtr(0x10)
            })
        );
    }

    #[test]
    fn sched_op() {
        let s = hypercall::SCHED_OP;
        assert_eq!(call(s, [0, 0, 0, 0, 0]), Ok(Call::SchedYield));
        assert_eq!(call(s, [1 | HI, 0, 0, 0, 0]), Ok(Call::SchedBlock));
        assert_eq!(
            call(s, [2, 0x2000, 0, 0, 0]),
            Ok(Call::SchedShutdown {
                arg: GuestPtr(0x2000)
            })
        );
        assert_eq!(
            call(s, [3, 0x3000, 0, 0, 0]),
            Ok(Call::SchedPoll {
                arg: GuestPtr(0x3000)
            })
        );
        assert_eq!(
            call(s, [6, 0x4000, 0, 0, 0]),
            Ok(Call::SchedWatchdog {
                arg: GuestPtr(0x4000)
            })
        );
        for cmd in [4, 5, 7, 8, u32::MAX as u64] {
            assert_eq!(call(s, [cmd, 0, 0, 0, 0]), Err(Errno::ENOSYS), "cmd {cmd}");
        }
    }

    #[test]
    fn memory_op() {
        let m = hypercall::MEMORY_OP;
        for op in [0, 1, 6, 7, 15] {
            assert_eq!(
                call(m, [op as u64, 0x5000, 0, 0, 0]),
                Ok(Call::MemoryOp {
                    cmd: op,
                    arg: GuestPtr(0x5000)
                })
            );
        }
        for op in [2, 3, 4, 5, 11, 14, 23, 24, 26, 28, 63] {
            assert_eq!(call(m, [op, 0, 0, 0, 0]), Err(Errno::ENOSYS), "op {op}");
        }
        // Continuation bits: the op is still decoded from the low 6 bits.
        assert_eq!(call(m, [7 | 1 << 6, 0, 0, 0, 0]), Err(Errno::EINVAL));
        assert_eq!(call(m, [7 | HI, 0, 0, 0, 0]), Err(Errno::EINVAL));
        assert_eq!(call(m, [63 | 1 << 6, 0, 0, 0, 0]), Err(Errno::ENOSYS));
    }

    #[test]
    fn event_channel_op() {
        let e = hypercall::EVENT_CHANNEL_OP;
        for cmd in [0, 1, 3, 4, 5, 6, 7, 8, 9] {
            assert_eq!(
                call(e, [cmd as u64 | HI, 0x6000, 0, 0, 0]),
                Ok(Call::EventChannelOp {
                    cmd,
                    arg: GuestPtr(0x6000)
                })
            );
        }
        for cmd in [2, 10, 11, 12, 13, 14, 15, 1000] {
            assert_eq!(
                call(e, [cmd, 0x6000, 0, 0, 0]),
                Err(Errno::ENOSYS),
                "cmd {cmd}"
            );
        }
    }

    #[test]
    fn grant_table_op() {
        let g = hypercall::GRANT_TABLE_OP;
        for cmd in [0, 1, 2, 5, 6, 8, 10] {
            assert_eq!(
                call(g, [cmd as u64, 0x7000, 1 | HI, 0, 0]),
                Ok(Call::GrantTableOp {
                    cmd,
                    arg: GuestPtr(0x7000),
                    count: 1
                })
            );
        }
        for cmd in [3, 4, 7, 9, 11, 12, 13, 0xFFF] {
            assert_eq!(
                call(g, [cmd, 0x7000, 1, 0, 0]),
                Err(Errno::ENOSYS),
                "cmd {cmd}"
            );
        }
        // count negative as int: EINVAL, checked before anything else.
        assert_eq!(call(g, [6, 0, u32::MAX as u64, 0, 0]), Err(Errno::EINVAL));
        assert_eq!(call(g, [99, 0, 1 << 31, 0, 0]), Err(Errno::EINVAL));
        assert_eq!(
            call(g, [6, 0, i32::MAX as u64, 0, 0]),
            Ok(Call::GrantTableOp {
                cmd: 6,
                arg: GuestPtr(0),
                count: i32::MAX as u32
            })
        );
        // Continuation bits from a guest: EINVAL, except for cache_flush (ENOSYS here).
        assert_eq!(call(g, [6 | 1 << 12, 0, 1, 0, 0]), Err(Errno::EINVAL));
        assert_eq!(call(g, [99 | 1 << 12, 0, 1, 0, 0]), Err(Errno::EINVAL));
        assert_eq!(call(g, [12 | 1 << 12, 0, 1, 0, 0]), Err(Errno::ENOSYS));
        // Upper 32 bits of x0 are ignored like Xen's unsigned int cmd.
        assert!(call(g, [6 | HI, 0, 1, 0, 0]).is_ok());
    }

    #[test]
    fn vcpu_op() {
        let v = hypercall::VCPU_OP;
        for cmd in [5, 8, 9, 10] {
            assert_eq!(
                call(v, [cmd as u64, 3 | HI, 0x9000, 0, 0]),
                Ok(Call::VcpuOp {
                    cmd,
                    vcpu: 3,
                    arg: GuestPtr(0x9000)
                })
            );
        }
        for cmd in [0, 1, 2, 3, 4, 6, 7, 11, 12, 13, 14, 15, 16, u32::MAX as u64] {
            assert_eq!(call(v, [cmd, 0, 0, 0, 0]), Err(Errno::EINVAL), "cmd {cmd}");
        }
    }

    #[test]
    fn hvm_op() {
        let h = hypercall::HVM_OP;
        assert_eq!(
            call(h, [0, 0xA000, 0, 0, 0]),
            Ok(Call::HvmOp {
                op: 0,
                arg: GuestPtr(0xA000)
            })
        );
        assert_eq!(
            call(h, [1, 0xA000, 0, 0, 0]),
            Ok(Call::HvmOp {
                op: 1,
                arg: GuestPtr(0xA000)
            })
        );
        // op is a full unsigned long on Xen: high bits make it a different op.
        assert_eq!(call(h, [1 | HI, 0, 0, 0, 0]), Err(Errno::ENOSYS));
        for op in [2, 5, 24, 1000] {
            assert_eq!(call(h, [op, 0, 0, 0, 0]), Err(Errno::ENOSYS), "op {op}");
        }
    }

    #[test]
    fn vm_assist() {
        let a = hypercall::VM_ASSIST;
        assert_eq!(
            call(a, [0, 5, 0, 0, 0]),
            Ok(Call::VmAssist { cmd: 0, kind: 5 })
        );
        assert_eq!(
            call(a, [1 | HI, 5 | HI, 0, 0, 0]),
            Ok(Call::VmAssist { cmd: 1, kind: 5 })
        );
        // Type first (EINVAL), then command (ENOSYS).
        for kind in [0, 1, 2, 3, 4, 6, 32, 63, 64, u32::MAX as u64] {
            assert_eq!(
                call(a, [7, kind, 0, 0, 0]),
                Err(Errno::EINVAL),
                "type {kind}"
            );
        }
        assert_eq!(call(a, [2, 5, 0, 0, 0]), Err(Errno::ENOSYS));
    }

    #[test]
    fn encode_result_values() {
        assert_eq!(encode_result(Ok(0)), 0);
        assert_eq!(encode_result(Ok(0x4_0011)), 0x4_0011);
        assert_eq!(encode_result(Err(Errno::ENOSYS)), (-38i64) as u64);
    }

    #[test]
    fn smccc_decoding() {
        assert_eq!(
            decode_smccc(psci::PSCI_VERSION as u64, [0; 3]),
            SmcccCall::PsciVersion
        );
        // Only w0 selects the function.
        assert_eq!(
            decode_smccc(HI | psci::PSCI_VERSION as u64, [0; 3]),
            SmcccCall::PsciVersion
        );
        assert_eq!(
            decode_smccc(
                psci::PSCI_FEATURES as u64,
                [HI | psci::CPU_ON_64 as u64, 0, 0]
            ),
            SmcccCall::PsciFeatures {
                function: psci::CPU_ON_64
            }
        );
        assert_eq!(
            decode_smccc(psci::CPU_ON_64 as u64, [0x8000_0001, 0x4020_0000, HI | 7]),
            SmcccCall::CpuOn {
                target_mpidr: 0x8000_0001,
                entry: 0x4020_0000,
                context: HI | 7
            }
        );
        assert_eq!(
            decode_smccc(psci::CPU_ON_32 as u64, [HI | 1, HI | 0x4020_0000, HI | 7]),
            SmcccCall::CpuOn {
                target_mpidr: 1,
                entry: 0x4020_0000,
                context: 7
            }
        );
        assert_eq!(
            decode_smccc(psci::CPU_OFF as u64, [0; 3]),
            SmcccCall::CpuOff
        );
        assert_eq!(
            decode_smccc(psci::AFFINITY_INFO_64 as u64, [HI | 2, 0, 0]),
            SmcccCall::AffinityInfo {
                target_affinity: HI | 2,
                lowest_level: 0
            }
        );
        assert_eq!(
            decode_smccc(psci::AFFINITY_INFO_32 as u64, [HI | 2, 1, 0]),
            SmcccCall::AffinityInfo {
                target_affinity: 2,
                lowest_level: 1
            }
        );
        assert_eq!(
            decode_smccc(psci::MIGRATE_INFO_TYPE as u64, [0; 3]),
            SmcccCall::MigrateInfoType
        );
        assert_eq!(
            decode_smccc(psci::SYSTEM_OFF as u64, [0; 3]),
            SmcccCall::SystemOff
        );
        assert_eq!(
            decode_smccc(psci::SYSTEM_RESET as u64, [0; 3]),
            SmcccCall::SystemReset
        );
        assert_eq!(
            decode_smccc(psci::SMCCC_VERSION as u64, [0; 3]),
            SmcccCall::SmcccVersion
        );
        assert_eq!(
            decode_smccc(
                psci::SMCCC_ARCH_FEATURES as u64,
                [psci::SMCCC_ARCH_WORKAROUND_1 as u64, 0, 0]
            ),
            SmcccCall::SmcccArchFeatures {
                function: psci::SMCCC_ARCH_WORKAROUND_1
            }
        );
        for id in [
            psci::CPU_SUSPEND_32,
            psci::CPU_SUSPEND_64,
            psci::SYSTEM_SUSPEND_64,
            psci::SYSTEM_RESET2_64,
            psci::VENDOR_HYP_CALL_UID,
            psci::SMCCC_ARCH_WORKAROUND_1,
            0,
            u32::MAX,
        ] {
            assert_eq!(decode_smccc(id as u64, [0; 3]), SmcccCall::Unknown(id));
        }
    }

    #[test]
    fn psci_features_answers() {
        assert_eq!(psci_features(psci::CPU_ON_64), psci::SUCCESS);
        assert_eq!(psci_features(psci::SMCCC_VERSION), psci::SUCCESS);
        assert_eq!(psci_features(psci::SYSTEM_RESET), psci::SUCCESS);
        assert_eq!(psci_features(psci::CPU_SUSPEND_64), psci::NOT_SUPPORTED);
        assert_eq!(psci_features(psci::SYSTEM_SUSPEND_64), psci::NOT_SUPPORTED);
        assert_eq!(psci_features(psci::SYSTEM_RESET2_64), psci::NOT_SUPPORTED);
        assert_eq!(
            psci_features(psci::SMCCC_ARCH_FEATURES),
            psci::NOT_SUPPORTED
        );
    }

    /// Random registers: decoding never panics, and every accepted call carries only a
    /// command from its documented set.
    #[test]
    fn random_registers_decode_to_documented_calls() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..200_000u32 {
            let number = if i % 2 == 0 { next() % 70 } else { next() };
            // Small values hit the interesting cases more often.
            let mut args = [0u64; 5];
            for a in &mut args {
                let r = next();
                *a = if r % 3 == 0 { r } else { r % 16 };
            }
            match decode(&HypercallArgs { number, args }) {
                Err(_) => {}
                Ok(Call::XenVersion { cmd, .. }) => assert!(cmd <= 10),
                Ok(Call::ConsoleWrite { count, .. }) => assert!(count <= u32::MAX as u64),
                Ok(Call::ConsoleRead { count, .. }) => assert!(count <= i32::MAX as u64),
                Ok(Call::MemoryOp { cmd, .. }) => assert!([0, 1, 6, 7, 15].contains(&cmd)),
                Ok(Call::EventChannelOp { cmd, .. }) => {
                    assert!([0, 1, 3, 4, 5, 6, 7, 8, 9].contains(&cmd))
                }
                Ok(Call::GrantTableOp { cmd, count, .. }) => {
                    assert!([0, 1, 2, 5, 6, 8, 10].contains(&cmd));
                    assert!(count <= i32::MAX as u32);
                }
                Ok(Call::VcpuOp { cmd, .. }) => assert!([5, 8, 9, 10].contains(&cmd)),
                Ok(Call::HvmOp { op, .. }) => assert!(op <= 1),
                Ok(Call::VmAssist { cmd, kind }) => assert!(cmd <= 1 && kind == 5),
                Ok(Call::Unsupported(e)) => assert_eq!(e, Errno::ENOSYS),
                Ok(Call::SchedYield | Call::SchedBlock)
                | Ok(
                    Call::SchedShutdown { .. }
                    | Call::SchedPoll { .. }
                    | Call::SchedWatchdog { .. },
                ) => {
                    assert_eq!(number, hypercall::SCHED_OP)
                }
            }
        }
    }

    #[test]
    fn guest_ptr() {
        assert!(GuestPtr::NULL.is_null());
        assert!(!GuestPtr(1).is_null());
    }
}
