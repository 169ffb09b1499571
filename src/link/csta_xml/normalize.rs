//! Decoded CSTA XML events → [`model::Event`](crate::model::Event).

use crate::codec::xml::{self, Device, EventKind as X};
use crate::model::{ConnState, Event, EventKind, NumberingPlan, Party, PartyKind, Text};
use bytes::Bytes;
use std::time::Instant;

/// Where and when an event arrived.
pub struct Origin<'a> {
    /// PBX link name.
    pub pbx: &'a Text,
    /// The monitored device the event is for.
    pub device: &'a Text,
    /// The PBX's numbering plan.
    pub plan: &'a NumberingPlan,
    /// Monotonic arrival time.
    pub received: Instant,
    /// Wall-clock arrival time, ms since the epoch.
    pub ts_ms: u64,
}

/// Maps a decoded event into the normalized model. Short text is stored inline; longer text
/// shares `frame` when it is a slice of it. The event is built in its allocation and every field
/// written where it stays (see [`Text::set_from_frame`]): returned by value, the kilobyte would
/// be copied out, and again at every hand-over on the way to the hub.
#[inline]
pub fn event(frame: &Bytes, name: &xml::Str<'_>, e: &xml::Event<'_>, o: &Origin<'_>) -> Box<Event> {
    let (pbx, device, plan) = (o.pbx, o.device, o.plan);
    let kind = kind(e.kind);
    let mut ev = Box::write(
        Box::new_uninit(),
        Event::received_at(
            kind,
            Text::default(),
            Text::default(),
            Text::default(),
            o.received,
            o.ts_ms,
        ),
    );
    let text = |slot: &mut Option<Text>, v: Option<&xml::Str<'_>>| {
        if let Some(v) = v {
            Text::set_from_frame(slot, frame, v);
        }
    };
    // Inlined at each use: most slots are empty, and a call per slot costs more than the test.
    #[inline(always)]
    fn party(
        slot: &mut Option<Party>,
        d: &Option<Device<'_>>,
        frame: &Bytes,
        plan: &NumberingPlan,
    ) {
        match d {
            None => {}
            Some(Device::Id(s)) => Party::set_from_frame(slot, frame, s, plan),
            Some(Device::NotKnown) => *slot = Some(Party::without_number(PartyKind::Anonymous)),
            Some(Device::Restricted) => *slot = Some(Party::without_number(PartyKind::Restricted)),
            Some(Device::NotRequired | Device::NotSpecified) => {
                *slot = Some(Party::without_number(PartyKind::Unknown));
            }
        }
    }
    ev.name.assign_from_frame(frame, name);
    ev.pbx.assign(pbx);
    ev.device.assign(device);
    let primary = e.connection.as_ref();
    let new_call = e.new_connections.iter().find_map(|c| c.call_id.as_ref());
    let old_call = e.old_call.as_ref().and_then(|c| c.call_id.as_ref());
    let call_id = match kind {
        EventKind::Transferred | EventKind::Conferenced => new_call.or(old_call),
        _ => primary.and_then(|c| c.call_id.as_ref()),
    };
    text(&mut ev.call_id, call_id);
    text(
        &mut ev.connection_device,
        primary.and_then(|c| c.device_id.as_ref()),
    );
    for old in [e.old_call.as_ref(), e.secondary_old_call.as_ref()]
        .into_iter()
        .flatten()
    {
        if let Some(id) = &old.call_id {
            ev.old_call_ids.push(Text::from_frame(frame, id));
        }
    }
    ev.state = e.local_state.as_deref().and_then(ConnState::from_csta);
    text(&mut ev.cause, e.cause.as_ref());
    party(&mut ev.at, &e.subject, frame, plan);
    party(&mut ev.calling, &e.calling, frame, plan);
    party(&mut ev.called, &e.called, frame, plan);
    party(&mut ev.redirected_from, &e.last_redirection, frame, plan);
    party(&mut ev.target, &e.target, frame, plan);
    text(&mut ev.agent_id, e.agent_id.as_ref());
    ev.do_not_disturb = e.do_not_disturb;
    text(&mut ev.forwarding_type, e.forwarding_type.as_ref());
    ev.forwarding_on = e.forward_status;
    if let Some(to) = &e.forward_to {
        let mut p = None;
        Party::set_from_frame(&mut p, frame, to, plan);
        ev.forward_to = p.map(Box::new);
    }
    ev
}

