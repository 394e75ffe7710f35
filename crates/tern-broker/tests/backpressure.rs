//! Slow consumers and memory bounds: mailboxes and write buffers stay within their limits
//! whatever a client does; a QoS 0 subscriber that keeps up at its own pace loses nothing,
//! and one that is stuck sheds QoS 0 (dropped and counted); QoS 1/2 are never dropped
//! silently: the publisher is held back, a subscriber that does not read is disconnected after
//! the stall timeout and its session keeps the messages, and a full offline queue is refused
//! visibly.

mod support;

use std::collections::BTreeSet;

use support::*;
use tern_broker::{BrokerHandle, Config, Stats};
use tern_codec::{Ack, Packet, ProtocolVersion, QoS, ReasonCode};

const V5: ProtocolVersion = ProtocolVersion::V5;
const PAYLOAD: usize = 16 << 10;
const MAILBOX: usize = 4;
const WRITE_BUFFER: usize = 16 << 10;

fn slow_config(stall_timeout: u64) -> Config {
    let mut config = config();
    config.sys_interval = 0;
    config.mailbox.max_messages = MAILBOX;
    config.backpressure.write_buffer = WRITE_BUFFER;
    config.backpressure.stall_timeout = stall_timeout;
    config
}

/// The subscriber's socket takes no more: the broker's write buffer for it is over its limit,
/// and QoS 0 overflow was dropped.
fn pipeline_full(stats: &Stats) -> bool {
    stats.write_buffer_bytes >= WRITE_BUFFER as u64 && stats.dropped_qos0 > 0
}

/// Keeps the subscriber's pipeline (subscribed to `topic`'s filter) full: in-process QoS 0
/// messages from a task until `done` holds for the stats (the kernel's socket buffers grow
/// while they are filled, so one burst is not enough). Returns once [`pipeline_full`], with
/// the task, which answers the number of messages it published.
async fn keep_full(
    broker: &BrokerHandle,
    topic: &'static str,
    done: impl Fn(&Stats) -> bool + Send + 'static,
) -> tokio::task::JoinHandle<u64> {
    let filler = broker.clone();
    let task = tokio::spawn(async move {
        let mut sent = 0;
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while !done(&filler.stats()) && tokio::time::Instant::now() < deadline {
            filler
                .publish(big_publish(topic, "fill", PAYLOAD, QoS::AtMostOnce, None))
                .unwrap();
            sent += 1;
            // Let the connection tasks run.
            tokio::task::yield_now().await;
        }
        sent
    });
    wait_for_stats(broker, "a full pipeline", pipeline_full).await;
    task
}

fn persistent(client_id: &str, clean_start: bool) -> tern_codec::Connect {
    let mut c = connect(V5, client_id, clean_start);
    c.properties.session_expiry_interval = Some(300);
    c
}

