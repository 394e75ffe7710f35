//! One test per rule, driving a client and a server session back to back (or one side against
//! hand-written packets), in virtual time.

use std::num::{NonZeroU16, NonZeroU32};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tern_codec::{
    Ack, Connect, ConnectProperties, Decoder, Disconnect, MAX_PACKET_SIZE, MqttString, Packet,
    ProtocolVersion, Publish, PublishProperties, QoS, ReasonCode, Will, WillProperties,
};
use tern_proto::{
    Accept, AckMode, ClientConfig, ClientSession, ConnectionError, DeliverOutcome, DeliveryOptions,
    DropReason, Event, Message, ProtocolError, PublishError, ServerConfig, ServerSession,
};

/// The base of virtual time. The clock ban is for the engine; a test fabricates one instant
/// and moves it by hand.
#[allow(clippy::disallowed_methods)]
fn t0() -> Instant {
    Instant::now()
}

fn id(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap()
}

fn publish(topic: &'static str, qos: QoS) -> Publish {
    Publish {
        qos,
        topic: MqttString::from_static(topic),
        payload: "x".into(),
        ..Publish::default()
    }
}

fn connect_packet(version: ProtocolVersion, client_id: &'static str, clean: bool) -> Connect {
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

fn encode(version: ProtocolVersion, packets: &[Packet]) -> BytesMut {
    let mut buf = BytesMut::new();
    for p in packets {
        p.encode(version, &mut buf).unwrap();
    }
    buf
}

fn decode_all(version: ProtocolVersion, buf: &mut BytesMut) -> Vec<Packet> {
    let mut d = Decoder::with_version(version, MAX_PACKET_SIZE);
    let mut out = Vec::new();
    while let Some(p) = d.decode(buf).unwrap() {
        out.push(p);
    }
    out
}

fn events_server(s: &mut ServerSession) -> Vec<Event> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn events_client(c: &mut ClientSession) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}

