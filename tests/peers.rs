//! Tests against peers nobody here wrote: Prometheus's `promtool` lints our `/metrics`.
//!
//! On a developer machine without the tool the test says so and passes; under CI (`CI` set) a
//! missing tool is a failure, because `.ci/run` installs it.

mod common;

use common::{EnvOptions, recv_until, start};
use ctigate::sim::csta_xml::Scenario;
use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

fn tool(name: &str) -> bool {
    let found = Command::new(name)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "{name} is required under CI (.ci/run installs it)"
        );
        eprintln!("SKIPPED: {name} is not installed (apt-get install prometheus)");
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_our_metrics() {
    if !tool("promtool") {
        return;
    }
    let env = start(EnvOptions::new("promtool")).await;
    env.wait_green().await;
    let (mut c, _) = env
        .hello(&env.token_all, &env.logins, &HashMap::new())
        .await;
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
