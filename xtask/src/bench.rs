//! `cargo xtask bench`: the micro-benchmarks of issue 8, on our hypervisor and on Xen 4.17
//! side by side, deterministically.
//!
//! `pv-guest` with the command line `bench` (or `bench quick`, fewer repetitions) prints
//! one console line per figure, `bench: NAME VALUE` (nanoseconds per operation, one
//! decimal) or `bench: NAME n/a (REASON)`, then its usual test report. This module boots
//! it under `-icount shift=0,sleep=off` (one virtual nanosecond per instruction) on our
//! hypervisor (one domain, 2 vCPUs, 64 MiB) and as dom0 of real Xen
//! (`../shared/peers/xen/run-on-xen --icount --smp 2`), for GICv3 and GICv2, and then:
//!
//! - prints one table (benchmark, GIC, Xen, ours, ours/Xen, the issue's goal met or not),
//!   the hypervisor's image size (text, data, bss of `hyp.elf`; the raw `hyp.img`) and
//!   the lines of Rust in `hyp/` without tests ([`rust_lines`]);
//! - writes `target/bench/results.json` ([`BenchFile`]) and the bar chart
//!   `target/bench/results.svg`;
//! - compares our figures with the committed `bench/baseline.json` and fails when one is
//!   more than [`TOLERANCE`] worse (`--update-baseline` rewrites that file instead).
//!
//! `--quick` runs `bench quick` on our hypervisor only: the regression gate that
//! `cargo xtask test` runs as `bench-gate` ([`gate`]). Full and quick figures are kept in
//! separate sections of the baseline, as they are measured over different repetitions.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use qemu::report::{self, Report};
use qemu::Machine;
use serde::{Deserialize, Serialize};

use crate::args::BenchArgs;
use crate::images::Images;
use crate::run::{self, Domain};
use crate::setup;
use crate::test::{self, Verdict};

/// The benchmarks in table order: the set of Dall et al. (ISCA 2016) first, then ours.
/// Any other name the guest prints is shown too, after these, in alphabetical order.
pub const KNOWN: &[&str] = &[
    "hypercall",
    "gic-trap",
    "gic-trap-state",
    "virtual-ipi",
    "virq-completion",
    "vm-switch",
    "io-out",
    "io-in",
    "console-write-1",
    "console-write-64",
    "evtchn-upcall",
    "timer-latency",
    "boot",
];

/// How much worse than the baseline a figure may be before the gate fails (5 %).
pub const TOLERANCE: f64 = 0.05;
/// And by at least this many instructions: one counter tick (16 ns at QEMU's 62.5 MHz).
/// Figures of a few instructions (`virq-completion`, about 13) are timed one operation
/// at a time against that tick, and move by a few instructions when unrelated code
/// shifts the phase; 5 % of them is noise, not a regression.
pub const ABSOLUTE_SLACK: f64 = 16.0;
/// The issue's limit on the hypervisor image (`hyp.img`): under 256 KiB.
pub const IMAGE_LIMIT: u64 = 256 * 1024;
/// The benchmark domain's name on our hypervisor (its console prefix).
const DOMAIN: &str = "bench";
/// Guest RAM of the benchmark domain.
const MEMORY_MIB: u32 = 64;
/// vCPUs of the benchmark domain (and `run-on-xen --smp`): the virtual IPI needs two.
const VCPUS: u32 = 2;
/// `run-on-xen --timeout`.
const XEN_TIMEOUT_SECONDS: u64 = 240;
/// Our own limit on one `run-on-xen` call (its timeout plus Xen's set-up and dtc).
const XEN_HARD_TIMEOUT: Duration = Duration::from_secs(XEN_TIMEOUT_SECONDS + 60);
/// The QEMU timeout of `bench-gate` in `cargo xtask test`.
pub const GATE_TIMEOUT: Duration = Duration::from_secs(60);

/// One figure as the guest printed it. In JSON: a number, or the `n/a (REASON)` string.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Measurement {
    /// Nanoseconds per operation (instructions, under icount).
    Ns(f64),
    /// Not measurable in that setup: the guest's `n/a (REASON)` text, verbatim.
    NotAvailable(String),
}

// By hand, not `#[serde(untagged)]`: `defmt-decoder` turns on serde_json's
// `arbitrary_precision`, with which an untagged enum no longer reads numbers.
impl<'de> Deserialize<'de> for Measurement {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(text) => Ok(Measurement::NotAvailable(text)),
            serde_json::Value::Number(number) => number
                .as_f64()
                .map(Measurement::Ns)
                .ok_or_else(|| serde::de::Error::custom(format!("{number} is not a figure"))),
            other => Err(serde::de::Error::custom(format!(
                "expected a number or an `n/a (REASON)` string, got {other}"
            ))),
        }
    }
}

impl Measurement {
    /// The figure in nanoseconds, if there is one.
    pub fn ns(&self) -> Option<f64> {
        match self {
            Measurement::Ns(value) => Some(*value),
            Measurement::NotAvailable(_) => None,
        }
    }
}

/// Figures by benchmark name.
pub type Figures = BTreeMap<String, Measurement>;

/// The figures of one GIC version.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GicRun {
    /// On our hypervisor.
    #[serde(default)]
    pub ours: Figures,
    /// On Xen 4.17 (`None`: not run, e.g. with `--quick` or when Xen is unavailable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xen: Option<Figures>,
}

/// Figures by GIC (`gicv3`, `gicv2`).
pub type Runs = BTreeMap<String, GicRun>;

/// The hypervisor's size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSize {
    /// Bytes of code and read-only data in `hyp.elf` (as `size` counts text).
    pub text: u64,
    /// Bytes of initialised writable data.
    pub data: u64,
    /// Bytes of zero-initialised data (not in the image file).
    pub bss: u64,
    /// Bytes of the raw image `hyp.img`, what the boot loader loads.
    pub raw_image: u64,
}

/// One goal of the issue, judged on one GIC.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GoalResult {
    /// The benchmark, or `hyp-image`.
    pub benchmark: String,
    /// `gicv3`, `gicv2`, or empty for the image.
    pub gic: String,
    /// The goal, e.g. `<= 60` or `<= 0.4 x Xen`.
    pub goal: String,
    /// The figure judged (ns, a ratio, or bytes).
    pub value: Option<f64>,
    /// `met`, `not met`, or `unknown` (no figure).
    pub status: String,
}

/// The contents of `target/bench/results.json` and of `bench/baseline.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BenchFile {
    /// The commit measured (`git rev-parse --short HEAD`, `-dirty` with local changes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Figures of `bench` (full repetitions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full: Option<Runs>,
    /// Figures of `bench quick`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quick: Option<Runs>,
    /// The hypervisor's size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageSize>,
    /// Lines of Rust in `hyp/` without tests ([`rust_lines`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hyp_rust_lines: Option<u64>,
    /// The issue's goals (results only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub goals: Vec<GoalResult>,
    /// What could not be measured and why (results only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl BenchFile {
    /// The section of `quick` or full figures.
    pub fn section(&self, quick: bool) -> Option<&Runs> {
        if quick {
            self.quick.as_ref()
        } else {
            self.full.as_ref()
        }
    }

    fn section_mut(&mut self, quick: bool) -> &mut Option<Runs> {
        if quick {
            &mut self.quick
        } else {
            &mut self.full
        }
    }
}

// ---------------------------------------------------------------------------------------
// Parsing the guest's output
// ---------------------------------------------------------------------------------------

/// Reads every `bench: NAME VALUE` / `bench: NAME n/a (REASON)` line of a guest's console
/// (console prefix already removed); other lines are ignored. A malformed `bench:` line or
/// a name printed twice is an error.
pub fn parse_figures<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Figures, String> {
    let mut figures = Figures::new();
    for line in lines {
        let Some(rest) = line.trim_end().strip_prefix("bench: ") else {
            continue;
        };
        let (name, value) = rest
            .trim()
            .split_once(' ')
            .ok_or_else(|| format!("malformed line {line:?}: expected `bench: NAME VALUE`"))?;
        let value = value.trim();
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte));
        if !valid_name {
            return Err(format!("malformed line {line:?}: bad benchmark name"));
        }
        let measurement = if value == "n/a" || value.starts_with("n/a ") {
            Measurement::NotAvailable(value.to_string())
        } else {
            Measurement::Ns(parse_decimal(value).ok_or_else(|| {
                format!("malformed line {line:?}: {value:?} is not a number of nanoseconds")
            })?)
        };
        if figures.insert(name.to_string(), measurement).is_some() {
            return Err(format!("benchmark {name} is reported twice"));
        }
    }
    Ok(figures)
}

/// A non-negative decimal number: digits, optionally `.` and more digits.
fn parse_decimal(text: &str) -> Option<f64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, "0"));
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) {
        return None;
    }
    text.parse().ok()
}

