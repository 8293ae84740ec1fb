//! `spin`: a CPU hog. It spins for a fixed stretch of counter time and checks, from gaps
//! in its own counter reads, that the hypervisor took the CPU away from it at least once
//! meanwhile. Run it beside another domain: alone on a CPU nothing else needs the CPU, so
//! nothing preempts it and the test fails, as it should.

use super::{Context, Failure, Scenario, Test, TestResult};
use crate::arch::cpu::{counter, counter_frequency};
use crate::println;

/// The scenario (only when named: it needs a neighbour to be meaningful).
pub const SCENARIO: Scenario = Scenario::named(
    "spin",
    &[Test::new("was_preempted", spins_and_gets_preempted)],
);

/// How long to spin.
const SPIN_MILLISECONDS: u64 = 300;
/// A gap between two consecutive counter reads longer than this means another vCPU ran.
const GAP_MICROSECONDS: u64 = 1000;

fn spins_and_gets_preempted(_context: &Context) -> TestResult {
    let frequency = counter_frequency().max(1);
    let duration = frequency * SPIN_MILLISECONDS / 1000;
    let gap_threshold = frequency * GAP_MICROSECONDS / 1_000_000;
    let start = counter();
    let mut previous = start;
    let mut longest_gap = 0;
    let mut gaps = 0u32;
    while previous - start < duration {
        let now = counter();
        let gap = now - previous;
        if gap > gap_threshold {
            gaps += 1;
        }
        longest_gap = longest_gap.max(gap);
        previous = now;
    }
    let longest_microseconds = longest_gap * 1_000_000 / frequency;
    println!("spin: {SPIN_MILLISECONDS} ms spun, {gaps} preemption gap(s), longest {longest_microseconds} us");
    if gaps == 0 {
        return Err(Failure::new(
            format_args!("at least one gap over {GAP_MICROSECONDS} us"),
            format_args!("none (longest {longest_microseconds} us)"),
        ));
    }
    Ok(())
}
