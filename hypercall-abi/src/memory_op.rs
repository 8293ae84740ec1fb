//! `memory_op` sub-ops (`public/memory.h`).
//!
//! Arguments: `x0` = cmd, `x1` = guest virtual address of the argument. Xen takes cmd
//! as an `unsigned long`: the low [`MEMOP_EXTENT_SHIFT`] bits are the operation and the
//! bits above carry a continuation's start extent, which only Xen itself writes.

/// Bits of cmd that select the operation.
pub const MEMOP_EXTENT_SHIFT: u32 = 6;
/// Mask of the operation in cmd.
pub const MEMOP_CMD_MASK: u64 = (1 << MEMOP_EXTENT_SHIFT) - 1;

/// `XENMEM_increase_reservation`: argument [`MemoryReservation`].
pub const INCREASE_RESERVATION: u32 = 0;
/// `XENMEM_decrease_reservation`: give frames back; argument [`MemoryReservation`].
pub const DECREASE_RESERVATION: u32 = 1;
/// `XENMEM_maximum_ram_page`.
pub const MAXIMUM_RAM_PAGE: u32 = 2;
/// `XENMEM_current_reservation`.
pub const CURRENT_RESERVATION: u32 = 3;
/// `XENMEM_maximum_reservation`.
pub const MAXIMUM_RESERVATION: u32 = 4;
/// `XENMEM_machphys_mfn_list`.
pub const MACHPHYS_MFN_LIST: u32 = 5;
/// `XENMEM_populate_physmap`: back guest frames with memory; argument
/// [`MemoryReservation`].
pub const POPULATE_PHYSMAP: u32 = 6;
/// `XENMEM_add_to_physmap`: map a hypervisor page into the guest; argument
/// [`AddToPhysmap`].
pub const ADD_TO_PHYSMAP: u32 = 7;
/// `XENMEM_exchange`.
pub const EXCHANGE: u32 = 11;
/// `XENMEM_maximum_gpfn`.
pub const MAXIMUM_GPFN: u32 = 14;
/// `XENMEM_remove_from_physmap`: unmap a frame; argument [`RemoveFromPhysmap`].
pub const REMOVE_FROM_PHYSMAP: u32 = 15;
/// `XENMEM_add_to_physmap_batch` (also `add_to_physmap_range`).
pub const ADD_TO_PHYSMAP_BATCH: u32 = 23;
/// `XENMEM_claim_pages`.
pub const CLAIM_PAGES: u32 = 24;
/// `XENMEM_get_vnumainfo`.
pub const GET_VNUMAINFO: u32 = 26;
/// `XENMEM_reserved_device_memory_map`.
pub const RESERVED_DEVICE_MEMORY_MAP: u32 = 27;
/// `XENMEM_acquire_resource`.
pub const ACQUIRE_RESOURCE: u32 = 28;

/// `XENMAPSPACE_shared_info`: the shared-info page; `idx` must be 0.
pub const XENMAPSPACE_SHARED_INFO: u32 = 0;
/// `XENMAPSPACE_grant_table`: grant-table frame `idx` (with
/// [`XENMAPIDX_GRANT_TABLE_STATUS`] set: a v2 status frame).
pub const XENMAPSPACE_GRANT_TABLE: u32 = 1;
/// `XENMAPSPACE_gmfn`: move a guest frame.
pub const XENMAPSPACE_GMFN: u32 = 2;
/// `XENMAPSPACE_gmfn_range`: move `size` guest frames.
pub const XENMAPSPACE_GMFN_RANGE: u32 = 3;
/// `XENMAPSPACE_gmfn_foreign`: a frame of another domain (batch only).
pub const XENMAPSPACE_GMFN_FOREIGN: u32 = 4;
/// `XENMAPSPACE_dev_mmio`: device MMIO (hardware domain).
pub const XENMAPSPACE_DEV_MMIO: u32 = 5;
/// `XENMAPIDX_grant_table_status`: flag in `idx` selecting grant status frames.
pub const XENMAPIDX_GRANT_TABLE_STATUS: u64 = 0x8000_0000;

/// Argument of [`ADD_TO_PHYSMAP`] (`struct xen_add_to_physmap`, 24 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct AddToPhysmap {
    /// The domain whose physmap changes; [`crate::shared::DOMID_SELF`].
    pub domid: u16,
    /// Number of frames for [`XENMAPSPACE_GMFN_RANGE`]; otherwise 0.
    pub size: u16,
    /// A `XENMAPSPACE_*` value.
    pub space: u32,
    /// Index within the space (0 for shared info, the frame number for grant tables).
    pub idx: u64,
    /// Guest frame number (IPA >> 12) at which to map the page.
    pub gpfn: u64,
}
assert_layout!(AddToPhysmap, 24, { domid: 0, size: 2, space: 4, idx: 8, gpfn: 16 });

/// Argument of [`REMOVE_FROM_PHYSMAP`] (`struct xen_remove_from_physmap`, 16 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct RemoveFromPhysmap {
    /// The domain; [`crate::shared::DOMID_SELF`].
    pub domid: u16,
    /// Guest frame number to unmap.
    pub gpfn: u64,
}
assert_layout!(RemoveFromPhysmap, 16, { domid: 0, gpfn: 8 });

/// Argument of the reservation operations (`struct xen_memory_reservation`, 32 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct MemoryReservation {
    /// Guest virtual address of an array of `nr_extents` guest frame numbers.
    pub extent_start: u64,
    /// Number of extents.
    pub nr_extents: u64,
    /// Each extent is `2^extent_order` frames.
    pub extent_order: u32,
    /// `XENMEMF_*` flags.
    pub mem_flags: u32,
    /// The domain; [`crate::shared::DOMID_SELF`].
    pub domid: u16,
}
assert_layout!(MemoryReservation, 32, {
    extent_start: 0,
    nr_extents: 8,
    extent_order: 16,
    mem_flags: 20,
    domid: 24,
});
