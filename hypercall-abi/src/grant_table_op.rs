//! `grant_table_op` sub-ops, status codes and argument structs
//! (`public/grant_table.h`, Xen 4.17 layouts).
//!
//! Arguments: `x0` = cmd (32 bits), `x1` = guest virtual address of an array of
//! `count` argument structs, `x2` = count (32 bits). The per-element outcome is the
//! struct's `status` field (a `GNTST_*` value); `x0` is 0 unless the call as a whole
//! failed (negative errno).

/// `GNTTABOP_map_grant_ref`: map a foreign grant; argument [`MapGrantRef`].
pub const MAP_GRANT_REF: u32 = 0;
/// `GNTTABOP_unmap_grant_ref`: argument [`UnmapGrantRef`].
pub const UNMAP_GRANT_REF: u32 = 1;
/// `GNTTABOP_setup_table`: list the grant-table frames; argument [`SetupTable`].
/// Used only by guests without `XENFEAT_auto_translated_physmap` (not ARM guests).
pub const SETUP_TABLE: u32 = 2;
/// `GNTTABOP_dump_table`: debug dump.
pub const DUMP_TABLE: u32 = 3;
/// `GNTTABOP_transfer`: page transfer.
pub const TRANSFER: u32 = 4;
/// `GNTTABOP_copy`: hypervisor-mediated copy; argument [`Copy`](struct@Copy).
pub const COPY: u32 = 5;
/// `GNTTABOP_query_size`: current and maximum frame counts; argument [`QuerySize`].
pub const QUERY_SIZE: u32 = 6;
/// `GNTTABOP_unmap_and_replace`.
pub const UNMAP_AND_REPLACE: u32 = 7;
/// `GNTTABOP_set_version`: choose the entry format; argument [`SetVersion`].
pub const SET_VERSION: u32 = 8;
/// `GNTTABOP_get_status_frames` (v2).
pub const GET_STATUS_FRAMES: u32 = 9;
/// `GNTTABOP_get_version`: argument [`GetVersion`].
pub const GET_VERSION: u32 = 10;
/// `GNTTABOP_swap_grant_ref`.
pub const SWAP_GRANT_REF: u32 = 11;
/// `GNTTABOP_cache_flush`.
pub const CACHE_FLUSH: u32 = 12;

/// Bits of cmd that select the operation; Xen keeps continuation state above them and
/// rejects a guest-supplied non-zero upper part with `-EINVAL` (except for
/// [`CACHE_FLUSH`]).
pub const CMD_MASK: u32 = (1 << 12) - 1;

/// `GNTST_okay`.
pub const GNTST_OKAY: i16 = 0;
/// `GNTST_general_error`.
pub const GNTST_GENERAL_ERROR: i16 = -1;
/// `GNTST_bad_domain`: unrecognised domain id.
pub const GNTST_BAD_DOMAIN: i16 = -2;
/// `GNTST_bad_gntref`: unrecognised or inappropriate grant reference.
pub const GNTST_BAD_GNTREF: i16 = -3;
/// `GNTST_bad_handle`: unrecognised or inappropriate mapping handle.
pub const GNTST_BAD_HANDLE: i16 = -4;
/// `GNTST_bad_virt_addr`: inappropriate virtual address to map.
pub const GNTST_BAD_VIRT_ADDR: i16 = -5;
/// `GNTST_bad_dev_addr`: inappropriate device address to unmap.
pub const GNTST_BAD_DEV_ADDR: i16 = -6;
/// `GNTST_no_device_space`: out of space in the I/O MMU.
pub const GNTST_NO_DEVICE_SPACE: i16 = -7;
/// `GNTST_permission_denied`.
pub const GNTST_PERMISSION_DENIED: i16 = -8;
/// `GNTST_bad_page`: the page was invalid for the operation.
pub const GNTST_BAD_PAGE: i16 = -9;
/// `GNTST_bad_copy_arg`: copy arguments cross a page boundary.
pub const GNTST_BAD_COPY_ARG: i16 = -10;
/// `GNTST_address_too_big`: transfer page address too large.
pub const GNTST_ADDRESS_TOO_BIG: i16 = -11;
/// `GNTST_eagain`: not done; try again.
pub const GNTST_EAGAIN: i16 = -12;
/// `GNTST_no_space`: out of space (handles etc.).
pub const GNTST_NO_SPACE: i16 = -13;

