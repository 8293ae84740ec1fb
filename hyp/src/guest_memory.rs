//! The one checked path between the hypervisor and guest memory.
//!
//! Hypercall pointers are guest virtual addresses. Each page of an access is translated
//! through the calling vCPU's stage-1 and its domain's stage-2 (by the MMU itself, with
//! `AT S12E1R/W`), then checked: the result must be Normal memory inside what the domain
//! owns. Any failure is `EFAULT` for that call, never a hypervisor fault. Nothing else in
//! the hypervisor dereferences a guest-supplied address.

use crate::addr::{AddrRange, GuestVirtAddr, PhysAddr, PAGE_SIZE};
use crate::arch;
use core::mem::MaybeUninit;
use hypercall_abi::errno::Errno;

/// Whether a MAIR-format attribute byte (as PAR_EL1 reports the guest's view of memory) is
/// write-back or write-through cacheable in both the inner and the outer domain.
pub const fn attributes_cacheable(attributes: u8) -> bool {
    const fn half_cacheable(half: u8) -> bool {
        // 0b00xx is Device (as a whole byte), 0b0100 Normal non-cacheable.
        half & 0b1100 != 0 && half != 0b0100
    }
    half_cacheable(attributes >> 4) && half_cacheable(attributes & 0xf)
}

/// Plain old data: every bit pattern is a valid value and there is no padding that could
/// leak hypervisor memory when copied out.
///
/// # Safety
/// Implement only for `#[repr(C)]` types made of integers (and arrays of them) without
/// padding bytes.
pub unsafe trait Pod: Copy + Default {}

/// What a guest access may touch: the domain's own RAM.
pub struct GuestMemory<'a> {
    owned: &'a [AddrRange<PhysAddr>],
}

impl<'a> GuestMemory<'a> {
    /// Accesses limited to the given physical ranges (the domain's RAM).
    pub fn new(owned: &'a [AddrRange<PhysAddr>]) -> Self {
        Self { owned }
    }

    fn translate_chunk(
        &self,
        address: GuestVirtAddr,
        length: u64,
        write: bool,
    ) -> Result<arch::Translation, Errno> {
        let translation = arch::translate_guest_address(address, write).ok_or(Errno::EFAULT)?;
        let physical = translation.address;
        if self
            .owned
            .iter()
            .any(|range| range.contains_range(physical, length))
        {
            Ok(translation)
        } else {
            Err(Errno::EFAULT)
        }
    }

    /// Walks `[address, address + length)` page by page, handing each checked piece to
    /// `step` with its offset into the access.
    fn for_each_chunk(
        &self,
        address: GuestVirtAddr,
        length: usize,
        write: bool,
        mut step: impl FnMut(arch::Translation, usize, usize),
    ) -> Result<(), Errno> {
        let length = length as u64;
        // The whole range must exist in the address space before anything is touched.
        address.checked_add(length).ok_or(Errno::EFAULT)?;
        let mut done = 0u64;
        while done < length {
            let here = address.add(done);
            let chunk = (PAGE_SIZE - here.page_offset()).min(length - done);
            let translation = self.translate_chunk(here, chunk, write)?;
            step(translation, done as usize, chunk as usize);
            done += chunk;
        }
        Ok(())
    }

    /// Checks that `length` bytes at `address` can be read, touching nothing.
    pub fn check_readable(&self, address: GuestVirtAddr, length: usize) -> Result<(), Errno> {
        self.for_each_chunk(address, length, false, |_, _, _| {})
    }

    /// Copies guest memory at `address` into `buffer`.
    pub fn read(&self, address: GuestVirtAddr, buffer: &mut [u8]) -> Result<(), Errno> {
        // SAFETY: `buffer` is valid for writes of its length, and a hypervisor buffer
        // never overlaps guest memory.
        unsafe { self.copy_in(address, buffer.as_mut_ptr(), buffer.len()) }
    }

