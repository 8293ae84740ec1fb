//! What both ends of the block split driver (`blkfront`, `blkback`) share: finding the
//! peer over the pre-connected event channel, the disk's size, page-sized buffers and a
//! slot for state that lives from one test to the next.
//!
//! Xen's drivers meet through xenstore; ours use the first channel the hypervisor
//! pre-connected (system configuration `[[channel]]`, device tree `/hypervisor`
//! `hyp,channels`): its remote domain is the peer (the domain the frontend grants to, and
//! whose grants the backend maps), and the ring page is grant reference
//! [`crate::abi::blkif::RING_REF`] of the frontend.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, Ordering};

use super::{Context, Failure};
use crate::abi::event_channel_op::{Port, STAT_INTERDOMAIN};
use crate::abi::guest::evtchn_status;
use crate::{events, platform};

/// The backend's RAM disk: 1 MiB.
pub const DISK_BYTES: usize = 1 << 20;
/// Sectors on the disk.
pub const DISK_SECTORS: u64 = DISK_BYTES as u64 / crate::abi::blkif::SECTOR_SIZE;
/// Bytes in a page.
pub const PAGE_SIZE: usize = 4096;

/// The channel to the peer, checked and unmasked.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    /// Our end of the channel.
    pub port: Port,
    /// The peer's domain id.
    pub domain: u16,
}

/// Sets up interrupts and events, finds the first pre-connected channel, checks with
/// `EVTCHNOP_status` that it is interdomain to the domain the device tree names, and
/// unmasks it.
pub fn connect_channel(context: &Context, who: &str) -> Result<Peer, Failure> {
    let Some(channel) = context.boot.channel(0) else {
        return Err(Failure::new(
            format_args!("{who}: a pre-connected channel in /hypervisor hyp,channels"),
            format_args!("none"),
        ));
    };
    platform::ensure(&context.boot)?;
    let port = Port(channel.port);
    let status = evtchn_status(port).map_err(|errno| {
        Failure::new(
            format_args!("EVTCHNOP_status({}) -> Ok", port.0),
            format_args!("-{errno:?}"),
        )
    })?;
    let domain = u16::try_from(channel.remote_domain).ok();
    match domain {
        Some(domain)
            if status.status == STAT_INTERDOMAIN && status.u[0] & 0xffff == u32::from(domain) => {}
        _ => {
            return Err(Failure::new(
                format_args!(
                    "port {} interdomain to domain {}",
                    port.0, channel.remote_domain
                ),
                format_args!("status {} u {:#x}", status.status, status.u[0]),
            ))
        }
    }
    events::unmask(port).map_err(|errno| {
        Failure::new(
            format_args!("EVTCHNOP_unmask({}) -> Ok", port.0),
            format_args!("-{errno:?}"),
        )
    })?;
    Ok(Peer {
        port,
        domain: domain.unwrap_or_default(),
    })
}

/// Whether `port` is still connected to the peer (`EVTCHNOP_status` says
/// interdomain); returns the status seen otherwise.
pub fn channel_status(port: Port) -> Result<(), u32> {
    match evtchn_status(port) {
        Ok(status) if status.status == STAT_INTERDOMAIN => Ok(()),
        Ok(status) => Err(status.status),
        Err(_) => Err(u32::MAX),
    }
}

/// `N` page-aligned pages of memory that is shared (granted, or written by the
/// hypervisor's copies): reached only through raw pointers, never references.
#[repr(C, align(4096))]
pub struct Pages<const N: usize>(UnsafeCell<[[u8; PAGE_SIZE]; N]>);

// SAFETY: the pages are only reached through raw pointers ([`Pages::address`]), and
// their users (one test at a time, on the boot vCPU) coordinate with the peer through
// the ring protocol.
unsafe impl<const N: usize> Sync for Pages<N> {}

impl<const N: usize> Pages<N> {
    /// Zeroed pages.
    pub const fn new() -> Self {
        Pages(UnsafeCell::new([[0; PAGE_SIZE]; N]))
    }

    /// The address of page `index` (identity map: also its guest-physical address).
    pub fn address(&self, index: usize) -> Option<u64> {
        (index < N).then(|| self.0.get() as u64 + (index * PAGE_SIZE) as u64)
    }
}

/// State kept between the tests of one scenario, behind a busy flag.
pub struct Slot<T> {
    busy: AtomicBool,
    value: UnsafeCell<Option<T>>,
}

// SAFETY: `value` is only reached inside `with`, while `busy` is held.
unsafe impl<T> Sync for Slot<T> {}

impl<T> Slot<T> {
    /// An empty slot.
    pub const fn new() -> Self {
        Slot {
            busy: AtomicBool::new(false),
            value: UnsafeCell::new(None),
        }
    }

    /// Runs `action` on the content; `None` if the slot is in use already.
    pub fn with<R>(&self, action: impl FnOnce(&mut Option<T>) -> R) -> Option<R> {
        if self.busy.swap(true, Ordering::Acquire) {
            return None;
        }
        // SAFETY: `busy` was false and is now ours: this is the only reference.
        let result = action(unsafe { &mut *self.value.get() });
        self.busy.store(false, Ordering::Release);
        Some(result)
    }
}
