//! The `ctigate` command line.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use ctigate::config::{Config, ConfigError, Dialect};
use ctigate::gateway::{Gateway, StartOptions};
use ctigate::sim::csta_xml::{SimConfig, Simulator, Timing};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "ctigate",
    version,
    about = "CTI gateway: PBX call-control protocols in, Login-ID keyed event streams out"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway.
    Run {
        /// Configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file; prints every problem and exits non-zero if there is one.
    CheckConfig {
        /// Configuration file.
        file: PathBuf,
    },
    /// Connect one PBX link as the gateway would (TLS, session, MonitorStart for its devices),
    /// print each step, then stop it in order. Exits non-zero unless every device got monitored.
    Probe {
        /// Configuration file.
        #[arg(long)]
        config: PathBuf,
        /// The `[[pbx]]` to probe (needed when there are several).
        #[arg(long)]
        pbx: Option<String>,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 20)]
        timeout: u64,
    },
    /// Generate a development CA, a server and a client certificate.
    GenCerts {
        /// Output directory.
        dir: PathBuf,
        /// Extra DNS names or IP addresses for the server certificate.
        #[arg(long = "san")]
        sans: Vec<String>,
        /// Common name of the client certificate.
        #[arg(long, default_value = "ctigate-connector")]
        client_name: String,
    },
    /// Run a PBX simulator.
    Sim {
        #[command(subcommand)]
        proto: SimCmd,
    },
    /// Gateway + simulated PBX + console connector in one process.
    Demo {
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<u64>,
        /// Number of Login IDs.
        #[arg(long, default_value_t = 5)]
        logins: usize,
        /// Simulated calls per second.
        #[arg(long, default_value_t = 2.0)]
        rate: f64,
        /// Connector API address.
        #[arg(long, default_value = "127.0.0.1:0")]
        api_listen: String,
        /// Ops address.
        #[arg(long, default_value = "127.0.0.1:0")]
        ops_listen: String,
    },
    /// Console connector for a running gateway.
    Connect {
        /// wss://host:port/v1/stream
        url: String,
        /// Bearer token.
        #[arg(long, env = "CTIGATE_TOKEN")]
        token: String,
        /// Login IDs to serve.
        #[arg(long = "login", required = true)]
        logins: Vec<String>,
        /// CA certificate of the gateway (PEM).
        #[arg(long)]
        ca: PathBuf,
        /// Client certificate, when the gateway requires mTLS.
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        /// Client key.
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
        /// Place a call once connected: LOGIN=NUMBER.
        #[arg(long)]
        call: Option<String>,
        /// Print JSON lines.
        #[arg(long)]
        json: bool,
    },
    /// Tokens for `[[connector]]`.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Login IDs.
    LoginId {
        #[command(subcommand)]
        cmd: LoginIdCmd,
    },
    /// Decode a capture (raw bytes, hex dump, pcap/pcapng) into JSON lines on stdout: one per
    /// message, per normalized event and per error; a summary goes to stderr.
    Decode(DecodeArgs),
}

#[derive(clap::Args)]
struct DecodeArgs {
    /// Capture file; `-` or nothing reads stdin.
    file: Option<PathBuf>,
    /// Protocol of the captured stream.
    #[arg(long, value_enum, default_value_t = DecodeProtocol::CstaXml)]
    protocol: DecodeProtocol,
    /// Input format; `auto` looks at the first bytes.
    #[arg(long, value_enum, default_value_t = DecodeFormat::Auto)]
    format: DecodeFormat,
    /// Follow only TCP flows from or to this port (pcap); default: every TCP flow.
    #[arg(long)]
    port: Option<u16>,
    /// Largest frame accepted, header included (at most 65535 with the header).
    #[arg(long, default_value_t = 65535)]
    max_frame: usize,
    /// The peer sends bare XML documents without the 8-byte header.
    #[arg(long)]
    no_header: bool,
    /// Out-of-order bytes held per flow direction before a hole is reported as a gap.
    #[arg(long, default_value_t = 4 << 20)]
    flow_buffer: usize,
    /// Flow directions followed at once.
    #[arg(long, default_value_t = 100_000)]
    max_flows: usize,
    /// Gateway configuration to take the PBX name and numbering plan from.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Which `[[pbx]]` of --config (default: the first).
    #[arg(long, requires = "config")]
    pbx: Option<String>,
}

