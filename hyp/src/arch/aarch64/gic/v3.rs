//! GICv3 back end (Arm IHI 0069): the memory-mapped distributor (`GICD`) and
//! redistributors (`GICR`, one per CPU, found by affinity), and the system-register CPU
//! interface (`ICC_*_EL1`, `ICC_SRE_EL2`) and virtual interface control (`ICH_*_EL2`).
//!
//! Security: with a single security state (`GICD_CTLR.DS` = 1, QEMU `virt` without EL3) we
//! own the grouping and make everything group 1 (group 0 would be signalled as FIQ); with
//! two, we are a non-secure agent, the group registers ignore our writes and the firmware's
//! group 1 non-secure configuration stands. `GICD_CTLR` bits 0, 1 and 4 mean EnableGrp0,
//! EnableGrp1 and ARE (DS = 1) or EnableGrp1, EnableGrp1A and ARE_NS (non-secure view):
//! setting all three is right for both.

use super::{ActivePriorities, CpuTable, GicError, DEFAULT_PRIORITY, PRIVATE_INTID_LIMIT};
use crate::platform;
use aarch64_cpu::registers::{
    ReadWriteable, Readable, Writeable, ICC_SRE_EL2, ICH_AP0R0_EL2, ICH_AP0R1_EL2, ICH_AP0R2_EL2,
    ICH_AP0R3_EL2, ICH_AP1R0_EL2, ICH_AP1R1_EL2, ICH_AP1R2_EL2, ICH_AP1R3_EL2, ICH_HCR_EL2,
    ICH_LR0_EL2, ICH_LR10_EL2, ICH_LR11_EL2, ICH_LR12_EL2, ICH_LR13_EL2, ICH_LR14_EL2,
    ICH_LR15_EL2, ICH_LR1_EL2, ICH_LR2_EL2, ICH_LR3_EL2, ICH_LR4_EL2, ICH_LR5_EL2, ICH_LR6_EL2,
    ICH_LR7_EL2, ICH_LR8_EL2, ICH_LR9_EL2, ICH_MISR_EL2, ICH_VMCR_EL2, ICH_VTR_EL2,
};
use core::arch::asm;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

register_structs! {
    /// The distributor (`GICD`, IHI 0069 12.9), the parts used with affinity routing.
    pub Distributor {
        (0x0000 => control: ReadWrite<u32>),
        (0x0004 => interrupt_controller_type: ReadOnly<u32>),
        (0x0008 => _reserved0),
        (0x0080 => group: [ReadWrite<u32>; 32]),
        (0x0100 => set_enable: [ReadWrite<u32>; 32]),
        (0x0180 => clear_enable: [ReadWrite<u32>; 32]),
        (0x0200 => _set_pending: [ReadWrite<u32>; 32]),
        (0x0280 => clear_pending: [ReadWrite<u32>; 32]),
        (0x0300 => _set_active: [ReadWrite<u32>; 32]),
        (0x0380 => clear_active: [ReadWrite<u32>; 32]),
        (0x0400 => priority: [ReadWrite<u8>; 1024]),
        (0x0800 => _reserved1),
        (0x0c00 => configuration: [ReadWrite<u32>; 64]),
        (0x0d00 => group_modifier: [ReadWrite<u32>; 32]),
        (0x0d80 => _reserved2),
        (0x6000 => route: [ReadWrite<u64>; 1024]),
        (0x8000 => @END),
    }
}

register_structs! {
    /// A redistributor's control frame (`RD_base`, IHI 0069 12.10).
    pub RedistributorControl {
        (0x0000 => control: ReadWrite<u32>),
        (0x0004 => _implementer_identification: ReadOnly<u32>),
        (0x0008 => redistributor_type: ReadOnly<u64>),
        (0x0010 => _status: ReadWrite<u32>),
        (0x0014 => waker: ReadWrite<u32>),
        (0x0018 => _reserved0),
        (0x10000 => @END),
    }
}

