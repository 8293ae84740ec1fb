//! `bench`: the micro-benchmarks of Dall et al. (ISCA 2016) and a few of ours, each
//! printed as `bench: NAME VALUE` (nanoseconds per operation, one decimal) or
//! `bench: NAME n/a (REASON)`. Under `-icount shift=0,sleep=off` one nanosecond is one
//! instruction, so the figures are instruction counts, the same on every run;
//! `cargo xtask bench` runs this on our hypervisor and on Xen and compares them
//! (`docs/performance.md`). Only when named; `quick` on the command line runs a tenth of
//! the repetitions.
//!
//! Every figure is a mean over many repetitions timed with CNTVCT_EL0 read after an ISB.
//! The counter ticks every 16 instructions in QEMU (62.5 MHz), so where one repetition is
//! timed alone ([`virq_completion`], [`evtchn_upcall`]) a varying delay before it moves
//! the start across a tick ([`shift_phase`]) and the mean converges on the true cost
//! instead of a multiple of 16. The timer figure cannot be shifted that way (the
//! deadline is a tick), so it is exact only to one tick.

use core::hint::black_box;

use super::{Context, Failure, Scenario, Test, TestResult};
use crate::abi::guest::{console_write, xen_version};
use crate::arch::cpu;
use crate::irq::{self, Wait};
use crate::{gic, platform, println, smp, timer};

/// The scenario.
pub const SCENARIO: Scenario = Scenario::named(
    "bench",
    &[
        Test::new("boot", boot),
        Test::new("hypercall", hypercall),
        Test::new("gic_trap", gic_trap),
        Test::new("gic_trap_state", gic_trap_state),
        Test::new("virq_completion", virq_completion),
        Test::new("console_write_1", console_write_1),
        Test::new("console_write_64", console_write_64),
        Test::new("evtchn_upcall", evtchn_upcall),
        Test::new("timer_latency", timer_latency),
        Test::new("virtual_ipi", virtual_ipi),
    ],
);

/// The SGI that `virq_completion` sends itself (not used by [`smp`]).
const SGI_BENCH: u32 = 5;
/// How long one awaited event may take before the benchmark fails, in microseconds.
const WAIT_US: u64 = 1_000_000;
/// Timer deadlines in `timer_latency` (at most [`timer::MAX_TICKS`]).
const TIMER_TICKS: u32 = 64;
/// Their rate: one every 100 000 instructions under icount.
const TIMER_HERTZ: u64 = 10_000;

/// `full` repetitions, or a tenth with `quick`.
pub(super) fn repetitions(context: &Context, full: u32) -> u32 {
    if context.flag("quick") {
        (full / 10).max(1)
    } else {
        full
    }
}

/// Prints `bench: NAME V.v` for `ticks` counter ticks spent on `count` operations,
/// rounded to a tenth of a nanosecond.
pub(super) fn report(name: &str, ticks: u64, count: u64) {
    let frequency = u128::from(cpu::counter_frequency().max(1));
    let divisor = frequency * u128::from(count.max(1));
    let tenths = (u128::from(ticks) * 10_000_000_000 + divisor / 2) / divisor;
    println!("bench: {name} {}.{}", tenths / 10, tenths % 10);
}

/// Fails unless `ticks` is a real measurement.
pub(super) fn measured(name: &str, ticks: u64) -> TestResult {
    if ticks == 0 {
        return Err(Failure::new(
            format_args!("{name}: a non-zero time"),
            format_args!("0 ticks"),
        ));
    }
    Ok(())
}

/// A delay of `round % 17` short loop iterations (about three instructions each), so
/// that successive timed operations start at different points of a counter tick.
fn shift_phase(round: u32) {
    for _ in 0..black_box(round % 17) {
        core::hint::spin_loop();
    }
}

