//! The Linux guest (`cargo xtask run --linux`, the `linux` test scenario): Debian
//! bookworm's arm64 kernel, unmodified, with a small initramfs that xtask writes itself
//! (busybox from Debian's `busybox-static` and an `/init` script), booted as a domain of
//! the hypervisor beside a `pv-guest` domain. See `docs/guests/linux.md`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::images::{self, Images};
use crate::run::Domain;
use crate::setup;

/// The Linux domain's name (its console lines are `(linux) ...`).
pub const DOMAIN_NAME: &str = "linux";
/// The `pv-guest` domain that runs beside it.
pub const BESIDE_NAME: &str = "pv-a";
/// Guest RAM of the Linux domain in MiB.
pub const MEMORY_MIB: u32 = 256;
/// vCPUs of the Linux domain (the second one is started with PSCI CPU_ON).
pub const VCPUS: u32 = 2;
/// `image = "linux"` in a system configuration: the kernel xtask prepares.
pub const IMAGE_NAME: &str = "linux";
/// `initrd = "linux-initramfs"` in a system configuration: the initramfs xtask writes.
pub const INITRAMFS_NAME: &str = "linux-initramfs";
/// The kernel command-line word that makes `/init` power off after its commands
/// (a dotted word: Linux takes it for a module parameter and ignores it quietly).
pub const TEST_FLAG: &str = "hyp.mode=test";
/// The kernel command line: the console on `hvc0` (the console ring), only kernel
/// messages of level warning or worse on it (a WARN or an oops still shows; the rest is
/// in `dmesg`, which `/init` greps for Xen), and a reboot at once on a panic (the domain
/// then ends with `reboot`, so a dead kernel is not mistaken for a slow one).
pub const CMDLINE: &str = "console=hvc0 loglevel=5 panic=-1";
/// The first line `/init` prints.
pub const INIT_REACHED: &str = "hyp-linux: init reached";
/// `/init` prints this before each command's output.
pub const SECTION: &str = "hyp-linux: --- ";
/// In test mode, `/init` prints this, then reads one line from its console.
pub const WAITING_FOR_INPUT: &str = "hyp-linux: waiting for a line of console input";
/// The line the `linux` scenario types (a carriage return ends it, as a terminal's Enter).
pub const TYPED_LINE: &str = "typed into hvc0";
/// `/init`'s last line in test mode, before it powers off.
pub const TEST_DONE: &str = "hyp-linux: test done, powering off";

/// The `/init` of the initramfs. It mounts proc, sysfs and devtmpfs, shows the CPUs, the
/// interrupts (the Xen event upcall counts on each CPU as `events`) and the kernel's Xen
/// messages, then (command line [`TEST_FLAG`]) reads one line of console input, echoes it
/// and powers off, or starts a shell on `hvc0`.
pub const INIT_SCRIPT: &str = r#"#!/bin/sh
# /init of the hypervisor's Linux guest, written by `cargo xtask` (docs/guests/linux.md).
export PATH=/bin
/bin/busybox mount -t proc proc /proc
/bin/busybox --install -s /bin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "hyp-linux: init reached (pid $$, kernel $(uname -r))"
echo "hyp-linux: --- cat /proc/cpuinfo"
cat /proc/cpuinfo
echo "hyp-linux: --- cat /proc/interrupts"
cat /proc/interrupts
echo "hyp-linux: --- dmesg | grep -i xen"
dmesg | grep -i xen
echo "hyp-linux: --- end"
case " $(cat /proc/cmdline) " in
*" hyp.mode=test "*)
    echo "hyp-linux: waiting for a line of console input"
    read -t 120 line
    echo "hyp-linux: read from the console: [$line]"
    echo "hyp-linux: test done, powering off"
    poweroff -f
    ;;
esac
echo "hyp-linux: a busybox shell on hvc0; 'poweroff -f' ends the domain"
# The hypervisor prints whole lines only: end the prompt with a newline so it shows.
export PS1='linux:$PWD # \n'
setsid cttyhack sh
poweroff -f
"#;

