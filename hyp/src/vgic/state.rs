//! Per-interrupt state of one domain's virtual GIC, the hypervisor's inputs to it and the
//! selection of deliverable interrupts.
//!
//! SGIs (0-15) and PPIs (16-31) are banked per vCPU; SPIs (32 and up) are shared. Priorities
//! keep only their top [`PRIORITY_BITS`] bits (the low bits are RAZ/WI), as the virtual CPU
//! interface of QEMU and of the GIC-400 implements 32 levels (`ICH_VTR_EL2.PRIbits` = 4,
//! `GICH_LR.Priority` is 5 bits wide).
//!
//! The pending state follows the GIC architecture: an edge-triggered interrupt has a pending
//! latch; a level-sensitive one is pending while its input line is asserted or while a
//! software latch (`GICD_ISPENDR`) is set. GICv2 SGIs are pending per source vCPU.
//!
//! An SPI is delivered to exactly one vCPU at a time: the vCPU that holds it in a list
//! register or has it active, else the lowest vCPU of its `GICD_ITARGETSR` mask (v2) or the
//! vCPU its `GICD_IROUTER` names (v3; 1-of-N routing picks vCPU 0). This avoids two vCPUs
//! acknowledging the same SPI.

use core::cell::Cell;

use super::{Effects, GicVersion, VcpuSet, MAX_VCPUS, NR_INTIDS, NR_SGIS, NR_SPIS, SPI_BASE};

/// Implemented priority bits (32 priority levels).
pub const PRIORITY_BITS: u32 = 5;
/// Mask of the implemented priority bits within the 8-bit priority field.
pub const PRIORITY_MASK: u8 = !((1u8 << (8 - PRIORITY_BITS)) - 1);
/// `GICD_IROUTER.Interrupt_Routing_Mode`: 1-of-N routing.
pub const IROUTER_IRM: u64 = 1 << 31;
/// The writable bits of `GICD_IROUTER` (Aff3, IRM, Aff2, Aff1, Aff0).
pub const IROUTER_MASK: u64 = 0x0000_00ff_80ff_ffff;

/// The state of one interrupt (for one vCPU if banked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IrqState {
    pub(crate) enabled: bool,
    pub(crate) pending_latch: bool,
    pub(crate) line_level: bool,
    pub(crate) active: bool,
    pub(crate) priority: u8,
    pub(crate) edge: bool,
    pub(crate) group1: bool,
    /// GICv2 `GICD_ITARGETSR` CPU mask (SPIs).
    pub(crate) targets: u8,
    /// GICv3 `GICD_IROUTER` value (SPIs).
    pub(crate) route: u64,
    /// GICv2 SGIs: pending bit per source vCPU.
    pub(crate) sgi_sources: u8,
    /// GICv2 SGIs: the source vCPU of the active instance.
    pub(crate) active_source: u8,
    /// Physical INTID this virtual interrupt is tied to (LR HW bit).
    pub(crate) hardware: Option<u16>,
    /// SPIs: the vCPU holding it in a list register or having it active.
    pub(crate) holder: Option<u8>,
}

impl IrqState {
    const fn reset(intid: u32, version: GicVersion) -> IrqState {
        IrqState {
            enabled: false,
            pending_latch: false,
            line_level: false,
            active: false,
            priority: 0,
            // SGIs are always edge-triggered; PPIs and SPIs reset level-sensitive.
            edge: intid < NR_SGIS,
            group1: matches!(version, GicVersion::V3),
            targets: 0,
            route: 0,
            sgi_sources: 0,
            active_source: 0,
            hardware: None,
            holder: None,
        }
    }

    /// Whether the interrupt is enabled (forwarded to the CPU interface when pending).
    pub const fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether the interrupt is pending (latch, asserted level line or any SGI source).
    pub const fn pending(&self) -> bool {
        self.pending_latch || self.sgi_sources != 0 || (!self.edge && self.line_level)
    }

    /// Whether the interrupt is active.
    pub const fn active(&self) -> bool {
        self.active
    }

    /// The priority (only the implemented bits; lower value = higher priority).
    pub const fn priority(&self) -> u8 {
        self.priority
    }

    /// Whether the interrupt is edge-triggered (else level-sensitive).
    pub const fn edge_triggered(&self) -> bool {
        self.edge
    }

