//! ECMA-323 (CSTA XML) and ECMA-354 (application session): decoder and encoder.
//!
//! The decoder ([`decode`]) matches elements by **local name** whatever the namespace or prefix,
//! accepts the standard's misspellings, resolves entity and character references, accepts CDATA and
//! comments, honours `ISO-8859-1` declarations, skips vendor elements and `privateData`, and rejects
//! DOCTYPE and documents nested deeper than [`MAX_DEPTH`]. Decoded values borrow from the input
//! unless a reference had to be resolved. The encoder ([`encode`]) writes the requests the gateway
//! sends.
//!
//! [`mod@reference`] is a second, independent decoder built on quick-xml; it exists so tests and fuzzers
//! can hold the hand-written one to it, and is not meant for production use.

mod decode;
pub mod encode;
#[doc(hidden)]
pub mod reference;
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
    /// A document of 4 GiB or more (frames are at most 64 KiB).
    #[error("document too large")]
    TooLarge,
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
            XmlError::TooLarge => "too_large",
        }
    }
}

/// A decoded document: the root's local name, its namespace if declared, and the message.
#[serde_with::skip_serializing_none]
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
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

/// Detaching a decoded value from the input buffer.
trait Detach {
    type Owned;
    fn detach(self) -> Self::Owned;
}

impl Detach for Str<'_> {
    type Owned = Str<'static>;
    fn detach(self) -> Str<'static> {
        own(self)
    }
}

impl<T: Detach> Detach for Option<T> {
    type Owned = Option<T::Owned>;
    fn detach(self) -> Self::Owned {
        self.map(T::detach)
    }
}

impl<T: Detach> Detach for Box<T> {
    type Owned = Box<T::Owned>;
    fn detach(self) -> Self::Owned {
        Box::new((*self).detach())
    }
}

impl<T: Detach> Detach for Vec<T> {
    type Owned = Vec<T::Owned>;
    fn detach(self) -> Self::Owned {
        self.into_iter().map(T::detach).collect()
    }
}

