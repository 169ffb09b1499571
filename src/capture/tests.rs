//! Tests across the capture modules: whole captures in, JSON lines out.
//!
//! Captures are built with independent code: packets with `etherparse`'s `PacketBuilder` (not our
//! link parser), files with `pcap-file`'s writers (not our reader). The property tests check that
//! any segmentation, reordering and retransmission of a TCP stream decodes to exactly what the
//! raw stream decodes to, and that no input in any format panics.

use super::*;
use crate::codec::framing::{InvokeId, encode_frame};
use bytes::BytesMut;
use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::{DataLink, TsResolution};
use proptest::prelude::*;
use serde_json::Value;
use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

const NS: &str = "http://www.ecma-international.org/standards/ecma-323/csta/ed4";

fn delivered(call: u32, device: &str, x: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><DeliveredEvent xmlns="{NS}"><monitorCrossRefID>{x}</monitorCrossRefID><connection><callID>C{call}</callID><deviceID>{device}</deviceID></connection><alertingDevice><deviceIdentifier>{device}</deviceIdentifier></alertingDevice><callingDevice><deviceIdentifier>N&lt;+4930123{call}&gt;;displayNumber=030123{call}</deviceIdentifier></callingDevice><calledDevice><deviceIdentifier>{device}</deviceIdentifier></calledDevice><localConnectionInfo>alerting</localConnectionInfo><cause>newCall</cause></DeliveredEvent>"#
    )
}

fn cleared(call: u32, device: &str, x: &str) -> String {
    format!(
        r#"<ConnectionClearedEvent xmlns="{NS}"><monitorCrossRefID>{x}</monitorCrossRefID><droppedConnection><callID>C{call}</callID><deviceID>{device}</deviceID></droppedConnection><releasingDevice><deviceIdentifier>{device}</deviceIdentifier></releasingDevice><localConnectionInfo>null</localConnectionInfo><cause>normalClearing</cause></ConnectionClearedEvent>"#
    )
}

/// A PBX → gateway stream of `n` frames of assorted kinds.
fn pbx_stream(n: usize) -> Vec<u8> {
    let mut out = BytesMut::new();
    for i in 0..n {
        let call = i as u32 + 1;
        let (id, body) = match i % 4 {
            0 => (9999, delivered(call, "4001", "11")),
            1 => (9999, cleared(call, "4001", "11")),
            2 => (
                (i % 9998) as u16,
                format!(
                    "<MonitorStartResponse xmlns=\"{NS}\"><monitorCrossRefID>{call}</monitorCrossRefID></MonitorStartResponse>"
                ),
            ),
            _ => (
                (i % 9998) as u16,
                "<SystemStatus><systemStatus>normal</systemStatus></SystemStatus>".to_string(),
            ),
        };
        encode_frame(InvokeId(id), body.as_bytes(), &mut out).unwrap();
    }
    out.to_vec()
}

fn run(input: &[u8], opts: &Options) -> (Result<Summary, String>, Vec<Value>) {
    let mut out = Vec::new();
    let r = decode(input, opts, &mut out).map_err(|e| e.to_string());
    let lines = String::from_utf8(out)
        .expect("output is UTF-8")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("every line is JSON"))
        .collect();
    (r, lines)
}

/// Lines without what only a capture has (flow, capture time).
fn comparable(lines: &[Value]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| {
            let mut l = l.clone();
            if let Some(m) = l.as_object_mut() {
                m.remove("flow");
                m.remove("ts");
                m.remove("ts_ms");
            }
            l
        })
        .collect()
}

fn kinds(lines: &[Value], kind: &str) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| l["kind"] == kind)
        .cloned()
        .collect()
}

/// Link layers to wrap packets in.
#[derive(Debug, Clone, Copy)]
enum Link {
    EthernetV4,
    RawV6,
    SllV4,
    Sll2V6,
}

const SERVER_V4: [u8; 4] = [10, 0, 0, 1];
const CLIENT_V4: [u8; 4] = [10, 0, 0, 2];

fn v6(last: u8) -> [u8; 16] {
    let mut a = [0u8; 16];
    a[0] = 0xfd;
    a[15] = last;
    a
}

