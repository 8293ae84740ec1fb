//! `isolation`: stage-2 isolation probes, one per domain (each one ends its domain).
//! Only run when named: `isolation probe=NAME [address=0x...]`.
//!
//! Every probe domain first runs two tests that must pass:
//!
//! - `own_view_of_hypervisor_address`: IPA 0x4008_0000, where the hypervisor's image
//!   sits in physical memory on QEMU `virt`, is our own RAM (below our kernel): it does
//!   not hold the hypervisor's arm64 Image header, and what we write there reads back.
//! - `stage1_execute_never`: a call into Device memory (execute-never in our own stage-1
//!   table) is an instruction abort taken by us (EC 0x21), not something the hypervisor
//!   sees.
//!
//! Then `probe` makes one access that stage 2 must refuse, so the hypervisor ends the
//! domain (`domain NAME crashed: stage-2 ... fault ...`); if the access completes, the
//! test fails:
//!
//! - `read` / `write`: `address` (default 0x4220_0000, where `virt` puts another
//!   domain's RAM) is read / written: beyond our RAM as an IPA.
//! - `device`: `address` (a physical UART, GIC distributor, GICv2 GICH or GICv3
//!   redistributor: device MMIO not assigned to us) is read, then written.
//! - `beyond-ipa`: a stage-1 block maps VA 0x40_0000_0000 to `address` (default 2^39,
//!   beyond the 39-bit IPA space of our stage 2), then it is read.
//! - `exec-xn`: a call into our shared_info page, which our stage-1 maps executable
//!   but the hypervisor maps execute-never at stage 2.

use super::{Context, Failure, Scenario, Test, TestResult};
use crate::{events, exceptions, mmu, platform, println};

/// The scenario.
pub const SCENARIO: Scenario = Scenario::named(
    "isolation",
    &[
        Test::new(
            "own_view_of_hypervisor_address",
            own_view_of_hypervisor_address,
        ),
        Test::new("stage1_execute_never", stage1_execute_never),
        Test::new("probe", probe),
    ],
);

/// The hypervisor's load address on `virt`, as an IPA of ours.
const HYPERVISOR_LOAD_ADDRESS: u64 = 0x4008_0000;
/// The arm64 Image magic "ARM\x64" at offset 0x38 of an Image.
const IMAGE_MAGIC: u32 = 0x644d_5241;
/// Device memory in our stage-1 (everything below 4 GiB that is not RAM).
const DEVICE_ADDRESS: usize = 0x1000_0000;
/// Where `beyond-ipa` maps its gigabyte.
const HIGH_WINDOW: u64 = 0x40_0000_0000;

fn own_view_of_hypervisor_address(_context: &Context) -> TestResult {
    let magic_address = (HYPERVISOR_LOAD_ADDRESS + 0x38) as *mut u32;
    // SAFETY: IPA 0x4008_0000 is in our RAM (identity mapped), below the kernel, used by
    // nothing else in this scenario.
    let seen = unsafe { core::ptr::read_volatile(magic_address) };
    if seen == IMAGE_MAGIC {
        return Err(Failure::new(
            format_args!("no arm64 Image magic at IPA {:#x}", magic_address as u64),
            format_args!("{seen:#x}: the hypervisor's image is visible"),
        ));
    }
    // SAFETY: as above.
    unsafe { core::ptr::write_volatile(magic_address, 0x1234_5678) };
    // SAFETY: as above.
    let back = unsafe { core::ptr::read_volatile(magic_address) };
    if back != 0x1234_5678 {
        return Err(Failure::new(
            format_args!("our write to IPA {:#x} to read back", magic_address as u64),
            format_args!("{back:#x}"),
        ));
    }
    Ok(())
}

