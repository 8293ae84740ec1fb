//! Host tests of domain lifecycle under faults (a child module of `hypervisor`): a domain
//! built from a boot pack crashes in each way (unhandled exception, SCHEDOP_shutdown with
//! SHUTDOWN_crash, watchdog expiry), is torn down with nothing leaked, its channel peer is
//! notified, and with `on_crash = restart` it comes back from its entry, fresh, with the
//! channel bound again, until its restart limit.

extern crate std;

use super::*;
use crate::addr::{AddrRange, PhysAddr};
use crate::arch::fake;
use crate::bootpack::{encode, BootPack, Channel, DomainSettings, DomainSpec, OnCrash};
use crate::domain_dt::{layout, GuestGic};
use crate::esr::GuestExit;
use crate::event_channel::PortState;
use crate::mm::FrameAllocator;
use hypercall_abi::errno::Errno;
use hypercall_abi::event_channel_op::Port;
use hypercall_abi::hypercall as number;
use std::vec::Vec;

const POOL_BASE: u64 = fake::FAKE_RAM_BASE + 0x0400_0000;
const POOL_SIZE: u64 = 0x0400_0000;
const VICTIM: usize = 0;
const CRASHER: usize = 1;

fn image() -> Vec<u8> {
    let mut image = std::vec![0u8; 4096];
    image[16..24].copy_from_slice(&4096u64.to_le_bytes());
    image[56..60].copy_from_slice(b"ARM\x64");
    image
}

fn gic(_vcpus: u32) -> GuestGic {
    GuestGic::standard_v2()
}

struct Booted {
    hypervisor: std::boxed::Box<Hypervisor>,
    cpu: CpuState,
    pool_bytes: u64,
    _guard: std::sync::MutexGuard<'static, ()>,
}

/// A pack of two 8 MiB domains with a channel between them: `victim` (destroy) and
/// `crasher` (restart, at most `max_restarts` times), leaked so it lives as the boot
/// pack does.
fn pack(max_restarts: u32, memory_mib: u32) -> BootPack<'static> {
    let image = image();
    let specs = [
        DomainSpec {
            name: "victim",
            memory_mib,
            vcpus: 1,
            image: &image,
            initrd: &[],
            cmdline: "victim",
            settings: DomainSettings::default(),
        },
        DomainSpec {
            name: "crasher",
            memory_mib,
            vcpus: 1,
            image: &image,
            initrd: &[],
            cmdline: "crashloop",
            settings: DomainSettings {
                on_crash: OnCrash::Restart,
                max_restarts,
                ..DomainSettings::default()
            },
        },
    ];
    let mut out = std::vec![0u8; 1 << 16];
    let size = encode(&specs, &[Channel { a: 0, b: 1 }], &mut out).unwrap();
    out.truncate(size);
    BootPack::parse(std::boxed::Box::leak(out.into_boxed_slice())).unwrap()
}

fn boot(pack: BootPack<'static>) -> (Booted, Result<(), &'static str>) {
    let guard = fake::guest_translation_lock();
    let pool = [AddrRange::new(PhysAddr::new(POOL_BASE), POOL_SIZE)];
    let frames = FrameAllocator::new(&pool, &[]).unwrap();
    let pool_bytes = frames.free_bytes();
    let mut hypervisor = Hypervisor::boxed();
    hypervisor.set_up(frames, true, 1, 1_000_000).unwrap();
    let built = hypervisor.build_pack(pack, gic, 1);
    let cpu = CpuState::new(0);
    let booted = Booted {
        hypervisor,
        cpu,
        pool_bytes,
        _guard: guard,
    };
    (booted, built)
}

/// Handles an exit as `handle_guest_exit` does (`exit_and_enter`: the entry's shortcut
/// checks itself in debug builds).
fn exit(booted: &mut Booted, exit: GuestExit) -> Next {
    let next = booted.hypervisor.exit_and_enter(&mut booted.cpu, exit, 0);
    // Every crash, teardown and rebuild keeps the alive mask true to the slots.
    assert!(booted.hypervisor.alive_mask_is_true());
    next
}

fn hypercall(booted: &mut Booted, call: u64, args: [u64; 5]) -> Next {
    booted.cpu.frame.x[16] = call;
    booted.cpu.frame.x[..5].copy_from_slice(&args);
    exit(booted, GuestExit::Hypercall { immediate: 0xea1 })
}

/// Yields until the crasher runs on the CPU.
fn run_crasher(booted: &mut Booted) {
    for _ in 0..8 {
        if booted.cpu.current.is_some_and(|id| id.domain == CRASHER) {
            return;
        }
        if booted.cpu.current.is_none() {
            booted.hypervisor.schedule(&mut booted.cpu);
        } else {
            hypercall(booted, number::SCHED_OP, [0, 0, 0, 0, 0]);
        }
    }
    panic!("the crasher never ran");
}