/// The kinds of CSTA XML messages the gateway distinguishes.
///
/// Events are by far the most frequent message and are built in place and returned by value;
/// boxing them to even out the variant sizes would cost an allocation per event.
#[serde_with::skip_serializing_none]
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)]
pub enum Message<'a> {
    /// An unsolicited event (any `*Event` root). Boxed: an event is most of a kilobyte, and a
    /// `Document` is returned by value; moving a pointer instead of the event saves more than the
    /// allocation costs, and the decoder fills the event where it stays.
    Event(Box<Event<'a>>),
    /// `SystemStatus` request sent by the switch (OSV style); must be answered.
    SystemStatus {
        /// `systemStatus` value, e.g. `normal`, `enabled`.
        status: Option<Str<'a>>,
    },
    /// `RequestSystemStatus` sent by the switch (uaCSTA style); must be answered with our status.
    RequestSystemStatus {
        /// `sysStatRegisterID`, if the switch named a registration.
        register_id: Option<Str<'a>>,
    },
    /// `SwitchingFunctionDevices`: one segment of the device list the switch sends after a
    /// `GetSwitchingFunctionDevices`; not answered.
    SwitchingFunctionDevices(DeviceList<'a>),
    /// `SnapshotDeviceData`: one segment of a snapshot the switch sends after a
    /// `SnapshotDeviceResponse` that carried only a `serviceCrossRefID`; not answered.
    SnapshotDeviceData(SnapshotSegment<'a>),
    /// A positive response.
    Response(Response<'a>),
    /// `CSTAErrorCode`, or an ECMA-354 `…NegResponse`: the negative response to a request.
    Error(CstaError<'a>),
    /// A request we do not serve (the switch asked us something else).
    Request,
    /// A root we do not know at all.
    Unknown,
}

impl Message<'_> {
    fn into_owned(self) -> Message<'static> {
        match self {
            Message::Event(e) => Message::Event(e.detach()),
            Message::SystemStatus { status } => Message::SystemStatus {
                status: status.detach(),
            },
            Message::RequestSystemStatus { register_id } => Message::RequestSystemStatus {
                register_id: register_id.detach(),
            },
            Message::SwitchingFunctionDevices(l) => Message::SwitchingFunctionDevices(l.detach()),
            Message::SnapshotDeviceData(s) => Message::SnapshotDeviceData(s.detach()),
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
#[serde_with::skip_serializing_none]
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(tag = "response", rename_all = "snake_case")]
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
    /// The responses whose payload is the call a service produced: `SingleStepTransferCallResponse`
    /// and `TransferCallResponse` (`transferredCall`), `ConsultationCallResponse` (`initiatedCall`),
    /// `ConferenceCallResponse` (`conferenceCall`). [`Document::name`] says which.
    NewCall {
        /// The resulting connection.
        call: Connection<'a>,
    },
    /// `SnapshotDeviceResponse`.
    SnapshotDevice {
        /// The calls at the device.
        calls: Vec<SnapshotCall<'a>>,
        /// `serviceCrossRefID`, when the switch sends the snapshot later in segments instead.
        service_cross_ref: Option<Str<'a>>,
    },
    /// `SnapshotCallResponse`.
    SnapshotCall {
        /// The devices on the call.
        parties: Vec<SnapshotParty<'a>>,
    },
    /// `GetSwitchingFunctionDevicesResponse`; the devices follow in
    /// [`Message::SwitchingFunctionDevices`] segments carrying the same cross reference.
    GetSwitchingFunctionDevices {
        /// `serviceCrossRefID`.
        service_cross_ref: Option<Str<'a>>,
    },
    /// `GetCSTAFeaturesResponse`: the names of the services and events marked `true`.
    CstaFeatures {
        /// Leaves of `supportedServices/*` that are `true`, e.g. `makeCall`.
        services: Vec<Str<'a>>,
        /// Leaves of `supportedEvents/*` that are `true`, e.g. `delivered`.
        events: Vec<Str<'a>>,
    },
    /// `GetAgentStateResponse`.
    AgentState {
        /// One entry per `agentStateList/agentStateEntry`.
        agents: Vec<AgentStateEntry<'a>>,
    },
    /// `GetDoNotDisturbResponse`.
    DoNotDisturb {
        /// `doNotDisturbOn`.
        on: Option<bool>,
    },
    /// `GetForwardingResponse`.
    Forwarding {
        /// One entry per `forwardingList/forwardListItem`.
        items: Vec<ForwardItem<'a>>,
    },
    /// ECMA-354 `StartApplicationSessionPosResponse`.
    StartApplicationSession {
        /// `sessionID`: goes into every `ResetApplicationSessionTimer`.
        session_id: Option<Str<'a>>,
        /// `actualProtocolVersion` (a namespace URI or a DMCC version string).
        protocol_version: Option<Str<'a>>,
        /// `actualSessionDuration` in seconds; the keep-alive period is half of it.
        session_duration: Option<u32>,
    },
    /// ECMA-354 `ResetApplicationSessionTimerPosResponse`.
    ResetApplicationSessionTimer {
        /// `actualSessionDuration` in seconds, if the switch states it.
        session_duration: Option<u32>,
    },
    /// Any other `*Response` (MonitorStop, ClearConnection, …): success without data we use.
    Ack,
}

impl Response<'_> {
    fn into_owned(self) -> Response<'static> {
        match self {
            Response::SystemStatus => Response::SystemStatus,
            Response::SystemRegister { register_id } => Response::SystemRegister {
                register_id: register_id.detach(),
            },
            Response::RequestSystemStatus { status } => Response::RequestSystemStatus {
                status: status.detach(),
            },
            Response::MonitorStart { cross_ref } => Response::MonitorStart {
                cross_ref: cross_ref.detach(),
            },
            Response::MakeCall { call } => Response::MakeCall {
                call: call.detach(),
            },
            Response::NewCall { call } => Response::NewCall {
                call: call.detach(),
            },
            Response::SnapshotDevice {
                calls,
                service_cross_ref,
            } => Response::SnapshotDevice {
                calls: calls.detach(),
                service_cross_ref: service_cross_ref.detach(),
            },
            Response::SnapshotCall { parties } => Response::SnapshotCall {
                parties: parties.detach(),
            },
            Response::GetSwitchingFunctionDevices { service_cross_ref } => {
                Response::GetSwitchingFunctionDevices {
                    service_cross_ref: service_cross_ref.detach(),
                }
            }
            Response::CstaFeatures { services, events } => Response::CstaFeatures {
                services: services.detach(),
                events: events.detach(),
            },
            Response::AgentState { agents } => Response::AgentState {
                agents: agents.detach(),
            },
            Response::DoNotDisturb { on } => Response::DoNotDisturb { on },
            Response::Forwarding { items } => Response::Forwarding {
                items: items.detach(),
            },
            Response::StartApplicationSession {
                session_id,
                protocol_version,
                session_duration,
            } => Response::StartApplicationSession {
                session_id: session_id.detach(),
                protocol_version: protocol_version.detach(),
                session_duration,
            },
            Response::ResetApplicationSessionTimer { session_duration } => {
                Response::ResetApplicationSessionTimer { session_duration }
            }
            Response::Ack => Response::Ack,
        }
    }
}

/// One call in a `SnapshotDeviceResponse` (`snapshotDeviceResponseInfo`).
#[serde_with::skip_serializing_none]
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotCall<'a> {
    /// `connectionIdentifier`.
    pub connection: Connection<'a>,
    /// `endpointDevice`: the far end, when the switch names it.
    pub endpoint: Option<Device<'a>>,
    /// Local connection states (`simpleCallState` or each `localConnectionState`).
    pub states: Vec<Str<'a>>,
}

