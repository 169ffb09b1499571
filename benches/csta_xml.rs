//! CSTA XML throughput: frame bytes → `Deframer` → decoded events → normalized events.
//!
//! The same byte stream of OSV-style events (600–1100 bytes each, with entity references,
//! correlator data, services-permitted blocks and Siemens private data), read in 1460-byte pieces
//! as TCP would deliver them, goes through:
//! - `ctigate`: the gateway's own path, from frame bytes to normalized `model::Event`s
//!   (`codec::xml::decode`, then `link::csta_xml::normalize::event`: parties with dialable number,
//!   kind and E.164);
//! - `ctigate_decode_only`: the same without normalization, stopping at `codec::xml::Event`;
//! - `quick_xml_raw`: a quick-xml event walk that extracts the same fields into the same
//!   `codec::xml::Event` (checked equal before timing);
//! - `quick_xml_serde`: quick-xml's serde deserializer into owned structs with the same fields.
//!
//! The baselines stop at decoded structs; `ctigate` does more work than they do.
//! Throughput is reported in events per second. Reproduce with
//! `cargo bench --bench csta_xml -- --warm-up-time 3 --measurement-time 10`; see
//! `docs/PERFORMANCE.md`.

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group};
use ctigate::codec::framing::{Deframer, InvokeId, MAX_WIRE_FRAME, encode_frame};
use ctigate::codec::xml::{self, Connection, Device, Event, EventKind, Message};
use ctigate::link::csta_xml::normalize;
use serde::Deserialize;
use std::borrow::Cow;
use std::hint::black_box;

const ED4: &str = "http://www.ecma-international.org/standards/ecma-323/csta/ed4";
const SCX: &str = "http://www.siemens.com/schema/csta";
/// Bytes per read, as a TCP stack would hand them over.
const READ: usize = 1460;

// ---------------------------------------------------------------------------------------------
// The event mix.

fn call_id(i: usize) -> String {
    format!("FF0001000000000{i:04X}2D65C85C1C750000")
}

fn osv_number(n: &str) -> String {
    format!("N&lt;+4989700{n}&gt;;displayNumber=700{n};noa=nk")
}

/// What follows the standard fields, in three sizes: services permitted, media characteristics and
/// Siemens private data (as OSV sends with call set-up); services permitted only; private data only.
enum Tail {
    Full,
    Services,
    Private(&'static str),
    None,
}

fn tail(root: &str, t: Tail) -> String {
    const SERVICES: &str = "<servicesPermitted><callControlServices><clearConnection>true\
        </clearConnection></callControlServices><callAssociatedServices/><mediaAttachementServices/>\
        <routeingServices/><voiceServices/></servicesPermitted>";
    let private = |extra: &str| {
        format!(
            "<extensions><privateData><private xmlns:scx=\"{SCX}\">{extra}\
             <scx:extendedServicesPermitted/></private></privateData></extensions>"
        )
    };
    let body = match t {
        Tail::Full => format!(
            "{SERVICES}<mediaCallCharacteristics><mediaClass><voice>true</voice><image>false</image>\
             <im>false</im></mediaClass></mediaCallCharacteristics>{}",
            private("")
        ),
        Tail::Services => SERVICES.to_owned(),
        Tail::Private(extra) => private(extra),
        Tail::None => String::new(),
    };
    format!("{body}</{root}>")
}

fn head(root: &str, xref: usize) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><{root} xmlns=\"{ED4}\">\
         <monitorCrossRefID>11697{xref:05}</monitorCrossRefID>"
    )
}

fn conn(tag: &str, i: usize, dev: &str) -> String {
    format!(
        "<{tag}><callID>{}</callID><deviceID>+4989700{dev}</deviceID></{tag}>",
        call_id(i)
    )
}

/// A device in OSV's `N<…>;displayNumber=…` form, entity-escaped.
fn osv_dev(tag: &str, n: &str) -> String {
    format!(
        "<{tag}><deviceIdentifier>{}</deviceIdentifier></{tag}>",
        osv_number(n)
    )
}

fn dev(tag: &str, n: &str) -> String {
    format!("<{tag}><deviceIdentifier>+4989700{n}</deviceIdentifier></{tag}>")
}

fn correlator(i: usize) -> String {
    format!("<correlatorData><string>75726E3A6E656E613A{i:08X}</string></correlatorData>")
}

