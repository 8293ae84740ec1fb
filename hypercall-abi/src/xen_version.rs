//! `xen_version` sub-ops (`public/version.h`).
//!
//! Arguments: `x0` = cmd (32 bits), `x1` = guest virtual address of the argument
//! (unused by [`VERSION`]).

/// `XENVER_version`: returns `major << 16 | minor`; the argument is unused.
pub const VERSION: u32 = 0;
/// `XENVER_extraversion`: a 16-byte NUL-terminated string such as `".0"`.
pub const EXTRAVERSION: u32 = 1;
/// `XENVER_compile_info`: compiler, user, domain and date strings.
pub const COMPILE_INFO: u32 = 2;
/// `XENVER_capabilities`: a 1024-byte capabilities string.
pub const CAPABILITIES: u32 = 3;
/// `XENVER_changeset`: a 64-byte changeset string.
pub const CHANGESET: u32 = 4;
/// `XENVER_platform_parameters`: the virtual start of the hypervisor (x86 only).
pub const PLATFORM_PARAMETERS: u32 = 5;
/// `XENVER_get_features`: one 32-bit word of feature bits, see [`FeatureInfo`] and
/// [`crate::features`].
pub const GET_FEATURES: u32 = 6;
/// `XENVER_pagesize`: returns the page size; the argument must be NULL.
pub const PAGESIZE: u32 = 7;
/// `XENVER_guest_handle`: the domain's 16-byte handle (UUID).
pub const GUEST_HANDLE: u32 = 8;
/// `XENVER_commandline`: the hypervisor's 1024-byte command line.
pub const COMMANDLINE: u32 = 9;
/// `XENVER_build_id`: the hypervisor's build id.
pub const BUILD_ID: u32 = 10;

/// Argument of [`GET_FEATURES`] (`struct xen_feature_info`, 8 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct FeatureInfo {
    /// IN: which 32-bit word of feature bits. Only word 0 exists (`XENFEAT_NR_SUBMAPS`
    /// is 1); any other index is `-EINVAL`.
    pub submap_idx: u32,
    /// OUT: the feature bits of that word.
    pub submap: u32,
}
assert_layout!(FeatureInfo, 8, { submap_idx: 0, submap: 4 });

/// The [`VERSION`] result for `major.minor`.
pub const fn version_value(major: u16, minor: u16) -> u64 {
    ((major as u64) << 16) | minor as u64
}

/// Splits a [`VERSION`] result into `(major, minor)`.
pub const fn split_version(value: u64) -> (u16, u16) {
    ((value >> 16) as u16, value as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_round_trip() {
        assert_eq!(version_value(4, 17), 0x0004_0011);
        assert_eq!(split_version(0x0004_0011), (4, 17));
    }
}
