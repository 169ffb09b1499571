//! ECMA-323 (CSTA XML): decoder and encoder.
//!
//! The decoder ([`decode`]) matches elements by **local name** whatever the namespace or prefix,
//! accepts the standard's misspellings, resolves entity and character references, accepts CDATA and
//! comments, honours `ISO-8859-1` declarations, skips vendor elements, and rejects DOCTYPE and
//! documents nested deeper than [`MAX_DEPTH`]. Decoded values borrow from the input unless a
//! reference had to be resolved. The encoder ([`encode`]) writes the requests the gateway sends.

mod decode;
pub mod encode;
mod scan;

pub use decode::decode;

use std::borrow::Cow;
use thiserror::Error;

/// Deepest element nesting accepted; real CSTA documents stay below 10.
pub const MAX_DEPTH: usize = 32;

/// Text borrowed from the document, or owned when references were resolved.
pub type Str<'a> = Cow<'a, str>;

/// Why a document could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum XmlError {
    /// The document ended inside markup or with elements still open.
    #[error("truncated XML document")]
    Truncated,
    /// Malformed markup.
    #[error("XML syntax error at byte {at}: {what}")]
    Syntax {
        /// Byte offset.
        at: usize,
        /// What was wrong.
        what: &'static str,
    },
    /// An end tag that does not match the open element.
    #[error("end tag </{found}> does not match <{expected}>")]
    Mismatch {
        /// The open element.
        expected: String,
        /// The end tag found.
        found: String,
    },
    /// A DOCTYPE declaration; refused so no DTD is ever processed.
    #[error("DOCTYPE is not allowed")]
    Doctype,
    /// Nesting deeper than [`MAX_DEPTH`].
    #[error("document nests deeper than {MAX_DEPTH} elements")]
    TooDeep,
    /// An unknown entity or malformed character reference.
    #[error("bad entity or character reference {0:?}")]
    BadReference(String),
    /// The bytes are not valid in the declared (or default UTF-8) encoding.
    #[error("document is not valid UTF-8")]
    InvalidUtf8,
    /// An encoding we do not decode.
    #[error("unsupported encoding {0:?}")]
    UnsupportedEncoding(String),
    /// No root element at all (empty body, or only whitespace or text).
    #[error("no root element")]
    NoRoot,
    /// Non-whitespace text or a second element after the root closed.
    #[error("content after the root element")]
    TrailingContent,
}

impl XmlError {
    /// A short stable name for metrics labels.
    pub fn kind(&self) -> &'static str {
        match self {
            XmlError::Truncated => "truncated",
            XmlError::Syntax { .. } | XmlError::Mismatch { .. } => "syntax",
            XmlError::Doctype => "doctype",
            XmlError::TooDeep => "too_deep",
            XmlError::BadReference(_) => "bad_reference",
            XmlError::InvalidUtf8 | XmlError::UnsupportedEncoding(_) => "encoding",
            XmlError::NoRoot | XmlError::TrailingContent => "not_xml",
        }
    }
}

/// A decoded document: the root's local name, its namespace if declared, and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document<'a> {
    /// Local name of the root element, e.g. `DeliveredEvent`.
    pub name: Str<'a>,
    /// Namespace URI of the root, for diagnostics and echoing back.
    pub namespace: Option<Str<'a>>,
    /// What the document says.
    pub message: Message<'a>,
}

impl Document<'_> {
    /// Detaches the document from the input buffer.
    pub fn into_owned(self) -> Document<'static> {
        Document {
            name: own(self.name),
            namespace: self.namespace.map(own),
            message: self.message.into_owned(),
        }
    }
}

fn own(s: Str<'_>) -> Str<'static> {
    Cow::Owned(s.into_owned())
}

/// The kinds of CSTA XML messages the gateway distinguishes.
// Decoded on the stack and consumed at once; boxing the event would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message<'a> {
    /// An unsolicited event (any `*Event` root).
    Event(Event<'a>),
    /// `SystemStatus` request sent by the switch (OSV style); must be answered.
    SystemStatus {
        /// `systemStatus` value, e.g. `normal`, `enabled`.
        status: Option<Str<'a>>,
    },
    /// A positive response.
    Response(Response<'a>),
    /// `CSTAErrorCode`: the negative response to any request.
    Error(CstaError<'a>),
    /// A request we do not serve (the switch asked us something else).
    Request,
    /// A root we do not know at all.
    Unknown,
}

impl Message<'_> {
    fn into_owned(self) -> Message<'static> {
        match self {
            Message::Event(e) => Message::Event(e.into_owned()),
            Message::SystemStatus { status } => Message::SystemStatus {
                status: status.map(own),
            },
            Message::Response(r) => Message::Response(r.into_owned()),
            Message::Error(e) => Message::Error(CstaError {
                category: own(e.category),
                value: own(e.value),
            }),
            Message::Request => Message::Request,
            Message::Unknown => Message::Unknown,
        }
    }
}

/// A positive response to one of our requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response<'a> {
    /// `SystemStatusResponse`.
    SystemStatus,
    /// `SystemRegisterResponse`.
    SystemRegister {
        /// `sysStatRegisterID`.
        register_id: Option<Str<'a>>,
    },
    /// `RequestSystemStatusResponse`.
    RequestSystemStatus {
        /// `systemStatus`.
        status: Option<Str<'a>>,
    },
    /// `MonitorStartResponse`.
    MonitorStart {
        /// `monitorCrossRefID`: the key of every event of this monitor.
        cross_ref: Option<Str<'a>>,
    },
    /// `MakeCallResponse`.
    MakeCall {
        /// The calling device's new connection.
        call: Connection<'a>,
    },
    /// `SnapshotDeviceResponse`.
    SnapshotDevice {
        /// The calls at the device.
        calls: Vec<SnapshotCall<'a>>,
    },
    /// Any other `*Response` (MonitorStop, ClearConnection, …): success without data we use.
    Ack,
}

