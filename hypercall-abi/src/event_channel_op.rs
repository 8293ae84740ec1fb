//! `event_channel_op` sub-ops (`public/event_channel.h`) and virtual IRQ numbers.
//!
//! Arguments: `x0` = cmd (32 bits), `x1` = guest virtual address of the argument.
//! Every argument struct is read and, for the OUT fields, written back in place.

/// An event-channel port of the calling domain. Port 0 is never allocated; with the
/// 2-level ABI ports are below [`crate::evtchn2l::NR_PORTS`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Port(pub u32);

impl Port {
    /// The raw port number.
    pub const fn get(self) -> u32 {
        self.0
    }
}

/// `EVTCHNOP_bind_interdomain`: connect to another domain's unbound port;
/// argument [`BindInterdomain`].
pub const BIND_INTERDOMAIN: u32 = 0;
/// `EVTCHNOP_bind_virq`: bind a virtual IRQ to a new port; argument [`BindVirq`].
pub const BIND_VIRQ: u32 = 1;
/// `EVTCHNOP_bind_pirq`: bind a physical IRQ (not on this project).
pub const BIND_PIRQ: u32 = 2;
/// `EVTCHNOP_close`: close a port; argument [`Close`].
pub const CLOSE: u32 = 3;
/// `EVTCHNOP_send`: signal the remote end of a port; argument [`Send`].
pub const SEND: u32 = 4;
/// `EVTCHNOP_status`: query a port; argument [`Status`].
pub const STATUS: u32 = 5;
/// `EVTCHNOP_alloc_unbound`: allocate a port for a remote domain to bind;
/// argument [`AllocUnbound`].
pub const ALLOC_UNBOUND: u32 = 6;
/// `EVTCHNOP_bind_ipi`: allocate an inter-vCPU port; argument [`BindIpi`].
pub const BIND_IPI: u32 = 7;
/// `EVTCHNOP_bind_vcpu`: move notification of a port to another vCPU;
/// argument [`BindVcpu`].
pub const BIND_VCPU: u32 = 8;
/// `EVTCHNOP_unmask`: clear a port's mask bit and deliver it if pending;
/// argument [`Unmask`].
pub const UNMASK: u32 = 9;
/// `EVTCHNOP_reset`: close all ports of a domain; argument [`Reset`].
pub const RESET: u32 = 10;
/// `EVTCHNOP_init_control`: switch to the FIFO ABI; argument [`InitControl`].
/// This project keeps the 2-level ABI and answers `-ENOSYS`, which makes Linux print
/// "Using 2-level ABI".
pub const INIT_CONTROL: u32 = 11;
/// `EVTCHNOP_expand_array` (FIFO ABI).
pub const EXPAND_ARRAY: u32 = 12;
/// `EVTCHNOP_set_priority` (FIFO ABI).
pub const SET_PRIORITY: u32 = 13;
/// `EVTCHNOP_reset_cont`: continuation of [`RESET`].
pub const RESET_CONT: u32 = 14;

/// `VIRQ_TIMER`: per-vCPU timer (the one-shot timer fired).
pub const VIRQ_TIMER: u32 = 0;
/// `VIRQ_DEBUG`: per-vCPU request to dump debug information.
pub const VIRQ_DEBUG: u32 = 1;
/// `VIRQ_CONSOLE`: global; bytes arrived for `CONSOLEIO_read` (dom0).
pub const VIRQ_CONSOLE: u32 = 2;
/// `VIRQ_DOM_EXC`: global; a domain had an exceptional event (dom0).
pub const VIRQ_DOM_EXC: u32 = 3;
/// `NR_VIRQS`: virtual IRQ numbers are below this.
pub const NR_VIRQS: u32 = 24;

/// `EVTCHNSTAT_closed`.
pub const STAT_CLOSED: u32 = 0;
/// `EVTCHNSTAT_unbound`.
pub const STAT_UNBOUND: u32 = 1;
/// `EVTCHNSTAT_interdomain`.
pub const STAT_INTERDOMAIN: u32 = 2;
/// `EVTCHNSTAT_pirq`.
pub const STAT_PIRQ: u32 = 3;
/// `EVTCHNSTAT_virq`.
pub const STAT_VIRQ: u32 = 4;
/// `EVTCHNSTAT_ipi`.
pub const STAT_IPI: u32 = 5;

