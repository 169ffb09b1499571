//! A CSTA XML PBX simulator.
//!
//! It listens (TCP or TLS), speaks the 8-byte framing, opens the session per dialect (OSV style: it
//! sends `SystemStatus` first; or it waits for `RequestSystemStatus`), answers SystemRegister,
//! MonitorStart/Stop, SnapshotDevice (at once, or in `SnapshotDeviceData` segments),
//! RequestSystemStatus, MakeCall, AnswerCall, ClearConnection,
//! HoldCall and RetrieveCall, and plays call scenarios on its devices: inbound answered, inbound
//! missed, outbound answered, outbound unanswered, hold and retrieve, blind transfer. It writes
//! in a default namespace, in none, or with a prefix on every element, and its device ids plain,
//! OSV style, or as `sip:`/`tel:` URIs ([`DeviceStyle`]).
//!
//! It reads requests with quick-xml, not with the gateway's own decoder, so the two are checked
//! against each other. Tests steer it through [`Simulator`] (play a scenario, inject raw bytes, cut
//! the connection mid-frame).

use crate::codec::framing::{Deframer, InvokeId, encode_frame};
use crate::codec::xml::encode::escape_into;
use crate::config::Dialect;
use bytes::{Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Pace of the call scenarios.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Between the set-up events of a call.
    pub step: Duration,
    /// Ringing time before answer (or before giving up, for missed calls).
    pub ring: Duration,
    /// Talk time.
    pub talk: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            step: Duration::from_millis(100),
            ring: Duration::from_millis(1500),
            talk: Duration::from_millis(3000),
        }
    }
}

impl Timing {
    /// Very short timings for tests.
    pub fn fast() -> Timing {
        Timing {
            step: Duration::from_millis(2),
            ring: Duration::from_millis(10),
            talk: Duration::from_millis(20),
        }
    }
}

/// Simulator settings.
#[derive(Clone)]
pub struct SimConfig {
    /// Address to listen on (`127.0.0.1:0` for an ephemeral port).
    pub listen: String,
    /// Device numbers.
    pub devices: Vec<String>,
    /// New calls per second over all devices; 0 plays nothing on its own.
    pub rate: f64,
    /// How the session opens.
    pub dialect: Dialect,
    /// Namespace URI of what the simulator sends.
    pub namespace: String,
    /// Write every element with this prefix (`<csta:DeliveredEvent xmlns:csta="…">`) instead of
    /// declaring a default namespace, as some switches do.
    pub namespace_prefix: Option<String>,
    /// Answer `SnapshotDevice` with a `serviceCrossRefID` only and send the calls afterwards in
    /// `SnapshotDeviceData` segments, one call per segment (an empty last segment ends them).
    pub segmented_snapshots: bool,
    /// TLS server config; plain TCP when `None`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Scenario pace.
    pub timing: Timing,
    /// Seed for scenario choices.
    pub seed: u64,
    /// Dial the gateway at this address instead of listening (a PBX or relay that connects out,
    /// for links in `mode = "accept"`); reconnects when the connection drops.
    pub dial: Option<SimDial>,
    /// ECMA-354 dialect: the user name and password `StartApplicationSession` must carry, and the
    /// longest session duration granted, seconds. A session whose timer is not reset in time is
    /// dropped with the connection, as AE Services does.
    pub app_session: Option<SimAppSession>,
    /// How the simulator writes its own devices in events (the gateway configures them plain).
    pub device_style: DeviceStyle,
}

/// The form in which a PBX writes device ids in events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceStyle {
    /// `4001`.
    #[default]
    Plain,
    /// OpenScape Voice: `N<4001>;displayNumber=4001`.
    Osv,
    /// SIP phones (uaCSTA): `sip:4001@pbx.example`.
    SipUri,
    /// `tel:` URIs with a phone context (Microsoft RCC): `tel:4001;phone-context=pbx.example`.
    TelUri,
}

impl DeviceStyle {
    fn render(self, d: &str) -> String {
        match self {
            DeviceStyle::Plain => d.to_string(),
            DeviceStyle::Osv => format!("N<{d}>;displayNumber={d}"),
            DeviceStyle::SipUri => format!("sip:{d}@pbx.example"),
            DeviceStyle::TelUri => format!("tel:{d};phone-context=pbx.example"),
        }
    }
}

/// The simulator's ECMA-354 application-session settings.
#[derive(Clone, Debug)]
pub struct SimAppSession {
    /// Expected user name.
    pub user: String,
    /// Expected password.
    pub password: String,
    /// Longest duration granted, seconds.
    pub max_duration_secs: u32,
}

/// Where a dialing simulator connects, and with what TLS.
#[derive(Clone)]
pub struct SimDial {
    /// Gateway address.
    pub addr: String,
    /// TLS client config and the name to verify; plain TCP when `None`.
    pub tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls::pki_types::ServerName<'static>,
    )>,
}

impl SimConfig {
    /// `n` devices numbered from `first`.
    pub fn numbered_devices(first: u32, n: u32) -> Vec<String> {
        (0..n).map(|i| (first + i).to_string()).collect()
    }
}

/// Call scenarios.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// External caller, answered, caller hangs up.
    InboundAnswered,
    /// External caller gives up while ringing.
    InboundMissed,
    /// Device calls out, answered, device hangs up.
    OutboundAnswered,
    /// Device calls out, nobody answers, device gives up.
    OutboundUnanswered,
    /// Inbound answered, held, retrieved, cleared.
    HoldRetrieve,
    /// Inbound answered, then blind-transferred to another device.
    BlindTransfer,
    /// A caller dials the hotline ([`HOTLINE`]); its hunt group delivers the call with what the
    /// caller keyed into the IVR as user data; the device answers, enters an account code
    /// (CallInformation) and hangs up.
    Hotline,
}

impl Scenario {
    /// All scenarios.
    pub const ALL: [Scenario; 7] = [
        Scenario::InboundAnswered,
        Scenario::InboundMissed,
        Scenario::OutboundAnswered,
        Scenario::OutboundUnanswered,
        Scenario::HoldRetrieve,
        Scenario::BlindTransfer,
        Scenario::Hotline,
    ];
}

/// The hotline number of [`Scenario::Hotline`], as the switch writes it.
pub const HOTLINE: &str = "N<+4989700100>;displayNumber=100;noa=nk";
/// What the caller of [`Scenario::Hotline`] keyed into the IVR (`userData`, hex of
/// `CUSTOMER=4711`).
pub const HOTLINE_USER_DATA: &str = "435553544F4D45523D34373131";
/// The account code the device enters in [`Scenario::Hotline`].
pub const HOTLINE_ACCOUNT: &str = "SUPPORT-17";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CallState {
    Initiated,
    Alerting,
    Connected,
    Hold,
}

#[derive(Debug, Clone)]
struct SimCall {
    id: String,
    state: CallState,
}

enum Wire {
    Frame(Bytes),
    CutMidFrame,
}

struct Conn {
    id: u64,
    tx: mpsc::UnboundedSender<Wire>,
    /// Cancelled to leave the connection open but dead, as a rebooted PBX leaves it.
    abandon: CancellationToken,
    /// device → monitorCrossRefID
    monitors: HashMap<String, String>,
    /// ECMA-354: the session id and when the session expires unless its timer is reset.
    app_session: Option<(String, tokio::time::Instant, Duration)>,
}

