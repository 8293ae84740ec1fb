//! `hog`: the CPU share a domain gets, for checking scheduling weights. Only when named,
//! with the share the domain should get: `hog share=0.667`.
//!
//! It spins for [`SPIN_MILLISECONDS`] of counter time, reading the counter back to back
//! (the window is exactly that long: see [`spin`]).
//! An interval between two consecutive reads shorter than [`GAP_MICROSECONDS`] is time it
//! ran; a longer one is time the hypervisor gave the CPU to someone else (or spent
//! itself). The share is the time it ran over the time that passed. `share` passes when
//! it is within 10 % (relative) of the expected share; without `share=X` it fails. Run
//! the hogs of one measurement at the same time, pinned to the same physical CPU:
//! a hog that spins alone at the start or end sees a share near 1 for that stretch.

use super::{Context, Failure, Scenario, Test, TestResult};
use crate::arch::cpu::{counter, counter_frequency};
use crate::println;

/// The scenario (only when named: it needs a neighbour and an expected share).
pub const SCENARIO: Scenario = Scenario::named("hog", &[Test::new("share", share)]);

/// How long to spin.
const SPIN_MILLISECONDS: u64 = 600;
/// An interval between two consecutive counter reads longer than this is not ours.
const GAP_MICROSECONDS: u64 = 50;
/// Shares are handled in parts per million.
const PPM: u64 = 1_000_000;
/// Tolerance, relative to the expected share, in percent.
const TOLERANCE_PERCENT: u64 = 10;

/// Parses a share written `0.667`, `.5` or `1` into parts per million (at most 6
/// decimals; must be in 0..=1 and not 0).
fn parse_share(text: &str) -> Option<u64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if (whole.is_empty() && fraction.is_empty())
        || fraction.len() > 6
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut fraction_ppm = 0;
    for (position, digit) in fraction.bytes().enumerate() {
        fraction_ppm += u64::from(digit - b'0') * 10u64.pow(5 - position as u32);
    }
    let share = whole.checked_mul(PPM)?.checked_add(fraction_ppm)?;
    (share > 0 && share <= PPM).then_some(share)
}

/// A share in parts per million, shown with three decimals (`0.667`).
struct Share(u64);

impl core::fmt::Display for Share {
    fn fmt(&self, formatter: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let thousandths = (self.0 + 500) / 1000;
        write!(
            formatter,
            "{}.{:03}",
            thousandths / 1000,
            thousandths % 1000
        )
    }
}

/// What one spin measured, in counter ticks.
struct Measurement {
    elapsed: u64,
    ran: u64,
    gaps: u32,
    longest_gap: u64,
}

/// Spins for exactly `SPIN_MILLISECONDS` of counter time: an interval that crosses the
/// end counts only up to the end, so a long gap at the end (someone else ran past it)
/// does not stretch the window.
fn spin(frequency: u64) -> Measurement {
    let duration = frequency * SPIN_MILLISECONDS / 1000;
    let gap_threshold = frequency * GAP_MICROSECONDS / 1_000_000;
    let start = counter();
    let end = start + duration;
    let mut previous = start;
    let mut measurement = Measurement {
        elapsed: duration,
        ran: 0,
        gaps: 0,
        longest_gap: 0,
    };
    while previous < end {
        let now = counter();
        let interval = now - previous;
        if interval < gap_threshold {
            measurement.ran += now.min(end) - previous;
        } else {
            measurement.gaps += 1;
            measurement.longest_gap = measurement.longest_gap.max(interval);
        }
        previous = now;
    }
    measurement
}

fn share(context: &Context) -> TestResult {
    let expected_text = context.parameter("share");
    let expected = expected_text.and_then(parse_share);
    let frequency = counter_frequency().max(1);
    let measured = spin(frequency);
    let share =
        (u128::from(measured.ran) * u128::from(PPM) / u128::from(measured.elapsed.max(1))) as u64;
    let microseconds = |ticks: u64| (u128::from(ticks) * 1_000_000 / u128::from(frequency)) as u64;
    println!(
        "hog: ran {} us of {} us; {} gaps of {GAP_MICROSECONDS} us or more, longest {} us",
        microseconds(measured.ran),
        microseconds(measured.elapsed),
        measured.gaps,
        microseconds(measured.longest_gap)
    );
    let Some(expected) = expected else {
        println!(
            "hog: share {} (no valid expected share given)",
            Share(share)
        );
        return Err(Failure::new(
            format_args!("share=X on the command line, 0 < X <= 1, at most 6 decimals"),
            format_args!(
                "{}{}",
                if expected_text.is_some() {
                    "share="
                } else {
                    ""
                },
                expected_text.unwrap_or("no share=")
            ),
        ));
    };
    println!("hog: share {} (expected {})", Share(share), Share(expected));
    if share.abs_diff(expected) * 100 > expected * TOLERANCE_PERCENT {
        return Err(Failure::new(
            format_args!(
                "a CPU share within {TOLERANCE_PERCENT} % of {}",
                Share(expected)
            ),
            format_args!("{}", Share(share)),
        ));
    }
    Ok(())
}