/// Publishes QoS 1 messages `slow/q1` tagged `q1-1` to `q1-count` from a task, then collects
/// their acknowledgements.
fn spawn_qos1_publisher(
    mut publisher: Client,
    topic: &'static str,
    count: u16,
) -> tokio::task::JoinHandle<Vec<Ack>> {
    tokio::spawn(async move {
        for i in 1..=count {
            let p = big_publish(
                topic,
                &format!("q1-{i}"),
                PAYLOAD,
                QoS::AtLeastOnce,
                Some(i),
            );
            publisher.send(Packet::Publish(p)).await;
        }
        let mut acks = Vec::new();
        while acks.len() < usize::from(count) {
            match publisher.recv().await {
                Packet::PubAck(a) => acks.push(a),
                other => panic!("expected PUBACK, got {other:?}"),
            }
        }
        acks
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_subscriber_memory_stays_bounded_and_qos1_is_never_lost() {
    let config = slow_config(30);
    let broker = broker_with(config.clone()).await;
    let addr = broker.local_addrs()[0];
    let mut sub = Client::connect_small(addr, connect(V5, "slow-sub", true)).await;
    sub.subscribe(1, "slow/#", opts(QoS::AtLeastOnce)).await;
    // From here the subscriber reads nothing until told otherwise.
    let mut publisher = Client::connected(addr, V5, "fast-pub", true).await;

    // QoS 0 until the subscriber's socket takes no more (the broker's write buffer for it is
    // over its limit) and the broker drops.
    let mut sent_qos0: u64 = 0;
    while !pipeline_full(&broker.stats()) {
        assert!(sent_qos0 < 5000, "no QoS 0 drop: {:?}", broker.stats());
        let p = big_publish("slow/q0", "q0", PAYLOAD, QoS::AtMostOnce, None);
        publisher.send(Packet::Publish(p)).await;
        sent_qos0 += 1;
        if sent_qos0.is_multiple_of(16) {
            // A round trip through the publisher's connection paces the loop.
            assert!(publisher.ping().await.is_empty());
        }
    }
    assert!(publisher.ping().await.is_empty());

    // QoS 1: the broker holds the publisher back instead of dropping or queueing without end.
    let filler = keep_full(&broker, "slow/fill", |s| s.publisher_waits > 0).await;
    const QOS1: u16 = 12;
    let task = spawn_qos1_publisher(publisher, "slow/q1", QOS1);
    let stats = wait_for_stats(&broker, "a publisher held back", |s| s.publisher_waits > 0).await;
    sent_qos0 += filler.await.unwrap();
    assert!(
        !task.is_finished(),
        "a withheld acknowledgement waits for the subscriber"
    );

    // Memory stays within the configured bounds: one message beyond the mailbox limit per
    // waiting publisher, one mailbox batch beyond the write buffer.
    let batch = (MAILBOX + 1) * (PAYLOAD + 64);
    assert!(
        stats.mailbox_peak_messages <= MAILBOX as u64 + 1,
        "{stats:?}"
    );
    assert!(stats.mailbox_peak_bytes <= batch as u64, "{stats:?}");
    assert!(
        stats.write_buffer_peak_bytes <= (WRITE_BUFFER + batch) as u64,
        "{stats:?}"
    );
    assert!(
        stats.queued_peak_messages <= config.session.max_queued_messages as u64,
        "{stats:?}"
    );
    assert_eq!(stats.dropped_queue_full, 0);

    // The subscriber reads at last: every QoS 1 message arrives, in order, and the held-back
    // publisher gets its acknowledgements.
    let mut received_qos0 = 0;
    let mut received_qos1 = Vec::new();
    while received_qos1.len() < usize::from(QOS1) {
        let p = sub.expect_publish().await;
        match p.qos {
            QoS::AtMostOnce => received_qos0 += 1,
            _ => {
                received_qos1.push(tag_of(&p));
                sub.send(Packet::PubAck(Ack::new(p.packet_id.unwrap())))
                    .await;
            }
        }
    }
    let expected: Vec<String> = (1..=QOS1).map(|i| format!("q1-{i}")).collect();
    assert_eq!(received_qos1, expected);
    let acks = tokio::time::timeout(TIMEOUT, task)
        .await
        .expect("acknowledged in time")
        .unwrap();
    assert!(acks.iter().all(|a| a.reason_code == ReasonCode::Success));
    assert!(sub.ping().await.is_empty());

    // Every QoS 0 message was either delivered or dropped and counted.
    let stats = broker.stats();
    assert_eq!(received_qos0 + stats.dropped_qos0, sent_qos0, "{stats:?}");
    assert_eq!((stats.slow_consumers, stats.dropped_queue_full), (0, 0));
    assert_eq!(stats.mailbox_messages, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_stops_reading_is_disconnected_after_the_stall_timeout() {
    let broker = broker_with(slow_config(1)).await;
    let addr = broker.local_addrs()[0];
    let mut sub = Client::connect_small(addr, persistent("stalled", true)).await;
    sub.subscribe(1, "stall/#", opts(QoS::AtMostOnce)).await;
    // Its socket soon takes nothing: after the stall timeout the broker closes it, and the
    // session is kept offline as its expiry says.
    let filler = keep_full(&broker, "stall/t", |s| s.slow_consumers > 0).await;
    wait_for_stats(&broker, "the slow consumer disconnected", |s| {
        s.slow_consumers == 1 && s.clients_connected == 0
    })
    .await;
    filler.await.unwrap();
    assert_eq!(broker.stats().sessions, 1);
    while sub.recv_or_closed().await.is_some() {}
    let (_, connack) = Client::connect_with(addr, persistent("stalled", false)).await;
    assert!(connack.session_present);
    assert_eq!(broker.stats().write_buffer_bytes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_back_publisher_goes_on_when_the_slow_subscriber_is_disconnected() {
    let broker = broker_with(slow_config(1)).await;
    let addr = broker.local_addrs()[0];
    let mut sub = Client::connect_small(addr, persistent("laggard", true)).await;
    sub.subscribe(1, "bp/#", opts(QoS::AtLeastOnce)).await;
    let filler = keep_full(&broker, "bp/fill", |s| s.slow_consumers > 0).await;
    let publisher = Client::connected(addr, V5, "bp-pub", true).await;
    const COUNT: u16 = 16;
    let task = spawn_qos1_publisher(publisher, "bp/t", COUNT);
    // The subscriber never reads: within the stall timeout the publisher is held back, then
    // the subscriber is disconnected and the publisher gets every acknowledgement.
    let acks = tokio::time::timeout(TIMEOUT, task)
        .await
        .expect("publisher released in time")
        .unwrap();
    assert!(acks.iter().all(|a| a.reason_code == ReasonCode::Success));
    let stats = wait_for_stats(&broker, "the slow consumer disconnected", |s| {
        s.slow_consumers == 1
    })
    .await;
    filler.await.unwrap();
    assert!(stats.publisher_waits > 0, "{stats:?}");
    assert_eq!(stats.dropped_queue_full, 0);
    while sub.recv_or_closed().await.is_some() {}

    // Nothing was lost: the session kept every message for the next connection (those in
    // flight are resent with DUP [MQTT-4.4.0-1]).
    let (mut sub, connack) = Client::connect_with(addr, persistent("laggard", false)).await;
    assert!(connack.session_present);
    let mut tags = BTreeSet::new();
    while tags.len() < usize::from(COUNT) {
        let p = sub.expect_publish().await;
        assert_eq!(
            p.qos,
            QoS::AtLeastOnce,
            "QoS 0 messages are not kept offline"
        );
        tags.insert(tag_of(&p));
        sub.send(Packet::PubAck(Ack::new(p.packet_id.unwrap())))
            .await;
    }
    let expected: BTreeSet<String> = (1..=COUNT).map(|i| format!("q1-{i}")).collect();
    assert_eq!(tags, expected);
    assert!(sub.ping().await.is_empty());
}

#[tokio::test]
async fn full_offline_queue_is_refused_with_quota_exceeded() {
    let mut config = config();
    config.session.max_queued_messages = 2;
    let broker = broker_with(config).await;
    let addr = broker.local_addrs()[0];
    let (mut sub, _) = Client::connect_with(addr, persistent("away", true)).await;
    sub.subscribe(1, "q/#", opts(QoS::AtLeastOnce)).await;
    sub.disconnect().await;

    let mut publisher = Client::connected(addr, V5, "q-pub", true).await;
    let mut answers = Vec::new();
    for i in 1..=3 {
        answers.push(
            publisher
                .publish_qos1(i, "q/a", "m", false)
                .await
                .reason_code,
        );
    }
    // The third finds the session's queue full: refused visibly, PUBACK 0x97 Quota exceeded
    // (MQTT 5.0 section 3.4.2.1), counted.
    assert_eq!(
        answers,
        [
            ReasonCode::Success,
            ReasonCode::Success,
            ReasonCode::QuotaExceeded
        ]
    );
    assert_eq!(broker.stats().dropped_queue_full, 1);
    // QoS 2: PUBREC 0x97, which ends the exchange (section 4.3.3).
    publisher
        .send(Packet::Publish(publish(
            "q/a",
            "m",
            QoS::ExactlyOnce,
            Some(4),
        )))
        .await;
    match publisher.recv().await {
        Packet::PubRec(a) => assert_eq!(a.reason_code, ReasonCode::QuotaExceeded),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    // When another subscriber takes it, the publisher hears Success.
    let mut other = Client::connected(addr, V5, "q-other", true).await;
    other.subscribe(1, "q/b", opts(QoS::AtMostOnce)).await;
    let ack = publisher.publish_qos1(5, "q/b", "m", false).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    assert_eq!(&other.expect_publish().await.payload[..], b"m");
    // A 3.1.1 publisher cannot be told; the refusal is counted (and logged) all the same.
    let mut old = Client::connected(addr, ProtocolVersion::V3_1_1, "q-old", true).await;
    old.publish_qos1(1, "q/a", "m", false).await;
    assert_eq!(broker.stats().dropped_queue_full, 4);

    // The two queued messages are delivered when the client comes back.
    let (mut sub, connack) = Client::connect_with(addr, persistent("away", false)).await;
    assert!(connack.session_present);
    for _ in 0..2 {
        let p = sub.expect_publish().await;
        sub.send(Packet::PubAck(Ack::new(p.packet_id.unwrap())))
            .await;
    }
    assert!(sub.ping().await.is_empty());
}

/// Publishes `count` QoS 0 messages of [`PAYLOAD`] bytes tagged `m0`.. from a task.
fn spawn_qos0_publisher(
    mut publisher: Client,
    topic: &'static str,
    count: usize,
) -> tokio::task::JoinHandle<Client> {
    tokio::spawn(async move {
        for i in 0..count {
            let p = big_publish(topic, &format!("m{i}"), PAYLOAD, QoS::AtMostOnce, None);
            publisher.send(Packet::Publish(p)).await;
        }
        publisher
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qos0_subscriber_that_keeps_up_at_its_own_pace_loses_nothing() {
    let mut config = slow_config(30);
    config.backpressure.qos0_wait_ms = 20_000;
    let broker = broker_with(config).await;
    let addr = broker.local_addrs()[0];
    let mut sub = Client::connect_small(addr, connect(V5, "steady", true)).await;
    sub.subscribe(1, "steady/#", opts(QoS::AtMostOnce)).await;
    // 8 MiB, far more than the socket buffers, the write buffer and the mailbox hold: the
    // publisher outruns the subscriber, which pauses every 32 messages.
    const COUNT: usize = 512;
    let publisher = Client::connected(addr, V5, "steady-pub", true).await;
    let task = spawn_qos0_publisher(publisher, "steady/t", COUNT);
    let mut tags = BTreeSet::new();
    while tags.len() < COUNT {
        let p = sub.expect_publish().await;
        assert!(tags.insert(tag_of(&p)), "a duplicate {}", tag_of(&p));
        if tags.len().is_multiple_of(32) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    // Back-pressure, not loss: the publisher was held back while the mailbox was full.
    let stats = broker.stats();
    assert_eq!(stats.dropped_qos0, 0, "{stats:?}");
    assert!(stats.publisher_waits > 0, "{stats:?}");
    assert_eq!(stats.slow_consumers, 0, "{stats:?}");
    task.await.unwrap().disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_qos0_subscriber_sheds_and_holds_its_publisher_back_only_briefly() {
    let mut config = slow_config(30);
    config.backpressure.qos0_wait_ms = 200;
    let broker = broker_with(config).await;
    let addr = broker.local_addrs()[0];
    // Never reads.
    let mut stuck = Client::connect_small(addr, connect(V5, "stuck", true)).await;
    stuck.subscribe(1, "shed/#", opts(QoS::AtMostOnce)).await;
    let mut fast = Client::connected(addr, V5, "fast", true).await;
    fast.subscribe(1, "shed/#", opts(QoS::AtMostOnce)).await;
    const COUNT: usize = 512;
    let publisher = Client::connected(addr, V5, "shed-pub", true).await;
    let task = spawn_qos0_publisher(publisher, "shed/t", COUNT);
    // The publisher waits for the stuck mailbox for 200 ms, not the 30 s stall timeout: then
    // the stuck subscriber sheds, and the subscriber that reads gets every message.
    let mut tags = BTreeSet::new();
    while tags.len() < COUNT {
        let p = fast.expect_publish().await;
        tags.insert(tag_of(&p));
    }
    let stats = broker.stats();
    assert!(stats.dropped_qos0 > 0, "{stats:?}");
    assert!(stats.publisher_waits > 0, "{stats:?}");
    // Shedding is not a disconnection.
    assert_eq!(stats.slow_consumers, 0, "{stats:?}");
    assert_eq!(stats.clients_connected, 3, "{stats:?}");
    task.await.unwrap().disconnect().await;
    drop(stuck);
}