/// One document of each kind for call `i`, in the order a call produces them.
fn call_docs(i: usize) -> Vec<String> {
    let (a, b, c) = ("1001", "1002", "1003");
    let x = i % 50;
    vec![
        format!(
            "{}{}{}<localConnectionInfo>initiated</localConnectionInfo><cause>newCall</cause>{}",
            head("ServiceInitiatedEvent", x),
            conn("initiatedConnection", i, a),
            osv_dev("initiatingDevice", a),
            tail("ServiceInitiatedEvent", Tail::Full)
        ),
        format!(
            "{}{}{}{}<localConnectionInfo>connected</localConnectionInfo><cause>newCall</cause>{}",
            head("OriginatedEvent", x),
            conn("originatedConnection", i, a),
            dev("callingDevice", a),
            osv_dev("calledDevice", b),
            tail("OriginatedEvent", Tail::Full)
        ),
        format!(
            "{}{}{}{}{}<lastRedirectionDevice><notRequired/></lastRedirectionDevice>\
             <localConnectionInfo>alerting</localConnectionInfo>{}<cause>newCall</cause>\
             <associatedCallingDevice><notKnown/></associatedCallingDevice>{}",
            head("DeliveredEvent", x + 1),
            conn("connection", i, b),
            dev("alertingDevice", b),
            osv_dev("callingDevice", a),
            dev("calledDevice", b),
            correlator(i),
            tail(
                "DeliveredEvent",
                Tail::Private(
                    "<scx:cdrTrunkSeizureDateTime>2024/03/17 14:49:48</scx:cdrTrunkSeizureDateTime>"
                )
            )
        ),
        format!(
            "{}{}{}{}{}<lastRedirectionDevice><notRequired/></lastRedirectionDevice>\
             <localConnectionInfo>connected</localConnectionInfo><cause>newCall</cause>{}",
            head("EstablishedEvent", x + 1),
            conn("establishedConnection", i, b),
            dev("answeringDevice", b),
            osv_dev("callingDevice", a),
            dev("calledDevice", b),
            tail("EstablishedEvent", Tail::Private(""))
        ),
        format!(
            "{}{}{}<localConnectionInfo>hold</localConnectionInfo>{}<cause>normal</cause>{}",
            head("HeldEvent", x),
            conn("heldConnection", i, a),
            dev("holdingDevice", a),
            correlator(i),
            tail("HeldEvent", Tail::Services)
        ),
        format!(
            "{}{}{}<localConnectionInfo>connected</localConnectionInfo><cause>normal</cause>{}",
            head("RetrievedEvent", x),
            conn("retrievedConnection", i, a),
            dev("retrievingDevice", a),
            tail("RetrievedEvent", Tail::Services)
        ),
        format!(
            "{}{}{}{}{}<transferredConnections><connectionListItem><newConnection><callID>{}</callID>\
             <deviceID>+4989700{c}</deviceID></newConnection></connectionListItem><connectionListItem>\
             <newConnection><callID>{}</callID><deviceID>+4989700{a}</deviceID></newConnection>\
             </connectionListItem></transferredConnections><localConnectionInfo>null</localConnectionInfo>\
             <cause>singleStepTransfer</cause>{}",
            head("TransferedEvent", x + 1),
            conn("primaryOldCall", i, b),
            conn("secondaryOldCall", i + 1, b),
            dev("transferringDevice", b),
            dev("transferredToDevice", c),
            call_id(i + 2),
            call_id(i + 2),
            tail("TransferedEvent", Tail::None)
        ),
        format!(
            "{}{}{}<localConnectionInfo>null</localConnectionInfo><cause>normalClearing</cause>{}",
            head("ConnectionClearedEvent", x),
            conn("droppedConnection", i, c),
            dev("releasingDevice", c),
            tail(
                "ConnectionClearedEvent",
                Tail::Private("<scx:callDuration>83</scx:callDuration>")
            )
        ),
        format!(
            "{}{}{}<cause>normalClearing</cause>{}",
            head("CallClearedEvent", x),
            conn("clearedCall", i, c),
            correlator(i),
            tail("CallClearedEvent", Tail::Full)
        ),
        format!(
            "{}{}{}{}{}{}<localConnectionInfo>null</localConnectionInfo><cause>redirected</cause>{}",
            head("DivertedEvent", x + 2),
            conn("connection", i, b),
            dev("divertingDevice", b),
            dev("newDestination", c),
            osv_dev("callingDevice", a),
            dev("calledDevice", b),
            tail("DivertedEvent", Tail::Services)
        ),
    ]
}

