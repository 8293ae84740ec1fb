//! The runner: boots a machine, streams its UART output as [`Line`]s to a callback,
//! enforces a timeout, and returns an [`Outcome`].
//!
//! QEMU's stdout (the UART) goes through [`Splitter`] and [`LogDecoder`]; its stderr is
//! passed on line by line as [`Line::Stderr`]. QEMU's stdin is a pipe (the UART's receive
//! side): [`RunConfig::input`] scripts what is typed into it ([`InputStep`]: once some
//! output has appeared, send some bytes); otherwise, when [`RunConfig::forward_stdin`] is
//! set and the runner's stdin is a terminal, what is typed (line by line) is forwarded.

use std::fmt;
use std::io::{self, IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::machine::{Machine, COMMON_ARGS};
use crate::stream::{Event, LogDecoder, LogMessage, Splitter, UndecodableFrame};

/// The QEMU binary the runner starts.
pub const QEMU_BINARY: &str = "qemu-system-aarch64";

/// How long QEMU is given to exit by itself after the hypervisor's `halt:` line (the
/// grace `xtask` passes in [`Control::StopAfter`]).
pub const HALT_GRACE: Duration = Duration::from_secs(10);

/// What to boot and how.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The machine profile.
    pub machine: Machine,
    /// The image given to QEMU as `-kernel` (the hypervisor, a raw arm64 Image).
    pub kernel: PathBuf,
    /// The file given as `-initrd` (the boot pack), if any.
    pub initrd: Option<PathBuf>,
    /// Further QEMU arguments, appended last.
    pub extra_args: Vec<String>,
    /// Add `-icount shift=0,sleep=off` (deterministic virtual time).
    pub icount: bool,
    /// Kill QEMU after this long.
    pub timeout: Duration,
    /// Forward the runner's stdin to QEMU when it is a terminal (not with `input`).
    pub forward_stdin: bool,
    /// Scripted input for the UART, step by step.
    pub input: Vec<InputStep>,
}

/// One step of scripted UART input: once every string of `wait_for` has appeared in some
/// output line (each line as [`Line::render`] shows it, uncoloured) since the previous
/// step was sent (or since the start), `send` is written to QEMU's stdin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputStep {
    /// Substrings to see first (none: send right after the previous step).
    pub wait_for: Vec<String>,
    /// The bytes to type.
    pub send: Vec<u8>,
}

impl InputStep {
    /// A step that waits for every string of `wait_for`, then sends `send`.
    pub fn new(wait_for: &[&str], send: impl Into<Vec<u8>>) -> Self {
        InputStep {
            wait_for: wait_for.iter().map(|text| text.to_string()).collect(),
            send: send.into(),
        }
    }
}

/// Plays a list of [`InputStep`]s against the output lines.
#[derive(Debug)]
pub struct InputScript {
    steps: std::collections::VecDeque<InputStep>,
    seen: Vec<bool>,
}

impl InputScript {
    /// The script, before any output.
    pub fn new(steps: &[InputStep]) -> Self {
        let mut script = InputScript {
            steps: steps.iter().cloned().collect(),
            seen: Vec::new(),
        };
        script.reset_seen();
        script
    }

    fn reset_seen(&mut self) {
        let wanted = self.steps.front().map_or(0, |step| step.wait_for.len());
        self.seen = vec![false; wanted];
    }

    /// The bytes to send now: at the start (`line` is `None`) or after the output line
    /// `line`. Steps whose strings are all seen are sent, in order; a step with no
    /// strings follows the one before it at once.
    pub fn advance(&mut self, line: Option<&str>) -> Vec<u8> {
        if let (Some(line), Some(step)) = (line, self.steps.front()) {
            for (seen, wanted) in self.seen.iter_mut().zip(&step.wait_for) {
                *seen |= line.contains(wanted.as_str());
            }
        }
        let mut out = Vec::new();
        while self.seen.iter().all(|seen| *seen) {
            let Some(step) = self.steps.pop_front() else {
                break;
            };
            out.extend_from_slice(&step.send);
            self.reset_seen();
        }
        out
    }

