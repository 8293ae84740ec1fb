//! Host stand-in for the architecture layer, used by unit tests.
//!
//! "Physical" memory is a host buffer that starts at [`FAKE_RAM_BASE`]; translating a
//! physical address outside it panics, which in a test is a failed assertion about code
//! that touched memory it does not own.

// Host-only test double: a panic here is a failed test, never reached by a guest.
#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

extern crate std;

use crate::addr::PhysAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::vec::Vec;

/// Where the fake physical memory starts.
pub const FAKE_RAM_BASE: u64 = 0x4000_0000;
/// How much fake physical memory there is.
pub const FAKE_RAM_SIZE: u64 = 256 * 1024 * 1024;

struct FakeRam(*mut u8);
// SAFETY: the buffer is leaked (lives forever) and tests coordinate their own use of it.
unsafe impl Send for FakeRam {}
// SAFETY: as above.
unsafe impl Sync for FakeRam {}

fn fake_ram() -> *mut u8 {
    static RAM: OnceLock<FakeRam> = OnceLock::new();
    RAM.get_or_init(|| {
        let buffer: Vec<u8> = std::vec![0; FAKE_RAM_SIZE as usize];
        FakeRam(buffer.leak().as_mut_ptr())
    })
    .0
}

/// A pointer through which the hypervisor reaches physical address `address`.
///
/// # Panics
/// In the fake only, when `address` is outside the fake RAM.
pub fn phys_to_virt(address: PhysAddr) -> *mut u8 {
    let offset = address
        .raw()
        .checked_sub(FAKE_RAM_BASE)
        .filter(|offset| *offset < FAKE_RAM_SIZE)
        .unwrap_or_else(|| panic!("fake arch: {address:?} is outside fake RAM"));
    // SAFETY: offset is inside the leaked buffer of FAKE_RAM_SIZE bytes.
    unsafe { fake_ram().add(offset as usize) }
}

static TLB_INVALIDATIONS: AtomicUsize = AtomicUsize::new(0);

/// Invalidates the stage-2 TLB entries of `vmid` (counted, for tests).
pub fn tlb_invalidate_vmid(_vmid: u16) {
    TLB_INVALIDATIONS.fetch_add(1, Ordering::Relaxed);
}

/// How many TLB invalidations the code under test has asked for so far.
pub fn tlb_invalidation_count() -> usize {
    TLB_INVALIDATIONS.load(Ordering::Relaxed)
}

/// Makes new table descriptors visible (nothing to do on the host).
pub fn table_write_barrier() {}

/// The result of translating a guest virtual address (see the aarch64 version).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The physical address.
    pub address: PhysAddr,
    /// The guest sees the memory as write-back cacheable.
    pub cacheable: bool,
}

/// One fake guest page mapping: (guest VA page, PA page, writable, uncached in the guest).
pub type FakeGuestPage = (u64, u64, bool, bool);

std::thread_local! {
    static GUEST_PAGES: std::cell::RefCell<Vec<FakeGuestPage>> = const { std::cell::RefCell::new(Vec::new()) };
    static LIVE_EL1: std::cell::RefCell<crate::vcpu::El1Context> = std::cell::RefCell::new(Default::default());
    static LIVE_FP: std::cell::RefCell<crate::vcpu::FpContext> = std::cell::RefCell::new(Default::default());
    static FP_TRAPPED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static STAGE2: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Serialises tests that use fake physical memory at overlapping addresses.
pub fn guest_translation_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Sets the fake two-stage translation the current test's "vCPU" sees.
pub fn set_guest_translation(pages: &[FakeGuestPage]) {
    GUEST_PAGES.with(|table| *table.borrow_mut() = pages.to_vec());
}

/// Translates through the table set by [`set_guest_translation`].
pub fn translate_guest_address(
    address: crate::addr::GuestVirtAddr,
    write: bool,
) -> Option<Translation> {
    GUEST_PAGES.with(|table| {
        table
            .borrow()
            .iter()
            .find(|page| page.0 == address.page_base().raw())
            .and_then(|&(_, physical, writable, uncached)| {
                (writable || !write).then(|| Translation {
                    address: PhysAddr::new(physical | address.page_offset()),
                    cacheable: !uncached,
                })
            })
    })
}

/// A monotonic fake counter.
pub fn read_counter() -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    COUNTER.fetch_add(1000, Ordering::Relaxed)
}

