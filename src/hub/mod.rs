//! The session hub: Login ID registry, per-Login-ID sequence numbers and replay ring, device status,
//! fan-out into bounded subscriber queues, and the route for call-control commands to the links.
//!
//! Links call [`Hub::publish`], which never waits: it takes one short per-Login-ID lock, serializes
//! the event once, and pushes the same bytes to every subscriber (kicking any that are full).

pub mod command;
pub mod message;
pub mod registry;
pub mod subscriber;

pub use command::{
    AgentState, Command, CommandError, CommandOk, CommandResult, ForwardingType, LinkRequest,
};

pub use registry::{DeviceKey, Registry};
pub use subscriber::{KickReason, Outbound, Subscriber, SubscriberRx};

use crate::config::Config;
use crate::model::{CallInfo, CallTable, DeviceStatus, Event, LoginId, StatusLevel, Text};
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

struct Session {
    login: LoginId,
    key: DeviceKey,
    seq: u64,
    ring: VecDeque<(u64, Bytes)>,
    subs: Vec<Arc<Subscriber>>,
    status: (StatusLevel, String),
    calls: CallTable,
    /// `ctigate_hub_events_total` of this Login ID's link, resolved on the first event: then
    /// publishing neither allocates the label nor looks the series up, and the handle is never
    /// taken before the gateway installs its recorder (one taken earlier would stay a no-op).
    events: Option<metrics::Counter>,
}

impl Session {
    fn status_message(&self) -> Bytes {
        message::status(
            self.login.as_str(),
            self.status.0,
            &self.status.1,
            Some(&self.key.pbx),
            Some(&self.key.device),
        )
    }

    fn broadcast(&mut self, json: Bytes, ingress: Option<Instant>) {
        for s in &self.subs {
            s.push(Outbound {
                json: json.clone(),
                ingress,
            });
        }
        self.subs.retain(|s| !s.is_kicked());
    }
}

struct Inner {
    registry: Registry,
    sessions: HashMap<LoginId, Mutex<Session>>,
    links: RwLock<HashMap<Text, mpsc::Sender<LinkRequest>>>,
    ring_size: usize,
    next_sub: AtomicU64,
    epoch: String,
}

/// The session hub. Cheap to clone.
#[derive(Clone)]
pub struct Hub(Arc<Inner>);

impl Hub {
    /// A hub for the Login IDs of `cfg`.
    pub fn new(cfg: &Config) -> Hub {
        let registry = Registry::from_config(cfg);
        let sessions = registry
            .logins()
            .map(|(id, key)| {
                (
                    id.clone(),
                    Mutex::new(Session {
                        login: id.clone(),
                        key: key.clone(),
                        seq: 0,
                        ring: VecDeque::with_capacity(cfg.hub.replay_ring.min(4096)),
                        subs: Vec::new(),
                        status: (StatusLevel::Yellow, "connecting".into()),
                        calls: CallTable::default(),
                        events: None,
                    }),
                )
            })
            .collect();
        let epoch = {
            use rand::Rng;
            format!("{:016x}", rand::rng().random::<u64>())
        };
        Hub(Arc::new(Inner {
            registry,
            sessions,
            links: RwLock::new(HashMap::new()),
            ring_size: cfg.hub.replay_ring.max(1),
            next_sub: AtomicU64::new(1),
            epoch,
        }))
    }

    /// Random id of this gateway run; `seq` numbers restart when it changes.
    pub fn epoch(&self) -> &str {
        &self.0.epoch
    }

    /// The Login ID registry.
    pub fn registry(&self) -> &Registry {
        &self.0.registry
    }