    /// Whether every step was sent.
    pub fn finished(&self) -> bool {
        self.steps.is_empty()
    }
}

impl RunConfig {
    /// A configuration with no initrd, no extra arguments, no icount, a 120 s timeout and
    /// no stdin forwarding.
    pub fn new(machine: Machine, kernel: impl Into<PathBuf>) -> Self {
        RunConfig {
            machine,
            kernel: kernel.into(),
            initrd: None,
            extra_args: Vec::new(),
            icount: false,
            timeout: Duration::from_secs(120),
            forward_stdin: false,
            input: Vec::new(),
        }
    }

    /// The QEMU arguments (without the binary name).
    pub fn args(&self) -> Result<Vec<String>, String> {
        let mut args = self.machine.args()?;
        args.extend(COMMON_ARGS.iter().map(|arg| arg.to_string()));
        args.push("-kernel".into());
        args.push(self.kernel.display().to_string());
        if let Some(initrd) = &self.initrd {
            args.push("-initrd".into());
            args.push(initrd.display().to_string());
        }
        if self.icount {
            args.push("-icount".into());
            args.push("shift=0,sleep=off".into());
        }
        args.extend(self.extra_args.iter().cloned());
        // For profiling and debugging (docs/performance.md): extra QEMU options such as
        // `-d exec,nochain -dfilter ...` or `-d int`, split at whitespace.
        if let Ok(extra) = std::env::var("HYP_QEMU_EXTRA") {
            args.extend(extra.split_whitespace().map(str::to_string));
        }
        Ok(args)
    }
}

/// The hypervisor's final verdict, from its `halt:` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Halt {
    /// `halt: all N domains shut down cleanly`.
    Clean {
        /// N.
        domains: usize,
    },
    /// `halt: K of N domains did not shut down cleanly`.
    Unclean {
        /// K.
        unclean: usize,
        /// N.
        domains: usize,
    },
}

impl Halt {
    /// Parses a hypervisor log message; `None` unless it is exactly one of the two forms.
    pub fn parse(message: &str) -> Option<Halt> {
        let rest = message.trim_end().strip_prefix("halt: ")?;
        if let Some(rest) = rest.strip_prefix("all ") {
            let count = rest.strip_suffix(" domains shut down cleanly")?;
            return Some(Halt::Clean {
                domains: parse_count(count)?,
            });
        }
        let (unclean, rest) = rest.split_once(" of ")?;
        let domains = rest.strip_suffix(" domains did not shut down cleanly")?;
        Some(Halt::Unclean {
            unclean: parse_count(unclean)?,
            domains: parse_count(domains)?,
        })
    }
}

impl fmt::Display for Halt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Halt::Clean { domains } => write!(f, "halt: all {domains} domains shut down cleanly"),
            Halt::Unclean { unclean, domains } => {
                write!(
                    f,
                    "halt: {unclean} of {domains} domains did not shut down cleanly"
                )
            }
        }
    }
}

fn parse_count(text: &str) -> Option<usize> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// One line of output from a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// A text line from the UART: guest console output (`(NAME) text`) or anything else
    /// not framed as `defmt`.
    Console(String),
    /// A decoded hypervisor log message.
    Hyp(LogMessage),
    /// A frame that could not be decoded.
    Undecodable(UndecodableFrame),
    /// A line QEMU wrote to its stderr.
    Stderr(String),
}