/// Puts `bytes` at the crasher's first RAM page, which guest VA 0x1000 maps.
fn argument(booted: &Booted, bytes: &[u8]) -> PhysAddr {
    let ram = booted.hypervisor.domain(CRASHER).unwrap().ram.start;
    fake::set_guest_translation(&[(0x1000, ram.raw(), true, false)]);
    // SAFETY: the crasher's first RAM page, in fake RAM, which nothing else uses now.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), arch::phys_to_virt(ram), bytes.len()) };
    ram
}

/// The crasher crashes the way `kind` (0, 1, 2) says.
fn crash(booted: &mut Booted, kind: usize) {
    run_crasher(booted);
    match kind {
        0 => {
            exit(booted, GuestExit::Unhandled { class: 0x3f });
        }
        1 => {
            argument(booted, &3u32.to_le_bytes()); // SHUTDOWN_crash
            hypercall(booted, number::SCHED_OP, [2, 0x1000, 0, 0, 0]);
        }
        _ => {
            argument(booted, &[0, 0, 0, 0, 1, 0, 0, 0]); // {id 0, timeout 1 s}
            hypercall(booted, number::SCHED_OP, [6, 0x1000, 0, 0, 0]);
            assert_eq!(booted.cpu.frame.x[0], 1, "the new watchdog's id");
            let deadline = booted.hypervisor.domain(CRASHER).unwrap().watchdogs[0].unwrap();
            assert!(fake::timer_deadline().is_some_and(|armed| armed <= deadline));
            // Not yet expired: nothing happens.
            booted
                .hypervisor
                .expire_watchdogs(&mut booted.cpu, deadline - 1);
            assert_eq!(booted.hypervisor.restarts(CRASHER), booted.restarts_seen());
            booted
                .hypervisor
                .expire_watchdogs(&mut booted.cpu, deadline);
            let next = booted.hypervisor.tick(&mut booted.cpu);
            booted.hypervisor.settle(&mut booted.cpu, next);
        }
    }
}

impl Booted {
    fn restarts_seen(&self) -> u32 {
        self.hypervisor.restarts(CRASHER)
    }

    fn victim_pending(&self, port: u32) -> bool {
        let victim = self.hypervisor.domain(VICTIM).unwrap();
        hypercall_abi::evtchn2l::test_pending(victim.shared_info(), Port(port))
    }

    fn clear_victim_pending(&self, port: u32) {
        let victim = self.hypervisor.domain(VICTIM).unwrap();
        hypercall_abi::evtchn2l::clear_pending(victim.shared_info(), Port(port));
    }

    fn crasher_restarts_in_device_tree(&self) -> Option<u32> {
        let crasher = self.hypervisor.domain(CRASHER)?;
        let tree = crasher
            .ram
            .start
            .add(crasher.ram.size - layout::DT_OFFSET_FROM_END);
        // SAFETY: the device-tree area of the crasher's RAM, in fake RAM.
        let bytes = unsafe {
            core::slice::from_raw_parts(
                arch::phys_to_virt(tree).cast_const(),
                layout::DT_OFFSET_FROM_END as usize,
            )
        };
        let fdt = crate::dt::Fdt::new(bytes).ok()?;
        fdt.find_node("/hypervisor")?.property_u32("hyp,restarts")
    }
}

