//! Glue between a domain's vGIC model ([`crate::vgic`]) and the hardware's virtual CPU
//! interface: list registers written when a vCPU is entered and read back when it exits,
//! the virtual interface state switched with the vCPU, and trapped distributor and
//! redistributor accesses emulated.

use crate::addr::IntermediatePhysAddr;
use crate::arch;
use crate::cpu::CpuState;
use crate::esr::EmulatableAccess;
use crate::vcpu::GuestRegisters;
use crate::vgic::list_registers::{
    decode_gicv2, decode_gicv3, encode_gicv2, encode_gicv3, ListRegisters, LrEntry,
    MAX_LIST_REGISTERS,
};
use crate::vgic::{AccessError, Effects, Frame, GicVersion, Vgic};

/// VMCR and the active priorities of a vCPU: the parts of its virtual CPU interface that
/// are not list registers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InterfaceState {
    /// GICH_VMCR / ICH_VMCR_EL2.
    pub vmcr: u64,
    /// Active priorities: group 0, then group 1 (GICv2 has one word, in group 0).
    pub active_priorities: [[u32; 4]; 2],
    /// Saved at least once (until then the interface's reset VMCR applies).
    pub initialised: bool,
}

/// The virtual-interrupt state a vCPU control block carries.
#[derive(Clone, Debug)]
pub struct VcpuInterrupts {
    /// What the list registers hold for this vCPU.
    pub list_registers: ListRegisters,
    /// VMCR and active priorities while the vCPU is off the CPU.
    pub interface: InterfaceState,
}

impl VcpuInterrupts {
    /// State for a vCPU on hardware with `list_registers` list registers.
    pub const fn new(list_registers: usize) -> Self {
        Self {
            list_registers: ListRegisters::new(list_registers),
            interface: InterfaceState {
                vmcr: 0,
                active_priorities: [[0; 4]; 2],
                initialised: false,
            },
        }
    }
}

fn encode(version: GicVersion, entry: &LrEntry) -> u64 {
    match version {
        GicVersion::V2 => u64::from(encode_gicv2(entry)),
        GicVersion::V3 => encode_gicv3(entry),
    }
}

fn decode(version: GicVersion, value: u64) -> Option<LrEntry> {
    match version {
        GicVersion::V2 => decode_gicv2(value as u32),
        GicVersion::V3 => decode_gicv3(value),
    }
}

/// How the list registers of this CPU stand when a vCPU is entered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// The vCPU was the last one here: the LRs hold what it left in them.
    Returning,
    /// Another vCPU used this CPU, and left every LR invalid ([`release`]).
    ClearedBefore,
    /// Another vCPU may have left anything in them: every LR is rewritten.
    Unknown,
}

/// Puts vCPU `vcpu`'s interrupts into the list registers before it runs. A vCPU that was
/// not the last one on this CPU also loads its interface state.
#[inline(always)]
pub fn enter(vgic: &mut Vgic, state: &mut VcpuInterrupts, vcpu: usize, arrival: Arrival) {
    if arrival == Arrival::Returning {
        let list_registers = &mut state.list_registers;
        // Most entries follow an exit that changed nothing here: the LRs and
        // ICH_HCR/GICH_HCR (written only on entries) are as the last entry left them.
        if list_registers.is_current(vgic) {
            return;
        }
        // The next most common: one interrupt touched since then (a timer, an event, an
        // SGI), put into a free LR. Nothing overflowed then or now, so the maintenance
        // request that entry wrote stays right: at most that one LR to write.
        if list_registers.is_written() && list_registers.add_touched(vgic, vcpu) {
            write_changed(vgic.version(), list_registers);
            return;
        }
    }
    refill(vgic, state, vcpu, arrival);
}

