//! The client against a real mosquitto broker, started by each test on a free port and
//! killed on drop: QoS round trips, a crash and restart, refused credentials, TLS with a
//! client certificate, WebSocket and WebSocket over TLS. Without mosquitto the tests print
//! `skipped: mosquitto not installed` (and fail under `TERN_INTEROP=1`).

mod support;

use bytes::Bytes;
use support::*;
use tern_client::{
    AckMode, Client, ConnectionEvent, DisconnectReason, OutgoingMessage, ProtocolVersion, QoS,
    ReasonCode,
};

async fn connect(url: &str, version: ProtocolVersion, id: &str) -> Client {
    within(
        "connect",
        Client::builder(url)
            .unwrap()
            .protocol(version)
            .client_id(id)
            .reconnect(fast_reconnect())
            .connect(),
    )
    .await
    .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// QoS 0, 1 and 2 to a subscription of another client; each publish resolves when done.
async fn round_trip_via(url: &str, version: ProtocolVersion) {
    let subscriber = connect(url, version, "mq-sub").await;
    let publisher = connect(url, version, "mq-pub").await;
    let mut sub = within("subscribe", subscriber.subscribe("mq/#", QoS::ExactlyOnce))
        .await
        .unwrap();
    assert_eq!(sub.granted_qos(), QoS::ExactlyOnce);
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let topic = format!("mq/{}", qos.as_u8());
        let ack = within("publish", publisher.publish(topic.clone(), qos, "payload"))
            .await
            .unwrap();
        assert_eq!(ack.qos, qos);
        let m = next(&mut sub).await;
        assert_eq!((m.topic(), m.qos()), (topic.as_str(), qos));
        assert_eq!(m.payload(), "payload");
    }
    publisher.disconnect().await;
    subscriber.disconnect().await;
}

#[tokio::test]
async fn mosquitto_qos_round_trip_v5() {
    let Some(m) = Mosquitto::start().await else {
        return;
    };
    round_trip_via(&m.url(), ProtocolVersion::V5).await;
}

#[tokio::test]
async fn mosquitto_qos_round_trip_v311() {
    let Some(m) = Mosquitto::start().await else {
        return;
    };
    round_trip_via(&m.url(), ProtocolVersion::V3_1_1).await;
}

#[tokio::test]
async fn mosquitto_v5_properties_and_no_local() {
    let Some(m) = Mosquitto::start().await else {
        return;
    };
    let c = connect(&m.url(), ProtocolVersion::V5, "mq-props").await;
    let options = tern_client::SubscribeOptions::new(QoS::AtLeastOnce).no_local(true);
    let mut own = c.subscribe("props/own", options).await.unwrap();
    let mut sub = c.subscribe("props/t", QoS::AtLeastOnce).await.unwrap();
    let message = OutgoingMessage::new("props/t", "x")
        .qos(QoS::AtLeastOnce)
        .user_property("k", "v")
        .content_type("text/plain")
        .correlation_data(Bytes::from_static(b"c-1"))
        .response_topic("props/reply");
    c.publish_with(message).await.unwrap();
    let got = next(&mut sub).await;
    assert_eq!(got.user_properties().len(), 1);
    assert_eq!(got.content_type(), Some("text/plain"));
    assert_eq!(got.correlation_data().map(|b| &b[..]), Some(&b"c-1"[..]));
    assert_eq!(got.response_topic(), Some("props/reply"));
    // mosquitto sends the subscription identifier the client chose [MQTT-3.3.4-3].
    assert_eq!(got.subscription_identifiers().len(), 1);
    // No Local: our own message on `props/own` is not sent back [MQTT-3.8.3-3]; a message
    // published after it to another topic arrives, so the first one would have too.
    c.publish("props/own", QoS::AtLeastOnce, "mine")
        .await
        .unwrap();
    c.publish("props/t", QoS::AtLeastOnce, "marker")
        .await
        .unwrap();
    assert_eq!(next(&mut sub).await.payload(), "marker");
    assert!(futures_util::FutureExt::now_or_never(own.recv()).is_none());
}

