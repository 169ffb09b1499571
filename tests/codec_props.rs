//! Property tests of the CSTA XML codec.
//!
//! (a) For generated CSTA documents (random roots, field subsets and orders, namespaces and
//!     prefixes, indentation, comments, CDATA, entity and character references, vendor elements,
//!     Latin-1), `codec::xml::decode` extracts exactly what the independent quick-xml reference
//!     reader extracts.
//! (b) Any split of a stream of framed messages into reads gives the same frames and messages.
//! (c) Every generated request survives encoder → decoder (and quick-xml) with its values intact.
//! (d) Decoding never panics, on arbitrary bytes or on mutations of valid documents; when both
//!     readers accept a mutated document they agree on it.

use bytes::BytesMut;
use ctigate::codec::framing::{Deframer, InvokeId, MAX_WIRE_FRAME, encode_frame};
use ctigate::codec::xml::encode::{self, ConnRef, Request, ns};
use ctigate::codec::xml::{self, Document, Message, XmlError, reference};
use proptest::prelude::*;
use proptest::sample::select;

/// Cases per property: `n`, or `CODEC_PROPS_CASES` for a deeper run.
fn cases(n: u32) -> u32 {
    std::env::var("CODEC_PROPS_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(n)
}

// ---------------------------------------------------------------------------------------------
// A tiny document model for the generator.

/// How one character of a value is written.
#[derive(Debug, Clone, Copy)]
enum Enc {
    Literal,
    Named,
    Decimal,
    Hex,
}

/// A piece of a value: text (character by character) or a CDATA section; a comment may follow.
#[derive(Debug, Clone)]
struct Piece {
    chars: Vec<(char, Enc)>,
    cdata: bool,
    comment_after: bool,
}

#[derive(Debug, Clone)]
struct Value {
    /// Whitespace written before and after the value (trimmed by both readers).
    pad: (String, String),
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone)]
enum Item {
    /// An element with children.
    Node(String, Vec<Item>),
    /// A leaf with a value.
    Leaf(String, Value),
    /// `<name/>` or `<name></name>`.
    Empty(String, bool),
    /// A comment between elements.
    Comment(String),
}

/// Layout choices for the whole document.
#[derive(Debug, Clone)]
struct Style {
    decl: u8,
    latin1: bool,
    /// Namespace URI of the root (none if empty).
    ns: String,
    /// Prefix for the root (and, if `prefix_children`, for its children).
    prefix: Option<String>,
    prefix_children: bool,
    /// Newline and indentation between elements.
    indent: Option<(&'static str, &'static str)>,
    extra_attrs: bool,
}

const NAMESPACES: &[&str] = &[
    ns::ED2,
    "http://www.ecma-international.org/standards/ecma-323/csta/ed2",
    ns::ED3,
    ns::ED4,
    ns::ED5,
    ns::ED6,
    ns::APPL_SESSION,
    "http://www.avaya.com/csta",
];

fn escape_char(out: &mut String, c: char, enc: Enc) {
    // `]]>` may not appear literally in text.
    let must_escape = matches!(c, '<' | '&') || (c == '>' && out.ends_with("]]"));
    match (enc, must_escape) {
        (Enc::Literal, false) => out.push(c),
        (Enc::Named | Enc::Literal, _) if matches!(c, '<' | '>' | '&' | '"' | '\'') => {
            out.push_str(match c {
                '<' => "&lt;",
                '>' => "&gt;",
                '&' => "&amp;",
                '"' => "&quot;",
                _ => "&apos;",
            });
        }
        (Enc::Hex, _) => out.push_str(&format!("&#x{:X};", c as u32)),
        _ => out.push_str(&format!("&#{};", c as u32)),
    }
}

fn render_value(v: &Value, out: &mut String) {
    out.push_str(&v.pad.0);
    for p in &v.pieces {
        let text: String = p.chars.iter().map(|(c, _)| *c).collect();
        if p.cdata && !text.contains("]]>") && !text.is_empty() {
            out.push_str("<![CDATA[");
            out.push_str(&text);
            out.push_str("]]>");
        } else {
            for (c, enc) in &p.chars {
                escape_char(out, *c, *enc);
            }
        }
        if p.comment_after {
            out.push_str("<!-- split -->");
        }
    }
    out.push_str(&v.pad.1);
}

fn qualify(name: &str, style: &Style) -> String {
    match (&style.prefix, style.prefix_children, name.contains(':')) {
        (Some(p), true, false) => format!("{p}:{name}"),
        _ => name.to_owned(),
    }
}

fn render_item(item: &Item, style: &Style, depth: usize, out: &mut String) {
    if let Some((nl, ind)) = style.indent {
        out.push_str(nl);
        for _ in 0..depth {
            out.push_str(ind);
        }
    }
    match item {
        Item::Node(name, children) => {
            let q = qualify(name, style);
            out.push_str(&format!("<{q}>"));
            for c in children {
                render_item(c, style, depth + 1, out);
            }
            if let Some((nl, ind)) = style.indent {
                out.push_str(nl);
                for _ in 0..depth {
                    out.push_str(ind);
                }
            }
            out.push_str(&format!("</{q}>"));
        }
        Item::Leaf(name, v) => {
            let q = qualify(name, style);
            out.push_str(&format!("<{q}>"));
            render_value(v, out);
            out.push_str(&format!("</{q}>"));
        }
        Item::Empty(name, short) => {
            let q = qualify(name, style);
            if *short {
                out.push_str(&format!("<{q}/>"));
            } else {
                out.push_str(&format!("<{q}></{q}>"));
            }
        }
        Item::Comment(c) => out.push_str(&format!("<!--{c}-->")),
    }
}

