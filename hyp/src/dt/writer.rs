//! A device tree writer that builds a DTB (version 17) into a caller's buffer, without a
//! heap.
//!
//! While the tree is being written the structure block grows up from the front of the
//! buffer and the strings (property names, deduplicated) grow down from the back; property
//! tokens temporarily hold each name's distance from the end of the buffer. [`FdtWriter::finish`]
//! moves the strings right after the structure block, rewrites those name offsets, and
//! fills in the header. Every failure is an error value; nothing panics.

use super::{
    DtError, FDT_BEGIN_NODE, FDT_END, FDT_END_NODE, FDT_MAGIC, FDT_PROP, HEADER_SIZE,
    LAST_COMPATIBLE_VERSION, MAX_DEPTH, VERSION,
};

/// Where the memory-reservation block starts (right after the header, 8-byte aligned).
const RESERVATIONS_OFFSET: usize = HEADER_SIZE;
/// Size of one memory-reservation entry.
const RESERVATION_SIZE: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Memory reservations may still be added; no node yet.
    Reservations,
    /// Inside the structure block.
    Structure,
    /// The root node has been closed.
    RootClosed,
    /// `finish` has run (successfully or not).
    Finished,
}

/// Writes a flattened device tree into a borrowed buffer.
#[derive(Debug)]
pub struct FdtWriter<'a> {
    buffer: &'a mut [u8],
    /// Start of the structure block (after the reservation block).
    struct_start: usize,
    /// Where the next byte of the structure block (or reservation) goes.
    cursor: usize,
    /// Start of the strings area at the back of the buffer.
    strings_start: usize,
    depth: usize,
    phase: Phase,
}

