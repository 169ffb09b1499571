//! Hex dumps: plain hex and offset-column dumps (`xxd`, `hexdump -C`, `od -A x -t x1z`,
//! Wireshark's "copy as hex dump").
//!
//! The layout is decided by the first line that holds data:
//! - **offset dump**: the first token is an offset, either ending in `:` (`xxd`) or a hex number
//!   of 4..16 digits followed by tokens of a different width (`hexdump -C`, `od`, Wireshark).
//!   Each line is offset, hex bytes (grouped by 1, 2 or 4 bytes), then an optional ASCII gutter.
//!   The gutter is cut at `|` or `>` (which hex never contains), at two spaces after an `xxd`
//!   offset, or at three spaces otherwise; whatever survives and still looks like hex is cut by
//!   the next line's offset, as `text2pcap` does. A `*` line (`hexdump`'s "same as above") repeats
//!   the previous line up to the next offset; any other jump in the offsets is a gap.
//! - **plain**: hex digits, optionally `0x`-prefixed, separated by whitespace, `,`, `:` or `;`.
//!   Lines may be arbitrarily long; they are read in pieces.
//!
//! Lines starting with `#` are comments. Errors name the line and never stop the parse.

use std::io::BufRead;

/// Longest line kept whole; longer plain-hex lines are parsed in pieces of this size.
const LINE_CAP: usize = 1 << 20;
/// Most bytes all `*` lines of one dump may stand for together; beyond it a jump is treated as a
/// gap. One budget per dump, not per line: a small file of `*` lines must not expand without end.
const MAX_REPEAT: u64 = 64 << 20;

/// What the hex parser produces, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub enum HexOut<'a> {
    /// Decoded bytes.
    Data(&'a [u8]),
    /// The offsets jumped: `len` bytes are missing from the dump.
    Gap {
        /// Missing bytes.
        len: u64,
        /// Line where the jump was seen.
        line: u64,
    },
    /// A line (or part of one) that could not be read.
    Error {
        /// Error kind: `hex_syntax` or `hex_offset`.
        kind: &'static str,
        /// 1-based line number.
        line: u64,
        /// What was wrong.
        detail: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    /// Offset dump; `colon` for the `xxd` style.
    Offset {
        colon: bool,
    },
}

/// Streaming hex-dump parser.
#[derive(Debug, Default)]
pub struct HexParser {
    mode: Option<Mode>,
    line: u64,
    /// The last line was a piece of an overlong line.
    in_line: bool,
    /// Ignore the rest of the current line.
    skip_rest: bool,
    // Plain mode.
    nibble: Option<u8>,
    /// Digits in the current token (to recognise a `0x` prefix).
    digits: usize,
    /// The current token is bad; skip to the next separator.
    bad: bool,
    /// An error was already reported on this line.
    line_err: bool,
    scratch: Vec<u8>,
    // Offset mode.
    held: Option<(u64, Vec<u8>)>,
    star: bool,
    width: usize,
    /// Bytes `*` lines have stood for so far (against [`MAX_REPEAT`]).
    repeated: u64,
}

/// Reads a whole hex dump from `r`, handing results to `out`. Returns the number of lines.
pub fn read<R: BufRead>(mut r: R, out: &mut dyn FnMut(HexOut<'_>)) -> std::io::Result<u64> {
    let mut p = HexParser::default();
    let mut line = Vec::with_capacity(256);
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            if !line.is_empty() {
                p.line(&line, true, out);
            }
            p.finish(out);
            return Ok(p.line);
        }
        let room = LINE_CAP - line.len();
        let look = &buf[..buf.len().min(room)];
        match memchr::memchr(b'\n', look) {
            Some(i) => {
                line.extend_from_slice(&look[..i]);
                r.consume(i + 1);
                p.line(&line, true, out);
                line.clear();
            }
            None => {
                let n = look.len();
                line.extend_from_slice(look);
                r.consume(n);
                if line.len() >= LINE_CAP {
                    p.line(&line, false, out);
                    line.clear();
                }
            }
        }
    }
}