/// One TCP packet as captured.
#[derive(Debug, Clone)]
struct Pkt {
    /// From the server (PBX) to the client (gateway).
    from_server: bool,
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    fin: bool,
    rst: bool,
    payload: Vec<u8>,
}

fn encode_packet(link: Link, p: &Pkt, server_port: u16, client_port: u16) -> (u32, Vec<u8>) {
    let (sp, dp) = if p.from_server {
        (server_port, client_port)
    } else {
        (client_port, server_port)
    };
    let mut out = Vec::new();
    let tcp = |b: etherparse::PacketBuilderStep<etherparse::IpHeaders>| {
        let mut t = b.tcp(sp, dp, p.seq, 65535);
        if let Some(a) = p.ack {
            t = t.ack(a);
        }
        if p.syn {
            t = t.syn();
        }
        if p.fin {
            t = t.fin();
        }
        if p.rst {
            t = t.rst();
        }
        t
    };
    let (s4, d4) = if p.from_server {
        (SERVER_V4, CLIENT_V4)
    } else {
        (CLIENT_V4, SERVER_V4)
    };
    let (s6, d6) = if p.from_server {
        (v6(1), v6(2))
    } else {
        (v6(2), v6(1))
    };
    match link {
        Link::EthernetV4 => {
            let b = PacketBuilder::ethernet2([1; 6], [2; 6]).ipv4(s4, d4, 64);
            tcp(b).write(&mut out, &p.payload).unwrap();
            (1, out)
        }
        Link::RawV6 => {
            let b = PacketBuilder::ipv6(s6, d6, 64);
            tcp(b).write(&mut out, &p.payload).unwrap();
            (101, out)
        }
        Link::SllV4 => {
            let mut hdr = vec![0, 0, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0, 0x08, 0x00];
            tcp(PacketBuilder::ipv4(s4, d4, 64))
                .write(&mut out, &p.payload)
                .unwrap();
            hdr.extend_from_slice(&out);
            (113, hdr)
        }
        Link::Sll2V6 => {
            let mut hdr = vec![
                0x86, 0xdd, 0, 0, 0, 0, 0, 1, 0, 1, 0, 6, 1, 2, 3, 4, 5, 6, 0, 0,
            ];
            tcp(PacketBuilder::ipv6(s6, d6, 64))
                .write(&mut out, &p.payload)
                .unwrap();
            hdr.extend_from_slice(&out);
            (276, hdr)
        }
    }
}

/// A capture file of `pkts`, one millisecond apart.
fn capture(link: Link, pkts: &[Pkt], ng: bool, server_port: u16) -> Vec<u8> {
    let encoded: Vec<(u32, Vec<u8>)> = pkts
        .iter()
        .map(|p| encode_packet(link, p, server_port, 50122))
        .collect();
    let linktype = encoded.first().map_or(1, |e| e.0);
    let ts = |i: usize| Duration::new(1_700_000_000, 0) + Duration::from_millis(i as u64);
    if ng {
        let mut w = PcapNgWriter::new(Vec::new()).unwrap();
        w.write_pcapng_block(InterfaceDescriptionBlock {
            linktype: DataLink::from(linktype),
            snaplen: 0x40000,
            // pcap-file writes packet times in nanoseconds; say so.
            options: vec![InterfaceDescriptionOption::IfTsResol(9)],
        })
        .unwrap();
        for (i, (_, data)) in encoded.iter().enumerate() {
            w.write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: ts(i),
                original_len: data.len() as u32,
                data: Cow::Borrowed(data),
                options: vec![],
            })
            .unwrap();
        }
        w.into_inner()
    } else {
        let header = PcapHeader {
            datalink: DataLink::from(linktype),
            ts_resolution: TsResolution::MicroSecond,
            snaplen: 0x40000,
            ..PcapHeader::default()
        };
        let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
        for (i, (_, data)) in encoded.iter().enumerate() {
            w.write_packet(&PcapPacket::new(ts(i), data.len() as u32, data))
                .unwrap();
        }
        w.into_writer()
    }
}

