//! The call table of one monitored device: which calls are up, in which state and direction. It
//! annotates events with their direction and answers snapshots for resuming connectors.

use super::{ConnState, Event, EventKind, Party, Text, party::same_device};
use serde::Serialize;

/// Direction of a call at a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The device was called.
    Inbound,
    /// The device placed the call.
    Outbound,
}

/// One call at the device, as a snapshot shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CallInfo {
    /// Opaque call id.
    pub call_id: Text,
    /// State of the device's connection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<ConnState>,
    /// Direction, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// Calling party.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calling: Option<Party>,
    /// Called party.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub called: Option<Party>,
    /// When the gateway first saw the call, ms since the epoch.
    pub since_ms: u64,
}

/// Calls at one device. Small (a device rarely has more than a handful of calls), so a vector.
#[derive(Debug, Default, Clone)]
pub struct CallTable {
    calls: Vec<CallInfo>,
}

impl CallTable {
    /// Applies `ev` (at this table's device) and fills in its direction.
    pub fn apply(&mut self, ev: &mut Event) {
        let Some(call_id) = ev.call_id.clone() else {
            return;
        };
        let ours = connection_is_ours(ev);
        let gone = match ev.kind {
            EventKind::CallCleared | EventKind::CallLost => true,
            EventKind::ConnectionCleared | EventKind::Transferred | EventKind::Diverted => {
                ev.state == Some(ConnState::Null) || (ev.state.is_none() && ours)
            }
            EventKind::Failed | EventKind::ServiceCompletionFailure => {
                ev.state == Some(ConnState::Null)
            }
            _ => false,
        };
        // Transfer and conference replace old calls with a new one.
        for old in &ev.old_call_ids {
            if *old != call_id {
                self.calls.retain(|c| c.call_id != *old);
            }
        }
        let idx = self.calls.iter().position(|c| c.call_id == call_id);
        if gone {
            if let Some(i) = idx {
                ev.direction = ev.direction.or(self.calls[i].direction);
                self.calls.swap_remove(i);
            }
            return;
        }
        let direction = match ev.kind {
            EventKind::Initiated | EventKind::Originated => Some(Direction::Outbound),
            EventKind::Delivered | EventKind::Offered => match ev.state {
                Some(ConnState::Alerting) => Some(Direction::Inbound),
                Some(ConnState::Connected | ConnState::Initiated) => Some(Direction::Outbound),
                _ if ours => Some(Direction::Inbound),
                _ => None,
            },
            _ => None,
        };
        match idx {
            Some(i) => {
                let c = &mut self.calls[i];
                c.direction = c.direction.or(direction);
                if ev.state.is_some() {
                    c.state = ev.state;
                }
                if c.calling.is_none() {
                    c.calling = ev.calling.clone();
                }
                if c.called.is_none() {
                    c.called = ev.called.clone();
                }
                ev.direction = c.direction;
            }
            None => {
                if !starts_call(ev.kind) {
                    return;
                }
                ev.direction = direction;
                self.calls.push(CallInfo {
                    call_id,
                    state: ev.state,
                    direction,
                    calling: ev.calling.clone(),
                    called: ev.called.clone(),
                    since_ms: ev.ts_ms,
                });
            }
        }
    }

    /// The calls now up at the device.
    pub fn snapshot(&self) -> Vec<CallInfo> {
        self.calls.clone()
    }

    /// Number of calls up.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// True when no call is up.
    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Call ids up now.
    pub fn call_ids(&self) -> impl Iterator<Item = &Text> {
        self.calls.iter().map(|c| &c.call_id)
    }
}

fn starts_call(kind: EventKind) -> bool {
    matches!(
        kind,
        EventKind::Initiated
            | EventKind::Originated
            | EventKind::Delivered
            | EventKind::Offered
            | EventKind::Established
            | EventKind::Held
            | EventKind::Retrieved
            | EventKind::Queued
            | EventKind::Conferenced
            | EventKind::Transferred
    )
}