#[derive(Clone, Copy, ValueEnum)]
enum DecodeProtocol {
    CstaXml,
}

#[derive(Clone, Copy, ValueEnum)]
enum DecodeFormat {
    Auto,
    Raw,
    Hex,
    Pcap,
}

#[derive(Subcommand)]
enum SimCmd {
    /// A CSTA XML (ECMA-323) PBX.
    CstaXml {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:1040")]
        listen: String,
        /// Number of devices.
        #[arg(long, default_value_t = 10)]
        devices: u32,
        /// First device number.
        #[arg(long, default_value_t = 4001)]
        first_device: u32,
        /// New calls per second.
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        /// How the session opens.
        #[arg(long, value_enum, default_value_t = SimDialect::Osv)]
        dialect: SimDialect,
        /// Namespace edition: ed2..ed6 or none.
        #[arg(long, default_value = "ed4")]
        namespace: String,
        /// TLS certificate (PEM); plain TCP without it.
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// TLS key (PEM).
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<PathBuf>,
        /// Ringing time, ms.
        #[arg(long, default_value_t = 1500)]
        ring_ms: u64,
        /// Talk time, ms.
        #[arg(long, default_value_t = 3000)]
        talk_ms: u64,
        /// Dial the gateway at this address instead of listening (for `mode = "accept"` links).
        #[arg(long)]
        dial: Option<String>,
        /// With --dial: CA certificate (PEM) to verify the gateway; plain TCP without it.
        #[arg(long, requires = "dial")]
        dial_ca: Option<PathBuf>,
        /// With --dial-ca: the name to verify (default: the host of --dial).
        #[arg(long, requires = "dial_ca")]
        dial_server_name: Option<String>,
        /// With --dialect ecma354: the user name StartApplicationSession must carry.
        #[arg(long, default_value = "ctigate")]
        session_user: String,
        /// With --dialect ecma354: the password (or set CTIGATE_SIM_PASSWORD).
        #[arg(long, env = "CTIGATE_SIM_PASSWORD", default_value = "ctigate")]
        session_password: String,
        /// With --dialect ecma354: longest session duration granted, seconds.
        #[arg(long, default_value_t = 180)]
        session_max_duration: u32,
        /// How device ids appear in events: plain digits, OSV `N<…>;displayNumber=…`, SIP URIs or
        /// `tel:` URIs.
        #[arg(long, value_enum, default_value_t = SimDeviceStyle::Plain)]
        device_style: SimDeviceStyle,
        /// Write every element with this namespace prefix (e.g. `csta`) instead of a default
        /// namespace.
        #[arg(long)]
        namespace_prefix: Option<String>,
        /// Answer SnapshotDevice with a serviceCrossRefID and send the calls in SnapshotDeviceData
        /// segments.
        #[arg(long)]
        segmented_snapshots: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum SimDeviceStyle {
    Plain,
    Osv,
    Sip,
    Tel,
}

#[derive(Clone, Copy, ValueEnum)]
enum SimDialect {
    Osv,
    RequestSystemStatus,
    Ecma354,
}

#[derive(Subcommand)]
enum TokenCmd {
    /// Generate a token and print it with its SHA-256 for the config.
    New,
}

#[derive(Subcommand)]
enum LoginIdCmd {
    /// Generate Login IDs (20 uppercase letters and digits from the OS CSPRNG).
    New {
        /// How many.
        #[arg(long, default_value_t = 1)]
        count: usize,
    },
}

fn init_logs(format: LogFormat, default: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    use std::io::IsTerminal;
    // Colours only on a terminal: journald and log files get plain text.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().flatten_event(true).init(),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run { config } => {
            init_logs(cli.log_format, "info");
            let cfg = load(&config)?;
            // Handlers first: a SIGHUP's default action would end the process, and a
            // certificate hook may send one while the gateway is still starting.
            let mut reloads = reload_signals().context("installing the SIGHUP handler")?;
            let stop = stop_signal();
            tokio::pin!(stop);
            let gw = Gateway::start(&cfg, StartOptions::default()).await?;
            let signal = loop {
                tokio::select! {
                    s = &mut stop => break s.context("waiting for a stop signal")?,
                    Some(()) = reloads.recv() => {
                        // Certificates are renewed on disk; new connections take the new ones.
                        let r = gw.reload_tls();
                        tracing::info!(reloaded = r.reloaded.len(), failed = r.failed.len(), "SIGHUP: TLS files re-read");
                    }
                }
            };
            tracing::info!(
                signal,
                "stopping: monitors and sessions end, connectors are told"
            );
            gw.stop().await;
        }
        Cmd::Probe {
            config,
            pbx,
            timeout,
        } => {
            init_logs(cli.log_format, "warn");
            let cfg = load(&config)?;
            let report =
                ctigate::probe::probe(&cfg, pbx.as_deref(), Duration::from_secs(timeout)).await?;
            for l in report.lines(&cfg) {
                println!("{l}");
            }
            if !report.ok {
                std::process::exit(1);
            }
        }
        Cmd::CheckConfig { file } => match Config::load(&file) {
            Ok(cfg) => {
                // A running gateway keeps serving with an expired certificate (and logs it), but
                // deploying one is a mistake worth stopping; one expiring soon is worth a line.
                let expiries = cfg.certificate_expiries(Duration::from_secs(30 * 86_400));
                let now = ctigate::model::now_ms() as i64 / 1000;
                let mut expired = false;
                for e in &expiries {
                    let date = time::OffsetDateTime::from_unix_timestamp(e.not_after)
                        .map(|t| t.date().to_string())
                        .unwrap_or_default();
                    if e.expired {
                        expired = true;
                        eprintln!(
                            "{}: {}: the certificate expired on {date}",
                            e.key,
                            e.path.display()
                        );
                    } else {
                        println!(
                            "warning: {}: {}: the certificate expires on {date} (in {} days)",
                            e.key,
                            e.path.display(),
                            (e.not_after - now) / 86_400
                        );
                    }
                }
                if expired {
                    std::process::exit(1);
                }
                println!(
                    "{}: OK ({} PBX link(s), {} Login ID(s), {} connector credential(s))",
                    file.display(),
                    cfg.pbx.len(),
                    cfg.login.len(),
                    cfg.connector.len()
                );
            }
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(1);
            }
        },
        Cmd::GenCerts {
            dir,
            sans,
            client_name,
        } => {
            let certs = ctigate::tls::DevCerts::generate(&sans, &client_name)?;
            for f in certs.write(&dir)? {
                println!("wrote {}", f.display());
            }
            println!("These are development certificates; see certs/README.md for production use.");
        }
        Cmd::Sim {
            proto:
                SimCmd::CstaXml {
                    listen,
                    devices,
                    first_device,
                    rate,
                    dialect,
                    namespace,
                    tls_cert,
                    tls_key,
                    ring_ms,
                    talk_ms,
                    dial,
                    dial_ca,
                    dial_server_name,
                    session_user,
                    session_password,
                    session_max_duration,
                    device_style,
                    namespace_prefix,
                    segmented_snapshots,
                },
        } => {
            init_logs(cli.log_format, "info");
            let namespace =
                ctigate::config::namespace_uri(&namespace).map_err(anyhow::Error::msg)?;
            let tls = match (tls_cert, tls_key) {
                (Some(c), Some(k)) => Some(ctigate::tls::server_config_from_files(&c, &k, None)?),
                _ => None,
            };
            let sim = Simulator::start(SimConfig {
                listen,
                devices: SimConfig::numbered_devices(first_device, devices),
                rate,
                dialect: match dialect {
                    SimDialect::Osv => Dialect::Osv,
                    SimDialect::RequestSystemStatus => Dialect::RequestSystemStatus,
                    SimDialect::Ecma354 => Dialect::Ecma354,
                },
                app_session: matches!(dialect, SimDialect::Ecma354).then(|| {
                    ctigate::sim::csta_xml::SimAppSession {
                        user: session_user,
                        password: session_password,
                        max_duration_secs: session_max_duration,
                    }
                }),
                device_style: match device_style {
                    SimDeviceStyle::Plain => ctigate::sim::csta_xml::DeviceStyle::Plain,
                    SimDeviceStyle::Osv => ctigate::sim::csta_xml::DeviceStyle::Osv,
                    SimDeviceStyle::Sip => ctigate::sim::csta_xml::DeviceStyle::SipUri,
                    SimDeviceStyle::Tel => ctigate::sim::csta_xml::DeviceStyle::TelUri,
                },
                namespace,
                namespace_prefix,
                segmented_snapshots,
                tls,
                timing: Timing {
                    step: Duration::from_millis(100),
                    ring: Duration::from_millis(ring_ms),
                    talk: Duration::from_millis(talk_ms),
                },
                seed: rand::random(),
                dial: match dial {
                    None => None,
                    Some(addr) => {
                        let tls = match dial_ca {
                            None => None,
                            Some(ca) => {
                                let host = dial_server_name.unwrap_or_else(|| {
                                    ctigate::config::split_host_port(&addr)
                                        .map_or(addr.clone(), |(h, _)| h.to_string())
                                });
                                Some((
                                    ctigate::tls::client_config_from_files(&ca, None, None)?,
                                    ctigate::tls::server_name(&host)?,
                                ))
                            }
                        };
                        Some(ctigate::sim::csta_xml::SimDial { addr, tls })
                    }
                },
            })
            .await
            .context("starting the simulator")?;
            println!(
                "CSTA XML simulator on {} with devices {}..{}",
                sim.addr,
                first_device,
                first_device + devices.saturating_sub(1)
            );
            stop_signal().await?;
            sim.stop();
        }
        Cmd::Demo {
            json,
            duration,
            logins,
            rate,
            api_listen,
            ops_listen,
        } => {
            init_logs(cli.log_format, "warn");
            if logins == 0 {
                bail!("--logins must be at least 1");
            }
            ctigate::demo::run(ctigate::demo::DemoOptions {
                json,
                duration: duration.map(Duration::from_secs),
                logins,
                rate,
                api_listen,
                ops_listen,
            })
            .await?;
        }
        Cmd::Connect {
            url,
            token,
            logins,
            ca,
            cert,
            key,
            call,
            json,
        } => {
            init_logs(cli.log_format, "warn");
            let tls = ctigate::tls::client_config_from_files(&ca, cert.as_deref(), key.as_deref())?;
            connect(&url, &token, &logins, tls, call, json).await?;
        }
        Cmd::Token { cmd: TokenCmd::New } => {
            let t = ctigate::api::auth::generate_token();
            println!("token (give to the connector, keep secret): {t}");
            println!(
                "token_sha256 (put in [[connector]]):        {}",
                ctigate::api::auth::token_hash(&t)
            );
        }
        Cmd::LoginId {
            cmd: LoginIdCmd::New { count },
        } => {
            for _ in 0..count {
                println!("{}", ctigate::model::LoginId::generate());
            }
        }
        Cmd::Decode(args) => {
            init_logs(cli.log_format, "warn");
            decode(args)?;
        }
    }
    Ok(())
}

