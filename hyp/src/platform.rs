//! The machine the hypervisor runs on, discovered from the device tree the firmware or boot
//! loader passed: RAM, reservations, the console UART, the GIC, the timer interrupts, the
//! CPUs and how to start them. No board constants live here; what a device tree cannot
//! say comes from the `boards` crate (matched on the root `compatible`).
//!
//! Device addresses are translated through every bus's `ranges` (on the Raspberry Pi 4,
//! `/soc` maps VideoCore bus address 0x7e000000 to physical 0xfe000000).

use crate::addr::{AddrRange, PhysAddr, PAGE_SIZE};
use crate::dt::{Fdt, Node};

/// Most RAM ranges recorded.
pub const MAX_RAM_RANGES: usize = 8;
/// Most reserved ranges recorded.
pub const MAX_RESERVED_RANGES: usize = 16;
/// Most CPUs recorded; further CPUs are counted in [`Platform::cpus_ignored`].
pub const MAX_CPUS: usize = 8;
/// Longest `/chosen/bootargs` kept.
pub const BOOTARGS_CAPACITY: usize = 512;

/// INTID of PPI 0.
const PPI_BASE: u32 = 16;
/// INTID of SPI 0.
const SPI_BASE: u32 = 32;
/// Interrupt-specifier type cell of a GIC SPI.
const GIC_SPI: u32 = 0;
/// Interrupt-specifier type cell of a GIC PPI.
const GIC_PPI: u32 = 1;

/// `compatible` strings of the GICv2 implementations understood.
const GIC_V2_COMPATIBLE: [&str; 3] = ["arm,gic-400", "arm,cortex-a15-gic", "arm,cortex-a7-gic"];
/// `compatible` strings of GICv3.
const GIC_V3_COMPATIBLE: [&str; 1] = ["arm,gic-v3"];
/// `compatible` strings of the architected timer.
const TIMER_COMPATIBLE: [&str; 2] = ["arm,armv8-timer", "arm,armv7-timer"];
/// `compatible` strings of a PSCI node.
const PSCI_COMPATIBLE: [&str; 3] = ["arm,psci-1.0", "arm,psci-0.2", "arm,psci"];

/// Why the platform could not be discovered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlatformError {
    /// No memory node with a usable `reg`.
    NoMemory,
    /// More than [`MAX_RAM_RANGES`] RAM ranges.
    TooManyMemoryRanges,
    /// More than [`MAX_RESERVED_RANGES`] reserved ranges.
    TooManyReservations,
    /// No supported, enabled UART.
    NoUart,
    /// No supported, enabled GIC.
    NoGic,
    /// The GIC node lacks a required `reg` entry.
    BadGic,
    /// No architected timer node.
    NoTimer,
    /// The timer's `interrupts` are not four PPIs.
    BadTimer,
    /// No CPU nodes under `/cpus`.
    NoCpus,
    /// A CPU node is malformed (no `reg`, or spin-table without `cpu-release-addr`).
    BadCpu {
        /// Index of the CPU node among `/cpus`' CPU children.
        index: usize,
    },
    /// `linux,initrd-start|end` are malformed or end before they start.
    BadInitrd,
    /// `/chosen/bootargs` is longer than [`BOOTARGS_CAPACITY`].
    BootargsTooLong,
    /// A device address does not translate to a physical address.
    NotTranslatable,
}

impl PlatformError {
    /// A short English description.
    pub fn describe(&self) -> &'static str {
        match self {
            PlatformError::NoMemory => "device tree describes no memory",
            PlatformError::TooManyMemoryRanges => "device tree describes too many RAM ranges",
            PlatformError::TooManyReservations => "too many reserved memory ranges",
            PlatformError::NoUart => "no supported UART in the device tree",
            PlatformError::NoGic => "no supported GIC in the device tree",
            PlatformError::BadGic => "GIC node lacks a required register range",
            PlatformError::NoTimer => "no architected timer in the device tree",
            PlatformError::BadTimer => "timer interrupts are not four PPIs",
            PlatformError::NoCpus => "device tree describes no CPUs",
            PlatformError::BadCpu { .. } => "CPU node is malformed",
            PlatformError::BadInitrd => "initrd location is malformed",
            PlatformError::BootargsTooLong => "bootargs are too long",
            PlatformError::NotTranslatable => "device address does not translate",
        }
    }
}

