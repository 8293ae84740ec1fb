//! Grant tables with Xen's v1 semantics: how one domain lets another map or copy a page
//! of its memory, and how the hypervisor keeps that safe.
//!
//! Each domain owns [`MAX_FRAMES`] grant-table frames (hypervisor memory, zeroed at build;
//! the guest maps them with `XENMEM_add_to_physmap(XENMAPSPACE_grant_table)`), holding
//! `grant_entry_v1` records that the granter fills. A grantee names `(granter, ref)`:
//!
//! - **map**: the entry must permit access to the grantee (and allow writing, for a
//!   writable map); the hypervisor sets the entry's in-use bits (`GTF_reading`,
//!   `GTF_writing`), so the granter's revoke (a compare-and-swap that refuses while they
//!   are set) fails while the page is mapped, and maps the granted page into the
//!   grantee's stage 2 at the address it chose, with the granted permission only, never
//!   executable. The grantee's *maptrack* remembers the mapping under a handle.
//! - **unmap** removes the stage-2 mapping and clears the in-use bits once no mapping of
//!   the entry needs them.
//! - **copy** checks the same way, holds the in-use bits for the duration, and copies
//!   inside the hypervisor.
//!
//! A granted frame must be the granter's own RAM (never a page it has mapped from someone
//! else, nor hypervisor pages), found through the granter's stage 2. When a domain dies,
//! its own mappings are dropped (their in-use bits cleared), and every mapping others hold
//! of its pages is withdrawn: the page leaves the mapper's stage 2 before the dead
//! domain's memory is scrubbed and reused, and the mapper's own *sink* page takes its
//! place, so an innocent mapper that touches it in a race does not fault, and sees
//! nothing of anyone else. Its handle stays valid until it unmaps it.
//!
//! Differences from Xen (documented in `docs/abi.md`): a map must go to an unmapped
//! guest-physical page outside the device window (Xen replaces whatever is there), and an
//! unmap with `host_addr` 0 still removes the mapping (Xen would leave it in place).
//!
//! Every operation runs under the hypervisor lock, so the only concurrency is with guest
//! vCPUs writing their entries, which the atomics and compare-and-swaps handle.

use core::sync::atomic::Ordering;

use crate::addr::{AddrRange, IntermediatePhysAddr, PhysAddr, PAGE_SIZE};
use crate::arch;
use crate::domain::{Domain, DomainState, IPA_BITS, MAX_DOMAINS};
use crate::mm::{FrameAllocator, MemoryKind, Stage2Attributes};
use hypercall_abi::grant_table_op::{
    self as gnttab, GrantEntryV1, ENTRIES_PER_FRAME_V1, GTF_PERMIT_ACCESS, GTF_READING,
    GTF_READONLY, GTF_SUB_PAGE, GTF_TYPE_MASK, GTF_WRITING,
};
use hypercall_abi::shared::DOMID_SELF;

/// Grant-table frames per domain (Xen's default on ARM is 64; ours is enough for 2048
/// grants).
pub const MAX_FRAMES: u32 = 4;
/// Mappings one domain may hold at once (its maptrack size).
pub const MAX_MAPPINGS: usize = 128;
/// Guest-physical addresses below this are the device window (virtual GIC frames and
/// the like): no grant may be mapped there.
pub const DEVICE_WINDOW_END: u64 = 0x1000_0000;
/// What `GNTTABOP_setup_table` reports for a frame the guest has not mapped (Xen's
/// `INVALID_GFN`).
pub const INVALID_FRAME: u64 = u64::MAX;
/// Pages a domain's grant state occupies: the table frames, then the sink page.
pub const PAGES: u64 = MAX_FRAMES as u64 + 1;

/// One mapping a domain holds of another domain's (or its own) grant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// The granting domain.
    pub granter: u16,
    /// The grant reference in its table.
    pub reference: u32,
    /// Where the mapper sees the page.
    pub host: IntermediatePhysAddr,
    /// The granted page (the granter's RAM).
    pub frame: PhysAddr,
    /// Mapped read-only.
    pub readonly: bool,
    /// The granter died: `host` shows the mapper's sink page instead.
    pub withdrawn: bool,
}

/// A domain's grant state: its table frames and its maptrack.
pub struct GrantTable {
    /// The table frames, then the sink page, contiguous.
    pages: PhysAddr,
    /// Frames in use (Xen grows the table on demand; ours are allocated, just counted).
    nr_frames: u32,
    /// Where the guest mapped each frame.
    frame_ipas: [Option<IntermediatePhysAddr>; MAX_FRAMES as usize],
    /// Mappings this domain holds; the index is the handle.
    maptrack: [Option<Mapping>; MAX_MAPPINGS],
}

