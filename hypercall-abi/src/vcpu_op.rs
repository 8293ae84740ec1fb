//! `vcpu_op` sub-ops (`public/vcpu.h`).
//!
//! Arguments: `x0` = cmd (32 bits), `x1` = vCPU id (32 bits), `x2` = guest virtual
//! address of the argument. vCPU ids are the guest's logical CPU numbers in device-tree
//! order; the boot vCPU is 0.
//!
//! Xen 4.17 on ARM implements only [`REGISTER_VCPU_INFO`] and
//! [`REGISTER_RUNSTATE_MEMORY_AREA`] and answers `-EINVAL` for every other command
//! (`do_vcpu_op`, `xen/arch/arm/domain.c`). This project also implements the one-shot
//! timer ([`SET_SINGLESHOT_TIMER`], [`STOP_SINGLESHOT_TIMER`]); see `docs/abi.md`.

/// `VCPUOP_initialise`: set the initial register state of a vCPU.
pub const INITIALISE: u32 = 0;
/// `VCPUOP_up`: start a vCPU.
pub const UP: u32 = 1;
/// `VCPUOP_down`: stop a vCPU.
pub const DOWN: u32 = 2;
/// `VCPUOP_is_up`: whether a vCPU runs.
pub const IS_UP: u32 = 3;
/// `VCPUOP_get_runstate_info`: copy out a [`VcpuRunstateInfo`].
pub const GET_RUNSTATE_INFO: u32 = 4;
/// `VCPUOP_register_runstate_memory_area`: argument [`RegisterRunstateMemoryArea`].
pub const REGISTER_RUNSTATE_MEMORY_AREA: u32 = 5;
/// `VCPUOP_set_periodic_timer`: argument [`SetPeriodicTimer`].
pub const SET_PERIODIC_TIMER: u32 = 6;
/// `VCPUOP_stop_periodic_timer`: no argument.
pub const STOP_PERIODIC_TIMER: u32 = 7;
/// `VCPUOP_set_singleshot_timer`: argument [`SetSingleshotTimer`].
pub const SET_SINGLESHOT_TIMER: u32 = 8;
/// `VCPUOP_stop_singleshot_timer`: no argument.
pub const STOP_SINGLESHOT_TIMER: u32 = 9;
/// `VCPUOP_register_vcpu_info`: argument [`RegisterVcpuInfo`].
pub const REGISTER_VCPU_INFO: u32 = 10;
/// `VCPUOP_send_nmi` (x86 only).
pub const SEND_NMI: u32 = 11;
/// `VCPUOP_get_physid`: the physical CPU id (x86 only).
pub const GET_PHYSID: u32 = 12;
/// `VCPUOP_register_vcpu_time_memory_area` (x86 only).
pub const REGISTER_VCPU_TIME_MEMORY_AREA: u32 = 13;
/// `VCPUOP_register_runstate_phys_area` (Xen 4.18 and later).
pub const REGISTER_RUNSTATE_PHYS_AREA: u32 = 14;
/// `VCPUOP_register_vcpu_time_phys_area` (Xen 4.18 and later).
pub const REGISTER_VCPU_TIME_PHYS_AREA: u32 = 15;

/// Argument of [`REGISTER_VCPU_INFO`] (`struct vcpu_register_vcpu_info`, 16 bytes).
///
/// The 48-byte [`crate::shared::VcpuInfo`] is placed at `gfn << 12 | offset`; it must be
/// 8-byte aligned and must not cross a page (`-ENXIO` otherwise). A second
/// registration for the same vCPU is `-EBUSY`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct RegisterVcpuInfo {
    /// Guest frame number (IPA >> 12) of the page holding the `vcpu_info`. Xen calls
    /// the field `mfn`.
    pub mfn: u64,
    /// Byte offset of the `vcpu_info` within that page.
    pub offset: u32,
    /// Reserved, 0.
    pub rsvd: u32,
}
assert_layout!(RegisterVcpuInfo, 16, { mfn: 0, offset: 8, rsvd: 12 });

/// Argument of [`REGISTER_RUNSTATE_MEMORY_AREA`] (8 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct RegisterRunstateMemoryArea {
    /// Guest VIRTUAL address of a [`VcpuRunstateInfo`]; 0 unregisters.
    pub addr: u64,
}
assert_layout!(RegisterRunstateMemoryArea, 8, { addr: 0 });

/// Argument of [`SET_PERIODIC_TIMER`] (8 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SetPeriodicTimer {
    /// Period in nanoseconds.
    pub period_ns: u64,
}
assert_layout!(SetPeriodicTimer, 8, { period_ns: 0 });

/// Argument of [`SET_SINGLESHOT_TIMER`] (`struct vcpu_set_singleshot_timer`, 16 bytes).
///
/// When the timer fires, `VIRQ_TIMER` is raised on the vCPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct SetSingleshotTimer {
    /// Absolute system time (ns) at which the timer fires.
    pub timeout_abs_ns: u64,
    /// `VCPU_SSHOTTMR_*` flags.
    pub flags: u32,
}
assert_layout!(SetSingleshotTimer, 16, { timeout_abs_ns: 0, flags: 8 });

/// `VCPU_SSHOTTMR_future`: fail with `-ETIME` if the timeout is already in the past.
pub const SSHOTTMR_FUTURE: u32 = 1 << 0;

/// `RUNSTATE_running`.
pub const RUNSTATE_RUNNING: i32 = 0;
/// `RUNSTATE_runnable`.
pub const RUNSTATE_RUNNABLE: i32 = 1;
/// `RUNSTATE_blocked`.
pub const RUNSTATE_BLOCKED: i32 = 2;
/// `RUNSTATE_offline`.
pub const RUNSTATE_OFFLINE: i32 = 3;
/// `XEN_RUNSTATE_UPDATE`: set in `state_entry_time` while the hypervisor rewrites the
/// area, when `VMASST_TYPE_runstate_update_flag` is enabled.
pub const RUNSTATE_UPDATE: u64 = 1 << 63;

/// `struct vcpu_runstate_info` (48 bytes), written by the hypervisor.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VcpuRunstateInfo {
    /// Current `RUNSTATE_*`.
    pub state: i32,
    /// System time (ns) at which `state` was entered, possibly with [`RUNSTATE_UPDATE`].
    pub state_entry_time: u64,
    /// Nanoseconds spent in each state.
    pub time: [u64; 4],
}
assert_layout!(VcpuRunstateInfo, 48, { state: 0, state_entry_time: 8, time: 16 });
