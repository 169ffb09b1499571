//! The connector-facing server: WebSocket over TLS at `/v1/stream`, JSON text messages.
//!
//! A connection: TLS handshake, WebSocket upgrade, `hello` (token, Login IDs, resume), `welcome`,
//! then the hub's messages flow out through the connection's bounded queue while commands flow in.
//! A connection whose queue overflows, or whose writes stall, is closed with reason `slow_consumer`.

pub mod auth;
pub mod proto;

use crate::hub::{CommandError, Hub, KickReason, SubscriberRx};
use crate::model::{LoginId, StatusLevel};
use crate::tls::Reloadable;
use auth::{AuthLimiter, Credentials};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use proto::{ClientMessage, Rejected};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Path of the stream endpoint.
pub const STREAM_PATH: &str = "/v1/stream";
/// Server string in `welcome`.
pub const SERVER: &str = concat!("ctigate/", env!("CARGO_PKG_VERSION"));

/// WebSocket close codes the gateway uses.
pub mod close {
    /// Bad or missing `hello`, malformed messages.
    pub const PROTOCOL: u16 = 4000;
    /// Authentication failed.
    pub const UNAUTHORIZED: u16 = 4001;
    /// No Login ID could be served.
    pub const FORBIDDEN: u16 = 4003;
    /// Too many connections, or too many failed authentications.
    pub const LIMIT: u16 = 4029;
    /// Slow consumer.
    pub const SLOW_CONSUMER: u16 = 4008;
}

/// Commands one connector connection may have awaiting their results; more are answered `busy`.
pub const MAX_COMMANDS_IN_FLIGHT: usize = 64;

/// Settings of the API server.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    /// Per-connection queue bound, messages.
    pub queue_messages: usize,
    /// Per-connection queue bound, bytes.
    pub queue_bytes: usize,
    /// Write deadline.
    pub write_timeout: Duration,
    /// Time to complete TLS, upgrade and hello.
    pub hello_timeout: Duration,
    /// Command deadline.
    pub command_timeout: Duration,
    /// Concurrent connections.
    pub max_connections: usize,
    /// Kernel send buffer per connection (0: autotuning).
    pub socket_send_buffer: usize,
}

impl ApiSettings {
    /// From `[api]`.
    pub fn from_config(c: &crate::config::ApiConfig) -> ApiSettings {
        ApiSettings {
            queue_messages: c.queue_messages,
            queue_bytes: c.queue_bytes,
            write_timeout: Duration::from_millis(c.write_timeout_ms),
            hello_timeout: Duration::from_millis(c.hello_timeout_ms),
            command_timeout: Duration::from_millis(c.command_timeout_ms),
            max_connections: c.max_connections,
            socket_send_buffer: c.socket_send_buffer_bytes,
        }
    }
}

/// Shared state of the API server.
pub struct Api {
    hub: Hub,
    credentials: Credentials,
    limiter: AuthLimiter,
    settings: ApiSettings,
    tls: Reloadable<rustls::ServerConfig>,
    conn_limit: Arc<Semaphore>,
    /// Set once the listener is bound.
    pub ready: AtomicBool,
    /// When the listener's certificate expires, seconds since the Unix epoch; 0 when unknown
    /// (in-memory certificates).
    pub cert_expiry: std::sync::atomic::AtomicI64,
}

impl Api {
    /// A server for `hub` with these credentials and TLS config.
    pub fn new(
        hub: Hub,
        credentials: Credentials,
        auth_failures_per_minute: u32,
        settings: ApiSettings,
        tls: Arc<rustls::ServerConfig>,
    ) -> Arc<Api> {
        Arc::new(Api {
            hub,
            credentials,
            limiter: AuthLimiter::new(auth_failures_per_minute),
            conn_limit: Arc::new(Semaphore::new(settings.max_connections)),
            settings,
            tls: Reloadable::new(tls),
            ready: AtomicBool::new(false),
            cert_expiry: std::sync::atomic::AtomicI64::new(0),
        })
    }

    /// The listener's TLS config, to replace it (SIGHUP).
    pub fn tls(&self) -> &Reloadable<rustls::ServerConfig> {
        &self.tls
    }

