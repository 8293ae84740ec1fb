//! Host-side QEMU support for the hypervisor: the command line of each machine
//! ([`machine`]), the splitter and decoder of the UART stream ([`stream`]), the runner that
//! boots an image and enforces a timeout ([`runner`]), and the checker of a guest's test
//! report ([`report`]).
//!
//! The crate knows nothing about how images are built; `xtask` builds them and drives this
//! crate.

pub mod machine;
pub mod report;
pub mod runner;
pub mod stream;

pub use machine::Machine;
pub use report::Report;
pub use runner::{Control, Halt, InputStep, Line, Outcome, RunConfig};
pub use stream::{Event, LogDecoder, Splitter};
