//! MQTT over WebSocket and over WebSocket over TLS: a raw tokio-tungstenite client that puts
//! MQTT bytes into frames as it likes, the handshake's path and subprotocol, and tern-client
//! over `ws://` and `wss://`.

mod pki;
mod support;

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use pki::Pki;
use support::{TIMEOUT, connect, opts, pid, publish, s};
use tern_broker::{Broker, BrokerHandle, Config, Transport};
use tern_codec::{Decoder, MAX_PACKET_SIZE, Packet, ProtocolVersion, QoS, ReasonCode};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

/// A broker with one WebSocket listener: `extra` lines go into `[[listener]]`, `limits` into
/// `[limits]`.
async fn ws_broker(extra: &str, limits: &str) -> (BrokerHandle, SocketAddr) {
    let text = format!(
        "sys_interval = 0\n[limits]\n{limits}\n[[listener]]\nbind = \"127.0.0.1:0\"\n\
         protocol = \"websocket\"\n{extra}"
    );
    let config = Config::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let broker = Broker::new(config).start().await.expect("broker starts");
    let addr = broker.local_addrs()[0];
    (broker, addr)
}

type Ws = WebSocketStream<TcpStream>;

/// Opens a WebSocket to `url` offering these subprotocols; the stream and the subprotocol
/// the broker answered with.
async fn open(url: &str, offered: Option<&str>) -> Result<(Ws, Option<String>), WsError> {
    let mut request = url.into_client_request().unwrap();
    if let Some(offered) = offered {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_str(offered).unwrap(),
        );
    }
    let uri = request.uri();
    let addr = format!("{}:{}", uri.host().unwrap(), uri.port_u16().unwrap());
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (ws, response) =
        tokio::time::timeout(TIMEOUT, tokio_tungstenite::client_async(request, tcp))
            .await
            .expect("handshake in time")?;
    let chosen = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .map(|v| v.to_str().unwrap().to_owned());
    Ok((ws, chosen))
}

/// MQTT packets over a raw WebSocket: what is sent goes in the frames the test chooses;
/// what arrives is decoded across frames.
struct RawWs {
    ws: Ws,
    version: ProtocolVersion,
    decoder: Decoder,
    buf: BytesMut,
}

impl RawWs {
    fn new(ws: Ws, version: ProtocolVersion) -> Self {
        RawWs {
            ws,
            version,
            decoder: Decoder::with_version(version, MAX_PACKET_SIZE),
            buf: BytesMut::new(),
        }
    }

    fn encode(&self, packets: &[Packet]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for p in packets {
            p.encode(self.version, &mut out).unwrap();
        }
        out.to_vec()
    }

    /// One binary frame with these bytes.
    async fn frame(&mut self, bytes: &[u8]) {
        self.ws
            .send(Message::Binary(Bytes::copy_from_slice(bytes)))
            .await
            .unwrap();
    }

    /// The next packet, `None` once the broker closed.
    async fn recv(&mut self) -> Option<Packet> {
        tokio::time::timeout(TIMEOUT, async {
            loop {
                if let Some(p) = self.decoder.decode(&mut self.buf).expect("valid packets") {
                    return Some(p);
                }
                match self.ws.next().await {
                    Some(Ok(Message::Binary(data))) => self.buf.extend_from_slice(&data),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return None,
                    Some(Ok(other)) => panic!("broker sent {other:?}"),
                }
            }
        })
        .await
        .expect("a packet or a close in time")
    }
}

