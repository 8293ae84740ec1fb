//! The physical Generic Interrupt Controller: one interface over two back ends, GICv2
//! ([`v2`], memory-mapped CPU and virtual interface control) and GICv3 ([`v3`], system
//! registers and redistributors), chosen from the version the device tree names.
//!
//! The hypervisor drives the GIC for itself (its EL2 timer, wake-up SGIs) and gives the
//! virtual distributor model (`crate::vgic`) raw access to the virtualisation interface:
//! list registers, the virtual machine control register, active priorities and the
//! maintenance status registers.
//!
//! # Configuration
//! * All interrupts are group 1 non-secure where the GIC has two security states (the
//!   firmware configured the groups; non-secure writes of the group registers are ignored).
//!   A GICv3 with a single security state (`GICD_CTLR.DS` = 1, QEMU `virt` without EL3)
//!   is configured group 1 by us, because group 0 would be signalled as FIQ. A GICv2 without
//!   the Security Extensions (QEMU `virt` without EL3) keeps every interrupt in group 0,
//!   signalled as IRQ (`GICC_CTLR.FIQEn` = 0), as Linux does: its group 1 would need the
//!   deprecated `AckCtl` to be acknowledged through `GICC_IAR`.
//! * Priority drop and deactivation are split (`GICC_CTLR.EOImode` /
//!   `ICC_CTLR_EL1.EOImode` = 1): [`Gic::priority_drop`] (EOIR) lets the CPU take further
//!   interrupts, [`Gic::deactivate`] (DIR) ends the interrupt. A physical interrupt forwarded
//!   to a guest through a hardware list register (`HW` = 1, physical INTID) is only
//!   priority-dropped by the hypervisor; the guest's virtual EOI then deactivates it.
//!   [`Gic::end_of_interrupt`] does both, for interrupts the hypervisor handles itself.
//! * Priorities: everything at [`DEFAULT_PRIORITY`], priority mask fully open (0xff).
//! * The hypervisor never unmasks interrupts at EL2 (PSTATE.I stays set): interrupts taken
//!   while a guest runs arrive through the lower-EL IRQ vector (`HCR_EL2.IMO` = 1), and
//!   [`Gic::acknowledge`] works with PSTATE.I set.

pub mod v2;
pub mod v3;

use crate::addr::PhysAddr;
use crate::platform::{self, GicVersion};
use core::sync::atomic::{AtomicU64, Ordering};

/// Priority given to every interrupt at initialisation (lower is more urgent; 0xa0 is the
/// value Linux uses, and survives the non-secure view's halving of the priority range).
pub const DEFAULT_PRIORITY: u8 = 0xa0;

/// First of the special INTIDs 1020-1023 (spurious / no pending interrupt).
pub const SPECIAL_INTID_FIRST: u32 = 1020;

/// INTIDs below this are private to a CPU: SGIs 0-15 and PPIs 16-31.
pub const PRIVATE_INTID_LIMIT: u32 = 32;

/// Number of software-generated interrupts (INTIDs 0-15).
pub const SGI_COUNT: u32 = 16;

/// Most list registers either architecture version can have: GICv3 has at most 16
/// (`ICH_LR<n>_EL2`), GICv2 up to 64 (`GICH_LR<n>`).
pub const MAX_LIST_REGISTERS: usize = 64;

/// Why the GIC could not be set up or an operation was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum GicError {
    /// [`Gic::init`] already ran.
    AlreadyInitialised,
    /// GICv2 without a CPU interface (`GICC`) range, or one too small to hold `GICC_DIR`.
    NoCpuInterface,
    /// GICv2 without the virtualisation extensions (`GICH` and `GICV` ranges).
    NoVirtualisationExtensions,
    /// GICv3 without a redistributor range.
    NoRedistributors,
    /// GICv3: no redistributor in the range has this CPU's affinity.
    NoRedistributorForCpu,
    /// GICv3: the redistributor did not wake up (`GICR_WAKER.ChildrenAsleep` stayed set).
    RedistributorAsleep,
    /// GICv3: the system register interface could not be enabled at EL2 (`ICC_SRE_EL2`).
    SystemRegistersDisabled,
    /// The INTID is not a PPI (or SGI) where one was required.
    NotPrivate,
    /// The INTID is not an SPI this GIC implements.
    NotShared,
    /// The INTID is not an SGI (0-15).
    NotSgi,
    /// The target CPU has not run [`Gic::init_cpu`], or cannot be addressed by an SGI.
    UnknownCpu,
    /// More CPUs called [`Gic::init_cpu`] than [`MAX_CPUS`].
    TooManyCpus,
}

