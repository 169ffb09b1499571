//! Configuration: the TOML file, its types, and the validation pass.
//!
//! Parsing rejects unknown keys. [`Config::validate`] then checks what the types cannot (Login ID
//! format and uniqueness, references between sections, addresses, files) and reports every problem,
//! each naming its key.

use crate::model::{LoginId, NumberingPlan};
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Connector-facing API.
    pub api: ApiConfig,
    /// Ops listener (metrics, health).
    #[serde(default)]
    pub ops: OpsConfig,
    /// Session hub.
    #[serde(default)]
    pub hub: HubConfig,
    /// PBX links.
    #[serde(default)]
    pub pbx: Vec<PbxConfig>,
    /// Login IDs and their default devices.
    #[serde(default)]
    pub login: Vec<LoginConfig>,
    /// Connector credentials.
    #[serde(default)]
    pub connector: Vec<ConnectorConfig>,
}

/// `[api]`: the WebSocket-over-TLS listener connectors use.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address to listen on, e.g. `0.0.0.0:8443`.
    pub listen: String,
    /// Server certificate chain (PEM).
    pub cert: PathBuf,
    /// Server private key (PEM).
    pub key: PathBuf,
    /// When set, connectors must present a client certificate issued by this CA (PEM).
    pub client_ca: Option<PathBuf>,
    /// Messages a connection may have queued before it is disconnected as `slow_consumer`.
    #[serde(default = "default_queue_messages")]
    pub queue_messages: usize,
    /// Bytes a connection may have queued before it is disconnected as `slow_consumer`.
    #[serde(default = "default_queue_bytes")]
    pub queue_bytes: usize,
    /// A single write to a connector taking longer than this disconnects it as `slow_consumer`.
    #[serde(default = "default_write_timeout_ms")]
    pub write_timeout_ms: u64,
    /// Time a new connection has to complete TLS, the WebSocket upgrade and `hello`.
    #[serde(default = "default_hello_timeout_ms")]
    pub hello_timeout_ms: u64,
    /// Time a call-control command may take before the connector gets a `timeout` result.
    #[serde(default = "default_command_timeout_ms")]
    pub command_timeout_ms: u64,
    /// Concurrent connections over all connectors.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Failed authentications from one IP address per minute before further attempts are refused.
    #[serde(default = "default_auth_failures_per_minute")]
    pub auth_failures_per_minute: u32,
    /// Kernel send buffer per connector connection, bytes (0: the kernel's autotuning, up to
    /// several MiB per connection). Bounds what piles up in the kernel before `queue_*` notice a
    /// slow consumer, and the memory 10,000 connections can take.
    #[serde(default = "default_socket_send_buffer")]
    pub socket_send_buffer_bytes: usize,
}

fn default_socket_send_buffer() -> usize {
    256 * 1024
}

fn default_queue_messages() -> usize {
    4096
}
fn default_queue_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_write_timeout_ms() -> u64 {
    10_000
}
fn default_hello_timeout_ms() -> u64 {
    10_000
}
fn default_command_timeout_ms() -> u64 {
    10_000
}
fn default_max_connections() -> usize {
    10_000
}
fn default_auth_failures_per_minute() -> u32 {
    10
}

/// `[ops]`: metrics and health endpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpsConfig {
    /// Address of the plain-HTTP ops listener; keep it on a management network.
    #[serde(default = "default_ops_listen")]
    pub listen: String,
}

impl Default for OpsConfig {
    fn default() -> Self {
        OpsConfig {
            listen: default_ops_listen(),
        }
    }
}

fn default_ops_listen() -> String {
    "127.0.0.1:9464".into()
}

/// `[hub]`: session multiplexer settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// Events kept per Login ID for connectors that resume.
    #[serde(default = "default_replay_ring")]
    pub replay_ring: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            replay_ring: default_replay_ring(),
        }
    }
}

fn default_replay_ring() -> usize {
    1024
}

/// PBX protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// ECMA-323 CSTA XML over TCP/TLS with the 8-byte header.
    CstaXml,
}

impl Protocol {
    /// Name for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::CstaXml => "csta-xml",
        }
    }
}

/// Who opens the TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LinkMode {
    /// The gateway dials the PBX.
    Dial,
    /// The PBX (or relay) dials the gateway.
    Accept,
}

/// How a CSTA XML session is opened and kept alive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Dialect {
    /// OpenScape Voice style: the switch sends `SystemStatus`, we answer and send `SystemRegister`.
    #[default]
    Osv,
    /// The gateway opens with `RequestSystemStatus`, then monitors.
    RequestSystemStatus,
    /// ECMA-354 application session (Avaya DMCC shape): `StartApplicationSession` with a user and
    /// password, `ResetApplicationSessionTimer` at half the granted duration,
    /// `StopApplicationSession` on shutdown.
    #[serde(rename = "ecma354")]
    Ecma354,
}

impl Dialect {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Osv => "osv",
            Dialect::RequestSystemStatus => "request-system-status",
            Dialect::Ecma354 => "ecma354",
        }
    }
}

/// A certificate that has expired or expires soon ([`Config::certificate_expiries`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertExpiry {
    /// The key naming the file (`api.cert`, `pbx[0].tls_ca`).
    pub key: String,
    /// The file.
    pub path: PathBuf,
    /// Expiry, seconds since the Unix epoch.
    pub not_after: i64,
    /// Already expired.
    pub expired: bool,
}

