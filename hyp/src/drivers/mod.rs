//! Device drivers the hypervisor owns. Each takes its base address from the device tree.

pub mod pl011;
