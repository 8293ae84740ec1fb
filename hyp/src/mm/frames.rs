//! The physical frame pool: which physical memory is free, and handing it out.
//!
//! [`FrameAllocator`] is built once at boot from the memory the device tree describes
//! (`/memory` `reg`) minus every reserved range (the hypervisor image, the device tree,
//! the boot pack, firmware reservations). It keeps a sorted list of disjoint, non-adjacent
//! free ranges of fixed capacity ([`MAX_FREE_RANGES`]) and a copy of the initial free set
//! (the *managed* memory), so that it can refuse to take back memory it never handed out.
//!
//! Invariants:
//! * every free range is page aligned, non-empty, inside the managed memory;
//! * free ranges are sorted by address, disjoint and never adjacent (adjacent ranges are
//!   merged, so freeing everything restores the initial list);
//! * `free_bytes()` is the sum of the free ranges' sizes.
//!
//! The pool never touches the memory it manages except through [`zero`] (and the helpers
//! that call it), which reaches physical memory only through [`crate::arch::phys_to_virt`].

use crate::addr::{AddrRange, PhysAddr, PAGE_SIZE};
use heapless::Vec;

/// How many disjoint free ranges the pool can track. Every allocation or free changes
/// the count by at most one; boot-time reservations split ranges too.
pub const MAX_FREE_RANGES: usize = 128;

/// Why the frame pool refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocError {
    /// A size of zero, a size that is not a multiple of [`PAGE_SIZE`], an alignment that
    /// is not a power of two, or a range that is not page aligned.
    InvalidRequest,
    /// No free range can hold the request.
    OutOfMemory,
    /// The request fits, but serving it would need more than [`MAX_FREE_RANGES`] free
    /// ranges (the pool is too fragmented).
    TooFragmented,
    /// The range given back overlaps memory that is already free.
    DoubleFree,
    /// The range given back is not wholly inside one managed range: it was never handed
    /// out by this pool.
    NotAllocated,
}

/// A page-table page allocator: what the translation-table builders need.
pub trait PageAllocator {
    /// Takes one [`PAGE_SIZE`]-aligned page. Its contents are unspecified.
    fn allocate_page(&mut self) -> Result<PhysAddr, AllocError>;
    /// Gives back one page earlier returned by [`PageAllocator::allocate_page`].
    fn free_page(&mut self, page: PhysAddr) -> Result<(), AllocError>;
}

/// A half-open span `[start, end)` of raw physical addresses, `start < end`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    start: u64,
    end: u64,
}

impl Span {
    fn to_range(self) -> AddrRange<PhysAddr> {
        AddrRange::<PhysAddr>::new(PhysAddr::new(self.start), self.end - self.start)
    }
}

/// Rounds `value` up to a multiple of `align` (a power of two), `None` on overflow.
const fn align_up(value: u64, align: u64) -> Option<u64> {
    match value.checked_add(align - 1) {
        Some(sum) => Some(sum & !(align - 1)),
        None => None,
    }
}

/// Rounds `value` down to a multiple of `align` (a power of two).
const fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}

/// The pool of free physical memory. See the module documentation for its invariants.
#[derive(Clone, Debug)]
pub struct FrameAllocator {
    free: Vec<Span, MAX_FREE_RANGES>,
    managed: Vec<Span, MAX_FREE_RANGES>,
    free_bytes: u64,
}

/// The name the rest of the hypervisor uses for the boot-time pool of physical memory.
pub type PhysicalMemory = FrameAllocator;

impl FrameAllocator {
    /// Builds the pool from the usable memory ranges minus the reserved ranges.
    ///
    /// Usable ranges are shrunk inwards to page boundaries and may overlap each other;
    /// reserved ranges are grown outwards to page boundaries (a partly reserved page is
    /// not usable). Empty ranges are ignored. Fails with [`AllocError::TooFragmented`]
    /// when the result needs more than [`MAX_FREE_RANGES`] ranges.
    pub fn new(
        usable: &[AddrRange<PhysAddr>],
        reserved: &[AddrRange<PhysAddr>],
    ) -> Result<Self, AllocError> {
        let mut free: Vec<Span, MAX_FREE_RANGES> = Vec::new();
        for range in usable {
            let end = range.start.raw().saturating_add(range.size);
            let Some(start) = align_up(range.start.raw(), PAGE_SIZE) else {
                continue;
            };
            let end = align_down(end, PAGE_SIZE);
            if start < end {
                union_insert(&mut free, Span { start, end })?;
            }
        }
        for range in reserved {
            let start = align_down(range.start.raw(), PAGE_SIZE);
            let end = range.start.raw().saturating_add(range.size);
            let end = align_up(end, PAGE_SIZE).unwrap_or(align_down(u64::MAX, PAGE_SIZE));
            if start < end {
                subtract(&mut free, Span { start, end })?;
            }
        }
        let free_bytes = free.iter().map(|span| span.end - span.start).sum();
        Ok(Self {
            managed: free.clone(),
            free,
            free_bytes,
        })
    }

