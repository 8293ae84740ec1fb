//! A small GIC driver: GICv2 (`arm,gic-400`, `arm,cortex-a15-gic`) or GICv3
//! (`arm,gic-v3`), whichever the device tree's interrupt controller node names.
//!
//! Only what the scenarios need: the distributor enabled, each CPU's interface
//! enabled with priority mask 0xF0, SGIs and PPIs (INTIDs 0..32, banked per CPU)
//! enabled at priority 0xA0, acknowledge / end of interrupt, and SGIs to one CPU.
//!
//! - GICv2: distributor and CPU interface are MMIO (`reg[0]`, `reg[1]`); SGIs through
//!   GICD_SGIR with the target list bit = vCPU id.
//! - GICv3: distributor MMIO (`reg[0]`), this CPU's redistributor found by walking the
//!   redistributor regions (`reg[1..]`) for the GICR_TYPER affinity equal to MPIDR_EL1;
//!   the CPU interface is the ICC_* system registers; SGIs through ICC_SGI1R_EL1.
//!
//! Every distributor/redistributor access is one 32-bit `ldr`/`str` (`arch::mmio`): the
//! hypervisor emulates these registers by trapping. Byte-wide registers (priorities)
//! are read-modify-written as words.

use core::fmt;
use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use crate::arch::{cpu, mmio};
use crate::dt::{GicInfo, GicVersion, MemoryRange, MAX_CPUS, MAX_GIC_RANGES};

/// Priority given to every interrupt we enable (lower is more urgent).
const PRIORITY: u32 = 0xA0;
/// CPU priority mask: everything more urgent than this is signalled.
const PRIORITY_MASK: u32 = 0xF0;
/// INTIDs at or above this from an acknowledge are special (1023 = spurious).
pub const FIRST_SPECIAL_INTID: u32 = 1020;

// Distributor (both versions).
const GICD_CTLR: usize = 0x000;
const GICD_TYPER: usize = 0x004;
const GICD_ISENABLER: usize = 0x100;
const GICD_IPRIORITYR: usize = 0x400;
const GICD_SGIR: usize = 0xF00;
const GICD_CTLR_V2_ENABLE: u32 = 1 << 0;
const GICD_CTLR_V3_ENABLE_GROUP1: u32 = 1 << 1;
const GICD_CTLR_V3_ARE_NS: u32 = 1 << 4;
const GICD_CTLR_RWP: u32 = 1 << 31;

// GICv2 CPU interface.
const GICC_CTLR: usize = 0x000;
const GICC_PMR: usize = 0x004;
const GICC_BPR: usize = 0x008;
const GICC_IAR: usize = 0x00C;
const GICC_EOIR: usize = 0x010;

// GICv3 redistributor: RD frame, then the SGI frame 64 KiB later.
const GICR_TYPER_LOW: usize = 0x008;
const GICR_TYPER_HIGH: usize = 0x00C;
const GICR_WAKER: usize = 0x014;
const GICR_TYPER_VLPIS: u32 = 1 << 1;
const GICR_TYPER_LAST: u32 = 1 << 4;
const GICR_WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const GICR_WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
const GICR_SGI_FRAME: usize = 0x1_0000;
const GICR_IGROUPR0: usize = GICR_SGI_FRAME + 0x080;
const GICR_ISENABLER0: usize = GICR_SGI_FRAME + 0x100;
const GICR_IPRIORITYR: usize = GICR_SGI_FRAME + 0x400;
const ICC_SRE_SRE: u64 = 1 << 0;

/// Polls of a busy bit before giving up.
const POLL_LIMIT: usize = 1_000_000;

/// 0 = not configured, 2 = GICv2, 3 = GICv3.
static VERSION: AtomicU8 = AtomicU8::new(0);
/// Distributor base.
static DISTRIBUTOR: AtomicUsize = AtomicUsize::new(0);
/// GICv2 CPU interface base.
static CPU_INTERFACE: AtomicUsize = AtomicUsize::new(0);
/// GICv3 redistributor regions (base, size), from `reg[1..]`.
static REDISTRIBUTOR_REGIONS: [(AtomicUsize, AtomicUsize); MAX_GIC_RANGES] =
    [const { (AtomicUsize::new(0), AtomicUsize::new(0)) }; MAX_GIC_RANGES];
