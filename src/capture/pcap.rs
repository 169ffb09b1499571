//! Streaming reader for pcap and pcapng capture files.
//!
//! Both formats are read record by record from a `BufRead` into one reused buffer, so memory does
//! not grow with the file. Lengths in record headers are checked before anything is allocated: a
//! record larger than [`MAX_RECORD`] is skipped by reading past it, not buffered.
//!
//! pcap: both byte orders, microsecond and nanosecond magic, and the "modified" (Kuznetzov) variant
//! with its longer record header. pcapng: several sections (each with its own byte order),
//! interfaces with their link type, `if_tsresol` and `if_tsoffset`; Enhanced, Simple and the
//! obsolete Packet blocks; every other block is skipped.

use std::io::{self, BufRead, Read};
use thiserror::Error;

/// Largest record (pcap) or block (pcapng) kept; larger ones are skipped with an error.
/// libpcap's own maximum snap length is 256 KiB; this leaves room for odd writers.
pub const MAX_RECORD: usize = 16 << 20;

/// The magic numbers a capture file starts with.
pub fn is_capture_magic(head: &[u8]) -> bool {
    head.len() >= 4
        && matches!(
            [head[0], head[1], head[2], head[3]],
            [0xa1, 0xb2, 0xc3, 0xd4]
                | [0xd4, 0xc3, 0xb2, 0xa1]
                | [0xa1, 0xb2, 0x3c, 0x4d]
                | [0x4d, 0x3c, 0xb2, 0xa1]
                | [0xa1, 0xb2, 0xcd, 0x34]
                | [0x34, 0xcd, 0xb2, 0xa1]
                | [0x0a, 0x0d, 0x0d, 0x0a]
        )
}

/// A capture timestamp: seconds and nanoseconds since the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Timestamp {
    /// Whole seconds.
    pub secs: i64,
    /// Nanoseconds, below 1e9.
    pub nanos: u32,
}

impl Timestamp {
    /// Milliseconds since the epoch, clamped to zero for times before it.
    pub fn millis(self) -> u64 {
        if self.secs < 0 {
            return 0;
        }
        (self.secs as u64)
            .saturating_mul(1000)
            .saturating_add(u64::from(self.nanos / 1_000_000))
    }

    /// Adds whole seconds, saturating.
    fn offset(self, secs: i64) -> Timestamp {
        Timestamp {
            secs: self.secs.saturating_add(secs),
            nanos: self.nanos,
        }
    }
}

/// One captured packet.
#[derive(Debug)]
pub struct Packet<'a> {
    /// Link-layer header type (`LINKTYPE_*`).
    pub linktype: u32,
    /// Capture time, when the record has one (pcapng Simple Packet Blocks do not).
    pub ts: Option<Timestamp>,
    /// Captured bytes.
    pub data: &'a [u8],
    /// Length on the wire (more than `data.len()` when the snap length cut the packet).
    pub orig_len: u32,
}

