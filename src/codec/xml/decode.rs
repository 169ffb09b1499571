//! The ECMA-323 decoder: one pass over the tokens, filling the fields of the message the root names.
//!
//! Element names are turned into a [`Sym`] once, when the element opens; the message builders then
//! match on paths of symbols (integers), not strings. An element whose name is not a symbol (vendor
//! elements, `extensions`, `servicesPermitted`, `mediaCallCharacteristics`, …) is skipped with its
//! whole subtree: its tags are still checked for balance, but its names are never looked at and its
//! text is never copied. Values are slices of the input unless a reference had to be resolved.
//!
//! Field semantics (the reference reader in [`super::reference`] implements the same rules
//! independently, and the property tests hold the two to each other):
//! - a *leaf* is an element without child elements; its value is its text and CDATA, references
//!   resolved, line ends normalized, trimmed of XML whitespace;
//! - every field has an exact path from the root; when several elements match, the last one in
//!   document order wins (a connection or device element resets its field when it opens);
//! - a device field is a leaf with non-empty text (the id written directly), or an element whose
//!   leaf children `deviceIdentifier`/`numberDialed`/`deviceID`/`notKnown`/`restricted`/
//!   `notRequired`/`notSpecified` set it, the last one winning.

use super::scan::{
    Markup, Scanner, Token, all_space, attr_value_end, attrs_end, end_tag_close, is_xml_space,
    markup, name_end, normalize_eol, same, same_at, text_run, trim_xml, unescape, word,
};
use super::{
    AgentStateEntry, Connection, CstaError, Device, DeviceList, Document, Event, EventKind,
    ForwardItem, ListedDevice, MAX_DEPTH, Message, Response, SnapshotCall, SnapshotParty,
    SnapshotSegment, Str, XmlError,
};
use std::borrow::Cow;

/// Decodes one CSTA XML document (a frame body).
///
/// Values borrow from `input` unless references had to be resolved or the document is ISO-8859-1
/// with non-ASCII bytes (then it is transcoded and everything is owned).
pub fn decode(input: &[u8]) -> Result<Document<'_>, XmlError> {
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    if u32::try_from(input.len()).is_err() {
        // Frames are at most 64 KiB; the decoder keeps offsets in 32 bits.
        return Err(XmlError::TooLarge);
    }
    // Where the prolog continues: after the XML declaration when there is one (it is read here,
    // once, for its encoding).
    let mut after_decl = 0;
    if let Some(rest) = input.get(..COMMON_DECL.len())
        && same(rest, COMMON_DECL)
    {
        // What nearly every peer writes: UTF-8, read without parsing (the general path below
        // gives the same result for it).
        after_decl = COMMON_DECL.len();
    } else if input.starts_with(b"<?xml") && input.get(5).copied().is_some_and(is_xml_space) {
        // An XML declaration (the target `xml` is reserved for it). One we cannot read is
        // refused: guessing could read the document in the wrong encoding.
        let Some((enc, end)) = declared_encoding(input) else {
            return Err(XmlError::Syntax {
                at: 0,
                what: "malformed XML declaration (or longer than 256 bytes)",
            });
        };
        after_decl = end;
        match enc.map(Encoding::of).transpose()? {
            None | Some(Encoding::Utf8) => {}
            Some(Encoding::Latin1) => {
                if !input.is_ascii() {
                    // Every byte is the code point of the same value; the declaration is ASCII,
                    // so `after_decl` still points after it.
                    let s: String = input.iter().map(|&b| char::from(b)).collect();
                    return decode_str(&s, after_decl).map(Document::into_owned);
                }
            }
        }
    }
    decode_str(utf8(input)?, after_decl)
}

/// The document as text. CSTA documents are nearly always ASCII, which is much cheaper to check
/// than UTF-8 (an OR of all words); anything else is validated in full.
#[inline]
fn utf8(input: &[u8]) -> Result<&str, XmlError> {
    if super::scan::is_ascii(input) {
        // SAFETY: every byte is below 0x80, and ASCII bytes are valid UTF-8.
        Ok(unsafe { std::str::from_utf8_unchecked(input) })
    } else {
        std::str::from_utf8(input).map_err(|_| XmlError::InvalidUtf8)
    }
}

/// The usual XML declaration.
const COMMON_DECL: &[u8] = b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>";

/// The encodings we decode.
#[cfg_attr(test, derive(Debug, PartialEq))]
enum Encoding {
    Utf8,
    Latin1,
}

impl Encoding {
    fn of(label: &str) -> Result<Encoding, XmlError> {
        let l = label.trim();
        const UTF8: [&str; 4] = ["utf-8", "utf8", "us-ascii", "ascii"];
        const LATIN1: [&str; 6] = [
            "iso-8859-1",
            "iso8859-1",
            "latin1",
            "latin-1",
            "l1",
            "iso_8859-1",
        ];
        if UTF8.iter().any(|e| l.eq_ignore_ascii_case(e)) {
            Ok(Encoding::Utf8)
        } else if LATIN1.iter().any(|e| l.eq_ignore_ascii_case(e)) {
            Ok(Encoding::Latin1)
        } else {
            Err(XmlError::UnsupportedEncoding(l.to_ascii_lowercase()))
        }
    }
}

/// The XML declaration at the start of `input`, if there is one: its `encoding` pseudo-attribute
/// and the position after its `?>`. Read on bytes, in one pass: a declaration is ASCII
/// `name="value"` pairs. `None` when there is none, or when it does not parse within 256 bytes
/// (which `decode` refuses).
fn declared_encoding(input: &[u8]) -> Option<(Option<&str>, usize)> {
    let rest = input.strip_prefix(b"<?xml")?;
    if !rest.first().copied().is_some_and(is_xml_space) {
        return None;
    }
    let b = &input[..input.len().min(256)];
    let mut encoding = None;
    let mut i = 5;
    loop {
        while b.get(i).copied().is_some_and(is_xml_space) {
            i += 1;
        }
        if b.get(i..i + 2) == Some(b"?>") {
            return Some((encoding, i + 2));
        }
        let name_start = i;
        while b.get(i).is_some_and(|c| c.is_ascii_alphabetic()) {
            i += 1;
        }
        let name = &b[name_start..i];
        while b.get(i).copied().is_some_and(is_xml_space) {
            i += 1;
        }
        if name.is_empty() || b.get(i) != Some(&b'=') {
            return None;
        }
        i += 1;
        while b.get(i).copied().is_some_and(is_xml_space) {
            i += 1;
        }
        let quote = *b.get(i).filter(|q| matches!(q, b'"' | b'\''))?;
        // Values here are a few bytes: a plain loop beats `memchr`'s set-up.
        let close = i + 1 + b.get(i + 1..)?.iter().position(|&c| c == quote)?;
        if name == b"encoding" {
            encoding = std::str::from_utf8(&b[i + 1..close]).ok();
        }
        i = close + 1;
    }
}

/// An attribute as written: name, value, and whether the value is plain (no `&`, tab, line feed or
/// carriage return, so it is its own normalized value).
type Attribute<'a> = (&'a str, &'a str, bool);

/// The next attribute of a tag's attribute text from `*i` on: `Ok(None)` at the end, or the
/// attribute. The grammar is checked: `name="value"` or `name='value'`, separated by whitespace.
fn next_attribute<'a>(attrs: &'a str, i: &mut usize) -> Result<Option<Attribute<'a>>, XmlError> {
    let b = attrs.as_bytes();
    let bad = |at: usize| XmlError::Syntax {
        at,
        what: "malformed attribute on the root element",
    };
    let before = *i;
    let mut j = *i;
    while b.get(j).copied().is_some_and(is_xml_space) {
        j += 1;
    }
    if j == b.len() {
        *i = j;
        return Ok(None);
    }
    if j == before && j > 0 {
        // Attributes must be separated by whitespace.
        return Err(bad(j));
    }
    let start = j;
    while b
        .get(j)
        .is_some_and(|&c| c != b'=' && !is_xml_space(c) && !matches!(c, b'"' | b'\'' | b'<'))
    {
        j += 1;
    }
    // `start` and `j` sit at ASCII bytes or the end, so they are char boundaries.
    let name = attrs.get(start..j).unwrap_or_default();
    while b.get(j).copied().is_some_and(is_xml_space) {
        j += 1;
    }
    if name.is_empty() || b.get(j) != Some(&b'=') {
        return Err(bad(j));
    }
    j += 1;
    while b.get(j).copied().is_some_and(is_xml_space) {
        j += 1;
    }
    let quote = match b.get(j) {
        Some(&q @ (b'"' | b'\'')) => q,
        _ => return Err(bad(j)),
    };
    // One pass finds the closing quote, or a `<` (never allowed in a value) before it, and
    // notes whether the value needs normalizing.
    let (close, plain) = attr_value_end(b, j + 1, quote).ok_or_else(|| bad(j))?;
    if b[close] == b'<' {
        return Err(bad(start));
    }
    let value = attrs.get(j + 1..close).unwrap_or_default();
    *i = close + 1;
    Ok(Some((name, value, plain)))
}

/// Calls `f` with each of the root's attributes, checked (see [`next_attribute`]; and no name
/// twice). Only the root's attributes are ever read (for its namespace), so only they are held to
/// the grammar.
fn root_attributes<'a>(
    attrs: &'a str,
    mut f: impl FnMut(&'a str, &'a str, bool),
) -> Result<(), XmlError> {
    let mut i = 0;
    let mut first = true;
    while let Some((name, value, plain)) = next_attribute(attrs, &mut i)? {
        // Roots carry a handful of attributes: look for the name among the earlier ones again.
        let mut j = 0;
        let mut earlier = 0;
        while !first && let Some((other, ..)) = next_attribute(attrs, &mut j)? {
            if j >= i {
                break;
            }
            earlier += usize::from(other == name);
        }
        first = false;
        if earlier > 0 {
            return Err(XmlError::Syntax {
                at: i,
                what: "attribute repeated on the root element",
            });
        }
        f(name, value, plain);
    }
    Ok(())
}

/// The namespace the root's prefix (or the default namespace) is bound to on the root itself.
/// The value is unescaped and attribute-normalized; an empty value (an undeclaration) is `None`.
fn root_namespace<'a>(
    qname: &str,
    local: &str,
    attrs: &'a str,
) -> Result<Option<Str<'a>>, XmlError> {
    // `qname` is `prefix:local` or just `local`.
    let prefix = qname
        .len()
        .checked_sub(local.len() + 1)
        .and_then(|end| qname.get(..end));
    let mut raw = None;
    root_attributes(attrs, |name, value, plain| {
        let matches = match prefix {
            Some(p) => name.strip_prefix("xmlns:") == Some(p),
            None => name == "xmlns",
        };
        if matches {
            raw = Some((value, plain));
        }
    })?;
    raw.map(namespace_value).transpose().map(Option::flatten)
}

/// A namespace attribute's value (`plain` as from [`next_attribute`]): unescaped and
/// attribute-normalized; an empty value (an undeclaration) is `None`.
fn namespace_value((raw, plain): (&str, bool)) -> Result<Option<Str<'_>>, XmlError> {
    if plain {
        // Nothing to resolve or normalize: the usual namespace URI.
        return Ok((!raw.is_empty()).then_some(Cow::Borrowed(raw)));
    }
    // Attribute-value normalization: each literal line end or whitespace character becomes a
    // space before references are resolved (so `&#10;` stays a line feed).
    let v = if memchr::memchr3(b'\t', b'\n', b'\r', raw.as_bytes()).is_some() {
        let spaced = raw.replace("\r\n", " ").replace(['\t', '\n', '\r'], " ");
        Cow::Owned(unescape(&spaced)?.into_owned())
    } else {
        unescape(raw)?
    };
    Ok((!v.is_empty()).then_some(v))
}

/// A message builder: told about elements as they open and about leaf values as they close.
trait Sink<'a> {
    /// An element `sym` (local name `local`) opens below the open elements `parents` (root
    /// excluded). Returns whether its content matters; if not, its subtree is skipped.
    #[inline]
    fn open(&mut self, parents: &[Sym], sym: Sym, local: &'a [u8]) -> bool {
        let _ = (parents, local);
        sym != Sym::Other
    }

    /// A leaf element at `path` (root excluded, qualified name `qname`) closed with value `v`.
    fn leaf(&mut self, path: &[Sym], qname: &'a [u8], v: Str<'a>);
}

