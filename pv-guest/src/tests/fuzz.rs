//! `fuzz`: hypercall fuzzing from inside a guest. Only run when named:
//! `fuzz seed=N iterations=M`.
//!
//! A splitmix64 generator seeded from the command line chooses, every iteration, a
//! hypercall (every number 0-63, weighted towards the implemented ones; now and then
//! an SMCCC/PSCI call on `HVC #0` or an `HVC` with a wrong immediate) and its
//! arguments: random and boundary sub-ops, counts (0, 1, batch edges, `INT_MAX`,
//! "negative"), ports, grant references, domain ids, vCPU numbers, and pointers that are
//! unmapped, unaligned, straddle the end of RAM, point at device MMIO (the vGIC, the
//! physical GIC and UART of each board), at other domains' physical addresses, at the
//! hypervisor's load address and beyond the IPA size. Every delivered event runs a
//! hypercall from inside the upcall handler (re-entrant use), within a small budget.
//!
//! What the hypervisor may write is confined to the last MiB of our RAM (the arena):
//!
//! - `physmap` (first 256 KiB): targets for `XENMEM_add_to_physmap`, grant mappings and
//!   `GNTTABOP_copy` frames. We never touch it ourselves (its pages may become holes).
//! - `garbage` (next 704 KiB): random bytes, refreshed as we go; any pointer may land
//!   here, for calls whose argument only ever names memory inside the arena.
//! - `ops` (last 64 KiB): argument structs built for one call, placed so that they end
//!   at the end of RAM (or a few bytes before it): a count larger than what was built
//!   runs off RAM into unmapped IPA space and must end in `EFAULT`.
//!
//! Calls whose arguments name memory the hypervisor then writes (memory_op, grant map,
//! copy and setup_table, vcpu_info and runstate registration, SCHEDOP_poll's timeout)
//! always get a built argument (with hostile values inside it) or a pointer outside
//! RAM. Excluded, since they would end or stall the fuzzer itself, not the hypervisor:
//! SCHEDOP_shutdown with a valid reason (it gets invalid reasons and bad pointers),
//! SCHEDOP_block unless an upcall is already pending (then it must return at once),
//! SCHEDOP_poll without a timeout (every poll has a deadline at most 100 us away),
//! PSCI CPU_OFF, SYSTEM_OFF and SYSTEM_RESET, moving our shared_info page, and closing
//! or re-binding our pre-connected channels (the victims watch them to know we ended).
//!
//! Oracle: a call that must read its argument struct and got a pointer to memory that
//! is not ours must fail; the wrong-immediate `HVC` must be an undefined instruction;
//! afterwards our image is unchanged (checksum of text, rodata and data), and events,
//! `xen_version` and the console still work. The summary gives the iterations, calls
//! per hypercall number and the errno histogram.

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use super::{Context, Failure, Scenario, Test, TestResult};
use crate::abi::errno::Errno;
use crate::abi::event_channel_op::{self as evtchn, Port, STAT_INTERDOMAIN};
use crate::abi::grant_table_op::{self as gnttab, CopyPtr, MapGrantRef, UnmapGrantRef};
use crate::abi::guest::{
    evtchn_close, evtchn_send, evtchn_status, hypercall_raw, smccc_call, xen_version,
};
use crate::abi::shared::DOMID_SELF;
use crate::abi::{hypercall as nr, memory_op, psci, sched_op, vcpu_op};
use crate::arch::cpu;
use crate::{events, exceptions, irq, platform, println};

/// The scenario.
pub const SCENARIO: Scenario = Scenario::named(
    "fuzz",
    &[
        Test::new("setup", setup),
        Test::new("hypercalls", hypercalls),
        Test::new("still_working", still_working),
    ],
);

/// Iterations unless `iterations=N` says otherwise.
const DEFAULT_ITERATIONS: u64 = 10_000;
/// Size of the arena at the end of RAM.
const ARENA: u64 = 1 << 20;
/// The `physmap` zone: [end - ARENA, end - ARENA + PHYSMAP).
const PHYSMAP: u64 = 256 << 10;
/// The `ops` zone: [end - OPS, end).
const OPS: u64 = 64 << 10;
/// Hypercalls the upcall handler may make per IRQ window.
const REENTRANT_BUDGET: u32 = 4;

extern "C" {
    static __image_start: u8;
    static __bss_start: u8;
}

/// The end of the RAM range we run in (0 = `setup` did not pass).
static RAM_END: AtomicU64 = AtomicU64::new(0);
/// Checksum of our image (text, rodata, data) at setup.
static IMAGE_SUM: AtomicU64 = AtomicU64::new(0);
/// Our pre-connected ports (to the victims): never closed or re-bound by the fuzzer.
static LINKS: [AtomicU32; 4] = [const { AtomicU32::new(0) }; 4];
/// The two ends of our loopback channel (0 = none open).
static LOOP_A: AtomicU32 = AtomicU32::new(0);
static LOOP_B: AtomicU32 = AtomicU32::new(0);
/// Hypercalls the upcall handler may still make in this window, and made in all.
static BUDGET: AtomicU32 = AtomicU32::new(0);
static REENTRANT_CALLS: AtomicU32 = AtomicU32::new(0);
/// The upcall handler's own generator state.
static HOOK_STATE: AtomicU64 = AtomicU64::new(0);
/// Set when the hook saw something it should not.
static HOOK_ANOMALY: AtomicBool = AtomicBool::new(false);
/// `trace=N` reached: SMCCC calls are printed too.
static TRACING: AtomicBool = AtomicBool::new(false);

/// splitmix64: small, deterministic, good enough to choose arguments.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }

    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

/// Addresses that are not our memory (as VA = IPA, our identity map): device MMIO of
/// QEMU `virt` and the Pi 4 (physical GIC distributor, GICv2 GICH/GICV, GICv3
/// redistributors, UARTs), the emulated vGIC frames, the grant-table hole, the
/// addresses where the hypervisor puts other domains' RAM on `virt`, beyond our RAM,
/// beyond the IPA size, non-canonical and kernel-half addresses. (The hypervisor's load
/// address 0x4008_0000 is inside our own IPA RAM, so it is a valid pointer for us: it is
/// in [`in_our_ram`] and used as such.)
const HOSTILE: &[u64] = &[
    0x0,
    0x8,
    0xfff,
    0x1000,
    0x0008_0000,
    0x0300_0000,
    0x0300_1000,
    0x0300_2000,
    0x0302_0000,
    0x0800_0000,
    0x0801_0000,
    0x0803_0000,
    0x0804_0000,
    0x080a_0000,
    0x0900_0000,
    0x0900_0ff8,
    0x3800_0000,
    0x38ff_fff8,
    0x3fff_fff8,
    0x4220_0000,
    0x4420_0000,
    0x4620_0000,
    0x4820_0000,
    0x5000_0000,
    0xfe21_5000,
    0xff84_1000,
    0xff84_2000,
    0xff84_4000,
    0xff84_6000,
    0x1_0000_0000,
    0x7f_ffff_fff8,
    0x80_0000_0000,
    0xffff_ffff_f000,
    0x1_0000_0000_0000,
    0x8000_0000_0000_0000,
    0xffff_0000_0000_0000,
    0xffff_ffff_ffff_f000,
    0xffff_ffff_ffff_fff8,
    u64::MAX,
];

