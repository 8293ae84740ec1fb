//! The device tree the hypervisor writes for each domain: what a Xen guest on Arm expects
//! (`/hypervisor`, `psci`, `timer`, the GIC, `chosen`, memory and CPUs), at the guest IPA
//! layout of `docs/ARCHITECTURE.md` ([`layout`]).

use core::fmt::Write;

use crate::addr::{AddrRange, IntermediatePhysAddr};
use crate::dt::{DtError, FdtWriter};

/// The guest physical (IPA) layout, Xen's (`xen/include/public/arch-arm.h`).
pub mod layout {
    /// vGIC distributor (v2 and v3).
    pub const GICD_BASE: u64 = 0x0300_1000;
    /// Size of the GICv2 distributor frame.
    pub const GICD_SIZE_V2: u64 = 0x1000;
    /// Size of the GICv3 distributor frame.
    pub const GICD_SIZE_V3: u64 = 0x1_0000;
    /// vGIC CPU interface (v2; the hardware GICV frame is mapped here).
    pub const GICC_BASE: u64 = 0x0300_2000;
    /// Size of the GICv2 CPU interface.
    pub const GICC_SIZE: u64 = 0x2000;
    /// First vGIC redistributor (v3).
    pub const GICR_BASE: u64 = 0x0302_0000;
    /// Size of one vCPU's redistributor (RD_base + SGI_base frames).
    pub const GICR_SIZE_PER_VCPU: u64 = 0x2_0000;
    /// The grant-table hole (`/hypervisor` `reg`).
    pub const GNTTAB_BASE: u64 = 0x3800_0000;
    /// Size of the grant-table hole.
    pub const GNTTAB_SIZE: u64 = 0x0100_0000;
    /// Magic pages (console ring, xenstore).
    pub const MAGIC_BASE: u64 = 0x3900_0000;
    /// Size of the magic-page area.
    pub const MAGIC_SIZE: u64 = 0x0100_0000;
    /// Start of guest RAM.
    pub const RAM_BASE: u64 = 0x4000_0000;
    /// Offset of the kernel image from the start of RAM (plus the image's `text_offset`).
    pub const KERNEL_OFFSET: u64 = 0x20_0000;
    /// The device tree sits this many bytes below the end of RAM.
    pub const DT_OFFSET_FROM_END: u64 = 0x20_0000;
    /// The event-channel upcall interrupt (PPI 15).
    pub const EVENT_CHANNEL_INTID: u32 = 31;
    /// Timer INTIDs: secure physical, non-secure physical, virtual, hypervisor.
    pub const TIMER_INTIDS: [u32; 4] = [29, 30, 27, 26];
}

/// The phandle of the guest's GIC node.
pub const GIC_PHANDLE: u32 = 1;
/// Most vCPUs a domain device tree describes.
pub const MAX_VCPUS: u32 = 8;
/// `compatible` of the root node.
pub const ROOT_COMPATIBLE: [&str; 2] = ["xen,xenvm-4.17", "xen,xenvm"];
/// `compatible` of the `/hypervisor` node, versioned string first.
pub const HYPERVISOR_COMPATIBLE: [&str; 2] = ["xen,xen-4.17", "xen,xen"];
/// PSCI `CPU_OFF` function ID.
pub const PSCI_CPU_OFF: u32 = 0x8400_0002;
/// PSCI `CPU_ON` (64-bit) function ID.
pub const PSCI_CPU_ON: u32 = 0xC400_0003;

/// First GIC cell of a PPI interrupt specifier.
const GIC_PPI: u32 = 1;
/// Third GIC cell: CPU mask 0xf, level-triggered active-low (as Xen writes it).
const PPI_FLAGS: u32 = 0xf08;
/// INTID of PPI 0.
const PPI_BASE: u32 = 16;

/// The virtual GIC a domain sees.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GuestGic {
    /// GICv2: a distributor and a CPU interface.
    V2 {
        /// The distributor frame.
        distributor: AddrRange<IntermediatePhysAddr>,
        /// The CPU interface frame.
        cpu_interface: AddrRange<IntermediatePhysAddr>,
    },
    /// GICv3: a distributor and one contiguous redistributor region.
    V3 {
        /// The distributor frame.
        distributor: AddrRange<IntermediatePhysAddr>,
        /// All vCPUs' redistributors.
        redistributors: AddrRange<IntermediatePhysAddr>,
    },
}

