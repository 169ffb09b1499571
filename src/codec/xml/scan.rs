//! A minimal, borrowing XML tokenizer for CSTA documents.
//!
//! It yields start/end tags, text and CDATA as slices of the input, skips the declaration, processing
//! instructions and comments, and rejects DOCTYPE (no DTDs, so no entity expansion attacks). It checks
//! what a CSTA decoder relies on (tags close in order, quotes balance, references are well formed) and
//! nothing more; names are matched by local part by the caller.

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
    /// The content of `<![CDATA[…]]>`.
    CData(&'a str),
}

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
            if self.pos >= b.len() {
                return Ok(None);
            }
            if b[self.pos] != b'<' {
                let start = self.pos;
                let end = memchr::memchr(b'<', &b[start..]).map_or(b.len(), |i| start + i);
                self.pos = end;
                return Ok(Some(Token::Text(&self.s[start..end])));
            }
            let rest = &b[self.pos + 1..];
            match rest.first() {
                Some(b'/') => {
                    let start = self.pos + 2;
                    let end = self.find_byte(b'>', start)?;
                    let name = self.s[start..end].trim_end();
                    check_name(name, start)?;
                    self.pos = end + 1;
                    return Ok(Some(Token::End { name }));
                }
                Some(b'?') => {
                    let end = self.find_seq(b"?>", self.pos + 2)?;
                    self.pos = end + 2;
                }
                Some(b'!') => {
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

    #[inline]
    fn start_tag(&mut self) -> Result<Token<'a>, XmlError> {
        let b = self.s.as_bytes();
        let name_start = self.pos + 1;
        let mut i = name_start;
        while i < b.len() && !matches!(b[i], b' ' | b'\t' | b'\r' | b'\n' | b'/' | b'>') {
            i += 1;
        }
        let name = &self.s[name_start..i];
        check_name(name, name_start)?;
        let attrs_start = i;
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
        let empty = i > attrs_start && b[i - 1] == b'/';
        let attrs_end = if empty { i - 1 } else { i };
        self.pos = i + 1;
        Ok(Token::Start {
            name,
            attrs: &self.s[attrs_start..attrs_end],
            empty,
        })
    }

    fn find_byte(&self, needle: u8, from: usize) -> Result<usize, XmlError> {
        memchr::memchr(needle, &self.s.as_bytes()[from..])
            .map(|i| from + i)
            .ok_or(XmlError::Truncated)
    }

    fn find_seq(&self, needle: &[u8], from: usize) -> Result<usize, XmlError> {
        let hay = self.s.as_bytes().get(from..).ok_or(XmlError::Truncated)?;
        memchr::memmem::find(hay, needle)
            .map(|i| from + i)
            .ok_or(XmlError::Truncated)
    }
}

fn check_name(name: &str, at: usize) -> Result<(), XmlError> {
    let ok = match name.as_bytes().first() {
        Some(c) => c.is_ascii_alphabetic() || *c == b'_' || *c == b':' || *c >= 0x80,
        None => false,
    };
    if ok
        && !name
            .bytes()
            .any(|c| matches!(c, b'<' | b'=' | b'"' | b'\'' | b'&'))
    {
        Ok(())
    } else {
        Err(XmlError::Syntax {
            at,
            what: "invalid element name",
        })
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

/// Resolves entity and character references. Borrows when there are none.
pub(crate) fn unescape(raw: &str) -> Result<Cow<'_, str>, XmlError> {
    let b = raw.as_bytes();
    let Some(first) = memchr::memchr(b'&', b) else {
        return Ok(Cow::Borrowed(raw));
    };
    let mut out = String::with_capacity(raw.len());
    out.push_str(&raw[..first]);
    let mut i = first;
    while i < b.len() {
        if b[i] != b'&' {
            let next = memchr::memchr(b'&', &b[i..]).map_or(b.len(), |o| i + o);
            out.push_str(&raw[i..next]);
            i = next;
            continue;
        }
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
            _ => char_ref(ent).ok_or_else(|| XmlError::BadReference(truncate(&raw[i..])))?,
        };
        out.push(ch);
        i += semi + 1;
    }
    Ok(Cow::Owned(out))
}

fn char_ref(ent: &str) -> Option<char> {
    let n = ent.strip_prefix('#')?;
    let v = match n.strip_prefix('x') {
        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
        None => n.parse::<u32>().ok()?,
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
            r#"<?xml version="1.0"?><!-- c --><a x="1>2" y='q'><b/>hi<![CDATA[<raw>]]></a>"#,
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
        assert!(tokens("<1a/>").is_err());
    }

    #[test]
    fn unescapes_references() {
        assert_eq!(unescape("plain").unwrap(), Cow::Borrowed("plain"));
        assert_eq!(
            unescape("N&lt;+49&gt;;a=&amp;&#65;&#x42;").unwrap(),
            "N<+49>;a=&AB"
        );
        assert!(unescape("&bogus;").is_err());
        assert!(unescape("&#0;").is_err());
        assert!(unescape("& alone").is_err());
    }

    #[test]
    fn local_names() {
        assert_eq!(local_name("csta:MonitorStart"), "MonitorStart");
        assert_eq!(local_name("MonitorStart"), "MonitorStart");
    }
}
