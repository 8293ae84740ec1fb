//! The only assembly in pv-guest: entry and vectors, and CPU registers and instructions.

pub mod cpu;
pub mod entry;
