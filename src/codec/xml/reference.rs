//! A reference ECMA-323 reader built on quick-xml, for tests and fuzzers only.
//!
//! It reads the document into a small owned element tree with quick-xml and then extracts every
//! field by path, with its own tables of element names. It shares nothing with the hand-written
//! decoder in `decode.rs` but the result types and the rules both implement:
//!
//! - names are matched by local name; the root's namespace is the one its prefix (or the default
//!   namespace) is bound to on the root itself;
//! - a *leaf* is an element without child elements; its value is its text, CDATA and resolved
//!   references in document order, line ends normalized, trimmed of XML whitespace (space, tab,
//!   CR, LF);
//! - a field is read from an exact path below the root; when several elements match (several
//!   paths, or the same path twice), the one that *starts* last in document order wins;
//! - a device field is the element's own text when it is a non-empty leaf, else the last of its
//!   leaf children `deviceIdentifier`/`numberDialed`/`deviceID` (an id) or `notKnown`/`restricted`/
//!   `notRequired`/`notSpecified`;
//! - lists (new connections, snapshot entries, devices, …) hold one entry per matching element in
//!   document order.
//!
//! It is slower than `decode` by an order of magnitude and allocates for every element; that is
//! fine for what it is for. Errors are mapped onto [`XmlError`] coarsely: tests compare *that* both
//! readers fail, not how.

use super::{
    AgentInfo, AgentStateEntry, Charging, Connection, CstaError, Device, DeviceList, Document,
    Event, EventKind, ForwardItem, ListedDevice, MAX_DEPTH, Message, Response, SnapshotCall,
    SnapshotParty, SnapshotSegment, XmlError,
};
use quick_xml::XmlVersion;
use quick_xml::events::{BytesRef, Event as Q};
use std::borrow::Cow;

/// One element of the tree.
#[derive(Debug, Default)]
struct Node {
    /// Local name.
    name: String,
    /// Position of the start tag among all start tags (document order).
    order: usize,
    /// Child elements in order.
    children: Vec<Node>,
    /// Text, CDATA and references directly inside, concatenated.
    text: String,
}

impl Node {
    fn is_leaf(&self) -> bool {
        self.children.is_empty()
    }

    /// The trimmed value of a leaf.
    fn value(&self) -> &str {
        self.text
            .trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
    }

    /// Every element at `path` below this one, in document order.
    fn all<'n>(&'n self, path: &[&str]) -> Vec<&'n Node> {
        let mut out = Vec::new();
        self.collect(path, &mut out);
        out.sort_by_key(|n| n.order);
        out
    }

    fn collect<'n>(&'n self, path: &[&str], out: &mut Vec<&'n Node>) {
        match path {
            [] => out.push(self),
            [first, rest @ ..] => {
                for c in self.children.iter().filter(|c| c.name == *first) {
                    c.collect(rest, out);
                }
            }
        }
    }

    /// The element starting last among those at any of `paths`.
    fn last(&self, paths: &[&[&str]]) -> Option<&Node> {
        paths
            .iter()
            .flat_map(|p| self.all(p))
            .max_by_key(|n| n.order)
    }

    /// The value of the leaf starting last among those at any of `paths`.
    fn last_leaf(&self, paths: &[&[&str]]) -> Option<String> {
        paths
            .iter()
            .flat_map(|p| self.all(p))
            .filter(|n| n.is_leaf())
            .max_by_key(|n| n.order)
            .map(|n| n.value().to_owned())
    }

    fn leaf(&self, path: &[&str]) -> Option<String> {
        self.last_leaf(&[path])
    }
}

fn owned(s: String) -> Cow<'static, str> {
    Cow::Owned(s)
}

fn opt(s: Option<String>) -> Option<Cow<'static, str>> {
    s.map(owned)
}

fn boolean(v: Option<String>) -> Option<bool> {
    match v.as_deref() {
        Some("true" | "1") => Some(true),
        Some("false" | "0") => Some(false),
        _ => None,
    }
}