struct Shared {
    cfg: SimConfig,
    conn: Mutex<Option<Conn>>,
    calls: Mutex<HashMap<String, Vec<SimCall>>>,
    next_call: AtomicU64,
    next_xref: AtomicU64,
    next_conn: AtomicU64,
    events: AtomicU64,
    connections: AtomicU64,
    paused: AtomicBool,
    unresponsive: AtomicBool,
    /// Connection ids received in the styled (non-plain) form the simulator's events used.
    styled_ids: AtomicU64,
    /// CSTA requests not in the simulator's own namespace.
    foreign_ns: AtomicU64,
    /// How many requests of each root name were received.
    requests: Mutex<HashMap<String, usize>>,
    /// Halves of abandoned connections, kept open and unused.
    parked: Mutex<Vec<Box<dyn std::any::Any + Send>>>,
    rng: Mutex<StdRng>,
    stop: CancellationToken,
}

/// A running simulator.
#[derive(Clone)]
pub struct Simulator {
    sh: Arc<Shared>,
    /// The bound address.
    pub addr: SocketAddr,
}

impl Simulator {
    /// Binds and starts the simulator.
    pub async fn start(cfg: SimConfig) -> std::io::Result<Simulator> {
        let listener = match cfg.dial {
            None => Some(TcpListener::bind(&cfg.listen).await?),
            Some(_) => None,
        };
        let addr = match &listener {
            Some(l) => l.local_addr()?,
            None => SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        let sh = Arc::new(Shared {
            rng: Mutex::new(StdRng::seed_from_u64(cfg.seed)),
            cfg,
            conn: Mutex::new(None),
            calls: Mutex::new(HashMap::new()),
            next_call: AtomicU64::new(1),
            next_xref: AtomicU64::new(1000),
            next_conn: AtomicU64::new(1),
            events: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            paused: AtomicBool::new(false),
            unresponsive: AtomicBool::new(false),
            styled_ids: AtomicU64::new(0),
            foreign_ns: AtomicU64::new(0),
            requests: Mutex::new(HashMap::new()),
            parked: Mutex::new(Vec::new()),
            stop: CancellationToken::new(),
        });
        match listener {
            Some(l) => {
                tokio::spawn(accept_loop(sh.clone(), l));
            }
            None => {
                tokio::spawn(dial_loop(sh.clone()));
            }
        }
        if sh.cfg.rate > 0.0 {
            tokio::spawn(generate(sh.clone()));
        }
        info!(%addr, devices = sh.cfg.devices.len(), rate = sh.cfg.rate, "CSTA XML simulator listening");
        Ok(Simulator { sh, addr })
    }

    /// Plays a scenario on `device` now.
    pub fn play(&self, device: &str, scenario: Scenario) {
        tokio::spawn(play(self.sh.clone(), device.to_string(), scenario, None));
    }

    /// Pauses or resumes the generated traffic (explicit `play` still works).
    pub fn set_paused(&self, paused: bool) {
        self.sh.paused.store(paused, Ordering::Relaxed);
    }

    /// Stops (or resumes) answering requests, like a switch that hangs.
    pub fn set_unresponsive(&self, on: bool) {
        self.sh.unresponsive.store(on, Ordering::Relaxed);
    }

    /// Sends event `name` for `device` on its monitor, with `inner` after the
    /// `monitorCrossRefID` (events the scenarios do not play, such as vendor or button events).
    pub fn emit_event(&self, device: &str, name: &str, inner: &str) {
        emit(&self.sh, device, name, inner);
    }

    /// Sends the switch's `SystemStatus` with `status` on the current connection, as a switch
    /// does when its CSTA service changes state (`messagesLost`, `disabled`, …).
    pub fn send_system_status(&self, status: &str) -> bool {
        let body = doc(
            &self.sh.cfg.namespace,
            self.sh.prefix(),
            "SystemStatus",
            &format!("<systemStatus>{status}</systemStatus>"),
        );
        self.inject_raw(frame(InvokeId(9000), &body))
    }

    /// Stops using the current connection without closing it, as a PBX that restarts leaves
    /// its old connection half-open; a dialing simulator then dials again.
    pub fn abandon_connection(&self) -> bool {
        match lock(&self.sh.conn).take() {
            Some(c) => {
                c.abandon.cancel();
                true
            }
            None => false,
        }
    }

    /// Writes raw bytes on the current connection (malformed-frame tests).
    pub fn inject_raw(&self, bytes: impl Into<Bytes>) -> bool {
        match &*lock(&self.sh.conn) {
            Some(c) => c.tx.send(Wire::Frame(bytes.into())).is_ok(),
            None => false,
        }
    }

    /// Sends the first half of an event frame, then drops the TCP connection.
    pub fn cut_mid_frame(&self) -> bool {
        match lock(&self.sh.conn).take() {
            Some(c) => c.tx.send(Wire::CutMidFrame).is_ok(),
            None => false,
        }
    }

    /// Devices monitored on the current connection.
    pub fn monitored(&self) -> usize {
        lock(&self.sh.conn).as_ref().map_or(0, |c| c.monitors.len())
    }

    /// True when a gateway is connected.
    pub fn connected(&self) -> bool {
        lock(&self.sh.conn).is_some()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.sh.connections.load(Ordering::Relaxed)
    }

    /// Requests whose connection id came back in the styled form our events used (so the
    /// gateway echoed the PBX's own ids rather than its configured device names).
    pub fn styled_device_ids_received(&self) -> u64 {
        self.sh.styled_ids.load(Ordering::Relaxed)
    }

    /// CSTA requests received in a namespace other than the simulator's own (ECMA-354 session
    /// requests, which have their own, excepted).
    pub fn requests_in_other_namespaces(&self) -> u64 {
        self.sh.foreign_ns.load(Ordering::Relaxed)
    }

    /// How many requests named `root` were received so far.
    pub fn requests_received(&self, root: &str) -> usize {
        lock(&self.sh.requests).get(root).copied().unwrap_or(0)
    }

    /// Events sent so far.
    pub fn events_sent(&self) -> u64 {
        self.sh.events.load(Ordering::Relaxed)
    }

    /// Calls up now at `device`.
    pub fn calls_at(&self, device: &str) -> usize {
        lock(&self.sh.calls).get(device).map_or(0, Vec::len)
    }

    /// Forgets every call without sending an event, as a PBX restart loses them.
    pub fn forget_calls(&self) {
        lock(&self.sh.calls).clear();
    }

    /// Stops accepting, generating and serving.
    pub fn stop(&self) {
        self.sh.stop.cancel();
        lock(&self.sh.conn).take();
    }
}

impl Shared {
    fn prefix(&self) -> Option<&str> {
        self.cfg.namespace_prefix.as_deref()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The simulator's critical sections only touch plain maps; a poisoned lock still holds them.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

async fn accept_loop(sh: Arc<Shared>, listener: TcpListener) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = sh.stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => { warn!(error = %e, "simulator accept failed"); continue; }
            },
        };
        let _ = tcp.set_nodelay(true);
        let sh = sh.clone();
        tokio::spawn(async move {
            match &sh.cfg.tls {
                None => serve(sh.clone(), tcp, peer).await,
                Some(cfg) => match TlsAcceptor::from(cfg.clone()).accept(tcp).await {
                    Ok(s) => serve(sh.clone(), s, peer).await,
                    Err(e) => info!(%peer, error = %e, "simulator TLS handshake failed"),
                },
            }
        });
    }
}