/// `ctigate decode`: the work is in `ctigate::capture`; this opens the input and reports.
fn decode(a: DecodeArgs) -> Result<()> {
    use ctigate::capture::{self, CaptureError, InputFormat, Options};
    let DecodeProtocol::CstaXml = a.protocol;
    let mut opts = Options {
        format: match a.format {
            DecodeFormat::Auto => InputFormat::Auto,
            DecodeFormat::Raw => InputFormat::Raw,
            DecodeFormat::Hex => InputFormat::Hex,
            DecodeFormat::Pcap => InputFormat::Pcap,
        },
        port: a.port,
        max_frame: a.max_frame,
        no_header: a.no_header,
        flow_buffer: a.flow_buffer,
        max_flows: a.max_flows,
        ..Options::default()
    };
    if let Some(cfg) = &a.config {
        (opts.pbx, opts.plan) = capture::numbering_from_config(cfg, a.pbx.as_deref())?;
    }
    let input: Box<dyn std::io::Read> = match &a.file {
        Some(p) if p.as_os_str() != "-" => Box::new(
            std::fs::File::open(p).with_context(|| format!("cannot open {}", p.display()))?,
        ),
        _ => Box::new(std::io::stdin().lock()),
    };
    match capture::decode(input, &opts, std::io::stdout().lock()) {
        Ok(summary) => eprintln!("{summary}"),
        // `ctigate decode cap.pcap | head`: the reader left; that is not a failure.
        Err(CaptureError::Write(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(e) => bail!("{}: {e}", name(&a.file)),
    }
    Ok(())
}

fn name(file: &Option<PathBuf>) -> String {
    match file {
        Some(p) if p.as_os_str() != "-" => p.display().to_string(),
        _ => "stdin".into(),
    }
}

fn load(path: &std::path::Path) -> Result<Config> {
    match Config::load(path) {
        Ok(c) => Ok(c),
        Err(e @ ConfigError::Invalid { .. }) => bail!("{e}"),
        Err(e) => Err(e.into()),
    }
}

/// The console connector: prints every message, reconnects with `resume` after a disconnect.
async fn connect(
    url: &str,
    token: &str,
    logins: &[String],
    tls: std::sync::Arc<rustls::ClientConfig>,
    call: Option<String>,
    json: bool,
) -> Result<()> {
    use ctigate::connector::{Client, ClientError, render};
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut call = call
        .map(|c| {
            c.split_once('=')
                .map(|(l, n)| (l.to_string(), n.to_string()))
                .context("--call takes LOGIN=NUMBER")
        })
        .transpose()?;
    let show = |v: &serde_json::Value| {
        if json {
            println!("{v}");
        } else {
            println!("{}", render(v));
        }
    };
    loop {
        let session = async {
            let mut c = Client::connect(url, tls.clone()).await?;
            let w = c.hello(token, logins, &last).await?;
            show(&w);
            if let Some((login, to)) = call.take() {
                c.send(
                    &serde_json::json!({"type":"make_call","id":"cli-1","login_id":login,"to":to}),
                )
                .await?;
            }
            loop {
                let v = c.recv().await?;
                if let (Some(l), Some(s)) = (v["login_id"].as_str(), v["seq"].as_u64())
                    && (v["type"] == "event" || v["type"] == "snapshot")
                {
                    last.insert(l.to_string(), s);
                }
                show(&v);
            }
            #[allow(unreachable_code)]
            Ok::<(), ClientError>(())
        };
        let r = tokio::select! {
            r = session => r,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        match r {
            Err(ClientError::Refused { code, message }) => {
                bail!("gateway refused: {code}: {message}")
            }
            Err(e) if e.is_permanent() => match e.hint() {
                Some(h) => bail!("{e} ({h})"),
                None => bail!("{e}"),
            },
            Err(e) => {
                eprintln!("disconnected: {e}; reconnecting in 1 s and resuming");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Ok(()) => return Ok(()),
        }
    }
}

/// SIGHUP, one message per signal (none on other platforms): the gateway re-reads its TLS files.
fn reload_signals() -> std::io::Result<tokio::sync::mpsc::Receiver<()>> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    #[cfg(unix)]
    {
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                // Several signals while a reload is pending make one more reload, not several.
                let _ = tx.try_send(());
            }
        });
    }
    #[cfg(not(unix))]
    drop(tx);
    Ok(rx)
}

/// Waits for Ctrl-C (SIGINT) or, on Unix, SIGTERM (`systemctl stop`, `docker stop`), so that both
/// end the gateway in order. Returns the signal's name.
async fn stop_signal() -> std::io::Result<&'static str> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.map(|()| "SIGINT"),
            _ = term.recv() => Ok("SIGTERM"),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map(|()| "Ctrl-C")
    }
}