/// Handshake, the server's data as `cuts` segments in `order`, the client's cumulative ACKs
/// after each (as a real receiver would send them), then FIN.
fn connection(
    data: &[u8],
    isn: u32,
    cuts: &[usize],
    order: &[usize],
    retransmit: &[usize],
) -> Vec<Pkt> {
    let client_isn = 777;
    let mut segs: Vec<(usize, usize)> = Vec::new();
    let mut at = 0;
    for &c in cuts {
        if at >= data.len() {
            break;
        }
        let end = (at + c.max(1)).min(data.len());
        segs.push((at, end));
        at = end;
    }
    if at < data.len() {
        segs.push((at, data.len()));
    }
    let mut pkts = vec![
        Pkt {
            from_server: false,
            seq: client_isn,
            ack: None,
            syn: true,
            fin: false,
            rst: false,
            payload: vec![],
        },
        Pkt {
            from_server: true,
            seq: isn,
            ack: Some(client_isn + 1),
            syn: true,
            fin: false,
            rst: false,
            payload: vec![],
        },
    ];
    let base = isn.wrapping_add(1);
    let mut have = vec![false; data.len() + 1];
    let mut acked = 0usize;
    let mut sequence: Vec<usize> = Vec::new();
    let mut idx: Vec<usize> = (0..segs.len()).collect();
    for (i, &o) in order.iter().enumerate() {
        if i < idx.len() {
            let j = o % idx.len();
            idx.swap(i, j);
        }
    }
    for &i in &idx {
        sequence.push(i);
        if retransmit.contains(&i) {
            sequence.push(i);
        }
    }
    for i in sequence {
        let (s, e) = segs[i];
        pkts.push(Pkt {
            from_server: true,
            seq: base.wrapping_add(s as u32),
            ack: Some(client_isn + 1),
            syn: false,
            fin: false,
            rst: false,
            payload: data[s..e].to_vec(),
        });
        for h in &mut have[s..e] {
            *h = true;
        }
        while acked < data.len() && have[acked] {
            acked += 1;
        }
        pkts.push(Pkt {
            from_server: false,
            seq: client_isn + 1,
            ack: Some(base.wrapping_add(acked as u32)),
            syn: false,
            fin: false,
            rst: false,
            payload: vec![],
        });
    }
    pkts.push(Pkt {
        from_server: true,
        seq: base.wrapping_add(data.len() as u32),
        ack: Some(client_isn + 1),
        syn: false,
        fin: true,
        rst: false,
        payload: vec![],
    });
    pkts
}

fn raw_opts() -> Options {
    Options {
        format: InputFormat::Raw,
        ..Options::default()
    }
}

#[test]
fn a_pcap_decodes_like_the_raw_stream() {
    let data = pbx_stream(12);
    let (r, want) = run(&data, &raw_opts());
    assert_eq!(r.unwrap().frames, 12);
    assert!(kinds(&want, "error").is_empty(), "{want:?}");
    for (link, ng) in [
        (Link::EthernetV4, false),
        (Link::RawV6, true),
        (Link::SllV4, true),
        (Link::Sll2V6, false),
    ] {
        let pkts = connection(&data, 1000, &[100, 7, 900, 1], &[], &[]);
        let file = capture(link, &pkts, ng, 1040);
        let (r, got) = run(&file, &Options::default());
        let s = r.unwrap();
        assert_eq!(s.format, "pcap");
        assert_eq!((s.frames, s.flows), (12, 2), "{link:?}");
        assert_eq!(comparable(&got), comparable(&want), "{link:?}");
        let first = &got[0];
        let flow = first["flow"].as_str().unwrap();
        assert!(flow.ends_with(":1040->10.0.0.2:50122") || flow.contains("]:1040->["));
        assert!(
            first["ts"]
                .as_str()
                .unwrap()
                .starts_with("2023-11-14T22:13:20.")
        );
        let ev = kinds(&got, "event");
        // The first frame is complete with the third data segment, packet 6 (1 ms apart).
        assert_eq!(ev[0]["ts_ms"], 1_700_000_000_000u64 + 6);
    }
}