#[tokio::test]
async fn packets_split_across_frames_and_sharing_one() {
    let (broker, addr) = ws_broker("", "").await;
    let (ws, chosen) = open(&format!("ws://{addr}/mqtt"), Some("mqtt"))
        .await
        .unwrap();
    // [MQTT-6.0.0-4]: the server answers with the subprotocol `mqtt`.
    assert_eq!(chosen.as_deref(), Some("mqtt"));
    let mut raw = RawWs::new(ws, ProtocolVersion::V5);

    // [MQTT-6.0.0-2]: one CONNECT over three frames, cut inside its fixed header and body.
    let connect = raw.encode(&[Packet::from(connect(ProtocolVersion::V5, "ws-raw", true))]);
    raw.frame(&connect[..1]).await;
    raw.frame(&connect[1..5]).await;
    raw.frame(&connect[5..]).await;
    match raw.recv().await {
        Some(Packet::ConnAck(c)) => assert_eq!(c.reason_code, ReasonCode::Success),
        other => panic!("expected CONNACK, got {other:?}"),
    }
    let clients = broker.clients();
    assert_eq!(clients[0].transport, Transport::WebSocket);

    // Two packets in one frame: SUBSCRIBE and a PUBLISH to it; a third packet starts in the
    // same frame and ends in the next.
    let both = raw.encode(&[
        Packet::Subscribe(tern_codec::Subscribe {
            packet_id: pid(1),
            properties: Default::default(),
            subscriptions: tern_codec::smallvec::smallvec![tern_codec::Subscription {
                filter: s("ws/+"),
                options: opts(QoS::AtLeastOnce),
            }],
        }),
        Packet::Publish(publish("ws/one", "first", QoS::AtLeastOnce, Some(2))),
    ]);
    let third = raw.encode(&[Packet::Publish(publish(
        "ws/two",
        "second",
        QoS::AtMostOnce,
        None,
    ))]);
    let mut frame = both;
    frame.extend_from_slice(&third[..3]);
    raw.frame(&frame).await;
    raw.frame(&third[3..]).await;

    let mut payloads = Vec::new();
    let mut acks = 0;
    while payloads.len() < 2 || acks < 2 {
        match raw.recv().await.expect("connection open") {
            Packet::SubAck(a) => {
                assert_eq!(a.reason_codes, [ReasonCode::GrantedQoS1]);
                acks += 1;
            }
            Packet::PubAck(a) => {
                assert_eq!(a.packet_id, pid(2));
                acks += 1;
            }
            Packet::Publish(p) => {
                if p.qos == QoS::AtLeastOnce {
                    raw.frame(
                        &raw.encode(&[Packet::PubAck(tern_codec::Ack::new(p.packet_id.unwrap()))]),
                    )
                    .await;
                }
                payloads.push(String::from_utf8(p.payload.to_vec()).unwrap());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(payloads, ["first", "second"]);

    // A ping is answered with a pong carrying its data (RFC 6455 5.5.3).
    raw.ws
        .send(Message::Ping(Bytes::from_static(b"hi")))
        .await
        .unwrap();
    let pong = tokio::time::timeout(TIMEOUT, async {
        loop {
            match raw.ws.next().await {
                Some(Ok(Message::Pong(data))) => return data,
                Some(Ok(_)) => {}
                other => panic!("expected a pong, got {other:?}"),
            }
        }
    })
    .await
    .expect("pong in time");
    assert_eq!(&pong[..], b"hi");

    // A clean close: DISCONNECT, then the broker closes the WebSocket.
    let disconnect = raw.encode(&[Packet::Disconnect(Default::default())]);
    raw.frame(&disconnect).await;
    assert!(raw.recv().await.is_none());
    support::wait_for_stats(&broker, "the client to leave", |s| s.clients_connected == 0).await;
}

#[tokio::test]
async fn subprotocol_negotiation() {
    let (_broker, addr) = ws_broker("path = \"/ws\"\n", "").await;
    let url = format!("ws://{addr}/ws");
    // The first supported name the client offers is the answer; mosquitto's `mqttv3.1` too.
    for (offered, answer) in [
        ("mqtt", Some("mqtt")),
        ("mqttv3.1", Some("mqttv3.1")),
        ("foo, mqtt", Some("mqtt")),
        ("mqttv3.1, mqtt", Some("mqttv3.1")),
    ] {
        let (ws, chosen) = open(&url, Some(offered)).await.unwrap();
        assert_eq!(chosen.as_deref(), answer, "offered {offered}");
        let mut raw = RawWs::new(ws, ProtocolVersion::V3_1_1);
        let connect = raw.encode(&[Packet::from(connect(ProtocolVersion::V3_1_1, "sub", true))]);
        raw.frame(&connect).await;
        assert!(matches!(raw.recv().await, Some(Packet::ConnAck(_))));
    }
    // No subprotocol offered: accepted without one (as mosquitto does).
    let (_ws, chosen) = open(&url, None).await.unwrap();
    assert_eq!(chosen, None);
    // Only others offered: refused, 400.
    match open(&url, Some("chat")).await {
        Err(WsError::Http(response)) => assert_eq!(response.status(), StatusCode::BAD_REQUEST),
        other => panic!("expected 400, got {other:?}"),
    }
}

#[tokio::test]
async fn wrong_path_gets_404() {
    let (_broker, addr) = ws_broker("", "").await;
    for path in ["/", "/mqtt/x", "/other"] {
        match open(&format!("ws://{addr}{path}"), Some("mqtt")).await {
            Err(WsError::Http(response)) => {
                assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}")
            }
            other => panic!("{path}: expected 404, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn text_frame_closes_the_connection() {
    let (broker, addr) = ws_broker("", "").await;
    let (ws, _) = open(&format!("ws://{addr}/mqtt"), Some("mqtt"))
        .await
        .unwrap();
    let mut raw = RawWs::new(ws, ProtocolVersion::V5);
    let connect = raw.encode(&[Packet::from(connect(ProtocolVersion::V5, "text", true))]);
    raw.frame(&connect).await;
    assert!(matches!(raw.recv().await, Some(Packet::ConnAck(_))));
    // [MQTT-6.0.0-1]: a data frame that is not binary closes the connection.
    raw.ws.send(Message::text("hello")).await.unwrap();
    let closed = tokio::time::timeout(TIMEOUT, async {
        loop {
            match raw.ws.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| f.code),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return None,
            }
        }
    })
    .await
    .expect("closed in time");
    assert_eq!(closed, Some(CloseCode::Unsupported));
    support::wait_for_stats(&broker, "the client to be gone", |s| {
        s.clients_connected == 0
    })
    .await;
}

#[tokio::test]
async fn idle_socket_without_websocket_handshake_is_closed_after_connect_timeout() {
    let (_broker, addr) = ws_broker("", "connect_timeout = 1").await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    // Half an HTTP request, never finished.
    use tokio::io::AsyncWriteExt;
    idle.write_all(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut byte = [0u8; 1];
    let read = tokio::time::timeout(TIMEOUT, idle.read(&mut byte))
        .await
        .expect("closed by the broker within the test's guard");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
}

#[tokio::test]
async fn tern_client_over_ws_and_wss() {
    let pki = Pki::new();
    let text = format!(
        "sys_interval = 0\n[[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"websocket\"\n\
         [[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"websocket\"\npath = \"/secure\"\n{}",
        pki.mtls_table("use_identity_as_username = true\n")
    );
    let broker = Broker::new(Config::from_toml_str(&text).unwrap())
        .start()
        .await
        .unwrap();
    let [ws, wss] = broker.local_addrs() else {
        panic!()
    };
    let urls = [
        format!("ws://127.0.0.1:{}/mqtt", ws.port()),
        format!("wss://localhost:{}/secure", wss.port()),
    ];
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        for url in &urls {
            let client = tokio::time::timeout(
                TIMEOUT,
                tern_client::Client::builder(url)
                    .unwrap()
                    .protocol(version)
                    .client_id("ws-client")
                    .ca_pem(pki.ca_pem.clone())
                    .client_cert_pem(pki.client.cert_pem.clone(), pki.client.key_pem.clone())
                    .connect(),
            )
            .await
            .expect("connect in time")
            .unwrap_or_else(|e| panic!("{url}: {e}"));
            let mut sub = client
                .subscribe("ws/t", tern_client::QoS::ExactlyOnce)
                .await
                .unwrap();
            for qos in [
                tern_client::QoS::AtMostOnce,
                tern_client::QoS::AtLeastOnce,
                tern_client::QoS::ExactlyOnce,
            ] {
                // Larger than one TCP segment, so frames and reads do not line up.
                let payload = vec![b'x'; 100_000];
                client.publish("ws/t", qos, payload.clone()).await.unwrap();
                let message = tokio::time::timeout(TIMEOUT, sub.recv())
                    .await
                    .expect("message in time")
                    .expect("stream open");
                assert_eq!(message.qos(), qos);
                assert_eq!(&message.payload()[..], &payload[..]);
            }
            let clients = broker.clients();
            assert_eq!(clients.len(), 1, "{clients:?}");
            if url.starts_with("wss") {
                assert_eq!(clients[0].transport, Transport::WebSocketTls);
                assert_eq!(clients[0].username.as_deref(), Some(pki::CLIENT_CN));
            } else {
                assert_eq!(clients[0].transport, Transport::WebSocket);
                assert_eq!(clients[0].tls_identity, None);
            }
            client.disconnect().await;
            support::wait_for_stats(&broker, "the client to leave", |s| s.clients_connected == 0)
                .await;
        }
    }
}

#[tokio::test]
async fn message_larger_than_the_maximum_packet_size_closes() {
    // A WebSocket message may carry the largest packet allowed, not more: the broker does
    // not buffer a bigger one.
    let (broker, addr) = ws_broker("", "maximum_packet_size = 1024").await;
    let (ws, _) = open(&format!("ws://{addr}/mqtt"), Some("mqtt"))
        .await
        .unwrap();
    let mut raw = RawWs::new(ws, ProtocolVersion::V5);
    let connect = raw.encode(&[Packet::from(connect(ProtocolVersion::V5, "big", true))]);
    raw.frame(&connect).await;
    assert!(matches!(raw.recv().await, Some(Packet::ConnAck(_))));
    // Within the limit: 1024 + 5 bytes of PINGREQs in one message are fine.
    let pings = raw.encode(&vec![Packet::PingReq; 1029 / 2]);
    raw.frame(&pings).await;
    for _ in 0..1029 / 2 {
        assert!(matches!(raw.recv().await, Some(Packet::PingResp)));
    }
    // Beyond it: closed.
    let pings = raw.encode(&vec![Packet::PingReq; 1030 / 2 + 1]);
    let _ = raw
        .ws
        .send(Message::Binary(Bytes::copy_from_slice(&pings)))
        .await;
    assert!(raw.recv().await.is_none(), "still open");
    support::wait_for_stats(&broker, "the client to be gone", |s| {
        s.clients_connected == 0
    })
    .await;
}
