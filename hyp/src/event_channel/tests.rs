//! Host tests: every operation and errno, a ping-pong over real shared-info structs, and
//! a property test of the cross-domain invariants.

use super::in_memory::InMemoryDomains;
use super::*;
use hypercall_abi::event_channel_op::{VIRQ_CONSOLE, VIRQ_DEBUG, VIRQ_DOM_EXC, VIRQ_TIMER};
use std::boxed::Box;
use std::vec::Vec;

const A: u16 = 0;
const B: u16 = 1;
const C: u16 = 2;

fn domains() -> InMemoryDomains {
    InMemoryDomains::new(&[2, 2, 1])
}

fn alloc(d: &mut InMemoryDomains, caller: u16, remote: u16) -> Result<Port, Errno> {
    let mut args = AllocUnbound {
        dom: DOMID_SELF,
        remote_dom: remote,
        port: Port(0),
    };
    alloc_unbound(d, caller, &mut args).map(|action| {
        assert_eq!(action, None);
        args.port
    })
}

fn bind(d: &mut InMemoryDomains, caller: u16, remote: u16, port: Port) -> Result<Port, Errno> {
    let mut args = BindInterdomain {
        remote_dom: remote,
        remote_port: port,
        local_port: Port(0),
    };
    bind_interdomain(d, caller, &mut args).map(|action| {
        assert_eq!(
            action,
            Some(Action::Deliver(Deliver {
                domain: caller,
                vcpu: 0,
                port: args.local_port
            })),
            "binding always notifies the new local port"
        );
        args.local_port
    })
}

/// An interdomain channel between `a` and `b`: (port of a, port of b).
fn connect(d: &mut InMemoryDomains, a: u16, b: u16) -> (Port, Port) {
    let pa = alloc(d, a, b).unwrap();
    let pb = bind(d, b, a, pa).unwrap();
    (pa, pb)
}

fn virq(d: &mut InMemoryDomains, caller: u16, virq: u32, vcpu: u32) -> Result<Port, Errno> {
    let mut args = BindVirq {
        virq,
        vcpu,
        port: Port(0),
    };
    bind_virq(d, caller, &mut args).map(|action| {
        assert_eq!(action, None);
        args.port
    })
}

fn ipi(d: &mut InMemoryDomains, caller: u16, vcpu: u32) -> Result<Port, Errno> {
    let mut args = BindIpi {
        vcpu,
        port: Port(0),
    };
    bind_ipi(d, caller, &mut args).map(|action| {
        assert_eq!(action, None);
        args.port
    })
}

fn send_on(d: &mut InMemoryDomains, caller: u16, port: Port) -> Result<Option<Deliver>, Errno> {
    send(d, caller, &Send { port }).map(|action| match action {
        None => None,
        Some(Action::Deliver(deliver)) => Some(deliver),
        Some(other) => panic!("send produced {other:?}"),
    })
}

fn close_port(d: &mut InMemoryDomains, caller: u16, port: Port) -> OpResult {
    close(d, caller, &Close { port })
}

fn move_port(d: &mut InMemoryDomains, caller: u16, port: Port, vcpu: u32) -> OpResult {
    bind_vcpu(d, caller, &BindVcpu { port, vcpu })
}

fn status_of(d: &mut InMemoryDomains, caller: u16, dom: u16, port: Port) -> Result<Status, Errno> {
    let mut args = Status {
        dom,
        port,
        ..Status::default()
    };
    status(d, caller, &mut args).map(|action| {
        assert_eq!(action, None);
        args
    })
}

fn state(d: &InMemoryDomains, domain: u16, port: Port) -> Option<PortState> {
    d.tables[usize::from(domain)].state(port)
}

/// Fills every free port of `caller` with IPI ports.
fn fill(d: &mut InMemoryDomains, caller: u16) {
    while ipi(d, caller, 0).is_ok() {}
    assert_eq!(d.tables[usize::from(caller)].ports_in_use(), MAX_PORTS - 1);
}

#[test]
fn table_is_compact() {
    assert_eq!(core::mem::size_of::<Channel>(), 8);
    let size = core::mem::size_of::<PortTable>();
    assert!(size <= 8 * MAX_PORTS + 512, "PortTable is {size} bytes");
    static TABLE: PortTable = PortTable::new();
    assert_eq!(TABLE.ports_in_use(), 0);
    assert_eq!(TABLE.state(Port(0)), Some(PortState::Free));
    assert_eq!(TABLE.state(Port(MAX_PORTS as u32)), None);
}

#[test]
fn virq_scope_matches_xen() {
    for virq in 0..NR_VIRQS {
        let per_vcpu = matches!(virq, 0 | 1 | 7 | 13);
        assert_eq!(virq_is_global(virq), !per_vcpu, "virq {virq}");
    }
}

#[test]
fn alloc_unbound_allocates_lowest_free_port() {
    let mut d = domains();
    assert_eq!(alloc(&mut d, A, B), Ok(Port(1)));
    assert_eq!(alloc(&mut d, A, DOMID_SELF), Ok(Port(2)));
    assert_eq!(
        state(&d, A, Port(1)),
        Some(PortState::Unbound { remote_domain: B })
    );
    assert_eq!(
        state(&d, A, Port(2)),
        Some(PortState::Unbound { remote_domain: A }),
        "DOMID_SELF as remote_dom is the caller"
    );
    close_port(&mut d, A, Port(1)).unwrap();
    assert_eq!(alloc(&mut d, A, C), Ok(Port(1)), "freed port reused");
    // Explicit own id works like DOMID_SELF.
    let mut args = AllocUnbound {
        dom: A,
        remote_dom: B,
        port: Port(0),
    };
    assert_eq!(alloc_unbound(&mut d, A, &mut args), Ok(None));
    assert_eq!(args.port, Port(3));
    // remote_dom is not validated (Xen does not either).
    assert_eq!(alloc(&mut d, A, 0x1234), Ok(Port(4)));
}

