//! The UART stream: splitting it into text lines and `defmt` frames, and decoding frames.
//!
//! The hypervisor writes guest console text as plain lines and its own log as `defmt`
//! frames: the byte [`FRAME_START`] (`0x01`), then rzCOBS bytes up to and including the
//! `0x00` delimiter. [`Splitter`] turns arbitrary chunks of that byte stream into
//! [`Event`]s; [`LogDecoder`] decodes frame bytes against the hypervisor ELF.

use std::fmt;

/// The byte that starts a `defmt` frame in the stream.
pub const FRAME_START: u8 = 0x01;
/// The byte that ends a frame (the rzCOBS delimiter, included in the frame bytes).
pub const FRAME_END: u8 = 0x00;
/// Longest frame accepted; a frame that grows past this without its delimiter is handed
/// out as it is (and then fails to decode) so that a lost delimiter cannot swallow the
/// rest of the stream.
pub const MAX_FRAME_LEN: usize = 16 * 1024;

/// One piece of the UART stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A line of text without its line ending (`\n`, and a `\r` before it, removed).
    /// Invalid UTF-8 is replaced with U+FFFD.
    Text(String),
    /// The bytes of one `defmt` frame after the `0x01` marker, up to and including the
    /// first `0x00` delimiter after a non-zero byte (zeros right after the marker, like
    /// the separator `defmt` writes before its first frame, are kept and do not end it) (the delimiter is missing only for a frame cut off at end of stream
    /// or longer than [`MAX_FRAME_LEN`]).
    Frame(Vec<u8>),
}

/// Splits a byte stream, fed in chunks of any size, into [`Event`]s.
///
/// A frame may start in the middle of a text line (text is not line-buffered before the
/// hypervisor prints its first frame): the frame is emitted as soon as it is complete and
/// the text line continues after it.
#[derive(Debug, Default)]
pub struct Splitter {
    text: Vec<u8>,
    frame: Vec<u8>,
    in_frame: bool,
}

impl Splitter {
    /// A splitter at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds `bytes` and returns the events they complete, in stream order.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Event> {
        let mut events = Vec::new();
        for &byte in bytes {
            if self.in_frame {
                // Zeros right after the marker are not a frame end: `defmt`'s encoder
                // writes one separator before its very first frame.
                let leading_zero = byte == FRAME_END && self.frame.iter().all(|&b| b == 0);
                self.frame.push(byte);
                if (byte == FRAME_END && !leading_zero) || self.frame.len() >= MAX_FRAME_LEN {
                    self.in_frame = false;
                    events.push(Event::Frame(std::mem::take(&mut self.frame)));
                }
            } else if byte == FRAME_START {
                self.in_frame = true;
            } else if byte == b'\n' {
                events.push(Event::Text(take_line(&mut self.text)));
            } else {
                self.text.push(byte);
            }
        }
        events
    }

    /// Ends the stream: returns a partial frame and a last line without a newline, if any.
    pub fn finish(&mut self) -> Vec<Event> {
        let mut events = Vec::new();
        if self.in_frame {
            self.in_frame = false;
            events.push(Event::Frame(std::mem::take(&mut self.frame)));
        }
        if !self.text.is_empty() {
            events.push(Event::Text(take_line(&mut self.text)));
        }
        events
    }
}

fn take_line(text: &mut Vec<u8>) -> String {
    let mut line = std::mem::take(text);
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// One decoded hypervisor log message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogMessage {
    /// Upper-case level (`"TRACE"`, `"DEBUG"`, `"INFO"`, `"WARN"`, `"ERROR"`), `None`
    /// for frames without a level (`defmt::println!`).
    pub level: Option<&'static str>,
    /// The formatted message.
    pub message: String,
}

/// Why a frame could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UndecodableFrame {
    /// Length of the frame bytes, delimiter included.
    pub len: usize,
}

impl fmt::Display for UndecodableFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<undecodable frame {} bytes>", self.len)
    }
}

/// Decodes `defmt` frames against the table in the hypervisor's ELF.
pub struct LogDecoder {
    table: defmt_decoder::Table,
}

impl fmt::Debug for LogDecoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogDecoder").finish_non_exhaustive()
    }
}

impl LogDecoder {
    /// Reads the `defmt` table from the hypervisor ELF. Fails when the ELF cannot be parsed,
    /// has no `.defmt` section, or was built with another `defmt` wire version.
    pub fn from_elf(elf: &[u8]) -> Result<Self, String> {
        match defmt_decoder::Table::parse(elf) {
            Ok(Some(table)) => Ok(LogDecoder { table }),
            Ok(None) => Err("the ELF has no .defmt section (no defmt log in it)".into()),
            Err(error) => Err(format!("cannot read the defmt table: {error:#}")),
        }
    }