/// Makes `intid` pending for `vcpu` ([`Vgic::set_pending`]) and enters it again, for a vCPU
/// returning to this CPU (as [`enter`] with [`Arrival::Returning`]), trying first what
/// that finds in the usual case: the one interrupt touched, put into a free LR
/// ([`crate::vgic::ListRegisters::pend_own`]). Returns what `set_pending` returns.
// Inlined all the way into the timer's and an event's delivery (`Hypervisor::
// pend_and_return`): left to itself, the compiler calls it from two sites (+13 each).
#[inline(always)]
pub fn pend_and_return(
    vgic: &mut Vgic,
    state: &mut VcpuInterrupts,
    vcpu: usize,
    intid: u32,
) -> Effects {
    let list_registers = &mut state.list_registers;
    let (effects, added) = list_registers.pend_own(vgic, vcpu, intid);
    if added {
        write_changed(vgic.version(), list_registers);
    } else {
        enter_returning(vgic, state, vcpu);
    }
    effects
}

/// [`enter`] of a returning vCPU, out of line: [`pend_and_return`]'s unusual case, kept
/// from growing the usual one's frame.
#[inline(never)]
fn enter_returning(vgic: &mut Vgic, state: &mut VcpuInterrupts, vcpu: usize) {
    enter(vgic, state, vcpu, Arrival::Returning);
}

/// Writes the LRs whose contents the model changed. (Inlined: a call costs its callers
/// more than the loop.)
#[inline(always)]
fn write_changed(version: GicVersion, list_registers: &mut ListRegisters) {
    for (index, entry) in list_registers.write_back() {
        let value = entry.map_or(0, |entry| encode(version, entry));
        arch::write_list_register(index, value);
    }
}

/// The rest of [`enter`], kept out of line so the common case stays a few instructions.
#[inline(never)]
fn refill(vgic: &mut Vgic, state: &mut VcpuInterrupts, vcpu: usize, arrival: Arrival) {
    match arrival {
        Arrival::Returning => {}
        // Only the LRs the vCPU fills need writing (usually none after a switch: four
        // writes of zero saved).
        Arrival::ClearedBefore => {
            state.list_registers.hardware_cleared();
            arch::restore_virtual_interface(&state.interface);
        }
        Arrival::Unknown => {
            state.list_registers.mark_all_dirty();
            arch::restore_virtual_interface(&state.interface);
        }
    }
    state.list_registers.populate(vgic, vcpu);
    write_changed(vgic.version(), &mut state.list_registers);
    arch::set_virtual_interface(state.list_registers.needs_maintenance());
}

/// Folds what the guest did with its list registers back into the model after an exit;
/// returns the vCPUs that must re-evaluate their interrupts.
pub fn exit(vgic: &mut Vgic, state: &mut VcpuInterrupts, vcpu: usize) -> Effects {
    let valid = state.list_registers.valid_mask();
    if valid == 0 {
        return Effects::NONE;
    }
    fold_back(vgic, state, vcpu, valid)
}

/// The rest of [`exit`] (LRs `valid` hold something), out of line as [`refill`] is.
#[inline(never)]
fn fold_back(vgic: &mut Vgic, state: &mut VcpuInterrupts, vcpu: usize, valid: u16) -> Effects {
    let version = vgic.version();
    // Pushed, not a 16-entry array initialised in full on every exit.
    let mut read_back = heapless::Vec::<Option<LrEntry>, MAX_LIST_REGISTERS>::new();
    for index in 0..state.list_registers.count() {
        let entry = if valid & (1 << index) != 0 {
            let entry = decode(version, arch::read_list_register(index));
            if entry.is_none() {
                // Completed by the guest. Zero it now: an invalid LR that still carries its
                // EOI-maintenance bit keeps EISR (and so the maintenance interrupt) asserted.
                arch::write_list_register(index, 0);
            }
            entry
        } else {
            None
        };
        // Cannot fail: `count` is at most the capacity.
        let _ = read_back.push(entry);
    }
    // Always folded back, even when the guest changed nothing: a pending interrupt
    // handed to an LR is not in the model until then, and the decisions taken before
    // the next entry (may a WFI block?) must see it.
    state
        .list_registers
        .sync_from_hardware(vgic, vcpu, &read_back)
}

