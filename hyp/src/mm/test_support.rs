//! Test-only helpers: disjoint slices of the fake physical memory for concurrent tests.
//!
//! Tests run on many threads and share the one fake RAM of `arch::fake`. Each test that
//! lets code write to "physical" memory claims a region here first; regions come from
//! the upper half of fake RAM so that other modules' tests can keep to the lower half.

extern crate std;

use super::frames::FrameAllocator;
use crate::addr::{AddrRange, PhysAddr};
use crate::arch::fake::{FAKE_RAM_BASE, FAKE_RAM_SIZE};
use std::sync::{Condvar, Mutex};

/// Bytes in each claimable region.
pub const REGION_SIZE: u64 = 4 * 1024 * 1024;
const REGIONS: usize = (FAKE_RAM_SIZE / 2 / REGION_SIZE) as usize;
const FIRST_REGION: u64 = FAKE_RAM_BASE + FAKE_RAM_SIZE / 2;

static CLAIMED: Mutex<[bool; REGIONS]> = Mutex::new([false; REGIONS]);
static RELEASED: Condvar = Condvar::new();

/// A claimed region, given back when dropped.
pub struct Region {
    index: usize,
}

impl Region {
    /// The claimed physical range.
    pub fn range(&self) -> AddrRange<PhysAddr> {
        AddrRange::<PhysAddr>::new(
            PhysAddr::new(FIRST_REGION + self.index as u64 * REGION_SIZE),
            REGION_SIZE,
        )
    }

    /// A fresh frame pool over exactly this region.
    pub fn allocator(&self) -> FrameAllocator {
        FrameAllocator::new(&[self.range()], &[]).expect("one range always fits")
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        let mut claimed = CLAIMED.lock().unwrap_or_else(|poison| poison.into_inner());
        claimed[self.index] = false;
        RELEASED.notify_one();
    }
}

/// Claims a free region, waiting for one if all are in use.
pub fn claim_region() -> Region {
    let mut claimed = CLAIMED.lock().unwrap_or_else(|poison| poison.into_inner());
    loop {
        if let Some(index) = claimed.iter().position(|taken| !taken) {
            claimed[index] = true;
            return Region { index };
        }
        claimed = RELEASED
            .wait(claimed)
            .unwrap_or_else(|poison| poison.into_inner());
    }
}
