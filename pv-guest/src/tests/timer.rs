//! `timer`: the EL1 virtual timer as an interrupt (INTID from the device tree's
//! `arm,armv8-timer` node, third entry). 50 deadlines at 1 kHz: every one handled (an
//! interrupt with CNTV_CTL_EL0.ISTATUS set), each late by less than [`LATE_BOUND_US`];
//! then silence.
//! Twice: sleeping in WFI between deadlines (the hypervisor must wake the blocked vCPU),
//! then busy with IRQs open (only the injection path is measured).
//! Only when named on the command line.

use super::{Context, Failure, Scenario, Test, TestResult};
use crate::arch::cpu;
use crate::irq::{self, Wait};
use crate::{platform, println, timer};

/// The scenario.
pub const SCENARIO: Scenario = Scenario::named(
    "timer",
    &[
        Test::new("ticks_1khz", ticks_1khz),
        Test::new("ticks_1khz_busy", ticks_1khz_busy),
        Test::new("silent_after_last_tick", silent_after_last_tick),
    ],
);

/// Deadlines programmed.
const TICKS: u32 = 50;
/// Their rate.
const HERTZ: u64 = 1000;
/// Most a handler may run after its deadline, in microseconds. Generous: QEMU without
/// `-icount` runs the guest in host time (Xen 4.17 there: up to ~5 ms with WFI);
/// under `-icount` Xen takes ~4.5 us (WFI) and ~1.1 us (busy).
const LATE_BOUND_US: u64 = 20_000;

fn ticks_1khz(context: &Context) -> TestResult {
    run_ticks(context, Wait::Sleep, "ticks_1khz")
}

fn ticks_1khz_busy(context: &Context) -> TestResult {
    run_ticks(context, Wait::Spin, "ticks_1khz_busy")
}

/// [`TICKS`] deadlines at [`HERTZ`], waiting `how`.
fn run_ticks(context: &Context, how: Wait, name: &str) -> TestResult {
    platform::ensure(&context.boot)?;
    let period = cpu::counter_frequency() / HERTZ;
    if !timer::start_ticks(TICKS, period) {
        return Err(Failure::new(
            format_args!("the virtual timer free"),
            format_args!("it in use"),
        ));
    }
    let timeout = period * u64::from(TICKS) + irq::ticks(1_000_000);
    irq::wait_until(timeout, how, || timer::fired() >= TICKS);
    let fired = timer::fired();
    if fired != TICKS {
        timer::stop_ticks();
        return Err(Failure::new(
            format_args!("{TICKS} timer interrupts"),
            format_args!("{fired} (CNTV_CTL_EL0 {:#x})", cpu::virtual_timer_control()),
        ));
    }
    let count = TICKS as usize;
    let (mut minimum, mut maximum, mut total, mut worst) = (u64::MAX, 0, 0, 0);
    for index in 0..count {
        let latency = timer::latency(index);
        minimum = minimum.min(latency);
        if latency > maximum {
            maximum = latency;
            worst = index;
        }
        total += latency;
    }
    let average = total / count as u64;
    println!(
        "timer::{name}: {TICKS} ticks, period {period} ticks, deadline -> handler: min {} avg {} max {} ticks = min {} avg {} max {} ns",
        minimum,
        average,
        maximum,
        irq::nanoseconds(minimum),
        irq::nanoseconds(average),
        irq::nanoseconds(maximum)
    );
    let (early, spurious) = timer::anomalies();
    timer::stop_ticks();
    if early != 0 || spurious != 0 {
        println!(
            "timer::{name}: {early} ticks reached the vector before their deadline, {spurious} interrupts with ISTATUS clear"
        );
    }
    if irq::nanoseconds(maximum) >= LATE_BOUND_US * 1000 {
        return Err(Failure::new(
            format_args!("every tick late by less than {LATE_BOUND_US} us"),
            format_args!("tick {worst} late by {} ns", irq::nanoseconds(maximum)),
        ));
    }
    Ok(())
}

fn silent_after_last_tick(context: &Context) -> TestResult {
    platform::ensure(&context.boot)?;
    let period = cpu::counter_frequency() / HERTZ;
    if !timer::start_ticks(1, period) {
        return Err(Failure::new(
            format_args!("the virtual timer free"),
            format_args!("it in use"),
        ));
    }
    irq::wait_until(irq::ticks(1_000_000), Wait::Sleep, || timer::fired() >= 1);
    let (before, (_, spurious_before)) = (timer::fired(), timer::anomalies());
    irq::wait_until(5 * period, Wait::Spin, || {
        timer::fired() != before || timer::anomalies().1 != spurious_before
    });
    let (after, (_, spurious_after)) = (timer::fired(), timer::anomalies());
    let spurious = spurious_after - spurious_before;
    timer::stop_ticks();
    let (unexpected, last_unexpected) = irq::unexpected();
    if unexpected != 0 {
        return Err(Failure::new(
            format_args!("no interrupt without a handler since setup"),
            format_args!("{unexpected}, the last INTID {last_unexpected}"),
        ));
    }
    if before != 1 || after != before || spurious != 0 {
        return Err(Failure::new(
            format_args!("one tick, then no timer interrupt after its deadline"),
            format_args!(
                "{before} ticks, then {} more, {spurious} with ISTATUS clear",
                after - before
            ),
        ));
    }
    Ok(())
}
