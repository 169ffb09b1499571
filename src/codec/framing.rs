//! CSTA XML transport framing (`reference/protocols.md` §2.1).
//!
//! Every message starts with an 8-byte header: `00 00`, a big-endian u16 *total* length that includes
//! the header, and the invoke id as four ASCII digits (`9999` marks an unsolicited event). The framer
//! is sans-IO: [`Deframer`] is fed bytes and hands back frames, so any split or coalescing of reads
//! decodes to the same frames.
//!
//! A framer error never poisons the stream: after a bad header the deframer scans forward for the next
//! plausible header (`00 00 len dddd <`), and an oversize frame is skipped by its declared length
//! without being buffered.

use bytes::{Buf, Bytes, BytesMut};
use thiserror::Error;

/// Length of the CSTA XML frame header.
pub const HEADER_LEN: usize = 8;
/// Invoke id used by switches for unsolicited events.
pub const EVENT_INVOKE_ID: InvokeId = InvokeId(9999);
/// Largest frame the 16-bit length field can describe.
pub const MAX_WIRE_FRAME: usize = u16::MAX as usize;

/// A CSTA XML invoke id, 0..=9999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InvokeId(pub u16);

impl InvokeId {
    /// Parses four ASCII digits.
    pub fn parse(digits: &[u8]) -> Option<InvokeId> {
        if digits.len() != 4 || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let v = digits
            .iter()
            .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
        Some(InvokeId(v))
    }

    /// The four ASCII digits of this id.
    pub fn digits(self) -> [u8; 4] {
        let v = self.0 % 10_000;
        [
            b'0' + (v / 1000) as u8,
            b'0' + (v / 100 % 10) as u8,
            b'0' + (v / 10 % 10) as u8,
            b'0' + (v % 10) as u8,
        ]
    }

    /// True for the id switches use for unsolicited events.
    pub fn is_event(self) -> bool {
        self == EVENT_INVOKE_ID
    }
}

impl std::fmt::Display for InvokeId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}", self.0)
    }
}

/// A framing error. Each is recoverable: the deframer resynchronises after reporting it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The first two bytes were not `00 00`, or the invoke id was not four digits, or the length was
    /// shorter than the header. `skipped` bytes were discarded while resynchronising.
    #[error("bad frame header {header:02x?} ({reason}); skipped {skipped} bytes to resynchronise")]
    BadHeader {
        /// The offending 8 bytes.
        header: [u8; HEADER_LEN],
        /// What was wrong with them.
        reason: &'static str,
        /// Bytes discarded before the next plausible header.
        skipped: usize,
    },
    /// The header announced a frame longer than the configured cap; the frame is skipped.
    #[error("frame of {len} bytes exceeds the cap of {cap} bytes; skipped")]
    Oversize {
        /// Announced total length.
        len: usize,
        /// Configured cap.
        cap: usize,
    },
}

impl FrameError {
    /// A short stable name for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            FrameError::BadHeader { .. } => "bad_header",
            FrameError::Oversize { .. } => "oversize",
        }
    }
}

/// One decoded frame: the invoke id and the XML body (header stripped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Invoke id from the header.
    pub invoke_id: InvokeId,
    /// The XML document.
    pub body: Bytes,
}

/// Why a header was rejected, or `None` if it is plausible.
fn check_header(h: &[u8], cap: usize) -> Result<(InvokeId, usize), HeaderProblem> {
    if h[0] != 0 || h[1] != 0 {
        return Err(HeaderProblem::Bad("version bytes are not 00 00"));
    }
    let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    let Some(id) = InvokeId::parse(&h[4..8]) else {
        return Err(HeaderProblem::Bad("invoke id is not four ASCII digits"));
    };
    if len < HEADER_LEN {
        return Err(HeaderProblem::Bad("length is shorter than the header"));
    }
    if len > cap {
        return Err(HeaderProblem::Oversize(len));
    }
    Ok((id, len))
}

enum HeaderProblem {
    Bad(&'static str),
    Oversize(usize),
}

/// Incremental deframer for the 8-byte header framing.
#[derive(Debug)]
pub struct Deframer {
    buf: BytesMut,
    cap: usize,
    /// Bytes of an oversize frame still to discard.
    skip: usize,
    /// After a bad header, until a plausible header (`00 00 len dddd <`) is found: the next header
    /// must pass that stricter test too, however the reads were cut, so the frames found never
    /// depend on where a read ended.
    resyncing: bool,
    /// Bytes discarded while still resynchronising, not reported in a [`FrameError`] yet.
    discarded: usize,
}

impl Deframer {
    /// A deframer accepting frames of at most `cap` total bytes (clamped to 8..=65535).
    pub fn new(cap: usize) -> Deframer {
        Deframer {
            buf: BytesMut::with_capacity(8 * 1024),
            cap: cap.clamp(HEADER_LEN, MAX_WIRE_FRAME),
            skip: 0,
            resyncing: false,
            discarded: 0,
        }
    }