/// GICv3: each CPU's redistributor (RD frame), found by [`init_this_cpu`].
static REDISTRIBUTOR: [AtomicUsize; MAX_CPUS] = [const { AtomicUsize::new(0) }; MAX_CPUS];

/// Why the GIC could not be set up.
#[derive(Clone, Copy, Debug)]
pub enum GicError {
    /// The node's `reg` has too few ranges.
    MissingRange,
    /// The GIC is not configured yet (or this CPU index is too large).
    NotConfigured,
    /// No redistributor has this CPU's affinity.
    NoRedistributor(u64),
    /// ICC_SRE_EL1.SRE stays 0: no system-register interface.
    NoSystemRegisters,
    /// A busy bit never cleared.
    Timeout(&'static str),
}

impl fmt::Display for GicError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            GicError::MissingRange => write!(formatter, "too few reg ranges"),
            GicError::NotConfigured => write!(formatter, "not configured"),
            GicError::NoRedistributor(mpidr) => {
                write!(formatter, "no redistributor for MPIDR {mpidr:#x}")
            }
            GicError::NoSystemRegisters => write!(formatter, "ICC_SRE_EL1.SRE stays 0"),
            GicError::Timeout(what) => write!(formatter, "{what} never cleared"),
        }
    }
}

fn read(address: usize) -> u32 {
    // SAFETY: every address passed here is a register of the GIC the device tree
    // describes (base from its `reg` plus an architected offset), which the stage-1 map
    // covers as Device memory (everything below 4 GiB that is not RAM).
    unsafe { mmio::read32(address) }
}

fn write(address: usize, value: u32) {
    // SAFETY: as in `read`.
    unsafe { mmio::write32(address, value) }
}

fn version() -> u8 {
    VERSION.load(Ordering::Acquire)
}

/// Which GIC is configured, if any.
pub fn configured_version() -> Option<GicVersion> {
    match version() {
        2 => Some(GicVersion::V2),
        3 => Some(GicVersion::V3),
        _ => None,
    }
}

/// Records the GIC from the device tree and enables its distributor (boot CPU, once).
pub fn configure(gic: &GicInfo) -> Result<(), GicError> {
    let ranges = gic.ranges();
    let (distributor, rest): (&MemoryRange, &[MemoryRange]) =
        ranges.split_first().ok_or(GicError::MissingRange)?;
    let distributor = distributor.base as usize;
    if rest.is_empty() {
        return Err(GicError::MissingRange);
    }
    DISTRIBUTOR.store(distributor, Ordering::Relaxed);
    match gic.version {
        GicVersion::V2 => {
            CPU_INTERFACE.store(rest[0].base as usize, Ordering::Relaxed);
            write(distributor + GICD_CTLR, GICD_CTLR_V2_ENABLE);
            VERSION.store(2, Ordering::Release);
        }
        GicVersion::V3 => {
            let regions = (gic.redistributor_regions as usize).clamp(1, rest.len());
            for (slot, range) in REDISTRIBUTOR_REGIONS.iter().zip(&rest[..regions]) {
                slot.0.store(range.base as usize, Ordering::Relaxed);
                slot.1.store(range.size as usize, Ordering::Relaxed);
            }
            write(
                distributor + GICD_CTLR,
                GICD_CTLR_V3_ARE_NS | GICD_CTLR_V3_ENABLE_GROUP1,
            );
            wait_clear(distributor + GICD_CTLR, GICD_CTLR_RWP, "GICD_CTLR.RWP")?;
            VERSION.store(3, Ordering::Release);
        }
    }
    Ok(())
}

fn wait_clear(address: usize, bits: u32, what: &'static str) -> Result<(), GicError> {
    for _ in 0..POLL_LIMIT {
        if read(address) & bits == 0 {
            return Ok(());
        }
    }
    Err(GicError::Timeout(what))
}

/// The affinity MPIDR_EL1 names, in GICR_TYPER's layout (Aff3.Aff2.Aff1.Aff0).
fn affinity_of(mpidr: u64) -> u32 {
    ((mpidr & 0xff_ffff) | ((mpidr >> 8) & 0xff00_0000)) as u32
}