/// The byte stream: `calls` calls' worth of frames, and the number of frames in it.
fn stream(calls: usize) -> (Vec<u8>, usize) {
    let mut out = BytesMut::new();
    let mut n = 0;
    for i in 0..calls {
        for doc in call_docs(i * 3) {
            encode_frame(InvokeId(9999), doc.as_bytes(), &mut out).expect("frame fits");
            n += 1;
        }
    }
    (out.to_vec(), n)
}

/// Feeds `stream` through a deframer in TCP-sized reads and hands every frame body to `f`.
#[inline]
fn deframe(stream: &[u8], mut f: impl FnMut(&[u8])) {
    let mut d = Deframer::new(MAX_WIRE_FRAME);
    for chunk in stream.chunks(READ) {
        d.push(chunk);
        while let Ok(Some(frame)) = d.next_frame() {
            f(&frame.body);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Baseline 1: a quick-xml raw event walk into the same `Event`.

/// `s` is a slice of `body` (quick-xml borrows from its input); re-borrow it with `body`'s
/// lifetime so it can live on the path stack.
fn rebase<'i>(body: &'i str, s: &str) -> &'i str {
    let off = s.as_ptr() as usize - body.as_ptr() as usize;
    &body[off..off + s.len()]
}

fn raw_local(qname: &str) -> &str {
    qname.rsplit(':').next().unwrap_or(qname)
}

fn raw_conn_slot<'e, 'a>(
    e: &'e mut Event<'a>,
    name: &str,
) -> Option<&'e mut Option<Connection<'a>>> {
    Some(match name {
        "connection"
        | "establishedConnection"
        | "droppedConnection"
        | "heldConnection"
        | "retrievedConnection"
        | "initiatedConnection"
        | "originatedConnection"
        | "failedConnection"
        | "queuedConnection"
        | "clearedCall" => &mut e.connection,
        "primaryOldCall" => &mut e.old_call,
        "secondaryOldCall" => &mut e.secondary_old_call,
        _ => return None,
    })
}

fn raw_dev_slot<'e, 'a>(e: &'e mut Event<'a>, name: &str) -> Option<&'e mut Option<Device<'a>>> {
    Some(match name {
        "alertingDevice" | "answeringDevice" | "releasingDevice" | "holdingDevice"
        | "retrievingDevice" | "initiatingDevice" | "transferringDevice" | "divertingDevice" => {
            &mut e.subject
        }
        "callingDevice" => &mut e.calling,
        "calledDevice" => &mut e.called,
        "lastRedirectionDevice" => &mut e.last_redirection,
        "transferredToDevice" | "newDestination" => &mut e.target,
        "networkCallingDevice" => &mut e.network_calling,
        "networkCalledDevice" => &mut e.network_called,
        "associatedCallingDevice" => &mut e.associated_calling,
        "associatedCalledDevice" => &mut e.associated_called,
        _ => return None,
    })
}

fn raw_open<'a>(e: &mut Event<'a>, path: &[&str], name: &str) {
    match path {
        [] => {
            if let Some(slot) = raw_conn_slot(e, name) {
                *slot = Some(Connection::default());
            } else if let Some(slot) = raw_dev_slot(e, name) {
                *slot = None;
            }
        }
        [
            "transferredConnections" | "conferenceConnections",
            "connectionListItem",
        ] if name == "newConnection" => {
            e.new_connections.push(Connection::default());
        }
        _ => {}
    }
}

fn raw_leaf<'a>(e: &mut Event<'a>, path: &[&str], v: Cow<'a, str>) {
    match path {
        ["monitorCrossRefID"] => e.cross_ref = Some(v),
        ["localConnectionInfo"] => e.local_state = Some(v),
        ["cause"] => e.cause = Some(v),
        ["correlatorData", "string"] => e.correlator_data = Some(v),
        [list, "connectionListItem", "newConnection", c]
            if matches!(*list, "transferredConnections" | "conferenceConnections") =>
        {
            if let Some(conn) = e.new_connections.last_mut() {
                match *c {
                    "callID" => conn.call_id = Some(v),
                    "deviceID" => conn.device_id = Some(v),
                    _ => {}
                }
            }
        }
        [p, c] => {
            if let Some(Some(conn)) = raw_conn_slot(e, p) {
                match *c {
                    "callID" => conn.call_id = Some(v),
                    "deviceID" => conn.device_id = Some(v),
                    _ => {}
                }
            } else if let Some(slot) = raw_dev_slot(e, p) {
                let d = match *c {
                    "deviceIdentifier" | "numberDialed" | "deviceID" => Device::Id(v),
                    "notKnown" => Device::NotKnown,
                    "restricted" => Device::Restricted,
                    "notRequired" => Device::NotRequired,
                    "notSpecified" => Device::NotSpecified,
                    _ => return,
                };
                *slot = Some(d);
            }
        }
        _ => {}
    }
}

