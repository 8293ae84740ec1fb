//! `cargo xtask test`: host unit tests, the image build, integration scenarios under
//! QEMU, and the comparison with real Xen.
//!
//! Every integration scenario prints `test integration::<machine>::<scenario> ... ok` or
//! `... FAILED` (then the reason and the last 40 lines of output); a scenario that cannot
//! run for lack of an external tool prints `SKIP <scenario>: <reason>` and counts neither
//! way. The run ends with `N passed, M failed` over the scenarios plus the host
//! `cargo test` step.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::Result;
use qemu::report::{self, Report};
use qemu::runner::{Halt, Outcome};
use qemu::Machine;

use crate::args::TestArgs;
use crate::images::Images;
use crate::run::{self, Domain};
use crate::setup;

/// Lines of output shown with a failure.
const TAIL_LINES: usize = 40;
/// `run-on-xen --timeout`.
const XEN_TIMEOUT_SECONDS: u64 = 180;
/// Our own limit on one `run-on-xen` call (its timeout plus Xen set-up and dtc).
const XEN_HARD_TIMEOUT: Duration = Duration::from_secs(XEN_TIMEOUT_SECONDS + 120);
/// Our limit on `run-on-xen --setup-only` (package downloads).
const XEN_SETUP_TIMEOUT: Duration = Duration::from_secs(600);

/// The QEMU scenarios, in the order they run on each machine (`xen-conformance` runs
/// last, where Xen can be used).
const SCENARIOS: &[&str] = &[
    "demo",
    "crash-isolation",
    "crash-restart",
    "corrupt-pack",
    "guest-cmdline",
    "example-guest",
    "spinner-beside-interactive",
    "interrupts-and-events",
    "pingpong",
    "console-ring",
    "console-input",
    "grant-isolation",
    "fuzz-guest",
    "stage2-isolation",
    "split-driver",
    "weights",
    "linux",
    "bench-gate",
    "sdcard-layout",
];

/// The result of one scenario.
pub(crate) enum Verdict {
    /// It passed.
    Pass,
    /// It failed, for `reason`; `output` is shown (its last lines).
    Fail { reason: String, output: Vec<String> },
    /// It could not run, for the reason given, and counts neither way.
    Skip(String),
}

#[derive(Default)]
struct Tally {
    passed: usize,
    failed: usize,
}

impl Tally {
    fn record(&mut self, name: &str, verdict: Verdict) {
        match verdict {
            Verdict::Pass => {
                self.passed += 1;
                println!("test {name} ... ok");
            }
            Verdict::Fail { reason, output } => {
                self.failed += 1;
                println!("test {name} ... FAILED");
                println!("  reason: {reason}");
                if !output.is_empty() {
                    let start = output.len().saturating_sub(TAIL_LINES);
                    println!("  last {} lines of output:", output.len() - start);
                    for line in &output[start..] {
                        println!("  | {line}");
                    }
                }
            }
            Verdict::Skip(reason) => {
                let scenario = name.rsplit("::").next().unwrap_or(name);
                println!("SKIP {scenario}: {reason} ({name})");
            }
        }
    }
}