fn number(v: Option<String>) -> Option<u32> {
    v.and_then(|v| v.parse().ok())
}

/// A ConnectionID element: `callID`, `deviceID`.
fn connection(n: &Node) -> Connection<'static> {
    Connection {
        call_id: opt(n.leaf(&["callID"])),
        device_id: opt(n.leaf(&["deviceID"])),
    }
}

/// An extended device id element.
fn device(n: &Node) -> Option<Device<'static>> {
    if n.is_leaf() {
        return direct(n);
    }
    let mut d = None;
    for c in n.children.iter().filter(|c| c.is_leaf()) {
        d = match c.name.as_str() {
            "deviceIdentifier" | "numberDialed" | "deviceID" => {
                Some(Device::Id(owned(c.value().to_owned())))
            }
            "notKnown" => Some(Device::NotKnown),
            "restricted" => Some(Device::Restricted),
            "notRequired" => Some(Device::NotRequired),
            "notSpecified" => Some(Device::NotSpecified),
            _ => d,
        };
    }
    d
}

/// A device written as text only.
fn direct(n: &Node) -> Option<Device<'static>> {
    (n.is_leaf() && !n.value().is_empty()).then(|| Device::Id(owned(n.value().to_owned())))
}

/// Reads `input` (a frame body) the way [`super::decode`] does, independently.
pub fn decode(input: &[u8]) -> Result<Document<'static>, XmlError> {
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let text = transcode(input)?;
    let (root, namespace) = tree(&text)?;
    let message = message(&root);
    Ok(Document {
        name: owned(root.name),
        namespace: opt(namespace),
        message,
    })
}

/// The document as text, by its declared encoding.
fn transcode(input: &[u8]) -> Result<String, XmlError> {
    let label = declared_encoding(input)?;
    match label.map(|l| l.to_ascii_lowercase()).as_deref() {
        None | Some("utf-8" | "utf8" | "us-ascii" | "ascii") => std::str::from_utf8(input)
            .map(str::to_owned)
            .map_err(|_| XmlError::InvalidUtf8),
        Some("iso-8859-1" | "iso8859-1" | "latin1" | "latin-1" | "l1" | "iso_8859-1") => {
            Ok(input.iter().map(|&b| char::from(b)).collect())
        }
        Some(other) => Err(XmlError::UnsupportedEncoding(other.to_owned())),
    }
}

/// The encoding label of the XML declaration, read with quick-xml.
fn declared_encoding(input: &[u8]) -> Result<Option<String>, XmlError> {
    if !input.starts_with(b"<?xml") {
        return Ok(None);
    }
    let head = &input[..input.len().min(256)];
    let Some(end) = head.windows(2).position(|w| w == b"?>") else {
        return Ok(None);
    };
    let Ok(decl) = std::str::from_utf8(&head[..end + 2]) else {
        return Ok(None);
    };
    let mut r = quick_xml::Reader::from_str(decl);
    match r.read_event() {
        Ok(Q::Decl(d)) => Ok(d
            .encoding()
            .and_then(Result::ok)
            .map(|e| e.trim().to_owned())),
        _ => Ok(None),
    }
}

