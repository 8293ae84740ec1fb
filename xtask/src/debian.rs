//! Files from Debian bookworm's arm64 packages: the Raspberry Pi 4 device tree and the
//! Linux guest's kernel from `linux-image-*-arm64`, the Linux guest's userland from
//! `busybox-static`, the Pi firmware from `raspi-firmware`.
//!
//! Packages are fetched with `apt-get download` (after `dpkg --add-architecture arm64`;
//! `raspi-firmware` needs the `non-free-firmware` component, added with the same
//! `signed-by` keyring as the main archive), unpacked with `dpkg-deb -x`, and cached under
//! `$HYP_CACHE` (default `~/.cache/hyp`), so only the first run needs the package
//! registry. Anywhere but Debian as root, the exact commands to run are printed instead.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::setup::{is_debian_bookworm, is_root, output_of, run_checked};

/// The metapackage naming bookworm's current arm64 kernel.
const KERNEL_METAPACKAGE: &str = "linux-image-arm64:arm64";
/// The static busybox for the Linux guest's initramfs (arm64).
const BUSYBOX_PACKAGE: &str = "busybox-static:arm64";
/// The Raspberry Pi 4 Model B device tree inside the kernel package.
const RASPI4B_DTB: &str = "broadcom/bcm2711-rpi-4-b.dtb";
/// The Pi firmware package.
const FIRMWARE_PACKAGE: &str = "raspi-firmware";
/// Where the firmware package's files land.
const FIRMWARE_DIR: &str = "usr/lib/raspi-firmware";
/// The apt source that adds `non-free-firmware` (deb822 format, bookworm's own key).
const FIRMWARE_SOURCES: &str = "/etc/apt/sources.list.d/hyp-non-free-firmware.sources";
const FIRMWARE_SOURCES_TEXT: &str = "Types: deb\nURIs: http://deb.debian.org/debian\n\
Suites: bookworm bookworm-updates\nComponents: non-free-firmware\n\
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";

/// The cache directory.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HYP_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/tmp"), PathBuf::from);
    home.join(".cache").join("hyp")
}

fn unpacked_dir() -> PathBuf {
    cache_dir().join("debian")
}

/// Fails with the commands to run by hand unless this is Debian bookworm as root.
fn require_apt(what: &str) -> Result<()> {
    if is_root() && is_debian_bookworm() {
        return Ok(());
    }
    bail!(
        "{what} comes from Debian bookworm's arm64 packages, fetched automatically only as \
         root on Debian bookworm. Elsewhere, on a Debian machine:\n  \
         dpkg --add-architecture arm64 && apt-get update && apt-get download {KERNEL_METAPACKAGE} {BUSYBOX_PACKAGE}\n\
         then unpack busybox-static and the versioned linux-image package the metapackage \
         depends on with `dpkg-deb -x` into {}/<package name>/ and create an empty \
         `.complete` file in each",
        unpacked_dir().display()
    )
}

fn ensure_arm64_architecture() -> Result<()> {
    let foreign = output_of(Command::new("dpkg").arg("--print-foreign-architectures"))?;
    if !foreign.lines().any(|line| line.trim() == "arm64") {
        run_checked(Command::new("dpkg").args(["--add-architecture", "arm64"]))?;
        run_checked(Command::new("apt-get").arg("update"))?;
    }
    Ok(())
}

/// Downloads `package` (`name:arm64`) and unpacks it into the cache as `name`; returns
/// the unpacked directory. A package already unpacked is not fetched again.
fn fetch_and_unpack(package: &str) -> Result<PathBuf> {
    let name = package.split(':').next().unwrap_or(package);
    let target = unpacked_dir().join(name);
    if target.join(".complete").exists() {
        return Ok(target);
    }
    let downloads = cache_dir().join("downloads");
    std::fs::create_dir_all(&downloads)
        .with_context(|| format!("creating {}", downloads.display()))?;
    eprintln!("xtask: fetching {package} from Debian");
    run_checked(
        Command::new("apt-get")
            .args(["download", package])
            .current_dir(&downloads),
    )?;
    let deb = newest_matching(&downloads, &format!("{name}_"), ".deb")?;
    let _ = std::fs::remove_dir_all(&target);
    std::fs::create_dir_all(&target)?;
    run_checked(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&target))?;
    std::fs::write(target.join(".complete"), deb.display().to_string())?;
    Ok(target)
}

