//! Decoded CSTA XML events → [`model::Event`](crate::model::Event).

use crate::codec::xml::{self, Device, EventKind as X};
use crate::model::{ConnState, Event, EventKind, NumberingPlan, Party, PartyKind, Text};
use bytes::Bytes;
use std::sync::Arc;
use std::time::Instant;

/// Maps a decoded event at `device` into the normalized model. Text fields share `frame`.
pub fn event(
    frame: &Bytes,
    name: &xml::Str<'_>,
    e: &xml::Event<'_>,
    pbx: &Arc<str>,
    device: &Text,
    plan: &NumberingPlan,
    received: Instant,
    ts_ms: u64,
) -> Event {
    let t = |s: &xml::Str<'_>| Text::from_frame(frame, s);
    let party = |d: &Option<Device<'_>>| d.as_ref().map(|d| to_party(frame, d, plan));
    let kind = kind(e.kind);
    let mut ev = Event::new(kind, t(name), pbx.clone(), device.clone());
    ev.received = received;
    ev.ts_ms = ts_ms;
    let primary = e.connection.as_ref();
    let new_call = e.new_connections.iter().find_map(|c| c.call_id.as_ref());
    let old_call = e.old_call.as_ref().and_then(|c| c.call_id.as_ref());
    ev.call_id = match kind {
        EventKind::Transferred | EventKind::Conferenced => new_call.or(old_call).map(t),
        _ => primary.and_then(|c| c.call_id.as_ref()).map(t),
    };
    ev.connection_device = primary.and_then(|c| c.device_id.as_ref()).map(t);
    for old in [e.old_call.as_ref(), e.secondary_old_call.as_ref()]
        .into_iter()
        .flatten()
    {
        if let Some(id) = &old.call_id {
            ev.old_call_ids.push(t(id));
        }
    }
    ev.state = e.local_state.as_deref().and_then(ConnState::from_csta);
    ev.cause = e.cause.as_ref().map(t);
    ev.at = party(&e.subject);
    ev.calling = party(&e.calling);
    ev.called = party(&e.called);
    ev.redirected_from = party(&e.last_redirection);
    ev.target = party(&e.target);
    ev.agent_id = e.agent_id.as_ref().map(t);
    ev.do_not_disturb = e.do_not_disturb;
    ev.forwarding_type = e.forwarding_type.as_ref().map(t);
    ev.forwarding_on = e.forward_status;
    ev.forward_to = e.forward_to.as_ref().map(|s| Party::from_raw(t(s), plan));
    ev
}

fn to_party(frame: &Bytes, d: &Device<'_>, plan: &NumberingPlan) -> Party {
    match d {
        Device::Id(s) => Party::from_raw(Text::from_frame(frame, s), plan),
        Device::NotKnown => Party::without_number(PartyKind::Anonymous),
        Device::Restricted => Party::without_number(PartyKind::Restricted),
        Device::NotRequired | Device::NotSpecified => Party::without_number(PartyKind::Unknown),
    }
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
