//! Integration scenarios of domain lifecycle under faults and of malformed input:
//! `crash-restart` (a domain restarted 100 times with no leak, its peer kept running)
//! and `corrupt-pack` (a deliberately broken boot pack refused at boot, no domain
//! started).

use std::time::Duration;

use qemu::runner::{Halt, Outcome};
use qemu::Machine;

use crate::images::Images;
use crate::test::{boot_system, domain_report, judge, Verdict};

/// The system `crash-restart` boots.
const CRASH_RESTART_SYSTEM: &str = "examples/systems/crash-restart.toml";
/// Its `max_restarts`.
const MAX_RESTARTS: u32 = 100;

/// `crash-restart`: `examples/systems/crash-restart.toml`. The crasher is restarted
/// exactly 100 times, each restart logged with the free memory after the teardown and
/// after the rebuild, both the same every time (no leak); it crashes in every way (stage-2
/// fault, unhandled exception, SHUTDOWN_crash, watchdog); the 101st crash destroys it with
/// the free memory back at the same figure. The peer passes its tests (it saw the crasher
/// come and go and its memory is intact), and the run ends `halt: 1 of 2 ...`.
pub(crate) fn crash_restart(images: &Images, machine: Machine, timeout: Duration) -> Verdict {
    let outcome = match boot_system(images, machine, timeout, CRASH_RESTART_SYSTEM, false) {
        Ok((_, outcome)) => outcome,
        Err(verdict) => return verdict,
    };
    let check = || -> Result<(), String> {
        outcome.check_run()?;
        domain_report(&outcome, "peer")?;
        let hyp: Vec<&str> = outcome.hyp_messages().collect();
        let console: Vec<&str> = outcome.console_lines().collect();
        let figures = check_restart_log(&hyp, &console, "crasher", MAX_RESTARTS)?;
        println!(
            "    crash-restart: {MAX_RESTARTS} restarts, free bytes {} after every teardown, {} after every rebuild",
            figures.0, figures.1
        );
        check_halt(&outcome, 1, 2)
    };
    judge(&outcome, check())
}

/// One deliberately broken boot pack and the refusal it must cause.
struct Corruption {
    /// What is wrong, for messages.
    what: &'static str,
    /// The hypervisor's line that must appear.
    refusal: &'static str,
}

/// `corrupt-pack`: boot packs the hypervisor must refuse before starting any domain,
/// written here behind the encoder's back: a flipped payload byte (checksum mismatch), a
/// second domain that asks for more memory than the machine has, and a second domain
/// whose kernel claims more memory than the domain has (both valid as packs, refused by
/// the hypervisor's whole-pack check). Each run logs `boot pack refused: ...` and
/// `boot refused: ...`, builds no domain (no `domain NAME: N MiB at` line, no guest
/// output) and powers off without a panic.
pub(crate) fn corrupt_pack(images: &Images, machine: Machine, timeout: Duration) -> Verdict {
    let cases = [
        Corruption {
            what: "a payload byte flipped",
            refusal: "boot pack refused: boot pack checksum mismatch",
        },
        Corruption {
            what: "more memory than the machine has",
            refusal: "boot pack refused: the domains need more memory than the machine has free",
        },
        Corruption {
            what: "a kernel larger than its domain",
            refusal: "boot pack refused: domain second: image, initrd and device tree do not fit the domain's memory",
        },
    ];
    for (index, case) in cases.iter().enumerate() {
        let pack = match corrupt_pack_bytes(images, index) {
            Ok(pack) => pack,
            Err(error) => {
                return Verdict::Fail {
                    reason: format!("writing the pack with {}: {error:#}", case.what),
                    output: Vec::new(),
                }
            }
        };
        let path = images.bootpack.with_file_name("corrupt-pack.bin");
        if let Err(error) = std::fs::write(&path, pack) {
            return Verdict::Fail {
                reason: format!("writing {}: {error}", path.display()),
                output: Vec::new(),
            };
        }
        let outcome = match crate::run::boot_pack_file(
            images,
            &path,
            machine,
            (false, timeout, false),
            &[],
        ) {
            Ok(outcome) => outcome,
            Err(error) => return crate::test::error_verdict(error),
        };
        let hyp: Vec<&str> = outcome.hyp_messages().collect();
        let console: Vec<&str> = outcome.console_lines().collect();
        let checked = outcome
            .check_run()
            .and_then(|()| check_refusal(&hyp, &console, case.refusal))
            .map_err(|reason| format!("pack with {}: {reason}", case.what));
        if checked.is_err() {
            return judge(&outcome, checked);
        }
    }
    Verdict::Pass
}

