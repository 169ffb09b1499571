//! `ctigate probe`: connects one PBX link as the gateway would (transport, TLS, session dialect,
//! MonitorStart for its devices), reports each step as it happens, then stops the link in order.
//! What ops run after `check-config` and before `run`, or when a link stays down.

use crate::config::{Config, LinkMode};
use crate::hub::Hub;
use crate::link::{self, LinkConfig, LinkState, Transport, TransportError};
use crate::model::LoginId;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use thiserror::Error;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The probe could not start.
#[derive(Debug, Error)]
pub enum ProbeError {
    /// No `[[pbx]]` by that name, or several and none named.
    #[error("{0}")]
    Pbx(String),
    /// The link's transport could not be built (TLS files, address).
    #[error("pbx {pbx:?}: {source}")]
    Transport {
        /// Link name.
        pbx: String,
        /// Error.
        source: TransportError,
    },
}

/// One step of a probe, as it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A connection was made (TCP, and TLS when configured).
    Connected {
        /// Time since the probe started.
        after: Duration,
        /// The certificate the PBX presented expires then (seconds since the Unix epoch).
        peer_cert_expiry: Option<i64>,
    },
    /// The CSTA session is open.
    SessionUp {
        /// Time since the probe started.
        after: Duration,
    },
    /// `monitored` of the link's devices are monitored.
    Monitored {
        /// Time since the probe started.
        after: Duration,
        /// Devices monitored now.
        monitored: usize,
    },
    /// The link reported a problem (connect failure, refused session, monitor failure, drop).
    Error {
        /// Time since the probe started.
        after: Duration,
        /// The link's words.
        message: String,
    },
}

/// What a probe found.
#[derive(Debug)]
pub struct Report {
    /// The link's name.
    pub pbx: String,
    /// Devices the link monitors (its `devices` and those of its `[[login]]`s).
    pub devices: usize,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// Per Login ID on this PBX: its device and status reason (`monitored`,
    /// `monitor_failed: …`, `connecting`).
    pub logins: Vec<(String, String, String)>,
    /// Devices the PBX would not monitor, with its reason.
    pub unmonitored: Vec<(String, String)>,
    /// The session opened and every device is monitored.
    pub ok: bool,
}

/// Probes the `[[pbx]]` named `name` (or the only one) of a validated configuration, for at most
/// `limit`. The link is stopped before this returns (MonitorStop, and StopApplicationSession for
/// ECMA-354), so the PBX sees an orderly client.
pub async fn probe(
    cfg: &Config,
    name: Option<&str>,
    limit: Duration,
) -> Result<Report, ProbeError> {
    let p = match name {
        Some(n) => cfg
            .pbx
            .iter()
            .find(|p| p.name == n)
            .ok_or_else(|| ProbeError::Pbx(format!("no [[pbx]] is named {n:?}")))?,
        None => match cfg.pbx.as_slice() {
            [p] => p,
            [] => return Err(ProbeError::Pbx("the configuration has no [[pbx]]".into())),
            _ => {
                return Err(ProbeError::Pbx(
                    "the configuration has several [[pbx]]; name one with --pbx".into(),
                ));
            }
        },
    };
    let transport = Transport::from_config(p).map_err(|source| ProbeError::Transport {
        pbx: p.name.clone(),
        source,
    })?;
    let hub = Hub::new(cfg);
    let shutdown = CancellationToken::new();
    let tasks = TaskTracker::new();
    let devices = cfg.devices_of(&p.name);
    let state = link::spawn(
        LinkConfig::from_pbx(p, devices),
        transport,
        hub.clone(),
        shutdown.clone(),
        &tasks,
    );
    tasks.close();
    let steps = watch(&state, limit).await;
    let logins = cfg
        .login
        .iter()
        .filter(|l| l.pbx == p.name)
        .map(|l| {
            let reason = LoginId::parse(&l.login_id)
                .ok()
                .and_then(|id| hub.status(&id))
                .map(|s| s.1)
                .unwrap_or_default();
            (l.login_id.clone(), l.device.clone(), reason)
        })
        .collect();
    let ok = state.up.load(Ordering::Relaxed)
        && state.monitored.load(Ordering::Relaxed) == state.devices;
    let unmonitored = state
        .unmonitored
        .lock()
        .map(|m| m.iter().map(|(d, r)| (d.to_string(), r.clone())).collect())
        .unwrap_or_default();
    shutdown.cancel();
    // The link ends its monitors and session within this (see `Gateway::stop`).
    let _ = tokio::time::timeout(Duration::from_secs(5), tasks.wait()).await;
    Ok(Report {
        pbx: p.name.clone(),
        devices: state.devices,
        steps,
        logins,
        unmonitored,
        ok,
    })
}

