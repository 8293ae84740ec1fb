//! System configuration files: one declarative TOML file describes every domain of a
//! system and the event channels pre-connected between them (`docs/configuration.md`).
//!
//! [`System::parse`] checks everything that needs no file system (keys, names, numbers,
//! the machine's limits, channels) so that a typo is refused before the build;
//! [`System::check_images`] then reads the images and initrds. Every error names the
//! configuration file, the domain (or channel) and what to change.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Result};
use hyp::bootpack::{self, Channel, DomainSettings, OnCrash};
use qemu::Machine;
use serde::Deserialize;

use crate::run::Domain;

/// `memory_mib` when a domain gives none.
pub const DEFAULT_MEMORY_MIB: u32 = crate::args::DEFAULT_MEMORY_MIB;
/// `vcpus` when a domain gives none.
pub const DEFAULT_VCPUS: u32 = crate::args::DEFAULT_VCPUS;
/// `weight` when a domain gives none.
pub const DEFAULT_WEIGHT: u16 = bootpack::DEFAULT_WEIGHT;
/// RAM kept back from the domains: the hypervisor image, its EL2 and stage-2 tables, the
/// device tree, and the boot pack, which QEMU loads 128 MiB into RAM (conservative: the
/// hypervisor may find a little more room than this leaves).
pub const HYPERVISOR_RESERVE_MIB: u32 = 128;
/// Image names that mean `target/images/<name>.img`, built by `cargo xtask build`
/// (`linux`: Debian's kernel, prepared by `run` when a domain uses it).
pub const BUILT_IMAGES: [&str; 3] = ["pv-guest", "minimal-guest", crate::linux::IMAGE_NAME];
/// The initrd name that means `target/images/linux-initramfs.cpio`, the Linux guest's
/// initramfs (written by `run` when a domain uses it).
pub const BUILT_INITRD: &str = crate::linux::INITRAMFS_NAME;
/// Characters allowed in a domain name besides ASCII letters and digits.
const NAME_PUNCTUATION: [char; 3] = ['-', '_', '.'];

/// Keys of the top level.
const TOP_KEYS: [&str; 2] = ["domain", "channel"];
/// Keys of a `[[domain]]` table.
const DOMAIN_KEYS: [&str; 10] = [
    "name",
    "image",
    "initrd",
    "cmdline",
    "memory_mib",
    "vcpus",
    "weight",
    "affinity",
    "on_crash",
    "max_restarts",
];
/// Keys of a `[[channel]]` table.
const CHANNEL_KEYS: [&str; 1] = ["between"];

/// What a machine offers the domains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MachineLimits {
    /// The machine's name, for messages.
    pub name: &'static str,
    /// RAM of the whole machine in MiB.
    pub ram_mib: u32,
    /// Physical CPUs.
    pub cpus: u32,
}

impl MachineLimits {
    /// The limits of `machine`.
    pub fn of(machine: Machine) -> MachineLimits {
        let (ram_mib, cpus) = match machine {
            // The `virt` profiles of `qemu::Machine::args` pass `-m 1G -smp 4`; a unit test
            // keeps these numbers in step with the profile.
            Machine::VirtGicv3 | Machine::VirtGicv2 => (1024, 4),
            // QEMU's `raspi4b` machine: 2 GiB, 4 Cortex-A72 (fixed by the board model).
            Machine::Raspi4b => (2048, 4),
        };
        MachineLimits {
            name: machine.name(),
            ram_mib,
            cpus,
        }
    }

    /// MiB the domains may use together (and the most one domain may have): RAM minus
    /// [`HYPERVISOR_RESERVE_MIB`].
    pub fn domain_ram_mib(&self) -> u32 {
        self.ram_mib.saturating_sub(HYPERVISOR_RESERVE_MIB)
    }
}

/// One `[[domain]]` table, as written. Integers are `i64` (TOML's integer) so that
/// negative and oversized values get our messages, not a bare type error.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDomain {
    name: String,
    image: String,
    initrd: Option<String>,
    #[serde(default)]
    cmdline: String,
    #[serde(default = "default_memory")]
    memory_mib: i64,
    #[serde(default = "default_vcpus")]
    vcpus: i64,
    #[serde(default = "default_weight")]
    weight: i64,
    affinity: Option<Vec<i64>>,
    #[serde(default = "default_on_crash")]
    on_crash: String,
    max_restarts: Option<i64>,
}

fn default_memory() -> i64 {
    i64::from(DEFAULT_MEMORY_MIB)
}

fn default_vcpus() -> i64 {
    i64::from(DEFAULT_VCPUS)
}

fn default_weight() -> i64 {
    i64::from(DEFAULT_WEIGHT)
}

fn default_on_crash() -> String {
    OnCrash::Destroy.name().to_string()
}

/// One `[[channel]]` table, as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChannel {
    between: Vec<String>,
}

/// A validated system: the domains in boot-pack order (domain id = index) and the
/// channels between them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct System {
    /// The configuration file, for messages.
    pub file: PathBuf,
    /// The domains.
    pub domains: Vec<Domain>,
    /// The pre-connected interdomain event channels (indices into `domains`).
    pub channels: Vec<Channel>,
}