impl Line {
    /// The line as printed: console text as it is, hypervisor messages as
    /// `[hyp LEVEL] message` (level coloured when `colour`), undecodable frames as
    /// `[hyp ?] <undecodable frame N bytes>`, stderr as `[qemu] text`.
    pub fn render(&self, colour: bool) -> String {
        match self {
            Line::Console(text) => text.clone(),
            Line::Hyp(log) => {
                let level = log.level.unwrap_or("PRINT");
                if colour {
                    let code = match level {
                        "ERROR" => "31",
                        "WARN" => "33",
                        "INFO" => "32",
                        "TRACE" => "2",
                        _ => "0",
                    };
                    format!("[hyp \x1b[{code}m{level}\x1b[0m] {}", log.message)
                } else {
                    format!("[hyp {level}] {}", log.message)
                }
            }
            Line::Undecodable(frame) => format!("[hyp ?] {frame}"),
            Line::Stderr(text) => format!("[qemu] {text}"),
        }
    }

    /// The hypervisor's message, for [`Line::Hyp`].
    pub fn hyp_message(&self) -> Option<&str> {
        match self {
            Line::Hyp(log) => Some(&log.message),
            _ => None,
        }
    }

    /// Whether this is a hypervisor panic: a hypervisor log message starting with
    /// `hypervisor panic` (what `hyp`'s panic handler logs) or `panic`, or containing
    /// `panicked at`.
    pub fn is_panic(&self) -> bool {
        self.hyp_message().is_some_and(|message| {
            let message = message.trim_start();
            message.starts_with("hypervisor panic")
                || message.starts_with("panic")
                || message.contains("panicked at")
        })
    }

    /// The [`Halt`] this line announces, if it is a hypervisor `halt:` message.
    pub fn halt(&self) -> Option<Halt> {
        self.hyp_message().and_then(Halt::parse)
    }
}

/// What the callback wants the runner to do next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Keep running.
    Continue,
    /// Kill QEMU now.
    Stop,
    /// Give QEMU this long to exit by itself, then kill it (never extends the timeout).
    StopAfter(Duration),
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    /// QEMU's exit status (also set when it was killed).
    pub status: Option<ExitStatus>,
    /// The timeout expired and QEMU was killed.
    pub timed_out: bool,
    /// The callback's [`Control`] ended the run and QEMU was killed.
    pub stopped: bool,
    /// QEMU was stopped after the hypervisor's `halt:` line on a machine the hypervisor
    /// cannot power off ([`Machine::can_power_off`]): the expected end there.
    pub parked: bool,
    /// Every line seen, in order.
    pub lines: Vec<Line>,
    /// Number of undecodable frames.
    pub undecodable: usize,
    /// Wall time of the run.
    pub elapsed: Duration,
}

impl Outcome {
    /// The text lines of the UART (guest consoles and unframed text).
    pub fn console_lines(&self) -> impl Iterator<Item = &str> + '_ {
        self.lines.iter().filter_map(|line| match line {
            Line::Console(text) => Some(text.as_str()),
            _ => None,
        })
    }

    /// The decoded hypervisor log messages.
    pub fn hyp_messages(&self) -> impl Iterator<Item = &str> + '_ {
        self.lines.iter().filter_map(Line::hyp_message)
    }

    /// The first hypervisor panic message, if any.
    pub fn panic_message(&self) -> Option<&str> {
        self.lines
            .iter()
            .find(|line| line.is_panic())
            .and_then(Line::hyp_message)
    }

    /// The [`Halt`] announced by the hypervisor's final log message, if it is a `halt:`.
    pub fn final_halt(&self) -> Option<Halt> {
        self.hyp_messages().last().and_then(Halt::parse)
    }

    /// Checks everything except the halt line: no timeout, no hypervisor panic, QEMU not
    /// killed and exited with status 0. On failure, the reason.
    pub fn check_run(&self) -> Result<(), String> {
        if let Some(message) = self.panic_message() {
            return Err(format!("hypervisor panic: {message}"));
        }
        if self.timed_out {
            return Err(format!(
                "timed out after {:.0} s (QEMU killed)",
                self.elapsed.as_secs_f64()
            ));
        }
        if self.stopped {
            return Err("QEMU did not exit by itself (killed)".into());
        }
        if self.parked {
            return Ok(());
        }
        match self.status {
            Some(status) if status.success() => Ok(()),
            Some(status) => Err(format!("QEMU failed: {status}")),
            None => Err("QEMU's exit status is unknown".into()),
        }
    }

    /// The verdict of `cargo xtask run`: [`Outcome::check_run`] passes and the final
    /// hypervisor message is `halt: all N domains shut down cleanly` (N is returned).
    pub fn check_clean_halt(&self) -> Result<usize, String> {
        self.check_run()?;
        match self.final_halt() {
            Some(Halt::Clean { domains }) => Ok(domains),
            Some(halt @ Halt::Unclean { .. }) => Err(format!("hypervisor: {halt}")),
            None => Err(match self.hyp_messages().last() {
                Some(last) => {
                    format!("the hypervisor's final message is not `halt: ...`: {last:?}")
                }
                None => "no hypervisor log message at all".into(),
            }),
        }
    }
}