/// How an entry is in use by mappings (Xen's active-entry pin counts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Pins {
    mappings: usize,
    writable: usize,
    holder: Option<u16>,
    frame: Option<PhysAddr>,
}

impl GrantTable {
    /// A grant table over `pages` ([`PAGES`] zeroed pages: the frames, then the sink).
    pub fn new(pages: PhysAddr) -> Self {
        Self {
            pages,
            nr_frames: 1,
            frame_ipas: [None; MAX_FRAMES as usize],
            maptrack: [None; MAX_MAPPINGS],
        }
    }

    /// The memory it occupies (to free when the domain ends).
    pub fn pages(&self) -> AddrRange<PhysAddr> {
        AddrRange::new(self.pages, PAGES * PAGE_SIZE)
    }

    /// Frames in use.
    pub fn nr_frames(&self) -> u32 {
        self.nr_frames
    }

    /// Grows the table to `frames` frames; false beyond [`MAX_FRAMES`].
    pub fn grow(&mut self, frames: u32) -> bool {
        if frames > MAX_FRAMES {
            return false;
        }
        self.nr_frames = self.nr_frames.max(frames);
        true
    }

    /// Table frame `index` (any of the [`MAX_FRAMES`]).
    pub fn frame(&self, index: u32) -> Option<PhysAddr> {
        (index < MAX_FRAMES).then(|| self.pages.add(u64::from(index) * PAGE_SIZE))
    }

    /// Where the guest mapped table frame `index`.
    pub fn frame_ipa(&self, index: u32) -> Option<IntermediatePhysAddr> {
        self.frame_ipas.get(index as usize).copied().flatten()
    }

    /// Records where table frame `index` is mapped now; returns where it was.
    pub fn set_frame_ipa(
        &mut self,
        index: u32,
        ipa: IntermediatePhysAddr,
    ) -> Option<IntermediatePhysAddr> {
        self.frame_ipas
            .get_mut(index as usize)
            .and_then(|slot| slot.replace(ipa))
    }

    /// Forgets that a table frame is mapped at `ipa` (something else replaces it there).
    pub fn forget_frame_ipa(&mut self, ipa: IntermediatePhysAddr) {
        for slot in self.frame_ipas.iter_mut() {
            if *slot == Some(ipa) {
                *slot = None;
            }
        }
    }

    /// The page that replaces a withdrawn grant in this domain's stage 2.
    pub fn sink(&self) -> PhysAddr {
        self.pages.add(u64::from(MAX_FRAMES) * PAGE_SIZE)
    }

    /// Entry `reference`, if the table is that large now.
    pub fn entry(&self, reference: u32) -> Option<&GrantEntryV1> {
        if reference >= self.nr_frames * ENTRIES_PER_FRAME_V1 {
            return None;
        }
        let offset = u64::from(reference) * core::mem::size_of::<GrantEntryV1>() as u64;
        // SAFETY: the offset lies inside the table frames (bounded just above), which this
        // domain owns for its lifetime; entries are 8-byte aligned in a page-aligned frame,
        // and GrantEntryV1 is two atomics, which tolerate the guest writing concurrently.
        Some(unsafe { &*arch::phys_to_virt(self.pages.add(offset)).cast::<GrantEntryV1>() })
    }

    /// The mapping under `handle`.
    pub fn mapping(&self, handle: u32) -> Option<&Mapping> {
        self.maptrack.get(handle as usize)?.as_ref()
    }

    /// Live mappings with their handles.
    pub fn mappings(&self) -> impl Iterator<Item = (u32, &Mapping)> + '_ {
        self.maptrack
            .iter()
            .enumerate()
            .filter_map(|(handle, mapping)| Some((handle as u32, mapping.as_ref()?)))
    }

    fn free_handle(&self) -> Option<usize> {
        self.maptrack.iter().position(Option::is_none)
    }
}

/// The attributes a grant mapping gets in the mapper's stage 2.
const fn grant_attributes(readonly: bool) -> Stage2Attributes {
    Stage2Attributes {
        read: true,
        write: !readonly,
        execute: false,
        memory: MemoryKind::Normal,
    }
}