#[test]
fn a_lost_segment_is_a_gap_and_decoding_resumes_after_it() {
    let data = pbx_stream(6);
    let mut pkts = connection(&data, u32::MAX - 100, &[300; 50], &[], &[]);
    // Drop the server's third data segment (packets: SYN, SYN-ACK, then data/ACK pairs); the
    // client's ACKs still cover it, as they would when only the capture lost it.
    let lost = 2 + 2 * 2;
    assert!(pkts[lost].from_server && !pkts[lost].payload.is_empty());
    pkts.remove(lost);
    let file = capture(Link::EthernetV4, &pkts, false, 1040);
    let (r, got) = run(&file, &Options::default());
    r.unwrap();
    let errors = kinds(&got, "error");
    assert_eq!(errors[0]["error"], "gap", "{errors:?}");
    assert_eq!(errors[0]["layer"], "tcp");
    assert_eq!(errors[0]["offset"], 600);
    assert!(
        errors[0]["detail"]
            .as_str()
            .unwrap()
            .contains("300 bytes missing (the receiver acknowledged")
    );
    assert_eq!(errors[1]["error"], "bad_header");
    assert!(
        errors[1]["detail"]
            .as_str()
            .unwrap()
            .ends_with("(after a gap)")
    );
    // Frames wholly before or after the hole are all there, at their offsets (their index
    // counts the frames this stream produced, so it is left out).
    let (_, want) = run(&data, &raw_opts());
    let unindexed = |lines: &[Value]| {
        let mut v = kinds(&comparable(lines), "message");
        for m in &mut v {
            m.as_object_mut().unwrap().remove("frame_index");
        }
        v
    };
    let (want_msgs, got_msgs) = (unindexed(&want), unindexed(&got));
    assert!(got_msgs.len() >= want_msgs.len() - 2);
    for m in &got_msgs {
        assert!(want_msgs.contains(m), "{m}");
    }
}

#[test]
fn port_filter_and_monitor_start_learning() {
    // The gateway's side: a MonitorStart for 4711 answered with cross-reference 11.
    let mut req = BytesMut::new();
    let mut body = BytesMut::new();
    crate::codec::xml::encode::encode(
        &crate::codec::xml::encode::Request::MonitorStart { device: "4711" },
        NS,
        &mut body,
    );
    encode_frame(InvokeId(2), &body, &mut req).unwrap();
    let mut resp = BytesMut::new();
    encode_frame(
        InvokeId(2),
        b"<MonitorStartResponse><monitorCrossRefID>11</monitorCrossRefID></MonitorStartResponse>",
        &mut resp,
    )
    .unwrap();
    resp.extend_from_slice(&pbx_stream(1));
    let pkts = vec![
        Pkt {
            from_server: false,
            seq: 1,
            ack: None,
            syn: true,
            fin: false,
            rst: false,
            payload: vec![],
        },
        Pkt {
            from_server: true,
            seq: 500,
            ack: Some(2),
            syn: true,
            fin: false,
            rst: false,
            payload: vec![],
        },
        Pkt {
            from_server: false,
            seq: 2,
            ack: Some(501),
            syn: false,
            fin: false,
            rst: false,
            payload: req.to_vec(),
        },
        Pkt {
            from_server: true,
            seq: 501,
            ack: Some(2 + req.len() as u32),
            syn: false,
            fin: false,
            rst: false,
            payload: resp.to_vec(),
        },
    ];
    let mut file = capture(Link::EthernetV4, &pkts, false, 1040);
    // The same conversation again on port 2000: filtered out below.
    let other = capture(Link::EthernetV4, &pkts, false, 2000);
    file.extend_from_slice(&other[24..]);
    let (r, got) = run(&file, &Options::default());
    assert_eq!(r.unwrap().events, 2);
    let opts = Options {
        port: Some(1040),
        ..Options::default()
    };
    let (r, got_1040) = run(&file, &opts);
    let s = r.unwrap();
    assert_eq!((s.events, s.flows, s.frames), (1, 2, 3));
    assert!(got.len() > got_1040.len());
    let ev = &kinds(&got_1040, "event")[0];
    // The event's own fields say 4001; the MonitorStart says the monitored device is 4711.
    assert_eq!(ev["device_source"], "monitor_start");
    assert_eq!(ev["device"], "4711");
    // Without the gateway's direction the subject device is used.
    let pbx_only = capture(
        Link::EthernetV4,
        &pkts
            .iter()
            .filter(|p| p.from_server)
            .cloned()
            .collect::<Vec<_>>(),
        true,
        1040,
    );
    let (_, got) = run(&pbx_only, &Options::default());
    let ev = &kinds(&got, "event")[0];
    assert_eq!(
        (&ev["device_source"], &ev["device"]),
        (&"subject".into(), &"4001".into())
    );
}

