//! `ctigate decode`: captures of PBX traffic → one JSON line per decoded message and per
//! normalized event.
//!
//! Inputs are a raw byte stream (one direction, as the PBX wrote it), a hex dump ([`hex`]), or a
//! pcap / pcapng file ([`pcap`]) whose TCP flows are reassembled ([`tcp`], [`flows`]). Every
//! stream goes through the codec's own framer and decoder ([`stream`]), and events through the
//! link's normalizer, so what this prints is what the gateway would make of the same bytes.
//!
//! Everything streams: a pcap is read record by record, per-flow memory is bounded (the frame cap
//! plus a cap on out-of-order data), and the number of flows followed at once is capped. Decode
//! errors are printed as JSON lines and never stop the run; only an unreadable or unrecognizable
//! input is an `Err`.

pub mod bare;
pub mod flows;
pub mod hex;
pub mod link;
pub mod output;
pub mod pcap;
pub mod stream;
pub mod tcp;

pub use output::Summary;

use crate::codec::framing::MAX_WIRE_FRAME;
use crate::config::Config;
use crate::model::NumberingPlan;
use crate::model::Text;
use flows::{FlowLimits, FlowTable};
use output::{Emitter, ErrorInfo, Place};
use std::collections::HashSet;
use std::io::{self, BufReader, Read, Write};
use std::path::Path;
use stream::{Cx, Framing, Monitors, StreamDecoder};
use thiserror::Error;

/// Input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// Decide from the first bytes.
    Auto,
    /// The bytes as the peer wrote them.
    Raw,
    /// A hex dump of those bytes.
    Hex,
    /// A pcap or pcapng capture.
    Pcap,
}

impl InputFormat {
    /// The name used in the summary.
    pub fn as_str(self) -> &'static str {
        match self {
            InputFormat::Auto => "auto",
            InputFormat::Raw => "raw",
            InputFormat::Hex => "hex",
            InputFormat::Pcap => "pcap",
        }
    }
}

/// How to decode.
#[derive(Debug, Clone)]
pub struct Options {
    /// Input format, or [`InputFormat::Auto`].
    pub format: InputFormat,
    /// Only TCP segments from or to this port (pcap); `None` follows every TCP flow.
    pub port: Option<u16>,
    /// Largest frame accepted (8..=65535 with the header; any size for bare documents).
    pub max_frame: usize,
    /// The peer sends bare XML documents without the 8-byte header.
    pub no_header: bool,
    /// Out-of-order bytes held per flow direction before a hole is given up as a gap.
    pub flow_buffer: usize,
    /// Flow directions followed at once.
    pub max_flows: usize,
    /// PBX name written into normalized events.
    pub pbx: Text,
    /// Numbering plan for the parties of normalized events.
    pub plan: NumberingPlan,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            format: InputFormat::Auto,
            port: None,
            max_frame: MAX_WIRE_FRAME,
            no_header: false,
            flow_buffer: 4 << 20,
            max_flows: 100_000,
            pbx: Text::from("capture"),
            plan: NumberingPlan::default(),
        }
    }
}

/// Why a decode run could not be done at all.
#[derive(Debug, Error)]
pub enum CaptureError {
    /// The input could not be read.
    #[error("reading the input: {0}")]
    Read(#[source] io::Error),
    /// The input is none of the formats.
    #[error("the input is not a recognizable capture: {0}")]
    Unrecognized(String),
    /// Writing the output failed (for example a closed pipe).
    #[error("writing the output: {0}")]
    Write(#[source] io::Error),
    /// The configuration given for the numbering plan could not be used.
    #[error("{0}")]
    Config(String),
}

/// Takes the PBX name and numbering plan from a gateway configuration file, so parties are
/// classified (extension, national, E.164) as the gateway classifies them. `pbx` picks a
/// `[[pbx]]` by name; without it the first one is used. The file is parsed, not validated:
/// certificates it names need not exist on the machine decoding.
pub fn numbering_from_config(
    path: &Path,
    pbx: Option<&str>,
) -> Result<(Text, NumberingPlan), CaptureError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CaptureError::Config(format!("{}: {e}", path.display())))?;
    let cfg = Config::parse(&text)
        .map_err(|e| CaptureError::Config(format!("{}: {e}", path.display())))?;
    let link = match pbx {
        Some(name) => cfg.pbx.iter().find(|p| p.name == name).ok_or_else(|| {
            CaptureError::Config(format!("{}: no [[pbx]] named {name:?}", path.display()))
        })?,
        None => cfg
            .pbx
            .first()
            .ok_or_else(|| CaptureError::Config(format!("{}: no [[pbx]]", path.display())))?,
    };
    Ok((Text::from(link.name.as_str()), link.numbering.plan()))
}

