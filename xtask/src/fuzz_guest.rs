//! `cargo xtask fuzz-guest` and the `fuzz-guest` test scenario: pv-guest's `fuzz`
//! scenario (hypercalls from a seeded generator) beside two `victim` domains that
//! ping-pong events and recheck their memory (`examples/systems/fuzz-guest.toml`).
//!
//! Pass: no hypervisor panic or timeout; the fuzzer's three tests pass (it printed its
//! summary); each victim's five tests pass (memory unchanged, every round trip, held
//! until the fuzzer ended); no domain crashed; `halt: all 3 domains shut down cleanly`.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use qemu::report::{self, Report};
use qemu::runner::Outcome;
use qemu::Machine;

use crate::args::FuzzGuestArgs;
use crate::config::System;
use crate::images::Images;

/// The system file, relative to the workspace.
pub const SYSTEM_FILE: &str = "examples/systems/fuzz-guest.toml";
/// The fuzzing domain's name in [`SYSTEM_FILE`].
const FUZZER: &str = "fuzz";
/// The victims' names.
const VICTIMS: [&str; 2] = ["ping", "pong"];
/// The test scenario's seed and iterations: a few seconds of fuzzing per machine.
pub const TEST_SEED: u64 = 1;
pub const TEST_ITERATIONS: u64 = 30_000;
/// Round trips of the victims' ping-pong (they then hold until the fuzzer ends).
const VICTIM_ROUNDS: u64 = 1000;

/// [`SYSTEM_FILE`] for `machine`, with the fuzzer's seed and iterations and the victims'
/// longest hold (the QEMU timeout) put into their command lines.
pub fn system(machine: Machine, seed: u64, iterations: u64, timeout: Duration) -> Result<System> {
    let path = crate::setup::workspace_root().join(SYSTEM_FILE);
    let mut system = crate::config::load_for(&path, machine)?;
    for domain in &mut system.domains {
        if domain.name == FUZZER {
            domain.cmdline = format!("fuzz seed={seed} iterations={iterations}");
        } else if VICTIMS.contains(&domain.name.as_str()) {
            domain.cmdline = format!(
                "victim pingpong={VICTIM_ROUNDS} hold_s={}",
                timeout.as_secs()
            );
        } else {
            bail!("{SYSTEM_FILE}: unexpected domain {}", domain.name);
        }
    }
    Ok(system)
}

/// The checks of the module docs on a finished run.
pub fn check(outcome: &Outcome, system: &System) -> Result<(), String> {
    outcome.check_run()?;
    let report_of = |name: &str, tests: usize| -> Result<Report, String> {
        let report = Report::parse(report::domain_lines(outcome.console_lines(), name));
        report
            .check()
            .map_err(|reason| format!("domain {name}: {reason}"))?;
        if report.results.len() != tests {
            return Err(format!(
                "domain {name}: {} tests ran, expected {tests}",
                report.results.len()
            ));
        }
        Ok(report)
    };
    report_of(FUZZER, 3)?;
    for victim in VICTIMS {
        report_of(victim, 5)?;
    }
    let summary = format!("({FUZZER}) fuzz: summary:");
    if !outcome
        .console_lines()
        .any(|line| line.starts_with(&summary))
    {
        return Err(format!("no `{summary}` line"));
    }
    let crashes: Vec<&str> = outcome
        .hyp_messages()
        .filter(|message| message.contains(" crashed:"))
        .collect();
    if !crashes.is_empty() {
        return Err(format!("domains crashed: {crashes:?}"));
    }
    crate::run::check_all_clean(outcome, system.domains.len())?;
    Ok(())
}

/// The fuzzer's summary lines and the victims' closing lines, for the terminal.
pub fn summary_lines(outcome: &Outcome) -> Vec<&str> {
    outcome
        .console_lines()
        .filter(|line| {
            line.starts_with("(fuzz) fuzz: summary")
                || line.starts_with("(fuzz) fuzz: calls")
                || line.starts_with("(fuzz) fuzz: results")
                || line.contains("victim: memory unchanged")
                || line.contains("victim: held")
        })
        .collect()
}

/// `cargo xtask fuzz-guest`.
pub fn fuzz_guest(args: &FuzzGuestArgs) -> Result<bool> {
    let images: Images = crate::images::build()?;
    crate::setup::ensure_qemu()?;
    if args.machine == Machine::Raspi4b {
        crate::debian::provide_raspi4b_dtb()?;
    }
    let timeout = args
        .timeout
        .unwrap_or(Duration::from_secs(120 + args.iterations / 2000));
    let system = system(args.machine, args.seed, args.iterations, timeout)?;
    println!(
        "xtask: fuzz-guest: seed {}, {} iterations on {} (timeout {} s)",
        args.seed,
        args.iterations,
        args.machine,
        timeout.as_secs()
    );
    let started = Instant::now();
    let outcome = crate::run::boot(
        &images,
        &system.domains,
        &system.channels,
        args.machine,
        false,
        timeout,
        false,
    )?;
    // The whole run, for a failure's post-mortem.
    let log = crate::setup::target_dir().join(format!("fuzz-guest-seed-{}.log", args.seed));
    let rendered: Vec<String> = outcome
        .lines
        .iter()
        .map(|line| line.render(false))
        .collect();
    std::fs::write(&log, rendered.join("\n") + "\n")?;
    println!("xtask: fuzz-guest: output in {}", log.display());
    for line in summary_lines(&outcome) {
        println!("{line}");
    }
    match check(&outcome, &system) {
        Ok(()) => {
            println!(
                "xtask: fuzz-guest: ok: seed {}, {} iterations, {:.1} s",
                args.seed,
                args.iterations,
                started.elapsed().as_secs_f64()
            );
            Ok(true)
        }
        Err(reason) => {
            let lines = rendered;
            for line in &lines[lines.len().saturating_sub(60)..] {
                println!("  | {line}");
            }
            println!("xtask: fuzz-guest: FAILED: {reason}");
            Ok(false)
        }
    }
}
