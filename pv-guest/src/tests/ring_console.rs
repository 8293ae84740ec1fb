//! `ring-console`: console output through the PV console ring, a domU's console.
//!
//! `HVMOP_get_param(DOMID_SELF, HVM_PARAM_CONSOLE_PFN)` names the guest frame of a
//! `struct xencons_interface` page (Xen's toolstack and our hypervisor put it at
//! `GUEST_MAGIC_BASE`, 0x3900_0000; the value is read, never assumed) and
//! `HVM_PARAM_CONSOLE_EVTCHN` its event channel. The page lies outside RAM, where the
//! stage-1 map is Device: [`crate::mmu::map_shared_page`] remaps it Normal WB, inner
//! shareable, execute-never before the first access. The guest is the producer of
//! `out[]`: it copies bytes to `out[out_prod & 2047]`, publishes them by advancing
//! `out_prod` (release: after the bytes), and sends on the port; the backend prints
//! them as the domain's console lines, advances `out_cons` (read with acquire before
//! reusing ring space) and signals the port back.
//!
//! Xen's dom0 has no ring (it uses `console_io`): both params read 0 there, and the
//! scenario then prints `ring-console: no console ring (dom0?)` and reports zero tests.
//! Only when named on the command line.

use core::fmt::Write;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::{Context, Failure, Scenario, Test, TestResult, Text};
use crate::abi::errno::Errno;
use crate::abi::event_channel_op::Port;
use crate::abi::guest::{evtchn_send, hvm_get_param};
use crate::abi::hvm_op::{PARAM_CONSOLE_EVTCHN, PARAM_CONSOLE_PFN};
use crate::abi::shared::{xencons_mask_out, XenconsInterface, XENCONS_OUT_SIZE};
use crate::arch::cpu;
use crate::irq::{self, Wait};
use crate::mmu::{self, Mapped};
use crate::{events, platform, println};

/// The scenario.
pub const SCENARIO: Scenario = Scenario {
    available: Some(ring_offered),
    ..Scenario::named(
        "ring-console",
        &[
            Test::new("params_present", params_present),
            Test::new("write_lines", write_lines),
            Test::new("drained", drained),
        ],
    )
};

/// Lines written through the ring.
const LINES: u32 = 20;
/// How long a full ring may stay full (the backend must move `out_cons`).
const RING_FULL_TIMEOUT_US: u64 = 1_000_000;
/// How long the backend may take to drain the ring after the last send.
const DRAIN_TIMEOUT_US: u64 = 1_000_000;

/// How long `drained` listens for the backend's signal (reported, not required).
const SIGNAL_WAIT_US: u64 = 10_000;

/// The ring page's frame and port, from `params_present` (0 = not known).
static RING_PFN: AtomicU64 = AtomicU64::new(0);
static RING_PORT: AtomicU32 = AtomicU32::new(0);
/// The page is mapped and the port unmasked (`write_lines`).
static RING_READY: AtomicU32 = AtomicU32::new(0);
/// Deliveries of the port before the last send of `write_lines`.
static DELIVERIES_BEFORE_LAST: AtomicU32 = AtomicU32::new(0);

/// The two params, as `HVMOP_get_param` answers them.
fn params() -> (Result<u64, Errno>, Result<u64, Errno>) {
    (
        hvm_get_param(PARAM_CONSOLE_PFN),
        hvm_get_param(PARAM_CONSOLE_EVTCHN),
    )
}

/// Shows a param: its value, or `-ERRNO`.
struct Param(Result<u64, Errno>);

impl core::fmt::Display for Param {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            Ok(value) => write!(formatter, "{value:#x}"),
            Err(errno) => write!(formatter, "-{errno:?}"),
        }
    }
}

/// Zero tests when both params read 0 (Xen's dom0); otherwise the tests run, and
/// `params_present` reports what is wrong.
pub(super) fn ring_offered(_context: &Context, explain: bool) -> bool {
    let (pfn, port) = params();
    let offered = !matches!((pfn, port), (Ok(0), Ok(0)));
    if !offered && explain {
        println!(
            "ring-console: CONSOLE_PFN {}, CONSOLE_EVTCHN {}",
            Param(pfn),
            Param(port)
        );
        println!("ring-console: no console ring (dom0?)");
    }
    offered
}

