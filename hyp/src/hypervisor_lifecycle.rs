//! The hypervisor's side of domain lifecycle under faults (rules in [`crate::lifecycle`]):
//! the crash policy applied when a domain ends, the rebuild of a restarted domain from its
//! boot-pack entry once its old incarnation is torn down (fresh memory, its channels
//! re-connected, its console attached), and domain watchdogs expiring.
//!
//! A child module of `hypervisor`, kept apart from the exit path.

use super::{Hypervisor, Next};
use crate::bootpack::{BootPack, OnCrash};
use crate::cpu::CpuState;
use crate::domain::DomainState;
use crate::lifecycle;
use hypercall_abi::event_channel_op::{AllocUnbound, BindInterdomain, Port, Send};
use hypercall_abi::sched_op::ShutdownReason;

impl Hypervisor {
    /// Keeps the boot pack the domains were built from, so a crashed domain whose policy
    /// is `restart` can be built again from its entry. The pack's memory is reserved (the
    /// frame allocator never hands it out), hence `'static`.
    pub fn keep_boot_pack(&mut self, pack: BootPack<'static>) {
        self.lifecycle.pack = Some(pack);
    }

    /// Builds every domain of `pack` (already parsed) and connects its channels and
    /// consoles, as at boot; `gic` gives the virtual GIC for a vCPU count. First the
    /// whole pack is checked against this machine ([`lifecycle::check_pack`]: memory free,
    /// `cpu_count` CPUs running): if any domain cannot start, none is built, and the
    /// reason is logged (`boot pack refused: ...`). The pack is kept for restarts.
    pub fn build_pack(
        &mut self,
        pack: BootPack<'static>,
        gic: impl Fn(u32) -> crate::domain_dt::GuestGic,
        cpu_count: usize,
    ) -> Result<(), &'static str> {
        if let Err(refusal) = lifecycle::check_pack(&pack, self.frames.free_bytes(), cpu_count) {
            match refusal.domain.and_then(|index| pack.domain(index)) {
                Some(domain) => defmt::error!(
                    "boot pack refused: domain {=str}: {=str}",
                    domain.name,
                    refusal.reason
                ),
                None => defmt::error!("boot pack refused: {=str}", refusal.reason),
            }
            return Err("the boot pack cannot start on this machine; no domain started");
        }
        self.keep_boot_pack(pack);
        for (slot, entry) in pack.domains().enumerate() {
            let settings =
                pack.settings(slot)
                    .map_or_else(super::DomainSchedule::default, |settings| {
                        super::DomainSchedule {
                            weight: settings.weight,
                            affinity: settings.affinity,
                        }
                    });
            // The pre-connected channels this domain will have, as its device tree says.
            let (ports, peers) = planned_channels(&pack, slot);
            let channels = crate::domain::Channels {
                ports: &ports,
                peers: &peers,
            };
            match self.build_domain(slot, &entry, settings, gic(entry.vcpus), &channels) {
                Ok(domain) => {
                    defmt::info!(
                        "domain {=str}: {=u32} MiB at {=u64:#x}, {=u32} vCPU(s), cmdline \"{=str}\"",
                        entry.name, entry.memory_mib, domain.ram.start.raw(), entry.vcpus, entry.cmdline
                    );
                }
                Err(error) => {
                    defmt::error!("domain {=str}: {=str}", entry.name, error.describe());
                    return Err("a domain could not be built; none started");
                }
            }
        }
        // Pre-connected channels, bound now, on exactly the ports the device trees promise.
        for channel in pack.channels() {
            let (port_a, port_b) = self
                .connect_channel(channel.a, channel.b)
                .map_err(|_| "a pre-connected channel could not be bound")?;
            let pairs = || pack.channels().map(|channel| (channel.a, channel.b));
            let planned_a = super::plan_channel_ports(pairs(), channel.a);
            let planned_b = super::plan_channel_ports(pairs(), channel.b);
            if !planned_a.contains(&(port_a, channel.b as u32))
                || !planned_b.contains(&(port_b, channel.a as u32))
            {
                return Err("a pre-connected channel got another port than its device tree says");
            }
            defmt::info!(
                "channel: domain {=usize} port {=u32} <-> domain {=usize} port {=u32}",
                channel.a,
                port_a,
                channel.b,
                port_b
            );
        }
        // Each domain's console ring channel, after the pre-connected ones (their port
        // numbers were promised in the device trees).
        for slot in 0..pack.domain_count() {
            self.attach_console(slot)
                .map_err(|_| "a console channel could not be attached")?;
        }
        Ok(())
    }

    /// How many times the domain in `slot` has been restarted.
    pub fn restarts(&self, slot: usize) -> u32 {
        self.lifecycle
            .slots
            .get(slot)
            .map_or(0, |plan| plan.restarts)
    }

    /// Decides, as domain `slot` ends in `state`, whether it is built again once torn
    /// down, and remembers the decision.
    pub(super) fn plan_restart(&mut self, slot: usize, state: DomainState) -> bool {
        let settings = self
            .lifecycle
            .pack
            .and_then(|pack| pack.settings(slot))
            .unwrap_or_default();
        let Some(plan) = self.lifecycle.slots.get_mut(slot) else {
            return false;
        };
        plan.restart_pending = lifecycle::wants_restart(
            settings.on_crash,
            settings.max_restarts,
            plan.restarts,
            state,
        );
        plan.restart_pending
    }

    /// Right after domain `slot` was torn down (its memory scrubbed and returned): marks
    /// it for rebuilding if its crash policy said so (see [`Hypervisor::settle`]), or logs
    /// that a restartable domain is gone for good.
    pub(super) fn after_teardown(&mut self, slot: usize) {
        let Some(pack) = self.lifecycle.pack else {
            return;
        };
        let (Some(settings), Some(entry)) = (pack.settings(slot), pack.domain(slot)) else {
            return;
        };
        let free_after_teardown = self.frames.free_bytes();
        let Some(plan) = self.lifecycle.slots.get_mut(slot) else {
            return;
        };
        plan.free_after_teardown = free_after_teardown;
        if plan.restart_pending {
            plan.restart_pending = false;
            self.lifecycle.rebuild_due |= 1 << slot;
        } else if settings.on_crash == OnCrash::Restart {
            defmt::warn!(
                "domain {=str} not restarted: {=u32} restart(s) done, max_restarts {=u32}; free bytes {=u64} after teardown",
                entry.name, plan.restarts, settings.max_restarts, free_after_teardown
            );
        }
    }

    /// Called by every entry from a guest once its exit or interrupt is handled (and by an
    /// idle CPU after its interrupts), with what to do next: builds again the domains torn
    /// down for a restart meanwhile, and lets an idle CPU pick up their vCPUs. Cheap when
    /// there are none.
    #[inline]
    pub fn settle(&mut self, cpu: &mut CpuState, next: Next) -> Next {
        if self.lifecycle.rebuild_due == 0 {
            return next;
        }
        self.rebuild_due_domains(cpu, next)
    }

    #[inline(never)]
    fn rebuild_due_domains(&mut self, cpu: &mut CpuState, next: Next) -> Next {
        for slot in 0..crate::domain::MAX_DOMAINS {
            if self.lifecycle.rebuild_due & (1 << slot) != 0 {
                self.lifecycle.rebuild_due &= !(1 << slot);
                self.rebuild(slot, cpu.index);
            }
        }
        if cpu.current.is_none() {
            self.schedule(cpu)
        } else {
            next
        }
    }

    /// Builds domain `slot` again from its boot-pack entry, after a crash: fresh memory,
    /// the same image, command line, size and settings; its channels re-bound and its
    /// console attached; one log line with the free memory after its teardown and now.
    fn rebuild(&mut self, slot: usize, from_cpu: usize) {
        let Some(pack) = self.lifecycle.pack else {
            return;
        };
        let (Some(settings), Some(entry)) = (pack.settings(slot), pack.domain(slot)) else {
            return;
        };
        let Some(plan) = self.lifecycle.slots.get_mut(slot) else {
            return;
        };
        plan.restarts = plan.restarts.saturating_add(1);
        let restarts = plan.restarts;
        let free_after_teardown = plan.free_after_teardown;
        let (Some(gic), schedule) = (plan.gic, plan.schedule) else {
            return;
        };

        let (ports, peers) = planned_channels(&pack, slot);
        let channels = crate::domain::Channels {
            ports: &ports,
            peers: &peers,
        };
        // CPUs that left its vCPUs may still count them as theirs until they reschedule:
        // they let go now, so the new vCPUs can take the slots.
        let released = self.scheduler.release_dead(slot);
        for other in 0..crate::scheduler::MAX_CPUS {
            if released & (1 << other) != 0 && other != from_cpu {
                crate::arch::kick_cpu(other);
            }
        }
        match self.build_domain(slot, &entry, schedule, gic, &channels) {
            Ok(_) => {
                // A restart is not a new domain for the final count.
                self.started = self.started.saturating_sub(1);
            }
            Err(error) => {
                defmt::error!(
                    "domain {=str}: restart {=u32} failed: {=str}; destroyed",
                    entry.name,
                    restarts,
                    error.describe()
                );
                self.unclean += 1;
                return;
            }
        }
        let reconnected = self.reconnect_channels(&pack, slot, from_cpu);
        let console = self.attach_console(slot).is_ok();
        if !reconnected || !console {
            defmt::warn!(
                "domain {=str}: restart {=u32}: channels or console not re-attached as planned",
                entry.name,
                restarts
            );
        }
        // With console input on and nobody to take it, the new incarnation gets it.
        if self.console_input.intid.is_some() && self.console_input.focus.is_none() {
            self.console_input.focus = Some(slot);
        }
        defmt::warn!(
            "domain {=str} restarted after a crash: restart {=u32} of {=u32}, free bytes {=u64} after teardown, {=u64} after rebuild",
            entry.name,
            restarts,
            settings.max_restarts,
            free_after_teardown,
            self.frames.free_bytes()
        );
    }

    /// Binds the restarted domain `slot`'s pre-connected channels again, in pack order, on
    /// the ports its device tree promises: each one whose peer is alive and still holds its
    /// end (left unbound for `slot` when the old incarnation's channels closed) is bound to
    /// it and the peer gets an event; otherwise the port is allocated unbound for the peer,
    /// so the numbering still matches. Returns whether every port came out as planned.
    fn reconnect_channels(&mut self, pack: &BootPack<'_>, slot: usize, from_cpu: usize) -> bool {
        let mut as_planned = true;
        let mut own_index = 0u32;
        let channels: heapless::Vec<(usize, usize), { crate::bootpack::MAX_CHANNELS }> = pack
            .channels()
            .map(|channel| (channel.a, channel.b))
            .collect();
        for (index, &(a, b)) in channels.iter().enumerate() {
            let peer = if a == slot {
                b
            } else if b == slot {
                a
            } else {
                continue;
            };
            own_index += 1;
            // The peer's end is its k-th channel, port k.
            let peer_port = channels
                .iter()
                .take(index + 1)
                .filter(|&&(x, y)| x == peer || y == peer)
                .count() as u32;
            let peer_alive = self
                .domain(peer)
                .is_some_and(|domain| domain.state == DomainState::Alive);
            let mut bind = BindInterdomain {
                remote_dom: peer as u16,
                remote_port: Port(peer_port),
                local_port: Port(0),
            };
            let bound = if peer_alive {
                crate::event_channel::bind_interdomain(
                    &mut self.event_tables(),
                    slot as u16,
                    &mut bind,
                )
                .ok()
            } else {
                None
            };
            let local = match bound {
                Some(_) => {
                    // The peer learns its channel is connected again.
                    let send = Send {
                        port: bind.local_port,
                    };
                    if let Ok(Some(action)) =
                        crate::event_channel::send(&mut self.event_tables(), slot as u16, &send)
                    {
                        self.carry_out_event(from_cpu, action);
                    }
                    bind.local_port
                }
                None => {
                    let mut offer = AllocUnbound {
                        dom: slot as u16,
                        remote_dom: peer as u16,
                        port: Port(0),
                    };
                    if crate::event_channel::alloc_unbound(
                        &mut self.event_tables(),
                        slot as u16,
                        &mut offer,
                    )
                    .is_err()
                    {
                        as_planned = false;
                    }
                    offer.port
                }
            };
            as_planned &= local.0 == own_index;
        }
        as_planned
    }

    /// Shuts down every live domain one of whose watchdogs expired by `now`, with
    /// SHUTDOWN_watchdog (as Xen's `domain_watchdog_timeout`).
    pub(super) fn expire_watchdogs(&mut self, cpu: &mut CpuState, now: u64) -> Option<Next> {
        let mut next = None;
        for slot in 0..crate::domain::MAX_DOMAINS {
            let Some(domain) = self.domain_mut(slot) else {
                continue;
            };
            if domain.state != DomainState::Alive {
                continue;
            }
            let Some(id) = lifecycle::expired_watchdog(&domain.watchdogs, now) else {
                continue;
            };
            domain.watchdogs = [None; lifecycle::WATCHDOGS];
            domain.watchdog_deadline = None;
            defmt::warn!(
                "domain {=str}: watchdog {=u32} expired",
                domain.name.as_str(),
                id
            );
            next =
                Some(self.end_domain(cpu, slot, DomainState::ShutDown(ShutdownReason::Watchdog)));
        }
        next
    }
}

/// The pre-connected channels domain `slot` of `pack` has: its (port, remote domain)
/// pairs and each remote domain's name, in the order its device tree lists them.
fn planned_channels<'pack>(
    pack: &BootPack<'pack>,
    slot: usize,
) -> (
    heapless::Vec<(u32, u32), { crate::domain_dt::MAX_CHANNEL_CELLS }>,
    heapless::Vec<&'pack str, { crate::domain_dt::MAX_CHANNEL_CELLS }>,
) {
    let ports =
        super::plan_channel_ports(pack.channels().map(|channel| (channel.a, channel.b)), slot);
    let mut peers = heapless::Vec::new();
    for (_, remote) in ports.iter() {
        let name = pack
            .domain(*remote as usize)
            .map_or("", |remote| remote.name);
        // Cannot fail: as many names as ports, and the same capacity.
        let _ = peers.push(name);
    }
    (ports, peers)
}
