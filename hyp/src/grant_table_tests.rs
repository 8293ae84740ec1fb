//! Host tests of grant tables: domains built in fake RAM grant, map, copy and die, and
//! no operation with forged arguments reaches memory that was not granted.

extern crate std;

use super::tests::{hypercall, map_first_page, setup, Setup};
use super::*;
use crate::addr::{IntermediatePhysAddr, PhysAddr, PAGE_SIZE};
use crate::domain_dt::layout;
use crate::grant_table::{self, MAX_MAPPINGS};
use hypercall_abi::errno::Errno;
use hypercall_abi::grant_table_op::{self as gnttab, GrantEntryV1, GTF_READING, GTF_WRITING};
use hypercall_abi::hypercall as number;
use hypercall_abi::shared::DOMID_SELF;

/// Where mappers put grants in these tests (inside the grant hole, past the frames).
const HOST: u64 = layout::GNTTAB_BASE + 0x10_0000;
/// A page of the granter's RAM that it grants.
const GRANTED: u64 = layout::RAM_BASE + 0x30_0000;

fn entry(setup: &Setup, domain: usize, reference: u32) -> &GrantEntryV1 {
    setup
        .hypervisor
        .domain(domain)
        .unwrap()
        .grants
        .entry(reference)
        .unwrap()
}

fn flags(setup: &Setup, domain: usize, reference: u32) -> u16 {
    GrantEntryV1::flags_of(
        entry(setup, domain, reference)
            .header
            .load(core::sync::atomic::Ordering::SeqCst),
    )
}

fn grant(setup: &Setup, granter: usize, reference: u32, grantee: u16, ipa: u64, readonly: bool) {
    entry(setup, granter, reference).grant(grantee, (ipa >> 12) as u32, readonly);
}

fn map_request(granter: u16, reference: u32, host: u64, readonly: bool) -> gnttab::MapGrantRef {
    gnttab::MapGrantRef {
        host_addr: host,
        flags: gnttab::GNTMAP_HOST_MAP | if readonly { gnttab::GNTMAP_READONLY } else { 0 },
        r#ref: reference,
        dom: granter,
        ..Default::default()
    }
}

fn map(setup: &mut Setup, mapper: usize, mut op: gnttab::MapGrantRef) -> gnttab::MapGrantRef {
    let hypervisor = &mut setup.hypervisor;
    grant_table::map(
        &mut hypervisor.domains,
        &mut hypervisor.frames,
        mapper,
        &mut op,
    );
    op
}

fn unmap(setup: &mut Setup, mapper: usize, host: u64, handle: u32) -> i16 {
    let mut op = gnttab::UnmapGrantRef {
        host_addr: host,
        handle,
        ..Default::default()
    };
    let hypervisor = &mut setup.hypervisor;
    grant_table::unmap(
        &mut hypervisor.domains,
        &mut hypervisor.frames,
        mapper,
        &mut op,
    );
    op.status
}

fn copy(setup: &Setup, caller: usize, mut op: gnttab::Copy) -> i16 {
    grant_table::copy(&setup.hypervisor.domains, caller, &mut op);
    op.status
}

fn physical(
    setup: &Setup,
    domain: usize,
    ipa: u64,
) -> Option<(PhysAddr, crate::mm::Stage2Attributes)> {
    setup
        .hypervisor
        .domain(domain)
        .unwrap()
        .stage2
        .translate(IntermediatePhysAddr::new(ipa))
}

fn ram_page(setup: &Setup, domain: usize, ipa: u64) -> PhysAddr {
    let domain = setup.hypervisor.domain(domain).unwrap();
    domain.ram.start.add(ipa - layout::RAM_BASE)
}

fn fill(page: PhysAddr, byte: u8) {
    // SAFETY: a page of a test domain's RAM, in fake RAM.
    unsafe { core::ptr::write_bytes(arch::phys_to_virt(page), byte, PAGE_SIZE as usize) };
}

fn read_byte(address: PhysAddr) -> u8 {
    // SAFETY: inside a test domain's page, in fake RAM.
    unsafe { *arch::phys_to_virt(address) }
}

