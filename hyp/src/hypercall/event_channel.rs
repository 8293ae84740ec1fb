//! `event_channel_op`: the guest-memory side of Xen's 2-level event channels. Arguments
//! are copied in as bytes, handed to the model in [`crate::event_channel`], and only the
//! OUT fields are written back, at their offsets: no padding byte of a hypervisor value
//! ever reaches the guest.

use crate::addr::GuestVirtAddr;
use crate::domain::MAX_DOMAINS;
use crate::event_channel::{self as model, Action, EventChannelDomains, PortTable};
use crate::guest_memory::GuestMemory;
use hypercall_abi::errno::Errno;
use hypercall_abi::event_channel_op::{self as op, Port};

/// The event-channel tables of every domain slot, as the model wants to see them.
pub struct EventTables<'a> {
    /// Port tables, one per domain slot.
    pub ports: &'a mut [PortTable; MAX_DOMAINS],
    /// The domain slots, asked for vCPU counts only for the domains an operation names
    /// (not all of them up front: every send builds one of these).
    pub domains: &'a [Option<crate::domain::Domain>; MAX_DOMAINS],
}

impl EventTables<'_> {
    /// vCPU count of slot `index`'s domain (`None`: no domain there).
    fn count(&self, index: usize) -> Option<u32> {
        let domain = self.domains.get(index)?.as_ref()?;
        Some(domain.vcpus.len() as u32)
    }
}

impl EventChannelDomains for EventTables<'_> {
    fn table_mut(&mut self, domain: u16) -> Option<&mut PortTable> {
        let index = usize::from(domain);
        self.count(index)?;
        self.ports.get_mut(index)
    }

    fn two_tables_mut(
        &mut self,
        first: u16,
        second: u16,
    ) -> Option<(&mut PortTable, &mut PortTable)> {
        let (first, second) = (usize::from(first), usize::from(second));
        if first == second || first >= MAX_DOMAINS || second >= MAX_DOMAINS {
            return None;
        }
        self.count(first)?;
        self.count(second)?;
        let (low, high) = self.ports.split_at_mut(first.max(second));
        let (low, high) = (low.get_mut(first.min(second))?, high.first_mut()?);
        Some(if first < second {
            (low, high)
        } else {
            (high, low)
        })
    }

    fn vcpu_count(&self, domain: u16) -> Option<u32> {
        self.count(usize::from(domain))
    }
}

fn u16_at(bytes: &[u8], offset: usize) -> u16 {
    bytes
        .get(offset..offset + 2)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u16::from_le_bytes)
}

