//! `cargo xtask run`: write the boot pack for a set of domains and boot it.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use hyp::bootpack::{self, Channel, DomainSettings, DomainSpec};
use qemu::runner::{self, Control, Line, Outcome, RunConfig, HALT_GRACE};
use qemu::{LogDecoder, Machine};

use crate::args::{self, GuestSpec};
use crate::config;
use crate::images::Images;

/// One domain of the system to boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Domain {
    /// Unique name.
    pub name: String,
    /// Guest RAM in MiB.
    pub memory_mib: u32,
    /// vCPUs.
    pub vcpus: u32,
    /// Kernel image file.
    pub image: PathBuf,
    /// Initrd file, if any.
    pub initrd: Option<PathBuf>,
    /// Command line.
    pub cmdline: String,
    /// Scheduling weight, CPU affinity and crash policy.
    pub settings: DomainSettings,
}

impl Domain {
    /// A domain running `image` with the default memory and vCPUs.
    pub fn new(name: &str, image: &Path, cmdline: &str) -> Domain {
        Domain {
            name: name.to_string(),
            memory_mib: args::DEFAULT_MEMORY_MIB,
            vcpus: args::DEFAULT_VCPUS,
            image: image.to_path_buf(),
            initrd: None,
            cmdline: cmdline.to_string(),
            settings: DomainSettings::default(),
        }
    }
}

/// The demo system (the same as `examples/systems/demo.toml`): `pv-a` runs pv-guest's
/// default test set, and `ping` and `pong` bounce events over an event channel the
/// hypervisor pre-connects between them (`pingpong`); 32 MiB and 1 vCPU each, spread over
/// the machine's CPUs by the scheduler.
pub fn demo_system(images: &Images) -> (Vec<Domain>, Vec<Channel>) {
    (
        vec![
            Domain::new("pv-a", &images.guest_img, ""),
            Domain::new("ping", &images.guest_img, "pingpong"),
            Domain::new("pong", &images.guest_img, "pingpong"),
        ],
        vec![Channel { a: 1, b: 2 }],
    )
}

/// The domains of `--guest` specs, named by [`args::domain_names`].
pub fn domains_from_specs(specs: &[GuestSpec]) -> Result<Vec<Domain>> {
    let names = args::domain_names(specs)?;
    Ok(specs
        .iter()
        .zip(names)
        .map(|(spec, name)| Domain {
            name,
            memory_mib: spec.memory_mib,
            vcpus: spec.vcpus,
            image: spec.image.clone(),
            initrd: spec.initrd.clone(),
            cmdline: spec.cmdline.clone(),
            settings: DomainSettings::default(),
        })
        .collect())
}

