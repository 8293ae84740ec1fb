//! `console-input`: keyboard input through the PV console ring's `in[]`.
//!
//! The console backend (our hypervisor; `xenconsoled` on Xen) produces `in[]`: it copies
//! bytes to `in[in_prod & 1023]`, advances `in_prod` (release, after the bytes) and signals
//! the console event channel. The guest consumes: reads the bytes up to `in_prod`
//! (acquire), advances `in_cons` (release) and signals the port back, so a backend holding
//! more input for it goes on (as Linux's `hvc_xen` does).
//!
//! The scenario maps the ring as `ring-console` does, prints `console-input: ready`, and
//! then:
//! * `receives_line`: with the parameter `expect=WORD`, waits (at most
//!   [`LINE_TIMEOUT_US`]) for one line (ended by CR or LF) and requires it to be exactly
//!   `WORD`; with `expect=none` (or no `expect=`), requires that nothing at all arrives
//!   within `quiet_ms=N` milliseconds (default [`DEFAULT_QUIET_MS`]).
//! * `nothing_more`: for `quiet_ms` more milliseconds, nothing but line ends may arrive
//!   (input meant for another domain must not leak here).
//!
//! Only when named on the command line: someone (a test runner or a person at the
//! terminal) has to type.

use core::sync::atomic::{AtomicU32, Ordering};

use super::{ring_console, Context, Failure, Scenario, Test, TestResult};
use crate::abi::event_channel_op::Port;
use crate::abi::guest::evtchn_send;
use crate::abi::shared::{xencons_mask_in, XenconsInterface, XENCONS_IN_SIZE};
use crate::arch::cpu;
use crate::irq::{self, Wait};
use crate::println;

/// The scenario.
pub const SCENARIO: Scenario = Scenario {
    available: Some(ring_console::ring_offered),
    ..Scenario::named(
        "console-input",
        &[
            Test::new("receives_line", receives_line),
            Test::new("nothing_more", nothing_more),
        ],
    )
};

/// How long `receives_line` waits for its line.
pub const LINE_TIMEOUT_US: u64 = 60_000_000;
/// Default quiet period, in milliseconds.
pub const DEFAULT_QUIET_MS: u64 = 3000;
/// Longest line kept.
const LINE_CAPACITY: usize = 80;

/// Bytes received that were not line ends, over the whole scenario.
static RECEIVED: AtomicU32 = AtomicU32::new(0);

/// The line read so far.
struct Line {
    bytes: [u8; LINE_CAPACITY],
    length: usize,
    overflowed: bool,
}

impl Line {
    const fn new() -> Self {
        Self {
            bytes: [0; LINE_CAPACITY],
            length: 0,
            overflowed: false,
        }
    }

    fn text(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.length]).unwrap_or("<not UTF-8>")
    }
}

/// The ring's `in[]` reader.
struct Input {
    ring: *mut XenconsInterface,
    port: Port,
}

impl Input {
    fn open(context: &Context) -> Result<Self, Failure> {
        let (ring, port) = ring_console::open_ring(context)?;
        Ok(Self { ring, port })
    }

    fn indices(&self) -> (&AtomicU32, &AtomicU32) {
        // SAFETY: `open_ring` mapped the page, which stays mapped for the rest of the run;
        // atomics tolerate the backend's concurrent accesses.
        unsafe {
            (
                &*core::ptr::addr_of!((*self.ring).in_cons),
                &*core::ptr::addr_of!((*self.ring).in_prod),
            )
        }
    }

    /// Consumes every byte published so far, calling `each` on it; returns how many, or
    /// a failure when the indices are corrupt. Signals the port back after consuming.
    fn consume(&self, mut each: impl FnMut(u8)) -> Result<usize, Failure> {
        let (in_cons, in_prod) = self.indices();
        let producer = in_prod.load(Ordering::Acquire);
        let mut consumer = in_cons.load(Ordering::Relaxed);
        if producer.wrapping_sub(consumer) as usize > XENCONS_IN_SIZE {
            return Err(Failure::new(
                format_args!("in_prod - in_cons <= {XENCONS_IN_SIZE}"),
                format_args!("in_cons {consumer:#x}, in_prod {producer:#x}"),
            ));
        }
        // SAFETY: `input` is a byte array inside the mapped page, reached by raw pointer
        // only (the backend writes it concurrently, beyond in_prod).
        let input = unsafe { core::ptr::addr_of!((*self.ring).input) }.cast::<u8>();
        let mut count = 0;
        while consumer != producer {
            // SAFETY: the index is below XENCONS_IN_SIZE; the byte was published by the
            // in_prod read above.
            each(unsafe { input.add(xencons_mask_in(consumer)).read_volatile() });
            consumer = consumer.wrapping_add(1);
            count += 1;
        }
        if count > 0 {
            in_cons.store(consumer, Ordering::Release);
            // Room again in in[]: the backend may have more for us.
            evtchn_send(self.port).map_err(|errno| {
                Failure::new(
                    format_args!("EVTCHNOP_send({}) -> Ok", self.port.0),
                    format_args!("-{errno:?}"),
                )
            })?;
        }
        Ok(count)
    }

