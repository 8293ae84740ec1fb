//! A tiny, bounds-checked flattened device tree reader.
//!
//! It reads only what pv-guest needs: the root's `#address-cells`/`#size-cells`,
//! `/chosen/bootargs`, the `reg` of the depth-1 `memory` nodes, and for interrupts:
//! the GIC node (`arm,gic-v3`, `arm,gic-400`, `arm,cortex-a15-gic`: version and `reg`),
//! the `timer` node's virtual-timer interrupt, the `/hypervisor` event interrupt and the
//! `reg` (MPIDR) of each `/cpus/cpu@N` node, in tree order; and the event channels our
//! hypervisor pre-connects (`/hypervisor` `hyp,channels` and `hyp,channel-peers`, see
//! [`BootInfo::channel`]). The tree comes from
//! the hypervisor and is treated as untrusted: every read is checked, nothing panics,
//! and a malformed tree yields a [`DtError`] that the caller reports on the console.
//!
//! It runs with the MMU off (Device memory: no unaligned accesses), so it only ever
//! reads single bytes.

use core::fmt;

/// Largest tree accepted.
const MAX_TREE_SIZE: usize = 2 << 20;
/// Most RAM ranges kept.
pub const MAX_MEMORY_RANGES: usize = 8;
/// Deepest node nesting accepted.
const MAX_DEPTH: usize = 32;
/// Most CPU nodes kept.
pub const MAX_CPUS: usize = 8;
/// Most `reg` ranges kept from the GIC node.
pub const MAX_GIC_RANGES: usize = 8;

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// Why a tree could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtError {
    /// x0 was 0 or not 8-byte aligned.
    BadPointer(u64),
    /// The header's magic was not 0xd00dfeed.
    BadMagic(u32),
    /// `totalsize` too small or above [`MAX_TREE_SIZE`].
    BadSize(u32),
    /// A format version before 17 (the one with `size_dt_struct`).
    BadVersion(u32),
    /// A block (structure, strings) lies outside the tree.
    BadBlock,
    /// A read went past the end of the structure block at this offset.
    Truncated(usize),
    /// An unknown token at this offset.
    BadToken(u32, usize),
    /// Nodes nested deeper than [`MAX_DEPTH`], or an END_NODE with no open node.
    BadNesting,
    /// A property name offset outside the strings block.
    BadName,
    /// A `#address-cells`/`#size-cells` value that is not 1 or 2.
    BadCells,
    /// A memory `reg` whose length is not a multiple of one entry.
    BadReg,
    /// No memory node with a non-empty range.
    NoMemory,
}

impl fmt::Display for DtError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DtError::BadPointer(address) => write!(formatter, "bad tree address {address:#x}"),
            DtError::BadMagic(magic) => write!(formatter, "bad magic {magic:#010x}"),
            DtError::BadSize(size) => write!(formatter, "bad totalsize {size:#x}"),
            DtError::BadVersion(version) => write!(formatter, "unsupported version {version}"),
            DtError::BadBlock => write!(formatter, "structure or strings block out of bounds"),
            DtError::Truncated(offset) => write!(formatter, "truncated at offset {offset:#x}"),
            DtError::BadToken(token, offset) => {
                write!(formatter, "bad token {token:#x} at offset {offset:#x}")
            }
            DtError::BadNesting => write!(formatter, "bad node nesting"),
            DtError::BadName => write!(formatter, "property name out of bounds"),
            DtError::BadCells => write!(formatter, "#address-cells/#size-cells not 1 or 2"),
            DtError::BadReg => write!(formatter, "memory reg has a partial entry"),
            DtError::NoMemory => write!(formatter, "no memory node"),
        }
    }
}

/// A range of guest-physical memory.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryRange {
    /// First byte.
    pub base: u64,
    /// Bytes.
    pub size: u64,
}

impl MemoryRange {
    /// One past the last byte (saturating).
    pub fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }
}

/// Which GIC architecture the interrupt-controller node describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GicVersion {
    /// `arm,gic-400` / `arm,cortex-a15-gic`: `reg` = distributor, CPU interface.
    V2,
    /// `arm,gic-v3`: `reg` = distributor, then the redistributor regions.
    V3,
}

