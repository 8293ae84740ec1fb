//! A flattened device tree reader over untrusted bytes.
//!
//! [`Fdt::new`] checks the header and walks the whole structure block once (tokens, nesting,
//! names, string offsets), so later lookups only meet well-formed data; every read is still
//! bounds-checked, and a lookup that meets anything unexpected ends quietly (`None` or the
//! end of an iteration). Nothing here panics or allocates.
//!
//! Lookups walk the structure block; a node is a handle (the tree plus an offset), and
//! finding a node's parent or ancestors re-walks from the root. Device trees are a few
//! kilobytes, and the hypervisor reads its own once at boot.

use super::{
    DtError, FDT_BEGIN_NODE, FDT_END, FDT_END_NODE, FDT_MAGIC, FDT_NOP, FDT_PROP, HEADER_SIZE,
    MAX_DEPTH, MIN_VERSION, VERSION,
};

/// Size of a version 16 header (without `size_dt_struct`).
const HEADER_SIZE_V16: usize = 36;
/// Size of one memory-reservation entry.
const RESERVATION_SIZE: usize = 16;
/// Default `#address-cells` when a node does not say.
const DEFAULT_ADDRESS_CELLS: u32 = 2;
/// Default `#size-cells` when a node does not say.
const DEFAULT_SIZE_CELLS: u32 = 1;
/// Largest `#address-cells` / `#size-cells` accepted (values wider than 64 bits must have
/// zero upper cells).
const MAX_CELLS: u32 = 4;

fn be_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let end = offset.checked_add(4)?;
    let slice = bytes.get(offset..end)?;
    let mut array = [0u8; 4];
    array.copy_from_slice(slice);
    Some(u32::from_be_bytes(array))
}

fn be_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    let high = be_u32(bytes, offset)?;
    let low = be_u32(bytes, offset.checked_add(4)?)?;
    Some((u64::from(high) << 32) | u64::from(low))
}

fn align4(value: usize) -> Option<usize> {
    value.checked_add(3).map(|sum| sum & !3)
}

/// Reads `count` big-endian cells at `offset` as one number; `None` if out of bounds or
/// wider than 64 bits.
fn read_cells(bytes: &[u8], offset: usize, count: u32) -> Option<u64> {
    let mut value: u128 = 0;
    let mut position = offset;
    for _ in 0..count {
        value = (value << 32) | u128::from(be_u32(bytes, position)?);
        position = position.checked_add(4)?;
    }
    u64::try_from(value).ok()
}

/// The NUL-terminated string at `offset` (without the NUL), if terminated and UTF-8.
fn string_at(bytes: &[u8], offset: usize) -> Option<&str> {
    let tail = bytes.get(offset..)?;
    let length = tail.iter().position(|&byte| byte == 0)?;
    core::str::from_utf8(tail.get(..length)?).ok()
}

/// Whether a node called `name` answers to the path component `component`: an exact match,
/// or, when `component` has no unit address, a match of the part before `@`.
fn name_matches(name: &str, component: &str) -> bool {
    if name == component {
        return true;
    }
    !component.contains('@') && name.split('@').next() == Some(component)
}

/// One structure-block token.
#[derive(Clone, Copy)]
enum Token<'a> {
    BeginNode(&'a str),
    EndNode,
    Property(Property<'a>),
    Nop,
    End,
}

/// One property: its name and raw value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Property<'a> {
    /// The property name.
    pub name: &'a str,
    /// The raw value bytes (big-endian cells, strings, ...).
    pub value: &'a [u8],
}

/// A parsed, validated device tree borrowed from its bytes.
#[derive(Clone, Copy, Debug)]
pub struct Fdt<'a> {
    total_size: usize,
    version: u32,
    boot_cpuid_phys: u32,
    structure: &'a [u8],
    strings: &'a [u8],
    reservations: &'a [u8],
    root_offset: usize,
}

