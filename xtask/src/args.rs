//! Command-line parsing for `cargo xtask` (hand-rolled: a few flags, one structured value).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use qemu::Machine;

/// Guest RAM when a `--guest` spec gives no `mem=`.
pub const DEFAULT_MEMORY_MIB: u32 = 32;
/// vCPUs when a `--guest` spec gives no `vcpus=`.
pub const DEFAULT_VCPUS: u32 = 1;
/// Default QEMU timeout of `run` and of each `test` scenario.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// One `--guest IMAGE[,initrd=FILE][,mem=MiB][,vcpus=N][,name=NAME][,cmdline=TEXT]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestSpec {
    /// The kernel image.
    pub image: PathBuf,
    /// The initial ramdisk, if any.
    pub initrd: Option<PathBuf>,
    /// Guest RAM in MiB.
    pub memory_mib: u32,
    /// Number of vCPUs.
    pub vcpus: u32,
    /// The domain name; `None` means "from the image file name".
    pub name: Option<String>,
    /// The kernel command line.
    pub cmdline: String,
}

impl GuestSpec {
    /// Parses a spec. `cmdline=` must come last and takes the rest of the argument,
    /// commas, spaces and `=` included. Image paths cannot contain commas.
    pub fn parse(spec: &str) -> Result<GuestSpec> {
        let (image, mut rest) = match spec.split_once(',') {
            Some((image, rest)) => (image, Some(rest)),
            None => (spec, None),
        };
        if image.is_empty() {
            bail!("--guest {spec:?}: the image path is missing (IMAGE[,key=value]...)");
        }
        let mut guest = GuestSpec {
            image: PathBuf::from(image),
            initrd: None,
            memory_mib: DEFAULT_MEMORY_MIB,
            vcpus: DEFAULT_VCPUS,
            name: None,
            cmdline: String::new(),
        };
        let mut seen: Vec<&str> = Vec::new();
        while let Some(text) = rest {
            if let Some(cmdline) = text.strip_prefix("cmdline=") {
                guest.cmdline = cmdline.to_string();
                break;
            }
            let (option, next) = match text.split_once(',') {
                Some((option, next)) => (option, Some(next)),
                None => (text, None),
            };
            rest = next;
            let Some((key, value)) = option.split_once('=') else {
                bail!("--guest {spec:?}: {option:?} is not key=value (keys: initrd, mem, vcpus, name, cmdline)");
            };
            if seen.contains(&key) {
                bail!("--guest {spec:?}: {key}= is given twice");
            }
            seen.push(key);
            match key {
                "initrd" if !value.is_empty() => guest.initrd = Some(PathBuf::from(value)),
                "mem" => guest.memory_mib = parse_positive(spec, key, value)?,
                "vcpus" => guest.vcpus = parse_positive(spec, key, value)?,
                "name" if !value.is_empty() => guest.name = Some(value.to_string()),
                "initrd" | "name" => bail!("--guest {spec:?}: {key}= needs a value"),
                _ => bail!(
                    "--guest {spec:?}: unknown key {key:?} (keys: initrd, mem, vcpus, name, cmdline)"
                ),
            }
        }
        Ok(guest)
    }
}

fn parse_positive(spec: &str, key: &str, value: &str) -> Result<u32> {
    match value.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!("--guest {spec:?}: {key}={value:?} is not a positive whole number"),
    }
}

/// Domain names for `guests`: the given name, else the image's file stem made unique
/// with `-2`, `-3`, ... Explicit names must be unique.
pub fn domain_names(guests: &[GuestSpec]) -> Result<Vec<String>> {
    let mut taken: Vec<String> = Vec::new();
    for guest in guests {
        if let Some(name) = &guest.name {
            if taken.contains(name) {
                bail!("two guests are named {name:?}");
            }
            taken.push(name.clone());
        }
    }
    let mut names = Vec::new();
    for guest in guests {
        let name = match &guest.name {
            Some(name) => name.clone(),
            None => {
                let stem = guest
                    .image
                    .file_stem()
                    .map(|stem| stem.to_string_lossy().into_owned())
                    .filter(|stem| !stem.is_empty())
                    .unwrap_or_else(|| "guest".to_string());
                let mut candidate = stem.clone();
                let mut n = 2;
                while taken.contains(&candidate) {
                    candidate = format!("{stem}-{n}");
                    n += 1;
                }
                taken.push(candidate.clone());
                candidate
            }
        };
        names.push(name);
    }
    Ok(names)
}