/// The interrupt controller node.
#[derive(Clone, Copy, Debug)]
pub struct GicInfo {
    /// Its architecture.
    pub version: GicVersion,
    /// Its `reg` ranges, in order.
    pub ranges: [MemoryRange; MAX_GIC_RANGES],
    /// How many entries of `ranges` are valid.
    pub range_count: usize,
    /// `#redistributor-regions` (GICv3; 1 when absent).
    pub redistributor_regions: u32,
}

impl GicInfo {
    /// The valid `reg` ranges.
    pub fn ranges(&self) -> &[MemoryRange] {
        &self.ranges[..self.range_count]
    }
}

/// One pre-connected event channel from `/hypervisor` (see [`BootInfo::channel`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreConnected {
    /// This domain's port.
    pub port: u32,
    /// The remote domain's id (its position in the system configuration, from 0).
    pub remote_domain: u32,
    /// The remote domain's name (empty when `hyp,channel-peers` has no entry for it).
    pub peer: &'static [u8],
}

/// What pv-guest takes from the device tree.
#[derive(Clone, Copy, Debug)]
pub struct BootInfo {
    /// `/chosen/bootargs` without trailing NULs (empty when absent).
    pub bootargs: &'static [u8],
    /// RAM ranges from the `memory` nodes.
    pub memory: [MemoryRange; MAX_MEMORY_RANGES],
    /// How many entries of `memory` are valid.
    pub memory_count: usize,
    /// Memory ranges dropped because `memory` was full.
    pub memory_dropped: usize,
    /// The first GIC node found, if any.
    pub gic: Option<GicInfo>,
    /// INTID of the virtual timer (third entry of the `arm,armv8-timer` node).
    pub virtual_timer_intid: Option<u32>,
    /// INTID of the event-channel upcall (`/hypervisor` `interrupts`).
    pub event_intid: Option<u32>,
    /// Whether the tree has a `/hypervisor` node at all (Xen gives none to a dom0less
    /// domU that is not "enhanced").
    pub hypervisor_node: bool,
    /// MPIDR (`reg`) of each `/cpus/cpu@N` node; index = vCPU id (tree order).
    pub cpus: [u64; MAX_CPUS],
    /// How many entries of `cpus` are valid.
    pub cpu_count: usize,
    /// `/hypervisor` `hyp,channels`: big-endian u32 pairs `<local-port remote-domain-id>`
    /// (empty when absent).
    pub channels: &'static [u8],
    /// `/hypervisor` `hyp,channel-peers`: NUL-separated remote domain names, same order.
    pub channel_peers: &'static [u8],
    /// Base of an `arm,sbsa-uart` (Xen's vpl011 for a dom0less domU, whose
    /// `CONSOLEIO_write` output Xen's release build filters), if the tree has one.
    pub sbsa_uart: Option<u64>,
    /// `/hypervisor` `hyp,restarts`: how many times the hypervisor restarted this domain
    /// after a crash (`None` when absent, as on Xen).
    pub restarts: Option<u32>,
}

impl BootInfo {
    /// The valid memory ranges.
    pub fn memory(&self) -> &[MemoryRange] {
        &self.memory[..self.memory_count]
    }

    /// How many whole `<port domain>` pairs `hyp,channels` holds.
    pub fn channel_count(&self) -> usize {
        self.channels.len() / 8
    }

    /// Pre-connected channel `index` (file order of the system configuration), if the
    /// tree describes that many.
    pub fn channel(&self, index: usize) -> Option<PreConnected> {
        let start = index.checked_mul(8)?;
        let port = read_u32(self.channels, start)?;
        let remote_domain = read_u32(self.channels, start.checked_add(4)?)?;
        let peer = self
            .channel_peers
            .split(|&byte| byte == 0)
            .nth(index)
            .unwrap_or(&[]);
        Some(PreConnected {
            port,
            remote_domain,
            peer,
        })
    }

    /// One past the highest RAM byte.
    pub fn memory_end(&self) -> u64 {
        self.memory()
            .iter()
            .map(MemoryRange::end)
            .max()
            .unwrap_or(0)
    }
}