    /// Whether the interrupt is in group 1.
    pub const fn group1(&self) -> bool {
        self.group1
    }

    /// The level of the virtual input line (level-sensitive inputs).
    pub const fn line_level(&self) -> bool {
        self.line_level
    }

    /// GICv2 SGIs: the source vCPUs for which the SGI is pending.
    pub const fn sgi_sources(&self) -> u8 {
        self.sgi_sources
    }

    /// The physical INTID the interrupt is tied to, if any.
    pub const fn hardware(&self) -> Option<u16> {
        self.hardware
    }
}

/// One deliverable interrupt: its INTID and priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    /// The INTID.
    pub intid: u32,
    /// Its priority.
    pub priority: u8,
}

/// The deliverable interrupts of a vCPU, highest priority (lowest value) first, ties by the
/// lower INTID.
///
/// A bit set over the INTIDs plus their priorities, so building one on every guest entry
/// costs a few stores, and iterating picks the best of the (few) members each time.
#[derive(Clone, Debug)]
#[repr(align(8))] // copied on every delivery: whole-word moves, not a byte-wise memcpy
pub struct Deliverable {
    members: u64,
    priorities: [u8; NR_INTIDS],
}

// The member set is one word.
const _: () = assert!(NR_INTIDS <= 64 && NR_SPIS <= 32);

impl Deliverable {
    fn new() -> Deliverable {
        Deliverable {
            members: 0,
            priorities: [0; NR_INTIDS],
        }
    }

    fn push(&mut self, candidate: Candidate) {
        if let Some(slot) = self.priorities.get_mut(candidate.intid as usize) {
            *slot = candidate.priority;
            self.members |= 1 << candidate.intid;
        }
    }

    /// The number of interrupts not yet yielded.
    pub fn remaining(&self) -> usize {
        self.members.count_ones() as usize
    }
}

impl Iterator for Deliverable {
    type Item = Candidate;

    fn next(&mut self) -> Option<Candidate> {
        let mut best: Option<Candidate> = None;
        let mut rest = self.members;
        while rest != 0 {
            let intid = rest.trailing_zeros();
            rest &= rest - 1;
            let priority = self
                .priorities
                .get(intid as usize)
                .copied()
                .unwrap_or(u8::MAX);
            // Ascending INTIDs: only a strictly better priority replaces the best so far.
            if best.is_none_or(|best| priority < best.priority) {
                best = Some(Candidate { intid, priority });
            }
        }
        if let Some(best) = best {
            self.members &= !(1 << best.intid);
        }
        best
    }
}

/// One domain's virtual GIC: interrupt state, distributor and redistributor registers.
#[derive(Clone, Debug)]
pub struct Vgic {
    pub(crate) version: GicVersion,
    pub(crate) vcpus: usize,
    pub(crate) enable_group0: bool,
    pub(crate) enable_group1: bool,
    pub(crate) banked: [[IrqState; 32]; MAX_VCPUS],
    pub(crate) spis: [IrqState; NR_SPIS],
    /// GICv3 `GICR_WAKER.ProcessorSleep` per vCPU.
    pub(crate) processor_sleep: [bool; MAX_VCPUS],
    /// Bumped by every change that can alter what is deliverable or active (each
    /// [`Vgic::irq_mut`], a `touch` that changed something, a distributor enable
    /// change), so a vCPU's list registers need
    /// not be recomputed on entry when nothing changed since they were.
    generation: u64,
    /// The INTID whose [`Vgic::touch`] made the current generation, if that was the last
    /// change: a vCPU whose list registers were chosen one generation earlier need only
    /// look at this one interrupt ([`super::ListRegisters::populate`]).
    last_touch: Option<(u64, u32)>,
    /// Per vCPU, the INTIDs (bit = INTID; SPIs from [`Vgic::spis_maybe_live`]) that may be
    /// pending-and-enabled or active: a bit is set by every mutable access to the
    /// interrupt and cleared by a scan that finds it neither, so the candidate scans on
    /// guest entry look only at these instead of all 64 INTIDs.
    banked_maybe_live: [Cell<u32>; MAX_VCPUS],
    /// The same for the SPIs (bit `n` = INTID `32 + n`), shared by all vCPUs.
    spis_maybe_live: Cell<u32>,
}

