//! The hypervisor's own EL2 stage-1 translation tables (`TTBR0_EL2`, `HCR_EL2.E2H` = 0):
//! an identity map, virtual address == physical address.
//!
//! Same walker and 4 KiB granule as stage 2; a 39-bit VA (three levels, start level 1)
//! by default, 48 bits (four levels, start level 0) when memory lies at or above 512 GiB.
//!
//! Leaf descriptor fields used (Arm ARM, "Stage 1 attribute fields", EL2 regime):
//! * `AttrIndx[4:2]`: index into [`MAIR_EL2_VALUE`];
//! * `AP[7:6]` = `AP[2:1]`: `AP[1]` (bit 6) is RES1 in a one-exception-level regime, so
//!   `0b01` is read/write and `0b11` read-only at EL2;
//! * `SH[9:8]`: `0b11` inner shareable for both Normal kinds, `0b00` for Device;
//! * `AF[10]`: set;
//! * `XN[54]`: set when not executable (always for Device).

use super::frames::PageAllocator;
use super::table::{ArchBarrier, MapError, TableBarrier, Walker, OUTPUT_ADDRESS_MASK};
use crate::addr::{AddrRange, PhysAddr};

/// `MAIR_EL2`: attribute 0 Normal write-back read/write-allocate (`0xFF`), attribute 1
/// Device-nGnRE (`0x04`), attribute 2 Normal non-cacheable (`0x44`).
pub const MAIR_EL2_VALUE: u64 = 0xFF | (0x04 << 8) | (0x44 << 16);
/// The default VA size: 39 bits (512 GiB), enough for QEMU virt and the Raspberry Pi 4.
pub const DEFAULT_VA_BITS: u32 = 39;

const ATTRIBUTE_INDEX_SHIFT: u32 = 2;
const ATTRIBUTE_INDEX_MASK: u64 = 0b111 << ATTRIBUTE_INDEX_SHIFT;
const ATTRIBUTE_INDEX_NORMAL: u64 = 0;
const ATTRIBUTE_INDEX_DEVICE: u64 = 1;
const ATTRIBUTE_INDEX_NON_CACHEABLE: u64 = 2;
/// `AP[1]`, RES1 in the EL2 regime.
const AP_RES1: u64 = 1 << 6;
/// `AP[2]`: read-only.
const AP_READ_ONLY: u64 = 1 << 7;
const SHAREABILITY_INNER: u64 = 0b11 << 8;
const ACCESS_FLAG: u64 = 1 << 10;
const EXECUTE_NEVER: u64 = 1 << 54;

/// The memory type of an EL2 mapping (its `MAIR_EL2` attribute index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum El2MemoryKind {
    /// Normal write-back cacheable memory (index 0).
    Normal,
    /// Device-nGnRE (index 1).
    Device,
    /// Normal non-cacheable memory (index 2).
    NormalNonCacheable,
}

/// Attributes of an EL2 mapping. EL2 memory is always readable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct El2Attributes {
    /// The memory type.
    pub memory: El2MemoryKind,
    /// EL2 may write.
    pub writable: bool,
    /// EL2 may execute. Refused for Device memory.
    pub executable: bool,
}

impl El2Attributes {
    /// Leaf descriptor attribute bits (everything but the address and type bits).
    pub const fn descriptor_bits(self) -> u64 {
        let mut bits = ACCESS_FLAG | AP_RES1;
        bits |= match self.memory {
            El2MemoryKind::Normal => {
                (ATTRIBUTE_INDEX_NORMAL << ATTRIBUTE_INDEX_SHIFT) | SHAREABILITY_INNER
            }
            El2MemoryKind::Device => ATTRIBUTE_INDEX_DEVICE << ATTRIBUTE_INDEX_SHIFT,
            El2MemoryKind::NormalNonCacheable => {
                (ATTRIBUTE_INDEX_NON_CACHEABLE << ATTRIBUTE_INDEX_SHIFT) | SHAREABILITY_INNER
            }
        };
        if !self.writable {
            bits |= AP_READ_ONLY;
        }
        if !self.executable {
            bits |= EXECUTE_NEVER;
        }
        bits
    }

