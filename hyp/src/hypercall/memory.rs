//! `memory_op`: XENMEM_add_to_physmap for the shared_info page and the grant-table
//! frames. Everything else answers Xen's "not supported here" errno.

use super::{errno, Outcome};
use crate::addr::{GuestVirtAddr, IntermediatePhysAddr, PAGE_SIZE};
use crate::domain::{Domain, IPA_BITS};
use crate::guest_memory::GuestMemory;
use crate::mm::{FrameAllocator, MemoryKind, Stage2Attributes};
use hypercall_abi::errno::Errno;
use hypercall_abi::memory_op::{self, AddToPhysmap};
use hypercall_abi::shared::DOMID_SELF;

/// The shared page as the guest's stage 2 maps it: ordinary memory, never executable.
const SHARED_PAGE: Stage2Attributes = Stage2Attributes {
    read: true,
    write: true,
    execute: false,
    memory: MemoryKind::Normal,
};

/// Handles `memory_op(cmd, arg)`.
pub fn memory_op(
    domain: &mut Domain,
    frames: &mut FrameAllocator,
    cmd: u32,
    arg: GuestVirtAddr,
) -> Outcome {
    match cmd {
        memory_op::ADD_TO_PHYSMAP => {
            let owned = domain.guest_accessible();
            let memory = GuestMemory::new(&owned);
            match memory.read_value::<AddToPhysmap>(arg) {
                Ok(request) => match add_to_physmap(domain, frames, &request) {
                    Ok(()) => Outcome::Return(0),
                    Err(error) => errno(error),
                },
                Err(error) => errno(error),
            }
        }
        _ => errno(Errno::ENOSYS),
    }
}

/// XENMEM_add_to_physmap with Xen/ARM's rules (`xenmem_add_to_physmap_one`): the domain
/// must be the caller; for XENMAPSPACE_shared_info `idx` must be 0, and the page replaces
/// whatever the guest had at `gpfn` (a RAM page there becomes unreachable, as on Xen). A
/// second call moves it. For XENMAPSPACE_grant_table see `map_grant_frame`. Other
/// spaces are not provided.
pub fn add_to_physmap(
    domain: &mut Domain,
    frames: &mut FrameAllocator,
    request: &AddToPhysmap,
) -> Result<(), Errno> {
    if request.domid != DOMID_SELF && usize::from(request.domid) != domain.slot {
        return Err(Errno::EPERM);
    }
    match request.space {
        memory_op::XENMAPSPACE_SHARED_INFO => {
            if request.idx != 0 {
                return Err(Errno::EINVAL);
            }
            let target = IntermediatePhysAddr::from_frame_number(request.gpfn)
                .filter(|address| address.raw() < (1 << IPA_BITS))
                .ok_or(Errno::EINVAL)?;
            if domain.shared_info_ipa == Some(target) {
                return Ok(());
            }
            // Whatever was at the target goes; then the page moves from its old place.
            replace_page(domain, frames, target, domain.shared_info)?;
            if let Some(old) = domain.shared_info_ipa.replace(target) {
                let _ = domain.stage2.unmap(old, PAGE_SIZE, frames);
            }
            Ok(())
        }
        memory_op::XENMAPSPACE_GRANT_TABLE => map_grant_frame(domain, frames, request),
        _ => Err(Errno::EINVAL),
    }
}

/// XENMAPSPACE_grant_table (Xen's `gnttab_map_frame`): table frame `idx` appears at
/// `gpfn`, growing the table to include it; v2 status frames do not exist (`-EINVAL`).
/// Like shared_info, it replaces whatever the guest had there, and a second call for the
/// same frame moves it.
fn map_grant_frame(
    domain: &mut Domain,
    frames: &mut FrameAllocator,
    request: &AddToPhysmap,
) -> Result<(), Errno> {
    let index = u32::try_from(request.idx)
        .ok()
        .filter(|index| *index < crate::grant_table::MAX_FRAMES)
        .ok_or(Errno::EINVAL)?;
    let page = domain.grants.frame(index).ok_or(Errno::EINVAL)?;
    let target = IntermediatePhysAddr::from_frame_number(request.gpfn)
        .filter(|address| address.raw() < (1 << IPA_BITS))
        .ok_or(Errno::EINVAL)?;
    if domain.grants.frame_ipa(index) == Some(target) {
        return Ok(());
    }
    replace_page(domain, frames, target, page)?;
    domain.grants.grow(index + 1);
    if let Some(old) = domain.grants.set_frame_ipa(index, target) {
        let _ = domain.stage2.unmap(old, PAGE_SIZE, frames);
    }
    Ok(())
}

/// Maps hypervisor page `page` at `target` in the domain's stage 2, replacing what was
/// there (RAM there stays allocated to the domain, just unmapped, as on Xen; a shared
/// page or grant frame there is no longer mapped anywhere). A grant mapped there must be
/// unmapped with GNTTABOP_unmap_grant_ref first (`-EBUSY`), so the maptrack stays true.
fn replace_page(
    domain: &mut Domain,
    frames: &mut FrameAllocator,
    target: IntermediatePhysAddr,
    page: crate::addr::PhysAddr,
) -> Result<(), Errno> {
    if domain
        .grants
        .mappings()
        .any(|(_, mapping)| mapping.host == target)
    {
        return Err(Errno::EBUSY);
    }
    domain.grants.forget_frame_ipa(target);
    if domain.shared_info_ipa == Some(target) {
        domain.shared_info_ipa = None;
    }
    if domain.stage2.translate(target).is_some() {
        domain
            .stage2
            .unmap(target, PAGE_SIZE, frames)
            .map_err(|_| Errno::ENOMEM)?;
    }
    domain
        .stage2
        .map(target, page, PAGE_SIZE, SHARED_PAGE, frames)
        .map_err(|_| Errno::ENOMEM)
}

// SAFETY: plain #[repr(C)] integer struct from the ABI crate; its padding (after `space`
// is none: 2+2+4+8+8) is covered by the layout assertions there.
unsafe impl crate::guest_memory::Pod for AddToPhysmap {}
