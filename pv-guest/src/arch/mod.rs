//! The only assembly in pv-guest: entry and vectors, CPU registers and instructions,
//! and the MMIO accessors.

pub mod cpu;
pub mod entry;
pub mod mmio;