/// Renders a document; `None` if the style asks for Latin-1 and a character does not fit.
fn render(root: &str, children: &[Item], style: &Style) -> Option<Vec<u8>> {
    let mut out = String::new();
    match style.decl {
        0 => {}
        1 => out.push_str("<?xml version=\"1.0\"?>"),
        _ if style.latin1 => out.push_str("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>"),
        2 => out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"),
        _ => out.push_str("<?xml version='1.0' encoding='utf-8' standalone='yes'?>\n"),
    }
    let q = match &style.prefix {
        Some(p) => format!("{p}:{root}"),
        None => root.to_owned(),
    };
    out.push_str(&format!("<{q}"));
    if !style.ns.is_empty() {
        match &style.prefix {
            Some(p) => out.push_str(&format!(" xmlns:{p}=\"{}\"", style.ns)),
            None => out.push_str(&format!(" xmlns=\"{}\"", style.ns)),
        }
    }
    if style.extra_attrs {
        out.push_str(
            " xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
             xsi:schemaLocation='urn:x file://localhost/X:/csta/ecma/event.xsd'",
        );
    }
    out.push('>');
    for c in children {
        render_item(c, style, 1, &mut out);
    }
    if let Some((nl, _)) = style.indent {
        out.push_str(nl);
    }
    out.push_str(&format!("</{q}>"));
    if style.latin1 {
        out.chars()
            .map(|c| u8::try_from(u32::from(c)).ok())
            .collect()
    } else {
        Some(out.into_bytes())
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies.

fn value_char() -> impl Strategy<Value = char> {
    prop_oneof![
        8 => select(
            "0123456789abcdefABCDEF+-_.;=:@/ ".chars().collect::<Vec<_>>()
        ),
        2 => select(vec!['<', '>', '&', '"', '\'', ']']),
        1 => select(vec!['ü', 'é', 'ß', '中', '€', '\u{a0}', '\t', '\n']),
    ]
}

fn enc() -> impl Strategy<Value = Enc> {
    prop_oneof![6 => Just(Enc::Literal), 1 => Just(Enc::Named), 1 => Just(Enc::Decimal), 1 => Just(Enc::Hex)]
}

fn value() -> impl Strategy<Value = Value> {
    let piece = (
        proptest::collection::vec((value_char(), enc()), 0..14),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.1),
    )
        .prop_map(|(chars, cdata, comment_after)| Piece {
            chars,
            cdata,
            comment_after,
        });
    let pad = select(vec!["", "", "", " ", "\n  ", "\t", "\r\n "]);
    (pad.clone(), pad, proptest::collection::vec(piece, 1..3)).prop_map(|(a, b, pieces)| Value {
        pad: (a.to_owned(), b.to_owned()),
        pieces,
    })
}

/// A value that is one of `words`, sometimes something else.
fn word(words: &'static [&'static str]) -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => select(words).prop_map(|w| Value {
            pad: (String::new(), String::new()),
            pieces: vec![Piece {
                chars: w.chars().map(|c| (c, Enc::Literal)).collect(),
                cdata: false,
                comment_after: false,
            }],
        }),
        1 => value(),
    ]
}

fn leaf(name: &'static str) -> BoxedStrategy<Item> {
    value()
        .prop_map(move |v| Item::Leaf(name.to_owned(), v))
        .boxed()
}

