//! The vCPU control block: what the hypervisor keeps of a virtual CPU while it is not on a
//! physical one. It is to the hypervisor what a process control block is to a kernel:
//! saved registers, run state, and accounting.

/// PSTATE for a vCPU's first entry: EL1h with D, A, I and F masked (as Xen starts guests).
pub const INITIAL_PSTATE: u64 = 0x3c5;

/// SCTLR_EL1 for a vCPU's first entry: MMU and caches off, RES1 bits set.
pub const INITIAL_SCTLR_EL1: u64 = 0x30d0_0800;

/// Most ports one SCHEDOP_poll may wait on (Xen's limit).
pub const MAX_POLLED_PORTS: usize = 128;

/// The general registers of a vCPU as saved on a trap (layout shared with the exception
/// vectors: x0..x30 at 8-byte steps, then the return address and PSTATE).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestRegisters {
    /// x0 to x30.
    pub x: [u64; 31],
    /// Where the vCPU resumes (ELR_EL2).
    pub pc: u64,
    /// Its saved PSTATE (SPSR_EL2).
    pub pstate: u64,
}

impl GuestRegisters {
    /// A Xen hypercall as the guest made it: the number (x16) and the arguments (x0-x4).
    pub fn hypercall(&self) -> (u64, [u64; 5]) {
        let [a0, a1, a2, a3, a4, ..] = self.x;
        (self.x[16], [a0, a1, a2, a3, a4])
    }

    /// Xen's hypercall continuation: the vCPU issues its hypercall again (`pc` steps back
    /// onto the 4-byte HVC) with x1 and x2 replaced, for what is left of the work; other
    /// vCPUs and interrupts may run in between.
    pub fn continue_hypercall(&mut self, x1: u64, x2: u64) {
        let [_, first, second, ..] = &mut self.x;
        *first = x1;
        *second = x2;
        self.pc = self.pc.wrapping_sub(4);
    }

    /// Register `index` (0..=30); x31 reads as zero (XZR) as in a trapped instruction.
    pub fn read(&self, index: u8) -> u64 {
        self.x.get(usize::from(index)).copied().unwrap_or(0)
    }

    /// Writes register `index` (0..=30); writes to x31 (XZR) are discarded.
    pub fn write(&mut self, index: u8, value: u64) {
        if let Some(register) = self.x.get_mut(usize::from(index)) {
            *register = value;
        }
    }
}

/// The EL1 system registers that belong to a vCPU and are switched with it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)] // each field is the architectural register of the same name
pub struct El1Context {
    pub sctlr_el1: u64,
    pub ttbr0_el1: u64,
    pub ttbr1_el1: u64,
    pub tcr_el1: u64,
    pub mair_el1: u64,
    pub amair_el1: u64,
    pub vbar_el1: u64,
    pub contextidr_el1: u64,
    pub tpidr_el0: u64,
    pub tpidrro_el0: u64,
    pub tpidr_el1: u64,
    pub sp_el0: u64,
    pub sp_el1: u64,
    pub elr_el1: u64,
    pub spsr_el1: u64,
    pub esr_el1: u64,
    pub far_el1: u64,
    pub afsr0_el1: u64,
    pub afsr1_el1: u64,
    pub par_el1: u64,
    pub cpacr_el1: u64,
    pub cntkctl_el1: u64,
    pub csselr_el1: u64,
    pub cntv_ctl_el0: u64,
    pub cntv_cval_el0: u64,
    pub vmpidr_el2: u64,
}

/// The floating-point and SIMD registers of a vCPU. The hypervisor itself is built
/// soft-float and never touches them; the switch code saves and restores them for a vCPU
/// that has used them ([`Vcpu::uses_fp`]).
#[repr(C, align(16))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FpContext {
    /// q0 to q31.
    pub q: [u128; 32],
    /// FPCR.
    pub fpcr: u64,
    /// FPSR.
    pub fpsr: u64,
}

