//! The client against an in-process `ternd`: QoS round trips, acknowledgement futures,
//! subscription and catch-all streams, back-pressure, and publishing from a handler.

mod support;

use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use support::*;
use tern_broker::Config;
use tern_client::{
    Client, ConnectionEvent, DisconnectReason, Error, OutgoingMessage, ProtocolVersion, QoS,
    ReasonCode, SubscribeOptions,
};

async fn client(addr: std::net::SocketAddr, version: ProtocolVersion, id: &str) -> Client {
    within(
        "connect",
        Client::builder(&url(addr))
            .unwrap()
            .protocol(version)
            .client_id(id)
            .reconnect(fast_reconnect())
            .connect(),
    )
    .await
    .expect("connects")
}

async fn round_trip(version: ProtocolVersion) {
    let broker = ternd().await;
    let addr = broker.local_addrs()[0];
    let c = client(addr, version, "round-trip").await;
    let mut sub = within("subscribe", c.subscribe("rt/#", QoS::ExactlyOnce))
        .await
        .unwrap();
    assert_eq!(sub.granted_qos(), QoS::ExactlyOnce);

    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let topic = format!("rt/{}", qos.as_u8());
        let ack = within(
            "publish",
            c.publish(topic.clone(), qos, format!("m{}", qos.as_u8())),
        )
        .await
        .unwrap();
        // Done at its QoS: written (0), PUBACK (1), PUBCOMP (2).
        assert_eq!(ack.qos, qos);
        assert!(!ack.reason_code.is_error());
        let m = next(&mut sub).await;
        assert_eq!(m.topic(), topic);
        assert_eq!(
            m.qos(),
            qos,
            "granted QoS 2 keeps the publish QoS [MQTT-3.8.4-8]"
        );
        assert_eq!(m.payload(), &Bytes::from(format!("m{}", qos.as_u8())));
        assert!(!m.needs_ack());
    }
    c.disconnect().await;
    assert!(c.is_closed());
}

#[tokio::test]
async fn qos_0_1_2_round_trip_v5() {
    round_trip(ProtocolVersion::V5).await;
}

#[tokio::test]
async fn qos_0_1_2_round_trip_v311() {
    round_trip(ProtocolVersion::V3_1_1).await;
}

#[tokio::test]
async fn ack_future_carries_the_puback_reason_code() {
    let broker = ternd().await;
    let c = client(broker.local_addrs()[0], ProtocolVersion::V5, "no-match").await;
    // Nobody subscribed: ternd answers PUBACK 0x10 No matching subscribers, a success code
    // (MQTT 5.0 section 3.4.2.1).
    let ack = within(
        "publish",
        c.publish("nobody/listens", QoS::AtLeastOnce, "x"),
    )
    .await
    .unwrap();
    assert_eq!(ack.reason_code, ReasonCode::NoMatchingSubscribers);
    let ack = within(
        "publish",
        c.publish("nobody/listens", QoS::ExactlyOnce, "x"),
    )
    .await
    .unwrap();
    assert_eq!(ack.qos, QoS::ExactlyOnce);
}

#[tokio::test]
async fn granted_qos_is_the_minimum_and_delivery_is_downgraded() {
    let broker = ternd().await;
    let addr = broker.local_addrs()[0];
    let c = client(addr, ProtocolVersion::V5, "downgrade").await;
    let mut sub = c.subscribe("dg/t", QoS::AtLeastOnce).await.unwrap();
    assert_eq!(sub.granted_qos(), QoS::AtLeastOnce);
    c.publish("dg/t", QoS::ExactlyOnce, "two").await.unwrap();
    // Delivered at the minimum of the publish QoS and the granted QoS [MQTT-3.8.4-8].
    assert_eq!(next(&mut sub).await.qos(), QoS::AtLeastOnce);
}

