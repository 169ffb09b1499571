//! A subscriber: one connector connection's bounded outbound queue.
//!
//! The queue is bounded in messages (the channel) and in bytes (a counter). A push that would exceed
//! either never waits: the subscriber is *kicked* with reason `slow_consumer`, so a slow connector
//! can never slow the PBX link or the other subscribers.

use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;
use tokio::sync::{Notify, mpsc};

/// One queued message: JSON text shared by every subscriber it goes to.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// The JSON text.
    pub json: Bytes,
    /// When the PBX frame behind it arrived (events only), for the latency histogram.
    pub ingress: Option<Instant>,
}

/// Why a subscriber was disconnected by the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KickReason {
    /// Its queue overflowed or a write took too long.
    SlowConsumer,
    /// The gateway is shutting down.
    Shutdown,
}

impl KickReason {
    /// The reason string sent to the connector.
    pub fn as_str(self) -> &'static str {
        match self {
            KickReason::SlowConsumer => "slow_consumer",
            KickReason::Shutdown => "shutdown",
        }
    }
}

/// The hub's side of a subscriber.
#[derive(Debug)]
pub struct Subscriber {
    /// Unique id.
    pub id: u64,
    /// Connector credential name, for metrics and logs.
    pub connector: Arc<str>,
    tx: mpsc::Sender<Outbound>,
    queued_bytes: AtomicUsize,
    max_bytes: usize,
    kicked: OnceLock<KickReason>,
    kicked_flag: AtomicBool,
    notify: Notify,
}

/// The connection's side: receives queued messages and learns when it was kicked.
#[derive(Debug)]
pub struct SubscriberRx {
    /// The shared state.
    pub sub: Arc<Subscriber>,
    rx: mpsc::Receiver<Outbound>,
}

impl Subscriber {
    /// A subscriber with a queue of `max_messages` and `max_bytes`.
    pub fn channel(
        id: u64,
        connector: Arc<str>,
        max_messages: usize,
        max_bytes: usize,
    ) -> SubscriberRx {
        let (tx, rx) = mpsc::channel(max_messages.max(1));
        let sub = Arc::new(Subscriber {
            id,
            connector,
            tx,
            queued_bytes: AtomicUsize::new(0),
            max_bytes,
            kicked: OnceLock::new(),
            kicked_flag: AtomicBool::new(false),
            notify: Notify::new(),
        });
        SubscriberRx { sub, rx }
    }

    /// Queues a message without waiting. Returns false (and kicks the subscriber) if it is full.
    pub fn push(&self, msg: Outbound) -> bool {
        if self.is_kicked() {
            return false;
        }
        let len = msg.json.len();
        let before = self.queued_bytes.fetch_add(len, Ordering::AcqRel);
        if before + len > self.max_bytes {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            self.kick(KickReason::SlowConsumer);
            return false;
        }
        if self.tx.try_send(msg).is_err() {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            self.kick(KickReason::SlowConsumer);
            return false;
        }
        true
    }

    /// Disconnects the subscriber; the first reason wins.
    pub fn kick(&self, reason: KickReason) {
        if self.kicked.set(reason).is_ok() {
            self.kicked_flag.store(true, Ordering::Release);
            if reason == KickReason::SlowConsumer {
                metrics::counter!("ctigate_slow_consumer_disconnects_total", "connector" => self.connector.to_string()).increment(1);
            }
            self.notify.notify_waiters();
            self.notify.notify_one();
        }
    }

    /// True once kicked.
    pub fn is_kicked(&self) -> bool {
        self.kicked_flag.load(Ordering::Acquire)
    }

    /// Why it was kicked, if it was.
    pub fn kick_reason(&self) -> Option<KickReason> {
        self.kicked.get().copied()
    }

    /// Messages queued now.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    /// Bytes queued now.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes.load(Ordering::Acquire)
    }
}

impl SubscriberRx {
    /// The next message, or the kick reason. Messages already queued when a kick happens are not
    /// delivered: a kicked connector resumes from its last `seq` instead.
    pub async fn recv(&mut self) -> Result<Outbound, KickReason> {
        loop {
            if let Some(r) = self.sub.kick_reason() {
                return Err(r);
            }
            let notified = self.sub.notify.notified();
            tokio::select! {
                biased;
                _ = notified => continue,
                m = self.rx.recv() => match m {
                    Some(m) => {
                        self.sub.queued_bytes.fetch_sub(m.json.len(), Ordering::AcqRel);
                        return Ok(m);
                    }
                    // Every sender is gone only if the hub dropped us; treat it as shutdown.
                    None => return Err(self.sub.kick_reason().unwrap_or(KickReason::Shutdown)),
                },
            }
        }
    }

    /// A queued message if one is ready now (for batching writes).
    pub fn try_recv(&mut self) -> Option<Outbound> {
        if self.sub.is_kicked() {
            return None;
        }
        let m = self.rx.try_recv().ok()?;
        self.sub
            .queued_bytes
            .fetch_sub(m.json.len(), Ordering::AcqRel);
        Some(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(n: usize) -> Outbound {
        Outbound {
            json: Bytes::from(vec![b'x'; n]),
            ingress: None,
        }
    }

    #[tokio::test]
    async fn message_bound_kicks() {
        let mut rx = Subscriber::channel(1, Arc::from("c"), 2, 1 << 20);
        assert!(rx.sub.push(msg(1)));
        assert!(rx.sub.push(msg(1)));
        assert!(!rx.sub.push(msg(1)));
        assert_eq!(rx.sub.kick_reason(), Some(KickReason::SlowConsumer));
        assert_eq!(rx.recv().await.unwrap_err(), KickReason::SlowConsumer);
    }

    #[tokio::test]
    async fn byte_bound_kicks_and_draining_frees_bytes() {
        let mut rx = Subscriber::channel(1, Arc::from("c"), 100, 10);
        assert!(rx.sub.push(msg(6)));
        assert_eq!(rx.sub.queued_bytes(), 6);
        rx.recv().await.unwrap();
        assert_eq!(rx.sub.queued_bytes(), 0);
        assert!(rx.sub.push(msg(6)));
        assert!(!rx.sub.push(msg(6)));
        assert!(rx.sub.is_kicked());
    }

    #[tokio::test]
    async fn kick_wakes_a_waiting_receiver() {
        let mut rx = Subscriber::channel(1, Arc::from("c"), 4, 1024);
        let sub = rx.sub.clone();
        let h = tokio::spawn(async move { rx.recv().await });
        tokio::task::yield_now().await;
        sub.kick(KickReason::Shutdown);
        assert_eq!(h.await.unwrap().unwrap_err(), KickReason::Shutdown);
    }
}