/// Where a vCPU is in its life. Changes go through [`Vcpu::set_state`] only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(target_os = "none", derive(defmt::Format))]
pub enum RunState {
    /// Created, never run.
    New,
    /// Runnable, waiting for a physical CPU.
    Ready,
    /// On a physical CPU now.
    Running,
    /// Waiting for an event (WFI, SCHEDOP_block, PSCI CPU_OFF).
    Blocked,
    /// Its domain has ended; it will never run again.
    Dead,
}

impl RunState {
    /// Whether the transition `self -> next` is one the scheduler may make.
    pub const fn may_become(self, next: RunState) -> bool {
        use RunState::*;
        matches!(
            (self, next),
            (New, Ready)
                | (Ready, Running)
                | (Running, Ready)
                | (Running, Blocked)
                | (Blocked, Ready)
                | (_, Dead)
        )
    }
}

/// A virtual CPU's control block.
#[derive(Clone, Debug)]
pub struct Vcpu {
    /// Index of this vCPU in its domain (also its MPIDR affinity 0).
    pub index: u32,
    /// Saved general registers.
    pub registers: GuestRegisters,
    /// Saved EL1 system registers.
    pub el1: El1Context,
    /// Saved FP/SIMD registers (meaningful once `uses_fp`).
    pub fp: FpContext,
    /// It has executed an FP/SIMD instruction since it was powered on: from then on its
    /// FP/SIMD registers are switched with it. Until then they are not (a guest built
    /// soft-float never pays for them), and its first FP/SIMD instruction traps
    /// (CPTR_EL2.TFP), which loads them and sets this.
    pub uses_fp: bool,
    state: RunState,
    /// Powered on (PSCI): vCPU 0 from the start, others after CPU_ON, until CPU_OFF.
    online: bool,
    /// Where the guest registered this vCPU's vcpu_info (VCPUOP_register_vcpu_info).
    pub vcpu_info: Option<crate::addr::PhysAddr>,
    /// Where the guest wants runstate updates (VCPUOP_register_runstate_memory_area).
    pub runstate_area: Option<crate::addr::GuestVirtAddr>,
    /// Ports it waits on in SCHEDOP_poll (empty when not polling). Set and cleared only
    /// through [`crate::domain::Domain::start_polling`] and `stop_polling`, which keep
    /// the domain's mask of pollers true.
    pub polling: heapless::Vec<u16, MAX_POLLED_PORTS>,
    /// When its SCHEDOP_poll gives up waiting (counter ticks), if it set a timeout.
    pub poll_deadline: Option<u64>,
    /// Deadline (counter ticks) of its one-shot timer (VCPUOP_set_singleshot_timer):
    /// VIRQ_TIMER is raised when it passes.
    pub singleshot: Option<u64>,
    /// Its interrupts: list registers and virtual CPU interface state.
    pub interrupts: crate::virtual_interrupts::VcpuInterrupts,
    /// Counter ticks spent running (accounting).
    pub ticks_used: u64,
    /// Counter value when it last started running.
    pub running_since: u64,
}

/// The vCPU refused a state change: a scheduler bug, reported instead of acted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidTransition {
    /// State before.
    pub from: RunState,
    /// Refused state.
    pub to: RunState,
}

impl Vcpu {
    /// A new vCPU that will start at `entry` with `x0 = argument`, MMU off, EL1h.
    pub fn new(index: u32, entry: u64, argument: u64) -> Self {
        let mut registers = GuestRegisters {
            pc: entry,
            pstate: INITIAL_PSTATE,
            ..Default::default()
        };
        registers.x[0] = argument;
        let el1 = El1Context {
            sctlr_el1: INITIAL_SCTLR_EL1,
            // MPIDR: bit 31 is RES1; affinity 0 is the vCPU index.
            vmpidr_el2: (1 << 31) | u64::from(index & 0xff),
            ..Default::default()
        };
        Self {
            index,
            registers,
            el1,
            fp: FpContext::default(),
            uses_fp: false,
            state: RunState::New,
            online: false,
            vcpu_info: None,
            runstate_area: None,
            singleshot: None,
            polling: heapless::Vec::new(),
            poll_deadline: None,
            interrupts: crate::virtual_interrupts::VcpuInterrupts::new(
                crate::arch::list_register_count(),
            ),
            ticks_used: 0,
            running_since: 0,
        }
    }

