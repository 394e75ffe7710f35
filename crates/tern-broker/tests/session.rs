//! Sessions: clean start, session present, expiry, and messages kept while the client is away.

mod support;

use support::*;
use tern_codec::{Ack, Disconnect, DisconnectProperties, Packet, ProtocolVersion, QoS, ReasonCode};

const V5: ProtocolVersion = ProtocolVersion::V5;

fn v5_connect(client_id: &str, clean_start: bool, expiry: u32) -> tern_codec::Connect {
    let mut c = connect(V5, client_id, clean_start);
    c.properties.session_expiry_interval = Some(expiry);
    c
}

#[tokio::test]
async fn offline_session_keeps_qos1_messages_and_subscriptions() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let (mut sub, connack) = Client::connect_with(addr, v5_connect("away", true, 300)).await;
    // [MQTT-3.2.2-2]: Clean Start 1 → Session Present 0.
    assert!(!connack.session_present);
    sub.subscribe(1, "news/#", opts(QoS::AtLeastOnce)).await;
    sub.subscribe(2, "chat/#", opts(QoS::AtMostOnce)).await;
    sub.disconnect().await;

    // [MQTT-3.1.2-23]: the session outlives the connection; QoS 1 messages are queued for it,
    // QoS 0 ones may be dropped (and are).
    assert_eq!(
        broker
            .publish(publish("news/a", "first", QoS::AtLeastOnce, None))
            .unwrap(),
        1
    );
    assert_eq!(
        broker
            .publish(publish("chat/a", "gone", QoS::AtMostOnce, None))
            .unwrap(),
        1
    );
    assert_eq!(
        broker
            .publish(publish("news/b", "second", QoS::AtLeastOnce, None))
            .unwrap(),
        1
    );

    // [MQTT-3.1.2-5], [MQTT-3.2.2-3]: Clean Start 0 resumes it with Session Present 1.
    let (mut sub, connack) = Client::connect_with(addr, v5_connect("away", false, 300)).await;
    assert!(connack.session_present);
    for expected in ["first", "second"] {
        let p = sub.expect_publish().await;
        assert_eq!(
            (&p.payload[..], p.qos),
            (expected.as_bytes(), QoS::AtLeastOnce)
        );
        sub.send(Packet::PubAck(Ack::new(p.packet_id.unwrap())))
            .await;
    }
    assert!(sub.ping().await.is_empty());
    // The subscriptions were kept too.
    assert_eq!(
        broker
            .publish(publish("news/c", "live", QoS::AtLeastOnce, None))
            .unwrap(),
        1
    );
    assert_eq!(&sub.expect_publish().await.payload[..], b"live");
}

#[tokio::test]
async fn clean_start_discards_the_session() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let (mut sub, _) = Client::connect_with(addr, v5_connect("fresh", true, 300)).await;
    sub.subscribe(1, "x", opts(QoS::AtLeastOnce)).await;
    sub.disconnect().await;
    broker
        .publish(publish("x", "queued", QoS::AtLeastOnce, None))
        .unwrap();
    // [MQTT-3.1.2-4]: Clean Start 1 discards the existing session: no queued message, no
    // subscription, Session Present 0 [MQTT-3.2.2-2].
    let (mut sub, connack) = Client::connect_with(addr, v5_connect("fresh", true, 300)).await;
    assert!(!connack.session_present);
    assert!(sub.ping().await.is_empty());
    assert_eq!(
        broker
            .publish(publish("x", "more", QoS::AtLeastOnce, None))
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn expiry_zero_ends_the_session_with_the_connection() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let (mut sub, _) = Client::connect_with(addr, v5_connect("short", true, 0)).await;
    sub.subscribe(1, "y", opts(QoS::AtLeastOnce)).await;
    sub.disconnect().await;
    // Expiry 0: the session ends when the connection closes (section 3.1.2.11.2).
    assert_eq!(
        broker
            .publish(publish("y", "lost", QoS::AtLeastOnce, None))
            .unwrap(),
        0
    );
    let (_, connack) = Client::connect_with(addr, v5_connect("short", false, 0)).await;
    // [MQTT-3.2.2-3]: no session, so Session Present 0.
    assert!(!connack.session_present);
}

#[tokio::test]
async fn session_expires_after_its_interval() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let (sub, _) = Client::connect_with(addr, v5_connect("expiring", true, 1)).await;
    sub.disconnect().await;
    assert_eq!(broker.stats().sessions, 1);
    // The session is discarded once the interval passed (section 3.1.2.11.2); wait for it.
    tokio::time::timeout(TIMEOUT, async {
        while broker.stats().sessions != 0 {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("session expired in time");
    let (_, connack) = Client::connect_with(addr, v5_connect("expiring", false, 0)).await;
    assert!(!connack.session_present);
}

#[tokio::test]
async fn disconnect_can_set_the_expiry() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let (mut sub, _) = Client::connect_with(addr, v5_connect("later", true, 300)).await;
    sub.subscribe(1, "z", opts(QoS::AtLeastOnce)).await;
    // Section 3.14.2.2.2: DISCONNECT's Session Expiry Interval replaces CONNECT's.
    sub.disconnect_with(Disconnect {
        reason_code: ReasonCode::Success,
        properties: DisconnectProperties {
            session_expiry_interval: Some(0),
            ..Default::default()
        },
    })
    .await;
    assert_eq!(
        broker
            .publish(publish("z", "x", QoS::AtLeastOnce, None))
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn takeover_keeps_the_session_and_its_inflight_messages() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let (mut first, _) = Client::connect_with(addr, v5_connect("moving", true, 300)).await;
    first.subscribe(1, "m", opts(QoS::AtLeastOnce)).await;
    broker
        .publish(publish("m", "unacked", QoS::AtLeastOnce, None))
        .unwrap();
    let p = first.expect_publish().await;
    // Not acknowledged; the client reconnects on another connection.
    let (mut second, connack) = Client::connect_with(addr, v5_connect("moving", false, 300)).await;
    assert!(connack.session_present);
    assert_eq!(
        first.expect_disconnect().await.reason_code,
        ReasonCode::SessionTakenOver
    );
    // [MQTT-4.4.0-1]: the unacknowledged PUBLISH is resent with its identifier, and with DUP
    // [MQTT-3.3.1-1].
    let again = second.expect_publish().await;
    assert!(again.dup);
    assert_eq!(
        (again.packet_id, &again.payload[..]),
        (p.packet_id, &b"unacked"[..])
    );
    second
        .send(Packet::PubAck(Ack::new(again.packet_id.unwrap())))
        .await;
    assert!(second.ping().await.is_empty());
}

#[tokio::test]
async fn v311_clean_session_zero_keeps_the_session() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let mut sub = Client::connected(addr, ProtocolVersion::V3_1_1, "persistent", false).await;
    sub.subscribe(1, "p", opts(QoS::AtLeastOnce)).await;
    sub.disconnect().await;
    broker
        .publish(publish("p", "kept", QoS::AtLeastOnce, None))
        .unwrap();
    // 3.1.1 [MQTT-3.1.2-4]/[MQTT-3.2.2-2]: CleanSession 0 resumes with Session Present 1.
    let (mut sub, connack) =
        Client::connect_with(addr, connect(ProtocolVersion::V3_1_1, "persistent", false)).await;
    assert!(connack.session_present);
    assert_eq!(&sub.expect_publish().await.payload[..], b"kept");
}