/// `boot`: from the machine's start (CNTPCT_EL0 = 0 at reset under QEMU) to this
/// guest's first report line. On Xen this includes Xen's own boot and dom0's build.
fn boot(_context: &Context) -> TestResult {
    let ticks = super::FIRST_LINE_COUNTER.load(core::sync::atomic::Ordering::Relaxed);
    report("boot", ticks, 1);
    measured("boot", ticks)
}

/// `hypercall`: the null hypercall round trip, `xen_version(XENVER_version)`.
fn hypercall(context: &Context) -> TestResult {
    let count = repetitions(context, 20_000);
    let start = cpu::counter();
    for _ in 0..count {
        black_box(xen_version());
    }
    let ticks = cpu::counter() - start;
    report("hypercall", ticks, count.into());
    measured("hypercall", ticks)
}

/// `gic-trap`: one read of GICD_TYPER, which the hypervisor emulates.
fn gic_trap(context: &Context) -> TestResult {
    time_distributor_read(context, "gic-trap", gic::distributor_type)
}

/// `gic-trap-state`: one read of GICD_CTLR, an emulated register that holds state, so
/// that a hypervisor answers it from its model of the domain's GIC rather than from what
/// the domain's build fixed.
fn gic_trap_state(context: &Context) -> TestResult {
    time_distributor_read(context, "gic-trap-state", gic::distributor_control)
}

/// Times `read` of one distributor register, reported as `name`. Generic, so that the
/// read is inlined into the timed loop rather than called through a pointer.
fn time_distributor_read(
    context: &Context,
    name: &str,
    read: impl Fn() -> Option<u32>,
) -> TestResult {
    platform::ensure(&context.boot)?;
    let count = repetitions(context, 10_000);
    let start = cpu::counter();
    for _ in 0..count {
        if read().is_none() {
            return Err(Failure::new(
                format_args!("a configured GIC"),
                format_args!("none"),
            ));
        }
    }
    let ticks = cpu::counter() - start;
    report(name, ticks, count.into());
    measured(name, ticks)
}

/// `virq-completion`: acknowledge and end one virtual interrupt (an SGI this vCPU sent
/// itself, pending with IRQs masked), the timing pair's own cost subtracted.
fn virq_completion(context: &Context) -> TestResult {
    platform::ensure(&context.boot)?;
    irq::set_role(SGI_BENCH, irq::Role::Ipi);
    gic::enable_private(SGI_BENCH).map_err(|error| {
        Failure::new(
            format_args!("SGI {SGI_BENCH} enabled"),
            format_args!("{error}"),
        )
    })?;
    let count = repetitions(context, 2_000);
    let (mut total, mut empty) = (0u64, 0u64);
    for round in 0..count {
        gic::send_sgi(0, smp::mpidr(0), SGI_BENCH)
            .map_err(|error| Failure::new(format_args!("an SGI sent"), format_args!("{error}")))?;
        let deadline = cpu::counter() + irq::ticks(WAIT_US);
        while !cpu::interrupt_pending() {
            if cpu::counter() > deadline {
                return Err(Failure::new(
                    format_args!("SGI {SGI_BENCH} pending (ISR_EL1.I) after it was sent"),
                    format_args!("nothing pending in round {round}"),
                ));
            }
        }
        shift_phase(round);
        let start = cpu::counter();
        let (raw, intid) = gic::acknowledge();
        gic::end_of_interrupt(raw);
        total += cpu::counter() - start;
        if intid != SGI_BENCH {
            return Err(Failure::new(
                format_args!("INTID {SGI_BENCH} acknowledged"),
                format_args!("{intid} in round {round}"),
            ));
        }
        shift_phase(round);
        let start = cpu::counter();
        empty += cpu::counter() - start;
    }
    let ticks = total.saturating_sub(empty);
    report("virq-completion", ticks, count.into());
    measured("virq-completion", ticks)
}

