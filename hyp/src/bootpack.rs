//! The boot-pack format (see `docs/ARCHITECTURE.md`): the guests and their settings in one
//! blob, passed to the hypervisor as its initrd.
//!
//! One definition serves both sides: [`BootPack::parse`] runs in the hypervisor on untrusted
//! bytes and never panics; [`encode`] runs in the host tool (`xtask`) and applies the same
//! rules, so the tool refuses exactly what the hypervisor would refuse. Neither allocates.
//!
//! All integers are little-endian. Layout:
//!
//! ```text
//! header (32 bytes): magic "HYPPACK\0", version u32 (3), domain_count u32, total_size u64,
//!                    checksum u32 (CRC-32 of [32, total_size)), reserved u32
//! entries (104 bytes each): name [u8; 32], memory_mib u32, vcpus u32, weight u16,
//!                    on_crash u16, max_restarts u32, affinity u64,
//!                    image/initrd/cmdline {offset u64, size u64}
//! channel table: channel_count u32, reserved u32, then per channel
//!                    {domain_a u32, domain_b u32} (indices of entries)
//! payloads: 8-byte aligned, inside [end of the channel table, total_size)
//! ```
//!
//! The per-domain scheduling and crash settings are read with [`BootPack::settings`], the
//! pre-connected event channels with [`BootPack::channels`].

use crate::crc32::crc32;

/// The first eight bytes of every boot pack.
pub const MAGIC: [u8; 8] = *b"HYPPACK\0";
/// The format version this code reads and writes.
pub const VERSION: u32 = 3;
/// Size of the pack header in bytes.
pub const HEADER_SIZE: usize = 32;
/// Size of one domain entry in bytes.
pub const ENTRY_SIZE: usize = 104;
/// Size of the channel table's own header (count and reserved word).
pub const CHANNEL_TABLE_HEADER_SIZE: usize = 8;
/// Size of one channel of the channel table.
pub const CHANNEL_SIZE: usize = 8;
/// Most pre-connected event channels one pack may describe.
pub const MAX_CHANNELS: usize = 32;
/// The scheduling weight a domain gets when its configuration names none.
pub const DEFAULT_WEIGHT: u16 = 256;
/// Most domains one pack may describe.
pub const MAX_DOMAINS: usize = 8;
/// Size of the NUL-padded name field of an entry.
pub const NAME_LEN: usize = 32;
/// Most virtual CPUs one domain may have.
pub const MAX_VCPUS: u32 = 8;
/// Smallest accepted kernel image: the arm64 `Image` header is 64 bytes.
pub const MIN_IMAGE_SIZE: usize = 64;
/// Alignment of every payload's start offset.
pub const PAYLOAD_ALIGN: u64 = 8;
/// The arm64 Linux `Image` header magic (`"ARM\x64"`), at byte 56 of the image.
pub const ARM64_IMAGE_MAGIC: u32 = 0x644d_5241;

/// Offsets inside the header.
const MAGIC_OFFSET: usize = 0;
const VERSION_OFFSET: usize = 8;
const DOMAIN_COUNT_OFFSET: usize = 12;
const TOTAL_SIZE_OFFSET: usize = 16;
const CHECKSUM_OFFSET: usize = 24;
const HEADER_RESERVED_OFFSET: usize = 28;

/// Offsets inside an entry.
const NAME_OFFSET: usize = 0;
const MEMORY_OFFSET: usize = 32;
const VCPUS_OFFSET: usize = 36;
const WEIGHT_OFFSET: usize = 40;
const ON_CRASH_OFFSET: usize = 42;
const MAX_RESTARTS_OFFSET: usize = 44;
const AFFINITY_OFFSET: usize = 48;
const IMAGE_OFFSET: usize = 56;
const INITRD_OFFSET: usize = 72;
const CMDLINE_OFFSET: usize = 88;

/// What the hypervisor does when a domain crashes (entry field `on_crash`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum OnCrash {
    /// Tear the domain down and return its memory; the others keep running (code 0).
    #[default]
    Destroy,
    /// Tear the domain down, then build it again from its entry: same image, command line,
    /// memory size and channels, fresh memory (code 1). At most
    /// [`DomainSettings::max_restarts`] times (0: no limit); after that, destroy.
    Restart,
}

impl OnCrash {
    /// The code stored in the entry.
    pub fn code(self) -> u16 {
        match self {
            OnCrash::Destroy => 0,
            OnCrash::Restart => 1,
        }
    }

    /// The policy for `code`, if this version knows it.
    pub fn from_code(code: u16) -> Option<OnCrash> {
        match code {
            0 => Some(OnCrash::Destroy),
            1 => Some(OnCrash::Restart),
            _ => None,
        }
    }

    /// The policy's name as configuration files spell it.
    pub fn name(self) -> &'static str {
        match self {
            OnCrash::Destroy => "destroy",
            OnCrash::Restart => "restart",
        }
    }
}

/// A domain's scheduling and crash settings, as stored in its entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainSettings {
    /// Proportional-share scheduling weight (1..=65535; [`DEFAULT_WEIGHT`] by default): a
    /// domain with twice the weight of another gets twice its CPU time under contention.
    pub weight: u16,
    /// Physical CPUs the domain's vCPUs may run on: bit `n` = CPU `n` (the index of the
    /// CPU in the hypervisor's boot order). Never zero; bits naming CPUs the machine lacks
    /// are the hypervisor's to refuse or ignore (the pack does not know the machine).
    pub affinity: u64,
    /// What happens when the domain crashes.
    pub on_crash: OnCrash,
    /// With [`OnCrash::Restart`]: how many restarts at most (0: no limit); the crash after
    /// the last one destroys the domain. Always 0 with [`OnCrash::Destroy`].
    pub max_restarts: u32,
}

impl Default for DomainSettings {
    /// Weight [`DEFAULT_WEIGHT`], every CPU, destroy on crash.
    fn default() -> Self {
        DomainSettings {
            weight: DEFAULT_WEIGHT,
            affinity: u64::MAX,
            on_crash: OnCrash::Destroy,
            max_restarts: 0,
        }
    }
}

/// An interdomain event channel the hypervisor connects before the domains start: the
/// indices (= domain ids) of its two ends, never equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channel {
    /// Index of the first end's domain entry.
    pub a: usize,
    /// Index of the second end's domain entry.
    pub b: usize,
}

/// What is wrong with one entry of the channel table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelProblem {
    /// An end names a domain index at or beyond `domain_count`.
    UnknownDomain {
        /// The index found.
        domain: u64,
    },
    /// Both ends name the same domain.
    SameDomain,
}

impl ChannelProblem {
    /// A short English description.
    pub fn describe(&self) -> &'static str {
        match self {
            ChannelProblem::UnknownDomain { .. } => "channel names a domain the pack lacks",
            ChannelProblem::SameDomain => "channel connects a domain to itself",
        }
    }
}

/// Which of a domain's payloads an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// The kernel image.
    Image,
    /// The initial ramdisk.
    Initrd,
    /// The kernel command line.
    Cmdline,
}

impl Payload {
    /// All payload kinds, in entry order.
    pub const ALL: [Payload; 3] = [Payload::Image, Payload::Initrd, Payload::Cmdline];

    /// Lower-case name of the payload.
    pub fn describe(&self) -> &'static str {
        match self {
            Payload::Image => "image",
            Payload::Initrd => "initrd",
            Payload::Cmdline => "cmdline",
        }
    }

    fn entry_offset(self) -> usize {
        match self {
            Payload::Image => IMAGE_OFFSET,
            Payload::Initrd => INITRD_OFFSET,
            Payload::Cmdline => CMDLINE_OFFSET,
        }
    }
}