#[tokio::test]
async fn catch_all_stream_gets_every_message_besides_the_subscription() {
    let broker = ternd().await;
    let c = client(broker.local_addrs()[0], ProtocolVersion::V5, "catch-all").await;
    let mut all = c.messages().unwrap();
    let mut a = c.subscribe("a/+", QoS::AtLeastOnce).await.unwrap();
    let mut b = c.subscribe("b/#", QoS::AtLeastOnce).await.unwrap();
    c.publish("a/1", QoS::AtLeastOnce, "1").await.unwrap();
    c.publish("b/2/3", QoS::AtLeastOnce, "2").await.unwrap();
    assert_eq!(next(&mut a).await.topic(), "a/1");
    assert_eq!(next(&mut b).await.topic(), "b/2/3");
    let first = within("catch-all", all.next()).await.unwrap();
    let second = within("catch-all", all.next()).await.unwrap();
    assert_eq!((first.topic(), second.topic()), ("a/1", "b/2/3"));
}

#[tokio::test]
async fn two_streams_on_one_filter_both_receive() {
    let broker = ternd().await;
    let c = client(
        broker.local_addrs()[0],
        ProtocolVersion::V5,
        "shared-filter",
    )
    .await;
    let mut one = c.subscribe("same/topic", QoS::AtLeastOnce).await.unwrap();
    let mut two = c.subscribe("same/topic", QoS::AtLeastOnce).await.unwrap();
    c.publish("same/topic", QoS::AtLeastOnce, "x")
        .await
        .unwrap();
    assert_eq!(next(&mut one).await.payload(), "x");
    assert_eq!(next(&mut two).await.payload(), "x");
    // Dropping one keeps the broker's subscription for the other.
    drop(one);
    c.publish("same/topic", QoS::AtLeastOnce, "y")
        .await
        .unwrap();
    assert_eq!(next(&mut two).await.payload(), "y");
    assert_eq!(broker.stats().subscriptions, 1);
}

#[tokio::test]
async fn unsubscribe_resolves_after_unsuback_and_drop_unsubscribes() {
    let broker = ternd().await;
    let c = client(broker.local_addrs()[0], ProtocolVersion::V5, "unsub").await;
    let explicit = c.subscribe("u/explicit", QoS::AtMostOnce).await.unwrap();
    let dropped = c.subscribe("u/dropped", QoS::AtMostOnce).await.unwrap();
    assert_eq!(broker.stats().subscriptions, 2);
    within("unsubscribe", explicit.unsubscribe()).await.unwrap();
    // UNSUBACK came back, so the broker removed it.
    assert_eq!(broker.stats().subscriptions, 1);
    drop(dropped);
    eventually("the dropped stream to unsubscribe", || {
        broker.stats().subscriptions == 0
    })
    .await;
}

#[tokio::test]
async fn subscription_identifiers_are_on_received_messages() {
    let broker = ternd().await;
    let c = client(broker.local_addrs()[0], ProtocolVersion::V5, "sub-ids").await;
    let mut wide = c.subscribe("ids/#", QoS::AtMostOnce).await.unwrap();
    let mut narrow = c.subscribe("ids/x", QoS::AtMostOnce).await.unwrap();
    c.publish("ids/x", QoS::AtLeastOnce, "both").await.unwrap();
    let w = next(&mut wide).await;
    let n = next(&mut narrow).await;
    // The broker sends the identifiers of the matching subscriptions [MQTT-3.3.4-3]; each
    // stream gets the message once.
    assert!(!w.subscription_identifiers().is_empty());
    assert!(!n.subscription_identifiers().is_empty());
    c.publish("ids/y", QoS::AtLeastOnce, "wide only")
        .await
        .unwrap();
    assert_eq!(next(&mut wide).await.payload(), "wide only");
    c.publish("ids/x", QoS::AtLeastOnce, "again").await.unwrap();
    assert_eq!(next(&mut narrow).await.payload(), "again");
}

