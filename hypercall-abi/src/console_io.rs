//! `console_io` sub-ops (`public/xen.h`): the hypervisor's own console.
//!
//! Arguments: `x0` = cmd, `x1` = count (32 bits), `x2` = guest virtual address of the
//! buffer. Xen treats cmd and count as `unsigned int`; the upper halves of `x0` and
//! `x1` are ignored.

/// `CONSOLEIO_write`: write `count` bytes from the buffer. Returns 0.
pub const WRITE: u32 = 0;
/// `CONSOLEIO_read`: read up to `count` bytes of console input into the buffer.
/// Returns the number of bytes read (0 when none is queued).
pub const READ: u32 = 1;

/// The largest `count` `CONSOLEIO_read` accepts. A larger count is `-E2BIG` so that a
/// byte count can never collide with a negative errno (Xen 4.17 `do_console_io`).
pub const READ_MAX_COUNT: u32 = i32::MAX as u32;
