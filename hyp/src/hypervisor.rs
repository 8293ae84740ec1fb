//! The hypervisor's state and its reaction to every guest exit: hypercalls, PSCI, faults,
//! and the choice of which vCPU runs next.
//!
//! Locks, in the order they may be taken:
//! 1. `HYPERVISOR` (this module): domains, vCPUs, the frame allocator, the scheduler.
//! 2. `serial::SERIAL`: the UART.
//!
//! Which vCPU runs is the [`Scheduler`]'s decision (weighted virtual runtime); this module
//! carries each decision out: it saves the vCPU leaving the CPU, loads the one arriving,
//! and arms the EL2 timer for the end of its slice, so a vCPU that never traps is still
//! preempted. A CPU with nothing to run waits for an interrupt.

use crate::arch;
use crate::cpu::{CpuState, VcpuId};
use crate::domain::{Domain, DomainState, MAX_DOMAINS};
use crate::esr::{Abort, EmulatableAccess, FaultKind, GuestExit};
use crate::event_channel::PortTable;
use crate::hypercall::{self, psci, Outcome};
use crate::mm::FrameAllocator;
use crate::scheduler::{Decision, Scheduler, DEFAULT_WEIGHT};
use crate::serial;
use crate::vcpu::{RunState, INJECTED_UNDEFINED_ESR};
use crate::vgic::{Frame, GicVersion, Vgic};
use hypercall_abi::sched_op::ShutdownReason;
use hypercall_abi::{HYPERCALL_IMMEDIATE, SMCCC_IMMEDIATE};

/// CNTV_CTL_EL0.IMASK: the virtual timer's interrupt is masked.
const TIMER_IMASK: u64 = 1 << 1;

/// Everything the hypervisor manages, behind one lock.
pub struct Hypervisor {
    domains: [Option<Domain>; MAX_DOMAINS],
    /// Bit `n`: slot `n` holds a domain that is alive (built, not yet ended). The exit
    /// and switch paths ask it rather than look into the large domain slots.
    alive: u16,
    frames: FrameAllocator,
    psci_over_smc: bool,
    started: usize,
    unclean: usize,
    scheduler: Scheduler,
    /// Each domain slot's virtual GIC. Large, so kept here (reset in place when a domain
    /// is built) rather than moved around inside the domain control block.
    pub(crate) vgics: [Vgic; MAX_DOMAINS],
    /// Each domain slot's event-channel ports (same reason).
    ports: [PortTable; MAX_DOMAINS],
    /// The vCPU each physical CPU is running (kept here, under the lock, so any CPU can
    /// tell where a vCPU runs: to kick it, or to wait before tearing its domain down).
    running: [Option<VcpuId>; crate::scheduler::MAX_CPUS],
    /// Console input: which domain has the focus, and input waiting for ring space.
    console_input: crate::console_input::ConsoleInput,
    /// Crash policy and restarts (`hypervisor_lifecycle.rs`).
    lifecycle: crate::lifecycle::Lifecycle,
}

/// The one instance. It is large (every domain and vCPU control block lives inside), so it
/// starts as zeroed memory in .bss, not as a 280 KiB initialised copy in the image, and the
/// first [`Global::lock`] builds it in place (see [`Hypervisor::initialise_in_place`]).
pub static HYPERVISOR: Global = Global::new();

/// The lock around the one [`Hypervisor`], which it builds in place on first use.
pub struct Global {
    slot: spin::Mutex<Slot>,
}

/// What [`Global`]'s lock protects: all zero (.bss) until `initialised`.
struct Slot {
    initialised: bool,
    hypervisor: core::mem::MaybeUninit<Hypervisor>,
}

impl Global {
    const fn new() -> Self {
        Self {
            slot: spin::Mutex::new(Slot {
                initialised: false,
                hypervisor: core::mem::MaybeUninit::uninit(),
            }),
        }
    }

    /// Takes the lock (building the empty hypervisor first, the first time).
    #[inline]
    pub fn lock(&self) -> Locked<'_> {
        let mut guard = self.slot.lock();
        if !guard.initialised {
            Self::initialise(&mut guard);
        }
        Locked { guard }
    }

    #[cold]
    #[inline(never)]
    fn initialise(slot: &mut Slot) {
        Hypervisor::initialise_in_place(&mut slot.hypervisor);
        slot.initialised = true;
    }
}

/// The hypervisor, locked.
pub struct Locked<'a> {
    guard: spin::MutexGuard<'a, Slot>,
}

impl core::ops::Deref for Locked<'_> {
    type Target = Hypervisor;

    #[inline]
    fn deref(&self) -> &Hypervisor {
        // SAFETY: a `Locked` is only made by `Global::lock` after the slot is initialised.
        unsafe { self.guard.hypervisor.assume_init_ref() }
    }
}

impl core::ops::DerefMut for Locked<'_> {
    #[inline]
    fn deref_mut(&mut self) -> &mut Hypervisor {
        // SAFETY: as in `deref`.
        unsafe { self.guard.hypervisor.assume_init_mut() }
    }
}

/// What to do once an exit has been handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Resume the vCPU in the frame (possibly a different one after a switch).
    Resume,
    /// No domain is left: power the machine off.
    Halt,
    /// Domains are alive but none of their vCPUs can run on this CPU now: wait for an
    /// interrupt (a timer or an event will wake one).
    Idle,
}

/// Scheduling settings of one domain, from its boot-pack entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainSchedule {
    /// Share of CPU time relative to other domains (1..=65535).
    pub weight: u16,
    /// Physical CPUs its vCPUs may run on (bit n = CPU n).
    pub affinity: u64,
}

impl Default for DomainSchedule {
    fn default() -> Self {
        Self {
            weight: DEFAULT_WEIGHT,
            affinity: u64::MAX,
        }
    }
}

impl Hypervisor {
    /// Writes a hypervisor with no memory and no domains yet into `slot`, field by field
    /// and array element by array element: built whole, it would pass through a stack
    /// (hundreds of KiB) or through a constant copy in the image.
    pub fn initialise_in_place(slot: &mut core::mem::MaybeUninit<Self>) -> &mut Self {
        use core::ptr::addr_of_mut;
        /// Writes `value()` into each element of the array at `array`.
        ///
        /// # Safety
        /// `array` is valid for writes.
        unsafe fn fill<T, const N: usize>(array: *mut [T; N], value: impl Fn() -> T) {
            for index in 0..N {
                // SAFETY: `index < N`, inside the array the caller vouches for.
                unsafe { array.cast::<T>().add(index).write(value()) };
            }
        }
        let this = slot.as_mut_ptr();
        // SAFETY: `this` points at `slot`, valid for writes and suitably aligned; every field
        // is written once, none is read, and `fields_of` below fails to compile when a field
        // is added without being written here.
        unsafe {
            fill(addr_of_mut!((*this).domains), || None);
            addr_of_mut!((*this).alive).write(0);
            addr_of_mut!((*this).frames).write(FrameAllocator::empty());
            addr_of_mut!((*this).psci_over_smc).write(false);
            addr_of_mut!((*this).started).write(0);
            addr_of_mut!((*this).unclean).write(0);
            addr_of_mut!((*this).scheduler).write(Scheduler::unconfigured());
            fill(addr_of_mut!((*this).vgics), || Vgic::new(GicVersion::V3, 1));
            fill(addr_of_mut!((*this).ports), PortTable::new);
            fill(addr_of_mut!((*this).running), || None);
            addr_of_mut!((*this).console_input).write(crate::console_input::ConsoleInput::new());
            addr_of_mut!((*this).lifecycle).write(crate::lifecycle::Lifecycle::new());
        }
        // SAFETY: every field was written above.
        unsafe { slot.assume_init_mut() }
    }

    /// Names every field, so that adding one without writing it in
    /// [`Hypervisor::initialise_in_place`] is a compile error.
    #[allow(dead_code)]
    fn fields_of(&self) {
        let Self {
            domains: _,
            alive: _,
            frames: _,
            psci_over_smc: _,
            started: _,
            unclean: _,
            scheduler: _,
            vgics: _,
            ports: _,
            running: _,
            console_input: _,
            lifecycle: _,
        } = self;
    }

    /// An empty hypervisor on the heap (host tests).
    #[cfg(test)]
    pub fn boxed() -> std::boxed::Box<Self> {
        let mut slot = std::boxed::Box::new_uninit();
        Self::initialise_in_place(&mut slot);
        // SAFETY: initialised just above.
        unsafe { slot.assume_init() }
    }

