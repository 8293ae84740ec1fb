//! GICv2 back end (Arm IHI 0048B): distributor (`GICD`), CPU interface (`GICC`) and
//! virtual interface control (`GICH`), all memory-mapped. `GICC` and `GICH` are banked per
//! CPU at the same address, so each CPU reaches its own.
//!
//! Security: with the Security Extensions (GIC-400 on the Raspberry Pi 4) we are a
//! non-secure agent; the firmware made every interrupt group 1 and the non-secure views of
//! `GICD_CTLR` (bit 0 = EnableGrp1) and `GICC_CTLR` (bit 0 = EnableGrp1, bit 9 = EOImodeNS)
//! are used. Without them (QEMU `virt` without EL3) interrupts stay group 0 and the same
//! bits mean EnableGrp0 and EOImodeS, which govern all accesses. Either way the writes are
//! identical.

use super::{ActivePriorities, CpuTable, GicError, DEFAULT_PRIORITY, PRIVATE_INTID_LIMIT};
use crate::addr::PhysAddr;
use crate::platform;
use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite, WriteOnly};

register_structs! {
    /// The distributor (`GICD`, IHI 0048B 4.1.2).
    pub Distributor {
        (0x000 => control: ReadWrite<u32>),
        (0x004 => interrupt_controller_type: ReadOnly<u32>),
        (0x008 => _implementer_identification: ReadOnly<u32>),
        (0x00c => _reserved0),
        (0x080 => group: [ReadWrite<u32>; 32]),
        (0x100 => set_enable: [ReadWrite<u32>; 32]),
        (0x180 => clear_enable: [ReadWrite<u32>; 32]),
        (0x200 => _set_pending: [ReadWrite<u32>; 32]),
        (0x280 => clear_pending: [ReadWrite<u32>; 32]),
        (0x300 => _set_active: [ReadWrite<u32>; 32]),
        (0x380 => clear_active: [ReadWrite<u32>; 32]),
        (0x400 => priority: [ReadWrite<u8>; 1024]),
        (0x800 => targets: [ReadWrite<u8>; 1024]),
        (0xc00 => configuration: [ReadWrite<u32>; 64]),
        (0xd00 => _reserved1),
        (0xf00 => software_generated_interrupt: WriteOnly<u32>),
        (0xf04 => _reserved2),
        (0x1000 => @END),
    }
}

register_structs! {
    /// The CPU interface (`GICC`, IHI 0048B 4.1.3), banked per CPU.
    pub CpuInterface {
        (0x0000 => control: ReadWrite<u32>),
        (0x0004 => priority_mask: ReadWrite<u32>),
        (0x0008 => binary_point: ReadWrite<u32>),
        (0x000c => interrupt_acknowledge: ReadOnly<u32>),
        (0x0010 => end_of_interrupt: WriteOnly<u32>),
        (0x0014 => _running_priority: ReadOnly<u32>),
        (0x0018 => _highest_priority_pending: ReadOnly<u32>),
        (0x001c => _reserved0),
        (0x1000 => deactivate: WriteOnly<u32>),
        (0x1004 => @END),
    }
}

register_structs! {
    /// The virtual interface control (`GICH`, IHI 0048B 5.3), banked per CPU.
    pub HypInterface {
        (0x000 => hypervisor_control: ReadWrite<u32>),
        (0x004 => vgic_type: ReadOnly<u32>),
        (0x008 => virtual_machine_control: ReadWrite<u32>),
        (0x00c => _reserved0),
        (0x010 => maintenance_interrupt_status: ReadOnly<u32>),
        (0x014 => _reserved1),
        (0x020 => end_of_interrupt_status: [ReadOnly<u32>; 2]),
        (0x028 => _reserved2),
        (0x030 => empty_list_register_status: [ReadOnly<u32>; 2]),
        (0x038 => _reserved3),
        (0x0f0 => active_priorities: ReadWrite<u32>),
        (0x0f4 => _reserved4),
        (0x100 => list: [ReadWrite<u32>; 64]),
        (0x200 => @END),
    }
}