#[test]
fn a_mapping_shows_the_granted_page_with_the_granted_permission_and_blocks_revocation() {
    let mut setup = setup(&["front", "back"]);
    grant(&setup, 0, 8, 1, GRANTED, true);
    let op = map(&mut setup, 1, map_request(0, 8, HOST, true));
    assert_eq!(op.status, gnttab::GNTST_OKAY);
    let (page, attributes) = physical(&setup, 1, HOST).unwrap();
    assert_eq!(page, ram_page(&setup, 0, GRANTED));
    assert!(attributes.read && !attributes.write && !attributes.execute);
    assert_eq!(
        flags(&setup, 0, 8) & (GTF_READING | GTF_WRITING),
        GTF_READING
    );
    // In use: the granter cannot revoke.
    assert!(!entry(&setup, 0, 8).try_revoke());
    assert_eq!(unmap(&mut setup, 1, HOST, op.handle), gnttab::GNTST_OKAY);
    assert!(physical(&setup, 1, HOST).is_none());
    assert_eq!(flags(&setup, 0, 8) & (GTF_READING | GTF_WRITING), 0);
    assert!(entry(&setup, 0, 8).try_revoke());
    // Revoked: no new mapping.
    let again = map(&mut setup, 1, map_request(0, 8, HOST, true));
    assert_eq!(again.status, gnttab::GNTST_GENERAL_ERROR);
    assert!(physical(&setup, 1, HOST).is_none());
}

#[test]
fn writable_mappings_set_and_clear_both_in_use_bits() {
    let mut setup = setup(&["front", "back"]);
    grant(&setup, 0, 9, 1, GRANTED, false);
    let first = map(&mut setup, 1, map_request(0, 9, HOST, true));
    let second = map(&mut setup, 1, map_request(0, 9, HOST + PAGE_SIZE, false));
    assert_eq!((first.status, second.status), (0, 0));
    assert!(physical(&setup, 1, HOST + PAGE_SIZE).unwrap().1.write);
    assert_eq!(
        flags(&setup, 0, 9) & (GTF_READING | GTF_WRITING),
        GTF_READING | GTF_WRITING
    );
    assert_eq!(unmap(&mut setup, 1, 0, second.handle), gnttab::GNTST_OKAY);
    assert_eq!(
        flags(&setup, 0, 9) & (GTF_READING | GTF_WRITING),
        GTF_READING
    );
    assert_eq!(unmap(&mut setup, 1, HOST, first.handle), gnttab::GNTST_OKAY);
    assert_eq!(flags(&setup, 0, 9) & (GTF_READING | GTF_WRITING), 0);
    // A handle is good once.
    assert_eq!(
        unmap(&mut setup, 1, HOST, first.handle),
        gnttab::GNTST_BAD_HANDLE
    );
}

