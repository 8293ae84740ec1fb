//! Hypercall numbers (the value in `x16`), from Xen's `public/xen.h`.
//!
//! Only the hypercalls that exist on Xen/ARM are listed. Numbers not listed here, and
//! numbers at or above [`MAX`], are answered with `-ENOSYS`.

/// `__HYPERVISOR_platform_op`: platform management (dom0 only on Xen).
pub const PLATFORM_OP: u64 = 7;
/// `__HYPERVISOR_memory_op`: physical memory map changes.
pub const MEMORY_OP: u64 = 12;
/// `__HYPERVISOR_multicall`: a batch of hypercalls.
pub const MULTICALL: u64 = 13;
/// `__HYPERVISOR_xen_version`: version and feature queries.
pub const XEN_VERSION: u64 = 17;
/// `__HYPERVISOR_console_io`: the hypervisor's own console.
pub const CONSOLE_IO: u64 = 18;
/// `__HYPERVISOR_grant_table_op`: grant-table management.
pub const GRANT_TABLE_OP: u64 = 20;
/// `__HYPERVISOR_vm_assist`: optional guest-visible behaviour.
pub const VM_ASSIST: u64 = 21;
/// `__HYPERVISOR_vcpu_op`: per-vCPU areas and timers.
pub const VCPU_OP: u64 = 24;
/// `__HYPERVISOR_sched_op`: yield, block, shutdown, poll.
pub const SCHED_OP: u64 = 29;
/// `__HYPERVISOR_event_channel_op`: event channels.
pub const EVENT_CHANNEL_OP: u64 = 32;
/// `__HYPERVISOR_physdev_op`: physical device management.
pub const PHYSDEV_OP: u64 = 33;
/// `__HYPERVISOR_hvm_op`: HVM parameters.
pub const HVM_OP: u64 = 34;
/// `__HYPERVISOR_sysctl`: system control (toolstack only).
pub const SYSCTL: u64 = 35;
/// `__HYPERVISOR_domctl`: domain control (toolstack only).
pub const DOMCTL: u64 = 36;
/// `__HYPERVISOR_dm_op`: device-model operations.
pub const DM_OP: u64 = 41;

/// One past the highest hypercall number a hypervisor table needs to cover.
///
/// Xen's tables have 64 entries (`NR_hypercalls`); anything at or above is `-ENOSYS`.
pub const MAX: u64 = 64;