/// Why reading stopped or a record was skipped.
#[derive(Debug, Error)]
pub enum PcapError {
    /// Reading the file failed.
    #[error("reading the capture: {0}")]
    Io(#[from] io::Error),
    /// The file ends inside a record.
    #[error("the capture ends inside a {0}")]
    Truncated(&'static str),
    /// A header that cannot be right; the rest of the file cannot be found reliably.
    #[error("corrupt capture: {0}")]
    Corrupt(String),
    /// One record was skipped; reading continues.
    #[error("{0}")]
    Skipped(String),
}

impl PcapError {
    /// A short stable name.
    pub fn kind(&self) -> &'static str {
        match self {
            PcapError::Io(_) => "io",
            PcapError::Truncated(_) => "capture_truncated",
            PcapError::Corrupt(_) => "capture_corrupt",
            PcapError::Skipped(_) => "record_skipped",
        }
    }

    /// True when reading can go on after this error.
    pub fn is_recoverable(&self) -> bool {
        matches!(self, PcapError::Skipped(_))
    }
}

#[derive(Debug, Clone, Copy)]
enum Resolution {
    /// Units of 10^-n seconds.
    Decimal(u32),
    /// Units of 2^-n seconds.
    Binary(u32),
}

#[derive(Debug, Clone, Copy)]
struct Interface {
    linktype: u32,
    resolution: Resolution,
    offset_secs: i64,
}

#[derive(Debug)]
enum Format {
    Pcap {
        big: bool,
        nanos: bool,
        linktype: u32,
        /// 16, or 24 for the modified format.
        record_header: usize,
    },
    PcapNg {
        big: bool,
        interfaces: Vec<Interface>,
    },
}

/// Most interfaces one pcapng section may declare; more is a corrupt or hostile file.
const MAX_INTERFACES: usize = 4096;

/// Reads packets from a pcap or pcapng stream.
#[derive(Debug)]
pub struct PcapReader<R> {
    r: R,
    format: Format,
    buf: Vec<u8>,
}

impl<R: BufRead> PcapReader<R> {
    /// Reads the file header.
    pub fn new(mut r: R) -> Result<PcapReader<R>, PcapError> {
        let mut magic = [0u8; 4];
        if !read_full(&mut r, &mut magic)? {
            return Err(PcapError::Truncated("file header"));
        }
        let format = match magic {
            [0x0a, 0x0d, 0x0d, 0x0a] => {
                let mut rest = [0u8; 8];
                if !read_full(&mut r, &mut rest)? {
                    return Err(PcapError::Truncated("section header block"));
                }
                let big = section_big_endian(&rest[4..8])?;
                let len = u32_at(&rest[0..4], big) as usize;
                let mut reader = PcapReader {
                    r,
                    format: Format::PcapNg {
                        big,
                        interfaces: Vec::new(),
                    },
                    buf: Vec::new(),
                };
                reader.finish_section_header(len)?;
                return Ok(reader);
            }
            _ => {
                let (big, nanos, record_header) = match magic {
                    [0xa1, 0xb2, 0xc3, 0xd4] => (true, false, 16),
                    [0xd4, 0xc3, 0xb2, 0xa1] => (false, false, 16),
                    [0xa1, 0xb2, 0x3c, 0x4d] => (true, true, 16),
                    [0x4d, 0x3c, 0xb2, 0xa1] => (false, true, 16),
                    [0xa1, 0xb2, 0xcd, 0x34] => (true, false, 24),
                    [0x34, 0xcd, 0xb2, 0xa1] => (false, false, 24),
                    _ => {
                        return Err(PcapError::Corrupt(format!(
                            "not a pcap or pcapng file (magic {magic:02x?})"
                        )));
                    }
                };
                let mut hdr = [0u8; 20];
                if !read_full(&mut r, &mut hdr)? {
                    return Err(PcapError::Truncated("file header"));
                }
                // The upper bits of the link type field carry FCS information.
                let linktype = u32_at(&hdr[16..20], big) & 0x0fff_ffff;
                Format::Pcap {
                    big,
                    nanos,
                    linktype,
                    record_header,
                }
            }
        };
        Ok(PcapReader {
            r,
            format,
            buf: Vec::new(),
        })
    }

    /// The next packet; `Ok(None)` at the end of the file. After a recoverable error
    /// ([`PcapError::is_recoverable`]) call again; after any other, stop.
    pub fn next_packet(&mut self) -> Result<Option<Packet<'_>>, PcapError> {
        match self.format {
            Format::Pcap { .. } => self.next_pcap(),
            Format::PcapNg { .. } => self.next_pcapng(),
        }
    }

