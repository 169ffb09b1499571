//! One byte stream (a raw file, a hex dump, or one direction of a TCP connection) into frames,
//! decoded messages and normalized events.
//!
//! The stream arrives as [`Delivery`]s: in-order data, gaps, and ends. Framing is the codec's own
//! [`Deframer`] (or the bare-document [`Splitter`]); this module adds what a capture needs on top:
//! stream offsets for every frame and error, one report per run of resynchronisation instead of
//! one per attempt, and restarting the framer after a gap.

use super::bare::{self, Splitter};
use super::output::{Emitter, ErrorInfo, FrameRef, Place};
use super::tcp::Delivery;
use crate::codec::framing::{Deframer, FrameError, HEADER_LEN, InvokeId};
use crate::codec::xml::{self, Message, Response};
use crate::link::csta_xml::normalize;
use crate::model::Text;
use bytes::Bytes;
use std::collections::HashMap;
use std::io::Write;
use std::time::Instant;

/// Bytes handed to the framer at once, so its buffer stays near one frame even when reassembly
/// releases megabytes of held data in one go.
const PUSH_CHUNK: usize = 64 * 1024;
/// Entries kept per connection for MonitorStart correlation (pending requests, and cross
/// references learned).
const MAX_MONITORS: usize = 10_000;
/// Longest device id or cross reference remembered: real ones are a few dozen bytes, and a
/// capture must not make this table hold megabytes per entry.
const MAX_MONITOR_TEXT: usize = 128;

/// What MonitorStart requests and responses in one connection taught us: which device each
/// `monitorCrossRefID` stands for. Requests go one way and responses the other, so this is shared
/// by both directions of a connection.
#[derive(Debug, Default)]
pub struct Monitors {
    /// (side that sent the request, invoke id) → monitored device.
    pending: HashMap<(u8, u16), String>,
    /// Cross-reference id → device.
    cross: HashMap<String, String>,
}

impl Monitors {
    fn request(&mut self, side: u8, invoke: InvokeId, device: String) {
        if device.len() <= MAX_MONITOR_TEXT && self.pending.len() < MAX_MONITORS {
            self.pending.insert((side, invoke.0), device);
        }
    }

    fn response(&mut self, side: u8, invoke: InvokeId, cross_ref: Option<&str>) {
        // The request came from the other side; in a single stream (raw, hex) from the same one.
        let device = self
            .pending
            .remove(&(side ^ 1, invoke.0))
            .or_else(|| self.pending.remove(&(side, invoke.0)));
        if let (Some(device), Some(x)) = (device, cross_ref)
            && x.len() <= MAX_MONITOR_TEXT
            && (self.cross.len() < MAX_MONITORS || self.cross.contains_key(x))
        {
            self.cross.insert(x.to_string(), device);
        }
    }

    fn device(&self, cross_ref: &str) -> Option<&str> {
        self.cross.get(cross_ref).map(String::as_str)
    }
}

/// What a stream decoder writes to and learns from.
pub struct Cx<'a, W: Write> {
    /// Output.
    pub out: &'a mut Emitter<W>,
    /// Flow label and packet time.
    pub place: Place<'a>,
    /// The connection's MonitorStart knowledge.
    pub monitors: &'a mut Monitors,
    /// Which side of the connection sends this stream (0 or 1).
    pub side: u8,
    /// Layer name for gap errors (`tcp` or `hex`).
    pub gap_layer: &'static str,
}

/// How frames are delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// The 8-byte CSTA XML header.
    Header,
    /// Bare XML documents.
    Bare,
}

/// A run of bad-header resynchronisation, reported once.
#[derive(Debug)]
struct BadRun {
    offset: u64,
    end: u64,
    header: [u8; HEADER_LEN],
    reason: &'static str,
}

/// Decodes one stream.
#[derive(Debug)]
pub struct StreamDecoder {
    framing: Framing,
    cap: usize,
    deframer: Option<Deframer>,
    splitter: Option<Splitter>,
    /// Stream offset of the framer's first byte.
    shift: u64,
    /// Bytes pushed into the current deframer.
    pushed: u64,
    frame_index: u64,
    bad: Option<BadRun>,
    /// Said with the next resynchronisation report: why the stream may start inside a frame.
    note: Option<&'static str>,
}

impl StreamDecoder {
    /// A decoder for frames of at most `cap` bytes.
    pub fn new(framing: Framing, cap: usize) -> StreamDecoder {
        StreamDecoder {
            framing,
            cap,
            deframer: None,
            splitter: None,
            shift: 0,
            pushed: 0,
            frame_index: 0,
            bad: None,
            note: None,
        }
    }

    /// Marks the stream as starting somewhere inside the peer's output.
    pub fn note_midstream(&mut self) {
        if self.position() == 0 {
            self.note = Some("the capture started inside the connection");
        }
    }