fn newest_matching(dir: &Path, prefix: &str, suffix: &str) -> Result<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(prefix) && name.ends_with(suffix))
        })
        .collect();
    found.sort();
    found
        .pop()
        .with_context(|| format!("no {prefix}*{suffix} in {}", dir.display()))
}

/// The unpacked kernel package (`linux-image-<version>-arm64`): a cached one if any,
/// else the version bookworm's metapackage names now.
pub fn kernel_package() -> Result<PathBuf> {
    if let Ok(entries) = std::fs::read_dir(unpacked_dir()) {
        let mut cached: Vec<PathBuf> = entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .filter(|path| {
                path.file_name()
                    .and_then(|name| name.to_str())
                    .is_some_and(|name| {
                        name.starts_with("linux-image-") && name.ends_with("-arm64")
                    })
                    && path.join(".complete").exists()
            })
            .collect();
        cached.sort();
        if let Some(newest) = cached.pop() {
            return Ok(newest);
        }
    }
    require_apt("The Linux kernel package")?;
    ensure_arm64_architecture()?;
    let depends = output_of(Command::new("apt-cache").args(["depends", KERNEL_METAPACKAGE]))?;
    let package = depends
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Depends: "))
        .find(|name| name.starts_with("linux-image-"))
        .with_context(|| format!("{KERNEL_METAPACKAGE} names no kernel package"))?
        .to_string();
    fetch_and_unpack(&package)
}

/// The unpacked `busybox-static` package (arm64): `bin/busybox` is a static executable.
pub fn busybox_package() -> Result<PathBuf> {
    let name = BUSYBOX_PACKAGE.split(':').next().unwrap_or(BUSYBOX_PACKAGE);
    let cached = unpacked_dir().join(name);
    if cached.join(".complete").exists() {
        return Ok(cached);
    }
    require_apt("busybox-static")?;
    ensure_arm64_architecture()?;
    fetch_and_unpack(BUSYBOX_PACKAGE)
}

/// The Raspberry Pi 4 Model B device tree, `bcm2711-rpi-4-b.dtb`.
pub fn raspi4b_dtb() -> Result<PathBuf> {
    let kernel = kernel_package()?;
    let lib = kernel.join("usr/lib");
    for entry in std::fs::read_dir(&lib).with_context(|| format!("reading {}", lib.display()))? {
        let candidate = entry?.path().join(RASPI4B_DTB);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!("{RASPI4B_DTB} is not in {}", kernel.display())
}

/// Sets `RASPI4B_DTB` for the `raspi4b` machine profile unless the user did.
pub fn provide_raspi4b_dtb() -> Result<()> {
    if let Some(path) = std::env::var_os(qemu::machine::RASPI4B_DTB_ENV) {
        return crate::dtb::check_file(Path::new(&path)).with_context(|| {
            format!("{} names a bad device tree", qemu::machine::RASPI4B_DTB_ENV)
        });
    }
    let dtb = raspi4b_dtb()?;
    crate::dtb::check_file(&dtb)?;
    std::env::set_var(qemu::machine::RASPI4B_DTB_ENV, dtb);
    Ok(())
}

/// The unpacked firmware directory holding `start4.elf` and `fixup4.dat`.
pub fn raspi_firmware() -> Result<PathBuf> {
    let cached = unpacked_dir().join(FIRMWARE_PACKAGE);
    if cached.join(".complete").exists() {
        return Ok(cached.join(FIRMWARE_DIR));
    }
    if !(is_root() && is_debian_bookworm()) {
        bail!(
            "The Pi firmware comes from Debian's {FIRMWARE_PACKAGE} (component non-free-firmware). \
             On Debian bookworm, as root:\n  printf '{}' > {FIRMWARE_SOURCES} && apt-get update && \
             apt-get download {FIRMWARE_PACKAGE}\nthen `dpkg-deb -x` it into {}",
            FIRMWARE_SOURCES_TEXT.replace('\n', "\\n"),
            cached.display()
        );
    }
    if !Path::new(FIRMWARE_SOURCES).exists() {
        std::fs::write(FIRMWARE_SOURCES, FIRMWARE_SOURCES_TEXT)
            .with_context(|| format!("writing {FIRMWARE_SOURCES}"))?;
        run_checked(Command::new("apt-get").arg("update"))?;
    }
    Ok(fetch_and_unpack(FIRMWARE_PACKAGE)?.join(FIRMWARE_DIR))
}