/// Bytes looked at to recognize the format.
const SNIFF: usize = 64 * 1024;

/// Decodes `input` and writes JSON lines to `out`. Returns the summary; decode errors are in the
/// output, not in the result.
pub fn decode<R: Read, W: Write>(
    input: R,
    opts: &Options,
    out: W,
) -> Result<Summary, CaptureError> {
    let mut input = input;
    let head = sniff(&mut input, SNIFF).map_err(CaptureError::Read)?;
    let format = match opts.format {
        InputFormat::Auto => {
            if head.is_empty() {
                // Nothing to decode is not an error: the summary says zero frames.
                InputFormat::Raw
            } else {
                detect(&head, opts.no_header).ok_or_else(|| {
                    let looks_bare = !opts.no_header
                        && detect(&head, true) == Some(InputFormat::Raw);
                    CaptureError::Unrecognized(if looks_bare {
                        "no CSTA XML frame header, but XML documents: add --no-header".into()
                    } else {
                        format!(
                            "not pcap/pcapng, not a hex dump, and no {}; name the format with --format",
                            if opts.no_header {
                                "XML document at the start"
                            } else {
                                "CSTA XML frame header in the first 64 KiB"
                            }
                        )
                    })
                })?
            }
        }
        f => f,
    };
    let reader = BufReader::with_capacity(1 << 20, io::Cursor::new(head).chain(input));
    let mut em = Emitter::new(out, opts.pbx.clone(), opts.plan.clone());
    em.summary.format = format.as_str();
    let framing = if opts.no_header {
        Framing::Bare
    } else {
        Framing::Header
    };
    // The 16-bit length field bounds a headed frame; a bare document may be longer.
    let cap = match framing {
        Framing::Header => opts.max_frame.clamp(8, MAX_WIRE_FRAME),
        Framing::Bare => opts.max_frame.max(1),
    };
    let result = match format {
        InputFormat::Pcap => decode_pcap(reader, opts, framing, cap, &mut em),
        InputFormat::Hex => decode_hex(reader, framing, cap, &mut em),
        // `Auto` was resolved above; it only reaches here for empty input.
        InputFormat::Raw | InputFormat::Auto => decode_raw(reader, framing, cap, &mut em),
    };
    if let Some(e) = em.take_failure() {
        return Err(CaptureError::Write(e));
    }
    result?;
    em.flush().map_err(CaptureError::Write)?;
    Ok(em.summary.clone())
}

/// Recognizes the input format from its first bytes.
pub fn detect(head: &[u8], no_header: bool) -> Option<InputFormat> {
    if pcap::is_capture_magic(head) {
        return Some(InputFormat::Pcap);
    }
    if no_header {
        let first = head
            .iter()
            .find(|&&b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0xEF | 0xBB | 0xBF));
        if first == Some(&b'<') {
            return Some(InputFormat::Raw);
        }
    } else if plausible_header(head) {
        return Some(InputFormat::Raw);
    }
    if hex::looks_like_hex(head) {
        return Some(InputFormat::Hex);
    }
    // A raw stream cut from the middle: a frame header somewhere in the first bytes.
    if !no_header && (1..head.len()).any(|i| plausible_header(&head[i..])) {
        return Some(InputFormat::Raw);
    }
    if no_header && memchr::memmem::find(head, b"<?xml").is_some() {
        return Some(InputFormat::Raw);
    }
    None
}

/// `00 00`, a length of at least 8, four ASCII digits, then `<` if the bytes go on that far.
fn plausible_header(b: &[u8]) -> bool {
    b.len() >= 8
        && b[0] == 0
        && b[1] == 0
        && u16::from_be_bytes([b[2], b[3]]) >= 8
        && b[4..8].iter().all(u8::is_ascii_digit)
        && b.get(8).is_none_or(|&c| c == b'<')
}

/// Reads up to `n` bytes (fewer only at end of input).
fn sniff<R: Read>(r: &mut R, n: usize) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(n);
    r.take(n as u64).read_to_end(&mut head)?;
    Ok(head)
}

fn single_stream<'a, W: Write>(
    em: &'a mut Emitter<W>,
    monitors: &'a mut Monitors,
    gap_layer: &'static str,
) -> Cx<'a, W> {
    Cx {
        out: em,
        place: Place::default(),
        monitors,
        side: 0,
        gap_layer,
    }
}