fn decode_str(s: &str, from: usize) -> Result<Document<'_>, XmlError> {
    let b = s.as_bytes();
    let mut sc = Scanner::new(s);
    // Prolog. The usual one (after the declaration: whitespace, then the root) is read directly;
    // comments, processing instructions and anything odd go through the tokenizer.
    let mut i = from;
    while b.get(i).copied().is_some_and(is_xml_space) {
        i += 1;
    }
    let root = match b.get(i..i + 2) {
        Some([b'<', c]) if !matches!(c, b'?' | b'!' | b'/') => {
            let (name_stop, local_start) = name_end(b, i + 1)?;
            let qname = slice(s, i + 1, name_stop);
            let local = slice(s, local_start, name_stop);
            let (close, empty, namespace) = root_tag(s, name_stop, qname, local)?;
            sc.set_pos(close + 1);
            (qname, local, empty, namespace)
        }
        _ => {
            sc.set_pos(i);
            let (qname, local, attrs, empty) = loop {
                match sc.next_token()? {
                    None => return Err(XmlError::NoRoot),
                    Some(Token::Text { raw, .. }) if all_space(raw) => {}
                    Some(Token::Text { .. } | Token::CData(_)) => return Err(XmlError::NoRoot),
                    Some(Token::End { .. }) => {
                        return Err(XmlError::Syntax {
                            at: sc.pos(),
                            what: "end tag without a start tag",
                        });
                    }
                    Some(Token::Start {
                        name,
                        local,
                        attrs,
                        empty,
                    }) => break (name, local, attrs, empty),
                }
            };
            (qname, local, empty, root_namespace(qname, local, attrs)?)
        }
    };
    let (qname, name, empty, namespace) = root;
    let mut doc = Document {
        name: Cow::Borrowed(name),
        namespace,
        message: Message::Unknown,
    };
    // The message is built where it will be returned: an event is about a kilobyte, and moving it
    // through builders costs more than filling it.
    message(&mut sc, name, qname, empty, &mut doc.message)?;
    // Epilog: only whitespace, comments and processing instructions.
    let rest = b.get(sc.pos()..).unwrap_or_default();
    if !rest.iter().copied().all(is_xml_space) {
        while let Some(tok) = sc.next_token()? {
            match tok {
                Token::Text { raw, .. } if all_space(raw) => {}
                _ => return Err(XmlError::TrailingContent),
            }
        }
    }
    Ok(doc)
}

/// Reads the attributes of the root start tag, from the end of its name (`at`) to its end, in one
/// pass: checks their grammar (see [`next_attribute`]; no name twice), picks the namespace the
/// root's prefix (or the default namespace) is bound to, and finds the `>`. Returns the position
/// of the `>`, whether the tag is empty (`/>`), and the namespace.
fn root_tag<'a>(
    s: &'a str,
    at: usize,
    qname: &str,
    local: &str,
) -> Result<(usize, bool, Option<Str<'a>>), XmlError> {
    let b = s.as_bytes();
    // `qname` is `prefix:local` or just `local`.
    let prefix = qname
        .len()
        .checked_sub(local.len() + 1)
        .and_then(|end| qname.get(..end));
    // What nearly every peer writes: the default namespace as the only attribute. Read directly;
    // the general loop below gives the same result for it.
    if prefix.is_none()
        && b.get(at..at + 8) == Some(b" xmlns=\"")
        && let Some((close, plain)) = attr_value_end(b, at + 8, b'"')
        && b[close] == b'"'
        && b.get(close + 1) == Some(&b'>')
    {
        let value = slice(s, at + 8, close);
        return Ok((close + 1, false, namespace_value((value, plain))?));
    }
    let mut raw = None;
    let mut i = at;
    let mut count = 0;
    loop {
        let mut j = i;
        while b.get(j).copied().is_some_and(is_xml_space) {
            j += 1;
        }
        match b.get(j) {
            Some(b'>') => {
                return Ok((j, false, raw.map(namespace_value).transpose()?.flatten()));
            }
            Some(b'/') if b.get(j + 1) == Some(&b'>') => {
                return Ok((j + 1, true, raw.map(namespace_value).transpose()?.flatten()));
            }
            Some(b'/') => return Err(malformed_tag(j)),
            None => return Err(XmlError::Truncated),
            Some(_) => {}
        }
        let start = i;
        let Some((name, value, plain)) = next_attribute(s, &mut i)? else {
            return Err(XmlError::Truncated);
        };
        if count > 0 {
            // Roots carry a handful of attributes: look for the name among the earlier ones.
            let mut k = at;
            while let Some((other, ..)) = next_attribute(s, &mut k)? {
                if other == name && k <= start {
                    return Err(XmlError::Syntax {
                        at: start,
                        what: "attribute repeated on the root element",
                    });
                }
                if k > start {
                    break;
                }
            }
        }
        count += 1;
        let is_ns = match prefix {
            Some(p) => name.strip_prefix("xmlns:") == Some(p),
            None => name == "xmlns",
        };
        if is_ns {
            raw = Some((value, plain));
        }
    }
}

/// Builds the message the root `name` announces from the root's content, into `out`.
fn message<'a>(
    sc: &mut Scanner<'a>,
    name: &'a str,
    qname: &'a str,
    empty: bool,
    out: &mut Message<'a>,
) -> Result<(), XmlError> {
    fn run<'a, S: Sink<'a>>(
        sc: &mut Scanner<'a>,
        qname: &'a str,
        empty: bool,
        mut sink: S,
    ) -> Result<S, XmlError> {
        if !empty {
            content(sc, qname, &mut sink)?;
        }
        Ok(sink)
    }
    /// The value of the one root child `sym`.
    fn one<'a>(
        sc: &mut Scanner<'a>,
        qname: &'a str,
        empty: bool,
        sym: Sym,
    ) -> Result<Option<Str<'a>>, XmlError> {
        let [v] = run(sc, qname, empty, Scalars::<1>::new([sym]))?.0;
        Ok(v)
    }
    if let Some(kind) = EventKind::from_root(name) {
        // Written straight into the allocation (`Box::new` builds the value on the stack and copies
        // it over).
        *out = Message::Event(Box::write(Box::new_uninit(), Event::new(kind)));
        if let Message::Event(e) = out
            && !empty
        {
            content(sc, qname, &mut EventSink(e))?;
        }
        return Ok(());
    }
    *out = match name {
        "SystemStatus" => {
            let status = one(sc, qname, empty, Sym::SystemStatus)?;
            Message::SystemStatus { status }
        }
        "RequestSystemStatus" => {
            let register_id = one(sc, qname, empty, Sym::SysStatRegisterId)?;
            Message::RequestSystemStatus { register_id }
        }
        "SwitchingFunctionDevices" => {
            Message::SwitchingFunctionDevices(run(sc, qname, empty, DeviceListSink::default())?.0)
        }
        "CSTAErrorCode" => Message::Error(run(sc, qname, empty, ErrorSink::new(false))?.finish()),
        n if n.ends_with("NegResponse") => {
            Message::Error(run(sc, qname, empty, ErrorSink::new(true))?.finish())
        }
        "SystemStatusResponse" => {
            skip_content(sc, qname, empty)?;
            Message::Response(Response::SystemStatus)
        }
        "SystemRegisterResponse" => {
            let register_id = one(sc, qname, empty, Sym::SysStatRegisterId)?;
            Message::Response(Response::SystemRegister { register_id })
        }
        "RequestSystemStatusResponse" => {
            let status = one(sc, qname, empty, Sym::SystemStatus)?;
            Message::Response(Response::RequestSystemStatus { status })
        }
        "MonitorStartResponse" => {
            let cross_ref = one(sc, qname, empty, Sym::MonitorCrossRefId)?;
            Message::Response(Response::MonitorStart { cross_ref })
        }
        "MakeCallResponse" => {
            let s = run(sc, qname, empty, ConnSink::new(Sym::CallingDevice))?;
            Message::Response(Response::MakeCall {
                call: s.conn.unwrap_or_default(),
            })
        }
        "SingleStepTransferCallResponse" | "TransferCallResponse" => {
            let s = run(sc, qname, empty, ConnSink::new(Sym::TransferredCall))?;
            Message::Response(Response::NewCall {
                call: s.conn.unwrap_or_default(),
            })
        }
        "ConsultationCallResponse" => {
            let s = run(sc, qname, empty, ConnSink::new(Sym::InitiatedCall))?;
            Message::Response(Response::NewCall {
                call: s.conn.unwrap_or_default(),
            })
        }
        "ConferenceCallResponse" => {
            let s = run(sc, qname, empty, ConnSink::new(Sym::ConferenceCall))?;
            Message::Response(Response::NewCall {
                call: s.conn.unwrap_or_default(),
            })
        }
        "SnapshotDeviceResponse" => {
            let s = run(sc, qname, empty, SnapshotDeviceSink::default())?;
            Message::Response(Response::SnapshotDevice {
                calls: s.calls,
                service_cross_ref: s.service_cross_ref,
            })
        }
        "SnapshotDeviceData" => {
            let sink = SnapshotDeviceSink {
                segment: true,
                ..SnapshotDeviceSink::default()
            };
            let s = run(sc, qname, empty, sink)?;
            Message::SnapshotDeviceData(SnapshotSegment {
                service_cross_ref: s.service_cross_ref,
                segment_id: s.segment_id,
                last_segment: s.last_segment,
                calls: s.calls,
            })
        }
        "SnapshotCallResponse" => {
            let s = run(sc, qname, empty, SnapshotCallSink::default())?;
            Message::Response(Response::SnapshotCall { parties: s.0 })
        }
        "GetSwitchingFunctionDevicesResponse" => {
            let service_cross_ref = one(sc, qname, empty, Sym::ServiceCrossRefId)?;
            Message::Response(Response::GetSwitchingFunctionDevices { service_cross_ref })
        }
        "GetCSTAFeaturesResponse" => {
            let s = run(sc, qname, empty, FeaturesSink::default())?;
            Message::Response(Response::CstaFeatures {
                services: s.services,
                events: s.events,
            })
        }
        "GetAgentStateResponse" => {
            let s = run(sc, qname, empty, AgentStateSink::default())?;
            Message::Response(Response::AgentState { agents: s.0 })
        }
        "GetDoNotDisturbResponse" => {
            let on = one(sc, qname, empty, Sym::DoNotDisturbOn)?;
            Message::Response(Response::DoNotDisturb {
                on: on.as_deref().and_then(parse_bool),
            })
        }
        "GetForwardingResponse" => {
            let s = run(sc, qname, empty, ForwardingSink::default())?;
            Message::Response(Response::Forwarding { items: s.0 })
        }
        "StartApplicationSessionPosResponse" => {
            let s = run(
                sc,
                qname,
                empty,
                Scalars::<3>::new([
                    Sym::SessionId,
                    Sym::ActualProtocolVersion,
                    Sym::ActualSessionDuration,
                ]),
            )?;
            let [session_id, protocol_version, duration] = s.0;
            Message::Response(Response::StartApplicationSession {
                session_id,
                protocol_version,
                session_duration: duration.as_deref().and_then(parse_u32),
            })
        }
        "ResetApplicationSessionTimerPosResponse" => {
            let duration = one(sc, qname, empty, Sym::ActualSessionDuration)?;
            Message::Response(Response::ResetApplicationSessionTimer {
                session_duration: duration.as_deref().and_then(parse_u32),
            })
        }
        n if n.ends_with("Response") => {
            skip_content(sc, qname, empty)?;
            Message::Response(Response::Ack)
        }
        n => {
            skip_content(sc, qname, empty)?;
            if is_request(n) {
                Message::Request
            } else {
                Message::Unknown
            }
        }
    };
    Ok(())
}

