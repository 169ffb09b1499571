//! TCP reassembly for one direction of one connection.
//!
//! Segments are placed by sequence number, so reordering, retransmission and overlap decode to the
//! same byte stream; the first copy of a byte wins, as in most TCP stacks. Sequence numbers are
//! compared as signed 32-bit distances from the next expected byte, so a stream that wraps past
//! `u32::MAX` reassembles like any other. Stream offsets are 64-bit and never wrap.
//!
//! A missing range becomes a [`Delivery::Gap`] only once it can no longer arrive: the receiver
//! acknowledged bytes the capture never had (the capture dropped them), the out-of-order buffer hit
//! its cap, or the stream ended. Until then later data waits in a bounded buffer.

use std::collections::BTreeMap;

/// Out-of-order segments held at once per direction; past this the oldest hole becomes a gap.
/// Bounds the per-segment overhead the byte cap does not see (many one-byte segments).
const MAX_PENDING_SEGMENTS: usize = 4096;

/// Largest distance, in bytes, an acknowledgement may run ahead of the data we have before we
/// distrust it. TCP windows reach 1 GiB with scaling; an ACK further ahead belongs to another
/// connection or is garbage.
const MAX_ACK_AHEAD: i64 = 1 << 30;
/// How far past the next expected byte a captured RST may point and still be believed. RFC 5961
/// wants the exact next byte; a capture may lack some data before it, but not megabytes.
const MAX_RST_AHEAD: i64 = 1 << 20;

/// One TCP segment of this direction, as captured.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    /// Sequence number of the first byte (of the SYN, when `syn` is set).
    pub seq: u32,
    /// SYN flag.
    pub syn: bool,
    /// FIN flag.
    pub fin: bool,
    /// RST flag.
    pub rst: bool,
    /// Captured payload (a prefix only, when the capture's snap length cut the packet).
    pub payload: &'a [u8],
}

/// Why a range of the stream will never be seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapReason {
    /// The receiver acknowledged bytes the capture never had.
    AckedUnseen,
    /// Later data filled the out-of-order buffer while waiting for the hole to be filled.
    BufferLimit,
    /// The stream ended (FIN, RST, end of capture) with the hole still open.
    StreamEnd,
}

impl GapReason {
    /// A short explanation for the error's detail.
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::AckedUnseen => "the receiver acknowledged bytes the capture does not have",
            GapReason::BufferLimit => "out-of-order data reached the per-flow buffer cap",
            GapReason::StreamEnd => "the stream ended before the missing bytes were seen",
        }
    }
}

/// Why a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// FIN reached in sequence.
    Fin,
    /// RST seen.
    Reset,
    /// A SYN with a new initial sequence number reused the addresses: a new connection begins.
    Restart,
    /// The capture ended.
    CaptureEnd,
    /// The flow table was full and this flow was the least recently active.
    Evicted,
}

impl EndReason {
    /// A short name for the error's detail.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Fin => "FIN",
            EndReason::Reset => "RST",
            EndReason::Restart => "a new connection on the same addresses",
            EndReason::CaptureEnd => "end of capture",
            EndReason::Evicted => "flow table full",
        }
    }
}

/// What the reassembler hands on, in stream order.
#[derive(Debug, PartialEq, Eq)]
pub enum Delivery<'a> {
    /// In-order bytes starting at stream `offset`.
    Data {
        /// Stream offset of the first byte.
        offset: u64,
        /// The bytes.
        bytes: &'a [u8],
    },
    /// Bytes `offset..offset + len` will never be seen; data continues after them.
    Gap {
        /// Stream offset of the first missing byte.
        offset: u64,
        /// Number of missing bytes.
        len: u64,
        /// Why the range is given up.
        reason: GapReason,
    },
    /// The stream ended at `offset`. Data after this starts a new stream at offset 0.
    End {
        /// Stream offset of the end.
        offset: u64,
        /// Why.
        reason: EndReason,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing seen yet.
    Idle,
    /// Receiving; `next` is the sequence number of the byte at stream `offset`.
    Open,
    /// Ended; later segments without a new SYN are retransmissions and are ignored.
    Closed,
}

