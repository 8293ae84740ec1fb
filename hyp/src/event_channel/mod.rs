//! Event channels: the per-domain port tables and `EVTCHNOP_*` semantics of Xen 4.17
//! (`xen/common/event_channel.c`), for the 2-level ABI.
//!
//! This module is a model: it never touches guest memory or hardware. Each operation
//! takes the argument struct the dispatcher already copied from the guest
//! (`hypercall_abi::event_channel_op`), fills its OUT fields in place, and returns either
//! an [`Errno`] or at most one [`Action`] the hypervisor then performs on the shared-info
//! page of the domain concerned ([`Action::apply`], [`deliver`]). The dispatcher copies the
//! struct back to the guest only on success, as Xen does.
//!
//! # Ports
//!
//! Every domain has a [`PortTable`] of [`MAX_PORTS`] ports (8 bytes each, plus a small
//! VIRQ index). Port 0 is never allocated (Xen reserves it); allocation takes the lowest
//! free port, as Xen's `get_free_port` does. A port is in one [`PortState`] and has a
//! notify vCPU (0 when allocated, changed by `EVTCHNOP_bind_vcpu`).
//!
//! # Errors (Xen 4.17, checked in Xen's order)
//!
//! - unknown domain (`dom`, `remote_dom`): `-ESRCH`; [`DOMID_SELF`] means the caller;
//! - port at or above [`MAX_PORTS`]: `-EINVAL`; port in a state the operation does not
//!   accept (closing or sending on a free port, sending on a VIRQ port): `-EINVAL`;
//! - no free port: `-ENOSPC`; a dying domain allocates nothing: `-EINVAL`;
//! - vCPU that does not exist: `-ENOENT`, except a global VIRQ bound to a vCPU other
//!   than 0, which is `-EINVAL`;
//! - `(virq, vcpu)` already bound: `-EEXIST`;
//! - `alloc_unbound` / `status` on another domain: `-EPERM` (Xen allows the control
//!   domain; privilege is not modelled here, so only the caller itself may).
//!
//! # Differences from Xen, on purpose
//!
//! - Xen treats a port as valid only below the high-water mark of its allocated port
//!   buckets; here every port below [`MAX_PORTS`] is valid. So `status` of a never-used
//!   port below 1024 reports `EVTCHNSTAT_closed` and `unmask` of it returns 0, where Xen
//!   may answer `-EINVAL`. Ports at or above 1024 are `-EINVAL` in both (Xen's default
//!   `max_evtchn_port` for a domU is 1023).
//! - Xen-attached channels, PIRQs, `EVTCHNOP_reset` and the FIFO ABI do not exist.
//! - [`close_all`] (a domain's death) also notifies every peer on the port that became
//!   unbound, so a peer waiting on it wakes and sees `EVTCHNSTAT_unbound` instead of
//!   waiting forever. Xen leaves that to the toolstack (`VIRQ_DOM_EXC`, xenstore).
//!
//! # Accepted VIRQs
//!
//! As Xen: any `virq` below `NR_VIRQS` (24) may be bound; numbers at or above are
//! `-EINVAL`. `VIRQ_TIMER` (0), `VIRQ_DEBUG` (1), `VIRQ_XENOPROF` (7) and `VIRQ_XENPMU`
//! (13) are per-vCPU; all others are global (on ARM the arch VIRQs are global too) and
//! bind only with `vcpu == 0`. Only those the hypervisor raises with
//! [`PortTable::raise_virq`] (the timer, the console) ever fire.
//!
//! # Using it from the hypervisor
//!
//! 1. Keep one [`PortTable`] per domain slot in a static (`PortTable::new()` is `const`)
//!    and implement [`EventChannelDomains`] over them.
//! 2. `EVTCHNOP_*` dispatch: copy the argument struct in (`-EFAULT` if that fails), call
//!    the operation of the same name with the calling domain's id, and on `Ok` copy the
//!    struct back (for the ops with OUT fields) and return 0; on `Err(e)` return `e`.
//! 3. With the table borrow ended, perform the returned [`Action`], if any, on the shared
//!    info of [`Action::domain`] (see [`Action::apply`]); when that returns `true`, inject
//!    the event PPI into [`Action::vcpu`] and wake it. A vCPU blocked in `SCHEDOP_block`
//!    or polling the port with `SCHEDOP_poll` is woken by a delivery even when the port
//!    is masked (Xen's `evtchn_check_pollers`).
//! 4. Raise VIRQs with [`PortTable::raise_virq`] and deliver the result the same way.
//! 5. When a domain ends, call [`close_all`] and deliver every returned notification.