    /// Hands the hypervisor the physical memory it may give to domains, tells it how to
    /// reach the firmware, and sets up scheduling over `cpu_count` CPUs with slices of
    /// `slice_ticks` counter ticks.
    pub fn set_up(
        &mut self,
        frames: FrameAllocator,
        psci_over_smc: bool,
        cpu_count: usize,
        slice_ticks: u64,
    ) -> Result<(), &'static str> {
        self.frames = frames;
        self.psci_over_smc = psci_over_smc;
        self.scheduler =
            Scheduler::new(cpu_count, slice_ticks).map_err(|_| "scheduler settings")?;
        Ok(())
    }

    /// Builds a domain in its slot, in place, and hands its vCPUs to the scheduler (the
    /// boot vCPU ready to run, the others waiting for PSCI CPU_ON).
    pub fn build_domain(
        &mut self,
        slot: usize,
        image: &crate::bootpack::DomainImage<'_>,
        settings: DomainSchedule,
        gic: crate::domain_dt::GuestGic,
        channels: &crate::domain::Channels<'_>,
    ) -> Result<&Domain, crate::domain::BuildError> {
        use crate::domain::BuildError;
        // What a restart will need; the restart count goes into its device tree.
        let plan = self
            .lifecycle
            .slots
            .get_mut(slot)
            .ok_or(BuildError::Unsupported)?;
        plan.gic = Some(gic);
        plan.schedule = settings;
        let restarts = plan.restarts;
        let entry = self.domains.get_mut(slot).ok_or(BuildError::Unsupported)?;
        *entry = Some(Domain::build(
            slot,
            image,
            gic,
            channels,
            restarts,
            &mut self.frames,
        )?);
        let vcpu_count = entry.as_ref().map_or(0, |domain| domain.vcpus.len());
        let version = match gic {
            crate::domain_dt::GuestGic::V2 { .. } => GicVersion::V2,
            crate::domain_dt::GuestGic::V3 { .. } => GicVersion::V3,
        };
        if let Some(vgic) = self.vgics.get_mut(slot) {
            *vgic = Vgic::new(version, vcpu_count);
        }
        if let Some(ports) = self.ports.get_mut(slot) {
            *ports = PortTable::new();
        }
        if let Some(pending) = self.console_input.pending.get_mut(slot) {
            pending.clear();
        }
        let now = arch::read_counter();
        let mut scheduled = Ok(());
        for index in 0..vcpu_count {
            let id = VcpuId {
                domain: slot,
                vcpu: index,
            };
            scheduled = scheduled.and(self.scheduler.add_vcpu(
                id,
                settings.weight,
                settings.affinity,
            ));
        }
        // Before the other CPUs start, nothing needs a kick: they all schedule first.
        scheduled = scheduled.and(self.wake(
            VcpuId {
                domain: slot,
                vcpu: 0,
            },
            now,
            usize::MAX,
        ));
        if scheduled.is_err() {
            let _ = self.scheduler.remove_domain(slot);
            if let Some(domain) = self.domains.get_mut(slot).and_then(Option::take) {
                domain.tear_down(&mut self.frames);
            }
            return Err(BuildError::Unsupported);
        }
        self.started += 1;
        self.alive |= 1 << slot;
        self.domain(slot).ok_or(BuildError::Unsupported)
    }

    /// Makes a vCPU runnable (the scheduler's view and its control block agree), and kicks
    /// the CPU the scheduler put it on if that is not `from_cpu`.
    fn wake(
        &mut self,
        id: VcpuId,
        now: u64,
        from_cpu: usize,
    ) -> Result<(), crate::scheduler::SchedError> {
        let wake = self.scheduler.wake(id, now)?;
        if wake.woken {
            if let Some(vcpu) = self.vcpu_mut(id) {
                let _ = vcpu.set_state(RunState::Ready);
            }
            if let Some(domain) = self.domains.get_mut(id.domain).and_then(Option::as_mut) {
                domain.stop_polling(id.vcpu);
            }
        }
        if let Some(target) = wake.cpu_to_kick.filter(|target| *target != from_cpu) {
            arch::kick_cpu(target);
        }
        Ok(())
    }

    /// Every slot's event-channel port table, as the event-channel model sees them (a slot
    /// without a domain has no table).
    fn event_tables(&mut self) -> crate::hypercall::event_channel::EventTables<'_> {
        crate::hypercall::event_channel::EventTables {
            ports: &mut self.ports,
            domains: &self.domains,
        }
    }

    /// Binds a pre-connected interdomain channel between domains `a` and `b` (before any
    /// guest runs) and returns the two ports, `(a's, b's)`.
    pub fn connect_channel(
        &mut self,
        a: usize,
        b: usize,
    ) -> Result<(u32, u32), hypercall_abi::errno::Errno> {
        use hypercall_abi::event_channel_op::{AllocUnbound, BindInterdomain, Port};
        let mut tables = self.event_tables();
        let mut offer = AllocUnbound {
            dom: a as u16,
            remote_dom: b as u16,
            port: Port(0),
        };
        crate::event_channel::alloc_unbound(&mut tables, a as u16, &mut offer)?;
        let mut bind = BindInterdomain {
            remote_dom: a as u16,
            remote_port: offer.port,
            local_port: Port(0),
        };
        crate::event_channel::bind_interdomain(&mut tables, b as u16, &mut bind)?;
        Ok((offer.port.0, bind.local_port.0))
    }

    /// Gives domain `slot` its console event channel (after any pre-connected channels,
    /// whose port numbers its device tree already promised): an unbound port of its own
    /// whose sends the hypervisor serves as console backend. HVM_PARAM_CONSOLE_EVTCHN
    /// names it.
    pub fn attach_console(&mut self, slot: usize) -> Result<u32, hypercall_abi::errno::Errno> {
        use hypercall_abi::event_channel_op::{AllocUnbound, Port};
        let own = slot as u16;
        let mut offer = AllocUnbound {
            dom: own,
            remote_dom: own,
            port: Port(0),
        };
        crate::event_channel::alloc_unbound(&mut self.event_tables(), own, &mut offer)?;
        let port = offer.port.0;
        if let Some(domain) = self.domain_mut(slot) {
            domain.console_port = Some(port);
            if let Some(value) = domain
                .hvm_params
                .get_mut(hypercall_abi::hvm_op::PARAM_CONSOLE_EVTCHN as usize)
            {
                *value = u64::from(port);
            }
        }
        Ok(port)
    }

    /// Console backend: takes what domain `slot` wrote to its console ring's `out[]`,
    /// prints it as its console lines, advances `out_cons`, and signals its console port
    /// so a writer waiting for room goes on.
    fn serve_console(&mut self, from_cpu: usize, slot: usize) {
        use core::sync::atomic::Ordering;
        use hypercall_abi::shared::{xencons_mask_out, XENCONS_OUT_SIZE};
        let Some(domain) = self.domains.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let Some(port) = domain.console_port else {
            return;
        };
        let ring = domain.console_interface();
        let produced = ring.out_prod.load(Ordering::Acquire);
        let mut consumed = ring.out_cons.load(Ordering::Relaxed);
        if produced.wrapping_sub(consumed) as usize > XENCONS_OUT_SIZE {
            // Indices the guest corrupted: nothing sensible to print; resynchronise.
            consumed = produced;
        }
        let mut chunk = [0u8; 64];
        while consumed != produced {
            // Copy a chunk out of the ring, then hand it to the line buffer (the ring is
            // borrowed again for each chunk, so the buffer can be borrowed mutably between).
            let ring = domain.console_interface();
            let mut length = 0;
            for slot in chunk.iter_mut() {
                if consumed == produced {
                    break;
                }
                let index = xencons_mask_out(consumed);
                // SAFETY: `index` is below XENCONS_OUT_SIZE; the byte was published by
                // the producer index read above; volatile because the guest may write the
                // ring concurrently.
                *slot = unsafe { core::ptr::read_volatile(ring.output.as_ptr().add(index)) };
                length += 1;
                consumed = consumed.wrapping_add(1);
            }
            let name = &domain.name;
            let piece = chunk.get(..length).unwrap_or(&[]);
            domain
                .console
                .push(piece, |line| serial::write_console_line(name, line));
        }
        domain
            .console_interface()
            .out_cons
            .store(consumed, Ordering::Release);
        self.signal_console_port(from_cpu, slot, port);
    }

    /// Signals domain `slot`'s console port `port` (the hypervisor is the other end) on
    /// the vCPU the port notifies.
    fn signal_console_port(&mut self, from_cpu: usize, slot: usize, port: u32) {
        let port = hypercall_abi::event_channel_op::Port(port);
        let vcpu = self
            .ports
            .get(slot)
            .and_then(|ports| ports.notify_vcpu(port));
        let deliver = crate::event_channel::Deliver {
            domain: slot as u16,
            vcpu: vcpu.unwrap_or(0),
            port,
        };
        self.carry_out_event(from_cpu, crate::event_channel::Action::Deliver(deliver));
    }

    /// Turns console input on once every domain is built: the UART's receive interrupt
    /// `intid` (from the device tree) is enabled, the first live domain gets the focus,
    /// and a line says so and how to switch. Without an interrupt, input stays off.
    pub fn start_console_input(&mut self, intid: Option<u32>) {
        match intid {
            Some(intid) if arch::enable_spi(intid, arch::DEVICE_PRIORITY) => {
                self.console_input.intid = Some(intid);
                let Self {
                    console_input,
                    domains,
                    ..
                } = self;
                console_input.focus =
                    crate::console_input::next_focus(None, |slot| takes_input(domains, slot));
                serial::enable_input();
                self.log_focus(false);
            }
            _ => defmt::warn!("console input: the UART has no usable receive interrupt; off"),
        }
    }

    /// The domain slot that has the console input focus.
    pub fn console_focus(&self) -> Option<usize> {
        self.console_input.focus
    }

    /// Logs which domain has the console input now (`switched`) or from boot.
    fn log_focus(&self, switched: bool) {
        let Some(domain) = self.console_input.focus.and_then(|slot| self.domain(slot)) else {
            return;
        };
        let name = domain.name.as_str();
        if switched {
            defmt::info!(
                "console input now goes to domain {=str} (type Ctrl-A three times to switch)",
                name
            );
        } else {
            defmt::info!(
                "console input goes to domain {=str} (type Ctrl-A three times to switch)",
                name
            );
        }
    }

    /// The UART's receive interrupt: drains what it received (bounded; the level-triggered
    /// interrupt comes back for the rest), switches the focus on Ctrl-A x3, and delivers.
    fn take_console_input(&mut self, from_cpu: usize) {
        let mut buffer = [0u8; 64];
        let mut switched = false;
        for _ in 0..16 {
            let count = serial::read_input(&mut buffer);
            let Some(bytes) = buffer.get(..count).filter(|bytes| !bytes.is_empty()) else {
                break;
            };
            let Self {
                console_input,
                domains,
                ..
            } = self;
            switched |= console_input.feed(bytes, |slot| takes_input(domains, slot));
        }
        if switched {
            self.log_focus(true);
        }
        for slot in 0..MAX_DOMAINS {
            self.deliver_console_input(from_cpu, slot, true);
        }
    }

    /// Moves domain `slot`'s waiting input into its ring's `in[]` and, if any moved and
    /// `signal`, signals its console port. Logs the first input dropped for it.
    fn deliver_console_input(&mut self, from_cpu: usize, slot: usize, signal: bool) {
        let Self {
            console_input,
            domains,
            ..
        } = self;
        let Some(pending) = console_input.pending.get_mut(slot) else {
            return;
        };
        let Some(domain) = domains.get(slot).and_then(Option::as_ref) else {
            return;
        };
        let Some(port) = domain.console_port.filter(|_| takes_input(domains, slot)) else {
            return;
        };
        let moved = pending.fill_ring(domain.console_ring);
        if pending.dropped != 0 && !pending.drop_logged {
            pending.drop_logged = true;
            defmt::warn!(
                "console input for domain {=str}: its ring and queue are full; input dropped (counted)",
                domain.name.as_str()
            );
        }
        if moved == 0 || !signal {
            return;
        }
        self.signal_console_port(from_cpu, slot, port);
    }

    /// Domain `slot` ended: its waiting input is dropped and, if it had the focus, the
    /// focus moves to the next live domain (logged).
    fn console_input_domain_ended(&mut self, slot: usize) {
        let Self {
            console_input,
            domains,
            ..
        } = self;
        if console_input.domain_ended(slot, |other| takes_input(domains, other)) {
            self.log_focus(true);
        }
    }

    /// Input bytes dropped for domain `slot` because its ring and queue were full.
    pub fn console_input_dropped(&self, slot: usize) -> u64 {
        self.console_input
            .pending
            .get(slot)
            .map_or(0, |pending| pending.dropped)
    }

    /// Free physical memory, in bytes (for leak checks).
    pub fn free_bytes(&self) -> u64 {
        self.frames.free_bytes()
    }

    /// A domain by slot.
    pub fn domain(&self, slot: usize) -> Option<&Domain> {
        self.domains.get(slot).and_then(Option::as_ref)
    }

    /// Handles a synchronous exit of the vCPU running on `cpu`.
    pub fn handle_exit(&mut self, cpu: &mut CpuState, exit: GuestExit, esr: u64) -> Next {
        self.drop_if_dying(cpu);
        let Some(current) = cpu.current else {
            return self.schedule(cpu);
        };
        match exit {
            GuestExit::Hypercall {
                immediate: HYPERCALL_IMMEDIATE,
            } => {
                let (number, args) = cpu.frame.hypercall();
                let Self {
                    domains, frames, ..
                } = self;
                let Some(domain) = domains.get_mut(current.domain).and_then(Option::as_mut) else {
                    return self.schedule(cpu);
                };
                let outcome = hypercall::dispatch(domain, current.vcpu, frames, number, args);
                // A one-shot timer just set may fall before the armed EL2 deadline.
                if let Some(deadline) = domain
                    .vcpus
                    .get(current.vcpu)
                    .and_then(|vcpu| vcpu.singleshot)
                {
                    arch::arm_timer_before(deadline);
                }
                match outcome {
                    Outcome::Return(value) => {
                        cpu.frame.x[0] = value;
                        Next::Resume
                    }
                    Outcome::Yield(value) => {
                        cpu.frame.x[0] = value;
                        let decision = self.scheduler.yield_now(cpu.index, arch::read_counter());
                        self.carry_out(cpu, decision)
                    }
                    Outcome::Shutdown(reason) => {
                        self.end_domain(cpu, current.domain, DomainState::ShutDown(reason))
                    }
                    Outcome::Block => {
                        cpu.frame.x[0] = 0;
                        let pending = self
                            .domain(current.domain)
                            .and_then(|domain| domain.vcpu_info(current.vcpu))
                            .is_some_and(|info| {
                                info.evtchn_upcall_pending
                                    .load(core::sync::atomic::Ordering::SeqCst)
                                    != 0
                            });
                        let now = arch::read_counter();
                        let decision = if pending {
                            self.scheduler.yield_now(cpu.index, now)
                        } else {
                            self.scheduler.block(cpu.index, now)
                        };
                        self.carry_out(cpu, decision)
                    }
                    Outcome::Poll => {
                        cpu.frame.x[0] = 0;
                        let decision = self.scheduler.block(cpu.index, arch::read_counter());
                        self.carry_out(cpu, decision)
                    }
                    Outcome::ReturnAndUpcall { value, vcpu } => {
                        cpu.frame.x[0] = value;
                        self.raise_upcall(cpu.index, current.domain, vcpu);
                        Next::Resume
                    }
                    Outcome::EventChannel { cmd, arg } => {
                        let (value, upcall) = self.event_channel_op(cpu.index, current, cmd, arg);
                        cpu.frame.x[0] = value;
                        if let Some(upcall) = upcall {
                            self.raise_upcall(cpu.index, upcall.domain, upcall.vcpu);
                        }
                        Next::Resume
                    }
                    Outcome::Continue { x1, x2 } => {
                        cpu.frame.continue_hypercall(x1, x2);
                        Next::Resume
                    }
                    Outcome::GrantTable { cmd, arg, count } => {
                        use crate::hypercall::grant_table::{grant_table_op, GrantOutcome};
                        let Self {
                            domains, frames, ..
                        } = self;
                        match grant_table_op(domains, frames, current.domain, cmd, arg, count) {
                            GrantOutcome::Done(value) => cpu.frame.x[0] = value,
                            GrantOutcome::Continue { arg, count } => {
                                cpu.frame.continue_hypercall(arg, count)
                            }
                        }
                        Next::Resume
                    }
                }
            }
            GuestExit::Hypercall {
                immediate: SMCCC_IMMEDIATE,
            } => self.smccc(cpu, current),
            GuestExit::SecureMonitorCall { immediate: 0 } => {
                // A trapped SMC returns to the SMC itself; step over it.
                cpu.frame.pc = cpu.frame.pc.wrapping_add(4);
                self.smccc(cpu, current)
            }
            GuestExit::Hypercall { .. } | GuestExit::SecureMonitorCall { .. } => {
                // Not a call we know: the guest sees an undefined instruction. As on Xen
                // (`inject_undef64_exception` with the trap's PC), ELR_EL1 is the trap's
                // return address: past an HVC, at a trapped SMC.
                let return_address = cpu.frame.pc;
                arch::inject_exception(&mut cpu.frame, INJECTED_UNDEFINED_ESR, return_address);
                Next::Resume
            }
            GuestExit::WaitFor { wait_for_event } => {
                cpu.frame.pc = cpu.frame.pc.wrapping_add(4);
                let deliverable = self
                    .vgics
                    .get(current.domain)
                    .is_some_and(|vgic| vgic.has_deliverable(current.vcpu));
                let now = arch::read_counter();
                if wait_for_event || deliverable {
                    // WFE waits for events we do not track (a yield is a valid wake-up);
                    // WFI with an interrupt already deliverable returns at once, even with
                    // PSTATE.I set, as the architecture says.
                    let decision = self.scheduler.yield_now(cpu.index, now);
                    return self.carry_out(cpu, decision);
                }
                // Nothing deliverable: the vCPU blocks until an interrupt is made pending
                // for it or its virtual timer's deadline passes.
                let decision = self.scheduler.block(cpu.index, now);
                self.carry_out(cpu, decision)
            }
            GuestExit::SystemRegister(access)
                if access.encoding == crate::esr::ICC_SGI1R_EL1 && !access.read =>
            {
                let value = cpu.frame.read(access.register);
                cpu.frame.pc = cpu.frame.pc.wrapping_add(4);
                let effects = match self.vgics.get_mut(current.domain) {
                    Some(vgic) => vgic.write_sgi1r(current.vcpu, value),
                    None => crate::vgic::Effects::NONE,
                };
                self.kick(cpu.index, current.domain, effects);
                Next::Resume
            }
            GuestExit::FloatingPoint => {
                // Its first FP/SIMD instruction: load its registers (zero, or as CPU_ON
                // left them) and switch them with it from now on; the instruction runs
                // again.
                if let Some(vcpu) = self.vcpu_mut(current) {
                    vcpu.uses_fp = true;
                    arch::allow_fp();
                    arch::restore_fp(&vcpu.fp);
                }
                Next::Resume
            }
            GuestExit::SystemRegister(_) => {
                // Any other trapped system register is not one a guest may use here: it
                // sees an undefined instruction, as on Xen.
                let instruction = cpu.frame.pc;
                arch::inject_exception(&mut cpu.frame, INJECTED_UNDEFINED_ESR, instruction);
                Next::Resume
            }
            GuestExit::DataAbort(abort) => match self.virtual_gic_register(current, &abort) {
                Some(register) => self.emulate_gic_access(cpu, current, &abort, register),
                // Another CPU changed this mapping (break-before-make) between the fault
                // and now: the access will succeed when retried.
                None if self.is_spurious(current, &abort, exit) => Next::Resume,
                None => self.crash(cpu, current, FaultReport::Data(abort)),
            },
            GuestExit::InstructionAbort(abort) if self.is_spurious(current, &abort, exit) => {
                Next::Resume
            }
            GuestExit::InstructionAbort(abort) => {
                self.crash(cpu, current, FaultReport::Instruction(abort))
            }
            GuestExit::Unhandled { class } => {
                self.crash(cpu, current, FaultReport::Unhandled { class, esr })
            }
        }
    }

    fn smccc(&mut self, cpu: &mut CpuState, current: VcpuId) -> Next {
        let frame = &cpu.frame;
        let outcome = psci::dispatch(frame.x[0], [frame.x[1], frame.x[2], frame.x[3]]);
        let result = match outcome {
            psci::SmcccOutcome::Return(value) => value,
            psci::SmcccOutcome::Shutdown(reason) => {
                return self.end_domain(cpu, current.domain, DomainState::ShutDown(reason))
            }
            psci::SmcccOutcome::CpuOn {
                vcpu,
                entry,
                context,
            } => {
                let target = usize::try_from(vcpu).ok().and_then(|index| {
                    self.vcpu_mut(VcpuId {
                        domain: current.domain,
                        vcpu: index,
                    })
                });
                psci::psci_return(match target {
                    None => hypercall_abi::psci::INVALID_PARAMETERS,
                    Some(target) if target.is_online() => hypercall_abi::psci::ALREADY_ON,
                    Some(target) => match target.power_on(entry, context) {
                        Ok(()) => {
                            let id = VcpuId {
                                domain: current.domain,
                                vcpu: vcpu as usize,
                            };
                            match self.wake(id, arch::read_counter(), cpu.index) {
                                Ok(()) => hypercall_abi::psci::SUCCESS,
                                Err(_) => hypercall_abi::psci::INTERNAL_FAILURE,
                            }
                        }
                        Err(_) => hypercall_abi::psci::INTERNAL_FAILURE,
                    },
                })
            }
            psci::SmcccOutcome::AffinityInfo { vcpu } => {
                let target = usize::try_from(vcpu).ok().and_then(|index| {
                    self.domain(current.domain)
                        .and_then(|domain| domain.vcpus.get(index))
                });
                // AFFINITY_INFO: 0 = ON, 1 = OFF.
                match target {
                    None => psci::psci_return(hypercall_abi::psci::INVALID_PARAMETERS),
                    Some(target) => u64::from(!target.is_online()),
                }
            }
            psci::SmcccOutcome::CpuOff => {
                if let Some(vcpu) = self.vcpu_mut(current) {
                    vcpu.power_off();
                }
                let no_vcpu_left = self
                    .domain(current.domain)
                    .is_some_and(|domain| domain.vcpus.iter().all(|vcpu| !vcpu.is_online()));
                if no_vcpu_left {
                    // PSCI CPU_OFF on its last vCPU: nothing can ever start the domain
                    // again, so it ends (Xen leaves such a domain to its toolstack).
                    if let Some(domain) = self.domain(current.domain) {
                        defmt::warn!(
                            "domain {=str} crashed: its last vCPU turned itself off",
                            domain.name.as_str()
                        );
                    }
                    return self.end_domain(cpu, current.domain, DomainState::Crashed);
                }
                let decision = self.scheduler.block(cpu.index, arch::read_counter());
                return self.carry_out(cpu, decision);
            }
        };
        cpu.frame.x[0] = result;
        Next::Resume
    }

    /// Whether a stage-2 abort is already resolved: the IPA is mapped now with the
    /// permission the access needed, and the fault was not during a stage-1 walk of an
    /// unmapped table.
    fn is_spurious(&self, current: VcpuId, abort: &Abort, exit: GuestExit) -> bool {
        let Some((_, attributes)) = self
            .domain(current.domain)
            .and_then(|domain| domain.stage2.translate(abort.ipa))
        else {
            return false;
        };
        match exit {
            GuestExit::InstructionAbort(_) => attributes.execute,
            _ if abort.write => attributes.write,
            _ => attributes.read,
        }
    }

    /// EVTCHNOP from `current`'s domain: the operation on the port tables, then its
    /// action (an event delivered, an unmasked port re-checked). Returns x0 and the vCPU
    /// whose upcall the action asks for, which the caller raises
    /// ([`Hypervisor::raise_upcall`]): the caller's own, the usual case, goes straight into
    /// a list register on the way back ([`Hypervisor::answer_event_channel_op`]).
    fn event_channel_op(
        &mut self,
        from_cpu: usize,
        current: VcpuId,
        cmd: u32,
        arg: crate::addr::GuestVirtAddr,
    ) -> (u64, Option<VcpuId>) {
        let Some(caller) = self.domain(current.domain) else {
            return (hypercall_abi::errno::Errno::ESRCH.to_return(), None);
        };
        let owned = caller.guest_accessible();
        let memory = crate::guest_memory::GuestMemory::new(&owned);
        // A send on the console port is for the hypervisor, the console backend; any other
        // goes to the model with the port read here, once.
        let (result, action) = if cmd == hypercall_abi::event_channel_op::SEND {
            let console = caller.console_port;
            match memory.read_value::<u32>(arg) {
                Err(error) => return (error.to_return(), None),
                Ok(port) if Some(port) == console => {
                    self.console_port_sent(from_cpu, current.domain);
                    return (0, None);
                }
                Ok(port) => crate::hypercall::event_channel::send(
                    &mut self.event_tables(),
                    current.domain as u16,
                    hypercall_abi::event_channel_op::Port(port),
                ),
            }
        } else {
            crate::hypercall::event_channel::event_channel_op(
                &mut self.event_tables(),
                &memory,
                current.domain as u16,
                cmd,
                arg,
            )
        };
        let upcall = action.and_then(|action| self.apply_event(from_cpu, action));
        (result, upcall)
    }

    /// Domain `slot` sent on its console port, whose other end is the hypervisor: input
    /// that waited for room in `in[]` goes first, then its `out[]` is served (which
    /// signals). Out of line: the common send keeps a small frame.
    #[inline(never)]
    fn console_port_sent(&mut self, from_cpu: usize, slot: usize) {
        self.deliver_console_input(from_cpu, slot, false);
        self.serve_console(from_cpu, slot);
    }

    /// Applies an event-channel action to the target domain's shared_info and, when the
    /// 2-level protocol says so, raises its upcall interrupt on the target vCPU.
    pub(crate) fn carry_out_event(
        &mut self,
        from_cpu: usize,
        action: crate::event_channel::Action,
    ) {
        if let Some(upcall) = self.apply_event(from_cpu, action) {
            self.raise_upcall(from_cpu, upcall.domain, upcall.vcpu);
        }
    }

    /// [`Hypervisor::carry_out_event`] but for the upcall, which it returns: the vCPU whose
    /// upcall interrupt the 2-level protocol says to raise, if any.
    #[inline(always)]
    fn apply_event(
        &mut self,
        from_cpu: usize,
        action: crate::event_channel::Action,
    ) -> Option<VcpuId> {
        let slot = usize::from(action.domain());
        let domain = self.domain(slot)?;
        let vcpu = action.vcpu();
        let vcpu_info = vcpu.and_then(|vcpu| domain.vcpu_info(vcpu as usize));
        let inject = action.apply(domain.shared_info(), vcpu_info);
        if let crate::event_channel::Action::Deliver(deliver) = action {
            // Xen's evtchn_check_pollers: a vCPU polling this port wakes, masked or not.
            // (A mask, not a collected list: a list is a 72-byte value copied out.)
            let pollers = domain.pollers_of(deliver.port.0 as u16);
            if !pollers.is_empty() {
                let now = arch::read_counter();
                for index in pollers.iter() {
                    let _ = self.wake(
                        VcpuId {
                            domain: slot,
                            vcpu: index,
                        },
                        now,
                        from_cpu,
                    );
                }
            }
        }
        match (inject, vcpu) {
            (true, Some(vcpu)) => Some(VcpuId {
                domain: slot,
                vcpu: vcpu as usize,
            }),
            _ => None,
        }
    }

    /// Makes the event-channel upcall interrupt (PPI 31) pending for a vCPU.
    pub(crate) fn raise_upcall(&mut self, from_cpu: usize, slot: usize, vcpu: usize) {
        let effects = match self.vgics.get_mut(slot) {
            Some(vgic) => vgic.set_pending(vcpu, crate::domain_dt::layout::EVENT_CHANNEL_INTID),
            None => crate::vgic::Effects::NONE,
        };
        self.kick(from_cpu, slot, effects);
    }

    /// Which virtual distributor or redistributor frame (and offset) a data abort hit, if
    /// any.
    fn virtual_gic_register(
        &self,
        current: VcpuId,
        abort: &Abort,
    ) -> Option<(crate::vgic::Frame, u64)> {
        self.domain(current.domain)?;
        let vgic = self.vgics.get(current.domain)?;
        vgic.shape().decode_ipa(abort.ipa.raw())
    }

    /// Trap-and-emulate of a virtual GIC register access; a guest that touches it in a way
    /// that cannot be emulated is ended, with the reason.
    fn emulate_gic_access(
        &mut self,
        cpu: &mut CpuState,
        current: VcpuId,
        abort: &Abort,
        (frame, offset): (crate::vgic::Frame, u64),
    ) -> Next {
        let Some(vgic) = self.vgics.get_mut(current.domain) else {
            return self.schedule(cpu);
        };
        let result = crate::virtual_interrupts::emulate_access(
            vgic,
            frame,
            offset,
            current.vcpu,
            abort.access,
            abort.write,
            &mut cpu.frame,
        );
        match result {
            Ok(effects) => {
                self.kick(cpu.index, current.domain, effects);
                Next::Resume
            }
            Err(error) => {
                let reason = match error {
                    crate::virtual_interrupts::EmulationError::NoSyndrome => {
                        "no instruction syndrome (writeback or pair access)"
                    }
                    crate::virtual_interrupts::EmulationError::Access(_) => {
                        "size or offset not allowed"
                    }
                };
                if let Some(domain) = self.domain(current.domain) {
                    defmt::warn!(
                        "domain {=str} crashed: virtual GIC access at IPA {=u64:#x} cannot be emulated: {=str}, PC {=u64:#x}",
                        domain.name.as_str(),
                        abort.ipa.raw(),
                        reason,
                        cpu.frame.pc
                    );
                }
                self.end_domain(cpu, current.domain, DomainState::Crashed)
            }
        }
    }

    /// Makes the vCPUs named in `effects` look at their interrupts again: a blocked one that
    /// is online is woken; one running on another physical CPU is kicked, so it exits and
    /// its list registers are refilled. (One running on `from_cpu` is refilled on entry.)
    fn kick(&mut self, from_cpu: usize, domain: usize, effects: crate::vgic::Effects) {
        // The vCPU this CPU runs sees its interrupts on the way back in. That leaves no
        // one to kick on most exits (no change, or an event or timer for the caller
        // itself), decided here without the loop and its larger frame.
        let mut others = effects.kick;
        if let Some(Some(here)) = self.running.get(from_cpu) {
            if here.domain == domain {
                others = others.without(here.vcpu);
            }
        }
        if !others.is_empty() {
            self.kick_others(from_cpu, domain, others);
        }
    }

    /// [`Hypervisor::kick`] for vCPUs other than the one on `from_cpu`: a blocked one is
    /// woken, one running elsewhere is sent the kick SGI.
    #[inline(never)]
    fn kick_others(&mut self, from_cpu: usize, domain: usize, others: crate::vgic::VcpuSet) {
        let mut now = None;
        for vcpu in others.iter() {
            let id = VcpuId { domain, vcpu };
            let wakeable = self
                .domain(domain)
                .and_then(|domain| domain.vcpus.get(vcpu))
                .is_some_and(|vcpu| vcpu.is_online() && vcpu.state() == RunState::Blocked);
            if wakeable {
                let now = *now.get_or_insert_with(arch::read_counter);
                let _ = self.wake(id, now, from_cpu);
            } else if let Some(elsewhere) = self.cpu_running(id).filter(|cpu| *cpu != from_cpu) {
                arch::kick_cpu(elsewhere);
            }
        }
    }

    /// The physical CPU running `id`, if any.
    fn cpu_running(&self, id: VcpuId) -> Option<usize> {
        self.running.iter().position(|running| *running == Some(id))
    }

    /// One synchronous exit, under the lock, from folding the LRs back to filling them for
    /// the entry that follows (if one does): what [`handle_guest_exit`] does before it
    /// resumes or idles, and what the host tests drive.
    pub fn exit_and_enter(&mut self, cpu: &mut CpuState, exit: GuestExit, esr: u64) -> Next {
        self.leave_guest(cpu);
        let next = self.handle_exit(cpu, exit, esr);
        let next = self.settle(cpu, next);
        if next == Next::Resume {
            self.enter_guest(cpu);
        }
        next
    }

    /// Answers a trapped load from a virtual GIC register that holds state by itself,
    /// without the rest of an exit, when it can: `frame` and `offset` are what
    /// [`crate::virtual_interrupts::answer_identity_read`] decoded with the CPU's copy of the
    /// vGIC's shape. Returns false, having changed nothing, when the full exit path must
    /// take the access instead (and, if it is at fault, end the domain with the reason).
    ///
    /// The vectors call this with only the caller-saved registers (x0-x18, x30) and the
    /// return address saved in `cpu.frame`, so the load may only target one of those. A
    /// read changes nothing in the model, and while the vCPU has no list register in use
    /// the model is the whole truth, so there is nothing to fold back before and nothing
    /// to refill after. (An interrupt another CPU makes pending meanwhile comes with a
    /// kick, taken as soon as the vCPU resumes; a domain ended meanwhile likewise.)
    pub fn answer_register_read(
        &self,
        cpu: &mut CpuState,
        frame: Frame,
        offset: u64,
        access: EmulatableAccess,
    ) -> bool {
        let Some(current) = cpu.current else {
            return false;
        };
        if !access.in_partial_frame() || !cpu.list_registers_idle || !self.is_alive(current.domain)
        {
            return false;
        }
        // `frame` and `offset` were decoded with the CPU's copy of the shape. It is the
        // domain's (a slot is rebuilt only from its own entry of the pack); and were it
        // not, the model checks every offset against its own frame sizes and vCPUs, so
        // the read is still of a register this vGIC has, or refused.
        let Some(vgic) = self.vgics.get(current.domain) else {
            return false;
        };
        crate::virtual_interrupts::emulate_read(
            vgic,
            frame,
            offset,
            current.vcpu,
            access,
            &mut cpu.frame,
        )
        .is_ok()
    }

    /// Answers a hypercall that involves only its caller ([`hypercall::is_local`]) by
    /// itself, without the rest of an exit: returns false, having changed nothing, for any
    /// other call, or when the full exit path must run (no vCPU, or its domain ended).
    ///
    /// As [`Hypervisor::answer_register_read`], it sees only the caller-saved registers
    /// and the return address in `cpu.frame`: the arguments (x0-x4, x16), the result (x0)
    /// and a continuation's x1, x2 and PC are among them. Such a call changes nothing in
    /// the vGIC, so the list registers stay as they are, in use or not.
    pub fn answer_local_hypercall(&mut self, cpu: &mut CpuState) -> bool {
        let Some(current) = cpu.current else {
            return false;
        };
        let (number, args) = cpu.frame.hypercall();
        if !hypercall::is_local(number) || !self.is_alive(current.domain) {
            return false;
        }
        let Self {
            domains, frames, ..
        } = self;
        let Some(domain) = domains.get_mut(current.domain).and_then(Option::as_mut) else {
            return false;
        };
        let frame = &mut cpu.frame;
        match hypercall::dispatch(domain, current.vcpu, frames, number, args) {
            Outcome::Return(value) => frame.x[0] = value,
            Outcome::Continue { x1, x2 } => frame.continue_hypercall(x1, x2),
            // `is_local` promises neither (host tests); were it broken, the caller is
            // told the call does not exist rather than left half served.
            _ => frame.x[0] = hypercall_abi::errno::Errno::ENOSYS.to_return(),
        }
        true
    }

    /// Answers an event-channel operation by itself, without the rest of an exit: returns
    /// false, having changed nothing, when the full exit path must run (no vCPU, or its
    /// domain ended).
    ///
    /// As [`Hypervisor::answer_local_hypercall`], it sees only the caller-saved registers
    /// and the return address in `cpu.frame`: the arguments and the result are among
    /// them. Every EVTCHNOP lets its caller go on (it may wake or interrupt other vCPUs,
    /// never switch this CPU's), so the steps the full exit takes around it are all it
    /// needs, and none of them touches x19-x29: the list registers folded back
    /// ([`Hypervisor::leave_guest`]), the operation (`Hypervisor::event_channel_op`),
    /// the list registers filled again ([`Hypervisor::enter_guest`]). An upcall for the
    /// caller itself (a loopback channel, an IPI port) goes, as the timer's does, straight
    /// into a free LR with one lookup (`Hypervisor::pend_and_return`).
    ///
    /// The sub-op is not decoded first: `hypercall::dispatch` would only check it against
    /// the same set the operation checks, with the same answer (-ENOSYS, host tests).
    #[inline(never)]
    pub fn answer_event_channel_op(&mut self, cpu: &mut CpuState) -> bool {
        let Some(current) = cpu.current else {
            return false;
        };
        if !self.is_alive(current.domain) {
            return false;
        }
        // x0 = the sub-op (Xen reads an int: the low 32 bits), x1 = its argument.
        let [cmd, arg, ..] = cpu.frame.x;
        let (cmd, arg) = (cmd as u32, crate::addr::GuestVirtAddr::new(arg));
        // `leave_guest` would return at once with no LR in use; testing here spares the
        // usual send the call (5 instructions).
        if !cpu.list_registers_idle {
            self.leave_guest(cpu);
        }
        let (value, upcall) = self.event_channel_op(cpu.index, current, cmd, arg);
        cpu.frame.x[0] = value;
        match upcall {
            Some(upcall) if upcall == current && cpu.last == Some(current) => {
                let intid = crate::domain_dt::layout::EVENT_CHANNEL_INTID;
                self.pend_and_return(cpu, current, intid);
            }
            Some(upcall) => {
                self.raise_upcall(cpu.index, upcall.domain, upcall.vcpu);
                self.enter_guest(cpu);
            }
            None => self.enter_guest(cpu),
        }
        true
    }

    /// After a vCPU exits: folds its list registers back into its domain's vGIC.
    pub fn leave_guest(&mut self, cpu: &CpuState) {
        let Some(current) = cpu.current else { return };
        if cpu.list_registers_idle {
            return;
        }
        let Self { domains, vgics, .. } = self;
        let vcpu = domains
            .get_mut(current.domain)
            .and_then(Option::as_mut)
            .and_then(|domain| domain.vcpus.get_mut(current.vcpu));
        let effects = match (vgics.get_mut(current.domain), vcpu) {
            (Some(vgic), Some(vcpu)) => {
                crate::virtual_interrupts::exit(vgic, &mut vcpu.interrupts, current.vcpu)
            }
            _ => crate::vgic::Effects::NONE,
        };
        self.kick(cpu.index, current.domain, effects);
    }

    /// Before resuming the vCPU in `cpu`'s frame: fills the list registers with its
    /// deliverable interrupts (all of them rewritten when it arrives on this CPU, unless
    /// the vCPU that left them cleared them).
    pub fn enter_guest(&mut self, cpu: &mut CpuState) {
        use crate::virtual_interrupts::Arrival;
        let Some(current) = cpu.current else { return };
        // The usual case, decided without looking up the vCPU: it was the last one here,
        // its LRs held nothing (so its exit folded nothing back), and its domain's vGIC
        // has not changed since (the LRs were current then: every entry leaves them so).
        if cpu.last == Some(current)
            && cpu.list_registers_idle
            && self
                .vgics
                .get(current.domain)
                .is_some_and(|vgic| vgic.generation() == cpu.entered_generation)
        {
            // The shortcut promises what the full check would find (host tests).
            debug_assert!(self.vgics.get(current.domain).is_some_and(|vgic| {
                self.domain(current.domain)
                    .and_then(|domain| domain.vcpus.get(current.vcpu))
                    .is_some_and(|vcpu| vcpu.interrupts.list_registers.is_current(vgic))
            }));
            return;
        }
        // (Only `save` sets `list_registers_clear`, and it also clears `last`.)
        let arrival = if cpu.last == Some(current) {
            Arrival::Returning
        } else if core::mem::take(&mut cpu.list_registers_clear) {
            Arrival::ClearedBefore
        } else {
            Arrival::Unknown
        };
        let Self { domains, vgics, .. } = self;
        let vcpu = domains
            .get_mut(current.domain)
            .and_then(Option::as_mut)
            .and_then(|domain| domain.vcpus.get_mut(current.vcpu));
        cpu.list_registers_idle = match (vgics.get_mut(current.domain), vcpu) {
            (Some(vgic), Some(vcpu)) => {
                crate::virtual_interrupts::enter(vgic, &mut vcpu.interrupts, current.vcpu, arrival);
                cpu.entered_generation = vgic.generation();
                vcpu.interrupts.list_registers.valid_mask() == 0
            }
            _ => false,
        };
        cpu.last = Some(current);
    }

    /// Whether [`Hypervisor::alive`] says what the domain slots say (tests).
    #[cfg(test)]
    pub(crate) fn alive_mask_is_true(&self) -> bool {
        (0..MAX_DOMAINS).all(|slot| {
            let alive = self
                .domain(slot)
                .is_some_and(|domain| domain.state == DomainState::Alive);
            alive == self.is_alive(slot)
        })
    }

    /// Whether slot `slot` holds a domain that is alive.
    fn is_alive(&self, slot: usize) -> bool {
        slot < MAX_DOMAINS && self.alive & (1 << slot) != 0
    }

    fn domain_mut(&mut self, slot: usize) -> Option<&mut Domain> {
        self.domains.get_mut(slot).and_then(Option::as_mut)
    }

    fn crash(&mut self, cpu: &mut CpuState, current: VcpuId, fault: FaultReport) -> Next {
        let pc = cpu.frame.pc;
        if let Some(domain) = self.domain(current.domain) {
            let name = domain.name.as_str();
            match fault {
                FaultReport::Data(abort) | FaultReport::Instruction(abort) => {
                    let access = match fault {
                        FaultReport::Instruction(_) => "instruction fetch",
                        _ if abort.write => "write",
                        _ => "read",
                    };
                    let (kind, level) = match abort.kind {
                        FaultKind::Translation(level) => ("translation", level),
                        FaultKind::AccessFlag(level) => ("access flag", level),
                        FaultKind::Permission(level) => ("permission", level),
                        FaultKind::Other(status) => ("other", status),
                    };
                    defmt::warn!(
                        "domain {=str} crashed: stage-2 {=str} fault (level/status {=u8}) on {=str} at IPA {=u64:#x} (VA {=u64:#x}), PC {=u64:#x}",
                        name, kind, level, access, abort.ipa.raw(), abort.virtual_address.raw(), pc
                    );
                }
                FaultReport::Unhandled { class, esr } => {
                    defmt::warn!(
                        "domain {=str} crashed: unhandled exception class {=u32:#x} (ESR {=u64:#x}), PC {=u64:#x}",
                        name, class, esr, pc
                    );
                }
            }
        }
        self.end_domain(cpu, current.domain, DomainState::Crashed)
    }

    /// Ends domain `slot`: logs how, flushes its console, tears it down, and schedules.
    fn end_domain(&mut self, cpu: &mut CpuState, slot: usize, state: DomainState) -> Next {
        // Off the run queues first; CPUs running its vCPUs elsewhere are kicked.
        if let Ok(removed) = self.scheduler.remove_domain(slot) {
            for other in 0..crate::scheduler::MAX_CPUS {
                if removed.cpus_to_kick & (1 << other) != 0 && other != cpu.index {
                    arch::kick_cpu(other);
                }
            }
        }
        // Its channels close; each peer is told on its end, so it sees the end rather
        // than waiting for ever.
        let notifications = crate::event_channel::close_all(&mut self.event_tables(), slot as u16);
        for deliver in notifications {
            self.carry_out_event(cpu.index, crate::event_channel::Action::Deliver(deliver));
        }
        // What it mapped is let go, and what others mapped of it is withdrawn, before its
        // memory can be scrubbed and reused.
        crate::grant_table::release_domain(&mut self.domains, &mut self.frames, slot);
        // Whether its crash policy builds it again once it is torn down.
        let restarting = self.plan_restart(slot, state);
        let mut domain_taken = self.domains.get_mut(slot).and_then(Option::take);
        if let Some(domain) = domain_taken.as_mut() {
            self.retire(domain, state, restarting);
        }
        if let Some(domain) = domain_taken {
            // Back in its slot, ended: it is torn down by the last CPU to leave it.
            if let Some(entry) = self.domains.get_mut(slot) {
                *entry = Some(domain);
            }
        }
        self.console_input_domain_ended(slot);
        if cpu.current.is_some_and(|current| current.domain == slot) {
            cpu.current = None;
            cpu.last = None;
            if let Some(running) = self.running.get_mut(cpu.index) {
                *running = None;
            }
        }
        self.tear_down_if_unused(slot);
        self.schedule(cpu)
    }

    /// Tears an ended domain down once no CPU runs any of its vCPUs any more (then, if its
    /// crash policy says so, marks it for rebuilding: see `settle`).
    fn tear_down_if_unused(&mut self, slot: usize) {
        let ended = self
            .domain(slot)
            .is_some_and(|domain| domain.state != DomainState::Alive);
        let in_use = self
            .running
            .iter()
            .flatten()
            .any(|running| running.domain == slot);
        if ended && !in_use {
            if let Some(domain) = self.domains.get_mut(slot).and_then(Option::take) {
                domain.tear_down(&mut self.frames);
                self.after_teardown(slot);
            }
        }
    }

    /// On entry from a vCPU whose domain was ended meanwhile (by another CPU): forget the
    /// vCPU without saving anything, and tear the domain down if this was the last CPU in it.
    pub fn drop_if_dying(&mut self, cpu: &mut CpuState) {
        let Some(current) = cpu.current else { return };
        if self.is_alive(current.domain) {
            return;
        }
        cpu.current = None;
        cpu.last = None;
        if let Some(running) = self.running.get_mut(cpu.index) {
            *running = None;
        }
        self.tear_down_if_unused(current.domain);
    }

    /// Marks a domain ended, flushes its console and logs a clean shutdown (crashes were
    /// logged with their cause already), and counts it if it did not end cleanly (unless
    /// it is `restarting`: then its next incarnation's end is what counts).
    fn retire(&mut self, domain: &mut Domain, state: DomainState, restarting: bool) {
        domain.end(state);
        self.alive &= !(1 << domain.slot);
        let name = &domain.name;
        domain
            .console
            .flush(|line| serial::write_console_line(name, line));
        if let DomainState::ShutDown(reason) = state {
            defmt::info!(
                "domain {=str} shut down: {=str}",
                name.as_str(),
                reason_name(reason)
            );
        }
        if !domain.state.is_clean() && !restarting {
            self.unclean += 1;
        }
    }

    /// Asks the scheduler what `cpu` should run now and does it.
    pub fn schedule(&mut self, cpu: &mut CpuState) -> Next {
        let decision = self.scheduler.schedule(cpu.index, arch::read_counter());
        self.carry_out(cpu, decision)
    }

    /// A tick of this CPU's EL2 timer: the running vCPU's slice may be over.
    pub fn tick(&mut self, cpu: &mut CpuState) -> Next {
        let decision = self.scheduler.tick(cpu.index, arch::read_counter());
        self.carry_out(cpu, decision)
    }

    /// Carries out a scheduler decision on `cpu`: saves the vCPU leaving it, loads the one
    /// arriving, and arms the EL2 timer for the end of the slice.
    fn carry_out(
        &mut self,
        cpu: &mut CpuState,
        decision: Result<Decision, crate::scheduler::SchedError>,
    ) -> Next {
        let Ok(decision) = decision else {
            // Only an inconsistency between scheduler and CPU state leads here: re-ask.
            let fresh = self.scheduler.schedule(cpu.index, arch::read_counter());
            return match fresh {
                Ok(decision) => self.carry_out(cpu, Ok(decision)),
                Err(_) => self.idle_or_halt(cpu),
            };
        };
        let now = arch::read_counter();
        if let Some(out) = decision.switched_out {
            if cpu.current == Some(out.id) {
                self.save(cpu, out.id, now);
            }
            if let Some(vcpu) = self.vcpu_mut(out.id) {
                if vcpu.state() != out.state {
                    let _ = vcpu.set_state(out.state);
                }
            }
        }
        if let Some(target) = decision.cpu_to_kick.filter(|target| *target != cpu.index) {
            arch::kick_cpu(target);
        }
        let next = match decision.next {
            Some(next) => {
                if cpu.current != Some(next) {
                    if let Some(previous) = cpu.current {
                        self.save(cpu, previous, now);
                    }
                    self.load(cpu, next, now);
                }
                Next::Resume
            }
            None => {
                if let Some(previous) = cpu.current {
                    self.save(cpu, previous, now);
                }
                self.idle_or_halt(cpu)
            }
        };
        // The EL2 timer ends the slice, or wakes the first blocked vCPU whose virtual
        // timer expires, whichever comes first.
        let deadline = match (decision.slice_end, self.earliest_deadline()) {
            (Some(slice), Some(wake)) => Some(slice.min(wake)),
            (slice, wake) => slice.or(wake),
        };
        arch::arm_timer(deadline);
        next
    }

    /// When a blocked vCPU must wake by itself: its virtual timer's deadline, if enabled
    /// and unmasked (CNTVOFF is 0, so virtual and physical counts agree).
    fn wake_deadline(vcpu: &crate::vcpu::Vcpu) -> Option<u64> {
        let blocked = vcpu.state() == RunState::Blocked && vcpu.is_online();
        let poll = vcpu.poll_deadline.filter(|_| blocked);
        match (Self::timer_deadline(vcpu), poll) {
            (Some(timer), Some(poll)) => Some(timer.min(poll)),
            (timer, poll) => timer.or(poll),
        }
    }

    /// A blocked vCPU's virtual-timer deadline, if the timer is enabled and unmasked.
    fn timer_deadline(vcpu: &crate::vcpu::Vcpu) -> Option<u64> {
        let control = vcpu.el1.cntv_ctl_el0;
        let enabled = control & 1 != 0 && control & TIMER_IMASK == 0;
        (vcpu.state() == RunState::Blocked && vcpu.is_online() && enabled)
            .then_some(vcpu.el1.cntv_cval_el0)
    }

    /// The earliest deadline of anything the EL2 timer must act on besides the slice: a
    /// blocked vCPU's virtual timer or poll timeout, any vCPU's one-shot timer, or a
    /// domain's watchdog. One pass over the live domains: every scheduling decision asks,
    /// and three separate scans cost about 300 instructions per switch.
    fn earliest_deadline(&self) -> Option<u64> {
        let mut earliest = u64::MAX;
        for slot in crate::bits::ones(u64::from(self.alive)) {
            let Some(domain) = self.domain(slot) else {
                continue;
            };
            // Domain watchdogs (hypervisor_lifecycle.rs).
            earliest = earliest.min(domain.watchdog_deadline.unwrap_or(u64::MAX));
            for vcpu in &domain.vcpus {
                let shot = vcpu.singleshot.unwrap_or(u64::MAX);
                let wake = Self::wake_deadline(vcpu).unwrap_or(u64::MAX);
                earliest = earliest.min(shot).min(wake);
            }
        }
        (earliest != u64::MAX).then_some(earliest)
    }

    /// Fires every one-shot timer whose deadline has passed: VIRQ_TIMER on the vCPU's port
    /// bound to it (if any), which raises its upcall and wakes it if blocked.
    fn fire_singleshots(&mut self, from_cpu: usize, now: u64) {
        for slot in 0..MAX_DOMAINS {
            let count = self.domain(slot).map_or(0, |domain| domain.vcpus.len());
            for index in 0..count {
                let due = self
                    .domain(slot)
                    .and_then(|domain| domain.vcpus.get(index))
                    .and_then(|vcpu| vcpu.singleshot)
                    .is_some_and(|deadline| deadline <= now);
                if !due {
                    continue;
                }
                if let Some(vcpu) = self.vcpu_mut(VcpuId {
                    domain: slot,
                    vcpu: index,
                }) {
                    vcpu.singleshot = None;
                }
                let deliver = self.ports.get(slot).and_then(|ports| {
                    ports.raise_virq(
                        slot as u16,
                        index as u32,
                        hypercall_abi::event_channel_op::VIRQ_TIMER,
                    )
                });
                if let Some(deliver) = deliver {
                    self.carry_out_event(from_cpu, crate::event_channel::Action::Deliver(deliver));
                }
            }
        }
    }

    /// Wakes every blocked vCPU whose virtual timer has expired, with its timer interrupt
    /// pending (and its saved timer masked, as when the interrupt is forwarded live).
    fn wake_expired(&mut self, from_cpu: usize, now: u64) {
        for slot in 0..MAX_DOMAINS {
            let count = self.domain(slot).map_or(0, |domain| domain.vcpus.len());
            for index in 0..count {
                let id = VcpuId {
                    domain: slot,
                    vcpu: index,
                };
                let expired = self
                    .domain(slot)
                    .and_then(|domain| domain.vcpus.get(index))
                    .and_then(Self::wake_deadline)
                    .is_some_and(|deadline| deadline <= now);
                if !expired {
                    continue;
                }
                let timer_expired = self
                    .domain(slot)
                    .and_then(|domain| domain.vcpus.get(index))
                    .and_then(Self::timer_deadline)
                    .is_some_and(|deadline| deadline <= now);
                if timer_expired {
                    if let Some(vcpu) = self.vcpu_mut(id) {
                        vcpu.el1.cntv_ctl_el0 |= TIMER_IMASK;
                    }
                    if let Some(vgic) = self.vgics.get_mut(slot) {
                        vgic.set_pending(index, arch::virtual_timer_intid());
                    }
                }
                // A poll that timed out just wakes.
                let _ = self.wake(id, now, from_cpu);
            }
        }
    }

    fn idle_or_halt(&mut self, cpu: &mut CpuState) -> Next {
        cpu.current = None;
        // A domain torn down for a restart counts as present (`settle` rebuilds it).
        if self.domains.iter().any(Option::is_some) || self.lifecycle.rebuild_due != 0 {
            Next::Idle
        } else {
            Next::Halt
        }
    }

    /// Saves the vCPU leaving `cpu` into its control block.
    fn save(&mut self, cpu: &mut CpuState, id: VcpuId, now: u64) {
        // One lookup of the control block and the vGIC for everything below (every
        // switch comes here).
        let Self {
            domains,
            vgics,
            running,
            ..
        } = self;
        let vcpu = domains
            .get_mut(id.domain)
            .and_then(Option::as_mut)
            .and_then(|domain| domain.vcpus.get_mut(id.vcpu));
        if let Some(vcpu) = vcpu {
            arch::copy_registers(&mut vcpu.registers, &cpu.frame);
            arch::save_el1(&mut vcpu.el1);
            if vcpu.uses_fp {
                arch::save_fp(&mut vcpu.fp);
            }
            if cpu.last == Some(id) {
                crate::virtual_interrupts::leave(&mut vcpu.interrupts);
                // What sat in the list registers goes back to the vGIC model, so the
                // vCPU can be entered on any CPU next time (and an SPI can go to another
                // vCPU meanwhile).
                if let Some(vgic) = vgics.get_mut(id.domain) {
                    crate::virtual_interrupts::release(vgic, &mut vcpu.interrupts, id.vcpu);
                    cpu.list_registers_clear = true;
                }
                cpu.last = None;
            }
            vcpu.ticks_used += now.saturating_sub(vcpu.running_since);
        }
        if let Some(slot) = running.get_mut(cpu.index) {
            *slot = None;
        }
        cpu.current = None;
    }

    /// Loads `id` onto `cpu`.
    fn load(&mut self, cpu: &mut CpuState, id: VcpuId, now: u64) {
        let Some(domain) = self.domains.get_mut(id.domain).and_then(Option::as_mut) else {
            return;
        };
        let vttbr = domain.stage2.vttbr();
        let Some(vcpu) = domain.vcpus.get_mut(id.vcpu) else {
            return;
        };
        if vcpu.state() != RunState::Running {
            let _ = vcpu.set_state(RunState::Running);
        }
        vcpu.running_since = now;
        arch::copy_registers(&mut cpu.frame, &vcpu.registers);
        // Lazily for a vCPU that never used FP/SIMD: its first use traps
        // (`GuestExit::FloatingPoint`); the registers it would see are not loaded.
        if vcpu.uses_fp {
            arch::allow_fp();
            arch::restore_fp(&vcpu.fp);
        } else {
            arch::trap_fp();
        }
        arch::restore_el1(&vcpu.el1);
        arch::set_stage2(vttbr);
        let runstate_area = vcpu.runstate_area.is_some();
        cpu.current = Some(id);
        if let Some(vgic) = self.vgics.get(id.domain) {
            cpu.vgic_shape = vgic.shape();
        }
        if let Some(slot) = self.running.get_mut(cpu.index) {
            *slot = Some(id);
        }
        if runstate_area {
            self.update_runstate(id, now);
        }
    }

    fn vcpu_mut(&mut self, id: VcpuId) -> Option<&mut crate::vcpu::Vcpu> {
        self.domain_mut(id.domain)
            .and_then(|domain| domain.vcpus.get_mut(id.vcpu))
    }

    /// Writes the runstate record of the vCPU just switched in, if it registered an area
    /// (as Xen/ARM does, through its virtual address while it is current; a bad address
    /// is ignored, as there).
    fn update_runstate(&mut self, id: VcpuId, now: u64) {
        let Some(domain) = self.domain(id.domain) else {
            return;
        };
        let Some(vcpu) = domain.vcpus.get(id.vcpu) else {
            return;
        };
        let Some(area) = vcpu.runstate_area else {
            return;
        };
        let to_ns = crate::hypercall::vcpu::ticks_to_nanoseconds;
        let running_ns = to_ns(vcpu.ticks_used);
        // Time not spent running is reported as runnable: blocked and offline time are not
        // yet told apart. Serialised field by field: the struct has padding after `state`
        // that must not carry hypervisor bytes to the guest.
        let times = [running_ns, to_ns(now).saturating_sub(running_ns), 0, 0];
        let mut record = [0u8; 48];
        record[0..4].copy_from_slice(&hypercall_abi::vcpu_op::RUNSTATE_RUNNING.to_le_bytes());
        record[8..16].copy_from_slice(&to_ns(now).to_le_bytes());
        for (slot, time) in record[16..48].chunks_exact_mut(8).zip(times) {
            slot.copy_from_slice(&time.to_le_bytes());
        }
        let owned = domain.guest_accessible();
        let _ = crate::guest_memory::GuestMemory::new(&owned).write(area, &record);
    }

    /// Logs the final line and tells whether every domain shut down cleanly.
    pub fn report_halt(&self) -> bool {
        if self.unclean == 0 {
            defmt::info!("halt: all {=usize} domains shut down cleanly", self.started);
        } else {
            defmt::warn!(
                "halt: {=usize} of {=usize} domains did not shut down cleanly",
                self.unclean,
                self.started
            );
        }
        self.unclean == 0
    }

    /// Whether the firmware takes PSCI calls over SMC (to power off).
    pub fn psci_over_smc(&self) -> bool {
        self.psci_over_smc
    }
}

