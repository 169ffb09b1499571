//! Wires a configuration into a running gateway: hub, PBX links, connector API and ops listener.

use crate::api::{Api, ApiSettings, auth::Credentials};
use crate::config::Config;
use crate::hub::{Hub, KickReason};
use crate::link::{self, LinkConfig, LinkState, TlsHandle, Transport, TransportError};
use crate::ops::{self, OpsState};
use crate::tls::{self, TlsError};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

/// Starting the gateway failed.
#[derive(Debug, Error)]
pub enum GatewayError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// Which listener.
        what: &'static str,
        /// Address.
        addr: String,
        /// Error.
        source: std::io::Error,
    },
    /// TLS material could not be loaded.
    #[error("{what}: {source}")]
    Tls {
        /// Which part.
        what: String,
        /// Error.
        source: TlsError,
    },
    /// A PBX link could not be set up.
    #[error("pbx {pbx:?}: {source}")]
    Link {
        /// Link name.
        pbx: String,
        /// Error.
        source: TransportError,
    },
}

/// Overrides for embedding (demo, tests): in-memory TLS material instead of files.
#[derive(Default)]
pub struct StartOptions {
    /// Connector API TLS config; loaded from `[api]` files when `None`.
    pub api_tls: Option<Arc<rustls::ServerConfig>>,
    /// Transport per PBX name; built from `[[pbx]]` when absent.
    pub transports: HashMap<String, Transport>,
}

/// A running gateway.
pub struct Gateway {
    /// The hub.
    pub hub: Hub,
    /// Bound connector API address.
    pub api_addr: SocketAddr,
    /// Bound ops address.
    pub ops_addr: SocketAddr,
    /// Link states.
    pub links: Vec<Arc<LinkState>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    tls: TlsFiles,
}

/// The TLS configs the gateway loaded from files, with the configuration naming them, which a
/// reload re-reads. In-memory ones (demo, tests) are not here.
struct TlsFiles {
    api: Option<(Arc<Api>, crate::config::ApiConfig)>,
    links: Vec<(crate::config::PbxConfig, TlsHandle)>,
}

/// What a TLS reload did.
#[derive(Debug, Default)]
pub struct TlsReload {
    /// What was reloaded (`[api]`, `pbx "osv-main"`).
    pub reloaded: Vec<String>,
    /// What could not be, and why; each keeps the config it had.
    pub failed: Vec<(String, String)>,
}

/// A certificate expiring sooner than this is warned about at every load.
const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 3600);

/// Publishes when the certificate in `path` expires (`gauge`, and `at` for `/status`), warns
/// when that is soon, and returns a short description of it for the log (`expires 2027-01-05,
/// sha256 3F2A…`).
fn record_cert(
    what: &str,
    path: &std::path::Path,
    gauge: metrics::Gauge,
    at: Option<&std::sync::atomic::AtomicI64>,
) -> String {
    match tls::cert_info(path) {
        Ok(c) => {
            gauge.set(c.not_after as f64);
            if let Some(at) = at {
                at.store(c.not_after, std::sync::atomic::Ordering::Relaxed);
            }
            let now = crate::model::now_ms() as i64 / 1000;
            if c.not_after <= now {
                error!(what, path = %path.display(), "TLS certificate has EXPIRED; peers will refuse it");
            } else if ((c.not_after - now) as u64) < EXPIRY_WARNING.as_secs() {
                warn!(what, path = %path.display(), days = (c.not_after - now) / 86_400, "TLS certificate expires soon");
            }
            let date = time::OffsetDateTime::from_unix_timestamp(c.not_after)
                .map(|t| t.date().to_string())
                .unwrap_or_else(|_| c.not_after.to_string());
            format!("expires {date}, sha256 {}", &c.sha256[..16])
        }
        Err(e) => {
            warn!(what, error = %e, "cannot read the certificate's expiry date");
            String::new()
        }
    }
}

/// Records the certificate a link presents (accept mode, or a client certificate when dialing).
fn record_link_cert(p: &crate::config::PbxConfig) -> String {
    match p.tls_cert.as_deref().filter(|_| p.tls) {
        Some(cert) => {
            let g = metrics::gauge!("ctigate_link_tls_certificate_expiry_timestamp_seconds", "link" => p.name.clone(), "protocol" => "csta-xml");
            record_cert(&format!("pbx {:?}", p.name), cert, g, None)
        }
        None => String::new(),
    }
}

fn api_reloads(result: &'static str) -> metrics::Counter {
    metrics::counter!("ctigate_api_tls_reloads_total", "result" => result)
}

fn link_reloads(link: &str, result: &'static str) -> metrics::Counter {
    metrics::counter!("ctigate_link_tls_reloads_total", "link" => link.to_string(), "protocol" => "csta-xml", "result" => result)
}