impl System {
    /// Reads and checks the configuration file `path` for a machine with `limits`; image
    /// names of [`BUILT_IMAGES`] resolve into `images_dir`, other paths relative to the
    /// file's directory. The image files are not read yet: see [`System::check_images`].
    pub fn load(path: &Path, limits: MachineLimits, images_dir: &Path) -> Result<System> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            anyhow!(
                "{}: cannot read the system configuration: {error}; check the path given \
                 to --config",
                path.display()
            )
        })?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        System::parse(&text, path, base_dir, limits, images_dir)
    }

    /// Checks the configuration `text` of `file` (see [`System::load`]).
    pub fn parse(
        text: &str,
        file: &Path,
        base_dir: &Path,
        limits: MachineLimits,
        images_dir: &Path,
    ) -> Result<System> {
        let shown = file.display().to_string();
        let fail = |what: String| anyhow!("{shown}: {what}");
        let table: toml::Table = text.parse().map_err(|error| {
            fail(format!(
                "not valid TOML: {}; fix the syntax there (https://toml.io)",
                one_line(&error)
            ))
        })?;
        for key in table.keys() {
            if !TOP_KEYS.contains(&key.as_str()) {
                return Err(fail(unknown_key("the top level", key, &TOP_KEYS)));
            }
        }
        let domain_tables = array_of_tables(&table, "domain").map_err(fail)?;
        let channel_tables = array_of_tables(&table, "channel").map_err(fail)?;
        if domain_tables.is_empty() {
            return Err(fail(
                "no domains; add at least one [[domain]] table with a name and an image"
                    .to_string(),
            ));
        }
        if domain_tables.len() > bootpack::MAX_DOMAINS {
            return Err(fail(format!(
                "{} domains, but the hypervisor runs at most {}; remove {} [[domain]] tables",
                domain_tables.len(),
                bootpack::MAX_DOMAINS,
                domain_tables.len() - bootpack::MAX_DOMAINS
            )));
        }

        let mut domains: Vec<Domain> = Vec::new();
        for (number, domain_table) in domain_tables.iter().enumerate() {
            let label = match domain_table.get("name").and_then(toml::Value::as_str) {
                Some(name) => format!("domain {name:?}"),
                None => format!("the {} [[domain]]", ordinal(number + 1)),
            };
            let fail = |what: String| anyhow!("{shown}: {label}: {what}");
            for key in domain_table.keys() {
                if !DOMAIN_KEYS.contains(&key.as_str()) {
                    return Err(fail(unknown_key("a [[domain]]", key, &DOMAIN_KEYS)));
                }
            }
            for required in ["name", "image"] {
                if !domain_table.contains_key(required) {
                    return Err(fail(format!(
                        "{required} is missing; add {required} = \"...\" (required keys: \
                         name, image)"
                    )));
                }
            }
            let raw = toml::Value::Table((*domain_table).clone())
                .try_into::<RawDomain>()
                .map_err(|error| fail(type_error(&error)))?;
            let domain = check_domain(raw, limits, base_dir, images_dir).map_err(fail)?;
            if let Some(first) = domains.iter().position(|other| other.name == domain.name) {
                return Err(fail(format!(
                    "the name is used twice (the {} and the {} [[domain]]); give each \
                     domain its own name",
                    ordinal(first + 1),
                    ordinal(number + 1)
                )));
            }
            domains.push(domain);
        }

        let total: u64 = domains
            .iter()
            .map(|domain| u64::from(domain.memory_mib))
            .sum();
        if total > u64::from(limits.domain_ram_mib()) {
            let list: Vec<String> = domains
                .iter()
                .map(|domain| format!("{} {}", domain.name, domain.memory_mib))
                .collect();
            return Err(fail(format!(
                "the domains need {total} MiB together ({}), but machine {} has only {} MiB \
                 for domains ({} MiB of RAM minus {} MiB kept for the hypervisor); lower \
                 memory_mib of some domains by {} MiB in all",
                list.join(", "),
                limits.name,
                limits.domain_ram_mib(),
                limits.ram_mib,
                HYPERVISOR_RESERVE_MIB,
                total - u64::from(limits.domain_ram_mib())
            )));
        }

        if channel_tables.len() > bootpack::MAX_CHANNELS {
            return Err(fail(format!(
                "{} channels, but a system may pre-connect at most {}; remove {} [[channel]] \
                 tables",
                channel_tables.len(),
                bootpack::MAX_CHANNELS,
                channel_tables.len() - bootpack::MAX_CHANNELS
            )));
        }
        let mut channels = Vec::new();
        for (number, channel_table) in channel_tables.iter().enumerate() {
            let label = format!("the {} [[channel]]", ordinal(number + 1));
            let fail = |what: String| anyhow!("{shown}: {label}: {what}");
            for key in channel_table.keys() {
                if !CHANNEL_KEYS.contains(&key.as_str()) {
                    return Err(fail(unknown_key("a [[channel]]", key, &CHANNEL_KEYS)));
                }
            }
            if !channel_table.contains_key("between") {
                return Err(fail(
                    "between is missing; add between = [\"DOMAIN-A\", \"DOMAIN-B\"]".to_string(),
                ));
            }
            let raw = toml::Value::Table((*channel_table).clone())
                .try_into::<RawChannel>()
                .map_err(|error| fail(type_error(&error)))?;
            channels.push(check_channel(&raw, &domains).map_err(fail)?);
        }

        Ok(System {
            file: file.to_path_buf(),
            domains,
            channels,
        })
    }

    /// Reads every domain's image and initrd: each must exist and be readable, the image
    /// must start with an arm64 `Image` header, and image, initrd and device tree must fit
    /// the domain's memory (the hypervisor's own layout rule).
    pub fn check_images(&self) -> Result<()> {
        for domain in &self.domains {
            check_domain_files(domain).map_err(|what| {
                anyhow!("{}: domain {:?}: {what}", self.file.display(), domain.name)
            })?;
        }
        Ok(())
    }
}