#[derive(Clone, Copy)]
enum FaultReport {
    Data(Abort),
    Instruction(Abort),
    Unhandled { class: u32, esr: u64 },
}

/// Whether the domain in `slot` can take console input: alive, with a console channel.
fn takes_input(domains: &[Option<Domain>; MAX_DOMAINS], slot: usize) -> bool {
    domains
        .get(slot)
        .and_then(Option::as_ref)
        .is_some_and(|domain| domain.state == DomainState::Alive && domain.console_port.is_some())
}

/// The name Xen's tools use for a shutdown reason.
pub const fn reason_name(reason: ShutdownReason) -> &'static str {
    match reason {
        ShutdownReason::Poweroff => "poweroff",
        ShutdownReason::Reboot => "reboot",
        ShutdownReason::Suspend => "suspend",
        ShutdownReason::Crash => "crash",
        ShutdownReason::Watchdog => "watchdog",
        ShutdownReason::SoftReset => "soft_reset",
    }
}

/// The ports a domain will get for the pre-connected channels `channels` (pairs of domain
/// indices, in configuration order): before any guest runs each channel takes the lowest
/// free port at each end, so domain `domain`'s k-th channel is port k (from 1). Returns
/// `(local port, remote domain id)` pairs.
pub fn plan_channel_ports(
    channels: impl Iterator<Item = (usize, usize)>,
    domain: usize,
) -> heapless::Vec<(u32, u32), { crate::domain_dt::MAX_CHANNEL_CELLS }> {
    let mut planned = heapless::Vec::new();
    for (a, b) in channels {
        let remote = if a == domain {
            b
        } else if b == domain {
            a
        } else {
            continue;
        };
        let port = planned.len() as u32 + 1;
        if planned.push((port, remote as u32)).is_err() {
            break;
        }
    }
    planned
}