/// An address or a CIDR block (`10.0.0.5`, `10.1.0.0/16`, `fd00::/8`), for `accept_from`.
/// IPv4 peers seen through a dual-stack listener (`::ffff:10.0.0.5`) match IPv4 ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct IpRange {
    /// The network address, host bits cleared.
    net: IpAddr,
    /// Prefix length: 0–32 for IPv4, 0–128 for IPv6.
    prefix: u8,
}

impl IpRange {
    /// Whether `ip` is inside the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => u32::from(n) == u32::from(a) & v4_mask(self.prefix),
            (IpAddr::V6(n), IpAddr::V6(a)) => u128::from(n) == u128::from(a) & v6_mask(self.prefix),
            _ => false,
        }
    }

    /// Whether any range of `ranges` holds `ip`; an empty list admits everyone.
    pub fn admits(ranges: &[IpRange], ip: IpAddr) -> bool {
        ranges.is_empty() || ranges.iter().any(|r| r.contains(ip))
    }
}

fn v4_mask(prefix: u8) -> u32 {
    // `checked_shl` because a shift by 32 overflows; prefix 0 is the whole space.
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn v6_mask(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl TryFrom<String> for IpRange {
    type Error = String;

    fn try_from(s: String) -> Result<IpRange, String> {
        s.parse()
    }
}

impl std::str::FromStr for IpRange {
    type Err = String;

    fn from_str(s: &str) -> Result<IpRange, String> {
        let bad = || {
            format!("{s:?} is not an IP address or CIDR block (10.0.0.5, 10.1.0.0/16, fd00::/8)")
        };
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(format!("{s:?}: the prefix length must be 0 to {max}")),
            },
        };
        // Peers are matched in their canonical form (`::ffff:10.0.0.5` is 10.0.0.5), so a range
        // written IPv4-mapped is kept as the IPv4 range it means.
        let (ip, prefix) = match ip {
            IpAddr::V6(a) if prefix >= 96 => match a.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), prefix - 96),
                None => (ip, prefix),
            },
            _ => (ip, prefix),
        };
        let net = match ip {
            IpAddr::V4(a) => IpAddr::V4((u32::from(a) & v4_mask(prefix)).into()),
            IpAddr::V6(a) => IpAddr::V6((u128::from(a) & v6_mask(prefix)).into()),
        };
        if net != ip {
            // `10.1.2.3/16` is more likely a typo than a wish for 10.1.0.0/16.
            return Err(format!(
                "{s:?} has host bits set; did you mean {net}/{prefix}?"
            ));
        }
        Ok(IpRange { net, prefix })
    }
}

impl fmt::Display for IpRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

/// `[[pbx]]`: one PBX link.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PbxConfig {
    /// Unique name, used in logs, metrics and `[[login]].pbx`.
    pub name: String,
    /// Wire protocol.
    pub protocol: Protocol,
    /// Dial the PBX or accept its connection.
    pub mode: LinkMode,
    /// `host:port` to dial, or the address to listen on in accept mode.
    pub address: String,
    /// Session dialect.
    #[serde(default)]
    pub dialect: Dialect,
    /// ECMA-323 namespace for what we send: `ed2`…`ed6`, `none`, or a full URI.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// TLS on this link. `false` runs plain TCP and logs a warning at start.
    #[serde(default = "default_true")]
    pub tls: bool,
    /// Dial: CA certificates (PEM) that sign the PBX's certificate. Required when dialing with TLS.
    pub tls_ca: Option<PathBuf>,
    /// Dial: name to verify in the PBX's certificate; defaults to the host of `address`.
    pub tls_server_name: Option<String>,
    /// Dial: optional client certificate; accept: the server certificate (required).
    pub tls_cert: Option<PathBuf>,
    /// Key for `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Accept: require the PBX to present a certificate signed by this CA.
    pub tls_client_ca: Option<PathBuf>,
    /// Accept: the only addresses the PBX may connect from (`10.0.0.5`, `10.1.0.0/16`, `fd00::/8`).
    /// A connection from anywhere else is closed before TLS and before anything is sent. Empty:
    /// any address.
    #[serde(default)]
    pub accept_from: Vec<IpRange>,
    /// Devices to monitor besides those of `[[login]]` entries on this PBX.
    #[serde(default)]
    pub devices: Vec<String>,
    /// Largest frame accepted, in bytes (header included, at most 65535).
    #[serde(default = "default_max_frame_bytes")]
    pub max_frame_bytes: usize,
    /// MonitorStart requests per second at start and after every reconnect.
    #[serde(default = "default_monitor_rate")]
    pub monitor_rate: u32,
    /// Send a keep-alive after this much silence; two unanswered ones drop the link.
    #[serde(default = "default_keepalive_secs")]
    pub keepalive_secs: u64,
    /// Time the PBX has to answer a request.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Time to wait for the session to be established after connecting.
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
    /// First reconnect delay; doubles up to `reconnect_max_ms`, with jitter.
    #[serde(default = "default_reconnect_min_ms")]
    pub reconnect_min_ms: u64,
    /// Longest reconnect delay.
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
    /// Numbering plan used to classify numbers and derive E.164.
    #[serde(default)]
    pub numbering: NumberingConfig,
    /// ECMA-354: `applicationID` sent in `StartApplicationSession`.
    #[serde(default = "default_application_id")]
    pub application_id: String,
    /// ECMA-354: session login user name.
    pub session_user: Option<String>,
    /// ECMA-354: session login password (prefer `session_password_env`).
    pub session_password: Option<String>,
    /// ECMA-354: name of the environment variable holding the session password.
    pub session_password_env: Option<String>,
    /// ECMA-354: protocol version to request (a namespace URI or a DMCC version string such as
    /// `http://www.ecma-international.org/standards/ecma-323/csta/ed3/priv2`); defaults to the
    /// `namespace` URI.
    pub protocol_version: Option<String>,
    /// ECMA-354: session duration to request, seconds; the timer is reset at half of what the switch
    /// grants.
    #[serde(default = "default_session_duration_secs")]
    pub session_duration_secs: u32,
}