/// The files xtask prepares for the Linux guest.
#[derive(Clone, Debug)]
pub struct LinuxImages {
    /// The kernel as a raw arm64 Image (`target/images/linux.img`).
    pub kernel: PathBuf,
    /// The initramfs, a cpio "newc" archive (`target/images/linux-initramfs.cpio`).
    pub initramfs: PathBuf,
}

impl LinuxImages {
    /// Where [`prepare`] puts them.
    pub fn paths() -> LinuxImages {
        let dir = setup::images_dir();
        LinuxImages {
            kernel: dir.join(format!("{IMAGE_NAME}.img")),
            initramfs: dir.join(format!("{INITRAMFS_NAME}.cpio")),
        }
    }

    /// Whether a domain uses either file (so they must be prepared before the boot).
    pub fn used_by(&self, domain: &Domain) -> bool {
        domain.image == self.kernel || domain.initrd.as_ref() == Some(&self.initramfs)
    }
}

/// Fetches (once; cached) Debian's kernel and busybox packages and writes the kernel
/// Image and the initramfs under `target/images`.
pub fn prepare() -> Result<LinuxImages> {
    let paths = LinuxImages::paths();
    let kernel_package = crate::debian::kernel_package()?;
    let vmlinuz = find_vmlinuz(&kernel_package)?;
    let busybox = crate::debian::busybox_package()?.join("bin/busybox");
    if !busybox.is_file() {
        bail!("{} is missing from busybox-static", busybox.display());
    }
    std::fs::create_dir_all(setup::images_dir())
        .with_context(|| format!("creating {}", setup::images_dir().display()))?;
    write_kernel(&vmlinuz, &paths.kernel)?;
    let busybox_bytes =
        std::fs::read(&busybox).with_context(|| format!("reading {}", busybox.display()))?;
    let archive = initramfs(&busybox_bytes);
    write_if_changed(&paths.initramfs, &archive)?;
    Ok(paths)
}

/// `boot/vmlinuz-*` of the unpacked kernel package.
fn find_vmlinuz(package: &Path) -> Result<PathBuf> {
    let boot = package.join("boot");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&boot)
        .with_context(|| format!("reading {}", boot.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("vmlinuz-"))
        })
        .collect();
    found.sort();
    found
        .pop()
        .with_context(|| format!("no vmlinuz-* in {}", boot.display()))
}

