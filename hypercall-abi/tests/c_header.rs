//! Renders `include/hypercall_abi.h` from the crate's constants and struct layouts and
//! checks that the checked-in header matches.
//!
//! Run `UPDATE_C_HEADER=1 cargo test -p hypercall-abi --test c_header` to rewrite it.
//! When a C compiler is available the header is also compiled, so its
//! `_Static_assert`s confirm that C and Rust agree on every size and offset.

use core::mem::{offset_of, size_of};
use std::fmt::Write as _;
use std::path::PathBuf;

use hypercall_abi::*;

/// One C struct: its name, Rust size and fields (C declaration, Rust offset).
struct CStruct {
    name: &'static str,
    doc: &'static str,
    size: usize,
    fields: Vec<(&'static str, usize)>,
}

macro_rules! cstruct {
    ($name:literal, $doc:literal, $t:ty, [$($field:ident => $decl:literal),* $(,)?]) => {
        CStruct {
            name: $name,
            doc: $doc,
            size: size_of::<$t>(),
            fields: vec![$(($decl, offset_of!($t, $field))),*],
        }
    };
}

/// The C identifier declared by a field declaration such as `uint8_t pad[6]`.
fn c_field_name(decl: &str) -> &str {
    let last = decl.rsplit(' ').next().unwrap_or(decl);
    last.split('[').next().unwrap_or(last)
}

struct Out(String);

impl Out {
    fn line(&mut self, s: &str) {
        self.0.push_str(s);
        self.0.push('\n');
    }
    fn define(&mut self, name: &str, value: impl std::fmt::Display) {
        writeln!(self.0, "#define {name:<40} {value}").unwrap();
    }
    fn hex(&mut self, name: &str, value: u64) {
        self.define(name, format!("0x{value:X}"));
    }
    fn signed(&mut self, name: &str, value: i64) {
        if value < 0 {
            self.define(name, format!("({value})"));
        } else {
            self.define(name, value);
        }
    }
    fn section(&mut self, title: &str) {
        self.line("");
        writeln!(self.0, "/* {title} */").unwrap();
    }
    fn strukt(&mut self, s: &CStruct) {
        self.line("");
        writeln!(self.0, "/* {} ({} bytes) */", s.doc, s.size).unwrap();
        writeln!(self.0, "struct {} {{", s.name).unwrap();
        for (decl, offset) in &s.fields {
            writeln!(self.0, "    {decl}; /* @{offset} */").unwrap();
        }
        self.line("};");
        writeln!(
            self.0,
            "_Static_assert(sizeof(struct {}) == {}, \"size of struct {}\");",
            s.name, s.size, s.name
        )
        .unwrap();
        for (decl, offset) in &s.fields {
            let field = c_field_name(decl);
            writeln!(
                self.0,
                "_Static_assert(offsetof(struct {}, {field}) == {offset}, \"{}.{field}\");",
                s.name, s.name
            )
            .unwrap();
        }
    }
}

fn structs() -> Vec<CStruct> {
    use hypercall_abi::event_channel_op as e;
    use hypercall_abi::grant_table_op as g;
    use hypercall_abi::shared as sh;
    vec![
        cstruct!("xen_feature_info", "XENVER_get_features", xen_version::FeatureInfo,
            [submap_idx => "uint32_t submap_idx", submap => "uint32_t submap"]),
        cstruct!("sched_shutdown", "SCHEDOP_shutdown", sched_op::SchedShutdown,
            [reason => "uint32_t reason"]),
        cstruct!("sched_poll", "SCHEDOP_poll", sched_op::SchedPoll,
            [ports => "uint64_t ports", nr_ports => "uint32_t nr_ports", timeout => "uint64_t timeout"]),
        cstruct!("sched_remote_shutdown", "SCHEDOP_remote_shutdown", sched_op::SchedRemoteShutdown,
            [domain_id => "uint16_t domain_id", reason => "uint32_t reason"]),
        cstruct!("sched_watchdog", "SCHEDOP_watchdog", sched_op::SchedWatchdog,
            [id => "uint32_t id", timeout => "uint32_t timeout"]),
        cstruct!("vcpu_register_vcpu_info", "VCPUOP_register_vcpu_info", vcpu_op::RegisterVcpuInfo,
            [mfn => "uint64_t mfn", offset => "uint32_t offset", rsvd => "uint32_t rsvd"]),
        cstruct!("vcpu_register_runstate_memory_area", "VCPUOP_register_runstate_memory_area",
            vcpu_op::RegisterRunstateMemoryArea, [addr => "uint64_t addr"]),
        cstruct!("vcpu_set_periodic_timer", "VCPUOP_set_periodic_timer", vcpu_op::SetPeriodicTimer,
            [period_ns => "uint64_t period_ns"]),
        cstruct!("vcpu_set_singleshot_timer", "VCPUOP_set_singleshot_timer", vcpu_op::SetSingleshotTimer,
            [timeout_abs_ns => "uint64_t timeout_abs_ns", flags => "uint32_t flags"]),
        cstruct!("vcpu_runstate_info", "written by the hypervisor", vcpu_op::VcpuRunstateInfo,
            [state => "int32_t state", state_entry_time => "uint64_t state_entry_time", time => "uint64_t time[4]"]),
        cstruct!("xen_add_to_physmap", "XENMEM_add_to_physmap", memory_op::AddToPhysmap,
            [domid => "uint16_t domid", size => "uint16_t size", space => "uint32_t space",
             idx => "uint64_t idx", gpfn => "uint64_t gpfn"]),
        cstruct!("xen_remove_from_physmap", "XENMEM_remove_from_physmap", memory_op::RemoveFromPhysmap,
            [domid => "uint16_t domid", gpfn => "uint64_t gpfn"]),
        cstruct!("xen_memory_reservation", "XENMEM_{increase,decrease}_reservation, XENMEM_populate_physmap",
            memory_op::MemoryReservation,
            [extent_start => "uint64_t extent_start", nr_extents => "uint64_t nr_extents",
             extent_order => "uint32_t extent_order", mem_flags => "uint32_t mem_flags",
             domid => "uint16_t domid"]),
        cstruct!("evtchn_alloc_unbound", "EVTCHNOP_alloc_unbound", e::AllocUnbound,
            [dom => "uint16_t dom", remote_dom => "uint16_t remote_dom", port => "uint32_t port"]),
        cstruct!("evtchn_bind_interdomain", "EVTCHNOP_bind_interdomain", e::BindInterdomain,
            [remote_dom => "uint16_t remote_dom", remote_port => "uint32_t remote_port",
             local_port => "uint32_t local_port"]),
        cstruct!("evtchn_bind_virq", "EVTCHNOP_bind_virq", e::BindVirq,
            [virq => "uint32_t virq", vcpu => "uint32_t vcpu", port => "uint32_t port"]),
        cstruct!("evtchn_bind_ipi", "EVTCHNOP_bind_ipi", e::BindIpi,
            [vcpu => "uint32_t vcpu", port => "uint32_t port"]),
        cstruct!("evtchn_close", "EVTCHNOP_close", e::Close, [port => "uint32_t port"]),
        cstruct!("evtchn_send", "EVTCHNOP_send", e::Send, [port => "uint32_t port"]),
        cstruct!("evtchn_unmask", "EVTCHNOP_unmask", e::Unmask, [port => "uint32_t port"]),
        cstruct!("evtchn_status", "EVTCHNOP_status; u = Xen's union", e::Status,
            [dom => "uint16_t dom", port => "uint32_t port", status => "uint32_t status",
             vcpu => "uint32_t vcpu", u => "uint32_t u[2]"]),
        cstruct!("evtchn_bind_vcpu", "EVTCHNOP_bind_vcpu", e::BindVcpu,
            [port => "uint32_t port", vcpu => "uint32_t vcpu"]),
        cstruct!("evtchn_reset", "EVTCHNOP_reset", e::Reset, [dom => "uint16_t dom"]),
        cstruct!("evtchn_init_control", "EVTCHNOP_init_control (answered -ENOSYS)", e::InitControl,
            [control_gfn => "uint64_t control_gfn", offset => "uint32_t offset", vcpu => "uint32_t vcpu",
             link_bits => "uint8_t link_bits", _pad => "uint8_t _pad[7]"]),
        cstruct!("gnttab_setup_table", "GNTTABOP_setup_table", g::SetupTable,
            [dom => "uint16_t dom", nr_frames => "uint32_t nr_frames", status => "int16_t status",
             frame_list => "uint64_t frame_list"]),
        cstruct!("gnttab_query_size", "GNTTABOP_query_size", g::QuerySize,
            [dom => "uint16_t dom", nr_frames => "uint32_t nr_frames",
             max_nr_frames => "uint32_t max_nr_frames", status => "int16_t status"]),
        cstruct!("gnttab_set_version", "GNTTABOP_set_version", g::SetVersion,
            [version => "uint32_t version"]),
        cstruct!("gnttab_get_version", "GNTTABOP_get_version", g::GetVersion,
            [dom => "uint16_t dom", pad => "uint16_t pad", version => "uint32_t version"]),
        cstruct!("gnttab_map_grant_ref", "GNTTABOP_map_grant_ref", g::MapGrantRef,
            [host_addr => "uint64_t host_addr", flags => "uint32_t flags", r#ref => "uint32_t ref",
             dom => "uint16_t dom", status => "int16_t status", handle => "uint32_t handle",
             dev_bus_addr => "uint64_t dev_bus_addr"]),
        cstruct!("gnttab_unmap_grant_ref", "GNTTABOP_unmap_grant_ref", g::UnmapGrantRef,
            [host_addr => "uint64_t host_addr", dev_bus_addr => "uint64_t dev_bus_addr",
             handle => "uint32_t handle", status => "int16_t status"]),
        cstruct!("gnttab_copy_ptr", "one side of GNTTABOP_copy; u = grant ref or frame", g::CopyPtr,
            [u => "uint64_t u", domid => "uint16_t domid", offset => "uint16_t offset"]),
        cstruct!("gnttab_copy", "GNTTABOP_copy", g::Copy,
            [source => "struct gnttab_copy_ptr source", dest => "struct gnttab_copy_ptr dest",
             len => "uint16_t len", flags => "uint16_t flags", status => "int16_t status"]),
        cstruct!("xen_hvm_param", "HVMOP_set_param / HVMOP_get_param", hvm_op::HvmParam,
            [domid => "uint16_t domid", pad => "uint16_t pad", index => "uint32_t index",
             value => "uint64_t value"]),
        cstruct!("vcpu_time_info", "unused on ARM", sh::VcpuTimeInfo,
            [version => "uint32_t version", pad0 => "uint32_t pad0", tsc_timestamp => "uint64_t tsc_timestamp",
             system_time => "uint64_t system_time", tsc_to_system_mul => "uint32_t tsc_to_system_mul",
             tsc_shift => "int8_t tsc_shift", flags => "uint8_t flags", pad1 => "uint8_t pad1[2]"]),
        cstruct!("vcpu_info", "per-vCPU event state", sh::VcpuInfo,
            [evtchn_upcall_pending => "uint8_t evtchn_upcall_pending",
             evtchn_upcall_mask => "uint8_t evtchn_upcall_mask", pad => "uint8_t pad[6]",
             evtchn_pending_sel => "uint64_t evtchn_pending_sel", time => "struct vcpu_time_info time"]),
        cstruct!("shared_info", "the shared-info page", sh::SharedInfo,
            [vcpu_info => "struct vcpu_info vcpu_info[1]", evtchn_pending => "uint64_t evtchn_pending[64]",
             evtchn_mask => "uint64_t evtchn_mask[64]", wc_version => "uint32_t wc_version",
             wc_sec => "uint32_t wc_sec", wc_nsec => "uint32_t wc_nsec", wc_sec_hi => "uint32_t wc_sec_hi"]),
        cstruct!("grant_entry_v1", "grant-table entry", sh::GrantEntryV1,
            [flags => "uint16_t flags", domid => "uint16_t domid", frame => "uint32_t frame"]),
        cstruct!("xencons_interface", "PV console ring page", sh::XenconsInterface,
            [input => "char in[1024]", output => "char out[2048]", in_cons => "uint32_t in_cons",
             in_prod => "uint32_t in_prod", out_cons => "uint32_t out_cons",
             out_prod => "uint32_t out_prod", connection => "uint8_t connection"]),
    ]
}

fn render() -> String {
    let mut o = Out(String::new());
    o.line("/* SPDX-License-Identifier: MIT OR Apache-2.0 */");
    o.line("/*");
    o.line(" * hypercall_abi.h: the Xen-compatible AArch64 guest ABI for C guests.");
    o.line(" *");
    o.line(" * GENERATED from the hypercall-abi crate by tests/c_header.rs. Do not edit;");
    o.line(" * regenerate with: UPDATE_C_HEADER=1 cargo test -p hypercall-abi --test c_header");
    o.line(" *");
    o.line(" * Names follow Xen's public headers, so do not include both. Reference: docs/abi.md.");
    o.line(" * Call: hvc #0xEA1, number in x16, args in x0..x4, result in x0 (negative errno).");
    o.line(" * Fields of shared_info, vcpu_info, grant_entry_v1 and xencons_interface change");
    o.line(" * concurrently: access them with atomics and barriers.");
    o.line(" */");
    o.line("#ifndef HYPERCALL_ABI_H");
    o.line("#define HYPERCALL_ABI_H");
    o.line("");
    o.line("#include <stddef.h>");
    o.line("#include <stdint.h>");

    o.section("Calling convention");
    o.hex("XEN_HYPERCALL_TAG", HYPERCALL_IMMEDIATE.into());
    o.hex("XEN_SMCCC_HVC_IMMEDIATE", SMCCC_IMMEDIATE.into());

    o.section("Hypercall numbers (x16)");
    for (name, v) in [
        ("platform_op", hypercall::PLATFORM_OP),
        ("memory_op", hypercall::MEMORY_OP),
        ("multicall", hypercall::MULTICALL),
        ("xen_version", hypercall::XEN_VERSION),
        ("console_io", hypercall::CONSOLE_IO),
        ("grant_table_op", hypercall::GRANT_TABLE_OP),
        ("vm_assist", hypercall::VM_ASSIST),
        ("vcpu_op", hypercall::VCPU_OP),
        ("sched_op", hypercall::SCHED_OP),
        ("event_channel_op", hypercall::EVENT_CHANNEL_OP),
        ("physdev_op", hypercall::PHYSDEV_OP),
        ("hvm_op", hypercall::HVM_OP),
        ("sysctl", hypercall::SYSCTL),
        ("domctl", hypercall::DOMCTL),
        ("dm_op", hypercall::DM_OP),
    ] {
        o.define(&format!("__HYPERVISOR_{name}"), v);
    }
    o.define("NR_hypercalls", hypercall::MAX);

    o.section("Errno values (the call returns the negation)");
    for e in Errno::ALL {
        o.define(&format!("XEN_{}", e.name()), e.code());
    }

    o.section("xen_version");
    for (name, v) in [
        ("version", xen_version::VERSION),
        ("extraversion", xen_version::EXTRAVERSION),
        ("compile_info", xen_version::COMPILE_INFO),
        ("capabilities", xen_version::CAPABILITIES),
        ("changeset", xen_version::CHANGESET),
        ("platform_parameters", xen_version::PLATFORM_PARAMETERS),
        ("get_features", xen_version::GET_FEATURES),
        ("pagesize", xen_version::PAGESIZE),
        ("guest_handle", xen_version::GUEST_HANDLE),
        ("commandline", xen_version::COMMANDLINE),
        ("build_id", xen_version::BUILD_ID),
    ] {
        o.define(&format!("XENVER_{name}"), v);
    }

    o.section("XENFEAT_* bits (submap 0)");
    for (name, v) in [
        ("writable_page_tables", features::WRITABLE_PAGE_TABLES),
        (
            "writable_descriptor_tables",
            features::WRITABLE_DESCRIPTOR_TABLES,
        ),
        ("auto_translated_physmap", features::AUTO_TRANSLATED_PHYSMAP),
        ("supervisor_mode_kernel", features::SUPERVISOR_MODE_KERNEL),
        ("pae_pgdir_above_4gb", features::PAE_PGDIR_ABOVE_4GB),
        (
            "mmu_pt_update_preserve_ad",
            features::MMU_PT_UPDATE_PRESERVE_AD,
        ),
        ("highmem_assist", features::HIGHMEM_ASSIST),
        ("gnttab_map_avail_bits", features::GNTTAB_MAP_AVAIL_BITS),
        ("hvm_callback_vector", features::HVM_CALLBACK_VECTOR),
        ("hvm_safe_pvclock", features::HVM_SAFE_PVCLOCK),
        ("hvm_pirqs", features::HVM_PIRQS),
        ("dom0", features::DOM0),
        ("grant_map_identity", features::GRANT_MAP_IDENTITY),
        (
            "memory_op_vnode_supported",
            features::MEMORY_OP_VNODE_SUPPORTED,
        ),
        ("ARM_SMCCC_supported", features::ARM_SMCCC_SUPPORTED),
        ("linux_rsdp_unrestricted", features::LINUX_RSDP_UNRESTRICTED),
        ("not_direct_mapped", features::NOT_DIRECT_MAPPED),
        ("direct_mapped", features::DIRECT_MAPPED),
        ("runstate_phys_area", features::RUNSTATE_PHYS_AREA),
        ("vcpu_time_phys_area", features::VCPU_TIME_PHYS_AREA),
    ] {
        o.define(&format!("XENFEAT_{name}"), v);
    }
    o.define("XENFEAT_NR_SUBMAPS", features::NR_SUBMAPS);

    o.section("console_io");
    o.define("CONSOLEIO_write", console_io::WRITE);
    o.define("CONSOLEIO_read", console_io::READ);

    o.section("sched_op");
    for (name, v) in [
        ("yield", sched_op::YIELD),
        ("block", sched_op::BLOCK),
        ("shutdown", sched_op::SHUTDOWN),
        ("poll", sched_op::POLL),
        ("remote_shutdown", sched_op::REMOTE_SHUTDOWN),
        ("shutdown_code", sched_op::SHUTDOWN_CODE),
        ("watchdog", sched_op::WATCHDOG),
        ("pin_override", sched_op::PIN_OVERRIDE),
    ] {
        o.define(&format!("SCHEDOP_{name}"), v);
    }
    for r in 0..=sched_op::SHUTDOWN_MAX {
        let reason = sched_op::ShutdownReason::from_u32(r).unwrap();
        let name = match reason {
            sched_op::ShutdownReason::Poweroff => "poweroff",
            sched_op::ShutdownReason::Reboot => "reboot",
            sched_op::ShutdownReason::Suspend => "suspend",
            sched_op::ShutdownReason::Crash => "crash",
            sched_op::ShutdownReason::Watchdog => "watchdog",
            sched_op::ShutdownReason::SoftReset => "soft_reset",
        };
        o.define(&format!("SHUTDOWN_{name}"), reason as u32);
    }
    o.define("SHUTDOWN_MAX", sched_op::SHUTDOWN_MAX);

    o.section("vcpu_op");
    for (name, v) in [
        ("initialise", vcpu_op::INITIALISE),
        ("up", vcpu_op::UP),
        ("down", vcpu_op::DOWN),
        ("is_up", vcpu_op::IS_UP),
        ("get_runstate_info", vcpu_op::GET_RUNSTATE_INFO),
        (
            "register_runstate_memory_area",
            vcpu_op::REGISTER_RUNSTATE_MEMORY_AREA,
        ),
        ("set_periodic_timer", vcpu_op::SET_PERIODIC_TIMER),
        ("stop_periodic_timer", vcpu_op::STOP_PERIODIC_TIMER),
        ("set_singleshot_timer", vcpu_op::SET_SINGLESHOT_TIMER),
        ("stop_singleshot_timer", vcpu_op::STOP_SINGLESHOT_TIMER),
        ("register_vcpu_info", vcpu_op::REGISTER_VCPU_INFO),
        ("send_nmi", vcpu_op::SEND_NMI),
        ("get_physid", vcpu_op::GET_PHYSID),
        (
            "register_vcpu_time_memory_area",
            vcpu_op::REGISTER_VCPU_TIME_MEMORY_AREA,
        ),
        (
            "register_runstate_phys_area",
            vcpu_op::REGISTER_RUNSTATE_PHYS_AREA,
        ),
        (
            "register_vcpu_time_phys_area",
            vcpu_op::REGISTER_VCPU_TIME_PHYS_AREA,
        ),
    ] {
        o.define(&format!("VCPUOP_{name}"), v);
    }
    o.define("VCPU_SSHOTTMR_future", vcpu_op::SSHOTTMR_FUTURE);
    o.define("RUNSTATE_running", vcpu_op::RUNSTATE_RUNNING);
    o.define("RUNSTATE_runnable", vcpu_op::RUNSTATE_RUNNABLE);
    o.define("RUNSTATE_blocked", vcpu_op::RUNSTATE_BLOCKED);
    o.define("RUNSTATE_offline", vcpu_op::RUNSTATE_OFFLINE);
    o.define(
        "XEN_RUNSTATE_UPDATE",
        format!("0x{:X}ULL", vcpu_op::RUNSTATE_UPDATE),
    );

    o.section("memory_op");
    o.define("MEMOP_EXTENT_SHIFT", memory_op::MEMOP_EXTENT_SHIFT);
    o.hex("MEMOP_CMD_MASK", memory_op::MEMOP_CMD_MASK);
    for (name, v) in [
        ("increase_reservation", memory_op::INCREASE_RESERVATION),
        ("decrease_reservation", memory_op::DECREASE_RESERVATION),
        ("maximum_ram_page", memory_op::MAXIMUM_RAM_PAGE),
        ("current_reservation", memory_op::CURRENT_RESERVATION),
        ("maximum_reservation", memory_op::MAXIMUM_RESERVATION),
        ("machphys_mfn_list", memory_op::MACHPHYS_MFN_LIST),
        ("populate_physmap", memory_op::POPULATE_PHYSMAP),
        ("add_to_physmap", memory_op::ADD_TO_PHYSMAP),
        ("exchange", memory_op::EXCHANGE),
        ("maximum_gpfn", memory_op::MAXIMUM_GPFN),
        ("remove_from_physmap", memory_op::REMOVE_FROM_PHYSMAP),
        ("add_to_physmap_batch", memory_op::ADD_TO_PHYSMAP_BATCH),
        ("claim_pages", memory_op::CLAIM_PAGES),
        ("get_vnumainfo", memory_op::GET_VNUMAINFO),
        (
            "reserved_device_memory_map",
            memory_op::RESERVED_DEVICE_MEMORY_MAP,
        ),
        ("acquire_resource", memory_op::ACQUIRE_RESOURCE),
    ] {
        o.define(&format!("XENMEM_{name}"), v);
    }
    for (name, v) in [
        ("shared_info", memory_op::XENMAPSPACE_SHARED_INFO),
        ("grant_table", memory_op::XENMAPSPACE_GRANT_TABLE),
        ("gmfn", memory_op::XENMAPSPACE_GMFN),
        ("gmfn_range", memory_op::XENMAPSPACE_GMFN_RANGE),
        ("gmfn_foreign", memory_op::XENMAPSPACE_GMFN_FOREIGN),
        ("dev_mmio", memory_op::XENMAPSPACE_DEV_MMIO),
    ] {
        o.define(&format!("XENMAPSPACE_{name}"), v);
    }
    o.hex(
        "XENMAPIDX_grant_table_status",
        memory_op::XENMAPIDX_GRANT_TABLE_STATUS,
    );

    o.section("event_channel_op");
    {
        use hypercall_abi::event_channel_op as e;
        for (name, v) in [
            ("bind_interdomain", e::BIND_INTERDOMAIN),
            ("bind_virq", e::BIND_VIRQ),
            ("bind_pirq", e::BIND_PIRQ),
            ("close", e::CLOSE),
            ("send", e::SEND),
            ("status", e::STATUS),
            ("alloc_unbound", e::ALLOC_UNBOUND),
            ("bind_ipi", e::BIND_IPI),
            ("bind_vcpu", e::BIND_VCPU),
            ("unmask", e::UNMASK),
            ("reset", e::RESET),
            ("init_control", e::INIT_CONTROL),
            ("expand_array", e::EXPAND_ARRAY),
            ("set_priority", e::SET_PRIORITY),
            ("reset_cont", e::RESET_CONT),
        ] {
            o.define(&format!("EVTCHNOP_{name}"), v);
        }
        for (name, v) in [
            ("closed", e::STAT_CLOSED),
            ("unbound", e::STAT_UNBOUND),
            ("interdomain", e::STAT_INTERDOMAIN),
            ("pirq", e::STAT_PIRQ),
            ("virq", e::STAT_VIRQ),
            ("ipi", e::STAT_IPI),
        ] {
            o.define(&format!("EVTCHNSTAT_{name}"), v);
        }
        o.define("VIRQ_TIMER", e::VIRQ_TIMER);
        o.define("VIRQ_DEBUG", e::VIRQ_DEBUG);
        o.define("VIRQ_CONSOLE", e::VIRQ_CONSOLE);
        o.define("VIRQ_DOM_EXC", e::VIRQ_DOM_EXC);
        o.define("NR_VIRQS", e::NR_VIRQS);
        o.define("EVTCHN_2L_NR_CHANNELS", evtchn2l::NR_PORTS);
    }

    o.section("grant_table_op");
    {
        use hypercall_abi::grant_table_op as g;
        for (name, v) in [
            ("map_grant_ref", g::MAP_GRANT_REF),
            ("unmap_grant_ref", g::UNMAP_GRANT_REF),
            ("setup_table", g::SETUP_TABLE),
            ("dump_table", g::DUMP_TABLE),
            ("transfer", g::TRANSFER),
            ("copy", g::COPY),
            ("query_size", g::QUERY_SIZE),
            ("unmap_and_replace", g::UNMAP_AND_REPLACE),
            ("set_version", g::SET_VERSION),
            ("get_status_frames", g::GET_STATUS_FRAMES),
            ("get_version", g::GET_VERSION),
            ("swap_grant_ref", g::SWAP_GRANT_REF),
            ("cache_flush", g::CACHE_FLUSH),
        ] {
            o.define(&format!("GNTTABOP_{name}"), v);
        }
        for (name, v) in [
            ("okay", g::GNTST_OKAY),
            ("general_error", g::GNTST_GENERAL_ERROR),
            ("bad_domain", g::GNTST_BAD_DOMAIN),
            ("bad_gntref", g::GNTST_BAD_GNTREF),
            ("bad_handle", g::GNTST_BAD_HANDLE),
            ("bad_virt_addr", g::GNTST_BAD_VIRT_ADDR),
            ("bad_dev_addr", g::GNTST_BAD_DEV_ADDR),
            ("no_device_space", g::GNTST_NO_DEVICE_SPACE),
            ("permission_denied", g::GNTST_PERMISSION_DENIED),
            ("bad_page", g::GNTST_BAD_PAGE),
            ("bad_copy_arg", g::GNTST_BAD_COPY_ARG),
            ("address_too_big", g::GNTST_ADDRESS_TOO_BIG),
            ("eagain", g::GNTST_EAGAIN),
            ("no_space", g::GNTST_NO_SPACE),
        ] {
            o.signed(&format!("GNTST_{name}"), v.into());
        }
        for (name, v) in [
            ("device_map", g::GNTMAP_DEVICE_MAP),
            ("host_map", g::GNTMAP_HOST_MAP),
            ("readonly", g::GNTMAP_READONLY),
            ("application_map", g::GNTMAP_APPLICATION_MAP),
            ("contains_pte", g::GNTMAP_CONTAINS_PTE),
        ] {
            o.hex(&format!("GNTMAP_{name}"), v.into());
        }
        o.hex("GNTCOPY_source_gref", g::GNTCOPY_SOURCE_GREF.into());
        o.hex("GNTCOPY_dest_gref", g::GNTCOPY_DEST_GREF.into());
    }

    o.section("Grant entry flags");
    for (name, v) in [
        ("invalid", shared::GTF_INVALID),
        ("permit_access", shared::GTF_PERMIT_ACCESS),
        ("accept_transfer", shared::GTF_ACCEPT_TRANSFER),
        ("transitive", shared::GTF_TRANSITIVE),
        ("type_mask", shared::GTF_TYPE_MASK),
        ("readonly", shared::GTF_READONLY),
        ("reading", shared::GTF_READING),
        ("writing", shared::GTF_WRITING),
        ("PWT", shared::GTF_PWT),
        ("PCD", shared::GTF_PCD),
        ("PAT", shared::GTF_PAT),
        ("sub_page", shared::GTF_SUB_PAGE),
    ] {
        o.hex(&format!("GTF_{name}"), v.into());
    }
    o.define(
        "GNTTAB_NR_RESERVED_ENTRIES",
        shared::GNTTAB_NR_RESERVED_ENTRIES,
    );
    o.define("GNTTAB_RESERVED_CONSOLE", shared::GNTTAB_RESERVED_CONSOLE);
    o.define("GNTTAB_RESERVED_XENSTORE", shared::GNTTAB_RESERVED_XENSTORE);

    o.section("hvm_op");
    o.define("HVMOP_set_param", hvm_op::SET_PARAM);
    o.define("HVMOP_get_param", hvm_op::GET_PARAM);
    o.define(
        "HVMOP_guest_request_vm_event",
        hvm_op::GUEST_REQUEST_VM_EVENT,
    );
    o.define("HVM_PARAM_CALLBACK_IRQ", hvm_op::PARAM_CALLBACK_IRQ);
    o.define("HVM_PARAM_STORE_PFN", hvm_op::PARAM_STORE_PFN);
    o.define("HVM_PARAM_STORE_EVTCHN", hvm_op::PARAM_STORE_EVTCHN);
    o.define("HVM_PARAM_CONSOLE_PFN", hvm_op::PARAM_CONSOLE_PFN);
    o.define("HVM_PARAM_CONSOLE_EVTCHN", hvm_op::PARAM_CONSOLE_EVTCHN);
    o.define("HVM_NR_PARAMS", hvm_op::NR_PARAMS);
    o.define("HVM_PARAM_CALLBACK_TYPE_PPI", hvm_op::CALLBACK_TYPE_PPI);

    o.section("vm_assist");
    o.define("VMASST_CMD_enable", vm_assist::CMD_ENABLE);
    o.define("VMASST_CMD_disable", vm_assist::CMD_DISABLE);
    o.define(
        "VMASST_TYPE_runstate_update_flag",
        vm_assist::TYPE_RUNSTATE_UPDATE_FLAG,
    );

    o.section("physdev_op and platform_op (answered -ENOSYS)");
    o.define("PHYSDEVOP_pci_device_add", physdev_op::PCI_DEVICE_ADD);
    o.define("PHYSDEVOP_pci_device_remove", physdev_op::PCI_DEVICE_REMOVE);
    o.define("XENPF_settime64", platform_op::SETTIME64);
    o.hex(
        "XENPF_INTERFACE_VERSION",
        platform_op::INTERFACE_VERSION.into(),
    );

    o.section("Domain ids and shared memory");
    for (name, v) in [
        ("FIRST_RESERVED", shared::DOMID_FIRST_RESERVED),
        ("SELF", shared::DOMID_SELF),
        ("IO", shared::DOMID_IO),
        ("XEN", shared::DOMID_XEN),
        ("COW", shared::DOMID_COW),
        ("INVALID", shared::DOMID_INVALID),
        ("IDLE", shared::DOMID_IDLE),
        ("MASK", shared::DOMID_MASK),
    ] {
        o.hex(&format!("DOMID_{name}"), v.into());
    }
    o.define("XEN_LEGACY_MAX_VCPUS", shared::LEGACY_MAX_VCPUS);
    o.define("GUEST_EVTCHN_PPI", shared::GUEST_EVTCHN_PPI);
    o.define("XENCONSOLE_CONNECTED", shared::XENCONSOLE_CONNECTED);
    o.define("XENCONSOLE_DISCONNECTED", shared::XENCONSOLE_DISCONNECTED);

    o.section("PSCI / SMCCC over hvc #0");
    for (name, v) in [
        ("PSCI_VERSION", psci::PSCI_VERSION),
        ("PSCI_CPU_SUSPEND_32", psci::CPU_SUSPEND_32),
        ("PSCI_CPU_SUSPEND_64", psci::CPU_SUSPEND_64),
        ("PSCI_CPU_OFF", psci::CPU_OFF),
        ("PSCI_CPU_ON_32", psci::CPU_ON_32),
        ("PSCI_CPU_ON_64", psci::CPU_ON_64),
        ("PSCI_AFFINITY_INFO_32", psci::AFFINITY_INFO_32),
        ("PSCI_AFFINITY_INFO_64", psci::AFFINITY_INFO_64),
        ("PSCI_MIGRATE_INFO_TYPE", psci::MIGRATE_INFO_TYPE),
        ("PSCI_SYSTEM_OFF", psci::SYSTEM_OFF),
        ("PSCI_SYSTEM_RESET", psci::SYSTEM_RESET),
        ("PSCI_FEATURES", psci::PSCI_FEATURES),
        ("PSCI_SYSTEM_SUSPEND_64", psci::SYSTEM_SUSPEND_64),
        ("PSCI_SYSTEM_RESET2_64", psci::SYSTEM_RESET2_64),
        ("SMCCC_VERSION", psci::SMCCC_VERSION),
        ("SMCCC_ARCH_FEATURES", psci::SMCCC_ARCH_FEATURES),
        ("SMCCC_ARCH_WORKAROUND_1", psci::SMCCC_ARCH_WORKAROUND_1),
        ("SMCCC_ARCH_WORKAROUND_2", psci::SMCCC_ARCH_WORKAROUND_2),
        ("SMCCC_VENDOR_HYP_CALL_UID", psci::VENDOR_HYP_CALL_UID),
        ("PSCI_VERSION_1_1", psci::PSCI_VERSION_1_1),
        ("SMCCC_VERSION_1_2", psci::SMCCC_VERSION_1_2),
    ] {
        o.hex(name, v.into());
    }
    for (name, v) in [
        ("SUCCESS", psci::SUCCESS),
        ("NOT_SUPPORTED", psci::NOT_SUPPORTED),
        ("INVALID_PARAMETERS", psci::INVALID_PARAMETERS),
        ("DENIED", psci::DENIED),
        ("ALREADY_ON", psci::ALREADY_ON),
        ("ON_PENDING", psci::ON_PENDING),
        ("INTERNAL_FAILURE", psci::INTERNAL_FAILURE),
        ("NOT_PRESENT", psci::NOT_PRESENT),
        ("DISABLED", psci::DISABLED),
        ("INVALID_ADDRESS", psci::INVALID_ADDRESS),
    ] {
        o.signed(&format!("PSCI_RET_{name}"), v.into());
    }
    o.define(
        "PSCI_MIGRATE_INFO_TYPE_TOS_MP",
        psci::MIGRATE_INFO_TYPE_TOS_MP,
    );

    o.section("Argument and shared structures");
    for s in structs() {
        o.strukt(&s);
    }

    o.line("");
    o.line("#endif /* HYPERCALL_ABI_H */");
    o.0
}

fn header_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("include/hypercall_abi.h")
}