/// A server session that accepted `connect`; returns it with the CONNACK drained.
fn server_with(config: ServerConfig, connect: Connect, now: Instant) -> ServerSession {
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
fn pump(now: Instant, c: &mut ClientSession, s: &mut ServerSession) {
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

fn connected_pair(version: ProtocolVersion, now: Instant) -> (ClientSession, ServerSession) {
    let mut c = ClientSession::new(ClientConfig::new(version, MqttString::from_static("c1")));
    let mut s = ServerSession::new(ServerConfig::default());
    c.connect(now).unwrap();
    pump(now, &mut c, &mut s);
    assert!(matches!(
        events_server(&mut s).as_slice(),
        [Event::ConnectRequest(_)]
    ));
    s.accept(now, Accept::default()).unwrap();
    pump(now, &mut c, &mut s);
    assert!(c.is_connected() && s.is_connected());
    events_client(&mut c);
    (c, s)
}

#[test]
fn qos2_flow_both_directions_delivers_once() {
    // [MQTT-4.3.3]: PUBLISH / PUBREC / PUBREL / PUBCOMP, delivered once.
    let now = t0();
    for v in [
        ProtocolVersion::V3_1,
        ProtocolVersion::V3_1_1,
        ProtocolVersion::V5,
    ] {
        let (mut c, mut s) = connected_pair(v, now);
        let pid = c
            .publish(now, &publish("t", QoS::ExactlyOnce))
            .unwrap()
            .unwrap();
        pump(now, &mut c, &mut s);
        let ev = events_server(&mut s);
        assert_eq!(
            ev.iter()
                .filter(|e| matches!(e, Event::Publish { .. }))
                .count(),
            1
        );
        assert!(matches!(events_client(&mut c).as_slice(),
            [Event::PublishAcknowledged { packet_id, qos: QoS::ExactlyOnce, reason_code: ReasonCode::Success, .. }] if *packet_id == pid));
        assert!(s.state().awaiting_pubrel.is_empty() && c.state().outgoing.is_empty());

        let m = Message::new(publish("u", QoS::ExactlyOnce), None, now);
        let out = s.deliver(now, &m, QoS::ExactlyOnce, &[], DeliveryOptions::default());
        assert!(matches!(out, DeliverOutcome::Sent(Some(_))));
        pump(now, &mut c, &mut s);
        assert_eq!(
            events_client(&mut c)
                .iter()
                .filter(|e| matches!(e, Event::Publish { .. }))
                .count(),
            1
        );
        assert!(s.state().outgoing.is_empty());
    }
}

#[test]
fn duplicate_qos2_publish_is_not_delivered_twice() {
    // [MQTT-4.3.3-10]: until PUBREL, a PUBLISH with the same identifier is answered with
    // PUBREC and not delivered again.
    let now = t0();
    let v = ProtocolVersion::V5;
    let mut s = server_with(ServerConfig::default(), connect_packet(v, "c", true), now);
    let mut p = publish("t", QoS::ExactlyOnce);
    p.packet_id = Some(id(7));
    s.handle_input(now, &mut encode(v, &[Packet::Publish(p.clone())]));
    p.dup = true;
    s.handle_input(now, &mut encode(v, &[Packet::Publish(p)]));
    let ev = events_server(&mut s);
    assert_eq!(
        ev.iter()
            .filter(|e| matches!(e, Event::Publish { .. }))
            .count(),
        1
    );
    let mut out = BytesMut::new();
    s.poll_transmit(&mut out);
    let packets = decode_all(v, &mut out);
    assert_eq!(
        packets,
        vec![
            Packet::PubRec(Ack::new(id(7))),
            Packet::PubRec(Ack::new(id(7)))
        ]
    );
}

#[test]
fn acks_leave_in_arrival_order() {
    // [MQTT-4.6.0-2], [MQTT-4.6.0-3]: PUBACK/PUBREC in the order the PUBLISHes arrived, even
    // when the application acknowledges out of order.
    let now = t0();
    let v = ProtocolVersion::V3_1_1;
    let config = ServerConfig {
        ack_mode: AckMode::Manual,
        ..ServerConfig::default()
    };
    let mut s = server_with(config, connect_packet(v, "c", true), now);
    let mut a = publish("t", QoS::AtLeastOnce);
    a.packet_id = Some(id(1));
    let mut b = publish("t", QoS::ExactlyOnce);
    b.packet_id = Some(id(2));
    s.handle_input(
        now,
        &mut encode(v, &[Packet::Publish(a), Packet::Publish(b)]),
    );
    assert!(events_server(&mut s).iter().all(|e| matches!(
        e,
        Event::Publish {
            needs_ack: true,
            ..
        }
    )));
    s.ack(now, id(2), ReasonCode::Success).unwrap();
    let mut out = BytesMut::new();
    assert_eq!(
        s.poll_transmit(&mut out),
        0,
        "the second ack waits for the first"
    );
    s.ack(now, id(1), ReasonCode::Success).unwrap();
    s.poll_transmit(&mut out);
    assert_eq!(
        decode_all(v, &mut out),
        vec![
            Packet::PubAck(Ack::new(id(1))),
            Packet::PubRec(Ack::new(id(2)))
        ]
    );
    assert!(matches!(
        s.ack(now, id(1), ReasonCode::Success),
        Err(tern_proto::UserError::UnknownPacketId(1))
    ));
}

#[test]
fn resume_resends_with_dup_in_original_order() {
    // [MQTT-4.4.0-1], [MQTT-4.6.0-1], [MQTT-3.3.1-1]: on resume, unacknowledged PUBLISH
    // (DUP=1) and PUBREL packets are resent with their identifiers, in the original order.
    let now = t0();
    let v = ProtocolVersion::V5;
    let mut config = ClientConfig::new(v, MqttString::from_static("c"));
    config.connect.properties.session_expiry_interval = Some(100);
    let mut c = ClientSession::new(config);
    let mut s = ServerSession::new(ServerConfig {
        ack_mode: AckMode::Manual,
        ..ServerConfig::default()
    });
    c.connect(now).unwrap();
    pump(now, &mut c, &mut s);
    s.accept(now, Accept::default()).unwrap();
    pump(now, &mut c, &mut s);
    let p1 = c
        .publish(now, &publish("a", QoS::ExactlyOnce))
        .unwrap()
        .unwrap();
    let p2 = c
        .publish(now, &publish("b", QoS::AtLeastOnce))
        .unwrap()
        .unwrap();
    pump(now, &mut c, &mut s);
    // p1 is PUBRECed (the server acks it), p2 is not.
    s.ack(now, p1, ReasonCode::Success).unwrap();
    let mut buf = BytesMut::new();
    s.poll_transmit(&mut buf);
    c.handle_input(now, &mut buf);
    let mut lost = BytesMut::new();
    c.poll_transmit(&mut lost); // the PUBREL is lost with the link
    c.handle_transport_closed(now);
    s.handle_transport_closed(now);
    let state = s.into_state();

    c.connect(now).unwrap();
    let mut s = ServerSession::new(ServerConfig::default());
    let mut buf = BytesMut::new();
    c.poll_transmit(&mut buf);
    s.handle_input(now, &mut buf);
    events_server(&mut s);
    s.accept(
        now,
        Accept {
            session: Some(state),
            ..Accept::default()
        },
    )
    .unwrap();
    s.poll_transmit(&mut buf);
    c.handle_input(now, &mut buf);
    assert!(events_client(&mut c).iter().any(|e| matches!(
        e,
        Event::Connected {
            session_present: true,
            ..
        }
    )));
    c.poll_transmit(&mut buf);
    let packets = decode_all(v, &mut buf);
    assert_eq!(packets.len(), 2);
    assert_eq!(packets[0], Packet::PubRel(Ack::new(p1)));
    let Packet::Publish(p) = &packets[1] else {
        panic!("{packets:?}")
    };
    assert!(p.dup && p.packet_id == Some(p2) && p.topic == "b");
}

#[test]
fn receive_maximum_blocks_then_writable() {
    // [MQTT-3.3.4-7]: no more than the server's Receive Maximum in flight; Blocked, then
    // Writable when PUBACK frees a slot.
    let now = t0();
    let v = ProtocolVersion::V5;
    let mut c = ClientSession::new(ClientConfig::new(v, MqttString::from_static("c")));
    let config = ServerConfig {
        receive_maximum: 1,
        ack_mode: AckMode::Manual,
        ..ServerConfig::default()
    };
    let mut s = ServerSession::new(config);
    c.connect(now).unwrap();
    pump(now, &mut c, &mut s);
    s.accept(now, Accept::default()).unwrap();
    pump(now, &mut c, &mut s);
    assert_eq!(c.server_limits().receive_maximum, 1);
    let first = c
        .publish(now, &publish("t", QoS::AtLeastOnce))
        .unwrap()
        .unwrap();
    assert_eq!(
        c.publish(now, &publish("t", QoS::AtLeastOnce)),
        Err(PublishError::Blocked)
    );
    pump(now, &mut c, &mut s);
    s.ack(now, first, ReasonCode::Success).unwrap();
    pump(now, &mut c, &mut s);
    assert!(events_client(&mut c).contains(&Event::Writable));
    assert!(c.publish(now, &publish("t", QoS::AtLeastOnce)).is_ok());
}

#[test]
fn receive_maximum_exceeded_disconnects_0x93() {
    // [MQTT-3.3.4-7]: a client sending more unacknowledged QoS 1/2 PUBLISHes than the
    // server's Receive Maximum gets DISCONNECT 0x93.
    let now = t0();
    let v = ProtocolVersion::V5;
    let config = ServerConfig {
        receive_maximum: 1,
        ack_mode: AckMode::Manual,
        ..ServerConfig::default()
    };
    let mut s = server_with(config, connect_packet(v, "c", true), now);
    let mut a = publish("t", QoS::AtLeastOnce);
    a.packet_id = Some(id(1));
    let mut b = a.clone();
    b.packet_id = Some(id(2));
    s.handle_input(
        now,
        &mut encode(v, &[Packet::Publish(a), Packet::Publish(b)]),
    );
    let ev = events_server(&mut s);
    assert!(ev.contains(&Event::Disconnected(ConnectionError::Protocol(
        ProtocolError::ReceiveMaximumExceeded(1)
    ))));
    let mut out = BytesMut::new();
    s.poll_transmit(&mut out);
    let packets = decode_all(v, &mut out);
    assert!(
        matches!(packets.last(), Some(Packet::Disconnect(d)) if d.reason_code == ReasonCode::ReceiveMaximumExceeded)
    );
}

#[test]
fn packet_too_large_for_peer_is_not_sent() {
    // [MQTT-3.1.2-24], [MQTT-3.1.2-25]: a packet larger than the client's Maximum Packet Size
    // is not sent; the server discards it.
    let now = t0();
    let v = ProtocolVersion::V5;
    let mut connect = connect_packet(v, "c", true);
    connect.properties.maximum_packet_size = NonZeroU32::new(64);
    let mut s = server_with(ServerConfig::default(), connect, now);
    let mut big = publish("t", QoS::AtLeastOnce);
    big.payload = vec![0u8; 100].into();
    let m = Message::new(big, None, now);
    assert_eq!(
        s.deliver(now, &m, QoS::AtLeastOnce, &[], DeliveryOptions::default()),
        DeliverOutcome::Dropped(DropReason::PacketTooLarge)
    );
    assert_eq!(s.inflight(), 0);
}

#[test]
fn inbound_packet_too_large_disconnects_0x95() {
    // [MQTT-3.2.2-15] (the server's Maximum Packet Size), enforced from the fixed header.
    let now = t0();
    let v = ProtocolVersion::V5;
    let config = ServerConfig {
        maximum_packet_size: 50,
        ..ServerConfig::default()
    };
    let mut s = server_with(config, connect_packet(v, "c", true), now);
    let mut big = publish("t", QoS::AtMostOnce);
    big.payload = vec![0u8; 100].into();
    s.handle_input(now, &mut encode(v, &[Packet::Publish(big)]));
    let ev = events_server(&mut s);
    assert!(
        matches!(ev.as_slice(), [Event::Disconnected(ConnectionError::Protocol(e))] if e.reason_code() == ReasonCode::PacketTooLarge)
    );
}

#[test]
fn topic_alias_rules() {
    // [MQTT-3.3.2-9]: an alias above the announced maximum is 0x94; an alias defined on the
    // connection resolves later PUBLISHes with an empty topic.
    let now = t0();
    let v = ProtocolVersion::V5;
    let config = ServerConfig {
        topic_alias_maximum: 2,
        ..ServerConfig::default()
    };
    let mut s = server_with(config.clone(), connect_packet(v, "c", true), now);
    let mut define = publish("long/topic/name", QoS::AtMostOnce);
    define.properties.topic_alias = Some(id(2));
    let mut use_it = publish("t", QoS::AtMostOnce);
    use_it.topic = MqttString::new();
    use_it.properties.topic_alias = Some(id(2));
    s.handle_input(
        now,
        &mut encode(v, &[Packet::Publish(define), Packet::Publish(use_it)]),
    );
    let topics: Vec<_> = events_server(&mut s)
        .into_iter()
        .filter_map(|e| match e {
            Event::Publish { publish, .. } => Some(publish.topic),
            _ => None,
        })
        .collect();
    assert_eq!(topics, vec!["long/topic/name", "long/topic/name"]);

    let mut s = server_with(config, connect_packet(v, "c", true), now);
    let mut bad = publish("x", QoS::AtMostOnce);
    bad.properties.topic_alias = Some(id(3));
    s.handle_input(now, &mut encode(v, &[Packet::Publish(bad)]));
    let ev = events_server(&mut s);
    assert!(
        matches!(ev.as_slice(), [Event::Disconnected(ConnectionError::Protocol(e))] if e.reason_code() == ReasonCode::TopicAliasInvalid)
    );
}

#[test]
fn client_picks_aliases_within_server_maximum() {
    // [MQTT-3.3.2-9]: the client never uses an alias above the server's maximum; the server
    // resolves it back.
    let now = t0();
    let v = ProtocolVersion::V5;
    let mut c = ClientSession::new(ClientConfig::new(v, MqttString::from_static("c")));
    let mut s = ServerSession::new(ServerConfig {
        topic_alias_maximum: 1,
        ..ServerConfig::default()
    });
    c.connect(now).unwrap();
    pump(now, &mut c, &mut s);
    s.accept(now, Accept::default()).unwrap();
    pump(now, &mut c, &mut s);
    events_server(&mut s);
    for topic in ["sensors/one", "sensors/one", "sensors/two", "sensors/one"] {
        c.publish(now, &publish(topic, QoS::AtMostOnce)).unwrap();
    }
    pump(now, &mut c, &mut s);
    let topics: Vec<_> = events_server(&mut s)
        .into_iter()
        .filter_map(|e| match e {
            Event::Publish { publish, .. } => Some(publish.topic),
            _ => None,
        })
        .collect();
    assert_eq!(
        topics,
        vec!["sensors/one", "sensors/one", "sensors/two", "sensors/one"]
    );
    assert!(s.is_connected());
}

#[test]
fn subscription_identifier_from_client_is_a_protocol_error() {
    // [MQTT-3.3.4-6]
    let now = t0();
    let v = ProtocolVersion::V5;
    let mut s = server_with(ServerConfig::default(), connect_packet(v, "c", true), now);
    let mut p = publish("t", QoS::AtMostOnce);
    p.properties.subscription_identifiers = vec![NonZeroU32::new(1).unwrap()];
    s.handle_input(now, &mut encode(v, &[Packet::Publish(p)]));
    assert_eq!(
        events_server(&mut s),
        vec![Event::Disconnected(ConnectionError::Protocol(
            ProtocolError::SubscriptionIdFromClient
        ))]
    );
}

#[test]
fn unknown_pubrel_gets_pubcomp_0x92() {
    // A PUBREL for an identifier not awaiting release is answered with PUBCOMP 0x92.
    let now = t0();
    let v = ProtocolVersion::V5;
    let mut s = server_with(ServerConfig::default(), connect_packet(v, "c", true), now);
    s.handle_input(now, &mut encode(v, &[Packet::PubRel(Ack::new(id(9)))]));
    let mut out = BytesMut::new();
    s.poll_transmit(&mut out);
    let packets = decode_all(v, &mut out);
    assert!(
        matches!(packets.as_slice(), [Packet::PubComp(a)] if a.reason_code == ReasonCode::PacketIdentifierNotFound)
    );
    assert!(s.is_connected());
}

#[test]
fn second_connect_is_a_protocol_error() {
    // [MQTT-3.1.0-2]
    let now = t0();
    let v = ProtocolVersion::V3_1_1;
    let mut s = server_with(ServerConfig::default(), connect_packet(v, "c", true), now);
    s.handle_input(
        now,
        &mut encode(v, &[Packet::from(connect_packet(v, "c", true))]),
    );
    assert!(s.is_closed());
    let ev = events_server(&mut s);
    assert_eq!(ev.len(), 1, "reported exactly once: {ev:?}");
}

#[test]
fn empty_client_id_without_clean_session_is_rejected_with_code_2() {
    // [MQTT-3.1.3-8]: 3.1.1, zero-byte client id with Clean Session 0: CONNACK 0x02.
    let now = t0();
    let v = ProtocolVersion::V3_1_1;
    let mut s = ServerSession::new(ServerConfig::default());
    s.handle_input(
        now,
        &mut encode(v, &[Packet::from(connect_packet(v, "", false))]),
    );
    assert_eq!(
        events_server(&mut s),
        vec![Event::Disconnected(ConnectionError::Rejected(
            ReasonCode::ClientIdentifierNotValid
        ))]
    );
    let mut out = BytesMut::new();
    s.poll_transmit(&mut out);
    let packets = decode_all(v, &mut out);
    assert!(
        matches!(packets.as_slice(), [Packet::ConnAck(c)] if c.reason_code == ReasonCode::ClientIdentifierNotValid)
    );
}

#[test]
fn v5_empty_client_id_needs_an_assigned_one() {
    // [MQTT-3.2.2-16]: the broker assigns the identifier through accept.
    let now = t0();
    let v = ProtocolVersion::V5;
    let mut s = ServerSession::new(ServerConfig::default());
    s.handle_input(
        now,
        &mut encode(v, &[Packet::from(connect_packet(v, "", true))]),
    );
    events_server(&mut s);
    assert!(s.accept(now, Accept::default()).is_err());
    let mut accept = Accept::default();
    accept.properties.assigned_client_identifier = Some(MqttString::from_static("auto-1"));
    s.accept(now, accept).unwrap();
    assert_eq!(s.client_id(), "auto-1");
}

#[test]
fn server_closes_after_one_and_a_half_keep_alive() {
    // [MQTT-3.1.2-22] (3.1.1: [MQTT-3.1.2-24]): silence for 1.5 x keep alive closes.
    let now = t0();
    for v in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let s0 = server_with(ServerConfig::default(), connect_packet(v, "c", true), now);
        let mut s = s0;
        assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(15)));
        s.handle_timeout(now + Duration::from_millis(14_999));
        assert!(s.is_connected());
        s.handle_timeout(now + Duration::from_secs(15));
        assert_eq!(
            events_server(&mut s),
            vec![Event::Disconnected(ConnectionError::KeepAliveTimeout)]
        );
    }
}