/// Acts on `next` for `cpu` after an exit: returns to let the exception vectors resume
/// the vCPU in the frame, or waits for interrupts while nothing can run, or powers off.
/// The common case, resuming, is decided inline: the idle loop's frame cost about 25
/// instructions on every exit.
#[inline(always)]
fn finish(cpu: &mut CpuState, next: Next) {
    if next != Next::Resume {
        wait_or_halt(cpu, next);
    }
}

/// The rest of [`finish`]: idles until a vCPU can run, or halts.
#[inline(never)]
fn wait_or_halt(cpu: &mut CpuState, mut next: Next) {
    loop {
        match next {
            Next::Resume => return,
            Next::Halt => {
                // Every CPU comes here; the machine's verdict is logged once (where there
                // is no power-off, the others just park).
                static REPORTED: core::sync::atomic::AtomicBool =
                    core::sync::atomic::AtomicBool::new(false);
                let hypervisor = HYPERVISOR.lock();
                if !REPORTED.swap(true, core::sync::atomic::Ordering::Relaxed) {
                    hypervisor.report_halt();
                }
                let psci_over_smc = hypervisor.psci_over_smc();
                drop(hypervisor);
                arch::power_off(psci_over_smc);
            }
            Next::Idle => {
                // Interrupts stay masked at EL2; WFI still wakes when one is pending.
                arch::wait_for_interrupt();
                let mut hypervisor = HYPERVISOR.lock();
                next = hypervisor.take_interrupts(cpu);
                next = hypervisor.settle(cpu, next);
                if next == Next::Resume {
                    hypervisor.enter_guest(cpu);
                }
            }
        }
    }
}

