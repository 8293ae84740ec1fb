//! `grant_table_op(cmd, arg, count)`: copies each argument struct in from the guest,
//! hands it to [`crate::grant_table`], and copies the result back, with Xen's rules for
//! counts, continuations and faults.
//!
//! Batches are preemptible as on Xen: after [`BATCH`] elements the call returns a
//! continuation, and the hypervisor rewinds the guest's PC onto its `HVC` with the
//! pointer and count advanced, so a huge count cannot hold the hypervisor lock for long.

use crate::addr::GuestVirtAddr;
use crate::domain::{Domain, MAX_DOMAINS};
use crate::grant_table;
use crate::guest_memory::{GuestMemory, Pod};
use crate::mm::FrameAllocator;
use hypercall_abi::errno::Errno;
use hypercall_abi::grant_table_op::{self as gnttab};

/// Elements handled before the call is continued.
pub const BATCH: u32 = 64;

/// How a grant_table_op call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantOutcome {
    /// Finished: the value for x0.
    Done(u64),
    /// Not finished: re-issue the call with `arg` and `count` (x1, x2).
    Continue {
        /// Where the remaining elements start.
        arg: u64,
        /// How many remain.
        count: u64,
    },
}

/// Handles `grant_table_op(cmd, arg, count)` from domain `caller` (`cmd` already decoded).
pub fn grant_table_op(
    domains: &mut [Option<Domain>; MAX_DOMAINS],
    frames: &mut FrameAllocator,
    caller: usize,
    cmd: u32,
    arg: GuestVirtAddr,
    count: u32,
) -> GrantOutcome {
    let Some(owned) = domains
        .get(caller)
        .and_then(Option::as_ref)
        .map(Domain::guest_accessible)
    else {
        return GrantOutcome::Done(Errno::ESRCH.to_return());
    };
    let memory = GuestMemory::new(&owned);
    let result = match cmd {
        gnttab::MAP_GRANT_REF => {
            return batch(&memory, arg, count, |op: &mut gnttab::MapGrantRef| {
                grant_table::map(domains, frames, caller, op)
            })
        }
        gnttab::UNMAP_GRANT_REF => {
            return batch(&memory, arg, count, |op: &mut gnttab::UnmapGrantRef| {
                grant_table::unmap(domains, frames, caller, op)
            })
        }
        gnttab::COPY => {
            return batch(&memory, arg, count, |op: &mut gnttab::Copy| {
                grant_table::copy(domains, caller, op)
            })
        }
        gnttab::QUERY_SIZE => single(&memory, arg, count, |op: &mut gnttab::QuerySize| {
            grant_table::query_size(domains, caller, op);
            Ok(())
        }),
        gnttab::SETUP_TABLE => single(&memory, arg, count, |op: &mut gnttab::SetupTable| {
            setup_table(domains, &memory, caller, op)
        }),
        gnttab::SET_VERSION => set_version(&memory, arg),
        gnttab::GET_VERSION => get_version(domains, &memory, caller, arg),
        _ => Err(Errno::ENOSYS),
    };
    GrantOutcome::Done(match result {
        Ok(()) => 0,
        Err(error) => error.to_return(),
    })
}

/// Runs `operation` on each of `count` structs at `arg`, writing each back; at most
/// [`BATCH`] of them before asking for a continuation. A struct that cannot be read or
/// written ends the call with `-EFAULT` (those before it are done, as on Xen).
fn batch<T: Pod>(
    memory: &GuestMemory<'_>,
    arg: GuestVirtAddr,
    count: u32,
    mut operation: impl FnMut(&mut T),
) -> GrantOutcome {
    let size = core::mem::size_of::<T>() as u64;
    let now = count.min(BATCH);
    for index in 0..now {
        let address = arg.add(u64::from(index) * size);
        let mut op = match memory.read_value::<T>(address) {
            Ok(op) => op,
            Err(error) => return GrantOutcome::Done(error.to_return()),
        };
        operation(&mut op);
        if let Err(error) = memory.write_value(address, &op) {
            return GrantOutcome::Done(error.to_return());
        }
    }
    if now < count {
        GrantOutcome::Continue {
            arg: arg.add(u64::from(now) * size).raw(),
            count: u64::from(count - now),
        }
    } else {
        GrantOutcome::Done(0)
    }
}