impl<'a> Fdt<'a> {
    /// Checks the header (magic, version >= 16, `totalsize` within `bytes`, every block
    /// inside the tree) and the structure block, and returns the tree.
    pub fn new(bytes: &'a [u8]) -> Result<Fdt<'a>, DtError> {
        let magic = be_u32(bytes, 0).ok_or(DtError::Truncated)?;
        if magic != FDT_MAGIC {
            return Err(DtError::BadMagic);
        }
        let field = |index: usize| be_u32(bytes, index * 4).ok_or(DtError::Truncated);
        let total_size = field(1)? as usize;
        let struct_offset = field(2)? as usize;
        let strings_offset = field(3)? as usize;
        let reservations_offset = field(4)? as usize;
        let version = field(5)?;
        let last_compatible_version = field(6)?;
        let boot_cpuid_phys = field(7)?;
        let strings_size = field(8)? as usize;
        if version < MIN_VERSION || last_compatible_version > VERSION {
            return Err(DtError::UnsupportedVersion { version });
        }
        let header_size = if version >= 17 {
            HEADER_SIZE
        } else {
            HEADER_SIZE_V16
        };
        if bytes.len() < header_size {
            return Err(DtError::Truncated);
        }
        if total_size > bytes.len() {
            return Err(DtError::Truncated);
        }
        if total_size < header_size {
            return Err(DtError::BadHeader);
        }
        let struct_size = if version >= 17 {
            field(9)? as usize
        } else {
            total_size.saturating_sub(struct_offset)
        };
        let block = |offset: usize, size: usize| -> Result<&'a [u8], DtError> {
            if offset < header_size {
                return Err(DtError::BadHeader);
            }
            let end = offset.checked_add(size).ok_or(DtError::BadHeader)?;
            if end > total_size {
                return Err(DtError::BadHeader);
            }
            bytes.get(offset..end).ok_or(DtError::BadHeader)
        };
        if !struct_offset.is_multiple_of(4) || !reservations_offset.is_multiple_of(8) {
            return Err(DtError::BadHeader);
        }
        let structure = block(struct_offset, struct_size)?;
        let strings = block(strings_offset, strings_size)?;
        let reservations = block(
            reservations_offset,
            total_size.saturating_sub(reservations_offset),
        )?;
        let mut fdt = Fdt {
            total_size,
            version,
            boot_cpuid_phys,
            structure,
            strings,
            reservations,
            root_offset: 0,
        };
        fdt.check_reservations()?;
        fdt.root_offset = fdt.check_structure()?;
        Ok(fdt)
    }

    /// The memory-reservation block must end with a (0, 0) entry inside the tree.
    fn check_reservations(&self) -> Result<(), DtError> {
        let mut offset = 0;
        loop {
            let address = be_u64(self.reservations, offset).ok_or(DtError::BadHeader)?;
            let size = be_u64(self.reservations, offset + 8).ok_or(DtError::BadHeader)?;
            if address == 0 && size == 0 {
                return Ok(());
            }
            offset += RESERVATION_SIZE;
        }
    }

    /// Walks the whole structure block; returns the root node's offset.
    fn check_structure(&self) -> Result<usize, DtError> {
        let mut offset = 0;
        let mut root = None;
        let mut depth = 0usize;
        loop {
            let (token, next) = self.token(offset)?;
            match token {
                Token::Nop => {}
                Token::BeginNode(name) => {
                    if depth == 0 {
                        if root.is_some() || !name.is_empty() && name != "/" {
                            return Err(DtError::BadStructure { offset });
                        }
                        root = Some(offset);
                    }
                    depth += 1;
                    if depth > MAX_DEPTH {
                        return Err(DtError::TooDeep);
                    }
                }
                Token::EndNode => {
                    if depth == 0 {
                        return Err(DtError::BadStructure { offset });
                    }
                    depth -= 1;
                }
                Token::Property(_) => {
                    if depth == 0 {
                        return Err(DtError::BadStructure { offset });
                    }
                }
                Token::End => {
                    return match root {
                        Some(root) if depth == 0 => Ok(root),
                        _ => Err(DtError::BadStructure { offset }),
                    };
                }
            }
            offset = next;
        }
    }

    /// Decodes the token at `offset` of the structure block and the offset of the next one.
    fn token(&self, offset: usize) -> Result<(Token<'a>, usize), DtError> {
        let bad = DtError::BadStructure { offset };
        let tag = be_u32(self.structure, offset).ok_or(bad)?;
        let body = offset.checked_add(4).ok_or(bad)?;
        match tag {
            FDT_BEGIN_NODE => {
                let tail = self.structure.get(body..).ok_or(bad)?;
                let length = tail.iter().position(|&byte| byte == 0).ok_or(bad)?;
                let name_bytes = tail.get(..length).ok_or(bad)?;
                let name = core::str::from_utf8(name_bytes).map_err(|_| DtError::BadString)?;
                let next = align4(body + length + 1).ok_or(bad)?;
                if next > self.structure.len() {
                    return Err(bad);
                }
                Ok((Token::BeginNode(name), next))
            }
            FDT_END_NODE => Ok((Token::EndNode, body)),
            FDT_PROP => {
                let length = be_u32(self.structure, body).ok_or(bad)? as usize;
                let name_offset = be_u32(self.structure, body + 4).ok_or(bad)? as usize;
                let value_start = body.checked_add(8).ok_or(bad)?;
                let value_end = value_start.checked_add(length).ok_or(bad)?;
                let value = self.structure.get(value_start..value_end).ok_or(bad)?;
                let name = string_at(self.strings, name_offset).ok_or(DtError::BadString)?;
                let next = align4(value_end).ok_or(bad)?;
                if next > self.structure.len() {
                    return Err(bad);
                }
                Ok((Token::Property(Property { name, value }), next))
            }
            FDT_NOP => Ok((Token::Nop, body)),
            FDT_END => Ok((Token::End, body)),
            _ => Err(bad),
        }
    }

