//! `blkback`: the backend of the block split driver (`docs/split-driver.md`). Only when
//! named; run it in one domain of a pre-connected channel and `blkfront` in the other
//! (`examples/systems/split-block.toml`).
//!
//! It owns a 1 MiB RAM disk in its own memory. `connect` waits for the frontend's first
//! event (the ring is granted), then maps the frontend's grant
//! [`RING_REF`](crate::abi::blkif::RING_REF) at page 0 of the foreign window. `serve`
//! then answers requests until the frontend goes away (its channel closes: the test
//! passes) or asks it to crash ([`OP_TEST_CRASH`]):
//!
//! - it takes every published request (up to a ring's worth) as one batch;
//! - writes: one `GNTTABOP_map_grant_ref` call maps every data page of the batch
//!   read-only (page 1 + i of the foreign window for request i), the data is copied to
//!   the disk, one `GNTTABOP_unmap_grant_ref` call unmaps them;
//! - reads: `GNTTABOP_copy` from the disk's frames (`DOMID_SELF`) to the data grants,
//!   one call for the batch's consecutive reads (a write in between is done first, so the
//!   batch's order is kept);
//! - one response per request, `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`, and
//!   `RING_FINAL_CHECK_FOR_REQUESTS` before sleeping.
//!
//! A request that is malformed (not one segment, sectors outside the page or the disk)
//! is answered `BLKIF_RSP_ERROR`, an unknown operation `BLKIF_RSP_EOPNOTSUPP`, a grant
//! that cannot be mapped or copied `BLKIF_RSP_ERROR`.

use super::split::{self, channel_status, connect_channel, Pages, Peer, Slot, PAGE_SIZE};
use super::{Context, Failure, Scenario, Test, TestResult};
use crate::abi::blkif::{
    BackRing, Request, Response, OP_READ, OP_TEST_CRASH, OP_WRITE, RING_REF, RING_SIZE,
    RSP_EOPNOTSUPP, RSP_ERROR, RSP_OKAY, SECTORS_PER_PAGE, SECTOR_SIZE,
};
use crate::abi::event_channel_op::Port;
use crate::abi::grant_table_op::{
    Copy, CopyPtr, MapGrantRef, UnmapGrantRef, GNTCOPY_DEST_GREF, GNTMAP_HOST_MAP, GNTMAP_READONLY,
    GNTST_OKAY,
};
use crate::abi::guest::{evtchn_send, gnttab_copy, gnttab_map_grant_ref, gnttab_unmap_grant_ref};
use crate::abi::shared::DOMID_SELF;
use crate::irq::{self, Wait};
use crate::{events, grants, println};

/// The scenario.
pub const SCENARIO: Scenario = Scenario::named(
    "blkback",
    &[Test::new("connect", connect), Test::new("serve", serve)],
);

/// How long the frontend may take to boot and grant its ring.
const CONNECT_TIMEOUT_US: u64 = 20_000_000;
/// How long the backend waits for a request (or the frontend's end) before failing.
const IDLE_TIMEOUT_US: u64 = 60_000_000;
/// The foreign-window page where the ring is mapped; request i of a batch uses 1 + i.
const RING_SLOT: u64 = 0;
/// Pages on the disk.
const DISK_PAGES: usize = split::DISK_BYTES / PAGE_SIZE;
/// Requests in one batch: a ring's worth.
const BATCH: usize = RING_SIZE as usize;
/// Not RAM, not mapped in stage 2: the crash store goes there (as the `crash` scenario).
const UNMAPPED_IPA: usize = 0x1000_0000;

/// The RAM disk.
static DISK: Pages<DISK_PAGES> = Pages::new();
/// The connection, from `connect` to `serve`.
static BACKEND: Slot<Backend> = Slot::new();

/// What the backend counts.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    requests: u64,
    reads: u64,
    writes: u64,
    errors: u64,
    batches: u64,
    hypercalls: u64,
    notifications: u64,
}

struct Backend {
    ring: BackRing,
    peer: Peer,
    ring_handle: u32,
    events_seen: u32,
    stats: Stats,
}

