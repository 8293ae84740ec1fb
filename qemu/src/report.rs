//! Checking a guest's test report.
//!
//! `pv-guest` prints (other lines may come in between and are ignored):
//!
//! ```text
//! running N tests
//! test SCENARIO::CASE ... ok
//! test SCENARIO::CASE ... FAILED
//! P passed, F failed
//! ```
//!
//! [`Report::parse`] reads such lines (without any `(NAME) ` console prefix: see
//! [`domain_lines`]), and [`Report::check`] decides whether the report passes: the closing
//! line is present, `F == 0`, `P` equals the number of `ok` lines, and `N` (when a
//! `running` line appeared) equals the number of tests reported.

use std::collections::BTreeSet;

/// The outcome of one test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestResult {
    /// `SCENARIO::CASE`.
    pub name: String,
    /// Whether it printed `ok`.
    pub ok: bool,
}

/// A guest's test report as parsed from its console lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// `N` of `running N tests`, if that line appeared.
    pub running: Option<usize>,
    /// Every `test NAME ... ok|FAILED` line, in order.
    pub results: Vec<TestResult>,
    /// `(P, F)` of the closing `P passed, F failed` line, if it appeared.
    pub summary: Option<(usize, usize)>,
}

impl Report {
    /// Parses a guest's console lines. A `running N tests` line starts a new report
    /// (anything before it is forgotten); lines after the closing line are ignored.
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Report {
        let mut report = Report::default();
        for line in lines {
            let line = line.trim_end();
            if let Some(count) = parse_running(line) {
                report = Report {
                    running: Some(count),
                    ..Report::default()
                };
            } else if report.summary.is_some() {
                continue;
            } else if let Some(result) = parse_result(line) {
                report.results.push(result);
            } else if let Some(summary) = parse_summary(line) {
                report.summary = Some(summary);
            }
        }
        report
    }

    /// Number of `ok` lines.
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|result| result.ok).count()
    }

    /// The names of all reported tests.
    pub fn test_names(&self) -> BTreeSet<&str> {
        self.results
            .iter()
            .map(|result| result.name.as_str())
            .collect()
    }

    /// Whether the report passes; on failure, the reason.
    pub fn check(&self) -> Result<(), String> {
        let failed: Vec<&str> = self
            .results
            .iter()
            .filter(|result| !result.ok)
            .map(|result| result.name.as_str())
            .collect();
        if !failed.is_empty() {
            return Err(format!("failed tests: {}", failed.join(", ")));
        }
        let Some((passed, failed)) = self.summary else {
            return Err(match self.running {
                Some(n) => format!(
                    "no closing `P passed, F failed` line (after `running {n} tests`, \
                     {} reported)",
                    self.results.len()
                ),
                None => "no test report (no `running N tests` and no closing line)".into(),
            });
        };
        if failed != 0 {
            return Err(format!("report says {passed} passed, {failed} failed"));
        }
        if passed != self.passed() {
            return Err(format!(
                "report says {passed} passed but {} `ok` lines were seen",
                self.passed()
            ));
        }
        if let Some(running) = self.running {
            if running != self.results.len() || running != passed + failed {
                return Err(format!(
                    "`running {running} tests` but {} were reported ({passed} passed, \
                     {failed} failed)",
                    self.results.len()
                ));
            }
        }
        Ok(())
    }
}

fn parse_running(line: &str) -> Option<usize> {
    let count = line.strip_prefix("running ")?.strip_suffix(" tests")?;
    parse_count(count)
}

fn parse_result(line: &str) -> Option<TestResult> {
    let rest = line.strip_prefix("test ")?;
    let (name, ok) = if let Some(name) = rest.strip_suffix(" ... ok") {
        (name, true)
    } else {
        (rest.strip_suffix(" ... FAILED")?, false)
    };
    if name.is_empty() || name.contains(char::is_whitespace) {
        return None;
    }
    Some(TestResult {
        name: name.to_string(),
        ok,
    })
}

fn parse_summary(line: &str) -> Option<(usize, usize)> {
    let (passed, failed) = line.split_once(" passed, ")?;
    let failed = failed.strip_suffix(" failed")?;
    Some((parse_count(passed)?, parse_count(failed)?))
}