impl Vgic {
    /// A virtual GIC in its reset state for `vcpus` vCPUs (clamped to 1..=[`MAX_VCPUS`]).
    pub const fn new(version: GicVersion, vcpus: usize) -> Vgic {
        let vcpus = super::Shape::new(version, vcpus).vcpus();
        let mut bank = [IrqState::reset(0, version); 32];
        let mut intid = 0;
        while intid < 32 {
            // `intid` < 32 = the bank's length, by the loop (const fn: no `get_mut`).
            #[allow(clippy::indexing_slicing)]
            {
                bank[intid] = IrqState::reset(intid as u32, version);
            }
            intid += 1;
        }
        Vgic {
            version,
            vcpus,
            enable_group0: false,
            enable_group1: false,
            banked: [bank; MAX_VCPUS],
            spis: [IrqState::reset(SPI_BASE, version); NR_SPIS],
            processor_sleep: [true; MAX_VCPUS],
            generation: 0,
            last_touch: None,
            banked_maybe_live: [const { Cell::new(u32::MAX) }; MAX_VCPUS],
            spis_maybe_live: Cell::new(u32::MAX),
        }
    }

    /// The change count (see the field); equal values mean no interrupt state changed.
    pub const fn generation(&self) -> u64 {
        self.generation
    }

    /// The INTID whose state the last change touched, if the last change (the one that
    /// made the current generation) was a [`Vgic::touch`] of one interrupt.
    pub(crate) fn last_touched(&self) -> Option<u32> {
        self.last_touch
            .filter(|(generation, _)| *generation == self.generation)
            .map(|(_, intid)| intid)
    }

