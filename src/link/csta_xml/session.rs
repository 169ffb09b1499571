//! The sans-IO core of one CSTA XML connection: session opening per dialect, keep-alive, paced
//! MonitorStart, cross-reference routing, resync snapshots, request/response correlation and command
//! encoding. It is driven with frames, commands and clock ticks, and answers with [`Output`]s; it
//! owns no socket and reads no clock, so tests drive it deterministically.

use super::normalize;
use crate::codec::framing::{EVENT_INVOKE_ID, Frame, InvokeId, encode_frame};
use crate::codec::xml::encode::{ConnRef, Request, encode};
use crate::codec::xml::{self, Message, Response};
use crate::config::Dialect;
use crate::hub::{Command, CommandError, CommandOk, CommandResult, LinkRequest};
use crate::link::counters::LinkCounters;
use crate::model::{
    ConnState, DeviceStatus, Event, EventKind, NumberingPlan, Text, party::same_device,
};
use bytes::{Bytes, BytesMut};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

/// Settings of a CSTA XML session (from the `[[pbx]]` config).
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Link name.
    pub pbx: Text,
    /// How the session opens.
    pub dialect: Dialect,
    /// Namespace URI for what we send (empty for none).
    pub namespace: String,
    /// Devices to monitor.
    pub devices: Vec<Text>,
    /// Numbering plan for parties.
    pub plan: NumberingPlan,
    /// MonitorStart requests per second.
    pub monitor_rate: u32,
    /// Silence before a keep-alive is sent.
    pub keepalive: Duration,
    /// Time the PBX has to answer a request.
    pub request_timeout: Duration,
    /// Time to establish the session after connecting.
    pub handshake_timeout: Duration,
    /// Delay before a failed MonitorStart is retried.
    pub monitor_retry: Duration,
    /// ECMA-354 application session settings (dialect `ecma354`).
    pub app_session: Option<AppSession>,
}

/// ECMA-354 application session login (the Avaya DMCC shape).
#[derive(Clone)]
pub struct AppSession {
    /// `applicationID`.
    pub application_id: String,
    /// Login user name.
    pub user: String,
    /// Login password.
    pub password: String,
    /// Protocol version to request.
    pub protocol_version: String,
    /// Session duration to request, seconds.
    pub duration_secs: u32,
}

impl std::fmt::Debug for AppSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password.
        f.debug_struct("AppSession")
            .field("application_id", &self.application_id)
            .field("user", &self.user)
            .field("protocol_version", &self.protocol_version)
            .field("duration_secs", &self.duration_secs)
            .finish_non_exhaustive()
    }
}

/// What the session asks its runner to do.
// Events are moved once into the hub; boxing them would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Output {
    /// Write this frame.
    Send(Bytes),
    /// Publish this event (boxed where it was built: it is a kilobyte).
    Event(Box<Event>),
    /// A device's monitoring changed.
    Device(Text, DeviceStatus),
    /// The calls the PBX reports at a device after (re)monitoring, to reconcile.
    Snapshot {
        /// The device.
        device: Text,
        /// Call ids up at the device.
        call_ids: Vec<Text>,
    },
    /// The session is established.
    Ready,
    /// Deliver a command outcome.
    Reply(oneshot::Sender<CommandResult>, CommandResult),
    /// Drop the connection (and reconnect): the reason.
    Close(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// OSV: waiting for the switch's SystemStatus.
    AwaitSystemStatus,
    /// We sent RequestSystemStatus to open the session.
    AwaitStatusResponse,
    /// We sent StartApplicationSession (ECMA-354).
    AwaitAppSession,
    /// SystemRegister sent.
    Registering,
    /// Session up: monitoring and events.
    Ready,
}

enum Pending {
    SystemRegister,
    OpenStatus,
    OpenAppSession,
    ResetTimer,
    StopAppSession,
    KeepAlive,
    MonitorStart(usize),
    MonitorStop,
    Snapshot(usize),
    Command {
        name: &'static str,
        reply: oneshot::Sender<CommandResult>,
    },
}

/// A snapshot the switch answered with a `serviceCrossRefID`: its calls arrive in
/// `SnapshotDeviceData` segments, and the resync waits for the last one.
struct SnapshotAssembly {
    device: usize,
    calls: Vec<(Text, Option<Text>)>,
    /// Dropped (no resync) if the next segment is not here by then.
    deadline: Instant,
}

/// MonitorStarts out at once, whatever `monitor_rate` says (a burst of thousands would overflow
/// the link's write queue, which ends the connection as stalled, and is what switches drop
/// under). Resync snapshots after `messagesLost` share the budget with the snapshots already
/// out; the snapshot that follows each MonitorStart answer is not paced, so at most about twice
/// this many requests are out at once.
const MAX_IN_FLIGHT: usize = 256;

/// Commands awaiting the PBX's answer on one link, from all connectors together; more are
/// answered `busy` rather than queued onto a switch that is already behind.
const MAX_PENDING_COMMANDS: usize = 256;

/// More calls than any one device can hold: a switch that keeps sending segments is not followed.
const MAX_SNAPSHOT_CALLS: usize = 4096;

struct PendingEntry {
    what: Pending,
    deadline: Instant,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum MonState {
    Queued,
    Requested,
    Monitored(Text),
    Failed { retry_at: Instant },
}

struct Dev {
    name: Text,
    state: MonState,
    /// The connection device id the PBX uses for this device in each call (for call control).
    conn_ids: ConnIds,
    /// While a snapshot of this device is outstanding: the calls its events showed since the
    /// `SnapshotDevice` went out. They may postdate the snapshot, so the resync keeps them.
    since_snapshot: Option<Vec<Text>>,
    /// In `resync_queue`.
    resync_queued: bool,
    /// Lost messages were reported while a snapshot was out: that snapshot keeps the calls its
    /// events showed since it was asked, and a clearing among the lost ones would leave one of
    /// them open; one more snapshot follows it.
    resync_again: bool,
}

/// The connection device id the PBX uses for one device in each of its calls: the most recent
/// [`ConnIds::MAX`], so ids of calls whose end we missed cannot crowd out new ones.
#[derive(Default)]
struct ConnIds {
    map: HashMap<Text, (Text, u64)>,
    tick: u64,
}

impl ConnIds {
    const MAX: usize = 64;

    fn get(&self, call: &str) -> Option<&Text> {
        self.map.get(call).map(|(d, _)| d)
    }

    fn set(&mut self, call: &Text, device: &Text) {
        self.tick += 1;
        if !self.map.contains_key(call)
            && self.map.len() >= Self::MAX
            && let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, (_, t))| *t)
                .map(|(c, _)| c.clone())
        {
            self.map.remove(&oldest);
        }
        self.map.insert(call.clone(), (device.clone(), self.tick));
    }

    fn remove(&mut self, call: &str) {
        self.map.remove(call);
    }
}

/// One CSTA XML connection's protocol state.
pub struct Session {
    cfg: Arc<SessionConfig>,
    phase: Phase,
    connected_at: Instant,
    next_invoke: u16,
    pending: HashMap<u16, PendingEntry>,
    devices: Vec<Dev>,
    by_cross_ref: HashMap<Text, usize>,
    /// Segmented snapshots being assembled, by `serviceCrossRefID`.
    snapshots: HashMap<Text, SnapshotAssembly>,
    monitor_queue: VecDeque<usize>,
    /// Monitored devices to snapshot again (the switch reported lost messages), paced like
    /// MonitorStarts.
    resync_queue: VecDeque<usize>,
    tokens: f64,
    last_refill: Instant,
    last_rx: Instant,
    keepalive_misses: u32,
    /// ECMA-354: session id, granted duration, next timer reset.
    app: Option<(Text, Duration, Instant)>,
    decode_log: crate::link::log_budget::LogBudget,
    counters: Arc<LinkCounters>,
    out: Vec<Output>,
    scratch: BytesMut,
}

impl Session {
    /// Counts into the link's own metric handles instead of a set of its own (one set of
    /// handles per link, kept across reconnects).
    pub(crate) fn with_counters(mut self, counters: Arc<LinkCounters>) -> Session {
        self.counters = counters;
        self
    }

    /// A session for a connection established at `now`.
    pub fn new(cfg: Arc<SessionConfig>, now: Instant) -> Session {
        let devices = cfg
            .devices
            .iter()
            .map(|d| Dev {
                name: d.clone(),
                state: MonState::Queued,
                conn_ids: ConnIds::default(),
                since_snapshot: None,
                resync_queued: false,
                resync_again: false,
            })
            .collect();
        let phase = match cfg.dialect {
            Dialect::Osv => Phase::AwaitSystemStatus,
            Dialect::RequestSystemStatus => Phase::AwaitStatusResponse,
            Dialect::Ecma354 => Phase::AwaitAppSession,
        };
        let mut s = Session {
            phase,
            connected_at: now,
            next_invoke: 1,
            pending: HashMap::new(),
            devices,
            by_cross_ref: HashMap::new(),
            snapshots: HashMap::new(),
            monitor_queue: VecDeque::new(),
            resync_queue: VecDeque::new(),
            tokens: f64::from(cfg.monitor_rate.max(1)),
            last_refill: now,
            last_rx: now,
            keepalive_misses: 0,
            app: None,
            decode_log: Default::default(),
            counters: Arc::new(LinkCounters::new(cfg.pbx.clone())),
            out: Vec::new(),
            scratch: BytesMut::with_capacity(1024),
            cfg,
        };
        match s.phase {
            Phase::AwaitStatusResponse => {
                s.request(Request::RequestSystemStatus, Pending::OpenStatus, now);
            }
            Phase::AwaitAppSession => s.start_app_session(now),
            _ => {}
        }
        s
    }

