//! Tests against peers nobody here wrote: Prometheus's `promtool` lints our `/metrics`; a connector
//! written with Python's `websockets` over OpenSSL talks to the connector API; pyssimist's
//! `CstaServer` (PyPI) is the PBX.
//!
//! On a developer machine without the tool the test says so and passes; under CI (`CI` set) a
//! missing tool is a failure, because `.ci/run` installs it.

mod common;

use common::{EnvOptions, LinkTls, recv_until, start};
use ctigate::sim::csta_xml::Scenario;
use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

fn tool(name: &str) -> bool {
    runs(name, &["--version"])
}

fn runs(name: &str, args: &[&str]) -> bool {
    let found = Command::new(name)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} {args:?} is required under CI (.ci/run installs it)"
        );
        eprintln!("SKIPPED: {name} {args:?} does not run here (.ci/run installs what it needs)");
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_our_metrics() {
    if !tool("promtool") {
        return;
    }
    let env = start(EnvOptions::new("promtool")).await;
    let mut c = env.green_client().await;
    env.sim.play(&env.devices[0], Scenario::InboundAnswered);
    recv_until(&mut c, Duration::from_secs(20), |v| {
        v["event"] == "established"
    })
    .await;
    assert!(env.sim.inject_raw(b"garbage".to_vec()));
    let mut bad = env.client().await;
    let _ = bad.hello("wrong", &env.logins, &HashMap::new()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = env.http_get("/metrics").await;
    assert!(status.contains("200"));
    let mut p = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(body.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "promtool:\n{report}\n--- metrics ---\n{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_websockets_connector_over_openssl_is_served() {
    if !runs("python3", &["-c", "import websockets"]) {
        return;
    }
    let env = start(EnvOptions::new("python-peer")).await;
    env.wait_green().await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &env.certs.ca_pem).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/connector.py");
    let args = vec![
        script.to_string(),
        env.url.clone(),
        ca.to_str().unwrap().to_string(),
        env.token_first.clone(),
        env.logins[0].clone(),
        "+49 30 4711".to_string(),
    ];
    let out = tokio::task::spawn_blocking(move || Command::new("python3").args(args).output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["welcome"]["login_ids"][0], env.logins[0].as_str());
    assert_eq!(v["result"]["ok"], true, "{v}");
    assert_eq!(v["result"]["id"], "py-1");
    let events: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e.as_str())
        .collect();
    assert!(
        events.starts_with(&["initiated", "originated"]),
        "{events:?}"
    );
    assert_eq!(v["tls"], "TLSv1.3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testssl_finds_nothing_wrong_with_the_connector_listener() {
    if !runs("testssl", &["--version"]) {
        return;
    }
    let env = start(EnvOptions::new("testssl")).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &env.certs.ca_pem).unwrap();
    let json = dir.path().join("testssl.json");
    let target = format!("localhost:{}", env.gw.api_addr.port());
    let args = vec![
        "--quiet".to_string(),
        "--fast".into(),
        "--warnings".into(),
        "off".into(),
        "--color".into(),
        "0".into(),
        "--add-ca".into(),
        ca.to_str().unwrap().into(),
        "--jsonfile".into(),
        json.to_str().unwrap().into(),
        target,
    ];
    let out = tokio::task::spawn_blocking(move || Command::new("testssl").args(args).output())
        .await
        .unwrap()
        .unwrap();
    let text = std::fs::read_to_string(&json).unwrap_or_else(|_| {
        panic!(
            "testssl wrote no report: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let findings: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
    let get = |id: &str| {
        findings
            .iter()
            .find(|f| f["id"] == id)
            .map(|f| {
                (
                    f["severity"].as_str().unwrap_or("").to_string(),
                    f["finding"].as_str().unwrap_or("").to_string(),
                )
            })
            .unwrap_or_else(|| panic!("testssl has no finding {id}"))
    };
    for old in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"] {
        assert!(get(old).1.contains("not offered"), "{old}: {:?}", get(old));
    }
    assert!(
        get("TLS1_3").1.starts_with("offered"),
        "{:?}",
        get("TLS1_3")
    );
    // The development certificates carry no CRL or OCSP URI; real ones do.
    let allowed = ["cert_revocation"];
    let bad: Vec<String> = findings
        .iter()
        .filter(|f| matches!(f["severity"].as_str(), Some("HIGH" | "CRITICAL")))
        .filter(|f| !allowed.contains(&f["id"].as_str().unwrap_or("")))
        .map(|f| format!("{} {}: {}", f["severity"], f["id"], f["finding"]))
        .collect();
    assert!(bad.is_empty(), "testssl findings:\n{}", bad.join("\n"));
}

/// pyssimist's `CstaServer` (PyPI `pyssimist`, an OSV-style CSTA XML switch written by an OSV
/// tester) as the PBX: its framing, its `SystemStatus` opening and its answers to SystemRegister,
/// MonitorStart and SnapshotDevice bring the link up, and its own `DeliveredEvent` template
/// reaches the connector, normalized.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyssimists_csta_switch_brings_the_link_up_and_its_event_reaches_the_connector() {
    // Found without importing it: importing writes its trace file into the working directory.
    let found = "import importlib.util, sys; sys.exit(importlib.util.find_spec('csta') is None)";
    if !runs("python3", &["-c", found]) {
        return;
    }
    // A free port for it, chosen here: nothing is read back from its output.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/peers/pyssimist_switch.py"
    );
    // It writes its trace file (CallTrace.txt) where it runs; its output goes to a file beside.
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("switch.log");
    let out = std::fs::File::create(&log).unwrap();
    let switch = Command::new("python3")
        .args([script, "5001", &port.to_string()])
        .current_dir(dir.path())
        .stdin(Stdio::piped())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap();
    /// Kills the switch however the test ends.
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _switch = Kill(switch);
    let said = || std::fs::read_to_string(&log).unwrap_or_default();
    let mut o = EnvOptions::new("pyssimist");
    o.devices = 1;
    o.link_tls = LinkTls::Plain;
    o.pbx_addr = Some(format!("127.0.0.1:{port}"));
    let env = start(o).await;
    let (mut c, _) = env
        .hello(&env.token_all, &env.logins, &HashMap::new())
        .await;
    let e = tokio::time::timeout(
        Duration::from_secs(30),
        recv_until(&mut c, Duration::from_secs(60), |v| v["type"] == "event"),
    )
    .await
    .unwrap_or_else(|_| panic!("no event from the switch; it said:\n{}", said()));
    assert_eq!(
        (e["event"].as_str(), e["login_id"].as_str()),
        (Some("delivered"), Some(env.logins[0].as_str())),
        "{e}"
    );
    assert_eq!(e["cause"], "newCall", "{e}");
    assert_eq!(e["state"], "alerting", "{e}");
    assert_eq!(e["at"]["number"], "5001", "{e}");
    assert_eq!(e["connection_device"], "5001", "{e}");
    // Its template carries no callID: the event still reaches the Login ID, without one.
    assert!(e.get("call_id").is_none(), "{e}");
}
