//! Reconnection, session resume, the offline queue and manual acknowledgements, against an
//! in-process `ternd` (restarted on the same port, or behind a proxy that swallows and cuts
//! traffic).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::FutureExt;
use support::*;
use tern_client::{AckMode, Client, ConnectionEvent, Error, OutgoingMessage, OverflowPolicy, QoS};
use tern_codec::{Packet, PacketId};

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn qos1(topic: &str, payload: &'static str) -> OutgoingMessage {
    OutgoingMessage::new(topic, payload).qos(QoS::AtLeastOnce)
}

#[tokio::test]
async fn restart_restores_subscriptions_and_delivers_messages_published_offline() {
    let addr = loopback(free_port());
    let broker = ternd_on(addr).await;
    let c = within(
        "connect",
        Client::builder(&url(addr))
            .unwrap()
            .client_id("restart")
            .reconnect(fast_reconnect())
            .connect(),
    )
    .await
    .unwrap();
    let mut events = c.connection_events();
    let mut sub = c.subscribe("rs/t", QoS::AtLeastOnce).await.unwrap();
    c.publish("rs/t", QoS::AtLeastOnce, "before").await.unwrap();
    assert_eq!(next(&mut sub).await.payload(), "before");

    assert!(broker.shutdown().await);
    drop(broker);
    wait_disconnected(&mut events).await;

    // Published during the outage: they wait in the offline queue.
    let during = c.enqueue(qos1("rs/t", "during")).await.unwrap();
    let during0 = c
        .enqueue(OutgoingMessage::new("rs/t", "during-qos0"))
        .await
        .unwrap();
    let during = during
        .try_result()
        .expect_err("cannot be acknowledged while offline");
    wait_event(
        &mut events,
        "Reconnecting",
        |e| matches!(e, ConnectionEvent::Reconnecting { attempt, .. } if *attempt >= 1),
    )
    .await;

    let _broker = ternd_on(addr).await;
    // A new broker has no session: the client subscribes again by itself.
    assert!(!wait_connected(&mut events).await);
    within("PUBACK of the queued message", during)
        .await
        .unwrap();
    within("QoS 0 written", during0).await.unwrap();
    assert_eq!(next(&mut sub).await.payload(), "during");
    assert_eq!(next(&mut sub).await.payload(), "during-qos0");
}

/// Messages in flight when the connection drops are re-sent with DUP and their original
/// packet identifiers when the session resumes [MQTT-4.4.0-1], [MQTT-3.3.1-1].
#[tokio::test]
async fn in_flight_messages_are_resent_with_dup_on_session_resume() {
    let broker = ternd().await;
    let proxy = Proxy::start(broker.local_addrs()[0]).await;
    let watcher = within(
        "watcher",
        Client::builder(&url(broker.local_addrs()[0]))
            .unwrap()
            .connect(),
    )
    .await
    .unwrap();
    let mut watch = watcher.subscribe("dup/#", QoS::ExactlyOnce).await.unwrap();
    let c = within(
        "connect",
        Client::builder(&url(proxy.addr))
            .unwrap()
            .client_id("dup")
            .session_expiry(Duration::from_secs(60))
            .reconnect(fast_reconnect())
            .connect(),
    )
    .await
    .unwrap();
    let mut events = c.connection_events();

    proxy.swallow(true);
    let one = c.enqueue(qos1("dup/1", "one")).await.unwrap();
    let two = c
        .enqueue(OutgoingMessage::new("dup/2", "two").qos(QoS::ExactlyOnce))
        .await
        .unwrap();
    let is_publish = |p: &Packet, topic: &str| matches!(p, Packet::Publish(p) if p.topic == topic);
    let first = proxy
        .wait_sent("the swallowed PUBLISH packets", 0, |ps| {
            ps.iter().any(|p| is_publish(p, "dup/2"))
        })
        .await;
    let ids: Vec<(bool, Option<PacketId>)> = first
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) if p.topic.starts_with("dup/") => Some((p.dup, p.packet_id)),
            _ => None,
        })
        .collect();
    assert!(
        ids.iter().all(|(dup, _)| !dup),
        "DUP is 0 on the first attempt"
    );

    proxy.swallow(false);
    proxy.cut();
    wait_disconnected(&mut events).await;
    assert!(
        wait_connected(&mut events).await,
        "the broker kept the session"
    );
    within("PUBACK", one).await.unwrap();
    within("PUBCOMP", two).await.unwrap();

    let resent = proxy.sent(1);
    let resent: Vec<(bool, Option<PacketId>)> = decode_all(&resent)
        .iter()
        .filter_map(|p| match p {
            Packet::Publish(p) if p.topic.starts_with("dup/") => Some((p.dup, p.packet_id)),
            _ => None,
        })
        .collect();
    let expected: Vec<_> = ids.iter().map(|(_, id)| (true, *id)).collect();
    assert_eq!(
        resent, expected,
        "re-sent with DUP, same identifiers, same order"
    );
    let mut got = [next(&mut watch).await, next(&mut watch).await];
    got.sort_by(|a, b| a.topic().cmp(b.topic()));
    assert_eq!(
        (got[0].payload(), got[1].payload()),
        (&"one".into(), &"two".into())
    );
}