fn resolve_ref(name: &str) -> Option<char> {
    match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "quot" => Some('"'),
        "apos" => Some('\''),
        _ => quick_xml::events::BytesRef::new(name)
            .resolve_char_ref()
            .ok()
            .flatten(),
    }
}

fn raw_walk(body: &str) -> Option<Event<'_>> {
    use quick_xml::events::Event as Q;
    let mut r = quick_xml::Reader::from_str(body);
    let mut path: Vec<&str> = Vec::with_capacity(8);
    let mut ev: Option<Event<'_>> = None;
    let mut text: Option<Cow<'_, str>> = None;
    let mut leaf = false;
    let mut depth = 0usize;
    // Below the root, path[0] is the first child; elements under an uninteresting one are still
    // walked (quick-xml has no subtree skip that checks nesting).
    loop {
        match r.read_event().ok()? {
            Q::Start(s) => {
                let name = raw_local(rebase(body, s.name().as_ref()));
                if depth == 0 {
                    ev = Some(Event::new(EventKind::from_root(name)?));
                } else {
                    raw_open(ev.as_mut()?, &path, name);
                    path.push(name);
                }
                depth += 1;
                text = None;
                leaf = true;
            }
            Q::Empty(s) => {
                let name = raw_local(rebase(body, s.name().as_ref()));
                let e = ev.as_mut()?;
                raw_open(e, &path, name);
                path.push(name);
                raw_leaf(e, &path, Cow::Borrowed(""));
                path.pop();
                text = None;
                leaf = false;
            }
            Q::End(_) => {
                depth -= 1;
                if depth > 0 {
                    if leaf {
                        let v = match text.take() {
                            None => Cow::Borrowed(""),
                            Some(Cow::Borrowed(b)) => Cow::Borrowed(b.trim()),
                            Some(Cow::Owned(o)) => Cow::Owned(o.trim().to_owned()),
                        };
                        raw_leaf(ev.as_mut()?, &path, v);
                    }
                    path.pop();
                }
                text = None;
                leaf = false;
            }
            Q::Text(t) if leaf => {
                let piece = t.xml10_content();
                match &mut text {
                    None => text = Some(piece),
                    Some(acc) => acc.to_mut().push_str(&piece),
                }
            }
            Q::GeneralRef(g) if leaf => {
                let c = resolve_ref(&g)?;
                text.get_or_insert_with(|| Cow::Owned(String::new()))
                    .to_mut()
                    .push(c);
            }
            Q::CData(c) if leaf => {
                let piece = c.xml10_content();
                match &mut text {
                    None => text = Some(piece),
                    Some(acc) => acc.to_mut().push_str(&piece),
                }
            }
            Q::Eof => return ev,
            Q::DocType(_) => return None,
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Baseline 2: quick-xml serde into owned structs with the same fields.

#[derive(Deserialize, Debug, Default)]
struct SConn {
    #[serde(rename = "callID")]
    call_id: Option<String>,
    #[serde(rename = "deviceID")]
    device_id: Option<String>,
}

#[derive(Deserialize, Debug)]
struct SEmpty {}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct SDev {
    device_identifier: Option<String>,
    number_dialed: Option<String>,
    not_known: Option<SEmpty>,
    restricted: Option<SEmpty>,
    not_required: Option<SEmpty>,
    not_specified: Option<SEmpty>,
}

#[derive(Deserialize, Debug)]
struct SString {
    string: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct SItem {
    new_connection: Option<SConn>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct SList {
    #[serde(default)]
    connection_list_item: Vec<SItem>,
}

#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct SEvent {
    #[serde(rename = "monitorCrossRefID")]
    cross_ref: Option<String>,
    connection: Option<SConn>,
    established_connection: Option<SConn>,
    dropped_connection: Option<SConn>,
    held_connection: Option<SConn>,
    retrieved_connection: Option<SConn>,
    initiated_connection: Option<SConn>,
    originated_connection: Option<SConn>,
    cleared_call: Option<SConn>,
    primary_old_call: Option<SConn>,
    secondary_old_call: Option<SConn>,
    alerting_device: Option<SDev>,
    answering_device: Option<SDev>,
    releasing_device: Option<SDev>,
    holding_device: Option<SDev>,
    retrieving_device: Option<SDev>,
    initiating_device: Option<SDev>,
    transferring_device: Option<SDev>,
    diverting_device: Option<SDev>,
    calling_device: Option<SDev>,
    called_device: Option<SDev>,
    last_redirection_device: Option<SDev>,
    transferred_to_device: Option<SDev>,
    new_destination: Option<SDev>,
    network_calling_device: Option<SDev>,
    network_called_device: Option<SDev>,
    associated_calling_device: Option<SDev>,
    associated_called_device: Option<SDev>,
    transferred_connections: Option<SList>,
    local_connection_info: Option<String>,
    cause: Option<String>,
    correlator_data: Option<SString>,
}

/// The root element selects the variant (so the variants are named after the XML roots).
#[derive(Deserialize, Debug)]
#[allow(clippy::enum_variant_names)]
enum SDoc {
    ServiceInitiatedEvent(SEvent),
    OriginatedEvent(SEvent),
    DeliveredEvent(SEvent),
    EstablishedEvent(SEvent),
    HeldEvent(SEvent),
    RetrievedEvent(SEvent),
    TransferedEvent(SEvent),
    ConnectionClearedEvent(SEvent),
    CallClearedEvent(SEvent),
    DivertedEvent(SEvent),
}

impl SDoc {
    fn event(&self) -> &SEvent {
        match self {
            SDoc::ServiceInitiatedEvent(e)
            | SDoc::OriginatedEvent(e)
            | SDoc::DeliveredEvent(e)
            | SDoc::EstablishedEvent(e)
            | SDoc::HeldEvent(e)
            | SDoc::RetrievedEvent(e)
            | SDoc::TransferedEvent(e)
            | SDoc::ConnectionClearedEvent(e)
            | SDoc::CallClearedEvent(e)
            | SDoc::DivertedEvent(e) => e,
        }
    }
}

fn s_conn(c: &Option<SConn>) -> Option<Connection<'_>> {
    c.as_ref().map(|c| Connection {
        call_id: c.call_id.as_deref().map(Cow::Borrowed),
        device_id: c.device_id.as_deref().map(Cow::Borrowed),
    })
}

fn s_dev(d: &Option<SDev>) -> Option<Device<'_>> {
    let d = d.as_ref()?;
    if let Some(id) = d
        .device_identifier
        .as_deref()
        .or(d.number_dialed.as_deref())
    {
        Some(Device::Id(Cow::Borrowed(id)))
    } else if d.not_known.is_some() {
        Some(Device::NotKnown)
    } else if d.restricted.is_some() {
        Some(Device::Restricted)
    } else if d.not_required.is_some() {
        Some(Device::NotRequired)
    } else if d.not_specified.is_some() {
        Some(Device::NotSpecified)
    } else {
        None
    }
}

fn s_str(v: &Option<String>) -> Option<Cow<'_, str>> {
    v.as_deref().map(Cow::Borrowed)
}