    /// Records a change to the distributor-wide state.
    pub(crate) fn changed(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    /// What the domain's build fixed: version and vCPU count.
    pub const fn shape(&self) -> super::Shape {
        // `vcpus` is 1..=MAX_VCPUS (clamped by `new`).
        super::Shape {
            version: self.version,
            last_vcpu: (self.vcpus - 1) as u8,
        }
    }

    /// The GIC version the domain sees.
    pub const fn version(&self) -> GicVersion {
        self.version
    }

    /// The number of vCPUs.
    pub const fn vcpus(&self) -> usize {
        self.vcpus
    }

    /// Mask of the existing vCPUs.
    pub(crate) const fn vcpu_mask(&self) -> u8 {
        ((1u16 << self.vcpus) - 1) as u8
    }

    /// Whether a group is enabled in `GICD_CTLR`.
    pub const fn group_enabled(&self, group1: bool) -> bool {
        if group1 {
            self.enable_group1
        } else {
            self.enable_group0
        }
    }

    /// The state of `intid` as seen by `vcpu` (banked for SGIs and PPIs), if both exist.
    pub fn irq(&self, vcpu: usize, intid: u32) -> Option<&IrqState> {
        if vcpu >= self.vcpus {
            return None;
        }
        if intid < SPI_BASE {
            self.banked.get(vcpu)?.get(intid as usize)
        } else {
            self.spis.get((intid - SPI_BASE) as usize)
        }
    }

    /// [`Vgic::set_pending`] of PPI `intid` for `vcpu` and then [`Vgic::irq_mut`] of it, for
    /// a caller that takes it into a list register at once
    /// ([`super::ListRegisters::pend_own`]): the same change, counted the same way, with
    /// one lookup. `None`, with nothing counted, when it was pending already or there is
    /// no such vCPU.
    // Inlined all the way into the timer's and an event's delivery (`Hypervisor::
    // pend_and_return`): left to itself, the compiler calls it from two sites (+13 each).
    #[inline(always)]
    pub(crate) fn pend_private_to_take(
        &mut self,
        vcpu: usize,
        intid: u32,
    ) -> Option<&mut IrqState> {
        debug_assert!((NR_SGIS..SPI_BASE).contains(&intid));
        if intid >= SPI_BASE {
            return None;
        }
        // Marked maybe live even when nothing changes, as `touch` marks it.
        if self.irq_mut_unrecorded(vcpu, intid)?.pending_latch {
            return None;
        }
        // `touch`'s change and record, then `irq_mut`'s change.
        self.changed();
        self.last_touch = Some((self.generation, intid));
        self.changed();
        let irq = self.irq_mut_unrecorded(vcpu, intid)?;
        irq.pending_latch = true;
        Some(irq)
    }

    pub(crate) fn irq_mut(&mut self, vcpu: usize, intid: u32) -> Option<&mut IrqState> {
        self.changed();
        self.irq_mut_unrecorded(vcpu, intid)
    }

    /// [`Vgic::irq_mut`] without counting a change: the caller records one if it makes it.
    // Inlined all the way into the timer's and an event's delivery (`Hypervisor::
    // pend_and_return`): left to itself, the compiler calls it from two sites (+13 each).
    #[inline(always)]
    fn irq_mut_unrecorded(&mut self, vcpu: usize, intid: u32) -> Option<&mut IrqState> {
        if vcpu >= self.vcpus {
            return None;
        }
        if intid < SPI_BASE {
            let live = self.banked_maybe_live.get(vcpu)?;
            live.set(live.get() | 1 << intid);
            self.banked.get_mut(vcpu)?.get_mut(intid as usize)
        } else {
            let index = intid - SPI_BASE;
            let state = self.spis.get_mut(index as usize)?;
            self.spis_maybe_live
                .set(self.spis_maybe_live.get() | 1 << index);
            Some(state)
        }
    }

    /// Whether `intid` exists in this domain.
    pub const fn intid_exists(intid: u32) -> bool {
        (intid as usize) < NR_INTIDS
    }

    /// The vCPU an SPI is currently delivered to, if any.
    pub(crate) fn spi_target(&self, spi: &IrqState) -> Option<usize> {
        if let Some(holder) = spi.holder {
            return Some(usize::from(holder));
        }
        match self.version {
            GicVersion::V2 => {
                let mask = spi.targets & self.vcpu_mask();
                if mask == 0 {
                    None
                } else {
                    Some(mask.trailing_zeros() as usize)
                }
            }
            GicVersion::V3 => {
                if spi.route & IROUTER_IRM != 0 {
                    return Some(0);
                }
                // Our vCPUs have affinity Aff0 = index, Aff1 = Aff2 = Aff3 = 0.
                if spi.route & 0x0000_00ff_00ff_ff00 != 0 {
                    return None;
                }
                let aff0 = (spi.route & 0xff) as usize;
                (aff0 < self.vcpus).then_some(aff0)
            }
        }
    }

    /// The vCPU(s) whose delivery `intid` (as seen by `vcpu`) concerns.
    pub(crate) fn delivery_set(&self, vcpu: usize, intid: u32) -> VcpuSet {
        if intid < SPI_BASE {
            return VcpuSet::only(vcpu);
        }
        match self.irq(vcpu, intid).and_then(|spi| self.spi_target(spi)) {
            Some(target) => VcpuSet::only(target),
            None => VcpuSet::EMPTY,
        }
    }

    /// Whether `intid` is directed at `vcpu` (banked, or an SPI targeted at it).
    pub fn targets(&self, vcpu: usize, intid: u32) -> bool {
        match self.irq(vcpu, intid) {
            None => false,
            Some(_) if intid < SPI_BASE => true,
            Some(spi) => self.spi_target(spi) == Some(vcpu),
        }
    }

    /// Applies `change` to `intid` (as seen by `vcpu`); if the state changed, the vCPUs it was
    /// and is now delivered to must re-evaluate.
    pub(crate) fn touch(
        &mut self,
        vcpu: usize,
        intid: u32,
        change: impl FnOnce(&mut IrqState),
    ) -> Effects {
        let before_set = self.delivery_set(vcpu, intid);
        // Called on most exits (line levels, SGIs): only a real change counts as one.
        let Some(irq) = self.irq_mut_unrecorded(vcpu, intid) else {
            return Effects::NONE;
        };
        let before = *irq;
        change(irq);
        if *irq == before {
            return Effects::NONE;
        }
        self.changed();
        self.last_touch = Some((self.generation, intid));
        let after_set = self.delivery_set(vcpu, intid);
        Effects {
            kick: VcpuSet(before_set.0 | after_set.0),
        }
    }

    /// Whether `intid` can be signalled to `vcpu` now: enabled, pending, not active, its group
    /// enabled, and directed at `vcpu`.
    pub fn is_deliverable(&self, vcpu: usize, intid: u32) -> bool {
        match self.irq(vcpu, intid) {
            Some(irq) => {
                irq.enabled
                    && irq.pending()
                    && !irq.active
                    && self.group_enabled(irq.group1)
                    && self.targets(vcpu, intid)
            }
            None => false,
        }
    }

    /// Whether `intid` is active and belongs to `vcpu` (it must stay in or be put into a list
    /// register, enabled or not, until the guest deactivates it).
    pub fn is_active_on(&self, vcpu: usize, intid: u32) -> bool {
        self.irq(vcpu, intid).is_some_and(|irq| irq.active) && self.targets(vcpu, intid)
    }

    /// Whether `intid` goes into one of `vcpu`'s list registers: active on it, or
    /// deliverable to it ([`Vgic::is_active_on`] or [`Vgic::is_deliverable`], with one
    /// lookup: every delivery through a free LR asks).
    pub fn wants_list_register(&self, vcpu: usize, intid: u32) -> bool {
        self.irq(vcpu, intid).is_some_and(|irq| {
            irq.active || (irq.enabled && irq.pending() && self.group_enabled(irq.group1))
        }) && self.targets(vcpu, intid)
    }

    /// The deliverable interrupts of `vcpu`, highest priority first (ties by lower INTID).
    pub fn deliverable(&self, vcpu: usize) -> Deliverable {
        let mut list = Deliverable::new();
        self.each_deliverable(vcpu, |candidate| list.push(candidate));
        list
    }

    /// The active interrupts belonging to `vcpu`, highest priority first.
    pub fn active_on(&self, vcpu: usize) -> Deliverable {
        let mut list = Deliverable::new();
        self.each_active(vcpu, |candidate| list.push(candidate));
        list
    }

    /// Calls `push` with each deliverable interrupt of `vcpu`, in INTID order.
    fn each_deliverable(&self, vcpu: usize, push: impl FnMut(Candidate)) {
        self.collect_with(
            vcpu,
            |irq| irq.enabled && irq.pending(),
            Self::is_deliverable,
            push,
        );
    }

    /// Calls `push` with each active interrupt belonging to `vcpu`, in INTID order.
    fn each_active(&self, vcpu: usize, push: impl FnMut(Candidate)) {
        self.collect_with(vcpu, |irq| irq.active, Self::is_active_on, push);
    }

    /// The INTIDs (bit n = INTID n) of the active interrupts belonging to `vcpu`, and of
    /// its deliverable ones: what [`Vgic::active_on`] and [`Vgic::deliverable`] hold,
    /// without their priorities. Two words to return, where those are 72-byte values
    /// built and copied on every guest entry that delivers something.
    pub fn candidate_sets(&self, vcpu: usize) -> (u64, u64) {
        let mut active = 0u64;
        self.each_active(vcpu, |candidate| active |= 1 << candidate.intid);
        let mut deliverable = 0u64;
        self.each_deliverable(vcpu, |candidate| deliverable |= 1 << candidate.intid);
        (active, deliverable)
    }

    /// The member of `set` (bit n = INTID n of `vcpu`) to deliver first: the highest
    /// priority (lowest value), the lowest INTID among equals, as [`Deliverable`] yields.
    pub fn first_of(&self, vcpu: usize, set: u64) -> Option<u32> {
        let mut best: Option<(u8, u32)> = None;
        let mut rest = set;
        while rest != 0 {
            let intid = rest.trailing_zeros();
            rest &= rest - 1;
            let priority = self.irq(vcpu, intid).map_or(u8::MAX, |irq| irq.priority);
            if best.is_none_or(|(best, _)| priority < best) {
                best = Some((priority, intid));
            }
        }
        best.map(|(_, intid)| intid)
    }

    /// Calls `push` with each interrupt of `vcpu` for which `test` holds. This runs on
    /// every guest entry that delivers: `quick`, a cheap necessary condition on the state
    /// alone, skips most INTIDs before the full `test` (which looks up banking and
    /// targets); the may-be-live bits of interrupts found idle are dropped.
    fn collect_with(
        &self,
        vcpu: usize,
        quick: impl Fn(&IrqState) -> bool,
        test: impl Fn(&Self, usize, u32) -> bool,
        mut push: impl FnMut(Candidate),
    ) {
        let (Some(banked), Some(banked_live)) = (
            self.banked.get(vcpu).filter(|_| vcpu < self.vcpus),
            self.banked_maybe_live.get(vcpu),
        ) else {
            return;
        };
        // Whether the interrupt may be live; if not, its bit can go until it is touched.
        let live = |irq: &IrqState| (irq.enabled && irq.pending()) || irq.active;
        let mut bits = banked_live.get();
        let mut rest = bits;
        while rest != 0 {
            let intid = rest.trailing_zeros();
            rest &= rest - 1;
            let Some(irq) = banked.get(intid as usize) else {
                continue;
            };
            if !live(irq) {
                bits &= !(1 << intid);
            } else if quick(irq) && test(self, vcpu, intid) {
                push(Candidate {
                    intid,
                    priority: irq.priority,
                });
            }
        }
        banked_live.set(bits);
        let mut bits = self.spis_maybe_live.get();
        let mut rest = bits;
        while rest != 0 {
            let index = rest.trailing_zeros();
            rest &= rest - 1;
            let Some(irq) = self.spis.get(index as usize) else {
                continue;
            };
            let intid = SPI_BASE + index;
            if !live(irq) {
                bits &= !(1 << index);
            } else if quick(irq) && test(self, vcpu, intid) {
                push(Candidate {
                    intid,
                    priority: irq.priority,
                });
            }
        }
        self.spis_maybe_live.set(bits);
    }

    /// The highest-priority deliverable interrupt of `vcpu`.
    pub fn highest_pending(&self, vcpu: usize) -> Option<Candidate> {
        self.deliverable(vcpu).next()
    }

    /// Whether `vcpu` has anything to deliver (for WFI wake-up decisions). Pending states
    /// sitting in a running vCPU's list registers are not in the model: ask after
    /// [`super::ListRegisters::sync_from_hardware`].
    pub fn has_deliverable(&self, vcpu: usize) -> bool {
        // Without building the sorted list (a 72-byte value copied out: every WFI asks).
        let mut any = false;
        self.each_deliverable(vcpu, |_| any = true);
        any
    }

    /// Sets the level of a virtual input line (PPI of `vcpu`, or SPI). Only level-sensitive
    /// interrupts become pending from their line; the level is still recorded for edge ones.
    /// For an edge-triggered interrupt, a rising edge latches it pending.
    pub fn set_line_level(&mut self, vcpu: usize, intid: u32, level: bool) -> Effects {
        if intid < NR_SGIS {
            return Effects::NONE;
        }
        self.touch(vcpu, intid, |irq| {
            if irq.edge && level && !irq.line_level {
                irq.pending_latch = true;
            }
            irq.line_level = level;
        })
    }

    /// Makes `intid` pending (an edge on a virtual input, e.g. the event-channel PPI). For a
    /// GICv2 SGI this records `vcpu` itself as the source.
    pub fn set_pending(&mut self, vcpu: usize, intid: u32) -> Effects {
        let sgi_v2 = intid < NR_SGIS && self.version == GicVersion::V2;
        self.touch(vcpu, intid, |irq| {
            if sgi_v2 {
                irq.sgi_sources |= VcpuSet::only(vcpu).0;
            } else {
                irq.pending_latch = true;
            }
        })
    }

    /// Ties virtual `intid` of `vcpu` to a physical interrupt (list-register HW bit), or
    /// unties it with `None`. Ignored for SGIs.
    pub fn map_hardware(&mut self, vcpu: usize, intid: u32, physical: Option<u16>) {
        if intid < NR_SGIS {
            return;
        }
        if let Some(irq) = self.irq_mut(vcpu, intid) {
            irq.hardware = physical;
        }
    }

    /// Raises SGI `intid` from `sender` on every vCPU in `targets` (non-existent ones are
    /// ignored). On GICv2 each target records `sender` as a pending source.
    pub fn send_sgi(&mut self, sender: usize, intid: u32, targets: VcpuSet) -> Effects {
        if intid >= NR_SGIS || sender >= self.vcpus {
            return Effects::NONE;
        }
        let sgi_v2 = self.version == GicVersion::V2;
        let mut effects = Effects::NONE;
        let existing = VcpuSet(targets.0 & self.vcpu_mask());
        for target in existing.iter() {
            effects = effects.merge(self.touch(target, intid, |irq| {
                if sgi_v2 {
                    irq.sgi_sources |= VcpuSet::only(sender).0;
                } else {
                    irq.pending_latch = true;
                }
            }));
        }
        effects
    }

    /// Every vCPU that has something deliverable (after a change that concerns all of them,
    /// such as `GICD_CTLR`).
    pub(crate) fn all_vcpus(&self) -> Effects {
        Effects {
            kick: VcpuSet(self.vcpu_mask()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The candidate lists computed the slow way: every INTID, no cache.
    fn brute_force(vgic: &Vgic, vcpu: usize) -> ([bool; NR_INTIDS], [bool; NR_INTIDS]) {
        let mut deliverable = [false; NR_INTIDS];
        let mut active = [false; NR_INTIDS];
        for intid in 0..NR_INTIDS as u32 {
            deliverable[intid as usize] = vgic.is_deliverable(vcpu, intid);
            active[intid as usize] = vgic.is_active_on(vcpu, intid);
        }
        (deliverable, active)
    }

    fn members(list: Deliverable) -> [bool; NR_INTIDS] {
        let mut out = [false; NR_INTIDS];
        for candidate in list {
            out[candidate.intid as usize] = true;
        }
        out
    }

    proptest! {
        /// The live-INTID cache never hides a candidate: after any sequence of changes,
        /// the scans agree with a scan of every INTID.
        #[test]
        fn candidate_scans_agree_with_a_full_scan(
            version_v3 in any::<bool>(),
            operations in proptest::collection::vec((0u8..7, 0usize..2, 0u32..64, any::<bool>()), 1..60),
        ) {
            let version = if version_v3 { GicVersion::V3 } else { GicVersion::V2 };
            let mut vgic = Vgic::new(version, 2);
            vgic.enable_group0 = true;
            vgic.enable_group1 = true;
            for (operation, vcpu, intid, flag) in operations {
                let _ = match operation {
                    0 => vgic.set_pending(vcpu, intid),
                    1 => vgic.set_line_level(vcpu, intid, flag),
                    2 => vgic.touch(vcpu, intid, |irq| irq.enabled = flag),
                    3 => vgic.touch(vcpu, intid, |irq| irq.active = flag),
                    4 => vgic.touch(vcpu, intid, |irq| irq.pending_latch = flag),
                    5 => vgic.send_sgi(vcpu, intid % 16, VcpuSet(0b11)),
                    _ => vgic.touch(vcpu, intid, |irq| {
                        irq.targets = if flag { 1 } else { 2 };
                        irq.route = u64::from(!flag);
                    }),
                };
                for vcpu in 0..2 {
                    let (deliverable, active) = brute_force(&vgic, vcpu);
                    prop_assert_eq!(members(vgic.deliverable(vcpu)), deliverable);
                    prop_assert_eq!(members(vgic.active_on(vcpu)), active);
                }
            }
        }
    }

    #[test]
    fn reset_state() {
        let vgic = Vgic::new(GicVersion::V3, 2);
        let sgi = vgic.irq(1, 3).copied();
        assert!(sgi.is_some_and(|irq| irq.edge_triggered() && irq.group1()));
        assert!(vgic.irq(0, 27).is_some_and(|irq| !irq.edge_triggered()));
        assert!(vgic.irq(2, 3).is_none());
        assert!(vgic.irq(0, 64).is_none());
        assert!(vgic.irq(0, 63).is_some());
        assert_eq!(Vgic::new(GicVersion::V2, 0).vcpus(), 1);
        assert_eq!(Vgic::new(GicVersion::V2, 99).vcpus(), MAX_VCPUS);
        assert_eq!(PRIORITY_MASK, 0xf8);
    }

    fn enable(vgic: &mut Vgic, vcpu: usize, intid: u32, priority: u8) {
        vgic.enable_group0 = true;
        vgic.enable_group1 = true;
        if let Some(irq) = vgic.irq_mut(vcpu, intid) {
            irq.enabled = true;
            irq.priority = priority;
        }
    }

    #[test]
    fn wanting_a_list_register_is_active_on_or_deliverable() {
        for version in [GicVersion::V2, GicVersion::V3] {
            for bits in 0u32..256 {
                let mut vgic = Vgic::new(version, 2);
                vgic.enable_group0 = bits & 1 != 0;
                vgic.enable_group1 = bits & 2 != 0;
                for intid in [3, 27, 40] {
                    if let Some(irq) = vgic.irq_mut(0, intid) {
                        irq.enabled = bits & 4 != 0;
                        irq.pending_latch = bits & 8 != 0;
                        irq.line_level = bits & 16 != 0;
                        irq.active = bits & 32 != 0;
                        irq.group1 = bits & 64 != 0;
                        // An SPI for vCPU 0 or for vCPU 1.
                        let target = usize::from(bits & 128 != 0);
                        irq.targets = 1 << target;
                        irq.route = target as u64;
                    }
                    let either = vgic.is_active_on(0, intid) || vgic.is_deliverable(0, intid);
                    assert_eq!(
                        vgic.wants_list_register(0, intid),
                        either,
                        "{version:?} INTID {intid} bits {bits:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn deliverable_in_priority_order() {
        let mut vgic = Vgic::new(GicVersion::V3, 1);
        for (intid, priority) in [(40, 0x80), (27, 0x80), (31, 0x10), (5, 0xa0)] {
            enable(&mut vgic, 0, intid, priority);
            vgic.set_pending(0, intid);
        }
        let order: [u32; 4] = {
            let mut out = [0; 4];
            for (slot, candidate) in out.iter_mut().zip(vgic.deliverable(0)) {
                *slot = candidate.intid;
            }
            out
        };
        assert_eq!(order, [31, 27, 40, 5]);
        assert_eq!(vgic.highest_pending(0).map(|c| c.intid), Some(31));
        vgic.enable_group1 = false;
        assert_eq!(vgic.highest_pending(0), None);
    }

    #[test]
    fn level_line_drives_pending() {
        let mut vgic = Vgic::new(GicVersion::V3, 2);
        enable(&mut vgic, 1, 27, 0);
        let effects = vgic.set_line_level(1, 27, true);
        assert_eq!(effects.kick, VcpuSet::only(1));
        assert!(vgic.is_deliverable(1, 27));
        assert!(!vgic.is_deliverable(0, 27));
        vgic.set_line_level(1, 27, false);
        assert!(!vgic.is_deliverable(1, 27));
        assert!(vgic.set_line_level(1, 27, false).is_empty());
    }

    #[test]
    fn spi_targets_one_vcpu() {
        let mut vgic = Vgic::new(GicVersion::V2, 4);
        enable(&mut vgic, 0, 40, 0);
        if let Some(irq) = vgic.irq_mut(0, 40) {
            irq.targets = 0b1100;
        }
        vgic.set_pending(0, 40);
        assert!(!vgic.is_deliverable(0, 40));
        assert!(vgic.is_deliverable(2, 40));
        assert!(!vgic.is_deliverable(3, 40));

        let mut v3 = Vgic::new(GicVersion::V3, 4);
        enable(&mut v3, 0, 40, 0);
        if let Some(irq) = v3.irq_mut(0, 40) {
            irq.route = 3;
        }
        v3.set_pending(0, 40);
        assert!(v3.is_deliverable(3, 40));
        if let Some(irq) = v3.irq_mut(0, 40) {
            irq.route = 0x100;
        }
        assert!((0..4).all(|vcpu| !v3.is_deliverable(vcpu, 40)));
        if let Some(irq) = v3.irq_mut(0, 40) {
            irq.route = IROUTER_IRM;
        }
        assert!(v3.is_deliverable(0, 40));
    }

    #[test]
    fn gicv2_sgi_sources_accumulate() {
        let mut vgic = Vgic::new(GicVersion::V2, 3);
        let effects = vgic.send_sgi(0, 1, VcpuSet(0b110));
        assert_eq!(effects.kick, VcpuSet(0b110));
        vgic.send_sgi(2, 1, VcpuSet(0b010));
        assert_eq!(vgic.irq(1, 1).map(|irq| irq.sgi_sources()), Some(0b101));
        assert_eq!(vgic.irq(2, 1).map(|irq| irq.sgi_sources()), Some(0b001));
        assert!(vgic.send_sgi(0, 16, VcpuSet(1)).is_empty());
        assert!(vgic.send_sgi(5, 1, VcpuSet(1)).is_empty());
    }
}
