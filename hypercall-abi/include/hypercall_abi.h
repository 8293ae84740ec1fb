/* SPDX-License-Identifier: MIT OR Apache-2.0 */
/*
 * hypercall_abi.h: the Xen-compatible AArch64 guest ABI for C guests.
 *
 * GENERATED from the hypercall-abi crate by tests/c_header.rs. Do not edit;
 * regenerate with: UPDATE_C_HEADER=1 cargo test -p hypercall-abi --test c_header
 *
 * Names follow Xen's public headers, so do not include both. Reference: docs/abi.md.
 * Call: hvc #0xEA1, number in x16, args in x0..x4, result in x0 (negative errno).
 * Fields of shared_info, vcpu_info, grant_entry_v1 and xencons_interface change
 * concurrently: access them with atomics and barriers.
 */
#ifndef HYPERCALL_ABI_H
#define HYPERCALL_ABI_H

#include <stddef.h>
#include <stdint.h>

/* Calling convention */
#define XEN_HYPERCALL_TAG                        0xEA1
#define XEN_SMCCC_HVC_IMMEDIATE                  0x0

/* Hypercall numbers (x16) */
#define __HYPERVISOR_platform_op                 7
#define __HYPERVISOR_memory_op                   12
#define __HYPERVISOR_multicall                   13
#define __HYPERVISOR_xen_version                 17
#define __HYPERVISOR_console_io                  18
#define __HYPERVISOR_grant_table_op              20
#define __HYPERVISOR_vm_assist                   21
#define __HYPERVISOR_vcpu_op                     24
#define __HYPERVISOR_sched_op                    29
#define __HYPERVISOR_event_channel_op            32
#define __HYPERVISOR_physdev_op                  33
#define __HYPERVISOR_hvm_op                      34
#define __HYPERVISOR_sysctl                      35
#define __HYPERVISOR_domctl                      36
#define __HYPERVISOR_dm_op                       41
#define NR_hypercalls                            64

/* Errno values (the call returns the negation) */
#define XEN_EPERM                                1
#define XEN_ENOENT                               2
#define XEN_ESRCH                                3
#define XEN_EIO                                  5
#define XEN_ENXIO                                6
#define XEN_E2BIG                                7
#define XEN_ENOEXEC                              8
#define XEN_EBADF                                9
#define XEN_ECHILD                               10
#define XEN_EAGAIN                               11
#define XEN_ENOMEM                               12
#define XEN_EACCES                               13
#define XEN_EFAULT                               14
#define XEN_EBUSY                                16
#define XEN_EEXIST                               17
#define XEN_EXDEV                                18
#define XEN_ENODEV                               19
#define XEN_EINVAL                               22
#define XEN_ENFILE                               23
#define XEN_EMFILE                               24
#define XEN_ENOSPC                               28
#define XEN_EMLINK                               31
#define XEN_EDOM                                 33
#define XEN_ERANGE                               34
#define XEN_EDEADLK                              35
#define XEN_ENAMETOOLONG                         36
#define XEN_ENOLCK                               37
#define XEN_ENOSYS                               38
#define XEN_EBADRQC                              56
#define XEN_EBADSLT                              57
#define XEN_ENODATA                              61
#define XEN_ETIME                                62
#define XEN_EBADMSG                              74
#define XEN_EOVERFLOW                            75
#define XEN_EILSEQ                               84
#define XEN_EUSERS                               87
#define XEN_ENOTSOCK                             88
#define XEN_EOPNOTSUPP                           95
#define XEN_EADDRINUSE                           98
#define XEN_EADDRNOTAVAIL                        99
#define XEN_ENOBUFS                              105
#define XEN_EISCONN                              106
#define XEN_ENOTCONN                             107
#define XEN_ESHUTDOWN                            108
#define XEN_ETOOMANYREFS                         109
#define XEN_ETIMEDOUT                            110

/* xen_version */
#define XENVER_version                           0
#define XENVER_extraversion                      1
#define XENVER_compile_info                      2
#define XENVER_capabilities                      3
#define XENVER_changeset                         4
#define XENVER_platform_parameters               5
#define XENVER_get_features                      6
#define XENVER_pagesize                          7
#define XENVER_guest_handle                      8
#define XENVER_commandline                       9
#define XENVER_build_id                          10

/* XENFEAT_* bits (submap 0) */
#define XENFEAT_writable_page_tables             0
#define XENFEAT_writable_descriptor_tables       1
#define XENFEAT_auto_translated_physmap          2
#define XENFEAT_supervisor_mode_kernel           3
#define XENFEAT_pae_pgdir_above_4gb              4
#define XENFEAT_mmu_pt_update_preserve_ad        5
#define XENFEAT_highmem_assist                   6
#define XENFEAT_gnttab_map_avail_bits            7
#define XENFEAT_hvm_callback_vector              8
#define XENFEAT_hvm_safe_pvclock                 9
#define XENFEAT_hvm_pirqs                        10
#define XENFEAT_dom0                             11
#define XENFEAT_grant_map_identity               12
#define XENFEAT_memory_op_vnode_supported        13
#define XENFEAT_ARM_SMCCC_supported              14
#define XENFEAT_linux_rsdp_unrestricted          15
#define XENFEAT_not_direct_mapped                16
#define XENFEAT_direct_mapped                    17
#define XENFEAT_runstate_phys_area               18
#define XENFEAT_vcpu_time_phys_area              19
#define XENFEAT_NR_SUBMAPS                       1

/* console_io */
#define CONSOLEIO_write                          0
#define CONSOLEIO_read                           1

