//! The boot-pack parser (`hyp::bootpack::BootPack::parse`) on arbitrary bytes. The CRC is
//! recomputed over the mutated bytes first (when `total_size` fits) so that the fuzzer gets
//! past the checksum to the rules behind it.
//!
//! Invariants: nothing panics; an accepted pack is wholly readable (every domain, its
//! settings, every channel, each image's arm64 header) within the format's limits; and
//! encoding what was read gives a pack that parses to the same domains, settings and
//! channels.
#![no_main]

use hyp::bootpack::{self, BootPack, Channel, DomainImage, DomainSettings, DomainSpec};
use libfuzzer_sys::fuzz_target;

/// What a parsed pack says, as owned values.
type Contents<'a> = (Vec<DomainImage<'a>>, Vec<DomainSettings>, Vec<Channel>);

fn contents<'a>(pack: &BootPack<'a>) -> Contents<'a> {
    let domains: Vec<DomainImage> = pack.domains().collect();
    assert_eq!(
        domains.len(),
        pack.domain_count(),
        "an entry of a valid pack does not decode"
    );
    assert!((1..=bootpack::MAX_DOMAINS).contains(&domains.len()));
    let settings: Vec<DomainSettings> = (0..domains.len())
        .map(|index| pack.settings(index).expect("settings of a valid entry"))
        .collect();
    assert!(pack.settings(domains.len()).is_none());
    assert!(pack.domain(domains.len()).is_none());
    let channels: Vec<Channel> = pack.channels().collect();
    assert_eq!(channels.len(), pack.channel_count());
    assert!(channels.len() <= bootpack::MAX_CHANNELS);
    for (index, domain) in domains.iter().enumerate() {
        assert!(!domain.name.is_empty() && domain.name.len() <= bootpack::NAME_LEN);
        assert!(domain.memory_mib >= 1);
        assert!((1..=bootpack::MAX_VCPUS).contains(&domain.vcpus));
        assert!(!domain.cmdline.contains('\0'));
        assert!(bootpack::arm64_image_header(domain.image).is_ok());
        assert!(domains[..index]
            .iter()
            .all(|other| other.name != domain.name));
        assert!(settings[index].weight >= 1 && settings[index].affinity != 0);
    }
    for channel in &channels {
        assert!(channel.a < domains.len() && channel.b < domains.len() && channel.a != channel.b);
    }
    (domains, settings, channels)
}

fuzz_target!(|input: &[u8]| {
    let mut bytes = input.to_vec();
    if bytes.len() >= bootpack::HEADER_SIZE {
        let total = u64::from_le_bytes(bytes[16..24].try_into().unwrap());
        if let Ok(total) = usize::try_from(total) {
            if (bootpack::HEADER_SIZE..=bytes.len()).contains(&total) {
                let crc = hyp::crc32::crc32(&bytes[bootpack::HEADER_SIZE..total]);
                bytes[24..28].copy_from_slice(&crc.to_le_bytes());
            }
        }
    }
    let Ok(pack) = BootPack::parse(&bytes) else {
        return;
    };
    assert!(pack.total_size() <= bytes.len());
    let (domains, settings, channels) = contents(&pack);

    let specs: Vec<DomainSpec> = domains
        .iter()
        .zip(&settings)
        .map(|(domain, settings)| DomainSpec {
            name: domain.name,
            memory_mib: domain.memory_mib,
            vcpus: domain.vcpus,
            image: domain.image,
            initrd: domain.initrd,
            cmdline: domain.cmdline,
            settings: *settings,
        })
        .collect();
    let size = bootpack::encoded_size(&specs, &channels).expect("what parsed encodes");
    let mut again = vec![0u8; size];
    let written = bootpack::encode(&specs, &channels, &mut again).expect("what parsed encodes");
    assert_eq!(written, size);
    let reparsed = BootPack::parse(&again).expect("an encoded pack parses");
    assert_eq!(contents(&reparsed), (domains, settings, channels));
});