/// Counts worth trying: boundaries of batches, ports, `int` and `unsigned int`.
const COUNTS: &[u64] = &[
    0,
    1,
    2,
    3,
    7,
    8,
    63,
    64,
    65,
    127,
    128,
    129,
    255,
    256,
    511,
    512,
    1023,
    1024,
    4095,
    4096,
    4097,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0001,
    u64::MAX,
];

/// Where a pointer argument went: for the oracle.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    /// Our RAM (a struct built there, or garbage).
    Ours,
    /// Memory that is not ours: the call must fail if it reads its argument.
    Foreign,
}

/// One generated call.
struct Call {
    number: u64,
    args: [u64; 5],
    /// Set when the call must fail because it reads a foreign argument struct.
    must_fail: bool,
}

/// Statistics for the summary.
struct Stats {
    calls: [u32; 64],
    smccc: u32,
    bad_immediate: u32,
    ok: u32,
    positive: u32,
    errno: [u32; 128],
    other_negative: u32,
}

impl Stats {
    const fn new() -> Stats {
        Stats {
            calls: [0; 64],
            smccc: 0,
            bad_immediate: 0,
            ok: 0,
            positive: 0,
            errno: [0; 128],
            other_negative: 0,
        }
    }

    fn record(&mut self, number: u64, result: u64) {
        if let Some(slot) = self.calls.get_mut(number as usize) {
            *slot += 1;
        }
        let signed = result as i64;
        if result == 0 {
            self.ok += 1;
        } else if signed > 0 {
            self.positive += 1;
        } else if let Some(slot) = self.errno.get_mut(signed.unsigned_abs() as usize) {
            *slot += 1;
        } else {
            self.other_negative += 1;
        }
    }
}

/// The fuzzer's view of the arena and its generator.
struct Fuzzer {
    rng: Rng,
    end: u64,
    own_domain: u16,
}

impl Fuzzer {
    fn physmap_base(&self) -> u64 {
        self.end - ARENA
    }

    fn garbage_base(&self) -> u64 {
        self.end - ARENA + PHYSMAP
    }

    fn garbage_size(&self) -> u64 {
        ARENA - PHYSMAP - OPS
    }

    fn ops_base(&self) -> u64 {
        self.end - OPS
    }

    /// Overwrites `length` bytes of the garbage zone at a random place with random bytes.
    fn refresh_garbage(&mut self, length: u64) {
        let start = self.garbage_base() + self.rng.below(self.garbage_size() - length);
        for offset in (0..length).step_by(8) {
            let value = self.rng.next();
            // SAFETY: inside the garbage zone of our own RAM (identity mapped, Normal),
            // which no Rust object uses; only the hypervisor and this code write it.
            unsafe {
                core::ptr::write_unaligned((start + offset) as *mut u64, value);
            }
        }
    }

    /// Copies `items` into the ops zone so that they end `slack` bytes before the end
    /// of RAM; returns their address.
    fn place<T: Copy>(&self, items: &[T], slack: u64) -> u64 {
        let bytes = core::mem::size_of_val(items) as u64;
        let address = self.end - slack - bytes;
        // SAFETY: `address..+bytes` lies in the ops zone (callers place at most a few
        // KiB), our own RAM, used by no Rust object; `T` is a plain ABI struct.
        unsafe {
            core::ptr::copy_nonoverlapping(
                items.as_ptr().cast::<u8>(),
                address as *mut u8,
                bytes as usize,
            );
        }
        address
    }

    /// 0 most of the time, else a few bytes (an unaligned placement).
    fn slack(&mut self) -> u64 {
        if self.rng.chance(4) {
            self.rng.below(8)
        } else {
            0
        }
    }

    /// A pointer anywhere the hypervisor may write or must refuse: for calls whose
    /// argument names no memory beyond itself.
    fn any_pointer(&mut self) -> (u64, Target) {
        match self.rng.below(16) {
            0..=5 => (
                self.garbage_base() + self.rng.below(self.garbage_size()),
                Target::Ours,
            ),
            6 => (self.physmap_base() + self.rng.below(PHYSMAP), Target::Ours),
            7 => (self.ops_base() + self.rng.below(OPS), Target::Ours),
            8 => (self.end - self.rng.below(64), Target::Ours),
            // (Never our RAM below the arena, such as IPA 0x4008_0000: a batch with a
            // huge count would walk from there through our own image.)
            9 => (self.end - OPS / 2 + self.rng.below(OPS / 2), Target::Ours),
            _ => self.hostile_pointer(),
        }
    }

    fn hostile_pointer(&mut self) -> (u64, Target) {
        let base = self.rng.pick(HOSTILE);
        (base.wrapping_add(self.rng.below(8)), Target::Foreign)
    }

    /// Either `built` or, one time in `one_in`, a foreign pointer.
    fn built_or_hostile(&mut self, built: u64, one_in: u64) -> (u64, Target) {
        if self.rng.chance(one_in) {
            self.hostile_pointer()
        } else {
            (built, Target::Ours)
        }
    }

    fn any_count(&mut self) -> u64 {
        if self.rng.chance(3) {
            self.rng.below(70)
        } else {
            self.rng.pick(COUNTS)
        }
    }

    fn any_u64(&mut self) -> u64 {
        match self.rng.below(4) {
            0 => self.rng.below(16),
            1 => self.rng.pick(COUNTS),
            2 => self.rng.pick(HOSTILE),
            _ => self.rng.next(),
        }
    }

    fn any_domain(&mut self) -> u16 {
        match self.rng.below(8) {
            0..=2 => self.rng.below(10) as u16,
            3 => DOMID_SELF,
            4 => self.own_domain,
            5 => self
                .rng
                .pick(&[0x7ff1u16, 0x7ff2, 0x7ff3, 0x7ff4, 0x7fff, 0xffff, 8, 9]),
            _ => self.rng.next() as u16,
        }
    }

