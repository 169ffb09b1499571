//! The Prometheus recorder (installed once per process) and the metric catalogue.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Duration;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Latency buckets, seconds: 100 µs … 5 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Installs the process-wide Prometheus recorder (first call) and returns its handle.
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("ctigate_event_latency_seconds".into()),
                    LATENCY_BUCKETS,
                )
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let handle = match builder.install_recorder() {
                Ok(h) => h,
                // Another recorder is already installed (an embedding program); render ours anyway.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            };
            describe();
            let h = handle.clone();
            // Upkeep drains histogram buffers; a plain thread keeps it independent of any runtime.
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        h.run_upkeep();
                    }
                });
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "ctigate_link_frames_total",
        "CSTA frames received (rx) and sent (tx) per PBX link"
    );
    describe_counter!(
        "ctigate_link_bytes_total",
        Unit::Bytes,
        "Bytes received (rx) and sent (tx) per PBX link"
    );
    describe_counter!(
        "ctigate_link_decode_errors_total",
        "Frames or documents that could not be decoded, by kind (bad_header, oversize, truncated, syntax, not_xml, encoding, …)"
    );
    describe_counter!(
        "ctigate_link_events_total",
        "Events decoded per PBX link and normalized event type"
    );
    describe_counter!(
        "ctigate_link_unknown_events_total",
        "Events passed through as `unknown` (not normalized)"
    );
    describe_counter!(
        "ctigate_link_unknown_messages_total",
        "Messages with a root element the gateway does not know"
    );
    describe_counter!(
        "ctigate_link_unrouted_events_total",
        "Events whose monitorCrossRefID matches no monitor"
    );
    describe_counter!(
        "ctigate_link_unmatched_responses_total",
        "Responses whose invoke id matches no pending request"
    );
    describe_counter!("ctigate_link_connects_total", "PBX connections established");
    describe_counter!(
        "ctigate_link_disconnects_total",
        "PBX connections lost, by reason"
    );
    describe_counter!(
        "ctigate_api_tls_reloads_total",
        "The connector listener's TLS files re-read on SIGHUP, by result (on error the previous certificate stays)"
    );
    describe_counter!(
        "ctigate_link_tls_reloads_total",
        "A PBX link's TLS files re-read on SIGHUP, by result (on error the previous certificate stays)"
    );
    describe_gauge!(
        "ctigate_api_tls_certificate_expiry_timestamp_seconds",
        Unit::Seconds,
        "When the connector listener's certificate expires, seconds since the Unix epoch"
    );
    describe_gauge!(
        "ctigate_link_tls_certificate_expiry_timestamp_seconds",
        Unit::Seconds,
        "When the certificate a PBX link presents expires, seconds since the Unix epoch"
    );
    describe_gauge!(
        "ctigate_link_peer_certificate_expiry_timestamp_seconds",
        Unit::Seconds,
        "When the certificate the PBX presented at its last connect expires, seconds since the Unix epoch"
    );
    describe_counter!(
        "ctigate_link_connect_failures_total",
        "Failed PBX connection attempts, by kind"
    );
    describe_counter!(
        "ctigate_link_monitor_failures_total",
        "MonitorStart requests refused or unanswered"
    );
    describe_counter!(
        "ctigate_link_resyncs_total",
        "Call snapshots after (re)monitoring a device or a switch report of lost messages, by outcome (done, failed)"
    );
    describe_counter!(
        "ctigate_link_switch_status_total",
        "SystemStatus values the switch reported (its own SystemStatus or a keep-alive answer), by status"
    );
    describe_counter!(
        "ctigate_link_commands_total",
        "Call-control requests sent to the PBX, by outcome"
    );
    describe_gauge!("ctigate_link_up", "1 when the PBX session is established");
    describe_gauge!(
        "ctigate_link_monitored_devices",
        "Devices monitored now per PBX link"
    );
    describe_counter!("ctigate_hub_events_total", "Events routed to a Login ID");
    describe_counter!(
        "ctigate_hub_unrouted_events_total",
        "Events at devices no Login ID holds"
    );
    describe_counter!(
        "ctigate_slow_consumer_disconnects_total",
        "Connector connections closed because they fell behind"
    );
    describe_counter!(
        "ctigate_api_connections_total",
        "Connector connection attempts, by outcome"
    );
    describe_counter!(
        "ctigate_api_tls_handshake_failures_total",
        "Failed TLS handshakes on the connector API"
    );
    describe_counter!(
        "ctigate_api_auth_failures_total",
        "Failed connector authentications, by reason"
    );
    describe_counter!(
        "ctigate_api_login_rejections_total",
        "Login IDs refused in hello, by reason"
    );
    describe_counter!(
        "ctigate_api_messages_total",
        "Connector messages, by direction"
    );
    describe_counter!(
        "ctigate_api_bad_messages_total",
        "Malformed connector messages"
    );
    describe_counter!(
        "ctigate_api_commands_total",
        "Connector commands, by command and outcome"
    );
    describe_gauge!("ctigate_api_sessions", "Connector sessions open now");
    describe_histogram!(
        "ctigate_event_latency_seconds",
        Unit::Seconds,
        "Time from the PBX frame arriving to the event being written to the connector"
    );
}