    /// Decodes bits written by [`Self::descriptor_bits`].
    pub const fn from_descriptor_bits(bits: u64) -> Self {
        let memory = match (bits & ATTRIBUTE_INDEX_MASK) >> ATTRIBUTE_INDEX_SHIFT {
            ATTRIBUTE_INDEX_NORMAL => El2MemoryKind::Normal,
            ATTRIBUTE_INDEX_NON_CACHEABLE => El2MemoryKind::NormalNonCacheable,
            _ => El2MemoryKind::Device,
        };
        Self {
            memory,
            writable: bits & AP_READ_ONLY == 0,
            executable: bits & EXECUTE_NEVER == 0,
        }
    }
}

/// The `TCR_EL2` value (`HCR_EL2.E2H` = 0) for a `va_bits`-bit VA (39 or 48) on a CPU
/// whose `ID_AA64MMFR0_EL1.PARange` field is `pa_range`.
///
/// Fields: `T0SZ[5:0]` = 64 - `va_bits` (the start level follows from it: 1 for 39
/// bits, 0 for 48); `IRGN0[9:8]` = `ORGN0[11:10]` = `0b01` (write-back, read- and
/// write-allocate); `SH0[13:12]` = `0b11`; `TG0[15:14]` = `0b00` (4 KiB);
/// `PS[18:16]` = `pa_range` capped at `0b101` (48 bits); `TBI[20]` = 0; bits 23 and 31
/// RES1.
pub const fn tcr_el2_value(va_bits: u32, pa_range: u32) -> u64 {
    let t0sz = (64 - va_bits as u64) & 0x3f;
    let inner_write_back = 0b01 << 8;
    let outer_write_back = 0b01 << 10;
    let inner_shareable = 0b11 << 12;
    let granule_4k = 0b00 << 14;
    let physical_size = (if pa_range > 0b101 {
        0b101
    } else {
        pa_range as u64
    }) << 16;
    let res1 = (1 << 31) | (1 << 23);
    t0sz | inner_write_back | outer_write_back | inner_shareable | granule_4k | physical_size | res1
}

/// The VA size to use when the highest physical address to be mapped is
/// `highest_address`: [`DEFAULT_VA_BITS`] if it lies below 512 GiB, else 48.
pub const fn va_bits_for(highest_address: PhysAddr) -> u32 {
    if highest_address.raw() < 1 << DEFAULT_VA_BITS {
        DEFAULT_VA_BITS
    } else {
        48
    }
}

/// The hypervisor's EL2 stage-1 tables.
///
/// Mappings are only ever added. Building happens before the MMU is enabled; if a
/// mapping is added while the tables are live, the caller follows it with an `ISB`
/// (the descriptor stores themselves are published by [`TableBarrier`]).
#[derive(Debug)]
pub struct El2Tables {
    walker: Walker,
}

impl El2Tables {
    /// Empty tables for a [`DEFAULT_VA_BITS`] VA, root taken from `allocator`.
    pub fn new(allocator: &mut impl PageAllocator) -> Result<Self, MapError> {
        Self::with_va_bits(DEFAULT_VA_BITS, allocator)
    }

    /// Empty tables for a `va_bits`-bit VA: 39 (start level 1) or 48 (start level 0).
    pub fn with_va_bits(
        va_bits: u32,
        allocator: &mut impl PageAllocator,
    ) -> Result<Self, MapError> {
        if va_bits != 39 && va_bits != 48 {
            return Err(MapError::UnsupportedAddressBits);
        }
        Ok(Self {
            walker: Walker::new(va_bits, allocator)?,
        })
    }

    /// The VA size in bits (pass it to [`tcr_el2_value`]).
    pub fn va_bits(&self) -> u32 {
        self.walker.input_bits()
    }

    /// How many table pages (root included) the tables hold.
    pub fn table_pages(&self) -> usize {
        self.walker.table_pages()
    }

    /// The `TTBR0_EL2` value: the root table's address (`BADDR`), `CnP` = 0.
    pub fn ttbr0(&self) -> u64 {
        self.walker.root().raw() & OUTPUT_ADDRESS_MASK
    }

