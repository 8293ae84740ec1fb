//! `crash`: a store to an IPA with no stage-2 mapping. Only run when named.
//!
//! IPA 0x1000_0000 is neither RAM nor a device we are given. Our stage-1 maps it as
//! Device (everything below 4 GiB that is not RAM is), so the store reaches stage 2 and
//! faults there: the hypervisor must end the domain. The test never completes; if the
//! store does complete, that is reported as a failure.

use super::{Context, Failure, Scenario, Test, TestResult};
use crate::println;

/// The scenario.
pub const SCENARIO: Scenario = Scenario::named(
    "crash",
    &[Test::new("unmapped_ipa_store", store_to_unmapped_ipa)],
);

/// Not RAM, not mapped by stage 2.
const UNMAPPED_IPA: usize = 0x1000_0000;

fn store_to_unmapped_ipa(_context: &Context) -> TestResult {
    println!("crash: writing to an unmapped IPA");
    // SAFETY: not memory safety in the Rust sense: the address is no Rust object, and
    // the point is that the hypervisor stops the domain at this store.
    unsafe { core::ptr::write_volatile(UNMAPPED_IPA as *mut u32, 0xdead_beef) };
    Err(Failure::new(
        format_args!("the hypervisor to end the domain at the store to {UNMAPPED_IPA:#x}"),
        format_args!("the store completing"),
    ))
}
