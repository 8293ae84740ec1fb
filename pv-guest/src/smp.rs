//! Secondary vCPUs: PSCI `CPU_ON` / `CPU_OFF` / `AFFINITY_INFO`, and SGI counting.
//!
//! [`start`] fills the vCPU's [`SecondaryBoot`] (the boot CPU's MMU registers, a stack
//! top, the index, the MPIDR it is found by), cleans it to memory (the new vCPU reads
//! it with its MMU off) and calls `CPU_ON(MPIDR from the device tree,
//! secondary_entry, &boot)`. The vCPU turns on
//! its MMU (`arch/entry.rs`), then [`pv_guest_secondary_main`] sets up its GIC
//! interface, registers its `vcpu_info` and enables the event PPI and SGIs, reports
//! itself online, and sleeps in a WFI loop taking interrupts until [`stop`] asks it to
//! turn itself off with `CPU_OFF`.
//!
//! SGIs: [`SGI_PING`] to a secondary is counted there and answered with [`SGI_PONG`]
//! to vCPU 0, which counts it; [`SGI_WAKE`] only wakes a CPU.

use core::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};

use crate::abi::guest::smccc_call;
use crate::abi::psci;
use crate::arch::{cpu, entry};
use crate::dt::MAX_CPUS;
use crate::{events, gic, irq};

/// SGI sent to a secondary: counted, answered with [`SGI_PONG`].
pub const SGI_PING: u32 = 1;
/// SGI sent back to vCPU 0.
pub const SGI_PONG: u32 = 2;
/// SGI that only wakes a CPU (to see a stop request).
pub const SGI_WAKE: u32 = 3;

/// Stack per secondary vCPU.
const STACK_SIZE: usize = 16 * 1024;

/// What `secondary_entry` reads with the MMU off (field offsets are used by the asm).
#[repr(C, align(64))]
pub struct SecondaryBoot {
    /// MAIR_EL1.
    pub memory_attributes: AtomicU64,
    /// TCR_EL1.
    pub translation_control: AtomicU64,
    /// TTBR0_EL1.
    pub table_base: AtomicU64,
    /// SCTLR_EL1.
    pub system_control: AtomicU64,
    /// Initial SP.
    pub stack_top: AtomicU64,
    /// vCPU id.
    pub cpu_index: AtomicU64,
    /// The vCPU's affinity (Aff3 in bits 39:32, Aff2..Aff0 in 23:0) with bit 63 set
    /// once the block is filled in: how `secondary_entry` finds its block.
    pub mpidr: AtomicU64,
}

/// Bit 63 of [`SecondaryBoot::mpidr`]: the block is filled in.
const BOOT_FILLED: u64 = 1 << 63;

/// One boot block per vCPU (index 0 unused); `secondary_entry` reads them.
pub static BOOT: [SecondaryBoot; MAX_CPUS] = [const {
    SecondaryBoot {
        memory_attributes: AtomicU64::new(0),
        translation_control: AtomicU64::new(0),
        table_base: AtomicU64::new(0),
        system_control: AtomicU64::new(0),
        stack_top: AtomicU64::new(0),
        cpu_index: AtomicU64::new(0),
        mpidr: AtomicU64::new(0),
    }
}; MAX_CPUS];

/// Secondary stacks (index 0 unused: the boot CPU has the boot stack).
#[repr(C, align(16))]
struct Stacks([[u8; STACK_SIZE]; MAX_CPUS]);

/// Only ever touched through SP by the secondaries.
static mut STACKS: Stacks = Stacks([[0; STACK_SIZE]; MAX_CPUS]);

/// The vCPU finished its setup and takes interrupts.
static ONLINE: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// The vCPU should turn itself off.
static STOP: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// Setup result on the secondary: 0 ok, else a code (see [`setup_error`]).
static SETUP_ERROR: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// How far the secondary got: 1 Rust entered, 2 GIC done, 3 events done, 4 online.
static PROGRESS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// `CPU_OFF`'s return value, if it returned.
static CPU_OFF_RESULT: [AtomicI64; MAX_CPUS] = [const { AtomicI64::new(NEVER_RETURNED) }; MAX_CPUS];
/// [`cpu_off_result`] when `CPU_OFF` did not return.
pub const NEVER_RETURNED: i64 = i64::MIN;
/// SGIs received per vCPU.
static SGIS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// MPIDR of each vCPU (from the device tree).
static MPIDR: [AtomicU64; MAX_CPUS] = [const { AtomicU64::new(0) }; MAX_CPUS];

/// Records the vCPUs' MPIDRs (device-tree order = vCPU id).
pub fn set_cpus(mpidrs: &[u64]) {
    for (slot, mpidr) in MPIDR.iter().zip(mpidrs) {
        slot.store(*mpidr, Ordering::Relaxed);
    }
}

/// MPIDR of vCPU `index`.
pub fn mpidr(index: usize) -> u64 {
    MPIDR
        .get(index)
        .map_or(0, |slot| slot.load(Ordering::Relaxed))
}

/// Whether vCPU `index` reported itself online.
pub fn is_online(index: usize) -> bool {
    ONLINE
        .get(index)
        .is_some_and(|flag| flag.load(Ordering::Acquire))
}

/// The secondary's setup failure code (0 = none): 1 GIC, 2 events, 3 SGI enable.
pub fn setup_error(index: usize) -> u32 {
    SETUP_ERROR
        .get(index)
        .map_or(0, |code| code.load(Ordering::Acquire))
}

/// How far vCPU `index` got in its setup: 0 not started, 1 Rust entered, 2 GIC
/// interface set up, 4 online.
pub fn progress(index: usize) -> u32 {
    PROGRESS
        .get(index)
        .map_or(0, |stage| stage.load(Ordering::Acquire))
}