fn leaf_of(name: &'static str, words: &'static [&'static str]) -> BoxedStrategy<Item> {
    word(words)
        .prop_map(move |v| Item::Leaf(name.to_owned(), v))
        .boxed()
}

const BOOLS: &[&str] = &["true", "false", "1", "0", "yes"];
const NUMBERS: &[&str] = &["0", "1", "7", "120", "4294967295", "-1", "x"];

fn empty(name: &'static str) -> BoxedStrategy<Item> {
    any::<bool>()
        .prop_map(move |short| Item::Empty(name.to_owned(), short))
        .boxed()
}

/// Vendor elements: names the standard does not use (some prefixed), nested, with text.
fn vendor() -> BoxedStrategy<Item> {
    let name = select(vec![
        "cmdsAllowed",
        "callTypeFlags",
        "cad",
        "globalCallID",
        "callingDisplayName",
        "scx:staticOndDN",
        "scx:extendedServicesPermitted",
        "lcs:line",
        "av:ucid",
        "x:deep",
    ]);
    let leafy = (name.clone(), value()).prop_map(|(n, v)| Item::Leaf(n.to_owned(), v));
    leafy
        .prop_recursive(3, 12, 4, move |inner| {
            (name.clone(), proptest::collection::vec(inner, 0..4))
                .prop_map(|(n, c)| Item::Node(n.to_owned(), c))
        })
        .boxed()
}

fn comment() -> BoxedStrategy<Item> {
    select(vec![" note ", "", "<not a tag>", "a & b"])
        .prop_map(|c| Item::Comment(c.to_owned()))
        .boxed()
}

/// Children in random order, with vendor elements and comments mixed in.
fn mix(parts: Vec<BoxedStrategy<Item>>) -> BoxedStrategy<Vec<Item>> {
    let n = parts.len();
    (
        parts,
        Just(()).prop_perturb(move |_, mut rng| {
            let mut idx: Vec<usize> = (0..n).collect();
            for i in (1..idx.len()).rev() {
                idx.swap(i, rng.random_range(0..=i));
            }
            idx
        }),
    )
        .prop_map(|(items, order)| order.into_iter().map(|i| items[i].clone()).collect())
        .boxed()
}

fn maybe(s: BoxedStrategy<Item>) -> BoxedStrategy<Option<Item>> {
    proptest::option::weighted(0.6, s).boxed()
}

/// Optional children, randomly ordered, plus noise.
fn children(parts: Vec<BoxedStrategy<Item>>) -> BoxedStrategy<Vec<Item>> {
    let opt: Vec<_> = parts.into_iter().map(maybe).collect();
    let noise = proptest::collection::vec(prop_oneof![3 => vendor(), 1 => comment()], 0..3);
    (opt, noise)
        .prop_flat_map(|(items, noise)| {
            let mut all: Vec<Item> = items.into_iter().flatten().collect();
            all.extend(noise);
            let all: Vec<BoxedStrategy<Item>> = all.into_iter().map(|i| Just(i).boxed()).collect();
            mix(all)
        })
        .boxed()
}

fn node(name: &'static str, parts: Vec<BoxedStrategy<Item>>) -> BoxedStrategy<Item> {
    children(parts)
        .prop_map(move |c| Item::Node(name.to_owned(), c))
        .boxed()
}

fn conn(name: &'static str) -> BoxedStrategy<Item> {
    node(name, vec![leaf("callID"), leaf("deviceID")])
}

/// An extended device id: one CHOICE child, or the id written directly.
fn dev(name: &'static str) -> BoxedStrategy<Item> {
    prop_oneof![
        4 => node(name, vec![leaf("deviceIdentifier")]),
        1 => node(name, vec![leaf("numberDialed")]),
        1 => node(name, vec![empty("notKnown")]),
        1 => node(name, vec![empty("restricted")]),
        1 => node(name, vec![empty("notRequired")]),
        1 => node(name, vec![empty("notSpecified")]),
        1 => leaf(name),
    ]
    .boxed()
}

fn conn_list(name: &'static str) -> BoxedStrategy<Item> {
    let item = node(
        "connectionListItem",
        vec![
            conn("newConnection"),
            conn("oldConnection"),
            node("endpoint", vec![leaf("deviceID")]),
        ],
    );
    proptest::collection::vec(item, 0..4)
        .prop_map(move |c| Item::Node(name.to_owned(), c))
        .boxed()
}

fn services_permitted() -> BoxedStrategy<Item> {
    node(
        "servicesPermitted",
        vec![
            node(
                "callControlServices",
                vec![
                    leaf_of("clearConnection", BOOLS),
                    leaf_of("holdCall", BOOLS),
                ],
            ),
            empty("callAssociatedServices"),
            // The standard's own spelling.
            empty("mediaAttachementServices"),
            empty("routeingServices"),
        ],
    )
}

fn charging() -> BoxedStrategy<Item> {
    prop_oneof![
        node(
            "chargingInfo",
            vec![
                node(
                    "numberUnits",
                    vec![node(
                        "numberOfChargeUnits",
                        vec![node(
                            "chargingUnitsRecord",
                            vec![leaf_of("chargingUnits", NUMBERS), leaf("typeOfUnits")],
                        )],
                    )],
                ),
                leaf_of("typeOfChargingInfo", &["subTotal", "total"]),
            ],
        ),
        node(
            "chargingInfo",
            vec![
                node(
                    "numberUnits",
                    vec![node(
                        "numberOfCurrencyUnits",
                        vec![
                            leaf_of("currencyType", &["EUR", "USD"]),
                            leaf_of("currencyAmount", NUMBERS),
                            leaf("currencyMultiplier"),
                        ],
                    )],
                ),
                leaf_of("typeOfChargingInfo", &["subTotal", "total"]),
            ],
        ),
    ]
    .boxed()
}

const EVENT_ROOTS: &[&str] = &[
    "ServiceInitiatedEvent",
    "OriginatedEvent",
    "DeliveredEvent",
    "EstablishedEvent",
    "HeldEvent",
    "RetrievedEvent",
    "ConnectionClearedEvent",
    "CallClearedEvent",
    "TransferedEvent",
    "TransferredEvent",
    "ConferencedEvent",
    "DivertedEvent",
    "FailedEvent",
    "QueuedEvent",
    "NetworkReachedEvent",
    "OfferedEvent",
    "BridgedEvent",
    "DigitsDialedEvent",
    "NetworkCapabilitiesChangedEvent",
    "AgentLoggedOnEvent",
    "AgentLoggedOffEvent",
    "AgentReadyEvent",
    "AgentNotReadyEvent",
    "AgentBusyEvent",
    "AgentWorkingAfterCallEvent",
    "DoNotDisturbEvent",
    "ForwardingEvent",
    "BackInServiceEvent",
    "OutOfServiceEvent",
    "PartiallyInServiceEvent",
    "DeviceCapsChangedEvent",
    "CallInformationEvent",
    "ChargingEvent",
    "DigitsGeneratedEvent",
    "TelephonyTonesGeneratedEvent",
    "ServiceCompletionFailureEvent",
    "PrivateEvent",
    "ButtonPressEvent",
];

/// The children of any event: every field the decoder knows, each maybe present.
fn event_children() -> BoxedStrategy<Vec<Item>> {
    let conns = select(vec![
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
    ])
    .prop_flat_map(conn)
    .boxed();
    let subjects = select(vec![
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
        "dialingDevice",
        "networkInterfaceUsed",
        "chargedDevice",
    ])
    .prop_flat_map(dev)
    .boxed();
    let targets = select(vec!["transferredToDevice", "addedParty", "newDestination"])
        .prop_flat_map(dev)
        .boxed();
    let nids = select(vec!["originatingNIDConnection", "originatinNIDConnection"])
        .prop_flat_map(conn)
        .boxed();
    let primary_call = node(
        "primaryCall",
        vec![
            leaf("deviceID"),
            conn("connectionID"),
            leaf_of("localConnectionState", &["connected", "hold"]),
        ],
    );
    let secondary_call = node("secondaryCall", vec![conn("connectionID")]);
    let fields = vec![
        leaf("monitorCrossRefID"),
        conns.clone(),
        conns,
        subjects.clone(),
        subjects,
        dev("callingDevice"),
        dev("calledDevice"),
        dev("lastRedirectionDevice"),
        targets,
        conn("primaryOldCall"),
        conn("secondaryOldCall"),
        conn_list("transferredConnections"),
        conn_list("conferenceConnections"),
        nids,
        dev("networkCallingDevice"),
        dev("networkCalledDevice"),
        dev("associatedCallingDevice"),
        dev("associatedCalledDevice"),
        leaf("originatingDevice"),
        leaf_of(
            "localConnectionInfo",
            &[
                "null",
                "initiated",
                "alerting",
                "connected",
                "hold",
                "queued",
                "fail",
            ],
        ),
        leaf_of("cause", &["newCall", "normalClearing", "transfer", "busy"]),
        node("correlatorData", vec![leaf("string")]),
        node("userData", vec![leaf("string")]),
        leaf("accountInfo"),
        leaf("dialingSequence"),
        leaf("digitGeneratedList"),
        leaf("toneGenerated"),
        leaf_of("numberQueued", NUMBERS),
        leaf_of("callsInFront", NUMBERS),
        charging(),
        leaf("agentID"),
        leaf("acdGroup"),
        leaf_of("pendingAgentState", &["agentNotReady", "agentReady"]),
        leaf_of("doNotDisturbOn", BOOLS),
        leaf_of("forwardingType", &["forwardImmediate", "forwardBusyInt"]),
        leaf_of("forwardStatus", BOOLS),
        leaf("forwardTo"),
        leaf("forwardDefault"),
        leaf_of("ringCount", NUMBERS),
        primary_call,
        secondary_call,
        services_permitted(),
        node(
            "mediaCallCharacteristics",
            vec![node("mediaClass", vec![leaf_of("voice", BOOLS)])],
        ),
        node(
            "extensions",
            vec![node("privateData", vec![node("private", vec![vendor()])])],
        ),
    ];
    children(fields)
}

/// Roots other than events, each with the children its response or request carries.
fn other_root() -> BoxedStrategy<(String, Vec<Item>)> {
    let with = |root: &'static str, parts: Vec<BoxedStrategy<Item>>| {
        children(parts)
            .prop_map(move |c| (root.to_owned(), c))
            .boxed()
    };
    let snapshot_info = node(
        "snapshotDeviceResponseInfo",
        vec![
            conn("connectionIdentifier"),
            dev("endpointDevice"),
            prop_oneof![
                node(
                    "localCallState",
                    vec![node(
                        "compoundCallState",
                        vec![
                            leaf_of("localConnectionState", &["connected", "hold"]),
                            leaf_of("localConnectionState", &["alerting", "null"]),
                        ],
                    )],
                ),
                node(
                    "localCallState",
                    vec![leaf_of("simpleCallState", &["callDelivered"])]
                ),
            ]
            .boxed(),
        ],
    );
    let snapshot_infos = proptest::collection::vec(snapshot_info, 0..4)
        .prop_map(|c| Item::Node("snapshotData".into(), c))
        .boxed();
    let party = node(
        "snapshotCallResponseInfo",
        vec![
            dev("deviceOnCall"),
            conn("callIdentifier"),
            leaf("localConnectionInfo"),
        ],
    );
    let parties = proptest::collection::vec(party, 0..4)
        .prop_map(|c| Item::Node("snapshotData".into(), c))
        .boxed();
    let listed = node(
        "device",
        vec![
            leaf("deviceID"),
            leaf_of("deviceCategory", &["station", "acd"]),
        ],
    );
    let devices = proptest::collection::vec(listed, 0..4)
        .prop_map(|c| Item::Node("deviceList".into(), c))
        .boxed();
    let agent = node(
        "agentStateEntry",
        vec![
            leaf("agentID"),
            leaf_of("loggedOnState", BOOLS),
            node(
                "agentInfo",
                vec![leaf("acdGroup"), leaf_of("agentState", &["agentReady"])],
            ),
            node(
                "agentInfo",
                vec![leaf_of("pendingAgentState", &["agentNotReady"])],
            ),
        ],
    );
    let agents = proptest::collection::vec(agent, 0..3)
        .prop_map(|c| Item::Node("agentStateList".into(), c))
        .boxed();
    let fwd = node(
        "forwardListItem",
        vec![
            leaf_of("forwardingType", &["forwardImmediate"]),
            leaf_of("forwardStatus", BOOLS),
            leaf("forwardDN"),
        ],
    );
    let fwds = proptest::collection::vec(fwd, 0..3)
        .prop_map(|c| Item::Node("forwardingList".into(), c))
        .boxed();
    let feature_group = |g: &'static str, names: &'static [&'static str]| {
        node(
            g,
            names.iter().map(|n| leaf_of(n, BOOLS)).collect::<Vec<_>>(),
        )
    };
    prop_oneof![
        with(
            "SystemStatus",
            vec![
                leaf_of("systemStatus", &["normal", "enabled"]),
                leaf("sysStatRegisterID")
            ]
        ),
        with(
            "RequestSystemStatus",
            vec![leaf("sysStatRegisterID"), node("extensions", vec![])]
        ),
        with("SystemStatusResponse", vec![node("extensions", vec![])]),
        with("SystemRegisterResponse", vec![leaf("sysStatRegisterID")]),
        with(
            "RequestSystemStatusResponse",
            vec![leaf_of("systemStatus", &["normal"])]
        ),
        with(
            "MonitorStartResponse",
            vec![
                leaf("monitorCrossRefID"),
                leaf_of("monitorExistingCalls", BOOLS)
            ]
        ),
        with("MonitorStopResponse", vec![]),
        with("MakeCallResponse", vec![conn("callingDevice")]),
        with(
            "SingleStepTransferCallResponse",
            vec![conn("transferredCall"), conn_list("connections")]
        ),
        with("TransferCallResponse", vec![conn("transferredCall")]),
        with("ConsultationCallResponse", vec![conn("initiatedCall")]),
        with("ConferenceCallResponse", vec![conn("conferenceCall")]),
        with(
            "SnapshotDeviceResponse",
            vec![
                prop_oneof![
                    node("crossRefIDorSnapshotData", vec![snapshot_infos.clone()]),
                    node("crossRefIDorSnapshotData", vec![leaf("serviceCrossRefID")]),
                ]
                .boxed()
            ]
        ),
        with(
            "SnapshotDeviceData",
            vec![
                leaf("serviceCrossRefID"),
                leaf_of("segmentID", NUMBERS),
                leaf_of("lastSegment", BOOLS),
                snapshot_infos,
            ]
        ),
        with(
            "SnapshotCallResponse",
            vec![node("crossRefIDorSnapshotData", vec![parties])]
        ),
        with(
            "GetSwitchingFunctionDevicesResponse",
            vec![leaf("serviceCrossRefID")]
        ),
        with(
            "SwitchingFunctionDevices",
            vec![
                leaf("serviceCrossRefID"),
                leaf_of("segmentID", NUMBERS),
                leaf_of("lastSegment", BOOLS),
                devices
            ]
        ),
        with(
            "GetCSTAFeaturesResponse",
            vec![
                node(
                    "supportedServices",
                    vec![
                        feature_group("callControlServList", &["makeCall", "holdCall"]),
                        feature_group("monitoringServList", &["monitorStart"]),
                    ]
                ),
                node(
                    "supportedEvents",
                    vec![feature_group("callControlEvtsList", &["delivered", "held"])]
                ),
            ]
        ),
        with("GetAgentStateResponse", vec![agents]),
        with(
            "GetDoNotDisturbResponse",
            vec![leaf_of("doNotDisturbOn", BOOLS)]
        ),
        with("GetForwardingResponse", vec![fwds]),
        with(
            "StartApplicationSessionPosResponse",
            vec![
                leaf("sessionID"),
                leaf_of(
                    "actualProtocolVersion",
                    &["http://www.ecma-international.org/standards/ecma-323/csta/ed3/priv5"]
                ),
                leaf_of("actualSessionDuration", NUMBERS),
                node("extensions", vec![leaf("actualHBT")]),
            ]
        ),
        with(
            "StartApplicationSessionNegResponse",
            vec![node(
                "errorCode",
                vec![leaf_of("definedError", &["invalidApplicationInfo"])]
            )]
        ),
        with(
            "ResetApplicationSessionTimerPosResponse",
            vec![leaf_of("actualSessionDuration", NUMBERS)]
        ),
        with(
            "CSTAErrorCode",
            vec![
                prop_oneof![
                    leaf_of("operation", &["invalidDeviceID", "invalidCallID"]),
                    leaf_of("systemResourceAvailibility", &["resourceBusy"]),
                    leaf_of("stateIncompatibility", &["noActiveCall"]),
                    empty("unspecified"),
                    node("privateData", vec![node("private", vec![vendor()])]),
                ]
                .boxed()
            ]
        ),
        with(
            "MonitorStart",
            vec![node("monitorObject", vec![leaf("deviceObject")])]
        ),
        with("SomethingElse", vec![leaf("x")]),
    ]
    .boxed()
}