impl Response<'_> {
    fn into_owned(self) -> Response<'static> {
        match self {
            Response::SystemStatus => Response::SystemStatus,
            Response::SystemRegister { register_id } => Response::SystemRegister {
                register_id: register_id.map(own),
            },
            Response::RequestSystemStatus { status } => Response::RequestSystemStatus {
                status: status.map(own),
            },
            Response::MonitorStart { cross_ref } => Response::MonitorStart {
                cross_ref: cross_ref.map(own),
            },
            Response::MakeCall { call } => Response::MakeCall {
                call: call.into_owned(),
            },
            Response::SnapshotDevice { calls } => Response::SnapshotDevice {
                calls: calls
                    .into_iter()
                    .map(|c| SnapshotCall {
                        connection: c.connection.into_owned(),
                        states: c.states.into_iter().map(own).collect(),
                    })
                    .collect(),
            },
            Response::Ack => Response::Ack,
        }
    }
}

/// One call in a `SnapshotDeviceResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotCall<'a> {
    /// `connectionIdentifier`.
    pub connection: Connection<'a>,
    /// Local connection states (`simpleCallState` or each `localConnectionState`).
    pub states: Vec<Str<'a>>,
}

/// `CSTAErrorCode`: one category element holding one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CstaError<'a> {
    /// The category element (`operation`, `stateIncompatibility`, `systemResourceAvailibility`, …).
    pub category: Str<'a>,
    /// The value, e.g. `invalidDeviceID`.
    pub value: Str<'a>,
}

/// A connection identifier: the pair (callID, deviceID).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Connection<'a> {
    /// Opaque call id; never parsed.
    pub call_id: Option<Str<'a>>,
    /// Local device id of the connection.
    pub device_id: Option<Str<'a>>,
}

impl Connection<'_> {
    fn into_owned(self) -> Connection<'static> {
        Connection {
            call_id: self.call_id.map(own),
            device_id: self.device_id.map(own),
        }
    }
}

/// An extended device id: a number, or one of the reasons there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Device<'a> {
    /// `deviceIdentifier` (or `numberDialed`), raw as sent.
    Id(Str<'a>),
    /// `notKnown`.
    NotKnown,
    /// `restricted` (presentation restricted).
    Restricted,
    /// `notRequired`.
    NotRequired,
    /// `notSpecified`.
    NotSpecified,
}

impl Device<'_> {
    fn into_owned(self) -> Device<'static> {
        match self {
            Device::Id(s) => Device::Id(own(s)),
            Device::NotKnown => Device::NotKnown,
            Device::Restricted => Device::Restricted,
            Device::NotRequired => Device::NotRequired,
            Device::NotSpecified => Device::NotSpecified,
        }
    }

    /// The raw id, if any.
    pub fn id(&self) -> Option<&str> {
        match self {
            Device::Id(s) => Some(s),
            _ => None,
        }
    }
}

/// Event types the gateway normalizes; everything else is [`EventKind::Other`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum EventKind {
    ServiceInitiated,
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
    /// An event root we do not normalize; its name is in [`Document::name`].
    Other,
}

impl EventKind {
    /// Classifies an event root by local name (`None` if it is not an event root).
    pub fn from_root(name: &str) -> Option<EventKind> {
        use EventKind::*;
        let base = name.strip_suffix("Event")?;
        Some(match base {
            "ServiceInitiated" => ServiceInitiated,
            "Originated" => Originated,
            "Delivered" => Delivered,
            "Established" => Established,
            "Held" => Held,
            "Retrieved" => Retrieved,
            "ConnectionCleared" => ConnectionCleared,
            "CallCleared" => CallCleared,
            // The standard spells it with one `r`; accept the correct spelling too.
            "Transfered" | "Transferred" => Transferred,
            "Conferenced" => Conferenced,
            "Diverted" => Diverted,
            "Failed" => Failed,
            "Queued" => Queued,
            "NetworkReached" => NetworkReached,
            "Offered" => Offered,
            "Bridged" => Bridged,
            "DigitsDialed" => DigitsDialed,
            "AgentLoggedOn" => AgentLoggedOn,
            "AgentLoggedOff" => AgentLoggedOff,
            "AgentReady" => AgentReady,
            "AgentNotReady" => AgentNotReady,
            "AgentBusy" => AgentBusy,
            "AgentWorkingAfterCall" => AgentWorkingAfterCall,
            "DoNotDisturb" => DoNotDisturb,
            "Forwarding" => Forwarding,
            "BackInService" => BackInService,
            "OutOfService" => OutOfService,
            _ => Other,
        })
    }
}

