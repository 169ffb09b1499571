//! A minimal, borrowing XML tokenizer for CSTA documents.
//!
//! It yields start/end tags, text and CDATA as slices of the input, skips the declaration, processing
//! instructions and comments, and rejects DOCTYPE (no DTDs, so no entity expansion attacks). It checks
//! what a CSTA decoder relies on (names are well formed, quotes balance, references are well formed;
//! the decoder checks that tags close in order) and nothing more; names are matched by local part by
//! the caller.
//!
//! The hot paths are written for short tags: names are scanned with a byte table instead of `memchr`
//! (whose set-up costs more than a 10-byte name), and attributes are only walked when a tag has some.

use super::XmlError;
use std::borrow::Cow;

/// One token of the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    /// `<name attrs>` or `<name attrs/>` (`empty`).
    Start {
        name: &'a str,
        attrs: &'a str,
        empty: bool,
    },
    /// `</name>`.
    End { name: &'a str },
    /// Character data as written, references unresolved.
    Text(&'a str),
    /// The content of `<![CDATA[…]]>`, line ends not yet normalized.
    CData(&'a str),
}

/// Byte classes for names: 0 = part of a name, 1 = ends a name (whitespace, `/`, `>`), 2 = never
/// allowed in a name (`<`, `=`, quotes, `&`).
const NAME_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b' ' as usize] = 1;
    t[b'\t' as usize] = 1;
    t[b'\r' as usize] = 1;
    t[b'\n' as usize] = 1;
    t[b'/' as usize] = 1;
    t[b'>' as usize] = 1;
    t[b'<' as usize] = 2;
    t[b'=' as usize] = 2;
    t[b'"' as usize] = 2;
    t[b'\'' as usize] = 2;
    t[b'&' as usize] = 2;
    t
};

