//! Memory shared between the hypervisor and a guest: the shared-info page, per-vCPU
//! `vcpu_info`, grant entries and the PV console ring (`public/xen.h`,
//! `public/arch-arm.h`, `public/grant_table.h`, `public/io/console.h`), plus domain ids.
//!
//! Fields that both sides touch concurrently are atomics, which have the size and
//! alignment of the plain integers in Xen's headers. Both sides must map these pages
//! Normal Inner/Outer Write-Back, Inner-Shareable (`arch-arm.h`).

use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8};

/// `DOMID_FIRST_RESERVED`: ids at or above are special.
pub const DOMID_FIRST_RESERVED: u16 = 0x7FF0;
/// `DOMID_SELF`: the calling domain.
pub const DOMID_SELF: u16 = 0x7FF0;
/// `DOMID_IO`: owner of I/O memory.
pub const DOMID_IO: u16 = 0x7FF1;
/// `DOMID_XEN`: the hypervisor itself.
pub const DOMID_XEN: u16 = 0x7FF2;
/// `DOMID_COW`: owner of shared (copy-on-write) pages.
pub const DOMID_COW: u16 = 0x7FF3;
/// `DOMID_INVALID`: no domain.
pub const DOMID_INVALID: u16 = 0x7FF4;
/// `DOMID_IDLE`: the idle domain.
pub const DOMID_IDLE: u16 = 0x7FFF;
/// `DOMID_MASK`: mask of valid domain id bits.
pub const DOMID_MASK: u16 = 0x7FFF;

/// `XEN_LEGACY_MAX_VCPUS` on ARM: `shared_info` holds one `vcpu_info`.
pub const LEGACY_MAX_VCPUS: usize = 1;

/// `GUEST_EVTCHN_PPI`: the PPI (INTID) that signals events to domUs.
pub const GUEST_EVTCHN_PPI: u32 = 31;

/// `struct vcpu_time_info` (32 bytes). Xen/ARM never updates it; guests use the
/// architected timer. Kept for layout compatibility.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VcpuTimeInfo {
    /// Odd while being updated.
    pub version: u32,
    /// Padding.
    pub pad0: u32,
    /// Counter value at the last update.
    pub tsc_timestamp: u64,
    /// System time (ns) at the last update.
    pub system_time: u64,
    /// Counter-to-ns multiplier (32.32 fixed point).
    pub tsc_to_system_mul: u32,
    /// Counter shift applied before multiplying.
    pub tsc_shift: i8,
    /// `XEN_PVCLOCK_*` flags.
    pub flags: u8,
    /// Padding.
    pub pad1: [u8; 2],
}
assert_layout!(VcpuTimeInfo, 32, {
    version: 0,
    pad0: 4,
    tsc_timestamp: 8,
    system_time: 16,
    tsc_to_system_mul: 24,
    tsc_shift: 28,
    flags: 29,
    pad1: 30,
});

/// `struct vcpu_info` (48 bytes): per-vCPU event state.
///
/// Lives in [`SharedInfo::vcpu_info`] until the guest moves it with
/// `VCPUOP_register_vcpu_info`.
#[derive(Debug, Default)]
#[repr(C)]
pub struct VcpuInfo {
    /// Set by the hypervisor when it injects the event upcall; cleared by the guest
    /// at the start of its upcall handler.
    pub evtchn_upcall_pending: AtomicU8,
    /// `pad0` on ARM: Xen/ARM ignores it (masking is PSTATE.I and the GIC). The name
    /// is kept from x86's `evtchn_upcall_mask`.
    pub evtchn_upcall_mask: AtomicU8,
    /// Padding.
    pub pad: [u8; 6],
    /// Bit `w` set: word `w` of `evtchn_pending` may hold unmasked pending ports.
    pub evtchn_pending_sel: AtomicU64,
    /// Time information (unused on ARM).
    pub time: VcpuTimeInfo,
}
assert_layout!(VcpuInfo, 48, {
    evtchn_upcall_pending: 0,
    evtchn_upcall_mask: 1,
    pad: 2,
    evtchn_pending_sel: 8,
    time: 16,
});