/// The figures and test report of one guest's console lines; the error says why the run
/// does not count (its report failed, or it printed no figure).
pub fn evaluate(lines: &[&str]) -> (Figures, Result<(), String>) {
    let figures = match parse_figures(lines.iter().copied()) {
        Ok(figures) => figures,
        Err(reason) => return (Figures::new(), Err(reason)),
    };
    let checked = Report::parse(lines.iter().copied()).check().and_then(|()| {
        if figures.is_empty() {
            Err("the guest printed no `bench:` line".to_string())
        } else {
            Ok(())
        }
    });
    (figures, checked)
}

// ---------------------------------------------------------------------------------------
// Goals, ratios, the table
// ---------------------------------------------------------------------------------------

/// The kind of a goal.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Limit {
    /// At most this many nanoseconds (instructions).
    AtMost(f64),
    /// At most this fraction of Xen's figure on the same run.
    XenRatioAtMost(f64),
}

/// The issue's goals per benchmark.
pub const GOALS: &[(&str, Limit)] = &[
    ("hypercall", Limit::AtMost(60.0)),
    ("gic-trap", Limit::AtMost(150.0)),
    ("console-write-1", Limit::AtMost(300.0)),
    ("evtchn-upcall", Limit::AtMost(590.0)),
    ("timer-latency", Limit::AtMost(435.0)),
    ("vm-switch", Limit::XenRatioAtMost(0.4)),
    ("io-out", Limit::XenRatioAtMost(0.4)),
    ("io-in", Limit::XenRatioAtMost(0.4)),
];

/// Whether a goal is met.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoalStatus {
    /// The figure is within the goal.
    Met,
    /// It is not.
    NotMet,
    /// A figure it needs is missing.
    Unknown,
}

impl GoalStatus {
    /// `met`, `not met`, `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            GoalStatus::Met => "met",
            GoalStatus::NotMet => "not met",
            GoalStatus::Unknown => "unknown",
        }
    }
}

/// `ours / xen`, when both are known and Xen's is positive.
pub fn ratio(ours: Option<f64>, xen: Option<f64>) -> Option<f64> {
    match (ours, xen) {
        (Some(ours), Some(xen)) if xen > 0.0 => Some(ours / xen),
        _ => None,
    }
}

/// The goal of `benchmark`, if the issue sets one.
pub fn goal_of(benchmark: &str) -> Option<Limit> {
    GOALS
        .iter()
        .find(|(name, _)| *name == benchmark)
        .map(|(_, limit)| *limit)
}

/// The goal as text: `<= 60`, `<= 0.4 x Xen`.
pub fn describe(limit: Limit) -> String {
    match limit {
        Limit::AtMost(value) => format!("<= {value}"),
        Limit::XenRatioAtMost(value) => format!("<= {value} x Xen"),
    }
}

/// Judges `limit` on our figure (and Xen's, for a ratio goal); also returns the value
/// judged.
pub fn judge(limit: Limit, ours: Option<f64>, xen: Option<f64>) -> (GoalStatus, Option<f64>) {
    let (value, bound) = match limit {
        Limit::AtMost(bound) => (ours, bound),
        Limit::XenRatioAtMost(bound) => (ratio(ours, xen), bound),
    };
    let status = match value {
        None => GoalStatus::Unknown,
        Some(value) if value <= bound => GoalStatus::Met,
        Some(_) => GoalStatus::NotMet,
    };
    (status, value)
}

/// The image goal: `hyp.img` under [`IMAGE_LIMIT`].
pub fn judge_image(size: &ImageSize) -> GoalStatus {
    if size.raw_image < IMAGE_LIMIT {
        GoalStatus::Met
    } else {
        GoalStatus::NotMet
    }
}

/// Every benchmark name in `runs`, in table order ([`KNOWN`] first).
pub fn benchmark_names(runs: &Runs) -> Vec<String> {
    let mut seen = BTreeSet::new();
    for run in runs.values() {
        seen.extend(run.ours.keys().cloned());
        if let Some(xen) = &run.xen {
            seen.extend(xen.keys().cloned());
        }
    }
    let mut names: Vec<String> = KNOWN
        .iter()
        .filter(|name| seen.contains(**name))
        .map(|name| name.to_string())
        .collect();
    names.extend(
        seen.into_iter()
            .filter(|name| !KNOWN.contains(&name.as_str())),
    );
    names
}

/// GIC keys in display order (`gicv3` before `gicv2`).
fn gic_order(runs: &Runs) -> Vec<&String> {
    let mut gics: Vec<&String> = runs.keys().collect();
    gics.sort_by(|a, b| b.cmp(a));
    gics
}

/// The key of `machine` in [`Runs`].
pub fn gic_key(machine: Machine) -> String {
    format!("gicv{}", machine.gic_version())
}

fn cell(measurement: Option<&Measurement>) -> String {
    match measurement {
        Some(Measurement::Ns(value)) => format!("{value:.1}"),
        Some(Measurement::NotAvailable(_)) => "n/a".to_string(),
        None => "-".to_string(),
    }
}

/// The goals of every benchmark with one, per GIC, plus the image goal.
pub fn goal_results(runs: &Runs, image: Option<&ImageSize>) -> Vec<GoalResult> {
    let mut results = Vec::new();
    for (name, limit) in GOALS {
        for gic in gic_order(runs) {
            let run = &runs[gic];
            let ours = run.ours.get(*name).and_then(Measurement::ns);
            let xen = run
                .xen
                .as_ref()
                .and_then(|xen| xen.get(*name))
                .and_then(Measurement::ns);
            let (status, value) = judge(*limit, ours, xen);
            results.push(GoalResult {
                benchmark: name.to_string(),
                gic: gic.clone(),
                goal: describe(*limit),
                value,
                status: status.as_str().to_string(),
            });
        }
    }
    if let Some(image) = image {
        results.push(GoalResult {
            benchmark: "hyp-image".to_string(),
            gic: String::new(),
            goal: format!("< {} KiB", IMAGE_LIMIT / 1024),
            value: Some(image.raw_image as f64),
            status: judge_image(image).as_str().to_string(),
        });
    }
    results
}

/// The table: one row per benchmark and GIC.
pub fn render_table(runs: &Runs) -> String {
    let header = ["benchmark", "GIC", "Xen", "ours", "ours/Xen", "goal"];
    let mut rows: Vec<[String; 6]> = Vec::new();
    for name in benchmark_names(runs) {
        for gic in gic_order(runs) {
            let run = &runs[gic];
            let ours = run.ours.get(&name);
            let xen = run.xen.as_ref().and_then(|xen| xen.get(&name));
            let xen_ns = xen.and_then(Measurement::ns);
            let ours_ns = ours.and_then(Measurement::ns);
            let goal = match goal_of(&name) {
                Some(limit) => {
                    let (status, _) = judge(limit, ours_ns, xen_ns);
                    format!("{}: {}", describe(limit), status.as_str())
                }
                None => String::new(),
            };
            rows.push([
                name.clone(),
                gic.trim_start_matches("gic").to_string(),
                cell(xen),
                cell(ours),
                ratio(ours_ns, xen_ns).map_or("-".to_string(), |r| format!("{r:.2}")),
                goal,
            ]);
        }
    }
    let mut widths = header.map(str::len);
    for row in &rows {
        for (width, text) in widths.iter_mut().zip(row) {
            *width = (*width).max(text.len());
        }
    }
    let mut out = String::new();
    let mut line = |cells: [&str; 6]| {
        let mut text = String::new();
        for (i, (cell, width)) in cells.iter().zip(widths).enumerate() {
            // Names and goals left-aligned, numbers right-aligned.
            let _ = match i {
                0 | 1 | 5 => write!(text, "{cell:<width$}  "),
                _ => write!(text, "{cell:>width$}  "),
            };
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header);
    let rule = widths.map(|width| "-".repeat(width));
    line([&rule[0], &rule[1], &rule[2], &rule[3], &rule[4], &rule[5]]);
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]]);
    }
    out
}