/// The boot pack of corruption case `case`: two small `pv-guest` domains, then broken.
fn corrupt_pack_bytes(images: &Images, case: usize) -> anyhow::Result<Vec<u8>> {
    use hyp::bootpack::{encode, encoded_size, DomainSettings, DomainSpec};
    let mut image = std::fs::read(&images.guest_img)?;
    let mut second_memory = 32;
    match case {
        1 => second_memory = 4096,
        2 => image[16..24].copy_from_slice(&(64u64 << 20).to_le_bytes()), // image_size
        _ => {}
    }
    let good_image = std::fs::read(&images.guest_img)?;
    let specs = [
        DomainSpec {
            name: "first",
            memory_mib: 32,
            vcpus: 1,
            image: &good_image,
            initrd: &[],
            cmdline: "hello",
            settings: DomainSettings::default(),
        },
        DomainSpec {
            name: "second",
            memory_mib: second_memory,
            vcpus: 1,
            image: &image,
            initrd: &[],
            cmdline: "hello",
            settings: DomainSettings::default(),
        },
    ];
    let size = encode_size(encoded_size(&specs, &[]))?;
    let mut pack = vec![0u8; size];
    let written =
        encode(&specs, &[], &mut pack).map_err(|error| anyhow::anyhow!(error.describe()))?;
    pack.truncate(written);
    if case == 0 {
        // Past the header, the entries and the channel table: in the first image.
        let last = pack.len() - 1;
        pack[last] ^= 0xff;
    }
    Ok(pack)
}

fn encode_size(size: Result<usize, hyp::bootpack::PackError>) -> anyhow::Result<usize> {
    size.map_err(|error| anyhow::anyhow!(error.describe()))
}

/// A boot refused with `refusal` and nothing started.
pub(crate) fn check_refusal(hyp: &[&str], console: &[&str], refusal: &str) -> Result<(), String> {
    if !hyp.iter().any(|line| line.starts_with(refusal)) {
        return Err(format!("no hypervisor line `{refusal}`"));
    }
    if !hyp.iter().any(|line| line.starts_with("boot refused: ")) {
        return Err("no `boot refused: ...` line".to_string());
    }
    if let Some(started) = hyp
        .iter()
        .find(|line| line.contains(" MiB at ") || line.starts_with("running on "))
    {
        return Err(format!("a domain was built or started: `{started}`"));
    }
    if let Some(line) = console.first() {
        return Err(format!("a guest printed `{line}`"));
    }
    Ok(())
}

fn check_halt(outcome: &Outcome, unclean: usize, domains: usize) -> Result<(), String> {
    let expected = Halt::Unclean { unclean, domains };
    match outcome.final_halt() {
        Some(halt) if halt == expected => Ok(()),
        Some(halt) => Err(format!("expected `{expected}`, got `{halt}`")),
        None => Err(format!("no final `{expected}` line")),
    }
}

