//! PBX links: one task per PBX connection. Transport (dial or accept, TCP or TLS), reconnect with
//! backoff and jitter, the framer, and the protocol session core, feeding the hub.
//!
//! The read loop never waits on anything downstream: events go to [`Hub::publish`], which does not
//! block, and writes go through a bounded queue to a writer task.

mod counters;
pub mod csta_xml;
pub mod log_budget;
pub mod transport;

use crate::codec::framing::Deframer;
use crate::config::{IpRange, PbxConfig, namespace_uri};
use crate::hub::{CommandError, Hub, LinkRequest};
use crate::model::{DeviceStatus, Text, now_ms};
use bytes::Bytes;
use counters::LinkCounters;
use csta_xml::{Output, Session, SessionConfig};
use rand::Rng;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
pub use transport::{Connected, Stream, TlsHandle, Transport, TransportError};

/// Live state of a link, shared with the ops endpoints.
#[derive(Debug)]
pub struct LinkState {
    /// Link name.
    pub name: Text,
    /// Protocol label.
    pub protocol: &'static str,
    /// Session established now.
    pub up: AtomicBool,
    /// Devices configured.
    pub devices: usize,
    /// Devices monitored now.
    pub monitored: AtomicUsize,
    /// Connections made since start.
    pub connects: AtomicU64,
    /// CSTA sessions opened since start (a session may open and drop between two looks at `up`).
    pub sessions: AtomicU64,
    /// Last error or disconnect reason.
    pub last_error: Mutex<Option<String>>,
    /// When the certificate the PBX presented at its last connect expires, seconds since the
    /// Unix epoch; 0 when it presented none.
    pub peer_cert_expiry: AtomicI64,
    /// Devices of the current connection the session could not monitor, with the reason
    /// (`monitor_failed: operation/invalidDeviceID`), for `ctigate probe`.
    pub unmonitored: Mutex<std::collections::BTreeMap<Text, String>>,
}