/// What is wrong with one domain's entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainProblem {
    /// The name is empty.
    EmptyName,
    /// The name is longer than [`NAME_LEN`] bytes.
    NameTooLong,
    /// The name is not UTF-8, contains control characters, or has bytes after its NUL
    /// padding started.
    BadName,
    /// Another, earlier domain has the same name.
    DuplicateName {
        /// Index of the earlier domain.
        first: usize,
    },
    /// `memory_mib` is zero (or too large to express in bytes).
    BadMemorySize,
    /// `vcpus` is outside `1..=MAX_VCPUS`.
    BadVcpuCount {
        /// The value found.
        vcpus: u32,
    },
    /// `max_restarts` is not zero although `on_crash` is not restart.
    MaxRestartsWithoutRestart,
    /// The scheduling weight is zero.
    BadWeight,
    /// The affinity mask names no CPU.
    EmptyAffinity,
    /// `on_crash` holds a code this version does not know (0 destroy and 1 restart are
    /// known).
    BadOnCrash {
        /// The code found.
        code: u16,
    },
    /// A payload lies (partly) outside the payload area, or its end overflows.
    PayloadOutOfBounds {
        /// Which payload.
        payload: Payload,
    },
    /// A payload does not start 8-byte aligned.
    PayloadMisaligned {
        /// Which payload.
        payload: Payload,
    },
    /// Two payloads share bytes.
    PayloadsOverlap {
        /// This domain's payload.
        payload: Payload,
        /// Index of the domain owning the other payload.
        other_domain: usize,
        /// The other payload.
        other_payload: Payload,
    },
    /// The image is smaller than [`MIN_IMAGE_SIZE`].
    ImageTooSmall,
    /// The image lacks the arm64 `Image` header magic.
    NotArm64Image,
    /// The command line is not UTF-8 or contains a NUL byte.
    BadCmdline,
}

impl DomainProblem {
    /// A short English description.
    pub fn describe(&self) -> &'static str {
        match self {
            DomainProblem::EmptyName => "domain name is empty",
            DomainProblem::NameTooLong => "domain name is longer than 32 bytes",
            DomainProblem::BadName => {
                "domain name is not UTF-8, has control characters or bad NUL padding"
            }
            DomainProblem::DuplicateName { .. } => "domain name is used twice",
            DomainProblem::BadMemorySize => "domain memory size is zero or too large",
            DomainProblem::BadVcpuCount { .. } => "domain vCPU count is not in 1..=8",
            DomainProblem::MaxRestartsWithoutRestart => {
                "domain max_restarts is set but on_crash is not restart"
            }
            DomainProblem::BadWeight => "domain weight is zero",
            DomainProblem::EmptyAffinity => "domain affinity names no CPU",
            DomainProblem::BadOnCrash { .. } => "domain on_crash policy is unknown",
            DomainProblem::PayloadOutOfBounds { .. } => "payload lies outside the payload area",
            DomainProblem::PayloadMisaligned { .. } => "payload does not start 8-byte aligned",
            DomainProblem::PayloadsOverlap { .. } => "two payloads overlap",
            DomainProblem::ImageTooSmall => "image is smaller than its 64-byte header",
            DomainProblem::NotArm64Image => "image has no arm64 Image header",
            DomainProblem::BadCmdline => "command line is not UTF-8 or contains NUL",
        }
    }
}

/// Why a boot pack (or an image header) was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PackError {
    /// The bytes end before the structure being read does.
    Truncated {
        /// Bytes the structure needs.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
    /// The magic is not [`MAGIC`].
    BadMagic,
    /// The version is not [`VERSION`].
    UnsupportedVersion {
        /// The version found.
        found: u32,
    },
    /// The domain count is outside `1..=MAX_DOMAINS`.
    BadDomainCount {
        /// The count found (or given to the encoder).
        count: u64,
    },
    /// `total_size` is smaller than the header and entries.
    BadTotalSize {
        /// The size found.
        total_size: u64,
    },
    /// The header's reserved field is not zero.
    HeaderReservedNotZero,
    /// The channel count is above [`MAX_CHANNELS`].
    BadChannelCount {
        /// The count found (or given to the encoder).
        count: u64,
    },
    /// The channel table's reserved word is not zero.
    ChannelTableReservedNotZero,
    /// One channel of the channel table is wrong.
    Channel {
        /// Index of the channel (0-based).
        index: usize,
        /// What is wrong.
        problem: ChannelProblem,
    },
    /// The CRC-32 of the pack does not match the header.
    ChecksumMismatch {
        /// Checksum stored in the header.
        stored: u32,
        /// Checksum of the bytes.
        computed: u32,
    },
    /// The encoder's output buffer is too small.
    BufferTooSmall {
        /// Bytes needed.
        needed: u64,
    },
    /// An image given to [`arm64_image_header`] is shorter than 64 bytes.
    ImageTooSmall,
    /// An image given to [`arm64_image_header`] lacks the `ARM\x64` magic.
    NotArm64Image,
    /// One domain entry is wrong.
    Domain {
        /// Index of the domain entry (0-based).
        index: usize,
        /// What is wrong.
        problem: DomainProblem,
    },
}

impl PackError {
    /// A short English description.
    pub fn describe(&self) -> &'static str {
        match self {
            PackError::Truncated { .. } => "boot pack is truncated",
            PackError::BadMagic => "not a boot pack (bad magic)",
            PackError::UnsupportedVersion { .. } => "unsupported boot pack version",
            PackError::BadDomainCount { .. } => "domain count is not in 1..=8",
            PackError::BadTotalSize { .. } => "total size is smaller than header and entries",
            PackError::HeaderReservedNotZero => "header reserved field is not zero",
            PackError::BadChannelCount { .. } => "channel count is above 32",
            PackError::ChannelTableReservedNotZero => "channel table reserved field is not zero",
            PackError::Channel { problem, .. } => problem.describe(),
            PackError::ChecksumMismatch { .. } => "boot pack checksum mismatch",
            PackError::BufferTooSmall { .. } => "output buffer too small",
            PackError::ImageTooSmall => "image is smaller than its 64-byte header",
            PackError::NotArm64Image => "image has no arm64 Image header",
            PackError::Domain { problem, .. } => problem.describe(),
        }
    }

    /// The index of the domain entry the error is about, if it is about one.
    pub fn domain_index(&self) -> Option<usize> {
        match self {
            PackError::Domain { index, .. } => Some(*index),
            _ => None,
        }
    }
}

fn domain_error(index: usize, problem: DomainProblem) -> PackError {
    PackError::Domain { index, problem }
}

fn read_bytes<const N: usize>(bytes: &[u8], offset: usize) -> Option<[u8; N]> {
    let end = offset.checked_add(N)?;
    let slice = bytes.get(offset..end)?;
    let mut array = [0u8; N];
    array.copy_from_slice(slice);
    Some(array)
}

fn read_u16(bytes: &[u8], offset: usize) -> Option<u16> {
    read_bytes::<2>(bytes, offset).map(u16::from_le_bytes)
}

fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    read_bytes::<4>(bytes, offset).map(u32::from_le_bytes)
}

fn read_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    read_bytes::<8>(bytes, offset).map(u64::from_le_bytes)
}

fn write_bytes(out: &mut [u8], offset: usize, value: &[u8]) -> Result<(), PackError> {
    let too_small = PackError::BufferTooSmall {
        needed: (offset as u64).saturating_add(value.len() as u64),
    };
    let end = offset.checked_add(value.len()).ok_or(too_small)?;
    out.get_mut(offset..end)
        .ok_or(too_small)?
        .copy_from_slice(value);
    Ok(())
}

/// The fields of the Linux arm64 `Image` header the loader needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arm64ImageHeader {
    /// Where the image wants to sit above a 2 MiB aligned base.
    pub text_offset: u64,
    /// Bytes the image occupies once running, including BSS (0 on old kernels: unknown).
    pub image_size: u64,
    /// Header flags (bit 0: big-endian kernel; bits 1-2: page size; bit 3: placement).
    pub flags: u64,
}