impl PbxConfig {
    /// The ECMA-354 session password, from the file or the named environment variable.
    pub fn session_password(&self) -> Option<String> {
        match (&self.session_password, &self.session_password_env) {
            (Some(p), _) => Some(p.clone()),
            (None, Some(var)) => std::env::var(var).ok(),
            (None, None) => None,
        }
    }
}

fn default_application_id() -> String {
    "ctigate".into()
}
fn default_session_duration_secs() -> u32 {
    180
}

fn default_namespace() -> String {
    "ed4".into()
}
fn default_true() -> bool {
    true
}
fn default_max_frame_bytes() -> usize {
    65_535
}
fn default_monitor_rate() -> u32 {
    20
}
fn default_keepalive_secs() -> u64 {
    30
}
fn default_request_timeout_ms() -> u64 {
    10_000
}
fn default_handshake_timeout_ms() -> u64 {
    15_000
}
fn default_reconnect_min_ms() -> u64 {
    500
}
fn default_reconnect_max_ms() -> u64 {
    30_000
}

/// `[pbx.numbering]`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NumberingConfig {
    /// Country calling code without `+`, e.g. `"49"`.
    pub country_code: Option<String>,
    /// Outside-line prefix the PBX puts in front of external numbers, e.g. `"0"`.
    pub outside_prefix: Option<String>,
    /// National trunk prefix (default `"0"`).
    pub national_prefix: Option<String>,
    /// International prefix (default `"00"`).
    pub international_prefix: Option<String>,
    /// Longest internal extension (default 6).
    pub extension_max_len: Option<usize>,
}

impl NumberingConfig {
    /// The plan with defaults applied.
    pub fn plan(&self) -> NumberingPlan {
        let d = NumberingPlan::default();
        NumberingPlan {
            country_code: self.country_code.clone(),
            outside_prefix: self.outside_prefix.clone(),
            national_prefix: self.national_prefix.clone().unwrap_or(d.national_prefix),
            international_prefix: self
                .international_prefix
                .clone()
                .unwrap_or(d.international_prefix),
            extension_max_len: self.extension_max_len.unwrap_or(d.extension_max_len),
        }
    }
}

/// `[[login]]`: a Login ID and its default device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginConfig {
    /// The Login ID (ASCII letters and digits).
    pub login_id: String,
    /// Name of the `[[pbx]]` the device is on.
    pub pbx: String,
    /// The device (extension) as the PBX names it.
    pub device: String,
    /// Optional CRM user name (e.g. an e-mail) connectors may use instead of the Login ID.
    pub user_name: Option<String>,
}

/// `[[connector]]`: a connector credential.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    /// Name, used in logs and metrics.
    pub name: String,
    /// SHA-256 of the bearer token, hex (`ctigate token new` prints both).
    pub token_sha256: String,
    /// Login IDs this credential may serve; `["*"]` for all.
    pub login_ids: Vec<String>,
    /// Concurrent connections allowed with this credential.
    #[serde(default = "default_connector_max_connections")]
    pub max_connections: usize,
}

fn default_connector_max_connections() -> usize {
    8
}

/// One problem found in a configuration: the key and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key, e.g. `login[2].login_id`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Loading a configuration failed.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown or mistyped keys.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and key.
        message: String,
    },
    /// The validation pass found problems.
    #[error("{path}: {} problem(s):\n{}", problems.len(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