#[test]
fn a_crashing_domain_restarts_100_times_then_is_destroyed_and_nothing_leaks() {
    let (mut booted, built) = boot(pack(100, 8));
    built.unwrap();
    assert_eq!(booted.hypervisor.schedule(&mut booted.cpu), Next::Resume);
    let free_after_boot = booted.hypervisor.free_bytes();
    // The channel is port 1 at both ends, and the console port 2.
    let connected = PortState::Interdomain {
        remote_domain: CRASHER as u16,
        remote_port: 1,
    };
    assert_eq!(
        booted.hypervisor.ports[VICTIM].state(Port(1)),
        Some(connected)
    );
    assert_eq!(booted.crasher_restarts_in_device_tree(), Some(0));
    for restart in 1..=100u32 {
        // Something the old incarnation leaves in its memory.
        let ram = argument(&booted, &[0xa5; 64]);
        booted.clear_victim_pending(1);
        crash(&mut booted, restart as usize % 3);
        let crasher = booted
            .hypervisor
            .domain(CRASHER)
            .unwrap_or_else(|| panic!("restart {restart}: not restarted"));
        assert_eq!(crasher.state, DomainState::Alive);
        assert_eq!(booted.hypervisor.restarts(CRASHER), restart);
        assert_eq!(booted.crasher_restarts_in_device_tree(), Some(restart));
        assert_eq!(
            booted.hypervisor.free_bytes(),
            free_after_boot,
            "restart {restart} leaked or lost memory"
        );
        // Fresh memory: nothing of the old incarnation is left where it was.
        let new_ram = booted.hypervisor.domain(CRASHER).unwrap().ram.start;
        // SAFETY: reads the first bytes of fake RAM the old or new incarnation owned.
        let (old, new) = unsafe {
            (
                *arch::phys_to_virt(ram).cast_const(),
                *arch::phys_to_virt(new_ram).cast_const(),
            )
        };
        assert_eq!((old, new), (0, 0), "scrubbed and zeroed");
        // The victim was told (its end went unbound, then connected again with an event)
        // and keeps running.
        assert!(
            booted.victim_pending(1),
            "restart {restart}: victim notified"
        );
        assert_eq!(
            booted.hypervisor.ports[VICTIM].state(Port(1)),
            Some(connected)
        );
        assert_eq!(
            booted.hypervisor.ports[CRASHER].state(Port(1)),
            Some(PortState::Interdomain {
                remote_domain: VICTIM as u16,
                remote_port: 1
            })
        );
        assert!(booted.hypervisor.domain(CRASHER).unwrap().console_port == Some(2));
        assert_eq!(
            booted.hypervisor.domain(VICTIM).unwrap().state,
            DomainState::Alive
        );
    }
    // The 101st crash ends it for good: the victim's end stays unbound.
    booted.clear_victim_pending(1);
    crash(&mut booted, 0);
    assert!(booted.hypervisor.domain(CRASHER).is_none());
    assert!(booted.victim_pending(1));
    assert_eq!(
        booted.hypervisor.ports[VICTIM].state(Port(1)),
        Some(PortState::Unbound {
            remote_domain: CRASHER as u16
        })
    );
    // The victim powers off: every byte is back, and the crasher counts once as unclean.
    let current = booted.cpu.current.unwrap();
    assert_eq!(current.domain, VICTIM);
    let ram = booted.hypervisor.domain(VICTIM).unwrap().ram.start;
    fake::set_guest_translation(&[(0x1000, ram.raw(), true, false)]);
    // SAFETY: sched_shutdown argument {reason = poweroff} in the victim's first page.
    unsafe { core::ptr::write_bytes(arch::phys_to_virt(ram), 0, 4) };
    assert_eq!(
        hypercall(&mut booted, number::SCHED_OP, [2, 0x1000, 0, 0, 0]),
        Next::Halt
    );
    assert_eq!(booted.hypervisor.free_bytes(), booted.pool_bytes);
    assert_eq!(
        (booted.hypervisor.unclean, booted.hypervisor.started),
        (1, 2)
    );
}

#[test]
fn destroy_policy_and_clean_shutdowns_do_not_restart() {
    let (mut booted, built) = boot(pack(3, 8));
    built.unwrap();
    booted.hypervisor.schedule(&mut booted.cpu);
    // The crasher powers off: restart is for crashes only.
    run_crasher(&mut booted);
    argument(&booted, &0u32.to_le_bytes());
    hypercall(&mut booted, number::SCHED_OP, [2, 0x1000, 0, 0, 0]);
    assert!(booted.hypervisor.domain(CRASHER).is_none());
    assert_eq!(booted.hypervisor.restarts(CRASHER), 0);
    // The victim (destroy) crashes: gone, and all memory is back.
    assert_eq!(booted.cpu.current.unwrap().domain, VICTIM);
    assert_eq!(
        exit(&mut booted, GuestExit::Unhandled { class: 0x3f }),
        Next::Halt
    );
    assert_eq!(booted.hypervisor.free_bytes(), booted.pool_bytes);
}

