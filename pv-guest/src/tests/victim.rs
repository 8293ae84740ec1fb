//! `victim`: a domain that runs beside a hostile one (`fuzz`, or the `isolation`
//! probes) and checks that nothing it owns changes. Only run when named, with
//! `pingpong` semantics for its first pre-connected channel (`victim pingpong=N`).
//!
//! - `fill`: writes a pattern (splitmix64 of the address and our domain's name) over
//!   [`REGIONS`] of our RAM that nothing else uses: the 2 MiB below the kernel (it
//!   holds IPA 0x4008_0000, where the hypervisor itself sits in physical memory on
//!   `virt`) and the last MiB of RAM (where `fuzz` keeps its arena in its own domain).
//! - `channel_present`, `round_trips`: `pingpong`'s, with one page of the regions
//!   rechecked after every round.
//! - `hold`: keeps rechecking, one page per turn, while one of our other pre-connected
//!   channels (to the hostile domains) is still interdomain: the hypervisor closes each
//!   when its domain ends. At most `hold_s=N` seconds (default 600); without a second channel it
//!   returns at once.
//! - `memory_unchanged`: one last full check; every check compares every word.

use core::sync::atomic::{AtomicU64, Ordering};

use super::{pingpong, Context, Failure, Scenario, Test, TestResult};
use crate::abi::event_channel_op::{Port, STAT_INTERDOMAIN};
use crate::abi::guest::{evtchn_status, sched_yield};
use crate::arch::cpu;
use crate::{irq, println};

/// The scenario.
pub const SCENARIO: Scenario = Scenario::named(
    "victim",
    &[
        Test::new("fill", fill),
        Test::new("channel_present", pingpong::channel_present),
        Test::new("round_trips", round_trips),
        Test::new("hold", hold),
        Test::new("memory_unchanged", memory_unchanged),
    ],
);

/// The checked regions, as (offset from the start of RAM, length) and (offset back from
/// the end of RAM, length).
const LOW: (u64, u64) = (0, 2 << 20);
const HIGH: (u64, u64) = (1 << 20, 1 << 20);
/// Channels looked at by `hold`.
const MAX_LINKS: usize = 16;
/// Default longest `hold`.
const DEFAULT_HOLD_SECONDS: u64 = 600;

/// RAM bounds (0 = `fill` did not run).
static RAM_START: AtomicU64 = AtomicU64::new(0);
static RAM_END: AtomicU64 = AtomicU64::new(0);
/// The pattern's key (from the domain name) and the next page to check.
static KEY: AtomicU64 = AtomicU64::new(0);
static NEXT_PAGE: AtomicU64 = AtomicU64::new(0);
/// Pages checked so far.
static CHECKED: AtomicU64 = AtomicU64::new(0);

/// The regions as absolute [start, end) ranges.
fn regions() -> [(u64, u64); 2] {
    let (start, end) = (
        RAM_START.load(Ordering::Relaxed),
        RAM_END.load(Ordering::Relaxed),
    );
    [
        (start + LOW.0, start + LOW.0 + LOW.1),
        (end - HIGH.0, end - HIGH.0 + HIGH.1),
    ]
}

fn pages() -> u64 {
    regions()
        .iter()
        .map(|(start, end)| (end - start) / 4096)
        .sum()
}

/// The address of the `index`-th page of the regions.
fn page_address(index: u64) -> u64 {
    let mut index = index;
    for (start, end) in regions() {
        let count = (end - start) / 4096;
        if index < count {
            return start + index * 4096;
        }
        index -= count;
    }
    0
}

