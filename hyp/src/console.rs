//! Guest console output: per-domain line buffering, sanitising and prefixing.
//!
//! Guests write arbitrary bytes; the UART carries both their text and the hypervisor's
//! binary `defmt` frames (see docs/ARCHITECTURE.md, "UART stream"). So every control byte
//! a guest sends, other than tab and newline, is replaced before it reaches the UART, and
//! each line goes out whole, as `(name) text`, so lines of different domains never mix.

/// Longest line kept before it is sent anyway (then continued on the next line).
pub const LINE_CAPACITY: usize = 200;

/// The byte that opens a `defmt` frame on the UART; guests can never emit it.
pub const FRAME_MARKER: u8 = 0x01;

/// Replaces a byte that could break the UART stream framing or a terminal.
pub const fn sanitize(byte: u8) -> u8 {
    match byte {
        b'\t' | 0x20..=0x7e | 0x80..=0xff => byte,
        _ => b'?',
    }
}

/// A domain's partial console line.
#[derive(Default)]
pub struct LineBuffer {
    bytes: heapless::Vec<u8, LINE_CAPACITY>,
}

impl LineBuffer {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self {
            bytes: heapless::Vec::new(),
        }
    }

    /// Appends guest bytes; calls `emit` with each completed line (without its newline).
    /// Carriage returns are dropped; a line longer than [`LINE_CAPACITY`] is split.
    pub fn push(&mut self, input: &[u8], mut emit: impl FnMut(&[u8])) {
        for &byte in input {
            match byte {
                b'\n' => {
                    emit(&self.bytes);
                    self.bytes.clear();
                }
                b'\r' => {}
                _ => {
                    if self.bytes.is_full() {
                        emit(&self.bytes);
                        self.bytes.clear();
                    }
                    // Cannot fail: the buffer was just emptied if it was full.
                    let _ = self.bytes.push(sanitize(byte));
                }
            }
        }
    }

    /// Emits what is left (a line without its newline), e.g. when the domain ends.
    pub fn flush(&mut self, mut emit: impl FnMut(&[u8])) {
        if !self.bytes.is_empty() {
            emit(&self.bytes);
            self.bytes.clear();
        }
    }
}

/// Writes one prefixed console line, `(name) line\n`, through `write`.
pub fn write_prefixed_line(name: &str, line: &[u8], mut write: impl FnMut(&[u8])) {
    write(b"(");
    write(name.as_bytes());
    write(b") ");
    write(line);
    write(b"\n");
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn collect(buffer: &mut LineBuffer, input: &[u8]) -> Vec<Vec<u8>> {
        let mut lines = Vec::new();
        buffer.push(input, |line| lines.push(line.to_vec()));
        lines
    }

    #[test]
    fn splits_lines_and_keeps_partials() {
        let mut buffer = LineBuffer::new();
        assert_eq!(collect(&mut buffer, b"hel"), Vec::<Vec<u8>>::new());
        assert_eq!(collect(&mut buffer, b"lo\r\nwor"), [b"hello".to_vec()]);
        let mut rest = Vec::new();
        buffer.flush(|line| rest.push(line.to_vec()));
        assert_eq!(rest, [b"wor".to_vec()]);
    }

    #[test]
    fn control_bytes_cannot_forge_frames() {
        let mut buffer = LineBuffer::new();
        let lines = collect(&mut buffer, &[b'a', FRAME_MARKER, 0x00, 0x1b, b'\t', b'\n']);
        assert_eq!(lines, [b"a???\t".to_vec()]);
    }

    #[test]
    fn long_lines_are_split() {
        let mut buffer = LineBuffer::new();
        let input = [b'x'; LINE_CAPACITY + 5];
        let lines = collect(&mut buffer, &input);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), LINE_CAPACITY);
    }

    #[test]
    fn prefix_format() {
        let mut out = Vec::new();
        write_prefixed_line("pv-a", b"hi", |bytes| out.extend_from_slice(bytes));
        assert_eq!(out, b"(pv-a) hi\n");
    }
}