    /// Accepts connections until `shutdown`.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, shutdown: CancellationToken) {
        self.ready.store(true, Ordering::Release);
        loop {
            let (tcp, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = listener.accept() => match r {
                    Ok(c) => c,
                    Err(e) => {
                        warn!(error = %e, "API accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(permit) = self.conn_limit.clone().try_acquire_owned() else {
                metrics::counter!("ctigate_api_connections_total", "outcome" => "over_limit")
                    .increment(1);
                warn!(%peer, "API connection refused: max_connections reached");
                continue;
            };
            let api = self.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                api.connection(tcp, peer, shutdown).await;
                drop(permit);
            });
        }
        self.ready.store(false, Ordering::Release);
    }

    async fn connection(
        self: Arc<Self>,
        tcp: TcpStream,
        peer: SocketAddr,
        shutdown: CancellationToken,
    ) {
        let _ = tcp.set_nodelay(true);
        if self.settings.socket_send_buffer > 0 {
            let _ =
                socket2::SockRef::from(&tcp).set_send_buffer_size(self.settings.socket_send_buffer);
        }
        let deadline = Instant::now() + self.settings.hello_timeout;
        let tls = match tokio::time::timeout_at(
            deadline.into(),
            TlsAcceptor::from(self.tls.current()).accept(tcp),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                metrics::counter!("ctigate_api_tls_handshake_failures_total").increment(1);
                metrics::counter!("ctigate_api_connections_total", "outcome" => "tls_failed")
                    .increment(1);
                info!(%peer, error = %e, "API TLS handshake failed");
                return;
            }
            Err(_) => {
                metrics::counter!("ctigate_api_connections_total", "outcome" => "timeout")
                    .increment(1);
                debug!(%peer, "API TLS handshake timed out");
                return;
            }
        };
        let ws_cfg = WebSocketConfig::default()
            .max_message_size(Some(64 * 1024))
            .max_frame_size(Some(64 * 1024));
        #[allow(clippy::result_large_err)] // the signature is tungstenite's
        let check_path = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
            if req.uri().path() == STREAM_PATH {
                Ok(resp)
            } else {
                let mut e =
                    ErrorResponse::new(Some(format!("not found; the stream is at {STREAM_PATH}")));
                *e.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::NOT_FOUND;
                Err(e)
            }
        };
        let ws = match tokio::time::timeout_at(
            deadline.into(),
            tokio_tungstenite::accept_hdr_async_with_config(tls, check_path, Some(ws_cfg)),
        )
        .await
        {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => {
                metrics::counter!("ctigate_api_connections_total", "outcome" => "upgrade_failed")
                    .increment(1);
                info!(%peer, error = %e, "WebSocket upgrade failed");
                return;
            }
            Err(_) => {
                metrics::counter!("ctigate_api_connections_total", "outcome" => "timeout")
                    .increment(1);
                return;
            }
        };
        self.session(ws, peer, deadline, shutdown).await;
    }

    async fn session<S>(
        self: Arc<Self>,
        mut ws: WebSocketStream<S>,
        peer: SocketAddr,
        deadline: Instant,
        shutdown: CancellationToken,
    ) where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        // 1. hello
        let hello = match tokio::time::timeout_at(deadline.into(), next_text(&mut ws)).await {
            Ok(Some(t)) => t,
            Ok(None) => return,
            Err(_) => {
                metrics::counter!("ctigate_api_connections_total", "outcome" => "timeout")
                    .increment(1);
                reject(
                    &mut ws,
                    close::PROTOCOL,
                    "hello_timeout",
                    "no hello in time",
                )
                .await;
                return;
            }
        };
        let (token, login_ids, resume, client) = match serde_json::from_str::<ClientMessage>(&hello)
        {
            Ok(ClientMessage::Hello {
                token,
                login_ids,
                resume,
                client,
            }) => (token, login_ids, resume, client),
            Ok(_) => {
                metrics::counter!("ctigate_api_connections_total", "outcome" => "protocol")
                    .increment(1);
                reject(
                    &mut ws,
                    close::PROTOCOL,
                    "hello_required",
                    "the first message must be hello",
                )
                .await;
                return;
            }
            Err(e) => {
                metrics::counter!("ctigate_api_connections_total", "outcome" => "protocol")
                    .increment(1);
                let msg = format!("malformed hello: {e}");
                reject(&mut ws, close::PROTOCOL, "bad_message", &msg).await;
                return;
            }
        };
        // 2. authenticate
        let now = Instant::now();
        if self.limiter.is_blocked(peer.ip(), now) {
            metrics::counter!("ctigate_api_auth_failures_total", "reason" => "rate_limited")
                .increment(1);
            metrics::counter!("ctigate_api_connections_total", "outcome" => "rate_limited")
                .increment(1);
            warn!(%peer, "API authentication refused: too many failures from this address");
            reject(
                &mut ws,
                close::LIMIT,
                "rate_limited",
                "too many failed authentications; try again later",
            )
            .await;
            return;
        }
        let Some(cred) = self.credentials.authenticate(&token) else {
            self.limiter.failed(peer.ip(), now);
            metrics::counter!("ctigate_api_auth_failures_total", "reason" => "bad_token")
                .increment(1);
            metrics::counter!("ctigate_api_connections_total", "outcome" => "unauthorized")
                .increment(1);
            warn!(%peer, "API authentication failed: unknown token");
            reject(
                &mut ws,
                close::UNAUTHORIZED,
                "unauthorized",
                "unknown token",
            )
            .await;
            return;
        };
        let Some(slot) = cred.acquire() else {
            metrics::counter!("ctigate_api_connections_total", "outcome" => "too_many_connections")
                .increment(1);
            warn!(%peer, connector = %cred.name, "connector at its max_connections");
            reject(
                &mut ws,
                close::LIMIT,
                "too_many_connections",
                "this credential has reached its max_connections",
            )
            .await;
            return;
        };
        let connector = cred.name.clone();
        // 3. Login IDs
        let mut accepted: Vec<LoginId> = Vec::new();
        let mut resume_of: HashMap<LoginId, u64> = HashMap::new();
        let mut rejected: Vec<Rejected> = Vec::new();
        for name in &login_ids {
            match self.hub.registry().resolve(name) {
                None => rejected.push(Rejected {
                    login_id: name.clone(),
                    code: "unknown_login_id",
                }),
                Some(id) if !cred.may_serve(&id) => rejected.push(Rejected {
                    login_id: name.clone(),
                    code: "forbidden_login_id",
                }),
                Some(id) => {
                    if let Some(seq) = resume.get(name).or_else(|| resume.get(id.as_str())) {
                        resume_of.insert(id.clone(), *seq);
                    }
                    if !accepted.contains(&id) {
                        accepted.push(id);
                    }
                }
            }
        }
        for r in &rejected {
            metrics::counter!("ctigate_api_login_rejections_total", "connector" => connector.to_string(), "reason" => r.code).increment(1);
            warn!(%peer, connector = %connector, code = r.code, login = %redact(&r.login_id), "Login ID refused");
        }
        if accepted.is_empty() {
            metrics::counter!("ctigate_api_connections_total", "outcome" => "no_login_ids")
                .increment(1);
            for r in &rejected {
                let (status, err) = red_and_error_pair(r);
                let _ = ws.send(text(err)).await;
                let _ = ws.send(text(status)).await;
            }
            reject(
                &mut ws,
                close::FORBIDDEN,
                "no_login_ids",
                "none of the requested Login IDs may be served by this token",
            )
            .await;
            return;
        }
        // 4. welcome, refusals, then subscribe (statuses, snapshots, replay)
        let sub = self.hub.new_subscriber(
            connector.clone(),
            self.settings.queue_messages,
            self.settings.queue_bytes,
        );
        // Subscribe before `welcome` goes out: whatever happens from here on is queued behind it,
        // so a connector acting on `welcome` cannot miss an event.
        for id in &accepted {
            self.hub.subscribe(&sub.sub, id, resume_of.get(id).copied());
        }
        let sub_id = sub.sub.id;
        let unsubscribe = |hub: &Hub| {
            for id in &accepted {
                hub.unsubscribe(sub_id, id);
            }
        };
        let welcome = crate::hub::message::to_bytes(&proto::Welcome {
            kind: "welcome",
            session_id: sub.sub.id,
            connector: &connector,
            epoch: self.hub.epoch(),
            login_ids: &accepted,
            rejected: &rejected,
            server: SERVER,
        });
        if ws.send(text(welcome)).await.is_err() {
            unsubscribe(&self.hub);
            return;
        }
        for r in &rejected {
            let (status, err) = red_and_error_pair(r);
            if ws.send(text(err)).await.is_err() || ws.send(text(status)).await.is_err() {
                unsubscribe(&self.hub);
                return;
            }
        }
        metrics::counter!("ctigate_api_connections_total", "outcome" => "accepted").increment(1);
        metrics::gauge!("ctigate_api_sessions", "connector" => connector.to_string())
            .increment(1.0);
        info!(%peer, connector = %connector, session = sub.sub.id, logins = accepted.len(), refused = rejected.len(), client = client.as_deref().unwrap_or(""), "connector session started");

        // 5. run: writer task + reader loop
        let (sink, mut stream) = ws.split();
        let (direct_tx, direct_rx) = mpsc::channel::<Bytes>(64);
        let done = CancellationToken::new();
        let sub_state = sub.sub.clone();
        let writer = tokio::spawn(write_loop(
            sink,
            sub,
            direct_rx,
            self.settings.write_timeout,
            done.clone(),
            shutdown.clone(),
            connector.clone(),
        ));
        let mut bad = 0u32;
        let in_flight = Arc::new(AtomicUsize::new(0));
        // Resolved on the first message (as the macro created the series), then reused.
        let mut received: Option<metrics::Counter> = None;
        loop {
            let msg = tokio::select! {
                _ = done.cancelled() => break,
                m = stream.next() => m,
            };
            let Some(Ok(msg)) = msg else { break };
            let t = match msg {
                Message::Text(t) => t,
                Message::Close(_) => break,
                Message::Binary(_) => {
                    bad += 1;
                    let _ = direct_tx
                        .send(proto::error(
                            "bad_message",
                            "binary messages are not used; send JSON text",
                            None,
                        ))
                        .await;
                    if bad > 10 {
                        break;
                    }
                    continue;
                }
                _ => continue,
            };
            received
                .get_or_insert_with(|| metrics::counter!("ctigate_api_messages_total", "connector" => connector.to_string(), "direction" => "in"))
                .increment(1);
            match serde_json::from_str::<ClientMessage>(&t) {
                Ok(m) => {
                    bad = 0;
                    self.handle(m, &accepted, &connector, &direct_tx, &in_flight)
                        .await;
                }
                Err(e) => {
                    bad += 1;
                    metrics::counter!("ctigate_api_bad_messages_total", "connector" => connector.to_string()).increment(1);
                    debug!(connector = %connector, error = %e, "malformed connector message");
                    let _ = direct_tx
                        .send(proto::error(
                            "bad_message",
                            &format!("malformed message: {e}"),
                            None,
                        ))
                        .await;
                    if bad > 10 {
                        break;
                    }
                }
            }
        }
        done.cancel();
        let reason = writer.await.ok().flatten();
        unsubscribe(&self.hub);
        metrics::gauge!("ctigate_api_sessions", "connector" => connector.to_string())
            .decrement(1.0);
        info!(%peer, connector = %connector, session = sub_state.id, reason = reason.map_or("closed", |r| r.as_str()), "connector session ended");
        drop(slot);
    }

    async fn handle(
        &self,
        m: ClientMessage,
        accepted: &[LoginId],
        connector: &Arc<str>,
        direct: &mpsc::Sender<Bytes>,
        in_flight: &Arc<AtomicUsize>,
    ) {
        let (id, login, command) = match m {
            ClientMessage::Ping { id } => {
                let _ = direct.send(proto::pong(id.as_ref())).await;
                return;
            }
            ClientMessage::Hello { .. } => {
                let _ = direct
                    .send(proto::error(
                        "bad_message",
                        "hello was already received",
                        None,
                    ))
                    .await;
                return;
            }
            other => match other.into_command() {
                Some(c) => c,
                None => return,
            },
        };
        let name = command.name();
        let resolved = self
            .hub
            .registry()
            .resolve(&login)
            .filter(|l| accepted.contains(l));
        // One connector cannot queue unbounded work on the PBX link that every Login ID shares.
        let outcome_rx = if in_flight.load(Ordering::Relaxed) >= MAX_COMMANDS_IN_FLIGHT {
            Err(CommandError::Busy)
        } else {
            match resolved {
                None => Err(CommandError::Forbidden),
                Some(l) => command
                    .validate()
                    .and_then(|()| self.hub.command(&l, command)),
            }
        };
        let direct = direct.clone();
        let connector = connector.clone();
        let timeout = self.settings.command_timeout;
        // Counted here, on the read loop, so the check above sees every command before it.
        in_flight.fetch_add(1, Ordering::Relaxed);
        let in_flight = in_flight.clone();
        // Await the PBX's answer off the read loop, so commands do not serialize behind each other.
        tokio::spawn(async move {
            let outcome = match outcome_rx {
                Err(e) => Err(e),
                Ok(rx) => match tokio::time::timeout(timeout, rx).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(_)) => Err(CommandError::LinkDown),
                    Err(_) => Err(CommandError::Timeout),
                },
            };
            let label = match &outcome {
                Ok(_) => "ok",
                Err(e) => e.code(),
            };
            metrics::counter!("ctigate_api_commands_total", "connector" => connector.to_string(), "command" => name, "outcome" => label).increment(1);
            in_flight.fetch_sub(1, Ordering::Relaxed);
            let _ = direct
                .send(proto::result(id.as_ref(), name, &login, &outcome))
                .await;
        });
    }
}