/// Resolves a reference the way XML 1.0 allows: the five predefined entities and character
/// references to characters XML permits.
fn resolve(r: &BytesRef<'_>) -> Result<char, XmlError> {
    let name: &str = r;
    let bad = || XmlError::BadReference(name.chars().take(16).collect());
    let c = match name {
        "lt" => '<',
        "gt" => '>',
        "amp" => '&',
        "quot" => '"',
        "apos" => '\'',
        _ => r.resolve_char_ref().map_err(|_| bad())?.ok_or_else(bad)?,
    };
    if c == '\0' || ((c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r')) {
        return Err(bad());
    }
    Ok(c)
}

fn syntax(r: &quick_xml::Reader<&[u8]>, e: quick_xml::Error) -> XmlError {
    use quick_xml::errors::{Error as E, IllFormedError as I, SyntaxError as S};
    match e {
        E::IllFormed(I::MismatchedEndTag { expected, found }) => {
            XmlError::Mismatch { expected, found }
        }
        E::Syntax(
            S::UnclosedTag
            | S::UnclosedComment
            | S::UnclosedCData
            | S::UnclosedPI
            | S::UnclosedXmlDecl
            | S::UnclosedDoctype
            | S::UnclosedSingleQuotedAttributeValue
            | S::UnclosedDoubleQuotedAttributeValue,
        ) => XmlError::Truncated,
        E::Escape(_) => XmlError::BadReference(String::new()),
        _ => XmlError::Syntax {
            at: usize::try_from(r.error_position()).unwrap_or(usize::MAX),
            what: "rejected by quick-xml",
        },
    }
}

/// Reads the element tree; returns the root and its namespace.
fn tree(text: &str) -> Result<(Node, Option<String>), XmlError> {
    let mut r = quick_xml::Reader::from_reader(text.as_bytes());
    let mut stack: Vec<Node> = Vec::new();
    let mut root: Option<Node> = None;
    let mut namespace = None;
    let mut order = 0usize;
    loop {
        let ev = r.read_event().map_err(|e| syntax(&r, e))?;
        let (start, empty) = match &ev {
            Q::Start(s) => (Some(s), false),
            Q::Empty(s) => (Some(s), true),
            _ => (None, false),
        };
        if let Some(s) = start {
            if root.is_some() {
                return Err(XmlError::TrailingContent);
            }
            if stack.len() == MAX_DEPTH {
                return Err(XmlError::TooDeep);
            }
            let qname = s.name();
            if stack.is_empty() {
                namespace = root_namespace(s)?;
            }
            let node = Node {
                name: qname.local_name().as_ref().to_owned(),
                order,
                ..Node::default()
            };
            order += 1;
            if empty {
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            } else {
                stack.push(node);
            }
            continue;
        }
        match ev {
            Q::End(_) => {
                let Some(node) = stack.pop() else {
                    return Err(XmlError::Syntax {
                        at: 0,
                        what: "end tag without a start tag",
                    });
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(node),
                    None => root = Some(node),
                }
            }
            Q::Text(t) => {
                let piece = t.xml10_content();
                match stack.last_mut() {
                    Some(n) => n.text.push_str(&piece),
                    None if piece.chars().all(|c| matches!(c, ' ' | '\t' | '\r' | '\n')) => {}
                    None if root.is_some() => return Err(XmlError::TrailingContent),
                    None => return Err(XmlError::NoRoot),
                }
            }
            Q::CData(c) => match stack.last_mut() {
                Some(n) => n.text.push_str(&c.xml10_content()),
                None if root.is_some() => return Err(XmlError::TrailingContent),
                None => return Err(XmlError::NoRoot),
            },
            Q::GeneralRef(g) => {
                let c = resolve(&g)?;
                match stack.last_mut() {
                    Some(n) => n.text.push(c),
                    None if root.is_some() => return Err(XmlError::TrailingContent),
                    None => return Err(XmlError::NoRoot),
                }
            }
            Q::DocType(_) => return Err(XmlError::Doctype),
            Q::Eof => {
                return match (root, stack.is_empty()) {
                    (Some(root), true) => Ok((root, namespace)),
                    (None, true) => Err(XmlError::NoRoot),
                    (_, false) => Err(XmlError::Truncated),
                };
            }
            // Declaration, comments, processing instructions.
            _ => {}
        }
    }
}

/// The namespace bound to the root's prefix (or the default one) by the root's own attributes.
fn root_namespace(s: &quick_xml::events::BytesStart<'_>) -> Result<Option<String>, XmlError> {
    let qname = s.name();
    let wanted = match qname.prefix() {
        Some(p) => format!("xmlns:{}", p.as_ref()),
        None => "xmlns".to_owned(),
    };
    let mut found = None;
    for a in s.attributes().with_checks(true) {
        let a = a.map_err(|_| XmlError::Syntax {
            at: 0,
            what: "attribute rejected by quick-xml",
        })?;
        if a.key.as_ref() == wanted {
            let v = a
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|_| XmlError::BadReference(String::new()))?;
            found = Some(v.into_owned()).filter(|v| !v.is_empty());
        }
    }
    Ok(found)
}