impl GicError {
    /// A short English description.
    pub fn describe(&self) -> &'static str {
        match self {
            GicError::AlreadyInitialised => "GIC already initialised",
            GicError::NoCpuInterface => "GICv2 CPU interface missing or too small",
            GicError::NoVirtualisationExtensions => "GIC lacks the virtualisation extensions",
            GicError::NoRedistributors => "GICv3 redistributor range missing",
            GicError::NoRedistributorForCpu => "no GICv3 redistributor for this CPU",
            GicError::RedistributorAsleep => "GICv3 redistributor did not wake up",
            GicError::SystemRegistersDisabled => "GICv3 system register interface unavailable",
            GicError::NotPrivate => "INTID is not a private (SGI/PPI) interrupt",
            GicError::NotShared => "INTID is not an SPI of this GIC",
            GicError::NotSgi => "INTID is not an SGI",
            GicError::UnknownCpu => "target CPU unknown to the GIC driver",
            GicError::TooManyCpus => "too many CPUs for the GIC driver",
        }
    }
}

/// The virtual CPU interface's active-priority registers, saved and restored per vCPU.
///
/// GICv3: `group0[n]` is `ICH_AP0R<n>_EL2` and `group1[n]` is `ICH_AP1R<n>_EL2`, for `n`
/// below [`Gic::active_priority_register_count`] (the rest stay zero). GICv2: the single
/// `GICH_APR` is `group0[0]` (it covers both groups); everything else stays zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ActivePriorities {
    /// Group 0 active priorities (GICv2: `GICH_APR` in element 0).
    pub group0: [u32; 4],
    /// Group 1 active priorities (GICv3 only).
    pub group1: [u32; 4],
}

/// Most physical CPUs the driver keeps per-CPU GIC data for.
pub const MAX_CPUS: usize = 8;

/// Bits of MPIDR_EL1 that make up the affinity (Aff3 [39:32], Aff2-Aff0 [23:0]).
pub const MPIDR_AFFINITY_MASK: u64 = 0xff_00ff_ffff;

/// Marks a used [`CpuTable`] slot (MPIDR bit 63 is RES0, so it never collides).
const SLOT_USED: u64 = 1 << 63;

/// A small lock-free map from a CPU's MPIDR affinity to one per-CPU value (GICv2: the CPU
/// interface's target mask; GICv3: the redistributor's address). Written once per CPU by
/// [`Gic::init_cpu`], read by anyone.
struct CpuTable {
    keys: [AtomicU64; MAX_CPUS],
    values: [AtomicU64; MAX_CPUS],
}

impl CpuTable {
    const fn new() -> Self {
        Self {
            keys: [const { AtomicU64::new(0) }; MAX_CPUS],
            values: [const { AtomicU64::new(0) }; MAX_CPUS],
        }
    }

    /// Records `value` (never 0) for the CPU with affinity `mpidr`, overwriting an earlier
    /// value for it. The slot is claimed first and the value stored after, so a reader can
    /// briefly see 0 for a CPU still initialising: [`CpuTable::get`] treats that as absent.
    fn insert(&self, mpidr: u64, value: u64) -> Result<(), GicError> {
        let key = (mpidr & MPIDR_AFFINITY_MASK) | SLOT_USED;
        for (slot_key, slot_value) in self.keys.iter().zip(self.values.iter()) {
            let claimed =
                match slot_key.compare_exchange(0, key, Ordering::AcqRel, Ordering::Acquire) {
                    Ok(_) => true,
                    Err(existing) => existing == key,
                };
            if claimed {
                slot_value.store(value, Ordering::Release);
                return Ok(());
            }
        }
        Err(GicError::TooManyCpus)
    }

