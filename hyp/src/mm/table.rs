//! The translation-table walker shared by the stage-2 and the EL2 stage-1 builders.
//!
//! VMSAv8-64 with the 4 KiB granule: up to four levels (0..=3) of 512-entry tables, each
//! level resolving 9 address bits; level 1 maps 1 GiB blocks, level 2 2 MiB blocks,
//! level 3 4 KiB pages. Level 0 never holds a block. Descriptor type bits (`[1:0]`):
//! `0b00`/`0b10` invalid, `0b01` block (levels 1, 2), `0b11` table (levels 0..=2) or page
//! (level 3). Output addresses are bits `[47:12]`; the stage-specific attribute bits
//! (`[11:2]` and `[63:52]`) are given by the caller as one opaque `u64`.
//!
//! Invariants the walker keeps:
//! * every table page was taken from the caller's [`PageAllocator`] and cleared before it
//!   became reachable; tables are reached only through [`crate::arch::phys_to_virt`];
//! * no table below the root is ever empty: a table whose last entry goes is unlinked and
//!   given back (after the TLB invalidation, see below);
//! * a valid descriptor is never overwritten by another valid one while it is live
//!   (break-before-make): splitting a live block writes an invalid descriptor first, and
//!   the new table is linked only after the TLB invalidation that ends the operation.
//!
//! Ordering: descriptor stores are volatile; before a walker may rely on them the caller's
//! [`TableBarrier::publish_descriptors`] runs (DSB ISHST on the target).

use super::frames::{AllocError, PageAllocator};
use crate::addr::{PhysAddr, PAGE_SIZE};
use core::sync::atomic::{fence, Ordering};
use heapless::Vec;

/// Entries in one translation table.
pub const ENTRIES_PER_TABLE: usize = 512;
/// Descriptor type bits `[1:0]` of a block descriptor (levels 1 and 2).
const TYPE_BLOCK: u64 = 0b01;
/// Descriptor type bits of a table descriptor (levels 0..=2) or a page (level 3).
const TYPE_TABLE_OR_PAGE: u64 = 0b11;
const TYPE_MASK: u64 = 0b11;
const VALID: u64 = 0b01;
/// Output address bits `[47:12]`.
pub const OUTPUT_ADDRESS_MASK: u64 = 0x0000_FFFF_FFFF_F000;
/// The attribute bits a leaf descriptor may carry: `[11:2]` and `[63:52]`.
pub const LEAF_ATTRIBUTE_MASK: u64 = 0xFFF0_0000_0000_0FFC;
/// Largest output (physical) address size the walker encodes: 48 bits.
pub const MAX_OUTPUT_BITS: u32 = 48;
/// The deepest level (4 KiB pages).
const LAST_LEVEL: u8 = 3;
/// At most this many table pages are needed to split blocks in one unmap: two edges,
/// each possibly splitting a 1 GiB block and then a 2 MiB block.
const MAX_SPLIT_PAGES: usize = 4;

/// Why a mapping request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// An address or size is not a multiple of 4 KiB.
    Misaligned,
    /// The size is zero.
    EmptyRange,
    /// The input range reaches beyond the table set's input address size, or the output
    /// range beyond 48-bit physical addresses.
    OutOfRange,
    /// Part of the range is mapped already; unmap it first.
    AlreadyMapped,
    /// The table set was asked for with an unsupported input address size.
    UnsupportedAddressBits,
    /// The VMID does not fit the 8-bit VMID field (`VTCR_EL2.VS` = 0).
    InvalidVmid,
    /// Device memory must not be executable.
    ExecutableDevice,
    /// The page allocator refused to give or take a table page.
    Allocation(AllocError),
}

impl From<AllocError> for MapError {
    fn from(error: AllocError) -> Self {
        Self::Allocation(error)
    }
}