/* sched_op */
#define SCHEDOP_yield                            0
#define SCHEDOP_block                            1
#define SCHEDOP_shutdown                         2
#define SCHEDOP_poll                             3
#define SCHEDOP_remote_shutdown                  4
#define SCHEDOP_shutdown_code                    5
#define SCHEDOP_watchdog                         6
#define SCHEDOP_pin_override                     7
#define SHUTDOWN_poweroff                        0
#define SHUTDOWN_reboot                          1
#define SHUTDOWN_suspend                         2
#define SHUTDOWN_crash                           3
#define SHUTDOWN_watchdog                        4
#define SHUTDOWN_soft_reset                      5
#define SHUTDOWN_MAX                             5

/* vcpu_op */
#define VCPUOP_initialise                        0
#define VCPUOP_up                                1
#define VCPUOP_down                              2
#define VCPUOP_is_up                             3
#define VCPUOP_get_runstate_info                 4
#define VCPUOP_register_runstate_memory_area     5
#define VCPUOP_set_periodic_timer                6
#define VCPUOP_stop_periodic_timer               7
#define VCPUOP_set_singleshot_timer              8
#define VCPUOP_stop_singleshot_timer             9
#define VCPUOP_register_vcpu_info                10
#define VCPUOP_send_nmi                          11
#define VCPUOP_get_physid                        12
#define VCPUOP_register_vcpu_time_memory_area    13
#define VCPUOP_register_runstate_phys_area       14
#define VCPUOP_register_vcpu_time_phys_area      15
#define VCPU_SSHOTTMR_future                     1
#define RUNSTATE_running                         0
#define RUNSTATE_runnable                        1
#define RUNSTATE_blocked                         2
#define RUNSTATE_offline                         3
#define XEN_RUNSTATE_UPDATE                      0x8000000000000000ULL

/* memory_op */
#define MEMOP_EXTENT_SHIFT                       6
#define MEMOP_CMD_MASK                           0x3F
#define XENMEM_increase_reservation              0
#define XENMEM_decrease_reservation              1
#define XENMEM_maximum_ram_page                  2
#define XENMEM_current_reservation               3
#define XENMEM_maximum_reservation               4
#define XENMEM_machphys_mfn_list                 5
#define XENMEM_populate_physmap                  6
#define XENMEM_add_to_physmap                    7
#define XENMEM_exchange                          11
#define XENMEM_maximum_gpfn                      14
#define XENMEM_remove_from_physmap               15
#define XENMEM_add_to_physmap_batch              23
#define XENMEM_claim_pages                       24
#define XENMEM_get_vnumainfo                     26
#define XENMEM_reserved_device_memory_map        27
#define XENMEM_acquire_resource                  28
#define XENMAPSPACE_shared_info                  0
#define XENMAPSPACE_grant_table                  1
#define XENMAPSPACE_gmfn                         2
#define XENMAPSPACE_gmfn_range                   3
#define XENMAPSPACE_gmfn_foreign                 4
#define XENMAPSPACE_dev_mmio                     5
#define XENMAPIDX_grant_table_status             0x80000000

/* event_channel_op */
#define EVTCHNOP_bind_interdomain                0
#define EVTCHNOP_bind_virq                       1
#define EVTCHNOP_bind_pirq                       2
#define EVTCHNOP_close                           3
#define EVTCHNOP_send                            4
#define EVTCHNOP_status                          5
#define EVTCHNOP_alloc_unbound                   6
#define EVTCHNOP_bind_ipi                        7
#define EVTCHNOP_bind_vcpu                       8
#define EVTCHNOP_unmask                          9
#define EVTCHNOP_reset                           10
#define EVTCHNOP_init_control                    11
#define EVTCHNOP_expand_array                    12
#define EVTCHNOP_set_priority                    13
#define EVTCHNOP_reset_cont                      14
#define EVTCHNSTAT_closed                        0
#define EVTCHNSTAT_unbound                       1
#define EVTCHNSTAT_interdomain                   2
#define EVTCHNSTAT_pirq                          3
#define EVTCHNSTAT_virq                          4
#define EVTCHNSTAT_ipi                           5
#define VIRQ_TIMER                               0
#define VIRQ_DEBUG                               1
#define VIRQ_CONSOLE                             2
#define VIRQ_DOM_EXC                             3
#define NR_VIRQS                                 24
#define EVTCHN_2L_NR_CHANNELS                    4096

/* grant_table_op */
#define GNTTABOP_map_grant_ref                   0
#define GNTTABOP_unmap_grant_ref                 1
#define GNTTABOP_setup_table                     2
#define GNTTABOP_dump_table                      3
#define GNTTABOP_transfer                        4
#define GNTTABOP_copy                            5
#define GNTTABOP_query_size                      6
#define GNTTABOP_unmap_and_replace               7
#define GNTTABOP_set_version                     8
#define GNTTABOP_get_status_frames               9
#define GNTTABOP_get_version                     10
#define GNTTABOP_swap_grant_ref                  11
#define GNTTABOP_cache_flush                     12
#define GNTST_okay                               0
#define GNTST_general_error                      (-1)
#define GNTST_bad_domain                         (-2)
#define GNTST_bad_gntref                         (-3)
#define GNTST_bad_handle                         (-4)
#define GNTST_bad_virt_addr                      (-5)
#define GNTST_bad_dev_addr                       (-6)
#define GNTST_no_device_space                    (-7)
#define GNTST_permission_denied                  (-8)
#define GNTST_bad_page                           (-9)
#define GNTST_bad_copy_arg                       (-10)
#define GNTST_address_too_big                    (-11)
#define GNTST_eagain                             (-12)
#define GNTST_no_space                           (-13)
#define GNTMAP_device_map                        0x1
#define GNTMAP_host_map                          0x2
#define GNTMAP_readonly                          0x4
#define GNTMAP_application_map                   0x8
#define GNTMAP_contains_pte                      0x10
#define GNTCOPY_source_gref                      0x1
#define GNTCOPY_dest_gref                        0x2

