//! The `ctigate` binary: config checking, certificates, tokens, the demo, and a gateway run from a
//! config file with real certificate files, a separate simulator process and the console connector.

mod common;

use common::process::{self, Guard, wait_line};
use rustls_pki_types::pem::PemObject;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ctigate"))
}

fn run(args: &[&str]) -> (bool, String, String) {
    let o = bin().args(args).output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Spawns the binary with `args`, logging at info, streaming its output lines.
fn spawn(args: &[&str]) -> (Guard, mpsc::Receiver<String>) {
    let mut cmd = bin();
    cmd.args(args).env("RUST_LOG", "info");
    process::spawn(cmd)
}

fn example_with_certs(dir: &Path) -> String {
    let (ok, _, err) = run(&["gen-certs", dir.join("certs").to_str().unwrap()]);
    assert!(ok, "{err}");
    std::fs::copy(dir.join("certs/ca.pem"), dir.join("certs/pbx-ca.pem")).unwrap();
    std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/ctigate.example.toml"
    ))
    .unwrap()
}

#[test]
fn the_example_config_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let text = example_with_certs(dir.path());
    let path = dir.path().join("ctigate.toml");
    std::fs::write(&path, text).unwrap();
    let (ok, out, err) = run(&["check-config", path.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("OK (1 PBX link(s), 2 Login ID(s), 1 connector credential(s))"),
        "{out}"
    );
}

/// `packaging/ctigate.service`: `systemd-analyze verify` accepts it (with the binary built here
/// in place of `/usr/local/bin/ctigate`), and its `ExecStart` command line, on a test
/// configuration, starts the gateway.
#[test]
fn the_systemd_unit_verifies_and_its_command_line_starts_the_gateway() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/packaging/ctigate.service"
    ))
    .unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let args: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(args[0], "/usr/local/bin/ctigate", "{exec}");
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = run(&["gen-certs", dir.path().join("certs").to_str().unwrap()]);
    assert!(ok, "{err}");
    let cfg = dir.path().join("ctigate.toml");
    std::fs::write(
        &cfg,
        "[api]\nlisten = \"127.0.0.1:0\"\ncert = \"certs/server.pem\"\nkey = \"certs/server.key.pem\"\n[ops]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let args: Vec<&str> = args[1..]
        .iter()
        .map(|a| {
            if *a == "/etc/ctigate/ctigate.toml" {
                cfg
            } else {
                a
            }
        })
        .collect();
    let (_gw, rx) = spawn(&args);
    // JSON logs, as journald gets them.
    let line = wait_line(&rx, Duration::from_secs(20), |l| {
        l.contains("gateway started")
    });
    assert!(line.starts_with('{'), "{line}");

    // `.ci/run` installs systemd when it can; some container images cannot configure it.
    match Command::new("systemd-analyze").arg("--version").output() {
        Err(_) => {
            eprintln!("systemd-analyze not installed; the unit file was not verified");
        }
        Ok(_) => {
            let path = dir.path().join("ctigate.service");
            std::fs::write(
                &path,
                unit.replace("/usr/local/bin/ctigate", env!("CARGO_BIN_EXE_ctigate")),
            )
            .unwrap();
            let o = Command::new("systemd-analyze")
                .arg("verify")
                .arg(&path)
                .output()
                .unwrap();
            // systemd says "Unknown key …, ignoring" (and still exits 0) for a directive it does
            // not know; other notes from a newer systemd do not fail the test.
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                o.status.success() && !err.contains("Unknown") && !err.contains("ignoring"),
                "{err}"
            );
        }
    }
}

/// `probe` against a port nobody listens on: the connect error, and a non-zero exit.
#[test]
fn probe_says_why_a_link_does_not_come_up() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (ok, _, err) = run(&["gen-certs", dir.path().join("certs").to_str().unwrap()]);
    assert!(ok, "{err}");
    let cfg = dir.path().join("ctigate.toml");
    std::fs::write(
        &cfg,
        format!(
            "[api]\nlisten = \"127.0.0.1:0\"\ncert = \"certs/server.pem\"\nkey = \"certs/server.key.pem\"\n[[pbx]]\nname = \"gone\"\nprotocol = \"csta-xml\"\nmode = \"dial\"\naddress = \"127.0.0.1:{port}\"\ntls = false\ndevices = [\"100\"]\n"
        ),
    )
    .unwrap();
    let started = Instant::now();
    let (ok, out, err) = run(&["probe", "--config", cfg.to_str().unwrap(), "--timeout", "1"]);
    assert!(!ok, "{out}{err}");
    assert!(
        out.contains("problem: connect 127.0.0.1:") && out.contains("refused"),
        "{out}{err}"
    );
    assert!(out.contains("FAILED: no CSTA session"), "{out}");
    // It gives up at the timeout rather than retrying forever.
    assert!(started.elapsed() < Duration::from_secs(15));
    // Two links and none named: the probe asks which.
    let two = std::fs::read_to_string(&cfg).unwrap();
    let second = two[two.find("[[pbx]]").unwrap()..].replace("\"gone\"", "\"other\"");
    std::fs::write(&cfg, format!("{two}{second}")).unwrap();
    let (ok, _, err) = run(&["probe", "--config", cfg.to_str().unwrap()]);
    assert!(!ok && err.contains("--pbx"), "{err}");
}