    /// Stream offset of the next byte.
    fn position(&self) -> u64 {
        // For bare documents `pushed` keeps counting across gaps (the splitter lives on) and
        // `shift` adds the missing bytes; for the deframer both restart after a gap.
        // Saturating: a hex dump's offsets can claim any gap up to 2^64.
        self.shift.saturating_add(self.pushed)
    }

    /// Handles one delivery from reassembly (or from the raw / hex reader).
    pub fn deliver<W: Write>(&mut self, d: Delivery<'_>, cx: &mut Cx<'_, W>) {
        match d {
            Delivery::Data { bytes, .. } => self.data(bytes, cx),
            Delivery::Gap { len, reason, .. } => self.gap(len, reason.as_str(), cx),
            Delivery::End { reason, .. } => self.end(reason.as_str(), cx),
        }
    }

    /// In-order bytes.
    pub fn data<W: Write>(&mut self, bytes: &[u8], cx: &mut Cx<'_, W>) {
        for chunk in bytes.chunks(PUSH_CHUNK) {
            match self.framing {
                Framing::Header => self.push_header(chunk, cx),
                Framing::Bare => self.push_bare(chunk, cx),
            }
        }
    }

    /// `len` bytes will never come: drop the unfinished frame and resynchronise after them.
    pub fn gap<W: Write>(&mut self, len: u64, why: &str, cx: &mut Cx<'_, W>) {
        self.flush_bad(cx);
        let at = self.position();
        let partial = self.partial();
        let mut detail = format!("{len} bytes missing ({why})");
        if partial > 0 {
            detail += &format!("; dropped {partial} bytes of an unfinished frame");
        }
        let mut e = ErrorInfo::new(cx.gap_layer, "gap", detail);
        e.offset = Some(at);
        cx.out.error(&cx.place, &e);
        match self.framing {
            Framing::Header => {
                self.deframer = None;
                self.shift = at.saturating_add(len);
                self.pushed = 0;
            }
            Framing::Bare => {
                if let Some(mut s) = self.splitter.take() {
                    let mut items = Vec::new();
                    s.resync(&mut |i| items.push(i));
                    let shift = self.shift;
                    for i in items {
                        self.bare_item(i, shift, cx);
                    }
                    self.splitter = Some(s);
                }
                // The splitter's own count goes on from where the gap began.
                self.shift = self.shift.saturating_add(len);
            }
        }
        self.note = Some("after a gap");
    }

    /// The stream ended: an unfinished frame is reported as truncated. A later stream (a new
    /// connection on the same addresses) starts at offset 0.
    pub fn end<W: Write>(&mut self, why: &str, cx: &mut Cx<'_, W>) {
        self.flush_bad(cx);
        match self.framing {
            Framing::Header => {
                if let Some(mut d) = self.deframer.take() {
                    let buf = d.buffer_mut();
                    if !buf.is_empty() {
                        let at = self.position().saturating_sub(buf.len() as u64);
                        let detail = match announced_len(buf) {
                            Some(len) => format!(
                                "stream ended ({why}) inside a frame of {len} bytes after {} bytes",
                                buf.len()
                            ),
                            None => format!(
                                "stream ended ({why}) with {} bytes that are not a whole frame",
                                buf.len()
                            ),
                        };
                        let mut e = ErrorInfo::new("frame", "truncated", detail);
                        e.offset = Some(at);
                        cx.out.error(&cx.place, &e);
                    }
                }
            }
            Framing::Bare => {
                if let Some(mut s) = self.splitter.take() {
                    let shift = self.shift;
                    let mut items = Vec::new();
                    let left = s.finish(&mut |i| items.push(i));
                    for i in items {
                        self.bare_item(i, shift, cx);
                    }
                    if let Some((off, len)) = left {
                        let mut e = ErrorInfo::new(
                            "frame",
                            "truncated",
                            format!("stream ended ({why}) inside a document after {len} bytes"),
                        );
                        e.offset = Some(shift.saturating_add(off));
                        cx.out.error(&cx.place, &e);
                    }
                }
            }
        }
        self.shift = 0;
        self.pushed = 0;
        self.note = None;
    }

    /// Bytes of an unfinished frame.
    fn partial(&mut self) -> u64 {
        match self.framing {
            Framing::Header => self
                .deframer
                .as_mut()
                .map_or(0, |d| d.buffer_mut().len() as u64),
            Framing::Bare => self.splitter.as_ref().map_or(0, Splitter::pending),
        }
    }