/// `GICD_TYPER.ITLinesNumber`: (value + 1) x 32 interrupt lines.
const TYPER_IT_LINES_MASK: u32 = 0x1f;
/// `GICD_TYPER.SecurityExtn`.
const TYPER_SECURITY_EXTENSIONS: u32 = 1 << 10;
/// `GICD_CTLR` bit 0: EnableGrp1 (non-secure view) / EnableGrp0 (no Security Extensions).
const DISTRIBUTOR_ENABLE: u32 = 1;
/// `GICC_CTLR` bit 0: EnableGrp1 (non-secure view) / EnableGrp0 (no Security Extensions).
const CPU_INTERFACE_ENABLE: u32 = 1;
/// `GICC_CTLR` bit 9: EOImodeNS (non-secure view) / EOImodeS (no Security Extensions):
/// `GICC_EOIR` only drops priority, `GICC_DIR` deactivates.
const CPU_INTERFACE_EOI_MODE: u32 = 1 << 9;
/// `GICC_CTLR` bits 5-8: the bypass-disable bits, kept as the firmware set them.
const CPU_INTERFACE_BYPASS_MASK: u32 = 0x1e0;
/// `GICC_IAR` bits [9:0]: the INTID (bits [12:10] are an SGI's requesting CPU).
pub const IAR_INTID_MASK: u32 = 0x3ff;
/// `GICC_IAR` bits [12:0]: the INTID and the requesting CPU, as written back to EOIR/DIR.
const IAR_VALUE_MASK: u32 = 0x1fff;
/// `GICH_HCR.En`: the virtual CPU interface is enabled.
const HCR_ENABLE: u32 = 1;
/// `GICH_VTR.ListRegs`: list registers minus one.
const VTR_LIST_REGISTERS_MASK: u32 = 0x3f;
/// `GICH_VMCR` for a vCPU out of reset: everything disabled, priority mask 0.
pub const INITIAL_VMCR: u64 = 0;
/// Most interrupt lines a GICv2 has (INTIDs 1020-1023 are special).
const MAX_LINES: u32 = 1020;

/// The CPU-interface target masks, per CPU affinity, read from each CPU's banked
/// `GICD_ITARGETSR0-7` in `init_cpu`.
static CPU_INTERFACE_MASKS: CpuTable = CpuTable::new();

/// A GICv2 with the virtualisation extensions.
pub struct GicV2 {
    distributor: *const Distributor,
    cpu_interface: *const CpuInterface,
    hyp_interface: *const HypInterface,
    /// Physical address of `GICV`.
    pub(super) virtual_cpu_interface: PhysAddr,
    /// The maintenance interrupt's INTID.
    pub(super) maintenance_intid: Option<u32>,
}

// SAFETY: the register blocks are device memory shared by all CPUs (GICC and GICH are banked
// by the hardware); every access is a single volatile load or store, and the registers
// written concurrently are either banked or write-one-to-set/clear.
unsafe impl Send for GicV2 {}
// SAFETY: as above.
unsafe impl Sync for GicV2 {}

impl GicV2 {
    /// Takes over the GICv2 `config` names, without touching it yet.
    ///
    /// # Safety
    /// As [`super::Gic::init`].
    pub(super) unsafe fn new(config: &platform::Gic) -> Result<Self, GicError> {
        let cpu_interface = config
            .cpu_interface
            .filter(|range| range.size >= 0x2000)
            .ok_or(GicError::NoCpuInterface)?;
        let hyp_interface = config
            .hyp_interface
            .ok_or(GicError::NoVirtualisationExtensions)?;
        let virtual_cpu_interface = config
            .virtual_cpu_interface
            .ok_or(GicError::NoVirtualisationExtensions)?;
        Ok(Self {
            distributor: config.distributor.start.raw() as *const Distributor,
            cpu_interface: cpu_interface.start.raw() as *const CpuInterface,
            hyp_interface: hyp_interface.start.raw() as *const HypInterface,
            virtual_cpu_interface: virtual_cpu_interface.start,
            maintenance_intid: config.maintenance_intid,
        })
    }

    fn distributor(&self) -> &Distributor {
        // SAFETY: `new`'s contract: a live, mapped GICD register block.
        unsafe { &*self.distributor }
    }

    fn cpu_interface(&self) -> &CpuInterface {
        // SAFETY: `new`'s contract: a live, mapped GICC register block (at least 8 KiB,
        // checked in `new`, so GICC_DIR at 0x1000 is inside it).
        unsafe { &*self.cpu_interface }
    }

    fn hyp_interface(&self) -> &HypInterface {
        // SAFETY: `new`'s contract: a live, mapped GICH register block.
        unsafe { &*self.hyp_interface }
    }

