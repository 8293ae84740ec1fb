//! The guest's face (feature `guest`, aarch64 only): the `hvc` instructions and safe,
//! typed wrappers around the hypercalls a guest kernel needs.
//!
//! Pointer arguments are the guest's own virtual addresses (`ptr as u64`): the
//! hypervisor translates them through the calling vCPU's stage-1 tables, so they
//! must be mapped when the call is made. The wrappers take references, so the memory
//! they pass is valid for the duration of the call.

use core::arch::asm;

use crate::errno::{result_from_return, Errno};
use crate::event_channel_op::{self as evtchn, Port};
use crate::sched_op::{SchedShutdown, ShutdownReason};
use crate::shared::DOMID_SELF;
use crate::{
    console_io, grant_table_op, hvm_op, hypercall as nr, memory_op, sched_op, vcpu_op, vm_assist,
    xen_version,
};

/// Issues `HVC #0xEA1` with `number` in `x16` and `args` in `x0`..`x4`; returns `x0`.
///
/// `x1`..`x4` and `x16` are declared clobbered: debug builds of Xen overwrite the
/// argument registers a call uses with `0xDEADBEEF`. The asm is not `nomem`, so the
/// compiler assumes the hypervisor may read and write memory.
///
/// # Safety
///
/// The hypervisor reads and writes guest memory at the addresses in `args` as the
/// chosen call defines, and some calls change the guest's memory map or stop the
/// vCPU. The caller must make sure every address names memory that may be accessed
/// that way, and that the call's effect on memory does not break Rust's aliasing
/// rules.
pub unsafe fn hypercall(number: u64, args: [u64; 5]) -> u64 {
    // SAFETY: forwarded to the caller.
    unsafe { hypercall_raw(number, args) }
}

/// The same instruction as [`hypercall`], for deliberately hostile or malformed calls
/// (test guests probing the hypervisor's validation): no argument is interpreted.
///
/// # Safety
///
/// As for [`hypercall`]: whatever the hypervisor does with the arguments must be
/// acceptable to the caller.
pub unsafe fn hypercall_raw(number: u64, args: [u64; 5]) -> u64 {
    let [mut x0, x1, x2, x3, x4] = args;
    // SAFETY: the caller guarantees that the call's memory effects are acceptable.
    // The asm touches no stack and declares every register the hypervisor may change.
    unsafe {
        asm!(
            "hvc #0xEA1",
            inlateout("x0") x0,
            inlateout("x1") x1 => _,
            inlateout("x2") x2 => _,
            inlateout("x3") x3 => _,
            inlateout("x4") x4 => _,
            inlateout("x16") number => _,
            options(nostack),
        );
    }
    x0
}

/// Issues an SMCCC call (`HVC #0`): function id in `w0`, `args` in `x1`..`x3`;
/// returns `x0`..`x3`. `x4`..`x17` are declared clobbered as SMCCC 1.0 allows.
///
/// Only the PSCI/SMCCC functions listed in `docs/abi.md` do anything; the others
/// return `-1` (`NOT_SUPPORTED`) in `x0`. `CPU_ON` starts another vCPU at the given
/// physical entry point with the MMU off: the caller is responsible for what that
/// code does.
pub fn smccc_call(function_id: u32, args: [u64; 3]) -> [u64; 4] {
    let mut x0 = function_id as u64;
    let [mut x1, mut x2, mut x3] = args;
    // SAFETY: the hypervisor's SMCCC handlers do not access the caller's memory; the
    // asm declares every register SMCCC allows the callee to change.
    unsafe {
        asm!(
            "hvc #0",
            inlateout("x0") x0,
            inlateout("x1") x1,
            inlateout("x2") x2,
            inlateout("x3") x3,
            lateout("x4") _,
            lateout("x5") _,
            lateout("x6") _,
            lateout("x7") _,
            lateout("x8") _,
            lateout("x9") _,
            lateout("x10") _,
            lateout("x11") _,
            lateout("x12") _,
            lateout("x13") _,
            lateout("x14") _,
            lateout("x15") _,
            lateout("x16") _,
            lateout("x17") _,
            options(nostack),
        );
    }
    [x0, x1, x2, x3]
}