/* Grant entry flags */
#define GTF_invalid                              0x0
#define GTF_permit_access                        0x1
#define GTF_accept_transfer                      0x2
#define GTF_transitive                           0x3
#define GTF_type_mask                            0x3
#define GTF_readonly                             0x4
#define GTF_reading                              0x8
#define GTF_writing                              0x10
#define GTF_PWT                                  0x20
#define GTF_PCD                                  0x40
#define GTF_PAT                                  0x80
#define GTF_sub_page                             0x100
#define GNTTAB_NR_RESERVED_ENTRIES               8
#define GNTTAB_RESERVED_CONSOLE                  0
#define GNTTAB_RESERVED_XENSTORE                 1

/* hvm_op */
#define HVMOP_set_param                          0
#define HVMOP_get_param                          1
#define HVMOP_guest_request_vm_event             24
#define HVM_PARAM_CALLBACK_IRQ                   0
#define HVM_PARAM_STORE_PFN                      1
#define HVM_PARAM_STORE_EVTCHN                   2
#define HVM_PARAM_CONSOLE_PFN                    17
#define HVM_PARAM_CONSOLE_EVTCHN                 18
#define HVM_NR_PARAMS                            39
#define HVM_PARAM_CALLBACK_TYPE_PPI              2

/* vm_assist */
#define VMASST_CMD_enable                        0
#define VMASST_CMD_disable                       1
#define VMASST_TYPE_runstate_update_flag         5

/* physdev_op and platform_op (answered -ENOSYS) */
#define PHYSDEVOP_pci_device_add                 25
#define PHYSDEVOP_pci_device_remove              26
#define XENPF_settime64                          62
#define XENPF_INTERFACE_VERSION                  0x3000001

/* Domain ids and shared memory */
#define DOMID_FIRST_RESERVED                     0x7FF0
#define DOMID_SELF                               0x7FF0
#define DOMID_IO                                 0x7FF1
#define DOMID_XEN                                0x7FF2
#define DOMID_COW                                0x7FF3
#define DOMID_INVALID                            0x7FF4
#define DOMID_IDLE                               0x7FFF
#define DOMID_MASK                               0x7FFF
#define XEN_LEGACY_MAX_VCPUS                     1
#define GUEST_EVTCHN_PPI                         31
#define XENCONSOLE_CONNECTED                     0
#define XENCONSOLE_DISCONNECTED                  1

/* PSCI / SMCCC over hvc #0 */
#define PSCI_VERSION                             0x84000000
#define PSCI_CPU_SUSPEND_32                      0x84000001
#define PSCI_CPU_SUSPEND_64                      0xC4000001
#define PSCI_CPU_OFF                             0x84000002
#define PSCI_CPU_ON_32                           0x84000003
#define PSCI_CPU_ON_64                           0xC4000003
#define PSCI_AFFINITY_INFO_32                    0x84000004
#define PSCI_AFFINITY_INFO_64                    0xC4000004
#define PSCI_MIGRATE_INFO_TYPE                   0x84000006
#define PSCI_SYSTEM_OFF                          0x84000008
#define PSCI_SYSTEM_RESET                        0x84000009
#define PSCI_FEATURES                            0x8400000A
#define PSCI_SYSTEM_SUSPEND_64                   0xC400000E
#define PSCI_SYSTEM_RESET2_64                    0xC4000012
#define SMCCC_VERSION                            0x80000000
#define SMCCC_ARCH_FEATURES                      0x80000001
#define SMCCC_ARCH_WORKAROUND_1                  0x80008000
#define SMCCC_ARCH_WORKAROUND_2                  0x80007FFF
#define SMCCC_VENDOR_HYP_CALL_UID                0x8600FF01
#define PSCI_VERSION_1_1                         0x10001
#define SMCCC_VERSION_1_2                        0x10002
#define PSCI_RET_SUCCESS                         0
#define PSCI_RET_NOT_SUPPORTED                   (-1)
#define PSCI_RET_INVALID_PARAMETERS              (-2)
#define PSCI_RET_DENIED                          (-3)
#define PSCI_RET_ALREADY_ON                      (-4)
#define PSCI_RET_ON_PENDING                      (-5)
#define PSCI_RET_INTERNAL_FAILURE                (-6)
#define PSCI_RET_NOT_PRESENT                     (-7)
#define PSCI_RET_DISABLED                        (-8)
#define PSCI_RET_INVALID_ADDRESS                 (-9)
#define PSCI_MIGRATE_INFO_TYPE_TOS_MP            2

/* Argument and shared structures */

/* XENVER_get_features (8 bytes) */
struct xen_feature_info {
    uint32_t submap_idx; /* @0 */
    uint32_t submap; /* @4 */
};
_Static_assert(sizeof(struct xen_feature_info) == 8, "size of struct xen_feature_info");
_Static_assert(offsetof(struct xen_feature_info, submap_idx) == 0, "xen_feature_info.submap_idx");
_Static_assert(offsetof(struct xen_feature_info, submap) == 4, "xen_feature_info.submap");

