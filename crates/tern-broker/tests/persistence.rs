//! Durable state across a broker restart, in-process on a redb store in a temporary
//! directory: retained messages, persistent sessions (subscriptions, queued and in-flight
//! messages), expiry across the restart, acknowledgements withheld until the commit, and a
//! store that cannot be opened.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tern_broker::storage::{Recovered, StorageOp};
use tern_broker::{Broker, BrokerHandle, MemoryStorage, RedbStorage, Storage, StorageError};
use tern_codec::{
    Ack, Connect, Packet, ProtocolVersion, PublishProperties, QoS, ReasonCode, RetainHandling,
};

const V5: ProtocolVersion = ProtocolVersion::V5;

fn v5_connect(client_id: &str, clean_start: bool, expiry: u32) -> Connect {
    let mut c = connect(V5, client_id, clean_start);
    c.properties.session_expiry_interval = Some(expiry);
    c
}

async fn start(dir: &Path) -> BrokerHandle {
    let storage = RedbStorage::open(dir).expect("store opens");
    let mut config = config();
    config.sys_interval = 0;
    Broker::new(config)
        .with_storage(Arc::new(storage))
        .start()
        .await
        .expect("broker starts")
}

async fn restart(broker: BrokerHandle, dir: &Path) -> BrokerHandle {
    assert!(broker.shutdown().await);
    start(dir).await
}