enum Message {
    Line(Line),
    StdoutDone,
    StderrDone,
}

/// Boots `config`, decoding frames with `decoder` (frames are undecodable without one),
/// and calls `on_line` for every line as it arrives. Returns when QEMU has exited or was
/// killed (timeout or [`Control`]). Fails only when QEMU cannot be started.
pub fn run(
    config: &RunConfig,
    decoder: Option<&LogDecoder>,
    mut on_line: impl FnMut(&Line) -> Control,
) -> Result<Outcome, String> {
    let args = config.args()?;
    let start = Instant::now();
    let mut child = Command::new(QEMU_BINARY)
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot start {QEMU_BINARY}: {error}"))?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    // Kept open for the whole run so QEMU never sees EOF on its serial input.
    let mut stdin = child.stdin.take();
    let mut script = InputScript::new(&config.input);
    type_into(&mut stdin, script.advance(None));
    if config.input.is_empty() && config.forward_stdin && io::stdin().is_terminal() {
        if let Some(mut pipe) = stdin.take() {
            // Detached: it may block reading our stdin after QEMU has gone.
            std::thread::spawn(move || forward_stdin(&mut pipe));
        }
    }

    let (sender, receiver) = mpsc::channel::<Message>();
    let mut outcome = Outcome {
        status: None,
        timed_out: false,
        stopped: false,
        parked: false,
        lines: Vec::new(),
        undecodable: 0,
        elapsed: Duration::ZERO,
    };
    std::thread::scope(|scope| {
        if let Some(stdout) = stdout {
            let sender = sender.clone();
            scope.spawn(move || read_uart(stdout, decoder, &sender));
        }
        if let Some(stderr) = stderr {
            let sender = sender.clone();
            scope.spawn(move || read_stderr(stderr, &sender));
        }
        drop(sender);
        let mut deadline = start + config.timeout;
        let mut open = 2;
        while open > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match receiver.recv_timeout(deadline - now) {
                Ok(Message::Line(line)) => {
                    if matches!(line, Line::Undecodable(_)) {
                        outcome.undecodable += 1;
                    }
                    type_into(&mut stdin, script.advance(Some(&line.render(false))));
                    match on_line(&line) {
                        Control::Continue => {}
                        Control::Stop => deadline = Instant::now(),
                        Control::StopAfter(grace) => {
                            deadline = deadline.min(Instant::now() + grace)
                        }
                    }
                    outcome.lines.push(line);
                }
                Ok(Message::StdoutDone | Message::StderrDone) => open -= 1,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => open = 0,
            }
        }
        // Both pipes closed (QEMU exiting) or the deadline passed.
        let (status, killed) = wait_until(&mut child, deadline);
        outcome.status = status;
        if killed {
            if deadline >= start + config.timeout {
                outcome.timed_out = true;
            } else if config.machine.can_power_off() {
                outcome.stopped = true;
            } else {
                outcome.parked = true;
            }
        }
        // Readers end at EOF once QEMU is gone; collect what they still had.
        for message in receiver.iter() {
            if let Message::Line(line) = message {
                if matches!(line, Line::Undecodable(_)) {
                    outcome.undecodable += 1;
                }
                on_line(&line);
                outcome.lines.push(line);
            }
        }
    });
    drop(stdin);
    outcome.elapsed = start.elapsed();
    Ok(outcome)
}