    /// The value recorded for the CPU with affinity `mpidr`.
    fn get(&self, mpidr: u64) -> Option<u64> {
        let key = (mpidr & MPIDR_AFFINITY_MASK) | SLOT_USED;
        self.keys
            .iter()
            .position(|slot_key| slot_key.load(Ordering::Acquire) == key)
            .map(|index| self.values[index].load(Ordering::Acquire))
            .filter(|value| *value != 0)
    }
}

/// Makes this CPU's earlier memory writes visible to the CPU an SGI wakes (DSB ISHST before
/// the write that generates it).
fn publish_before_sgi() {
    aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::ISHST);
}

/// This CPU's MPIDR_EL1.
fn current_mpidr() -> u64 {
    super::cpu::read_mpidr()
}

/// The physical GIC, whichever version the platform has.
pub enum Gic {
    /// GICv2 (GIC-400 on the Raspberry Pi 4, QEMU `virt,gic-version=2`).
    V2(v2::GicV2),
    /// GICv3 (QEMU `virt,gic-version=3`).
    V3(v3::GicV3),
}

/// The one GIC, set by [`Gic::init`].
static GIC: spin::Once<Gic> = spin::Once::new();

impl Gic {
    /// Initialises the distributor, once, on the boot CPU, and returns the driver: every SPI
    /// disabled, inactive, level-triggered, at [`DEFAULT_PRIORITY`], routed to the boot CPU,
    /// group 1 non-secure (see the module documentation for single-security-state GICs);
    /// GICv3 affinity routing (`GICD_CTLR.ARE`) on; then the distributor enabled
    /// (`GICD_CTLR`). Call [`Gic::init_cpu`] next, on every CPU including this one.
    ///
    /// # Safety
    /// The frames `config` names must be this machine's GIC, mapped (identity, Device
    /// memory) at EL2, and driven by nothing else.
    pub unsafe fn init(config: &platform::Gic) -> Result<&'static Gic, GicError> {
        if GIC.is_completed() {
            return Err(GicError::AlreadyInitialised);
        }
        let gic = match config.version {
            // SAFETY: forwarded from this function's contract.
            GicVersion::V2 => Gic::V2(unsafe { v2::GicV2::new(config) }?),
            // SAFETY: forwarded from this function's contract.
            GicVersion::V3 => Gic::V3(unsafe { v3::GicV3::new(config) }?),
        };
        match &gic {
            Gic::V2(gic) => gic.init_distributor(),
            Gic::V3(gic) => gic.init_distributor(),
        }
        let mut fresh = false;
        let installed = GIC.call_once(|| {
            fresh = true;
            gic
        });
        if fresh {
            Ok(installed)
        } else {
            Err(GicError::AlreadyInitialised)
        }
    }

    /// The driver, once [`Gic::init`] has run.
    pub fn get() -> Option<&'static Gic> {
        GIC.get()
    }

    /// The architecture version.
    pub fn version(&self) -> GicVersion {
        match self {
            Gic::V2(_) => GicVersion::V2,
            Gic::V3(_) => GicVersion::V3,
        }
    }

    /// Initialises this CPU's part of the GIC; call once on each CPU (the boot CPU too),
    /// after [`Gic::init`], before any guest runs on it.
    ///
    /// GICv2: banked `GICD_ICENABLER0`/`GICD_ISENABLER0` (PPIs disabled, SGIs enabled),
    /// `GICD_IPRIORITYR0-7`, `GICC_PMR` = 0xff, `GICC_BPR` = 0, `GICC_CTLR` (enable,
    /// `EOImode` = 1, bypass bits kept); virtual interface `GICH_LR<n>` and `GICH_APR`
    /// zeroed, `GICH_VMCR` = 0, `GICH_HCR.En` = 1.
    ///
    /// GICv3: `ICC_SRE_EL2` (SRE, Enable, DFB, DIB), this CPU's redistributor woken
    /// (`GICR_WAKER.ProcessorSleep` cleared, `ChildrenAsleep` polled), its SGIs/PPIs group 1
    /// (`GICR_IGROUPR0`), PPIs disabled and SGIs enabled, priorities set; `ICC_PMR_EL1` =
    /// 0xff, `ICC_BPR1_EL1` = 0, `ICC_CTLR_EL1.EOImode` = 1, `ICC_IGRPEN1_EL1` = 1; virtual
    /// interface `ICH_LR<n>_EL2` and `ICH_AP{0,1}R<n>_EL2` zeroed, `ICH_VMCR_EL2` =
    /// [`Gic::initial_vmcr`], `ICH_HCR_EL2.En` = 1.
    pub fn init_cpu(&self) -> Result<(), GicError> {
        match self {
            Gic::V2(gic) => gic.init_cpu(),
            Gic::V3(gic) => gic.init_cpu(),
        }
    }

    /// Enables the private interrupt `intid` (an SGI 0-15 or PPI 16-31) on this CPU at
    /// `priority`. GICv2: banked `GICD_IPRIORITYR<n>` and `GICD_ISENABLER0`; GICv3: this
    /// CPU's `GICR_IPRIORITYR<n>` and `GICR_ISENABLER0`.
    pub fn enable_ppi(&self, intid: u32, priority: u8) -> Result<(), GicError> {
        if intid >= PRIVATE_INTID_LIMIT {
            return Err(GicError::NotPrivate);
        }
        match self {
            Gic::V2(gic) => {
                gic.enable_private(intid, priority);
                Ok(())
            }
            Gic::V3(gic) => gic.enable_private(intid, priority),
        }
    }

    /// Enables the shared peripheral interrupt `intid` (32..lines), level-triggered, at
    /// `priority`, targeted at this CPU (call on the boot CPU, which takes device
    /// interrupts). GICv2: `GICD_IPRIORITYR<n>`, `GICD_ITARGETSR<n>` (this CPU's interface
    /// mask), `GICD_ISENABLER<n>`; GICv3: `GICD_IPRIORITYR<n>`, `GICD_IROUTER<n>` (this
    /// CPU's affinity), `GICD_ISENABLER<n>`.
    pub fn enable_spi(&self, intid: u32, priority: u8) -> Result<(), GicError> {
        match self {
            Gic::V2(gic) => gic.enable_shared(intid, priority),
            Gic::V3(gic) => gic.enable_shared(intid, priority),
        }
    }

    /// Disables the private interrupt `intid` on this CPU. GICv2: banked
    /// `GICD_ICENABLER0`; GICv3: this CPU's `GICR_ICENABLER0` (waits for `GICR_CTLR.RWP`).
    pub fn disable_ppi(&self, intid: u32) -> Result<(), GicError> {
        if intid >= PRIVATE_INTID_LIMIT {
            return Err(GicError::NotPrivate);
        }
        match self {
            Gic::V2(gic) => {
                gic.disable_private(intid);
                Ok(())
            }
            Gic::V3(gic) => gic.disable_private(intid),
        }
    }

    /// Acknowledges the highest-priority pending interrupt (GICv2 `GICC_IAR`, GICv3
    /// `ICC_IAR1_EL1`), making it active; `None` if the INTID read is a special one
    /// (1020-1023: spurious, nothing pending). Works with PSTATE.I set.
    ///
    /// The value is the INTID, except for a GICv2 SGI, where bits [12:10] also hold the
    /// requesting CPU (as in `GICC_IAR`). Pass it unchanged to [`Gic::end_of_interrupt`],
    /// [`Gic::priority_drop`] and [`Gic::deactivate`]; [`Gic::interrupt_id`] strips the CPU.
    pub fn acknowledge(&self) -> Option<u32> {
        match self {
            Gic::V2(gic) => gic.acknowledge(),
            Gic::V3(gic) => gic.acknowledge(),
        }
    }

    /// Drops the running priority of an acknowledged interrupt without deactivating it
    /// (GICv2 `GICC_EOIR`, GICv3 `ICC_EOIR1_EL1`; `EOImode` = 1). Use alone for an interrupt
    /// forwarded to a guest through a hardware list register.
    pub fn priority_drop(&self, acknowledged: u32) {
        match self {
            Gic::V2(gic) => gic.priority_drop(acknowledged),
            Gic::V3(gic) => gic.priority_drop(acknowledged),
        }
    }

    /// Deactivates an acknowledged interrupt (GICv2 `GICC_DIR`, GICv3 `ICC_DIR_EL1`).
    pub fn deactivate(&self, acknowledged: u32) {
        match self {
            Gic::V2(gic) => gic.deactivate(acknowledged),
            Gic::V3(gic) => gic.deactivate(acknowledged),
        }
    }

    /// The INTID in a value returned by [`Gic::acknowledge`]: strips a GICv2 SGI's
    /// requesting CPU (`GICC_IAR` bits [12:10]); GICv3 values are INTIDs already.
    pub fn interrupt_id(&self, acknowledged: u32) -> u32 {
        match self {
            Gic::V2(_) => acknowledged & v2::IAR_INTID_MASK,
            Gic::V3(_) => acknowledged,
        }
    }

    /// Ends an interrupt the hypervisor handled itself: [`Gic::priority_drop`] then
    /// [`Gic::deactivate`].
    pub fn end_of_interrupt(&self, acknowledged: u32) {
        self.priority_drop(acknowledged);
        self.deactivate(acknowledged);
    }

    /// Sends SGI `intid` (0-15) to the physical CPU whose MPIDR_EL1 affinity is
    /// `target_mpidr` (GICv2 `GICD_SGIR` with the target's CPU-interface mask, which needs
    /// the target to have run [`Gic::init_cpu`]; GICv3 `ICC_SGI1R_EL1`, Aff0 below 16).
    /// Memory written before is visible to the target when it takes the SGI (DSB ISHST).
    pub fn send_sgi(&self, target_mpidr: u64, intid: u32) -> Result<(), GicError> {
        if intid >= SGI_COUNT {
            return Err(GicError::NotSgi);
        }
        match self {
            Gic::V2(gic) => gic.send_sgi(target_mpidr, intid),
            Gic::V3(gic) => gic.send_sgi(target_mpidr, intid),
        }
    }

    /// The INTID of the virtualisation maintenance interrupt (a PPI, 25 on all supported
    /// boards), from the device tree. Enable it with [`Gic::enable_ppi`] when the vGIC
    /// asks for maintenance interrupts (`GICH_HCR` / `ICH_HCR_EL2` UIE, LRENPIE, NPIE, ...),
    /// then read [`Gic::read_misr`] on it.
    pub fn maintenance_intid(&self) -> Option<u32> {
        match self {
            Gic::V2(gic) => gic.maintenance_intid,
            Gic::V3(gic) => gic.maintenance_intid,
        }
    }

    /// GICv2: the physical address of the virtual CPU interface (`GICV`), to be mapped in
    /// stage 2 at the guest's GICC IPA (0x0300_2000, 8 KiB); `None` on GICv3.
    pub fn virtual_cpu_interface(&self) -> Option<PhysAddr> {
        match self {
            Gic::V2(gic) => Some(gic.virtual_cpu_interface),
            Gic::V3(_) => None,
        }
    }

    /// Number of list registers: GICv2 `GICH_VTR.ListRegs` + 1, GICv3
    /// `ICH_VTR_EL2.ListRegs` + 1.
    pub fn list_register_count(&self) -> usize {
        match self {
            Gic::V2(gic) => gic.list_register_count(),
            Gic::V3(gic) => gic.list_register_count(),
        }
    }

    /// Reads list register `index`, raw: GICv2 `GICH_LR<index>` (32 bits, zero-extended),
    /// GICv3 `ICH_LR<index>_EL2`. An index at or beyond [`Gic::list_register_count`] reads
    /// 0.
    pub fn read_list_register(&self, index: usize) -> u64 {
        if index >= self.list_register_count() {
            return 0;
        }
        match self {
            Gic::V2(gic) => gic.read_list_register(index),
            Gic::V3(_) => v3::read_list_register(index),
        }
    }

    /// Writes list register `index`, raw: GICv2 `GICH_LR<index>` (low 32 bits), GICv3
    /// `ICH_LR<index>_EL2`. An index at or beyond [`Gic::list_register_count`] is ignored.
    pub fn write_list_register(&self, index: usize, value: u64) {
        if index >= self.list_register_count() {
            return;
        }
        match self {
            Gic::V2(gic) => gic.write_list_register(index, value),
            Gic::V3(_) => v3::write_list_register(index, value),
        }
    }

    /// Reads the virtual interface's hypervisor control register: GICv2 `GICH_HCR`
    /// (zero-extended), GICv3 `ICH_HCR_EL2`.
    pub fn read_hcr(&self) -> u64 {
        match self {
            Gic::V2(gic) => gic.read_hcr(),
            Gic::V3(_) => v3::read_hcr(),
        }
    }

    /// Writes GICv2 `GICH_HCR` (low 32 bits) or GICv3 `ICH_HCR_EL2`. Keep bit 0 (`En`) set
    /// while guests run.
    pub fn write_hcr(&self, value: u64) {
        match self {
            Gic::V2(gic) => gic.write_hcr(value),
            Gic::V3(_) => v3::write_hcr(value),
        }
    }

    /// Reads the virtual machine control register (the vCPU's view of its CPU interface:
    /// priority mask, binary points, group enables, EOImode): GICv2 `GICH_VMCR`
    /// (zero-extended), GICv3 `ICH_VMCR_EL2`.
    pub fn read_vmcr(&self) -> u64 {
        match self {
            Gic::V2(gic) => gic.read_vmcr(),
            Gic::V3(_) => v3::read_vmcr(),
        }
    }

    /// Writes GICv2 `GICH_VMCR` (low 32 bits) or GICv3 `ICH_VMCR_EL2`.
    pub fn write_vmcr(&self, value: u64) {
        match self {
            Gic::V2(gic) => gic.write_vmcr(value),
            Gic::V3(_) => v3::write_vmcr(value),
        }
    }

    /// The virtual machine control register value for a new vCPU (its CPU interface out of
    /// reset): GICv2 0; GICv3 `VFIQEn` (bit 3, RES1 for a system-register guest), the rest 0.
    pub fn initial_vmcr(&self) -> u64 {
        match self {
            Gic::V2(_) => v2::INITIAL_VMCR,
            Gic::V3(_) => v3::INITIAL_VMCR,
        }
    }

    /// Number of implemented active-priority registers per group: GICv2 1 (`GICH_APR`);
    /// GICv3 1, 2 or 4 from `ICH_VTR_EL2.PREbits` (5, 6 or 7 preemption bits).
    pub fn active_priority_register_count(&self) -> usize {
        match self {
            Gic::V2(_) => 1,
            Gic::V3(gic) => gic.active_priority_register_count(),
        }
    }

    /// Reads the virtual interface's active priorities: GICv2 `GICH_APR`, GICv3
    /// `ICH_AP0R<n>_EL2` and `ICH_AP1R<n>_EL2` (see [`ActivePriorities`]).
    pub fn read_apr(&self) -> ActivePriorities {
        match self {
            Gic::V2(gic) => gic.read_apr(),
            Gic::V3(gic) => gic.read_apr(),
        }
    }

    /// Writes the registers [`Gic::read_apr`] reads.
    pub fn write_apr(&self, priorities: &ActivePriorities) {
        match self {
            Gic::V2(gic) => gic.write_apr(priorities),
            Gic::V3(gic) => gic.write_apr(priorities),
        }
    }

    /// Reads the maintenance interrupt status: GICv2 `GICH_MISR` (bit 0 EOI, 1 U, 2 LRENP,
    /// 3 NP, 4-7 VGrp0E/VGrp0D/VGrp1E/VGrp1D), GICv3 `ICH_MISR_EL2` (same bits 0-7).
    pub fn read_misr(&self) -> u64 {
        match self {
            Gic::V2(gic) => gic.read_misr(),
            Gic::V3(_) => v3::read_misr(),
        }
    }

    /// End-of-interrupt status, one bit per list register (set: the LR is invalid, `HW` = 0
    /// and `EOI` = 1, i.e. its virtual interrupt was EOIed and a maintenance interrupt
    /// asked for): GICv2 `GICH_EISR1:GICH_EISR0`, GICv3 `ICH_EISR_EL2`.
    pub fn read_eisr(&self) -> u64 {
        match self {
            Gic::V2(gic) => gic.read_eisr(),
            Gic::V3(_) => v3::read_eisr(),
        }
    }

    /// Empty list register status, one bit per list register (set: the LR holds no
    /// pending or active interrupt and can be reused): GICv2 `GICH_ELRSR1:GICH_ELRSR0`,
    /// GICv3 `ICH_ELRSR_EL2`.
    pub fn read_elrsr(&self) -> u64 {
        match self {
            Gic::V2(gic) => gic.read_elrsr(),
            Gic::V3(_) => v3::read_elrsr(),
        }
    }
}