/// The serde result as a `codec::xml::Event`, to check it holds the same fields (not timed).
fn serde_event(d: &SDoc) -> Event<'_> {
    let kind = match d {
        SDoc::ServiceInitiatedEvent(_) => EventKind::ServiceInitiated,
        SDoc::OriginatedEvent(_) => EventKind::Originated,
        SDoc::DeliveredEvent(_) => EventKind::Delivered,
        SDoc::EstablishedEvent(_) => EventKind::Established,
        SDoc::HeldEvent(_) => EventKind::Held,
        SDoc::RetrievedEvent(_) => EventKind::Retrieved,
        SDoc::TransferedEvent(_) => EventKind::Transferred,
        SDoc::ConnectionClearedEvent(_) => EventKind::ConnectionCleared,
        SDoc::CallClearedEvent(_) => EventKind::CallCleared,
        SDoc::DivertedEvent(_) => EventKind::Diverted,
    };
    let s = d.event();
    let mut e = Event::new(kind);
    e.cross_ref = s_str(&s.cross_ref);
    e.connection = [
        &s.connection,
        &s.established_connection,
        &s.dropped_connection,
        &s.held_connection,
        &s.retrieved_connection,
        &s.initiated_connection,
        &s.originated_connection,
        &s.cleared_call,
    ]
    .into_iter()
    .find_map(s_conn);
    e.old_call = s_conn(&s.primary_old_call);
    e.secondary_old_call = s_conn(&s.secondary_old_call);
    e.subject = [
        &s.alerting_device,
        &s.answering_device,
        &s.releasing_device,
        &s.holding_device,
        &s.retrieving_device,
        &s.initiating_device,
        &s.transferring_device,
        &s.diverting_device,
    ]
    .into_iter()
    .find_map(s_dev);
    e.calling = s_dev(&s.calling_device);
    e.called = s_dev(&s.called_device);
    e.last_redirection = s_dev(&s.last_redirection_device);
    e.target = s_dev(&s.transferred_to_device).or_else(|| s_dev(&s.new_destination));
    e.network_calling = s_dev(&s.network_calling_device);
    e.network_called = s_dev(&s.network_called_device);
    e.associated_calling = s_dev(&s.associated_calling_device);
    e.associated_called = s_dev(&s.associated_called_device);
    if let Some(l) = &s.transferred_connections {
        e.new_connections = l
            .connection_list_item
            .iter()
            .filter_map(|i| s_conn(&i.new_connection))
            .collect();
    }
    e.local_state = s_str(&s.local_connection_info);
    e.cause = s_str(&s.cause);
    e.correlator_data = s
        .correlator_data
        .as_ref()
        .and_then(|c| c.string.as_deref())
        .map(Cow::Borrowed);
    e
}