fn style() -> impl Strategy<Value = Style> {
    (
        0u8..4,
        prop::bool::weighted(0.15),
        prop_oneof![1 => Just(String::new()), 4 => select(NAMESPACES).prop_map(str::to_owned)],
        proptest::option::weighted(
            0.3,
            select(vec!["csta", "ns3", "x", "a1"]).prop_map(str::to_owned),
        ),
        any::<bool>(),
        proptest::option::weighted(
            0.4,
            select(vec![("\n", "  "), ("\r\n", "\t"), ("\n", ""), (" ", " ")]),
        ),
        prop::bool::weighted(0.2),
    )
        .prop_map(
            |(decl, latin1, ns, prefix, prefix_children, indent, extra_attrs)| Style {
                decl,
                latin1: latin1 && decl >= 2,
                ns,
                prefix,
                prefix_children,
                indent,
                extra_attrs,
            },
        )
}

/// A whole generated document: root name, children, style.
fn document() -> impl Strategy<Value = (String, Vec<Item>, Style)> {
    let root = prop_oneof![
        3 => (select(EVENT_ROOTS), event_children()).prop_map(|(r, c)| (r.to_owned(), c)),
        2 => other_root(),
    ];
    (root, style()).prop_map(|((r, c), s)| (r, c, s))
}