use hypercall_abi::errno::Errno;
use hypercall_abi::event_channel_op::{
    AllocUnbound, BindInterdomain, BindIpi, BindVcpu, BindVirq, Close, Port, Send, Status, Unmask,
    NR_VIRQS, STAT_CLOSED, STAT_INTERDOMAIN, STAT_IPI, STAT_UNBOUND, STAT_VIRQ,
};
use hypercall_abi::evtchn2l;
use hypercall_abi::shared::{SharedInfo, VcpuInfo, DOMID_SELF};

#[cfg(test)]
mod tests;

/// Ports per domain. Port 0 is never allocated, so 1023 are usable (Xen's default
/// `max_evtchn_port` for a domU).
pub const MAX_PORTS: usize = 1024;

/// Most vCPUs a domain has; vCPU ids at or above this do not exist for event channels.
pub const MAX_VCPUS: usize = crate::domain::MAX_VCPUS;

/// Number of VIRQs (`NR_VIRQS`), as an array length.
const VIRQ_COUNT: usize = NR_VIRQS as usize;

/// Most peer notifications [`close_all`] can produce: one per usable port.
pub const MAX_PEER_NOTIFICATIONS: usize = MAX_PORTS - 1;

/// What a port is bound to (Xen's `ECS_*` states; `ECS_RESERVED` port 0 reads as free).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortState {
    /// Not allocated (`ECS_FREE`).
    Free,
    /// Allocated by `alloc_unbound`, waiting for `remote_domain` to bind it
    /// (`ECS_UNBOUND`). Also what an interdomain port becomes when its peer closes.
    Unbound {
        /// The only domain allowed to bind to it.
        remote_domain: u16,
    },
    /// Connected to `remote_port` of `remote_domain` (`ECS_INTERDOMAIN`); that port is
    /// connected back to this one.
    Interdomain {
        /// The peer domain (may be the owner itself: a loopback channel).
        remote_domain: u16,
        /// The peer's port.
        remote_port: u16,
    },
    /// Bound to a virtual IRQ (`ECS_VIRQ`).
    Virq {
        /// The `VIRQ_*` number, below `NR_VIRQS`.
        virq: u8,
    },
    /// An inter-vCPU channel of the owner (`ECS_IPI`).
    Ipi,
}

/// One port: its state and the vCPU it notifies. 8 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Channel {
    state: PortState,
    notify_vcpu: u16,
}

impl Channel {
    const FREE: Channel = Channel {
        state: PortState::Free,
        notify_vcpu: 0,
    };
}

const _: () = assert!(core::mem::size_of::<Channel>() <= 8);

/// Set `port` pending on `domain` and notify `vcpu` (Xen's `evtchn_port_set_pending`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deliver {
    /// The domain whose shared-info page gets the pending bit.
    pub domain: u16,
    /// The vCPU whose `vcpu_info` selector and upcall flag are set.
    pub vcpu: u32,
    /// The port.
    pub port: Port,
}

/// Work the hypervisor does on a domain's shared-info page after an operation succeeded.
///
/// Find the `SharedInfo` of [`Action::domain`] and, when [`Action::vcpu`] is `Some`, the
/// `VcpuInfo` that vCPU uses (its registered one, or `shared_info.vcpu_info[0]` for vCPU
/// 0 before it registered), then call [`Action::apply`]. When it returns `true`, inject
/// the event PPI (INTID 31) into that vCPU and wake it if it is blocked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Mark a port pending ([`deliver`]).
    Deliver(Deliver),
    /// `EVTCHNOP_unmask`: clear the mask bit and, if the port is pending, notify `vcpu`
    /// (Xen's `evtchn_2l_unmask`, [`evtchn2l::unmask_and_notify`]).
    Unmask {
        /// The domain that unmasked.
        domain: u16,
        /// The port's notify vCPU.
        vcpu: u32,
        /// The port.
        port: Port,
    },
    /// A closed port's pending bit is cleared, so a later binding of the same port number
    /// does not see a stale event (Xen's `evtchn_free`).
    ClearPending {
        /// The domain that closed the port.
        domain: u16,
        /// The port.
        port: Port,
    },
}

impl Action {
    /// The domain whose shared-info page the action changes.
    pub fn domain(&self) -> u16 {
        match *self {
            Action::Deliver(deliver) => deliver.domain,
            Action::Unmask { domain, .. } | Action::ClearPending { domain, .. } => domain,
        }
    }