#[tokio::test]
async fn mosquitto_manual_acks() {
    let Some(m) = Mosquitto::start().await else {
        return;
    };
    let c = within(
        "connect",
        Client::builder(&m.url())
            .unwrap()
            .ack_mode(AckMode::Manual)
            .connect(),
    )
    .await
    .unwrap();
    let publisher = connect(&m.url(), ProtocolVersion::V5, "mq-manual-pub").await;
    let mut sub = c.subscribe("manual/t", QoS::ExactlyOnce).await.unwrap();
    for i in 0..5 {
        let qos = if i % 2 == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        publisher
            .publish("manual/t", qos, i.to_string())
            .await
            .unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(next(&mut sub).await);
    }
    // Acknowledged in reverse: they still leave in order, and the broker completes them all.
    for m in got.iter().rev() {
        assert!(m.needs_ack());
        m.ack().unwrap();
    }
    publisher
        .publish("manual/t", QoS::AtLeastOnce, "after")
        .await
        .unwrap();
    let after = next(&mut sub).await;
    assert_eq!(after.payload(), "after");
    assert!(!after.dup());
    after.ack().unwrap();
}

/// mosquitto is killed (no DISCONNECT) and started again on the same port: the client
/// reconnects, subscribes again, and the message published during the outage arrives.
#[tokio::test]
async fn mosquitto_killed_and_restarted() {
    let Some(mut m) = Mosquitto::start().await else {
        return;
    };
    let c = connect(&m.url(), ProtocolVersion::V5, "mq-restart").await;
    let mut events = c.connection_events();
    let mut sub = c.subscribe("restart/t", QoS::AtLeastOnce).await.unwrap();
    m.kill();
    let reason = match wait_event(&mut events, "Disconnected", |e| {
        matches!(e, ConnectionEvent::Disconnected { .. })
    })
    .await
    {
        ConnectionEvent::Disconnected { reason } => reason,
        _ => unreachable!(),
    };
    assert!(
        matches!(reason, DisconnectReason::Transport(_)),
        "{reason:?}"
    );
    let during = c
        .enqueue(OutgoingMessage::new("restart/t", "during").qos(QoS::AtLeastOnce))
        .await
        .unwrap();
    m.restart().await;
    assert!(!wait_connected(&mut events).await, "persistence is off");
    within("PUBACK", during).await.unwrap();
    assert_eq!(next(&mut sub).await.payload(), "during");
}

/// Refused credentials stop the client: no retry.
#[tokio::test]
async fn mosquitto_bad_credentials_stop_retrying() {
    let mut password_file = None;
    let Some(m) = Mosquitto::start_with(|dir| {
        let path = dir.join("passwd");
        let status = std::process::Command::new("mosquitto_passwd")
            .arg("-b")
            .arg("-c")
            .arg(&path)
            .args(["alice", "secret"])
            .status()
            .expect("mosquitto_passwd runs");
        assert!(status.success());
        password_file = Some(path.clone());
        format!("allow_anonymous false\npassword_file {}\n", path.display())
    })
    .await
    else {
        return;
    };
    assert!(password_file.is_some());
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let err = within(
            "connect",
            Client::builder(&m.url())
                .unwrap()
                .protocol(version)
                .credentials("alice", "wrong")
                .connect(),
        )
        .await
        .unwrap_err();
        let reason = err.reason().expect("a connection failure").clone();
        assert!(reason.is_fatal(), "{reason:?}");
        assert!(matches!(
            reason.refused(),
            Some(ReasonCode::BadUserNameOrPassword | ReasonCode::NotAuthorized)
        ));
    }
    // In the background with reconnection on: one Disconnected, then the client stops.
    let c = Client::builder(&m.url())
        .unwrap()
        .credentials("alice", "wrong")
        .reconnect(fast_reconnect())
        .build()
        .unwrap();
    let mut events = c.connection_events();
    let first = within("an event", events.recv()).await;
    assert!(
        matches!(&first, Some(ConnectionEvent::Disconnected { reason }) if reason.is_fatal()),
        "{first:?}"
    );
    assert!(within("the end", events.recv()).await.is_none());
    assert!(c.is_closed());
    // The right password works, given in the builder or in the URL.
    let ok = within(
        "connect",
        Client::builder(&m.url())
            .unwrap()
            .credentials("alice", "secret")
            .connect(),
    )
    .await;
    assert!(ok.is_ok());
    let url = format!("mqtt://alice:secret@127.0.0.1:{}", m.port);
    let ok = within("connect", Client::builder(&url).unwrap().connect()).await;
    assert!(ok.is_ok());
}

