//! One-time interrupt setup for the scenarios that need interrupts (`events`,
//! `timer`, `ipi`, `evtchn-ipi`): nothing here runs for the default set.
//!
//! [`ensure`] (boot CPU): configure the GIC from the device tree and enable this CPU's
//! interface; enable the virtual-timer PPI (also the wake-up watchdog of
//! [`crate::irq::wait_until`]); map shared_info, register vCPU 0's `vcpu_info` and
//! enable the event PPI; register and enable the SGIs. The outcome is kept: a failure
//! is printed once and fails every later caller.

use core::sync::atomic::{AtomicU8, Ordering};

use crate::dt::{BootInfo, GicVersion};
use crate::tests::{Failure, TestResult};
use crate::{events, gic, irq, print, println, smp, timer};

const NOT_TRIED: u8 = 0;
const READY: u8 = 1;
const FAILED: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(NOT_TRIED);

/// Sets up interrupts and event channels once; Ok if that succeeded.
pub fn ensure(boot: &BootInfo) -> TestResult {
    match STATE.load(Ordering::Acquire) {
        READY => return Ok(()),
        FAILED => {
            return Err(Failure::new(
                format_args!("interrupt and event-channel setup"),
                format_args!("it failed (see above)"),
            ))
        }
        _ => {}
    }
    let result = setup(boot);
    STATE.store(
        if result.is_ok() { READY } else { FAILED },
        Ordering::Release,
    );
    result
}

fn fail(what: core::fmt::Arguments<'_>, got: core::fmt::Arguments<'_>) -> TestResult {
    println!("platform: interrupt setup failed: {what}: {got}");
    Err(Failure::new(what, got))
}

fn setup(boot: &BootInfo) -> TestResult {
    smp::set_cpus(&boot.cpus[..boot.cpu_count]);
    // What the device tree says, before touching any device (a hypervisor without an
    // interrupt controller ends the domain at the first GIC access).
    match boot.gic {
        Some(gic) => print!(
            "platform: GIC {:?}, distributor {:#x}, {} {:#x}",
            gic.version,
            gic.ranges[0].base,
            if gic.version == GicVersion::V2 {
                "CPU interface"
            } else {
                "redistributors"
            },
            gic.ranges[1].base
        ),
        None => print!("platform: no GIC"),
    }
    println!(
        ", event INTID {:?}, virtual timer INTID {:?}, {} vCPUs, counter {} Hz",
        boot.event_intid,
        boot.virtual_timer_intid,
        boot.cpu_count,
        crate::arch::cpu::counter_frequency()
    );
    let Some(gic_info) = boot.gic else {
        return fail(
            format_args!("a GIC node in the device tree"),
            format_args!("none"),
        );
    };
    if let Err(error) = gic::configure(&gic_info).and_then(|()| gic::init_this_cpu()) {
        return fail(
            format_args!("GIC {:?} set up", gic_info.version),
            format_args!("{error}"),
        );
    }
    let Some(timer_intid) = boot.virtual_timer_intid else {
        return fail(
            format_args!("a virtual-timer interrupt in the timer node"),
            format_args!("none"),
        );
    };
    irq::set_role(timer_intid, irq::Role::Timer);
    timer::stop_ticks();
    if let Err(error) = gic::enable_private(timer_intid) {
        return fail(
            format_args!("virtual timer INTID {timer_intid} enabled"),
            format_args!("{error}"),
        );
    }
    timer::set_ready();
    // Without a /hypervisor node (a plain dom0less domU of Xen), the PPI is the one Xen's
    // public ABI fixes for domUs; a node without `interrupts` stays an error.
    let fixed = (!boot.hypervisor_node).then_some(crate::abi::shared::GUEST_EVTCHN_PPI);
    let Some(event_intid) = boot.event_intid.or(fixed) else {
        return fail(
            format_args!("/hypervisor interrupts (the event PPI)"),
            format_args!("none"),
        );
    };
    irq::set_role(event_intid, irq::Role::Events);
    if let Err(error) = events::init(event_intid).and_then(|()| events::init_this_cpu()) {
        return fail(
            format_args!("event channels set up (PPI {event_intid})"),
            format_args!("{error}"),
        );
    }
    if let Err(error) = smp::enable_sgis() {
        return fail(format_args!("SGIs enabled"), format_args!("{error}"));
    }
    // vcpu_info registration raises an upcall: take it now.
    irq::wait_until(irq::ticks(1000), irq::Wait::Spin, || events::upcalls(0) > 0);
    Ok(())
}