/// Event roots, by local name.
fn event_kind(root: &str) -> Option<EventKind> {
    use EventKind as K;
    const TABLE: &[(&str, EventKind)] = &[
        ("ServiceInitiatedEvent", K::ServiceInitiated),
        ("OriginatedEvent", K::Originated),
        ("DeliveredEvent", K::Delivered),
        ("EstablishedEvent", K::Established),
        ("HeldEvent", K::Held),
        ("RetrievedEvent", K::Retrieved),
        ("ConnectionClearedEvent", K::ConnectionCleared),
        ("CallClearedEvent", K::CallCleared),
        ("TransferedEvent", K::Transferred),
        ("TransferredEvent", K::Transferred),
        ("ConferencedEvent", K::Conferenced),
        ("DivertedEvent", K::Diverted),
        ("FailedEvent", K::Failed),
        ("QueuedEvent", K::Queued),
        ("NetworkReachedEvent", K::NetworkReached),
        ("OfferedEvent", K::Offered),
        ("BridgedEvent", K::Bridged),
        ("DigitsDialedEvent", K::DigitsDialed),
        (
            "NetworkCapabilitiesChangedEvent",
            K::NetworkCapabilitiesChanged,
        ),
        ("AgentLoggedOnEvent", K::AgentLoggedOn),
        ("AgentLoggedOffEvent", K::AgentLoggedOff),
        ("AgentReadyEvent", K::AgentReady),
        ("AgentNotReadyEvent", K::AgentNotReady),
        ("AgentBusyEvent", K::AgentBusy),
        ("AgentWorkingAfterCallEvent", K::AgentWorkingAfterCall),
        ("DoNotDisturbEvent", K::DoNotDisturb),
        ("ForwardingEvent", K::Forwarding),
        ("BackInServiceEvent", K::BackInService),
        ("OutOfServiceEvent", K::OutOfService),
        ("PartiallyInServiceEvent", K::PartiallyInService),
        ("DeviceCapsChangedEvent", K::DeviceCapsChanged),
        ("CallInformationEvent", K::CallInformation),
        ("ChargingEvent", K::Charging),
        ("DigitsGeneratedEvent", K::DigitsGenerated),
        ("TelephonyTonesGeneratedEvent", K::TelephonyTonesGenerated),
        ("ServiceCompletionFailureEvent", K::ServiceCompletionFailure),
    ];
    if let Some((_, k)) = TABLE.iter().find(|(n, _)| *n == root) {
        return Some(*k);
    }
    (root.len() > "Event".len() && root.ends_with("Event")).then_some(K::Other)
}