    fn session(&self, login: &LoginId) -> Option<MutexGuard<'_, Session>> {
        // A poisoned lock means a panic inside a critical section that only touches plain data;
        // the data is still consistent enough to serve, so take it.
        self.0
            .sessions
            .get(login)
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Publishes an event from a link (updating it from the call table: direction). Never waits.
    /// Returns false when no Login ID holds the device.
    pub fn publish(&self, ev: &mut Event) -> bool {
        let key = DeviceKey {
            pbx: ev.pbx.clone(),
            device: ev.device.clone(),
        };
        let Some(login) = self.0.registry.login_at(&key) else {
            metrics::counter!("ctigate_hub_unrouted_events_total", "link" => ev.pbx.to_string())
                .increment(1);
            return false;
        };
        let Some(mut s) = self.session(login) else {
            return false;
        };
        s.calls.apply(ev);
        s.seq += 1;
        let seq = s.seq;
        let json = message::event(login, seq, ev);
        if s.ring.len() == self.0.ring_size {
            s.ring.pop_front();
        }
        s.ring.push_back((seq, json.clone()));
        s.broadcast(json, Some(ev.received));
        // `key.pbx` is `ev.pbx`: the registry found the Login ID by it.
        let s = &mut *s;
        s.events
            .get_or_insert_with(
                || metrics::counter!("ctigate_hub_events_total", "link" => s.key.pbx.to_string()),
            )
            .increment(1);
        true
    }

    /// Records whether a device is monitored and pushes the resulting status to its subscribers.
    pub fn set_device_status(&self, pbx: &Text, device: &Text, status: DeviceStatus) {
        let key = DeviceKey {
            pbx: pbx.clone(),
            device: device.clone(),
        };
        let Some(login) = self.0.registry.login_at(&key) else {
            return;
        };
        let Some(mut s) = self.session(login) else {
            return;
        };
        let new = match status {
            DeviceStatus::Monitored => (StatusLevel::Green, "monitored".to_string()),
            DeviceStatus::NotMonitored(r) => (StatusLevel::Yellow, r),
        };
        if s.status != new {
            s.status = new;
            let msg = s.status_message();
            s.broadcast(msg, None);
        }
    }

    /// Reconciles a device's calls with what the PBX reports after (re)monitoring: a call the hub
    /// thinks is up but the PBX does not know ended while the link was down, so a `call_lost` event
    /// closes it for the connectors.
    pub fn resync(&self, pbx: &Text, device: &Text, up: &[Text]) {
        let key = DeviceKey {
            pbx: pbx.clone(),
            device: device.clone(),
        };
        let Some(login) = self.0.registry.login_at(&key).cloned() else {
            return;
        };
        // A set once the snapshot is large (up to 4,096 calls), so this stays linear.
        let up_set: Option<std::collections::HashSet<&Text>> =
            (up.len() > 32).then(|| up.iter().collect());
        let is_up = |c: &Text| match &up_set {
            Some(set) => set.contains(c),
            None => up.contains(c),
        };
        let lost: Vec<Text> = match self.session(&login) {
            Some(s) => s.calls.call_ids().filter(|c| !is_up(c)).cloned().collect(),
            None => return,
        };
        for call in lost {
            let mut ev = Event::new(
                crate::model::EventKind::CallLost,
                Text::from_static("CallLost"),
                pbx.clone(),
                device.clone(),
            );
            ev.call_id = Some(call);
            ev.cause = Some(Text::from_static("resync"));
            self.publish(&mut ev);
        }
    }

    /// Current status of a Login ID.
    pub fn status(&self, login: &LoginId) -> Option<(StatusLevel, String)> {
        self.session(login).map(|s| s.status.clone())
    }

    /// Current `seq` of a Login ID.
    pub fn seq(&self, login: &LoginId) -> Option<u64> {
        self.session(login).map(|s| s.seq)
    }

    /// Calls up at a Login ID's device.
    pub fn calls(&self, login: &LoginId) -> Option<Vec<CallInfo>> {
        self.session(login).map(|s| s.calls.snapshot())
    }