/// The normalized kind of a CSTA event kind.
pub fn kind(k: X) -> EventKind {
    match k {
        X::ServiceInitiated => EventKind::Initiated,
        X::Originated => EventKind::Originated,
        X::Delivered => EventKind::Delivered,
        X::Established => EventKind::Established,
        X::Held => EventKind::Held,
        X::Retrieved => EventKind::Retrieved,
        X::ConnectionCleared => EventKind::ConnectionCleared,
        X::CallCleared => EventKind::CallCleared,
        X::Transferred => EventKind::Transferred,
        X::Conferenced => EventKind::Conferenced,
        X::Diverted => EventKind::Diverted,
        X::Failed => EventKind::Failed,
        X::Queued => EventKind::Queued,
        X::NetworkReached => EventKind::NetworkReached,
        X::Offered => EventKind::Offered,
        X::Bridged => EventKind::Bridged,
        X::DigitsDialed => EventKind::DigitsDialed,
        X::AgentLoggedOn => EventKind::AgentLoggedOn,
        X::AgentLoggedOff => EventKind::AgentLoggedOff,
        X::AgentReady => EventKind::AgentReady,
        X::AgentNotReady => EventKind::AgentNotReady,
        X::AgentBusy => EventKind::AgentBusy,
        X::AgentWorkingAfterCall => EventKind::AgentWorkingAfterCall,
        X::DoNotDisturb => EventKind::DoNotDisturb,
        X::Forwarding => EventKind::Forwarding,
        X::BackInService => EventKind::BackInService,
        X::OutOfService => EventKind::OutOfService,
        // Decoded by the codec but without a normalized counterpart in the model yet.
        X::NetworkCapabilitiesChanged
        | X::PartiallyInService
        | X::DeviceCapsChanged
        | X::CallInformation
        | X::Charging
        | X::DigitsGenerated
        | X::TelephonyTonesGenerated
        | X::ServiceCompletionFailure
        | X::Other => EventKind::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::xml::{Message, decode};

    fn norm(doc: &str) -> Box<Event> {
        let frame = Bytes::copy_from_slice(doc.as_bytes());
        let d = decode(&frame).unwrap();
        let Message::Event(e) = &d.message else {
            panic!("not an event")
        };
        let pbx = Text::from("p");
        let device = Text::from("100");
        let plan = NumberingPlan {
            country_code: Some("49".into()),
            ..NumberingPlan::default()
        };
        event(
            &frame,
            &d.name,
            e,
            &Origin {
                pbx: &pbx,
                device: &device,
                plan: &plan,
                received: Instant::now(),
                ts_ms: 1,
            },
        )
    }

    #[test]
    fn conferenced_diverted_failed() {
        let e = norm(
            "<ConferencedEvent><monitorCrossRefID>1</monitorCrossRefID><primaryOldCall><callID>a</callID><deviceID>100</deviceID></primaryOldCall><secondaryOldCall><callID>b</callID><deviceID>100</deviceID></secondaryOldCall><conferencingDevice><deviceIdentifier>100</deviceIdentifier></conferencingDevice><addedParty><deviceIdentifier>0301234567</deviceIdentifier></addedParty><conferenceConnections><connectionListItem><newConnection><callID>c</callID><deviceID>100</deviceID></newConnection></connectionListItem></conferenceConnections><localConnectionInfo>connected</localConnectionInfo><cause>conference</cause></ConferencedEvent>",
        );
        assert_eq!(e.kind, EventKind::Conferenced);
        assert_eq!(e.call_id.as_deref(), Some("c"));
        assert_eq!(e.old_call_ids, vec![Text::from("a"), Text::from("b")]);
        let t = e.target.unwrap();
        assert_eq!(
            (t.kind, t.e164.as_deref()),
            (PartyKind::National, Some("+49301234567"))
        );

        let e = norm(
            "<DivertedEvent><monitorCrossRefID>1</monitorCrossRefID><connection><callID>d</callID><deviceID>100</deviceID></connection><divertingDevice><deviceIdentifier>100</deviceIdentifier></divertingDevice><newDestination><deviceIdentifier>200</deviceIdentifier></newDestination><localConnectionInfo>null</localConnectionInfo><cause>callForwardNoAnswer</cause></DivertedEvent>",
        );
        assert_eq!(e.kind, EventKind::Diverted);
        assert_eq!(e.target.unwrap().number.as_deref(), Some("200"));
        assert_eq!(e.state, Some(ConnState::Null));
        assert_eq!(e.cause.as_deref(), Some("callForwardNoAnswer"));

        let e = norm(
            "<FailedEvent><monitorCrossRefID>1</monitorCrossRefID><failedConnection><callID>f</callID><deviceID>+4930999</deviceID></failedConnection><failingDevice><deviceIdentifier>+4930999</deviceIdentifier></failingDevice><callingDevice><deviceIdentifier>100</deviceIdentifier></callingDevice><calledDevice><notKnown/></calledDevice><localConnectionInfo>connected</localConnectionInfo><cause>busy</cause></FailedEvent>",
        );
        assert_eq!(e.kind, EventKind::Failed);
        assert_eq!(e.connection_device.as_deref(), Some("+4930999"));
        assert_eq!(e.called.unwrap().kind, PartyKind::Anonymous);
        assert_eq!(e.at.unwrap().kind, PartyKind::International);
    }

    #[test]
    fn unknown_events_keep_their_name_and_agent_fields_map() {
        let e =
            norm("<ButtonPressEvent><monitorCrossRefID>1</monitorCrossRefID></ButtonPressEvent>");
        assert_eq!(
            (e.kind, e.name.as_str()),
            (EventKind::Unknown, "ButtonPressEvent")
        );
        let e = norm(
            "<AgentReadyEvent><monitorCrossRefID>1</monitorCrossRefID><agentDevice><deviceIdentifier>100</deviceIdentifier></agentDevice><agentID>A7</agentID></AgentReadyEvent>",
        );
        assert_eq!(
            (e.kind, e.agent_id.as_deref()),
            (EventKind::AgentReady, Some("A7"))
        );
    }

    #[test]
    fn avaya_dmcc_device_ids_give_their_extension() {
        let doc = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/protocols/csta-xml/avaya-dmcc-agent-logged-on.xml"
        ))
        .unwrap();
        let e = norm(&doc);
        assert_eq!(e.kind, EventKind::AgentLoggedOn);
        let at = e.at.unwrap();
        assert_eq!(
            (at.raw.as_deref(), at.number.as_deref()),
            (Some("2001:CM1:10.0.0.5:0"), Some("2001"))
        );
    }
}
