//! The CSTA XML session core driven by a switch that says anything: frames (answers to what the
//! session asked, unsolicited documents, garbage), clock ticks, connector commands, shutdown and
//! disconnect, in any order, in every dialect. Nothing may panic, and the session's own bounds
//! hold: every frame it sends is a well-formed document of its own framing.
//!
//! Input layout: byte 0 picks the dialect and the device count; then operations, each an op byte
//! followed by its arguments (see `step`).

#![no_main]

use ctigate::codec::framing::{Deframer, Frame, InvokeId};
use ctigate::codec::xml;
use ctigate::config::Dialect;
use ctigate::hub::{Command, LinkRequest};
use ctigate::link::csta_xml::session::AppSession;
use ctigate::link::csta_xml::{Output, Session, SessionConfig};
use ctigate::model::{NumberingPlan, Text};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Documents a switch sends, with a slot (`{}`) for a value taken from the input.
const TEMPLATES: &[&str] = &[
    "<SystemStatus><systemStatus>{}</systemStatus></SystemStatus>",
    "<SystemRegisterResponse><sysStatRegisterID>{}</sysStatRegisterID></SystemRegisterResponse>",
    "<RequestSystemStatusResponse><systemStatus>{}</systemStatus></RequestSystemStatusResponse>",
    "<StartApplicationSessionPosResponse><sessionID>{}</sessionID><actualSessionDuration>2</actualSessionDuration></StartApplicationSessionPosResponse>",
    "<StartApplicationSessionNegResponse><errorCode><definedError>{}</definedError></errorCode></StartApplicationSessionNegResponse>",
    "<ResetApplicationSessionTimerPosResponse><actualSessionDuration>{}</actualSessionDuration></ResetApplicationSessionTimerPosResponse>",
    "<MonitorStartResponse><monitorCrossRefID>{}</monitorCrossRefID></MonitorStartResponse>",
    "<SnapshotDeviceResponse><crossRefIDorSnapshotData><snapshotData><snapshotDeviceResponseInfo><connectionIdentifier><callID>{}</callID><deviceID>100</deviceID></connectionIdentifier></snapshotDeviceResponseInfo></snapshotData></crossRefIDorSnapshotData></SnapshotDeviceResponse>",
    "<SnapshotDeviceResponse><crossRefIDorSnapshotData><serviceCrossRefID>{}</serviceCrossRefID></crossRefIDorSnapshotData></SnapshotDeviceResponse>",
    "<SnapshotDeviceData><serviceCrossRefID>{}</serviceCrossRefID><snapshotData><snapshotDeviceResponseInfo><connectionIdentifier><callID>c1</callID><deviceID>101</deviceID></connectionIdentifier></snapshotDeviceResponseInfo></snapshotData><lastSegment>true</lastSegment></SnapshotDeviceData>",
    "<SnapshotDeviceData><serviceCrossRefID>s</serviceCrossRefID><snapshotData><snapshotDeviceResponseInfo><connectionIdentifier><callID>{}</callID><deviceID>100</deviceID></connectionIdentifier></snapshotDeviceResponseInfo></snapshotData><lastSegment>false</lastSegment></SnapshotDeviceData>",
    "<DeliveredEvent><monitorCrossRefID>{}</monitorCrossRefID><connection><callID>c1</callID><deviceID>100</deviceID></connection><alertingDevice><deviceIdentifier>100</deviceIdentifier></alertingDevice><callingDevice><deviceIdentifier>+4930123</deviceIdentifier></callingDevice><calledDevice><deviceIdentifier>100</deviceIdentifier></calledDevice><localConnectionInfo>alerting</localConnectionInfo><cause>newCall</cause></DeliveredEvent>",
    "<ConnectionClearedEvent><monitorCrossRefID>1</monitorCrossRefID><droppedConnection><callID>{}</callID><deviceID>100</deviceID></droppedConnection><releasingDevice><deviceIdentifier>100</deviceIdentifier></releasingDevice><localConnectionInfo>null</localConnectionInfo><cause>normalClearing</cause></ConnectionClearedEvent>",
    "<TransferedEvent><monitorCrossRefID>1</monitorCrossRefID><primaryOldCall><callID>c1</callID><deviceID>100</deviceID></primaryOldCall><secondaryOldCall><callID>{}</callID><deviceID>100</deviceID></secondaryOldCall><transferredConnections><connectionListItem><newConnection><callID>c9</callID><deviceID>100</deviceID></newConnection></connectionListItem></transferredConnections></TransferedEvent>",
    "<MakeCallResponse><callingDevice><callID>{}</callID><deviceID>100</deviceID></callingDevice></MakeCallResponse>",
    "<CSTAErrorCode><operation>{}</operation></CSTAErrorCode>",
    "<RequestSystemStatus><extensions>{}</extensions></RequestSystemStatus>",
    "<SwitchingFunctionDevices><deviceList><deviceID>{}</deviceID></deviceList></SwitchingFunctionDevices>",
];

