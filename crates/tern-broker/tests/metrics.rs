//! The Prometheus metrics endpoint, scraped over a real socket with a plain HTTP/1.1 client
//! after a known workload: every figure is checked exactly.

mod support;

use std::collections::BTreeMap;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use support::*;
use tern_codec::{Ack, Packet, ProtocolVersion, QoS, ReasonCode};
use tokio::net::TcpStream;

const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

/// One HTTP request; the status, the content type and the body.
async fn http(addr: SocketAddr, method: Method, path: &str) -> (StatusCode, String, String) {
    tokio::time::timeout(TIMEOUT, async {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, addr.to_string())
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    })
    .await
    .expect("answered in time")
}

/// The samples of an exposition: `name{labels}` → value.
fn samples(body: &str) -> BTreeMap<String, String> {
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').expect("name value");
            (name.to_owned(), value.to_owned())
        })
        .collect()
}

/// A raw 3.1.1 client that counts the bytes of every packet it sends and receives.
struct Counted {
    client: Client,
    sent: u64,
    received: u64,
}

impl Counted {
    async fn open(addr: SocketAddr) -> Counted {
        Counted {
            client: Client::open(addr, V311).await,
            sent: 0,
            received: 0,
        }
    }

    async fn send(&mut self, packet: Packet) {
        self.sent += packet.encoded_len(V311).unwrap() as u64;
        self.client.send(packet).await;
    }

    async fn recv(&mut self) -> Packet {
        let packet = self.client.recv().await;
        self.received += packet.encoded_len(V311).unwrap() as u64;
        packet
    }

    async fn connect(addr: SocketAddr, client_id: &str, clean: bool) -> Counted {
        let mut c = Counted::open(addr).await;
        c.send(Packet::from(connect(V311, client_id, clean))).await;
        assert!(
            matches!(c.recv().await, Packet::ConnAck(a) if a.reason_code == ReasonCode::Success)
        );
        c
    }

    async fn subscribe(&mut self, filter: &str, qos: QoS) {
        self.send(Packet::Subscribe(tern_codec::Subscribe {
            packet_id: pid(1),
            properties: Default::default(),
            subscriptions: tern_codec::smallvec::smallvec![tern_codec::Subscription {
                filter: s(filter),
                options: opts(qos),
            }],
        }))
        .await;
        assert!(matches!(self.recv().await, Packet::SubAck(_)));
    }

    async fn ping(&mut self) {
        self.send(Packet::PingReq).await;
        assert_eq!(self.recv().await, Packet::PingResp);
    }
}