/// The kind of UART, which decides the driver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UartKind {
    /// Arm PrimeCell PL011 (`arm,pl011`).
    Pl011,
    /// The BCM2835 auxiliary mini UART (`brcm,bcm2835-aux-uart`).
    Bcm2835Aux,
}

/// The console UART.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Uart {
    /// Physical address of its registers.
    pub base: PhysAddr,
    /// Which UART it is.
    pub kind: UartKind,
    /// Its interrupt (INTID), from its `interrupts` property, if it has one.
    pub intid: Option<u32>,
}

/// GIC architecture version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicVersion {
    /// GICv2 (memory-mapped CPU interface).
    V2,
    /// GICv3 (system-register CPU interface, redistributors).
    V3,
}

impl GicVersion {
    /// The architecture version as a number (2 or 3).
    pub fn number(&self) -> u8 {
        match self {
            GicVersion::V2 => 2,
            GicVersion::V3 => 3,
        }
    }
}

/// The interrupt controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gic {
    /// Architecture version.
    pub version: GicVersion,
    /// Distributor (GICD).
    pub distributor: AddrRange<PhysAddr>,
    /// CPU interface (GICC), v2 only.
    pub cpu_interface: Option<AddrRange<PhysAddr>>,
    /// Virtual interface control (GICH, 3rd `reg`), v2 only.
    pub hyp_interface: Option<AddrRange<PhysAddr>>,
    /// Virtual CPU interface (GICV, 4th `reg`), v2 only.
    pub virtual_cpu_interface: Option<AddrRange<PhysAddr>>,
    /// First redistributor region (GICR), v3 only.
    pub redistributors: Option<AddrRange<PhysAddr>>,
    /// INTID of the virtualisation maintenance interrupt, if given.
    pub maintenance_intid: Option<u32>,
}

/// The architected timer's interrupts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timer {
    /// EL2 physical timer INTID.
    pub hyp_intid: u32,
    /// Virtual timer INTID.
    pub virtual_intid: u32,
    /// Non-secure EL1 physical timer INTID.
    pub physical_intid: u32,
}

/// How a secondary CPU is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnableMethod {
    /// PSCI `CPU_ON`.
    Psci,
    /// Write the entry point to `release_address` and send an event.
    SpinTable {
        /// Where the parked CPU polls for its entry point.
        release_address: PhysAddr,
    },
    /// No (known) method: the CPU cannot be started.
    None,
}

/// One physical CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpu {
    /// Its MPIDR affinity value (the node's `reg`).
    pub mpidr: u64,
    /// How to start it.
    pub enable_method: EnableMethod,
}

/// The PSCI conduit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciMethod {
    /// `SMC #0`.
    Smc,
    /// `HVC #0`.
    Hvc,
}

/// The machine, as discovered from its device tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    /// RAM ranges (every memory node's `reg`).
    pub ram: heapless::Vec<AddrRange<PhysAddr>, MAX_RAM_RANGES>,
    /// Memory not to be used: `/memreserve/`, `/reserved-memory` children with `reg`, and
    /// the board's own reservations.
    pub reserved: heapless::Vec<AddrRange<PhysAddr>, MAX_RESERVED_RANGES>,
    /// The console UART.
    pub uart: Uart,
    /// The interrupt controller.
    pub gic: Gic,
    /// The architected timer's interrupts.
    pub timer: Timer,
    /// The CPUs, in device-tree order (at most [`MAX_CPUS`]).
    pub cpus: heapless::Vec<Cpu, MAX_CPUS>,
    /// CPUs beyond [`MAX_CPUS`] that were left out.
    pub cpus_ignored: usize,
    /// The PSCI conduit, if the tree has a PSCI node.
    pub psci_method: Option<PsciMethod>,
    /// The initrd (`/chosen/linux,initrd-start|end`), if any: the boot pack.
    pub initrd: Option<AddrRange<PhysAddr>>,
    /// `/chosen/bootargs` (empty if absent).
    pub bootargs: heapless::String<BOOTARGS_CAPACITY>,
    /// The board, matched on the root `compatible`.
    pub board: &'static boards::Board,
}