/// A hypercall whose only pointer argument is `arg`, which the hypervisor may read
/// and write for the duration of the call.
fn call_with<T>(number: u64, cmd: u64, arg: &mut T) -> Result<u64, Errno> {
    let ptr = arg as *mut T as u64;
    // SAFETY: `arg` is an exclusive reference to a live `T`, valid for reads and
    // writes of `size_of::<T>()` bytes during the call; every `T` used here is a
    // plain-integer `#[repr(C)]` struct for which any bytes are valid.
    result_from_return(unsafe { hypercall(number, [cmd, ptr, 0, 0, 0]) })
}

/// A hypercall that takes no memory argument.
fn call_plain(number: u64, args: [u64; 5]) -> Result<u64, Errno> {
    // SAFETY: used only for calls that take no guest address and do not change the
    // guest's memory (yield, block, timers, vm_assist).
    result_from_return(unsafe { hypercall(number, args) })
}

/// `XENVER_version`: the hypervisor's `(major, minor)` version; `(0, 0)` if the
/// hypervisor answers with an error (Xen never does).
pub fn xen_version() -> (u16, u16) {
    let value = call_plain(nr::XEN_VERSION, [xen_version::VERSION as u64, 0, 0, 0, 0]);
    xen_version::split_version(value.unwrap_or(0))
}

/// `XENVER_get_features`: feature word `submap_idx` (only 0 exists), see
/// [`crate::features`].
pub fn get_features(submap_idx: u32) -> Result<u32, Errno> {
    let mut info = xen_version::FeatureInfo {
        submap_idx,
        submap: 0,
    };
    call_with(nr::XEN_VERSION, xen_version::GET_FEATURES as u64, &mut info)?;
    Ok(info.submap)
}

/// `CONSOLEIO_write`: writes `bytes` to the hypervisor console (for the hypervisor's
/// framing rules see `docs/abi.md`).
pub fn console_write(bytes: &[u8]) -> Result<(), Errno> {
    // `count` is 32 bits; split larger buffers.
    for chunk in bytes.chunks(1 << 30) {
        let args = [
            console_io::WRITE as u64,
            chunk.len() as u64,
            chunk.as_ptr() as u64,
            0,
            0,
        ];
        // SAFETY: the hypervisor only reads `chunk.len()` bytes of `chunk`.
        result_from_return(unsafe { hypercall(nr::CONSOLE_IO, args) })?;
    }
    Ok(())
}

/// `CONSOLEIO_read`: copies queued console input into `buf`; returns the number of
/// bytes read (0 when there is none).
pub fn console_read(buf: &mut [u8]) -> Result<usize, Errno> {
    let count = buf.len().min(console_io::READ_MAX_COUNT as usize);
    let args = [
        console_io::READ as u64,
        count as u64,
        buf.as_mut_ptr() as u64,
        0,
        0,
    ];
    // SAFETY: the hypervisor writes at most `count <= buf.len()` bytes into `buf`.
    let n = result_from_return(unsafe { hypercall(nr::CONSOLE_IO, args) })?;
    // A well-behaved hypervisor never reports more than `count`; do not trust it.
    Ok((n as usize).min(count))
}

/// `SCHEDOP_yield`: let other vCPUs run.
pub fn sched_yield() -> Result<(), Errno> {
    call_plain(nr::SCHED_OP, [sched_op::YIELD as u64, 0, 0, 0, 0]).map(drop)
}

/// `SCHEDOP_block`: sleep until an event is pending for this vCPU.
pub fn sched_block() -> Result<(), Errno> {
    call_plain(nr::SCHED_OP, [sched_op::BLOCK as u64, 0, 0, 0, 0]).map(drop)
}