impl GuestGic {
    /// A GICv2 at the standard [`layout`].
    pub const fn standard_v2() -> GuestGic {
        GuestGic::V2 {
            distributor: AddrRange {
                start: IntermediatePhysAddr::new(layout::GICD_BASE),
                size: layout::GICD_SIZE_V2,
            },
            cpu_interface: AddrRange {
                start: IntermediatePhysAddr::new(layout::GICC_BASE),
                size: layout::GICC_SIZE,
            },
        }
    }

    /// A GICv3 at the standard [`layout`], with redistributors for `vcpu_count` vCPUs.
    pub const fn standard_v3(vcpu_count: u32) -> GuestGic {
        GuestGic::V3 {
            distributor: AddrRange {
                start: IntermediatePhysAddr::new(layout::GICD_BASE),
                size: layout::GICD_SIZE_V3,
            },
            redistributors: AddrRange {
                start: IntermediatePhysAddr::new(layout::GICR_BASE),
                size: layout::GICR_SIZE_PER_VCPU * vcpu_count as u64,
            },
        }
    }

    /// The distributor frame.
    pub fn distributor(&self) -> AddrRange<IntermediatePhysAddr> {
        match self {
            GuestGic::V2 { distributor, .. } | GuestGic::V3 { distributor, .. } => *distributor,
        }
    }
}

/// Everything the domain's device tree says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainDtParams<'a> {
    /// Guest RAM.
    pub memory: AddrRange<IntermediatePhysAddr>,
    /// Number of vCPUs (1..=[`MAX_VCPUS`]); `cpu@N` nodes are listed in vCPU order.
    pub vcpu_count: u32,
    /// The virtual GIC.
    pub gic: GuestGic,
    /// `/chosen/bootargs`.
    pub bootargs: &'a str,
    /// The initrd, if any (`/chosen/linux,initrd-start|end`).
    pub initrd: Option<AddrRange<IntermediatePhysAddr>>,
    /// The grant-table hole (`/hypervisor` `reg`).
    pub grant_table: AddrRange<IntermediatePhysAddr>,
    /// INTID of the event-channel upcall (a PPI, 16..=31; normally 31).
    pub event_channel_ppi: u32,
    /// Timer INTIDs (PPIs): secure physical, non-secure physical, virtual, hypervisor
    /// (normally 29, 30, 27, 26).
    pub timer_ppis: [u32; 4],
    /// Event channels the hypervisor pre-connected for this domain, as
    /// `(local port, remote domain id)`, in the system configuration's order: written to
    /// `/hypervisor` as `hyp,channels` (left out when empty).
    pub channels: &'a [(u32, u32)],
    /// The remote domains' names, same order: `hyp,channel-peers`.
    pub channel_peers: &'a [&'a str],
    /// How many times the hypervisor has restarted this domain after a crash (`on_crash =
    /// "restart"`): `/hypervisor` `hyp,restarts`, 0 on the first boot.
    pub restarts: u32,
}

impl<'a> DomainDtParams<'a> {
    /// Parameters with the standard layout: RAM at [`layout::RAM_BASE`], the standard GIC
    /// of the given version (2 or 3; anything else means 3), grant table, event PPI and
    /// timer INTIDs.
    pub const fn standard(
        memory_size: u64,
        vcpu_count: u32,
        gic_version: u32,
        bootargs: &'a str,
        initrd: Option<AddrRange<IntermediatePhysAddr>>,
    ) -> DomainDtParams<'a> {
        DomainDtParams {
            memory: AddrRange {
                start: IntermediatePhysAddr::new(layout::RAM_BASE),
                size: memory_size,
            },
            vcpu_count,
            gic: if gic_version == 2 {
                GuestGic::standard_v2()
            } else {
                GuestGic::standard_v3(vcpu_count)
            },
            bootargs,
            initrd,
            grant_table: AddrRange {
                start: IntermediatePhysAddr::new(layout::GNTTAB_BASE),
                size: layout::GNTTAB_SIZE,
            },
            event_channel_ppi: layout::EVENT_CHANNEL_INTID,
            timer_ppis: layout::TIMER_INTIDS,
            channels: &[],
            channel_peers: &[],
            restarts: 0,
        }
    }
}

