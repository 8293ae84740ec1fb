//! The AArch64 (EL2) implementation of the architecture interface. All of the hypervisor's
//! assembly lives in this directory: `boot` (entry), `exceptions` (vectors) and `cpu`
//! (system registers).

pub mod boot;
pub mod cpu;
pub mod exceptions;
pub mod gic;
pub mod timer;

use crate::addr::PhysAddr;

pub use cpu::{
    allow_fp, clean_invalidate_data_cache, copy_registers, inject_exception, power_off,
    read_counter, read_counter_frequency, restore_el1, restore_fp, save_el1, save_fp, set_stage2,
    table_write_barrier, tlb_invalidate_vmid, translate_guest_address, trap_fp, Translation,
};

/// The hypervisor maps the physical memory it uses with VA == PA.
pub fn phys_to_virt(address: PhysAddr) -> *mut u8 {
    address.raw() as *mut u8
}

/// Acknowledges the highest-priority pending physical interrupt at this CPU's GIC.
/// `None` when nothing is pending.
pub fn acknowledge_interrupt() -> Option<super::Acknowledged> {
    let gic = gic::Gic::get()?;
    let raw = gic.acknowledge()?;
    Some(super::Acknowledged {
        raw,
        intid: gic.interrupt_id(raw),
    })
}

/// Ends a physical interrupt the hypervisor handled itself (priority drop and deactivate).
pub fn end_interrupt(acknowledged: super::Acknowledged) {
    if let Some(gic) = gic::Gic::get() {
        gic.end_of_interrupt(acknowledged.raw);
    }
}

/// Enables the shared peripheral interrupt `intid` at `priority`, targeted at this CPU
/// (the boot CPU, which takes device interrupts); false if the GIC refuses it.
pub fn enable_spi(intid: u32, priority: u8) -> bool {
    gic::Gic::get().is_some_and(|gic| gic.enable_spi(intid, priority).is_ok())
}

/// Priority of device interrupts the hypervisor handles itself.
pub const DEVICE_PRIORITY: u8 = gic::DEFAULT_PRIORITY;

/// The INTID of the EL2 physical timer.
pub fn el2_timer_intid() -> u32 {
    timer::el2_timer_intid()
}

/// Arms this CPU's EL2 timer for `deadline` (counter ticks), or disarms it.
pub fn arm_timer(deadline: Option<u64>) {
    match deadline {
        Some(deadline) => timer::arm_at(deadline),
        None => timer::disarm(),
    }
}

/// Waits until an interrupt is pending (interrupts stay masked at EL2: WFI still wakes).
pub fn wait_for_interrupt() {
    // SAFETY: WFI only waits; a DSB first so nothing is left in flight.
    unsafe { core::arch::asm!("dsb sy", "wfi", options(nomem, nostack, preserves_flags)) };
}

/// The virtual CPU interface state of a vCPU that is not in the list registers:
/// VMCR and the active-priority registers (group 0 then group 1).
pub use crate::virtual_interrupts::InterfaceState;

/// Number of list registers of the GIC's virtual CPU interface (0 without a GIC).
pub fn list_register_count() -> usize {
    gic::Gic::get().map_or(0, gic::Gic::list_register_count)
}

/// Reads list register `index` (GICH_LRn zero-extended, or ICH_LRn_EL2).
pub fn read_list_register(index: usize) -> u64 {
    gic::Gic::get().map_or(0, |gic| gic.read_list_register(index))
}

/// Writes list register `index`.
pub fn write_list_register(index: usize, value: u64) {
    if let Some(gic) = gic::Gic::get() {
        gic.write_list_register(index, value);
    }
}

/// Turns the virtual CPU interface on, asking for a maintenance interrupt when the list
/// registers run (nearly) empty if `underflow` (HCR.En, HCR.UIE).
pub fn set_virtual_interface(underflow: bool) {
    if let Some(gic) = gic::Gic::get() {
        gic.write_hcr(1 | (u64::from(underflow) << 1));
    }
}

/// Saves VMCR and the active priorities of the vCPU leaving this CPU.
pub fn save_virtual_interface(state: &mut InterfaceState) {
    if let Some(gic) = gic::Gic::get() {
        state.vmcr = gic.read_vmcr();
        let priorities = gic.read_apr();
        state.active_priorities = [priorities.group0, priorities.group1];
    }
}

/// Loads VMCR and the active priorities of the vCPU arriving on this CPU (a vCPU that
/// never ran gets the interface's reset VMCR).
pub fn restore_virtual_interface(state: &InterfaceState) {
    if let Some(gic) = gic::Gic::get() {
        let vmcr = if state.initialised {
            state.vmcr
        } else {
            gic.initial_vmcr()
        };
        gic.write_vmcr(vmcr);
        gic.write_apr(&gic::ActivePriorities {
            group0: state.active_priorities[0],
            group1: state.active_priorities[1],
        });
    }
}

/// Physical address of the GICv2 virtual CPU interface (GICV), mapped into each domain at
/// its GIC CPU-interface address; `None` on GICv3.
pub fn virtual_cpu_interface() -> Option<PhysAddr> {
    gic::Gic::get().and_then(gic::Gic::virtual_cpu_interface)
}

/// The INTID of the GIC's maintenance interrupt, if the device tree names one.
pub fn maintenance_intid() -> Option<u32> {
    gic::Gic::get().and_then(gic::Gic::maintenance_intid)
}

/// The INTID of the EL1 virtual timer (forwarded to the vCPU that owns it).
pub fn virtual_timer_intid() -> u32 {
    timer::virtual_timer_intid()
}

/// Masks the live virtual timer (CNTV_CTL_EL0.IMASK), so its expiry stops asserting the
/// physical interrupt until the guest reprograms it.
pub fn mask_virtual_timer() {
    let _ = timer::mask_virtual_timer();
}

/// The SGI the hypervisor sends to make another physical CPU reschedule.
pub const KICK_SGI: u32 = 0;

/// MPIDR of each physical CPU the hypervisor runs on, by index (set at bring-up).
static CPU_MPIDRS: [core::sync::atomic::AtomicU64; boot::MAX_CPUS] =
    [const { core::sync::atomic::AtomicU64::new(0) }; boot::MAX_CPUS];

/// Records the MPIDR of CPU `index` (for kicks).
pub fn set_cpu_mpidr(index: usize, mpidr: u64) {
    if let Some(slot) = CPU_MPIDRS.get(index) {
        slot.store(mpidr, core::sync::atomic::Ordering::Relaxed);
    }
}

/// The INTID of the kick SGI.
pub fn kick_intid() -> u32 {
    KICK_SGI
}

/// Makes physical CPU `index` take an interrupt and reschedule.
pub fn kick_cpu(index: usize) {
    let Some(mpidr) = CPU_MPIDRS.get(index) else {
        return;
    };
    if let Some(gic) = gic::Gic::get() {
        let _ = gic.send_sgi(mpidr.load(core::sync::atomic::Ordering::Relaxed), KICK_SGI);
    }
}

/// Brings this CPU's EL2 timer forward to `deadline` if it is disarmed or armed later.
pub fn arm_timer_before(deadline: u64) {
    use aarch64_cpu::registers::{Readable, CNTHP_CTL_EL2};
    let armed = CNTHP_CTL_EL2.is_set(CNTHP_CTL_EL2::ENABLE);
    if !armed || timer::deadline() > deadline {
        timer::arm_at(deadline);
    }
}
