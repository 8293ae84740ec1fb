//! Stage-2 translation tables: one set per domain, translating the domain's intermediate
//! physical addresses (IPAs) to physical addresses.
//!
//! VMSAv8-64, 4 KiB granule, a 39-bit IPA space by default (`T0SZ` = 25, start level 1,
//! one 4 KiB root table). IPA sizes of 32..=39 bits are accepted, all starting at level 1.
//!
//! Leaf descriptor fields used (Arm ARM, "Stage 2 attribute fields"):
//! * `MemAttr[5:2]`: `0b1111` Normal, outer and inner write-back cacheable;
//!   `0b0001` Device-nGnRE;
//! * `S2AP[7:6]`: `0b01` read, `0b10` write, `0b11` read/write;
//! * `SH[9:8]`: `0b11` inner shareable for Normal memory (ignored for Device);
//! * `AF[10]`: set, so no access-flag faults;
//! * `XN[54:53]`: `0b10` (execute never at EL1 and EL0) when not executable.
//!
//! A domain's tables are changed only through `&mut Stage2`; [`Stage2::unmap`] and
//! [`Stage2::destroy`] end with one stage-2 TLB invalidation of the domain's VMID
//! ([`TableBarrier::invalidate_stage2`], by default [`crate::arch::tlb_invalidate_vmid`]).

use super::frames::PageAllocator;
use super::table::{ArchBarrier, MapError, TableBarrier, Walker, OUTPUT_ADDRESS_MASK};
use crate::addr::{IntermediatePhysAddr, PhysAddr};

/// The default IPA size in bits: 512 GiB, start level 1, one root table.
pub const DEFAULT_IPA_BITS: u32 = 39;

const ACCESS_FLAG: u64 = 1 << 10;
const S2AP_READ: u64 = 1 << 6;
const S2AP_WRITE: u64 = 1 << 7;
const MEMATTR_SHIFT: u32 = 2;
const MEMATTR_MASK: u64 = 0b1111 << MEMATTR_SHIFT;
const MEMATTR_NORMAL_WRITE_BACK: u64 = 0b1111;
const MEMATTR_DEVICE_NGNRE: u64 = 0b0001;
const SHAREABILITY_INNER: u64 = 0b11 << 8;
/// `XN[54:53]` = `0b10`: not executable at EL1 or EL0.
const EXECUTE_NEVER: u64 = 0b10 << 53;
const XN_MASK: u64 = 0b11 << 53;

/// The memory type of a stage-2 mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemoryKind {
    /// Normal memory, write-back cacheable, inner shareable: guest RAM.
    Normal,
    /// Device-nGnRE: device registers passed through to a guest.
    Device,
}

/// Permissions and memory type of a stage-2 mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stage2Attributes {
    /// The guest may read.
    pub read: bool,
    /// The guest may write.
    pub write: bool,
    /// The guest may execute (at EL1 and EL0).
    pub execute: bool,
    /// The memory type.
    pub memory: MemoryKind,
}

impl Stage2Attributes {
    /// Guest RAM: Normal memory, read, write and execute.
    pub const RAM: Self = Self {
        read: true,
        write: true,
        execute: true,
        memory: MemoryKind::Normal,
    };
    /// Device registers: Device-nGnRE, read and write, never executable.
    pub const DEVICE: Self = Self {
        read: true,
        write: true,
        execute: false,
        memory: MemoryKind::Device,
    };

    /// The leaf descriptor attribute bits (everything but the address and type bits).
    pub const fn descriptor_bits(self) -> u64 {
        let mut bits = ACCESS_FLAG;
        if self.read {
            bits |= S2AP_READ;
        }
        if self.write {
            bits |= S2AP_WRITE;
        }
        bits |= match self.memory {
            MemoryKind::Normal => (MEMATTR_NORMAL_WRITE_BACK << MEMATTR_SHIFT) | SHAREABILITY_INNER,
            MemoryKind::Device => MEMATTR_DEVICE_NGNRE << MEMATTR_SHIFT,
        };
        if !self.execute {
            bits |= EXECUTE_NEVER;
        }
        bits
    }

    /// Decodes leaf descriptor attribute bits written by [`Self::descriptor_bits`].
    pub const fn from_descriptor_bits(bits: u64) -> Self {
        let memory = if (bits & MEMATTR_MASK) >> MEMATTR_SHIFT == MEMATTR_NORMAL_WRITE_BACK {
            MemoryKind::Normal
        } else {
            MemoryKind::Device
        };
        Self {
            read: bits & S2AP_READ != 0,
            write: bits & S2AP_WRITE != 0,
            execute: bits & XN_MASK == 0,
            memory,
        }
    }
}

/// The `VTCR_EL2` value for a stage-2 IPA size of `ipa_bits` (31..=39, start level 1)
/// on a CPU whose `ID_AA64MMFR0_EL1.PARange` field is `pa_range`.
///
/// Fields: `T0SZ[5:0]` = 64 - `ipa_bits`; `SL0[7:6]` = `0b01` (start at level 1 with
/// the 4 KiB granule); `IRGN0[9:8]` = `ORGN0[11:10]` = `0b01` (write-back, read- and
/// write-allocate); `SH0[13:12]` = `0b11` (inner shareable); `TG0[15:14]` = `0b00`
/// (4 KiB); `PS[18:16]` = `pa_range`, capped at `0b101` (48 bits: the 4 KiB granule
/// without FEAT_LPA2 has no 52-bit output); `VS[19]` = 0 (8-bit VMID); bit 31 RES1.
/// The caller keeps `ipa_bits` no larger than the physical address size.
pub const fn vtcr_value(ipa_bits: u32, pa_range: u32) -> u64 {
    let t0sz = (64 - ipa_bits as u64) & 0x3f;
    let start_level_1 = 0b01 << 6;
    let inner_write_back = 0b01 << 8;
    let outer_write_back = 0b01 << 10;
    let inner_shareable = 0b11 << 12;
    let granule_4k = 0b00 << 14;
    let physical_size = (if pa_range > 0b101 {
        0b101
    } else {
        pa_range as u64
    }) << 16;
    let res1 = 1 << 31;
    t0sz | start_level_1
        | inner_write_back
        | outer_write_back
        | inner_shareable
        | granule_4k
        | physical_size
        | res1
}

