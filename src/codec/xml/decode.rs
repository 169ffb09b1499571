//! The ECMA-323 decoder: one pass over the tokens, filling the fields of the message the root names.

use super::scan::{Scanner, Token, local_name, unescape};
use super::{
    Connection, CstaError, Device, Document, Event, EventKind, MAX_DEPTH, Message, Response,
    SnapshotCall, Str, XmlError,
};
use std::borrow::Cow;

/// Decodes one CSTA XML document (a frame body).
///
/// Values borrow from `input` unless references had to be resolved or the document is ISO-8859-1
/// with non-ASCII bytes (then it is transcoded and everything is owned).
pub fn decode(input: &[u8]) -> Result<Document<'_>, XmlError> {
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    match declared_encoding(input) {
        None => {}
        Some(enc) => {
            let enc = enc.to_ascii_lowercase();
            match enc.as_str() {
                "utf-8" | "utf8" | "us-ascii" | "ascii" => {}
                "iso-8859-1" | "iso8859-1" | "latin1" | "latin-1" | "l1" | "iso_8859-1" => {
                    if !input.is_ascii() {
                        let s: String = input.iter().map(|&b| char::from(b)).collect();
                        return decode_str(&s).map(Document::into_owned);
                    }
                }
                _ => return Err(XmlError::UnsupportedEncoding(enc)),
            }
        }
    }
    let s = std::str::from_utf8(input).map_err(|_| XmlError::InvalidUtf8)?;
    decode_str(s)
}

/// The `encoding` pseudo-attribute of the XML declaration, if there is one.
fn declared_encoding(input: &[u8]) -> Option<&str> {
    let rest = input.strip_prefix(b"<?xml")?;
    let end = memchr::memmem::find(&rest[..rest.len().min(256)], b"?>")?;
    let decl = std::str::from_utf8(&rest[..end]).ok()?;
    attr(decl, "encoding")
}

/// Finds attribute `key` in the attribute text of a tag.
pub(crate) fn attr<'a>(attrs: &'a str, key: &str) -> Option<&'a str> {
    let mut rest = attrs;
    loop {
        rest = rest.trim_start();
        let eq = rest.find('=')?;
        let name = rest[..eq].trim();
        let after = rest[eq + 1..].trim_start();
        let quote = after.chars().next()?;
        if quote != '"' && quote != '\'' {
            return None;
        }
        let close = after[1..].find(quote)?;
        let value = &after[1..1 + close];
        if name == key {
            return Some(value);
        }
        rest = &after[close + 2..];
    }
}

/// Sets of element names, matched by local name.
fn primary_connection(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "establishedConnection"
            | "droppedConnection"
            | "heldConnection"
            | "retrievedConnection"
            | "initiatedConnection"
            | "originatedConnection"
            | "failedConnection"
            | "queuedConnection"
            | "clearedCall"
            | "offeredConnection"
            | "bridgedConnection"
            | "outboundConnection"
            | "dialingConnection"
    )
}

fn subject_device(name: &str) -> bool {
    matches!(
        name,
        "alertingDevice"
            | "answeringDevice"
            | "releasingDevice"
            | "holdingDevice"
            | "retrievingDevice"
            | "initiatingDevice"
            | "transferringDevice"
            | "conferencingDevice"
            | "divertingDevice"
            | "failingDevice"
            | "queue"
            | "agentDevice"
            | "device"
            | "offeredDevice"
            | "bridgingDevice"
            | "dialingDevice"
    )
}