/// Whether a node is enabled (`status` absent, `"okay"` or `"ok"`).
fn is_enabled(node: &Node) -> bool {
    match node.property("status") {
        None => true,
        Some(_) => matches!(node.property_str("status"), Some("okay") | Some("ok")),
    }
}

fn physical_range(address: u64, size: u64) -> AddrRange<PhysAddr> {
    AddrRange {
        start: PhysAddr::new(address),
        size,
    }
}

/// The `index`th `reg` entry of `node`, translated to a physical range.
fn translated_reg(
    fdt: &Fdt,
    node: &Node,
    index: usize,
) -> Result<Option<AddrRange<PhysAddr>>, PlatformError> {
    match node.reg().nth(index) {
        None => Ok(None),
        Some((address, size)) => {
            let physical = fdt
                .translate_address(node, address)
                .ok_or(PlatformError::NotTranslatable)?;
            Ok(Some(physical_range(physical, size)))
        }
    }
}

/// The first enabled node, in document order, compatible with one of `compatibles`.
fn find_enabled<'a>(fdt: &Fdt<'a>, compatibles: &[&str]) -> Option<Node<'a>> {
    fdt.nodes().find(|node| {
        is_enabled(node)
            && compatibles
                .iter()
                .any(|compatible| node.is_compatible(compatible))
    })
}

/// The INTID of the `index`th interrupt of `node` (GIC three-cell specifiers: type,
/// number, flags), using the interrupt parent's `#interrupt-cells` (default 3).
fn interrupt_intid(fdt: &Fdt, node: &Node, index: usize) -> Option<u32> {
    let cells_per_interrupt = fdt
        .interrupt_parent(node)
        .and_then(|parent| parent.property_u32("#interrupt-cells"))
        .unwrap_or(3);
    if cells_per_interrupt < 2 {
        return None;
    }
    let mut cells = node
        .interrupts()
        .skip(index.checked_mul(cells_per_interrupt as usize)?);
    let kind = cells.next()?;
    let number = cells.next()?;
    match kind {
        GIC_SPI => number.checked_add(SPI_BASE),
        GIC_PPI if number < 16 => Some(number + PPI_BASE),
        _ => None,
    }
}

fn uart_kind(node: &Node) -> Option<UartKind> {
    if node.is_compatible("arm,pl011") {
        Some(UartKind::Pl011)
    } else if node.is_compatible("brcm,bcm2835-aux-uart") {
        Some(UartKind::Bcm2835Aux)
    } else {
        None
    }
}

fn uart_at(fdt: &Fdt, node: &Node) -> Result<Option<Uart>, PlatformError> {
    let Some(kind) = uart_kind(node) else {
        return Ok(None);
    };
    if !is_enabled(node) {
        return Ok(None);
    }
    match translated_reg(fdt, node, 0)? {
        Some(range) => Ok(Some(Uart {
            base: range.start,
            kind,
            intid: interrupt_intid(fdt, node, 0),
        })),
        None => Ok(None),
    }
}

fn discover_uart(fdt: &Fdt) -> Result<Uart, PlatformError> {
    let chosen = fdt.find_node("/chosen");
    let stdout_path = chosen.and_then(|chosen| {
        chosen
            .property_str("stdout-path")
            .or_else(|| chosen.property_str("linux,stdout-path"))
    });
    if let Some(stdout_path) = stdout_path {
        let path = stdout_path.split(':').next().unwrap_or(stdout_path);
        if let Some(node) = fdt.find_node(path) {
            if let Some(uart) = uart_at(fdt, &node)? {
                return Ok(uart);
            }
        }
    }
    for compatible in ["arm,pl011", "brcm,bcm2835-aux-uart"] {
        if let Some(node) = find_enabled(fdt, &[compatible]) {
            if let Some(uart) = uart_at(fdt, &node)? {
                return Ok(uart);
            }
        }
    }
    Err(PlatformError::NoUart)
}

