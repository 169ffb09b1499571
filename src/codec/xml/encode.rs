//! Encoder for the requests the gateway sends, in the namespace the PBX profile names (the
//! ECMA-354 application-session requests always go in their own namespace).
//!
//! Every value is escaped with [`escape_into`]; element names are fixed strings.

use bytes::BytesMut;

/// ECMA-323 namespace URIs by edition.
pub mod ns {
    /// 2nd edition, old `ecma.ch` domain.
    pub const ED2: &str = "http://www.ecma.ch/standards/ecma-323/csta/ed2";
    /// 3rd edition.
    pub const ED3: &str = "http://www.ecma-international.org/standards/ecma-323/csta/ed3";
    /// 4th edition (OpenScape Voice).
    pub const ED4: &str = "http://www.ecma-international.org/standards/ecma-323/csta/ed4";
    /// 5th edition.
    pub const ED5: &str = "http://www.ecma-international.org/standards/ecma-323/csta/ed5";
    /// 6th edition.
    pub const ED6: &str = "http://www.ecma-international.org/standards/ecma-323/csta/ed6";
    /// ECMA-354 application session.
    pub const APPL_SESSION: &str =
        "http://www.ecma-international.org/standards/ecma-354/appl_session";
    /// Avaya's private namespace (DMCC `SessionLoginInfo`, private data).
    pub const AVAYA: &str = "http://www.avaya.com/csta";
    /// Vodia/pbxnsip's private namespace (DMCC-compatible `SessionLoginInfo`).
    pub const PBXNSIP: &str = "http://www.pbxnsip.com/schemas/csta";
    /// XML Schema instance (for `xsi:type`).
    pub const XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
}

/// A connection identifier to put in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnRef<'r> {
    /// Call id as the switch gave it.
    pub call_id: &'r str,
    /// Device id of the connection.
    pub device_id: &'r str,
}

/// The requests (and responses to switch requests) the gateway writes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Request<'r> {
    /// Answer to the switch's `SystemStatus`.
    SystemStatusResponse,
    /// Register for system status (`requestTypes/systemStatus=true`).
    SystemRegister,
    /// Ask the switch for its status (gateway-opened sessions, keep-alive).
    RequestSystemStatus,
    /// Answer to the switch's `RequestSystemStatus`.
    RequestSystemStatusResponse {
        status: &'r str,
    },
    MonitorStart {
        device: &'r str,
    },
    MonitorStop {
        cross_ref: &'r str,
    },
    SnapshotDevice {
        device: &'r str,
    },
    MakeCall {
        calling: &'r str,
        called: &'r str,
    },
    AnswerCall {
        call: ConnRef<'r>,
    },
    ClearConnection {
        conn: ConnRef<'r>,
    },
    ClearCall {
        call: ConnRef<'r>,
    },
    HoldCall {
        call: ConnRef<'r>,
    },
    RetrieveCall {
        call: ConnRef<'r>,
    },
    SingleStepTransferCall {
        call: ConnRef<'r>,
        to: &'r str,
    },
    ConsultationCall {
        call: ConnRef<'r>,
        to: &'r str,
    },
    TransferCall {
        held: ConnRef<'r>,
        active: ConnRef<'r>,
    },
    ConferenceCall {
        held: ConnRef<'r>,
        active: ConnRef<'r>,
    },
    DeflectCall {
        call: ConnRef<'r>,
        to: &'r str,
    },
    SetDoNotDisturb {
        device: &'r str,
        on: bool,
    },
    SetForwarding {
        device: &'r str,
        forwarding_type: &'r str,
        on: bool,
        to: Option<&'r str>,
    },
    SetAgentState {
        device: &'r str,
        state: &'r str,
        agent_id: Option<&'r str>,
    },
    /// ECMA-354 `StartApplicationSession` (Avaya DMCC, Vodia). The login goes in
    /// `applicationSpecificInfo/SessionLoginInfo` in `login_namespace` when a user name is given.
    StartApplicationSession {
        /// `applicationInfo/applicationID`.
        application_id: &'r str,
        /// `SessionLoginInfo/userName`.
        user_name: Option<&'r str>,
        /// `SessionLoginInfo/password`.
        password: Option<&'r str>,
        /// `SessionLoginInfo/sessionCleanupDelay` in seconds.
        session_cleanup_delay: Option<u32>,
        /// Namespace of `SessionLoginInfo` ([`ns::AVAYA`] or [`ns::PBXNSIP`]).
        login_namespace: &'r str,
        /// `requestedProtocolVersions/protocolVersion`, in order of preference.
        protocol_versions: &'r [&'r str],
        /// `requestedSessionDuration` in seconds.
        session_duration: Option<u32>,
    },
    /// ECMA-354 keep-alive, sent every half session duration.
    ResetApplicationSessionTimer {
        session_id: &'r str,
        session_duration: u32,
    },
    /// ECMA-354 `StopApplicationSession` with `definedEndReason` `normal`.
    StopApplicationSession {
        session_id: &'r str,
    },
    /// Ask for the switch's device list; it arrives in `SwitchingFunctionDevices` segments.
    GetSwitchingFunctionDevices {
        device: Option<&'r str>,
        category: Option<&'r str>,
    },
}