register_structs! {
    /// A redistributor's SGI and PPI frame (`SGI_base`, 64 KiB after `RD_base`).
    pub RedistributorPrivate {
        (0x0000 => _reserved0),
        (0x0080 => group: ReadWrite<u32>),
        (0x0084 => _reserved1),
        (0x0100 => set_enable: ReadWrite<u32>),
        (0x0104 => _reserved2),
        (0x0180 => clear_enable: ReadWrite<u32>),
        (0x0184 => _reserved3),
        (0x0280 => clear_pending: ReadWrite<u32>),
        (0x0284 => _reserved4),
        (0x0380 => clear_active: ReadWrite<u32>),
        (0x0384 => _reserved5),
        (0x0400 => priority: [ReadWrite<u8>; 32]),
        (0x0420 => _reserved6),
        (0x0d00 => group_modifier: ReadWrite<u32>),
        (0x0d04 => _reserved7),
        (0x10000 => @END),
    }
}

/// `GICD_CTLR.RWP`: bit 31.
const DISTRIBUTOR_REGISTER_WRITE_PENDING: u32 = 1 << 31;
/// `GICR_CTLR.RWP`: bit 3.
const REDISTRIBUTOR_REGISTER_WRITE_PENDING: u32 = 1 << 3;
/// `GICD_CTLR.ARE` (DS = 1) / `ARE_NS` (non-secure view).
const DISTRIBUTOR_AFFINITY_ROUTING: u32 = 1 << 4;
/// `GICD_CTLR` bits 0 and 1: EnableGrp0 + EnableGrp1 (DS = 1) / EnableGrp1 + EnableGrp1A.
const DISTRIBUTOR_ENABLE_GROUPS: u32 = 0b11;
/// `GICD_TYPER.ITLinesNumber`: (value + 1) x 32 interrupt lines.
const TYPER_IT_LINES_MASK: u32 = 0x1f;
/// `GICR_TYPER.Last`: the last redistributor of the region.
const REDISTRIBUTOR_TYPE_LAST: u64 = 1 << 4;
/// `GICR_TYPER.VLPIS`: the redistributor has the two extra GICv4 frames.
const REDISTRIBUTOR_TYPE_VIRTUAL_LPIS: u64 = 1 << 1;
/// `GICR_WAKER.ProcessorSleep`.
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
/// `GICR_WAKER.ChildrenAsleep`.
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
/// Bytes between redistributors: `RD_base` + `SGI_base` (GICv3).
const REDISTRIBUTOR_STRIDE: u64 = 0x2_0000;
/// Bytes between redistributors with virtual LPIs: also `VLPI_base` and a reserved frame.
const REDISTRIBUTOR_STRIDE_VIRTUAL_LPIS: u64 = 0x4_0000;
/// Offset of `SGI_base` from `RD_base`.
const REDISTRIBUTOR_PRIVATE_OFFSET: u64 = 0x1_0000;
/// `ICC_CTLR_EL1.EOImode`: `ICC_EOIR1_EL1` only drops priority, `ICC_DIR_EL1` deactivates.
const CONTROL_EOI_MODE: u64 = 1 << 1;
/// `ICC_IAR1_EL1` bits [23:0]: the INTID.
const IAR_INTID_MASK: u64 = 0xff_ffff;
/// `ICH_VMCR_EL2` for a vCPU out of reset: `VFIQEn` (bit 3, RES1 for a guest using the
/// system-register interface), priority mask 0, groups disabled.
pub const INITIAL_VMCR: u64 = 1 << 3;
/// Most list registers (`ICH_LR0_EL2` to `ICH_LR15_EL2`).
const MAX_LIST_REGISTERS: usize = 16;
/// Most interrupt lines (INTIDs 1020-1023 are special).
const MAX_LINES: u32 = 1020;
/// Polls of an RWP or ChildrenAsleep bit before giving up.
const POLL_LIMIT: u32 = 1_000_000;

/// The redistributor (`RD_base`) of each CPU that ran `init_cpu`, per affinity.
static REDISTRIBUTORS: CpuTable = CpuTable::new();

/// A GICv3 (system-register CPU interface, with the virtualisation interface).
pub struct GicV3 {
    distributor: *const Distributor,
    redistributor_region_start: u64,
    redistributor_region_size: u64,
    /// The maintenance interrupt's INTID.
    pub(super) maintenance_intid: Option<u32>,
}