    /// The vCPU whose `vcpu_info` the action needs, if any.
    pub fn vcpu(&self) -> Option<u32> {
        match *self {
            Action::Deliver(deliver) => Some(deliver.vcpu),
            Action::Unmask { vcpu, .. } => Some(vcpu),
            Action::ClearPending { .. } => None,
        }
    }

    /// Performs the action on `shared` (the domain's shared info) and `vcpu_info` (that of
    /// [`Action::vcpu`]). Returns `true` when the event PPI must be injected into that vCPU.
    ///
    /// With `vcpu_info` `None` (a vCPU without a `vcpu_info` yet) only the pending or mask
    /// bit changes; the guest finds the event when it registers its `vcpu_info`, which
    /// marks every selector bit.
    pub fn apply(&self, shared: &SharedInfo, vcpu_info: Option<&VcpuInfo>) -> bool {
        match (*self, vcpu_info) {
            (Action::Deliver(deliver), Some(vcpu_info)) => {
                evtchn2l::mark_pending(shared, vcpu_info, deliver.port)
            }
            (Action::Deliver(deliver), None) => {
                evtchn2l::set_pending(shared, deliver.port);
                false
            }
            (Action::Unmask { port, .. }, Some(vcpu_info)) => {
                evtchn2l::unmask_and_notify(shared, vcpu_info, port)
            }
            (Action::Unmask { port, .. }, None) => {
                evtchn2l::clear_mask(shared, port);
                false
            }
            (Action::ClearPending { port, .. }, _) => {
                evtchn2l::clear_pending(shared, port);
                false
            }
        }
    }
}

/// Delivers an event on `port` to the vCPU owning `vcpu_info` (Xen's
/// `evtchn_2l_set_pending`): sets the pending bit and, if the port is unmasked, the
/// selector bit and the upcall flag. Returns `true` when the event PPI must be injected.
pub fn deliver(shared: &SharedInfo, vcpu_info: &VcpuInfo, port: Port) -> bool {
    evtchn2l::mark_pending(shared, vcpu_info, port)
}

/// The event-channel state of one domain: [`MAX_PORTS`] ports and the VIRQ bindings of
/// its vCPUs. About 8.4 KiB; keep it in a static (build it with [`PortTable::new`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortTable {
    channels: [Channel; MAX_PORTS],
    /// Xen's `vcpu->virq_to_evtchn`: the port bound to each (vCPU, VIRQ), 0 for none.
    /// Global VIRQs live in vCPU 0's row whatever their notify vCPU.
    virq_ports: [[u16; VIRQ_COUNT]; MAX_VCPUS],
    /// Set by [`close_all`]: no port is allocated any more (Xen's `is_dying`).
    dying: bool,
}

impl Default for PortTable {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether a VIRQ is global (bound on vCPU 0, delivered to its notify vCPU) rather than
/// per-vCPU. Xen's `virq_is_global`, with ARM's arch VIRQs global.
pub const fn virq_is_global(virq: u32) -> bool {
    !matches!(virq, 0 | 1 | 7 | 13)
}

/// The table index of a port, if it is in range.
fn index(port: Port) -> Option<usize> {
    let index = port.0 as usize;
    (index < MAX_PORTS).then_some(index)
}

impl PortTable {
    /// A table with every port free.
    pub const fn new() -> PortTable {
        PortTable {
            channels: [Channel::FREE; MAX_PORTS],
            virq_ports: [[0; VIRQ_COUNT]; MAX_VCPUS],
            dying: false,
        }
    }

    /// The state of `port`, or `None` if it is out of range. Port 0 reads as free.
    pub fn state(&self, port: Port) -> Option<PortState> {
        self.channel(port).map(|channel| channel.state)
    }

    /// The vCPU `port` notifies, or `None` if it is out of range.
    pub fn notify_vcpu(&self, port: Port) -> Option<u32> {
        self.channel(port)
            .map(|channel| u32::from(channel.notify_vcpu))
    }

    /// Number of ports in use (not free).
    pub fn ports_in_use(&self) -> usize {
        self.channels
            .iter()
            .filter(|channel| channel.state != PortState::Free)
            .count()
    }

    /// Whether [`close_all`] ended this table: nothing can be allocated in it.
    pub fn is_dying(&self) -> bool {
        self.dying
    }

    /// The port bound to `virq` on `vcpu` (for a global VIRQ: the port bound to it,
    /// whatever `vcpu`), if any.
    pub fn virq_port(&self, vcpu: u32, virq: u32) -> Option<Port> {
        let row = if virq_is_global(virq) { 0 } else { vcpu };
        let port = *self
            .virq_ports
            .get(row as usize)?
            .get(usize::try_from(virq).ok()?)?;
        (port != 0).then_some(Port(u32::from(port)))
    }