fn decode_raw<R: Read, W: Write>(
    mut r: R,
    framing: Framing,
    cap: usize,
    em: &mut Emitter<W>,
) -> Result<(), CaptureError> {
    let mut dec = StreamDecoder::new(framing, cap);
    let mut monitors = Monitors::default();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CaptureError::Read(e)),
        };
        dec.data(&buf[..n], &mut single_stream(em, &mut monitors, "raw"));
        if em.has_failed() {
            return Ok(());
        }
    }
    dec.end("end of input", &mut single_stream(em, &mut monitors, "raw"));
    Ok(())
}

fn decode_hex<R: io::BufRead, W: Write>(
    r: R,
    framing: Framing,
    cap: usize,
    em: &mut Emitter<W>,
) -> Result<(), CaptureError> {
    let mut dec = StreamDecoder::new(framing, cap);
    let mut monitors = Monitors::default();
    hex::read(r, &mut |o| {
        if em.has_failed() {
            return;
        }
        let mut cx = single_stream(em, &mut monitors, "hex");
        match o {
            hex::HexOut::Data(bytes) => dec.data(bytes, &mut cx),
            hex::HexOut::Gap { len, line } => dec.gap(
                len,
                &format!("the dump's offsets jump at line {line}"),
                &mut cx,
            ),
            hex::HexOut::Error { kind, line, detail } => {
                let mut e = ErrorInfo::new("hex", kind, detail);
                e.line = Some(line);
                cx.out.error(&cx.place, &e);
            }
        }
    })
    .map_err(CaptureError::Read)?;
    dec.end("end of input", &mut single_stream(em, &mut monitors, "hex"));
    Ok(())
}

fn decode_pcap<R: io::BufRead, W: Write>(
    r: R,
    opts: &Options,
    framing: Framing,
    cap: usize,
    em: &mut Emitter<W>,
) -> Result<(), CaptureError> {
    let mut reader = match pcap::PcapReader::new(r) {
        Ok(r) => r,
        Err(pcap::PcapError::Io(e)) => return Err(CaptureError::Read(e)),
        Err(e) => return Err(CaptureError::Unrecognized(e.to_string())),
    };
    let mut table = FlowTable::new(FlowLimits {
        max_flows: opts.max_flows.max(2),
        flow_buffer: opts.flow_buffer,
        max_frame: cap,
        framing,
    });
    let mut unsupported = HashSet::new();
    let mut last_ts = None;
    loop {
        let packet = match reader.next_packet() {
            Ok(Some(p)) => p,
            Ok(None) => break,
            Err(pcap::PcapError::Io(e)) => return Err(CaptureError::Read(e)),
            Err(e) => {
                let info = ErrorInfo::new("capture", e.kind(), e.to_string());
                em.error(&Place::default(), &info);
                if e.is_recoverable() {
                    continue;
                }
                break;
            }
        };
        em.summary.packets += 1;
        if packet.ts.is_some() {
            last_ts = packet.ts;
        }
        let place = Place {
            flow: None,
            ts: packet.ts,
        };
        match link::parse(packet.linktype, packet.data) {
            Ok(tcp) => {
                if let Some(port) = opts.port
                    && tcp.src.port() != port
                    && tcp.dst.port() != port
                {
                    continue;
                }
                em.summary.segments += 1;
                table.segment(&tcp, packet.ts, em);
            }
            Err(link::Skip::NotTcp) => {}
            Err(link::Skip::UnsupportedLinktype(lt)) => {
                // Once per link type: every packet of it would say the same.
                if unsupported.insert(lt) {
                    em.error(
                        &place,
                        &ErrorInfo::new(
                            "packet",
                            "unsupported_linktype",
                            format!("link type {lt} is not supported; its packets are skipped"),
                        ),
                    );
                }
            }
            Err(link::Skip::Fragment) => em.error(
                &place,
                &ErrorInfo::new(
                    "packet",
                    "ip_fragment",
                    "an IP fragment; TCP over fragmented IP is not reassembled".into(),
                ),
            ),
            Err(link::Skip::Malformed(why)) => {
                em.error(&place, &ErrorInfo::new("packet", "malformed_packet", why))
            }
        }
        if em.has_failed() {
            return Ok(());
        }
    }
    table.finish(last_ts, em);
    Ok(())
}

#[cfg(test)]
mod tests;
