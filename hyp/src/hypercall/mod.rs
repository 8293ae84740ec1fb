//! Hypercall dispatch: `HVC #0xEA1` (Xen hypercalls) and `HVC #0` / `SMC #0` (SMCCC and
//! PSCI), with Xen's semantics.
//!
//! `hypercall_abi::decode` has already rejected unknown numbers and sub-ops and checked
//! everything that needs no guest memory; this module does the rest through the domain's
//! [`GuestMemory`]. Nothing here can fault the hypervisor: every guest error is an errno.

pub mod event_channel;
pub mod grant_table;
pub mod hvm;
pub mod memory;
pub mod psci;
pub mod vcpu;

use crate::addr::GuestVirtAddr;
use crate::domain::Domain;
use crate::guest_memory::GuestMemory;
use crate::serial;
use hypercall_abi::decode::{decode, Call, HypercallArgs};
use hypercall_abi::errno::Errno;
use hypercall_abi::sched_op::ShutdownReason;
use hypercall_abi::{features, xen_version};

/// The Xen version we are compatible with: 4.17.
pub const XEN_VERSION: u64 = (4 << 16) | 17;

/// Console bytes copied from the guest per step.
const CONSOLE_CHUNK: usize = 128;

/// What the hypervisor must do after a hypercall, besides writing its result to x0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Return `value` to the caller and let it go on.
    Return(u64),
    /// Return `value`, then give other vCPUs a turn.
    Yield(u64),
    /// Return 0 and block the vCPU until an event is pending for it.
    Block,
    /// Return 0 and block the vCPU until one of the ports it now polls (its control block
    /// holds them) is pending or its poll deadline passes.
    Poll,
    /// The domain asked to stop.
    Shutdown(ShutdownReason),
    /// Return `value`, and raise the event-channel upcall on vCPU `vcpu` of the caller's
    /// domain (the 2-level protocol asked for it: for instance after
    /// VCPUOP_register_vcpu_info marked every event pending).
    ReturnAndUpcall {
        /// The result for x0.
        value: u64,
        /// The vCPU to interrupt.
        vcpu: usize,
    },
    /// An event-channel operation: it involves other domains, so the hypervisor (which
    /// holds all of them) carries it out.
    EventChannel {
        /// The EVTCHNOP sub-op.
        cmd: u32,
        /// Its argument struct.
        arg: GuestVirtAddr,
    },
    /// Part of the call was done: the vCPU issues it again with x1 and x2 replaced, for
    /// the rest ([`crate::vcpu::GuestRegisters::continue_hypercall`]).
    Continue {
        /// The new x1.
        x1: u64,
        /// The new x2.
        x2: u64,
    },
    /// A grant-table operation: it involves other domains' tables and stage 2, so the
    /// hypervisor carries it out ([`grant_table::grant_table_op`]).
    GrantTable {
        /// The GNTTABOP sub-op.
        cmd: u32,
        /// Its argument array.
        arg: GuestVirtAddr,
        /// Elements in the array.
        count: u32,
    },
}

/// The features this hypervisor offers every domain in XENVER_get_features submap 0: an
/// auto-translated physmap (stage 2), SMCCC, and RAM that is not direct mapped. Only what
/// is implemented is advertised.
pub const fn feature_submap_0() -> u32 {
    (1 << features::WRITABLE_PAGE_TABLES)
        | (1 << features::AUTO_TRANSLATED_PHYSMAP)
        | (1 << features::ARM_SMCCC_SUPPORTED)
        | (1 << features::NOT_DIRECT_MAPPED)
}

fn errno(error: Errno) -> Outcome {
    Outcome::Return(error.to_return())
}

/// Whether hypercall `number` involves only its caller: its console and its own memory.
/// [`dispatch`] of such a call never blocks, switches, ends the domain or touches the vGIC
/// or the stage 2: it answers [`Outcome::Return`] or [`Outcome::Continue`], whatever the
/// arguments (host tests), so it needs no more of the exit path than its registers.
pub const fn is_local(number: u64) -> bool {
    matches!(
        number,
        hypercall_abi::hypercall::XEN_VERSION | hypercall_abi::hypercall::CONSOLE_IO
    )
}

