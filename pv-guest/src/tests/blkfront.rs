//! `blkfront`: the frontend of the block split driver (`docs/split-driver.md`), and the
//! split driver's tests. Only when named; the other end of the first pre-connected
//! channel must run `blkback` (`examples/systems/split-block.toml`).
//!
//! `connect` sets up grant tables, grants the ring page at
//! [`RING_REF`](crate::abi::blkif::RING_REF) and [`DATA_PAGES`] data pages (one per ring
//! slot, granted once and reused, as Linux's persistent grants) to the backend, and
//! signals the channel. Requests carry one whole page each; a request's `id` is its data
//! page (low 8 bits) and its disk page (above). Every wait is bounded, and a wait that
//! sees the channel closed (`EVTCHNOP_status` no longer interdomain) ends with
//! [`Stall::BackendGone`] instead of a hang.
//!
//! Tests: `errors_answered` (bad requests get error statuses), `write_read_verify`
//! ([`PASSES`] passes writing then reading back the whole disk, checksummed: 4096
//! requests, with throughput), `ring_full` (every slot in flight at once),
//! `latency` (one request at a time), `backend_death` (the backend crashes on a test
//! request: the pending request fails within [`DEATH_TIMEOUT_US`], and every grant can
//! then be revoked).

use super::split::{self, channel_status, connect_channel, Pages, Peer, Slot, PAGE_SIZE};
use super::{Context, Failure, Scenario, Test, TestResult};
use crate::abi::blkif::{
    FrontRing, Request, Response, OP_READ, OP_TEST_CRASH, OP_WRITE, RING_REF, RING_SIZE,
    RSP_EOPNOTSUPP, RSP_ERROR, RSP_OKAY, SECTORS_PER_PAGE,
};
use crate::abi::guest::evtchn_send;
use crate::abi::ring::RingFull;
use crate::arch::cpu;
use crate::irq::{self, Wait};
use crate::{events, grants, println};

/// The scenario.
pub const SCENARIO: Scenario = Scenario::named(
    "blkfront",
    &[
        Test::new("connect", connect),
        Test::new("errors_answered", errors_answered),
        Test::new("write_read_verify", write_read_verify),
        Test::new("ring_full", ring_full),
        Test::new("latency", latency),
        Test::new("backend_death", backend_death),
    ],
);

/// Data pages: one per ring slot.
pub const DATA_PAGES: usize = RING_SIZE as usize;
/// Passes of `write_read_verify`: each writes the whole disk, then reads it back.
pub const PASSES: u32 = 8;
/// Requests of each kind in `latency`.
const LATENCY_ROUNDS: u32 = 500;
/// How long one response may take (the first also waits for the backend to boot).
const RESPONSE_TIMEOUT_US: u64 = 20_000_000;
/// How long the frontend may take to see its backend die.
pub const DEATH_TIMEOUT_US: u64 = 5_000_000;
/// How long revoking may keep failing after the death (the hypervisor releases the
/// dead mapper's in-use bits as it tears it down).
const REVOKE_TIMEOUT_US: u64 = 1_000_000;
/// Pages on the disk.
const DISK_PAGES: u64 = split::DISK_BYTES as u64 / PAGE_SIZE as u64;
/// Words in a page.
const WORDS: usize = PAGE_SIZE / 8;

/// The ring page, granted to the backend.
static RING_PAGE: Pages<1> = Pages::new();
/// The data pages, granted to the backend.
static DATA: Pages<DATA_PAGES> = Pages::new();
/// The connection, from `connect` to `backend_death`.
static FRONTEND: Slot<Frontend> = Slot::new();

/// Why a wait for a response ended without one.
#[derive(Clone, Copy, Debug)]
enum Stall {
    /// Nothing within the time allowed, the channel still connected.
    TimedOut,
    /// The channel is no longer interdomain (`EVTCHNOP_status` gave this status).
    BackendGone(u32),
}