async fn dial_loop(sh: Arc<Shared>) {
    let Some(dial) = sh.cfg.dial.clone() else {
        return;
    };
    loop {
        let tcp = tokio::select! {
            _ = sh.stop.cancelled() => return,
            r = tokio::net::TcpStream::connect(&dial.addr) => r,
        };
        match tcp {
            Ok(tcp) => {
                let _ = tcp.set_nodelay(true);
                let peer = tcp
                    .peer_addr()
                    .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 0)));
                match &dial.tls {
                    None => serve(sh.clone(), tcp, peer).await,
                    Some((cfg, name)) => {
                        match tokio_rustls::TlsConnector::from(cfg.clone())
                            .connect(name.clone(), tcp)
                            .await
                        {
                            Ok(s) => serve(sh.clone(), s, peer).await,
                            Err(e) => info!(error = %e, "simulator TLS handshake failed"),
                        }
                    }
                }
            }
            Err(e) => debug!(error = %e, addr = %dial.addr, "simulator: gateway not reachable yet"),
        }
        tokio::select! {
            _ = sh.stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

async fn serve<S>(sh: Arc<Shared>, stream: S, peer: SocketAddr)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let id = sh.next_conn.fetch_add(1, Ordering::Relaxed);
    sh.connections.fetch_add(1, Ordering::Relaxed);
    info!(%peer, conn = id, "simulator: gateway connected");
    let (mut rd, mut wr) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::unbounded_channel::<Wire>();
    // A new connection replaces the old one (like a PBX accepting a new CTI session).
    let abandon = CancellationToken::new();
    *lock(&sh.conn) = Some(Conn {
        id,
        tx: tx.clone(),
        abandon: abandon.clone(),
        monitors: HashMap::new(),
        app_session: None,
    });
    let done = CancellationToken::new();
    let wdone = done.clone();
    let (wsh, wabandon) = (sh.clone(), abandon.clone());
    let writer = tokio::spawn(async move {
        while let Some(w) = rx.recv().await {
            match w {
                Wire::Frame(b) => {
                    if wr.write_all(&b).await.is_err() {
                        break;
                    }
                    if rx.is_empty() && wr.flush().await.is_err() {
                        break;
                    }
                }
                Wire::CutMidFrame => {
                    let frame = event_frame(
                        "",
                        None,
                        "DeliveredEvent",
                        "0",
                        "<connection><callID>cut</callID><deviceID>0</deviceID></connection>",
                    );
                    let _ = wr.write_all(&frame[..frame.len() / 2]).await;
                    let _ = wr.flush().await;
                    break;
                }
            }
        }
        if wabandon.is_cancelled() {
            lock(&wsh.parked).push(Box::new(wr));
        } else {
            let _ = wr.shutdown().await;
        }
        wdone.cancel();
    });
    if sh.cfg.dialect == Dialect::Osv {
        let body = doc(
            &sh.cfg.namespace,
            sh.prefix(),
            "SystemStatus",
            "<systemStatus>enabled</systemStatus>",
        );
        let _ = tx.send(Wire::Frame(frame(InvokeId(1), &body)));
    }
    let mut deframer = Deframer::new(65_535);
    let mut buf = vec![0u8; 16 * 1024];
    let mut expiry_check = tokio::time::interval(Duration::from_millis(100));
    loop {
        let n = tokio::select! {
            _ = done.cancelled() => break,
            _ = sh.stop.cancelled() => break,
            _ = abandon.cancelled() => break,
            _ = expiry_check.tick() => {
                let expired = lock(&sh.conn).as_ref().is_some_and(|c| {
                    c.id == id && c.app_session.as_ref().is_some_and(|(_, exp, _)| *exp <= tokio::time::Instant::now())
                });
                if expired {
                    info!(conn = id, "simulator: application session expired (timer not reset); closing");
                    break;
                }
                continue;
            }
            r = rd.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
        };
        deframer.push(&buf[..n]);
        loop {
            match deframer.next_frame() {
                Ok(Some(f)) => handle(&sh, id, &tx, f.invoke_id, &f.body),
                Ok(None) => break,
                Err(e) => warn!(error = %e, "simulator: bad frame from gateway"),
            }
        }
    }
    {
        let mut c = lock(&sh.conn);
        if c.as_ref().is_some_and(|c| c.id == id) {
            *c = None;
        }
    }
    drop(tx);
    let _ = writer.await;
    if abandon.is_cancelled() {
        lock(&sh.parked).push(Box::new(rd));
        info!(%peer, conn = id, "simulator: connection abandoned (left open)");
        return;
    }
    info!(%peer, conn = id, "simulator: gateway disconnected");
}

/// A request read with quick-xml: root local name and the text of every leaf, by local name
/// (first occurrence), plus `parent/leaf` keys for connection ids.
struct Req {
    root: String,
    /// The root's default namespace (`xmlns`), if it declares one.
    namespace: Option<String>,
    leaves: HashMap<String, String>,
}

impl Req {
    fn get(&self, k: &str) -> Option<&str> {
        self.leaves.get(k).map(String::as_str)
    }
}