/// `GNTMAP_device_map`.
pub const GNTMAP_DEVICE_MAP: u32 = 1 << 0;
/// `GNTMAP_host_map`.
pub const GNTMAP_HOST_MAP: u32 = 1 << 1;
/// `GNTMAP_readonly`.
pub const GNTMAP_READONLY: u32 = 1 << 2;
/// `GNTMAP_application_map`.
pub const GNTMAP_APPLICATION_MAP: u32 = 1 << 3;
/// `GNTMAP_contains_pte`.
pub const GNTMAP_CONTAINS_PTE: u32 = 1 << 4;

/// `GNTCOPY_source_gref`: `source.u` is a grant reference, not a frame.
pub const GNTCOPY_SOURCE_GREF: u16 = 1 << 0;
/// `GNTCOPY_dest_gref`: `dest.u` is a grant reference, not a frame.
pub const GNTCOPY_DEST_GREF: u16 = 1 << 1;

/// A grant reference: an index into the granting domain's table.
pub type GrantRef = u32;
/// A mapping handle returned by [`MAP_GRANT_REF`].
pub type GrantHandle = u32;

/// Argument of [`SETUP_TABLE`] (`struct gnttab_setup_table`, 24 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SetupTable {
    /// IN: the domain; [`crate::shared::DOMID_SELF`].
    pub dom: u16,
    /// Padding (C's implicit padding, made explicit so every byte is initialised).
    pub pad0: u16,
    /// IN: number of frames wanted (and entries in `frame_list`).
    pub nr_frames: u32,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Padding.
    pub pad1: [u8; 6],
    /// IN: guest virtual address of a `u64` array receiving the frame numbers.
    pub frame_list: u64,
}
assert_layout!(SetupTable, 24, { dom: 0, pad0: 2, nr_frames: 4, status: 8, pad1: 10, frame_list: 16 });

/// Argument of [`QUERY_SIZE`] (`struct gnttab_query_size`, 16 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct QuerySize {
    /// IN: the domain; [`crate::shared::DOMID_SELF`].
    pub dom: u16,
    /// Padding (C's implicit padding, made explicit so every byte is initialised).
    pub pad0: u16,
    /// OUT: frames in use now.
    pub nr_frames: u32,
    /// OUT: the most frames the table can grow to.
    pub max_nr_frames: u32,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Padding.
    pub pad1: u16,
}
assert_layout!(QuerySize, 16, { dom: 0, pad0: 2, nr_frames: 4, max_nr_frames: 8, status: 12, pad1: 14 });

/// Argument of [`SET_VERSION`] (`struct gnttab_set_version`, 4 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SetVersion {
    /// IN: the wanted version (1 or 2); OUT: the version in effect.
    pub version: u32,
}
assert_layout!(SetVersion, 4, { version: 0 });

/// Argument of [`GET_VERSION`] (`struct gnttab_get_version`, 8 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct GetVersion {
    /// IN: the domain.
    pub dom: u16,
    /// Padding.
    pub pad: u16,
    /// OUT: the version in effect.
    pub version: u32,
}
assert_layout!(GetVersion, 8, { dom: 0, pad: 2, version: 4 });

/// Argument of [`MAP_GRANT_REF`] (`struct gnttab_map_grant_ref`, 32 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct MapGrantRef {
    /// IN: where to map (on ARM: a guest physical address).
    pub host_addr: u64,
    /// IN: `GNTMAP_*` flags.
    pub flags: u32,
    /// IN: the grant reference in `dom`'s table.
    pub r#ref: GrantRef,
    /// IN: the granting domain.
    pub dom: u16,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// OUT: handle for [`UNMAP_GRANT_REF`].
    pub handle: GrantHandle,
    /// OUT: bus address for device mappings.
    pub dev_bus_addr: u64,
}
assert_layout!(MapGrantRef, 32, {
    host_addr: 0,
    flags: 8,
    r#ref: 12,
    dom: 16,
    status: 18,
    handle: 20,
    dev_bus_addr: 24,
});