/// When the broker comes back without the session, messages that were in flight are
/// published again as new messages (the engine discarded its state [MQTT-3.2.2-5]).
#[tokio::test]
async fn in_flight_messages_are_republished_when_the_broker_lost_the_session() {
    let addr = loopback(free_port());
    let broker = ternd_on(addr).await;
    let proxy = Proxy::start(addr).await;
    let c = within(
        "connect",
        Client::builder(&url(proxy.addr))
            .unwrap()
            .client_id("lost")
            .session_expiry(Duration::from_secs(60))
            .reconnect(fast_reconnect())
            .connect(),
    )
    .await
    .unwrap();
    let mut events = c.connection_events();
    let mut sub = c.subscribe("lost/t", QoS::AtLeastOnce).await.unwrap();
    proxy.swallow(true);
    let token = c.enqueue(qos1("lost/t", "again")).await.unwrap();
    proxy
        .wait_sent("the swallowed PUBLISH", 0, |ps| {
            ps.iter().any(|p| matches!(p, Packet::Publish(_)))
        })
        .await;
    assert!(broker.shutdown().await);
    drop(broker);
    proxy.cut();
    wait_disconnected(&mut events).await;
    let _broker = ternd_on(addr).await;
    proxy.swallow(false);
    assert!(!wait_connected(&mut events).await);
    within("PUBACK of the re-published message", token)
        .await
        .unwrap();
    assert_eq!(next(&mut sub).await.payload(), "again");
}

#[tokio::test]
async fn offline_queue_reject_policy_refuses_the_newest_message() {
    let addr = loopback(free_port());
    let c = Client::builder(&url(addr))
        .unwrap()
        .client_id("reject")
        .offline_queue(2, OverflowPolicy::Reject)
        .reconnect(fast_reconnect())
        .build()
        .unwrap();
    let mut events = c.connection_events();
    let first = c.enqueue(qos1("q/t", "1")).await.unwrap();
    let second = c.enqueue(qos1("q/t", "2")).await.unwrap();
    assert!(matches!(
        c.enqueue(qos1("q/t", "3")).await,
        Err(Error::QueueFull)
    ));
    assert!(matches!(
        c.publish("q/t", QoS::AtLeastOnce, "4").await,
        Err(Error::QueueFull)
    ));
    assert!(matches!(
        c.try_publish("q/t", QoS::AtLeastOnce, "5"),
        Err(Error::QueueFull)
    ));
    // Subscribed while offline: resolves once connected, before the queue drains.
    let c2 = c.clone();
    let sub = tokio::spawn(async move { c2.subscribe("q/t", QoS::AtLeastOnce).await });
    let _broker = ternd_on(addr).await;
    wait_connected(&mut events).await;
    let mut sub = within("subscribe", sub).await.unwrap().unwrap();
    within("first", first).await.unwrap();
    within("second", second).await.unwrap();
    // The queued ones arrive, in order; the refused ones never do.
    assert_eq!(next(&mut sub).await.payload(), "1");
    assert_eq!(next(&mut sub).await.payload(), "2");
    c.publish("q/t", QoS::AtLeastOnce, "after").await.unwrap();
    assert_eq!(next(&mut sub).await.payload(), "after");
}