#[test]
fn alloc_unbound_errors() {
    let mut d = domains();
    let mut args = AllocUnbound {
        dom: B,
        remote_dom: A,
        port: Port(77),
    };
    assert_eq!(alloc_unbound(&mut d, A, &mut args), Err(Errno::EPERM));
    assert_eq!(args.port, Port(77), "OUT field untouched on error");
    assert_eq!(d.tables[1].ports_in_use(), 0);
    args.dom = 9;
    assert_eq!(alloc_unbound(&mut d, A, &mut args), Err(Errno::ESRCH));
    args.dom = hypercall_abi::shared::DOMID_XEN;
    assert_eq!(alloc_unbound(&mut d, A, &mut args), Err(Errno::ESRCH));
    // A full table: -ENOSPC, and Xen checks space before permission.
    fill(&mut d, B);
    assert_eq!(alloc(&mut d, B, A), Err(Errno::ENOSPC));
    args.dom = B;
    assert_eq!(alloc_unbound(&mut d, A, &mut args), Err(Errno::ENOSPC));
}

#[test]
fn bind_interdomain_connects_both_ends() {
    let mut d = domains();
    let pa = alloc(&mut d, A, B).unwrap();
    let pb = bind(&mut d, B, A, pa).unwrap();
    assert_eq!(pb, Port(1));
    assert_eq!(
        state(&d, A, pa),
        Some(PortState::Interdomain {
            remote_domain: B,
            remote_port: 1
        })
    );
    assert_eq!(
        state(&d, B, pb),
        Some(PortState::Interdomain {
            remote_domain: A,
            remote_port: 1
        })
    );
    assert_eq!(d.tables[0].notify_vcpu(pa), Some(0));
    assert_eq!(d.tables[1].notify_vcpu(pb), Some(0));
    // Already bound: no longer unbound.
    assert_eq!(bind(&mut d, B, A, pa), Err(Errno::EINVAL));
}

#[test]
fn bind_interdomain_keeps_remote_notify_vcpu() {
    let mut d = domains();
    let pa = alloc(&mut d, A, B).unwrap();
    move_port(&mut d, A, pa, 1).unwrap();
    let pb = bind(&mut d, B, A, pa).unwrap();
    assert_eq!(d.tables[0].notify_vcpu(pa), Some(1));
    assert_eq!(
        send_on(&mut d, B, pb),
        Ok(Some(Deliver {
            domain: A,
            vcpu: 1,
            port: pa
        }))
    );
}

#[test]
fn bind_interdomain_errors() {
    let mut d = domains();
    let for_c = alloc(&mut d, A, C).unwrap();
    // Reserved for another domain.
    assert_eq!(bind(&mut d, B, A, for_c), Err(Errno::EINVAL));
    // Free, reserved and out-of-range ports.
    assert_eq!(bind(&mut d, B, A, Port(5)), Err(Errno::EINVAL));
    assert_eq!(bind(&mut d, B, A, Port(0)), Err(Errno::EINVAL));
    assert_eq!(
        bind(&mut d, B, A, Port(MAX_PORTS as u32)),
        Err(Errno::EINVAL)
    );
    assert_eq!(bind(&mut d, B, A, Port(u32::MAX)), Err(Errno::EINVAL));
    // Not an unbound port.
    let ipi_port = ipi(&mut d, A, 0).unwrap();
    assert_eq!(bind(&mut d, B, A, ipi_port), Err(Errno::EINVAL));
    // Unknown domain.
    assert_eq!(bind(&mut d, B, 7, for_c), Err(Errno::ESRCH));
    // Nothing changed in B.
    assert_eq!(d.tables[1].ports_in_use(), 0);
    // Caller full: -ENOSPC comes before the remote port check (Xen's order).
    fill(&mut d, B);
    assert_eq!(bind(&mut d, B, A, Port(5)), Err(Errno::ENOSPC));
}

#[test]
fn bind_interdomain_loopback() {
    let mut d = domains();
    let first = alloc(&mut d, A, DOMID_SELF).unwrap();
    let second = bind(&mut d, A, DOMID_SELF, first).unwrap();
    assert_eq!((first, second), (Port(1), Port(2)));
    assert_eq!(
        send_on(&mut d, A, first),
        Ok(Some(Deliver {
            domain: A,
            vcpu: 0,
            port: second
        }))
    );
    assert_eq!(
        send_on(&mut d, A, second),
        Ok(Some(Deliver {
            domain: A,
            vcpu: 0,
            port: first
        }))
    );
    close_port(&mut d, A, second).unwrap();
    assert_eq!(
        state(&d, A, first),
        Some(PortState::Unbound { remote_domain: A })
    );
}

#[test]
fn bind_virq_rules() {
    let mut d = domains();
    let timer0 = virq(&mut d, A, VIRQ_TIMER, 0).unwrap();
    let timer1 = virq(&mut d, A, VIRQ_TIMER, 1).unwrap();
    assert_ne!(timer0, timer1);
    assert_eq!(d.tables[0].notify_vcpu(timer1), Some(1));
    assert_eq!(state(&d, A, timer1), Some(PortState::Virq { virq: 0 }));
    assert_eq!(virq(&mut d, A, VIRQ_TIMER, 1), Err(Errno::EEXIST));
    assert_eq!(virq(&mut d, A, VIRQ_TIMER, 2), Err(Errno::ENOENT));
    assert_eq!(virq(&mut d, A, VIRQ_DEBUG, 9), Err(Errno::ENOENT));
    assert_eq!(virq(&mut d, A, NR_VIRQS, 0), Err(Errno::EINVAL));
    assert_eq!(virq(&mut d, A, 256, 0), Err(Errno::EINVAL));
    assert_eq!(virq(&mut d, A, u32::MAX, 0), Err(Errno::EINVAL));
    // Global VIRQs bind on vCPU 0 only; a bad vCPU there is -EINVAL, not -ENOENT.
    assert_eq!(virq(&mut d, A, VIRQ_CONSOLE, 1), Err(Errno::EINVAL));
    assert_eq!(virq(&mut d, A, VIRQ_CONSOLE, 9), Err(Errno::EINVAL));
    let console = virq(&mut d, A, VIRQ_CONSOLE, 0).unwrap();
    assert_eq!(virq(&mut d, A, VIRQ_CONSOLE, 0), Err(Errno::EEXIST));
    // Any VIRQ below NR_VIRQS binds, as Xen.
    assert!(virq(&mut d, A, VIRQ_DOM_EXC, 0).is_ok());
    assert!(virq(&mut d, A, 23, 0).is_ok());
    // Closing drops the binding; it can be bound again.
    close_port(&mut d, A, console).unwrap();
    assert_eq!(d.tables[0].virq_port(0, VIRQ_CONSOLE), None);
    assert_eq!(virq(&mut d, A, VIRQ_CONSOLE, 0), Ok(console));
    close_port(&mut d, A, timer1).unwrap();
    assert_eq!(d.tables[0].virq_port(1, VIRQ_TIMER), None);
    assert_eq!(d.tables[0].virq_port(0, VIRQ_TIMER), Some(timer0));
    fill(&mut d, A);
    assert_eq!(virq(&mut d, A, VIRQ_TIMER, 1), Err(Errno::ENOSPC));
}