/// Argument of [`UNMAP_GRANT_REF`] (`struct gnttab_unmap_grant_ref`, 24 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct UnmapGrantRef {
    /// IN: the mapped address.
    pub host_addr: u64,
    /// IN: the device address, for device mappings.
    pub dev_bus_addr: u64,
    /// IN: the handle from [`MAP_GRANT_REF`].
    pub handle: GrantHandle,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Padding (C's implicit padding, made explicit so every byte is initialised).
    pub pad: u16,
}
assert_layout!(UnmapGrantRef, 24, { host_addr: 0, dev_bus_addr: 8, handle: 16, status: 20, pad: 22 });

/// One side of a [`COPY`] (`struct gnttab_copy_ptr`, 16 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct CopyPtr {
    /// Xen's union `u`: a grant reference (low 32 bits) when the matching
    /// `GNTCOPY_*_gref` flag is set, otherwise a guest frame number.
    pub u: u64,
    /// The domain owning the frame or grant.
    pub domid: u16,
    /// Byte offset in the frame.
    pub offset: u16,
    /// Padding (C's implicit padding, made explicit so every byte is initialised).
    pub pad: u32,
}
assert_layout!(CopyPtr, 16, { u: 0, domid: 8, offset: 10, pad: 12 });

/// Argument of [`COPY`] (`struct gnttab_copy`, 40 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Copy {
    /// IN: where to copy from.
    pub source: CopyPtr,
    /// IN: where to copy to.
    pub dest: CopyPtr,
    /// IN: bytes to copy; neither side may cross a page.
    pub len: u16,
    /// IN: `GNTCOPY_*` flags.
    pub flags: u16,
    /// OUT: `GNTST_*`.
    pub status: i16,
    /// Padding (C's implicit padding, made explicit so every byte is initialised).
    pub pad: u16,
}
assert_layout!(Copy, 40, { source: 0, dest: 16, len: 32, flags: 34, status: 36, pad: 38 });

/// `GTF_invalid`: the entry grants nothing.
pub const GTF_INVALID: u16 = 0;
/// `GTF_permit_access`: `domid` may map or copy `frame`.
pub const GTF_PERMIT_ACCESS: u16 = 1;
/// `GTF_accept_transfer`: `domid` may transfer a page here (not offered on ARM).
pub const GTF_ACCEPT_TRANSFER: u16 = 2;
/// `GTF_type_mask`: the entry-type bits of `flags`.
pub const GTF_TYPE_MASK: u16 = 3;
/// `GTF_readonly`: the grantee may only read.
pub const GTF_READONLY: u16 = 1 << 2;
/// `GTF_reading`: set by the hypervisor while the grantee has the frame mapped or is
/// copying from it; the granter must not revoke while it is set.
pub const GTF_READING: u16 = 1 << 3;
/// `GTF_writing`: as [`GTF_READING`], for a writable mapping or a copy into the frame.
pub const GTF_WRITING: u16 = 1 << 4;
/// `GTF_sub_page`: a v2 sub-page grant (never valid in a v1 entry).
pub const GTF_SUB_PAGE: u16 = 1 << 8;

/// v1 entries in one 4 KiB grant-table frame.
pub const ENTRIES_PER_FRAME_V1: u32 = 4096 / 8;