/// Encodes `domains` and the pre-connected `channels` between them with
/// `hyp::bootpack::encode` and writes the pack to `path`.
pub fn write_bootpack(domains: &[Domain], channels: &[Channel], path: &Path) -> Result<()> {
    let mut files = Vec::new();
    for domain in domains {
        let image = std::fs::read(&domain.image).with_context(|| {
            format!(
                "domain {}: reading image {}",
                domain.name,
                domain.image.display()
            )
        })?;
        let initrd = match &domain.initrd {
            Some(initrd) => std::fs::read(initrd).with_context(|| {
                format!(
                    "domain {}: reading initrd {}",
                    domain.name,
                    initrd.display()
                )
            })?,
            None => Vec::new(),
        };
        files.push((image, initrd));
    }
    let specs: Vec<DomainSpec> = domains
        .iter()
        .zip(&files)
        .map(|(domain, (image, initrd))| DomainSpec {
            name: &domain.name,
            memory_mib: domain.memory_mib,
            vcpus: domain.vcpus,
            image,
            initrd,
            cmdline: &domain.cmdline,
            settings: domain.settings,
        })
        .collect();
    let explain = |error: bootpack::PackError| {
        if let bootpack::PackError::Channel { index, .. } = error {
            return anyhow::anyhow!(
                "cannot write the boot pack: channel {index}: {}",
                error.describe()
            );
        }
        match error.domain_index().and_then(|i| domains.get(i)) {
            Some(domain) => anyhow::anyhow!(
                "cannot write the boot pack: domain {:?} ({}): {}",
                domain.name,
                domain.image.display(),
                error.describe()
            ),
            None => anyhow::anyhow!("cannot write the boot pack: {}", error.describe()),
        }
    };
    let size = bootpack::encoded_size(&specs, channels).map_err(explain)?;
    let mut pack = vec![0u8; size];
    let written = bootpack::encode(&specs, channels, &mut pack).map_err(explain)?;
    pack.truncate(written);
    std::fs::write(path, &pack).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The hypervisor log decoder, or `None` (with a warning) when the ELF has no usable
/// `defmt` table.
pub fn log_decoder(images: &Images) -> Option<LogDecoder> {
    let elf = match std::fs::read(&images.hyp_elf) {
        Ok(elf) => elf,
        Err(error) => {
            eprintln!(
                "xtask: warning: cannot read {}: {error}",
                images.hyp_elf.display()
            );
            return None;
        }
    };
    match LogDecoder::from_elf(&elf) {
        Ok(decoder) => Some(decoder),
        Err(error) => {
            eprintln!(
                "xtask: warning: hypervisor log frames cannot be decoded: {}: {error}",
                images.hyp_elf.display()
            );
            None
        }
    }
}

/// The hypervisor's last line: the final `halt:` line, or `boot refused: ...` (it then
/// powers off, or parks where it cannot).
fn ends_the_run(line: &Line) -> bool {
    line.halt().is_some()
        || line
            .hyp_message()
            .is_some_and(|message| message.starts_with("boot refused: "))
}

/// What the runner should do after `line` on `machine`: kill QEMU at a hypervisor panic,
/// give it [`HALT_GRACE`] to power off after the `halt:` line (a moment, on a machine the
/// hypervisor cannot power off: it only parks its CPUs).
pub fn control_for(line: &Line, machine: Machine) -> Control {
    if line.is_panic() {
        // Let the rest of the panic message arrive.
        Control::StopAfter(Duration::from_secs(1))
    } else if ends_the_run(line) && machine.can_power_off() {
        Control::StopAfter(HALT_GRACE)
    } else if ends_the_run(line) {
        Control::StopAfter(Duration::from_secs(1))
    } else {
        Control::Continue
    }
}

/// Boots the hypervisor with `domains` and the pre-connected `channels` on `machine`. When
/// `echo` is set, every line is printed as it arrives (UART lines on stdout, QEMU's stderr
/// on stderr).
pub fn boot(
    images: &Images,
    domains: &[Domain],
    channels: &[Channel],
    machine: Machine,
    icount: bool,
    timeout: Duration,
    echo: bool,
) -> Result<Outcome> {
    boot_with_input(
        images,
        domains,
        channels,
        machine,
        (icount, timeout, echo),
        &[],
    )
}

/// [`boot`], typing the scripted `input` into the UART (`(icount, timeout, echo)` as
/// there).
pub fn boot_with_input(
    images: &Images,
    domains: &[Domain],
    channels: &[Channel],
    machine: Machine,
    (icount, timeout, echo): (bool, Duration, bool),
    input: &[qemu::InputStep],
) -> Result<Outcome> {
    write_bootpack(domains, channels, &images.bootpack)?;
    boot_pack_file(
        images,
        &images.bootpack,
        machine,
        (icount, timeout, echo),
        input,
    )
}

/// Boots the hypervisor with the boot pack already written at `pack` (which may be a
/// deliberately broken one, for the tests), as [`boot_with_input`] does.
pub fn boot_pack_file(
    images: &Images,
    pack: &Path,
    machine: Machine,
    (icount, timeout, echo): (bool, Duration, bool),
    input: &[qemu::InputStep],
) -> Result<Outcome> {
    crate::setup::ensure_qemu()?;
    let decoder = log_decoder(images);
    let mut config = RunConfig::new(machine, &images.hyp_img);
    config.initrd = Some(pack.to_path_buf());
    config.icount = icount;
    config.timeout = timeout;
    config.forward_stdin = echo;
    config.input = input.to_vec();
    let colour = std::io::stdout().is_terminal();
    let outcome = runner::run(&config, decoder.as_ref(), |line| {
        if echo {
            match line {
                Line::Stderr(_) => eprintln!("{}", line.render(false)),
                _ => {
                    let mut stdout = std::io::stdout().lock();
                    let _ = writeln!(stdout, "{}", line.render(colour));
                    let _ = stdout.flush();
                }
            }
        }
        control_for(line, machine)
    })
    .map_err(anyhow::Error::msg)?;
    Ok(outcome)
}

/// [`Outcome::check_clean_halt`], and the halt line counts `domains` domains.
pub fn check_all_clean(outcome: &Outcome, domains: usize) -> Result<usize, String> {
    let halted = outcome.check_clean_halt()?;
    if halted != domains {
        return Err(format!(
            "the hypervisor reports {halted} domains, the boot pack has {domains}"
        ));
    }
    Ok(halted)
}

/// `cargo xtask run`.
pub fn run(run: &args::RunArgs) -> Result<bool> {
    // Fail on an unusable machine before the build.
    if run.machine == qemu::Machine::Raspi4b {
        crate::debian::provide_raspi4b_dtb()?;
    }
    run.machine.args().map_err(anyhow::Error::msg)?;
    // Fail on a bad configuration file before the build, too.
    let system = match &run.config {
        Some(path) => Some(config::load_for(path, run.machine)?),
        None => None,
    };
    let images = crate::images::build()?;
    let linux_paths = crate::linux::LinuxImages::paths();
    let (domains, channels) = match system {
        Some(system) => {
            if system
                .domains
                .iter()
                .any(|domain| linux_paths.used_by(domain))
            {
                crate::linux::prepare()?;
            }
            system.check_images()?;
            (system.domains, system.channels)
        }
        None if run.linux => {
            let linux = crate::linux::prepare()?;
            eprintln!(
                "xtask: Linux ({}) boots beside {}; console input goes to Linux (Ctrl-A \
                 three times switches), `poweroff -f` in its shell ends it",
                linux.kernel.display(),
                crate::linux::BESIDE_NAME
            );
            (crate::linux::system(&images, &linux, false), Vec::new())
        }
        None if run.guests.is_empty() => demo_system(&images),
        None => {
            let domains = domains_from_specs(&run.guests)?;
            if domains.iter().any(|domain| linux_paths.used_by(domain)) {
                crate::linux::prepare()?;
            }
            (domains, Vec::new())
        }
    };
    for domain in &domains {
        if !domain.image.is_file() {
            bail!(
                "domain {}: image {} does not exist",
                domain.name,
                domain.image.display()
            );
        }
    }
    let outcome = boot(
        &images,
        &domains,
        &channels,
        run.machine,
        run.icount,
        run.timeout,
        true,
    )?;
    if outcome.undecodable > 0 {
        eprintln!(
            "xtask: {} hypervisor log frames could not be decoded",
            outcome.undecodable
        );
    }
    match check_all_clean(&outcome, domains.len()) {
        Ok(n) => {
            eprintln!("xtask: ok: all {n} domains shut down cleanly");
            Ok(true)
        }
        Err(reason) => {
            eprintln!("xtask: FAILED: {reason}");
            Ok(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyp::bootpack::BootPack;

    fn temp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("xtask-run-test-{}-{name}", std::process::id()))
    }

    #[test]
    fn boot_pack_round_trip() {
        let mut image = vec![0u8; 128];
        image[56..60].copy_from_slice(b"ARM\x64");
        let image_path = temp("guest.img");
        let initrd_path = temp("initrd");
        let pack_path = temp("pack.bin");
        std::fs::write(&image_path, &image).unwrap();
        std::fs::write(&initrd_path, b"ramdisk").unwrap();
        let specs = [
            GuestSpec::parse(&format!(
                "{},initrd={},mem=48,vcpus=2,cmdline=a b=c",
                image_path.display(),
                initrd_path.display()
            ))
            .unwrap(),
            GuestSpec::parse(&image_path.display().to_string()).unwrap(),
        ];
        let domains = domains_from_specs(&specs).unwrap();
        write_bootpack(&domains, &[], &pack_path).unwrap();
        let bytes = std::fs::read(&pack_path).unwrap();
        for path in [&image_path, &initrd_path, &pack_path] {
            let _ = std::fs::remove_file(path);
        }
        let pack = BootPack::parse(&bytes).unwrap();
        let parsed: Vec<_> = pack.domains().collect();
        assert_eq!(parsed.len(), 2);
        let stem = image_path
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert_eq!(parsed[0].name, stem);
        assert_eq!(parsed[1].name, format!("{stem}-2"));
        assert_eq!((parsed[0].memory_mib, parsed[0].vcpus), (48, 2));
        assert_eq!(parsed[0].cmdline, "a b=c");
        assert_eq!(parsed[0].initrd, b"ramdisk");
        assert_eq!(parsed[1].image, &image[..]);
        assert_eq!(parsed[1].cmdline, "");
    }

    #[test]
    fn bad_image_is_refused_with_the_domain_name() {
        let image_path = temp("bad.img");
        std::fs::write(&image_path, vec![0u8; 128]).unwrap();
        let domains = [Domain::new("broken", &image_path, "")];
        let error = write_bootpack(&domains, &[], &temp("unused.bin")).unwrap_err();
        let _ = std::fs::remove_file(&image_path);
        let message = format!("{error:#}");
        assert!(
            message.contains("broken") && message.contains("arm64"),
            "{message}"
        );
    }

    #[test]
    fn missing_image_is_an_error() {
        let domains = [Domain::new("gone", Path::new("/nonexistent/x.img"), "")];
        assert!(write_bootpack(&domains, &[], &temp("unused2.bin")).is_err());
    }
}