/// The message a root announces, read from the tree.
fn message(root: &Node) -> Message<'static> {
    if let Some(kind) = event_kind(&root.name) {
        return Message::Event(Box::new(event(root, kind)));
    }
    let leaf = |name: &str| opt(root.leaf(&[name]));
    let conn_at = |name: &str| root.last(&[&[name]]).map(connection).unwrap_or_default();
    let name = root.name.as_str();
    match name {
        "SystemStatus" => Message::SystemStatus {
            status: leaf("systemStatus"),
        },
        "RequestSystemStatus" => Message::RequestSystemStatus {
            register_id: leaf("sysStatRegisterID"),
        },
        "SwitchingFunctionDevices" => Message::SwitchingFunctionDevices(DeviceList {
            service_cross_ref: leaf("serviceCrossRefID"),
            segment_id: number(root.leaf(&["segmentID"])),
            last_segment: boolean(root.leaf(&["lastSegment"])),
            devices: root
                .all(&["deviceList", "device"])
                .into_iter()
                .map(|d| ListedDevice {
                    id: opt(d.leaf(&["deviceID"])),
                    category: opt(d.leaf(&["deviceCategory"])),
                })
                .collect(),
        }),
        "SnapshotDeviceData" => Message::SnapshotDeviceData(SnapshotSegment {
            service_cross_ref: leaf("serviceCrossRefID"),
            segment_id: number(root.leaf(&["segmentID"])),
            last_segment: boolean(root.leaf(&["lastSegment"])),
            calls: snapshot_calls(root, &["snapshotData", "snapshotDeviceResponseInfo"]),
        }),
        "CSTAErrorCode" => Message::Error(error(root.children.iter())),
        n if n.ends_with("NegResponse") => Message::Error(error(
            root.all(&["errorCode"])
                .into_iter()
                .flat_map(|e| e.children.iter()),
        )),
        "SystemStatusResponse" => Message::Response(Response::SystemStatus),
        "SystemRegisterResponse" => Message::Response(Response::SystemRegister {
            register_id: leaf("sysStatRegisterID"),
        }),
        "RequestSystemStatusResponse" => Message::Response(Response::RequestSystemStatus {
            status: leaf("systemStatus"),
        }),
        "MonitorStartResponse" => Message::Response(Response::MonitorStart {
            cross_ref: leaf("monitorCrossRefID"),
        }),
        "MakeCallResponse" => Message::Response(Response::MakeCall {
            call: conn_at("callingDevice"),
        }),
        "SingleStepTransferCallResponse" | "TransferCallResponse" => {
            Message::Response(Response::NewCall {
                call: conn_at("transferredCall"),
            })
        }
        "ConsultationCallResponse" => Message::Response(Response::NewCall {
            call: conn_at("initiatedCall"),
        }),
        "ConferenceCallResponse" => Message::Response(Response::NewCall {
            call: conn_at("conferenceCall"),
        }),
        "SnapshotDeviceResponse" => Message::Response(snapshot_device(root)),
        "SnapshotCallResponse" => Message::Response(Response::SnapshotCall {
            parties: root
                .all(&[
                    "crossRefIDorSnapshotData",
                    "snapshotData",
                    "snapshotCallResponseInfo",
                ])
                .into_iter()
                .map(|p| SnapshotParty {
                    device: p.last(&[&["deviceOnCall"]]).and_then(device),
                    connection: p.last(&[&["callIdentifier"]]).map(connection),
                    state: opt(p.leaf(&["localConnectionInfo"])),
                })
                .collect(),
        }),
        "GetSwitchingFunctionDevicesResponse" => {
            Message::Response(Response::GetSwitchingFunctionDevices {
                service_cross_ref: leaf("serviceCrossRefID"),
            })
        }
        "GetCSTAFeaturesResponse" => Message::Response(Response::CstaFeatures {
            services: features(root, "supportedServices"),
            events: features(root, "supportedEvents"),
        }),
        "GetAgentStateResponse" => Message::Response(Response::AgentState {
            agents: root
                .all(&["agentStateList", "agentStateEntry"])
                .into_iter()
                .map(|a| AgentStateEntry {
                    agent_id: opt(a.leaf(&["agentID"])),
                    logged_on: boolean(a.leaf(&["loggedOnState"])),
                    info: a
                        .all(&["agentInfo"])
                        .into_iter()
                        .map(|i| AgentInfo {
                            acd_group: opt(i.leaf(&["acdGroup"])),
                            state: opt(i.leaf(&["agentState"])),
                            pending_state: opt(i.leaf(&["pendingAgentState"])),
                        })
                        .collect(),
                })
                .collect(),
        }),
        "GetDoNotDisturbResponse" => Message::Response(Response::DoNotDisturb {
            on: boolean(root.leaf(&["doNotDisturbOn"])),
        }),
        "GetForwardingResponse" => Message::Response(Response::Forwarding {
            items: root
                .all(&["forwardingList", "forwardListItem"])
                .into_iter()
                .map(|f| ForwardItem {
                    forwarding_type: opt(f.leaf(&["forwardingType"])),
                    on: boolean(f.leaf(&["forwardStatus"])),
                    to: opt(f.leaf(&["forwardDN"])),
                })
                .collect(),
        }),
        "StartApplicationSessionPosResponse" => {
            Message::Response(Response::StartApplicationSession {
                session_id: leaf("sessionID"),
                protocol_version: leaf("actualProtocolVersion"),
                session_duration: number(root.leaf(&["actualSessionDuration"])),
            })
        }
        "ResetApplicationSessionTimerPosResponse" => {
            Message::Response(Response::ResetApplicationSessionTimer {
                session_duration: number(root.leaf(&["actualSessionDuration"])),
            })
        }
        n if n.ends_with("Response") => Message::Response(Response::Ack),
        "SystemRegister"
        | "SwitchingFunctionCapsChanged"
        | "MonitorStart"
        | "MonitorStop"
        | "SnapshotDevice"
        | "MakeCall"
        | "GetSwitchingFunctionDevices"
        | "StartApplicationSession"
        | "ResetApplicationSessionTimer"
        | "StopApplicationSession" => Message::Request,
        _ => Message::Unknown,
    }
}