impl Request<'_> {
    /// The root element name.
    pub fn name(&self) -> &'static str {
        match self {
            Request::SystemStatusResponse => "SystemStatusResponse",
            Request::SystemRegister => "SystemRegister",
            Request::RequestSystemStatus => "RequestSystemStatus",
            Request::RequestSystemStatusResponse { .. } => "RequestSystemStatusResponse",
            Request::MonitorStart { .. } => "MonitorStart",
            Request::MonitorStop { .. } => "MonitorStop",
            Request::SnapshotDevice { .. } => "SnapshotDevice",
            Request::MakeCall { .. } => "MakeCall",
            Request::AnswerCall { .. } => "AnswerCall",
            Request::ClearConnection { .. } => "ClearConnection",
            Request::ClearCall { .. } => "ClearCall",
            Request::HoldCall { .. } => "HoldCall",
            Request::RetrieveCall { .. } => "RetrieveCall",
            Request::SingleStepTransferCall { .. } => "SingleStepTransferCall",
            Request::ConsultationCall { .. } => "ConsultationCall",
            Request::TransferCall { .. } => "TransferCall",
            Request::ConferenceCall { .. } => "ConferenceCall",
            Request::DeflectCall { .. } => "DeflectCall",
            Request::SetDoNotDisturb { .. } => "SetDoNotDisturb",
            Request::SetForwarding { .. } => "SetForwarding",
            Request::SetAgentState { .. } => "SetAgentState",
            Request::StartApplicationSession { .. } => "StartApplicationSession",
            Request::ResetApplicationSessionTimer { .. } => "ResetApplicationSessionTimer",
            Request::StopApplicationSession { .. } => "StopApplicationSession",
            Request::GetSwitchingFunctionDevices { .. } => "GetSwitchingFunctionDevices",
        }
    }

    /// The namespace the request is written in: ECMA-354 requests use [`ns::APPL_SESSION`]
    /// whatever the profile says; everything else uses `profile`.
    pub fn namespace<'n>(&self, profile: &'n str) -> &'n str {
        match self {
            Request::StartApplicationSession { .. }
            | Request::ResetApplicationSessionTimer { .. }
            | Request::StopApplicationSession { .. } => ns::APPL_SESSION,
            _ => profile,
        }
    }
}