    /// Number of interrupt lines (`GICD_TYPER.ITLinesNumber`), at most 1020.
    fn lines(&self) -> u32 {
        let typer = self.distributor().interrupt_controller_type.get();
        ((typer & TYPER_IT_LINES_MASK) + 1)
            .saturating_mul(32)
            .min(MAX_LINES)
    }

    /// Whether the GIC has two security states (`GICD_TYPER.SecurityExtn`).
    fn has_security_extensions(&self) -> bool {
        self.distributor().interrupt_controller_type.get() & TYPER_SECURITY_EXTENSIONS != 0
    }

    /// This CPU's interface mask: the first non-zero byte of the banked
    /// `GICD_ITARGETSR0-7` (a uniprocessor GIC reads zero: CPU interface 0).
    fn this_cpu_mask(&self) -> u8 {
        self.distributor().targets[..PRIVATE_INTID_LIMIT as usize]
            .iter()
            .map(|target| target.get())
            .find(|mask| *mask != 0)
            .unwrap_or(1)
    }

    /// `GICD_CTLR` off; SPIs disabled, not pending, inactive, level, default priority,
    /// targeting the boot CPU (group 0 if no Security Extensions); `GICD_CTLR` on.
    pub(super) fn init_distributor(&self) {
        let distributor = self.distributor();
        distributor.control.set(0);
        let lines = self.lines() as usize;
        let security = self.has_security_extensions();
        let mask = self.this_cpu_mask();
        for word in 1..lines.div_ceil(32) {
            distributor.clear_enable[word].set(u32::MAX);
            distributor.clear_pending[word].set(u32::MAX);
            distributor.clear_active[word].set(u32::MAX);
            if !security {
                distributor.group[word].set(0);
            }
        }
        for intid in PRIVATE_INTID_LIMIT as usize..lines {
            distributor.priority[intid].set(DEFAULT_PRIORITY);
            distributor.targets[intid].set(mask);
        }
        for word in 2..lines.div_ceil(16) {
            distributor.configuration[word].set(0);
        }
        distributor.control.set(DISTRIBUTOR_ENABLE);
    }

    /// See [`super::Gic::init_cpu`].
    pub(super) fn init_cpu(&self) -> Result<(), GicError> {
        let distributor = self.distributor();
        CPU_INTERFACE_MASKS.insert(super::current_mpidr(), u64::from(self.this_cpu_mask()))?;
        distributor.clear_enable[0].set(0xffff_0000);
        distributor.set_enable[0].set(0x0000_ffff);
        distributor.clear_pending[0].set(0xffff_0000);
        distributor.clear_active[0].set(u32::MAX);
        if !self.has_security_extensions() {
            distributor.group[0].set(0);
        }
        for intid in 0..PRIVATE_INTID_LIMIT as usize {
            distributor.priority[intid].set(DEFAULT_PRIORITY);
        }

        let cpu_interface = self.cpu_interface();
        cpu_interface.priority_mask.set(0xff);
        cpu_interface.binary_point.set(0);
        let bypass = cpu_interface.control.get() & CPU_INTERFACE_BYPASS_MASK;
        cpu_interface
            .control
            .set(bypass | CPU_INTERFACE_EOI_MODE | CPU_INTERFACE_ENABLE);

        let hyp_interface = self.hyp_interface();
        hyp_interface.hypervisor_control.set(0);
        for list_register in &hyp_interface.list[..self.list_register_count()] {
            list_register.set(0);
        }
        hyp_interface.active_priorities.set(0);
        hyp_interface
            .virtual_machine_control
            .set(INITIAL_VMCR as u32);
        hyp_interface.hypervisor_control.set(HCR_ENABLE);
        Ok(())
    }

    /// Banked `GICD_IPRIORITYR<n>` then `GICD_ISENABLER0`.
    pub(super) fn enable_private(&self, intid: u32, priority: u8) {
        let distributor = self.distributor();
        distributor.priority[intid as usize].set(priority);
        distributor.set_enable[0].set(1 << intid);
    }

    /// `GICD_IPRIORITYR<n>`, `GICD_ITARGETSR<n>` (this CPU), then `GICD_ISENABLER<n>`.
    pub(super) fn enable_shared(&self, intid: u32, priority: u8) -> Result<(), GicError> {
        if !(PRIVATE_INTID_LIMIT..self.lines()).contains(&intid) {
            return Err(GicError::NotShared);
        }
        let distributor = self.distributor();
        let index = intid as usize;
        distributor.priority[index].set(priority);
        distributor.targets[index].set(self.this_cpu_mask());
        distributor.set_enable[index / 32].set(1 << (intid % 32));
        Ok(())
    }