/// Reassembles one direction of a TCP connection.
#[derive(Debug)]
pub struct Reassembler {
    state: State,
    /// Sequence number of the next expected byte.
    next: u32,
    /// Stream offset of the next expected byte.
    offset: u64,
    /// Initial sequence number, when the SYN was captured.
    isn: Option<u32>,
    /// Stream offset of the FIN, once seen.
    fin_at: Option<u64>,
    /// Stream offset up to which the other side acknowledged: bytes before it that the capture
    /// lacks are lost, once this direction's later data shows the capture is past them.
    acked: Option<u64>,
    /// Data ahead of `offset`, keyed by stream offset.
    pending: BTreeMap<u64, Vec<u8>>,
    pending_bytes: usize,
    cap: usize,
    /// The capture began after the connection's SYN.
    midstream: bool,
}

impl Reassembler {
    /// A reassembler holding at most `cap` bytes of out-of-order data.
    pub fn new(cap: usize) -> Reassembler {
        Reassembler {
            state: State::Idle,
            next: 0,
            offset: 0,
            isn: None,
            fin_at: None,
            acked: None,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            cap,
            midstream: false,
        }
    }

    /// True when the first segment seen was not a SYN: the stream may begin inside a frame.
    pub fn midstream(&self) -> bool {
        self.midstream
    }

    /// True until the first segment that carries data, a SYN or a FIN.
    pub fn is_idle(&self) -> bool {
        self.state == State::Idle
    }

    /// True once the stream ended and no new connection began since.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// Bytes held out of order.
    pub fn pending_bytes(&self) -> usize {
        self.pending_bytes
    }

