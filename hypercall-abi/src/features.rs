//! `XENFEAT_*` feature bits (`public/features.h`), reported by
//! [`crate::xen_version::GET_FEATURES`] in submap 0.

/// `XENFEAT_writable_page_tables`: the guest may write its own page tables.
pub const WRITABLE_PAGE_TABLES: u32 = 0;
/// `XENFEAT_writable_descriptor_tables` (x86 PV only).
pub const WRITABLE_DESCRIPTOR_TABLES: u32 = 1;
/// `XENFEAT_auto_translated_physmap`: the guest sees guest-physical frames (always so
/// on ARM). Linux then maps grant frames with `XENMEM_add_to_physmap`.
pub const AUTO_TRANSLATED_PHYSMAP: u32 = 2;
/// `XENFEAT_supervisor_mode_kernel` (x86 PV only).
pub const SUPERVISOR_MODE_KERNEL: u32 = 3;
/// `XENFEAT_pae_pgdir_above_4gb` (x86 PV only).
pub const PAE_PGDIR_ABOVE_4GB: u32 = 4;
/// `XENFEAT_mmu_pt_update_preserve_ad` (x86 PV only).
pub const MMU_PT_UPDATE_PRESERVE_AD: u32 = 5;
/// `XENFEAT_highmem_assist` (x86 PV only).
pub const HIGHMEM_ASSIST: u32 = 6;
/// `XENFEAT_gnttab_map_avail_bits` (x86 PV only).
pub const GNTTAB_MAP_AVAIL_BITS: u32 = 7;
/// `XENFEAT_hvm_callback_vector` (x86 HVM only).
pub const HVM_CALLBACK_VECTOR: u32 = 8;
/// `XENFEAT_hvm_safe_pvclock` (x86 HVM only).
pub const HVM_SAFE_PVCLOCK: u32 = 9;
/// `XENFEAT_hvm_pirqs` (x86 HVM only).
pub const HVM_PIRQS: u32 = 10;
/// `XENFEAT_dom0`: the domain is the hardware/initial domain. On ARM this bit alone
/// decides whether Linux runs as dom0.
pub const DOM0: u32 = 11;
/// `XENFEAT_grant_map_identity` (obsolete).
pub const GRANT_MAP_IDENTITY: u32 = 12;
/// `XENFEAT_memory_op_vnode_supported`: `XENMEM_*` accept vNUMA node flags.
pub const MEMORY_OP_VNODE_SUPPORTED: u32 = 13;
/// `XENFEAT_ARM_SMCCC_supported`: SMCCC calls via `HVC #0` are available.
pub const ARM_SMCCC_SUPPORTED: u32 = 14;
/// `XENFEAT_linux_rsdp_unrestricted` (x86 only).
pub const LINUX_RSDP_UNRESTRICTED: u32 = 15;
/// `XENFEAT_not_direct_mapped`: guest-physical != host-physical. Linux on ARM then
/// avoids swiotlb-xen.
pub const NOT_DIRECT_MAPPED: u32 = 16;
/// `XENFEAT_direct_mapped`: guest-physical == host-physical.
pub const DIRECT_MAPPED: u32 = 17;
/// `XENFEAT_runstate_phys_area`: `VCPUOP_register_runstate_phys_area` exists
/// (Xen 4.18 and later; not reported by Xen 4.17).
pub const RUNSTATE_PHYS_AREA: u32 = 18;
/// `XENFEAT_vcpu_time_phys_area`: `VCPUOP_register_vcpu_time_phys_area` exists
/// (Xen 4.18 and later; not reported by Xen 4.17).
pub const VCPU_TIME_PHYS_AREA: u32 = 19;

/// `XENFEAT_NR_SUBMAPS`: only submap 0 exists.
pub const NR_SUBMAPS: u32 = 1;

/// Submap 0 exactly as Xen 4.17 on ARM reports it (`xen/common/kernel.c`):
/// bits 13 and 14 always, 0 and 2 (ARM guests are auto-translated), 11 for the
/// hardware domain, and 17 or 16 depending on direct mapping.
///
/// An ordinary domU gets `0x16005`, a direct-mapped dom0 `0x26805`.
pub const fn xen_4_17_arm_submap0(hardware_domain: bool, direct_mapped: bool) -> u32 {
    let mut bits = (1 << MEMORY_OP_VNODE_SUPPORTED)
        | (1 << WRITABLE_PAGE_TABLES)
        | (1 << AUTO_TRANSLATED_PHYSMAP)
        | (1 << ARM_SMCCC_SUPPORTED);
    if hardware_domain {
        bits |= 1 << DOM0;
    }
    if direct_mapped {
        bits |= 1 << DIRECT_MAPPED;
    } else {
        bits |= 1 << NOT_DIRECT_MAPPED;
    }
    bits
}

/// Whether `bit` is set in a submap word.
pub const fn has(submap: u32, bit: u32) -> bool {
    bit < 32 && submap & (1 << bit) != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xen_4_17_submaps() {
        assert_eq!(xen_4_17_arm_submap0(false, false), 0x16005);
        assert_eq!(xen_4_17_arm_submap0(true, true), 0x26805);
        assert_eq!(xen_4_17_arm_submap0(true, false), 0x16805);
        assert!(has(0x16805, DOM0));
        assert!(!has(0x16005, DOM0));
        assert!(!has(u32::MAX, 32));
    }
}
