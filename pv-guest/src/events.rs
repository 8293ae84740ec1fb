//! Xen event channels, 2-level ABI (`hypercall_abi::evtchn2l`).
//!
//! - The shared-info page is a page-aligned, page-sized bss page: [`init`] maps Xen's
//!   shared_info over it with `XENMEM_add_to_physmap(XENMAPSPACE_shared_info, idx 0,
//!   gpfn = its IPA >> 12)` (identity stage-1: VA == IPA; Normal write-back, as all
//!   RAM). From then on it is only touched through the atomics of [`SharedInfo`].
//! - Each vCPU registers its own `vcpu_info`, a 64-byte-aligned slot in bss, with
//!   `VCPUOP_register_vcpu_info(gfn, offset)` ([`init_this_cpu`]), and enables the
//!   event PPI that the device tree's `/hypervisor` `interrupts` names.
//! - Like Linux, [`init`] masks every port; a user unmasks the ports it binds
//!   ([`unmask`]: clear the mask bit; if the port is pending, re-mask and call
//!   `EVTCHNOP_unmask` so the hypervisor raises the upcall).
//! - The upcall ([`upcall`]) is Linux's walk, `evtchn2l::for_each_pending`: clear
//!   `evtchn_upcall_pending`, exchange `evtchn_pending_sel` with 0, scan the selected
//!   words, clear each pending bit before handling the port. Handling counts the port,
//!   records the time (CNTVCT at the IRQ vector) and which CPU handled it, and sends on
//!   the port's reply port if one is set ([`set_reply`]).
//!
//! The walk does not filter ports by the vCPU they are bound to (Linux keeps a per-CPU
//! `cpu_evtchn_mask`): a vCPU that walks a word also delivers the other vCPU's pending
//! ports in it. Counts stay exact; [`handled_by`] tells who handled a port last.

use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use crate::abi::errno::Errno;
use crate::abi::event_channel_op::Port;
use crate::abi::evtchn2l::{self, NR_PORTS};
use crate::abi::guest::{add_to_physmap, evtchn_send, evtchn_unmask, register_vcpu_info};
use crate::abi::memory_op::XENMAPSPACE_SHARED_INFO;
use crate::abi::shared::{SharedInfo, VcpuInfo};
use crate::arch::cpu;
use crate::dt::MAX_CPUS;
use crate::gic;

/// The shared-info page: one whole page of bss.
#[repr(C, align(4096))]
struct SharedInfoPage(SharedInfo);

const _: () = assert!(core::mem::size_of::<SharedInfoPage>() == 4096);

/// Replaced by Xen's shared_info in [`init`]; only ever accessed through atomics.
static SHARED_INFO: SharedInfoPage = SharedInfoPage(SharedInfo::new());

/// A `vcpu_info` in its own 64-byte slot (never crosses a page).
#[repr(C, align(64))]
struct VcpuInfoSlot(VcpuInfo);

/// Each vCPU's registered `vcpu_info`.
static VCPU_INFO: [VcpuInfoSlot; MAX_CPUS] = [const { VcpuInfoSlot(VcpuInfo::new()) }; MAX_CPUS];
static REGISTERED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];
/// The shared-info page is mapped.
static MAPPED: AtomicBool = AtomicBool::new(false);
/// The event PPI.
static EVENT_INTID: AtomicU32 = AtomicU32::new(0);

/// Upcalls taken, per vCPU.
static UPCALLS: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];
/// Deliveries per port.
static COUNT: [AtomicU32; NR_PORTS as usize] = [const { AtomicU32::new(0) }; NR_PORTS as usize];
/// The vCPU that handled each port last.
static HANDLED_BY: [AtomicU8; NR_PORTS as usize] = [const { AtomicU8::new(0) }; NR_PORTS as usize];
/// The last port delivered and when (CNTVCT at the IRQ vector).
static LAST_PORT: AtomicU32 = AtomicU32::new(0);
static LAST_TIME: AtomicU64 = AtomicU64::new(0);
/// A port whose delivery is answered by sending on another: (port, reply) pairs.
static REPLIES: [(AtomicU32, AtomicU32); 2] = [const { (AtomicU32::new(0), AtomicU32::new(0)) }; 2];
/// Replies that failed.
static REPLY_ERRORS: AtomicU32 = AtomicU32::new(0);
/// A function the handler calls for every delivery (0 = none): `fuzz` issues
/// hypercalls from inside the upcall with it.
static DELIVERY_HOOK: AtomicUsize = AtomicUsize::new(0);