/// The fields of an event the gateway uses. Which of them are set depends on the event type; the
/// element each one comes from is listed on the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    /// The event type.
    pub kind: EventKind,
    /// `monitorCrossRefID`: which monitor (and so which device) this event is for.
    pub cross_ref: Option<Str<'a>>,
    /// The event's own connection: `connection`, `establishedConnection`, `droppedConnection`,
    /// `heldConnection`, `retrievedConnection`, `initiatedConnection`, `originatedConnection`,
    /// `failedConnection`, `queuedConnection`, `clearedCall`, ….
    pub connection: Option<Connection<'a>>,
    /// The device the event happened at: `alertingDevice`, `answeringDevice`, `releasingDevice`,
    /// `holdingDevice`, `retrievingDevice`, `initiatingDevice`, `transferringDevice`,
    /// `conferencingDevice`, `divertingDevice`, `failingDevice`, `queue`, `agentDevice`, `device`.
    pub subject: Option<Device<'a>>,
    /// `callingDevice`.
    pub calling: Option<Device<'a>>,
    /// `calledDevice`.
    pub called: Option<Device<'a>>,
    /// `lastRedirectionDevice`.
    pub last_redirection: Option<Device<'a>>,
    /// Where the call went: `transferredToDevice`, `addedParty`, `newDestination`.
    pub target: Option<Device<'a>>,
    /// `primaryOldCall`.
    pub old_call: Option<Connection<'a>>,
    /// `secondaryOldCall`.
    pub secondary_old_call: Option<Connection<'a>>,
    /// `newConnection` of each `transferredConnections` / `conferenceConnections` item.
    pub new_connections: Vec<Connection<'a>>,
    /// `localConnectionInfo`.
    pub local_state: Option<Str<'a>>,
    /// `cause`.
    pub cause: Option<Str<'a>>,
    /// `agentID`.
    pub agent_id: Option<Str<'a>>,
    /// `acdGroup`.
    pub acd_group: Option<Str<'a>>,
    /// `pendingAgentState`.
    pub pending_agent_state: Option<Str<'a>>,
    /// `doNotDisturbOn`.
    pub do_not_disturb: Option<bool>,
    /// `forwardingType`.
    pub forwarding_type: Option<Str<'a>>,
    /// `forwardStatus`.
    pub forward_status: Option<bool>,
    /// `forwardTo`.
    pub forward_to: Option<Str<'a>>,
}

impl<'a> Event<'a> {
    /// An event of `kind` with no fields set.
    pub fn new(kind: EventKind) -> Event<'a> {
        Event {
            kind,
            cross_ref: None,
            connection: None,
            subject: None,
            calling: None,
            called: None,
            last_redirection: None,
            target: None,
            old_call: None,
            secondary_old_call: None,
            new_connections: Vec::new(),
            local_state: None,
            cause: None,
            agent_id: None,
            acd_group: None,
            pending_agent_state: None,
            do_not_disturb: None,
            forwarding_type: None,
            forward_status: None,
            forward_to: None,
        }
    }

    fn into_owned(self) -> Event<'static> {
        Event {
            kind: self.kind,
            cross_ref: self.cross_ref.map(own),
            connection: self.connection.map(Connection::into_owned),
            subject: self.subject.map(Device::into_owned),
            calling: self.calling.map(Device::into_owned),
            called: self.called.map(Device::into_owned),
            last_redirection: self.last_redirection.map(Device::into_owned),
            target: self.target.map(Device::into_owned),
            old_call: self.old_call.map(Connection::into_owned),
            secondary_old_call: self.secondary_old_call.map(Connection::into_owned),
            new_connections: self
                .new_connections
                .into_iter()
                .map(Connection::into_owned)
                .collect(),
            local_state: self.local_state.map(own),
            cause: self.cause.map(own),
            agent_id: self.agent_id.map(own),
            acd_group: self.acd_group.map(own),
            pending_agent_state: self.pending_agent_state.map(own),
            do_not_disturb: self.do_not_disturb,
            forwarding_type: self.forwarding_type.map(own),
            forward_status: self.forward_status,
            forward_to: self.forward_to.map(own),
        }
    }
}