#[tokio::test]
async fn user_properties_and_request_response() {
    let broker = ternd().await;
    let addr = broker.local_addrs()[0];
    let responder = client(addr, ProtocolVersion::V5, "responder").await;
    let requester_client = client(addr, ProtocolVersion::V5, "requester").await;
    let mut requests = responder
        .subscribe("svc/echo", QoS::AtLeastOnce)
        .await
        .unwrap();
    let server = tokio::spawn(async move {
        while let Some(request) = requests.recv().await {
            let name = request
                .user_properties()
                .iter()
                .find(|(k, _)| k == "name")
                .map(|(_, v)| v.to_string())
                .unwrap_or_default();
            let reply = request
                .reply(format!("hello {name}"))
                .expect("has a response topic")
                .user_property("served-by", "responder");
            responder.publish_with(reply).await.unwrap();
        }
    });
    let mut requester = requester_client
        .requester("replies/requester")
        .await
        .unwrap();
    for name in ["ada", "grace"] {
        let request = OutgoingMessage::new("svc/echo", "hi")
            .qos(QoS::AtLeastOnce)
            .user_property("name", name);
        let response = requester.request(request, TIMEOUT).await.unwrap();
        assert_eq!(response.payload(), &Bytes::from(format!("hello {name}")));
        assert!(response.correlation_data().is_some());
        assert_eq!(
            response.user_properties()[0],
            (
                "served-by".try_into().unwrap(),
                "responder".try_into().unwrap()
            )
        );
    }
    server.abort();
}