impl<'a> Event<'a> {
    fn connection_slot(&mut self, name: &str) -> Option<&mut Connection<'a>> {
        if primary_connection(name) {
            Some(self.connection.get_or_insert_with(Connection::default))
        } else if name == "primaryOldCall" {
            Some(self.old_call.get_or_insert_with(Connection::default))
        } else if name == "secondaryOldCall" {
            Some(
                self.secondary_old_call
                    .get_or_insert_with(Connection::default),
            )
        } else {
            None
        }
    }

    fn device_slot(&mut self, name: &str) -> Option<&mut Option<Device<'a>>> {
        match name {
            "callingDevice" => Some(&mut self.calling),
            "calledDevice" => Some(&mut self.called),
            "lastRedirectionDevice" => Some(&mut self.last_redirection),
            "transferredToDevice" | "addedParty" | "newDestination" => Some(&mut self.target),
            n if subject_device(n) => Some(&mut self.subject),
            _ => None,
        }
    }

    fn start(&mut self, parents: &[&str], name: &str) {
        if let [list, _item] = parents
            && matches!(*list, "transferredConnections" | "conferenceConnections")
            && name == "newConnection"
        {
            self.new_connections.push(Connection::default());
        }
    }

    fn leaf(&mut self, path: &[&str], v: Str<'a>) {
        match path {
            [f] => match *f {
                "monitorCrossRefID" => self.cross_ref = Some(v),
                "localConnectionInfo" => self.local_state = Some(v),
                "cause" => self.cause = Some(v),
                "agentID" => self.agent_id = Some(v),
                "acdGroup" => self.acd_group = Some(v),
                "pendingAgentState" => self.pending_agent_state = Some(v),
                "doNotDisturbOn" => self.do_not_disturb = parse_bool(&v),
                "forwardingType" => self.forwarding_type = Some(v),
                "forwardStatus" => self.forward_status = parse_bool(&v),
                "forwardTo" => self.forward_to = Some(v),
                name if !v.is_empty() => {
                    // Some peers write a device id as direct text instead of `<deviceIdentifier>`.
                    if let Some(slot) = self.device_slot(name) {
                        *slot = Some(Device::Id(v));
                    }
                }
                _ => {}
            },
            [f, c] => {
                if let Some(conn) = self.connection_slot(f) {
                    set_connection_field(conn, c, v);
                } else if let Some(slot) = self.device_slot(f)
                    && let Some(d) = extended_device(c, v)
                {
                    *slot = Some(d);
                }
            }
            [list, _item, "newConnection", c]
                if matches!(*list, "transferredConnections" | "conferenceConnections") =>
            {
                if let Some(conn) = self.new_connections.last_mut() {
                    set_connection_field(conn, c, v);
                }
            }
            _ => {}
        }
    }
}

fn set_connection_field<'a>(conn: &mut Connection<'a>, child: &str, v: Str<'a>) {
    match child {
        "callID" => conn.call_id = Some(v),
        "deviceID" => conn.device_id = Some(v),
        _ => {}
    }
}

/// The CHOICE inside an extended device id element.
fn extended_device<'a>(child: &str, v: Str<'a>) -> Option<Device<'a>> {
    Some(match child {
        "deviceIdentifier" | "numberDialed" | "deviceID" => Device::Id(v),
        "notKnown" => Device::NotKnown,
        "restricted" => Device::Restricted,
        "notRequired" => Device::NotRequired,
        "notSpecified" => Device::NotSpecified,
        _ => return None,
    })
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// Requests a switch may send to an application.
fn is_request(name: &str) -> bool {
    matches!(
        name,
        "RequestSystemStatus"
            | "SystemRegister"
            | "SwitchingFunctionDevices"
            | "SwitchingFunctionCapsChanged"
            | "MonitorStart"
            | "MonitorStop"
            | "SnapshotDevice"
            | "MakeCall"
            | "GetSwitchingFunctionDevices"
            | "ResetApplicationSessionTimer"
            | "StopApplicationSession"
    )
}