    /// Takes one captured segment of this direction.
    pub fn segment(&mut self, seg: &Segment<'_>, sink: &mut dyn FnMut(Delivery<'_>)) {
        let data_seq = if seg.syn {
            match self.state {
                State::Idle => self.open(seg.seq.wrapping_add(1), Some(seg.seq), false),
                // A retransmitted SYN.
                _ if self.isn == Some(seg.seq) => {}
                State::Open | State::Closed => {
                    if self.state == State::Open {
                        self.finish(EndReason::Restart, sink);
                    }
                    self.open(seg.seq.wrapping_add(1), Some(seg.seq), false);
                }
            }
            seg.seq.wrapping_add(1)
        } else {
            if self.state == State::Idle {
                if seg.payload.is_empty() && !seg.fin {
                    // A bare ACK tells us nothing about where this direction's data starts.
                    return;
                }
                self.open(seg.seq, None, true);
            } else if self.state == State::Closed && !seg.payload.is_empty() {
                // Data after the end: a retransmission of what came before it is ignored;
                // anything else is a new connection on the same addresses whose SYN the
                // capture lacks, decoded from where it starts rather than dropped unseen.
                let behind = i64::from(self.next.wrapping_sub(seg.seq) as i32);
                if !(0..=MAX_RST_AHEAD).contains(&behind) {
                    self.open(seg.seq, None, true);
                }
            }
            seg.seq
        };
        if self.state != State::Open {
            return;
        }
        let distance = i64::from(data_seq.wrapping_sub(self.next) as i32);
        if seg.rst {
            // A reset is believed only at a plausible place in the stream (RFC 5961 asks for the
            // exact next byte; a capture may have lost some): a stray one ends nothing.
            if (0..=MAX_RST_AHEAD).contains(&distance) {
                self.finish(EndReason::Reset, sink);
            }
            return;
        }
        // The offset cannot go below zero: data before the first byte we anchored on is history.
        let mut start = self.offset as i64 + distance;
        let seg_start = start;
        let mut bytes = seg.payload;
        if seg.fin && self.fin_at.is_none() {
            let end = start + bytes.len() as i64;
            if end >= self.offset as i64 {
                self.fin_at = Some(end as u64);
            }
        }
        if start < self.offset as i64 {
            let trim = (self.offset as i64 - start).min(bytes.len() as i64);
            bytes = &bytes[trim as usize..];
            start += trim;
        }
        if !bytes.is_empty() {
            let start = start as u64;
            if start == self.offset {
                sink(Delivery::Data {
                    offset: self.offset,
                    bytes,
                });
                self.advance(bytes.len() as u64);
                self.drain(sink);
            } else {
                self.hold(start, bytes);
                while self.pending_bytes > self.cap || self.pending.len() > MAX_PENDING_SEGMENTS {
                    self.skip_hole(GapReason::BufferLimit, sink);
                }
            }
        }
        // Data (or the FIN) from at or beyond the acknowledged point: the capture has moved past
        // the acknowledged bytes it lacks, so they are lost. Before that, they may still come:
        // captures often hold an ACK ahead of the data it acknowledges.
        if (!seg.payload.is_empty() || seg.fin) && self.acked.is_some_and(|a| seg_start >= a as i64)
        {
            self.settle_acked(sink);
        }
        self.check_fin(sink);
    }

    /// Takes an acknowledgement number seen in the other direction: the receiver has every byte
    /// before it, so bytes before it that the capture lacks are lost to the capture for good, as
    /// soon as this direction's later data shows they are not merely late (see [`Self::segment`]).
    pub fn ack(&mut self, ack: u32, sink: &mut dyn FnMut(Delivery<'_>)) {
        if self.state != State::Open {
            return;
        }
        let ahead = i64::from(ack.wrapping_sub(self.next) as i32);
        if ahead <= 0 || ahead > MAX_ACK_AHEAD {
            return;
        }
        let acked = self.offset + ahead as u64;
        self.acked = Some(self.acked.map_or(acked, |a| a.max(acked)));
        // Nothing is lost yet; a FIN already seen means no later data will settle it.
        if self.fin_at.is_some() {
            self.settle_acked(sink);
        }
    }

    /// Turns every hole before the acknowledged point into a gap; held data between the holes is
    /// still good.
    fn settle_acked(&mut self, sink: &mut dyn FnMut(Delivery<'_>)) {
        let Some(mut acked) = self.acked.take() else {
            return;
        };
        if self.state != State::Open {
            return;
        }
        // The FIN takes a sequence number but carries no byte.
        if let Some(f) = self.fin_at {
            acked = acked.min(f);
        }
        while acked > self.offset {
            let hole_end = self
                .pending
                .first_key_value()
                .map_or(acked, |(&start, _)| start.min(acked));
            if hole_end > self.offset {
                let len = hole_end - self.offset;
                sink(Delivery::Gap {
                    offset: self.offset,
                    len,
                    reason: GapReason::AckedUnseen,
                });
                self.advance(len);
            }
            self.drain(sink);
        }
        self.check_fin(sink);
    }

    /// Ends the stream (end of capture, eviction): open holes become gaps, held data is delivered.
    pub fn finish(&mut self, reason: EndReason, sink: &mut dyn FnMut(Delivery<'_>)) {
        if self.state != State::Open {
            return;
        }
        self.settle_acked(sink);
        while !self.pending.is_empty() {
            self.skip_hole(GapReason::StreamEnd, sink);
        }
        self.close(reason, sink);
    }

    fn open(&mut self, next: u32, isn: Option<u32>, midstream: bool) {
        self.state = State::Open;
        self.next = next;
        self.offset = 0;
        self.isn = isn;
        self.fin_at = None;
        self.acked = None;
        self.pending.clear();
        self.pending_bytes = 0;
        self.midstream = midstream;
    }

    fn close(&mut self, reason: EndReason, sink: &mut dyn FnMut(Delivery<'_>)) {
        sink(Delivery::End {
            offset: self.offset,
            reason,
        });
        self.state = State::Closed;
        self.pending.clear();
        self.pending_bytes = 0;
    }

    fn advance(&mut self, n: u64) {
        self.offset += n;
        // Sequence numbers are modulo 2^32; truncation is the point.
        self.next = self.next.wrapping_add(n as u32);
    }

    fn hold(&mut self, start: u64, bytes: &[u8]) {
        match self.pending.get_mut(&start) {
            // The first copy wins where two overlap (as for data delivered in order); a longer
            // one only adds its tail.
            Some(have) if have.len() >= bytes.len() => {}
            Some(have) => {
                self.pending_bytes += bytes.len() - have.len();
                have.extend_from_slice(&bytes[have.len()..]);
            }
            None => {
                self.pending_bytes += bytes.len();
                self.pending.insert(start, bytes.to_vec());
            }
        }
    }

    /// Delivers held data that now continues the stream.
    fn drain(&mut self, sink: &mut dyn FnMut(Delivery<'_>)) {
        while let Some(entry) = self.pending.first_entry() {
            let start = *entry.key();
            if start > self.offset {
                break;
            }
            let data = entry.remove();
            self.pending_bytes -= data.len();
            let end = start + data.len() as u64;
            if end <= self.offset {
                continue;
            }
            let from = (self.offset - start) as usize;
            sink(Delivery::Data {
                offset: self.offset,
                bytes: &data[from..],
            });
            self.advance((data.len() - from) as u64);
        }
    }

    /// Gives up the hole before the first held segment and delivers what follows it.
    fn skip_hole(&mut self, reason: GapReason, sink: &mut dyn FnMut(Delivery<'_>)) {
        let Some((&start, _)) = self.pending.first_key_value() else {
            return;
        };
        if start > self.offset {
            let len = start - self.offset;
            sink(Delivery::Gap {
                offset: self.offset,
                len,
                reason,
            });
            self.advance(len);
        }
        self.drain(sink);
    }

    fn check_fin(&mut self, sink: &mut dyn FnMut(Delivery<'_>)) {
        if self.state == State::Open && self.fin_at.is_some_and(|f| f <= self.offset) {
            self.close(EndReason::Fin, sink);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq, Clone)]
    enum D {
        Data(u64, Vec<u8>),
        Gap(u64, u64, GapReason),
        End(u64, EndReason),
    }

    fn run(r: &mut Reassembler, segs: &[Segment<'_>]) -> Vec<D> {
        let mut out = vec![];
        for s in segs {
            r.segment(s, &mut |d| out.push(own(d)));
        }
        out
    }

    fn own(d: Delivery<'_>) -> D {
        match d {
            Delivery::Data { offset, bytes } => D::Data(offset, bytes.to_vec()),
            Delivery::Gap {
                offset,
                len,
                reason,
            } => D::Gap(offset, len, reason),
            Delivery::End { offset, reason } => D::End(offset, reason),
        }
    }

    fn seg(seq: u32, payload: &[u8]) -> Segment<'_> {
        Segment {
            seq,
            syn: false,
            fin: false,
            rst: false,
            payload,
        }
    }

    fn syn(seq: u32) -> Segment<'static> {
        Segment {
            syn: true,
            ..seg(seq, b"")
        }
    }

    fn fin(seq: u32, payload: &[u8]) -> Segment<'_> {
        Segment {
            fin: true,
            ..seg(seq, payload)
        }
    }

    /// Concatenated data, with gaps as `?` bytes, and the non-data deliveries.
    fn flatten(ds: &[D]) -> (Vec<u8>, Vec<D>) {
        let mut bytes = vec![];
        let mut other = vec![];
        for d in ds {
            match d {
                D::Data(o, b) => {
                    assert_eq!(*o as usize, bytes.len(), "data out of order: {ds:?}");
                    bytes.extend_from_slice(b);
                }
                D::Gap(o, l, _) => {
                    assert_eq!(*o as usize, bytes.len());
                    bytes.extend(std::iter::repeat_n(b'?', *l as usize));
                    other.push(d.clone());
                }
                D::End(..) => other.push(d.clone()),
            }
        }
        (bytes, other)
    }

    #[test]
    fn in_order_with_syn_and_fin() {
        let mut r = Reassembler::new(1 << 20);
        let out = run(&mut r, &[syn(100), seg(101, b"hello "), fin(107, b"world")]);
        let (bytes, other) = flatten(&out);
        assert_eq!(bytes, b"hello world");
        assert_eq!(other, vec![D::End(11, EndReason::Fin)]);
        assert!(r.is_closed() && !r.midstream());
        // A retransmitted FIN after the close is ignored.
        assert!(run(&mut r, &[fin(107, b"world")]).is_empty());
    }

    #[test]
    fn reordering_retransmission_and_overlap() {
        let mut r = Reassembler::new(1 << 20);
        let out = run(
            &mut r,
            &[
                syn(1000),
                seg(1007, b"ghij"),   // ahead: held
                seg(1011, b"klm"),    // ahead: held
                seg(1001, b"abc"),    // in order
                seg(1001, b"abc"),    // retransmission
                seg(1003, b"cdefgh"), // overlaps both sides; fills the hole
                seg(1009, b"ij"),     // old
                fin(1014, b"n"),
            ],
        );
        let (bytes, other) = flatten(&out);
        assert_eq!(bytes, b"abcdefghijklmn");
        assert_eq!(other, vec![D::End(14, EndReason::Fin)]);
        assert_eq!(r.pending_bytes(), 0);
    }

    #[test]
    fn first_copy_wins_on_conflicting_overlap() {
        let mut r = Reassembler::new(1 << 20);
        let out = run(&mut r, &[syn(0), seg(1, b"AAAA"), seg(3, b"XXYY")]);
        assert_eq!(flatten(&out).0, b"AAAAYY");
    }

    #[test]
    fn sequence_numbers_wrap() {
        let isn = u32::MAX - 3;
        let mut r = Reassembler::new(1 << 20);
        let a = isn.wrapping_add(1);
        let out = run(
            &mut r,
            &[
                syn(isn),
                seg(a.wrapping_add(5), b"fghij"), // crosses zero, arrives first
                seg(a, b"abcde"),
                fin(a.wrapping_add(10), b"k"),
            ],
        );
        let (bytes, other) = flatten(&out);
        assert_eq!(bytes, b"abcdefghijk");
        assert_eq!(other, vec![D::End(11, EndReason::Fin)]);
    }

    #[test]
    fn acked_unseen_bytes_become_a_gap_once_later_data_shows_it() {
        let mut r = Reassembler::new(1 << 20);
        let mut out = run(&mut r, &[syn(0), seg(1, b"abc"), seg(7, b"ghi")]);
        // Nothing can be said yet: 4..7 may still arrive.
        assert_eq!(flatten(&out).0, b"abc");
        r.ack(10, &mut |d| out.push(own(d)));
        // Not even after the ACK: captures often hold an ACK ahead of the data it acknowledges.
        assert_eq!(flatten(&out).0, b"abc");
        // Data from beyond the acknowledged point: the capture has moved past 4..7, lost.
        r.segment(&seg(10, b"jk"), &mut |d| out.push(own(d)));
        let (bytes, other) = flatten(&out);
        assert_eq!(bytes, b"abc???ghijk");
        assert_eq!(other, vec![D::Gap(3, 3, GapReason::AckedUnseen)]);
        // Acks at or before what we have are no news; a FIN's sequence number is not a byte.
        let mut more = vec![];
        r.ack(8, &mut |d| more.push(own(d)));
        r.segment(&fin(12, b""), &mut |d| more.push(own(d)));
        r.ack(13, &mut |d| more.push(own(d)));
        assert_eq!(more, vec![D::End(11, EndReason::Fin)]);
    }

    #[test]
    fn an_ack_captured_before_its_data_loses_nothing() {
        let mut r = Reassembler::new(1 << 20);
        let mut out = run(&mut r, &[syn(0), seg(1, b"abc")]);
        r.ack(7, &mut |d| out.push(own(d)));
        r.segment(&seg(4, b"def"), &mut |d| out.push(own(d)));
        r.segment(&seg(7, b"g"), &mut |d| out.push(own(d)));
        let (bytes, other) = flatten(&out);
        assert_eq!(bytes, b"abcdefg");
        assert!(other.is_empty(), "{other:?}");
        // At the end of the capture an acknowledged hole that never came is a gap.
        let mut r = Reassembler::new(1 << 20);
        let mut out = run(&mut r, &[syn(0), seg(1, b"abc")]);
        r.ack(7, &mut |d| out.push(own(d)));
        r.finish(EndReason::CaptureEnd, &mut |d| out.push(own(d)));
        assert_eq!(flatten(&out).0, b"abc???");
    }

    #[test]
    fn a_reset_out_of_the_window_ends_nothing() {
        let mut r = Reassembler::new(1 << 20);
        let out = run(
            &mut r,
            &[
                syn(0),
                seg(1, b"abc"),
                Segment {
                    rst: true,
                    ..seg(1_000_000_000, b"")
                },
                seg(4, b"d"),
            ],
        );
        assert_eq!(flatten(&out), (b"abcd".to_vec(), vec![]));
    }

    #[test]
    fn first_copy_wins_for_held_data_too() {
        let mut r = Reassembler::new(1 << 20);
        let out = run(
            &mut r,
            &[
                syn(0),
                seg(1, b"a"),
                seg(5, b"XY"),
                seg(5, b"QRST"), // same start, longer, conflicting: only its tail is new
                seg(2, b"bcd"),
            ],
        );
        assert_eq!(flatten(&out).0, b"abcdXYST");
    }

    #[test]
    fn an_ack_with_nothing_held_is_a_trailing_gap() {
        // The capture lost the last segment; the ACK proves it was sent.
        let mut r = Reassembler::new(1 << 20);
        let mut out = run(&mut r, &[syn(0), seg(1, b"abc")]);
        r.ack(9, &mut |d| out.push(own(d)));
        r.segment(&seg(9, b"xyz"), &mut |d| out.push(own(d)));
        assert_eq!(flatten(&out).0, b"abc?????xyz");
        // An ACK far beyond any window is not trusted.
        let mut none = vec![];
        r.ack(u32::MAX / 2 + 100, &mut |d| none.push(own(d)));
        assert!(none.is_empty());
    }

    #[test]
    fn the_buffer_cap_turns_the_oldest_hole_into_a_gap() {
        let mut r = Reassembler::new(8);
        let out = run(
            &mut r,
            &[
                syn(0),
                seg(1, b"ab"),
                seg(5, b"efgh"),
                seg(9, b"ijkl"), // 8 held: at the cap
                seg(13, b"m"),   // over: give up 3..5
            ],
        );
        let (bytes, other) = flatten(&out);
        assert_eq!(bytes, b"ab??efghijklm");
        assert_eq!(other, vec![D::Gap(2, 2, GapReason::BufferLimit)]);
        assert_eq!(r.pending_bytes(), 0);
    }

    #[test]
    fn many_tiny_segments_are_capped_too() {
        let mut r = Reassembler::new(usize::MAX);
        let mut out = run(&mut r, &[syn(0)]);
        for i in 0..(MAX_PENDING_SEGMENTS as u32 + 10) {
            r.segment(&seg(10 + 2 * i, b"x"), &mut |d| out.push(own(d)));
        }
        assert!(r.pending.len() <= MAX_PENDING_SEGMENTS);
        assert!(
            out.iter()
                .any(|d| matches!(d, D::Gap(0, 9, GapReason::BufferLimit)))
        );
    }

    #[test]
    fn finish_reports_open_holes_and_delivers_held_data() {
        let mut r = Reassembler::new(1 << 20);
        let mut out = run(&mut r, &[syn(0), seg(1, b"ab"), seg(6, b"fg")]);
        r.finish(EndReason::CaptureEnd, &mut |d| out.push(own(d)));
        let (bytes, other) = flatten(&out);
        assert_eq!(bytes, b"ab???fg");
        assert_eq!(
            other,
            vec![
                D::Gap(2, 3, GapReason::StreamEnd),
                D::End(7, EndReason::CaptureEnd)
            ]
        );
    }

    #[test]
    fn midstream_start_and_data_before_it() {
        let mut r = Reassembler::new(1 << 20);
        let out = run(
            &mut r,
            &[seg(500, b""), seg(500, b"later"), seg(490, b"0123456789")],
        );
        assert!(r.midstream());
        // The earlier segment lies before the anchor and is history.
        assert_eq!(flatten(&out).0, b"later");
    }

    #[test]
    fn rst_ends_and_a_new_syn_restarts() {
        let mut r = Reassembler::new(1 << 20);
        let out = run(
            &mut r,
            &[
                syn(10),
                seg(11, b"abc"),
                syn(10), // retransmitted SYN: nothing happens
                syn(5000),
                seg(5001, b"xy"),
                Segment {
                    rst: true,
                    ..seg(5003, b"")
                },
                seg(5003, b"ignored"),
            ],
        );
        assert_eq!(
            out,
            vec![
                D::Data(0, b"abc".to_vec()),
                D::End(3, EndReason::Restart),
                D::Data(0, b"xy".to_vec()),
                D::End(2, EndReason::Reset),
            ]
        );
        // A SYN after the close opens a new stream too.
        let out = run(&mut r, &[syn(9000), seg(9001, b"z")]);
        assert_eq!(out, vec![D::Data(0, b"z".to_vec())]);
        // After a FIN: a retransmission of earlier data is ignored; data from elsewhere is a
        // new connection whose SYN the capture lacks.
        let out = run(
            &mut r,
            &[fin(9002, b""), seg(9001, b"z"), seg(2_000_000_000, b"new")],
        );
        assert_eq!(
            out,
            vec![D::End(1, EndReason::Fin), D::Data(0, b"new".to_vec())]
        );
        assert!(r.midstream());
    }
}
