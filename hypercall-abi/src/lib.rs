//! Xen-compatible AArch64 guest ABI shared by the hypervisor, its guests and the host.
//!
//! The crate is binary compatible with the subset of Xen's ARM guest ABI (Xen 4.17)
//! that the project implements: a hypercall is `HVC #0xEA1` with the hypercall number
//! in `x16`, up to five arguments in `x0`..`x4` and the result in `x0` (a negative
//! errno on failure). PSCI and SMCCC calls use `HVC #0` as on Xen.
//!
//! Faces:
//! - numbers, errno values and `#[repr(C)]` argument structs with compile-time layout
//!   checks ([`hypercall`], [`errno`], the sub-op modules, [`shared`], [`psci`]);
//! - [`evtchn2l`]: the 2-level event-channel bit protocol on the shared-info page, used
//!   by both sides;
//! - [`ring`]: Xen's shared I/O rings (`io/ring.h`) and [`blkif`], the block
//!   split-driver protocol, for both ends of a split driver;
//! - [`decode`]: the hypervisor's register-level decoding and validation;
//! - `guest` (feature `guest`, aarch64 only): the `hvc` instructions and safe wrappers.
//!
//! `docs/abi.md` in the repository is the reference for guest authors.
#![no_std]
#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

/// The `HVC` immediate that marks a Xen hypercall (`XEN_HYPERCALL_TAG`).
///
/// Any other immediate except `0` (SMCCC/PSCI) is not a hypercall: Xen injects an
/// undefined-instruction exception for it.
pub const HYPERCALL_IMMEDIATE: u16 = 0xEA1;

/// The `HVC` immediate of SMCCC calls (PSCI and the SMCCC architecture calls).
pub const SMCCC_IMMEDIATE: u16 = 0;

/// Checks a `#[repr(C)]` type's size and field offsets at compile time.
///
/// `assert_layout!(T, N, { field: offset, ... })` expands to `const _: () = ...`
/// assertions, so a layout that drifts from Xen's stops the build.
macro_rules! assert_layout {
    ($t:ty, $size:expr, { $($field:ident : $offset:expr),* $(,)? }) => {
        const _: () = assert!(core::mem::size_of::<$t>() == $size);
        $(const _: () = assert!(core::mem::offset_of!($t, $field) == $offset);)*
    };
}

pub mod blkif;
pub mod console_io;
pub mod decode;
pub mod errno;
pub mod event_channel_op;
pub mod evtchn2l;
pub mod features;
pub mod grant_table_op;
pub mod hvm_op;
pub mod hypercall;
pub mod memory_op;
pub mod physdev_op;
pub mod platform_op;
pub mod psci;
pub mod ring;
pub mod sched_op;
pub mod shared;
pub mod vcpu_op;
pub mod vm_assist;
pub mod xen_version;

#[cfg(all(feature = "guest", target_arch = "aarch64"))]
pub mod guest;

pub use errno::Errno;
pub use event_channel_op::Port;