/// Writes `req` as an XML document (declaration included) into `out`, in namespace `ns` (none if
/// empty) or, for the ECMA-354 requests, in [`ns::APPL_SESSION`].
pub fn encode(req: &Request<'_>, ns: &str, out: &mut BytesMut) {
    let mut w = Writer { out };
    let root = req.name();
    let ns = req.namespace(ns);
    w.raw("<?xml version=\"1.0\" encoding=\"UTF-8\"?><");
    w.raw(root);
    if !ns.is_empty() {
        w.raw(" xmlns=\"");
        w.text(ns);
        w.raw("\"");
    }
    w.raw(">");
    match *req {
        Request::SystemStatusResponse => {}
        Request::SystemRegister => {
            w.open("requestTypes");
            w.leaf("systemStatus", "true");
            w.close("requestTypes");
        }
        Request::RequestSystemStatus => {}
        Request::RequestSystemStatusResponse { status } => w.leaf("systemStatus", status),
        Request::MonitorStart { device } => {
            w.open("monitorObject");
            w.leaf("deviceObject", device);
            w.close("monitorObject");
        }
        Request::MonitorStop { cross_ref } => w.leaf("monitorCrossRefID", cross_ref),
        Request::SnapshotDevice { device } => w.leaf("snapshotObject", device),
        Request::MakeCall { calling, called } => {
            w.leaf("callingDevice", calling);
            w.leaf("calledDirectoryNumber", called);
        }
        Request::AnswerCall { call } => w.conn("callToBeAnswered", call),
        Request::ClearConnection { conn } => w.conn("connectionToBeCleared", conn),
        Request::ClearCall { call } => w.conn("callToBeCleared", call),
        Request::HoldCall { call } => w.conn("callToBeHeld", call),
        Request::RetrieveCall { call } => w.conn("callToBeRetrieved", call),
        Request::SingleStepTransferCall { call, to } => {
            w.conn("activeCall", call);
            w.leaf("transferredTo", to);
        }
        Request::ConsultationCall { call, to } => {
            w.conn("existingCall", call);
            w.leaf("consultedDevice", to);
        }
        Request::TransferCall { held, active } => {
            w.conn("heldCall", held);
            w.conn("activeCall", active);
        }
        Request::ConferenceCall { held, active } => {
            w.conn("heldCall", held);
            w.conn("activeCall", active);
        }
        Request::DeflectCall { call, to } => {
            w.conn("callToBeDiverted", call);
            w.leaf("newDestination", to);
        }
        Request::SetDoNotDisturb { device, on } => {
            w.leaf("device", device);
            w.leaf("doNotDisturbOn", if on { "true" } else { "false" });
        }
        Request::SetForwarding {
            device,
            forwarding_type,
            on,
            to,
        } => {
            w.leaf("device", device);
            w.leaf("forwardingType", forwarding_type);
            w.leaf("activateForward", if on { "true" } else { "false" });
            if let Some(to) = to {
                w.leaf("forwardDN", to);
            }
        }
        Request::SetAgentState {
            device,
            state,
            agent_id,
        } => {
            w.leaf("device", device);
            w.leaf("requestedAgentState", state);
            if let Some(id) = agent_id {
                w.leaf("agentID", id);
            }
        }
        Request::StartApplicationSession {
            application_id,
            user_name,
            password,
            session_cleanup_delay,
            login_namespace,
            protocol_versions,
            session_duration,
        } => {
            w.open("applicationInfo");
            w.leaf("applicationID", application_id);
            if let Some(user) = user_name {
                w.open("applicationSpecificInfo");
                // DMCC reads the login as a typed vendor element.
                w.raw("<ns1:SessionLoginInfo xmlns:ns1=\"");
                w.text(login_namespace);
                w.raw("\" xmlns:xsi=\"");
                w.raw(ns::XSI);
                w.raw("\" xsi:type=\"ns1:SessionLoginInfo\">");
                w.leaf("ns1:userName", user);
                if let Some(pw) = password {
                    w.leaf("ns1:password", pw);
                }
                if let Some(delay) = session_cleanup_delay {
                    w.leaf("ns1:sessionCleanupDelay", &delay.to_string());
                }
                w.close("ns1:SessionLoginInfo");
                w.close("applicationSpecificInfo");
            }
            w.close("applicationInfo");
            if !protocol_versions.is_empty() {
                w.open("requestedProtocolVersions");
                for v in protocol_versions {
                    w.leaf("protocolVersion", v);
                }
                w.close("requestedProtocolVersions");
            }
            if let Some(d) = session_duration {
                w.leaf("requestedSessionDuration", &d.to_string());
            }
        }
        Request::ResetApplicationSessionTimer {
            session_id,
            session_duration,
        } => {
            w.leaf("sessionID", session_id);
            w.leaf("requestedSessionDuration", &session_duration.to_string());
        }
        Request::StopApplicationSession { session_id } => {
            w.leaf("sessionID", session_id);
            w.open("sessionEndReason");
            w.leaf("definedEndReason", "normal");
            w.close("sessionEndReason");
        }
        Request::GetSwitchingFunctionDevices { device, category } => {
            if let Some(d) = device {
                w.leaf("requestedDeviceID", d);
            }
            if let Some(c) = category {
                w.leaf("requestedDeviceCategory", c);
            }
        }
    }
    w.raw("</");
    w.raw(root);
    w.raw(">");
}