/// Runs `operation` on the one struct at `arg` (Xen: any other count is `-EINVAL`).
fn single<T: Pod>(
    memory: &GuestMemory<'_>,
    arg: GuestVirtAddr,
    count: u32,
    operation: impl FnOnce(&mut T) -> Result<(), Errno>,
) -> Result<(), Errno> {
    if count != 1 {
        return Err(Errno::EINVAL);
    }
    let mut op = memory.read_value::<T>(arg)?;
    operation(&mut op)?;
    memory.write_value(arg, &op)
}

/// `GNTTABOP_setup_table`: the frame list goes to the guest's array, whose whole extent
/// is checked first (Xen's `guest_handle_okay`); a write that still fails is
/// `GNTST_bad_virt_addr`.
fn setup_table(
    domains: &mut [Option<Domain>; MAX_DOMAINS],
    memory: &GuestMemory<'_>,
    caller: usize,
    op: &mut gnttab::SetupTable,
) -> Result<(), Errno> {
    let list = GuestVirtAddr::new(op.frame_list);
    let bytes = (op.nr_frames as usize).saturating_mul(8);
    if op.nr_frames <= grant_table::MAX_FRAMES {
        memory.check_readable(list, bytes)?;
    }
    let frames = grant_table::setup_table(domains, caller, op);
    for (index, frame) in frames.iter().enumerate() {
        if memory
            .write_value(list.add(index as u64 * 8), frame)
            .is_err()
        {
            op.status = gnttab::GNTST_BAD_VIRT_ADDR;
            break;
        }
    }
    Ok(())
}

/// `GNTTABOP_set_version`: only version 1 exists on ARM (Xen's `GNTTAB_MAX_VERSION`); 2
/// is `-ENOSYS`, anything else `-EINVAL`. The version in effect is written back.
fn set_version(memory: &GuestMemory<'_>, arg: GuestVirtAddr) -> Result<(), Errno> {
    let mut op: gnttab::SetVersion = memory.read_value(arg)?;
    let result = match op.version {
        1 => Ok(()),
        2 => Err(Errno::ENOSYS),
        _ => Err(Errno::EINVAL),
    };
    op.version = 1;
    memory.write_value(arg, &op)?;
    result
}

/// `GNTTABOP_get_version`: the caller's own table (another domain's: `-EPERM`, an unknown
/// one: `-ESRCH`).
fn get_version(
    domains: &[Option<Domain>; MAX_DOMAINS],
    memory: &GuestMemory<'_>,
    caller: usize,
    arg: GuestVirtAddr,
) -> Result<(), Errno> {
    let mut op: gnttab::GetVersion = memory.read_value(arg)?;
    let target = if op.dom == hypercall_abi::shared::DOMID_SELF {
        caller
    } else {
        usize::from(op.dom)
    };
    if domains.get(target).and_then(Option::as_ref).is_none() {
        return Err(Errno::ESRCH);
    }
    if target != caller {
        return Err(Errno::EPERM);
    }
    op.version = 1;
    memory.write_value(arg, &op)
}

// SAFETY: plain #[repr(C)] integer structs from the ABI crate; their layouts (asserted
// there) have no padding a guest could not also write.
unsafe impl Pod for gnttab::MapGrantRef {}
// SAFETY: as above.
unsafe impl Pod for gnttab::UnmapGrantRef {}
// SAFETY: as above.
unsafe impl Pod for gnttab::Copy {}
// SAFETY: as above.
unsafe impl Pod for gnttab::QuerySize {}
// SAFETY: as above.
unsafe impl Pod for gnttab::SetupTable {}
// SAFETY: as above.
unsafe impl Pod for gnttab::SetVersion {}
// SAFETY: as above.
unsafe impl Pod for gnttab::GetVersion {}
// SAFETY: a frame number, plain u64.
unsafe impl Pod for u64 {}