    /// Sleeps until there is input not yet consumed (`in_prod` != `in_cons`) or
    /// `deadline` (counter ticks) passes. Compared with `in_cons`, not with `in_prod` as
    /// read when the wait starts: bytes published between the last `consume` and this
    /// wait would otherwise count as seen, and sleep until the deadline.
    fn wait(&self, deadline: u64) {
        let (in_cons, in_prod) = self.indices();
        let now = cpu::counter();
        if now < deadline {
            irq::wait_until(deadline - now, Wait::Sleep, || {
                in_prod.load(Ordering::Acquire) != in_cons.load(Ordering::Relaxed)
            });
        }
    }
}

/// The quiet period from `quiet_ms=`, in counter ticks.
fn quiet_ticks(context: &Context) -> u64 {
    let milliseconds = context
        .parameter("quiet_ms")
        .and_then(|value| value.parse::<u64>().ok())
        .unwrap_or(DEFAULT_QUIET_MS);
    irq::ticks(milliseconds.saturating_mul(1000))
}

/// Counts what arrives for the quiet period, ignoring line ends; fails if anything does.
fn expect_quiet(input: &Input, ticks: u64, what: &str) -> TestResult {
    let deadline = cpu::counter().saturating_add(ticks);
    let mut line = Line::new();
    let mut arrived = 0u32;
    while cpu::counter() < deadline {
        input.consume(|byte| {
            if byte != b'\r' && byte != b'\n' {
                arrived += 1;
                if line.length < LINE_CAPACITY {
                    line.bytes[line.length] = byte;
                    line.length += 1;
                }
            }
        })?;
        input.wait(deadline);
    }
    RECEIVED.fetch_add(arrived, Ordering::Relaxed);
    if arrived != 0 {
        return Err(Failure::new(
            format_args!("no input {what}"),
            format_args!("{arrived} byte(s): {:?}", line.text()),
        ));
    }
    Ok(())
}

fn receives_line(context: &Context) -> TestResult {
    let input = Input::open(context)?;
    let expected = context.parameter("expect").unwrap_or("none");
    println!("console-input: ready, expecting {expected:?}");
    if expected == "none" {
        expect_quiet(&input, quiet_ticks(context), "at all")?;
        println!("console-input: nothing received, as expected");
        return Ok(());
    }
    let deadline = cpu::counter().saturating_add(irq::ticks(LINE_TIMEOUT_US));
    let mut line = Line::new();
    let mut done = false;
    let mut after = 0u32;
    while !done && cpu::counter() < deadline {
        input.consume(|byte| match byte {
            _ if done => {
                if byte != b'\r' && byte != b'\n' {
                    after += 1;
                }
            }
            b'\r' | b'\n' if line.length == 0 && !line.overflowed => {}
            b'\r' | b'\n' => done = true,
            _ if line.length < LINE_CAPACITY => {
                line.bytes[line.length] = byte;
                line.length += 1;
            }
            _ => line.overflowed = true,
        })?;
        if !done {
            input.wait(deadline);
        }
    }
    RECEIVED.fetch_add(line.length as u32 + after, Ordering::Relaxed);
    if !done {
        return Err(Failure::new(
            format_args!(
                "a line {expected:?} within {} s",
                LINE_TIMEOUT_US / 1_000_000
            ),
            format_args!("{:?} and no line end", line.text()),
        ));
    }
    println!("console-input: received {:?}", line.text());
    if line.text() != expected || line.overflowed || after != 0 {
        return Err(Failure::new(
            format_args!("exactly the line {expected:?}"),
            format_args!(
                "{:?}{}, then {after} more byte(s)",
                line.text(),
                if line.overflowed { " (too long)" } else { "" }
            ),
        ));
    }
    Ok(())
}

fn nothing_more(context: &Context) -> TestResult {
    let input = Input::open(context)?;
    expect_quiet(&input, quiet_ticks(context), "after the expected line")?;
    println!(
        "console-input: nothing more received; {} byte(s) in all",
        RECEIVED.load(Ordering::Relaxed)
    );
    Ok(())
}