    /// Takes the count of bytes discarded since the last call while looking for a plausible
    /// header after a [`FrameError::BadHeader`] (the error's `skipped` counts only the bytes
    /// discarded by then). A caller that reports stream offsets adds them to the bad run and
    /// to the offset of whatever `next_frame` returned.
    pub fn take_discarded(&mut self) -> usize {
        std::mem::take(&mut self.discarded)
    }

    /// The configured frame cap.
    pub fn cap(&self) -> usize {
        self.cap
    }

    /// Appends received bytes.
    pub fn push(&mut self, data: &[u8]) {
        let n = data.len().min(self.skip);
        self.skip -= n;
        self.buf.extend_from_slice(&data[n..]);
    }

    /// The read buffer, for reading straight into it (`AsyncReadExt::read_buf`). Call
    /// [`Deframer::after_read`] once bytes were appended.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Applies a pending oversize skip to bytes appended through [`Deframer::buffer_mut`].
    pub fn after_read(&mut self) {
        let n = self.buf.len().min(self.skip);
        self.buf.advance(n);
        self.skip -= n;
    }

    /// Bytes buffered but not yet returned as a frame (a partial frame at end of stream).
    pub fn pending(&self) -> usize {
        self.buf.len() + self.skip
    }

    /// Returns the next complete frame, `Ok(None)` if more bytes are needed, or an error describing
    /// bytes that were discarded. After an error, call again: the stream continues.
    ///
    /// A run of garbage is reported once, as the [`FrameError::BadHeader`] that starts it; its
    /// `skipped` counts the bytes discarded by then, and bytes discarded later while still looking
    /// for a plausible header are not reported again.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        if self.skip > 0 {
            return Ok(None);
        }
        while self.resyncing {
            if self.buf.len() <= HEADER_LEN {
                return Ok(None);
            }
            if plausible(&self.buf) {
                self.resyncing = false;
            } else {
                // Not here: look from the next byte on.
                self.discarded += self.resync();
            }
        }
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        match check_header(&self.buf[..HEADER_LEN], self.cap) {
            Ok((invoke_id, len)) => {
                if self.buf.len() < len {
                    self.buf.reserve(len - self.buf.len());
                    return Ok(None);
                }
                let mut frame = self.buf.split_to(len);
                frame.advance(HEADER_LEN);
                Ok(Some(Frame {
                    invoke_id,
                    body: frame.freeze(),
                }))
            }
            Err(HeaderProblem::Oversize(len)) => {
                let have = self.buf.len().min(len);
                self.buf.advance(have);
                self.skip = len - have;
                Err(FrameError::Oversize { len, cap: self.cap })
            }
            Err(HeaderProblem::Bad(reason)) => {
                let mut header = [0u8; HEADER_LEN];
                header.copy_from_slice(&self.buf[..HEADER_LEN]);
                let skipped = self.resync();
                Err(FrameError::BadHeader {
                    header,
                    reason,
                    skipped,
                })
            }
        }
    }

    /// Discards bytes up to the next plausible header (see [`plausible`]), starting one byte in.
    /// Keeps a tail that might be the start of such a header; until a plausible header is found
    /// the deframer stays `resyncing`. Returns the bytes discarded.
    fn resync(&mut self) -> usize {
        let b = &self.buf[..];
        let mut i = 1;
        self.resyncing = true;
        while i < b.len() {
            let Some(off) = memchr::memchr(0, &b[i..]) else {
                i = b.len();
                break;
            };
            i += off;
            let rest = &b[i..];
            if rest.len() < HEADER_LEN + 1 {
                // Might be a header cut short; keep it and decide when more bytes arrive.
                break;
            }
            if plausible(rest) {
                self.resyncing = false;
                break;
            }
            i += 1;
        }
        let i = i.min(b.len());
        self.buf.advance(i);
        i
    }
}

/// Whether `b` starts with a header worth resynchronising to: `00 00`, a length of at least the
/// header, four digits, then `<` (an XML body starts with a tag or declaration). `b` must hold at
/// least nine bytes.
fn plausible(b: &[u8]) -> bool {
    b.len() > HEADER_LEN
        && check_header(&b[..HEADER_LEN], MAX_WIRE_FRAME).is_ok()
        && b[HEADER_LEN] == b'<'
}

/// Encodes one frame (header + body) into `out`.
///
/// Fails if the frame would not fit the 16-bit length field.
pub fn encode_frame(invoke_id: InvokeId, body: &[u8], out: &mut BytesMut) -> Result<(), TooLarge> {
    let total = body.len() + HEADER_LEN;
    let Ok(len) = u16::try_from(total) else {
        return Err(TooLarge(total));
    };
    out.reserve(total);
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&invoke_id.digits());
    out.extend_from_slice(body);
    Ok(())
}