fn discover_gic(fdt: &Fdt) -> Result<Gic, PlatformError> {
    let mut all = [""; GIC_V2_COMPATIBLE.len() + GIC_V3_COMPATIBLE.len()];
    for (slot, compatible) in all
        .iter_mut()
        .zip(GIC_V2_COMPATIBLE.iter().chain(GIC_V3_COMPATIBLE.iter()))
    {
        *slot = compatible;
    }
    let node = find_enabled(fdt, &all).ok_or(PlatformError::NoGic)?;
    let version = if GIC_V3_COMPATIBLE
        .iter()
        .any(|compatible| node.is_compatible(compatible))
    {
        GicVersion::V3
    } else {
        GicVersion::V2
    };
    let distributor = translated_reg(fdt, &node, 0)?.ok_or(PlatformError::BadGic)?;
    let second = translated_reg(fdt, &node, 1)?.ok_or(PlatformError::BadGic)?;
    let maintenance_intid = interrupt_intid(fdt, &node, 0);
    Ok(match version {
        GicVersion::V2 => Gic {
            version,
            distributor,
            cpu_interface: Some(second),
            hyp_interface: translated_reg(fdt, &node, 2)?,
            virtual_cpu_interface: translated_reg(fdt, &node, 3)?,
            redistributors: None,
            maintenance_intid,
        },
        GicVersion::V3 => Gic {
            version,
            distributor,
            cpu_interface: None,
            hyp_interface: None,
            virtual_cpu_interface: None,
            redistributors: Some(second),
            maintenance_intid,
        },
    })
}

fn discover_timer(fdt: &Fdt) -> Result<Timer, PlatformError> {
    let node = find_enabled(fdt, &TIMER_COMPATIBLE).ok_or(PlatformError::NoTimer)?;
    let ppi = |index: usize| {
        interrupt_intid(fdt, &node, index)
            .filter(|intid| (PPI_BASE..SPI_BASE).contains(intid))
            .ok_or(PlatformError::BadTimer)
    };
    // Order: secure physical, non-secure physical, virtual, hypervisor.
    Ok(Timer {
        physical_intid: ppi(1)?,
        virtual_intid: ppi(2)?,
        hyp_intid: ppi(3)?,
    })
}

fn discover_cpus(fdt: &Fdt) -> Result<(heapless::Vec<Cpu, MAX_CPUS>, usize), PlatformError> {
    let cpus_node = fdt.find_node("/cpus").ok_or(PlatformError::NoCpus)?;
    let mut cpus = heapless::Vec::new();
    let mut ignored = 0usize;
    let cpu_nodes = cpus_node
        .children()
        .filter(|node| node.property_str("device_type") == Some("cpu"))
        .filter(is_enabled);
    for (index, node) in cpu_nodes.enumerate() {
        let (mpidr, _) = node.reg().next().ok_or(PlatformError::BadCpu { index })?;
        let enable_method = match node.property_str("enable-method") {
            Some("psci") => EnableMethod::Psci,
            Some("spin-table") => {
                let release = node
                    .property_uint("cpu-release-addr")
                    .ok_or(PlatformError::BadCpu { index })?;
                EnableMethod::SpinTable {
                    release_address: PhysAddr::new(release),
                }
            }
            _ => EnableMethod::None,
        };
        if cpus
            .push(Cpu {
                mpidr,
                enable_method,
            })
            .is_err()
        {
            ignored += 1;
        }
    }
    if cpus.is_empty() {
        return Err(PlatformError::NoCpus);
    }
    Ok((cpus, ignored))
}

fn discover_psci(fdt: &Fdt) -> Option<PsciMethod> {
    let node = find_enabled(fdt, &PSCI_COMPATIBLE)?;
    match node.property_str("method")? {
        "smc" => Some(PsciMethod::Smc),
        "hvc" => Some(PsciMethod::Hvc),
        _ => None,
    }
}