/// Bounds-checked big-endian reads from a byte slice.
struct Cursor<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Cursor<'a> {
    fn u32(&mut self) -> Result<u32, DtError> {
        let value = read_u32(self.bytes, self.offset).ok_or(DtError::Truncated(self.offset))?;
        self.offset += 4;
        Ok(value)
    }

    fn take(&mut self, length: usize) -> Result<&'a [u8], DtError> {
        let end = self
            .offset
            .checked_add(length)
            .ok_or(DtError::Truncated(self.offset))?;
        let bytes = self
            .bytes
            .get(self.offset..end)
            .ok_or(DtError::Truncated(self.offset))?;
        self.offset = align4(end);
        Ok(bytes)
    }

    /// A NUL-terminated node name (without the NUL); skips the padding.
    fn name(&mut self) -> Result<&'a [u8], DtError> {
        let rest = self
            .bytes
            .get(self.offset..)
            .ok_or(DtError::Truncated(self.offset))?;
        let length = rest
            .iter()
            .position(|&byte| byte == 0)
            .ok_or(DtError::Truncated(self.offset))?;
        let name = &rest[..length];
        self.offset = align4(self.offset + length + 1);
        Ok(name)
    }
}

fn align4(value: usize) -> usize {
    (value + 3) & !3
}

fn read_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let chunk = bytes.get(offset..offset.checked_add(4)?)?;
    Some(u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
}

