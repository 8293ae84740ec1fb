//! Hardware-independent list-register management, and the list-register bit layouts.
//!
//! [`ListRegisters`] mirrors one vCPU's `N` hardware list registers. Its cycle:
//!
//! 1. [`ListRegisters::populate`] (before entering the vCPU) chooses the occupants: first
//!    the interrupts active on the vCPU (they must stay visible until the guest deactivates
//!    them, enabled or not), then the deliverable ones, highest priority first. What does not
//!    fit goes into the overflow set, and [`ListRegisters::needs_maintenance`] asks for the
//!    underflow maintenance interrupt so the rest is delivered when the LRs drain. An
//!    interrupt keeps its LR index when it stays, so [`ListRegisters::write_back`] reports
//!    only the LRs whose contents changed.
//! 2. The guest runs; the hardware moves LRs from pending to active (acknowledge) and to
//!    invalid (EOI / deactivate).
//! 3. [`ListRegisters::sync_from_hardware`] (after leaving the vCPU) folds the read-back
//!    states into the [`Vgic`] model.
//!
//! Ownership of the pending state: when an edge-triggered interrupt (or one source of a
//! GICv2 SGI) is put into an LR as pending, its pending latch moves from the model into the
//! LR; [`ListRegisters::sync_from_hardware`] gives it back if the guest has not acknowledged
//! it. So an edge that arrives while the vCPU runs is never merged with one already in an
//! LR and lost. Level-sensitive interrupts stay pending in the model (their line decides);
//! their LRs request an EOI maintenance interrupt (when not tied to hardware) so the line is
//! sampled again after EOI: a line still asserted makes the interrupt pending again.
//!
//! Limitation: a write to `GICD_ICACTIVER`/`ISACTIVER` for an interrupt that sits in the LR
//! of a vCPU running elsewhere is overwritten by that vCPU's next sync (as in KVM without
//! halting the guest).

use super::state::{IrqState, Vgic};
use super::{Effects, GicVersion, VcpuSet, NR_INTIDS, NR_SGIS, SPI_BASE};

/// Most list registers the architecture allows (`ICH_VTR_EL2.ListRegs` + 1 <= 16).
pub const MAX_LIST_REGISTERS: usize = 16;

/// The state of a valid list register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LrState {
    /// Pending (state 0b01).
    Pending,
    /// Active (0b10).
    Active,
    /// Pending and active (0b11).
    PendingActive,
}

impl LrState {
    /// The state with these bits, `None` for invalid (0b00).
    pub const fn from_bits(pending: bool, active: bool) -> Option<LrState> {
        match (pending, active) {
            (true, false) => Some(LrState::Pending),
            (false, true) => Some(LrState::Active),
            (true, true) => Some(LrState::PendingActive),
            (false, false) => None,
        }
    }

    /// Whether the pending bit is set.
    pub const fn pending(self) -> bool {
        matches!(self, LrState::Pending | LrState::PendingActive)
    }

    /// Whether the active bit is set.
    pub const fn active(self) -> bool {
        matches!(self, LrState::Active | LrState::PendingActive)
    }

    /// The two-bit field value (pending = bit 0, active = bit 1).
    const fn bits(self) -> u64 {
        match self {
            LrState::Pending => 0b01,
            LrState::Active => 0b10,
            LrState::PendingActive => 0b11,
        }
    }
}

/// A portable description of one valid list register.
///
/// Aligned to 8 bytes so that copies of it (several on every interrupt delivery) are
/// whole-word moves the compiler inlines: at its natural 4-byte alignment, this
/// strict-alignment target copied it through `memcpy` byte by byte, about 60
/// instructions a copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(align(8))]
pub struct LrEntry {
    /// The virtual INTID.
    pub intid: u32,
    /// The priority (8-bit scale; GICv2 LRs keep the top 5 bits).
    pub priority: u8,
    /// Pending, active or both.
    pub state: LrState,
    /// The physical INTID deactivated together with the virtual one (HW bit), if any.
    pub hw: Option<u32>,
    /// Group 1 (else group 0).
    pub group1: bool,
    /// GICv2 SGIs: the source vCPU (`GICH_LR.CPUID`); 0 otherwise.
    pub source_cpu: u8,
    /// Request a maintenance interrupt when the guest EOIs it (only without `hw`).
    pub eoi_maintenance: bool,
}

/// Encodes `entry` as a GICv2 `GICH_LR<n>`: VirtualID bits 9:0, PhysicalID bits 19:10 (HW) or
/// EOI bits 19 and CPUID bits 12:10 (software), Priority bits 27:23, State bits 29:28, Grp1 bits 30,
/// HW bits 31.
pub fn encode_gicv2(entry: &LrEntry) -> u32 {
    let mut value = entry.intid & 0x3ff;
    match entry.hw {
        Some(physical) => value |= ((physical & 0x3ff) << 10) | (1 << 31),
        None => {
            value |= (u32::from(entry.source_cpu) & 0x7) << 10;
            if entry.eoi_maintenance {
                value |= 1 << 19;
            }
        }
    }
    value |= u32::from(entry.priority >> 3) << 23;
    value |= (entry.state.bits() as u32) << 28;
    if entry.group1 {
        value |= 1 << 30;
    }
    value
}

/// Decodes a GICv2 `GICH_LR<n>`; `None` if its state is invalid.
pub fn decode_gicv2(value: u32) -> Option<LrEntry> {
    let state = LrState::from_bits(value & (1 << 28) != 0, value & (1 << 29) != 0)?;
    let hw = value & (1 << 31) != 0;
    Some(LrEntry {
        intid: value & 0x3ff,
        priority: (((value >> 23) & 0x1f) as u8) << 3,
        state,
        hw: hw.then_some((value >> 10) & 0x3ff),
        group1: value & (1 << 30) != 0,
        source_cpu: if hw { 0 } else { ((value >> 10) & 0x7) as u8 },
        eoi_maintenance: !hw && value & (1 << 19) != 0,
    })
}

/// Encodes `entry` as a GICv3 `ICH_LR<n>_EL2`: vINTID bits 31:0, pINTID bits 44:32 (HW) or
/// EOI bits 41 (software), Priority bits 55:48, Group bits 60, HW bits 61, State bits 63:62.
pub fn encode_gicv3(entry: &LrEntry) -> u64 {
    let mut value = u64::from(entry.intid);
    match entry.hw {
        Some(physical) => value |= (u64::from(physical & 0x1fff) << 32) | (1 << 61),
        None => {
            if entry.eoi_maintenance {
                value |= 1 << 41;
            }
        }
    }
    value |= u64::from(entry.priority) << 48;
    if entry.group1 {
        value |= 1 << 60;
    }
    value | (entry.state.bits() << 62)
}

/// Decodes a GICv3 `ICH_LR<n>_EL2`; `None` if its state is invalid.
pub fn decode_gicv3(value: u64) -> Option<LrEntry> {
    let state = LrState::from_bits(value & (1 << 62) != 0, value & (1 << 63) != 0)?;
    let hw = value & (1 << 61) != 0;
    Some(LrEntry {
        intid: (value & 0xffff_ffff) as u32,
        priority: ((value >> 48) & 0xff) as u8,
        state,
        hw: hw.then_some(((value >> 32) & 0x1fff) as u32),
        group1: value & (1 << 60) != 0,
        source_cpu: 0,
        eoi_maintenance: !hw && value & (1 << 41) != 0,
    })
}

const OVERFLOW_WORDS: usize = NR_INTIDS.div_ceil(64);

/// The LRs whose contents changed since the last [`ListRegisters::write_back`]: yields
/// `(index, contents)`, `None` meaning "write an invalid (zero) LR".
///
/// It borrows the slots rather than copying them: this runs on every guest entry, and a
/// 320-byte copy there cost more than the rest of the entry.
#[derive(Clone, Debug)]
pub struct ChangedLrs<'a> {
    entries: &'a [Option<LrEntry>; MAX_LIST_REGISTERS],
    mask: u16,
}

impl ChangedLrs<'_> {
    /// Bit `n` set = LR `n` must be written.
    pub const fn mask(&self) -> u16 {
        self.mask
    }
}

