//! The block-device split-driver protocol: a subset of Xen's `public/io/blkif.h`, with
//! this project's conventions for what Xen negotiates through xenstore (which we do not
//! have). `docs/split-driver.md` describes the whole protocol.
//!
//! Requests and responses have Xen's layouts (112 and 16 bytes; a ring page holds 32
//! of them, [`RING_SIZE`]). Only `BLKIF_OP_READ` and `BLKIF_OP_WRITE` with one segment
//! are served, plus [`OP_TEST_CRASH`], a test-only operation of ours.

use crate::ring;

/// `BLKIF_OP_READ`: read sectors into the segments' pages.
pub const OP_READ: u8 = 0;
/// `BLKIF_OP_WRITE`: write the segments' pages to the sectors.
pub const OP_WRITE: u8 = 1;
/// Not Xen's: a test-only request that tells the backend to crash while it has the
/// request's data page mapped, without answering (how the frontend's handling of a dead
/// backend is tested). Xen's operations are 0..=6.
pub const OP_TEST_CRASH: u8 = 0xEE;

/// `BLKIF_RSP_OKAY`.
pub const RSP_OKAY: i16 = 0;
/// `BLKIF_RSP_ERROR`.
pub const RSP_ERROR: i16 = -1;
/// `BLKIF_RSP_EOPNOTSUPP`: the operation is not supported.
pub const RSP_EOPNOTSUPP: i16 = -2;

/// Bytes in a sector (blkif sectors are always 512 bytes).
pub const SECTOR_SIZE: u64 = 512;
/// Sectors in one 4 KiB page.
pub const SECTORS_PER_PAGE: u8 = 8;
/// `BLKIF_MAX_SEGMENTS_PER_REQUEST`.
pub const MAX_SEGMENTS: usize = 11;

/// Our convention (Xen puts it in xenstore as `ring-ref`): the frontend grants the ring
/// page to the backend at this grant reference, the first one Linux does not reserve.
pub const RING_REF: u32 = 8;

/// One data segment (`struct blkif_request_segment`, 8 bytes): sectors
/// `first_sect..=last_sect` of the page granted as `gref`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Segment {
    /// The grant reference of the data page.
    pub gref: u32,
    /// The first sector of the page used (0..=7).
    pub first_sect: u8,
    /// The last sector of the page used (first_sect..=7).
    pub last_sect: u8,
    /// Padding (C's implicit padding, made explicit).
    pub pad: u16,
}
assert_layout!(Segment, 8, { gref: 0, first_sect: 4, last_sect: 5, pad: 6 });

/// A request (`struct blkif_request`, 112 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Request {
    /// `BLKIF_OP_*` (or [`OP_TEST_CRASH`]).
    pub operation: u8,
    /// Segments used (1..=[`MAX_SEGMENTS`]; this backend serves exactly 1).
    pub nr_segments: u8,
    /// The virtual device (`blkif_vdev_t`); ignored (one device per ring).
    pub handle: u16,
    /// Padding (C's implicit padding, made explicit).
    pub pad: u32,
    /// Echoed in the response.
    pub id: u64,
    /// The first sector (512 bytes each) on the device.
    pub sector_number: u64,
    /// The data pages.
    pub segments: [Segment; MAX_SEGMENTS],
}
assert_layout!(Request, 112, {
    operation: 0,
    nr_segments: 1,
    handle: 2,
    pad: 4,
    id: 8,
    sector_number: 16,
    segments: 24,
});

/// A response (`struct blkif_response`, 16 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Response {
    /// The request's `id`.
    pub id: u64,
    /// The request's operation.
    pub operation: u8,
    /// Padding (C's implicit padding, made explicit).
    pub pad: u8,
    /// `BLKIF_RSP_*`.
    pub status: i16,
    /// Padding to the struct's alignment.
    pub pad2: u32,
}
assert_layout!(Response, 16, { id: 0, operation: 8, pad: 9, status: 10, pad2: 12 });

/// Entries in a blkif ring page: 32, as Xen's `__CONST_RING_SIZE(blkif, 4096)`.
pub const RING_SIZE: u32 = ring::ring_size(ring::entry_size::<Request, Response>());
const _: () = assert!(RING_SIZE == 32);

/// The frontend's end of a blkif ring.
pub type FrontRing = ring::FrontRing<Request, Response>;
/// The backend's end of a blkif ring.
pub type BackRing = ring::BackRing<Request, Response>;

impl Request {
    /// A one-segment request for the whole 4 KiB page granted as `gref`, at sector
    /// `sector_number`.
    pub fn one_page(operation: u8, id: u64, sector_number: u64, gref: u32) -> Request {
        let mut segments = [Segment::default(); MAX_SEGMENTS];
        segments[0] = Segment {
            gref,
            first_sect: 0,
            last_sect: SECTORS_PER_PAGE - 1,
            pad: 0,
        };
        Request {
            operation,
            nr_segments: 1,
            handle: 0,
            pad: 0,
            id,
            sector_number,
            segments,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_page_request_covers_the_page() {
        let request = Request::one_page(OP_WRITE, 7, 16, 42);
        assert_eq!(request.nr_segments, 1);
        assert_eq!(request.segments[0].gref, 42);
        assert_eq!(request.segments[0].first_sect, 0);
        assert_eq!(request.segments[0].last_sect, 7);
        assert_eq!(
            ring::entry_size::<Request, Response>(),
            core::mem::size_of::<Request>()
        );
    }
}
