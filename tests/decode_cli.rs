//! `ctigate decode` as ops run it: the built binary on capture files made by independent tools
//! (tshark, text2pcap, xxd, hexdump, od; see `tests/data/README.md`), compared with each other and
//! with what the gateway delivered; and, where tshark can capture, on a live loopback capture of
//! the simulator and the gateway.
//!
//! Tests that need Wireshark's tools skip with a message when they are missing, and fail when `CI`
//! is set (`.ci/run` installs them: Debian package `tshark`).

mod common;

use common::process::{spawn, wait_line};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ctigate"));
    c.env("RUST_BACKTRACE", "0");
    c
}

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn data_str(name: &str) -> String {
    data(name).to_str().unwrap().to_string()
}

/// One run of `ctigate decode`.
struct Run {
    code: i32,
    lines: Vec<Value>,
    stderr: String,
}

fn decode_with(args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut child = bin()
        .arg("decode")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        let mut w = child.stdin.take().unwrap();
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = w.write_all(&input);
        });
    }
    let o = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(o.stdout).expect("stdout is UTF-8");
    let lines = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    Run {
        code: o.status.code().unwrap_or(-1),
        lines,
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn decode(args: &[&str]) -> Run {
    decode_with(args, None)
}

fn decode_ok(args: &[&str]) -> Run {
    let r = decode(args);
    assert_eq!(r.code, 0, "decode {args:?} failed: {}", r.stderr);
    r
}

fn kinds(lines: &[Value], kind: &str) -> Vec<Value> {
    lines
        .iter()
        .filter(|l| l["kind"] == kind)
        .cloned()
        .collect()
}

/// Lines without what only a packet capture has (flow, capture time).
fn comparable(lines: &[Value]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| {
            let mut l = l.clone();
            let m = l.as_object_mut().unwrap();
            for k in ["flow", "ts", "ts_ms"] {
                m.remove(k);
            }
            l
        })
        .collect()
}

/// Whether a Wireshark tool runs here. Missing: skip (with a message) unless `CI` is set.
fn have_tool(name: &str) -> bool {
    let ok = Command::new(name)
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is required under CI: apt-get install -y tshark"
        );
        eprintln!("SKIPPED: {name} is not installed (apt-get install -y tshark)");
    }
    ok
}

#[test]
fn every_hex_dump_tool_decodes_like_the_raw_stream() {
    let raw = decode_ok(&[&data_str("head.raw")]);
    assert!(
        raw.stderr.contains("decode (raw): 13 frames"),
        "{}",
        raw.stderr
    );
    // The 6000 bytes end inside a frame.
    let errors = kinds(&raw.lines, "error");
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0]["error"], "truncated");
    for dump in ["head.xxd", "head.hexdump", "head.od", "head.hex"] {
        let hex = decode_ok(&[&data_str(dump)]);
        assert!(
            hex.stderr.contains("decode (hex)"),
            "{dump}: {}",
            hex.stderr
        );
        assert_eq!(hex.lines, raw.lines, "{dump}");
        let forced = decode_ok(&["--format", "hex", &data_str(dump)]);
        assert_eq!(forced.lines, raw.lines, "{dump}");
    }
    // `hexdump -C` collapsed repeated lines into `*`.
    let padded = decode_ok(&[&data_str("padded.raw")]);
    let dumped = decode_ok(&[&data_str("padded.hexdump")]);
    assert_eq!(dumped.lines, padded.lines);
    assert_eq!(kinds(&padded.lines, "event")[0]["event"], "held");
}

#[test]
fn text2pcap_captures_decode_like_the_raw_stream() {
    let raw = decode_ok(&[&data_str("pbx-stream.raw")]);
    assert_eq!(kinds(&raw.lines, "message").len(), 83);
    assert!(kinds(&raw.lines, "error").is_empty());
    for (file, flow) in [
        ("t2p-eth-v4.pcap", "10.0.0.1:41040->10.0.0.2:32772"),
        ("t2p-raw-v6.pcapng", "[fd00::1]:41040->[fd00::2]:32772"),
    ] {
        let r = decode_ok(&[&data_str(file)]);
        assert!(
            r.stderr
                .contains("83 frames, 83 messages, 77 events, 0 errors; 52 packets"),
            "{file}: {}",
            r.stderr
        );
        assert!(r.lines.iter().all(|l| l["flow"] == flow), "{file}");
        assert!(r.lines.iter().all(|l| l["ts"].is_string()), "{file}");
        assert_eq!(comparable(&r.lines), comparable(&raw.lines), "{file}");
    }
}

