//! Decodes every test vector in `protocols/csta-xml/` and checks the fields against the vector's
//! `.expected.json` (and against the quick-xml reference reader).
//!
//! `UPDATE_VECTORS=1 cargo test --test codec_vectors` rewrites the expected files from the current
//! decoder; review the diff before committing it.

use ctigate::codec::framing::{Deframer, MAX_WIRE_FRAME};
use ctigate::codec::xml::{
    self, Connection, Device, Document, Event, Message, Response, SnapshotCall, Str, reference,
};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("protocols/csta-xml")
}

fn s(v: &Str<'_>) -> Value {
    Value::String(v.to_string())
}

fn conn(c: &Connection<'_>) -> Value {
    let mut m = Map::new();
    if let Some(v) = &c.call_id {
        m.insert("call_id".into(), s(v));
    }
    if let Some(v) = &c.device_id {
        m.insert("device_id".into(), s(v));
    }
    Value::Object(m)
}

fn dev(d: &Device<'_>) -> Value {
    match d {
        Device::Id(v) => json!({ "id": v.as_ref() }),
        Device::NotKnown => json!("notKnown"),
        Device::Restricted => json!("restricted"),
        Device::NotRequired => json!("notRequired"),
        Device::NotSpecified => json!("notSpecified"),
    }
}

/// Adds `key` if the value is there.
fn put(m: &mut Map<String, Value>, key: &str, v: Option<Value>) {
    if let Some(v) = v {
        m.insert(key.into(), v);
    }
}

fn event(e: &Event<'_>) -> Value {
    let mut m = Map::new();
    m.insert("type".into(), json!("event"));
    m.insert("kind".into(), json!(format!("{:?}", e.kind)));
    put(&mut m, "cross_ref", e.cross_ref.as_ref().map(s));
    put(&mut m, "connection", e.connection.as_ref().map(conn));
    put(&mut m, "subject", e.subject.as_ref().map(dev));
    put(&mut m, "calling", e.calling.as_ref().map(dev));
    put(&mut m, "called", e.called.as_ref().map(dev));
    put(
        &mut m,
        "last_redirection",
        e.last_redirection.as_ref().map(dev),
    );
    put(&mut m, "target", e.target.as_ref().map(dev));
    put(&mut m, "old_call", e.old_call.as_ref().map(conn));
    put(
        &mut m,
        "secondary_old_call",
        e.secondary_old_call.as_ref().map(conn),
    );
    if !e.new_connections.is_empty() {
        m.insert(
            "new_connections".into(),
            e.new_connections.iter().map(conn).collect(),
        );
    }
    put(
        &mut m,
        "originating_nid",
        e.originating_nid.as_ref().map(conn),
    );
    put(
        &mut m,
        "network_calling",
        e.network_calling.as_ref().map(dev),
    );
    put(&mut m, "network_called", e.network_called.as_ref().map(dev));
    put(
        &mut m,
        "associated_calling",
        e.associated_calling.as_ref().map(dev),
    );
    put(
        &mut m,
        "associated_called",
        e.associated_called.as_ref().map(dev),
    );
    put(
        &mut m,
        "originating_device",
        e.originating_device.as_ref().map(s),
    );
    put(&mut m, "local_state", e.local_state.as_ref().map(s));
    put(&mut m, "cause", e.cause.as_ref().map(s));
    put(&mut m, "correlator_data", e.correlator_data.as_ref().map(s));
    put(&mut m, "user_data", e.user_data.as_ref().map(s));
    put(&mut m, "account_info", e.account_info.as_ref().map(s));
    put(&mut m, "digits", e.digits.as_ref().map(s));
    put(&mut m, "tone", e.tone.as_ref().map(s));
    put(&mut m, "number_queued", e.number_queued.map(|n| json!(n)));
    put(&mut m, "calls_in_front", e.calls_in_front.map(|n| json!(n)));
    put(
        &mut m,
        "charging",
        e.charging.as_ref().map(|c| {
            json!({
                "info_type": c.info_type.as_deref(),
                "charge_units": c.charge_units.as_deref(),
                "units_type": c.units_type.as_deref(),
                "currency_type": c.currency_type.as_deref(),
                "currency_amount": c.currency_amount.as_deref(),
                "currency_multiplier": c.currency_multiplier.as_deref(),
            })
        }),
    );
    put(&mut m, "agent_id", e.agent_id.as_ref().map(s));
    put(&mut m, "acd_group", e.acd_group.as_ref().map(s));
    put(
        &mut m,
        "pending_agent_state",
        e.pending_agent_state.as_ref().map(s),
    );
    put(&mut m, "do_not_disturb", e.do_not_disturb.map(Value::Bool));
    put(&mut m, "forwarding_type", e.forwarding_type.as_ref().map(s));
    put(&mut m, "forward_status", e.forward_status.map(Value::Bool));
    put(&mut m, "forward_to", e.forward_to.as_ref().map(s));
    put(&mut m, "forward_default", e.forward_default.as_ref().map(s));
    put(&mut m, "ring_count", e.ring_count.map(|n| json!(n)));
    Value::Object(m)
}

