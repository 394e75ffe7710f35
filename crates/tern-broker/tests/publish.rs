//! PUBLISH routing: QoS 0/1/2, downgrade, overlapping subscriptions, SUBSCRIBE/UNSUBSCRIBE,
//! shared subscriptions and `$` topics.

mod support;

use support::*;
use tern_codec::{Ack, Packet, ProtocolVersion, QoS, ReasonCode};

const V5: ProtocolVersion = ProtocolVersion::V5;

#[tokio::test]
async fn qos0_qos1_qos2_are_routed_with_downgrade() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let mut sub = Client::connected(addr, V5, "sub", true).await;
    let mut publisher = Client::connected(addr, V5, "pub", true).await;
    // [MQTT-3.8.4-1], [MQTT-3.8.4-2]: SUBACK with the same packet identifier; one reason code
    // per filter [MQTT-3.8.4-6] showing the granted QoS [MQTT-3.8.4-7], in the filters' order
    // [MQTT-3.9.3-1].
    let suback = sub
        .subscribe_with(
            1,
            &[
                ("q0/#", opts(QoS::AtMostOnce)),
                ("q2/#", opts(QoS::ExactlyOnce)),
            ],
            None,
        )
        .await;
    assert_eq!(
        suback.reason_codes,
        [ReasonCode::Success, ReasonCode::GrantedQoS2]
    );

    // QoS 0 in, QoS 0 out.
    publisher
        .send(Packet::Publish(publish(
            "q2/a",
            "zero",
            QoS::AtMostOnce,
            None,
        )))
        .await;
    let p = sub.expect_publish().await;
    assert_eq!(
        (p.topic.as_str(), &p.payload[..], p.qos),
        ("q2/a", &b"zero"[..], QoS::AtMostOnce)
    );

    // QoS 1 in: PUBACK to the publisher, QoS 1 out, acknowledged by the subscriber.
    let ack = publisher.publish_qos1(7, "q2/b", "one", false).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);
    let p = sub.expect_publish().await;
    assert_eq!(p.qos, QoS::AtLeastOnce);
    sub.send(Packet::PubAck(Ack::new(p.packet_id.unwrap())))
        .await;

    // QoS 2 in: PUBREC/PUBREL/PUBCOMP with the publisher, QoS 2 out.
    publisher
        .send(Packet::Publish(publish(
            "q2/c",
            "two",
            QoS::ExactlyOnce,
            Some(8),
        )))
        .await;
    assert!(matches!(publisher.recv().await, Packet::PubRec(a) if a.packet_id == pid(8)));
    publisher.send(Packet::PubRel(Ack::new(pid(8)))).await;
    assert!(matches!(publisher.recv().await, Packet::PubComp(a) if a.packet_id == pid(8)));
    let p = sub.expect_publish().await;
    assert_eq!((p.qos, &p.payload[..]), (QoS::ExactlyOnce, &b"two"[..]));
    let id = p.packet_id.unwrap();
    sub.send(Packet::PubRec(Ack::new(id))).await;
    assert!(matches!(sub.recv().await, Packet::PubRel(a) if a.packet_id == id));
    sub.send(Packet::PubComp(Ack::new(id))).await;

    // [MQTT-3.8.4-8]: QoS 2 published to a QoS 0 subscription is delivered at QoS 0.
    publisher
        .send(Packet::Publish(publish(
            "q0/x",
            "down",
            QoS::ExactlyOnce,
            Some(9),
        )))
        .await;
    assert!(matches!(publisher.recv().await, Packet::PubRec(_)));
    publisher.send(Packet::PubRel(Ack::new(pid(9)))).await;
    assert!(matches!(publisher.recv().await, Packet::PubComp(_)));
    let p = sub.expect_publish().await;
    assert_eq!((p.qos, p.packet_id), (QoS::AtMostOnce, None));

    assert!(sub.ping().await.is_empty());
    sub.disconnect().await;
    publisher.disconnect().await;
}

