//! Wires a configuration into a running gateway: hub, PBX links, connector API and ops listener.

use crate::api::{Api, ApiSettings, auth::Credentials};
use crate::config::Config;
use crate::hub::{Hub, KickReason};
use crate::link::{self, LinkConfig, LinkState, Transport, TransportError};
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
use tracing::info;

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
}

impl Gateway {
    /// Starts everything described by `cfg` (already validated).
    pub async fn start(cfg: &Config, mut opts: StartOptions) -> Result<Gateway, GatewayError> {
        let handle = ops::metrics::install();
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let hub = Hub::new(cfg);

        let api_tls = match opts.api_tls.take() {
            Some(t) => t,
            None => tls::server_config_from_files(
                &cfg.api.cert,
                &cfg.api.key,
                cfg.api.client_ca.as_deref(),
            )
            .map_err(|source| GatewayError::Tls {
                what: "[api] TLS".into(),
                source,
            })?,
        };
        let api_listener = bind("connector API", &cfg.api.listen).await?;
        let ops_listener = bind("ops", &cfg.ops.listen).await?;
        let api_addr = local(&api_listener, &cfg.api.listen);
        let ops_addr = local(&ops_listener, &cfg.ops.listen);

        let mut links = Vec::new();
        for p in &cfg.pbx {
            let transport = match opts.transports.remove(&p.name) {
                Some(t) => t,
                None => Transport::from_config(p).map_err(|source| GatewayError::Link {
                    pbx: p.name.clone(),
                    source,
                })?,
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
        })
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