fn serde_decode(body: &str) -> Option<SDoc> {
    quick_xml::de::from_str(body).ok()
}

// ---------------------------------------------------------------------------------------------

fn ours(body: &[u8]) -> Option<Event<'_>> {
    match xml::decode(body).ok()?.message {
        Message::Event(e) => Some(*e),
        _ => None,
    }
}

/// Checks, before timing, that the three decoders see the same stream the same way.
fn check(stream: &[u8], frames: usize) {
    let mut n = 0;
    let mut sizes = (usize::MAX, 0);
    deframe(stream, |body| {
        if n < 10 {
            let name = xml::decode(body)
                .map(|d| d.name.into_owned())
                .unwrap_or_default();
            eprintln!("csta_xml: {name}: {} bytes with header", body.len() + 8);
        }
        n += 1;
        sizes = (sizes.0.min(body.len() + 8), sizes.1.max(body.len() + 8));
        let s = std::str::from_utf8(body).expect("utf-8");
        let a = ours(body).expect("ctigate decodes");
        let b = raw_walk(s).expect("raw walk decodes");
        assert_eq!(a, b, "raw walk extracts the same fields\n{s}");
        let c = serde_decode(s).unwrap_or_else(|| panic!("serde decodes {s}"));
        assert_eq!(a, serde_event(&c), "serde extracts the same fields\n{s}");
    });
    assert_eq!(n, frames);
    // The normalized path sees every event, with a known kind, a call id and dialable parties.
    let mut seen = 0;
    normalized(stream, |ev| {
        seen += 1;
        assert_ne!(ev.kind, ctigate::model::EventKind::Unknown, "{ev:?}");
        assert!(
            ev.call_id
                .as_deref()
                .is_some_and(|c| c.starts_with("FF0001")),
            "{ev:?}"
        );
        for p in [&ev.at, &ev.calling, &ev.called, &ev.target]
            .into_iter()
            .flatten()
        {
            if p.raw.is_some() {
                assert!(
                    p.number
                        .as_deref()
                        .is_some_and(|n| n.starts_with("+4989700")),
                    "{p:?}"
                );
                assert_eq!(p.e164, p.number, "{p:?}");
            }
        }
    });
    assert_eq!(seen, frames);
    eprintln!(
        "csta_xml: {frames} frames, {} bytes, frame sizes {}..={} bytes",
        stream.len(),
        sizes.0,
        sizes.1
    );
}