fn redact(s: &str) -> String {
    let head: String = s.chars().take(4).collect();
    format!("{head}…({})", s.len())
}

fn red_and_error_pair(r: &Rejected) -> (Bytes, Bytes) {
    let msg = match r.code {
        "unknown_login_id" => format!(
            "Login ID {:?} is not configured on this gateway",
            r.login_id
        ),
        _ => format!("this token may not serve Login ID {:?}", r.login_id),
    };
    (
        crate::hub::message::status(&r.login_id, StatusLevel::Red, r.code, None, None),
        proto::error(r.code, &msg, Some(&r.login_id)),
    )
}

fn text(b: Bytes) -> Message {
    // Every message we build is serde_json output, hence UTF-8.
    match Utf8Bytes::try_from(b) {
        Ok(t) => Message::Text(t),
        Err(_) => Message::Text(Utf8Bytes::from_static("{}")),
    }
}

async fn next_text<S>(ws: &mut WebSocketStream<S>) -> Option<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => return Some(t.to_string()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

async fn reject<S>(ws: &mut WebSocketStream<S>, code: u16, error_code: &str, message: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let _ = ws.send(text(proto::error(error_code, message, None))).await;
    let _ = ws
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: Utf8Bytes::from(error_code),
        })))
        .await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

async fn write_loop<S>(
    mut sink: futures_util::stream::SplitSink<WebSocketStream<S>, Message>,
    mut rx: SubscriberRx,
    mut direct: mpsc::Receiver<Bytes>,
    write_timeout: Duration,
    done: CancellationToken,
    shutdown: CancellationToken,
    connector: Arc<str>,
) -> Option<KickReason>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    let latency =
        metrics::histogram!("ctigate_event_latency_seconds", "connector" => connector.to_string());
    let sent = metrics::counter!("ctigate_api_messages_total", "connector" => connector.to_string(), "direction" => "out");
    let reason = loop {
        let first = tokio::select! {
            biased;
            _ = done.cancelled() => break None,
            _ = shutdown.cancelled() => break Some(KickReason::Shutdown),
            d = direct.recv() => match d {
                Some(b) => (b, None),
                None => break None,
            },
            m = rx.recv() => match m {
                Ok(o) => (o.json, o.ingress),
                Err(r) => break Some(r),
            },
        };
        // Feed what is ready, flush once: fewer TLS records and syscalls under load.
        let write = async {
            let mut batch = vec![first];
            while batch.len() < 64 {
                match rx.try_recv() {
                    Some(o) => batch.push((o.json, o.ingress)),
                    None => break,
                }
            }
            let n = batch.len();
            let mut ingress = Vec::with_capacity(n);
            for (json, ing) in batch {
                sink.feed(text(json)).await?;
                ingress.push(ing);
            }
            sink.flush().await?;
            let now = Instant::now();
            for i in ingress.into_iter().flatten() {
                latency.record(now.duration_since(i).as_secs_f64());
            }
            sent.increment(n as u64);
            Ok::<(), tokio_tungstenite::tungstenite::Error>(())
        };
        match tokio::time::timeout(write_timeout, write).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => break None,
            Err(_) => {
                rx.sub.kick(KickReason::SlowConsumer);
                break Some(KickReason::SlowConsumer);
            }
        }
    };
    if let Some(r) = reason {
        let code = match r {
            KickReason::SlowConsumer => close::SLOW_CONSUMER,
            KickReason::Shutdown => 1001,
        };
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: Utf8Bytes::from_static(r.as_str()),
        };
        if r == KickReason::SlowConsumer {
            warn!(connector = %connector, session = rx.sub.id, "connector disconnected: slow_consumer");
        }
        let _ = tokio::time::timeout(write_timeout, async {
            let _ = sink
                .send(text(proto::error(
                    r.as_str(),
                    match r {
                        KickReason::SlowConsumer => {
                            "the connection fell behind; reconnect and resume from the last seq"
                        }
                        KickReason::Shutdown => {
                            "the gateway is shutting down; reconnect and resume"
                        }
                    },
                    None,
                )))
                .await;
            let _ = sink.send(Message::Close(Some(frame))).await;
        })
        .await;
    }
    done.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
    reason
}