fn owned(d: Result<Document<'_>, XmlError>) -> Result<Document<'static>, XmlError> {
    d.map(Document::into_owned)
}

/// The fields of both readers agree, and a generated `monitorCrossRefID` was found (so the
/// comparison is not vacuous).
fn check_same(bytes: &[u8], root: &str, children: &[Item]) -> Result<(), TestCaseError> {
    let ours = owned(xml::decode(bytes));
    let theirs = reference::decode(bytes);
    let text = String::from_utf8_lossy(bytes);
    prop_assert!(
        theirs.is_ok(),
        "reference rejects a generated document: {theirs:?}\n{text}"
    );
    prop_assert_eq!(&ours, &theirs, "\n{}", text);
    let doc = ours.map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(doc.name.as_ref(), root);
    if let Message::Event(e) = &doc.message {
        let has_xref = children
            .iter()
            .any(|c| matches!(c, Item::Leaf(n, _) if n == "monitorCrossRefID"));
        prop_assert_eq!(e.cross_ref.is_some(), has_xref);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(512), ..ProptestConfig::default() })]

    /// (a) The hand-written decoder and the quick-xml reference read the same fields.
    #[test]
    fn decoder_matches_reference((root, children, style) in document()) {
        if let Some(bytes) = render(&root, &children, &style) {
            check_same(&bytes, &root, &children)?;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (b) Framing.

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(256), ..ProptestConfig::default() })]

    #[test]
    fn any_split_of_a_frame_stream_gives_the_same_frames(
        docs in proptest::collection::vec((0u16..10_000, document()), 1..6),
        cuts in proptest::collection::vec(0usize..4000, 0..30),
    ) {
        let mut stream = BytesMut::new();
        let mut sent = Vec::new();
        for (id, (root, children, style)) in &docs {
            let Some(body) = render(root, children, style) else { continue };
            if encode_frame(InvokeId(*id), &body, &mut stream).is_ok() {
                sent.push((InvokeId(*id), body));
            }
        }
        let stream = stream.to_vec();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.push(stream.len());
        cuts.sort_unstable();
        let mut d = Deframer::new(MAX_WIRE_FRAME);
        let mut got = Vec::new();
        let mut at = 0;
        for cut in cuts {
            d.push(&stream[at..cut]);
            at = cut;
            loop {
                match d.next_frame() {
                    Ok(Some(f)) => got.push(f),
                    Ok(None) => break,
                    Err(e) => prop_assert!(false, "framing error on a valid stream: {e}"),
                }
            }
        }
        prop_assert_eq!(d.pending(), 0);
        prop_assert_eq!(got.len(), sent.len());
        for (f, (id, body)) in got.iter().zip(&sent) {
            prop_assert_eq!(f.invoke_id, *id);
            prop_assert_eq!(&f.body[..], &body[..]);
            prop_assert_eq!(owned(xml::decode(&f.body)), owned(xml::decode(body)));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (c) Encoder round trip.

/// Request field text: anything XML can carry, including markup characters.
/// Characters a request may carry that no document may: the encoder must keep the document
/// readable (CR as a reference, the rest replaced).
fn wire_char() -> impl Strategy<Value = char> {
    prop_oneof![
        12 => value_char(),
        1 => select(vec!['\r', '\u{0}', '\u{1}', '\u{b}', '\u{1f}', '\u{fffe}', '\u{ffff}']),
    ]
}

/// What a value is once sent: characters XML cannot carry become U+FFFD.
fn as_sent(v: &str) -> String {
    v.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => '\u{fffd}',
            c => c,
        })
        .collect()
}

