//! The JSON lines `ctigate decode` prints, and its summary.
//!
//! Lines are serialized straight from the decoded, borrowed message into the output buffer; there
//! is no intermediate `serde_json::Value`. A write error (a closed pipe) is remembered and ends the
//! run at the next check instead of being threaded through every decoder callback.

use super::pcap::Timestamp;
use crate::codec::framing::InvokeId;
use crate::codec::xml::Message;
use crate::model::Text;
use crate::model::{self, NumberingPlan};
use serde::Serialize;
use serde::ser::Serializer;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Write};

/// Counts of what a run decoded, printed on stderr at the end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// The input format that was decoded (`raw`, `hex`, `pcap`).
    pub format: &'static str,
    /// Packets read (pcap only).
    pub packets: u64,
    /// TCP segments taken into reassembly (pcap only).
    pub segments: u64,
    /// Flow directions seen (pcap only).
    pub flows: u64,
    /// Frames (or bare documents) cut from the streams.
    pub frames: u64,
    /// Frames whose XML decoded.
    pub messages: u64,
    /// Normalized events.
    pub events: u64,
    /// Errors by kind.
    pub errors: BTreeMap<&'static str, u64>,
}

impl Summary {
    /// Total errors.
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "decode ({}): {} frames, {} messages, {} events, {} errors",
            self.format,
            self.frames,
            self.messages,
            self.events,
            self.error_count()
        )?;
        if !self.errors.is_empty() {
            let by_kind: Vec<String> = self
                .errors
                .iter()
                .map(|(k, n)| format!("{k}={n}"))
                .collect();
            write!(f, " ({})", by_kind.join(", "))?;
        }
        if self.format == "pcap" {
            write!(
                f,
                "; {} packets, {} TCP segments, {} flow directions",
                self.packets, self.segments, self.flows
            )?;
        }
        Ok(())
    }
}

/// Where a line's data came from: the flow (pcap) and the capture time of the packet that
/// completed it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Place<'a> {
    /// `src->dst`, for pcap input.
    pub flow: Option<&'a str>,
    /// Capture time, for pcap input.
    pub ts: Option<Timestamp>,
}

/// Errors of these kinds are about packets, not frames; past this many lines each they are only
/// counted, so a capture full of foreign traffic does not drown the frame output.
const PACKET_ERROR_LINES: u64 = 20;

/// Writes the JSON lines and keeps the summary.
pub struct Emitter<W: Write> {
    w: io::BufWriter<W>,
    failed: Option<io::Error>,
    /// What has been decoded so far.
    pub summary: Summary,
    /// PBX name put into normalized events.
    pub pbx: Text,
    /// Numbering plan for parties.
    pub plan: NumberingPlan,
}

impl<W: Write> Emitter<W> {
    /// An emitter writing to `w`.
    pub fn new(w: W, pbx: Text, plan: NumberingPlan) -> Emitter<W> {
        Emitter {
            w: io::BufWriter::with_capacity(256 * 1024, w),
            failed: None,
            summary: Summary::default(),
            pbx,
            plan,
        }
    }

    /// The first write error, if writing failed.
    pub fn take_failure(&mut self) -> Option<io::Error> {
        self.failed.take()
    }

    /// True once a write failed.
    pub fn has_failed(&self) -> bool {
        self.failed.is_some()
    }

    /// Flushes buffered output.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.w.flush()
    }

    fn line<T: Serialize>(&mut self, value: &T) {
        if self.failed.is_some() {
            return;
        }
        let r = serde_json::to_writer(&mut self.w, value)
            .map_err(io::Error::from)
            .and_then(|()| self.w.write_all(b"\n"));
        if let Err(e) = r {
            self.failed = Some(e);
        }
    }

    /// A decoded frame.
    pub fn message(
        &mut self,
        at: &Place<'_>,
        frame: &FrameRef,
        doc: &crate::codec::xml::Document<'_>,
    ) {
        self.summary.messages += 1;
        self.line(&MessageLine {
            kind: "message",
            flow: at.flow,
            frame_index: frame.index,
            offset: frame.offset,
            ts: at.ts.map(Rfc3339),
            invoke_id: frame.invoke.map(Invoke),
            root: &doc.name,
            namespace: doc.namespace.as_deref(),
            message: &doc.message,
        });
    }

    /// A normalized event of the frame.
    pub fn event(
        &mut self,
        at: &Place<'_>,
        frame: &FrameRef,
        device_source: &'static str,
        event: &model::Event,
    ) {
        self.summary.events += 1;
        self.line(&EventLine {
            kind: "event",
            flow: at.flow,
            frame_index: frame.index,
            offset: frame.offset,
            ts: at.ts.map(Rfc3339),
            device_source,
            event,
        });
    }

    /// An error; counted by `kind`.
    pub fn error(&mut self, at: &Place<'_>, e: &ErrorInfo<'_>) {
        let n = self.summary.errors.entry(e.kind).or_insert(0);
        *n += 1;
        if e.layer == "packet" && *n > PACKET_ERROR_LINES {
            return;
        }
        self.line(&ErrorLine {
            kind: "error",
            layer: e.layer,
            error: e.kind,
            detail: &e.detail,
            flow: at.flow,
            frame_index: e.frame.map(|f| f.index),
            invoke_id: e.frame.and_then(|f| f.invoke).map(Invoke),
            offset: e.offset.or(e.frame.map(|f| f.offset)),
            line: e.line,
            ts: at.ts.map(Rfc3339),
        });
    }
}