    fn push_header<W: Write>(&mut self, chunk: &[u8], cx: &mut Cx<'_, W>) {
        let mut d = self
            .deframer
            .take()
            .unwrap_or_else(|| Deframer::new(self.cap));
        d.push(chunk);
        self.pushed += chunk.len() as u64;
        loop {
            let front = self.position().saturating_sub(d.buffer_mut().len() as u64);
            let r = d.next_frame();
            // Bytes the deframer dropped before this result, still looking for a header: they
            // belong to the bad run that started it, and what follows starts after them.
            let silent = d.take_discarded() as u64;
            if silent > 0
                && let Some(run) = &mut self.bad
                && run.end == front
            {
                run.end = run.end.saturating_add(silent);
            }
            let at = front.saturating_add(silent);
            match r {
                Ok(None) => break,
                Ok(Some(f)) => self.frame(at, Some(f.invoke_id), f.body, cx),
                Err(FrameError::BadHeader {
                    header,
                    reason,
                    skipped,
                }) => match &mut self.bad {
                    Some(run) if run.end == at => run.end = at.saturating_add(skipped as u64),
                    _ => {
                        self.flush_bad(cx);
                        self.bad = Some(BadRun {
                            offset: at,
                            end: at.saturating_add(skipped as u64),
                            header,
                            reason,
                        });
                    }
                },
                Err(e @ FrameError::Oversize { .. }) => {
                    self.flush_bad(cx);
                    let mut info = ErrorInfo::new("frame", e.kind(), e.to_string());
                    info.offset = Some(at);
                    cx.out.error(&cx.place, &info);
                }
            }
        }
        self.deframer = Some(d);
    }

    fn push_bare<W: Write>(&mut self, chunk: &[u8], cx: &mut Cx<'_, W>) {
        let mut s = self
            .splitter
            .take()
            .unwrap_or_else(|| Splitter::new(self.cap));
        let mut items = Vec::new();
        s.push(chunk, &mut |i| items.push(i));
        self.pushed += chunk.len() as u64;
        self.splitter = Some(s);
        let shift = self.shift;
        for i in items {
            self.bare_item(i, shift, cx);
        }
    }

    fn bare_item<W: Write>(&mut self, item: bare::Item, shift: u64, cx: &mut Cx<'_, W>) {
        let (kind, offset, detail) = match item {
            bare::Item::Doc { offset, body } => {
                self.frame(shift.saturating_add(offset), None, body, cx);
                return;
            }
            bare::Item::Junk { offset, len } => (
                "junk",
                offset,
                format!("skipped {len} bytes that are not inside an XML document"),
            ),
            bare::Item::Oversize { offset, len } => (
                "oversize",
                offset,
                format!(
                    "document of {len} bytes exceeds the cap of {} bytes; skipped",
                    self.cap
                ),
            ),
            bare::Item::Truncated { offset, len } => (
                "truncated",
                offset,
                format!("document cut short after {len} bytes by a new XML declaration"),
            ),
        };
        let mut detail = detail;
        if let Some(note) = self.note.take() {
            detail += &format!(" ({note})");
        }
        let mut e = ErrorInfo::new("frame", kind, detail);
        e.offset = Some(shift.saturating_add(offset));
        cx.out.error(&cx.place, &e);
    }

    fn flush_bad<W: Write>(&mut self, cx: &mut Cx<'_, W>) {
        let Some(run) = self.bad.take() else {
            return;
        };
        let mut detail = format!(
            "bad frame header {} ({}); skipped {} bytes to resynchronise",
            hex_bytes(&run.header),
            run.reason,
            run.end - run.offset
        );
        if let Some(note) = self.note.take() {
            detail += &format!(" ({note})");
        }
        let mut e = ErrorInfo::new("frame", "bad_header", detail);
        e.offset = Some(run.offset);
        cx.out.error(&cx.place, &e);
    }

    fn frame<W: Write>(
        &mut self,
        offset: u64,
        invoke: Option<InvokeId>,
        body: Bytes,
        cx: &mut Cx<'_, W>,
    ) {
        self.flush_bad(cx);
        self.note = None;
        let frame = FrameRef {
            index: self.frame_index,
            offset,
            invoke,
        };
        self.frame_index += 1;
        cx.out.summary.frames += 1;
        let doc = match xml::decode(&body) {
            Ok(doc) => doc,
            Err(e) => {
                let mut info = ErrorInfo::new("xml", e.kind(), e.to_string());
                info.frame = Some(&frame);
                cx.out.error(&cx.place, &info);
                return;
            }
        };
        cx.out.message(&cx.place, &frame, &doc);
        match &doc.message {
            Message::Event(e) => {
                let (device, source) = choose_device(e, cx.monitors);
                let device = Text::from(device);
                let ev = normalize::event(
                    &body,
                    &doc.name,
                    e,
                    &normalize::Origin {
                        pbx: &cx.out.pbx,
                        device: &device,
                        plan: &cx.out.plan,
                        received: Instant::now(),
                        ts_ms: cx.place.ts.map_or(0, |t| t.millis()),
                    },
                );
                cx.out.event(&cx.place, &frame, source, &ev);
            }
            Message::Request if doc.name == "MonitorStart" => {
                if let (Some(id), Some(device)) = (invoke, monitor_start_device(&body)) {
                    cx.monitors.request(cx.side, id, device);
                }
            }
            Message::Response(Response::MonitorStart { cross_ref }) => {
                if let Some(id) = invoke {
                    cx.monitors.response(cx.side, id, cross_ref.as_deref());
                }
            }
            Message::Error(_) => {
                if let Some(id) = invoke {
                    cx.monitors.response(cx.side, id, None);
                }
            }
            _ => {}
        }
    }
}