    /// The offset just after the `FDT_END_NODE` closing the node that begins at `offset`.
    fn skip_node(&self, offset: usize) -> Option<usize> {
        let mut depth = 0usize;
        let mut position = offset;
        loop {
            let (token, next) = self.token(position).ok()?;
            match token {
                Token::BeginNode(_) => depth += 1,
                Token::EndNode => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        return Some(next);
                    }
                }
                Token::End => return None,
                Token::Property(_) | Token::Nop => {}
            }
            position = next;
        }
    }

    /// The offsets of the ancestors of the node at `target`, root first, and their count.
    fn ancestors(&self, target: usize) -> Option<([usize; MAX_DEPTH], usize)> {
        let mut stack = [0usize; MAX_DEPTH];
        let mut depth = 0usize;
        let mut position = self.root_offset;
        loop {
            let (token, next) = self.token(position).ok()?;
            match token {
                Token::BeginNode(_) => {
                    if position == target {
                        return Some((stack, depth));
                    }
                    *stack.get_mut(depth)? = position;
                    depth += 1;
                }
                Token::EndNode => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        return None;
                    }
                }
                Token::End => return None,
                Token::Property(_) | Token::Nop => {}
            }
            position = next;
        }
    }

    fn node_at(&self, offset: usize) -> Node<'a> {
        Node { fdt: *self, offset }
    }

    /// The `totalsize` of the tree in bytes.
    pub fn total_size(&self) -> usize {
        self.total_size
    }

    /// The header's format version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The header's `boot_cpuid_phys`.
    pub fn boot_cpuid_phys(&self) -> u32 {
        self.boot_cpuid_phys
    }

    /// The root node.
    pub fn root(&self) -> Node<'a> {
        self.node_at(self.root_offset)
    }

    /// Every node, in document order, the root first.
    pub fn nodes(&self) -> Nodes<'a> {
        Nodes {
            fdt: *self,
            position: Some(self.root_offset),
            depth: 0,
        }
    }

    /// The entries of the `/memreserve/` block as `(address, size)`.
    pub fn memory_reservations(&self) -> MemoryReservations<'a> {
        MemoryReservations {
            bytes: self.reservations,
            position: Some(0),
        }
    }

    /// The value of alias `name` in `/aliases` (a path), if any.
    pub fn alias(&self, name: &str) -> Option<&'a str> {
        self.root().child("aliases")?.property_str(name)
    }

    /// The node at `path`. Components are separated by `/`; a component without `@`
    /// matches a node name before its `@`. A path not starting with `/` begins with an
    /// alias from `/aliases`.
    pub fn find_node(&self, path: &str) -> Option<Node<'a>> {
        let (mut node, rest) = match path.strip_prefix('/') {
            Some(rest) => (self.root(), rest),
            None => {
                let (alias, rest) = path.split_once('/').unwrap_or((path, ""));
                let target = self.alias(alias)?;
                if !target.starts_with('/') {
                    return None;
                }
                (self.find_node(target)?, rest)
            }
        };
        for component in rest.split('/').filter(|component| !component.is_empty()) {
            node = node.child(component)?;
        }
        Some(node)
    }

    /// The first node, in document order, compatible with any of `compatibles`.
    pub fn find_compatible(&self, compatibles: &[&str]) -> Option<Node<'a>> {
        self.nodes().find(|node| {
            compatibles
                .iter()
                .any(|compatible| node.is_compatible(compatible))
        })
    }

    /// The node whose `phandle` (or `linux,phandle`) is `phandle`.
    pub fn phandle_node(&self, phandle: u32) -> Option<Node<'a>> {
        self.nodes().find(|node| node.phandle() == Some(phandle))
    }

    /// The parent of `node` (`None` for the root).
    pub fn parent(&self, node: &Node<'a>) -> Option<Node<'a>> {
        let (stack, depth) = self.ancestors(node.offset)?;
        let parent = *stack.get(depth.checked_sub(1)?)?;
        Some(self.node_at(parent))
    }

    /// The interrupt controller of `node`: its own or nearest ancestor's
    /// `interrupt-parent`, resolved through phandles.
    pub fn interrupt_parent(&self, node: &Node<'a>) -> Option<Node<'a>> {
        if let Some(phandle) = node.property_u32("interrupt-parent") {
            return self.phandle_node(phandle);
        }
        let (stack, depth) = self.ancestors(node.offset)?;
        for offset in stack.get(..depth)?.iter().rev() {
            if let Some(phandle) = self.node_at(*offset).property_u32("interrupt-parent") {
                return self.phandle_node(phandle);
            }
        }
        None
    }

    /// Translates `bus_address`, an address in `node`'s parent bus (as in its `reg`), to a
    /// CPU physical address through every ancestor's `ranges`. An empty `ranges` maps 1:1;
    /// a missing `ranges` on a non-root bus, or an address outside every range, gives
    /// `None`.
    pub fn translate_address(&self, node: &Node<'a>, bus_address: u64) -> Option<u64> {
        let (stack, depth) = self.ancestors(node.offset)?;
        let ancestors = stack.get(..depth)?;
        let mut address = bus_address;
        // ancestors[0] is the root; walk from the immediate parent up to the root's child.
        for index in (1..depth).rev() {
            let bus = self.node_at(*ancestors.get(index)?);
            let outer = self.node_at(*ancestors.get(index - 1)?);
            let ranges = bus.property("ranges")?;
            if ranges.is_empty() {
                continue;
            }
            address = translate_one(
                ranges,
                bus.address_cells()?,
                outer.address_cells()?,
                bus.size_cells()?,
                address,
            )?;
        }
        Some(address)
    }
}

/// Translates `address` through one `ranges` value.
fn translate_one(
    ranges: &[u8],
    child_cells: u32,
    parent_cells: u32,
    size_cells: u32,
    address: u64,
) -> Option<u64> {
    let entry_cells = child_cells
        .checked_add(parent_cells)?
        .checked_add(size_cells)?;
    let entry_size = (entry_cells as usize).checked_mul(4)?;
    if entry_size == 0 {
        return None;
    }
    let mut offset = 0usize;
    while offset.checked_add(entry_size)? <= ranges.len() {
        let child = read_cells(ranges, offset, child_cells);
        let parent = read_cells(ranges, offset + 4 * child_cells as usize, parent_cells);
        let size = read_cells(
            ranges,
            offset + 4 * (child_cells + parent_cells) as usize,
            size_cells,
        );
        if let (Some(child), Some(parent), Some(size)) = (child, parent, size) {
            if let Some(delta) = address.checked_sub(child) {
                if delta < size {
                    return parent.checked_add(delta);
                }
            }
        }
        offset += entry_size;
    }
    None
}

/// A node of a [`Fdt`]: a handle, cheap to copy.
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    fdt: Fdt<'a>,
    offset: usize,
}