/// GICv3: the RD frame whose GICR_TYPER affinity is `affinity`.
fn find_redistributor(affinity: u32) -> Option<usize> {
    for (base, size) in REDISTRIBUTOR_REGIONS.iter() {
        let (base, size) = (base.load(Ordering::Relaxed), size.load(Ordering::Relaxed));
        let mut frame = base;
        while size != 0 && frame + 0x2_0000 <= base + size {
            let typer = read(frame + GICR_TYPER_LOW);
            if read(frame + GICR_TYPER_HIGH) == affinity {
                return Some(frame);
            }
            if typer & GICR_TYPER_LAST != 0 {
                break;
            }
            frame += if typer & GICR_TYPER_VLPIS != 0 {
                0x4_0000
            } else {
                0x2_0000
            };
        }
    }
    None
}

/// Enables this CPU's interface (each CPU, after [`configure`]).
pub fn init_this_cpu() -> Result<(), GicError> {
    let index = cpu::cpu_index();
    match version() {
        2 => {
            let interface = CPU_INTERFACE.load(Ordering::Relaxed);
            write(interface + GICC_PMR, PRIORITY_MASK);
            write(interface + GICC_BPR, 0);
            write(interface + GICC_CTLR, 1);
            Ok(())
        }
        3 => {
            let slot = REDISTRIBUTOR.get(index).ok_or(GicError::NotConfigured)?;
            let mpidr = cpu::multiprocessor_affinity();
            let frame =
                find_redistributor(affinity_of(mpidr)).ok_or(GicError::NoRedistributor(mpidr))?;
            slot.store(frame, Ordering::Relaxed);
            let waker = read(frame + GICR_WAKER);
            write(frame + GICR_WAKER, waker & !GICR_WAKER_PROCESSOR_SLEEP);
            wait_clear(
                frame + GICR_WAKER,
                GICR_WAKER_CHILDREN_ASLEEP,
                "GICR_WAKER.ChildrenAsleep",
            )?;
            write(frame + GICR_IGROUPR0, u32::MAX);
            cpu::icc::set_system_register_enable(cpu::icc::system_register_enable() | ICC_SRE_SRE);
            if cpu::icc::system_register_enable() & ICC_SRE_SRE == 0 {
                return Err(GicError::NoSystemRegisters);
            }
            cpu::icc::set_priority_mask(u64::from(PRIORITY_MASK));
            cpu::icc::set_binary_point(0);
            cpu::icc::set_group1_enable(1);
            Ok(())
        }
        _ => Err(GicError::NotConfigured),
    }
}

/// The register block holding this CPU's SGI/PPI enables and priorities, and the
/// offsets of ISENABLER0 and IPRIORITYR in it.
fn private_block() -> Option<(usize, usize, usize)> {
    match version() {
        2 => Some((
            DISTRIBUTOR.load(Ordering::Relaxed),
            GICD_ISENABLER,
            GICD_IPRIORITYR,
        )),
        3 => {
            let frame = REDISTRIBUTOR.get(cpu::cpu_index())?.load(Ordering::Relaxed);
            (frame != 0).then_some((frame, GICR_ISENABLER0, GICR_IPRIORITYR))
        }
        _ => None,
    }
}

/// Enables SGI or PPI `intid` (< 32) on this CPU, at priority 0xA0.
pub fn enable_private(intid: u32) -> Result<(), GicError> {
    let (base, enable, priority) = private_block().ok_or(GicError::NotConfigured)?;
    if intid >= 32 {
        return Err(GicError::NotConfigured);
    }
    let word = base + priority + (intid as usize & !3);
    let shift = (intid % 4) * 8;
    let value = (read(word) & !(0xff << shift)) | (PRIORITY << shift);
    write(word, value);
    write(base + enable, 1 << intid);
    Ok(())
}

/// Reads GICD_TYPER (an emulated distributor register on a hypervisor: the
/// interrupt-controller trap of the `bench` scenario); `None` before [`configure`].
pub fn distributor_type() -> Option<u32> {
    configured_version()?;
    Some(read(DISTRIBUTOR.load(Ordering::Relaxed) + GICD_TYPER))
}

