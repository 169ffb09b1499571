//! Splitting a stream of bare XML documents (peers that send no 8-byte header) on document
//! boundaries.
//!
//! The splitter is a byte-level state machine that knows just enough XML to find where a root
//! element closes: tags (with quoted attribute values that may contain `>`), comments, CDATA,
//! processing instructions and declarations. It does not check well-formedness; the XML decoder
//! does that on each document it hands out. Bytes are buffered only up to the frame cap; a longer
//! document is scanned to its end without being kept and reported as oversize.
//!
//! Resynchronisation: an XML declaration (`<?xml`) inside an unfinished document starts a new
//! document (the old one is reported truncated), and after a gap, once the stream has shown that
//! its documents start with a declaration, everything up to the next one is skipped.

use bytes::{Bytes, BytesMut};

/// What the splitter finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A complete document starting at `offset`.
    Doc {
        /// Offset of its first byte (`<`) in the splitter's input.
        offset: u64,
        /// The document.
        body: Bytes,
    },
    /// Bytes outside any document that are not whitespace (or markup that cannot start one).
    Junk {
        /// Offset of the first such byte.
        offset: u64,
        /// Span from the first to the last such byte, whitespace between them included.
        len: u64,
    },
    /// A document longer than the cap; it was skipped.
    Oversize {
        /// Offset of its first byte.
        offset: u64,
        /// Its length.
        len: u64,
    },
    /// A document that was cut short by a new XML declaration.
    Truncated {
        /// Offset of its first byte.
        offset: u64,
        /// Bytes it had.
        len: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum St {
    /// Outside a document.
    Between,
    /// Skipping everything up to the next `<?xml` (after a gap).
    SeekDecl,
    /// Inside a document, in character data.
    Text,
    /// Just after `<`.
    Lt,
    /// In a start tag; `quote` is the open quote, if any; `slash` if the last byte was `/`.
    StartTag { quote: u8, slash: bool },
    /// In an end tag.
    EndTag,
    /// In a processing instruction; `n` counts name bytes matched against `xml`.
    Pi { n: u8, decl: bool },
    /// After `<!`, collecting up to 7 bytes to tell comment, CDATA and declaration apart.
    Bang { n: u8 },
    /// In a comment.
    Comment,
    /// In a CDATA section.
    Cdata,
    /// In a declaration such as DOCTYPE; `depth` counts `[` of an internal subset.
    Decl { depth: u32, quote: u8 },
}

/// Incremental splitter for bare XML documents.
#[derive(Debug)]
pub struct Splitter {
    st: St,
    cap: usize,
    buf: BytesMut,
    /// The current document outgrew the cap; it is scanned but not kept.
    dropping: bool,
    /// Element nesting depth in the current document.
    depth: u32,
    /// The current document's root element has started.
    rooted: bool,
    /// Offset of the current document's `<`.
    doc_start: u64,
    /// Length of the current document so far.
    doc_len: u64,
    /// Bytes consumed.
    pos: u64,
    /// The last two bytes, for `-->`, `]]>` and `?>`.
    last: [u8; 2],
    /// Bytes collected after `<!`.
    bang: [u8; 7],
    /// Junk not yet reported: the span from its first to its last byte.
    junk: Option<(u64, u64)>,
    /// Skipping up to the next `<?xml`: markup that is not a declaration is junk.
    seeking: bool,
    /// Documents in this stream start with an XML declaration.
    declares: bool,
}

const CDATA: &[u8; 7] = b"[CDATA[";

impl Splitter {
    /// A splitter keeping documents of at most `cap` bytes.
    pub fn new(cap: usize) -> Splitter {
        Splitter {
            st: St::Between,
            cap,
            buf: BytesMut::new(),
            dropping: false,
            depth: 0,
            rooted: false,
            doc_start: 0,
            doc_len: 0,
            pos: 0,
            last: [0; 2],
            bang: [0; 7],
            junk: None,
            seeking: false,
            declares: false,
        }
    }

    /// Skip to the next XML declaration if the stream uses them (after a gap: whatever follows is
    /// most likely the inside of a document).
    pub fn resync(&mut self, out: &mut dyn FnMut(Item)) {
        self.flush_junk(out);
        self.buf.clear();
        self.dropping = false;
        self.seeking = self.declares;
        self.st = if self.seeking {
            St::SeekDecl
        } else {
            St::Between
        };
        self.depth = 0;
        self.rooted = false;
        self.last = [0; 2];
    }

    /// Bytes of an unfinished document.
    pub fn pending(&self) -> u64 {
        match self.st {
            St::Between | St::SeekDecl => 0,
            _ => self.doc_len,
        }
    }

    /// Feeds bytes; complete documents and problems go to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut dyn FnMut(Item)) {
        let mut i = 0;
        while i < data.len() {
            match self.st {
                St::Between => {
                    let b = data[i];
                    if b == b'<' {
                        self.begin();
                        self.take(&data[i..=i]);
                        self.st = St::Lt;
                    } else if !is_space(b) {
                        self.junk_byte();
                    }
                    self.pos += 1;
                    i += 1;
                }
                St::SeekDecl => {
                    // Jump to the next `<`; `Lt` and `Pi` then check for `?xml` byte by byte, so
                    // a declaration split across pushes is still found.
                    let rest = &data[i..];
                    match memchr::memchr(b'<', rest) {
                        None => {
                            self.junk_run(rest.len() as u64);
                            self.pos += rest.len() as u64;
                            i = data.len();
                        }
                        Some(k) => {
                            self.junk_run(k as u64);
                            self.pos += k as u64;
                            i += k;
                            self.begin();
                            self.take(&data[i..=i]);
                            self.st = St::Lt;
                            self.pos += 1;
                            i += 1;
                        }
                    }
                }
                St::Text => {
                    // Character data: jump to the next markup.
                    let rest = &data[i..];
                    let k = memchr::memchr(b'<', rest).unwrap_or(rest.len());
                    self.take(&rest[..k]);
                    self.pos += k as u64;
                    i += k;
                    if i < data.len() {
                        self.take(&data[i..=i]);
                        self.st = St::Lt;
                        self.pos += 1;
                        i += 1;
                    }
                }
                _ => {
                    let b = data[i];
                    self.take(&data[i..=i]);
                    self.pos += 1;
                    i += 1;
                    self.markup(b, out);
                }
            }
        }
    }

    /// Reports what is left at the end of the stream: junk, and the length of an unfinished
    /// document (returned, for the caller's truncation report).
    pub fn finish(&mut self, out: &mut dyn FnMut(Item)) -> Option<(u64, u64)> {
        let left = match self.st {
            St::Between | St::SeekDecl => None,
            _ => Some((self.doc_start, self.doc_len)),
        };
        self.resync(out);
        self.st = St::Between;
        left
    }

    fn markup(&mut self, b: u8, out: &mut dyn FnMut(Item)) {
        let last = self.last;
        self.last = [last[1], b];
        match self.st {
            St::Lt => {
                if self.seeking && b != b'?' {
                    self.abandon_as_junk();
                    return;
                }
                self.st = match b {
                    b'?' => St::Pi { n: 0, decl: false },
                    b'!' => St::Bang { n: 0 },
                    b'/' => St::EndTag,
                    _ => {
                        self.rooted = true;
                        St::StartTag {
                            quote: 0,
                            slash: false,
                        }
                    }
                };
                if self.st == St::EndTag && self.depth == 0 {
                    // An end tag with nothing open: we are inside someone else's document.
                    self.abandon_as_junk();
                }
            }
            St::StartTag { quote, slash } => {
                self.st = if quote != 0 {
                    St::StartTag {
                        quote: if b == quote { 0 } else { quote },
                        slash: false,
                    }
                } else {
                    match b {
                        b'"' | b'\'' => St::StartTag {
                            quote: b,
                            slash: false,
                        },
                        b'>' if slash => {
                            // Empty element: depth unchanged.
                            if self.depth == 0 {
                                self.complete(out);
                                return;
                            }
                            St::Text
                        }
                        b'>' => {
                            self.depth = self.depth.saturating_add(1);
                            St::Text
                        }
                        b'/' => St::StartTag {
                            quote: 0,
                            slash: true,
                        },
                        _ => St::StartTag {
                            quote: 0,
                            slash: false,
                        },
                    }
                };
            }
            St::EndTag => {
                if b == b'>' {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        self.complete(out);
                        return;
                    }
                    self.st = St::Text;
                }
            }
            St::Pi { n, decl } => {
                if n < 3 {
                    let matched = b.eq_ignore_ascii_case(&b"xml"[n as usize]);
                    if !matched && self.seeking {
                        self.abandon_as_junk();
                        return;
                    }
                    self.st = St::Pi {
                        n: if matched { n + 1 } else { 3 },
                        decl: matched && n == 2,
                    };
                    return;
                }
                if n == 3 && decl {
                    // `<?xml` followed by a name byte is some other PI (`<?xml-stylesheet`).
                    if b == b' ' || b == b'\t' || b == b'\r' || b == b'\n' || b == b'?' {
                        self.declaration(b, out);
                    } else if self.seeking {
                        self.abandon_as_junk();
                        return;
                    }
                    self.st = St::Pi { n: 4, decl: false };
                    if b == b'?' {
                        return;
                    }
                }
                if last[1] == b'?' && b == b'>' {
                    self.st = St::Text;
                }
            }
            St::Bang { n } => {
                self.bang[n as usize] = b;
                let got = &self.bang[..=n as usize];
                if got == b"--" {
                    self.st = St::Comment;
                    self.last = [0; 2];
                } else if got == CDATA {
                    self.st = St::Cdata;
                    self.last = [0; 2];
                } else if b"--".starts_with(got) || CDATA.starts_with(got) {
                    self.st = St::Bang { n: n + 1 };
                } else {
                    self.st = St::Decl { depth: 0, quote: 0 };
                    self.decl_byte(b);
                }
            }
            St::Comment => {
                if last == *b"--" && b == b'>' {
                    self.st = St::Text;
                }
            }
            St::Cdata => {
                if last == *b"]]" && b == b'>' {
                    self.st = St::Text;
                }
            }
            St::Decl { .. } => self.decl_byte(b),
            St::Between | St::SeekDecl | St::Text => {}
        }
    }

    fn decl_byte(&mut self, b: u8) {
        let St::Decl { depth, quote } = self.st else {
            return;
        };
        self.st = if quote != 0 {
            St::Decl {
                depth,
                quote: if b == quote { 0 } else { quote },
            }
        } else {
            match b {
                b'"' | b'\'' => St::Decl { depth, quote: b },
                b'[' => St::Decl {
                    depth: depth.saturating_add(1),
                    quote: 0,
                },
                b']' => St::Decl {
                    depth: depth.saturating_sub(1),
                    quote: 0,
                },
                b'>' if depth == 0 => St::Text,
                _ => St::Decl { depth, quote: 0 },
            }
        };
    }

    /// `<?xml` seen. At the start of a document it marks the stream as declaring; inside an
    /// unfinished document it means that document was cut short and a new one starts here.
    fn declaration(&mut self, b: u8, out: &mut dyn FnMut(Item)) {
        // `<?xml` and the byte after it.
        const LEN: u64 = 6;
        self.flush_junk(out);
        if self.doc_len > LEN || self.rooted {
            out(Item::Truncated {
                offset: self.doc_start,
                len: self.doc_len - LEN,
            });
            self.buf.clear();
            self.dropping = false;
            self.doc_start = self.pos - LEN;
            self.doc_len = LEN;
            self.buf.extend_from_slice(b"<?xml");
            self.buf.extend_from_slice(&[b]);
            self.depth = 0;
            self.rooted = false;
        }
        self.seeking = false;
        self.declares = true;
    }

    /// Treats the current partial markup as junk (a document cannot start with an end tag).
    fn abandon_as_junk(&mut self) {
        let (start, end) = (self.doc_start, self.doc_start + self.doc_len);
        self.buf.clear();
        self.dropping = false;
        self.doc_len = 0;
        self.st = if self.seeking {
            St::SeekDecl
        } else {
            St::Between
        };
        self.junk = Some(match self.junk {
            Some((s, _)) => (s, end),
            None => (start, end),
        });
    }

    fn begin(&mut self) {
        self.buf.clear();
        self.dropping = false;
        self.depth = 0;
        self.rooted = false;
        self.doc_start = self.pos;
        self.doc_len = 0;
        self.last = [0; 2];
    }

    fn take(&mut self, bytes: &[u8]) {
        self.doc_len += bytes.len() as u64;
        if self.dropping {
            return;
        }
        if self.buf.len() + bytes.len() > self.cap {
            self.dropping = true;
            self.buf = BytesMut::new();
            return;
        }
        self.buf.extend_from_slice(bytes);
    }

    fn complete(&mut self, out: &mut dyn FnMut(Item)) {
        self.flush_junk(out);
        if self.dropping {
            out(Item::Oversize {
                offset: self.doc_start,
                len: self.doc_len,
            });
        } else {
            out(Item::Doc {
                offset: self.doc_start,
                body: self.buf.split().freeze(),
            });
        }
        self.dropping = false;
        self.depth = 0;
        self.rooted = false;
        self.doc_len = 0;
        self.st = St::Between;
    }

    fn junk_byte(&mut self) {
        self.junk_run(1);
    }

    fn junk_run(&mut self, n: u64) {
        if n == 0 {
            return;
        }
        self.junk = Some(match self.junk {
            Some((s, _)) => (s, self.pos + n),
            None => (self.pos, self.pos + n),
        });
    }

    fn flush_junk(&mut self, out: &mut dyn FnMut(Item)) {
        if let Some((start, end)) = self.junk.take() {
            out(Item::Junk {
                offset: start,
                len: end - start,
            });
        }
    }
}