#[test]
fn raise_virq_targets() {
    let mut d = domains();
    assert_eq!(d.tables[0].raise_virq(A, 0, VIRQ_TIMER), None, "unbound");
    let timer1 = virq(&mut d, A, VIRQ_TIMER, 1).unwrap();
    let table = &d.tables[0];
    assert_eq!(
        table.raise_virq(A, 1, VIRQ_TIMER),
        Some(Deliver {
            domain: A,
            vcpu: 1,
            port: timer1
        })
    );
    assert_eq!(table.raise_virq(A, 0, VIRQ_TIMER), None, "vCPU 0 not bound");
    assert_eq!(table.raise_virq(A, 99, VIRQ_TIMER), None);
    assert_eq!(table.raise_virq(A, 0, NR_VIRQS), None);
    assert_eq!(table.raise_virq(A, 0, u32::MAX), None);
    let console = virq(&mut d, A, VIRQ_CONSOLE, 0).unwrap();
    move_port(&mut d, A, console, 1).unwrap();
    // Global: the port's notify vCPU, whatever vCPU is named.
    for vcpu in [0, 1, 5] {
        assert_eq!(
            d.tables[0].raise_virq(A, vcpu, VIRQ_CONSOLE),
            Some(Deliver {
                domain: A,
                vcpu: 1,
                port: console
            })
        );
    }
    // Closing a moved global VIRQ port still drops its binding.
    close_port(&mut d, A, console).unwrap();
    assert_eq!(d.tables[0].raise_virq(A, 0, VIRQ_CONSOLE), None);
}

#[test]
fn bind_ipi_and_send() {
    let mut d = domains();
    let port = ipi(&mut d, A, 1).unwrap();
    assert_eq!(state(&d, A, port), Some(PortState::Ipi));
    assert_eq!(
        send_on(&mut d, A, port),
        Ok(Some(Deliver {
            domain: A,
            vcpu: 1,
            port
        }))
    );
    assert_eq!(ipi(&mut d, A, 2), Err(Errno::ENOENT));
    assert_eq!(ipi(&mut d, A, u32::MAX), Err(Errno::ENOENT));
    assert_eq!(ipi(&mut d, C, 1), Err(Errno::ENOENT));
    fill(&mut d, A);
    assert_eq!(ipi(&mut d, A, 0), Err(Errno::ENOSPC));
}

#[test]
fn send_rules() {
    let mut d = domains();
    assert_eq!(send_on(&mut d, A, Port(0)), Err(Errno::EINVAL), "reserved");
    assert_eq!(send_on(&mut d, A, Port(3)), Err(Errno::EINVAL), "free");
    assert_eq!(
        send_on(&mut d, A, Port(MAX_PORTS as u32)),
        Err(Errno::EINVAL)
    );
    assert_eq!(send_on(&mut d, A, Port(u32::MAX)), Err(Errno::EINVAL));
    let unbound = alloc(&mut d, A, B).unwrap();
    assert_eq!(send_on(&mut d, A, unbound), Ok(None), "dropped silently");
    let timer = virq(&mut d, A, VIRQ_TIMER, 0).unwrap();
    assert_eq!(send_on(&mut d, A, timer), Err(Errno::EINVAL), "VIRQ");
    let (pa, pb) = connect(&mut d, A, B);
    move_port(&mut d, B, pb, 1).unwrap();
    assert_eq!(
        send_on(&mut d, A, pa),
        Ok(Some(Deliver {
            domain: B,
            vcpu: 1,
            port: pb
        }))
    );
    assert_eq!(
        send_on(&mut d, B, pb),
        Ok(Some(Deliver {
            domain: A,
            vcpu: 0,
            port: pa
        }))
    );
}

#[test]
fn close_rules() {
    let mut d = domains();
    assert_eq!(close_port(&mut d, A, Port(0)), Err(Errno::EINVAL));
    assert_eq!(close_port(&mut d, A, Port(1)), Err(Errno::EINVAL));
    assert_eq!(
        close_port(&mut d, A, Port(MAX_PORTS as u32)),
        Err(Errno::EINVAL)
    );
    let (pa, pb) = connect(&mut d, A, B);
    move_port(&mut d, B, pb, 1).unwrap();
    move_port(&mut d, A, pa, 1).unwrap();
    assert_eq!(
        close_port(&mut d, A, pa),
        Ok(Some(Action::ClearPending {
            domain: A,
            port: pa
        }))
    );
    assert_eq!(state(&d, A, pa), Some(PortState::Free));
    assert_eq!(d.tables[0].notify_vcpu(pa), Some(0), "reset to vCPU 0");
    assert_eq!(
        state(&d, B, pb),
        Some(PortState::Unbound { remote_domain: A })
    );
    assert_eq!(d.tables[1].notify_vcpu(pb), Some(1), "peer keeps its vCPU");
    assert_eq!(close_port(&mut d, A, pa), Err(Errno::EINVAL), "twice");
    assert_eq!(send_on(&mut d, B, pb), Ok(None), "peer's sends are dropped");
    // The closer may bind the peer's port again.
    let again = bind(&mut d, A, B, pb).unwrap();
    assert_eq!(
        send_on(&mut d, B, pb),
        Ok(Some(Deliver {
            domain: A,
            vcpu: 0,
            port: again
        }))
    );
    // Unbound, IPI and VIRQ ports close.
    for port in [
        alloc(&mut d, C, A).unwrap(),
        ipi(&mut d, C, 0).unwrap(),
        virq(&mut d, C, VIRQ_TIMER, 0).unwrap(),
    ] {
        assert!(close_port(&mut d, C, port).is_ok());
        assert_eq!(state(&d, C, port), Some(PortState::Free));
    }
    assert_eq!(d.tables[2].ports_in_use(), 0);
}

