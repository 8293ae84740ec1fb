//! Address types: physical, intermediate-physical (guest "physical") and guest-virtual
//! addresses are distinct types, so one can never be passed where another is meant.

use core::fmt;

/// Size of a translation granule and of the pages the hypervisor hands out.
pub const PAGE_SIZE: u64 = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

macro_rules! address_type {
    ($(#[$meta:meta])* $name:ident, $short:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(u64);

        impl $name {
            /// Wraps a raw address.
            pub const fn new(raw: u64) -> Self {
                Self(raw)
            }
            /// The raw address.
            pub const fn raw(self) -> u64 {
                self.0
            }
            /// The address `offset` bytes further on, or `None` on overflow.
            pub const fn checked_add(self, offset: u64) -> Option<Self> {
                match self.0.checked_add(offset) {
                    Some(raw) => Some(Self(raw)),
                    None => None,
                }
            }
            /// The address `offset` bytes further on; the caller has bounded `offset`.
            pub const fn add(self, offset: u64) -> Self {
                Self(self.0.wrapping_add(offset))
            }
            /// Bytes from `base` up to this address (`None` if below `base`).
            pub const fn offset_from(self, base: Self) -> Option<u64> {
                self.0.checked_sub(base.0)
            }
            /// The start of the page holding this address.
            pub const fn page_base(self) -> Self {
                Self(self.0 & !(PAGE_SIZE - 1))
            }
            /// The offset of this address inside its page.
            pub const fn page_offset(self) -> u64 {
                self.0 & (PAGE_SIZE - 1)
            }
            /// Whether the address is a multiple of `align` (a power of two).
            pub const fn is_aligned(self, align: u64) -> bool {
                self.0 & (align - 1) == 0
            }
            /// The page frame number (address >> 12).
            pub const fn frame_number(self) -> u64 {
                self.0 >> PAGE_SHIFT
            }
            /// The address of page frame `frame`, or `None` if it does not fit 64 bits.
            pub const fn from_frame_number(frame: u64) -> Option<Self> {
                if frame > (u64::MAX >> PAGE_SHIFT) {
                    None
                } else {
                    Some(Self(frame << PAGE_SHIFT))
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(formatter, concat!($short, ":{:#x}"), self.0)
            }
        }

        #[cfg(target_os = "none")]
        impl defmt::Format for $name {
            fn format(&self, formatter: defmt::Formatter) {
                defmt::write!(formatter, "{=str}:{=u64:#x}", $short, self.0)
            }
        }
    };
}

address_type!(
    /// A physical address, as the hypervisor's own MMU and devices see it.
    PhysAddr,
    "pa"
);
address_type!(
    /// An intermediate physical address: what a guest believes is physical, translated
    /// to a [`PhysAddr`] by the domain's stage-2 tables.
    IntermediatePhysAddr,
    "ipa"
);
address_type!(
    /// A guest virtual address, translated by the guest's own stage-1 tables into an
    /// [`IntermediatePhysAddr`]. Hypercall pointer arguments are of this kind.
    GuestVirtAddr,
    "gva"
);

/// A half-open range `[start, start + size)` of addresses of one kind.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct AddrRange<A> {
    /// First address in the range.
    pub start: A,
    /// Length in bytes.
    pub size: u64,
}

impl<A> AddrRange<A> {
    /// A range from `start` of `size` bytes.
    pub const fn new(start: A, size: u64) -> Self {
        Self { start, size }
    }
}

macro_rules! range_methods {
    ($name:ident) => {
        impl AddrRange<$name> {
            /// One past the last address, or `None` if the range wraps.
            pub const fn end(&self) -> Option<$name> {
                self.start.checked_add(self.size)
            }
            /// Whether `address` lies inside.
            pub fn contains(&self, address: $name) -> bool {
                match address.offset_from(self.start) {
                    Some(offset) => offset < self.size,
                    None => false,
                }
            }
            /// Whether `[address, address + len)` lies wholly inside.
            pub fn contains_range(&self, address: $name, len: u64) -> bool {
                match address.offset_from(self.start) {
                    Some(offset) => offset <= self.size && len <= self.size - offset,
                    None => false,
                }
            }
            /// Whether the two ranges share at least one address.
            pub fn overlaps(&self, other: &Self) -> bool {
                let self_end = self.start.raw() as u128 + self.size as u128;
                let other_end = other.start.raw() as u128 + other.size as u128;
                self.size != 0
                    && other.size != 0
                    && (self.start.raw() as u128) < other_end
                    && (other.start.raw() as u128) < self_end
            }
        }
    };
}
range_methods!(PhysAddr);
range_methods!(IntermediatePhysAddr);
range_methods!(GuestVirtAddr);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_arithmetic() {
        let address = PhysAddr::new(0x4000_1234);
        assert_eq!(address.page_base(), PhysAddr::new(0x4000_1000));
        assert_eq!(address.page_offset(), 0x234);
        assert_eq!(address.frame_number(), 0x40001);
        assert_eq!(
            PhysAddr::from_frame_number(0x40001),
            Some(PhysAddr::new(0x4000_1000))
        );
        assert_eq!(PhysAddr::from_frame_number(u64::MAX), None);
        assert!(!address.is_aligned(8));
        assert_eq!(PhysAddr::new(u64::MAX).checked_add(1), None);
    }

    #[test]
    fn ranges() {
        let range = AddrRange::new(IntermediatePhysAddr::new(0x1000), 0x2000);
        assert!(range.contains(IntermediatePhysAddr::new(0x1000)));
        assert!(range.contains(IntermediatePhysAddr::new(0x2fff)));
        assert!(!range.contains(IntermediatePhysAddr::new(0x3000)));
        assert!(!range.contains(IntermediatePhysAddr::new(0xfff)));
        assert!(range.contains_range(IntermediatePhysAddr::new(0x2000), 0x1000));
        assert!(!range.contains_range(IntermediatePhysAddr::new(0x2000), 0x1001));
        assert!(!range.contains_range(IntermediatePhysAddr::new(0x2000), u64::MAX));
        let other = AddrRange::new(IntermediatePhysAddr::new(0x2fff), 1);
        assert!(range.overlaps(&other));
        let after = AddrRange::new(IntermediatePhysAddr::new(0x3000), 1);
        assert!(!range.overlaps(&after));
        let huge = AddrRange::new(IntermediatePhysAddr::new(u64::MAX), u64::MAX);
        assert_eq!(huge.end(), None);
    }
}
