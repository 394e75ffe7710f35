//! MQTT 5.0 behaviours: topic aliases both ways, request/response and the other properties
//! passed through, Server Keep Alive, Receive Maximum and Maximum Packet Size both ways,
//! Maximum QoS, Retain Available, and the availability of wildcard, shared subscriptions and
//! subscription identifiers.

mod support;

use std::num::{NonZeroU16, NonZeroU32};

use support::*;
use tern_broker::Config;
use tern_codec::{
    Ack, Packet, PayloadFormat, ProtocolVersion, Publish, PublishProperties, QoS, ReasonCode,
    Subscribe, SubscribeProperties, Subscription,
};

const V5: ProtocolVersion = ProtocolVersion::V5;

fn with_alias(mut publish: Publish, alias: u16) -> Publish {
    publish.properties.topic_alias = NonZeroU16::new(alias);
    publish
}

#[tokio::test]
async fn inbound_topic_aliases_are_resolved_and_checked() {
    let mut config = config();
    config.limits.topic_alias_maximum = 4;
    let broker = broker_with(config).await;
    let addr = broker.local_addrs()[0];
    let mut sub = Client::connected(addr, V5, "alias-sub", true).await;
    sub.subscribe(1, "alias/#", opts(QoS::AtMostOnce)).await;
    let (mut publisher, connack) = Client::connect_with(addr, connect(V5, "alias-pub", true)).await;
    // The broker announces how many aliases it accepts (section 3.2.2.3.8).
    assert_eq!(connack.properties.topic_alias_maximum, Some(4));
    // A topic with an alias sets the mapping; an empty topic with the alias uses it (section
    // 3.3.4); the broker accepts every alias up to its maximum [MQTT-3.3.2-12].
    let define = with_alias(publish("alias/long/topic", "one", QoS::AtMostOnce, None), 4);
    publisher.send(Packet::Publish(define)).await;
    let reuse = with_alias(publish("", "two", QoS::AtMostOnce, None), 4);
    publisher.send(Packet::Publish(reuse)).await;
    for payload in ["one", "two"] {
        let p = sub.expect_publish().await;
        assert_eq!(
            (p.topic.as_str(), &p.payload[..]),
            ("alias/long/topic", payload.as_bytes())
        );
        // The subscriber allowed no aliases: none is sent to it [MQTT-3.1.2-27].
        assert_eq!(p.properties.topic_alias, None);
    }
    // An alias above the maximum: DISCONNECT 0x94 (section 3.3.4) [MQTT-3.3.2-9].
    let beyond = with_alias(publish("alias/x", "x", QoS::AtMostOnce, None), 5);
    publisher.send(Packet::Publish(beyond)).await;
    assert_eq!(
        publisher.expect_disconnect().await.reason_code,
        ReasonCode::TopicAliasInvalid
    );
    publisher.expect_closed().await;
    // An empty topic with an alias that has no mapping: Protocol Error (section 3.3.4), and
    // mappings do not outlive their connection [MQTT-3.3.2-7].
    let mut again = Client::connected(addr, V5, "alias-pub", true).await;
    let unknown = with_alias(publish("", "x", QoS::AtMostOnce, None), 4);
    again.send(Packet::Publish(unknown)).await;
    assert_eq!(
        again.expect_disconnect().await.reason_code,
        ReasonCode::ProtocolError
    );
    assert!(sub.ping().await.is_empty());
}

#[tokio::test]
async fn outbound_topic_aliases_only_when_the_client_allows_them() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let mut c = connect(V5, "alias-taker", true);
    c.properties.topic_alias_maximum = Some(2);
    let (mut sub, _) = Client::connect_with(addr, c).await;
    sub.subscribe(1, "out/#", opts(QoS::AtMostOnce)).await;
    for payload in ["a", "b", "c"] {
        broker
            .publish(publish(
                "out/some/long/topic",
                payload,
                QoS::AtMostOnce,
                None,
            ))
            .unwrap();
    }
    // The first PUBLISH defines an alias within the client's maximum [MQTT-3.1.2-26],
    // [MQTT-3.3.2-11]; the next ones use it with an empty topic name (section 3.3.2.3.4).
    let first = sub.expect_publish().await;
    let alias = first.properties.topic_alias.expect("an alias is defined");
    assert!(alias.get() <= 2);
    assert_eq!(first.topic.as_str(), "out/some/long/topic");
    for payload in ["b", "c"] {
        let p = sub.expect_publish().await;
        assert_eq!(p.properties.topic_alias, Some(alias));
        assert!(p.topic.is_empty(), "{p:?}");
        assert_eq!(&p.payload[..], payload.as_bytes());
    }
}