// SAFETY: the register blocks are device memory shared by all CPUs; every access is a
// single volatile load or store; each CPU writes only its own redistributor, and the
// distributor is written by the boot CPU during `init`.
unsafe impl Send for GicV3 {}
// SAFETY: as above.
unsafe impl Sync for GicV3 {}

/// Spins until `done` holds, at most [`POLL_LIMIT`] times.
fn poll(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..POLL_LIMIT {
        if done() {
            return true;
        }
        core::hint::spin_loop();
    }
    false
}

/// The affinity routing value (`GICD_IROUTER`: Aff3 [39:32], Aff2-0 [23:0], IRM 0) of the
/// CPU with MPIDR `mpidr`; it has the same layout as MPIDR_EL1's affinity.
fn route_to(mpidr: u64) -> u64 {
    mpidr & super::MPIDR_AFFINITY_MASK
}

/// The affinity in `GICR_TYPER` [63:32] form (Aff3.Aff2.Aff1.Aff0) of MPIDR `mpidr`.
fn redistributor_affinity(mpidr: u64) -> u64 {
    (mpidr & 0xff_ffff) | ((mpidr >> 32) & 0xff) << 24
}

impl GicV3 {
    /// Takes over the GICv3 `config` names, without touching it yet.
    ///
    /// # Safety
    /// As [`super::Gic::init`].
    pub(super) unsafe fn new(config: &platform::Gic) -> Result<Self, GicError> {
        let redistributors = config.redistributors.ok_or(GicError::NoRedistributors)?;
        Ok(Self {
            distributor: config.distributor.start.raw() as *const Distributor,
            redistributor_region_start: redistributors.start.raw(),
            redistributor_region_size: redistributors.size,
            maintenance_intid: config.maintenance_intid,
        })
    }

    fn distributor(&self) -> &Distributor {
        // SAFETY: `new`'s contract: a live, mapped GICD register block.
        unsafe { &*self.distributor }
    }

    /// The redistributor control frame at `base`.
    ///
    /// # Safety
    /// `base` must be a redistributor's `RD_base` inside the region `new` was given.
    unsafe fn redistributor_control(&self, base: u64) -> &RedistributorControl {
        // SAFETY: the caller's contract; the region is mapped per `new`'s contract.
        unsafe { &*(base as *const RedistributorControl) }
    }

    /// The SGI/PPI frame of the redistributor at `base`.
    ///
    /// # Safety
    /// As [`GicV3::redistributor_control`].
    unsafe fn redistributor_private(&self, base: u64) -> &RedistributorPrivate {
        // SAFETY: the caller's contract: `SGI_base` follows `RD_base` in the same region.
        unsafe { &*((base + REDISTRIBUTOR_PRIVATE_OFFSET) as *const RedistributorPrivate) }
    }

    /// This CPU's redistributor frames, once `init_cpu` has found them.
    fn this_redistributor(&self) -> Result<&RedistributorPrivate, GicError> {
        let base = REDISTRIBUTORS
            .get(super::current_mpidr())
            .ok_or(GicError::UnknownCpu)?;
        // SAFETY: `init_cpu` recorded `base` after finding it in the region by walking
        // `GICR_TYPER`.
        Ok(unsafe { self.redistributor_private(base) })
    }

    /// Walks the redistributor region for the one whose `GICR_TYPER.Affinity` is `mpidr`'s.
    fn find_redistributor(&self, mpidr: u64) -> Option<u64> {
        let wanted = redistributor_affinity(mpidr);
        let end = self
            .redistributor_region_start
            .checked_add(self.redistributor_region_size)?;
        let mut base = self.redistributor_region_start;
        while base.checked_add(REDISTRIBUTOR_STRIDE)? <= end {
            // SAFETY: `base` is a frame boundary inside the mapped region (checked above).
            let control = unsafe { self.redistributor_control(base) };
            let redistributor_type = control.redistributor_type.get();
            if redistributor_type >> 32 == wanted {
                return Some(base);
            }
            if redistributor_type & REDISTRIBUTOR_TYPE_LAST != 0 {
                return None;
            }
            base += if redistributor_type & REDISTRIBUTOR_TYPE_VIRTUAL_LPIS != 0 {
                REDISTRIBUTOR_STRIDE_VIRTUAL_LPIS
            } else {
                REDISTRIBUTOR_STRIDE
            };
        }
        None
    }