#[tokio::test]
async fn offline_queue_wait_policy_makes_publish_wait_for_room() {
    let addr = loopback(free_port());
    let c = Client::builder(&url(addr))
        .unwrap()
        .client_id("wait")
        .offline_queue(2, OverflowPolicy::Wait)
        .reconnect(fast_reconnect())
        .build()
        .unwrap();
    let mut events = c.connection_events();
    let first = c.enqueue(qos1("w/t", "1")).await.unwrap();
    let second = c.enqueue(qos1("w/t", "2")).await.unwrap();
    // Full: `try_publish` says so, `publish` waits.
    assert!(matches!(
        c.try_publish("w/t", QoS::AtLeastOnce, "x"),
        Err(Error::QueueFull)
    ));
    let mut third = Box::pin(c.publish("w/t", QoS::AtLeastOnce, "3"));
    assert!((&mut third).now_or_never().is_none(), "waits for room");
    let c2 = c.clone();
    let sub = tokio::spawn(async move { c2.subscribe("w/t", QoS::AtLeastOnce).await });
    let _broker = ternd_on(addr).await;
    wait_connected(&mut events).await;
    let mut sub = within("subscribe", sub).await.unwrap().unwrap();
    within("third", third).await.unwrap();
    within("first", first).await.unwrap();
    within("second", second).await.unwrap();
    for payload in ["1", "2", "3"] {
        assert_eq!(next(&mut sub).await.payload(), payload);
    }
}

/// Manual acknowledgements leave in the order the messages arrived, whatever order the
/// application acknowledges them in [MQTT-4.6.0-2]; the broker's window (the client's
/// Receive Maximum) stays used until they do [MQTT-3.3.4-9].
#[tokio::test]
async fn manual_acks_go_out_in_arrival_order() {
    let broker = ternd().await;
    let proxy = Proxy::start(broker.local_addrs()[0]).await;
    let c = within(
        "connect",
        Client::builder(&url(proxy.addr))
            .unwrap()
            .client_id("manual")
            .ack_mode(AckMode::Manual)
            .receive_maximum(2)
            .connect(),
    )
    .await
    .unwrap();
    let mut sub = c.subscribe("m/t", QoS::AtLeastOnce).await.unwrap();
    let publisher = within(
        "publisher",
        Client::builder(&url(broker.local_addrs()[0]))
            .unwrap()
            .connect(),
    )
    .await
    .unwrap();
    for payload in ["1", "2", "3"] {
        publisher.publish_with(qos1("m/t", payload)).await.unwrap();
    }
    let m1 = next(&mut sub).await;
    let m2 = next(&mut sub).await;
    assert!(m1.needs_ack() && m2.needs_ack());
    assert_eq!((m1.payload(), m2.payload()), (&"1".into(), &"2".into()));
    // The third message waits at the broker: two are unacknowledged.
    assert!(sub.recv().now_or_never().is_none());
    m2.ack().unwrap();
    m1.ack().unwrap();
    let m3 = next(&mut sub).await;
    assert_eq!(m3.payload(), "3");
    m3.ack().unwrap();
    m3.ack().unwrap(); // a second acknowledgement is a no-op
    let id = |m: &tern_client::Message| m.publish().packet_id.unwrap();
    let expected = vec![id(&m1), id(&m2), id(&m3)];
    let sent = proxy
        .wait_sent("three PUBACKs", 0, |ps| {
            ps.iter().filter(|p| matches!(p, Packet::PubAck(_))).count() == 3
        })
        .await;
    let acks: Vec<PacketId> = sent
        .iter()
        .filter_map(|p| match p {
            Packet::PubAck(a) => Some(a.packet_id),
            _ => None,
        })
        .collect();
    assert_eq!(acks, expected);
}

#[tokio::test]
async fn reconnect_disabled_stops_the_client_when_the_connection_ends() {
    let addr = loopback(free_port());
    let broker = ternd_on(addr).await;
    let c = within(
        "connect",
        Client::builder(&url(addr))
            .unwrap()
            .reconnect(tern_client::ReconnectOptions::disabled())
            .connect(),
    )
    .await
    .unwrap();
    let mut events = c.connection_events();
    let mut sub = c.subscribe("stop/t", QoS::AtMostOnce).await.unwrap();
    assert!(broker.shutdown().await);
    wait_disconnected(&mut events).await;
    assert!(within("events end", events.recv()).await.is_none());
    assert!(within("stream end", sub.recv()).await.is_none());
    assert!(matches!(
        c.publish("stop/t", QoS::AtMostOnce, "x").await,
        Err(Error::Closed)
    ));
}

#[tokio::test]
async fn connect_reports_a_failed_first_attempt() {
    let addr = loopback(free_port());
    let err = within("connect", Client::builder(&url(addr)).unwrap().connect())
        .await
        .unwrap_err();
    assert!(matches!(
        err.reason(),
        Some(tern_client::DisconnectReason::Transport(_))
    ));
}
