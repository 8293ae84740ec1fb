//! Host tests of the exit path: a domain built in fake RAM makes hypercalls, faults and
//! shuts down, and the hypervisor answers as Xen would and leaks nothing.

extern crate std;

use super::*;
use crate::addr::{AddrRange, PhysAddr};
use crate::addr::{GuestVirtAddr, IntermediatePhysAddr};
use crate::arch::fake;
use crate::bootpack::DomainImage;
use crate::domain_dt::{layout, GuestGic};
use crate::esr::{Abort, EmulatableAccess, FaultKind, GuestExit};
use crate::vcpu::{GuestRegisters, RunState};
use crate::virtual_interrupts::{self, LockFreeRead};
use hypercall_abi::errno::Errno;
use hypercall_abi::event_channel_op::Port;
use hypercall_abi::hypercall as number;
use std::vec::Vec;

const POOL_BASE: u64 = fake::FAKE_RAM_BASE + 0x0400_0000;
const POOL_SIZE: u64 = 0x0400_0000;

fn image() -> Vec<u8> {
    let mut image = std::vec![0u8; 4096];
    image[8..16].copy_from_slice(&0u64.to_le_bytes()); // text_offset
    image[16..24].copy_from_slice(&4096u64.to_le_bytes()); // image_size
    image[24..32].copy_from_slice(&0xau64.to_le_bytes());
    image[56..60].copy_from_slice(b"ARM\x64");
    image
}

fn gic() -> GuestGic {
    GuestGic::V2 {
        distributor: AddrRange::new(IntermediatePhysAddr::new(layout::GICD_BASE), 0x1000),
        cpu_interface: AddrRange::new(IntermediatePhysAddr::new(layout::GICC_BASE), 0x2000),
    }
}

pub(super) struct Setup {
    pub(super) hypervisor: std::boxed::Box<Hypervisor>,
    pub(super) cpu: CpuState,
    pub(super) free_before: u64,
    _guard: std::sync::MutexGuard<'static, ()>,
}

pub(super) fn setup(names: &[&str]) -> Setup {
    setup_with_vcpus(names, 1)
}

fn setup_with_vcpus(names: &[&str], vcpus: u32) -> Setup {
    setup_with_gic(names, vcpus, gic())
}

/// A GICv3 domain's frames: the distributor and `vcpus` redistributors.
fn gic_v3(vcpus: u32) -> GuestGic {
    GuestGic::V3 {
        distributor: AddrRange::new(
            IntermediatePhysAddr::new(layout::GICD_BASE),
            layout::GICD_SIZE_V3,
        ),
        redistributors: AddrRange::new(
            IntermediatePhysAddr::new(layout::GICR_BASE),
            u64::from(vcpus) * layout::GICR_SIZE_PER_VCPU,
        ),
    }
}

fn setup_with_gic(names: &[&str], vcpus: u32, guest_gic: GuestGic) -> Setup {
    let guard = fake::guest_translation_lock();
    let pool = [AddrRange::new(PhysAddr::new(POOL_BASE), POOL_SIZE)];
    let frames = FrameAllocator::new(&pool, &[]).unwrap();
    let free_before = frames.free_bytes();
    let mut hypervisor = Hypervisor::boxed();
    hypervisor.set_up(frames, true, 1, 1_000_000).unwrap();
    let bytes = image();
    for (slot, name) in names.iter().enumerate() {
        let entry = DomainImage {
            name,
            memory_mib: 8,
            vcpus,
            image: &bytes,
            initrd: &[],
            cmdline: "",
        };
        hypervisor
            .build_domain(
                slot,
                &entry,
                DomainSchedule::default(),
                guest_gic,
                &Default::default(),
            )
            .unwrap();
    }
    let mut cpu = CpuState::new(0);
    assert_eq!(hypervisor.schedule(&mut cpu), Next::Resume);
    let _ = serial::take_console_lines();
    Setup {
        hypervisor,
        cpu,
        free_before,
        _guard: guard,
    }
}

/// Maps guest VA page 0x1000 to the current domain's first RAM page.
pub(super) fn map_first_page(setup: &Setup) -> PhysAddr {
    let slot = setup.cpu.current.unwrap().domain;
    let ram = setup.hypervisor.domain(slot).unwrap().ram.start;
    fake::set_guest_translation(&[(0x1000, ram.raw(), true, false)]);
    ram
}

/// Makes hypercall `call` as `handle_guest_exit` does (`exit_and_enter`: the entry's
/// shortcut checks itself in debug builds).
pub(super) fn hypercall(setup: &mut Setup, call: u64, args: [u64; 5]) -> Next {
    setup.cpu.frame.x[16] = call;
    setup.cpu.frame.x[..5].copy_from_slice(&args);
    setup
        .hypervisor
        .exit_and_enter(&mut setup.cpu, GuestExit::Hypercall { immediate: 0xea1 }, 0)
}

#[test]
fn domain_starts_at_its_kernel_with_the_device_tree() {
    let setup = setup(&["alpha"]);
    let domain = setup.hypervisor.domain(0).unwrap();
    assert_eq!(setup.cpu.frame.pc, layout::RAM_BASE + layout::KERNEL_OFFSET);
    let tree_ipa = layout::RAM_BASE + 8 * 1024 * 1024 - layout::DT_OFFSET_FROM_END;
    assert_eq!(setup.cpu.frame.x[0], tree_ipa);
    let (physical, _) = domain
        .stage2
        .translate(IntermediatePhysAddr::new(tree_ipa))
        .unwrap();
    assert_eq!(
        physical,
        domain
            .ram
            .start
            .add(8 * 1024 * 1024 - layout::DT_OFFSET_FROM_END)
    );
    assert_eq!(fake::current_stage2(), domain.stage2.vttbr());
    // Nothing outside the domain's RAM is mapped.
    assert!(domain
        .stage2
        .translate(IntermediatePhysAddr::new(layout::RAM_BASE - 0x1000))
        .is_none());
    assert!(domain
        .stage2
        .translate(IntermediatePhysAddr::new(
            layout::RAM_BASE + 8 * 1024 * 1024
        ))
        .is_none());
}

#[test]
fn console_write_prints_prefixed_lines() {
    let mut setup = setup(&["alpha"]);
    let ram = map_first_page(&setup);
    // SAFETY: the first RAM page of the test domain, in fake RAM.
    unsafe {
        core::ptr::copy_nonoverlapping(b"hi there\npartial".as_ptr(), arch::phys_to_virt(ram), 16)
    };
    assert_eq!(
        hypercall(&mut setup, number::CONSOLE_IO, [0, 16, 0x1000, 0, 0]),
        Next::Resume
    );
    assert_eq!(setup.cpu.frame.x[0], 0);
    assert_eq!(serial::take_console_lines(), ["(alpha) hi there"]);
    // A buffer running off the mapped page is refused and prints nothing.
    hypercall(&mut setup, number::CONSOLE_IO, [0, 16, 0x1ff8, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], Errno::EFAULT.to_return());
    assert!(serial::take_console_lines().is_empty());
    // The partial line comes out when the domain ends.
    setup.cpu.frame.x[0] = hypercall_abi::psci::SYSTEM_OFF as u64;
    let next =
        setup
            .hypervisor
            .handle_exit(&mut setup.cpu, GuestExit::Hypercall { immediate: 0 }, 0);
    assert_eq!(next, Next::Halt);
    assert_eq!(serial::take_console_lines(), ["(alpha) partial"]);
}

#[test]
fn a_long_console_write_continues_in_parts_of_128_bytes() {
    let mut setup = setup(&["alpha"]);
    let ram = map_first_page(&setup);
    let text = [b'x'; 300];
    // SAFETY: the first RAM page of the test domain, in fake RAM.
    unsafe { core::ptr::copy_nonoverlapping(text.as_ptr(), arch::phys_to_virt(ram), 300) };
    let pc = setup.cpu.frame.pc;
    hypercall(&mut setup, number::CONSOLE_IO, [0, 300, 0x1000, 0, 0]);
    // 128 bytes written; the vCPU issues the call again for the other 172.
    assert_eq!(setup.cpu.frame.pc, pc - 4);
    assert_eq!(setup.cpu.frame.x[1], 172);
    assert_eq!(setup.cpu.frame.x[2], 0x1000 + 128);
    setup.cpu.frame.pc = pc;
    hypercall(&mut setup, number::CONSOLE_IO, [0, 172, 0x1000 + 128, 0, 0]);
    assert_eq!(
        (setup.cpu.frame.x[1], setup.cpu.frame.x[2]),
        (44, 0x1000 + 256)
    );
    setup.cpu.frame.pc = pc;
    hypercall(&mut setup, number::CONSOLE_IO, [0, 44, 0x1000 + 256, 0, 0]);
    assert_eq!((setup.cpu.frame.pc, setup.cpu.frame.x[0]), (pc, 0));
    // A count running off the mapped page is refused before anything is written.
    hypercall(
        &mut setup,
        number::CONSOLE_IO,
        [0, 0x7fff_ffff, 0x1fc0, 0, 0],
    );
    assert_eq!(setup.cpu.frame.x[0], Errno::EFAULT.to_return());
    let _ = serial::take_console_lines();
}

#[test]
fn errors_come_back_as_xen_errno_values() {
    let mut setup = setup(&["alpha"]);
    map_first_page(&setup);
    hypercall(&mut setup, 63, [0; 5]);
    assert_eq!(setup.cpu.frame.x[0], Errno::ENOSYS.to_return());
    hypercall(&mut setup, number::XEN_VERSION, [0, 0, 0, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], 0x0004_0011);
    hypercall(&mut setup, number::XEN_VERSION, [6, 0x1000, 0, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], 0);
    hypercall(&mut setup, number::XEN_VERSION, [6, 0xdead_0000, 0, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], Errno::EFAULT.to_return());
}

#[test]
fn get_features_reports_what_is_implemented() {
    let mut setup = setup(&["alpha"]);
    let ram = map_first_page(&setup);
    hypercall(&mut setup, number::XEN_VERSION, [6, 0x1000, 0, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], 0);
    // Only submap 0 exists.
    // SAFETY: writes submap_idx = 1 into the first RAM page of the test domain.
    unsafe {
        core::ptr::copy_nonoverlapping(1u32.to_le_bytes().as_ptr(), arch::phys_to_virt(ram), 4)
    };
    hypercall(&mut setup, number::XEN_VERSION, [6, 0x1000, 0, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], Errno::EINVAL.to_return());
    // SAFETY: as above, back to submap_idx = 0.
    unsafe { core::ptr::write_bytes(arch::phys_to_virt(ram), 0, 8) };
    hypercall(&mut setup, number::XEN_VERSION, [6, 0x1000, 0, 0, 0]);
    let mut submap = [0u8; 4];
    // SAFETY: reads back the FeatureInfo the hypervisor wrote into fake RAM.
    unsafe {
        core::ptr::copy_nonoverlapping(arch::phys_to_virt(ram.add(4)), submap.as_mut_ptr(), 4)
    };
    assert_eq!(u32::from_le_bytes(submap), hypercall::feature_submap_0());
}