    /// The hypervisor raises `virq` for `vcpu` of `domain` (the timer fired, console input
    /// arrived): Xen's `send_guest_vcpu_virq` / `send_guest_global_virq`.
    ///
    /// Returns the delivery to perform, or `None` when the guest has not bound that VIRQ.
    /// A per-vCPU VIRQ goes to `vcpu`; a global one to its port's notify vCPU (`vcpu` is
    /// ignored).
    pub fn raise_virq(&self, domain: u16, vcpu: u32, virq: u32) -> Option<Deliver> {
        let port = self.virq_port(vcpu, virq)?;
        let vcpu = if virq_is_global(virq) {
            self.notify_vcpu(port)?
        } else {
            vcpu
        };
        Some(Deliver { domain, vcpu, port })
    }

    fn channel(&self, port: Port) -> Option<&Channel> {
        self.channels.get(index(port)?)
    }

    fn channel_mut(&mut self, port: Port) -> Option<&mut Channel> {
        self.channels.get_mut(index(port)?)
    }

    /// The lowest free port (Xen's `get_free_port`), without taking it.
    fn free_port(&self) -> Result<u16, Errno> {
        if self.dying {
            return Err(Errno::EINVAL);
        }
        self.channels
            .iter()
            .enumerate()
            .skip(1)
            .find(|(_, channel)| channel.state == PortState::Free)
            .and_then(|(port, _)| u16::try_from(port).ok())
            .ok_or(Errno::ENOSPC)
    }

    /// Takes a free port into `state` with `notify_vcpu`.
    fn set(&mut self, port: u16, state: PortState, notify_vcpu: u16) {
        if let Some(channel) = self.channels.get_mut(usize::from(port)) {
            *channel = Channel { state, notify_vcpu };
        }
    }

    /// Frees a port (Xen's `evtchn_free`, less the pending bit, which is an [`Action`]),
    /// dropping its VIRQ binding.
    fn free(&mut self, port: u16) {
        let Some(channel) = self.channels.get(usize::from(port)).copied() else {
            return;
        };
        if let PortState::Virq { virq } = channel.state {
            let row = if virq_is_global(u32::from(virq)) {
                0
            } else {
                channel.notify_vcpu
            };
            if let Some(slot) = self
                .virq_ports
                .get_mut(usize::from(row))
                .and_then(|row| row.get_mut(usize::from(virq)))
            {
                if *slot == port {
                    *slot = 0;
                }
            }
        }
        self.set(port, PortState::Free, 0);
    }

    fn virq_slot_mut(&mut self, vcpu: u16, virq: u8) -> Option<&mut u16> {
        self.virq_ports
            .get_mut(usize::from(vcpu))?
            .get_mut(usize::from(virq))
    }
}

/// The hypervisor's view of all domains, as event channels need it.
///
/// Domain ids are those guests use; [`DOMID_SELF`] never reaches these methods (the
/// operations resolve it to the caller).
pub trait EventChannelDomains {
    /// The port table of `domain`, or `None` if no such domain exists (`-ESRCH`).
    fn table_mut(&mut self, domain: u16) -> Option<&mut PortTable>;

    /// The tables of two different domains at once, in argument order; `None` if
    /// `first == second` or either does not exist.
    fn two_tables_mut(
        &mut self,
        first: u16,
        second: u16,
    ) -> Option<(&mut PortTable, &mut PortTable)>;