struct Writer<'o> {
    out: &'o mut BytesMut,
}

impl Writer<'_> {
    fn raw(&mut self, s: &str) {
        self.out.extend_from_slice(s.as_bytes());
    }

    fn text(&mut self, s: &str) {
        escape_into(s, self.out);
    }

    fn open(&mut self, name: &str) {
        self.raw("<");
        self.raw(name);
        self.raw(">");
    }

    fn close(&mut self, name: &str) {
        self.raw("</");
        self.raw(name);
        self.raw(">");
    }

    fn leaf(&mut self, name: &str, value: &str) {
        self.open(name);
        self.text(value);
        self.close(name);
    }

    fn conn(&mut self, name: &str, c: ConnRef<'_>) {
        self.open(name);
        self.leaf("callID", c.call_id);
        self.leaf("deviceID", c.device_id);
        self.close(name);
    }
}

/// Escapes text for element content and double-quoted attribute values.
pub fn escape_into(s: &str, out: &mut BytesMut) {
    let b = s.as_bytes();
    let mut last = 0;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let (rep, len): (&[u8], usize) = match c {
            b'<' => (b"&lt;", 1),
            b'>' => (b"&gt;", 1),
            b'&' => (b"&amp;", 1),
            b'"' => (b"&quot;", 1),
            b'\'' => (b"&apos;", 1),
            // A literal CR would reach the switch as LF (XML end-of-line handling).
            b'\r' => (b"&#13;", 1),
            b'\t' | b'\n' => {
                i += 1;
                continue;
            }
            // Other C0 controls, U+FFFE and U+FFFF are not XML characters, not even as references:
            // sending one would make the whole request unreadable, so it becomes U+FFFD and the
            // switch refuses the odd value on its own terms.
            0..=0x1f => (REPLACEMENT, 1),
            0xef if b.get(i + 1) == Some(&0xbf) && matches!(b.get(i + 2), Some(0xbe | 0xbf)) => {
                (REPLACEMENT, 3)
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&b[last..i]);
        out.extend_from_slice(rep);
        i += len;
        last = i;
    }
    out.extend_from_slice(&b[last..]);
}