/// Is the event's connection the monitored device's own (rather than the far end's)?
fn connection_is_ours(ev: &Event) -> bool {
    match &ev.connection_device {
        Some(d) => same_device(d, &ev.device),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: EventKind, call: &str, state: Option<ConnState>) -> Event {
        let mut e = Event::new(kind, Text::from("x"), Text::from("pbx"), Text::from("100"));
        e.call_id = Some(Text::from(call));
        e.state = state;
        e
    }

    #[test]
    fn inbound_answered_then_cleared() {
        let mut t = CallTable::default();
        let mut e = ev(EventKind::Delivered, "c1", Some(ConnState::Alerting));
        t.apply(&mut e);
        assert_eq!(e.direction, Some(Direction::Inbound));
        let mut e = ev(EventKind::Established, "c1", Some(ConnState::Connected));
        t.apply(&mut e);
        assert_eq!(e.direction, Some(Direction::Inbound));
        assert_eq!(t.snapshot()[0].state, Some(ConnState::Connected));
        // The far end hangs up: its connection clears, ours is null.
        let mut e = ev(EventKind::ConnectionCleared, "c1", Some(ConnState::Null));
        t.apply(&mut e);
        assert_eq!(e.direction, Some(Direction::Inbound));
        assert!(t.is_empty());
    }

    #[test]
    fn a_service_failure_that_leaves_the_device_out_of_the_call_ends_it() {
        let mut t = CallTable::default();
        let mut e = ev(EventKind::Originated, "c9", Some(ConnState::Connected));
        t.apply(&mut e);
        // Still in the call after the failure: the call stays, with the state reported.
        let mut e = ev(
            EventKind::ServiceCompletionFailure,
            "c9",
            Some(ConnState::Hold),
        );
        t.apply(&mut e);
        assert_eq!(t.snapshot()[0].state, Some(ConnState::Hold));
        let mut e = ev(
            EventKind::ServiceCompletionFailure,
            "c9",
            Some(ConnState::Null),
        );
        t.apply(&mut e);
        assert!(t.is_empty());
    }

    #[test]
    fn outbound_and_far_end_clear_without_state() {
        let mut t = CallTable::default();
        let mut e = ev(EventKind::Initiated, "c2", Some(ConnState::Initiated));
        t.apply(&mut e);
        assert_eq!(e.direction, Some(Direction::Outbound));
        // Far end's connection cleared, no localConnectionInfo: our call stays.
        let mut e = ev(EventKind::ConnectionCleared, "c2", None);
        e.connection_device = Some(Text::from("+4930123"));
        t.apply(&mut e);
        assert_eq!(t.len(), 1);
        let mut e = ev(EventKind::ConnectionCleared, "c2", None);
        e.connection_device = Some(Text::from("N<100>"));
        t.apply(&mut e);
        assert!(t.is_empty());
    }

    #[test]
    fn a_far_end_without_a_number_is_not_taken_for_our_device() {
        let mut t = CallTable::default();
        let mut e = ev(EventKind::Established, "c3", Some(ConnState::Connected));
        e.device = Text::from("sip:alice@pbx");
        t.apply(&mut e);
        // Bob (also no number) hangs up; Alice's call is still up.
        let mut e = ev(EventKind::ConnectionCleared, "c3", None);
        e.device = Text::from("sip:alice@pbx");
        e.connection_device = Some(Text::from("sip:bob@pbx"));
        t.apply(&mut e);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn transfer_replaces_old_call() {
        let mut t = CallTable::default();
        t.apply(&mut ev(
            EventKind::Established,
            "old",
            Some(ConnState::Connected),
        ));
        let mut e = ev(EventKind::Transferred, "new", Some(ConnState::Connected));
        e.old_call_ids = vec![Text::from("old")];
        t.apply(&mut e);
        let ids: Vec<_> = t.call_ids().map(|c| c.to_string()).collect();
        assert_eq!(ids, vec!["new"]);
    }
}