#[test]
fn keep_alive_zero_means_no_timer() {
    // [MQTT-3.1.2-22]: a Keep Alive of 0 turns the mechanism off.
    let now = t0();
    let mut connect = connect_packet(ProtocolVersion::V5, "c", true);
    connect.keep_alive = 0;
    let s = server_with(ServerConfig::default(), connect, now);
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn client_pings_when_idle_and_dies_without_pingresp() {
    // [MQTT-3.1.2-20]: PINGREQ after keep alive of idleness; no PINGRESP is a dead link.
    let now = t0();
    let v = ProtocolVersion::V3_1_1;
    let (mut c, _s) = connected_pair(v, now);
    let k = Duration::from_secs(60);
    assert_eq!(c.poll_timeout(), Some(now + k));
    c.handle_timeout(now + k);
    let mut out = BytesMut::new();
    c.poll_transmit(&mut out);
    assert_eq!(decode_all(v, &mut out), vec![Packet::PingReq]);
    c.handle_timeout(now + k * 2);
    assert_eq!(
        events_client(&mut c),
        vec![Event::Disconnected(ConnectionError::KeepAliveTimeout)]
    );
}

#[test]
fn server_keep_alive_overrides_client() {
    // [MQTT-3.2.2-21]
    let now = t0();
    let v = ProtocolVersion::V5;
    let mut c = ClientSession::new(ClientConfig::new(v, MqttString::from_static("c")));
    let mut s = ServerSession::new(ServerConfig::default());
    c.connect(now).unwrap();
    pump(now, &mut c, &mut s);
    let mut accept = Accept::default();
    accept.properties.server_keep_alive = Some(5);
    s.accept(now, accept).unwrap();
    pump(now, &mut c, &mut s);
    assert_eq!(c.keep_alive(), 5);
    assert_eq!(c.poll_timeout(), Some(now + Duration::from_secs(5)));
}

fn connect_with_will(delay: u32) -> Connect {
    let mut c = connect_packet(ProtocolVersion::V5, "c", true);
    c.properties.session_expiry_interval = Some(100);
    c.will = Some(Will {
        topic: MqttString::from_static("will/t"),
        payload: "gone".into(),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties {
            will_delay_interval: Some(delay),
            ..Default::default()
        },
    });
    c
}

#[test]
fn will_is_dropped_on_normal_disconnect_and_sent_on_0x04() {
    // [MQTT-3.14.4-3]: DISCONNECT 0x00 discards the Will; 0x04 asks for it.
    let now = t0();
    let v = ProtocolVersion::V5;
    let mut s = server_with(ServerConfig::default(), connect_with_will(0), now);
    s.handle_input(
        now,
        &mut encode(v, &[Packet::Disconnect(Disconnect::default())]),
    );
    assert!(
        !events_server(&mut s)
            .iter()
            .any(|e| matches!(e, Event::Will(_)))
    );

    let mut s = server_with(ServerConfig::default(), connect_with_will(0), now);
    let d = Disconnect {
        reason_code: ReasonCode::DisconnectWithWillMessage,
        ..Default::default()
    };
    s.handle_input(now, &mut encode(v, &[Packet::Disconnect(d)]));
    assert!(
        events_server(&mut s)
            .iter()
            .any(|e| matches!(e, Event::Will(p) if p.topic == "will/t"))
    );
}

#[test]
fn will_waits_for_its_delay_unless_the_session_resumes() {
    // [MQTT-3.1.3-9]: the Will is published after the Will Delay Interval, not if a new
    // connection to the session came first.
    let now = t0();
    let mut s = server_with(ServerConfig::default(), connect_with_will(10), now);
    s.handle_transport_closed(now);
    assert!(
        !events_server(&mut s)
            .iter()
            .any(|e| matches!(e, Event::Will(_)))
    );
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(10)));
    s.handle_timeout(now + Duration::from_secs(10));
    assert!(
        events_server(&mut s)
            .iter()
            .any(|e| matches!(e, Event::Will(_)))
    );

    let mut s = server_with(ServerConfig::default(), connect_with_will(10), now);
    s.handle_transport_closed(now);
    events_server(&mut s);
    assert!(s.will().is_some(), "pending until the delay or a resume");
}