/// `table[key]` as an array of tables (absent = empty).
fn array_of_tables<'t>(table: &'t toml::Table, key: &str) -> Result<Vec<&'t toml::Table>, String> {
    let Some(value) = table.get(key) else {
        return Ok(Vec::new());
    };
    let wrong = || format!("{key} must be written as [[{key}]] tables");
    let array = value.as_array().ok_or_else(wrong)?;
    array
        .iter()
        .map(|item| item.as_table().ok_or_else(wrong))
        .collect()
}

/// Checks one domain's values (not its files) and resolves its paths.
fn check_domain(
    raw: RawDomain,
    limits: MachineLimits,
    base_dir: &Path,
    images_dir: &Path,
) -> Result<Domain, String> {
    check_name(&raw.name)?;
    let max_memory = limits.domain_ram_mib();
    if raw.memory_mib <= 0 {
        return Err(format!(
            "memory_mib = {} but a domain needs memory; set memory_mib to at least 1 \
             (default {DEFAULT_MEMORY_MIB})",
            raw.memory_mib
        ));
    }
    if raw.memory_mib > i64::from(max_memory) {
        return Err(format!(
            "memory_mib = {} is more than machine {} can give one domain ({max_memory} MiB: \
             {} MiB of RAM minus {HYPERVISOR_RESERVE_MIB} MiB kept for the hypervisor); \
             lower memory_mib to at most {max_memory}",
            raw.memory_mib, limits.name, limits.ram_mib
        ));
    }
    let max_vcpus = bootpack::MAX_VCPUS;
    if raw.vcpus <= 0 || raw.vcpus > i64::from(max_vcpus) {
        return Err(format!(
            "vcpus = {} is outside 1..={max_vcpus} (the hypervisor's limit per domain); set \
             vcpus between 1 and {max_vcpus}",
            raw.vcpus
        ));
    }
    if raw.weight <= 0 || raw.weight > i64::from(u16::MAX) {
        return Err(format!(
            "weight = {} is outside 1..=65535; set a weight in that range (default \
             {DEFAULT_WEIGHT}; twice the weight, twice the CPU time under contention)",
            raw.weight
        ));
    }
    let affinity = match &raw.affinity {
        None => u64::MAX,
        Some(cpus) => affinity_mask(cpus, limits)?,
    };
    let on_crash = match raw.on_crash.as_str() {
        "destroy" => OnCrash::Destroy,
        "restart" => OnCrash::Restart,
        other => {
            return Err(format!(
                "on_crash = {other:?} is not a crash policy; use on_crash = \"destroy\" or \
                 \"restart\""
            ))
        }
    };
    let max_restarts = match (on_crash, raw.max_restarts) {
        (_, None) => 0,
        (OnCrash::Destroy, Some(_)) => {
            return Err(
                "max_restarts is set but on_crash is \"destroy\"; set on_crash = \"restart\" \
                 or remove max_restarts"
                    .to_string(),
            )
        }
        (OnCrash::Restart, Some(limit)) if limit < 0 || limit > i64::from(u32::MAX) => {
            return Err(format!(
                "max_restarts = {limit} is outside 0..={}; 0 means no limit",
                u32::MAX
            ))
        }
        (OnCrash::Restart, Some(limit)) => limit as u32,
    };
    if raw.cmdline.contains('\0') {
        return Err("cmdline contains a NUL character; remove it".to_string());
    }
    let image = resolve(&raw.image, base_dir, images_dir, true).ok_or(
        "image is empty; give a path relative to this file or \"pv-guest\" / \"minimal-guest\"",
    )?;
    let initrd = match &raw.initrd {
        None => None,
        Some(initrd) => Some(
            resolve(initrd, base_dir, images_dir, false)
                .ok_or("initrd is empty; give a path relative to this file, or leave initrd out")?,
        ),
    };
    Ok(Domain {
        name: raw.name,
        memory_mib: u32::try_from(raw.memory_mib).map_err(|error| error.to_string())?,
        vcpus: u32::try_from(raw.vcpus).map_err(|error| error.to_string())?,
        image,
        initrd,
        cmdline: raw.cmdline,
        settings: DomainSettings {
            weight: u16::try_from(raw.weight).map_err(|error| error.to_string())?,
            affinity,
            on_crash,
            max_restarts,
        },
    })
}

/// A domain name: 1..=32 bytes of ASCII letters, digits, `-`, `_` and `.`, starting with a
/// letter or digit (it appears in console prefixes and log lines).
fn check_name(name: &str) -> Result<(), String> {
    let rule = "use 1 to 32 ASCII letters, digits, '-', '_' or '.', starting with a letter or \
                digit";
    if name.is_empty() {
        return Err(format!("the name is empty; {rule}"));
    }
    if name.len() > bootpack::NAME_LEN {
        return Err(format!(
            "the name is {} bytes long, more than {}; shorten it ({rule})",
            name.len(),
            bootpack::NAME_LEN
        ));
    }
    let starts_well = name.starts_with(|c: char| c.is_ascii_alphanumeric());
    let bad = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || NAME_PUNCTUATION.contains(c)));
    match bad {
        Some(c) => Err(format!(
            "the name has the character {c:?}, which names may not contain; {rule}"
        )),
        None if !starts_well => Err(format!(
            "the name does not start with a letter or digit; {rule}"
        )),
        None => Ok(()),
    }
}