/* SCHEDOP_shutdown (4 bytes) */
struct sched_shutdown {
    uint32_t reason; /* @0 */
};
_Static_assert(sizeof(struct sched_shutdown) == 4, "size of struct sched_shutdown");
_Static_assert(offsetof(struct sched_shutdown, reason) == 0, "sched_shutdown.reason");

/* SCHEDOP_poll (24 bytes) */
struct sched_poll {
    uint64_t ports; /* @0 */
    uint32_t nr_ports; /* @8 */
    uint64_t timeout; /* @16 */
};
_Static_assert(sizeof(struct sched_poll) == 24, "size of struct sched_poll");
_Static_assert(offsetof(struct sched_poll, ports) == 0, "sched_poll.ports");
_Static_assert(offsetof(struct sched_poll, nr_ports) == 8, "sched_poll.nr_ports");
_Static_assert(offsetof(struct sched_poll, timeout) == 16, "sched_poll.timeout");

/* SCHEDOP_remote_shutdown (8 bytes) */
struct sched_remote_shutdown {
    uint16_t domain_id; /* @0 */
    uint32_t reason; /* @4 */
};
_Static_assert(sizeof(struct sched_remote_shutdown) == 8, "size of struct sched_remote_shutdown");
_Static_assert(offsetof(struct sched_remote_shutdown, domain_id) == 0, "sched_remote_shutdown.domain_id");
_Static_assert(offsetof(struct sched_remote_shutdown, reason) == 4, "sched_remote_shutdown.reason");

/* SCHEDOP_watchdog (8 bytes) */
struct sched_watchdog {
    uint32_t id; /* @0 */
    uint32_t timeout; /* @4 */
};
_Static_assert(sizeof(struct sched_watchdog) == 8, "size of struct sched_watchdog");
_Static_assert(offsetof(struct sched_watchdog, id) == 0, "sched_watchdog.id");
_Static_assert(offsetof(struct sched_watchdog, timeout) == 4, "sched_watchdog.timeout");

/* VCPUOP_register_vcpu_info (16 bytes) */
struct vcpu_register_vcpu_info {
    uint64_t mfn; /* @0 */
    uint32_t offset; /* @8 */
    uint32_t rsvd; /* @12 */
};
_Static_assert(sizeof(struct vcpu_register_vcpu_info) == 16, "size of struct vcpu_register_vcpu_info");
_Static_assert(offsetof(struct vcpu_register_vcpu_info, mfn) == 0, "vcpu_register_vcpu_info.mfn");
_Static_assert(offsetof(struct vcpu_register_vcpu_info, offset) == 8, "vcpu_register_vcpu_info.offset");
_Static_assert(offsetof(struct vcpu_register_vcpu_info, rsvd) == 12, "vcpu_register_vcpu_info.rsvd");

/* VCPUOP_register_runstate_memory_area (8 bytes) */
struct vcpu_register_runstate_memory_area {
    uint64_t addr; /* @0 */
};
_Static_assert(sizeof(struct vcpu_register_runstate_memory_area) == 8, "size of struct vcpu_register_runstate_memory_area");
_Static_assert(offsetof(struct vcpu_register_runstate_memory_area, addr) == 0, "vcpu_register_runstate_memory_area.addr");

/* VCPUOP_set_periodic_timer (8 bytes) */
struct vcpu_set_periodic_timer {
    uint64_t period_ns; /* @0 */
};
_Static_assert(sizeof(struct vcpu_set_periodic_timer) == 8, "size of struct vcpu_set_periodic_timer");
_Static_assert(offsetof(struct vcpu_set_periodic_timer, period_ns) == 0, "vcpu_set_periodic_timer.period_ns");

/* VCPUOP_set_singleshot_timer (16 bytes) */
struct vcpu_set_singleshot_timer {
    uint64_t timeout_abs_ns; /* @0 */
    uint32_t flags; /* @8 */
};
_Static_assert(sizeof(struct vcpu_set_singleshot_timer) == 16, "size of struct vcpu_set_singleshot_timer");
_Static_assert(offsetof(struct vcpu_set_singleshot_timer, timeout_abs_ns) == 0, "vcpu_set_singleshot_timer.timeout_abs_ns");
_Static_assert(offsetof(struct vcpu_set_singleshot_timer, flags) == 8, "vcpu_set_singleshot_timer.flags");

/* written by the hypervisor (48 bytes) */
struct vcpu_runstate_info {
    int32_t state; /* @0 */
    uint64_t state_entry_time; /* @8 */
    uint64_t time[4]; /* @16 */
};
_Static_assert(sizeof(struct vcpu_runstate_info) == 48, "size of struct vcpu_runstate_info");
_Static_assert(offsetof(struct vcpu_runstate_info, state) == 0, "vcpu_runstate_info.state");
_Static_assert(offsetof(struct vcpu_runstate_info, state_entry_time) == 8, "vcpu_runstate_info.state_entry_time");
_Static_assert(offsetof(struct vcpu_runstate_info, time) == 16, "vcpu_runstate_info.time");

/* XENMEM_add_to_physmap (24 bytes) */
struct xen_add_to_physmap {
    uint16_t domid; /* @0 */
    uint16_t size; /* @2 */
    uint32_t space; /* @4 */
    uint64_t idx; /* @8 */
    uint64_t gpfn; /* @16 */
};
_Static_assert(sizeof(struct xen_add_to_physmap) == 24, "size of struct xen_add_to_physmap");
_Static_assert(offsetof(struct xen_add_to_physmap, domid) == 0, "xen_add_to_physmap.domid");
_Static_assert(offsetof(struct xen_add_to_physmap, size) == 2, "xen_add_to_physmap.size");
_Static_assert(offsetof(struct xen_add_to_physmap, space) == 4, "xen_add_to_physmap.space");
_Static_assert(offsetof(struct xen_add_to_physmap, idx) == 8, "xen_add_to_physmap.idx");
_Static_assert(offsetof(struct xen_add_to_physmap, gpfn) == 16, "xen_add_to_physmap.gpfn");