/// A node name `base@<hex address>` in a fixed buffer.
type NodeName = heapless::String<48>;

fn unit_name(base: &str, address: u64) -> Result<NodeName, DtError> {
    let mut name = NodeName::new();
    write!(name, "{base}@{address:x}").map_err(|_| DtError::NoSpace)?;
    Ok(name)
}

/// The PPI number of a PPI INTID (16..=31).
fn ppi_number(intid: u32) -> Result<u32, DtError> {
    if (PPI_BASE..PPI_BASE + 16).contains(&intid) {
        Ok(intid - PPI_BASE)
    } else {
        Err(DtError::BadParameter)
    }
}

fn high(value: u64) -> u32 {
    (value >> 32) as u32
}

fn low(value: u64) -> u32 {
    value as u32
}

/// `reg` cells of one range with `#address-cells = #size-cells = 2`.
fn range_cells(range: &AddrRange<IntermediatePhysAddr>) -> [u32; 4] {
    let start = range.start.raw();
    [high(start), low(start), high(range.size), low(range.size)]
}

/// Writes the domain's device tree into `buffer`; returns its size.
pub fn write_domain_dt(buffer: &mut [u8], params: &DomainDtParams) -> Result<usize, DtError> {
    if params.vcpu_count == 0 || params.vcpu_count > MAX_VCPUS || params.memory.size == 0 {
        return Err(DtError::BadParameter);
    }
    if params.memory.end().is_none() {
        return Err(DtError::BadParameter);
    }
    let event_ppi = ppi_number(params.event_channel_ppi)?;
    let mut timer_ppis = [0u32; 4];
    for (ppi, intid) in timer_ppis.iter_mut().zip(params.timer_ppis.iter()) {
        *ppi = ppi_number(*intid)?;
    }

    let mut writer = FdtWriter::new(buffer)?;
    writer.begin_node("")?;
    writer.property_u32("#address-cells", 2)?;
    writer.property_u32("#size-cells", 2)?;
    writer.property_string_list("compatible", &ROOT_COMPATIBLE)?;
    writer.property_str("model", "XENVM-4.17")?;
    writer.property_u32("interrupt-parent", GIC_PHANDLE)?;

    writer.begin_node("chosen")?;
    writer.property_str("bootargs", params.bootargs)?;
    if let Some(initrd) = params.initrd {
        let end = initrd.end().ok_or(DtError::BadParameter)?;
        writer.property_u64("linux,initrd-start", initrd.start.raw())?;
        writer.property_u64("linux,initrd-end", end.raw())?;
    }
    writer.end_node()?;

    writer.begin_node(&unit_name("memory", params.memory.start.raw())?)?;
    writer.property_str("device_type", "memory")?;
    writer.property_cells("reg", &range_cells(&params.memory))?;
    writer.end_node()?;

    writer.begin_node("cpus")?;
    writer.property_u32("#address-cells", 1)?;
    writer.property_u32("#size-cells", 0)?;
    for vcpu in 0..params.vcpu_count {
        writer.begin_node(&unit_name("cpu", u64::from(vcpu))?)?;
        writer.property_str("device_type", "cpu")?;
        writer.property_str("compatible", "arm,armv8")?;
        writer.property_u32("reg", vcpu)?;
        writer.property_str("enable-method", "psci")?;
        writer.end_node()?;
    }
    writer.end_node()?;

    writer.begin_node("psci")?;
    writer.property_string_list("compatible", &["arm,psci-1.0", "arm,psci-0.2", "arm,psci"])?;
    writer.property_str("method", "hvc")?;
    writer.property_u32("cpu_off", PSCI_CPU_OFF)?;
    writer.property_u32("cpu_on", PSCI_CPU_ON)?;
    writer.end_node()?;

    writer.begin_node(&unit_name(
        "interrupt-controller",
        params.gic.distributor().start.raw(),
    )?)?;
    match &params.gic {
        GuestGic::V2 {
            distributor,
            cpu_interface,
        } => {
            writer.property_string_list("compatible", &["arm,gic-400", "arm,cortex-a15-gic"])?;
            let [a, b, c, d] = range_cells(distributor);
            let [e, f, g, h] = range_cells(cpu_interface);
            writer.property_cells("reg", &[a, b, c, d, e, f, g, h])?;
        }
        GuestGic::V3 {
            distributor,
            redistributors,
        } => {
            writer.property_str("compatible", "arm,gic-v3")?;
            let [a, b, c, d] = range_cells(distributor);
            let [e, f, g, h] = range_cells(redistributors);
            writer.property_cells("reg", &[a, b, c, d, e, f, g, h])?;
            writer.property_u32("#redistributor-regions", 1)?;
        }
    }
    writer.property_u32("#interrupt-cells", 3)?;
    writer.property_empty("interrupt-controller")?;
    writer.property_u32("#address-cells", 0)?;
    writer.property_u32("phandle", GIC_PHANDLE)?;
    writer.end_node()?;

    writer.begin_node("timer")?;
    writer.property_str("compatible", "arm,armv8-timer")?;
    let [secure, physical, virtual_timer, hypervisor] = timer_ppis;
    writer.property_cells(
        "interrupts",
        &[
            GIC_PPI,
            secure,
            PPI_FLAGS,
            GIC_PPI,
            physical,
            PPI_FLAGS,
            GIC_PPI,
            virtual_timer,
            PPI_FLAGS,
            GIC_PPI,
            hypervisor,
            PPI_FLAGS,
        ],
    )?;
    writer.property_empty("always-on")?;
    writer.end_node()?;

    writer.begin_node("hypervisor")?;
    writer.property_string_list("compatible", &HYPERVISOR_COMPATIBLE)?;
    writer.property_cells("reg", &range_cells(&params.grant_table))?;
    writer.property_cells("interrupts", &[GIC_PPI, event_ppi, PPI_FLAGS])?;
    writer.property_u32("interrupt-parent", GIC_PHANDLE)?;
    if !params.channels.is_empty() {
        let mut cells = [0u32; 2 * MAX_CHANNEL_CELLS];
        for (slot, (port, remote)) in cells.chunks_exact_mut(2).zip(params.channels) {
            slot.copy_from_slice(&[*port, *remote]);
        }
        let used = cells
            .get(..2 * params.channels.len())
            .ok_or(DtError::NoSpace)?;
        writer.property_cells("hyp,channels", used)?;
        writer.property_string_list("hyp,channel-peers", params.channel_peers)?;
    }
    writer.property_u32("hyp,restarts", params.restarts)?;
    writer.end_node()?;

    writer.end_node()?;
    writer.finish()
}

