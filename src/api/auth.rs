//! Connector credentials (bearer tokens stored as SHA-256) and the failed-authentication limiter.

use crate::config::ConnectorConfig;
use crate::model::LoginId;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// SHA-256 of a token, as hex (what `[[connector]].token_sha256` holds).
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh bearer token: 32 random bytes, hex.
pub fn generate_token() -> String {
    use rand::{RngCore, TryRngCore};
    let mut b = [0u8; 32];
    // The OS CSPRNG; failing to read it means the system is broken beyond repair.
    rand::rngs::OsRng.unwrap_err().fill_bytes(&mut b);
    hex::encode(b)
}

/// One connector credential.
#[derive(Debug)]
pub struct Credential {
    /// Name (logs, metrics).
    pub name: Arc<str>,
    all: bool,
    allowed: HashSet<String>,
    max_connections: usize,
    active: AtomicUsize,
}

impl Credential {
    /// May this credential serve `login`?
    pub fn may_serve(&self, login: &LoginId) -> bool {
        self.all || self.allowed.contains(&login.as_str().to_ascii_lowercase())
    }

    /// Takes a connection slot; `None` when the credential is at its limit.
    pub fn acquire(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let mut cur = self.active.load(Ordering::Acquire);
        loop {
            if cur >= self.max_connections {
                return None;
            }
            match self
                .active
                .compare_exchange(cur, cur + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(ConnectionSlot(self.clone())),
                Err(now) => cur = now,
            }
        }
    }

    /// Connections open with this credential.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }
}

/// A held connection slot; released on drop.
#[derive(Debug)]
pub struct ConnectionSlot(Arc<Credential>);

impl ConnectionSlot {
    /// The credential.
    pub fn credential(&self) -> &Arc<Credential> {
        &self.0
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// All credentials, by token hash.
#[derive(Debug, Default)]
pub struct Credentials {
    by_hash: HashMap<String, Arc<Credential>>,
}

impl Credentials {
    /// From validated config.
    pub fn from_config(connectors: &[ConnectorConfig]) -> Credentials {
        let by_hash = connectors
            .iter()
            .map(|c| {
                let cred = Credential {
                    name: Arc::from(c.name.as_str()),
                    all: c.login_ids.iter().any(|l| l == "*"),
                    allowed: c.login_ids.iter().map(|l| l.to_ascii_lowercase()).collect(),
                    max_connections: c.max_connections,
                    active: AtomicUsize::new(0),
                };
                (c.token_sha256.to_ascii_lowercase(), Arc::new(cred))
            })
            .collect();
        Credentials { by_hash }
    }

    /// The credential a bearer token belongs to.
    pub fn authenticate(&self, token: &str) -> Option<Arc<Credential>> {
        // Tokens are high-entropy random strings, so comparing their hashes by map lookup leaks
        // nothing useful through timing.
        self.by_hash.get(&token_hash(token)).cloned()
    }
}

/// Counts failed authentications per IP address in fixed one-minute windows.
#[derive(Debug)]
pub struct AuthLimiter {
    per_minute: u32,
    window: Duration,
    map: Mutex<HashMap<IpAddr, (Instant, u32)>>,
}

impl AuthLimiter {
    /// At most `per_minute` failures per address per minute.
    pub fn new(per_minute: u32) -> AuthLimiter {
        AuthLimiter {
            per_minute,
            window: Duration::from_secs(60),
            map: Mutex::new(HashMap::new()),
        }
    }

    /// True when `ip` has used up its failures for this window.
    pub fn is_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&ip) {
            Some((start, n)) => now.duration_since(*start) < self.window && *n >= self.per_minute,
            None => false,
        }
    }

    /// Records a failure from `ip`.
    pub fn failed(&self, ip: IpAddr, now: Instant) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            let w = self.window;
            map.retain(|_, (start, _)| now.duration_since(*start) < w);
        }
        let e = map.entry(ip).or_insert((now, 0));
        if now.duration_since(e.0) >= self.window {
            *e = (now, 0);
        }
        e.1 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_slots() {
        let token = generate_token();
        assert_eq!(token.len(), 64);
        let creds = Credentials::from_config(&[ConnectorConfig {
            name: "crm".into(),
            token_sha256: token_hash(&token).to_uppercase(),
            login_ids: vec!["ALICE".into()],
            max_connections: 1,
        }]);
        let c = creds.authenticate(&token).unwrap();
        assert!(creds.authenticate("wrong").is_none());
        assert!(c.may_serve(&LoginId::parse("alice").unwrap()));
        assert!(!c.may_serve(&LoginId::parse("BOB").unwrap()));
        let slot = c.acquire().unwrap();
        assert!(c.acquire().is_none());
        drop(slot);
        assert!(c.acquire().is_some());
    }

    #[test]
    fn limiter_blocks_after_n_failures_per_window() {
        let l = AuthLimiter::new(2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let t = Instant::now();
        assert!(!l.is_blocked(ip, t));
        l.failed(ip, t);
        l.failed(ip, t);
        assert!(l.is_blocked(ip, t));
        assert!(!l.is_blocked("10.0.0.2".parse().unwrap(), t));
        assert!(!l.is_blocked(ip, t + Duration::from_secs(61)));
    }
}