#[tokio::test]
async fn request_response_and_message_properties_pass_through() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let mut responder = Client::connected(addr, V5, "responder", true).await;
    responder
        .subscribe(1, "service/request", opts(QoS::AtLeastOnce))
        .await;
    let mut requester = Client::connected(addr, V5, "requester", true).await;
    requester
        .subscribe(1, "reply/requester", opts(QoS::AtLeastOnce))
        .await;
    let user_properties = vec![
        (s("trace"), s("1")),
        (s("zone"), s("eu")),
        (s("trace"), s("2")),
    ];
    let request = Publish {
        qos: QoS::AtLeastOnce,
        topic: s("service/request"),
        packet_id: Some(pid(1)),
        payload: "ping?".into(),
        properties: PublishProperties {
            payload_format_indicator: Some(PayloadFormat::Utf8),
            response_topic: Some(s("reply/requester")),
            correlation_data: Some(bytes::Bytes::from_static(b"\x00id-17\xff")),
            user_properties: user_properties.clone(),
            content_type: Some(s("text/plain; charset=utf-8")),
            ..PublishProperties::default()
        },
        ..Publish::default()
    };
    requester.send(Packet::Publish(request.clone())).await;
    assert!(matches!(requester.recv().await, Packet::PubAck(_)));
    let got = responder.expect_publish().await;
    responder
        .send(Packet::PubAck(Ack::new(got.packet_id.unwrap())))
        .await;
    // Unaltered: Payload Format Indicator [MQTT-3.3.2-4], Response Topic [MQTT-3.3.2-15],
    // Correlation Data [MQTT-3.3.2-16], every User Property [MQTT-3.3.2-17] in order
    // [MQTT-3.3.2-18], Content Type [MQTT-3.3.2-20].
    assert_eq!(
        got.properties,
        PublishProperties {
            subscription_identifiers: Vec::new(),
            topic_alias: None,
            ..request.properties.clone()
        }
    );
    // The responder answers on the Response Topic with the Correlation Data (section 4.10).
    let response = Publish {
        qos: QoS::AtLeastOnce,
        topic: got.properties.response_topic.clone().unwrap(),
        packet_id: Some(pid(2)),
        payload: "pong".into(),
        properties: PublishProperties {
            correlation_data: got.properties.correlation_data.clone(),
            ..PublishProperties::default()
        },
        ..Publish::default()
    };
    responder.send(Packet::Publish(response)).await;
    assert!(matches!(responder.recv().await, Packet::PubAck(_)));
    let reply = requester.expect_publish().await;
    assert_eq!(&reply.payload[..], b"pong");
    assert_eq!(
        reply.properties.correlation_data,
        request.properties.correlation_data
    );
}

