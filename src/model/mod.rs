//! The normalized, protocol-free domain: events, parties, Login IDs, statuses and the call table.
//!
//! Nothing here knows a wire format; the link layer maps decoded messages into these types.

pub mod calls;
pub mod login;
pub mod party;
mod text;

pub use calls::{CallInfo, CallTable, Direction};
pub use login::{LoginId, LoginIdError};
pub use party::{NumberingPlan, Party, PartyKind};
pub use text::Text;

use serde::Serialize;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Normalized event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum EventKind {
    /// The device went off-hook / a call is being set up from it (CSTA ServiceInitiated).
    Initiated,
    Originated,
    Delivered,
    Established,
    Held,
    Retrieved,
    ConnectionCleared,
    CallCleared,
    Transferred,
    Conferenced,
    Diverted,
    Failed,
    Queued,
    NetworkReached,
    Offered,
    Bridged,
    DigitsDialed,
    AgentLoggedOn,
    AgentLoggedOff,
    AgentReady,
    AgentNotReady,
    AgentBusy,
    AgentWorkingAfterCall,
    DoNotDisturb,
    Forwarding,
    BackInService,
    OutOfService,
    /// The device is partly out of service (CSTA PartiallyInService).
    PartiallyInService,
    /// Information attached to a call changed: account code, user data (CSTA CallInformation).
    CallInformation,
    /// Charges for a call (CSTA Charging); see `charging`.
    Charging,
    /// The device sent digits (DTMF) into the call (CSTA DigitsGenerated).
    DigitsGenerated,
    /// The device sent tones into the call (CSTA TelephonyTonesGenerated).
    TelephonyTonesGenerated,
    /// A call-control service failed after the switch had accepted it (CSTA
    /// ServiceCompletionFailure); `cause` says why.
    ServiceCompletionFailure,
    /// A call ended while the gateway could not see it (link loss); synthesized after resync.
    CallLost,
    /// An event we pass through without normalizing; `name` says which.
    Unknown,
}

impl EventKind {
    /// The snake_case name used on the wire and in metrics labels.
    pub fn as_str(self) -> &'static str {
        use EventKind::*;
        match self {
            Initiated => "initiated",
            Originated => "originated",
            Delivered => "delivered",
            Established => "established",
            Held => "held",
            Retrieved => "retrieved",
            ConnectionCleared => "connection_cleared",
            CallCleared => "call_cleared",
            Transferred => "transferred",
            Conferenced => "conferenced",
            Diverted => "diverted",
            Failed => "failed",
            Queued => "queued",
            NetworkReached => "network_reached",
            Offered => "offered",
            Bridged => "bridged",
            DigitsDialed => "digits_dialed",
            AgentLoggedOn => "agent_logged_on",
            AgentLoggedOff => "agent_logged_off",
            AgentReady => "agent_ready",
            AgentNotReady => "agent_not_ready",
            AgentBusy => "agent_busy",
            AgentWorkingAfterCall => "agent_working_after_call",
            DoNotDisturb => "do_not_disturb",
            Forwarding => "forwarding",
            BackInService => "back_in_service",
            OutOfService => "out_of_service",
            PartiallyInService => "partially_in_service",
            CallInformation => "call_information",
            Charging => "charging",
            DigitsGenerated => "digits_generated",
            TelephonyTonesGenerated => "telephony_tones_generated",
            ServiceCompletionFailure => "service_completion_failure",
            CallLost => "call_lost",
            Unknown => "unknown",
        }
    }
}

/// State of the monitored device's connection to the call (CSTA `localConnectionInfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum ConnState {
    Null,
    Initiated,
    Alerting,
    Connected,
    Hold,
    Queued,
    Fail,
}

impl ConnState {
    /// Parses a CSTA `localConnectionInfo` token.
    pub fn from_csta(s: &str) -> Option<ConnState> {
        Some(match s {
            "null" => ConnState::Null,
            "initiated" => ConnState::Initiated,
            "alerting" => ConnState::Alerting,
            "connected" => ConnState::Connected,
            "hold" => ConnState::Hold,
            "queued" => ConnState::Queued,
            "fail" => ConnState::Fail,
            _ => return None,
        })
    }

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::Null => "null",
            ConnState::Initiated => "initiated",
            ConnState::Alerting => "alerting",
            ConnState::Connected => "connected",
            ConnState::Hold => "hold",
            ConnState::Queued => "queued",
            ConnState::Fail => "fail",
        }
    }
}