    fn wait_for_distributor(&self) {
        let distributor = self.distributor();
        poll(|| distributor.control.get() & DISTRIBUTOR_REGISTER_WRITE_PENDING == 0);
    }

    /// `GICD_CTLR` off; SPIs group 1, disabled, not pending, inactive, level, default
    /// priority; `GICD_CTLR.ARE`; SPIs routed to the boot CPU (`GICD_IROUTER<n>`); then the
    /// group enables, waiting for `GICD_CTLR.RWP` after each `GICD_CTLR` write.
    pub(super) fn init_distributor(&self) {
        let distributor = self.distributor();
        distributor.control.set(0);
        self.wait_for_distributor();
        let typer = distributor.interrupt_controller_type.get();
        let lines = (((typer & TYPER_IT_LINES_MASK) + 1) * 32).min(MAX_LINES) as usize;
        for word in 1..lines.div_ceil(32) {
            distributor.group[word].set(u32::MAX);
            distributor.group_modifier[word].set(0);
            distributor.clear_enable[word].set(u32::MAX);
            distributor.clear_pending[word].set(u32::MAX);
            distributor.clear_active[word].set(u32::MAX);
        }
        for word in 2..lines.div_ceil(16) {
            distributor.configuration[word].set(0);
        }
        for intid in PRIVATE_INTID_LIMIT as usize..lines {
            distributor.priority[intid].set(DEFAULT_PRIORITY);
        }
        self.wait_for_distributor();
        distributor.control.set(DISTRIBUTOR_AFFINITY_ROUTING);
        self.wait_for_distributor();
        // GICD_IROUTER<n> only exist once affinity routing is on.
        let route = route_to(super::current_mpidr());
        for intid in PRIVATE_INTID_LIMIT as usize..lines {
            distributor.route[intid].set(route);
        }
        distributor
            .control
            .set(DISTRIBUTOR_AFFINITY_ROUTING | DISTRIBUTOR_ENABLE_GROUPS);
        self.wait_for_distributor();
    }

    /// Waits for this CPU's `GICR_CTLR.RWP` (enable-register writes taking effect).
    fn wait_for_redistributor(&self, base: u64) {
        // SAFETY: `base` was found by `find_redistributor`.
        let control = unsafe { self.redistributor_control(base) };
        poll(|| control.control.get() & REDISTRIBUTOR_REGISTER_WRITE_PENDING == 0);
    }