/// The ordering and TLB maintenance the table builders need from the architecture.
///
/// The target implementation must provide, in the inner-shareable domain:
/// * [`publish_descriptors`](TableBarrier::publish_descriptors): `DSB ISHST`, so that
///   every earlier descriptor store is visible to translation table walks of all CPUs
///   (a plain `DMB` is not enough for the walker);
/// * [`invalidate_stage2`](TableBarrier::invalidate_stage2): `DSB ISHST`, then
///   `TLBI VMALLS12E1IS` with `VTTBR_EL2.VMID` = `vmid` (restoring VTTBR_EL2 after), then
///   `DSB ISH` and `ISB`. This also invalidates cached intermediate walk entries, after
///   which the builder may reuse freed table pages.
pub trait TableBarrier {
    /// Makes all earlier descriptor stores visible to the table walkers.
    fn publish_descriptors(&self);
    /// Removes every cached stage-2 translation of `vmid` and waits for completion.
    fn invalidate_stage2(&self, vmid: u16);
}

/// The barrier implementation backed by [`crate::arch`]: what the hypervisor uses.
///
/// `publish_descriptors` is a sequentially consistent fence (on AArch64 a `DMB ISH`, which
/// orders the stores but does not by itself guarantee walker visibility; the stage-2
/// invalidation hook starts with a `DSB`). `invalidate_stage2` calls
/// [`crate::arch::tlb_invalidate_vmid`].
#[derive(Clone, Copy, Debug, Default)]
pub struct ArchBarrier;

impl TableBarrier for ArchBarrier {
    fn publish_descriptors(&self) {
        // The compiler must not sink the stores past this point; the CPU needs a DSB ISHST
        // before the table walkers of every CPU are guaranteed to see them.
        fence(Ordering::SeqCst);
        crate::arch::table_write_barrier();
    }

    fn invalidate_stage2(&self, vmid: u16) {
        fence(Ordering::SeqCst);
        crate::arch::tlb_invalidate_vmid(vmid);
    }
}

/// The physical address of a translation table owned by one table set.
///
/// Only the walker creates these, from pages it took from its allocator (and cleared) or
/// from table descriptors inside its own tables, so every `TablePage` names a whole
/// 4 KiB page that belongs to this table set and that nothing else references.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TablePage(PhysAddr);

impl TablePage {
    fn entry_pointer(self, index: usize) -> *mut u64 {
        let index = index % ENTRIES_PER_TABLE;
        let base = crate::arch::phys_to_virt(self.0).cast::<u64>();
        // SAFETY: `index` < 512, so the pointer stays inside the 4 KiB table page, which
        // phys_to_virt maps whole.
        unsafe { base.add(index) }
    }

    fn read(self, index: usize) -> u64 {
        // SAFETY: the page is one of this table set's tables (type invariant), 8-byte
        // aligned (page aligned base, u64 entries), and only this table set (through
        // `&self`/`&mut self`) and the hardware walker access it.
        unsafe { self.entry_pointer(index).read_volatile() }
    }

    fn write(self, index: usize, descriptor: u64) {
        // SAFETY: as in `read`; the table set is borrowed mutably by every caller that
        // writes, so there is no concurrent writer.
        unsafe { self.entry_pointer(index).write_volatile(descriptor) }
    }

    fn is_empty(self) -> bool {
        (0..ENTRIES_PER_TABLE).all(|index| self.read(index) & VALID == 0)
    }

    /// Takes a page from the allocator and clears it.
    fn allocate(allocator: &mut impl PageAllocator) -> Result<Self, MapError> {
        let page = allocator.allocate_page()?;
        let table = TablePage(page);
        for index in 0..ENTRIES_PER_TABLE {
            table.write(index, 0);
        }
        Ok(table)
    }
}

/// What a descriptor is, at a given level.
enum Kind {
    Invalid,
    Leaf,
    Table(TablePage),
}

fn kind(descriptor: u64, level: u8) -> Kind {
    match descriptor & TYPE_MASK {
        TYPE_BLOCK if level < LAST_LEVEL && level > 0 => Kind::Leaf,
        TYPE_TABLE_OR_PAGE if level == LAST_LEVEL => Kind::Leaf,
        TYPE_TABLE_OR_PAGE => {
            Kind::Table(TablePage(PhysAddr::new(descriptor & OUTPUT_ADDRESS_MASK)))
        }
        _ => Kind::Invalid,
    }
}

/// log2 of the bytes one entry at `level` covers.
const fn level_shift(level: u8) -> u32 {
    12 + 9 * (LAST_LEVEL - level) as u32
}