    /// A new subscriber with the given queue bounds.
    pub fn new_subscriber(
        &self,
        connector: Arc<str>,
        max_messages: usize,
        max_bytes: usize,
    ) -> SubscriberRx {
        let id = self.0.next_sub.fetch_add(1, Ordering::Relaxed);
        Subscriber::channel(id, connector, max_messages, max_bytes)
    }

    /// Attaches `sub` to `login`. Queues, in order and atomically with respect to new events: the
    /// current status, then either the events after `resume` from the replay ring, or (no resume, or
    /// a resume the ring cannot serve) a `gap` when something was lost and a `snapshot` of the calls.
    pub fn subscribe(&self, sub: &Arc<Subscriber>, login: &LoginId, resume: Option<u64>) {
        let Some(mut s) = self.session(login) else {
            return;
        };
        let push = |json: Bytes| {
            sub.push(Outbound {
                json,
                ingress: None,
            })
        };
        push(s.status_message());
        let oldest = s.ring.front().map_or(s.seq + 1, |(q, _)| *q);
        match resume {
            Some(r) if r == s.seq => {}
            Some(r) if r < s.seq && r + 1 >= oldest => {
                for (q, json) in &s.ring {
                    if *q > r {
                        push(json.clone());
                    }
                }
            }
            Some(r) => {
                // The connector is ahead of us (the gateway restarted) or behind the ring.
                let (from, reason) = if r > s.seq {
                    (1, "seq_reset")
                } else {
                    (r + 1, "ring_overflow")
                };
                push(message::gap(login, from, s.seq, reason));
                push(message::snapshot(login, s.seq, &s.calls.snapshot()));
            }
            None => {
                push(message::snapshot(login, s.seq, &s.calls.snapshot()));
            }
        }
        s.subs.retain(|x| x.id != sub.id);
        s.subs.push(sub.clone());
    }

    /// Detaches `sub` from `login`.
    pub fn unsubscribe(&self, sub_id: u64, login: &LoginId) {
        if let Some(mut s) = self.session(login) {
            s.subs.retain(|x| x.id != sub_id);
        }
    }

    /// Subscribers attached to a Login ID.
    pub fn subscriber_count(&self, login: &LoginId) -> usize {
        self.session(login).map_or(0, |s| s.subs.len())
    }

    /// Registers the command queue of a PBX link.
    pub fn register_link(&self, pbx: Text, tx: mpsc::Sender<LinkRequest>) {
        self.0
            .links
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(pbx, tx);
    }