#[test]
fn delivery_applies_subscriber_options() {
    // [MQTT-3.8.3-3] No Local, [MQTT-3.8.4-8] QoS downgrade, [MQTT-3.3.1-12] retain flag,
    // [MQTT-3.3.2-6] expiry rewritten, [MQTT-3.3.2-5] expired dropped.
    let now = t0();
    let v = ProtocolVersion::V5;
    let mut s = server_with(ServerConfig::default(), connect_packet(v, "me", true), now);
    let mut p = publish("t", QoS::ExactlyOnce);
    p.retain = true;
    p.properties = PublishProperties {
        message_expiry_interval: Some(10),
        ..Default::default()
    };
    let own = Message::new(p.clone(), Some(MqttString::from_static("me")), now);
    let no_local = DeliveryOptions {
        no_local: true,
        ..Default::default()
    };
    assert_eq!(
        s.deliver(now, &own, QoS::ExactlyOnce, &[], no_local),
        DeliverOutcome::Dropped(DropReason::NoLocal)
    );

    let m = Message::new(p, None, now);
    let later = now + Duration::from_secs(3);
    let sub = [NonZeroU32::new(4).unwrap()];
    assert!(matches!(
        s.deliver(
            later,
            &m,
            QoS::AtLeastOnce,
            &sub,
            DeliveryOptions::default()
        ),
        DeliverOutcome::Sent(Some(_))
    ));
    let mut out = BytesMut::new();
    s.poll_transmit(&mut out);
    let packets = decode_all(v, &mut out);
    let [Packet::Publish(sent)] = packets.as_slice() else {
        panic!("{packets:?}")
    };
    assert_eq!(sent.qos, QoS::AtLeastOnce);
    assert!(!sent.retain);
    assert_eq!(sent.properties.message_expiry_interval, Some(7));
    assert_eq!(sent.properties.subscription_identifiers, sub.to_vec());
    let too_late = now + Duration::from_secs(10);
    assert_eq!(
        s.deliver(
            too_late,
            &m,
            QoS::AtLeastOnce,
            &[],
            DeliveryOptions::default()
        ),
        DeliverOutcome::Dropped(DropReason::Expired)
    );
}