impl<'a> Iterator for ChangedLrs<'a> {
    /// The entry by reference: a copy out of the slots was a call to `memcpy` (about 50
    /// instructions on every delivery).
    type Item = (usize, Option<&'a LrEntry>);

    fn next(&mut self) -> Option<(usize, Option<&'a LrEntry>)> {
        if self.mask == 0 {
            return None;
        }
        let index = self.mask.trailing_zeros() as usize;
        self.mask &= self.mask - 1;
        Some((index, self.entries.get(index).and_then(Option::as_ref)))
    }
}

/// One vCPU's list registers as the model sees them.
#[derive(Clone, Debug)]
pub struct ListRegisters {
    count: usize,
    slots: [Option<LrEntry>; MAX_LIST_REGISTERS],
    dirty: u16,
    /// The slots' pending states have been handed back to the model (after a sync, or at
    /// creation); cleared by `populate`, which moves them into the slots again.
    folded: bool,
    /// Bit `n`: LR `n`'s pending state was moved out of the model's latch (or SGI source).
    transferred: u16,
    overflow: [u64; OVERFLOW_WORDS],
    /// Bit `n`: slot `n` holds an entry. Kept beside the slots (every writer updates it)
    /// because every exit asks, and most exits have nothing in the LRs.
    valid: u16,
    /// Some bit of `overflow` is set (asked on every entry).
    overflowed: bool,
    /// The model's [`Vgic::generation`] when `populate` last chose the slots; `None`
    /// once anything else changed them. While the generation stays the same and the
    /// hardware has not been synced back, `populate` would choose the same slots again
    /// and returns at once (the common case: an exit that did not touch the vGIC).
    populated_at: Option<u64>,
}

impl ListRegisters {
    /// A manager for `count` hardware list registers (clamped to
    /// 1..=[`MAX_LIST_REGISTERS`]; read it from `GICH_VTR` / `ICH_VTR_EL2`), all invalid.
    pub const fn new(count: usize) -> ListRegisters {
        let count = if count == 0 {
            1
        } else if count > MAX_LIST_REGISTERS {
            MAX_LIST_REGISTERS
        } else {
            count
        };
        ListRegisters {
            count,
            slots: [None; MAX_LIST_REGISTERS],
            dirty: 0,
            folded: true,
            transferred: 0,
            overflow: [0; OVERFLOW_WORDS],
            valid: 0,
            overflowed: false,
            populated_at: None,
        }
    }

    /// The number of list registers managed.
    pub const fn count(&self) -> usize {
        self.count
    }

    /// The modelled contents of LR `index` (`None`: invalid or no such LR).
    pub fn entry(&self, index: usize) -> Option<LrEntry> {
        if index < self.count {
            self.slots.get(index).copied().flatten()
        } else {
            None
        }
    }

    /// Bit `n` set = LR `n` holds a valid entry (the LRs to read back on exit).
    pub fn valid_mask(&self) -> u16 {
        self.valid
    }

    /// Recomputes [`Self::valid_mask`] after the slots changed.
    fn update_valid(&mut self) {
        let mut mask = 0;
        for (index, slot) in self.slots.iter().take(self.count).enumerate() {
            if slot.is_some() {
                mask |= 1 << index;
            }
        }
        self.valid = mask;
    }

    /// The LR index holding `intid`, if any.
    #[inline(always)]
    pub fn find(&self, intid: u32) -> Option<usize> {
        // Only the valid slots: usually none or one.
        crate::bits::ones(u64::from(self.valid)).find(|&index| {
            self.slots
                .get(index)
                .is_some_and(|slot| slot.is_some_and(|entry| entry.intid == intid))
        })
    }

    /// Whether `intid` is waiting in the overflow set (did not fit into the LRs).
    pub fn is_overflowed(&self, intid: u32) -> bool {
        let word = (intid / 64) as usize;
        self.overflow
            .get(word)
            .is_some_and(|bits| bits & (1 << (intid % 64)) != 0)
    }

    /// The number of interrupts in the overflow set.
    pub fn overflow_len(&self) -> usize {
        self.overflow
            .iter()
            .map(|bits| bits.count_ones() as usize)
            .sum()
    }

    /// The interrupts in the overflow set, lowest INTID first.
    pub fn overflow(&self) -> impl Iterator<Item = u32> + '_ {
        (0..NR_INTIDS as u32).filter(|intid| self.is_overflowed(*intid))
    }

    /// Whether the underflow maintenance interrupt must be enabled (`GICH_HCR.UIE`,
    /// `ICH_HCR_EL2.UIE`): interrupts are waiting that did not fit into the LRs.
    pub fn needs_maintenance(&self) -> bool {
        self.overflowed
    }

    /// Whether the hardware LRs already hold what [`ListRegisters::populate`] would choose
    /// and nothing is left to write: the model has not changed since the last populate,
    /// and no sync came between.
    pub fn is_current(&self, vgic: &Vgic) -> bool {
        self.is_written() && self.chosen_for(vgic)
    }

    /// Whether `populate` would choose what the slots hold: it chose them for the model
    /// as it is now, and no sync came since.
    fn chosen_for(&self, vgic: &Vgic) -> bool {
        !self.folded && self.populated_at == Some(vgic.generation())
    }

    /// Marks the LRs this vCPU's slots fill as needing a write: for a vCPU arriving on a
    /// CPU whose LRs are all invalid. Empty slots still chosen for the model (the vCPU
    /// left with nothing in its LRs, see [`ListRegisters::clear`]) stay chosen, so an
    /// interrupt touched since goes into a free LR without a full choice (an event
    /// arriving for a blocked vCPU, the common case); otherwise the next `populate`
    /// chooses again.
    pub fn hardware_cleared(&mut self) {
        if self.valid != 0 {
            self.populated_at = None;
        }
        self.dirty = self.valid;
    }

    /// Marks every LR as needing a write (after another vCPU used this physical CPU's LRs).
    pub fn mark_all_dirty(&mut self) {
        self.populated_at = None;
        self.dirty = ((1u32 << self.count) - 1) as u16;
    }

    /// Forgets the LR contents after handing their state back to `vgic` (for a vCPU that
    /// is migrated or stopped after its last sync): all LRs are invalid, every one dirty.
    pub fn clear(&mut self, vgic: &mut Vgic, vcpu: usize) {
        if self.valid == 0 && !self.overflowed {
            // Nothing to hand back, and the (empty) slots are still what `populate` chose
            // if they were: that choice stays valid (see `hardware_cleared`).
            self.transferred = 0;
            self.dirty = ((1u32 << self.count) - 1) as u16;
            return;
        }
        self.fold_unrun(vgic, vcpu);
        // Only the slots in use: the whole array is 256 bytes, and this runs at every
        // switch, usually with none.
        self.clear_slots();
        if self.overflowed {
            self.overflow = [0; OVERFLOW_WORDS];
            self.overflowed = false;
        }
        self.mark_all_dirty();
    }

    /// Empties the slots in use, marking their LRs dirty.
    fn clear_slots(&mut self) {
        let valid = core::mem::take(&mut self.valid);
        self.dirty |= valid;
        for index in crate::bits::ones(u64::from(valid)) {
            if let Some(slot) = self.slots.get_mut(index) {
                *slot = None;
            }
        }
    }