/* XENMEM_remove_from_physmap (16 bytes) */
struct xen_remove_from_physmap {
    uint16_t domid; /* @0 */
    uint64_t gpfn; /* @8 */
};
_Static_assert(sizeof(struct xen_remove_from_physmap) == 16, "size of struct xen_remove_from_physmap");
_Static_assert(offsetof(struct xen_remove_from_physmap, domid) == 0, "xen_remove_from_physmap.domid");
_Static_assert(offsetof(struct xen_remove_from_physmap, gpfn) == 8, "xen_remove_from_physmap.gpfn");

/* XENMEM_{increase,decrease}_reservation, XENMEM_populate_physmap (32 bytes) */
struct xen_memory_reservation {
    uint64_t extent_start; /* @0 */
    uint64_t nr_extents; /* @8 */
    uint32_t extent_order; /* @16 */
    uint32_t mem_flags; /* @20 */
    uint16_t domid; /* @24 */
};
_Static_assert(sizeof(struct xen_memory_reservation) == 32, "size of struct xen_memory_reservation");
_Static_assert(offsetof(struct xen_memory_reservation, extent_start) == 0, "xen_memory_reservation.extent_start");
_Static_assert(offsetof(struct xen_memory_reservation, nr_extents) == 8, "xen_memory_reservation.nr_extents");
_Static_assert(offsetof(struct xen_memory_reservation, extent_order) == 16, "xen_memory_reservation.extent_order");
_Static_assert(offsetof(struct xen_memory_reservation, mem_flags) == 20, "xen_memory_reservation.mem_flags");
_Static_assert(offsetof(struct xen_memory_reservation, domid) == 24, "xen_memory_reservation.domid");

/* EVTCHNOP_alloc_unbound (8 bytes) */
struct evtchn_alloc_unbound {
    uint16_t dom; /* @0 */
    uint16_t remote_dom; /* @2 */
    uint32_t port; /* @4 */
};
_Static_assert(sizeof(struct evtchn_alloc_unbound) == 8, "size of struct evtchn_alloc_unbound");
_Static_assert(offsetof(struct evtchn_alloc_unbound, dom) == 0, "evtchn_alloc_unbound.dom");
_Static_assert(offsetof(struct evtchn_alloc_unbound, remote_dom) == 2, "evtchn_alloc_unbound.remote_dom");
_Static_assert(offsetof(struct evtchn_alloc_unbound, port) == 4, "evtchn_alloc_unbound.port");

/* EVTCHNOP_bind_interdomain (12 bytes) */
struct evtchn_bind_interdomain {
    uint16_t remote_dom; /* @0 */
    uint32_t remote_port; /* @4 */
    uint32_t local_port; /* @8 */
};
_Static_assert(sizeof(struct evtchn_bind_interdomain) == 12, "size of struct evtchn_bind_interdomain");
_Static_assert(offsetof(struct evtchn_bind_interdomain, remote_dom) == 0, "evtchn_bind_interdomain.remote_dom");
_Static_assert(offsetof(struct evtchn_bind_interdomain, remote_port) == 4, "evtchn_bind_interdomain.remote_port");
_Static_assert(offsetof(struct evtchn_bind_interdomain, local_port) == 8, "evtchn_bind_interdomain.local_port");

/* EVTCHNOP_bind_virq (12 bytes) */
struct evtchn_bind_virq {
    uint32_t virq; /* @0 */
    uint32_t vcpu; /* @4 */
    uint32_t port; /* @8 */
};
_Static_assert(sizeof(struct evtchn_bind_virq) == 12, "size of struct evtchn_bind_virq");
_Static_assert(offsetof(struct evtchn_bind_virq, virq) == 0, "evtchn_bind_virq.virq");
_Static_assert(offsetof(struct evtchn_bind_virq, vcpu) == 4, "evtchn_bind_virq.vcpu");
_Static_assert(offsetof(struct evtchn_bind_virq, port) == 8, "evtchn_bind_virq.port");

/* EVTCHNOP_bind_ipi (8 bytes) */
struct evtchn_bind_ipi {
    uint32_t vcpu; /* @0 */
    uint32_t port; /* @4 */
};
_Static_assert(sizeof(struct evtchn_bind_ipi) == 8, "size of struct evtchn_bind_ipi");
_Static_assert(offsetof(struct evtchn_bind_ipi, vcpu) == 0, "evtchn_bind_ipi.vcpu");
_Static_assert(offsetof(struct evtchn_bind_ipi, port) == 4, "evtchn_bind_ipi.port");

/* EVTCHNOP_close (4 bytes) */
struct evtchn_close {
    uint32_t port; /* @0 */
};
_Static_assert(sizeof(struct evtchn_close) == 4, "size of struct evtchn_close");
_Static_assert(offsetof(struct evtchn_close, port) == 0, "evtchn_close.port");

/* EVTCHNOP_send (4 bytes) */
struct evtchn_send {
    uint32_t port; /* @0 */
};
_Static_assert(sizeof(struct evtchn_send) == 4, "size of struct evtchn_send");
_Static_assert(offsetof(struct evtchn_send, port) == 0, "evtchn_send.port");