fn parse_request(xml: &[u8]) -> Option<Req> {
    use quick_xml::events::Event;
    let s = std::str::from_utf8(xml).ok()?;
    let mut r = quick_xml::Reader::from_str(s);
    let mut stack: Vec<String> = Vec::new();
    let mut text = String::new();
    let mut root = None;
    let mut namespace = None;
    let mut leaves = HashMap::new();
    let default_ns = |e: &quick_xml::events::BytesStart<'_>| {
        e.try_get_attribute("xmlns")
            .ok()
            .flatten()
            .map(|a| a.value.into_owned())
    };
    loop {
        match r.read_event().ok()? {
            Event::Start(e) => {
                let name = e.local_name().as_ref().to_string();
                if root.is_none() {
                    root = Some(name.clone());
                    namespace = default_ns(&e);
                }
                stack.push(name);
                text.clear();
            }
            Event::Empty(e) => {
                let name = e.local_name().as_ref().to_string();
                if root.is_none() {
                    root = Some(name);
                    namespace = default_ns(&e);
                }
            }
            Event::Text(t) => text.push_str(&t.xml10_content()),
            Event::GeneralRef(g) => match g.resolve_char_ref().ok().flatten() {
                Some(c) => text.push(c),
                None => text.push_str(match &*g {
                    "lt" => "<",
                    "gt" => ">",
                    "amp" => "&",
                    "quot" => "\"",
                    "apos" => "'",
                    _ => "",
                }),
            },
            Event::End(_) => {
                let name = stack.pop()?;
                let t = text.trim().to_string();
                if !t.is_empty() {
                    if let Some(parent) = stack.last() {
                        leaves
                            .entry(format!("{parent}/{name}"))
                            .or_insert_with(|| t.clone());
                    }
                    leaves.entry(name).or_insert(t);
                }
                text.clear();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Some(Req {
        root: root?,
        namespace,
        leaves,
    })
}

fn handle(
    sh: &Arc<Shared>,
    conn_id: u64,
    tx: &mpsc::UnboundedSender<Wire>,
    invoke: InvokeId,
    body: &[u8],
) {
    if sh.unresponsive.load(Ordering::Relaxed) {
        return;
    }
    let ns = sh.cfg.namespace.clone();
    let reply = |root: &str, inner: &str| {
        let _ = tx.send(Wire::Frame(frame(
            invoke,
            &doc(&ns, sh.prefix(), root, inner),
        )));
    };
    let Some(mut req) = parse_request(body) else {
        warn!("simulator: undecodable request");
        reply("CSTAErrorCode", "<operation>generic</operation>");
        return;
    };
    // Connection ids come back in whatever form our events used; map them to our devices.
    for (k, v) in req.leaves.iter_mut() {
        if k.ends_with("deviceID") {
            let plain = crate::model::party::dialable(v);
            if let Some(d) = sh.cfg.devices.iter().find(|d| d.as_str() == plain) {
                if v != d {
                    sh.styled_ids.fetch_add(1, Ordering::Relaxed);
                }
                *v = d.clone();
            }
        }
    }
    debug!(request = %req.root, "simulator request");
    let session_request = matches!(
        req.root.as_str(),
        "StartApplicationSession" | "ResetApplicationSessionTimer" | "StopApplicationSession"
    );
    if !session_request && req.namespace.as_deref().unwrap_or("") != sh.cfg.namespace {
        sh.foreign_ns.fetch_add(1, Ordering::Relaxed);
        warn!(request = %req.root, namespace = ?req.namespace, expected = %sh.cfg.namespace, "simulator: request in another namespace");
    }
    *lock(&sh.requests).entry(req.root.clone()).or_default() += 1;
    let appl = |root: &str, inner: &str| {
        let _ = tx.send(Wire::Frame(frame(
            invoke,
            &doc(
                crate::codec::xml::encode::ns::APPL_SESSION,
                sh.prefix(),
                root,
                inner,
            ),
        )));
    };
    if let Some(app) = &sh.cfg.app_session {
        let in_session = lock(&sh.conn)
            .as_ref()
            .is_some_and(|c| c.id == conn_id && c.app_session.is_some());
        match req.root.as_str() {
            "StartApplicationSession" => {
                if req.get("userName") != Some(app.user.as_str())
                    || req.get("password") != Some(app.password.as_str())
                {
                    warn!("simulator: StartApplicationSession with wrong credentials");
                    appl(
                        "StartApplicationSessionNegResponse",
                        "<errorCode><definedError>invalidSessionLoginInfo</definedError></errorCode>",
                    );
                    return;
                }
                let requested: u32 = req
                    .get("requestedSessionDuration")
                    .and_then(|d| d.parse().ok())
                    .unwrap_or(app.max_duration_secs);
                let granted = requested.clamp(1, app.max_duration_secs);
                let sid = format!("SIM-SESSION-{conn_id}");
                let version = req
                    .get("protocolVersion")
                    .unwrap_or(&sh.cfg.namespace)
                    .to_string();
                let d = Duration::from_secs(u64::from(granted));
                if let Some(c) = lock(&sh.conn).as_mut().filter(|c| c.id == conn_id) {
                    c.app_session = Some((sid.clone(), tokio::time::Instant::now() + d, d));
                }
                appl(
                    "StartApplicationSessionPosResponse",
                    &format!(
                        "<sessionID>{sid}</sessionID><actualProtocolVersion>{}</actualProtocolVersion><actualSessionDuration>{granted}</actualSessionDuration>",
                        esc(&version)
                    ),
                );
                return;
            }
            "ResetApplicationSessionTimer" => {
                let mut guard = lock(&sh.conn);
                let session = guard
                    .as_mut()
                    .filter(|c| c.id == conn_id)
                    .and_then(|c| c.app_session.as_mut());
                match session {
                    Some((sid, exp, d)) if req.get("sessionID") == Some(sid.as_str()) => {
                        *exp = tokio::time::Instant::now() + *d;
                        let secs = d.as_secs();
                        drop(guard);
                        appl(
                            "ResetApplicationSessionTimerPosResponse",
                            &format!("<actualSessionDuration>{secs}</actualSessionDuration>"),
                        );
                    }
                    _ => {
                        drop(guard);
                        appl(
                            "ResetApplicationSessionTimerNegResponse",
                            "<errorCode><definedError>invalidSessionID</definedError></errorCode>",
                        );
                    }
                }
                return;
            }
            "StopApplicationSession" => {
                if let Some(c) = lock(&sh.conn).as_mut().filter(|c| c.id == conn_id) {
                    c.app_session = None;
                    c.monitors.clear();
                }
                appl("StopApplicationSessionPosResponse", "");
                return;
            }
            _ if !in_session => {
                reply(
                    "CSTAErrorCode",
                    "<operation>invalidApplicationSession</operation>",
                );
                return;
            }
            _ => {}
        }
    }
    match req.root.as_str() {
        "SystemStatusResponse" => {}
        "SystemRegister" => reply(
            "SystemRegisterResponse",
            "<sysStatRegisterID>1</sysStatRegisterID>",
        ),
        "RequestSystemStatus" => reply(
            "RequestSystemStatusResponse",
            "<systemStatus>normal</systemStatus>",
        ),
        "MonitorStart" => {
            let device = req.get("deviceObject").unwrap_or("").to_string();
            if !sh.cfg.devices.contains(&device) {
                reply("CSTAErrorCode", "<operation>invalidDeviceID</operation>");
                return;
            }
            let xref = sh.next_xref.fetch_add(1, Ordering::Relaxed).to_string();
            if let Some(c) = lock(&sh.conn).as_mut().filter(|c| c.id == conn_id) {
                c.monitors.insert(device, xref.clone());
            }
            reply(
                "MonitorStartResponse",
                &format!(
                    "<monitorCrossRefID>{xref}</monitorCrossRefID><monitorExistingCalls>true</monitorExistingCalls>"
                ),
            );
        }
        "MonitorStop" => {
            let xref = req.get("monitorCrossRefID").unwrap_or("").to_string();
            if let Some(c) = lock(&sh.conn).as_mut() {
                c.monitors.retain(|_, x| *x != xref);
            }
            reply("MonitorStopResponse", "");
        }
        "SnapshotDevice" => {
            let device = req.get("snapshotObject").unwrap_or("");
            let calls = lock(&sh.calls).get(device).cloned().unwrap_or_default();
            let infos: Vec<String> = calls
                .iter()
                .map(|c| {
                    let st = match c.state {
                        CallState::Initiated => "initiated",
                        CallState::Alerting => "alerting",
                        CallState::Connected => "connected",
                        CallState::Hold => "hold",
                    };
                    format!(
                        "<snapshotDeviceResponseInfo><connectionIdentifier><callID>{}</callID><deviceID>{}</deviceID></connectionIdentifier><localCallState><compoundCallState><localConnectionState>{st}</localConnectionState></compoundCallState></localCallState></snapshotDeviceResponseInfo>",
                        c.id,
                        esc(device)
                    )
                })
                .collect();
            if sh.cfg.segmented_snapshots {
                let xref = format!("snap-{}", sh.next_xref.fetch_add(1, Ordering::Relaxed));
                reply(
                    "SnapshotDeviceResponse",
                    &format!(
                        "<crossRefIDorSnapshotData><serviceCrossRefID>{xref}</serviceCrossRefID></crossRefIDorSnapshotData>"
                    ),
                );
                // One call per segment, then an empty last one: the gateway must wait for it.
                let last = infos.len() + 1;
                for (i, info) in infos.iter().map(String::as_str).chain([""]).enumerate() {
                    let body = doc(
                        &ns,
                        sh.prefix(),
                        "SnapshotDeviceData",
                        &format!(
                            "<serviceCrossRefID>{xref}</serviceCrossRefID><segmentID>{}</segmentID><lastSegment>{}</lastSegment><snapshotData>{info}</snapshotData>",
                            i + 1,
                            i + 1 == last
                        ),
                    );
                    let _ = tx.send(Wire::Frame(frame(InvokeId(1), &body)));
                }
            } else {
                reply(
                    "SnapshotDeviceResponse",
                    &format!(
                        "<crossRefIDorSnapshotData><snapshotData>{}</snapshotData></crossRefIDorSnapshotData>",
                        infos.concat()
                    ),
                );
            }
        }
        "MakeCall" => {
            let calling = req.get("callingDevice").unwrap_or("").to_string();
            let called = req.get("calledDirectoryNumber").unwrap_or("").to_string();
            if !sh.cfg.devices.contains(&calling) || called.is_empty() {
                reply(
                    "CSTAErrorCode",
                    "<operation>invalidCallingDevice</operation>",
                );
                return;
            }
            let call = new_call_id(sh);
            reply(
                "MakeCallResponse",
                &format!(
                    "<callingDevice><callID>{call}</callID><deviceID>{}</deviceID></callingDevice>",
                    esc(&calling)
                ),
            );
            tokio::spawn(outbound(
                sh.clone(),
                calling,
                called,
                Some(call),
                true,
                true,
            ));
        }
        "AnswerCall" | "ClearConnection" | "HoldCall" | "RetrieveCall" => {
            let (call, device) = (
                req.leaves
                    .iter()
                    .find(|(k, _)| k.ends_with("/callID"))
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default(),
                req.leaves
                    .iter()
                    .find(|(k, _)| k.ends_with("/deviceID"))
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default(),
            );
            let Some(state) = call_state(sh, &device, &call) else {
                reply("CSTAErrorCode", "<operation>invalidCallID</operation>");
                return;
            };
            let ok = match (req.root.as_str(), state) {
                ("AnswerCall", CallState::Alerting) => {
                    set_state(sh, &device, &call, CallState::Connected);
                    let body = at_device(
                        "establishedConnection",
                        "answeringDevice",
                        &call,
                        &device,
                        "connected",
                        "newCall",
                    );
                    emit(sh, &device, "EstablishedEvent", &body);
                    true
                }
                ("ClearConnection", _) => {
                    remove_call(sh, &device, &call);
                    emit(
                        sh,
                        &device,
                        "ConnectionClearedEvent",
                        &cleared(&call, &device),
                    );
                    true
                }
                ("HoldCall", CallState::Connected) => {
                    set_state(sh, &device, &call, CallState::Hold);
                    let body = at_device(
                        "heldConnection",
                        "holdingDevice",
                        &call,
                        &device,
                        "hold",
                        "newCall",
                    );
                    emit(sh, &device, "HeldEvent", &body);
                    true
                }
                ("RetrieveCall", CallState::Hold) => {
                    set_state(sh, &device, &call, CallState::Connected);
                    let body = at_device(
                        "retrievedConnection",
                        "retrievingDevice",
                        &call,
                        &device,
                        "connected",
                        "newCall",
                    );
                    emit(sh, &device, "RetrievedEvent", &body);
                    true
                }
                _ => false,
            };
            if ok {
                reply(&format!("{}Response", req.root), "");
            } else {
                reply(
                    "CSTAErrorCode",
                    "<stateIncompatibility>invalidObjectState</stateIncompatibility>",
                );
            }
        }
        "SingleStepTransferCall" | "DeflectCall" => {
            let single = req.root == "SingleStepTransferCall";
            let (parent, to_key) = if single {
                ("activeCall", "transferredTo")
            } else {
                ("callToBeDiverted", "newDestination")
            };
            let call = req
                .get(&format!("{parent}/callID"))
                .unwrap_or("")
                .to_string();
            let device = req
                .get(&format!("{parent}/deviceID"))
                .unwrap_or("")
                .to_string();
            let to = req.get(to_key).unwrap_or("").to_string();
            let wanted = if single {
                CallState::Connected
            } else {
                CallState::Alerting
            };
            if call_state(sh, &device, &call) != Some(wanted) || to.is_empty() {
                reply(
                    "CSTAErrorCode",
                    "<stateIncompatibility>invalidObjectState</stateIncompatibility>",
                );
                return;
            }
            remove_call(sh, &device, &call);
            let new_call = new_call_id(sh);
            if single {
                emit(
                    sh,
                    &device,
                    "TransferedEvent",
                    &format!(
                        "{}{}{}<transferredConnections><connectionListItem>{}</connectionListItem></transferredConnections><localConnectionInfo>null</localConnectionInfo><cause>singleStepTransfer</cause>",
                        conn("primaryOldCall", &call, &device),
                        dev("transferringDevice", &device),
                        dev("transferredToDevice", &to),
                        conn("newConnection", &new_call, &to)
                    ),
                );
                reply(
                    "SingleStepTransferCallResponse",
                    &conn("transferredCall", &new_call, &to),
                );
            } else {
                emit(
                    sh,
                    &device,
                    "DivertedEvent",
                    &format!(
                        "{}{}{}<localConnectionInfo>null</localConnectionInfo><cause>redirected</cause>",
                        conn("connection", &call, &device),
                        dev("divertingDevice", &device),
                        dev("newDestination", &to)
                    ),
                );
                reply("DeflectCallResponse", "");
            }
            if sh.cfg.devices.contains(&to) {
                let caller = external(sh);
                tokio::spawn(transferred_in(sh.clone(), to, new_call, caller, device));
            }
        }
        "ConsultationCall" => {
            let call = req.get("existingCall/callID").unwrap_or("").to_string();
            let device = req.get("existingCall/deviceID").unwrap_or("").to_string();
            let to = req.get("consultedDevice").unwrap_or("").to_string();
            if call_state(sh, &device, &call) != Some(CallState::Connected) || to.is_empty() {
                reply(
                    "CSTAErrorCode",
                    "<stateIncompatibility>invalidObjectState</stateIncompatibility>",
                );
                return;
            }
            set_state(sh, &device, &call, CallState::Hold);
            let body = at_device(
                "heldConnection",
                "holdingDevice",
                &call,
                &device,
                "hold",
                "consultation",
            );
            emit(sh, &device, "HeldEvent", &body);
            let new_call = new_call_id(sh);
            reply(
                "ConsultationCallResponse",
                &conn("initiatedCall", &new_call, &device),
            );
            tokio::spawn(consult(sh.clone(), device, to, new_call));
        }
        "TransferCall" | "ConferenceCall" => {
            let held = req.get("heldCall/callID").unwrap_or("").to_string();
            let active = req.get("activeCall/callID").unwrap_or("").to_string();
            let device = req.get("activeCall/deviceID").unwrap_or("").to_string();
            if call_state(sh, &device, &held) != Some(CallState::Hold)
                || call_state(sh, &device, &active) != Some(CallState::Connected)
            {
                reply(
                    "CSTAErrorCode",
                    "<stateIncompatibility>invalidObjectState</stateIncompatibility>",
                );
                return;
            }
            let other = external(sh);
            if req.root == "TransferCall" {
                remove_call(sh, &device, &held);
                remove_call(sh, &device, &active);
                emit(
                    sh,
                    &device,
                    "TransferedEvent",
                    &format!(
                        "{}{}{}{}<localConnectionInfo>null</localConnectionInfo><cause>transfer</cause>",
                        conn("primaryOldCall", &held, &device),
                        conn("secondaryOldCall", &active, &device),
                        dev("transferringDevice", &device),
                        dev("transferredToDevice", &other)
                    ),
                );
                reply(
                    "TransferCallResponse",
                    &conn("transferredCall", &held, &other),
                );
            } else {
                remove_call(sh, &device, &active);
                set_state(sh, &device, &held, CallState::Connected);
                emit(
                    sh,
                    &device,
                    "ConferencedEvent",
                    &format!(
                        "{}{}{}{}<conferenceConnections><connectionListItem>{}</connectionListItem></conferenceConnections><localConnectionInfo>connected</localConnectionInfo><cause>conference</cause>",
                        conn("primaryOldCall", &held, &device),
                        conn("secondaryOldCall", &active, &device),
                        dev("conferencingDevice", &device),
                        dev("addedParty", &other),
                        conn("newConnection", &held, &device)
                    ),
                );
                reply(
                    "ConferenceCallResponse",
                    &conn("conferenceCall", &held, &device),
                );
            }
        }
        "SetDoNotDisturb" => {
            let device = req.get("device").unwrap_or("").to_string();
            let on = req.get("doNotDisturbOn").unwrap_or("false").to_string();
            if !sh.cfg.devices.contains(&device) {
                reply("CSTAErrorCode", "<operation>invalidDeviceID</operation>");
                return;
            }
            emit(
                sh,
                &device,
                "DoNotDisturbEvent",
                &format!(
                    "{}<doNotDisturbOn>{}</doNotDisturbOn>",
                    dev("device", &device),
                    esc(&on)
                ),
            );
            reply("SetDoNotDisturbResponse", "");
        }
        "SetForwarding" => {
            let device = req.get("device").unwrap_or("").to_string();
            if !sh.cfg.devices.contains(&device) {
                reply("CSTAErrorCode", "<operation>invalidDeviceID</operation>");
                return;
            }
            let kind = req.get("forwardingType").unwrap_or("forwardImmediate");
            let on = req.get("activateForward").unwrap_or("false");
            let to = req
                .get("forwardDN")
                .map(|t| format!("<forwardTo>{}</forwardTo>", esc(t)))
                .unwrap_or_default();
            emit(
                sh,
                &device,
                "ForwardingEvent",
                &format!(
                    "{}<forwardingType>{}</forwardingType><forwardStatus>{}</forwardStatus>{to}",
                    dev("device", &device),
                    esc(kind),
                    esc(on)
                ),
            );
            reply("SetForwardingResponse", "");
        }
        "SetAgentState" => {
            let device = req.get("device").unwrap_or("").to_string();
            let event = match req.get("requestedAgentState") {
                Some("loggedOn") => "AgentLoggedOnEvent",
                Some("loggedOff") => "AgentLoggedOffEvent",
                Some("ready") => "AgentReadyEvent",
                Some("notReady") => "AgentNotReadyEvent",
                Some("workingAfterCall") => "AgentWorkingAfterCallEvent",
                _ => {
                    reply("CSTAErrorCode", "<operation>invalidAgentState</operation>");
                    return;
                }
            };
            if !sh.cfg.devices.contains(&device) {
                reply("CSTAErrorCode", "<operation>invalidDeviceID</operation>");
                return;
            }
            let agent = req
                .get("agentID")
                .map(|a| format!("<agentID>{}</agentID>", esc(a)))
                .unwrap_or_default();
            emit(
                sh,
                &device,
                event,
                &format!("{}{agent}", dev("agentDevice", &device)),
            );
            reply("SetAgentStateResponse", "");
        }
        other => {
            debug!(request = other, "simulator: unsupported request");
            reply(
                "CSTAErrorCode",
                "<operation>serviceNotSupported</operation>",
            );
        }
    }
}

fn esc(s: &str) -> String {
    let mut b = BytesMut::new();
    escape_into(s, &mut b);
    String::from_utf8_lossy(&b).into_owned()
}

fn doc(ns: &str, prefix: Option<&str>, root: &str, inner: &str) -> String {
    if let Some(p) = prefix.filter(|_| !ns.is_empty()) {
        // The simulator's own markup has no comments, CDATA or raw `<` in values: every `<`
        // opens a tag, and a `/` after it closes one.
        let mut prefixed = String::with_capacity(inner.len() * 3 / 2);
        for (i, piece) in inner.split('<').enumerate() {
            if i > 0 {
                prefixed.push('<');
                match piece.strip_prefix('/') {
                    Some(rest) => {
                        prefixed.push('/');
                        prefixed.push_str(p);
                        prefixed.push(':');
                        prefixed.push_str(rest);
                        continue;
                    }
                    None => {
                        prefixed.push_str(p);
                        prefixed.push(':');
                    }
                }
            }
            prefixed.push_str(piece);
        }
        return format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><{p}:{root} xmlns:{p}=\"{ns}\">{prefixed}</{p}:{root}>"
        );
    }
    if ns.is_empty() {
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><{root}>{inner}</{root}>")
    } else {
        format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?><{root} xmlns=\"{ns}\">{inner}</{root}>")
    }
}