impl Detach for SnapshotCall<'_> {
    type Owned = SnapshotCall<'static>;
    fn detach(self) -> SnapshotCall<'static> {
        SnapshotCall {
            connection: self.connection.detach(),
            endpoint: self.endpoint.detach(),
            states: self.states.detach(),
        }
    }
}

/// One device on a call in a `SnapshotCallResponse` (`snapshotCallResponseInfo`).
#[serde_with::skip_serializing_none]
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotParty<'a> {
    /// `deviceOnCall`.
    pub device: Option<Device<'a>>,
    /// `callIdentifier`.
    pub connection: Option<Connection<'a>>,
    /// `localConnectionInfo`.
    pub state: Option<Str<'a>>,
}

impl Detach for SnapshotParty<'_> {
    type Owned = SnapshotParty<'static>;
    fn detach(self) -> SnapshotParty<'static> {
        SnapshotParty {
            device: self.device.detach(),
            connection: self.connection.detach(),
            state: self.state.detach(),
        }
    }
}

/// One segment of a segmented snapshot (`SnapshotDeviceData`).
#[serde_with::skip_serializing_none]
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct SnapshotSegment<'a> {
    /// `serviceCrossRefID`, as in the `SnapshotDeviceResponse`.
    pub service_cross_ref: Option<Str<'a>>,
    /// `segmentID`.
    pub segment_id: Option<u32>,
    /// `lastSegment`: `true` on the final segment.
    pub last_segment: Option<bool>,
    /// `snapshotData/snapshotDeviceResponseInfo` entries.
    pub calls: Vec<SnapshotCall<'a>>,
}

impl Detach for SnapshotSegment<'_> {
    type Owned = SnapshotSegment<'static>;
    fn detach(self) -> SnapshotSegment<'static> {
        SnapshotSegment {
            service_cross_ref: self.service_cross_ref.detach(),
            segment_id: self.segment_id,
            last_segment: self.last_segment,
            calls: self.calls.detach(),
        }
    }
}

/// One segment of `SwitchingFunctionDevices`.
#[serde_with::skip_serializing_none]
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct DeviceList<'a> {
    /// `serviceCrossRefID`, as in the `GetSwitchingFunctionDevicesResponse`.
    pub service_cross_ref: Option<Str<'a>>,
    /// `segmentID`.
    pub segment_id: Option<u32>,
    /// `lastSegment`: `true` on the final segment.
    pub last_segment: Option<bool>,
    /// `deviceList/device` entries.
    pub devices: Vec<ListedDevice<'a>>,
}

impl Detach for DeviceList<'_> {
    type Owned = DeviceList<'static>;
    fn detach(self) -> DeviceList<'static> {
        DeviceList {
            service_cross_ref: self.service_cross_ref.detach(),
            segment_id: self.segment_id,
            last_segment: self.last_segment,
            devices: self.devices.detach(),
        }
    }
}

/// One `deviceList/device` of `SwitchingFunctionDevices`.
#[serde_with::skip_serializing_none]
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct ListedDevice<'a> {
    /// `deviceID`.
    pub id: Option<Str<'a>>,
    /// `deviceCategory`: `station`, `acd`, `groupHunt`, `networkInterface`, ….
    pub category: Option<Str<'a>>,
}