/// `grant_entry_v1` (8 bytes): `u16 flags` @0, `u16 domid` @2, `u32 frame` @4.
///
/// Granter and hypervisor update it concurrently, so it is two atomic words: `header`
/// holds `flags` in its low half and `domid` in its high half (little-endian, as
/// Xen's `union grant_combo`), so that the in-use bits are set and cleared with one
/// compare-and-swap that also checks the domain. A granter fills `frame` and `domid`
/// first and publishes `flags` last (Release); it revokes with
/// [`GrantEntryV1::try_revoke`], which fails while the grant is in use.
#[derive(Debug, Default)]
#[repr(C)]
pub struct GrantEntryV1 {
    /// `flags` (low 16 bits) and `domid` (high 16 bits).
    pub header: core::sync::atomic::AtomicU32,
    /// The granted frame: a frame number in the granter's (guest-physical) space.
    pub frame: core::sync::atomic::AtomicU32,
}
assert_layout!(GrantEntryV1, 8, { header: 0, frame: 4 });

impl GrantEntryV1 {
    /// The header word for `flags` and `domid`.
    pub const fn pack(flags: u16, domid: u16) -> u32 {
        flags as u32 | (domid as u32) << 16
    }

    /// `flags` of a header word.
    pub const fn flags_of(header: u32) -> u16 {
        header as u16
    }

    /// `domid` of a header word.
    pub const fn domid_of(header: u32) -> u16 {
        (header >> 16) as u16
    }

    /// Granter side: offers `frame` to `domid` (read-only if `readonly`), publishing the
    /// flags last.
    pub fn grant(&self, domid: u16, frame: u32, readonly: bool) {
        use core::sync::atomic::Ordering;
        self.frame.store(frame, Ordering::Relaxed);
        let flags = GTF_PERMIT_ACCESS | if readonly { GTF_READONLY } else { 0 };
        self.header
            .store(Self::pack(flags, domid), Ordering::Release);
    }

    /// Granter side: ends the grant unless the grantee has it in use
    /// ([`GTF_READING`] or [`GTF_WRITING`]); returns whether it was ended. As Linux's
    /// `gnttab_end_foreign_access_ref`: one compare-and-swap, so the hypervisor cannot
    /// start using the grant in between.
    pub fn try_revoke(&self) -> bool {
        use core::sync::atomic::Ordering;
        let mut current = self.header.load(Ordering::Acquire);
        loop {
            if Self::flags_of(current) & (GTF_READING | GTF_WRITING) != 0 {
                return false;
            }
            match self.header.compare_exchange(
                current,
                Self::pack(GTF_INVALID, Self::domid_of(current)),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => current = now,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::Ordering;

    #[test]
    fn header_packs_flags_low_and_domid_high() {
        let word = GrantEntryV1::pack(GTF_PERMIT_ACCESS | GTF_READONLY, 0x1234);
        assert_eq!(word.to_le_bytes(), [0x05, 0x00, 0x34, 0x12]);
        assert_eq!(
            GrantEntryV1::flags_of(word),
            GTF_PERMIT_ACCESS | GTF_READONLY
        );
        assert_eq!(GrantEntryV1::domid_of(word), 0x1234);
    }

    #[test]
    fn grant_then_revoke() {
        let entry = GrantEntryV1::default();
        entry.grant(3, 0x4_0123, true);
        assert_eq!(entry.frame.load(Ordering::Relaxed), 0x4_0123);
        let header = entry.header.load(Ordering::Relaxed);
        assert_eq!(GrantEntryV1::domid_of(header), 3);
        assert!(entry.try_revoke());
        let header = entry.header.load(Ordering::Relaxed);
        assert_eq!(GrantEntryV1::flags_of(header), GTF_INVALID);
    }

    #[test]
    fn revoke_fails_while_in_use() {
        let entry = GrantEntryV1::default();
        entry.grant(1, 7, false);
        for busy in [GTF_READING, GTF_WRITING] {
            entry.header.store(
                GrantEntryV1::pack(GTF_PERMIT_ACCESS | busy, 1),
                Ordering::Relaxed,
            );
            assert!(!entry.try_revoke());
            assert_eq!(
                GrantEntryV1::flags_of(entry.header.load(Ordering::Relaxed)),
                GTF_PERMIT_ACCESS | busy
            );
        }
    }
}