/// The error category is the first candidate element; its value is its text if it is a leaf.
fn error<'n>(mut candidates: impl Iterator<Item = &'n Node>) -> CstaError<'static> {
    match candidates.next() {
        Some(c) => CstaError {
            category: owned(c.name.clone()),
            value: owned(if c.is_leaf() {
                c.value().to_owned()
            } else {
                String::new()
            }),
        },
        None => CstaError {
            category: Cow::Borrowed("unspecified"),
            value: Cow::Borrowed(""),
        },
    }
}

/// Names of the `true` leaves two levels below every `group` element.
fn features(root: &Node, group: &str) -> Vec<Cow<'static, str>> {
    let mut leaves: Vec<&Node> = root
        .all(&[group])
        .into_iter()
        .flat_map(|g| g.children.iter())
        .flat_map(|s| s.children.iter())
        .filter(|l| l.is_leaf() && boolean(Some(l.value().to_owned())) == Some(true))
        .collect();
    leaves.sort_by_key(|l| l.order);
    leaves.into_iter().map(|l| owned(l.name.clone())).collect()
}

fn snapshot_device(root: &Node) -> Response<'static> {
    let calls = snapshot_calls(
        root,
        &[
            "crossRefIDorSnapshotData",
            "snapshotData",
            "snapshotDeviceResponseInfo",
        ],
    );
    Response::SnapshotDevice {
        calls,
        service_cross_ref: opt(root.leaf(&["crossRefIDorSnapshotData", "serviceCrossRefID"])),
    }
}

fn snapshot_calls(root: &Node, path: &[&str]) -> Vec<SnapshotCall<'static>> {
    root.all(path)
        .into_iter()
        .map(|c| {
            let mut states: Vec<&Node> = c
                .all(&["localCallState", "simpleCallState"])
                .into_iter()
                .chain(c.all(&[
                    "localCallState",
                    "compoundCallState",
                    "localConnectionState",
                ]))
                .filter(|n| n.is_leaf())
                .collect();
            states.sort_by_key(|n| n.order);
            SnapshotCall {
                connection: c
                    .last(&[&["connectionIdentifier"]])
                    .map(connection)
                    .unwrap_or_default(),
                endpoint: c.last(&[&["endpointDevice"]]).and_then(device),
                states: states
                    .into_iter()
                    .map(|n| owned(n.value().to_owned()))
                    .collect(),
            }
        })
        .collect()
}