    /// Maps `range` at VA == PA with `attributes`. The range must be 4 KiB aligned,
    /// non-empty, below `2^va_bits` and not overlap an existing mapping
    /// ([`MapError::AlreadyMapped`]); Device memory must not be executable.
    pub fn map_identity(
        &mut self,
        range: AddrRange<PhysAddr>,
        attributes: El2Attributes,
        allocator: &mut impl PageAllocator,
    ) -> Result<(), MapError> {
        if attributes.executable && attributes.memory == El2MemoryKind::Device {
            return Err(MapError::ExecutableDevice);
        }
        let barrier = ArchBarrier;
        self.walker.map(
            range.start.raw(),
            range.start.raw(),
            range.size,
            attributes.descriptor_bits(),
            allocator,
            &barrier,
            // Only reached when undoing a failed map of previously unmapped memory;
            // entries that were never live in a TLB need no invalidation.
            &mut || barrier.publish_descriptors(),
        )
    }

    /// What `address` maps to and how, or `None` if unmapped.
    pub fn translate(&self, address: u64) -> Option<(PhysAddr, El2Attributes)> {
        self.walker.lookup(address).map(|translation| {
            (
                PhysAddr::new(translation.output),
                El2Attributes::from_descriptor_bits(translation.attributes),
            )
        })
    }

    /// The level (1, 2 or 3) of the leaf mapping `address`, or `None` if unmapped.
    pub fn leaf_level(&self, address: u64) -> Option<u8> {
        self.walker
            .lookup(address)
            .map(|translation| translation.level)
    }

    /// The raw descriptor at `level` on the walk for `address` (tests, diagnostics).
    pub fn descriptor(&self, address: u64, level: u8) -> Option<u64> {
        self.walker.descriptor_at(address, level)
    }