    /// See [`super::Gic::init_cpu`].
    pub(super) fn init_cpu(&self) -> Result<(), GicError> {
        // The system-register interface at EL2, and EL1 allowed to use ICC_SRE_EL1.
        ICC_SRE_EL2.modify(
            ICC_SRE_EL2::SRE::SET
                + ICC_SRE_EL2::ENABLE::SET
                + ICC_SRE_EL2::DFB::SET
                + ICC_SRE_EL2::DIB::SET,
        );
        aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
        if !ICC_SRE_EL2.is_set(ICC_SRE_EL2::SRE) {
            return Err(GicError::SystemRegistersDisabled);
        }

        let mpidr = super::current_mpidr();
        let base = self
            .find_redistributor(mpidr)
            .ok_or(GicError::NoRedistributorForCpu)?;
        // SAFETY: `base` was found by walking the region's `GICR_TYPER`s.
        let control = unsafe { self.redistributor_control(base) };
        control
            .waker
            .set(control.waker.get() & !WAKER_PROCESSOR_SLEEP);
        if !poll(|| control.waker.get() & WAKER_CHILDREN_ASLEEP == 0) {
            return Err(GicError::RedistributorAsleep);
        }

        // SAFETY: as above.
        let private = unsafe { self.redistributor_private(base) };
        private.group.set(u32::MAX);
        private.group_modifier.set(0);
        private.clear_enable.set(0xffff_0000);
        private.set_enable.set(0x0000_ffff);
        private.clear_pending.set(u32::MAX);
        private.clear_active.set(u32::MAX);
        for priority in &private.priority {
            priority.set(DEFAULT_PRIORITY);
        }
        self.wait_for_redistributor(base);
        REDISTRIBUTORS.insert(mpidr, base)?;

        let control_value = read_cpu_interface_control() | CONTROL_EOI_MODE;
        // SAFETY: the CPU interface registers of this CPU's physical GIC; interrupts are
        // masked at EL2 (PSTATE.I), so opening the priority mask and enabling group 1 only
        // lets interrupts become pending for this CPU, never taken here.
        unsafe {
            asm!(
                "msr icc_pmr_el1, {mask}",
                "msr icc_bpr1_el1, xzr",
                "msr icc_ctlr_el1, {control}",
                "msr icc_igrpen1_el1, {enable}",
                "isb",
                mask = in(reg) 0xff_u64,
                control = in(reg) control_value,
                enable = in(reg) 1_u64,
                options(nostack, preserves_flags),
            );
        }

        ICH_HCR_EL2.set(0);
        for index in 0..self.list_register_count() {
            write_list_register(index, 0);
        }
        self.write_apr(&ActivePriorities::default());
        ICH_VMCR_EL2.set(INITIAL_VMCR);
        ICH_HCR_EL2.write(ICH_HCR_EL2::En::SET);
        aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
        Ok(())
    }

    /// This CPU's `GICR_IPRIORITYR<n>` then `GICR_ISENABLER0`.
    pub(super) fn enable_private(&self, intid: u32, priority: u8) -> Result<(), GicError> {
        let private = self.this_redistributor()?;
        private.priority[intid as usize].set(priority);
        private.set_enable.set(1 << intid);
        Ok(())
    }

    /// `GICD_IPRIORITYR<n>`, `GICD_IROUTER<n>` (this CPU), then `GICD_ISENABLER<n>`.
    pub(super) fn enable_shared(&self, intid: u32, priority: u8) -> Result<(), GicError> {
        let distributor = self.distributor();
        let typer = distributor.interrupt_controller_type.get();
        let lines = (((typer & TYPER_IT_LINES_MASK) + 1) * 32).min(MAX_LINES);
        if !(PRIVATE_INTID_LIMIT..lines).contains(&intid) {
            return Err(GicError::NotShared);
        }
        let index = intid as usize;
        distributor.priority[index].set(priority);
        distributor.route[index].set(route_to(super::current_mpidr()));
        distributor.set_enable[index / 32].set(1 << (intid % 32));
        Ok(())
    }

    /// This CPU's `GICR_ICENABLER0`, then waits for `GICR_CTLR.RWP`.
    pub(super) fn disable_private(&self, intid: u32) -> Result<(), GicError> {
        let base = REDISTRIBUTORS
            .get(super::current_mpidr())
            .ok_or(GicError::UnknownCpu)?;
        // SAFETY: recorded by `init_cpu` after finding it in the region.
        let private = unsafe { self.redistributor_private(base) };
        private.clear_enable.set(1 << intid);
        self.wait_for_redistributor(base);
        Ok(())
    }

    /// `ICC_IAR1_EL1`.
    pub(super) fn acknowledge(&self) -> Option<u32> {
        let value: u64;
        // SAFETY: acknowledging changes only the GIC's state (the interrupt becomes active),
        // which is what the caller asks for.
        unsafe {
            asm!("mrs {}, icc_iar1_el1", out(reg) value, options(nomem, nostack, preserves_flags));
        }
        let intid = (value & IAR_INTID_MASK) as u32;
        if (super::SPECIAL_INTID_FIRST..super::SPECIAL_INTID_FIRST + 4).contains(&intid) {
            None
        } else {
            Some(intid)
        }
    }

    /// `ICC_EOIR1_EL1`.
    pub(super) fn priority_drop(&self, acknowledged: u32) {
        // SAFETY: ends the priority of an interrupt this CPU acknowledged.
        unsafe {
            asm!(
                "msr icc_eoir1_el1, {}",
                "isb",
                in(reg) u64::from(acknowledged),
                options(nomem, nostack, preserves_flags),
            );
        }
    }

