//! The hypervisor's exit path on the host: a `Hypervisor` with two domains built in fake
//! RAM (as `hyp/src/hypervisor_tests.rs` does) takes arbitrary sequences of exits from
//! whichever vCPU runs: Xen hypercalls (`HVC #0xEA1`) with arbitrary numbers and
//! registers (offered half way first, as the vectors do, or straight to the full exit),
//! SMCCC/PSCI calls, and raw syndromes (`ESR`, `FAR`, `HPFAR`) decoded by
//! `esr::decode_guest_exit`, so data aborts reach the vGIC emulation and the fault path.
//! Pointer arguments point into the running domain's own pages (one writable, one
//! read-only, one uncached), or anywhere.
//!
//! Invariants: nothing panics; every Xen hypercall that comes back to the same vCPU
//! answers a result or a valid errno in x0; a load the exit vectors would answer alone
//! (`virtual_interrupts::answer_read`) ends exactly as the full exit ends it; guest memory that no pointer of the calls can
//! reach is never written while its domain lives (either domain: an ended one is
//! scrubbed); and when the domains can be shut down at the end, every frame they held is
//! back in the pool.
#![no_main]

use hyp::addr::{AddrRange, PhysAddr};
use hyp::arch::fake;
use hyp::bootpack::DomainImage;
use hyp::cpu::{CpuState, VcpuId};
use hyp::domain::DomainState;
use hyp::domain_dt::{layout, GuestGic};
use hyp::esr::{self, GuestExit};
use hyp::hypervisor::{DomainSchedule, Hypervisor, Next};
use hyp::mm::frames::FrameAllocator;
use hypercall_abi::hypercall as number;
use hypercall_abi::psci;
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const POOL_BASE: u64 = fake::FAKE_RAM_BASE + 0x0400_0000;
const POOL_SIZE: u64 = 0x0400_0000;
/// Guest VAs the fake stage 1 maps, to the running domain's RAM pages 0, 1 and 3.
const WRITABLE_VA: u64 = 0x1000;
const READ_ONLY_VA: u64 = 0x2000;
const UNCACHED_VA: u64 = 0x4000;

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Arg {
    Small(u8),
    /// An offset into the writable page (it may run past its end).
    Writable(u16),
    ReadOnly(u16),
    Uncached(u16),
    Negative(u8),
    Raw(u64),
}