/// `cargo xtask test`. Returns whether everything passed.
pub fn test(args: &TestArgs) -> Result<bool> {
    let mut tally = Tally::default();
    for name in &args.scenarios {
        if !SCENARIOS.contains(&name.as_str()) && name != "xen-conformance" {
            anyhow::bail!(
                "unknown scenario {name:?}; the scenarios are {} xen-conformance",
                SCENARIOS.join(" ")
            );
        }
    }
    let wanted = |scenario: &str| {
        args.scenarios.is_empty() || args.scenarios.iter().any(|name| name == scenario)
    };
    if args.scenarios.is_empty() {
        host_steps(&mut tally);
    }

    println!("xtask: building images");
    let images = crate::images::build();
    if let Err(error) = &images {
        println!("xtask: image build failed: {error:#}");
    }
    let qemu = match &images {
        Ok(_) => setup::ensure_qemu().map_err(|error| format!("{error:#}")),
        Err(error) => Err(format!("images did not build: {error:#}")),
    };

    let mut xen: Option<Result<PathBuf, String>> = None;
    for &machine in &args.machines {
        let prefix = format!("integration::{machine}");
        let ready = match (&images, &qemu) {
            (Ok(images), Ok(())) => match machine {
                Machine::Raspi4b => {
                    crate::debian::provide_raspi4b_dtb().map_err(|error| format!("{error:#}"))
                }
                _ => Ok(()),
            }
            .and_then(|()| machine.args())
            .map(|_| images),
            (_, Err(reason)) => Err(reason.clone()),
            (Err(error), Ok(())) => Err(format!("images did not build: {error:#}")),
        };
        let images = match ready {
            Ok(images) => images,
            Err(reason) => {
                for scenario in SCENARIOS.iter().filter(|scenario| wanted(scenario)) {
                    if *scenario == "sdcard-layout" && machine != Machine::Raspi4b {
                        continue;
                    }
                    if *scenario == "bench-gate" && machine != Machine::VirtGicv3 {
                        continue;
                    }
                    if *scenario == "linux" && machine == Machine::Raspi4b {
                        continue;
                    }
                    tally.record(
                        &format!("{prefix}::{scenario}"),
                        Verdict::Fail {
                            reason: reason.clone(),
                            output: Vec::new(),
                        },
                    );
                }
                continue;
            }
        };

        let timeout = args.timeout;
        let mut reference = None;
        for &scenario in SCENARIOS.iter().filter(|scenario| wanted(scenario)) {
            let verdict = match scenario {
                "demo" => {
                    let (verdict, demo_reference) = demo(images, machine, timeout);
                    reference = demo_reference;
                    verdict
                }
                "crash-isolation" => crash_isolation(images, machine, timeout),
                "crash-restart" => crate::lifecycle_test::crash_restart(images, machine, timeout),
                "corrupt-pack" => crate::lifecycle_test::corrupt_pack(images, machine, timeout),
                "guest-cmdline" => guest_cmdline(images, machine, timeout),
                "example-guest" => example_guest(images, machine, timeout),
                "spinner-beside-interactive" => {
                    spinner_beside_interactive(images, machine, timeout)
                }
                "interrupts-and-events" => interrupts_and_events(images, machine, timeout),
                "pingpong" => system_passes(
                    images,
                    machine,
                    timeout,
                    "examples/systems/pingpong.toml",
                    false,
                ),
                "console-ring" => console_ring(images, machine, timeout),
                "console-input" => console_input(images, machine, timeout),
                "grant-isolation" => grant_isolation(images, machine, timeout),
                "fuzz-guest" => fuzz_guest(images, machine, timeout),
                "stage2-isolation" => stage2_isolation(images, machine, timeout),
                "split-driver" => split_driver(images, machine, timeout),
                "weights" => system_passes(
                    images,
                    machine,
                    timeout,
                    "examples/systems/weights.toml",
                    true,
                ),
                // The Linux guest needs the virt machines' RAM and PSCI; not on raspi4b.
                "linux" if machine == Machine::Raspi4b => continue,
                "linux" => linux(images, machine, timeout.max(LINUX_TIMEOUT)),
                // The regression gate of `cargo xtask bench --quick`: once, on virt-gicv3.
                "bench-gate" if machine == Machine::VirtGicv3 => crate::bench::gate(images),
                "bench-gate" => continue,
                // The boot partition for a real Pi 4: checked once, beside raspi4b.
                "sdcard-layout" if machine == Machine::Raspi4b => sdcard_layout(),
                "sdcard-layout" => continue,
                other => Verdict::Fail {
                    reason: format!("scenario {other} has no implementation"),
                    output: Vec::new(),
                },
            };
            tally.record(&format!("{prefix}::{scenario}"), verdict);
        }
        if args.no_xen || machine == Machine::Raspi4b || !wanted("xen-conformance") {
            continue;
        }
        let script = xen
            .get_or_insert_with(|| xen_setup(&images.guest_img))
            .clone();
        let verdict = match script {
            Err(reason) => Verdict::Skip(reason),
            Ok(script) => xen_conformance(&script, images, machine, reference),
        };
        tally.record(&format!("{prefix}::xen-conformance"), verdict);
    }

    println!("{} passed, {} failed", tally.passed, tally.failed);
    Ok(tally.failed == 0)
}