/// The stage-2 translation tables of one domain.
///
/// Drop without [`Stage2::destroy`] leaks the table pages (the allocator is needed to
/// give them back).
#[derive(Debug)]
pub struct Stage2<B: TableBarrier = ArchBarrier> {
    walker: Walker,
    vmid: u16,
    barrier: B,
}

impl Stage2<ArchBarrier> {
    /// An empty table set for VMID `vmid` (0..=255) and `ipa_bits`-bit IPAs (31..=39;
    /// use [`DEFAULT_IPA_BITS`]), with the root table taken from `allocator`.
    pub fn new(
        vmid: u16,
        ipa_bits: u32,
        allocator: &mut impl PageAllocator,
    ) -> Result<Self, MapError> {
        Self::with_barrier(vmid, ipa_bits, allocator, ArchBarrier)
    }
}

impl<B: TableBarrier> Stage2<B> {
    /// Like [`Stage2::new`], with an explicit barrier/TLB-maintenance implementation.
    pub fn with_barrier(
        vmid: u16,
        ipa_bits: u32,
        allocator: &mut impl PageAllocator,
        barrier: B,
    ) -> Result<Self, MapError> {
        if vmid > 0xff {
            return Err(MapError::InvalidVmid);
        }
        if !(31..=39).contains(&ipa_bits) {
            return Err(MapError::UnsupportedAddressBits);
        }
        let walker = Walker::new(ipa_bits, allocator)?;
        Ok(Self {
            walker,
            vmid,
            barrier,
        })
    }

    /// The domain's VMID.
    pub fn vmid(&self) -> u16 {
        self.vmid
    }

    /// The IPA size in bits.
    pub fn ipa_bits(&self) -> u32 {
        self.walker.input_bits()
    }

    /// How many table pages (root included) the set holds now.
    pub fn table_pages(&self) -> usize {
        self.walker.table_pages()
    }

    /// The barrier implementation.
    pub fn barrier(&self) -> &B {
        &self.barrier
    }

    /// The `VTTBR_EL2` value: `VMID` in bits `[55:48]` (8-bit VMID), the root table's
    /// address as `BADDR` in bits `[47:1]` (the root is 4 KiB aligned), `CnP` = 0.
    pub fn vttbr(&self) -> u64 {
        (u64::from(self.vmid & 0xff) << 48) | (self.walker.root().raw() & OUTPUT_ADDRESS_MASK)
    }

    /// The physical address of the root table.
    pub fn root(&self) -> PhysAddr {
        self.walker.root()
    }

    /// Maps `size` bytes at `ipa` to `pa` with `attributes`.
    ///
    /// `ipa`, `pa` and `size` must be 4 KiB aligned and `size` non-zero; the range must
    /// lie below `2^ipa_bits` and `pa + size` at or below 2^48. Uses 1 GiB and 2 MiB
    /// blocks where IPA and PA are both aligned and the rest of the range covers the
    /// block, 4 KiB pages elsewhere. Refuses with [`MapError::AlreadyMapped`], changing
    /// nothing, if any page of the range is mapped. If table pages run out, what this
    /// call mapped is unmapped again before the error is returned.
    pub fn map(
        &mut self,
        ipa: IntermediatePhysAddr,
        pa: PhysAddr,
        size: u64,
        attributes: Stage2Attributes,
        allocator: &mut impl PageAllocator,
    ) -> Result<(), MapError> {
        let vmid = self.vmid;
        let barrier = &self.barrier;
        self.walker.map(
            ipa.raw(),
            pa.raw(),
            size,
            attributes.descriptor_bits(),
            allocator,
            barrier,
            &mut || barrier.invalidate_stage2(vmid),
        )
    }

    /// Unmaps every page inside `size` bytes at `ipa` (unmapped holes are allowed).
    ///
    /// Blocks straddling the range's edges are split into next-level tables that keep
    /// the rest of the block mapped; table pages that become empty go back to
    /// `allocator`. Ends with exactly one stage-2 TLB invalidation for the VMID (before
    /// any table page is given back). Alignment and range rules are those of
    /// [`Stage2::map`]; the operation reserves the pages splits need first, so on
    /// [`MapError::Allocation`] nothing has changed.
    pub fn unmap(
        &mut self,
        ipa: IntermediatePhysAddr,
        size: u64,
        allocator: &mut impl PageAllocator,
    ) -> Result<(), MapError> {
        let vmid = self.vmid;
        let barrier = &self.barrier;
        self.walker
            .unmap(ipa.raw(), size, allocator, barrier, &mut || {
                barrier.invalidate_stage2(vmid)
            })
    }

    /// The physical address `ipa` translates to (with its offset kept) and the
    /// mapping's attributes, or `None` if it is not mapped.
    pub fn translate(&self, ipa: IntermediatePhysAddr) -> Option<(PhysAddr, Stage2Attributes)> {
        self.walker.lookup(ipa.raw()).map(|translation| {
            (
                PhysAddr::new(translation.output),
                Stage2Attributes::from_descriptor_bits(translation.attributes),
            )
        })
    }

    /// The level (1, 2 or 3) of the leaf mapping `ipa`, or `None` if it is not mapped.
    pub fn leaf_level(&self, ipa: IntermediatePhysAddr) -> Option<u8> {
        self.walker
            .lookup(ipa.raw())
            .map(|translation| translation.level)
    }

    /// The raw descriptor at `level` on the walk for `ipa` (tests, diagnostics).
    pub fn descriptor(&self, ipa: IntermediatePhysAddr, level: u8) -> Option<u64> {
        self.walker.descriptor_at(ipa.raw(), level)
    }

