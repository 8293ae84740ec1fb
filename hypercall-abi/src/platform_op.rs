//! `platform_op` numbers (`public/platform.h`).
//!
//! The argument is one `struct xen_platform_op` {u32 cmd; u32 interface_version;
//! union (128 bytes)} at the guest virtual address in `x0`. Xen/ARM implements only
//! [`SETTIME64`] for the hardware domain. A hypervisor built on this crate answers
//! `-ENOSYS` to every `platform_op` without reading the argument; Linux dom0 ignores
//! the result of its clock updates.

/// `XENPF_INTERFACE_VERSION`: the value Xen requires in `interface_version`.
pub const INTERFACE_VERSION: u32 = 0x0300_0001;
/// `XENPF_settime32`.
pub const SETTIME32: u32 = 17;
/// `XENPF_settime64`: set the wallclock {u64 secs; u32 nsecs; u32 mbz; u64 system_time}.
pub const SETTIME64: u32 = 62;
/// Size of `struct xen_platform_op`: cmd, interface_version and a 128-byte union.
pub const PLATFORM_OP_SIZE: usize = 136;