fn parse_count(text: &str) -> Option<usize> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// The console lines of domain `name`: every line starting `(name) `, with that prefix
/// removed (a line that is exactly `(name)` gives an empty line).
pub fn domain_lines<'a>(lines: impl IntoIterator<Item = &'a str>, name: &str) -> Vec<&'a str> {
    let prefix = format!("({name})");
    lines
        .into_iter()
        .filter_map(|line| {
            let rest = line.strip_prefix(prefix.as_str())?;
            if rest.is_empty() {
                Some(rest)
            } else {
                rest.strip_prefix(' ')
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Report {
        Report::parse(text.lines())
    }

    const GOOD: &str = "boot noise\nrunning 2 tests\nhello from a test\n\
                        test hello::console ... ok\n  detail line\ntest errors::bad_op ... ok\n\
                        2 passed, 0 failed\n";

    #[test]
    fn good_report_passes() {
        let report = parse(GOOD);
        assert_eq!(report.running, Some(2));
        assert_eq!(report.summary, Some((2, 0)));
        assert_eq!(report.check(), Ok(()));
        assert_eq!(
            report.test_names().into_iter().collect::<Vec<_>>(),
            vec!["errors::bad_op", "hello::console"]
        );
    }

    #[test]
    fn running_line_is_optional() {
        let report = parse("test a::b ... ok\n1 passed, 0 failed\n");
        assert_eq!(report.running, None);
        assert_eq!(report.check(), Ok(()));
    }

    #[test]
    fn failed_test_fails() {
        let report = parse(
            "running 2 tests\ntest a::x ... ok\n  a::y: expected 1, got 2\n\
             test a::y ... FAILED\n1 passed, 1 failed\n",
        );
        let reason = report.check().unwrap_err();
        assert!(reason.contains("a::y"), "{reason}");
    }

    #[test]
    fn nonzero_failed_count_fails() {
        let report = parse("running 1 tests\ntest a::x ... ok\n1 passed, 1 failed\n");
        assert!(report.check().unwrap_err().contains("1 failed"));
    }

    #[test]
    fn missing_closing_line_fails() {
        let report = parse("running 2 tests\ntest a::x ... ok\n");
        assert!(report.check().unwrap_err().contains("no closing"));
        assert!(parse("").check().unwrap_err().contains("no test report"));
    }

    #[test]
    fn passed_count_must_match_ok_lines() {
        let report = parse("running 2 tests\ntest a::x ... ok\n2 passed, 0 failed\n");
        assert!(report.check().is_err());
    }

    #[test]
    fn running_count_must_match() {
        let report =
            parse("running 3 tests\ntest a::x ... ok\ntest a::y ... ok\n2 passed, 0 failed\n");
        assert!(report.check().unwrap_err().contains("running 3 tests"));
    }

    #[test]
    fn zero_tests_pass() {
        assert_eq!(
            parse("running 0 tests\n0 passed, 0 failed\n").check(),
            Ok(())
        );
    }

    #[test]
    fn lines_after_summary_are_ignored_and_new_run_resets() {
        let report = parse(&format!("{GOOD}test late::one ... FAILED\n"));
        assert_eq!(report.check(), Ok(()));
        let report = parse(&format!("running 5 tests\ntest a::x ... FAILED\n{GOOD}"));
        assert_eq!(report.check(), Ok(()));
    }

    #[test]
    fn near_misses_are_not_report_lines() {
        let report = parse(
            "running many tests\ntest a b ... ok\ntest ... ok\ntesting x ... ok\n\
             x passed, 0 failed\n1 passed, 0 failed!\n",
        );
        assert_eq!(report, Report::default());
    }

    #[test]
    fn trailing_carriage_return_is_tolerated() {
        let report = Report::parse([
            "running 1 tests\r",
            "test a::x ... ok\r",
            "1 passed, 0 failed\r",
        ]);
        assert_eq!(report.check(), Ok(()));
    }

    #[test]
    fn domain_prefix_is_stripped() {
        let lines = [
            "(pv-a) running 1 tests",
            "(pv-b) other",
            "(pv-a)",
            "(pv-a)   indented",
            "(pv-ab) not mine",
            "no prefix",
        ];
        assert_eq!(
            domain_lines(lines, "pv-a"),
            vec!["running 1 tests", "", "  indented"]
        );
    }
}