    /// Invalidates the VMID's TLB entries and gives every table page back to
    /// `allocator`, which must be the allocator the pages came from (a page it refuses
    /// is leaked; a leak check on `free_bytes()` shows it).
    pub fn destroy(self, allocator: &mut impl PageAllocator) {
        let vmid = self.vmid;
        let barrier = &self.barrier;
        // Errors only come from a foreign allocator refusing pages; see above.
        let _ = self
            .walker
            .destroy(allocator, barrier, &mut || barrier.invalidate_stage2(vmid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::{AddrRange, PAGE_SIZE};
    use crate::mm::frames::{AllocError, FrameAllocator};
    use crate::mm::test_support::claim_region;
    use core::cell::Cell;
    use proptest::prelude::*;
    extern crate std;
    use std::collections::BTreeMap;
    use std::vec::Vec;

    const MIB: u64 = 1024 * 1024;
    const GIB: u64 = 1024 * MIB;

    /// Counts barrier and invalidation calls of one table set.
    #[derive(Default, Debug)]
    struct CountingBarrier {
        publishes: Cell<usize>,
        invalidations: Cell<usize>,
    }

    impl TableBarrier for CountingBarrier {
        fn publish_descriptors(&self) {
            self.publishes.set(self.publishes.get() + 1);
        }
        fn invalidate_stage2(&self, vmid: u16) {
            assert_eq!(vmid, 7);
            self.invalidations.set(self.invalidations.get() + 1);
        }
    }

    fn ipa(raw: u64) -> IntermediatePhysAddr {
        IntermediatePhysAddr::new(raw)
    }

    fn pa(raw: u64) -> PhysAddr {
        PhysAddr::new(raw)
    }

    fn counted(allocator: &mut FrameAllocator) -> Stage2<CountingBarrier> {
        Stage2::with_barrier(7, DEFAULT_IPA_BITS, allocator, CountingBarrier::default()).unwrap()
    }

    const READ_ONLY_DATA: Stage2Attributes = Stage2Attributes {
        read: true,
        write: false,
        execute: false,
        memory: MemoryKind::Normal,
    };

    #[test]
    fn chooses_blocks_when_aligned_and_pages_otherwise() {
        let region = claim_region();
        let mut allocator = region.allocator();
        let mut stage2 = counted(&mut allocator);
        // 1 GiB, both sides 1 GiB aligned: one level-1 block.
        stage2
            .map(
                ipa(GIB),
                pa(3 * GIB),
                GIB,
                Stage2Attributes::RAM,
                &mut allocator,
            )
            .unwrap();
        assert_eq!(stage2.leaf_level(ipa(GIB)), Some(1));
        assert_eq!(stage2.leaf_level(ipa(2 * GIB - PAGE_SIZE)), Some(1));
        assert_eq!(stage2.table_pages(), 1);
        // 2 MiB + 8 KiB, 2 MiB aligned: a level-2 block and two pages.
        stage2
            .map(
                ipa(2 * GIB),
                pa(4 * GIB),
                2 * MIB + 2 * PAGE_SIZE,
                Stage2Attributes::RAM,
                &mut allocator,
            )
            .unwrap();
        assert_eq!(stage2.leaf_level(ipa(2 * GIB)), Some(2));
        assert_eq!(stage2.leaf_level(ipa(2 * GIB + 2 * MIB)), Some(3));
        assert_eq!(
            stage2.leaf_level(ipa(2 * GIB + 2 * MIB + PAGE_SIZE)),
            Some(3)
        );
        assert_eq!(
            stage2.leaf_level(ipa(2 * GIB + 2 * MIB + 2 * PAGE_SIZE)),
            None
        );
        // 2 MiB at a 2 MiB aligned IPA but a PA only 1 MiB aligned: pages only.
        stage2
            .map(
                ipa(2 * GIB + 16 * MIB),
                pa(4 * GIB + 33 * MIB),
                2 * MIB,
                Stage2Attributes::RAM,
                &mut allocator,
            )
            .unwrap();
        assert_eq!(stage2.leaf_level(ipa(2 * GIB + 16 * MIB)), Some(3));
        assert_eq!(
            stage2.leaf_level(ipa(2 * GIB + 18 * MIB - PAGE_SIZE)),
            Some(3)
        );
        assert_eq!(
            stage2.translate(ipa(2 * GIB + 17 * MIB + 0x123)),
            Some((pa(4 * GIB + 34 * MIB + 0x123), Stage2Attributes::RAM))
        );
        // root + one level-2 table + two level-3 tables.
        assert_eq!(stage2.table_pages(), 4);
        assert_eq!(stage2.barrier().invalidations.get(), 0);
    }

    #[test]
    fn descriptor_bits_match_the_arm_arm() {
        let region = claim_region();
        let mut allocator = region.allocator();
        let mut stage2 = counted(&mut allocator);
        // Normal RWX 2 MiB block: AF 0x400 | SH 0x300 | S2AP rw 0xC0 | MemAttr 0x3C | block 0b01.
        stage2
            .map(
                ipa(0x4000_0000),
                pa(0x8020_0000),
                2 * MIB,
                Stage2Attributes::RAM,
                &mut allocator,
            )
            .unwrap();
        assert_eq!(stage2.descriptor(ipa(0x4000_0000), 2), Some(0x8020_07FD));
        // The level-1 entry is a table descriptor pointing at a page of our pool.
        let table = stage2.descriptor(ipa(0x4000_0000), 1).unwrap();
        assert_eq!(table & 0b11, 0b11);
        assert!(region.range().contains(pa(table & 0x0000_FFFF_FFFF_F000)));
        assert_eq!(table & !0x0000_FFFF_FFFF_F000, 0b11);
        // Device RW page, execute never: XN 0b10 << 53 | AF | S2AP rw | MemAttr 0b0001 | page.
        stage2
            .map(
                ipa(0x0900_0000),
                pa(0x0900_0000),
                PAGE_SIZE,
                Stage2Attributes::DEVICE,
                &mut allocator,
            )
            .unwrap();
        assert_eq!(
            stage2.descriptor(ipa(0x0900_0000), 3),
            Some(0x0040_0000_0900_04C7)
        );
        // Normal read-only, execute never page: S2AP 0b01.
        stage2
            .map(
                ipa(0x0900_1000),
                pa(0x1234_5000),
                PAGE_SIZE,
                READ_ONLY_DATA,
                &mut allocator,
            )
            .unwrap();
        assert_eq!(
            stage2.descriptor(ipa(0x0900_1000), 3),
            Some(0x0040_0000_1234_577F)
        );
        // Write-only executable device page: S2AP 0b10.
        let write_only = Stage2Attributes {
            read: false,
            write: true,
            execute: true,
            memory: MemoryKind::Device,
        };
        stage2
            .map(
                ipa(0x0900_2000),
                pa(0x0A00_0000),
                PAGE_SIZE,
                write_only,
                &mut allocator,
            )
            .unwrap();
        assert_eq!(stage2.descriptor(ipa(0x0900_2000), 3), Some(0x0A00_0487));
        assert_eq!(
            stage2.translate(ipa(0x0900_2010)),
            Some((pa(0x0A00_0010), write_only))
        );
    }

    #[test]
    fn vtcr_and_vttbr_values() {
        // T0SZ 25 | SL0 01 | IRGN0 01 | ORGN0 01 | SH0 11 | TG0 4K | PS | RES1 bit 31.
        assert_eq!(vtcr_value(39, 0b100), 0x8004_3559);
        assert_eq!(vtcr_value(39, 0b010), 0x8002_3559);
        assert_eq!(vtcr_value(39, 0b110), 0x8005_3559);
        assert_eq!(vtcr_value(32, 0b000), 0x8000_3560);
        let region = claim_region();
        let mut allocator = region.allocator();
        let stage2 = Stage2::new(5, DEFAULT_IPA_BITS, &mut allocator).unwrap();
        assert_eq!(stage2.vttbr(), (5 << 48) | stage2.root().raw());
        assert_eq!(stage2.root(), region.range().start);
        assert_eq!(stage2.vttbr() & 0xFFF, 0);
        stage2.destroy(&mut allocator);
        assert_eq!(
            Stage2::new(256, 39, &mut allocator).unwrap_err(),
            MapError::InvalidVmid
        );
        assert_eq!(
            Stage2::new(1, 40, &mut allocator).unwrap_err(),
            MapError::UnsupportedAddressBits
        );
        assert_eq!(allocator.free_bytes(), region.range().size);
    }

    #[test]
    fn smaller_ipa_space_uses_a_partial_root() {
        let region = claim_region();
        let mut allocator = region.allocator();
        let mut stage2 =
            Stage2::with_barrier(7, 32, &mut allocator, CountingBarrier::default()).unwrap();
        assert_eq!(vtcr_value(stage2.ipa_bits(), 0b010) & 0x3F, 32);
        stage2
            .map(
                ipa(3 * GIB),
                pa(GIB),
                GIB,
                Stage2Attributes::RAM,
                &mut allocator,
            )
            .unwrap();
        assert_eq!(stage2.leaf_level(ipa(4 * GIB - 1)), Some(1));
        assert_eq!(
            stage2.map(
                ipa(4 * GIB),
                pa(0),
                PAGE_SIZE,
                Stage2Attributes::RAM,
                &mut allocator
            ),
            Err(MapError::OutOfRange)
        );
        assert_eq!(stage2.translate(ipa(4 * GIB)), None);
    }

    #[test]
    fn partial_unmap_splits_a_2mib_block_and_keeps_the_rest() {
        let region = claim_region();
        let mut allocator = region.allocator();
        let before = allocator.free_bytes();
        let mut stage2 = counted(&mut allocator);
        stage2
            .map(
                ipa(0x4000_0000),
                pa(0x8000_0000),
                2 * MIB,
                Stage2Attributes::RAM,
                &mut allocator,
            )
            .unwrap();
        assert_eq!(stage2.table_pages(), 2);
        stage2
            .unmap(ipa(0x4010_0000), PAGE_SIZE, &mut allocator)
            .unwrap();
        assert_eq!(stage2.barrier().invalidations.get(), 1);
        assert_eq!(stage2.table_pages(), 3);
        for page in 0..512 {
            let address = 0x4000_0000 + page * PAGE_SIZE;
            let expected = (address != 0x4010_0000)
                .then_some((pa(0x8000_0000 + page * PAGE_SIZE), Stage2Attributes::RAM));
            assert_eq!(stage2.translate(ipa(address)), expected, "page {page}");
            if expected.is_some() {
                assert_eq!(stage2.leaf_level(ipa(address)), Some(3));
            }
        }
        // Unmapping the rest frees the level-3 and level-2 tables.
        stage2
            .unmap(ipa(0x4000_0000), 2 * MIB, &mut allocator)
            .unwrap();
        assert_eq!(stage2.barrier().invalidations.get(), 2);
        assert_eq!(stage2.table_pages(), 1);
        stage2.destroy(&mut allocator);
        assert_eq!(allocator.free_bytes(), before);
    }

    #[test]
    fn partial_unmap_splits_a_1gib_block_down_to_pages() {
        let region = claim_region();
        let mut allocator = region.allocator();
        let mut stage2 = counted(&mut allocator);
        stage2
            .map(ipa(GIB), pa(2 * GIB), GIB, READ_ONLY_DATA, &mut allocator)
            .unwrap();
        // Unmap [GIB + 3 MiB, GIB + 5 MiB + 4 KiB): both edges inside 2 MiB blocks.
        stage2
            .unmap(ipa(GIB + 3 * MIB), 2 * MIB + PAGE_SIZE, &mut allocator)
            .unwrap();
        assert_eq!(stage2.barrier().invalidations.get(), 1);
        // root + level 2 + two level 3 tables.
        assert_eq!(stage2.table_pages(), 4);
        for offset in [
            0,
            2 * MIB,
            3 * MIB - PAGE_SIZE,
            5 * MIB + PAGE_SIZE,
            6 * MIB,
            GIB - PAGE_SIZE,
        ] {
            assert_eq!(
                stage2.translate(ipa(GIB + offset)),
                Some((pa(2 * GIB + offset), READ_ONLY_DATA))
            );
        }
        for offset in [3 * MIB, 4 * MIB, 5 * MIB] {
            assert_eq!(stage2.translate(ipa(GIB + offset)), None);
        }
        assert_eq!(stage2.leaf_level(ipa(GIB)), Some(2));
        assert_eq!(stage2.leaf_level(ipa(GIB + 2 * MIB)), Some(3));
        assert_eq!(stage2.leaf_level(ipa(GIB + 6 * MIB)), Some(2));
    }

    #[test]
    fn overlapping_map_is_refused_and_changes_nothing() {
        let region = claim_region();
        let mut allocator = region.allocator();
        let mut stage2 = counted(&mut allocator);
        stage2
            .map(
                ipa(0x4010_0000),
                pa(0x9000_0000),
                PAGE_SIZE,
                Stage2Attributes::RAM,
                &mut allocator,
            )
            .unwrap();
        let pages = stage2.table_pages();
        let free = allocator.free_bytes();
        assert_eq!(
            stage2.map(
                ipa(0x4000_0000),
                pa(0x8000_0000),
                2 * MIB,
                Stage2Attributes::RAM,
                &mut allocator
            ),
            Err(MapError::AlreadyMapped)
        );
        assert_eq!(
            stage2.map(
                ipa(0x4010_0000),
                pa(0x8000_0000),
                PAGE_SIZE,
                Stage2Attributes::DEVICE,
                &mut allocator
            ),
            Err(MapError::AlreadyMapped)
        );
        assert_eq!(stage2.translate(ipa(0x4000_0000)), None);
        assert_eq!(
            stage2.translate(ipa(0x4010_0000)),
            Some((pa(0x9000_0000), Stage2Attributes::RAM))
        );
        assert_eq!(
            (stage2.table_pages(), allocator.free_bytes()),
            (pages, free)
        );
        // A block mapping refuses a page inside it too.
        stage2
            .map(
                ipa(0x4020_0000),
                pa(0x8020_0000),
                2 * MIB,
                Stage2Attributes::RAM,
                &mut allocator,
            )
            .unwrap();
        assert_eq!(
            stage2.map(
                ipa(0x4030_0000),
                pa(0x1000),
                PAGE_SIZE,
                Stage2Attributes::RAM,
                &mut allocator
            ),
            Err(MapError::AlreadyMapped)
        );
    }

    #[test]
    fn misaligned_empty_and_out_of_range_requests_are_refused() {
        let region = claim_region();
        let mut allocator = region.allocator();
        let mut stage2 = counted(&mut allocator);
        let ram = Stage2Attributes::RAM;
        assert_eq!(
            stage2.map(ipa(0x1001), pa(0x1000), PAGE_SIZE, ram, &mut allocator),
            Err(MapError::Misaligned)
        );
        assert_eq!(
            stage2.map(ipa(0x1000), pa(0x1800), PAGE_SIZE, ram, &mut allocator),
            Err(MapError::Misaligned)
        );
        assert_eq!(
            stage2.map(ipa(0x1000), pa(0x1000), 0x800, ram, &mut allocator),
            Err(MapError::Misaligned)
        );
        assert_eq!(
            stage2.map(ipa(0x1000), pa(0x1000), 0, ram, &mut allocator),
            Err(MapError::EmptyRange)
        );
        assert_eq!(
            stage2.map(ipa(1 << 39), pa(0x1000), PAGE_SIZE, ram, &mut allocator),
            Err(MapError::OutOfRange)
        );
        assert_eq!(
            stage2.map(
                ipa((1 << 39) - PAGE_SIZE),
                pa(0x1000),
                2 * PAGE_SIZE,
                ram,
                &mut allocator
            ),
            Err(MapError::OutOfRange)
        );
        assert_eq!(
            stage2.map(
                ipa(u64::MAX - 0xFFF),
                pa(0x1000),
                PAGE_SIZE,
                ram,
                &mut allocator
            ),
            Err(MapError::OutOfRange)
        );
        assert_eq!(
            stage2.map(
                ipa(0x1000),
                pa((1 << 48) - PAGE_SIZE),
                2 * PAGE_SIZE,
                ram,
                &mut allocator
            ),
            Err(MapError::OutOfRange)
        );
        assert_eq!(
            stage2.unmap(ipa(1 << 39), PAGE_SIZE, &mut allocator),
            Err(MapError::OutOfRange)
        );
        assert_eq!(
            stage2.unmap(ipa(0x10), PAGE_SIZE, &mut allocator),
            Err(MapError::Misaligned)
        );
        assert_eq!(stage2.translate(ipa(1 << 39)), None);
        // The last page below 2^39 is fine.
        stage2
            .map(
                ipa((1 << 39) - PAGE_SIZE),
                pa(0x1000),
                PAGE_SIZE,
                ram,
                &mut allocator,
            )
            .unwrap();
        assert_eq!(
            stage2.translate(ipa((1 << 39) - 1)),
            Some((pa(0x1FFF), ram))
        );
        assert_eq!(stage2.table_pages(), 3);
        assert_eq!(stage2.barrier().invalidations.get(), 0);
    }

    #[test]
    fn running_out_of_table_pages_changes_nothing() {
        let region = claim_region();
        // Exactly two pages: the root and one level-2 table.
        let mut allocator = FrameAllocator::new(
            &[AddrRange::<PhysAddr>::new(
                region.range().start,
                2 * PAGE_SIZE,
            )],
            &[],
        )
        .unwrap();
        let mut stage2 = counted(&mut allocator);
        // Needs a level-3 table as well: undone.
        assert_eq!(
            stage2.map(
                ipa(GIB),
                pa(GIB),
                2 * MIB + PAGE_SIZE,
                Stage2Attributes::RAM,
                &mut allocator
            ),
            Err(MapError::Allocation(AllocError::OutOfMemory))
        );
        assert_eq!(stage2.translate(ipa(GIB)), None);
        assert_eq!(stage2.table_pages(), 1);
        assert_eq!(allocator.free_bytes(), PAGE_SIZE);
        stage2
            .map(
                ipa(GIB),
                pa(GIB),
                2 * MIB,
                Stage2Attributes::RAM,
                &mut allocator,
            )
            .unwrap();
        let invalidations = stage2.barrier().invalidations.get();
        // Splitting the block needs a page: refused before anything changes.
        assert_eq!(
            stage2.unmap(ipa(GIB + MIB), PAGE_SIZE, &mut allocator),
            Err(MapError::Allocation(AllocError::OutOfMemory))
        );
        assert_eq!(stage2.barrier().invalidations.get(), invalidations);
        assert_eq!(stage2.leaf_level(ipa(GIB + MIB)), Some(2));
        assert_eq!(
            stage2.translate(ipa(GIB + MIB)),
            Some((pa(GIB + MIB), Stage2Attributes::RAM))
        );
    }

    #[test]
    fn default_barrier_invalidates_through_arch() {
        let region = claim_region();
        let mut allocator = region.allocator();
        let before = allocator.free_bytes();
        let mut stage2 = Stage2::new(3, DEFAULT_IPA_BITS, &mut allocator).unwrap();
        stage2
            .map(
                ipa(GIB),
                pa(GIB),
                4 * MIB,
                Stage2Attributes::RAM,
                &mut allocator,
            )
            .unwrap();
        let count = crate::arch::fake::tlb_invalidation_count();
        stage2.unmap(ipa(GIB), 4 * MIB, &mut allocator).unwrap();
        // Other tests run concurrently, so only a lower bound holds.
        assert!(crate::arch::fake::tlb_invalidation_count() > count);
        stage2.destroy(&mut allocator);
        assert_eq!(allocator.free_bytes(), before);
    }

    // ---- property test against a model --------------------------------------------

    /// The model: mapped extents by IPA start: (size, PA start, attributes).
    type Model = BTreeMap<u64, (u64, u64, Stage2Attributes)>;

    fn model_lookup(model: &Model, address: u64) -> Option<(PhysAddr, Stage2Attributes)> {
        let (&start, &(size, output, attributes)) = model.range(..=address).next_back()?;
        (address < start + size).then(|| (pa(output + (address - start)), attributes))
    }

    fn model_overlaps(model: &Model, start: u64, size: u64) -> bool {
        model
            .iter()
            .any(|(&other, &(other_size, _, _))| other < start + size && start < other + other_size)
    }

    fn model_unmap(model: &mut Model, start: u64, size: u64) {
        let end = start + size;
        let touched: Vec<_> = model
            .iter()
            .filter(|(&other, &(other_size, _, _))| other < end && start < other + other_size)
            .map(|(&other, &value)| (other, value))
            .collect();
        for (other, (other_size, output, attributes)) in touched {
            model.remove(&other);
            if other < start {
                model.insert(other, (start - other, output, attributes));
            }
            let other_end = other + other_size;
            if end < other_end {
                model.insert(end, (other_end - end, output + (end - other), attributes));
            }
        }
    }

    /// The pages to compare after an operation on `[start, start + size)`.
    fn probe_points(start: u64, size: u64) -> Vec<u64> {
        let pages = size / PAGE_SIZE;
        let mut points = Vec::new();
        if pages <= 1024 {
            points.extend((0..pages).map(|page| start + page * PAGE_SIZE));
        } else {
            points.extend((0..512).map(|page| start + page * PAGE_SIZE));
            points.extend((pages - 512..pages).map(|page| start + page * PAGE_SIZE));
            points.extend(
                (0..pages)
                    .step_by(509)
                    .map(|page| start + page * PAGE_SIZE + 0x10),
            );
        }
        points.push(start.wrapping_sub(PAGE_SIZE));
        points.push(start + size);
        points
    }

    #[derive(Clone, Debug)]
    enum Operation {
        Map {
            start: u64,
            size: u64,
            output: u64,
            attributes: Stage2Attributes,
        },
        Unmap {
            start: u64,
            size: u64,
        },
    }

    /// The IPA window the operations use: 4 GiB.
    const WINDOW: u64 = 4 * GIB;

    fn attributes() -> impl Strategy<Value = Stage2Attributes> {
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
            |(read, write, execute, device)| Stage2Attributes {
                read,
                write,
                execute,
                memory: if device {
                    MemoryKind::Device
                } else {
                    MemoryKind::Normal
                },
            },
        )
    }

    fn operation() -> impl Strategy<Value = Operation> {
        let small_map = (
            0..WINDOW / PAGE_SIZE,
            1u64..1100,
            0u64..(1 << 24),
            attributes(),
        )
            .prop_map(|(page, pages, output_page, attributes)| {
                let start = page * PAGE_SIZE;
                let size = (pages * PAGE_SIZE).min(WINDOW - start);
                Operation::Map {
                    start,
                    size,
                    output: output_page * PAGE_SIZE,
                    attributes,
                }
            });
        // 2 MiB aligned, 1..=600 blocks' worth, with the PA 2 MiB aligned or not.
        let block_map = (
            0..WINDOW / (2 * MIB),
            1u64..600,
            0u64..(1 << 14),
            any::<bool>(),
            attributes(),
        )
            .prop_map(|(block, blocks, output_block, misalign, attributes)| {
                let start = block * 2 * MIB;
                // A misaligned PA means pages: keep those small so tables fit the pool.
                let blocks = if misalign { blocks % 8 + 1 } else { blocks };
                let size = (blocks * 2 * MIB).min(WINDOW - start);
                let output = output_block * 2 * MIB + if misalign { PAGE_SIZE } else { 0 };
                Operation::Map {
                    start,
                    size,
                    output,
                    attributes,
                }
            });
        let gib_map = (0..4u64, 1u64..=2, 0u64..64, attributes()).prop_map(
            |(gib, gibs, output_gib, attributes)| {
                let start = gib * GIB;
                let size = (gibs * GIB).min(WINDOW - start);
                Operation::Map {
                    start,
                    size,
                    output: output_gib * GIB,
                    attributes,
                }
            },
        );
        let unmap = (0..WINDOW / PAGE_SIZE, 1u64..(1 << 19)).prop_map(|(page, pages)| {
            let start = page * PAGE_SIZE;
            let size = (pages * PAGE_SIZE).min(WINDOW - start);
            Operation::Unmap { start, size }
        });
        let small_unmap = (0..WINDOW / PAGE_SIZE, 1u64..64).prop_map(|(page, pages)| {
            let start = page * PAGE_SIZE;
            let size = (pages * PAGE_SIZE).min(WINDOW - start);
            Operation::Unmap { start, size }
        });
        prop_oneof![small_map, block_map, gib_map, unmap, small_unmap]
    }

    fn check(
        stage2: &Stage2<CountingBarrier>,
        model: &Model,
        points: &[u64],
    ) -> Result<(), TestCaseError> {
        for &point in points {
            prop_assert_eq!(
                stage2.translate(ipa(point)),
                model_lookup(model, point),
                "at {:#x}",
                point
            );
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        #[test]
        fn stage2_agrees_with_a_model(operations in proptest::collection::vec(operation(), 1..24)) {
            let region = claim_region();
            let mut allocator = region.allocator();
            let initial = allocator.free_bytes();
            let mut stage2 = counted(&mut allocator);
            let mut model = Model::new();
            for operation in operations {
                let invalidations = stage2.barrier().invalidations.get();
                match operation {
                    Operation::Map { start, size, output, attributes } => {
                        let result = stage2.map(ipa(start), pa(output), size, attributes, &mut allocator);
                        if model_overlaps(&model, start, size) {
                            prop_assert_eq!(result, Err(MapError::AlreadyMapped));
                        } else {
                            prop_assert_eq!(result, Ok(()));
                            model.insert(start, (size, output, attributes));
                        }
                        prop_assert_eq!(stage2.barrier().invalidations.get(), invalidations);
                        check(&stage2, &model, &probe_points(start, size))?;
                    }
                    Operation::Unmap { start, size } => {
                        stage2.unmap(ipa(start), size, &mut allocator).unwrap();
                        model_unmap(&mut model, start, size);
                        prop_assert_eq!(stage2.barrier().invalidations.get(), invalidations + 1);
                        check(&stage2, &model, &probe_points(start, size))?;
                    }
                }
                // Every extent still mapped is intact at its edges and inside.
                for (&start, &(size, _, _)) in model.iter() {
                    let points = [start, start + size - PAGE_SIZE, start + (size / PAGE_SIZE / 2) * PAGE_SIZE + 8];
                    check(&stage2, &model, &points)?;
                }
            }
            // Unmapping everything frees every table below the root.
            stage2.unmap(ipa(0), WINDOW, &mut allocator).unwrap();
            prop_assert_eq!(stage2.table_pages(), 1);
            for (&start, _) in model.iter() {
                prop_assert_eq!(stage2.translate(ipa(start)), None);
            }
            stage2.destroy(&mut allocator);
            prop_assert_eq!(allocator.free_bytes(), initial);
        }

        #[test]
        fn map_then_unmap_restores_the_previous_state(
            base in proptest::collection::vec(operation(), 0..8),
            start_page in 0..WINDOW / PAGE_SIZE,
            pages in 1u64..2048,
            output_page in 0u64..(1 << 24),
            attributes in attributes(),
        ) {
            let region = claim_region();
            let mut allocator = region.allocator();
            let mut stage2 = counted(&mut allocator);
            let mut model = Model::new();
            for operation in base {
                if let Operation::Map { start, size, output, attributes } = operation {
                    if !model_overlaps(&model, start, size) {
                        stage2.map(ipa(start), pa(output), size, attributes, &mut allocator).unwrap();
                        model.insert(start, (size, output, attributes));
                    }
                }
            }
            let start = start_page * PAGE_SIZE;
            let size = (pages * PAGE_SIZE).min(WINDOW - start);
            prop_assume!(!model_overlaps(&model, start, size));
            let pages_before = stage2.table_pages();
            let free_before = allocator.free_bytes();
            stage2.map(ipa(start), pa(output_page * PAGE_SIZE), size, attributes, &mut allocator).unwrap();
            for point in probe_points(start, size).into_iter().filter(|&point| point >= start && point < start + size) {
                prop_assert_eq!(
                    stage2.translate(ipa(point)),
                    Some((pa(output_page * PAGE_SIZE + (point & !0xFFF) - start + (point & 0xFFF)), attributes))
                );
            }
            stage2.unmap(ipa(start), size, &mut allocator).unwrap();
            prop_assert_eq!(stage2.table_pages(), pages_before);
            prop_assert_eq!(allocator.free_bytes(), free_before);
            check(&stage2, &model, &probe_points(start, size))?;
        }
    }

    /// The IPA window of the page-by-page property below: 24 MiB, with blocks at its
    /// 2 MiB boundaries, placed across a 1 GiB boundary so that level-1 tables split too.
    const PAGE_WINDOW_BASE: u64 = GIB - 8 * MIB;
    const PAGE_WINDOW_PAGES: u64 = 24 * MIB / PAGE_SIZE;

    /// One request of the page-by-page property: map or unmap `pages` pages at window
    /// page `page` (rounded to 2 MiB when `block_aligned`, so blocks are used).
    #[derive(Clone, Debug)]
    struct PageRequest {
        unmap: bool,
        page: u64,
        pages: u64,
        block_aligned: bool,
        output_page: u64,
        attributes: Stage2Attributes,
    }

    fn page_request() -> impl Strategy<Value = PageRequest> {
        (
            any::<bool>(),
            0..PAGE_WINDOW_PAGES,
            1u64..1600,
            any::<bool>(),
            0u64..(1 << 20),
            attributes(),
        )
            .prop_map(
                |(unmap, page, pages, block_aligned, output_page, attributes)| PageRequest {
                    unmap,
                    page,
                    pages,
                    block_aligned,
                    output_page,
                    attributes,
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Every page of the window translates exactly as a page-granular model says after
        /// each request (what is mapped is exactly what was asked, to the asked frame, with
        /// the asked permissions and memory type, offsets kept); a refused request changes
        /// nothing; unmapping everything gives back every table page.
        #[test]
        fn every_page_translates_as_asked(requests in proptest::collection::vec(page_request(), 1..14)) {
            let region = claim_region();
            let mut allocator = region.allocator();
            let initial = allocator.free_bytes();
            let mut stage2 = counted(&mut allocator);
            // window page -> (PA page, attributes)
            let mut model: BTreeMap<u64, (u64, Stage2Attributes)> = BTreeMap::new();
            for request in requests {
                let blocks = 2 * MIB / PAGE_SIZE;
                let (page, output_page) = if request.block_aligned {
                    (request.page / blocks * blocks, request.output_page / blocks * blocks)
                } else {
                    (request.page, request.output_page)
                };
                let pages = request.pages.min(PAGE_WINDOW_PAGES - page);
                let start = PAGE_WINDOW_BASE + page * PAGE_SIZE;
                let size = pages * PAGE_SIZE;
                if request.unmap {
                    prop_assert_eq!(stage2.unmap(ipa(start), size, &mut allocator), Ok(()));
                    for index in page..page + pages {
                        model.remove(&index);
                    }
                } else {
                    let result = stage2.map(
                        ipa(start),
                        pa(output_page * PAGE_SIZE),
                        size,
                        request.attributes,
                        &mut allocator,
                    );
                    if (page..page + pages).any(|index| model.contains_key(&index)) {
                        prop_assert_eq!(result, Err(MapError::AlreadyMapped));
                    } else {
                        prop_assert_eq!(result, Ok(()));
                        for index in 0..pages {
                            model.insert(page + index, (output_page + index, request.attributes));
                        }
                    }
                }
                for index in 0..PAGE_WINDOW_PAGES {
                    let offset = (index * 8) % PAGE_SIZE;
                    let address = PAGE_WINDOW_BASE + index * PAGE_SIZE + offset;
                    let expected = model
                        .get(&index)
                        .map(|&(frame, attributes)| (pa(frame * PAGE_SIZE + offset), attributes));
                    prop_assert_eq!(stage2.translate(ipa(address)), expected, "at {:#x}", address);
                }
                // Nothing leaks outside the window.
                prop_assert_eq!(stage2.translate(ipa(PAGE_WINDOW_BASE - PAGE_SIZE)), None);
                prop_assert_eq!(
                    stage2.translate(ipa(PAGE_WINDOW_BASE + PAGE_WINDOW_PAGES * PAGE_SIZE)),
                    None
                );
            }
            stage2.unmap(ipa(PAGE_WINDOW_BASE), PAGE_WINDOW_PAGES * PAGE_SIZE, &mut allocator).unwrap();
            prop_assert_eq!(stage2.table_pages(), 1);
            stage2.destroy(&mut allocator);
            prop_assert_eq!(allocator.free_bytes(), initial);
        }

        /// The builder's bounds: input beyond the IPA size, output beyond 48-bit physical
        /// addresses, misalignment and empty ranges are refused and change nothing.
        #[test]
        fn out_of_range_requests_change_nothing(
            ipa_bits in 32u32..=39,
            start in any::<u64>(),
            output in any::<u64>(),
            size in any::<u64>(),
        ) {
            let region = claim_region();
            let mut allocator = region.allocator();
            let mut stage2 = Stage2::with_barrier(7, ipa_bits, &mut allocator, CountingBarrier::default()).unwrap();
            // Something mapped already, which must stay as it is.
            stage2.map(ipa(0), pa(0x8000_0000), 2 * MIB, Stage2Attributes::RAM, &mut allocator).unwrap();
            let pages_before = stage2.table_pages();
            let free_before = allocator.free_bytes();
            let start = start & !0xfff;
            let output = output & !0xfff;
            let size = size % (4 * GIB);
            let input_ok = size != 0
                && size.is_multiple_of(PAGE_SIZE)
                && start.checked_add(size).is_some_and(|end| end <= 1 << ipa_bits);
            let output_ok = output.checked_add(size).is_some_and(|end| end <= 1 << 48);
            let overlaps = start < 2 * MIB;
            let result = stage2.map(ipa(start), pa(output), size, READ_ONLY_DATA, &mut allocator);
            if input_ok && output_ok && !overlaps {
                // Allowed requests are big: the pool may run out, which undoes the call.
                prop_assert!(matches!(result, Ok(()) | Err(MapError::Allocation(_))));
                if result.is_ok() {
                    prop_assert_eq!(stage2.translate(ipa(start)), Some((pa(output), READ_ONLY_DATA)));
                    stage2.unmap(ipa(start), size, &mut allocator).unwrap();
                }
            } else {
                prop_assert!(result.is_err());
                prop_assert!(!matches!(result, Err(MapError::Allocation(_))));
            }
            prop_assert_eq!(stage2.table_pages(), pages_before);
            prop_assert_eq!(allocator.free_bytes(), free_before);
            prop_assert_eq!(stage2.translate(ipa(0x1234)), Some((pa(0x8000_1234), Stage2Attributes::RAM)));
            if !input_ok || !output_ok || overlaps {
                prop_assert_eq!(
                    stage2.translate(ipa(start)),
                    if start < 2 * MIB { Some((pa(0x8000_0000 + start), Stage2Attributes::RAM)) } else { None }
                );
            }
        }
    }
}