    /// How many vCPUs `domain` has (ids `0..count`), or `None` if no such domain exists.
    fn vcpu_count(&self, domain: u16) -> Option<u32>;
}

/// The result of every operation: `Ok` with at most one [`Action`] to perform, or the
/// error to return to the guest (then nothing changed and nothing is copied back).
pub type OpResult = Result<Option<Action>, Errno>;

/// `DOMID_SELF` means the caller.
fn resolve(domain: u16, caller: u16) -> u16 {
    if domain == DOMID_SELF {
        caller
    } else {
        domain
    }
}

/// Whether `vcpu` exists in `domain` (Xen's `domain_vcpu(d, id) != NULL`), as a `u16`.
fn existing_vcpu<D: EventChannelDomains + ?Sized>(
    domains: &D,
    domain: u16,
    vcpu: u32,
) -> Option<u16> {
    let count = domains.vcpu_count(domain)?.min(MAX_VCPUS as u32);
    if vcpu < count {
        u16::try_from(vcpu).ok()
    } else {
        None
    }
}

/// Converts a port number to the table's compact form, if in range.
fn compact(port: Port) -> Option<u16> {
    index(port).and_then(|index| u16::try_from(index).ok())
}

/// `EVTCHNOP_alloc_unbound`: allocate a port of `args.dom` that `args.remote_dom` may
/// bind to. Fills `args.port`.
///
/// `-ESRCH` for an unknown `dom`, then `-ENOSPC` (or `-EINVAL` if dying) when it has no
/// free port, then `-EPERM` unless `dom` is the caller. `remote_dom` is not checked
/// (Xen does not either); [`DOMID_SELF`] there also means the caller.
pub fn alloc_unbound<D: EventChannelDomains + ?Sized>(
    domains: &mut D,
    caller: u16,
    args: &mut AllocUnbound,
) -> OpResult {
    let domain = resolve(args.dom, caller);
    let remote_domain = resolve(args.remote_dom, caller);
    let table = domains.table_mut(domain).ok_or(Errno::ESRCH)?;
    let port = table.free_port()?;
    if domain != caller {
        return Err(Errno::EPERM);
    }
    table.set(port, PortState::Unbound { remote_domain }, 0);
    args.port = Port(u32::from(port));
    Ok(None)
}

/// `EVTCHNOP_bind_interdomain`: connect a new port of the caller to `args.remote_port`
/// of `args.remote_dom`, which must be unbound and reserved for the caller. Fills
/// `args.local_port`.
///
/// `-ESRCH` for an unknown remote domain, then `-ENOSPC` (or `-EINVAL` if dying) when the
/// caller has no free port, then `-EINVAL` if the remote port is out of range, not
/// unbound, or reserved for another domain. The new port notifies vCPU 0; the remote
/// port keeps its notify vCPU. As Xen, the result always delivers an event on the new
/// local port (notifications sent to the unbound port were dropped).
pub fn bind_interdomain<D: EventChannelDomains + ?Sized>(
    domains: &mut D,
    caller: u16,
    args: &mut BindInterdomain,
) -> OpResult {
    let remote_domain = resolve(args.remote_dom, caller);
    domains.table_mut(remote_domain).ok_or(Errno::ESRCH)?;
    let local_port = domains.table_mut(caller).ok_or(Errno::ESRCH)?.free_port()?;
    let remote_port = compact(args.remote_port).ok_or(Errno::EINVAL)?;
    let local_state = PortState::Interdomain {
        remote_domain,
        remote_port,
    };
    let remote_state = PortState::Interdomain {
        remote_domain: caller,
        remote_port: local_port,
    };
    let expected = PortState::Unbound {
        remote_domain: caller,
    };
    if remote_domain == caller {
        let table = domains.table_mut(caller).ok_or(Errno::ESRCH)?;
        let remote = table.channel_mut(args.remote_port).ok_or(Errno::EINVAL)?;
        if remote.state != expected {
            return Err(Errno::EINVAL);
        }
        remote.state = remote_state;
        table.set(local_port, local_state, 0);
    } else {
        let (local, remote) = domains
            .two_tables_mut(caller, remote_domain)
            .ok_or(Errno::ESRCH)?;
        let remote = remote.channel_mut(args.remote_port).ok_or(Errno::EINVAL)?;
        if remote.state != expected {
            return Err(Errno::EINVAL);
        }
        remote.state = remote_state;
        local.set(local_port, local_state, 0);
    }
    args.local_port = Port(u32::from(local_port));
    Ok(Some(Action::Deliver(Deliver {
        domain: caller,
        vcpu: 0,
        port: args.local_port,
    })))
}

/// `EVTCHNOP_bind_virq`: bind `args.virq` on `args.vcpu` of the caller to a new port.
/// Fills `args.port`.
///
/// `-EINVAL` for `virq >= NR_VIRQS` or a global VIRQ with `vcpu != 0`, `-ENOENT` for a
/// vCPU that does not exist, `-EEXIST` if that (VIRQ, vCPU) is already bound, `-ENOSPC`
/// when no port is free. The port notifies `args.vcpu`.
pub fn bind_virq<D: EventChannelDomains + ?Sized>(
    domains: &mut D,
    caller: u16,
    args: &mut BindVirq,
) -> OpResult {
    let virq = u8::try_from(args.virq)
        .ok()
        .filter(|&virq| u32::from(virq) < NR_VIRQS)
        .ok_or(Errno::EINVAL)?;
    if virq_is_global(args.virq) && args.vcpu != 0 {
        return Err(Errno::EINVAL);
    }
    let vcpu = existing_vcpu(domains, caller, args.vcpu).ok_or(Errno::ENOENT)?;
    let table = domains.table_mut(caller).ok_or(Errno::ESRCH)?;
    if table
        .virq_slot_mut(vcpu, virq)
        .is_some_and(|slot| *slot != 0)
    {
        return Err(Errno::EEXIST);
    }
    let port = table.free_port()?;
    let slot = table.virq_slot_mut(vcpu, virq).ok_or(Errno::ENOENT)?;
    *slot = port;
    table.set(port, PortState::Virq { virq }, vcpu);
    args.port = Port(u32::from(port));
    Ok(None)
}

/// `EVTCHNOP_bind_ipi`: allocate a port of the caller that notifies `args.vcpu` of the
/// caller when the caller sends on it. Fills `args.port`.
///
/// `-ENOENT` for a vCPU that does not exist, `-ENOSPC` when no port is free.
pub fn bind_ipi<D: EventChannelDomains + ?Sized>(
    domains: &mut D,
    caller: u16,
    args: &mut BindIpi,
) -> OpResult {
    let vcpu = existing_vcpu(domains, caller, args.vcpu).ok_or(Errno::ENOENT)?;
    let table = domains.table_mut(caller).ok_or(Errno::ESRCH)?;
    let port = table.free_port()?;
    table.set(port, PortState::Ipi, vcpu);
    args.port = Port(u32::from(port));
    Ok(None)
}

/// `EVTCHNOP_send`: signal the other end of `args.port`.
///
/// Interdomain: deliver on the peer port to its notify vCPU. IPI: deliver on the port
/// itself to its notify vCPU. Unbound: nothing happens, and the result is 0 (Xen drops
/// the notification). Free, VIRQ or out of range: `-EINVAL`.
pub fn send<D: EventChannelDomains + ?Sized>(
    domains: &mut D,
    caller: u16,
    args: &Send,
) -> OpResult {
    let table = domains.table_mut(caller).ok_or(Errno::ESRCH)?;
    let channel = *table.channel(args.port).ok_or(Errno::EINVAL)?;
    match channel.state {
        PortState::Interdomain {
            remote_domain,
            remote_port,
        } => {
            let port = Port(u32::from(remote_port));
            // The peer exists while the port is interdomain (close_all unbinds first);
            // if a broken integration removed it, the event has nowhere to go.
            let vcpu = domains
                .table_mut(remote_domain)
                .and_then(|remote| remote.notify_vcpu(port));
            Ok(vcpu.map(|vcpu| {
                Action::Deliver(Deliver {
                    domain: remote_domain,
                    vcpu,
                    port,
                })
            }))
        }
        PortState::Ipi => Ok(Some(Action::Deliver(Deliver {
            domain: caller,
            vcpu: u32::from(channel.notify_vcpu),
            port: args.port,
        }))),
        PortState::Unbound { .. } => Ok(None),
        PortState::Free | PortState::Virq { .. } => Err(Errno::EINVAL),
    }
}

/// `EVTCHNOP_close`: free `args.port` of the caller.
///
/// `-EINVAL` for a free or out-of-range port. A VIRQ binding is dropped. For an
/// interdomain port the peer port becomes `Unbound { remote_domain: caller }`, keeping
/// its notify vCPU, so the caller may bind it again (Xen). The result clears the closed
/// port's pending bit ([`Action::ClearPending`]).
pub fn close<D: EventChannelDomains + ?Sized>(
    domains: &mut D,
    caller: u16,
    args: &Close,
) -> OpResult {
    let port = compact(args.port).ok_or(Errno::EINVAL)?;
    let table = domains.table_mut(caller).ok_or(Errno::ESRCH)?;
    let channel = *table.channel(args.port).ok_or(Errno::EINVAL)?;
    match channel.state {
        PortState::Free => return Err(Errno::EINVAL),
        PortState::Interdomain {
            remote_domain,
            remote_port,
        } => {
            unbind_peer(domains, caller, port, remote_domain, remote_port);
        }
        PortState::Unbound { .. } | PortState::Virq { .. } | PortState::Ipi => {}
    }
    if let Some(table) = domains.table_mut(caller) {
        table.free(port);
    }
    Ok(Some(Action::ClearPending {
        domain: caller,
        port: args.port,
    }))
}

/// The peer `(remote_domain, remote_port)` of `(domain, port)` becomes
/// `Unbound { remote_domain: domain }`, if it still points back. Returns the peer's notify
/// vCPU when it changed.
fn unbind_peer<D: EventChannelDomains + ?Sized>(
    domains: &mut D,
    domain: u16,
    port: u16,
    remote_domain: u16,
    remote_port: u16,
) -> Option<u32> {
    let peer_table = if remote_domain == domain {
        domains.table_mut(domain)?
    } else {
        domains.two_tables_mut(domain, remote_domain)?.1
    };
    let peer = peer_table.channel_mut(Port(u32::from(remote_port)))?;
    let points_back = PortState::Interdomain {
        remote_domain: domain,
        remote_port: port,
    };
    if peer.state != points_back {
        return None;
    }
    peer.state = PortState::Unbound {
        remote_domain: domain,
    };
    Some(u32::from(peer.notify_vcpu))
}

/// `EVTCHNOP_unmask`: the result clears the port's mask bit and notifies its notify vCPU
/// if it is pending ([`Action::Unmask`]).
///
/// `-EINVAL` only for an out-of-range port; like Xen, any port in range is accepted,
/// whatever its state.
pub fn unmask<D: EventChannelDomains + ?Sized>(
    domains: &mut D,
    caller: u16,
    args: &Unmask,
) -> OpResult {
    let table = domains.table_mut(caller).ok_or(Errno::ESRCH)?;
    let vcpu = table.notify_vcpu(args.port).ok_or(Errno::EINVAL)?;
    Ok(Some(Action::Unmask {
        domain: caller,
        vcpu,
        port: args.port,
    }))
}

/// `EVTCHNOP_status`: fill `args.status`, `args.vcpu` and the union `args.u` for
/// `args.port` of `args.dom`.
///
/// `-ESRCH` for an unknown domain, then `-EINVAL` for an out-of-range port, then `-EPERM`
/// unless the domain is the caller. As Xen, only the union member of the status is
/// written; other bytes of `u` keep what the guest passed. Unbound: `u16 dom` at the
/// start of `u`. Interdomain: `u16 dom`, then `u32 port` at `u[1]`. VIRQ: `u[0]`.
pub fn status<D: EventChannelDomains + ?Sized>(
    domains: &mut D,
    caller: u16,
    args: &mut Status,
) -> OpResult {
    let domain = resolve(args.dom, caller);
    let table = domains.table_mut(domain).ok_or(Errno::ESRCH)?;
    let channel = *table.channel(args.port).ok_or(Errno::EINVAL)?;
    if domain != caller {
        return Err(Errno::EPERM);
    }
    // The u16 `dom` member is the low half of u[0] (little-endian, as AArch64 guests).
    let with_domain = |word: u32, domain: u16| (word & 0xFFFF_0000) | u32::from(domain);
    match channel.state {
        PortState::Free => args.status = STAT_CLOSED,
        PortState::Unbound { remote_domain } => {
            args.status = STAT_UNBOUND;
            args.u[0] = with_domain(args.u[0], remote_domain);
        }
        PortState::Interdomain {
            remote_domain,
            remote_port,
        } => {
            args.status = STAT_INTERDOMAIN;
            args.u[0] = with_domain(args.u[0], remote_domain);
            args.u[1] = u32::from(remote_port);
        }
        PortState::Virq { virq } => {
            args.status = STAT_VIRQ;
            args.u[0] = u32::from(virq);
        }
        PortState::Ipi => args.status = STAT_IPI,
    }
    args.vcpu = u32::from(channel.notify_vcpu);
    Ok(None)
}

/// `EVTCHNOP_bind_vcpu`: notify `args.vcpu` for `args.port` from now on.
///
/// `-ENOENT` for a vCPU that does not exist (checked first), `-EINVAL` for an
/// out-of-range port or a port Xen does not move: free, IPI, or a per-vCPU VIRQ.
/// Unbound, interdomain and global-VIRQ ports move.
pub fn bind_vcpu<D: EventChannelDomains + ?Sized>(
    domains: &mut D,
    caller: u16,
    args: &BindVcpu,
) -> OpResult {
    let vcpu = existing_vcpu(domains, caller, args.vcpu).ok_or(Errno::ENOENT)?;
    let table = domains.table_mut(caller).ok_or(Errno::ESRCH)?;
    let channel = table.channel_mut(args.port).ok_or(Errno::EINVAL)?;
    match channel.state {
        PortState::Unbound { .. } | PortState::Interdomain { .. } => {}
        PortState::Virq { virq } if virq_is_global(u32::from(virq)) => {}
        PortState::Free | PortState::Ipi | PortState::Virq { .. } => return Err(Errno::EINVAL),
    }
    channel.notify_vcpu = vcpu;
    Ok(None)
}

/// The peers to notify after [`close_all`]: an iterator of [`Deliver`], one per
/// interdomain port of another domain that the dying domain was connected to.
#[derive(Debug)]
pub struct PeerNotifications {
    /// (domain, vCPU, port), compact.
    entries: heapless::Vec<[u16; 3], MAX_PEER_NOTIFICATIONS>,
    next: usize,
}

impl PeerNotifications {
    /// How many notifications are left.
    pub fn len(&self) -> usize {
        self.entries.len().saturating_sub(self.next)
    }