/// `SCHEDOP_shutdown`: stops the domain. Returns only if the hypervisor refused; a
/// non-error return (a hypervisor resuming a suspended domain, which this project's
/// hypervisor never does) is reported as [`Errno::EAGAIN`].
pub fn sched_shutdown(reason: ShutdownReason) -> Errno {
    let mut arg = SchedShutdown {
        reason: reason as u32,
    };
    match call_with(nr::SCHED_OP, sched_op::SHUTDOWN as u64, &mut arg) {
        Ok(_) => Errno::EAGAIN,
        Err(errno) => errno,
    }
}

/// `SCHEDOP_watchdog`: with `id` 0 creates a watchdog armed for `timeout_seconds` and
/// returns its id; with a nonzero `id` re-arms it (or destroys it when `timeout_seconds`
/// is 0) and returns 0.
pub fn sched_watchdog(id: u32, timeout_seconds: u32) -> Result<u32, Errno> {
    let mut arg = sched_op::SchedWatchdog {
        id,
        timeout: timeout_seconds,
    };
    call_with(nr::SCHED_OP, sched_op::WATCHDOG as u64, &mut arg).map(|value| value as u32)
}

/// `EVTCHNOP_send`: signals the remote end of `port`.
pub fn evtchn_send(port: Port) -> Result<(), Errno> {
    let mut arg = evtchn::Send { port };
    call_with(nr::EVENT_CHANNEL_OP, evtchn::SEND as u64, &mut arg).map(drop)
}

/// `EVTCHNOP_alloc_unbound`: allocates a port that `remote_dom` may bind to.
pub fn evtchn_alloc_unbound(remote_dom: u16) -> Result<Port, Errno> {
    let mut arg = evtchn::AllocUnbound {
        dom: DOMID_SELF,
        remote_dom,
        port: Port(0),
    };
    call_with(nr::EVENT_CHANNEL_OP, evtchn::ALLOC_UNBOUND as u64, &mut arg)?;
    Ok(arg.port)
}

/// `EVTCHNOP_bind_virq`: binds virtual IRQ `virq` (a `VIRQ_*`) on `vcpu` to a new port.
pub fn evtchn_bind_virq(virq: u32, vcpu: u32) -> Result<Port, Errno> {
    let mut arg = evtchn::BindVirq {
        virq,
        vcpu,
        port: Port(0),
    };
    call_with(nr::EVENT_CHANNEL_OP, evtchn::BIND_VIRQ as u64, &mut arg)?;
    Ok(arg.port)
}

/// `EVTCHNOP_unmask`: clears the mask bit and raises the upcall if the port is pending.
pub fn evtchn_unmask(port: Port) -> Result<(), Errno> {
    let mut arg = evtchn::Unmask { port };
    call_with(nr::EVENT_CHANNEL_OP, evtchn::UNMASK as u64, &mut arg).map(drop)
}

/// `EVTCHNOP_close`: closes `port`.
pub fn evtchn_close(port: Port) -> Result<(), Errno> {
    let mut arg = evtchn::Close { port };
    call_with(nr::EVENT_CHANNEL_OP, evtchn::CLOSE as u64, &mut arg).map(drop)
}

/// `HVMOP_get_param`: reads HVM parameter `index` (a `hvm_op::PARAM_*`) of this domain.
pub fn hvm_get_param(index: u32) -> Result<u64, Errno> {
    let mut arg = hvm_op::HvmParam {
        domid: DOMID_SELF,
        pad: 0,
        index,
        value: 0,
    };
    call_with(nr::HVM_OP, hvm_op::GET_PARAM, &mut arg)?;
    Ok(arg.value)
}

/// `XENMEM_add_to_physmap` for this domain: maps page `idx` of `space` (a
/// `memory_op::XENMAPSPACE_*`) at guest frame `gpfn`, replacing what was there.
///
/// # Safety
///
/// The frame `gpfn` (IPA >> 12) stops being the RAM it was and becomes the
/// hypervisor's page (for the shared-info page: zeroed, then written by the
/// hypervisor at any time). No Rust object may live in that frame, and the guest must
/// access it afterwards only through types that tolerate concurrent changes (such as
/// [`crate::shared::SharedInfo`]).
pub unsafe fn add_to_physmap(space: u32, idx: u64, gpfn: u64) -> Result<(), Errno> {
    let mut arg = memory_op::AddToPhysmap {
        domid: DOMID_SELF,
        size: 0,
        space,
        idx,
        gpfn,
    };
    call_with(nr::MEMORY_OP, memory_op::ADD_TO_PHYSMAP as u64, &mut arg).map(drop)
}

