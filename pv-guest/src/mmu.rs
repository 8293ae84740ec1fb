//! Stage-1 identity map and MMU enable.
//!
//! 4 KiB granule, 39-bit input (TCR_EL1.T0SZ = 25, so walks start at level 1, one
//! 1 GiB entry per level-1 slot). MAIR_EL1 attr0 = Normal Inner/Outer Write-Back
//! non-transient read/write-allocate (0xFF), attr1 = Device-nGnRE (0x04).
//!
//! - RAM (the device tree's `memory` ranges, rounded out to 2 MiB) is Normal WB,
//!   Inner Shareable, EL1 read/write/execute, through level-2 2 MiB blocks. Memory shared
//!   with the hypervisor must be exactly this (Xen's `arch-arm.h`).
//! - Everything else below 4 GiB is Device-nGnRE, execute-never: 1 GiB blocks where a
//!   gigabyte holds no RAM, 2 MiB blocks beside the RAM blocks otherwise.
//! - Above 4 GiB only RAM is mapped.
//! - Later, [`map_shared_page`] remaps one 4 KiB page outside RAM that the hypervisor
//!   shares with us (the console ring at Xen's `GUEST_MAGIC_BASE`, 0x3900_0000) as
//!   Normal WB, Inner Shareable, execute-never: it splits the 1 GiB block around it into
//!   2 MiB blocks and the 2 MiB block into 4 KiB pages (each new table keeps the old
//!   block's attributes, so only that page changes), break-before-make.
//!   [`map_shared_pages`] does the same for a run of pages (grant-table frames and the
//!   window where foreign grants are mapped, `crate::grants`).
//!
//! The tables live in bss, page aligned, and are written with the MMU off (straight to
//! memory); their lines are invalidated before the walker may read them through the
//! cache. Once the MMU is on, table walks are cacheable (TCR_EL1 IRGN0/ORGN0 WB, SH0
//! inner): [`map_shared_page`] writes through the cache and needs only barriers and
//! TLB invalidation.

use core::fmt;
use core::sync::atomic::{AtomicUsize, Ordering};

use crate::arch::cpu::{self, MmuSettings};
use crate::dt::MemoryRange;

const ENTRIES: usize = 512;
const BLOCK_2M: u64 = 1 << 21;
const BLOCK_1G: u64 = 1 << 30;
/// Largest input address + 1 (T0SZ = 25).
const ADDRESS_SPACE: u64 = 1 << 39;
/// Below this, what is not RAM is mapped as Device.
const DEVICE_LIMIT: u64 = 4 << 30;
/// Level-2 tables available (each covers the 1 GiB around some RAM, or around a page
/// of [`map_shared_page`]).
const LEVEL2_TABLES: usize = 8;
/// Level-3 tables available to [`map_shared_page`] (each covers one 2 MiB block: the
/// console ring's, the grant-table hole's, and spares).
const LEVEL3_TABLES: usize = 4;
const PAGE: u64 = 1 << 12;
/// Output-address bits of a descriptor (48-bit); the rest are attributes and type.
const OUTPUT_ADDRESS: u64 = 0x0000_FFFF_FFFF_F000;
/// MAIR index field of a block or page descriptor.
const ATTR_INDEX: u64 = 7 << 2;

const VALID: u64 = 1 << 0;
const TABLE: u64 = 1 << 1;
const ATTR_NORMAL: u64 = 0 << 2;
const ATTR_DEVICE: u64 = 1 << 2;
const INNER_SHAREABLE: u64 = 3 << 8;
const ACCESS_FLAG: u64 = 1 << 10;
const PRIVILEGED_EXECUTE_NEVER: u64 = 1 << 53;
const UNPRIVILEGED_EXECUTE_NEVER: u64 = 1 << 54;

/// Normal WB, inner shareable, EL1 RWX (EL0 never executes).
const NORMAL_BLOCK: u64 =
    VALID | ATTR_NORMAL | INNER_SHAREABLE | ACCESS_FLAG | UNPRIVILEGED_EXECUTE_NEVER;
/// Device-nGnRE, never executable.
const DEVICE_BLOCK: u64 =
    VALID | ATTR_DEVICE | ACCESS_FLAG | PRIVILEGED_EXECUTE_NEVER | UNPRIVILEGED_EXECUTE_NEVER;