/// Writes the kernel as a raw Image: Debian's arm64 `vmlinuz` is the Image itself (with
/// its EFI stub, which the hypervisor ignores); a gzip-compressed one (other releases)
/// is unpacked with the system's `gzip`.
fn write_kernel(vmlinuz: &Path, target: &Path) -> Result<()> {
    let bytes = std::fs::read(vmlinuz).with_context(|| format!("reading {}", vmlinuz.display()))?;
    let image = if bytes.starts_with(&[0x1f, 0x8b]) {
        let output = Command::new("gzip")
            .args(["-dc"])
            .arg(vmlinuz)
            .output()
            .context("running gzip -dc (to unpack the kernel)")?;
        if !output.status.success() {
            bail!(
                "gzip -dc {} failed: {}",
                vmlinuz.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        output.stdout
    } else {
        bytes
    };
    if !images::has_arm64_header(&image) {
        bail!("{} is not an arm64 kernel Image", vmlinuz.display());
    }
    write_if_changed(target, &image)
}

fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// The initramfs: a cpio "newc" archive holding `/init` ([`INIT_SCRIPT`]),
/// `/bin/busybox`, `/bin/sh` (a link to it), `/dev/console` (the device node the kernel
/// opens for init's standard streams) and the mount points.
pub fn initramfs(busybox: &[u8]) -> Vec<u8> {
    let mut cpio = CpioWriter::default();
    for dir in ["bin", "dev", "proc", "sys", "tmp", "root", "etc"] {
        cpio.directory(dir);
    }
    cpio.char_device("dev/console", 5, 1);
    cpio.file("bin/busybox", 0o755, busybox);
    cpio.symlink("bin/sh", "busybox");
    cpio.file("init", 0o755, INIT_SCRIPT.as_bytes());
    cpio.finish()
}

/// A writer of cpio "newc" (SVR4, no CRC) archives, the format the kernel unpacks into
/// its initial root file system.
#[derive(Default)]
struct CpioWriter {
    bytes: Vec<u8>,
    next_inode: u32,
}

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

impl CpioWriter {
    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.next_inode += 1;
        let name_size = name.len() + 1;
        let nlink = if mode & S_IFDIR != 0 { 2 } else { 1 };
        let fields = [
            self.next_inode,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            data.len() as u32,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            name_size as u32,
            0, // check
        ];
        let mut header = String::from("070701");
        for field in fields {
            header.push_str(&format!("{field:08X}"));
        }
        self.bytes.extend_from_slice(header.as_bytes());
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad();
        self.bytes.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }

    fn directory(&mut self, name: &str) {
        self.entry(name, S_IFDIR | 0o755, (0, 0), &[]);
    }

    fn file(&mut self, name: &str, permissions: u32, data: &[u8]) {
        self.entry(name, S_IFREG | permissions, (0, 0), data);
    }

    fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, S_IFLNK | 0o777, (0, 0), target.as_bytes());
    }

    fn char_device(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, S_IFCHR | 0o600, (major, minor), &[]);
    }

    fn finish(mut self) -> Vec<u8> {
        self.next_inode = 0;
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        // The kernel reads the archive in 512-byte blocks' worth; pad as cpio(1) does.
        while !self.bytes.len().is_multiple_of(512) {
            self.bytes.push(0);
        }
        self.bytes
    }
}

/// The Linux domain: [`MEMORY_MIB`], [`VCPUS`], the prepared kernel and initramfs, and
/// [`CMDLINE`] (plus [`TEST_FLAG`] when `test`).
pub fn domain(linux: &LinuxImages, test: bool) -> Domain {
    let cmdline = if test {
        format!("{CMDLINE} {TEST_FLAG}")
    } else {
        CMDLINE.to_string()
    };
    let mut domain = Domain::new(DOMAIN_NAME, &linux.kernel, &cmdline);
    domain.memory_mib = MEMORY_MIB;
    domain.vcpus = VCPUS;
    domain.initrd = Some(linux.initramfs.clone());
    domain
}

/// The system of `cargo xtask run --linux` (and of the `linux` scenario with `test`):
/// the Linux domain, and a `pv-guest` domain beside it running its default tests
/// (the same as `examples/systems/linux.toml`).
pub fn system(images: &Images, linux: &LinuxImages, test: bool) -> Vec<Domain> {
    vec![
        domain(linux, test),
        Domain::new(BESIDE_NAME, &images.guest_img, ""),
    ]
}

/// Kernel-log patterns that fail the `linux` scenario: a BUG, an oops, a WARN, a bad
/// access the kernel could not handle, a panic.
pub const FATAL_PATTERNS: [&str; 8] = [
    "BUG:",
    "kernel BUG",
    "Oops",
    "WARNING:",
    "Unable to handle",
    "Internal error",
    "Kernel panic",
    "Bad mode",
];