    /// Gives every table page back to `allocator` (the one they came from; a page it
    /// refuses is leaked). Only for tables that were never live.
    pub fn destroy(self, allocator: &mut impl PageAllocator) {
        let barrier = ArchBarrier;
        // Errors only come from a foreign allocator refusing pages; see above.
        let _ = self
            .walker
            .destroy(allocator, &barrier, &mut || barrier.publish_descriptors());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::PAGE_SIZE;
    use crate::mm::test_support::claim_region;

    const MIB: u64 = 1024 * 1024;
    const GIB: u64 = 1024 * MIB;

    fn range(start: u64, size: u64) -> AddrRange<PhysAddr> {
        AddrRange::<PhysAddr>::new(PhysAddr::new(start), size)
    }

    const CODE: El2Attributes = El2Attributes {
        memory: El2MemoryKind::Normal,
        writable: false,
        executable: true,
    };
    const DATA: El2Attributes = El2Attributes {
        memory: El2MemoryKind::Normal,
        writable: true,
        executable: false,
    };
    const DEVICE: El2Attributes = El2Attributes {
        memory: El2MemoryKind::Device,
        writable: true,
        executable: false,
    };

    #[test]
    fn register_values() {
        assert_eq!(MAIR_EL2_VALUE, 0x0044_04FF);
        // T0SZ | IRGN0 01 | ORGN0 01 | SH0 11 | TG0 4K | PS | RES1 bits 23 and 31.
        assert_eq!(tcr_el2_value(39, 0b100), 0x8084_3519);
        assert_eq!(tcr_el2_value(48, 0b101), 0x8085_3510);
        assert_eq!(tcr_el2_value(48, 0b110), 0x8085_3510);
        assert_eq!(tcr_el2_value(39, 0b001), 0x8081_3519);
        assert_eq!(va_bits_for(PhysAddr::new(0x4000_0000)), 39);
        assert_eq!(va_bits_for(PhysAddr::new(1 << 39)), 48);
    }

    #[test]
    fn identity_map_descriptor_bits() {
        let region = claim_region();
        let mut allocator = region.allocator();
        let before = allocator.free_bytes();
        let mut tables = El2Tables::new(&mut allocator).unwrap();
        assert_eq!(tables.va_bits(), 39);
        assert_eq!(tables.ttbr0(), region.range().start.raw());
        // Code page: AF 0x400 | SH 0x300 | AP 0b11 (RO, AP[1] RES1) 0xC0 | AttrIndx 0 | page.
        tables
            .map_identity(range(0x4008_0000, PAGE_SIZE), CODE, &mut allocator)
            .unwrap();
        assert_eq!(tables.descriptor(0x4008_0000, 3), Some(0x4008_07C3));
        // Data page: AP 0b01 (RW) and XN bit 54.
        tables
            .map_identity(range(0x4008_1000, PAGE_SIZE), DATA, &mut allocator)
            .unwrap();
        assert_eq!(
            tables.descriptor(0x4008_1000, 3),
            Some(0x0040_0000_4008_1743)
        );
        // Device 2 MiB block: AF | AP 0b01 | AttrIndx 1 | XN | block.
        tables
            .map_identity(
                range(0x0900_0000 & !(2 * MIB - 1), 2 * MIB),
                DEVICE,
                &mut allocator,
            )
            .unwrap();
        assert_eq!(
            tables.descriptor(0x0900_0000, 2),
            Some(0x0040_0000_0900_0445)
        );
        assert_eq!(tables.leaf_level(0x0900_0000), Some(2));
        // Non-cacheable 1 GiB block: AttrIndx 2 | SH | AF | AP rw | XN | block.
        let shared = El2Attributes {
            memory: El2MemoryKind::NormalNonCacheable,
            writable: true,
            executable: false,
        };
        tables
            .map_identity(range(2 * GIB, GIB), shared, &mut allocator)
            .unwrap();
        assert_eq!(tables.descriptor(2 * GIB, 1), Some(0x0040_0000_8000_0749));
        assert_eq!(
            tables.translate(2 * GIB + 0x1234),
            Some((PhysAddr::new(2 * GIB + 0x1234), shared))
        );
        assert_eq!(
            tables.translate(0x4008_0010),
            Some((PhysAddr::new(0x4008_0010), CODE))
        );
        assert_eq!(tables.translate(0x4008_2000), None);
        tables.destroy(&mut allocator);
        assert_eq!(allocator.free_bytes(), before);
    }

    #[test]
    fn refusals() {
        let region = claim_region();
        let mut allocator = region.allocator();
        let mut tables = El2Tables::new(&mut allocator).unwrap();
        let executable_device = El2Attributes {
            executable: true,
            ..DEVICE
        };
        assert_eq!(
            tables.map_identity(
                range(0x0900_0000, PAGE_SIZE),
                executable_device,
                &mut allocator
            ),
            Err(MapError::ExecutableDevice)
        );
        assert_eq!(
            tables.map_identity(range(0x4000_0800, PAGE_SIZE), DATA, &mut allocator),
            Err(MapError::Misaligned)
        );
        assert_eq!(
            tables.map_identity(range(1 << 39, PAGE_SIZE), DATA, &mut allocator),
            Err(MapError::OutOfRange)
        );
        tables
            .map_identity(range(0x4000_0000, 2 * MIB), DATA, &mut allocator)
            .unwrap();
        assert_eq!(
            tables.map_identity(range(0x4010_0000, PAGE_SIZE), CODE, &mut allocator),
            Err(MapError::AlreadyMapped)
        );
        assert_eq!(
            El2Tables::with_va_bits(42, &mut allocator).unwrap_err(),
            MapError::UnsupportedAddressBits
        );
    }

    #[test]
    fn forty_eight_bit_tables_start_at_level_0() {
        let region = claim_region();
        let mut allocator = region.allocator();
        let before = allocator.free_bytes();
        let mut tables = El2Tables::with_va_bits(48, &mut allocator).unwrap();
        let high = 0x80_0000_0000; // 512 GiB: beyond a 39-bit VA.
        tables
            .map_identity(range(high, GIB + 2 * MIB + PAGE_SIZE), DATA, &mut allocator)
            .unwrap();
        assert_eq!(tables.leaf_level(high), Some(1));
        assert_eq!(tables.leaf_level(high + GIB), Some(2));
        assert_eq!(tables.leaf_level(high + GIB + 2 * MIB), Some(3));
        assert_eq!(
            tables.translate(high + GIB + 2 * MIB + 8),
            Some((PhysAddr::new(high + GIB + 2 * MIB + 8), DATA))
        );
        // level 0 root + level 1 + level 2 + level 3.
        assert_eq!(tables.table_pages(), 4);
        assert_eq!(
            tables
                .descriptor(high, 0)
                .map(|descriptor| descriptor & 0b11),
            Some(0b11)
        );
        tables.destroy(&mut allocator);
        assert_eq!(allocator.free_bytes(), before);
    }
}