fn push_reserved(
    reserved: &mut heapless::Vec<AddrRange<PhysAddr>, MAX_RESERVED_RANGES>,
    range: AddrRange<PhysAddr>,
) -> Result<(), PlatformError> {
    if range.size == 0 {
        return Ok(());
    }
    reserved
        .push(range)
        .map_err(|_| PlatformError::TooManyReservations)
}

/// The whole pages covering `range` (`None` if it wraps).
fn page_cover(range: AddrRange<PhysAddr>) -> Option<AddrRange<PhysAddr>> {
    let start = range.start.page_base();
    let end = range.start.raw().checked_add(range.size.max(1))?;
    let end = end.checked_add(PAGE_SIZE - 1)? & !(PAGE_SIZE - 1);
    Some(AddrRange {
        start,
        size: end - start.raw(),
    })
}

impl Platform {
    /// Whether PSCI calls go through `SMC` (the tree's PSCI node says `smc`).
    pub fn psci_over_smc(&self) -> bool {
        self.psci_method == Some(PsciMethod::Smc)
    }

    /// The device register ranges the hypervisor itself uses (UART page, GIC frames),
    /// widened to whole pages, for mapping as Device memory.
    pub fn device_ranges(&self) -> impl Iterator<Item = AddrRange<PhysAddr>> {
        let uart = AddrRange {
            start: self.uart.base,
            size: 1,
        };
        [
            Some(uart),
            Some(self.gic.distributor),
            self.gic.cpu_interface,
            self.gic.hyp_interface,
            self.gic.virtual_cpu_interface,
            self.gic.redistributors,
        ]
        .into_iter()
        .flatten()
        .filter_map(page_cover)
    }

