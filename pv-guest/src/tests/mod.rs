//! The test framework: scenarios chosen by the kernel command line.
//!
//! `/chosen/bootargs` is a space-separated list of scenario names; empty means the
//! default set ([`Scenario::in_default_set`]). A word with a `=` is a parameter
//! `KEY=VALUE` for the scenarios ([`parameter`]), not a scenario name. The report is
//! exactly:
//!
//! ```text
//! running N tests
//! test SCENARIO::CASE ... ok
//!   SCENARIO::CASE: expected X, got Y      (only before a FAILED line)
//! test SCENARIO::CASE ... FAILED
//! P passed, F failed
//! ```
//!
//! (scenarios may print their own lines between tests). An unknown scenario name
//! becomes the failed test `cmdline::unknown_scenario_NAME`.
//!
//! To add a scenario: write a module with a `pub const SCENARIO: Scenario` and list it
//! in [`SCENARIOS`].

mod abi;
mod bench;
mod bench_pair;
mod blkback;
mod blkfront;
mod console_input;
mod crash;
mod crashloop;
mod errors;
mod events;
mod evtchn_ipi;
mod fuzz;
mod grant_isolation;
mod hello;
mod hog;
mod ipi;
mod isolation;
mod pingpong;
mod ring_console;
mod spin;
mod split;
mod timer;
mod victim;

use core::cell::UnsafeCell;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::abi::errno::Errno;
use crate::arch::cpu;
use crate::dt::BootInfo;
use crate::println;

/// Every scenario, in the order the default set runs.
pub const SCENARIOS: &[Scenario] = &[
    hello::SCENARIO,
    errors::SCENARIO,
    abi::SCENARIO,
    crash::SCENARIO,
    crashloop::SCENARIO,
    crashloop::PEER_SCENARIO,
    spin::SCENARIO,
    events::SCENARIO,
    timer::SCENARIO,
    ipi::SCENARIO,
    evtchn_ipi::SCENARIO,
    pingpong::SCENARIO,
    hog::SCENARIO,
    ring_console::SCENARIO,
    blkfront::SCENARIO,
    blkback::SCENARIO,
    grant_isolation::SCENARIO,
    console_input::SCENARIO,
    bench::SCENARIO,
    bench_pair::SCENARIO,
    fuzz::SCENARIO,
    victim::SCENARIO,
    isolation::SCENARIO,
];

/// Command-line words that are flags for the scenarios, not scenario names: `quick`
/// (fewer repetitions in `bench`).
const FLAGS: &[&str] = &["quick"];

/// Most scenario names honoured on one command line.
const MAX_SELECTED: usize = 16;

/// What tests may look at.
pub struct Context {
    /// What the device tree said.
    pub boot: BootInfo,
}

impl Context {
    /// Whether the flag word `flag` (one of [`FLAGS`]) is on the command line.
    pub fn flag(&self, flag: &str) -> bool {
        core::str::from_utf8(self.boot.bootargs)
            .is_ok_and(|bootargs| bootargs.split_ascii_whitespace().any(|word| word == flag))
    }

    /// The value of the first `KEY=VALUE` word of the command line with this key.
    pub fn parameter(&self, key: &str) -> Option<&'static str> {
        let bootargs = core::str::from_utf8(self.boot.bootargs).ok()?;
        bootargs
            .split_ascii_whitespace()
            .filter_map(|word| word.split_once('='))
            .find(|&(name, _)| name == key)
            .map(|(_, value)| value)
    }
}

/// A group of tests with a name that the command line selects.
pub struct Scenario {
    /// The command-line name and the first half of every test name.
    pub name: &'static str,
    /// Part of the set run when the command line is empty.
    pub in_default_set: bool,
    /// Runs once before the scenario's tests (for banner lines).
    pub introduce: Option<fn(&Context)>,
    /// vCPUs the scenario needs: with fewer (device-tree `cpus`), it reports zero tests
    /// and prints `NAME: needs N vCPUs, found M` instead.
    pub needs_cpus: usize,
    /// Whether the machine offers what the scenario tests, beyond vCPUs (`None`: it
    /// always does). When it does not, the scenario reports zero tests. Called with
    /// `explain` false while counting the tests, and once more with `explain` true
    /// where the scenario would run, to print what is missing (one line or two).
    pub available: Option<fn(context: &Context, explain: bool) -> bool>,
    /// The tests, in order.
    pub tests: &'static [Test],
}