/// A 4 KiB page shared with the hypervisor: Normal WB, inner shareable, never
/// executable (level 3: bits [1:0] = 0b11).
const SHARED_PAGE: u64 = VALID
    | TABLE
    | ATTR_NORMAL
    | INNER_SHAREABLE
    | ACCESS_FLAG
    | PRIVILEGED_EXECUTE_NEVER
    | UNPRIVILEGED_EXECUTE_NEVER;

/// MAIR_EL1: attr0 Normal WB RW-allocate, attr1 Device-nGnRE.
const MEMORY_ATTRIBUTES: u64 = 0xFF | (0x04 << 8);

/// One translation table.
#[repr(C, align(4096))]
struct Table([u64; ENTRIES]);

/// All tables, in one bss object.
#[repr(C, align(4096))]
struct Tables {
    level1: Table,
    level2: [Table; LEVEL2_TABLES],
    level3: [Table; LEVEL3_TABLES],
}

/// The tables; written by [`build_and_enable`] before the MMU is on, and afterwards
/// only by [`map_shared_page`].
static mut TABLES: Tables = Tables {
    level1: Table([0; ENTRIES]),
    level2: [const { Table([0; ENTRIES]) }; LEVEL2_TABLES],
    level3: [const { Table([0; ENTRIES]) }; LEVEL3_TABLES],
};

/// Level-2 and level-3 tables in use (the first ones of each array).
static LEVEL2_USED: AtomicUsize = AtomicUsize::new(0);
static LEVEL3_USED: AtomicUsize = AtomicUsize::new(0);

/// What [`build_and_enable`] could not map.
#[derive(Clone, Copy, Debug, Default)]
pub struct MapReport {
    /// RAM ranges (or parts) beyond the 39-bit address space, not mapped.
    pub ram_out_of_range: usize,
    /// Gigabytes holding RAM that had no level-2 table left, not mapped.
    pub ram_without_table: usize,
}

fn overlaps_ram(ram: &[MemoryRange], start: u64, size: u64) -> bool {
    ram.iter()
        .any(|range| range.base < start + size && start < range.end())
}

/// TCR_EL1: T0SZ 25, WB WA walks, inner shareable, 4 KiB, no TTBR1 walks, IPS from
/// ID_AA64MMFR0_EL1.PARange (capped at 48 bits).
fn translation_control() -> u64 {
    const T0SZ: u64 = 25;
    const IRGN0_WB: u64 = 1 << 8;
    const ORGN0_WB: u64 = 1 << 10;
    const SH0_INNER: u64 = 3 << 12;
    const TG0_4K: u64 = 0 << 14;
    const EPD1: u64 = 1 << 23;
    let physical_size = cpu::physical_address_range().min(0b101);
    T0SZ | IRGN0_WB | ORGN0_WB | SH0_INNER | TG0_4K | EPD1 | (physical_size << 32)
}

/// Builds the identity map for `ram` and turns on the MMU and caches.
///
/// `image` is the range the image occupies (including bss); its lines are invalidated
/// so that nothing we wrote with the MMU off is shadowed by a stale cache line.
///
/// # Safety
/// Call once, with the MMU off, with `ram` covering the image, its stack and the device
/// tree.
pub unsafe fn build_and_enable(ram: &[MemoryRange], image: (usize, usize)) -> MapReport {
    let mut report = MapReport::default();
    // SAFETY: single-threaded boot, MMU off, called once: nothing else references the
    // tables.
    let tables = unsafe { &mut *core::ptr::addr_of_mut!(TABLES) };
    let mut next_level2 = 0;
    for (index, entry) in tables.level1.0.iter_mut().enumerate() {
        let gigabyte = index as u64 * BLOCK_1G;
        let device = if gigabyte < DEVICE_LIMIT {
            DEVICE_BLOCK
        } else {
            0
        };
        if !overlaps_ram(ram, gigabyte, BLOCK_1G) {
            *entry = gigabyte | device;
            continue;
        }
        let Some(level2) = tables.level2.get_mut(next_level2) else {
            report.ram_without_table += 1;
            *entry = gigabyte | device;
            continue;
        };
        next_level2 += 1;
        for (slot, block) in level2.0.iter_mut().enumerate() {
            let address = gigabyte + slot as u64 * BLOCK_2M;
            *block = if overlaps_ram(ram, address, BLOCK_2M) {
                address | NORMAL_BLOCK
            } else {
                address | device
            };
        }
        *entry = core::ptr::addr_of!(level2.0) as u64 | VALID | TABLE;
    }
    LEVEL2_USED.store(next_level2, Ordering::Relaxed);
    report.ram_out_of_range = ram
        .iter()
        .filter(|range| range.end() > ADDRESS_SPACE)
        .count();

    let settings = MmuSettings {
        memory_attributes: MEMORY_ATTRIBUTES,
        translation_control: translation_control(),
        table_base: core::ptr::addr_of!(tables.level1) as u64,
    };
    // SAFETY: with the MMU off nothing in the image was written through the cache, so
    // invalidating loses nothing; the map covers all RAM, which holds the image, stack
    // and tree (caller's guarantee).
    unsafe {
        cpu::invalidate_data_cache(image.0, image.1);
        cpu::enable_mmu(&settings);
    }
    report
}