    /// `ICC_DIR_EL1`.
    pub(super) fn deactivate(&self, acknowledged: u32) {
        // SAFETY: deactivates an interrupt this CPU acknowledged.
        unsafe {
            asm!(
                "msr icc_dir_el1, {}",
                "isb",
                in(reg) u64::from(acknowledged),
                options(nomem, nostack, preserves_flags),
            );
        }
    }

    /// `ICC_SGI1R_EL1`: Aff3 [55:48], Aff2 [39:32], Aff1 [23:16], INTID [27:24],
    /// TargetList [15:0] = 1 << Aff0 (Aff0 must be below 16), IRM 0.
    pub(super) fn send_sgi(&self, target_mpidr: u64, intid: u32) -> Result<(), GicError> {
        let affinity0 = target_mpidr & 0xff;
        if affinity0 >= 16 {
            return Err(GicError::UnknownCpu);
        }
        let affinity1 = (target_mpidr >> 8) & 0xff;
        let affinity2 = (target_mpidr >> 16) & 0xff;
        let affinity3 = (target_mpidr >> 32) & 0xff;
        let value = (affinity3 << 48)
            | (affinity2 << 32)
            | (u64::from(intid) << 24)
            | (affinity1 << 16)
            | (1 << affinity0);
        super::publish_before_sgi();
        // SAFETY: generating a group 1 SGI only makes an interrupt pending at the target.
        unsafe {
            asm!(
                "msr icc_sgi1r_el1, {}",
                "isb",
                in(reg) value,
                options(nomem, nostack, preserves_flags),
            );
        }
        Ok(())
    }

    /// `ICH_VTR_EL2.ListRegs` + 1.
    pub(super) fn list_register_count(&self) -> usize {
        (ICH_VTR_EL2.read(ICH_VTR_EL2::ListRegs) as usize + 1).min(MAX_LIST_REGISTERS)
    }

    /// 1, 2 or 4 from `ICH_VTR_EL2.PREbits` (5, 6 or 7 preemption bits).
    pub(super) fn active_priority_register_count(&self) -> usize {
        let preemption_bits = ICH_VTR_EL2.read(ICH_VTR_EL2::PREbits) + 1;
        1 << preemption_bits.clamp(5, 7).saturating_sub(5)
    }

    /// `ICH_AP0R<n>_EL2` and `ICH_AP1R<n>_EL2`, the implemented ones.
    pub(super) fn read_apr(&self) -> ActivePriorities {
        let count = self.active_priority_register_count();
        let mut priorities = ActivePriorities::default();
        priorities.group0[0] = ICH_AP0R0_EL2.get() as u32;
        priorities.group1[0] = ICH_AP1R0_EL2.get() as u32;
        if count >= 2 {
            priorities.group0[1] = ICH_AP0R1_EL2.get() as u32;
            priorities.group1[1] = ICH_AP1R1_EL2.get() as u32;
        }
        if count >= 4 {
            priorities.group0[2] = ICH_AP0R2_EL2.get() as u32;
            priorities.group1[2] = ICH_AP1R2_EL2.get() as u32;
            priorities.group0[3] = ICH_AP0R3_EL2.get() as u32;
            priorities.group1[3] = ICH_AP1R3_EL2.get() as u32;
        }
        priorities
    }

    /// `ICH_AP0R<n>_EL2` and `ICH_AP1R<n>_EL2`, the implemented ones.
    pub(super) fn write_apr(&self, priorities: &ActivePriorities) {
        let count = self.active_priority_register_count();
        ICH_AP0R0_EL2.set(u64::from(priorities.group0[0]));
        ICH_AP1R0_EL2.set(u64::from(priorities.group1[0]));
        if count >= 2 {
            ICH_AP0R1_EL2.set(u64::from(priorities.group0[1]));
            ICH_AP1R1_EL2.set(u64::from(priorities.group1[1]));
        }
        if count >= 4 {
            ICH_AP0R2_EL2.set(u64::from(priorities.group0[2]));
            ICH_AP1R2_EL2.set(u64::from(priorities.group1[2]));
            ICH_AP0R3_EL2.set(u64::from(priorities.group0[3]));
            ICH_AP1R3_EL2.set(u64::from(priorities.group1[3]));
        }
    }
}