impl Scenario {
    /// A scenario run only when named on the command line, with no introduction, no
    /// vCPU need and nothing to check on the machine first; the others start from this
    /// too (`Scenario { in_default_set: true, ..Scenario::named(...) }`).
    pub const fn named(name: &'static str, tests: &'static [Test]) -> Self {
        Self {
            name,
            in_default_set: false,
            introduce: None,
            needs_cpus: 0,
            available: None,
            tests,
        }
    }

    /// Whether the machine has the vCPUs the scenario needs.
    fn has_cpus(&self, context: &Context) -> bool {
        context.boot.cpu_count >= self.needs_cpus
    }

    /// Whether the machine has what the scenario needs; `explain` as in
    /// [`Scenario::available`].
    fn runnable(&self, context: &Context, explain: bool) -> bool {
        self.has_cpus(context)
            && self
                .available
                .is_none_or(|available| available(context, explain))
    }
}

/// One test: `SCENARIO::name`.
pub struct Test {
    /// The second half of the test name.
    pub name: &'static str,
    /// The test.
    pub run: fn(&Context) -> TestResult,
}

impl Test {
    /// Test `name`, run by `run`.
    pub const fn new(name: &'static str, run: fn(&Context) -> TestResult) -> Self {
        Self { name, run }
    }
}

/// A test's outcome.
pub type TestResult = Result<(), Failure>;

/// Why a test failed: printed as `  NAME: expected X, got Y`.
///
/// The two descriptions are formatted into one static slot (tests run one at a time),
/// so that `TestResult` stays a word wide; the runner prints the slot when the test
/// returns this token. Creating a `Failure` overwrites the slot.
pub struct Failure {
    _private: (),
}

impl Failure {
    /// A failure with the two descriptions.
    pub fn new(expected: fmt::Arguments<'_>, got: fmt::Arguments<'_>) -> Failure {
        FAILURE_SLOT.with(|slot| {
            slot.expected.length = 0;
            slot.got.length = 0;
            let _ = slot.expected.write_fmt(expected);
            let _ = slot.got.write_fmt(got);
        });
        Failure { _private: () }
    }
}

/// The descriptions of the last [`Failure`].
struct FailureText {
    expected: Text,
    got: Text,
}

/// A [`FailureText`] behind a busy flag.
struct FailureSlot {
    busy: AtomicBool,
    text: UnsafeCell<FailureText>,
}

// SAFETY: `text` is only reached inside `with`, while `busy` is held.
unsafe impl Sync for FailureSlot {}

impl FailureSlot {
    /// Runs `action` on the text, unless the slot is already in use (then does nothing).
    fn with(&self, action: impl FnOnce(&mut FailureText)) {
        if self.busy.swap(true, Ordering::Acquire) {
            return;
        }
        // SAFETY: `busy` was false and is now ours: this is the only reference.
        action(unsafe { &mut *self.text.get() });
        self.busy.store(false, Ordering::Release);
    }
}

static FAILURE_SLOT: FailureSlot = FailureSlot {
    busy: AtomicBool::new(false),
    text: UnsafeCell::new(FailureText {
        expected: Text::EMPTY,
        got: Text::EMPTY,
    }),
};

/// A short string formatted into a fixed buffer (truncated when full).
pub struct Text {
    bytes: [u8; 160],
    length: usize,
}

impl Text {
    /// No text.
    pub const EMPTY: Text = Text {
        bytes: [0; 160],
        length: 0,
    };

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.length]
    }
}

impl Write for Text {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        for &byte in text.as_bytes() {
            if self.length < self.bytes.len() {
                self.bytes[self.length] = byte;
                self.length += 1;
            }
        }
        Ok(())
    }
}

impl fmt::Display for Text {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Only whole strings are written, but truncation can cut a character in two:
        // show the valid prefix.
        let text = match core::str::from_utf8(&self.bytes[..self.length]) {
            Ok(text) => text,
            Err(error) => {
                core::str::from_utf8(&self.bytes[..error.valid_up_to()]).unwrap_or_default()
            }
        };
        formatter.write_str(text)
    }
}

/// A hypercall's x0, shown as `-ENAME` when it is a known errno, else in hex.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Return(pub u64);

impl fmt::Display for Return {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match Errno::from_return(self.0) {
            Some(errno) => write!(formatter, "-{errno:?}"),
            None => write!(formatter, "{:#x}", self.0),
        }
    }
}