#[test]
fn forged_maps_are_refused_and_map_nothing() {
    let mut setup = setup(&["front", "back", "thief"]);
    grant(&setup, 0, 8, 1, GRANTED, true);
    grant(&setup, 0, 10, 1, layout::GNTTAB_BASE, false);
    grant(&setup, 0, 11, 1, layout::RAM_BASE + 0x100_0000, false);
    let cases: [(usize, gnttab::MapGrantRef, i16); 12] = [
        // Not offered to the thief.
        (
            2,
            map_request(0, 8, HOST, true),
            gnttab::GNTST_GENERAL_ERROR,
        ),
        // Write through a read-only grant.
        (
            1,
            map_request(0, 8, HOST, false),
            gnttab::GNTST_GENERAL_ERROR,
        ),
        // References past the table, never filled, and huge.
        (1, map_request(0, 512, HOST, true), gnttab::GNTST_BAD_GNTREF),
        (
            1,
            map_request(0, u32::MAX, HOST, true),
            gnttab::GNTST_BAD_GNTREF,
        ),
        (
            1,
            map_request(0, 12, HOST, true),
            gnttab::GNTST_GENERAL_ERROR,
        ),
        // Domains that do not exist, and DOMID_SELF (map names a real domain).
        (1, map_request(7, 8, HOST, true), gnttab::GNTST_BAD_DOMAIN),
        (
            1,
            map_request(0x7ff3, 8, HOST, true),
            gnttab::GNTST_BAD_DOMAIN,
        ),
        (
            1,
            map_request(DOMID_SELF, 8, HOST, true),
            gnttab::GNTST_BAD_DOMAIN,
        ),
        // A granted "frame" outside the granter's RAM: its grant frame, past its RAM.
        (
            1,
            map_request(0, 10, HOST, false),
            gnttab::GNTST_GENERAL_ERROR,
        ),
        (
            1,
            map_request(0, 11, HOST, false),
            gnttab::GNTST_GENERAL_ERROR,
        ),
        // Host addresses: unaligned, in the device window, over RAM.
        (
            1,
            map_request(0, 8, HOST + 8, true),
            gnttab::GNTST_GENERAL_ERROR,
        ),
        (
            1,
            map_request(0, 8, layout::GICD_BASE, true),
            gnttab::GNTST_GENERAL_ERROR,
        ),
    ];
    for (mapper, request, expected) in cases {
        let op = map(&mut setup, mapper, request);
        assert_eq!(op.status, expected, "{request:?} by {mapper}");
        assert_eq!(flags(&setup, 0, 8) & (GTF_READING | GTF_WRITING), 0);
    }
    let over_ram = map(&mut setup, 1, map_request(0, 8, layout::RAM_BASE, true));
    assert_eq!(over_ram.status, gnttab::GNTST_GENERAL_ERROR);
    assert_eq!(
        physical(&setup, 1, layout::RAM_BASE).unwrap().0,
        setup.hypervisor.domain(1).unwrap().ram.start
    );
    let device = map(&mut setup, 1, {
        let mut op = map_request(0, 8, HOST, true);
        op.flags |= gnttab::GNTMAP_DEVICE_MAP;
        op
    });
    assert_eq!(device.status, gnttab::GNTST_GENERAL_ERROR);
    let no_flags = map(&mut setup, 1, {
        let mut op = map_request(0, 8, HOST, true);
        op.flags = 0;
        op
    });
    assert_eq!(no_flags.status, gnttab::GNTST_BAD_GNTREF);
    assert!(physical(&setup, 1, HOST).is_none());
    assert!(physical(&setup, 2, HOST).is_none());
    // Forged handles.
    for handle in [0, 1, MAX_MAPPINGS as u32, u32::MAX] {
        assert_eq!(unmap(&mut setup, 1, HOST, handle), gnttab::GNTST_BAD_HANDLE);
    }
}

#[test]
fn a_second_grantee_cannot_share_an_entry_in_use() {
    let mut setup = setup(&["front", "back", "other"]);
    grant(&setup, 0, 8, 1, GRANTED, false);
    let op = map(&mut setup, 1, map_request(0, 8, HOST, false));
    assert_eq!(op.status, gnttab::GNTST_OKAY);
    // The granter (wrongly) re-points the entry at domain 2 while it is mapped.
    entry(&setup, 0, 8).header.store(
        GrantEntryV1::pack(gnttab::GTF_PERMIT_ACCESS | GTF_READING | GTF_WRITING, 2),
        core::sync::atomic::Ordering::SeqCst,
    );
    let stolen = map(&mut setup, 2, map_request(0, 8, HOST, false));
    assert_eq!(stolen.status, gnttab::GNTST_GENERAL_ERROR);
    assert!(physical(&setup, 2, HOST).is_none());
}

#[test]
fn the_maptrack_has_a_limit() {
    let mut setup = setup(&["front", "back"]);
    grant(&setup, 0, 8, 1, GRANTED, true);
    for index in 0..MAX_MAPPINGS as u64 {
        let op = map(
            &mut setup,
            1,
            map_request(0, 8, HOST + index * PAGE_SIZE, true),
        );
        assert_eq!(op.status, gnttab::GNTST_OKAY);
    }
    let full = map(&mut setup, 1, map_request(0, 8, HOST + 0x10_0000, true));
    assert_eq!(full.status, gnttab::GNTST_NO_SPACE);
}

fn copy_request(
    source: gnttab::CopyPtr,
    dest: gnttab::CopyPtr,
    flags: u16,
    len: u16,
) -> gnttab::Copy {
    gnttab::Copy {
        source,
        dest,
        len,
        flags,
        ..Default::default()
    }
}

fn by_grant(domid: u16, reference: u32, offset: u16) -> gnttab::CopyPtr {
    gnttab::CopyPtr {
        u: u64::from(reference),
        domid,
        offset,
        ..Default::default()
    }
}