impl<'a> FdtWriter<'a> {
    /// Starts a tree in `buffer`. The buffer must at least hold the header, an empty
    /// reservation block and an empty root node.
    pub fn new(buffer: &'a mut [u8]) -> Result<FdtWriter<'a>, DtError> {
        // Header, reservation terminator, BEGIN_NODE "" , END_NODE, END.
        let minimum = HEADER_SIZE + RESERVATION_SIZE + 8 + 4 + 4;
        if buffer.len() < minimum {
            return Err(DtError::NoSpace);
        }
        // The header's sizes are 32-bit: a larger buffer is used only up to 4 GiB.
        let usable = buffer.len().min(u32::MAX as usize);
        Ok(FdtWriter {
            buffer,
            struct_start: 0,
            cursor: RESERVATIONS_OFFSET,
            strings_start: usable,
            depth: 0,
            phase: Phase::Reservations,
        })
    }

    /// Reserves `needed` bytes at the cursor, returning their range.
    fn claim(&mut self, needed: usize) -> Result<core::ops::Range<usize>, DtError> {
        let end = self.cursor.checked_add(needed).ok_or(DtError::NoSpace)?;
        if end > self.strings_start {
            return Err(DtError::NoSpace);
        }
        let range = self.cursor..end;
        self.cursor = end;
        Ok(range)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), DtError> {
        let range = self.claim(bytes.len())?;
        self.buffer
            .get_mut(range)
            .ok_or(DtError::NoSpace)?
            .copy_from_slice(bytes);
        Ok(())
    }

    fn put_u32(&mut self, value: u32) -> Result<(), DtError> {
        self.put(&value.to_be_bytes())
    }

    /// Zero-pads the structure block to a 4-byte boundary.
    fn pad(&mut self) -> Result<(), DtError> {
        let padding = (4 - self.cursor % 4) % 4;
        let range = self.claim(padding)?;
        self.buffer.get_mut(range).ok_or(DtError::NoSpace)?.fill(0);
        Ok(())
    }

    /// Adds a `/memreserve/` entry. Only before the first node.
    pub fn add_memory_reservation(&mut self, address: u64, size: u64) -> Result<(), DtError> {
        if self.phase != Phase::Reservations {
            return Err(DtError::OutOfOrder);
        }
        // Keep room for the terminating entry.
        let needed = RESERVATION_SIZE * 2;
        if self.cursor.checked_add(needed).ok_or(DtError::NoSpace)? > self.strings_start {
            return Err(DtError::NoSpace);
        }
        self.put(&address.to_be_bytes())?;
        self.put(&size.to_be_bytes())
    }

    /// Opens a node. The first node is the root and must be named `""`; every other name
    /// must be non-empty, without NUL or `/`.
    pub fn begin_node(&mut self, name: &str) -> Result<(), DtError> {
        match self.phase {
            Phase::Reservations => {
                if !name.is_empty() {
                    return Err(DtError::BadName);
                }
                self.put(&[0u8; RESERVATION_SIZE])?;
                self.struct_start = self.cursor;
                self.phase = Phase::Structure;
            }
            Phase::Structure => {
                if name.is_empty() || name.bytes().any(|byte| byte == 0 || byte == b'/') {
                    return Err(DtError::BadName);
                }
            }
            Phase::RootClosed => return Err(DtError::Unbalanced),
            Phase::Finished => return Err(DtError::OutOfOrder),
        }
        if self.depth >= MAX_DEPTH {
            return Err(DtError::TooDeep);
        }
        self.put_u32(FDT_BEGIN_NODE)?;
        self.put(name.as_bytes())?;
        self.put(&[0])?;
        self.pad()?;
        self.depth += 1;
        Ok(())
    }

    /// Closes the innermost open node.
    pub fn end_node(&mut self) -> Result<(), DtError> {
        if self.phase == Phase::Finished {
            return Err(DtError::OutOfOrder);
        }
        if self.phase != Phase::Structure || self.depth == 0 {
            return Err(DtError::Unbalanced);
        }
        self.put_u32(FDT_END_NODE)?;
        self.depth -= 1;
        if self.depth == 0 {
            self.phase = Phase::RootClosed;
        }
        Ok(())
    }

    /// The distance from the end of the usable buffer to `name` in the strings area,
    /// adding it if it is not there yet.
    fn intern(&mut self, name: &str) -> Result<usize, DtError> {
        let usable = self.buffer.len().min(u32::MAX as usize);
        let area = self
            .buffer
            .get(self.strings_start..usable)
            .ok_or(DtError::NoSpace)?;
        let mut position = 0usize;
        for existing in area.split(|&byte| byte == 0) {
            if position >= area.len() {
                break;
            }
            if existing == name.as_bytes() {
                return Ok(area.len() - position);
            }
            position += existing.len() + 1;
        }
        let needed = name.len().checked_add(1).ok_or(DtError::NoSpace)?;
        let new_start = self
            .strings_start
            .checked_sub(needed)
            .ok_or(DtError::NoSpace)?;
        if new_start < self.cursor {
            return Err(DtError::NoSpace);
        }
        let slot = self
            .buffer
            .get_mut(new_start..self.strings_start)
            .ok_or(DtError::NoSpace)?;
        let (text, terminator) = slot.split_at_mut(name.len());
        text.copy_from_slice(name.as_bytes());
        terminator.fill(0);
        self.strings_start = new_start;
        Ok(usable - new_start)
    }

    /// Writes a property whose value is the concatenation of `parts`.
    fn property_parts(
        &mut self,
        name: &str,
        parts: &[&[u8]],
        nul_after_each: bool,
    ) -> Result<(), DtError> {
        if self.phase != Phase::Structure || self.depth == 0 {
            return Err(DtError::OutOfOrder);
        }
        if name.is_empty() || name.bytes().any(|byte| byte == 0) {
            return Err(DtError::BadName);
        }
        let mut length = 0usize;
        for part in parts {
            length = length
                .checked_add(part.len() + usize::from(nul_after_each))
                .ok_or(DtError::NoSpace)?;
        }
        let length_u32 = u32::try_from(length).map_err(|_| DtError::NoSpace)?;
        let distance = self.intern(name)?;
        let distance_u32 = u32::try_from(distance).map_err(|_| DtError::NoSpace)?;
        self.put_u32(FDT_PROP)?;
        self.put_u32(length_u32)?;
        self.put_u32(distance_u32)?;
        for part in parts {
            self.put(part)?;
            if nul_after_each {
                self.put(&[0])?;
            }
        }
        self.pad()
    }

    /// Writes property `name` with the raw `value`.
    pub fn property(&mut self, name: &str, value: &[u8]) -> Result<(), DtError> {
        self.property_parts(name, &[value], false)
    }

    /// Writes an empty (boolean) property.
    pub fn property_empty(&mut self, name: &str) -> Result<(), DtError> {
        self.property_parts(name, &[], false)
    }

    /// Writes a one-cell property.
    pub fn property_u32(&mut self, name: &str, value: u32) -> Result<(), DtError> {
        self.property(name, &value.to_be_bytes())
    }

    /// Writes a two-cell (64-bit) property.
    pub fn property_u64(&mut self, name: &str, value: u64) -> Result<(), DtError> {
        self.property(name, &value.to_be_bytes())
    }

    /// Writes a property of big-endian 32-bit cells.
    pub fn property_cells(&mut self, name: &str, cells: &[u32]) -> Result<(), DtError> {
        if self.phase != Phase::Structure || self.depth == 0 {
            return Err(DtError::OutOfOrder);
        }
        if name.is_empty() || name.bytes().any(|byte| byte == 0) {
            return Err(DtError::BadName);
        }
        let length = cells.len().checked_mul(4).ok_or(DtError::NoSpace)?;
        let length_u32 = u32::try_from(length).map_err(|_| DtError::NoSpace)?;
        let distance = self.intern(name)?;
        let distance_u32 = u32::try_from(distance).map_err(|_| DtError::NoSpace)?;
        self.put_u32(FDT_PROP)?;
        self.put_u32(length_u32)?;
        self.put_u32(distance_u32)?;
        for cell in cells {
            self.put_u32(*cell)?;
        }
        Ok(())
    }

    /// Writes a NUL-terminated string property. The string must not contain NUL.
    pub fn property_str(&mut self, name: &str, value: &str) -> Result<(), DtError> {
        self.property_string_list(name, &[value])
    }

    /// Writes a string-list property (each string NUL-terminated). No string may contain
    /// NUL.
    pub fn property_string_list(&mut self, name: &str, values: &[&str]) -> Result<(), DtError> {
        if values.iter().any(|value| value.as_bytes().contains(&0)) {
            return Err(DtError::BadName);
        }
        let mut parts: [&[u8]; 16] = [&[]; 16];
        if values.len() > parts.len() {
            return Err(DtError::NoSpace);
        }
        for (part, value) in parts.iter_mut().zip(values.iter()) {
            *part = value.as_bytes();
        }
        self.property_parts(name, parts.get(..values.len()).unwrap_or(&[]), true)
    }

    /// Bytes written so far to the structure block and strings (a lower bound of the final
    /// size).
    pub fn used(&self) -> usize {
        let usable = self.buffer.len().min(u32::MAX as usize);
        self.cursor + (usable - self.strings_start)
    }

    /// Closes the tree: checks that the root node is closed, moves the strings after the
    /// structure block, fixes the name offsets and fills the header. Returns the total
    /// size; the tree is `buffer[..size]`.
    pub fn finish(&mut self) -> Result<usize, DtError> {
        match self.phase {
            Phase::RootClosed => {}
            Phase::Finished => return Err(DtError::OutOfOrder),
            Phase::Reservations | Phase::Structure => return Err(DtError::Unbalanced),
        }
        self.put_u32(FDT_END)?;
        self.phase = Phase::Finished;
        let usable = self.buffer.len().min(u32::MAX as usize);
        let struct_end = self.cursor;
        let strings_size = usable - self.strings_start;
        self.rewrite_name_offsets(strings_size)?;
        self.buffer
            .copy_within(self.strings_start..usable, struct_end);
        let total_size = struct_end + strings_size;
        let to_u32 = |value: usize| u32::try_from(value).map_err(|_| DtError::NoSpace);
        let header = [
            FDT_MAGIC,
            to_u32(total_size)?,
            to_u32(self.struct_start)?,
            to_u32(struct_end)?,
            to_u32(RESERVATIONS_OFFSET)?,
            VERSION,
            LAST_COMPATIBLE_VERSION,
            0,
            to_u32(strings_size)?,
            to_u32(struct_end - self.struct_start)?,
        ];
        for (index, field) in header.iter().enumerate() {
            self.buffer
                .get_mut(index * 4..index * 4 + 4)
                .ok_or(DtError::NoSpace)?
                .copy_from_slice(&field.to_be_bytes());
        }
        Ok(total_size)
    }

    fn read_u32(&self, offset: usize) -> Result<u32, DtError> {
        let bytes = self
            .buffer
            .get(offset..offset.checked_add(4).ok_or(DtError::NoSpace)?)
            .ok_or(DtError::BadStructure { offset })?;
        let mut array = [0u8; 4];
        array.copy_from_slice(bytes);
        Ok(u32::from_be_bytes(array))
    }

    /// Turns each property's distance-from-end into an offset in the final strings block.
    fn rewrite_name_offsets(&mut self, strings_size: usize) -> Result<(), DtError> {
        let mut offset = self.struct_start;
        loop {
            let bad = DtError::BadStructure {
                offset: offset - self.struct_start,
            };
            match self.read_u32(offset)? {
                FDT_BEGIN_NODE => {
                    let name_start = offset + 4;
                    let tail = self.buffer.get(name_start..self.cursor).ok_or(bad)?;
                    let length = tail.iter().position(|&byte| byte == 0).ok_or(bad)?;
                    offset = (name_start + length + 1 + 3) & !3;
                }
                FDT_END_NODE => offset += 4,
                FDT_PROP => {
                    let length = self.read_u32(offset + 4)? as usize;
                    let distance = self.read_u32(offset + 8)? as usize;
                    let name_offset = strings_size.checked_sub(distance).ok_or(bad)?;
                    let name_offset = u32::try_from(name_offset).map_err(|_| bad)?;
                    self.buffer
                        .get_mut(offset + 8..offset + 12)
                        .ok_or(bad)?
                        .copy_from_slice(&name_offset.to_be_bytes());
                    offset = (offset + 12 + length + 3) & !3;
                }
                FDT_END => return Ok(()),
                _ => return Err(bad),
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::dt::Fdt;

    fn sample(buffer: &mut [u8]) -> Result<usize, DtError> {
        let mut writer = FdtWriter::new(buffer)?;
        writer.add_memory_reservation(0x1000, 0x2000)?;
        writer.add_memory_reservation(0x8000_0000, 0x10)?;
        writer.begin_node("")?;
        writer.property_u32("#address-cells", 2)?;
        writer.property_u32("#size-cells", 2)?;
        writer.property_string_list("compatible", &["test,board", "test,family"])?;
        writer.property_str("model", "Test")?;
        writer.begin_node("chosen")?;
        writer.property_str("bootargs", "console=hvc0")?;
        writer.property_u64("linux,initrd-start", 0x4800_0000)?;
        writer.property_u64("linux,initrd-end", 0x4900_0000)?;
        writer.end_node()?;
        writer.begin_node("memory@40000000")?;
        writer.property_str("device_type", "memory")?;
        writer.property_cells("reg", &[0, 0x4000_0000, 0, 0x1000_0000])?;
        writer.end_node()?;
        writer.begin_node("empty")?;
        writer.property_empty("always-on")?;
        writer.property("blob", &[1, 2, 3])?;
        writer.property_u32("phandle", 7)?;
        writer.end_node()?;
        writer.end_node()?;
        writer.finish()
    }

    #[test]
    fn writes_a_tree_the_reader_reads() {
        let mut buffer = [0xEEu8; 1024];
        let size = sample(&mut buffer).unwrap();
        let fdt = Fdt::new(&buffer[..size]).unwrap();
        assert_eq!(fdt.total_size(), size);
        assert_eq!(
            fdt.memory_reservations().collect::<Vec<_>>(),
            [(0x1000, 0x2000), (0x8000_0000, 0x10)]
        );
        let root = fdt.root();
        assert_eq!(
            root.property_strings("compatible").collect::<Vec<_>>(),
            ["test,board", "test,family"]
        );
        assert_eq!(root.property_str("model"), Some("Test"));
        let chosen = fdt.find_node("/chosen").unwrap();
        assert_eq!(chosen.property_str("bootargs"), Some("console=hvc0"));
        assert_eq!(chosen.property_u64("linux,initrd-start"), Some(0x4800_0000));
        assert_eq!(chosen.property_u64("linux,initrd-end"), Some(0x4900_0000));
        let memory = fdt.find_node("/memory").unwrap();
        assert_eq!(memory.property_str("device_type"), Some("memory"));
        assert_eq!(
            memory.reg().collect::<Vec<_>>(),
            [(0x4000_0000, 0x1000_0000)]
        );
        let empty = fdt.find_node("/empty").unwrap();
        assert_eq!(empty.property("always-on"), Some(&[][..]));
        assert_eq!(empty.property("blob"), Some(&[1u8, 2, 3][..]));
        assert_eq!(fdt.phandle_node(7), Some(empty));
        let names: Vec<&str> = root.children().map(|node| node.name()).collect();
        assert_eq!(names, ["chosen", "memory@40000000", "empty"]);
    }

    #[test]
    fn strings_are_deduplicated() {
        let mut buffer = [0u8; 512];
        let mut writer = FdtWriter::new(&mut buffer).unwrap();
        writer.begin_node("").unwrap();
        for index in 0..5 {
            let name = ["a@1", "a@2", "a@3", "a@4", "a@5"][index];
            writer.begin_node(name).unwrap();
            writer.property_u32("reg", index as u32).unwrap();
            writer.property_str("status", "okay").unwrap();
            writer.end_node().unwrap();
        }
        writer.end_node().unwrap();
        let size = writer.finish().unwrap();
        let strings_size = u32::from_be_bytes(buffer[32..36].try_into().unwrap());
        assert_eq!(strings_size as usize, "reg\0status\0".len());
        let fdt = Fdt::new(&buffer[..size]).unwrap();
        let registers: Vec<u32> = fdt
            .root()
            .children()
            .map(|node| node.property_u32("reg").unwrap())
            .collect();
        assert_eq!(registers, [0, 1, 2, 3, 4]);
    }

    #[test]
    fn every_too_small_buffer_is_an_error() {
        let mut buffer = [0u8; 1024];
        let size = sample(&mut buffer).unwrap();
        for length in 0..size {
            let mut small = vec![0u8; length];
            assert_eq!(sample(&mut small), Err(DtError::NoSpace), "length {length}");
        }
        let mut exact = vec![0u8; size];
        assert_eq!(sample(&mut exact), Ok(size));
        assert_eq!(&exact[..], &buffer[..size]);
    }

    #[test]
    fn misuse_is_an_error() {
        let mut buffer = [0u8; 512];
        let mut writer = FdtWriter::new(&mut buffer).unwrap();
        assert_eq!(writer.end_node(), Err(DtError::Unbalanced));
        assert_eq!(writer.property_u32("x", 1), Err(DtError::OutOfOrder));
        assert_eq!(writer.begin_node("notroot"), Err(DtError::BadName));
        assert_eq!(writer.finish(), Err(DtError::Unbalanced));
        writer.begin_node("").unwrap();
        assert_eq!(
            writer.add_memory_reservation(0, 1),
            Err(DtError::OutOfOrder)
        );
        assert_eq!(writer.begin_node(""), Err(DtError::BadName));
        assert_eq!(writer.begin_node("a/b"), Err(DtError::BadName));
        assert_eq!(writer.property_u32("", 1), Err(DtError::BadName));
        assert_eq!(writer.property_str("s", "a\0b"), Err(DtError::BadName));
        writer.begin_node("child").unwrap();
        assert_eq!(writer.finish(), Err(DtError::Unbalanced));
        writer.end_node().unwrap();
        writer.end_node().unwrap();
        assert_eq!(writer.end_node(), Err(DtError::Unbalanced));
        assert_eq!(writer.begin_node("second-root"), Err(DtError::Unbalanced));
        assert_eq!(writer.property_u32("x", 1), Err(DtError::OutOfOrder));
        assert!(writer.finish().is_ok());
        assert_eq!(writer.finish(), Err(DtError::OutOfOrder));
        assert_eq!(writer.begin_node("x"), Err(DtError::OutOfOrder));
        let mut tiny = [0u8; 10];
        assert_eq!(FdtWriter::new(&mut tiny).unwrap_err(), DtError::NoSpace);
    }

    #[test]
    fn nesting_limit() {
        let mut buffer = [0u8; 2048];
        let mut writer = FdtWriter::new(&mut buffer).unwrap();
        writer.begin_node("").unwrap();
        for _ in 1..MAX_DEPTH {
            writer.begin_node("n").unwrap();
        }
        assert_eq!(writer.begin_node("n"), Err(DtError::TooDeep));
        for _ in 0..MAX_DEPTH {
            writer.end_node().unwrap();
        }
        let size = writer.finish().unwrap();
        let fdt = Fdt::new(&buffer[..size]).unwrap();
        assert_eq!(fdt.nodes().count(), MAX_DEPTH);
    }

    /// Runs `dtc -I dtb -O dts` on `tree` if dtc is installed; returns its output and its
    /// warnings. Fails the test if dtc refuses the tree.
    pub(crate) fn dtc_decompile_with_warnings(tree: &[u8]) -> Option<(String, String)> {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new("dtc")
            .args(["-I", "dtb", "-O", "dts", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .ok()?;
        child.stdin.take()?.write_all(tree).ok()?;
        let output = child.wait_with_output().ok()?;
        assert!(
            output.status.success(),
            "dtc refused the tree: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Some((
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ))
    }

    /// Like [`dtc_decompile_with_warnings`], output only.
    pub(crate) fn dtc_decompile(tree: &[u8]) -> Option<String> {
        dtc_decompile_with_warnings(tree).map(|(source, _)| source)
    }

    #[test]
    fn dtc_accepts_the_tree() {
        let mut buffer = [0u8; 1024];
        let size = sample(&mut buffer).unwrap();
        if let Some(source) = dtc_decompile(&buffer[..size]) {
            assert!(source.contains("/memreserve/\t0x0000000000001000 0x0000000000002000;"));
            assert!(source.contains("bootargs = \"console=hvc0\";"));
            assert!(source.contains("compatible = \"test,board\\0test,family\";"));
        }
    }
}