fn connect(context: &Context) -> TestResult {
    let peer = connect_channel(context, "blkback")?;
    grants::ensure().map_err(|error| {
        Failure::new(format_args!("grant tables set up"), format_args!("{error}"))
    })?;
    let port = peer.port;
    if !irq::wait_until(irq::ticks(CONNECT_TIMEOUT_US), Wait::Sleep, || {
        events::count(port) > 0
    }) {
        return Err(Failure::new(
            format_args!(
                "the frontend's first event on port {} within {} s",
                port.0,
                CONNECT_TIMEOUT_US / 1_000_000
            ),
            format_args!("none"),
        ));
    }
    let events_seen = events::count(port);
    let host_addr = grants::foreign_address(RING_SLOT).unwrap_or_default();
    let mut map = [MapGrantRef {
        host_addr,
        flags: GNTMAP_HOST_MAP,
        r#ref: RING_REF,
        dom: peer.domain,
        ..Default::default()
    }];
    // SAFETY: the window page is ours and unused; the ring is only reached through
    // `BackRing`'s volatile accesses and atomics.
    let result = unsafe { gnttab_map_grant_ref(&mut map) };
    if result.is_err() || map[0].status != GNTST_OKAY {
        return Err(Failure::new(
            format_args!(
                "GNTTABOP_map_grant_ref(domain {} ref {RING_REF} at {host_addr:#x}) -> status 0",
                peer.domain
            ),
            format_args!("{result:?}, status {}", map[0].status),
        ));
    }
    // SAFETY: the page is mapped (stage 2 by the call above, stage 1 Normal WB by
    // `grants::ensure`) until we unmap it; the blkif structs are plain integers.
    let ring = unsafe { BackRing::attach(host_addr as *mut u8) };
    println!(
        "blkback: frontend domain {}, port {}; ring (grant {RING_REF}) mapped at {host_addr:#x}, {} entries; disk {} sectors",
        peer.domain,
        port.0,
        ring.size(),
        split::DISK_SECTORS
    );
    let backend = Backend {
        ring,
        peer,
        ring_handle: map[0].handle,
        events_seen,
        stats: Stats::default(),
    };
    BACKEND.with(|slot| *slot = Some(backend));
    Ok(())
}

fn serve(_context: &Context) -> TestResult {
    BACKEND
        .with(|slot| match slot.as_mut() {
            Some(backend) => backend.serve(),
            None => Err(Failure::new(
                format_args!("the ring from blkback::connect"),
                format_args!("none"),
            )),
        })
        .unwrap_or_else(|| {
            Err(Failure::new(
                format_args!("the backend state"),
                format_args!("busy"),
            ))
        })
}

/// A request's sectors, checked: (disk byte offset, page byte offset, length).
fn extent(request: &Request) -> Option<(usize, usize, usize)> {
    let segment = request.segments.first()?;
    if request.nr_segments != 1
        || segment.first_sect > segment.last_sect
        || segment.last_sect >= SECTORS_PER_PAGE
    {
        return None;
    }
    let sectors = u64::from(segment.last_sect - segment.first_sect) + 1;
    let end = request.sector_number.checked_add(sectors)?;
    if end > split::DISK_SECTORS {
        return None;
    }
    Some((
        (request.sector_number * SECTOR_SIZE) as usize,
        (u64::from(segment.first_sect) * SECTOR_SIZE) as usize,
        (sectors * SECTOR_SIZE) as usize,
    ))
}

/// Copies `length` bytes (a multiple of 8, both ends 8-byte aligned) with volatile
/// accesses: the source may be a page the frontend can still write.
///
/// # Safety
/// Both ranges must be mapped, and the destination must be memory no Rust reference
/// points into.
unsafe fn copy_words(source: u64, destination: u64, length: usize) {
    for offset in (0..length).step_by(8) {
        // SAFETY: in range and aligned (caller's guarantee).
        unsafe {
            let word = core::ptr::read_volatile((source as usize + offset) as *const u64);
            core::ptr::write_volatile((destination as usize + offset) as *mut u64, word);
        }
    }
}

/// The disk's base address.
fn disk_base() -> u64 {
    DISK.address(0).unwrap_or_default()
}

/// `GNTTABOP_copy` operations gathered for consecutive reads, with the request each
/// belongs to.
struct CopyBatch {
    ops: [Copy; 2 * BATCH],
    owner: [usize; 2 * BATCH],
    count: usize,
}

impl Backend {
    fn serve(&mut self) -> TestResult {
        loop {
            let mut batch = [Request::default(); BATCH];
            let mut count = 0;
            while count < BATCH {
                match self.ring.take_request() {
                    Some(request) => {
                        batch[count] = request;
                        count += 1;
                    }
                    None => break,
                }
            }
            if count > 0 {
                self.process(&batch[..count])?;
                continue;
            }
            if self.ring.final_check_for_requests() {
                continue;
            }
            let (port, seen) = (self.peer.port, self.events_seen);
            let ring = &self.ring;
            let woke = irq::wait_until(irq::ticks(IDLE_TIMEOUT_US), Wait::Sleep, || {
                events::count(port) != seen || ring.unconsumed_requests() > 0
            });
            self.events_seen = events::count(port);
            if self.ring.unconsumed_requests() > 0 {
                continue;
            }
            if let Err(status) = channel_status(port) {
                return self.frontend_gone(status);
            }
            if !woke {
                return Err(Failure::new(
                    format_args!(
                        "a request or the frontend's end within {} s",
                        IDLE_TIMEOUT_US / 1_000_000
                    ),
                    format_args!("nothing, after {} requests", self.stats.requests),
                ));
            }
        }
    }