impl Hypervisor {
    /// Acknowledges and handles every physical interrupt pending at this CPU's GIC, the
    /// one the vectors acknowledged and left to this path first ([`CpuState::taken`]).
    pub fn take_interrupts(&mut self, cpu: &mut CpuState) -> Next {
        self.drop_if_dying(cpu);
        let mut next = if cpu.current.is_some() {
            Next::Resume
        } else {
            Next::Idle
        };
        while let Some(acknowledged) = cpu.taken.take().or_else(arch::acknowledge_interrupt) {
            next = self.handle_interrupt(cpu, acknowledged, next);
        }
        next
    }

    /// Handles one acknowledged physical interrupt; `next` is what to do afterwards as
    /// decided so far, and the result what to do now.
    fn handle_interrupt(
        &mut self,
        cpu: &mut CpuState,
        acknowledged: arch::Acknowledged,
        mut next: Next,
    ) -> Next {
        let intid = acknowledged.intid;
        if intid == arch::virtual_timer_intid() {
            // The running vCPU's virtual timer expired. As Xen does, mask it (the guest
            // reprograms CNTV_CTL in its handler) and inject its virtual PPI.
            arch::mask_virtual_timer();
            arch::end_interrupt(acknowledged);
            if let Some(owner) = cpu.current.or(cpu.last) {
                if cpu.current.is_none() {
                    // Fired after its vCPU left: keep the saved copy masked too.
                    if let Some(vcpu) = self.vcpu_mut(owner) {
                        vcpu.el1.cntv_ctl_el0 |= TIMER_IMASK;
                    }
                }
                let effects = match self.vgics.get_mut(owner.domain) {
                    Some(vgic) => vgic.set_pending(owner.vcpu, intid),
                    None => crate::vgic::Effects::NONE,
                };
                self.kick(cpu.index, owner.domain, effects);
            }
        } else if Some(intid) == arch::maintenance_intid() {
            // The list registers ran low; refilling them happens on the way back in.
            arch::end_interrupt(acknowledged);
        } else if intid == arch::el2_timer_intid() {
            arch::arm_timer(None);
            arch::end_interrupt(acknowledged);
            let now = arch::read_counter();
            self.wake_expired(cpu.index, now);
            self.fire_singleshots(cpu.index, now);
            self.expire_watchdogs(cpu, now);
            next = self.tick(cpu);
        } else if intid == arch::kick_intid() {
            // Another CPU changed something this one must act on: reschedule.
            arch::end_interrupt(acknowledged);
            self.drop_if_dying(cpu);
            next = self.schedule(cpu);
        } else if Some(intid) == self.console_input.intid {
            // Drained before the end, so the level-triggered line is low again.
            self.take_console_input(cpu.index);
            arch::end_interrupt(acknowledged);
            if cpu.current.is_none() {
                // An idle CPU: the vCPU the input woke may be queued right here.
                next = self.schedule(cpu);
            }
        } else {
            arch::end_interrupt(acknowledged);
            defmt::warn!("unexpected physical interrupt {=u32}", intid);
        }
        next
    }