/// Argument of [`ALLOC_UNBOUND`] (`struct evtchn_alloc_unbound`, 8 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct AllocUnbound {
    /// IN: the domain that gets the port; [`crate::shared::DOMID_SELF`].
    pub dom: u16,
    /// IN: the domain allowed to bind to it.
    pub remote_dom: u16,
    /// OUT: the new port.
    pub port: Port,
}
assert_layout!(AllocUnbound, 8, { dom: 0, remote_dom: 2, port: 4 });

/// Argument of [`BIND_INTERDOMAIN`] (`struct evtchn_bind_interdomain`, 12 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BindInterdomain {
    /// IN: the remote domain.
    pub remote_dom: u16,
    /// IN: its unbound port.
    pub remote_port: Port,
    /// OUT: the local port.
    pub local_port: Port,
}
assert_layout!(BindInterdomain, 12, { remote_dom: 0, remote_port: 4, local_port: 8 });

/// Argument of [`BIND_VIRQ`] (`struct evtchn_bind_virq`, 12 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BindVirq {
    /// IN: a `VIRQ_*` number.
    pub virq: u32,
    /// IN: the vCPU to notify (0 for global VIRQs).
    pub vcpu: u32,
    /// OUT: the new port.
    pub port: Port,
}
assert_layout!(BindVirq, 12, { virq: 0, vcpu: 4, port: 8 });

/// Argument of [`BIND_IPI`] (`struct evtchn_bind_ipi`, 8 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BindIpi {
    /// IN: the vCPU to notify.
    pub vcpu: u32,
    /// OUT: the new port.
    pub port: Port,
}
assert_layout!(BindIpi, 8, { vcpu: 0, port: 4 });

/// Argument of [`CLOSE`] (`struct evtchn_close`, 4 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Close {
    /// The port to close.
    pub port: Port,
}
assert_layout!(Close, 4, { port: 0 });

/// Argument of [`SEND`] (`struct evtchn_send`, 4 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Send {
    /// The local port whose remote end is signalled.
    pub port: Port,
}
assert_layout!(Send, 4, { port: 0 });

/// Argument of [`UNMASK`] (`struct evtchn_unmask`, 4 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Unmask {
    /// The port to unmask.
    pub port: Port,
}
assert_layout!(Unmask, 4, { port: 0 });

/// Argument of [`STATUS`] (`struct evtchn_status`, 24 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Status {
    /// IN: the domain; [`crate::shared::DOMID_SELF`].
    pub dom: u16,
    /// IN: the port.
    pub port: Port,
    /// OUT: an `EVTCHNSTAT_*` value ([`STAT_CLOSED`] ...).
    pub status: u32,
    /// OUT: the vCPU notified.
    pub vcpu: u32,
    /// OUT: Xen's union `u`, by status: unbound `{u16 dom}`, interdomain
    /// `{u16 dom; u32 port}`, pirq `u32`, virq `u32`.
    pub u: [u32; 2],
}
assert_layout!(Status, 24, { dom: 0, port: 4, status: 8, vcpu: 12, u: 16 });

/// Argument of [`BIND_VCPU`] (`struct evtchn_bind_vcpu`, 8 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct BindVcpu {
    /// The port.
    pub port: Port,
    /// The vCPU to notify from now on.
    pub vcpu: u32,
}
assert_layout!(BindVcpu, 8, { port: 0, vcpu: 4 });

/// Argument of [`RESET`] (`struct evtchn_reset`, 2 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Reset {
    /// The domain; [`crate::shared::DOMID_SELF`].
    pub dom: u16,
}
assert_layout!(Reset, 2, { dom: 0 });

/// Argument of [`INIT_CONTROL`] (`struct evtchn_init_control`, 24 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct InitControl {
    /// IN: guest frame of the FIFO control block.
    pub control_gfn: u64,
    /// IN: offset of the control block in the frame.
    pub offset: u32,
    /// IN: the vCPU.
    pub vcpu: u32,
    /// OUT: bits in a FIFO link field.
    pub link_bits: u8,
    /// Padding, as in Xen's header.
    pub _pad: [u8; 7],
}
assert_layout!(InitControl, 24, { control_gfn: 0, offset: 8, vcpu: 12, link_bits: 16 });
