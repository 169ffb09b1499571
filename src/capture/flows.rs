//! The TCP flow table: one reassembler and stream decoder per direction of each connection, and
//! the MonitorStart knowledge both directions of a connection share.

use super::link::TcpPacket;
use super::output::{Emitter, ErrorInfo, Place};
use super::pcap::Timestamp;
use super::stream::{Cx, Framing, Monitors, StreamDecoder};
use super::tcp::{EndReason, Reassembler, Segment};
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;

/// One direction of one connection.
#[derive(Debug)]
struct Direction {
    /// Creation order, so the end-of-capture flush is deterministic.
    id: u64,
    /// `src->dst`.
    label: String,
    reasm: Reassembler,
    dec: StreamDecoder,
    /// Packet counter value when this direction last carried a segment.
    last: u64,
}

/// Limits and framing for the table.
#[derive(Debug, Clone, Copy)]
pub struct FlowLimits {
    /// Directions tracked at once.
    pub max_flows: usize,
    /// Out-of-order bytes held per direction.
    pub flow_buffer: usize,
    /// Frame cap.
    pub max_frame: usize,
    /// How frames are delimited.
    pub framing: Framing,
}

/// All flow directions of a capture.
#[derive(Debug)]
pub struct FlowTable {
    dirs: HashMap<(SocketAddr, SocketAddr), Direction>,
    conns: HashMap<(SocketAddr, SocketAddr), Monitors>,
    limits: FlowLimits,
    next_id: u64,
    clock: u64,
}

/// The connection key (lower address first) and which side `src` is.
fn conn_key(src: SocketAddr, dst: SocketAddr) -> ((SocketAddr, SocketAddr), u8) {
    if src <= dst {
        ((src, dst), 0)
    } else {
        ((dst, src), 1)
    }
}

impl FlowTable {
    /// An empty table.
    pub fn new(limits: FlowLimits) -> FlowTable {
        FlowTable {
            dirs: HashMap::new(),
            conns: HashMap::new(),
            limits,
            next_id: 0,
            clock: 0,
        }
    }

    /// Takes one TCP segment.
    pub fn segment<W: Write>(
        &mut self,
        p: &TcpPacket<'_>,
        ts: Option<Timestamp>,
        out: &mut Emitter<W>,
    ) {
        self.clock += 1;
        // The ACK speaks about the other direction's data.
        if let Some(ack) = p.ack
            && let Some(rev) = self.dirs.get_mut(&(p.dst, p.src))
        {
            let (key, side) = conn_key(p.dst, p.src);
            let monitors = self.conns.entry(key).or_default();
            let Direction {
                reasm, dec, label, ..
            } = rev;
            let mut cx = Cx {
                out: &mut *out,
                place: Place {
                    flow: Some(label),
                    ts,
                },
                monitors,
                side,
                gap_layer: "tcp",
            };
            reasm.ack(ack, &mut |d| dec.deliver(d, &mut cx));
        }
        let key = (p.src, p.dst);
        if !self.dirs.contains_key(&key) {
            if p.payload.is_empty() && !p.syn && !p.fin {
                // A bare ACK opens nothing: it says nothing about this direction's data.
                return;
            }
            if self.dirs.len() >= self.limits.max_flows {
                self.evict(ts, out);
            }
            out.summary.flows += 1;
            self.dirs.insert(
                key,
                Direction {
                    id: self.next_id,
                    label: format!("{}->{}", p.src, p.dst),
                    reasm: Reassembler::new(self.limits.flow_buffer),
                    dec: StreamDecoder::new(self.limits.framing, self.limits.max_frame),
                    last: self.clock,
                },
            );
            self.next_id += 1;
        }
        let Some(dir) = self.dirs.get_mut(&key) else {
            return;
        };
        dir.last = self.clock;
        let (ckey, side) = conn_key(p.src, p.dst);
        let monitors = self.conns.entry(ckey).or_default();
        let Direction {
            reasm, dec, label, ..
        } = dir;
        let mut cx = Cx {
            out: &mut *out,
            place: Place {
                flow: Some(label),
                ts,
            },
            monitors,
            side,
            gap_layer: "tcp",
        };
        let seg = Segment {
            seq: p.seq,
            syn: p.syn,
            fin: p.fin,
            rst: p.rst,
            payload: p.payload,
        };
        if reasm.is_idle() && !seg.syn {
            // No SYN: the capture began after the connection did, maybe inside a frame.
            dec.note_midstream();
        }
        reasm.segment(&seg, &mut |d| dec.deliver(d, &mut cx));
    }

    /// Ends every stream (end of capture), in the order the flows appeared.
    pub fn finish<W: Write>(&mut self, ts: Option<Timestamp>, out: &mut Emitter<W>) {
        let mut keys: Vec<_> = self.dirs.iter().map(|(k, d)| (d.id, *k)).collect();
        keys.sort_unstable();
        for (_, key) in keys {
            self.end(key, EndReason::CaptureEnd, ts, out);
        }
    }

    fn end<W: Write>(
        &mut self,
        key: (SocketAddr, SocketAddr),
        reason: EndReason,
        ts: Option<Timestamp>,
        out: &mut Emitter<W>,
    ) {
        let Some(dir) = self.dirs.get_mut(&key) else {
            return;
        };
        let (ckey, side) = conn_key(key.0, key.1);
        let monitors = self.conns.entry(ckey).or_default();
        let Direction {
            reasm, dec, label, ..
        } = dir;
        let mut cx = Cx {
            out,
            place: Place {
                flow: Some(label),
                ts,
            },
            monitors,
            side,
            gap_layer: "tcp",
        };
        reasm.finish(reason, &mut |d| dec.deliver(d, &mut cx));
    }

    /// Drops the least recently active eighth of the table, closed streams first.
    fn evict<W: Write>(&mut self, ts: Option<Timestamp>, out: &mut Emitter<W>) {
        let mut order: Vec<_> = self
            .dirs
            .iter()
            .map(|(k, d)| (!d.reasm.is_closed(), d.last, *k))
            .collect();
        order.sort_unstable();
        let n = (order.len() / 8).max(1);
        let open = order[..n].iter().filter(|o| o.0).count();
        for (_, _, key) in &order[..n] {
            self.end(*key, EndReason::Evicted, ts, out);
            self.dirs.remove(key);
        }
        self.conns.retain(|(a, b), _| {
            self.dirs.contains_key(&(*a, *b)) || self.dirs.contains_key(&(*b, *a))
        });
        if open > 0 {
            out.error(
                &Place { flow: None, ts },
                &ErrorInfo::new(
                    "capture",
                    "flow_limit",
                    format!(
                        "more than {} flow directions; stopped following the {open} least recently active open ones",
                        self.limits.max_flows
                    ),
                ),
            );
        }
    }
}