fn stage1_execute_never(_context: &Context) -> TestResult {
    exceptions::arm_call(DEVICE_ADDRESS);
    // SAFETY: the target is Device memory, execute-never in our stage-1: the fetch
    // faults at EL1 and the armed handler returns to the caller at once.
    let target: extern "C" fn() = unsafe { core::mem::transmute(DEVICE_ADDRESS) };
    target();
    match exceptions::take() {
        Some(record) if record.exception_class() == 0x21 => Ok(()),
        Some(record) => Err(Failure::new(
            format_args!("an instruction abort (EC 0x21) at {DEVICE_ADDRESS:#x}"),
            format_args!(
                "EC {:#x} ESR {:#x} at {:#x}",
                record.exception_class(),
                record.syndrome,
                record.exception_link
            ),
        )),
        None => Err(Failure::new(
            format_args!("an instruction abort at {DEVICE_ADDRESS:#x}"),
            format_args!("the call returned normally"),
        )),
    }
}

fn address(context: &Context, default: u64) -> Result<u64, Failure> {
    match context.parameter("address") {
        None => Ok(default),
        Some(text) => {
            let digits = text.trim_start_matches("0x");
            u64::from_str_radix(digits, 16).map_err(|_| {
                Failure::new(
                    format_args!("address=0x... in hex"),
                    format_args!("address={text}"),
                )
            })
        }
    }
}

fn probe(context: &Context) -> TestResult {
    let name = context.parameter("probe").unwrap_or("");
    match name {
        "read" | "device" => {
            let target = address(context, 0x4220_0000)?;
            println!("isolation: probe {name}: reading IPA {target:#x}");
            // SAFETY: not memory safety in the Rust sense: the address is no Rust object,
            // and the hypervisor must end the domain at this access.
            let value = unsafe { core::ptr::read_volatile(target as *const u32) };
            if name == "device" {
                println!("isolation: probe {name}: read {value:#x}; writing it");
                // SAFETY: as above.
                unsafe { core::ptr::write_volatile(target as *mut u32, 0) };
            }
            Err(Failure::new(
                format_args!("the hypervisor to end the domain at IPA {target:#x}"),
                format_args!("the access completed ({value:#x})"),
            ))
        }
        "write" => {
            let target = address(context, 0x4220_0000)?;
            println!("isolation: probe write: writing IPA {target:#x}");
            // SAFETY: as for `read`.
            unsafe { core::ptr::write_volatile(target as *mut u32, 0xdead_beef) };
            Err(Failure::new(
                format_args!("the hypervisor to end the domain at IPA {target:#x}"),
                format_args!("the write completed"),
            ))
        }
        "beyond-ipa" => {
            let target = address(context, 1 << 39)?;
            // SAFETY: one CPU; the window maps nothing we use.
            if !unsafe { mmu::map_gigabyte(HIGH_WINDOW, target) } {
                return Err(Failure::new(
                    format_args!("a stage-1 block from {HIGH_WINDOW:#x} to {target:#x}"),
                    format_args!("the slot is taken or out of range"),
                ));
            }
            println!("isolation: probe beyond-ipa: reading VA {HIGH_WINDOW:#x} = IPA {target:#x}");
            // SAFETY: as for `read`.
            let value = unsafe { core::ptr::read_volatile(HIGH_WINDOW as *const u32) };
            Err(Failure::new(
                format_args!("the hypervisor to end the domain at IPA {target:#x}"),
                format_args!("the read completed ({value:#x})"),
            ))
        }
        "exec-xn" => {
            platform::ensure(&context.boot)?;
            let page = events::shared_info_frame() << 12;
            println!("isolation: probe exec-xn: calling into shared_info at IPA {page:#x}");
            // SAFETY: as for `read`: the fetch must fault at stage 2 (execute-never).
            let target: extern "C" fn() = unsafe { core::mem::transmute(page as usize) };
            target();
            Err(Failure::new(
                format_args!("the hypervisor to end the domain at the fetch from {page:#x}"),
                format_args!("the call returned"),
            ))
        }
        other => Err(Failure::new(
            format_args!("probe=read|write|device|beyond-ipa|exec-xn"),
            format_args!("probe={other:?}"),
        )),
    }
}
