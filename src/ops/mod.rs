//! Ops endpoints on a plain-HTTP listener: `/metrics` (Prometheus text), `/healthz`, `/readyz`,
//! `/status` (JSON) and `/` (a small HTML status page).

pub mod metrics;

use crate::api::Api;
use crate::hub::Hub;
use crate::link::LinkState;
use crate::model::StatusLevel;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What the ops endpoints look at.
#[derive(Clone)]
pub struct OpsState {
    /// Metrics.
    pub handle: PrometheusHandle,
    /// PBX links.
    pub links: Vec<Arc<LinkState>>,
    /// Connector API.
    pub api: Arc<Api>,
    /// Hub.
    pub hub: Hub,
    /// Start time.
    pub started: Instant,
}

/// Serves the ops endpoints until `shutdown`.
pub async fn serve(listener: TcpListener, state: OpsState, shutdown: CancellationToken) {
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/status", get(status_json))
        .route("/", get(status_html))
        .with_state(state);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!(error = %e, "ops listener failed");
    }
}

async fn metrics_text(State(s): State<OpsState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.handle.render(),
    )
        .into_response()
}

#[derive(Serialize)]
struct LinkView {
    name: String,
    protocol: &'static str,
    up: bool,
    devices: usize,
    monitored: usize,
    connects: u64,
    last_error: Option<String>,
    /// When the PBX's certificate expires (seconds since the Unix epoch); `null` when it
    /// presented none (plain TCP, or no connection yet).
    peer_certificate_expires: Option<i64>,
}

#[derive(Serialize)]
struct StatusView {
    server: &'static str,
    uptime_s: u64,
    api_ready: bool,
    /// When the connector listener's certificate expires (seconds since the Unix epoch); `null`
    /// for in-memory certificates (demo).
    api_certificate_expires: Option<i64>,
    links: Vec<LinkView>,
    logins: LoginCounts,
}

#[derive(Serialize, Default)]
struct LoginCounts {
    green: usize,
    yellow: usize,
    red: usize,
}

fn view(s: &OpsState) -> StatusView {
    let links = s
        .links
        .iter()
        .map(|l| LinkView {
            name: l.name.to_string(),
            protocol: l.protocol,
            up: l.up.load(Ordering::Relaxed),
            devices: l.devices,
            monitored: l.monitored.load(Ordering::Relaxed),
            connects: l.connects.load(Ordering::Relaxed),
            last_error: l.last_error.lock().map(|e| e.clone()).unwrap_or(None),
            peer_certificate_expires: Some(l.peer_cert_expiry.load(Ordering::Relaxed))
                .filter(|t| *t != 0),
        })
        .collect();
    let mut logins = LoginCounts::default();
    for (id, _) in s.hub.registry().logins() {
        match s.hub.status(id).map(|x| x.0) {
            Some(StatusLevel::Green) => logins.green += 1,
            Some(StatusLevel::Yellow) => logins.yellow += 1,
            _ => logins.red += 1,
        }
    }
    StatusView {
        server: crate::api::SERVER,
        uptime_s: s.started.elapsed().as_secs(),
        api_ready: s.api.ready.load(Ordering::Acquire),
        api_certificate_expires: Some(s.api.cert_expiry.load(Ordering::Relaxed))
            .filter(|t| *t != 0),
        links,
        logins,
    }
}

async fn readyz(State(s): State<OpsState>) -> Response {
    let v = view(&s);
    let ready = v.api_ready && v.links.iter().all(|l| l.up);
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, axum::Json(v)).into_response()
}

async fn status_json(State(s): State<OpsState>) -> Response {
    axum::Json(view(&s)).into_response()
}

async fn status_html(State(s): State<OpsState>) -> Html<String> {
    let v = view(&s);
    let esc = |t: &str| {
        t.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut rows = String::new();
    let now = crate::model::now_ms() as i64 / 1000;
    // A certificate's expiry date, red within 14 days.
    let expiry = |t: i64| {
        format!(
            "<span class={}>{}</span>",
            if t - now < 14 * 86_400 { "down" } else { "up" },
            time::OffsetDateTime::from_unix_timestamp(t)
                .map(|d| d.date().to_string())
                .unwrap_or_default()
        )
    };
    for l in &v.links {
        let cert = format!(
            "<td>{}</td>",
            l.peer_certificate_expires.map(expiry).unwrap_or_default()
        );
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td class={}>{}</td><td>{}/{}</td><td>{}</td>{cert}<td>{}</td></tr>",
            esc(&l.name),
            l.protocol,
            if l.up { "up" } else { "down" },
            if l.up { "up" } else { "down" },
            l.monitored,
            l.devices,
            l.connects,
            esc(l.last_error.as_deref().unwrap_or(""))
        ));
    }
    Html(format!(
        "<!doctype html><html><head><meta charset=utf-8><title>ctigate</title>\
<style>body{{font:14px sans-serif;margin:2em}}td,th{{padding:4px 10px;text-align:left}}.up{{color:#080}}.down{{color:#b00}}</style></head>\
<body><h1>ctigate</h1><p>{} · up {} s · API {}{}</p>\
<h2>PBX links</h2><table><tr><th>link</th><th>protocol</th><th>state</th><th>monitored</th><th>connects</th><th>PBX certificate expires</th><th>last error</th></tr>{}</table>\
<h2>Login IDs</h2><p>green {} · yellow {} · red {}</p>\
<p><a href=/metrics>metrics</a> · <a href=/status>status JSON</a> · <a href=/readyz>readyz</a></p></body></html>",
        v.server,
        v.uptime_s,
        if v.api_ready { "ready" } else { "not ready" },
        v.api_certificate_expires
            .map(|t| format!(" · API certificate expires {}", expiry(t)))
            .unwrap_or_default(),
        rows,
        v.logins.green,
        v.logins.yellow,
        v.logins.red
    ))
}