fn is_space(b: u8) -> bool {
    // Whitespace, NUL padding some peers send between documents, and a UTF-8 BOM.
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0 | 0xEF | 0xBB | 0xBF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], cap: usize) -> Vec<Item> {
        let mut s = Splitter::new(cap);
        let mut out = vec![];
        for c in chunks {
            s.push(c, &mut |i| out.push(i));
        }
        if let Some((offset, len)) = s.finish(&mut |i| out.push(i)) {
            out.push(Item::Truncated { offset, len });
        }
        out
    }

    fn docs(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Doc { body, .. } => Some(String::from_utf8_lossy(body).into_owned()),
                _ => None,
            })
            .collect()
    }

    const A: &str = r#"<?xml version="1.0" encoding="UTF-8"?><DeliveredEvent xmlns="x"><a b="1>2">t<!-- </DeliveredEvent> --><![CDATA[</DeliveredEvent>]]></a><c/></DeliveredEvent>"#;
    const B: &str = "<SystemStatus><systemStatus>normal</systemStatus></SystemStatus>";

    #[test]
    fn splits_on_document_boundaries_at_every_split_point() {
        let stream = format!("{A}\r\n{B}  <e/>\n");
        for k in 0..stream.len() {
            let (x, y) = stream.as_bytes().split_at(k);
            let items = split(&[x, y], 4096);
            assert_eq!(docs(&items), vec![A, B, "<e/>"], "split at {k}");
            assert_eq!(items.len(), 3, "{items:?}");
        }
        let items = split(&[stream.as_bytes()], 4096);
        assert_eq!(
            items[1],
            Item::Doc {
                offset: (A.len() + 2) as u64,
                body: Bytes::from_static(B.as_bytes())
            }
        );
    }

    #[test]
    fn doctype_with_internal_subset_and_prolog_comment() {
        let d = r#"<!-- hi --><!DOCTYPE x [<!ENTITY e "]>">]><x>&e;</x>"#;
        assert_eq!(docs(&split(&[d.as_bytes()], 4096)), vec![d]);
    }

    #[test]
    fn junk_between_documents_is_reported_once_per_run() {
        let s = format!("garbage{B}more junk");
        let items = split(&[s.as_bytes()], 4096);
        assert_eq!(
            items,
            vec![
                Item::Junk { offset: 0, len: 7 },
                Item::Doc {
                    offset: 7,
                    body: Bytes::from_static(B.as_bytes())
                },
                Item::Junk {
                    offset: (7 + B.len()) as u64,
                    len: 9
                },
            ]
        );
    }

    #[test]
    fn oversize_documents_are_skipped_unbuffered() {
        let big = format!("<a>{}</a>", "x".repeat(1000));
        let s = format!("{big}{B}");
        let mut sp = Splitter::new(100);
        let mut out = vec![];
        for c in s.as_bytes().chunks(7) {
            sp.push(c, &mut |i| out.push(i));
            assert!(sp.buf.len() <= 100);
        }
        assert_eq!(
            out[0],
            Item::Oversize {
                offset: 0,
                len: big.len() as u64
            }
        );
        assert_eq!(docs(&out), vec![B]);
    }

    #[test]
    fn a_new_declaration_cuts_an_unfinished_document() {
        let s = format!("<?xml version='1.0'?><A><b>{A}");
        let items = split(&[s.as_bytes()], 4096);
        assert_eq!(
            items[0],
            Item::Truncated {
                offset: 0,
                len: "<?xml version='1.0'?><A><b>".len() as u64
            }
        );
        assert_eq!(docs(&items), vec![A]);
        // `<?xml-stylesheet` is not a declaration.
        let s = "<a><?xml-stylesheet href='x'?></a>";
        assert_eq!(docs(&split(&[s.as_bytes()], 4096)), vec![s]);
    }

    #[test]
    fn resync_after_a_gap_waits_for_a_declaration() {
        let mut sp = Splitter::new(4096);
        let mut out = vec![];
        sp.push(A.as_bytes(), &mut |i| out.push(i));
        sp.push(b"<?xml version='1.0'?><Held", &mut |i| out.push(i));
        sp.resync(&mut |i| out.push(i));
        // The rest of a document after the gap: skipped as junk up to the next declaration.
        sp.push(b"ed><x>1</x></HeldEvent>", &mut |i| out.push(i));
        sp.push(A.as_bytes(), &mut |i| out.push(i));
        assert_eq!(docs(&out), vec![A, A]);
        assert!(out.iter().any(|i| matches!(i, Item::Junk { len: 23, .. })));
    }

    #[test]
    fn a_stray_end_tag_is_junk() {
        let items = split(&[b"</x><y/>"], 4096);
        assert_eq!(docs(&items), vec!["<y/>"]);
        assert_eq!(items[0], Item::Junk { offset: 0, len: 4 });
    }

    #[test]
    fn unfinished_document_at_the_end() {
        let items = split(&[b"<a><b>"], 4096);
        assert_eq!(items, vec![Item::Truncated { offset: 0, len: 6 }]);
    }
}