    /// Bytes currently free.
    pub fn free_bytes(&self) -> u64 {
        self.free_bytes
    }

    /// Bytes managed by the pool (free or handed out): the free bytes right after boot.
    pub fn managed_bytes(&self) -> u64 {
        self.managed.iter().map(|span| span.end - span.start).sum()
    }

    /// How many disjoint free ranges there are now.
    pub fn free_range_count(&self) -> usize {
        self.free.len()
    }

    /// The free ranges, lowest address first.
    pub fn free_ranges(&self) -> impl Iterator<Item = AddrRange<PhysAddr>> + '_ {
        self.free.iter().map(|span| span.to_range())
    }

    /// Takes a contiguous run of `size` bytes starting at a multiple of `align`.
    ///
    /// `size` must be a non-zero multiple of [`PAGE_SIZE`]; `align` a power of two
    /// (alignments below [`PAGE_SIZE`] are raised to it). First fit from the lowest
    /// address; when the fixed range list is full, a placement that does not split a
    /// free range in two is preferred. The memory is not cleared (see
    /// [`FrameAllocator::allocate_zeroed`]).
    pub fn allocate(&mut self, size: u64, align: u64) -> Result<AddrRange<PhysAddr>, AllocError> {
        if size == 0 || !size.is_multiple_of(PAGE_SIZE) || !align.is_power_of_two() {
            return Err(AllocError::InvalidRequest);
        }
        let align = align.max(PAGE_SIZE);
        let mut blocked_by_capacity = false;
        for index in 0..self.free.len() {
            let Some(&span) = self.free.get(index) else {
                break;
            };
            let Some(low) = align_up(span.start, align) else {
                continue;
            };
            let fits = |start: u64| {
                start >= span.start && start.checked_add(size).is_some_and(|end| end <= span.end)
            };
            if !fits(low) {
                continue;
            }
            let splits = |start: u64| start > span.start && start + size < span.end;
            let mut start = low;
            if splits(start) && self.free.is_full() {
                let high = align_down(span.end - size, align);
                if fits(high) && !splits(high) {
                    start = high;
                } else {
                    blocked_by_capacity = true;
                    continue;
                }
            }
            self.take(
                index,
                Span {
                    start,
                    end: start + size,
                },
            )?;
            return Ok(AddrRange::<PhysAddr>::new(PhysAddr::new(start), size));
        }
        Err(if blocked_by_capacity {
            AllocError::TooFragmented
        } else {
            AllocError::OutOfMemory
        })
    }

    /// Like [`FrameAllocator::allocate`], and clears the memory before returning it.
    pub fn allocate_zeroed(
        &mut self,
        size: u64,
        align: u64,
    ) -> Result<AddrRange<PhysAddr>, AllocError> {
        let range = self.allocate(size, align)?;
        // SAFETY: the range was free until now, so nothing else refers to it, and it lies
        // inside the physical memory this pool manages.
        unsafe { zero(range) };
        Ok(range)
    }

    /// Gives a range back. It must be page aligned, lie wholly inside memory this pool
    /// manages, and not overlap anything already free; otherwise it is refused with
    /// [`AllocError::InvalidRequest`], [`AllocError::NotAllocated`] or
    /// [`AllocError::DoubleFree`] and nothing changes. Adjacent free ranges are merged.
    ///
    /// The pool does not remember individual allocations, so giving back part of an
    /// allocation (or two allocations at once) is accepted.
    pub fn free(&mut self, range: AddrRange<PhysAddr>) -> Result<(), AllocError> {
        let span = self.check_free(range)?;
        insert_disjoint(&mut self.free, span)?;
        self.free_bytes += span.end - span.start;
        Ok(())
    }

    /// Checks that `range` may be given back, clears it, then gives it back: the scrub
    /// for guest memory, so nothing of one domain reaches the next owner.
    ///
    /// # Safety
    /// The caller owns `range` (it came from this pool) and nothing will access it
    /// after this call; no Rust reference into it is live.
    pub unsafe fn free_scrubbed(&mut self, range: AddrRange<PhysAddr>) -> Result<(), AllocError> {
        self.check_free(range)?;
        // SAFETY: the range is allocated memory of this pool (checked above) and the
        // caller guarantees it is no longer used.
        unsafe { zero(range) };
        self.free(range)
    }

    /// Validates a range being given back and converts it to a span.
    fn check_free(&self, range: AddrRange<PhysAddr>) -> Result<Span, AllocError> {
        if range.size == 0
            || !range.size.is_multiple_of(PAGE_SIZE)
            || !range.start.is_aligned(PAGE_SIZE)
        {
            return Err(AllocError::InvalidRequest);
        }
        let end = range.end().ok_or(AllocError::NotAllocated)?;
        let span = Span {
            start: range.start.raw(),
            end: end.raw(),
        };
        if !self
            .managed
            .iter()
            .any(|managed| managed.start <= span.start && span.end <= managed.end)
        {
            return Err(AllocError::NotAllocated);
        }
        if self
            .free
            .iter()
            .any(|free| free.start < span.end && span.start < free.end)
        {
            return Err(AllocError::DoubleFree);
        }
        Ok(span)
    }

    /// Removes `taken` (inside the free range at `index`) from the free list.
    fn take(&mut self, index: usize, taken: Span) -> Result<(), AllocError> {
        let span = *self.free.get(index).ok_or(AllocError::OutOfMemory)?;
        let head = (span.start < taken.start).then_some(Span {
            start: span.start,
            end: taken.start,
        });
        let tail = (taken.end < span.end).then_some(Span {
            start: taken.end,
            end: span.end,
        });
        match (head, tail) {
            (Some(head), Some(tail)) => {
                self.free
                    .insert(index + 1, tail)
                    .map_err(|_| AllocError::TooFragmented)?;
                replace(&mut self.free, index, head);
            }
            (Some(rest), None) | (None, Some(rest)) => replace(&mut self.free, index, rest),
            (None, None) => {
                self.free.remove(index);
            }
        }
        self.free_bytes -= taken.end - taken.start;
        Ok(())
    }
}

