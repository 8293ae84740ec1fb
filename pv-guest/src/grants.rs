//! Grant tables (Xen v1), both as granter and as grantee.
//!
//! Layout, inside the `/hypervisor` `reg` hole at [`TABLE_BASE`] (0x3800_0000), one
//! 2 MiB block so that one level-3 stage-1 table covers all of it:
//!
//! - [`TABLE_BASE`] + idx * 4 KiB: our grant-table frame idx, placed there with
//!   `XENMEM_add_to_physmap(XENMAPSPACE_grant_table, idx, gpfn)`. Every frame the
//!   hypervisor offers (`GNTTABOP_query_size`'s `max_nr_frames`, at most
//!   [`MAX_FRAMES`]) is mapped at [`ensure`], so all references exist from the start.
//! - [`FOREIGN_WINDOW`] .. + [`FOREIGN_WINDOW_PAGES`] pages: where this domain maps other
//!   domains' grants (`GNTTABOP_map_grant_ref` with `host_addr` = [`foreign_address`]).
//!   Nothing is there in stage 2 until a map succeeds.
//!
//! Both ranges are mapped Normal write-back, inner shareable, execute-never in stage 1
//! ([`mmu::map_shared_pages`]), as memory shared with the hypervisor and other domains
//! must be: stage 1 and stage 2 attributes combine, and a Device stage-1 mapping would
//! make the two sides of a ring incoherent.
//!
//! References 0..[`RESERVED_REFERENCES`] are reserved, as Linux does (0 console, 1
//! xenstore); the allocator hands out the others. A grant is written with
//! [`GrantEntryV1::grant`] (frame and domain first, flags last) and ended with
//! [`end_access`], which fails while the grantee has it mapped (the hypervisor's
//! `GTF_reading` / `GTF_writing`).

use core::fmt;
use core::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};

use crate::abi::errno::Errno;
use crate::abi::grant_table_op::{GrantEntryV1, GTF_READING, GTF_WRITING};
use crate::abi::guest::{gnttab_query_size, map_grant_frame};
use crate::mmu::{self, MapError};

/// Where grant-table frame 0 is mapped: the `/hypervisor` `reg` hole.
pub const TABLE_BASE: u64 = 0x3800_0000;
/// The most grant-table frames used (the hypervisor offers 4).
pub const MAX_FRAMES: u32 = 4;
/// Grant entries per frame (v1: 8 bytes each).
pub const ENTRIES_PER_FRAME: u32 = crate::abi::grant_table_op::ENTRIES_PER_FRAME_V1;
/// References reserved as Linux reserves them (`GNTTAB_NR_RESERVED_ENTRIES`).
pub const RESERVED_REFERENCES: u32 = 8;
/// Where foreign grants are mapped: inside the hole, past the table frames, in the same
/// 2 MiB block.
pub const FOREIGN_WINDOW: u64 = 0x3810_0000;
/// Pages in the foreign window (up to the end of the 2 MiB block).
pub const FOREIGN_WINDOW_PAGES: u64 = 256;

const PAGE: u64 = 4096;
const MAX_REFERENCES: u32 = MAX_FRAMES * ENTRIES_PER_FRAME;

const NOT_TRIED: u8 = 0;
const READY: u8 = 1;
const FAILED: u8 = 2;

static STATE: AtomicU8 = AtomicU8::new(NOT_TRIED);
/// References that exist (frames mapped * entries per frame).
static REFERENCES: AtomicU32 = AtomicU32::new(0);
/// One bit per reference: set while allocated (or reserved).
static ALLOCATED: [AtomicU64; (MAX_REFERENCES / 64) as usize] =
    [const { AtomicU64::new(0) }; (MAX_REFERENCES / 64) as usize];

/// Why grant tables could not be used.
#[derive(Clone, Copy, Debug)]
pub enum GrantError {
    /// `GNTTABOP_query_size` failed.
    QuerySize(Errno),
    /// `XENMEM_add_to_physmap(grant_table, index)` failed.
    MapFrame(u32, Errno),
    /// The stage-1 map of the hole failed.
    Stage1(MapError),
    /// An earlier [`ensure`] failed.
    SetupFailed,
    /// Every reference is allocated.
    NoFreeReference,
    /// The reference does not exist or is reserved.
    BadReference(u32),
    /// The reference is already allocated.
    Taken(u32),
    /// The grantee still has the grant in use (mapped or being copied).
    InUse(u32),
}

impl fmt::Display for GrantError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            GrantError::QuerySize(errno) => write!(formatter, "GNTTABOP_query_size -> -{errno:?}"),
            GrantError::MapFrame(index, errno) => write!(
                formatter,
                "XENMEM_add_to_physmap(grant_table, {index}) -> -{errno:?}"
            ),
            GrantError::Stage1(error) => {
                write!(formatter, "stage-1 map of the grant hole: {error}")
            }
            GrantError::SetupFailed => write!(formatter, "grant-table setup failed earlier"),
            GrantError::NoFreeReference => write!(formatter, "no free grant reference"),
            GrantError::BadReference(reference) => {
                write!(
                    formatter,
                    "grant reference {reference} does not exist or is reserved"
                )
            }
            GrantError::Taken(reference) => {
                write!(
                    formatter,
                    "grant reference {reference} is already allocated"
                )
            }
            GrantError::InUse(reference) => {
                write!(
                    formatter,
                    "grant reference {reference} is still in use by the grantee"
                )
            }
        }
    }
}