#[test]
fn unknown_hvc_immediate_injects_undefined_instruction() {
    let mut setup = setup(&["alpha"]);
    setup.cpu.frame.pc = 0x4020_0104; // past the HVC at 0x4020_0100
    setup.cpu.frame.pstate = 0x3c5;
    fake::restore_el1(&crate::vcpu::El1Context {
        vbar_el1: 0x4030_0000,
        ..Default::default()
    });
    let next = setup.hypervisor.handle_exit(
        &mut setup.cpu,
        GuestExit::Hypercall { immediate: 0x1234 },
        0,
    );
    assert_eq!(next, Next::Resume);
    assert_eq!(setup.cpu.frame.pc, 0x4030_0200);
    let mut live = crate::vcpu::El1Context::default();
    fake::save_el1(&mut live);
    assert_eq!(
        live.elr_el1, 0x4020_0104,
        "Xen reports the HVC's return address"
    );
    assert_eq!(live.esr_el1, crate::vcpu::INJECTED_UNDEFINED_ESR);
}

#[test]
fn a_crash_ends_only_the_guilty_domain_and_returns_its_memory() {
    let mut setup = setup(&["victim", "crasher"]);
    // The victim yields, so the crasher runs.
    hypercall(&mut setup, number::SCHED_OP, [0, 0, 0, 0, 0]);
    assert_eq!(setup.cpu.current.unwrap().domain, 1);
    let abort = Abort {
        virtual_address: GuestVirtAddr::new(0x1000_0000),
        ipa: IntermediatePhysAddr::new(0x1000_0000),
        write: true,
        stage1_walk: false,
        kind: FaultKind::Translation(1),
        access: Some(EmulatableAccess {
            size: 4,
            sign_extend: false,
            register: 1,
            sixty_four_bit: false,
            acquire_release: false,
        }),
    };
    let next = setup
        .hypervisor
        .handle_exit(&mut setup.cpu, GuestExit::DataAbort(abort), 0);
    assert_eq!(next, Next::Resume);
    assert!(setup.hypervisor.domain(1).is_none());
    assert_eq!(setup.cpu.current.unwrap().domain, 0);
    // The victim shuts down cleanly; everything is returned.
    map_first_page(&setup);
    let ram = setup.hypervisor.domain(0).unwrap().ram.start;
    // SAFETY: sched_shutdown argument {reason = poweroff} in the victim's first page.
    unsafe { core::ptr::write_bytes(arch::phys_to_virt(ram), 0, 4) };
    let next = hypercall(&mut setup, number::SCHED_OP, [2, 0x1000, 0, 0, 0]);
    assert_eq!(next, Next::Halt);
    assert!(!setup.hypervisor.report_halt());
    assert_eq!(setup.hypervisor.free_bytes(), setup.free_before);
}

#[test]
fn a_fault_on_memory_mapped_by_now_is_retried_not_fatal() {
    let mut setup = setup(&["alpha"]);
    let pc = setup.cpu.frame.pc;
    let abort = Abort {
        virtual_address: GuestVirtAddr::new(layout::RAM_BASE),
        ipa: IntermediatePhysAddr::new(layout::RAM_BASE + 0x1000),
        write: true,
        stage1_walk: false,
        kind: FaultKind::Translation(3),
        access: None,
    };
    let next = setup
        .hypervisor
        .handle_exit(&mut setup.cpu, GuestExit::DataAbort(abort), 0);
    assert_eq!(next, Next::Resume);
    assert!(
        setup.hypervisor.domain(0).is_some(),
        "the domain must survive"
    );
    assert_eq!(setup.cpu.frame.pc, pc, "the access is retried");
}

fn psci(setup: &mut Setup, function: u32, args: [u64; 3]) -> Next {
    setup.cpu.frame.x[0] = u64::from(function);
    setup.cpu.frame.x[1..4].copy_from_slice(&args);
    setup
        .hypervisor
        .handle_exit(&mut setup.cpu, GuestExit::Hypercall { immediate: 0 }, 0)
}

#[test]
fn psci_starts_and_stops_secondary_vcpus() {
    use hypercall_abi::psci as ids;
    let mut setup = setup_with_vcpus(&["smp"], 2);
    let off = 1u64;
    psci(&mut setup, ids::AFFINITY_INFO_64, [1, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], off);
    // No vCPU 2, and affinity levels above 0 do not exist.
    psci(&mut setup, ids::CPU_ON_64, [2, 0x4020_0000, 0]);
    assert_eq!(
        setup.cpu.frame.x[0],
        psci::psci_return(ids::INVALID_PARAMETERS)
    );
    psci(&mut setup, ids::CPU_ON_64, [0x100, 0x4020_0000, 0]);
    assert_eq!(
        setup.cpu.frame.x[0],
        psci::psci_return(ids::INVALID_PARAMETERS)
    );
    // Start vCPU 1; starting it again is ALREADY_ON; vCPU 0 is on.
    psci(&mut setup, ids::CPU_ON_64, [1, 0x4030_0000, 0x1234]);
    assert_eq!(setup.cpu.frame.x[0], 0);
    psci(&mut setup, ids::CPU_ON_64, [1, 0x4030_0000, 0x1234]);
    assert_eq!(setup.cpu.frame.x[0], psci::psci_return(ids::ALREADY_ON));
    psci(&mut setup, ids::AFFINITY_INFO_64, [0, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], 0);
    // vCPU 0 yields: vCPU 1 starts at its entry with x0 = context, MMU off.
    hypercall(&mut setup, number::SCHED_OP, [0, 0, 0, 0, 0]);
    assert_eq!(setup.cpu.current, Some(VcpuId { domain: 0, vcpu: 1 }));
    assert_eq!(setup.cpu.frame.pc, 0x4030_0000);
    assert_eq!(setup.cpu.frame.x[0], 0x1234);
    // vCPU 1 turns itself off: vCPU 0 runs on and sees it OFF.
    psci(&mut setup, ids::CPU_OFF, [0, 0, 0]);
    assert_eq!(setup.cpu.current, Some(VcpuId { domain: 0, vcpu: 0 }));
    psci(&mut setup, ids::AFFINITY_INFO_64, [1, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], off);
    // And it can be started again.
    psci(&mut setup, ids::CPU_ON_64, [1, 0x4030_0000, 0]);
    assert_eq!(setup.cpu.frame.x[0], 0);
}

#[test]
fn a_domain_whose_vcpus_are_all_off_is_ended_not_left_hanging() {
    let mut setup = setup(&["lonely"]);
    let next = psci(&mut setup, hypercall_abi::psci::CPU_OFF, [0, 0, 0]);
    assert_eq!(next, Next::Halt);
    assert!(setup.hypervisor.domain(0).is_none());
    assert!(!setup.hypervisor.report_halt());
    assert_eq!(setup.hypervisor.free_bytes(), setup.free_before);
}

/// Writes `bytes` at `offset` into the current domain's RAM (fake memory).
fn poke(setup: &Setup, offset: u64, bytes: &[u8]) {
    let ram = setup
        .hypervisor
        .domain(setup.cpu.current.unwrap().domain)
        .unwrap()
        .ram
        .start;
    // SAFETY: inside the test domain's RAM in fake memory.
    unsafe {
        core::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            arch::phys_to_virt(ram.add(offset)),
            bytes.len(),
        )
    };
}

fn add_to_physmap_request(space: u32, idx: u64, gpfn: u64) -> Vec<u8> {
    let mut request = Vec::new();
    request.extend_from_slice(&0x7ff0u16.to_le_bytes()); // DOMID_SELF
    request.extend_from_slice(&0u16.to_le_bytes());
    request.extend_from_slice(&space.to_le_bytes());
    request.extend_from_slice(&idx.to_le_bytes());
    request.extend_from_slice(&gpfn.to_le_bytes());
    request
}

#[test]
fn shared_info_replaces_the_page_at_the_chosen_frame_and_can_move() {
    let mut setup = setup(&["alpha"]);
    map_first_page(&setup);
    let target = (layout::RAM_BASE + 0x10_0000) >> 12;
    poke(&setup, 0, &add_to_physmap_request(0, 0, target));
    hypercall(&mut setup, number::MEMORY_OP, [7, 0x1000, 0, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], 0);
    let domain = setup.hypervisor.domain(0).unwrap();
    let (physical, attributes) = domain
        .stage2
        .translate(IntermediatePhysAddr::new(target << 12))
        .unwrap();
    assert_eq!(physical, domain.shared_info);
    assert!(!attributes.execute);
    // idx must be 0; another domain's id is refused; unknown spaces are EINVAL.
    poke(&setup, 0, &add_to_physmap_request(0, 1, target));
    hypercall(&mut setup, number::MEMORY_OP, [7, 0x1000, 0, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], Errno::EINVAL.to_return());
    let mut foreign = add_to_physmap_request(0, 0, target);
    foreign[0..2].copy_from_slice(&5u16.to_le_bytes());
    poke(&setup, 0, &foreign);
    hypercall(&mut setup, number::MEMORY_OP, [7, 0x1000, 0, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], Errno::EPERM.to_return());
    poke(&setup, 0, &add_to_physmap_request(99, 0, target));
    hypercall(&mut setup, number::MEMORY_OP, [7, 0x1000, 0, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], Errno::EINVAL.to_return());
    // Moving it leaves a hole where it was.
    let elsewhere = 0x3900_0000u64 >> 12;
    poke(&setup, 0, &add_to_physmap_request(0, 0, elsewhere));
    hypercall(&mut setup, number::MEMORY_OP, [7, 0x1000, 0, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], 0);
    let domain = setup.hypervisor.domain(0).unwrap();
    assert!(domain
        .stage2
        .translate(IntermediatePhysAddr::new(target << 12))
        .is_none());
    assert_eq!(
        domain
            .stage2
            .translate(IntermediatePhysAddr::new(0x3900_0000))
            .unwrap()
            .0,
        domain.shared_info
    );
    // Everything is returned at the end.
    setup.cpu.frame.x[0] = u64::from(hypercall_abi::psci::SYSTEM_OFF);
    let next =
        setup
            .hypervisor
            .handle_exit(&mut setup.cpu, GuestExit::Hypercall { immediate: 0 }, 0);
    assert_eq!(next, Next::Halt);
    assert_eq!(setup.hypervisor.free_bytes(), setup.free_before);
}

fn vcpu_info_request(gfn: u64, offset: u32) -> Vec<u8> {
    let mut request = Vec::new();
    request.extend_from_slice(&gfn.to_le_bytes());
    request.extend_from_slice(&offset.to_le_bytes());
    request.extend_from_slice(&0u32.to_le_bytes());
    request
}