#[test]
fn c_header_is_up_to_date() {
    let expected = render();
    let path = header_path();
    if std::env::var_os("UPDATE_C_HEADER").is_some() {
        std::fs::write(&path, &expected).expect("write include/hypercall_abi.h");
        return;
    }
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "{} is out of date with the crate; rerun with \
         `UPDATE_C_HEADER=1 cargo test -p hypercall-abi --test c_header` and commit the result",
        path.display()
    );
}

#[test]
fn struct_fields_are_listed_in_offset_order_and_fit() {
    for s in structs() {
        let mut last = None;
        for (decl, offset) in &s.fields {
            assert!(*offset < s.size, "{}.{decl} outside the struct", s.name);
            if let Some(prev) = last {
                assert!(*offset > prev, "{}.{decl} out of order", s.name);
            }
            last = Some(*offset);
        }
    }
}

/// Compiles the header with the host C compiler (LP64 little-endian, the same layout
/// rules as AAPCS64 for these types), so its `_Static_assert`s check C against Rust.
/// Skipped when no `cc` is installed.
#[test]
fn c_header_compiles() {
    let dir = std::env::temp_dir().join(format!("hypercall-abi-c-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("check.c");
    std::fs::write(
        &src,
        "#include \"hypercall_abi.h\"\nint main(void) { return 0; }\n",
    )
    .unwrap();
    let include = header_path().parent().unwrap().to_path_buf();
    let output = std::process::Command::new("cc")
        .args(["-std=c11", "-Wall", "-Werror", "-fsyntax-only", "-I"])
        .arg(&include)
        .arg(&src)
        .output();
    let _ = std::fs::remove_dir_all(&dir);
    match output {
        Err(_) => eprintln!("no C compiler; skipping"),
        Ok(out) => assert!(
            out.status.success(),
            "the C header does not compile:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}