/// Why [`map_shared_page`] could not map a page.
#[derive(Clone, Copy, Debug)]
pub enum MapError {
    /// The address is beyond the 39-bit address space.
    OutOfRange(u64),
    /// No level-2 or level-3 table was left to split a block.
    NoTable,
}

impl fmt::Display for MapError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            MapError::OutOfRange(address) => {
                write!(formatter, "{address:#x} is beyond the 39-bit address space")
            }
            MapError::NoTable => write!(formatter, "no translation table left"),
        }
    }
}

/// What [`map_shared_page`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mapped {
    /// The page is now a Normal WB, inner shareable, execute-never 4 KiB page.
    Page,
    /// The page lies in a RAM block, which is Normal WB inner shareable already.
    AlreadyNormal,
}

/// Whether `entry` points to a next-level table (rather than a block, or invalid).
fn is_table(entry: u64) -> bool {
    entry & (VALID | TABLE) == VALID | TABLE
}

/// The table among `tables` that `entry` points to.
fn table_of(tables: &mut [Table], entry: u64) -> Option<&mut Table> {
    tables
        .iter_mut()
        .find(|table| core::ptr::addr_of!(table.0) as u64 == entry & OUTPUT_ADDRESS)
}

/// Replaces a live descriptor: break (invalid, TLB invalidated everywhere), then make.
fn replace(entry: &mut u64, new: u64) {
    // SAFETY: `entry` is a valid, aligned u64; volatile so that both stores happen, in
    // order, around the barriers.
    unsafe { core::ptr::write_volatile(entry, 0) };
    cpu::invalidate_translations();
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(entry, new) };
    cpu::publish_translation();
}

/// The next unused table of `tables` (counted by `used`), filled with `entries`.
fn allocate<'a>(
    tables: &'a mut [Table],
    used: &AtomicUsize,
    entries: impl Fn(usize) -> u64,
) -> Result<&'a mut Table, MapError> {
    let index = used.load(Ordering::Relaxed);
    let table = tables.get_mut(index).ok_or(MapError::NoTable)?;
    used.store(index + 1, Ordering::Relaxed);
    for (slot, entry) in table.0.iter_mut().enumerate() {
        *entry = entries(slot);
    }
    Ok(table)
}