impl Config {
    /// Reads, parses and validates a configuration file. Relative paths in it are resolved against
    /// the file's directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut cfg = Config::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })?;
        if let Some(dir) = path.parent() {
            cfg.resolve_paths(dir);
        }
        let problems = cfg.validate();
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            })
        }
    }

    /// The certificates this configuration names (the first certificate of each certificate and
    /// CA file) that have expired or expire within `soon`, soonest first. Not a validation
    /// problem: a running gateway keeps serving with them (and logs them), but `check-config`
    /// refuses an expired one and warns about the others.
    pub fn certificate_expiries(&self, soon: std::time::Duration) -> Vec<CertExpiry> {
        let mut files: Vec<(String, &PathBuf)> = vec![("api.cert".into(), &self.api.cert)];
        if let Some(ca) = &self.api.client_ca {
            files.push(("api.client_ca".into(), ca));
        }
        for (i, p) in self.pbx.iter().enumerate().filter(|(_, p)| p.tls) {
            for (name, f) in [
                ("tls_ca", &p.tls_ca),
                ("tls_cert", &p.tls_cert),
                ("tls_client_ca", &p.tls_client_ca),
            ] {
                if let Some(f) = f {
                    files.push((format!("pbx[{i}].{name}"), f));
                }
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let mut out: Vec<CertExpiry> = files
            .into_iter()
            .filter_map(|(key, path)| {
                let info = crate::tls::cert_info(path).ok()?;
                (info.not_after - now < soon.as_secs() as i64).then(|| CertExpiry {
                    key,
                    path: path.clone(),
                    not_after: info.not_after,
                    expired: info.not_after <= now,
                })
            })
            .collect();
        out.sort_by_key(|c| c.not_after);
        out
    }

    /// Parses TOML text (no validation).
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    fn resolve_paths(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        fix(&mut self.api.cert);
        fix(&mut self.api.key);
        if let Some(p) = &mut self.api.client_ca {
            fix(p);
        }
        for pbx in &mut self.pbx {
            for p in [
                &mut pbx.tls_ca,
                &mut pbx.tls_cert,
                &mut pbx.tls_key,
                &mut pbx.tls_client_ca,
            ]
            .into_iter()
            .flatten()
            {
                fix(p);
            }
        }
    }

    /// Checks everything the types do not; returns every problem (empty when valid).
    pub fn validate(&self) -> Vec<Problem> {
        let mut v = Validator::default();
        v.addr("api.listen", &self.api.listen);
        v.addr("ops.listen", &self.ops.listen);
        v.file("api.cert", Some(&self.api.cert));
        v.file("api.key", Some(&self.api.key));
        v.file("api.client_ca", self.api.client_ca.as_ref());
        v.ca_file("api.client_ca", self.api.client_ca.as_ref(), true);
        v.cert_and_key(
            ["api.cert", "api.key"],
            Some(&self.api.cert),
            Some(&self.api.key),
        );
        v.positive("api.queue_messages", self.api.queue_messages);
        if self.api.queue_bytes < 4096 {
            v.push("api.queue_bytes", "must be at least 4096");
        }
        v.positive("api.max_connections", self.api.max_connections);
        v.positive("hub.replay_ring", self.hub.replay_ring);

        let mut pbx_names = HashSet::new();
        for (i, p) in self.pbx.iter().enumerate() {
            let k = |f: &str| format!("pbx[{i}].{f}");
            if !valid_name(&p.name) {
                v.push(
                    k("name"),
                    format!(
                        "{:?} must be 1-64 ASCII letters, digits, '-' or '_'",
                        p.name
                    ),
                );
            } else if !pbx_names.insert(p.name.as_str()) {
                v.push(
                    k("name"),
                    format!("{:?} is used by another [[pbx]]", p.name),
                );
            }
            match p.mode {
                LinkMode::Dial => {
                    if split_host_port(&p.address).is_none() {
                        v.push(k("address"), format!("{:?} is not host:port", p.address));
                    }
                }
                LinkMode::Accept => v.addr(&k("address"), &p.address),
            }
            if p.mode == LinkMode::Dial && !p.accept_from.is_empty() {
                v.push(k("accept_from"), "only applies to mode = \"accept\"");
            }
            if p.mode == LinkMode::Accept
                && p.dialect == Dialect::Ecma354
                && p.tls_client_ca.is_none()
                && p.accept_from.is_empty()
            {
                // The gateway opens an ECMA-354 session with the login on every connection it
                // accepts, so an open port would hand the password to anyone who connects.
                v.push(
                    k("accept_from"),
                    "accept mode with dialect = \"ecma354\" sends session_user and the password to whoever connects: set accept_from to the PBX's addresses, or tls_client_ca to require its certificate",
                );
            }
            if let Err(e) = namespace_uri(&p.namespace) {
                v.push(k("namespace"), e);
            }
            if p.tls {
                match p.mode {
                    LinkMode::Dial => {
                        if p.tls_ca.is_none() {
                            v.push(k("tls_ca"), "required to verify the PBX when dialing with TLS (or set tls = false)");
                        }
                        if p.tls_client_ca.is_some() {
                            v.push(k("tls_client_ca"), "only applies to mode = \"accept\"");
                        }
                    }
                    LinkMode::Accept => {
                        if p.tls_cert.is_none() || p.tls_key.is_none() {
                            v.push(k("tls_cert"), "tls_cert and tls_key are required to accept TLS connections (or set tls = false)");
                        }
                        if p.tls_ca.is_some() || p.tls_server_name.is_some() {
                            v.push(k("tls_ca"), "tls_ca and tls_server_name only apply to mode = \"dial\"; use tls_client_ca to verify the PBX");
                        }
                    }
                }
                if p.tls_cert.is_some() != p.tls_key.is_some() {
                    v.push(k("tls_key"), "tls_cert and tls_key go together");
                }
                v.file(&k("tls_ca"), p.tls_ca.as_ref());
                v.file(&k("tls_cert"), p.tls_cert.as_ref());
                v.file(&k("tls_key"), p.tls_key.as_ref());
                v.file(&k("tls_client_ca"), p.tls_client_ca.as_ref());
                // A dialing link trusts `tls_ca`; an accepting one verifies the PBX with
                // `tls_client_ca`. Validation above refuses each in the other mode.
                v.ca_file(&k("tls_ca"), p.tls_ca.as_ref(), false);
                v.ca_file(&k("tls_client_ca"), p.tls_client_ca.as_ref(), true);
                v.cert_and_key(
                    [&k("tls_cert"), &k("tls_key")],
                    p.tls_cert.as_ref(),
                    p.tls_key.as_ref(),
                );
            } else if p.tls_ca.is_some() || p.tls_cert.is_some() || p.tls_client_ca.is_some() {
                v.push(
                    k("tls"),
                    "is false but TLS files are configured; remove them or set tls = true",
                );
            }
            if !(64..=65_535).contains(&p.max_frame_bytes) {
                v.push(k("max_frame_bytes"), "must be between 64 and 65535");
            }
            if p.dialect == Dialect::Ecma354 {
                if p.session_user
                    .as_deref()
                    .is_none_or(|u| u.trim().is_empty())
                {
                    v.push(k("session_user"), "required with dialect = \"ecma354\"");
                }
                match (&p.session_password, &p.session_password_env) {
                    (None, None) => v.push(
                        k("session_password_env"),
                        "dialect = \"ecma354\" needs session_password_env (or session_password)",
                    ),
                    (Some(_), Some(_)) => v.push(
                        k("session_password"),
                        "set session_password or session_password_env, not both",
                    ),
                    (None, Some(var)) if std::env::var_os(var).is_none() => v.push(
                        k("session_password_env"),
                        format!("environment variable {var:?} is not set"),
                    ),
                    _ => {}
                }
                if !(10..=86_400).contains(&p.session_duration_secs) {
                    v.push(k("session_duration_secs"), "must be between 10 and 86400");
                }
            } else if p.session_user.is_some()
                || p.session_password.is_some()
                || p.session_password_env.is_some()
                || p.protocol_version.is_some()
            {
                v.push(
                    k("dialect"),
                    format!(
                        "session_user, session_password(_env) and protocol_version only apply to dialect = \"ecma354\" (this link is {:?})",
                        p.dialect.as_str()
                    ),
                );
            }
            v.positive(&k("monitor_rate"), p.monitor_rate as usize);
            v.positive(&k("keepalive_secs"), p.keepalive_secs as usize);
            v.positive(&k("request_timeout_ms"), p.request_timeout_ms as usize);
            if p.reconnect_min_ms == 0 || p.reconnect_min_ms > p.reconnect_max_ms {
                v.push(
                    k("reconnect_min_ms"),
                    "must be positive and not above reconnect_max_ms",
                );
            }
            let mut seen = HashSet::new();
            for (j, d) in p.devices.iter().enumerate() {
                if d.trim().is_empty() {
                    v.push(k(&format!("devices[{j}]")), "must not be empty");
                } else if !seen.insert(d) {
                    v.push(
                        k(&format!("devices[{j}]")),
                        format!("{d:?} is listed twice"),
                    );
                }
            }
        }

        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut devices: HashMap<(&str, &str), usize> = HashMap::new();
        let mut user_names: HashMap<String, usize> = HashMap::new();
        for (i, l) in self.login.iter().enumerate() {
            let k = |f: &str| format!("login[{i}].{f}");
            match LoginId::parse(&l.login_id) {
                Err(e) => v.push(k("login_id"), format!("{:?}: {e}", l.login_id)),
                Ok(_) => {
                    // Case-insensitive: IDs that differ only by case are too easy to confuse.
                    if let Some(j) = ids.insert(l.login_id.to_ascii_lowercase(), i) {
                        v.push(
                            k("login_id"),
                            format!("{:?} is already used by login[{j}] (Login IDs are unique, case-insensitively)", l.login_id),
                        );
                    }
                }
            }
            if !pbx_names.contains(l.pbx.as_str()) {
                v.push(k("pbx"), format!("no [[pbx]] is named {:?}", l.pbx));
            }
            if l.device.trim().is_empty() {
                v.push(k("device"), "must not be empty");
            } else if let Some(j) = devices.insert((l.pbx.as_str(), l.device.as_str()), i) {
                v.push(
                    k("device"),
                    format!("device {:?} on {:?} is already leased to login[{j}]; a device belongs to one Login ID at a time", l.device, l.pbx),
                );
            }
            if let Some(u) = &l.user_name {
                if u.trim().is_empty() {
                    v.push(k("user_name"), "must not be empty when set");
                } else if let Some(j) = user_names.insert(u.to_ascii_lowercase(), i) {
                    v.push(
                        k("user_name"),
                        format!("{u:?} is already used by login[{j}]"),
                    );
                }
            }
        }
        for (i, l) in self.login.iter().enumerate() {
            if let Some(u) = &l.user_name
                && let Some(&j) = ids.get(&u.to_ascii_lowercase())
            {
                v.push(
                    format!("login[{i}].user_name"),
                    format!("{u:?} is the Login ID of login[{j}]"),
                );
            }
        }

        let mut names = HashSet::new();
        let mut tokens = HashSet::new();
        for (i, c) in self.connector.iter().enumerate() {
            let k = |f: &str| format!("connector[{i}].{f}");
            if !valid_name(&c.name) {
                v.push(
                    k("name"),
                    format!(
                        "{:?} must be 1-64 ASCII letters, digits, '-' or '_'",
                        c.name
                    ),
                );
            } else if !names.insert(c.name.as_str()) {
                v.push(
                    k("name"),
                    format!("{:?} is used by another [[connector]]", c.name),
                );
            }
            let t = c.token_sha256.to_ascii_lowercase();
            if t.len() != 64 || !t.bytes().all(|b| b.is_ascii_hexdigit()) {
                v.push(
                    k("token_sha256"),
                    "must be the 64 hex digits of a SHA-256 (`ctigate token new` prints one)",
                );
            } else if !tokens.insert(t) {
                v.push(
                    k("token_sha256"),
                    "is the same token as another [[connector]]; give each its own",
                );
            }
            if c.login_ids.is_empty() {
                v.push(
                    k("login_ids"),
                    "must list the Login IDs it may serve, or [\"*\"]",
                );
            }
            for (j, id) in c.login_ids.iter().enumerate() {
                if id == "*" {
                    continue;
                }
                if !ids.contains_key(&id.to_ascii_lowercase()) {
                    v.push(
                        k(&format!("login_ids[{j}]")),
                        format!("{id:?} is not a configured [[login]].login_id"),
                    );
                }
            }
            v.positive(&k("max_connections"), c.max_connections);
        }
        v.problems
    }

    /// Devices to monitor on `pbx`: its own `devices` plus every login's device there, in order,
    /// without duplicates.
    pub fn devices_of(&self, pbx: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        if let Some(p) = self.pbx.iter().find(|p| p.name == pbx) {
            out.extend(p.devices.iter().cloned());
        }
        for l in self.login.iter().filter(|l| l.pbx == pbx) {
            if !out.contains(&l.device) {
                out.push(l.device.clone());
            }
        }
        out
    }
}

/// The namespace URI for a `namespace` setting (`ed2`…`ed6`, `none`, or a URI).
pub fn namespace_uri(s: &str) -> Result<String, String> {
    use crate::codec::xml::encode::ns;
    Ok(match s {
        "ed2" => ns::ED2.into(),
        "ed3" => ns::ED3.into(),
        "ed4" => ns::ED4.into(),
        "ed5" => ns::ED5.into(),
        "ed6" => ns::ED6.into(),
        "none" => String::new(),
        u if u.starts_with("http://") || u.starts_with("https://") || u.starts_with("urn:") => {
            u.into()
        }
        other => {
            return Err(format!(
                "{other:?} is not ed2, ed3, ed4, ed5, ed6, none or a namespace URI"
            ));
        }
    })
}

/// Splits `host:port` (IPv6 as `[::1]:port`).
pub fn split_host_port(s: &str) -> Option<(&str, u16)> {
    let (host, port) = s.rsplit_once(':')?;
    let port = port.parse().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        None
    } else {
        Some((host, port))
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[derive(Default)]
struct Validator {
    problems: Vec<Problem>,
}

impl Validator {
    fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            key: key.into(),
            message: message.into(),
        });
    }

    fn addr(&mut self, key: &str, s: &str) {
        if s.parse::<SocketAddr>().is_err() {
            self.push(key, format!("{s:?} is not an IP:port socket address"));
        }
    }

    fn file(&mut self, key: &str, p: Option<&PathBuf>) {
        if let Some(p) = p
            && !p.is_file()
        {
            self.push(
                key,
                format!("{} does not exist or is not a file", p.display()),
            );
        }
    }

    /// Loads a CA file as the gateway will: a root store for a dialing link, a client
    /// certificate verifier for a listener (`verifier`). Together with [`Validator::cert_and_key`]
    /// this reports a file that is not PEM or a key of another certificate under the key naming
    /// the file at fault, here rather than at start or at a reload. A missing file is
    /// [`Validator::file`]'s to report.
    fn ca_file(&mut self, key: &str, ca: Option<&PathBuf>, verifier: bool) {
        let Some(ca) = ca.filter(|c| c.is_file()) else {
            return;
        };
        let loaded = if verifier {
            crate::tls::client_verifier_from_file(ca)
        } else {
            crate::tls::client_config_from_files(ca, None, None).map(drop)
        };
        if let Err(e) = loaded {
            self.push(key, e.to_string());
        }
    }

    /// A certificate chain and its key (`keys`: the keys naming them): each file readable, and
    /// the key the certificate's. Skipped unless both files exist.
    fn cert_and_key(&mut self, keys: [&str; 2], cert: Option<&PathBuf>, private: Option<&PathBuf>) {
        let [cert_key, key_key] = keys;
        let (Some(cert), Some(private)) = (cert, private) else {
            return;
        };
        if !(cert.is_file() && private.is_file()) {
            return;
        }
        let chain = match crate::tls::load_certs(cert) {
            Ok(c) => c,
            Err(e) => return self.push(cert_key, e.to_string()),
        };
        let key = match crate::tls::load_key(private) {
            Ok(k) => k,
            Err(e) => return self.push(key_key, e.to_string()),
        };
        if let Err(e) = crate::tls::check_key_pair(chain, key) {
            self.push(key_key, format!("{}: {e}", private.display()));
        }
    }

    fn positive(&mut self, key: &str, n: usize) {
        if n == 0 {
            self.push(key, "must be greater than 0");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae";

    fn base() -> String {
        format!(
            r#"
[api]
listen = "127.0.0.1:8443"
cert = "/dev/null"
key = "/dev/null"

[[pbx]]
name = "osv1"
protocol = "csta-xml"
mode = "dial"
address = "pbx.example:1040"
tls = false
devices = ["100"]

[[login]]
login_id = "ALICE0001"
pbx = "osv1"
device = "4711"
user_name = "alice@example.com"

[[connector]]
name = "crm"
token_sha256 = "{SHA}"
login_ids = ["ALICE0001"]
"#
        )
    }

    #[test]
    fn a_good_config_has_no_problems() {
        let cfg = Config::parse(&base()).unwrap();
        // /dev/null is not a regular file; that is the only complaint.
        let p = cfg.validate();
        assert!(p.iter().all(|p| p.key.starts_with("api.")), "{p:?}");
        assert_eq!(cfg.devices_of("osv1"), vec!["100", "4711"]);
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let err = Config::parse(&(base() + "\n[ops]\nlisten = \"127.0.0.1:1\"\nbogus = 1\n"))
            .unwrap_err();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn problems_name_their_keys() {
        let text = base()
            .replace("ALICE0001\"\npbx", "alice-1\"\npbx")
            .replace("pbx = \"osv1\"\ndevice", "pbx = \"nope\"\ndevice")
            + r#"
[[login]]
login_id = "BOB"
pbx = "osv1"
device = "100"

[[login]]
login_id = "bob"
pbx = "osv1"
device = "100"

[[connector]]
name = "crm"
token_sha256 = "xyz"
login_ids = ["GHOST"]
"#;
        let cfg = Config::parse(&text).unwrap();
        let keys: Vec<String> = cfg.validate().into_iter().map(|p| p.to_string()).collect();
        let has = |k: &str| keys.iter().any(|p| p.starts_with(k));
        assert!(has("login[0].login_id: \"alice-1\""), "{keys:#?}");
        assert!(
            has("login[0].pbx: no [[pbx]] is named \"nope\""),
            "{keys:#?}"
        );
        assert!(
            has("login[2].login_id: \"bob\" is already used by login[1]"),
            "{keys:#?}"
        );
        assert!(has("login[2].device"), "{keys:#?}");
        assert!(has("connector[1].name"), "{keys:#?}");
        assert!(has("connector[1].token_sha256"), "{keys:#?}");
        assert!(has("connector[1].login_ids[0]: \"GHOST\""), "{keys:#?}");
    }

    #[test]
    fn tls_rules() {
        let cfg = Config::parse(&base().replace("tls = false", "tls = true")).unwrap();
        let keys: Vec<String> = cfg.validate().into_iter().map(|p| p.key).collect();
        assert!(keys.contains(&"pbx[0].tls_ca".to_string()), "{keys:?}");
    }

    #[test]
    fn ecma354_keys() {
        let ok = base().replace(
            "tls = false\ndevices",
            "tls = false\ndialect = \"ecma354\"\nsession_user = \"cti\"\nsession_password = \"pw\"\ndevices",
        );
        let cfg = Config::parse(&ok).unwrap();
        assert!(cfg.validate().iter().all(|p| p.key.starts_with("api.")));
        assert_eq!(cfg.pbx[0].session_password().as_deref(), Some("pw"));
        let missing = base().replace(
            "tls = false\ndevices",
            "tls = false\ndialect = \"ecma354\"\ndevices",
        );
        let keys: Vec<String> = Config::parse(&missing)
            .unwrap()
            .validate()
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert!(keys.contains(&"pbx[0].session_user".into()), "{keys:?}");
        assert!(
            keys.contains(&"pbx[0].session_password_env".into()),
            "{keys:?}"
        );
        let unset = base().replace(
            "tls = false\ndevices",
            "tls = false\ndialect = \"ecma354\"\nsession_user = \"cti\"\nsession_password_env = \"CTIGATE_TEST_SURELY_UNSET\"\ndevices",
        );
        let p = Config::parse(&unset).unwrap().validate();
        assert!(
            p.iter()
                .any(|p| p.key == "pbx[0].session_password_env" && p.message.contains("not set")),
            "{p:?}"
        );
        let stray = base().replace(
            "tls = false\ndevices",
            "tls = false\nsession_user = \"cti\"\ndevices",
        );
        let p = Config::parse(&stray).unwrap().validate();
        assert!(p.iter().any(|p| p.key == "pbx[0].dialect"), "{p:?}");
    }

    #[test]
    fn ip_ranges_parse_and_match() {
        let r = |s: &str| s.parse::<IpRange>();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let host = r("10.0.0.5").unwrap();
        assert!(host.contains(ip("10.0.0.5")));
        assert!(!host.contains(ip("10.0.0.6")));
        assert_eq!(host.to_string(), "10.0.0.5/32");
        let block = r("10.1.0.0/16").unwrap();
        assert!(block.contains(ip("10.1.255.7")));
        assert!(!block.contains(ip("10.2.0.1")));
        // An IPv4 peer seen through a dual-stack listener.
        assert!(block.contains(ip("::ffff:10.1.0.9")));
        assert!(!block.contains(ip("::1")));
        let v6 = r("fd00::/8").unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        assert!(r("0.0.0.0/0").unwrap().contains(ip("192.0.2.1")));
        assert!(r("::/0").unwrap().contains(ip("2001:db8::1")));
        assert!(r("::1").unwrap().contains(ip("::1")));
        // Written IPv4-mapped, a range means its IPv4 addresses.
        let mapped = r("::ffff:10.0.0.0/104").unwrap();
        assert_eq!(mapped, r("10.0.0.0/8").unwrap());
        assert!(mapped.contains(ip("10.9.8.7")) && mapped.contains(ip("::ffff:10.9.8.7")));
        for bad in [
            "",
            "pbx.example",
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0.0/x",
            "10.0.0.0/+8",
            "10.1.2.3/16",
        ] {
            assert!(r(bad).is_err(), "{bad:?} parsed");
        }
        assert!(r("10.1.2.3/16").unwrap_err().contains("10.1.0.0/16"));
        assert!(IpRange::admits(&[], ip("192.0.2.1")));
        assert!(!IpRange::admits(&[host, v6], ip("192.0.2.1")));
        assert!(IpRange::admits(&[host, v6], ip("fd00::5")));
    }

    /// TLS files are loaded as the gateway will load them, so check-config (and `run`, which
    /// validates first) names a bad file, a key of another certificate or an expired certificate
    /// with its key.
    #[test]
    fn tls_files_are_loaded_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        crate::tls::DevCerts::generate(&[], "c")
            .unwrap()
            .write(d)
            .unwrap();
        std::fs::write(d.join("garbage.pem"), "not PEM").unwrap();
        // An expired self-signed certificate with its key.
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(30);
        params.not_after = now - time::Duration::days(1);
        let old = params.self_signed(&key).unwrap();
        std::fs::write(d.join("old.pem"), old.pem()).unwrap();
        std::fs::write(d.join("old.key.pem"), key.serialize_pem()).unwrap();
        let problems = |cert: &str, key: &str, ca: &str| -> Vec<String> {
            let text = format!(
                "[api]\nlisten = \"127.0.0.1:0\"\ncert = \"{cert}\"\nkey = \"{key}\"\n[[pbx]]\nname = \"p\"\nprotocol = \"csta-xml\"\nmode = \"dial\"\naddress = \"pbx:1\"\ntls_ca = \"{ca}\"\n"
            );
            let mut cfg = Config::parse(&text).unwrap();
            cfg.resolve_paths(d);
            cfg.validate().into_iter().map(|p| p.to_string()).collect()
        };
        assert_eq!(
            problems("server.pem", "server.key.pem", "ca.pem"),
            Vec::<String>::new()
        );
        let p = problems("server.pem", "client.key.pem", "ca.pem");
        assert!(
            p.len() == 1 && p[0].starts_with("api.key") && p[0].contains("does not belong"),
            "{p:?}"
        );
        let p = problems("garbage.pem", "server.key.pem", "garbage.pem");
        assert!(
            p.iter()
                .any(|p| p.starts_with("api.cert") && p.contains("garbage.pem"))
                && p.iter()
                    .any(|p| p.starts_with("pbx[0].tls_ca") && p.contains("garbage.pem")),
            "{p:?}"
        );
        // Expiry is not a validation problem (a running gateway keeps serving); it is reported
        // apart, soonest first, for check-config.
        assert_eq!(
            problems("old.pem", "old.key.pem", "ca.pem"),
            Vec::<String>::new()
        );
        let text = "[api]\nlisten = \"127.0.0.1:0\"\ncert = \"old.pem\"\nkey = \"old.key.pem\"\n[[pbx]]\nname = \"p\"\nprotocol = \"csta-xml\"\nmode = \"dial\"\naddress = \"pbx:1\"\ntls_ca = \"ca.pem\"\n";
        let mut cfg = Config::parse(text).unwrap();
        cfg.resolve_paths(d);
        let day = std::time::Duration::from_secs(86_400);
        let e = cfg.certificate_expiries(14 * day);
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].key == "api.cert" && e[0].expired, "{e:?}");
        // The CA (five years) is reported only when the horizon reaches it.
        let e = cfg.certificate_expiries(6 * 365 * day);
        assert_eq!(
            e.iter()
                .map(|e| (e.key.as_str(), e.expired))
                .collect::<Vec<_>>(),
            [("api.cert", true), ("pbx[0].tls_ca", false)]
        );
    }

    #[test]
    fn accept_from_rules() {
        let accept = |extra: &str| {
            base().replace(
                "mode = \"dial\"\naddress = \"pbx.example:1040\"\ntls = false\ndevices",
                &format!(
                    "mode = \"accept\"\naddress = \"127.0.0.1:1040\"\ntls = false\n{extra}devices"
                ),
            )
        };
        let problems = |text: &str| -> Vec<String> {
            Config::parse(text)
                .unwrap()
                .validate()
                .into_iter()
                .filter(|p| !p.key.starts_with("api."))
                .map(|p| p.to_string())
                .collect()
        };
        let ecma354 = "dialect = \"ecma354\"\nsession_user = \"cti\"\nsession_password = \"pw\"\n";
        // Without a way to tell the PBX from anyone else, the login would go to any peer.
        let p = problems(&accept(ecma354));
        assert!(
            p.iter()
                .any(|p| p.starts_with("pbx[0].accept_from") && p.contains("whoever connects")),
            "{p:?}"
        );
        let from = format!("{ecma354}accept_from = [\"10.0.0.5\", \"fd00::/8\"]\n");
        assert_eq!(problems(&accept(&from)), Vec::<String>::new());
        let cfg = Config::parse(&accept(&from)).unwrap();
        assert_eq!(cfg.pbx[0].accept_from.len(), 2);
        // The other dialects send nothing secret; accept_from stays optional.
        assert_eq!(problems(&accept("")), Vec::<String>::new());
        // Dial mode has no use for it.
        let dial = base().replace(
            "tls = false\ndevices",
            "tls = false\naccept_from = [\"10.0.0.5\"]\ndevices",
        );
        let p = problems(&dial);
        assert!(
            p.iter().any(|p| p.starts_with("pbx[0].accept_from")),
            "{p:?}"
        );
        // A bad entry is a parse error naming the value.
        let err = Config::parse(&accept("accept_from = [\"10.0.0.0/40\"]\n")).unwrap_err();
        assert!(err.contains("10.0.0.0/40"), "{err}");
    }

    #[test]
    fn host_port() {
        assert_eq!(split_host_port("pbx:1040"), Some(("pbx", 1040)));
        assert_eq!(split_host_port("[::1]:80"), Some(("::1", 80)));
        assert_eq!(split_host_port("pbx"), None);
        assert_eq!(split_host_port(":80"), None);
    }
}
