//! Flattened device trees (DTB, version 17): a [`reader`] for untrusted input that never
//! panics, and a heap-free [`writer`] that builds a tree into a caller's buffer.
//!
//! Both share the format constants below and the [`DtError`] type.

pub mod reader;
pub mod writer;

pub use reader::{
    Cells, Children, Fdt, MemoryReservations, Node, Nodes, Properties, Property, RegIter,
    StringList,
};
pub use writer::FdtWriter;

/// The magic number at the start of every DTB.
pub const FDT_MAGIC: u32 = 0xd00d_feed;
/// Size of the version 17 header in bytes.
pub const HEADER_SIZE: usize = 40;
/// The version the writer produces.
pub const VERSION: u32 = 17;
/// The oldest version whose reader can read what the writer produces.
pub const LAST_COMPATIBLE_VERSION: u32 = 16;
/// The oldest version the reader accepts.
pub const MIN_VERSION: u32 = 16;
/// Deepest node nesting the reader and writer handle (the root is depth 1).
pub const MAX_DEPTH: usize = 16;

/// Structure-block token: start of a node, followed by its NUL-terminated name.
pub const FDT_BEGIN_NODE: u32 = 1;
/// Structure-block token: end of a node.
pub const FDT_END_NODE: u32 = 2;
/// Structure-block token: a property (length, name offset, value).
pub const FDT_PROP: u32 = 3;
/// Structure-block token: nothing.
pub const FDT_NOP: u32 = 4;
/// Structure-block token: end of the structure block.
pub const FDT_END: u32 = 9;

/// Why a device tree could not be read or written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtError {
    /// The input is shorter than its header says (or than a header).
    Truncated,
    /// The magic number is not [`FDT_MAGIC`].
    BadMagic,
    /// The version is older than [`MIN_VERSION`] or incompatible.
    UnsupportedVersion {
        /// The header's version.
        version: u32,
    },
    /// A header offset or size points outside the tree or is misaligned.
    BadHeader,
    /// The structure block is malformed at this offset (inside the structure block).
    BadStructure {
        /// Byte offset inside the structure block.
        offset: usize,
    },
    /// A node or property name is not valid UTF-8 or a string offset is out of bounds.
    BadString,
    /// Nodes nest deeper than [`MAX_DEPTH`].
    TooDeep,
    /// The writer's buffer is too small.
    NoSpace,
    /// `end_node` without a matching `begin_node`, `finish` with nodes still open, or a
    /// second root node.
    Unbalanced,
    /// A writer call came in the wrong order (a memory reservation after the first node,
    /// a property outside any node, or a call after `finish`).
    OutOfOrder,
    /// A node or property name (or string value) given to the writer is not allowed
    /// (empty, contains NUL or `/`).
    BadName,
    /// A parameter given to a tree generator is out of range (for example a vCPU count or
    /// an interrupt number).
    BadParameter,
}

impl DtError {
    /// A short English description.
    pub fn describe(&self) -> &'static str {
        match self {
            DtError::Truncated => "device tree is truncated",
            DtError::BadMagic => "not a device tree (bad magic)",
            DtError::UnsupportedVersion { .. } => "unsupported device tree version",
            DtError::BadHeader => "device tree header offsets or sizes are out of bounds",
            DtError::BadStructure { .. } => "device tree structure block is malformed",
            DtError::BadString => "device tree name or string is malformed",
            DtError::TooDeep => "device tree nodes nest too deeply",
            DtError::NoSpace => "device tree buffer is too small",
            DtError::Unbalanced => "device tree nodes are unbalanced",
            DtError::OutOfOrder => "device tree writer calls are out of order",
            DtError::BadName => "device tree name or string value is not allowed",
            DtError::BadParameter => "device tree parameter is out of range",
        }
    }
}