/// Passes when `got` is the return value `expected`; `what` names the call.
pub fn expect_return(what: fmt::Arguments<'_>, got: u64, expected: u64) -> TestResult {
    if got == expected {
        Ok(())
    } else {
        Err(Failure::new(
            format_args!("{what} -> {}", Return(expected)),
            format_args!("{}", Return(got)),
        ))
    }
}

/// Passes when `got` is `-errno`.
pub fn expect_errno(what: fmt::Arguments<'_>, got: u64, errno: Errno) -> TestResult {
    expect_return(what, got, errno.to_return())
}

/// Which scenarios the command line asks for, in order, without repeats.
enum Selection<'a> {
    Known(&'static Scenario),
    Unknown(&'a str),
}

fn select<'a>(bootargs: &'a str, selected: &mut [Option<Selection<'a>>; MAX_SELECTED]) -> usize {
    let mut count = 0;
    let mut push = |selection| {
        if count < MAX_SELECTED {
            selected[count] = Some(selection);
            count += 1;
        }
    };
    let mut any = false;
    let names = || {
        bootargs
            .split_ascii_whitespace()
            .filter(|word| !word.contains('=') && !FLAGS.contains(word))
    };
    for (index, word) in names().enumerate() {
        any = true;
        if names().take(index).any(|seen| seen == word) {
            continue;
        }
        match SCENARIOS.iter().find(|scenario| scenario.name == word) {
            Some(scenario) => push(Selection::Known(scenario)),
            None => push(Selection::Unknown(word)),
        }
    }
    if !any {
        for scenario in SCENARIOS.iter().filter(|scenario| scenario.in_default_set) {
            push(Selection::Known(scenario));
        }
    }
    count
}

fn report_failure(scenario: &str, name: &str) {
    FAILURE_SLOT.with(|text| {
        println!(
            "  {scenario}::{name}: expected {}, got {}",
            text.expected, text.got
        );
    });
    println!("test {scenario}::{name} ... FAILED");
}

/// CNTPCT_EL0 when the first report line was printed (`bench`'s boot time).
pub static FIRST_LINE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Runs what the command line selects; returns (passed, failed).
pub fn run(context: &Context) -> (usize, usize) {
    let bootargs = match core::str::from_utf8(context.boot.bootargs) {
        Ok(text) => text,
        Err(_) => {
            println!("pv-guest: bootargs are not UTF-8; running the default set");
            ""
        }
    };
    let mut selected: [Option<Selection<'_>>; MAX_SELECTED] = Default::default();
    let count = select(bootargs, &mut selected);
    let selected = selected[..count].iter().flatten();

    let total: usize = selected
        .clone()
        .map(|selection| match selection {
            Selection::Known(scenario) if scenario.runnable(context, false) => scenario.tests.len(),
            Selection::Known(_) => 0,
            Selection::Unknown(_) => 1,
        })
        .sum();
    FIRST_LINE_COUNTER.store(cpu::physical_counter(), Ordering::Relaxed);
    println!("running {total} tests");

    let (mut passed, mut failed) = (0, 0);
    for selection in selected {
        match selection {
            Selection::Unknown(word) => {
                println!(
                    "  cmdline::unknown_scenario_{word}: expected a scenario name ({}), got {word:?}",
                    Names
                );
                println!("test cmdline::unknown_scenario_{word} ... FAILED");
                failed += 1;
            }
            Selection::Known(scenario) if !scenario.has_cpus(context) => {
                println!(
                    "{}: needs {} vCPUs, found {}",
                    scenario.name, scenario.needs_cpus, context.boot.cpu_count
                );
            }
            Selection::Known(scenario) if !scenario.runnable(context, true) => {}
            Selection::Known(scenario) => {
                if let Some(introduce) = scenario.introduce {
                    introduce(context);
                }
                for test in scenario.tests {
                    match (test.run)(context) {
                        Ok(()) => {
                            println!("test {}::{} ... ok", scenario.name, test.name);
                            passed += 1;
                        }
                        Err(Failure { .. }) => {
                            report_failure(scenario.name, test.name);
                            failed += 1;
                        }
                    }
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    (passed, failed)
}

/// The scenario names, space separated.
struct Names;

impl fmt::Display for Names {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, scenario) in SCENARIOS.iter().enumerate() {
            if index > 0 {
                formatter.write_str(" ")?;
            }
            formatter.write_str(scenario.name)?;
        }
        Ok(())
    }
}