impl Arg {
    fn value(self) -> u64 {
        match self {
            Arg::Small(value) => u64::from(value),
            Arg::Writable(offset) => WRITABLE_VA + u64::from(offset % 0x1100),
            Arg::ReadOnly(offset) => READ_ONLY_VA + u64::from(offset % 0x1100),
            Arg::Uncached(offset) => UNCACHED_VA + u64::from(offset % 0x1100),
            Arg::Negative(value) => (-i64::from(value) - 1) as u64,
            Arg::Raw(value) => value,
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Exit {
    Hypercall {
        number: u8,
        args: [Arg; 5],
        /// Offered to the vectors' half-way paths first, as the vectors offer it
        /// (`Hypervisor::answer_event_channel_op`, `answer_local_hypercall`).
        half_way: bool,
    },
    Psci {
        function: u8,
        args: [Arg; 3],
    },
    /// An arbitrary synchronous exit, through the ESR decoder.
    Raw {
        class: u8,
        iss: u32,
        far: u64,
        ipa_page: u32,
    },
    /// Bytes the guest writes into its writable page (argument structs).
    Poke {
        offset: u16,
        bytes: [u8; 8],
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    gic_v3: bool,
    two_vcpus: bool,
    page: [u8; 64],
    exits: Vec<Exit>,
}

const PSCI_FUNCTIONS: [u32; 18] = [
    psci::PSCI_VERSION,
    psci::CPU_SUSPEND_32,
    psci::CPU_SUSPEND_64,
    psci::CPU_OFF,
    psci::CPU_ON_32,
    psci::CPU_ON_64,
    psci::AFFINITY_INFO_32,
    psci::AFFINITY_INFO_64,
    psci::MIGRATE_INFO_TYPE,
    psci::SYSTEM_OFF,
    psci::SYSTEM_RESET,
    psci::PSCI_FEATURES,
    psci::SYSTEM_SUSPEND_64,
    psci::SYSTEM_RESET2_64,
    psci::SMCCC_VERSION,
    psci::SMCCC_ARCH_FEATURES,
    psci::SMCCC_ARCH_WORKAROUND_1,
    psci::VENDOR_HYP_CALL_UID,
];

/// x0 after a Xen hypercall: a result or a valid errno.
fn assert_result(x0: u64) {
    let x0 = x0 as i64;
    assert!(x0 >= -4095, "x0 {x0:#x} is neither a result nor an errno");
    if x0 < 0 {
        assert!(
            hypercall_abi::errno::Errno::from_return(x0 as u64).is_some(),
            "unknown errno {x0}"
        );
    }
}

fn image() -> &'static [u8] {
    static IMAGE: OnceLock<Vec<u8>> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let mut image = vec![0u8; 4096];
        image[16..24].copy_from_slice(&4096u64.to_le_bytes()); // image_size
        image[24..32].copy_from_slice(&0xau64.to_le_bytes()); // flags: LE, 4K, anywhere
        image[56..60].copy_from_slice(b"ARM\x64");
        image
    })
}

/// Points the fake stage 1 at the running domain's own pages.
fn map_current(hypervisor: &Hypervisor, current: VcpuId) -> Option<PhysAddr> {
    let ram = hypervisor.domain(current.domain)?.ram.start;
    fake::set_guest_translation(&[
        (WRITABLE_VA, ram.raw(), true, false),
        (READ_ONLY_VA, ram.raw() + 0x1000, false, false),
        (UNCACHED_VA, ram.raw() + 0x3000, true, true),
    ]);
    Some(ram)
}

fn write_guest(ram: PhysAddr, offset: u64, bytes: &[u8]) {
    let offset = offset % (0x1000 - bytes.len() as u64);
    // SAFETY: the first RAM page of a live domain, inside fake RAM, written while no
    // other reference to it exists (the hypervisor is between exits).
    unsafe {
        core::ptr::copy_nonoverlapping(
            bytes.as_ptr(),
            fake::phys_to_virt(ram.add(offset)),
            bytes.len(),
        );
    }
}

/// Parts of a domain's RAM that no guest pointer of this target can reach (the fake
/// stage 1 maps only RAM pages 0, 1 and 3): the rest of the first 64 KiB, the kernel's
/// first page, the first 16 KiB of the device tree. The hypervisor must never write
/// there, whichever domain makes the calls.
fn unreachable_ranges(ram: PhysAddr) -> [(PhysAddr, usize); 4] {
    const MIB: u64 = 1024 * 1024;
    [
        (ram.add(0x2000), 0x1000),
        (ram.add(0x4000), 0xc000),
        (ram.add(layout::KERNEL_OFFSET), 0x1000),
        (ram.add(8 * MIB - layout::DT_OFFSET_FROM_END), 0x4000),
    ]
}

fn snapshot(ram: PhysAddr) -> Vec<u8> {
    let mut bytes = Vec::new();
    for (start, size) in unreachable_ranges(ram) {
        // SAFETY: inside the domain's RAM in fake RAM; nothing writes it meanwhile.
        bytes.extend_from_slice(unsafe {
            core::slice::from_raw_parts(fake::phys_to_virt(start), size)
        });
    }
    bytes
}

/// An empty hypervisor, built in place for each input in one static slot (the model is
/// large: hundreds of KiB).
fn fresh_hypervisor() -> &'static mut Hypervisor {
    static mut SLOT: core::mem::MaybeUninit<Hypervisor> = core::mem::MaybeUninit::uninit();
    // SAFETY: libFuzzer runs inputs one at a time on one thread; nothing else touches the
    // slot, and the previous input's hypervisor is no longer used (it needs no drop).
    let slot = unsafe { &mut *core::ptr::addr_of_mut!(SLOT) };
    Hypervisor::initialise_in_place(slot)
}

