//! Xen's shared I/O rings (`public/io/ring.h`), for both ends of a split driver.
//!
//! One 4 KiB page shared by grant holds a [`SharedRingHeader`] (64 bytes: `req_prod`,
//! `req_event`, `rsp_prod`, `rsp_event`, 48 bytes of padding) followed by a
//! power-of-two array of entries, each the union of one request and one response (its
//! size is the larger of the two, [`entry_size`]). Indices are free-running `u32`s
//! (`RING_IDX`): the slot of index `i` is `i & (size - 1)`, and differences are taken
//! with wrapping arithmetic, so they stay right across the 2^32 wrap.
//!
//! The frontend ([`FrontRing`]) produces requests and consumes responses; the backend
//! ([`BackRing`]) the reverse. Each keeps its own private index (`req_prod_pvt` /
//! `rsp_cons`, `rsp_prod_pvt` / `req_cons`) and publishes with a release store of the
//! shared producer index. Notification suppression follows `ring.h` exactly:
//!
//! - `RING_PUSH_REQUESTS_AND_CHECK_NOTIFY` ([`FrontRing::push_requests`]): publish
//!   `req_prod`, full barrier, then notify only if `req_event` lies in the newly
//!   published range ([`need_notify`]);
//! - `RING_FINAL_CHECK_FOR_RESPONSES` ([`FrontRing::final_check_for_responses`]): with
//!   nothing to consume, set `rsp_event = rsp_cons + 1` (ask to be notified of the
//!   next response), full barrier, and look again, so a response published in between
//!   is not slept through. The backend's counterparts are symmetrical.
//!
//! The peer is not trusted: shared indices are read once per operation and every
//! entry is copied out with a volatile read before it is looked at
//! ([`BackRing::take_request`] also bounds what a hostile `req_prod` can make it
//! consume, as `RING_REQUEST_CONS_OVERFLOW`). The entries are `Copy` plain data, read
//! and written with volatile accesses, so a concurrent peer write can only produce a
//! wrong value, never undefined behaviour on our side's Rust objects.

use core::marker::PhantomData;
use core::sync::atomic::{fence, AtomicU32, Ordering};

/// The size of a shared ring page.
pub const PAGE_SIZE: usize = 4096;

/// The shared header at the start of the ring page (`struct NAME_sring` before `ring`).
#[derive(Debug)]
#[repr(C)]
pub struct SharedRingHeader {
    /// Requests published by the frontend (the next free index).
    pub req_prod: AtomicU32,
    /// The backend wants a notification when `req_prod` passes this index.
    pub req_event: AtomicU32,
    /// Responses published by the backend.
    pub rsp_prod: AtomicU32,
    /// The frontend wants a notification when `rsp_prod` passes this index.
    pub rsp_event: AtomicU32,
    /// Padding to 64 bytes (`__pad[48]`).
    pub pad: [u8; 48],
}
assert_layout!(SharedRingHeader, 64, { req_prod: 0, req_event: 4, rsp_prod: 8, rsp_event: 12, pad: 16 });

/// The byte offset of entry 0 in the page.
pub const ENTRIES_OFFSET: usize = core::mem::size_of::<SharedRingHeader>();

/// The size of one ring entry: C's `union { Req req; Rsp rsp; }`, the larger of the two
/// rounded up to the stricter alignment.
pub const fn entry_size<Req, Rsp>() -> usize {
    let size = max(core::mem::size_of::<Req>(), core::mem::size_of::<Rsp>());
    let align = max(core::mem::align_of::<Req>(), core::mem::align_of::<Rsp>());
    size.div_ceil(align) * align
}

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

/// Entries in a ring of `entry_size`-byte entries on one page (`__RING_SIZE`): as many
/// as fit after the header, rounded down to a power of two (0 if none fits).
pub const fn ring_size(entry_size: usize) -> u32 {
    if entry_size == 0 || entry_size > PAGE_SIZE - ENTRIES_OFFSET {
        return 0;
    }
    let fit = ((PAGE_SIZE - ENTRIES_OFFSET) / entry_size) as u32;
    1 << (31 - fit.leading_zeros())
}

/// Whether a producer that moved its shared index from `old` to `new` must notify a
/// peer that asked to be woken at `event`: `event` lies in `(old, new]`, with wrapping
/// arithmetic (`ring.h`: `(RING_IDX)(new - event) < (RING_IDX)(new - old)`).
pub const fn need_notify(old: u32, new: u32, event: u32) -> bool {
    new.wrapping_sub(event) < new.wrapping_sub(old)
}

