//! `cargo xtask build`: the bare-metal images and the boot pack.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::setup::{self, TARGET};

/// Offset of the arm64 `Image` header magic.
const IMAGE_MAGIC_OFFSET: usize = 56;
/// The arm64 `Image` header magic.
const IMAGE_MAGIC: &[u8; 4] = b"ARM\x64";

/// Where `build` puts things.
#[derive(Clone, Debug)]
pub struct Images {
    /// The hypervisor as a raw arm64 Image.
    pub hyp_img: PathBuf,
    /// The hypervisor ELF (for `defmt` decoding).
    pub hyp_elf: PathBuf,
    /// The guest as a raw arm64 Image.
    pub guest_img: PathBuf,
    /// The guest ELF.
    pub guest_elf: PathBuf,
    /// The guest template of `examples/minimal-guest`, as a raw arm64 Image.
    pub example_img: PathBuf,
    /// The boot pack written by `run` and `test`.
    pub bootpack: PathBuf,
}

impl Images {
    /// The paths under `target/images`.
    pub fn paths() -> Images {
        let dir = setup::images_dir();
        Images {
            hyp_img: dir.join("hyp.img"),
            hyp_elf: dir.join("hyp.elf"),
            guest_img: dir.join("pv-guest.img"),
            guest_elf: dir.join("pv-guest.elf"),
            example_img: dir.join("minimal-guest.img"),
            bootpack: dir.join("bootpack.bin"),
        }
    }
}

/// Installs what is missing, builds `hyp`, `pv-guest` and the `examples/minimal-guest`
/// template for the bare-metal target, and writes their raw images and ELFs to
/// `target/images`.
pub fn build() -> Result<Images> {
    setup::ensure_rust_targets()?;
    let mut hyp = setup::cargo();
    hyp.args([
        "build",
        "--release",
        "-p",
        "hyp",
        "--bin",
        "hyp",
        "--target",
        TARGET,
    ]);
    if let Some(level) = defmt_log_default() {
        hyp.env("DEFMT_LOG", level);
    }
    setup::run_checked(&mut hyp).context("building the hypervisor")?;
    for guest in ["pv-guest", "minimal-guest"] {
        setup::run_checked(setup::cargo().args([
            "build",
            "--release",
            "-p",
            guest,
            "--target",
            TARGET,
        ]))
        .with_context(|| format!("building {guest}"))?;
    }
    let objcopy = setup::llvm_objcopy()?;
    let images = Images::paths();
    let out_dir = setup::target_dir().join(TARGET).join("release");
    std::fs::create_dir_all(setup::images_dir())
        .with_context(|| format!("creating {}", setup::images_dir().display()))?;
    let example_elf = setup::images_dir().join("minimal-guest.elf");
    for (elf, img, copy) in [
        (out_dir.join("hyp"), &images.hyp_img, &images.hyp_elf),
        (
            out_dir.join("pv-guest"),
            &images.guest_img,
            &images.guest_elf,
        ),
        (
            out_dir.join("minimal-guest"),
            &images.example_img,
            &example_elf,
        ),
    ] {
        setup::run_checked(
            std::process::Command::new(&objcopy)
                .args(["-O", "binary"])
                .arg(&elf)
                .arg(img),
        )
        .with_context(|| format!("converting {} to a raw image", elf.display()))?;
        std::fs::copy(&elf, copy)
            .with_context(|| format!("copying {} to {}", elf.display(), copy.display()))?;
        check_arm64_image(img)?;
    }
    Ok(images)
}

/// The `DEFMT_LOG` filter for the hypervisor build when nobody chose one: `defmt` keeps
/// only `error` messages by default, which would drop the `info` `halt:` line. `None` when
/// the environment or `.cargo/config.toml` already sets it.
fn defmt_log_default() -> Option<&'static str> {
    if std::env::var_os("DEFMT_LOG").is_some() {
        return None;
    }
    let config = setup::workspace_root().join(".cargo/config.toml");
    match std::fs::read_to_string(config) {
        Ok(text) if text.contains("DEFMT_LOG") => None,
        _ => Some("info"),
    }
}

/// Refuses a file that does not start with an arm64 `Image` header.
pub fn check_arm64_image(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if !has_arm64_header(&bytes) {
        bail!(
            "{} is not an arm64 Image: it lacks the header magic \"ARM\\x64\" at byte 56 \
             (the linker script must put the 64-byte Image header at the very start)",
            path.display()
        );
    }
    Ok(())
}

/// Whether `bytes` has the magic `ARM\x64` at offset 56.
pub fn has_arm64_header(bytes: &[u8]) -> bool {
    bytes.get(IMAGE_MAGIC_OFFSET..IMAGE_MAGIC_OFFSET + IMAGE_MAGIC.len()) == Some(&IMAGE_MAGIC[..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_header_magic() {
        let mut image = vec![0u8; 64];
        assert!(!has_arm64_header(&image));
        image[56..60].copy_from_slice(b"ARM\x64");
        assert!(has_arm64_header(&image));
        assert!(!has_arm64_header(&image[..59]));
    }
}