fuzz_target!(|input: Input| {
    let _guard = fake::guest_translation_lock();
    let pool = [AddrRange::new(PhysAddr::new(POOL_BASE), POOL_SIZE)];
    let frames = FrameAllocator::new(&pool, &[]).expect("the pool fits");
    let free_before = frames.free_bytes();
    let hypervisor = fresh_hypervisor();
    hypervisor
        .set_up(frames, true, 1, 1_000_000)
        .expect("scheduler");
    let vcpus = if input.two_vcpus { 2 } else { 1 };
    for (slot, name) in ["attacker", "victim"].iter().enumerate() {
        let entry = DomainImage {
            name,
            memory_mib: 8,
            vcpus,
            image: image(),
            initrd: &[],
            cmdline: "",
        };
        let gic = if input.gic_v3 {
            GuestGic::standard_v3(vcpus)
        } else {
            GuestGic::standard_v2()
        };
        hypervisor
            .build_domain(
                slot,
                &entry,
                DomainSchedule::default(),
                gic,
                &Default::default(),
            )
            .expect("the domains fit");
    }
    let rams: Vec<PhysAddr> = (0..2)
        .filter_map(|slot| hypervisor.domain(slot).map(|domain| domain.ram.start))
        .collect();
    let before: Vec<Vec<u8>> = rams.iter().map(|&ram| snapshot(ram)).collect();
    let mut cpu = CpuState::new(0);
    assert_eq!(hypervisor.schedule(&mut cpu), Next::Resume);
    if let Some(ram) = cpu
        .current
        .and_then(|current| map_current(hypervisor, current))
    {
        write_guest(ram, 0, &input.page);
    }

    for exit in input.exits.iter().take(64) {
        let Some(current) = cpu.current else { break };
        let Some(ram) = map_current(hypervisor, current) else {
            break;
        };
        let mut answered_alone = None;
        let (guest_exit, esr_value) = match *exit {
            Exit::Poke { offset, bytes } => {
                write_guest(ram, u64::from(offset), &bytes);
                continue;
            }
            Exit::Hypercall {
                number: call,
                args,
                half_way,
            } => {
                cpu.frame.x[16] = u64::from(call % 64);
                for (register, arg) in cpu.frame.x.iter_mut().zip(args) {
                    *register = arg.value();
                }
                if half_way {
                    let before = cpu.frame;
                    let answered = if cpu.frame.x[16] == number::EVENT_CHANNEL_OP {
                        hypervisor.answer_event_channel_op(&mut cpu)
                    } else {
                        hypervisor.answer_local_hypercall(&mut cpu)
                    };
                    if answered {
                        assert_eq!(cpu.current, Some(current), "answered half way, elsewhere");
                        assert_result(cpu.frame.x[0]);
                        let _ = hyp::serial::take_console_lines();
                        continue;
                    }
                    assert_eq!(cpu.frame, before, "a declined hypercall changed the frame");
                }
                (GuestExit::Hypercall { immediate: 0xea1 }, 0)
            }
            Exit::Psci { function, args } => {
                cpu.frame.x[0] =
                    u64::from(PSCI_FUNCTIONS[usize::from(function) % PSCI_FUNCTIONS.len()]);
                for (register, arg) in cpu.frame.x[1..].iter_mut().zip(args) {
                    *register = arg.value();
                }
                (GuestExit::Hypercall { immediate: 0 }, 0)
            }
            Exit::Raw {
                class,
                iss,
                far,
                ipa_page,
            } => {
                // Half the classes drawn are the four a guest traps with most.
                let class = if class & 0x80 != 0 {
                    [
                        esr::class::DATA_ABORT_LOWER,
                        esr::class::SYSTEM_REGISTER,
                        esr::class::INSTRUCTION_ABORT_LOWER,
                        esr::class::WFI_WFE,
                    ][usize::from(class & 3)]
                } else {
                    u32::from(class % 64)
                };
                // And half of those data aborts describe their access (ISV), not on a
                // stage-1 walk: the ones the vGIC emulates.
                let iss = if class == esr::class::DATA_ABORT_LOWER && iss >> 31 != 0 {
                    (iss | 1 << 24) & !(1 << 7)
                } else {
                    iss
                };
                let esr_value = (u64::from(class) << 26) | (1 << 25) | u64::from(iss & 0x1ff_ffff);
                // Mostly IPAs near the emulated GIC frames and RAM.
                let ipa = match ipa_page % 4 {
                    0 => {
                        hyp::domain_dt::layout::GICD_BASE + u64::from(ipa_page >> 2) % 0x10 * 0x1000
                    }
                    1 => {
                        hyp::domain_dt::layout::GICR_BASE + u64::from(ipa_page >> 2) % 0x40 * 0x1000
                    }
                    2 => {
                        hyp::domain_dt::layout::RAM_BASE
                            + u64::from(ipa_page >> 2) % 0x1000 * 0x1000
                    }
                    _ => u64::from(ipa_page) << 12,
                };
                let hpfar = (ipa >> 12) << 4;
                // Half the accesses word-aligned, as registers are mostly accessed.
                let far = if ipa_page >> 31 != 0 { far & !3 } else { far };
                // A load the vectors may answer without the full exit must come out as
                // the full exit leaves it; one it declines, untouched.
                if let Some((ipa, access)) = esr::decode_emulatable_read(esr_value, far, hpfar) {
                    let before = cpu.frame;
                    let model = |cpu: &mut CpuState, frame, offset| {
                        hypervisor.answer_register_read(cpu, frame, offset, access)
                    };
                    if hyp::virtual_interrupts::answer_read(&mut cpu, ipa, access, model) {
                        answered_alone = Some(cpu.frame);
                    } else {
                        assert_eq!(cpu.frame, before, "a declined read changed the frame");
                    }
                    cpu.frame = before;
                }
                (esr::decode_guest_exit(esr_value, far, hpfar), esr_value)
            }
        };
        let before = cpu.current;
        let next = hypervisor.exit_and_enter(&mut cpu, guest_exit, esr_value);
        if let Some(alone) = answered_alone {
            assert_eq!((next, cpu.current), (Next::Resume, before));
            assert_eq!(cpu.frame, alone, "answered alone, differently");
        }
        let _ = hyp::serial::take_console_lines();
        if let (GuestExit::Hypercall { immediate: 0xea1 }, Next::Resume) = (guest_exit, next) {
            if cpu.current == before {
                assert_result(cpu.frame.x[0]);
            }
        }
        match next {
            Next::Resume => {}
            Next::Halt => break,
            Next::Idle => {
                if hypervisor.schedule(&mut cpu) != Next::Resume {
                    break;
                }
            }
        }
    }

    // Only while a domain lives: an ended one is scrubbed.
    for (slot, (ram, before)) in rams.iter().zip(&before).enumerate() {
        let alive = hypervisor
            .domain(slot)
            .is_some_and(|domain| domain.state == DomainState::Alive && domain.ram.start == *ram);
        if alive {
            assert!(
                snapshot(*ram) == *before,
                "guest memory no pointer reaches was written"
            );
        }
    }

    // Shut every domain down; then nothing may be left allocated.
    for _ in 0..8 {
        let Some(current) = cpu.current else { break };
        let Some(ram) = map_current(hypervisor, current) else {
            break;
        };
        write_guest(ram, 0, &0u32.to_le_bytes()); // sched_shutdown { reason: poweroff }
        cpu.frame.x[16] = number::SCHED_OP;
        cpu.frame.x[0] = u64::from(hypercall_abi::sched_op::SHUTDOWN);
        cpu.frame.x[1] = WRITABLE_VA;
        let next = hypervisor.handle_exit(&mut cpu, GuestExit::Hypercall { immediate: 0xea1 }, 0);
        let _ = hyp::serial::take_console_lines();
        if next == Next::Halt {
            assert_eq!(hypervisor.free_bytes(), free_before, "frames leaked");
            break;
        }
        if next == Next::Idle && hypervisor.schedule(&mut cpu) != Next::Resume {
            break;
        }
    }
    let _ = hyp::serial::take_console_lines();
});