/// One pass of the hand-written decoder over the stream; returns events seen (so nothing is
/// optimized away). The result is used in place: nothing is copied out.
fn pass_ours(stream: &[u8]) -> usize {
    let mut n = 0usize;
    deframe(stream, |body| {
        if let Ok(doc) = xml::decode(body)
            && let Message::Event(e) = &doc.message
        {
            n += usize::from(e.cross_ref.is_some());
            black_box(e);
        }
    });
    n
}

/// Feeds `stream` from frame bytes to normalized `model::Event`s, the gateway's own path (decode,
/// then the link's normalizer: parties with dialable numbers and E.164, short text inline, long
/// text sharing the frame buffer), and hands each event to `f`.
#[inline]
fn normalized(stream: &[u8], mut f: impl FnMut(&ctigate::model::Event)) {
    let pbx = ctigate::model::Text::from("osv");
    let device = ctigate::model::Text::from("4711");
    let plan = ctigate::model::NumberingPlan {
        country_code: Some("49".into()),
        ..Default::default()
    };
    let origin = normalize::Origin {
        pbx: &pbx,
        device: &device,
        plan: &plan,
        received: std::time::Instant::now(),
        ts_ms: 0,
    };
    let mut d = Deframer::new(MAX_WIRE_FRAME);
    for chunk in stream.chunks(READ) {
        d.push(chunk);
        while let Ok(Some(frame)) = d.next_frame() {
            if let Ok(doc) = xml::decode(&frame.body)
                && let Message::Event(e) = &doc.message
            {
                f(&normalize::event(&frame.body, &doc.name, e, &origin));
            }
        }
    }
}

/// One pass from frame bytes to normalized events.
fn pass_normalized(stream: &[u8]) -> usize {
    let mut n = 0usize;
    normalized(stream, |ev| {
        n += usize::from(ev.call_id.is_some() || ev.kind == ctigate::model::EventKind::Unknown);
        black_box(ev);
    });
    n
}

/// One pass of the quick-xml raw walk.
fn pass_raw(stream: &[u8]) -> usize {
    let mut n = 0usize;
    deframe(stream, |body| {
        if let Ok(s) = std::str::from_utf8(body)
            && let Some(e) = raw_walk(s)
        {
            n += usize::from(e.cross_ref.is_some());
            black_box(&e);
        }
    });
    n
}

/// One pass of quick-xml serde.
fn pass_serde(stream: &[u8]) -> usize {
    let mut n = 0usize;
    deframe(stream, |body| {
        if let Ok(s) = std::str::from_utf8(body)
            && let Some(d) = serde_decode(s)
        {
            n += usize::from(d.event().cross_ref.is_some());
            black_box(&d);
        }
    });
    n
}

fn bench(c: &mut Criterion) {
    let (stream, frames) = stream(20);
    check(&stream, frames);
    let mut g = c.benchmark_group("csta_xml_decode");
    g.throughput(Throughput::Elements(frames as u64));
    g.bench_function("ctigate", |b| {
        b.iter(|| pass_normalized(black_box(&stream)))
    });
    g.bench_function("ctigate_decode_only", |b| {
        b.iter(|| pass_ours(black_box(&stream)))
    });
    g.bench_function("quick_xml_raw", |b| b.iter(|| pass_raw(black_box(&stream))));
    g.bench_function("quick_xml_serde", |b| {
        b.iter(|| pass_serde(black_box(&stream)))
    });
    g.finish();
}

criterion_group!(benches, bench);

/// `CSTA_XML_PROFILE=ctigate|decode|raw|serde` runs that path over the stream
/// `CSTA_XML_ROUNDS` (default 2,000) times without criterion and prints the time per event; for
/// `valgrind --tool=callgrind` (instruction counts are stable on a noisy box where wall-clock time
/// is not) and `perf record`.
fn main() {
    if let Ok(which) = std::env::var("CSTA_XML_PROFILE") {
        let (stream, frames) = stream(20);
        let rounds: usize = std::env::var("CSTA_XML_ROUNDS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(2000);
        let pass = match which.as_str() {
            "raw" => pass_raw,
            "serde" => pass_serde,
            "decode" => pass_ours,
            _ => pass_normalized,
        };
        let started = std::time::Instant::now();
        let mut n = 0usize;
        for _ in 0..rounds {
            n += pass(black_box(&stream));
        }
        let per_event = started.elapsed() / u32::try_from(rounds * frames).unwrap_or(u32::MAX);
        eprintln!("{which}: {per_event:?} per event");
        assert_eq!(n, rounds * frames);
        eprintln!("{which}: decoded {n} events");
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