/// Resets the shared header (`SHARED_RING_INIT`): both producer indices 0, both event
/// indices 1 (the first request and the first response notify), padding zeroed.
pub fn init_shared(header: &SharedRingHeader) {
    header.req_prod.store(0, Ordering::Relaxed);
    header.rsp_prod.store(0, Ordering::Relaxed);
    header.req_event.store(1, Ordering::Relaxed);
    header.rsp_event.store(1, Ordering::Release);
}

/// The page shared by both ends: where the header and entries are.
#[derive(Clone, Copy, Debug)]
struct RingPage<Req, Rsp> {
    page: *mut u8,
    size: u32,
    _entries: PhantomData<(Req, Rsp)>,
}

impl<Req: Copy, Rsp: Copy> RingPage<Req, Rsp> {
    /// # Safety
    /// As [`FrontRing::new`].
    const unsafe fn new(page: *mut u8) -> Self {
        RingPage {
            page,
            size: ring_size(entry_size::<Req, Rsp>()),
            _entries: PhantomData,
        }
    }

    fn header(&self) -> &SharedRingHeader {
        // SAFETY: `page` is valid, 4 KiB and suitably aligned for the life of the ring
        // (constructor contract); the header is made of atomics, so concurrent peer
        // writes are fine.
        unsafe { &*(self.page as *const SharedRingHeader) }
    }

    /// The address of the entry holding index `index`.
    fn slot(&self, index: u32) -> *mut u8 {
        let slot = (index & (self.size - 1)) as usize;
        // SAFETY: `slot < size` and `ENTRIES_OFFSET + size * entry_size <= PAGE_SIZE`
        // (`ring_size`), so the result stays inside the page.
        unsafe {
            self.page
                .add(ENTRIES_OFFSET + slot * entry_size::<Req, Rsp>())
        }
    }

    fn write_request(&self, index: u32, request: Req) {
        // SAFETY: the slot lies in the page and is aligned for `Req` (entries are
        // multiples of the union's alignment, the page is page aligned); `Req` is plain
        // data, and the peer does not use this slot until we publish it.
        unsafe { core::ptr::write_volatile(self.slot(index) as *mut Req, request) }
    }

    fn read_request(&self, index: u32) -> Req {
        // SAFETY: as in `write_request`; a hostile peer writing concurrently can only
        // make the value wrong, and `Req` must accept any bit pattern (plain integers).
        unsafe { core::ptr::read_volatile(self.slot(index) as *const Req) }
    }

    fn write_response(&self, index: u32, response: Rsp) {
        // SAFETY: as in `write_request`, for `Rsp`.
        unsafe { core::ptr::write_volatile(self.slot(index) as *mut Rsp, response) }
    }

    fn read_response(&self, index: u32) -> Rsp {
        // SAFETY: as in `read_request`, for `Rsp`.
        unsafe { core::ptr::read_volatile(self.slot(index) as *const Rsp) }
    }
}

/// Why a request or response could not be queued.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingFull;

/// The frontend's view of a ring (`struct NAME_front_ring`): it produces requests and
/// consumes responses.
#[derive(Debug)]
pub struct FrontRing<Req, Rsp> {
    page: RingPage<Req, Rsp>,
    /// Requests queued so far (published or not).
    req_prod_pvt: u32,
    /// Responses consumed so far.
    rsp_cons: u32,
}

impl<Req: Copy, Rsp: Copy> FrontRing<Req, Rsp> {
    /// Takes over `page`, resets its shared header ([`init_shared`]) and starts at index
    /// 0 (`SHARED_RING_INIT` + `FRONT_RING_INIT`). The caller zeroes the entries if it
    /// wants them clean.
    ///
    /// # Safety
    /// `page` must be a page-aligned, writable 4 KiB page, valid for as long as the ring
    /// is used, touched by nothing else on this side, and `Req` and `Rsp` must be plain
    /// data that accept any bit pattern (the peer can write anything).
    pub unsafe fn new(page: *mut u8) -> Self {
        // SAFETY: the caller's contract is `RingPage::new`'s.
        let page = unsafe { RingPage::new(page) };
        init_shared(page.header());
        FrontRing {
            page,
            req_prod_pvt: 0,
            rsp_cons: 0,
        }
    }

    /// Entries in the ring (`RING_SIZE`).
    pub fn size(&self) -> u32 {
        self.page.size
    }

    /// The shared header.
    pub fn header(&self) -> &SharedRingHeader {
        self.page.header()
    }