impl LinkState {
    /// A link named `name` with `devices` configured, not connected yet.
    fn new(name: Text, devices: usize) -> LinkState {
        LinkState {
            name,
            protocol: "csta-xml",
            up: AtomicBool::new(false),
            devices,
            monitored: AtomicUsize::new(0),
            connects: AtomicU64::new(0),
            sessions: AtomicU64::new(0),
            last_error: Mutex::new(None),
            peer_cert_expiry: AtomicI64::new(0),
            unmonitored: Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    fn set_error(&self, e: String) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    }
}

/// Everything a link task needs.
pub struct LinkConfig {
    /// Session settings.
    pub session: Arc<SessionConfig>,
    /// Frame cap.
    pub max_frame_bytes: usize,
    /// Backoff bounds.
    pub reconnect_min: Duration,
    /// Backoff bounds.
    pub reconnect_max: Duration,
    /// Accept mode: the addresses the PBX may connect from; empty for any.
    pub accept_from: Vec<IpRange>,
}

impl LinkConfig {
    /// From a validated `[[pbx]]` and its device list.
    pub fn from_pbx(p: &PbxConfig, devices: Vec<String>) -> LinkConfig {
        LinkConfig {
            session: Arc::new(SessionConfig {
                pbx: Text::from(p.name.as_str()),
                dialect: p.dialect,
                // Validation guarantees this parses; fall back to no namespace rather than panic.
                namespace: namespace_uri(&p.namespace).unwrap_or_default(),
                devices: devices.into_iter().map(Text::from).collect(),
                plan: p.numbering.plan(),
                monitor_rate: p.monitor_rate,
                keepalive: Duration::from_secs(p.keepalive_secs),
                request_timeout: Duration::from_millis(p.request_timeout_ms),
                handshake_timeout: Duration::from_millis(p.handshake_timeout_ms),
                monitor_retry: Duration::from_secs(60),
                app_session: (p.dialect == crate::config::Dialect::Ecma354).then(|| {
                    csta_xml::session::AppSession {
                        application_id: p.application_id.clone(),
                        user: p.session_user.clone().unwrap_or_default(),
                        password: p.session_password().unwrap_or_default(),
                        protocol_version: p
                            .protocol_version
                            .clone()
                            .unwrap_or_else(|| namespace_uri(&p.namespace).unwrap_or_default()),
                        duration_secs: p.session_duration_secs,
                    }
                }),
            }),
            max_frame_bytes: p.max_frame_bytes,
            reconnect_min: Duration::from_millis(p.reconnect_min_ms),
            reconnect_max: Duration::from_millis(p.reconnect_max_ms),
            accept_from: p.accept_from.clone(),
        }
    }
}

/// Exponential backoff with jitter ("equal jitter": half fixed, half random).
pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Backoff between `min` and `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let base = self
            .min
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let half = base / 2;
        half + half.mul_f64(rand::rng().random::<f64>())
    }

    /// Back to the shortest delay (after a session was established).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Starts a link task on `tasks` (so that stopping the gateway waits for its orderly end).
/// Returns its shared state.
pub fn spawn(
    cfg: LinkConfig,
    transport: Transport,
    hub: Hub,
    shutdown: CancellationToken,
    tasks: &tokio_util::task::TaskTracker,
) -> Arc<LinkState> {
    let state = Arc::new(LinkState::new(
        cfg.session.pbx.clone(),
        cfg.session.devices.len(),
    ));
    let (tx, rx) = mpsc::channel(256);
    hub.register_link(cfg.session.pbx.clone(), tx);
    tasks.spawn(run(cfg, transport, hub, shutdown, state.clone(), rx));
    state
}

async fn run(
    cfg: LinkConfig,
    transport: Transport,
    hub: Hub,
    shutdown: CancellationToken,
    state: Arc<LinkState>,
    mut commands: mpsc::Receiver<LinkRequest>,
) {
    let name = cfg.session.pbx.clone();
    let labels = [
        ("link", name.to_string()),
        ("protocol", "csta-xml".to_string()),
    ];
    if !transport.is_tls() {
        warn!(link = %name, "PBX link runs WITHOUT TLS (tls = false): call data crosses the network in clear text");
    }
    if matches!(transport, Transport::Accept { .. })
        && cfg.session.dialect == crate::config::Dialect::Ecma354
        && cfg.accept_from.is_empty()
    {
        // Each connection opens its session to be considered, so each is sent the login.
        // Validation refuses this unless the PBX must present a certificate (`tls_client_ca`,
        // which the transport enforces and this task cannot see); the line stays for embedders.
        info!(link = %name, "accept mode with the ecma354 dialect and no accept_from: every peer that completes the TLS handshake is sent the session login");
    }
    for d in &cfg.session.devices {
        hub.set_device_status(&name, d, DeviceStatus::NotMonitored("connecting".into()));
    }
    metrics::gauge!("ctigate_link_up", &labels).set(0.0);
    // Per link, not per connection: the reconnects share the series anyway.
    let counters = Arc::new(LinkCounters::new(name.clone()));
    let mut backoff = Backoff::new(cfg.reconnect_min, cfg.reconnect_max);
    let mut conns = Connections::new(
        transport,
        Admission {
            link: name.clone(),
            allow: cfg.accept_from.clone(),
            refused: std::sync::OnceLock::new(),
        },
        cfg.session.handshake_timeout,
        &shutdown,
    );
    let mut candidates = Candidates::new(&cfg);
    let mut replacement: Option<Connection> = None;
    loop {
        let conn = match replacement.take() {
            Some(c) => Ok(c),
            None => tokio::select! {
                _ = shutdown.cancelled() => break,
                c = conns.next() => match c {
                    Some(c) => c.map(|c| Connection::new(&cfg, c, &counters)),
                    None => break,
                },
            },
        };
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                metrics::counter!("ctigate_link_connect_failures_total", "link" => name.to_string(), "protocol" => "csta-xml", "kind" => e.kind()).increment(1);
                warn!(link = %name, error = %e, "PBX connection failed");
                state.set_error(e.to_string());
                if !wait(&shutdown, &mut commands, backoff.next_delay()).await {
                    break;
                }
                continue;
            }
        };
        // The connection's facts first, then the count that announces it (`probe` reads the
        // count, then the facts).
        state
            .peer_cert_expiry
            .store(conn.peer_cert_expiry.unwrap_or(0), Ordering::Relaxed);
        state
            .unmonitored
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        state.connects.fetch_add(1, Ordering::Release);
        metrics::counter!("ctigate_link_connects_total", &labels).increment(1);
        let peer = conn.peer.clone();
        info!(link = %name, %peer, "PBX connected");
        if let Some(t) = conn.peer_cert_expiry {
            metrics::gauge!(
                "ctigate_link_peer_certificate_expiry_timestamp_seconds",
                &labels
            )
            .set(t as f64);
            let left = t - (now_ms() / 1000) as i64;
            if left < 14 * 86_400 {
                warn!(link = %name, %peer, days = left / 86_400, "the PBX's TLS certificate expires within 14 days; the link fails when it does");
            }
        }
        let end = serve(
            &cfg,
            conn,
            &mut conns,
            &mut candidates,
            &hub,
            &shutdown,
            &state,
            &mut commands,
            &mut backoff,
            &counters,
        )
        .await;
        state.up.store(false, Ordering::Relaxed);
        state.monitored.store(0, Ordering::Relaxed);
        metrics::gauge!("ctigate_link_up", &labels).set(0.0);
        metrics::counter!("ctigate_link_disconnects_total", "link" => name.to_string(), "protocol" => "csta-xml", "reason" => end.label).increment(1);
        state.set_error(end.detail.clone());
        if end.label == "shutdown" {
            info!(link = %name, "PBX link stopped");
            break;
        }
        warn!(link = %name, %peer, reason = %end.detail, "PBX link down; reconnecting");
        if let Some(next) = end.replaced_by {
            replacement = Some(next);
            continue;
        }
        // A connection still opening when the live one ended takes over as soon as it opens.
        match await_candidate(&mut candidates, &shutdown, &mut commands).await {
            Waited::Opened(c) => {
                replacement = Some(*c);
                continue;
            }
            Waited::Shutdown => break,
            Waited::Nothing => {}
        }
        if !wait(&shutdown, &mut commands, backoff.next_delay()).await {
            break;
        }
    }
}

/// TLS handshakes of accepted connections in progress at once, per link.
const MAX_HANDSHAKES: usize = 8;

/// Which accepted connections a link takes at all (`accept_from`).
struct Admission {
    link: Text,
    allow: Vec<IpRange>,
    /// `connect_failures_total{kind="peer_not_allowed"}`, resolved on first use: a scanner may
    /// connect thousands of times a second.
    refused: std::sync::OnceLock<metrics::Counter>,
}

impl Admission {
    /// Whether `peer` may connect. A refused one is counted and logged (within a budget, as a
    /// scanner can connect thousands of times a second) and closed by the caller, before any TLS
    /// and before any byte is sent.
    fn admits(&self, peer: std::net::SocketAddr, logs: &mut log_budget::LogBudget) -> bool {
        if IpRange::admits(&self.allow, peer.ip()) {
            return true;
        }
        self.refused
            .get_or_init(|| metrics::counter!("ctigate_link_connect_failures_total", "link" => self.link.to_string(), "protocol" => "csta-xml", "kind" => "peer_not_allowed"))
            .increment(1);
        if let Some(suppressed) = logs.take(Instant::now()) {
            warn!(link = %self.link, %peer, suppressed, "connection from an address not in accept_from; closed");
        }
        false
    }
}

/// Where a link's connections come from. Accepted connections are taken by a task of their own
/// and each TLS handshake runs in a task of its own (at most [`MAX_HANDSHAKES`] at once, each
/// within the handshake timeout), so that a handshake in progress survives whatever else the link
/// is doing, and a client that never completes one holds up nothing but itself.
enum Connections {
    Dial(Transport, Duration),
    Accept(mpsc::Receiver<Result<Connected, TransportError>>),
}

impl Connections {
    fn new(
        transport: Transport,
        admission: Admission,
        limit: Duration,
        shutdown: &CancellationToken,
    ) -> Connections {
        match transport {
            Transport::Accept { .. } => {
                let (tx, rx) = mpsc::channel(1);
                let shutdown = shutdown.clone();
                let mut transport = transport;
                let permits = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
                let mut logs = log_budget::LogBudget::new(10, Duration::from_secs(60));
                tokio::spawn(async move {
                    loop {
                        let c = tokio::select! {
                            _ = shutdown.cancelled() => return,
                            c = transport.accept_tcp() => c,
                        };
                        let (tcp, peer) = match c {
                            Ok(c) => c,
                            Err(e) => {
                                // Bind or accept failed: the link reports it and backs off.
                                if tx.send(Err(e)).await.is_err() {
                                    return;
                                }
                                continue;
                            }
                        };
                        if !admission.admits(peer, &mut logs) {
                            // Dropping the socket closes it.
                            continue;
                        }
                        let Ok(permit) = permits.clone().try_acquire_owned() else {
                            warn!(%peer, "too many PBX connections in their TLS handshake; refused");
                            continue;
                        };
                        let (tx, tls) = (tx.clone(), transport.tls_acceptor());
                        tokio::spawn(async move {
                            let r = transport::accept_handshake(tls, tcp, peer.to_string(), limit)
                                .await;
                            drop(permit);
                            let _ = tx.send(r).await;
                        });
                    }
                });
                Connections::Accept(rx)
            }
            dial => Connections::Dial(dial, limit),
        }
    }

    fn accepting(&self) -> bool {
        matches!(self, Connections::Accept(_))
    }

    /// The next connection (or failed attempt); `None` once the acceptor has stopped.
    async fn next(&mut self) -> Option<Result<Connected, TransportError>> {
        match self {
            Connections::Dial(t, limit) => Some(t.connect(*limit).await),
            // Cancel-safe: a connection not taken now stays queued.
            Connections::Accept(rx) => rx.recv().await,
        }
    }
}

/// How waiting for a candidate ended.
enum Waited {
    Opened(Box<Connection>),
    Shutdown,
    /// None was left, or none opened.
    Nothing,
}

/// Waits for the first candidate to open (refusing commands meanwhile), or for all to fail.
async fn await_candidate(
    candidates: &mut Candidates,
    shutdown: &CancellationToken,
    commands: &mut mpsc::Receiver<LinkRequest>,
) -> Waited {
    while !candidates.is_empty() {
        tokio::select! {
            _ = shutdown.cancelled() => return Waited::Shutdown,
            c = candidates.next_opened() => return c.map_or(Waited::Nothing, |c| Waited::Opened(Box::new(c))),
            Some(req) = commands.recv() => {
                let _ = req.reply.send(Err(CommandError::LinkDown));
            }
        }
    }
    Waited::Nothing
}

/// Sleeps, refusing commands meanwhile. Returns false on shutdown.
async fn wait(
    shutdown: &CancellationToken,
    commands: &mut mpsc::Receiver<LinkRequest>,
    d: Duration,
) -> bool {
    let sleep = tokio::time::sleep(d);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = &mut sleep => return true,
            Some(req) = commands.recv() => {
                let _ = req.reply.send(Err(CommandError::LinkDown));
            }
        }
    }
}

struct End {
    label: &'static str,
    detail: String,
    replaced_by: Option<Connection>,
}

/// A PBX connection with its session and framer: fresh, or already opened by [`open`].
struct Connection {
    stream: Stream,
    peer: String,
    /// When the PBX's certificate expires (seconds since the Unix epoch), if it presented one.
    peer_cert_expiry: Option<i64>,
    session: Session,
    deframer: Deframer,
}

impl Connection {
    fn new(cfg: &LinkConfig, c: Connected, counters: &Arc<LinkCounters>) -> Self {
        Connection {
            stream: c.stream,
            peer: c.peer,
            peer_cert_expiry: c.peer_cert_expiry,
            session: Session::new(cfg.session.clone(), Instant::now())
                .with_counters(counters.clone()),
            deframer: Deframer::new(cfg.max_frame_bytes),
        }
    }
}

/// Accepted connections being opened at once while the link is up (accept mode).
const MAX_CANDIDATES: usize = 4;

/// Connections accepted while a link is up, each opening its session in a task of its own
/// ([`open`]). They outlive the connection they would replace: a PBX that dials again and then
/// drops its old connection (or whose old one resets) keeps the new one.
struct Candidates {
    name: Text,
    set: tokio::task::JoinSet<Result<Connection, (String, String)>>,
    /// Oldest first, to make room for a newer one when all slots are taken.
    order: VecDeque<tokio::task::AbortHandle>,
    /// The opening may wait for an unanswered SystemRegister after the handshake.
    limit: Duration,
}

impl Candidates {
    fn new(cfg: &LinkConfig) -> Candidates {
        Candidates {
            name: cfg.session.pbx.clone(),
            set: tokio::task::JoinSet::new(),
            order: VecDeque::new(),
            limit: cfg.session.handshake_timeout + cfg.session.request_timeout,
        }
    }

    fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Starts opening `c`. With every slot taken, the oldest gives way: connections that say
    /// nothing hold a slot until their time is up, and must not lock out the PBX dialing again.
    fn add(&mut self, c: Connection, counters: &Arc<LinkCounters>) {
        self.order.retain(|h| !h.is_finished());
        if self.order.len() >= MAX_CANDIDATES
            && let Some(oldest) = self.order.pop_front()
        {
            oldest.abort();
            self.no_session("none within the slots: the oldest connection still opening gave way to a newer one");
        }
        let h = self.set.spawn(open(c, self.limit, counters.clone()));
        self.order.push_back(h);
    }

    fn no_session(&self, reason: &str) {
        metrics::counter!("ctigate_link_connect_failures_total", "link" => self.name.to_string(), "protocol" => "csta-xml", "kind" => "no_session").increment(1);
        warn!(link = %self.name, %reason, "PBX connection did not open a CSTA session");
    }

    /// The next connection whose session opened; `None` once none is left. Failures are counted
    /// on the way. Cancel-safe (nothing is taken from the set without being handled).
    async fn next_opened(&mut self) -> Option<Connection> {
        while let Some(r) = self.set.join_next().await {
            match r {
                Ok(Ok(c)) => return Some(c),
                Ok(Err((from, reason))) => self.no_session(&format!("{from}: {reason}")),
                // Gave way to a newer one (counted then).
                Err(e) if e.is_cancelled() => {}
                Err(e) => warn!(link = %self.name, error = %e, "opening a PBX connection failed"),
            }
        }
        None
    }
}

/// Opens the CSTA session on a connection accepted while another is live, so that only a
/// connection that completes the dialect's opening replaces it: a port scan, a probe or a peer
/// that speaks something else costs the live session nothing. The session is returned open,
/// with its first outputs (`Ready`, the first MonitorStarts) not yet carried out.
async fn open(
    mut c: Connection,
    limit: Duration,
    counters: Arc<LinkCounters>,
) -> Result<Connection, (String, String)> {
    let work = async {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            for out in c.session.drain().collect::<Vec<_>>() {
                match out {
                    Output::Send(f) => {
                        c.stream
                            .write_all(&f)
                            .await
                            .map_err(|e| format!("write failed: {e}"))?;
                        counters.tx_bytes(f.len() as u64);
                    }
                    Output::Close(reason) => return Err(reason),
                    // Nothing is monitored on it yet: no event, device or command output.
                    _ => {}
                }
            }
            c.stream
                .flush()
                .await
                .map_err(|e| format!("write failed: {e}"))?;
            if c.deframer.buffer_mut().capacity() - c.deframer.buffer_mut().len() < 4096 {
                c.deframer.buffer_mut().reserve(16 * 1024);
            }
            tokio::select! {
                r = c.stream.read_buf(c.deframer.buffer_mut()) => match r {
                    Ok(0) => return Err("closed before opening a session".to_string()),
                    Ok(n) => {
                        c.deframer.after_read();
                        counters.rx_bytes(n as u64);
                        let (now, ts) = (Instant::now(), now_ms());
                        loop {
                            match c.deframer.next_frame() {
                                Ok(Some(f)) => {
                                    counters.rx_frame();
                                    c.session.on_frame(&f, now, ts);
                                }
                                Ok(None) => break,
                                Err(e) => return Err(format!("framing error: {e}")),
                            }
                        }
                    }
                    Err(e) => return Err(format!("read failed: {e}")),
                },
                _ = tick.tick() => c.session.on_tick(Instant::now()),
            }
            if c.session.is_ready() {
                return Ok(());
            }
        }
    };
    match tokio::time::timeout(limit, work).await {
        Ok(Ok(())) => Ok(c),
        Ok(Err(reason)) => Err((c.peer, reason)),
        Err(_) => Err((
            c.peer,
            format!("no session within {} ms", limit.as_millis()),
        )),
    }
}

impl End {
    fn new(label: &'static str, detail: impl Into<String>) -> End {
        End {
            label,
            detail: detail.into(),
            replaced_by: None,
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    cfg: &LinkConfig,
    conn: Connection,
    conns: &mut Connections,
    candidates: &mut Candidates,
    hub: &Hub,
    shutdown: &CancellationToken,
    state: &LinkState,
    commands: &mut mpsc::Receiver<LinkRequest>,
    backoff: &mut Backoff,
    counters: &Arc<LinkCounters>,
) -> End {
    let name = cfg.session.pbx.clone();
    let Connection {
        stream,
        peer,
        peer_cert_expiry: _,
        mut session,
        mut deframer,
    } = conn;
    let (mut rd, wr) = tokio::io::split(stream);
    let (wtx, wrx) = mpsc::channel::<Bytes>(1024);
    let writer_done = CancellationToken::new();
    let mut writer = tokio::spawn(write_loop(
        wr,
        wrx,
        writer_done.clone(),
        name.clone(),
        counters.clone(),
        cfg.session.request_timeout,
    ));
    let mut framing_log = log_budget::LogBudget::default();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut accepting = conns.accepting();

    let mut end = apply(&mut session, hub, state, &wtx, backoff);
    while end.is_none() {
        if deframer.buffer_mut().capacity() - deframer.buffer_mut().len() < 4096 {
            deframer.buffer_mut().reserve(16 * 1024);
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => {
                session.on_shutdown(Instant::now());
                // Queued with waiting, not `try_send`: with many devices the MonitorStops alone
                // fill the queue, and StopApplicationSession goes last. Bounded by the writer's
                // grace below and by the gateway's stop deadline.
                let frames: Vec<Bytes> = session
                    .drain()
                    .filter_map(|o| match o {
                        Output::Send(f) => Some(f),
                        _ => None,
                    })
                    .collect();
                let send_all = async {
                    for f in frames {
                        if wtx.send(f).await.is_err() {
                            break;
                        }
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(2), send_all).await;
                end = Some(End::new("shutdown", "gateway shutting down"));
            }
            _ = writer_done.cancelled() => {
                end = Some(End::new("write_error", "write to PBX failed"));
            }
            r = rd.read_buf(deframer.buffer_mut()) => match r {
                Ok(0) => {
                    end = Some(if deframer.pending() > 0 {
                        End::new("eof_mid_frame", format!("PBX closed the connection mid-frame ({} bytes pending)", deframer.pending()))
                    } else {
                        End::new("eof", "PBX closed the connection")
                    });
                }
                Ok(n) => {
                    deframer.after_read();
                    counters.rx_bytes(n as u64);
                    let now = Instant::now();
                    let ts = now_ms();
                    loop {
                        match deframer.next_frame() {
                            Ok(Some(f)) => {
                                counters.rx_frame();
                                session.on_frame(&f, now, ts);
                            }
                            Ok(None) => break,
                            Err(e) => {
                                metrics::counter!("ctigate_link_decode_errors_total", "link" => name.to_string(), "protocol" => "csta-xml", "kind" => e.kind()).increment(1);
                                if let Some(suppressed) = framing_log.take(now) {
                                    warn!(link = %name, error = %e, suppressed, "framing error; stream resynchronised");
                                }
                            }
                        }
                    }
                    end = apply(&mut session, hub, state, &wtx, backoff);
                }
                Err(e) => end = Some(End::new("read_error", format!("read from PBX failed: {e}"))),
            },
            Some(req) = commands.recv() => {
                session.on_command(req, Instant::now());
                end = apply(&mut session, hub, state, &wtx, backoff);
            }
            _ = tick.tick() => {
                session.on_tick(Instant::now());
                end = apply(&mut session, hub, state, &wtx, backoff);
            }
            c = conns.next(), if accepting => match c {
                Some(Ok(c)) => {
                    info!(link = %name, peer = %c.peer, live = %peer, "another PBX connection; it replaces the live one once it opens a CSTA session");
                    candidates.add(Connection::new(cfg, c, counters), counters);
                }
                Some(Err(e)) => {
                    metrics::counter!("ctigate_link_connect_failures_total", "link" => name.to_string(), "protocol" => "csta-xml", "kind" => e.kind()).increment(1);
                    warn!(link = %name, error = %e, "PBX connection failed; the live one is kept");
                }
                None => accepting = false,
            },
            Some(c) = candidates.next_opened(), if !candidates.is_empty() => {
                let mut e = End::new("replaced", format!("PBX opened a new session from {}", c.peer));
                e.replaced_by = Some(c);
                end = Some(e);
            }
        }
    }
    let end = end.unwrap_or_else(|| End::new("eof", "closed"));
    session.on_disconnect(if end.label == "shutdown" {
        "shutdown"
    } else {
        "link_down"
    });
    let _ = apply(&mut session, hub, state, &wtx, backoff);
    drop(wtx);
    // Let queued writes (MonitorStop on shutdown) go out, briefly; then stop the writer, so that
    // the socket closes and nothing queued for this connection is sent late.
    if tokio::time::timeout(Duration::from_secs(1), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
    end
}

/// Carries out the session's outputs. Returns `Some` when the connection must end.
fn apply(
    session: &mut Session,
    hub: &Hub,
    state: &LinkState,
    wtx: &mpsc::Sender<Bytes>,
    backoff: &mut Backoff,
) -> Option<End> {
    let mut end = None;
    let monitored = session.monitored();
    for out in session.drain() {
        match out {
            Output::Send(frame) => {
                if wtx.try_send(frame).is_err() && end.is_none() {
                    end = Some(End::new(
                        "write_stalled",
                        "PBX is not reading: write queue full",
                    ));
                }
            }
            Output::Event(mut ev) => {
                hub.publish(&mut ev);
            }
            Output::Device(device, status) => {
                let mut failed = state.unmonitored.lock().unwrap_or_else(|p| p.into_inner());
                match &status {
                    DeviceStatus::Monitored => failed.remove(&device),
                    DeviceStatus::NotMonitored(reason) => {
                        failed.insert(device.clone(), reason.clone())
                    }
                };
                drop(failed);
                hub.set_device_status(&state.name, &device, status);
            }
            Output::Snapshot { device, call_ids } => {
                hub.resync(&state.name, &device, &call_ids);
            }
            Output::Ready => {
                state.up.store(true, Ordering::Relaxed);
                state.sessions.fetch_add(1, Ordering::Relaxed);
                metrics::gauge!("ctigate_link_up", "link" => state.name.to_string(), "protocol" => state.protocol).set(1.0);
                backoff.reset();
            }
            Output::Reply(tx, result) => {
                let _ = tx.send(result);
            }
            Output::Close(reason) => {
                if end.is_none() {
                    end = Some(End::new("protocol", reason));
                }
            }
        }
    }
    state.monitored.store(monitored, Ordering::Relaxed);
    end
}

/// Writes queued frames, a batch at a time. A batch that the PBX does not take within `deadline`
/// (it stopped reading while still sending) ends the connection like a write error, instead of
/// leaving requests to time out one by one on a link that looks up.
async fn write_loop(
    mut wr: tokio::io::WriteHalf<Stream>,
    mut rx: mpsc::Receiver<Bytes>,
    failed: CancellationToken,
    name: Text,
    counters: Arc<LinkCounters>,
    deadline: Duration,
) {
    while let Some(frame) = rx.recv().await {
        let mut n = frame.len();
        let batch = async {
            let mut r = wr.write_all(&frame).await;
            while r.is_ok() {
                match rx.try_recv() {
                    Ok(f) => {
                        n += f.len();
                        r = wr.write_all(&f).await;
                    }
                    Err(_) => break,
                }
            }
            if r.is_ok() {
                r = wr.flush().await;
            }
            r
        };
        let r = match tokio::time::timeout(deadline, batch).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("the PBX took no data for {} ms", deadline.as_millis()),
            )),
        };
        if let Err(e) = r {
            warn!(link = %name, error = %e, "write to PBX failed");
            failed.cancel();
            return;
        }
        counters.tx_bytes(n as u64);
    }
    let _ = wr.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::framing::{InvokeId, encode_frame};
    use crate::codec::xml;
    use crate::config::{Config, Dialect};
    use bytes::BytesMut;
    use tokio::io::DuplexStream;

    fn link_cfg(dialect: Dialect, devices: usize) -> LinkConfig {
        LinkConfig {
            session: Arc::new(SessionConfig {
                pbx: Text::from("p"),
                dialect,
                namespace: String::new(),
                devices: (0..devices)
                    .map(|i| Text::from(format!("{}", 10_000 + i)))
                    .collect(),
                plan: Default::default(),
                monitor_rate: 1000,
                keepalive: Duration::from_secs(3600),
                request_timeout: Duration::from_secs(5),
                handshake_timeout: Duration::from_secs(10),
                monitor_retry: Duration::from_secs(60),
                app_session: (dialect == Dialect::Ecma354).then(|| csta_xml::session::AppSession {
                    application_id: "ctigate".into(),
                    user: "u".into(),
                    password: "p".into(),
                    protocol_version: String::new(),
                    duration_secs: 3600,
                }),
            }),
            max_frame_bytes: 65_535,
            reconnect_min: Duration::from_millis(10),
            reconnect_max: Duration::from_millis(10),
            accept_from: Vec::new(),
        }
    }

    fn hub() -> Hub {
        let cfg = Config::parse(
            r#"
[api]
listen = "127.0.0.1:0"
cert = "/dev/null"
key = "/dev/null"

[[pbx]]
name = "p"
protocol = "csta-xml"
mode = "dial"
address = "127.0.0.1:1"
tls = false
"#,
        )
        .unwrap();
        Hub::new(&cfg)
    }

    fn frame(id: u16, body: &str) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode_frame(InvokeId(id), body.as_bytes(), &mut out).unwrap();
        out.to_vec()
    }

    fn link_state(cfg: &LinkConfig) -> Arc<LinkState> {
        Arc::new(LinkState::new(
            cfg.session.pbx.clone(),
            cfg.session.devices.len(),
        ))
    }

    /// Runs `serve` on our end of `ours` until it ends.
    async fn serve_on(
        cfg: &LinkConfig,
        ours: DuplexStream,
        shutdown: &CancellationToken,
        state: &LinkState,
    ) -> End {
        let counters = Arc::new(LinkCounters::new(cfg.session.pbx.clone()));
        let conn = Connection::new(
            cfg,
            Connected {
                stream: Box::new(ours),
                peer: "test".into(),
                peer_cert_expiry: None,
            },
            &counters,
        );
        // Never used: dial mode takes no new connection while serving.
        let mut conns = Connections::Dial(
            Transport::dial("127.0.0.1:1".into(), None),
            Duration::from_secs(1),
        );
        let (_tx, mut commands) = mpsc::channel(1);
        let mut backoff = Backoff::new(cfg.reconnect_min, cfg.reconnect_max);
        serve(
            cfg,
            conn,
            &mut conns,
            &mut Candidates::new(cfg),
            &hub(),
            shutdown,
            state,
            &mut commands,
            &mut backoff,
            &counters,
        )
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn a_pbx_that_stops_reading_ends_the_connection_at_the_write_deadline() {
        let cfg = link_cfg(Dialect::Osv, 1);
        // 64 bytes of room towards a PBX that never reads (and never closes).
        let (ours, mut pbx) = tokio::io::duplex(64);
        tokio::spawn(async move {
            let open = frame(
                1,
                "<SystemStatus><systemStatus>enabled</systemStatus></SystemStatus>",
            );
            pbx.write_all(&open).await.unwrap();
            // Holds its end open, reading nothing.
            std::future::pending::<()>().await;
            drop(pbx);
        });
        let shutdown = CancellationToken::new();
        let state = link_state(&cfg);
        let end = tokio::time::timeout(
            Duration::from_secs(600),
            serve_on(&cfg, ours, &shutdown, &state),
        )
        .await
        .expect("the connection outlived the write deadline");
        assert_eq!(
            (end.label, end.detail.as_str()),
            ("write_error", "write to PBX failed")
        );
    }

    /// A fake switch on the far end of `pbx`: answers the ECMA-354 session, MonitorStarts and
    /// snapshots; returns the roots of everything received once the gateway closes.
    async fn fake_switch(pbx: DuplexStream, monitored: Arc<AtomicUsize>) -> Vec<String> {
        let (mut rd, mut wr) = tokio::io::split(pbx);
        let mut d = Deframer::new(65_535);
        let mut roots = vec![];
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return roots,
                Ok(n) => n,
            };
            d.push(&buf[..n]);
            while let Ok(Some(f)) = d.next_frame() {
                let doc = xml::decode(&f.body).unwrap();
                let root = doc.name.to_string();
                let answer = match root.as_str() {
                    "StartApplicationSession" => "<StartApplicationSessionPosResponse><sessionID>s1</sessionID><actualSessionDuration>3600</actualSessionDuration></StartApplicationSessionPosResponse>".to_string(),
                    "MonitorStart" => {
                        monitored.fetch_add(1, Ordering::Relaxed);
                        format!("<MonitorStartResponse><monitorCrossRefID>m{}</monitorCrossRefID></MonitorStartResponse>", f.invoke_id.0)
                    }
                    "SnapshotDevice" => "<SnapshotDeviceResponse><crossRefIDorSnapshotData><snapshotData/></crossRefIDorSnapshotData></SnapshotDeviceResponse>".to_string(),
                    _ => String::new(),
                };
                roots.push(root);
                if !answer.is_empty() && wr.write_all(&frame(f.invoke_id.0, &answer)).await.is_err()
                {
                    return roots;
                }
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stop_sends_every_monitor_stop_then_ends_the_application_session() {
        // More monitors than the write queue holds (1,024): the stop must wait for room.
        let n = 1500;
        let cfg = link_cfg(Dialect::Ecma354, n);
        let (ours, pbx) = tokio::io::duplex(1 << 20);
        let monitored = Arc::new(AtomicUsize::new(0));
        let switch = tokio::spawn(fake_switch(pbx, monitored.clone()));
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let state = link_state(&cfg);
        let st = state.clone();
        tokio::spawn(async move {
            // Stop once the gateway has taken every MonitorStart answer in.
            while st.monitored.load(Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            stop.cancel();
        });
        let end = tokio::time::timeout(
            Duration::from_secs(60),
            serve_on(&cfg, ours, &shutdown, &state),
        )
        .await
        .expect("serve ended");
        assert_eq!(end.label, "shutdown");
        let roots = tokio::time::timeout(Duration::from_secs(10), switch)
            .await
            .expect("the link closed its end")
            .unwrap();
        let stops = roots.iter().filter(|r| *r == "MonitorStop").count();
        assert_eq!(stops, n);
        assert_eq!(
            roots.last().map(String::as_str),
            Some("StopApplicationSession")
        );
    }

    #[test]
    fn backoff_grows_with_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(1000));
        let d: Vec<_> = (0..6).map(|_| b.next_delay()).collect();
        assert!(d[0] >= Duration::from_millis(50) && d[0] <= Duration::from_millis(100));
        assert!(d[3] >= Duration::from_millis(400) && d[3] <= Duration::from_millis(800));
        assert!(d[5] <= Duration::from_millis(1000) && d[5] >= Duration::from_millis(500));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
