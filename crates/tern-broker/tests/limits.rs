//! The broker's limits, each over a real socket: connections (global and per listener),
//! topic length and levels, subscriptions per client, the inbound rate, an announced 256 MB
//! packet, the outgoing in-flight window. (The connect timeout and a CONNECT trickled one
//! byte a second are in `connect.rs`, keep alive, Receive Maximum and Maximum Packet Size in
//! `v5.rs`, mailboxes, write buffers and queues in `backpressure.rs`.)

mod support;

use std::time::{Duration, Instant};

use bytes::BytesMut;
use support::*;
use tern_broker::config::ListenerConfig;
use tern_codec::{Ack, Packet, ProtocolVersion, QoS, ReasonCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const V5: ProtocolVersion = ProtocolVersion::V5;
const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

/// Reads until the broker closes the connection; returns everything it sent.
async fn read_until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut received = Vec::new();
    tokio::time::timeout(TIMEOUT, async {
        let mut buf = [0u8; 256];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("closed in time");
    received
}

#[tokio::test]
async fn max_connections_closes_new_connections_at_accept() {
    let mut config = config();
    config.limits.max_connections = 2;
    let broker = broker_with(config).await;
    let addr = broker.local_addrs()[0];
    // A socket that has not sent CONNECT counts: it holds broker resources too.
    let idle = TcpStream::connect(addr).await.unwrap();
    let first = Client::connected(addr, V5, "first", true).await;
    wait_for_stats(&broker, "two open connections", |s| s.connections_open == 2).await;
    // The third is closed at once, before anything is read: no CONNACK, no bytes at all.
    let mut third = TcpStream::connect(addr).await.unwrap();
    let mut bytes = BytesMut::new();
    Packet::from(connect(V5, "third", true))
        .encode(V5, &mut bytes)
        .unwrap();
    // The write may fail or not, depending on when the close reaches us.
    let _ = third.write_all(&bytes).await;
    assert!(read_until_closed(&mut third).await.is_empty());
    assert_eq!(
        broker.stats().connections,
        2,
        "the refused one was never served"
    );
    // A place freed is a place taken.
    drop(idle);
    wait_for_stats(&broker, "one open connection", |s| s.connections_open == 1).await;
    let again = Client::connected(addr, V5, "again", true).await;
    first.disconnect().await;
    again.disconnect().await;
    wait_for_stats(&broker, "no open connection", |s| s.connections_open == 0).await;
}

#[tokio::test]
async fn listener_max_connections_limits_only_its_listener() {
    let mut config = config();
    let mut limited = ListenerConfig::new("127.0.0.1:0".parse().unwrap());
    limited.max_connections = 1;
    config.listeners = vec![limited, ListenerConfig::new("127.0.0.1:0".parse().unwrap())];
    let text = "[[listener]]\nbind = \"127.0.0.1:0\"\nmax_connections = 1\n";
    assert_eq!(
        tern_broker::Config::from_toml_str(text).unwrap().listeners[0].max_connections,
        1
    );
    let broker = broker_with(config).await;
    let (small, other) = (broker.local_addrs()[0], broker.local_addrs()[1]);
    let a = Client::connected(small, V311, "a", true).await;
    let mut refused = Client::open(small, V311).await;
    refused
        .send(Packet::from(connect(V311, "refused", true)))
        .await;
    refused.expect_closed().await;
    // The other listener has no limit of its own.
    let b = Client::connected(other, V311, "b", true).await;
    let c = Client::connected(other, V311, "c", true).await;
    assert_eq!(broker.stats().connections_open, 3);
    for client in [a, b, c] {
        client.disconnect().await;
    }
}

/// A broker with topics of at most 16 bytes and 3 levels.
async fn topic_limited_broker() -> tern_broker::BrokerHandle {
    let mut config = config();
    config.limits.max_topic_length = 16;
    config.limits.max_topic_levels = 3;
    broker_with(config).await
}

#[tokio::test]
async fn publish_topic_beyond_the_limits_is_refused_v5() {
    let broker = topic_limited_broker().await;
    let addr = broker.local_addrs()[0];
    let mut sub = Client::connected(addr, V5, "sub", true).await;
    sub.subscribe(1, "#", opts(QoS::AtLeastOnce)).await;
    let mut publisher = Client::connected(addr, V5, "pub", true).await;
    // At the limits (16 bytes, 3 levels): accepted and delivered.
    let at_limit = format!("a/b/{}", "c".repeat(12));
    assert_eq!(at_limit.len(), 16);
    let ack = publisher.publish_qos1(1, &at_limit, "ok", false).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    let p = sub.expect_publish().await;
    assert_eq!(p.topic.as_str(), at_limit);
    sub.send(Packet::PubAck(Ack::new(p.packet_id.unwrap())))
        .await;
    // Well formed but not accepted by this server: PUBACK 0x90 Topic Name invalid (MQTT 5.0
    // section 3.4.2.1), for 17 bytes and for 4 levels; PUBREC 0x90 for QoS 2 (3.5.2.1).
    for (id, topic) in [(2, format!("{at_limit}c")), (3, "a/b/c/d".to_owned())] {
        let ack = publisher.publish_qos1(id, &topic, "no", false).await;
        assert_eq!(ack.reason_code, ReasonCode::TopicNameInvalid, "{topic}");
    }
    publisher
        .send(Packet::Publish(publish(
            "a/b/c/d",
            "no",
            QoS::ExactlyOnce,
            Some(4),
        )))
        .await;
    match publisher.recv().await {
        Packet::PubRec(a) => assert_eq!(a.reason_code, ReasonCode::TopicNameInvalid),
        other => panic!("expected PUBREC, got {other:?}"),
    }
    // None of them was routed.
    assert!(sub.ping().await.is_empty());
    // QoS 0 has no acknowledgement: DISCONNECT 0x90, then the close.
    publisher
        .send(Packet::Publish(publish(
            "a/b/c/d",
            "no",
            QoS::AtMostOnce,
            None,
        )))
        .await;
    assert_eq!(
        publisher.expect_disconnect().await.reason_code,
        ReasonCode::TopicNameInvalid
    );
    publisher.expect_closed().await;
    assert!(sub.ping().await.is_empty());
}

#[tokio::test]
async fn publish_topic_beyond_the_limits_closes_a_v311_connection() {
    let broker = topic_limited_broker().await;
    let addr = broker.local_addrs()[0];
    let mut sub = Client::connected(addr, V311, "sub", true).await;
    sub.subscribe(1, "#", opts(QoS::AtLeastOnce)).await;
    // 3.1.1 has no reason code to say it: the connection is closed, whatever the QoS.
    for (qos, id) in [(QoS::AtMostOnce, None), (QoS::AtLeastOnce, Some(1))] {
        let mut publisher = Client::connected(addr, V311, "pub", true).await;
        publisher
            .send(Packet::Publish(publish(
                "aaaaaaaaaaaaaaaaaaaaaa",
                "no",
                qos,
                id,
            )))
            .await;
        publisher.expect_closed().await;
    }
    assert!(sub.ping().await.is_empty());
}

#[tokio::test]
async fn subscribe_filter_beyond_the_limits_is_refused() {
    let broker = topic_limited_broker().await;
    let addr = broker.local_addrs()[0];
    let q1 = opts(QoS::AtLeastOnce);
    let mut v5 = Client::connected(addr, V5, "v5", true).await;
    // [MQTT-3.9.3-1]: one reason code per filter, in order; a filter beyond the limits gets
    // 0x8F Topic Filter invalid and the others are granted. A shared subscription's levels
    // are those after its share name; its length is the whole string's.
    let suback = v5
        .subscribe_with(
            1,
            &[
                ("a/+/#", q1),
                ("a/b/c/d", q1),
                ("aaaaaaaaaaaaaaaaa", q1),
                ("$share/g/a/b/c", q1),
                ("$share/g/aaaaaaaaa", q1),
            ],
            None,
        )
        .await;
    assert_eq!(
        suback.reason_codes,
        [
            ReasonCode::GrantedQoS1,
            ReasonCode::TopicFilterInvalid,
            ReasonCode::TopicFilterInvalid,
            ReasonCode::GrantedQoS1,
            ReasonCode::TopicFilterInvalid,
        ]
    );
    // 3.1.1: 0x80 Failure [MQTT-3.9.3-2].
    let mut old = Client::connected(addr, V311, "old", true).await;
    let suback = old
        .subscribe_with(2, &[("a/b/c/d", q1), ("a/b", q1)], None)
        .await;
    assert_eq!(
        suback.reason_codes,
        [ReasonCode::UnspecifiedError, ReasonCode::GrantedQoS1]
    );
    assert_eq!(broker.stats().subscriptions, 3);
}

#[tokio::test]
async fn will_topic_beyond_the_limits_refuses_the_connect() {
    let broker = topic_limited_broker().await;
    let addr = broker.local_addrs()[0];
    // 5.0: CONNACK 0x90 Topic Name invalid (section 3.2.2.2), then the close [MQTT-3.2.2-7].
    let mut c = connect(V5, "w5", true);
    c.will = Some(will("a/b/c/d", "gone"));
    let (mut client, connack) = Client::connect_with(addr, c).await;
    assert_eq!(connack.reason_code, ReasonCode::TopicNameInvalid);
    client.expect_closed().await;
    // 3.1.1: return code 5 Not authorized, the closest of its six.
    let mut c = connect(V311, "w311", true);
    c.will = Some(will("aaaaaaaaaaaaaaaaaaaaaaa", "gone"));
    let (mut client, connack) = Client::connect_with(addr, c).await;
    assert_eq!(connack.reason_code, ReasonCode::NotAuthorized);
    client.expect_closed().await;
    assert_eq!(broker.stats().sessions, 0);
}

#[tokio::test]
async fn max_subscriptions_per_client() {
    let mut config = config();
    config.limits.max_subscriptions = 2;
    let broker = broker_with(config).await;
    let addr = broker.local_addrs()[0];
    let q0 = opts(QoS::AtMostOnce);
    let q1 = opts(QoS::AtLeastOnce);
    let mut client = Client::connected(addr, V5, "many", true).await;
    // Two fit; a third new filter gets 0x97 Quota exceeded (section 3.9.3).
    let suback = client
        .subscribe_with(1, &[("a", q0), ("b", q0), ("c", q0)], None)
        .await;
    assert_eq!(
        suback.reason_codes,
        [
            ReasonCode::Success,
            ReasonCode::Success,
            ReasonCode::QuotaExceeded
        ]
    );
    // Replacing an existing subscription is not a new one [MQTT-3.8.4-3].
    assert_eq!(
        client.subscribe(2, "a", q1).await.reason_codes,
        [ReasonCode::GrantedQoS1]
    );
    // Room again after an UNSUBSCRIBE.
    client.unsubscribe(3, &["b"]).await;
    assert_eq!(
        client.subscribe(4, "c", q0).await.reason_codes,
        [ReasonCode::Success]
    );
    assert_eq!(
        client.subscribe(5, "d", q0).await.reason_codes,
        [ReasonCode::QuotaExceeded]
    );
    // The limit is per client.
    let mut other = Client::connected(addr, V311, "other", true).await;
    let suback = other
        .subscribe_with(1, &[("a", q0), ("b", q0), ("c", q0)], None)
        .await;
    // 3.1.1: 0x80 Failure.
    assert_eq!(
        suback.reason_codes,
        [
            ReasonCode::Success,
            ReasonCode::Success,
            ReasonCode::UnspecifiedError
        ]
    );
    assert_eq!(broker.stats().subscriptions, 4);
}

/// A 5.0 CONNECT with keep alive 1 second.
fn short_keep_alive(client_id: &str) -> tern_codec::Connect {
    let mut c = connect(V5, client_id, true);
    c.keep_alive = 1;
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_byte_rate_pauses_reading_and_drops_nothing() {
    let mut config = config();
    config.limits.max_inbound_bytes_per_second = 1000;
    let broker = broker_with(config).await;
    let addr = broker.local_addrs()[0];
    let mut sub = Client::connected(addr, V5, "sub", true).await;
    sub.subscribe(1, "rate/#", opts(QoS::AtLeastOnce)).await;
    let (mut publisher, connack) = Client::connect_with(addr, short_keep_alive("pub")).await;
    assert_eq!(connack.reason_code, ReasonCode::Success);
    // Two QoS 1 messages of 2.5 kB in one write: 5 kB at 1000 bytes a second (a bucket of
    // one second's worth) take the broker at least 4 s to read, with gaps of more than the
    // 1.5 s keep-alive allowance between complete packets.
    let started = Instant::now();
    let mut bytes = BytesMut::new();
    for id in 1..=2 {
        Packet::Publish(big_publish(
            "rate/t",
            &format!("m{id}"),
            2500,
            QoS::AtLeastOnce,
            Some(id),
        ))
        .encode(V5, &mut bytes)
        .unwrap();
    }
    publisher.send_raw(&bytes).await;
    // Nothing is dropped and the client is not blamed for the broker's pause: both are
    // acknowledged and delivered, no DISCONNECT 0x8D.
    for id in 1..=2 {
        match publisher.recv().await {
            Packet::PubAck(a) => assert_eq!(a.packet_id, pid(id)),
            other => panic!("expected PUBACK, got {other:?}"),
        }
        let p = sub.expect_publish().await;
        assert_eq!(tag_of(&p), format!("m{id}"));
        sub.send(Packet::PubAck(Ack::new(p.packet_id.unwrap())))
            .await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(3900),
        "{:?}",
        started.elapsed()
    );
    assert!(publisher.ping().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_message_rate_pauses_reading_and_drops_nothing() {
    let mut config = config();
    config.limits.max_inbound_messages_per_second = 2;
    let broker = broker_with(config).await;
    let addr = broker.local_addrs()[0];
    let (mut publisher, _) = Client::connect_with(addr, short_keep_alive("pub")).await;
    // Six QoS 1 messages at once: all are taken and acknowledged (nothing is dropped)...
    let started = Instant::now();
    let mut bytes = BytesMut::new();
    for id in 1..=6 {
        Packet::Publish(publish("rate/t", "m", QoS::AtLeastOnce, Some(id)))
            .encode(V5, &mut bytes)
            .unwrap();
    }
    publisher.send_raw(&bytes).await;
    for id in 1..=6 {
        match publisher.recv().await {
            Packet::PubAck(a) => assert_eq!(a.packet_id, pid(id)),
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }
    // ...but they leave a debt of four seconds' worth beyond the bucket's two: the broker
    // reads nothing more (not even this PINGREQ) until it is paid back, 2.5 s from the start
    // at the least, and does not count that pause against the 1 s keep alive.
    assert!(publisher.ping().await.is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(2400),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(broker.stats().messages_received, 6);
}

#[tokio::test]
async fn announced_256_mb_packet_is_refused_without_allocating_it() {
    // The default configuration: a Maximum Packet Size of 1 MiB.
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    // A PUBLISH header announcing 268,435,455 bytes (256 MB): refused from the header alone
    // with DISCONNECT 0x95 Packet too large ([MQTT-3.2.2-15], section 3.2.2.3.6).
    let mut client = Client::connected(addr, V5, "big", true).await;
    client.send_raw(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F]).await;
    assert_eq!(
        client.expect_disconnect().await.reason_code,
        ReasonCode::PacketTooLarge
    );
    client.expect_closed().await;
    // 3.1.1 has no DISCONNECT from the server: closed.
    let mut client = Client::connected(addr, V311, "big311", true).await;
    client.send_raw(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F]).await;
    client.expect_closed().await;
    // A CONNECT announcing as much, as the very first bytes: closed.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(&[0x10, 0xFF, 0xFF, 0xFF, 0x7F])
        .await
        .unwrap();
    read_until_closed(&mut stream).await;
    // Nothing like the announced size was reserved for any of them: the largest read buffer
    // is the few kilobytes every connection reads with.
    let peak = broker.stats().read_buffer_peak_bytes;
    assert!(peak > 0 && peak < 64 << 10, "read buffer peak {peak}");
}

#[tokio::test]
async fn max_inflight_holds_back_qos1_beyond_the_window() {
    let mut config = config();
    config.session.max_inflight = 2;
    let broker = broker_with(config).await;
    let addr = broker.local_addrs()[0];
    // 3.1.1 has no Receive Maximum: the broker's window is the only bound.
    let mut sub = Client::connected(addr, V311, "sub", true).await;
    sub.subscribe(1, "w/#", opts(QoS::AtLeastOnce)).await;
    for payload in ["1", "2", "3", "4"] {
        broker
            .publish(publish("w/t", payload, QoS::AtLeastOnce, None))
            .unwrap();
    }
    // Two in flight; the others wait in the session's queue.
    let first: Vec<_> = sub
        .ping()
        .await
        .into_iter()
        .map(|p| match p {
            Packet::Publish(p) => p,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(first.len(), 2);
    assert_eq!(broker.stats().queued_messages, 2);
    // Each acknowledgement lets one more go.
    sub.send(Packet::PubAck(Ack::new(first[0].packet_id.unwrap())))
        .await;
    assert_eq!(&sub.expect_publish().await.payload[..], b"3");
    assert!(sub.ping().await.is_empty());
}