/// Reads GICD_CTLR: unlike GICD_TYPER, a register that holds state (the group enables a
/// guest writes), the `bench` scenario's `gic-trap-state`; `None` before [`configure`].
pub fn distributor_control() -> Option<u32> {
    configured_version()?;
    Some(read(DISTRIBUTOR.load(Ordering::Relaxed) + GICD_CTLR))
}

/// A value x20 and x28 hold across [`distributor_type_in_every_register`]'s first load.
const KEPT: u64 = 0x5eed_0000_0000_2028;

/// Reads GICD_TYPER three ways: into a register the compiler picks, into x20 and x28 (a
/// hypervisor may answer a trapped load into a caller-saved register without saving the
/// others, and must send these down its full path), and once more while x20 and x28 hold
/// [`KEPT`]. Returns the three values and whether x20 and x28 still held it after that
/// load. `None` before [`configure`].
pub fn distributor_type_in_every_register() -> Option<([u32; 3], bool)> {
    configured_version()?;
    let address = DISTRIBUTOR.load(Ordering::Relaxed) + GICD_TYPER;
    let (into_x20, into_x28): (u64, u64);
    let (again, kept_x20, kept_x28): (u64, u64, u64);
    // SAFETY: as in `read`: `address` is the distributor's GICD_TYPER. Plain `ldr`s with
    // no writeback (so the syndrome is valid); x20 and x28 are declared clobbered.
    unsafe {
        core::arch::asm!(
            "ldr w20, [{address}]",
            "ldr w28, [{address}]",
            "mov {into_x20}, x20",
            "mov {into_x28}, x28",
            "mov x20, {kept}",
            "mov x28, {kept}",
            "ldr {again:w}, [{address}]",
            "mov {kept_x20}, x20",
            "mov {kept_x28}, x28",
            address = in(reg) address,
            kept = in(reg) KEPT,
            into_x20 = out(reg) into_x20,
            into_x28 = out(reg) into_x28,
            again = out(reg) again,
            kept_x20 = out(reg) kept_x20,
            kept_x28 = out(reg) kept_x28,
            out("x20") _,
            out("x28") _,
            options(nostack, readonly, preserves_flags),
        );
    }
    let values = [again as u32, into_x20 as u32, into_x28 as u32];
    Some((values, kept_x20 == KEPT && kept_x28 == KEPT))
}

/// Acknowledges the highest-priority pending interrupt: returns the raw IAR value
/// (pass it to [`end_of_interrupt`]) and the INTID.
pub fn acknowledge() -> (u32, u32) {
    match version() {
        2 => {
            let raw = read(CPU_INTERFACE.load(Ordering::Relaxed) + GICC_IAR);
            (raw, raw & 0x3ff)
        }
        3 => {
            let raw = cpu::icc::acknowledge() as u32;
            (raw, raw & 0xff_ffff)
        }
        _ => (1023, 1023),
    }
}

/// Ends an interrupt returned by [`acknowledge`].
pub fn end_of_interrupt(raw: u32) {
    match version() {
        2 => write(CPU_INTERFACE.load(Ordering::Relaxed) + GICC_EOIR, raw),
        3 => cpu::icc::end_of_interrupt(u64::from(raw)),
        _ => {}
    }
}

/// Sends SGI `intid` (< 16) to the vCPU with index `target` and MPIDR `mpidr`.
pub fn send_sgi(target: usize, mpidr: u64, intid: u32) -> Result<(), GicError> {
    match version() {
        2 if target < 8 => {
            cpu::data_barrier(); // Earlier stores are visible to the target first.
            write(
                DISTRIBUTOR.load(Ordering::Relaxed) + GICD_SGIR,
                (1 << (16 + target)) | (intid & 0xf),
            );
            Ok(())
        }
        3 if mpidr & 0xff < 16 => {
            let aff1 = (mpidr >> 8) & 0xff;
            let aff2 = (mpidr >> 16) & 0xff;
            let aff3 = (mpidr >> 32) & 0xff;
            let value = (aff3 << 48)
                | (aff2 << 32)
                | (u64::from(intid & 0xf) << 24)
                | (aff1 << 16)
                | (1 << (mpidr & 0xf));
            cpu::icc::send_sgi(value);
            Ok(())
        }
        _ => Err(GicError::NotConfigured),
    }
}