    /// Whether none are left.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Iterator for PeerNotifications {
    type Item = Deliver;

    fn next(&mut self) -> Option<Deliver> {
        let [domain, vcpu, port] = *self.entries.get(self.next)?;
        self.next += 1;
        Some(Deliver {
            domain,
            vcpu: u32::from(vcpu),
            port: Port(u32::from(port)),
        })
    }
}

/// A domain dies (Xen's `evtchn_destroy`): every port of `dying` is closed and its table
/// is marked dying, so it allocates nothing any more (`-EINVAL`).
///
/// Each interdomain peer port in another domain becomes `Unbound { remote_domain: dying }`
/// (as Xen) and gets a [`Deliver`] in the result, so the peer notices. After this, no port
/// of any domain is interdomain-bound to `dying`; ports `Unbound` for `dying` may remain
/// in other domains (Xen keeps them too) until their owners close them. The dying
/// domain's own pending bits are not touched. Apply the result after the table borrow
/// ends; an unknown `dying` gives no notifications.
pub fn close_all<D: EventChannelDomains + ?Sized>(
    domains: &mut D,
    dying: u16,
) -> PeerNotifications {
    let mut notifications = PeerNotifications {
        entries: heapless::Vec::new(),
        next: 0,
    };
    let Some(table) = domains.table_mut(dying) else {
        return notifications;
    };
    table.dying = true;
    for port in 1..MAX_PORTS as u16 {
        let Some(table) = domains.table_mut(dying) else {
            break;
        };
        let Some(channel) = table.channel(Port(u32::from(port))).copied() else {
            break;
        };
        if let PortState::Interdomain {
            remote_domain,
            remote_port,
        } = channel.state
        {
            let vcpu = unbind_peer(domains, dying, port, remote_domain, remote_port);
            if let (Some(vcpu), true) = (vcpu, remote_domain != dying) {
                // Capacity is one entry per port, so this cannot fail.
                let _ = notifications.entries.push([
                    remote_domain,
                    u16::try_from(vcpu).unwrap_or(0),
                    remote_port,
                ]);
            }
        }
        if let Some(table) = domains.table_mut(dying) {
            table.free(port);
        }
    }
    notifications
}

/// A fixed set of domains for host tests: tables on the heap, ids `0..count`.
#[cfg(test)]
pub mod in_memory {
    use super::{EventChannelDomains, PortTable};
    use std::boxed::Box;
    use std::vec::Vec;