/// Most pre-connected channels one domain's device tree describes.
pub const MAX_CHANNEL_CELLS: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dt::writer::tests::dtc_decompile_with_warnings;
    use crate::dt::Fdt;

    fn ipa_range(start: u64, size: u64) -> AddrRange<IntermediatePhysAddr> {
        AddrRange {
            start: IntermediatePhysAddr::new(start),
            size,
        }
    }

    fn write(params: &DomainDtParams) -> Vec<u8> {
        let mut buffer = vec![0u8; 8192];
        let size = write_domain_dt(&mut buffer, params).unwrap();
        buffer.truncate(size);
        buffer
    }

    fn cells(node: &crate::dt::Node, name: &str) -> Vec<u32> {
        node.property_cells(name).collect()
    }

    #[test]
    fn gicv3_tree_reads_back() {
        let params = DomainDtParams::standard(
            256 << 20,
            2,
            3,
            "console=hvc0 earlycon=xenboot",
            Some(ipa_range(0x4f00_0000, 0x1234)),
        );
        let tree = write(&params);
        let fdt = Fdt::new(&tree).unwrap();
        let root = fdt.root();
        assert_eq!(root.address_cells(), Some(2));
        assert_eq!(root.size_cells(), Some(2));
        assert_eq!(
            root.property_strings("compatible").collect::<Vec<_>>(),
            ["xen,xenvm-4.17", "xen,xenvm"]
        );
        assert!(root.property_str("model").is_some());
        assert_eq!(root.property_u32("interrupt-parent"), Some(GIC_PHANDLE));

        let chosen = fdt.find_node("/chosen").unwrap();
        assert_eq!(
            chosen.property_str("bootargs"),
            Some("console=hvc0 earlycon=xenboot")
        );
        assert_eq!(chosen.property_u64("linux,initrd-start"), Some(0x4f00_0000));
        assert_eq!(chosen.property_u64("linux,initrd-end"), Some(0x4f00_1234));

        let memory = fdt.find_node("/memory@40000000").unwrap();
        assert_eq!(memory.property_str("device_type"), Some("memory"));
        assert_eq!(
            memory.reg().collect::<Vec<_>>(),
            [(layout::RAM_BASE, 256 << 20)]
        );

        let cpus = fdt.find_node("/cpus").unwrap();
        assert_eq!(cpus.address_cells(), Some(1));
        assert_eq!(cpus.size_cells(), Some(0));
        let cpu_names: Vec<&str> = cpus.children().map(|cpu| cpu.name()).collect();
        assert_eq!(cpu_names, ["cpu@0", "cpu@1"]);
        for (index, cpu) in cpus.children().enumerate() {
            assert_eq!(cpu.property_str("device_type"), Some("cpu"));
            assert!(cpu.is_compatible("arm,armv8"));
            assert_eq!(cpu.property_u32("reg"), Some(index as u32));
            assert_eq!(cpu.reg().collect::<Vec<_>>(), [(index as u64, 0)]);
            assert_eq!(cpu.property_str("enable-method"), Some("psci"));
        }

        let psci = fdt.find_node("/psci").unwrap();
        assert_eq!(
            psci.property_strings("compatible").collect::<Vec<_>>(),
            ["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]
        );
        assert_eq!(psci.property_str("method"), Some("hvc"));
        assert_eq!(psci.property_u32("cpu_off"), Some(0x8400_0002));
        assert_eq!(psci.property_u32("cpu_on"), Some(0xC400_0003));

        let gic = fdt.find_node("/interrupt-controller@3001000").unwrap();
        assert_eq!(fdt.phandle_node(GIC_PHANDLE), Some(gic));
        assert!(gic.is_compatible("arm,gic-v3"));
        assert_eq!(
            gic.reg().collect::<Vec<_>>(),
            [(0x0300_1000, 0x1_0000), (0x0302_0000, 0x4_0000)]
        );
        assert_eq!(gic.property_u32("#redistributor-regions"), Some(1));
        assert_eq!(gic.property_u32("#interrupt-cells"), Some(3));
        assert_eq!(gic.property("interrupt-controller"), Some(&[][..]));
        assert_eq!(gic.property_u32("#address-cells"), Some(0));

        let timer = fdt.find_node("/timer").unwrap();
        assert!(timer.is_compatible("arm,armv8-timer"));
        assert_eq!(
            cells(&timer, "interrupts"),
            [1, 13, 0xf08, 1, 14, 0xf08, 1, 11, 0xf08, 1, 10, 0xf08]
        );
        assert!(timer.has_property("always-on"));
        assert_eq!(fdt.interrupt_parent(&timer), Some(gic));

        let hypervisor = fdt.find_node("/hypervisor").unwrap();
        assert_eq!(hypervisor.name(), "hypervisor");
        assert_eq!(
            hypervisor
                .property_strings("compatible")
                .collect::<Vec<_>>(),
            ["xen,xen-4.17", "xen,xen"]
        );
        assert_eq!(
            hypervisor.reg().collect::<Vec<_>>(),
            [(layout::GNTTAB_BASE, layout::GNTTAB_SIZE)]
        );
        assert_eq!(cells(&hypervisor, "interrupts"), [1, 15, 0xf08]);
        assert_eq!(fdt.interrupt_parent(&hypervisor), Some(gic));

        let top: Vec<&str> = root.children().map(|node| node.name()).collect();
        assert_eq!(
            top,
            [
                "chosen",
                "memory@40000000",
                "cpus",
                "psci",
                "interrupt-controller@3001000",
                "timer",
                "hypervisor"
            ]
        );
    }

    #[test]
    fn gicv2_tree_without_initrd() {
        let params = DomainDtParams::standard(64 << 20, 8, 2, "", None);
        let tree = write(&params);
        let fdt = Fdt::new(&tree).unwrap();
        let gic = fdt.find_node("/interrupt-controller").unwrap();
        assert_eq!(
            gic.property_strings("compatible").collect::<Vec<_>>(),
            ["arm,gic-400", "arm,cortex-a15-gic"]
        );
        assert_eq!(
            gic.reg().collect::<Vec<_>>(),
            [(0x0300_1000, 0x1000), (0x0300_2000, 0x2000)]
        );
        assert!(!gic.has_property("#redistributor-regions"));
        assert_eq!(gic.phandle(), Some(GIC_PHANDLE));
        let chosen = fdt.find_node("/chosen").unwrap();
        assert_eq!(chosen.property_str("bootargs"), Some(""));
        assert!(!chosen.has_property("linux,initrd-start"));
        assert_eq!(fdt.find_node("/cpus").unwrap().children().count(), 8);
        assert!(fdt.find_node("/cpus/cpu@7").is_some());
    }

    #[test]
    fn pre_connected_channels_are_described() {
        let params = DomainDtParams {
            channels: &[(1, 2), (2, 0)],
            channel_peers: &["pong", "control"],
            ..DomainDtParams::standard(64 << 20, 1, 3, "x", None)
        };
        let bytes = write(&params);
        let fdt = Fdt::new(&bytes).unwrap();
        let node = fdt.find_node("/hypervisor").unwrap();
        let cells: Vec<u32> = node.property_cells("hyp,channels").collect();
        assert_eq!(cells, [1, 2, 2, 0]);
        let peers: Vec<&str> = node.property_strings("hyp,channel-peers").collect();
        assert_eq!(peers, ["pong", "control"]);
        assert_eq!(node.property_u32("hyp,restarts"), Some(0));
        let restarted = write(&DomainDtParams {
            restarts: 7,
            ..params
        });
        let fdt = Fdt::new(&restarted).unwrap();
        let node = fdt.find_node("/hypervisor").unwrap();
        assert_eq!(node.property_u32("hyp,restarts"), Some(7));
        // Without channels, neither property appears.
        let bytes = write(&DomainDtParams::standard(64 << 20, 1, 3, "x", None));
        let fdt = Fdt::new(&bytes).unwrap();
        assert!(fdt
            .find_node("/hypervisor")
            .unwrap()
            .property("hyp,channels")
            .is_none());
    }

    #[test]
    fn bad_parameters_and_small_buffers() {
        let good = DomainDtParams::standard(64 << 20, 1, 3, "x", None);
        let mut buffer = vec![0u8; 8192];
        for params in [
            DomainDtParams {
                vcpu_count: 0,
                ..good
            },
            DomainDtParams {
                vcpu_count: 9,
                ..good
            },
            DomainDtParams {
                event_channel_ppi: 32,
                ..good
            },
            DomainDtParams {
                event_channel_ppi: 15,
                ..good
            },
            DomainDtParams {
                timer_ppis: [29, 30, 27, 100],
                ..good
            },
            DomainDtParams {
                memory: ipa_range(layout::RAM_BASE, 0),
                ..good
            },
            DomainDtParams {
                initrd: Some(ipa_range(u64::MAX, 2)),
                ..good
            },
        ] {
            assert_eq!(
                write_domain_dt(&mut buffer, &params),
                Err(DtError::BadParameter)
            );
        }
        let size = write_domain_dt(&mut buffer, &good).unwrap();
        for length in (0..size).step_by(7) {
            let mut small = vec![0u8; length];
            assert_eq!(
                write_domain_dt(&mut small, &good),
                Err(DtError::NoSpace),
                "length {length}"
            );
        }
    }

    #[test]
    fn dtc_accepts_both_trees() {
        for version in [2, 3] {
            let params = DomainDtParams::standard(
                128 << 20,
                4,
                version,
                "console=hvc0",
                Some(ipa_range(0x4700_0000, 0x10_0000)),
            );
            let tree = write(&params);
            let Some((source, warnings)) = dtc_decompile_with_warnings(&tree) else {
                return;
            };
            assert!(source.contains("hypervisor {"));
            // Xen's /hypervisor has `reg` but deliberately no unit address.
            for line in warnings.lines() {
                assert!(
                    line.contains("unit_address_vs_reg") && line.contains("/hypervisor"),
                    "unexpected dtc warning: {line}"
                );
            }
        }
    }
}