/* EVTCHNOP_unmask (4 bytes) */
struct evtchn_unmask {
    uint32_t port; /* @0 */
};
_Static_assert(sizeof(struct evtchn_unmask) == 4, "size of struct evtchn_unmask");
_Static_assert(offsetof(struct evtchn_unmask, port) == 0, "evtchn_unmask.port");

/* EVTCHNOP_status; u = Xen's union (24 bytes) */
struct evtchn_status {
    uint16_t dom; /* @0 */
    uint32_t port; /* @4 */
    uint32_t status; /* @8 */
    uint32_t vcpu; /* @12 */
    uint32_t u[2]; /* @16 */
};
_Static_assert(sizeof(struct evtchn_status) == 24, "size of struct evtchn_status");
_Static_assert(offsetof(struct evtchn_status, dom) == 0, "evtchn_status.dom");
_Static_assert(offsetof(struct evtchn_status, port) == 4, "evtchn_status.port");
_Static_assert(offsetof(struct evtchn_status, status) == 8, "evtchn_status.status");
_Static_assert(offsetof(struct evtchn_status, vcpu) == 12, "evtchn_status.vcpu");
_Static_assert(offsetof(struct evtchn_status, u) == 16, "evtchn_status.u");

/* EVTCHNOP_bind_vcpu (8 bytes) */
struct evtchn_bind_vcpu {
    uint32_t port; /* @0 */
    uint32_t vcpu; /* @4 */
};
_Static_assert(sizeof(struct evtchn_bind_vcpu) == 8, "size of struct evtchn_bind_vcpu");
_Static_assert(offsetof(struct evtchn_bind_vcpu, port) == 0, "evtchn_bind_vcpu.port");
_Static_assert(offsetof(struct evtchn_bind_vcpu, vcpu) == 4, "evtchn_bind_vcpu.vcpu");

/* EVTCHNOP_reset (2 bytes) */
struct evtchn_reset {
    uint16_t dom; /* @0 */
};
_Static_assert(sizeof(struct evtchn_reset) == 2, "size of struct evtchn_reset");
_Static_assert(offsetof(struct evtchn_reset, dom) == 0, "evtchn_reset.dom");

/* EVTCHNOP_init_control (answered -ENOSYS) (24 bytes) */
struct evtchn_init_control {
    uint64_t control_gfn; /* @0 */
    uint32_t offset; /* @8 */
    uint32_t vcpu; /* @12 */
    uint8_t link_bits; /* @16 */
    uint8_t _pad[7]; /* @17 */
};
_Static_assert(sizeof(struct evtchn_init_control) == 24, "size of struct evtchn_init_control");
_Static_assert(offsetof(struct evtchn_init_control, control_gfn) == 0, "evtchn_init_control.control_gfn");
_Static_assert(offsetof(struct evtchn_init_control, offset) == 8, "evtchn_init_control.offset");
_Static_assert(offsetof(struct evtchn_init_control, vcpu) == 12, "evtchn_init_control.vcpu");
_Static_assert(offsetof(struct evtchn_init_control, link_bits) == 16, "evtchn_init_control.link_bits");
_Static_assert(offsetof(struct evtchn_init_control, _pad) == 17, "evtchn_init_control._pad");

/* GNTTABOP_setup_table (24 bytes) */
struct gnttab_setup_table {
    uint16_t dom; /* @0 */
    uint32_t nr_frames; /* @4 */
    int16_t status; /* @8 */
    uint64_t frame_list; /* @16 */
};
_Static_assert(sizeof(struct gnttab_setup_table) == 24, "size of struct gnttab_setup_table");
_Static_assert(offsetof(struct gnttab_setup_table, dom) == 0, "gnttab_setup_table.dom");
_Static_assert(offsetof(struct gnttab_setup_table, nr_frames) == 4, "gnttab_setup_table.nr_frames");
_Static_assert(offsetof(struct gnttab_setup_table, status) == 8, "gnttab_setup_table.status");
_Static_assert(offsetof(struct gnttab_setup_table, frame_list) == 16, "gnttab_setup_table.frame_list");

/* GNTTABOP_query_size (16 bytes) */
struct gnttab_query_size {
    uint16_t dom; /* @0 */
    uint32_t nr_frames; /* @4 */
    uint32_t max_nr_frames; /* @8 */
    int16_t status; /* @12 */
};
_Static_assert(sizeof(struct gnttab_query_size) == 16, "size of struct gnttab_query_size");
_Static_assert(offsetof(struct gnttab_query_size, dom) == 0, "gnttab_query_size.dom");
_Static_assert(offsetof(struct gnttab_query_size, nr_frames) == 4, "gnttab_query_size.nr_frames");
_Static_assert(offsetof(struct gnttab_query_size, max_nr_frames) == 8, "gnttab_query_size.max_nr_frames");
_Static_assert(offsetof(struct gnttab_query_size, status) == 12, "gnttab_query_size.status");

/* GNTTABOP_set_version (4 bytes) */
struct gnttab_set_version {
    uint32_t version; /* @0 */
};
_Static_assert(sizeof(struct gnttab_set_version) == 4, "size of struct gnttab_set_version");
_Static_assert(offsetof(struct gnttab_set_version, version) == 0, "gnttab_set_version.version");

/* GNTTABOP_get_version (8 bytes) */
struct gnttab_get_version {
    uint16_t dom; /* @0 */
    uint16_t pad; /* @2 */
    uint32_t version; /* @4 */
};
_Static_assert(sizeof(struct gnttab_get_version) == 8, "size of struct gnttab_get_version");
_Static_assert(offsetof(struct gnttab_get_version, dom) == 0, "gnttab_get_version.dom");
_Static_assert(offsetof(struct gnttab_get_version, pad) == 2, "gnttab_get_version.pad");
_Static_assert(offsetof(struct gnttab_get_version, version) == 4, "gnttab_get_version.version");