    /// Copies `buffer.len()` bytes of guest memory at `address` into `buffer`, which need
    /// not be initialised, and returns them: a buffer about to be overwritten is not
    /// zeroed first (128 bytes of console text cost a `memset` as long as the copy).
    pub fn read_uninit<'buffer>(
        &self,
        address: GuestVirtAddr,
        buffer: &'buffer mut [MaybeUninit<u8>],
    ) -> Result<&'buffer [u8], Errno> {
        let length = buffer.len();
        // SAFETY: as in `read`.
        unsafe { self.copy_in(address, buffer.as_mut_ptr().cast::<u8>(), length)? };
        // SAFETY: `copy_in` succeeded, so it wrote every one of the `length` bytes.
        Ok(unsafe { core::slice::from_raw_parts(buffer.as_ptr().cast::<u8>(), length) })
    }

    /// The copy behind [`GuestMemory::read`] and [`GuestMemory::read_uninit`]: on success
    /// every byte of `destination..+length` has been written.
    ///
    /// # Safety
    ///
    /// `destination` must be valid for writes of `length` bytes and must not overlap
    /// guest memory.
    // Out of line: inlined into `read_value`, its page loop would cost that function's
    // one-load fast path a larger prologue (+8 instructions per hypercall argument).
    #[inline(never)]
    unsafe fn copy_in(
        &self,
        address: GuestVirtAddr,
        destination: *mut u8,
        length: usize,
    ) -> Result<(), Errno> {
        self.for_each_chunk(address, length, false, |translation, offset, chunk| {
            let physical = translation.address;
            if !translation.cacheable {
                arch::clean_invalidate_data_cache(physical, chunk as u64);
            }
            // SAFETY: `physical..+chunk` was just checked to be RAM owned by the domain,
            // which the hypervisor maps; the pieces `for_each_chunk` hands out tile
            // `0..length`, within `destination`'s extent, which the caller vouches for.
            unsafe {
                core::ptr::copy_nonoverlapping(
                    arch::phys_to_virt(physical),
                    destination.add(offset),
                    chunk,
                )
            };
        })
    }

    /// Copies `data` into guest memory at `address`. Translation is checked for every page
    /// before the first byte is written, so a failing copy leaves guest memory untouched.
    pub fn write(&self, address: GuestVirtAddr, data: &[u8]) -> Result<(), Errno> {
        self.for_each_chunk(address, data.len(), true, |_, _, _| {})?;
        self.for_each_chunk(address, data.len(), true, |translation, offset, chunk| {
            let physical = translation.address;
            if let Some(source) = data.get(offset..offset + chunk) {
                // SAFETY: as in `read`, with write permission checked at both stages.
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        source.as_ptr(),
                        arch::phys_to_virt(physical),
                        chunk,
                    )
                };
            }
            if !translation.cacheable {
                arch::clean_invalidate_data_cache(physical, chunk as u64);
            }
        })
    }

    /// Reads a plain-data value from guest memory.
    pub fn read_value<T: Pod>(&self, address: GuestVirtAddr) -> Result<T, Errno> {
        let size = core::mem::size_of::<T>() as u64;
        // An aligned value within one page (nearly every hypercall argument): one
        // translation and a load of its size, not the page loop and a call to `memcpy`.
        if size <= PAGE_SIZE - address.page_offset() {
            let translation = self.translate_chunk(address, size, false)?;
            let source = arch::phys_to_virt(translation.address).cast::<T>();
            if source.is_aligned() {
                if !translation.cacheable {
                    arch::clean_invalidate_data_cache(translation.address, size);
                }
                // SAFETY: `physical..+size` was just checked to be RAM owned by the
                // domain, which the hypervisor maps; the pointer is aligned for T, and T
                // is Pod: any bytes form a valid value.
                return Ok(unsafe { source.read_volatile() });
            }
        }
        let mut value = T::default();
        // SAFETY: T is Pod: any bytes form a valid value, and the slice covers exactly it.
        let bytes = unsafe {
            core::slice::from_raw_parts_mut(
                (&mut value as *mut T).cast::<u8>(),
                core::mem::size_of::<T>(),
            )
        };
        self.read(address, bytes)?;
        Ok(value)
    }

    /// Writes a plain-data value to guest memory.
    pub fn write_value<T: Pod>(&self, address: GuestVirtAddr, value: &T) -> Result<(), Errno> {
        // SAFETY: T is Pod without padding, so all its bytes are initialised.
        let bytes = unsafe {
            core::slice::from_raw_parts((value as *const T).cast::<u8>(), core::mem::size_of::<T>())
        };
        self.write(address, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::fake;

    const RAM: u64 = fake::FAKE_RAM_BASE + 0x0100_0000;

    #[test]
    fn cacheability_of_attribute_bytes() {
        assert!(attributes_cacheable(0xff)); // Normal write-back, read/write allocate
        assert!(attributes_cacheable(0xbb)); // write-through
        assert!(!attributes_cacheable(0x44)); // Normal non-cacheable
        assert!(!attributes_cacheable(0x00)); // Device-nGnRnE (guest MMU off)
        assert!(!attributes_cacheable(0x04)); // Device-nGnRE
        assert!(!attributes_cacheable(0xf4)); // inner non-cacheable
    }

    /// Guest VA 0x1000.. maps to RAM + 0x2000.., two pages; 0x3000 maps outside RAM;
    /// 0x4000 is read-only; 0x5000 the guest sees uncached.
    const TRANSLATION: [(u64, u64, bool, bool); 5] = [
        (0x1000, RAM + 0x2000, true, false),
        (0x2000, RAM + 0x3000, true, false),
        (0x3000, RAM + 0x4000, true, false),
        (0x4000, RAM, false, false),
        (0x5000, RAM + 0x1000, true, true),
    ];

    fn owned() -> [AddrRange<PhysAddr>; 1] {
        [AddrRange::new(PhysAddr::new(RAM), 0x4000)]
    }

    #[test]
    fn copies_across_pages_and_refuses_what_is_not_owned() {
        let _guard = fake::guest_translation_lock();
        fake::set_guest_translation(&TRANSLATION);
        let ranges = owned();
        let memory = GuestMemory::new(&ranges);
        let data: [u8; 300] = core::array::from_fn(|index| index as u8);
        memory.write(GuestVirtAddr::new(0x1f00), &data).unwrap();
        let mut back = [0u8; 300];
        memory.read(GuestVirtAddr::new(0x1f00), &mut back).unwrap();
        assert_eq!(back, data);

        // Straddling into a page outside the domain: refused, nothing written.
        let before = {
            let mut bytes = [0u8; 16];
            memory.read(GuestVirtAddr::new(0x2ff0), &mut bytes).unwrap();
            bytes
        };
        assert_eq!(
            memory.write(GuestVirtAddr::new(0x2ff0), &[0xaa; 32]),
            Err(Errno::EFAULT)
        );
        let mut after = [0u8; 16];
        memory.read(GuestVirtAddr::new(0x2ff0), &mut after).unwrap();
        assert_eq!(before, after);

        // Unmapped, read-only for writes, wrapping ranges.
        assert_eq!(
            memory.read(GuestVirtAddr::new(0x9000), &mut [0; 1]),
            Err(Errno::EFAULT)
        );
        assert_eq!(
            memory.write(GuestVirtAddr::new(0x4000), &[1]),
            Err(Errno::EFAULT)
        );
        assert!(memory.read(GuestVirtAddr::new(0x4000), &mut [0; 1]).is_ok());
        // Memory the guest sees uncached (its MMU is off) is accessed, with cache
        // maintenance around each piece.
        let before = fake::cache_maintenance_count();
        memory.write(GuestVirtAddr::new(0x5000), &[7, 8]).unwrap();
        let mut uncached = [0u8; 2];
        memory
            .read(GuestVirtAddr::new(0x5000), &mut uncached)
            .unwrap();
        assert_eq!(uncached, [7, 8]);
        assert!(fake::cache_maintenance_count() >= before + 2);
        assert_eq!(
            memory.read(GuestVirtAddr::new(u64::MAX - 1), &mut [0; 4]),
            Err(Errno::EFAULT)
        );
        // An empty access touches nothing and succeeds.
        assert_eq!(
            memory.read(GuestVirtAddr::new(0xdead_0000), &mut []),
            Ok(())
        );
    }

    #[test]
    fn a_read_into_an_uninitialised_buffer_reads_as_read_does() {
        let _guard = fake::guest_translation_lock();
        fake::set_guest_translation(&TRANSLATION);
        let ranges = owned();
        let memory = GuestMemory::new(&ranges);
        let data: [u8; 0x2000] = core::array::from_fn(|index| (index * 3) as u8);
        memory.write(GuestVirtAddr::new(0x1000), &data).unwrap();
        for (offset, length) in [(0usize, 1usize), (0xff0, 0x20), (0x7, 128), (0x1f80, 128)] {
            let mut buffer = [MaybeUninit::<u8>::uninit(); 128];
            let address = GuestVirtAddr::new(0x1000 + offset as u64);
            let text = memory.read_uninit(address, &mut buffer[..length]).unwrap();
            assert_eq!(text, &data[offset..offset + length]);
        }
        // Running into a page the domain does not own: refused, as `read` refuses it.
        let mut buffer = [MaybeUninit::<u8>::uninit(); 16];
        let address = GuestVirtAddr::new(0x3ff8);
        assert_eq!(memory.read_uninit(address, &mut buffer), Err(Errno::EFAULT));
        assert_eq!(memory.read(address, &mut [0u8; 16]), Err(Errno::EFAULT));
    }

    #[test]
    fn values_read_alike_within_a_page_misaligned_or_across_pages() {
        let _guard = fake::guest_translation_lock();
        fake::set_guest_translation(&TRANSLATION);
        let ranges = owned();
        let memory = GuestMemory::new(&ranges);
        let data: [u8; 0x2000] = core::array::from_fn(|index| (index * 7) as u8);
        memory.write(GuestVirtAddr::new(0x1000), &data).unwrap();
        for offset in [0x0u64, 0x8, 0x3, 0xffc, 0xffe, 0xff8, 0x1ff8] {
            let address = GuestVirtAddr::new(0x1000 + offset);
            let start = offset as usize;
            let mut word = [0u8; 4];
            word.copy_from_slice(&data[start..start + 4]);
            assert_eq!(
                memory.read_value::<u32>(address),
                Ok(u32::from_ne_bytes(word))
            );
            let mut double = [0u8; 8];
            double.copy_from_slice(&data[start..start + 8]);
            assert_eq!(
                memory.read_value::<u64>(address),
                Ok(u64::from_ne_bytes(double))
            );
        }
        // Running into a page the domain does not own, or not mapped at all: refused.
        assert_eq!(
            memory.read_value::<u64>(GuestVirtAddr::new(0x3ffc)),
            Err(Errno::EFAULT)
        );
        assert_eq!(
            memory.read_value::<u32>(GuestVirtAddr::new(0x9000)),
            Err(Errno::EFAULT)
        );
        // Uncached in the guest's view: read with cache maintenance.
        memory
            .write_value(GuestVirtAddr::new(0x5010), &0x1234_5678u32)
            .unwrap();
        let before = fake::cache_maintenance_count();
        assert_eq!(
            memory.read_value::<u32>(GuestVirtAddr::new(0x5010)),
            Ok(0x1234_5678)
        );
        assert!(fake::cache_maintenance_count() > before);
    }
}
