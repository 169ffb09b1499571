//! Shared harness for the integration tests: a simulator over TLS, a gateway over TLS, and clients.
#![allow(dead_code)]

pub mod process;

use ctigate::api::auth::{generate_token, token_hash};
use ctigate::codec::xml::encode::ns;
use ctigate::config::{Config, Dialect};
use ctigate::connector::Client;
use ctigate::gateway::{Gateway, StartOptions};
use ctigate::link::Transport;
use ctigate::model::LoginId;
use ctigate::sim::csta_xml::{DeviceStyle, SimAppSession, SimConfig, SimDial, Simulator, Timing};
use ctigate::tls::{DevCerts, server_name};
use serde_json::Value;
use std::collections::HashMap;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Knobs of a test environment.
pub struct EnvOptions {
    pub name: String,
    pub devices: u32,
    pub rate: f64,
    pub timing: Timing,
    pub queue_messages: usize,
    pub replay_ring: usize,
    pub max_frame_bytes: usize,
    pub dialect: Dialect,
    pub write_timeout_ms: u64,
    pub request_timeout_ms: u64,
    /// The PBX dials the gateway (`mode = "accept"`).
    pub accept: bool,
    /// Accept mode: the gateway's `accept_from` (the simulator dials from 127.0.0.1).
    pub accept_from: Vec<&'static str>,
    /// Connectors must present a client certificate.
    pub api_mtls: bool,
    /// TLS on the PBX link.
    pub link_tls: LinkTls,
    /// ECMA-354: the password the simulator expects (the gateway always sends `secret`).
    pub session_password: &'static str,
    /// How the simulator writes its devices in events.
    pub device_style: DeviceStyle,
    /// The namespace the simulator writes in; the gateway's `namespace` setting follows it.
    pub namespace: &'static str,
    /// The simulator writes every element with this prefix.
    pub namespace_prefix: Option<&'static str>,
    /// The simulator answers snapshots in `SnapshotDeviceData` segments.
    pub segmented_snapshots: bool,
    /// Dial this switch instead of the simulator (a peer nobody here wrote; plain TCP).
    pub pbx_addr: Option<String>,
}

/// How the PBX link is secured in a test.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum LinkTls {
    /// TLS with the right CA.
    Ok,
    /// TLS, but the gateway trusts another CA.
    WrongCa,
    /// `tls = false`.
    Plain,
}

impl EnvOptions {
    pub fn new(name: &str) -> EnvOptions {
        EnvOptions {
            name: name.to_string(),
            devices: 3,
            rate: 0.0,
            timing: Timing::fast(),
            queue_messages: 4096,
            replay_ring: 4096,
            max_frame_bytes: 65_535,
            dialect: Dialect::Osv,
            write_timeout_ms: 60_000,
            request_timeout_ms: 10_000,
            accept: false,
            accept_from: vec!["127.0.0.1"],
            api_mtls: false,
            link_tls: LinkTls::Ok,
            session_password: "secret",
            device_style: DeviceStyle::Plain,
            namespace: ns::ED4,
            namespace_prefix: None,
            segmented_snapshots: false,
            pbx_addr: None,
        }
    }

    /// Options for a test run against `dialect`; the link name carries the dialect, so metrics
    /// of parallel tests do not mix.
    pub fn for_dialect(name: &str, dialect: Dialect) -> EnvOptions {
        let mut o = EnvOptions::new(&format!("{name}-{}", dialect.as_str()));
        o.dialect = dialect;
        o
    }
}

pub struct Env {
    pub certs: DevCerts,
    pub sim: Simulator,
    pub gw: Gateway,
    pub devices: Vec<String>,
    pub logins: Vec<String>,
    pub token_all: String,
    pub token_first: String,
    pub url: String,
    pub pbx: String,
    pub mtls: bool,
    /// In accept mode: where the gateway listens for the PBX.
    pub pbx_listen: Option<String>,
}