/* GNTTABOP_map_grant_ref (32 bytes) */
struct gnttab_map_grant_ref {
    uint64_t host_addr; /* @0 */
    uint32_t flags; /* @8 */
    uint32_t ref; /* @12 */
    uint16_t dom; /* @16 */
    int16_t status; /* @18 */
    uint32_t handle; /* @20 */
    uint64_t dev_bus_addr; /* @24 */
};
_Static_assert(sizeof(struct gnttab_map_grant_ref) == 32, "size of struct gnttab_map_grant_ref");
_Static_assert(offsetof(struct gnttab_map_grant_ref, host_addr) == 0, "gnttab_map_grant_ref.host_addr");
_Static_assert(offsetof(struct gnttab_map_grant_ref, flags) == 8, "gnttab_map_grant_ref.flags");
_Static_assert(offsetof(struct gnttab_map_grant_ref, ref) == 12, "gnttab_map_grant_ref.ref");
_Static_assert(offsetof(struct gnttab_map_grant_ref, dom) == 16, "gnttab_map_grant_ref.dom");
_Static_assert(offsetof(struct gnttab_map_grant_ref, status) == 18, "gnttab_map_grant_ref.status");
_Static_assert(offsetof(struct gnttab_map_grant_ref, handle) == 20, "gnttab_map_grant_ref.handle");
_Static_assert(offsetof(struct gnttab_map_grant_ref, dev_bus_addr) == 24, "gnttab_map_grant_ref.dev_bus_addr");

/* GNTTABOP_unmap_grant_ref (24 bytes) */
struct gnttab_unmap_grant_ref {
    uint64_t host_addr; /* @0 */
    uint64_t dev_bus_addr; /* @8 */
    uint32_t handle; /* @16 */
    int16_t status; /* @20 */
};
_Static_assert(sizeof(struct gnttab_unmap_grant_ref) == 24, "size of struct gnttab_unmap_grant_ref");
_Static_assert(offsetof(struct gnttab_unmap_grant_ref, host_addr) == 0, "gnttab_unmap_grant_ref.host_addr");
_Static_assert(offsetof(struct gnttab_unmap_grant_ref, dev_bus_addr) == 8, "gnttab_unmap_grant_ref.dev_bus_addr");
_Static_assert(offsetof(struct gnttab_unmap_grant_ref, handle) == 16, "gnttab_unmap_grant_ref.handle");
_Static_assert(offsetof(struct gnttab_unmap_grant_ref, status) == 20, "gnttab_unmap_grant_ref.status");

/* one side of GNTTABOP_copy; u = grant ref or frame (16 bytes) */
struct gnttab_copy_ptr {
    uint64_t u; /* @0 */
    uint16_t domid; /* @8 */
    uint16_t offset; /* @10 */
};
_Static_assert(sizeof(struct gnttab_copy_ptr) == 16, "size of struct gnttab_copy_ptr");
_Static_assert(offsetof(struct gnttab_copy_ptr, u) == 0, "gnttab_copy_ptr.u");
_Static_assert(offsetof(struct gnttab_copy_ptr, domid) == 8, "gnttab_copy_ptr.domid");
_Static_assert(offsetof(struct gnttab_copy_ptr, offset) == 10, "gnttab_copy_ptr.offset");

/* GNTTABOP_copy (40 bytes) */
struct gnttab_copy {
    struct gnttab_copy_ptr source; /* @0 */
    struct gnttab_copy_ptr dest; /* @16 */
    uint16_t len; /* @32 */
    uint16_t flags; /* @34 */
    int16_t status; /* @36 */
};
_Static_assert(sizeof(struct gnttab_copy) == 40, "size of struct gnttab_copy");
_Static_assert(offsetof(struct gnttab_copy, source) == 0, "gnttab_copy.source");
_Static_assert(offsetof(struct gnttab_copy, dest) == 16, "gnttab_copy.dest");
_Static_assert(offsetof(struct gnttab_copy, len) == 32, "gnttab_copy.len");
_Static_assert(offsetof(struct gnttab_copy, flags) == 34, "gnttab_copy.flags");
_Static_assert(offsetof(struct gnttab_copy, status) == 36, "gnttab_copy.status");

/* HVMOP_set_param / HVMOP_get_param (16 bytes) */
struct xen_hvm_param {
    uint16_t domid; /* @0 */
    uint16_t pad; /* @2 */
    uint32_t index; /* @4 */
    uint64_t value; /* @8 */
};
_Static_assert(sizeof(struct xen_hvm_param) == 16, "size of struct xen_hvm_param");
_Static_assert(offsetof(struct xen_hvm_param, domid) == 0, "xen_hvm_param.domid");
_Static_assert(offsetof(struct xen_hvm_param, pad) == 2, "xen_hvm_param.pad");
_Static_assert(offsetof(struct xen_hvm_param, index) == 4, "xen_hvm_param.index");
_Static_assert(offsetof(struct xen_hvm_param, value) == 8, "xen_hvm_param.value");