impl Detach for ListedDevice<'_> {
    type Owned = ListedDevice<'static>;
    fn detach(self) -> ListedDevice<'static> {
        ListedDevice {
            id: self.id.detach(),
            category: self.category.detach(),
        }
    }
}

/// One `agentStateEntry` of a `GetAgentStateResponse`.
#[serde_with::skip_serializing_none]
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentStateEntry<'a> {
    /// `agentID`.
    pub agent_id: Option<Str<'a>>,
    /// `loggedOnState`.
    pub logged_on: Option<bool>,
    /// One per `agentInfo`.
    pub info: Vec<AgentInfo<'a>>,
}

impl Detach for AgentStateEntry<'_> {
    type Owned = AgentStateEntry<'static>;
    fn detach(self) -> AgentStateEntry<'static> {
        AgentStateEntry {
            agent_id: self.agent_id.detach(),
            logged_on: self.logged_on,
            info: self.info.detach(),
        }
    }
}

/// One `agentInfo` of an `agentStateEntry`.
#[serde_with::skip_serializing_none]
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct AgentInfo<'a> {
    /// `acdGroup`.
    pub acd_group: Option<Str<'a>>,
    /// `agentState`: `agentNotReady`, `agentNull`, `agentReady`, `agentBusy`, `agentWorkingAfterCall`.
    pub state: Option<Str<'a>>,
    /// `pendingAgentState`.
    pub pending_state: Option<Str<'a>>,
}

impl Detach for AgentInfo<'_> {
    type Owned = AgentInfo<'static>;
    fn detach(self) -> AgentInfo<'static> {
        AgentInfo {
            acd_group: self.acd_group.detach(),
            state: self.state.detach(),
            pending_state: self.pending_state.detach(),
        }
    }
}

/// One `forwardListItem` of a `GetForwardingResponse`.
#[serde_with::skip_serializing_none]
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct ForwardItem<'a> {
    /// `forwardingType`, e.g. `forwardImmediate`.
    pub forwarding_type: Option<Str<'a>>,
    /// `forwardStatus`.
    pub on: Option<bool>,
    /// `forwardDN`.
    pub to: Option<Str<'a>>,
}

impl Detach for ForwardItem<'_> {
    type Owned = ForwardItem<'static>;
    fn detach(self) -> ForwardItem<'static> {
        ForwardItem {
            forwarding_type: self.forwarding_type.detach(),
            on: self.on,
            to: self.to.detach(),
        }
    }
}

/// `CSTAErrorCode`: one category element holding one value.
#[serde_with::skip_serializing_none]
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct CstaError<'a> {
    /// The category element (`operation`, `stateIncompatibility`, `systemResourceAvailibility`, …;
    /// `definedError` for an ECMA-354 negative response).
    pub category: Str<'a>,
    /// The value, e.g. `invalidDeviceID`.
    pub value: Str<'a>,
}

/// A connection identifier: the pair (callID, deviceID).
#[serde_with::skip_serializing_none]
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct Connection<'a> {
    /// Opaque call id; never parsed.
    pub call_id: Option<Str<'a>>,
    /// Local device id of the connection.
    pub device_id: Option<Str<'a>>,
}

impl Detach for Connection<'_> {
    type Owned = Connection<'static>;
    fn detach(self) -> Connection<'static> {
        Connection {
            call_id: self.call_id.detach(),
            device_id: self.device_id.detach(),
        }
    }
}

/// An extended device id: a number, or one of the reasons there is none.
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
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

impl Detach for Device<'_> {
    type Owned = Device<'static>;
    fn detach(self) -> Device<'static> {
        match self {
            Device::Id(s) => Device::Id(own(s)),
            Device::NotKnown => Device::NotKnown,
            Device::Restricted => Device::Restricted,
            Device::NotRequired => Device::NotRequired,
            Device::NotSpecified => Device::NotSpecified,
        }
    }
}

impl Device<'_> {
    /// The raw id, if any.
    pub fn id(&self) -> Option<&str> {
        match self {
            Device::Id(s) => Some(s),
            _ => None,
        }
    }
}