/// Handles one `HVC #0xEA1` from vCPU `vcpu` of `domain` with the given registers;
/// `frames` supplies page-table pages when a call changes the domain's stage 2.
pub fn dispatch(
    domain: &mut Domain,
    vcpu: usize,
    frames: &mut crate::mm::FrameAllocator,
    number: u64,
    args: [u64; 5],
) -> Outcome {
    let call = match decode(&HypercallArgs { number, args }) {
        Ok(call) => call,
        Err(error) => return errno(error),
    };
    let owned = domain.guest_accessible();
    let memory = GuestMemory::new(&owned);
    match call {
        Call::XenVersion { cmd, arg } => xen_version_call(&memory, cmd, GuestVirtAddr::new(arg.0)),
        Call::ConsoleWrite { count, buffer } => console_write(
            domain,
            &memory,
            GuestVirtAddr::new(buffer.0),
            count as usize,
        ),
        // Console input reaches domains through their console ring's in[] only (as a
        // domU's on Xen): CONSOLEIO_read has nothing to read.
        Call::ConsoleRead { .. } => Outcome::Return(0),
        Call::SchedYield => Outcome::Yield(0),
        // Blocks until an event is pending for the vCPU (its upcall flag), as on Xen.
        Call::SchedBlock => Outcome::Block,
        Call::SchedPoll { arg } => match poll(domain, vcpu, &memory, GuestVirtAddr::new(arg.0)) {
            Ok(true) => Outcome::Poll,
            Ok(false) => Outcome::Return(0),
            Err(error) => errno(error),
        },
        Call::SchedShutdown { arg } => {
            match memory
                .read_value::<hypercall_abi::sched_op::SchedShutdown>(GuestVirtAddr::new(arg.0))
            {
                Err(error) => errno(error),
                Ok(request) => match ShutdownReason::from_u32(request.reason) {
                    Some(reason) => Outcome::Shutdown(reason),
                    None => errno(Errno::EINVAL),
                },
            }
        }
        Call::SchedWatchdog { arg } => {
            match memory
                .read_value::<hypercall_abi::sched_op::SchedWatchdog>(GuestVirtAddr::new(arg.0))
            {
                Err(error) => errno(error),
                Ok(request) => match crate::lifecycle::watchdog(
                    &mut domain.watchdogs,
                    request.id,
                    request.timeout,
                    crate::arch::read_counter(),
                    crate::arch::read_counter_frequency(),
                ) {
                    Ok(id) => {
                        domain.watchdog_deadline = domain.watchdogs.iter().flatten().min().copied();
                        // This CPU's EL2 timer covers the new deadline; the others see it
                        // when they next arm theirs.
                        if let Some(deadline) = domain.watchdog_deadline {
                            crate::arch::arm_timer_before(deadline);
                        }
                        Outcome::Return(u64::from(id))
                    }
                    Err(error) => errno(error),
                },
            }
        }
        Call::EventChannelOp { cmd, arg } => Outcome::EventChannel {
            cmd,
            arg: GuestVirtAddr::new(arg.0),
        },
        Call::GrantTableOp { cmd, arg, count } => Outcome::GrantTable {
            cmd,
            arg: GuestVirtAddr::new(arg.0),
            count,
        },
        Call::MemoryOp { cmd, arg } => {
            memory::memory_op(domain, frames, cmd, GuestVirtAddr::new(arg.0))
        }
        Call::VcpuOp {
            cmd,
            vcpu: target,
            arg,
        } => vcpu::vcpu_op(domain, vcpu, cmd, target, GuestVirtAddr::new(arg.0)),
        // VMASST_TYPE_runstate_update_flag is the one assist Xen/ARM offers; the decoder
        // has refused the others. Our runstate updates are whole-record writes.
        Call::VmAssist { .. } => Outcome::Return(0),
        Call::HvmOp { op, arg } => hvm::hvm_op(domain, &memory, op, GuestVirtAddr::new(arg.0)),
        Call::Unsupported(error) => errno(error),
    }
}