/// Checks the Linux domain's console text (its lines without the `(linux) ` prefix)
/// after a `linux` scenario run: no [`FATAL_PATTERNS`], init reached, the typed line read
/// back, init done, Xen detected, 2 CPUs online, and the Xen event interrupt counted on
/// each CPU.
pub fn check_console(lines: &[&str]) -> Result<(), String> {
    if let Some(line) = lines
        .iter()
        .find(|line| FATAL_PATTERNS.iter().any(|pattern| line.contains(pattern)))
    {
        return Err(format!("the kernel log shows trouble: {line:?}"));
    }
    if !lines.iter().any(|line| line.starts_with(INIT_REACHED)) {
        return Err(format!("no `{INIT_REACHED}` line: init was not reached"));
    }
    let read_back = format!("hyp-linux: read from the console: [{TYPED_LINE}]");
    if !lines.iter().any(|line| *line == read_back) {
        return Err(format!(
            "no `{read_back}` line: console input did not reach the shell"
        ));
    }
    if !lines.contains(&TEST_DONE) {
        return Err(format!("no `{TEST_DONE}` line: init did not finish"));
    }
    let xen = section(lines, "dmesg | grep -i xen");
    if !xen
        .iter()
        .any(|line| line.contains("Xen 4.17 support found"))
    {
        return Err("the kernel did not report `Xen 4.17 support found`".into());
    }
    let cpuinfo = section(lines, "cat /proc/cpuinfo");
    let processors = cpuinfo
        .iter()
        .filter(|line| line.starts_with("processor"))
        .count();
    if processors != VCPUS as usize {
        return Err(format!(
            "/proc/cpuinfo lists {processors} processors, expected {VCPUS}"
        ));
    }
    let interrupts = section(lines, "cat /proc/interrupts");
    let counts = event_interrupt_counts(&interrupts)
        .ok_or("/proc/interrupts has no Xen `events` line for 2 CPUs")?;
    if counts.contains(&0) {
        return Err(format!(
            "the Xen event interrupt did not fire on every CPU (counts {counts:?})"
        ));
    }
    Ok(())
}

/// The lines `/init` printed after `hyp-linux: --- <command>` up to the next section.
fn section<'a>(lines: &[&'a str], command: &str) -> Vec<&'a str> {
    let header = format!("{SECTION}{command}");
    lines
        .iter()
        .skip_while(|line| **line != header)
        .skip(1)
        .take_while(|line| !line.starts_with(SECTION))
        .copied()
        .collect()
}

