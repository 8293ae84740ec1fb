//! Host property tests of stage-2 isolation as domains are built: whatever the domains'
//! sizes, vCPUs and GIC, each domain's stage 2 maps its RAM one to one onto its own
//! frames, its console ring, and nothing else: never another domain's RAM, never memory
//! the frame pool holds back (the hypervisor's image and the firmware's reservations
//! stand-in here), never a table page.

extern crate std;

use crate::addr::{AddrRange, IntermediatePhysAddr, PhysAddr, PAGE_SIZE};
use crate::arch::fake;
use crate::bootpack::DomainImage;
use crate::cpu::CpuState;
use crate::domain_dt::{layout, GuestGic};
use crate::hypervisor::{DomainSchedule, Hypervisor, Next};
use crate::mm::frames::FrameAllocator;
use crate::mm::{MemoryKind, Stage2Attributes};
use proptest::prelude::*;
use std::vec::Vec;

/// The frame pool of these tests (the region `hypervisor_tests` uses, under the same lock).
const POOL_BASE: u64 = fake::FAKE_RAM_BASE + 0x0400_0000;
const POOL_SIZE: u64 = 0x0400_0000;
const MIB: u64 = 1024 * 1024;

fn image() -> Vec<u8> {
    let mut image = std::vec![0u8; 4096];
    image[16..24].copy_from_slice(&4096u64.to_le_bytes()); // image_size
    image[24..32].copy_from_slice(&0xau64.to_le_bytes());
    image[56..60].copy_from_slice(b"ARM\x64");
    image
}

/// The IPAs checked page by page: everything below RAM that the layout uses (GIC frames,
/// grant-table hole, magic pages), RAM and the 2 MiB above it.
fn dense_ranges(memory: u64) -> [(u64, u64); 4] {
    [
        (0, 0x0400_0000),
        (layout::GNTTAB_BASE, layout::GNTTAB_SIZE),
        (layout::MAGIC_BASE, layout::MAGIC_SIZE),
        (layout::RAM_BASE, memory + 2 * MIB),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]
    #[test]
    fn domains_map_only_their_own_frames(
        sizes in proptest::collection::vec((5u32..=10, 1u32..=3), 1..=3),
        gic_v3 in any::<bool>(),
        reserved_mib in 0u64..32,
    ) {
        let _guard = fake::guest_translation_lock();
        let pool = [AddrRange::new(PhysAddr::new(POOL_BASE), POOL_SIZE)];
        // Stand-in for the hypervisor's image: held back from the pool.
        let reserved = AddrRange::new(PhysAddr::new(POOL_BASE + reserved_mib * MIB), MIB);
        let frames = FrameAllocator::new(&pool, &[reserved]).unwrap();
        let mut hypervisor = Hypervisor::boxed();
        hypervisor.set_up(frames, true, 1, 1_000_000).unwrap();
        let bytes = image();
        let names = ["one", "two", "three"];
        for (slot, &(memory_mib, vcpus)) in sizes.iter().enumerate() {
            let entry = DomainImage {
                name: names[slot],
                memory_mib,
                vcpus,
                image: &bytes,
                initrd: &[],
                cmdline: "",
            };
            let gic = if gic_v3 { GuestGic::standard_v3(vcpus) } else { GuestGic::standard_v2() };
            hypervisor
                .build_domain(slot, &entry, DomainSchedule::default(), gic, &Default::default())
                .unwrap();
        }
        let domains: Vec<_> = (0..sizes.len()).map(|slot| hypervisor.domain(slot).unwrap()).collect();
        let roots: Vec<PhysAddr> = domains.iter().map(|domain| domain.stage2.root()).collect();
        for (slot, domain) in domains.iter().enumerate() {
            let memory = u64::from(sizes[slot].0) * MIB;
            prop_assert_eq!(domain.ram.size, memory);
            prop_assert!(domain.ram.start.raw() + memory <= reserved.start.raw()
                || domain.ram.start.raw() >= reserved.start.raw() + reserved.size);
            for (other_slot, other) in domains.iter().enumerate() {
                if other_slot != slot {
                    prop_assert!(domain.ram.start.raw() + memory <= other.ram.start.raw()
                        || other.ram.start.raw() + other.ram.size <= domain.ram.start.raw());
                }
            }
            let allowed = |physical: u64| {
                let own_ram = physical >= domain.ram.start.raw()
                    && physical < domain.ram.start.raw() + memory;
                own_ram || physical == domain.console_ring.raw() || physical == domain.shared_info.raw()
            };
            let mut dense = Vec::new();
            for (start, size) in dense_ranges(memory) {
                dense.extend((start..start + size).step_by(PAGE_SIZE as usize));
            }
            // Elsewhere one page per 2 MiB up to 8 GiB, and the top of the IPA space.
            let sparse = (0..8 * 1024 * MIB).step_by(2 * MIB as usize).map(|ipa| ipa + 0x1000)
                .chain([(1 << 39) - PAGE_SIZE, (1 << 32) - PAGE_SIZE]);
            for ipa in dense.into_iter().chain(sparse) {
                let translation = domain.stage2.translate(IntermediatePhysAddr::new(ipa + 0x18));
                let in_ram = ipa >= layout::RAM_BASE && ipa < layout::RAM_BASE + memory;
                if in_ram {
                    let expected = domain.ram.start.add(ipa - layout::RAM_BASE + 0x18);
                    prop_assert_eq!(translation, Some((expected, Stage2Attributes::RAM)), "RAM IPA {:#x}", ipa);
                    continue;
                }
                let Some((physical, attributes)) = translation else { continue };
                let page = physical.raw() & !(PAGE_SIZE - 1);
                prop_assert!(allowed(page), "IPA {:#x} of domain {} maps PA {:#x}", ipa, slot, page);
                prop_assert!(!roots.contains(&PhysAddr::new(page)), "a stage-2 root is mapped");
                prop_assert_eq!(attributes.memory, MemoryKind::Normal);
                prop_assert!(!attributes.execute, "IPA {:#x} outside RAM is executable", ipa);
            }
            // The console ring sits at the first magic page.
            prop_assert_eq!(
                domain.stage2.translate(IntermediatePhysAddr::new(layout::MAGIC_BASE)).map(|(pa, _)| pa),
                Some(domain.console_ring)
            );
        }
        let mut cpu = CpuState::new(0);
        prop_assert_eq!(hypervisor.schedule(&mut cpu), Next::Resume);
    }
}