#[tokio::test]
async fn overlapping_subscriptions_deliver_once_at_highest_qos_with_all_identifiers() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let mut sub = Client::connected(addr, V5, "overlap", true).await;
    sub.subscribe_with(1, &[("a/+", opts(QoS::AtMostOnce))], Some(11))
        .await;
    sub.subscribe_with(2, &[("a/#", opts(QoS::AtLeastOnce))], Some(22))
        .await;
    sub.subscribe_with(3, &[("#", opts(QoS::AtMostOnce))], None)
        .await;
    let mut publisher = Client::connected(addr, V5, "overlap-pub", true).await;
    publisher.publish_qos1(1, "a/b", "x", false).await;
    // [MQTT-3.3.4-2]: one message at the maximum QoS of the matching subscriptions;
    // [MQTT-3.3.4-3], [MQTT-3.3.4-4]: one copy carries the identifiers of every matching
    // subscription.
    let p = sub.expect_publish().await;
    assert_eq!(p.qos, QoS::AtLeastOnce);
    let mut ids: Vec<u32> = p
        .properties
        .subscription_identifiers
        .iter()
        .map(|i| i.get())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [11, 22]);
    sub.send(Packet::PubAck(Ack::new(p.packet_id.unwrap())))
        .await;
    // Exactly once: nothing else arrives before the PINGRESP.
    assert!(sub.ping().await.is_empty());
}

#[tokio::test]
async fn unsubscribe_stops_delivery() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let mut sub = Client::connected(addr, V5, "unsub", true).await;
    sub.subscribe(1, "t/1", opts(QoS::AtMostOnce)).await;
    // [MQTT-3.10.4-4], [MQTT-3.10.4-5]: UNSUBACK with the same packet identifier, and one
    // reason code per filter [MQTT-3.11.3-1].
    let unsuback = sub.unsubscribe(2, &["t/1", "t/never"]).await;
    assert_eq!(unsuback.packet_id, pid(2));
    assert_eq!(
        unsuback.reason_codes,
        [ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
    );
    // [MQTT-3.10.4-2]: no new messages for the deleted subscription.
    broker
        .publish(publish("t/1", "late", QoS::AtMostOnce, None))
        .unwrap();
    assert!(sub.ping().await.is_empty());

    // 3.1.1: UNSUBACK without reason codes.
    let mut old = Client::connected(addr, ProtocolVersion::V3_1_1, "unsub311", true).await;
    old.subscribe(1, "t/2", opts(QoS::AtLeastOnce)).await;
    assert!(old.unsubscribe(3, &["t/2"]).await.reason_codes.is_empty());
}

#[tokio::test]
async fn invalid_filter_is_refused_in_suback() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let mut sub = Client::connected(addr, V5, "badfilter", true).await;
    // [MQTT-4.7.1-1]: `#` must be last; the filter is refused with 0x8F, the others granted.
    let suback = sub
        .subscribe_with(
            1,
            &[
                ("a/#/b", opts(QoS::AtLeastOnce)),
                ("ok", opts(QoS::AtLeastOnce)),
            ],
            None,
        )
        .await;
    assert_eq!(
        suback.reason_codes,
        [ReasonCode::TopicFilterInvalid, ReasonCode::GrantedQoS1]
    );
    let mut old = Client::connected(addr, ProtocolVersion::V3_1_1, "badfilter311", true).await;
    let suback = old.subscribe(1, "x/+y", opts(QoS::AtMostOnce)).await;
    assert_eq!(suback.reason_codes, [ReasonCode::UnspecifiedError]);
}

#[tokio::test]
async fn v311_and_v5_clients_exchange_messages() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let mut old = Client::connected(addr, ProtocolVersion::V3_1_1, "old", true).await;
    old.subscribe(1, "mixed/#", opts(QoS::AtLeastOnce)).await;
    let mut new = Client::connected(addr, V5, "new", true).await;
    new.publish_qos1(1, "mixed/t", "hello", false).await;
    let p = old.expect_publish().await;
    assert_eq!((p.qos, &p.payload[..]), (QoS::AtLeastOnce, &b"hello"[..]));
    old.send(Packet::PubAck(Ack::new(p.packet_id.unwrap())))
        .await;
}

#[tokio::test]
async fn no_matching_subscribers_is_reported_to_v5_publishers() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let mut publisher = Client::connected(addr, V5, "lonely", true).await;
    // PUBACK 0x10 No matching subscribers (MQTT 5.0 section 3.4.2.1).
    let ack = publisher.publish_qos1(1, "nobody/here", "x", false).await;
    assert_eq!(ack.reason_code, ReasonCode::NoMatchingSubscribers);
}

