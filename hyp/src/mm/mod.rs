//! Memory management: the physical frame pool and the translation-table builders.
//!
//! What lives where:
//! * [`frames`]: [`FrameAllocator`] (alias [`PhysicalMemory`]), the boot-time pool of free
//!   physical memory (usable ranges minus reservations, fixed-capacity free list,
//!   coalescing, refuses double and foreign frees), the [`PageAllocator`] trait the table
//!   builders take pages through, and [`zero`] for clearing and scrubbing memory.
//! * [`table`]: the VMSAv8-64 4 KiB-granule walker both builders share: block/page
//!   selection, block splitting, freeing emptied tables, break-before-make, the
//!   [`TableBarrier`] hook for the target's barriers and TLB maintenance.
//! * [`stage2`]: [`Stage2`], one domain's IPA -> PA tables, [`Stage2Attributes`],
//!   [`vtcr_value`].
//! * [`stage1`]: [`El2Tables`], the hypervisor's identity-mapped EL2 tables,
//!   [`El2Attributes`], [`tcr_el2_value`], [`MAIR_EL2_VALUE`].
//!
//! Invariants:
//! * physical memory is touched only through [`crate::arch::phys_to_virt`];
//! * every table page comes from a [`PageAllocator`], is cleared before it is linked,
//!   and goes back to it exactly once (emptied tables on unmap, all on destroy), so a
//!   domain's create/destroy cycle leaves the pool's `free_bytes()` unchanged;
//! * a mapping is never overwritten in place: callers unmap first
//!   ([`MapError::AlreadyMapped`]); live blocks are split break-before-make;
//! * table pages are given back only after the TLB invalidation that follows their
//!   unlinking, so no walker still caches them when they are reused.

pub mod frames;
pub mod stage1;
pub mod stage2;
pub mod table;

#[cfg(test)]
mod test_support;

pub use frames::{
    zero, AllocError, FrameAllocator, PageAllocator, PhysicalMemory, MAX_FREE_RANGES,
};
pub use stage1::{
    tcr_el2_value, va_bits_for, El2Attributes, El2MemoryKind, El2Tables, MAIR_EL2_VALUE,
};
pub use stage2::{vtcr_value, MemoryKind, Stage2, Stage2Attributes, DEFAULT_IPA_BITS};
pub use table::{ArchBarrier, MapError, TableBarrier};