#[tokio::test(flavor = "multi_thread")]
async fn retained_messages_survive_a_restart_with_their_properties() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let addr = broker.local_addrs()[0];
    let mut publisher = Client::connected(addr, V5, "pub", true).await;
    let mut p = publish("state/a", "on", QoS::AtLeastOnce, Some(1));
    p.retain = true;
    p.properties.content_type = Some(s("text/plain"));
    publisher.send(Packet::Publish(p)).await;
    assert!(matches!(publisher.recv().await, Packet::PubAck(_)));
    assert_eq!(
        publisher
            .publish_qos1(2, "state/b", "off", true)
            .await
            .reason_code,
        ReasonCode::NoMatchingSubscribers
    );
    // An empty retained message deletes it [MQTT-3.3.1-6], durably too.
    publisher.publish_qos1(3, "state/b", "", true).await;
    publisher.disconnect().await;

    let broker = restart(broker, dir.path()).await;
    assert_eq!(broker.stats().retained, 1);
    let addr = broker.local_addrs()[0];
    let mut sub = Client::connected(addr, V5, "sub", true).await;
    sub.subscribe(1, "state/#", opts(QoS::AtLeastOnce)).await;
    // [MQTT-3.3.1-9]: the retained message is sent on subscribe, RETAIN set.
    let got = sub.expect_publish().await;
    assert_eq!((&got.topic[..], &got.payload[..]), ("state/a", &b"on"[..]));
    assert!(got.retain);
    assert_eq!(got.properties.content_type, Some(s("text/plain")));
    sub.send(Packet::PubAck(Ack::new(got.packet_id.unwrap())))
        .await;
    assert!(sub.ping().await.is_empty());
    assert!(broker.shutdown().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn offline_session_keeps_subscriptions_and_queued_messages_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let addr = broker.local_addrs()[0];
    let (mut sub, _) = Client::connect_with(addr, v5_connect("away", true, 300)).await;
    sub.subscribe(1, "news/#", opts(QoS::ExactlyOnce)).await;
    sub.disconnect().await;

    let mut publisher = Client::connected(addr, V5, "pub", true).await;
    for (id, payload) in [(1, "one"), (2, "two")] {
        assert_eq!(
            publisher
                .publish_qos1(id, "news/a", payload, false)
                .await
                .reason_code,
            ReasonCode::Success
        );
    }
    let mut p = publish("news/b", "three", QoS::ExactlyOnce, Some(3));
    p.properties = PublishProperties {
        user_properties: vec![(s("k"), s("v"))],
        ..PublishProperties::default()
    };
    publisher.send(Packet::Publish(p)).await;
    let Packet::PubRec(rec) = publisher.recv().await else {
        panic!("PUBREC")
    };
    assert_eq!(rec.reason_code, ReasonCode::Success);
    publisher.send(Packet::PubRel(Ack::new(pid(3)))).await;
    assert!(matches!(publisher.recv().await, Packet::PubComp(_)));
    publisher.disconnect().await;

    let broker = restart(broker, dir.path()).await;
    let addr = broker.local_addrs()[0];
    assert_eq!(broker.stats().sessions, 1);
    assert_eq!(broker.stats().subscriptions, 1);
    // [MQTT-3.1.2-5], [MQTT-3.2.2-3]: the session is resumed with Session Present 1, and the
    // messages queued while it was away come in order [MQTT-4.6.0-6].
    let (mut sub, connack) = Client::connect_with(addr, v5_connect("away", false, 300)).await;
    assert!(connack.session_present);
    let mut got = Vec::new();
    for _ in 0..3 {
        let p = sub.expect_publish().await;
        got.push((
            p.payload.clone(),
            p.qos,
            p.properties.user_properties.clone(),
        ));
        match p.qos {
            QoS::AtLeastOnce => {
                sub.send(Packet::PubAck(Ack::new(p.packet_id.unwrap())))
                    .await
            }
            _ => {
                sub.send(Packet::PubRec(Ack::new(p.packet_id.unwrap())))
                    .await;
                assert!(matches!(sub.recv().await, Packet::PubRel(_)));
                sub.send(Packet::PubComp(Ack::new(p.packet_id.unwrap())))
                    .await;
            }
        }
    }
    assert_eq!(got[0].0, &b"one"[..]);
    assert_eq!(got[1].0, &b"two"[..]);
    assert_eq!(got[2].0, &b"three"[..]);
    assert_eq!(got[2].1, QoS::ExactlyOnce);
    assert_eq!(got[2].2, vec![(s("k"), s("v"))]);
    assert!(sub.ping().await.is_empty());
    // The subscription came back too: a new message reaches the resumed session.
    let mut publisher = Client::connected(addr, V5, "pub", true).await;
    assert_eq!(
        publisher
            .publish_qos1(9, "news/c", "four", false)
            .await
            .reason_code,
        ReasonCode::Success
    );
    assert_eq!(&sub.expect_publish().await.payload[..], b"four");
    sub.drop_connection();
    publisher.disconnect().await;

    // Delivered and acknowledged: nothing of it comes again after another restart, but the
    // unacknowledged "four" does, with DUP set [MQTT-4.4.0-1].
    let broker = restart(broker, dir.path()).await;
    let addr = broker.local_addrs()[0];
    let (mut sub, connack) = Client::connect_with(addr, v5_connect("away", false, 300)).await;
    assert!(connack.session_present);
    let p = sub.expect_publish().await;
    assert_eq!(&p.payload[..], b"four");
    assert!(p.dup);
    sub.send(Packet::PubAck(Ack::new(p.packet_id.unwrap())))
        .await;
    assert!(sub.ping().await.is_empty());
    assert!(broker.shutdown().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn qos2_in_flight_resumes_with_pubrel_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let addr = broker.local_addrs()[0];
    let (mut sub, _) = Client::connect_with(addr, v5_connect("q2", true, 300)).await;
    sub.subscribe(1, "t", opts(QoS::ExactlyOnce)).await;
    let mut publisher = Client::connected(addr, V5, "pub", true).await;
    publisher
        .send(Packet::Publish(publish(
            "t",
            "once",
            QoS::ExactlyOnce,
            Some(1),
        )))
        .await;
    assert!(matches!(publisher.recv().await, Packet::PubRec(_)));
    let p = sub.expect_publish().await;
    let id = p.packet_id.unwrap();
    sub.send(Packet::PubRec(Ack::new(id))).await;
    // PUBREL leaves only once the state that led to it is committed.
    assert!(matches!(sub.recv().await, Packet::PubRel(_)));
    sub.drop_connection();
    publisher.drop_connection();

    let broker = restart(broker, dir.path()).await;
    let addr = broker.local_addrs()[0];
    let (mut sub, connack) = Client::connect_with(addr, v5_connect("q2", false, 300)).await;
    assert!(connack.session_present);
    // [MQTT-4.4.0-1]: the PUBREL is resent, not the PUBLISH: delivered exactly once.
    match sub.recv().await {
        Packet::PubRel(rel) => assert_eq!(rel.packet_id, id),
        other => panic!("expected PUBREL, got {other:?}"),
    }
    sub.send(Packet::PubComp(Ack::new(id))).await;
    assert!(sub.ping().await.is_empty());
    assert!(broker.shutdown().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn session_and_message_expiry_count_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let addr = broker.local_addrs()[0];
    // One session that expires while the broker is down, one that does not.
    let (mut short, _) = Client::connect_with(addr, v5_connect("short", true, 1)).await;
    short.subscribe(1, "t", opts(QoS::AtLeastOnce)).await;
    short.disconnect().await;
    let (mut long, _) = Client::connect_with(addr, v5_connect("long", true, 300)).await;
    long.subscribe(1, "t", opts(QoS::AtLeastOnce)).await;
    long.disconnect().await;
    let mut publisher = Client::connected(addr, V5, "pub", true).await;
    // A message that expires while the broker is down, one that does not; the same for
    // retained messages [MQTT-3.3.2-5].
    for (id, topic, payload, expiry, retain) in [
        (1, "t", "brief", 1, false),
        (2, "t", "lasting", 300, false),
        (3, "r/brief", "x", 1, true),
        (4, "r/lasting", "y", 300, true),
    ] {
        let mut p = publish(topic, payload, QoS::AtLeastOnce, Some(id));
        p.retain = retain;
        p.properties.message_expiry_interval = Some(expiry);
        publisher.send(Packet::Publish(p)).await;
        assert!(matches!(publisher.recv().await, Packet::PubAck(_)));
    }
    publisher.disconnect().await;
    assert!(broker.shutdown().await);
    // Down for longer than the short intervals.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let broker = start(dir.path()).await;
    let addr = broker.local_addrs()[0];
    assert_eq!(broker.stats().sessions, 1);
    assert_eq!(broker.stats().sessions_expired, 1);
    assert_eq!(broker.stats().retained, 1);

    // [MQTT-3.1.2-23]: the session expired while the broker was down: a new one starts.
    let (mut short, connack) = Client::connect_with(addr, v5_connect("short", false, 300)).await;
    assert!(!connack.session_present);
    assert!(short.ping().await.is_empty());
    let (mut long, connack) = Client::connect_with(addr, v5_connect("long", false, 300)).await;
    assert!(connack.session_present);
    let p = long.expect_publish().await;
    assert_eq!(&p.payload[..], b"lasting");
    // [MQTT-3.3.2-6]: the interval sent is reduced by the time the message waited.
    let left = p.properties.message_expiry_interval.unwrap();
    assert!((290..300).contains(&left), "{left}");
    long.send(Packet::PubAck(Ack::new(p.packet_id.unwrap())))
        .await;
    assert!(long.ping().await.is_empty());
    long.subscribe(2, "r/#", opts(QoS::AtMostOnce)).await;
    assert_eq!(&long.expect_publish().await.topic[..], "r/lasting");
    assert!(long.ping().await.is_empty());
    assert!(broker.shutdown().await);
}

/// A storage whose commits wait for the test to let them through.
#[derive(Debug, Default)]
struct Gate {
    inner: MemoryStorage,
    open: parking_lot::Mutex<bool>,
    opened: parking_lot::Condvar,
    waiting: std::sync::atomic::AtomicUsize,
}

impl Storage for Gate {
    fn commit(&self, ops: &[StorageOp]) -> Result<(), StorageError> {
        let mut open = self.open.lock();
        self.waiting
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        while !*open {
            self.opened.wait(&mut open);
        }
        self.waiting
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.commit(ops)
    }

    fn load(&self) -> Result<Recovered, StorageError> {
        self.inner.load()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn puback_waits_for_the_commit_and_clean_sessions_skip_the_store() {
    let gate = Arc::new(Gate::default());
    let mut config = config();
    config.sys_interval = 0;
    let broker = Broker::new(config)
        .with_storage(gate.clone())
        .start()
        .await
        .unwrap();
    let addr = broker.local_addrs()[0];
    // A clean session's subscription and messages never reach the store.
    let mut clean = Client::connected(addr, V5, "clean", true).await;
    clean.subscribe(1, "t", opts(QoS::AtLeastOnce)).await;
    let mut publisher = Client::connected(addr, V5, "pub", true).await;
    assert_eq!(
        publisher.publish_qos1(1, "t", "a", false).await.reason_code,
        ReasonCode::Success
    );
    assert_eq!(&clean.expect_publish().await.payload[..], b"a");
    assert_eq!(gate.waiting.load(std::sync::atomic::Ordering::SeqCst), 0);
    assert_eq!(gate.inner.commits(), 0);

    // A retained message is stored: its PUBACK waits for the commit, while the connection
    // goes on (PINGRESP comes first).
    let mut p = publish("r", "kept", QoS::AtLeastOnce, Some(2));
    p.retain = true;
    publisher.send(Packet::Publish(p)).await;
    let before = publisher.ping().await;
    assert!(before.is_empty(), "{before:?}");
    assert_eq!(gate.waiting.load(std::sync::atomic::Ordering::SeqCst), 1);
    *gate.open.lock() = true;
    gate.opened.notify_all();
    match publisher.recv().await {
        Packet::PubAck(a) => assert_eq!(a.packet_id, pid(2)),
        other => panic!("expected PUBACK, got {other:?}"),
    }
    assert_eq!(gate.inner.commits(), 1);
    publisher.disconnect().await;
    clean.disconnect().await;
    assert!(broker.shutdown().await);
}

#[tokio::test]
async fn a_store_that_cannot_be_opened_is_an_error_and_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(tern_broker::storage::DATABASE_FILE);
    std::fs::write(
        &file,
        b"this is not a redb database, and must not be replaced",
    )
    .unwrap();
    let e = RedbStorage::open(dir.path()).unwrap_err();
    assert!(e.to_string().contains("tern.redb"), "{e}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"this is not a redb database, and must not be replaced"
    );
    // Through the configuration, as ternd starts.
    let mut config = config();
    config.persistence = true;
    config.persistence_location = dir.path().to_owned();
    assert!(matches!(
        Broker::from_config(config),
        Err(tern_broker::StartError::Storage(_))
    ));
}

#[tokio::test]
async fn a_store_of_another_format_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db =
            redb::Database::create(dir.path().join(tern_broker::storage::DATABASE_FILE)).unwrap();
        let txn = db.begin_write().unwrap();
        {
            let table: redb::TableDefinition<'_, &str, u64> = redb::TableDefinition::new("meta");
            let mut meta = txn.open_table(table).unwrap();
            meta.insert("format", 99).unwrap();
        }
        txn.commit().unwrap();
    }
    let e = RedbStorage::open(dir.path()).unwrap_err();
    assert!(e.to_string().contains("format version 99"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn retain_handling_and_clean_start_forget_the_stored_session() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let addr = broker.local_addrs()[0];
    let (mut sub, _) = Client::connect_with(addr, v5_connect("gone", true, 300)).await;
    sub.subscribe(
        1,
        "t",
        retain_handling(QoS::AtLeastOnce, RetainHandling::DoNotSend),
    )
    .await;
    sub.disconnect().await;
    // [MQTT-3.1.2-4]: Clean Start discards the stored session, durably.
    let (sub, connack) = Client::connect_with(addr, v5_connect("gone", true, 300)).await;
    assert!(!connack.session_present);
    sub.disconnect().await;
    let broker = restart(broker, dir.path()).await;
    assert_eq!(broker.stats().subscriptions, 0);
    assert_eq!(broker.stats().sessions, 1);
    assert!(broker.shutdown().await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delayed_will_is_sent_after_a_restart_and_only_once() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start(dir.path()).await;
    let addr = broker.local_addrs()[0];
    let mut c = v5_connect("mortal", true, 300);
    let mut w = will("wills/mortal", "gone");
    w.properties.will_delay_interval = Some(3);
    c.will = Some(w);
    let (client, connack) = Client::connect_with(addr, c).await;
    assert_eq!(connack.reason_code, ReasonCode::Success);
    // An unclean end: the Will waits for its delay [MQTT-3.1.3-9]; the broker stops first,
    // with the Will stored.
    client.drop_connection();
    wait_for_stats(&broker, "the client gone", |s| s.clients_connected == 0).await;
    assert!(broker.shutdown().await);
    let stored = |dir: &Path| {
        let recovered = RedbStorage::open(dir).unwrap().load().unwrap();
        assert_eq!(recovered.sessions.len(), 1);
        recovered.sessions[0].session.will.clone()
    };
    assert_eq!(stored(dir.path()).unwrap().delay, 3);
    let broker = start(dir.path()).await;
    let addr = broker.local_addrs()[0];
    let mut watcher = Client::connected(addr, V5, "watcher", true).await;
    watcher.subscribe(1, "wills/#", opts(QoS::AtMostOnce)).await;
    let p = watcher.expect_publish().await;
    assert_eq!(
        (&p.topic[..], &p.payload[..]),
        ("wills/mortal", &b"gone"[..])
    );
    assert!(watcher.ping().await.is_empty());
    watcher.disconnect().await;
    // Sent once: the stored session no longer has it.
    assert!(broker.shutdown().await);
    assert_eq!(stored(dir.path()), None);
}

/// A broker on the store in `dir` with an ACL: user `alice` (password `a`) reads `alice/#`,
/// anonymous clients write `alice/#`.
async fn start_with_acl(dir: &Path) -> BrokerHandle {
    let pw = dir.join("passwd");
    if !pw.exists() {
        let status = std::process::Command::new(env!("CARGO_BIN_EXE_ternd"))
            .args(["passwd", "-c", "-b"])
            .arg(&pw)
            .args(["alice", "a"])
            .status()
            .unwrap();
        assert!(status.success());
        std::fs::write(
            dir.join("acl"),
            "topic write alice/#\n\nuser alice\ntopic read alice/#\n",
        )
        .unwrap();
    }
    let mut config = config();
    config.sys_interval = 0;
    config.auth.password_file = Some(pw);
    config.auth.acl_file = Some(dir.join("acl"));
    config.auth.allow_anonymous = Some(true);
    let storage = RedbStorage::open(dir.join("store")).expect("store opens");
    Broker::new(config)
        .with_storage(Arc::new(storage))
        .start()
        .await
        .expect("broker starts")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_restored_session_meets_the_acl_as_its_last_user() {
    // A persistent session restored at start has no connection yet: deliveries to it are
    // judged with the username of its last connection (stored with it), so a message its user
    // may read is queued, not refused, while the client is away [MQTT-3.1.2-5].
    let dir = tempfile::tempdir().unwrap();
    let broker = start_with_acl(dir.path()).await;
    let addr = broker.local_addrs()[0];
    let mut c = v5_connect("alice-1", true, 300);
    c.username = Some(s("alice"));
    c.password = Some(bytes::Bytes::from_static(b"a"));
    let (mut alice, connack) = Client::connect_with(addr, c.clone()).await;
    assert_eq!(connack.reason_code, ReasonCode::Success);
    let suback = alice.subscribe(1, "alice/#", opts(QoS::AtLeastOnce)).await;
    assert_eq!(suback.reason_codes, [ReasonCode::GrantedQoS1]);
    alice.disconnect().await;

    assert!(broker.shutdown().await);
    let broker = start_with_acl(dir.path()).await;
    let addr = broker.local_addrs()[0];
    let mut publisher = Client::connected(addr, V5, "anon-pub", true).await;
    assert_eq!(
        publisher
            .publish_qos1(1, "alice/inbox", "while away", false)
            .await
            .reason_code,
        ReasonCode::Success
    );
    publisher.disconnect().await;
    c.clean_start = false;
    let (mut alice, connack) = Client::connect_with(addr, c).await;
    assert!(connack.session_present);
    let p = alice.expect_publish().await;
    assert_eq!(&p.payload[..], b"while away");
    alice
        .send(Packet::PubAck(Ack::new(p.packet_id.unwrap())))
        .await;
    assert!(alice.ping().await.is_empty());
    assert!(broker.shutdown().await);
}