/// The fake counter runs at QEMU's 62.5 MHz.
pub fn read_counter_frequency() -> u64 {
    62_500_000
}

/// Saves the "live" fake EL1 registers.
pub fn save_el1(context: &mut crate::vcpu::El1Context) {
    LIVE_EL1.with(|live| *context = *live.borrow());
}

/// Loads the "live" fake EL1 registers.
pub fn restore_el1(context: &crate::vcpu::El1Context) {
    LIVE_EL1.with(|live| *live.borrow_mut() = *context);
}

/// Saves the "live" fake FP registers.
pub fn save_fp(context: &mut crate::vcpu::FpContext) {
    LIVE_FP.with(|live| *context = *live.borrow());
}

/// Copies a vCPU's general registers.
pub fn copy_registers(
    destination: &mut crate::vcpu::GuestRegisters,
    source: &crate::vcpu::GuestRegisters,
) {
    *destination = *source;
}

/// Records that FP/SIMD instructions trap (the fake has no guest to trap).
pub fn trap_fp() {
    FP_TRAPPED.with(|trapped| trapped.set(true));
}

/// Records that FP/SIMD instructions run.
pub fn allow_fp() {
    FP_TRAPPED.with(|trapped| trapped.set(false));
}

/// Whether the last of [`trap_fp`] and [`allow_fp`] was `trap_fp` (tests).
pub fn fp_trapped() -> bool {
    FP_TRAPPED.with(std::cell::Cell::get)
}

/// Loads the "live" fake FP registers.
pub fn restore_fp(context: &crate::vcpu::FpContext) {
    LIVE_FP.with(|live| *live.borrow_mut() = *context);
}

/// Records the stage-2 base register value.
pub fn set_stage2(vttbr: u64) {
    STAGE2.with(|cell| cell.set(vttbr));
}

/// The stage-2 base register value last set.
pub fn current_stage2() -> u64 {
    STAGE2.with(|cell| cell.get())
}

/// Injects an exception into the fake EL1 (see the aarch64 version).
pub fn inject_exception(
    frame: &mut crate::vcpu::GuestRegisters,
    esr: u64,
    instruction_address: u64,
) {
    LIVE_EL1.with(|live| {
        let mut live = live.borrow_mut();
        live.elr_el1 = instruction_address;
        live.spsr_el1 = frame.pstate;
        live.esr_el1 = esr;
        frame.pc = live
            .vbar_el1
            .wrapping_add(crate::vcpu::el1_vector_offset(frame.pstate));
    });
    frame.pstate = crate::vcpu::INITIAL_PSTATE;
}

/// The fake cannot power off; tests that reach this have failed.
pub fn power_off(_psci_over_smc: bool) -> ! {
    panic!("fake arch: power_off")
}

static CACHE_MAINTENANCE: AtomicUsize = AtomicUsize::new(0);

/// Counts a clean-and-invalidate (the host has no caches to maintain).
pub fn clean_invalidate_data_cache(_start: PhysAddr, _size: u64) {
    CACHE_MAINTENANCE.fetch_add(1, Ordering::Relaxed);
}

/// How many clean-and-invalidate operations the code under test asked for so far.
pub fn cache_maintenance_count() -> usize {
    CACHE_MAINTENANCE.load(Ordering::Relaxed)
}

std::thread_local! {
    static PENDING_INTERRUPTS: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
    static TIMER_DEADLINE: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
}

/// The fake EL2 timer INTID (as on QEMU virt and the Pi 4).
pub fn el2_timer_intid() -> u32 {
    26
}

/// Makes `intid` pending at the fake GIC (tests).
pub fn raise_interrupt(intid: u32) {
    PENDING_INTERRUPTS.with(|pending| pending.borrow_mut().push(intid));
}

/// Takes the oldest fake pending interrupt.
pub fn acknowledge_interrupt() -> Option<super::Acknowledged> {
    PENDING_INTERRUPTS.with(|pending| {
        let mut pending = pending.borrow_mut();
        (!pending.is_empty()).then(|| {
            let raw = pending.remove(0);
            super::Acknowledged {
                raw,
                intid: raw & 0x3ff,
            }
        })
    })
}