/// Reads `cells` (1 or 2) big-endian cells.
fn read_cells(bytes: &[u8], cells: usize) -> u64 {
    bytes.chunks_exact(4).take(cells).fold(0, |value, chunk| {
        (value << 32) | u64::from(u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
    })
}

/// A NUL-terminated string in `strings` at `offset`.
fn string_at(strings: &[u8], offset: usize) -> Result<&[u8], DtError> {
    let rest = strings.get(offset..).ok_or(DtError::BadName)?;
    let length = rest
        .iter()
        .position(|&byte| byte == 0)
        .ok_or(DtError::BadName)?;
    Ok(&rest[..length])
}

/// The properties of one node that the interrupt setup needs.
#[derive(Clone, Copy)]
struct NodeProps {
    name: &'static [u8],
    compatible: &'static [u8],
    device_type: &'static [u8],
    reg: &'static [u8],
    interrupts: &'static [u8],
    channels: &'static [u8],
    channel_peers: &'static [u8],
    restarts: Option<u32>,
    redistributor_regions: u32,
    /// This node's `#address-cells` / `#size-cells` (for its children's `reg`).
    address_cells: usize,
    size_cells: usize,
}

impl NodeProps {
    const EMPTY: NodeProps = NodeProps {
        name: &[],
        compatible: &[],
        device_type: &[],
        reg: &[],
        interrupts: &[],
        channels: &[],
        channel_peers: &[],
        restarts: None,
        redistributor_regions: 1,
        address_cells: 2,
        size_cells: 1,
    };

    fn record(&mut self, name: &[u8], value: &'static [u8]) {
        match name {
            b"compatible" => self.compatible = value,
            b"device_type" => self.device_type = value,
            b"reg" => self.reg = value,
            b"interrupts" => self.interrupts = value,
            b"hyp,channels" => self.channels = value,
            b"hyp,channel-peers" => self.channel_peers = value,
            b"hyp,restarts" if value.len() == 4 => {
                self.restarts = Some(read_cells(value, 1) as u32)
            }
            b"#redistributor-regions" => self.redistributor_regions = read_cells(value, 1) as u32,
            b"#address-cells" => self.address_cells = read_cells(value, 1) as usize,
            b"#size-cells" => self.size_cells = read_cells(value, 1) as usize,
            _ => {}
        }
    }

    /// Whether the NUL-separated `compatible` list holds `wanted`.
    fn is_compatible(&self, wanted: &[u8]) -> bool {
        self.compatible
            .split(|&byte| byte == 0)
            .any(|entry| entry == wanted)
    }
}

/// INTID of interrupt specifier `index` (3 cells: type, number, flags): SPI (type 0)
/// number + 32, PPI (type 1) number + 16.
fn interrupt_intid(interrupts: &[u8], index: usize) -> Option<u32> {
    let start = index.checked_mul(12)?;
    let kind = read_u32(interrupts, start)?;
    let number = read_u32(interrupts, start + 4)?;
    match kind {
        0 => number.checked_add(32),
        1 if number < 16 => Some(number + 16),
        _ => None,
    }
}

/// Takes what the interrupt setup needs from the node closing at `depth`.
fn classify(info: &mut BootInfo, nodes: &[NodeProps; MAX_DEPTH + 1], depth: usize) {
    let node = &nodes[depth];
    let parent = &nodes[depth - 1];
    let cells_ok = (1..=2).contains(&parent.address_cells) && parent.size_cells <= 2;
    let gic_version = if node.is_compatible(b"arm,gic-v3") {
        Some(GicVersion::V3)
    } else if node.is_compatible(b"arm,gic-400") || node.is_compatible(b"arm,cortex-a15-gic") {
        Some(GicVersion::V2)
    } else {
        None
    };
    if let (Some(version), None, true) = (gic_version, &info.gic, cells_ok) {
        let entry = (parent.address_cells + parent.size_cells) * 4;
        let mut gic = GicInfo {
            version,
            ranges: [MemoryRange::default(); MAX_GIC_RANGES],
            range_count: 0,
            redistributor_regions: node.redistributor_regions,
        };
        for (slot, chunk) in gic.ranges.iter_mut().zip(node.reg.chunks_exact(entry)) {
            let split = parent.address_cells * 4;
            *slot = MemoryRange {
                base: read_cells(&chunk[..split], parent.address_cells),
                size: read_cells(&chunk[split..], parent.size_cells),
            };
            gic.range_count += 1;
        }
        info.gic = Some(gic);
    }
    if depth == 2 && node.is_compatible(b"arm,sbsa-uart") && cells_ok && info.sbsa_uart.is_none() {
        let bytes = parent.address_cells * 4;
        if node.reg.len() >= bytes {
            info.sbsa_uart = Some(read_cells(&node.reg[..bytes], parent.address_cells));
        }
    }
    if depth == 2 && node.is_compatible(b"arm,armv8-timer") {
        info.virtual_timer_intid = interrupt_intid(node.interrupts, 2);
    }
    if depth == 2 && node.name == b"hypervisor" && node.is_compatible(b"xen,xen") {
        info.event_intid = interrupt_intid(node.interrupts, 0);
    }
    if depth == 2 && (node.name == b"hypervisor" || node.name.starts_with(b"hypervisor@")) {
        info.hypervisor_node = true;
        info.channels = node.channels;
        info.channel_peers = node.channel_peers;
        info.restarts = node.restarts;
    }
    let is_cpu = node.device_type.split(|&byte| byte == 0).next() == Some(b"cpu".as_slice());
    if depth == 3 && parent.name == b"cpus" && is_cpu && cells_ok {
        let bytes = parent.address_cells * 4;
        if node.reg.len() >= bytes && info.cpu_count < MAX_CPUS {
            info.cpus[info.cpu_count] = read_cells(&node.reg[..bytes], parent.address_cells);
            info.cpu_count += 1;
        }
    }
}

fn is_memory_node(name: &[u8]) -> bool {
    name == b"memory" || name.starts_with(b"memory@")
}

/// Reads the tree at `address`.
///
/// # Safety
/// If `address` is non-zero and aligned, the memory from it must be readable for the
/// header and for `totalsize` bytes, and stay unchanged for the guest's lifetime.
pub unsafe fn read(address: u64) -> Result<BootInfo, DtError> {
    if address == 0 || !address.is_multiple_of(8) {
        return Err(DtError::BadPointer(address));
    }
    let pointer = address as *const u8;
    // SAFETY: the caller guarantees the header (40 bytes) is readable.
    let header = unsafe { core::slice::from_raw_parts(pointer, 40) };
    let magic = read_u32(header, 0).ok_or(DtError::BadBlock)?;
    if magic != FDT_MAGIC {
        return Err(DtError::BadMagic(magic));
    }
    let total_size = read_u32(header, 4).ok_or(DtError::BadBlock)?;
    if (total_size as usize) < 40 || total_size as usize > MAX_TREE_SIZE {
        return Err(DtError::BadSize(total_size));
    }
    // SAFETY: the caller guarantees `totalsize` bytes are readable and unchanging.
    let tree: &'static [u8] = unsafe { core::slice::from_raw_parts(pointer, total_size as usize) };
    parse(tree)
}

/// Parses a tree already in a slice.
pub fn parse(tree: &'static [u8]) -> Result<BootInfo, DtError> {
    let field = |offset| read_u32(tree, offset).ok_or(DtError::BadBlock);
    let block = |offset: u32, size: u32| {
        let start = offset as usize;
        let end = start.checked_add(size as usize).ok_or(DtError::BadBlock)?;
        tree.get(start..end).ok_or(DtError::BadBlock)
    };
    let version = field(20)?;
    if version < 17 {
        return Err(DtError::BadVersion(version));
    }
    let structure = block(field(8)?, field(36)?)?;
    let strings = block(field(12)?, field(32)?)?;

    let mut info = BootInfo {
        bootargs: &[],
        memory: [MemoryRange::default(); MAX_MEMORY_RANGES],
        memory_count: 0,
        memory_dropped: 0,
        gic: None,
        virtual_timer_intid: None,
        event_intid: None,
        hypervisor_node: false,
        cpus: [0; MAX_CPUS],
        cpu_count: 0,
        channels: &[],
        channel_peers: &[],
        sbsa_uart: None,
        restarts: None,
    };
    // The node being read at each depth (index = depth), for the interrupt nodes.
    let mut nodes = [NodeProps::EMPTY; MAX_DEPTH + 1];
    let mut address_cells = 2;
    let mut size_cells = 1;
    // The memory `reg`s, kept until the root's cells are known (they may come later).
    let mut memory_regs: [&[u8]; MAX_MEMORY_RANGES] = [&[]; MAX_MEMORY_RANGES];
    let mut memory_reg_count = 0;

    let mut cursor = Cursor {
        bytes: structure,
        offset: 0,
    };
    // Depth of the node we are in (1 = root), and whether we are in /chosen or a memory
    // node (both are children of the root, so depth 2).
    let mut depth = 0usize;
    let mut in_chosen = false;
    let mut in_memory = false;
    loop {
        let token_offset = cursor.offset;
        match cursor.u32()? {
            FDT_BEGIN_NODE => {
                let name = cursor.name()?;
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(DtError::BadNesting);
                }
                if depth == 2 {
                    in_chosen = name == b"chosen";
                    in_memory = is_memory_node(name);
                }
                nodes[depth] = NodeProps {
                    name,
                    ..NodeProps::EMPTY
                };
            }
            FDT_END_NODE => {
                if depth >= 1 {
                    classify(&mut info, &nodes, depth);
                }
                depth = depth.checked_sub(1).ok_or(DtError::BadNesting)?;
                if depth < 2 {
                    in_chosen = false;
                    in_memory = false;
                }
            }
            FDT_PROP => {
                let length = cursor.u32()? as usize;
                let name_offset = cursor.u32()? as usize;
                let value = cursor.take(length)?;
                let name = string_at(strings, name_offset)?;
                nodes[depth].record(name, value);
                match (depth, name) {
                    (1, b"#address-cells") => address_cells = read_cells(value, 1),
                    (1, b"#size-cells") => size_cells = read_cells(value, 1),
                    (2, b"bootargs") if in_chosen => {
                        let end = value
                            .iter()
                            .rposition(|&byte| byte != 0)
                            .map_or(0, |i| i + 1);
                        info.bootargs = &value[..end];
                    }
                    (2, b"reg") if in_memory => {
                        if memory_reg_count < MAX_MEMORY_RANGES {
                            memory_regs[memory_reg_count] = value;
                            memory_reg_count += 1;
                        } else {
                            info.memory_dropped += 1;
                        }
                    }
                    _ => {}
                }
            }
            FDT_NOP => {}
            FDT_END => break,
            token => return Err(DtError::BadToken(token, token_offset)),
        }
    }

    if !(1..=2).contains(&address_cells) || !(1..=2).contains(&size_cells) {
        return Err(DtError::BadCells);
    }
    let entry_bytes = (address_cells + size_cells) as usize * 4;
    for reg in &memory_regs[..memory_reg_count] {
        if reg.len() % entry_bytes != 0 {
            return Err(DtError::BadReg);
        }
        for entry in reg.chunks_exact(entry_bytes) {
            let split = address_cells as usize * 4;
            let range = MemoryRange {
                base: read_cells(&entry[..split], address_cells as usize),
                size: read_cells(&entry[split..], size_cells as usize),
            };
            if range.size == 0 {
                continue;
            }
            if info.memory_count < MAX_MEMORY_RANGES {
                info.memory[info.memory_count] = range;
                info.memory_count += 1;
            } else {
                info.memory_dropped += 1;
            }
        }
    }
    if info.memory_count == 0 {
        return Err(DtError::NoMemory);
    }
    Ok(info)
}