/// The affinity bit mask of a list of CPU indices.
fn affinity_mask(cpus: &[i64], limits: MachineLimits) -> Result<u64, String> {
    if cpus.is_empty() {
        return Err(format!(
            "affinity = [] names no CPU; list CPUs 0..={} or leave affinity out for all",
            limits.cpus - 1
        ));
    }
    let mut mask = 0u64;
    for &cpu in cpus {
        if cpu < 0 || cpu >= i64::from(limits.cpus) {
            return Err(format!(
                "affinity names CPU {cpu}, but machine {} has CPUs 0..={}; use only those",
                limits.name,
                limits.cpus - 1
            ));
        }
        let bit = 1u64 << cpu;
        if mask & bit != 0 {
            return Err(format!(
                "affinity names CPU {cpu} twice; list each CPU once"
            ));
        }
        mask |= bit;
    }
    Ok(mask)
}

/// `value` as a path: one of [`BUILT_IMAGES`] (for images) or [`BUILT_INITRD`] (for
/// initrds) in `images_dir`, else relative to `base_dir`. `None` when empty.
fn resolve(value: &str, base_dir: &Path, images_dir: &Path, image: bool) -> Option<PathBuf> {
    if value.is_empty() {
        return None;
    }
    if image && BUILT_IMAGES.contains(&value) {
        return Some(images_dir.join(format!("{value}.img")));
    }
    if !image && value == BUILT_INITRD {
        return Some(images_dir.join(format!("{value}.cpio")));
    }
    Some(base_dir.join(value))
}

fn check_channel(raw: &RawChannel, domains: &[Domain]) -> Result<Channel, String> {
    let [a, b] = raw.between.as_slice() else {
        return Err(format!(
            "between lists {} domains; a channel connects exactly two: between = \
             [\"DOMAIN-A\", \"DOMAIN-B\"]",
            raw.between.len()
        ));
    };
    let find = |name: &String| {
        domains
            .iter()
            .position(|domain| &domain.name == name)
            .ok_or_else(|| {
                let names: Vec<String> = domains
                    .iter()
                    .map(|domain| format!("{:?}", domain.name))
                    .collect();
                format!(
                    "between names domain {name:?}, which this file does not define; use one \
                     of {}",
                    names.join(", ")
                )
            })
    };
    let (a_index, b_index) = (find(a)?, find(b)?);
    if a_index == b_index {
        return Err(format!(
            "between connects domain {a:?} to itself; name two different domains"
        ));
    }
    Ok(Channel {
        a: a_index,
        b: b_index,
    })
}

/// The file checks of one domain; the message lacks the file and domain.
fn check_domain_files(domain: &Domain) -> Result<(), String> {
    let image = read_file(&domain.image, "image")?;
    let header = bootpack::arm64_image_header(&image).map_err(|_| {
        format!(
            "image {} is not an arm64 Image (no \"ARM\\x64\" magic at byte 56); give a raw \
             arm64 kernel Image (an ELF must first go through `llvm-objcopy -O binary`)",
            domain.image.display()
        )
    })?;
    let initrd_size = match &domain.initrd {
        Some(path) => read_file(path, "initrd")?.len() as u64,
        None => 0,
    };
    let kernel_size = header.image_size.max(image.len() as u64);
    let memory = u64::from(domain.memory_mib) * 1024 * 1024;
    if hyp::domain::plan_layout(memory, header.text_offset, kernel_size, initrd_size).is_err() {
        let needed = fitting_memory_mib(header.text_offset, kernel_size, initrd_size);
        return Err(format!(
            "memory_mib = {} is too small for the kernel ({kernel_size} bytes), the initrd \
             ({initrd_size} bytes) and the device tree; raise memory_mib to at least {needed}",
            domain.memory_mib
        ));
    }
    Ok(())
}

/// The smallest memory size in MiB the hypervisor's layout accepts.
fn fitting_memory_mib(text_offset: u64, kernel_size: u64, initrd_size: u64) -> u64 {
    (1..=u64::from(u32::MAX))
        .find(|mib| {
            hyp::domain::plan_layout(mib * 1024 * 1024, text_offset, kernel_size, initrd_size)
                .is_ok()
        })
        .unwrap_or(u64::from(u32::MAX))
}

fn read_file(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => {
            let built = if what == "image" {
                " or use \"pv-guest\" / \"minimal-guest\" (built by `cargo xtask build`)"
            } else {
                ""
            };
            format!(
                "{what} {} does not exist; fix the path (relative to the configuration \
                 file's directory){built}",
                path.display()
            )
        }
        _ => format!(
            "{what} {} cannot be read: {error}; make it a readable file",
            path.display()
        ),
    })
}

/// The message for an unknown key in `place`, with the closest known key if one is close.
fn unknown_key(place: &str, key: &str, known: &[&str]) -> String {
    let mut message = format!("unknown key `{key}` in {place}");
    if let Some(close) = closest(key, known) {
        let _ = write!(message, "; did you mean `{close}`?");
    } else {
        message.push(';');
    }
    let _ = write!(message, " known keys: {}", known.join(", "));
    message
}