/// Options of `cargo xtask run`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunArgs {
    /// The machine profile.
    pub machine: Machine,
    /// The guests; empty (and no `config`) means the demo system.
    pub guests: Vec<GuestSpec>,
    /// A system configuration file (`--config`); excludes `guests`.
    pub config: Option<PathBuf>,
    /// Deterministic virtual time.
    pub icount: bool,
    /// QEMU timeout.
    pub timeout: Duration,
    /// `--linux`: the Linux guest beside a pv-guest domain (`crate::linux::system`).
    pub linux: bool,
}

/// Default QEMU timeout of `run --linux`: long enough for an interactive session.
pub const LINUX_RUN_TIMEOUT: Duration = Duration::from_secs(3600);

/// Options of `cargo xtask test`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestArgs {
    /// Machines to run the integration scenarios on.
    pub machines: Vec<Machine>,
    /// Skip the real-Xen comparison.
    pub no_xen: bool,
    /// QEMU timeout per scenario.
    pub timeout: Duration,
    /// Only these integration scenarios, without the host steps (empty: everything).
    pub scenarios: Vec<String>,
}

/// Options of `cargo xtask bench`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchArgs {
    /// `bench quick` (fewer repetitions) on our hypervisor only.
    pub quick: bool,
    /// Rewrite `bench/baseline.json` instead of comparing with it.
    pub update_baseline: bool,
    /// Do not run Xen.
    pub no_xen: bool,
    /// The machines (GIC versions) to measure on.
    pub machines: Vec<Machine>,
    /// QEMU timeout of each run on our hypervisor.
    pub timeout: Duration,
}

/// Options of `cargo xtask fuzz-guest`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuzzGuestArgs {
    /// The generator's seed.
    pub seed: u64,
    /// Hypercalls (iterations) to make.
    pub iterations: u64,
    /// Where to run.
    pub machine: Machine,
    /// QEMU timeout (`None`: scaled with the iterations).
    pub timeout: Option<Duration>,
}

/// Options of `cargo xtask fuzz-host`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuzzHostArgs {
    /// The fuzz targets to run (empty: all of them, one after the other).
    pub targets: Vec<String>,
    /// Run time of each target.
    pub seconds: u64,
    /// Run the target once on this input (a crash file) instead of fuzzing.
    pub reproduce: Option<PathBuf>,
}

/// Default run time of each target under `cargo xtask fuzz-host`.
pub const DEFAULT_FUZZ_SECONDS: u64 = 600;

/// A parsed `cargo xtask` command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `build`.
    Build,
    /// `run`.
    Run(RunArgs),
    /// `test`.
    Test(TestArgs),
    /// `bench`.
    Bench(BenchArgs),
    /// `fuzz-guest`.
    FuzzGuest(FuzzGuestArgs),
    /// `sdcard DIR [--config FILE]`.
    Sdcard {
        /// Where the boot partition's files go.
        dir: PathBuf,
        /// The system to put on it (the demo system without one).
        config: Option<PathBuf>,
    },
    /// `fuzz-host`.
    FuzzHost(FuzzHostArgs),
    /// `help`, `--help`, `-h`.
    Help,
}