pub async fn start(o: EnvOptions) -> Env {
    // CTIGATE_TEST_LOG=debug shows the gateway's and the simulator's logs while debugging a test.
    if let Ok(filter) = std::env::var("CTIGATE_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
    let certs = DevCerts::generate(&[], "test-connector").unwrap();
    let devices = SimConfig::numbered_devices(5001, o.devices);
    // In accept mode the gateway listens on a port picked here and the simulator dials it.
    let accept_addr = if o.accept {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        Some(l.local_addr().unwrap().to_string())
    } else {
        None
    };
    let dial = accept_addr.clone().map(|addr| SimDial {
        addr,
        tls: (o.link_tls != LinkTls::Plain).then(|| {
            (
                certs.client_config(false).unwrap(),
                server_name("localhost").unwrap(),
            )
        }),
    });
    let sim = Simulator::start(SimConfig {
        listen: "127.0.0.1:0".into(),
        devices: devices.clone(),
        rate: o.rate,
        dialect: o.dialect,
        namespace: o.namespace.to_string(),
        namespace_prefix: o.namespace_prefix.map(str::to_string),
        segmented_snapshots: o.segmented_snapshots,
        tls: (o.link_tls != LinkTls::Plain).then(|| certs.server_config(false).unwrap()),
        timing: o.timing,
        seed: 7,
        dial,
        app_session: (o.dialect == Dialect::Ecma354).then(|| SimAppSession {
            user: "ctigate-app".into(),
            password: o.session_password.to_string(),
            max_duration_secs: 2,
        }),
        device_style: o.device_style,
    })
    .await
    .unwrap();
    let logins: Vec<String> = devices
        .iter()
        .map(|_| LoginId::generate().to_string())
        .collect();
    let token_all = generate_token();
    let token_first = generate_token();
    let dialect = o.dialect.as_str();
    let session = if o.dialect == Dialect::Ecma354 {
        "session_user = \"ctigate-app\"\nsession_password = \"secret\"\nsession_duration_secs = 60\n"
    } else {
        ""
    };
    let mut toml = format!(
        r#"
[api]
listen = "127.0.0.1:0"
cert = "in-memory"
key = "in-memory"
queue_messages = {queue}
socket_send_buffer_bytes = 65536
write_timeout_ms = {wt}
auth_failures_per_minute = 3
[ops]
listen = "127.0.0.1:0"
[hub]
replay_ring = {ring}
[[pbx]]
name = "{name}"
protocol = "csta-xml"
mode = "{mode}"
address = "{sim}"
dialect = "{dialect}"
namespace = "{namespace}"
{session}{accept_from}tls = {link_tls}
{tls_files}
max_frame_bytes = {max_frame}
monitor_rate = 50
request_timeout_ms = {rt}
reconnect_min_ms = 50
reconnect_max_ms = 200
[[connector]]
name = "all"
token_sha256 = "{h_all}"
login_ids = ["*"]
[[connector]]
name = "first"
token_sha256 = "{h_first}"
login_ids = ["{first}"]
max_connections = 2
"#,
        queue = o.queue_messages,
        wt = o.write_timeout_ms,
        rt = o.request_timeout_ms,
        ring = o.replay_ring,
        name = o.name,
        sim = accept_addr
            .clone()
            .or(o.pbx_addr.clone())
            .unwrap_or_else(|| sim.addr.to_string()),
        link_tls = o.link_tls != LinkTls::Plain,
        tls_files = if o.link_tls == LinkTls::Plain {
            ""
        } else if o.accept {
            "tls_cert = \"in-memory\"\ntls_key = \"in-memory\""
        } else {
            "tls_ca = \"in-memory\""
        },
        mode = if o.accept { "accept" } else { "dial" },
        accept_from = if o.accept {
            format!("accept_from = {:?}\n", o.accept_from)
        } else {
            String::new()
        },
        max_frame = o.max_frame_bytes,
        namespace = if o.namespace.is_empty() {
            "none"
        } else {
            o.namespace
        },
        h_all = token_hash(&token_all),
        h_first = token_hash(&token_first),
        first = logins[0],
    );
    for (l, d) in logins.iter().zip(&devices) {
        toml.push_str(&format!(
            "[[login]]\nlogin_id = \"{l}\"\npbx = \"{}\"\ndevice = \"{d}\"\nuser_name = \"user{d}@example.com\"\n",
            o.name
        ));
    }
    let cfg = Config::parse(&toml).unwrap();
    let problems: Vec<_> = cfg
        .validate()
        .into_iter()
        .filter(|p| !p.message.contains("does not exist"))
        .collect();
    assert!(problems.is_empty(), "{problems:?}");
    let mut transports = HashMap::new();
    let transport = match &accept_addr {
        Some(addr) => Transport::accept(
            addr.clone(),
            (o.link_tls != LinkTls::Plain).then(|| certs.server_config(false).unwrap()),
        ),
        None => Transport::dial(
            o.pbx_addr.clone().unwrap_or_else(|| sim.addr.to_string()),
            match o.link_tls {
                LinkTls::Plain => None,
                LinkTls::Ok => Some((
                    certs.client_config(false).unwrap(),
                    server_name("localhost").unwrap(),
                )),
                LinkTls::WrongCa => Some((
                    DevCerts::generate(&[], "other")
                        .unwrap()
                        .client_config(false)
                        .unwrap(),
                    server_name("localhost").unwrap(),
                )),
            },
        ),
    };
    transports.insert(o.name.to_string(), transport);
    let gw = Gateway::start(
        &cfg,
        StartOptions {
            api_tls: Some(certs.server_config(o.api_mtls).unwrap()),
            transports,
        },
    )
    .await
    .unwrap();
    let url = format!("wss://localhost:{}/v1/stream", gw.api_addr.port());
    Env {
        certs,
        sim,
        gw,
        devices,
        logins,
        token_all,
        token_first,
        url,
        pbx: o.name.clone(),
        mtls: o.api_mtls,
        pbx_listen: accept_addr,
    }
}

impl Env {
    pub async fn client(&self) -> Client {
        Client::connect(&self.url, self.certs.client_config(self.mtls).unwrap())
            .await
            .unwrap()
    }

    /// Connects and says hello; returns the client and the welcome.
    pub async fn hello(
        &self,
        token: &str,
        logins: &[String],
        resume: &HashMap<String, u64>,
    ) -> (Client, Value) {
        let mut c = self.client().await;
        let w = c.hello(token, logins, resume).await.unwrap();
        (c, w)
    }

    /// Waits until every Login ID is green, then connects with the all-Login-IDs token and
    /// says hello for all of them.
    pub async fn green_client(&self) -> Client {
        self.wait_green().await;
        self.hello(&self.token_all, &self.logins, &HashMap::new())
            .await
            .0
    }

    /// Waits until every Login ID's device is monitored.
    pub async fn wait_green(&self) {
        wait_until(Duration::from_secs(10), || {
            self.logins.iter().all(|l| {
                let id = LoginId::parse(l).unwrap();
                self.gw.hub.status(&id).map(|s| s.0) == Some(ctigate::model::StatusLevel::Green)
            })
        })
        .await;
    }

    /// GET on the ops listener; returns (status line, body).
    pub async fn http_get(&self, path: &str) -> (String, String) {
        let mut s = tokio::net::TcpStream::connect(self.gw.ops_addr)
            .await
            .unwrap();
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
        (
            head.lines().next().unwrap_or("").to_string(),
            body.to_string(),
        )
    }

    pub async fn metrics(&self) -> String {
        self.http_get("/metrics").await.1
    }

    /// `/metrics` once `until` holds for it, or after 10 s (the caller asserts on what it got).
    pub async fn metrics_when(&self, until: impl Fn(&str) -> bool) -> String {
        let mut m = String::new();
        for _ in 0..200 {
            m = self.metrics().await;
            if until(&m) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        m
    }
}

/// Sum of the samples of `name` whose labels contain every `labels` pair.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            let n = l.split(['{', ' ']).next().unwrap_or("");
            n == name
        })
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

pub async fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Receives until `pred` matches (returning that message) or the timeout passes.
pub async fn recv_until(
    c: &mut Client,
    timeout: Duration,
    mut pred: impl FnMut(&Value) -> bool,
) -> Value {
    tokio::time::timeout(timeout, async {
        loop {
            let v = c.recv().await.expect("connection open");
            if std::env::var("TRACE_MSGS").is_ok() {
                eprintln!("MSG {v}");
            }
            if pred(&v) {
                return v;
            }
        }
    })
    .await
    .expect("expected message within timeout")
}