#[test]
fn register_vcpu_info_follows_xen_rules_and_forces_a_rescan() {
    let mut setup = setup_with_vcpus(&["alpha"], 2);
    map_first_page(&setup);
    let gfn = (layout::RAM_BASE + 0x20_0000) >> 12;
    // Offset too large for the page, or misaligned.
    poke(&setup, 0, &vcpu_info_request(gfn, 4096 - 40));
    hypercall(&mut setup, number::VCPU_OP, [10, 0, 0x1000, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], Errno::EINVAL.to_return());
    poke(&setup, 0, &vcpu_info_request(gfn, 4));
    hypercall(&mut setup, number::VCPU_OP, [10, 0, 0x1000, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], Errno::EINVAL.to_return());
    // A frame outside the domain, or a vCPU that does not exist.
    poke(&setup, 0, &vcpu_info_request(0x1000, 0));
    hypercall(&mut setup, number::VCPU_OP, [10, 0, 0x1000, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], Errno::EINVAL.to_return());
    poke(&setup, 0, &vcpu_info_request(gfn, 64));
    hypercall(&mut setup, number::VCPU_OP, [10, 7, 0x1000, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], Errno::ENOENT.to_return());
    // Good: registered, all events marked pending; a second time is refused.
    hypercall(&mut setup, number::VCPU_OP, [10, 0, 0x1000, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], 0);
    let domain = setup.hypervisor.domain(0).unwrap();
    assert_eq!(
        domain.vcpus[0].vcpu_info,
        Some(domain.ram.start.add(0x20_0000 + 64))
    );
    let info = domain.vcpu_info(0).unwrap();
    assert_eq!(
        info.evtchn_upcall_pending
            .load(core::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(
        info.evtchn_pending_sel
            .load(core::sync::atomic::Ordering::SeqCst),
        u64::MAX
    );
    hypercall(&mut setup, number::VCPU_OP, [10, 0, 0x1000, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], Errno::EINVAL.to_return());
    // vCPU 1 is off, so vCPU 0 may register for it.
    poke(&setup, 0, &vcpu_info_request(gfn, 128));
    hypercall(&mut setup, number::VCPU_OP, [10, 1, 0x1000, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], 0);
}

#[test]
fn runstate_area_is_written_when_the_vcpu_is_switched_in() {
    let mut setup = setup(&["alpha", "beta"]);
    let ram = map_first_page(&setup);
    poke(&setup, 0, &0x1800u64.to_le_bytes());
    hypercall(&mut setup, number::VCPU_OP, [5, 0, 0x1000, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], 0);
    // alpha yields to beta, beta yields back: alpha's area is written on switch-in.
    hypercall(&mut setup, number::SCHED_OP, [0, 0, 0, 0, 0]);
    assert_eq!(setup.cpu.current.unwrap().domain, 1);
    hypercall(&mut setup, number::SCHED_OP, [0, 0, 0, 0, 0]);
    assert_eq!(setup.cpu.current.unwrap().domain, 0);
    let mut record = [0u8; 48];
    // SAFETY: reads back the runstate record from the test domain's RAM (VA 0x1800).
    unsafe {
        core::ptr::copy_nonoverlapping(arch::phys_to_virt(ram.add(0x800)), record.as_mut_ptr(), 48)
    };
    assert_eq!(&record[0..4], &0i32.to_le_bytes(), "state = running");
    assert_ne!(&record[8..16], &[0; 8], "entry time set");
    assert_eq!(&record[4..8], &[0; 4], "padding stays zero");
}

/// EVTCHNOP `cmd` from the current vCPU with its argument bytes at guest VA 0x1000; returns
/// x0 and the argument bytes as the hypervisor left them.
fn evtchn(setup: &mut Setup, cmd: u64, argument: &[u8]) -> (u64, Vec<u8>) {
    let ram = map_first_page(setup);
    poke(setup, 0, argument);
    hypercall(setup, number::EVENT_CHANNEL_OP, [cmd, 0x1000, 0, 0, 0]);
    let mut back = std::vec![0u8; argument.len()];
    // SAFETY: reads the argument back from the test domain's first RAM page.
    unsafe {
        core::ptr::copy_nonoverlapping(arch::phys_to_virt(ram), back.as_mut_ptr(), back.len())
    };
    (setup.cpu.frame.x[0], back)
}

fn le32(bytes: &[u8], offset: usize) -> u32 {
    u32::from_le_bytes(bytes[offset..offset + 4].try_into().unwrap())
}

/// Enables PPI `intid` and both groups in slot `slot`'s virtual GIC, as a guest does
/// through its distributor (GICD_ISENABLER0, GICD_CTLR).
fn enable_ppi(setup: &mut Setup, slot: usize, intid: u32) {
    let vgic = &mut setup.hypervisor.vgics[slot];
    vgic.write(crate::vgic::Frame::Distributor, 0, 0x100, 4, 1 << intid)
        .unwrap();
    vgic.write(crate::vgic::Frame::Distributor, 0, 0x0, 4, 0b11)
        .unwrap();
}

/// Enables the event-channel PPI (31) and both groups in slot `slot`'s virtual GIC.
fn enable_upcall(setup: &mut Setup, slot: usize) {
    enable_ppi(setup, slot, 31);
}

#[test]
fn loopback_channel_delivers_to_the_upcall() {
    let mut setup = setup(&["alpha"]);
    enable_upcall(&mut setup, 0);
    // alloc_unbound {dom = SELF, remote = SELF} -> port a.
    let mut request = std::vec![0u8; 8];
    request[0..2].copy_from_slice(&0x7ff0u16.to_le_bytes());
    request[2..4].copy_from_slice(&0x7ff0u16.to_le_bytes());
    let (result, back) = evtchn(&mut setup, 6, &request);
    assert_eq!(result, 0);
    let a = le32(&back, 4);
    assert_ne!(a, 0);
    // bind_interdomain {remote = SELF, remote_port = a} -> port b.
    let mut request = std::vec![0u8; 12];
    request[0..2].copy_from_slice(&0x7ff0u16.to_le_bytes());
    request[4..8].copy_from_slice(&a.to_le_bytes());
    let (result, back) = evtchn(&mut setup, 0, &request);
    assert_eq!(result, 0);
    let b = le32(&back, 8);
    assert_ne!(b, a);
    // Clear what binding marked pending, then send on b: a becomes pending, upcall raised.
    let domain = setup.hypervisor.domain(0).unwrap();
    let shared = domain.shared_info();
    for word in &shared.evtchn_pending {
        word.store(0, core::sync::atomic::Ordering::SeqCst);
    }
    // As the guest's upcall handler would: selector and upcall flag consumed.
    let info = domain.vcpu_info(0).unwrap();
    info.evtchn_upcall_pending
        .store(0, core::sync::atomic::Ordering::SeqCst);
    info.evtchn_pending_sel
        .store(0, core::sync::atomic::Ordering::SeqCst);
    setup.hypervisor.vgics[0]
        .write(crate::vgic::Frame::Distributor, 0, 0x280, 4, u64::MAX)
        .unwrap(); // ICPENDR0
    let (result, _) = evtchn(&mut setup, 4, &b.to_le_bytes());
    assert_eq!(result, 0);
    let domain = setup.hypervisor.domain(0).unwrap();
    assert!(hypercall_abi::evtchn2l::test_pending(
        domain.shared_info(),
        Port(a)
    ));
    // Pending and enabled: in the model, or already in an LR (the entry after the
    // hypercall hands it over).
    let in_lr = domain.vcpus[0]
        .interrupts
        .list_registers
        .find(31)
        .and_then(|index| domain.vcpus[0].interrupts.list_registers.entry(index))
        .is_some_and(|entry| entry.state.pending());
    assert!(
        setup.hypervisor.vgics[0].is_deliverable(0, 31) || in_lr,
        "upcall PPI pending and enabled"
    );
    // IN-only operations never write their argument back (as Xen): a send whose
    // argument sits in a page the guest maps read-only succeeds.
    let ram = map_first_page(&setup);
    fake::set_guest_translation(&[
        (0x1000, ram.raw(), true, false),
        (0x2000, ram.raw(), false, false),
    ]);
    poke(&setup, 0x800, &b.to_le_bytes());
    hypercall(&mut setup, number::EVENT_CHANNEL_OP, [4, 0x2800, 0, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], 0);
    // And an unmask (the generic path) likewise.
    poke(&setup, 0x800, &a.to_le_bytes());
    hypercall(&mut setup, number::EVENT_CHANNEL_OP, [9, 0x2800, 0, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], 0);
    // Errors come from the model: a port that does not exist.
    let (result, _) = evtchn(&mut setup, 4, &999u32.to_le_bytes());
    assert_eq!(result, Errno::EINVAL.to_return());
    // Unknown sub-op.
    let (result, _) = evtchn(&mut setup, 11, &[0; 24]);
    assert_eq!(result, Errno::ENOSYS.to_return());
}

#[test]
fn a_dying_peer_notifies_the_other_end() {
    let mut setup = setup(&["alpha", "beta"]);
    enable_upcall(&mut setup, 1);
    // alpha (domain 0) offers a port to beta (domain 1).
    let mut request = std::vec![0u8; 8];
    request[0..2].copy_from_slice(&0x7ff0u16.to_le_bytes());
    request[2..4].copy_from_slice(&1u16.to_le_bytes());
    let (result, back) = evtchn(&mut setup, 6, &request);
    assert_eq!(result, 0);
    let alpha_port = le32(&back, 4);
    // alpha yields, beta binds to it.
    hypercall(&mut setup, number::SCHED_OP, [0, 0, 0, 0, 0]);
    assert_eq!(setup.cpu.current.unwrap().domain, 1);
    let mut request = std::vec![0u8; 12];
    request[0..2].copy_from_slice(&0u16.to_le_bytes());
    request[4..8].copy_from_slice(&alpha_port.to_le_bytes());
    let (result, back) = evtchn(&mut setup, 0, &request);
    assert_eq!(result, 0);
    let beta_port = le32(&back, 8);
    // beta sends: alpha's port is pending in alpha's shared_info.
    let (result, _) = evtchn(&mut setup, 4, &beta_port.to_le_bytes());
    assert_eq!(result, 0);
    assert!(hypercall_abi::evtchn2l::test_pending(
        setup.hypervisor.domain(0).unwrap().shared_info(),
        Port(alpha_port)
    ));
    // alpha crashes: beta's end is notified (pending) and reads as unbound.
    let beta = setup.hypervisor.domain(1).unwrap();
    for word in &beta.shared_info().evtchn_pending {
        word.store(0, core::sync::atomic::Ordering::SeqCst);
    }
    beta.vcpu_info(0)
        .unwrap()
        .evtchn_pending_sel
        .store(0, core::sync::atomic::Ordering::SeqCst);
    hypercall(&mut setup, number::SCHED_OP, [0, 0, 0, 0, 0]);
    assert_eq!(setup.cpu.current.unwrap().domain, 0);
    let crash = GuestExit::Unhandled { class: 0x3f };
    setup.hypervisor.handle_exit(&mut setup.cpu, crash, 0);
    assert_eq!(setup.cpu.current.unwrap().domain, 1);
    assert!(hypercall_abi::evtchn2l::test_pending(
        setup.hypervisor.domain(1).unwrap().shared_info(),
        Port(beta_port)
    ));
    let mut status = std::vec![0u8; 24];
    status[0..2].copy_from_slice(&0x7ff0u16.to_le_bytes());
    status[4..8].copy_from_slice(&beta_port.to_le_bytes());
    let (result, back) = evtchn(&mut setup, 5, &status);
    assert_eq!(result, 0);
    assert_eq!(le32(&back, 8), 1, "EVTCHNSTAT_unbound");
}

#[test]
fn pre_connected_channels_get_the_ports_their_device_trees_promise() {
    let mut setup = setup(&["alpha", "beta", "gamma"]);
    let channels = [(0usize, 1usize), (1, 2), (0, 2)];
    for (a, b) in channels {
        let (port_a, port_b) = setup.hypervisor.connect_channel(a, b).unwrap();
        let planned_a = plan_channel_ports(channels.iter().copied(), a);
        let planned_b = plan_channel_ports(channels.iter().copied(), b);
        assert!(
            planned_a.contains(&(port_a, b as u32)),
            "{planned_a:?} has ({port_a}, {b})"
        );
        assert!(
            planned_b.contains(&(port_b, a as u32)),
            "{planned_b:?} has ({port_b}, {a})"
        );
    }
    assert_eq!(
        plan_channel_ports(channels.iter().copied(), 1).as_slice(),
        &[(1, 0), (2, 2)]
    );
    // A send from beta on its first port arrives on alpha's first port.
    enable_upcall(&mut setup, 0);
    hypercall(&mut setup, number::SCHED_OP, [0, 0, 0, 0, 0]);
    assert_eq!(setup.cpu.current.unwrap().domain, 1);
    let (result, _) = evtchn(&mut setup, 4, &1u32.to_le_bytes());
    assert_eq!(result, 0);
    assert!(hypercall_abi::evtchn2l::test_pending(
        setup.hypervisor.domain(0).unwrap().shared_info(),
        Port(1)
    ));
}

#[test]
fn wfi_blocks_until_an_interrupt_is_pending_and_the_virtual_timer_wakes_it() {
    let mut setup = setup(&["alpha", "beta"]);
    enable_upcall(&mut setup, 0);
    // alpha waits with nothing pending: it blocks and beta runs.
    let next = setup.hypervisor.handle_exit(
        &mut setup.cpu,
        GuestExit::WaitFor {
            wait_for_event: false,
        },
        0,
    );
    assert_eq!(next, Next::Resume);
    assert_eq!(setup.cpu.current.unwrap().domain, 1);
    assert_eq!(
        setup.hypervisor.domain(0).unwrap().vcpus[0].state(),
        RunState::Blocked
    );
    // An event for alpha (its upcall) wakes it.
    setup.hypervisor.raise_upcall(0, 0, 0);
    assert_eq!(
        setup.hypervisor.domain(0).unwrap().vcpus[0].state(),
        RunState::Ready
    );
    // beta blocks too, with its virtual timer armed: the EL2 timer is armed for that deadline.
    hypercall(&mut setup, number::SCHED_OP, [0, 0, 0, 0, 0]);
    assert_eq!(setup.cpu.current.unwrap().domain, 0);
    hypercall(&mut setup, number::SCHED_OP, [0, 0, 0, 0, 0]);
    assert_eq!(setup.cpu.current.unwrap().domain, 1);
    let deadline = arch::read_counter() + 50_000;
    fake::restore_el1(&crate::vcpu::El1Context {
        cntv_ctl_el0: 1,
        cntv_cval_el0: deadline,
        ..Default::default()
    });
    setup.hypervisor.handle_exit(
        &mut setup.cpu,
        GuestExit::WaitFor {
            wait_for_event: false,
        },
        0,
    );
    assert_eq!(setup.cpu.current.unwrap().domain, 0);
    assert_eq!(
        setup.hypervisor.domain(1).unwrap().vcpus[0].state(),
        RunState::Blocked
    );
    assert!(fake::timer_deadline().is_some_and(|armed| armed <= deadline));
    // The deadline passes: the EL2 timer interrupt wakes beta with its timer PPI pending.
    while arch::read_counter() <= deadline {}
    fake::raise_interrupt(arch::el2_timer_intid());
    setup.hypervisor.take_interrupts(&mut setup.cpu);
    let beta = &setup.hypervisor.domain(1).unwrap().vcpus[0];
    assert_ne!(beta.state(), RunState::Blocked);
    assert_ne!(
        beta.el1.cntv_ctl_el0 & 2,
        0,
        "its saved timer is masked, as on forwarding"
    );
}

#[test]
fn singleshot_timer_raises_virq_timer_on_its_port() {
    let mut setup = setup(&["alpha"]);
    enable_upcall(&mut setup, 0);
    // Bind VIRQ_TIMER on vCPU 0.
    let mut bind = std::vec![0u8; 12];
    bind[0..4].copy_from_slice(&0u32.to_le_bytes());
    let (result, back) = evtchn(&mut setup, 1, &bind);
    assert_eq!(result, 0);
    let port = le32(&back, 8);
    // A deadline in the past with SSHOTTMR_future is refused; another vCPU's timer too.
    let mut request = std::vec![0u8; 16];
    request[0..8].copy_from_slice(&1u64.to_le_bytes());
    request[8..12].copy_from_slice(&1u32.to_le_bytes());
    poke(&setup, 0, &request);
    hypercall(&mut setup, number::VCPU_OP, [8, 0, 0x1000, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], Errno::ETIME.to_return());
    // A deadline just ahead: the EL2 timer is brought forward to it.
    let now_ns = crate::hypercall::vcpu::ticks_to_nanoseconds(arch::read_counter());
    request[0..8].copy_from_slice(&(now_ns + 1_000).to_le_bytes());
    request[8..12].copy_from_slice(&0u32.to_le_bytes());
    poke(&setup, 0, &request);
    fake::arm_timer(None);
    hypercall(&mut setup, number::VCPU_OP, [8, 0, 0x1000, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], 0);
    assert!(fake::timer_deadline().is_some());
    // It passes: VIRQ_TIMER's port is pending once, and the timer is spent.
    for word in &setup
        .hypervisor
        .domain(0)
        .unwrap()
        .shared_info()
        .evtchn_pending
    {
        word.store(0, core::sync::atomic::Ordering::SeqCst);
    }
    let _ = arch::read_counter();
    fake::raise_interrupt(arch::el2_timer_intid());
    setup.hypervisor.take_interrupts(&mut setup.cpu);
    let domain = setup.hypervisor.domain(0).unwrap();
    assert!(hypercall_abi::evtchn2l::test_pending(
        domain.shared_info(),
        Port(port)
    ));
    assert_eq!(domain.vcpus[0].singleshot, None);
}

/// SCHEDOP_poll arguments at guest VA 0x1000 with the port array at 0x1100.
fn poll_request(setup: &Setup, ports: &[u32], timeout: u64) {
    let mut request = std::vec![0u8; 24];
    request[0..8].copy_from_slice(&0x1100u64.to_le_bytes());
    request[8..12].copy_from_slice(&(ports.len() as u32).to_le_bytes());
    request[16..24].copy_from_slice(&timeout.to_le_bytes());
    poke(setup, 0, &request);
    let array: Vec<u8> = ports.iter().flat_map(|port| port.to_le_bytes()).collect();
    poke(setup, 0x100, &array);
}

#[test]
fn poll_returns_at_once_blocks_and_wakes_on_its_ports_or_timeout() {
    let mut setup = setup(&["alpha", "beta"]);
    map_first_page(&setup);
    // A loopback channel in alpha: ports a (unbound end) and b.
    let mut request = std::vec![0u8; 8];
    request[0..2].copy_from_slice(&0x7ff0u16.to_le_bytes());
    request[2..4].copy_from_slice(&0x7ff0u16.to_le_bytes());
    let (_, back) = evtchn(&mut setup, 6, &request);
    let a = le32(&back, 4);
    let mut request = std::vec![0u8; 12];
    request[0..2].copy_from_slice(&0x7ff0u16.to_le_bytes());
    request[4..8].copy_from_slice(&a.to_le_bytes());
    let (_, back) = evtchn(&mut setup, 0, &request);
    let b = le32(&back, 8);
    let clear = |setup: &Setup| {
        for word in &setup
            .hypervisor
            .domain(0)
            .unwrap()
            .shared_info()
            .evtchn_pending
        {
            word.store(0, core::sync::atomic::Ordering::SeqCst);
        }
    };
    // Refused as Xen does: too many ports, a port out of range.
    poll_request(&setup, &[1; 129], 0);
    hypercall(&mut setup, number::SCHED_OP, [3, 0x1000, 0, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], Errno::EINVAL.to_return());
    poll_request(&setup, &[5000], 0);
    hypercall(&mut setup, number::SCHED_OP, [3, 0x1000, 0, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], Errno::EINVAL.to_return());
    // Already pending: returns 0 at once, alpha keeps running.
    clear(&setup);
    hypercall_abi::evtchn2l::set_pending(
        setup.hypervisor.domain(0).unwrap().shared_info(),
        Port(a),
    );
    poll_request(&setup, &[a], 0);
    hypercall(&mut setup, number::SCHED_OP, [3, 0x1000, 0, 0, 0]);
    assert_eq!(
        (setup.cpu.frame.x[0], setup.cpu.current.unwrap().domain),
        (0, 0)
    );
    // Not pending: alpha blocks; beta runs.
    clear(&setup);
    poll_request(&setup, &[a], 0);
    hypercall(&mut setup, number::SCHED_OP, [3, 0x1000, 0, 0, 0]);
    assert_eq!(setup.cpu.current.unwrap().domain, 1);
    assert_eq!(
        setup.hypervisor.domain(0).unwrap().vcpus[0].state(),
        RunState::Blocked
    );
    // The domain's mask of pollers names it for that port only.
    let alpha_domain = setup.hypervisor.domain(0).unwrap();
    assert_eq!(
        alpha_domain.pollers_of(a as u16),
        crate::vgic::VcpuSet::only(0)
    );
    assert!(alpha_domain.pollers_of(b as u16).is_empty());
    // An event on the polled port (masked or not) wakes it.
    hypercall_abi::evtchn2l::set_mask(setup.hypervisor.domain(0).unwrap().shared_info(), Port(a));
    setup.hypervisor.carry_out_event(
        0,
        crate::event_channel::Action::Deliver(crate::event_channel::Deliver {
            domain: 0,
            vcpu: 0,
            port: Port(a),
        }),
    );
    let alpha = &setup.hypervisor.domain(0).unwrap().vcpus[0];
    assert_eq!(alpha.state(), RunState::Ready);
    assert!(alpha.polling.is_empty());
    assert!(setup
        .hypervisor
        .domain(0)
        .unwrap()
        .pollers_of(a as u16)
        .is_empty());
    // A timeout wakes it too.
    hypercall(&mut setup, number::SCHED_OP, [0, 0, 0, 0, 0]);
    assert_eq!(setup.cpu.current.unwrap().domain, 0);
    clear(&setup);
    let now_ns = crate::hypercall::vcpu::ticks_to_nanoseconds(arch::read_counter());
    poll_request(&setup, &[a], now_ns + 500);
    hypercall(&mut setup, number::SCHED_OP, [3, 0x1000, 0, 0, 0]);
    assert_eq!(
        setup.hypervisor.domain(0).unwrap().vcpus[0].state(),
        RunState::Blocked
    );
    for _ in 0..100 {
        let _ = arch::read_counter();
    }
    fake::raise_interrupt(arch::el2_timer_intid());
    setup.hypervisor.take_interrupts(&mut setup.cpu);
    assert_ne!(
        setup.hypervisor.domain(0).unwrap().vcpus[0].state(),
        RunState::Blocked
    );
}

#[test]
fn the_console_ring_is_served_by_the_hypervisor() {
    let mut setup = setup(&["alpha"]);
    let port = setup.hypervisor.attach_console(0).unwrap();
    let ram = map_first_page(&setup);
    // HVM_PARAM_CONSOLE_PFN and _EVTCHN name the magic page and the port.
    let mut request = std::vec![0u8; 16];
    request[0..2].copy_from_slice(&0x7ff0u16.to_le_bytes());
    request[4..8].copy_from_slice(&17u32.to_le_bytes());
    poke(&setup, 0, &request);
    hypercall(&mut setup, number::HVM_OP, [1, 0x1000, 0, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], 0);
    let mut value = [0u8; 8];
    // SAFETY: reads the parameter back from the test domain's first RAM page.
    unsafe {
        core::ptr::copy_nonoverlapping(arch::phys_to_virt(ram.add(8)), value.as_mut_ptr(), 8)
    };
    assert_eq!(u64::from_le_bytes(value), layout::MAGIC_BASE >> 12);
    request[4..8].copy_from_slice(&18u32.to_le_bytes());
    poke(&setup, 0, &request);
    hypercall(&mut setup, number::HVM_OP, [1, 0x1000, 0, 0, 0]);
    // SAFETY: as above.
    unsafe {
        core::ptr::copy_nonoverlapping(arch::phys_to_virt(ram.add(8)), value.as_mut_ptr(), 8)
    };
    assert_eq!(u64::from_le_bytes(value), u64::from(port));
    // The guest may not move them; an index out of range is EINVAL.
    hypercall(&mut setup, number::HVM_OP, [0, 0x1000, 0, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], Errno::EPERM.to_return());
    request[4..8].copy_from_slice(&39u32.to_le_bytes());
    poke(&setup, 0, &request);
    hypercall(&mut setup, number::HVM_OP, [1, 0x1000, 0, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], Errno::EINVAL.to_return());
    // The guest writes two lines into out[] (wrapping the index) and sends: printed, consumed.
    let ring = setup.hypervisor.domain(0).unwrap().console_interface();
    let text = b"ring one\nring two\n";
    let start = 2040u32;
    ring.out_cons
        .store(start, core::sync::atomic::Ordering::SeqCst);
    for (offset, byte) in text.iter().enumerate() {
        let index = hypercall_abi::shared::xencons_mask_out(start + offset as u32);
        // SAFETY: writes the fake guest's ring, as the guest would.
        unsafe { core::ptr::write_volatile(ring.output.as_ptr().add(index).cast_mut(), *byte) };
    }
    ring.out_prod.store(
        start + text.len() as u32,
        core::sync::atomic::Ordering::SeqCst,
    );
    let _ = serial::take_console_lines();
    let (result, _) = evtchn(&mut setup, 4, &port.to_le_bytes());
    assert_eq!(result, 0);
    assert_eq!(
        serial::take_console_lines(),
        ["(alpha) ring one", "(alpha) ring two"]
    );
    let ring = setup.hypervisor.domain(0).unwrap().console_interface();
    assert_eq!(
        ring.out_cons.load(core::sync::atomic::Ordering::SeqCst),
        start + text.len() as u32
    );
    assert!(hypercall_abi::evtchn2l::test_pending(
        setup.hypervisor.domain(0).unwrap().shared_info(),
        Port(port)
    ));
}

/// The console ring's `in[]` bytes from `in_cons` to `in_prod`, consumed as the guest would.
fn consume_input(setup: &Setup, slot: usize) -> Vec<u8> {
    use core::sync::atomic::Ordering;
    let ring = setup.hypervisor.domain(slot).unwrap().console_interface();
    let producer = ring.in_prod.load(Ordering::Acquire);
    let mut consumer = ring.in_cons.load(Ordering::Relaxed);
    let mut bytes = Vec::new();
    while consumer != producer {
        bytes.push(ring.input[hypercall_abi::shared::xencons_mask_in(consumer)]);
        consumer = consumer.wrapping_add(1);
    }
    ring.in_cons.store(consumer, Ordering::Release);
    bytes
}

fn console_port_pending(setup: &Setup, slot: usize, port: u32) -> bool {
    let shared = setup.hypervisor.domain(slot).unwrap().shared_info();
    hypercall_abi::evtchn2l::test_pending(shared, Port(port))
}

fn clear_console_port(setup: &Setup, slot: usize, port: u32) {
    let shared = setup.hypervisor.domain(slot).unwrap().shared_info();
    let word = &shared.evtchn_pending[port as usize / 64];
    word.fetch_and(!(1 << (port % 64)), core::sync::atomic::Ordering::SeqCst);
}

/// Types `bytes` on the fake UART and takes its receive interrupt (INTID 33).
fn type_keys(setup: &mut Setup, bytes: &[u8]) {
    serial::type_input(bytes);
    fake::raise_interrupt(33);
    setup.hypervisor.take_interrupts(&mut setup.cpu);
}

#[test]
fn console_input_goes_to_the_focused_domain_and_ctrl_a_three_times_switches() {
    let mut setup = setup(&["alpha", "beta"]);
    let port_a = setup.hypervisor.attach_console(0).unwrap();
    let port_b = setup.hypervisor.attach_console(1).unwrap();
    setup.hypervisor.start_console_input(Some(33));
    assert!(fake::enabled_spis().contains(&(33, arch::DEVICE_PRIORITY)));
    assert_eq!(setup.hypervisor.console_focus(), Some(0));
    clear_console_port(&setup, 0, port_a);
    type_keys(&mut setup, b"A-text\r");
    assert_eq!(consume_input(&setup, 0), b"A-text\r");
    assert!(console_port_pending(&setup, 0, port_a), "alpha signalled");
    assert!(consume_input(&setup, 1).is_empty());
    // Ctrl-A x3 switches to beta; the Ctrl-As themselves go nowhere.
    type_keys(&mut setup, &[1, 1, 1]);
    assert_eq!(setup.hypervisor.console_focus(), Some(1));
    clear_console_port(&setup, 1, port_b);
    type_keys(&mut setup, b"B\x01x\r");
    assert_eq!(
        consume_input(&setup, 1),
        b"B\x01x\r",
        "a lone Ctrl-A is delivered"
    );
    assert!(console_port_pending(&setup, 1, port_b), "beta signalled");
    assert!(consume_input(&setup, 0).is_empty());
    // Wraps around.
    type_keys(&mut setup, &[1, 1]);
    type_keys(&mut setup, &[1]);
    assert_eq!(setup.hypervisor.console_focus(), Some(0));
}

#[test]
fn console_input_waits_for_ring_space_and_moves_on_when_its_domain_ends() {
    let mut setup = setup(&["alpha", "beta"]);
    let port_a = setup.hypervisor.attach_console(0).unwrap();
    setup.hypervisor.attach_console(1).unwrap();
    setup.hypervisor.start_console_input(Some(33));
    // Fill in[] completely, then 100 more bytes: those wait.
    let size = hypercall_abi::shared::XENCONS_IN_SIZE;
    let first: Vec<u8> = (0..size + 100)
        .map(|index| b'a' + (index % 26) as u8)
        .collect();
    for chunk in first.chunks(200) {
        type_keys(&mut setup, chunk);
    }
    let ring = setup.hypervisor.domain(0).unwrap().console_interface();
    assert_eq!(
        ring.in_prod.load(core::sync::atomic::Ordering::SeqCst) as usize,
        size
    );
    assert_eq!(consume_input(&setup, 0), first[..size]);
    // The guest consumed and signals its console port: the rest arrives.
    let (result, _) = evtchn(&mut setup, 4, &port_a.to_le_bytes());
    assert_eq!(result, 0);
    assert_eq!(consume_input(&setup, 0), first[size..]);
    assert_eq!(setup.hypervisor.console_input_dropped(0), 0);
    // Beyond ring and queue, bytes are dropped and counted.
    let flood = std::vec![b'z'; size + crate::console_input::PENDING_CAPACITY + 10];
    for chunk in flood.chunks(200) {
        type_keys(&mut setup, chunk);
    }
    assert_eq!(setup.hypervisor.console_input_dropped(0), 10);
    // alpha (the focus, running) shuts down: beta gets the focus.
    assert_eq!(setup.cpu.current.unwrap().domain, 0);
    let ram = map_first_page(&setup);
    // SAFETY: sched_shutdown argument {reason = poweroff} in alpha's first page.
    unsafe { core::ptr::write_bytes(arch::phys_to_virt(ram), 0, 4) };
    hypercall(&mut setup, number::SCHED_OP, [2, 0x1000, 0, 0, 0]);
    assert_eq!(setup.hypervisor.console_focus(), Some(1));
}

#[test]
fn console_input_wakes_a_domain_blocked_on_an_idle_cpu() {
    let mut setup = setup(&["alpha"]);
    setup.hypervisor.attach_console(0).unwrap();
    setup.hypervisor.start_console_input(Some(33));
    enable_upcall(&mut setup, 0);
    // alpha waits for an interrupt with nothing deliverable: it blocks, the CPU idles.
    let next = setup.hypervisor.handle_exit(
        &mut setup.cpu,
        GuestExit::WaitFor {
            wait_for_event: false,
        },
        0,
    );
    assert_eq!(next, Next::Idle);
    // A key arrives: alpha's upcall is raised and it runs again on this CPU.
    serial::type_input(b"k");
    fake::raise_interrupt(33);
    let next = setup.hypervisor.take_interrupts(&mut setup.cpu);
    assert_eq!(next, Next::Resume);
    assert_eq!(setup.cpu.current.map(|current| current.domain), Some(0));
    assert_eq!(consume_input(&setup, 0), b"k");
}

#[test]
fn a_wfi_with_an_interrupt_waiting_in_a_list_register_does_not_block() {
    let mut setup = setup(&["alpha", "beta"]);
    enable_upcall(&mut setup, 0);
    // An event for alpha while it runs: on the way back in, its upcall goes into an LR.
    setup.hypervisor.raise_upcall(0, 0, 0);
    setup.hypervisor.enter_guest(&mut setup.cpu);
    // alpha, IRQs masked, waits for an interrupt without touching the LR; the exit finds
    // the LR as it was written. The interrupt is still waiting: alpha must not block (it
    // may yield to beta, as a WFI that returns at once allows).
    setup.hypervisor.leave_guest(&setup.cpu);
    let next = setup.hypervisor.handle_exit(
        &mut setup.cpu,
        GuestExit::WaitFor {
            wait_for_event: false,
        },
        0,
    );
    assert_eq!(next, Next::Resume);
    assert_ne!(
        setup.hypervisor.domain(0).unwrap().vcpus[0].state(),
        RunState::Blocked
    );
}

#[test]
fn fp_registers_are_switched_only_for_vcpus_that_used_them() {
    use crate::vcpu::FpContext;
    let live = || {
        let mut context = FpContext::default();
        fake::save_fp(&mut context);
        context
    };
    let mut setup = setup(&["alpha", "beta"]);
    // alpha has not used FP/SIMD: its first instruction traps.
    assert!(fake::fp_trapped());
    setup
        .hypervisor
        .handle_exit(&mut setup.cpu, GuestExit::FloatingPoint, 0);
    assert!(!fake::fp_trapped());
    assert!(setup.hypervisor.domain(0).unwrap().vcpus[0].uses_fp);
    assert_eq!(live(), FpContext::default(), "a fresh vCPU sees zeros");
    // alpha writes its FP registers, then yields: beta (no FP yet) runs with the trap set
    // and alpha's registers saved.
    let mut mine = FpContext::default();
    mine.q[3] = 0x1234;
    mine.fpcr = 1 << 24;
    fake::restore_fp(&mine);
    hypercall(&mut setup, number::SCHED_OP, [0, 0, 0, 0, 0]);
    assert_eq!(setup.cpu.current.unwrap().domain, 1);
    assert!(fake::fp_trapped());
    assert_eq!(setup.hypervisor.domain(0).unwrap().vcpus[0].fp, mine);
    // beta's first FP instruction loads its own (zero) registers, not alpha's.
    setup
        .hypervisor
        .handle_exit(&mut setup.cpu, GuestExit::FloatingPoint, 0);
    assert_eq!(live(), FpContext::default());
    // Back to alpha: its registers are loaded with it, no trap.
    hypercall(&mut setup, number::SCHED_OP, [0, 0, 0, 0, 0]);
    assert_eq!(setup.cpu.current.unwrap().domain, 0);
    assert!(!fake::fp_trapped());
    assert_eq!(live(), mine);
}

/// A trapped load taken half way, as `handle_guest_read` takes it: the lock-free step,
/// then the model's answer for a register that holds state.
fn answer_read(setup: &mut Setup, ipa: IntermediatePhysAddr, access: EmulatableAccess) -> bool {
    let hypervisor = &setup.hypervisor;
    virtual_interrupts::answer_read(&mut setup.cpu, ipa, access, |cpu, frame, offset| {
        hypervisor.answer_register_read(cpu, frame, offset, access)
    })
}

/// The same load taken by the full exit path from the registers `before`: the registers
/// it leaves (the vCPU resumes).
fn full_exit_read(
    setup: &mut Setup,
    before: GuestRegisters,
    ipa: IntermediatePhysAddr,
    access: EmulatableAccess,
) -> GuestRegisters {
    setup.cpu.frame = before;
    let abort = Abort {
        virtual_address: GuestVirtAddr::new(0),
        ipa,
        write: false,
        stage1_walk: false,
        kind: FaultKind::Translation(3),
        access: Some(access),
    };
    let exit = GuestExit::DataAbort(abort);
    assert_eq!(
        setup.hypervisor.exit_and_enter(&mut setup.cpu, exit, 0),
        Next::Resume
    );
    setup.cpu.frame
}

/// A trapped load from the virtual distributor that `answer_register_read` answers by
/// itself leaves the vCPU exactly as the full exit path would; one it cannot answer by
/// itself it declines without changing anything.
#[test]
fn a_register_read_answered_alone_matches_the_full_exit() {
    let mut setup = setup(&["alpha"]);
    setup.hypervisor.enter_guest(&mut setup.cpu);
    assert!(setup.cpu.list_registers_idle);
    let mut answered = 0;
    for offset in [
        0x0, 0x4, 0x8, 0x80, 0x100, 0x104, 0x200, 0x400, 0x7f8, 0x800, 0xc04, 0xf00, 0xfe8, 0x1000,
    ] {
        for (register, size) in [
            (0, 4),
            (5, 1),
            (18, 4),
            (19, 4),
            (29, 4),
            (30, 4),
            (31, 4),
            (3, 8),
        ] {
            let ipa = IntermediatePhysAddr::new(layout::GICD_BASE + offset);
            let access = EmulatableAccess {
                size,
                sign_extend: false,
                register,
                sixty_four_bit: true,
                acquire_release: false,
            };
            setup.cpu.frame.x = core::array::from_fn(|index| 0x1111_1111_1111 * index as u64);
            let before = setup.cpu.frame;
            if !answer_read(&mut setup, ipa, access) {
                assert_eq!(
                    setup.cpu.frame, before,
                    "declined at {offset:#x}: nothing changed"
                );
                // Declined only for an unsaved register or a read the model refuses.
                let refused = offset >= 0x1000
                    || setup.hypervisor.vgics[0]
                        .read(crate::vgic::Frame::Distributor, 0, offset, size)
                        .is_err();
                assert!(
                    (19..=29).contains(&register) || refused,
                    "{offset:#x} x{register} size {size}"
                );
                continue;
            }
            answered += 1;
            assert!(
                register <= 18 || register >= 30,
                "x19-x29 are not saved on this path"
            );
            let alone = setup.cpu.frame;
            assert_eq!(
                full_exit_read(&mut setup, before, ipa, access),
                alone,
                "{offset:#x} x{register} size {size}"
            );
            assert_eq!(alone.pc, before.pc + 4);
        }
    }
    assert!(answered > 40, "{answered}");
    // Nothing to answer a register with state from while list registers are in use (an
    // identification register does not care), and nothing at all with no vCPU.
    let control = IntermediatePhysAddr::new(layout::GICD_BASE);
    let typer = IntermediatePhysAddr::new(layout::GICD_BASE + 4);
    let access = EmulatableAccess {
        size: 4,
        sign_extend: false,
        register: 0,
        sixty_four_bit: false,
        acquire_release: false,
    };
    setup.cpu.list_registers_idle = false;
    assert!(!answer_read(&mut setup, control, access));
    assert!(answer_read(&mut setup, typer, access));
    setup.cpu.list_registers_idle = true;
    assert!(answer_read(&mut setup, control, access));
    setup.cpu.current = None;
    assert!(!answer_read(&mut setup, control, access));
    assert!(!answer_read(&mut setup, typer, access));
}

/// A trapped load from an identification register, answered from the CPU's copy of the
/// vGIC's shape without the lock, leaves the vCPU exactly as the full exit path would;
/// every other load it declines without changing anything. A GICv3 domain with two
/// vCPUs, so that the copy a CPU starts with (GICv2, one vCPU) would give other answers.
#[test]
fn an_identity_read_answered_without_the_lock_matches_the_full_exit() {
    let mut setup = setup_with_gic(&["alpha"], 2, gic_v3(2));
    let shape = setup.hypervisor.vgics[0].shape();
    assert_eq!(shape.version(), GicVersion::V3);
    assert_eq!(
        setup.cpu.vgic_shape, shape,
        "copied when the vCPU was loaded"
    );
    let distributor = layout::GICD_BASE;
    let second_redistributor = layout::GICR_BASE + layout::GICR_SIZE_PER_VCPU;
    let mut answered = 0;
    for ipa in [
        distributor,             // GICD_CTLR: state
        distributor + 0x4,       // GICD_TYPER
        distributor + 0x8,       // GICD_IIDR
        distributor + 0x104,     // GICD_ISENABLER1: state
        distributor + 0xffe8,    // GICD_PIDR2
        layout::GICR_BASE + 0x8, // GICR_TYPER of vCPU 0
        second_redistributor + 0x8,
        second_redistributor + 0xc,
        second_redistributor + 0x14, // GICR_WAKER: state
        second_redistributor + 0xffe8,
        second_redistributor + 0x1_0100, // GICR_ISENABLER0: state
        layout::GICR_BASE + 2 * layout::GICR_SIZE_PER_VCPU, // beyond the last
    ] {
        for (register, size) in [(0, 4), (7, 8), (18, 2), (20, 4), (30, 4), (31, 4)] {
            let access = EmulatableAccess {
                size,
                sign_extend: false,
                register,
                sixty_four_bit: true,
                acquire_release: false,
            };
            let ipa = IntermediatePhysAddr::new(ipa);
            setup.cpu.frame.x = core::array::from_fn(|index| 0x1111_1111_1111 * index as u64);
            let before = setup.cpu.frame;
            if !(virtual_interrupts::answer_identity_read(&mut setup.cpu, ipa, access)
                == LockFreeRead::Answered)
            {
                assert_eq!(
                    setup.cpu.frame, before,
                    "declined at {ipa:?}: nothing changed"
                );
                continue;
            }
            answered += 1;
            assert!(
                access.in_partial_frame(),
                "x{register} is not in the partial frame"
            );
            let alone = setup.cpu.frame;
            assert_eq!(
                full_exit_read(&mut setup, before, ipa, access),
                alone,
                "{ipa:?} x{register} size {size}"
            );
        }
    }
    // Each of the seven identification registers into x0, x30 and XZR (four bytes; both
    // whole GICR_TYPERs also into x7 as eight), and no state register or bad size.
    assert_eq!(answered, 7 * 3 + 2, "{answered}");
    // The vCPU 1 frame's GICR_TYPER says Last: the shape is the domain's, not the CPU's
    // starting one.
    let access = EmulatableAccess {
        size: 8,
        sign_extend: false,
        register: 0,
        sixty_four_bit: true,
        acquire_release: false,
    };
    let ipa = IntermediatePhysAddr::new(second_redistributor + 0x8);
    let lock_free = |cpu: &mut CpuState| virtual_interrupts::answer_identity_read(cpu, ipa, access);
    assert_eq!(lock_free(&mut setup.cpu), LockFreeRead::Answered);
    assert_eq!(setup.cpu.frame.x[0], (1 << 32) | (1 << 8) | (1 << 4));
    // A register with state goes to the model, decoded.
    let ipa = IntermediatePhysAddr::new(second_redistributor + 0x14);
    let access = EmulatableAccess { size: 4, ..access };
    assert_eq!(
        virtual_interrupts::answer_identity_read(&mut setup.cpu, ipa, access),
        LockFreeRead::NeedsModel(
            crate::vgic::Frame::Redistributors,
            layout::GICR_SIZE_PER_VCPU + 0x14
        )
    );
    // Were the CPU's copy not the domain's shape (it always is), the model still checks
    // each decoded offset against its own frames: a third vCPU's redistributor is
    // decoded, then refused, and the full path takes the load.
    setup.cpu.vgic_shape = crate::vgic::Shape::new(GicVersion::V3, 3);
    let third =
        IntermediatePhysAddr::new(layout::GICR_BASE + 2 * layout::GICR_SIZE_PER_VCPU + 0x14);
    let before = setup.cpu.frame;
    assert_eq!(
        virtual_interrupts::answer_identity_read(&mut setup.cpu, third, access),
        LockFreeRead::NeedsModel(
            crate::vgic::Frame::Redistributors,
            2 * layout::GICR_SIZE_PER_VCPU + 0x14
        )
    );
    assert!(!answer_read(&mut setup, third, access));
    assert_eq!(setup.cpu.frame, before);
    setup.cpu.vgic_shape = shape;
    assert!(answer_read(&mut setup, ipa, access), "GICR_WAKER of vCPU 1");
    setup.cpu.current = None;
    assert_eq!(lock_free(&mut setup.cpu), LockFreeRead::Declined);
}

/// A hypercall that involves only its caller (`hypercall::is_local`), answered by
/// `answer_local_hypercall` with the partial frame, leaves the vCPU and the console as
/// the full exit does; any other call is declined without a change.
#[test]
fn a_local_hypercall_answered_alone_matches_the_full_exit() {
    let mut setup = setup(&["alpha"]);
    let ram = map_first_page(&setup);
    // SAFETY: the first RAM page of the test domain, in fake RAM.
    unsafe { core::ptr::copy_nonoverlapping(b"x\n".as_ptr(), arch::phys_to_virt(ram), 2) };
    // Each 128-byte part of the long write ends its line, so no partial line carries
    // over from one way to the other.
    // SAFETY: as above.
    unsafe { arch::phys_to_virt(ram).add(127).write(b'\n') };
    let calls: [(u64, [u64; 5]); 8] = [
        (number::CONSOLE_IO, [0, 2, 0x1000, 0, 0]),
        (number::CONSOLE_IO, [0, 300, 0x1000, 0, 0]),
        (number::CONSOLE_IO, [0, 16, 0x1ff8, 0, 0]),
        (number::CONSOLE_IO, [1, 16, 0x1000, 0, 0]),
        (number::CONSOLE_IO, [7, 0, 0, 0, 0]),
        (number::XEN_VERSION, [0, 0, 0, 0, 0]),
        (number::XEN_VERSION, [1, 0x1000, 0, 0, 0]),
        (number::XEN_VERSION, [6, 0x3000, 0, 0, 0]),
    ];
    for (call, args) in calls {
        setup.cpu.frame.x = core::array::from_fn(|index| 0x2222 * index as u64);
        setup.cpu.frame.x[16] = call;
        setup.cpu.frame.x[..5].copy_from_slice(&args);
        let before = setup.cpu.frame;
        assert!(setup.hypervisor.answer_local_hypercall(&mut setup.cpu));
        let alone = (setup.cpu.frame, serial::take_console_lines());
        setup.cpu.frame = before;
        let next = setup.hypervisor.exit_and_enter(
            &mut setup.cpu,
            GuestExit::Hypercall { immediate: 0xea1 },
            0,
        );
        assert_eq!(next, Next::Resume);
        assert_eq!(
            (setup.cpu.frame, serial::take_console_lines()),
            alone,
            "{call} {args:x?}"
        );
    }
    for call in [
        number::SCHED_OP,
        number::EVENT_CHANNEL_OP,
        number::MEMORY_OP,
        99,
    ] {
        setup.cpu.frame.x[16] = call;
        let before = setup.cpu.frame;
        assert!(!setup.hypervisor.answer_local_hypercall(&mut setup.cpu));
        assert_eq!(setup.cpu.frame, before);
    }
    setup.cpu.frame.x[16] = number::XEN_VERSION;
    setup.cpu.current = None;
    assert!(!setup.hypervisor.answer_local_hypercall(&mut setup.cpu));
}

/// Everything an event-channel operation may change, as text: x0 and the argument bytes
/// the caller sees, the list registers, every domain's vGIC model, event bits and upcall
/// flags, the vCPUs' interrupt state and the CPU's entry state, and the console output.
fn event_channel_outcome(setup: &mut Setup, argument_length: usize) -> std::string::String {
    use core::sync::atomic::Ordering::SeqCst;
    use std::fmt::Write;
    let mut text = std::format!(
        "x0 {:#x}, frame {:?}\n",
        setup.cpu.frame.x[0],
        setup.cpu.frame
    );
    let ram = setup.hypervisor.domain(0).unwrap().ram.start;
    let mut argument = std::vec![0u8; argument_length];
    // SAFETY: the test domain's first RAM page, in fake RAM.
    unsafe {
        core::ptr::copy_nonoverlapping(
            arch::phys_to_virt(ram),
            argument.as_mut_ptr(),
            argument.len(),
        )
    };
    let _ = writeln!(
        text,
        "argument {argument:?}, LRs {:x?}",
        take_list_registers()
    );
    for slot in 0..2 {
        let Some(domain) = setup.hypervisor.domain(slot) else {
            continue;
        };
        let shared = domain.shared_info();
        let pending: Vec<u64> = shared
            .evtchn_pending
            .iter()
            .map(|word| word.load(SeqCst))
            .collect();
        let masked: Vec<u64> = shared
            .evtchn_mask
            .iter()
            .map(|word| word.load(SeqCst))
            .collect();
        let _ = writeln!(
            text,
            "domain {slot}: pending {pending:x?} masked {masked:x?}"
        );
        let _ = writeln!(text, "  vgic {:?}", setup.hypervisor.vgics[slot]);
        for (index, vcpu) in domain.vcpus.iter().enumerate() {
            let info = domain.vcpu_info(index).unwrap();
            let _ = writeln!(
                text,
                "  vcpu {index}: upcall {} selector {:x} state {:?} interrupts {:?}",
                info.evtchn_upcall_pending.load(SeqCst),
                info.evtchn_pending_sel.load(SeqCst),
                vcpu.state(),
                vcpu.interrupts
            );
        }
    }
    let cpu = &setup.cpu;
    let _ = writeln!(
        text,
        "cpu: idle {} generation {} last {:?}, console {:?}",
        cpu.list_registers_idle,
        cpu.entered_generation,
        cpu.last,
        serial::take_console_lines()
    );
    text
}

/// EVTCHNOP `cmd` with `argument` at guest VA `address` (0x1000 maps the first RAM
/// page), from the state `prepare` leaves before vCPU 0 of "alpha" is entered, both
/// ways: answered half way (`answer_event_channel_op`) and by the full exit. Both must leave
/// everything [`event_channel_outcome`] shows the same; returns that.
fn event_channel_op_both_ways(
    prepare: impl Fn(&mut Setup),
    cmd: u64,
    argument: &[u8],
    address: u64,
) -> std::string::String {
    let run = |half_way: bool| {
        let mut setup = setup(&["alpha", "beta"]);
        take_list_registers();
        map_first_page(&setup);
        prepare(&mut setup);
        poke(&setup, 0, argument);
        setup.hypervisor.enter_guest(&mut setup.cpu);
        let _ = serial::take_console_lines();
        setup.cpu.frame.x = core::array::from_fn(|index| 0x3333 * index as u64);
        setup.cpu.frame.x[16] = number::EVENT_CHANNEL_OP;
        setup.cpu.frame.x[..2].copy_from_slice(&[cmd, address]);
        if half_way {
            assert!(setup.hypervisor.answer_event_channel_op(&mut setup.cpu));
        } else {
            let exit = GuestExit::Hypercall { immediate: 0xea1 };
            let next = setup.hypervisor.exit_and_enter(&mut setup.cpu, exit, 0);
            assert_eq!(next, Next::Resume);
        }
        event_channel_outcome(&mut setup, argument.len().max(24))
    };
    let (half_way, full) = (run(true), run(false));
    for (alone, exit) in half_way.lines().zip(full.lines()) {
        assert_eq!(
            alone, exit,
            "EVTCHNOP {cmd:#x} at {address:#x}: half way, then full exit"
        );
    }
    half_way
}

/// A loopback channel in "alpha" (ports a, b) with nothing pending, and an interdomain
/// channel from "alpha" (port c) to "beta"; returns (a, b, c). Both domains' upcall
/// PPIs enabled unless `upcall_enabled` is false.
fn event_channels_for_both_ways(setup: &mut Setup, upcall_enabled: bool) -> (u32, u32, u32) {
    use core::sync::atomic::Ordering::SeqCst;
    if upcall_enabled {
        enable_upcall(setup, 0);
        enable_upcall(setup, 1);
    }
    // alloc_unbound {dom = SELF, remote = SELF} -> a; bind_interdomain {SELF, a} -> b.
    let mut request = std::vec![0u8; 8];
    request[0..2].copy_from_slice(&0x7ff0u16.to_le_bytes());
    request[2..4].copy_from_slice(&0x7ff0u16.to_le_bytes());
    let (_, back) = evtchn(setup, 6, &request);
    let a = le32(&back, 4);
    let mut request = std::vec![0u8; 12];
    request[0..2].copy_from_slice(&0x7ff0u16.to_le_bytes());
    request[4..8].copy_from_slice(&a.to_le_bytes());
    let (_, back) = evtchn(setup, 0, &request);
    let b = le32(&back, 8);
    let (c, _) = setup.hypervisor.connect_channel(0, 1).unwrap();
    for slot in 0..2 {
        let domain = setup.hypervisor.domain(slot).unwrap();
        for word in &domain.shared_info().evtchn_pending {
            word.store(0, SeqCst);
        }
        for index in 0..domain.vcpus.len() {
            let info = domain.vcpu_info(index).unwrap();
            info.evtchn_upcall_pending.store(0, SeqCst);
            info.evtchn_pending_sel.store(0, SeqCst);
        }
    }
    // The guest takes the upcalls the bindings raised (its LRs empty), and the next exit
    // folds that back: no LR in use, nothing pending.
    take_list_registers();
    hypercall(setup, number::XEN_VERSION, [0; 5]);
    (a, b, c)
}

/// Event-channel operations answered half way, with only the caller-saved registers,
/// leave what the full exit leaves, in every case the half-way path tells apart: an
/// upcall for the caller itself straight into a free LR (and with the upcall disabled,
/// or another interrupt in an LR), an event for another domain, the console port, and
/// operations that fail or write their argument back.
#[test]
fn an_event_channel_op_answered_half_way_matches_the_full_exit() {
    let channels = |setup: &mut Setup| event_channels_for_both_ways(setup, true);
    let plain = |setup: &mut Setup| {
        channels(setup);
    };
    let mut probe = setup(&["alpha", "beta"]);
    let (a, b, c) = channels(&mut probe);
    assert!(probe.cpu.list_registers_idle && probe.cpu.last == probe.cpu.current);
    drop(probe);
    const SEND: u64 = 4;
    // The usual case: an upcall for the caller, returning with no LR in use.
    let own = event_channel_op_both_ways(plain, SEND, &b.to_le_bytes(), 0x1000);
    assert!(own.contains("x0 0x0,"), "{own}");
    assert!(own.contains("idle false"), "the upcall is in an LR: {own}");
    // The upcall PPI disabled: pending in the model, no LR.
    event_channel_op_both_ways(
        |setup| {
            event_channels_for_both_ways(setup, false);
        },
        SEND,
        &b.to_le_bytes(),
        0x1000,
    );
    // Another interrupt already in an LR: the general way (fold back, fill again).
    event_channel_op_both_ways(
        |setup| {
            channels(setup);
            enable_ppi(setup, 0, 20);
            setup.hypervisor.vgics[0].set_pending(0, 20);
        },
        SEND,
        &b.to_le_bytes(),
        0x1000,
    );
    // An event for the other domain; its vCPU is not running here.
    let other = event_channel_op_both_ways(plain, SEND, &c.to_le_bytes(), 0x1000);
    assert!(
        other.contains("idle true"),
        "nothing for the caller: {other}"
    );
    assert!(
        other.contains("domain 1: pending [2,"),
        "port 1 of beta: {other}"
    );
    // The console port: the hypervisor serves the ring.
    event_channel_op_both_ways(
        |setup| {
            channels(setup);
            let port = setup.hypervisor.attach_console(0).unwrap();
            poke(setup, 0x800, &port.to_le_bytes());
        },
        SEND,
        &[],
        0x1800,
    );
    // Failures: a port that does not exist, an argument the guest cannot reach, a sub-op
    // that does not exist (also with bits above the 32 Xen reads), and the upper bits of
    // a known one ignored as Xen does.
    let missing = event_channel_op_both_ways(plain, SEND, &999u32.to_le_bytes(), 0x1000);
    assert!(
        missing.contains(&std::format!("x0 {:#x},", Errno::EINVAL.to_return())),
        "{missing}"
    );
    let unreachable = event_channel_op_both_ways(plain, SEND, &b.to_le_bytes(), 0x5000);
    assert!(
        unreachable.contains(&std::format!("x0 {:#x},", Errno::EFAULT.to_return())),
        "{unreachable}"
    );
    for cmd in [11, 99, 1 << 32 | 11] {
        let unknown = event_channel_op_both_ways(plain, cmd, &[0; 24], 0x1000);
        assert!(
            unknown.contains(&std::format!("x0 {:#x},", Errno::ENOSYS.to_return())),
            "{unknown}"
        );
    }
    event_channel_op_both_ways(plain, 1 << 32 | SEND, &b.to_le_bytes(), 0x1000);
    // Operations with OUT fields: alloc_unbound, status; and unmask of a pending port.
    let mut request = std::vec![0u8; 8];
    request[0..2].copy_from_slice(&0x7ff0u16.to_le_bytes());
    request[2..4].copy_from_slice(&1u16.to_le_bytes());
    event_channel_op_both_ways(plain, 6, &request, 0x1000);
    let mut request = std::vec![0u8; 24];
    request[0..2].copy_from_slice(&0x7ff0u16.to_le_bytes());
    request[4..8].copy_from_slice(&c.to_le_bytes());
    event_channel_op_both_ways(plain, 5, &request, 0x1000);
    event_channel_op_both_ways(
        |setup| {
            channels(setup);
            let shared = setup.hypervisor.domain(0).unwrap().shared_info();
            hypercall_abi::evtchn2l::set_pending(shared, Port(a));
            shared.evtchn_mask[0].fetch_or(1 << a, core::sync::atomic::Ordering::SeqCst);
        },
        9,
        &a.to_le_bytes(),
        0x1000,
    );
}

proptest::proptest! {
    /// `is_local`'s promise: whatever the arguments, a local call's outcome is a value to
    /// return or a continuation, never anything that needs the rest of the exit path.
    #[test]
    fn a_local_call_only_returns_or_continues(
        args in proptest::array::uniform5(proptest::prop_oneof![
            0u64..32,
            0x0f00u64..0x2100,
            proptest::num::u64::ANY,
        ]),
    ) {
        let mut setup = setup(&["alpha"]);
        map_first_page(&setup);
        let Hypervisor { domains, frames, .. } = &mut *setup.hypervisor;
        let domain = domains[0].as_mut().unwrap();
        for call in (0..hypercall_abi::hypercall::MAX).filter(|call| hypercall::is_local(*call)) {
            let outcome = hypercall::dispatch(domain, 0, frames, call, args);
            proptest::prop_assert!(
                matches!(outcome, Outcome::Return(_) | Outcome::Continue { .. }),
                "{} {:?}",
                call,
                outcome
            );
        }
        let _ = serial::take_console_lines();
    }
}

/// The list registers of the fake GIC, read and then cleared (the tests of one thread
/// share them).
fn take_list_registers() -> [u64; 4] {
    core::array::from_fn(|index| {
        let value = arch::read_list_register(index);
        arch::write_list_register(index, 0);
        value
    })
}

/// The guest's virtual timer taken both ways from the state `prepare` leaves before the
/// vCPU's entry: by the full interrupt exit, and by `answer_interrupt` with the partial
/// frame. Both must leave the same list registers, vGIC model, vCPU interrupt state and
/// CPU state.
fn timer_both_ways(prepare: impl Fn(&mut Setup)) {
    let timer = arch::virtual_timer_intid();
    let run = |alone: bool| {
        let mut setup = setup(&["alpha"]);
        prepare(&mut setup);
        setup.hypervisor.enter_guest(&mut setup.cpu);
        if alone {
            let acknowledged = arch::Acknowledged {
                raw: timer,
                intid: timer,
            };
            assert!(setup
                .hypervisor
                .answer_interrupt(&mut setup.cpu, acknowledged));
        } else {
            fake::raise_interrupt(timer);
            setup.hypervisor.leave_guest(&setup.cpu);
            let next = setup.hypervisor.take_interrupts(&mut setup.cpu);
            assert_eq!(setup.hypervisor.settle(&mut setup.cpu, next), Next::Resume);
            setup.hypervisor.enter_guest(&mut setup.cpu);
        }
        let vcpu = &setup.hypervisor.domain(0).unwrap().vcpus[0];
        let cpu = &setup.cpu;
        (
            take_list_registers(),
            std::format!("{:?}", setup.hypervisor.vgics[0]),
            std::format!("{:?}", vcpu.interrupts),
            (cpu.list_registers_idle, cpu.entered_generation, cpu.last),
        )
    };
    assert_eq!(run(true), run(false));
}

/// The timer's interrupt goes the short way (`deliver_own_timer`: no LR in use, the vCPU
/// returning) and the general one (another interrupt in an LR; the timer disabled), and
/// ends as the full exit leaves it every time.
#[test]
fn the_timer_answered_alone_matches_the_full_exit_in_every_state() {
    let timer = arch::virtual_timer_intid();
    // No LR in use: the short way.
    timer_both_ways(|setup| enable_ppi(setup, 0, timer));
    // The timer disabled: made pending in the model, no LR.
    timer_both_ways(|_| {});
    // Another PPI in an LR (pending, not yet acknowledged): the general way.
    timer_both_ways(|setup| {
        enable_ppi(setup, 0, timer);
        enable_ppi(setup, 0, 20);
        setup.hypervisor.vgics[0].set_pending(0, 20);
    });
    // Every LR full (4 in the fake), the timer waits in the model.
    timer_both_ways(|setup| {
        enable_ppi(setup, 0, timer);
        for intid in 16..21 {
            enable_ppi(setup, 0, intid);
            setup.hypervisor.vgics[0].set_pending(0, intid);
        }
    });
}

/// The guest's virtual timer, taken by `answer_interrupt` with the partial frame, ends
/// as the full interrupt exit leaves it: the same list registers, model and CPU state,
/// the live timer masked; other interrupts are declined without a change, and the full
/// path handles the one the vectors acknowledged before any other.
#[test]
fn an_interrupt_answered_alone_matches_the_full_exit() {
    let timer = arch::virtual_timer_intid();
    let acknowledged = arch::Acknowledged {
        raw: timer,
        intid: timer,
    };
    let mut full = setup(&["alpha"]);
    enable_ppi(&mut full, 0, timer);
    full.hypervisor.enter_guest(&mut full.cpu);
    fake::raise_interrupt(timer);
    full.hypervisor.leave_guest(&full.cpu);
    let next = full.hypervisor.take_interrupts(&mut full.cpu);
    assert_eq!(full.hypervisor.settle(&mut full.cpu, next), Next::Resume);
    full.hypervisor.enter_guest(&mut full.cpu);
    let full_list_registers = take_list_registers();
    // (The test domains have a GICv2.)
    assert_eq!(
        crate::vgic::list_registers::decode_gicv2(full_list_registers[0] as u32).map(|lr| lr.intid),
        Some(timer)
    );
    drop(full);

    let mut alone = setup(&["alpha"]);
    enable_ppi(&mut alone, 0, timer);
    alone.hypervisor.enter_guest(&mut alone.cpu);
    let mut live = crate::vcpu::El1Context::default();
    arch::restore_el1(&live);
    assert!(alone
        .hypervisor
        .answer_interrupt(&mut alone.cpu, acknowledged));
    assert_eq!(take_list_registers(), full_list_registers);
    arch::save_el1(&mut live);
    assert_ne!(
        live.cntv_ctl_el0 & TIMER_IMASK,
        0,
        "the live timer is masked"
    );
    assert!(!alone.cpu.list_registers_idle);
    assert!(alone.cpu.taken.is_none());

    // Anything that may reschedule goes to the full path, unchanged.
    let frame = alone.cpu.frame;
    let generation = alone.hypervisor.vgics[0].generation();
    let maintenance = arch::maintenance_intid().unwrap();
    for intid in [arch::el2_timer_intid(), arch::kick_intid(), maintenance, 33] {
        let other = arch::Acknowledged { raw: intid, intid };
        assert!(!alone.hypervisor.answer_interrupt(&mut alone.cpu, other));
    }
    assert_eq!(alone.cpu.frame, frame);
    assert_eq!(alone.hypervisor.vgics[0].generation(), generation);
    // So does everything without a running vCPU.
    let current = alone.cpu.current.take();
    assert!(!alone
        .hypervisor
        .answer_interrupt(&mut alone.cpu, acknowledged));
    alone.cpu.current = current;

    // What the vectors acknowledged and passed on is handled first, once.
    let generation = alone.hypervisor.vgics[0].generation();
    alone.cpu.taken = Some(acknowledged);
    alone.hypervisor.take_interrupts(&mut alone.cpu);
    assert!(alone.cpu.taken.is_none());
    assert_ne!(alone.hypervisor.vgics[0].generation(), generation);
    take_list_registers();
}