#[tokio::test]
async fn mosquitto_tls_with_client_certificate() {
    let pki = Pki::new();
    let Some(m) =
        Mosquitto::start_with(|dir| pki.mosquitto_tls(dir) + "allow_anonymous true\n").await
    else {
        return;
    };
    let url = format!("mqtts://localhost:{}", m.port);
    let c = within(
        "TLS connect",
        Client::builder(&url)
            .unwrap()
            .ca_pem(pki.ca.clone())
            .client_cert_pem(pki.client_cert.clone(), pki.client_key.clone())
            .connect(),
    )
    .await
    .unwrap_or_else(|e| panic!("TLS connect: {e}\n{}", m.log()));
    let mut sub = c.subscribe("tls/t", QoS::AtLeastOnce).await.unwrap();
    c.publish("tls/t", QoS::ExactlyOnce, "secret")
        .await
        .unwrap();
    assert_eq!(next(&mut sub).await.payload(), "secret");

    // Without the client certificate the broker refuses the handshake.
    let refused = within(
        "TLS connect",
        Client::builder(&url)
            .unwrap()
            .ca_pem(pki.ca.clone())
            .connect(),
    )
    .await;
    assert!(refused.is_err());
    // A CA that did not sign the server's certificate: the client refuses it.
    let other = Pki::new();
    let untrusted = within(
        "TLS connect",
        Client::builder(&url)
            .unwrap()
            .ca_pem(other.ca)
            .client_cert_pem(pki.client_cert.clone(), pki.client_key.clone())
            .connect(),
    )
    .await;
    assert!(matches!(
        untrusted.unwrap_err().reason(),
        Some(DisconnectReason::Transport(_))
    ));
}

/// mosquitto 2.0.11 cannot run a WebSocket listener alone ("Unable to start any listening
/// sockets"), and binds it to every address: the WebSocket listener is a second one.
fn websocket_listener(port: u16, tls: &str) -> String {
    format!("allow_anonymous true\nlistener {port}\nprotocol websockets\n{tls}")
}

#[tokio::test]
async fn mosquitto_websocket() {
    let ws_port = free_port();
    let Some(_m) = Mosquitto::start_with(|_| websocket_listener(ws_port, "")).await else {
        return;
    };
    wait_listening(ws_port).await;
    let url = format!("ws://127.0.0.1:{ws_port}/mqtt");
    round_trip_via(&url, ProtocolVersion::V5).await;
    round_trip_via(&url, ProtocolVersion::V3_1_1).await;
}

#[tokio::test]
async fn mosquitto_websocket_over_tls() {
    let pki = Pki::new();
    let ws_port = free_port();
    let Some(m) =
        Mosquitto::start_with(|dir| websocket_listener(ws_port, &pki.mosquitto_tls(dir))).await
    else {
        return;
    };
    wait_listening(ws_port).await;
    let url = format!("wss://localhost:{ws_port}/mqtt");
    let c = within(
        "WSS connect",
        Client::builder(&url)
            .unwrap()
            .ca_pem(pki.ca.clone())
            .client_cert_pem(pki.client_cert.clone(), pki.client_key.clone())
            .connect(),
    )
    .await
    .unwrap_or_else(|e| panic!("WSS connect: {e}\n{}", m.log()));
    let mut sub = c.subscribe("wss/t", QoS::AtLeastOnce).await.unwrap();
    // Larger than a TLS record. (mosquitto 2.0.11 reads WebSocket input at about 40 KB/s, so
    // it stays modest.)
    let big = Bytes::from(vec![7u8; 20_000]);
    c.publish("wss/t", QoS::AtLeastOnce, big.clone())
        .await
        .unwrap();
    assert_eq!(next(&mut sub).await.payload(), &big);
}
