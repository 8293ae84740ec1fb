//! `vm_assist` commands and types (`public/xen.h`).
//!
//! Arguments: `x0` = cmd (32 bits), `x1` = type (32 bits). Xen first checks the type
//! against the architecture's valid set (`-EINVAL`), then the command (`-ENOSYS`)
//! (`do_vm_assist`, `xen/common/domain.c`). On ARM only
//! [`TYPE_RUNSTATE_UPDATE_FLAG`] is valid.

/// `VMASST_CMD_enable`.
pub const CMD_ENABLE: u32 = 0;
/// `VMASST_CMD_disable`.
pub const CMD_DISABLE: u32 = 1;

/// `VMASST_TYPE_4gb_segments` (x86 PV).
pub const TYPE_4GB_SEGMENTS: u32 = 0;
/// `VMASST_TYPE_4gb_segments_notify` (x86 PV).
pub const TYPE_4GB_SEGMENTS_NOTIFY: u32 = 1;
/// `VMASST_TYPE_writable_pagetables` (x86 PV).
pub const TYPE_WRITABLE_PAGETABLES: u32 = 2;
/// `VMASST_TYPE_pae_extended_cr3` (x86 PV).
pub const TYPE_PAE_EXTENDED_CR3: u32 = 3;
/// `VMASST_TYPE_architectural_iopl` (x86 PV).
pub const TYPE_ARCHITECTURAL_IOPL: u32 = 4;
/// `VMASST_TYPE_runstate_update_flag`: set [`crate::vcpu_op::RUNSTATE_UPDATE`] in
/// `state_entry_time` while the runstate area is being rewritten.
pub const TYPE_RUNSTATE_UPDATE_FLAG: u32 = 5;
/// `VMASST_TYPE_m2p_strict` (x86 PV).
pub const TYPE_M2P_STRICT: u32 = 32;

/// The types valid on ARM (`arch_vm_assist_valid_mask`), as a bit mask.
pub const ARM_VALID_TYPES: u64 = 1 << TYPE_RUNSTATE_UPDATE_FLAG;