/// Saves the interface state of a vCPU leaving its CPU (after [`exit`]).
pub fn leave(state: &mut VcpuInterrupts) {
    arch::save_virtual_interface(&mut state.interface);
    state.interface.initialised = true;
}

/// Hands what vCPU `vcpu` holds in the list registers back to `vgic` when it leaves its
/// CPU (after [`exit`]), and writes those LRs invalid, so that the next vCPU there can
/// enter with [`Arrival::ClearedBefore`].
pub fn release(vgic: &mut Vgic, state: &mut VcpuInterrupts, vcpu: usize) {
    // After `exit`, the hardware holds exactly the slots the model says are valid.
    let stale = state.list_registers.valid_mask();
    state.list_registers.clear(vgic, vcpu);
    for index in crate::bits::ones(u64::from(stale)) {
        arch::write_list_register(index, 0);
    }
}

/// Why a trapped access to the virtual distributor could not be emulated. The guest is at
/// fault; Xen answers these with a data abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmulationError {
    /// The syndrome did not describe the instruction (ESR ISV = 0: writeback or pair
    /// addressing), so there is nothing to emulate.
    NoSyndrome,
    /// A size or offset the register does not allow.
    Access(AccessError),
}

/// Emulates a trapped load or store at `offset` into `frame` for vCPU `vcpu`, reading or
/// writing the guest register the syndrome names, and steps the vCPU past the instruction.
pub fn emulate_access(
    vgic: &mut Vgic,
    frame: Frame,
    offset: u64,
    vcpu: usize,
    access: Option<EmulatableAccess>,
    write: bool,
    registers: &mut GuestRegisters,
) -> Result<Effects, EmulationError> {
    let access = access.ok_or(EmulationError::NoSyndrome)?;
    if !write {
        emulate_read(vgic, frame, offset, vcpu, access, registers)?;
        return Ok(Effects::NONE);
    }
    let value = registers.read(access.register) & size_mask(access.size);
    let effects = vgic
        .write(frame, vcpu, offset, access.size, value)
        .map_err(EmulationError::Access)?;
    registers.pc = registers.pc.wrapping_add(4);
    Ok(effects)
}

/// The load half of [`emulate_access`]: a read changes nothing in the model, so it needs
/// only shared access to it. On an error the registers are left as they were.
#[inline(always)]
pub fn emulate_read(
    vgic: &Vgic,
    frame: Frame,
    offset: u64,
    vcpu: usize,
    access: EmulatableAccess,
    registers: &mut GuestRegisters,
) -> Result<(), EmulationError> {
    let value = vgic
        .read(frame, vcpu, offset, access.size)
        .map_err(EmulationError::Access)?;
    complete_load(value, access, registers);
    Ok(())
}

/// What the lock-free first step ([`answer_identity_read`]) made of a trapped load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockFreeRead {
    /// Answered: the register written, the PC moved on.
    Answered,
    /// Not for a partial exit (no vCPU, a register the partial frame does not hold, an
    /// address no vGIC frame claims, a refused access): nothing changed.
    Declined,
    /// A register that holds state, at `offset` in `frame`: the model answers it, under
    /// the lock ([`crate::hypervisor::Hypervisor::answer_register_read`]).
    NeedsModel(Frame, u64),
}

/// Decodes a trapped load with the CPU's copy of the running vCPU's vGIC shape and
/// answers it, without the hypervisor lock, when it reads an identification register
/// (`GICD_TYPER`, `GICD_IIDR`, `GICR_TYPER`, ...: what
/// [`crate::vgic::Shape::read_identity`] answers). The vectors call this with only the
/// caller-saved registers saved, so the load must target one of those.
///
/// Nothing here can be stale. The shape is fixed when a domain is built and copied when
/// its vCPU is loaded on this CPU; a domain that another CPU ends meanwhile sends this
/// one a kick, taken as soon as the vCPU resumes, and until then reads what was true of
/// its vGIC.
pub fn answer_identity_read(
    cpu: &mut CpuState,
    ipa: IntermediatePhysAddr,
    access: EmulatableAccess,
) -> LockFreeRead {
    if cpu.current.is_none() || !access.in_partial_frame() {
        return LockFreeRead::Declined;
    }
    let shape = cpu.vgic_shape;
    let Some((frame, offset)) = shape.decode_ipa(ipa.raw()) else {
        return LockFreeRead::Declined;
    };
    match shape.read_identity(frame, offset, access.size) {
        Some(Ok(value)) => {
            complete_load(value, access, &mut cpu.frame);
            LockFreeRead::Answered
        }
        // Refused: the full exit path ends the domain with the reason.
        Some(Err(_)) => LockFreeRead::Declined,
        None => LockFreeRead::NeedsModel(frame, offset),
    }
}