fn by_frame(domid: u16, ipa: u64, offset: u16) -> gnttab::CopyPtr {
    gnttab::CopyPtr {
        u: ipa >> 12,
        domid,
        offset,
        ..Default::default()
    }
}

#[test]
fn copy_moves_bytes_between_grants_and_own_frames_only() {
    let setup = setup(&["front", "back", "thief"]);
    let own = layout::RAM_BASE + 0x40_0000;
    fill(ram_page(&setup, 0, GRANTED), 0xab);
    fill(ram_page(&setup, 1, own), 0);
    grant(&setup, 0, 8, 1, GRANTED, true);
    // back copies 16 bytes of front's read-only grant into its own page.
    let status = copy(
        &setup,
        1,
        copy_request(
            by_grant(0, 8, 100),
            by_frame(DOMID_SELF, own, 4),
            gnttab::GNTCOPY_SOURCE_GREF,
            16,
        ),
    );
    assert_eq!(status, gnttab::GNTST_OKAY);
    let target = ram_page(&setup, 1, own);
    assert_eq!(read_byte(target.add(4)), 0xab);
    assert_eq!(read_byte(target.add(19)), 0xab);
    assert_eq!(read_byte(target.add(20)), 0);
    // The in-use bits were held only for the copy.
    assert_eq!(flags(&setup, 0, 8) & (GTF_READING | GTF_WRITING), 0);

    let refused: [(usize, gnttab::Copy, i16); 7] = [
        // Into a read-only grant.
        (
            1,
            copy_request(
                by_frame(DOMID_SELF, own, 0),
                by_grant(0, 8, 0),
                gnttab::GNTCOPY_DEST_GREF,
                1,
            ),
            gnttab::GNTST_GENERAL_ERROR,
        ),
        // A grant not offered to the caller.
        (
            2,
            copy_request(
                by_grant(0, 8, 0),
                by_frame(DOMID_SELF, own, 0),
                gnttab::GNTCOPY_SOURCE_GREF,
                1,
            ),
            gnttab::GNTST_GENERAL_ERROR,
        ),
        // Another domain's frame by number.
        (
            1,
            copy_request(by_frame(0, GRANTED, 0), by_frame(DOMID_SELF, own, 0), 0, 1),
            gnttab::GNTST_PERMISSION_DENIED,
        ),
        // Its own "frames" that are not its RAM: the grant hole, the device window.
        (
            1,
            copy_request(
                by_frame(DOMID_SELF, layout::GNTTAB_BASE, 0),
                by_frame(DOMID_SELF, own, 0),
                0,
                1,
            ),
            gnttab::GNTST_BAD_PAGE,
        ),
        (
            1,
            copy_request(
                by_frame(DOMID_SELF, own, 0),
                by_frame(DOMID_SELF, layout::GICD_BASE, 0),
                0,
                1,
            ),
            gnttab::GNTST_BAD_PAGE,
        ),
        // Across a page end.
        (
            1,
            copy_request(
                by_grant(0, 8, 4000),
                by_frame(DOMID_SELF, own, 0),
                gnttab::GNTCOPY_SOURCE_GREF,
                200,
            ),
            gnttab::GNTST_BAD_COPY_ARG,
        ),
        // A domain that does not exist.
        (
            1,
            copy_request(
                by_grant(6, 8, 0),
                by_frame(DOMID_SELF, own, 0),
                gnttab::GNTCOPY_SOURCE_GREF,
                1,
            ),
            gnttab::GNTST_BAD_DOMAIN,
        ),
    ];
    for (caller, request, expected) in refused {
        assert_eq!(
            copy(&setup, caller, request),
            expected,
            "{request:?} by {caller}"
        );
        assert_eq!(flags(&setup, 0, 8) & (GTF_READING | GTF_WRITING), 0);
    }
    assert_eq!(read_byte(ram_page(&setup, 0, GRANTED)), 0xab);
}

