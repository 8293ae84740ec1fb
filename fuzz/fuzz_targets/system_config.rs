//! The system-configuration parser of `cargo xtask` (`xtask/src/config.rs`, compiled in
//! here by path with small stand-ins for the xtask modules it names) on arbitrary text.
//!
//! Invariants: nothing panics; every refusal is one line naming the file; an accepted
//! system keeps every limit (1..=8 domains with unique valid names, vCPUs within the
//! machine's and the hypervisor's limits, memory that fits, affinity on existing CPUs,
//! channels between two distinct domains); and its boot pack (with a stand-in image)
//! encodes and parses back to the same domains, settings and channels.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

#[allow(dead_code)]
#[path = "../../xtask/src/config.rs"]
mod config;

/// Stand-ins for the xtask modules `config.rs` refers to (same values as there).
mod args {
    pub const DEFAULT_MEMORY_MIB: u32 = 32;
    pub const DEFAULT_VCPUS: u32 = 1;
}
mod linux {
    pub const IMAGE_NAME: &str = "linux";
    pub const INITRAMFS_NAME: &str = "linux-initramfs";
}
mod setup {
    pub fn images_dir() -> std::path::PathBuf {
        std::path::PathBuf::from("/nonexistent/images")
    }
}
mod run {
    use hyp::bootpack::DomainSettings;
    use std::path::PathBuf;

    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct Domain {
        pub name: String,
        pub memory_mib: u32,
        pub vcpus: u32,
        pub image: PathBuf,
        pub initrd: Option<PathBuf>,
        pub cmdline: String,
        pub settings: DomainSettings,
    }
}

use config::{MachineLimits, System};
use hyp::bootpack::{self, BootPack, DomainSpec};

fuzz_target!(|text: &str| {
    for machine in [qemu::Machine::VirtGicv3, qemu::Machine::Raspi4b] {
        let limits = MachineLimits::of(machine);
        let file = Path::new("fuzz.toml");
        let system =
            match System::parse(text, file, Path::new("/base"), limits, &setup::images_dir()) {
                Ok(system) => system,
                Err(error) => {
                    let message = format!("{error:#}");
                    assert!(message.starts_with("fuzz.toml: "), "{message}");
                    assert!(
                        !message.contains('\n'),
                        "a refusal spans lines: {message:?}"
                    );
                    continue;
                }
            };
        let domains = &system.domains;
        assert!((1..=bootpack::MAX_DOMAINS).contains(&domains.len()));
        let total: u64 = domains
            .iter()
            .map(|domain| u64::from(domain.memory_mib))
            .sum();
        assert!(total <= u64::from(limits.domain_ram_mib()));
        for (index, domain) in domains.iter().enumerate() {
            assert!(!domain.name.is_empty() && domain.name.len() <= bootpack::NAME_LEN);
            assert!(domains[..index]
                .iter()
                .all(|other| other.name != domain.name));
            assert!(domain.memory_mib >= 1);
            assert!(domain.vcpus >= 1 && domain.vcpus <= bootpack::MAX_VCPUS);
            assert!(domain.settings.weight >= 1);
            assert_ne!(domain.settings.affinity, 0);
            // No `affinity` key means every CPU (all bits); a list names existing CPUs only.
            let affinity = domain.settings.affinity;
            assert!(
                affinity == u64::MAX || affinity >> limits.cpus == 0,
                "affinity {affinity:#x}"
            );
        }
        assert!(system.channels.len() <= bootpack::MAX_CHANNELS);
        for channel in &system.channels {
            assert!(
                channel.a < domains.len() && channel.b < domains.len() && channel.a != channel.b
            );
        }

        // The boot pack xtask would write (with a minimal image) says the same.
        let mut image = vec![0u8; 64];
        image[56..60].copy_from_slice(b"ARM\x64");
        let specs: Vec<DomainSpec> = domains
            .iter()
            .map(|domain| DomainSpec {
                name: &domain.name,
                memory_mib: domain.memory_mib,
                vcpus: domain.vcpus,
                image: &image,
                initrd: &[],
                cmdline: &domain.cmdline,
                settings: domain.settings,
            })
            .collect();
        let size = bootpack::encoded_size(&specs, &system.channels)
            .unwrap_or_else(|error| panic!("an accepted system does not encode: {error:?}"));
        let mut pack = vec![0u8; size];
        bootpack::encode(&specs, &system.channels, &mut pack).expect("encodes");
        let parsed = BootPack::parse(&pack).expect("parses");
        for (index, (domain, spec)) in parsed.domains().zip(&specs).enumerate() {
            assert_eq!(domain.name, spec.name);
            assert_eq!(domain.memory_mib, spec.memory_mib);
            assert_eq!(domain.vcpus, spec.vcpus);
            assert_eq!(domain.cmdline, spec.cmdline);
            assert_eq!(parsed.settings(index), Some(spec.settings));
        }
        assert_eq!(parsed.channels().collect::<Vec<_>>(), system.channels);
    }
});
