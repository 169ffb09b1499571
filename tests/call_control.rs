//! Call control from a connector through the gateway to the simulated PBX and back: every command,
//! its events, its result, CSTA error mapping and timeouts.

mod common;

use common::{EnvOptions, recv_until, start};
use ctigate::connector::Client;
use ctigate::sim::csta_xml::{DeviceStyle, Scenario};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::Duration;

const T: Duration = Duration::from_secs(20);

/// Sends a command and waits for its result and for every event matching `events`, in any order.
async fn command(
    c: &mut Client,
    cmd: Value,
    events: &[&dyn Fn(&Value) -> bool],
) -> (Value, Vec<Value>) {
    let id = cmd["id"].clone();
    c.send(&cmd).await.unwrap();
    let mut result = None;
    let mut found: Vec<Option<Value>> = vec![None; events.len()];
    tokio::time::timeout(T, async {
        while result.is_none() || found.iter().any(Option::is_none) {
            let v = c.recv().await.unwrap();
            if v["type"] == "result" && v["id"] == id {
                result = Some(v);
                continue;
            }
            if let Some(i) = (0..events.len()).find(|&i| found[i].is_none() && events[i](&v)) {
                found[i] = Some(v);
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no result/events for {cmd}: result {result:?}, events {found:?}"));
    (
        result.unwrap(),
        found.into_iter().map(Option::unwrap).collect(),
    )
}

fn ev<'a>(kind: &'a str, login: &'a str) -> impl Fn(&Value) -> bool + 'a {
    move |v: &Value| v["type"] == "event" && v["event"] == kind && v["login_id"] == login
}

/// Each style of device id the PBX may use in events: plain digits, OSV `N<…>;displayNumber=…`,
/// SIP URIs. Call control must find the PBX's own connection ids in every case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_control_command_round_trips_with_plain_device_ids() {
    every_call_control_command_round_trips("call-control-plain", DeviceStyle::Plain).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_control_command_round_trips_with_osv_device_ids() {
    every_call_control_command_round_trips("call-control-osv", DeviceStyle::Osv).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_control_command_round_trips_with_sip_device_ids() {
    every_call_control_command_round_trips("call-control-sip", DeviceStyle::SipUri).await;
}

async fn every_call_control_command_round_trips(name: &str, style: DeviceStyle) {
    let mut o = EnvOptions::new(name);
    o.device_style = style;
    o.devices = 2;
    o.timing.ring = Duration::from_secs(5);
    o.timing.talk = Duration::from_secs(30);
    o.request_timeout_ms = 1000;
    let env = start(o).await;
    env.wait_green().await;
    let (a, b) = (env.logins[0].clone(), env.logins[1].clone());
    let (mut c, _) = env
        .hello(&env.token_all, &env.logins, &HashMap::new())
        .await;

    // An inbound call at A, answered by the connector.
    env.sim.play(&env.devices[0], Scenario::InboundAnswered);
    let d = recv_until(&mut c, T, |v| {
        v["event"] == "delivered" && v["login_id"] == a.as_str()
    })
    .await;
    let call1 = d["call_id"].as_str().unwrap().to_string();
    let (r, _) = command(
        &mut c,
        json!({"type":"answer","id":1,"login_id":a,"call_id":call1}),
        &[&ev("established", &a)],
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");

    // Hold, a second hold is refused with the PBX's reason mapped, retrieve.
    let (r, e) = command(
        &mut c,
        json!({"type":"hold","id":2,"login_id":a,"call_id":call1}),
        &[&ev("held", &a)],
    )
    .await;
    assert_eq!(
        (r["ok"].as_bool(), e[0]["state"].as_str()),
        (Some(true), Some("hold"))
    );
    let (r, _) = command(
        &mut c,
        json!({"type":"hold","id":3,"login_id":a,"call_id":call1}),
        &[],
    )
    .await;
    assert_eq!(r["error"]["code"], "invalid_state", "{r}");
    assert_eq!(
        r["error"]["csta"],
        json!({"category":"stateIncompatibility","value":"invalidObjectState"})
    );
    let (r, _) = command(
        &mut c,
        json!({"type":"retrieve","id":4,"login_id":a,"call_id":call1}),
        &[&ev("retrieved", &a)],
    )
    .await;
    assert_eq!(r["ok"], true);

    // Consult, then transfer: both calls leave A.
    let (r, e) = command(
        &mut c,
        json!({"type":"consult","id":5,"login_id":a,"call_id":call1,"to":"+4930777"}),
        &[&ev("held", &a), &ev("originated", &a)],
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    let call2 = e[1]["call_id"].as_str().unwrap().to_string();
    assert_ne!(call1, call2);
    // The result names the consultation call, so a connector need not wait for its events.
    assert_eq!(r["call_id"], call2.as_str(), "{r}");
    let (r, e) = command(
        &mut c,
        json!({"type":"transfer","id":6,"login_id":a,"held_call_id":call1,"active_call_id":call2}),
        &[&ev("transferred", &a)],
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(e[0]["state"], "null");
    assert_eq!(e[0]["old_call_ids"], json!([call1, call2]));

    // A second call: consult, then conference.
    env.sim.play(&env.devices[0], Scenario::InboundAnswered);
    let est = recv_until(&mut c, T, |v| {
        v["event"] == "established" && v["login_id"] == a.as_str() && v["call_id"] != call1.as_str()
    })
    .await;
    let call3 = est["call_id"].as_str().unwrap().to_string();
    let (_, e) = command(
        &mut c,
        json!({"type":"consult","id":7,"login_id":a,"call_id":call3,"to":"+4930888"}),
        &[&ev("originated", &a)],
    )
    .await;
    let call4 = e[0]["call_id"].as_str().unwrap().to_string();
    let (r, e) = command(&mut c, json!({"type":"conference","id":8,"login_id":a,"held_call_id":call3,"active_call_id":call4}), &[&ev("conferenced", &a)]).await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["call_id"], call3.as_str(), "the conference call: {r}");
    assert_eq!(e[0]["state"], "connected");
    assert!(e[0]["target"]["number"].as_str().is_some());

    // Blind transfer of the conference call to B's device: B's Login ID sees it arrive.
    let (r, _) = command(
        &mut c,
        json!({"type":"single_step_transfer","id":9,"login_id":a,"call_id":call3,"to":env.devices[1]}),
        &[&ev("transferred", &a), &|v: &Value| v["event"] == "delivered" && v["login_id"] == b.as_str() && v["cause"] == "singleStepTransfer"],
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");

    // Deflect a ringing call from A to B.
    env.sim.play(&env.devices[0], Scenario::InboundMissed);
    let d = recv_until(&mut c, T, |v| {
        v["event"] == "delivered" && v["login_id"] == a.as_str() && v["state"] == "alerting"
    })
    .await;
    let call5 = d["call_id"].as_str().unwrap().to_string();
    let (r, e) = command(
        &mut c,
        json!({"type":"deflect","id":10,"login_id":a,"call_id":call5,"to":env.devices[1]}),
        &[&ev("diverted", &a), &|v: &Value| {
            v["event"] == "delivered"
                && v["login_id"] == b.as_str()
                && v["redirected_from"]["number"] == env.devices[0].as_str()
        }],
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(e[0]["target"]["number"], env.devices[1].as_str());

    // Device features.
    let (r, e) = command(
        &mut c,
        json!({"type":"set_do_not_disturb","id":11,"login_id":a,"on":true}),
        &[&ev("do_not_disturb", &a)],
    )
    .await;
    assert_eq!(
        (r["ok"].as_bool(), e[0]["do_not_disturb"].as_bool()),
        (Some(true), Some(true))
    );
    let (r, e) = command(&mut c, json!({"type":"set_forwarding","id":12,"login_id":a,"forwarding_type":"no_answer","on":true,"to":"+4930999"}), &[&ev("forwarding", &a)]).await;
    assert_eq!(r["ok"], true);
    assert_eq!(
        (
            e[0]["forwarding_type"].as_str(),
            e[0]["forwarding_on"].as_bool()
        ),
        (Some("forwardNoAns"), Some(true))
    );
    assert_eq!(e[0]["forward_to"]["number"], "+4930999");
    let (r, e) = command(&mut c, json!({"type":"set_agent_state","id":13,"login_id":a,"state":"not_ready","agent_id":"A-17"}), &[&ev("agent_not_ready", &a)]).await;
    assert_eq!(r["ok"], true);
    assert_eq!(e[0]["agent_id"], "A-17");

    // Arguments checked before the PBX sees them; calls must be the Login ID's own.
    let (r, _) = command(
        &mut c,
        json!({"type":"set_forwarding","id":14,"login_id":a,"forwarding_type":"busy","on":true}),
        &[],
    )
    .await;
    assert_eq!(r["error"]["code"], "invalid");
    let (r, _) = command(
        &mut c,
        json!({"type":"hold","id":15,"login_id":b,"call_id":call1}),
        &[],
    )
    .await;
    assert_eq!(r["error"]["code"], "unknown_call");
    c.send(&json!({"type":"set_agent_state","id":16,"login_id":a,"state":"asleep"}))
        .await
        .unwrap();
    let e = recv_until(&mut c, T, |v| v["type"] == "error").await;
    assert_eq!(e["code"], "bad_message");

    // A PBX that stops answering: the command times out, the session goes on.
    env.sim.set_unresponsive(true);
    let (r, _) = command(
        &mut c,
        json!({"type":"set_do_not_disturb","id":17,"login_id":a,"on":false}),
        &[],
    )
    .await;
    assert_eq!(r["error"]["code"], "timeout", "{r}");
    env.sim.set_unresponsive(false);
    if style != DeviceStyle::Plain {
        assert!(
            env.sim.styled_device_ids_received() >= 5,
            "call control used the PBX's own connection ids"
        );
    }
    let (r, _) = command(
        &mut c,
        json!({"type":"set_do_not_disturb","id":18,"login_id":a,"on":false}),
        &[&ev("do_not_disturb", &a)],
    )
    .await;
    assert_eq!(r["ok"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_with_too_many_commands_awaiting_answers_gets_busy() {
    let mut o = EnvOptions::new("commands-in-flight");
    o.devices = 1;
    o.request_timeout_ms = 1500;
    let env = start(o).await;
    let mut c = env.green_client().await;
    let a = env.logins[0].clone();
    // The PBX stops answering; the connector keeps sending.
    env.sim.set_unresponsive(true);
    let cap = ctigate::api::MAX_COMMANDS_IN_FLIGHT;
    let n = cap + 6;
    for i in 0..n {
        c.send(&json!({"type":"set_do_not_disturb","id":i,"login_id":a,"on":false}))
            .await
            .unwrap();
    }
    let mut busy = vec![];
    let mut timeouts = 0;
    tokio::time::timeout(T, async {
        while busy.len() + timeouts < n {
            let v = c.recv().await.unwrap();
            if v["type"] != "result" {
                continue;
            }
            match v["error"]["code"].as_str() {
                Some("busy") => busy.push(v["id"].as_u64().unwrap() as usize),
                Some("timeout") => timeouts += 1,
                other => panic!("unexpected result {other:?}: {v}"),
            }
        }
    })
    .await
    .expect("every command was answered");
    // Results come back as they complete, not in order.
    busy.sort_unstable();
    assert_eq!(busy, (cap..n).collect::<Vec<_>>());
    assert_eq!(timeouts, cap);
    // Once answered, the connection's commands go through again.
    env.sim.set_unresponsive(false);
    let (r, _) = command(
        &mut c,
        json!({"type":"set_do_not_disturb","id":"again","login_id":a,"on":false}),
        &[],
    )
    .await;
    assert_eq!(r["ok"], true, "{r}");
}