/// Ends a fake interrupt (nothing to do).
pub fn end_interrupt(_acknowledged: super::Acknowledged) {}

/// Records the EL2 timer deadline.
pub fn arm_timer(deadline: Option<u64>) {
    TIMER_DEADLINE.with(|cell| cell.set(deadline));
}

/// The EL2 timer deadline last armed.
pub fn timer_deadline() -> Option<u64> {
    TIMER_DEADLINE.with(|cell| cell.get())
}

/// The fake cannot wait; tests never idle.
pub fn wait_for_interrupt() {
    panic!("fake arch: wait_for_interrupt")
}

std::thread_local! {
    static LIST_REGISTERS: std::cell::RefCell<[u64; 4]> = const { std::cell::RefCell::new([0; 4]) };
}

/// The fake virtual interface has 4 list registers, like QEMU's GICs.
pub fn list_register_count() -> usize {
    4
}

/// Reads a fake list register (GICv3 encoding in tests).
pub fn read_list_register(index: usize) -> u64 {
    LIST_REGISTERS.with(|registers| registers.borrow().get(index).copied().unwrap_or(0))
}

/// Writes a fake list register.
pub fn write_list_register(index: usize, value: u64) {
    LIST_REGISTERS.with(|registers| {
        if let Some(register) = registers.borrow_mut().get_mut(index) {
            *register = value;
        }
    });
}

/// Nothing to configure in the fake.
pub fn set_virtual_interface(_underflow: bool) {}

/// Nothing to save in the fake.
pub fn save_virtual_interface(_state: &mut crate::virtual_interrupts::InterfaceState) {}

/// Nothing to restore in the fake.
pub fn restore_virtual_interface(_state: &crate::virtual_interrupts::InterfaceState) {}

/// The fake has no GICv2 virtual CPU interface to map.
pub fn virtual_cpu_interface() -> Option<PhysAddr> {
    None
}

/// The fake maintenance interrupt (PPI 9, as on QEMU virt and the Pi 4).
pub fn maintenance_intid() -> Option<u32> {
    Some(25)
}

/// The fake virtual timer INTID (PPI 11).
pub fn virtual_timer_intid() -> u32 {
    27
}

/// Masks the fake live virtual timer.
pub fn mask_virtual_timer() {
    LIVE_EL1.with(|live| live.borrow_mut().cntv_ctl_el0 |= 1 << 1);
}

std::thread_local! {
    static KICKS: std::cell::RefCell<Vec<usize>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The fake kick SGI.
pub fn kick_intid() -> u32 {
    0
}

/// Records a kick of CPU `index` (tests read them with [`take_kicks`]).
pub fn kick_cpu(index: usize) {
    KICKS.with(|kicks| kicks.borrow_mut().push(index));
}

/// The CPUs kicked so far on this thread.
pub fn take_kicks() -> Vec<usize> {
    KICKS.with(|kicks| core::mem::take(&mut *kicks.borrow_mut()))
}

/// Brings the fake EL2 timer forward to `deadline` if disarmed or armed later.
pub fn arm_timer_before(deadline: u64) {
    TIMER_DEADLINE.with(|cell| {
        if cell.get().is_none_or(|armed| armed > deadline) {
            cell.set(Some(deadline));
        }
    });
}

std::thread_local! {
    static ENABLED_SPIS: std::cell::RefCell<Vec<(u32, u8)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Priority of device interrupts (as on the target).
pub const DEVICE_PRIORITY: u8 = 0xa0;

/// Records that SPI `intid` was enabled at `priority` (refused below 32, as the GIC does).
pub fn enable_spi(intid: u32, priority: u8) -> bool {
    if intid < 32 {
        return false;
    }
    ENABLED_SPIS.with(|spis| spis.borrow_mut().push((intid, priority)));
    true
}

/// The SPIs enabled so far on this thread, with their priorities.
pub fn enabled_spis() -> Vec<(u32, u8)> {
    ENABLED_SPIS.with(|spis| spis.borrow().clone())
}