#[test]
fn watchdogs_follow_xen_through_the_hypercall() {
    let (mut booted, built) = boot(pack(0, 8));
    built.unwrap();
    booted.hypervisor.schedule(&mut booted.cpu);
    run_crasher(&mut booted);
    let call = |booted: &mut Booted, id: u32, timeout: u32| {
        let mut bytes = id.to_le_bytes().to_vec();
        bytes.extend_from_slice(&timeout.to_le_bytes());
        argument(booted, &bytes);
        hypercall(booted, number::SCHED_OP, [6, 0x1000, 0, 0, 0]);
        booted.cpu.frame.x[0]
    };
    assert_eq!(call(&mut booted, 0, 10), 1);
    assert_eq!(call(&mut booted, 0, 10), 2);
    assert_eq!(call(&mut booted, 0, 10), Errno::ENOSPC.to_return());
    assert_eq!(call(&mut booted, 2, 0), 0, "destroyed");
    assert_eq!(call(&mut booted, 2, 5), Errno::EINVAL.to_return());
    assert_eq!(call(&mut booted, 3, 5), Errno::EINVAL.to_return());
    assert_eq!(call(&mut booted, 1, 20), 0, "re-armed");
    let deadline = booted.hypervisor.domain(CRASHER).unwrap().watchdogs[0].unwrap();
    assert_eq!(booted.hypervisor.earliest_deadline(), Some(deadline));
    // A bad pointer is -EFAULT, not a crash.
    hypercall(&mut booted, number::SCHED_OP, [6, 0xdead_0000, 0, 0, 0]);
    assert_eq!(booted.cpu.frame.x[0], Errno::EFAULT.to_return());
    // Expiry shuts it down with SHUTDOWN_watchdog; restarted (no limit), no watchdog left.
    booted
        .hypervisor
        .expire_watchdogs(&mut booted.cpu, deadline);
    assert_eq!(
        booted.hypervisor.restarts(CRASHER),
        0,
        "rebuilt only when settled"
    );
    let next = booted.hypervisor.tick(&mut booted.cpu);
    booted.hypervisor.settle(&mut booted.cpu, next);
    assert_eq!(booted.hypervisor.restarts(CRASHER), 1);
    assert_eq!(booted.hypervisor.earliest_deadline(), None);
}

#[test]
fn a_pack_that_cannot_start_whole_starts_nothing() {
    // Two 48 MiB domains in a 64 MiB pool: the first would fit, the pair does not.
    let (booted, built) = boot(pack(0, 48));
    assert_eq!(
        built,
        Err("the boot pack cannot start on this machine; no domain started")
    );
    assert!(booted.hypervisor.domain(VICTIM).is_none());
    assert!(booted.hypervisor.domain(CRASHER).is_none());
    assert_eq!(booted.hypervisor.free_bytes(), booted.pool_bytes);
    assert_eq!(booted.hypervisor.started, 0);
}

#[test]
fn a_restarted_granter_takes_its_pages_back_and_its_new_memory_is_its_own() {
    use hypercall_abi::grant_table_op as gnttab;
    const HOST: u64 = layout::GNTTAB_BASE + 0x10_0000;
    const GRANTED: u64 = layout::RAM_BASE + 0x30_0000;
    let (mut booted, built) = boot(pack(1, 8));
    built.unwrap();
    booted.hypervisor.schedule(&mut booted.cpu);
    // The crasher grants the victim a page of its RAM, writable; the victim maps it.
    booted
        .hypervisor
        .domain(CRASHER)
        .unwrap()
        .grants
        .entry(8)
        .unwrap()
        .grant(VICTIM as u16, (GRANTED >> 12) as u32, false);
    let mut op = gnttab::MapGrantRef {
        host_addr: HOST,
        flags: gnttab::GNTMAP_HOST_MAP,
        r#ref: 8,
        dom: CRASHER as u16,
        ..Default::default()
    };
    let hypervisor = &mut booted.hypervisor;
    crate::grant_table::map(
        &mut hypervisor.domains,
        &mut hypervisor.frames,
        VICTIM,
        &mut op,
    );
    assert_eq!(op.status, gnttab::GNTST_OKAY);
    // (The mapping took a stage-2 table page of the victim's.)
    let free_after_map = booted.hypervisor.free_bytes();
    let granted = {
        let crasher = booted.hypervisor.domain(CRASHER).unwrap();
        crasher.ram.start.add(GRANTED - layout::RAM_BASE)
    };
    let victim_view = |booted: &Booted| {
        booted
            .hypervisor
            .domain(VICTIM)
            .unwrap()
            .stage2
            .translate(crate::addr::IntermediatePhysAddr::new(HOST))
            .unwrap()
            .0
    };
    assert_eq!(victim_view(&booted), granted);
    // The crasher crashes and is restarted: the victim's mapping now shows its sink page,
    // not the page the new incarnation owns.
    crash(&mut booted, 0);
    assert_eq!(booted.hypervisor.restarts(CRASHER), 1);
    let victim = booted.hypervisor.domain(VICTIM).unwrap();
    assert_eq!(victim_view(&booted), victim.grants.sink());
    assert!(victim.grants.mapping(op.handle).unwrap().withdrawn);
    let crasher = booted.hypervisor.domain(CRASHER).unwrap();
    assert!(!crasher.ram.contains(victim_view(&booted)));
    assert_eq!(booted.hypervisor.free_bytes(), free_after_map);
}