/// The goals, one line each over both GICs: `met` when met on every GIC, `not met` when
/// missed on one, else `unknown` (`hypercall <= 60: not met (v3 3935.9, v2 3936.9)`).
pub fn render_goals(goals: &[GoalResult]) -> String {
    let mut out = String::from("goals (issue 8), our figures:\n");
    let mut seen: Vec<(&str, &str)> = Vec::new();
    for goal in goals {
        let key = (goal.benchmark.as_str(), goal.goal.as_str());
        if seen.contains(&key) {
            continue;
        }
        seen.push(key);
        let group: Vec<&GoalResult> = goals
            .iter()
            .filter(|g| (g.benchmark.as_str(), g.goal.as_str()) == key)
            .collect();
        let status = if group
            .iter()
            .any(|g| g.status == GoalStatus::NotMet.as_str())
        {
            GoalStatus::NotMet
        } else if group.iter().all(|g| g.status == GoalStatus::Met.as_str()) {
            GoalStatus::Met
        } else {
            GoalStatus::Unknown
        };
        let values: Vec<String> = group
            .iter()
            .filter_map(|g| {
                let value = g.value?;
                let value = match (g.benchmark.as_str(), goal_of(&g.benchmark)) {
                    ("hyp-image", _) => format!("{value:.0} bytes"),
                    (_, Some(Limit::XenRatioAtMost(_))) => format!("{value:.2} x Xen"),
                    _ => format!("{value:.1}"),
                };
                Some(match g.gic.strip_prefix("gic") {
                    Some(gic) => format!("{gic} {value}"),
                    None => value,
                })
            })
            .collect();
        let detail = if values.is_empty() {
            "not measured".to_string()
        } else {
            values.join(", ")
        };
        let name = match key.0 {
            "hyp-image" => "hyp.img",
            name => name,
        };
        let _ = writeln!(out, "  {name} {}: {} ({detail})", key.1, status.as_str());
    }
    out
}

/// The `n/a` reasons of `runs`, one line each (`gicv3 ours virtual-ipi: n/a (...)`).
pub fn not_available(runs: &Runs) -> Vec<String> {
    let mut notes = Vec::new();
    for gic in gic_order(runs) {
        let run = &runs[gic];
        let sides = [("ours", Some(&run.ours)), ("Xen", run.xen.as_ref())];
        for (side, figures) in sides {
            for (name, measurement) in figures.into_iter().flatten() {
                if let Measurement::NotAvailable(text) = measurement {
                    notes.push(format!("{gic} {side} {name}: {text}"));
                }
            }
        }
    }
    notes
}

// ---------------------------------------------------------------------------------------
// The baseline
// ---------------------------------------------------------------------------------------

/// The result of comparing our figures with the baseline's.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Comparison {
    /// Figures more than the tolerance worse, or gone: each fails the gate.
    pub regressions: Vec<String>,
    /// Everything else worth saying (new figures, GICs without a baseline).
    pub notes: Vec<String>,
}

/// Compares our figures in `current` with `baseline`'s. A figure regresses when it is more
/// than `tolerance` (a fraction) above the baseline's, or when the baseline has a number
/// and the current run has none. Xen's figures are not compared.
pub fn compare(baseline: &Runs, current: &Runs, tolerance: f64) -> Comparison {
    let mut comparison = Comparison::default();
    for (gic, run) in current {
        let Some(base) = baseline.get(gic) else {
            comparison.notes.push(format!("{gic}: no baseline figures"));
            continue;
        };
        for (name, measurement) in &base.ours {
            let Some(before) = measurement.ns() else {
                continue;
            };
            match run.ours.get(name).and_then(Measurement::ns) {
                Some(now) if now > before * (1.0 + tolerance) && now > before + ABSOLUTE_SLACK => {
                    let change = if before > 0.0 {
                        format!("+{:.1} %", (now / before - 1.0) * 100.0)
                    } else {
                        "from zero".to_string()
                    };
                    comparison.regressions.push(format!(
                        "{gic} {name}: {now:.1} against the baseline's {before:.1} ({change}, more than {:.0} % worse)",
                        tolerance * 100.0
                    ));
                }
                Some(_) => {}
                None => comparison.regressions.push(format!(
                    "{gic} {name}: no figure any more (baseline {before:.1})"
                )),
            }
        }
        for name in run.ours.keys() {
            if !base.ours.contains_key(name) {
                comparison
                    .notes
                    .push(format!("{gic} {name}: new, not in the baseline"));
            }
        }
    }
    comparison
}

/// `bench/baseline.json`.
pub fn baseline_path() -> PathBuf {
    setup::workspace_root().join("bench/baseline.json")
}

/// Reads a results or baseline file; a missing file is an empty one.
pub fn load(path: &Path) -> Result<BenchFile> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(BenchFile::default()),
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

fn save(path: &Path, file: &BenchFile) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut text = serde_json::to_string_pretty(file)?;
    text.push('\n');
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

/// `baseline` with the `quick` or full section replaced by our figures of `current` (Xen's
/// are not kept: the gate never reads them), and the size figures updated.
pub fn updated_baseline(baseline: &BenchFile, current: &BenchFile, quick: bool) -> BenchFile {
    let mut updated = baseline.clone();
    let ours_only: Option<Runs> = current.section(quick).map(|runs| {
        runs.iter()
            .map(|(gic, run)| {
                let run = GicRun {
                    ours: run.ours.clone(),
                    xen: None,
                };
                (gic.clone(), run)
            })
            .collect()
    });
    // Keep the GICs this run did not measure.
    let mut section = updated.section_mut(quick).take().unwrap_or_default();
    section.extend(ours_only.unwrap_or_default());
    *updated.section_mut(quick) = Some(section);
    updated.commit = current.commit.clone();
    updated.image = current.image;
    updated.hyp_rust_lines = current.hyp_rust_lines;
    updated.goals.clear();
    updated.notes.clear();
    updated
}

// ---------------------------------------------------------------------------------------
// Size of the hypervisor
// ---------------------------------------------------------------------------------------

const SHF_WRITE: u64 = 0x1;
const SHF_ALLOC: u64 = 0x2;
const SHT_NOBITS: u32 = 8;

/// `(text, data, bss)` of a little-endian ELF64 file, from its section headers, counted
/// as `size` does: allocated sections that are not writable are text (code and read-only
/// data), writable ones with contents are data, and those without contents are bss.
pub fn elf_sizes(elf: &[u8]) -> Result<(u64, u64, u64)> {
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" {
        bail!("not an ELF file");
    }
    if elf[4] != 2 || elf[5] != 1 {
        bail!("not a little-endian 64-bit ELF file");
    }
    let u16_at = |at: usize| -> Result<u64> {
        let bytes = elf.get(at..at + 2).context("ELF file truncated")?;
        Ok(u16::from_le_bytes([bytes[0], bytes[1]]) as u64)
    };
    let u32_at = |at: usize| -> Result<u64> {
        let bytes = elf.get(at..at + 4).context("ELF file truncated")?;
        Ok(u32::from_le_bytes(bytes.try_into()?) as u64)
    };
    let u64_at = |at: usize| -> Result<u64> {
        let bytes = elf.get(at..at + 8).context("ELF file truncated")?;
        Ok(u64::from_le_bytes(bytes.try_into()?))
    };
    let section_headers = usize::try_from(u64_at(0x28)?)?;
    let entry_size = u16_at(0x3a)? as usize;
    let count = u16_at(0x3c)? as usize;
    if count > 0 && entry_size < 64 {
        bail!("ELF section header entries of {entry_size} bytes (expected 64)");
    }
    let (mut text, mut data, mut bss) = (0, 0, 0);
    for index in 0..count {
        let header = section_headers + index * entry_size;
        let kind = u32_at(header + 4)? as u32;
        let flags = u64_at(header + 8)?;
        let size = u64_at(header + 32)?;
        if flags & SHF_ALLOC == 0 {
            continue;
        }
        if kind == SHT_NOBITS {
            bss += size;
        } else if flags & SHF_WRITE != 0 {
            data += size;
        } else {
            text += size;
        }
    }
    Ok((text, data, bss))
}

/// The size of the hypervisor in `images`.
pub fn image_size(images: &Images) -> Result<ImageSize> {
    let elf = std::fs::read(&images.hyp_elf)
        .with_context(|| format!("reading {}", images.hyp_elf.display()))?;
    let (text, data, bss) =
        elf_sizes(&elf).with_context(|| format!("reading {}", images.hyp_elf.display()))?;
    let raw_image = std::fs::metadata(&images.hyp_img)
        .with_context(|| format!("reading {}", images.hyp_img.display()))?
        .len();
    Ok(ImageSize {
        text,
        data,
        bss,
        raw_image,
    })
}

// ---------------------------------------------------------------------------------------
// Lines of Rust
// ---------------------------------------------------------------------------------------

/// Lines of Rust code under `dir` without tests: every `.rs` file except those under a
/// `tests/` or `target/` directory, those named `*_tests.rs`, and the files of modules
/// declared under `#[cfg(test)]` (`#[cfg(test)] mod tests;`); in the files counted, items
/// under `#[cfg(test)]` (`mod tests { ... }`) are left out too. Of what remains, the
/// lines that hold code count: not blank lines, nor lines that are only a comment
/// (doc comments included).
pub fn rust_lines(dir: &Path) -> Result<u64> {
    let mut files = Vec::new();
    collect_rust_files(dir, &mut files)?;
    let mut counted = BTreeMap::new();
    let mut excluded = BTreeSet::new();
    for file in &files {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
        if name
            .as_deref()
            .is_some_and(|name| name.ends_with("_tests.rs"))
        {
            excluded.insert(file.clone());
            continue;
        }
        let source =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let (lines, test_modules) = count_code_lines(&source);
        for module in test_modules {
            excluded.extend(module_files(file, &module));
        }
        counted.insert(file.clone(), lines);
    }
    Ok(counted
        .iter()
        .filter(|(file, _)| !excluded.contains(*file))
        .map(|(_, lines)| lines)
        .sum())
}