    /// Domains `0..tables.len()`, each with a table and a vCPU count.
    pub struct InMemoryDomains {
        /// One table per domain, indexed by id.
        pub tables: Vec<Box<PortTable>>,
        /// vCPUs per domain, indexed by id.
        pub vcpus: Vec<u32>,
    }

    impl InMemoryDomains {
        /// Domains with the given vCPU counts.
        pub fn new(vcpus: &[u32]) -> InMemoryDomains {
            InMemoryDomains {
                tables: vcpus.iter().map(|_| Box::new(PortTable::new())).collect(),
                vcpus: vcpus.to_vec(),
            }
        }
    }

    impl EventChannelDomains for InMemoryDomains {
        fn table_mut(&mut self, domain: u16) -> Option<&mut PortTable> {
            self.tables
                .get_mut(usize::from(domain))
                .map(|table| &mut **table)
        }

        fn two_tables_mut(
            &mut self,
            first: u16,
            second: u16,
        ) -> Option<(&mut PortTable, &mut PortTable)> {
            let [a, b] = self
                .tables
                .get_disjoint_mut([usize::from(first), usize::from(second)])
                .ok()?;
            Some((&mut **a, &mut **b))
        }

        fn vcpu_count(&self, domain: u16) -> Option<u32> {
            self.vcpus.get(usize::from(domain)).copied()
        }
    }
}