/// Identifies a frame in the output.
#[derive(Debug, Clone, Copy)]
pub struct FrameRef {
    /// Index of the frame in its stream (0-based; continues across a connection's restarts).
    pub index: u64,
    /// Stream offset of its first byte.
    pub offset: u64,
    /// Invoke id from the header; none for bare documents.
    pub invoke: Option<InvokeId>,
}

/// An error to report.
#[derive(Debug)]
pub struct ErrorInfo<'a> {
    /// Where it was found: `capture`, `packet`, `tcp`, `hex`, `frame`, `xml`.
    pub layer: &'static str,
    /// Stable kind, e.g. `bad_header`, `gap`, `truncated`.
    pub kind: &'static str,
    /// Human-readable detail.
    pub detail: String,
    /// Stream offset, when it has one.
    pub offset: Option<u64>,
    /// The frame it concerns, when it concerns one.
    pub frame: Option<&'a FrameRef>,
    /// Line of a hex dump.
    pub line: Option<u64>,
}

impl ErrorInfo<'_> {
    /// An error with just a layer, kind and detail.
    pub fn new(layer: &'static str, kind: &'static str, detail: String) -> ErrorInfo<'static> {
        ErrorInfo {
            layer,
            kind,
            detail,
            offset: None,
            frame: None,
            line: None,
        }
    }
}

#[derive(Serialize)]
struct MessageLine<'a, 'm> {
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    flow: Option<&'a str>,
    frame_index: u64,
    offset: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ts: Option<Rfc3339>,
    invoke_id: Option<Invoke>,
    root: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
    /// The codec's own rendering: `{"type": "event" | "response" | …, fields…}`.
    message: &'m Message<'a>,
}

#[derive(Serialize)]
struct EventLine<'a> {
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    flow: Option<&'a str>,
    frame_index: u64,
    offset: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ts: Option<Rfc3339>,
    device_source: &'static str,
    #[serde(flatten)]
    event: &'a model::Event,
}

#[derive(Serialize)]
struct ErrorLine<'a> {
    kind: &'static str,
    layer: &'static str,
    error: &'static str,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    flow: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    frame_index: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    invoke_id: Option<Invoke>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    line: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ts: Option<Rfc3339>,
}

/// An invoke id as its four digits, as on the wire.
struct Invoke(InvokeId);

impl Serialize for Invoke {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

/// A timestamp as RFC 3339 in UTC.
#[derive(Debug, Clone, Copy)]
pub struct Rfc3339(pub Timestamp);

impl Serialize for Rfc3339 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Latest instant RFC 3339 can write with a four-digit year.
const MAX_RFC3339_SECS: i64 = 253_402_300_799;

impl fmt::Display for Rfc3339 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.secs.clamp(0, MAX_RFC3339_SECS);
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            rem / 3600,
            rem / 60 % 60,
            rem % 60
        )?;
        let n = self.0.nanos.min(999_999_999);
        if n.is_multiple_of(1000) {
            write!(f, ".{:06}Z", n / 1000)
        } else {
            write!(f, ".{n:09}Z")
        }
    }
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        let t = |secs, nanos| Rfc3339(Timestamp { secs, nanos }).to_string();
        assert_eq!(t(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(t(1_700_000_000, 123_456_000), "2023-11-14T22:13:20.123456Z");
        assert_eq!(t(951_782_400, 1), "2000-02-29T00:00:00.000000001Z");
        assert_eq!(t(4_107_542_400, 0), "2100-03-01T00:00:00.000000Z");
        assert_eq!(t(-5, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(t(i64::MAX, u32::MAX), "9999-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn summary_line() {
        let mut s = Summary {
            format: "pcap",
            frames: 3,
            messages: 2,
            events: 1,
            packets: 10,
            segments: 8,
            flows: 2,
            ..Summary::default()
        };
        s.errors.insert("gap", 1);
        s.errors.insert("syntax", 1);
        assert_eq!(
            s.to_string(),
            "decode (pcap): 3 frames, 2 messages, 1 events, 2 errors (gap=1, syntax=1); 10 packets, 8 TCP segments, 2 flow directions"
        );
    }
}