/// A frame body too large for the 16-bit length field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("frame of {0} bytes does not fit the 16-bit length field")]
pub struct TooLarge(pub usize);

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(id: u16, body: &str) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_frame(InvokeId(id), body.as_bytes(), &mut out).unwrap();
        out.to_vec()
    }

    fn drain(d: &mut Deframer) -> (Vec<Frame>, Vec<FrameError>) {
        let (mut frames, mut errs) = (vec![], vec![]);
        loop {
            match d.next_frame() {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => return (frames, errs),
                Err(e) => errs.push(e),
            }
        }
    }

    #[test]
    fn invoke_id_digits_round_trip() {
        for v in [0u16, 7, 42, 999, 1000, 9998, 9999] {
            assert_eq!(InvokeId::parse(&InvokeId(v).digits()), Some(InvokeId(v)));
        }
        assert_eq!(InvokeId::parse(b"12a4"), None);
        assert_eq!(InvokeId::parse(b"123"), None);
        assert_eq!(InvokeId(42).to_string(), "0042");
    }

    #[test]
    fn decodes_the_osv_sample_header() {
        // 0x03eb = 1003 total bytes, as in the captured OSV ServiceInitiatedEvent.
        let body = vec![b'<'; 1003 - 8];
        let mut bytes = vec![0, 0, 0x03, 0xeb];
        bytes.extend_from_slice(b"9999");
        bytes.extend_from_slice(&body);
        let mut d = Deframer::new(MAX_WIRE_FRAME);
        d.push(&bytes);
        let f = d.next_frame().unwrap().unwrap();
        assert!(f.invoke_id.is_event());
        assert_eq!(f.body.len(), 995);
        assert_eq!(d.pending(), 0);
    }

    #[test]
    fn split_and_coalesced() {
        let mut stream = frame(1, "<a/>");
        stream.extend(frame(9999, "<b>x</b>"));
        stream.extend(frame(2, "<c/>"));
        for split in 0..stream.len() {
            let mut d = Deframer::new(1024);
            d.push(&stream[..split]);
            let (mut frames, errs) = drain(&mut d);
            d.push(&stream[split..]);
            let (more, errs2) = drain(&mut d);
            frames.extend(more);
            assert!(errs.is_empty() && errs2.is_empty());
            assert_eq!(frames.len(), 3, "split at {split}");
            assert_eq!(&frames[1].body[..], b"<b>x</b>");
        }
    }

    #[test]
    fn bad_header_resyncs_to_next_frame() {
        let mut stream = b"garbage!garbage!".to_vec();
        stream.extend(frame(3, "<ok/>"));
        let mut d = Deframer::new(1024);
        d.push(&stream);
        let (frames, errs) = drain(&mut d);
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].kind(), "bad_header");
        assert_eq!(frames.len(), 1);
        assert_eq!(&frames[0].body[..], b"<ok/>");
    }

    /// Found by fuzzing: a header-like run right after garbage, cut by a read boundary, used to
    /// be taken as a frame on the next read although a single read skipped it.
    #[test]
    fn resync_does_not_depend_on_read_boundaries() {
        let mut stream = b"garbage!".to_vec();
        // Looks like a header but no `<` follows: not a place to resynchronise to.
        stream.extend_from_slice(b"\0\0\0\x102001/XMLxxxx");
        stream.extend(frame(7, "<ok/>"));
        let whole = {
            let mut d = Deframer::new(1024);
            d.push(&stream);
            drain(&mut d).0
        };
        assert_eq!(whole.len(), 1);
        for split in 0..stream.len() {
            let mut d = Deframer::new(1024);
            d.push(&stream[..split]);
            let (mut frames, _) = drain(&mut d);
            d.push(&stream[split..]);
            frames.extend(drain(&mut d).0);
            assert_eq!(frames, whole, "split at {split}");
        }
    }

    #[test]
    fn bad_invoke_id_and_short_length_are_rejected() {
        let mut d = Deframer::new(1024);
        d.push(&[0, 0, 0, 12, b'1', b'x', b'3', b'4', b'<', b'a', b'/', b'>']);
        assert!(matches!(d.next_frame(), Err(FrameError::BadHeader { .. })));
        let mut d = Deframer::new(1024);
        d.push(&[0, 0, 0, 4, b'1', b'2', b'3', b'4']);
        assert!(matches!(d.next_frame(), Err(FrameError::BadHeader { .. })));
    }

    #[test]
    fn oversize_is_skipped_without_buffering() {
        let big = "x".repeat(2000);
        let mut stream = frame(5, &format!("<big>{big}</big>"));
        stream.extend(frame(6, "<after/>"));
        let mut d = Deframer::new(512);
        // Feed in small pieces: the skip must span pushes.
        let mut frames = vec![];
        let mut errs = vec![];
        for chunk in stream.chunks(100) {
            d.push(chunk);
            let (f, e) = drain(&mut d);
            frames.extend(f);
            errs.extend(e);
            assert!(d.buffer_mut().len() <= 512);
        }
        assert_eq!(errs.len(), 1);
        assert!(matches!(errs[0], FrameError::Oversize { cap: 512, .. }));
        assert_eq!(frames.len(), 1);
        assert_eq!(&frames[0].body[..], b"<after/>");
    }

    #[test]
    fn too_large_to_encode() {
        let mut out = BytesMut::new();
        let body = vec![b'x'; MAX_WIRE_FRAME];
        assert!(encode_frame(InvokeId(1), &body, &mut out).is_err());
    }
}