#[test]
fn queue_beyond_window_is_bounded() {
    // Beyond the client's Receive Maximum [MQTT-3.3.4-9] messages wait in a bounded queue.
    let now = t0();
    let v = ProtocolVersion::V5;
    let mut connect = connect_packet(v, "c", true);
    connect.properties.receive_maximum = NonZeroU16::new(1);
    let config = ServerConfig {
        max_queued_messages: 1,
        ..ServerConfig::default()
    };
    let mut s = server_with(config, connect, now);
    let m = Message::new(publish("t", QoS::AtLeastOnce), None, now);
    let o = DeliveryOptions::default();
    assert!(matches!(
        s.deliver(now, &m, QoS::AtLeastOnce, &[], o),
        DeliverOutcome::Sent(Some(_))
    ));
    assert_eq!(
        s.deliver(now, &m, QoS::AtLeastOnce, &[], o),
        DeliverOutcome::Queued
    );
    assert_eq!(
        s.deliver(now, &m, QoS::AtLeastOnce, &[], o),
        DeliverOutcome::Dropped(DropReason::QueueFull)
    );
    // PUBACK frees the window: the queued message goes out.
    s.handle_input(now, &mut encode(v, &[Packet::PubAck(Ack::new(id(1)))]));
    assert_eq!(s.inflight(), 1);
    assert!(s.state().queued.is_empty());
}

#[test]
fn connection_loss_is_reported_exactly_once() {
    let now = t0();
    let (mut c, mut s) = connected_pair(ProtocolVersion::V5, now);
    c.handle_transport_closed(now);
    c.handle_transport_closed(now);
    c.handle_timeout(now + Duration::from_secs(1000));
    assert_eq!(
        events_client(&mut c),
        vec![Event::Disconnected(ConnectionError::TransportLost)]
    );
    s.handle_transport_closed(now);
    s.handle_input(now, &mut encode(ProtocolVersion::V5, &[Packet::PingReq]));
    assert_eq!(
        events_server(&mut s),
        vec![Event::Disconnected(ConnectionError::TransportLost)]
    );
}
