//! Hub fan-out: one event published to N subscribers of a Login ID, serialized once and shared
//! (`Hub::publish`), against the baseline of serializing it again for every subscriber; and the
//! per-event cost of the metrics with the Prometheus recorder installed (`hub_metrics`).
//!
//! cargo bench --bench hub

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ctigate::config::Config;
use ctigate::hub::{Hub, Outbound, SubscriberRx, message};
use ctigate::model::{ConnState, Event, EventKind, LoginId, NumberingPlan, Party, Text};
use std::hint::black_box;
use std::sync::Arc;

fn hub() -> Hub {
    let cfg = Config::parse(
        r#"
[api]
listen = "127.0.0.1:0"
cert = "c"
key = "k"
[hub]
replay_ring = 1024
[[pbx]]
name = "p"
protocol = "csta-xml"
mode = "dial"
address = "h:1"
tls = false
[[login]]
login_id = "K7Q2M9X4T1B8R6W3Z5NP"
pbx = "p"
device = "4711"
"#,
    )
    .expect("bench config");
    Hub::new(&cfg)
}

fn event() -> Event {
    let plan = NumberingPlan::default();
    let mut e = Event::new(
        EventKind::Established,
        Text::from("EstablishedEvent"),
        Text::from("p"),
        Text::from("4711"),
    );
    e.call_id = Some(Text::from("FF00010000000000000000000000002A"));
    e.connection_device = Some(Text::from("4711"));
    e.state = Some(ConnState::Connected);
    e.cause = Some(Text::from("newCall"));
    e.at = Some(Party::from_raw(Text::from("4711"), &plan));
    e.calling = Some(Party::from_raw(
        Text::from("N<+4930123456>;displayNumber=030123456;noa=nk"),
        &plan,
    ));
    e.called = Some(Party::from_raw(Text::from("4711"), &plan));
    e
}

fn drain(subs: &mut [SubscriberRx]) {
    for s in subs {
        while s.try_recv().is_some() {}
    }
}

fn fanout(c: &mut Criterion) {
    let mut g = c.benchmark_group("hub_fanout");
    g.throughput(Throughput::Elements(1));
    let login = LoginId::parse("K7Q2M9X4T1B8R6W3Z5NP").expect("login");
    for n in [1usize, 8, 64] {
        let h = hub();
        let mut subs: Vec<SubscriberRx> = (0..n)
            .map(|_| {
                let s = h.new_subscriber(Arc::from("bench"), 1 << 16, 1 << 30);
                h.subscribe(&s.sub, &login, Some(0));
                s
            })
            .collect();
        drain(&mut subs);
        let ev = event();
        g.bench_with_input(BenchmarkId::new("publish_shared_bytes", n), &n, |b, _| {
            b.iter(|| {
                h.publish(black_box(&mut ev.clone()));
                drain(&mut subs);
            })
        });
        // Baseline: what a naive fan-out does, one serialization per subscriber.
        let mut seq = 0u64;
        g.bench_with_input(
            BenchmarkId::new("serialize_per_subscriber", n),
            &n,
            |b, _| {
                b.iter(|| {
                    seq += 1;
                    let e = black_box(ev.clone());
                    for s in &subs {
                        s.sub.push(Outbound {
                            json: message::event(&login, seq, &e),
                            ingress: None,
                        });
                    }
                    drain(&mut subs);
                })
            },
        );
    }
    g.finish();
}

/// What the metrics facade costs per published event once a recorder is installed (the gateway
/// always has one): the whole `Hub::publish`, and the counter update alone, resolved per call with
/// a dynamic label (how the hot paths used to do it) against a handle resolved once.
fn metrics_cost(c: &mut Criterion) {
    // Installed here, after `hub_fanout`, so the fan-out numbers stay comparable with earlier runs
    // (a handle resolved before a recorder exists is a no-op forever). Fails harmlessly when a
    // filter runs this group twice in one process.
    let _ = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder();
    let mut g = c.benchmark_group("hub_metrics");
    g.throughput(Throughput::Elements(1));
    let login = LoginId::parse("K7Q2M9X4T1B8R6W3Z5NP").expect("login");
    let h = hub();
    let mut subs = vec![h.new_subscriber(Arc::from("bench"), 1 << 16, 1 << 30)];
    h.subscribe(&subs[0].sub, &login, Some(0));
    drain(&mut subs);
    let ev = event();
    g.bench_function("publish_with_recorder", |b| {
        b.iter(|| {
            h.publish(black_box(&mut ev.clone()));
            drain(&mut subs);
        })
    });
    let pbx = ev.pbx.clone();
    g.bench_function("hub_counter_macro_per_event", |b| {
        b.iter(|| {
            metrics::counter!("ctigate_hub_events_total", "link" => black_box(&pbx).to_string())
                .increment(1)
        })
    });
    let kind = ev.kind;
    g.bench_function("link_event_counter_macro_per_event", |b| {
        b.iter(|| {
            metrics::counter!("ctigate_link_events_total", "link" => black_box(&pbx).to_string(), "protocol" => "csta-xml", "event" => black_box(kind).as_str()).increment(1)
        })
    });
    let handle = metrics::counter!("ctigate_hub_events_total", "link" => pbx.to_string());
    g.bench_function("counter_handle_per_event", |b| {
        b.iter(|| black_box(&handle).increment(1))
    });
    g.finish();
}

criterion_group!(benches, fanout, metrics_cost);
criterion_main!(benches);