impl PageAllocator for FrameAllocator {
    fn allocate_page(&mut self) -> Result<PhysAddr, AllocError> {
        self.allocate(PAGE_SIZE, PAGE_SIZE).map(|range| range.start)
    }

    fn free_page(&mut self, page: PhysAddr) -> Result<(), AllocError> {
        self.free(AddrRange::<PhysAddr>::new(page, PAGE_SIZE))
    }
}

/// Overwrites the element at `index` (which the caller has bounds-checked).
fn replace(list: &mut Vec<Span, MAX_FREE_RANGES>, index: usize, span: Span) {
    if let Some(slot) = list.get_mut(index) {
        *slot = span;
    }
}

/// Inserts `span` into a sorted list of disjoint, non-adjacent spans, merging it with
/// every span it overlaps or touches.
fn union_insert(list: &mut Vec<Span, MAX_FREE_RANGES>, span: Span) -> Result<(), AllocError> {
    let mut merged = span;
    // Remove every span that overlaps or touches, widening `merged`.
    let mut index = 0;
    while index < list.len() {
        let Some(&existing) = list.get(index) else {
            break;
        };
        if existing.start <= merged.end && merged.start <= existing.end {
            merged.start = merged.start.min(existing.start);
            merged.end = merged.end.max(existing.end);
            list.remove(index);
        } else {
            index += 1;
        }
    }
    let position = list
        .iter()
        .take_while(|existing| existing.end < merged.start)
        .count();
    list.insert(position, merged)
        .map_err(|_| AllocError::TooFragmented)
}

/// Inserts `span`, which overlaps nothing in the list, merging it with touching spans.
fn insert_disjoint(list: &mut Vec<Span, MAX_FREE_RANGES>, span: Span) -> Result<(), AllocError> {
    let position = list
        .iter()
        .take_while(|existing| existing.end <= span.start)
        .count();
    let joins_previous = position
        .checked_sub(1)
        .and_then(|previous| list.get(previous))
        .is_some_and(|previous| previous.end == span.start);
    let joins_next = list
        .get(position)
        .is_some_and(|next| next.start == span.end);
    match (joins_previous, joins_next) {
        (true, true) => {
            let next_end = list.get(position).map_or(span.end, |next| next.end);
            list.remove(position);
            if let Some(previous) = list.get_mut(position - 1) {
                previous.end = next_end;
            }
        }
        (true, false) => {
            if let Some(previous) = list.get_mut(position - 1) {
                previous.end = span.end;
            }
        }
        (false, true) => {
            if let Some(next) = list.get_mut(position) {
                next.start = span.start;
            }
        }
        (false, false) => list
            .insert(position, span)
            .map_err(|_| AllocError::TooFragmented)?,
    }
    Ok(())
}