#[test]
fn a_dying_granter_takes_its_pages_back_and_the_mapper_sees_its_sink() {
    let mut setup = setup(&["front", "back"]);
    let free_before = setup.free_before;
    grant(&setup, 0, 8, 1, GRANTED, false);
    let op = map(&mut setup, 1, map_request(0, 8, HOST, false));
    assert_eq!(op.status, gnttab::GNTST_OKAY);
    // front (running) crashes.
    assert_eq!(setup.cpu.current.unwrap().domain, 0);
    setup
        .hypervisor
        .handle_exit(&mut setup.cpu, GuestExit::Unhandled { class: 0x3f }, 0);
    assert!(setup.hypervisor.domain(0).is_none());
    let back = setup.hypervisor.domain(1).unwrap();
    let (page, attributes) = back
        .stage2
        .translate(IntermediatePhysAddr::new(HOST))
        .unwrap();
    assert_eq!(page, back.grants.sink());
    assert!(attributes.write);
    assert!(back.grants.mapping(op.handle).unwrap().withdrawn);
    assert_eq!(unmap(&mut setup, 1, HOST, op.handle), gnttab::GNTST_OKAY);
    assert!(physical(&setup, 1, HOST).is_none());
    // back ends too: everything comes back.
    hypercall(&mut setup, number::SCHED_OP, [2, 0, 0, 0, 0]);
    let _ = setup
        .hypervisor
        .handle_exit(&mut setup.cpu, GuestExit::Unhandled { class: 0x3f }, 0);
    assert_eq!(setup.hypervisor.free_bytes(), free_before);
}

#[test]
fn a_dying_mapper_releases_the_entries_it_held() {
    let mut setup = setup(&["back", "front"]);
    grant(&setup, 1, 8, 0, GRANTED, false);
    let op = map(&mut setup, 0, map_request(1, 8, HOST, false));
    assert_eq!(op.status, gnttab::GNTST_OKAY);
    assert_ne!(flags(&setup, 1, 8) & GTF_WRITING, 0);
    setup
        .hypervisor
        .handle_exit(&mut setup.cpu, GuestExit::Unhandled { class: 0x3f }, 0);
    assert!(setup.hypervisor.domain(0).is_none());
    assert_eq!(flags(&setup, 1, 8) & (GTF_READING | GTF_WRITING), 0);
    assert!(entry(&setup, 1, 8).try_revoke());
}