fn response(r: &Response<'_>) -> Value {
    let o = |v: &Option<Str<'_>>| v.as_deref().map(str::to_owned);
    match r {
        Response::SystemStatus => json!({ "type": "SystemStatus" }),
        Response::SystemRegister { register_id } => {
            json!({ "type": "SystemRegister", "register_id": o(register_id) })
        }
        Response::RequestSystemStatus { status } => {
            json!({ "type": "RequestSystemStatus", "status": o(status) })
        }
        Response::MonitorStart { cross_ref } => {
            json!({ "type": "MonitorStart", "cross_ref": o(cross_ref) })
        }
        Response::MakeCall { call } => json!({ "type": "MakeCall", "call": conn(call) }),
        Response::NewCall { call } => json!({ "type": "NewCall", "call": conn(call) }),
        Response::SnapshotDevice {
            calls,
            service_cross_ref,
        } => json!({
            "type": "SnapshotDevice",
            "service_cross_ref": o(service_cross_ref),
            "calls": calls.iter().map(snapshot_call).collect::<Vec<_>>(),
        }),
        Response::SnapshotCall { parties } => json!({
            "type": "SnapshotCall",
            "parties": parties.iter().map(|p| json!({
                "device": p.device.as_ref().map(dev),
                "connection": p.connection.as_ref().map(conn),
                "state": o(&p.state),
            })).collect::<Vec<_>>(),
        }),
        Response::GetSwitchingFunctionDevices { service_cross_ref } => json!({
            "type": "GetSwitchingFunctionDevices",
            "service_cross_ref": o(service_cross_ref),
        }),
        Response::CstaFeatures { services, events } => json!({
            "type": "CstaFeatures",
            "services": services.iter().map(s).collect::<Vec<_>>(),
            "events": events.iter().map(s).collect::<Vec<_>>(),
        }),
        Response::AgentState { agents } => json!({
            "type": "AgentState",
            "agents": agents.iter().map(|a| json!({
                "agent_id": o(&a.agent_id),
                "logged_on": a.logged_on,
                "info": a.info.iter().map(|i| json!({
                    "acd_group": o(&i.acd_group),
                    "state": o(&i.state),
                    "pending_state": o(&i.pending_state),
                })).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        }),
        Response::DoNotDisturb { on } => json!({ "type": "DoNotDisturb", "on": on }),
        Response::Forwarding { items } => json!({
            "type": "Forwarding",
            "items": items.iter().map(|f| json!({
                "forwarding_type": o(&f.forwarding_type),
                "on": f.on,
                "to": o(&f.to),
            })).collect::<Vec<_>>(),
        }),
        Response::StartApplicationSession {
            session_id,
            protocol_version,
            session_duration,
        } => json!({
            "type": "StartApplicationSession",
            "session_id": o(session_id),
            "protocol_version": o(protocol_version),
            "session_duration": session_duration,
        }),
        Response::ResetApplicationSessionTimer { session_duration } => json!({
            "type": "ResetApplicationSessionTimer",
            "session_duration": session_duration,
        }),
        Response::Ack => json!({ "type": "Ack" }),
    }
}

fn snapshot_call(c: &SnapshotCall<'_>) -> Value {
    json!({
        "connection": conn(&c.connection),
        "endpoint": c.endpoint.as_ref().map(dev),
        "states": c.states.iter().map(s).collect::<Vec<_>>(),
    })
}

/// The document as JSON: what the expected files hold.
fn document(d: &Document<'_>) -> Value {
    let message = match &d.message {
        Message::Event(e) => event(e),
        Message::SystemStatus { status } => {
            json!({ "type": "SystemStatus", "status": status.as_deref() })
        }
        Message::RequestSystemStatus { register_id } => {
            json!({ "type": "RequestSystemStatus", "register_id": register_id.as_deref() })
        }
        Message::SwitchingFunctionDevices(l) => json!({
            "type": "SwitchingFunctionDevices",
            "service_cross_ref": l.service_cross_ref.as_deref(),
            "segment_id": l.segment_id,
            "last_segment": l.last_segment,
            "devices": l.devices.iter().map(|d| json!({
                "id": d.id.as_deref(),
                "category": d.category.as_deref(),
            })).collect::<Vec<_>>(),
        }),
        Message::SnapshotDeviceData(seg) => json!({
            "type": "SnapshotDeviceData",
            "service_cross_ref": seg.service_cross_ref.as_deref(),
            "segment_id": seg.segment_id,
            "last_segment": seg.last_segment,
            "calls": seg.calls.iter().map(snapshot_call).collect::<Vec<_>>(),
        }),
        Message::Response(r) => json!({ "type": "response", "response": response(r) }),
        Message::Error(e) => json!({
            "type": "error",
            "category": e.category.as_ref(),
            "value": e.value.as_ref(),
        }),
        Message::Request => json!({ "type": "request" }),
        Message::Unknown => json!({ "type": "unknown" }),
    };
    json!({
        "root": d.name.as_ref(),
        "namespace": d.namespace.as_deref(),
        "message": message,
    })
}

/// Compares `got` with the expected file next to `vector` (or writes it when updating).
fn check_expected(vector: &Path, got: &Value) {
    let name = vector
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    let path = vector.with_file_name(format!("{stem}.expected.json"));
    if std::env::var_os("UPDATE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(got).expect("json") + "\n";
        std::fs::write(&path, text).expect("write expected file");
        return;
    }
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_VECTORS=1)", path.display()));
    let want: Value = serde_json::from_str(&text).expect("expected file is JSON");
    assert_eq!(
        got,
        &want,
        "{name}: decoded fields differ from {}",
        path.display()
    );
}

fn vectors(ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("protocols/csta-xml exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(ext))
        .collect();
    v.sort();
    v
}

#[test]
fn every_xml_vector_decodes_to_its_expected_fields() {
    let files = vectors("xml");
    // One document per vendor style at least.
    for style in [
        "osv-ed4-",
        "osv-ed2-",
        "snom-ed5-",
        "ms-rcc-ed3-",
        "avaya-dmcc-",
        "no-namespace-",
        "prefixed-",
        "latin1-",
    ] {
        assert!(
            files.iter().any(|f| f
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(style))),
            "no {style} vector"
        );
    }
    for f in files {
        let bytes = std::fs::read(&f).expect("read vector");
        let doc = xml::decode(&bytes).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert_eq!(
            Ok(doc.clone().into_owned()),
            reference::decode(&bytes),
            "{}: the reference reader disagrees",
            f.display()
        );
        check_expected(&f, &document(&doc));
    }
}

#[test]
fn the_osv_stream_deframes_into_its_documents() {
    let xml_files: Vec<(PathBuf, Vec<u8>)> = vectors("xml")
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).expect("read");
            (p, b)
        })
        .collect();
    for f in vectors("bin") {
        let stream = std::fs::read(&f).expect("read stream");
        // Feed it in awkward pieces: the framer must not care.
        let mut d = Deframer::new(MAX_WIRE_FRAME);
        let mut frames = Vec::new();
        for piece in stream.chunks(97) {
            d.push(piece);
            while let Some(frame) = d.next_frame().expect("valid framing") {
                frames.push(frame);
            }
        }
        assert_eq!(d.pending(), 0, "{}: bytes left over", f.display());
        let mut got = Vec::new();
        for frame in &frames {
            // Every frame is one of the .xml vectors, byte for byte.
            assert!(
                xml_files.iter().any(|(_, b)| b[..] == frame.body[..]),
                "{}: frame {} is not one of the .xml vectors",
                f.display(),
                frame.invoke_id
            );
            let doc = xml::decode(&frame.body).expect("frame decodes");
            got.push(json!({
                "invoke_id": frame.invoke_id.to_string(),
                "document": document(&doc),
            }));
        }
        check_expected(&f, &Value::Array(got));
    }
}