impl Arm64ImageHeader {
    /// Whether the kernel is big-endian (flag bit 0).
    pub fn is_big_endian(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// Reads the arm64 Linux `Image` header at the start of `image`: magic `"ARM\x64"` at byte
/// 56, `text_offset` at 8, `image_size` at 16, `flags` at 24. Images without it are refused.
pub fn arm64_image_header(image: &[u8]) -> Result<Arm64ImageHeader, PackError> {
    if image.len() < MIN_IMAGE_SIZE {
        return Err(PackError::ImageTooSmall);
    }
    let magic = read_u32(image, 56).ok_or(PackError::ImageTooSmall)?;
    if magic != ARM64_IMAGE_MAGIC {
        return Err(PackError::NotArm64Image);
    }
    let text_offset = read_u64(image, 8).ok_or(PackError::ImageTooSmall)?;
    let image_size = read_u64(image, 16).ok_or(PackError::ImageTooSmall)?;
    let flags = read_u64(image, 24).ok_or(PackError::ImageTooSmall)?;
    Ok(Arm64ImageHeader {
        text_offset,
        image_size,
        flags,
    })
}

fn check_image(index: usize, image: &[u8]) -> Result<(), PackError> {
    match arm64_image_header(image) {
        Ok(_) => Ok(()),
        Err(PackError::NotArm64Image) => Err(domain_error(index, DomainProblem::NotArm64Image)),
        Err(_) => Err(domain_error(index, DomainProblem::ImageTooSmall)),
    }
}

fn check_name_text(index: usize, name: &str) -> Result<(), PackError> {
    if name.is_empty() {
        return Err(domain_error(index, DomainProblem::EmptyName));
    }
    if name.len() > NAME_LEN {
        return Err(domain_error(index, DomainProblem::NameTooLong));
    }
    if name.chars().any(char::is_control) {
        return Err(domain_error(index, DomainProblem::BadName));
    }
    Ok(())
}

/// Decodes the NUL-padded name field.
fn decode_name(index: usize, field: &[u8]) -> Result<&str, PackError> {
    let length = field
        .iter()
        .position(|&byte| byte == 0)
        .unwrap_or(field.len());
    let (name_bytes, padding) = field.split_at(length);
    if padding.iter().any(|&byte| byte != 0) {
        return Err(domain_error(index, DomainProblem::BadName));
    }
    let name = core::str::from_utf8(name_bytes)
        .map_err(|_| domain_error(index, DomainProblem::BadName))?;
    check_name_text(index, name)?;
    Ok(name)
}

fn check_settings(
    index: usize,
    memory_mib: u32,
    vcpus: u32,
    weight: u16,
    affinity: u64,
) -> Result<(), PackError> {
    // The size in bytes must fit a u64 (always true for a u32 MiB count) and be non-zero.
    if memory_mib == 0 {
        return Err(domain_error(index, DomainProblem::BadMemorySize));
    }
    if vcpus == 0 || vcpus > MAX_VCPUS {
        return Err(domain_error(index, DomainProblem::BadVcpuCount { vcpus }));
    }
    if weight == 0 {
        return Err(domain_error(index, DomainProblem::BadWeight));
    }
    if affinity == 0 {
        return Err(domain_error(index, DomainProblem::EmptyAffinity));
    }
    Ok(())
}

fn check_crash_policy(index: usize, code: u16, max_restarts: u32) -> Result<(), PackError> {
    match OnCrash::from_code(code) {
        None => Err(domain_error(index, DomainProblem::BadOnCrash { code })),
        Some(OnCrash::Destroy) if max_restarts != 0 => Err(domain_error(
            index,
            DomainProblem::MaxRestartsWithoutRestart,
        )),
        Some(_) => Ok(()),
    }
}

fn check_channel(index: usize, a: u64, b: u64, domain_count: usize) -> Result<(), PackError> {
    for domain in [a, b] {
        if domain >= domain_count as u64 {
            return Err(PackError::Channel {
                index,
                problem: ChannelProblem::UnknownDomain { domain },
            });
        }
    }
    if a == b {
        return Err(PackError::Channel {
            index,
            problem: ChannelProblem::SameDomain,
        });
    }
    Ok(())
}

/// Offset of the channel table: right after the entries.
fn channel_table_offset(domain_count: usize) -> usize {
    HEADER_SIZE + ENTRY_SIZE * domain_count
}

/// Offset of the payload area: right after the channel table.
fn payload_area_offset(domain_count: usize, channel_count: usize) -> usize {
    channel_table_offset(domain_count) + CHANNEL_TABLE_HEADER_SIZE + CHANNEL_SIZE * channel_count
}

fn check_cmdline(index: usize, cmdline: &[u8]) -> Result<&str, PackError> {
    if cmdline.contains(&0) {
        return Err(domain_error(index, DomainProblem::BadCmdline));
    }
    core::str::from_utf8(cmdline).map_err(|_| domain_error(index, DomainProblem::BadCmdline))
}

/// A byte range `[offset, offset + size)` of the pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Span {
    offset: u64,
    size: u64,
}

impl Span {
    fn overlaps(&self, other: &Span) -> bool {
        let self_end = u128::from(self.offset) + u128::from(self.size);
        let other_end = u128::from(other.offset) + u128::from(other.size);
        self.size != 0
            && other.size != 0
            && u128::from(self.offset) < other_end
            && u128::from(other.offset) < self_end
    }
}

/// Checks every payload span of every domain: inside `[area_start, total_size)`, 8-byte
/// aligned, and no two overlapping. `spans[domain][payload]`.
fn check_spans(spans: &[[Span; 3]], area_start: u64, total_size: u64) -> Result<(), PackError> {
    for (index, domain_spans) in spans.iter().enumerate() {
        for (payload, span) in Payload::ALL.iter().zip(domain_spans.iter()) {
            if span.size == 0 {
                continue;
            }
            let end = span.offset.checked_add(span.size);
            let inside = matches!(end, Some(end) if span.offset >= area_start && end <= total_size);
            if !inside {
                return Err(domain_error(
                    index,
                    DomainProblem::PayloadOutOfBounds { payload: *payload },
                ));
            }
            if !span.offset.is_multiple_of(PAYLOAD_ALIGN) {
                return Err(domain_error(
                    index,
                    DomainProblem::PayloadMisaligned { payload: *payload },
                ));
            }
        }
    }
    for (index, domain_spans) in spans.iter().enumerate() {
        for (payload, span) in Payload::ALL.iter().zip(domain_spans.iter()) {
            for (other_index, other_spans) in spans.iter().enumerate() {
                for (other_payload, other_span) in Payload::ALL.iter().zip(other_spans.iter()) {
                    let same = other_index == index && other_payload == payload;
                    if !same && span.overlaps(other_span) {
                        return Err(domain_error(
                            index,
                            DomainProblem::PayloadsOverlap {
                                payload: *payload,
                                other_domain: other_index,
                                other_payload: *other_payload,
                            },
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// One domain as found in a parsed pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainImage<'a> {
    /// The domain's unique name.
    pub name: &'a str,
    /// Guest RAM in MiB (at least 1).
    pub memory_mib: u32,
    /// Number of vCPUs (1..=8).
    pub vcpus: u32,
    /// The kernel image, starting with an arm64 `Image` header.
    pub image: &'a [u8],
    /// The initial ramdisk (empty if none).
    pub initrd: &'a [u8],
    /// The kernel command line (may be empty).
    pub cmdline: &'a str,
}

/// A validated boot pack borrowed from the bytes it was parsed from.
#[derive(Clone, Copy, Debug)]
pub struct BootPack<'a> {
    /// The pack's bytes, exactly `total_size` long.
    bytes: &'a [u8],
    domain_count: usize,
    channel_count: usize,
}

impl<'a> BootPack<'a> {
    /// Validates `bytes` as a boot pack (every rule of the format) and returns a view of it.
    /// Bytes after `total_size` are ignored.
    pub fn parse(bytes: &'a [u8]) -> Result<BootPack<'a>, PackError> {
        let available = bytes.len() as u64;
        let truncated = |needed: u64| PackError::Truncated { needed, available };
        let magic: [u8; 8] =
            read_bytes(bytes, MAGIC_OFFSET).ok_or(truncated(HEADER_SIZE as u64))?;
        if magic != MAGIC {
            return Err(PackError::BadMagic);
        }
        let header = bytes
            .get(..HEADER_SIZE)
            .ok_or(truncated(HEADER_SIZE as u64))?;
        let version = read_u32(header, VERSION_OFFSET).ok_or(truncated(HEADER_SIZE as u64))?;
        if version != VERSION {
            return Err(PackError::UnsupportedVersion { found: version });
        }
        let count = read_u32(header, DOMAIN_COUNT_OFFSET).ok_or(truncated(HEADER_SIZE as u64))?;
        if count == 0 || count as usize > MAX_DOMAINS {
            return Err(PackError::BadDomainCount {
                count: u64::from(count),
            });
        }
        let domain_count = count as usize;
        let total_size =
            read_u64(header, TOTAL_SIZE_OFFSET).ok_or(truncated(HEADER_SIZE as u64))?;
        // The channel table's own header must fit; its channels are checked below.
        let table_start = channel_table_offset(domain_count);
        if total_size < (table_start + CHANNEL_TABLE_HEADER_SIZE) as u64 {
            return Err(PackError::BadTotalSize { total_size });
        }
        if total_size > available {
            return Err(truncated(total_size));
        }
        let stored = read_u32(header, CHECKSUM_OFFSET).ok_or(truncated(HEADER_SIZE as u64))?;
        if read_u32(header, HEADER_RESERVED_OFFSET) != Some(0) {
            return Err(PackError::HeaderReservedNotZero);
        }
        // total_size <= bytes.len(), so it fits usize.
        let pack = bytes
            .get(..total_size as usize)
            .ok_or(truncated(total_size))?;
        let checked = pack.get(HEADER_SIZE..).ok_or(truncated(total_size))?;
        let computed = crc32(checked);
        if computed != stored {
            return Err(PackError::ChecksumMismatch { stored, computed });
        }
        let channel_count = read_u32(pack, table_start).ok_or(truncated(total_size))?;
        if channel_count as usize > MAX_CHANNELS {
            return Err(PackError::BadChannelCount {
                count: u64::from(channel_count),
            });
        }
        if read_u32(pack, table_start + 4) != Some(0) {
            return Err(PackError::ChannelTableReservedNotZero);
        }
        let channel_count = channel_count as usize;
        let area_start = payload_area_offset(domain_count, channel_count) as u64;
        if total_size < area_start {
            return Err(PackError::BadTotalSize { total_size });
        }

        let mut spans = [[Span { offset: 0, size: 0 }; 3]; MAX_DOMAINS];
        let mut names: [&str; MAX_DOMAINS] = [""; MAX_DOMAINS];
        for index in 0..domain_count {
            let entry = entry_bytes(pack, index).ok_or(truncated(area_start))?;
            let name_field = entry
                .get(NAME_OFFSET..NAME_OFFSET + NAME_LEN)
                .ok_or(truncated(area_start))?;
            let name = decode_name(index, name_field)?;
            if let Some(first) = names.iter().take(index).position(|other| *other == name) {
                return Err(domain_error(index, DomainProblem::DuplicateName { first }));
            }
            if let Some(slot) = names.get_mut(index) {
                *slot = name;
            }
            let memory_mib = read_u32(entry, MEMORY_OFFSET).ok_or(truncated(area_start))?;
            let vcpus = read_u32(entry, VCPUS_OFFSET).ok_or(truncated(area_start))?;
            let weight = read_u16(entry, WEIGHT_OFFSET).ok_or(truncated(area_start))?;
            let on_crash = read_u16(entry, ON_CRASH_OFFSET).ok_or(truncated(area_start))?;
            let max_restarts = read_u32(entry, MAX_RESTARTS_OFFSET).ok_or(truncated(area_start))?;
            let affinity = read_u64(entry, AFFINITY_OFFSET).ok_or(truncated(area_start))?;
            check_settings(index, memory_mib, vcpus, weight, affinity)?;
            check_crash_policy(index, on_crash, max_restarts)?;
            let domain_spans = spans.get_mut(index).ok_or(truncated(area_start))?;
            for (payload, span) in Payload::ALL.iter().zip(domain_spans.iter_mut()) {
                *span = read_span(entry, *payload).ok_or(truncated(area_start))?;
            }
        }
        for index in 0..channel_count {
            let (a, b) = read_channel(pack, domain_count, index).ok_or(truncated(area_start))?;
            check_channel(index, a, b, domain_count)?;
        }
        let used_spans = spans.get(..domain_count).unwrap_or(&[]);
        check_spans(used_spans, area_start, total_size)?;
        for (index, domain_spans) in used_spans.iter().enumerate() {
            let [image, _, cmdline] = *domain_spans;
            check_image(index, span_bytes(pack, image).unwrap_or(&[]))?;
            check_cmdline(index, span_bytes(pack, cmdline).unwrap_or(&[]))?;
        }
        Ok(BootPack {
            bytes: pack,
            domain_count,
            channel_count,
        })
    }

    /// The scheduling and crash settings of the domain at `index`, if there is one.
    pub fn settings(&self, index: usize) -> Option<DomainSettings> {
        if index >= self.domain_count {
            return None;
        }
        let entry = entry_bytes(self.bytes, index)?;
        Some(DomainSettings {
            weight: read_u16(entry, WEIGHT_OFFSET)?,
            affinity: read_u64(entry, AFFINITY_OFFSET)?,
            on_crash: OnCrash::from_code(read_u16(entry, ON_CRASH_OFFSET)?)?,
            max_restarts: read_u32(entry, MAX_RESTARTS_OFFSET)?,
        })
    }

    /// The number of pre-connected event channels (0..=[`MAX_CHANNELS`]).
    pub fn channel_count(&self) -> usize {
        self.channel_count
    }

    /// The pre-connected event channels, in table order.
    pub fn channels(&self) -> impl Iterator<Item = Channel> + 'a {
        let bytes = self.bytes;
        let domain_count = self.domain_count;
        (0..self.channel_count).filter_map(move |index| {
            let (a, b) = read_channel(bytes, domain_count, index)?;
            Some(Channel {
                a: usize::try_from(a).ok()?,
                b: usize::try_from(b).ok()?,
            })
        })
    }

    /// The number of domains (1..=[`MAX_DOMAINS`]).
    pub fn domain_count(&self) -> usize {
        self.domain_count
    }

    /// The pack's size in bytes (`total_size`).
    pub fn total_size(&self) -> usize {
        self.bytes.len()
    }

    /// The domains, in entry order.
    pub fn domains(&self) -> impl Iterator<Item = DomainImage<'a>> + 'a {
        let bytes = self.bytes;
        (0..self.domain_count).filter_map(move |index| decode_domain(bytes, index))
    }

    /// The domain at `index`, if there is one.
    pub fn domain(&self, index: usize) -> Option<DomainImage<'a>> {
        if index < self.domain_count {
            decode_domain(self.bytes, index)
        } else {
            None
        }
    }
}

fn entry_bytes(pack: &[u8], index: usize) -> Option<&[u8]> {
    let start = HEADER_SIZE.checked_add(index.checked_mul(ENTRY_SIZE)?)?;
    pack.get(start..start.checked_add(ENTRY_SIZE)?)
}

/// The two domain indices of channel `index`, as stored.
fn read_channel(pack: &[u8], domain_count: usize, index: usize) -> Option<(u64, u64)> {
    let start = channel_table_offset(domain_count)
        .checked_add(CHANNEL_TABLE_HEADER_SIZE)?
        .checked_add(index.checked_mul(CHANNEL_SIZE)?)?;
    let a = read_u32(pack, start)?;
    let b = read_u32(pack, start.checked_add(4)?)?;
    Some((u64::from(a), u64::from(b)))
}

fn read_span(entry: &[u8], payload: Payload) -> Option<Span> {
    let offset = read_u64(entry, payload.entry_offset())?;
    let size = read_u64(entry, payload.entry_offset() + 8)?;
    Some(Span { offset, size })
}

fn span_bytes(pack: &[u8], span: Span) -> Option<&[u8]> {
    if span.size == 0 {
        return Some(&[]);
    }
    let start = usize::try_from(span.offset).ok()?;
    let end = start.checked_add(usize::try_from(span.size).ok()?)?;
    pack.get(start..end)
}

/// Decodes an entry of an already validated pack.
fn decode_domain(pack: &[u8], index: usize) -> Option<DomainImage<'_>> {
    let entry = entry_bytes(pack, index)?;
    let name = decode_name(index, entry.get(NAME_OFFSET..NAME_OFFSET + NAME_LEN)?).ok()?;
    let cmdline_bytes = span_bytes(pack, read_span(entry, Payload::Cmdline)?)?;
    Some(DomainImage {
        name,
        memory_mib: read_u32(entry, MEMORY_OFFSET)?,
        vcpus: read_u32(entry, VCPUS_OFFSET)?,
        image: span_bytes(pack, read_span(entry, Payload::Image)?)?,
        initrd: span_bytes(pack, read_span(entry, Payload::Initrd)?)?,
        cmdline: core::str::from_utf8(cmdline_bytes).ok()?,
    })
}

/// One domain to be written by [`encode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DomainSpec<'a> {
    /// Unique name, 1..=32 bytes of UTF-8 without control characters.
    pub name: &'a str,
    /// Guest RAM in MiB (at least 1).
    pub memory_mib: u32,
    /// Number of vCPUs (1..=8).
    pub vcpus: u32,
    /// Kernel image with an arm64 `Image` header.
    pub image: &'a [u8],
    /// Initial ramdisk; empty for none.
    pub initrd: &'a [u8],
    /// Kernel command line without NUL bytes; may be empty.
    pub cmdline: &'a str,
    /// Scheduling weight, CPU affinity and crash policy.
    pub settings: DomainSettings,
}

impl<'a> DomainSpec<'a> {
    fn payload(&self, payload: Payload) -> &'a [u8] {
        match payload {
            Payload::Image => self.image,
            Payload::Initrd => self.initrd,
            Payload::Cmdline => self.cmdline.as_bytes(),
        }
    }
}

fn align_up(value: u64) -> Option<u64> {
    value
        .checked_add(PAYLOAD_ALIGN - 1)
        .map(|sum| sum & !(PAYLOAD_ALIGN - 1))
}

/// Validates `domains` and `channels` with the parser's rules and computes where every
/// payload goes.
fn plan(
    domains: &[DomainSpec],
    channels: &[Channel],
) -> Result<([[Span; 3]; MAX_DOMAINS], u64), PackError> {
    if domains.is_empty() || domains.len() > MAX_DOMAINS {
        return Err(PackError::BadDomainCount {
            count: domains.len() as u64,
        });
    }
    if channels.len() > MAX_CHANNELS {
        return Err(PackError::BadChannelCount {
            count: channels.len() as u64,
        });
    }
    let overflow = PackError::BufferTooSmall { needed: u64::MAX };
    let mut spans = [[Span { offset: 0, size: 0 }; 3]; MAX_DOMAINS];
    let mut cursor = payload_area_offset(domains.len(), channels.len()) as u64;
    for (index, domain) in domains.iter().enumerate() {
        check_name_text(index, domain.name)?;
        if let Some(first) = domains
            .iter()
            .take(index)
            .position(|other| other.name == domain.name)
        {
            return Err(domain_error(index, DomainProblem::DuplicateName { first }));
        }
        let settings = domain.settings;
        check_settings(
            index,
            domain.memory_mib,
            domain.vcpus,
            settings.weight,
            settings.affinity,
        )?;
        check_crash_policy(index, settings.on_crash.code(), settings.max_restarts)?;
        check_image(index, domain.image)?;
        check_cmdline(index, domain.cmdline.as_bytes())?;
        let domain_spans = spans.get_mut(index).ok_or(overflow)?;
        for (payload, span) in Payload::ALL.iter().zip(domain_spans.iter_mut()) {
            let size = domain.payload(*payload).len() as u64;
            if size == 0 {
                continue;
            }
            let offset = align_up(cursor).ok_or(overflow)?;
            *span = Span { offset, size };
            cursor = offset.checked_add(size).ok_or(overflow)?;
        }
    }
    for (index, channel) in channels.iter().enumerate() {
        check_channel(index, channel.a as u64, channel.b as u64, domains.len())?;
    }
    let total_size = align_up(cursor).ok_or(overflow)?;
    Ok((spans, total_size))
}

/// The number of bytes [`encode`] writes for `domains` and `channels`, after checking
/// them.
pub fn encoded_size(domains: &[DomainSpec], channels: &[Channel]) -> Result<usize, PackError> {
    let (_, total_size) = plan(domains, channels)?;
    usize::try_from(total_size).map_err(|_| PackError::BufferTooSmall { needed: total_size })
}

/// Writes a boot pack for `domains` and the pre-connected `channels` between them (by
/// index into `domains`) into the start of `out` and returns its size. Refuses (with the
/// parser's errors) anything [`BootPack::parse`] would refuse.
pub fn encode(
    domains: &[DomainSpec],
    channels: &[Channel],
    out: &mut [u8],
) -> Result<usize, PackError> {
    let (spans, total_size) = plan(domains, channels)?;
    let size = usize::try_from(total_size)
        .map_err(|_| PackError::BufferTooSmall { needed: total_size })?;
    let pack = out
        .get_mut(..size)
        .ok_or(PackError::BufferTooSmall { needed: total_size })?;
    pack.fill(0);
    write_bytes(pack, MAGIC_OFFSET, &MAGIC)?;
    write_bytes(pack, VERSION_OFFSET, &VERSION.to_le_bytes())?;
    write_bytes(
        pack,
        DOMAIN_COUNT_OFFSET,
        &(domains.len() as u32).to_le_bytes(),
    )?;
    write_bytes(pack, TOTAL_SIZE_OFFSET, &total_size.to_le_bytes())?;
    for ((index, domain), domain_spans) in domains.iter().enumerate().zip(spans.iter()) {
        let entry = HEADER_SIZE + index * ENTRY_SIZE;
        write_bytes(pack, entry + NAME_OFFSET, domain.name.as_bytes())?;
        write_bytes(
            pack,
            entry + MEMORY_OFFSET,
            &domain.memory_mib.to_le_bytes(),
        )?;
        write_bytes(pack, entry + VCPUS_OFFSET, &domain.vcpus.to_le_bytes())?;
        let settings = domain.settings;
        write_bytes(pack, entry + WEIGHT_OFFSET, &settings.weight.to_le_bytes())?;
        write_bytes(
            pack,
            entry + ON_CRASH_OFFSET,
            &settings.on_crash.code().to_le_bytes(),
        )?;
        write_bytes(
            pack,
            entry + MAX_RESTARTS_OFFSET,
            &settings.max_restarts.to_le_bytes(),
        )?;
        write_bytes(
            pack,
            entry + AFFINITY_OFFSET,
            &settings.affinity.to_le_bytes(),
        )?;
        for (payload, span) in Payload::ALL.iter().zip(domain_spans.iter()) {
            let field = entry + payload.entry_offset();
            write_bytes(pack, field, &span.offset.to_le_bytes())?;
            write_bytes(pack, field + 8, &span.size.to_le_bytes())?;
            if span.size != 0 {
                let start = usize::try_from(span.offset)
                    .map_err(|_| PackError::BufferTooSmall { needed: total_size })?;
                write_bytes(pack, start, domain.payload(*payload))?;
            }
        }
    }
    let table = channel_table_offset(domains.len());
    write_bytes(pack, table, &(channels.len() as u32).to_le_bytes())?;
    for (index, channel) in channels.iter().enumerate() {
        let start = table + CHANNEL_TABLE_HEADER_SIZE + index * CHANNEL_SIZE;
        write_bytes(pack, start, &(channel.a as u32).to_le_bytes())?;
        write_bytes(pack, start + 4, &(channel.b as u32).to_le_bytes())?;
    }
    let checksum = crc32(pack.get(HEADER_SIZE..).unwrap_or(&[]));
    write_bytes(pack, CHECKSUM_OFFSET, &checksum.to_le_bytes())?;
    // The format has one definition of validity: the parser's.
    BootPack::parse(pack)?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_image(length: usize, fill: u8) -> Vec<u8> {
        let mut image = vec![fill; length];
        image[8..16].copy_from_slice(&0x8_0000u64.to_le_bytes());
        image[16..24].copy_from_slice(&(length as u64).to_le_bytes());
        image[24..32].copy_from_slice(&2u64.to_le_bytes());
        image[56..60].copy_from_slice(&ARM64_IMAGE_MAGIC.to_le_bytes());
        image
    }

    fn encode_to_vec(domains: &[DomainSpec], channels: &[Channel]) -> Result<Vec<u8>, PackError> {
        let size = encoded_size(domains, channels)?;
        let mut out = vec![0xAAu8; size + 16];
        let written = encode(domains, channels, &mut out)?;
        assert_eq!(written, size);
        out.truncate(written);
        Ok(out)
    }

    /// Recomputes the checksum after a test tampered with the pack.
    fn reseal(pack: &mut [u8]) {
        let checksum = crc32(&pack[HEADER_SIZE..]);
        pack[CHECKSUM_OFFSET..CHECKSUM_OFFSET + 4].copy_from_slice(&checksum.to_le_bytes());
    }

    fn two_domains_pack() -> Vec<u8> {
        let image_a = fake_image(200, 0x11);
        let image_b = fake_image(131, 0x22);
        let initrd = [0x33u8; 77];
        encode_to_vec(
            &[
                DomainSpec {
                    name: "dom0",
                    memory_mib: 128,
                    vcpus: 2,
                    image: &image_a,
                    initrd: &initrd,
                    cmdline: "console=hvc0 earlycon=xenboot",
                    settings: DomainSettings::default(),
                },
                DomainSpec {
                    name: "guest-ü",
                    memory_mib: 1,
                    vcpus: 8,
                    image: &image_b,
                    initrd: &[],
                    cmdline: "",
                    settings: GUEST_SETTINGS,
                },
            ],
            &[Channel { a: 0, b: 1 }],
        )
        .unwrap()
    }

    /// The non-default settings of the second domain of [`two_domains_pack`].
    const GUEST_SETTINGS: DomainSettings = DomainSettings {
        weight: 65535,
        affinity: 0b1010,
        on_crash: OnCrash::Destroy,
        max_restarts: 0,
    };

    /// Offset of the channel table of [`two_domains_pack`].
    const TABLE: usize = HEADER_SIZE + 2 * ENTRY_SIZE;
    /// Offset of the second entry of [`two_domains_pack`].
    const ENTRY1: usize = HEADER_SIZE + ENTRY_SIZE;

    #[test]
    fn round_trip() {
        let image_a = fake_image(200, 0x11);
        let image_b = fake_image(131, 0x22);
        let initrd = [0x33u8; 77];
        let pack_bytes = two_domains_pack();
        let pack = BootPack::parse(&pack_bytes).unwrap();
        assert_eq!(pack.domain_count(), 2);
        assert_eq!(pack.total_size(), pack_bytes.len());
        let domains: Vec<DomainImage> = pack.domains().collect();
        assert_eq!(
            domains[0],
            DomainImage {
                name: "dom0",
                memory_mib: 128,
                vcpus: 2,
                image: &image_a,
                initrd: &initrd,
                cmdline: "console=hvc0 earlycon=xenboot",
            }
        );
        assert_eq!(domains[1].name, "guest-ü");
        assert_eq!(domains[1].image, &image_b[..]);
        assert!(domains[1].initrd.is_empty());
        assert_eq!(domains[1].cmdline, "");
        assert_eq!(pack.domain(1), Some(domains[1]));
        assert_eq!(pack.domain(2), None);
        assert_eq!(pack.settings(0), Some(DomainSettings::default()));
        assert_eq!(pack.settings(1), Some(GUEST_SETTINGS));
        assert_eq!(pack.settings(2), None);
        assert_eq!(pack.channel_count(), 1);
        assert_eq!(
            pack.channels().collect::<Vec<_>>(),
            vec![Channel { a: 0, b: 1 }]
        );
        // Trailing bytes after total_size are ignored.
        let mut longer = pack_bytes.clone();
        longer.extend_from_slice(&[0xFF; 13]);
        assert_eq!(
            BootPack::parse(&longer).unwrap().total_size(),
            pack_bytes.len()
        );
    }

    #[test]
    fn header_fields_match_the_format() {
        let pack = two_domains_pack();
        assert_eq!(&pack[0..8], b"HYPPACK\0");
        assert_eq!(read_u32(&pack, 8), Some(3));
        assert_eq!(read_u32(&pack, 12), Some(2));
        assert_eq!(read_u64(&pack, 16), Some(pack.len() as u64));
        assert_eq!(read_u32(&pack, 24), Some(crc32(&pack[32..])));
        assert_eq!(&pack[32..36], b"dom0");
        // Entry 1: weight 65535 at 40, on_crash 0 at 42, max_restarts at 44, affinity at 48.
        assert_eq!(&pack[ENTRY1 + 40..ENTRY1 + 42], &[0xFF, 0xFF]);
        assert_eq!(&pack[ENTRY1 + 42..ENTRY1 + 48], &[0; 6]);
        assert_eq!(read_u64(&pack, ENTRY1 + 48), Some(0b1010));
        assert_eq!(read_u32(&pack, 32 + 40), Some(256));
        assert_eq!(read_u64(&pack, 32 + 48), Some(u64::MAX));
        // The channel table: count 1, reserved 0, {0, 1}.
        assert_eq!(TABLE, 32 + 2 * 104);
        assert_eq!(read_u32(&pack, TABLE), Some(1));
        assert_eq!(read_u32(&pack, TABLE + 4), Some(0));
        assert_eq!(read_u32(&pack, TABLE + 8), Some(0));
        assert_eq!(read_u32(&pack, TABLE + 12), Some(1));
        let image_offset = read_u64(&pack, 32 + 56).unwrap();
        assert_eq!(image_offset, (TABLE + 16) as u64);
        assert_eq!(image_offset % 8, 0);
    }

    #[test]
    fn every_truncation_is_refused() {
        let pack = two_domains_pack();
        for length in 0..pack.len() {
            let error = BootPack::parse(&pack[..length]).unwrap_err();
            assert!(
                matches!(error, PackError::Truncated { .. }),
                "length {length}: {error:?}"
            );
        }
    }

    #[test]
    fn bad_magic_and_version_and_count() {
        let mut pack = two_domains_pack();
        pack[0] = b'X';
        assert_eq!(BootPack::parse(&pack).unwrap_err(), PackError::BadMagic);
        for version in [2u8, 4] {
            let mut pack = two_domains_pack();
            pack[8] = version;
            assert_eq!(
                BootPack::parse(&pack).unwrap_err(),
                PackError::UnsupportedVersion {
                    found: u32::from(version)
                }
            );
        }
        for count in [0u32, 9, u32::MAX] {
            let mut pack = two_domains_pack();
            pack[12..16].copy_from_slice(&count.to_le_bytes());
            assert_eq!(
                BootPack::parse(&pack).unwrap_err(),
                PackError::BadDomainCount {
                    count: u64::from(count)
                }
            );
        }
        let mut pack = two_domains_pack();
        pack[16..24].copy_from_slice(&100u64.to_le_bytes());
        assert_eq!(
            BootPack::parse(&pack).unwrap_err(),
            PackError::BadTotalSize { total_size: 100 }
        );
        let mut pack = two_domains_pack();
        pack[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            BootPack::parse(&pack).unwrap_err(),
            PackError::Truncated { .. }
        ));
        let mut pack = two_domains_pack();
        pack[28] = 1;
        assert_eq!(
            BootPack::parse(&pack).unwrap_err(),
            PackError::HeaderReservedNotZero
        );
    }

    #[test]
    fn every_flipped_byte_is_refused() {
        let pack = two_domains_pack();
        for index in 0..pack.len() {
            let mut corrupt = pack.clone();
            corrupt[index] ^= 0x5A;
            let error = BootPack::parse(&corrupt).unwrap_err();
            if index >= HEADER_SIZE {
                assert!(
                    matches!(error, PackError::ChecksumMismatch { .. }),
                    "byte {index}: {error:?}"
                );
            }
        }
    }

    #[test]
    fn overlapping_payloads_with_correct_checksum() {
        let mut pack = two_domains_pack();
        // Point domain 1's image at domain 0's image.
        let image0_offset = read_u64(&pack, 32 + IMAGE_OFFSET).unwrap();
        let entry1 = ENTRY1;
        pack[entry1 + IMAGE_OFFSET..entry1 + IMAGE_OFFSET + 8]
            .copy_from_slice(&image0_offset.to_le_bytes());
        reseal(&mut pack);
        let error = BootPack::parse(&pack).unwrap_err();
        assert_eq!(error.domain_index(), Some(0));
        assert!(matches!(
            error,
            PackError::Domain {
                problem: DomainProblem::PayloadsOverlap {
                    other_domain: 1,
                    ..
                },
                ..
            }
        ));
        assert_eq!(error.describe(), "two payloads overlap");
    }

    #[test]
    fn payload_over_entries_or_outside_or_misaligned() {
        let entry1 = ENTRY1;
        let cases: [(u64, u64, DomainProblem); 4] = [
            (
                0,
                64,
                DomainProblem::PayloadOutOfBounds {
                    payload: Payload::Image,
                },
            ),
            (
                32,
                200,
                DomainProblem::PayloadOutOfBounds {
                    payload: Payload::Image,
                },
            ),
            (
                u64::MAX - 7,
                64,
                DomainProblem::PayloadOutOfBounds {
                    payload: Payload::Image,
                },
            ),
            (
                (TABLE + 16 + 4) as u64,
                64,
                DomainProblem::PayloadMisaligned {
                    payload: Payload::Image,
                },
            ),
        ];
        for (offset, size, problem) in cases {
            let mut pack = two_domains_pack();
            let field = entry1 + IMAGE_OFFSET;
            pack[field..field + 8].copy_from_slice(&offset.to_le_bytes());
            pack[field + 8..field + 16].copy_from_slice(&size.to_le_bytes());
            reseal(&mut pack);
            assert_eq!(
                BootPack::parse(&pack).unwrap_err(),
                PackError::Domain { index: 1, problem },
                "offset {offset:#x}"
            );
        }
        // A payload running past total_size.
        let mut pack = two_domains_pack();
        let field = entry1 + INITRD_OFFSET;
        let end = pack.len() as u64;
        pack[field..field + 8].copy_from_slice(&(end - 8).to_le_bytes());
        pack[field + 8..field + 16].copy_from_slice(&16u64.to_le_bytes());
        reseal(&mut pack);
        assert_eq!(
            BootPack::parse(&pack).unwrap_err(),
            PackError::Domain {
                index: 1,
                problem: DomainProblem::PayloadOutOfBounds {
                    payload: Payload::Initrd
                }
            }
        );
    }

    #[test]
    fn entry_fields_are_checked() {
        let entry1 = ENTRY1;
        let tamper = |change: &dyn Fn(&mut Vec<u8>)| {
            let mut pack = two_domains_pack();
            change(&mut pack);
            reseal(&mut pack);
            BootPack::parse(&pack).unwrap_err()
        };
        let duplicate = tamper(&|pack| {
            pack[entry1..entry1 + 32].fill(0);
            pack[entry1..entry1 + 4].copy_from_slice(b"dom0");
        });
        assert_eq!(
            duplicate,
            PackError::Domain {
                index: 1,
                problem: DomainProblem::DuplicateName { first: 0 }
            }
        );
        let empty = tamper(&|pack| pack[entry1..entry1 + 32].fill(0));
        assert_eq!(empty, domain_error(1, DomainProblem::EmptyName));
        let bad_padding = tamper(&|pack| pack[entry1 + 31] = b'x');
        assert_eq!(bad_padding, domain_error(1, DomainProblem::BadName));
        let not_utf8 = tamper(&|pack| pack[entry1] = 0xFF);
        assert_eq!(not_utf8, domain_error(1, DomainProblem::BadName));
        let control = tamper(&|pack| pack[entry1] = b'\n');
        assert_eq!(control, domain_error(1, DomainProblem::BadName));
        let zero_memory = tamper(&|pack| pack[entry1 + 32..entry1 + 36].fill(0));
        assert_eq!(zero_memory, domain_error(1, DomainProblem::BadMemorySize));
        let zero_vcpus = tamper(&|pack| pack[entry1 + 36..entry1 + 40].fill(0));
        assert_eq!(
            zero_vcpus,
            domain_error(1, DomainProblem::BadVcpuCount { vcpus: 0 })
        );
        let nine_vcpus = tamper(&|pack| pack[entry1 + 36] = 9);
        assert_eq!(
            nine_vcpus,
            domain_error(1, DomainProblem::BadVcpuCount { vcpus: 9 })
        );
        let zero_weight = tamper(&|pack| pack[entry1 + 40..entry1 + 42].fill(0));
        assert_eq!(zero_weight, domain_error(1, DomainProblem::BadWeight));
        let unknown = tamper(&|pack| pack[entry1 + 42] = 2);
        assert_eq!(
            unknown,
            domain_error(1, DomainProblem::BadOnCrash { code: 2 })
        );
        let high_on_crash = tamper(&|pack| pack[entry1 + 43] = 0x80);
        assert_eq!(
            high_on_crash,
            domain_error(1, DomainProblem::BadOnCrash { code: 0x8000 })
        );
        let limit_without_restart = tamper(&|pack| pack[entry1 + 47] = 1);
        assert_eq!(
            limit_without_restart,
            domain_error(1, DomainProblem::MaxRestartsWithoutRestart)
        );
        // Restart, with or without a limit, is a policy the pack carries.
        let mut restart = two_domains_pack();
        restart[entry1 + 42] = 1;
        restart[entry1 + 44] = 100;
        reseal(&mut restart);
        let settings = BootPack::parse(&restart).unwrap().settings(1).unwrap();
        assert_eq!(settings.on_crash, OnCrash::Restart);
        assert_eq!(settings.max_restarts, 100);
        let no_cpu = tamper(&|pack| pack[entry1 + 48..entry1 + 56].fill(0));
        assert_eq!(no_cpu, domain_error(1, DomainProblem::EmptyAffinity));
        let image_offset = read_u64(&two_domains_pack(), entry1 + IMAGE_OFFSET).unwrap() as usize;
        let not_image = tamper(&|pack| pack[image_offset + 56] = 0);
        assert_eq!(not_image, domain_error(1, DomainProblem::NotArm64Image));
        let small_image = tamper(&|pack| {
            pack[entry1 + IMAGE_OFFSET + 8..entry1 + IMAGE_OFFSET + 16]
                .copy_from_slice(&63u64.to_le_bytes())
        });
        assert_eq!(small_image, domain_error(1, DomainProblem::ImageTooSmall));
        let cmdline_offset = read_u64(&two_domains_pack(), 32 + CMDLINE_OFFSET).unwrap() as usize;
        let nul_cmdline = tamper(&|pack| pack[cmdline_offset + 3] = 0);
        assert_eq!(nul_cmdline, domain_error(0, DomainProblem::BadCmdline));
    }

    #[test]
    fn encoder_refuses_what_the_parser_refuses() {
        let image = fake_image(64, 0);
        let good = DomainSpec {
            name: "a",
            memory_mib: 16,
            vcpus: 1,
            image: &image,
            initrd: &[],
            cmdline: "",
            settings: DomainSettings::default(),
        };
        assert_eq!(
            encoded_size(&[], &[]).unwrap_err(),
            PackError::BadDomainCount { count: 0 }
        );
        assert_eq!(
            encoded_size(&[good; 9], &[]).unwrap_err(),
            PackError::BadDomainCount { count: 9 }
        );
        assert_eq!(
            encoded_size(&[good, good], &[]).unwrap_err(),
            domain_error(1, DomainProblem::DuplicateName { first: 0 })
        );
        let settings = |weight, affinity| DomainSettings {
            weight,
            affinity,
            on_crash: OnCrash::Destroy,
            max_restarts: 0,
        };
        let cases: [(DomainSpec, DomainProblem); 9] = [
            (
                DomainSpec {
                    settings: settings(0, 1),
                    ..good
                },
                DomainProblem::BadWeight,
            ),
            (
                DomainSpec {
                    settings: settings(1, 0),
                    ..good
                },
                DomainProblem::EmptyAffinity,
            ),
            (DomainSpec { name: "", ..good }, DomainProblem::EmptyName),
            (
                DomainSpec {
                    name: "0123456789012345678901234567890123",
                    ..good
                },
                DomainProblem::NameTooLong,
            ),
            (
                DomainSpec {
                    name: "a\0b",
                    ..good
                },
                DomainProblem::BadName,
            ),
            (
                DomainSpec {
                    memory_mib: 0,
                    ..good
                },
                DomainProblem::BadMemorySize,
            ),
            (
                DomainSpec { vcpus: 9, ..good },
                DomainProblem::BadVcpuCount { vcpus: 9 },
            ),
            (
                DomainSpec {
                    image: &image[..63],
                    ..good
                },
                DomainProblem::ImageTooSmall,
            ),
            (
                DomainSpec {
                    cmdline: "a\0",
                    ..good
                },
                DomainProblem::BadCmdline,
            ),
        ];
        for (spec, problem) in cases {
            assert_eq!(
                encoded_size(&[good.with_name("first"), spec], &[]).unwrap_err(),
                domain_error(1, problem),
                "{spec:?}"
            );
        }
        let mut small = [0u8; 100];
        assert!(matches!(
            encode(&[good], &[], &mut small).unwrap_err(),
            PackError::BufferTooSmall { .. }
        ));
        let plain = [0u8; 64];
        assert_eq!(
            encoded_size(
                &[DomainSpec {
                    image: &plain,
                    ..good
                }],
                &[]
            )
            .unwrap_err(),
            domain_error(0, DomainProblem::NotArm64Image)
        );
    }

    impl<'a> DomainSpec<'a> {
        fn with_name(self, name: &'a str) -> Self {
            DomainSpec { name, ..self }
        }
    }

    #[test]
    fn maximum_pack() {
        let image = fake_image(100, 7);
        let names = ["a", "b", "c", "d", "e", "f", "g", "h"];
        let specs: Vec<DomainSpec> = names
            .iter()
            .map(|name| DomainSpec {
                name,
                memory_mib: 1,
                vcpus: 1,
                image: &image,
                initrd: b"xyz",
                cmdline: "c",
                settings: DomainSettings::default(),
            })
            .collect();
        let channels: Vec<Channel> = (0..MAX_CHANNELS)
            .map(|index| Channel {
                a: index % 8,
                b: (index + 1 + index / 8) % 8,
            })
            .collect();
        let pack = encode_to_vec(&specs, &channels).unwrap();
        let parsed = BootPack::parse(&pack).unwrap();
        assert_eq!(parsed.domains().count(), 8);
        assert_eq!(parsed.channels().collect::<Vec<_>>(), channels);
        assert!(parsed.domains().all(|domain| domain.initrd == b"xyz"));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let _ = BootPack::parse(&bytes);
            let _ = arm64_image_header(&bytes);
        }

        #[test]
        fn arbitrary_header_on_a_valid_pack_never_panics(
            header in proptest::collection::vec(proptest::num::u8::ANY, 32),
            entry in proptest::collection::vec(proptest::num::u8::ANY, ENTRY_SIZE),
            table in proptest::collection::vec(proptest::num::u8::ANY, 16),
        ) {
            let mut pack = two_domains_pack();
            pack[8..32].copy_from_slice(&header[8..32]);
            pack[32..32 + ENTRY_SIZE].copy_from_slice(&entry);
            pack[TABLE..TABLE + 16].copy_from_slice(&table);
            reseal(&mut pack);
            let _ = BootPack::parse(&pack);
        }

        #[test]
        fn valid_specs_round_trip(
            memory_mib in 1u32..=u32::MAX,
            vcpus in 1u32..=MAX_VCPUS,
            image_length in 64usize..300,
            initrd in proptest::collection::vec(proptest::num::u8::ANY, 0..100),
            cmdline in "[ -~]{0,80}",
            name in "[a-z][a-z0-9-]{0,31}",
            weight in 1u16..=u16::MAX,
            affinity in 1u64..=u64::MAX,
        ) {
            let image = fake_image(image_length, 0x5A);
            let spec = DomainSpec {
                name: &name,
                memory_mib,
                vcpus,
                image: &image,
                initrd: &initrd,
                cmdline: &cmdline,
                settings: DomainSettings { weight, affinity, on_crash: OnCrash::Destroy, max_restarts: 0 },
            };
            let pack = encode_to_vec(&[spec], &[]).unwrap();
            let parsed = BootPack::parse(&pack).unwrap();
            let domain = parsed.domain(0).unwrap();
            proptest::prop_assert_eq!(domain.name, spec.name);
            proptest::prop_assert_eq!(domain.memory_mib, memory_mib);
            proptest::prop_assert_eq!(domain.vcpus, vcpus);
            proptest::prop_assert_eq!(domain.image, spec.image);
            proptest::prop_assert_eq!(domain.initrd, spec.initrd);
            proptest::prop_assert_eq!(domain.cmdline, spec.cmdline);
            proptest::prop_assert_eq!(parsed.settings(0), Some(spec.settings));
            proptest::prop_assert_eq!(parsed.channel_count(), 0);
        }
    }

    #[test]
    fn channel_table_is_checked() {
        let tamper = |change: &dyn Fn(&mut Vec<u8>)| {
            let mut pack = two_domains_pack();
            change(&mut pack);
            reseal(&mut pack);
            BootPack::parse(&pack).unwrap_err()
        };
        let too_many = tamper(&|pack| pack[TABLE] = 33);
        assert_eq!(too_many, PackError::BadChannelCount { count: 33 });
        let huge = tamper(&|pack| pack[TABLE..TABLE + 4].fill(0xFF));
        assert_eq!(
            huge,
            PackError::BadChannelCount {
                count: u64::from(u32::MAX)
            }
        );
        // A count larger than the table written: the second "channel" is the first
        // payload's bytes, and the payloads would lie over the table.
        let longer = tamper(&|pack| pack[TABLE] = 2);
        assert!(
            matches!(longer, PackError::Channel { index: 1, .. }),
            "{longer:?}"
        );
        let reserved = tamper(&|pack| pack[TABLE + 7] = 1);
        assert_eq!(reserved, PackError::ChannelTableReservedNotZero);
        let unknown = tamper(&|pack| pack[TABLE + 12] = 2);
        assert_eq!(
            unknown,
            PackError::Channel {
                index: 0,
                problem: ChannelProblem::UnknownDomain { domain: 2 }
            }
        );
        assert_eq!(unknown.describe(), "channel names a domain the pack lacks");
        assert_eq!(unknown.domain_index(), None);
        let loopback = tamper(&|pack| pack[TABLE + 12] = 0);
        assert_eq!(
            loopback,
            PackError::Channel {
                index: 0,
                problem: ChannelProblem::SameDomain
            }
        );
        // total_size that ends inside the channel table header.
        let short = tamper(&|pack| {
            pack[16..24].copy_from_slice(&((TABLE + 4) as u64).to_le_bytes());
            pack.truncate(TABLE + 4);
        });
        assert_eq!(
            short,
            PackError::BadTotalSize {
                total_size: (TABLE + 4) as u64
            }
        );
        // total_size that ends inside the channels.
        let short = tamper(&|pack| {
            pack[16..24].copy_from_slice(&((TABLE + 12) as u64).to_le_bytes());
            pack.truncate(TABLE + 12);
        });
        assert_eq!(
            short,
            PackError::BadTotalSize {
                total_size: (TABLE + 12) as u64
            }
        );
    }

    #[test]
    fn encoder_refuses_bad_channels() {
        let image = fake_image(64, 0);
        let spec = |name| DomainSpec {
            name,
            memory_mib: 1,
            vcpus: 1,
            image: &image,
            initrd: &[],
            cmdline: "",
            settings: DomainSettings::default(),
        };
        let domains = [spec("a"), spec("b")];
        assert_eq!(
            encoded_size(&domains, &[Channel { a: 1, b: 1 }]).unwrap_err(),
            PackError::Channel {
                index: 0,
                problem: ChannelProblem::SameDomain
            }
        );
        assert_eq!(
            encoded_size(&domains, &[Channel { a: 0, b: 1 }, Channel { a: 0, b: 2 }]).unwrap_err(),
            PackError::Channel {
                index: 1,
                problem: ChannelProblem::UnknownDomain { domain: 2 }
            }
        );
        assert_eq!(
            encoded_size(&domains, &[Channel { a: 0, b: 1 }; MAX_CHANNELS + 1]).unwrap_err(),
            PackError::BadChannelCount { count: 33 }
        );
        // Two channels between the same pair are allowed.
        let pack = encode_to_vec(&domains, &[Channel { a: 1, b: 0 }; 2]).unwrap();
        assert_eq!(BootPack::parse(&pack).unwrap().channel_count(), 2);
    }

    #[test]
    fn on_crash_codes() {
        assert_eq!(OnCrash::from_code(0), Some(OnCrash::Destroy));
        assert_eq!(OnCrash::from_code(1), Some(OnCrash::Restart));
        assert_eq!(OnCrash::from_code(2), None);
        assert_eq!(OnCrash::Destroy.code(), 0);
        assert_eq!(OnCrash::Restart.code(), 1);
        assert_eq!(OnCrash::Destroy.name(), "destroy");
        assert_eq!(OnCrash::Restart.name(), "restart");
    }

    #[test]
    fn image_header() {
        let image = fake_image(128, 0);
        let header = arm64_image_header(&image).unwrap();
        assert_eq!(
            header,
            Arm64ImageHeader {
                text_offset: 0x8_0000,
                image_size: 128,
                flags: 2
            }
        );
        assert!(!header.is_big_endian());
        assert_eq!(
            arm64_image_header(&image[..63]).unwrap_err(),
            PackError::ImageTooSmall
        );
        assert_eq!(
            arm64_image_header(&[0u8; 64]).unwrap_err(),
            PackError::NotArm64Image
        );
    }
}