/// A live domain by id (slot).
fn alive(domains: &[Option<Domain>; MAX_DOMAINS], id: u16) -> Option<&Domain> {
    domains
        .get(usize::from(id))?
        .as_ref()
        .filter(|domain| domain.state == DomainState::Alive)
}

/// Resolves a domain id as `rcu_lock_domain_by_any_id` does: `DOMID_SELF` is the caller.
fn any_id(id: u16, caller: usize) -> u16 {
    if id == DOMID_SELF {
        caller as u16
    } else {
        id
    }
}

/// How mappings of `(granter, reference)` hold it now.
fn pins(domains: &[Option<Domain>; MAX_DOMAINS], granter: u16, reference: u32) -> Pins {
    let mut pins = Pins::default();
    for (holder, domain) in domains.iter().enumerate() {
        let Some(domain) = domain else { continue };
        for (_, mapping) in domain.grants.mappings() {
            if mapping.withdrawn || mapping.granter != granter || mapping.reference != reference {
                continue;
            }
            pins.mappings += 1;
            pins.writable += usize::from(!mapping.readonly);
            pins.holder = Some(holder as u16);
            pins.frame = Some(mapping.frame);
        }
    }
    pins
}

/// Sets the in-use bits of `entry` for `grantee` (Xen's `_set_status_v1`): the entry
/// must permit access to it (no sub-page grant when `mapping`), and allow writing unless
/// `readonly`. One compare-and-swap, so the granter cannot revoke in between.
fn set_in_use(entry: &GrantEntryV1, grantee: u16, readonly: bool, mapping: bool) -> i16 {
    let mask = GTF_TYPE_MASK | if mapping { GTF_SUB_PAGE } else { 0 };
    let mut current = entry.header.load(Ordering::Acquire);
    loop {
        let flags = GrantEntryV1::flags_of(current);
        if flags & mask != GTF_PERMIT_ACCESS || GrantEntryV1::domid_of(current) != grantee {
            return gnttab::GNTST_GENERAL_ERROR;
        }
        if !readonly && flags & GTF_READONLY != 0 {
            return gnttab::GNTST_GENERAL_ERROR;
        }
        let busy = GTF_READING | if readonly { 0 } else { GTF_WRITING };
        match entry.header.compare_exchange(
            current,
            current | u32::from(busy),
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => return gnttab::GNTST_OKAY,
            Err(now) => current = now,
        }
    }
}

/// Clears the in-use bits that no mapping of the entry needs any more.
fn clear_unused(entry: &GrantEntryV1, pins: Pins) {
    let mut clear = 0u16;
    if pins.writable == 0 {
        clear |= GTF_WRITING;
    }
    if pins.mappings == 0 {
        clear |= GTF_READING;
    }
    if clear != 0 {
        entry.header.fetch_and(!u32::from(clear), Ordering::AcqRel);
    }
}

/// Recomputes the pins of `(granter, reference)` and clears the bits nothing needs.
fn release(domains: &[Option<Domain>; MAX_DOMAINS], granter: u16, reference: u32) {
    let pins = pins(domains, granter, reference);
    if let Some(entry) = domains
        .get(usize::from(granter))
        .and_then(Option::as_ref)
        .and_then(|domain| domain.grants.entry(reference))
    {
        clear_unused(entry, pins);
    }
}

/// The page frame number `frame` of `domain`'s guest-physical space, if it is a page of
/// the domain's own RAM (what a grant may name).
fn own_ram_page(domain: &Domain, frame: u64) -> Option<PhysAddr> {
    let ipa = IntermediatePhysAddr::from_frame_number(frame)?;
    let (physical, _) = domain.stage2.translate(ipa)?;
    domain
        .ram
        .contains_range(physical, PAGE_SIZE)
        .then_some(physical)
}

/// `GNTTABOP_map_grant_ref` for one element, by domain `mapper`; fills `status` (and
/// `handle` on success).
pub fn map(
    domains: &mut [Option<Domain>; MAX_DOMAINS],
    frames: &mut FrameAllocator,
    mapper: usize,
    op: &mut gnttab::MapGrantRef,
) {
    op.status = match map_one(domains, frames, mapper, op) {
        Ok(handle) => {
            op.handle = handle;
            gnttab::GNTST_OKAY
        }
        Err(status) => status,
    };
}