/// The number after `key ` in `text` (up to the next space or comma).
fn number_after(text: &str, key: &str) -> Option<u64> {
    let start = text.find(key)? + key.len();
    let digits: String = text[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Checks the hypervisor log (`hyp`) and the console of a run where domain `name` was
/// restarted `max` times: restarts 1..=max logged in order, equal free-memory figures,
/// every way of crashing seen, one incarnation report per boot, and the final
/// destruction. Returns the free bytes after teardown and after rebuild.
pub(crate) fn check_restart_log(
    hyp: &[&str],
    console: &[&str],
    name: &str,
    max: u32,
) -> Result<(u64, u64), String> {
    let restarted = format!("domain {name} restarted after a crash: restart ");
    let mut after_teardown = Vec::new();
    let mut after_rebuild = Vec::new();
    for (expected, line) in (1..).zip(hyp.iter().filter(|line| line.starts_with(&restarted))) {
        let number = number_after(line, "restart ");
        let of = number_after(line, " of ");
        if number != Some(expected) || of != Some(u64::from(max)) {
            return Err(format!(
                "restart line {expected} should say `restart {expected} of {max}`: `{line}`"
            ));
        }
        let teardown = number_after(line, "free bytes ");
        let rebuild = line
            .find("after teardown, ")
            .and_then(|at| number_after(&line[at..], "after teardown, "));
        match (teardown, rebuild) {
            (Some(teardown), Some(rebuild)) => {
                after_teardown.push(teardown);
                after_rebuild.push(rebuild);
            }
            _ => return Err(format!("no free-bytes figures in `{line}`")),
        }
    }
    if after_teardown.len() != max as usize {
        return Err(format!(
            "expected {max} `{restarted}N of {max}` lines, got {}",
            after_teardown.len()
        ));
    }
    let final_line = format!("domain {name} not restarted: {max} restart(s) done");
    let Some(final_free) = hyp
        .iter()
        .find(|line| line.starts_with(&final_line))
        .and_then(|line| number_after(line, "free bytes "))
    else {
        return Err(format!("no `{final_line}, ... free bytes N ...` line"));
    };
    after_teardown.push(final_free);
    let (first_teardown, first_rebuild) = (after_teardown[0], after_rebuild[0]);
    if let Some((index, free)) = after_teardown
        .iter()
        .enumerate()
        .find(|(_, free)| **free != first_teardown)
    {
        return Err(format!(
            "free bytes after teardown {index}: {free}, after the first: {first_teardown} (a leak)"
        ));
    }
    if let Some((index, free)) = after_rebuild
        .iter()
        .enumerate()
        .find(|(_, free)| **free != first_rebuild)
    {
        return Err(format!(
            "free bytes after rebuild {}: {free}, after the first: {first_rebuild} (a leak)",
            index + 1
        ));
    }
    // Every way of crashing, and exactly max + 1 endings.
    let crashed = format!("domain {name} crashed: ");
    let ways = [
        (format!("{crashed}stage-2"), "a stage-2 fault"),
        (format!("domain {name} shut down: crash"), "SHUTDOWN_crash"),
        (
            format!("domain {name}: watchdog 1 expired"),
            "a watchdog expiry",
        ),
    ];
    for (prefix, what) in &ways {
        if !hyp.iter().any(|line| line.starts_with(prefix.as_str())) {
            return Err(format!("{name} never ended by {what} (`{prefix}`)"));
        }
    }
    let endings = hyp
        .iter()
        .filter(|line| {
            line.starts_with(&crashed) || line.starts_with(&format!("domain {name} shut down: "))
        })
        .count();
    if endings != max as usize + 1 {
        return Err(format!(
            "expected {} endings of {name}, got {endings}",
            max + 1
        ));
    }
    let prefix = format!("({name}) ");
    let unhandled = console
        .iter()
        .any(|line| line.starts_with(&prefix) && line.contains("unexpected exception"));
    if !unhandled {
        return Err(format!("{name} never reported an unhandled exception"));
    }
    for incarnation in 0..=max {
        let wanted = format!("{prefix}crashloop: incarnation {incarnation},");
        if !console.iter().any(|line| line.starts_with(&wanted)) {
            return Err(format!("no console line `{wanted} ...`"));
        }
    }
    if let Some(failed) = console
        .iter()
        .find(|line| line.starts_with(&prefix) && line.contains("FAILED"))
    {
        return Err(format!("{name}: `{failed}`"));
    }
    Ok((first_teardown, first_rebuild))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(max: u32, leak_at: Option<u32>) -> (Vec<String>, Vec<String>) {
        let mut hyp = Vec::new();
        let mut console = Vec::new();
        for incarnation in 0..=max {
            console.push(format!(
                "(c) crashloop: incarnation {incarnation}, crashing by X"
            ));
            match incarnation % 3 {
                0 => hyp.push("domain c crashed: stage-2 translation fault".to_string()),
                1 => hyp.push("domain c shut down: crash".to_string()),
                _ => {
                    hyp.push("domain c: watchdog 1 expired".to_string());
                    hyp.push("domain c shut down: watchdog".to_string());
                }
            }
            let leak = if leak_at == Some(incarnation + 1) {
                4096
            } else {
                0
            };
            if incarnation < max {
                hyp.push(format!(
                    "domain c restarted after a crash: restart {} of {max}, free bytes {} after teardown, {} after rebuild",
                    incarnation + 1,
                    1_000_000 - leak,
                    900_000 - leak
                ));
            }
        }
        console.push("(c) unexpected exception ESR=0x2000000".to_string());
        hyp.push(format!(
            "domain c not restarted: {max} restart(s) done, max_restarts {max}; free bytes 1000000 after teardown"
        ));
        (hyp, console)
    }

    fn check(hyp: &[String], console: &[String], max: u32) -> Result<(u64, u64), String> {
        let hyp: Vec<&str> = hyp.iter().map(String::as_str).collect();
        let console: Vec<&str> = console.iter().map(String::as_str).collect();
        check_restart_log(&hyp, &console, "c", max)
    }

    #[test]
    fn refusal_checks() {
        let refused = ["boot pack refused: x y", "boot refused: z"];
        assert_eq!(check_refusal(&refused, &[], "boot pack refused: x"), Ok(()));
        assert!(check_refusal(&refused, &[], "boot pack refused: w").is_err());
        assert!(check_refusal(&refused[..1], &[], "boot pack refused: x").is_err());
        let built = [
            "boot pack refused: x",
            "domain a: 32 MiB at 0x40000000",
            "boot refused: z",
        ];
        assert!(check_refusal(&built, &[], "boot pack refused: x").is_err());
        assert!(check_refusal(&refused, &["(a) hello"], "boot pack refused: x").is_err());
    }

    #[test]
    fn a_clean_restart_log_passes() {
        let (hyp, console) = run(6, None);
        assert_eq!(check(&hyp, &console, 6), Ok((1_000_000, 900_000)));
    }

    #[test]
    fn leaks_missing_restarts_and_missing_ways_fail() {
        let (hyp, console) = run(6, Some(4));
        let error = check(&hyp, &console, 6).unwrap_err();
        assert!(error.contains("a leak"), "{error}");
        let (mut hyp, console) = run(6, None);
        hyp.retain(|line| !line.contains("restart 3 of"));
        assert!(check(&hyp, &console, 6).is_err());
        let (mut hyp, console) = run(6, None);
        hyp.retain(|line| !line.contains("watchdog"));
        let error = check(&hyp, &console, 6).unwrap_err();
        assert!(error.contains("watchdog"), "{error}");
        let (hyp, mut console) = run(6, None);
        console.retain(|line| !line.contains("incarnation 6,"));
        assert!(check(&hyp, &console, 6).is_err());
        let (mut hyp, console) = run(6, None);
        hyp.pop();
        let error = check(&hyp, &console, 6).unwrap_err();
        assert!(error.contains("not restarted"), "{error}");
    }
}