    /// Banked `GICD_ICENABLER0`.
    pub(super) fn disable_private(&self, intid: u32) {
        self.distributor().clear_enable[0].set(1 << intid);
    }

    /// `GICC_IAR`.
    pub(super) fn acknowledge(&self) -> Option<u32> {
        let value = self.cpu_interface().interrupt_acknowledge.get() & IAR_VALUE_MASK;
        if value & IAR_INTID_MASK >= super::SPECIAL_INTID_FIRST {
            None
        } else {
            Some(value)
        }
    }

    /// `GICC_EOIR`.
    pub(super) fn priority_drop(&self, acknowledged: u32) {
        self.cpu_interface()
            .end_of_interrupt
            .set(acknowledged & IAR_VALUE_MASK);
    }

    /// `GICC_DIR`.
    pub(super) fn deactivate(&self, acknowledged: u32) {
        self.cpu_interface()
            .deactivate
            .set(acknowledged & IAR_VALUE_MASK);
    }

    /// `GICD_SGIR`: TargetListFilter 0 (the list), CPUTargetList = the target's mask.
    pub(super) fn send_sgi(&self, target_mpidr: u64, intid: u32) -> Result<(), GicError> {
        let mask = CPU_INTERFACE_MASKS
            .get(target_mpidr)
            .ok_or(GicError::UnknownCpu)?;
        super::publish_before_sgi();
        self.distributor()
            .software_generated_interrupt
            .set(((mask as u32 & 0xff) << 16) | intid);
        Ok(())
    }

    /// `GICH_VTR.ListRegs` + 1.
    pub(super) fn list_register_count(&self) -> usize {
        ((self.hyp_interface().vgic_type.get() & VTR_LIST_REGISTERS_MASK) + 1) as usize
    }

    /// `GICH_LR<index>`; `index` is below the list register count.
    pub(super) fn read_list_register(&self, index: usize) -> u64 {
        self.hyp_interface()
            .list
            .get(index)
            .map_or(0, |register| u64::from(register.get()))
    }

    /// `GICH_LR<index>`; `index` is below the list register count.
    pub(super) fn write_list_register(&self, index: usize, value: u64) {
        if let Some(register) = self.hyp_interface().list.get(index) {
            register.set(value as u32);
        }
    }

    /// `GICH_HCR`.
    pub(super) fn read_hcr(&self) -> u64 {
        u64::from(self.hyp_interface().hypervisor_control.get())
    }

    /// `GICH_HCR`.
    pub(super) fn write_hcr(&self, value: u64) {
        self.hyp_interface().hypervisor_control.set(value as u32);
    }

    /// `GICH_VMCR`.
    pub(super) fn read_vmcr(&self) -> u64 {
        u64::from(self.hyp_interface().virtual_machine_control.get())
    }

    /// `GICH_VMCR`.
    pub(super) fn write_vmcr(&self, value: u64) {
        self.hyp_interface()
            .virtual_machine_control
            .set(value as u32);
    }

    /// `GICH_APR` into `group0[0]`.
    pub(super) fn read_apr(&self) -> ActivePriorities {
        let mut priorities = ActivePriorities::default();
        priorities.group0[0] = self.hyp_interface().active_priorities.get();
        priorities
    }

    /// `GICH_APR` from `group0[0]`.
    pub(super) fn write_apr(&self, priorities: &ActivePriorities) {
        self.hyp_interface()
            .active_priorities
            .set(priorities.group0[0]);
    }

    /// `GICH_MISR`.
    pub(super) fn read_misr(&self) -> u64 {
        u64::from(self.hyp_interface().maintenance_interrupt_status.get())
    }

    /// `GICH_EISR1:GICH_EISR0`.
    pub(super) fn read_eisr(&self) -> u64 {
        let status = &self.hyp_interface().end_of_interrupt_status;
        u64::from(status[0].get()) | (u64::from(status[1].get()) << 32)
    }

    /// `GICH_ELRSR1:GICH_ELRSR0`.
    pub(super) fn read_elrsr(&self) -> u64 {
        let status = &self.hyp_interface().empty_list_register_status;
        u64::from(status[0].get()) | (u64::from(status[1].get()) << 32)
    }
}