/// Tokenizer state: the input and a cursor.
pub(crate) struct Scanner<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        Scanner { s, pos: 0 }
    }

    /// Byte offset of the cursor, for error messages.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// The next token, or `None` at the end of input.
    #[inline]
    pub(crate) fn next_token(&mut self) -> Result<Option<Token<'a>>, XmlError> {
        loop {
            let b = self.s.as_bytes();
            let Some(&first) = b.get(self.pos) else {
                return Ok(None);
            };
            if first != b'<' {
                let start = self.pos;
                let end = memchr::memchr(b'<', &b[start..]).map_or(b.len(), |i| start + i);
                self.pos = end;
                return Ok(Some(Token::Text(&self.s[start..end])));
            }
            match b.get(self.pos + 1) {
                Some(b'/') => return self.end_tag().map(Some),
                Some(b'?') => {
                    let end = self.find_seq(b"?>", self.pos + 2)?;
                    self.pos = end + 2;
                }
                Some(b'!') => {
                    let rest = &b[self.pos + 1..];
                    if rest.starts_with(b"!--") {
                        let end = self.find_seq(b"-->", self.pos + 4)?;
                        self.pos = end + 3;
                    } else if rest.starts_with(b"![CDATA[") {
                        let start = self.pos + 9;
                        let end = self.find_seq(b"]]>", start)?;
                        self.pos = end + 3;
                        return Ok(Some(Token::CData(&self.s[start..end])));
                    } else if rest.len() >= 8 && rest[1..8].eq_ignore_ascii_case(b"DOCTYPE") {
                        return Err(XmlError::Doctype);
                    } else if b"![CDATA[".starts_with(rest) || b"!--".starts_with(rest) {
                        return Err(XmlError::Truncated);
                    } else {
                        return Err(XmlError::Syntax {
                            at: self.pos,
                            what: "unknown markup declaration",
                        });
                    }
                }
                Some(_) => return self.start_tag().map(Some),
                None => return Err(XmlError::Truncated),
            }
        }
    }

    /// Scans a name starting at `from`; returns its end. The first byte must be a letter, `_`, `:`
    /// or non-ASCII, and the name must end at whitespace, `/` or `>`.
    #[inline]
    fn name_end(&self, from: usize) -> Result<usize, XmlError> {
        let b = self.s.as_bytes();
        match b.get(from) {
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' || *c == b':' || *c >= 0x80 => {}
            Some(_) => {
                return Err(XmlError::Syntax {
                    at: from,
                    what: "invalid element name",
                });
            }
            None => return Err(XmlError::Truncated),
        }
        let mut i = from + 1;
        while let Some(&c) = b.get(i) {
            match NAME_CLASS[usize::from(c)] {
                0 => i += 1,
                1 => return Ok(i),
                _ => {
                    return Err(XmlError::Syntax {
                        at: i,
                        what: "invalid element name",
                    });
                }
            }
        }
        Err(XmlError::Truncated)
    }

    #[inline]
    fn end_tag(&mut self) -> Result<Token<'a>, XmlError> {
        let b = self.s.as_bytes();
        let start = self.pos + 2;
        let mut i = self.name_end(start)?;
        let name = &self.s[start..i];
        while let Some(&c) = b.get(i) {
            match c {
                b'>' => {
                    self.pos = i + 1;
                    return Ok(Token::End { name });
                }
                b' ' | b'\t' | b'\r' | b'\n' => i += 1,
                _ => {
                    return Err(XmlError::Syntax {
                        at: i,
                        what: "malformed end tag",
                    });
                }
            }
        }
        Err(XmlError::Truncated)
    }

    #[inline]
    fn start_tag(&mut self) -> Result<Token<'a>, XmlError> {
        let b = self.s.as_bytes();
        let name_start = self.pos + 1;
        let mut i = self.name_end(name_start)?;
        let name = &self.s[name_start..i];
        let attrs_start = i;
        // Most CSTA tags have no attributes: `>` or `/>` right after the name.
        if b[i] != b'>' {
            // Scan attributes, honouring quotes: a `>` inside a quoted value does not end the tag.
            loop {
                let Some(off) = memchr::memchr3(b'>', b'"', b'\'', &b[i..]) else {
                    return Err(XmlError::Truncated);
                };
                i += off;
                match b[i] {
                    b'>' => break,
                    q => {
                        let Some(close) = memchr::memchr(q, &b[i + 1..]) else {
                            return Err(XmlError::Truncated);
                        };
                        i += close + 2;
                    }
                }
            }
        }
        let empty = i > attrs_start && b[i - 1] == b'/';
        let attrs_end = if empty { i - 1 } else { i };
        self.pos = i + 1;
        Ok(Token::Start {
            name,
            attrs: &self.s[attrs_start..attrs_end],
            empty,
        })
    }

    fn find_seq(&self, needle: &[u8], from: usize) -> Result<usize, XmlError> {
        let hay = self.s.as_bytes().get(from..).ok_or(XmlError::Truncated)?;
        memchr::memmem::find(hay, needle)
            .map(|i| from + i)
            .ok_or(XmlError::Truncated)
    }
}

/// The local part of a possibly prefixed name (`csta:DeliveredEvent` → `DeliveredEvent`).
#[inline]
pub(crate) fn local_name(qname: &str) -> &str {
    match memchr::memrchr(b':', qname.as_bytes()) {
        Some(i) => &qname[i + 1..],
        None => qname,
    }
}

/// True for the four XML whitespace characters (and nothing else: U+00A0 is content).
#[inline]
pub(crate) fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Resolves entity and character references and normalizes line ends (`\r\n` and a lone `\r`
/// become `\n`, as an XML processor must). Borrows when there is nothing to do, which is the
/// common case.
#[inline]
pub(crate) fn unescape(raw: &str) -> Result<Cow<'_, str>, XmlError> {
    match memchr::memchr2(b'&', b'\r', raw.as_bytes()) {
        None => Ok(Cow::Borrowed(raw)),
        Some(first) => unescape_from(raw, first).map(Cow::Owned),
    }
}

#[cold]
fn unescape_from(raw: &str, first: usize) -> Result<String, XmlError> {
    let b = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    out.push_str(&raw[..first]);
    let mut i = first;
    while i < b.len() {
        match b[i] {
            b'&' => {
                let Some(semi) = memchr::memchr(b';', &b[i..]).filter(|&o| o <= 12) else {
                    return Err(XmlError::BadReference(truncate(&raw[i..])));
                };
                let ent = &raw[i + 1..i + semi];
                let ch = match ent {
                    "lt" => '<',
                    "gt" => '>',
                    "amp" => '&',
                    "quot" => '"',
                    "apos" => '\'',
                    _ => {
                        char_ref(ent).ok_or_else(|| XmlError::BadReference(truncate(&raw[i..])))?
                    }
                };
                out.push(ch);
                i += semi + 1;
            }
            b'\r' => {
                out.push('\n');
                i += if b.get(i + 1) == Some(&b'\n') { 2 } else { 1 };
            }
            _ => {
                let next = memchr::memchr2(b'&', b'\r', &b[i..]).map_or(b.len(), |o| i + o);
                out.push_str(&raw[i..next]);
                i = next;
            }
        }
    }
    Ok(out)
}