/// Why event channels could not be set up.
#[derive(Clone, Copy, Debug)]
pub enum EventError {
    /// `XENMEM_add_to_physmap(shared_info)` failed.
    MapSharedInfo(Errno),
    /// `VCPUOP_register_vcpu_info` failed.
    RegisterVcpuInfo(Errno),
    /// The event PPI could not be enabled.
    Gic(gic::GicError),
    /// No vCPU slot for this CPU index.
    TooManyCpus,
}

impl fmt::Display for EventError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            EventError::MapSharedInfo(errno) => {
                write!(
                    formatter,
                    "XENMEM_add_to_physmap(shared_info) -> -{errno:?}"
                )
            }
            EventError::RegisterVcpuInfo(errno) => {
                write!(formatter, "VCPUOP_register_vcpu_info -> -{errno:?}")
            }
            EventError::Gic(error) => write!(formatter, "event PPI: {error}"),
            EventError::TooManyCpus => write!(formatter, "no vcpu_info slot for this vCPU"),
        }
    }
}

fn shared() -> &'static SharedInfo {
    &SHARED_INFO.0
}

/// The `vcpu_info` the hypervisor uses for `cpu`.
fn vcpu_info(cpu: usize) -> &'static VcpuInfo {
    match (REGISTERED.get(cpu), VCPU_INFO.get(cpu)) {
        (Some(flag), Some(slot)) if flag.load(Ordering::Acquire) => &slot.0,
        _ => &shared().vcpu_info[0],
    }
}

/// Maps the shared-info page, masks every port, and records the event PPI (boot CPU,
/// once, before [`init_this_cpu`]).
pub fn init(event_intid: u32) -> Result<(), EventError> {
    if !MAPPED.load(Ordering::Acquire) {
        let gpfn = core::ptr::addr_of!(SHARED_INFO) as u64 >> 12;
        // SAFETY: the frame is SHARED_INFO's own page (page-aligned, page-sized, so no
        // other object shares it), which holds a `SharedInfo` made of atomics that
        // tolerate the hypervisor's concurrent writes; it is never freed.
        unsafe { add_to_physmap(XENMAPSPACE_SHARED_INFO, 0, gpfn) }
            .map_err(EventError::MapSharedInfo)?;
        MAPPED.store(true, Ordering::Release);
        for word in shared().evtchn_mask.iter() {
            word.store(u64::MAX, Ordering::SeqCst);
        }
    }
    EVENT_INTID.store(event_intid, Ordering::Release);
    Ok(())
}

/// Registers this vCPU's `vcpu_info` (once per vCPU) and enables the event PPI on it.
pub fn init_this_cpu() -> Result<(), EventError> {
    let index = cpu::cpu_index();
    let (Some(flag), Some(slot)) = (REGISTERED.get(index), VCPU_INFO.get(index)) else {
        return Err(EventError::TooManyCpus);
    };
    if !flag.load(Ordering::Acquire) {
        let address = core::ptr::addr_of!(slot.0) as u64;
        // SAFETY: the slot is a `VcpuInfo` (atomics) in a static that lives forever and
        // is used for nothing else; 64-byte alignment keeps it inside one page.
        unsafe { register_vcpu_info(index as u32, address >> 12, (address & 0xfff) as u32) }
            .map_err(EventError::RegisterVcpuInfo)?;
        flag.store(true, Ordering::Release);
    }
    gic::enable_private(EVENT_INTID.load(Ordering::Acquire)).map_err(EventError::Gic)
}

/// The event-PPI handler: Linux's 2-level upcall walk.
pub fn upcall(entry_time: u64) {
    let index = cpu::cpu_index();
    if let Some(count) = UPCALLS.get(index) {
        count.fetch_add(1, Ordering::Relaxed);
    }
    evtchn2l::for_each_pending(shared(), vcpu_info(index), |port| {
        deliver(port, index, entry_time)
    });
}