    /// Handles the physical interrupt `acknowledged`, taken while `cpu`'s vCPU ran, by
    /// itself, without the rest of an exit, when it can: returns false, having changed
    /// nothing, when the full exit path must take it ([`CpuState::taken`] carries it
    /// there).
    ///
    /// It takes the running vCPU's virtual timer, whose handling never reschedules, so the
    /// vCPU that ran is the one that resumes. (The maintenance interrupt does not either,
    /// but its exit folds back and refills the list registers: the calls here cost it more
    /// than the registers they save.) As
    /// [`Hypervisor::answer_register_read`], it sees only the caller-saved registers in
    /// `cpu.frame`, and neither touches them: the exit folds the list registers back and
    /// the entry fills them, as the full path does, or, in the usual case, the one LR the
    /// timer needs is filled directly (`deliver_own_timer`).
    pub fn answer_interrupt(
        &mut self,
        cpu: &mut CpuState,
        acknowledged: arch::Acknowledged,
    ) -> bool {
        let Some(current) = cpu.current else {
            return false;
        };
        if !answers_half_way(acknowledged.intid) || !self.is_alive(current.domain) {
            return false;
        }
        if cpu.last == Some(current) && cpu.list_registers_idle {
            self.deliver_own_timer(cpu, current, acknowledged);
            return true;
        }
        self.leave_guest(cpu);
        let next = self.handle_interrupt(cpu, acknowledged, Next::Resume);
        debug_assert!(next == Next::Resume && cpu.current == Some(current));
        self.enter_guest(cpu);
        true
    }