/// Writes `stream` as a text2pcap input: one packet per `sizes` step, each an offset dump.
fn text2pcap_input(stream: &[u8], sizes: &[usize]) -> String {
    let mut out = String::new();
    let mut at = 0;
    let mut k = 0;
    while at < stream.len() {
        let n = sizes[k % sizes.len()].min(stream.len() - at);
        k += 1;
        for (i, line) in stream[at..at + n].chunks(16).enumerate() {
            out += &format!("{:06x} ", i * 16);
            for b in line {
                out += &format!(" {b:02x}");
            }
            out.push('\n');
        }
        out.push('\n');
        at += n;
    }
    out
}

#[test]
fn text2pcap_at_test_time_in_every_layout() {
    if !have_tool("text2pcap") {
        return;
    }
    let stream = std::fs::read(data("pbx-stream.raw")).unwrap();
    let raw = decode_ok(&[&data_str("pbx-stream.raw")]);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.txt");
    // Small and uneven segments: frames split across many packets, headers split too.
    std::fs::write(&input, text2pcap_input(&stream, &[137, 3, 1400, 58])).unwrap();
    for (name, args) in [
        (
            "eth4.pcap",
            &["-F", "pcap", "-T", "1040,50000", "-4", "10.1.1.1,10.1.1.2"][..],
        ),
        (
            "eth6.pcapng",
            &["-T", "1040,50000", "-6", "fd00::a,fd00::b"],
        ),
        (
            "raw4.pcapng",
            &["-l", "101", "-T", "1040,50000", "-4", "10.1.1.1,10.1.1.2"],
        ),
    ] {
        let out = dir.path().join(name);
        let st = Command::new("text2pcap")
            .args(args)
            .arg(&input)
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
        let r = decode_ok(&[out.to_str().unwrap(), "--port", "1040"]);
        assert_eq!(comparable(&r.lines), comparable(&raw.lines), "{name}");
    }
}

#[test]
fn a_packet_removed_by_editcap_is_a_gap_and_decoding_resumes() {
    if !have_tool("editcap") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let lost = dir.path().join("lost.pcap");
    let st = Command::new("editcap")
        .arg(data("t2p-eth-v4.pcap"))
        .arg(&lost)
        .arg("3")
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let raw = decode_ok(&[&data_str("pbx-stream.raw")]);
    let want = comparable(&kinds(&raw.lines, "message"));
    // No ACKs in this capture: the hole is given up when held data reaches the cap, or at the end.
    for (extra, reason) in [
        (&["--flow-buffer", "4000"][..], "per-flow buffer cap"),
        (&[][..], "the stream ended"),
    ] {
        let mut args = vec![lost.to_str().unwrap()];
        args.extend_from_slice(extra);
        let r = decode_ok(&args);
        let errors = kinds(&r.lines, "error");
        assert_eq!(errors[0]["error"], "gap", "{errors:?}");
        assert_eq!(errors[0]["offset"], 2000);
        assert!(errors[0]["detail"].as_str().unwrap().contains(reason));
        assert_eq!(errors[1]["error"], "bad_header");
        assert_eq!(errors.len(), 2, "{errors:?}");
        // Bytes 2000..3000 held parts of frames 4..6; every other frame decodes as in the stream.
        let got: Vec<Value> = comparable(&kinds(&r.lines, "message"))
            .into_iter()
            .map(|mut m| {
                m.as_object_mut().unwrap().remove("frame_index");
                m
            })
            .collect();
        let want: Vec<Value> = want
            .iter()
            .cloned()
            .map(|mut m| {
                m.as_object_mut().unwrap().remove("frame_index");
                m
            })
            .filter(|m| {
                let o = m["offset"].as_u64().unwrap();
                !(1500..3354).contains(&o)
            })
            .collect();
        assert_eq!(got, want, "{extra:?}");
    }
}