/// Waits for `child` until `deadline`, then kills it. Returns its status and whether it
/// had to be killed.
fn wait_until(child: &mut Child, deadline: Instant) -> (Option<ExitStatus>, bool) {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return (Some(status), false),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) | Err(_) => {
                let _ = child.kill();
                return (child.wait().ok(), true);
            }
        }
    }
}

/// Types `bytes` into QEMU's stdin (a write error means QEMU is gone: the run ends by
/// itself).
fn type_into(pipe: &mut Option<std::process::ChildStdin>, bytes: Vec<u8>) {
    if let (false, Some(pipe)) = (bytes.is_empty(), pipe.as_mut()) {
        let _ = pipe.write_all(&bytes).and_then(|()| pipe.flush());
    }
}

fn read_uart(mut stdout: impl Read, decoder: Option<&LogDecoder>, sender: &mpsc::Sender<Message>) {
    let mut splitter = Splitter::new();
    let mut buffer = [0u8; 4096];
    let send = |events: Vec<Event>| {
        for event in events {
            let line = match event {
                Event::Text(text) => Line::Console(text),
                Event::Frame(bytes) => match decoder {
                    Some(decoder) => match decoder.decode(&bytes) {
                        Ok(message) => Line::Hyp(message),
                        Err(undecodable) => Line::Undecodable(undecodable),
                    },
                    None => Line::Undecodable(UndecodableFrame { len: bytes.len() }),
                },
            };
            let _ = sender.send(Message::Line(line));
        }
    };
    loop {
        match stdout.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => send(splitter.push(&buffer[..n])),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    send(splitter.finish());
    let _ = sender.send(Message::StdoutDone);
}

fn read_stderr(stderr: impl Read, sender: &mpsc::Sender<Message>) {
    let mut reader = io::BufReader::new(stderr);
    let mut line = Vec::new();
    loop {
        line.clear();
        match io::BufRead::read_until(&mut reader, b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&line);
                let text = text.trim_end_matches(['\n', '\r']).to_string();
                let _ = sender.send(Message::Line(Line::Stderr(text)));
            }
        }
    }
    let _ = sender.send(Message::StderrDone);
}