/// The usage text.
pub const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  build   build hyp, pv-guest and examples/minimal-guest into target/images/*.{img,elf}
  run     build, write target/images/bootpack.bin and boot it under QEMU
            --machine virt-gicv3|virt-gicv2|raspi4b   (default virt-gicv3)
            --guest IMAGE[,initrd=FILE][,mem=MiB][,vcpus=N][,name=NAME][,cmdline=TEXT]
                    (repeatable; cmdline= comes last and takes the rest; default:
                    the demo system: pv-a (default tests) and ping/pong exchanging events)
            --config FILE        boot the system a TOML file describes (domains and
                                 pre-connected event channels; docs/configuration.md,
                                 examples/systems/); not with --guest
            --linux              Debian's arm64 Linux kernel (fetched once into HYP_CACHE)
                                 with a busybox initramfs, 256 MiB and 2 vCPUs, beside a
                                 pv-guest domain; ends in a shell on hvc0 (type Ctrl-A
                                 three times to switch the console to it); not with
                                 --guest or --config (docs/guests/linux.md)
            --icount             deterministic virtual time (-icount shift=0,sleep=off)
            --timeout SECONDS    kill QEMU after this long (default 120; 3600 with --linux)
          exits 0 only when the hypervisor ends with `halt: all N domains shut down cleanly`
  test    host unit tests, image build, integration scenarios under QEMU, and the
          comparison with real Xen; ends with `N passed, M failed`
            --machine NAME       run the scenarios on this machine only (repeatable;
                                 default virt-gicv3, virt-gicv2 and raspi4b)
            --no-xen             skip the xen-conformance scenario
            --timeout SECONDS    per-scenario QEMU timeout (default 120)
            --scenario NAME      run only this integration scenario, and no host step
                                 (repeatable)
  bench   micro-benchmarks (pv-guest `bench`) under -icount shift=0,sleep=off, on our
          hypervisor and as dom0 of Xen 4.17 (run-on-xen), GICv3 and GICv2: prints the
          table (ns = instructions per operation, ours/Xen, the goals of issue 8), the
          image size and lines of Rust in hyp/; writes target/bench/results.json and
          results.svg; fails if a figure is more than 5 % worse than bench/baseline.json
            --quick              `bench quick` (fewer repetitions), our hypervisor only
                                 (the CI regression gate; quick figures have their own
                                 baseline section)
            --update-baseline    write this run's figures to bench/baseline.json instead
                                 of comparing
            --no-xen             our hypervisor only
            --machine NAME       virt-gicv3 or virt-gicv2 (repeatable; default both)
            --timeout SECONDS    QEMU timeout per run on our hypervisor (default 300)
  fuzz-guest  hypercall fuzzing from inside a guest, beside two victim domains
          (examples/systems/fuzz-guest.toml; docs/security.md); passes when every domain
          passes and shuts down cleanly
            --seed N             the fuzzer's seed (default 1)
            --iterations M       hypercalls to make (default 200000)
            --machine NAME       virt-gicv3, virt-gicv2 or raspi4b (default virt-gicv3)
            --timeout SECONDS    kill QEMU after this long (default 120 + 1 s per 2000
                                 iterations)
  sdcard DIR  write a Raspberry Pi 4 boot partition into DIR: firmware (Debian's
          raspi-firmware), config.txt, bcm2711-rpi-4-b.dtb, the hypervisor and the boot pack
            --config FILE        the system to boot (default: the demo system)
  fuzz-host  host fuzzing with cargo-fuzz (libFuzzer; installed when missing) of the
          parsers and models that take untrusted input (docs/testing.md); new corpus
          entries go to target/fuzz-corpus/TARGET, crashes to fuzz/artifacts/TARGET
            --target NAME        only this target (repeatable; default all: esr,
                                 hypercall_decode, hypercall_dispatch, vgic, dt_reader,
                                 bootpack, system_config)
            --seconds N          run time per target (default 600)
            --reproduce FILE     run one --target once on FILE (a crash input)
  help    this text

environment:
  RASPI4B_DTB   path of bcm2711-rpi-4-b.dtb for --machine raspi4b (default: taken from
                Debian's arm64 kernel package, fetched once into HYP_CACHE)
  HYP_CACHE     where Debian packages are cached (default ~/.cache/hyp)
";

/// Parses the arguments after `cargo xtask`.
pub fn parse(args: &[String]) -> Result<Command> {
    let Some((command, rest)) = args.split_first() else {
        return Ok(Command::Help);
    };
    match command.as_str() {
        "build" => {
            if let Some(extra) = rest.first() {
                bail!("build takes no arguments (got {extra:?})");
            }
            Ok(Command::Build)
        }
        "run" => parse_run(rest).map(Command::Run),
        "test" => parse_test(rest).map(Command::Test),
        "bench" => parse_bench(rest).map(Command::Bench),
        "fuzz-guest" => parse_fuzz_guest(rest).map(Command::FuzzGuest),
        "sdcard" => parse_sdcard(rest),
        "fuzz-host" => parse_fuzz_host(rest).map(Command::FuzzHost),
        "help" | "--help" | "-h" => Ok(Command::Help),
        other => bail!("unknown command {other:?}; see `cargo xtask help`"),
    }
}

/// Iterates over `--flag value` / `--flag=value` arguments.
struct Flags<'a> {
    args: std::slice::Iter<'a, String>,
}

impl<'a> Flags<'a> {
    /// The next flag and, for `--flag=value`, its attached value.
    fn next_flag(&mut self) -> Option<(&'a str, Option<&'a str>)> {
        let arg = self.args.next()?;
        Some(match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value)),
            _ => (arg.as_str(), None),
        })
    }

    fn value(&mut self, flag: &str, attached: Option<&'a str>) -> Result<&'a str> {
        match attached {
            Some(value) => Ok(value),
            None => self
                .args
                .next()
                .map(String::as_str)
                .with_context(|| format!("{flag} needs a value")),
        }
    }
}

fn no_value(flag: &str, attached: Option<&str>) -> Result<()> {
    match attached {
        Some(_) => bail!("{flag} takes no value"),
        None => Ok(()),
    }
}

fn parse_timeout(value: &str) -> Result<Duration> {
    match value.parse::<u64>() {
        Ok(seconds) if seconds > 0 => Ok(Duration::from_secs(seconds)),
        _ => bail!("--timeout {value:?}: expected a positive number of seconds"),
    }
}

fn parse_machine(value: &str) -> Result<Machine> {
    value.parse::<Machine>().map_err(anyhow::Error::msg)
}

fn parse_fuzz_host(args: &[String]) -> Result<FuzzHostArgs> {
    let mut fuzz = FuzzHostArgs {
        targets: Vec::new(),
        seconds: DEFAULT_FUZZ_SECONDS,
        reproduce: None,
    };
    let mut flags = Flags { args: args.iter() };
    while let Some((flag, attached)) = flags.next_flag() {
        match flag {
            "--target" => {
                let target = flags.value(flag, attached)?;
                if !crate::fuzz::TARGETS.contains(&target) {
                    bail!(
                        "fuzz-host: unknown target {target:?}; the targets are {}",
                        crate::fuzz::TARGETS.join(" ")
                    );
                }
                fuzz.targets.push(target.to_string());
            }
            "--seconds" => {
                let value = flags.value(flag, attached)?;
                fuzz.seconds = match value.parse::<u64>() {
                    Ok(seconds) if seconds > 0 => seconds,
                    _ => bail!("--seconds {value:?}: expected a positive number of seconds"),
                };
            }
            "--reproduce" => fuzz.reproduce = Some(PathBuf::from(flags.value(flag, attached)?)),
            other => bail!("fuzz-host: unknown argument {other:?}; see `cargo xtask help`"),
        }
    }
    if fuzz.reproduce.is_some() && fuzz.targets.len() != 1 {
        bail!("fuzz-host: --reproduce needs exactly one --target");
    }
    Ok(fuzz)
}

fn parse_sdcard(args: &[String]) -> Result<Command> {
    let mut dir = None;
    let mut config = None;
    let mut flags = Flags { args: args.iter() };
    while let Some((flag, attached)) = flags.next_flag() {
        match flag {
            "--config" => config = Some(PathBuf::from(flags.value(flag, attached)?)),
            other if other.starts_with("--") => bail!("sdcard: unknown option {other:?}"),
            other if dir.is_none() => dir = Some(PathBuf::from(other)),
            other => bail!("sdcard: one directory only (also got {other:?})"),
        }
    }
    let dir = dir.context("sdcard needs a directory: cargo xtask sdcard DIR")?;
    Ok(Command::Sdcard { dir, config })
}

fn parse_run(args: &[String]) -> Result<RunArgs> {
    let mut run = RunArgs {
        machine: Machine::VirtGicv3,
        guests: Vec::new(),
        config: None,
        icount: false,
        timeout: DEFAULT_TIMEOUT,
        linux: false,
    };
    let mut timeout = None;
    let mut flags = Flags { args: args.iter() };
    while let Some((flag, attached)) = flags.next_flag() {
        match flag {
            "--machine" => run.machine = parse_machine(flags.value(flag, attached)?)?,
            "--linux" => {
                no_value(flag, attached)?;
                run.linux = true;
            }
            "--guest" => run
                .guests
                .push(GuestSpec::parse(flags.value(flag, attached)?)?),
            "--config" => {
                let value = flags.value(flag, attached)?;
                if value.is_empty() {
                    bail!("--config needs a file name");
                }
                if run.config.is_some() {
                    bail!("--config is given twice; one file describes the whole system");
                }
                run.config = Some(PathBuf::from(value));
            }
            "--icount" => {
                no_value(flag, attached)?;
                run.icount = true;
            }
            "--timeout" => timeout = Some(parse_timeout(flags.value(flag, attached)?)?),
            other => bail!("run: unknown argument {other:?}; see `cargo xtask help`"),
        }
    }
    run.timeout = match (timeout, run.linux) {
        (Some(timeout), _) => timeout,
        (None, true) => LINUX_RUN_TIMEOUT,
        (None, false) => DEFAULT_TIMEOUT,
    };
    if run.linux && (run.config.is_some() || !run.guests.is_empty()) {
        bail!(
            "--linux boots its own system (Linux beside pv-guest); to combine Linux with other \
             domains use --config (examples/systems/linux.toml) or --guest \
             target/images/linux.img,initrd=target/images/linux-initramfs.cpio,..."
        );
    }
    if run.config.is_some() && !run.guests.is_empty() {
        bail!(
            "--config and --guest cannot be combined: the configuration file describes every \
             domain (add a [[domain]] table to it instead)"
        );
    }
    Ok(run)
}

fn parse_test(args: &[String]) -> Result<TestArgs> {
    let mut test = TestArgs {
        machines: Vec::new(),
        no_xen: false,
        timeout: DEFAULT_TIMEOUT,
        scenarios: Vec::new(),
    };
    let mut flags = Flags { args: args.iter() };
    while let Some((flag, attached)) = flags.next_flag() {
        match flag {
            "--machine" => {
                let machine = parse_machine(flags.value(flag, attached)?)?;
                if !test.machines.contains(&machine) {
                    test.machines.push(machine);
                }
            }
            "--no-xen" => {
                no_value(flag, attached)?;
                test.no_xen = true;
            }
            "--timeout" => test.timeout = parse_timeout(flags.value(flag, attached)?)?,
            "--scenario" => test
                .scenarios
                .push(flags.value(flag, attached)?.to_string()),
            other => bail!("test: unknown argument {other:?}; see `cargo xtask help`"),
        }
    }
    if test.machines.is_empty() {
        test.machines = vec![Machine::VirtGicv3, Machine::VirtGicv2, Machine::Raspi4b];
    }
    Ok(test)
}

fn parse_fuzz_guest(args: &[String]) -> Result<FuzzGuestArgs> {
    let mut fuzz = FuzzGuestArgs {
        seed: 1,
        iterations: 200_000,
        machine: Machine::VirtGicv3,
        timeout: None,
    };
    let mut flags = Flags { args: args.iter() };
    while let Some((flag, attached)) = flags.next_flag() {
        match flag {
            "--seed" => {
                let value = flags.value(flag, attached)?;
                fuzz.seed = value
                    .parse()
                    .with_context(|| format!("--seed {value:?} is not a number"))?;
            }
            "--iterations" => {
                let value = flags.value(flag, attached)?;
                fuzz.iterations = value
                    .parse()
                    .with_context(|| format!("--iterations {value:?} is not a number"))?;
            }
            "--machine" => fuzz.machine = parse_machine(flags.value(flag, attached)?)?,
            "--timeout" => fuzz.timeout = Some(parse_timeout(flags.value(flag, attached)?)?),
            other => bail!("fuzz-guest: unknown argument {other:?}; see `cargo xtask help`"),
        }
    }
    Ok(fuzz)
}

/// Default QEMU timeout of each `bench` run on our hypervisor.
pub const DEFAULT_BENCH_TIMEOUT: Duration = Duration::from_secs(300);

fn parse_bench(args: &[String]) -> Result<BenchArgs> {
    let mut bench = BenchArgs {
        quick: false,
        update_baseline: false,
        no_xen: false,
        machines: Vec::new(),
        timeout: DEFAULT_BENCH_TIMEOUT,
    };
    let mut flags = Flags { args: args.iter() };
    while let Some((flag, attached)) = flags.next_flag() {
        match flag {
            "--quick" => {
                no_value(flag, attached)?;
                bench.quick = true;
            }
            "--update-baseline" => {
                no_value(flag, attached)?;
                bench.update_baseline = true;
            }
            "--no-xen" => {
                no_value(flag, attached)?;
                bench.no_xen = true;
            }
            "--machine" => {
                let machine = parse_machine(flags.value(flag, attached)?)?;
                if machine == Machine::Raspi4b {
                    bail!(
                        "bench: raspi4b has no Xen to compare with; use virt-gicv3 or virt-gicv2"
                    );
                }
                if !bench.machines.contains(&machine) {
                    bench.machines.push(machine);
                }
            }
            "--timeout" => bench.timeout = parse_timeout(flags.value(flag, attached)?)?,
            other => bail!("bench: unknown argument {other:?}; see `cargo xtask help`"),
        }
    }
    if bench.machines.is_empty() {
        bench.machines = vec![Machine::VirtGicv3, Machine::VirtGicv2];
    }
    Ok(bench)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|arg| arg.to_string()).collect()
    }

    #[test]
    fn image_only() {
        let guest = GuestSpec::parse("target/images/pv-guest.img").unwrap();
        assert_eq!(guest.image, PathBuf::from("target/images/pv-guest.img"));
        assert_eq!(guest.memory_mib, DEFAULT_MEMORY_MIB);
        assert_eq!(guest.vcpus, DEFAULT_VCPUS);
        assert_eq!(guest.name, None);
        assert_eq!(guest.cmdline, "");
        assert_eq!(guest.initrd, None);
    }

    #[test]
    fn all_options() {
        let guest =
            GuestSpec::parse("a.img,initrd=r.cpio,mem=64,vcpus=2,name=web,cmdline=hello").unwrap();
        assert_eq!(guest.initrd, Some(PathBuf::from("r.cpio")));
        assert_eq!(guest.memory_mib, 64);
        assert_eq!(guest.vcpus, 2);
        assert_eq!(guest.name.as_deref(), Some("web"));
        assert_eq!(guest.cmdline, "hello");
    }

    #[test]
    fn cmdline_takes_the_rest() {
        let guest = GuestSpec::parse("a.img,mem=8,cmdline=hello errors x=1,name=y, z").unwrap();
        assert_eq!(guest.cmdline, "hello errors x=1,name=y, z");
        assert_eq!(guest.memory_mib, 8);
        assert_eq!(guest.name, None);
        let guest = GuestSpec::parse("a.img,cmdline=").unwrap();
        assert_eq!(guest.cmdline, "");
        let guest = GuestSpec::parse("a.img,cmdline==,=").unwrap();
        assert_eq!(guest.cmdline, "=,=");
    }

    #[test]
    fn bad_specs_are_refused() {
        for spec in [
            "",
            ",mem=1",
            "a.img,mem=0",
            "a.img,mem=-1",
            "a.img,mem=lots",
            "a.img,vcpus=",
            "a.img,colour=red",
            "a.img,mem",
            "a.img,name=",
            "a.img,mem=1,mem=2",
            "a.img,",
        ] {
            assert!(GuestSpec::parse(spec).is_err(), "{spec:?} accepted");
        }
    }

    #[test]
    fn names_default_to_unique_stems() {
        let specs: Vec<GuestSpec> = ["x/pv.img", "y/pv.img", "pv.img,name=pv-2", "other.bin"]
            .iter()
            .map(|spec| GuestSpec::parse(spec).unwrap())
            .collect();
        assert_eq!(
            domain_names(&specs).unwrap(),
            vec!["pv", "pv-3", "pv-2", "other"]
        );
        let twins: Vec<GuestSpec> = ["a.img,name=n", "b.img,name=n"]
            .iter()
            .map(|spec| GuestSpec::parse(spec).unwrap())
            .collect();
        assert!(domain_names(&twins).is_err());
    }

    #[test]
    fn run_arguments() {
        let Command::Run(run) = parse(&strings(&[
            "run",
            "--machine",
            "virt-gicv2",
            "--guest",
            "a.img,cmdline=one two",
            "--guest=b.img",
            "--icount",
            "--timeout",
            "30",
        ]))
        .unwrap() else {
            panic!("not run");
        };
        assert_eq!(run.machine, Machine::VirtGicv2);
        assert_eq!(run.guests.len(), 2);
        assert_eq!(run.guests[0].cmdline, "one two");
        assert!(run.icount);
        assert_eq!(run.timeout, Duration::from_secs(30));
    }

    #[test]
    fn run_defaults_and_errors() {
        let Command::Run(run) = parse(&strings(&["run"])).unwrap() else {
            panic!("not run");
        };
        assert_eq!(run.machine, Machine::VirtGicv3);
        assert!(run.guests.is_empty());
        assert_eq!(run.timeout, DEFAULT_TIMEOUT);
        for bad in [
            &["run", "--machine", "pc"][..],
            &["run", "--timeout", "0"],
            &["run", "--timeout"],
            &["run", "--guest"],
            &["run", "--icount=yes"],
            &["run", "extra"],
            &["build", "x"],
            &["frobnicate"],
        ] {
            assert!(parse(&strings(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn config_argument() {
        let Command::Run(run) = parse(&strings(&[
            "run",
            "--config",
            "examples/systems/demo.toml",
            "--machine=virt-gicv2",
            "--icount",
        ]))
        .unwrap() else {
            panic!("not run");
        };
        assert_eq!(
            run.config,
            Some(PathBuf::from("examples/systems/demo.toml"))
        );
        assert_eq!(run.machine, Machine::VirtGicv2);
        assert!(run.icount && run.guests.is_empty());
        let both = parse(&strings(&["run", "--config=a.toml", "--guest", "x.img"])).unwrap_err();
        assert!(
            format!("{both:#}").contains("--config and --guest cannot be combined"),
            "{both:#}"
        );
        let twice = parse(&strings(&["run", "--config=a.toml", "--config=b.toml"])).unwrap_err();
        assert!(format!("{twice:#}").contains("given twice"), "{twice:#}");
        assert!(parse(&strings(&["run", "--config"])).is_err());
        assert!(parse(&strings(&["run", "--config="])).is_err());
    }

    #[test]
    fn linux_argument() {
        let Command::Run(run) = parse(&strings(&["run", "--linux"])).unwrap() else {
            panic!("not run");
        };
        assert!(run.linux);
        assert_eq!(run.timeout, LINUX_RUN_TIMEOUT);
        let Command::Run(run) = parse(&strings(&["run", "--timeout=30", "--linux"])).unwrap()
        else {
            panic!("not run");
        };
        assert_eq!(run.timeout, Duration::from_secs(30));
        assert!(parse(&strings(&["run", "--linux", "--guest", "a.img"])).is_err());
        assert!(parse(&strings(&["run", "--linux", "--config", "a.toml"])).is_err());
        assert!(parse(&strings(&["run", "--linux=yes"])).is_err());
    }

    #[test]
    fn test_arguments() {
        let Command::Test(test) = parse(&strings(&["test"])).unwrap() else {
            panic!("not test");
        };
        assert_eq!(
            test.machines,
            vec![Machine::VirtGicv3, Machine::VirtGicv2, Machine::Raspi4b]
        );
        let Command::Test(test) =
            parse(&strings(&["test", "--machine=virt-gicv2", "--no-xen"])).unwrap()
        else {
            panic!("not test");
        };
        assert_eq!(test.machines, vec![Machine::VirtGicv2]);
        assert!(test.no_xen);
        assert!(test.scenarios.is_empty());
        let Command::Test(test) =
            parse(&strings(&["test", "--scenario", "console-input"])).unwrap()
        else {
            panic!("not test");
        };
        assert_eq!(test.scenarios, ["console-input"]);
    }

    #[test]
    fn bench_arguments() {
        let Command::Bench(bench) = parse(&strings(&["bench"])).unwrap() else {
            panic!("not bench");
        };
        assert!(!bench.quick && !bench.update_baseline && !bench.no_xen);
        assert_eq!(bench.machines, vec![Machine::VirtGicv3, Machine::VirtGicv2]);
        assert_eq!(bench.timeout, DEFAULT_BENCH_TIMEOUT);
        let Command::Bench(bench) = parse(&strings(&[
            "bench",
            "--quick",
            "--update-baseline",
            "--machine=virt-gicv2",
            "--timeout",
            "30",
        ]))
        .unwrap() else {
            panic!("not bench");
        };
        assert!(bench.quick && bench.update_baseline);
        assert_eq!(bench.machines, vec![Machine::VirtGicv2]);
        assert_eq!(bench.timeout, Duration::from_secs(30));
        for bad in [
            &["bench", "--quick=yes"][..],
            &["bench", "--machine", "raspi4b"],
            &["bench", "extra"],
        ] {
            assert!(parse(&strings(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn fuzz_host_arguments() {
        let Command::FuzzHost(fuzz) = parse(&strings(&["fuzz-host"])).unwrap() else {
            panic!("not fuzz-host");
        };
        assert!(fuzz.targets.is_empty() && fuzz.reproduce.is_none());
        assert_eq!(fuzz.seconds, DEFAULT_FUZZ_SECONDS);
        let Command::FuzzHost(fuzz) = parse(&strings(&[
            "fuzz-host",
            "--target",
            "vgic",
            "--seconds=30",
            "--reproduce",
            "crash-1",
        ]))
        .unwrap() else {
            panic!("not fuzz-host");
        };
        assert_eq!(fuzz.targets, ["vgic"]);
        assert_eq!(fuzz.seconds, 30);
        assert_eq!(fuzz.reproduce, Some(PathBuf::from("crash-1")));
        assert!(parse(&strings(&["fuzz-host", "--target", "nope"])).is_err());
        assert!(parse(&strings(&["fuzz-host", "--seconds", "0"])).is_err());
        assert!(parse(&strings(&["fuzz-host", "--reproduce", "x"])).is_err());
    }
}