fn frame(invoke: InvokeId, body: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(body.len() + 8);
    if encode_frame(invoke, body.as_bytes(), &mut out).is_err() {
        warn!("simulator: document too large for a frame");
    }
    out.freeze()
}

fn event_frame(ns: &str, prefix: Option<&str>, name: &str, xref: &str, inner: &str) -> Bytes {
    let body = doc(
        ns,
        prefix,
        name,
        &format!("<monitorCrossRefID>{xref}</monitorCrossRefID>{inner}"),
    );
    frame(crate::codec::framing::EVENT_INVOKE_ID, &body)
}

fn conn(tag: &str, call: &str, device: &str) -> String {
    format!(
        "<{tag}><callID>{call}</callID><deviceID>{}</deviceID></{tag}>",
        esc(device)
    )
}

fn dev(tag: &str, id: &str) -> String {
    format!(
        "<{tag}><deviceIdentifier>{}</deviceIdentifier></{tag}>",
        esc(id)
    )
}

/// An external number in OSV style (`N<+49…>;displayNumber=…`), exercising escaping and parsing.
fn external(sh: &Shared) -> String {
    let n: u32 = lock(&sh.rng).random_range(1_000_000..9_999_999);
    format!("N<+4930{n}>;displayNumber=030{n};noa=nk")
}