/// The message being built, chosen by the root's local name.
// Lives on the stack for one document; boxing the event would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
enum Builder<'a> {
    Event(Event<'a>),
    SystemStatus(Option<Str<'a>>),
    SystemStatusResponse,
    SystemRegister(Option<Str<'a>>),
    RequestSystemStatus(Option<Str<'a>>),
    MonitorStart(Option<Str<'a>>),
    MakeCall(Connection<'a>),
    Snapshot(Vec<SnapshotCall<'a>>),
    Ack,
    Error(Option<CstaError<'a>>),
    Request,
    Unknown,
}

impl<'a> Builder<'a> {
    fn for_root(name: &str) -> Builder<'a> {
        if let Some(kind) = EventKind::from_root(name) {
            return Builder::Event(Event::new(kind));
        }
        match name {
            "SystemStatus" => Builder::SystemStatus(None),
            "SystemStatusResponse" => Builder::SystemStatusResponse,
            "SystemRegisterResponse" => Builder::SystemRegister(None),
            "RequestSystemStatusResponse" => Builder::RequestSystemStatus(None),
            "MonitorStartResponse" => Builder::MonitorStart(None),
            "MakeCallResponse" => Builder::MakeCall(Connection::default()),
            "SnapshotDeviceResponse" => Builder::Snapshot(Vec::new()),
            "CSTAErrorCode" => Builder::Error(None),
            n if n.ends_with("Response") => Builder::Ack,
            n if is_request(n) => Builder::Request,
            _ => Builder::Unknown,
        }
    }

    #[inline]
    fn start(&mut self, parents: &[&str], name: &str) {
        match self {
            Builder::Event(e) => e.start(parents, name),
            Builder::Snapshot(calls) if name == "snapshotDeviceResponseInfo" => {
                calls.push(SnapshotCall::default());
            }
            _ => {}
        }
    }

    #[inline]
    fn leaf(&mut self, path: &[&str], v: Str<'a>) {
        match self {
            Builder::Event(e) => e.leaf(path, v),
            Builder::SystemStatus(s) | Builder::RequestSystemStatus(s) => {
                if let ["systemStatus"] = path {
                    *s = Some(v);
                }
            }
            Builder::SystemRegister(id) => {
                if let ["sysStatRegisterID"] = path {
                    *id = Some(v);
                }
            }
            Builder::MonitorStart(x) => {
                if let ["monitorCrossRefID"] = path {
                    *x = Some(v);
                }
            }
            Builder::MakeCall(conn) => {
                if let ["callingDevice", c] = path {
                    set_connection_field(conn, c, v);
                }
            }
            Builder::Snapshot(calls) => {
                if let Some(call) = calls.last_mut() {
                    match path {
                        [.., "connectionIdentifier", c] => {
                            set_connection_field(&mut call.connection, c, v)
                        }
                        [.., "localConnectionState" | "simpleCallState"] => call.states.push(v),
                        _ => {}
                    }
                }
            }
            Builder::Error(e) => {
                if e.is_none()
                    && let Some(category) = path.first()
                {
                    *e = Some(CstaError {
                        category: Cow::Owned((*category).to_owned()),
                        value: v,
                    });
                }
            }
            Builder::SystemStatusResponse | Builder::Ack | Builder::Request | Builder::Unknown => {}
        }
    }

    fn finish(self) -> Message<'a> {
        match self {
            Builder::Event(e) => Message::Event(e),
            Builder::SystemStatus(status) => Message::SystemStatus { status },
            Builder::SystemStatusResponse => Message::Response(Response::SystemStatus),
            Builder::SystemRegister(register_id) => {
                Message::Response(Response::SystemRegister { register_id })
            }
            Builder::RequestSystemStatus(status) => {
                Message::Response(Response::RequestSystemStatus { status })
            }
            Builder::MonitorStart(cross_ref) => {
                Message::Response(Response::MonitorStart { cross_ref })
            }
            Builder::MakeCall(call) => Message::Response(Response::MakeCall { call }),
            Builder::Snapshot(calls) => Message::Response(Response::SnapshotDevice { calls }),
            Builder::Ack => Message::Response(Response::Ack),
            Builder::Error(e) => Message::Error(e.unwrap_or(CstaError {
                category: Cow::Borrowed("unspecified"),
                value: Cow::Borrowed(""),
            })),
            Builder::Request => Message::Request,
            Builder::Unknown => Message::Unknown,
        }
    }
}

fn append<'a>(text: &mut Option<Str<'a>>, piece: Str<'a>) {
    match text {
        None => *text = Some(piece),
        Some(t) => t.to_mut().push_str(&piece),
    }
}

fn trim(s: Str<'_>) -> Str<'_> {
    match s {
        Cow::Borrowed(b) => Cow::Borrowed(b.trim()),
        Cow::Owned(o) if o.trim().len() == o.len() => Cow::Owned(o),
        Cow::Owned(o) => Cow::Owned(o.trim().to_owned()),
    }
}

fn root_namespace<'a>(qname: &str, attrs: &'a str) -> Option<&'a str> {
    match qname.find(':') {
        Some(i) => {
            let mut key = String::with_capacity(6 + i);
            key.push_str("xmlns:");
            key.push_str(&qname[..i]);
            attr(attrs, &key)
        }
        None => attr(attrs, "xmlns"),
    }
}

fn decode_str(s: &str) -> Result<Document<'_>, XmlError> {
    let mut sc = Scanner::new(s);
    // Open elements: qualified names (to check end tags) and local names (the path).
    let mut qnames: [&str; MAX_DEPTH] = [""; MAX_DEPTH];
    let mut locals: [&str; MAX_DEPTH] = [""; MAX_DEPTH];
    let mut depth = 0usize;
    // Bit d set: the element at depth d has child elements, so its text is not a value.
    let mut has_children: u64 = 0;
    let mut text: Option<Str<'_>> = None;
    let mut root: Option<(&str, Option<&str>)> = None;
    let mut builder = Builder::Unknown;
    let mut closed = false;

    while let Some(tok) = sc.next_token()? {
        match tok {
            Token::Start { name, attrs, empty } => {
                if closed {
                    return Err(XmlError::TrailingContent);
                }
                if depth == MAX_DEPTH {
                    return Err(XmlError::TooDeep);
                }
                let local = local_name(name);
                if depth == 0 {
                    builder = Builder::for_root(local);
                    root = Some((local, root_namespace(name, attrs)));
                    if empty {
                        closed = true;
                    }
                } else {
                    has_children |= 1 << (depth - 1);
                    builder.start(&locals[1..depth], local);
                    if empty {
                        locals[depth] = local;
                        builder.leaf(&locals[1..=depth], Cow::Borrowed(""));
                    }
                }
                text = None;
                if !empty {
                    qnames[depth] = name;
                    locals[depth] = local;
                    has_children &= !(1 << depth);
                    depth += 1;
                }
            }
            Token::End { name } => {
                if depth == 0 {
                    return Err(XmlError::Syntax {
                        at: sc.pos(),
                        what: "end tag without a start tag",
                    });
                }
                depth -= 1;
                if qnames[depth] != name {
                    return Err(XmlError::Mismatch {
                        expected: qnames[depth].to_owned(),
                        found: name.to_owned(),
                    });
                }
                let value = text.take();
                if depth > 0 && has_children & (1 << depth) == 0 {
                    builder.leaf(&locals[1..=depth], value.map_or(Cow::Borrowed(""), trim));
                }
                if depth == 0 {
                    closed = true;
                }
            }
            Token::Text(raw) => {
                if depth == 0 {
                    if raw.bytes().all(|b| b.is_ascii_whitespace()) {
                        continue;
                    }
                    return Err(if closed {
                        XmlError::TrailingContent
                    } else {
                        XmlError::NoRoot
                    });
                }
                append(&mut text, unescape(raw)?);
            }
            Token::CData(c) => {
                if depth == 0 {
                    return Err(XmlError::NoRoot);
                }
                append(&mut text, Cow::Borrowed(c));
            }
        }
    }
    if depth > 0 {
        return Err(XmlError::Truncated);
    }
    let Some((name, namespace)) = root else {
        return Err(XmlError::NoRoot);
    };
    Ok(Document {
        name: Cow::Borrowed(name),
        namespace: namespace.map(Cow::Borrowed),
        message: builder.finish(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ED4: &str = "http://www.ecma-international.org/standards/ecma-323/csta/ed4";

    fn event(doc: &str) -> Event<'_> {
        match decode(doc.as_bytes()).unwrap().message {
            Message::Event(e) => e,
            other => panic!("not an event: {other:?}"),
        }
    }

    #[test]
    fn osv_service_initiated() {
        let doc = format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><ServiceInitiatedEvent xmlns="{ED4}"><monitorCrossRefID>1169730059</monitorCrossRefID><initiatedConnection><callID>FF000100000000002D65C85C1C750000</callID><deviceID>302118840100</deviceID></initiatedConnection><initiatingDevice><deviceIdentifier>N&lt;302118840100&gt;;noa=nk</deviceIdentifier></initiatingDevice><localConnectionInfo>initiated</localConnectionInfo><cause>makeCall</cause></ServiceInitiatedEvent>"#
        );
        let d = decode(doc.as_bytes()).unwrap();
        assert_eq!(d.name, "ServiceInitiatedEvent");
        assert_eq!(d.namespace.as_deref(), Some(ED4));
        let Message::Event(e) = d.message else {
            panic!()
        };
        assert_eq!(e.kind, EventKind::ServiceInitiated);
        assert_eq!(e.cross_ref.as_deref(), Some("1169730059"));
        let c = e.connection.unwrap();
        assert_eq!(
            c.call_id.as_deref(),
            Some("FF000100000000002D65C85C1C750000")
        );
        assert!(matches!(c.call_id, Some(Cow::Borrowed(_))));
        assert_eq!(c.device_id.as_deref(), Some("302118840100"));
        assert_eq!(
            e.subject,
            Some(Device::Id(Cow::Borrowed("N<302118840100>;noa=nk")))
        );
        assert_eq!(e.local_state.as_deref(), Some("initiated"));
        assert_eq!(e.cause.as_deref(), Some("makeCall"));
    }

    #[test]
    fn prefixed_pretty_printed_delivered_with_restricted_caller() {
        let doc = r#"<csta:DeliveredEvent xmlns:csta="http://www.ecma.ch/standards/ecma-323/csta/ed2">
            <csta:monitorCrossRefID> 43 </csta:monitorCrossRefID>
            <csta:connection><csta:callID>-12</csta:callID><csta:deviceID>sip:455@x</csta:deviceID></csta:connection>
            <csta:alertingDevice><csta:deviceIdentifier>sip:455@x</csta:deviceIdentifier></csta:alertingDevice>
            <csta:callingDevice><csta:restricted/></csta:callingDevice>
            <csta:calledDevice><csta:deviceIdentifier><![CDATA[455]]></csta:deviceIdentifier></csta:calledDevice>
            <csta:lastRedirectionDevice><csta:notRequired/></csta:lastRedirectionDevice>
            <!-- a comment -->
            <csta:localConnectionInfo>alerting</csta:localConnectionInfo>
            <csta:cause>newCall</csta:cause>
            <vendor:extra xmlns:vendor="urn:x"><vendor:deep><vendor:deeper>1</vendor:deeper></vendor:deep></vendor:extra>
        </csta:DeliveredEvent>"#;
        let d = decode(doc.as_bytes()).unwrap();
        assert_eq!(
            d.namespace.as_deref(),
            Some("http://www.ecma.ch/standards/ecma-323/csta/ed2")
        );
        let e = event(doc);
        assert_eq!(e.kind, EventKind::Delivered);
        assert_eq!(e.cross_ref.as_deref(), Some("43"));
        assert_eq!(e.calling, Some(Device::Restricted));
        assert_eq!(e.called, Some(Device::Id("455".into())));
        assert_eq!(e.last_redirection, Some(Device::NotRequired));
        assert_eq!(e.local_state.as_deref(), Some("alerting"));
    }

    #[test]
    fn transfered_misspelling_and_connection_list() {
        let e = event(
            "<TransferedEvent><monitorCrossRefID>7</monitorCrossRefID>\
             <primaryOldCall><callID>1</callID><deviceID>100</deviceID></primaryOldCall>\
             <secondaryOldCall><callID>2</callID><deviceID>100</deviceID></secondaryOldCall>\
             <transferringDevice><deviceIdentifier>100</deviceIdentifier></transferringDevice>\
             <transferredToDevice><deviceIdentifier>200</deviceIdentifier></transferredToDevice>\
             <transferredConnections><connectionListItem><newConnection><callID>3</callID><deviceID>200</deviceID></newConnection>\
             <oldConnection><callID>1</callID><deviceID>300</deviceID></oldConnection></connectionListItem></transferredConnections>\
             <cause>transfer</cause></TransferedEvent>",
        );
        assert_eq!(e.kind, EventKind::Transferred);
        assert_eq!(e.old_call.unwrap().call_id.as_deref(), Some("1"));
        assert_eq!(e.secondary_old_call.unwrap().call_id.as_deref(), Some("2"));
        assert_eq!(e.target, Some(Device::Id("200".into())));
        assert_eq!(e.new_connections.len(), 1);
        assert_eq!(e.new_connections[0].call_id.as_deref(), Some("3"));
    }

    #[test]
    fn responses_and_errors() {
        let d = decode(b"<MonitorStartResponse xmlns='urn:x'><monitorCrossRefID>99fda87c</monitorCrossRefID><monitorExistingCalls>true</monitorExistingCalls></MonitorStartResponse>").unwrap();
        assert_eq!(
            d.message,
            Message::Response(Response::MonitorStart {
                cross_ref: Some("99fda87c".into())
            })
        );
        let d = decode(b"<MakeCallResponse><callingDevice><callID>0_99f261b4</callID><deviceID>tel:73124</deviceID></callingDevice></MakeCallResponse>").unwrap();
        let Message::Response(Response::MakeCall { call }) = d.message else {
            panic!()
        };
        assert_eq!(call.call_id.as_deref(), Some("0_99f261b4"));
        let d = decode(b"<CSTAErrorCode><systemResourceAvailibility>resourceBusy</systemResourceAvailibility></CSTAErrorCode>").unwrap();
        assert_eq!(
            d.message,
            Message::Error(CstaError {
                category: "systemResourceAvailibility".into(),
                value: "resourceBusy".into()
            })
        );
        let d =
            decode(b"<SystemStatus><systemStatus>enabled</systemStatus></SystemStatus>").unwrap();
        assert_eq!(
            d.message,
            Message::SystemStatus {
                status: Some("enabled".into())
            }
        );
        let d = decode(b"<MonitorStopResponse/>").unwrap();
        assert_eq!(d.message, Message::Response(Response::Ack));
        let d = decode(b"<SomethingNew><a>1</a></SomethingNew>").unwrap();
        assert_eq!(d.message, Message::Unknown);
        let d = decode(
            b"<ButtonPressEvent><monitorCrossRefID>1</monitorCrossRefID></ButtonPressEvent>",
        )
        .unwrap();
        assert!(matches!(
            d.message,
            Message::Event(Event {
                kind: EventKind::Other,
                ..
            })
        ));
    }

    #[test]
    fn snapshot_device_response() {
        let d = decode(b"<SnapshotDeviceResponse><crossRefIDorSnapshotData><snapshotData>\
            <snapshotDeviceResponseInfo><connectionIdentifier><callID>1</callID><deviceID>100</deviceID></connectionIdentifier>\
            <localCallState><compoundCallState><localConnectionState>connected</localConnectionState></compoundCallState></localCallState></snapshotDeviceResponseInfo>\
            <snapshotDeviceResponseInfo><connectionIdentifier><callID>2</callID></connectionIdentifier>\
            <localCallState><simpleCallState>callDelivered</simpleCallState></localCallState></snapshotDeviceResponseInfo>\
            </snapshotData></crossRefIDorSnapshotData></SnapshotDeviceResponse>").unwrap();
        let Message::Response(Response::SnapshotDevice { calls }) = d.message else {
            panic!()
        };
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].connection.call_id.as_deref(), Some("1"));
        assert_eq!(calls[0].states, vec!["connected"]);
        assert_eq!(calls[1].states, vec!["callDelivered"]);
    }

    #[test]
    fn latin1_is_transcoded() {
        let mut doc = b"<?xml version='1.0' encoding='ISO-8859-1'?><DoNotDisturbEvent><monitorCrossRefID>1</monitorCrossRefID><device><deviceIdentifier>M\xFCller</deviceIdentifier></device><doNotDisturbOn>true</doNotDisturbOn></DoNotDisturbEvent>".to_vec();
        let Message::Event(e) = decode(&doc).unwrap().message else {
            panic!()
        };
        assert_eq!(e.subject, Some(Device::Id("Müller".into())));
        assert_eq!(e.do_not_disturb, Some(true));
        // Without the declaration the same bytes are not UTF-8.
        doc.drain(..44);
        assert_eq!(decode(&doc), Err(XmlError::InvalidUtf8));
    }

    #[test]
    fn malformed_documents_are_typed_errors() {
        assert_eq!(decode(b"not xml at all").unwrap_err(), XmlError::NoRoot);
        assert_eq!(decode(b"").unwrap_err(), XmlError::NoRoot);
        assert_eq!(
            decode(b"<DeliveredEvent><monitorCrossRefID>1</monitorCr").unwrap_err(),
            XmlError::Truncated
        );
        assert_eq!(
            decode(b"<DeliveredEvent><monitorCrossRefID>1</monitorCrossRefID>").unwrap_err(),
            XmlError::Truncated
        );
        assert!(matches!(
            decode(b"<a><b></a></b>").unwrap_err(),
            XmlError::Mismatch { .. }
        ));
        assert_eq!(
            decode(b"<!DOCTYPE a [<!ENTITY x 'y'>]><a>&x;</a>").unwrap_err(),
            XmlError::Doctype
        );
        assert_eq!(decode(b"<a/><b/>").unwrap_err(), XmlError::TrailingContent);
        assert_eq!(
            decode(b"<a>&nope;</a>").unwrap_err().kind(),
            "bad_reference"
        );
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert_eq!(decode(deep.as_bytes()).unwrap_err(), XmlError::TooDeep);
        let ok = "<a>".repeat(MAX_DEPTH) + &"</a>".repeat(MAX_DEPTH);
        assert!(decode(ok.as_bytes()).is_ok());
        assert!(matches!(
            decode(b"<?xml version='1.0' encoding='UTF-16'?><a/>").unwrap_err(),
            XmlError::UnsupportedEncoding(_)
        ));
    }

    #[test]
    fn attr_parsing() {
        assert_eq!(attr(r#" a="1" b='2>' c = "3""#, "b"), Some("2>"));
        assert_eq!(attr(r#" a="1" c = "3""#, "c"), Some("3"));
        assert_eq!(attr(r#" a="1""#, "z"), None);
        assert_eq!(attr(r#" a=1"#, "a"), None);
    }
}
