//! Checks of a board device tree xtask hands to QEMU or writes to an SD card (the
//! Raspberry Pi 4's, which a user may also point `RASPI4B_DTB` at): read with the
//! hypervisor's own reader, so a truncated or malformed tree is
//! refused on the host with a message, rather than leaving the hypervisor silent (it
//! cannot print before the device tree names its UART).

use std::path::Path;

use anyhow::{bail, Context, Result};

/// Refuses `bytes` unless it is a well-formed flattened device tree (magic, version,
/// header, and structure and strings blocks inside its size), as the hypervisor's reader
/// requires. (Platform discovery is not run: QEMU and the Pi's firmware add the memory
/// node and more before the hypervisor sees the tree.)
pub fn check(bytes: &[u8]) -> Result<(), String> {
    let fdt = hyp::dt::Fdt::new(bytes).map_err(|error| {
        format!(
            "not a usable device tree ({}; {} bytes)",
            error.describe(),
            bytes.len()
        )
    })?;
    // Walk every node, so a broken structure block is found here too.
    let mut nodes = 0usize;
    let mut stack = vec![fdt.root()];
    while let Some(node) = stack.pop() {
        nodes += 1;
        stack.extend(node.children());
    }
    if nodes < 2 {
        return Err("device tree has no nodes below its root".to_string());
    }
    Ok(())
}

/// [`check`] of the file at `path`, with the path in the message.
pub fn check_file(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if let Err(reason) = check(&bytes) {
        bail!("{}: {reason}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Vec<u8> {
        let path = crate::setup::workspace_root()
            .join("hyp/src/dt/fixtures")
            .join(name);
        std::fs::read(path).unwrap()
    }

    #[test]
    fn board_trees_are_accepted() {
        for name in ["pi4-like.dtb", "virt-gicv3.dtb", "virt-gicv2.dtb"] {
            assert_eq!(check(&fixture(name)), Ok(()), "{name}");
        }
    }

    #[test]
    fn truncated_and_garbled_trees_are_refused() {
        let good = fixture("pi4-like.dtb");
        for length in [0, 10, 40, good.len() / 2, good.len() - 1] {
            let error = check(&good[..length]).unwrap_err();
            assert!(
                error.contains("not a usable device tree"),
                "{length}: {error}"
            );
        }
        let mut bad_magic = good.clone();
        bad_magic[0] ^= 0xff;
        assert!(check(&bad_magic).unwrap_err().contains("magic"));
        let zeros = vec![0u8; good.len()];
        assert!(check(&zeros).is_err());
    }

    #[test]
    fn the_message_names_the_file() {
        let dir = std::env::temp_dir().join(format!("xtask-dtb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("short.dtb");
        std::fs::write(&path, &fixture("pi4-like.dtb")[..100]).unwrap();
        let error = check_file(&path).unwrap_err().to_string();
        assert!(
            error.contains("short.dtb: not a usable device tree"),
            "{error}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