impl PartialEq for Node<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.offset == other.offset && core::ptr::eq(self.fdt.structure, other.fdt.structure)
    }
}

impl Eq for Node<'_> {}

impl<'a> Node<'a> {
    /// The node's offset inside the structure block (stable identity within one tree).
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The full node name, with unit address (`""` for the root).
    pub fn name(&self) -> &'a str {
        match self.fdt.token(self.offset) {
            Ok((Token::BeginNode(name), _)) => name,
            _ => "",
        }
    }

    /// The node name without its unit address.
    pub fn base_name(&self) -> &'a str {
        let name = self.name();
        name.split('@').next().unwrap_or(name)
    }

    /// The unit address (after `@`), if the name has one.
    pub fn unit_address(&self) -> Option<&'a str> {
        self.name().split_once('@').map(|(_, unit)| unit)
    }

    /// Offset of the first token after the node's name.
    fn contents(&self) -> Option<usize> {
        match self.fdt.token(self.offset) {
            Ok((Token::BeginNode(_), next)) => Some(next),
            _ => None,
        }
    }

    /// The node's properties, in order.
    pub fn properties(&self) -> Properties<'a> {
        Properties {
            fdt: self.fdt,
            position: self.contents(),
        }
    }

    /// The raw value of property `name`.
    pub fn property(&self, name: &str) -> Option<&'a [u8]> {
        self.properties()
            .find(|property| property.name == name)
            .map(|property| property.value)
    }

    /// Whether the node has property `name`.
    pub fn has_property(&self, name: &str) -> bool {
        self.property(name).is_some()
    }

    /// Property `name` as one big-endian 32-bit cell (exactly 4 bytes).
    pub fn property_u32(&self, name: &str) -> Option<u32> {
        let value = self.property(name)?;
        if value.len() != 4 {
            return None;
        }
        be_u32(value, 0)
    }

    /// Property `name` as two big-endian cells (exactly 8 bytes).
    pub fn property_u64(&self, name: &str) -> Option<u64> {
        let value = self.property(name)?;
        if value.len() != 8 {
            return None;
        }
        be_u64(value, 0)
    }

    /// Property `name` as one or two cells (4 or 8 bytes), as `linux,initrd-start` is.
    pub fn property_uint(&self, name: &str) -> Option<u64> {
        let value = self.property(name)?;
        match value.len() {
            4 => be_u32(value, 0).map(u64::from),
            8 => be_u64(value, 0),
            _ => None,
        }
    }

    /// Property `name` as a string: the bytes before the first NUL, which must exist.
    pub fn property_str(&self, name: &str) -> Option<&'a str> {
        string_at(self.property(name)?, 0)
    }

    /// Property `name` as a list of NUL-terminated strings (empty if absent).
    pub fn property_strings(&self, name: &str) -> StringList<'a> {
        StringList {
            bytes: self.property(name).unwrap_or(&[]),
        }
    }

    /// Property `name` as big-endian 32-bit cells (a trailing partial cell is ignored).
    pub fn property_cells(&self, name: &str) -> Cells<'a> {
        Cells {
            bytes: self.property(name).unwrap_or(&[]),
        }
    }

    /// Whether `compatible` lists `compatible_string`.
    pub fn is_compatible(&self, compatible_string: &str) -> bool {
        self.property_strings("compatible")
            .any(|entry| entry == compatible_string)
    }

    /// The node's `phandle` (or legacy `linux,phandle`).
    pub fn phandle(&self) -> Option<u32> {
        self.property_u32("phandle")
            .or_else(|| self.property_u32("linux,phandle"))
    }

    /// The node's children, in order.
    pub fn children(&self) -> Children<'a> {
        Children {
            fdt: self.fdt,
            position: self.contents(),
        }
    }

    /// The first child answering to `component` (exact name, or base name when
    /// `component` has no `@`).
    pub fn child(&self, component: &str) -> Option<Node<'a>> {
        self.children()
            .find(|child| name_matches(child.name(), component))
    }

    /// The parent node (`None` for the root).
    pub fn parent(&self) -> Option<Node<'a>> {
        self.fdt.parent(self)
    }

    /// This node's `#address-cells` (for its children's `reg`), default 2; `None` if
    /// malformed or above 4.
    pub fn address_cells(&self) -> Option<u32> {
        cells_property(self, "#address-cells", DEFAULT_ADDRESS_CELLS)
    }

    /// This node's `#size-cells` (for its children's `reg`), default 1; `None` if
    /// malformed or above 4.
    pub fn size_cells(&self) -> Option<u32> {
        cells_property(self, "#size-cells", DEFAULT_SIZE_CELLS)
    }

    /// The `reg` entries as `(address, size)` in the parent's bus address space, decoded
    /// with the parent's `#address-cells` / `#size-cells`. Empty if absent or malformed.
    pub fn reg(&self) -> RegIter<'a> {
        let cells = self
            .parent()
            .and_then(|parent| Some((parent.address_cells()?, parent.size_cells()?)));
        match (cells, self.property("reg")) {
            (Some((address_cells, size_cells)), Some(value)) if address_cells > 0 => RegIter {
                bytes: value,
                position: 0,
                address_cells,
                size_cells,
            },
            _ => RegIter {
                bytes: &[],
                position: 0,
                address_cells: 1,
                size_cells: 0,
            },
        }
    }

    /// The raw cells of the `interrupts` property (group them by the interrupt parent's
    /// `#interrupt-cells`).
    pub fn interrupts(&self) -> Cells<'a> {
        self.property_cells("interrupts")
    }
}