#[tokio::test]
async fn server_keep_alive_enforces_max_keepalive() {
    let mut config = config();
    config.limits.max_keepalive = 1;
    config.limits.allow_zero_keepalive = false;
    let broker = broker_with(config).await;
    let addr = broker.local_addrs()[0];
    // Within the limit: no Server Keep Alive, the client's value is used [MQTT-3.2.2-22].
    let mut c = connect(V5, "ka-ok", true);
    c.keep_alive = 1;
    let (ok, connack) = Client::connect_with(addr, c).await;
    assert_eq!(connack.properties.server_keep_alive, None);
    ok.disconnect().await;
    // More than allowed, or 0 when 0 is not allowed: the broker's value in Server Keep Alive,
    // which the client must use [MQTT-3.2.2-21].
    for asked in [60, 0] {
        let mut c = connect(V5, "ka-long", true);
        c.keep_alive = asked;
        let (mut client, connack) = Client::connect_with(addr, c).await;
        assert_eq!(connack.properties.server_keep_alive, Some(1));
        // The broker enforces it: silence for 1.5 times the keep alive closes the connection
        // [MQTT-3.1.2-22] with DISCONNECT 0x8D (section 4.13).
        let silent_since = std::time::Instant::now();
        assert_eq!(
            client.expect_disconnect().await.reason_code,
            ReasonCode::KeepAliveTimeout
        );
        assert!(silent_since.elapsed() >= std::time::Duration::from_millis(1400));
        client.expect_closed().await;
    }
    // 3.1.1 has no Server Keep Alive: refused with return code 2 (as mosquitto does).
    let mut c = connect(ProtocolVersion::V3_1_1, "ka-old", true);
    c.keep_alive = 60;
    let (mut old, connack) = Client::connect_with(addr, c).await;
    assert_eq!(connack.reason_code, ReasonCode::ClientIdentifierNotValid);
    old.expect_closed().await;
}

#[tokio::test]
async fn receive_maximum_both_ways() {
    let mut config = config();
    config.limits.receive_maximum = 2;
    let broker = broker_with(config).await;
    let addr = broker.local_addrs()[0];

    // The client's Receive Maximum: at most 2 unacknowledged QoS 1 messages in flight to it
    // [MQTT-3.3.4-9]; the rest wait, and QoS 0 is not held back [MQTT-3.3.4-10].
    let mut c = connect(V5, "rm-sub", true);
    c.properties.receive_maximum = NonZeroU16::new(2);
    let (mut sub, connack) = Client::connect_with(addr, c).await;
    // The broker announces its own (section 3.2.2.3.3).
    assert_eq!(connack.properties.receive_maximum, NonZeroU16::new(2));
    sub.subscribe(1, "rm/#", opts(QoS::AtLeastOnce)).await;
    for i in 1..=4 {
        let payload = ["1", "2", "3", "4"][i - 1];
        broker
            .publish(publish("rm/t", payload, QoS::AtLeastOnce, None))
            .unwrap();
    }
    broker
        .publish(publish("rm/t", "q0", QoS::AtMostOnce, None))
        .unwrap();
    let first: Vec<Publish> = sub
        .ping()
        .await
        .into_iter()
        .map(|p| match p {
            Packet::Publish(p) => p,
            other => panic!("{other:?}"),
        })
        .collect();
    let payloads: Vec<&[u8]> = first.iter().map(|p| &p.payload[..]).collect();
    assert_eq!(payloads, [&b"1"[..], b"2", b"q0"]);
    sub.send(Packet::PubAck(Ack::new(first[0].packet_id.unwrap())))
        .await;
    let third = sub.expect_publish().await;
    assert_eq!(&third.payload[..], b"3");

    // The broker's: a third QoS 2 message not released yet exceeds it: DISCONNECT 0x93
    // (section 3.3.4, [MQTT-3.3.4-7]).
    let mut publisher = Client::connected(addr, V5, "rm-pub", true).await;
    let qos2 = |id| Packet::Publish(publish("rm/none", "x", QoS::ExactlyOnce, Some(id)));
    for id in 1..=2 {
        publisher.send(qos2(id)).await;
        let packet = publisher.recv().await;
        assert!(
            matches!(&packet, Packet::PubRec(a) if a.packet_id == pid(id)),
            "{packet:?}"
        );
    }
    publisher.send(qos2(3)).await;
    assert_eq!(
        publisher.expect_disconnect().await.reason_code,
        ReasonCode::ReceiveMaximumExceeded
    );
}