impl HexParser {
    /// Takes one line (without its newline). `complete` is false for a piece of an overlong line;
    /// the next call continues it.
    pub fn line(&mut self, raw: &[u8], complete: bool, out: &mut dyn FnMut(HexOut<'_>)) {
        let continued = self.in_line;
        self.in_line = !complete;
        if !continued {
            self.line += 1;
            self.line_err = false;
        }
        if self.skip_rest {
            self.skip_rest = !complete;
            return;
        }
        if !continued {
            let text = trim(raw);
            if text.is_empty() || text[0] == b'#' {
                self.skip_rest = !complete;
                if complete {
                    self.end_line(out);
                }
                return;
            }
        }
        let mode = *self.mode.get_or_insert_with(|| detect(trim(raw)));
        match mode {
            Mode::Plain => {
                self.plain(raw, out);
                if complete {
                    self.end_line(out);
                }
            }
            Mode::Offset { .. } if !complete => {
                self.error(
                    out,
                    "hex_syntax",
                    "line longer than 1 MiB in an offset dump",
                );
                self.skip_rest = true;
            }
            Mode::Offset { colon } => self.offset_line(trim(raw), colon, out),
        }
    }

    /// Flushes what is left at the end of input.
    pub fn finish(&mut self, out: &mut dyn FnMut(HexOut<'_>)) {
        if self.nibble.take().is_some() {
            self.error(out, "hex_syntax", "odd number of hex digits at the end");
        }
        if let Some((_, mut bytes)) = self.held.take() {
            // The last line has no next offset to bound it: trust the widest line seen.
            if self.width > 0 && bytes.len() > self.width {
                bytes.truncate(self.width);
            }
            if !bytes.is_empty() {
                out(HexOut::Data(&bytes));
            }
        }
    }

    fn end_line(&mut self, out: &mut dyn FnMut(HexOut<'_>)) {
        if self.mode == Some(Mode::Plain) {
            if self.nibble.take().is_some() {
                self.error(out, "hex_syntax", "odd number of hex digits");
            }
            self.digits = 0;
            self.bad = false;
        }
    }

    fn error(&mut self, out: &mut dyn FnMut(HexOut<'_>), kind: &'static str, detail: &str) {
        // One report per line keeps a binary file fed as hex from flooding the output.
        if self.line_err {
            return;
        }
        self.line_err = true;
        out(HexOut::Error {
            kind,
            line: self.line,
            detail: detail.to_string(),
        });
    }

    fn plain(&mut self, raw: &[u8], out: &mut dyn FnMut(HexOut<'_>)) {
        let mut bytes = std::mem::take(&mut self.scratch);
        bytes.clear();
        for &c in raw {
            match c {
                b' ' | b'\t' | b'\r' | b',' | b':' | b';' => {
                    if self.nibble.take().is_some() {
                        self.error(out, "hex_syntax", "odd number of hex digits in a token");
                    }
                    self.digits = 0;
                    self.bad = false;
                }
                _ if self.bad => {}
                b'x' | b'X' if self.digits == 1 && self.nibble == Some(0) => {
                    self.nibble = None;
                    self.digits = 0;
                }
                _ => match hex_val(c) {
                    Some(v) => {
                        self.digits += 1;
                        match self.nibble.take() {
                            Some(hi) => bytes.push(hi << 4 | v),
                            None => self.nibble = Some(v),
                        }
                    }
                    None => {
                        let detail = format!("unexpected character {:?}", char::from(c));
                        self.error(out, "hex_syntax", &detail);
                        self.nibble = None;
                        self.bad = true;
                    }
                },
            }
        }
        if !bytes.is_empty() {
            out(HexOut::Data(&bytes));
        }
        self.scratch = bytes;
    }

    fn offset_line(&mut self, text: &[u8], colon: bool, out: &mut dyn FnMut(HexOut<'_>)) {
        if text == b"*" {
            self.star = true;
            return;
        }
        let Some((offset, bytes)) = parse_offset_line(text, colon) else {
            self.error(
                out,
                "hex_syntax",
                "expected an offset followed by hex bytes",
            );
            return;
        };
        if let Some((prev, mut pbytes)) = self.held.take() {
            let have = pbytes.len() as u64;
            if offset < prev {
                self.error(out, "hex_offset", "offset goes backwards");
                if !pbytes.is_empty() {
                    out(HexOut::Data(&pbytes));
                }
            } else {
                let span = offset - prev;
                if span < have {
                    // The gutter parsed as hex; the offsets tell how many bytes were real.
                    pbytes.truncate(span as usize);
                }
                if !pbytes.is_empty() {
                    out(HexOut::Data(&pbytes));
                }
                let missing = span.saturating_sub(have);
                if missing > 0 {
                    if self.star
                        && !pbytes.is_empty()
                        && missing <= MAX_REPEAT.saturating_sub(self.repeated)
                    {
                        self.repeated += missing;
                        repeat(&pbytes, missing, out);
                    } else {
                        out(HexOut::Gap {
                            len: missing,
                            line: self.line,
                        });
                    }
                }
            }
        }
        self.star = false;
        self.width = self.width.max(bytes.len());
        self.held = Some((offset, bytes));
    }
}

fn repeat(pattern: &[u8], mut n: u64, out: &mut dyn FnMut(HexOut<'_>)) {
    if pattern.is_empty() {
        return;
    }
    let mut block = Vec::with_capacity(64 * 1024 + pattern.len());
    while block.len() < 64 * 1024 {
        block.extend_from_slice(pattern);
    }
    while n > 0 {
        let k = n.min(block.len() as u64) as usize;
        out(HexOut::Data(&block[..k]));
        n -= k as u64;
        // Keep the cycle aligned: the next piece continues where this one stopped.
        block.rotate_left(k % pattern.len());
    }
}

/// Decides the layout from the first data line.
fn detect(text: &[u8]) -> Mode {
    let text = cut_gutter_marks(text);
    let mut tokens = text
        .split(|c| c.is_ascii_whitespace())
        .filter(|t| !t.is_empty());
    let Some(first) = tokens.next() else {
        return Mode::Plain;
    };
    if let Some(num) = first.strip_suffix(b":")
        && parse_hex_u64(strip_0x(num)).is_some()
    {
        return Mode::Offset { colon: true };
    }
    if let Some(second) = tokens.next()
        && (4..=16).contains(&first.len())
        && first.iter().all(u8::is_ascii_hexdigit)
        && second.iter().all(u8::is_ascii_hexdigit)
        && second.len() != first.len()
    {
        return Mode::Offset { colon: false };
    }
    Mode::Plain
}

fn parse_offset_line(text: &[u8], colon: bool) -> Option<(u64, Vec<u8>)> {
    let text = cut_gutter_marks(text);
    let (off, rest) = if colon {
        let i = memchr::memchr(b':', text)?;
        (&text[..i], &text[i + 1..])
    } else {
        let i = text
            .iter()
            .position(u8::is_ascii_whitespace)
            .unwrap_or(text.len());
        (&text[..i], &text[i..])
    };
    let offset = parse_hex_u64(strip_0x(trim(off)))?;
    let rest = trim_start(rest);
    let rest = &rest[..find_spaces(rest, if colon { 2 } else { 3 }).unwrap_or(rest.len())];
    let mut bytes = Vec::with_capacity(rest.len() / 2);
    for tok in rest
        .split(|c| c.is_ascii_whitespace())
        .filter(|t| !t.is_empty())
    {
        if tok.len() % 2 != 0 || !tok.iter().all(u8::is_ascii_hexdigit) {
            break;
        }
        for pair in tok.chunks_exact(2) {
            bytes.push(hex_val(pair[0])? << 4 | hex_val(pair[1])?);
        }
    }
    Some((offset, bytes))
}

/// Cuts at the first `|` (`hexdump -C`) or `>` (`od -t x1z`): gutter delimiters hex never has.
fn cut_gutter_marks(text: &[u8]) -> &[u8] {
    match memchr::memchr2(b'|', b'>', text) {
        Some(i) => &text[..i],
        None => text,
    }
}

/// Position of the first run of `n` spaces.
fn find_spaces(text: &[u8], n: usize) -> Option<usize> {
    text.windows(n).position(|w| w.iter().all(|&c| c == b' '))
}

fn strip_0x(t: &[u8]) -> &[u8] {
    t.strip_prefix(b"0x")
        .or_else(|| t.strip_prefix(b"0X"))
        .unwrap_or(t)
}

fn parse_hex_u64(t: &[u8]) -> Option<u64> {
    if t.is_empty() || t.len() > 16 {
        return None;
    }
    t.iter()
        .try_fold(0u64, |acc, &c| Some(acc << 4 | u64::from(hex_val(c)?)))
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn trim(t: &[u8]) -> &[u8] {
    let t = trim_start(t);
    let end = t
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    &t[..end]
}

fn trim_start(t: &[u8]) -> &[u8] {
    let start = t
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(t.len());
    &t[start..]
}

/// True when `sample` (the start of an input) reads as a hex dump: printable ASCII text whose
/// first data line parses as hex in the layout [`detect`] picks.
pub fn looks_like_hex(sample: &[u8]) -> bool {
    if sample.is_empty()
        || !sample
            .iter()
            .all(|&c| c == b'\n' || c == b'\r' || c == b'\t' || (0x20..0x7f).contains(&c))
    {
        return false;
    }
    let mut lines = sample.split(|&c| c == b'\n');
    // The last piece may be cut short by the sample size; judge complete lines when there are any.
    let Some(first) = lines
        .by_ref()
        .map(trim)
        .find(|l| !l.is_empty() && l[0] != b'#')
    else {
        return false;
    };
    match detect(first) {
        Mode::Offset { colon } => {
            parse_offset_line(first, colon).is_some_and(|(_, bytes)| !bytes.is_empty())
        }
        Mode::Plain => {
            let mut p = HexParser {
                mode: Some(Mode::Plain),
                ..HexParser::default()
            };
            let mut ok = true;
            let mut any = false;
            p.plain(first, &mut |o| match o {
                HexOut::Data(_) => any = true,
                _ => ok = false,
            });
            ok && any
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Vec<u8>, Vec<String>) {
        let mut bytes = vec![];
        let mut errs = vec![];
        read(text.as_bytes(), &mut |o| match o {
            HexOut::Data(d) => bytes.extend_from_slice(d),
            HexOut::Gap { len, line } => {
                errs.push(format!("gap {len} at line {line}"));
                bytes.extend(std::iter::repeat_n(b'?', len as usize));
            }
            HexOut::Error { kind, line, detail } => errs.push(format!("{kind}@{line}: {detail}")),
        })
        .unwrap();
        (bytes, errs)
    }

    /// 40 bytes: a frame header and XML that contains hex-looking words.
    const DATA: &[u8] = b"\x00\x00\x00\x28\x39\x39\x39\x39<cafe>beef 00 ab</cafe>  dead";

    #[test]
    fn plain_hex_variants() {
        let want = b"\x00\x00\x01\x0b9999".to_vec();
        for text in [
            "0000010b39393939",
            "00 00 01 0b 39 39 39 39\n",
            "0000 010b\r\n3939 3939\r\n",
            "0x00, 0x00, 0x01, 0x0B, 0x39,0x39,0x39,0x39",
            "00:00:01:0b:39:39:39:39",
            "# a comment\n\n  00000 10b39 393939  \n",
        ] {
            let (bytes, errs) = parse(text);
            // Odd-length tokens are an error, except when the digits still pair up overall.
            if text.contains("00000 10b") {
                assert_eq!(errs.len(), 1, "{errs:?}");
                continue;
            }
            assert_eq!(bytes, want, "{text:?}");
            assert!(errs.is_empty(), "{text:?}: {errs:?}");
        }
    }

    #[test]
    fn plain_hex_errors_name_the_line_and_go_on() {
        let (bytes, errs) = parse("0000\n00zz11\n2233 4\n");
        assert_eq!(bytes, vec![0, 0, 0, 0x22, 0x33]);
        assert_eq!(
            errs,
            vec![
                "hex_syntax@2: unexpected character 'z'",
                "hex_syntax@3: odd number of hex digits"
            ]
        );
    }

    #[test]
    fn long_plain_lines_are_read_in_pieces() {
        let n = LINE_CAP + 12_345;
        let text = "ab".repeat(n);
        let (bytes, errs) = parse(&text);
        assert!(errs.is_empty());
        assert_eq!(bytes.len(), n);
        assert!(bytes.iter().all(|&b| b == 0xab));
    }

    fn xxd(data: &[u8]) -> String {
        let mut s = String::new();
        for (i, chunk) in data.chunks(16).enumerate() {
            s += &format!("{:08x}: ", i * 16);
            let mut hex = String::new();
            for (j, b) in chunk.iter().enumerate() {
                hex += &format!("{b:02x}");
                if j % 2 == 1 {
                    hex.push(' ');
                }
            }
            s += &format!("{hex:<40} ");
            s += &chunk
                .iter()
                .map(|&b| {
                    if (0x20..0x7f).contains(&b) {
                        b as char
                    } else {
                        '.'
                    }
                })
                .collect::<String>();
            s.push('\n');
        }
        s
    }

    fn hexdump_c(data: &[u8]) -> String {
        let mut s = String::new();
        for (i, chunk) in data.chunks(16).enumerate() {
            s += &format!("{:08x}  ", i * 16);
            let mut hex = String::new();
            for (j, b) in chunk.iter().enumerate() {
                hex += &format!("{b:02x} ");
                if j == 7 {
                    hex.push(' ');
                }
            }
            s += &format!("{hex:<49} |");
            s += &chunk
                .iter()
                .map(|&b| {
                    if (0x20..0x7f).contains(&b) {
                        b as char
                    } else {
                        '.'
                    }
                })
                .collect::<String>();
            s += "|\n";
        }
        s += &format!("{:08x}\n", data.len());
        s
    }

    #[test]
    fn xxd_and_hexdump_c_with_gutters() {
        for text in [xxd(DATA), hexdump_c(DATA)] {
            let (bytes, errs) = parse(&text);
            assert!(errs.is_empty(), "{errs:?}\n{text}");
            assert_eq!(bytes, DATA, "\n{text}");
        }
        // The last xxd line's gutter is "  dead": four hex digits after two spaces.
        assert!(xxd(DATA).ends_with("  dead\n"), "{}", xxd(DATA));
    }

    #[test]
    fn od_and_wireshark_styles() {
        // `od -A x -t x1z`.
        let od = "000000 00 00 00 0a 39 39 39 39 3c 2f  >....9999</<\n00000a\n";
        let (bytes, errs) = parse(od);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(bytes, b"\x00\x00\x00\x0a9999</");
        // Wireshark: 4-digit offset, gutter after three spaces, the next offset bounds the line.
        let ws = "0000   00 00 00 14 39 39 39 39 3c 61 62 2f 3e 00 00 00   ....9999<ab/>...\n\
                  0010   ab cd ef 01   ....\n";
        let (bytes, errs) = parse(ws);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(bytes.len(), 20);
        assert_eq!(&bytes[16..], b"\xab\xcd\xef\x01");
    }

    #[test]
    fn next_offset_cuts_a_gutter_that_looks_like_hex() {
        // Two-byte lines whose gutter happens to be hex digits separated by spaces.
        let text = "00000000  61 62  ab\n00000002  63 64  cd\n00000004\n";
        let (bytes, errs) = parse(text);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(bytes, b"abcd");
    }

    #[test]
    fn star_repeats_and_jumps_are_gaps() {
        let text = "00000000  00 11 22 33\n*\n0000000c  44\n00000010  55\n00000020  66\n";
        let (bytes, errs) = parse(text);
        assert_eq!(
            &bytes[..13],
            b"\x00\x11\x22\x33\x00\x11\x22\x33\x00\x11\x22\x33\x44"
        );
        // 0x0d..0x10 missing, then 0x11..0x20 missing.
        assert_eq!(errs, vec!["gap 3 at line 4", "gap 15 at line 5"]);
        assert_eq!(bytes.len(), 0x21);
        // Offsets going backwards are reported; data is kept.
        let (bytes, errs) = parse("00000010: 0102\n00000000: 0304\n");
        assert_eq!(bytes, vec![1, 2, 3, 4]);
        assert_eq!(errs, vec!["hex_offset@2: offset goes backwards"]);
    }

    #[test]
    fn star_lines_share_one_budget() {
        // Each `*` stands for 48 MiB: the first fits the 64 MiB budget, the second is a gap.
        let text = "00000000  00 11 22 33\n*\n03000000  44\n*\n06000000  55\n";
        let mut n = 0u64;
        let mut gaps = vec![];
        read(text.as_bytes(), &mut |o| match o {
            HexOut::Data(d) => n += d.len() as u64,
            HexOut::Gap { len, .. } => gaps.push(len),
            _ => {}
        })
        .unwrap();
        assert_eq!(gaps, vec![0x0300_0000 - 1]);
        assert_eq!(n, 0x0300_0000 + 1 + 1);
    }

    #[test]
    fn detection() {
        assert!(looks_like_hex(b"00 00 01 0b\n"));
        assert!(looks_like_hex(xxd(DATA).as_bytes()));
        assert!(looks_like_hex(hexdump_c(DATA).as_bytes()));
        assert!(!looks_like_hex(b"<?xml version='1.0'?>"));
        assert!(!looks_like_hex(b"\x00\x00\x01\x0b9999"));
        assert!(!looks_like_hex(b"hello world"));
        assert!(!looks_like_hex(b""));
    }
}