    fn next_pcap(&mut self) -> Result<Option<Packet<'_>>, PcapError> {
        let Format::Pcap {
            big,
            nanos,
            linktype,
            record_header,
        } = self.format
        else {
            return Ok(None);
        };
        let mut hdr = [0u8; 24];
        let hdr = &mut hdr[..record_header];
        match read_some(&mut self.r, hdr)? {
            0 => return Ok(None),
            n if n < hdr.len() => return Err(PcapError::Truncated("record header")),
            _ => {}
        }
        let secs = u32_at(&hdr[0..4], big);
        let frac = u32_at(&hdr[4..8], big);
        let incl = u32_at(&hdr[8..12], big) as usize;
        let orig_len = u32_at(&hdr[12..16], big);
        if incl > MAX_RECORD {
            skip(&mut self.r, incl as u64, "record")?;
            return Err(PcapError::Skipped(format!(
                "a record of {incl} bytes exceeds the {MAX_RECORD}-byte limit"
            )));
        }
        self.buf.resize(incl, 0);
        if !read_full(&mut self.r, &mut self.buf)? {
            return Err(PcapError::Truncated("record"));
        }
        let nanos_part = if nanos {
            frac
        } else {
            frac.saturating_mul(1000)
        };
        let ts = Timestamp {
            secs: i64::from(secs) + i64::from(nanos_part / 1_000_000_000),
            nanos: nanos_part % 1_000_000_000,
        };
        Ok(Some(Packet {
            linktype,
            ts: Some(ts),
            data: &self.buf,
            orig_len,
        }))
    }

    fn next_pcapng(&mut self) -> Result<Option<Packet<'_>>, PcapError> {
        loop {
            let Format::PcapNg { big, .. } = self.format else {
                return Ok(None);
            };
            let mut hdr = [0u8; 8];
            match read_some(&mut self.r, &mut hdr)? {
                0 => return Ok(None),
                n if n < 8 => return Err(PcapError::Truncated("block header")),
                _ => {}
            }
            let block_type = u32_at(&hdr[0..4], big);
            if block_type == 0x0a0d_0d0a {
                // A new section; its own byte-order magic decides how to read it.
                let mut bom = [0u8; 4];
                if !read_full(&mut self.r, &mut bom)? {
                    return Err(PcapError::Truncated("section header block"));
                }
                let big = section_big_endian(&bom)?;
                let len = u32_at(&hdr[4..8], big) as usize;
                self.format = Format::PcapNg {
                    big,
                    interfaces: Vec::new(),
                };
                self.finish_section_header(len)?;
                continue;
            }
            let len = u32_at(&hdr[4..8], big) as usize;
            if len < 12 || !len.is_multiple_of(4) {
                return Err(PcapError::Corrupt(format!(
                    "block of type {block_type:#x} has an invalid length {len}"
                )));
            }
            let body_len = len - 12;
            if body_len > MAX_RECORD {
                skip(&mut self.r, len as u64 - 8, "block")?;
                return Err(PcapError::Skipped(format!(
                    "a block of {len} bytes exceeds the {MAX_RECORD}-byte limit"
                )));
            }
            self.buf.resize(body_len + 4, 0);
            if !read_full(&mut self.r, &mut self.buf)? {
                return Err(PcapError::Truncated("block"));
            }
            let trailer = u32_at(&self.buf[body_len..], big) as usize;
            if trailer != len {
                return Err(PcapError::Corrupt(format!(
                    "block of type {block_type:#x}: trailing length {trailer} differs from {len}"
                )));
            }
            match block_type {
                1 => self.interface(body_len)?,
                6 | 2 | 3 => return self.packet_block(block_type, body_len),
                _ => {}
            }
        }
    }

    /// Reads the rest of a section header block whose length field said `len`.
    fn finish_section_header(&mut self, len: usize) -> Result<(), PcapError> {
        if len < 28 || !len.is_multiple_of(4) {
            return Err(PcapError::Corrupt(format!(
                "section header block has an invalid length {len}"
            )));
        }
        // 12 bytes (type, length, byte-order magic) are read already.
        let rest = len - 12;
        if rest > MAX_RECORD {
            skip(&mut self.r, rest as u64, "section header block")?;
            return Ok(());
        }
        self.buf.resize(rest, 0);
        if !read_full(&mut self.r, &mut self.buf)? {
            return Err(PcapError::Truncated("section header block"));
        }
        Ok(())
    }

    fn interface(&mut self, body_len: usize) -> Result<(), PcapError> {
        let Format::PcapNg {
            big,
            ref mut interfaces,
        } = self.format
        else {
            return Ok(());
        };
        let body = &self.buf[..body_len];
        if body.len() < 8 {
            return Err(PcapError::Skipped(
                "interface description block too short".into(),
            ));
        }
        if interfaces.len() >= MAX_INTERFACES {
            return Err(PcapError::Corrupt(format!(
                "more than {MAX_INTERFACES} interfaces in one section"
            )));
        }
        let mut iface = Interface {
            linktype: u32::from(u16_at(&body[0..2], big)),
            resolution: Resolution::Decimal(6),
            offset_secs: 0,
        };
        for (code, value) in options(&body[8..], big) {
            match (code, value) {
                (9, [r, ..]) => {
                    iface.resolution = if r & 0x80 == 0 {
                        Resolution::Decimal(u32::from(*r))
                    } else {
                        Resolution::Binary(u32::from(r & 0x7f))
                    }
                }
                (14, v) if v.len() >= 8 => {
                    iface.offset_secs = u64_at(&v[..8], big) as i64;
                }
                _ => {}
            }
        }
        interfaces.push(iface);
        Ok(())
    }

    fn packet_block(
        &mut self,
        block_type: u32,
        body_len: usize,
    ) -> Result<Option<Packet<'_>>, PcapError> {
        let Format::PcapNg {
            big,
            ref interfaces,
        } = self.format
        else {
            return Ok(None);
        };
        let body = &self.buf[..body_len];
        let short = || PcapError::Skipped(format!("packet block of type {block_type} too short"));
        let (iface_id, ts_raw, caplen, orig_len, data_at) = match block_type {
            // Enhanced Packet Block.
            6 => {
                if body.len() < 20 {
                    return Err(short());
                }
                let ts = (u64::from(u32_at(&body[4..8], big)) << 32)
                    | u64::from(u32_at(&body[8..12], big));
                (
                    u32_at(&body[0..4], big) as usize,
                    Some(ts),
                    u32_at(&body[12..16], big) as usize,
                    u32_at(&body[16..20], big),
                    20,
                )
            }
            // Obsolete Packet Block.
            2 => {
                if body.len() < 20 {
                    return Err(short());
                }
                let ts = (u64::from(u32_at(&body[4..8], big)) << 32)
                    | u64::from(u32_at(&body[8..12], big));
                (
                    usize::from(u16_at(&body[0..2], big)),
                    Some(ts),
                    u32_at(&body[12..16], big) as usize,
                    u32_at(&body[16..20], big),
                    20,
                )
            }
            // Simple Packet Block: interface 0, no timestamp, data fills the block.
            _ => {
                if body.len() < 4 {
                    return Err(short());
                }
                let orig = u32_at(&body[0..4], big);
                let cap = (orig as usize).min(body.len() - 4);
                (0, None, cap, orig, 4)
            }
        };
        let Some(iface) = interfaces.get(iface_id).copied() else {
            return Err(PcapError::Skipped(format!(
                "packet on interface {iface_id}, which the section did not describe"
            )));
        };
        if caplen > body.len() - data_at {
            return Err(PcapError::Skipped(format!(
                "packet of {caplen} bytes does not fit its block"
            )));
        }
        let ts = ts_raw.map(|t| to_timestamp(t, iface.resolution).offset(iface.offset_secs));
        Ok(Some(Packet {
            linktype: iface.linktype,
            ts,
            data: &self.buf[data_at..data_at + caplen],
            orig_len,
        }))
    }
}