#[test]
fn query_size_setup_table_and_versions_follow_xen() {
    let mut setup = setup(&["alpha", "beta"]);
    let ram = map_first_page(&setup);
    let poke = |offset: u64, bytes: &[u8]| {
        // SAFETY: the first RAM page of the test domain, in fake RAM.
        unsafe {
            core::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                arch::phys_to_virt(ram.add(offset)),
                bytes.len(),
            )
        };
    };
    let peek = |offset: u64, length: usize| -> std::vec::Vec<u8> {
        (0..length as u64)
            .map(|index| read_byte(ram.add(offset + index)))
            .collect()
    };
    // query_size on itself: 1 of 4 frames.
    poke(
        0,
        &[0xf0, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x55, 0x55, 0, 0],
    );
    hypercall(&mut setup, number::GRANT_TABLE_OP, [6, 0x1000, 1, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], 0);
    let back = peek(0, 16);
    assert_eq!(&back[4..8], &1u32.to_le_bytes());
    assert_eq!(&back[8..12], &grant_table::MAX_FRAMES.to_le_bytes());
    assert_eq!(&back[12..14], &0i16.to_le_bytes());
    // Two structs: -EINVAL. Another domain: permission denied. None: bad domain.
    hypercall(&mut setup, number::GRANT_TABLE_OP, [6, 0x1000, 2, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], Errno::EINVAL.to_return());
    for (domain, status) in [
        (1u16, gnttab::GNTST_PERMISSION_DENIED),
        (5, gnttab::GNTST_BAD_DOMAIN),
    ] {
        poke(0, &domain.to_le_bytes());
        hypercall(&mut setup, number::GRANT_TABLE_OP, [6, 0x1000, 1, 0, 0]);
        assert_eq!(setup.cpu.frame.x[0], 0);
        assert_eq!(&peek(12, 2), &status.to_le_bytes());
    }
    // Map frame 2 at the grant hole's third page: the table grows to 3 frames, and
    // setup_table lists where each frame is.
    let mut request = std::vec![0u8; 24];
    request[0..2].copy_from_slice(&DOMID_SELF.to_le_bytes());
    request[4..8].copy_from_slice(&1u32.to_le_bytes());
    request[8..16].copy_from_slice(&2u64.to_le_bytes());
    request[16..24].copy_from_slice(&((layout::GNTTAB_BASE >> 12) + 2).to_le_bytes());
    poke(0x100, &request);
    hypercall(&mut setup, number::MEMORY_OP, [7, 0x1100, 0, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], 0);
    let alpha = setup.hypervisor.domain(0).unwrap();
    assert_eq!(alpha.grants.nr_frames(), 3);
    assert_eq!(
        alpha
            .stage2
            .translate(IntermediatePhysAddr::new(
                layout::GNTTAB_BASE + 2 * PAGE_SIZE
            ))
            .unwrap()
            .0,
        alpha.grants.frame(2).unwrap()
    );
    let mut setup_table = std::vec![0u8; 24];
    setup_table[0..2].copy_from_slice(&DOMID_SELF.to_le_bytes());
    setup_table[4..8].copy_from_slice(&3u32.to_le_bytes());
    setup_table[16..24].copy_from_slice(&0x1200u64.to_le_bytes());
    poke(0, &setup_table);
    hypercall(&mut setup, number::GRANT_TABLE_OP, [2, 0x1000, 1, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], 0);
    assert_eq!(&peek(8, 2), &0i16.to_le_bytes());
    assert_eq!(&peek(0x200, 8), &u64::MAX.to_le_bytes());
    assert_eq!(
        &peek(0x210, 8),
        &((layout::GNTTAB_BASE >> 12) + 2).to_le_bytes()
    );
    // Frame index 4 and v2 status frames do not exist.
    for index in [4u64, 0x8000_0000] {
        request[8..16].copy_from_slice(&index.to_le_bytes());
        poke(0x100, &request);
        hypercall(&mut setup, number::MEMORY_OP, [7, 0x1100, 0, 0, 0]);
        assert_eq!(setup.cpu.frame.x[0], Errno::EINVAL.to_return());
    }
    // set_version: 1 is fine, 2 is ENOSYS, 3 EINVAL; get_version says 1.
    for (version, result) in [
        (1u32, 0),
        (2, Errno::ENOSYS.to_return()),
        (3, Errno::EINVAL.to_return()),
    ] {
        poke(0, &version.to_le_bytes());
        hypercall(&mut setup, number::GRANT_TABLE_OP, [8, 0x1000, 1, 0, 0]);
        assert_eq!(setup.cpu.frame.x[0], result, "set_version({version})");
        assert_eq!(&peek(0, 4), &1u32.to_le_bytes());
    }
    poke(0, &[0xf0, 0x7f, 0, 0, 0, 0, 0, 0]);
    hypercall(&mut setup, number::GRANT_TABLE_OP, [10, 0x1000, 1, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], 0);
    assert_eq!(&peek(4, 4), &1u32.to_le_bytes());
}

#[test]
fn a_long_batch_continues_instead_of_holding_the_hypervisor() {
    let mut setup = setup(&["alpha"]);
    let ram = map_first_page(&setup);
    // 100 unmaps of handle 0 (never mapped): each fails on its own, the call goes on.
    // SAFETY: the first RAM page of the test domain, in fake RAM.
    unsafe { core::ptr::write_bytes(arch::phys_to_virt(ram), 0, 4096) };
    let pc = setup.cpu.frame.pc;
    hypercall(&mut setup, number::GRANT_TABLE_OP, [1, 0x1000, 100, 0, 0]);
    let batch = u64::from(crate::hypercall::grant_table::BATCH);
    assert_eq!(setup.cpu.frame.pc, pc - 4, "rewound onto the HVC");
    assert_eq!(setup.cpu.frame.x[1], 0x1000 + batch * 24);
    assert_eq!(setup.cpu.frame.x[2], 100 - batch);
    assert_eq!(read_byte(ram.add(20)), gnttab::GNTST_BAD_HANDLE as u8);
    assert_eq!(
        read_byte(ram.add(20 + (batch - 1) * 24)),
        gnttab::GNTST_BAD_HANDLE as u8
    );
    assert_eq!(read_byte(ram.add(20 + batch * 24)), 0, "not reached yet");
    // A struct that cannot be read: EFAULT.
    hypercall(&mut setup, number::GRANT_TABLE_OP, [1, 0x1ff8, 2, 0, 0]);
    assert_eq!(setup.cpu.frame.x[0], Errno::EFAULT.to_return());
}