fn cells_property(node: &Node<'_>, name: &str, default: u32) -> Option<u32> {
    match node.property(name) {
        None => Some(default),
        Some(_) => node.property_u32(name).filter(|cells| *cells <= MAX_CELLS),
    }
}

/// Every node of a tree in document order.
#[derive(Clone, Debug)]
pub struct Nodes<'a> {
    fdt: Fdt<'a>,
    position: Option<usize>,
    depth: usize,
}

impl<'a> Iterator for Nodes<'a> {
    type Item = Node<'a>;

    fn next(&mut self) -> Option<Node<'a>> {
        loop {
            let position = self.position?;
            let Ok((token, next)) = self.fdt.token(position) else {
                self.position = None;
                return None;
            };
            self.position = Some(next);
            match token {
                Token::BeginNode(_) => {
                    self.depth += 1;
                    return Some(self.fdt.node_at(position));
                }
                Token::EndNode => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        self.position = None;
                    }
                }
                Token::End => self.position = None,
                Token::Property(_) | Token::Nop => {}
            }
        }
    }
}

/// The children of one node.
#[derive(Clone, Debug)]
pub struct Children<'a> {
    fdt: Fdt<'a>,
    position: Option<usize>,
}

impl<'a> Iterator for Children<'a> {
    type Item = Node<'a>;

    fn next(&mut self) -> Option<Node<'a>> {
        loop {
            let position = self.position?;
            let Ok((token, next)) = self.fdt.token(position) else {
                self.position = None;
                return None;
            };
            match token {
                Token::Nop | Token::Property(_) => self.position = Some(next),
                Token::BeginNode(_) => {
                    self.position = self.fdt.skip_node(position);
                    return Some(self.fdt.node_at(position));
                }
                Token::EndNode | Token::End => {
                    self.position = None;
                    return None;
                }
            }
        }
    }
}

/// The properties of one node.
#[derive(Clone, Debug)]
pub struct Properties<'a> {
    fdt: Fdt<'a>,
    position: Option<usize>,
}

impl<'a> Iterator for Properties<'a> {
    type Item = Property<'a>;