/// Removes `hole` from every span of the list.
fn subtract(list: &mut Vec<Span, MAX_FREE_RANGES>, hole: Span) -> Result<(), AllocError> {
    let mut index = 0;
    while index < list.len() {
        let Some(&span) = list.get(index) else {
            break;
        };
        if span.end <= hole.start || hole.end <= span.start {
            index += 1;
            continue;
        }
        let head = (span.start < hole.start).then_some(Span {
            start: span.start,
            end: hole.start,
        });
        let tail = (hole.end < span.end).then_some(Span {
            start: hole.end,
            end: span.end,
        });
        match (head, tail) {
            (Some(head), Some(tail)) => {
                list.insert(index + 1, tail)
                    .map_err(|_| AllocError::TooFragmented)?;
                replace(list, index, head);
                index += 2;
            }
            (Some(rest), None) | (None, Some(rest)) => {
                replace(list, index, rest);
                index += 1;
            }
            (None, None) => {
                list.remove(index);
            }
        }
    }
    Ok(())
}

/// Clears `range` (rounded out to whole pages), one page at a time through
/// [`crate::arch::phys_to_virt`].
///
/// # Safety
/// The caller owns every page of `range` and no Rust reference into it is live; the
/// memory is not in use by the hypervisor or by a running domain.
pub unsafe fn zero(range: AddrRange<PhysAddr>) {
    let first = range.start.page_base().raw();
    let end = range.start.raw().saturating_add(range.size);
    let mut page = first;
    while page < end {
        let pointer = crate::arch::phys_to_virt(PhysAddr::new(page));
        // SAFETY: the caller owns the page; phys_to_virt gives a pointer valid for the
        // whole page (pages are mapped whole), and u8 has no alignment requirement.
        unsafe { core::ptr::write_bytes(pointer, 0, PAGE_SIZE as usize) };
        match page.checked_add(PAGE_SIZE) {
            Some(next) => page = next,
            None => break,
        }
    }
}

