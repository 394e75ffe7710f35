//! A raw MQTT test client over a real loopback socket: packets are built and checked with
//! `tern-codec` only, so the tests see exactly what the broker put on the wire. Every wait is
//! for an event, guarded by a timeout; nothing sleeps for a fixed time.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::num::{NonZeroU16, NonZeroU32};
use std::time::Duration;

use bytes::BytesMut;
use tern_broker::{Broker, BrokerHandle, Config, Stats};
use tern_codec::{
    Ack, ConnAck, Connect, ConnectProperties, Decoder, Disconnect, MAX_PACKET_SIZE, MqttString,
    Packet, ProtocolVersion, Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe,
    SubscribeProperties, Subscription, SubscriptionOptions, UnsubAck, Unsubscribe, Will,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long any wait may take before the test fails.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The default configuration on an ephemeral loopback port.
pub fn config() -> Config {
    Config::with_listeners(["127.0.0.1:0".parse().unwrap()])
}

/// A broker on an ephemeral loopback port.
pub async fn broker() -> BrokerHandle {
    broker_with(config()).await
}

/// A broker with this configuration (its listeners should use port 0).
pub async fn broker_with(config: Config) -> BrokerHandle {
    Broker::new(config).start().await.expect("broker starts")
}

/// A packet identifier.
pub fn pid(id: u16) -> NonZeroU16 {
    NonZeroU16::new(id).unwrap()
}

/// A string.
pub fn s(text: &str) -> MqttString {
    MqttString::try_from(text).unwrap()
}

/// A CONNECT for `version` with this client identifier and clean start.
pub fn connect(version: ProtocolVersion, client_id: &str, clean_start: bool) -> Connect {
    Connect {
        protocol: version,
        clean_start,
        keep_alive: 0,
        client_id: s(client_id),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }
}

/// A PUBLISH.
pub fn publish(topic: &str, payload: &'static str, qos: QoS, id: Option<u16>) -> Publish {
    Publish {
        qos,
        topic: s(topic),
        packet_id: id.map(pid),
        payload: payload.into(),
        ..Publish::default()
    }
}

/// A Will.
pub fn will(topic: &str, payload: &'static str) -> Will {
    Will {
        topic: s(topic),
        payload: payload.into(),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    }
}

/// Subscription options with this QoS.
pub fn opts(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        ..SubscriptionOptions::default()
    }
}

