//! The `$SYS/broker/...` topics, under mosquitto's names (mosquitto(8), "Broker status").

mod support;

use std::collections::BTreeMap;

use support::*;
use tern_codec::{Packet, ProtocolVersion, QoS};

const V5: ProtocolVersion = ProtocolVersion::V5;

/// The topics a mosquitto tool reads, all published by the first update.
const TOPICS: &[&str] = &[
    "$SYS/broker/version",
    "$SYS/broker/uptime",
    "$SYS/broker/clients/connected",
    "$SYS/broker/clients/disconnected",
    "$SYS/broker/clients/total",
    "$SYS/broker/clients/maximum",
    "$SYS/broker/clients/expired",
    "$SYS/broker/messages/received",
    "$SYS/broker/messages/sent",
    "$SYS/broker/messages/stored",
    "$SYS/broker/publish/messages/received",
    "$SYS/broker/publish/messages/sent",
    "$SYS/broker/publish/messages/dropped",
    "$SYS/broker/bytes/received",
    "$SYS/broker/bytes/sent",
    "$SYS/broker/subscriptions/count",
    "$SYS/broker/retained messages/count",
    "$SYS/broker/store/messages/count",
    "$SYS/broker/load/messages/received/1min",
    "$SYS/broker/load/messages/received/5min",
    "$SYS/broker/load/messages/received/15min",
    "$SYS/broker/load/messages/sent/1min",
    "$SYS/broker/load/publish/received/1min",
    "$SYS/broker/load/publish/sent/1min",
    "$SYS/broker/load/publish/dropped/1min",
    "$SYS/broker/load/bytes/received/1min",
    "$SYS/broker/load/bytes/sent/15min",
    "$SYS/broker/load/connections/5min",
];

/// Reads PUBLISH packets until `done` holds for the latest payload of every topic seen.
async fn collect_until(
    client: &mut Client,
    seen: &mut BTreeMap<String, (String, bool)>,
    done: impl Fn(&BTreeMap<String, (String, bool)>) -> bool,
) {
    while !done(seen) {
        let p = client.expect_publish().await;
        let payload = String::from_utf8(p.payload.to_vec()).expect("UTF-8 figures");
        seen.insert(p.topic.to_string(), (payload, p.retain));
    }
}

#[tokio::test]
async fn sys_topics_are_published_retained_every_interval() {
    let mut config = config();
    config.sys_interval = 1;
    let broker = broker_with(config).await;
    let addr = broker.local_addrs()[0];
    let mut watcher = Client::connected(addr, V5, "sys-watcher", true).await;
    watcher
        .subscribe(1, "$SYS/broker/#", opts(QoS::AtMostOnce))
        .await;
    // Every topic is there, retained (RETAIN 1 on subscribe, [MQTT-3.3.1-9]), either stored
    // before the subscription or published by the first update after it.
    let mut seen = BTreeMap::new();
    collect_until(&mut watcher, &mut seen, |seen| {
        TOPICS.iter().all(|t| seen.contains_key(*t))
    })
    .await;
    let version = &seen["$SYS/broker/version"];
    assert_eq!(
        version,
        &(format!("tern version {}", env!("CARGO_PKG_VERSION")), true)
    );
    assert!(seen["$SYS/broker/uptime"].0.ends_with(" seconds"));
    assert!(
        seen["$SYS/broker/load/messages/received/1min"]
            .0
            .parse::<f64>()
            .is_ok()
    );
    // Stored in memory: they are retained messages of the broker.
    assert!(broker.stats().retained >= TOPICS.len());

    // Updated every interval: a second client shows in `clients/connected`, and the uptime
    // moves on. Forwarded updates carry RETAIN 0 (Retain As Published 0, [MQTT-3.3.1-12]).
    let _second = Client::connected(addr, V5, "sys-second", true).await;
    collect_until(&mut watcher, &mut seen, |seen| {
        seen["$SYS/broker/clients/connected"] == ("2".to_owned(), false)
            && seen["$SYS/broker/clients/maximum"].0 == "2"
    })
    .await;
    collect_until(&mut watcher, &mut seen, |seen| {
        let uptime = &seen["$SYS/broker/uptime"].0;
        uptime.trim_end_matches(" seconds").parse::<u64>().unwrap() >= 1
    })
    .await;
    // A late subscriber gets the current figures from the retained store.
    let mut late = Client::connected(addr, V5, "sys-late", true).await;
    late.subscribe(1, "$SYS/broker/clients/+", opts(QoS::AtMostOnce))
        .await;
    let mut figures = BTreeMap::new();
    collect_until(&mut late, &mut figures, |f| {
        f.contains_key("$SYS/broker/clients/total")
    })
    .await;
    assert!(figures.values().all(|(_, retain)| *retain));
}

#[tokio::test]
async fn sys_topics_cannot_be_published_by_clients() {
    let mut config = config();
    config.sys_interval = 1;
    let broker = broker_with(config).await;
    let addr = broker.local_addrs()[0];
    let mut client = Client::connected(addr, V5, "sys-forger", true).await;
    // Section 4.7.2: `$` topics are the server's; a client's PUBLISH there is refused (5.0:
    // 0x87 Not authorized) and the retained figure stays the broker's.
    let mut forged = publish("$SYS/broker/version", "forged", QoS::AtLeastOnce, Some(1));
    forged.retain = true;
    client.send(Packet::Publish(forged)).await;
    match client.recv().await {
        Packet::PubAck(a) => assert_eq!(a.reason_code, tern_codec::ReasonCode::NotAuthorized),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    client
        .subscribe(1, "$SYS/broker/version", opts(QoS::AtMostOnce))
        .await;
    let p = client.expect_publish().await;
    assert!(p.payload.starts_with(b"tern version "), "{p:?}");
}