impl FrameAllocator {
    /// A pool with no memory, for statics that are filled in at boot.
    pub const fn empty() -> Self {
        Self {
            managed: Vec::new(),
            free: Vec::new(),
            free_bytes: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    extern crate std;
    use std::vec::Vec as StdVec;

    const MIB: u64 = 1024 * 1024;

    fn range(start: u64, size: u64) -> AddrRange<PhysAddr> {
        AddrRange::<PhysAddr>::new(PhysAddr::new(start), size)
    }

    #[test]
    fn builds_from_usable_minus_reserved() {
        let pool = FrameAllocator::new(
            &[range(0x4000_0000, 64 * MIB)],
            &[range(0x4000_0000, 0x1234), range(0x4100_0000, MIB)],
        )
        .unwrap();
        let ranges: StdVec<_> = pool.free_ranges().collect();
        assert_eq!(
            ranges,
            [
                range(0x4000_2000, 16 * MIB - 0x2000),
                range(0x4110_0000, 47 * MIB)
            ]
        );
        assert_eq!(pool.free_bytes(), 63 * MIB - 0x2000);
        assert_eq!(pool.managed_bytes(), pool.free_bytes());
    }

    #[test]
    fn overlapping_usable_ranges_are_merged_and_unaligned_edges_trimmed() {
        let pool = FrameAllocator::new(
            &[range(0x1000_0800, 0x3000), range(0x1000_2000, 0x4000)],
            &[],
        )
        .unwrap();
        let ranges: StdVec<_> = pool.free_ranges().collect();
        assert_eq!(ranges, [range(0x1000_1000, 0x5000)]);
    }

    #[test]
    fn aligned_allocation_and_coalescing_free() {
        let mut pool = FrameAllocator::new(&[range(0x4000_1000, 16 * MIB)], &[]).unwrap();
        let before = pool.free_bytes();
        let ram = pool.allocate(4 * MIB, 2 * MIB).unwrap();
        assert_eq!(ram, range(0x4020_0000, 4 * MIB));
        let page = pool.allocate(PAGE_SIZE, PAGE_SIZE).unwrap();
        assert_eq!(page, range(0x4000_1000, PAGE_SIZE));
        assert_eq!(pool.free_range_count(), 2);
        pool.free(ram).unwrap();
        pool.free(page).unwrap();
        assert_eq!(pool.free_bytes(), before);
        assert_eq!(pool.free_range_count(), 1);
    }

    #[test]
    fn bad_frees_are_refused() {
        let mut pool =
            FrameAllocator::new(&[range(0x4000_0000, 4 * MIB)], &[range(0x4000_0000, MIB)])
                .unwrap();
        let page = pool.allocate(PAGE_SIZE, PAGE_SIZE).unwrap();
        pool.free(page).unwrap();
        assert_eq!(pool.free(page), Err(AllocError::DoubleFree));
        // Reserved memory was never handed out.
        assert_eq!(
            pool.free(range(0x4000_0000, PAGE_SIZE)),
            Err(AllocError::NotAllocated)
        );
        // Outside all memory.
        assert_eq!(
            pool.free(range(0x1000, PAGE_SIZE)),
            Err(AllocError::NotAllocated)
        );
        assert_eq!(
            pool.free(range(0x4010_0800, PAGE_SIZE)),
            Err(AllocError::InvalidRequest)
        );
        assert_eq!(
            pool.free(range(0x4010_0000, 0)),
            Err(AllocError::InvalidRequest)
        );
        assert_eq!(pool.free_bytes(), 3 * MIB);
    }

    #[test]
    fn bad_requests_and_exhaustion() {
        let mut pool = FrameAllocator::new(&[range(0x4000_0000, 2 * MIB)], &[]).unwrap();
        assert_eq!(pool.allocate(0, PAGE_SIZE), Err(AllocError::InvalidRequest));
        assert_eq!(
            pool.allocate(100, PAGE_SIZE),
            Err(AllocError::InvalidRequest)
        );
        assert_eq!(
            pool.allocate(PAGE_SIZE, 3 * PAGE_SIZE),
            Err(AllocError::InvalidRequest)
        );
        assert_eq!(
            pool.allocate(4 * MIB, PAGE_SIZE),
            Err(AllocError::OutOfMemory)
        );
        assert_eq!(
            pool.allocate(2 * MIB, 2 * MIB).unwrap(),
            range(0x4000_0000, 2 * MIB)
        );
        assert_eq!(
            pool.allocate(PAGE_SIZE, PAGE_SIZE),
            Err(AllocError::OutOfMemory)
        );
    }

    #[test]
    fn full_range_list_prefers_non_splitting_placement() {
        // 128 separate 16 KiB ranges, each 4 KiB into a 64 KiB stride: the list is full.
        let usable: StdVec<_> = (0..MAX_FREE_RANGES as u64)
            .map(|index| range(0x1000_1000 + index * 0x10000, 0x4000))
            .collect();
        let mut pool = FrameAllocator::new(&usable, &[]).unwrap();
        assert_eq!(pool.free_range_count(), MAX_FREE_RANGES);
        // An 8 KiB-aligned page placed low would split the first range in two; placed
        // at its top it does not.
        assert_eq!(
            pool.allocate(PAGE_SIZE, 0x2000).unwrap(),
            range(0x1000_4000, PAGE_SIZE)
        );
        assert_eq!(pool.free_range_count(), MAX_FREE_RANGES);
        // Too many ranges to describe at all.
        let too_many: StdVec<_> = (0..=MAX_FREE_RANGES as u64)
            .map(|index| range(index * 0x10000, PAGE_SIZE))
            .collect();
        assert_eq!(
            FrameAllocator::new(&too_many, &[]).unwrap_err(),
            AllocError::TooFragmented
        );
    }

    #[test]
    fn allocate_zeroed_clears_and_scrub_clears() {
        let region = crate::mm::test_support::claim_region();
        let mut pool = region.allocator();
        let first = pool.allocate(2 * PAGE_SIZE, PAGE_SIZE).unwrap();
        let pointer = crate::arch::phys_to_virt(first.start.add(PAGE_SIZE));
        // SAFETY: the test owns the claimed region.
        unsafe { pointer.write_bytes(0xAB, 16) };
        // SAFETY: as above; nothing refers to the range.
        unsafe { pool.free_scrubbed(first).unwrap() };
        // SAFETY: as above.
        assert_eq!(unsafe { pointer.read() }, 0);
        // SAFETY: as above: the range is free again, but only this test uses the region.
        unsafe { pointer.write_bytes(0xCD, 16) };
        let again = pool.allocate_zeroed(2 * PAGE_SIZE, PAGE_SIZE).unwrap();
        assert_eq!(again, first);
        // SAFETY: as above.
        assert_eq!(unsafe { pointer.add(15).read() }, 0);
    }

    #[derive(Clone, Debug)]
    enum Operation {
        Allocate { pages: u64, align_shift: u32 },
        Free { pick: usize },
    }

    fn operation() -> impl Strategy<Value = Operation> {
        prop_oneof![
            (1u64..600, 12u32..23)
                .prop_map(|(pages, align_shift)| Operation::Allocate { pages, align_shift }),
            any::<usize>().prop_map(|pick| Operation::Free { pick }),
        ]
    }

    type Spans = StdVec<(u64, u64)>;

    fn layout() -> impl Strategy<Value = (Spans, Spans)> {
        let usable = proptest::collection::vec((0u64..4096, 1u64..2048), 1..6).prop_map(|ranges| {
            ranges
                .into_iter()
                .map(|(page, pages)| (0x4000_0000 + page * PAGE_SIZE, pages * PAGE_SIZE))
                .collect()
        });
        let reserved =
            proptest::collection::vec((0u64..6144, 1u64..8192), 0..6).prop_map(|ranges| {
                ranges
                    .into_iter()
                    .map(|(page, bytes)| (0x4000_0000 + page * PAGE_SIZE + bytes % 700, bytes))
                    .collect()
            });
        (usable, reserved)
    }

    proptest! {
        #[test]
        fn allocations_are_disjoint_aligned_and_free_restores(
            (usable, reserved) in layout(),
            operations in proptest::collection::vec(operation(), 1..80),
        ) {
            let usable: StdVec<_> = usable.iter().map(|&(start, size)| range(start, size)).collect();
            let reserved: StdVec<_> = reserved.iter().map(|&(start, size)| range(start, size)).collect();
            let mut pool = FrameAllocator::new(&usable, &reserved).unwrap();
            // Usable ranges may overlap or touch: allocations may span them.
            let union: StdVec<_> = FrameAllocator::new(&usable, &[]).unwrap().free_ranges().collect();
            let initial = pool.free_bytes();
            let mut live: StdVec<AddrRange<PhysAddr>> = StdVec::new();
            for operation in operations {
                match operation {
                    Operation::Allocate { pages, align_shift } => {
                        let align = 1u64 << align_shift;
                        let before = pool.free_bytes();
                        match pool.allocate(pages * PAGE_SIZE, align) {
                            Ok(got) => {
                                prop_assert!(got.start.is_aligned(align));
                                prop_assert_eq!(got.size, pages * PAGE_SIZE);
                                prop_assert!(union.iter().any(|u| u.contains_range(got.start, got.size)));
                                for reserved in &reserved {
                                    prop_assert!(!got.overlaps(reserved));
                                }
                                for other in &live {
                                    prop_assert!(!got.overlaps(other));
                                }
                                prop_assert_eq!(pool.free_bytes(), before - got.size);
                                live.push(got);
                            }
                            Err(error) => {
                                prop_assert_ne!(error, AllocError::InvalidRequest);
                                prop_assert_eq!(pool.free_bytes(), before);
                            }
                        }
                    }
                    Operation::Free { pick } => {
                        if !live.is_empty() {
                            let got = live.swap_remove(pick % live.len());
                            let before = pool.free_bytes();
                            pool.free(got).unwrap();
                            prop_assert_eq!(pool.free_bytes(), before + got.size);
                            prop_assert_eq!(pool.free(got), Err(AllocError::DoubleFree));
                        }
                    }
                }
                // Free ranges stay sorted, disjoint, non-adjacent and page aligned.
                let ranges: StdVec<_> = pool.free_ranges().collect();
                for pair in ranges.windows(2) {
                    prop_assert!(pair[0].end().unwrap() < pair[1].start);
                }
                for free in &ranges {
                    prop_assert!(free.start.is_aligned(PAGE_SIZE) && free.size % PAGE_SIZE == 0 && free.size > 0);
                    for other in &live {
                        prop_assert!(!free.overlaps(other));
                    }
                }
            }
            for got in live.drain(..) {
                pool.free(got).unwrap();
            }
            prop_assert_eq!(pool.free_bytes(), initial);
            let fresh = FrameAllocator::new(&usable, &reserved).unwrap();
            prop_assert!(pool.free_ranges().eq(fresh.free_ranges()));
        }
    }
}
