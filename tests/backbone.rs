//! End-to-end tests of the backbone: simulator ⇄ (TLS) ⇄ gateway ⇄ (TLS, WebSocket) ⇄ connectors.

mod common;

use common::{EnvOptions, LinkTls, metric, recv_until, start, wait_until};
use ctigate::config::Dialect;
use ctigate::connector::{Client, ClientError};
use ctigate::model::LoginId;
use ctigate::sim::csta_xml::{DeviceStyle, Scenario};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

const T: Duration = Duration::from_secs(20);

fn seq(v: &Value) -> u64 {
    v["seq"].as_u64().unwrap()
}

/// Reads until the client has `n` events (other messages are returned separately).
async fn events(c: &mut Client, n: usize) -> (Vec<Value>, Vec<Value>) {
    let (mut ev, mut other) = (vec![], vec![]);
    tokio::time::timeout(T, async {
        while ev.len() < n {
            let v = c.recv().await.unwrap();
            if v["type"] == "event" {
                ev.push(v);
            } else {
                other.push(v);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("only {} of {n} events arrived", ev.len()));
    (ev, other)
}

/// Receives until one message matching each predicate has arrived, in any order.
async fn both(
    c: &mut Client,
    mut a: impl FnMut(&Value) -> bool,
    mut b: impl FnMut(&Value) -> bool,
) -> (Value, Value) {
    let (mut x, mut y) = (None, None);
    tokio::time::timeout(T, async {
        while x.is_none() || y.is_none() {
            let v = c.recv().await.unwrap();
            if x.is_none() && a(&v) {
                x = Some(v);
            } else if y.is_none() && b(&v) {
                y = Some(v);
            }
        }
    })
    .await
    .expect("both messages");
    (x.unwrap(), y.unwrap())
}

/// Answers `call` for `login` and checks that the result is ok and the call is established
/// (the result and the event travel different queues: either may come first).
async fn answer(c: &mut Client, login: &str, call: &str) {
    c.send(&json!({"type":"answer","id":"a","login_id":login,"call_id":call}))
        .await
        .unwrap();
    let (r, _) = both(
        c,
        |v| v["type"] == "result" && v["id"] == "a",
        |v| v["event"] == "established" && v["call_id"] == call,
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
}

/// Waits for the Login ID's status to go yellow, then green again (a link that recovered).
async fn yellow_then_green(c: &mut Client) {
    recv_until(c, T, |v| v["type"] == "status" && v["status"] == "yellow").await;
    recv_until(c, T, |v| v["type"] == "status" && v["status"] == "green").await;
}

async fn quiet(env: &common::Env) {
    wait_until(T, || env.devices.iter().all(|d| env.sim.calls_at(d) == 0)).await;
    // Let the last events cross the link and the hub.
    tokio::time::sleep(Duration::from_millis(200)).await;
}

fn hub_seq(env: &common::Env, login: &str) -> u64 {
    env.gw.hub.seq(&LoginId::parse(login).unwrap()).unwrap()
}

async fn connectors_get_only_their_login_ids_in_seq_order(dialect: Dialect) {
    let env = start(EnvOptions::for_dialect("own-logins", dialect)).await;
    env.wait_green().await;
    let (mut first, w) = env
        .hello(&env.token_first, &[env.logins[0].clone()], &HashMap::new())
        .await;
    assert_eq!(w["login_ids"], json!([env.logins[0]]));
    let (mut second, _) = env
        .hello(&env.token_all, &[env.logins[1].clone()], &HashMap::new())
        .await;
    for _ in 0..4 {
        for d in &env.devices {
            for s in Scenario::ALL {
                env.sim.play(d, s);
            }
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    quiet(&env).await;
    for (c, login) in [(&mut first, &env.logins[0]), (&mut second, &env.logins[1])] {
        let n = hub_seq(&env, login);
        assert!(n >= 24, "every scenario produced events (got {n})");
        let (ev, other) = events(c, n as usize).await;
        assert!(
            ev.iter().all(|e| e["login_id"] == login.as_str()),
            "only its own Login ID"
        );
        let seqs: Vec<u64> = ev.iter().map(seq).collect();
        assert_eq!(seqs, (1..=n).collect::<Vec<_>>(), "in seq order, no gap");
        assert!(other.iter().all(|m| m["login_id"] == login.as_str()));
        for kind in [
            "delivered",
            "established",
            "connection_cleared",
            "initiated",
            "originated",
            "held",
            "retrieved",
        ] {
            assert!(ev.iter().any(|e| e["event"] == kind), "{kind} seen");
        }
    }
    // The transfer target's Login ID sees the transferred leg with the redirecting device.
    let transferred = env
        .hello(
            &env.token_all,
            &env.logins,
            &HashMap::from([
                (env.logins[0].clone(), 0),
                (env.logins[1].clone(), 0),
                (env.logins[2].clone(), 0),
            ]),
        )
        .await;
    let mut all = transferred.0;
    let total: u64 = env.logins.iter().map(|l| hub_seq(&env, l)).sum();
    let (ev, _) = events(&mut all, total as usize).await;
    assert!(ev.iter().any(|e| e["event"] == "transferred"));
    assert!(
        ev.iter()
            .any(|e| e["cause"] == "singleStepTransfer" && e["event"] == "delivered")
    );
}

async fn a_token_not_allowed_a_login_id_is_refused_clearly(dialect: Dialect) {
    let env = start(EnvOptions::for_dialect("auth", dialect)).await;
    // Only forbidden Login IDs: refused.
    let mut c = env.client().await;
    let err = c
        .hello(&env.token_first, &[env.logins[1].clone()], &HashMap::new())
        .await
        .unwrap_err();
    match err {
        ClientError::Refused { code, message } => {
            assert_eq!(code, "forbidden_login_id");
            assert!(message.contains(&env.logins[1]), "{message}");
        }
        e => panic!("{e}"),
    }
    // Then the gateway closes with 4003.
    let closed = tokio::time::timeout(T, async {
        loop {
            if let Err(e) = c.recv().await {
                return e;
            }
        }
    })
    .await
    .unwrap();
    assert!(
        matches!(closed, ClientError::Closed { code: 4003, .. }),
        "{closed}"
    );

    // A mix: the allowed one is served, the other refused with an error and a red status.
    let (mut c, w) = env
        .hello(
            &env.token_first,
            &[env.logins[0].clone(), env.logins[1].clone()],
            &HashMap::new(),
        )
        .await;
    assert_eq!(w["login_ids"], json!([env.logins[0]]));
    assert_eq!(w["rejected"][0]["code"], "forbidden_login_id");
    let e = c.recv().await.unwrap();
    assert_eq!(
        (
            e["type"].as_str(),
            e["code"].as_str(),
            e["login_id"].as_str()
        ),
        (
            Some("error"),
            Some("forbidden_login_id"),
            Some(env.logins[1].as_str())
        )
    );
    let s = c.recv().await.unwrap();
    assert_eq!(
        (s["type"].as_str(), s["status"].as_str()),
        (Some("status"), Some("red"))
    );

    // A user-name alias resolves to its Login ID; an unknown one is refused.
    let (_c, w) = env
        .hello(
            &env.token_all,
            &["USER5002@example.com".into(), "NOPE123".into()],
            &HashMap::new(),
        )
        .await;
    assert_eq!(w["login_ids"], json!([env.logins[1]]));
    assert_eq!(w["rejected"][0]["code"], "unknown_login_id");

    // A bad token is refused, counted, and rate-limited after 3 failures per minute.
    for i in 0..4 {
        let mut c = env.client().await;
        let err = c
            .hello("not-a-token", &[env.logins[0].clone()], &HashMap::new())
            .await
            .unwrap_err();
        let ClientError::Refused { code, .. } = err else {
            panic!("{err}")
        };
        assert_eq!(
            code,
            if i < 3 {
                "unauthorized"
            } else {
                "rate_limited"
            }
        );
    }
    let m = env.metrics().await;
    assert!(
        metric(
            &m,
            "ctigate_api_auth_failures_total",
            &[("reason", "bad_token")]
        ) >= 3.0
    );
    assert!(
        metric(
            &m,
            "ctigate_api_auth_failures_total",
            &[("reason", "rate_limited")]
        ) >= 1.0
    );

    // The first message must be hello.
    let mut c = env.client().await;
    c.send(&json!({"type":"ping"})).await.unwrap();
    let e = c.recv().await.unwrap();
    assert_eq!(e["code"], "hello_required");
}

async fn a_connector_that_stops_reading_is_disconnected_as_slow_consumer(dialect: Dialect) {
    let t0 = std::time::Instant::now();
    let mut o = EnvOptions::for_dialect("slow", dialect);
    o.devices = 2;
    o.queue_messages = 256;
    let env = start(o).await;
    env.wait_green().await;

    // The fast connector reads everything in the background.
    let (mut fast, _) = env
        .hello(&env.token_all, &env.logins, &HashMap::new())
        .await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let reader = tokio::spawn(async move {
        while let Ok(v) = fast.recv().await {
            if v["type"] == "event" && tx.send(v).is_err() {
                break;
            }
        }
    });

    // The slow one has a small receive window and never reads.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    // A small window, so the kernel buffers fill fast; not tiny, or the sender falls back on zero-window
    // probes (seconds apart) when the connector reads again.
    sock.set_recv_buffer_size(65536).unwrap();
    let tcp = sock.connect(env.gw.api_addr).await.unwrap();
    let mut slow = Client::over(
        &env.url,
        tcp,
        env.certs.client_config(false).unwrap(),
        "localhost",
    )
    .await
    .unwrap();
    slow.hello(&env.token_all, &env.logins, &HashMap::new())
        .await
        .unwrap();
    let login0 = LoginId::parse(&env.logins[0]).unwrap();
    wait_until(T, || env.gw.hub.subscriber_count(&login0) == 2).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while env.gw.hub.subscriber_count(&login0) == 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "slow consumer never disconnected"
        );
        for d in &env.devices {
            env.sim.play(d, Scenario::InboundAnswered);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eprintln!("{dialect:?} kicked after {:?}", t0.elapsed());
    quiet(&env).await;
    eprintln!("{dialect:?} quiet after {:?}", t0.elapsed());

    // The fast connector received every event of every Login ID, in order, without a gap.
    let mut got: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let want: u64 = env.logins.iter().map(|l| hub_seq(&env, l)).sum();
    let mut n = 0;
    tokio::time::timeout(T, async {
        while n < want {
            let v = rx.recv().await.unwrap();
            got.entry(v["login_id"].as_str().unwrap().to_string())
                .or_default()
                .push(seq(&v));
            n += 1;
        }
    })
    .await
    .expect("fast connector got every event");
    for l in &env.logins {
        assert_eq!(got[l], (1..=hub_seq(&env, l)).collect::<Vec<_>>());
    }
    reader.abort();
    eprintln!("{dialect:?} fast verified after {:?}", t0.elapsed());

    // The slow one, reading again, finds the reason and the close code.
    let (mut code, mut reason, mut error_seen) = (0, String::new(), false);
    tokio::time::timeout(T, async {
        loop {
            match slow.recv().await {
                Ok(v) if v["type"] == "error" => {
                    assert_eq!(v["code"], "slow_consumer");
                    error_seen = true;
                }
                Ok(_) => {}
                Err(ClientError::Closed { code: c, reason: r }) => {
                    (code, reason) = (c, r);
                    return;
                }
                Err(e) => panic!("{e}"),
            }
        }
    })
    .await
    .unwrap();
    eprintln!("{dialect:?} closed after {:?}", t0.elapsed());
    assert_eq!(
        (code, reason.as_str(), error_seen),
        (4008, "slow_consumer", true)
    );
    let m = env.metrics().await;
    assert!(
        metric(
            &m,
            "ctigate_slow_consumer_disconnects_total",
            &[("connector", "all")]
        ) >= 1.0
    );
}

async fn a_connector_resuming_gets_exactly_what_it_missed(dialect: Dialect) {
    let mut o = EnvOptions::for_dialect("resume", dialect);
    o.devices = 2;
    let env = start(o).await;
    env.wait_green().await;
    // A reference connector stays connected throughout.
    let (mut reference, _) = env
        .hello(&env.token_all, &env.logins, &HashMap::new())
        .await;
    let (mut a, _) = env
        .hello(&env.token_all, &env.logins, &HashMap::new())
        .await;
    for d in &env.devices {
        env.sim.play(d, Scenario::InboundAnswered);
        env.sim.play(d, Scenario::OutboundAnswered);
    }
    quiet(&env).await;
    let before: u64 = env.logins.iter().map(|l| hub_seq(&env, l)).sum();
    let (ev, _) = events(&mut a, before as usize).await;
    let mut last: HashMap<String, u64> = HashMap::new();
    for e in &ev {
        last.insert(e["login_id"].as_str().unwrap().to_string(), seq(e));
    }
    a.close().await;

    // Calls happen while it is away.
    for d in &env.devices {
        env.sim.play(d, Scenario::HoldRetrieve);
        env.sim.play(d, Scenario::InboundMissed);
    }
    quiet(&env).await;
    let total: u64 = env.logins.iter().map(|l| hub_seq(&env, l)).sum();
    assert!(total > before);

    let (mut a2, _) = env.hello(&env.token_all, &env.logins, &last).await;
    let (missed, other) = events(&mut a2, (total - before) as usize).await;
    assert!(
        other.iter().all(|m| m["type"] == "status"),
        "no gap, no snapshot: {other:?}"
    );
    let (all_ref, _) = events(&mut reference, total as usize).await;
    for l in &env.logins {
        let mine: Vec<&Value> = missed
            .iter()
            .filter(|e| e["login_id"] == l.as_str())
            .collect();
        let seqs: Vec<u64> = mine.iter().map(|e| seq(e)).collect();
        assert_eq!(
            seqs,
            ((last[l] + 1)..=hub_seq(&env, l)).collect::<Vec<_>>(),
            "exactly the missed range"
        );
        let theirs: Vec<&Value> = all_ref
            .iter()
            .filter(|e| e["login_id"] == l.as_str() && seq(e) > last[l])
            .collect();
        assert_eq!(mine, theirs, "the same events the reference connector saw");
    }
    // Nothing more, no duplicate: the next event is new.
    env.sim.play(&env.devices[0], Scenario::InboundMissed);
    let next = recv_until(&mut a2, T, |v| v["type"] == "event").await;
    assert_eq!(
        seq(&next),
        last[&env.logins[0]].max(hub_seq(&env, &env.logins[0]) - 1) + 1
    );
}

async fn a_resume_older_than_the_ring_gets_a_gap_and_a_snapshot(dialect: Dialect) {
    let mut o = EnvOptions::for_dialect("gap", dialect);
    o.devices = 1;
    o.replay_ring = 4;
    let env = start(o).await;
    env.wait_green().await;
    for _ in 0..3 {
        env.sim.play(&env.devices[0], Scenario::OutboundAnswered);
    }
    quiet(&env).await;
    let n = hub_seq(&env, &env.logins[0]);
    let (mut c, _) = env
        .hello(
            &env.token_all,
            &env.logins,
            &HashMap::from([(env.logins[0].clone(), 1)]),
        )
        .await;
    let gap = recv_until(&mut c, T, |v| v["type"] == "gap").await;
    assert_eq!(
        (
            gap["from_seq"].as_u64(),
            gap["to_seq"].as_u64(),
            gap["reason"].as_str()
        ),
        (Some(2), Some(n), Some("ring_overflow"))
    );
    let snap = c.recv().await.unwrap();
    assert_eq!(
        (snap["type"].as_str(), snap["seq"].as_u64()),
        (Some("snapshot"), Some(n))
    );
}

async fn a_link_cut_mid_frame_reconnects_and_remonitors(dialect: Dialect) {
    let mut o = EnvOptions::for_dialect("cut", dialect);
    o.devices = 2;
    let env = start(o).await;
    let mut c = env.green_client().await;
    for l in &env.logins {
        recv_until(&mut c, T, |v| {
            v["type"] == "status" && v["login_id"] == l.as_str() && v["status"] == "green"
        })
        .await;
    }
    assert!(env.sim.cut_mid_frame());
    let mut statuses: BTreeMap<String, Vec<String>> = BTreeMap::new();
    tokio::time::timeout(T, async {
        while statuses
            .values()
            .filter(|s| s.ends_with(&["green".to_string()]))
            .count()
            < env.logins.len()
        {
            let v = c.recv().await.unwrap();
            if v["type"] == "status" {
                let l = v["login_id"].as_str().unwrap().to_string();
                statuses
                    .entry(l)
                    .or_default()
                    .push(v["status"].as_str().unwrap().to_string());
            }
        }
    })
    .await
    .expect("yellow then green");
    for l in &env.logins {
        assert_eq!(statuses[l], vec!["yellow", "green"], "{l}");
    }
    assert_eq!(env.sim.connections(), 2);
    wait_until(T, || env.sim.monitored() == env.devices.len()).await;
    // Events flow again on the new connection.
    env.sim.play(&env.devices[1], Scenario::InboundAnswered);
    let e = recv_until(&mut c, T, |v| v["type"] == "event").await;
    assert_eq!(e["login_id"], env.logins[1].as_str());
    let m = env.metrics().await;
    assert!(
        metric(
            &m,
            "ctigate_link_disconnects_total",
            &[("link", env.pbx.as_str()), ("reason", "eof_mid_frame")]
        ) >= 1.0
    );
    assert_eq!(
        metric(&m, "ctigate_link_up", &[("link", env.pbx.as_str())]),
        1.0
    );
    assert!(
        metric(
            &m,
            "ctigate_link_connects_total",
            &[("link", env.pbx.as_str())]
        ) >= 2.0
    );
}

async fn calls_lost_during_an_outage_are_closed_after_resync(dialect: Dialect) {
    let mut o = EnvOptions::for_dialect("resync", dialect);
    o.devices = 1;
    o.timing.talk = Duration::from_secs(30);
    let env = start(o).await;
    let mut c = env.green_client().await;
    env.sim.play(&env.devices[0], Scenario::InboundAnswered);
    let est = recv_until(&mut c, T, |v| v["event"] == "established").await;
    let call = est["call_id"].as_str().unwrap().to_string();
    let login = LoginId::parse(&env.logins[0]).unwrap();
    assert_eq!(env.gw.hub.calls(&login).unwrap().len(), 1);
    // The PBX loses the call while the link is down (a restart): no event will ever say so.
    env.sim.forget_calls();
    assert!(env.sim.cut_mid_frame());
    let lost = recv_until(&mut c, T, |v| {
        v["type"] == "event" && v["call_id"] == call.as_str()
    })
    .await;
    assert_eq!(
        (lost["event"].as_str(), lost["cause"].as_str()),
        (Some("call_lost"), Some("resync"))
    );
    assert_eq!(lost["direction"], "inbound");
    assert!(env.gw.hub.calls(&login).unwrap().is_empty());
}

async fn malformed_frames_are_counted_and_the_link_carries_on(dialect: Dialect) {
    let mut o = EnvOptions::for_dialect("malformed", dialect);
    o.devices = 1;
    o.max_frame_bytes = 4096;
    let env = start(o).await;
    let mut c = env.green_client().await;

    fn framed(invoke: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = vec![0, 0];
        v.extend_from_slice(&((body.len() + 8) as u16).to_be_bytes());
        v.extend_from_slice(invoke);
        v.extend_from_slice(body);
        v
    }
    // Bad header (garbage with no framing at all).
    assert!(
        env.sim
            .inject_raw(b"\x17\x03\x03garbage that is not a frame".to_vec())
    );
    // Over the 4096-byte cap.
    assert!(env.sim.inject_raw(framed(b"9999", &vec![b'<'; 8000])));
    // Not XML.
    assert!(
        env.sim
            .inject_raw(framed(b"9999", b"this is not XML at all"))
    );
    // Truncated XML.
    assert!(env.sim.inject_raw(framed(
        b"9999",
        b"<?xml version=\"1.0\"?><DeliveredEvent><monitorCrossRefID>1</monitorCr"
    )));
    // Then a real call.
    env.sim.play(&env.devices[0], Scenario::InboundAnswered);
    let (ev, _) = events(&mut c, 3).await;
    assert_eq!(ev[0]["event"], "delivered");
    assert_eq!(env.sim.connections(), 1, "the link did not reconnect");

    let m = env.metrics().await;
    for kind in ["bad_header", "oversize", "not_xml", "truncated"] {
        assert!(
            metric(
                &m,
                "ctigate_link_decode_errors_total",
                &[("link", env.pbx.as_str()), ("kind", kind)]
            ) >= 1.0,
            "{kind} counted"
        );
    }
    // The metrics the backbone promises.
    assert!(
        metric(
            &m,
            "ctigate_link_frames_total",
            &[("link", env.pbx.as_str()), ("direction", "rx")]
        ) > 0.0
    );
    assert!(
        metric(
            &m,
            "ctigate_link_events_total",
            &[("link", env.pbx.as_str()), ("event", "delivered")]
        ) >= 1.0
    );
    assert_eq!(
        metric(&m, "ctigate_link_up", &[("link", env.pbx.as_str())]),
        1.0
    );
    assert!(metric(&m, "ctigate_api_sessions", &[("connector", "all")]) >= 1.0);
    assert!(
        metric(
            &m,
            "ctigate_event_latency_seconds_count",
            &[("connector", "all")]
        ) >= 3.0
    );
    assert!(
        m.contains("ctigate_event_latency_seconds_bucket{"),
        "a histogram with buckets"
    );
    assert!(
        m.contains("# TYPE ctigate_slow_consumer_disconnects_total counter")
            || !m.contains("ctigate_slow_consumer_disconnects_total{")
    );

    let (status, body) = env.http_get("/readyz").await;
    assert!(status.contains("200"), "{status} {body}");
    let (status, _) = env.http_get("/healthz").await;
    assert!(status.contains("200"));
    let (_, body) = env.http_get("/status").await;
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["links"][0]["up"], true);
    assert_eq!(v["logins"]["green"], 1);
    // The simulator's certificate (397 days) as the link saw it at connect; metric and status
    // agree.
    let expires = v["links"][0]["peer_certificate_expires"].as_i64().unwrap();
    let left = expires - (ctigate::model::now_ms() / 1000) as i64;
    assert!((396 * 86_400..=398 * 86_400).contains(&left), "{left}");
    assert_eq!(
        metric(
            &m,
            "ctigate_link_peer_certificate_expiry_timestamp_seconds",
            &[("link", env.pbx.as_str())]
        ),
        expires as f64
    );
    let (_, page) = env.http_get("/").await;
    assert!(page.contains("PBX certificate expires"), "{page}");
}

async fn make_call_and_call_control_round_trip(dialect: Dialect) {
    let mut o = EnvOptions::for_dialect("control", dialect);
    o.devices = 2;
    o.timing.ring = Duration::from_millis(3000);
    let env = start(o).await;
    env.wait_green().await;
    let (mut c, _) = env
        .hello(&env.token_first, &[env.logins[0].clone()], &HashMap::new())
        .await;
    c.send(&json!({"type":"make_call","id":42,"login_id":env.logins[0],"to":"+49 30 999"}))
        .await
        .unwrap();
    let r = recv_until(&mut c, T, |v| v["type"] == "result").await;
    assert_eq!(
        (r["id"].as_u64(), r["ok"].as_bool(), r["command"].as_str()),
        (Some(42), Some(true), Some("make_call"))
    );
    let call = r["call_id"].as_str().unwrap().to_string();
    let e = recv_until(&mut c, T, |v| v["event"] == "originated").await;
    assert_eq!(e["call_id"], call.as_str());
    assert_eq!(e["called"]["number"], "+4930999");
    assert_eq!(e["direction"], "outbound");

    // Not this connection's Login ID.
    c.send(&json!({"type":"make_call","id":"x","login_id":env.logins[1],"to":"1"}))
        .await
        .unwrap();
    let r = recv_until(&mut c, T, |v| v["type"] == "result" && v["id"] == "x").await;
    assert_eq!(r["error"]["code"], "forbidden");

    // Hang up the outbound call.
    c.send(&json!({"type":"clear","id":"h","login_id":env.logins[0],"call_id":call}))
        .await
        .unwrap();
    // The result and the event travel different queues: either may come first.
    let (r, _) = both(
        &mut c,
        |v| v["type"] == "result" && v["id"] == "h",
        |v| v["event"] == "connection_cleared" && v["call_id"] == call.as_str(),
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");

    // Answer an inbound call while it rings.
    env.sim.play(&env.devices[0], Scenario::InboundMissed);
    let d = recv_until(&mut c, T, |v| {
        v["event"] == "delivered" && v["state"] == "alerting"
    })
    .await;
    let inbound = d["call_id"].as_str().unwrap().to_string();
    answer(&mut c, &env.logins[0], &inbound).await;

    // A call that is not this Login ID's.
    c.send(&json!({"type":"hold","id":"z","login_id":env.logins[0],"call_id":"nope"}))
        .await
        .unwrap();
    let r = recv_until(&mut c, T, |v| v["type"] == "result" && v["id"] == "z").await;
    assert_eq!(r["error"]["code"], "unknown_call");

    // Malformed input gets an error and the session carries on.
    c.send_text("{not json").await.unwrap();
    let e = recv_until(&mut c, T, |v| v["type"] == "error").await;
    assert_eq!(e["code"], "bad_message");
    c.send(&json!({"type":"ping","id":1})).await.unwrap();
    recv_until(&mut c, T, |v| v["type"] == "pong").await;
}

async fn a_pbx_that_dials_the_gateway_in_accept_mode(dialect: Dialect) {
    let mut o = EnvOptions::for_dialect("accept-mode", dialect);
    o.devices = 2;
    o.accept = true;
    let env = start(o).await;
    let mut c = env.green_client().await;
    env.sim.play(&env.devices[1], Scenario::InboundAnswered);
    let e = recv_until(&mut c, T, |v| v["type"] == "event").await;
    assert_eq!(
        (e["event"].as_str(), e["login_id"].as_str()),
        (Some("delivered"), Some(env.logins[1].as_str()))
    );
    // The PBX's connection drops mid-frame; it dials again and the link recovers.
    assert!(env.sim.cut_mid_frame());
    yellow_then_green(&mut c).await;
    assert!(env.sim.connections() >= 2);
}

/// Accept mode over plain TCP: stray connections (a scanner, a peer speaking something else)
/// cost the live session nothing; the PBX dialing again after a restart, with its old
/// connection left half-open, replaces it as soon as its new session is open.
async fn in_accept_mode_only_a_connection_that_opens_a_session_replaces_the_live_one(
    dialect: Dialect,
) {
    let mut o = EnvOptions::for_dialect("accept-replace", dialect);
    o.devices = 1;
    o.accept = true;
    o.link_tls = LinkTls::Plain;
    let env = start(o).await;
    let mut c = env.green_client().await;
    let addr = env.pbx_listen.clone().unwrap();
    let pbx = env.pbx.as_str();
    let replaced = |m: &str| {
        metric(
            m,
            "ctigate_link_disconnects_total",
            &[("link", pbx), ("reason", "replaced")],
        )
    };
    let no_session = |m: &str| {
        metric(
            m,
            "ctigate_link_connect_failures_total",
            &[("link", pbx), ("kind", "no_session")],
        )
    };
    // One connects and says nothing; one speaks HTTP and hangs up.
    let silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut http = tokio::net::TcpStream::connect(&addr).await.unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    drop(http);
    let m = env.metrics_when(|m| no_session(m) >= 1.0).await;
    assert_eq!(no_session(&m), 1.0, "the HTTP client was not refused");
    assert_eq!(replaced(&m), 0.0);
    assert_eq!(env.sim.connections(), 1);
    env.sim.play(&env.devices[0], Scenario::InboundAnswered);
    let first = recv_until(&mut c, T, |v| v["event"] == "established").await;
    // The PBX restarts: its old connection stays open but dead, and it dials again.
    assert!(env.sim.abandon_connection());
    wait_until(T, || env.sim.connections() == 2 && env.sim.monitored() == 1).await;
    let m = env.metrics_when(|m| replaced(m) >= 1.0).await;
    assert_eq!(replaced(&m), 1.0);
    env.wait_green().await;
    env.sim.play(&env.devices[0], Scenario::InboundAnswered);
    recv_until(&mut c, T, |v| {
        v["event"] == "established" && v["call_id"] != first["call_id"]
    })
    .await;
    drop(silent);
}

/// What a hotline call carries besides its parties reaches the connector: the number the caller
/// dialed and where they called from (`associated_called`, `associated_calling`), the IVR's user
/// data, the correlator, and the account code the agent entered (a `call_information` event).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hotline_call_brings_its_dialed_number_user_data_and_account_code() {
    use ctigate::sim::csta_xml::{HOTLINE_ACCOUNT, HOTLINE_USER_DATA};
    let mut o = EnvOptions::new("hotline");
    o.devices = 1;
    let env = start(o).await;
    let mut c = env.green_client().await;
    env.sim.play(&env.devices[0], Scenario::Hotline);
    let d = recv_until(&mut c, T, |v| v["event"] == "delivered").await;
    assert_eq!(d["associated_called"]["number"], "+4989700100", "{d}");
    assert_eq!(d["associated_called"]["kind"], "international", "{d}");
    assert_eq!(d["associated_calling"]["raw"], d["calling"]["raw"], "{d}");
    assert_eq!(d["user_data"], HOTLINE_USER_DATA, "{d}");
    assert!(d["correlator_data"].is_string(), "{d}");
    assert_eq!(d["cause"], "distributed");
    let i = recv_until(&mut c, T, |v| v["event"] == "call_information").await;
    assert_eq!(
        (i["name"].as_str(), i["account"].as_str(), &i["call_id"]),
        (
            Some("CallInformationEvent"),
            Some(HOTLINE_ACCOUNT),
            &d["call_id"]
        ),
        "{i}"
    );
    // The account code does not end the call, and the call's end still comes.
    let e = recv_until(&mut c, T, |v| v["event"] == "connection_cleared").await;
    assert_eq!(e["call_id"], d["call_id"]);
    assert!(
        e.get("user_data").is_none(),
        "only events that carry it: {e}"
    );
    let m = env.metrics().await;
    assert_eq!(
        metric(
            &m,
            "ctigate_link_unknown_events_total",
            &[("link", env.pbx.as_str())]
        ),
        0.0
    );
}

/// Accept mode with `accept_from`: a connection from any other address is closed before the
/// gateway sends a byte (with ecma354 the first bytes would be the session login), and counted;
/// one from a listed address is sent the login. Loopback lets the test connect from 127.0.0.1
/// and from 127.0.0.2 (on Linux, where all of 127/8 is loopback).
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_accept_mode_a_peer_outside_accept_from_is_closed_before_it_hears_anything() {
    let mut o = EnvOptions::for_dialect("accept-from", Dialect::Ecma354);
    o.devices = 1;
    o.accept = true;
    o.link_tls = LinkTls::Plain;
    // The simulator dials from 127.0.0.1, so it is refused too.
    o.accept_from = vec!["127.0.0.2", "::1"];
    let env = start(o).await;
    let addr: std::net::SocketAddr = env.pbx_listen.clone().unwrap().parse().unwrap();
    let pbx = env.pbx.as_str();
    let refused = |m: &str| {
        metric(
            m,
            "ctigate_link_connect_failures_total",
            &[("link", pbx), ("kind", "peer_not_allowed")],
        )
    };
    use tokio::io::AsyncReadExt;
    // The simulator's attempts are refused (and show that the gateway listens by now).
    let m = env.metrics_when(|m| refused(m) >= 1.0).await;
    let before = refused(&m);
    assert!(before >= 1.0, "the simulator's connection was not refused");
    let mut outsider = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut heard = Vec::new();
    // EOF or a reset: either way nothing was sent.
    let _ = tokio::time::timeout(T, outsider.read_to_end(&mut heard))
        .await
        .expect("the gateway kept a connection from outside accept_from open");
    assert!(heard.is_empty(), "sent to an outsider: {heard:?}");
    let m = env.metrics_when(|m| refused(m) > before).await;
    assert!(refused(&m) > before, "not counted");
    assert_eq!(
        metric(&m, "ctigate_link_connects_total", &[("link", pbx)]),
        0.0
    );
    // From a listed address the gateway opens its session: StartApplicationSession, login and all.
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut pbx_side = sock.connect(addr).await.unwrap();
    let mut d = ctigate::codec::framing::Deframer::new(65_535);
    tokio::time::timeout(
        T,
        read_until_root(&mut pbx_side, &mut d, "StartApplicationSession"),
    )
    .await
    .expect("no StartApplicationSession for a listed address");
    assert_eq!(
        env.sim.monitored(),
        0,
        "the simulator, dialing from 127.0.0.1, got in"
    );
}

/// Reads frames from `s` until one whose root is `root`; returns its invoke id.
async fn read_until_root(
    s: &mut tokio::net::TcpStream,
    d: &mut ctigate::codec::framing::Deframer,
    root: &str,
) -> u16 {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while let Ok(Some(f)) = d.next_frame() {
            let doc = ctigate::codec::xml::decode(&f.body).unwrap();
            if doc.name == root {
                return f.invoke_id.0;
            }
        }
        let n = s.read(&mut buf).await.unwrap();
        assert!(
            n > 0,
            "the gateway closed the connection before sending {root}"
        );
        d.push(&buf[..n]);
    }
}

fn osv_frame(id: u16, body: &str) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    ctigate::codec::framing::encode_frame(
        ctigate::codec::framing::InvokeId(id),
        body.as_bytes(),
        &mut out,
    )
    .unwrap();
    out.to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_accept_mode_a_connection_still_opening_when_the_live_one_drops_takes_over() {
    let mut o = EnvOptions::for_dialect("accept-takeover", Dialect::Osv);
    o.devices = 1;
    o.accept = true;
    o.link_tls = LinkTls::Plain;
    let env = start(o).await;
    env.wait_green().await;
    // The PBX's new connection (played here by hand) arrives while the old one is live, and
    // says nothing yet.
    let addr = env.pbx_listen.clone().unwrap();
    let mut pbx = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The old connection drops before the new one has opened its session.
    assert!(env.sim.cut_mid_frame());
    wait_until(T, || {
        !env.gw.links[0]
            .up
            .load(std::sync::atomic::Ordering::Relaxed)
    })
    .await;
    // Now it opens, OSV style; the gateway monitors on it.
    let mut d = ctigate::codec::framing::Deframer::new(65_535);
    pbx.write_all(&osv_frame(
        1,
        "<SystemStatus><systemStatus>enabled</systemStatus></SystemStatus>",
    ))
    .await
    .unwrap();
    let reg = tokio::time::timeout(T, read_until_root(&mut pbx, &mut d, "SystemRegister"))
        .await
        .unwrap();
    pbx.write_all(&osv_frame(
        reg,
        "<SystemRegisterResponse><sysStatRegisterID>1</sysStatRegisterID></SystemRegisterResponse>",
    ))
    .await
    .unwrap();
    tokio::time::timeout(T, read_until_root(&mut pbx, &mut d, "MonitorStart"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectors_without_a_client_certificate_are_refused_under_mtls() {
    let mut o = EnvOptions::new("mtls");
    o.devices = 1;
    o.api_mtls = true;
    let env = start(o).await;
    // With the client certificate: served.
    let (_c, w) = env
        .hello(&env.token_all, &env.logins, &HashMap::new())
        .await;
    assert_eq!(w["type"], "welcome");
    // Without: the TLS handshake (or the first read after it) fails, and it is counted.
    let r = async {
        let mut c = Client::connect(&env.url, env.certs.client_config(false).unwrap()).await?;
        c.hello(&env.token_all, &env.logins, &HashMap::new()).await
    }
    .await;
    assert!(r.is_err(), "served without a client certificate");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let m = env.metrics().await;
    assert!(metric(&m, "ctigate_api_tls_handshake_failures_total", &[]) >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pbx_whose_certificate_is_not_trusted_is_not_connected() {
    let mut o = EnvOptions::new("wrong-ca");
    o.devices = 1;
    let env = {
        o.link_tls = LinkTls::WrongCa;
        start(o).await
    };
    let (mut c, _) = env
        .hello(&env.token_all, &env.logins, &HashMap::new())
        .await;
    let s = recv_until(&mut c, T, |v| v["type"] == "status").await;
    assert_eq!(
        (s["status"].as_str(), s["reason"].as_str()),
        (Some("yellow"), Some("connecting"))
    );
    wait_until(T, || {
        env.gw.links[0]
            .last_error
            .lock()
            .unwrap()
            .as_deref()
            .is_some_and(|e| e.contains("TLS handshake"))
    })
    .await;
    let m = env.metrics().await;
    assert!(
        metric(
            &m,
            "ctigate_link_connect_failures_total",
            &[("link", env.pbx.as_str()), ("kind", "tls_handshake")]
        ) >= 1.0
    );
    assert_eq!(
        metric(&m, "ctigate_link_up", &[("link", env.pbx.as_str())]),
        0.0
    );
    let (status, _) = env.http_get("/readyz").await;
    assert!(status.contains("503"), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_tcp_link_works_when_configured() {
    let mut o = EnvOptions::new("plain");
    o.devices = 1;
    o.link_tls = LinkTls::Plain;
    let env = start(o).await;
    let mut c = env.green_client().await;
    env.sim.play(&env.devices[0], Scenario::OutboundAnswered);
    let e = recv_until(&mut c, T, |v| v["type"] == "event").await;
    assert_eq!(e["event"], "initiated");
}

/// Runs each backbone test against every session dialect the simulator speaks.
macro_rules! per_dialect {
    ($($name:ident),* $(,)?) => {
        mod osv {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(Dialect::Osv).await })*
        }
        mod request_system_status {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(Dialect::RequestSystemStatus).await })*
        }
        mod ecma354 {
            use super::*;
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name(Dialect::Ecma354).await })*
        }
    };
}

per_dialect!(
    connectors_get_only_their_login_ids_in_seq_order,
    a_token_not_allowed_a_login_id_is_refused_clearly,
    a_connector_that_stops_reading_is_disconnected_as_slow_consumer,
    a_connector_resuming_gets_exactly_what_it_missed,
    a_resume_older_than_the_ring_gets_a_gap_and_a_snapshot,
    a_link_cut_mid_frame_reconnects_and_remonitors,
    calls_lost_during_an_outage_are_closed_after_resync,
    malformed_frames_are_counted_and_the_link_carries_on,
    make_call_and_call_control_round_trip,
    a_pbx_that_dials_the_gateway_in_accept_mode,
    in_accept_mode_only_a_connection_that_opens_a_session_replaces_the_live_one,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ecma354_session_is_kept_alive_by_timer_resets() {
    // The simulator grants 2 s sessions and drops any session whose timer is not reset in time.
    let mut o = EnvOptions::for_dialect("appl-session", Dialect::Ecma354);
    o.devices = 1;
    let env = start(o).await;
    env.wait_green().await;
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(env.sim.connections(), 1, "the session never expired");
    let m = env.metrics().await;
    assert_eq!(
        metric(&m, "ctigate_link_up", &[("link", env.pbx.as_str())]),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "ctigate_link_disconnects_total",
            &[("link", env.pbx.as_str())]
        ),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ecma354_login_with_a_wrong_password_is_refused() {
    let mut o = EnvOptions::for_dialect("appl-login", Dialect::Ecma354);
    o.devices = 1;
    o.session_password = "not-what-the-gateway-sends";
    let env = start(o).await;
    wait_until(T, || {
        env.gw.links[0]
            .last_error
            .lock()
            .unwrap()
            .as_deref()
            .is_some_and(|e| e.contains("StartApplicationSession refused"))
    })
    .await;
    let login = LoginId::parse(&env.logins[0]).unwrap();
    assert_eq!(
        env.gw.hub.status(&login).unwrap().0,
        ctigate::model::StatusLevel::Yellow
    );
    let m = env.metrics().await;
    assert!(
        metric(
            &m,
            "ctigate_link_disconnects_total",
            &[("link", env.pbx.as_str()), ("reason", "protocol")]
        ) >= 1.0
    );
}

/// One namespace and device-id style end to end: events in, normalized events out (the device
/// number extracted from its styled form), a command out in the configured namespace.
async fn namespace_style(
    name: &str,
    dialect: Dialect,
    namespace: &'static str,
    prefix: Option<&'static str>,
    style: DeviceStyle,
) {
    let mut o = EnvOptions::for_dialect(name, dialect);
    o.devices = 1;
    o.namespace = namespace;
    o.namespace_prefix = prefix;
    o.device_style = style;
    o.timing.ring = Duration::from_millis(3000);
    let env = start(o).await;
    let mut c = env.green_client().await;
    env.sim.play(&env.devices[0], Scenario::InboundMissed);
    let d = recv_until(&mut c, T, |v| v["event"] == "delivered").await;
    assert_eq!(d["login_id"], env.logins[0].as_str());
    assert_eq!(d["direction"], "inbound", "{d}");
    assert_eq!(d["called"]["number"], env.devices[0].as_str(), "{d}");
    assert!(
        d["calling"]["number"]
            .as_str()
            .is_some_and(|n| n.starts_with('+')),
        "{d}"
    );
    let call = d["call_id"].as_str().unwrap().to_string();
    answer(&mut c, &env.logins[0], &call).await;
    // The gateway wrote every CSTA request in the profile's namespace, and echoed the switch's
    // own connection ids.
    assert_eq!(env.sim.requests_in_other_namespaces(), 0);
    if style != DeviceStyle::Plain {
        assert!(env.sim.styled_device_ids_received() >= 1);
    }
}

mod namespaces {
    use super::*;
    use ctigate::codec::xml::encode::ns;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn osv_ed2_on_the_old_domain_with_osv_device_ids() {
        namespace_style("ns-ed2", Dialect::Osv, ns::ED2, None, DeviceStyle::Osv).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ms_rcc_ed3_with_tel_uris() {
        let d = Dialect::RequestSystemStatus;
        namespace_style("ns-ed3", d, ns::ED3, None, DeviceStyle::TelUri).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn snom_ed5_with_sip_uris() {
        let d = Dialect::RequestSystemStatus;
        namespace_style("ns-ed5", d, ns::ED5, None, DeviceStyle::SipUri).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ed6() {
        namespace_style("ns-ed6", Dialect::Osv, ns::ED6, None, DeviceStyle::Plain).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_namespace() {
        namespace_style("ns-none", Dialect::Osv, "", None, DeviceStyle::Plain).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn prefixed_elements_in_an_ecma354_session() {
        let (d, p) = (Dialect::Ecma354, Some("csta"));
        namespace_style("ns-prefixed", d, ns::ED4, p, DeviceStyle::Plain).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_we_do_not_normalize_reaches_connectors_as_unknown_and_is_counted() {
    let mut o = EnvOptions::for_dialect("unknown-event", Dialect::Osv);
    o.devices = 1;
    let env = start(o).await;
    let mut c = env.green_client().await;
    env.sim.emit_event(
        &env.devices[0],
        "ButtonPressEvent",
        &format!(
            "<device><deviceIdentifier>{}</deviceIdentifier></device><button>7</button><vendorData><x>1</x></vendorData>",
            env.devices[0]
        ),
    );
    let e = recv_until(&mut c, T, |v| v["type"] == "event").await;
    assert_eq!(
        (e["event"].as_str(), e["name"].as_str()),
        (Some("unknown"), Some("ButtonPressEvent")),
        "{e}"
    );
    assert_eq!(e["login_id"], env.logins[0].as_str());
    let m = env.metrics().await;
    assert_eq!(
        metric(
            &m,
            "ctigate_link_unknown_events_total",
            &[("link", env.pbx.as_str())]
        ),
        1.0
    );
    // The link carries on.
    env.sim.play(&env.devices[0], Scenario::InboundAnswered);
    recv_until(&mut c, T, |v| v["event"] == "established").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_sent_in_segments_closes_only_the_calls_the_pbx_lost() {
    let mut o = EnvOptions::for_dialect("segmented-snapshot", Dialect::RequestSystemStatus);
    o.devices = 1;
    o.segmented_snapshots = true;
    o.timing.talk = Duration::from_secs(60);
    let env = start(o).await;
    let mut c = env.green_client().await;
    let login = LoginId::parse(&env.logins[0]).unwrap();
    let resyncs = |m: &str| {
        metric(
            m,
            "ctigate_link_resyncs_total",
            &[("link", env.pbx.as_str()), ("outcome", "done")],
        )
    };
    for _ in 0..2 {
        env.sim.play(&env.devices[0], Scenario::InboundAnswered);
        recv_until(&mut c, T, |v| v["event"] == "established").await;
    }
    assert_eq!(env.gw.hub.calls(&login).unwrap().len(), 2);
    let before = resyncs(&env.metrics().await);
    // The link drops but the PBX keeps both calls: the resync, whose calls arrive one per
    // segment after an answer that holds none, must close nothing.
    assert!(env.sim.cut_mid_frame());
    let m = env.metrics_when(|m| resyncs(m) > before).await;
    assert!(resyncs(&m) > before, "no resync after the reconnect");
    assert_eq!(env.sim.requests_received("SnapshotDevice"), 2);
    assert_eq!(env.gw.hub.calls(&login).unwrap().len(), 2);
    // Now the PBX loses them while the link is down: both are closed once the last segment is in.
    env.sim.forget_calls();
    assert!(env.sim.cut_mid_frame());
    let lost = recv_until(&mut c, T, |v| v["event"] == "call_lost").await;
    assert_eq!(lost["cause"], "resync");
    recv_until(&mut c, T, |v| v["event"] == "call_lost").await;
    assert!(env.gw.hub.calls(&login).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_reporting_lost_messages_is_resynced_and_one_going_down_is_reconnected() {
    let mut o = EnvOptions::for_dialect("switch-status", Dialect::Osv);
    o.devices = 1;
    o.timing.talk = Duration::from_secs(60);
    let env = start(o).await;
    let mut c = env.green_client().await;
    let login = LoginId::parse(&env.logins[0]).unwrap();
    env.sim.play(&env.devices[0], Scenario::InboundAnswered);
    let est = recv_until(&mut c, T, |v| v["event"] == "established").await;
    let call = est["call_id"].as_str().unwrap().to_string();
    let connects = env.sim.connections();
    // The switch drops the call's events and says so: the gateway asks again and closes it,
    // on the same connection.
    env.sim.forget_calls();
    assert!(env.sim.send_system_status("messagesLost"));
    let lost = recv_until(&mut c, T, |v| v["type"] == "event").await;
    assert_eq!(
        (
            lost["event"].as_str(),
            lost["cause"].as_str(),
            lost["call_id"].as_str()
        ),
        (Some("call_lost"), Some("resync"), Some(call.as_str()))
    );
    assert!(env.gw.hub.calls(&login).unwrap().is_empty());
    assert_eq!(env.sim.connections(), connects);
    assert_eq!(env.sim.requests_received("SnapshotDevice"), 2);
    let m = env.metrics().await;
    let status = |s| {
        metric(
            &m,
            "ctigate_link_switch_status_total",
            &[("link", env.pbx.as_str()), ("status", s)],
        )
    };
    assert_eq!(status("messagesLost"), 1.0);
    assert_eq!(status("enabled"), 1.0);
    // The switch takes its CSTA service down: the link closes, backs off and opens again.
    assert!(env.sim.send_system_status("disabled"));
    yellow_then_green(&mut c).await;
    assert!(env.sim.connections() > connects);
    env.sim.play(&env.devices[0], Scenario::InboundAnswered);
    recv_until(&mut c, T, |v| v["event"] == "established").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_orderly_stop_ends_monitors_and_the_application_session() {
    let mut o = EnvOptions::for_dialect("orderly-stop", Dialect::Ecma354);
    o.devices = 2;
    let env = start(o).await;
    env.wait_green().await;
    wait_until(T, || env.sim.monitored() == 2).await;
    let sim = env.sim.clone();
    env.gw.stop().await;
    wait_until(T, || sim.requests_received("StopApplicationSession") == 1).await;
    assert_eq!(sim.requests_received("MonitorStop"), 2);
    assert_eq!(sim.monitored(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_accept_mode_a_client_that_never_finishes_tls_holds_up_nobody() {
    let mut o = EnvOptions::for_dialect("accept-silent", Dialect::Osv);
    o.devices = 1;
    o.accept = true;
    let env = start(o).await;
    let mut c = env.green_client().await;
    // Clients that connect and never speak (a port scan, a stuck probe) are in their TLS
    // handshake for up to handshake_timeout_ms (15 s here) each.
    let addr = env.pbx_listen.clone().unwrap();
    let mut silent = vec![];
    for _ in 0..3 {
        silent.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    // The PBX loses its connection and dials again: it gets through alongside them, at once.
    let connects = env.sim.connections();
    assert!(env.sim.cut_mid_frame());
    wait_until(Duration::from_secs(10), || env.sim.connections() > connects).await;
    env.wait_green().await;
    env.sim.play(&env.devices[0], Scenario::InboundAnswered);
    recv_until(&mut c, T, |v| v["event"] == "established").await;
    drop(silent);
}