fn field_of(chars: impl Strategy<Value = char>) -> impl Strategy<Value = String> {
    proptest::collection::vec(chars, 1..20).prop_map(|v| {
        let s: String = v.into_iter().collect();
        // Leading/trailing whitespace is not significant to either reader; keep it out so the
        // round trip can compare exactly.
        let t = s
            .trim_matches(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
            .to_owned();
        if t.is_empty() { "x".to_owned() } else { t }
    })
}

#[derive(Debug, Clone)]
struct Fields(Vec<String>);

impl Fields {
    fn s(&self, i: usize) -> &str {
        &self.0[i % self.0.len()]
    }
    fn conn(&self, i: usize) -> ConnRef<'_> {
        ConnRef {
            call_id: self.s(i),
            device_id: self.s(i + 1),
        }
    }
}

/// Request number `k` built from `f`, and the leaves (path below the root, value) it must carry.
fn request(k: usize, f: &Fields) -> (Request<'_>, Vec<(String, String)>) {
    let p = |path: &str, v: &str| (path.to_owned(), v.to_owned());
    let c = |path: &str, r: ConnRef<'_>| {
        vec![
            p(&format!("{path}/callID"), r.call_id),
            p(&format!("{path}/deviceID"), r.device_id),
        ]
    };
    match k % 28 {
        0 => (Request::SystemStatusResponse, vec![]),
        1 => (
            Request::SystemRegister,
            vec![p("requestTypes/systemStatus", "true")],
        ),
        2 => (Request::RequestSystemStatus, vec![]),
        3 => (
            Request::RequestSystemStatusResponse { status: f.s(0) },
            vec![p("systemStatus", f.s(0))],
        ),
        4 => (
            Request::MonitorStart { device: f.s(0) },
            vec![p("monitorObject/deviceObject", f.s(0))],
        ),
        5 => (
            Request::MonitorStop { cross_ref: f.s(0) },
            vec![p("monitorCrossRefID", f.s(0))],
        ),
        6 => (
            Request::SnapshotDevice { device: f.s(0) },
            vec![p("snapshotObject", f.s(0))],
        ),
        7 => (
            Request::MakeCall {
                calling: f.s(0),
                called: f.s(1),
            },
            vec![
                p("callingDevice", f.s(0)),
                p("calledDirectoryNumber", f.s(1)),
            ],
        ),
        8 => (
            Request::AnswerCall { call: f.conn(0) },
            c("callToBeAnswered", f.conn(0)),
        ),
        9 => (
            Request::ClearConnection { conn: f.conn(0) },
            c("connectionToBeCleared", f.conn(0)),
        ),
        10 => (
            Request::ClearCall { call: f.conn(0) },
            c("callToBeCleared", f.conn(0)),
        ),
        11 => (
            Request::HoldCall { call: f.conn(0) },
            c("callToBeHeld", f.conn(0)),
        ),
        12 => (
            Request::RetrieveCall { call: f.conn(0) },
            c("callToBeRetrieved", f.conn(0)),
        ),
        13 => {
            let mut v = c("activeCall", f.conn(0));
            v.push(p("transferredTo", f.s(2)));
            (
                Request::SingleStepTransferCall {
                    call: f.conn(0),
                    to: f.s(2),
                },
                v,
            )
        }
        14 => {
            let mut v = c("existingCall", f.conn(0));
            v.push(p("consultedDevice", f.s(2)));
            (
                Request::ConsultationCall {
                    call: f.conn(0),
                    to: f.s(2),
                },
                v,
            )
        }
        15 => {
            let mut v = c("heldCall", f.conn(0));
            v.extend(c("activeCall", f.conn(2)));
            (
                Request::TransferCall {
                    held: f.conn(0),
                    active: f.conn(2),
                },
                v,
            )
        }
        16 => {
            let mut v = c("heldCall", f.conn(0));
            v.extend(c("activeCall", f.conn(2)));
            (
                Request::ConferenceCall {
                    held: f.conn(0),
                    active: f.conn(2),
                },
                v,
            )
        }
        17 => {
            let mut v = c("callToBeDiverted", f.conn(0));
            v.push(p("newDestination", f.s(2)));
            (
                Request::DeflectCall {
                    call: f.conn(0),
                    to: f.s(2),
                },
                v,
            )
        }
        18 => (
            Request::SetDoNotDisturb {
                device: f.s(0),
                on: f.s(1).len().is_multiple_of(2),
            },
            vec![
                p("device", f.s(0)),
                p(
                    "doNotDisturbOn",
                    if f.s(1).len().is_multiple_of(2) {
                        "true"
                    } else {
                        "false"
                    },
                ),
            ],
        ),
        19 => (
            Request::SetForwarding {
                device: f.s(0),
                forwarding_type: f.s(1),
                on: true,
                to: Some(f.s(2)),
            },
            vec![
                p("device", f.s(0)),
                p("forwardingType", f.s(1)),
                p("activateForward", "true"),
                p("forwardDN", f.s(2)),
            ],
        ),
        20 => (
            Request::SetAgentState {
                device: f.s(0),
                state: f.s(1),
                agent_id: Some(f.s(2)),
            },
            vec![
                p("device", f.s(0)),
                p("requestedAgentState", f.s(1)),
                p("agentID", f.s(2)),
            ],
        ),
        21 => (
            Request::StartApplicationSession {
                application_id: f.s(0),
                user_name: Some(f.s(1)),
                password: Some(f.s(2)),
                session_cleanup_delay: Some(60),
                login_namespace: ns::AVAYA,
                protocol_versions: &[ns::ED3],
                session_duration: Some(180),
            },
            vec![
                p("applicationInfo/applicationID", f.s(0)),
                p(
                    "applicationInfo/applicationSpecificInfo/SessionLoginInfo/userName",
                    f.s(1),
                ),
                p(
                    "applicationInfo/applicationSpecificInfo/SessionLoginInfo/password",
                    f.s(2),
                ),
                p(
                    "applicationInfo/applicationSpecificInfo/SessionLoginInfo/sessionCleanupDelay",
                    "60",
                ),
                p("requestedProtocolVersions/protocolVersion", ns::ED3),
                p("requestedSessionDuration", "180"),
            ],
        ),
        22 => (
            Request::ResetApplicationSessionTimer {
                session_id: f.s(0),
                session_duration: 120,
            },
            vec![p("sessionID", f.s(0)), p("requestedSessionDuration", "120")],
        ),
        23 => (
            Request::StopApplicationSession { session_id: f.s(0) },
            vec![
                p("sessionID", f.s(0)),
                p("sessionEndReason/definedEndReason", "normal"),
            ],
        ),
        24 => (
            Request::GetSwitchingFunctionDevices {
                device: Some(f.s(0)),
                category: Some(f.s(1)),
            },
            vec![
                p("requestedDeviceID", f.s(0)),
                p("requestedDeviceCategory", f.s(1)),
            ],
        ),
        25 => (
            Request::GetSwitchingFunctionDevices {
                device: None,
                category: None,
            },
            vec![],
        ),
        26 => (
            Request::StartApplicationSession {
                application_id: f.s(0),
                user_name: None,
                password: None,
                session_cleanup_delay: None,
                login_namespace: ns::PBXNSIP,
                protocol_versions: &[
                    ns::ED3,
                    "http://www.ecma-international.org/standards/ecma-323/csta/ed3/priv5",
                ],
                session_duration: None,
            },
            vec![
                p("applicationInfo/applicationID", f.s(0)),
                p("requestedProtocolVersions/protocolVersion", ns::ED3),
                p(
                    "requestedProtocolVersions/protocolVersion",
                    "http://www.ecma-international.org/standards/ecma-323/csta/ed3/priv5",
                ),
            ],
        ),
        _ => (
            Request::SetForwarding {
                device: f.s(0),
                forwarding_type: f.s(1),
                on: false,
                to: None,
            },
            vec![
                p("device", f.s(0)),
                p("forwardingType", f.s(1)),
                p("activateForward", "false"),
            ],
        ),
    }
}