#[test]
fn bare_documents_over_tcp_and_raw() {
    let docs = format!(
        "{}\n{}\r\n{}",
        delivered(1, "4001", "1"),
        cleared(1, "4001", "1"),
        delivered(2, "4002", "1")
    );
    let opts = Options {
        no_header: true,
        ..Options::default()
    };
    let (r, raw) = run(docs.as_bytes(), &opts);
    let s = r.unwrap();
    assert_eq!((s.format, s.frames, s.events), ("raw", 3, 3));
    assert!(
        kinds(&raw, "message")
            .iter()
            .all(|m| m["invoke_id"].is_null())
    );
    let pkts = connection(docs.as_bytes(), 5, &[10, 200, 3], &[2, 0, 1], &[1]);
    let (r, got) = run(&capture(Link::RawV6, &pkts, true, 1040), &opts);
    assert_eq!(r.unwrap().frames, 3);
    assert_eq!(comparable(&got), comparable(&raw));
}

#[test]
fn hex_dump_input_and_oversize_frames() {
    let data = pbx_stream(3);
    let hex: String = data
        .chunks(16)
        .enumerate()
        .map(|(i, c)| {
            let bytes: Vec<String> = c.iter().map(|b| format!("{b:02x}")).collect();
            format!("{:08x}  {}  |gutter|\n", i * 16, bytes.join(" "))
        })
        .collect();
    let (r, got) = run(hex.as_bytes(), &Options::default());
    let s = r.unwrap();
    assert_eq!((s.format, s.frames), ("hex", 3));
    let (_, want) = run(&data, &raw_opts());
    assert_eq!(got, want);
    // A cap below the first frame's size: that frame is skipped, the others decode.
    let sizes: Vec<usize> = kinds(&want, "message")
        .iter()
        .map(|m| m["offset"].as_u64().unwrap() as usize)
        .collect();
    assert!(
        sizes[1] > sizes[2] - sizes[1],
        "the first frame is the largest"
    );
    let opts = Options {
        max_frame: sizes[1] - 1,
        ..raw_opts()
    };
    let (r, got) = run(&data, &opts);
    assert_eq!(r.unwrap().frames, 2);
    assert_eq!(kinds(&got, "error")[0]["error"], "oversize");
}

#[test]
fn unrecognizable_and_empty_inputs() {
    let (r, _) = run(b"hello, this is plain text\n", &Options::default());
    assert!(r.unwrap_err().contains("not a recognizable capture"));
    let (r, _) = run(b"", &Options::default());
    assert_eq!(r.unwrap().frames, 0);
    let opts = Options {
        format: InputFormat::Pcap,
        ..Options::default()
    };
    let (r, _) = run(b"\x00\x00\x01\x0b9999<", &opts);
    assert!(r.unwrap_err().contains("not a pcap"));
    // A stream cut in the middle of a frame is still recognized as raw.
    let data = pbx_stream(2);
    let (r, got) = run(&data[100..], &Options::default());
    assert_eq!(r.unwrap().frames, 1);
    assert_eq!(kinds(&got, "error")[0]["error"], "bad_header");
}

/// Server packets of `pkts` up to (not including) its last data segment.
fn cut_before_last_data(mut pkts: Vec<Pkt>) -> Vec<Pkt> {
    pkts.retain(|p| !p.fin);
    let cut = pkts
        .iter()
        .rposition(|p| p.from_server && !p.payload.is_empty())
        .unwrap();
    pkts.truncate(cut);
    pkts
}