#[test]
fn unmask_rules() {
    let mut d = domains();
    assert_eq!(
        unmask(
            &mut d,
            A,
            &Unmask {
                port: Port(MAX_PORTS as u32)
            }
        ),
        Err(Errno::EINVAL)
    );
    // Any port in range, even free (Xen unmasks whatever state).
    assert_eq!(
        unmask(&mut d, A, &Unmask { port: Port(9) }),
        Ok(Some(Action::Unmask {
            domain: A,
            vcpu: 0,
            port: Port(9)
        }))
    );
    let port = ipi(&mut d, A, 1).unwrap();
    let action = unmask(&mut d, A, &Unmask { port }).unwrap().unwrap();
    assert_eq!(action.vcpu(), Some(1));
    assert_eq!(action.domain(), A);
}

#[test]
fn status_reports_every_state() {
    let mut d = domains();
    let closed = status_of(&mut d, A, DOMID_SELF, Port(0)).unwrap();
    assert_eq!((closed.status, closed.vcpu), (STAT_CLOSED, 0));
    let unbound = alloc(&mut d, A, C).unwrap();
    let (pa, pb) = connect(&mut d, A, B);
    move_port(&mut d, A, pa, 1).unwrap();
    let timer = virq(&mut d, A, VIRQ_TIMER, 1).unwrap();
    let ipi_port = ipi(&mut d, A, 1).unwrap();

    let s = status_of(&mut d, A, A, unbound).unwrap();
    assert_eq!(
        (s.status, s.vcpu, s.u),
        (STAT_UNBOUND, 0, [u32::from(C), 0])
    );
    let s = status_of(&mut d, A, DOMID_SELF, pa).unwrap();
    assert_eq!(
        (s.status, s.vcpu, s.u),
        (STAT_INTERDOMAIN, 1, [u32::from(B), pb.0])
    );
    let s = status_of(&mut d, A, A, timer).unwrap();
    assert_eq!((s.status, s.vcpu, s.u), (STAT_VIRQ, 1, [VIRQ_TIMER, 0]));
    let s = status_of(&mut d, A, A, ipi_port).unwrap();
    assert_eq!((s.status, s.vcpu), (STAT_IPI, 1));

    // Only the union member is written: the upper half of u[0] is the guest's.
    let mut args = Status {
        dom: DOMID_SELF,
        port: unbound,
        u: [0xAAAA_AAAA, 0xBBBB_BBBB],
        ..Status::default()
    };
    status(&mut d, A, &mut args).unwrap();
    assert_eq!(args.u, [0xAAAA_0000 | u32::from(C), 0xBBBB_BBBB]);

    assert_eq!(status_of(&mut d, A, B, pb), Err(Errno::EPERM));
    assert_eq!(status_of(&mut d, A, 42, pa), Err(Errno::ESRCH));
    assert_eq!(
        status_of(&mut d, A, A, Port(MAX_PORTS as u32)),
        Err(Errno::EINVAL)
    );
    // Xen's order: the port is checked before permission.
    assert_eq!(
        status_of(&mut d, A, B, Port(MAX_PORTS as u32)),
        Err(Errno::EINVAL)
    );
}

#[test]
fn bind_vcpu_rules() {
    let mut d = domains();
    // The vCPU is checked first, even for a bad port.
    assert_eq!(move_port(&mut d, A, Port(u32::MAX), 2), Err(Errno::ENOENT));
    assert_eq!(move_port(&mut d, A, Port(u32::MAX), 1), Err(Errno::EINVAL));
    assert_eq!(move_port(&mut d, A, Port(0), 1), Err(Errno::EINVAL));
    assert_eq!(move_port(&mut d, A, Port(3), 1), Err(Errno::EINVAL), "free");
    let ipi_port = ipi(&mut d, A, 0).unwrap();
    assert_eq!(move_port(&mut d, A, ipi_port, 1), Err(Errno::EINVAL));
    let timer = virq(&mut d, A, VIRQ_TIMER, 0).unwrap();
    assert_eq!(move_port(&mut d, A, timer, 1), Err(Errno::EINVAL));
    let console = virq(&mut d, A, VIRQ_CONSOLE, 0).unwrap();
    assert_eq!(move_port(&mut d, A, console, 1), Ok(None));
    let unbound = alloc(&mut d, A, B).unwrap();
    assert_eq!(move_port(&mut d, A, unbound, 1), Ok(None));
    let (pa, _) = connect(&mut d, A, B);
    assert_eq!(move_port(&mut d, A, pa, 1), Ok(None));
    for port in [console, unbound, pa] {
        assert_eq!(d.tables[0].notify_vcpu(port), Some(1));
    }
    assert_eq!(d.tables[0].notify_vcpu(ipi_port), Some(0));
    assert_eq!(d.tables[0].notify_vcpu(timer), Some(0));
}

#[test]
fn failed_operations_change_nothing() {
    let mut d = domains();
    let (pa, _) = connect(&mut d, A, B);
    let before: Vec<PortTable> = d.tables.iter().map(|t| (**t).clone()).collect();
    let _ = alloc_unbound(
        &mut d,
        A,
        &mut AllocUnbound {
            dom: B,
            remote_dom: A,
            port: Port(0),
        },
    );
    let _ = bind(&mut d, C, A, pa);
    let _ = virq(&mut d, A, VIRQ_CONSOLE, 1);
    let _ = close_port(&mut d, A, Port(40));
    let _ = move_port(&mut d, A, Port(40), 1);
    let after: Vec<PortTable> = d.tables.iter().map(|t| (**t).clone()).collect();
    assert!(before == after);
}