#[tokio::test]
async fn metrics_after_a_known_workload() {
    let mut config = config();
    config.sys_interval = 0;
    config.limits.max_connections = 2;
    config.metrics.bind = Some("127.0.0.1:0".parse().unwrap());
    let broker = broker_with(config).await;
    let addr = broker.local_addrs()[0];
    let metrics = broker.metrics_addr().expect("metrics endpoint");

    // A persistent session subscribed at QoS 0, then away: QoS 0 for it is dropped.
    let mut away = Counted::connect(addr, "away", false).await;
    away.subscribe("m/#", QoS::AtMostOnce).await;
    away.send(Packet::Disconnect(Default::default())).await;
    away.client.expect_closed().await;
    let mut sub = Counted::connect(addr, "sub", true).await;
    sub.subscribe("m/#", QoS::AtLeastOnce).await;
    let mut publisher = Counted::connect(addr, "pub", true).await;
    // Two open: a third connection is refused at accept.
    let mut refused = Client::open(addr, V311).await;
    refused.expect_closed().await;

    // QoS 0 twice (once retained), QoS 1 twice, QoS 2 once.
    let mut retained = publish("m/r", "r", QoS::AtMostOnce, None);
    retained.retain = true;
    publisher
        .send(Packet::Publish(publish("m/a", "0", QoS::AtMostOnce, None)))
        .await;
    publisher.send(Packet::Publish(retained)).await;
    for id in 1..=2 {
        publisher
            .send(Packet::Publish(publish(
                "m/a",
                "1",
                QoS::AtLeastOnce,
                Some(id),
            )))
            .await;
        assert!(matches!(publisher.recv().await, Packet::PubAck(_)));
    }
    publisher
        .send(Packet::Publish(publish(
            "m/a",
            "2",
            QoS::ExactlyOnce,
            Some(3),
        )))
        .await;
    assert!(matches!(publisher.recv().await, Packet::PubRec(_)));
    publisher.send(Packet::PubRel(Ack::new(pid(3)))).await;
    assert!(matches!(publisher.recv().await, Packet::PubComp(_)));
    publisher.ping().await;
    // The subscriber gets all five, the QoS 2 one at its granted QoS 1.
    let mut by_qos = [0; 3];
    for _ in 0..5 {
        let Packet::Publish(p) = sub.recv().await else {
            panic!("expected PUBLISH")
        };
        by_qos[p.qos as usize] += 1;
        if let Some(id) = p.packet_id {
            sub.send(Packet::PubAck(Ack::new(id))).await;
        }
    }
    assert_eq!(by_qos, [2, 3, 0]);
    sub.ping().await;

    let received = away.sent + sub.sent + publisher.sent;
    let sent = away.received + sub.received + publisher.received;
    // A write is counted just after the socket took it: wait for the last one.
    wait_for_stats(&broker, "every byte counted", |s| {
        s.bytes_sent == sent && s.bytes_received == received
    })
    .await;

    let (status, content_type, body) = http(metrics, Method::GET, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        content_type,
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    assert!(body.ends_with("# EOF\n"), "{body}");
    assert!(body.contains("# TYPE mqtt_connections gauge\n"), "{body}");
    assert!(
        body.contains("# TYPE mqtt_messages_sent counter\n"),
        "{body}"
    );
    let samples = samples(&body);
    let expected = [
        ("mqtt_connections", 2),
        ("mqtt_clients_connected", 2),
        ("mqtt_connections_opened_total", 3),
        (
            "mqtt_connections_refused_total{reason=\"max_connections\"}",
            1,
        ),
        (
            "mqtt_connections_refused_total{reason=\"listener_max_connections\"}",
            0,
        ),
        ("mqtt_sessions", 3),
        ("mqtt_subscriptions", 2),
        ("mqtt_retained_messages", 1),
        ("mqtt_queued_messages", 0),
        ("mqtt_messages_received_total{qos=\"0\"}", 2),
        ("mqtt_messages_received_total{qos=\"1\"}", 2),
        ("mqtt_messages_received_total{qos=\"2\"}", 1),
        ("mqtt_messages_sent_total{qos=\"0\"}", 2),
        ("mqtt_messages_sent_total{qos=\"1\"}", 3),
        ("mqtt_messages_sent_total{qos=\"2\"}", 0),
        ("mqtt_bytes_received_total", received),
        ("mqtt_bytes_sent_total", sent),
        ("mqtt_messages_dropped_total{reason=\"offline\"}", 5),
        ("mqtt_messages_dropped_total{reason=\"mailbox_full\"}", 0),
        ("mqtt_messages_dropped_total{reason=\"queue_full\"}", 0),
        ("mqtt_messages_dropped_total{reason=\"expired\"}", 0),
        (
            "mqtt_messages_dropped_total{reason=\"packet_too_large\"}",
            0,
        ),
        ("mqtt_slow_consumers_total", 0),
        ("mqtt_sessions_expired_total", 0),
    ];
    for (name, value) in expected {
        assert_eq!(
            samples.get(name).map(String::as_str),
            Some(value.to_string().as_str()),
            "{name} in\n{body}"
        );
    }
    // Control packets by type. Read: three CONNECTs, two SUBSCRIBEs, a DISCONNECT, five
    // PUBLISHes, the subscriber's three PUBACKs, one PUBREL, two PINGREQs. Written: three
    // CONNACKs, two SUBACKs, five PUBLISHes, two PUBACKs, PUBREC and PUBCOMP, two PINGRESPs.
    let types = [
        "connect",
        "connack",
        "publish",
        "puback",
        "pubrec",
        "pubrel",
        "pubcomp",
        "subscribe",
        "suback",
        "unsubscribe",
        "unsuback",
        "pingreq",
        "pingresp",
        "disconnect",
        "auth",
    ];
    let received_by_type = [3, 0, 5, 3, 0, 1, 0, 2, 0, 0, 0, 2, 0, 1, 0];
    let sent_by_type = [0, 3, 5, 2, 1, 0, 1, 0, 2, 0, 0, 0, 2, 0, 0];
    for (direction, counts) in [("received", received_by_type), ("sent", sent_by_type)] {
        for (kind, value) in types.iter().zip(counts) {
            let name = format!("mqtt_packets_{direction}_total{{type=\"{kind}\"}}");
            assert_eq!(
                samples.get(&name).map(String::as_str),
                Some(value.to_string().as_str()),
                "{name} in\n{body}"
            );
        }
    }
    assert_eq!(samples.len(), expected.len() + 2 * types.len(), "{body}");
    assert!(broker.shutdown().await);
}

#[tokio::test]
async fn metrics_endpoint_answers_only_get_metrics() {
    let mut config = config();
    config.metrics.bind = Some("127.0.0.1:0".parse().unwrap());
    let broker = broker_with(config).await;
    let metrics = broker.metrics_addr().unwrap();
    let (status, _, _) = http(metrics, Method::GET, "/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = http(metrics, Method::POST, "/metrics").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _, body) = http(metrics, Method::HEAD, "/metrics").await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, ""));
    // Shutdown stops the endpoint and frees its address.
    assert!(broker.shutdown().await);
    assert!(TcpStream::connect(metrics).await.is_err());
}

#[tokio::test]
async fn metrics_endpoint_is_off_by_default() {
    let broker = broker().await;
    assert_eq!(broker.metrics_addr(), None);
}