#[tokio::test]
async fn clients_cannot_publish_to_dollar_topics() {
    // Without the broker's own `$SYS` updates, so that only this test's messages arrive.
    let mut config = config();
    config.sys_interval = 0;
    let broker = broker_with(config).await;
    let addr = broker.local_addrs()[0];
    let mut sub = Client::connected(addr, V5, "sys-sub", true).await;
    sub.subscribe(1, "$SYS/#", opts(QoS::AtLeastOnce)).await;
    sub.subscribe(2, "#", opts(QoS::AtLeastOnce)).await;
    let mut publisher = Client::connected(addr, V5, "sys-pub", true).await;
    // Section 4.7.2: `$` topics are the server's; the broker refuses them from clients.
    let ack = publisher.publish_qos1(1, "$SYS/fake", "x", false).await;
    assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
    assert!(sub.ping().await.is_empty());
    // The broker itself may publish there; `#` does not match it [MQTT-4.7.2-1].
    assert_eq!(
        broker
            .publish(publish("$SYS/uptime", "1", QoS::AtMostOnce, None))
            .unwrap(),
        1
    );
    let p = sub.expect_publish().await;
    assert_eq!(p.topic.as_str(), "$SYS/uptime");
    assert!(p.properties.subscription_identifiers.is_empty());
    assert!(sub.ping().await.is_empty());
}

#[tokio::test]
async fn shared_subscription_delivers_round_robin() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let mut a = Client::connected(addr, V5, "worker-a", true).await;
    let mut b = Client::connected(addr, V5, "worker-b", true).await;
    let mut plain = Client::connected(addr, V5, "watcher", true).await;
    a.subscribe(1, "$share/workers/jobs/+", opts(QoS::AtLeastOnce))
        .await;
    b.subscribe(1, "$share/workers/jobs/+", opts(QoS::AtLeastOnce))
        .await;
    plain.subscribe(1, "jobs/#", opts(QoS::AtMostOnce)).await;
    for _ in 0..4 {
        broker
            .publish(publish("jobs/x", "job", QoS::AtLeastOnce, None))
            .unwrap();
    }
    // Section 4.8.2: each message goes to exactly one member of the group; round robin
    // alternates; the non-shared subscription still gets every message.
    let mut counts = [0; 2];
    for (i, client) in [&mut a, &mut b].into_iter().enumerate() {
        for packet in client.ping().await {
            let Packet::Publish(p) = packet else {
                panic!("{packet:?}")
            };
            assert_eq!(p.qos, QoS::AtLeastOnce);
            client
                .send(Packet::PubAck(Ack::new(p.packet_id.unwrap())))
                .await;
            counts[i] += 1;
        }
    }
    assert_eq!(counts, [2, 2]);
    assert_eq!(plain.ping().await.len(), 4);
}

#[tokio::test]
async fn no_local_on_shared_subscription_is_a_protocol_error() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let mut client = Client::connected(addr, V5, "nolocal-shared", true).await;
    let mut options = opts(QoS::AtMostOnce);
    options.no_local = true;
    client
        .send(Packet::Subscribe(tern_codec::Subscribe {
            packet_id: pid(1),
            properties: Default::default(),
            subscriptions: tern_codec::smallvec::smallvec![tern_codec::Subscription {
                filter: s("$share/g/t"),
                options,
            }],
        }))
        .await;
    // [MQTT-3.8.3-4]: a Protocol Error, so DISCONNECT 0x82 and close [MQTT-4.13.1-1].
    assert_eq!(
        client.expect_disconnect().await.reason_code,
        ReasonCode::ProtocolError
    );
    client.expect_closed().await;
}

#[tokio::test]
async fn no_local_skips_own_messages() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let mut client = Client::connected(addr, V5, "self", true).await;
    let mut options = opts(QoS::AtMostOnce);
    options.no_local = true;
    client.subscribe(1, "echo", options).await;
    client
        .send(Packet::Publish(publish(
            "echo",
            "me",
            QoS::AtMostOnce,
            None,
        )))
        .await;
    // [MQTT-3.8.3-3]: not forwarded to the publishing client.
    assert!(client.ping().await.is_empty());
}