/// What the boot self-test measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SelfTestReport {
    /// The INTID acknowledged (the EL2 timer's).
    pub intid: u32,
    /// Counter ticks from the programmed deadline to the acknowledge.
    pub latency_ticks: u64,
}

/// How long past its deadline the self-test waits for the timer interrupt.
const SELF_TEST_GRACE_NANOSECONDS: u64 = 1_000_000_000;

/// Priority of the EL2 timer PPI in the self-test.
const SELF_TEST_PRIORITY: u8 = 0x80;

/// HCR_EL2 and DAIF as they were before [`InterruptRouting::to_el2_masked`].
struct InterruptRouting {
    hcr: u64,
    daif: u64,
}

impl InterruptRouting {
    /// Masks IRQ and FIQ at EL2 (PSTATE.I, F) and routes physical IRQs and FIQs to EL2
    /// (`HCR_EL2.IMO`, `FMO`), so a pending interrupt wakes WFI but is never taken.
    fn to_el2_masked() -> Self {
        use aarch64_cpu::registers::{ReadWriteable, Readable, DAIF, HCR_EL2};
        let saved = Self {
            hcr: HCR_EL2.get(),
            daif: DAIF.get(),
        };
        DAIF.modify(DAIF::I::Masked + DAIF::F::Masked);
        HCR_EL2.modify(HCR_EL2::IMO::EnableVirtualIRQ + HCR_EL2::FMO::EnableVirtualFIQ);
        aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
        saved
    }

