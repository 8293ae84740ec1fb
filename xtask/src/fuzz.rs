//! Host fuzzing with cargo-fuzz (libFuzzer): the targets of `fuzz/` (docs/testing.md).
//!
//! The pinned toolchain is stable, so the targets are built with `--sanitizer none`
//! (sanitizers need nightly's `-Zsanitizer`); libFuzzer's coverage instrumentation works
//! on stable. Every target asserts its own invariants, so a broken invariant is a crash
//! like a panic. cargo-fuzz is installed into `~/.cargo/bin` when missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::args::FuzzHostArgs;
use crate::setup;

/// Every fuzz target (`fuzz/fuzz_targets/NAME.rs`), cheapest first.
pub const TARGETS: [&str; 7] = [
    "esr",
    "hypercall_decode",
    "bootpack",
    "vgic",
    "dt_reader",
    "system_config",
    "hypercall_dispatch",
];

/// Seconds each target runs in `cargo xtask test` (7 targets: under 2 minutes in all,
/// plus the first build).
pub const TEST_SECONDS: u64 = 15;

/// What one bounded run did.
pub struct RunReport {
    /// Inputs executed (libFuzzer's `Done N runs`).
    pub executions: u64,
    /// Wall-clock seconds the run took.
    pub seconds: f64,
}

fn fuzz_dir() -> PathBuf {
    setup::workspace_root().join("fuzz")
}

/// `cargo fuzz ...` run in `fuzz/`.
fn cargo_fuzz() -> Command {
    let mut command = setup::cargo();
    command.current_dir(fuzz_dir()).arg("fuzz");
    command
}

/// Installs cargo-fuzz (`cargo install cargo-fuzz --locked`) unless `cargo fuzz` runs.
pub fn ensure_cargo_fuzz() -> Result<()> {
    let present = cargo_fuzz()
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if present {
        return Ok(());
    }
    println!("xtask: installing cargo-fuzz (cargo install cargo-fuzz --locked)");
    setup::run_checked(setup::cargo().args(["install", "cargo-fuzz", "--locked"]))
}

/// Builds every fuzz target.
pub fn build() -> Result<()> {
    setup::run_checked(cargo_fuzz().args(["build", "--sanitizer", "none"]))
}

/// Runs `target` for `seconds` over its committed seeds (`fuzz/corpus/TARGET`, read
/// only) and its working corpus (`target/fuzz-corpus/TARGET`, where new inputs go).
/// Fails with the crash input's path and the end of libFuzzer's output on a crash.
pub fn run(target: &str, seconds: u64) -> Result<RunReport> {
    let working = setup::target_dir().join("fuzz-corpus").join(target);
    std::fs::create_dir_all(&working).with_context(|| format!("creating {}", working.display()))?;
    let seeds = fuzz_dir().join("corpus").join(target);
    let started = Instant::now();
    let mut command = cargo_fuzz();
    command
        .args(["run", "--sanitizer", "none", target])
        .arg(&working)
        .arg(&seeds)
        .args([
            "--".to_string(),
            format!("-max_total_time={seconds}"),
            // Large inputs only slow the structured targets down.
            "-max_len=8192".to_string(),
            "-print_final_stats=1".to_string(),
        ]);
    let shown = setup::show(&command);
    let output = command
        .output()
        .with_context(|| format!("cannot start `{shown}`"))?;
    let elapsed = started.elapsed().as_secs_f64();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        let crash = text
            .lines()
            .find_map(|line| {
                line.split_once("Test unit written to ")
                    .map(|(_, path)| path)
            })
            .unwrap_or("(none written)");
        // The panic (the broken invariant) and libFuzzer's summary.
        let lines: Vec<&str> = text.lines().collect();
        let panic = lines
            .iter()
            .position(|line| line.contains("panicked at"))
            .map_or(&[][..], |start| &lines[start..(start + 4).min(lines.len())]);
        let tail = &lines[lines.len().saturating_sub(12)..];
        let shown: Vec<&str> = panic.iter().chain(tail).copied().collect();
        bail!(
            "fuzz target {target} failed ({}); crash input: {crash}; reproduce with \
             `cargo xtask fuzz-host --target {target} --reproduce FILE`\n  | {}",
            output.status,
            shown.join("\n  | ")
        );
    }
    let executions = text
        .lines()
        .rev()
        .filter_map(|line| line.strip_prefix("Done "))
        .find_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .with_context(|| format!("fuzz target {target}: no `Done N runs` line from libFuzzer"))?;
    Ok(RunReport {
        executions,
        seconds: elapsed,
    })
}

/// Runs `target` once on `input`.
fn reproduce(target: &str, input: &Path) -> Result<()> {
    setup::run_checked(
        cargo_fuzz()
            .args(["run", "--sanitizer", "none", target])
            .arg(input.canonicalize().unwrap_or_else(|_| input.to_path_buf())),
    )
}

/// Installs, builds and runs each target for `seconds`, printing one line per target;
/// stops at the first failure.
pub fn run_all(targets: &[&str], seconds: u64) -> Result<()> {
    ensure_cargo_fuzz()?;
    println!("xtask: building the fuzz targets (cargo fuzz build --sanitizer none)");
    build()?;
    for target in targets {
        let report = run(target, seconds)?;
        println!(
            "xtask: fuzz {target}: {} executions in {:.0} s ({:.0}/s)",
            report.executions,
            report.seconds,
            report.executions as f64 / report.seconds.max(1e-3)
        );
    }
    Ok(())
}

/// `cargo xtask fuzz-host`.
pub fn fuzz_host(args: &FuzzHostArgs) -> Result<bool> {
    let targets: Vec<&str> = if args.targets.is_empty() {
        TARGETS.to_vec()
    } else {
        args.targets.iter().map(String::as_str).collect()
    };
    if let (Some(input), [target]) = (&args.reproduce, targets.as_slice()) {
        ensure_cargo_fuzz()?;
        reproduce(target, input)?;
        return Ok(true);
    }
    run_all(&targets, args.seconds)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `TARGETS` names exactly the binaries of fuzz/Cargo.toml, each with seeds.
    #[test]
    fn targets_match_the_fuzz_crate() {
        let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
        let mut declared: Vec<&str> = manifest
            .lines()
            .filter_map(|line| line.strip_prefix("name = \""))
            .filter_map(|rest| rest.strip_suffix('"'))
            .filter(|name| *name != "hyp-fuzz")
            .collect();
        declared.sort_unstable();
        let mut listed = TARGETS.to_vec();
        listed.sort_unstable();
        assert_eq!(declared, listed);
        for target in TARGETS {
            let seeds = fuzz_dir().join("corpus").join(target);
            let count = std::fs::read_dir(&seeds).map_or(0, Iterator::count);
            assert!(count > 0, "no seeds in {}", seeds.display());
        }
    }
}