/// `chargingInfo` (ChargingEvent, ConnectionClearedEvent, TransferedEvent). Values are raw text.
#[serde_with::skip_serializing_none]
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct Charging<'a> {
    /// `typeOfChargingInfo`: `subTotal` or `total`.
    pub info_type: Option<Str<'a>>,
    /// `numberOfChargeUnits/chargingUnitsRecord/chargingUnits` (the last record).
    pub charge_units: Option<Str<'a>>,
    /// `numberOfChargeUnits/chargingUnitsRecord/typeOfUnits` (the last record).
    pub units_type: Option<Str<'a>>,
    /// `numberOfCurrencyUnits/currencyType`.
    pub currency_type: Option<Str<'a>>,
    /// `numberOfCurrencyUnits/currencyAmount`.
    pub currency_amount: Option<Str<'a>>,
    /// `numberOfCurrencyUnits/currencyMultiplier`.
    pub currency_multiplier: Option<Str<'a>>,
}

impl Detach for Charging<'_> {
    type Owned = Charging<'static>;
    fn detach(self) -> Charging<'static> {
        Charging {
            info_type: self.info_type.detach(),
            charge_units: self.charge_units.detach(),
            units_type: self.units_type.detach(),
            currency_type: self.currency_type.detach(),
            currency_amount: self.currency_amount.detach(),
            currency_multiplier: self.currency_multiplier.detach(),
        }
    }
}

/// Event types the gateway decodes field by field; everything else is [`EventKind::Other`].
#[derive(serde::Serialize, Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
#[allow(missing_docs)]
pub enum EventKind {
    // Call control.
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
    NetworkCapabilitiesChanged,
    // Logical device.
    AgentLoggedOn,
    AgentLoggedOff,
    AgentReady,
    AgentNotReady,
    AgentBusy,
    AgentWorkingAfterCall,
    DoNotDisturb,
    Forwarding,
    // Device maintenance.
    BackInService,
    OutOfService,
    PartiallyInService,
    DeviceCapsChanged,
    // Call associated.
    CallInformation,
    Charging,
    DigitsGenerated,
    TelephonyTonesGenerated,
    ServiceCompletionFailure,
    /// An event root we do not decode field by field; its name is in [`Document::name`]. Its
    /// `monitorCrossRefID` is still extracted.
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
            "NetworkCapabilitiesChanged" => NetworkCapabilitiesChanged,
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
            "PartiallyInService" => PartiallyInService,
            "DeviceCapsChanged" => DeviceCapsChanged,
            "CallInformation" => CallInformation,
            "Charging" => Charging,
            "DigitsGenerated" => DigitsGenerated,
            "TelephonyTonesGenerated" => TelephonyTonesGenerated,
            "ServiceCompletionFailure" => ServiceCompletionFailure,
            _ => Other,
        })
    }
}