/* unused on ARM (32 bytes) */
struct vcpu_time_info {
    uint32_t version; /* @0 */
    uint32_t pad0; /* @4 */
    uint64_t tsc_timestamp; /* @8 */
    uint64_t system_time; /* @16 */
    uint32_t tsc_to_system_mul; /* @24 */
    int8_t tsc_shift; /* @28 */
    uint8_t flags; /* @29 */
    uint8_t pad1[2]; /* @30 */
};
_Static_assert(sizeof(struct vcpu_time_info) == 32, "size of struct vcpu_time_info");
_Static_assert(offsetof(struct vcpu_time_info, version) == 0, "vcpu_time_info.version");
_Static_assert(offsetof(struct vcpu_time_info, pad0) == 4, "vcpu_time_info.pad0");
_Static_assert(offsetof(struct vcpu_time_info, tsc_timestamp) == 8, "vcpu_time_info.tsc_timestamp");
_Static_assert(offsetof(struct vcpu_time_info, system_time) == 16, "vcpu_time_info.system_time");
_Static_assert(offsetof(struct vcpu_time_info, tsc_to_system_mul) == 24, "vcpu_time_info.tsc_to_system_mul");
_Static_assert(offsetof(struct vcpu_time_info, tsc_shift) == 28, "vcpu_time_info.tsc_shift");
_Static_assert(offsetof(struct vcpu_time_info, flags) == 29, "vcpu_time_info.flags");
_Static_assert(offsetof(struct vcpu_time_info, pad1) == 30, "vcpu_time_info.pad1");

/* per-vCPU event state (48 bytes) */
struct vcpu_info {
    uint8_t evtchn_upcall_pending; /* @0 */
    uint8_t evtchn_upcall_mask; /* @1 */
    uint8_t pad[6]; /* @2 */
    uint64_t evtchn_pending_sel; /* @8 */
    struct vcpu_time_info time; /* @16 */
};
_Static_assert(sizeof(struct vcpu_info) == 48, "size of struct vcpu_info");
_Static_assert(offsetof(struct vcpu_info, evtchn_upcall_pending) == 0, "vcpu_info.evtchn_upcall_pending");
_Static_assert(offsetof(struct vcpu_info, evtchn_upcall_mask) == 1, "vcpu_info.evtchn_upcall_mask");
_Static_assert(offsetof(struct vcpu_info, pad) == 2, "vcpu_info.pad");
_Static_assert(offsetof(struct vcpu_info, evtchn_pending_sel) == 8, "vcpu_info.evtchn_pending_sel");
_Static_assert(offsetof(struct vcpu_info, time) == 16, "vcpu_info.time");

/* the shared-info page (1088 bytes) */
struct shared_info {
    struct vcpu_info vcpu_info[1]; /* @0 */
    uint64_t evtchn_pending[64]; /* @48 */
    uint64_t evtchn_mask[64]; /* @560 */
    uint32_t wc_version; /* @1072 */
    uint32_t wc_sec; /* @1076 */
    uint32_t wc_nsec; /* @1080 */
    uint32_t wc_sec_hi; /* @1084 */
};
_Static_assert(sizeof(struct shared_info) == 1088, "size of struct shared_info");
_Static_assert(offsetof(struct shared_info, vcpu_info) == 0, "shared_info.vcpu_info");
_Static_assert(offsetof(struct shared_info, evtchn_pending) == 48, "shared_info.evtchn_pending");
_Static_assert(offsetof(struct shared_info, evtchn_mask) == 560, "shared_info.evtchn_mask");
_Static_assert(offsetof(struct shared_info, wc_version) == 1072, "shared_info.wc_version");
_Static_assert(offsetof(struct shared_info, wc_sec) == 1076, "shared_info.wc_sec");
_Static_assert(offsetof(struct shared_info, wc_nsec) == 1080, "shared_info.wc_nsec");
_Static_assert(offsetof(struct shared_info, wc_sec_hi) == 1084, "shared_info.wc_sec_hi");

/* grant-table entry (8 bytes) */
struct grant_entry_v1 {
    uint16_t flags; /* @0 */
    uint16_t domid; /* @2 */
    uint32_t frame; /* @4 */
};
_Static_assert(sizeof(struct grant_entry_v1) == 8, "size of struct grant_entry_v1");
_Static_assert(offsetof(struct grant_entry_v1, flags) == 0, "grant_entry_v1.flags");
_Static_assert(offsetof(struct grant_entry_v1, domid) == 2, "grant_entry_v1.domid");
_Static_assert(offsetof(struct grant_entry_v1, frame) == 4, "grant_entry_v1.frame");

/* PV console ring page (3092 bytes) */
struct xencons_interface {
    char in[1024]; /* @0 */
    char out[2048]; /* @1024 */
    uint32_t in_cons; /* @3072 */
    uint32_t in_prod; /* @3076 */
    uint32_t out_cons; /* @3080 */
    uint32_t out_prod; /* @3084 */
    uint8_t connection; /* @3088 */
};
_Static_assert(sizeof(struct xencons_interface) == 3092, "size of struct xencons_interface");
_Static_assert(offsetof(struct xencons_interface, in) == 0, "xencons_interface.in");
_Static_assert(offsetof(struct xencons_interface, out) == 1024, "xencons_interface.out");
_Static_assert(offsetof(struct xencons_interface, in_cons) == 3072, "xencons_interface.in_cons");
_Static_assert(offsetof(struct xencons_interface, in_prod) == 3076, "xencons_interface.in_prod");
_Static_assert(offsetof(struct xencons_interface, out_cons) == 3080, "xencons_interface.out_cons");
_Static_assert(offsetof(struct xencons_interface, out_prod) == 3084, "xencons_interface.out_prod");
_Static_assert(offsetof(struct xencons_interface, connection) == 3088, "xencons_interface.connection");

#endif /* HYPERCALL_ABI_H */
