//! Decoded CSTA XML events → [`model::Event`](crate::model::Event).

use crate::codec::xml::{self, Device, EventKind as X};
use crate::model::{
    Charging, ConnState, Details, Event, EventKind, NumberingPlan, Party, PartyKind, Text,
};
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
    text(&mut ev.correlator_data, e.correlator_data.as_ref());
    if has_details(e) {
        ev.details = Some(details(frame, e, plan));
    }
    ev
}

/// Fills `slot` with the party of a decoded device. Inlined at each use: most slots are empty,
/// and a call per slot costs more than the test.
#[inline(always)]
fn party(slot: &mut Option<Party>, d: &Option<Device<'_>>, frame: &Bytes, plan: &NumberingPlan) {
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

/// Whether `e` carries anything [`Details`] holds (most call events do not).
#[inline]
fn has_details(e: &xml::Event<'_>) -> bool {
    e.agent_id.is_some()
        || e.do_not_disturb.is_some()
        || e.forwarding_type.is_some()
        || e.forward_status.is_some()
        || e.forward_to.is_some()
        || e.user_data.is_some()
        || e.account_info.is_some()
        || e.digits.is_some()
        || e.tone.is_some()
        || e.number_queued.is_some()
        || e.calls_in_front.is_some()
        || e.acd_group.is_some()
        || matches!(e.associated_calling, Some(Device::Id(_)))
        || matches!(e.associated_called, Some(Device::Id(_)))
        || e.charging.is_some()
}

/// The rarer fields, in a box of their own.
#[inline(never)]
fn details(frame: &Bytes, e: &xml::Event<'_>, plan: &NumberingPlan) -> Box<Details> {
    let text = |v: &Option<xml::Str<'_>>| v.as_ref().map(|v| Text::from_frame(frame, v));
    // Associated parties only when they name a device: OpenScape Voice writes
    // `<associatedCallingDevice><notKnown/>` on ordinary calls, which says nothing.
    let associated = |d: &Option<Device<'_>>| match d {
        Some(Device::Id(s)) => {
            let mut p = None;
            Party::set_from_frame(&mut p, frame, s, plan);
            p
        }
        _ => None,
    };
    let mut forward_to = None;
    if let Some(to) = &e.forward_to {
        Party::set_from_frame(&mut forward_to, frame, to, plan);
    }
    fn number<T: std::str::FromStr>(v: &Option<xml::Str<'_>>) -> Option<T> {
        v.as_deref().and_then(|v| v.trim().parse().ok())
    }
    Box::new(Details {
        agent_id: text(&e.agent_id),
        do_not_disturb: e.do_not_disturb,
        forwarding_type: text(&e.forwarding_type),
        forwarding_on: e.forward_status,
        forward_to,
        user_data: text(&e.user_data),
        account: text(&e.account_info),
        digits: text(&e.digits),
        tone: text(&e.tone),
        queued: e.number_queued,
        calls_in_front: e.calls_in_front,
        acd_group: text(&e.acd_group),
        associated_calling: associated(&e.associated_calling),
        associated_called: associated(&e.associated_called),
        charging: e
            .charging
            .as_deref()
            .map(|c| Charging {
                info_type: text(&c.info_type),
                units: number(&c.charge_units),
                units_type: text(&c.units_type),
                currency: text(&c.currency_type),
                amount: number(&c.currency_amount),
                multiplier: text(&c.currency_multiplier),
            })
            // An empty `chargingInfo` says nothing; `"charging":{}` would only puzzle.
            .filter(|c| *c != Charging::default()),
    })
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
        X::PartiallyInService => EventKind::PartiallyInService,
        X::CallInformation => EventKind::CallInformation,
        X::Charging => EventKind::Charging,
        X::DigitsGenerated => EventKind::DigitsGenerated,
        X::TelephonyTonesGenerated => EventKind::TelephonyTonesGenerated,
        X::ServiceCompletionFailure => EventKind::ServiceCompletionFailure,
        // Capability changes say what a device or network can do; connectors act on none of it,
        // so they pass through by name.
        X::NetworkCapabilitiesChanged | X::DeviceCapsChanged | X::Other => EventKind::Unknown,
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
        assert!(e.details.is_none());
        let e = norm(
            "<AgentReadyEvent><monitorCrossRefID>1</monitorCrossRefID><agentDevice><deviceIdentifier>100</deviceIdentifier></agentDevice><agentID>A7</agentID></AgentReadyEvent>",
        );
        assert_eq!(
            (e.kind, e.details.as_ref().unwrap().agent_id.as_deref()),
            (EventKind::AgentReady, Some("A7"))
        );
        // Flattened: the connector sees `agent_id` beside `event`.
        let json = serde_json::to_value(&*e).unwrap();
        assert_eq!(
            (json["event"].as_str(), json["agent_id"].as_str()),
            (Some("agent_ready"), Some("A7"))
        );
        // A correlator alone does not cost a `details`; `notKnown` associated parties are dropped.
        let e = norm(
            "<HeldEvent><monitorCrossRefID>1</monitorCrossRefID><heldConnection><callID>h</callID><deviceID>100</deviceID></heldConnection><holdingDevice><deviceIdentifier>100</deviceIdentifier></holdingDevice><localConnectionInfo>hold</localConnectionInfo><correlatorData><string>0A0B</string></correlatorData><associatedCallingDevice><notKnown/></associatedCallingDevice></HeldEvent>",
        );
        assert_eq!(e.correlator_data.as_deref(), Some("0A0B"));
        assert!(e.details.is_none());
    }

    #[test]
    fn charging_queues_digits_and_failures_keep_their_fields() {
        let e = norm(
            "<ChargingEvent><monitorCrossRefID>1</monitorCrossRefID><connection><callID>c</callID><deviceID>100</deviceID></connection><chargedDevice><deviceIdentifier>100</deviceIdentifier></chargedDevice><chargingInfo><numberUnits><numberOfCurrencyUnits><currencyType>EUR</currencyType><currencyAmount> 1250 </currencyAmount><currencyMultiplier>oneHundredth</currencyMultiplier></numberOfCurrencyUnits></numberUnits><typeOfChargingInfo>total</typeOfChargingInfo></chargingInfo></ChargingEvent>",
        );
        assert_eq!(e.kind, EventKind::Charging);
        assert_eq!(e.call_id.as_deref(), Some("c"));
        let ch = e.details.as_ref().unwrap().charging.clone().unwrap();
        assert_eq!(
            (
                ch.info_type.as_deref(),
                ch.currency.as_deref(),
                ch.amount,
                ch.multiplier.as_deref(),
                ch.units
            ),
            (
                Some("total"),
                Some("EUR"),
                Some(1250),
                Some("oneHundredth"),
                None
            )
        );
        let json = serde_json::to_value(&*e).unwrap();
        assert_eq!(
            json["charging"],
            serde_json::json!({"type":"total","currency":"EUR","amount":1250,"multiplier":"oneHundredth"})
        );
        let e = norm(
            "<ConnectionClearedEvent><monitorCrossRefID>1</monitorCrossRefID><droppedConnection><callID>c</callID><deviceID>100</deviceID></droppedConnection><releasingDevice><deviceIdentifier>100</deviceIdentifier></releasingDevice><localConnectionInfo>null</localConnectionInfo><cause>normalClearing</cause><chargingInfo><numberUnits><numberOfChargeUnits><chargingUnitsRecord><chargingUnits>17</chargingUnits><typeOfUnits>chargingUnits</typeOfUnits></chargingUnitsRecord></numberOfChargeUnits></numberUnits><typeOfChargingInfo>total</typeOfChargingInfo></chargingInfo></ConnectionClearedEvent>",
        );
        let ch = e.details.unwrap().charging.unwrap();
        assert_eq!(
            (ch.units, ch.units_type.as_deref()),
            (Some(17), Some("chargingUnits"))
        );

        let e = norm(
            "<QueuedEvent><monitorCrossRefID>1</monitorCrossRefID><queuedConnection><callID>q</callID><deviceID>100</deviceID></queuedConnection><queue><deviceIdentifier>700</deviceIdentifier></queue><callingDevice><deviceIdentifier>0301234567</deviceIdentifier></callingDevice><calledDevice><deviceIdentifier>700</deviceIdentifier></calledDevice><numberQueued>3</numberQueued><callsInFront>2</callsInFront><localConnectionInfo>queued</localConnectionInfo><cause>distributed</cause><associatedCalledDevice><deviceIdentifier>+4930800800</deviceIdentifier></associatedCalledDevice></QueuedEvent>",
        );
        let d = e.details.unwrap();
        assert_eq!((d.queued, d.calls_in_front), (Some(3), Some(2)));
        assert_eq!(
            d.associated_called.unwrap().e164.as_deref(),
            Some("+4930800800")
        );
        assert_eq!(d.associated_calling, None);

        let e = norm(
            "<DigitsDialedEvent><monitorCrossRefID>1</monitorCrossRefID><dialingConnection><callID>x</callID><deviceID>100</deviceID></dialingConnection><dialingDevice><deviceIdentifier>100</deviceIdentifier></dialingDevice><dialingSequence>0301</dialingSequence><localConnectionInfo>initiated</localConnectionInfo><cause>normal</cause></DigitsDialedEvent>",
        );
        assert_eq!(e.kind, EventKind::DigitsDialed);
        assert_eq!(e.details.unwrap().digits.as_deref(), Some("0301"));

        let e = norm(
            "<ServiceCompletionFailureEvent><monitorCrossRefID>1</monitorCrossRefID><primaryCall><deviceID>100</deviceID><connectionID><callID>p</callID><deviceID>100</deviceID></connectionID><localConnectionState>connected</localConnectionState></primaryCall><cause>networkCongestion</cause></ServiceCompletionFailureEvent>",
        );
        assert_eq!(e.kind, EventKind::ServiceCompletionFailure);
        assert_eq!(
            (e.call_id.as_deref(), e.cause.as_deref(), e.state),
            (
                Some("p"),
                Some("networkCongestion"),
                Some(ConnState::Connected)
            )
        );
        assert!(e.details.is_none(), "nothing rare in it");
        // Nothing rare: no `details` and no stray keys.
        let json = serde_json::to_value(&*e).unwrap();
        assert!(json.get("charging").is_none() && json.get("queued").is_none());

        // A refund is a negative amount; an empty `chargingInfo` is no charging.
        let e = norm(
            "<ChargingEvent><monitorCrossRefID>1</monitorCrossRefID><connection><callID>c</callID><deviceID>100</deviceID></connection><chargingInfo><numberUnits><numberOfCurrencyUnits><currencyAmount>-300</currencyAmount></numberOfCurrencyUnits></numberUnits></chargingInfo></ChargingEvent>",
        );
        assert_eq!(e.details.unwrap().charging.unwrap().amount, Some(-300));
        let e = norm(
            "<ChargingEvent><monitorCrossRefID>1</monitorCrossRefID><connection><callID>c</callID><deviceID>100</deviceID></connection><chargingInfo/></ChargingEvent>",
        );
        assert!(e.details.is_none_or(|d| d.charging.is_none()));
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