impl Gateway {
    /// Starts everything described by `cfg` (already validated).
    pub async fn start(cfg: &Config, mut opts: StartOptions) -> Result<Gateway, GatewayError> {
        let handle = ops::metrics::install();
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let hub = Hub::new(cfg);

        let mut files = TlsFiles {
            api: None,
            links: Vec::new(),
        };
        let (api_tls, api_from_files) = match opts.api_tls.take() {
            Some(t) => (t, false),
            None => {
                let t = tls::server_config_from_files(
                    &cfg.api.cert,
                    &cfg.api.key,
                    cfg.api.client_ca.as_deref(),
                )
                .map_err(|source| GatewayError::Tls {
                    what: "[api] TLS".into(),
                    source,
                })?;
                // Both series from the start, so that the first failure is an increase.
                api_reloads("ok").absolute(0);
                api_reloads("error").absolute(0);
                (t, true)
            }
        };
        let api_listener = bind("connector API", &cfg.api.listen).await?;
        let ops_listener = bind("ops", &cfg.ops.listen).await?;
        let api_addr = local(&api_listener, &cfg.api.listen);
        let ops_addr = local(&ops_listener, &cfg.ops.listen);

        let mut links = Vec::new();
        for p in &cfg.pbx {
            let transport = match opts.transports.remove(&p.name) {
                Some(t) => t,
                None => {
                    let t = Transport::from_config(p).map_err(|source| GatewayError::Link {
                        pbx: p.name.clone(),
                        source,
                    })?;
                    if let Some(h) = t.tls_handle() {
                        files.links.push((p.clone(), h));
                        record_link_cert(p);
                        link_reloads(&p.name, "ok").absolute(0);
                        link_reloads(&p.name, "error").absolute(0);
                    }
                    t
                }
            };
            let lc = LinkConfig::from_pbx(p, cfg.devices_of(&p.name));
            links.push(link::spawn(
                lc,
                transport,
                hub.clone(),
                shutdown.clone(),
                &tasks,
            ));
        }

        let api = Api::new(
            hub.clone(),
            Credentials::from_config(&cfg.connector),
            cfg.api.auth_failures_per_minute,
            ApiSettings::from_config(&cfg.api),
            api_tls,
        );
        if api_from_files {
            let g = metrics::gauge!("ctigate_api_tls_certificate_expiry_timestamp_seconds");
            record_cert("[api]", &cfg.api.cert, g, Some(&api.cert_expiry));
            files.api = Some((api.clone(), cfg.api.clone()));
        }
        tasks.spawn(api.clone().serve(api_listener, shutdown.clone()));
        let state = OpsState {
            handle,
            links: links.clone(),
            api,
            hub: hub.clone(),
            started: Instant::now(),
        };
        tasks.spawn(ops::serve(ops_listener, state, shutdown.clone()));
        tasks.close();
        info!(api = %api_addr, ops = %ops_addr, links = links.len(), logins = hub.registry().len(), "gateway started");
        Ok(Gateway {
            hub,
            api_addr,
            ops_addr,
            links,
            shutdown,
            tasks,
            tls: files,
        })
    }

    /// Re-reads every TLS file the gateway loaded at start (the connector listener's and each
    /// PBX link's, at the paths the configuration named then), for connections made from now on;
    /// established ones keep their session. Whatever fails to load keeps the config it had.
    /// `main` calls this on SIGHUP.
    pub fn reload_tls(&self) -> TlsReload {
        let mut r = TlsReload::default();
        let mut outcome =
            |what: String,
             res: Result<String, String>,
             counter: &dyn Fn(&'static str) -> metrics::Counter| {
                match res {
                    Ok(cert) => {
                        counter("ok").increment(1);
                        info!(what, cert, "TLS files reloaded");
                        r.reloaded.push(what);
                    }
                    Err(e) => {
                        counter("error").increment(1);
                        error!(what, error = %e, "TLS reload failed; the previous certificate stays in use");
                        r.failed.push((what, e));
                    }
                }
            };
        if let Some((server, api)) = &self.tls.api {
            let res = tls::server_config_from_files(&api.cert, &api.key, api.client_ca.as_deref())
                .map(|c| {
                    server.tls().replace(c);
                    let g = metrics::gauge!("ctigate_api_tls_certificate_expiry_timestamp_seconds");
                    record_cert("[api]", &api.cert, g, Some(&server.cert_expiry))
                })
                .map_err(|e| e.to_string());
            outcome("[api]".into(), res, &api_reloads);
        }
        for (p, handle) in &self.tls.links {
            let res = Transport::reload(handle, p)
                .map(|()| record_link_cert(p))
                .map_err(|e| e.to_string());
            outcome(format!("pbx {:?}", p.name), res, &|r| {
                link_reloads(&p.name, r)
            });
        }
        r
    }

    /// The token that stops the gateway.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops everything: connectors are told `shutdown`, links stop their monitors.
    pub async fn stop(self) {
        self.hub.kick_all(KickReason::Shutdown);
        self.shutdown.cancel();
        // The API, the ops listener and every link (which sends MonitorStop and, for ECMA-354,
        // StopApplicationSession, then gives its writer a second) end within this.
        if tokio::time::timeout(Duration::from_secs(5), self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("gateway stop: tasks still running after 5 s; leaving them");
        }
        info!("gateway stopped");
    }
}

async fn bind(what: &'static str, addr: &str) -> Result<TcpListener, GatewayError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| GatewayError::Bind {
            what,
            addr: addr.to_string(),
            source,
        })
}

fn local(l: &TcpListener, fallback: &str) -> SocketAddr {
    l.local_addr().unwrap_or_else(|_| {
        fallback
            .parse()
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)))
    })
}