/// A trapped load taken half way: [`answer_identity_read`] without the lock, then for a
/// register that holds state `model`, given the decoded frame and offset (the model's
/// answer under the lock, [`crate::hypervisor::Hypervisor::answer_register_read`]). True
/// when answered; false, with nothing changed, for the full exit path.
#[inline(always)]
pub fn answer_read(
    cpu: &mut CpuState,
    ipa: IntermediatePhysAddr,
    access: EmulatableAccess,
    model: impl FnOnce(&mut CpuState, Frame, u64) -> bool,
) -> bool {
    match answer_identity_read(cpu, ipa, access) {
        LockFreeRead::Answered => true,
        LockFreeRead::Declined => false,
        LockFreeRead::NeedsModel(frame, offset) => model(cpu, frame, offset),
    }
}

/// Completes an emulated load of `value`: truncated to the access size, sign- or
/// zero-extended as the syndrome says, into the target register; the PC moves past the
/// instruction.
fn complete_load(value: u64, access: EmulatableAccess, registers: &mut GuestRegisters) {
    let size = access.size;
    let mut value = value & size_mask(size);
    if access.sign_extend && size < 8 {
        let shift = 64 - u32::from(size) * 8;
        value = (((value << shift) as i64) >> shift) as u64;
    }
    if !access.sixty_four_bit {
        value &= u64::from(u32::MAX);
    }
    registers.write(access.register, value);
    registers.pc = registers.pc.wrapping_add(4);
}