fn to_timestamp(t: u64, r: Resolution) -> Timestamp {
    let (secs, nanos) = match r {
        Resolution::Decimal(n) if n <= 19 => {
            let unit = 10u64.pow(n);
            let frac = t % unit;
            let nanos = if n <= 9 {
                frac * 10u64.pow(9 - n)
            } else {
                frac / 10u64.pow(n - 9)
            };
            (t / unit, nanos)
        }
        Resolution::Binary(n) if n < 64 => {
            let frac = t & ((1u64 << n) - 1);
            (t >> n, ((u128::from(frac) * 1_000_000_000) >> n) as u64)
        }
        // A resolution finer than the 64-bit counter can express: read it as nanoseconds.
        _ => (t / 1_000_000_000, t % 1_000_000_000),
    };
    Timestamp {
        secs: i64::try_from(secs).unwrap_or(i64::MAX),
        nanos: nanos as u32,
    }
}

/// pcapng options: (code, value) until `opt_endofopt` or the end of the data.
fn options(mut data: &[u8], big: bool) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 4 {
            return None;
        }
        let code = u16_at(&data[0..2], big);
        let len = usize::from(u16_at(&data[2..4], big));
        if code == 0 || data.len() < 4 + len {
            return None;
        }
        let value = &data[4..4 + len];
        let padded = (4 + len + 3) & !3;
        data = &data[padded.min(data.len())..];
        Some((code, value))
    })
}

fn section_big_endian(bom: &[u8]) -> Result<bool, PcapError> {
    match bom {
        [0x1a, 0x2b, 0x3c, 0x4d] => Ok(true),
        [0x4d, 0x3c, 0x2b, 0x1a] => Ok(false),
        _ => Err(PcapError::Corrupt(format!(
            "section header has an invalid byte-order magic {bom:02x?}"
        ))),
    }
}

