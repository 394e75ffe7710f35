//! Helpers shared by the rule tests: virtual time, hand-written packets and a client and a
//! server session driven back to back.

#![allow(dead_code)]

use std::num::NonZeroU16;
use std::time::Instant;

use bytes::BytesMut;
use tern_codec::{
    Connect, ConnectProperties, Decoder, MAX_PACKET_SIZE, MqttString, Packet, ProtocolVersion,
    Publish, QoS,
};
use tern_proto::{Accept, ClientConfig, ClientSession, Event, ServerConfig, ServerSession};

/// The base of virtual time. The clock ban is for the engine; a test fabricates one instant
/// and moves it by hand.
#[allow(clippy::disallowed_methods)]
pub(crate) fn t0() -> Instant {
    Instant::now()
}

pub(crate) fn id(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap()
}

pub(crate) fn ms(text: &'static str) -> MqttString {
    MqttString::from_static(text)
}

pub(crate) fn publish(topic: &'static str, qos: QoS) -> Publish {
    Publish {
        qos,
        topic: MqttString::from_static(topic),
        payload: "x".into(),
        ..Publish::default()
    }
}

pub(crate) fn connect_packet(
    version: ProtocolVersion,
    client_id: &'static str,
    clean: bool,
) -> Connect {
    Connect {
        protocol: version,
        clean_start: clean,
        keep_alive: 10,
        client_id: MqttString::from_static(client_id),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }
}

pub(crate) fn encode(version: ProtocolVersion, packets: &[Packet]) -> BytesMut {
    let mut buf = BytesMut::new();
    for p in packets {
        p.encode(version, &mut buf).unwrap();
    }
    buf
}

pub(crate) fn decode_all(version: ProtocolVersion, buf: &mut BytesMut) -> Vec<Packet> {
    let mut d = Decoder::with_version(version, MAX_PACKET_SIZE);
    let mut out = Vec::new();
    while let Some(p) = d.decode(buf).unwrap() {
        out.push(p);
    }
    assert!(buf.is_empty(), "trailing bytes: {buf:?}");
    out
}

/// Everything a server session has to send, decoded.
pub(crate) fn sent_by_server(s: &mut ServerSession) -> Vec<Packet> {
    let mut out = BytesMut::new();
    s.poll_transmit(&mut out);
    decode_all(s.version(), &mut out)
}

/// Everything a client session has to send, decoded.
pub(crate) fn sent_by_client(c: &mut ClientSession) -> Vec<Packet> {
    let mut out = BytesMut::new();
    c.poll_transmit(&mut out);
    decode_all(c.version(), &mut out)
}

pub(crate) fn events_server(s: &mut ServerSession) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

pub(crate) fn events_client(c: &mut ClientSession) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

/// A server session that accepted `connect`; returns it with the CONNACK drained.
pub(crate) fn server_with(config: ServerConfig, connect: Connect, now: Instant) -> ServerSession {
    let v = connect.protocol;
    let mut s = ServerSession::new(config);
    s.handle_input(now, &mut encode(v, &[Packet::from(connect)]));
    assert!(matches!(
        events_server(&mut s).as_slice(),
        [Event::ConnectRequest(_)]
    ));
    s.accept(now, Accept::default()).unwrap();
    let mut out = BytesMut::new();
    s.poll_transmit(&mut out);
    s
}

/// Runs a client against a server until both are quiet.
pub(crate) fn pump(now: Instant, c: &mut ClientSession, s: &mut ServerSession) {
    loop {
        let mut buf = BytesMut::new();
        let a = c.poll_transmit(&mut buf);
        s.handle_input(now, &mut buf);
        let b = s.poll_transmit(&mut buf);
        c.handle_input(now, &mut buf);
        if a == 0 && b == 0 {
            break;
        }
    }
}

/// A client and a server connected with these configurations and `accept`; the events of the
/// handshake are drained.
pub(crate) fn pair_with(
    client: ClientConfig,
    server: ServerConfig,
    accept: Accept,
    now: Instant,
) -> (ClientSession, ServerSession) {
    let mut c = ClientSession::new(client);
    let mut s = ServerSession::new(server);
    c.connect(now).unwrap();
    pump(now, &mut c, &mut s);
    assert!(matches!(
        events_server(&mut s).as_slice(),
        [Event::ConnectRequest(_)]
    ));
    s.accept(now, accept).unwrap();
    pump(now, &mut c, &mut s);
    assert!(c.is_connected() && s.is_connected());
    events_client(&mut c);
    (c, s)
}

pub(crate) fn connected_pair(
    version: ProtocolVersion,
    now: Instant,
) -> (ClientSession, ServerSession) {
    pair_with(
        ClientConfig::new(version, ms("c1")),
        ServerConfig::default(),
        Accept::default(),
        now,
    )
}