/// `VCPUOP_register_vcpu_info`: moves `vcpu`'s [`crate::shared::VcpuInfo`] to byte
/// `offset` of guest frame `gfn`. The area must be 8-byte aligned and within one page.
///
/// # Safety
///
/// From this call on, the hypervisor reads and writes those 48 bytes at any time.
/// They must hold a [`crate::shared::VcpuInfo`] (whose fields are atomics) that lives
/// for the rest of the domain's life and is not used for anything else.
pub unsafe fn register_vcpu_info(vcpu: u32, gfn: u64, offset: u32) -> Result<(), Errno> {
    let mut arg = vcpu_op::RegisterVcpuInfo {
        mfn: gfn,
        offset,
        rsvd: 0,
    };
    let ptr = &mut arg as *mut vcpu_op::RegisterVcpuInfo as u64;
    let args = [vcpu_op::REGISTER_VCPU_INFO as u64, vcpu as u64, ptr, 0, 0];
    // SAFETY: `arg` is valid for the call; the lasting effect on the registered area
    // is the caller's obligation (see above).
    result_from_return(unsafe { hypercall(nr::VCPU_OP, args) }).map(drop)
}

/// `VCPUOP_set_singleshot_timer`: raise `VIRQ_TIMER` on `vcpu` at system time
/// `timeout_abs_ns`. With [`vcpu_op::SSHOTTMR_FUTURE`] in `flags`, a time already
/// past is `-ETIME`.
pub fn set_singleshot_timer(vcpu: u32, timeout_abs_ns: u64, flags: u32) -> Result<(), Errno> {
    let mut arg = vcpu_op::SetSingleshotTimer {
        timeout_abs_ns,
        flags,
    };
    let ptr = &mut arg as *mut vcpu_op::SetSingleshotTimer as u64;
    let args = [vcpu_op::SET_SINGLESHOT_TIMER as u64, vcpu as u64, ptr, 0, 0];
    // SAFETY: the hypervisor only reads `arg`, which is valid for the call.
    result_from_return(unsafe { hypercall(nr::VCPU_OP, args) }).map(drop)
}

/// `VCPUOP_stop_singleshot_timer`: cancel `vcpu`'s one-shot timer.
pub fn stop_singleshot_timer(vcpu: u32) -> Result<(), Errno> {
    call_plain(
        nr::VCPU_OP,
        [vcpu_op::STOP_SINGLESHOT_TIMER as u64, vcpu as u64, 0, 0, 0],
    )
    .map(drop)
}

/// `SCHEDOP_poll`: blocks until one of `ports` is pending or system time `timeout_ns`
/// (absolute; 0 = no timeout) passes.
pub fn sched_poll(ports: &[Port], timeout_ns: u64) -> Result<(), Errno> {
    let nr_ports = u32::try_from(ports.len()).map_err(|_| Errno::EINVAL)?;
    let mut arg = sched_op::SchedPoll {
        ports: ports.as_ptr() as u64,
        nr_ports,
        timeout: timeout_ns,
    };
    // The hypervisor reads `arg` and the `ports` array (`Port` is a transparent u32),
    // both valid for the call.
    call_with(nr::SCHED_OP, sched_op::POLL as u64, &mut arg).map(drop)
}

/// `EVTCHNOP_bind_interdomain`: connects to port `remote_port` that `remote_dom`
/// allocated for this domain; returns the local port.
pub fn evtchn_bind_interdomain(remote_dom: u16, remote_port: Port) -> Result<Port, Errno> {
    let mut arg = evtchn::BindInterdomain {
        remote_dom,
        remote_port,
        local_port: Port(0),
    };
    call_with(
        nr::EVENT_CHANNEL_OP,
        evtchn::BIND_INTERDOMAIN as u64,
        &mut arg,
    )?;
    Ok(arg.local_port)
}