    fn any_port(&mut self) -> u32 {
        match self.rng.below(8) {
            0..=2 => self.rng.below(16) as u32,
            3 => self.rng.pick(&[
                LOOP_A.load(Ordering::Relaxed),
                LOOP_B.load(Ordering::Relaxed),
                LINKS[0].load(Ordering::Relaxed),
                LINKS[1].load(Ordering::Relaxed),
            ]),
            4 => self.rng.pick(&[63u32, 64, 1023, 1024, 4095, 4096, 4097]),
            5 => self
                .rng
                .pick(&[u32::MAX, 0x8000_0000, 0x7fff_ffff, 0x1_0000 - 1]),
            _ => self.rng.below(5000) as u32,
        }
    }

    /// A port that is not one of our links (for close and bind_vcpu).
    fn unprotected_port(&mut self) -> u32 {
        let port = self.any_port();
        if is_link(port) {
            port.wrapping_add(1000)
        } else {
            port
        }
    }

    fn any_vcpu(&mut self) -> u32 {
        self.rng
            .pick(&[0u32, 0, 0, 1, 2, 7, 8, 63, 64, u32::MAX, 0x8000_0000])
    }

    fn any_grant_ref(&mut self) -> u32 {
        match self.rng.below(4) {
            0 => self.rng.below(16) as u32,
            1 => self.rng.pick(&[511u32, 512, 513, 1023, 1024, 16383, 16384]),
            2 => self.rng.pick(&[u32::MAX, 0x8000_0000, 0x7fff_ffff]),
            _ => self.rng.next() as u32,
        }
    }

    /// A frame number the hypervisor may map something at or write: a page of the
    /// physmap zone, an IPA outside our RAM (not the vGIC frames, which our GIC driver
    /// uses), or an invalid frame.
    fn safe_frame(&mut self) -> u64 {
        match self.rng.below(8) {
            0..=3 => (self.physmap_base() >> 12) + self.rng.below(PHYSMAP >> 12),
            4 => self.rng.pick(&[
                0x0u64, 0x1, 0x8000, 0x9000, 0x10000, 0x38000, 0x38fff, 0x39000, 0x39001, 0x42200,
                0x44200, 0x7f_ffff,
            ]),
            5 => self
                .rng
                .pick(&[1 << 27, 1 << 36, 1 << 52, u64::MAX, 0x8000_0000_0000_0000]),
            6 => {
                let frame = self.rng.below(1 << 27);
                // Not our RAM (IPA 0x4000_0000 up) nor the vGIC frames.
                if (0x40000..self.end >> 12).contains(&frame) || (0x3000..0x3040).contains(&frame) {
                    (self.physmap_base() >> 12) + (frame % (PHYSMAP >> 12))
                } else {
                    frame
                }
            }
            _ => self.rng.next() | (1 << 63),
        }
    }

    /// The address of a [`Fuzzer::safe_frame`] plus a random offset.
    fn safe_address(&mut self) -> u64 {
        let frame = self.safe_frame();
        frame.wrapping_shl(12).wrapping_add(self.rng.below(4096))
    }

