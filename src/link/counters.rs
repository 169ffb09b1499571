//! Metric handles for the per-read, per-frame and per-event paths of a CSTA XML link.
//!
//! The `metrics` macros allocate the label strings and look the series up in the recorder's
//! registry on every call; per frame and per event that costs as much as decoding the event. These
//! handles are resolved once and then only add to an atomic.
//!
//! They are resolved on first use rather than up front, for two reasons: a series appears on
//! `/metrics` exactly when the per-call macro would have created it (no new zero-valued series),
//! and a handle is never resolved before the gateway installs its recorder (one resolved earlier
//! would stay a no-op).

use crate::model::{EventKind, Text};
use metrics::Counter;
use std::sync::OnceLock;

const PROTOCOL: &str = "csta-xml";

/// Slots of the per-kind table. `Unknown` is the last variant; a kind added after it has no slot
/// and falls back to the macro, so the table can only get slower, never wrong.
const KINDS: usize = EventKind::Unknown as usize + 1;

/// Counters of one link (`link` and `protocol` labels), each resolved on first use.
pub(crate) struct LinkCounters {
    link: Text,
    bytes_rx: OnceLock<Counter>,
    bytes_tx: OnceLock<Counter>,
    frames_rx: OnceLock<Counter>,
    frames_tx: OnceLock<Counter>,
    unknown_messages: OnceLock<Counter>,
    unrouted_events: OnceLock<Counter>,
    unknown_events: OnceLock<Counter>,
    /// `ctigate_link_events_total` by `EventKind as usize`.
    events: [OnceLock<Counter>; KINDS],
}

impl LinkCounters {
    /// Counters for the link `link`.
    pub(crate) fn new(link: Text) -> LinkCounters {
        LinkCounters {
            link,
            bytes_rx: OnceLock::new(),
            bytes_tx: OnceLock::new(),
            frames_rx: OnceLock::new(),
            frames_tx: OnceLock::new(),
            unknown_messages: OnceLock::new(),
            unrouted_events: OnceLock::new(),
            unknown_events: OnceLock::new(),
            events: [const { OnceLock::new() }; KINDS],
        }
    }

    /// The series `name` of this link, with a `direction` label when given.
    fn counter(&self, name: &'static str, direction: Option<&'static str>) -> Counter {
        let link = self.link.to_string();
        match direction {
            Some(d) => {
                metrics::counter!(name, "link" => link, "protocol" => PROTOCOL, "direction" => d)
            }
            None => metrics::counter!(name, "link" => link, "protocol" => PROTOCOL),
        }
    }

    /// `ctigate_link_bytes_total{direction="rx"}`.
    pub(crate) fn rx_bytes(&self, n: u64) {
        self.bytes_rx
            .get_or_init(|| self.counter("ctigate_link_bytes_total", Some("rx")))
            .increment(n);
    }

    /// `ctigate_link_bytes_total{direction="tx"}`.
    pub(crate) fn tx_bytes(&self, n: u64) {
        self.bytes_tx
            .get_or_init(|| self.counter("ctigate_link_bytes_total", Some("tx")))
            .increment(n);
    }

    /// `ctigate_link_frames_total{direction="rx"}`.
    pub(crate) fn rx_frame(&self) {
        self.frames_rx
            .get_or_init(|| self.counter("ctigate_link_frames_total", Some("rx")))
            .increment(1);
    }

    /// `ctigate_link_frames_total{direction="tx"}`.
    pub(crate) fn tx_frame(&self) {
        self.frames_tx
            .get_or_init(|| self.counter("ctigate_link_frames_total", Some("tx")))
            .increment(1);
    }

    /// `ctigate_link_unknown_messages_total`.
    pub(crate) fn unknown_message(&self) {
        self.unknown_messages
            .get_or_init(|| self.counter("ctigate_link_unknown_messages_total", None))
            .increment(1);
    }

    /// `ctigate_link_unrouted_events_total`.
    pub(crate) fn unrouted_event(&self) {
        self.unrouted_events
            .get_or_init(|| self.counter("ctigate_link_unrouted_events_total", None))
            .increment(1);
    }

    /// `ctigate_link_unknown_events_total`.
    pub(crate) fn unknown_event(&self) {
        self.unknown_events
            .get_or_init(|| self.counter("ctigate_link_unknown_events_total", None))
            .increment(1);
    }

    /// `ctigate_link_events_total{event=kind}`.
    pub(crate) fn event(&self, kind: EventKind) {
        let make = || metrics::counter!("ctigate_link_events_total", "link" => self.link.to_string(), "protocol" => PROTOCOL, "event" => kind.as_str());
        match self.events.get(kind as usize) {
            Some(slot) => slot.get_or_init(make).increment(1),
            None => make().increment(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use metrics_exporter_prometheus::PrometheusBuilder;

    /// The handles produce the same series the per-call macros did, created only when first used.
    #[test]
    fn same_series_as_the_macros_created_on_first_use() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let c = LinkCounters::new(Text::from("pbx-a"));
            c.rx_bytes(10);
            c.rx_bytes(5);
            c.rx_frame();
            c.tx_frame();
            c.tx_frame();
            c.tx_bytes(7);
            c.event(EventKind::Delivered);
            c.event(EventKind::Delivered);
            c.event(EventKind::Unknown);
            c.unknown_event();
            c.unknown_message();
            c.unrouted_event();
        });
        let out = handle.render();
        for line in [
            r#"ctigate_link_bytes_total{link="pbx-a",protocol="csta-xml",direction="rx"} 15"#,
            r#"ctigate_link_bytes_total{link="pbx-a",protocol="csta-xml",direction="tx"} 7"#,
            r#"ctigate_link_frames_total{link="pbx-a",protocol="csta-xml",direction="rx"} 1"#,
            r#"ctigate_link_frames_total{link="pbx-a",protocol="csta-xml",direction="tx"} 2"#,
            r#"ctigate_link_events_total{link="pbx-a",protocol="csta-xml",event="delivered"} 2"#,
            r#"ctigate_link_events_total{link="pbx-a",protocol="csta-xml",event="unknown"} 1"#,
            r#"ctigate_link_unknown_events_total{link="pbx-a",protocol="csta-xml"} 1"#,
            r#"ctigate_link_unknown_messages_total{link="pbx-a",protocol="csta-xml"} 1"#,
            r#"ctigate_link_unrouted_events_total{link="pbx-a",protocol="csta-xml"} 1"#,
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line} in\n{out}");
        }
        assert!(
            !out.contains(r#"event="established""#),
            "an unused kind has no series:\n{out}"
        );
    }
}