/// `EVTCHNOP_bind_ipi`: allocates a port that signals `vcpu` of this domain.
pub fn evtchn_bind_ipi(vcpu: u32) -> Result<Port, Errno> {
    let mut arg = evtchn::BindIpi {
        vcpu,
        port: Port(0),
    };
    call_with(nr::EVENT_CHANNEL_OP, evtchn::BIND_IPI as u64, &mut arg)?;
    Ok(arg.port)
}

/// `EVTCHNOP_bind_vcpu`: notifies `vcpu` for `port` from now on.
pub fn evtchn_bind_vcpu(port: Port, vcpu: u32) -> Result<(), Errno> {
    let mut arg = evtchn::BindVcpu { port, vcpu };
    call_with(nr::EVENT_CHANNEL_OP, evtchn::BIND_VCPU as u64, &mut arg).map(drop)
}

/// `EVTCHNOP_status`: the state of `port` of this domain.
pub fn evtchn_status(port: Port) -> Result<evtchn::Status, Errno> {
    let mut arg = evtchn::Status {
        dom: DOMID_SELF,
        port,
        ..Default::default()
    };
    call_with(nr::EVENT_CHANNEL_OP, evtchn::STATUS as u64, &mut arg)?;
    Ok(arg)
}

/// `GNTTABOP_query_size` for this domain: `(nr_frames, max_nr_frames)`. A non-okay
/// `GNTST_*` status is reported as [`Errno::EINVAL`].
pub fn gnttab_query_size() -> Result<(u32, u32), Errno> {
    let mut arg = grant_table_op::QuerySize {
        dom: DOMID_SELF,
        ..Default::default()
    };
    let ptr = &mut arg as *mut grant_table_op::QuerySize as u64;
    let args = [grant_table_op::QUERY_SIZE as u64, ptr, 1, 0, 0];
    // SAFETY: the hypervisor reads and writes the one struct `arg`, valid for the call.
    result_from_return(unsafe { hypercall(nr::GRANT_TABLE_OP, args) })?;
    if arg.status != grant_table_op::GNTST_OKAY {
        return Err(Errno::EINVAL);
    }
    Ok((arg.nr_frames, arg.max_nr_frames))
}

/// `GNTTABOP_set_version`: asks for grant-table format `version`; returns the version
/// in effect.
pub fn gnttab_set_version(version: u32) -> Result<u32, Errno> {
    let mut arg = grant_table_op::SetVersion { version };
    let ptr = &mut arg as *mut grant_table_op::SetVersion as u64;
    let args = [grant_table_op::SET_VERSION as u64, ptr, 1, 0, 0];
    // SAFETY: the hypervisor reads and writes the one struct `arg`, valid for the call.
    result_from_return(unsafe { hypercall(nr::GRANT_TABLE_OP, args) })?;
    Ok(arg.version)
}

/// Issues `grant_table_op(cmd, ops, ops.len())`: the hypervisor reads each struct and
/// writes its `status` (and outputs) back. `Err` only when the call as a whole failed;
/// per-element outcomes are in the structs.
fn grant_table_batch<T>(cmd: u32, ops: &mut [T]) -> Result<(), Errno> {
    let args = [cmd as u64, ops.as_mut_ptr() as u64, ops.len() as u64, 0, 0];
    // SAFETY: the hypervisor reads and writes exactly `ops.len()` structs of the layout
    // `cmd` defines (the caller's typed slice), all valid for the call.
    result_from_return(unsafe { hypercall(nr::GRANT_TABLE_OP, args) }).map(drop)
}

/// `GNTTABOP_map_grant_ref` on a batch; each element's `status` says how it went.
///
/// # Safety
///
/// A successful map replaces nothing: it makes another domain's frame appear at each
/// `host_addr`, which must be a guest-physical page the caller does not otherwise use.
pub unsafe fn gnttab_map_grant_ref(ops: &mut [grant_table_op::MapGrantRef]) -> Result<(), Errno> {
    grant_table_batch(grant_table_op::MAP_GRANT_REF, ops)
}