/// Checks the root's content for well-formedness without extracting anything.
fn skip_content<'a>(sc: &mut Scanner<'a>, qname: &'a str, empty: bool) -> Result<(), XmlError> {
    struct Nothing;
    impl<'a> Sink<'a> for Nothing {
        fn open(&mut self, _: &[Sym], _: Sym, _: &'a [u8]) -> bool {
            false
        }
        fn leaf(&mut self, _: &[Sym], _: &'a [u8], _: Str<'a>) {}
    }
    if !empty {
        content(sc, qname, &mut Nothing)?;
    }
    Ok(())
}

/// Requests a switch may send to an application (or that we see echoed) that we do not serve.
fn is_request(name: &str) -> bool {
    matches!(
        name,
        "SystemRegister"
            | "SwitchingFunctionCapsChanged"
            | "MonitorStart"
            | "MonitorStop"
            | "SnapshotDevice"
            | "MakeCall"
            | "GetSwitchingFunctionDevices"
            | "StartApplicationSession"
            | "ResetApplicationSessionTimer"
            | "StopApplicationSession"
    )
}

/// Walks the content of the root element (already opened as `root_qname`) up to its end tag,
/// feeding `sink`, and leaves the scanner after that end tag.
///
/// This is the hot loop, written on bytes: each step reads a text run up to the next `<` and then
/// the markup there, sixteen bytes at a time (see `scan`). The common leaf `<tag>value</tag>`
/// becomes a value straight from its text run: no token is built, nothing is accumulated, and a
/// plain value is a slice of the input. End tags are compared with the expected name, not scanned.
#[inline]
fn content<'a, S: Sink<'a>>(
    sc: &mut Scanner<'a>,
    root_qname: &'a str,
    sink: &mut S,
) -> Result<(), XmlError> {
    let s = sc.input();
    let b = s.as_bytes();
    // Open elements: where their qualified names are in the document (to check end tags), and
    // their symbols. Index 0 is the root; `syms[1..depth]` is the path the sink sees.
    let mut qnames: [(u32, u32); MAX_DEPTH] = [(0, 0); MAX_DEPTH];
    let mut syms: [Sym; MAX_DEPTH] = [Sym::Other; MAX_DEPTH];
    let root_start = root_qname.as_ptr() as usize - s.as_ptr() as usize;
    qnames[0] = (root_start as u32, root_qname.len() as u32);
    let mut depth = 1usize;
    // The innermost open element has had no child element so far (so its text may be a value).
    let mut leaf = false;
    // The element's text so far, when comments or CDATA split it into several pieces.
    let mut acc: Option<Str<'a>> = None;
    let mut i = sc.pos();

    loop {
        let (lt, plain) = text_run(b, i);
        let Some(&next) = b.get(lt + 1) else {
            return Err(XmlError::Truncated);
        };
        if next == b'/' {
            let (q_at, q_len) = qnames[depth - 1];
            let (q_at, q_len) = (q_at as usize, q_len as usize);
            let after = end_tag(b, lt + 2, q_at, q_len)?;
            depth -= 1;
            if leaf && depth > 0 {
                let v = value(s, i, lt, plain, acc.take())?;
                let q = b.get(q_at..q_at + q_len).unwrap_or_default();
                sink.leaf(&syms[1..=depth], q, v);
            } else if !plain {
                check_refs(slice(s, i, lt))?;
            }
            if depth == 0 {
                sc.set_pos(after);
                return Ok(());
            }
            acc = None;
            leaf = false;
            i = after;
        } else if next == b'!' || next == b'?' {
            let m = markup(b, lt)?;
            let keep = leaf;
            if keep {
                // Text before a comment or CDATA section is part of the value.
                let raw = slice(s, i, lt);
                append(
                    &mut acc,
                    if plain {
                        Cow::Borrowed(raw)
                    } else {
                        unescape(raw)?
                    },
                );
            } else if !plain {
                check_refs(slice(s, i, lt))?;
            }
            i = match m {
                Markup::Ignored(after) => after,
                Markup::CData(start, end, after) => {
                    if keep {
                        append(&mut acc, normalize_eol(slice(s, start, end)));
                    }
                    after
                }
            };
        } else {
            // Text before a child element is not a value, but its references must be valid.
            if !plain {
                check_refs(slice(s, i, lt))?;
            }
            acc = None;
            if depth == MAX_DEPTH {
                return Err(XmlError::TooDeep);
            }
            let name_start = lt + 1;
            let (name_stop, local_start) = name_end(b, name_start)?;
            let (close, empty) = tag_close(b, name_stop)?;
            if local_start >= name_stop {
                return Err(XmlError::Syntax {
                    at: name_start,
                    what: "invalid element name",
                });
            }
            i = close + 1;
            // Documents are at most 64 KiB (the frame length is 16 bits), and `decode` refuses
            // anything whose offsets do not fit 32 bits.
            let qname = (name_start as u32, (name_stop - name_start) as u32);
            let sym = sym_at(b, local_start, name_stop);
            let wanted = sink.open(&syms[1..depth], sym, &b[local_start..name_stop]);
            if empty {
                if wanted {
                    syms[depth] = sym;
                    sink.leaf(
                        &syms[1..=depth],
                        &b[name_start..name_stop],
                        Cow::Borrowed(""),
                    );
                }
                leaf = false;
            } else {
                qnames[depth] = qname;
                if wanted {
                    syms[depth] = sym;
                    depth += 1;
                    leaf = true;
                } else {
                    i = skip_subtree(s, i, &mut qnames, depth)?;
                    leaf = false;
                }
            }
        }
    }
}

#[cold]
fn malformed_tag(at: usize) -> XmlError {
    XmlError::Syntax {
        at,
        what: "malformed start tag",
    }
}

/// Skips the content of the element just opened at `qnames[at]` (whose content no sink wants) up
/// to and including its end tag; returns the position after it. Nothing is extracted, but the
/// subtree is checked as carefully as the rest: tags balance, references are valid, nesting stays
/// under [`MAX_DEPTH`], no DOCTYPE. `qnames[at..]` serves as the stack.
fn skip_subtree(
    s: &str,
    mut i: usize,
    qnames: &mut [(u32, u32); MAX_DEPTH],
    at: usize,
) -> Result<usize, XmlError> {
    let b = s.as_bytes();
    // The open elements of the subtree, counted from its root (so the loop ends when `open` drops
    // to zero, and `open == stack.len()` is exactly `MAX_DEPTH` elements open in the document).
    let Some(stack) = qnames.get_mut(at..) else {
        return Err(XmlError::TooDeep);
    };
    let mut open = 1usize;
    loop {
        let (lt, plain) = text_run(b, i);
        if !plain {
            check_refs(slice(s, i, lt))?;
        }
        let Some(&next) = b.get(lt + 1) else {
            return Err(XmlError::Truncated);
        };
        if next == b'/' {
            let Some(&(q_at, q_len)) = stack.get(open - 1) else {
                return Err(XmlError::Truncated);
            };
            i = end_tag(b, lt + 2, q_at as usize, q_len as usize)?;
            open -= 1;
            if open == 0 {
                return Ok(i);
            }
        } else if next == b'!' || next == b'?' {
            i = match markup(b, lt)? {
                Markup::Ignored(after) | Markup::CData(_, _, after) => after,
            };
        } else {
            if open == stack.len() {
                return Err(XmlError::TooDeep);
            }
            let name_start = lt + 1;
            let (name_stop, _) = name_end(b, name_start)?;
            let (close, empty) = tag_close(b, name_stop)?;
            if !empty && let Some(top) = stack.get_mut(open) {
                *top = (name_start as u32, (name_stop - name_start) as u32);
                open += 1;
            }
            i = close + 1;
        }
    }
}

/// The end of the end tag whose name starts at `start`, which must be the `len` bytes at `q_at`
/// (the open element's name): the position after its `>`.
#[inline(always)]
fn end_tag(b: &[u8], start: usize, q_at: usize, len: usize) -> Result<usize, XmlError> {
    let end = start + len;
    if b.get(end) == Some(&b'>') && same_at(b, start, q_at, len) {
        Ok(end + 1)
    } else {
        other_end_tag(b, start, b.get(q_at..q_at + len).unwrap_or_default())
    }
}

/// The end of a start tag whose name ends at `name_stop` (where [`name_end`] stopped: whitespace,
/// `/` or `>`): the position of its `>`, and whether the tag is empty (`/>`).
#[inline(always)]
fn tag_close(b: &[u8], name_stop: usize) -> Result<(usize, bool), XmlError> {
    match b.get(name_stop) {
        Some(b'>') => Ok((name_stop, false)),
        Some(b'/') => match b.get(name_stop + 1) {
            Some(b'>') => Ok((name_stop + 1, true)),
            // A `/` that does not close the tag is not part of any valid tag.
            Some(_) => Err(malformed_tag(name_stop)),
            None => Err(XmlError::Truncated),
        },
        _ => {
            let close = attrs_end(b, name_stop)?;
            Ok((close, b[close - 1] == b'/'))
        }
    }
}

/// An end tag that is not byte-for-byte `</expected>`: the right name with whitespace before `>`,
/// or a mismatch. Returns the position after it.
#[cold]
fn other_end_tag(b: &[u8], start: usize, expected: &[u8]) -> Result<usize, XmlError> {
    let (e, _) = name_end(b, start)?;
    if !same(&b[start..e], expected) {
        return Err(XmlError::Mismatch {
            expected: String::from_utf8_lossy(expected).into_owned(),
            found: String::from_utf8_lossy(&b[start..e]).into_owned(),
        });
    }
    end_tag_close(b, e)
}

/// `s[a..b]`. The decoder only cuts next to ASCII delimiters, which are char boundaries, so this
/// never falls back.
#[inline(always)]
fn slice(s: &str, a: usize, b: usize) -> &str {
    s.get(a..b).unwrap_or_default()
}

/// The value of a leaf whose last text run is `s[a..z]`, after the pieces in `acc`.
#[inline(always)]
fn value<'a>(
    s: &'a str,
    a: usize,
    z: usize,
    plain: bool,
    acc: Option<Str<'a>>,
) -> Result<Str<'a>, XmlError> {
    match acc {
        None if plain => {
            // Values are rarely padded: when neither end can be XML whitespace (all of it is at
            // or below b' '), the text is the value as cut.
            let v = slice(s, a, z);
            Ok(Cow::Borrowed(match v.as_bytes() {
                [f, .., l] | [f @ l] if *f > b' ' && *l > b' ' => v,
                _ => trim_xml(v),
            }))
        }
        None => Ok(trim(unescape(slice(s, a, z))?)),
        Some(mut acc) => {
            let raw = slice(s, a, z);
            if plain {
                acc.to_mut().push_str(raw);
            } else {
                acc.to_mut().push_str(&unescape(raw)?);
            }
            Ok(trim(acc))
        }
    }
}

/// Validates the references in text that is not a value.
#[cold]
fn check_refs(raw: &str) -> Result<(), XmlError> {
    unescape(raw).map(drop)
}

#[inline]
fn append<'a>(text: &mut Option<Str<'a>>, piece: Str<'a>) {
    match text {
        None => *text = Some(piece),
        Some(t) => t.to_mut().push_str(&piece),
    }
}

#[inline]
fn trim(s: Str<'_>) -> Str<'_> {
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(trim_xml(b)),
        Cow::Owned(o) => {
            let t = trim_xml(&o);
            if t.len() == o.len() {
                Cow::Owned(o)
            } else {
                Cow::Owned(t.to_owned())
            }
        }
    }
}

/// `xs:boolean`.
fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

fn parse_u32(v: &str) -> Option<u32> {
    v.parse().ok()
}

/// The CHOICE inside an extended device id element.
#[inline]
fn choice<'a>(child: Sym, v: Str<'a>) -> Option<Device<'a>> {
    Some(match child {
        Sym::DeviceIdentifier | Sym::NumberDialed | Sym::DeviceId => Device::Id(v),
        Sym::NotKnown => Device::NotKnown,
        Sym::Restricted => Device::Restricted,
        Sym::NotRequired => Device::NotRequired,
        Sym::NotSpecified => Device::NotSpecified,
        _ => return None,
    })
}