    /// Routes a command for `login` to its device's link. The Login ID must hold the device (it
    /// always acts on its own device) and, for commands on a call, the call must be at that device.
    pub fn command(
        &self,
        login: &LoginId,
        command: Command,
    ) -> Result<oneshot::Receiver<CommandResult>, CommandError> {
        let (pbx, device) = {
            let s = self.session(login).ok_or(CommandError::Forbidden)?;
            if s.status.0 != StatusLevel::Green {
                return Err(CommandError::NotMonitored(s.status.1.clone()));
            }
            for call in command.call_ids() {
                if !s.calls.call_ids().any(|c| c == call) {
                    return Err(CommandError::UnknownCall);
                }
            }
            (s.key.pbx.clone(), s.key.device.clone())
        };
        let tx = self
            .0
            .links
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&pbx)
            .cloned()
            .ok_or(CommandError::LinkDown)?;
        let (reply, rx) = oneshot::channel();
        tx.try_send(LinkRequest {
            device,
            command,
            reply,
        })
        .map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => CommandError::Busy,
            mpsc::error::TrySendError::Closed(_) => CommandError::LinkDown,
        })?;
        Ok(rx)
    }

    /// Kicks every subscriber (shutdown).
    pub fn kick_all(&self, reason: KickReason) {
        for m in self.0.sessions.values() {
            let s = m.lock().unwrap_or_else(|e| e.into_inner());
            for sub in &s.subs {
                sub.kick(reason);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ConnState, EventKind};

    fn hub(ring: usize) -> Hub {
        let cfg = Config::parse(&format!(
            r#"
[api]
listen = "127.0.0.1:0"
cert = "c"
key = "k"
[hub]
replay_ring = {ring}
[[pbx]]
name = "p"
protocol = "csta-xml"
mode = "dial"
address = "h:1"
tls = false
[[login]]
login_id = "AAA"
pbx = "p"
device = "100"
[[login]]
login_id = "BBB"
pbx = "p"
device = "200"
"#
        ))
        .unwrap();
        Hub::new(&cfg)
    }

    fn ev(device: &str, call: &str) -> Event {
        let mut e = Event::new(
            EventKind::Delivered,
            Text::from("DeliveredEvent"),
            Text::from("p"),
            Text::from(device),
        );
        e.call_id = Some(Text::from(call));
        e.state = Some(ConnState::Alerting);
        e
    }

    fn drain(rx: &mut SubscriberRx) -> Vec<serde_json::Value> {
        let mut v = vec![];
        while let Some(m) = rx.try_recv() {
            v.push(serde_json::from_slice(&m.json).unwrap());
        }
        v
    }

    fn id(s: &str) -> LoginId {
        LoginId::parse(s).unwrap()
    }

    #[test]
    fn routes_by_device_with_per_login_seq() {
        let h = hub(8);
        let mut a = h.new_subscriber(Arc::from("c"), 100, 1 << 20);
        h.subscribe(&a.sub, &id("AAA"), None);
        assert_eq!(drain(&mut a).len(), 2, "status + snapshot");
        assert!(h.publish(&mut ev("100", "1")));
        assert!(h.publish(&mut ev("200", "2")));
        assert!(h.publish(&mut ev("100", "3")));
        assert!(!h.publish(&mut ev("999", "4")));
        let got = drain(&mut a);
        let seqs: Vec<_> = got.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, vec![1, 2]);
        assert!(got.iter().all(|v| v["login_id"] == "AAA"));
        assert_eq!(h.seq(&id("BBB")), Some(1));
    }

    #[test]
    fn resync_closes_exactly_the_calls_a_snapshot_lacks_small_or_large() {
        for extra in [0usize, 100] {
            let h = hub(64);
            for c in ["a", "b", "c"] {
                h.publish(&mut ev("100", c));
            }
            let mut up: Vec<Text> = (0..extra).map(|i| Text::from(format!("x{i}"))).collect();
            up.extend([Text::from("a"), Text::from("c")]);
            h.resync(&Text::from("p"), &Text::from("100"), &up);
            let left: Vec<String> = h
                .calls(&id("AAA"))
                .unwrap()
                .iter()
                .map(|c| c.call_id.to_string())
                .collect();
            assert_eq!(left, ["a", "c"], "with {} calls in the snapshot", up.len());
        }
    }

    #[test]
    fn events_are_counted_per_link() {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let h = hub(8);
            h.publish(&mut ev("100", "1"));
            h.publish(&mut ev("200", "2"));
            h.publish(&mut ev("100", "3"));
            h.publish(&mut ev("999", "4"));
        });
        let out = handle.render();
        assert!(
            out.lines()
                .any(|l| l == r#"ctigate_hub_events_total{link="p"} 3"#),
            "{out}"
        );
        assert!(
            out.lines()
                .any(|l| l == r#"ctigate_hub_unrouted_events_total{link="p"} 1"#),
            "{out}"
        );
    }

    #[test]
    fn resume_from_ring_and_gap_when_too_old() {
        let h = hub(4);
        for i in 0..6 {
            h.publish(&mut ev("100", &i.to_string()));
        }
        // Ring holds seq 3..=6.
        let mut a = h.new_subscriber(Arc::from("c"), 100, 1 << 20);
        h.subscribe(&a.sub, &id("AAA"), Some(3));
        let got = drain(&mut a);
        assert_eq!(got[0]["type"], "status");
        let seqs: Vec<_> = got[1..]
            .iter()
            .map(|v| v["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, vec![4, 5, 6]);

        let mut b = h.new_subscriber(Arc::from("c"), 100, 1 << 20);
        h.subscribe(&b.sub, &id("AAA"), Some(1));
        let got = drain(&mut b);
        assert_eq!(got[1]["type"], "gap");
        assert_eq!(got[1]["from_seq"], 2);
        assert_eq!(got[1]["to_seq"], 6);
        assert_eq!(got[2]["type"], "snapshot");
        assert_eq!(got[2]["seq"], 6);
        assert_eq!(got[2]["calls"].as_array().unwrap().len(), 6);

        let mut c = h.new_subscriber(Arc::from("c"), 100, 1 << 20);
        h.subscribe(&c.sub, &id("AAA"), Some(6));
        assert_eq!(drain(&mut c).len(), 1, "up to date: status only");

        let mut d = h.new_subscriber(Arc::from("c"), 100, 1 << 20);
        h.subscribe(&d.sub, &id("AAA"), Some(60));
        let got = drain(&mut d);
        assert_eq!(got[1]["reason"], "seq_reset");
    }

    #[test]
    fn slow_subscriber_is_kicked_and_others_keep_receiving() {
        let h = hub(8);
        let slow = h.new_subscriber(Arc::from("c"), 4, 1 << 20);
        let mut fast = h.new_subscriber(Arc::from("c"), 1000, 1 << 20);
        h.subscribe(&slow.sub, &id("AAA"), Some(0));
        h.subscribe(&fast.sub, &id("AAA"), Some(0));
        drain(&mut fast);
        for i in 0..50 {
            h.publish(&mut ev("100", &i.to_string()));
        }
        assert_eq!(slow.sub.kick_reason(), Some(KickReason::SlowConsumer));
        assert_eq!(h.subscriber_count(&id("AAA")), 1);
        assert_eq!(drain(&mut fast).len(), 50);
    }

    #[test]
    fn status_changes_are_pushed_once() {
        let h = hub(8);
        let mut a = h.new_subscriber(Arc::from("c"), 100, 1 << 20);
        h.subscribe(&a.sub, &id("AAA"), Some(0));
        drain(&mut a);
        let p = Text::from("p");
        h.set_device_status(&p, &Text::from("100"), DeviceStatus::Monitored);
        h.set_device_status(&p, &Text::from("100"), DeviceStatus::Monitored);
        let got = drain(&mut a);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["status"], "green");
    }

    #[test]
    fn commands_check_status_and_call_ownership() {
        let h = hub(8);
        let login = id("AAA");
        assert!(matches!(
            h.command(&login, Command::MakeCall { to: "1".into() }),
            Err(CommandError::NotMonitored(_))
        ));
        let p = Text::from("p");
        h.set_device_status(&p, &Text::from("100"), DeviceStatus::Monitored);
        assert_eq!(
            h.command(&login, Command::MakeCall { to: "1".into() })
                .unwrap_err(),
            CommandError::LinkDown
        );
        let (tx, mut rx) = mpsc::channel(1);
        h.register_link(p.clone(), tx);
        let _r = h
            .command(&login, Command::MakeCall { to: "1".into() })
            .unwrap();
        assert_eq!(rx.try_recv().unwrap().device, "100");
        assert_eq!(
            h.command(
                &login,
                Command::Answer {
                    call_id: Text::from("x")
                }
            )
            .unwrap_err(),
            CommandError::UnknownCall
        );
        h.publish(&mut ev("100", "x"));
        let _r = h
            .command(
                &login,
                Command::Answer {
                    call_id: Text::from("x"),
                },
            )
            .unwrap();
        let _r2 = h.command(
            &login,
            Command::Answer {
                call_id: Text::from("x"),
            },
        );
        // Queue of 1 still holds the first command.
        assert!(matches!(_r2, Err(CommandError::Busy)));
    }
}
