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
//!
//! The tables live in bss, page aligned, and are written with the MMU off (straight to
//! memory); their lines are invalidated before the walker may read them through the
//! cache.

use crate::arch::cpu::{self, MmuSettings};
use crate::dt::MemoryRange;

const ENTRIES: usize = 512;
const BLOCK_2M: u64 = 1 << 21;
const BLOCK_1G: u64 = 1 << 30;
/// Largest input address + 1 (T0SZ = 25).
const ADDRESS_SPACE: u64 = 1 << 39;
/// Below this, what is not RAM is mapped as Device.
const DEVICE_LIMIT: u64 = 4 << 30;
/// Level-2 tables available (each covers the 1 GiB around some RAM).
const LEVEL2_TABLES: usize = 8;

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
}

/// The tables; written only by [`build_and_enable`], before the MMU is on.
static mut TABLES: Tables = Tables {
    level1: Table([0; ENTRIES]),
    level2: [const { Table([0; ENTRIES]) }; LEVEL2_TABLES],
};

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