    /// Builds the next call.
    fn generate(&mut self) -> Call {
        let number = if self.rng.chance(4) {
            self.rng.below(64)
        } else {
            self.rng.pick(&[
                nr::XEN_VERSION,
                nr::CONSOLE_IO,
                nr::SCHED_OP,
                nr::MEMORY_OP,
                nr::EVENT_CHANNEL_OP,
                nr::EVENT_CHANNEL_OP,
                nr::EVENT_CHANNEL_OP,
                nr::GRANT_TABLE_OP,
                nr::GRANT_TABLE_OP,
                nr::GRANT_TABLE_OP,
                nr::VCPU_OP,
                nr::HVM_OP,
                nr::VM_ASSIST,
                nr::PHYSDEV_OP,
                nr::MULTICALL,
            ])
        };
        match number {
            nr::XEN_VERSION => {
                let (pointer, target) = self.any_pointer();
                let cmd = self
                    .rng
                    .pick(&[0u64, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
                let cmd = if self.rng.chance(8) {
                    self.rng.next()
                } else {
                    cmd
                };
                Call {
                    number,
                    args: [cmd, pointer, self.any_u64(), 0, 0],
                    // XENVER_get_features (6) reads its struct.
                    must_fail: cmd == 6 && target == Target::Foreign,
                }
            }
            nr::CONSOLE_IO => self.console_io(),
            nr::SCHED_OP => self.sched_op(),
            nr::MEMORY_OP => self.memory_op(),
            nr::EVENT_CHANNEL_OP => self.event_channel_op(),
            nr::GRANT_TABLE_OP => self.grant_table_op(),
            nr::VCPU_OP => self.vcpu_op(),
            nr::HVM_OP => {
                let op = if self.rng.chance(4) {
                    self.any_u64()
                } else {
                    self.rng.below(2)
                };
                let param = [
                    u64::from(self.any_domain()) | (self.rng.below(48) << 32),
                    self.any_u64(),
                ];
                let built = {
                    let slack = self.slack();
                    self.place(&param, slack)
                };
                let (pointer, target) = if self.rng.chance(2) {
                    self.built_or_hostile(built, 4)
                } else {
                    self.any_pointer()
                };
                Call {
                    number,
                    args: [op, pointer, self.any_u64(), 0, 0],
                    must_fail: op < 2 && target == Target::Foreign,
                }
            }
            nr::VM_ASSIST => Call {
                number,
                args: [
                    self.rng.pick(&[0u64, 1, 2, u64::MAX]),
                    self.rng.pick(&[0u64, 1, 2, 3, 4, 5, 32, 63, 64, u64::MAX]),
                    0,
                    0,
                    0,
                ],
                must_fail: false,
            },
            _ => {
                // Unimplemented and unknown numbers (multicall, physdev, sysctl, ...): any
                // registers at all.
                let (pointer, _) = self.any_pointer();
                Call {
                    number,
                    args: [
                        self.any_u64(),
                        pointer,
                        self.any_count(),
                        self.any_u64(),
                        self.any_u64(),
                    ],
                    must_fail: false,
                }
            }
        }
    }

    fn console_io(&mut self) -> Call {
        const LINE: &[u8] = b"fuzz: console write from the arena\n";
        let number = nr::CONSOLE_IO;
        match self.rng.below(6) {
            // A line that prints, now and then (not to flood the console).
            0 if self.rng.chance(32) => {
                let mut line = [0u8; LINE.len()];
                line.copy_from_slice(LINE);
                let address = {
                    let slack = self.slack();
                    self.place(&line, slack)
                };
                Call {
                    number,
                    args: [0, LINE.len() as u64, address, 0, 0],
                    must_fail: false,
                }
            }
            1 | 2 => {
                // Foreign buffer, any count (0 prints nothing and succeeds).
                let (pointer, _) = self.hostile_pointer();
                let count = self.any_count();
                Call {
                    number,
                    args: [0, count, pointer, 0, 0],
                    must_fail: count as u32 != 0,
                }
            }
            3 => {
                // A buffer in our RAM whose count runs off its end: nothing may print.
                let start = self.garbage_base() + self.rng.below(ARENA - PHYSMAP);
                let count = (self.end - start) + 1 + self.rng.below(1 << 20);
                Call {
                    number,
                    args: [0, count, start, 0, 0],
                    must_fail: true,
                }
            }
            0 | 4 => {
                // CONSOLEIO_read: any count and buffer.
                let (pointer, _) = self.any_pointer();
                Call {
                    number,
                    args: [1, self.any_count(), pointer, 0, 0],
                    must_fail: false,
                }
            }
            _ => {
                // Unknown commands (the low 32 bits are not write or read).
                let cmd = (self.rng.next() | 2) & !1;
                let (pointer, _) = self.any_pointer();
                Call {
                    number,
                    args: [cmd, self.any_count(), pointer, 0, 0],
                    must_fail: false,
                }
            }
        }
    }

    fn sched_op(&mut self) -> Call {
        let number = nr::SCHED_OP;
        match self.rng.below(10) {
            0..=2 => Call {
                number,
                args: [u64::from(sched_op::YIELD), self.any_u64(), 0, 0, 0],
                must_fail: false,
            },
            3..=5 => {
                // Poll, always with a deadline close by (or passed).
                let ports: [u32; 8] = core::array::from_fn(|_| self.any_port());
                let list = self.place(&ports, 0);
                let (ports_pointer, _) = match self.rng.below(3) {
                    0 => (list, Target::Ours),
                    1 => self.any_pointer(),
                    _ => self.hostile_pointer(),
                };
                let count = if self.rng.chance(2) {
                    self.rng.below(9)
                } else {
                    self.any_count()
                };
                let now = system_time_ns();
                let timeout = if self.rng.chance(4) {
                    1
                } else {
                    now + 1 + self.rng.below(100_000)
                };
                let poll = [ports_pointer, count, timeout];
                let built = {
                    let slack = 8 * 8 + self.slack();
                    self.place(&poll, slack)
                };
                let (pointer, target) = self.built_or_hostile(built, 4);
                Call {
                    number,
                    args: [u64::from(sched_op::POLL), pointer, 0, 0, 0],
                    must_fail: target == Target::Foreign,
                }
            }
            6 | 7 => {
                // Shutdown with an invalid reason, or a struct we do not own.
                let reason = self.rng.pick(&[6u32, 7, 255, 0x8000_0000, u32::MAX]);
                let built = {
                    let slack = self.slack();
                    self.place(&[reason], slack)
                };
                let (pointer, _) = self.built_or_hostile(built, 2);
                Call {
                    number,
                    args: [u64::from(sched_op::SHUTDOWN), pointer, 0, 0, 0],
                    must_fail: true,
                }
            }
            8 if events::upcall_pending() => Call {
                // Block with an upcall pending: must return at once.
                number,
                args: [u64::from(sched_op::BLOCK), 0, 0, 0, 0],
                must_fail: false,
            },
            _ => Call {
                // Unknown commands (never yield, block, shutdown or poll in the low bits).
                number,
                args: [
                    (self.rng.next() & !0xffff_ffff) | (4 + self.rng.below(100)),
                    self.any_u64(),
                    0,
                    0,
                    0,
                ],
                must_fail: true,
            },
        }
    }

    fn memory_op(&mut self) -> Call {
        let number = nr::MEMORY_OP;
        let gpfn = self.safe_frame();
        let (space, idx) = match self.rng.below(6) {
            0 => {
                // shared_info: only to where it is (a no-op) or to an invalid frame.
                let gpfn = if self.rng.chance(2) {
                    events::shared_info_frame()
                } else {
                    self.rng.pick(&[1u64 << 27, 1 << 40, u64::MAX])
                };
                let idx = self.rng.pick(&[0u64, 1, u64::MAX]);
                return self.add_to_physmap(memory_op::XENMAPSPACE_SHARED_INFO, idx, gpfn);
            }
            1..=3 => (
                memory_op::XENMAPSPACE_GRANT_TABLE,
                self.rng
                    .pick(&[0u64, 1, 2, 3, 31, 32, 33, 0x8000_0000, u64::MAX]),
            ),
            4 => (self.rng.below(8) as u32, self.any_u64()),
            _ => (self.rng.next() as u32, self.any_u64()),
        };
        // Moving our shared_info page would unmap the page our event code reads: only
        // the case above may name it.
        let space = if space == memory_op::XENMAPSPACE_SHARED_INFO {
            memory_op::XENMAPSPACE_GMFN
        } else {
            space
        };
        if self.rng.chance(4) {
            // Other commands (and command words with extent bits): the argument is a
            // struct whose every word is a safe frame.
            let words: [u64; 6] = core::array::from_fn(|_| self.safe_frame());
            let built = self.place(&words, 0);
            let (pointer, _) = self.built_or_hostile(built, 4);
            let cmd = match self.rng.below(3) {
                0 => self.rng.below(64),
                1 => u64::from(memory_op::REMOVE_FROM_PHYSMAP),
                _ => u64::from(memory_op::ADD_TO_PHYSMAP) | (self.rng.below(16) << 6),
            };
            let cmd = if cmd == u64::from(memory_op::ADD_TO_PHYSMAP) {
                cmd + 1
            } else {
                cmd
            };
            return Call {
                number,
                args: [cmd, pointer, 0, 0, 0],
                must_fail: false,
            };
        }
        self.add_to_physmap(space, idx, gpfn)
    }

    fn add_to_physmap(&mut self, space: u32, idx: u64, gpfn: u64) -> Call {
        let domain = if self.rng.chance(4) {
            self.any_domain()
        } else {
            DOMID_SELF
        };
        let request = memory_op::AddToPhysmap {
            domid: domain,
            size: self.rng.next() as u16,
            space,
            idx,
            gpfn,
        };
        let built = {
            let slack = self.slack();
            self.place(&[request], slack)
        };
        let (pointer, target) = self.built_or_hostile(built, 5);
        Call {
            number: nr::MEMORY_OP,
            args: [u64::from(memory_op::ADD_TO_PHYSMAP), pointer, 0, 0, 0],
            must_fail: target == Target::Foreign,
        }
    }

    fn event_channel_op(&mut self) -> Call {
        let number = nr::EVENT_CHANNEL_OP;
        let cmd = if self.rng.chance(8) {
            (self.rng.next() & !0xffff_ffff) | self.rng.below(20)
        } else {
            self.rng.below(10)
        };
        let low = cmd as u32;
        // Fields at every offset an EVTCHNOP struct uses (24 bytes).
        let words: [u32; 6] = match low {
            evtchn::CLOSE | evtchn::SEND | evtchn::UNMASK => {
                let port = if low == evtchn::CLOSE {
                    self.unprotected_port()
                } else {
                    self.any_port()
                };
                [port, 0, 0, 0, 0, 0]
            }
            evtchn::BIND_VCPU => [self.unprotected_port(), self.any_vcpu(), 0, 0, 0, 0],
            evtchn::ALLOC_UNBOUND => [
                u32::from(self.any_domain()) | (u32::from(self.any_domain()) << 16),
                self.rng.next() as u32,
                0,
                0,
                0,
                0,
            ],
            evtchn::BIND_INTERDOMAIN => [
                u32::from(self.any_domain()),
                self.any_port(),
                self.rng.next() as u32,
                0,
                0,
                0,
            ],
            evtchn::BIND_VIRQ => [
                self.rng
                    .pick(&[0u32, 1, 2, 3, 4, 8, 23, 24, 31, 32, u32::MAX]),
                self.any_vcpu(),
                0,
                0,
                0,
                0,
            ],
            evtchn::BIND_IPI => [self.any_vcpu(), 0, 0, 0, 0, 0],
            _ => [
                u32::from(self.any_domain()),
                self.any_port(),
                self.rng.next() as u32,
                self.rng.next() as u32,
                0,
                0,
            ],
        };
        let built = {
            let slack = self.slack();
            self.place(&words, slack)
        };
        // Close and bind_vcpu never take garbage: it could name one of our links.
        let free = !matches!(low, evtchn::CLOSE | evtchn::BIND_VCPU);
        let (pointer, target) = if free && self.rng.chance(3) {
            self.any_pointer()
        } else {
            self.built_or_hostile(built, 5)
        };
        Call {
            number,
            args: [cmd, pointer, self.any_u64(), 0, 0],
            // Every known command reads its struct first; the others are ENOSYS.
            must_fail: target == Target::Foreign,
        }
    }

    fn grant_table_op(&mut self) -> Call {
        let number = nr::GRANT_TABLE_OP;
        let cmd = match self.rng.below(10) {
            0 => self.rng.below(16),
            1 => u64::from(gnttab::CACHE_FLUSH) | (self.rng.below(8) << 12),
            2 => {
                u64::from(
                    self.rng
                        .pick(&[gnttab::MAP_GRANT_REF, gnttab::COPY, gnttab::QUERY_SIZE]),
                ) | (1 << 12)
            }
            _ => u64::from(self.rng.pick(&[
                gnttab::MAP_GRANT_REF,
                gnttab::UNMAP_GRANT_REF,
                gnttab::SETUP_TABLE,
                gnttab::COPY,
                gnttab::QUERY_SIZE,
                gnttab::SET_VERSION,
                gnttab::GET_VERSION,
            ])),
        };
        let built_count = 1 + self.rng.below(4);
        let count = match self.rng.below(4) {
            0 => built_count,
            1 => built_count + 1 + self.rng.below(100),
            2 => self.any_count(),
            _ => self.rng.below(3),
        };
        let slack = self.slack();
        let (pointer, target) = match cmd as u32 {
            gnttab::MAP_GRANT_REF => {
                let mut ops = [MapGrantRef::default(); 4];
                for op in ops.iter_mut() {
                    *op = MapGrantRef {
                        host_addr: self.safe_address(),
                        flags: self
                            .rng
                            .pick(&[0u32, 1, 2, 3, 4, 6, 7, 0x10, 0x12, u32::MAX]),
                        r#ref: self.any_grant_ref(),
                        dom: self.any_domain(),
                        status: self.rng.next() as i16,
                        handle: self.rng.next() as u32,
                        dev_bus_addr: self.rng.next(),
                    };
                }
                let built = self.place(&ops[..built_count as usize], slack);
                self.built_or_hostile(built, 5)
            }
            gnttab::UNMAP_GRANT_REF => {
                let mut ops = [UnmapGrantRef::default(); 4];
                for op in ops.iter_mut() {
                    *op = UnmapGrantRef {
                        host_addr: self.safe_address(),
                        dev_bus_addr: self.rng.next(),
                        handle: self.rng.pick(&[0u32, 1, 2, 3, 255, 256, 1023, u32::MAX]),
                        status: 0,
                        pad: 0,
                    };
                }
                let built = self.place(&ops[..built_count as usize], slack);
                if self.rng.chance(3) {
                    self.any_pointer()
                } else {
                    self.built_or_hostile(built, 5)
                }
            }
            gnttab::COPY => {
                let mut ops = [gnttab::Copy::default(); 4];
                for op in ops.iter_mut() {
                    let flags = self.rng.pick(&[0u16, 1, 2, 3, 4, 0xffff]);
                    let source = self.copy_end(flags & gnttab::GNTCOPY_SOURCE_GREF != 0);
                    let dest = self.copy_end(flags & gnttab::GNTCOPY_DEST_GREF != 0);
                    *op = gnttab::Copy {
                        source,
                        dest,
                        len: self.rng.pick(&[0u16, 1, 8, 4095, 4096, 4097, 0xffff]),
                        flags,
                        status: 0,
                        pad: 0,
                    };
                }
                let built = self.place(&ops[..built_count as usize], slack);
                self.built_or_hostile(built, 5)
            }
            gnttab::SETUP_TABLE => {
                let (list, _) = match self.rng.below(3) {
                    0 => (
                        self.garbage_base() + self.rng.below(self.garbage_size() - 512),
                        Target::Ours,
                    ),
                    1 => (self.end - 8 * self.rng.below(8), Target::Ours),
                    _ => self.hostile_pointer(),
                };
                let op = gnttab::SetupTable {
                    dom: self.any_domain(),
                    pad0: 0,
                    nr_frames: self.rng.pick(&[0u32, 1, 2, 4, 31, 32, 33, 64, u32::MAX]),
                    status: 0,
                    pad1: [0; 6],
                    frame_list: list,
                };
                let built = self.place(&[op], slack);
                self.built_or_hostile(built, 5)
            }
            _ => {
                // query_size, set/get_version and unknown ones read no frame numbers.
                let words: [u64; 4] = core::array::from_fn(|_| {
                    u64::from(self.any_domain()) | (self.rng.below(4) << 32)
                });
                let built = self.place(&words, slack);
                if self.rng.chance(3) {
                    self.any_pointer()
                } else {
                    self.built_or_hostile(built, 5)
                }
            }
        };
        let reads = matches!(
            cmd as u32,
            gnttab::MAP_GRANT_REF
                | gnttab::UNMAP_GRANT_REF
                | gnttab::COPY
                | gnttab::SETUP_TABLE
                | gnttab::QUERY_SIZE
                | gnttab::SET_VERSION
                | gnttab::GET_VERSION
        );
        Call {
            number,
            args: [cmd, pointer, count, 0, 0],
            must_fail: reads
                && count as u32 != 0
                && count as u32 <= i32::MAX as u32
                && target == Target::Foreign,
        }
    }

    /// One end of a `GNTTABOP_copy`: a grant reference, or one of our frames the
    /// hypervisor may write.
    fn copy_end(&mut self, is_grant: bool) -> CopyPtr {
        CopyPtr {
            u: if is_grant {
                u64::from(self.any_grant_ref())
            } else {
                self.safe_frame()
            },
            domid: self.any_domain(),
            offset: self.rng.pick(&[0u16, 1, 8, 4088, 4095, 4096, 0xffff]),
            pad: 0,
        }
    }

    fn vcpu_op(&mut self) -> Call {
        let number = nr::VCPU_OP;
        let cmd = if self.rng.chance(6) {
            let cmd = self.rng.below(20);
            if cmd == u64::from(vcpu_op::REGISTER_VCPU_INFO)
                || cmd == u64::from(vcpu_op::REGISTER_RUNSTATE_MEMORY_AREA)
            {
                cmd + 1
            } else {
                cmd
            }
        } else {
            u64::from(self.rng.pick(&[
                vcpu_op::REGISTER_VCPU_INFO,
                vcpu_op::REGISTER_RUNSTATE_MEMORY_AREA,
                vcpu_op::SET_SINGLESHOT_TIMER,
                vcpu_op::STOP_SINGLESHOT_TIMER,
            ]))
        };
        let vcpu = self.any_vcpu();
        let slack = self.slack();
        let built = match cmd as u32 {
            vcpu_op::REGISTER_VCPU_INFO => {
                let words = [
                    self.safe_frame(),
                    self.rng
                        .pick(&[0u64, 8, 60, 64, 4032, 4033, 4088, 4096, u64::MAX]),
                ];
                self.place(&words, slack)
            }
            vcpu_op::REGISTER_RUNSTATE_MEMORY_AREA => {
                let address = match self.rng.below(4) {
                    0 => self.garbage_base() + self.rng.below(self.garbage_size() - 64),
                    1 => self.end - self.rng.below(48),
                    2 => self.safe_address(),
                    _ => self.hostile_pointer().0,
                };
                self.place(&[address], slack)
            }
            _ => {
                let now = system_time_ns();
                let words = [
                    self.rng
                        .pick(&[0, 1, now, now + 50_000, now + 1_000_000, u64::MAX]),
                    self.rng.below(4),
                ];
                self.place(&words, slack)
            }
        };
        let free = matches!(
            cmd as u32,
            vcpu_op::SET_SINGLESHOT_TIMER | vcpu_op::STOP_SINGLESHOT_TIMER
        ) || cmd > 15;
        let (pointer, target) = if free && self.rng.chance(3) {
            self.any_pointer()
        } else {
            self.built_or_hostile(built, 5)
        };
        let reads = matches!(
            cmd as u32,
            vcpu_op::REGISTER_VCPU_INFO
                | vcpu_op::REGISTER_RUNSTATE_MEMORY_AREA
                | vcpu_op::SET_SINGLESHOT_TIMER
        );
        Call {
            number,
            args: [cmd, u64::from(vcpu), pointer, 0, 0],
            // vCPU 0 exists; others answer ENOENT before reading anything.
            must_fail: reads && vcpu == 0 && target == Target::Foreign,
        }
    }
}

/// Whether `port` is one of our pre-connected links.
fn is_link(port: u32) -> bool {
    port != 0
        && LINKS
            .iter()
            .any(|link| link.load(Ordering::Relaxed) == port)
}

/// Xen system time: nanoseconds of the physical counter, which is what the hypervisor
/// compares deadlines with.
fn system_time_ns() -> u64 {
    irq::nanoseconds(cpu::physical_counter())
}

/// A simple checksum of `[start, end)`.
fn checksum(start: usize, end: usize) -> u64 {
    let mut sum = 0xcbf2_9ce4_8422_2325u64;
    for address in (start..end).step_by(8) {
        // SAFETY: inside our loaded image (text to the start of bss), mapped and
        // readable; read volatile as the hypervisor could (wrongly) change it.
        let word = unsafe { core::ptr::read_volatile(address as *const u64) };
        sum = (sum ^ word).wrapping_mul(0x0100_0000_01b3);
    }
    sum
}

fn image_checksum() -> u64 {
    checksum(
        core::ptr::addr_of!(__image_start) as usize,
        core::ptr::addr_of!(__bss_start) as usize,
    )
}

fn parameter(context: &Context, key: &str, default: u64) -> Result<u64, Failure> {
    match context.parameter(key) {
        None => Ok(default),
        Some(text) => text.parse::<u64>().map_err(|_| {
            Failure::new(
                format_args!("{key}=N with N a decimal number"),
                format_args!("{key}={text}"),
            )
        }),
    }
}

/// Opens (or reopens) the loopback channel.
fn open_loopback() -> Result<(), Failure> {
    let (a, b) = super::events::open_loopback()?;
    LOOP_A.store(a.0, Ordering::Relaxed);
    LOOP_B.store(b.0, Ordering::Relaxed);
    Ok(())
}

fn setup(context: &Context) -> TestResult {
    platform::ensure(&context.boot)?;
    let image = core::ptr::addr_of!(__image_start) as u64;
    let Some(range) = context
        .boot
        .memory()
        .iter()
        .find(|range| range.base <= image && image < range.end())
    else {
        return Err(Failure::new(
            format_args!("a memory range holding our image at {image:#x}"),
            format_args!("none"),
        ));
    };
    // The device tree sits at the start of the last 2 MiB; the arena is the last MiB.
    if range.size < 8 << 20 {
        return Err(Failure::new(
            format_args!("at least 8 MiB of RAM"),
            format_args!("{} KiB", range.size >> 10),
        ));
    }
    for (index, link) in LINKS.iter().enumerate() {
        if let Some(channel) = context.boot.channel(index) {
            link.store(channel.port, Ordering::Relaxed);
        }
    }
    open_loopback()?;
    let mut rng = Rng(parameter(context, "seed", 1)?);
    let own = pingpong_own_id();
    let mut fuzzer = Fuzzer {
        rng: Rng(rng.next()),
        end: range.end(),
        own_domain: own,
    };
    // Fill the garbage zone.
    let size = fuzzer.garbage_size();
    for _ in 0..size / 4096 {
        fuzzer.refresh_garbage(4096);
    }
    RAM_END.store(range.end(), Ordering::Relaxed);
    IMAGE_SUM.store(image_checksum(), Ordering::Relaxed);
    HOOK_STATE.store(rng.next(), Ordering::Relaxed);
    println!(
        "fuzz: domain {own}, RAM ends at {:#x}, arena {:#x}..{:#x}, links {} {}, loopback {} {}",
        range.end(),
        range.end() - ARENA,
        range.end(),
        LINKS[0].load(Ordering::Relaxed),
        LINKS[1].load(Ordering::Relaxed),
        LOOP_A.load(Ordering::Relaxed),
        LOOP_B.load(Ordering::Relaxed)
    );
    Ok(())
}

/// Our domain id (as `pingpong` learns it), or `DOMID_SELF` if that fails.
fn pingpong_own_id() -> u16 {
    use crate::abi::guest::evtchn_alloc_unbound;
    let Ok(port) = evtchn_alloc_unbound(DOMID_SELF) else {
        return DOMID_SELF;
    };
    let status = evtchn_status(port);
    let _ = evtchn_close(port);
    status.map_or(DOMID_SELF, |status| (status.u[0] & 0xffff) as u16)
}

/// Runs inside the upcall handler for every delivered event: one hypercall, within
/// the window's budget.
fn reentrant(port: Port) {
    let left = BUDGET.load(Ordering::Relaxed);
    if left == 0 {
        return;
    }
    BUDGET.store(left - 1, Ordering::Relaxed);
    REENTRANT_CALLS.fetch_add(1, Ordering::Relaxed);
    let mut rng = Rng(HOOK_STATE.load(Ordering::Relaxed));
    let loop_a = LOOP_A.load(Ordering::Relaxed);
    match rng.below(5) {
        // Send on the loopback again: an event raised from inside the handler.
        0 | 1 if loop_a != 0 => {
            let _ = evtchn_send(Port(loop_a));
        }
        2 => {
            let _ = evtchn_status(port);
        }
        3 => {
            // A call whose argument is foreign: must fail.
            let pointer = rng.pick(HOSTILE);
            // SAFETY: the argument is not our memory; the hypervisor must refuse it.
            let result = unsafe {
                hypercall_raw(
                    nr::EVENT_CHANNEL_OP,
                    [u64::from(evtchn::STATUS), pointer, 0, 0, 0],
                )
            };
            if result == 0 {
                HOOK_ANOMALY.store(true, Ordering::Relaxed);
            }
        }
        _ => {
            if xen_version() != (4, 17) {
                HOOK_ANOMALY.store(true, Ordering::Relaxed);
            }
        }
    }
    HOOK_STATE.store(rng.next(), Ordering::Relaxed);
}

/// An SMCCC/PSCI call on `HVC #0`: never CPU_OFF, SYSTEM_OFF or SYSTEM_RESET.
fn smccc(fuzzer: &mut Fuzzer) -> u64 {
    let rng = &mut fuzzer.rng;
    let function = match rng.below(10) {
        0 => psci::PSCI_VERSION,
        1 => psci::PSCI_FEATURES,
        2 => psci::CPU_ON_64,
        3 => psci::CPU_ON_32,
        4 => psci::AFFINITY_INFO_64,
        5 => psci::MIGRATE_INFO_TYPE,
        6 => psci::SMCCC_ARCH_FEATURES,
        7 => rng.pick(&[
            psci::SMCCC_VERSION,
            psci::CPU_SUSPEND_64,
            psci::SYSTEM_SUSPEND_64,
            psci::SMCCC_ARCH_WORKAROUND_1,
            psci::VENDOR_HYP_CALL_UID,
        ]),
        _ => rng.next() as u32,
    };
    let function = match function {
        psci::CPU_OFF | psci::SYSTEM_OFF | psci::SYSTEM_RESET => psci::PSCI_VERSION,
        other => other,
    };
    // CPU_ON: only vCPU 0 (ourselves, already on) or targets that do not exist; a
    // started second vCPU would run at a random address and end us.
    let target = match rng.below(4) {
        0 => 0,
        1 => rng.pick(&[2u64, 7, 8, 0xff, 0x100, 0x1_0000, 0x80_0000_0000]),
        2 => rng.next() | 0x100,
        _ => rng.next() & !0xff | 0x80,
    };
    let (entry, context) = (rng.next(), rng.next());
    if TRACING.load(Ordering::Relaxed) {
        println!("fuzz: trace: SMCCC {function:#x} [{target:#x}, {entry:#x}, {context:#x}]");
    }
    let result = smccc_call(function, [target, entry, context]);
    result[0]
}

fn hypercalls(context: &Context) -> TestResult {
    let end = RAM_END.load(Ordering::Relaxed);
    if end == 0 {
        return Err(Failure::new(
            format_args!("fuzz::setup to pass"),
            format_args!("it did not"),
        ));
    }
    let seed = parameter(context, "seed", 1)?;
    let iterations = parameter(context, "iterations", DEFAULT_ITERATIONS)?;
    let mut seeder = Rng(seed);
    let _ = seeder.next();
    let mut fuzzer = Fuzzer {
        rng: Rng(seeder.next()),
        end,
        own_domain: pingpong_own_id(),
    };
    // `trace=N`: print every call from iteration N on (to find what a failure followed).
    let trace_from = parameter(context, "trace", u64::MAX)?;
    let mut stats = Stats::new();
    let mut anomalies = 0u32;
    let mut first_anomaly: Option<(u64, [u64; 5], u64)> = None;
    events::set_delivery_hook(Some(reentrant));
    let start = cpu::counter();
    let report_every = (iterations / 10).max(1);
    for iteration in 0..iterations {
        fuzzer.refresh_garbage(16);
        if iteration >= trace_from {
            TRACING.store(true, Ordering::Relaxed);
            println!("fuzz: trace {iteration}: start");
        }
        match fuzzer.rng.below(100) {
            0..=3 => {
                let _ = smccc(&mut fuzzer);
                stats.smccc += 1;
            }
            4 if fuzzer.rng.chance(4) => {
                // HVC with an immediate that is not 0xEA1 or 0: an undefined instruction.
                exceptions::arm(cpu::hvc_bad_immediate_address());
                // SAFETY: the UNDEF it causes was armed just above.
                unsafe { cpu::hvc_bad_immediate() };
                match exceptions::take() {
                    Some(record) if record.exception_class() == 0 => {}
                    _ => {
                        anomalies += 1;
                        first_anomaly.get_or_insert((0x1234, [0; 5], u64::MAX));
                    }
                }
                stats.bad_immediate += 1;
            }
            _ => {
                let call = fuzzer.generate();
                if iteration >= trace_from {
                    println!(
                        "fuzz: trace {iteration}: calling {} {:x?}",
                        call.number, call.args
                    );
                }
                // SAFETY: every argument names our arena, memory that is not ours, or
                // nothing (see the module docs): whatever the hypervisor does with them
                // touches no Rust object.
                let result = unsafe { hypercall_raw(call.number, call.args) };
                stats.record(call.number, result);
                if iteration >= trace_from {
                    println!(
                        "fuzz: trace {iteration}: {} {:x?} -> {:#x}",
                        call.number, call.args, result
                    );
                }
                if call.must_fail && result == 0 {
                    anomalies += 1;
                    first_anomaly.get_or_insert((call.number, call.args, result));
                }
            }
        }
        if iteration % 8 == 0 {
            if fuzzer.rng.chance(2) {
                let loop_b = LOOP_B.load(Ordering::Relaxed);
                if loop_b == 0 || evtchn_send(Port(loop_b)).is_err() {
                    // Closed by a fuzzed call: open a new one (if ports remain).
                    let _ = open_loopback();
                }
            }
            BUDGET.store(REENTRANT_BUDGET, Ordering::Relaxed);
            cpu::take_pending_interrupts();
        }
        if (iteration + 1) % report_every == 0 {
            println!(
                "fuzz: {} of {iterations} iterations, {} ms",
                iteration + 1,
                irq::nanoseconds(cpu::counter() - start) / 1_000_000
            );
        }
    }
    BUDGET.store(0, Ordering::Relaxed);
    events::set_delivery_hook(None);
    let elapsed_ms = irq::nanoseconds(cpu::counter() - start) / 1_000_000;
    print_summary(seed, iterations, elapsed_ms, &stats);
    if HOOK_ANOMALY.load(Ordering::Relaxed) {
        anomalies += 1;
    }
    match first_anomaly {
        None if anomalies == 0 => Ok(()),
        first => {
            let (number, args, result) = first.unwrap_or_default();
            Err(Failure::new(
                format_args!(
                    "every call with a foreign argument to fail, bad HVC immediates to be UNDEF"
                ),
                format_args!(
                    "{anomalies} anomalies; first: hypercall {number} args {args:x?} -> {result:#x}"
                ),
            ))
        }
    }
}

fn print_summary(seed: u64, iterations: u64, elapsed_ms: u64, stats: &Stats) {
    println!(
        "fuzz: summary: seed {seed}, {iterations} iterations in {elapsed_ms} ms; {} SMCCC calls, {} bad HVC immediates, {} calls from the upcall handler",
        stats.smccc,
        stats.bad_immediate,
        REENTRANT_CALLS.load(Ordering::Relaxed)
    );
    let mut line = super::Text::EMPTY;
    let mut in_line = 0;
    for (number, &count) in stats.calls.iter().enumerate() {
        if count == 0 {
            continue;
        }
        use core::fmt::Write;
        let _ = write!(line, " {number}:{count}");
        in_line += 1;
        if in_line == 12 {
            println!("fuzz: calls by number:{line}");
            line = super::Text::EMPTY;
            in_line = 0;
        }
    }
    if in_line > 0 {
        println!("fuzz: calls by number:{line}");
    }
    let mut line = super::Text::EMPTY;
    let mut in_line = 0;
    {
        use core::fmt::Write;
        let _ = write!(line, " ok={} positive={}", stats.ok, stats.positive);
    }
    for (code, &count) in stats.errno.iter().enumerate() {
        if count == 0 {
            continue;
        }
        use core::fmt::Write;
        match Errno::from_code(code as i32) {
            Some(errno) => {
                let _ = write!(line, " {}={count}", errno.name());
            }
            None => {
                let _ = write!(line, " -{code}={count}");
            }
        }
        in_line += 1;
        if in_line == 8 {
            println!("fuzz: results:{line}");
            line = super::Text::EMPTY;
            in_line = 0;
        }
    }
    if stats.other_negative != 0 {
        use core::fmt::Write;
        let _ = write!(line, " other-negative={}", stats.other_negative);
    }
    println!("fuzz: results:{line}");
}

fn still_working(_context: &Context) -> TestResult {
    if xen_version() != (4, 17) {
        return Err(Failure::new(
            format_args!("xen_version 4.17 after fuzzing"),
            format_args!("{:?}", xen_version()),
        ));
    }
    let now = image_checksum();
    let before = IMAGE_SUM.load(Ordering::Relaxed);
    if now != before {
        return Err(Failure::new(
            format_args!("our image (text, rodata, data) unchanged: checksum {before:#x}"),
            format_args!("{now:#x}"),
        ));
    }
    // Free every port but our links, then a fresh loopback must deliver.
    for port in 1..crate::abi::evtchn2l::NR_PORTS {
        if !is_link(port) {
            let _ = evtchn_close(Port(port));
        }
    }
    for link in LINKS.iter() {
        let port = link.load(Ordering::Relaxed);
        if port == 0 {
            continue;
        }
        match evtchn_status(Port(port)) {
            Ok(status) if status.status == STAT_INTERDOMAIN => {}
            other => {
                return Err(Failure::new(
                    format_args!("our link port {port} still interdomain"),
                    format_args!("{:?}", other.map(|status| status.status)),
                ))
            }
        }
    }
    open_loopback()?;
    let (a, b) = (
        Port(LOOP_A.load(Ordering::Relaxed)),
        Port(LOOP_B.load(Ordering::Relaxed)),
    );
    let before = events::count(a);
    evtchn_send(b).map_err(|errno| {
        Failure::new(
            format_args!("EVTCHNOP_send({}) -> Ok", b.0),
            format_args!("-{errno:?}"),
        )
    })?;
    if !irq::wait_until(irq::ticks(1_000_000), irq::Wait::Sleep, || {
        events::count(a) > before
    }) {
        return Err(Failure::new(
            format_args!("the loopback event on port {} within 1 s", a.0),
            format_args!("none"),
        ));
    }
    Ok(())
}