    /// The frontend's channel closed: unmap the ring and report.
    fn frontend_gone(&mut self, status: u32) -> TestResult {
        let mut unmap = [UnmapGrantRef {
            host_addr: grants::foreign_address(RING_SLOT).unwrap_or_default(),
            handle: self.ring_handle,
            ..Default::default()
        }];
        // SAFETY: the ring is not touched again (the state is dropped below).
        let result = unsafe { gnttab_unmap_grant_ref(&mut unmap) };
        let stats = self.stats;
        println!(
            "blkback: frontend gone (port status {status}); {} requests ({} reads by copy, {} writes by map, {} errors) in {} batches, {} grant hypercalls, {} notifications",
            stats.requests, stats.reads, stats.writes, stats.errors, stats.batches, stats.hypercalls, stats.notifications
        );
        if result.is_err() || unmap[0].status != GNTST_OKAY {
            return Err(Failure::new(
                format_args!("GNTTABOP_unmap_grant_ref of the ring -> status 0"),
                format_args!("{result:?}, status {}", unmap[0].status),
            ));
        }
        Ok(())
    }

    /// Serves one batch in order, then publishes its responses.
    fn process(&mut self, requests: &[Request]) -> TestResult {
        let mut status = [RSP_OKAY; BATCH];
        let mut extents = [(0usize, 0usize, 0usize); BATCH];
        // 1. Check every request; map the data pages of writes (and of the crash
        //    request) in one call.
        let mut maps = [MapGrantRef::default(); BATCH];
        let mut map_of = [usize::MAX; BATCH];
        let mut map_count = 0;
        for (index, request) in requests.iter().enumerate() {
            let known = matches!(request.operation, OP_READ | OP_WRITE | OP_TEST_CRASH);
            match extent(request) {
                _ if !known => status[index] = RSP_EOPNOTSUPP,
                None => status[index] = RSP_ERROR,
                Some(found) => extents[index] = found,
            }
            if status[index] != RSP_OKAY || request.operation == OP_READ {
                continue;
            }
            let readonly = request.operation == OP_WRITE;
            maps[map_count] = MapGrantRef {
                host_addr: grants::foreign_address(1 + index as u64).unwrap_or_default(),
                flags: GNTMAP_HOST_MAP | if readonly { GNTMAP_READONLY } else { 0 },
                r#ref: request.segments[0].gref,
                dom: self.peer.domain,
                ..Default::default()
            };
            map_of[index] = map_count;
            map_count += 1;
        }
        if map_count > 0 {
            self.stats.hypercalls += 1;
            // SAFETY: the window pages 1..=BATCH are ours and unmapped between batches.
            if unsafe { gnttab_map_grant_ref(&mut maps[..map_count]) }.is_err() {
                for map in &mut maps[..map_count] {
                    map.status = -1;
                }
            }
        }
        // 2. In order: reads gathered into copy calls, writes copied from their mapping.
        let mut copies = CopyBatch {
            ops: [Copy::default(); 2 * BATCH],
            owner: [0; 2 * BATCH],
            count: 0,
        };
        for (index, request) in requests.iter().enumerate() {
            if status[index] != RSP_OKAY {
                continue;
            }
            let (disk_offset, page_offset, length) = extents[index];
            match request.operation {
                OP_READ => self.gather_read(&mut copies, index, request, extents[index]),
                OP_WRITE => {
                    self.flush_copies(&mut copies, &mut status);
                    let map = &maps[map_of[index]];
                    if map.status != GNTST_OKAY {
                        status[index] = RSP_ERROR;
                        continue;
                    }
                    // SAFETY: the page is mapped read-only at `host_addr` (stage 1 Normal
                    // WB); the disk is ours and reached only through raw pointers.
                    unsafe {
                        copy_words(
                            map.host_addr + page_offset as u64,
                            disk_base() + disk_offset as u64,
                            length,
                        )
                    };
                    self.stats.writes += 1;
                }
                _ => {
                    self.flush_copies(&mut copies, &mut status);
                    let map = &maps[map_of[index]];
                    if map.status == GNTST_OKAY {
                        return self.crash(request, map.host_addr);
                    }
                    status[index] = RSP_ERROR;
                }
            }
        }
        self.flush_copies(&mut copies, &mut status);
        // 3. Unmap the data pages in one call.
        let mut unmaps = [UnmapGrantRef::default(); BATCH];
        let mut unmap_count = 0;
        for map in maps[..map_count]
            .iter()
            .filter(|map| map.status == GNTST_OKAY)
        {
            unmaps[unmap_count] = UnmapGrantRef {
                host_addr: map.host_addr,
                handle: map.handle,
                ..Default::default()
            };
            unmap_count += 1;
        }
        if unmap_count > 0 {
            self.stats.hypercalls += 1;
            // SAFETY: the data pages are not touched again.
            let result = unsafe { gnttab_unmap_grant_ref(&mut unmaps[..unmap_count]) };
            let bad = if result.is_err() {
                Some(&unmaps[0])
            } else {
                unmaps[..unmap_count]
                    .iter()
                    .find(|unmap| unmap.status != GNTST_OKAY)
            };
            if let Some(bad) = bad {
                return Err(Failure::new(
                    format_args!("GNTTABOP_unmap_grant_ref of a data page -> status 0"),
                    format_args!("{result:?}, status {} at {:#x}", bad.status, bad.host_addr),
                ));
            }
        }
        // 4. Answer.
        for (index, request) in requests.iter().enumerate() {
            let response = Response {
                id: request.id,
                operation: request.operation,
                status: status[index],
                ..Default::default()
            };
            if status[index] != RSP_OKAY {
                self.stats.errors += 1;
            }
            if self.ring.put_response(response).is_err() {
                return Err(Failure::new(
                    format_args!("room for the response to request {}", request.id),
                    format_args!("none"),
                ));
            }
        }
        self.stats.requests += requests.len() as u64;
        self.stats.batches += 1;
        if self.ring.push_responses() {
            self.notify(self.peer.port)?;
        }
        Ok(())
    }