    /// Requests that can still be queued (`RING_FREE_REQUESTS`).
    pub fn free_requests(&self) -> u32 {
        self.size() - self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Whether every slot holds a request awaiting its response (`RING_FULL`).
    pub fn is_full(&self) -> bool {
        self.free_requests() == 0
    }

    /// Requests queued whose responses have not been consumed yet.
    pub fn in_flight(&self) -> u32 {
        self.req_prod_pvt.wrapping_sub(self.rsp_cons)
    }

    /// Queues `request` in the next slot (`RING_GET_REQUEST(req_prod_pvt++)`); the
    /// backend sees it only after [`FrontRing::push_requests`].
    pub fn put_request(&mut self, request: Req) -> Result<(), RingFull> {
        if self.is_full() {
            return Err(RingFull);
        }
        self.page.write_request(self.req_prod_pvt, request);
        self.req_prod_pvt = self.req_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Publishes the queued requests; returns whether the backend must be notified
    /// (`RING_PUSH_REQUESTS_AND_CHECK_NOTIFY`).
    pub fn push_requests(&mut self) -> bool {
        let header = self.page.header();
        let old = header.req_prod.load(Ordering::Relaxed);
        let new = self.req_prod_pvt;
        // Release: the entries are visible before the index (`wmb`).
        header.req_prod.store(new, Ordering::Release);
        // `mb`: the index is visible before we read the backend's `req_event`.
        fence(Ordering::SeqCst);
        need_notify(old, new, header.req_event.load(Ordering::Acquire))
    }

    /// Responses published and not consumed yet (`RING_HAS_UNCONSUMED_RESPONSES`).
    pub fn unconsumed_responses(&self) -> u32 {
        let produced = self.page.header().rsp_prod.load(Ordering::Acquire);
        // Never more than we have in flight, whatever the backend published.
        produced.wrapping_sub(self.rsp_cons).min(self.in_flight())
    }

    /// Consumes the next response, if one was published.
    pub fn take_response(&mut self) -> Option<Rsp> {
        if self.unconsumed_responses() == 0 {
            return None;
        }
        let response = self.page.read_response(self.rsp_cons);
        self.rsp_cons = self.rsp_cons.wrapping_add(1);
        Some(response)
    }

    /// Whether responses are waiting; when none are, asks to be notified of the next
    /// one and checks once more (`RING_FINAL_CHECK_FOR_RESPONSES`). After `false` the
    /// frontend may sleep until the backend's next notification.
    pub fn final_check_for_responses(&mut self) -> bool {
        if self.unconsumed_responses() > 0 {
            return true;
        }
        let header = self.page.header();
        header
            .rsp_event
            .store(self.rsp_cons.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.unconsumed_responses() > 0
    }
}

/// The backend's view of a ring (`struct NAME_back_ring`): it consumes requests and
/// produces responses.
#[derive(Debug)]
pub struct BackRing<Req, Rsp> {
    page: RingPage<Req, Rsp>,
    /// Responses queued so far (published or not).
    rsp_prod_pvt: u32,
    /// Requests consumed so far.
    req_cons: u32,
}

impl<Req: Copy, Rsp: Copy> BackRing<Req, Rsp> {
    /// Attaches to a ring the frontend initialised (`BACK_RING_INIT`): both private
    /// indices 0. The shared header is not written.
    ///
    /// # Safety
    /// As [`FrontRing::new`] (the page is the frontend's, mapped here).
    pub unsafe fn attach(page: *mut u8) -> Self {
        BackRing {
            // SAFETY: the caller's contract is `RingPage::new`'s.
            page: unsafe { RingPage::new(page) },
            rsp_prod_pvt: 0,
            req_cons: 0,
        }
    }

    /// Entries in the ring (`RING_SIZE`).
    pub fn size(&self) -> u32 {
        self.page.size
    }

    /// The shared header.
    pub fn header(&self) -> &SharedRingHeader {
        self.page.header()
    }

    /// Requests that may be consumed now (`RING_HAS_UNCONSUMED_REQUESTS`): those
    /// published, but never more than the free response slots, so a frontend that
    /// publishes too far cannot make us overwrite responses it has not read.
    pub fn unconsumed_requests(&self) -> u32 {
        let published = self
            .page
            .header()
            .req_prod
            .load(Ordering::Acquire)
            .wrapping_sub(self.req_cons);
        let room = self.size() - self.req_cons.wrapping_sub(self.rsp_prod_pvt);
        published.min(room)
    }

    /// Consumes the next request, if one may be consumed (see
    /// [`BackRing::unconsumed_requests`]); returns a private copy.
    pub fn take_request(&mut self) -> Option<Req> {
        if self.unconsumed_requests() == 0 {
            return None;
        }
        let request = self.page.read_request(self.req_cons);
        self.req_cons = self.req_cons.wrapping_add(1);
        Some(request)
    }

    /// Queues a response in the next slot; the frontend sees it only after
    /// [`BackRing::push_responses`]. Fails only if there is no consumed request to
    /// answer.
    pub fn put_response(&mut self, response: Rsp) -> Result<(), RingFull> {
        if self.req_cons.wrapping_sub(self.rsp_prod_pvt) == 0 {
            return Err(RingFull);
        }
        self.page.write_response(self.rsp_prod_pvt, response);
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Publishes the queued responses; returns whether the frontend must be notified
    /// (`RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`).
    pub fn push_responses(&mut self) -> bool {
        let header = self.page.header();
        let old = header.rsp_prod.load(Ordering::Relaxed);
        let new = self.rsp_prod_pvt;
        header.rsp_prod.store(new, Ordering::Release);
        fence(Ordering::SeqCst);
        need_notify(old, new, header.rsp_event.load(Ordering::Acquire))
    }

    /// Whether requests are waiting; when none are, asks to be notified of the next one
    /// and checks once more (`RING_FINAL_CHECK_FOR_REQUESTS`).
    pub fn final_check_for_requests(&mut self) -> bool {
        if self.unconsumed_requests() > 0 {
            return true;
        }
        self.page
            .header()
            .req_event
            .store(self.req_cons.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::SeqCst);
        self.unconsumed_requests() > 0
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::boxed::Box;
    use std::vec::Vec;

    /// A 112-byte request and 16-byte response, as blkif's.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    #[repr(C)]
    struct Request {
        id: u64,
        body: [u64; 13],
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    #[repr(C)]
    struct Response {
        id: u64,
        status: i64,
    }

    #[repr(C, align(4096))]
    struct Page([u8; PAGE_SIZE]);

    fn page() -> Box<Page> {
        Box::new(Page([0xa5; PAGE_SIZE]))
    }

    fn request(id: u64) -> Request {
        Request { id, body: [id; 13] }
    }

    /// Both ends over one page, with every index started at `start`.
    fn rings(
        page: &mut Page,
        start: u32,
    ) -> (FrontRing<Request, Response>, BackRing<Request, Response>) {
        let pointer = page.0.as_mut_ptr();
        // SAFETY: the page outlives the rings in every test, and the two ends are the
        // two sides of the protocol.
        let (mut front, mut back) = unsafe { (FrontRing::new(pointer), BackRing::attach(pointer)) };
        let header = front.header();
        header.req_prod.store(start, Ordering::Relaxed);
        header.rsp_prod.store(start, Ordering::Relaxed);
        header
            .req_event
            .store(start.wrapping_add(1), Ordering::Relaxed);
        header
            .rsp_event
            .store(start.wrapping_add(1), Ordering::Relaxed);
        front.req_prod_pvt = start;
        front.rsp_cons = start;
        back.rsp_prod_pvt = start;
        back.req_cons = start;
        (front, back)
    }

    #[test]
    fn sizes_are_xens() {
        assert_eq!(entry_size::<Request, Response>(), 112);
        // blkif: (4096 - 64) / 112 = 36, rounded down to 32.
        assert_eq!(ring_size(112), 32);
        assert_eq!(ring_size(64), 32);
        assert_eq!(ring_size(63), 64);
        assert_eq!(ring_size(1), 2048);
        assert_eq!(ring_size(4032), 1);
        assert_eq!(ring_size(4033), 0);
        assert_eq!(ring_size(0), 0);
        assert_eq!(entry_size::<u8, [u16; 3]>(), 6);
        assert_eq!(entry_size::<[u8; 9], u64>(), 16);
    }

    #[test]
    fn notify_window_wraps() {
        assert!(need_notify(0, 1, 1));
        assert!(!need_notify(1, 2, 1));
        assert!(need_notify(0, 5, 3));
        assert!(!need_notify(0, 5, 6));
        assert!(need_notify(u32::MAX - 1, 2, 0));
        assert!(need_notify(u32::MAX - 1, 2, u32::MAX));
        assert!(!need_notify(u32::MAX - 1, 2, 3));
        assert!(!need_notify(4, 4, 4));
    }

    #[test]
    fn init_sets_xens_header() {
        let mut page = page();
        // SAFETY: the page outlives the ring.
        let front: FrontRing<Request, Response> = unsafe { FrontRing::new(page.0.as_mut_ptr()) };
        let header = front.header();
        assert_eq!(header.req_prod.load(Ordering::Relaxed), 0);
        assert_eq!(header.rsp_prod.load(Ordering::Relaxed), 0);
        assert_eq!(header.req_event.load(Ordering::Relaxed), 1);
        assert_eq!(header.rsp_event.load(Ordering::Relaxed), 1);
        assert_eq!(front.size(), 32);
        assert_eq!(front.free_requests(), 32);
    }

    fn fill_and_drain(start: u32) {
        let mut page = page();
        let (mut front, mut back) = rings(&mut page, start);
        let size = front.size();
        for id in 0..u64::from(size) {
            assert!(!front.is_full());
            front.put_request(request(id)).unwrap();
        }
        assert!(front.is_full());
        assert_eq!(front.put_request(request(99)), Err(RingFull));
        // Nothing visible before the push; the first push notifies (req_event = start + 1).
        assert_eq!(back.unconsumed_requests(), 0);
        assert!(front.push_requests());
        assert_eq!(back.unconsumed_requests(), size);
        let mut seen = Vec::new();
        while let Some(request) = back.take_request() {
            back.put_response(Response {
                id: request.id,
                status: 0,
            })
            .unwrap();
            seen.push(request.id);
        }
        assert_eq!(seen, (0..u64::from(size)).collect::<Vec<_>>());
        assert!(front.is_full(), "responses unseen until pushed");
        // The frontend has not asked for a response notification beyond start + 1.
        assert!(back.push_responses());
        let mut answered = 0;
        while let Some(response) = front.take_response() {
            assert_eq!(response.id, answered);
            answered += 1;
        }
        assert_eq!(answered, u64::from(size));
        assert_eq!(front.free_requests(), size);
        assert!(!front.final_check_for_responses());
        assert!(!back.final_check_for_requests());
    }

    #[test]
    fn full_ring_round_trip() {
        fill_and_drain(0);
    }

    #[test]
    fn full_ring_round_trip_across_the_wrap() {
        fill_and_drain(u32::MAX - 5);
        fill_and_drain(u32::MAX);
    }

    #[test]
    fn notifications_are_suppressed_while_the_peer_is_awake() {
        let mut page = page();
        let (mut front, mut back) = rings(&mut page, u32::MAX - 2);
        front.put_request(request(1)).unwrap();
        assert!(front.push_requests(), "req_event = start + 1: notify");
        // The backend is busy (has not re-armed req_event): no notification.
        front.put_request(request(2)).unwrap();
        assert!(!front.push_requests());
        assert_eq!(back.take_request().map(|r| r.id), Some(1));
        assert_eq!(back.take_request().map(|r| r.id), Some(2));
        // Idle: the final check re-arms and finds nothing; the next push notifies.
        assert!(!back.final_check_for_requests());
        front.put_request(request(3)).unwrap();
        assert!(front.push_requests());
        // A request published between the backend's first look and its re-arm is
        // found by the final check.
        assert!(back.final_check_for_requests());
        assert_eq!(back.take_request().map(|r| r.id), Some(3));
        for id in 1..=3 {
            back.put_response(Response { id, status: 0 }).unwrap();
        }
        assert!(back.put_response(Response { id: 4, status: 0 }).is_err());
        assert!(back.push_responses(), "rsp_event = start + 1");
        assert!(front.final_check_for_responses());
        assert_eq!(front.take_response().map(|r| r.id), Some(1));
        // The frontend is still consuming: a further push would not notify.
        assert!(!back.push_responses());
        while front.take_response().is_some() {}
        assert!(!front.final_check_for_responses());
        assert_eq!(
            front.header().rsp_event.load(Ordering::Relaxed),
            (u32::MAX - 2).wrapping_add(4)
        );
    }

    #[test]
    fn a_hostile_frontend_cannot_overrun_the_backend() {
        let mut page = page();
        let (_front, mut back) = rings(&mut page, 7);
        // The frontend claims a billion requests: only one ring's worth is consumable.
        back.header()
            .req_prod
            .store(1_000_000_007, Ordering::Release);
        assert_eq!(back.unconsumed_requests(), 32);
        for _ in 0..32 {
            assert!(back.take_request().is_some());
        }
        assert!(back.take_request().is_none());
        back.put_response(Response { id: 0, status: 0 }).unwrap();
        assert_eq!(back.unconsumed_requests(), 1);
    }

    #[test]
    fn a_hostile_backend_cannot_fake_responses() {
        let mut page = page();
        let (mut front, _back) = rings(&mut page, 0);
        front.put_request(request(1)).unwrap();
        front.push_requests();
        front.header().rsp_prod.store(500, Ordering::Release);
        assert_eq!(front.unconsumed_responses(), 1);
        assert!(front.take_response().is_some());
        assert!(front.take_response().is_none());
        assert_eq!(front.free_requests(), 32);
    }
}
