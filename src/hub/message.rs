//! The JSON messages the hub fans out (`protocols/connector-api.md`). Each is serialized once and the
//! bytes are shared by every subscriber.

use crate::model::{CallInfo, Event, LoginId, StatusLevel};
use bytes::Bytes;
use serde::Serialize;

/// `{"type":"event","login_id":…,"seq":…, …event fields}`.
pub fn event(login: &LoginId, seq: u64, ev: &Event) -> Bytes {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"type\":\"event\",\"login_id\":");
    // A LoginId is ASCII letters and digits: no escaping needed.
    out.push(b'"');
    out.extend_from_slice(login.as_str().as_bytes());
    out.extend_from_slice(b"\",\"seq\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    out.push(b',');
    let start = out.len();
    // Serializing a struct of strings, numbers and enums into a Vec cannot fail.
    serde_json::to_writer(&mut out, ev).expect("event serializes");
    // Splice the event object's fields into ours: drop its opening brace.
    debug_assert_eq!(out[start], b'{');
    out.remove(start);
    Bytes::from(out)
}

#[derive(Serialize)]
struct Status<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    login_id: &'a str,
    status: StatusLevel,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pbx: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<&'a str>,
}

/// `{"type":"status",…}`. The Login ID is a plain string: a red status may name one the connector
/// sent that is not valid at all.
pub fn status(
    login: &str,
    level: StatusLevel,
    reason: &str,
    pbx: Option<&str>,
    device: Option<&str>,
) -> Bytes {
    to_bytes(&Status {
        kind: "status",
        login_id: login,
        status: level,
        reason,
        pbx,
        device,
    })
}

#[derive(Serialize)]
struct Gap<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    login_id: &'a LoginId,
    from_seq: u64,
    to_seq: u64,
    reason: &'a str,
}

/// `{"type":"gap",…}`: events `from_seq..=to_seq` cannot be replayed.
pub fn gap(login: &LoginId, from_seq: u64, to_seq: u64, reason: &str) -> Bytes {
    to_bytes(&Gap {
        kind: "gap",
        login_id: login,
        from_seq,
        to_seq,
        reason,
    })
}

#[derive(Serialize)]
struct Snapshot<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    login_id: &'a LoginId,
    seq: u64,
    calls: &'a [CallInfo],
}

/// `{"type":"snapshot",…}`: the calls up at `seq`.
pub fn snapshot(login: &LoginId, seq: u64, calls: &[CallInfo]) -> Bytes {
    to_bytes(&Snapshot {
        kind: "snapshot",
        login_id: login,
        seq,
        calls,
    })
}

/// Serializes a message made of strings, numbers and enums; that cannot fail.
pub fn to_bytes<T: Serialize>(v: &T) -> Bytes {
    Bytes::from(serde_json::to_vec(v).expect("message serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{EventKind, Text};

    #[test]
    fn event_envelope_is_one_flat_object() {
        let id = LoginId::parse("ALICE1").unwrap();
        let mut ev = Event::new(
            EventKind::Delivered,
            Text::from("DeliveredEvent"),
            Text::from("osv1"),
            Text::from("4711"),
        );
        ev.call_id = Some(Text::from("c\"1"));
        let b = event(&id, 7, &ev);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["type"], "event");
        assert_eq!(v["login_id"], "ALICE1");
        assert_eq!(v["seq"], 7);
        assert_eq!(v["event"], "delivered");
        assert_eq!(v["call_id"], "c\"1");
        assert_eq!(v["device"], "4711");
    }
}
