//! `ctigate demo`: the gateway, a CSTA XML PBX simulator over TLS and a console connector in one
//! process, with certificates generated in memory.

use crate::api::auth::{generate_token, token_hash};
use crate::codec::xml::encode::ns;
use crate::config::{Config, Dialect};
use crate::connector::{Client, ClientError, render};
use crate::gateway::{Gateway, GatewayError, StartOptions};
use crate::link::Transport;
use crate::model::LoginId;
use crate::sim::csta_xml::{DeviceStyle, SimConfig, Simulator, Timing};
use crate::tls::{DevCerts, TlsError, server_name};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use thiserror::Error;
use tokio_util::sync::CancellationToken;

/// Demo settings.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Print JSON lines instead of readable lines.
    pub json: bool,
    /// Stop after this long (Ctrl-C otherwise).
    pub duration: Option<Duration>,
    /// Number of Login IDs (and simulated devices).
    pub logins: usize,
    /// Simulated calls per second.
    pub rate: f64,
    /// Connector API listen address.
    pub api_listen: String,
    /// Ops listen address.
    pub ops_listen: String,
}

/// The demo failed to start.
#[derive(Debug, Error)]
pub enum DemoError {
    /// Certificates.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Simulator.
    #[error("simulator: {0}")]
    Sim(std::io::Error),
    /// Gateway.
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    /// Connector.
    #[error("console connector: {0}")]
    Client(#[from] ClientError),
    /// Generated config did not parse (a bug).
    #[error("demo config: {0}")]
    Config(String),
}

/// Runs the demo until Ctrl-C or the duration.
pub async fn run(opts: DemoOptions) -> Result<(), DemoError> {
    let certs = DevCerts::generate(&[], "demo-console")?;
    let devices = SimConfig::numbered_devices(4001, opts.logins as u32);
    let sim = Simulator::start(SimConfig {
        listen: "127.0.0.1:0".into(),
        devices: devices.clone(),
        rate: opts.rate,
        dialect: Dialect::Osv,
        namespace: ns::ED4.into(),
        namespace_prefix: None,
        segmented_snapshots: false,
        tls: Some(certs.server_config(false)?),
        timing: Timing {
            step: Duration::from_millis(150),
            ring: Duration::from_millis(1200),
            talk: Duration::from_millis(2500),
        },
        seed: rand::random(),
        dial: None,
        app_session: None,
        device_style: DeviceStyle::Osv,
    })
    .await
    .map_err(DemoError::Sim)?;

    let logins: Vec<LoginId> = (0..opts.logins).map(|_| LoginId::generate()).collect();
    let token = generate_token();
    let mut toml = format!(
        r#"
[api]
listen = "{api}"
cert = "in-memory"
key = "in-memory"
queue_messages = 4096
[ops]
listen = "{ops}"
[[pbx]]
name = "sim-osv"
protocol = "csta-xml"
mode = "dial"
address = "{sim}"
dialect = "osv"
namespace = "ed4"
tls = true
tls_ca = "in-memory"
reconnect_min_ms = 200
reconnect_max_ms = 2000
[pbx.numbering]
country_code = "49"
[[connector]]
name = "demo-console"
token_sha256 = "{hash}"
login_ids = ["*"]
"#,
        api = opts.api_listen,
        ops = opts.ops_listen,
        sim = sim.addr,
        hash = token_hash(&token),
    );
    for (id, dev) in logins.iter().zip(&devices) {
        toml.push_str(&format!(
            "[[login]]\nlogin_id = \"{id}\"\npbx = \"sim-osv\"\ndevice = \"{dev}\"\n"
        ));
    }
    let cfg = Config::parse(&toml).map_err(DemoError::Config)?;
    let mut transports = HashMap::new();
    transports.insert(
        "sim-osv".to_string(),
        Transport::dial(
            sim.addr.to_string(),
            Some((certs.client_config(false)?, server_name("localhost")?)),
        ),
    );
    let gw = Gateway::start(
        &cfg,
        StartOptions {
            api_tls: Some(certs.server_config(false)?),
            transports,
        },
    )
    .await?;
    let url = format!("wss://localhost:{}/v1/stream", gw.api_addr.port());
    if !opts.json {
        println!("ctigate demo");
        println!("  PBX simulator (CSTA XML, OSV dialect, TLS): {}", sim.addr);
        println!("  connector API: {url}   token: {token}");
        println!(
            "  metrics: http://{}/metrics   status: http://{}/",
            gw.ops_addr, gw.ops_addr
        );
        println!(
            "  {} Login IDs on devices {}..{}; Ctrl-C stops.\n",
            logins.len(),
            devices[0],
            devices[devices.len() - 1]
        );
    }

    let stop = CancellationToken::new();
    {
        let stop = stop.clone();
        let duration = opts.duration;
        tokio::spawn(async move {
            match duration {
                Some(d) => {
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        _ = tokio::signal::ctrl_c() => {}
                    }
                }
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
            stop.cancel();
        });
    }

    let mut client = Client::connect(&url, certs.client_config(false)?).await?;
    let names: Vec<String> = logins.iter().map(|l| l.to_string()).collect();
    let welcome = client.hello(&token, &names, &HashMap::new()).await?;
    print(&welcome, opts.json);
    let mut seen: HashSet<String> = HashSet::new();
    let mut events = 0u64;
    let mut call_sent = false;
    loop {
        let msg = tokio::select! {
            _ = stop.cancelled() => break,
            m = client.recv() => m,
        };
        let v = match msg {
            Ok(v) => v,
            Err(e) => {
                eprintln!("console connector: {e}");
                break;
            }
        };
        if v["type"] == "event" {
            events += 1;
            if let Some(l) = v["login_id"].as_str() {
                seen.insert(l.to_string());
            }
        }
        print(&v, opts.json);
        // Click-to-dial once the first Login ID is live: the make_call round trip.
        if !call_sent
            && v["type"] == "status"
            && v["status"] == "green"
            && v["login_id"] == names[0].as_str()
        {
            call_sent = true;
            client
                .send(&json!({"type":"make_call","id":"demo-1","login_id":names[0],"to":"+4930555123"}))
                .await?;
        }
    }
    client.close().await;
    gw.stop().await;
    sim.stop();
    if !opts.json {
        println!(
            "\n{events} events for {} Login IDs; stopped cleanly.",
            seen.len()
        );
    }
    Ok(())
}

fn print(v: &serde_json::Value, json: bool) {
    if json {
        println!("{v}");
    } else {
        println!("{}", render(v));
    }
}
