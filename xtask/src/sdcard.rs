//! `cargo xtask sdcard DIR`: a boot partition for a real Raspberry Pi 4.
//!
//! The Pi 4's GPU firmware reads a FAT partition: `start4.elf` and `fixup4.dat` (the
//! firmware itself, from Debian's `raspi-firmware`), `config.txt`, the board's device tree,
//! the "kernel" (our hypervisor, a raw arm64 Image, which the firmware's default stub enters
//! at EL2 with x0 = the device tree) and the "initramfs" (our boot pack, whose location the
//! firmware writes to `/chosen/linux,initrd-start|end`). Copy the directory's files onto a
//! FAT32-formatted card (docs/boards/rpi4.md).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use qemu::Machine;

use crate::run::{demo_system, write_bootpack};

/// The hypervisor image's name on the card.
pub const KERNEL: &str = "hyp.img";
/// The boot pack's name on the card.
pub const BOOTPACK: &str = "bootpack.bin";
/// The device tree's name on the card (the firmware's default for this board).
pub const DEVICE_TREE: &str = "bcm2711-rpi-4-b.dtb";
/// The firmware files the Pi 4 needs.
pub const FIRMWARE: [&str; 2] = ["start4.elf", "fixup4.dat"];

/// Every file a card written by [`sdcard`] holds.
pub fn layout() -> Vec<&'static str> {
    let mut files = FIRMWARE.to_vec();
    files.extend(["config.txt", DEVICE_TREE, KERNEL, BOOTPACK]);
    files
}

/// `config.txt`: 64-bit, the UART on, our image as the kernel (entered at EL2 by the
/// default stub) and the boot pack as its initramfs.
pub fn config_txt() -> String {
    format!(
        "# Written by `cargo xtask sdcard`: boots the hypervisor at EL2 with its boot pack.\n\
         # Console: the mini UART on GPIO 14 (TX, pin 8) and 15 (RX, pin 10), 115200 8N1.\n\
         arm_64bit=1\n\
         enable_uart=1\n\
         kernel={KERNEL}\n\
         initramfs {BOOTPACK} followkernel\n\
         device_tree={DEVICE_TREE}\n"
    )
}

/// Checks that `dir` holds a complete card: every file of [`layout`], non-empty, and a
/// `config.txt` that names the kernel, the initramfs and the device tree present.
pub fn check(dir: &Path) -> Result<()> {
    for name in layout() {
        let path = dir.join(name);
        let size = std::fs::metadata(&path)
            .with_context(|| format!("{} is missing", path.display()))?
            .len();
        if size == 0 {
            bail!("{} is empty", path.display());
        }
    }
    let config = std::fs::read_to_string(dir.join("config.txt"))?;
    let setting = |key: &str| {
        config
            .lines()
            .find_map(|line| line.trim().strip_prefix(key))
            .map(|rest| rest.trim_start_matches(['=', ' ']).trim().to_string())
    };
    if setting("arm_64bit").as_deref() != Some("1") {
        bail!("config.txt does not set arm_64bit=1");
    }
    if setting("enable_uart").as_deref() != Some("1") {
        bail!("config.txt does not set enable_uart=1");
    }
    for (key, wanted) in [("kernel", KERNEL), ("device_tree", DEVICE_TREE)] {
        match setting(key) {
            Some(value) if value == wanted && dir.join(&value).is_file() => {}
            other => bail!("config.txt {key} is {other:?}, want {wanted} present"),
        }
    }
    let initramfs = setting("initramfs").unwrap_or_default();
    let file = initramfs.split_whitespace().next().unwrap_or("");
    if file != BOOTPACK || !initramfs.ends_with("followkernel") {
        bail!("config.txt initramfs is {initramfs:?}, want {BOOTPACK} followkernel");
    }
    let image = std::fs::read(dir.join(KERNEL))?;
    if image.get(56..60) != Some(b"ARM\x64".as_slice()) {
        bail!("{KERNEL} lacks the arm64 Image header the firmware's stub needs");
    }
    Ok(())
}

/// Writes the card's files into `dir` for the system `config` describes (the demo
/// system without one).
pub fn sdcard(dir: &Path, config: Option<&PathBuf>) -> Result<()> {
    let system = match config {
        Some(path) => Some(crate::config::load_for(path, Machine::Raspi4b)?),
        None => None,
    };
    let firmware = crate::debian::raspi_firmware()?;
    let device_tree = crate::debian::raspi4b_dtb()?;
    crate::dtb::check_file(&device_tree)?;
    let images = crate::images::build()?;
    let (domains, channels) = match system {
        Some(system) => {
            system.check_images()?;
            (system.domains, system.channels)
        }
        None => demo_system(&images),
    };
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for name in FIRMWARE {
        std::fs::copy(firmware.join(name), dir.join(name))
            .with_context(|| format!("copying {name} from {}", firmware.display()))?;
    }
    std::fs::copy(&device_tree, dir.join(DEVICE_TREE))?;
    std::fs::copy(&images.hyp_img, dir.join(KERNEL))?;
    write_bootpack(&domains, &channels, &dir.join(BOOTPACK))?;
    std::fs::write(dir.join("config.txt"), config_txt())?;
    check(dir)?;
    println!(
        "xtask: {} holds a Raspberry Pi 4 boot partition ({} domain(s)); copy its files to a \
         FAT32 card (docs/boards/rpi4.md)",
        dir.display(),
        domains.len()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_every_file_it_needs() {
        let config = config_txt();
        for line in ["arm_64bit=1", "enable_uart=1", "kernel=hyp.img"] {
            assert!(config.lines().any(|l| l == line), "{line}");
        }
        assert!(config.contains("initramfs bootpack.bin followkernel"));
        assert!(layout().contains(&"start4.elf") && layout().contains(&"fixup4.dat"));
    }

    #[test]
    fn check_refuses_incomplete_cards() {
        let dir = std::env::temp_dir().join(format!("sdcard-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for name in layout() {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        std::fs::write(dir.join("config.txt"), config_txt()).unwrap();
        let mut image = vec![0u8; 64];
        image[56..60].copy_from_slice(b"ARM\x64");
        std::fs::write(dir.join(KERNEL), &image).unwrap();
        check(&dir).unwrap();
        std::fs::write(
            dir.join("config.txt"),
            config_txt().replace("arm_64bit=1", ""),
        )
        .unwrap();
        assert!(check(&dir).is_err());
        std::fs::write(dir.join("config.txt"), config_txt()).unwrap();
        std::fs::remove_file(dir.join("fixup4.dat")).unwrap();
        assert!(check(&dir).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