fn pattern(key: u64, address: u64) -> u64 {
    let mut z = (address ^ key).wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn fill(context: &Context) -> TestResult {
    let image = core::ptr::addr_of!(RAM_START) as u64;
    let Some(range) = context
        .boot
        .memory()
        .iter()
        .find(|range| range.base <= image && image < range.end())
    else {
        return Err(Failure::new(
            format_args!("a memory range holding our image"),
            format_args!("none"),
        ));
    };
    // The kernel sits 2 MiB into RAM and the device tree 2 MiB before its end.
    if range.size < 8 << 20 || image < range.base + LOW.1 {
        return Err(Failure::new(
            format_args!("at least 8 MiB of RAM with the kernel 2 MiB in"),
            format_args!("{:#x}+{:#x}, kernel at {image:#x}", range.base, range.size),
        ));
    }
    let key = context
        .parameter("name")
        .unwrap_or("victim")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |sum, byte| {
            (sum ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
        ^ cpu::counter();
    RAM_START.store(range.base, Ordering::Relaxed);
    RAM_END.store(range.end(), Ordering::Relaxed);
    KEY.store(key, Ordering::Relaxed);
    for (start, end) in regions() {
        for address in (start..end).step_by(8) {
            // SAFETY: the regions are RAM of ours that no Rust object uses (below the
            // kernel, and the last MiB, past the device tree), identity mapped.
            unsafe { core::ptr::write_volatile(address as *mut u64, pattern(key, address)) };
        }
    }
    println!(
        "victim: {} KiB filled at {:#x}..{:#x} and {:#x}..{:#x}",
        pages() * 4,
        regions()[0].0,
        regions()[0].1,
        regions()[1].0,
        regions()[1].1
    );
    Ok(())
}

/// Checks page `index`; on a difference, the failure.
fn check_page(index: u64) -> TestResult {
    let key = KEY.load(Ordering::Relaxed);
    let start = page_address(index);
    if start == 0 {
        return Ok(());
    }
    for address in (start..start + 4096).step_by(8) {
        // SAFETY: as in `fill`.
        let word = unsafe { core::ptr::read_volatile(address as *const u64) };
        let expected = pattern(key, address);
        if word != expected {
            return Err(Failure::new(
                format_args!("word at {address:#x} = {expected:#x} as filled"),
                format_args!("{word:#x}"),
            ));
        }
    }
    CHECKED.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Checks the next page in turn.
fn check_next() -> TestResult {
    if RAM_END.load(Ordering::Relaxed) == 0 {
        return Err(Failure::new(
            format_args!("victim::fill to have run"),
            format_args!("it did not"),
        ));
    }
    let index = NEXT_PAGE.fetch_add(1, Ordering::Relaxed) % pages();
    check_page(index)
}

fn round_trips(context: &Context) -> TestResult {
    pingpong::set_round_hook(Some(check_next));
    let result = pingpong::round_trips(context);
    pingpong::set_round_hook(None);
    result
}

fn hold(context: &Context) -> TestResult {
    if context.boot.channel(1).is_none() {
        println!("victim: no second channel, nothing to hold for");
        return Ok(());
    }
    let limit = match context.parameter("hold_s") {
        None => DEFAULT_HOLD_SECONDS,
        Some(text) => text.parse().map_err(|_| {
            Failure::new(
                format_args!("hold_s=N with N a number of seconds"),
                format_args!("hold_s={text}"),
            )
        })?,
    };
    // Every channel after the first goes to a hostile domain: hold while one is open.
    let any_open = || {
        (1..MAX_LINKS).any(|index| {
            context.boot.channel(index).is_some_and(|link| {
                evtchn_status(Port(link.port)).is_ok_and(|status| status.status == STAT_INTERDOMAIN)
            })
        })
    };
    let start = cpu::counter();
    let deadline = start + irq::ticks(limit * 1_000_000);
    let mut turns = 0u64;
    loop {
        check_next()?;
        turns += 1;
        if turns.is_multiple_of(16) {
            if !any_open() {
                break;
            }
            let _ = sched_yield();
        }
        if cpu::counter() > deadline {
            return Err(Failure::new(
                format_args!("the domains on our channels 2.. to end within {limit} s"),
                format_args!("one is still there"),
            ));
        }
    }
    println!(
        "victim: held {} ms until the peers on our other channels ended; {} pages checked",
        irq::nanoseconds(cpu::counter() - start) / 1_000_000,
        CHECKED.load(Ordering::Relaxed)
    );
    Ok(())
}

fn memory_unchanged(_context: &Context) -> TestResult {
    if RAM_END.load(Ordering::Relaxed) == 0 {
        return Err(Failure::new(
            format_args!("victim::fill to have run"),
            format_args!("it did not"),
        ));
    }
    for index in 0..pages() {
        check_page(index)?;
    }
    println!(
        "victim: memory unchanged, {} page checks in all",
        CHECKED.load(Ordering::Relaxed)
    );
    Ok(())
}