/// The per-CPU counts of the Xen event upcall in `/proc/interrupts` (the line whose
/// name is `events`), when the header lists exactly [`VCPUS`] CPUs.
fn event_interrupt_counts(interrupts: &[&str]) -> Option<Vec<u64>> {
    let cpus = interrupts
        .first()?
        .split_whitespace()
        .filter(|word| word.starts_with("CPU"))
        .count();
    if cpus != VCPUS as usize {
        return None;
    }
    let line = interrupts
        .iter()
        .find(|line| line.split_whitespace().last() == Some("events"))?;
    let counts: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(cpus)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    Some(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry read back: name, mode, (rdev major, minor), data.
    type Entry = (String, u32, (u32, u32), Vec<u8>);

    /// Reads back the entries of a newc archive.
    fn parse_cpio(bytes: &[u8]) -> Vec<Entry> {
        let mut entries = Vec::new();
        let mut at = 0;
        loop {
            let header = std::str::from_utf8(&bytes[at..at + 110]).unwrap();
            assert_eq!(&header[..6], "070701");
            let field = |i: usize| u32::from_str_radix(&header[6 + 8 * i..14 + 8 * i], 16).unwrap();
            let (mode, size, rdev, name_size) = (
                field(1),
                field(6) as usize,
                (field(9), field(10)),
                field(11) as usize,
            );
            let name_start = at + 110;
            let name = std::str::from_utf8(&bytes[name_start..name_start + name_size - 1])
                .unwrap()
                .to_string();
            assert_eq!(bytes[name_start + name_size - 1], 0);
            let data_start = (name_start + name_size).next_multiple_of(4);
            let data = bytes[data_start..data_start + size].to_vec();
            at = (data_start + size).next_multiple_of(4);
            if name == "TRAILER!!!" {
                assert!(bytes.len().is_multiple_of(512));
                assert!(bytes[at..].iter().all(|b| *b == 0));
                return entries;
            }
            entries.push((name, mode, rdev, data));
        }
    }

    #[test]
    fn initramfs_layout() {
        let archive = initramfs(b"\x7fELF busybox");
        let entries = parse_cpio(&archive);
        let find = |name: &str| entries.iter().find(|entry| entry.0 == name).unwrap();
        assert_eq!(find("init").1, S_IFREG | 0o755);
        assert_eq!(find("init").3, INIT_SCRIPT.as_bytes());
        assert_eq!(find("bin/busybox").3, b"\x7fELF busybox");
        assert_eq!(find("bin/sh").1, S_IFLNK | 0o777);
        assert_eq!(find("bin/sh").3, b"busybox");
        assert_eq!(find("dev/console").1, S_IFCHR | 0o600);
        assert_eq!(find("dev/console").2, (5, 1));
        for dir in ["bin", "dev", "proc", "sys"] {
            assert_eq!(find(dir).1, S_IFDIR | 0o755);
        }
        // Parents come before their children.
        let position = |name: &str| entries.iter().position(|entry| entry.0 == name);
        assert!(position("dev") < position("dev/console"));
        assert!(position("bin") < position("bin/busybox"));
    }

    #[test]
    fn init_script_matches_the_constants() {
        assert!(INIT_SCRIPT.contains(&format!("echo \"{INIT_REACHED}")));
        assert!(INIT_SCRIPT.contains(&format!("echo \"{TEST_DONE}\"")));
        assert!(INIT_SCRIPT.contains(&format!("echo \"{WAITING_FOR_INPUT}\"\n    read ")));
        assert!(INIT_SCRIPT.contains(&format!("*\" {TEST_FLAG} \"*)")));
        for command in [
            "cat /proc/cpuinfo",
            "cat /proc/interrupts",
            "dmesg | grep -i xen",
        ] {
            assert!(INIT_SCRIPT.contains(&format!("echo \"{SECTION}{command}\"\n{command}\n")));
        }
    }

    fn good_console() -> Vec<&'static str> {
        vec![
            "hyp-linux: init reached (pid 1, kernel 6.1.0-56-arm64)",
            "hyp-linux: --- cat /proc/cpuinfo",
            "processor\t: 0",
            "BogoMIPS\t: 125.00",
            "",
            "processor\t: 1",
            "hyp-linux: --- cat /proc/interrupts",
            "           CPU0       CPU1       ",
            " 11:       1234       567     GICv3  27 Level     arch_timer",
            " 13:         40        12     GICv3  31 Level     events",
            " 14:          3         0   xen-dyn    -event     hvc_console",
            "hyp-linux: --- dmesg | grep -i xen",
            "[    0.000000] Xen 4.17 support found",
            "hyp-linux: --- end",
            WAITING_FOR_INPUT,
            "typed into hvc0",
            "hyp-linux: read from the console: [typed into hvc0]",
            TEST_DONE,
        ]
    }

    #[test]
    fn a_good_boot_passes() {
        assert_eq!(check_console(&good_console()), Ok(()));
    }

    #[test]
    fn trouble_fails() {
        for line in [
            "[    1.0] WARNING: CPU: 0 PID: 1 at drivers/xen/events/events_base.c:1 x",
            "[    1.0] BUG: scheduling while atomic",
            "[    1.0] Internal error: Oops: 96000004 [#1] SMP",
            "[    1.0] Unable to handle kernel paging request at virtual address 0",
        ] {
            let mut console = good_console();
            console.insert(3, line);
            assert!(check_console(&console).is_err(), "{line}");
        }
        let without = |text: &str| {
            let console: Vec<&str> = good_console()
                .into_iter()
                .filter(|line| !line.contains(text))
                .collect();
            check_console(&console)
        };
        assert!(without("init reached").unwrap_err().contains("init"));
        assert!(without("test done").is_err());
        assert!(without("read from").unwrap_err().contains("console input"));
        assert!(without("Xen 4.17").unwrap_err().contains("Xen"));
        assert!(without("processor\t: 1")
            .unwrap_err()
            .contains("processors"));
        assert!(without("events").unwrap_err().contains("events"));
        let mut silent = good_console();
        silent[9] = " 13:          7         0     GICv3  31 Level     events";
        assert!(check_console(&silent).unwrap_err().contains("every CPU"));
    }
}
