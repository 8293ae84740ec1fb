//! `hello`: the smallest conversation with the hypervisor.
//!
//! Prints `Hello from pv-guest` with the version from `XENVER_version` and feature
//! submap 0, then checks the version is Xen 4.17's and that `CONSOLEIO_write` works.

use super::{expect_return, Context, Failure, Scenario, Test, TestResult};
use crate::abi::guest::{console_write, get_features, hypercall, xen_version};
use crate::abi::hypercall::XEN_VERSION;
use crate::abi::xen_version::VERSION;
use crate::println;

/// The scenario.
pub const SCENARIO: Scenario = Scenario {
    in_default_set: true,
    introduce: Some(introduce),
    ..Scenario::named(
        "hello",
        &[
            Test::new("xen_version", version_is_4_17),
            Test::new("console_write", console_write_works),
        ],
    )
};

/// `XENVER_version` of Xen 4.17: `major << 16 | minor`.
const XEN_4_17: u64 = 0x0004_0011;

fn introduce(_context: &Context) {
    let (major, minor) = xen_version();
    match get_features(0) {
        Ok(submap) => {
            println!("Hello from pv-guest: Xen {major}.{minor}, features submap 0 = {submap:#010x}")
        }
        Err(errno) => println!(
            "Hello from pv-guest: Xen {major}.{minor}, features submap 0 unavailable (-{errno:?})"
        ),
    }
}

fn version_is_4_17(_context: &Context) -> TestResult {
    // SAFETY: XENVER_version takes no pointer.
    let raw = unsafe { hypercall(XEN_VERSION, [u64::from(VERSION), 0, 0, 0, 0]) };
    expect_return(format_args!("xen_version(XENVER_version)"), raw, XEN_4_17)?;
    let (major, minor) = xen_version();
    if (major, minor) != (4, 17) {
        return Err(Failure::new(
            format_args!("xen_version() = (4, 17)"),
            format_args!("({major}, {minor})"),
        ));
    }
    Ok(())
}

fn console_write_works(_context: &Context) -> TestResult {
    match console_write(b"hello::console_write: one line through CONSOLEIO_write\n") {
        Ok(()) => Ok(()),
        Err(errno) => Err(Failure::new(
            format_args!("console_write -> Ok"),
            format_args!("-{errno:?}"),
        )),
    }
}
