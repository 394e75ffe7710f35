//! MQTT 5.0 extras and timers: topic aliases on send, keep alive, and the enhanced
//! authentication hook (against a small server built on `tern-proto`'s `ServerSession`).

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use support::*;
use tern_broker::Config;
use tern_client::{AuthHandler, Client, ConnectionEvent, DisconnectReason, OutgoingMessage, QoS};
use tern_codec::{Auth, AuthProperties, ConnAckProperties, Packet, ReasonCode};
use tern_proto::{Accept, ConnectionError, Event, ServerConfig, ServerSession};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The client picks topic aliases within the broker's Topic Alias Maximum: the first PUBLISH
/// of a topic defines the alias, later ones send an empty topic with it (MQTT 5.0 section
/// 3.3.2.3.4); the subscriber sees the full topic.
#[tokio::test]
async fn topic_aliases_on_send() {
    let mut config = Config::with_listeners(["127.0.0.1:0".parse().unwrap()]);
    config.limits.topic_alias_maximum = 4;
    let broker = ternd_with(config).await;
    let proxy = Proxy::start(broker.local_addrs()[0]).await;
    let watcher = within(
        "watcher",
        Client::builder(&url(broker.local_addrs()[0]))
            .unwrap()
            .connect(),
    )
    .await
    .unwrap();
    let mut sub = watcher
        .subscribe("alias/topic/with/a/long/name", QoS::AtLeastOnce)
        .await
        .unwrap();
    let c = within(
        "connect",
        Client::builder(&url(proxy.addr)).unwrap().connect(),
    )
    .await
    .unwrap();
    for i in 0..3 {
        let m = OutgoingMessage::new("alias/topic/with/a/long/name", i.to_string())
            .qos(QoS::AtLeastOnce);
        c.publish_with(m).await.unwrap();
        let got = next(&mut sub).await;
        assert_eq!(got.topic(), "alias/topic/with/a/long/name");
    }
    let publishes: Vec<(String, Option<u16>)> = decode_all(&proxy.sent(0))
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some((
                p.topic.to_string(),
                p.properties.topic_alias.map(|a| a.get()),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(publishes.len(), 3);
    let alias = publishes[0].1.expect("the first PUBLISH defines an alias");
    assert_eq!(publishes[0].0, "alias/topic/with/a/long/name");
    assert_eq!(publishes[1], (String::new(), Some(alias)));
    assert_eq!(publishes[2], (String::new(), Some(alias)));
}

/// An idle client sends PINGREQ within the keep alive [MQTT-3.1.2-20].
#[tokio::test]
async fn keep_alive_pings_an_idle_connection() {
    let broker = ternd().await;
    let proxy = Proxy::start(broker.local_addrs()[0]).await;
    let _c = within(
        "connect",
        Client::builder(&url(proxy.addr))
            .unwrap()
            .keep_alive(Duration::from_secs(1))
            .connect(),
    )
    .await
    .unwrap();
    proxy
        .wait_sent("PINGREQ", 0, |ps| {
            ps.iter().filter(|p| matches!(p, Packet::PingReq)).count() >= 2
        })
        .await;
}

/// A broker that stops answering is detected by the missing PINGRESP, and the client
/// reconnects.
#[tokio::test]
async fn keep_alive_detects_a_silent_broker_and_reconnects() {
    let broker = ternd().await;
    let proxy = Proxy::start(broker.local_addrs()[0]).await;
    let c = within(
        "connect",
        Client::builder(&url(proxy.addr))
            .unwrap()
            .keep_alive(Duration::from_secs(1))
            // Shorter than the broker's 1.5 × keep alive, so the client notices first.
            .ping_timeout(Duration::from_millis(200))
            .reconnect(fast_reconnect())
            .connect(),
    )
    .await
    .unwrap();
    let mut events = c.connection_events();
    // The broker never sees the PINGREQ, so no PINGRESP comes back.
    proxy.swallow(true);
    let event = wait_event(&mut events, "Disconnected", |e| {
        matches!(e, ConnectionEvent::Disconnected { .. })
    })
    .await;
    assert!(
        matches!(
            &event,
            ConnectionEvent::Disconnected {
                reason: DisconnectReason::Session(ConnectionError::KeepAliveTimeout)
            }
        ),
        "{event:?}"
    );
    proxy.swallow(false);
    wait_connected(&mut events).await;
}

/// A challenge/response method: the client's first data is `client-first`, the server
/// challenges with `challenge`, the client proves with `proof`.
struct ChallengeResponse {
    log: Arc<Mutex<Vec<String>>>,
    refuse: bool,
}

impl AuthHandler for ChallengeResponse {
    fn initial_data(&mut self) -> Option<Bytes> {
        Some(Bytes::from_static(b"client-first"))
    }

    fn step(&mut self, auth: &Auth) -> Result<Option<Bytes>, String> {
        let data = auth
            .properties
            .authentication_data
            .clone()
            .unwrap_or_default();
        self.log
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(&data).into_owned());
        if self.refuse || data != "challenge" {
            return Err("unacceptable challenge".into());
        }
        Ok(Some(Bytes::from_static(b"proof")))
    }

    fn success(&mut self, data: Option<&Bytes>) -> Result<(), String> {
        let data = data.map(|d| String::from_utf8_lossy(d).into_owned());
        self.log
            .lock()
            .unwrap()
            .push(format!("success:{}", data.unwrap_or_default()));
        Ok(())
    }
}

const METHOD: &str = "TEST-CHALLENGE";

fn auth(reason_code: ReasonCode, data: &'static [u8]) -> Auth {
    Auth {
        reason_code,
        properties: AuthProperties {
            authentication_data: Some(Bytes::from_static(data)),
            ..AuthProperties::default()
        },
    }
}

/// One connection of a server that runs the challenge/response method, for CONNECT and for
/// re-authentication [MQTT-4.12.0-2], [MQTT-4.12.1-1].
async fn challenge_server(listener: TcpListener) {
    let Ok((mut stream, _)) = listener.accept().await else {
        return;
    };
    let now = || tokio::time::Instant::now().into_std();
    let mut server = ServerSession::new(ServerConfig::default());
    server.start(now());
    let mut input = BytesMut::new();
    let mut output = BytesMut::new();
    loop {
        while let Some(event) = server.poll_event() {
            match event {
                Event::ConnectRequest(connect) => {
                    let props = &connect.properties;
                    assert_eq!(props.authentication_method.as_deref(), Some(METHOD));
                    assert_eq!(
                        props.authentication_data.as_deref(),
                        Some(&b"client-first"[..])
                    );
                    server
                        .auth(
                            now(),
                            auth(ReasonCode::ContinueAuthentication, b"challenge"),
                        )
                        .unwrap();
                }
                Event::Auth(a) if !server.is_connected() => {
                    if a.properties.authentication_data.as_deref() == Some(&b"proof"[..]) {
                        let accept = Accept {
                            session: None,
                            properties: ConnAckProperties {
                                authentication_data: Some(Bytes::from_static(b"welcome")),
                                ..ConnAckProperties::default()
                            },
                        };
                        server.accept(now(), accept).unwrap();
                    } else {
                        server.reject(now(), ReasonCode::NotAuthorized).unwrap();
                    }
                }
                Event::Auth(a) if a.reason_code == ReasonCode::ReAuthenticate => {
                    server
                        .auth(
                            now(),
                            auth(ReasonCode::ContinueAuthentication, b"challenge"),
                        )
                        .unwrap();
                }
                Event::Auth(a) => {
                    assert_eq!(
                        a.properties.authentication_data.as_deref(),
                        Some(&b"proof"[..])
                    );
                    server
                        .auth(now(), auth(ReasonCode::Success, b"again"))
                        .unwrap();
                }
                Event::Disconnected(_) => {
                    server.poll_transmit(&mut output);
                    let _ = stream.write_all(&output).await;
                    return;
                }
                _ => {}
            }
        }
        server.poll_transmit(&mut output);
        if !output.is_empty() {
            if stream.write_all(&output).await.is_err() {
                return;
            }
            output.clear();
        }
        match stream.read_buf(&mut input).await {
            Ok(0) | Err(_) => return,
            Ok(_) => server.handle_input(now(), &mut input),
        }
    }
}

#[tokio::test]
async fn enhanced_authentication_and_reauthentication() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(challenge_server(listener));
    let log = Arc::new(Mutex::new(Vec::new()));
    let handler = ChallengeResponse {
        log: log.clone(),
        refuse: false,
    };
    let c = within(
        "connect",
        Client::builder(&url(addr))
            .unwrap()
            .authentication(METHOD, handler)
            .reconnect(tern_client::ReconnectOptions::disabled())
            .connect(),
    )
    .await
    .unwrap();
    assert_eq!(*log.lock().unwrap(), ["challenge", "success:welcome"]);
    within("reauthenticate", c.reauthenticate()).await.unwrap();
    eventually("the re-authentication to succeed", || {
        log.lock().unwrap().len() == 4
    })
    .await;
    assert_eq!(
        *log.lock().unwrap(),
        ["challenge", "success:welcome", "challenge", "success:again"]
    );
    c.disconnect().await;
    within("server", server).await.unwrap();
}

#[tokio::test]
async fn a_failing_authentication_hook_stops_the_client() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(challenge_server(listener));
    let handler = ChallengeResponse {
        log: Arc::default(),
        refuse: true,
    };
    let err = within(
        "connect",
        Client::builder(&url(addr))
            .unwrap()
            .authentication(METHOD, handler)
            .reconnect(fast_reconnect())
            .connect(),
    )
    .await
    .unwrap_err();
    let reason = err.reason().expect("a connection failure");
    assert!(matches!(reason, DisconnectReason::Auth(_)), "{reason:?}");
    assert!(reason.is_fatal());
    within("server", server).await.unwrap();
}