/// `ICC_CTLR_EL1`.
fn read_cpu_interface_control() -> u64 {
    let value: u64;
    // SAFETY: reading a CPU interface control register has no side effects.
    unsafe {
        asm!("mrs {}, icc_ctlr_el1", out(reg) value, options(nomem, nostack, preserves_flags));
    }
    value
}

/// `ICH_LR<index>_EL2` (separate system registers, hence the match); 0 beyond 15.
pub(super) fn read_list_register(index: usize) -> u64 {
    match index {
        0 => ICH_LR0_EL2.get(),
        1 => ICH_LR1_EL2.get(),
        2 => ICH_LR2_EL2.get(),
        3 => ICH_LR3_EL2.get(),
        4 => ICH_LR4_EL2.get(),
        5 => ICH_LR5_EL2.get(),
        6 => ICH_LR6_EL2.get(),
        7 => ICH_LR7_EL2.get(),
        8 => ICH_LR8_EL2.get(),
        9 => ICH_LR9_EL2.get(),
        10 => ICH_LR10_EL2.get(),
        11 => ICH_LR11_EL2.get(),
        12 => ICH_LR12_EL2.get(),
        13 => ICH_LR13_EL2.get(),
        14 => ICH_LR14_EL2.get(),
        15 => ICH_LR15_EL2.get(),
        _ => 0,
    }
}

/// `ICH_LR<index>_EL2`; ignored beyond 15.
pub(super) fn write_list_register(index: usize, value: u64) {
    match index {
        0 => ICH_LR0_EL2.set(value),
        1 => ICH_LR1_EL2.set(value),
        2 => ICH_LR2_EL2.set(value),
        3 => ICH_LR3_EL2.set(value),
        4 => ICH_LR4_EL2.set(value),
        5 => ICH_LR5_EL2.set(value),
        6 => ICH_LR6_EL2.set(value),
        7 => ICH_LR7_EL2.set(value),
        8 => ICH_LR8_EL2.set(value),
        9 => ICH_LR9_EL2.set(value),
        10 => ICH_LR10_EL2.set(value),
        11 => ICH_LR11_EL2.set(value),
        12 => ICH_LR12_EL2.set(value),
        13 => ICH_LR13_EL2.set(value),
        14 => ICH_LR14_EL2.set(value),
        15 => ICH_LR15_EL2.set(value),
        _ => {}
    }
}

/// `ICH_HCR_EL2`.
pub(super) fn read_hcr() -> u64 {
    ICH_HCR_EL2.get()
}

/// `ICH_HCR_EL2`.
pub(super) fn write_hcr(value: u64) {
    ICH_HCR_EL2.set(value);
}

/// `ICH_VMCR_EL2`.
pub(super) fn read_vmcr() -> u64 {
    ICH_VMCR_EL2.get()
}

/// `ICH_VMCR_EL2`.
pub(super) fn write_vmcr(value: u64) {
    ICH_VMCR_EL2.set(value);
}

/// `ICH_MISR_EL2`.
pub(super) fn read_misr() -> u64 {
    ICH_MISR_EL2.get()
}

/// `ICH_EISR_EL2`.
pub(super) fn read_eisr() -> u64 {
    let value: u64;
    // SAFETY: reading a status register of the virtual interface has no side effects.
    unsafe {
        asm!("mrs {}, ich_eisr_el2", out(reg) value, options(nomem, nostack, preserves_flags));
    }
    value
}

/// `ICH_ELRSR_EL2`.
pub(super) fn read_elrsr() -> u64 {
    let value: u64;
    // SAFETY: reading a status register of the virtual interface has no side effects.
    unsafe {
        asm!("mrs {}, ich_elrsr_el2", out(reg) value, options(nomem, nostack, preserves_flags));
    }
    value
}