fn u16_at(b: &[u8], big: bool) -> u16 {
    let a = [b[0], b[1]];
    if big {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

fn u32_at(b: &[u8], big: bool) -> u32 {
    let a = [b[0], b[1], b[2], b[3]];
    if big {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

fn u64_at(b: &[u8], big: bool) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    if big {
        u64::from_be_bytes(a)
    } else {
        u64::from_le_bytes(a)
    }
}

/// Reads as many bytes as possible into `buf`; returns how many (less only at end of input).
fn read_some<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Fills `buf`; false if the input ended first.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<bool> {
    Ok(read_some(r, buf)? == buf.len())
}

/// Reads past `n` bytes without keeping them.
fn skip<R: Read>(r: &mut R, n: u64, what: &'static str) -> Result<(), PcapError> {
    let got = io::copy(&mut r.take(n), &mut io::sink())?;
    if got < n {
        return Err(PcapError::Truncated(what));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::{
        InterfaceDescriptionBlock, InterfaceDescriptionOption,
    };
    use pcap_file::{DataLink, Endianness, TsResolution};
    use std::borrow::Cow;
    use std::time::Duration;

    /// (link type, time, data, original length) of each packet.
    type Owned = (u32, Option<Timestamp>, Vec<u8>, u32);

    fn all(bytes: &[u8]) -> (Vec<Owned>, Vec<String>) {
        let mut r = match PcapReader::new(bytes) {
            Ok(r) => r,
            Err(e) => return (vec![], vec![e.kind().to_string()]),
        };
        let mut pkts = vec![];
        let mut errs = vec![];
        loop {
            match r.next_packet() {
                Ok(Some(p)) => pkts.push((p.linktype, p.ts, p.data.to_vec(), p.orig_len)),
                Ok(None) => break,
                Err(e) => {
                    errs.push(e.kind().to_string());
                    if !e.is_recoverable() {
                        break;
                    }
                }
            }
        }
        (pkts, errs)
    }

    fn pcap_file(endianness: Endianness, ts_resolution: TsResolution) -> Vec<u8> {
        let header = PcapHeader {
            datalink: DataLink::ETHERNET,
            endianness,
            ts_resolution,
            ..PcapHeader::default()
        };
        let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
        w.write_packet(&PcapPacket::new(
            Duration::new(1_700_000_000, 123_456_000),
            3,
            b"abc",
        ))
        .unwrap();
        w.write_packet(&PcapPacket::new(
            Duration::new(1_700_000_001, 789_000),
            100,
            b"defg",
        ))
        .unwrap();
        w.into_writer()
    }

    #[test]
    fn pcap_in_both_byte_orders_and_resolutions() {
        for e in [Endianness::Big, Endianness::Little] {
            for res in [TsResolution::MicroSecond, TsResolution::NanoSecond] {
                let (pkts, errs) = all(&pcap_file(e, res));
                assert!(errs.is_empty(), "{errs:?}");
                assert_eq!(pkts.len(), 2);
                assert_eq!(pkts[0].0, 1);
                assert_eq!(
                    pkts[0].1,
                    Some(Timestamp {
                        secs: 1_700_000_000,
                        nanos: 123_456_000
                    })
                );
                assert_eq!(pkts[1].2, b"defg");
                assert_eq!(pkts[1].3, 100);
                assert_eq!(pkts[1].1.unwrap().millis(), 1_700_000_001_000);
            }
        }
    }

    #[test]
    fn truncated_and_oversize_records() {
        let file = pcap_file(Endianness::Little, TsResolution::MicroSecond);
        let (pkts, errs) = all(&file[..file.len() - 2]);
        assert_eq!(
            (pkts.len(), errs),
            (1, vec!["capture_truncated".to_string()])
        );
        let (pkts, errs) = all(&file[..10]);
        assert_eq!(
            (pkts.len(), errs),
            (0, vec!["capture_truncated".to_string()])
        );
        // A record claiming 1 GiB is skipped by reading past it (here: to the end).
        let mut big = file[..24].to_vec();
        big.extend_from_slice(&[0; 8]);
        big.extend_from_slice(&(1u32 << 30).to_le_bytes());
        big.extend_from_slice(&(1u32 << 30).to_le_bytes());
        big.extend_from_slice(&[0; 100]);
        let (pkts, errs) = all(&big);
        assert_eq!(pkts.len(), 0);
        assert_eq!(errs, vec!["capture_truncated"]);
    }

    /// pcap-file 2 writes Enhanced Packet Block times in nanoseconds whatever the interface says,
    /// so its files declare `if_tsresol` 9 to be consistent.
    fn pcapng_file(endianness: Endianness) -> Vec<u8> {
        let mut w = PcapNgWriter::with_endianness(Vec::new(), endianness).unwrap();
        for linktype in [DataLink::LINUX_SLL, DataLink::RAW] {
            w.write_pcapng_block(InterfaceDescriptionBlock {
                linktype,
                snaplen: 0xffff,
                options: vec![InterfaceDescriptionOption::IfTsResol(9)],
            })
            .unwrap();
        }
        for (iface, data) in [(0u32, &b"hello"[..]), (1, b"xyz")] {
            w.write_pcapng_block(EnhancedPacketBlock {
                interface_id: iface,
                timestamp: Duration::new(1_700_000_000, 5_000),
                original_len: data.len() as u32,
                data: Cow::Borrowed(data),
                options: vec![],
            })
            .unwrap();
        }
        w.into_inner()
    }

    #[test]
    fn pcapng_interfaces_and_byte_orders() {
        for e in [Endianness::Big, Endianness::Little] {
            let (pkts, errs) = all(&pcapng_file(e));
            assert!(errs.is_empty(), "{errs:?}");
            assert_eq!(pkts.len(), 2);
            assert_eq!((pkts[0].0, &pkts[0].2[..]), (113, &b"hello"[..]));
            assert_eq!((pkts[1].0, &pkts[1].2[..]), (101, &b"xyz"[..]));
            assert_eq!(
                pkts[0].1,
                Some(Timestamp {
                    secs: 1_700_000_000,
                    nanos: 5_000
                })
            );
        }
    }

    #[test]
    fn pcapng_second_section_resets_interfaces() {
        let mut file = pcapng_file(Endianness::Little);
        let second = pcapng_file(Endianness::Big);
        file.extend_from_slice(&second);
        let (pkts, errs) = all(&file);
        assert!(errs.is_empty(), "{errs:?}");
        assert_eq!(pkts.len(), 4);
    }

    #[test]
    fn pcapng_timestamp_resolutions() {
        assert_eq!(
            to_timestamp(1_700_000_000_123_456_789, Resolution::Decimal(9)),
            Timestamp {
                secs: 1_700_000_000,
                nanos: 123_456_789
            }
        );
        assert_eq!(
            to_timestamp(3 << 10 | 512, Resolution::Binary(10)),
            Timestamp {
                secs: 3,
                nanos: 500_000_000
            }
        );
        assert_eq!(
            to_timestamp(15, Resolution::Decimal(1)),
            Timestamp {
                secs: 1,
                nanos: 500_000_000
            }
        );
        // Nonsense resolutions do not panic.
        for r in [
            Resolution::Decimal(200),
            Resolution::Binary(127),
            Resolution::Binary(0),
            Resolution::Decimal(19),
        ] {
            let _ = to_timestamp(u64::MAX, r);
        }
    }

    #[test]
    fn pcapng_bad_blocks() {
        let good = pcapng_file(Endianness::Little);
        // A block length that is not a multiple of 4 is corrupt.
        let mut bad = good.clone();
        let shb_len = u32::from_le_bytes(bad[4..8].try_into().unwrap()) as usize;
        bad[shb_len + 4] = 13;
        let (_, errs) = all(&bad);
        assert_eq!(errs, vec!["capture_corrupt"]);
        // A packet on an interface nobody described is skipped, the rest is read.
        let mut bad = good.clone();
        let last_epb = bad.len() - (32 + 4);
        assert_eq!(&bad[last_epb..last_epb + 4], &6u32.to_le_bytes());
        bad[last_epb + 8] = 7;
        let (pkts, errs) = all(&bad);
        assert_eq!((pkts.len(), errs), (1, vec!["record_skipped".to_string()]));
    }

    /// pcap-file's own reader agrees with ours on what it wrote.
    #[test]
    fn agrees_with_pcap_file_reader() {
        let file = pcapng_file(Endianness::Little);
        let mut theirs = pcap_file::pcapng::PcapNgReader::new(&file[..]).unwrap();
        let mut n = 0;
        let (ours, _) = all(&file);
        while let Some(b) = theirs.next_block() {
            if let pcap_file::pcapng::Block::EnhancedPacket(p) = b.unwrap() {
                assert_eq!(&ours[n].2[..], &p.data[..]);
                n += 1;
            }
        }
        assert_eq!(n, ours.len());
    }
}