/// check-config refuses an expired certificate and warns about one expiring within 30 days.
#[test]
fn check_config_refuses_an_expired_certificate_and_warns_of_one_expiring() {
    let dir = tempfile::tempdir().unwrap();
    let cert = |name: &str, days: i64| {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(30);
        params.not_after = now + time::Duration::days(days);
        let c = params.self_signed(&key).unwrap();
        std::fs::write(dir.path().join(format!("{name}.pem")), c.pem()).unwrap();
        std::fs::write(
            dir.path().join(format!("{name}.key.pem")),
            key.serialize_pem(),
        )
        .unwrap();
    };
    cert("old", -1);
    cert("soon", 10);
    let check = |name: &str| {
        let cfg = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[api]\nlisten = \"127.0.0.1:0\"\ncert = \"{name}.pem\"\nkey = \"{name}.key.pem\"\n"
            ),
        )
        .unwrap();
        run(&["check-config", cfg.to_str().unwrap()])
    };
    let (ok, out, err) = check("old");
    assert!(
        !ok && err.contains("api.cert") && err.contains("expired on"),
        "{out}{err}"
    );
    let (ok, out, err) = check("soon");
    assert!(ok, "{out}{err}");
    assert!(
        out.contains("warning: api.cert")
            && (out.contains("(in 9 days)") || out.contains("(in 10 days)")),
        "{out}"
    );
}

#[test]
fn check_config_names_every_bad_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = example_with_certs(dir.path())
        .replace("K7Q2M9X4T1B8R6W3Z5NP\"\npbx", "alice@example.com\"\npbx")
        .replace("device = \"4712\"", "device = \"4711\"")
        .replace("monitor_rate = 20", "monitor_rate = 0")
        .replace("certs/pbx-ca.pem", "certs/missing.pem");
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let (ok, _, err) = run(&["check-config", path.to_str().unwrap()]);
    assert!(!ok);
    for key in [
        "login[0].login_id",
        "login[1].device",
        "pbx[0].monitor_rate",
        "pbx[0].tls_ca",
        "connector[0].login_ids[0]",
    ] {
        assert!(err.contains(key), "{key} missing in:\n{err}");
    }
    // Unknown keys are named by the parser.
    let text = example_with_certs(dir.path()).replace("[hub]", "[hub]\nreplay_rnig = 5");
    std::fs::write(&path, text).unwrap();
    let (ok, _, err) = run(&["check-config", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("replay_rnig"), "{err}");
}

#[test]
fn tokens_and_login_ids() {
    let (ok, out, _) = run(&["token", "new"]);
    assert!(ok);
    assert!(out.contains("token_sha256"));
    let (ok, out, _) = run(&["login-id", "new", "--count", "3"]);
    assert!(ok);
    let ids: Vec<&str> = out.lines().collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|i| {
        i.len() == 20
            && i.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
    }));
}

#[test]
fn the_demo_shows_three_login_ids_and_a_make_call_round_trip_within_ten_seconds() {
    let start = Instant::now();
    let (ok, out, err) = run(&["demo", "--duration", "9"]);
    assert!(ok, "{err}");
    let mut logins = std::collections::HashSet::new();
    for l in out.lines() {
        if l.contains(" #") && !l.contains("snapshot") {
            logins.insert(l.split_whitespace().next().unwrap().to_string());
        }
    }
    assert!(
        logins.len() >= 3,
        "events for {} Login IDs:\n{out}",
        logins.len()
    );
    assert!(out.contains("make_call ok, call"), "{out}");
    assert!(out.contains("stopped cleanly"), "{out}");
    assert!(start.elapsed() < Duration::from_secs(30));
    let (ok, out, _) = run(&["demo", "--duration", "4", "--json"]);
    assert!(ok);
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["type"], "welcome");
}