fn collect_rust_files(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("reading directory {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if path.is_dir() {
            if name != "tests" && name != "target" && !name.starts_with('.') {
                collect_rust_files(&path, files)?;
            }
        } else if name.ends_with(".rs") {
            files.push(path);
        }
    }
    Ok(())
}

/// A module declared without a body (`mod NAME;`) under `#[cfg(test)]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestModule {
    /// Its name.
    pub name: String,
    /// Its `#[path = "..."]`, if given.
    pub path: Option<String>,
}

/// The files a `mod` declaration in `file` can refer to.
fn module_files(file: &Path, module: &TestModule) -> Vec<PathBuf> {
    let dir = file.parent().unwrap_or(Path::new("."));
    if let Some(path) = &module.path {
        return vec![dir.join(path)];
    }
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let base = match stem.as_str() {
        "mod" | "lib" | "main" => dir.to_path_buf(),
        _ => dir.join(stem),
    };
    vec![
        base.join(format!("{}.rs", module.name)),
        base.join(&module.name).join("mod.rs"),
    ]
}

/// Code lines of one source file outside `#[cfg(test)]` items, and the modules declared
/// under `#[cfg(test)]` without a body (their files are tests too).
pub fn count_code_lines(source: &str) -> (u64, Vec<TestModule>) {
    let lines: Vec<&str> = source.lines().collect();
    let mut count = 0;
    let mut modules = Vec::new();
    let mut in_block_comment = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        i += 1;
        if in_block_comment {
            in_block_comment = !line.contains("*/");
            continue;
        }
        if line.starts_with("/*") {
            in_block_comment = !line.contains("*/");
            continue;
        }
        if line.is_empty() || line.starts_with("//") {
            continue;
        }
        if line != "#[cfg(test)]" {
            count += 1;
            continue;
        }
        // Skip the item's other attributes, then the item itself.
        let mut path = None;
        while i < lines.len() && lines[i].trim().starts_with("#[") {
            let attribute = lines[i].trim();
            if let Some(value) = attribute
                .strip_prefix("#[path = \"")
                .and_then(|rest| rest.strip_suffix("\"]"))
            {
                path = Some(value.to_string());
            }
            i += 1;
        }
        if let Some(name) = lines.get(i).and_then(|line| bodiless_module(line.trim())) {
            modules.push(TestModule {
                name: name.to_string(),
                path,
            });
            i += 1;
            continue;
        }
        let mut depth: i64 = 0;
        let mut opened = false;
        while i < lines.len() {
            let mut ended = false;
            for byte in code_bytes(lines[i]) {
                match byte {
                    b'{' => {
                        depth += 1;
                        opened = true;
                    }
                    b'}' => depth -= 1,
                    b';' if !opened => ended = true,
                    _ => {}
                }
            }
            i += 1;
            if ended || (opened && depth <= 0) {
                break;
            }
        }
    }
    (count, modules)
}

/// `NAME` of `mod NAME;`, `pub mod NAME;`, `pub(crate) mod NAME;`.
fn bodiless_module(line: &str) -> Option<&str> {
    let rest = line.split_once("mod ")?;
    let visibility = rest.0.trim();
    if !(visibility.is_empty() || visibility.starts_with("pub")) {
        return None;
    }
    let name = rest.1.trim().strip_suffix(';')?.trim();
    (!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .then_some(name)
}

/// The bytes of a line outside string and character literals and `//` comments.
fn code_bytes(line: &str) -> Vec<u8> {
    let bytes = line.as_bytes();
    let mut code = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => break,
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'\'' if bytes.get(i + 2) == Some(&b'\'') => i += 2,
            b'\'' if bytes.get(i + 1) == Some(&b'\\') => {
                i += 2;
                while i < bytes.len() && bytes[i] != b'\'' {
                    i += 1;
                }
            }
            byte => code.push(byte),
        }
        i += 1;
    }
    code
}

// ---------------------------------------------------------------------------------------
// The chart
// ---------------------------------------------------------------------------------------

/// Draws grouped bars, Xen beside ours, per benchmark, one panel per GIC, into an SVG
/// file. The y axis is logarithmic: figures range from tens of instructions (a
/// hypercall) to hundreds of thousands (a cross-CPU IPI). `boot` (millions) stays in the
/// table and JSON only.
pub fn draw_chart(runs: &Runs, path: &Path) -> Result<()> {
    use plotters::prelude::*;
    use plotters::style::text_anchor::{HPos, Pos, VPos};

    let names: Vec<String> = benchmark_names(runs)
        .into_iter()
        .filter(|name| name != "boot")
        .collect();
    let gics = gic_order(runs);
    if gics.is_empty() || names.is_empty() {
        bail!("nothing to draw");
    }
    let error = |error: &dyn std::fmt::Debug| anyhow!("drawing {}: {error:?}", path.display());
    let panel_height = 420;
    let width = (140 + 110 * names.len() as u32).max(640);
    let root = SVGBackend::new(path, (width, panel_height * gics.len() as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| error(&e))?;
    let panels = root.split_evenly((gics.len(), 1));
    // One scale for every panel, so that GICv3 and GICv2 compare by eye.
    let top = runs
        .values()
        .flat_map(|run| [Some(&run.ours), run.xen.as_ref()])
        .flatten()
        .flat_map(|figures| names.iter().filter_map(|name| figures.get(name)))
        .filter_map(Measurement::ns)
        .fold(10.0f64, f64::max)
        * 3.0;
    let xen_colour = RGBColor(0xb0, 0x3a, 0x2e);
    let ours_colour = RGBColor(0x1f, 0x5f, 0xa8);
    for (panel, gic) in panels.iter().zip(gics) {
        let run = &runs[gic];
        let value = |figures: Option<&Figures>, name: &str| {
            figures
                .and_then(|figures| figures.get(name))
                .and_then(Measurement::ns)
        };
        let mut chart = ChartBuilder::on(panel)
            .caption(
                format!("{gic}: Xen 4.17 and ours, under icount (lower is better)"),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(70)
            .build_cartesian_2d(0f64..names.len() as f64, (1f64..top).log_scale())
            .map_err(|e| error(&e))?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .y_desc("instructions per operation (log scale)")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()
            .map_err(|e| error(&e))?;
        let sides = [
            ("Xen 4.17", xen_colour, 0.10, run.xen.as_ref()),
            ("ours", ours_colour, 0.50, Some(&run.ours)),
        ];
        for (label, colour, offset, figures) in sides {
            let bars: Vec<(usize, f64)> = names
                .iter()
                .enumerate()
                .filter_map(|(i, name)| value(figures, name).map(|v| (i, v)))
                .collect();
            chart
                .draw_series(bars.iter().map(|&(i, v)| {
                    let x = i as f64 + offset;
                    Rectangle::new([(x, 1.0), (x + 0.4, v.max(1.0))], colour.filled())
                }))
                .map_err(|e| error(&e))?
                .label(label)
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled())
                });
            let small = ("sans-serif", 11)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Bottom));
            chart
                .draw_series(bars.iter().map(|&(i, v)| {
                    Text::new(
                        format!("{v:.0}"),
                        (i as f64 + offset + 0.2, v),
                        small.clone(),
                    )
                }))
                .map_err(|e| error(&e))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| error(&e))?;
        let label = ("sans-serif", 12)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top));
        for (i, name) in names.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(i as f64 + 0.5, 1.0));
            // Alternate rows so that long names do not run into each other.
            let y = y + 6 + if i % 2 == 1 { 16 } else { 0 };
            root.draw(&Text::new(name.clone(), (x, y), label.clone()))
                .map_err(|e| error(&e))?;
        }
    }
    root.present().map_err(|e| error(&e))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Running
// ---------------------------------------------------------------------------------------

/// What one run of the benchmark guest gave.
struct RunResult {
    figures: Figures,
    /// Why the run does not count, if it does not.
    error: Option<String>,
    /// Its output, shown with an error.
    output: Vec<String>,
}

impl RunResult {
    /// This run followed by `next`: `next`'s figures added when it counts, and the first
    /// failure (this run's, `next`'s, or a benchmark both report) with its run's output.
    fn and(mut self, next: RunResult) -> RunResult {
        let failure = match next.error {
            Some(reason) => Some(reason),
            None => merge_figures(&mut self.figures, next.figures).err(),
        };
        if self.error.is_none() {
            if let Some(reason) = failure {
                self.error = Some(reason);
                self.output = next.output;
            }
        }
        self
    }
}