#[test]
fn a_reused_address_pair_is_a_new_stream_and_rst_ends_one() {
    let data = pbx_stream(2);
    // The first connection breaks off inside its second frame; a new one reuses the addresses.
    let mut pkts = cut_before_last_data(connection(&data, 100, &[50, 600], &[], &[]));
    pkts.extend(connection(&data, 90_000, &[70], &[], &[]));
    let file = capture(Link::EthernetV4, &pkts, false, 1040);
    let (r, got) = run(&file, &Options::default());
    let s = r.unwrap();
    // Frame 1 complete, frame 2 cut by the new connection, then both frames again.
    assert_eq!(s.frames, 3, "{got:?}");
    let errors = kinds(&got, "error");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["error"], "truncated");
    assert!(
        errors[0]["detail"]
            .as_str()
            .unwrap()
            .contains("a new connection on the same addresses")
    );
    let from_pbx: Vec<_> = kinds(&got, "message")
        .iter()
        .filter(|m| m["flow"].as_str().unwrap().starts_with("10.0.0.1"))
        .map(|m| (m["frame_index"].clone(), m["offset"].clone()))
        .collect();
    assert_eq!(from_pbx[0].1, 0);
    assert_eq!(from_pbx[1].1, 0, "the new connection's stream starts at 0");
    assert_eq!(from_pbx[1].0, 1, "frame indexes go on");

    // A reset inside a frame ends the stream there.
    let mut pkts = cut_before_last_data(connection(&data, 100, &[50, 600], &[], &[]));
    let next = pkts
        .iter()
        .rev()
        .find(|p| p.from_server && !p.payload.is_empty())
        .map(|p| p.seq.wrapping_add(p.payload.len() as u32))
        .unwrap();
    pkts.push(Pkt {
        from_server: true,
        seq: next,
        ack: None,
        syn: false,
        fin: false,
        rst: true,
        payload: vec![],
    });
    let (r, got) = run(
        &capture(Link::RawV6, &pkts, true, 1040),
        &Options::default(),
    );
    assert_eq!(r.unwrap().frames, 1);
    let errors = kinds(&got, "error");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0]["detail"].as_str().unwrap().contains("(RST)"));
}

#[test]
fn the_flow_table_is_capped() {
    let data = pbx_stream(1);
    let mut file = Vec::new();
    for port in 0..6u16 {
        let pkts = connection(&data, 1, &[40], &[], &[]);
        // Leave every connection open (no FIN), so eviction has to cut live streams.
        let pkts: Vec<Pkt> = pkts.into_iter().filter(|p| !p.fin).collect();
        let f = capture(Link::EthernetV4, &pkts, false, 3000 + port);
        file.extend_from_slice(if file.is_empty() { &f } else { &f[24..] });
    }
    let opts = Options {
        max_flows: 4,
        ..Options::default()
    };
    let (r, got) = run(&file, &opts);
    let s = r.unwrap();
    assert_eq!(s.frames, 6);
    assert!(s.errors.contains_key("flow_limit"), "{got:?}");
}

/// Moves each segment up to `max` places (a bounded reordering, as networks do) — or anywhere.
fn shuffle_order(n: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0..1000usize, n)
}