/// `GNTTABOP_unmap_grant_ref` on a batch; each element's `status` says how it went.
///
/// # Safety
///
/// The frames disappear from the guest's physical memory: nothing may access them
/// afterwards.
pub unsafe fn gnttab_unmap_grant_ref(
    ops: &mut [grant_table_op::UnmapGrantRef],
) -> Result<(), Errno> {
    grant_table_batch(grant_table_op::UNMAP_GRANT_REF, ops)
}

/// `GNTTABOP_copy` on a batch; each element's `status` says how it went.
///
/// # Safety
///
/// The hypervisor writes up to `len` bytes at each destination; a destination in the
/// caller's own memory (a frame number, not a grant) must not be memory Rust code
/// holds a reference to.
pub unsafe fn gnttab_copy(ops: &mut [grant_table_op::Copy]) -> Result<(), Errno> {
    grant_table_batch(grant_table_op::COPY, ops)
}

/// `GNTTABOP_setup_table` for this domain: grows the table to `frames.len()` frames
/// and fills `frames` with where each is mapped (`u64::MAX` where it is not). Returns
/// the element's `GNTST_*` status.
pub fn gnttab_setup_table(frames: &mut [u64]) -> Result<i16, Errno> {
    let mut arg = grant_table_op::SetupTable {
        dom: DOMID_SELF,
        nr_frames: frames.len() as u32,
        frame_list: frames.as_mut_ptr() as u64,
        ..Default::default()
    };
    grant_table_batch(grant_table_op::SETUP_TABLE, core::slice::from_mut(&mut arg))?;
    Ok(arg.status)
}

/// `GNTTABOP_get_version` for this domain.
pub fn gnttab_get_version() -> Result<u32, Errno> {
    let mut arg = grant_table_op::GetVersion {
        dom: DOMID_SELF,
        ..Default::default()
    };
    grant_table_batch(grant_table_op::GET_VERSION, core::slice::from_mut(&mut arg))?;
    Ok(arg.version)
}

/// `XENMEM_add_to_physmap(XENMAPSPACE_grant_table)`: grant-table frame `index` of this
/// domain appears at guest frame `gpfn` (the `/hypervisor` `reg` hole is meant for it).
///
/// # Safety
///
/// Whatever was at `gpfn` is replaced by the grant frame.
pub unsafe fn map_grant_frame(index: u64, gpfn: u64) -> Result<(), Errno> {
    let mut arg = memory_op::AddToPhysmap {
        domid: DOMID_SELF,
        size: 0,
        space: memory_op::XENMAPSPACE_GRANT_TABLE,
        idx: index,
        gpfn,
    };
    call_with(nr::MEMORY_OP, memory_op::ADD_TO_PHYSMAP as u64, &mut arg).map(drop)
}

/// `vm_assist(VMASST_CMD_enable / disable, kind)`.
pub fn vm_assist(enable: bool, kind: u32) -> Result<(), Errno> {
    let cmd = if enable {
        vm_assist::CMD_ENABLE
    } else {
        vm_assist::CMD_DISABLE
    };
    call_plain(nr::VM_ASSIST, [cmd as u64, kind as u64, 0, 0, 0]).map(drop)
}

/// `XENMEM_remove_from_physmap` for this domain: unmaps guest frame `gpfn`.
///
/// # Safety
///
/// The frame disappears from the guest's physical memory: nothing may access it
/// afterwards (an access faults into the hypervisor and stops the domain).
pub unsafe fn remove_from_physmap(gpfn: u64) -> Result<(), Errno> {
    let mut arg = memory_op::RemoveFromPhysmap {
        domid: DOMID_SELF,
        gpfn,
    };
    call_with(
        nr::MEMORY_OP,
        memory_op::REMOVE_FROM_PHYSMAP as u64,
        &mut arg,
    )
    .map(drop)
}
