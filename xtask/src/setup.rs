//! Set-up of a fresh machine: the workspace paths, the Rust targets and tools the build
//! needs, and QEMU.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The bare-metal target of `hyp` and `pv-guest`.
pub const TARGET: &str = "aarch64-unknown-none-softfloat";
/// Every target the toolchain file asks for.
pub const TARGETS: [&str; 2] = ["aarch64-unknown-none-softfloat", "aarch64-unknown-none"];
/// Oldest QEMU major version that has `raspi4b` and the `virt` features we use.
pub const MIN_QEMU_MAJOR: u32 = 9;

/// The workspace root (the parent of `xtask/`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The cargo target directory (`CARGO_TARGET_DIR` or `<root>/target`).
pub fn target_dir() -> PathBuf {
    let root = workspace_root();
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    }
}

/// `target/images`, where `build` puts its results.
pub fn images_dir() -> PathBuf {
    target_dir().join("images")
}

/// The `cargo` that runs us (or the one on `PATH`).
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command.current_dir(workspace_root());
    command
}

/// Runs `command` with inherited stdio and fails unless it exits 0.
pub fn run_checked(command: &mut Command) -> Result<()> {
    let shown = show(command);
    let status = command
        .status()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Runs `command` and returns its trimmed stdout; fails unless it exits 0.
pub fn output_of(command: &mut Command) -> Result<String> {
    let shown = show(command);
    let output = command
        .output()
        .with_context(|| format!("cannot start `{shown}`"))?;
    if !output.status.success() {
        bail!(
            "`{shown}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// A command as a shell-like string, for messages.
pub fn show(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

fn rustc() -> Command {
    let mut command = Command::new("rustc");
    command.current_dir(workspace_root());
    command
}

fn rustup() -> Command {
    let mut command = Command::new("rustup");
    command.current_dir(workspace_root());
    command
}

/// Installs the bare-metal targets and `llvm-tools` with rustup when the toolchain lacks
/// them (rustup normally does this itself from `rust-toolchain.toml`).
pub fn ensure_rust_targets() -> Result<()> {
    let has_core = output_of(rustc().args(["--print", "target-libdir", "--target", TARGET]))
        .ok()
        .and_then(|dir| std::fs::read_dir(dir).ok())
        .is_some_and(|entries| {
            entries.flatten().any(|entry| {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                name.starts_with("libcore-") && name.ends_with(".rlib")
            })
        });
    if !has_core {
        eprintln!("xtask: installing the Rust targets {}", TARGETS.join(", "));
        run_checked(rustup().args(["target", "add"]).args(TARGETS))
            .context("installing the bare-metal Rust targets (is rustup installed?)")?;
        run_checked(rustup().args(["component", "add", "llvm-tools"]))
            .context("installing llvm-tools")?;
    }
    Ok(())
}

/// The toolchain's `llvm-objcopy` (component `llvm-tools`), installed when missing.
pub fn llvm_objcopy() -> Result<PathBuf> {
    let sysroot = output_of(rustc().args(["--print", "sysroot"]))?;
    let verbose = output_of(rustc().arg("-vV"))?;
    let host = verbose
        .lines()
        .find_map(|line| line.strip_prefix("host: "))
        .unwrap_or("x86_64-unknown-linux-gnu")
        .to_string();
    let path = Path::new(&sysroot)
        .join("lib/rustlib")
        .join(host)
        .join("bin/llvm-objcopy");
    if !path.is_file() {
        eprintln!("xtask: installing llvm-tools");
        run_checked(rustup().args(["component", "add", "llvm-tools"]))
            .context("installing llvm-tools")?;
    }
    if !path.is_file() {
        bail!(
            "{} is missing after `rustup component add llvm-tools`",
            path.display()
        );
    }
    Ok(path)
}

/// The major version of the installed `qemu-system-aarch64`, `None` when it is missing.
fn qemu_major() -> Option<u32> {
    let output = Command::new(qemu::runner::QEMU_BINARY)
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.split("version ").nth(1)?;
    version.split('.').next()?.trim().parse().ok()
}

pub fn is_debian_bookworm() -> bool {
    std::fs::read_to_string("/etc/os-release").is_ok_and(|text| {
        text.lines().any(|line| line == "ID=debian")
            && text
                .lines()
                .any(|line| line.trim_matches('"') == "VERSION_CODENAME=bookworm")
    })
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

const BACKPORTS_LIST: &str = "/etc/apt/sources.list.d/backports.list";
const BACKPORTS_LINE: &str = "deb http://deb.debian.org/debian bookworm-backports main";

/// Makes sure `qemu-system-aarch64` >= 9 is installed: as root on Debian bookworm it is
/// installed from bookworm-backports; elsewhere the command to run is printed and this
/// fails.
pub fn ensure_qemu() -> Result<()> {
    let found = qemu_major();
    if found.is_some_and(|major| major >= MIN_QEMU_MAJOR) {
        return Ok(());
    }
    let what = match found {
        Some(major) => {
            format!("qemu-system-aarch64 {major}.x is too old (need >= {MIN_QEMU_MAJOR})")
        }
        None => "qemu-system-aarch64 is not installed".to_string(),
    };
    if !(is_root() && is_debian_bookworm()) {
        bail!(
            "{what}. Install QEMU >= {MIN_QEMU_MAJOR}; on Debian bookworm, as root:\n  \
             echo '{BACKPORTS_LINE}' > {BACKPORTS_LIST} && apt-get update && \
             DEBIAN_FRONTEND=noninteractive apt-get install -y -t bookworm-backports qemu-system-arm"
        );
    }
    eprintln!("xtask: {what}; installing qemu-system-arm from bookworm-backports");
    if !Path::new(BACKPORTS_LIST).exists() {
        std::fs::write(BACKPORTS_LIST, format!("{BACKPORTS_LINE}\n"))
            .with_context(|| format!("writing {BACKPORTS_LIST}"))?;
    }
    run_checked(Command::new("apt-get").arg("update"))?;
    run_checked(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args([
                "install",
                "-y",
                "-t",
                "bookworm-backports",
                "qemu-system-arm",
            ]),
    )?;
    match qemu_major() {
        Some(major) if major >= MIN_QEMU_MAJOR => Ok(()),
        _ => bail!("qemu-system-aarch64 >= {MIN_QEMU_MAJOR} is still missing after installing qemu-system-arm"),
    }
}