/// SGIs received by vCPU `index`.
pub fn sgis(index: usize) -> u32 {
    SGIS.get(index)
        .map_or(0, |count| count.load(Ordering::Acquire))
}

/// `CPU_OFF`'s return value on vCPU `index` ([`NEVER_RETURNED`] if it did not return).
pub fn cpu_off_result(index: usize) -> i64 {
    CPU_OFF_RESULT
        .get(index)
        .map_or(NEVER_RETURNED, |result| result.load(Ordering::Acquire))
}

/// Starts vCPU `index` (>= 1) with PSCI `CPU_ON`; returns PSCI's x0.
pub fn start(index: usize) -> i64 {
    let Some(boot) = BOOT.get(index).filter(|_| index != 0) else {
        return i64::from(psci::INVALID_PARAMETERS);
    };
    ONLINE[index].store(false, Ordering::Release);
    STOP[index].store(false, Ordering::Release);
    SETUP_ERROR[index].store(0, Ordering::Release);
    PROGRESS[index].store(0, Ordering::Release);
    let (settings, system_control) = cpu::current_mmu_settings();
    // SAFETY: only the address of the stack is taken (no reference is formed).
    let stack_base = unsafe { core::ptr::addr_of!(STACKS.0[index]) } as u64;
    boot.memory_attributes
        .store(settings.memory_attributes, Ordering::Relaxed);
    boot.translation_control
        .store(settings.translation_control, Ordering::Relaxed);
    boot.table_base
        .store(settings.table_base, Ordering::Relaxed);
    boot.system_control.store(system_control, Ordering::Relaxed);
    boot.stack_top
        .store(stack_base + STACK_SIZE as u64, Ordering::Relaxed);
    boot.cpu_index.store(index as u64, Ordering::Relaxed);
    let affinity = mpidr(index) & 0xff_00ff_ffff;
    boot.mpidr.store(affinity | BOOT_FILLED, Ordering::Relaxed);
    let address = boot as *const SecondaryBoot as usize;
    cpu::clean_data_cache(address, address + core::mem::size_of::<SecondaryBoot>());
    let [result, ..] = smccc_call(
        psci::CPU_ON_64,
        [
            mpidr(index),
            entry::secondary_entry_address(),
            address as u64,
        ],
    );
    result as i64
}

/// PSCI `AFFINITY_INFO(MPIDR of vCPU index, level 0)`.
pub fn affinity_info(index: usize) -> i64 {
    let [result, ..] = smccc_call(psci::AFFINITY_INFO_64, [mpidr(index), 0, 0]);
    result as i64
}

/// Asks vCPU `index` to turn itself off, and wakes it.
pub fn stop(index: usize) {
    if let Some(flag) = STOP.get(index) {
        CPU_OFF_RESULT[index].store(NEVER_RETURNED, Ordering::Release);
        flag.store(true, Ordering::Release);
        let _ = gic::send_sgi(index, mpidr(index), SGI_WAKE);
    }
}

/// The SGI handler.
pub fn sgi(intid: u32) {
    let index = cpu::cpu_index();
    if let Some(count) = SGIS.get(index) {
        count.fetch_add(1, Ordering::Release);
    }
    if intid == SGI_PING {
        let _ = gic::send_sgi(0, mpidr(0), SGI_PONG);
    }
}

/// Registers the SGI roles and enables the SGIs on this CPU.
pub fn enable_sgis() -> Result<(), gic::GicError> {
    for sgi in [SGI_PING, SGI_PONG, SGI_WAKE] {
        irq::set_role(sgi, irq::Role::Ipi);
        gic::enable_private(sgi)?;
    }
    Ok(())
}

/// Starts whose x0 was not the `CPU_ON` context, and the last such x0.
static BAD_CONTEXTS: AtomicU32 = AtomicU32::new(0);
static LAST_BAD_CONTEXT: AtomicU64 = AtomicU64::new(0);

/// Secondary starts whose x0 was not the context passed to `CPU_ON`: (count, last x0).
pub fn bad_contexts() -> (u32, u64) {
    (
        BAD_CONTEXTS.load(Ordering::Acquire),
        LAST_BAD_CONTEXT.load(Ordering::Acquire),
    )
}

/// Rust entry of a secondary vCPU (from `arch/entry.rs`, MMU on, own stack): `boot` is
/// the block found by MPIDR, `context` x0 at entry (which should be `boot`).
#[no_mangle]
extern "C" fn pv_guest_secondary_main(boot: &SecondaryBoot, context: u64) -> ! {
    let index = boot.cpu_index.load(Ordering::Relaxed) as usize;
    cpu::set_cpu_index(index);
    if context != boot as *const SecondaryBoot as u64 {
        LAST_BAD_CONTEXT.store(context, Ordering::Release);
        BAD_CONTEXTS.fetch_add(1, Ordering::AcqRel);
    }
    PROGRESS[index].store(1, Ordering::Release);
    let error = if gic::init_this_cpu().is_err() {
        1
    } else if PROGRESS[index].swap(2, Ordering::AcqRel) == 0 || events::init_this_cpu().is_err() {
        2
    } else if enable_sgis().is_err() {
        3
    } else {
        0
    };
    SETUP_ERROR[index].store(error, Ordering::Release);
    PROGRESS[index].store(4, Ordering::Release);
    ONLINE[index].store(true, Ordering::Release);
    while !STOP[index].load(Ordering::Acquire) {
        cpu::wait_for_interrupt();
    }
    ONLINE[index].store(false, Ordering::Release);
    let [result, ..] = smccc_call(psci::CPU_OFF, [0, 0, 0]);
    CPU_OFF_RESULT[index].store(result as i64, Ordering::Release);
    cpu::halt();
}