/// The known key `key` is most likely a misspelling of, if any.
fn closest<'k>(key: &str, known: &[&'k str]) -> Option<&'k str> {
    let lower = key.to_ascii_lowercase();
    known
        .iter()
        .map(|candidate| {
            let distance = if candidate.starts_with(&lower) || lower.starts_with(candidate) {
                0
            } else {
                edit_distance(&lower, candidate)
            };
            (distance, *candidate)
        })
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Levenshtein distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

/// "1st", "2nd", "3rd", "4th", ...
fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// A value of the wrong type, with the types spelled for people and the fix.
fn type_error(error: &dyn std::fmt::Display) -> String {
    let message = one_line(error)
        .replace(": in `", " in `")
        .replace("expected i64", "expected a whole number")
        .replace("expected a string", "expected a string in quotes")
        .replace("expected a sequence", "expected a list [...]");
    format!(
        "{message}; give the key a value of the type docs/configuration.md lists (numbers \
         without quotes, text in quotes, lists in [ ])"
    )
}

/// A (possibly multi-line) `toml` error message on one line, without its source excerpt
/// (the lines `N | text` and the `^` markers).
fn one_line(error: &dyn std::fmt::Display) -> String {
    let excerpt = |line: &str| match line.split_once('|') {
        Some((number, _)) => number.trim().chars().all(|c| c.is_ascii_digit()),
        None => line.chars().all(|c| c == '^' || c == ' '),
    };
    let text = error.to_string();
    let parts: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !excerpt(line))
        .collect();
    parts.join(": ")
}