struct Frontend {
    ring: FrontRing,
    peer: Peer,
    /// The grant reference of each data page.
    data_refs: [u32; DATA_PAGES],
    /// One bit per data page: set while free.
    free_pages: u64,
    events_seen: u32,
    notifications: u64,
}

fn connect(context: &Context) -> TestResult {
    let peer = connect_channel(context, "blkfront")?;
    let grant_failure = |what: core::fmt::Arguments<'_>, error: grants::GrantError| {
        Failure::new(what, format_args!("{error}"))
    };
    let references = grants::ensure()
        .map_err(|error| grant_failure(format_args!("grant tables set up"), error))?;
    grants::claim(RING_REF)
        .map_err(|error| grant_failure(format_args!("grant reference {RING_REF}"), error))?;
    let ring_address = RING_PAGE.address(0).unwrap_or_default();
    // SAFETY: the ring page is ours and nobody has it yet (not granted).
    unsafe { core::ptr::write_bytes(ring_address as *mut u8, 0, PAGE_SIZE) };
    // SAFETY: the page is a page-aligned 4 KiB static, reached only through the ring;
    // the blkif structs are plain integers.
    let ring = unsafe { FrontRing::new(ring_address as *mut u8) };
    grants::grant(RING_REF, peer.domain, ring_address, false)
        .map_err(|error| grant_failure(format_args!("the ring granted"), error))?;
    let mut data_refs = [0; DATA_PAGES];
    for (index, reference) in data_refs.iter_mut().enumerate() {
        let address = DATA.address(index).unwrap_or_default();
        *reference = grants::grant_page(peer.domain, address, false)
            .map_err(|error| grant_failure(format_args!("data page {index} granted"), error))?;
    }
    evtchn_send(peer.port).map_err(|errno| {
        Failure::new(
            format_args!("EVTCHNOP_send({}) -> Ok", peer.port.0),
            format_args!("-{errno:?}"),
        )
    })?;
    println!(
        "blkfront: backend domain {}, port {}; {references} grant references; ring {} entries at grant {RING_REF}, data pages at grants {}..={}",
        peer.domain,
        peer.port.0,
        ring.size(),
        data_refs[0],
        data_refs[DATA_PAGES - 1]
    );
    let frontend = Frontend {
        ring,
        peer,
        data_refs,
        free_pages: (1u64 << DATA_PAGES) - 1,
        events_seen: 0,
        notifications: 1,
    };
    FRONTEND.with(|slot| *slot = Some(frontend));
    Ok(())
}

/// Runs `test` on the connection made by `connect`.
fn with_frontend(test: impl FnOnce(&mut Frontend) -> TestResult) -> TestResult {
    FRONTEND
        .with(|slot| match slot.as_mut() {
            Some(frontend) => test(frontend),
            None => Err(Failure::new(
                format_args!("the connection from blkfront::connect"),
                format_args!("none"),
            )),
        })
        .unwrap_or_else(|| {
            Err(Failure::new(
                format_args!("the frontend state"),
                format_args!("busy"),
            ))
        })
}

/// The address of data page `page`.
fn data_address(page: usize) -> u64 {
    DATA.address(page).unwrap_or_default()
}