/// 64 cases by default (each builds and decodes whole captures); `PROPTEST_CASES` runs more.
fn cases() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn any_segmentation_and_reordering_decodes_the_same(
        frames in 1usize..10,
        cuts in prop::collection::vec(1usize..400, 1..40),
        order in shuffle_order(40),
        retransmit in prop::collection::vec(0usize..40, 0..6),
        isn in any::<u32>(),
        link in prop_oneof![Just(Link::EthernetV4), Just(Link::RawV6), Just(Link::SllV4), Just(Link::Sll2V6)],
        ng in any::<bool>(),
        no_header in any::<bool>(),
    ) {
        let data = if no_header {
            (0..frames).map(|i| delivered(i as u32, "4001", "7")).collect::<String>().into_bytes()
        } else {
            pbx_stream(frames)
        };
        let opts = Options { no_header, ..Options::default() };
        let (r, want) = run(&data, &Options { format: InputFormat::Raw, ..opts.clone() });
        prop_assert!(r.is_ok());
        let pkts = connection(&data, isn, &cuts, &order, &retransmit);
        let (r, got) = run(&capture(link, &pkts, ng, 1040), &opts);
        let s = r.unwrap();
        prop_assert_eq!(s.frames as usize, frames);
        prop_assert_eq!(s.error_count(), 0, "{:?}", got);
        prop_assert_eq!(comparable(&got), comparable(&want));
    }

    #[test]
    fn no_input_panics_in_any_format(
        bytes in prop::collection::vec(any::<u8>(), 0..2000),
        format in prop_oneof![Just(InputFormat::Auto), Just(InputFormat::Raw), Just(InputFormat::Hex), Just(InputFormat::Pcap)],
        no_header in any::<bool>(),
        max_frame in prop_oneof![Just(65535usize), 0usize..200],
    ) {
        let opts = Options { format, no_header, max_frame, ..Options::default() };
        let _ = run(&bytes, &opts);
    }

    #[test]
    fn damaged_captures_do_not_panic(
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..20),
        cut in any::<usize>(),
        ng in any::<bool>(),
        no_header in any::<bool>(),
    ) {
        let data = pbx_stream(4);
        let pkts = connection(&data, 3, &[50, 300, 20], &[3, 1], &[2]);
        let mut file = capture(Link::EthernetV4, &pkts, ng, 1040);
        for (at, v) in flips {
            let i = at % file.len();
            file[i] ^= v;
        }
        file.truncate(cut % (file.len() + 1));
        let opts = Options { no_header, ..Options::default() };
        let _ = run(&file, &opts);
    }

    #[test]
    fn a_valid_file_header_before_random_records_does_not_panic(
        tail in prop::collection::vec(any::<u8>(), 0..3000),
        ng in any::<bool>(),
    ) {
        let mut file = capture(Link::SllV4, &[], ng, 1040);
        file.extend_from_slice(&tail);
        let _ = run(&file, &Options::default());
    }
}

#[test]
fn hex_and_bare_splitter_survive_text_garbage() {
    // Hex dumps of garbage, and XML-ish garbage in bare mode: lines are JSON, no panic.
    let inputs: [&[u8]; 5] = [
        b"00000000: zz\n*\n*\nffffffffffffffff: 00\n",
        b"0000 00\n0001\n*\n0fffffff 00 11\n",
        b"<a><![CDATA[<<<]]><!-- -- --><!DOCTYPE [[[\"'\n",
        b"<?xml <?xml <?xml </a></b><c/>",
        b"\xef\xbb\xbf<x/>\x00\x00<y></y>",
    ];
    for input in inputs {
        for no_header in [false, true] {
            for format in [InputFormat::Auto, InputFormat::Hex, InputFormat::Raw] {
                let opts = Options {
                    format,
                    no_header,
                    ..Options::default()
                };
                let _ = run(input, &opts);
            }
        }
    }
    // An IPv4/IPv6 address pair is printed as a socket address pair.
    let a = std::net::SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1);
    let b = std::net::SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 2);
    assert_eq!(format!("{a}->{b}"), "127.0.0.1:1->[::1]:2");
}

#[test]
fn a_bad_run_longer_than_a_read_is_counted_whole_and_later_offsets_stay_true() {
    let stream = pbx_stream(2);
    let mut one = BytesMut::new();
    encode_frame(
        InvokeId(9999),
        delivered(1, "4001", "11").as_bytes(),
        &mut one,
    )
    .unwrap();
    let first = one.len();
    // A frame, 70,000 bytes of garbage (more than one 64 KiB read), the stream again.
    let mut input = one.to_vec();
    input.extend(std::iter::repeat_n(b'x', 70_000));
    input.extend_from_slice(&stream);
    let (r, lines) = run(&input, &raw_opts());
    r.unwrap();
    let errors = kinds(&lines, "error");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0]["offset"], first as u64);
    let detail = errors[0]["detail"].as_str().unwrap();
    assert!(detail.contains("skipped 70000 bytes"), "{detail}");
    let offsets: Vec<u64> = kinds(&lines, "message")
        .iter()
        .map(|m| m["offset"].as_u64().unwrap())
        .collect();
    assert_eq!(offsets[0], 0);
    assert_eq!(offsets[1], (first + 70_000) as u64);
}
