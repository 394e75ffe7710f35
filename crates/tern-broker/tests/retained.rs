//! Retained messages: store, replace, delete, Retain Handling and Retain As Published.

mod support;

use std::sync::Arc;
use std::time::SystemTime;

use support::*;
use tern_broker::storage::{StorageOp, StoredMessage};
use tern_broker::{Broker, Config, MemoryStorage, Storage};
use tern_codec::{Ack, MqttString, Packet, ProtocolVersion, Publish, QoS, RetainHandling};

const V5: ProtocolVersion = ProtocolVersion::V5;

#[tokio::test]
async fn retained_message_is_stored_replaced_and_deleted() {
    // Without the broker's own retained `$SYS` topics, so that the count is this test's.
    let mut config = config();
    config.sys_interval = 0;
    let broker = broker_with(config).await;
    let addr = broker.local_addrs()[0];
    let mut publisher = Client::connected(addr, V5, "retainer", true).await;
    // [MQTT-3.3.1-5]: stored, and replaces the previous one of the topic.
    publisher.publish_qos1(1, "r/t", "old", true).await;
    publisher.publish_qos1(2, "r/t", "new", true).await;
    let mut sub = Client::connected(addr, V5, "late", true).await;
    sub.subscribe(1, "r/#", opts(QoS::AtLeastOnce)).await;
    // [MQTT-3.3.1-9]: sent on subscribe with RETAIN 1.
    let p = sub.expect_publish().await;
    assert_eq!(
        (&p.payload[..], p.retain, p.qos),
        (&b"new"[..], true, QoS::AtLeastOnce)
    );
    sub.send(Packet::PubAck(Ack::new(p.packet_id.unwrap())))
        .await;
    assert!(sub.ping().await.is_empty());

    // [MQTT-3.3.1-6], [MQTT-3.3.1-7]: an empty retained payload deletes it and is not stored;
    // it is still delivered to current subscribers.
    publisher.publish_qos1(3, "r/t", "", true).await;
    let p = sub.expect_publish().await;
    assert!(p.payload.is_empty());
    sub.send(Packet::PubAck(Ack::new(p.packet_id.unwrap())))
        .await;
    let mut other = Client::connected(addr, V5, "later", true).await;
    other.subscribe(1, "r/#", opts(QoS::AtLeastOnce)).await;
    assert!(other.ping().await.is_empty());
    assert_eq!(broker.stats().retained, 0);

    // [MQTT-3.3.1-8]: RETAIN 0 does not store or replace.
    publisher.publish_qos1(4, "r/u", "plain", false).await;
    assert_eq!(broker.stats().retained, 0);
}

#[tokio::test]
async fn retain_flag_follows_retain_as_published() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let mut plain = Client::connected(addr, V5, "rap0", true).await;
    plain.subscribe(1, "rap", opts(QoS::AtMostOnce)).await;
    let mut keep = Client::connected(addr, V5, "rap1", true).await;
    let mut options = opts(QoS::AtMostOnce);
    options.retain_as_published = true;
    keep.subscribe(1, "rap", options).await;
    let mut retained = publish("rap", "v", QoS::AtMostOnce, None);
    retained.retain = true;
    broker.publish(retained).unwrap();
    // [MQTT-3.3.1-12]: RAP 0 → RETAIN 0 on forwarded messages; [MQTT-3.3.1-13]: RAP 1 keeps it.
    assert!(!plain.expect_publish().await.retain);
    assert!(keep.expect_publish().await.retain);
}

#[tokio::test]
async fn retain_handling_options() {
    let broker = broker().await;
    let addr = broker.local_addrs()[0];
    let mut retained = publish("rh/a", "v", QoS::AtMostOnce, None);
    retained.retain = true;
    broker.publish(retained).unwrap();
    let mut client = Client::connected(addr, V5, "rh", true).await;

    // [MQTT-3.3.1-11]: Retain Handling 2, none sent.
    client
        .subscribe(
            1,
            "rh/#",
            retain_handling(QoS::AtMostOnce, RetainHandling::DoNotSend),
        )
        .await;
    assert!(client.ping().await.is_empty());
    // [MQTT-3.3.1-10]: Retain Handling 1 on an existing subscription, none sent...
    client
        .subscribe(
            2,
            "rh/#",
            retain_handling(QoS::AtMostOnce, RetainHandling::SendIfNew),
        )
        .await;
    assert!(client.ping().await.is_empty());
    // ...and on a new one, sent.
    client
        .subscribe(
            3,
            "rh/+",
            retain_handling(QoS::AtMostOnce, RetainHandling::SendIfNew),
        )
        .await;
    assert_eq!(&client.expect_publish().await.payload[..], b"v");
    // [MQTT-3.3.1-9], [MQTT-3.8.4-4]: Retain Handling 0 re-sends them even when the
    // subscription existed.
    client
        .subscribe(
            4,
            "rh/+",
            retain_handling(QoS::AtMostOnce, RetainHandling::SendAtSubscribe),
        )
        .await;
    assert!(client.expect_publish().await.retain);
    assert!(client.ping().await.is_empty());
}

#[tokio::test]
async fn retained_messages_are_loaded_from_storage() {
    let storage = Arc::new(MemoryStorage::new());
    storage
        .commit(&[StorageOp::PutRetained(StoredMessage::new(
            Publish {
                topic: MqttString::from_static("stored/t"),
                payload: "from disk".into(),
                retain: true,
                ..Publish::default()
            },
            None,
            SystemTime::now(),
        ))])
        .unwrap();
    let broker = Broker::new(Config::with_listeners(["127.0.0.1:0".parse().unwrap()]))
        .with_storage(storage.clone())
        .start()
        .await
        .unwrap();
    let mut client = Client::connected(broker.local_addrs()[0], V5, "loader", true).await;
    client.subscribe(1, "stored/#", opts(QoS::AtMostOnce)).await;
    assert_eq!(&client.expect_publish().await.payload[..], b"from disk");
    // And written through: a delete reaches the storage (committed by shutdown at the latest).
    let mut delete = publish("stored/t", "", QoS::AtMostOnce, None);
    delete.retain = true;
    broker.publish(delete).unwrap();
    client.drop_connection();
    assert!(broker.shutdown().await);
    assert!(storage.load().unwrap().retained.is_empty());
}