impl VcpuInfo {
    /// An all-zero `vcpu_info`.
    pub const fn new() -> VcpuInfo {
        VcpuInfo {
            evtchn_upcall_pending: AtomicU8::new(0),
            evtchn_upcall_mask: AtomicU8::new(0),
            pad: [0; 6],
            evtchn_pending_sel: AtomicU64::new(0),
            time: VcpuTimeInfo {
                version: 0,
                pad0: 0,
                tsc_timestamp: 0,
                system_time: 0,
                tsc_to_system_mul: 0,
                tsc_shift: 0,
                flags: 0,
                pad1: [0; 2],
            },
        }
    }
}

/// Number of 64-bit words in each 2-level event bitmap.
pub const EVTCHN_WORDS: usize = 64;

/// `struct shared_info` (1088 bytes), mapped by the guest with
/// `XENMEM_add_to_physmap(XENMAPSPACE_shared_info)` at a page of its choice.
#[derive(Debug)]
#[repr(C)]
pub struct SharedInfo {
    /// `vcpu_info` of vCPU 0 until it registers its own.
    pub vcpu_info: [VcpuInfo; LEGACY_MAX_VCPUS],
    /// Port `p` is pending when bit `p % 64` of word `p / 64` is set.
    pub evtchn_pending: [AtomicU64; EVTCHN_WORDS],
    /// Port `p` is masked when its bit is set; a masked port never raises an upcall.
    pub evtchn_mask: [AtomicU64; EVTCHN_WORDS],
    /// Wallclock seqlock version: odd while the hypervisor updates `wc_*`.
    pub wc_version: AtomicU32,
    /// Wallclock seconds (low 32 bits) at system time 0.
    pub wc_sec: AtomicU32,
    /// Wallclock nanoseconds at system time 0.
    pub wc_nsec: AtomicU32,
    /// Wallclock seconds, high 32 bits.
    pub wc_sec_hi: AtomicU32,
}
assert_layout!(SharedInfo, 1088, {
    vcpu_info: 0,
    evtchn_pending: 48,
    evtchn_mask: 560,
    wc_version: 1072,
    wc_sec: 1076,
    wc_nsec: 1080,
    wc_sec_hi: 1084,
});

impl SharedInfo {
    /// An all-zero `shared_info`, as Xen hands it out.
    pub const fn new() -> SharedInfo {
        #[allow(clippy::declare_interior_mutable_const)]
        const ZERO: AtomicU64 = AtomicU64::new(0);
        SharedInfo {
            vcpu_info: [VcpuInfo::new()],
            evtchn_pending: [ZERO; EVTCHN_WORDS],
            evtchn_mask: [ZERO; EVTCHN_WORDS],
            wc_version: AtomicU32::new(0),
            wc_sec: AtomicU32::new(0),
            wc_nsec: AtomicU32::new(0),
            wc_sec_hi: AtomicU32::new(0),
        }
    }
}

impl Default for SharedInfo {
    fn default() -> SharedInfo {
        SharedInfo::new()
    }
}

/// `struct grant_entry_v1` (8 bytes). The granting guest fills `domid` and `frame`,
/// issues a write barrier, then writes `flags`.
#[derive(Debug, Default)]
#[repr(C)]
pub struct GrantEntryV1 {
    /// `GTF_*` type and flags.
    pub flags: AtomicU16,
    /// The domain allowed to use the grant.
    pub domid: AtomicU16,
    /// The granted guest frame number.
    pub frame: AtomicU32,
}
assert_layout!(GrantEntryV1, 8, { flags: 0, domid: 2, frame: 4 });

/// v1 entries per 4 KiB grant-table frame.
pub const GRANT_ENTRIES_PER_FRAME_V1: usize = 512;
/// `GNTTAB_NR_RESERVED_ENTRIES`: the first entries are reserved for the toolstack.
pub const GNTTAB_NR_RESERVED_ENTRIES: u32 = 8;
/// `GNTTAB_RESERVED_CONSOLE`: entry granting the console ring.
pub const GNTTAB_RESERVED_CONSOLE: u32 = 0;
/// `GNTTAB_RESERVED_XENSTORE`: entry granting the xenstore ring.
pub const GNTTAB_RESERVED_XENSTORE: u32 = 1;