    /// Takes the outputs produced so far.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Output> {
        self.out.drain(..)
    }

    /// True once the session is established.
    pub fn is_ready(&self) -> bool {
        self.phase == Phase::Ready
    }

    /// Devices monitored now.
    pub fn monitored(&self) -> usize {
        self.devices
            .iter()
            .filter(|d| matches!(d.state, MonState::Monitored(_)))
            .count()
    }

    fn start_app_session(&mut self, now: Instant) {
        let Some(a) = self.cfg.app_session.clone() else {
            self.out.push(Output::Close(
                "dialect ecma354 without session login settings".into(),
            ));
            return;
        };
        let versions = [a.protocol_version.as_str()];
        self.request(
            Request::StartApplicationSession {
                application_id: &a.application_id,
                user_name: Some(&a.user),
                password: Some(&a.password),
                session_cleanup_delay: Some(60),
                login_namespace: crate::codec::xml::encode::ns::AVAYA,
                protocol_versions: &versions,
                session_duration: Some(a.duration_secs),
            },
            Pending::OpenAppSession,
            now,
        );
    }

    fn alloc_invoke(&mut self) -> InvokeId {
        // 0001..=9998, wrapping; skip ids still awaiting an answer.
        for _ in 0..9998 {
            let id = self.next_invoke;
            self.next_invoke = if id >= 9998 { 1 } else { id + 1 };
            if !self.pending.contains_key(&id) {
                return InvokeId(id);
            }
        }
        // Every id is outstanding: impossible with the timeouts in place, but do not loop forever.
        InvokeId(self.next_invoke)
    }

    fn write(&mut self, invoke: InvokeId, req: &Request<'_>) {
        self.scratch.clear();
        encode(req, &self.cfg.namespace, &mut self.scratch);
        let mut frame = BytesMut::with_capacity(self.scratch.len() + 8);
        match encode_frame(invoke, &self.scratch, &mut frame) {
            Ok(()) => {
                self.counters.tx_frame();
                self.out.push(Output::Send(frame.freeze()));
            }
            Err(e) => {
                warn!(link = %self.cfg.pbx, request = req.name(), error = %e, "request not sent")
            }
        }
    }

    fn request(&mut self, req: Request<'_>, what: Pending, now: Instant) -> InvokeId {
        let id = self.alloc_invoke();
        self.write(id, &req);
        self.pending.insert(
            id.0,
            PendingEntry {
                what,
                deadline: now + self.cfg.request_timeout,
            },
        );
        id
    }

    /// Handles one received frame.
    pub fn on_frame(&mut self, frame: &Frame, now: Instant, ts_ms: u64) {
        self.last_rx = now;
        self.keepalive_misses = 0;
        let doc = match xml::decode(&frame.body) {
            Ok(d) => d,
            Err(e) => {
                metrics::counter!("ctigate_link_decode_errors_total", "link" => self.cfg.pbx.to_string(), "protocol" => "csta-xml", "kind" => e.kind()).increment(1);
                if let Some(suppressed) = self.decode_log.take(now) {
                    warn!(link = %self.cfg.pbx, invoke_id = %frame.invoke_id, bytes = frame.body.len(), error = %e, suppressed, "undecodable CSTA XML document skipped");
                }
                return;
            }
        };
        match doc.message {
            Message::Event(ref e) => self.on_event(frame, &doc.name, e, now, ts_ms),
            Message::SystemStatus { status } => {
                self.write(frame.invoke_id, &Request::SystemStatusResponse);
                self.on_system_status(status.as_deref(), now);
            }
            Message::RequestSystemStatus { .. } => {
                self.write(
                    frame.invoke_id,
                    &Request::RequestSystemStatusResponse { status: "normal" },
                );
            }
            Message::SwitchingFunctionDevices(list) => {
                debug!(link = %self.cfg.pbx, devices = list.devices.len(), "SwitchingFunctionDevices segment ignored");
            }
            Message::SnapshotDeviceData(seg) => self.on_snapshot_segment(seg, now),
            Message::Request => {
                debug!(link = %self.cfg.pbx, request = %doc.name, "switch request not served");
            }
            Message::Response(r) => self.on_response(frame.invoke_id, Ok(r), now),
            Message::Error(e) => self.on_response(
                frame.invoke_id,
                Err((e.category.into_owned(), e.value.into_owned())),
                now,
            ),
            Message::Unknown => {
                self.counters.unknown_message();
                debug!(link = %self.cfg.pbx, root = %doc.name, "unknown CSTA XML message ignored");
            }
        }
    }

    fn on_event(
        &mut self,
        frame: &Frame,
        name: &xml::Str<'_>,
        e: &xml::Event<'_>,
        now: Instant,
        ts_ms: u64,
    ) {
        if frame.invoke_id != EVENT_INVOKE_ID {
            debug!(link = %self.cfg.pbx, invoke_id = %frame.invoke_id, "event with a non-event invoke id");
        }
        let idx = e
            .cross_ref
            .as_deref()
            .and_then(|x| self.by_cross_ref.get(x).copied());
        let Some(idx) = idx else {
            self.counters.unrouted_event();
            debug!(link = %self.cfg.pbx, event = %name, "event for an unknown monitorCrossRefID");
            return;
        };
        let dev = &mut self.devices[idx];
        let ev = normalize::event(
            &frame.body,
            name,
            e,
            &normalize::Origin {
                pbx: &self.cfg.pbx,
                device: &dev.name,
                plan: &self.cfg.plan,
                received: now,
                ts_ms,
            },
        );
        if ev.kind == EventKind::Unknown {
            self.counters.unknown_event();
        }
        self.counters.event(ev.kind);
        // Remember which connection id the PBX uses for our device in this call, and forget it
        // when our connection or the whole call ends, or a transfer or conference merges it away.
        if let Some(call) = &ev.call_id {
            let ours = ev
                .connection_device
                .as_ref()
                .filter(|c| same_device(c, &dev.name));
            let ended = ev.kind == EventKind::CallCleared
                || (ours.is_some()
                    && (ev.state == Some(ConnState::Null)
                        || ev.kind == EventKind::ConnectionCleared));
            if ended {
                dev.conn_ids.remove(call);
            } else if let Some(conn_dev) = ours {
                dev.conn_ids.set(call, conn_dev);
            }
            if let Some(seen) = dev.since_snapshot.as_mut()
                && !ended
                && seen.len() < MAX_SNAPSHOT_CALLS
                && !seen.contains(call)
            {
                seen.push(call.clone());
            }
        }
        for old in &ev.old_call_ids {
            dev.conn_ids.remove(old);
        }
        self.out.push(Output::Event(ev));
    }

    fn on_response(
        &mut self,
        invoke: InvokeId,
        r: Result<Response<'_>, (String, String)>,
        now: Instant,
    ) {
        let Some(entry) = self.pending.remove(&invoke.0) else {
            metrics::counter!("ctigate_link_unmatched_responses_total", "link" => self.cfg.pbx.to_string(), "protocol" => "csta-xml").increment(1);
            debug!(link = %self.cfg.pbx, invoke_id = %invoke, "response to no pending request");
            return;
        };
        match (entry.what, r) {
            (Pending::SystemRegister, r) => {
                if let Err((c, v)) = r {
                    // Not every switch supports SystemRegister; the session works without it.
                    info!(link = %self.cfg.pbx, error = %format!("{c}/{v}"), "SystemRegister refused; continuing");
                }
                self.become_ready(now);
            }
            // A switch that answers but says it cannot serve yet: try again later (the link
            // backs off) rather than monitor into a switch that refuses or drops everything.
            (
                Pending::OpenStatus,
                Ok(Response::RequestSystemStatus {
                    status: Some(status),
                }),
            ) if matches!(
                status.as_ref(),
                "initializing" | "disabled" | "overloadReached"
            ) =>
            {
                self.out.push(Output::Close(format!(
                    "switch reports systemStatus {status}"
                )));
            }
            (Pending::OpenStatus, Ok(_)) => self.become_ready(now),
            (Pending::OpenStatus, Err((c, v))) => {
                self.out.push(Output::Close(format!(
                    "RequestSystemStatus refused: {c}/{v}"
                )));
            }
            // The keep-alive's answer is the switch's status too.
            (Pending::KeepAlive, Ok(Response::RequestSystemStatus { status })) => {
                self.on_system_status(status.as_deref(), now);
            }
            (Pending::KeepAlive, _) => {}
            (
                Pending::OpenAppSession,
                Ok(Response::StartApplicationSession {
                    session_id: Some(sid),
                    session_duration,
                    protocol_version,
                }),
            ) => {
                let requested = self
                    .cfg
                    .app_session
                    .as_ref()
                    .map_or(180, |a| a.duration_secs);
                let granted =
                    Duration::from_secs(u64::from(session_duration.unwrap_or(requested).max(2)));
                info!(link = %self.cfg.pbx, granted_s = granted.as_secs(), version = protocol_version.as_deref().unwrap_or(""), "ECMA-354 application session started");
                self.app = Some((Text::from(sid.as_ref()), granted, now + granted / 2));
                self.become_ready(now);
            }
            (Pending::OpenAppSession, Err((c, v))) => {
                tracing::error!(link = %self.cfg.pbx, error = %format!("{c}/{v}"), "StartApplicationSession refused: check session_user / session_password");
                self.out.push(Output::Close(format!(
                    "StartApplicationSession refused: {c}/{v}"
                )));
            }
            (Pending::OpenAppSession, Ok(_)) => {
                self.out.push(Output::Close(
                    "StartApplicationSession answered without a sessionID".into(),
                ));
            }
            (Pending::ResetTimer, Ok(r)) => {
                if let Some(app) = self.app.as_mut() {
                    // The switch may grant a different duration at each reset; the next reset
                    // is due at half of it, counted from this answer.
                    if let Response::ResetApplicationSessionTimer {
                        session_duration: Some(d),
                    } = r
                    {
                        app.1 = Duration::from_secs(u64::from(d.max(2)));
                    }
                    app.2 = now + app.1 / 2;
                }
            }
            (Pending::ResetTimer, Err((c, v))) => {
                self.out.push(Output::Close(format!(
                    "ResetApplicationSessionTimer refused: {c}/{v}"
                )));
            }
            (Pending::StopAppSession, _) => {}
            (Pending::MonitorStart(i), Ok(Response::MonitorStart { cross_ref: Some(x) })) => {
                let x = Text::from(x.as_ref());
                let dev = &mut self.devices[i];
                dev.state = MonState::Monitored(x.clone());
                let name = dev.name.clone();
                self.by_cross_ref.insert(x, i);
                metrics::gauge!("ctigate_link_monitored_devices", "link" => self.cfg.pbx.to_string(), "protocol" => "csta-xml").set(self.monitored() as f64);
                self.out
                    .push(Output::Device(name.clone(), DeviceStatus::Monitored));
                // Resync: ask what calls are up, so calls that ended while we were away are closed.
                self.snapshot(i, now);
                self.pump_monitors(now);
            }
            (Pending::MonitorStart(i), r) => {
                let reason = match r {
                    Err((c, v)) => format!("monitor_failed: {c}/{v}"),
                    Ok(_) => "monitor_failed: no monitorCrossRefID".to_string(),
                };
                self.monitor_failed(i, reason, now);
            }
            (Pending::MonitorStop, _) => {}
            (
                Pending::Snapshot(i),
                Ok(Response::SnapshotDevice {
                    calls,
                    service_cross_ref,
                }),
            ) => {
                let calls = snapshot_calls(&calls);
                match service_cross_ref {
                    // The calls follow in SnapshotDeviceData segments: resync only once the last
                    // is in, or an empty first answer would close every call at the device.
                    Some(x) => {
                        debug!(link = %self.cfg.pbx, device = %self.devices[i].name, "SnapshotDevice answered in segments");
                        self.snapshots.insert(
                            Text::from(x.as_ref()),
                            SnapshotAssembly {
                                device: i,
                                calls,
                                deadline: now + self.cfg.request_timeout,
                            },
                        );
                    }
                    None => self.resync(i, calls),
                }
            }
            (Pending::Snapshot(i), r) => {
                self.resync_failed(i);
                debug!(link = %self.cfg.pbx, device = %self.devices[i].name, ok = r.is_ok(), "no usable SnapshotDevice answer; no resync");
            }
            (Pending::Command { name, reply }, r) => {
                let result = match r {
                    // The call the service created or produced (consultation, transfer,
                    // conference), when the PBX names it.
                    Ok(Response::MakeCall { call } | Response::NewCall { call }) => Ok(CommandOk {
                        call_id: call.call_id.as_deref().map(Text::from),
                    }),
                    Ok(_) => Ok(CommandOk::default()),
                    Err((category, value)) => Err(CommandError::Rejected { category, value }),
                };
                metrics::counter!("ctigate_link_commands_total", "link" => self.cfg.pbx.to_string(), "command" => name, "outcome" => if result.is_ok() { "ok" } else { "rejected" }).increment(1);
                self.out.push(Output::Reply(reply, result));
            }
        }
    }

    /// The switch's own status: sent by the switch (`SystemStatus`; OSV opens the session with
    /// it) or given in answer to a keep-alive. It is acted on:
    /// - while waiting for the OSV opening, a switch that is not ready yet (`initializing`,
    ///   `disabled`, `overloadReached`) is not registered with: its next `SystemStatus` opens the
    ///   session, or the handshake timeout closes the connection;
    /// - `messagesLost`: events were dropped, so every monitored device is resynced (calls that
    ///   ended unseen are closed, as after a reconnect);
    /// - `disabled` or `initializing` once the session is open: the switch dropped its CSTA
    ///   service and our monitors with it; the connection is closed and opened again after backoff.
    fn on_system_status(&mut self, status: Option<&str>, now: Instant) {
        let status = status.unwrap_or("");
        const KNOWN: [&str; 9] = [
            "initializing",
            "enabled",
            "normal",
            "messagesLost",
            "disabled",
            "partiallyDisabled",
            "overloadImminent",
            "overloadReached",
            "overloadRelieved",
        ];
        // A label from the fixed set: the switch's text never becomes a series of its own.
        let label = KNOWN.into_iter().find(|k| *k == status).unwrap_or("other");
        metrics::counter!("ctigate_link_switch_status_total", "link" => self.cfg.pbx.to_string(), "protocol" => "csta-xml", "status" => label).increment(1);
        let opened = matches!(self.phase, Phase::Ready | Phase::Registering);
        match status {
            "initializing" | "disabled" | "overloadReached"
                if self.phase == Phase::AwaitSystemStatus =>
            {
                info!(link = %self.cfg.pbx, status, "switch not ready yet; waiting for its next SystemStatus");
            }
            _ if self.phase == Phase::AwaitSystemStatus => {
                debug!(link = %self.cfg.pbx, status, "switch SystemStatus; registering");
                self.phase = Phase::Registering;
                self.request(Request::SystemRegister, Pending::SystemRegister, now);
            }
            "disabled" | "initializing" if opened => {
                warn!(link = %self.cfg.pbx, status, "switch reports its CSTA service down; reconnecting");
                self.out.push(Output::Close(format!(
                    "switch reports systemStatus {status}"
                )));
            }
            "messagesLost" if self.phase == Phase::Ready => {
                let queued = self.queue_resyncs();
                warn!(link = %self.cfg.pbx, devices = queued, "switch reports lost messages; resyncing monitored devices");
                self.pump_monitors(now);
            }
            "overloadImminent" | "overloadReached" | "partiallyDisabled" | "messagesLost" => {
                warn!(link = %self.cfg.pbx, status, "switch SystemStatus");
            }
            _ => debug!(link = %self.cfg.pbx, status, "switch SystemStatus"),
        }
    }

    /// Queues a snapshot of every monitored device that has none outstanding; returns how many.
    fn queue_resyncs(&mut self) -> usize {
        let mut n = 0;
        for i in 0..self.devices.len() {
            let d = &mut self.devices[i];
            if !matches!(d.state, MonState::Monitored(_)) {
                continue;
            }
            if d.since_snapshot.is_some() {
                d.resync_again = true;
                n += 1;
            } else if self.queue_resync(i) {
                n += 1;
            }
        }
        n
    }

    /// Queues a snapshot of device `i` unless one is queued; true if it was queued now.
    fn queue_resync(&mut self, i: usize) -> bool {
        let d = &mut self.devices[i];
        if d.resync_queued {
            return false;
        }
        d.resync_queued = true;
        self.resync_queue.push_back(i);
        true
    }

    /// After device `i`'s snapshot ended (resynced or not): the one more it may owe.
    fn after_snapshot(&mut self, i: usize) {
        if std::mem::take(&mut self.devices[i].resync_again) {
            self.queue_resync(i);
        }
    }

    /// One `SnapshotDeviceData` segment: collect its calls; the last one completes the resync.
    fn on_snapshot_segment(&mut self, seg: xml::SnapshotSegment<'_>, now: Instant) {
        let Some(x) = seg.service_cross_ref.as_deref() else {
            debug!(link = %self.cfg.pbx, "SnapshotDeviceData without serviceCrossRefID ignored");
            return;
        };
        let Some(a) = self.snapshots.get_mut(x) else {
            debug!(link = %self.cfg.pbx, service_cross_ref = x, "SnapshotDeviceData for no snapshot of ours ignored");
            return;
        };
        a.calls.extend(snapshot_calls(&seg.calls));
        a.deadline = now + self.cfg.request_timeout;
        if a.calls.len() > MAX_SNAPSHOT_CALLS {
            if let Some(a) = self.snapshots.remove(x) {
                warn!(link = %self.cfg.pbx, device = %self.devices[a.device].name, "segmented snapshot has more than {MAX_SNAPSHOT_CALLS} calls; no resync");
                self.resync_failed(a.device);
            }
            return;
        }
        if seg.last_segment == Some(true)
            && let Some(a) = self.snapshots.remove(x)
        {
            self.resync(a.device, a.calls);
        }
    }

    /// Reconciles device `i` with the calls the PBX reports up at it (with the connection id it
    /// uses for the device in each), and with those its events showed since it was asked.
    fn resync(&mut self, i: usize, calls: Vec<(Text, Option<Text>)>) {
        self.count_resync("done");
        let dev = &mut self.devices[i];
        let mut call_ids = Vec::with_capacity(calls.len());
        for (call, conn_dev) in calls {
            if let Some(d) = conn_dev.filter(|d| same_device(d, &dev.name)) {
                dev.conn_ids.set(&call, &d);
            }
            call_ids.push(call);
        }
        call_ids.extend(dev.since_snapshot.take().unwrap_or_default());
        self.out.push(Output::Snapshot {
            device: dev.name.clone(),
            call_ids,
        });
        self.after_snapshot(i);
    }

    fn resync_failed(&mut self, i: usize) {
        self.devices[i].since_snapshot = None;
        self.count_resync("failed");
        self.after_snapshot(i);
    }

    /// `ctigate_link_resyncs_total{outcome}`: `done`, or `failed` (no usable snapshot; calls
    /// that ended while the link was down stay open until an event or a later resync ends them).
    fn count_resync(&self, outcome: &'static str) {
        metrics::counter!("ctigate_link_resyncs_total", "link" => self.cfg.pbx.to_string(), "protocol" => "csta-xml", "outcome" => outcome).increment(1);
    }

    fn monitor_failed(&mut self, i: usize, reason: String, now: Instant) {
        let dev = &mut self.devices[i];
        warn!(link = %self.cfg.pbx, device = %dev.name, %reason, retry_in_s = self.cfg.monitor_retry.as_secs(), "MonitorStart failed");
        dev.state = MonState::Failed {
            retry_at: now + self.cfg.monitor_retry,
        };
        self.out.push(Output::Device(
            dev.name.clone(),
            DeviceStatus::NotMonitored(reason),
        ));
        metrics::counter!("ctigate_link_monitor_failures_total", "link" => self.cfg.pbx.to_string(), "protocol" => "csta-xml").increment(1);
        self.pump_monitors(now);
    }

    fn become_ready(&mut self, now: Instant) {
        if self.phase == Phase::Ready {
            return;
        }
        self.phase = Phase::Ready;
        info!(link = %self.cfg.pbx, devices = self.devices.len(), "CSTA XML session established");
        self.out.push(Output::Ready);
        self.monitor_queue = (0..self.devices.len()).collect();
        self.pump_monitors(now);
    }

    /// Sends as many queued MonitorStarts as the token bucket and the in-flight cap allow.
    fn pump_monitors(&mut self, now: Instant) {
        if self.phase != Phase::Ready {
            return;
        }
        let rate = f64::from(self.cfg.monitor_rate.max(1));
        let elapsed = now
            .saturating_duration_since(self.last_refill)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        self.last_refill = now;
        let in_flight = self
            .devices
            .iter()
            .filter(|d| d.state == MonState::Requested)
            .count();
        let mut budget = (self.cfg.monitor_rate.max(1) as usize)
            .min(MAX_IN_FLIGHT)
            .saturating_sub(in_flight);
        while budget > 0 && self.tokens >= 1.0 {
            let Some(i) = self.monitor_queue.pop_front() else {
                break;
            };
            self.tokens -= 1.0;
            budget -= 1;
            self.devices[i].state = MonState::Requested;
            let name = self.devices[i].name.clone();
            self.request(
                Request::MonitorStart { device: &name },
                Pending::MonitorStart(i),
                now,
            );
        }
        if self.resync_queue.is_empty() {
            return;
        }
        // Resync snapshots wait for the outstanding ones too.
        let snapshots = self
            .devices
            .iter()
            .filter(|d| d.since_snapshot.is_some())
            .count();
        budget = budget.saturating_sub(snapshots);
        while budget > 0 && self.tokens >= 1.0 {
            let Some(i) = self.resync_queue.pop_front() else {
                break;
            };
            let dev = &mut self.devices[i];
            dev.resync_queued = false;
            // Re-monitored or already being snapshotted since it was queued: nothing to do.
            if !matches!(dev.state, MonState::Monitored(_)) || dev.since_snapshot.is_some() {
                continue;
            }
            self.tokens -= 1.0;
            budget -= 1;
            self.snapshot(i, now);
        }
    }

    /// Asks the switch which calls are up at device `i`; the answer resyncs it.
    fn snapshot(&mut self, i: usize, now: Instant) {
        self.devices[i].since_snapshot = Some(Vec::new());
        let name = self.devices[i].name.clone();
        self.request(
            Request::SnapshotDevice { device: &name },
            Pending::Snapshot(i),
            now,
        );
    }

    /// Handles a call-control command.
    pub fn on_command(&mut self, req: LinkRequest, now: Instant) {
        if self.phase != Phase::Ready {
            self.out
                .push(Output::Reply(req.reply, Err(CommandError::LinkDown)));
            return;
        }
        let waiting = self
            .pending
            .values()
            .filter(|p| matches!(p.what, Pending::Command { .. }))
            .count();
        if waiting >= MAX_PENDING_COMMANDS {
            metrics::counter!("ctigate_link_commands_total", "link" => self.cfg.pbx.to_string(), "command" => req.command.name(), "outcome" => "busy").increment(1);
            self.out
                .push(Output::Reply(req.reply, Err(CommandError::Busy)));
            return;
        }
        let Some(i) = self.devices.iter().position(|d| d.name == req.device) else {
            self.out.push(Output::Reply(
                req.reply,
                Err(CommandError::NotMonitored(
                    "device not configured on this link".into(),
                )),
            ));
            return;
        };
        let device = self.devices[i].name.clone();
        // The PBX's connection id for our device in each call (falls back to the device name).
        let ids: Vec<(Text, Text)> = req
            .command
            .call_ids()
            .into_iter()
            .map(|call| {
                let dev = self.devices[i]
                    .conn_ids
                    .get(call)
                    .cloned()
                    .unwrap_or_else(|| device.clone());
                (call.clone(), dev)
            })
            .collect();
        let conn = |k: usize| ConnRef {
            call_id: &ids[k].0,
            device_id: &ids[k].1,
        };
        let name = req.command.name();
        let request = match &req.command {
            Command::MakeCall { to } => Request::MakeCall {
                calling: &device,
                called: to,
            },
            Command::Answer { .. } => Request::AnswerCall { call: conn(0) },
            Command::Clear { .. } => Request::ClearConnection { conn: conn(0) },
            Command::Hold { .. } => Request::HoldCall { call: conn(0) },
            Command::Retrieve { .. } => Request::RetrieveCall { call: conn(0) },
            Command::SingleStepTransfer { to, .. } => {
                Request::SingleStepTransferCall { call: conn(0), to }
            }
            Command::Consult { to, .. } => Request::ConsultationCall { call: conn(0), to },
            Command::Transfer { .. } => Request::TransferCall {
                held: conn(0),
                active: conn(1),
            },
            Command::Conference { .. } => Request::ConferenceCall {
                held: conn(0),
                active: conn(1),
            },
            Command::Deflect { to, .. } => Request::DeflectCall { call: conn(0), to },
            Command::SetDoNotDisturb { on } => Request::SetDoNotDisturb {
                device: &device,
                on: *on,
            },
            Command::SetForwarding {
                forwarding_type,
                on,
                to,
            } => Request::SetForwarding {
                device: &device,
                forwarding_type: forwarding_type.csta(),
                on: *on,
                to: to.as_deref(),
            },
            Command::SetAgentState { state, agent_id } => Request::SetAgentState {
                device: &device,
                state: state.csta(),
                agent_id: agent_id.as_deref(),
            },
        };
        let id = self.alloc_invoke();
        self.write(id, &request);
        self.pending.insert(
            id.0,
            PendingEntry {
                what: Pending::Command {
                    name,
                    reply: req.reply,
                },
                deadline: now + self.cfg.request_timeout,
            },
        );
    }

    /// Advances timers: handshake timeout, request timeouts, keep-alive, monitor pacing and retries.
    pub fn on_tick(&mut self, now: Instant) {
        // Registering has its own deadline: an unanswered SystemRegister opens the session anyway.
        if !matches!(self.phase, Phase::Ready | Phase::Registering)
            && now.saturating_duration_since(self.connected_at) > self.cfg.handshake_timeout
        {
            self.out.push(Output::Close(format!(
                "session not established within {} ms",
                self.cfg.handshake_timeout.as_millis()
            )));
            return;
        }
        let mut stalled = vec![];
        self.snapshots.retain(|x, a| {
            let keep = a.deadline > now;
            if !keep {
                stalled.push(a.device);
                warn!(link = %self.cfg.pbx, device = %self.devices[a.device].name, service_cross_ref = %x, "segmented snapshot never completed; no resync");
            }
            keep
        });
        for i in stalled {
            self.resync_failed(i);
        }
        let expired: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            let Some(entry) = self.pending.remove(&id) else {
                continue;
            };
            match entry.what {
                Pending::KeepAlive => {
                    self.keepalive_misses += 1;
                    warn!(link = %self.cfg.pbx, misses = self.keepalive_misses, "keep-alive unanswered");
                    if self.keepalive_misses >= 2 {
                        self.out
                            .push(Output::Close("two keep-alives unanswered".into()));
                        return;
                    }
                }
                Pending::SystemRegister => self.become_ready(now),
                Pending::OpenStatus => {
                    self.out
                        .push(Output::Close("no answer to RequestSystemStatus".into()));
                    return;
                }
                Pending::OpenAppSession => {
                    self.out
                        .push(Output::Close("no answer to StartApplicationSession".into()));
                    return;
                }
                Pending::ResetTimer => {
                    self.keepalive_misses += 1;
                    warn!(link = %self.cfg.pbx, misses = self.keepalive_misses, "ResetApplicationSessionTimer unanswered");
                    if self.keepalive_misses >= 2 {
                        self.out
                            .push(Output::Close("two session timer resets unanswered".into()));
                        return;
                    }
                }
                Pending::StopAppSession => {}
                Pending::MonitorStart(i) => {
                    self.monitor_failed(i, "monitor_failed: timeout".into(), now)
                }
                Pending::MonitorStop => {}
                Pending::Snapshot(i) => self.resync_failed(i),
                Pending::Command { name, reply } => {
                    metrics::counter!("ctigate_link_commands_total", "link" => self.cfg.pbx.to_string(), "command" => name, "outcome" => "timeout").increment(1);
                    self.out
                        .push(Output::Reply(reply, Err(CommandError::Timeout)));
                }
            }
        }
        if self.phase == Phase::Ready {
            for i in 0..self.devices.len() {
                if let MonState::Failed { retry_at } = self.devices[i].state
                    && retry_at <= now
                {
                    self.devices[i].state = MonState::Queued;
                    self.monitor_queue.push_back(i);
                }
            }
            self.pump_monitors(now);
            if let Some((sid, granted, next)) = self.app.clone() {
                // ECMA-354: the session timer reset is the keep-alive, at half the granted duration.
                let pending = self
                    .pending
                    .values()
                    .any(|p| matches!(p.what, Pending::ResetTimer));
                if next <= now && !pending {
                    let requested = self
                        .cfg
                        .app_session
                        .as_ref()
                        .map_or(180, |a| a.duration_secs);
                    self.request(
                        Request::ResetApplicationSessionTimer {
                            session_id: &sid,
                            session_duration: requested,
                        },
                        Pending::ResetTimer,
                        now,
                    );
                    self.app = Some((sid, granted, now + granted / 2));
                }
                return;
            }
            let keepalive_pending = self
                .pending
                .values()
                .any(|p| matches!(p.what, Pending::KeepAlive));
            if !keepalive_pending
                && now.saturating_duration_since(self.last_rx) >= self.cfg.keepalive
            {
                self.request(Request::RequestSystemStatus, Pending::KeepAlive, now);
                // Count silence from now, so the next keep-alive waits a full interval.
                self.last_rx = now;
            }
        }
    }

    /// Orderly end: stop every monitor.
    pub fn on_shutdown(&mut self, now: Instant) {
        let refs: Vec<Text> = self
            .devices
            .iter()
            .filter_map(|d| match &d.state {
                MonState::Monitored(x) => Some(x.clone()),
                _ => None,
            })
            .collect();
        for x in refs {
            self.request(
                Request::MonitorStop { cross_ref: &x },
                Pending::MonitorStop,
                now,
            );
        }
        if let Some((sid, _, _)) = self.app.take() {
            self.request(
                Request::StopApplicationSession { session_id: &sid },
                Pending::StopAppSession,
                now,
            );
        }
    }

    /// The connection is gone: fail pending commands and mark every device unmonitored.
    pub fn on_disconnect(&mut self, reason: &str) {
        for (_, entry) in self.pending.drain() {
            if let Pending::Command { reply, .. } = entry.what {
                self.out
                    .push(Output::Reply(reply, Err(CommandError::LinkDown)));
            }
        }
        self.resync_queue.clear();
        for d in &mut self.devices {
            d.state = MonState::Queued;
            d.since_snapshot = None;
            d.resync_queued = false;
            d.resync_again = false;
            self.out.push(Output::Device(
                d.name.clone(),
                DeviceStatus::NotMonitored(reason.to_string()),
            ));
        }
        self.by_cross_ref.clear();
        self.snapshots.clear();
        metrics::gauge!("ctigate_link_monitored_devices", "link" => self.cfg.pbx.to_string(), "protocol" => "csta-xml").set(0.0);
    }
}