/// U+FFFD in UTF-8.
const REPLACEMENT: &[u8] = "\u{fffd}".as_bytes();

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::xml::{Message, Response, decode};

    fn enc(req: &Request<'_>) -> String {
        let mut out = BytesMut::new();
        encode(req, ns::ED4, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn control_characters_never_make_a_document_unreadable() {
        let mut out = BytesMut::new();
        escape_into(
            "a\rb\tc\nd\u{1}e\u{1f}f\u{fffe}g\u{ffff}h\u{fffd}é",
            &mut out,
        );
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "a&#13;b\tc\nd\u{fffd}e\u{fffd}f\u{fffd}g\u{fffd}h\u{fffd}é"
        );
        let s = enc(&Request::MakeCall {
            calling: "100\r",
            called: "1\u{0}2",
        });
        let Message::Request = decode(s.as_bytes()).unwrap().message else {
            panic!("{s}")
        };
        assert!(s.contains("<callingDevice>100&#13;</callingDevice>"), "{s}");
    }

    #[test]
    fn make_call_is_escaped() {
        let s = enc(&Request::MakeCall {
            calling: "N<4711>",
            called: "+49 & co",
        });
        assert_eq!(
            s,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><MakeCall xmlns=\"{}\"><callingDevice>N&lt;4711&gt;</callingDevice><calledDirectoryNumber>+49 &amp; co</calledDirectoryNumber></MakeCall>",
                ns::ED4
            )
        );
    }

    #[test]
    fn every_request_is_well_formed_xml() {
        let c = ConnRef {
            call_id: "c<1>",
            device_id: "d&2",
        };
        let all = [
            Request::SystemStatusResponse,
            Request::SystemRegister,
            Request::RequestSystemStatus,
            Request::RequestSystemStatusResponse { status: "normal" },
            Request::MonitorStart { device: "4711" },
            Request::MonitorStop { cross_ref: "9" },
            Request::SnapshotDevice { device: "4711" },
            Request::MakeCall {
                calling: "1",
                called: "2",
            },
            Request::AnswerCall { call: c },
            Request::ClearConnection { conn: c },
            Request::ClearCall { call: c },
            Request::HoldCall { call: c },
            Request::RetrieveCall { call: c },
            Request::SingleStepTransferCall { call: c, to: "3" },
            Request::ConsultationCall { call: c, to: "3" },
            Request::TransferCall { held: c, active: c },
            Request::ConferenceCall { held: c, active: c },
            Request::DeflectCall { call: c, to: "3" },
            Request::SetDoNotDisturb {
                device: "1",
                on: true,
            },
            Request::SetForwarding {
                device: "1",
                forwarding_type: "forwardImmediate",
                on: true,
                to: Some("2"),
            },
            Request::SetAgentState {
                device: "1",
                state: "ready",
                agent_id: None,
            },
            Request::StartApplicationSession {
                application_id: "ctigate",
                user_name: Some("u<1>"),
                password: Some("p&\"'"),
                session_cleanup_delay: Some(60),
                login_namespace: ns::AVAYA,
                protocol_versions: &[
                    "http://www.ecma-international.org/standards/ecma-323/csta/ed3/priv5",
                ],
                session_duration: Some(180),
            },
            Request::ResetApplicationSessionTimer {
                session_id: "469421A9364D46D6444524AE41BEAD72-0",
                session_duration: 180,
            },
            Request::StopApplicationSession { session_id: "s&1" },
            Request::GetSwitchingFunctionDevices {
                device: None,
                category: Some("station"),
            },
        ];
        for r in &all {
            let s = enc(r);
            // Our own decoder and quick-xml both accept it.
            let d = decode(s.as_bytes()).unwrap();
            assert_eq!(d.name, r.name());
            let mut rd = quick_xml::Reader::from_str(&s);
            loop {
                match rd.read_event() {
                    Ok(quick_xml::events::Event::Eof) => break,
                    Ok(_) => {}
                    Err(e) => panic!("{s}: {e}"),
                }
            }
        }
        let mut out = BytesMut::new();
        encode(&Request::MonitorStart { device: "4711" }, "", &mut out);
        assert_eq!(
            decode(&out).unwrap().message,
            Message::Request,
            "a MonitorStart decodes as a request"
        );
        let _ = Response::Ack;
    }

    #[test]
    fn application_session_requests_use_the_ecma_354_namespace() {
        let s = enc(&Request::StopApplicationSession { session_id: "42" });
        assert_eq!(
            s,
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><StopApplicationSession xmlns=\"{}\"><sessionID>42</sessionID><sessionEndReason><definedEndReason>normal</definedEndReason></sessionEndReason></StopApplicationSession>",
                ns::APPL_SESSION
            )
        );
        let s = enc(&Request::StartApplicationSession {
            application_id: "app",
            user_name: Some("u"),
            password: Some("p<"),
            session_cleanup_delay: Some(60),
            login_namespace: ns::AVAYA,
            protocol_versions: &["3.0"],
            session_duration: Some(180),
        });
        assert!(s.contains(&format!(
            "<StartApplicationSession xmlns=\"{}\">",
            ns::APPL_SESSION
        )));
        assert!(s.contains("<applicationInfo><applicationID>app</applicationID><applicationSpecificInfo><ns1:SessionLoginInfo xmlns:ns1=\"http://www.avaya.com/csta\""));
        assert!(s.contains("<ns1:userName>u</ns1:userName><ns1:password>p&lt;</ns1:password><ns1:sessionCleanupDelay>60</ns1:sessionCleanupDelay></ns1:SessionLoginInfo></applicationSpecificInfo></applicationInfo><requestedProtocolVersions><protocolVersion>3.0</protocolVersion></requestedProtocolVersions><requestedSessionDuration>180</requestedSessionDuration></StartApplicationSession>"));
    }
}