/// Bytes one entry at `level` covers.
pub const fn level_size(level: u8) -> u64 {
    1 << level_shift(level)
}

fn entry_index(address: u64, level: u8) -> usize {
    ((address >> level_shift(level)) as usize) % ENTRIES_PER_TABLE
}

fn leaf_descriptor(output: u64, attributes: u64, level: u8) -> u64 {
    let kind = if level == LAST_LEVEL {
        TYPE_TABLE_OR_PAGE
    } else {
        TYPE_BLOCK
    };
    (output & OUTPUT_ADDRESS_MASK) | (attributes & LEAF_ATTRIBUTE_MASK) | kind
}

fn table_descriptor(table: TablePage) -> u64 {
    (table.0.raw() & OUTPUT_ADDRESS_MASK) | TYPE_TABLE_OR_PAGE
}

/// A translation found by [`Walker::lookup`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The output address of the looked-up address (including its offset in the leaf).
    pub output: u64,
    /// The leaf descriptor's attribute bits ([`LEAF_ATTRIBUTE_MASK`]).
    pub attributes: u64,
    /// The level of the leaf: 1 (1 GiB block), 2 (2 MiB block) or 3 (4 KiB page).
    pub level: u8,
}

/// Work deferred to the end of an unmap, after the TLB invalidation.
struct UnmapContext {
    /// Cleared pages reserved up front for block splits.
    reserve: Vec<TablePage, MAX_SPLIT_PAGES>,
    /// Live entries broken (made invalid) for a split, and the table descriptor that
    /// replaces each once the old translations are gone from the TLBs.
    pending_links: Vec<(TablePage, usize, u64), MAX_SPLIT_PAGES>,
    /// Emptied table pages, chained through their first entry (a page-aligned address
    /// with bit 1 set: still an invalid descriptor to any stale walk).
    freed_head: Option<TablePage>,
}

impl UnmapContext {
    fn defer_free(&mut self, table: TablePage) {
        let link = self.freed_head.map_or(0, |next| next.0.raw() | 0b10);
        table.write(0, link);
        self.freed_head = Some(table);
    }
}

/// One set of translation tables: a root table and everything below it.
#[derive(Debug)]
pub struct Walker {
    root: TablePage,
    start_level: u8,
    input_bits: u32,
    table_pages: usize,
}

impl Walker {
    /// The start level for `input_bits`: 0 for 40..=48 bits, 1 for 31..=39 bits (the
    /// stage-1 rule for the 4 KiB granule; for stage 2 it is the `SL0` = 1 choice).
    pub const fn start_level_for(input_bits: u32) -> Option<u8> {
        match input_bits {
            40..=48 => Some(0),
            31..=39 => Some(1),
            _ => None,
        }
    }

    /// An empty table set for `input_bits`-bit input addresses with a fresh root table.
    pub fn new(input_bits: u32, allocator: &mut impl PageAllocator) -> Result<Self, MapError> {
        let start_level =
            Self::start_level_for(input_bits).ok_or(MapError::UnsupportedAddressBits)?;
        let root = TablePage::allocate(allocator)?;
        Ok(Self {
            root,
            start_level,
            input_bits,
            table_pages: 1,
        })
    }

    /// The root table's physical address.
    pub fn root(&self) -> PhysAddr {
        self.root.0
    }

    /// The level of the root table.
    pub fn start_level(&self) -> u8 {
        self.start_level
    }

    /// The input address size in bits.
    pub fn input_bits(&self) -> u32 {
        self.input_bits
    }

    /// How many table pages (root included) the set holds now.
    pub fn table_pages(&self) -> usize {
        self.table_pages
    }