/// Maps the 4 KiB page at `address` (identity) as Normal write-back, inner shareable,
/// execute-never: what memory shared with the hypervisor must be (Xen's `arch-arm.h`).
/// Blocks around it are split into tables that keep their attributes, so nothing else
/// changes. The page may be used only after this returns `Ok`.
///
/// # Safety
/// One CPU at a time, IRQs masked (other CPUs may run, and see the change through the
/// broadcast TLB invalidation). While a block around the page is replaced, its range is
/// briefly unmapped: no code, stack or data in use may lie in the 1 GiB around a
/// non-RAM `address` (RAM blocks are never split), and no device in it may be touched
/// concurrently. The page itself must not be in use with other attributes.
pub unsafe fn map_shared_page(address: u64) -> Result<Mapped, MapError> {
    let address = address & !(PAGE - 1);
    if address >= ADDRESS_SPACE {
        return Err(MapError::OutOfRange(address));
    }
    // SAFETY: after boot only this function touches the tables, one caller at a time
    // (caller's guarantee); the walkers read them concurrently, which the
    // break-before-make sequence in `replace` accounts for.
    let tables = unsafe { &mut *core::ptr::addr_of_mut!(TABLES) };
    let gigabyte = address & !(BLOCK_1G - 1);
    let level1 = &mut tables.level1.0[(address / BLOCK_1G) as usize];
    let old = *level1;
    if !is_table(old) {
        // A 1 GiB block (or nothing): split it into 2 MiB blocks with its attributes.
        let level2 = allocate(&mut tables.level2, &LEVEL2_USED, |slot| {
            if old & VALID == 0 {
                0
            } else {
                (gigabyte + slot as u64 * BLOCK_2M) | (old & !OUTPUT_ADDRESS)
            }
        })?;
        replace(level1, core::ptr::addr_of!(level2.0) as u64 | VALID | TABLE);
    }
    let level2 = table_of(&mut tables.level2, *level1).ok_or(MapError::NoTable)?;
    let block = address & !(BLOCK_2M - 1);
    let level2_entry = &mut level2.0[((address % BLOCK_1G) / BLOCK_2M) as usize];
    let old = *level2_entry;
    let page_index = ((address % BLOCK_2M) / PAGE) as usize;
    if is_table(old) {
        let level3 = table_of(&mut tables.level3, old).ok_or(MapError::NoTable)?;
        let entry = &mut level3.0[page_index];
        if *entry != address | SHARED_PAGE {
            replace(entry, address | SHARED_PAGE);
        }
        return Ok(Mapped::Page);
    }
    if old & VALID != 0 && old & ATTR_INDEX == ATTR_NORMAL {
        return Ok(Mapped::AlreadyNormal);
    }
    // A Device 2 MiB block (or nothing): split it into pages with its attributes,
    // except ours.
    let level3 = allocate(&mut tables.level3, &LEVEL3_USED, |slot| {
        let page = block + slot as u64 * PAGE;
        if slot == page_index {
            page | SHARED_PAGE
        } else if old & VALID == 0 {
            0
        } else {
            page | (old & !OUTPUT_ADDRESS) | TABLE
        }
    })?;
    replace(
        level2_entry,
        core::ptr::addr_of!(level3.0) as u64 | VALID | TABLE,
    );
    Ok(Mapped::Page)
}

/// [`map_shared_page`] for the `count` pages from `address` on; stops at the first
/// error.
///
/// # Safety
/// As [`map_shared_page`], for every page of the run.
pub unsafe fn map_shared_pages(address: u64, count: u64) -> Result<(), MapError> {
    for page in 0..count {
        // SAFETY: the caller's guarantee covers each page of the run.
        unsafe { map_shared_page(address + page * PAGE) }?;
    }
    Ok(())
}

/// Maps the 1 GiB of virtual addresses at `virtual_address` (1 GiB aligned, above 4 GiB,
/// where nothing is mapped) to the output address `output` (1 GiB aligned) as Normal
/// memory: the `isolation` scenario's way to reach IPAs beyond the hypervisor's IPA
/// size. Returns false if the slot is out of range or already in use.
///
/// # Safety
/// One CPU at a time. Accessing the new range reads or writes whatever `output` is:
/// only for probes that expect the hypervisor to stop them.
pub unsafe fn map_gigabyte(virtual_address: u64, output: u64) -> bool {
    if !(DEVICE_LIMIT..ADDRESS_SPACE).contains(&virtual_address)
        || !virtual_address.is_multiple_of(BLOCK_1G)
        || !output.is_multiple_of(BLOCK_1G)
    {
        return false;
    }
    let slot = (virtual_address / BLOCK_1G) as usize;
    // SAFETY: the caller keeps other CPUs out; the level-1 table is ours, and the slot
    // is checked to be empty below before it is written.
    let tables = unsafe { &mut *core::ptr::addr_of_mut!(TABLES) };
    let Some(entry) = tables.level1.0.get_mut(slot) else {
        return false;
    };
    if *entry & VALID != 0 {
        return false;
    }
    // SAFETY: an aligned u64 of the live table; volatile so the walker sees it.
    unsafe { core::ptr::write_volatile(entry, (output & OUTPUT_ADDRESS) | NORMAL_BLOCK) };
    cpu::publish_translation();
    true
}