/// `console-write-1` and `console-write-64`: `CONSOLEIO_write` of `bytes`, `count` times,
/// then a line end.
fn console_writes(name: &str, bytes: &[u8], count: u32) -> TestResult {
    let start = cpu::counter();
    for _ in 0..count {
        console_write(bytes).map_err(|errno| {
            Failure::new(
                format_args!("CONSOLEIO_write -> Ok"),
                format_args!("-{errno:?}"),
            )
        })?;
    }
    let ticks = cpu::counter() - start;
    let _ = console_write(b"\n");
    report(name, ticks, count.into());
    measured(name, ticks)
}

fn console_write_1(context: &Context) -> TestResult {
    console_writes("console-write-1", b".", repetitions(context, 500))
}

fn console_write_64(context: &Context) -> TestResult {
    console_writes("console-write-64", &[b'.'; 64], repetitions(context, 100))
}

/// `evtchn-upcall`: `EVTCHNOP_send` on a loopback channel until the upcall handler runs
/// on the same vCPU (CNTVCT before the `hvc` to CNTVCT at the IRQ vector).
fn evtchn_upcall(context: &Context) -> TestResult {
    platform::ensure(&context.boot)?;
    let (a, b) = super::events::open_loopback()?;
    let count = repetitions(context, 2_000);
    let mut total = 0;
    for round in 0..count {
        shift_phase(round);
        total += super::events::send_and_wait(b, a)?;
    }
    report("evtchn-upcall", total, count.into());
    measured("evtchn-upcall", total)
}

/// `timer-latency`: from a virtual-timer deadline (CNTV_CVAL_EL0) to the handler's
/// first instruction, busy with IRQs open (the injection path, not a wake-up).
fn timer_latency(context: &Context) -> TestResult {
    platform::ensure(&context.boot)?;
    let period = cpu::counter_frequency() / TIMER_HERTZ;
    if !timer::start_ticks(TIMER_TICKS, period) {
        return Err(Failure::new(
            format_args!("the virtual timer free"),
            format_args!("it in use"),
        ));
    }
    let timeout = period * u64::from(TIMER_TICKS) + irq::ticks(WAIT_US);
    irq::wait_until(timeout, Wait::Spin, || timer::fired() >= TIMER_TICKS);
    let fired = timer::fired();
    timer::stop_ticks();
    if fired != TIMER_TICKS {
        return Err(Failure::new(
            format_args!("{TIMER_TICKS} timer interrupts"),
            format_args!("{fired}"),
        ));
    }
    let total: u64 = (0..TIMER_TICKS as usize).map(timer::latency).sum();
    report("timer-latency", total, TIMER_TICKS.into());
    Ok(())
}

/// `virtual-ipi`: half the round trip of an SGI between vCPU 0 and vCPU 1 (on another
/// physical CPU), each sleeping in WFI until its SGI arrives; vCPU 1's handler answers.
fn virtual_ipi(context: &Context) -> TestResult {
    if context.boot.cpu_count < 2 {
        println!("bench: virtual-ipi n/a (needs 2 vCPUs, found 1)");
        return Ok(());
    }
    if !smp::is_online(1) {
        super::ipi::cpu_on(context)?;
    }
    let count = repetitions(context, 1_000);
    let answered_before = smp::sgis(0);
    let start = cpu::counter();
    for round in 1..=count {
        gic::send_sgi(1, smp::mpidr(1), smp::SGI_PING)
            .map_err(|error| Failure::new(format_args!("an SGI sent"), format_args!("{error}")))?;
        let back = irq::wait_until(irq::ticks(WAIT_US), Wait::Sleep, || {
            smp::sgis(0) - answered_before >= round
        });
        if !back {
            return Err(Failure::new(
                format_args!("round trip {round} completed"),
                format_args!("{} answers", smp::sgis(0) - answered_before),
            ));
        }
    }
    let ticks = cpu::counter() - start;
    report("virtual-ipi", ticks, 2 * u64::from(count));
    measured("virtual-ipi", ticks)
}