/// A document read back: root name, root namespace, every leaf as (path below the root, value).
type Leaves = (String, Option<String>, Vec<(String, String)>);

/// Every leaf of an XML document as (path below the root, value), read with quick-xml.
fn leaves(doc: &str) -> Result<Leaves, String> {
    use quick_xml::events::Event as Q;
    let mut r = quick_xml::Reader::from_str(doc);
    let mut path: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let mut root = String::new();
    let mut namespace = None;
    let mut text = String::new();
    let mut leaf = false;
    loop {
        match r.read_event().map_err(|e| e.to_string())? {
            Q::Start(s) => {
                let name = s.local_name().as_ref().to_owned();
                if root.is_empty() {
                    root = name.clone();
                    namespace = s
                        .attributes()
                        .flatten()
                        .find(|a| a.key.as_ref() == "xmlns")
                        .map(|a| {
                            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                .map(|v| v.into_owned())
                        })
                        .transpose()
                        .map_err(|e| e.to_string())?;
                } else {
                    path.push(name);
                }
                text.clear();
                leaf = true;
            }
            Q::Empty(s) => {
                let name = s.local_name().as_ref().to_owned();
                if root.is_empty() {
                    root = name;
                } else {
                    out.push((
                        format!("{}/{name}", path.join("/"))
                            .trim_start_matches('/')
                            .to_owned(),
                        String::new(),
                    ));
                }
                leaf = false;
            }
            Q::End(_) => {
                // The root is not a field, even when it has no children.
                if leaf && !path.is_empty() {
                    out.push((path.join("/"), text.clone()));
                }
                path.pop();
                leaf = false;
            }
            Q::Text(t) => text.push_str(&t.xml10_content()),
            Q::GeneralRef(g) => {
                let c = match &*g {
                    "lt" => '<',
                    "gt" => '>',
                    "amp" => '&',
                    "quot" => '"',
                    "apos" => '\'',
                    _ => g
                        .resolve_char_ref()
                        .map_err(|e| e.to_string())?
                        .ok_or("entity")?,
                };
                text.push(c);
            }
            Q::Eof => return Ok((root, namespace, out)),
            _ => {}
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(512), ..ProptestConfig::default() })]

    /// (c) Whatever a request holds comes back out of the XML, escaped and unescaped correctly,
    /// and both readers accept the document.
    #[test]
    fn requests_round_trip(
        k in 0usize..28,
        values in proptest::collection::vec(field_of(wire_char()), 3..4),
        namespace in prop_oneof![Just(""), select(NAMESPACES)],
    ) {
        let f = Fields(values);
        let (req, expected) = request(k, &f);
        let expected: Vec<(String, String)> =
            expected.into_iter().map(|(p, v)| (p, as_sent(&v))).collect();
        let mut out = BytesMut::new();
        encode::encode(&req, namespace, &mut out);
        let text = std::str::from_utf8(&out).expect("the encoder writes UTF-8");
        let (root, ns_back, got) = leaves(text).map_err(TestCaseError::fail)?;
        prop_assert_eq!(root.as_str(), req.name());
        prop_assert_eq!(ns_back.as_deref().unwrap_or(""), req.namespace(namespace));
        prop_assert_eq!(got, expected, "\n{}", text);
        let ours = xml::decode(&out).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(ours.name.as_ref(), req.name());
        prop_assert_eq!(owned(Ok(ours)), reference::decode(&out));
    }
}

