//! Machine profiles: the QEMU command line of every machine the hypervisor runs on.
//!
//! Each profile gives the machine-specific arguments; [`COMMON_ARGS`] are added for all of
//! them (no display, no monitor, the first UART on stdio, exit instead of rebooting).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Environment variable naming the Raspberry Pi 4 device tree (`bcm2711-rpi-4-b.dtb`)
/// that the `raspi4b` profile passes to QEMU with `-dtb`.
pub const RASPI4B_DTB_ENV: &str = "RASPI4B_DTB";

/// Arguments every profile gets. `-nodefaults` is safe: an explicit `-serial stdio` still
/// becomes the PL011 of `virt` (checked under QEMU 10.0.2), and it drops default devices
/// the hypervisor does not use.
pub const COMMON_ARGS: &[&str] = &[
    "-nodefaults",
    "-display",
    "none",
    "-monitor",
    "none",
    "-serial",
    "stdio",
    "-no-reboot",
];

/// A machine the hypervisor can be booted on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Machine {
    /// QEMU `virt` with virtualisation extensions and a GICv3, 4 Cortex-A72, 1 GiB.
    VirtGicv3,
    /// QEMU `virt` with virtualisation extensions and a GICv2, 4 Cortex-A72, 1 GiB.
    VirtGicv2,
    /// QEMU `raspi4b` (BCM2711); needs the board's device tree (see [`RASPI4B_DTB_ENV`]).
    Raspi4b,
}

impl Machine {
    /// Every machine, in the order `--help` lists them.
    pub const ALL: [Machine; 3] = [Machine::VirtGicv3, Machine::VirtGicv2, Machine::Raspi4b];

    /// The profile's name as given on the command line (`virt-gicv3`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Machine::VirtGicv3 => "virt-gicv3",
            Machine::VirtGicv2 => "virt-gicv2",
            Machine::Raspi4b => "raspi4b",
        }
    }

    /// The GIC version of the machine (what `run-on-xen --gic` wants).
    pub fn gic_version(self) -> u32 {
        match self {
            Machine::VirtGicv3 => 3,
            Machine::VirtGicv2 | Machine::Raspi4b => 2,
        }
    }

    /// Whether the hypervisor can power this machine off (PSCI SYSTEM_OFF); on the
    /// others it parks its CPUs after its `halt:` line and the runner stops QEMU.
    pub fn can_power_off(self) -> bool {
        !matches!(self, Machine::Raspi4b)
    }

    /// The machine-specific QEMU arguments (without [`COMMON_ARGS`]). Fails with a
    /// readable message when the machine cannot be run yet.
    pub fn args(self) -> Result<Vec<String>, String> {
        let virt = |gic: u32| {
            [
                "-M",
                &format!("virt,virtualization=on,gic-version={gic}"),
                "-cpu",
                "cortex-a72",
                "-smp",
                "4",
                "-m",
                "1G",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        match self {
            Machine::VirtGicv3 => Ok(virt(3)),
            Machine::VirtGicv2 => Ok(virt(2)),
            Machine::Raspi4b => {
                let dtb = std::env::var_os(RASPI4B_DTB_ENV).map(PathBuf::from);
                match dtb {
                    // The board's device tree makes the mini UART (QEMU's second serial
                    // port) the console: the first, the PL011, goes nowhere.
                    Some(path) if path.is_file() => Ok(vec![
                        "-M".into(),
                        "raspi4b".into(),
                        "-dtb".into(),
                        path.display().to_string(),
                        "-serial".into(),
                        "null".into(),
                    ]),
                    Some(path) => Err(format!(
                        "machine raspi4b: {RASPI4B_DTB_ENV}={} is not a file",
                        path.display()
                    )),
                    None => Err(format!(
                        "machine raspi4b is not yet supported: it needs bcm2711-rpi-4-b.dtb \
                         (set {RASPI4B_DTB_ENV}=/path/to/bcm2711-rpi-4-b.dtb)"
                    )),
                }
            }
        }
    }
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Machine {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Machine::ALL
            .into_iter()
            .find(|machine| machine.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Machine::ALL.iter().map(|m| m.name()).collect();
                format!("unknown machine {s:?} (known: {})", names.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for machine in Machine::ALL {
            assert_eq!(machine.name().parse::<Machine>(), Ok(machine));
        }
        assert!("virt".parse::<Machine>().is_err());
    }

    #[test]
    fn virt_profiles() {
        let args = Machine::VirtGicv2.args().unwrap();
        assert_eq!(args[1], "virt,virtualization=on,gic-version=2");
        assert!(args.contains(&"cortex-a72".to_string()));
    }
}