    /// Takes the changed LRs to write to the hardware and forgets that they changed.
    pub fn write_back(&mut self) -> ChangedLrs<'_> {
        let mask = core::mem::take(&mut self.dirty);
        ChangedLrs {
            entries: &self.slots,
            mask,
        }
    }

    /// Folds what the hardware did into the model, after the vCPU ran. `read_back[n]` is
    /// LR `n` as decoded from the hardware (`None`: invalid, i.e. the guest completed it);
    /// LRs beyond `read_back` are taken as unchanged. Returns the other vCPUs that must
    /// re-evaluate (an SPI retargeted while it sat here).
    pub fn sync_from_hardware(
        &mut self,
        vgic: &mut Vgic,
        vcpu: usize,
        read_back: &[Option<LrEntry>],
    ) -> Effects {
        self.populated_at = None;
        if self.folded {
            // Nothing was handed to the hardware since the last sync.
            return Effects::NONE;
        }
        let mut effects = Effects::NONE;
        for index in 0..self.count {
            let Some(old) = self.slots.get(index).copied().flatten() else {
                continue;
            };
            let new_state = match read_back.get(index) {
                None => Some(old.state),
                Some(Some(entry)) if entry.intid == old.intid => Some(entry.state),
                Some(_) => None,
            };
            fold(
                vgic,
                vcpu,
                &old,
                new_state,
                self.transferred & (1 << index) != 0,
            );
            if let Some(slot) = self.slots.get_mut(index) {
                *slot = new_state.map(|state| LrEntry { state, ..old });
            }
            if old.intid >= SPI_BASE {
                for target in vgic.delivery_set(vcpu, old.intid).iter() {
                    if target != vcpu && vgic.is_deliverable(target, old.intid) {
                        effects.kick.insert(target);
                    }
                }
            }
        }
        self.update_valid();
        self.folded = true;
        self.transferred = 0;
        effects
    }

    /// The common change between two entries: one interrupt was touched (an event upcall,
    /// a timer, an SGI) since the slots were chosen, nothing else. If every candidate fit
    /// then, choosing again would keep every slot and at most add that interrupt, so it
    /// goes into a free LR without choosing again (about 500 instructions less per
    /// delivery). Returns false, having changed nothing, where a full choice is needed:
    /// the interrupt sits in an LR already, or no LR is free.
    pub fn add_touched(&mut self, vgic: &mut Vgic, vcpu: usize) -> bool {
        let previous = vgic.generation().wrapping_sub(1);
        if self.folded || self.overflowed || self.populated_at != Some(previous) {
            return false;
        }
        let Some(intid) = vgic.last_touched() else {
            return false;
        };
        if self.find(intid).is_some() {
            return false;
        }
        let free = !self.valid & (((1u32 << self.count) - 1) as u16);
        if free == 0 {
            if vgic.wants_list_register(vcpu, intid) {
                return false;
            }
        } else if intid < SPI_BASE || vgic.targets(vcpu, intid) {
            // `take` decides whether it wants an LR (`Vgic::wants_list_register`, but for
            // the target, which holds for a banked interrupt) with one lookup, not two.
            let index = free.trailing_zeros() as usize;
            let taken = take(vgic, vcpu, intid);
            self.put(index, taken);
        }
        self.populated_at = Some(vgic.generation());
        true
    }

    /// Puts what [`take`] took, if anything, into free slot `index`, to be written.
    #[inline(always)]
    fn put(&mut self, index: usize, taken: Option<(LrEntry, bool)>) {
        let Some((entry, moved)) = taken else {
            return;
        };
        if let Some(slot) = self.slots.get_mut(index) {
            *slot = Some(entry);
            self.dirty |= 1 << index;
            self.valid |= 1 << index;
            if moved {
                self.transferred |= 1 << index;
            }
        }
    }

    /// [`Vgic::set_pending`] of `intid` for `vcpu`, then, if [`ListRegisters::is_written`],
    /// [`ListRegisters::add_touched`]: what an interrupt of a running vCPU's own (its
    /// virtual timer) asks before the vCPU returns. Returns what `set_pending` returns and
    /// whether `add_touched` took the change (if not, the caller enters the usual way).
    ///
    /// For a PPI while the slots are as the last entry chose and wrote them and an LR is
    /// free, the usual case, both steps share one lookup of the interrupt and skip what
    /// that case makes certain; the model and the slots end exactly as the two steps leave
    /// them (a property test).
    // Inlined all the way into the timer's and an event's delivery (`Hypervisor::
    // pend_and_return`): left to itself, the compiler calls it from two sites (+13 each).
    #[inline(always)]
    pub fn pend_own(&mut self, vgic: &mut Vgic, vcpu: usize, intid: u32) -> (Effects, bool) {
        let free = !self.valid & (((1u32 << self.count) - 1) as u16);
        let usual = (NR_SGIS..SPI_BASE).contains(&intid)
            && self.is_written()
            && self.chosen_for(vgic)
            && !self.overflowed
            && free != 0
            && self.find(intid).is_none();
        if !usual {
            let effects = vgic.set_pending(vcpu, intid);
            let added = self.is_written() && self.add_touched(vgic, vcpu);
            return (effects, added);
        }
        let group_enables = (vgic.group_enabled(false), vgic.group_enabled(true));
        // None: pending already (nothing changed, as `set_pending` finds), or no such vCPU.
        let Some(irq) = vgic.pend_private_to_take(vcpu, intid) else {
            return (Effects::NONE, false);
        };
        let taken = take_from(irq, vcpu, intid, false, group_enables);
        self.put(free.trailing_zeros() as usize, taken);
        self.populated_at = Some(vgic.generation());
        // A banked interrupt is delivered to its own vCPU only, before and after.
        let effects = Effects {
            kick: VcpuSet::only(vcpu),
        };
        (effects, true)
    }

    /// Whether every LR holds what the slots say (nothing left to write): the last entry
    /// wrote them all, and nothing changed them since.
    pub fn is_written(&self) -> bool {
        self.dirty == 0
    }

    /// Gives the slots' transferred pending states back to the model when the hardware has
    /// not run since `populate` wrote them.
    fn fold_unrun(&mut self, vgic: &mut Vgic, vcpu: usize) {
        if self.folded {
            return;
        }
        // Every slot empty (the usual case at a switch): nothing to give back.
        if self.valid != 0 {
            for (index, slot) in self.slots.iter().take(self.count).enumerate() {
                if let Some(old) = slot {
                    let transferred = self.transferred & (1 << index) != 0;
                    fold(vgic, vcpu, old, Some(old.state), transferred);
                }
            }
        }
        self.folded = true;
        self.transferred = 0;
    }

    /// Chooses the LR contents for `vcpu` before it runs (call after
    /// [`ListRegisters::sync_from_hardware`]; calling it again before the vCPU runs is
    /// harmless). Then write [`ListRegisters::write_back`]'s LRs and set the underflow
    /// maintenance enable as [`ListRegisters::needs_maintenance`] says.
    pub fn populate(&mut self, vgic: &mut Vgic, vcpu: usize) {
        if self.chosen_for(vgic) || self.add_touched(vgic, vcpu) {
            return;
        }
        self.populated_at = None;
        self.fold_unrun(vgic, vcpu);
        self.folded = false;
        if self.overflowed {
            self.overflow = [0; OVERFLOW_WORDS];
            self.overflowed = false;
        }

        // Built by pushing and indexing: a 16-entry array of options would be initialised
        // in full on every populate, whatever the LR count (about 130 instructions).
        let mut desired = heapless::Vec::<(LrEntry, bool), MAX_LIST_REGISTERS>::new();
        // The active interrupts first, then the deliverable ones, each highest priority
        // first, until the LRs are full.
        let (mut actives, mut pendings) = vgic.candidate_sets(vcpu);
        if actives | pendings == 0 {
            // Nothing to show (a vCPU arriving with nothing pending, most often).
            self.clear_slots();
            self.transferred = 0;
            self.populated_at = Some(vgic.generation());
            return;
        }
        while desired.len() < self.count {
            let set = if actives != 0 {
                &mut actives
            } else if pendings != 0 {
                &mut pendings
            } else {
                break;
            };
            let Some(intid) = vgic.first_of(vcpu, *set) else {
                break;
            };
            *set &= !(1 << intid);
            if let Some(entry) = take(vgic, vcpu, intid) {
                // Cannot fail: fewer than `count` (at most the capacity) so far.
                let _ = desired.push(entry);
            }
        }
        // What did not fit waits in the overflow set (INTIDs below 64: its first word).
        let waiting = actives | pendings;
        if waiting != 0 {
            if let Some(word) = self.overflow.first_mut() {
                *word |= waiting;
                self.overflowed = true;
            }
        }

        if self.valid == 0 {
            // Nothing to keep in place (a vCPU arriving, or one whose LRs drained): the
            // chosen entries fill the first LRs, without the placement below.
            let mut transferred = 0u16;
            for (index, (entry, moved)) in desired.iter().enumerate() {
                if let Some(slot) = self.slots.get_mut(index) {
                    *slot = Some(*entry);
                    self.dirty |= 1 << index;
                    if *moved {
                        transferred |= 1 << index;
                    }
                }
            }
            self.transferred = transferred;
            self.valid = ((1u32 << desired.len()) - 1) as u16;
            self.populated_at = Some(vgic.generation());
            return;
        }

        // Keep each staying interrupt in its LR; put the newcomers into the free ones.
        // `chosen[lr]` is the index in `desired` that LR `lr` gets (FREE: none).
        const FREE: u8 = u8::MAX;
        let mut chosen = [FREE; MAX_LIST_REGISTERS];
        let mut placed = 0u16;
        let mut transferred = 0u16;
        for (which, (entry, moved)) in desired.iter().enumerate() {
            if let Some(index) = self.find(entry.intid) {
                if let Some(slot) = chosen.get_mut(index) {
                    *slot = which as u8;
                    placed |= 1 << which;
                    if *moved {
                        transferred |= 1 << index;
                    }
                }
            }
        }
        for (which, (_, moved)) in desired.iter().enumerate() {
            if placed & (1 << which) != 0 {
                continue;
            }
            let free = |index: &usize| chosen.get(*index) == Some(&FREE);
            // Prefer an LR that is invalid in the hardware already.
            let index = (0..self.count)
                .find(|index| free(index) && self.slots.get(*index).is_some_and(|s| s.is_none()))
                .or_else(|| (0..self.count).find(free));
            let Some(index) = index else { continue };
            if let Some(slot) = chosen.get_mut(index) {
                *slot = which as u8;
                if *moved {
                    transferred |= 1 << index;
                }
            }
        }
        self.transferred = transferred;
        // Only the LRs that exist, element by element: a whole-array assignment is a
        // 320-byte memcpy, byte by byte on this strict-alignment target when misaligned.
        for (index, (slot, which)) in self
            .slots
            .iter_mut()
            .zip(chosen)
            .enumerate()
            .take(self.count)
        {
            let new = desired.get(usize::from(which)).map(|(entry, _)| *entry);
            if *slot != new {
                self.dirty |= 1 << index;
                *slot = new;
            }
        }
        self.update_valid();
        self.populated_at = Some(vgic.generation());
    }
}