/// The fields of an event the gateway uses. Which of them are set depends on the event type; the
/// element each one comes from is listed on the field. Every path is from the root, matched by local
/// name; when an element occurs twice the last one wins.
#[serde_with::skip_serializing_none]
#[derive(serde::Serialize, Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    /// The event type.
    pub kind: EventKind,
    /// `monitorCrossRefID`: which monitor (and so which device) this event is for.
    pub cross_ref: Option<Str<'a>>,
    /// The event's own connection: `connection`, `establishedConnection`, `droppedConnection`,
    /// `heldConnection`, `retrievedConnection`, `initiatedConnection`, `originatedConnection`,
    /// `failedConnection`, `queuedConnection`, `clearedCall`, `offeredConnection`,
    /// `bridgedConnection`, `outboundConnection`, `dialingConnection`, or
    /// `primaryCall/connectionID` (ServiceCompletionFailure).
    pub connection: Option<Connection<'a>>,
    /// The device the event happened at: `alertingDevice`, `answeringDevice`, `releasingDevice`,
    /// `holdingDevice`, `retrievingDevice`, `initiatingDevice`, `transferringDevice`,
    /// `conferencingDevice`, `divertingDevice`, `failingDevice`, `queue`, `agentDevice`, `device`,
    /// `offeredDevice`, `bridgedAppearance`, `dialingDevice`, `networkInterfaceUsed`,
    /// `chargedDevice`, or `primaryCall/deviceID` (ServiceCompletionFailure).
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
    /// `secondaryOldCall`, or `secondaryCall/connectionID` (ServiceCompletionFailure).
    pub secondary_old_call: Option<Connection<'a>>,
    /// `newConnection` of each `transferredConnections` / `conferenceConnections` item.
    pub new_connections: Vec<Connection<'a>>,
    /// `originatingNIDConnection` (spelled `originatinNIDConnection` in the 6th edition's
    /// EstablishedEvent; both are accepted).
    pub originating_nid: Option<Connection<'a>>,
    /// `networkCallingDevice`.
    pub network_calling: Option<Device<'a>>,
    /// `networkCalledDevice`.
    pub network_called: Option<Device<'a>>,
    /// `associatedCallingDevice`.
    pub associated_calling: Option<Device<'a>>,
    /// `associatedCalledDevice`.
    pub associated_called: Option<Device<'a>>,
    /// `originatingDevice` (OriginatedEvent).
    pub originating_device: Option<Str<'a>>,
    /// `localConnectionInfo`, or `primaryCall/localConnectionState` (ServiceCompletionFailure).
    pub local_state: Option<Str<'a>>,
    /// `cause`.
    pub cause: Option<Str<'a>>,
    /// `correlatorData/string` (hex, raw).
    pub correlator_data: Option<Str<'a>>,
    /// `userData/string` (hex, raw).
    pub user_data: Option<Str<'a>>,
    /// `accountInfo` (CallInformationEvent).
    pub account_info: Option<Str<'a>>,
    /// `dialingSequence` (DigitsDialed) or `digitGeneratedList` (DigitsGenerated).
    pub digits: Option<Str<'a>>,
    /// `toneGenerated` (TelephonyTonesGenerated).
    pub tone: Option<Str<'a>>,
    /// `numberQueued` (QueuedEvent).
    pub number_queued: Option<u32>,
    /// `callsInFront` (QueuedEvent).
    pub calls_in_front: Option<u32>,
    /// `chargingInfo`. Boxed: it is rare, and every event would otherwise carry its space.
    pub charging: Option<Box<Charging<'a>>>,
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
    /// `forwardDefault`.
    pub forward_default: Option<Str<'a>>,
    /// `ringCount`.
    pub ring_count: Option<u32>,
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
            originating_nid: None,
            network_calling: None,
            network_called: None,
            associated_calling: None,
            associated_called: None,
            originating_device: None,
            local_state: None,
            cause: None,
            correlator_data: None,
            user_data: None,
            account_info: None,
            digits: None,
            tone: None,
            number_queued: None,
            calls_in_front: None,
            charging: None,
            agent_id: None,
            acd_group: None,
            pending_agent_state: None,
            do_not_disturb: None,
            forwarding_type: None,
            forward_status: None,
            forward_to: None,
            forward_default: None,
            ring_count: None,
        }
    }

    /// Detaches the event from the input buffer.
    pub fn into_owned(self) -> Event<'static> {
        self.detach()
    }
}

impl Detach for Event<'_> {
    type Owned = Event<'static>;
    fn detach(self) -> Event<'static> {
        Event {
            kind: self.kind,
            cross_ref: self.cross_ref.detach(),
            connection: self.connection.detach(),
            subject: self.subject.detach(),
            calling: self.calling.detach(),
            called: self.called.detach(),
            last_redirection: self.last_redirection.detach(),
            target: self.target.detach(),
            old_call: self.old_call.detach(),
            secondary_old_call: self.secondary_old_call.detach(),
            new_connections: self.new_connections.detach(),
            originating_nid: self.originating_nid.detach(),
            network_calling: self.network_calling.detach(),
            network_called: self.network_called.detach(),
            associated_calling: self.associated_calling.detach(),
            associated_called: self.associated_called.detach(),
            originating_device: self.originating_device.detach(),
            local_state: self.local_state.detach(),
            cause: self.cause.detach(),
            correlator_data: self.correlator_data.detach(),
            user_data: self.user_data.detach(),
            account_info: self.account_info.detach(),
            digits: self.digits.detach(),
            tone: self.tone.detach(),
            number_queued: self.number_queued,
            calls_in_front: self.calls_in_front,
            charging: self.charging.detach(),
            agent_id: self.agent_id.detach(),
            acd_group: self.acd_group.detach(),
            pending_agent_state: self.pending_agent_state.detach(),
            do_not_disturb: self.do_not_disturb,
            forwarding_type: self.forwarding_type.detach(),
            forward_status: self.forward_status,
            forward_to: self.forward_to.detach(),
            forward_default: self.forward_default.detach(),
            ring_count: self.ring_count,
        }
    }
}