/// The guest's command line for `scenario` (`bench` or `bench-pair`), with `quick`.
fn cmdline(scenario: &str, quick: bool) -> String {
    if quick {
        format!("{scenario} quick")
    } else {
        scenario.to_string()
    }
}

/// Runs the benchmark guest on our hypervisor, under icount, as one domain of
/// [`VCPUS`] vCPUs and [`MEMORY_MIB`] MiB.
fn run_ours(images: &Images, machine: Machine, quick: bool, timeout: Duration) -> RunResult {
    let domain = Domain {
        memory_mib: MEMORY_MIB,
        vcpus: VCPUS,
        ..Domain::new(DOMAIN, &images.guest_img, &cmdline("bench", quick))
    };
    run_domains(images, machine, &[domain], timeout)
}

/// Boots `domains` on our hypervisor under icount: every domain's report must pass and
/// every domain shut down cleanly; the figures are all the domains print.
fn run_domains(
    images: &Images,
    machine: Machine,
    domains: &[Domain],
    timeout: Duration,
) -> RunResult {
    let outcome = match run::boot(images, domains, &[], machine, true, timeout, false) {
        Ok(outcome) => outcome,
        Err(error) => {
            return RunResult {
                figures: Figures::new(),
                error: Some(format!("{error:#}")),
                output: Vec::new(),
            }
        }
    };
    let mut figures = Figures::new();
    let mut error = None;
    for domain in domains {
        let lines = report::domain_lines(outcome.console_lines(), &domain.name);
        let (more, checked) = evaluate(&lines);
        let merged = merge_figures(&mut figures, more);
        if let Err(reason) = checked.and(merged) {
            error.get_or_insert(format!("domain {}: {reason}", domain.name));
        }
    }
    if error.is_none() {
        error = run::check_all_clean(&outcome, domains.len()).err();
    }
    RunResult {
        figures,
        error,
        output: outcome
            .lines
            .iter()
            .map(|line| line.render(false))
            .collect(),
    }
}

/// The two domains of `bench-pair` share this physical CPU (on Xen: the only one).
const PAIR_CPU: u64 = 1 << 0;

/// Adds `more` to `figures`; a name both hold is an error.
fn merge_figures(figures: &mut Figures, more: Figures) -> Result<(), String> {
    for (name, measurement) in more {
        if figures.insert(name.clone(), measurement).is_some() {
            return Err(format!("benchmark {name} is reported twice"));
        }
    }
    Ok(())
}

/// Runs `bench-pair` on our hypervisor: domain 0 (`dom0`) and domain 1 (`vm`) on one
/// physical CPU, under icount. Both reports must pass; dom0 reports `vm-switch` and
/// `io-out`, the VM `io-in`.
fn run_ours_pair(images: &Images, machine: Machine, quick: bool, timeout: Duration) -> RunResult {
    let settings = hyp::bootpack::DomainSettings {
        affinity: PAIR_CPU,
        ..Default::default()
    };
    let domains: Vec<Domain> = ["dom0", "vm"]
        .iter()
        .map(|name| Domain {
            settings,
            ..Domain::new(name, &images.guest_img, &cmdline("bench-pair", quick))
        })
        .collect();
    run_domains(images, machine, &domains, timeout)
}

/// Runs the benchmark guest as dom0 of Xen 4.17 with `run-on-xen`, under the same icount
/// settings as ours (`--icount` gives `shift=0`; `sleep=off` is added through
/// `XEN_QEMU_EXTRA`, which QEMU merges into the same `-icount` option).
fn run_xen(script: &Path, images: &Images, machine: Machine, quick: bool) -> RunResult {
    let mut command = xen_command(script, images, machine, &VCPUS.to_string());
    command.args(["--dom0-args", &cmdline("bench", quick)]);
    run_on_xen(script, command, "on Xen", |stdout| {
        evaluate(&dom0_lines(stdout))
    })
}

/// Runs `command` (a `run-on-xen` invocation) and judges its stdout with `judge`; `what`
/// starts the reason of a failed run.
fn run_on_xen(
    script: &Path,
    mut command: Command,
    what: &str,
    judge: impl FnOnce(&[String]) -> (Figures, Result<(), String>),
) -> RunResult {
    let captured = match test::capture(&mut command, XEN_HARD_TIMEOUT) {
        Ok(captured) => captured,
        Err(error) => {
            return RunResult {
                figures: Figures::new(),
                error: Some(format!("cannot start {}: {error}", script.display())),
                output: Vec::new(),
            }
        }
    };
    let output = captured.all_lines();
    if captured.timed_out {
        return RunResult {
            figures: Figures::new(),
            error: Some(format!(
                "run-on-xen did not finish in {} s",
                XEN_HARD_TIMEOUT.as_secs()
            )),
            output,
        };
    }
    let (figures, checked) = judge(&captured.stdout);
    let status = captured
        .status
        .map_or("killed".to_string(), |s| s.to_string());
    RunResult {
        figures,
        error: checked
            .err()
            .map(|reason| format!("{what}: {reason} (run-on-xen: {status})")),
        output,
    }
}

/// `run-on-xen` for the guest image as dom0 under icount, with `smp` CPUs.
fn xen_command(script: &Path, images: &Images, machine: Machine, smp: &str) -> Command {
    let gic = machine.gic_version().to_string();
    let timeout = XEN_TIMEOUT_SECONDS.to_string();
    let extra = match std::env::var("XEN_QEMU_EXTRA") {
        Ok(extra) if !extra.trim().is_empty() => format!("{extra} -icount sleep=off"),
        _ => "-icount sleep=off".to_string(),
    };
    let mut command = Command::new(script);
    command
        .arg(&images.guest_img)
        .args([
            "--icount",
            "--gic",
            &gic,
            "--smp",
            smp,
            "--timeout",
            &timeout,
        ])
        .env("XEN_QEMU_EXTRA", extra)
        .current_dir(setup::workspace_root());
    command
}

/// Runs `bench-pair` on Xen 4.17 with one physical CPU: the guest as dom0 and as a
/// dom0less domU with an emulated PL011 (`vpl011`), whose lines Xen prints as
/// `DOM1: ...` (a domU's `CONSOLEIO_write` output is filtered by Xen's release build).
/// Dom0's report must pass; the domU's figures are taken as printed (Xen halts when dom0
/// powers off, which may cut the domU's last lines).
fn run_xen_pair(script: &Path, images: &Images, machine: Machine, quick: bool) -> RunResult {
    let domu = format!(
        "{},mem={MEMORY_MIB},args={},vpl011",
        images.guest_img.display(),
        cmdline("bench-pair", quick)
    );
    let mut command = xen_command(script, images, machine, "1");
    command
        .args(["--dom0-args", &cmdline("bench-pair", quick)])
        .args(["--domu", &domu]);
    run_on_xen(script, command, "on Xen, bench-pair", |stdout| {
        let (mut figures, checked) = evaluate(&dom0_lines(stdout));
        let checked = checked.and_then(|()| {
            let domu_figures = parse_figures(domu_lines(stdout, 1))?;
            merge_figures(&mut figures, domu_figures)
        });
        (figures, checked)
    })
}

/// The console lines of dom0less domain `id` with a vpl011 in `run-on-xen`'s output:
/// Xen prints them as `(XEN) DOMn: TEXT`.
pub fn domu_lines(stdout: &[String], id: u32) -> impl Iterator<Item = &str> {
    let prefix = format!("DOM{id}: ");
    stdout.iter().filter_map(move |line| {
        line.strip_prefix("(XEN) ")
            .unwrap_or(line)
            .strip_prefix(prefix.as_str())
    })
}

/// Dom0's console lines in `run-on-xen`'s output: Xen's own lines (`(XEN) ...`) and
/// other domains' (`(d1) ...`) left out, the `(d0) ` prefix removed where Xen adds one
/// (Debian's release build prints dom0's `CONSOLEIO_write` output without it).
pub fn dom0_lines(stdout: &[String]) -> Vec<&str> {
    stdout
        .iter()
        .filter_map(|line| match line.strip_prefix("(d0) ") {
            Some(rest) => Some(rest),
            None if line.starts_with("(XEN)") => None,
            None if line.starts_with("(d") && line.contains(") ") => {
                let id = &line[2..line.find(')').unwrap_or(2)];
                let other_domain = !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit());
                (!other_domain).then_some(line.as_str())
            }
            None => Some(line.as_str()),
        })
        .collect()
}

/// `git rev-parse --short HEAD`, with `-dirty` when the work tree has changes.
fn commit() -> Option<String> {
    let root = setup::workspace_root();
    let head = setup::output_of(
        Command::new("git")
            .args(["rev-parse", "--short", "HEAD"])
            .current_dir(&root),
    )
    .ok()?;
    let dirty = setup::output_of(
        Command::new("git")
            .args(["status", "--porcelain", "--untracked-files=no"])
            .current_dir(&root),
    )
    .map(|status| !status.is_empty())
    .unwrap_or(false);
    Some(if dirty { format!("{head}-dirty") } else { head })
}