/// Checks a system configuration before the build: [`System::load`] for `machine`, with
/// built images in `target/images`.
pub fn load_for(path: &Path, machine: Machine) -> Result<System> {
    System::load(
        path,
        MachineLimits::of(machine),
        &crate::setup::images_dir(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::images::Images;
    use hyp::bootpack::BootPack;

    const VIRT: Machine = Machine::VirtGicv3;

    fn parse(text: &str) -> Result<System> {
        System::parse(
            text,
            Path::new("sys.toml"),
            Path::new("/cfg"),
            MachineLimits::of(VIRT),
            Path::new("/images"),
        )
    }

    /// The error message of `text`, which must be refused; it must name the file.
    fn error(text: &str) -> String {
        let message = format!("{:#}", parse(text).unwrap_err());
        assert!(message.starts_with("sys.toml: "), "{message}");
        message
    }

    /// Asserts that `text` is refused with a message containing every one of `parts`.
    fn refused(text: &str, parts: &[&str]) {
        let message = error(text);
        for part in parts {
            assert!(message.contains(part), "{part:?} not in {message:?}");
        }
    }

    /// A one-domain system named `a` with `extra` lines in its table.
    fn one(extra: &str) -> String {
        format!("[[domain]]\nname = \"a\"\nimage = \"pv-guest\"\n{extra}\n")
    }

    fn two(extra: &str) -> String {
        format!(
            "[[domain]]\nname = \"a\"\nimage = \"pv-guest\"\n\
             [[domain]]\nname = \"b\"\nimage = \"pv-guest\"\n{extra}\n"
        )
    }

    fn examples_dir() -> PathBuf {
        crate::setup::workspace_root().join("examples/systems")
    }

    #[test]
    fn defaults() {
        let system = parse(&one("")).unwrap();
        assert_eq!(system.file, PathBuf::from("sys.toml"));
        assert!(system.channels.is_empty());
        let domain = &system.domains[0];
        assert_eq!(domain.name, "a");
        assert_eq!(domain.image, PathBuf::from("/images/pv-guest.img"));
        assert_eq!(domain.initrd, None);
        assert_eq!(domain.cmdline, "");
        assert_eq!((domain.memory_mib, domain.vcpus), (32, 1));
        assert_eq!(domain.settings, DomainSettings::default());
        assert_eq!(domain.settings.weight, 256);
        assert_eq!(domain.settings.affinity, u64::MAX);
        assert_eq!(domain.settings.on_crash, OnCrash::Destroy);
    }

    #[test]
    fn every_key() {
        let system = parse(
            "[[domain]]\nname = \"web.1_x\"\nimage = \"k/Image\"\ninitrd = \"../r.cpio\"\n\
             cmdline = \"console=hvc0 a=b\"\nmemory_mib = 64\nvcpus = 8\nweight = 65535\n\
             affinity = [3, 1]\non_crash = \"destroy\"\n\
             [[domain]]\nname = \"m\"\nimage = \"minimal-guest\"\nweight = 1\n\
             [[channel]]\nbetween = [\"m\", \"web.1_x\"]\n",
        )
        .unwrap();
        let web = &system.domains[0];
        assert_eq!(web.image, PathBuf::from("/cfg/k/Image"));
        assert_eq!(web.initrd, Some(PathBuf::from("/cfg/../r.cpio")));
        assert_eq!(web.cmdline, "console=hvc0 a=b");
        assert_eq!((web.memory_mib, web.vcpus), (64, 8));
        assert_eq!(web.settings.weight, 65535);
        assert_eq!(web.settings.affinity, 0b1010);
        let minimal = &system.domains[1];
        assert_eq!(minimal.image, PathBuf::from("/images/minimal-guest.img"));
        assert_eq!(minimal.settings.weight, 1);
        assert_eq!(system.channels, vec![Channel { a: 1, b: 0 }]);
    }

    #[test]
    fn demo_example_is_the_built_in_demo() {
        let system = load_for(&examples_dir().join("demo.toml"), VIRT).unwrap();
        let (domains, channels) = crate::run::demo_system(&Images::paths());
        assert_eq!(system.domains, domains);
        assert_eq!(system.channels, channels);
    }

    #[test]
    fn linux_example_is_the_built_in_linux_system() {
        let system = load_for(&examples_dir().join("linux.toml"), VIRT).unwrap();
        let linux = crate::linux::LinuxImages::paths();
        let domains = crate::linux::system(&Images::paths(), &linux, false);
        assert_eq!(system.domains, domains);
        assert!(system.channels.is_empty());
        assert!(linux.used_by(&system.domains[0]));
        assert!(!linux.used_by(&system.domains[1]));
    }

    #[test]
    fn channel_example() {
        let system = load_for(&examples_dir().join("two-domains-channel.toml"), VIRT).unwrap();
        let names: Vec<&str> = system.domains.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, ["front", "back"]);
        assert_eq!(system.channels, vec![Channel { a: 0, b: 1 }]);
        assert_eq!(system.domains[0].settings.weight, 512);
        assert_eq!(system.domains[0].settings.affinity, 0b0011);
        assert_eq!(system.domains[1].settings.affinity, 0b1100);
    }

    #[test]
    fn every_example_is_valid_on_every_virt_machine() {
        let mut count = 0;
        for entry in std::fs::read_dir(examples_dir()).unwrap() {
            let path = entry.unwrap().path();
            if path
                .extension()
                .is_some_and(|extension| extension == "toml")
            {
                for machine in [Machine::VirtGicv3, Machine::VirtGicv2] {
                    load_for(&path, machine).unwrap();
                }
                count += 1;
            }
        }
        assert!(count >= 2, "{count} examples");
    }

    #[test]
    fn limits_match_the_machine_profiles() {
        for machine in [Machine::VirtGicv3, Machine::VirtGicv2] {
            let args = machine.args().unwrap();
            let after = |flag: &str| {
                let at = args.iter().position(|arg| arg == flag).unwrap();
                args[at + 1].clone()
            };
            let limits = MachineLimits::of(machine);
            assert_eq!(after("-smp"), limits.cpus.to_string());
            assert_eq!(after("-m"), format!("{}G", limits.ram_mib / 1024));
            assert_eq!(limits.domain_ram_mib(), 896);
        }
        assert_eq!(bootpack::MAX_VCPUS as usize, hyp::domain::MAX_VCPUS);
        assert_eq!(bootpack::MAX_DOMAINS, hyp::domain::MAX_DOMAINS);
    }

    #[test]
    fn unreadable_file() {
        let error = load_for(Path::new("/nonexistent/system.toml"), VIRT).unwrap_err();
        let message = format!("{error:#}");
        assert!(
            message.starts_with("/nonexistent/system.toml: cannot read")
                && message.contains("--config"),
            "{message}"
        );
    }

    #[test]
    fn syntax_and_structure_errors() {
        refused("[[domain]\nname = 1", &["not valid TOML", "line"]);
        refused("", &["no domains", "add at least one [[domain]]"]);
        refused(
            "domain = 3",
            &["domain must be written as [[domain]] tables"],
        );
        refused(
            &format!("{}channel = [1]", one(""))
                .replace("channel = [1]", "")
                .replace("[[domain]]", "channel = \"x\"\n[[domain]]"),
            &["channel must be written as [[channel]] tables"],
        );
        let nine: String = (0..9)
            .map(|n| format!("[[domain]]\nname = \"d{n}\"\nimage = \"pv-guest\"\nmemory_mib = 8\n"))
            .collect();
        refused(&nine, &["9 domains", "at most 8", "remove 1 [[domain]]"]);
    }

    #[test]
    fn unknown_keys() {
        refused(
            &format!("domains = 1\n{}", one("")),
            &[
                "unknown key `domains` in the top level",
                "did you mean `domain`?",
            ],
        );
        refused(
            &one("memory = 64"),
            &[
                "domain \"a\": unknown key `memory` in a [[domain]]",
                "did you mean `memory_mib`?",
                "known keys: name, image, initrd",
            ],
        );
        refused(
            &one("vpcus = 2"),
            &["unknown key `vpcus`", "did you mean `vcpus`?"],
        );
        refused(
            &one("colour = \"red\""),
            &["domain \"a\": unknown key `colour` in a [[domain]]; known keys"],
        );
        refused(
            &two("[[channel]]\nbetween = [\"a\", \"b\"]\nport = 3"),
            &[
                "the 1st [[channel]]: unknown key `port` in a [[channel]]",
                "between",
            ],
        );
    }

    #[test]
    fn missing_and_mistyped_values() {
        refused(
            "[[domain]]\nimage = \"pv-guest\"\n",
            &["the 1st [[domain]]: name is missing; add name = \"...\""],
        );
        refused(
            "[[domain]]\nname = \"a\"\n",
            &["domain \"a\": image is missing; add image = \"...\""],
        );
        refused(
            &one("memory_mib = \"32\""),
            &[
                "domain \"a\": ",
                "expected a whole number",
                "numbers without quotes",
            ],
        );
        refused(&one("affinity = 1"), &["domain \"a\": ", "expected a list"]);
        refused(
            &two("[[channel]]\n"),
            &["the 1st [[channel]]: between is missing"],
        );
        refused(
            &one("image = \"\"").replace("image = \"pv-guest\"\n", ""),
            &["domain \"a\": image is empty"],
        );
        refused(&one("initrd = \"\""), &["domain \"a\": initrd is empty"]);
    }

    #[test]
    fn names() {
        refused(
            &two("").replace("name = \"b\"", "name = \"a\""),
            &["domain \"a\": the name is used twice (the 1st and the 2nd [[domain]])"],
        );
        refused(
            &one("").replace("name = \"a\"", "name = \"\""),
            &["domain \"\": the name is empty"],
        );
        let long = "x".repeat(33);
        refused(
            &one("").replace("name = \"a\"", &format!("name = \"{long}\"")),
            &[&format!(
                "domain \"{long}\": the name is 33 bytes long, more than 32"
            )],
        );
        refused(
            &one("").replace("name = \"a\"", "name = \"my vm\""),
            &[
                "domain \"my vm\": the name has the character ' '",
                "ASCII letters",
            ],
        );
        refused(
            &one("").replace("name = \"a\"", "name = \"-x\""),
            &["domain \"-x\": the name does not start with a letter or digit"],
        );
        assert!(
            parse(&one("").replace("name = \"a\"", &format!("name = \"{}\"", "y".repeat(32))))
                .is_ok()
        );
    }

    #[test]
    fn memory() {
        refused(
            &one("memory_mib = 0"),
            &[
                "domain \"a\": memory_mib = 0 but a domain needs memory",
                "at least 1",
            ],
        );
        refused(&one("memory_mib = -5"), &["domain \"a\": memory_mib = -5"]);
        refused(
            &one("memory_mib = 897"),
            &[
                "domain \"a\": memory_mib = 897 is more than machine virt-gicv3 can give one \
                 domain (896 MiB",
                "lower memory_mib to at most 896",
            ],
        );
        assert!(parse(&one("memory_mib = 896")).is_ok());
        refused(
            &two("memory_mib = 500").replace("name = \"a\"", "name = \"a\"\nmemory_mib = 400"),
            &[
                "sys.toml: the domains need 900 MiB together (a 400, b 500)",
                "only 896 MiB",
                "lower memory_mib of some domains by 4 MiB",
            ],
        );
    }

    #[test]
    fn vcpus_and_weight() {
        refused(
            &one("vcpus = 0"),
            &["domain \"a\": vcpus = 0 is outside 1..=8"],
        );
        refused(
            &one("vcpus = 9"),
            &["domain \"a\": vcpus = 9 is outside 1..=8", "set vcpus"],
        );
        refused(
            &one("weight = 0"),
            &["domain \"a\": weight = 0 is outside 1..=65535"],
        );
        refused(
            &one("weight = 65536"),
            &["domain \"a\": weight = 65536 is outside 1..=65535"],
        );
    }

    #[test]
    fn affinity() {
        refused(
            &one("affinity = []"),
            &["domain \"a\": affinity = [] names no CPU", "0..=3"],
        );
        refused(
            &one("affinity = [0, 4]"),
            &["domain \"a\": affinity names CPU 4, but machine virt-gicv3 has CPUs 0..=3"],
        );
        refused(&one("affinity = [-1]"), &["affinity names CPU -1"]);
        refused(
            &one("affinity = [2, 2]"),
            &["affinity names CPU 2 twice; list each CPU once"],
        );
        let system = parse(&one("affinity = [0, 1, 2, 3]")).unwrap();
        assert_eq!(system.domains[0].settings.affinity, 0b1111);
    }

    #[test]
    fn on_crash_and_cmdline() {
        let system = parse(&one("on_crash = \"restart\"\nmax_restarts = 100")).unwrap();
        assert_eq!(system.domains[0].settings.on_crash, OnCrash::Restart);
        assert_eq!(system.domains[0].settings.max_restarts, 100);
        let system = parse(&one("on_crash = \"restart\"")).unwrap();
        assert_eq!(system.domains[0].settings.max_restarts, 0, "no limit");
        refused(
            &one("max_restarts = 3"),
            &["domain \"a\": max_restarts is set but on_crash is \"destroy\""],
        );
        refused(
            &one("on_crash = \"restart\"\nmax_restarts = -1"),
            &["domain \"a\": max_restarts = -1 is outside 0..=4294967295"],
        );
        refused(
            &one("on_crash = \"reboot\""),
            &[
                "domain \"a\": on_crash = \"reboot\" is not a crash policy",
                "use on_crash = \"destroy\" or \"restart\"",
            ],
        );
        refused(
            &one("cmdline = \"a\\u0000b\""),
            &["domain \"a\": cmdline contains a NUL"],
        );
    }

    #[test]
    fn channels() {
        refused(
            &two("[[channel]]\nbetween = [\"a\", \"c\"]"),
            &[
                "the 1st [[channel]]: between names domain \"c\", which this file does not define",
                "use one of \"a\", \"b\"",
            ],
        );
        refused(
            &two("[[channel]]\nbetween = [\"b\", \"b\"]"),
            &["the 1st [[channel]]: between connects domain \"b\" to itself"],
        );
        refused(
            &two("[[channel]]\nbetween = [\"a\", \"b\"]\n[[channel]]\nbetween = [\"a\"]"),
            &["the 2nd [[channel]]: between lists 1 domains; a channel connects exactly two"],
        );
        let many = "[[channel]]\nbetween = [\"a\", \"b\"]\n".repeat(33);
        refused(
            &two(&many),
            &["33 channels", "at most 32", "remove 1 [[channel]]"],
        );
        assert_eq!(
            parse(&two(&"[[channel]]\nbetween = [\"a\", \"b\"]\n".repeat(32)))
                .unwrap()
                .channels
                .len(),
            32
        );
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("xtask-config-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A fake arm64 Image of `length` bytes claiming `image_size` bytes once running.
    fn fake_image(length: usize, image_size: u64) -> Vec<u8> {
        let mut image = vec![0u8; length];
        image[8..16].copy_from_slice(&0x8_0000u64.to_le_bytes());
        image[16..24].copy_from_slice(&image_size.to_le_bytes());
        image[56..60].copy_from_slice(b"ARM\x64");
        image
    }

    /// Writes `config` and a good image `k.img` into a fresh directory and loads it.
    fn load_files(name: &str, config: &str) -> (PathBuf, Result<System>) {
        let dir = temp_dir(name);
        std::fs::write(dir.join("k.img"), fake_image(4096, 4096)).unwrap();
        std::fs::write(dir.join("sys.toml"), config).unwrap();
        let system = System::load(&dir.join("sys.toml"), MachineLimits::of(VIRT), &dir);
        (dir, system)
    }

    fn image_error(name: &str, config: &str, prepare: impl Fn(&Path)) -> String {
        let (dir, system) = load_files(name, config);
        prepare(&dir);
        let message = format!("{:#}", system.unwrap().check_images().unwrap_err());
        let _ = std::fs::remove_dir_all(&dir);
        let file = format!("{}: domain \"a\": ", dir.join("sys.toml").display());
        assert!(message.starts_with(&file), "{message}");
        message
    }

    #[test]
    fn image_files() {
        let config = "[[domain]]\nname = \"a\"\nimage = \"k.img\"\n";
        let missing = image_error("missing", &config.replace("k.img", "gone.img"), |_| {});
        assert!(
            missing.contains("gone.img does not exist; fix the path")
                && missing.contains("\"pv-guest\""),
            "{missing}"
        );
        let directory = image_error("directory", &config.replace("k.img", "sub"), |dir| {
            std::fs::create_dir(dir.join("sub")).unwrap();
        });
        assert!(directory.contains("cannot be read"), "{directory}");
        let not_arm64 = image_error("elf", config, |dir| {
            std::fs::write(
                dir.join("k.img"),
                b"\x7fELF and more bytes than sixty-four, \
                and then some more, and then some more",
            )
            .unwrap();
        });
        assert!(
            not_arm64.contains("k.img is not an arm64 Image")
                && not_arm64.contains("llvm-objcopy -O binary"),
            "{not_arm64}"
        );
        let initrd = image_error("initrd", &format!("{config}initrd = \"r.cpio\"\n"), |_| {});
        assert!(
            initrd.contains("initrd") && initrd.contains("r.cpio does not exist"),
            "{initrd}"
        );
        let small = image_error("small", &format!("{config}memory_mib = 4\n"), |dir| {
            std::fs::write(dir.join("k.img"), fake_image(4096, 8 << 20)).unwrap();
        });
        assert!(
            small.contains("memory_mib = 4 is too small")
                && small.contains("raise memory_mib to at least 13"),
            "{small}"
        );
    }

    #[test]
    fn system_to_boot_pack() {
        let (dir, system) = load_files(
            "pack",
            "[[domain]]\nname = \"a\"\nimage = \"k.img\"\nweight = 7\naffinity = [1]\n\
             [[domain]]\nname = \"b\"\nimage = \"k.img\"\ncmdline = \"hello\"\n\
             [[channel]]\nbetween = [\"b\", \"a\"]\n",
        );
        let system = system.unwrap();
        system.check_images().unwrap();
        let pack_path = dir.join("pack.bin");
        crate::run::write_bootpack(&system.domains, &system.channels, &pack_path).unwrap();
        let bytes = std::fs::read(&pack_path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let pack = BootPack::parse(&bytes).unwrap();
        assert_eq!(pack.domain(1).unwrap().cmdline, "hello");
        let a = pack.settings(0).unwrap();
        assert_eq!((a.weight, a.affinity), (7, 0b10));
        assert_eq!(pack.settings(1), Some(DomainSettings::default()));
        assert_eq!(
            pack.channels().collect::<Vec<_>>(),
            vec![Channel { a: 1, b: 0 }]
        );
    }

    #[test]
    fn helpers() {
        assert_eq!(ordinal(1), "1st");
        assert_eq!(ordinal(2), "2nd");
        assert_eq!(ordinal(3), "3rd");
        assert_eq!(ordinal(4), "4th");
        assert_eq!(ordinal(11), "11th");
        assert_eq!(ordinal(22), "22nd");
        assert_eq!(edit_distance("vpcus", "vcpus"), 2);
        assert_eq!(closest("memory", &DOMAIN_KEYS), Some("memory_mib"));
        assert_eq!(closest("zzz", &DOMAIN_KEYS), None);
    }
}