/// A snapshot's entries: each call id, with the connection's device id when given.
fn snapshot_calls(calls: &[xml::SnapshotCall<'_>]) -> Vec<(Text, Option<Text>)> {
    calls
        .iter()
        .filter_map(|c| {
            let call = Text::from(c.connection.call_id.as_deref()?);
            Some((call, c.connection.device_id.as_deref().map(Text::from)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::framing::Deframer;
    use crate::codec::xml::Message as M;

    fn cfg(dialect: Dialect, devices: &[&str]) -> Arc<SessionConfig> {
        Arc::new(SessionConfig {
            pbx: Text::from("p"),
            dialect,
            namespace: String::new(),
            devices: devices.iter().map(|d| Text::from(*d)).collect(),
            plan: NumberingPlan::default(),
            monitor_rate: 2,
            keepalive: Duration::from_secs(30),
            request_timeout: Duration::from_secs(5),
            handshake_timeout: Duration::from_secs(10),
            monitor_retry: Duration::from_secs(60),
            app_session: (dialect == Dialect::Ecma354).then(|| AppSession {
                application_id: "ctigate".into(),
                user: "u".into(),
                password: "p<&>".into(),
                protocol_version:
                    "http://www.ecma-international.org/standards/ecma-323/csta/ed3/priv2".into(),
                duration_secs: 120,
            }),
        })
    }

    fn frame(id: u16, xml: &str) -> Frame {
        Frame {
            invoke_id: InvokeId(id),
            body: Bytes::copy_from_slice(xml.as_bytes()),
        }
    }

    /// Sent frames as (invoke id, root name, document).
    fn sent(s: &mut Session) -> (Vec<(u16, String, String)>, Vec<Output>) {
        let mut frames = vec![];
        let mut other = vec![];
        for o in s.drain() {
            match o {
                Output::Send(b) => {
                    let mut d = Deframer::new(65535);
                    d.push(&b);
                    let f = d.next_frame().unwrap().unwrap();
                    let doc = xml::decode(&f.body).unwrap();
                    frames.push((
                        f.invoke_id.0,
                        doc.name.to_string(),
                        String::from_utf8(f.body.to_vec()).unwrap(),
                    ));
                }
                o => other.push(o),
            }
        }
        (frames, other)
    }

    #[test]
    fn osv_open_register_and_paced_monitors() {
        let t0 = Instant::now();
        let mut s = Session::new(cfg(Dialect::Osv, &["100", "101", "102"]), t0);
        assert!(sent(&mut s).0.is_empty(), "OSV waits for the switch");
        s.on_frame(
            &frame(
                17,
                "<SystemStatus><systemStatus>enabled</systemStatus></SystemStatus>",
            ),
            t0,
            0,
        );
        let (f, _) = sent(&mut s);
        assert_eq!(f[0].0, 17, "response echoes the invoke id");
        assert_eq!(f[0].1, "SystemStatusResponse");
        assert_eq!(f[1].1, "SystemRegister");
        let reg = f[1].0;
        s.on_frame(
            &frame(reg, "<SystemRegisterResponse><sysStatRegisterID>1</sysStatRegisterID></SystemRegisterResponse>"),
            t0,
            0,
        );
        let (f, o) = sent(&mut s);
        assert!(matches!(o[0], Output::Ready));
        // Rate 2/s: only two MonitorStarts now.
        let monitors: Vec<_> = f.iter().filter(|x| x.1 == "MonitorStart").collect();
        assert_eq!(monitors.len(), 2);
        assert!(monitors[0].2.contains("<deviceObject>100</deviceObject>"));
        s.on_frame(
            &frame(monitors[0].0, "<MonitorStartResponse><monitorCrossRefID>X100</monitorCrossRefID></MonitorStartResponse>"),
            t0,
            0,
        );
        let (f, o) = sent(&mut s);
        assert!(matches!(&o[0], Output::Device(d, DeviceStatus::Monitored) if d == "100"));
        assert_eq!(f[0].1, "SnapshotDevice");
        // No token left until time passes.
        assert!(f.iter().all(|x| x.1 != "MonitorStart"));
        s.on_tick(t0 + Duration::from_millis(600));
        let (f, _) = sent(&mut s);
        assert_eq!(f.iter().filter(|x| x.1 == "MonitorStart").count(), 1);
        // An event on X100 reaches device 100.
        s.on_frame(
            &frame(9999, "<DeliveredEvent><monitorCrossRefID>X100</monitorCrossRefID><connection><callID>c1</callID><deviceID>100</deviceID></connection><alertingDevice><deviceIdentifier>100</deviceIdentifier></alertingDevice><callingDevice><deviceIdentifier>+4930123</deviceIdentifier></callingDevice><calledDevice><deviceIdentifier>100</deviceIdentifier></calledDevice><localConnectionInfo>alerting</localConnectionInfo><cause>newCall</cause></DeliveredEvent>"),
            t0,
            5,
        );
        let (_, o) = sent(&mut s);
        let Output::Event(ev) = &o[0] else {
            panic!("{o:?}")
        };
        assert_eq!(ev.device, "100");
        assert_eq!(ev.call_id.as_deref(), Some("c1"));
        assert_eq!(
            ev.calling.as_ref().unwrap().number.as_deref(),
            Some("+4930123")
        );
        assert_eq!(ev.ts_ms, 5);
    }

    /// A session with device 200 monitored, and the invoke id of its resync SnapshotDevice.
    /// A RequestSystemStatus-dialect session whose opening the switch answered `normal`; its
    /// outputs since (`Ready`, the first MonitorStarts) are not drained.
    fn opened(cfg: Arc<SessionConfig>, t0: Instant) -> Session {
        let mut s = Session::new(cfg, t0);
        let (f, _) = sent(&mut s);
        assert_eq!(f[0].1, "RequestSystemStatus");
        s.on_frame(
            &frame(f[0].0, "<RequestSystemStatusResponse><systemStatus>normal</systemStatus></RequestSystemStatusResponse>"),
            t0,
            0,
        );
        s
    }

    fn monitored_200(t0: Instant) -> (Session, u16) {
        let mut s = opened(cfg(Dialect::RequestSystemStatus, &["200"]), t0);
        let (f, _) = sent(&mut s);
        s.on_frame(
            &frame(f[0].0, "<MonitorStartResponse><monitorCrossRefID>9</monitorCrossRefID></MonitorStartResponse>"),
            t0,
            0,
        );
        let (f, _) = sent(&mut s);
        assert_eq!(f[0].1, "SnapshotDevice");
        (s, f[0].0)
    }

    fn segment(xref: &str, id: u32, last: bool, calls: &[&str]) -> Frame {
        let infos: String = calls
            .iter()
            .map(|c| format!("<snapshotDeviceResponseInfo><connectionIdentifier><callID>{c}</callID><deviceID>200</deviceID></connectionIdentifier></snapshotDeviceResponseInfo>"))
            .collect();
        frame(
            1,
            &format!(
                "<SnapshotDeviceData><serviceCrossRefID>{xref}</serviceCrossRefID><segmentID>{id}</segmentID><lastSegment>{last}</lastSegment><snapshotData>{infos}</snapshotData></SnapshotDeviceData>"
            ),
        )
    }

    fn snapshots(o: &[Output]) -> Vec<(String, Vec<String>)> {
        o.iter()
            .filter_map(|o| match o {
                Output::Snapshot { device, call_ids } => Some((
                    device.to_string(),
                    call_ids.iter().map(|c| c.to_string()).collect(),
                )),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_segmented_snapshot_resyncs_only_when_its_last_segment_is_in() {
        let t0 = Instant::now();
        let (mut s, snap) = monitored_200(t0);
        // The answer names only a serviceCrossRefID: no resync yet (it would close every call).
        s.on_frame(
            &frame(snap, "<SnapshotDeviceResponse><crossRefIDorSnapshotData><serviceCrossRefID>S1</serviceCrossRefID></crossRefIDorSnapshotData></SnapshotDeviceResponse>"),
            t0,
            0,
        );
        let (f, o) = sent(&mut s);
        assert!(f.is_empty(), "SnapshotDeviceData is not answered");
        assert_eq!(snapshots(&o), vec![]);
        // A segment of someone else's snapshot changes nothing.
        s.on_frame(&segment("S9", 1, true, &["x"]), t0, 0);
        assert_eq!(snapshots(&sent(&mut s).1), vec![]);
        s.on_frame(&segment("S1", 1, false, &["c1", "c2"]), t0, 0);
        assert_eq!(snapshots(&sent(&mut s).1), vec![]);
        s.on_frame(&segment("S1", 2, true, &["c3"]), t0, 0);
        assert_eq!(
            snapshots(&sent(&mut s).1),
            vec![("200".into(), vec!["c1".into(), "c2".into(), "c3".into()])]
        );
        // Done: a repeated last segment does not resync again.
        s.on_frame(&segment("S1", 2, true, &["c3"]), t0, 0);
        assert_eq!(snapshots(&sent(&mut s).1), vec![]);
    }

    #[test]
    fn a_segmented_snapshot_that_never_completes_does_not_resync() {
        let t0 = Instant::now();
        let (mut s, snap) = monitored_200(t0);
        s.on_frame(
            &frame(snap, "<SnapshotDeviceResponse><crossRefIDorSnapshotData><serviceCrossRefID>S1</serviceCrossRefID></crossRefIDorSnapshotData></SnapshotDeviceResponse>"),
            t0,
            0,
        );
        s.on_frame(&segment("S1", 1, false, &["c1"]), t0, 0);
        sent(&mut s);
        // Past the request timeout (5 s) with no further segment: given up, quietly.
        s.on_tick(t0 + Duration::from_secs(6));
        s.on_frame(
            &segment("S1", 2, true, &["c2"]),
            t0 + Duration::from_secs(6),
            0,
        );
        assert_eq!(snapshots(&sent(&mut s).1), vec![]);
    }

    fn delivered(call: &str, conn_dev: &str) -> Frame {
        frame(
            9999,
            &format!(
                "<DeliveredEvent><monitorCrossRefID>9</monitorCrossRefID><connection><callID>{call}</callID><deviceID>{conn_dev}</deviceID></connection><alertingDevice><deviceIdentifier>200</deviceIdentifier></alertingDevice><localConnectionInfo>alerting</localConnectionInfo><cause>newCall</cause></DeliveredEvent>"
            ),
        )
    }

    /// Sends `command` and returns the frame it wrote (invoke id, root, document).
    fn command(
        s: &mut Session,
        command: Command,
        now: Instant,
    ) -> ((u16, String, String), oneshot::Receiver<CommandResult>) {
        let (tx, rx) = oneshot::channel();
        s.on_command(
            LinkRequest {
                device: Text::from("200"),
                command,
                reply: tx,
            },
            now,
        );
        let (mut f, _) = sent(s);
        (f.remove(0), rx)
    }

    /// Hands the command outcomes the session produced to their receivers, as the link task does.
    fn deliver_replies(s: &mut Session) {
        for o in s.drain() {
            if let Output::Reply(tx, r) = o {
                let _ = tx.send(r);
            }
        }
    }

    #[test]
    fn commands_past_the_pending_cap_are_answered_busy_without_reaching_the_pbx() {
        let t0 = Instant::now();
        let (mut s, _) = monitored_200(t0);
        let mut first = None;
        for _ in 0..MAX_PENDING_COMMANDS {
            let (f, rx) = command(&mut s, Command::MakeCall { to: "300".into() }, t0);
            assert_eq!(f.1, "MakeCall");
            first.get_or_insert((f.0, rx));
        }
        let (tx, mut rx) = oneshot::channel();
        s.on_command(
            LinkRequest {
                device: Text::from("200"),
                command: Command::MakeCall { to: "301".into() },
                reply: tx,
            },
            t0,
        );
        let (f, _) = s.drain().fold((0, 0), |n, o| match o {
            Output::Send(_) => (n.0 + 1, n.1),
            Output::Reply(tx, r) => {
                let _ = tx.send(r);
                (n.0, n.1 + 1)
            }
            _ => n,
        });
        assert_eq!(f, 0, "nothing sent to the PBX");
        assert!(matches!(rx.try_recv(), Ok(Err(CommandError::Busy))));
        // An answer frees a slot.
        let (id, _) = first.unwrap();
        s.on_frame(&frame(id, "<MakeCallResponse><callingDevice><callID>c9</callID><deviceID>200</deviceID></callingDevice></MakeCallResponse>"), t0, 0);
        deliver_replies(&mut s);
        let (f, _) = command(&mut s, Command::MakeCall { to: "302".into() }, t0);
        assert_eq!(f.1, "MakeCall");
    }

    #[test]
    fn calls_seen_while_a_snapshot_is_out_are_not_closed_by_it() {
        let t0 = Instant::now();
        let (mut s, snap) = monitored_200(t0);
        // A call arrives after the switch took the snapshot but before its answer is read.
        s.on_frame(&delivered("late", "200"), t0, 0);
        s.on_frame(
            &frame(snap, "<SnapshotDeviceResponse><crossRefIDorSnapshotData><snapshotData><snapshotDeviceResponseInfo><connectionIdentifier><callID>old</callID><deviceID>N&lt;200&gt;</deviceID></connectionIdentifier></snapshotDeviceResponseInfo></snapshotData></crossRefIDorSnapshotData></SnapshotDeviceResponse>"),
            t0,
            0,
        );
        assert_eq!(
            snapshots(&sent(&mut s).1),
            vec![("200".into(), vec!["old".into(), "late".into()])]
        );
        // The snapshot told the connection id the PBX uses for 200 in `old`: commands use it.
        let (f, _) = command(
            &mut s,
            Command::Hold {
                call_id: "old".into(),
            },
            t0,
        );
        assert!(
            f.2.contains("<callID>old</callID><deviceID>N&lt;200&gt;</deviceID>"),
            "{}",
            f.2
        );
    }

    #[test]
    fn connection_ids_of_ended_calls_do_not_crowd_out_new_ones() {
        let t0 = Instant::now();
        let (mut s, _) = monitored_200(t0);
        // Many calls whose end the gateway never saw.
        for i in 0..200 {
            s.on_frame(&delivered(&format!("c{i}"), "sip:200@pbx"), t0, 0);
        }
        s.on_frame(&delivered("new", "sip:200@pbx"), t0, 0);
        sent(&mut s);
        let (f, _) = command(
            &mut s,
            Command::Answer {
                call_id: "new".into(),
            },
            t0,
        );
        assert!(f.2.contains("<deviceID>sip:200@pbx</deviceID>"), "{}", f.2);
        assert!(s.devices[0].conn_ids.map.len() <= ConnIds::MAX);
        // Our connection clearing forgets the call's id; a far end without a number does not
        // count as ours.
        s.on_frame(
            &frame(9999, "<ConnectionClearedEvent><monitorCrossRefID>9</monitorCrossRefID><droppedConnection><callID>new</callID><deviceID>sip:bob@pbx</deviceID></droppedConnection></ConnectionClearedEvent>"),
            t0,
            0,
        );
        assert!(s.devices[0].conn_ids.get("new").is_some());
        s.on_frame(
            &frame(9999, "<ConnectionClearedEvent><monitorCrossRefID>9</monitorCrossRefID><droppedConnection><callID>new</callID><deviceID>sip:200@pbx</deviceID></droppedConnection></ConnectionClearedEvent>"),
            t0,
            0,
        );
        assert!(s.devices[0].conn_ids.get("new").is_none());
    }

    #[test]
    fn commands_answered_with_a_new_call_return_its_id() {
        let t0 = Instant::now();
        let (mut s, _) = monitored_200(t0);
        let (f, mut rx) = command(
            &mut s,
            Command::Consult {
                call_id: "c1".into(),
                to: "300".into(),
            },
            t0,
        );
        assert_eq!(f.1, "ConsultationCall");
        s.on_frame(
            &frame(f.0, "<ConsultationCallResponse><initiatedCall><callID>c2</callID><deviceID>200</deviceID></initiatedCall></ConsultationCallResponse>"),
            t0,
            0,
        );
        deliver_replies(&mut s);
        let r = rx.try_recv().unwrap().unwrap();
        assert_eq!(r.call_id.as_deref(), Some("c2"));
    }

    #[test]
    fn a_lost_link_fails_pending_commands_as_link_down() {
        let t0 = Instant::now();
        let (mut s, _) = monitored_200(t0);
        let (_, mut rx) = command(
            &mut s,
            Command::Answer {
                call_id: "c1".into(),
            },
            t0,
        );
        s.on_disconnect("peer closed");
        deliver_replies(&mut s);
        assert!(matches!(
            rx.try_recv().unwrap(),
            Err(CommandError::LinkDown)
        ));
    }

    #[test]
    fn the_switch_asking_our_status_is_answered_with_its_invoke_id() {
        let t0 = Instant::now();
        let (mut s, _) = monitored_200(t0);
        s.on_frame(
            &frame(
                4242,
                "<RequestSystemStatus><extensions/></RequestSystemStatus>",
            ),
            t0,
            0,
        );
        let (f, _) = sent(&mut s);
        assert_eq!(
            (f[0].0, f[0].1.as_str()),
            (4242, "RequestSystemStatusResponse")
        );
        assert!(f[0].2.contains("<systemStatus>normal</systemStatus>"));
    }

    #[test]
    fn a_switch_that_reports_it_is_disabled_is_not_monitored() {
        let t0 = Instant::now();
        let mut s = Session::new(cfg(Dialect::RequestSystemStatus, &["200"]), t0);
        let (f, _) = sent(&mut s);
        s.on_frame(
            &frame(f[0].0, "<RequestSystemStatusResponse><systemStatus>disabled</systemStatus></RequestSystemStatusResponse>"),
            t0,
            0,
        );
        let (f, o) = sent(&mut s);
        assert!(f.is_empty(), "{f:?}");
        assert!(
            matches!(&o[..], [Output::Close(r)] if r.contains("disabled")),
            "{o:?}"
        );
        assert!(!s.is_ready());
    }

    #[test]
    fn an_unanswered_system_register_opens_the_session_even_late_in_the_handshake() {
        // Handshake 10 s, request timeout 5 s: the switch's SystemStatus comes at 8 s.
        let t0 = Instant::now();
        let mut s = Session::new(cfg(Dialect::Osv, &["200"]), t0);
        let t8 = t0 + Duration::from_secs(8);
        s.on_frame(
            &frame(
                1,
                "<SystemStatus><systemStatus>enabled</systemStatus></SystemStatus>",
            ),
            t8,
            0,
        );
        let (f, _) = sent(&mut s);
        assert_eq!(f[1].1, "SystemRegister");
        s.on_tick(t0 + Duration::from_secs(11));
        let (_, o) = sent(&mut s);
        assert!(!o.iter().any(|o| matches!(o, Output::Close(_))), "{o:?}");
        s.on_tick(t0 + Duration::from_secs(14));
        assert!(s.is_ready());
    }

    fn system_status(status: &str) -> Frame {
        frame(
            4000,
            &format!("<SystemStatus><systemStatus>{status}</systemStatus></SystemStatus>"),
        )
    }

    #[test]
    fn an_osv_switch_that_is_not_ready_yet_is_registered_with_only_once_it_is() {
        let t0 = Instant::now();
        let mut s = Session::new(cfg(Dialect::Osv, &["100"]), t0);
        for status in ["initializing", "disabled", "overloadReached"] {
            s.on_frame(&system_status(status), t0, 0);
            let (f, o) = sent(&mut s);
            let roots: Vec<_> = f.iter().map(|x| x.1.as_str()).collect();
            assert_eq!(roots, ["SystemStatusResponse"], "{status}");
            assert!(o.is_empty(), "{status}: {o:?}");
        }
        s.on_frame(&system_status("enabled"), t0, 0);
        let (f, _) = sent(&mut s);
        assert_eq!(f[1].1, "SystemRegister");
        // Still bound by the handshake timeout while it waited.
        let mut s = Session::new(cfg(Dialect::Osv, &["100"]), t0);
        s.on_frame(&system_status("initializing"), t0, 0);
        s.on_tick(t0 + Duration::from_secs(11));
        assert!(
            sent(&mut s)
                .1
                .iter()
                .any(|o| matches!(o, Output::Close(r) if r.contains("not established")))
        );
    }

    #[test]
    fn lost_messages_resync_every_monitored_device_paced() {
        let t0 = Instant::now();
        let mut s = opened(
            cfg(Dialect::RequestSystemStatus, &["200", "201", "202"]),
            t0,
        );
        // Monitor all three (rate 2/s) and answer their snapshots.
        let mut t = t0;
        for _ in 0..4 {
            let (f, _) = sent(&mut s);
            for (id, root, doc) in f {
                let answer = match root.as_str() {
                    "MonitorStart" => {
                        let dev = &doc[doc.find("<deviceObject>").unwrap() + 14..][..3];
                        format!("<MonitorStartResponse><monitorCrossRefID>X{dev}</monitorCrossRefID></MonitorStartResponse>")
                    }
                    "SnapshotDevice" => "<SnapshotDeviceResponse><crossRefIDorSnapshotData><snapshotData/></crossRefIDorSnapshotData></SnapshotDeviceResponse>".to_string(),
                    _ => continue,
                };
                s.on_frame(&frame(id, &answer), t, 0);
            }
            t += Duration::from_secs(1);
            s.on_tick(t);
        }
        sent(&mut s);
        assert_eq!(s.monitored(), 3);
        t += Duration::from_secs(1);
        s.on_tick(t);
        s.on_frame(&system_status("messagesLost"), t, 0);
        let (f, o) = sent(&mut s);
        assert!(o.is_empty(), "{o:?}");
        let snaps: Vec<_> = f.iter().filter(|x| x.1 == "SnapshotDevice").collect();
        assert_eq!(f[0].1, "SystemStatusResponse");
        // Paced like MonitorStarts (rate 2/s, at most two out): two now, the third later.
        assert_eq!(snaps.len(), 2, "{f:?}");
        // The third waits while two are out.
        t += Duration::from_secs(1);
        s.on_tick(t);
        let (f2, _) = sent(&mut s);
        assert!(f2.iter().all(|x| x.1 != "SnapshotDevice"), "{f2:?}");
        // Each answer resyncs its device; then the third goes out.
        let empty = "<SnapshotDeviceResponse><crossRefIDorSnapshotData><snapshotData/></crossRefIDorSnapshotData></SnapshotDeviceResponse>";
        for x in &snaps {
            s.on_frame(&frame(x.0, empty), t, 0);
        }
        assert_eq!(snapshots(&sent(&mut s).1).len(), 2);
        s.on_tick(t + Duration::from_secs(1));
        let (f3, _) = sent(&mut s);
        let more: Vec<_> = f3.iter().filter(|x| x.1 == "SnapshotDevice").collect();
        assert_eq!(more.len(), 1, "{f3:?}");
        let mut asked: Vec<_> = snaps
            .iter()
            .chain(more.iter())
            .map(|x| x.2[x.2.find("<snapshotObject>").unwrap() + 16..][..3].to_string())
            .collect();
        asked.sort();
        assert_eq!(asked, ["200", "201", "202"]);
    }

    #[test]
    fn lost_messages_reported_while_a_snapshot_is_out_are_followed_by_one_more() {
        let t0 = Instant::now();
        let (mut s, snap) = monitored_200(t0);
        s.on_frame(&system_status("messagesLost"), t0, 0);
        let (f, _) = sent(&mut s);
        assert!(f.iter().all(|x| x.1 != "SnapshotDevice"), "{f:?}");
        s.on_frame(
            &frame(snap, "<SnapshotDeviceResponse><crossRefIDorSnapshotData><snapshotData/></crossRefIDorSnapshotData></SnapshotDeviceResponse>"),
            t0,
            0,
        );
        assert_eq!(snapshots(&sent(&mut s).1).len(), 1);
        s.on_tick(t0 + Duration::from_secs(1));
        let (f, _) = sent(&mut s);
        assert_eq!(
            f.iter().filter(|x| x.1 == "SnapshotDevice").count(),
            1,
            "{f:?}"
        );
        // And only one.
        s.on_tick(t0 + Duration::from_secs(2));
        assert!(sent(&mut s).0.iter().all(|x| x.1 != "SnapshotDevice"));
    }

    #[test]
    fn a_switch_that_drops_its_csta_service_closes_the_open_session() {
        let t0 = Instant::now();
        for status in ["disabled", "initializing"] {
            let (mut s, _) = monitored_200(t0);
            s.on_frame(&system_status("overloadImminent"), t0, 0);
            s.on_frame(&system_status("enabled"), t0, 0);
            assert!(
                !sent(&mut s).1.iter().any(|o| matches!(o, Output::Close(_))),
                "{status}"
            );
            s.on_frame(&system_status(status), t0, 0);
            let (f, o) = sent(&mut s);
            assert_eq!(f[0].1, "SystemStatusResponse");
            assert!(
                o.iter()
                    .any(|o| matches!(o, Output::Close(r) if r.contains(status))),
                "{status}: {o:?}"
            );
        }
    }

    #[test]
    fn a_keep_alive_answer_that_reports_lost_messages_resyncs() {
        let t0 = Instant::now();
        let (mut s, snap) = monitored_200(t0);
        s.on_frame(
            &frame(snap, "<SnapshotDeviceResponse><crossRefIDorSnapshotData><snapshotData/></crossRefIDorSnapshotData></SnapshotDeviceResponse>"),
            t0,
            0,
        );
        sent(&mut s);
        let t = t0 + Duration::from_secs(31);
        s.on_tick(t);
        let (f, _) = sent(&mut s);
        assert_eq!(f[0].1, "RequestSystemStatus");
        s.on_frame(
            &frame(f[0].0, "<RequestSystemStatusResponse><systemStatus>messagesLost</systemStatus></RequestSystemStatusResponse>"),
            t,
            0,
        );
        let (f, _) = sent(&mut s);
        assert_eq!(
            f.iter().filter(|x| x.1 == "SnapshotDevice").count(),
            1,
            "{f:?}"
        );
    }

    #[test]
    fn a_high_monitor_rate_never_bursts_past_the_in_flight_cap() {
        let t0 = Instant::now();
        let devices: Vec<String> = (0..3000).map(|i| format!("{}", 10_000 + i)).collect();
        let refs: Vec<&str> = devices.iter().map(String::as_str).collect();
        let mut c = (*cfg(Dialect::RequestSystemStatus, &refs)).clone();
        c.monitor_rate = 5000;
        let mut s = opened(Arc::new(c), t0);
        let (f, _) = sent(&mut s);
        assert_eq!(
            f.iter().filter(|x| x.1 == "MonitorStart").count(),
            MAX_IN_FLIGHT
        );
        // Each answer frees a slot, and tokens are left: as many MonitorStarts follow at once.
        for (id, _, _) in f.iter().take(10) {
            s.on_frame(&frame(*id, "<MonitorStartResponse><monitorCrossRefID>x</monitorCrossRefID></MonitorStartResponse>"), t0, 0);
        }
        s.on_tick(t0 + Duration::from_secs(1));
        let (f, _) = sent(&mut s);
        assert_eq!(f.iter().filter(|x| x.1 == "MonitorStart").count(), 10);
    }

    #[test]
    fn a_plain_snapshot_answer_resyncs_at_once() {
        let t0 = Instant::now();
        let (mut s, snap) = monitored_200(t0);
        s.on_frame(
            &frame(snap, "<SnapshotDeviceResponse><crossRefIDorSnapshotData><snapshotData/></crossRefIDorSnapshotData></SnapshotDeviceResponse>"),
            t0,
            0,
        );
        assert_eq!(snapshots(&sent(&mut s).1), vec![("200".into(), vec![])]);
    }

    #[test]
    fn request_system_status_dialect_and_make_call() {
        let t0 = Instant::now();
        let mut s = opened(cfg(Dialect::RequestSystemStatus, &["200"]), t0);
        let (f, o) = sent(&mut s);
        assert!(matches!(o[0], Output::Ready));
        s.on_frame(
            &frame(f[0].0, "<MonitorStartResponse><monitorCrossRefID>9</monitorCrossRefID></MonitorStartResponse>"),
            t0,
            0,
        );
        sent(&mut s);
        let (tx, mut rx) = oneshot::channel();
        s.on_command(
            LinkRequest {
                device: Text::from("200"),
                command: Command::MakeCall {
                    to: "+49 30 1".into(),
                },
                reply: tx,
            },
            t0,
        );
        let (f, _) = sent(&mut s);
        assert_eq!(f[0].1, "MakeCall");
        assert!(f[0].2.contains("<callingDevice>200</callingDevice><calledDirectoryNumber>+49 30 1</calledDirectoryNumber>"));
        s.on_frame(
            &frame(f[0].0, "<MakeCallResponse><callingDevice><callID>77</callID><deviceID>200</deviceID></callingDevice></MakeCallResponse>"),
            t0,
            0,
        );
        let (_, o) = sent(&mut s);
        let Some(Output::Reply(tx, r)) = o.into_iter().next() else {
            panic!()
        };
        tx.send(r).unwrap();
        assert_eq!(
            rx.try_recv().unwrap().unwrap().call_id.as_deref(),
            Some("77")
        );
    }

    #[test]
    fn errors_timeouts_and_keepalive() {
        let t0 = Instant::now();
        let mut s = Session::new(cfg(Dialect::RequestSystemStatus, &["300"]), t0);
        let (f, _) = sent(&mut s);
        s.on_frame(&frame(f[0].0, "<RequestSystemStatusResponse/>"), t0, 0);
        let (f, _) = sent(&mut s);
        s.on_frame(
            &frame(
                f[0].0,
                "<CSTAErrorCode><operation>invalidDeviceID</operation></CSTAErrorCode>",
            ),
            t0,
            0,
        );
        let (_, o) = sent(&mut s);
        assert!(
            matches!(&o[0], Output::Device(_, DeviceStatus::NotMonitored(r)) if r == "monitor_failed: operation/invalidDeviceID")
        );
        // Retried after monitor_retry.
        s.on_tick(t0 + Duration::from_secs(61));
        let (f, _) = sent(&mut s);
        assert!(f.iter().any(|x| x.1 == "MonitorStart"));
        // Silence: keep-alive at 30 s, two misses close the link.
        let t1 = t0 + Duration::from_secs(61);
        s.on_frame(&frame(f[0].0, "<MonitorStartResponse><monitorCrossRefID>1</monitorCrossRefID></MonitorStartResponse>"), t1, 0);
        sent(&mut s);
        s.on_tick(t1 + Duration::from_secs(30));
        let (f, _) = sent(&mut s);
        assert!(f.iter().any(|x| x.1 == "RequestSystemStatus"), "{f:?}");
        s.on_tick(t1 + Duration::from_secs(36));
        s.on_tick(t1 + Duration::from_secs(66));
        s.on_tick(t1 + Duration::from_secs(72));
        let (_, o) = sent(&mut s);
        assert!(o.iter().any(|o| matches!(o, Output::Close(_))), "{o:?}");
    }

    #[test]
    fn ecma354_session_start_timer_reset_and_stop() {
        let t0 = Instant::now();
        let mut s = Session::new(cfg(Dialect::Ecma354, &["100"]), t0);
        let (f, _) = sent(&mut s);
        assert_eq!(f[0].1, "StartApplicationSession");
        assert!(f[0].2.contains("ecma-354/appl_session"), "{}", f[0].2);
        assert!(f[0].2.contains("password>p&lt;&amp;&gt;</"), "{}", f[0].2);
        assert!(
            f[0].2
                .contains("<requestedSessionDuration>120</requestedSessionDuration>")
        );
        s.on_frame(
            &frame(f[0].0, "<StartApplicationSessionPosResponse xmlns='http://www.ecma-international.org/standards/ecma-354/appl_session'><sessionID>S-1</sessionID><actualProtocolVersion>x</actualProtocolVersion><actualSessionDuration>60</actualSessionDuration></StartApplicationSessionPosResponse>"),
            t0,
            0,
        );
        let (f, o) = sent(&mut s);
        assert!(matches!(o[0], Output::Ready));
        assert_eq!(f[0].1, "MonitorStart");
        // No RequestSystemStatus keep-alive; the timer reset comes at half the granted 60 s.
        s.on_tick(t0 + Duration::from_secs(29));
        assert!(sent(&mut s).0.is_empty());
        s.on_tick(t0 + Duration::from_secs(30));
        let (f, _) = sent(&mut s);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].1, "ResetApplicationSessionTimer");
        assert!(f[0].2.contains("<sessionID>S-1</sessionID>"));
        s.on_frame(&frame(f[0].0, "<ResetApplicationSessionTimerPosResponse><actualSessionDuration>40</actualSessionDuration></ResetApplicationSessionTimerPosResponse>"), t0 + Duration::from_secs(30), 0);
        // The new grant (40 s) sets the next reset at 20 s.
        s.on_tick(t0 + Duration::from_secs(49));
        assert!(sent(&mut s).0.is_empty());
        s.on_tick(t0 + Duration::from_secs(50));
        assert_eq!(sent(&mut s).0[0].1, "ResetApplicationSessionTimer");
        s.on_shutdown(t0 + Duration::from_secs(51));
        let names: Vec<String> = sent(&mut s).0.into_iter().map(|x| x.1).collect();
        assert_eq!(
            names.last().map(String::as_str),
            Some("StopApplicationSession")
        );
    }

    #[test]
    fn ecma354_refused_login_closes_the_connection() {
        let t0 = Instant::now();
        let mut s = Session::new(cfg(Dialect::Ecma354, &["100"]), t0);
        let (f, _) = sent(&mut s);
        s.on_frame(
            &frame(f[0].0, "<StartApplicationSessionNegResponse><errorCode><definedError>invalidSessionLoginInfo</definedError></errorCode></StartApplicationSessionNegResponse>"),
            t0,
            0,
        );
        let (_, o) = sent(&mut s);
        assert!(
            matches!(&o[0], Output::Close(r) if r.contains("invalidSessionLoginInfo")),
            "{o:?}"
        );
    }

    #[test]
    fn handshake_timeout_and_undecodable_documents() {
        let t0 = Instant::now();
        let mut s = Session::new(cfg(Dialect::Osv, &["1"]), t0);
        s.on_frame(&frame(1, "<not-closed>"), t0, 0);
        s.on_frame(&frame(1, "plain text"), t0, 0);
        assert!(sent(&mut s).1.is_empty());
        s.on_tick(t0 + Duration::from_secs(11));
        assert!(matches!(sent(&mut s).1[0], Output::Close(_)));
        let _ = M::Unknown;
    }
}