    /// [`Hypervisor::answer_interrupt`] in the usual case: `current` was the last vCPU on
    /// `cpu` and has no list register in use. The exit then folds nothing back, the
    /// timer's PPI is banked (no other vCPU to tell), and the entry is a returning one:
    /// the same steps as `leave_guest`, `handle_interrupt` and `enter_guest` take, with
    /// one lookup of the vCPU instead of four and no dispatch on the INTID.
    fn deliver_own_timer(
        &mut self,
        cpu: &mut CpuState,
        current: VcpuId,
        acknowledged: arch::Acknowledged,
    ) {
        arch::mask_virtual_timer();
        arch::end_interrupt(acknowledged);
        self.pend_and_return(cpu, current, acknowledged.intid);
    }

    /// Makes private interrupt `intid` pending for `current`, the vCPU `cpu` runs, and
    /// fills its list registers for its return, when it was the last vCPU on `cpu` and its
    /// exit is folded back ([`Hypervisor::leave_guest`]; with no list register in use
    /// there is nothing to fold): what
    /// [`Vgic::set_pending`](crate::vgic::Vgic::set_pending), [`Hypervisor::kick`] and
    /// [`Hypervisor::enter_guest`] do, with one lookup of the vCPU and, in the usual case,
    /// one of the interrupt ([`crate::virtual_interrupts::pend_and_return`]). (Inlined, with
    /// all it calls, into both callers' paths, the timer's and an event's: the usual case
    /// is short enough that each call is a fair part of it.)
    #[inline(always)]
    fn pend_and_return(&mut self, cpu: &mut CpuState, current: VcpuId, intid: u32) {
        let Self { domains, vgics, .. } = self;
        let vcpu = domains
            .get_mut(current.domain)
            .and_then(Option::as_mut)
            .and_then(|domain| domain.vcpus.get_mut(current.vcpu));
        let (Some(vgic), Some(vcpu)) = (vgics.get_mut(current.domain), vcpu) else {
            return;
        };
        let interrupts = &mut vcpu.interrupts;
        let effects =
            crate::virtual_interrupts::pend_and_return(vgic, interrupts, current.vcpu, intid);
        let others = effects.kick.without(current.vcpu);
        cpu.entered_generation = vgic.generation();
        cpu.list_registers_idle = vcpu.interrupts.list_registers.valid_mask() == 0;
        // A private interrupt concerns its own vCPU alone; were that ever not so, the
        // others hear of it as from any exit.
        if !others.is_empty() {
            self.kick_others(cpu.index, current.domain, others);
        }
    }
}