/// Element names by the event field they fill.
mod names {
    pub(super) const CONNECTION: &[&str] = &[
        "connection",
        "establishedConnection",
        "droppedConnection",
        "heldConnection",
        "retrievedConnection",
        "initiatedConnection",
        "originatedConnection",
        "failedConnection",
        "queuedConnection",
        "clearedCall",
        "offeredConnection",
        "bridgedConnection",
        "outboundConnection",
        "dialingConnection",
    ];
    pub(super) const SUBJECT: &[&str] = &[
        "alertingDevice",
        "answeringDevice",
        "releasingDevice",
        "holdingDevice",
        "retrievingDevice",
        "initiatingDevice",
        "transferringDevice",
        "conferencingDevice",
        "divertingDevice",
        "failingDevice",
        "queue",
        "agentDevice",
        "device",
        "offeredDevice",
        "bridgedAppearance",
        "bridgingDevice",
        "dialingDevice",
        "networkInterfaceUsed",
        "chargedDevice",
    ];
    pub(super) const TARGET: &[&str] = &["transferredToDevice", "addedParty", "newDestination"];
}

/// The element starting last among those named in `names` (directly below `root`) or at `extra`.
fn last_of<'n>(root: &'n Node, names: &[&str], extra: &[&[&str]]) -> Option<&'n Node> {
    let direct = names.iter().map(std::slice::from_ref);
    let paths: Vec<&[&str]> = direct.chain(extra.iter().copied()).collect();
    root.last(&paths)
}