    /// Puts HCR_EL2, then DAIF, back.
    fn restore(self) {
        use aarch64_cpu::registers::{Writeable, DAIF, HCR_EL2};
        HCR_EL2.set(self.hcr);
        aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
        DAIF.set(self.daif);
    }
}

/// The EL1 physical timer (`CNTP_CTL_EL0`, `CNTP_CVAL_EL0`) as the self-test's watchdog:
/// no guest exists yet, so it is free, and its interrupt (another PPI) ends the WFI if the
/// EL2 timer's never comes.
struct Watchdog {
    intid: Option<u32>,
}

impl Watchdog {
    /// Arms the EL1 physical timer at `deadline` and enables its PPI, unless its INTID is
    /// the EL2 timer's (a broken device tree) or cannot be enabled.
    fn arm(gic: &Gic, deadline: u64, el2_timer_intid: u32) -> Self {
        use aarch64_cpu::registers::{Writeable, CNTP_CTL_EL0, CNTP_CVAL_EL0};
        let intid = super::timer::physical_timer_intid();
        if intid == el2_timer_intid || gic.enable_ppi(intid, SELF_TEST_PRIORITY).is_err() {
            return Self { intid: None };
        }
        CNTP_CVAL_EL0.set(deadline);
        CNTP_CTL_EL0.write(CNTP_CTL_EL0::ENABLE::SET + CNTP_CTL_EL0::IMASK::CLEAR);
        aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
        Self { intid: Some(intid) }
    }