fn map_one(
    domains: &mut [Option<Domain>; MAX_DOMAINS],
    frames: &mut FrameAllocator,
    mapper: usize,
    op: &gnttab::MapGrantRef,
) -> Result<u32, i16> {
    use gnttab::{GNTMAP_APPLICATION_MAP, GNTMAP_CONTAINS_PTE, GNTMAP_DEVICE_MAP};
    if op.flags & (GNTMAP_DEVICE_MAP | gnttab::GNTMAP_HOST_MAP) == 0 {
        return Err(gnttab::GNTST_BAD_GNTREF);
    }
    // As on Xen/ARM (paging_mode_external): only host mappings.
    if op.flags & (GNTMAP_DEVICE_MAP | GNTMAP_APPLICATION_MAP | GNTMAP_CONTAINS_PTE) != 0 {
        return Err(gnttab::GNTST_GENERAL_ERROR);
    }
    let readonly = op.flags & gnttab::GNTMAP_READONLY != 0;
    let mapper_id = mapper as u16;
    let granter = alive(domains, op.dom).ok_or(gnttab::GNTST_BAD_DOMAIN)?;
    let handle = domains
        .get(mapper)
        .and_then(Option::as_ref)
        .and_then(|domain| domain.grants.free_handle())
        .ok_or(gnttab::GNTST_NO_SPACE)?;
    let entry = granter
        .grants
        .entry(op.r#ref)
        .ok_or(gnttab::GNTST_BAD_GNTREF)?;
    let before = pins(domains, op.dom, op.r#ref);
    if before.holder.is_some_and(|holder| holder != mapper_id) {
        return Err(gnttab::GNTST_GENERAL_ERROR);
    }
    if before.mappings == 0 || (!readonly && before.writable == 0) {
        let status = set_in_use(entry, mapper_id, readonly, true);
        if status != gnttab::GNTST_OKAY {
            return Err(status);
        }
    }
    let undo = |domains: &[Option<Domain>; MAX_DOMAINS], status: i16| {
        release(domains, op.dom, op.r#ref);
        status
    };
    // The first mapping finds the page; later ones map the page the first one pinned.
    let frame = match before.frame {
        Some(frame) => frame,
        None => {
            let number = u64::from(entry.frame.load(Ordering::Acquire));
            match own_ram_page(granter, number) {
                Some(frame) => frame,
                None => return Err(undo(domains, gnttab::GNTST_GENERAL_ERROR)),
            }
        }
    };
    let host = IntermediatePhysAddr::new(op.host_addr);
    let placeable = op.host_addr.is_multiple_of(PAGE_SIZE)
        && op.host_addr >= DEVICE_WINDOW_END
        && op.host_addr < (1 << IPA_BITS);
    let Some(target) = domains.get_mut(mapper).and_then(Option::as_mut) else {
        return Err(undo(domains, gnttab::GNTST_GENERAL_ERROR));
    };
    if !placeable
        || target
            .stage2
            .map(host, frame, PAGE_SIZE, grant_attributes(readonly), frames)
            .is_err()
    {
        return Err(undo(domains, gnttab::GNTST_GENERAL_ERROR));
    }
    if let Some(slot) = target.grants.maptrack.get_mut(handle) {
        *slot = Some(Mapping {
            granter: op.dom,
            reference: op.r#ref,
            host,
            frame,
            readonly,
            withdrawn: false,
        });
    }
    Ok(handle as u32)
}

/// `GNTTABOP_unmap_grant_ref` for one element, by domain `mapper`; fills `status`.
pub fn unmap(
    domains: &mut [Option<Domain>; MAX_DOMAINS],
    frames: &mut FrameAllocator,
    mapper: usize,
    op: &mut gnttab::UnmapGrantRef,
) {
    op.status = match unmap_one(domains, frames, mapper, op) {
        Ok(()) => gnttab::GNTST_OKAY,
        Err(status) => status,
    };
}

fn unmap_one(
    domains: &mut [Option<Domain>; MAX_DOMAINS],
    frames: &mut FrameAllocator,
    mapper: usize,
    op: &gnttab::UnmapGrantRef,
) -> Result<(), i16> {
    let domain = domains
        .get_mut(mapper)
        .and_then(Option::as_mut)
        .ok_or(gnttab::GNTST_GENERAL_ERROR)?;
    let mapping = *domain
        .grants
        .mapping(op.handle)
        .ok_or(gnttab::GNTST_BAD_HANDLE)?;
    if op.host_addr != 0 && op.host_addr != mapping.host.raw() {
        return Err(gnttab::GNTST_GENERAL_ERROR);
    }
    domain
        .stage2
        .unmap(mapping.host, PAGE_SIZE, frames)
        .map_err(|_| gnttab::GNTST_GENERAL_ERROR)?;
    if let Some(slot) = domain.grants.maptrack.get_mut(op.handle as usize) {
        *slot = None;
    }
    if !mapping.withdrawn {
        release(domains, mapping.granter, mapping.reference);
    }
    Ok(())
}

/// One side of a copy, claimed: the page, and the grant to let go of afterwards.
struct Claimed {
    page: PhysAddr,
    grant: Option<(u16, u32)>,
}

/// `GNTTABOP_copy` for one element, by domain `caller`; fills `status`.
pub fn copy(domains: &[Option<Domain>; MAX_DOMAINS], caller: usize, op: &mut gnttab::Copy) {
    op.status = match copy_one(domains, caller, op) {
        Ok(()) => gnttab::GNTST_OKAY,
        Err(status) => status,
    };
}

fn copy_one(
    domains: &[Option<Domain>; MAX_DOMAINS],
    caller: usize,
    op: &gnttab::Copy,
) -> Result<(), i16> {
    let source_gref = op.flags & gnttab::GNTCOPY_SOURCE_GREF != 0;
    let dest_gref = op.flags & gnttab::GNTCOPY_DEST_GREF != 0;
    // Xen's gnttab_copy_lock_domains: only the caller's own memory by frame number.
    for (pointer, by_grant) in [(&op.source, source_gref), (&op.dest, dest_gref)] {
        if pointer.domid != DOMID_SELF && !by_grant {
            return Err(gnttab::GNTST_PERMISSION_DENIED);
        }
        alive(domains, any_id(pointer.domid, caller)).ok_or(gnttab::GNTST_BAD_DOMAIN)?;
    }
    let source = claim(domains, caller, &op.source, source_gref, true)?;
    let dest = match claim(domains, caller, &op.dest, dest_gref, false) {
        Ok(dest) => dest,
        Err(status) => {
            let_go(domains, &source);
            return Err(status);
        }
    };
    let length = u64::from(op.len);
    let status = if u64::from(op.source.offset) + length > PAGE_SIZE
        || u64::from(op.dest.offset) + length > PAGE_SIZE
    {
        gnttab::GNTST_BAD_COPY_ARG
    } else {
        // SAFETY: both ranges lie inside one page (checked just above) of a live domain's
        // RAM (claim checked it); the hypervisor lock is held, and the grants' in-use bits
        // stop the granters from revoking meanwhile. `copy` allows overlap (a domain may
        // copy within one page).
        unsafe {
            core::ptr::copy(
                arch::phys_to_virt(source.page.add(u64::from(op.source.offset))),
                arch::phys_to_virt(dest.page.add(u64::from(op.dest.offset))),
                usize::from(op.len),
            );
        }
        gnttab::GNTST_OKAY
    };
    let_go(domains, &source);
    let_go(domains, &dest);
    if status == gnttab::GNTST_OKAY {
        Ok(())
    } else {
        Err(status)
    }
}

/// Claims one side of a copy: a grant `caller` may use (in-use bits held until
/// [`let_go`]) or a page of the caller's own RAM.
fn claim(
    domains: &[Option<Domain>; MAX_DOMAINS],
    caller: usize,
    pointer: &gnttab::CopyPtr,
    by_grant: bool,
    readonly: bool,
) -> Result<Claimed, i16> {
    let owner_id = any_id(pointer.domid, caller);
    let owner = alive(domains, owner_id).ok_or(gnttab::GNTST_BAD_DOMAIN)?;
    if !by_grant {
        let page = own_ram_page(owner, pointer.u).ok_or(gnttab::GNTST_BAD_PAGE)?;
        return Ok(Claimed { page, grant: None });
    }
    let reference = u32::try_from(pointer.u & 0xffff_ffff).unwrap_or(u32::MAX);
    let entry = owner
        .grants
        .entry(reference)
        .ok_or(gnttab::GNTST_BAD_GNTREF)?;
    let status = set_in_use(entry, caller as u16, readonly, false);
    if status != gnttab::GNTST_OKAY {
        return Err(status);
    }
    let number = u64::from(entry.frame.load(Ordering::Acquire));
    match own_ram_page(owner, number) {
        Some(page) => Ok(Claimed {
            page,
            grant: Some((owner_id, reference)),
        }),
        None => {
            release(domains, owner_id, reference);
            Err(gnttab::GNTST_GENERAL_ERROR)
        }
    }
}

fn let_go(domains: &[Option<Domain>; MAX_DOMAINS], claimed: &Claimed) {
    if let Some((granter, reference)) = claimed.grant {
        release(domains, granter, reference);
    }
}

/// Whether `caller` may query or set up domain `target`'s table (only its own: no domain
/// here is privileged over another).
fn own_table(domains: &[Option<Domain>; MAX_DOMAINS], caller: usize, id: u16) -> Result<(), i16> {
    let target = any_id(id, caller);
    alive(domains, target).ok_or(gnttab::GNTST_BAD_DOMAIN)?;
    if usize::from(target) != caller {
        return Err(gnttab::GNTST_PERMISSION_DENIED);
    }
    Ok(())
}

/// `GNTTABOP_query_size` by `caller`; fills the outputs and `status`.
pub fn query_size(
    domains: &[Option<Domain>; MAX_DOMAINS],
    caller: usize,
    op: &mut gnttab::QuerySize,
) {
    match own_table(domains, caller, op.dom) {
        Err(status) => op.status = status,
        Ok(()) => {
            op.nr_frames = alive(domains, caller as u16).map_or(0, |d| d.grants.nr_frames());
            op.max_nr_frames = MAX_FRAMES;
            op.status = gnttab::GNTST_OKAY;
        }
    }
}

/// `GNTTABOP_setup_table` by `caller`: grows its table to `op.nr_frames` and returns the
/// frame numbers where the guest mapped each frame ([`INVALID_FRAME`] where it has not:
/// an ARM guest maps them itself). Fills `status`; the frame list to write is returned.
pub fn setup_table(
    domains: &mut [Option<Domain>; MAX_DOMAINS],
    caller: usize,
    op: &mut gnttab::SetupTable,
) -> heapless::Vec<u64, { MAX_FRAMES as usize }> {
    let mut list = heapless::Vec::new();
    if let Err(status) = own_table(domains, caller, op.dom) {
        op.status = status;
        return list;
    }
    let Some(domain) = domains.get_mut(caller).and_then(Option::as_mut) else {
        op.status = gnttab::GNTST_BAD_DOMAIN;
        return list;
    };
    if !domain.grants.grow(op.nr_frames) {
        op.status = gnttab::GNTST_GENERAL_ERROR;
        return list;
    }
    for index in 0..op.nr_frames {
        let frame = domain
            .grants
            .frame_ipa(index)
            .map_or(INVALID_FRAME, IntermediatePhysAddr::frame_number);
        let _ = list.push(frame);
    }
    op.status = gnttab::GNTST_OKAY;
    list
}

/// Ends domain `dying`'s part in grants, before its memory is scrubbed: the in-use bits
/// of what it mapped are released (its stage 2 goes with it), and every mapping another
/// domain holds of its pages is withdrawn, the mapper's sink page put in its place.
pub fn release_domain(
    domains: &mut [Option<Domain>; MAX_DOMAINS],
    frames: &mut FrameAllocator,
    dying: usize,
) {
    let held: heapless::Vec<Mapping, MAX_MAPPINGS> =
        match domains.get_mut(dying).and_then(Option::as_mut) {
            Some(domain) => domain
                .grants
                .maptrack
                .iter_mut()
                .filter_map(Option::take)
                .collect(),
            None => heapless::Vec::new(),
        };
    for mapping in held.iter().filter(|mapping| !mapping.withdrawn) {
        release(domains, mapping.granter, mapping.reference);
    }
    for (slot, domain) in domains.iter_mut().enumerate() {
        let Some(domain) = domain.as_mut().filter(|_| slot != dying) else {
            continue;
        };
        let sink = domain.grants.sink();
        let Domain { grants, stage2, .. } = domain;
        for mapping in grants.maptrack.iter_mut().flatten() {
            if usize::from(mapping.granter) != dying || mapping.withdrawn {
                continue;
            }
            // A grant is always a 4 KiB page, so the unmap splits no block and cannot
            // fail for want of table pages; the map may need one. If it fails, the IPA
            // stays unmapped: the mapper faults there, but never reaches the freed page.
            let _ = stage2.unmap(mapping.host, PAGE_SIZE, frames);
            let _ = stage2.map(
                mapping.host,
                sink,
                PAGE_SIZE,
                grant_attributes(mapping.readonly),
                frames,
            );
            mapping.withdrawn = true;
            mapping.frame = sink;
        }
    }
}