/// A normalized event at one monitored device.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Normalized type.
    #[serde(rename = "event")]
    pub kind: EventKind,
    /// The PBX's own name for the event (e.g. `DeliveredEvent`).
    pub name: Text,
    /// Configured name of the PBX link.
    pub pbx: Text,
    /// The monitored device, as configured.
    pub device: Text,
    /// Opaque call id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<Text>,
    /// Device of the event's connection (may differ from `device`, e.g. the far end's connection).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_device: Option<Text>,
    /// State of the monitored device's connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<ConnState>,
    /// Direction of the call at this device, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// The PBX's cause token (e.g. `newCall`, `normalClearing`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<Text>,
    /// Where the event happened (alerting / answering / releasing / holding … device).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<Party>,
    /// Calling party.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calling: Option<Party>,
    /// Called party.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub called: Option<Party>,
    /// Last redirecting party.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirected_from: Option<Party>,
    /// Where the call went (transferred-to, added party, diverted-to).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Party>,
    /// Calls this event replaced (transfer, conference).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub old_call_ids: Vec<Text>,
    /// `correlatorData`: data an application attached to the call (hex, as sent). Here rather
    /// than in `details`: OpenScape Voice sends it with many call events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlator_data: Option<Text>,
    /// What fewer events carry: agent, do-not-disturb and forwarding state, user data, account
    /// code, digits, queue position, the ACD group, the numbers a call was first from and for,
    /// charges. Boxed, as most events carry none of it and an event must stay within 1,032
    /// bytes, the largest size glibc's per-thread cache serves (events are boxed from the link
    /// to the hub); serialized as fields of the event.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub details: Option<Box<Details>>,
    /// Wall-clock time the frame arrived, milliseconds since the Unix epoch.
    pub ts_ms: u64,
    /// Monotonic time the frame arrived, for the ingress-to-connector latency.
    #[serde(skip)]
    pub received: Instant,
}

impl Event {
    /// An event with only the mandatory fields set, received now.
    pub fn new(kind: EventKind, name: Text, pbx: Text, device: Text) -> Event {
        Event::received_at(kind, name, pbx, device, Instant::now(), now_ms())
    }

    /// An event with only the mandatory fields set, received at the given times (the link reads
    /// the clocks once per read, not once per event).
    #[inline]
    pub fn received_at(
        kind: EventKind,
        name: Text,
        pbx: Text,
        device: Text,
        received: Instant,
        ts_ms: u64,
    ) -> Event {
        Event {
            kind,
            name,
            pbx,
            device,
            call_id: None,
            connection_device: None,
            state: None,
            direction: None,
            cause: None,
            at: None,
            calling: None,
            called: None,
            redirected_from: None,
            target: None,
            old_call_ids: Vec::new(),
            correlator_data: None,
            details: None,
            ts_ms,
            received,
        }
    }
}

/// The rarer fields of an [`Event`]. Values are as the PBX sent them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Details {
    /// Agent id (agent-state events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<Text>,
    /// Do-not-disturb state (do-not-disturb events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub do_not_disturb: Option<bool>,
    /// Forwarding type (forwarding events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarding_type: Option<Text>,
    /// Forwarding on/off (forwarding events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarding_on: Option<bool>,
    /// Forwarding destination (forwarding events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forward_to: Option<Party>,
    /// `userData`: data attached to the call, e.g. by an IVR (hex, as sent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_data: Option<Text>,
    /// `accountInfo`: the account code entered for the call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<Text>,
    /// Digits dialed (DigitsDialed) or sent into the call (DigitsGenerated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digits: Option<Text>,
    /// The tone sent into the call (TelephonyTonesGenerated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tone: Option<Text>,
    /// Calls queued at the device (Queued).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued: Option<u32>,
    /// Calls ahead of this one in the queue (Queued).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calls_in_front: Option<u32>,
    /// `acdGroup`: the ACD or hunt group (agent and queue events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub acd_group: Option<Text>,
    /// `associatedCallingDevice`: who the call was first from, before an ACD, hunt group or trunk
    /// changed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub associated_calling: Option<Party>,
    /// `associatedCalledDevice`: the number the caller first dialed (the hotline, DNIS) when an
    /// ACD or hunt group delivered the call elsewhere.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub associated_called: Option<Party>,
    /// `chargingInfo` (Charging, ConnectionCleared, Transferred).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub charging: Option<Charging>,
}

/// Charges for a call, as the PBX reports them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Charging {
    /// `subTotal` (the call goes on) or `total`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub info_type: Option<Text>,
    /// Charge units.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub units: Option<u64>,
    /// What the units are (`chargingUnits`, `recallUnits`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub units_type: Option<Text>,
    /// Currency of `amount` (e.g. `EUR`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<Text>,
    /// Amount in units of `multiplier`: `amount` 1250 with `multiplier` `oneHundredth` is 12.50.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<i64>,
    /// `oneThousandth`, `oneHundredth`, `oneTenth`, `one`, `ten`, `hundred` or `thousand`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<Text>,
}

// Events are boxed from the link to the hub; at most 1,032 bytes, glibc serves the box from its
// per-thread cache (larger blocks take the slower general path).
const _: () = assert!(size_of::<Event>() <= 1032);

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Per-Login-ID status as connectors show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum StatusLevel {
    /// Login ID missing, unknown or rejected.
    Red,
    /// Login ID accepted, but its device is not monitored (link down, monitor failed).
    Yellow,
    /// Monitored and live.
    Green,
}

/// Whether a device is monitored, and if not why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceStatus {
    /// Monitor started and the link is up.
    Monitored,
    /// Not monitored; the reason says why (`link_down`, `connecting`, `monitor_failed: …`).
    NotMonitored(String),
}