const STATUSES: &[&str] = &[
    "normal",
    "enabled",
    "messagesLost",
    "disabled",
    "initializing",
    "overloadReached",
    "partiallyDisabled",
];

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*b)
    }

    /// A short value: a status word, or up to 15 bytes of the input (lossy UTF-8, XML-escaped).
    fn value(&mut self) -> String {
        let n = self.byte().unwrap_or(0);
        if n & 0x80 != 0 {
            return STATUSES[usize::from(n) % STATUSES.len()].to_string();
        }
        let len = usize::from(n % 16).min(self.0.len());
        let (v, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8_lossy(v)
            .replace('&', "&amp;")
            .replace('<', "&lt;")
    }
}

/// The invoke ids of requests the session sent, newest last (to answer them).
fn sent_ids(s: &mut Session, ids: &mut Vec<u16>) {
    for o in s.drain() {
        if let Output::Send(bytes) = o {
            let mut d = Deframer::new(65_535);
            d.push(&bytes);
            let f = d.next_frame().expect("our frame").expect("a whole frame");
            assert!(d.pending() == 0, "one frame per send");
            xml::decode(&f.body).expect("our document decodes");
            ids.push(f.invoke_id.0);
            if ids.len() > 64 {
                ids.remove(0);
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let Some(first) = input.byte() else { return };
    let dialect = match first % 3 {
        0 => Dialect::Osv,
        1 => Dialect::RequestSystemStatus,
        _ => Dialect::Ecma354,
    };
    let devices = 1 + usize::from(first / 3) % 4;
    let cfg = Arc::new(SessionConfig {
        pbx: Text::from("p"),
        dialect,
        namespace: String::new(),
        devices: (0..devices)
            .map(|i| Text::from(format!("{}", 100 + i)))
            .collect(),
        plan: NumberingPlan::default(),
        monitor_rate: 2,
        keepalive: Duration::from_secs(30),
        request_timeout: Duration::from_secs(5),
        handshake_timeout: Duration::from_secs(10),
        monitor_retry: Duration::from_secs(60),
        app_session: (dialect == Dialect::Ecma354).then(|| AppSession {
            application_id: "a".into(),
            user: "u".into(),
            password: "p".into(),
            protocol_version: String::new(),
            duration_secs: 60,
        }),
    });
    let t0 = Instant::now();
    let mut now = t0;
    let mut s = Session::new(cfg, now);
    let mut ids = Vec::new();
    sent_ids(&mut s, &mut ids);
    while let Some(op) = input.byte() {
        match op % 8 {
            // A template, answering one of our requests (or as an unsolicited request/event).
            0..=3 => {
                let t = TEMPLATES[usize::from(input.byte().unwrap_or(0)) % TEMPLATES.len()];
                let pick = input.byte().unwrap_or(0);
                let invoke = if pick == 0xFF || ids.is_empty() {
                    9999
                } else {
                    ids[ids.len() - 1 - usize::from(pick) % ids.len()]
                };
                let body = t.replace("{}", &input.value());
                s.on_frame(
                    &Frame {
                        invoke_id: InvokeId(invoke),
                        body: body.into_bytes().into(),
                    },
                    now,
                    0,
                );
            }
            // Raw bytes as a document.
            4 => {
                let len = usize::from(input.byte().unwrap_or(0)).min(input.0.len());
                let (body, rest) = input.0.split_at(len);
                input.0 = rest;
                let invoke = ids.last().copied().unwrap_or(1);
                s.on_frame(
                    &Frame {
                        invoke_id: InvokeId(invoke),
                        body: body.to_vec().into(),
                    },
                    now,
                    0,
                );
            }
            // Time passes: 0 to 25.5 s.
            5 => {
                now += Duration::from_millis(u64::from(input.byte().unwrap_or(0)) * 100);
                s.on_tick(now);
            }
            // A connector command for one of the devices (or one not configured).
            6 => {
                let which = input.byte().unwrap_or(0);
                let call = Text::from(input.value().as_str());
                let to = input.value();
                let command = match which % 6 {
                    0 => Command::MakeCall { to },
                    1 => Command::Answer { call_id: call },
                    2 => Command::Hold { call_id: call },
                    3 => Command::SingleStepTransfer { call_id: call, to },
                    4 => Command::Transfer {
                        held_call_id: call.clone(),
                        active_call_id: call,
                    },
                    _ => Command::SetDoNotDisturb {
                        on: which & 0x80 != 0,
                    },
                };
                let device = Text::from(format!("{}", 100 + usize::from(which / 6) % 5));
                let (reply, _rx) = tokio::sync::oneshot::channel();
                s.on_command(
                    LinkRequest {
                        device,
                        command,
                        reply,
                    },
                    now,
                );
            }
            // The end: an orderly stop or a lost connection.
            _ => {
                if input.byte().unwrap_or(0) & 1 == 0 {
                    s.on_shutdown(now);
                } else {
                    s.on_disconnect("link_down");
                }
            }
        }
        sent_ids(&mut s, &mut ids);
        assert!(now >= t0);
    }
});