fn event(root: &Node, kind: EventKind) -> Event<'static> {
    let mut e = Event::new(kind);
    let leaf = |paths: &[&[&str]]| opt(root.last_leaf(paths));
    let dev = |name: &str| root.last(&[&[name]]).and_then(device);
    let conn = |name: &str| root.last(&[&[name]]).map(connection);

    e.cross_ref = leaf(&[&["monitorCrossRefID"]]);
    e.connection =
        last_of(root, names::CONNECTION, &[&["primaryCall", "connectionID"]]).map(connection);
    // `primaryCall/deviceID` is a plain DeviceID (text), the others are extended device ids.
    e.subject = last_of(root, names::SUBJECT, &[&["primaryCall", "deviceID"]]).and_then(|n| {
        if n.name == "deviceID" {
            direct(n)
        } else {
            device(n)
        }
    });
    e.calling = dev("callingDevice");
    e.called = dev("calledDevice");
    e.last_redirection = dev("lastRedirectionDevice");
    e.target = last_of(root, names::TARGET, &[]).and_then(device);
    e.old_call = conn("primaryOldCall");
    e.secondary_old_call = root
        .last(&[&["secondaryOldCall"], &["secondaryCall", "connectionID"]])
        .map(connection);
    let mut news: Vec<&Node> = root
        .all(&[
            "transferredConnections",
            "connectionListItem",
            "newConnection",
        ])
        .into_iter()
        .chain(root.all(&[
            "conferenceConnections",
            "connectionListItem",
            "newConnection",
        ]))
        .collect();
    news.sort_by_key(|n| n.order);
    e.new_connections = news.into_iter().map(connection).collect();
    e.originating_nid = root
        .last(&[&["originatingNIDConnection"], &["originatinNIDConnection"]])
        .map(connection);
    e.network_calling = dev("networkCallingDevice");
    e.network_called = dev("networkCalledDevice");
    e.associated_calling = dev("associatedCallingDevice");
    e.associated_called = dev("associatedCalledDevice");
    e.originating_device = leaf(&[&["originatingDevice"]]);
    e.local_state = leaf(&[
        &["localConnectionInfo"],
        &["primaryCall", "localConnectionState"],
    ]);
    e.cause = leaf(&[&["cause"]]);
    e.correlator_data = leaf(&[&["correlatorData", "string"]]);
    e.user_data = leaf(&[&["userData", "string"]]);
    e.account_info = leaf(&[&["accountInfo"]]);
    e.digits = leaf(&[&["dialingSequence"], &["digitGeneratedList"]]);
    e.tone = leaf(&[&["toneGenerated"]]);
    e.number_queued = number(root.leaf(&["numberQueued"]));
    e.calls_in_front = number(root.leaf(&["callsInFront"]));
    e.charging = root.last(&[&["chargingInfo"]]).map(|c| {
        Box::new(Charging {
            info_type: opt(c.leaf(&["typeOfChargingInfo"])),
            charge_units: opt(c.leaf(&[
                "numberUnits",
                "numberOfChargeUnits",
                "chargingUnitsRecord",
                "chargingUnits",
            ])),
            units_type: opt(c.leaf(&[
                "numberUnits",
                "numberOfChargeUnits",
                "chargingUnitsRecord",
                "typeOfUnits",
            ])),
            currency_type: opt(c.leaf(&["numberUnits", "numberOfCurrencyUnits", "currencyType"])),
            currency_amount: opt(c.leaf(&[
                "numberUnits",
                "numberOfCurrencyUnits",
                "currencyAmount",
            ])),
            currency_multiplier: opt(c.leaf(&[
                "numberUnits",
                "numberOfCurrencyUnits",
                "currencyMultiplier",
            ])),
        })
    });
    e.agent_id = leaf(&[&["agentID"]]);
    e.acd_group = leaf(&[&["acdGroup"]]);
    e.pending_agent_state = leaf(&[&["pendingAgentState"]]);
    e.do_not_disturb = boolean(root.leaf(&["doNotDisturbOn"]));
    e.forwarding_type = leaf(&[&["forwardingType"]]);
    e.forward_status = boolean(root.leaf(&["forwardStatus"]));
    e.forward_to = leaf(&[&["forwardTo"]]);
    e.forward_default = leaf(&[&["forwardDefault"]]);
    e.ring_count = number(root.leaf(&["ringCount"]));
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_an_osv_event() {
        let doc = br#"<?xml version="1.0" encoding="UTF-8"?><DeliveredEvent xmlns="http://www.ecma-international.org/standards/ecma-323/csta/ed4"><monitorCrossRefID>7</monitorCrossRefID><connection><callID>FF01</callID><deviceID>100</deviceID></connection><callingDevice><deviceIdentifier>N&lt;100&gt;</deviceIdentifier></callingDevice><calledDevice><notKnown/></calledDevice><cause>newCall</cause></DeliveredEvent>"#;
        let d = decode(doc).unwrap();
        assert_eq!(
            d.namespace.as_deref(),
            Some("http://www.ecma-international.org/standards/ecma-323/csta/ed4")
        );
        let Message::Event(e) = d.message else {
            panic!("not an event")
        };
        assert_eq!(e.kind, EventKind::Delivered);
        assert_eq!(e.cross_ref.as_deref(), Some("7"));
        assert_eq!(e.calling, Some(Device::Id("N<100>".into())));
        assert_eq!(e.called, Some(Device::NotKnown));
        assert_eq!(e.connection.unwrap().call_id.as_deref(), Some("FF01"));
    }

    #[test]
    fn refuses_what_the_decoder_refuses() {
        assert_eq!(decode(b"<!DOCTYPE a><a/>"), Err(XmlError::Doctype));
        assert_eq!(decode(b"<a><b></a>").unwrap_err().kind(), "syntax");
        assert_eq!(decode(b"<a>").unwrap_err(), XmlError::Truncated);
        assert_eq!(decode(b"").unwrap_err(), XmlError::NoRoot);
        assert_eq!(decode(b"<a/><b/>").unwrap_err(), XmlError::TrailingContent);
        assert_eq!(decode(b"<a>&#0;</a>").unwrap_err().kind(), "bad_reference");
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert_eq!(decode(deep.as_bytes()).unwrap_err(), XmlError::TooDeep);
    }
}