#[test]
fn a_real_loopback_capture_lists_what_the_gateway_delivered() {
    let r = decode_ok(&[
        &data_str("sim-gateway.pcapng"),
        "--config",
        &data_str("sim-gateway.toml"),
    ]);
    assert!(
        r.stderr
            .contains("89 frames, 89 messages, 77 events, 0 errors; 176 packets"),
        "{}",
        r.stderr
    );
    let events = kinds(&r.lines, "event");
    // Every cross-reference was learned from the gateway's MonitorStart in the same capture.
    assert!(events.iter().all(|e| e["device_source"] == "monitor_start"));
    assert!(events.iter().all(|e| e["pbx"] == "sim"));
    let delivered: Vec<Value> = std::fs::read_to_string(data("sim-gateway.delivered.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(delivered.len() > 40);
    assert_delivered_subsequence(&events, &delivered);
}

/// Every event the gateway delivered appears among the decoded events, in the same order and
/// with the same normalized fields (the hub adds `direction`; times differ by the read path).
fn assert_delivered_subsequence(decoded: &[Value], delivered: &[Value]) {
    let strip = |v: &Value, keys: &[&str]| {
        let mut v = v.clone();
        let m = v.as_object_mut().unwrap();
        for k in keys {
            m.remove(*k);
        }
        v
    };
    let decoded: Vec<(Value, u64)> = decoded
        .iter()
        .map(|e| {
            (
                strip(
                    e,
                    &[
                        "kind",
                        "flow",
                        "frame_index",
                        "offset",
                        "ts",
                        "device_source",
                        "ts_ms",
                    ],
                ),
                e["ts_ms"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut i = 0;
    for d in delivered {
        let want = strip(d, &["type", "login_id", "seq", "direction", "ts_ms"]);
        while i < decoded.len() && decoded[i].0 != want {
            i += 1;
        }
        assert!(i < decoded.len(), "delivered event not decoded: {want}");
        // The gateway stamps its own read time; the capture stamps the packet: close together.
        let gap = decoded[i].1.abs_diff(d["ts_ms"].as_u64().unwrap());
        assert!(gap < 2000, "{gap} ms apart: {want}");
        i += 1;
    }
}

#[test]
fn tshark_reassembly_agrees_with_ours() {
    if !have_tool("tshark") {
        return;
    }
    let o = Command::new("tshark")
        .args(["-r", &data_str("sim-gateway.pcapng")])
        .args(["-q", "-z", "follow,tcp,raw,0"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Node 1 (the PBX, port 41040) is indented with a tab; node 0 (the gateway) is not.
    let (mut pbx, mut gw) = (Vec::new(), Vec::new());
    for l in String::from_utf8(o.stdout).unwrap().lines() {
        let t = l.trim();
        if t.is_empty() || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        let bytes = hex::decode(t).unwrap();
        if l.starts_with('\t') {
            pbx.extend(bytes);
        } else {
            gw.extend(bytes);
        }
    }
    let capture = decode_ok(&[&data_str("sim-gateway.pcapng")]);
    for (stream, from) in [(pbx, "127.0.0.1:41040->"), (gw, "->127.0.0.1:41040")] {
        let ours: Vec<Value> = capture
            .lines
            .iter()
            .filter(|l| l["flow"].as_str().unwrap().contains(from))
            .cloned()
            .collect();
        let theirs = decode_with(&["--format", "raw", "-"], Some(&stream));
        assert_eq!(theirs.code, 0);
        assert!(!ours.is_empty());
        // Messages match exactly. Events differ only in the device they are normalized for: the
        // capture has both directions and learns it from MonitorStart; one stream cannot.
        assert_eq!(
            comparable(&kinds(&ours, "message")),
            comparable(&kinds(&theirs.lines, "message")),
            "{from}"
        );
        assert_eq!(
            kinds(&ours, "event").len(),
            kinds(&theirs.lines, "event").len()
        );
        assert!(kinds(&ours, "error").is_empty() && kinds(&theirs.lines, "error").is_empty());
    }
}

#[test]
fn stdin_and_the_port_filter() {
    let file = std::fs::read(data("sim-gateway.pcapng")).unwrap();
    let all = decode_ok(&[&data_str("sim-gateway.pcapng")]);
    let piped = decode_with(&["-", "--port", "41040"], Some(&file));
    assert_eq!(piped.code, 0);
    assert_eq!(piped.lines, all.lines);
    let none = decode_with(&["--port", "9", "--format", "pcap"], Some(&file));
    assert_eq!(none.code, 0);
    assert!(none.lines.is_empty());
    assert!(none.stderr.contains("0 frames"), "{}", none.stderr);
}

#[test]
fn bare_documents_need_no_header() {
    let r = decode_ok(&["--no-header", &data_str("bare.xml")]);
    assert!(r.stderr.contains("12 frames, 12 messages"), "{}", r.stderr);
    let msgs = kinds(&r.lines, "message");
    assert!(msgs.iter().all(|m| m["invoke_id"].is_null()));
    assert_eq!(msgs[0]["root"], "SystemStatus");
    let r = decode(&[&data_str("bare.xml")]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("add --no-header"), "{}", r.stderr);
}

#[test]
fn exit_codes_and_messages() {
    let r = decode(&["/nonexistent/capture.pcap"]);
    assert_ne!(r.code, 0);
    assert!(
        r.stderr.contains("cannot open /nonexistent/capture.pcap"),
        "{}",
        r.stderr
    );
    let r = decode_with(&["-"], Some(b"\x7fELF\x02\x01\x01 this is no capture"));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("not a recognizable capture"),
        "{}",
        r.stderr
    );
    let r = decode_with(&["--format", "pcap"], Some(b"\x00\x00\x01\x0b9999<a/>"));
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("not a pcap or pcapng file"),
        "{}",
        r.stderr
    );
    let r = decode_with(&[], Some(b""));
    assert_eq!(r.code, 0);
    assert!(r.stderr.contains("0 frames"), "{}", r.stderr);
    // A capture cut inside a record (tshark killed) still decodes what it has.
    let file = std::fs::read(data("sim-gateway.pcapng")).unwrap();
    let r = decode_with(&[], Some(&file[..file.len() / 2]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!kinds(&r.lines, "event").is_empty());
    let errors = kinds(&r.lines, "error");
    assert!(
        errors.iter().any(|e| e["error"] == "capture_truncated"),
        "{errors:?}"
    );
}

#[test]
fn garbage_in_every_format_never_panics() {
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut blobs: Vec<Vec<u8>> = vec![
        b"0a0d0d0a".to_vec(),
        vec![0x0a, 0x0d, 0x0d, 0x0a, 0xff, 0xff, 0xff, 0xff],
        vec![0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0],
    ];
    for len in [1, 7, 64, 999, 5000] {
        blobs.push(
            (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect(),
        );
    }
    let mut pcap = std::fs::read(data("t2p-eth-v4.pcap")).unwrap();
    for i in (40..pcap.len()).step_by(97) {
        pcap[i] ^= 0x5a;
    }
    blobs.push(pcap);
    for blob in &blobs {
        for format in ["auto", "raw", "hex", "pcap"] {
            for extra in [&[][..], &["--no-header"][..], &["--max-frame", "9"][..]] {
                let mut args = vec!["--format", format, "-"];
                args.extend_from_slice(extra);
                let r = decode_with(&args, Some(blob));
                assert!(
                    r.code == 0 || r.code == 1,
                    "exit {} for {format} {extra:?}: {}",
                    r.code,
                    r.stderr
                );
                assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
            }
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The whole path, live: tshark captures the loopback link between the simulator and a gateway
/// while a connector records what the gateway delivers; the decoded capture must list the same
/// events. Capturing needs root (or dumpcap's capabilities); without them the test skips unless
/// `CI` is set.
#[test]
fn a_live_loopback_capture_matches_the_gateway() {
    if !have_tool("tshark") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cap = dir.path().join("live.pcapng");
    let mut tshark = Command::new("tshark");
    tshark
        .args(["-i", "lo", "-f", &format!("tcp port {port}")])
        .args(["-a", "duration:60", "-w", cap.to_str().unwrap()]);
    let (mut tshark, tshark_rx) = spawn(tshark);
    let started = Instant::now();
    // tshark says "Capturing on 'Loopback: lo'" once dumpcap has the interface open.
    let line = loop {
        match tshark_rx.recv_timeout(Duration::from_secs(15)) {
            Ok(l) if l.contains("Capturing on") => break Ok(l),
            Ok(l) if l.contains("ermission") || l.contains("rror") => break Err(l),
            Ok(_) => {}
            Err(_) => break Err("tshark said nothing".into()),
        }
    };
    if let Err(why) = line {
        assert!(
            std::env::var_os("CI").is_none(),
            "tshark cannot capture on lo under CI: {why}"
        );
        eprintln!("SKIPPED: tshark cannot capture on lo here ({why})");
        return;
    }
    let c = |f: &str| {
        dir.path()
            .join("certs")
            .join(f)
            .to_str()
            .unwrap()
            .to_string()
    };
    let st = bin()
        .args(["gen-certs", dir.path().join("certs").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(st.status.success());
    let tok = String::from_utf8(bin().args(["token", "new"]).output().unwrap().stdout).unwrap();
    let token = tok
        .lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    let hash = tok
        .lines()
        .nth(1)
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    let mut sim = bin();
    sim.args(["sim", "csta-xml", "--listen", &format!("127.0.0.1:{port}")])
        .args([
            "--devices",
            "3",
            "--rate",
            "5",
            "--ring-ms",
            "200",
            "--talk-ms",
            "300",
        ]);
    let (_sim, sim_rx) = spawn(sim);
    wait_line(&sim_rx, Duration::from_secs(20), |l| {
        l.starts_with("CSTA XML simulator on ")
    });
    let config = format!(
        r#"
[api]
listen = "127.0.0.1:0"
cert = "{cert}"
key = "{key}"
[ops]
listen = "127.0.0.1:0"
[[pbx]]
name = "live"
protocol = "csta-xml"
mode = "dial"
address = "127.0.0.1:{port}"
tls = false
reconnect_min_ms = 100
[pbx.numbering]
country_code = "49"
[[login]]
login_id = "ALICE0000000000000001"
pbx = "live"
device = "4001"
[[login]]
login_id = "BOB00000000000000002"
pbx = "live"
device = "4002"
[[connector]]
name = "console"
token_sha256 = "{hash}"
login_ids = ["*"]
"#,
        cert = c("server.pem"),
        key = c("server.key.pem"),
    );
    let cfg = dir.path().join("gw.toml");
    std::fs::write(&cfg, config).unwrap();
    let mut gw = bin();
    gw.args(["run", "--config", cfg.to_str().unwrap()])
        .env("RUST_LOG", "info");
    let (gw, gw_rx) = spawn(gw);
    let started_line = wait_line(&gw_rx, Duration::from_secs(20), |l| {
        l.contains("gateway started")
    });
    let api = started_line
        .split("api=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let api_port = api.rsplit(':').next().unwrap();
    let mut con = bin();
    con.args(["connect", &format!("wss://localhost:{api_port}/v1/stream")])
        .args(["--token", &token, "--ca", &c("ca.pem"), "--json"])
        .args([
            "--login",
            "ALICE0000000000000001",
            "--login",
            "BOB00000000000000002",
        ]);
    let (con, con_rx) = spawn(con);
    let mut delivered = Vec::new();
    let until = Instant::now() + Duration::from_secs(5);
    while let Ok(l) = con_rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
        if let Ok(v) = serde_json::from_str::<Value>(&l)
            && v["type"] == "event"
        {
            delivered.push(v);
        }
    }
    drop(con);
    drop(gw);
    // SIGINT makes tshark finish the file cleanly (its -a duration is only a backstop).
    std::thread::sleep(Duration::from_millis(500));
    let pid = tshark.0.id().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let deadline = started + Duration::from_secs(90);
    while tshark.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "tshark did not stop");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        delivered.len() >= 5,
        "only {} events delivered",
        delivered.len()
    );
    let r = decode_ok(&[cap.to_str().unwrap(), "--config", cfg.to_str().unwrap()]);
    let errors = kinds(&r.lines, "error");
    // The capture may stop inside a frame; nothing else may go wrong.
    assert!(
        errors.iter().all(|e| e["error"] == "truncated"),
        "{errors:?}"
    );
    let events = kinds(&r.lines, "event");
    assert!(events.iter().all(|e| e["device_source"] == "monitor_start"));
    assert_delivered_subsequence(&events, &delivered);
}