    /// The run state.
    pub fn state(&self) -> RunState {
        self.state
    }

    /// Whether the vCPU is powered on (PSCI's view: AFFINITY_INFO answers ON).
    pub fn is_online(&self) -> bool {
        self.online
    }

    /// Powers the vCPU on at `entry` with `x0 = argument`, in the state it had at reset
    /// (EL1h, MMU off). Refused if it is already on or dead. Making it runnable is the
    /// scheduler's business (a wake).
    pub fn power_on(&mut self, entry: u64, argument: u64) -> Result<(), InvalidTransition> {
        if self.online || self.state == RunState::Dead {
            return Err(InvalidTransition {
                from: self.state,
                to: RunState::Ready,
            });
        }
        let fresh = Vcpu::new(self.index, entry, argument);
        self.registers = fresh.registers;
        self.el1 = fresh.el1;
        self.fp = fresh.fp;
        self.uses_fp = false;
        self.online = true;
        Ok(())
    }

    /// Powers the vCPU off (PSCI CPU_OFF); the scheduler blocks it until a later
    /// [`Vcpu::power_on`].
    pub fn power_off(&mut self) {
        self.online = false;
    }

    /// The one place a vCPU changes state.
    pub fn set_state(&mut self, next: RunState) -> Result<(), InvalidTransition> {
        if self.state.may_become(next) {
            self.state = next;
            Ok(())
        } else {
            Err(InvalidTransition {
                from: self.state,
                to: next,
            })
        }
    }
}

/// Where an exception taken to EL1 enters the guest's vector table, given the PSTATE the
/// vCPU had (Arm ARM D1.10.2): current EL with SP_EL0, current EL with SP_ELx, or lower EL.
pub const fn el1_vector_offset(pstate: u64) -> u64 {
    match pstate & 0xf {
        0b0100 => 0x000, // EL1t
        0b0101 => 0x200, // EL1h
        _ => 0x400,      // from EL0 (AArch64)
    }
}

/// ESR_EL1 for an injected "unknown reason" exception (what UNDEF reports), 32-bit
/// instruction length.
pub const INJECTED_UNDEFINED_ESR: u64 = 1 << 25;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_layout_matches_the_vectors() {
        assert_eq!(core::mem::offset_of!(GuestRegisters, pc), 248);
        assert_eq!(core::mem::offset_of!(GuestRegisters, pstate), 256);
        assert_eq!(core::mem::size_of::<GuestRegisters>(), 264);
        assert_eq!(core::mem::offset_of!(FpContext, fpcr), 512);
    }

    #[test]
    fn xzr_reads_zero_and_ignores_writes() {
        let mut registers = GuestRegisters::default();
        registers.write(31, 5);
        assert_eq!(registers.read(31), 0);
        registers.write(3, 7);
        assert_eq!(registers.read(3), 7);
    }

    #[test]
    fn state_machine() {
        let mut vcpu = Vcpu::new(1, 0x4020_0000, 0x5000_0000);
        assert_eq!(vcpu.registers.x[0], 0x5000_0000);
        assert_eq!(vcpu.el1.vmpidr_el2, 0x8000_0001);
        assert_eq!(
            vcpu.set_state(RunState::Running),
            Err(InvalidTransition {
                from: RunState::New,
                to: RunState::Running
            })
        );
        vcpu.set_state(RunState::Ready).unwrap();
        vcpu.set_state(RunState::Running).unwrap();
        vcpu.set_state(RunState::Blocked).unwrap();
        assert!(vcpu.set_state(RunState::Running).is_err());
        vcpu.set_state(RunState::Dead).unwrap();
        assert!(vcpu.set_state(RunState::Ready).is_err());
    }

    #[test]
    fn vector_offsets() {
        assert_eq!(el1_vector_offset(0x3c5), 0x200);
        assert_eq!(el1_vector_offset(0x3c4), 0x000);
        assert_eq!(el1_vector_offset(0x000), 0x400);
    }
}