/// A handler that publishes and awaits each acknowledgement while a burst larger than its
/// stream buffer arrives: the driver keeps reading, so the acknowledgements get through.
async fn publish_from_handler(version: ProtocolVersion) {
    const N: usize = 60;
    let broker = ternd().await;
    let addr = broker.local_addrs()[0];
    let handler_client = client(addr, version, "handler").await;
    let source = client(addr, version, "source").await;
    let mut echoes = source
        .subscribe("echo/out", QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut input = handler_client
        .subscribe("echo/in", SubscribeOptions::new(QoS::AtLeastOnce).buffer(2))
        .await
        .unwrap();
    let hc = handler_client.clone();
    let handler = tokio::spawn(async move {
        for _ in 0..N {
            let m = input.recv().await.expect("message");
            hc.publish("echo/out", QoS::AtLeastOnce, m.payload().clone())
                .await
                .expect("publish from the handler");
        }
    });
    // The burst: queued at once, far more than the handler's stream holds.
    let mut tokens = Vec::new();
    for i in 0..N {
        let message = OutgoingMessage::new("echo/in", i.to_string()).qos(QoS::AtLeastOnce);
        tokens.push(source.enqueue(message).await.unwrap());
    }
    for token in tokens {
        within("the burst's acknowledgements", token).await.unwrap();
    }
    for i in 0..N {
        assert_eq!(
            next(&mut echoes).await.payload(),
            &Bytes::from(i.to_string())
        );
    }
    within("the handler", handler).await.unwrap();
}

#[tokio::test]
async fn publishing_from_a_handler_never_deadlocks_v5() {
    publish_from_handler(ProtocolVersion::V5).await;
}

#[tokio::test]
async fn publishing_from_a_handler_never_deadlocks_v311() {
    publish_from_handler(ProtocolVersion::V3_1_1).await;
}

#[tokio::test]
async fn receive_maximum_back_pressure_is_waited_for() {
    let mut config = Config::with_listeners(["127.0.0.1:0".parse().unwrap()]);
    config.limits.receive_maximum = 2;
    let broker = ternd_with(config).await;
    let c = client(broker.local_addrs()[0], ProtocolVersion::V5, "window").await;
    let mut events = c.connection_events();
    let mut sub = c.subscribe("win/t", QoS::AtLeastOnce).await.unwrap();
    let mut tokens = Vec::new();
    for i in 0..20 {
        let m = OutgoingMessage::new("win/t", i.to_string()).qos(QoS::AtLeastOnce);
        tokens.push(c.enqueue(m).await.unwrap());
    }
    for token in tokens {
        within("acknowledgement", token).await.unwrap();
    }
    for i in 0..20 {
        assert_eq!(next(&mut sub).await.payload(), &Bytes::from(i.to_string()));
    }
    // Sending a third unacknowledged PUBLISH would be a protocol error the broker answers
    // with DISCONNECT 0x93 [MQTT-3.3.4-7]; the connection stayed up.
    let quiet = events.recv().now_or_never();
    assert!(quiet.is_none(), "unexpected connection event: {quiet:?}");
}

#[tokio::test]
async fn try_publish_and_blocking_wait_from_a_thread() {
    let broker = ternd().await;
    let c = client(broker.local_addrs()[0], ProtocolVersion::V5, "sync").await;
    let mut sub = c.subscribe("sync/t", QoS::AtLeastOnce).await.unwrap();
    let c2 = c.clone();
    let thread = std::thread::spawn(move || {
        let token = c2
            .try_publish("sync/t", QoS::AtLeastOnce, "from a thread")
            .unwrap();
        token.blocking_wait()
    });
    assert_eq!(next(&mut sub).await.payload(), "from a thread");
    let ack = within(
        "thread",
        tokio::task::spawn_blocking(move || thread.join().unwrap()),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(ack.qos, QoS::AtLeastOnce);
}

#[tokio::test]
async fn invalid_topics_are_refused_before_queueing() {
    let broker = ternd().await;
    let c = client(broker.local_addrs()[0], ProtocolVersion::V5, "invalid").await;
    assert!(matches!(
        c.publish("a/+/b", QoS::AtMostOnce, "x").await,
        Err(Error::InvalidTopic(_))
    ));
    assert!(matches!(
        c.subscribe("a/#/b", QoS::AtMostOnce).await,
        Err(Error::InvalidTopic(_))
    ));
}

#[tokio::test]
async fn connection_events_report_connected_and_the_stream_ends_on_disconnect() {
    let broker = ternd().await;
    let c = Client::builder(&url(broker.local_addrs()[0]))
        .unwrap()
        .client_id("events")
        .build()
        .unwrap();
    let mut events = c.connection_events();
    assert!(!wait_connected(&mut events).await);
    let mut sub = c.subscribe("ev/t", QoS::AtMostOnce).await.unwrap();
    c.disconnect().await;
    let last = within("the last event", events.recv()).await;
    assert!(
        matches!(
            last,
            Some(ConnectionEvent::Disconnected {
                reason: DisconnectReason::Local
            })
        ),
        "{last:?}"
    );
    // Disconnect ends everything: the events stream and the subscription streams.
    assert!(within("events end", events.recv()).await.is_none());
    assert!(within("stream end", sub.recv()).await.is_none());
    assert!(matches!(
        c.publish("ev/t", QoS::AtMostOnce, "late").await,
        Err(Error::Closed)
    ));
}

/// The Will Message set in the builder is published by the broker when the connection
/// ends without DISCONNECT [MQTT-3.1.2-8], and discarded after a normal DISCONNECT
/// [MQTT-3.1.2-10].
#[tokio::test]
async fn will_is_published_on_an_unclean_end_only() {
    let broker = ternd().await;
    let addr = broker.local_addrs()[0];
    let watcher = client(addr, ProtocolVersion::V5, "will-watcher").await;
    let mut wills = watcher.subscribe("will/#", QoS::AtLeastOnce).await.unwrap();
    let proxy = Proxy::start(addr).await;
    let c = within(
        "connect",
        Client::builder(&url(proxy.addr))
            .unwrap()
            .client_id("will-owner")
            .will("will/owner", "gone", QoS::AtLeastOnce, false)
            .unwrap()
            .reconnect(tern_client::ReconnectOptions::disabled())
            .connect(),
    )
    .await
    .unwrap();
    proxy.cut();
    let will = next(&mut wills).await;
    assert_eq!(
        (will.topic(), will.payload()),
        ("will/owner", &"gone".into())
    );
    // Reconnection is off: the client stops.
    eventually("the client to stop", || c.is_closed()).await;

    let clean = within(
        "connect",
        Client::builder(&url(addr))
            .unwrap()
            .client_id("will-clean")
            .will("will/clean", "gone", QoS::AtLeastOnce, false)
            .unwrap()
            .connect(),
    )
    .await
    .unwrap();
    clean.disconnect().await;
    watcher
        .publish("will/marker", QoS::AtLeastOnce, "m")
        .await
        .unwrap();
    // The marker comes first: no Will was published for the clean disconnect.
    assert_eq!(next(&mut wills).await.topic(), "will/marker");
}