/// Folds one LR's new state (`None`: invalid) into the model; `old` is what was written,
/// `transferred` whether its pending state was moved out of the model.
fn fold(
    vgic: &mut Vgic,
    vcpu: usize,
    old: &LrEntry,
    new_state: Option<LrState>,
    transferred: bool,
) {
    let sgi_v2 = vgic.version() == GicVersion::V2 && old.intid < NR_SGIS;
    let pending = new_state.is_some_and(LrState::pending);
    let active = new_state.is_some_and(LrState::active);
    let Some(irq) = vgic.irq_mut(vcpu, old.intid) else {
        return;
    };
    irq.active = active;
    // A pending state the guest did not acknowledge goes back; an acknowledged one was
    // consumed (a level line still asserted keeps the interrupt pending by itself).
    if sgi_v2 {
        if pending && transferred {
            irq.sgi_sources |= VcpuSet::only(usize::from(old.source_cpu)).0;
        }
        if active {
            irq.active_source = old.source_cpu;
        }
    } else if pending && transferred {
        irq.pending_latch = true;
    }
    if old.intid >= SPI_BASE && !active && irq.holder == Some(vcpu as u8) {
        irq.holder = None;
    }
}

/// Builds the LR entry for `intid` on `vcpu`, moving the pending latch (or SGI source) into
/// it; also says whether it did. (Inlined into its two callers: out of line, the full
/// choice paid about 100 instructions of calls more per delivery.)
#[inline(always)]
fn take(vgic: &mut Vgic, vcpu: usize, intid: u32) -> Option<(LrEntry, bool)> {
    let sgi_v2 = vgic.version() == GicVersion::V2 && intid < NR_SGIS;
    // Both enables first: one lookup of the interrupt, not two.
    let group_enables = (vgic.group_enabled(false), vgic.group_enabled(true));
    let irq = vgic.irq_mut(vcpu, intid)?;
    take_from(irq, vcpu, intid, sgi_v2, group_enables)
}