/// Host unit tests, rustfmt and clippy.
fn host_steps(tally: &mut Tally) {
    println!("xtask: host tests: cargo test --workspace --exclude pv-guest");
    let host =
        setup::run_checked(setup::cargo().args(["test", "--workspace", "--exclude", "pv-guest"]));
    tally.record(
        "host::cargo-test",
        host.map_or_else(error_verdict, |()| Verdict::Pass),
    );

    // House rules, enforced: rustfmt and clippy (warnings are errors) on the host crates
    // and on the bare-metal ones for their real target.
    let lints: [(&str, &[&str]); 5] = [
        ("host::rustfmt", &["fmt", "--all", "--", "--check"]),
        (
            "host::rustfmt-fuzz",
            &["fmt", "--manifest-path", "fuzz/Cargo.toml", "--", "--check"],
        ),
        (
            "host::clippy",
            &[
                "clippy",
                "--workspace",
                "--exclude",
                "pv-guest",
                "--exclude",
                "minimal-guest",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
        (
            "host::clippy-fuzz",
            &[
                "clippy",
                "--manifest-path",
                "fuzz/Cargo.toml",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
        ),
        (
            "host::clippy-bare-metal",
            &[
                "clippy",
                "-p",
                "hyp",
                "-p",
                "pv-guest",
                "-p",
                "minimal-guest",
                "--target",
                setup::TARGET,
                "--",
                "-D",
                "warnings",
            ],
        ),
    ];
    let targets = setup::ensure_rust_targets();
    for (name, arguments) in lints {
        println!("xtask: {name}: cargo {}", arguments.join(" "));
        let result = targets
            .as_ref()
            .map_err(|error| anyhow::anyhow!("{error:#}"))
            .and_then(|()| setup::run_checked(setup::cargo().args(arguments)));
        tally.record(name, result.map_or_else(error_verdict, |()| Verdict::Pass));
    }
    // Host fuzzing: every target of fuzz/ for a bounded time (docs/testing.md).
    println!(
        "xtask: host::fuzz: cargo fuzz run, {} s per target",
        crate::fuzz::TEST_SECONDS
    );
    let fuzz = crate::fuzz::run_all(&crate::fuzz::TARGETS, crate::fuzz::TEST_SECONDS);
    tally.record(
        "host::fuzz",
        fuzz.map_or_else(error_verdict, |()| Verdict::Pass),
    );
}

/// `sdcard-layout`: `cargo xtask sdcard` writes a complete Raspberry Pi 4 boot partition
/// (firmware, config.txt naming what is there, device tree, hypervisor, boot pack).
fn sdcard_layout() -> Verdict {
    let dir = setup::target_dir().join("sdcard-check");
    let _ = std::fs::remove_dir_all(&dir);
    crate::sdcard::sdcard(&dir, None).map_or_else(error_verdict, |()| Verdict::Pass)
}

/// Boots `domains` quietly; on a runner error, the failure verdict.
fn boot(
    images: &Images,
    domains: &[Domain],
    machine: Machine,
    timeout: Duration,
) -> Result<Outcome, Verdict> {
    boot_typing(images, domains, machine, timeout, &[])
}

/// [`boot`], typing the scripted `input` into the UART.
fn boot_typing(
    images: &Images,
    domains: &[Domain],
    machine: Machine,
    timeout: Duration,
    input: &[qemu::InputStep],
) -> Result<Outcome, Verdict> {
    run::boot_with_input(
        images,
        domains,
        &[],
        machine,
        (false, timeout, false),
        input,
    )
    .map_err(error_verdict)
}

/// The verdict of a step that ended with `error` (a configuration, build or runner
/// error): failed, with no output to show.
pub(crate) fn error_verdict(error: anyhow::Error) -> Verdict {
    Verdict::Fail {
        reason: format!("{error:#}"),
        output: Vec::new(),
    }
}

/// Boots `system` quietly; how the run ended, or on a runner error the failure verdict.
fn boot_loaded(
    images: &Images,
    system: &crate::config::System,
    machine: Machine,
    timeout: Duration,
    icount: bool,
) -> Result<Outcome, Verdict> {
    run::boot(
        images,
        &system.domains,
        &system.channels,
        machine,
        icount,
        timeout,
        false,
    )
    .map_err(error_verdict)
}

/// Boots the system the file `file` (relative to the workspace) describes, quietly;
/// returns the system and how the run ended, or on a configuration or runner error the
/// failure verdict.
pub(crate) fn boot_system(
    images: &Images,
    machine: Machine,
    timeout: Duration,
    file: &str,
    icount: bool,
) -> Result<(crate::config::System, Outcome), Verdict> {
    let path = setup::workspace_root().join(file);
    let system = crate::config::load_for(&path, machine).map_err(error_verdict)?;
    let outcome = boot_loaded(images, &system, machine, timeout, icount)?;
    Ok((system, outcome))
}

/// Checks that the run's only crash is the one logged as `crash` (a prefix of the
/// hypervisor's `domain NAME crashed: CAUSE` line) and that it ends with
/// `halt: 1 of DOMAINS domains did not shut down cleanly`.
fn only_crash_then_halt(outcome: &Outcome, crash: &str, domains: usize) -> Result<(), String> {
    let crashes: Vec<&str> = outcome
        .hyp_messages()
        .filter(|message| message.contains(" crashed:"))
        .collect();
    if !matches!(crashes.as_slice(), [only] if only.starts_with(crash)) {
        return Err(format!(
            "expected exactly one crash, `{crash}...`; got {crashes:?}"
        ));
    }
    let expected = Halt::Unclean {
        unclean: 1,
        domains,
    };
    match outcome.final_halt() {
        Some(halt) if halt == expected => Ok(()),
        Some(halt) => Err(format!("expected `{expected}`, got `{halt}`")),
        None => Err(format!("no final `{expected}` line")),
    }
}

/// The verdict of a scenario whose checks on `outcome` gave `checked`.
pub(crate) fn judge(outcome: &Outcome, checked: Result<(), String>) -> Verdict {
    match checked {
        Ok(()) => Verdict::Pass,
        Err(reason) => fail(outcome, reason),
    }
}

fn rendered(outcome: &Outcome) -> Vec<String> {
    outcome
        .lines
        .iter()
        .map(|line| line.render(false))
        .collect()
}

pub(crate) fn fail(outcome: &Outcome, reason: String) -> Verdict {
    Verdict::Fail {
        reason,
        output: rendered(outcome),
    }
}

/// The report of domain `name`, checked.
pub(crate) fn domain_report(outcome: &Outcome, name: &str) -> Result<Report, String> {
    let report = Report::parse(report::domain_lines(outcome.console_lines(), name));
    report
        .check()
        .map_err(|reason| format!("domain {name}: {reason}"))?;
    Ok(report)
}

/// `demo`: the default demo system; both reports pass and all domains halt cleanly.
/// Also returns `pv-a`'s test names (the default set) as the Xen reference.
fn demo(
    images: &Images,
    machine: Machine,
    timeout: Duration,
) -> (Verdict, Option<BTreeSet<String>>) {
    let (domains, channels) = run::demo_system(images);
    let outcome = match run::boot(images, &domains, &channels, machine, false, timeout, false) {
        Ok(outcome) => outcome,
        Err(error) => return (error_verdict(error), None),
    };
    let reference = domain_report(&outcome, "pv-a").ok().map(|report| {
        report
            .test_names()
            .into_iter()
            .map(str::to_string)
            .collect()
    });
    let check = || -> Result<(), String> {
        for domain in &domains {
            domain_report(&outcome, &domain.name)?;
        }
        run::check_all_clean(&outcome, domains.len())?;
        Ok(())
    };
    match check() {
        Ok(()) => (Verdict::Pass, reference),
        Err(reason) => (fail(&outcome, reason), reference),
    }
}

/// `crash-isolation`: `crasher` crashes, `victim` still passes its tests.
fn crash_isolation(images: &Images, machine: Machine, timeout: Duration) -> Verdict {
    let domains = [
        Domain::new("victim", &images.guest_img, ""),
        Domain::new("crasher", &images.guest_img, "crash"),
    ];
    let outcome = match boot(images, &domains, machine, timeout) {
        Ok(outcome) => outcome,
        Err(verdict) => return verdict,
    };
    let check = || -> Result<(), String> {
        outcome.check_run()?;
        domain_report(&outcome, "victim")?;
        if !outcome
            .hyp_messages()
            .any(|message| message.starts_with("domain crasher crashed:"))
        {
            return Err("no hypervisor line `domain crasher crashed: ...`".into());
        }
        let expected = Halt::Unclean {
            unclean: 1,
            domains: 2,
        };
        match outcome.final_halt() {
            Some(halt) if halt == expected => Ok(()),
            Some(halt) => Err(format!("expected `{expected}`, got `{halt}`")),
            None => Err(format!("no final `{expected}` line")),
        }
    };
    judge(&outcome, check())
}

/// `guest-cmdline`: the command line `hello errors` selects those scenarios.
fn guest_cmdline(images: &Images, machine: Machine, timeout: Duration) -> Verdict {
    let domains = [Domain::new("cmdline", &images.guest_img, "hello errors")];
    let outcome = match boot(images, &domains, machine, timeout) {
        Ok(outcome) => outcome,
        Err(verdict) => return verdict,
    };
    let check = || -> Result<(), String> {
        let report = domain_report(&outcome, "cmdline")?;
        if report.results.len() < 2 {
            return Err(format!(
                "`hello errors` ran {} tests, expected at least 2",
                report.results.len()
            ));
        }
        run::check_all_clean(&outcome, domains.len())?;
        Ok(())
    };
    judge(&outcome, check())
}

/// `example-guest`: the `examples/minimal-guest` template, which depends on nothing but
/// `hypercall-abi`, boots, prints its greeting and powers off.
fn example_guest(images: &Images, machine: Machine, timeout: Duration) -> Verdict {
    let domains = [Domain::new("minimal-guest", &images.example_img, "")];
    let outcome = match boot(images, &domains, machine, timeout) {
        Ok(outcome) => outcome,
        Err(verdict) => return verdict,
    };
    let check = || -> Result<(), String> {
        let greeted = outcome
            .console_lines()
            .any(|line| line.starts_with("(minimal-guest) Hello from minimal-guest on Xen 4.17"));
        if !greeted {
            return Err("no `Hello from minimal-guest on Xen 4.17` line".into());
        }
        run::check_all_clean(&outcome, domains.len())?;
        Ok(())
    };
    judge(&outcome, check())
}

/// `spinner-beside-interactive`: two domains that each spin for 300 ms of counter time
/// share physical CPU 0 with an interactive one. Each spinner must see itself preempted
/// (its `spin::was_preempted` test), and the interactive domain must finish before either
/// spinner: a domain that spins cannot starve the others.
fn spinner_beside_interactive(images: &Images, machine: Machine, timeout: Duration) -> Verdict {
    let mut domains = [
        Domain::new("spinner-a", &images.guest_img, "spin"),
        Domain::new("spinner-b", &images.guest_img, "spin"),
        Domain::new("interactive", &images.guest_img, "hello"),
    ];
    for domain in &mut domains {
        domain.settings.affinity = 1;
    }
    let outcome = match boot(images, &domains, machine, timeout) {
        Ok(outcome) => outcome,
        Err(verdict) => return verdict,
    };
    let check = || -> Result<(), String> {
        for name in ["spinner-a", "spinner-b", "interactive"] {
            domain_report(&outcome, name)?;
        }
        let position = |prefix: &str| {
            outcome
                .console_lines()
                .position(|line| line.starts_with(prefix) && line.ends_with(" failed"))
        };
        let interactive = position("(interactive) ");
        for spinner in ["(spinner-a) ", "(spinner-b) "] {
            match (interactive, position(spinner)) {
                (Some(interactive), Some(spinner)) if interactive < spinner => {}
                _ => return Err("the interactive domain did not finish before the spinners".into()),
            }
        }
        run::check_all_clean(&outcome, domains.len())?;
        Ok(())
    };
    judge(&outcome, check())
}

/// `interrupts-and-events`: a 2-vCPU domain runs the guest's `events` (event channels and
/// their upcall), `ipi` (SGIs between its vCPUs), `evtchn-ipi` (EVTCHNOP_bind_ipi) and
/// `timer` (the virtual timer) scenarios; every test must pass and at least 12 must run.
fn interrupts_and_events(images: &Images, machine: Machine, timeout: Duration) -> Verdict {
    let mut domain = Domain::new("events", &images.guest_img, "events ipi evtchn-ipi timer");
    domain.vcpus = 2;
    let domains = [domain];
    let outcome = match boot(images, &domains, machine, timeout) {
        Ok(outcome) => outcome,
        Err(verdict) => return verdict,
    };
    let check = || -> Result<(), String> {
        let report = domain_report(&outcome, "events")?;
        if report.results.len() < 12 {
            return Err(format!(
                "only {} tests ran, expected at least 12",
                report.results.len()
            ));
        }
        run::check_all_clean(&outcome, domains.len())?;
        Ok(())
    };
    judge(&outcome, check())
}

/// Boots an example system (a config file of `examples/systems`) and requires every
/// domain's report to pass and a clean halt: `pingpong.toml` is two domains bouncing 5000
/// events over a pre-connected channel; `weights.toml` two CPU hogs on one CPU with
/// weights 2:1, each checking its measured share (2/3 and 1/3) within 10 %. `icount` runs
/// it in deterministic virtual time (shares measured from counter gaps are then exact
/// instruction counts, immune to the host's own scheduling).
fn system_passes(
    images: &Images,
    machine: Machine,
    timeout: Duration,
    file: &str,
    icount: bool,
) -> Verdict {
    let (system, outcome) = match boot_system(images, machine, timeout, file, icount) {
        Ok(booted) => booted,
        Err(verdict) => return verdict,
    };
    let check = || -> Result<(), String> {
        for domain in &system.domains {
            domain_report(&outcome, &domain.name)?;
        }
        run::check_all_clean(&outcome, system.domains.len())?;
        Ok(())
    };
    judge(&outcome, check())
}

/// `grant-isolation`: `examples/systems/grant-isolation.toml`. owner, friend and stranger
/// pass every test; rogue, which writes through a read-only grant, is ended by the
/// hypervisor for a stage-2 permission fault, and no other domain is.
fn grant_isolation(images: &Images, machine: Machine, timeout: Duration) -> Verdict {
    let file = "examples/systems/grant-isolation.toml";
    let outcome = match boot_system(images, machine, timeout, file, false) {
        Ok((_, outcome)) => outcome,
        Err(verdict) => return verdict,
    };
    let check = || -> Result<(), String> {
        outcome.check_run()?;
        for name in ["owner", "friend", "stranger"] {
            let report = domain_report(&outcome, name)?;
            if report.results.len() < 6 {
                return Err(format!(
                    "domain {name} ran {} tests, expected 6",
                    report.results.len()
                ));
            }
        }
        only_crash_then_halt(
            &outcome,
            "domain rogue crashed: stage-2 permission fault",
            4,
        )
    };
    judge(&outcome, check())
}

/// `fuzz-guest`: a short seed of pv-guest's hypercall fuzzer beside two victims
/// (`crate::fuzz_guest`: every domain passes, none crashes, clean halt).
fn fuzz_guest(images: &Images, machine: Machine, timeout: Duration) -> Verdict {
    use crate::fuzz_guest::{TEST_ITERATIONS, TEST_SEED};
    let system = match crate::fuzz_guest::system(machine, TEST_SEED, TEST_ITERATIONS, timeout) {
        Ok(system) => system,
        Err(error) => return error_verdict(error),
    };
    let outcome = match boot_loaded(images, &system, machine, timeout, false) {
        Ok(outcome) => outcome,
        Err(verdict) => return verdict,
    };
    judge(&outcome, crate::fuzz_guest::check(&outcome, &system))
}

/// `stage2-isolation`: `examples/systems/stage2-isolation.toml`, with the device
/// addresses of `machine` (its physical UART, and the GIC's hypervisor interface: GICH
/// on GICv2, the redistributors on GICv3). Each of the six probes passes its two tests,
/// then is ended by exactly one `stage-2 ... fault` line of the kind and address
/// expected; on `virt` the read and write probes' IPA is another domain's physical RAM
/// (from the boot log); the victims pass every test; `halt: 6 of 8 ...`.
fn stage2_isolation(images: &Images, machine: Machine, timeout: Duration) -> Verdict {
    let (uart, gic) = match machine {
        Machine::VirtGicv3 => (0x0900_0000u64, 0x080a_0000u64),
        Machine::VirtGicv2 => (0x0900_0000, 0x0803_0000),
        Machine::Raspi4b => (0xfe21_5040, 0xff84_4000),
    };
    let other_ram = 0x4300_0000u64;
    let path = setup::workspace_root().join("examples/systems/stage2-isolation.toml");
    let mut system = match crate::config::load_for(&path, machine) {
        Ok(system) => system,
        Err(error) => return error_verdict(error),
    };
    for domain in &mut system.domains {
        match domain.name.as_str() {
            "probe-uart" => domain.cmdline = format!("isolation probe=device address={uart:#x}"),
            "probe-gic" => domain.cmdline = format!("isolation probe=device address={gic:#x}"),
            _ => {}
        }
    }
    let outcome = match boot_loaded(images, &system, machine, timeout, false) {
        Ok(outcome) => outcome,
        Err(verdict) => return verdict,
    };
    let expected: [(&str, String); 6] = [
        (
            "probe-read",
            format!("translation fault (level/status 2) on read at IPA {other_ram:#x} "),
        ),
        (
            "probe-write",
            format!("translation fault (level/status 2) on write at IPA {other_ram:#x} "),
        ),
        ("probe-uart", format!("on read at IPA {uart:#x} ")),
        ("probe-gic", format!("on read at IPA {gic:#x} ")),
        (
            "probe-beyond-ipa",
            "translation fault (level/status 0) on read at IPA 0x8000000000 ".into(),
        ),
        (
            "probe-exec-xn",
            "permission fault (level/status 3) on instruction fetch at IPA ".into(),
        ),
    ];
    let check = || -> Result<(), String> {
        outcome.check_run()?;
        for victim in ["ping", "pong"] {
            let report = domain_report(&outcome, victim)?;
            if report.results.len() != 5 {
                return Err(format!(
                    "domain {victim}: {} tests ran, expected 5",
                    report.results.len()
                ));
            }
        }
        let crashes: Vec<&str> = outcome
            .hyp_messages()
            .filter(|message| message.contains(" crashed:"))
            .collect();
        if crashes.len() != expected.len() {
            return Err(format!(
                "expected {} crashes, got {crashes:?}",
                expected.len()
            ));
        }
        for (name, fault) in &expected {
            let prefix = format!("domain {name} crashed: stage-2 ");
            let lines: Vec<&&str> = crashes
                .iter()
                .filter(|line| line.starts_with(&prefix))
                .collect();
            match lines.as_slice() {
                [line] if line.contains(fault.as_str()) => {}
                _ => {
                    return Err(format!(
                        "{name}: expected one `{prefix}...{fault}...` line, got {lines:?}"
                    ))
                }
            }
            for test in ["own_view_of_hypervisor_address", "stage1_execute_never"] {
                let ok = format!("({name}) test isolation::{test} ... ok");
                if !outcome.console_lines().any(|line| line == ok) {
                    return Err(format!("no `{ok}` line"));
                }
            }
        }
        // On virt, 0x4300_0000 must be where the hypervisor put another domain's RAM.
        if machine != Machine::Raspi4b {
            let holder = outcome.hyp_messages().find_map(|message| {
                let (name, rest) = message.strip_prefix("domain ")?.split_once(": ")?;
                let (mib, rest) = rest.split_once(" MiB at 0x")?;
                let base = u64::from_str_radix(rest.split(',').next()?, 16).ok()?;
                let size = mib.parse::<u64>().ok()? << 20;
                (base..base + size)
                    .contains(&other_ram)
                    .then(|| name.to_string())
            });
            match holder {
                Some(name)
                    if !name.starts_with("probe-read") && !name.starts_with("probe-write") => {}
                other => {
                    return Err(format!(
                        "physical {other_ram:#x} is not another domain's RAM (held by {other:?})"
                    ))
                }
            }
        }
        let halt = Halt::Unclean {
            unclean: 6,
            domains: 8,
        };
        match outcome.final_halt() {
            Some(found) if found == halt => Ok(()),
            found => Err(format!("expected `{halt}`, got {found:?}")),
        }
    };
    judge(&outcome, check())
}

/// `split-driver`: the block split driver (`examples/systems/split-block.toml`). The
/// frontend's six tests pass (connect, bad requests, thousands of checksummed writes and
/// reads, a full ring, latency, the backend's death seen as an error), it reports its
/// throughput and latency, and the backend ends by the crash the frontend asked for, the
/// only crash of the run.
fn split_driver(images: &Images, machine: Machine, timeout: Duration) -> Verdict {
    let file = "examples/systems/split-block.toml";
    let outcome = match boot_system(images, machine, timeout, file, false) {
        Ok((_, outcome)) => outcome,
        Err(verdict) => return verdict,
    };
    let check = || -> Result<(), String> {
        outcome.check_run()?;
        let front = domain_report(&outcome, "front")?;
        if front.results.len() != 6 || front.passed() != 6 {
            return Err(format!(
                "front: expected 6 tests passed, got {} of {}",
                front.passed(),
                front.results.len()
            ));
        }
        for needle in ["MiB/s", "latency at queue depth 1"] {
            if !outcome
                .console_lines()
                .any(|line| line.starts_with("(front) blkfront:") && line.contains(needle))
            {
                return Err(format!("front printed no `{needle}` figure"));
            }
        }
        only_crash_then_halt(&outcome, "domain back crashed:", 2)
    };
    judge(&outcome, check())
}

/// `console-ring`: a guest that writes through its console ring only (not
/// `CONSOLEIO_write`) is printed by the hypervisor, its backend: the 20 lines
/// `(ring) ring line N of 20` appear in order, and its report passes.
fn console_ring(images: &Images, machine: Machine, timeout: Duration) -> Verdict {
    let domains = [Domain::new("ring", &images.guest_img, "ring-console")];
    let outcome = match boot(images, &domains, machine, timeout) {
        Ok(outcome) => outcome,
        Err(verdict) => return verdict,
    };
    let check = || -> Result<(), String> {
        let report = domain_report(&outcome, "ring")?;
        if report.results.len() < 3 {
            return Err(format!(
                "only {} tests ran, expected 3",
                report.results.len()
            ));
        }
        let ring_lines: Vec<&str> = outcome
            .console_lines()
            .filter(|line| line.starts_with("(ring) ring line "))
            .collect();
        let expected: Vec<String> = (1..=20)
            .map(|n| format!("(ring) ring line {n} of 20"))
            .collect();
        if ring_lines != expected {
            return Err(format!(
                "ring lines {ring_lines:?}, expected 1..=20 in order"
            ));
        }
        run::check_all_clean(&outcome, domains.len())?;
        Ok(())
    };
    judge(&outcome, check())
}

/// `console-input`: keystrokes reach the focused domain's console ring, and Ctrl-A three
/// times switches the focus. Two domains run the guest's `console-input` scenario; once
/// both are ready, `A-text` CR is typed (the focus starts on the first domain), then
/// Ctrl-A x3, then (after the hypervisor announces the switch) `B-text` CR. `input-a` must
/// get exactly `A-text` and then nothing for 4 s (so `B-text` did not leak to it), and
/// `input-b` exactly `B-text`; the switch must happen while `input-a` is still alive.
fn console_input(images: &Images, machine: Machine, timeout: Duration) -> Verdict {
    use qemu::InputStep;
    let domains = [
        Domain::new(
            "input-a",
            &images.guest_img,
            "console-input expect=A-text quiet_ms=4000",
        ),
        Domain::new(
            "input-b",
            &images.guest_img,
            "console-input expect=B-text quiet_ms=500",
        ),
    ];
    const SWITCHED: &str = "console input now goes to domain input-b";
    let script = [
        InputStep::new(
            &[
                "(input-a) console-input: ready",
                "(input-b) console-input: ready",
            ],
            "A-text\r",
        ),
        InputStep::new(&["(input-a) console-input: received"], [1u8, 1, 1]),
        InputStep::new(&[SWITCHED], "B-text\r"),
    ];
    let outcome = match boot_typing(images, &domains, machine, timeout, &script) {
        Ok(outcome) => outcome,
        Err(verdict) => return verdict,
    };
    let check = || -> Result<(), String> {
        for name in ["input-a", "input-b"] {
            let report = domain_report(&outcome, name)?;
            if report.results.len() != 2 {
                return Err(format!(
                    "domain {name}: {} tests ran, expected 2",
                    report.results.len()
                ));
            }
        }
        let messages: Vec<&str> = outcome.hyp_messages().collect();
        let position = |text: &str| messages.iter().position(|message| message.contains(text));
        if position("console input goes to domain input-a (type Ctrl-A three times to switch)")
            .is_none()
        {
            return Err("no boot line `console input goes to domain input-a ...`".into());
        }
        match (position(SWITCHED), position("domain input-a shut down")) {
            (Some(switched), Some(ended)) if switched < ended => {}
            (None, _) => return Err(format!("no hypervisor line `{SWITCHED} ...`")),
            _ => return Err("the focus switched only after input-a ended".into()),
        }
        run::check_all_clean(&outcome, domains.len())?;
        Ok(())
    };
    judge(&outcome, check())
}

/// Output of a captured external command.
pub(crate) struct Captured {
    /// Its exit status (`None` if it could not be collected after a kill).
    pub status: Option<std::process::ExitStatus>,
    /// Whether it was killed at the timeout.
    pub timed_out: bool,
    /// Its standard output, by line.
    pub stdout: Vec<String>,
    /// Its standard error, by line.
    pub stderr: Vec<String>,
}

impl Captured {
    /// Standard output, then standard error.
    pub fn all_lines(&self) -> Vec<String> {
        self.stdout.iter().chain(&self.stderr).cloned().collect()
    }
}

/// Runs `command` with stdin closed, collecting its output, killing it after `timeout`.
pub(crate) fn capture(command: &mut Command, timeout: Duration) -> std::io::Result<Captured> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let (sender, receiver) = mpsc::channel();
    let mut readers = Vec::new();
    for (is_stderr, pipe) in [
        (
            false,
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
        (
            true,
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        ),
    ] {
        let Some(mut pipe) = pipe else { continue };
        let sender = sender.clone();
        readers.push(std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            let _ = sender.send((is_stderr, bytes));
        }));
    }
    drop(sender);
    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait()? {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            None => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let mut captured = Captured {
        status,
        timed_out,
        stdout: Vec::new(),
        stderr: Vec::new(),
    };
    // A grandchild (QEMU) may keep the pipes open after a kill; do not wait forever.
    let collect_until = Instant::now() + Duration::from_secs(5);
    while let Ok((is_stderr, bytes)) =
        receiver.recv_timeout(collect_until.saturating_duration_since(Instant::now()))
    {
        let lines = String::from_utf8_lossy(&bytes)
            .lines()
            .map(|line| line.trim_end_matches('\r').to_string())
            .collect();
        if is_stderr {
            captured.stderr = lines;
        } else {
            captured.stdout = lines;
        }
    }
    Ok(captured)
}

fn xen_script() -> PathBuf {
    setup::workspace_root().join("../shared/peers/xen/run-on-xen")
}

/// Installs Xen and its tools (`run-on-xen --setup-only`); `Err` is the reason to skip.
pub(crate) fn xen_setup(image: &Path) -> Result<PathBuf, String> {
    let script = xen_script();
    if !script.is_file() {
        return Err(format!("{} is missing", script.display()));
    }
    println!("xtask: setting up real Xen (first use downloads packages)");
    let captured = capture(
        Command::new(&script).arg(image).arg("--setup-only"),
        XEN_SETUP_TIMEOUT,
    )
    .map_err(|error| format!("cannot start {}: {error}", script.display()))?;
    if captured.timed_out {
        return Err("installation timed out".into());
    }
    match captured.status {
        Some(status) if status.success() => Ok(script),
        status => {
            let last = captured
                .stderr
                .iter()
                .rev()
                .find(|line| !line.trim().is_empty())
                .cloned()
                .unwrap_or_default();
            let status = status.map_or("killed".to_string(), |status| status.to_string());
            Err(format!("installation failed ({status}): {last}"))
        }
    }
}

/// `xen-conformance`: pv-guest as dom0 of real Xen passes its report with the same test
/// names as under our hypervisor (`pv-a` of `demo`).
fn xen_conformance(
    script: &Path,
    images: &Images,
    machine: Machine,
    reference: Option<BTreeSet<String>>,
) -> Verdict {
    let gic = machine.gic_version().to_string();
    let timeout = XEN_TIMEOUT_SECONDS.to_string();
    let captured = match capture(
        Command::new(script)
            .arg(&images.guest_img)
            .args(["--gic", &gic, "--timeout", &timeout])
            .current_dir(setup::workspace_root()),
        XEN_HARD_TIMEOUT,
    ) {
        Ok(captured) => captured,
        Err(error) => return Verdict::Skip(format!("cannot start {}: {error}", script.display())),
    };
    let output = captured.all_lines();
    let failure = |reason: String| Verdict::Fail {
        reason,
        output: output.clone(),
    };
    if captured.timed_out {
        return failure(format!(
            "run-on-xen did not finish in {} s",
            XEN_HARD_TIMEOUT.as_secs()
        ));
    }
    let lines = captured
        .stdout
        .iter()
        .map(|line| line.strip_prefix("(d0) ").unwrap_or(line));
    let report = Report::parse(lines);
    if let Err(reason) = report.check() {
        let status = captured
            .status
            .map_or("killed".to_string(), |status| status.to_string());
        return failure(format!("on Xen: {reason} (run-on-xen: {status})"));
    }
    let Some(reference) = reference else {
        return failure(
            "no reference: the demo's pv-a report did not pass on our hypervisor".into(),
        );
    };
    let on_xen: BTreeSet<String> = report
        .test_names()
        .into_iter()
        .map(str::to_string)
        .collect();
    if on_xen != reference {
        let only_xen: Vec<&String> = on_xen.difference(&reference).collect();
        let only_ours: Vec<&String> = reference.difference(&on_xen).collect();
        return failure(format!(
            "test names differ: only on Xen {only_xen:?}, only on our hypervisor {only_ours:?}"
        ));
    }
    Verdict::Pass
}

/// The `linux` scenario's QEMU timeout at least (Linux under TCG reaches init in well
/// under a minute on an idle machine; this leaves room for a loaded one).
const LINUX_TIMEOUT: Duration = Duration::from_secs(300);

/// `linux`: Debian's arm64 kernel, unmodified, boots with 2 vCPUs beside a pv-guest
/// domain, detects Xen, reaches its init, shows 2 CPUs and the Xen event interrupt
/// counting on each, reads a line typed on the UART (console input through its console
/// ring to `hvc0`), and powers off; the kernel log shows no BUG, oops or WARN
/// (`linux::check_console`), pv-guest passes, and both domains shut down cleanly. SKIP
/// when the Debian packages cannot be fetched (not Debian, not root, no registry).
fn linux(images: &Images, machine: Machine, timeout: Duration) -> Verdict {
    let linux = match crate::linux::prepare() {
        Ok(linux) => linux,
        Err(error) => {
            return Verdict::Skip(format!("the Linux guest cannot be prepared: {error:#}"))
        }
    };
    let domains = crate::linux::system(images, &linux, true);
    // The Linux domain is the first, so it has the console input focus from the start.
    let script = [qemu::InputStep::new(
        &[crate::linux::WAITING_FOR_INPUT],
        format!("{}\r", crate::linux::TYPED_LINE),
    )];
    let outcome = match boot_typing(images, &domains, machine, timeout, &script) {
        Ok(outcome) => outcome,
        Err(verdict) => return verdict,
    };
    let check = || -> Result<(), String> {
        let prefix = format!("({}) ", crate::linux::DOMAIN_NAME);
        let console: Vec<&str> = outcome
            .console_lines()
            .filter_map(|line| line.strip_prefix(prefix.as_str()))
            .collect();
        crate::linux::check_console(&console)?;
        domain_report(&outcome, crate::linux::BESIDE_NAME)?;
        let shutdown = format!("domain {} shut down: poweroff", crate::linux::DOMAIN_NAME);
        if !outcome.hyp_messages().any(|message| message == shutdown) {
            return Err(format!("no hypervisor line `{shutdown}`"));
        }
        run::check_all_clean(&outcome, domains.len())?;
        Ok(())
    };
    match check() {
        Ok(()) => Verdict::Pass,
        // Show Linux's and the hypervisor's lines (pv-a's report is long and beside the
        // point), and say when the run ended by the timeout.
        Err(reason) => Verdict::Fail {
            reason: match outcome.check_run() {
                Err(run) if outcome.timed_out => format!("{reason}; {run}"),
                _ => reason,
            },
            output: outcome
                .lines
                .iter()
                .map(|line| line.render(false))
                .filter(|line| !line.starts_with(&format!("({}) ", crate::linux::BESIDE_NAME)))
                .collect(),
        },
    }
}