/// A 64-bit mix (splitmix64's finaliser).
fn mix(mut value: u64) -> u64 {
    value = (value ^ (value >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    value = (value ^ (value >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    value ^ (value >> 31)
}

/// Adds `word` to an FNV-1a style checksum.
fn checksum_step(checksum: u64, word: u64) -> u64 {
    (checksum ^ word).wrapping_mul(0x0000_0100_0000_01b3)
}

const CHECKSUM_START: u64 = 0xcbf2_9ce4_8422_2325;

/// Fills data page `page` with the pattern of (`pass`, `disk_page`); returns its
/// checksum.
fn fill(page: usize, pass: u32, disk_page: u64) -> u64 {
    let base = data_address(page);
    let mut checksum = CHECKSUM_START;
    for word in 0..WORDS {
        let value = mix((u64::from(pass) << 40) ^ (disk_page << 20) ^ word as u64);
        // SAFETY: the page is ours and free (no request in flight uses it); raw
        // pointer, no reference.
        unsafe { core::ptr::write_volatile((base as *mut u64).add(word), value) };
        checksum = checksum_step(checksum, value);
    }
    checksum
}

/// The checksum of data page `page`.
fn checksum(page: usize) -> u64 {
    let base = data_address(page);
    (0..WORDS).fold(CHECKSUM_START, |checksum, word| {
        // SAFETY: the page is ours; its request completed (the response was consumed
        // with acquire ordering), so nobody writes it now.
        checksum_step(checksum, unsafe {
            core::ptr::read_volatile((base as *const u64).add(word))
        })
    })
}

/// `ticks` of the counter as MiB/s for `bytes`, in hundredths.
fn mebibytes_per_second_hundredths(bytes: u64, ticks: u64) -> u64 {
    let rate = u128::from(bytes) * u128::from(cpu::counter_frequency()) * 100;
    (rate / (u128::from(ticks.max(1)) << 20)) as u64
}

impl Frontend {
    fn take_page(&mut self) -> Option<usize> {
        if self.free_pages == 0 {
            return None;
        }
        let page = self.free_pages.trailing_zeros() as usize;
        self.free_pages &= !(1 << page);
        Some(page)
    }

    fn free_page(&mut self, page: usize) {
        self.free_pages |= 1 << page;
    }

    /// Queues a one-page request on data page `page` for disk page `disk_page`.
    fn queue(&mut self, operation: u8, page: usize, disk_page: u64) -> Result<(), RingFull> {
        let id = (disk_page << 8) | page as u64;
        let request = Request::one_page(
            operation,
            id,
            disk_page * u64::from(SECTORS_PER_PAGE),
            self.data_refs[page],
        );
        self.ring.put_request(request)
    }

    /// Publishes the queued requests and notifies the backend if it asked to be.
    fn push(&mut self) -> TestResult {
        if self.ring.push_requests() {
            self.notifications += 1;
            evtchn_send(self.peer.port).map_err(|errno| {
                Failure::new(
                    format_args!("EVTCHNOP_send({}) -> Ok", self.peer.port.0),
                    format_args!("-{errno:?}"),
                )
            })?;
        }
        Ok(())
    }

    /// The next response, waiting at most `timeout_us`.
    fn next_response(&mut self, timeout_us: u64) -> Result<Response, Stall> {
        let deadline = cpu::counter().saturating_add(irq::ticks(timeout_us));
        loop {
            if let Some(response) = self.ring.take_response() {
                return Ok(response);
            }
            if self.ring.final_check_for_responses() {
                continue;
            }
            let (port, seen) = (self.peer.port, self.events_seen);
            let ring = &self.ring;
            let remaining = deadline.saturating_sub(cpu::counter());
            irq::wait_until(remaining, Wait::Sleep, || {
                ring.unconsumed_responses() > 0 || events::count(port) != seen
            });
            self.events_seen = events::count(port);
            if self.ring.unconsumed_responses() > 0 {
                continue;
            }
            if let Err(status) = channel_status(port) {
                return Err(Stall::BackendGone(status));
            }
            if cpu::counter() >= deadline {
                return Err(Stall::TimedOut);
            }
        }
    }

    /// [`Frontend::next_response`], a stall reported as a failure.
    fn response(&mut self, what: core::fmt::Arguments<'_>) -> Result<Response, Failure> {
        self.next_response(RESPONSE_TIMEOUT_US).map_err(|stall| {
            Failure::new(
                format_args!(
                    "a response to {what} within {} s",
                    RESPONSE_TIMEOUT_US / 1_000_000
                ),
                format_args!(
                    "{stall:?} with {} in flight, ring {:?}",
                    self.ring.in_flight(),
                    self.ring.header()
                ),
            )
        })
    }

    /// Sends one request and waits for its response.
    fn one(&mut self, request: Request) -> Result<Response, Failure> {
        if self.ring.put_request(request).is_err() {
            return Err(Failure::new(
                format_args!("an empty ring"),
                format_args!("{} in flight", self.ring.in_flight()),
            ));
        }
        self.push()?;
        self.response(format_args!("request {:#x}", request.id))
    }
}

fn expect_status(what: &str, response: Response, status: i16) -> TestResult {
    if response.status == status {
        return Ok(());
    }
    Err(Failure::new(
        format_args!("{what}: status {status}"),
        format_args!("{response:?}"),
    ))
}

fn errors_answered(_context: &Context) -> TestResult {
    with_frontend(|frontend| {
        let reference = frontend.data_refs[0];
        let beyond = Request::one_page(OP_READ, 1, split::DISK_SECTORS, reference);
        let response = frontend.one(beyond)?;
        expect_status("a read past the disk's end", response, RSP_ERROR)?;
        let mut straddling = Request::one_page(OP_READ, 2, split::DISK_SECTORS - 4, reference);
        straddling.segments[0].last_sect = 7;
        expect_status(
            "a read straddling the disk's end",
            frontend.one(straddling)?,
            RSP_ERROR,
        )?;
        let mut no_segment = Request::one_page(OP_WRITE, 3, 0, reference);
        no_segment.nr_segments = 0;
        expect_status(
            "a write without segments",
            frontend.one(no_segment)?,
            RSP_ERROR,
        )?;
        // BLKIF_OP_FLUSH_DISKCACHE (3): not offered.
        let flush = Request::one_page(3, 4, 0, reference);
        expect_status("a cache flush", frontend.one(flush)?, RSP_EOPNOTSUPP)?;
        // A grant that does not exist: the backend's map fails.
        let bad_grant = Request::one_page(OP_WRITE, 5, 0, 2047);
        expect_status(
            "a write from an ungranted page",
            frontend.one(bad_grant)?,
            RSP_ERROR,
        )?;
        let bad_copy = Request::one_page(OP_READ, 6, 0, 2047);
        expect_status(
            "a read into an ungranted page",
            frontend.one(bad_copy)?,
            RSP_ERROR,
        )?;
        let response = frontend.one(Request::one_page(OP_READ, 7, 8, reference))?;
        if response.id != 7 || response.operation != OP_READ {
            return Err(Failure::new(
                format_args!("the response to request 7, a read"),
                format_args!("{response:?}"),
            ));
        }
        expect_status("a good read", response, RSP_OKAY)
    })
}

fn write_read_verify(_context: &Context) -> TestResult {
    with_frontend(|frontend| {
        let mut expected = [0u64; DISK_PAGES as usize];
        let (mut mismatches, mut first_mismatch) = (0u64, None);
        let notifications_before = frontend.notifications;
        let start = cpu::counter();
        for pass in 0..PASSES {
            for operation in [OP_WRITE, OP_READ] {
                let (mut next, mut done) = (0, 0);
                while done < DISK_PAGES {
                    while next < DISK_PAGES && !frontend.ring.is_full() {
                        let Some(page) = frontend.take_page() else {
                            break;
                        };
                        if operation == OP_WRITE {
                            expected[next as usize] = fill(page, pass, next);
                        }
                        if frontend.queue(operation, page, next).is_err() {
                            frontend.free_page(page);
                            break;
                        }
                        next += 1;
                    }
                    frontend.push()?;
                    let mut response =
                        frontend.response(format_args!("pass {pass} operation {operation}"))?;
                    loop {
                        let page = (response.id & 0xff) as usize;
                        let disk_page = response.id >> 8;
                        if response.status != RSP_OKAY
                            || response.operation != operation
                            || page >= DATA_PAGES
                            || disk_page >= DISK_PAGES
                        {
                            return Err(Failure::new(
                                format_args!("pass {pass}: an okay response to a request of ours"),
                                format_args!("{response:?}"),
                            ));
                        }
                        if operation == OP_READ && checksum(page) != expected[disk_page as usize] {
                            mismatches += 1;
                            first_mismatch.get_or_insert((pass, disk_page));
                        }
                        frontend.free_page(page);
                        done += 1;
                        match frontend.ring.take_response() {
                            Some(next_response) => response = next_response,
                            None => break,
                        }
                    }
                }
            }
        }
        let elapsed = cpu::counter() - start;
        let requests = u64::from(PASSES) * 2 * DISK_PAGES;
        let bytes = requests * PAGE_SIZE as u64;
        let rate = mebibytes_per_second_hundredths(bytes, elapsed);
        println!(
            "blkfront: {requests} requests ({} writes, {} reads) of 4 KiB, {} MiB in {elapsed} ticks = {} us: {}.{:02} MiB/s; {} notifications sent",
            requests / 2,
            requests / 2,
            bytes >> 20,
            irq::nanoseconds(elapsed) / 1000,
            rate / 100,
            rate % 100,
            frontend.notifications - notifications_before
        );
        if mismatches != 0 {
            return Err(Failure::new(
                format_args!("every page read back with the checksum written"),
                format_args!(
                    "{mismatches} mismatches, the first in pass {} disk page {}",
                    first_mismatch.map_or(0, |(pass, _)| pass),
                    first_mismatch.map_or(0, |(_, page)| page)
                ),
            ));
        }
        Ok(())
    })
}

fn ring_full(_context: &Context) -> TestResult {
    with_frontend(|frontend| {
        if frontend.ring.in_flight() != 0 {
            return Err(Failure::new(
                format_args!("an idle ring"),
                format_args!("{} in flight", frontend.ring.in_flight()),
            ));
        }
        let mut queued = 0;
        while let Some(page) = frontend.take_page() {
            if frontend.queue(OP_READ, page, page as u64).is_err() {
                frontend.free_page(page);
                break;
            }
            queued += 1;
        }
        let refused =
            frontend
                .ring
                .put_request(Request::one_page(OP_READ, 0xff, 0, frontend.data_refs[0]));
        if !frontend.ring.is_full()
            || frontend.ring.free_requests() != 0
            || queued != RING_SIZE
            || refused != Err(RingFull)
        {
            return Err(Failure::new(
                format_args!("RING_FULL with {RING_SIZE} requests queued, one more refused"),
                format_args!(
                    "full {}, {} free, {queued} queued, one more {refused:?}",
                    frontend.ring.is_full(),
                    frontend.ring.free_requests()
                ),
            ));
        }
        let start = cpu::counter();
        frontend.push()?;
        let mut answered = 0u64;
        while answered.count_ones() < RING_SIZE {
            let response = frontend.response(format_args!("a full ring"))?;
            let page = (response.id & 0xff) as usize;
            if response.status != RSP_OKAY || page >= DATA_PAGES || answered & (1 << page) != 0 {
                return Err(Failure::new(
                    format_args!("one okay response per request in flight"),
                    format_args!("{response:?} after {} answers", answered.count_ones()),
                ));
            }
            answered |= 1 << page;
            frontend.free_page(page);
        }
        println!(
            "blkfront: ring full with {RING_SIZE} requests in flight; all answered in {} us",
            irq::nanoseconds(cpu::counter() - start) / 1000
        );
        Ok(())
    })
}

fn latency(_context: &Context) -> TestResult {
    with_frontend(|frontend| {
        for operation in [OP_READ, OP_WRITE] {
            let (mut minimum, mut maximum, mut total) = (u64::MAX, 0u64, 0u64);
            for round in 0..LATENCY_ROUNDS {
                let disk_page = u64::from(round) % DISK_PAGES;
                let request = Request::one_page(
                    operation,
                    disk_page << 8,
                    disk_page * u64::from(SECTORS_PER_PAGE),
                    frontend.data_refs[0],
                );
                let start = cpu::counter();
                let response = frontend.one(request)?;
                let took = cpu::counter() - start;
                expect_status("a request at queue depth 1", response, RSP_OKAY)?;
                minimum = minimum.min(took);
                maximum = maximum.max(took);
                total += took;
            }
            let mean = total / u64::from(LATENCY_ROUNDS);
            println!(
                "blkfront: {} latency at queue depth 1 ({LATENCY_ROUNDS} requests, {}): min {minimum} mean {mean} max {maximum} ticks = mean {} ns",
                if operation == OP_READ { "read" } else { "write" },
                if operation == OP_READ {
                    "GNTTABOP_copy"
                } else {
                    "map, copy, unmap"
                },
                irq::nanoseconds(mean)
            );
        }
        Ok(())
    })
}

fn backend_death(_context: &Context) -> TestResult {
    with_frontend(|frontend| {
        // While the backend has the ring mapped, its grant cannot be revoked.
        if !grants::in_use(RING_REF) {
            return Err(Failure::new(
                format_args!("grant {RING_REF} (the ring) in use by the backend"),
                format_args!("not in use"),
            ));
        }
        if grants::end_access(RING_REF).is_ok() {
            return Err(Failure::new(
                format_args!("revoking the mapped ring grant to fail"),
                format_args!("it succeeded"),
            ));
        }
        let page = frontend.take_page().unwrap_or_default();
        let request = Request::one_page(OP_TEST_CRASH, page as u64, 0, frontend.data_refs[page]);
        if frontend.ring.put_request(request).is_err() {
            return Err(Failure::new(
                format_args!("an idle ring"),
                format_args!("{} in flight", frontend.ring.in_flight()),
            ));
        }
        frontend.push()?;
        let start = cpu::counter();
        let outcome = frontend.next_response(DEATH_TIMEOUT_US);
        let seen_after = cpu::counter() - start;
        let status = match outcome {
            Err(Stall::BackendGone(status)) => status,
            other => {
                return Err(Failure::new(
                    format_args!(
                        "the crash request to fail with the backend gone within {} s",
                        DEATH_TIMEOUT_US / 1_000_000
                    ),
                    format_args!("{other:?}"),
                ))
            }
        };
        // The hypervisor released the dead mapper's in-use bits: every grant ends.
        let mut pending = frontend.data_refs;
        let mut ring_pending = true;
        let revoke_start = cpu::counter();
        let deadline = revoke_start.saturating_add(irq::ticks(REVOKE_TIMEOUT_US));
        let revoked = loop {
            if ring_pending && grants::end_access(RING_REF).is_ok() {
                ring_pending = false;
            }
            for reference in pending.iter_mut().filter(|reference| **reference != 0) {
                if grants::end_access(*reference).is_ok() {
                    *reference = 0;
                }
            }
            if !ring_pending && pending.iter().all(|&reference| reference == 0) {
                break true;
            }
            if cpu::counter() >= deadline {
                break false;
            }
        };
        let revoke_time = cpu::counter() - revoke_start;
        if !revoked {
            let still = pending.iter().find(|&&reference| reference != 0);
            return Err(Failure::new(
                format_args!("the ring and data grants revoked after the backend's death"),
                format_args!(
                    "ring {}, data grant {still:?} still in use after {} ms",
                    if ring_pending { "in use" } else { "revoked" },
                    REVOKE_TIMEOUT_US / 1000
                ),
            ));
        }
        println!(
            "blkfront: backend death seen {} us after the crash request (port status {status}); ring and {DATA_PAGES} data grants revoked in {} us",
            irq::nanoseconds(seen_after) / 1000,
            irq::nanoseconds(revoke_time) / 1000
        );
        Ok(())
    })
}