fn deliver(port: Port, cpu: usize, time: u64) {
    let slot = port.0 as usize;
    LAST_TIME.store(time, Ordering::Relaxed);
    LAST_PORT.store(port.0, Ordering::Relaxed);
    if let Some(by) = HANDLED_BY.get(slot) {
        by.store(cpu as u8, Ordering::Relaxed);
    }
    for (from, to) in REPLIES.iter() {
        if from.load(Ordering::Acquire) == port.0
            && port.0 != 0
            && evtchn_send(Port(to.load(Ordering::Acquire))).is_err()
        {
            REPLY_ERRORS.fetch_add(1, Ordering::Relaxed);
        }
    }
    if let Some(count) = COUNT.get(slot) {
        count.fetch_add(1, Ordering::Release);
    }
    let hook = DELIVERY_HOOK.load(Ordering::Acquire);
    if hook != 0 {
        // SAFETY: only `set_delivery_hook` stores here, and it stores a `fn(Port)`.
        let hook: fn(Port) = unsafe { core::mem::transmute::<usize, fn(Port)>(hook) };
        hook(port);
    }
}

/// Makes the handler call `hook` with every port it delivers (after counting it), from
/// inside the upcall; `None` removes it.
pub fn set_delivery_hook(hook: Option<fn(Port)>) {
    DELIVERY_HOOK.store(hook.map_or(0, |hook| hook as usize), Ordering::Release);
}

/// Whether this vCPU's `vcpu_info` says an upcall is pending (an event is pending and
/// unmasked): `SCHEDOP_block` then returns at once.
pub fn upcall_pending() -> bool {
    vcpu_info(cpu::cpu_index())
        .evtchn_upcall_pending
        .load(Ordering::Acquire)
        != 0
}

/// The frame number of the shared-info page (its IPA >> 12).
pub fn shared_info_frame() -> u64 {
    core::ptr::addr_of!(SHARED_INFO) as u64 >> 12
}

/// Deliveries of `port` so far.
pub fn count(port: Port) -> u32 {
    COUNT
        .get(port.0 as usize)
        .map_or(0, |count| count.load(Ordering::Acquire))
}

/// The vCPU that handled `port` last.
pub fn handled_by(port: Port) -> usize {
    HANDLED_BY
        .get(port.0 as usize)
        .map_or(0, |by| usize::from(by.load(Ordering::Relaxed)))
}

/// The last port delivered, and CNTVCT at the vector of its upcall.
pub fn last_delivery() -> (Port, u64) {
    (
        Port(LAST_PORT.load(Ordering::Relaxed)),
        LAST_TIME.load(Ordering::Relaxed),
    )
}

/// Upcalls taken on vCPU `cpu`.
pub fn upcalls(cpu: usize) -> u32 {
    UPCALLS
        .get(cpu)
        .map_or(0, |count| count.load(Ordering::Relaxed))
}

/// Makes the handler answer every delivery of `port` by sending on `reply` (slot 0 or
/// 1); port 0 clears the slot. Returns the failed replies so far.
pub fn set_reply(slot: usize, port: Port, reply: Port) -> u32 {
    if let Some((from, to)) = REPLIES.get(slot) {
        to.store(reply.0, Ordering::Release);
        from.store(port.0, Ordering::Release);
    }
    REPLY_ERRORS.load(Ordering::Relaxed)
}

/// Masks `port` locally (no hypercall).
pub fn mask(port: Port) {
    evtchn2l::set_mask(shared(), port);
}

/// Unmasks `port`, Linux's way: clear the mask bit; if the port is pending, mask it
/// again and let `EVTCHNOP_unmask` clear it and raise the upcall. Returns whether the
/// hypercall was made.
pub fn unmask(port: Port) -> Result<bool, Errno> {
    evtchn2l::clear_mask(shared(), port);
    if evtchn2l::test_pending(shared(), port) {
        evtchn2l::set_mask(shared(), port);
        evtchn_unmask(port)?;
        return Ok(true);
    }
    Ok(false)
}

/// Whether `port` is pending.
pub fn is_pending(port: Port) -> bool {
    evtchn2l::test_pending(shared(), port)
}

/// Whether `port` is masked.
pub fn is_masked(port: Port) -> bool {
    evtchn2l::test_mask(shared(), port)
}