fn print_failure(what: &str, reason: &str, output: &[String]) {
    println!("xtask: bench: {what} FAILED: {reason}");
    let start = output.len().saturating_sub(40);
    if start < output.len() {
        println!("  last {} lines of output:", output.len() - start);
        for line in &output[start..] {
            println!("  | {line}");
        }
    }
}

/// `cargo xtask bench`. Returns whether every run worked and no figure regressed.
pub fn bench(args: &BenchArgs) -> Result<bool> {
    let built = crate::images::build()?;
    setup::ensure_qemu()?;
    let out_dir = setup::target_dir().join("bench");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    // A boot pack of our own, so that a `cargo xtask run` or `test` beside us is not
    // disturbed.
    let images = Images {
        bootpack: out_dir.join("bootpack.bin"),
        ..built
    };
    let mut ok = true;
    let mut notes = Vec::new();
    let with_xen = !args.quick && !args.no_xen;
    let mut xen: Option<Result<PathBuf, String>> = None;
    let mut runs = Runs::new();
    for &machine in &args.machines {
        let gic = gic_key(machine);
        println!(
            "xtask: bench: {gic}: our hypervisor ({machine}, `{}`)",
            cmdline("bench", args.quick)
        );
        let single = run_ours(&images, machine, args.quick, args.timeout);
        println!(
            "xtask: bench: {gic}: our hypervisor, two domains on one CPU (`{}`)",
            cmdline("bench-pair", args.quick)
        );
        let ours = single.and(run_ours_pair(&images, machine, args.quick, args.timeout));
        if let Some(reason) = &ours.error {
            ok = false;
            print_failure(&format!("{gic} on our hypervisor"), reason, &ours.output);
        }
        let mut run = GicRun {
            ours: ours.figures,
            xen: None,
        };
        if with_xen {
            let script = xen
                .get_or_insert_with(|| test::xen_setup(&images.guest_img))
                .clone();
            match script {
                Err(reason) => {
                    let note = format!("{gic}: Xen not run: {reason}");
                    if !notes.contains(&note) {
                        println!("xtask: bench: {note}");
                        notes.push(note);
                    }
                }
                Ok(script) => {
                    println!(
                        "xtask: bench: {gic}: Xen 4.17 (run-on-xen --gic {})",
                        machine.gic_version()
                    );
                    let single = run_xen(&script, &images, machine, args.quick);
                    println!("xtask: bench: {gic}: Xen 4.17, dom0 and a dom0less domU on one CPU");
                    let on_xen = single.and(run_xen_pair(&script, &images, machine, args.quick));
                    if let Some(reason) = &on_xen.error {
                        ok = false;
                        print_failure(&format!("{gic} on Xen"), reason, &on_xen.output);
                        notes.push(format!("{gic}: Xen run failed: {reason}"));
                    }
                    run.xen = Some(on_xen.figures);
                }
            }
        } else if args.quick {
            notes.push(format!("{gic}: Xen not run (--quick)"));
        } else {
            notes.push(format!("{gic}: Xen not run (--no-xen)"));
        }
        runs.insert(gic, run);
    }

    let image = match image_size(&images) {
        Ok(size) => Some(size),
        Err(error) => {
            notes.push(format!("image size unknown: {error:#}"));
            None
        }
    };
    let lines = match rust_lines(&setup::workspace_root().join("hyp")) {
        Ok(lines) => Some(lines),
        Err(error) => {
            notes.push(format!("lines of Rust unknown: {error:#}"));
            None
        }
    };
    let goals = goal_results(&runs, image.as_ref());

    println!();
    print!("{}", render_table(&runs));
    for note in not_available(&runs) {
        println!("  {note}");
    }
    println!();
    print!("{}", render_goals(&goals));
    if let Some(size) = &image {
        println!(
            "hypervisor image: hyp.elf text {} bytes, data {} bytes, bss {} bytes; hyp.img {} bytes ({:.1} KiB)",
            size.text,
            size.data,
            size.bss,
            size.raw_image,
            size.raw_image as f64 / 1024.0
        );
    }
    if let Some(lines) = lines {
        println!("lines of Rust in hyp/ without tests: {lines} (code lines: no blank or comment-only lines)");
    }
    for note in &notes {
        println!("note: {note}");
    }

    let mut results = BenchFile {
        commit: commit(),
        image,
        hyp_rust_lines: lines,
        goals,
        notes,
        ..BenchFile::default()
    };
    *results.section_mut(args.quick) = Some(runs.clone());
    let json = out_dir.join("results.json");
    save(&json, &results)?;
    println!("xtask: bench: wrote {}", json.display());
    let svg = out_dir.join("results.svg");
    match draw_chart(&runs, &svg) {
        Ok(()) => println!("xtask: bench: wrote {}", svg.display()),
        Err(error) => {
            ok = false;
            println!("xtask: bench: no chart: {error:#}");
        }
    }

    let baseline_file = baseline_path();
    let baseline = load(&baseline_file)?;
    if args.update_baseline {
        if !ok {
            println!(
                "xtask: bench: a run failed: {} left as it was",
                baseline_file.display()
            );
            return Ok(false);
        }
        save(
            &baseline_file,
            &updated_baseline(&baseline, &results, args.quick),
        )?;
        println!(
            "xtask: bench: wrote the {} figures to {}",
            if args.quick { "quick" } else { "full" },
            baseline_file.display()
        );
        return Ok(true);
    }
    match baseline.section(args.quick) {
        None => println!(
            "xtask: bench: {} has no {} figures: nothing to compare (write them with --update-baseline)",
            baseline_file.display(),
            if args.quick { "quick" } else { "full" }
        ),
        Some(base) => {
            let comparison = compare(base, &runs, TOLERANCE);
            for note in &comparison.notes {
                println!("baseline: {note}");
            }
            for regression in &comparison.regressions {
                println!("REGRESSION: {regression}");
            }
            if comparison.regressions.is_empty() {
                println!(
                    "xtask: bench: no figure more than {:.0} % worse than {}",
                    TOLERANCE * 100.0,
                    baseline_file.display()
                );
            } else {
                ok = false;
            }
        }
    }
    Ok(ok)
}