    fn next(&mut self) -> Option<Property<'a>> {
        loop {
            let position = self.position?;
            let Ok((token, next)) = self.fdt.token(position) else {
                self.position = None;
                return None;
            };
            match token {
                Token::Nop => self.position = Some(next),
                Token::Property(property) => {
                    self.position = Some(next);
                    return Some(property);
                }
                Token::BeginNode(_) | Token::EndNode | Token::End => {
                    self.position = None;
                    return None;
                }
            }
        }
    }
}

/// The NUL-terminated strings of a string-list property. Stops at a string that is not
/// NUL-terminated or not UTF-8.
#[derive(Clone, Debug)]
pub struct StringList<'a> {
    bytes: &'a [u8],
}

impl<'a> Iterator for StringList<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let length = self.bytes.iter().position(|&byte| byte == 0);
        let result = length.and_then(|length| {
            let (text, rest) = self.bytes.split_at(length);
            let text = core::str::from_utf8(text).ok()?;
            Some((text, rest.get(1..).unwrap_or(&[])))
        });
        match result {
            Some((text, rest)) => {
                self.bytes = rest;
                Some(text)
            }
            None => {
                self.bytes = &[];
                None
            }
        }
    }
}

/// Big-endian 32-bit cells of a property value.
#[derive(Clone, Debug)]
pub struct Cells<'a> {
    bytes: &'a [u8],
}

impl Iterator for Cells<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let value = be_u32(self.bytes, 0)?;
        self.bytes = self.bytes.get(4..).unwrap_or(&[]);
        Some(value)
    }
}

/// The `(address, size)` entries of a `reg` property. Stops at a partial entry or at a
/// value wider than 64 bits.
#[derive(Clone, Debug)]
pub struct RegIter<'a> {
    bytes: &'a [u8],
    position: usize,
    address_cells: u32,
    size_cells: u32,
}

impl Iterator for RegIter<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        let size_offset = self.position.checked_add(4 * self.address_cells as usize)?;
        let end = size_offset.checked_add(4 * self.size_cells as usize)?;
        let entry = (
            read_cells(self.bytes, self.position, self.address_cells),
            read_cells(self.bytes, size_offset, self.size_cells),
        );
        match entry {
            (Some(address), Some(size)) if end > self.position && end <= self.bytes.len() => {
                self.position = end;
                Some((address, size))
            }
            _ => {
                self.position = self.bytes.len();
                self.bytes = &[];
                None
            }
        }
    }
}

/// The `/memreserve/` entries of a tree, up to the terminating `(0, 0)`.
#[derive(Clone, Debug)]
pub struct MemoryReservations<'a> {
    bytes: &'a [u8],
    position: Option<usize>,
}

