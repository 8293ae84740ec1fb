//! The hypervisor's library: portable logic (compiled and unit-tested on the host) and the
//! architecture layer it runs on (`arch::aarch64` on the target, `arch::fake` in host tests).
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]
// Guest input must never panic the hypervisor (house rules): no `unwrap`, `expect` or
// `panic!` outside tests. The few boot-time exceptions carry an `#[allow]` saying why no
// guest can reach them.
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]
// Nor indexing or slicing that can panic: `get` and friends, with the failure handled.
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod addr;
// The GIC drivers index their register arrays by CPU, list register and INTID that the
// hypervisor (not a guest) chooses; they are not converted yet.
#[allow(clippy::indexing_slicing)]
pub mod arch;
pub mod bits;
pub mod bootpack;
pub mod console;
pub mod console_input;
pub mod cpu;
pub mod crc32;
pub mod domain;
pub mod domain_dt;
pub mod drivers;
pub mod dt;
pub mod esr;
pub mod event_channel;
pub mod grant_table;
pub mod guest_memory;
pub mod hypercall;
pub mod hypervisor;
#[cfg(test)]
mod isolation_tests;
pub mod lifecycle;
pub mod mm;
pub mod platform;
pub mod scheduler;
pub mod serial;
pub mod vcpu;
pub mod vgic;
pub mod virtual_interrupts;