/// Polls the link's state until every device is monitored or refused, or `limit` passes, noting
/// each change. Counters (connections, sessions opened) make sure a connection or a session that
/// came and went between two looks is still reported.
async fn watch(state: &Arc<LinkState>, limit: Duration) -> Vec<Step> {
    let start = Instant::now();
    let mut steps = Vec::new();
    let (mut connects, mut sessions, mut monitored) = (0, 0, 0);
    let mut last_error: Option<String> = None;
    loop {
        let after = start.elapsed();
        // Acquire: the link stores the connection's certificate expiry before counting it.
        let c = state.connects.load(Ordering::Acquire);
        if c != connects {
            connects = c;
            let t = state.peer_cert_expiry.load(Ordering::Relaxed);
            steps.push(Step::Connected {
                after,
                peer_cert_expiry: (t != 0).then_some(t),
            });
        }
        let n = state.sessions.load(Ordering::Relaxed);
        if n != sessions {
            sessions = n;
            steps.push(Step::SessionUp { after });
        }
        let error = state
            .last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default();
        if error.is_some() && error != last_error {
            steps.push(Step::Error {
                after,
                message: error.clone().unwrap_or_default(),
            });
        }
        last_error = error;
        let up = state.up.load(Ordering::Relaxed);
        let m = state.monitored.load(Ordering::Relaxed);
        if up && m != monitored {
            monitored = m;
            steps.push(Step::Monitored {
                after,
                monitored: m,
            });
        }
        // Done when every device is monitored or refused (a refused device is retried only a
        // minute later).
        let refused = state
            .unmonitored
            .lock()
            .map(|u| {
                u.values()
                    .filter(|r| r.starts_with("monitor_failed"))
                    .count()
            })
            .unwrap_or(0);
        if (up && m + refused >= state.devices) || after >= limit {
            return steps;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Report {
    /// The report as text lines, for the terminal.
    pub fn lines(&self, cfg: &Config) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(p) = cfg.pbx.iter().find(|p| p.name == self.pbx) {
            out.push(format!(
                "probe {:?}: csta-xml, {} {}, dialect {}, {}",
                p.name,
                match p.mode {
                    LinkMode::Dial => "dialing",
                    LinkMode::Accept => "accepting on",
                },
                p.address,
                p.dialect.as_str(),
                if p.tls { "TLS" } else { "plain TCP" }
            ));
        }
        let ms = |d: &Duration| d.as_millis();
        for s in &self.steps {
            out.push(match s {
                Step::Connected {
                    after,
                    peer_cert_expiry,
                } => {
                    let cert = peer_cert_expiry
                        .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
                        .map(|t| format!("; the PBX's certificate expires {}", t.date()))
                        .unwrap_or_default();
                    format!("  {:>6} ms  connected{cert}", ms(after))
                }
                Step::SessionUp { after } => {
                    format!("  {:>6} ms  CSTA session open", ms(after))
                }
                Step::Monitored { after, monitored } => format!(
                    "  {:>6} ms  monitoring {monitored}/{} devices",
                    ms(after),
                    self.devices
                ),
                Step::Error { after, message } => {
                    format!("  {:>6} ms  problem: {message}", ms(after))
                }
            });
        }
        for (device, reason) in &self.unmonitored {
            out.push(format!("  device {device}: {reason}"));
        }
        for (login, device, reason) in &self.logins {
            out.push(format!("  login {login} (device {device}): {reason}"));
        }
        out.push(if self.ok {
            "OK".into()
        } else if !self.steps.iter().any(|s| matches!(s, Step::SessionUp { .. })) {
            "FAILED: no CSTA session (see the problems above; check address, TLS, dialect and namespace)".into()
        } else {
            "FAILED: not every device is monitored (see the devices above)".into()
        });
        out
    }
}