/// The device an event is normalized for, and where it came from: the device a `MonitorStart`
/// in this capture asked for under the event's `monitorCrossRefID` (what the gateway itself
/// uses), else the event's subject device (alerting, answering, releasing … device), else its
/// connection's device, else the cross-reference id itself.
fn choose_device<'e>(e: &'e xml::Event<'_>, monitors: &'e Monitors) -> (&'e str, &'static str) {
    if let Some(d) = e.cross_ref.as_deref().and_then(|x| monitors.device(x)) {
        return (d, "monitor_start");
    }
    if let Some(d) = e.subject.as_ref().and_then(xml::Device::id) {
        return (d, "subject");
    }
    if let Some(d) = e.connection.as_ref().and_then(|c| c.device_id.as_deref()) {
        return (d, "connection");
    }
    if let Some(x) = e.cross_ref.as_deref() {
        return (x, "cross_ref");
    }
    ("", "none")
}

/// `monitorObject/deviceObject` of a `MonitorStart` request. The codec does not decode requests
/// (the gateway only sends them), so this reads the one field with quick-xml.
fn monitor_start_device(body: &[u8]) -> Option<String> {
    use quick_xml::events::Event;
    let mut r = quick_xml::Reader::from_str(std::str::from_utf8(body).ok()?);
    let mut inside = false;
    let mut text = String::new();
    loop {
        match r.read_event().ok()? {
            Event::Start(e) if e.local_name().as_ref() == "deviceObject" => inside = true,
            Event::Text(t) if inside => text.push_str(&t.xml10_content()),
            Event::CData(t) if inside => text.push_str(&t),
            Event::GeneralRef(g) if inside => match g.resolve_char_ref().ok().flatten() {
                Some(c) => text.push(c),
                None => text.push_str(match &*g {
                    "lt" => "<",
                    "gt" => ">",
                    "amp" => "&",
                    "quot" => "\"",
                    "apos" => "'",
                    _ => return None,
                }),
            },
            Event::End(e) if inside && e.local_name().as_ref() == "deviceObject" => {
                let t = text.trim();
                return (!t.is_empty()).then(|| t.to_string());
            }
            Event::Eof => return None,
            _ => {}
        }
    }
}

/// The total length a frame header announces, if `buf` starts with a plausible header.
fn announced_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < HEADER_LEN || buf[0] != 0 || buf[1] != 0 {
        return None;
    }
    InvokeId::parse(&buf[4..8])?;
    Some(usize::from(u16::from_be_bytes([buf[2], buf[3]])))
}

fn hex_bytes(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitor_start_device_is_read_with_entities() {
        let mut out = bytes::BytesMut::new();
        xml::encode::encode(
            &xml::encode::Request::MonitorStart {
                device: "N<+4930123>;x=1&y",
            },
            "http://www.ecma-international.org/standards/ecma-323/csta/ed4",
            &mut out,
        );
        assert_eq!(
            monitor_start_device(&out).as_deref(),
            Some("N<+4930123>;x=1&y")
        );
        assert_eq!(monitor_start_device(b"<MonitorStart/>"), None);
        assert_eq!(
            monitor_start_device(b"<a><deviceObject>&bogus;</deviceObject></a>"),
            None
        );
        assert_eq!(monitor_start_device(b"\xff\xfe<"), None);
    }

    #[test]
    fn monitors_correlate_across_sides() {
        let mut m = Monitors::default();
        m.request(0, InvokeId(5), "4001".into());
        m.request(0, InvokeId(6), "4002".into());
        m.response(1, InvokeId(5), Some("X1"));
        m.response(1, InvokeId(6), None);
        assert_eq!(m.device("X1"), Some("4001"));
        assert!(m.pending.is_empty());
        // A single stream holding both (raw input of a concatenation): same side.
        m.request(0, InvokeId(7), "4003".into());
        m.response(0, InvokeId(7), Some("X3"));
        assert_eq!(m.device("X3"), Some("4003"));
    }
}