/// The bits an access of `size` bytes carries.
const fn size_mask(size: u8) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size as u32 * 8)) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(register: u8) -> Option<EmulatableAccess> {
        Some(EmulatableAccess {
            size: 4,
            sign_extend: false,
            register,
            sixty_four_bit: false,
            acquire_release: false,
        })
    }

    /// Enables PPI 31 for vCPU 0 and group 1, as a GICv3 guest does through trapped
    /// accesses: GICR_ISENABLER0 (SGI_base = RD_base + 0x10000, + 0x100), then
    /// GICD_CTLR.EnableGrp1 (without which nothing is delivered).
    fn enable_ppi_31(vgic: &mut Vgic) {
        let mut registers = GuestRegisters::default();
        registers.x[1] = 1 << 31;
        emulate_access(
            vgic,
            Frame::Redistributors,
            0x1_0100,
            0,
            word(1),
            true,
            &mut registers,
        )
        .unwrap();
        registers.x[2] = 0b10;
        emulate_access(
            vgic,
            Frame::Distributor,
            0x0,
            0,
            word(2),
            true,
            &mut registers,
        )
        .unwrap();
    }

    /// A one-vCPU GICv3 vGIC with PPI 31 enabled and pending, and that vCPU's LR state.
    fn ppi_31_pending() -> (Vgic, VcpuInterrupts) {
        let mut vgic = Vgic::new(GicVersion::V3, 1);
        enable_ppi_31(&mut vgic);
        vgic.set_pending(0, 31);
        (vgic, VcpuInterrupts::new(arch::list_register_count()))
    }

    #[test]
    fn distributor_reads_land_in_the_named_register_and_step_the_pc() {
        let mut vgic = Vgic::new(GicVersion::V3, 2);
        let mut registers = GuestRegisters {
            pc: 0x1000,
            ..Default::default()
        };
        registers.x[5] = u64::MAX;
        // GICD_TYPER at 0x4.
        emulate_access(
            &mut vgic,
            Frame::Distributor,
            0x4,
            0,
            word(5),
            false,
            &mut registers,
        )
        .unwrap();
        assert_eq!(registers.pc, 0x1004);
        assert_eq!(registers.x[5] >> 32, 0, "a W-register load zero-extends");
        assert_ne!(registers.x[5], 0);
    }

    #[test]
    fn enabling_a_ppi_through_the_redistributor_makes_it_deliverable() {
        let mut vgic = Vgic::new(GicVersion::V3, 1);
        enable_ppi_31(&mut vgic);
        vgic.set_pending(0, 31);
        assert!(vgic.has_deliverable(0));
    }

    #[test]
    fn accesses_without_syndrome_or_of_a_bad_size_are_refused() {
        let mut vgic = Vgic::new(GicVersion::V2, 1);
        let mut registers = GuestRegisters {
            pc: 0x1000,
            ..Default::default()
        };
        assert_eq!(
            emulate_access(
                &mut vgic,
                Frame::Distributor,
                0x4,
                0,
                None,
                false,
                &mut registers
            ),
            Err(EmulationError::NoSyndrome)
        );
        let halfword = Some(EmulatableAccess {
            size: 2,
            ..word(1).unwrap()
        });
        assert!(matches!(
            emulate_access(
                &mut vgic,
                Frame::Distributor,
                0x4,
                0,
                halfword,
                false,
                &mut registers
            ),
            Err(EmulationError::Access(_))
        ));
        assert_eq!(
            registers.pc, 0x1000,
            "a refused access does not step the vCPU"
        );
    }

    #[test]
    fn a_vcpu_leaving_clears_its_lrs_and_the_next_writes_only_what_it_fills() {
        let _guard = crate::arch::fake::guest_translation_lock();
        let (mut leaving_vgic, mut leaving) = ppi_31_pending();
        enter(&mut leaving_vgic, &mut leaving, 0, Arrival::Unknown);
        assert_ne!(arch::read_list_register(0), 0);
        // It leaves without taking the interrupt: the pending state goes back to the
        // model, and no LR keeps it.
        exit(&mut leaving_vgic, &mut leaving, 0);
        release(&mut leaving_vgic, &mut leaving, 0);
        assert!(leaving_vgic.has_deliverable(0));
        for index in 0..arch::list_register_count() {
            assert_eq!(arch::read_list_register(index), 0, "LR {index}");
        }
        // A marker in LR 2 shows which LRs the arriving vCPU writes: only LR 0.
        arch::write_list_register(2, 0xdead);
        let (mut arriving_vgic, mut arriving) = ppi_31_pending();
        enter(&mut arriving_vgic, &mut arriving, 0, Arrival::ClearedBefore);
        assert_eq!(
            decode_gicv3(arch::read_list_register(0)).map(|lr| lr.intid),
            Some(31)
        );
        assert_eq!(arch::read_list_register(2), 0xdead);
        // Not known clear: every LR is written.
        exit(&mut arriving_vgic, &mut arriving, 0);
        release(&mut arriving_vgic, &mut arriving, 0);
        enter(&mut arriving_vgic, &mut arriving, 0, Arrival::Unknown);
        assert_eq!(arch::read_list_register(2), 0);
        arch::write_list_register(0, 0);
    }

    #[test]
    fn list_registers_round_trip_through_the_hardware() {
        let _guard = crate::arch::fake::guest_translation_lock();
        let (mut vgic, mut state) = ppi_31_pending();
        enter(&mut vgic, &mut state, 0, Arrival::Unknown);
        let lr = decode_gicv3(arch::read_list_register(0)).unwrap();
        assert_eq!(lr.intid, 31);
        // The guest acknowledges and completes it: the LR reads back invalid.
        arch::write_list_register(0, 0);
        exit(&mut vgic, &mut state, 0);
        assert!(!vgic.has_deliverable(0));
    }
}