fn forward_stdin(pipe: &mut impl Write) {
    let stdin = io::stdin();
    let mut line = String::new();
    loop {
        line.clear();
        match stdin.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if pipe
                    .write_all(line.as_bytes())
                    .and_then(|()| pipe.flush())
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halt_lines() {
        assert_eq!(
            Halt::parse("halt: all 2 domains shut down cleanly"),
            Some(Halt::Clean { domains: 2 })
        );
        assert_eq!(
            Halt::parse("halt: 1 of 2 domains did not shut down cleanly"),
            Some(Halt::Unclean {
                unclean: 1,
                domains: 2
            })
        );
        assert_eq!(Halt::parse("halt: all two domains shut down cleanly"), None);
        assert_eq!(Halt::parse("halt: everything fine"), None);
        for halt in [
            Halt::Clean { domains: 3 },
            Halt::Unclean {
                unclean: 1,
                domains: 3,
            },
        ] {
            assert_eq!(Halt::parse(&halt.to_string()), Some(halt));
        }
    }

    fn hyp(level: &'static str, message: &str) -> Line {
        Line::Hyp(LogMessage {
            level: Some(level),
            message: message.to_string(),
        })
    }

    #[test]
    fn rendering() {
        assert_eq!(hyp("INFO", "boot").render(false), "[hyp INFO] boot");
        assert_eq!(
            Line::Undecodable(UndecodableFrame { len: 7 }).render(false),
            "[hyp ?] <undecodable frame 7 bytes>"
        );
        assert!(hyp("WARN", "x").render(true).contains("\x1b[33mWARN"));
        assert_eq!(Line::Console("(a) x".into()).render(true), "(a) x");
    }

    #[test]
    fn panic_lines() {
        assert!(hyp("ERROR", "panicked at src/x.rs:1: oops").is_panic());
        assert!(hyp("ERROR", "panic: oops").is_panic());
        assert!(hyp("ERROR", "hypervisor panic: oops at src/x.rs:1:2").is_panic());
        assert!(!hyp("INFO", "no panic here").is_panic());
        assert!(!Line::Console("panic".into()).is_panic());
    }

    fn outcome(lines: Vec<Line>) -> Outcome {
        use std::os::unix::process::ExitStatusExt;
        Outcome {
            status: Some(ExitStatus::from_raw(0)),
            timed_out: false,
            stopped: false,
            parked: false,
            lines,
            undecodable: 0,
            elapsed: Duration::from_secs(1),
        }
    }

    #[test]
    fn verdicts() {
        let clean = outcome(vec![
            hyp("INFO", "boot"),
            Line::Console("(a) hi".into()),
            hyp("INFO", "halt: all 1 domains shut down cleanly"),
            Line::Console("trailing text".into()),
        ]);
        assert_eq!(clean.check_clean_halt(), Ok(1));
        let unclean = outcome(vec![hyp(
            "WARN",
            "halt: 1 of 2 domains did not shut down cleanly",
        )]);
        assert!(unclean.check_clean_halt().is_err());
        assert_eq!(unclean.check_run(), Ok(()));
        let not_last = outcome(vec![
            hyp("INFO", "halt: all 1 domains shut down cleanly"),
            hyp("INFO", "more"),
        ]);
        assert!(not_last.check_clean_halt().is_err());
        let panicked = outcome(vec![
            hyp("ERROR", "panicked at x"),
            hyp("INFO", "halt: all 1 domains shut down cleanly"),
        ]);
        assert!(panicked.check_clean_halt().unwrap_err().contains("panic"));
        let mut timed_out = outcome(vec![]);
        timed_out.timed_out = true;
        assert!(timed_out.check_run().unwrap_err().contains("timed out"));
    }

    #[test]
    fn input_script_waits_for_every_string_then_sends_in_order() {
        let mut script = InputScript::new(&[
            InputStep::new(&["(a) ready", "(b) ready"], "A\r"),
            InputStep::new(&[], [1, 1, 1]),
            InputStep::new(&["goes to domain b"], "B\r"),
        ]);
        assert_eq!(script.advance(None), b"");
        assert_eq!(script.advance(Some("(b) ready")), b"");
        assert_eq!(script.advance(Some("(a) ready")), b"A\r\x01\x01\x01");
        assert!(!script.finished());
        assert_eq!(script.advance(Some("(a) ready")), b"");
        assert_eq!(
            script.advance(Some("[hyp INFO] console input now goes to domain b (...)")),
            b"B\r"
        );
        assert!(script.finished());
        assert_eq!(script.advance(Some("anything")), b"");
        // Nothing to wait for: sent at the start.
        let mut script = InputScript::new(&[InputStep::new(&[], "x")]);
        assert_eq!(script.advance(None), b"x");
    }

    #[test]
    fn command_line() {
        let mut config = RunConfig::new(Machine::VirtGicv3, "/x/hyp.img");
        config.initrd = Some("/x/pack.bin".into());
        config.icount = true;
        let args = config.args().unwrap();
        let joined = args.join(" ");
        assert!(
            joined.contains("-kernel /x/hyp.img -initrd /x/pack.bin"),
            "{joined}"
        );
        assert!(joined.contains("-icount shift=0,sleep=off"), "{joined}");
        assert!(joined.contains("-serial stdio"), "{joined}");
    }
}
