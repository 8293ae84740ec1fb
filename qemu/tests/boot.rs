//! Runner tests against the real `qemu-system-aarch64` with a hand-assembled image that
//! writes to the PL011 and then powers off (PSCI `SYSTEM_OFF`) or spins. Skipped (with a
//! note) when QEMU is not installed.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use qemu::runner::{self, Control, Line, RunConfig};
use qemu::Machine;

/// `movz x1, #0x0900, lsl #16`: x1 = the `virt` PL011 data register.
const LOAD_UART: u32 = 0xD2A1_2001;
/// `str w2, [x1]`.
const STORE_W2: u32 = 0xB900_0022;
/// `movz w0, #8; movk w0, #0x8400, lsl #16; smc #0`: PSCI SYSTEM_OFF.
const SYSTEM_OFF: [u32; 3] = [0x5280_0100, 0x72B0_8000, 0xD400_0003];
/// `b .`.
const SPIN: u32 = 0x1400_0000;

/// A raw arm64 Image that writes `bytes` to the UART, then powers off or spins.
fn image(bytes: &[u8], power_off: bool) -> Vec<u8> {
    let mut code = vec![LOAD_UART];
    for &byte in bytes {
        code.push(0x5280_0002 | (u32::from(byte) << 5)); // movz w2, #byte
        code.push(STORE_W2);
    }
    if power_off {
        code.extend(SYSTEM_OFF);
    }
    code.push(SPIN);
    let mut image = vec![0u8; 64];
    image[0..4].copy_from_slice(&0x1400_0010u32.to_le_bytes()); // b +64
    image[56..60].copy_from_slice(b"ARM\x64");
    for word in code {
        image.extend(word.to_le_bytes());
    }
    image
}

fn write_image(name: &str, bytes: &[u8], power_off: bool) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "qemu-runner-test-{}-{name}.img",
        std::process::id()
    ));
    std::fs::write(&path, image(bytes, power_off)).unwrap();
    path
}

fn have_qemu() -> bool {
    let found = Command::new(runner::QEMU_BINARY)
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        eprintln!("note: {} not installed; skipping", runner::QEMU_BINARY);
    }
    found
}

#[test]
fn boots_prints_and_powers_off() {
    if !have_qemu() {
        return;
    }
    let path = write_image("off", b"(g) hi\n\x01\x05\x00tail", true);
    let mut config = RunConfig::new(Machine::VirtGicv3, &path);
    config.timeout = Duration::from_secs(30);
    let outcome = runner::run(&config, None, |_| Control::Continue).unwrap();
    let _ = std::fs::remove_file(&path);
    let uart: Vec<&Line> = outcome
        .lines
        .iter()
        .filter(|line| !matches!(line, Line::Stderr(_)))
        .collect();
    assert_eq!(uart.len(), 3, "{:?}", outcome.lines);
    assert_eq!(uart[0], &Line::Console("(g) hi".into()));
    assert_eq!(uart[1].render(false), "[hyp ?] <undecodable frame 2 bytes>");
    assert_eq!(uart[2], &Line::Console("tail".into()));
    assert_eq!(outcome.undecodable, 1);
    assert!(!outcome.timed_out && !outcome.stopped);
    assert_eq!(outcome.check_run(), Ok(()));
    assert!(outcome.check_clean_halt().is_err());
}

#[test]
fn timeout_kills_qemu() {
    if !have_qemu() {
        return;
    }
    let path = write_image("spin", b"spinning\n", false);
    let mut config = RunConfig::new(Machine::VirtGicv2, &path);
    config.timeout = Duration::from_secs(2);
    let outcome = runner::run(&config, None, |_| Control::Continue).unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(outcome.timed_out);
    assert!(outcome.elapsed < Duration::from_secs(10));
    assert!(outcome.console_lines().any(|line| line == "spinning"));
    assert!(outcome.check_run().unwrap_err().contains("timed out"));
}

#[test]
fn callback_can_stop_the_run() {
    if !have_qemu() {
        return;
    }
    let path = write_image("stop", b"stop here\n", false);
    let mut config = RunConfig::new(Machine::VirtGicv3, &path);
    config.timeout = Duration::from_secs(60);
    let outcome = runner::run(&config, None, |line| match line {
        Line::Console(text) if text == "stop here" => Control::Stop,
        _ => Control::Continue,
    })
    .unwrap();
    let _ = std::fs::remove_file(&path);
    assert!(outcome.stopped && !outcome.timed_out);
    assert!(outcome.elapsed < Duration::from_secs(20));
}

#[test]
fn unsupported_machine_is_refused() {
    if std::env::var_os(qemu::machine::RASPI4B_DTB_ENV).is_some() {
        return;
    }
    let config = RunConfig::new(Machine::Raspi4b, "/nonexistent");
    let error = runner::run(&config, None, |_| Control::Continue).unwrap_err();
    assert!(error.contains("bcm2711-rpi-4-b.dtb"), "{error}");
}