fn params_present(_context: &Context) -> TestResult {
    let (pfn, port) = params();
    println!(
        "ring-console: CONSOLE_PFN {} (IPA {:#x}), CONSOLE_EVTCHN {}",
        Param(pfn),
        pfn.unwrap_or(0) << 12,
        Param(port)
    );
    match (pfn, port) {
        (Ok(pfn), Ok(port)) if pfn != 0 && port != 0 && port <= u64::from(u32::MAX) => {
            RING_PFN.store(pfn, Ordering::Relaxed);
            RING_PORT.store(port as u32, Ordering::Relaxed);
            Ok(())
        }
        _ => Err(Failure::new(
            format_args!("HVMOP_get_param CONSOLE_PFN and CONSOLE_EVTCHN both non-zero"),
            format_args!("{} and {}", Param(pfn), Param(port)),
        )),
    }
}

/// For other scenarios (`console-input`): reads the two params, maps the ring page and
/// unmasks its port, as `params_present` and `write_lines` do; returns the page (identity
/// map: VA = IPA) and the port.
pub(super) fn open_ring(context: &Context) -> Result<(*mut XenconsInterface, Port), Failure> {
    if RING_PFN.load(Ordering::Relaxed) == 0 {
        params_present(context)?;
    }
    let (ring, port) = ring()?;
    prepare(context, ring, port)?;
    Ok((ring, port))
}

/// The ring page (identity map: VA = IPA) and its port, once `params_present` passed.
fn ring() -> Result<(*mut XenconsInterface, Port), Failure> {
    let (pfn, port) = (
        RING_PFN.load(Ordering::Relaxed),
        RING_PORT.load(Ordering::Relaxed),
    );
    if pfn == 0 || port == 0 {
        return Err(Failure::new(
            format_args!("the console ring from ring_console::params_present"),
            format_args!("none"),
        ));
    }
    Ok(((pfn << 12) as *mut XenconsInterface, Port(port)))
}

/// The ring's `out_cons` and `out_prod`.
///
/// # Safety
/// `ring` is the mapped ring page.
unsafe fn indices(ring: *mut XenconsInterface) -> (&'static AtomicU32, &'static AtomicU32) {
    // SAFETY: the page stays mapped for the rest of the run; atomics tolerate the
    // backend's concurrent accesses.
    unsafe {
        (
            &*core::ptr::addr_of!((*ring).out_cons),
            &*core::ptr::addr_of!((*ring).out_prod),
        )
    }
}

/// Maps the ring page Normal WB, sets up events and unmasks the port (once).
fn prepare(context: &Context, ring: *mut XenconsInterface, port: Port) -> TestResult {
    if RING_READY.load(Ordering::Relaxed) != 0 {
        return Ok(());
    }
    platform::ensure(&context.boot)?;
    // SAFETY: vCPU 0 with IRQs masked, no other vCPU running a scenario; the page is
    // outside RAM (or in RAM, then left alone) and was never touched; the GIC and
    // anything else in its gigabyte are not accessed while the blocks are replaced.
    let mapped = unsafe { mmu::map_shared_page(ring as u64) }.map_err(|error| {
        Failure::new(
            format_args!("the ring page {:#x} mapped Normal WB", ring as u64),
            format_args!("{error}"),
        )
    })?;
    println!(
        "ring-console: page {:#x} {}",
        ring as u64,
        match mapped {
            Mapped::Page => "mapped Normal WB inner shareable, execute-never",
            Mapped::AlreadyNormal => "is in RAM, Normal WB already",
        }
    );
    events::unmask(port).map_err(|errno| {
        Failure::new(
            format_args!("EVTCHNOP_unmask({}) -> Ok", port.0),
            format_args!("-{errno:?}"),
        )
    })?;
    RING_READY.store(1, Ordering::Relaxed);
    Ok(())
}

fn send(port: Port) -> TestResult {
    evtchn_send(port).map_err(|errno| {
        Failure::new(
            format_args!("EVTCHNOP_send({}) -> Ok", port.0),
            format_args!("-{errno:?}"),
        )
    })
}