impl Iterator for MemoryReservations<'_> {
    type Item = (u64, u64);

    fn next(&mut self) -> Option<(u64, u64)> {
        let position = self.position?;
        let address = be_u64(self.bytes, position);
        let size = position
            .checked_add(8)
            .and_then(|offset| be_u64(self.bytes, offset));
        match (address, size) {
            (Some(address), Some(size)) if address != 0 || size != 0 => {
                self.position = position.checked_add(RESERVATION_SIZE);
                Some((address, size))
            }
            _ => {
                self.position = None;
                None
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) const VIRT_GICV2: &[u8] = include_bytes!("fixtures/virt-gicv2.dtb");
    pub(crate) const VIRT_GICV3: &[u8] = include_bytes!("fixtures/virt-gicv3.dtb");
    pub(crate) const PI4_LIKE: &[u8] = include_bytes!("fixtures/pi4-like.dtb");

    #[test]
    fn header_and_root() {
        let fdt = Fdt::new(VIRT_GICV2).unwrap();
        assert_eq!(fdt.total_size(), VIRT_GICV2.len());
        assert_eq!(fdt.version(), 17);
        let root = fdt.root();
        assert_eq!(root.name(), "");
        assert_eq!(root.parent(), None);
        assert!(root.is_compatible("linux,dummy-virt"));
        assert_eq!(root.property_str("model"), Some("linux,dummy-virt"));
        assert_eq!(root.address_cells(), Some(2));
        assert_eq!(root.size_cells(), Some(2));
        assert!(root.children().any(|child| child.name() == "pl011@9000000"));
        assert!(root
            .properties()
            .any(|property| property.name == "dma-coherent"));
        assert_eq!(fdt.memory_reservations().count(), 0);
    }

    #[test]
    fn find_nodes_and_properties() {
        let fdt = Fdt::new(VIRT_GICV3).unwrap();
        let chosen = fdt.find_node("/chosen").unwrap();
        assert_eq!(chosen.name(), "chosen");
        assert_eq!(
            chosen.property_str("bootargs"),
            Some("console=ttyAMA0 test=1")
        );
        assert_eq!(
            chosen.property_uint("linux,initrd-start"),
            Some(0x4800_0000)
        );
        assert_eq!(chosen.property_u64("linux,initrd-end"), Some(0x4800_1000));
        assert_eq!(chosen.property_u32("linux,initrd-end"), None);
        assert_eq!(chosen.property_str("stdout-path"), Some("/pl011@9000000"));
        let memory = fdt.find_node("/memory").unwrap();
        assert_eq!(memory.name(), "memory@40000000");
        assert_eq!(memory.base_name(), "memory");
        assert_eq!(memory.unit_address(), Some("40000000"));
        assert_eq!(
            memory.reg().collect::<Vec<_>>(),
            [(0x4000_0000, 0x4000_0000)]
        );
        assert!(fdt.find_node("/memory@40000000").is_some());
        assert!(fdt.find_node("/memory@0").is_none());
        assert!(fdt.find_node("/nonexistent").is_none());
        assert_eq!(fdt.find_node("/").unwrap(), fdt.root());
        let cpu1 = fdt.find_node("/cpus/cpu@1").unwrap();
        assert_eq!(cpu1.reg().collect::<Vec<_>>(), [(1, 0)]);
        assert_eq!(cpu1.property_str("enable-method"), Some("psci"));
        assert_eq!(cpu1.parent().unwrap().name(), "cpus");
        let serial = fdt.find_node("serial0").unwrap();
        assert_eq!(serial.name(), "pl011@9000000");
        assert_eq!(fdt.alias("serial0"), Some("/pl011@9000000"));
        assert_eq!(
            serial.property_strings("compatible").collect::<Vec<_>>(),
            ["arm,pl011", "arm,primecell"]
        );
        let timer = fdt.find_compatible(&["arm,armv8-timer"]).unwrap();
        assert_eq!(timer.name(), "timer");
        assert_eq!(
            timer.interrupts().collect::<Vec<_>>(),
            [1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4]
        );
        let gic = fdt.find_compatible(&["arm,gic-400", "arm,gic-v3"]).unwrap();
        assert_eq!(gic.name(), "intc@8000000");
        assert_eq!(
            gic.reg().collect::<Vec<_>>(),
            [(0x0800_0000, 0x1_0000), (0x080A_0000, 0xF6_0000)]
        );
        let phandle = fdt.root().property_u32("interrupt-parent").unwrap();
        assert_eq!(fdt.phandle_node(phandle), Some(gic));
        assert_eq!(fdt.interrupt_parent(&timer), Some(gic));
        assert_eq!(fdt.phandle_node(0xdead), None);
        let its = fdt.find_compatible(&["arm,gic-v3-its"]).unwrap();
        assert_eq!(fdt.translate_address(&its, 0x808_0000), Some(0x808_0000));
        // Document order: the first virtio-mmio node.
        let virtio = fdt.find_compatible(&["virtio,mmio"]).unwrap();
        assert_eq!(virtio.name(), "virtio_mmio@a000000");
        assert!(fdt.nodes().count() > 40);
    }

    #[test]
    fn pi_ranges_translation() {
        let fdt = Fdt::new(PI4_LIKE).unwrap();
        assert_eq!(fdt.memory_reservations().collect::<Vec<_>>(), [(0, 0x1000)]);
        let uart = fdt.find_node("serial0").unwrap();
        assert_eq!(uart.name(), "serial@7e201000");
        let (address, size) = uart.reg().next().unwrap();
        assert_eq!((address, size), (0x7e20_1000, 0x200));
        assert_eq!(fdt.translate_address(&uart, address), Some(0xfe20_1000));
        let gic = fdt.find_compatible(&["arm,gic-400"]).unwrap();
        let translated: Vec<u64> = gic
            .reg()
            .map(|(address, _)| fdt.translate_address(&gic, address).unwrap())
            .collect();
        assert_eq!(
            translated,
            [0xff84_1000, 0xff84_2000, 0xff84_4000, 0xff84_6000]
        );
        // Outside every range of /soc.
        assert_eq!(fdt.translate_address(&uart, 0x1000), None);
        // A bus without `ranges` is not translatable.
        let hidden = fdt.find_node("/soc/local-bus/hidden@10").unwrap();
        assert_eq!(hidden.reg().next(), Some((0x10, 4)));
        assert_eq!(fdt.translate_address(&hidden, 0x10), None);
        // Root-level nodes translate 1:1.
        let memory = fdt.find_node("/memory@0").unwrap();
        assert_eq!(memory.reg().collect::<Vec<_>>(), [(0, 0x3c00_0000)]);
        assert_eq!(fdt.translate_address(&memory, 0x1234), Some(0x1234));
        let chosen = fdt.find_node("/chosen").unwrap();
        assert_eq!(
            chosen.property_uint("linux,initrd-start"),
            Some(0x0800_0000)
        );
        assert_eq!(fdt.find_node("serial1/").unwrap().name(), "serial@7e215040");
        let cpu = fdt.find_node("/cpus/cpu@2").unwrap();
        assert_eq!(cpu.property_uint("cpu-release-addr"), Some(0xe8));
    }

    #[test]
    fn header_errors() {
        assert_eq!(Fdt::new(&[]).unwrap_err(), DtError::Truncated);
        assert_eq!(Fdt::new(&[0; 64]).unwrap_err(), DtError::BadMagic);
        let mut bytes = VIRT_GICV2.to_vec();
        bytes[20..24].copy_from_slice(&15u32.to_be_bytes());
        assert_eq!(
            Fdt::new(&bytes).unwrap_err(),
            DtError::UnsupportedVersion { version: 15 }
        );
        let mut bytes = VIRT_GICV2.to_vec();
        bytes[8..12].copy_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
        assert_eq!(Fdt::new(&bytes).unwrap_err(), DtError::BadHeader);
        let mut bytes = VIRT_GICV2.to_vec();
        bytes[4..8].copy_from_slice(&(VIRT_GICV2.len() as u32 + 1).to_be_bytes());
        assert_eq!(Fdt::new(&bytes).unwrap_err(), DtError::Truncated);
    }

    /// Touches every lookup; must never panic, whatever the tree holds.
    pub(crate) fn exercise(fdt: &Fdt) -> usize {
        let mut work = 0usize;
        for node in fdt.nodes().take(10_000) {
            work += node.name().len();
            work += node.properties().count();
            for (address, _) in node.reg().take(64) {
                work += fdt.translate_address(&node, address).is_some() as usize;
            }
            work += node.interrupts().take(64).count();
            work += node.property_strings("compatible").take(64).count();
            work += node.children().take(1000).count();
            work += node.parent().is_some() as usize;
            work += fdt.interrupt_parent(&node).is_some() as usize;
            work += node.property_uint("reg").is_some() as usize;
            work += node.property_str("status").is_some() as usize;
        }
        work += fdt.memory_reservations().take(1000).count();
        for path in [
            "/chosen",
            "/cpus/cpu@0",
            "serial0",
            "/soc/serial",
            "/memory",
        ] {
            work += fdt.find_node(path).is_some() as usize;
        }
        work += fdt.find_compatible(&["arm,gic-400", "arm,pl011"]).is_some() as usize;
        work += fdt.phandle_node(0x8003).is_some() as usize;
        work
    }

    /// A small deterministic generator (xorshift64).
    pub(crate) struct Random(pub(crate) u64);

    impl Random {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn every_truncation_never_panics() {
        for fixture in [VIRT_GICV2, VIRT_GICV3, PI4_LIKE] {
            assert!(exercise(&Fdt::new(fixture).unwrap()) > 0);
            for length in 0..fixture.len() {
                let bytes = &fixture[..length];
                assert!(Fdt::new(bytes).is_err(), "length {length}");
                // Also pretend the header says so, to reach the structure checks.
                let mut shortened = bytes.to_vec();
                if length >= 8 {
                    shortened[4..8].copy_from_slice(&(length as u32).to_be_bytes());
                }
                if let Ok(fdt) = Fdt::new(&shortened) {
                    exercise(&fdt);
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            if let Ok(fdt) = Fdt::new(&bytes) {
                exercise(&fdt);
            }
        }

        #[test]
        fn arbitrary_structure_block_never_panics(
            body in proptest::collection::vec(0u32..12, 0..64),
        ) {
            // A valid header around a structure block of mostly token-like words.
            let mut bytes = vec![0u8; 40 + 16];
            let struct_offset = bytes.len();
            for word in &body {
                bytes.extend_from_slice(&word.to_be_bytes());
            }
            let strings_offset = bytes.len();
            bytes.extend_from_slice(b"reg\0compatible\0");
            let header = [
                0xd00d_feed,
                bytes.len() as u32,
                struct_offset as u32,
                strings_offset as u32,
                40,
                17,
                16,
                0,
                (bytes.len() - strings_offset) as u32,
                (strings_offset - struct_offset) as u32,
            ];
            for (index, field) in header.iter().enumerate() {
                bytes[index * 4..index * 4 + 4].copy_from_slice(&field.to_be_bytes());
            }
            if let Ok(fdt) = Fdt::new(&bytes) {
                exercise(&fdt);
            }
        }
    }

    #[test]
    fn random_corruption_never_panics() {
        let mut random = Random(0x1234_5678_9abc_def1);
        for fixture in [VIRT_GICV2, VIRT_GICV3, PI4_LIKE] {
            for _ in 0..400 {
                let mut bytes = fixture.to_vec();
                let flips = 1 + random.next() % 4;
                for _ in 0..flips {
                    let index = (random.next() % bytes.len() as u64) as usize;
                    bytes[index] = match random.next() % 3 {
                        0 => bytes[index] ^ (1 << (random.next() % 8)),
                        1 => random.next() as u8,
                        _ => 0xFF,
                    };
                }
                if let Ok(fdt) = Fdt::new(&bytes) {
                    exercise(&fdt);
                }
            }
        }
    }
}