    fn notify(&mut self, port: Port) -> TestResult {
        self.stats.notifications += 1;
        evtchn_send(port).map_err(|errno| {
            Failure::new(
                format_args!("EVTCHNOP_send({}) -> Ok", port.0),
                format_args!("-{errno:?}"),
            )
        })
    }

    /// Adds the copy operations of one read (split at the disk's page boundaries).
    fn gather_read(
        &mut self,
        copies: &mut CopyBatch,
        index: usize,
        request: &Request,
        (disk_offset, page_offset, length): (usize, usize, usize),
    ) {
        let mut done = 0;
        while done < length {
            let disk_address = disk_base() + (disk_offset + done) as u64;
            let in_page = PAGE_SIZE - (disk_address as usize % PAGE_SIZE);
            let chunk = (length - done).min(in_page);
            if let Some(op) = copies.ops.get_mut(copies.count) {
                *op = Copy {
                    source: CopyPtr {
                        u: disk_address >> 12,
                        domid: DOMID_SELF,
                        offset: (disk_address % PAGE_SIZE as u64) as u16,
                        pad: 0,
                    },
                    dest: CopyPtr {
                        u: u64::from(request.segments[0].gref),
                        domid: self.peer.domain,
                        offset: (page_offset + done) as u16,
                        pad: 0,
                    },
                    len: chunk as u16,
                    flags: GNTCOPY_DEST_GREF,
                    ..Default::default()
                };
                copies.owner[copies.count] = index;
                copies.count += 1;
            }
            done += chunk;
        }
        self.stats.reads += 1;
    }

    /// Issues the gathered copies; a failed one fails its request.
    fn flush_copies(&mut self, copies: &mut CopyBatch, status: &mut [i16; BATCH]) {
        if copies.count == 0 {
            return;
        }
        self.stats.hypercalls += 1;
        let ops = &mut copies.ops[..copies.count];
        // SAFETY: every destination is a foreign grant, no memory of ours.
        let failed = unsafe { gnttab_copy(ops) }.is_err();
        for (op, &owner) in ops.iter().zip(&copies.owner) {
            if failed || op.status != GNTST_OKAY {
                status[owner] = RSP_ERROR;
            }
        }
        copies.count = 0;
    }

    /// [`OP_TEST_CRASH`]: die with the ring and the request's data page mapped.
    fn crash(&self, request: &Request, data_address: u64) -> TestResult {
        let stats = self.stats;
        println!(
            "blkback: crashing as asked by request {:#x}, with the ring and the data page (grant {}) mapped at {data_address:#x}; {} requests served",
            request.id, request.segments[0].gref, stats.requests
        );
        // SAFETY: not memory safety in the Rust sense: the address is no Rust object, and
        // the point is that the hypervisor ends the domain at this store.
        unsafe { core::ptr::write_volatile(UNMAPPED_IPA as *mut u32, 0xdead_beef) };
        Err(Failure::new(
            format_args!("the hypervisor to end the domain at the store to {UNMAPPED_IPA:#x}"),
            format_args!("the store completing"),
        ))
    }
}