#[test]
fn close_all_unbinds_and_notifies_peers() {
    let mut d = domains();
    let (pa, pb) = connect(&mut d, A, B);
    let (pc, pb2) = connect(&mut d, C, B);
    move_port(&mut d, B, pb2, 1).unwrap();
    let (other_a, other_c) = connect(&mut d, A, C);
    let loop_first = alloc(&mut d, B, DOMID_SELF).unwrap();
    bind(&mut d, B, B, loop_first).unwrap();
    let waiting_for_b = alloc(&mut d, A, B).unwrap();
    virq(&mut d, B, VIRQ_TIMER, 1).unwrap();
    ipi(&mut d, B, 0).unwrap();

    let notifications: Vec<Deliver> = close_all(&mut d, B).collect();
    assert_eq!(
        notifications,
        [
            Deliver {
                domain: A,
                vcpu: 0,
                port: pa
            },
            Deliver {
                domain: C,
                vcpu: 0,
                port: pc
            },
        ]
    );
    let _ = pb;
    assert_eq!(d.tables[1].ports_in_use(), 0);
    assert!(d.tables[1].is_dying());
    assert_eq!(d.tables[1].raise_virq(B, 1, VIRQ_TIMER), None);
    assert_eq!(
        state(&d, A, pa),
        Some(PortState::Unbound { remote_domain: B })
    );
    assert_eq!(
        state(&d, C, pc),
        Some(PortState::Unbound { remote_domain: B })
    );
    assert_eq!(
        state(&d, A, waiting_for_b),
        Some(PortState::Unbound { remote_domain: B }),
        "ports reserved for the dead domain stay, as in Xen"
    );
    // A channel not involving B is untouched.
    assert_eq!(
        state(&d, A, other_a),
        Some(PortState::Interdomain {
            remote_domain: C,
            remote_port: other_c.0 as u16
        })
    );
    // The dead domain allocates nothing; peers can close their ends.
    assert_eq!(alloc(&mut d, B, A), Err(Errno::EINVAL));
    assert_eq!(ipi(&mut d, B, 0), Err(Errno::EINVAL));
    assert_eq!(bind(&mut d, A, B, Port(1)), Err(Errno::EINVAL));
    assert_eq!(send_on(&mut d, A, pa), Ok(None));
    assert!(close_port(&mut d, A, pa).is_ok());
    // Unknown domain: nothing.
    assert!(close_all(&mut d, 30).is_empty());
}

#[test]
fn action_apply_on_shared_info() {
    let shared = SharedInfo::new();
    let vcpu = VcpuInfo::new();
    let port = Port(70);
    let deliver_action = Action::Deliver(Deliver {
        domain: A,
        vcpu: 0,
        port,
    });
    assert!(
        deliver_action.apply(&shared, Some(&vcpu)),
        "first event injects"
    );
    assert!(!deliver_action.apply(&shared, Some(&vcpu)), "coalesced");
    let mut seen = Vec::new();
    evtchn2l::for_each_pending(&shared, &vcpu, |p| seen.push(p));
    assert_eq!(seen, [port]);

    // Masked: pending stays, no upcall; EVTCHNOP_unmask then injects.
    evtchn2l::set_mask(&shared, port);
    assert!(!deliver(&shared, &vcpu, port));
    let unmask_action = Action::Unmask {
        domain: A,
        vcpu: 0,
        port,
    };
    assert!(unmask_action.apply(&shared, Some(&vcpu)));
    assert!(!evtchn2l::test_mask(&shared, port));

    // Close clears the pending bit.
    let clear = Action::ClearPending { domain: A, port };
    assert_eq!(clear.vcpu(), None);
    assert!(!clear.apply(&shared, None));
    assert!(!evtchn2l::test_pending(&shared, port));

    // No vcpu_info: only the bits change.
    assert!(!deliver_action.apply(&shared, None));
    assert!(evtchn2l::test_pending(&shared, port));
    evtchn2l::set_mask(&shared, port);
    assert!(!unmask_action.apply(&shared, None));
    assert!(!evtchn2l::test_mask(&shared, port));
}

/// A xorshift generator: deterministic, no external crates.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A channel end: sending on `port` of `sender` must deliver `expected`.
struct Route {
    sender: u16,
    port: Port,
    expected: Deliver,
}

impl Route {
    fn new((sender, port): (u16, Port), (domain, vcpu, target): (u16, u32, Port)) -> Route {
        Route {
            sender,
            port,
            expected: Deliver {
                domain,
                vcpu,
                port: target,
            },
        }
    }
}

/// One guest: its shared info and one `vcpu_info` per vCPU.
struct Guest {
    shared: Box<SharedInfo>,
    vcpus: Vec<VcpuInfo>,
}

/// Two domains with two vCPUs each exchange thousands of events over interdomain
/// channels (bound to both vCPUs) and IPIs. Every delivery is applied to real
/// `SharedInfo`/`VcpuInfo` structs with [`deliver`]; a vCPU walks its events with
/// `for_each_pending` only when it got the PPI. Every event sent is received on the
/// right (domain, vCPU, port), none is lost and none is invented.
#[test]
fn ping_pong_over_shared_info() {
    let mut d = InMemoryDomains::new(&[2, 2]);
    let guests: Vec<Guest> = (0..2)
        .map(|_| Guest {
            shared: Box::new(SharedInfo::new()),
            vcpus: (0..2).map(|_| VcpuInfo::new()).collect(),
        })
        .collect();
    // Ports notifying vCPU 1 sit in word 1 (ports 64..) so a vCPU's walk only sees its
    // own ports, as Linux's per-CPU masking arranges.
    let fillers: Vec<(u16, Port)> = [A, B]
        .into_iter()
        .flat_map(|dom| (0..63).map(move |_| dom))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|dom| (dom, ipi(&mut d, dom, 0).unwrap()))
        .collect();
    // channels[i] = (sender, sender port) -> expected (receiver, vcpu, port)
    let mut routes: Vec<Route> = Vec::new();
    for vcpu in [1u32, 0] {
        for _ in 0..3 {
            let (pa, pb) = connect(&mut d, A, B);
            move_port(&mut d, A, pa, vcpu).unwrap();
            move_port(&mut d, B, pb, vcpu).unwrap();
            routes.push(Route::new((A, pa), (B, vcpu, pb)));
            routes.push(Route::new((B, pb), (A, vcpu, pa)));
        }
        for dom in [A, B] {
            let port = ipi(&mut d, dom, vcpu).unwrap();
            routes.push(Route::new((dom, port), (dom, vcpu, port)));
        }
        if vcpu == 1 {
            for &(dom, port) in &fillers {
                close_port(&mut d, dom, port).unwrap();
            }
        }
    }
    // (The deliveries `bind_interdomain` asks for were not applied: nothing is pending.)
    for route in &routes {
        let Deliver {
            domain: dom,
            vcpu,
            port,
        } = route.expected;
        let in_word_1 = port.0 >= 64;
        assert_eq!(
            in_word_1,
            vcpu == 1,
            "port {port:?} of {dom} on vCPU {vcpu}"
        );
    }

    let mut rng = Rng(0x5EED_1234_ABCD_0001);
    let mut outstanding = [[[false; 128]; 2]; 2]; // [domain][vcpu][port]
    let mut interrupted = [[false; 2]; 2];
    let (mut sent, mut received, mut injections) = (0usize, 0usize, 0usize);
    for _step in 0..20_000 {
        let route = &routes[rng.below(routes.len() as u64) as usize];
        let delivery = send_on(&mut d, route.sender, route.port).unwrap().unwrap();
        assert_eq!(delivery, route.expected);
        let Deliver {
            domain: receiver,
            vcpu,
            port: target,
        } = delivery;
        sent += 1;
        let guest = &guests[usize::from(delivery.domain)];
        let vcpu_info = &guest.vcpus[delivery.vcpu as usize];
        if deliver(&guest.shared, vcpu_info, delivery.port) {
            injections += 1;
            interrupted[usize::from(delivery.domain)][delivery.vcpu as usize] = true;
        }
        outstanding[usize::from(receiver)][vcpu as usize][target.0 as usize] = true;
        // Sometimes let every interrupted vCPU run its upcall handler.
        if rng.below(4) == 0 {
            for dom in 0..2 {
                for v in 0..2 {
                    let expected = &mut outstanding[dom][v];
                    if !interrupted[dom][v] {
                        assert!(
                            expected.iter().all(|&p| !p),
                            "domain {dom} vCPU {v} has events but got no PPI"
                        );
                        continue;
                    }
                    interrupted[dom][v] = false;
                    let guest = &guests[dom];
                    evtchn2l::for_each_pending(&guest.shared, &guest.vcpus[v], |p| {
                        let slot = expected
                            .get_mut(p.0 as usize)
                            .unwrap_or_else(|| panic!("port {p:?} out of range"));
                        assert!(*slot, "domain {dom} vCPU {v}: unexpected port {p:?}");
                        *slot = false;
                        received += 1;
                    });
                    assert!(expected.iter().all(|&p| !p), "event lost");
                }
            }
        }
    }
    assert!(sent == 20_000 && received > 5_000 && injections > 1_000);
    assert!(received <= sent);
}

