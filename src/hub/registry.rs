//! The Login ID registry: who exists, their user-name aliases, and which device each one holds.

use crate::config::Config;
use crate::model::{LoginId, Text};
use std::collections::HashMap;

/// A device on a PBX.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceKey {
    /// PBX link name.
    pub pbx: Text,
    /// Device as configured.
    pub device: Text,
}

/// Login IDs, aliases and device leases, built from config.
#[derive(Debug, Default)]
pub struct Registry {
    logins: HashMap<LoginId, DeviceKey>,
    by_device: HashMap<DeviceKey, LoginId>,
    by_user: HashMap<String, LoginId>,
    /// Lower-cased Login ID → canonical, so lookups are case-insensitive like uniqueness.
    by_lower: HashMap<String, LoginId>,
}

impl Registry {
    /// Builds the registry from a validated config.
    pub fn from_config(cfg: &Config) -> Registry {
        let mut r = Registry::default();
        for l in &cfg.login {
            // Validation already checked the format; skip anything invalid rather than panic.
            let Ok(id) = LoginId::parse(&l.login_id) else {
                continue;
            };
            let key = DeviceKey {
                pbx: Text::from(l.pbx.as_str()),
                device: Text::from(l.device.as_str()),
            };
            r.by_device.insert(key.clone(), id.clone());
            r.logins.insert(id.clone(), key);
            r.by_lower
                .insert(l.login_id.to_ascii_lowercase(), id.clone());
            if let Some(u) = &l.user_name {
                r.by_user.insert(u.to_ascii_lowercase(), id.clone());
            }
        }
        r
    }

    /// Resolves a Login ID or a user-name alias to the canonical Login ID.
    pub fn resolve(&self, name: &str) -> Option<LoginId> {
        let lower = name.to_ascii_lowercase();
        self.by_lower
            .get(&lower)
            .or_else(|| self.by_user.get(&lower))
            .cloned()
    }

    /// The device a Login ID holds.
    pub fn device_of(&self, id: &LoginId) -> Option<&DeviceKey> {
        self.logins.get(id)
    }

    /// The Login ID holding a device.
    pub fn login_at(&self, key: &DeviceKey) -> Option<&LoginId> {
        self.by_device.get(key)
    }

    /// All Login IDs.
    pub fn logins(&self) -> impl Iterator<Item = (&LoginId, &DeviceKey)> {
        self.logins.iter()
    }

    /// Number of Login IDs.
    pub fn len(&self) -> usize {
        self.logins.len()
    }

    /// True when no Login ID is configured.
    pub fn is_empty(&self) -> bool {
        self.logins.is_empty()
    }
}