/// Waits until the broker's stats satisfy `condition`; fails after [`TIMEOUT`] with `what`
/// and the last stats.
pub async fn wait_for_stats(
    broker: &BrokerHandle,
    what: &str,
    condition: impl Fn(&Stats) -> bool,
) -> Stats {
    let waited = tokio::time::timeout(TIMEOUT, async {
        loop {
            let stats = broker.stats();
            if condition(&stats) {
                return stats;
            }
            // Polled: the counters have no notification of their own.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    match waited {
        Ok(stats) => stats,
        Err(_) => panic!("timed out waiting for {what}: {:?}", broker.stats()),
    }
}

/// A PUBLISH with a payload of `size` bytes that starts with `tag` (padded with dots).
pub fn big_publish(topic: &str, tag: &str, size: usize, qos: QoS, id: Option<u16>) -> Publish {
    let mut payload = tag.as_bytes().to_vec();
    payload.resize(size.max(tag.len()), b'.');
    Publish {
        qos,
        topic: s(topic),
        packet_id: id.map(pid),
        payload: payload.into(),
        ..Publish::default()
    }
}

/// The tag of a [`big_publish`] payload: the bytes before the first dot.
pub fn tag_of(publish: &Publish) -> String {
    let end = publish
        .payload
        .iter()
        .position(|&b| b == b'.')
        .unwrap_or(publish.payload.len());
    String::from_utf8_lossy(&publish.payload[..end]).into_owned()
}

/// A raw client.
pub struct Client {
    stream: TcpStream,
    version: ProtocolVersion,
    decoder: Decoder,
    buf: BytesMut,
}

impl Client {
    /// Opens a TCP connection; nothing sent yet.
    pub async fn open(addr: SocketAddr, version: ProtocolVersion) -> Client {
        let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        Client::from_stream(stream, version)
    }

    /// Opens a TCP connection with a small receive buffer, so that a client that does not
    /// read stalls the broker's writes soon.
    pub async fn open_small(addr: SocketAddr, version: ProtocolVersion) -> Client {
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
        let stream = tokio::time::timeout(TIMEOUT, socket.connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        Client::from_stream(stream, version)
    }

    /// Connects with `connect` over a socket with a small receive buffer ([`open_small`]).
    ///
    /// [`open_small`]: Client::open_small
    pub async fn connect_small(addr: SocketAddr, connect: Connect) -> Client {
        let mut client = Client::open_small(addr, connect.protocol).await;
        client.send(Packet::from(connect)).await;
        let connack = client.connack().await;
        assert_eq!(connack.reason_code, ReasonCode::Success, "{connack:?}");
        client
    }

    fn from_stream(stream: TcpStream, version: ProtocolVersion) -> Client {
        Client {
            stream,
            version,
            decoder: Decoder::with_version(version, MAX_PACKET_SIZE),
            buf: BytesMut::new(),
        }
    }

    /// Connects with `connect` and returns the CONNACK.
    pub async fn connect_with(addr: SocketAddr, connect: Connect) -> (Client, ConnAck) {
        let mut client = Client::open(addr, connect.protocol).await;
        client.send(Packet::from(connect)).await;
        let connack = client.connack().await;
        (client, connack)
    }

    /// Connects and expects success.
    pub async fn connected(
        addr: SocketAddr,
        version: ProtocolVersion,
        client_id: &str,
        clean_start: bool,
    ) -> Client {
        let (client, connack) =
            Client::connect_with(addr, connect(version, client_id, clean_start)).await;
        assert_eq!(connack.reason_code, ReasonCode::Success, "{connack:?}");
        client
    }

    /// Sends one packet.
    pub async fn send(&mut self, packet: Packet) {
        let mut out = BytesMut::new();
        packet.encode(self.version, &mut out).expect("encodes");
        self.send_raw(&out).await;
    }

    /// Sends raw bytes.
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The next packet, or `None` if the broker closed the connection.
    pub async fn recv_or_closed(&mut self) -> Option<Packet> {
        tokio::time::timeout(TIMEOUT, async {
            loop {
                if let Some(packet) = self
                    .decoder
                    .decode(&mut self.buf)
                    .expect("broker sends valid packets")
                {
                    return Some(packet);
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("a packet or a close in time")
    }

    /// The next packet; fails if the connection closes.
    pub async fn recv(&mut self) -> Packet {
        self.recv_or_closed().await.expect("connection open")
    }

    /// Expects the broker to close the connection (after any packets matching `allowed`).
    pub async fn expect_closed(&mut self) {
        if let Some(packet) = self.recv_or_closed().await {
            panic!("expected a close, got {packet:?}");
        }
    }

    /// The CONNACK.
    pub async fn connack(&mut self) -> ConnAck {
        match self.recv().await {
            Packet::ConnAck(c) => *c,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Expects a PUBLISH.
    pub async fn expect_publish(&mut self) -> Publish {
        match self.recv().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Expects a DISCONNECT.
    pub async fn expect_disconnect(&mut self) -> Disconnect {
        match self.recv().await {
            Packet::Disconnect(d) => d,
            other => panic!("expected DISCONNECT, got {other:?}"),
        }
    }

    /// Subscribes to one filter and returns the SUBACK.
    pub async fn subscribe(
        &mut self,
        id: u16,
        filter: &str,
        options: SubscriptionOptions,
    ) -> SubAck {
        self.subscribe_with(id, &[(filter, options)], None).await
    }

    /// Subscribes to several filters, with an optional subscription identifier.
    pub async fn subscribe_with(
        &mut self,
        id: u16,
        filters: &[(&str, SubscriptionOptions)],
        identifier: Option<u32>,
    ) -> SubAck {
        let subscribe = Subscribe {
            packet_id: pid(id),
            properties: SubscribeProperties {
                subscription_identifier: identifier.and_then(NonZeroU32::new),
                ..SubscribeProperties::default()
            },
            subscriptions: filters
                .iter()
                .map(|(f, o)| Subscription {
                    filter: s(f),
                    options: *o,
                })
                .collect(),
        };
        self.send(Packet::Subscribe(subscribe)).await;
        match self.recv().await {
            Packet::SubAck(a) => {
                assert_eq!(a.packet_id, pid(id));
                a
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Unsubscribes and returns the UNSUBACK.
    pub async fn unsubscribe(&mut self, id: u16, filters: &[&str]) -> UnsubAck {
        self.send(Packet::Unsubscribe(Unsubscribe {
            packet_id: pid(id),
            properties: Default::default(),
            filters: filters.iter().map(|f| s(f)).collect(),
        }))
        .await;
        match self.recv().await {
            Packet::UnsubAck(a) => a,
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
    }

    /// Publishes at QoS 1 and waits for the PUBACK.
    pub async fn publish_qos1(
        &mut self,
        id: u16,
        topic: &str,
        payload: &'static str,
        retain: bool,
    ) -> Ack {
        let mut p = publish(topic, payload, QoS::AtLeastOnce, Some(id));
        p.retain = retain;
        self.send(Packet::Publish(p)).await;
        match self.recv().await {
            Packet::PubAck(a) => a,
            other => panic!("expected PUBACK, got {other:?}"),
        }
    }

    /// A round trip: PINGREQ answered by PINGRESP. Everything the broker sent before the
    /// PINGRESP is returned, so that "nothing else arrived" can be asserted.
    pub async fn ping(&mut self) -> Vec<Packet> {
        self.send(Packet::PingReq).await;
        let mut before = Vec::new();
        loop {
            match self.recv().await {
                Packet::PingResp => return before,
                other => before.push(other),
            }
        }
    }

    /// Sends DISCONNECT (normal) and waits for the broker to close.
    pub async fn disconnect(mut self) {
        self.send(Packet::Disconnect(Disconnect::default())).await;
        self.expect_closed().await;
    }

    /// Sends DISCONNECT with properties and waits for the broker to close.
    pub async fn disconnect_with(mut self, disconnect: Disconnect) {
        self.send(Packet::Disconnect(disconnect)).await;
        self.expect_closed().await;
    }

    /// Drops the TCP connection without DISCONNECT.
    pub fn drop_connection(self) {
        drop(self.stream);
    }
}

/// Retain Handling options.
pub fn retain_handling(qos: QoS, handling: RetainHandling) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        retain_handling: handling,
        ..SubscriptionOptions::default()
    }
}