/// Whether [`Hypervisor::answer_interrupt`] may take physical interrupt `intid`.
fn answers_half_way(intid: u32) -> bool {
    intid == arch::virtual_timer_intid()
}

/// Entry from the exception vectors for a synchronous exit.
pub fn handle_guest_exit(cpu: &mut CpuState, exit: GuestExit, esr: u64) {
    let next = HYPERVISOR.lock().exit_and_enter(cpu, exit, esr);
    finish(cpu, next);
}

/// Entry from the exception vectors for a load that may be answered with only part of the
/// guest's registers saved ([`Hypervisor::answer_register_read`]); false sends it down the
/// full path, [`handle_guest_exit`].
pub fn handle_guest_read(cpu: &mut CpuState, esr: u64, far: u64, hpfar: u64) -> bool {
    let Some((ipa, access)) = crate::esr::decode_emulatable_read(esr, far, hpfar) else {
        return false;
    };
    crate::virtual_interrupts::answer_read(cpu, ipa, access, |cpu, frame, offset| {
        answer_register_read_locked(cpu, frame, offset, access)
    })
}

/// [`Hypervisor::answer_register_read`] under the lock: out of line, so that the lock-free
/// identity read above saves no more registers than it needs.
#[inline(never)]
fn answer_register_read_locked(
    cpu: &mut CpuState,
    frame: Frame,
    offset: u64,
    access: EmulatableAccess,
) -> bool {
    HYPERVISOR
        .lock()
        .answer_register_read(cpu, frame, offset, access)
}

/// Entry from the exception vectors for a hypercall that may be answered with only part
/// of the guest's registers saved ([`Hypervisor::answer_local_hypercall`]); false sends
/// it down the full path, [`handle_guest_exit`].
pub fn handle_guest_local_hypercall(cpu: &mut CpuState) -> bool {
    HYPERVISOR.lock().answer_local_hypercall(cpu)
}

/// Entry from the exception vectors for an event-channel operation, with only part of the
/// guest's registers saved ([`Hypervisor::answer_event_channel_op`]); false sends it down
/// the full path, [`handle_guest_exit`].
pub fn handle_guest_event_channel_op(cpu: &mut CpuState) -> bool {
    HYPERVISOR.lock().answer_event_channel_op(cpu)
}

/// Entry from the exception vectors for a physical interrupt taken while a guest ran, with
/// only part of the guest's registers saved ([`Hypervisor::answer_interrupt`]): true
/// when handled (or when nothing was pending), false to take the full path,
/// [`handle_guest_interrupt`], with the acknowledged interrupt in [`CpuState::taken`].
pub fn handle_guest_interrupt_partially(cpu: &mut CpuState) -> bool {
    let Some(acknowledged) = arch::acknowledge_interrupt() else {
        // Withdrawn before it was acknowledged: nothing to do.
        return true;
    };
    // Decided before the lock, so that an interrupt for the full path pays little more.
    if answers_half_way(acknowledged.intid) && HYPERVISOR.lock().answer_interrupt(cpu, acknowledged)
    {
        return true;
    }
    cpu.taken = Some(acknowledged);
    false
}

/// Entry from the exception vectors for a physical interrupt taken while a guest ran.
pub fn handle_guest_interrupt(cpu: &mut CpuState) {
    let mut hypervisor = HYPERVISOR.lock();
    hypervisor.leave_guest(cpu);
    let next = hypervisor.take_interrupts(cpu);
    let next = hypervisor.settle(cpu, next);
    if next == Next::Resume {
        hypervisor.enter_guest(cpu);
    }
    drop(hypervisor);
    finish(cpu, next);
}

/// Entry from the exception vectors for an SError taken while a guest ran: the guest
/// caused an asynchronous external abort, so it is ended.
pub fn handle_guest_serror(cpu: &mut CpuState, esr: u64) {
    let mut hypervisor = HYPERVISOR.lock();
    hypervisor.leave_guest(cpu);
    let next = match cpu.current {
        Some(current) => hypervisor.crash(
            cpu,
            current,
            FaultReport::Unhandled {
                class: crate::esr::class::SERROR,
                esr,
            },
        ),
        None => hypervisor.schedule(cpu),
    };
    let next = hypervisor.settle(cpu, next);
    if next == Next::Resume {
        hypervisor.enter_guest(cpu);
    }
    drop(hypervisor);
    finish(cpu, next);
}

/// Where the boot CPU goes once its first decision is made: into a guest, or idle.
pub fn start(cpu: &mut CpuState, next: Next) {
    finish(cpu, next);
}

#[path = "hypervisor_lifecycle.rs"]
mod lifecycle;

#[cfg(test)]
#[path = "hypervisor_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "grant_table_tests.rs"]
mod grant_table_tests;

#[cfg(test)]
#[path = "lifecycle_tests.rs"]
mod lifecycle_tests;