/// Sets grant tables up once (boot CPU, IRQs masked): maps every frame the hypervisor
/// offers at the hole and the hole's pages in stage 1. Returns the number of references.
pub fn ensure() -> Result<u32, GrantError> {
    match STATE.load(Ordering::Acquire) {
        READY => return Ok(REFERENCES.load(Ordering::Acquire)),
        FAILED => return Err(GrantError::SetupFailed),
        _ => {}
    }
    let result = setup();
    STATE.store(
        if result.is_ok() { READY } else { FAILED },
        Ordering::Release,
    );
    result
}

fn setup() -> Result<u32, GrantError> {
    let (_in_use, offered) = gnttab_query_size().map_err(GrantError::QuerySize)?;
    let frames = offered.min(MAX_FRAMES);
    for index in 0..frames {
        let gpfn = (TABLE_BASE >> 12) + u64::from(index);
        // SAFETY: the hole holds nothing of ours: the grant frame only appears there.
        unsafe { map_grant_frame(u64::from(index), gpfn) }
            .map_err(|errno| GrantError::MapFrame(index, errno))?;
    }
    // SAFETY: boot CPU with IRQs masked (tests run there); the gigabyte around the hole
    // holds no code, stack or data of ours, and only the emulated GIC, which nothing
    // touches meanwhile; the pages themselves were never mapped with other attributes.
    unsafe {
        mmu::map_shared_pages(TABLE_BASE, u64::from(frames)).map_err(GrantError::Stage1)?;
        mmu::map_shared_pages(FOREIGN_WINDOW, FOREIGN_WINDOW_PAGES).map_err(GrantError::Stage1)?;
    }
    let references = frames * ENTRIES_PER_FRAME;
    for reference in 0..RESERVED_REFERENCES {
        mark(reference, true);
    }
    REFERENCES.store(references, Ordering::Release);
    Ok(references)
}

/// Sets or clears the allocation bit of `reference`; returns whether it was set before.
fn mark(reference: u32, allocated: bool) -> bool {
    let Some(word) = ALLOCATED.get((reference / 64) as usize) else {
        return true;
    };
    let bit = 1u64 << (reference % 64);
    let before = if allocated {
        word.fetch_or(bit, Ordering::AcqRel)
    } else {
        word.fetch_and(!bit, Ordering::AcqRel)
    };
    before & bit != 0
}

/// The entry of `reference`, if it exists (after [`ensure`]).
pub fn entry(reference: u32) -> Option<&'static GrantEntryV1> {
    if reference >= REFERENCES.load(Ordering::Acquire) {
        return None;
    }
    let address = TABLE_BASE + u64::from(reference) * 8;
    // SAFETY: the frame holding it is mapped (stage 2 by `map_grant_frame`, stage 1
    // Normal WB) for the rest of the domain's life; the entry is two atomics, which
    // tolerate the hypervisor's concurrent compare-and-swaps; 8-byte aligned.
    Some(unsafe { &*(address as *const GrantEntryV1) })
}

/// Allocates `reference` (a fixed one, such as a protocol's ring reference).
pub fn claim(reference: u32) -> Result<(), GrantError> {
    if reference < RESERVED_REFERENCES || entry(reference).is_none() {
        return Err(GrantError::BadReference(reference));
    }
    if mark(reference, true) {
        return Err(GrantError::Taken(reference));
    }
    Ok(())
}

/// Allocates the lowest free reference.
pub fn allocate() -> Result<u32, GrantError> {
    let references = REFERENCES.load(Ordering::Acquire);
    (RESERVED_REFERENCES..references)
        .find(|&reference| !mark(reference, true))
        .ok_or(GrantError::NoFreeReference)
}

/// Grants the page at `address` (our guest-physical address, identity-mapped) to
/// `domain` under `reference` (which the caller allocated).
pub fn grant(reference: u32, domain: u16, address: u64, readonly: bool) -> Result<(), GrantError> {
    let entry = entry(reference).ok_or(GrantError::BadReference(reference))?;
    let frame = u32::try_from(address / PAGE).map_err(|_| GrantError::BadReference(reference))?;
    entry.grant(domain, frame, readonly);
    Ok(())
}

/// Allocates a reference and grants the page at `address` to `domain` under it.
pub fn grant_page(domain: u16, address: u64, readonly: bool) -> Result<u32, GrantError> {
    let reference = allocate()?;
    if let Err(error) = grant(reference, domain, address, readonly) {
        mark(reference, false);
        return Err(error);
    }
    Ok(reference)
}

/// Whether the grantee has `reference` in use (`GTF_reading` or `GTF_writing`).
pub fn in_use(reference: u32) -> bool {
    entry(reference).is_some_and(|entry| {
        let flags = GrantEntryV1::flags_of(entry.header.load(Ordering::Acquire));
        flags & (GTF_READING | GTF_WRITING) != 0
    })
}

/// Ends the grant under `reference` and frees the reference; fails (changing nothing)
/// while the grantee has it in use.
pub fn end_access(reference: u32) -> Result<(), GrantError> {
    let entry = entry(reference).ok_or(GrantError::BadReference(reference))?;
    if !entry.try_revoke() {
        return Err(GrantError::InUse(reference));
    }
    if reference >= RESERVED_REFERENCES {
        mark(reference, false);
    }
    Ok(())
}

/// The guest-physical address of page `slot` of the foreign window.
pub fn foreign_address(slot: u64) -> Option<u64> {
    (slot < FOREIGN_WINDOW_PAGES).then_some(FOREIGN_WINDOW + slot * PAGE)
}