/// Line-end normalization for CDATA (which has no references).
#[inline]
pub(crate) fn normalize_eol(raw: &str) -> Cow<'_, str> {
    if memchr::memchr(b'\r', raw.as_bytes()).is_none() {
        return Cow::Borrowed(raw);
    }
    Cow::Owned(raw.replace("\r\n", "\n").replace('\r', "\n"))
}

fn char_ref(ent: &str) -> Option<char> {
    let n = ent.strip_prefix('#')?;
    let v = match n.strip_prefix('x') {
        Some(hex) if !hex.is_empty() && hex.bytes().all(|c| c.is_ascii_hexdigit()) => {
            u32::from_str_radix(hex, 16).ok()?
        }
        None if !n.is_empty() && n.bytes().all(|c| c.is_ascii_digit()) => n.parse::<u32>().ok()?,
        _ => return None,
    };
    // XML forbids NUL and most C0 controls even as references.
    match char::from_u32(v)? {
        '\0' => None,
        c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => None,
        c => Some(c),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(16).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(s: &str) -> Result<Vec<Token<'_>>, XmlError> {
        let mut sc = Scanner::new(s);
        let mut v = vec![];
        while let Some(t) = sc.next_token()? {
            v.push(t);
        }
        Ok(v)
    }

    #[test]
    fn tokenizes_tags_text_and_cdata() {
        let t = tokens(
            r#"<?xml version="1.0"?><!-- c --><a x="1>2" y='q'><b/>hi<![CDATA[<raw>]]></a >"#,
        )
        .unwrap();
        assert_eq!(
            t,
            vec![
                Token::Start {
                    name: "a",
                    attrs: r#" x="1>2" y='q'"#,
                    empty: false
                },
                Token::Start {
                    name: "b",
                    attrs: "",
                    empty: true
                },
                Token::Text("hi"),
                Token::CData("<raw>"),
                Token::End { name: "a" },
            ]
        );
    }

    #[test]
    fn rejects_doctype_and_truncation() {
        assert_eq!(tokens("<!DOCTYPE x []><x/>"), Err(XmlError::Doctype));
        assert_eq!(tokens("<a"), Err(XmlError::Truncated));
        assert_eq!(tokens("<a x='1>"), Err(XmlError::Truncated));
        assert_eq!(tokens("<!-- open"), Err(XmlError::Truncated));
        assert_eq!(tokens("<![CDA"), Err(XmlError::Truncated));
        assert_eq!(tokens("</a"), Err(XmlError::Truncated));
        assert!(tokens("<1a/>").is_err());
        assert!(tokens("<a<b/>").is_err());
        assert!(tokens("</a b>").is_err());
        assert!(tokens("<!ELEMENT x>").is_err());
    }

    #[test]
    fn unescapes_references_and_line_ends() {
        assert!(matches!(unescape("plain").unwrap(), Cow::Borrowed("plain")));
        assert_eq!(
            unescape("N&lt;+49&gt;;a=&amp;&#65;&#x42;").unwrap(),
            "N<+49>;a=&AB"
        );
        assert_eq!(unescape("a\r\nb\rc&#13;").unwrap(), "a\nb\nc\r");
        assert!(unescape("&bogus;").is_err());
        assert!(unescape("&#0;").is_err());
        assert!(unescape("&#x;").is_err());
        assert!(unescape("&#+5;").is_err());
        assert!(unescape("& alone").is_err());
        assert_eq!(normalize_eol("x\r\ny\r"), "x\ny\n");
    }

    #[test]
    fn local_names() {
        assert_eq!(local_name("csta:MonitorStart"), "MonitorStart");
        assert_eq!(local_name("MonitorStart"), "MonitorStart");
    }
}