/// `GTF_invalid`: the entry grants nothing.
pub const GTF_INVALID: u16 = 0;
/// `GTF_permit_access`: `domid` may map or copy `frame`.
pub const GTF_PERMIT_ACCESS: u16 = 1;
/// `GTF_accept_transfer`: `domid` may transfer a page into `frame`.
pub const GTF_ACCEPT_TRANSFER: u16 = 2;
/// `GTF_transitive` (v2 only).
pub const GTF_TRANSITIVE: u16 = 3;
/// `GTF_type_mask`: the entry type bits.
pub const GTF_TYPE_MASK: u16 = 3;
/// `GTF_readonly`: read-only access.
pub const GTF_READONLY: u16 = 1 << 2;
/// `GTF_reading`: set by the hypervisor while the grant is mapped or read.
pub const GTF_READING: u16 = 1 << 3;
/// `GTF_writing`: set by the hypervisor while the grant is mapped writable or written.
pub const GTF_WRITING: u16 = 1 << 4;
/// `GTF_PWT`: map write-through.
pub const GTF_PWT: u16 = 1 << 5;
/// `GTF_PCD`: map cache-disabled.
pub const GTF_PCD: u16 = 1 << 6;
/// `GTF_PAT`: PAT attribute bit.
pub const GTF_PAT: u16 = 1 << 7;
/// `GTF_sub_page` (v2 only).
pub const GTF_SUB_PAGE: u16 = 1 << 8;

/// Size of [`XenconsInterface::input`].
pub const XENCONS_IN_SIZE: usize = 1024;
/// Size of [`XenconsInterface::output`].
pub const XENCONS_OUT_SIZE: usize = 2048;
/// `XENCONSOLE_CONNECTED`.
pub const XENCONSOLE_CONNECTED: u8 = 0;
/// `XENCONSOLE_DISCONNECTED`: the backend is not ready (newer Xen only).
pub const XENCONSOLE_DISCONNECTED: u8 = 1;

/// `struct xencons_interface` (3092 bytes): the PV console ring page.
///
/// Indices are free-running `u32`s; a ring position is `idx & (size - 1)`
/// ([`xencons_mask_in`], [`xencons_mask_out`]). The guest produces `out` and
/// consumes `in`. Xen 4.17's header ends after `out_prod` (3088 bytes); the
/// `connection` byte was added later and lies in the same page.
#[derive(Debug)]
#[repr(C)]
pub struct XenconsInterface {
    /// `in[]`: bytes from the backend to the guest.
    pub input: [u8; XENCONS_IN_SIZE],
    /// `out[]`: bytes from the guest to the backend.
    pub output: [u8; XENCONS_OUT_SIZE],
    /// Consumer index of `in` (advanced by the guest).
    pub in_cons: AtomicU32,
    /// Producer index of `in` (advanced by the backend).
    pub in_prod: AtomicU32,
    /// Consumer index of `out` (advanced by the backend).
    pub out_cons: AtomicU32,
    /// Producer index of `out` (advanced by the guest).
    pub out_prod: AtomicU32,
    /// `XENCONSOLE_*` (newer Xen).
    pub connection: AtomicU8,
}
assert_layout!(XenconsInterface, 3092, {
    input: 0,
    output: 1024,
    in_cons: 3072,
    in_prod: 3076,
    out_cons: 3080,
    out_prod: 3084,
    connection: 3088,
});

/// `MASK_XENCONS_IDX(idx, in)`.
pub const fn xencons_mask_in(idx: u32) -> usize {
    idx as usize & (XENCONS_IN_SIZE - 1)
}

/// `MASK_XENCONS_IDX(idx, out)`.
pub const fn xencons_mask_out(idx: u32) -> usize {
    idx as usize & (XENCONS_OUT_SIZE - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_masks_wrap() {
        assert_eq!(xencons_mask_in(1024), 0);
        assert_eq!(xencons_mask_in(1025), 1);
        assert_eq!(xencons_mask_out(u32::MAX), 2047);
    }

    #[test]
    fn shared_info_starts_zeroed() {
        let s = SharedInfo::new();
        assert!(s
            .evtchn_pending
            .iter()
            .chain(s.evtchn_mask.iter())
            .all(|w| w.load(core::sync::atomic::Ordering::Relaxed) == 0));
    }
}