fn new_call_id(sh: &Shared) -> String {
    format!(
        "FF00010000000000{:016X}",
        sh.next_call.fetch_add(1, Ordering::Relaxed)
    )
}

/// Sends an event if `device` is monitored on the current connection.
/// Writes the simulator's own devices in the configured style inside device id elements.
fn styled(sh: &Shared, xml: &str) -> String {
    if sh.cfg.device_style == DeviceStyle::Plain {
        return xml.to_string();
    }
    let mut out = xml.to_string();
    for d in &sh.cfg.devices {
        let r = esc(&sh.cfg.device_style.render(d));
        for tag in ["deviceID", "deviceIdentifier"] {
            out = out.replace(
                &format!("<{tag}>{d}</{tag}>"),
                &format!("<{tag}>{r}</{tag}>"),
            );
        }
    }
    out
}

fn emit(sh: &Shared, device: &str, name: &str, inner: &str) {
    let inner = &styled(sh, inner);
    let guard = lock(&sh.conn);
    let Some(c) = guard.as_ref() else { return };
    let Some(xref) = c.monitors.get(device) else {
        return;
    };
    if c.tx
        .send(Wire::Frame(event_frame(
            &sh.cfg.namespace,
            sh.prefix(),
            name,
            xref,
            inner,
        )))
        .is_ok()
    {
        sh.events.fetch_add(1, Ordering::Relaxed);
    }
}

fn add_call(sh: &Shared, device: &str, id: &str, state: CallState) {
    lock(&sh.calls)
        .entry(device.to_string())
        .or_default()
        .push(SimCall {
            id: id.to_string(),
            state,
        });
}

fn call_state(sh: &Shared, device: &str, id: &str) -> Option<CallState> {
    lock(&sh.calls)
        .get(device)?
        .iter()
        .find(|c| c.id == id)
        .map(|c| c.state)
}

fn set_state(sh: &Shared, device: &str, id: &str, state: CallState) {
    if let Some(c) = lock(&sh.calls)
        .get_mut(device)
        .and_then(|v| v.iter_mut().find(|c| c.id == id))
    {
        c.state = state;
    }
}

fn remove_call(sh: &Shared, device: &str, id: &str) -> bool {
    match lock(&sh.calls).get_mut(device) {
        Some(v) => {
            let before = v.len();
            v.retain(|c| c.id != id);
            before != v.len()
        }
        None => false,
    }
}