mod properties {
    use super::super::in_memory::InMemoryDomains;
    use super::super::*;
    use hypercall_abi::evtchn2l;
    use hypercall_abi::shared::{SharedInfo, VcpuInfo};
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        AllocUnbound {
            caller: u16,
            dom: u16,
            remote: u16,
        },
        BindInterdomain {
            caller: u16,
            remote: u16,
            port: u32,
        },
        BindVirq {
            caller: u16,
            virq: u32,
            vcpu: u32,
        },
        BindIpi {
            caller: u16,
            vcpu: u32,
        },
        Send {
            caller: u16,
            port: u32,
        },
        Close {
            caller: u16,
            port: u32,
        },
        Unmask {
            caller: u16,
            port: u32,
        },
        Status {
            caller: u16,
            dom: u16,
            port: u32,
        },
        BindVcpu {
            caller: u16,
            port: u32,
            vcpu: u32,
        },
        CloseAll {
            dom: u16,
        },
        /// `first` allocates a port for `second`, which binds it.
        Connect {
            first: u16,
            second: u16,
        },
    }

    fn domain() -> impl Strategy<Value = u16> {
        prop_oneof![8 => 0u16..3, 4 => Just(DOMID_SELF), 1 => Just(5u16)]
    }
    fn caller() -> impl Strategy<Value = u16> {
        0u16..3
    }
    fn port() -> impl Strategy<Value = u32> {
        prop_oneof![16 => 1u32..6, 4 => 0u32..24, 1 => Just(MAX_PORTS as u32 - 1), 1 => Just(MAX_PORTS as u32), 1 => Just(u32::MAX)]
    }
    fn vcpu() -> impl Strategy<Value = u32> {
        prop_oneof![8 => 0u32..4, 1 => Just(u32::MAX)]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            12 => (caller(), domain(), domain())
                .prop_map(|(caller, dom, remote)| Op::AllocUnbound { caller, dom, remote }),
            16 => (caller(), domain(), port())
                .prop_map(|(caller, remote, port)| Op::BindInterdomain { caller, remote, port }),
            4 => (caller(), prop_oneof![0u32..4, 0u32..30], vcpu())
                .prop_map(|(caller, virq, vcpu)| Op::BindVirq { caller, virq, vcpu }),
            4 => (caller(), vcpu()).prop_map(|(caller, vcpu)| Op::BindIpi { caller, vcpu }),
            12 => (caller(), port()).prop_map(|(caller, port)| Op::Send { caller, port }),
            6 => (caller(), port()).prop_map(|(caller, port)| Op::Close { caller, port }),
            2 => (caller(), port()).prop_map(|(caller, port)| Op::Unmask { caller, port }),
            2 => (caller(), domain(), port())
                .prop_map(|(caller, dom, port)| Op::Status { caller, dom, port }),
            4 => (caller(), port(), vcpu())
                .prop_map(|(caller, port, vcpu)| Op::BindVcpu { caller, port, vcpu }),
            1 => (0u16..3).prop_map(|dom| Op::CloseAll { dom }),
            8 => (caller(), caller()).prop_map(|(first, second)| Op::Connect { first, second }),
        ]
    }

    fn interdomain_ports(d: &InMemoryDomains) -> usize {
        d.tables
            .iter()
            .flat_map(|table| (0..MAX_PORTS as u32).map(move |p| table.state(Port(p))))
            .filter(|state| matches!(state, Some(PortState::Interdomain { .. })))
            .count()
    }

    /// The invariants every state reachable by guest operations keeps.
    fn check(d: &InMemoryDomains) -> Result<(), TestCaseError> {
        for (index, table) in d.tables.iter().enumerate() {
            let dom = index as u16;
            let vcpus = d.vcpus[index];
            prop_assert_eq!(table.state(Port(0)), Some(PortState::Free));
            if table.is_dying() {
                prop_assert_eq!(table.ports_in_use(), 0);
            }
            let mut virq_refs = 0;
            for p in 0..MAX_PORTS as u32 {
                let state = table.state(Port(p)).unwrap();
                let notify = table.notify_vcpu(Port(p)).unwrap();
                match state {
                    PortState::Free => prop_assert_eq!(notify, 0),
                    _ => prop_assert!(notify < vcpus, "dom {} port {} vcpu {}", dom, p, notify),
                }
                match state {
                    PortState::Interdomain {
                        remote_domain,
                        remote_port,
                    } => {
                        // Bound iff the peer points back.
                        prop_assert_ne!(remote_port, 0);
                        let peer = &d.tables[usize::from(remote_domain)];
                        prop_assert!(!peer.is_dying() || remote_domain == dom);
                        prop_assert_eq!(
                            peer.state(Port(u32::from(remote_port))),
                            Some(PortState::Interdomain {
                                remote_domain: dom,
                                remote_port: p as u16
                            }),
                            "dom {} port {}",
                            dom,
                            p
                        );
                    }
                    PortState::Virq { virq } => {
                        virq_refs += 1;
                        let row = if virq_is_global(u32::from(virq)) {
                            0
                        } else {
                            notify
                        };
                        prop_assert_eq!(
                            table.virq_ports[row as usize][usize::from(virq)],
                            p as u16
                        );
                    }
                    _ => {}
                }
            }
            // The VIRQ index refers only to VIRQ ports, each once.
            let mut entries = 0;
            for (row, virqs) in table.virq_ports.iter().enumerate() {
                for (virq, &p) in virqs.iter().enumerate() {
                    if p == 0 {
                        continue;
                    }
                    entries += 1;
                    prop_assert_eq!(
                        table.state(Port(u32::from(p))),
                        Some(PortState::Virq { virq: virq as u8 })
                    );
                    if virq_is_global(virq as u32) {
                        prop_assert_eq!(row, 0);
                    } else {
                        prop_assert_eq!(table.notify_vcpu(Port(u32::from(p))), Some(row as u32));
                    }
                }
            }
            prop_assert_eq!(entries, virq_refs);
        }
        Ok(())
    }

    fn snapshot(d: &InMemoryDomains) -> Vec<PortTable> {
        d.tables.iter().map(|t| (**t).clone()).collect()
    }

    /// Runs `op`, checks what it did and the invariants, and returns the shared-info work
    /// it asks for (its [`Action`], or the notifications of a domain's peers).
    fn run(d: &mut InMemoryDomains, op: &Op) -> Result<Vec<Action>, TestCaseError> {
        let before = snapshot(d);
        let mut notifications = Vec::new();
        let result = match *op {
            Op::AllocUnbound {
                caller,
                dom,
                remote,
            } => {
                let mut args = AllocUnbound {
                    dom,
                    remote_dom: remote,
                    port: Port(0),
                };
                alloc_unbound(d, caller, &mut args)
            }
            Op::BindInterdomain {
                caller,
                remote,
                port,
            } => {
                let mut args = BindInterdomain {
                    remote_dom: remote,
                    remote_port: Port(port),
                    local_port: Port(0),
                };
                let result = bind_interdomain(d, caller, &mut args);
                if result.is_ok() {
                    let remote = if remote == DOMID_SELF { caller } else { remote };
                    prop_assert_eq!(
                        d.tables[usize::from(remote)].state(Port(port)),
                        Some(PortState::Interdomain {
                            remote_domain: caller,
                            remote_port: args.local_port.0 as u16
                        })
                    );
                }
                result
            }
            Op::BindVirq { caller, virq, vcpu } => {
                let mut args = BindVirq {
                    virq,
                    vcpu,
                    port: Port(0),
                };
                let result = bind_virq(d, caller, &mut args);
                if result.is_ok() {
                    let raised = d.tables[usize::from(caller)].raise_virq(caller, vcpu, virq);
                    prop_assert_eq!(
                        raised,
                        Some(Deliver {
                            domain: caller,
                            vcpu,
                            port: args.port
                        })
                    );
                }
                result
            }
            Op::BindIpi { caller, vcpu } => bind_ipi(
                d,
                caller,
                &mut BindIpi {
                    vcpu,
                    port: Port(0),
                },
            ),
            Op::Send { caller, port } => {
                let result = send(d, caller, &Send { port: Port(port) });
                if let Ok(Some(Action::Deliver(deliver))) = result {
                    // The target is the peer (or the IPI port itself), at its notify vCPU.
                    let target = &d.tables[usize::from(deliver.domain)];
                    prop_assert_eq!(target.notify_vcpu(deliver.port), Some(deliver.vcpu));
                    match target.state(deliver.port) {
                        Some(PortState::Ipi) => {
                            prop_assert_eq!((deliver.domain, deliver.port), (caller, Port(port)));
                        }
                        Some(PortState::Interdomain {
                            remote_domain,
                            remote_port,
                        }) => {
                            prop_assert_eq!(
                                (remote_domain, u32::from(remote_port)),
                                (caller, port)
                            );
                        }
                        other => prop_assert!(false, "delivered to {:?}", other),
                    }
                }
                result
            }
            Op::Close { caller, port } => {
                let peer = d
                    .tables
                    .get(usize::from(caller))
                    .and_then(|table| table.state(Port(port)));
                let result = close(d, caller, &Close { port: Port(port) });
                if result.is_ok() {
                    // A closed port is free; an interdomain peer is left unbound, waiting
                    // for this domain again.
                    prop_assert_eq!(
                        d.tables[usize::from(caller)].state(Port(port)),
                        Some(PortState::Free)
                    );
                    if let Some(PortState::Interdomain {
                        remote_domain,
                        remote_port,
                    }) = peer
                    {
                        if (remote_domain, u32::from(remote_port)) != (caller, port) {
                            prop_assert_eq!(
                                d.tables[usize::from(remote_domain)]
                                    .state(Port(u32::from(remote_port))),
                                Some(PortState::Unbound {
                                    remote_domain: caller
                                })
                            );
                        }
                    }
                }
                result
            }
            Op::Unmask { caller, port } => unmask(d, caller, &Unmask { port: Port(port) }),
            Op::Status { caller, dom, port } => {
                let mut args = Status {
                    dom,
                    port: Port(port),
                    ..Status::default()
                };
                status(d, caller, &mut args)
            }
            Op::BindVcpu { caller, port, vcpu } => bind_vcpu(
                d,
                caller,
                &BindVcpu {
                    port: Port(port),
                    vcpu,
                },
            ),
            Op::Connect { first, second } => {
                let mut args = AllocUnbound {
                    dom: DOMID_SELF,
                    remote_dom: second,
                    port: Port(0),
                };
                let result = alloc_unbound(d, first, &mut args);
                if result.is_ok() {
                    check(d)?;
                    let bind = Op::BindInterdomain {
                        caller: second,
                        remote: first,
                        port: args.port.0,
                    };
                    return run(d, &bind);
                }
                result
            }
            Op::CloseAll { dom } => {
                let peers: Vec<Deliver> = close_all(d, dom).collect();
                notifications.extend(peers.iter().copied().map(Action::Deliver));
                for peer in &peers {
                    prop_assert_ne!(peer.domain, dom);
                    prop_assert_eq!(
                        d.tables[usize::from(peer.domain)].state(peer.port),
                        Some(PortState::Unbound { remote_domain: dom })
                    );
                    prop_assert_eq!(
                        d.tables[usize::from(peer.domain)].notify_vcpu(peer.port),
                        Some(peer.vcpu)
                    );
                }
                // Nothing anywhere is still connected to the dead domain.
                for table in &d.tables {
                    for p in 0..MAX_PORTS as u32 {
                        if let Some(PortState::Interdomain { remote_domain, .. }) =
                            table.state(Port(p))
                        {
                            prop_assert_ne!(remote_domain, dom);
                        }
                    }
                }
                Ok(None)
            }
        };
        if result.is_err() {
            prop_assert!(snapshot(d) == before, "a failed {:?} changed state", op);
        }
        check(d)?;
        notifications.extend(result.ok().flatten());
        Ok(notifications)
    }

    /// Each domain's shared-info page and its vCPUs' `vcpu_info`, as the hypervisor keeps
    /// them, with the actions of the operations applied.
    struct Pages {
        shared: Vec<SharedInfo>,
        vcpu_info: Vec<Vec<VcpuInfo>>,
    }

    impl Pages {
        fn new(vcpus: &[u32]) -> Pages {
            Pages {
                shared: vcpus.iter().map(|_| SharedInfo::new()).collect(),
                vcpu_info: vcpus
                    .iter()
                    .map(|&count| (0..count).map(|_| VcpuInfo::new()).collect())
                    .collect(),
            }
        }

        fn apply(&self, d: &InMemoryDomains, action: &Action) -> Result<(), TestCaseError> {
            let domain = usize::from(action.domain());
            prop_assert!(domain < d.tables.len(), "{:?} names no domain", action);
            let vcpu_info = match action.vcpu() {
                Some(vcpu) => {
                    prop_assert!(vcpu < d.vcpus[domain], "{:?} names no vCPU", action);
                    self.vcpu_info[domain].get(vcpu as usize)
                }
                None => None,
            };
            action.apply(&self.shared[domain], vcpu_info);
            Ok(())
        }

        /// Pending bits only on ports in use (a dying domain's own bits are left as Xen
        /// leaves them); a selector bit only where a word holds a pending unmasked port.
        fn check(&self, d: &InMemoryDomains) -> Result<(), TestCaseError> {
            for (index, table) in d.tables.iter().enumerate() {
                if table.is_dying() {
                    continue;
                }
                let shared = &self.shared[index];
                for (word, bits) in shared.evtchn_pending.iter().enumerate() {
                    let mut bits = bits.load(core::sync::atomic::Ordering::Relaxed);
                    while bits != 0 {
                        let p = word as u32 * 64 + bits.trailing_zeros();
                        bits &= bits - 1;
                        prop_assert!(evtchn2l::test_pending(shared, Port(p)));
                        prop_assert_ne!(
                            table.state(Port(p)),
                            Some(PortState::Free),
                            "dom {} port {} pending but free",
                            index,
                            p
                        );
                    }
                }
            }
            Ok(())
        }
    }

    /// The generator reaches the interesting states: a fixed-seed run of the same
    /// operations binds channels, delivers across domains and kills domains with peers.
    #[test]
    fn generator_reaches_bound_states() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;

        let mut runner = TestRunner::deterministic();
        let strategy = op();
        let (mut bound, mut delivered, mut peers_notified) = (0, 0, 0);
        for _round in 0..200 {
            let mut d = InMemoryDomains::new(&[2, 3, 1]);
            for _ in 0..60 {
                let op = strategy.new_tree(&mut runner).unwrap().current();
                match op {
                    Op::BindInterdomain {
                        caller,
                        remote,
                        port,
                    } => {
                        let mut args = BindInterdomain {
                            remote_dom: remote,
                            remote_port: Port(port),
                            local_port: Port(0),
                        };
                        if bind_interdomain(&mut d, caller, &mut args).is_ok() {
                            bound += 1;
                        }
                    }
                    Op::Send { caller, port } => {
                        if let Ok(Some(Action::Deliver(deliver))) =
                            send(&mut d, caller, &Send { port: Port(port) })
                        {
                            if deliver.domain != caller {
                                delivered += 1;
                            }
                        }
                    }
                    Op::CloseAll { dom } => peers_notified += close_all(&mut d, dom).len(),
                    Op::Connect { .. } => {
                        let before = interdomain_ports(&d);
                        run(&mut d, &op).unwrap();
                        if interdomain_ports(&d) > before {
                            bound += 1;
                        }
                    }
                    other => {
                        run(&mut d, &other).unwrap();
                    }
                }
            }
            check(&d).unwrap();
        }
        assert!(bound > 500, "{bound} binds");
        assert!(delivered > 100, "{delivered} cross-domain deliveries");
        assert!(peers_notified > 50, "{peers_notified} peers notified");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn random_operations_keep_invariants(
            vcpus in prop::collection::vec(1u32..4, 2..=3),
            ops in prop::collection::vec(op(), 1..120),
        ) {
            let mut d = InMemoryDomains::new(&vcpus);
            for op in &ops {
                // Operations naming a domain beyond this run's count hit -ESRCH paths.
                run(&mut d, op)?;
            }
        }
    }

    proptest! {
        // Applying every action costs more per case; fewer cases keep `cargo test` quick.
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// The same sequences with every action applied to the domains' shared-info pages
        /// (as `Hypervisor::carry_out_event` does): events land only on ports in use, at
        /// existing vCPUs, and a closed port's stale pending bit is gone.
        #[test]
        fn pending_bits_stay_on_live_ports(
            vcpus in prop::collection::vec(1u32..4, 2..=3),
            ops in prop::collection::vec(op(), 1..120),
        ) {
            let mut d = InMemoryDomains::new(&vcpus);
            let pages = Pages::new(&vcpus);
            for op in &ops {
                for action in run(&mut d, op)? {
                    pages.apply(&d, &action)?;
                }
                pages.check(&d)?;
            }
        }
    }
}