    /// Discovers the platform from the host's device tree.
    pub fn discover(fdt: &Fdt) -> Result<Platform, PlatformError> {
        let root = fdt.root();
        let board = boards::identify(root.property_strings("compatible"));

        let mut ram = heapless::Vec::new();
        let memory_nodes = fdt
            .nodes()
            .filter(|node| node.property_str("device_type") == Some("memory"))
            .filter(is_enabled);
        for node in memory_nodes {
            for (address, size) in node.reg() {
                if size == 0 {
                    continue;
                }
                let physical = fdt
                    .translate_address(&node, address)
                    .ok_or(PlatformError::NotTranslatable)?;
                ram.push(physical_range(physical, size))
                    .map_err(|_| PlatformError::TooManyMemoryRanges)?;
            }
        }
        if ram.is_empty() {
            return Err(PlatformError::NoMemory);
        }

        let mut reserved = heapless::Vec::new();
        for (address, size) in fdt.memory_reservations() {
            push_reserved(&mut reserved, physical_range(address, size))?;
        }
        if let Some(reserved_memory) = fdt.find_node("/reserved-memory") {
            for child in reserved_memory.children().filter(is_enabled) {
                for (address, size) in child.reg() {
                    let physical = fdt
                        .translate_address(&child, address)
                        .ok_or(PlatformError::NotTranslatable)?;
                    push_reserved(&mut reserved, physical_range(physical, size))?;
                }
            }
        }
        for &(address, size) in board.reserved {
            push_reserved(&mut reserved, physical_range(address, size))?;
        }

        let chosen = fdt.find_node("/chosen");
        let initrd = match chosen.map(|chosen| {
            (
                chosen.property_uint("linux,initrd-start"),
                chosen.property_uint("linux,initrd-end"),
            )
        }) {
            Some((Some(start), Some(end))) => {
                let size = end.checked_sub(start).ok_or(PlatformError::BadInitrd)?;
                Some(physical_range(start, size))
            }
            Some((None, None)) | None => None,
            Some(_) => return Err(PlatformError::BadInitrd),
        };
        let mut bootargs = heapless::String::new();
        if let Some(text) = chosen.and_then(|chosen| chosen.property_str("bootargs")) {
            bootargs
                .push_str(text)
                .map_err(|_| PlatformError::BootargsTooLong)?;
        }

        let (cpus, cpus_ignored) = discover_cpus(fdt)?;
        Ok(Platform {
            ram,
            reserved,
            uart: discover_uart(fdt)?,
            gic: discover_gic(fdt)?,
            timer: discover_timer(fdt)?,
            cpus,
            cpus_ignored,
            psci_method: discover_psci(fdt),
            initrd,
            bootargs,
            board,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIRT_GICV2: &[u8] = include_bytes!("dt/fixtures/virt-gicv2.dtb");
    const VIRT_GICV3: &[u8] = include_bytes!("dt/fixtures/virt-gicv3.dtb");
    const PI4_LIKE: &[u8] = include_bytes!("dt/fixtures/pi4-like.dtb");

    fn range(start: u64, size: u64) -> AddrRange<PhysAddr> {
        physical_range(start, size)
    }

    fn discover(bytes: &[u8]) -> Platform {
        Platform::discover(&Fdt::new(bytes).unwrap()).unwrap()
    }

    #[test]
    fn qemu_virt_gicv2() {
        let platform = discover(VIRT_GICV2);
        assert_eq!(platform.board.name, "QEMU virt");
        assert_eq!(platform.ram.as_slice(), [range(0x4000_0000, 1 << 30)]);
        assert!(platform.reserved.is_empty());
        assert_eq!(
            platform.uart,
            Uart {
                base: PhysAddr::new(0x0900_0000),
                kind: UartKind::Pl011,
                intid: Some(33)
            }
        );
        assert_eq!(
            platform.gic,
            Gic {
                version: GicVersion::V2,
                distributor: range(0x0800_0000, 0x1_0000),
                cpu_interface: Some(range(0x0801_0000, 0x1_0000)),
                hyp_interface: Some(range(0x0803_0000, 0x1_0000)),
                virtual_cpu_interface: Some(range(0x0804_0000, 0x1_0000)),
                redistributors: None,
                maintenance_intid: Some(25),
            }
        );
        assert_eq!(
            platform.timer,
            Timer {
                hyp_intid: 26,
                virtual_intid: 27,
                physical_intid: 30
            }
        );
        assert_eq!(platform.cpus.len(), 2);
        assert_eq!(platform.cpus_ignored, 0);
        assert!(platform.cpus.iter().enumerate().all(
            |(index, cpu)| cpu.mpidr == index as u64 && cpu.enable_method == EnableMethod::Psci
        ));
        assert_eq!(platform.psci_method, Some(PsciMethod::Smc));
        assert_eq!(platform.initrd, None);
        assert_eq!(platform.bootargs.as_str(), "");
    }

    #[test]
    fn qemu_virt_gicv3() {
        let platform = discover(VIRT_GICV3);
        assert_eq!(platform.gic.version, GicVersion::V3);
        assert_eq!(platform.gic.distributor, range(0x0800_0000, 0x1_0000));
        assert_eq!(
            platform.gic.redistributors,
            Some(range(0x080A_0000, 0xF6_0000))
        );
        assert_eq!(platform.gic.cpu_interface, None);
        assert_eq!(platform.gic.maintenance_intid, Some(25));
        assert_eq!(platform.uart.base, PhysAddr::new(0x0900_0000));
        assert_eq!(platform.ram.as_slice(), [range(0x4000_0000, 1 << 30)]);
        assert_eq!(platform.initrd, Some(range(0x4800_0000, 0x1000)));
        assert_eq!(platform.bootargs.as_str(), "console=ttyAMA0 test=1");
        assert_eq!(platform.timer.hyp_intid, 26);
    }

    #[test]
    fn raspberry_pi_4_like() {
        let platform = discover(PI4_LIKE);
        assert_eq!(platform.board.name, "Raspberry Pi 4 Model B");
        assert_eq!(platform.ram.as_slice(), [range(0, 0x3c00_0000)]);
        assert_eq!(
            platform.reserved.as_slice(),
            [range(0, 0x1000), range(0x1000, 0x1000), range(0, 0x8_0000)]
        );
        assert_eq!(
            platform.uart,
            Uart {
                base: PhysAddr::new(0xfe20_1000),
                kind: UartKind::Pl011,
                intid: Some(153)
            }
        );
        assert_eq!(
            platform.gic,
            Gic {
                version: GicVersion::V2,
                distributor: range(0xff84_1000, 0x1000),
                cpu_interface: Some(range(0xff84_2000, 0x2000)),
                hyp_interface: Some(range(0xff84_4000, 0x2000)),
                virtual_cpu_interface: Some(range(0xff84_6000, 0x2000)),
                redistributors: None,
                maintenance_intid: Some(25),
            }
        );
        assert_eq!(
            platform.timer,
            Timer {
                hyp_intid: 26,
                virtual_intid: 27,
                physical_intid: 30
            }
        );
        let releases: Vec<EnableMethod> =
            platform.cpus.iter().map(|cpu| cpu.enable_method).collect();
        assert_eq!(
            releases,
            [0xd8, 0xe0, 0xe8, 0xf0].map(|address| EnableMethod::SpinTable {
                release_address: PhysAddr::new(address)
            })
        );
        assert_eq!(
            platform
                .cpus
                .iter()
                .map(|cpu| cpu.mpidr)
                .collect::<Vec<_>>(),
            [0, 1, 2, 3]
        );
        assert_eq!(platform.psci_method, None);
        assert_eq!(platform.initrd, Some(range(0x0800_0000, 0x12_3456)));
        assert_eq!(
            platform.bootargs.as_str(),
            "coherent_pool=1M console=ttyAMA0"
        );
    }

    #[test]
    fn helpers_for_the_boot_path() {
        let platform = discover(VIRT_GICV2);
        assert!(platform.psci_over_smc());
        assert_eq!(platform.gic.version.number(), 2);
        assert_eq!(
            platform.device_ranges().collect::<Vec<_>>(),
            [
                range(0x0900_0000, 0x1000),
                range(0x0800_0000, 0x1_0000),
                range(0x0801_0000, 0x1_0000),
                range(0x0803_0000, 0x1_0000),
                range(0x0804_0000, 0x1_0000),
            ]
        );
        let platform = discover(PI4_LIKE);
        assert!(!platform.psci_over_smc());
        assert_eq!(
            platform.device_ranges().next(),
            Some(range(0xfe20_1000, 0x1000))
        );
        assert_eq!(discover(VIRT_GICV3).gic.version.number(), 3);
        assert_eq!(
            page_cover(range(0xfe21_5040, 0x40)),
            Some(range(0xfe21_5000, 0x1000))
        );
        assert_eq!(page_cover(range(u64::MAX - 4, 0x40)), None);
    }

    #[test]
    fn stdout_path_alias_picks_the_mini_uart() {
        let mut bytes = PI4_LIKE.to_vec();
        let needle = b"serial0:115200n8";
        let position = bytes
            .windows(needle.len())
            .position(|window| window == needle)
            .unwrap();
        bytes[position + 6] = b'1';
        let platform = discover(&bytes);
        assert_eq!(
            platform.uart,
            Uart {
                base: PhysAddr::new(0xfe21_5040),
                kind: UartKind::Bcm2835Aux,
                intid: Some(125)
            }
        );
    }

    #[test]
    fn corrupt_trees_never_panic() {
        let mut random = crate::dt::reader::tests::Random(0x9e37_79b9_7f4a_7c15);
        for fixture in [VIRT_GICV2, VIRT_GICV3, PI4_LIKE] {
            for _ in 0..300 {
                let mut bytes = fixture.to_vec();
                for _ in 0..1 + random.next() % 3 {
                    let index = (random.next() % bytes.len() as u64) as usize;
                    bytes[index] ^= 1 << (random.next() % 8);
                }
                if let Ok(fdt) = Fdt::new(&bytes) {
                    if let Err(error) = Platform::discover(&fdt) {
                        assert!(!error.describe().is_empty());
                    }
                }
            }
        }
    }
}