async fn generate(sh: Arc<Shared>) {
    let period = Duration::from_secs_f64(1.0 / sh.cfg.rate.max(0.001));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut next_dev = 0usize;
    loop {
        tokio::select! {
            _ = sh.stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if sh.paused.load(Ordering::Relaxed) || sh.cfg.devices.is_empty() {
            continue;
        }
        // Round-robin over idle devices so every device (and so every Login ID) gets calls.
        let n = sh.cfg.devices.len();
        let idle = (0..n).map(|k| (next_dev + k) % n).find(|&i| {
            lock(&sh.calls)
                .get(&sh.cfg.devices[i])
                .is_none_or(Vec::is_empty)
        });
        let Some(i) = idle else { continue };
        next_dev = (i + 1) % n;
        let scenario = {
            let mut rng = lock(&sh.rng);
            Scenario::ALL[rng.random_range(0..Scenario::ALL.len())]
        };
        tokio::spawn(play(sh.clone(), sh.cfg.devices[i].clone(), scenario, None));
    }
}

async fn play(sh: Arc<Shared>, device: String, scenario: Scenario, to: Option<String>) {
    match scenario {
        Scenario::InboundAnswered => inbound(sh, device, None, true, false, None).await,
        Scenario::InboundMissed => inbound(sh, device, None, false, false, None).await,
        Scenario::HoldRetrieve => inbound(sh, device, None, true, true, None).await,
        Scenario::BlindTransfer => {
            let target = sh.cfg.devices.iter().find(|d| **d != device).cloned();
            inbound(sh, device, None, true, false, target).await
        }
        Scenario::OutboundAnswered => {
            let to = to.unwrap_or_else(|| external(&sh));
            outbound(sh, device, to, None, true, false).await
        }
        Scenario::OutboundUnanswered => {
            let to = to.unwrap_or_else(|| external(&sh));
            outbound(sh, device, to, None, false, false).await
        }
        Scenario::Hotline => hotline(sh, device).await,
    }
}

/// [`Scenario::Hotline`].
async fn hotline(sh: Arc<Shared>, device: String) {
    let t = sh.cfg.timing;
    let caller = external(&sh);
    let call = new_call_id(&sh);
    add_call(&sh, &device, &call, CallState::Alerting);
    let attached = format!(
        "{}{}<correlatorData><string>{:08X}</string></correlatorData><userData><string>{HOTLINE_USER_DATA}</string></userData>",
        dev("associatedCallingDevice", &caller),
        dev("associatedCalledDevice", HOTLINE),
        sh.next_call.load(Ordering::Relaxed),
    );
    emit(
        &sh,
        &device,
        "DeliveredEvent",
        &(delivered(
            &call,
            &device,
            &caller,
            &device,
            None,
            "alerting",
            "distributed",
        ) + &attached),
    );
    tokio::time::sleep(t.ring).await;
    if call_state(&sh, &device, &call) != Some(CallState::Alerting) {
        return;
    }
    set_state(&sh, &device, &call, CallState::Connected);
    emit(
        &sh,
        &device,
        "EstablishedEvent",
        &established(&call, &device, &caller, &device, "distributed"),
    );
    tokio::time::sleep(t.talk / 2).await;
    // The gateway may have cleared the call meanwhile (ClearConnection).
    if call_state(&sh, &device, &call) != Some(CallState::Connected) {
        return;
    }
    emit(
        &sh,
        &device,
        "CallInformationEvent",
        &format!(
            "{}{}<accountInfo>{}</accountInfo>",
            conn("connection", &call, &device),
            dev("device", &device),
            esc(HOTLINE_ACCOUNT)
        ),
    );
    tokio::time::sleep(t.talk / 2).await;
    hang_up(&sh, &device, &call, &device);
}

/// The call ends at `device` (`releasing` hung up), unless the gateway cleared it already.
fn hang_up(sh: &Shared, device: &str, call: &str, releasing: &str) {
    if remove_call(sh, device, call) {
        emit(
            sh,
            device,
            "ConnectionClearedEvent",
            &cleared(call, releasing),
        );
    }
}

// Event bodies (after `monitorCrossRefID`), one builder per event shape.

/// `DeliveredEvent`: `call` alerts at `alerting`; `state` is the monitored device's view.
fn delivered(
    call: &str,
    alerting: &str,
    calling: &str,
    called: &str,
    redirected: Option<&str>,
    state: &str,
    cause: &str,
) -> String {
    let redirect = match redirected {
        Some(r) => format!(
            "<lastRedirectionDevice><numberDialed>{}</numberDialed></lastRedirectionDevice>",
            esc(r)
        ),
        None => "<lastRedirectionDevice><notRequired/></lastRedirectionDevice>".into(),
    };
    format!(
        "{}{}{}{}{redirect}<localConnectionInfo>{state}</localConnectionInfo><cause>{cause}</cause>",
        conn("connection", call, alerting),
        dev("alertingDevice", alerting),
        dev("callingDevice", calling),
        dev("calledDevice", called)
    )
}

/// `EstablishedEvent`: `answering` answered `call`.
fn established(call: &str, answering: &str, calling: &str, called: &str, cause: &str) -> String {
    format!(
        "{}{}{}{}<localConnectionInfo>connected</localConnectionInfo><cause>{cause}</cause>",
        conn("establishedConnection", call, answering),
        dev("answeringDevice", answering),
        dev("callingDevice", calling),
        dev("calledDevice", called)
    )
}

/// `ConnectionClearedEvent`: `releasing` left `call`; the monitored device is out of it too.
fn cleared(call: &str, releasing: &str) -> String {
    format!(
        "{}{}<localConnectionInfo>null</localConnectionInfo><cause>normalClearing</cause>",
        conn("droppedConnection", call, releasing),
        dev("releasingDevice", releasing)
    )
}

/// The events whose body is one connection and one device of the monitored device (held,
/// retrieved, service initiated).
fn at_device(
    conn_tag: &str,
    dev_tag: &str,
    call: &str,
    device: &str,
    state: &str,
    cause: &str,
) -> String {
    format!(
        "{}{}<localConnectionInfo>{state}</localConnectionInfo><cause>{cause}</cause>",
        conn(conn_tag, call, device),
        dev(dev_tag, device)
    )
}

/// An external caller rings `device`.
async fn inbound(
    sh: Arc<Shared>,
    device: String,
    caller: Option<String>,
    answer: bool,
    hold: bool,
    transfer_to: Option<String>,
) {
    let t = sh.cfg.timing;
    let caller = caller.unwrap_or_else(|| external(&sh));
    let call = new_call_id(&sh);
    add_call(&sh, &device, &call, CallState::Alerting);
    emit(
        &sh,
        &device,
        "DeliveredEvent",
        &delivered(
            &call, &device, &caller, &device, None, "alerting", "newCall",
        ),
    );
    tokio::time::sleep(t.ring).await;
    // The gateway may have answered (AnswerCall) or cleared the call meanwhile.
    match call_state(&sh, &device, &call) {
        None => return,
        Some(CallState::Alerting) if !answer => {
            remove_call(&sh, &device, &call);
            emit(
                &sh,
                &device,
                "ConnectionClearedEvent",
                &cleared(&call, &caller),
            );
            return;
        }
        Some(CallState::Alerting) => {
            set_state(&sh, &device, &call, CallState::Connected);
            emit(
                &sh,
                &device,
                "EstablishedEvent",
                &established(&call, &device, &caller, &device, "newCall"),
            );
        }
        Some(_) => {}
    }
    tokio::time::sleep(t.talk / 2).await;
    if hold && call_state(&sh, &device, &call) == Some(CallState::Connected) {
        set_state(&sh, &device, &call, CallState::Hold);
        emit(
            &sh,
            &device,
            "HeldEvent",
            &at_device(
                "heldConnection",
                "holdingDevice",
                &call,
                &device,
                "hold",
                "newCall",
            ),
        );
        tokio::time::sleep(t.talk / 2).await;
        if call_state(&sh, &device, &call) == Some(CallState::Hold) {
            set_state(&sh, &device, &call, CallState::Connected);
            emit(
                &sh,
                &device,
                "RetrievedEvent",
                &at_device(
                    "retrievedConnection",
                    "retrievingDevice",
                    &call,
                    &device,
                    "connected",
                    "newCall",
                ),
            );
        }
    }
    if let Some(target) = transfer_to
        && call_state(&sh, &device, &call) == Some(CallState::Connected)
    {
        let new_call = new_call_id(&sh);
        remove_call(&sh, &device, &call);
        emit(
            &sh,
            &device,
            "TransferedEvent",
            &format!(
                "{}{}{}<transferredConnections><connectionListItem>{}{}</connectionListItem></transferredConnections><localConnectionInfo>null</localConnectionInfo><cause>singleStepTransfer</cause>",
                conn("primaryOldCall", &call, &device),
                dev("transferringDevice", &device),
                dev("transferredToDevice", &target),
                conn("newConnection", &new_call, &target),
                conn("oldConnection", &call, &caller)
            ),
        );
        tokio::time::sleep(t.step).await;
        Box::pin(transferred_in(sh, target, new_call, caller, device)).await;
        return;
    }
    tokio::time::sleep(t.talk / 2).await;
    hang_up(&sh, &device, &call, &caller);
}

/// The leg arriving at a transfer or deflection target.
async fn transferred_in(
    sh: Arc<Shared>,
    device: String,
    call: String,
    caller: String,
    from: String,
) {
    let t = sh.cfg.timing;
    add_call(&sh, &device, &call, CallState::Alerting);
    emit(
        &sh,
        &device,
        "DeliveredEvent",
        &delivered(
            &call,
            &device,
            &caller,
            &device,
            Some(&from),
            "alerting",
            "singleStepTransfer",
        ),
    );
    tokio::time::sleep(t.ring).await;
    if call_state(&sh, &device, &call) == Some(CallState::Alerting) {
        set_state(&sh, &device, &call, CallState::Connected);
        emit(
            &sh,
            &device,
            "EstablishedEvent",
            &established(&call, &device, &caller, &device, "singleStepTransfer"),
        );
    }
    tokio::time::sleep(t.talk).await;
    hang_up(&sh, &device, &call, &caller);
}

/// `device` starts a call to `to`: ServiceInitiated, then Originated. False if the call was
/// cleared meanwhile.
async fn originate(sh: &Shared, device: &str, to: &str, call: &str, cause: &str) -> bool {
    add_call(sh, device, call, CallState::Initiated);
    emit(
        sh,
        device,
        "ServiceInitiatedEvent",
        &at_device(
            "initiatedConnection",
            "initiatingDevice",
            call,
            device,
            "initiated",
            cause,
        ),
    );
    tokio::time::sleep(sh.cfg.timing.step).await;
    if call_state(sh, device, call).is_none() {
        return false;
    }
    set_state(sh, device, call, CallState::Connected);
    emit(
        sh,
        device,
        "OriginatedEvent",
        &format!(
            "{}{}{}<localConnectionInfo>connected</localConnectionInfo><cause>{cause}</cause>",
            conn("originatedConnection", call, device),
            dev("callingDevice", device),
            dev("calledDevice", to)
        ),
    );
    tokio::time::sleep(sh.cfg.timing.step).await;
    call_state(sh, device, call).is_some()
}

/// The consultation leg: `device` calls `to` while its first call is held; `to` answers at once.
async fn consult(sh: Arc<Shared>, device: String, to: String, call: String) {
    if originate(&sh, &device, &to, &call, "consultation").await {
        emit(
            &sh,
            &device,
            "EstablishedEvent",
            &established(&call, &to, &device, &to, "consultation"),
        );
    }
}

/// `device` calls `to`.
async fn outbound(
    sh: Arc<Shared>,
    device: String,
    to: String,
    call: Option<String>,
    answered: bool,
    make_call: bool,
) {
    let t = sh.cfg.timing;
    let call = call.unwrap_or_else(|| new_call_id(&sh));
    let cause = if make_call { "makeCall" } else { "newCall" };
    if !originate(&sh, &device, &to, &call, cause).await {
        return;
    }
    emit(
        &sh,
        &device,
        "DeliveredEvent",
        &delivered(&call, &to, &device, &to, None, "connected", "newCall"),
    );
    tokio::time::sleep(t.ring).await;
    if call_state(&sh, &device, &call).is_none() {
        return;
    }
    if answered {
        emit(
            &sh,
            &device,
            "EstablishedEvent",
            &established(&call, &to, &device, &to, "newCall"),
        );
        tokio::time::sleep(t.talk).await;
    }
    hang_up(&sh, &device, &call, &device);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::xml::{self, Message};

    #[test]
    fn event_frames_decode_with_the_gateway_decoder() {
        let f = event_frame(
            crate::codec::xml::encode::ns::ED4,
            None,
            "DeliveredEvent",
            "1001",
            &format!(
                "{}{}",
                conn("connection", "c1", "4001"),
                dev("callingDevice", "N<+4930123>;noa=nk")
            ),
        );
        let mut d = Deframer::new(65535);
        d.push(&f);
        let fr = d.next_frame().unwrap().unwrap();
        assert!(fr.invoke_id.is_event());
        let Message::Event(e) = xml::decode(&fr.body).unwrap().message else {
            panic!()
        };
        assert_eq!(e.cross_ref.as_deref(), Some("1001"));
        assert_eq!(
            e.calling,
            Some(xml::Device::Id("N<+4930123>;noa=nk".into()))
        );
    }

    #[test]
    fn requests_parse_with_quick_xml() {
        let r = parse_request(b"<?xml version='1.0'?><MakeCall xmlns='urn:x'><callingDevice>4001</callingDevice><calledDirectoryNumber>+49 &amp; 1</calledDirectoryNumber></MakeCall>").unwrap();
        assert_eq!(r.root, "MakeCall");
        assert_eq!(r.get("calledDirectoryNumber"), Some("+49 & 1"));
        let r = parse_request(b"<AnswerCall><callToBeAnswered><callID>7</callID><deviceID>4001</deviceID></callToBeAnswered></AnswerCall>").unwrap();
        assert_eq!(r.get("callToBeAnswered/callID"), Some("7"));
        assert_eq!(r.namespace, None);
        let r = parse_request(b"<MakeCall xmlns='urn:x'/>").unwrap();
        assert_eq!(r.namespace.as_deref(), Some("urn:x"));
    }

    #[test]
    fn prefixed_documents_prefix_every_element() {
        let d = doc(
            "urn:x",
            Some("csta"),
            "SnapshotDeviceData",
            "<serviceCrossRefID>s</serviceCrossRefID><snapshotData/>",
        );
        assert!(d.ends_with("<csta:SnapshotDeviceData xmlns:csta=\"urn:x\"><csta:serviceCrossRefID>s</csta:serviceCrossRefID><csta:snapshotData/></csta:SnapshotDeviceData>"), "{d}");
        let Message::SnapshotDeviceData(seg) = xml::decode(d.as_bytes()).unwrap().message else {
            panic!("{d}")
        };
        assert_eq!(seg.service_cross_ref.as_deref(), Some("s"));
        // No namespace: no prefix either (an undeclared prefix is not well-formed).
        assert!(doc("", Some("csta"), "A", "<b/>").ends_with("<A><b/></A>"));
    }
}
