//! `vcpu_op`: where a vCPU's vcpu_info lives and where its runstate is reported.

use super::{errno, Outcome};
use crate::addr::{GuestVirtAddr, IntermediatePhysAddr, PhysAddr, PAGE_SIZE};
use crate::domain::Domain;
use crate::guest_memory::GuestMemory;
use hypercall_abi::errno::Errno;
use hypercall_abi::evtchn2l;
use hypercall_abi::shared::VcpuInfo;
use hypercall_abi::vcpu_op::{
    self, RegisterRunstateMemoryArea, RegisterVcpuInfo, SetSingleshotTimer,
};

/// Handles `vcpu_op(cmd, vcpu, arg)` from vCPU `caller` of `domain`.
pub fn vcpu_op(
    domain: &mut Domain,
    caller: usize,
    cmd: u32,
    target: u32,
    arg: GuestVirtAddr,
) -> Outcome {
    let Some(target) = usize::try_from(target)
        .ok()
        .filter(|index| *index < domain.vcpus.len())
    else {
        return errno(Errno::ENOENT);
    };
    let owned = domain.guest_accessible();
    let memory = GuestMemory::new(&owned);
    match cmd {
        vcpu_op::REGISTER_VCPU_INFO => {
            let request = match memory.read_value::<RegisterVcpuInfo>(arg) {
                Ok(request) => request,
                Err(error) => return errno(error),
            };
            match register_vcpu_info(domain, caller, target, &request) {
                Ok(true) => Outcome::ReturnAndUpcall {
                    value: 0,
                    vcpu: target,
                },
                Ok(false) => Outcome::Return(0),
                Err(error) => errno(error),
            }
        }
        vcpu_op::REGISTER_RUNSTATE_MEMORY_AREA => {
            match memory.read_value::<RegisterRunstateMemoryArea>(arg) {
                Ok(request) => {
                    // As on Xen/ARM the address is only recorded here; it is written (and a bad
                    // one ignored) each time the vCPU is switched in.
                    if let Some(vcpu) = domain.vcpus.get_mut(target) {
                        vcpu.runstate_area = Some(GuestVirtAddr::new(request.addr));
                    }
                    Outcome::Return(0)
                }
                Err(error) => errno(error),
            }
        }
        vcpu_op::SET_SINGLESHOT_TIMER | vcpu_op::STOP_SINGLESHOT_TIMER => {
            // As Xen: only a vCPU's own timer.
            if target != caller {
                return errno(Errno::EINVAL);
            }
            let deadline = if cmd == vcpu_op::SET_SINGLESHOT_TIMER {
                // 16 bytes: u64 timeout, u32 flags, then padding (parsed, never typed, so
                // no padding byte is ever treated as data).
                let mut bytes = [0u8; 16];
                if let Err(error) = memory.read(arg, &mut bytes) {
                    return errno(error);
                }
                let [t0, t1, t2, t3, t4, t5, t6, t7, f0, f1, f2, f3, ..] = bytes;
                let request = SetSingleshotTimer {
                    timeout_abs_ns: u64::from_le_bytes([t0, t1, t2, t3, t4, t5, t6, t7]),
                    flags: u32::from_le_bytes([f0, f1, f2, f3]),
                };
                let now = crate::arch::read_counter();
                let deadline = nanoseconds_to_ticks(request.timeout_abs_ns);
                if request.flags & vcpu_op::SSHOTTMR_FUTURE != 0 && deadline < now {
                    return errno(Errno::ETIME);
                }
                Some(deadline)
            } else {
                None
            };
            if let Some(vcpu) = domain.vcpus.get_mut(target) {
                vcpu.singleshot = deadline;
            }
            Outcome::Return(0)
        }
        _ => errno(Errno::ENOSYS),
    }
}

/// Counter ticks to Xen system time (nanoseconds since the counter started).
pub fn ticks_to_nanoseconds(ticks: u64) -> u64 {
    let frequency = crate::arch::read_counter_frequency().max(1);
    let nanoseconds = u128::from(ticks) * 1_000_000_000 / u128::from(frequency);
    u64::try_from(nanoseconds).unwrap_or(u64::MAX)
}

/// Xen system time (nanoseconds since the counter started) to counter ticks.
pub fn nanoseconds_to_ticks(nanoseconds: u64) -> u64 {
    let frequency = crate::arch::read_counter_frequency().max(1);
    let ticks = u128::from(nanoseconds) * u128::from(frequency) / 1_000_000_000;
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// VCPUOP_register_vcpu_info with Xen 4.17's rules (`map_vcpu_info`): the area must fit
/// its page, lie in the domain's memory, be 8-aligned (our atomics need it), be registered
/// once, and only by the vCPU itself or for one that is off. The old contents are copied
/// and every event marked pending, to force a rescan; `Ok(true)` means the upcall must be
/// raised now (Xen's `arch_evtchn_inject`).
pub fn register_vcpu_info(
    domain: &mut Domain,
    caller: usize,
    target: usize,
    request: &RegisterVcpuInfo,
) -> Result<bool, Errno> {
    let offset = u64::from(request.offset);
    if offset > PAGE_SIZE - core::mem::size_of::<VcpuInfo>() as u64 || offset % 8 != 0 {
        return Err(Errno::EINVAL);
    }
    let vcpu = domain.vcpus.get(target).ok_or(Errno::ENOENT)?;
    if vcpu.vcpu_info.is_some() || (target != caller && vcpu.is_online()) {
        return Err(Errno::EINVAL);
    }
    let page = IntermediatePhysAddr::from_frame_number(request.mfn).ok_or(Errno::EINVAL)?;
    let (physical_page, _) = domain.stage2.translate(page).ok_or(Errno::EINVAL)?;
    let location = physical_page.add(offset);
    let in_ram = domain
        .ram
        .contains_range(location, core::mem::size_of::<VcpuInfo>() as u64);
    if !in_ram {
        return Err(Errno::EINVAL);
    }
    let previous = domain.vcpu_info(target).map(|info| {
        (
            info.evtchn_upcall_pending
                .load(core::sync::atomic::Ordering::SeqCst),
            info.evtchn_pending_sel
                .load(core::sync::atomic::Ordering::SeqCst),
        )
    });
    copy_vcpu_info(location, previous);
    if let Some(vcpu) = domain.vcpus.get_mut(target) {
        vcpu.vcpu_info = Some(location);
    }
    Ok(domain
        .vcpu_info(target)
        .is_some_and(evtchn2l::mark_all_pending))
}

fn copy_vcpu_info(location: PhysAddr, previous: Option<(u8, u64)>) {
    let (pending, selector) = previous.unwrap_or((0, 0));
    // SAFETY: `location` was checked to hold a whole VcpuInfo inside the domain's RAM,
    // 8-aligned; the guest may write it concurrently, which the atomics tolerate.
    let info = unsafe { &*crate::arch::phys_to_virt(location).cast::<VcpuInfo>() };
    info.evtchn_upcall_pending
        .store(pending, core::sync::atomic::Ordering::SeqCst);
    info.evtchn_upcall_mask
        .store(0, core::sync::atomic::Ordering::SeqCst);
    info.evtchn_pending_sel
        .store(selector, core::sync::atomic::Ordering::SeqCst);
}

// SAFETY: plain #[repr(C)] integer structs from the ABI crate, without padding.
unsafe impl crate::guest_memory::Pod for RegisterVcpuInfo {}
// SAFETY: as above.
unsafe impl crate::guest_memory::Pod for RegisterRunstateMemoryArea {}