#[test]
fn a_gateway_from_a_config_file_with_a_simulator_process_and_the_console_connector() {
    let dir = tempfile::tempdir().unwrap();
    let certs = dir.path().join("certs");
    let (ok, _, err) = run(&["gen-certs", certs.to_str().unwrap()]);
    assert!(ok, "{err}");
    let c = |f: &str| certs.join(f).to_str().unwrap().to_string();
    let (_sim, sim_rx) = spawn(&[
        "sim",
        "csta-xml",
        "--listen",
        "127.0.0.1:0",
        "--devices",
        "3",
        "--rate",
        "5",
        "--ring-ms",
        "200",
        "--talk-ms",
        "300",
        "--tls-cert",
        &c("server.pem"),
        "--tls-key",
        &c("server.key.pem"),
    ]);
    let line = wait_line(&sim_rx, Duration::from_secs(20), |l| {
        l.starts_with("CSTA XML simulator on ")
    });
    let sim_addr = line.split_whitespace().nth(4).unwrap().to_string();
    let (tok_ok, tok_out, _) = run(&["token", "new"]);
    assert!(tok_ok);
    let token = tok_out
        .lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    let hash = tok_out
        .lines()
        .nth(1)
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    let config = format!(
        r#"
[api]
listen = "127.0.0.1:0"
cert = "certs/server.pem"
key = "certs/server.key.pem"
[ops]
listen = "127.0.0.1:0"
[[pbx]]
name = "sim"
protocol = "csta-xml"
mode = "dial"
address = "localhost:{port}"
tls_ca = "certs/ca.pem"
reconnect_min_ms = 100
[[login]]
login_id = "ALICE0000000000000001"
pbx = "sim"
device = "4001"
[[login]]
login_id = "BOB00000000000000002"
pbx = "sim"
device = "4002"
[[connector]]
name = "console"
token_sha256 = "{hash}"
login_ids = ["*"]
"#,
        port = sim_addr.rsplit(':').next().unwrap()
    );
    let cfg = dir.path().join("ctigate.toml");
    std::fs::write(&cfg, config).unwrap();
    let (ok, out, err) = run(&["check-config", cfg.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    // `probe` opens the link as the gateway will, and says how far it got.
    let (ok, out, err) = run(&["probe", "--config", cfg.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    for want in [
        "probe \"sim\": csta-xml, dialing localhost:",
        "connected; the PBX's certificate expires 20",
        "CSTA session open",
        "monitoring 2/2 devices",
        "login ALICE0000000000000001 (device 4001): monitored",
        "\nOK\n",
    ] {
        assert!(out.contains(want), "{want:?} not in\n{out}");
    }
    // A device the PBX does not know: named with the PBX's reason, and a non-zero exit.
    let unknown = dir.path().join("unknown-device.toml");
    std::fs::write(
        &unknown,
        std::fs::read_to_string(&cfg).unwrap().replace(
            "reconnect_min_ms = 100",
            "reconnect_min_ms = 100\ndevices = [\"9999\"]",
        ),
    )
    .unwrap();
    let (ok, out, _) = run(&[
        "probe",
        "--config",
        unknown.to_str().unwrap(),
        "--timeout",
        "5",
    ]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("device 9999: monitor_failed: operation/invalidDeviceID")
            && out.contains("FAILED: not every device is monitored"),
        "{out}"
    );
    let (mut gw, gw_rx) = spawn(&["run", "--config", cfg.to_str().unwrap()]);
    let started = wait_line(&gw_rx, Duration::from_secs(20), |l| {
        l.contains("gateway started")
    });
    let api = started
        .split("api=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let port = api.rsplit(':').next().unwrap();
    wait_line(&gw_rx, Duration::from_secs(20), |l| {
        l.contains("CSTA XML session established")
    });
    let url = format!("wss://localhost:{port}/v1/stream");
    let (_con, con_rx) = spawn(&[
        "connect",
        &url,
        "--token",
        &token,
        "--login",
        "ALICE0000000000000001",
        "--login",
        "bob00000000000000002",
        "--ca",
        &c("ca.pem"),
        "--call",
        "ALICE0000000000000001=+4930123456",
    ]);
    wait_line(&con_rx, Duration::from_secs(20), |l| {
        l.contains("connected as \"console\": 2 Login ID(s), 0 refused")
    });
    wait_line(&con_rx, Duration::from_secs(20), |l| {
        l.contains("make_call ok, call")
    });
    wait_line(&con_rx, Duration::from_secs(20), |l| {
        l.starts_with("BOB00000000000000002") && l.contains(" #")
    });
    // A console connector with a wrong token, trusting `ca`: it exits, saying why.
    let connect = |ca: &str| {
        run(&[
            "connect",
            &url,
            "--token",
            "wrong",
            "--login",
            "ALICE0000000000000001",
            "--ca",
            ca,
        ])
    };
    // A wrong token is refused with a clear message and a non-zero exit.
    let (ok, _, err) = connect(&c("ca.pem"));
    assert!(!ok);
    assert!(err.contains("unauthorized"), "{err}");

    // SIGHUP re-reads the certificate files: renewed on disk, the new one serves new
    // connections while the console connector's session carries on.
    #[cfg(unix)]
    {
        let ops = started
            .split("ops=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_string();
        let renewed = dir.path().join("renewed");
        let (ok, _, err) = run(&["gen-certs", renewed.to_str().unwrap()]);
        assert!(ok, "{err}");
        for f in ["server.pem", "server.key.pem"] {
            std::fs::copy(renewed.join(f), certs.join(f)).unwrap();
        }
        let hup = |pid: u32| {
            assert!(
                Command::new("kill")
                    .args(["-HUP", &pid.to_string()])
                    .status()
                    .unwrap()
                    .success()
            );
        };
        hup(gw.0.id());
        let sha = |pem: &Path| {
            let der = rustls_pki_types::CertificateDer::from_pem_file(pem).unwrap();
            hex::encode_upper(<sha2::Sha256 as sha2::Digest>::digest(der.as_ref()))[..16]
                .to_string()
        };
        let renewed_sha = sha(&renewed.join("server.pem"));
        // The log line names the certificate now in use.
        wait_line(&gw_rx, Duration::from_secs(20), |l| {
            l.contains("TLS files reloaded") && l.contains("[api]") && l.contains(&renewed_sha)
        });
        wait_line(&gw_rx, Duration::from_secs(20), |l| {
            l.contains("SIGHUP") && l.contains("reloaded=2") && l.contains("failed=0")
        });
        let renewed_ca = renewed.join("ca.pem");
        // Trusting only the old CA, a new connection fails the handshake; trusting the new one,
        // it gets as far as the token check.
        let (ok, _, err) = connect(&c("ca.pem"));
        assert!(!ok && err.contains("invalid peer certificate"), "{err}");
        let (ok, _, err) = connect(renewed_ca.to_str().unwrap());
        assert!(!ok && err.contains("unauthorized"), "{err}");
        // The connector that connected before the reload still gets events.
        wait_line(&con_rx, Duration::from_secs(20), |l| {
            l.starts_with("BOB00000000000000002") && l.contains(" #")
        });
        // A key file that does not parse: the reload says so, the renewed certificate stays.
        std::fs::write(certs.join("server.key.pem"), "garbage").unwrap();
        hup(gw.0.id());
        wait_line(&gw_rx, Duration::from_secs(20), |l| {
            l.contains("TLS reload failed") && l.contains("server.key.pem")
        });
        let (ok, _, err) = connect(renewed_ca.to_str().unwrap());
        assert!(!ok && err.contains("unauthorized"), "{err}");
        let status = http_get(&ops, "/status");
        let body = &status[status.find("\r\n\r\n").unwrap() + 4..];
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        let left =
            v["api_certificate_expires"].as_i64().unwrap() - ctigate::model::now_ms() as i64 / 1000;
        assert!((396 * 86_400..=398 * 86_400).contains(&left), "{v}");
        let metrics = http_get(&ops, "/metrics");
        for want in [
            "ctigate_api_tls_reloads_total{result=\"ok\"} 1",
            "ctigate_api_tls_reloads_total{result=\"error\"} 1",
            "ctigate_link_tls_reloads_total{link=\"sim\",protocol=\"csta-xml\",result=\"ok\"} 2",
            "ctigate_link_tls_reloads_total{link=\"sim\",protocol=\"csta-xml\",result=\"error\"} 0",
            "ctigate_api_tls_certificate_expiry_timestamp_seconds ",
            "ctigate_link_peer_certificate_expiry_timestamp_seconds{link=\"sim\",protocol=\"csta-xml\"} ",
        ] {
            assert!(metrics.contains(want), "{want} not in {metrics}");
        }
    }

    // SIGTERM (systemctl stop, docker stop) stops the gateway in order, like Ctrl-C.
    #[cfg(unix)]
    {
        let pid = gw.0.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-TERM", &pid])
                .status()
                .unwrap()
                .success()
        );
        wait_line(&gw_rx, Duration::from_secs(20), |l| {
            l.contains("stopping") && l.contains("SIGTERM")
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = gw.0.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "still running");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "{status}");
    }
}

/// A plain HTTP GET on the ops listener; the body.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}