#[tokio::test]
async fn maximum_packet_size_both_ways() {
    let mut config = config();
    config.limits.maximum_packet_size = 1024;
    let broker = broker_with(config).await;
    let addr = broker.local_addrs()[0];

    // The client's: a message larger than it accepts is not sent to it [MQTT-3.1.2-24], but
    // discarded as if sent [MQTT-3.1.2-25]; smaller ones still are.
    let mut c = connect(V5, "mps-sub", true);
    c.properties.maximum_packet_size = NonZeroU32::new(128);
    let (mut sub, connack) = Client::connect_with(addr, c).await;
    // The broker announces its own (section 3.2.2.3.6).
    assert_eq!(
        connack.properties.maximum_packet_size,
        NonZeroU32::new(1024)
    );
    sub.subscribe(1, "mps/#", opts(QoS::AtLeastOnce)).await;
    broker
        .publish(big_publish("mps/t", "big", 500, QoS::AtLeastOnce, None))
        .unwrap();
    broker
        .publish(publish("mps/t", "small", QoS::AtLeastOnce, None))
        .unwrap();
    let p = sub.expect_publish().await;
    assert_eq!(&p.payload[..], b"small");
    sub.send(Packet::PubAck(Ack::new(p.packet_id.unwrap())))
        .await;
    assert!(sub.ping().await.is_empty());

    // The broker's: a packet larger than it accepts is refused with DISCONNECT 0x95
    // ([MQTT-3.2.2-15], section 3.2.2.3.6); within it, accepted.
    let mut publisher = Client::connected(addr, V5, "mps-pub", true).await;
    let ack = publisher.publish_qos1(1, "elsewhere", "ok", false).await;
    assert_eq!(ack.reason_code, ReasonCode::NoMatchingSubscribers);
    let too_big = big_publish("mps/big", "x", 2000, QoS::AtMostOnce, None);
    publisher.send(Packet::Publish(too_big)).await;
    assert_eq!(
        publisher.expect_disconnect().await.reason_code,
        ReasonCode::PacketTooLarge
    );
    publisher.expect_closed().await;
}

#[tokio::test]
async fn maximum_qos_is_announced_granted_and_enforced() {
    let mut config = config();
    config.limits.maximum_qos = 1;
    let broker = broker_with(config).await;
    let addr = broker.local_addrs()[0];
    let (mut client, connack) = Client::connect_with(addr, connect(V5, "mq", true)).await;
    // [MQTT-3.2.2-9]: a server without QoS 2 says so in CONNACK.
    assert_eq!(connack.properties.maximum_qos, Some(QoS::AtLeastOnce));
    // It still accepts a SUBSCRIBE asking QoS 2 [MQTT-3.2.2-10], granting QoS 1
    // [MQTT-3.8.4-7].
    let suback = client.subscribe(1, "mq/#", opts(QoS::ExactlyOnce)).await;
    assert_eq!(suback.reason_codes, [ReasonCode::GrantedQoS1]);
    // A QoS 2 PUBLISH from the client: DISCONNECT 0x9B ([MQTT-3.2.2-11], section 3.3.1.2).
    client
        .send(Packet::Publish(publish(
            "mq/t",
            "x",
            QoS::ExactlyOnce,
            Some(1),
        )))
        .await;
    assert_eq!(
        client.expect_disconnect().await.reason_code,
        ReasonCode::QoSNotSupported
    );
    // A Will at QoS 2 is refused with CONNACK 0x9B [MQTT-3.2.2-12].
    let mut c = connect(V5, "mq-will", true);
    let mut w = will("wills/mq", "gone");
    w.qos = QoS::ExactlyOnce;
    c.will = Some(w);
    let (mut refused, connack) = Client::connect_with(addr, c).await;
    assert_eq!(connack.reason_code, ReasonCode::QoSNotSupported);
    refused.expect_closed().await;
    assert_eq!(broker.stats().sessions, 0);
}

#[tokio::test]
async fn retain_available_false_refuses_retained_messages() {
    let mut config = config();
    config.limits.retain_available = false;
    let broker = broker_with(config).await;
    let addr = broker.local_addrs()[0];
    let (mut client, connack) = Client::connect_with(addr, connect(V5, "nr", true)).await;
    assert_eq!(connack.properties.retain_available, Some(false));
    // A retained PUBLISH: DISCONNECT 0x9A ([MQTT-3.2.2-14], section 3.3.1.3); nothing stored.
    let mut p = publish("nr/t", "x", QoS::AtMostOnce, None);
    p.retain = true;
    client.send(Packet::Publish(p)).await;
    assert_eq!(
        client.expect_disconnect().await.reason_code,
        ReasonCode::RetainNotSupported
    );
    // A retained Will: CONNACK 0x9A [MQTT-3.2.2-13].
    let mut c = connect(V5, "nr-will", true);
    let mut w = will("wills/nr", "gone");
    w.retain = true;
    c.will = Some(w);
    let (mut refused, connack) = Client::connect_with(addr, c).await;
    assert_eq!(connack.reason_code, ReasonCode::RetainNotSupported);
    refused.expect_closed().await;
    assert_eq!(broker.stats().retained, 0);
}