/// `bench-gate` of `cargo xtask test`: `bench quick` on our hypervisor on `virt-gicv3`,
/// compared with the quick figures of `bench/baseline.json`; skipped while the baseline
/// has none.
pub(crate) fn gate(images: &Images) -> Verdict {
    let machine = Machine::VirtGicv3;
    let gic = gic_key(machine);
    let baseline_file = baseline_path();
    let baseline = match load(&baseline_file) {
        Ok(baseline) => baseline,
        Err(error) => return crate::test::error_verdict(error),
    };
    let Some(base) = baseline.quick.as_ref().and_then(|quick| quick.get(&gic)) else {
        return Verdict::Skip(format!(
            "{} has no quick {gic} figures (cargo xtask bench --quick --update-baseline)",
            baseline_file.display()
        ));
    };
    let images = Images {
        bootpack: setup::target_dir().join("bench").join("gate-bootpack.bin"),
        ..images.clone()
    };
    if let Some(dir) = images.bootpack.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let ours = run_ours(&images, machine, true, GATE_TIMEOUT).and(run_ours_pair(
        &images,
        machine,
        true,
        GATE_TIMEOUT,
    ));
    if let Some(reason) = ours.error {
        return Verdict::Fail {
            reason,
            output: ours.output,
        };
    }
    let current: Runs = [(
        gic.clone(),
        GicRun {
            ours: ours.figures,
            xen: None,
        },
    )]
    .into();
    let base: Runs = [(gic, base.clone())].into();
    let comparison = compare(&base, &current, TOLERANCE);
    if comparison.regressions.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail {
            reason: comparison.regressions.join("; "),
            output: ours.output,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GUEST: &str = "\
running 3 tests
Hello from pv-guest
bench: hypercall 57.3
test bench::hypercall ... ok
bench: gic-trap 140.0
test bench::gic-trap ... ok
bench: virtual-ipi n/a (needs 2 vCPUs, found 1)
test bench::virtual-ipi ... ok
3 passed, 0 failed
";

    fn figures(pairs: &[(&str, f64)]) -> Figures {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), Measurement::Ns(*value)))
            .collect()
    }

    #[test]
    fn parses_figures_and_not_available() {
        let parsed = parse_figures(GUEST.lines()).unwrap();
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed["hypercall"], Measurement::Ns(57.3));
        assert_eq!(parsed["gic-trap"], Measurement::Ns(140.0));
        assert_eq!(
            parsed["virtual-ipi"],
            Measurement::NotAvailable("n/a (needs 2 vCPUs, found 1)".into())
        );
        // Unknown names are figures too; CR and trailing spaces do not matter.
        let parsed = parse_figures(["bench: io-out 12.5\r", "bench: boot 1234567.0  "]).unwrap();
        assert_eq!(parsed["io-out"], Measurement::Ns(12.5));
        assert_eq!(parsed["boot"], Measurement::Ns(1234567.0));
        assert_eq!(parsed["io-out"].ns(), Some(12.5));
    }

    #[test]
    fn refuses_malformed_lines() {
        for bad in [
            "bench: hypercall",
            "bench: hypercall fast",
            "bench: hypercall -1.0",
            "bench: hypercall 1.",
            "bench: hypercall .5",
            "bench: hypercall 1e3",
            "bench: hyper/call 1.0",
        ] {
            assert!(parse_figures([bad]).is_err(), "{bad:?} accepted");
        }
        let twice = parse_figures(["bench: hypercall 1.0", "bench: hypercall 2.0"]).unwrap_err();
        assert!(twice.contains("twice"), "{twice}");
        // Lines that merely mention bench are not figures.
        assert!(
            parse_figures(["test bench::hypercall ... ok", "benchmark: x"])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn evaluates_the_report_with_the_figures() {
        let lines: Vec<&str> = GUEST.lines().collect();
        let (parsed, checked) = evaluate(&lines);
        assert_eq!(checked, Ok(()));
        assert_eq!(parsed.len(), 3);
        let failed = GUEST.replace("3 passed, 0 failed", "2 passed, 1 failed");
        let lines: Vec<&str> = failed.lines().collect();
        assert!(evaluate(&lines).1.is_err());
        let no_figures = [
            "running 1 tests",
            "test bench::x ... ok",
            "1 passed, 0 failed",
        ];
        let (_, checked) = evaluate(&no_figures);
        assert!(checked.unwrap_err().contains("no `bench:` line"));
    }

    #[test]
    fn domu_lines_on_xen() {
        let stdout: Vec<String> = [
            "(XEN) DOM1: bench: io-in 6160.0",
            "(XEN) DOM12: bench: io-in 1.0",
            "(XEN) Freed 348kB init memory.",
            "bench: io-out 6160.0",
            "DOM1: test bench-pair::io_in ... ok",
        ]
        .iter()
        .map(|line| line.to_string())
        .collect();
        let lines: Vec<&str> = domu_lines(&stdout, 1).collect();
        assert_eq!(
            lines,
            ["bench: io-in 6160.0", "test bench-pair::io_in ... ok"]
        );
        let figures = parse_figures(lines).unwrap();
        assert_eq!(figures.get("io-in"), Some(&Measurement::Ns(6160.0)));
    }

    #[test]
    fn merged_figures_refuse_a_name_twice() {
        let mut figures = Figures::new();
        let one = || Figures::from([("io-in".to_string(), Measurement::Ns(1.0))]);
        assert!(merge_figures(&mut figures, one()).is_ok());
        assert!(merge_figures(&mut figures, one()).is_err());
    }

    #[test]
    fn dom0_lines_on_xen() {
        let stdout: Vec<String> = [
            "(XEN) Freed 348kB init memory.",
            "running 1 tests",
            "(d0) bench: hypercall 434.0",
            "(d1) bench: hypercall 1.0",
            "(draft) stays",
            "test bench::hypercall ... ok",
            "1 passed, 0 failed",
        ]
        .iter()
        .map(|line| line.to_string())
        .collect();
        let lines = dom0_lines(&stdout);
        assert_eq!(
            lines,
            [
                "running 1 tests",
                "bench: hypercall 434.0",
                "(draft) stays",
                "test bench::hypercall ... ok",
                "1 passed, 0 failed"
            ]
        );
        let (figures, checked) = evaluate(&lines);
        assert_eq!(checked, Ok(()));
        assert_eq!(figures["hypercall"], Measurement::Ns(434.0));
    }

    #[test]
    fn ratios_and_goals() {
        assert_eq!(ratio(Some(50.0), Some(400.0)), Some(0.125));
        assert_eq!(ratio(Some(50.0), None), None);
        assert_eq!(ratio(None, Some(1.0)), None);
        assert_eq!(ratio(Some(1.0), Some(0.0)), None);
        let hypercall = goal_of("hypercall").unwrap();
        assert_eq!(describe(hypercall), "<= 60");
        assert_eq!(
            judge(hypercall, Some(60.0), None),
            (GoalStatus::Met, Some(60.0))
        );
        assert_eq!(judge(hypercall, Some(60.1), None).0, GoalStatus::NotMet);
        assert_eq!(judge(hypercall, None, Some(423.0)).0, GoalStatus::Unknown);
        let switch = goal_of("vm-switch").unwrap();
        assert_eq!(describe(switch), "<= 0.4 x Xen");
        assert_eq!(judge(switch, Some(400.0), Some(1000.0)).0, GoalStatus::Met);
        assert_eq!(
            judge(switch, Some(401.0), Some(1000.0)).0,
            GoalStatus::NotMet
        );
        assert_eq!(judge(switch, Some(401.0), None).0, GoalStatus::Unknown);
        assert_eq!(goal_of("boot"), None);
        let small = ImageSize {
            raw_image: IMAGE_LIMIT - 1,
            ..ImageSize::default()
        };
        assert_eq!(judge_image(&small), GoalStatus::Met);
        let big = ImageSize {
            raw_image: IMAGE_LIMIT,
            ..small
        };
        assert_eq!(judge_image(&big), GoalStatus::NotMet);
    }

    fn sample_runs() -> Runs {
        let mut v3 = GicRun {
            ours: figures(&[("hypercall", 57.3), ("gic-trap", 160.0), ("zeta", 1.0)]),
            xen: Some(figures(&[("hypercall", 423.0), ("gic-trap", 601.0)])),
        };
        v3.ours.insert(
            "virtual-ipi".into(),
            Measurement::NotAvailable("n/a (one CPU)".into()),
        );
        let v2 = GicRun {
            ours: figures(&[("hypercall", 58.0)]),
            xen: None,
        };
        [("gicv3".to_string(), v3), ("gicv2".to_string(), v2)].into()
    }

    #[test]
    fn table_orders_rows_and_shows_ratios_goals_and_gaps() {
        let runs = sample_runs();
        assert_eq!(
            benchmark_names(&runs),
            ["hypercall", "gic-trap", "virtual-ipi", "zeta"]
        );
        let table = render_table(&runs);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].starts_with("benchmark"), "{table}");
        assert!(lines[1].starts_with("---"), "{table}");
        // hypercall v3 first, then v2.
        let row: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(
            row[..5],
            ["hypercall", "v3", "423.0", "57.3", "0.14"],
            "{table}"
        );
        assert!(lines[2].ends_with("<= 60: met"), "{table}");
        let row: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(row[..5], ["hypercall", "v2", "-", "58.0", "-"], "{table}");
        assert!(lines[4].contains("<= 150: not met"), "{table}");
        let ipi: Vec<&str> = lines[6].split_whitespace().collect();
        assert_eq!(ipi[..5], ["virtual-ipi", "v3", "-", "n/a", "-"], "{table}");
        assert_eq!(lines.len(), 2 + 4 * 2);
        assert_eq!(
            not_available(&runs),
            ["gicv3 ours virtual-ipi: n/a (one CPU)"]
        );
    }

    #[test]
    fn goal_results_cover_every_goal_and_the_image() {
        let runs = sample_runs();
        let image = ImageSize {
            text: 1,
            data: 2,
            bss: 3,
            raw_image: 300 * 1024,
        };
        let goals = goal_results(&runs, Some(&image));
        // Eight benchmark goals on two GICs, and the image.
        assert_eq!(goals.len(), GOALS.len() * 2 + 1);
        let find = |benchmark: &str, gic: &str| {
            goals
                .iter()
                .find(|g| g.benchmark == benchmark && g.gic == gic)
                .unwrap()
        };
        assert_eq!(find("hypercall", "gicv3").status, "met");
        assert_eq!(find("gic-trap", "gicv3").status, "not met");
        assert_eq!(find("gic-trap", "gicv2").status, "unknown");
        assert_eq!(find("hyp-image", "").status, "not met");
        assert_eq!(find("hyp-image", "").value, Some(300.0 * 1024.0));
        let text = render_goals(&goals);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + GOALS.len() + 1, "{text}");
        assert_eq!(lines[1], "  hypercall <= 60: met (v3 57.3, v2 58.0)");
        assert_eq!(lines[2], "  gic-trap <= 150: not met (v3 160.0)");
        assert_eq!(lines[6], "  vm-switch <= 0.4 x Xen: unknown (not measured)");
        assert_eq!(lines[9], "  hyp.img < 256 KiB: not met (307200 bytes)");
    }

    #[test]
    fn baseline_comparison() {
        let baseline: Runs = [(
            "gicv3".to_string(),
            GicRun {
                ours: figures(&[("hypercall", 1000.0), ("gic-trap", 200.0), ("boot", 1000.0)]),
                xen: Some(figures(&[("hypercall", 1.0)])),
            },
        )]
        .into();
        let mut current = baseline.clone();
        // Exactly 5 % worse passes; Xen's figures are never compared.
        current.get_mut("gicv3").unwrap().ours =
            figures(&[("hypercall", 1050.0), ("gic-trap", 150.0), ("boot", 900.0)]);
        current.get_mut("gicv3").unwrap().xen = Some(figures(&[("hypercall", 100.0)]));
        assert_eq!(
            compare(&baseline, &current, TOLERANCE),
            Comparison::default()
        );

        let mut worse = current.clone();
        let ours = &mut worse.get_mut("gicv3").unwrap().ours;
        ours.insert("hypercall".into(), Measurement::Ns(1050.1));
        ours.insert("boot".into(), Measurement::NotAvailable("n/a (x)".into()));
        ours.remove("gic-trap");
        ours.insert("new-one".into(), Measurement::Ns(1.0));
        let comparison = compare(&baseline, &worse, TOLERANCE);
        assert_eq!(comparison.regressions.len(), 3, "{comparison:?}");
        assert!(
            comparison.regressions[0].starts_with("gicv3 boot: no figure"),
            "{comparison:?}"
        );
        assert!(
            comparison.regressions[1].starts_with("gicv3 gic-trap: no figure"),
            "{comparison:?}"
        );
        assert!(
            comparison.regressions[2].contains("1050.1 against the baseline's 1000.0 (+5.0 %"),
            "{comparison:?}"
        );
        assert_eq!(
            comparison.notes,
            ["gicv3 new-one: new, not in the baseline"]
        );

        // A few instructions worse on a figure of a few instructions is within one counter
        // tick: not a regression.
        let mut small = baseline.clone();
        small
            .get_mut("gicv3")
            .unwrap()
            .ours
            .insert("virq-completion".into(), Measurement::Ns(10.4));
        let mut jitter = small.clone();
        jitter
            .get_mut("gicv3")
            .unwrap()
            .ours
            .insert("virq-completion".into(), Measurement::Ns(13.6));
        assert!(compare(&small, &jitter, TOLERANCE).regressions.is_empty());

        // A GIC the baseline lacks is a note, not a failure; an n/a baseline is no bar.
        let mut other = Runs::new();
        other.insert("gicv2".into(), GicRun::default());
        let comparison = compare(&baseline, &other, TOLERANCE);
        assert!(comparison.regressions.is_empty());
        assert_eq!(comparison.notes, ["gicv2: no baseline figures"]);
        let mut na = baseline.clone();
        na.get_mut("gicv3")
            .unwrap()
            .ours
            .insert("hypercall".into(), Measurement::NotAvailable("n/a".into()));
        assert!(compare(&na, &worse, TOLERANCE)
            .regressions
            .iter()
            .all(|r| !r.contains("hypercall")));
    }

    #[test]
    fn baseline_update_keeps_the_other_section_and_drops_xen() {
        let runs = sample_runs();
        let old = BenchFile {
            full: Some(runs.clone()),
            quick: Some([("gicv2".to_string(), GicRun::default())].into()),
            ..BenchFile::default()
        };
        let current = BenchFile {
            commit: Some("abc".into()),
            quick: Some([("gicv3".to_string(), runs["gicv3"].clone())].into()),
            image: Some(ImageSize::default()),
            goals: vec![],
            notes: vec!["n".into()],
            ..BenchFile::default()
        };
        let updated = updated_baseline(&old, &current, true);
        assert_eq!(updated.full, old.full);
        let quick = updated.quick.as_ref().unwrap();
        assert!(quick.contains_key("gicv2"), "kept the GIC not measured");
        assert_eq!(quick["gicv3"].ours, runs["gicv3"].ours);
        assert_eq!(quick["gicv3"].xen, None);
        assert_eq!(updated.commit.as_deref(), Some("abc"));
        assert!(updated.notes.is_empty());
    }

    #[test]
    fn json_round_trip_and_shape() {
        let file = BenchFile {
            full: Some(sample_runs()),
            hyp_rust_lines: Some(42),
            ..BenchFile::default()
        };
        let text = serde_json::to_string(&file).unwrap();
        assert!(text.contains(r#""hypercall":57.3"#), "{text}");
        assert!(text.contains(r#""virtual-ipi":"n/a (one CPU)""#), "{text}");
        assert!(!text.contains("quick"), "{text}");
        let back: BenchFile = serde_json::from_str(&text).unwrap();
        assert_eq!(back, file);
        assert!(serde_json::from_str::<Measurement>("true").is_err());
        let empty: BenchFile = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, BenchFile::default());
    }

    /// A little-endian ELF64 file with the given sections (type, flags, size) after a
    /// null section.
    fn elf_with(sections: &[(u32, u64, u64)]) -> Vec<u8> {
        let shoff = 64usize;
        let mut elf = vec![0u8; shoff + 64 * (sections.len() + 1)];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&(sections.len() as u16 + 1).to_le_bytes());
        for (i, (kind, flags, size)) in sections.iter().enumerate() {
            let at = shoff + 64 * (i + 1);
            elf[at + 4..at + 8].copy_from_slice(&kind.to_le_bytes());
            elf[at + 8..at + 16].copy_from_slice(&flags.to_le_bytes());
            elf[at + 32..at + 40].copy_from_slice(&size.to_le_bytes());
        }
        elf
    }

    #[test]
    fn elf_sizes_by_section_flags() {
        const PROGBITS: u32 = 1;
        const EXEC: u64 = 0x4;
        let elf = elf_with(&[
            (PROGBITS, SHF_ALLOC | EXEC, 1000),        // .text
            (PROGBITS, SHF_ALLOC, 200),                // .rodata
            (PROGBITS, SHF_ALLOC | SHF_WRITE, 30),     // .data
            (SHT_NOBITS, SHF_ALLOC | SHF_WRITE, 4096), // .bss
            (PROGBITS, 0, 99999),                      // .debug_info: not loaded
        ]);
        assert_eq!(elf_sizes(&elf).unwrap(), (1200, 30, 4096));
        assert!(
            elf_sizes(b"not an elf at all, but long enough to be mistaken for one....").is_err()
        );
        let mut big_endian = elf.clone();
        big_endian[5] = 2;
        assert!(elf_sizes(&big_endian).is_err());
        let truncated = &elf[..elf.len() - 40];
        assert!(elf_sizes(truncated).is_err());
    }

    #[test]
    fn code_lines_leave_out_tests_comments_and_blanks() {
        let source = r#"//! Module doc.

/// A doc comment.
pub fn a() -> &'static str {
    "{ not a brace" // }
}
/* block
   comment */
#[cfg(test)]
mod tests {
    #[test]
    fn t() { let c = '{'; }
}
#[cfg(test)]
#[path = "x_tests.rs"]
mod x_tests;
#[cfg(test)]
mod helper;
#[cfg(test)]
use std::fmt;
fn b() {}
"#;
        let (count, modules) = count_code_lines(source);
        assert_eq!(count, 4, "a's three lines and b");
        assert_eq!(
            modules,
            [
                TestModule {
                    name: "x_tests".into(),
                    path: Some("x_tests.rs".into())
                },
                TestModule {
                    name: "helper".into(),
                    path: None
                }
            ]
        );
    }

    #[test]
    fn rust_lines_skip_test_files_and_directories() {
        let dir = std::env::temp_dir().join(format!("xtask-bench-lines-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("src/events")).unwrap();
        std::fs::create_dir_all(dir.join("tests")).unwrap();
        std::fs::write(dir.join("src/lib.rs"), "mod events;\nfn a() {}\n").unwrap();
        std::fs::write(
            dir.join("src/events/mod.rs"),
            "fn b() {}\n#[cfg(test)]\nmod tests;\n",
        )
        .unwrap();
        std::fs::write(dir.join("src/events/tests.rs"), "fn t() {}\nfn u() {}\n").unwrap();
        std::fs::write(dir.join("src/hyp_tests.rs"), "fn t() {}\n").unwrap();
        std::fs::write(dir.join("tests/it.rs"), "fn t() {}\n").unwrap();
        std::fs::write(dir.join("build.rs"), "fn main() {}\n").unwrap();
        let lines = rust_lines(&dir).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(lines, 2 + 1 + 1, "lib.rs, events/mod.rs and build.rs");
    }

    #[test]
    fn chart_is_written() {
        let path = std::env::temp_dir().join(format!("xtask-bench-{}.svg", std::process::id()));
        draw_chart(&sample_runs(), &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
        for text in ["gic-trap", "hypercall", "Xen 4.17", "ours", "gicv2"] {
            assert!(svg.contains(text), "{text} missing");
        }
        assert!(draw_chart(&Runs::new(), &path).is_err());
    }
}