/// [`take`] of `irq`, the state of `intid` for `vcpu` (a GICv2 SGI if `sgi_v2`), with the
/// distributor's group enables (group 0, group 1).
#[inline(always)]
fn take_from(
    irq: &mut IrqState,
    vcpu: usize,
    intid: u32,
    sgi_v2: bool,
    (group0_enabled, group1_enabled): (bool, bool),
) -> Option<(LrEntry, bool)> {
    let group_enabled = if irq.group1 {
        group1_enabled
    } else {
        group0_enabled
    };
    let hw = if intid < NR_SGIS {
        None
    } else {
        irq.hardware.map(u32::from)
    };
    let may_pend = irq.enabled && group_enabled && !(hw.is_some() && irq.active);
    let mut source_cpu = 0;
    let pending;
    let eoi_maintenance;
    let transferred;
    if sgi_v2 {
        source_cpu = if irq.active {
            irq.active_source
        } else {
            irq.sgi_sources.trailing_zeros().min(7) as u8
        };
        let bit = VcpuSet::only(usize::from(source_cpu)).0;
        pending = may_pend && irq.sgi_sources & bit != 0;
        if pending {
            irq.sgi_sources &= !bit;
        }
        transferred = pending;
        // Other sources wait for this one's EOI.
        eoi_maintenance = irq.enabled && irq.sgi_sources != 0;
    } else if irq.edge {
        pending = may_pend && irq.pending_latch;
        if pending {
            irq.pending_latch = false;
        }
        transferred = pending;
        // A pending edge held back behind the active HW interrupt cannot use the EOI bit;
        // the active entry and the pending model state meet again at the next sync.
        eoi_maintenance = hw.is_none() && irq.active && !pending && irq.pending_latch;
    } else {
        pending = may_pend && irq.pending();
        transferred = pending && irq.pending_latch;
        if transferred {
            irq.pending_latch = false;
        }
        eoi_maintenance = hw.is_none();
    }
    let state = LrState::from_bits(pending, irq.active)?;
    if intid >= SPI_BASE {
        irq.holder = Some(vcpu as u8);
    }
    let entry = LrEntry {
        intid,
        priority: irq.priority,
        state,
        hw,
        group1: irq.group1,
        source_cpu,
        eoi_maintenance,
    };
    Some((entry, transferred))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A fake vCPU: the model, its LR manager and the "hardware" LRs.
    struct Harness {
        vgic: Vgic,
        lrs: [ListRegisters; 4],
        hardware: [[Option<LrEntry>; MAX_LIST_REGISTERS]; 4],
        /// The vCPU left its CPU since it last entered.
        left: [bool; 4],
    }

    impl Harness {
        fn new(version: GicVersion, vcpus: usize, count: usize) -> Harness {
            let mut vgic = Vgic::new(version, vcpus);
            vgic.enable_group0 = true;
            vgic.enable_group1 = true;
            Harness {
                vgic,
                lrs: [
                    ListRegisters::new(count),
                    ListRegisters::new(count),
                    ListRegisters::new(count),
                    ListRegisters::new(count),
                ],
                hardware: [[None; MAX_LIST_REGISTERS]; 4],
                left: [false; 4],
            }
        }

        fn enable(&mut self, vcpu: usize, intid: u32, priority: u8) {
            if let Some(irq) = self.vgic.irq_mut(vcpu, intid) {
                irq.enabled = true;
                irq.priority = priority;
                irq.targets = 1 << vcpu;
                irq.route = vcpu as u64;
            }
        }

        /// Vcpu entry: populate and write the changed LRs to the "hardware".
        fn enter(&mut self, vcpu: usize) {
            let lrs = &mut self.lrs[vcpu];
            if core::mem::take(&mut self.left[vcpu]) {
                lrs.hardware_cleared();
            }
            lrs.populate(&mut self.vgic, vcpu);
            for (index, entry) in lrs.write_back() {
                self.hardware[vcpu][index] = entry.copied();
            }
        }

        /// Vcpu exit: sync from the "hardware" (as `virtual_interrupts::exit`: not when
        /// no LR holds anything).
        fn exit(&mut self, vcpu: usize) -> Effects {
            let (Some(lrs), Some(hardware)) = (self.lrs.get_mut(vcpu), self.hardware.get(vcpu))
            else {
                return Effects::NONE;
            };
            if lrs.valid_mask() == 0 {
                return Effects::NONE;
            }
            lrs.sync_from_hardware(&mut self.vgic, vcpu, hardware)
        }

        /// The vCPU leaves its CPU after an exit, as `virtual_interrupts::release` has it:
        /// its LRs go back to the model and the hardware is left all invalid.
        fn leave(&mut self, vcpu: usize) {
            self.exit(vcpu);
            self.lrs[vcpu].clear(&mut self.vgic, vcpu);
            self.hardware[vcpu] = [None; MAX_LIST_REGISTERS];
            self.left[vcpu] = true;
        }

        /// The guest acknowledges the highest-priority pending LR: returns (intid, source).
        fn acknowledge(&mut self, vcpu: usize) -> Option<(u32, u8)> {
            let hardware = self.hardware.get_mut(vcpu)?;
            let slot = hardware
                .iter_mut()
                .filter(|slot| slot.is_some_and(|entry| entry.state == LrState::Pending))
                .min_by_key(|slot| slot.map(|entry| (entry.priority, entry.intid)))?;
            let entry = slot.as_mut()?;
            entry.state = LrState::Active;
            Some((entry.intid, entry.source_cpu))
        }

        /// The guest EOIs (drop and deactivate) `intid`.
        fn end_of_interrupt(&mut self, vcpu: usize, intid: u32) {
            let Some(hardware) = self.hardware.get_mut(vcpu) else {
                return;
            };
            for slot in hardware.iter_mut() {
                if let Some(entry) = slot {
                    if entry.intid == intid && entry.state.active() {
                        *slot = if entry.state == LrState::PendingActive {
                            Some(LrEntry {
                                state: LrState::Pending,
                                ..*entry
                            })
                        } else {
                            None
                        };
                    }
                }
            }
        }

        /// Runs the guest's handler loop until nothing is pending; returns the number of
        /// (intid, source) deliveries, counted in `seen`.
        fn drain(&mut self, vcpu: usize, seen: &mut [[u32; 8]; 64]) {
            for _ in 0..200 {
                self.enter(vcpu);
                let Some((intid, source)) = self.acknowledge(vcpu) else {
                    self.exit(vcpu);
                    return;
                };
                if let Some(count) = seen
                    .get_mut(intid as usize)
                    .and_then(|row| row.get_mut(usize::from(source)))
                {
                    *count += 1;
                }
                self.end_of_interrupt(vcpu, intid);
                self.exit(vcpu);
            }
        }
    }

    fn entry(intid: u32, state: LrState) -> LrEntry {
        LrEntry {
            intid,
            priority: 0xa0,
            state,
            hw: None,
            group1: true,
            source_cpu: 0,
            eoi_maintenance: false,
        }
    }

    #[test]
    fn an_entry_skips_the_rebuild_until_the_model_or_the_hardware_changes() {
        let mut harness = Harness::new(GicVersion::V3, 1, 4);
        harness.enable(0, 31, 0xa0);
        harness.enable(0, 27, 0xa0);
        harness.enter(0);
        let idle = harness.lrs[0].populated_at;
        assert_eq!(idle, Some(harness.vgic.generation()));
        // A change that changes nothing (an enabled interrupt's priority set to itself
        // through `touch`) keeps the slots as they are.
        let _ = harness.vgic.touch(0, 31, |irq| irq.priority = 0xa0);
        harness.enter(0);
        assert_eq!(harness.lrs[0].populated_at, idle);
        assert_eq!(harness.lrs[0].valid_mask(), 0);
        // A real one does not: the next entry rebuilds and delivers.
        let _ = harness.vgic.set_pending(0, 31);
        harness.enter(0);
        let loaded = harness.lrs[0].populated_at;
        assert_ne!(loaded, idle);
        assert!(harness.lrs[0].find(31).is_some());
        assert!(harness.hardware[0]
            .iter()
            .any(|slot| slot.is_some_and(|entry| entry.intid == 31)));
        // Entered again with the interrupt still pending in its LR (the guest has IRQs
        // masked): nothing to redo, and what is in the LR stays.
        harness.enter(0);
        assert_eq!(harness.lrs[0].populated_at, loaded);
        assert!(harness.lrs[0].find(31).is_some());
        // A second interrupt arrives: rebuilt with both.
        let _ = harness.vgic.set_pending(0, 27);
        harness.enter(0);
        assert!(harness.lrs[0].find(31).is_some() && harness.lrs[0].find(27).is_some());
        // The guest acknowledges and ends one (27: equal priorities, lower INTID first);
        // the sync after the exit folds that back and the next entry rebuilds.
        assert_eq!(harness.acknowledge(0).map(|(intid, _)| intid), Some(27));
        harness.end_of_interrupt(0, 27);
        let _ = harness.exit(0);
        assert_eq!(harness.lrs[0].populated_at, None);
        harness.enter(0);
        assert!(harness.lrs[0].find(27).is_none() && harness.lrs[0].find(31).is_some());
    }

    #[test]
    fn gicv2_bit_positions() {
        let lr = LrEntry {
            intid: 0x3ff,
            priority: 0xf8,
            state: LrState::Pending,
            hw: None,
            group1: false,
            source_cpu: 5,
            eoi_maintenance: true,
        };
        assert_eq!(encode_gicv2(&lr), 0x1f88_17ff);
        let hw = LrEntry {
            intid: 27,
            priority: 0x08,
            state: LrState::Active,
            hw: Some(30),
            group1: true,
            source_cpu: 0,
            eoi_maintenance: false,
        };
        assert_eq!(
            encode_gicv2(&hw),
            (1 << 31) | (1 << 30) | (0b10 << 28) | (1 << 23) | (30 << 10) | 27
        );
        assert_eq!(decode_gicv2(encode_gicv2(&lr)), Some(lr));
        assert_eq!(decode_gicv2(encode_gicv2(&hw)), Some(hw));
        assert_eq!(decode_gicv2(0x1f88_17ff & !(0b11 << 28)), None);
    }

    #[test]
    fn gicv3_bit_positions() {
        let lr = LrEntry {
            intid: 40,
            priority: 0xa0,
            state: LrState::PendingActive,
            hw: None,
            group1: true,
            source_cpu: 0,
            eoi_maintenance: true,
        };
        assert_eq!(
            encode_gicv3(&lr),
            (0b11 << 62) | (1 << 60) | (0xa0 << 48) | (1 << 41) | 40
        );
        let hw = LrEntry {
            hw: Some(0x1abc),
            eoi_maintenance: false,
            state: LrState::Pending,
            ..lr
        };
        assert_eq!(
            encode_gicv3(&hw),
            (0b01 << 62) | (1 << 61) | (1 << 60) | (0xa0 << 48) | (0x1abc << 32) | 40
        );
        assert_eq!(decode_gicv3(encode_gicv3(&lr)), Some(lr));
        assert_eq!(decode_gicv3(encode_gicv3(&hw)), Some(hw));
        assert_eq!(decode_gicv3(40), None);
    }

    #[test]
    fn highest_priority_first_and_overflow() {
        let mut harness = Harness::new(GicVersion::V3, 1, 2);
        for (intid, priority) in [(40, 0x80), (41, 0x10), (42, 0x40), (27, 0x80)] {
            harness.enable(0, intid, priority);
            harness.vgic.set_pending(0, intid);
        }
        harness.enter(0);
        let lrs = &harness.lrs[0];
        assert_eq!(lrs.entry(0).map(|e| e.intid), Some(41));
        assert_eq!(lrs.entry(1).map(|e| e.intid), Some(42));
        assert!(lrs.needs_maintenance());
        assert_eq!(lrs.overflow_len(), 2);
        assert!(lrs.is_overflowed(27) && lrs.is_overflowed(40));
        // Nothing changes: nothing to write.
        harness.exit(0);
        harness.enter(0);
        assert_eq!(harness.lrs[0].write_back().mask(), 0);
        // The guest handles 41; 27 (ties broken by lower INTID) moves in, 42 stays put.
        assert_eq!(harness.acknowledge(0), Some((41, 0)));
        harness.end_of_interrupt(0, 41);
        harness.exit(0);
        harness.lrs[0].populate(&mut harness.vgic, 0);
        assert_eq!(harness.lrs[0].entry(0).map(|e| e.intid), Some(27));
        assert_eq!(harness.lrs[0].entry(1).map(|e| e.intid), Some(42));
        assert_eq!(harness.lrs[0].write_back().mask(), 0b01);
        assert!(harness.lrs[0].needs_maintenance());
    }

    #[test]
    fn edge_arriving_while_in_lr_is_not_lost() {
        let mut harness = Harness::new(GicVersion::V3, 1, 4);
        harness.enable(0, 31, 0x80);
        if let Some(irq) = harness.vgic.irq_mut(0, 31) {
            irq.edge = true;
        }
        harness.vgic.set_pending(0, 31);
        harness.enter(0);
        assert_eq!(harness.acknowledge(0), Some((31, 0)));
        // A second edge while the guest handles the first.
        harness.vgic.set_pending(0, 31);
        harness.exit(0);
        harness.enter(0);
        assert_eq!(
            harness.lrs[0].entry(0).map(|e| e.state),
            Some(LrState::PendingActive)
        );
        harness.end_of_interrupt(0, 31);
        assert_eq!(harness.acknowledge(0), Some((31, 0)));
        harness.end_of_interrupt(0, 31);
        harness.exit(0);
        harness.enter(0);
        assert_eq!(harness.lrs[0].valid_mask(), 0);
        assert!(harness
            .vgic
            .irq(0, 31)
            .is_some_and(|irq| !irq.pending() && !irq.active()));
    }

    #[test]
    fn disabled_active_interrupt_is_not_orphaned() {
        let mut harness = Harness::new(GicVersion::V2, 1, 4);
        harness.enable(0, 40, 0x80);
        if let Some(irq) = harness.vgic.irq_mut(0, 40) {
            irq.edge = true;
        }
        harness.vgic.set_pending(0, 40);
        harness.enter(0);
        assert_eq!(harness.acknowledge(0), Some((40, 0)));
        harness.exit(0);
        // The guest disables it while active, and it fires again.
        let _ = harness.vgic.write_distributor(0, 0x184, 4, 1 << 8);
        harness.vgic.set_pending(0, 40);
        harness.enter(0);
        let lr = harness.lrs[0].entry(0);
        assert_eq!(lr.map(|e| (e.intid, e.state)), Some((40, LrState::Active)));
        // EOI: inactive, still pending, but not delivered while disabled.
        harness.end_of_interrupt(0, 40);
        harness.exit(0);
        harness.enter(0);
        assert_eq!(harness.lrs[0].valid_mask(), 0);
        assert!(harness
            .vgic
            .irq(0, 40)
            .is_some_and(|irq| irq.pending() && !irq.active()));
        // Enabled again: delivered.
        let _ = harness.vgic.write_distributor(0, 0x104, 4, 1 << 8);
        harness.enter(0);
        assert_eq!(harness.acknowledge(0), Some((40, 0)));
    }

    #[test]
    fn pending_interrupt_disabled_leaves_the_lr_and_stays_pending() {
        let mut harness = Harness::new(GicVersion::V3, 1, 4);
        harness.enable(0, 33, 0x80);
        if let Some(irq) = harness.vgic.irq_mut(0, 33) {
            irq.edge = true;
        }
        harness.vgic.set_pending(0, 33);
        harness.enter(0);
        harness.exit(0);
        let _ = harness.vgic.write_distributor(0, 0x184, 4, 1 << 1);
        harness.enter(0);
        assert_eq!(harness.hardware[0][0], None);
        assert!(harness.vgic.irq(0, 33).is_some_and(|irq| irq.pending()));
    }

    #[test]
    fn level_line_still_asserted_after_eoi_is_pending_again() {
        let mut harness = Harness::new(GicVersion::V3, 1, 4);
        harness.enable(0, 27, 0x80);
        harness.vgic.set_line_level(0, 27, true);
        harness.enter(0);
        let lr = harness.lrs[0].entry(0);
        assert!(lr.is_some_and(|e| e.eoi_maintenance && e.state == LrState::Pending));
        assert_eq!(harness.acknowledge(0), Some((27, 0)));
        harness.exit(0);
        // Active, line still high: the LR shows pending+active (the line is re-sampled).
        harness.enter(0);
        harness.end_of_interrupt(0, 27);
        harness.hardware[0][0] = None;
        harness.exit(0);
        harness.enter(0);
        assert!(harness.vgic.is_deliverable(0, 27) || harness.lrs[0].find(27).is_some());
        assert_eq!(harness.acknowledge(0), Some((27, 0)));
        // The guest quiets the device; after EOI it is gone.
        harness.vgic.set_line_level(0, 27, false);
        harness.end_of_interrupt(0, 27);
        harness.exit(0);
        harness.enter(0);
        assert_eq!(harness.lrs[0].valid_mask(), 0);
    }

    #[test]
    fn level_pending_latch_is_consumed_by_acknowledge() {
        let mut harness = Harness::new(GicVersion::V3, 1, 4);
        harness.enable(0, 40, 0x80);
        let _ = harness.vgic.write_distributor(0, 0x204, 4, 1 << 8);
        harness.enter(0);
        assert_eq!(harness.acknowledge(0), Some((40, 0)));
        harness.exit(0);
        assert!(harness
            .vgic
            .irq(0, 40)
            .is_some_and(|irq| irq.active() && !irq.pending()));
        harness.enter(0);
        harness.end_of_interrupt(0, 40);
        harness.exit(0);
        harness.enter(0);
        assert_eq!(harness.lrs[0].valid_mask(), 0);
    }

    #[test]
    fn level_set_pending_while_acknowledged_is_not_lost() {
        let mut harness = Harness::new(GicVersion::V3, 1, 4);
        harness.enable(0, 40, 0x80);
        let _ = harness.vgic.write_distributor(0, 0x204, 4, 1 << 8);
        harness.enter(0);
        assert_eq!(harness.acknowledge(0), Some((40, 0)));
        // ISPENDR again after the acknowledge, before the exit.
        let _ = harness.vgic.write_distributor(0, 0x204, 4, 1 << 8);
        harness.exit(0);
        assert!(harness
            .vgic
            .irq(0, 40)
            .is_some_and(|irq| irq.active() && irq.pending()));
        harness.enter(0);
        harness.end_of_interrupt(0, 40);
        assert_eq!(harness.acknowledge(0), Some((40, 0)));
        harness.end_of_interrupt(0, 40);
        harness.exit(0);
        assert!(harness
            .vgic
            .irq(0, 40)
            .is_some_and(|irq| !irq.active() && !irq.pending()));
    }

    #[test]
    fn gicv2_sgis_from_several_sources_are_all_delivered() {
        let mut harness = Harness::new(GicVersion::V2, 4, 4);
        for vcpu in 0..4 {
            harness.enable(vcpu, 1, 0x00);
            harness.enable(vcpu, 2, 0x00);
        }
        // Every vCPU sends SGI 1 to all others, and vCPU 3 sends SGI 2 to everyone.
        for sender in 0..4 {
            let _ = harness
                .vgic
                .write_distributor(sender, 0xf00, 4, 0x0100_0001);
        }
        let _ = harness.vgic.write_distributor(3, 0xf00, 4, 0x000f_0002);
        for vcpu in 0..4 {
            let mut seen = [[0u32; 8]; 64];
            harness.drain(vcpu, &mut seen);
            for (source, count) in seen[1].iter().enumerate() {
                let expected = u32::from(source != vcpu && source < 4);
                assert_eq!(*count, expected, "vcpu {vcpu} source {source}");
            }
            assert_eq!(seen[2][3], 1);
            assert_eq!(seen[2].iter().sum::<u32>(), 1);
        }
    }

    #[test]
    fn gicv2_sgi_other_source_waits_for_eoi_maintenance() {
        let mut harness = Harness::new(GicVersion::V2, 3, 4);
        harness.enable(2, 4, 0);
        harness.vgic.send_sgi(0, 4, VcpuSet::only(2));
        harness.vgic.send_sgi(1, 4, VcpuSet::only(2));
        harness.enter(2);
        let lr = harness.lrs[2].entry(0);
        assert!(lr.is_some_and(|e| e.source_cpu == 0 && e.eoi_maintenance));
        assert_eq!(harness.lrs[2].valid_mask(), 1);
    }

    #[test]
    fn spi_is_delivered_to_one_vcpu_only() {
        let mut harness = Harness::new(GicVersion::V2, 2, 4);
        harness.enable(0, 45, 0);
        if let Some(irq) = harness.vgic.irq_mut(0, 45) {
            irq.targets = 0b11;
        }
        harness.vgic.set_line_level(0, 45, true);
        harness.enter(0);
        harness.enter(1);
        assert!(harness.lrs[0].find(45).is_some());
        assert!(harness.lrs[1].find(45).is_none());
        // Retargeted to vCPU 1 while in vCPU 0's LR: vCPU 0 keeps it until it syncs.
        let _ = harness.vgic.write_distributor(0, 0x82d, 1, 0b10);
        harness.enter(1);
        assert!(harness.lrs[1].find(45).is_none());
        let effects = harness.exit(0);
        assert!(effects.kick.contains(1));
        harness.enter(0);
        harness.enter(1);
        assert!(harness.lrs[0].find(45).is_none());
        assert!(harness.lrs[1].find(45).is_some());
    }

    #[test]
    fn populate_twice_without_running_loses_nothing() {
        let mut harness = Harness::new(GicVersion::V3, 1, 4);
        harness.enable(0, 31, 0);
        harness.vgic.set_pending(0, 31);
        harness.enter(0);
        harness.enter(0);
        assert!(harness.lrs[0].find(31).is_some());
        let mut lrs = harness.lrs[0].clone();
        lrs.clear(&mut harness.vgic, 0);
        assert!(harness.vgic.irq(0, 31).is_some_and(|irq| irq.pending()));
        assert_eq!(lrs.valid_mask(), 0);
        assert_eq!(lrs.write_back().mask(), 0b1111);
    }

    #[test]
    fn sync_handles_missing_and_mismatched_read_back() {
        let mut harness = Harness::new(GicVersion::V3, 1, 2);
        harness.enable(0, 40, 0);
        harness.vgic.set_pending(0, 40);
        harness.enter(0);
        let mut lrs = harness.lrs[0].clone();
        // An empty read-back means "unchanged".
        lrs.sync_from_hardware(&mut harness.vgic, 0, &[]);
        assert!(harness.vgic.irq(0, 40).is_some_and(|irq| irq.pending()));
        lrs.populate(&mut harness.vgic, 0);
        // A read-back naming another INTID counts as invalid.
        lrs.sync_from_hardware(&mut harness.vgic, 0, &[Some(entry(41, LrState::Active))]);
        assert!(harness
            .vgic
            .irq(0, 40)
            .is_some_and(|irq| !irq.pending() && !irq.active()));
        assert!(harness.vgic.irq(0, 41).is_some_and(|irq| !irq.active()));
    }

    #[derive(Clone, Debug)]
    enum Operation {
        Enable(usize, u32, bool),
        Pending(usize, u32),
        Line(usize, u32, bool),
        Priority(usize, u32, u8),
        Target(u32, u8),
        Sgi(usize, u8, u32),
        Acknowledge(usize),
        EndOfInterrupt(usize, u32),
        Run(usize),
        /// The vCPU leaves its CPU (`virtual_interrupts::release`); it next enters on
        /// cleared LRs.
        Leave(usize),
    }

    fn operation() -> impl Strategy<Value = Operation> {
        let vcpu = 0usize..3;
        let intid = 0u32..64;
        prop_oneof![
            (vcpu.clone(), intid.clone(), any::<bool>())
                .prop_map(|(v, i, e)| Operation::Enable(v, i, e)),
            (vcpu.clone(), intid.clone()).prop_map(|(v, i)| Operation::Pending(v, i)),
            (vcpu.clone(), 16u32..64, any::<bool>()).prop_map(|(v, i, l)| Operation::Line(v, i, l)),
            (vcpu.clone(), intid.clone(), any::<u8>())
                .prop_map(|(v, i, p)| Operation::Priority(v, i, p)),
            (32u32..64, any::<u8>()).prop_map(|(i, t)| Operation::Target(i, t)),
            (vcpu.clone(), any::<u8>(), 0u32..16).prop_map(|(v, t, i)| Operation::Sgi(v, t, i)),
            vcpu.clone().prop_map(Operation::Acknowledge),
            (vcpu.clone(), intid).prop_map(|(v, i)| Operation::EndOfInterrupt(v, i)),
            vcpu.clone().prop_map(Operation::Run),
            vcpu.prop_map(Operation::Leave),
        ]
    }

    fn apply(harness: &mut Harness, operation: &Operation) {
        match *operation {
            Operation::Enable(vcpu, intid, on) => {
                let offset = if on { 0x100 } else { 0x180 } + u64::from(intid / 32) * 4;
                let _ = harness
                    .vgic
                    .write_distributor(vcpu, offset, 4, 1 << (intid % 32));
            }
            Operation::Pending(vcpu, intid) => {
                harness.vgic.set_pending(vcpu, intid);
            }
            Operation::Line(vcpu, intid, level) => {
                harness.vgic.set_line_level(vcpu, intid, level);
            }
            Operation::Priority(vcpu, intid, priority) => {
                let _ = harness.vgic.write_distributor(
                    vcpu,
                    0x400 + u64::from(intid),
                    1,
                    u64::from(priority),
                );
            }
            Operation::Target(intid, targets) => {
                let _ = harness.vgic.write_distributor(
                    0,
                    0x800 + u64::from(intid),
                    1,
                    u64::from(targets),
                );
            }
            Operation::Sgi(sender, targets, intid) => {
                if harness.vgic.version() == GicVersion::V3 {
                    harness
                        .vgic
                        .write_sgi1r(sender, (u64::from(intid) << 24) | u64::from(targets));
                } else {
                    let _ = harness.vgic.write_distributor(
                        sender,
                        0xf00,
                        4,
                        (u64::from(targets) << 16) | u64::from(intid),
                    );
                }
            }
            Operation::Acknowledge(vcpu) => {
                harness.acknowledge(vcpu);
            }
            Operation::EndOfInterrupt(vcpu, intid) => harness.end_of_interrupt(vcpu, intid),
            Operation::Leave(vcpu) => harness.leave(vcpu),
            Operation::Run(vcpu) => {
                harness.exit(vcpu);
                // What a choice from scratch would give, to compare with the shortcuts
                // `populate` takes (`chosen_for`, `add_touched`).
                let (mut full, mut full_vgic) = (harness.lrs[vcpu].clone(), harness.vgic.clone());
                full.populated_at = None;
                full.populate(&mut full_vgic, vcpu);
                harness.enter(vcpu);
                let sorted = |lrs: &ListRegisters| {
                    let mut entries: Vec<LrEntry> = (0..lrs.count())
                        .filter_map(|index| lrs.entry(index))
                        .collect();
                    entries.sort_by_key(|entry| entry.intid);
                    entries
                };
                assert_eq!(sorted(&harness.lrs[vcpu]), sorted(&full), "vCPU {vcpu}");
                assert_eq!(harness.lrs[vcpu].overflow_len(), full.overflow_len());
                for other in 0..3 {
                    for intid in 0..NR_INTIDS as u32 {
                        assert_eq!(harness.vgic.irq(other, intid), full_vgic.irq(other, intid));
                    }
                }
                // After the changed LRs are written, the hardware holds what the model chose.
                for index in 0..MAX_LIST_REGISTERS {
                    assert_eq!(
                        harness.hardware[vcpu][index],
                        harness.lrs[vcpu].entry(index)
                    );
                }
            }
        }
    }

    fn check_invariants(harness: &Harness) -> Result<(), TestCaseError> {
        for vcpu in 0..3 {
            let lrs = &harness.lrs[vcpu];
            // `is_current` promises that populating again would write nothing.
            if lrs.is_current(&harness.vgic) {
                let (mut again, mut vgic) = (lrs.clone(), harness.vgic.clone());
                again.populate(&mut vgic, vcpu);
                prop_assert_eq!(again.write_back().count(), 0, "vCPU {} current", vcpu);
                for index in 0..lrs.count() {
                    prop_assert_eq!(again.entry(index), lrs.entry(index));
                }
            }
            // The cached summaries agree with the slots and the overflow set.
            let valid = (0..lrs.count())
                .filter(|index| lrs.entry(*index).is_some())
                .fold(0u16, |mask, index| mask | 1 << index);
            prop_assert_eq!(lrs.valid_mask(), valid);
            prop_assert_eq!(lrs.needs_maintenance(), lrs.overflow_len() != 0);
            for index in 0..lrs.count() {
                let Some(entry) = lrs.entry(index) else {
                    continue;
                };
                prop_assert!(
                    !lrs.is_overflowed(entry.intid),
                    "{} in LR and overflow",
                    entry.intid
                );
                prop_assert_eq!(lrs.find(entry.intid), Some(index), "{} twice", entry.intid);
            }
            prop_assert!(lrs.valid_mask() < (1 << lrs.count()));
        }
        // An SPI sits in at most one vCPU's LRs.
        for intid in SPI_BASE..NR_INTIDS as u32 {
            let holders = (0..3)
                .filter(|vcpu| harness.lrs[*vcpu].find(intid).is_some())
                .count();
            prop_assert!(holders <= 1, "SPI {} in {} vCPUs' LRs", intid, holders);
        }
        Ok(())
    }

    /// The usual case of `pend_own`: a vCPU entered with nothing to deliver, then its
    /// enabled PPI made pending goes straight into the first LR.
    #[test]
    fn pend_own_puts_a_private_interrupt_straight_into_a_free_lr() {
        for version in [GicVersion::V2, GicVersion::V3] {
            let mut harness = Harness::new(version, 2, 4);
            harness.enable(1, 27, 0xa0);
            harness.enter(1);
            assert_eq!(harness.lrs[1].valid_mask(), 0);
            let generation = harness.vgic.generation();
            let (effects, added) = harness.lrs[1].pend_own(&mut harness.vgic, 1, 27);
            assert_eq!((effects.kick, added), (VcpuSet::only(1), true));
            assert_eq!(harness.vgic.generation(), generation + 2);
            let entry = harness.lrs[1].entry(0).unwrap();
            assert_eq!(
                (entry.intid, entry.state, entry.priority),
                (27, LrState::Pending, 0xa0)
            );
            assert!(!harness.lrs[1].is_written(), "LR 0 is left to write");
            // Again while the LR holds it: latched in the model, the general way.
            let (effects, added) = harness.lrs[1].pend_own(&mut harness.vgic, 1, 27);
            assert_eq!((effects.kick, added), (VcpuSet::only(1), false));
            assert!(harness.vgic.irq(1, 27).unwrap().pending_latch);
        }
    }

    proptest! {
        #[test]
        fn gicv2_lr_encoding_round_trips(
            intid in 0u32..1020,
            priority in any::<u8>(),
            bits in 1u8..4,
            hw in proptest::option::of(16u32..1020),
            group1 in any::<bool>(),
            source in 0u8..8,
            eoi in any::<bool>(),
        ) {
            let state = LrState::from_bits(bits & 1 != 0, bits & 2 != 0).unwrap_or(LrState::Pending);
            let lr = LrEntry {
                intid,
                priority: priority & 0xf8,
                state,
                hw,
                group1,
                source_cpu: if hw.is_some() { 0 } else { source },
                eoi_maintenance: hw.is_none() && eoi,
            };
            prop_assert_eq!(decode_gicv2(encode_gicv2(&lr)), Some(lr));
        }

        #[test]
        fn gicv3_lr_encoding_round_trips(
            intid in any::<u32>(),
            priority in any::<u8>(),
            bits in 1u8..4,
            hw in proptest::option::of(0u32..0x2000),
            group1 in any::<bool>(),
            eoi in any::<bool>(),
        ) {
            let state = LrState::from_bits(bits & 1 != 0, bits & 2 != 0).unwrap_or(LrState::Pending);
            let lr = LrEntry {
                intid,
                priority,
                state,
                hw,
                group1,
                source_cpu: 0,
                eoi_maintenance: hw.is_none() && eoi,
            };
            prop_assert_eq!(decode_gicv3(encode_gicv3(&lr)), Some(lr));
        }

        #[test]
        fn lrs_and_overflow_never_overlap(
            v3 in any::<bool>(),
            count in 1usize..5,
            operations in proptest::collection::vec(operation(), 1..120),
        ) {
            let version = if v3 { GicVersion::V3 } else { GicVersion::V2 };
            let mut harness = Harness::new(version, 3, count);
            for operation in &operations {
                apply(&mut harness, operation);
                check_invariants(&harness)?;
            }
        }

        #[test]
        fn no_pending_state_is_lost(
            v3 in any::<bool>(),
            count in 1usize..5,
            operations in proptest::collection::vec(operation(), 1..150),
        ) {
            let version = if v3 { GicVersion::V3 } else { GicVersion::V2 };
            let mut harness = Harness::new(version, 3, count);
            // outstanding[bank][intid][source]: made pending, not yet acknowledged.
            let mut outstanding = [[[false; 3]; 64]; 3];
            let sgi_v2 = |intid: u32| !v3 && intid < NR_SGIS;
            let bank = |vcpu: usize, intid: u32| if intid < SPI_BASE { vcpu } else { 0 };
            for operation in &operations {
                match *operation {
                    Operation::Pending(vcpu, intid) => {
                        let source = if sgi_v2(intid) { vcpu } else { 0 };
                        outstanding[bank(vcpu, intid)][intid as usize][source] = true;
                    }
                    Operation::Sgi(sender, targets, intid) => {
                        for target in (0..3).filter(|target| targets & (1 << target) != 0) {
                            let source = if v3 { 0 } else { sender };
                            outstanding[target][intid as usize][source] = true;
                        }
                    }
                    _ => {}
                }
                if let Operation::Acknowledge(vcpu) = *operation {
                    if let Some((intid, source)) = harness.acknowledge(vcpu) {
                        let source = if sgi_v2(intid) { usize::from(source) } else { 0 };
                        outstanding[bank(vcpu, intid)][intid as usize][source] = false;
                    }
                } else {
                    apply(&mut harness, operation);
                }
                for (bank_index, intids) in outstanding.iter().enumerate() {
                    for (intid, sources) in intids.iter().enumerate() {
                        for (source, waiting) in sources.iter().enumerate() {
                            if !*waiting {
                                continue;
                            }
                            let intid = intid as u32;
                            let in_model = harness.vgic.irq(bank_index, intid).is_some_and(|irq| {
                                if sgi_v2(intid) {
                                    irq.sgi_sources() & (1 << source) != 0
                                } else {
                                    irq.pending()
                                }
                            });
                            let vcpus = if intid < SPI_BASE { bank_index..bank_index + 1 } else { 0..3 };
                            let in_lr = vcpus.into_iter().any(|vcpu| {
                                harness.hardware[vcpu].iter().flatten().any(|entry| {
                                    entry.intid == intid
                                        && entry.state.pending()
                                        && (!sgi_v2(intid) || usize::from(entry.source_cpu) == source)
                                })
                            });
                            prop_assert!(
                                in_model || in_lr,
                                "lost: bank {} intid {} source {}",
                                bank_index,
                                intid,
                                source
                            );
                        }
                    }
                }
            }
        }

        /// `pend_own` is `set_pending` then (LRs written) `add_touched`, whatever the state:
        /// the same effects, the same answer, the same model and slots to the last field.
        #[test]
        fn pend_own_is_set_pending_then_add_touched(
            v3 in any::<bool>(),
            count in 1usize..5,
            operations in proptest::collection::vec(operation(), 0..80),
            entered in any::<bool>(),
            enabled in any::<bool>(),
            vcpu in 0usize..3,
            intid in prop_oneof![16u32..32, 0u32..64],
        ) {
            let version = if v3 { GicVersion::V3 } else { GicVersion::V2 };
            let mut harness = Harness::new(version, 3, count);
            for operation in &operations {
                apply(&mut harness, operation);
            }
            if enabled {
                harness.enable(vcpu, intid, 0x80);
            }
            if entered {
                // As the vCPU's last entry left its slots: the usual case.
                harness.enter(vcpu);
            }
            let (mut vgic, mut lrs) = (harness.vgic.clone(), harness.lrs[vcpu].clone());
            let expected_effects = vgic.set_pending(vcpu, intid);
            let expected_added = lrs.is_written() && lrs.add_touched(&mut vgic, vcpu);
            let (effects, added) = harness.lrs[vcpu].pend_own(&mut harness.vgic, vcpu, intid);
            prop_assert_eq!((effects, added), (expected_effects, expected_added));
            prop_assert_eq!(std::format!("{:?}", harness.vgic), std::format!("{:?}", vgic));
            prop_assert_eq!(
                std::format!("{:?}", harness.lrs[vcpu]),
                std::format!("{:?}", lrs)
            );
        }

        #[test]
        fn every_edge_is_delivered_exactly_once(
            count in 1usize..4,
            intids in proptest::collection::btree_set(32u32..64, 1..20),
            priorities in proptest::collection::vec(any::<u8>(), 20),
        ) {
            let mut harness = Harness::new(GicVersion::V3, 1, count);
            for (intid, priority) in intids.iter().zip(priorities.iter()) {
                harness.enable(0, *intid, *priority & 0xf8);
                if let Some(irq) = harness.vgic.irq_mut(0, *intid) {
                    irq.edge = true;
                }
                harness.vgic.set_pending(0, *intid);
            }
            let mut seen = [[0u32; 8]; 64];
            harness.drain(0, &mut seen);
            for intid in 0..64u32 {
                let expected = u32::from(intids.contains(&intid));
                prop_assert_eq!(seen[intid as usize][0], expected);
            }
            prop_assert!(!harness.lrs[0].needs_maintenance());
        }
    }
}