    /// Whether the watchdog's deadline has passed (`CNTP_CTL_EL0.ISTATUS`).
    fn expired(&self) -> bool {
        use aarch64_cpu::registers::{Readable, CNTP_CTL_EL0};
        self.intid.is_some() && CNTP_CTL_EL0.is_set(CNTP_CTL_EL0::ISTATUS)
    }

    /// Disables the EL1 physical timer (`CNTP_CTL_EL0` = 0) and its PPI.
    fn disarm(self, gic: &Gic) {
        use aarch64_cpu::registers::{Writeable, CNTP_CTL_EL0};
        if let Some(intid) = self.intid {
            CNTP_CTL_EL0.set(0);
            aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
            // Only fails for a non-private INTID, and enabling it succeeded.
            let _ = gic.disable_ppi(intid);
        }
    }
}

/// Boot self-test, on the boot CPU after [`Gic::init`], [`Gic::init_cpu`] and
/// [`super::timer::init`], before any guest: enables the EL2 physical timer's PPI, arms the
/// timer 1 ms ahead, waits with WFI (interrupts stay masked at EL2: PSTATE.I set, the
/// pending interrupt only wakes the CPU), acknowledges, checks the INTID is the timer's,
/// disarms the timer, ends the interrupt and disables the PPI again (so nothing fires
/// before the scheduler takes the timer over). Logs one line either way; on failure the
/// caller refuses to boot.
///
/// For the duration it sets `HCR_EL2.IMO`/`FMO` (physical interrupts target EL2, so they
/// are WFI wake-up events at EL2 on every implementation) and restores HCR_EL2 after. The
/// EL1 physical timer, armed 1 s after the deadline, is a watchdog: if the EL2 timer's
/// interrupt never comes, the watchdog's ends the wait and the test fails instead of
/// hanging (only a GIC that delivers nothing at all can still hang it).
pub fn self_test(gic: &Gic) -> Result<SelfTestReport, &'static str> {
    use super::timer;
    let intid = timer::el2_timer_intid();
    let version = gic.version().number();
    let frequency = timer::frequency();
    if frequency == 0 {
        defmt::error!("interrupts: CNTFRQ_EL0 is 0; self-test impossible");
        return Err("counter frequency unknown");
    }
    if let Err(error) = gic.enable_ppi(intid, SELF_TEST_PRIORITY) {
        defmt::error!(
            "interrupts: cannot enable EL2 timer INTID {=u32}: {=str}",
            intid,
            error.describe()
        );
        return Err("interrupt self-test failed");
    }
    let saved = InterruptRouting::to_el2_masked();
    let deadline = timer::now().saturating_add(timer::nanoseconds_to_ticks(1_000_000));
    let give_up = deadline.saturating_add(timer::nanoseconds_to_ticks(SELF_TEST_GRACE_NANOSECONDS));
    let watchdog = Watchdog::arm(gic, give_up, intid);
    timer::arm_at(deadline);
    let acknowledged = loop {
        // Read the clock before acknowledging, so a time-out is only declared after an
        // acknowledge that came later than the give-up time.
        let timed_out = timer::now() > give_up;
        if let Some(acknowledged) = gic.acknowledge() {
            break Some(acknowledged);
        }
        if timed_out {
            break None;
        }
        // Wait while some interrupt is still to come: the watchdog's if armed, else the EL2
        // timer's. Once it is due but not delivered, spin until the time-out instead.
        let due = match watchdog.intid {
            Some(_) => watchdog.expired(),
            None => timer::pending(),
        };
        if !due {
            aarch64_cpu::asm::wfi();
        }
    };
    let arrived = timer::now();
    let timer_status = timer::pending();
    timer::disarm();
    watchdog.disarm(gic);
    if let Some(acknowledged) = acknowledged {
        gic.end_of_interrupt(acknowledged);
    }
    saved.restore();
    // Disabling a PPI the GIC knows only fails for a non-private INTID, checked above.
    let _ = gic.disable_ppi(intid);
    match acknowledged {
        None => {
            defmt::error!(
                "interrupts: GICv{=u8}: EL2 timer INTID {=u32} never arrived (timer condition met: {=bool})",
                version,
                intid,
                timer_status
            );
            Err("interrupt self-test failed")
        }
        Some(acknowledged) if gic.interrupt_id(acknowledged) != intid => {
            defmt::error!(
                "interrupts: GICv{=u8}: acknowledged INTID {=u32}, expected the EL2 timer's {=u32} (timer condition met: {=bool})",
                version,
                acknowledged,
                intid,
                timer_status
            );
            Err("interrupt self-test failed")
        }
        Some(acknowledged) => {
            defmt::info!(
                "interrupts: GICv{=u8}, {=usize} list registers, EL2 timer INTID {=u32} at {=u64} Hz: self-test ok",
                version,
                gic.list_register_count(),
                intid,
                frequency
            );
            Ok(SelfTestReport {
                intid: acknowledged,
                latency_ticks: arrived.saturating_sub(deadline),
            })
        }
    }
}