fn write_lines(context: &Context) -> TestResult {
    let (ring, port) = ring()?;
    prepare(context, ring, port)?;
    // SAFETY: `prepare` mapped the page.
    let (out_cons, out_prod) = unsafe { indices(ring) };
    // SAFETY: `output` is a byte array inside the mapped page; only raw pointers reach
    // it (the backend reads it concurrently).
    let output = unsafe { core::ptr::addr_of_mut!((*ring).output) }.cast::<u8>();
    let (start_cons, start_prod) = (
        out_cons.load(Ordering::Acquire),
        out_prod.load(Ordering::Relaxed),
    );
    let (mut bytes, mut full_waits) = (0usize, 0u32);
    for number in 1..=LINES {
        let mut line = Text::EMPTY;
        let _ = writeln!(line, "ring line {number} of {LINES}");
        let text = line.as_bytes();
        let mut written = 0;
        while written < text.len() {
            // We are the only producer: out_prod is ours.
            let prod = out_prod.load(Ordering::Relaxed);
            let cons = out_cons.load(Ordering::Acquire);
            let used = prod.wrapping_sub(cons) as usize;
            if used > XENCONS_OUT_SIZE {
                return Err(Failure::new(
                    format_args!("out_prod - out_cons <= {XENCONS_OUT_SIZE}"),
                    format_args!("out_cons {cons:#x}, out_prod {prod:#x}"),
                ));
            }
            let space = XENCONS_OUT_SIZE - used;
            if space == 0 {
                full_waits += 1;
                let moved = irq::wait_until(irq::ticks(RING_FULL_TIMEOUT_US), Wait::Sleep, || {
                    out_cons.load(Ordering::Acquire) != cons
                });
                if !moved {
                    return Err(Failure::new(
                        format_args!(
                            "out_cons to move within {} ms of a full ring (line {number})",
                            RING_FULL_TIMEOUT_US / 1000
                        ),
                        format_args!("out_cons {cons:#x}, out_prod {prod:#x}"),
                    ));
                }
                continue;
            }
            let chunk = space.min(text.len() - written);
            for (offset, &byte) in text[written..written + chunk].iter().enumerate() {
                let index = xencons_mask_out(prod.wrapping_add(offset as u32));
                // SAFETY: index < XENCONS_OUT_SIZE, inside `output`; the backend does
                // not read these bytes until out_prod covers them.
                unsafe { output.add(index).write_volatile(byte) };
            }
            // Release: the bytes are visible before the index that publishes them.
            out_prod.store(prod.wrapping_add(chunk as u32), Ordering::Release);
            written += chunk;
            bytes += chunk;
            if written < text.len() {
                // The ring filled in mid-line: let the backend drain what is there.
                send(port)?;
            }
        }
        if number == LINES {
            DELIVERIES_BEFORE_LAST.store(events::count(port), Ordering::Relaxed);
        }
        send(port)?;
    }
    println!(
        "ring-console: {LINES} lines, {bytes} bytes through the ring (out_cons {start_cons:#x}, out_prod {start_prod:#x} before), {full_waits} wait(s) on a full ring"
    );
    Ok(())
}

fn drained(_context: &Context) -> TestResult {
    let (ring, port) = ring()?;
    if RING_READY.load(Ordering::Relaxed) == 0 {
        return Err(Failure::new(
            format_args!("the ring mapped by ring_console::write_lines"),
            format_args!("not mapped"),
        ));
    }
    // SAFETY: `write_lines` mapped the page.
    let (out_cons, out_prod) = unsafe { indices(ring) };
    let prod = out_prod.load(Ordering::Relaxed);
    let start = cpu::counter();
    let done = irq::wait_until(irq::ticks(DRAIN_TIMEOUT_US), Wait::Sleep, || {
        out_cons.load(Ordering::Acquire) == prod
    });
    let waited = irq::nanoseconds(cpu::counter().saturating_sub(start)) / 1000;
    let cons = out_cons.load(Ordering::Acquire);
    // The backend signals the port back; IRQs were masked so far: take the upcall.
    let before = DELIVERIES_BEFORE_LAST.load(Ordering::Relaxed);
    irq::wait_until(irq::ticks(SIGNAL_WAIT_US), Wait::Spin, || {
        events::count(port) != before
    });
    println!(
        "ring-console: out_cons {cons:#x}, out_prod {prod:#x} after {waited} us; port {} signalled back {} time(s) since the last send",
        port.0,
        events::count(port).wrapping_sub(before)
    );
    if !done {
        return Err(Failure::new(
            format_args!(
                "out_cons = out_prod {prod:#x} within {} ms of the last send",
                DRAIN_TIMEOUT_US / 1000
            ),
            format_args!("out_cons {cons:#x}"),
        ));
    }
    Ok(())
}