/// A device element written as direct text.
#[inline]
fn direct(v: Str<'_>) -> Option<Device<'_>> {
    (!v.is_empty()).then_some(Device::Id(v))
}

#[inline]
fn set_conn_field<'a>(conn: &mut Option<Connection<'a>>, child: Sym, v: Str<'a>) {
    if let Some(c) = conn {
        match child {
            Sym::CallId => c.call_id = Some(v),
            Sym::DeviceId => c.device_id = Some(v),
            _ => {}
        }
    }
}

/// Leaves directly below the root, by symbol.
struct Scalars<'a, const N: usize>([Option<Str<'a>>; N], [Sym; N]);

impl<'a, const N: usize> Scalars<'a, N> {
    fn new(syms: [Sym; N]) -> Self {
        Scalars([const { None }; N], syms)
    }
}

impl<'a, const N: usize> Sink<'a> for Scalars<'a, N> {
    fn open(&mut self, parents: &[Sym], sym: Sym, _: &'a [u8]) -> bool {
        parents.is_empty() && self.1.contains(&sym)
    }

    fn leaf(&mut self, path: &[Sym], _: &'a [u8], v: Str<'a>) {
        if let [s] = path
            && let Some(i) = self.1.iter().position(|x| x == s)
        {
            self.0[i] = Some(v);
        }
    }
}

/// One connection directly below the root (`callingDevice` of MakeCallResponse, …).
struct ConnSink<'a> {
    at: Sym,
    conn: Option<Connection<'a>>,
}

impl ConnSink<'_> {
    fn new(at: Sym) -> Self {
        ConnSink { at, conn: None }
    }
}

impl<'a> Sink<'a> for ConnSink<'a> {
    fn open(&mut self, parents: &[Sym], sym: Sym, _: &'a [u8]) -> bool {
        match parents {
            [] if sym == self.at => {
                self.conn = Some(Connection::default());
                true
            }
            [p] => *p == self.at && matches!(sym, Sym::CallId | Sym::DeviceId),
            _ => false,
        }
    }

    fn leaf(&mut self, path: &[Sym], _: &'a [u8], v: Str<'a>) {
        if let [p, c] = path
            && *p == self.at
        {
            set_conn_field(&mut self.conn, *c, v);
        }
    }
}

/// The event builder. The paths are the same for every event type (an element name means the same
/// thing wherever the standard uses it), so one builder serves all of them.
struct EventSink<'e, 'a>(&'e mut Event<'a>);

impl<'a> EventSink<'_, 'a> {
    /// The connection field a root child fills.
    #[inline]
    fn conn_slot(&mut self, s: Sym) -> Option<&mut Option<Connection<'a>>> {
        use Sym::*;
        let e = &mut *self.0;
        Some(match s {
            Connection
            | EstablishedConnection
            | DroppedConnection
            | HeldConnection
            | RetrievedConnection
            | InitiatedConnection
            | OriginatedConnection
            | FailedConnection
            | QueuedConnection
            | ClearedCall
            | OfferedConnection
            | BridgedConnection
            | OutboundConnection
            | DialingConnection => &mut e.connection,
            PrimaryOldCall => &mut e.old_call,
            SecondaryOldCall => &mut e.secondary_old_call,
            OriginatingNidConnection | OriginatinNidConnection => &mut e.originating_nid,
            _ => return None,
        })
    }

    /// The device field a root child fills.
    #[inline]
    fn dev_slot(&mut self, s: Sym) -> Option<&mut Option<Device<'a>>> {
        use Sym::*;
        let e = &mut *self.0;
        Some(match s {
            AlertingDevice | AnsweringDevice | ReleasingDevice | HoldingDevice
            | RetrievingDevice | InitiatingDevice | TransferringDevice | ConferencingDevice
            | DivertingDevice | FailingDevice | Queue | AgentDevice | Device | OfferedDevice
            | BridgedAppearance | BridgingDevice | DialingDevice | NetworkInterfaceUsed
            | ChargedDevice => &mut e.subject,
            CallingDevice => &mut e.calling,
            CalledDevice => &mut e.called,
            LastRedirectionDevice => &mut e.last_redirection,
            TransferredToDevice | AddedParty | NewDestination => &mut e.target,
            NetworkCallingDevice => &mut e.network_calling,
            NetworkCalledDevice => &mut e.network_called,
            AssociatedCallingDevice => &mut e.associated_calling,
            AssociatedCalledDevice => &mut e.associated_called,
            _ => return None,
        })
    }

    /// A leaf directly below the root.
    #[inline]
    fn leaf1(&mut self, s: Sym, v: Str<'a>) {
        use Sym::*;
        let e = &mut *self.0;
        match s {
            MonitorCrossRefId => e.cross_ref = Some(v),
            LocalConnectionInfo => e.local_state = Some(v),
            Cause => e.cause = Some(v),
            AgentId => e.agent_id = Some(v),
            AcdGroup => e.acd_group = Some(v),
            PendingAgentState => e.pending_agent_state = Some(v),
            DoNotDisturbOn => e.do_not_disturb = parse_bool(&v),
            ForwardingType => e.forwarding_type = Some(v),
            ForwardStatus => e.forward_status = parse_bool(&v),
            ForwardTo => e.forward_to = Some(v),
            ForwardDefault => e.forward_default = Some(v),
            RingCount => e.ring_count = parse_u32(&v),
            NumberQueued => e.number_queued = parse_u32(&v),
            CallsInFront => e.calls_in_front = parse_u32(&v),
            OriginatingDevice => e.originating_device = Some(v),
            DialingSequence | DigitGeneratedList => e.digits = Some(v),
            ToneGenerated => e.tone = Some(v),
            AccountInfo => e.account_info = Some(v),
            _ => {
                // Some peers write a device id as direct text instead of `<deviceIdentifier>`.
                if let Some(slot) = self.dev_slot(s) {
                    *slot = direct(v);
                }
            }
        }
    }

    #[inline]
    fn leaf2(&mut self, p: Sym, c: Sym, v: Str<'a>) {
        use Sym::*;
        if let Some(slot) = self.conn_slot(p) {
            set_conn_field(slot, c, v);
            return;
        }
        if let Some(slot) = self.dev_slot(p) {
            if let Some(d) = choice(c, v) {
                *slot = Some(d);
            }
            return;
        }
        let e = &mut *self.0;
        match (p, c) {
            (CorrelatorData, String) => e.correlator_data = Some(v),
            (UserData, String) => e.user_data = Some(v),
            (ChargingInfo, TypeOfChargingInfo) => {
                if let Some(ch) = &mut e.charging {
                    ch.info_type = Some(v);
                }
            }
            (PrimaryCall, DeviceId) => e.subject = direct(v),
            (PrimaryCall, LocalConnectionState) => e.local_state = Some(v),
            _ => {}
        }
    }
}

impl<'a> Sink<'a> for EventSink<'_, 'a> {
    #[inline]
    fn open(&mut self, parents: &[Sym], sym: Sym, _: &'a [u8]) -> bool {
        use Sym::*;
        match *parents {
            [] => {
                if let Some(slot) = self.conn_slot(sym) {
                    *slot = Some(super::Connection::default());
                } else if let Some(slot) = self.dev_slot(sym) {
                    *slot = None;
                } else if sym == ChargingInfo {
                    self.0.charging = Some(Box::default());
                }
            }
            [
                TransferredConnections | ConferenceConnections,
                ConnectionListItem,
            ] if sym == NewConnection => {
                self.0.new_connections.push(super::Connection::default());
            }
            [PrimaryCall] => match sym {
                ConnectionId => self.0.connection = Some(super::Connection::default()),
                DeviceId => self.0.subject = None,
                _ => {}
            },
            [SecondaryCall] if sym == ConnectionId => {
                self.0.secondary_old_call = Some(super::Connection::default());
            }
            _ => {}
        }
        sym != Other
    }

    #[inline(always)]
    fn leaf(&mut self, path: &[Sym], _: &'a [u8], v: Str<'a>) {
        use Sym::*;
        match *path {
            [s] => self.leaf1(s, v),
            [p, c] => self.leaf2(p, c, v),
            [PrimaryCall, ConnectionId, c] => set_conn_field(&mut self.0.connection, c, v),
            [SecondaryCall, ConnectionId, c] => {
                set_conn_field(&mut self.0.secondary_old_call, c, v);
            }
            [
                TransferredConnections | ConferenceConnections,
                ConnectionListItem,
                NewConnection,
                c,
            ] => {
                if let Some(conn) = self.0.new_connections.last_mut() {
                    match c {
                        CallId => conn.call_id = Some(v),
                        DeviceId => conn.device_id = Some(v),
                        _ => {}
                    }
                }
            }
            [ChargingInfo, NumberUnits, NumberOfCurrencyUnits, c] => {
                if let Some(ch) = &mut self.0.charging {
                    match c {
                        CurrencyType => ch.currency_type = Some(v),
                        CurrencyAmount => ch.currency_amount = Some(v),
                        CurrencyMultiplier => ch.currency_multiplier = Some(v),
                        _ => {}
                    }
                }
            }
            [
                ChargingInfo,
                NumberUnits,
                NumberOfChargeUnits,
                ChargingUnitsRecord,
                c,
            ] => {
                if let Some(ch) = &mut self.0.charging {
                    match c {
                        ChargingUnits => ch.charge_units = Some(v),
                        TypeOfUnits => ch.units_type = Some(v),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
}

/// `CSTAErrorCode` (category = the root's first child) or an ECMA-354 negative response
/// (category = the first child of `errorCode`).
struct ErrorSink<'a> {
    /// Look inside `errorCode` instead of at the root's children.
    nested: bool,
    category: Option<&'a str>,
    value: Option<Str<'a>>,
    /// A second candidate element has opened; the first one is final.
    done: bool,
}

impl<'a> ErrorSink<'a> {
    fn new(nested: bool) -> Self {
        ErrorSink {
            nested,
            category: None,
            value: None,
            done: false,
        }
    }

    fn finish(self) -> CstaError<'a> {
        match self.category {
            Some(c) => CstaError {
                category: Cow::Borrowed(c),
                value: self.value.unwrap_or(Cow::Borrowed("")),
            },
            None => CstaError {
                category: Cow::Borrowed("unspecified"),
                value: Cow::Borrowed(""),
            },
        }
    }

    fn level<'p>(&self, path: &'p [Sym]) -> Option<&'p [Sym]> {
        if self.nested {
            match path {
                [Sym::ErrorCode, rest @ ..] => Some(rest),
                _ => None,
            }
        } else {
            Some(path)
        }
    }
}

impl<'a> Sink<'a> for ErrorSink<'a> {
    fn open(&mut self, parents: &[Sym], sym: Sym, local: &'a [u8]) -> bool {
        if self.nested && parents.is_empty() {
            return sym == Sym::ErrorCode;
        }
        match self.level(parents) {
            Some([]) => {
                if self.category.is_none() {
                    // Names are cut at ASCII delimiters of a valid UTF-8 document.
                    self.category = Some(std::str::from_utf8(local).unwrap_or_default());
                } else {
                    self.done = true;
                }
                true
            }
            _ => false,
        }
    }

    fn leaf(&mut self, path: &[Sym], _: &'a [u8], v: Str<'a>) {
        if let Some([_]) = self.level(path)
            && !self.done
        {
            self.value = Some(v);
        }
    }
}

/// `SnapshotDeviceResponse` (the calls under `crossRefIDorSnapshotData/snapshotData`) and
/// `SnapshotDeviceData` (one segment: the calls under `snapshotData`, with its segment fields).
#[derive(Default)]
struct SnapshotDeviceSink<'a> {
    /// Decoding a `SnapshotDeviceData` segment rather than a response.
    segment: bool,
    calls: Vec<SnapshotCall<'a>>,
    service_cross_ref: Option<Str<'a>>,
    segment_id: Option<u32>,
    last_segment: Option<bool>,
}

impl<'a> SnapshotDeviceSink<'a> {
    /// The path below the element that holds `snapshotData`.
    fn inner<'p>(&self, path: &'p [Sym]) -> Option<&'p [Sym]> {
        if self.segment {
            Some(path)
        } else {
            match path {
                [Sym::CrossRefIdorSnapshotData, rest @ ..] => Some(rest),
                _ => None,
            }
        }
    }
}