// ---------------------------------------------------------------------------------------------
// (d) No panics.

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Duplicate(usize, usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let special = select(vec![
        b"<".to_vec(),
        b">".to_vec(),
        b"&".to_vec(),
        b"/".to_vec(),
        b"</".to_vec(),
        b"<!--".to_vec(),
        b"<![CDATA[".to_vec(),
        b"]]>".to_vec(),
        b"&#".to_vec(),
        b"&#x110000;".to_vec(),
        b"&lt".to_vec(),
        b"\"".to_vec(),
        b"'".to_vec(),
        b"<?".to_vec(),
        b"<!DOCTYPE x>".to_vec(),
        b"\r".to_vec(),
        b"\xff".to_vec(),
        b"\xc3".to_vec(),
        b"\0".to_vec(),
        b":".to_vec(),
        b" ".to_vec(),
    ]);
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), special).prop_map(|(i, s)| Mutation::Insert(i, s)),
        (any::<usize>(), 0usize..20).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<usize>(), 0usize..40).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(doc: &mut Vec<u8>, m: &Mutation) {
    let len = doc.len();
    let at = |i: usize| if len == 0 { 0 } else { i % (len + 1) };
    match m {
        Mutation::Flip(i, b) => {
            if len > 0 {
                doc[i % len] = *b;
            }
        }
        Mutation::Insert(i, s) => {
            let i = at(*i);
            doc.splice(i..i, s.iter().copied());
        }
        Mutation::Delete(i, n) => {
            let i = at(*i);
            let end = (i + n).min(len);
            doc.drain(i..end);
        }
        Mutation::Duplicate(i, n) => {
            let i = at(*i);
            let end = (i + n).min(len);
            let piece = doc[i..end].to_vec();
            doc.splice(end..end, piece);
        }
        Mutation::Truncate(i) => doc.truncate(at(*i)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(1024), ..ProptestConfig::default() })]

    /// (d) Arbitrary bytes never panic either reader.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = xml::decode(&bytes);
        let _ = reference::decode(&bytes);
    }

    /// (d) Arbitrary XML-ish text never panics.
    #[test]
    fn xmlish_text_never_panics(s in "(<|>|/|!|\\?|&|;|#|x|[a-zA-Z:]{1,6}|=|\"|'| |\n|\\[CDATA\\[|\\]\\]>|--|[0-9]){0,80}") {
        let _ = xml::decode(s.as_bytes());
        let _ = reference::decode(s.as_bytes());
    }

    /// (d) Mutations of valid documents never panic; when both readers still accept the
    /// document, they agree on it.
    #[test]
    fn mutated_documents_never_panic(
        (root, children, style) in document(),
        mutations in proptest::collection::vec(mutation(), 1..5),
    ) {
        let Some(mut bytes) = render(&root, &children, &style) else { return Ok(()) };
        for m in &mutations {
            apply(&mut bytes, m);
        }
        let ours = owned(xml::decode(&bytes));
        let theirs = reference::decode(&bytes);
        if let (Ok(a), Ok(b)) = (&ours, &theirs) {
            prop_assert_eq!(a, b, "\n{}", String::from_utf8_lossy(&bytes));
        }
    }
}

/// The generator is not vacuous: most documents decode, events carry fields, and the reference
/// agrees on every one of a fixed sample.
#[test]
fn generated_documents_carry_fields() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut events, mut fields, mut decoded) = (0, 0, 0);
    for _ in 0..300 {
        let (root, children, style) = document()
            .new_tree(&mut runner)
            .expect("strategy")
            .current();
        let Some(bytes) = render(&root, &children, &style) else {
            continue;
        };
        let d = owned(xml::decode(&bytes));
        assert_eq!(d, reference::decode(&bytes));
        decoded += usize::from(d.is_ok());
        if let Ok(Document {
            message: Message::Event(e),
            ..
        }) = &d
        {
            events += 1;
            fields += [
                e.cross_ref.is_some(),
                e.connection.is_some(),
                e.subject.is_some(),
                e.calling.is_some(),
                e.cause.is_some(),
                e.local_state.is_some(),
                !e.new_connections.is_empty(),
                e.charging.is_some(),
            ]
            .iter()
            .filter(|x| **x)
            .count();
        }
    }
    assert!(decoded > 250, "{decoded} of 300 decoded");
    assert!(
        events > 100 && fields > 3 * events,
        "{events} events, {fields} fields"
    );
}