/// SCHEDOP_poll with Xen's checks (`do_poll`): at most 128 ports, each a valid port
/// number; if one is pending already the call returns at once (`Ok(false)`), else the
/// ports and the timeout (absolute system time in ns, 0 = none) are recorded in the vCPU
/// and it must block (`Ok(true)`).
fn poll(
    domain: &mut Domain,
    vcpu: usize,
    memory: &GuestMemory<'_>,
    arg: GuestVirtAddr,
) -> Result<bool, Errno> {
    // u64 ports handle, u32 count, padding, u64 timeout: parsed from bytes.
    let mut bytes = [0u8; 24];
    memory.read(arg, &mut bytes)?;
    let word = |offset: usize| {
        bytes
            .get(offset..offset + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    };
    let ports = GuestVirtAddr::new(word(0));
    let count = (word(8) & 0xffff_ffff) as usize;
    let timeout = word(16);
    if count > crate::vcpu::MAX_POLLED_PORTS {
        return Err(Errno::EINVAL);
    }
    let mut polled: heapless::Vec<u16, { crate::vcpu::MAX_POLLED_PORTS }> = heapless::Vec::new();
    let mut already_pending = false;
    for index in 0..count {
        let port: u32 = memory.read_value(ports.add(index as u64 * 4))?;
        if port as usize >= crate::event_channel::MAX_PORTS {
            return Err(Errno::EINVAL);
        }
        already_pending |= hypercall_abi::evtchn2l::test_pending(
            domain.shared_info(),
            hypercall_abi::event_channel_op::Port(port),
        );
        let _ = polled.push(port as u16);
    }
    if already_pending {
        return Ok(false);
    }
    let deadline = (timeout != 0).then(|| vcpu::nanoseconds_to_ticks(timeout));
    domain.start_polling(vcpu, polled, deadline);
    Ok(true)
}

fn xen_version_call(memory: &GuestMemory<'_>, cmd: u32, arg: GuestVirtAddr) -> Outcome {
    match cmd {
        xen_version::VERSION => Outcome::Return(XEN_VERSION),
        xen_version::GET_FEATURES => {
            let mut info = match memory.read_value::<xen_version::FeatureInfo>(arg) {
                Ok(info) => info,
                Err(error) => return errno(error),
            };
            // Xen has one submap (XENFEAT_NR_SUBMAPS = 1) and refuses any other index.
            if info.submap_idx != 0 {
                return errno(Errno::EINVAL);
            }
            info.submap = feature_submap_0();
            match memory.write_value(arg, &info) {
                Ok(()) => Outcome::Return(0),
                Err(error) => errno(error),
            }
        }
        xen_version::PAGESIZE => Outcome::Return(crate::addr::PAGE_SIZE),
        _ => errno(Errno::ENOSYS),
    }
}

/// Writes the first [`CONSOLE_CHUNK`] bytes of `count` at `buffer` and continues with
/// the rest ([`Outcome::Continue`]): the hypervisor is not held for as long as a guest
/// asks (a write of all its RAM), and the UART is shared fairly (Xen, too, writes 128
/// bytes at a time and preempts between them).
fn console_write(
    domain: &mut Domain,
    memory: &GuestMemory<'_>,
    buffer: GuestVirtAddr,
    total: usize,
) -> Outcome {
    // All that is left is checked first, so a bad pointer prints nothing (a check walks
    // at most the domain's own RAM, one translation per page). A write of one chunk needs
    // no separate check: its one read comes before anything is printed.
    if total > CONSOLE_CHUNK {
        if let Err(error) = memory.check_readable(buffer, total) {
            return errno(error);
        }
    }
    let count = total.min(CONSOLE_CHUNK);
    let mut chunk = [core::mem::MaybeUninit::<u8>::uninit(); CONSOLE_CHUNK];
    let Some(piece) = chunk.get_mut(..count) else {
        return errno(Errno::EINVAL);
    };
    let text = match memory.read_uninit(buffer, piece) {
        Ok(text) => text,
        Err(error) => return errno(error),
    };
    let name = &domain.name;
    domain
        .console
        .push(text, |line| serial::write_console_line(name, line));
    if total > count {
        return Outcome::Continue {
            x1: (total - count) as u64,
            x2: buffer.add(count as u64).raw(),
        };
    }
    Outcome::Return(0)
}

// SAFETY: plain #[repr(C)] integer structs from the ABI crate, without padding.
unsafe impl crate::guest_memory::Pod for xen_version::FeatureInfo {}
// SAFETY: as above.
unsafe impl crate::guest_memory::Pod for hypercall_abi::sched_op::SchedShutdown {}
// SAFETY: two u32s, no padding; every bit pattern is valid.
unsafe impl crate::guest_memory::Pod for hypercall_abi::sched_op::SchedWatchdog {}
// SAFETY: a port number, plain u32.
unsafe impl crate::guest_memory::Pod for u32 {}