fn u32_at(bytes: &[u8], offset: usize) -> u32 {
    bytes
        .get(offset..offset + 4)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

fn put_u32(bytes: &mut [u8], offset: usize, value: u32) {
    if let Some(slot) = bytes.get_mut(offset..offset + 4) {
        slot.copy_from_slice(&value.to_le_bytes());
    }
}

/// Handles `event_channel_op(cmd, arg)` for domain `caller`; returns the value for x0 and
/// the action the hypervisor must carry out (deliver an event, re-check an unmasked port).
pub fn event_channel_op(
    tables: &mut EventTables<'_>,
    memory: &GuestMemory<'_>,
    caller: u16,
    cmd: u32,
    arg: GuestVirtAddr,
) -> (u64, Option<Action>) {
    let mut bytes = [0u8; 24];
    let size = match cmd {
        op::SEND | op::CLOSE | op::UNMASK => 4,
        op::ALLOC_UNBOUND | op::BIND_IPI | op::BIND_VCPU => 8,
        op::BIND_INTERDOMAIN | op::BIND_VIRQ => 12,
        op::STATUS => 24,
        _ => return (Errno::ENOSYS.to_return(), None),
    };
    let Some(buffer) = bytes.get_mut(..size) else {
        return (Errno::EFAULT.to_return(), None);
    };
    if let Err(error) = memory.read(arg, buffer) {
        return (error.to_return(), None);
    }
    let result = run(tables, caller, cmd, buffer);
    // Only the operations with OUT fields are copied back, as Xen's do_event_channel_op
    // does: send, close, unmask and bind_vcpu leave the guest's struct alone.
    let has_out = !matches!(cmd, op::SEND | op::CLOSE | op::UNMASK | op::BIND_VCPU);
    match result {
        Ok(action) if !has_out => (0, action),
        Ok(action) => match memory.write(arg, buffer) {
            Ok(()) => (0, action),
            // The operation happened; like Xen (`__copy_to_guest` failing late), the
            // caller learns of the bad buffer, and the action still stands.
            Err(error) => (error.to_return(), action),
        },
        Err(error) => (error.to_return(), None),
    }
}

/// `EVTCHNOP_send` on `port` for domain `caller`, its argument already read (the
/// hypervisor reads it first to recognise its own console port).
pub fn send(tables: &mut EventTables<'_>, caller: u16, port: Port) -> (u64, Option<Action>) {
    match model::send(tables, caller, &op::Send { port }) {
        Ok(action) => (0, action),
        Err(error) => (error.to_return(), None),
    }
}

/// Runs one operation on the bytes of its argument struct, writing OUT fields in place.
fn run(tables: &mut EventTables<'_>, caller: u16, cmd: u32, bytes: &mut [u8]) -> model::OpResult {
    match cmd {
        op::ALLOC_UNBOUND => {
            let mut args = op::AllocUnbound {
                dom: u16_at(bytes, 0),
                remote_dom: u16_at(bytes, 2),
                port: Port(0),
            };
            let action = model::alloc_unbound(tables, caller, &mut args)?;
            put_u32(bytes, 4, args.port.0);
            Ok(action)
        }
        op::BIND_INTERDOMAIN => {
            let mut args = op::BindInterdomain {
                remote_dom: u16_at(bytes, 0),
                remote_port: Port(u32_at(bytes, 4)),
                local_port: Port(0),
            };
            let action = model::bind_interdomain(tables, caller, &mut args)?;
            put_u32(bytes, 8, args.local_port.0);
            Ok(action)
        }
        op::BIND_VIRQ => {
            let mut args = op::BindVirq {
                virq: u32_at(bytes, 0),
                vcpu: u32_at(bytes, 4),
                port: Port(0),
            };
            let action = model::bind_virq(tables, caller, &mut args)?;
            put_u32(bytes, 8, args.port.0);
            Ok(action)
        }
        op::BIND_IPI => {
            let mut args = op::BindIpi {
                vcpu: u32_at(bytes, 0),
                port: Port(0),
            };
            let action = model::bind_ipi(tables, caller, &mut args)?;
            put_u32(bytes, 4, args.port.0);
            Ok(action)
        }
        op::SEND => model::send(
            tables,
            caller,
            &op::Send {
                port: Port(u32_at(bytes, 0)),
            },
        ),
        op::CLOSE => model::close(
            tables,
            caller,
            &op::Close {
                port: Port(u32_at(bytes, 0)),
            },
        ),
        op::UNMASK => model::unmask(
            tables,
            caller,
            &op::Unmask {
                port: Port(u32_at(bytes, 0)),
            },
        ),
        op::BIND_VCPU => model::bind_vcpu(
            tables,
            caller,
            &op::BindVcpu {
                port: Port(u32_at(bytes, 0)),
                vcpu: u32_at(bytes, 4),
            },
        ),
        op::STATUS => {
            let mut args = op::Status {
                dom: u16_at(bytes, 0),
                port: Port(u32_at(bytes, 4)),
                status: u32_at(bytes, 8),
                vcpu: u32_at(bytes, 12),
                u: [u32_at(bytes, 16), u32_at(bytes, 20)],
            };
            let action = model::status(tables, caller, &mut args)?;
            put_u32(bytes, 8, args.status);
            put_u32(bytes, 12, args.vcpu);
            put_u32(bytes, 16, args.u[0]);
            put_u32(bytes, 20, args.u[1]);
            Ok(action)
        }
        _ => Err(Errno::ENOSYS),
    }
}