    /// Decodes one frame as produced by [`Splitter`] (rzCOBS bytes and the `0x00`
    /// delimiter).
    pub fn decode(&self, frame: &[u8]) -> Result<LogMessage, UndecodableFrame> {
        let undecodable = UndecodableFrame { len: frame.len() };
        if frame.last() != Some(&FRAME_END) || frame.len() < 2 {
            return Err(undecodable);
        }
        let mut decoder = self.table.new_stream_decoder();
        decoder.received(frame);
        match decoder.decode() {
            Ok(decoded) => Ok(LogMessage {
                level: decoded.level().map(|level| level_name(level.as_str())),
                message: decoded.display_message().to_string(),
            }),
            Err(_) => Err(undecodable),
        }
    }
}

fn level_name(level: &str) -> &'static str {
    match level {
        "trace" => "TRACE",
        "debug" => "DEBUG",
        "info" => "INFO",
        "warn" => "WARN",
        _ => "ERROR",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Event {
        Event::Text(s.to_string())
    }

    fn split_all(chunks: &[&[u8]]) -> Vec<Event> {
        let mut splitter = Splitter::new();
        let mut events = Vec::new();
        for chunk in chunks {
            events.extend(splitter.push(chunk));
        }
        events.extend(splitter.finish());
        events
    }

    #[test]
    fn plain_lines() {
        assert_eq!(
            split_all(&[b"(a) one\n(b) two\r\n"]),
            vec![text("(a) one"), text("(b) two")]
        );
    }

    #[test]
    fn empty_lines_are_kept() {
        assert_eq!(split_all(&[b"\n\n"]), vec![text(""), text("")]);
    }

    #[test]
    fn text_without_newline_at_eof() {
        assert_eq!(
            split_all(&[b"first\nlast wo", b"rds"]),
            vec![text("first"), text("last words")]
        );
    }

    #[test]
    fn frames_between_lines() {
        assert_eq!(
            split_all(&[b"a\n\x01\x05\x06\x00b\n"]),
            vec![text("a"), Event::Frame(vec![5, 6, 0]), text("b")]
        );
    }

    #[test]
    fn frame_split_across_reads() {
        let stream: &[u8] = b"x\n\x01\x10\x20\x30\x00\x01\x40\x00y\n";
        let expected = vec![
            text("x"),
            Event::Frame(vec![0x10, 0x20, 0x30, 0]),
            Event::Frame(vec![0x40, 0]),
            text("y"),
        ];
        // Every way of cutting the stream in two or three pieces gives the same events.
        for i in 0..=stream.len() {
            for j in i..=stream.len() {
                let events = split_all(&[&stream[..i], &stream[i..j], &stream[j..]]);
                assert_eq!(events, expected, "cut at {i}, {j}");
            }
        }
        // Byte by byte.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(split_all(&bytes), expected);
    }

    #[test]
    fn frame_inside_a_text_line() {
        assert_eq!(
            split_all(&[b"hel\x01\x02\x00lo\n"]),
            vec![Event::Frame(vec![2, 0]), text("hello")]
        );
    }

    #[test]
    fn newline_inside_a_frame_is_frame_data() {
        assert_eq!(
            split_all(&[b"\x01\n\x0a\x00"]),
            vec![Event::Frame(vec![b'\n', b'\n', 0])]
        );
    }

    #[test]
    fn frame_cut_off_at_eof() {
        assert_eq!(
            split_all(&[b"t\n\x01\x07\x08"]),
            vec![text("t"), Event::Frame(vec![7, 8])]
        );
    }

    #[test]
    fn leading_zeros_do_not_end_a_frame() {
        // defmt's first frame: marker, sync separator, frame, delimiter.
        assert_eq!(
            split_all(&[b"\x01\x00", b"\x05\x00a\n"]),
            vec![Event::Frame(vec![0, 5, 0]), text("a")]
        );
        // A frame of only zeros ends at end of stream.
        assert_eq!(split_all(&[b"\x01\x00"]), vec![Event::Frame(vec![0])]);
    }

    #[test]
    fn overlong_frame_is_cut() {
        let mut stream = vec![FRAME_START];
        stream.extend(std::iter::repeat_n(0x55, MAX_FRAME_LEN + 3));
        stream.extend(b"\x00ok\n");
        let events = split_all(&[&stream]);
        assert_eq!(events.len(), 2);
        assert!(matches!(&events[0], Event::Frame(f) if f.len() == MAX_FRAME_LEN));
        // The rest of the overlong frame is text up to the newline; the stream recovers.
        assert!(matches!(&events[1], Event::Text(t) if t.ends_with("ok")));
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(split_all(&[b"a\xffb\n"]), vec![text("a\u{fffd}b")]);
    }

    #[test]
    fn garbage_elf_is_refused() {
        assert!(LogDecoder::from_elf(b"not an elf").is_err());
    }
}