    /// Checks alignment and bounds of an input range; returns its end.
    fn check_input(&self, input: u64, size: u64) -> Result<u64, MapError> {
        if !input.is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Misaligned);
        }
        if size == 0 {
            return Err(MapError::EmptyRange);
        }
        let end = input.checked_add(size).ok_or(MapError::OutOfRange)?;
        if end > 1u64 << self.input_bits {
            return Err(MapError::OutOfRange);
        }
        Ok(end)
    }

    /// Maps `[input, input + size)` to `[output, ...)` with leaf attribute bits
    /// `attributes`, using the largest blocks alignment allows. Refuses (changing nothing)
    /// if any page of the range is mapped. On running out of table pages everything this
    /// call did is undone (through [`Walker::unmap`], so `invalidate` may run).
    #[allow(clippy::too_many_arguments)]
    pub fn map(
        &mut self,
        input: u64,
        output: u64,
        size: u64,
        attributes: u64,
        allocator: &mut impl PageAllocator,
        barrier: &impl TableBarrier,
        invalidate: &mut dyn FnMut(),
    ) -> Result<(), MapError> {
        let end = self.check_input(input, size)?;
        if !output.is_multiple_of(PAGE_SIZE) {
            return Err(MapError::Misaligned);
        }
        match output.checked_add(size) {
            Some(output_end) if output_end <= 1u64 << MAX_OUTPUT_BITS => {}
            _ => return Err(MapError::OutOfRange),
        }
        if self.any_mapped(self.root, self.start_level, input, end) {
            return Err(MapError::AlreadyMapped);
        }
        let result = self.map_level(
            self.root,
            self.start_level,
            input,
            end,
            output,
            attributes,
            allocator,
            barrier,
        );
        barrier.publish_descriptors();
        if let Err(error) = result {
            // The range was wholly unmapped before: unmapping it restores that state.
            self.unmap(input, size, allocator, barrier, invalidate)?;
            return Err(error);
        }
        Ok(())
    }

    /// Whether any leaf maps part of `[start, end)` under `table`.
    fn any_mapped(&self, table: TablePage, level: u8, start: u64, end: u64) -> bool {
        let size = level_size(level);
        let mut cursor = start;
        while cursor < end {
            let entry_end = (cursor & !(size - 1)) + size;
            let chunk_end = end.min(entry_end);
            match kind(table.read(entry_index(cursor, level)), level) {
                Kind::Invalid => {}
                Kind::Leaf => return true,
                Kind::Table(child) => {
                    if self.any_mapped(child, level + 1, cursor, chunk_end) {
                        return true;
                    }
                }
            }
            cursor = chunk_end;
        }
        false
    }

    #[allow(clippy::too_many_arguments)]
    fn map_level(
        &mut self,
        table: TablePage,
        level: u8,
        start: u64,
        end: u64,
        output: u64,
        attributes: u64,
        allocator: &mut impl PageAllocator,
        barrier: &impl TableBarrier,
    ) -> Result<(), MapError> {
        let size = level_size(level);
        let mut cursor = start;
        while cursor < end {
            let entry_base = cursor & !(size - 1);
            let chunk_end = end.min(entry_base + size);
            let index = entry_index(cursor, level);
            let descriptor = table.read(index);
            let cursor_output = output + (cursor - start);
            let whole_entry = cursor == entry_base && chunk_end == entry_base + size;
            let block_possible = level >= 1 && whole_entry && cursor_output.is_multiple_of(size);
            match kind(descriptor, level) {
                Kind::Invalid if block_possible => {
                    table.write(index, leaf_descriptor(cursor_output, attributes, level));
                }
                Kind::Invalid => {
                    if level == LAST_LEVEL {
                        // A level-3 entry is always whole and aligned; unreachable.
                        return Err(MapError::Misaligned);
                    }
                    let child = TablePage::allocate(allocator)?;
                    self.table_pages += 1;
                    // The cleared child must be visible before the link to it.
                    barrier.publish_descriptors();
                    table.write(index, table_descriptor(child));
                    self.map_level(
                        child,
                        level + 1,
                        cursor,
                        chunk_end,
                        cursor_output,
                        attributes,
                        allocator,
                        barrier,
                    )?;
                }
                Kind::Leaf => return Err(MapError::AlreadyMapped),
                Kind::Table(child) => self.map_level(
                    child,
                    level + 1,
                    cursor,
                    chunk_end,
                    cursor_output,
                    attributes,
                    allocator,
                    barrier,
                )?,
            }
            cursor = chunk_end;
        }
        Ok(())
    }

    /// Removes every mapping inside `[input, input + size)` (holes are fine), splitting
    /// blocks that straddle the range's edges and giving back tables that become empty.
    ///
    /// Sequence: reserve the (at most four) pages block splits need, so the operation
    /// cannot fail half way; clear descriptors (splitting a live block writes an invalid
    /// descriptor and remembers the replacement table); publish; run `invalidate` exactly
    /// once; link the replacement tables; publish; give back emptied tables.
    pub fn unmap(
        &mut self,
        input: u64,
        size: u64,
        allocator: &mut impl PageAllocator,
        barrier: &impl TableBarrier,
        invalidate: &mut dyn FnMut(),
    ) -> Result<(), MapError> {
        let end = self.check_input(input, size)?;
        let needed =
            self.split_pages_needed(input, input, end) + self.split_pages_needed(end, input, end);
        let mut context = UnmapContext {
            reserve: Vec::new(),
            pending_links: Vec::new(),
            freed_head: None,
        };
        for _ in 0..needed {
            match TablePage::allocate(allocator) {
                Ok(page) => {
                    // `needed` <= MAX_SPLIT_PAGES, so this always fits.
                    if let Err(page) = context.reserve.push(page) {
                        allocator.free_page(page.0)?;
                    }
                }
                Err(error) => {
                    for page in context.reserve.iter() {
                        allocator.free_page(page.0)?;
                    }
                    return Err(error);
                }
            }
        }
        let walk = self.unmap_level(self.root, self.start_level, input, end, &mut context, true);
        barrier.publish_descriptors();
        invalidate();
        for &(table, index, descriptor) in context.pending_links.iter() {
            table.write(index, descriptor);
        }
        barrier.publish_descriptors();
        let mut first_error = walk.err();
        let mut next = context.freed_head;
        while let Some(page) = next {
            let link = page.read(0);
            page.write(0, 0);
            next = (link != 0).then_some(TablePage(PhysAddr::new(link & OUTPUT_ADDRESS_MASK)));
            self.table_pages -= 1;
            if let Err(error) = allocator.free_page(page.0) {
                first_error.get_or_insert(MapError::Allocation(error));
            }
        }
        for page in context.reserve.iter() {
            if let Err(error) = allocator.free_page(page.0) {
                first_error.get_or_insert(MapError::Allocation(error));
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// How many table pages splitting blocks at the edge `edge` of `[start, end)` takes.
    fn split_pages_needed(&self, edge: u64, start: u64, end: u64) -> usize {
        // Only an edge strictly inside a block, with the block overlapping the range,
        // splits anything.
        let probe = if edge == end {
            edge.wrapping_sub(1)
        } else {
            edge
        };
        if edge == end && edge >= 1u64 << self.input_bits {
            return 0;
        }
        let mut table = self.root;
        let mut level = self.start_level;
        loop {
            match kind(table.read(entry_index(probe, level)), level) {
                Kind::Invalid => return 0,
                Kind::Table(child) => {
                    table = child;
                    level += 1;
                }
                Kind::Leaf => {
                    let block_start = probe & !(level_size(level) - 1);
                    let block_end = block_start + level_size(level);
                    if block_start >= end || block_end <= start {
                        return 0;
                    }
                    return (level..LAST_LEVEL)
                        .take_while(|&split_level| !edge.is_multiple_of(level_size(split_level)))
                        .count();
                }
            }
        }
    }

    fn unmap_level(
        &mut self,
        table: TablePage,
        level: u8,
        start: u64,
        end: u64,
        context: &mut UnmapContext,
        live: bool,
    ) -> Result<(), MapError> {
        let size = level_size(level);
        let mut cursor = start;
        let mut result = Ok(());
        while cursor < end {
            let entry_base = cursor & !(size - 1);
            let chunk_end = end.min(entry_base + size);
            let index = entry_index(cursor, level);
            let descriptor = table.read(index);
            let whole_entry = cursor == entry_base && chunk_end == entry_base + size;
            match kind(descriptor, level) {
                Kind::Invalid => {}
                Kind::Leaf if whole_entry => table.write(index, 0),
                Kind::Leaf => {
                    // A block partly covered (never a page: pages are always whole).
                    let Some(child) = context.reserve.pop() else {
                        result = Err(MapError::Allocation(AllocError::OutOfMemory));
                        cursor = chunk_end;
                        continue;
                    };
                    self.table_pages += 1;
                    let child_level = level + 1;
                    let child_size = level_size(child_level);
                    let block_output = descriptor & OUTPUT_ADDRESS_MASK;
                    let attributes = descriptor & LEAF_ATTRIBUTE_MASK;
                    for child_index in 0..ENTRIES_PER_TABLE {
                        let output = block_output + child_index as u64 * child_size;
                        child.write(
                            child_index,
                            leaf_descriptor(output, attributes, child_level),
                        );
                    }
                    let link = table_descriptor(child);
                    if live {
                        // Break now; make after the TLB invalidation.
                        table.write(index, 0);
                        if context.pending_links.push((table, index, link)).is_err() {
                            result = Err(MapError::Allocation(AllocError::TooFragmented));
                        }
                    } else {
                        table.write(index, link);
                    }
                    if let Err(error) =
                        self.unmap_level(child, child_level, cursor, chunk_end, context, false)
                    {
                        result = Err(error);
                    }
                }
                Kind::Table(child) => {
                    if let Err(error) =
                        self.unmap_level(child, level + 1, cursor, chunk_end, context, live)
                    {
                        result = Err(error);
                    }
                    // A child whose only remaining entries were broken for a split (and
                    // wait to be relinked) is not empty.
                    let relinking = context
                        .pending_links
                        .iter()
                        .any(|&(pending_table, _, _)| pending_table == child);
                    if !relinking && child.is_empty() {
                        table.write(index, 0);
                        context.defer_free(child);
                    }
                }
            }
            cursor = chunk_end;
        }
        result
    }

    /// The translation of `input`, if it is mapped.
    pub fn lookup(&self, input: u64) -> Option<Translation> {
        if input >= 1u64 << self.input_bits {
            return None;
        }
        let mut table = self.root;
        let mut level = self.start_level;
        loop {
            let descriptor = table.read(entry_index(input, level));
            match kind(descriptor, level) {
                Kind::Invalid => return None,
                Kind::Table(child) => {
                    table = child;
                    level += 1;
                }
                Kind::Leaf => {
                    let offset = input & (level_size(level) - 1);
                    return Some(Translation {
                        output: (descriptor & OUTPUT_ADDRESS_MASK) + offset,
                        attributes: descriptor & LEAF_ATTRIBUTE_MASK,
                        level,
                    });
                }
            }
        }
    }

    /// The raw descriptor at `level` on the walk for `input` (for tests and diagnostics):
    /// `None` when the walk ends (at a leaf or an invalid entry) above `level`.
    pub fn descriptor_at(&self, input: u64, level: u8) -> Option<u64> {
        if input >= 1u64 << self.input_bits || level < self.start_level || level > LAST_LEVEL {
            return None;
        }
        let mut table = self.root;
        let mut current = self.start_level;
        loop {
            let descriptor = table.read(entry_index(input, current));
            if current == level {
                return Some(descriptor);
            }
            match kind(descriptor, current) {
                Kind::Table(child) => {
                    table = child;
                    current += 1;
                }
                Kind::Invalid | Kind::Leaf => return None,
            }
        }
    }

    /// Gives back every table page, root included, after `invalidate` has run (so no
    /// walker still caches them). Continues past allocator errors and reports the first.
    pub fn destroy(
        self,
        allocator: &mut impl PageAllocator,
        barrier: &impl TableBarrier,
        invalidate: &mut dyn FnMut(),
    ) -> Result<(), MapError> {
        barrier.publish_descriptors();
        invalidate();
        let mut first_error = None;
        free_tree(self.root, self.start_level, allocator, &mut first_error);
        match first_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

fn free_tree(
    table: TablePage,
    level: u8,
    allocator: &mut impl PageAllocator,
    first_error: &mut Option<MapError>,
) {
    for index in 0..ENTRIES_PER_TABLE {
        if let Kind::Table(child) = kind(table.read(index), level) {
            free_tree(child, level + 1, allocator, first_error);
        }
        table.write(index, 0);
    }
    if let Err(error) = allocator.free_page(table.0) {
        first_error.get_or_insert(MapError::Allocation(error));
    }
}