impl<'a> Sink<'a> for SnapshotDeviceSink<'a> {
    fn open(&mut self, parents: &[Sym], sym: Sym, _: &'a [u8]) -> bool {
        use Sym::*;
        match self.inner(parents) {
            Some([SnapshotData]) if sym == SnapshotDeviceResponseInfo => {
                self.calls.push(SnapshotCall::default());
            }
            Some([SnapshotData, SnapshotDeviceResponseInfo]) => {
                if let Some(call) = self.calls.last_mut() {
                    match sym {
                        ConnectionIdentifier => call.connection = super::Connection::default(),
                        EndpointDevice => call.endpoint = None,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        sym != Other
    }

    fn leaf(&mut self, path: &[Sym], _: &'a [u8], v: Str<'a>) {
        use Sym::*;
        match (self.segment, path) {
            (false, [CrossRefIdorSnapshotData, ServiceCrossRefId])
            | (true, [ServiceCrossRefId]) => {
                self.service_cross_ref = Some(v);
                return;
            }
            (true, [SegmentId]) => {
                self.segment_id = parse_u32(&v);
                return;
            }
            (true, [LastSegment]) => {
                self.last_segment = parse_bool(&v);
                return;
            }
            _ => {}
        }
        let Some([SnapshotData, SnapshotDeviceResponseInfo, rest @ ..]) = self.inner(path) else {
            return;
        };
        let Some(call) = self.calls.last_mut() else {
            return;
        };
        match *rest {
            [ConnectionIdentifier, CallId] => call.connection.call_id = Some(v),
            [ConnectionIdentifier, DeviceId] => call.connection.device_id = Some(v),
            [EndpointDevice] => call.endpoint = direct(v),
            [EndpointDevice, c] => {
                if let Some(d) = choice(c, v) {
                    call.endpoint = Some(d);
                }
            }
            [LocalCallState, SimpleCallState]
            | [LocalCallState, CompoundCallState, LocalConnectionState] => call.states.push(v),
            _ => {}
        }
    }
}

#[derive(Default)]
struct SnapshotCallSink<'a>(Vec<SnapshotParty<'a>>);

impl<'a> Sink<'a> for SnapshotCallSink<'a> {
    fn open(&mut self, parents: &[Sym], sym: Sym, _: &'a [u8]) -> bool {
        use Sym::*;
        match *parents {
            [CrossRefIdorSnapshotData, SnapshotData] if sym == SnapshotCallResponseInfo => {
                self.0.push(SnapshotParty::default());
            }
            [
                CrossRefIdorSnapshotData,
                SnapshotData,
                SnapshotCallResponseInfo,
            ] => {
                if let Some(p) = self.0.last_mut() {
                    match sym {
                        CallIdentifier => p.connection = Some(super::Connection::default()),
                        DeviceOnCall => p.device = None,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
        sym != Other
    }

    fn leaf(&mut self, path: &[Sym], _: &'a [u8], v: Str<'a>) {
        use Sym::*;
        let [
            CrossRefIdorSnapshotData,
            SnapshotData,
            SnapshotCallResponseInfo,
            rest @ ..,
        ] = path
        else {
            return;
        };
        let Some(p) = self.0.last_mut() else {
            return;
        };
        match *rest {
            [CallIdentifier, c] => set_conn_field(&mut p.connection, c, v),
            [DeviceOnCall] => p.device = direct(v),
            [DeviceOnCall, c] => {
                if let Some(d) = choice(c, v) {
                    p.device = Some(d);
                }
            }
            [LocalConnectionInfo] => p.state = Some(v),
            _ => {}
        }
    }
}

#[derive(Default)]
struct DeviceListSink<'a>(DeviceList<'a>);

impl<'a> Sink<'a> for DeviceListSink<'a> {
    fn open(&mut self, parents: &[Sym], sym: Sym, _: &'a [u8]) -> bool {
        if let [Sym::DeviceList] = parents
            && sym == Sym::Device
        {
            self.0.devices.push(ListedDevice::default());
        }
        sym != Sym::Other
    }

    fn leaf(&mut self, path: &[Sym], _: &'a [u8], v: Str<'a>) {
        use Sym::*;
        let l = &mut self.0;
        match *path {
            [ServiceCrossRefId] => l.service_cross_ref = Some(v),
            [SegmentId] => l.segment_id = parse_u32(&v),
            [LastSegment] => l.last_segment = parse_bool(&v),
            [DeviceList, Device, c] => {
                if let Some(d) = l.devices.last_mut() {
                    match c {
                        DeviceId => d.id = Some(v),
                        DeviceCategory => d.category = Some(v),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
}

/// `GetCSTAFeaturesResponse`: the group and leaf names are open-ended, so this sink looks at local
/// names, not symbols.
#[derive(Default)]
struct FeaturesSink<'a> {
    services: Vec<Str<'a>>,
    events: Vec<Str<'a>>,
}

impl<'a> Sink<'a> for FeaturesSink<'a> {
    fn open(&mut self, parents: &[Sym], sym: Sym, _: &'a [u8]) -> bool {
        match parents {
            [] => matches!(sym, Sym::SupportedServices | Sym::SupportedEvents),
            [_] | [_, _] => true,
            _ => false,
        }
    }

    fn leaf(&mut self, path: &[Sym], qname: &'a [u8], v: Str<'a>) {
        if parse_bool(&v) != Some(true) {
            return;
        }
        let local = match qname.iter().position(|&c| c == b':') {
            Some(i) => &qname[i + 1..],
            None => qname,
        };
        // Names are cut at ASCII delimiters of a valid UTF-8 document.
        let local = std::str::from_utf8(local).unwrap_or_default();
        match path {
            [Sym::SupportedServices, _, _] => self.services.push(Cow::Borrowed(local)),
            [Sym::SupportedEvents, _, _] => self.events.push(Cow::Borrowed(local)),
            _ => {}
        }
    }
}

#[derive(Default)]
struct AgentStateSink<'a>(Vec<AgentStateEntry<'a>>);

impl<'a> Sink<'a> for AgentStateSink<'a> {
    fn open(&mut self, parents: &[Sym], sym: Sym, _: &'a [u8]) -> bool {
        use Sym::*;
        match *parents {
            [AgentStateList] if sym == AgentStateEntry => {
                self.0.push(super::AgentStateEntry::default());
            }
            [AgentStateList, AgentStateEntry] if sym == AgentInfo => {
                if let Some(a) = self.0.last_mut() {
                    a.info.push(super::AgentInfo::default());
                }
            }
            _ => {}
        }
        sym != Other
    }

    fn leaf(&mut self, path: &[Sym], _: &'a [u8], v: Str<'a>) {
        use Sym::*;
        let [AgentStateList, AgentStateEntry, rest @ ..] = path else {
            return;
        };
        let Some(a) = self.0.last_mut() else {
            return;
        };
        match *rest {
            [AgentId] => a.agent_id = Some(v),
            [LoggedOnState] => a.logged_on = parse_bool(&v),
            [AgentInfo, c] => {
                if let Some(i) = a.info.last_mut() {
                    match c {
                        AcdGroup => i.acd_group = Some(v),
                        AgentState => i.state = Some(v),
                        PendingAgentState => i.pending_state = Some(v),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
}

#[derive(Default)]
struct ForwardingSink<'a>(Vec<ForwardItem<'a>>);

impl<'a> Sink<'a> for ForwardingSink<'a> {
    fn open(&mut self, parents: &[Sym], sym: Sym, _: &'a [u8]) -> bool {
        if let [Sym::ForwardingList] = parents
            && sym == Sym::ForwardListItem
        {
            self.0.push(ForwardItem::default());
        }
        sym != Sym::Other
    }

    fn leaf(&mut self, path: &[Sym], _: &'a [u8], v: Str<'a>) {
        use Sym::*;
        if let [ForwardingList, ForwardListItem, c] = *path
            && let Some(f) = self.0.last_mut()
        {
            match c {
                ForwardingType => f.forwarding_type = Some(v),
                ForwardStatus => f.on = parse_bool(&v),
                ForwardDn => f.to = Some(v),
                _ => {}
            }
        }
    }
}

/// Element names the decoder acts on, matched by local name. Anything else is [`Sym::Other`] and
/// its subtree is skipped without looking at its names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Sym {
    Other,
    /// `monitorCrossRefID`
    MonitorCrossRefId,
    /// `callID`
    CallId,
    /// `deviceID`
    DeviceId,
    /// `deviceIdentifier`
    DeviceIdentifier,
    /// `numberDialed`
    NumberDialed,
    /// `notKnown`
    NotKnown,
    /// `restricted`
    Restricted,
    /// `notRequired`
    NotRequired,
    /// `notSpecified`
    NotSpecified,
    /// `localConnectionInfo`
    LocalConnectionInfo,
    /// `cause`
    Cause,
    /// `string`
    String,
    /// `correlatorData`
    CorrelatorData,
    /// `userData`
    UserData,
    /// `connection`
    Connection,
    /// `establishedConnection`
    EstablishedConnection,
    /// `droppedConnection`
    DroppedConnection,
    /// `heldConnection`
    HeldConnection,
    /// `retrievedConnection`
    RetrievedConnection,
    /// `initiatedConnection`
    InitiatedConnection,
    /// `originatedConnection`
    OriginatedConnection,
    /// `failedConnection`
    FailedConnection,
    /// `queuedConnection`
    QueuedConnection,
    /// `clearedCall`
    ClearedCall,
    /// `offeredConnection`
    OfferedConnection,
    /// `bridgedConnection`
    BridgedConnection,
    /// `outboundConnection`
    OutboundConnection,
    /// `dialingConnection`
    DialingConnection,
    /// `primaryOldCall`
    PrimaryOldCall,
    /// `secondaryOldCall`
    SecondaryOldCall,
    /// `originatingNIDConnection`
    OriginatingNidConnection,
    /// `originatinNIDConnection`
    OriginatinNidConnection,
    /// `alertingDevice`
    AlertingDevice,
    /// `answeringDevice`
    AnsweringDevice,
    /// `releasingDevice`
    ReleasingDevice,
    /// `holdingDevice`
    HoldingDevice,
    /// `retrievingDevice`
    RetrievingDevice,
    /// `initiatingDevice`
    InitiatingDevice,
    /// `transferringDevice`
    TransferringDevice,
    /// `conferencingDevice`
    ConferencingDevice,
    /// `divertingDevice`
    DivertingDevice,
    /// `failingDevice`
    FailingDevice,
    /// `queue`
    Queue,
    /// `agentDevice`
    AgentDevice,
    /// `device`
    Device,
    /// `offeredDevice`
    OfferedDevice,
    /// `bridgedAppearance`
    BridgedAppearance,
    /// `bridgingDevice`
    BridgingDevice,
    /// `dialingDevice`
    DialingDevice,
    /// `networkInterfaceUsed`
    NetworkInterfaceUsed,
    /// `chargedDevice`
    ChargedDevice,
    /// `callingDevice`
    CallingDevice,
    /// `calledDevice`
    CalledDevice,
    /// `lastRedirectionDevice`
    LastRedirectionDevice,
    /// `transferredToDevice`
    TransferredToDevice,
    /// `addedParty`
    AddedParty,
    /// `newDestination`
    NewDestination,
    /// `networkCallingDevice`
    NetworkCallingDevice,
    /// `networkCalledDevice`
    NetworkCalledDevice,
    /// `associatedCallingDevice`
    AssociatedCallingDevice,
    /// `associatedCalledDevice`
    AssociatedCalledDevice,
    /// `transferredConnections`
    TransferredConnections,
    /// `conferenceConnections`
    ConferenceConnections,
    /// `connectionListItem`
    ConnectionListItem,
    /// `newConnection`
    NewConnection,
    /// `agentID`
    AgentId,
    /// `acdGroup`
    AcdGroup,
    /// `pendingAgentState`
    PendingAgentState,
    /// `doNotDisturbOn`
    DoNotDisturbOn,
    /// `forwardingType`
    ForwardingType,
    /// `forwardStatus`
    ForwardStatus,
    /// `forwardTo`
    ForwardTo,
    /// `forwardDefault`
    ForwardDefault,
    /// `ringCount`
    RingCount,
    /// `numberQueued`
    NumberQueued,
    /// `callsInFront`
    CallsInFront,
    /// `originatingDevice`
    OriginatingDevice,
    /// `dialingSequence`
    DialingSequence,
    /// `digitGeneratedList`
    DigitGeneratedList,
    /// `toneGenerated`
    ToneGenerated,
    /// `accountInfo`
    AccountInfo,
    /// `chargingInfo`
    ChargingInfo,
    /// `numberUnits`
    NumberUnits,
    /// `numberOfChargeUnits`
    NumberOfChargeUnits,
    /// `chargingUnitsRecord`
    ChargingUnitsRecord,
    /// `chargingUnits`
    ChargingUnits,
    /// `typeOfUnits`
    TypeOfUnits,
    /// `numberOfCurrencyUnits`
    NumberOfCurrencyUnits,
    /// `currencyType`
    CurrencyType,
    /// `currencyAmount`
    CurrencyAmount,
    /// `currencyMultiplier`
    CurrencyMultiplier,
    /// `typeOfChargingInfo`
    TypeOfChargingInfo,
    /// `primaryCall`
    PrimaryCall,
    /// `secondaryCall`
    SecondaryCall,
    /// `connectionID`
    ConnectionId,
    /// `localConnectionState`
    LocalConnectionState,
    /// `systemStatus`
    SystemStatus,
    /// `sysStatRegisterID`
    SysStatRegisterId,
    /// `transferredCall`
    TransferredCall,
    /// `initiatedCall`
    InitiatedCall,
    /// `conferenceCall`
    ConferenceCall,
    /// `crossRefIDorSnapshotData`
    CrossRefIdorSnapshotData,
    /// `serviceCrossRefID`
    ServiceCrossRefId,
    /// `snapshotData`
    SnapshotData,
    /// `snapshotDeviceResponseInfo`
    SnapshotDeviceResponseInfo,
    /// `connectionIdentifier`
    ConnectionIdentifier,
    /// `endpointDevice`
    EndpointDevice,
    /// `localCallState`
    LocalCallState,
    /// `compoundCallState`
    CompoundCallState,
    /// `simpleCallState`
    SimpleCallState,
    /// `snapshotCallResponseInfo`
    SnapshotCallResponseInfo,
    /// `deviceOnCall`
    DeviceOnCall,
    /// `callIdentifier`
    CallIdentifier,
    /// `segmentID`
    SegmentId,
    /// `lastSegment`
    LastSegment,
    /// `deviceList`
    DeviceList,
    /// `deviceCategory`
    DeviceCategory,
    /// `supportedServices`
    SupportedServices,
    /// `supportedEvents`
    SupportedEvents,
    /// `agentStateList`
    AgentStateList,
    /// `agentStateEntry`
    AgentStateEntry,
    /// `loggedOnState`
    LoggedOnState,
    /// `agentInfo`
    AgentInfo,
    /// `agentState`
    AgentState,
    /// `forwardingList`
    ForwardingList,
    /// `forwardListItem`
    ForwardListItem,
    /// `forwardDN`
    ForwardDn,
    /// `sessionID`
    SessionId,
    /// `actualProtocolVersion`
    ActualProtocolVersion,
    /// `actualSessionDuration`
    ActualSessionDuration,
    /// `errorCode`
    ErrorCode,
}

/// The symbol of the local name `b[start..end]` (`b` is the whole document, so the words around
/// a short name can be loaded in one go and masked).
///
/// A perfect hash of the first and last eight bytes and the length picks the one candidate, which
/// is then compared word by word with its [`Key`]; about twenty instructions whatever the name.
#[inline(always)]
fn sym_at(b: &[u8], start: usize, end: usize) -> Sym {
    let Some(name) = b.get(start..end) else {
        return Sym::Other;
    };
    let len = name.len();
    let (w0, wl) = if len >= 8 {
        (word(name, 0).unwrap_or(0), word(name, len - 8).unwrap_or(0))
    } else {
        let w = match word(b, start) {
            Some(w) => w & ((1u64 << (8 * len)) - 1),
            None => name
                .iter()
                .rev()
                .fold(0u64, |acc, &c| (acc << 8) | u64::from(c)),
        };
        (w, w)
    };
    let h = (w0.wrapping_mul(HASH_A) ^ wl.wrapping_mul(HASH_B) ^ (len as u64).wrapping_mul(HASH_C))
        >> (64 - HASH_BITS);
    let index = usize::from(SLOTS[h as usize]);
    let (Some(k), Some((_, sym))) = (KEYS.get(index), NAMES.get(index)) else {
        return Sym::Other;
    };
    // The first and last words cover names of up to 16 bytes; longer ones (at most 26, see
    // `KEYS`) also need the words at 8 and 16.
    let hit = k.len == len
        && k.w0 == w0
        && k.wl == wl
        && (len <= 16 || word(name, 8) == Some(k.w8))
        && (len <= 24 || word(name, 16) == Some(k.w16));
    if hit { *sym } else { Sym::Other }
}

/// A name of [`NAMES`] as [`sym_at`] loads it: the words at 0, 8, 16 and `len - 8` (for a name
/// shorter than eight bytes, `w0` and `wl` are its bytes, zero-extended), and its length.
struct Key {
    w0: u64,
    w8: u64,
    w16: u64,
    wl: u64,
    len: usize,
}

/// The `n` (at most 8) bytes of `name` at `at`, little-endian, zero-extended.
const fn load(name: &[u8], at: usize, n: usize) -> u64 {
    let mut w = 0u64;
    let mut k = n;
    while k > 0 {
        k -= 1;
        w = (w << 8) | name[at + k] as u64;
    }
    w
}

/// [`Key`]s by symbol, in the order of [`NAMES`].
const KEYS: [Key; NAMES.len()] = {
    let mut keys = [const {
        Key {
            w0: 0,
            w8: 0,
            w16: 0,
            wl: 0,
            len: 0,
        }
    }; NAMES.len()];
    let mut i = 0;
    while i < NAMES.len() {
        let name = NAMES[i].0;
        let len = name.len();
        // Three words and the last one cover every name we have.
        assert!(len <= 32);
        let (w0, wl) = if len < 8 {
            let w = load(name, 0, len);
            (w, w)
        } else {
            (load(name, 0, 8), load(name, len - 8, 8))
        };
        keys[i] = Key {
            w0,
            w8: if len > 16 { load(name, 8, 8) } else { 0 },
            w16: if len > 24 { load(name, 16, 8) } else { 0 },
            wl,
            len,
        };
        i += 1;
    }
    keys
};

/// The symbol of a local name.
#[cfg(test)]
fn sym(name: &[u8]) -> Sym {
    sym_at(name, 0, name.len())
}

/// Multipliers of the symbol hash, found by search so that the 131 names land in distinct slots.
const HASH_A: u64 = 0x31e7aed141cbcc3b;
const HASH_B: u64 = 0x10170d2bbf4e302d;
const HASH_C: u64 = 0x9b09ab55e6077d79;
/// log2 of the slot count.
const HASH_BITS: u32 = 11;

/// The names by symbol (index 0 is [`Sym::Other`], which has none).
const NAMES: [(&[u8], Sym); 132] = [
    (b"", Sym::Other),
    (b"monitorCrossRefID", Sym::MonitorCrossRefId),
    (b"callID", Sym::CallId),
    (b"deviceID", Sym::DeviceId),
    (b"deviceIdentifier", Sym::DeviceIdentifier),
    (b"numberDialed", Sym::NumberDialed),
    (b"notKnown", Sym::NotKnown),
    (b"restricted", Sym::Restricted),
    (b"notRequired", Sym::NotRequired),
    (b"notSpecified", Sym::NotSpecified),
    (b"localConnectionInfo", Sym::LocalConnectionInfo),
    (b"cause", Sym::Cause),
    (b"string", Sym::String),
    (b"correlatorData", Sym::CorrelatorData),
    (b"userData", Sym::UserData),
    (b"connection", Sym::Connection),
    (b"establishedConnection", Sym::EstablishedConnection),
    (b"droppedConnection", Sym::DroppedConnection),
    (b"heldConnection", Sym::HeldConnection),
    (b"retrievedConnection", Sym::RetrievedConnection),
    (b"initiatedConnection", Sym::InitiatedConnection),
    (b"originatedConnection", Sym::OriginatedConnection),
    (b"failedConnection", Sym::FailedConnection),
    (b"queuedConnection", Sym::QueuedConnection),
    (b"clearedCall", Sym::ClearedCall),
    (b"offeredConnection", Sym::OfferedConnection),
    (b"bridgedConnection", Sym::BridgedConnection),
    (b"outboundConnection", Sym::OutboundConnection),
    (b"dialingConnection", Sym::DialingConnection),
    (b"primaryOldCall", Sym::PrimaryOldCall),
    (b"secondaryOldCall", Sym::SecondaryOldCall),
    (b"originatingNIDConnection", Sym::OriginatingNidConnection),
    (b"originatinNIDConnection", Sym::OriginatinNidConnection),
    (b"alertingDevice", Sym::AlertingDevice),
    (b"answeringDevice", Sym::AnsweringDevice),
    (b"releasingDevice", Sym::ReleasingDevice),
    (b"holdingDevice", Sym::HoldingDevice),
    (b"retrievingDevice", Sym::RetrievingDevice),
    (b"initiatingDevice", Sym::InitiatingDevice),
    (b"transferringDevice", Sym::TransferringDevice),
    (b"conferencingDevice", Sym::ConferencingDevice),
    (b"divertingDevice", Sym::DivertingDevice),
    (b"failingDevice", Sym::FailingDevice),
    (b"queue", Sym::Queue),
    (b"agentDevice", Sym::AgentDevice),
    (b"device", Sym::Device),
    (b"offeredDevice", Sym::OfferedDevice),
    (b"bridgedAppearance", Sym::BridgedAppearance),
    (b"bridgingDevice", Sym::BridgingDevice),
    (b"dialingDevice", Sym::DialingDevice),
    (b"networkInterfaceUsed", Sym::NetworkInterfaceUsed),
    (b"chargedDevice", Sym::ChargedDevice),
    (b"callingDevice", Sym::CallingDevice),
    (b"calledDevice", Sym::CalledDevice),
    (b"lastRedirectionDevice", Sym::LastRedirectionDevice),
    (b"transferredToDevice", Sym::TransferredToDevice),
    (b"addedParty", Sym::AddedParty),
    (b"newDestination", Sym::NewDestination),
    (b"networkCallingDevice", Sym::NetworkCallingDevice),
    (b"networkCalledDevice", Sym::NetworkCalledDevice),
    (b"associatedCallingDevice", Sym::AssociatedCallingDevice),
    (b"associatedCalledDevice", Sym::AssociatedCalledDevice),
    (b"transferredConnections", Sym::TransferredConnections),
    (b"conferenceConnections", Sym::ConferenceConnections),
    (b"connectionListItem", Sym::ConnectionListItem),
    (b"newConnection", Sym::NewConnection),
    (b"agentID", Sym::AgentId),
    (b"acdGroup", Sym::AcdGroup),
    (b"pendingAgentState", Sym::PendingAgentState),
    (b"doNotDisturbOn", Sym::DoNotDisturbOn),
    (b"forwardingType", Sym::ForwardingType),
    (b"forwardStatus", Sym::ForwardStatus),
    (b"forwardTo", Sym::ForwardTo),
    (b"forwardDefault", Sym::ForwardDefault),
    (b"ringCount", Sym::RingCount),
    (b"numberQueued", Sym::NumberQueued),
    (b"callsInFront", Sym::CallsInFront),
    (b"originatingDevice", Sym::OriginatingDevice),
    (b"dialingSequence", Sym::DialingSequence),
    (b"digitGeneratedList", Sym::DigitGeneratedList),
    (b"toneGenerated", Sym::ToneGenerated),
    (b"accountInfo", Sym::AccountInfo),
    (b"chargingInfo", Sym::ChargingInfo),
    (b"numberUnits", Sym::NumberUnits),
    (b"numberOfChargeUnits", Sym::NumberOfChargeUnits),
    (b"chargingUnitsRecord", Sym::ChargingUnitsRecord),
    (b"chargingUnits", Sym::ChargingUnits),
    (b"typeOfUnits", Sym::TypeOfUnits),
    (b"numberOfCurrencyUnits", Sym::NumberOfCurrencyUnits),
    (b"currencyType", Sym::CurrencyType),
    (b"currencyAmount", Sym::CurrencyAmount),
    (b"currencyMultiplier", Sym::CurrencyMultiplier),
    (b"typeOfChargingInfo", Sym::TypeOfChargingInfo),
    (b"primaryCall", Sym::PrimaryCall),
    (b"secondaryCall", Sym::SecondaryCall),
    (b"connectionID", Sym::ConnectionId),
    (b"localConnectionState", Sym::LocalConnectionState),
    (b"systemStatus", Sym::SystemStatus),
    (b"sysStatRegisterID", Sym::SysStatRegisterId),
    (b"transferredCall", Sym::TransferredCall),
    (b"initiatedCall", Sym::InitiatedCall),
    (b"conferenceCall", Sym::ConferenceCall),
    (b"crossRefIDorSnapshotData", Sym::CrossRefIdorSnapshotData),
    (b"serviceCrossRefID", Sym::ServiceCrossRefId),
    (b"snapshotData", Sym::SnapshotData),
    (
        b"snapshotDeviceResponseInfo",
        Sym::SnapshotDeviceResponseInfo,
    ),
    (b"connectionIdentifier", Sym::ConnectionIdentifier),
    (b"endpointDevice", Sym::EndpointDevice),
    (b"localCallState", Sym::LocalCallState),
    (b"compoundCallState", Sym::CompoundCallState),
    (b"simpleCallState", Sym::SimpleCallState),
    (b"snapshotCallResponseInfo", Sym::SnapshotCallResponseInfo),
    (b"deviceOnCall", Sym::DeviceOnCall),
    (b"callIdentifier", Sym::CallIdentifier),
    (b"segmentID", Sym::SegmentId),
    (b"lastSegment", Sym::LastSegment),
    (b"deviceList", Sym::DeviceList),
    (b"deviceCategory", Sym::DeviceCategory),
    (b"supportedServices", Sym::SupportedServices),
    (b"supportedEvents", Sym::SupportedEvents),
    (b"agentStateList", Sym::AgentStateList),
    (b"agentStateEntry", Sym::AgentStateEntry),
    (b"loggedOnState", Sym::LoggedOnState),
    (b"agentInfo", Sym::AgentInfo),
    (b"agentState", Sym::AgentState),
    (b"forwardingList", Sym::ForwardingList),
    (b"forwardListItem", Sym::ForwardListItem),
    (b"forwardDN", Sym::ForwardDn),
    (b"sessionID", Sym::SessionId),
    (b"actualProtocolVersion", Sym::ActualProtocolVersion),
    (b"actualSessionDuration", Sym::ActualSessionDuration),
    (b"errorCode", Sym::ErrorCode),
];

/// Slot → index into [`NAMES`] (0: no name hashes there).
const SLOTS: [u8; 1 << HASH_BITS] = {
    let mut t = [0u8; 1 << HASH_BITS];
    t[1] = 31;
    t[19] = 101;
    t[30] = 47;
    t[32] = 111;
    t[39] = 110;
    t[48] = 122;
    t[68] = 35;
    t[73] = 109;
    t[74] = 6;
    t[169] = 107;
    t[206] = 22;
    t[208] = 73;
    t[225] = 9;
    t[234] = 29;
    t[238] = 86;
    t[252] = 60;
    t[260] = 3;
    t[331] = 82;
    t[334] = 99;
    t[335] = 66;
    t[336] = 98;
    t[371] = 103;
    t[373] = 96;
    t[393] = 46;
    t[397] = 43;
    t[400] = 105;
    t[420] = 65;
    t[432] = 24;
    t[450] = 121;
    t[468] = 90;
    t[477] = 49;
    t[520] = 4;
    t[563] = 23;
    t[566] = 42;
    t[580] = 117;
    t[593] = 51;
    t[599] = 119;
    t[614] = 130;
    t[621] = 89;
    t[626] = 18;
    t[627] = 88;
    t[671] = 104;
    t[678] = 59;
    t[700] = 54;
    t[715] = 38;
    t[750] = 33;
    t[754] = 27;
    t[755] = 30;
    t[760] = 5;
    t[768] = 63;
    t[769] = 95;
    t[796] = 78;
    t[808] = 32;
    t[814] = 115;
    t[838] = 50;
    t[862] = 67;
    t[873] = 69;
    t[913] = 76;
    t[916] = 26;
    t[961] = 118;
    t[991] = 126;
    t[1003] = 57;
    t[1030] = 125;
    t[1108] = 61;
    t[1143] = 124;
    t[1153] = 113;
    t[1160] = 40;
    t[1178] = 120;
    t[1184] = 21;
    t[1211] = 28;
    t[1224] = 34;
    t[1235] = 100;
    t[1241] = 129;
    t[1245] = 114;
    t[1285] = 55;
    t[1298] = 74;
    t[1304] = 13;
    t[1338] = 123;
    t[1345] = 48;
    t[1355] = 81;
    t[1370] = 15;
    t[1383] = 79;
    t[1435] = 45;
    t[1443] = 64;
    t[1471] = 25;
    t[1497] = 71;
    t[1517] = 19;
    t[1523] = 77;
    t[1576] = 127;
    t[1578] = 72;
    t[1600] = 52;
    t[1603] = 108;
    t[1608] = 68;
    t[1622] = 102;
    t[1652] = 17;
    t[1658] = 53;
    t[1660] = 14;
    t[1670] = 106;
    t[1692] = 44;
    t[1704] = 36;
    t[1719] = 97;
    t[1747] = 56;
    t[1769] = 8;
    t[1777] = 12;
    t[1784] = 80;
    t[1801] = 7;
    t[1808] = 83;
    t[1811] = 112;
    t[1812] = 91;
    t[1821] = 58;
    t[1836] = 37;
    t[1847] = 84;
    t[1860] = 1;
    t[1874] = 16;
    t[1878] = 70;
    t[1881] = 2;
    t[1889] = 116;
    t[1895] = 11;
    t[1896] = 41;
    t[1901] = 62;
    t[1903] = 85;
    t[1957] = 131;
    t[1966] = 128;
    t[1970] = 87;
    t[1985] = 92;
    t[1994] = 20;
    t[1997] = 39;
    t[2022] = 94;
    t[2025] = 10;
    t[2032] = 93;
    t[2043] = 75;
    t
};

#[cfg(test)]
mod tests {
    use super::*;

    const ED4: &str = "http://www.ecma-international.org/standards/ecma-323/csta/ed4";

    fn event(doc: &str) -> Event<'_> {
        match decode(doc.as_bytes()).unwrap().message {
            Message::Event(e) => *e,
            other => panic!("not an event: {other:?}"),
        }
    }

    #[test]
    fn osv_service_initiated() {
        let doc = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><ServiceInitiatedEvent xmlns="{ED4}"><monitorCrossRefID>1169730059</monitorCrossRefID><initiatedConnection><callID>FF000100000000002D65C85C1C750000</callID><deviceID>302118840100</deviceID></initiatedConnection><initiatingDevice><deviceIdentifier>N&lt;302118840100&gt;;noa=nk</deviceIdentifier></initiatingDevice><localConnectionInfo>initiated</localConnectionInfo><cause>makeCall</cause></ServiceInitiatedEvent>"#
        );
        let d = decode(doc.as_bytes()).unwrap();
        assert_eq!(d.name, "ServiceInitiatedEvent");
        assert_eq!(d.namespace.as_deref(), Some(ED4));
        let Message::Event(e) = d.message else {
            panic!()
        };
        assert_eq!(e.kind, EventKind::ServiceInitiated);
        assert_eq!(e.cross_ref.as_deref(), Some("1169730059"));
        let c = e.connection.unwrap();
        assert_eq!(
            c.call_id.as_deref(),
            Some("FF000100000000002D65C85C1C750000")
        );
        assert!(matches!(c.call_id, Some(Cow::Borrowed(_))));
        assert_eq!(c.device_id.as_deref(), Some("302118840100"));
        assert_eq!(
            e.subject,
            Some(Device::Id(Cow::Borrowed("N<302118840100>;noa=nk")))
        );
        assert_eq!(e.local_state.as_deref(), Some("initiated"));
        assert_eq!(e.cause.as_deref(), Some("makeCall"));
    }

    #[test]
    fn prefixed_pretty_printed_delivered_with_restricted_caller() {
        let doc = r#"<csta:DeliveredEvent xmlns:csta="http://www.ecma.ch/standards/ecma-323/csta/ed2">
            <csta:monitorCrossRefID> 43 </csta:monitorCrossRefID>
            <csta:connection><csta:callID>-12</csta:callID><csta:deviceID>sip:455@x</csta:deviceID></csta:connection>
            <csta:alertingDevice><csta:deviceIdentifier>sip:455@x</csta:deviceIdentifier></csta:alertingDevice>
            <csta:callingDevice><csta:restricted/></csta:callingDevice>
            <csta:calledDevice><csta:deviceIdentifier><![CDATA[455]]></csta:deviceIdentifier></csta:calledDevice>
            <csta:lastRedirectionDevice><csta:notRequired/></csta:lastRedirectionDevice>
            <!-- a comment -->
            <csta:localConnectionInfo>alerting</csta:localConnectionInfo>
            <csta:cause>newCall</csta:cause>
            <vendor:extra xmlns:vendor="urn:x"><vendor:deep><vendor:deeper>1</vendor:deeper></vendor:deep></vendor:extra>
        </csta:DeliveredEvent>"#;
        let d = decode(doc.as_bytes()).unwrap();
        assert_eq!(
            d.namespace.as_deref(),
            Some("http://www.ecma.ch/standards/ecma-323/csta/ed2")
        );
        let e = event(doc);
        assert_eq!(e.kind, EventKind::Delivered);
        assert_eq!(e.cross_ref.as_deref(), Some("43"));
        assert_eq!(e.calling, Some(Device::Restricted));
        assert_eq!(e.called, Some(Device::Id("455".into())));
        assert_eq!(e.last_redirection, Some(Device::NotRequired));
        assert_eq!(e.local_state.as_deref(), Some("alerting"));
    }

    #[test]
    fn transfered_misspelling_and_connection_list() {
        let e = event(
            "<TransferedEvent><monitorCrossRefID>7</monitorCrossRefID>\
             <primaryOldCall><callID>1</callID><deviceID>100</deviceID></primaryOldCall>\
             <secondaryOldCall><callID>2</callID><deviceID>100</deviceID></secondaryOldCall>\
             <transferringDevice><deviceIdentifier>100</deviceIdentifier></transferringDevice>\
             <transferredToDevice><deviceIdentifier>200</deviceIdentifier></transferredToDevice>\
             <transferredConnections><connectionListItem><newConnection><callID>3</callID><deviceID>200</deviceID></newConnection>\
             <oldConnection><callID>1</callID><deviceID>300</deviceID></oldConnection></connectionListItem></transferredConnections>\
             <cause>transfer</cause></TransferedEvent>",
        );
        assert_eq!(e.kind, EventKind::Transferred);
        assert_eq!(e.old_call.unwrap().call_id.as_deref(), Some("1"));
        assert_eq!(e.secondary_old_call.unwrap().call_id.as_deref(), Some("2"));
        assert_eq!(e.target, Some(Device::Id("200".into())));
        assert_eq!(e.new_connections.len(), 1);
        assert_eq!(e.new_connections[0].call_id.as_deref(), Some("3"));
    }

    #[test]
    fn responses_and_errors() {
        let d = decode(b"<MonitorStartResponse xmlns='urn:x'><monitorCrossRefID>99fda87c</monitorCrossRefID><monitorExistingCalls>true</monitorExistingCalls></MonitorStartResponse>").unwrap();
        assert_eq!(
            d.message,
            Message::Response(Response::MonitorStart {
                cross_ref: Some("99fda87c".into())
            })
        );
        // Values are trimmed of XML whitespace only, at either end, whatever their length.
        for (text, value) in [
            ("7", "7"),
            (" 7", "7"),
            ("7\n", "7"),
            ("\t 7 \r\n", "7"),
            (" ", ""),
            ("", ""),
            ("\u{a0}7", "\u{a0}7"),
            ("a b", "a b"),
        ] {
            let doc = format!(
                "<MonitorStartResponse><monitorCrossRefID>{text}</monitorCrossRefID></MonitorStartResponse>"
            );
            let d = decode(doc.as_bytes()).unwrap();
            assert_eq!(
                d.message,
                Message::Response(Response::MonitorStart {
                    cross_ref: Some(value.into())
                }),
                "{text:?}"
            );
        }
        let d = decode(b"<MakeCallResponse><callingDevice><callID>0_99f261b4</callID><deviceID>tel:73124</deviceID></callingDevice></MakeCallResponse>").unwrap();
        let Message::Response(Response::MakeCall { call }) = d.message else {
            panic!()
        };
        assert_eq!(call.call_id.as_deref(), Some("0_99f261b4"));
        let d = decode(b"<CSTAErrorCode><systemResourceAvailibility>resourceBusy</systemResourceAvailibility></CSTAErrorCode>").unwrap();
        assert_eq!(
            d.message,
            Message::Error(CstaError {
                category: "systemResourceAvailibility".into(),
                value: "resourceBusy".into()
            })
        );
        let d =
            decode(b"<SystemStatus><systemStatus>enabled</systemStatus></SystemStatus>").unwrap();
        assert_eq!(
            d.message,
            Message::SystemStatus {
                status: Some("enabled".into())
            }
        );
        let d = decode(b"<MonitorStopResponse/>").unwrap();
        assert_eq!(d.message, Message::Response(Response::Ack));
        let d = decode(b"<SomethingNew><a>1</a></SomethingNew>").unwrap();
        assert_eq!(d.message, Message::Unknown);
        let d = decode(
            b"<ButtonPressEvent><monitorCrossRefID>1</monitorCrossRefID></ButtonPressEvent>",
        )
        .unwrap();
        assert!(matches!(
            d.message,
            Message::Event(e) if e.kind == EventKind::Other
        ));
    }

    #[test]
    fn snapshot_device_response() {
        let d = decode(b"<SnapshotDeviceResponse><crossRefIDorSnapshotData><snapshotData>\
            <snapshotDeviceResponseInfo><connectionIdentifier><callID>1</callID><deviceID>100</deviceID></connectionIdentifier>\
            <localCallState><compoundCallState><localConnectionState>connected</localConnectionState></compoundCallState></localCallState></snapshotDeviceResponseInfo>\
            <snapshotDeviceResponseInfo><connectionIdentifier><callID>2</callID></connectionIdentifier>\
            <localCallState><simpleCallState>callDelivered</simpleCallState></localCallState></snapshotDeviceResponseInfo>\
            </snapshotData></crossRefIDorSnapshotData></SnapshotDeviceResponse>").unwrap();
        let Message::Response(Response::SnapshotDevice { calls, .. }) = d.message else {
            panic!()
        };
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].connection.call_id.as_deref(), Some("1"));
        assert_eq!(calls[0].states, vec!["connected"]);
        assert_eq!(calls[1].states, vec!["callDelivered"]);
    }

    #[test]
    fn latin1_is_transcoded() {
        let mut doc = b"<?xml version='1.0' encoding='ISO-8859-1'?><DoNotDisturbEvent><monitorCrossRefID>1</monitorCrossRefID><device><deviceIdentifier>M\xFCller</deviceIdentifier></device><doNotDisturbOn>true</doNotDisturbOn></DoNotDisturbEvent>".to_vec();
        let Message::Event(e) = decode(&doc).unwrap().message else {
            panic!()
        };
        assert_eq!(e.subject, Some(Device::Id("Müller".into())));
        assert_eq!(e.do_not_disturb, Some(true));
        // Without the declaration the same bytes are not UTF-8.
        doc.drain(..44);
        assert_eq!(decode(&doc), Err(XmlError::InvalidUtf8));
    }

    #[test]
    fn malformed_documents_are_typed_errors() {
        assert_eq!(decode(b"not xml at all").unwrap_err(), XmlError::NoRoot);
        assert_eq!(decode(b"").unwrap_err(), XmlError::NoRoot);
        assert_eq!(
            decode(b"<DeliveredEvent><monitorCrossRefID>1</monitorCr").unwrap_err(),
            XmlError::Truncated
        );
        assert_eq!(
            decode(b"<DeliveredEvent><monitorCrossRefID>1</monitorCrossRefID>").unwrap_err(),
            XmlError::Truncated
        );
        assert!(matches!(
            decode(b"<a><b></a></b>").unwrap_err(),
            XmlError::Mismatch { .. }
        ));
        assert_eq!(
            decode(b"<!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>").unwrap_err(),
            XmlError::Doctype
        );
        assert_eq!(decode(b"<a/><b/>").unwrap_err(), XmlError::TrailingContent);
        assert_eq!(
            decode(b"<a>&nope;</a>").unwrap_err().kind(),
            "bad_reference"
        );
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert_eq!(decode(deep.as_bytes()).unwrap_err(), XmlError::TooDeep);
        let ok = "<a>".repeat(MAX_DEPTH) + &"</a>".repeat(MAX_DEPTH);
        assert!(decode(ok.as_bytes()).is_ok());
        assert!(matches!(
            decode(b"<?xml version='1.0' encoding='UTF-16'?><a/>").unwrap_err(),
            XmlError::UnsupportedEncoding(_)
        ));
    }

    #[test]
    fn every_symbol_hashes_to_itself() {
        for (name, sym_of) in NAMES.iter().skip(1) {
            assert_eq!(sym(name), *sym_of, "{}", String::from_utf8_lossy(name));
            // Inside a longer document too (short names are loaded with what follows them).
            let mut doc = name.to_vec();
            doc.extend_from_slice(b">rest of the document");
            assert_eq!(sym_at(&doc, 0, name.len()), *sym_of);
            // Near misses are not symbols.
            let mut other = name.to_vec();
            let last = other.len() - 1;
            other[last] ^= 0x20;
            assert_eq!(sym(&other), Sym::Other);
            assert_eq!(sym(&name[..last]), Sym::Other);
            // A difference anywhere is seen, whichever word covers it.
            for at in 0..name.len() {
                let mut other = name.to_vec();
                other[at] ^= 0x01;
                assert_eq!(sym(&other), Sym::Other, "{at}");
                other.extend_from_slice(b" x='1'>");
                assert_eq!(sym_at(&other, 0, name.len()), Sym::Other, "{at}");
            }
        }
        for other in [
            &b"x"[..],
            b"extensions",
            b"privateData",
            b"servicesPermitted",
            b"",
        ] {
            assert_eq!(sym(other), Sym::Other);
        }
    }

    #[test]
    fn root_attributes_are_checked() {
        let names = |a: &str| {
            let mut v = Vec::new();
            root_attributes(a, |n, _, _| v.push(n.to_owned())).map(|()| v)
        };
        assert_eq!(
            names(r#" a="x b=1" b='2'  c = "3" "#).unwrap(),
            ["a", "b", "c"]
        );
        assert!(names(r#" a="1" a="2""#).is_err());
        assert!(names(r#" a="1"b="2""#).is_err());
        assert!(names(r#" a"#).is_err());
        assert!(names(r#" a=1"#).is_err());
        assert!(names(r#" a="<""#).is_err());
        assert!(names(r#" ="1""#).is_err());
        assert_eq!(names("").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn non_ascii_documents_are_validated_in_full() {
        let ok = "<a>Müller €</a>";
        assert!(decode(ok.as_bytes()).is_ok());
        for bad in [
            &b"<a>\xff</a>"[..],
            b"<a>\xc3</a>",
            b"<abcdefghijklmnopqrstuvwxyz0123456789>\xed\xa0\x80</abcdefghijklmnopqrstuvwxyz0123456789>",
        ] {
            assert_eq!(decode(bad), Err(XmlError::InvalidUtf8));
        }
        assert!(super::super::scan::is_ascii(&[b'a'; 100]));
        for at in 0..100 {
            let mut b = [b'a'; 100];
            b[at] = 0x80;
            assert!(!super::super::scan::is_ascii(&b), "{at}");
        }
    }

    #[test]
    fn xml_declarations() {
        let enc = declared_encoding;
        assert_eq!(
            enc(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?><a/>"),
            Some((Some("UTF-8"), 38))
        );
        let d = b"<?xml version='1.0' encoding = 'ISO-8859-1' standalone='yes' ?>";
        assert_eq!(enc(d), Some((Some("ISO-8859-1"), d.len())));
        assert_eq!(enc(b"<?xml version=\"1.0\"?>"), Some((None, 21)));
        // Not a declaration we read: `decode` refuses the document (a processing instruction
        // whose target merely starts with `xml` is another matter).
        assert_eq!(enc(b"<?xml version=1.0?>"), None);
        for bad in [
            &b"<?xml version=1.0?><a/>"[..],
            b"<?xml 6ersion=\"1.0\" encoding=\"ISO-8859-1\"?><a/>",
            b"<?xml version=\"1.0\"",
        ] {
            assert!(
                matches!(decode(bad), Err(XmlError::Syntax { at: 0, .. })),
                "{bad:?}"
            );
        }
        assert!(decode(b"<?xml-stylesheet href='a'?><a/>").is_ok());
        assert_eq!(enc(b"<?xml-stylesheet href='a'?>"), None);
        assert_eq!(enc(b"<?xml version=\"1.0\""), None);
        assert_eq!(enc(b"<a/>"), None);
        // The usual declaration, read without parsing, means what the parser says it means.
        assert_eq!(
            enc(COMMON_DECL).and_then(|(e, end)| Some((Encoding::of(e?).ok()?, end))),
            Some((Encoding::Utf8, COMMON_DECL.len()))
        );
        let doc = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><a xmlns='urn:x'/>";
        let d = decode(doc.as_bytes()).unwrap();
        assert_eq!(
            (d.name.as_ref(), d.namespace.as_deref()),
            ("a", Some("urn:x"))
        );
        // Namespace values that need normalizing still get it.
        let d = decode(b"<a xmlns='urn:&amp;\tx'/>").unwrap();
        assert_eq!(d.namespace.as_deref(), Some("urn:& x"));
        let d = decode(b"<a xmlns=''/>").unwrap();
        assert_eq!(d.namespace, None);
        // The usual root (`<Root xmlns="…">`, read directly) and its near forms (read by the
        // general attribute loop) agree.
        let ns = |doc: &str| {
            decode(doc.as_bytes())
                .map(|d| d.namespace.map(|n| n.into_owned()))
                .map_err(|e| e.kind())
        };
        for (doc, want) in [
            ("<a xmlns=\"urn:x\"></a>", Ok(Some("urn:x"))),
            ("<a xmlns=\"urn:x\" ></a>", Ok(Some("urn:x"))),
            ("<a xmlns=\"urn:x\"/>", Ok(Some("urn:x"))),
            ("<a xmlns=\"urn:&amp;\tx\"></a>", Ok(Some("urn:& x"))),
            ("<a xmlns=\"\"></a>", Ok(None)),
            (
                "<p:a xmlns=\"urn:x\" xmlns:p=\"urn:p\"></p:a>",
                Ok(Some("urn:p")),
            ),
            ("<p:a xmlns=\"urn:x\"></p:a>", Ok(None)),
            ("<a xmlns=\"urn:x\" xmlns=\"urn:y\"></a>", Err("syntax")),
            ("<a xmlns=\"urn:<x\"></a>", Err("syntax")),
            ("<a xmlns=\"urn:x\"x='1'></a>", Err("syntax")),
        ] {
            assert_eq!(ns(doc), want.map(|n| n.map(str::to_owned)), "{doc}");
        }
    }
}