#[tokio::test]
async fn subscription_features_are_announced_truthfully() {
    // Default: everything available, so none of the three properties is sent (absent means
    // available, sections 3.2.2.3.11 to 3.2.2.3.13), and each works.
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let (mut client, connack) = Client::connect_with(addr, connect(V5, "features", true)).await;
    let p = &connack.properties;
    assert_eq!(
        (
            p.wildcard_subscription_available,
            p.subscription_identifiers_available,
            p.shared_subscription_available
        ),
        (None, None, None)
    );
    let suback = client
        .subscribe_with(
            1,
            &[
                ("f/+", opts(QoS::AtMostOnce)),
                ("$share/g/f/x", opts(QoS::AtMostOnce)),
            ],
            Some(5),
        )
        .await;
    assert_eq!(
        suback.reason_codes,
        [ReasonCode::Success, ReasonCode::Success]
    );
}

#[tokio::test]
async fn disabled_subscription_features_are_announced_and_refused() {
    let mut config: Config = config();
    config.limits.wildcard_subscription_available = false;
    config.limits.subscription_identifiers_available = false;
    config.limits.shared_subscription_available = false;
    let broker = broker_with(config).await;
    let addr = broker.local_addrs()[0];
    let (mut client, connack) = Client::connect_with(addr, connect(V5, "nofeat", true)).await;
    let p = &connack.properties;
    assert_eq!(
        (
            p.wildcard_subscription_available,
            p.subscription_identifiers_available,
            p.shared_subscription_available
        ),
        (Some(false), Some(false), Some(false))
    );
    // Each refused filter gets its SUBACK reason code (section 3.9.3); the others are granted.
    let suback = client
        .subscribe_with(
            1,
            &[
                ("a/+", opts(QoS::AtMostOnce)),
                ("a/#", opts(QoS::AtMostOnce)),
                ("$share/g/a/b", opts(QoS::AtMostOnce)),
                ("a/b", opts(QoS::AtLeastOnce)),
            ],
            None,
        )
        .await;
    assert_eq!(
        suback.reason_codes,
        [
            ReasonCode::WildcardSubscriptionsNotSupported,
            ReasonCode::WildcardSubscriptionsNotSupported,
            ReasonCode::SharedSubscriptionsNotSupported,
            ReasonCode::GrantedQoS1
        ]
    );
    // A Subscription Identifier: every filter of that SUBSCRIBE is refused with 0xA1.
    client
        .send(Packet::Subscribe(Subscribe {
            packet_id: pid(2),
            properties: SubscribeProperties {
                subscription_identifier: NonZeroU32::new(9),
                ..SubscribeProperties::default()
            },
            subscriptions: tern_codec::smallvec::smallvec![Subscription {
                filter: s("c/d"),
                options: opts(QoS::AtMostOnce),
            }],
        }))
        .await;
    match client.recv().await {
        Packet::SubAck(a) => assert_eq!(
            a.reason_codes,
            [ReasonCode::SubscriptionIdentifiersNotSupported]
        ),
        other => panic!("expected SUBACK, got {other:?}"),
    }
    // Only `a/b` exists.
    assert_eq!(broker.stats().subscriptions, 1);
    // 3.1.1: a server without wildcard support rejects such a filter with 0x80
    // ([MQTT-3.8.3-2] of 3.1.1).
    let mut old = Client::connected(addr, ProtocolVersion::V3_1_1, "nofeat311", true).await;
    let suback = old.subscribe(1, "x/#", opts(QoS::AtMostOnce)).await;
    assert_eq!(suback.reason_codes, [ReasonCode::UnspecifiedError]);
}
