//! Connection set-up and session rules: the connect timeouts, a client session resumed from
//! its state, and the server's Maximum QoS and Retain Available.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use tern_codec::{Ack, Packet, ProtocolVersion, QoS, ReasonCode, Will, WillProperties};
use tern_proto::{
    Accept, AckMode, ClientConfig, ClientSession, ConnectionError, DeliverOutcome, DeliveryOptions,
    Event, Initiator, Message, OutgoingPhase, ProtocolError, PublishError, ServerConfig,
    ServerSession, UserError,
};

use common::*;

const V5: ProtocolVersion = ProtocolVersion::V5;

#[test]
fn server_closes_a_connection_that_never_sends_connect() {
    // Section 3.1.4 / 4.13: a server closes a connection whose CONNECT does not arrive in a
    // reasonable time; here the configured connect timeout. A partial CONNECT does not count.
    let now = t0();
    let config = ServerConfig {
        connect_timeout: Some(Duration::from_secs(5)),
        ..ServerConfig::default()
    };
    let mut s = ServerSession::new(config.clone());
    s.start(now);
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(5)));
    let mut whole = encode(V5, &[Packet::from(connect_packet(V5, "c", true))]);
    let mut half = whole.split_to(whole.len() / 2);
    s.handle_input(now + Duration::from_secs(1), &mut half);
    s.handle_timeout(now + Duration::from_millis(4_999));
    assert!(!s.is_closed() && events_server(&mut s).is_empty());
    s.handle_timeout(now + Duration::from_secs(5));
    assert!(s.is_closed());
    let ev = events_server(&mut s);
    assert_eq!(
        ev,
        vec![Event::Disconnected(ConnectionError::ConnectTimeout)]
    );
    assert_eq!(
        ConnectionError::ConnectTimeout.initiator(),
        Initiator::Local
    );
    assert!(!s.has_transmit(), "nothing is sent before CONNECT");
    assert_eq!(s.poll_timeout(), None);

    // A CONNECT in time is not enough: the timer runs until the connection is accepted, so a
    // client that stalls in an enhanced-authentication exchange (or a CONNECT the broker never
    // answers) is cut off too (section 4.12 leaves the wait to the server).
    let mut s = ServerSession::new(config.clone());
    s.start(now);
    let mut connect = connect_packet(V5, "c", true);
    connect.keep_alive = 0;
    s.handle_input(
        now + Duration::from_secs(4),
        &mut encode(V5, &[Packet::from(connect.clone())]),
    );
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(5)));
    s.handle_timeout(now + Duration::from_secs(5));
    assert!(s.is_closed(), "a connection never accepted is timed out");

    // Accepting it stops the timer.
    let mut s = ServerSession::new(config);
    s.start(now);
    s.handle_input(
        now + Duration::from_secs(4),
        &mut encode(V5, &[Packet::from(connect)]),
    );
    s.accept(now + Duration::from_secs(4), Accept::default())
        .unwrap();
    assert_eq!(s.poll_timeout(), None);
    s.handle_timeout(now + Duration::from_secs(10));
    assert!(!s.is_closed());
}

#[test]
fn client_gives_up_without_connack() {
    // The client's connect timeout: no CONNACK in time ends the attempt, reported once.
    let now = t0();
    let mut config = ClientConfig::new(V5, ms("c"));
    config.connect_timeout = Some(Duration::from_secs(3));
    let mut c = ClientSession::new(config);
    c.connect(now).unwrap();
    assert_eq!(c.poll_timeout(), Some(now + Duration::from_secs(3)));
    c.handle_timeout(now + Duration::from_secs(3));
    assert!(c.is_closed());
    assert_eq!(
        events_client(&mut c),
        vec![Event::Disconnected(ConnectionError::ConnectTimeout)]
    );
}

#[test]
fn with_state_resends_in_flight_with_dup_in_order() {
    // [MQTT-4.4.0-1] unacknowledged PUBLISH and PUBREL packets are resent with their
    // identifiers, [MQTT-3.3.1-1] PUBLISH with DUP 1, [MQTT-4.6.0-1] in the original order,
    // by a new ClientSession built from the state of the old one.
    let now = t0();
    let mut config = ClientConfig::new(V5, ms("c"));
    config.connect.properties.session_expiry_interval = Some(600);
    let server_config = ServerConfig {
        ack_mode: AckMode::Manual,
        ..ServerConfig::default()
    };
    let (mut c, mut s) = pair_with(config.clone(), server_config, Accept::default(), now);
    let b = c
        .publish(now, &publish("b", QoS::ExactlyOnce))
        .unwrap()
        .unwrap();
    let a = c
        .publish(now, &publish("a", QoS::AtLeastOnce))
        .unwrap()
        .unwrap();
    let d = c
        .publish(now, &publish("d", QoS::ExactlyOnce))
        .unwrap()
        .unwrap();
    let e = c
        .publish(now, &publish("e", QoS::AtLeastOnce))
        .unwrap()
        .unwrap();
    pump(now, &mut c, &mut s);
    // b is PUBRECed (acknowledgements leave in arrival order, so it goes first); its PUBREL
    // is lost with the link. a, d and e are not acknowledged.
    s.ack(now, b, ReasonCode::Success).unwrap();
    let mut buf = BytesMut::new();
    s.poll_transmit(&mut buf);
    c.handle_input(now, &mut buf);
    c.poll_transmit(&mut BytesMut::new());
    c.handle_transport_closed(now);
    s.handle_transport_closed(now);
    let server_state = s.into_state();

    let state = c.into_state();
    let phases: Vec<_> = state
        .outgoing
        .iter()
        .map(|o| (o.packet_id, o.phase))
        .collect();
    assert_eq!(
        phases,
        vec![
            (b, OutgoingPhase::AwaitPubComp),
            (a, OutgoingPhase::AwaitPubAck),
            (d, OutgoingPhase::AwaitPubRec),
            (e, OutgoingPhase::AwaitPubAck),
        ]
    );
    let mut c = ClientSession::with_state(config, state);
    assert_eq!(c.inflight(), 4);
    c.connect(now).unwrap();
    let mut s = ServerSession::new(ServerConfig::default());
    let mut buf = BytesMut::new();
    c.poll_transmit(&mut buf);
    s.handle_input(now, &mut buf);
    events_server(&mut s);
    s.accept(
        now,
        Accept {
            session: Some(server_state),
            ..Accept::default()
        },
    )
    .unwrap();
    s.poll_transmit(&mut buf);
    c.handle_input(now, &mut buf);
    assert!(matches!(
        events_client(&mut c).as_slice(),
        [Event::Connected {
            session_present: true,
            ..
        }]
    ));
    let resent = sent_by_client(&mut c);
    let summary: Vec<_> = resent
        .iter()
        .map(|p| match p {
            Packet::Publish(p) => (p.packet_id.unwrap(), Some((p.dup, p.topic.to_string()))),
            Packet::PubRel(r) => (r.packet_id, None),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (b, None),
            (a, Some((true, "a".to_string()))),
            (d, Some((true, "d".to_string()))),
            (e, Some((true, "e".to_string()))),
        ]
    );
    // A new message never takes an identifier still in flight [MQTT-2.2.1-3].
    let f = c
        .publish(now, &publish("f", QoS::AtLeastOnce))
        .unwrap()
        .unwrap();
    assert!(![a, b, d, e].contains(&f));
    // The server session resumed with a, d and e unacknowledged by the application of the
    // old connection. Their re-deliveries are surfaced again (the old application may have
    // lost them), and this session, in automatic mode, acknowledges them: the resumed flows
    // complete [MQTT-4.4.0-1].
    s.handle_input(now, &mut encode(V5, &resent));
    let again: Vec<_> = events_server(&mut s)
        .into_iter()
        .filter_map(|e| match e {
            Event::Publish { publish, needs_ack } => {
                Some((publish.topic.to_string(), publish.dup, needs_ack))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        again,
        [("a", true, false), ("d", true, false), ("e", true, false)].map(|(t, d, n)| (
            t.to_string(),
            d,
            n
        ))
    );
    pump(now, &mut c, &mut s);
    assert_eq!(c.inflight(), 0);
    assert_eq!(c.invariant_violation(), None);
}

#[test]
fn server_enforces_maximum_qos_and_retain_available() {
    // [MQTT-3.2.2-9] the server announces its Maximum QoS; a client publishing above it breaks
    // [MQTT-3.2.2-11] (DISCONNECT 0x9B); a retained PUBLISH after Retain Available 0 breaks
    // [MQTT-3.2.2-14] (DISCONNECT 0x9A).
    let now = t0();
    let config = ServerConfig {
        maximum_qos: QoS::AtLeastOnce,
        retain_available: false,
        ..ServerConfig::default()
    };
    let mut s = ServerSession::new(config.clone());
    s.handle_input(
        now,
        &mut encode(V5, &[Packet::from(connect_packet(V5, "c", true))]),
    );
    events_server(&mut s);
    s.accept(now, Accept::default()).unwrap();
    let sent = sent_by_server(&mut s);
    let [Packet::ConnAck(connack)] = sent.as_slice() else {
        panic!("{sent:?}")
    };
    assert_eq!(connack.properties.maximum_qos, Some(QoS::AtLeastOnce));
    assert_eq!(connack.properties.retain_available, Some(false));
    let mut ok = publish("t", QoS::AtLeastOnce);
    ok.packet_id = Some(id(1));
    s.handle_input(now, &mut encode(V5, &[Packet::Publish(ok)]));
    assert!(s.is_connected());

    let mut too_high = publish("t", QoS::ExactlyOnce);
    too_high.packet_id = Some(id(2));
    let mut retained = publish("t", QoS::AtMostOnce);
    retained.retain = true;
    for (p, error, code) in [
        (
            too_high,
            ProtocolError::QoSNotSupported,
            ReasonCode::QoSNotSupported,
        ),
        (
            retained,
            ProtocolError::RetainNotSupported,
            ReasonCode::RetainNotSupported,
        ),
    ] {
        let mut s = server_with(config.clone(), connect_packet(V5, "c", true), now);
        s.handle_input(now, &mut encode(V5, &[Packet::Publish(p)]));
        assert_eq!(
            events_server(&mut s),
            vec![Event::Disconnected(ConnectionError::Protocol(error))]
        );
        assert!(matches!(
            sent_by_server(&mut s).as_slice(),
            [Packet::Disconnect(d)] if d.reason_code == code
        ));
    }
}

#[test]
fn client_refuses_to_publish_beyond_the_servers_limits() {
    // [MQTT-3.2.2-11], [MQTT-3.2.2-14]: the client engine refuses (a user error) rather than
    // send what the server announced it does not accept.
    let now = t0();
    let config = ServerConfig {
        maximum_qos: QoS::AtMostOnce,
        retain_available: false,
        ..ServerConfig::default()
    };
    let (mut c, _s) = pair_with(
        ClientConfig::new(V5, ms("c")),
        config,
        Accept::default(),
        now,
    );
    assert_eq!(c.server_limits().maximum_qos, QoS::AtMostOnce);
    assert!(!c.server_limits().retain_available);
    assert!(matches!(
        c.publish(now, &publish("t", QoS::AtLeastOnce)),
        Err(PublishError::User(UserError::NotSupported(_)))
    ));
    let mut retained = publish("t", QoS::AtMostOnce);
    retained.retain = true;
    assert!(matches!(
        c.publish(now, &retained),
        Err(PublishError::User(UserError::NotSupported(_)))
    ));
    assert!(!c.has_transmit());
    assert_eq!(c.publish(now, &publish("t", QoS::AtMostOnce)), Ok(None));
}

#[test]
fn will_beyond_the_servers_limits_cannot_be_accepted() {
    // [MQTT-3.2.2-12] a Will QoS above the Maximum QoS, [MQTT-3.2.2-13] a retained Will without
    // Retain Available: the connection must be rejected (0x9B / 0x9A), not accepted.
    let now = t0();
    let config = ServerConfig {
        maximum_qos: QoS::AtLeastOnce,
        retain_available: false,
        ..ServerConfig::default()
    };
    for (qos, retain) in [(QoS::ExactlyOnce, false), (QoS::AtMostOnce, true)] {
        let mut connect = connect_packet(V5, "c", true);
        connect.will = Some(Will {
            topic: ms("w"),
            payload: "x".into(),
            qos,
            retain,
            properties: WillProperties::default(),
        });
        let mut s = ServerSession::new(config.clone());
        s.handle_input(now, &mut encode(V5, &[Packet::from(connect)]));
        events_server(&mut s);
        assert!(matches!(
            s.accept(now, Accept::default()),
            Err(UserError::NotSupported(_))
        ));
        assert!(!s.is_connected() && !s.has_transmit());
        let code = if retain {
            ReasonCode::RetainNotSupported
        } else {
            ReasonCode::QoSNotSupported
        };
        s.reject(now, code).unwrap();
        assert!(matches!(
            sent_by_server(&mut s).as_slice(),
            [Packet::ConnAck(c)] if c.reason_code == code
        ));
    }
}

#[test]
fn unsupported_protocol_level_is_answered_with_connack() {
    // [MQTT-3.1.2-2]: a server that does not support the protocol level answers CONNACK
    // 0x84 (3.1.1: return code 1) and closes the connection.
    for (level, version, expected) in [
        (6_u8, V5, tern_codec::ReasonCode::UnsupportedProtocolVersion),
        (
            2,
            ProtocolVersion::V3_1_1,
            tern_codec::ReasonCode::UnsupportedProtocolVersion,
        ),
    ] {
        let now = t0();
        let mut s = ServerSession::new(ServerConfig::default());
        s.start(now);
        // A 5.0 CONNECT with its level byte (offset 8: header 2, name 6) rewritten.
        let mut bytes = encode(V5, &[Packet::from(connect_packet(V5, "c", true))]);
        assert_eq!(bytes[8], 5);
        bytes[8] = level;
        s.handle_input(now, &mut bytes);
        assert!(s.is_closed());
        let mut out = BytesMut::new();
        s.poll_transmit(&mut out);
        let (packet, _) = Packet::decode(version, &out, tern_codec::MAX_PACKET_SIZE)
            .unwrap()
            .expect("a whole CONNACK");
        let Packet::ConnAck(connack) = packet else {
            panic!("expected CONNACK, got {packet:?}")
        };
        assert_eq!(connack.reason_code, expected);
        assert!(!connack.session_present);
    }
}

#[test]
fn qos2_identifiers_awaiting_pubrel_across_a_wrap() {
    // [MQTT-4.3.3-10]: until PUBREL, a PUBLISH with an identifier already answered with PUBREC
    // is a duplicate (PUBREC again, not delivered twice); PUBREL releases it (PUBCOMP), and a
    // PUBREL for an identifier not awaited gets PUBCOMP 0x92 in 5.0. Checked with 2,000
    // identifiers awaiting PUBREL that wrap past 65,535 to 1, released in order.
    let now = t0();
    let v5 = ProtocolVersion::V5;
    let mut s = server_with(ServerConfig::default(), connect_packet(v5, "q2", true), now);
    let ids: Vec<u16> = (64_536..=u16::MAX).chain(1..=1_000).collect();
    let publish_with = |n: u16| {
        let mut p = publish("t", QoS::ExactlyOnce);
        p.packet_id = Some(id(n));
        Packet::Publish(p)
    };
    for &n in &ids {
        s.handle_input(now, &mut encode(v5, &[publish_with(n)]));
    }
    assert_eq!(events_server(&mut s).len(), ids.len());
    sent_by_server(&mut s);
    assert_eq!(s.state().awaiting_pubrel.len(), ids.len());
    // Duplicates on both sides of the wrap: PUBREC again, no event.
    for n in [64_536, u16::MAX, 1, 1_000] {
        s.handle_input(now, &mut encode(v5, &[publish_with(n)]));
        assert!(events_server(&mut s).is_empty(), "{n} delivered twice");
        assert_eq!(
            sent_by_server(&mut s),
            vec![Packet::PubRec(Ack::new(id(n)))]
        );
    }
    // An identifier never received is a new message.
    s.handle_input(now, &mut encode(v5, &[publish_with(2_000)]));
    assert_eq!(events_server(&mut s).len(), 1);
    sent_by_server(&mut s);
    for n in ids.iter().copied().chain([2_000]) {
        s.handle_input(now, &mut encode(v5, &[Packet::PubRel(Ack::new(id(n)))]));
        assert_eq!(
            sent_by_server(&mut s),
            vec![Packet::PubComp(Ack::new(id(n)))]
        );
    }
    assert!(s.state().awaiting_pubrel.is_empty());
    s.handle_input(now, &mut encode(v5, &[Packet::PubRel(Ack::new(id(7)))]));
    let mut not_found = Ack::new(id(7));
    not_found.reason_code = ReasonCode::PacketIdentifierNotFound;
    assert_eq!(sent_by_server(&mut s), vec![Packet::PubComp(not_found)]);
}

#[test]
fn acknowledgements_find_their_message_when_identifiers_went_all_the_way_round() {
    // [MQTT-2.2.1-3], [MQTT-4.3.2-1]: a PUBACK completes the message with its identifier, and
    // only that one. Message 5 stays unacknowledged while the identifiers go all the way
    // round, so the messages in flight are no longer in round-robin order from the oldest
    // (5, then 1 to 4, then 6): acknowledgements still find each of them.
    let now = t0();
    let v = ProtocolVersion::V3_1_1;
    let config = ServerConfig {
        max_inflight: u16::MAX,
        acknowledgement_events: false,
        ..ServerConfig::default()
    };
    let mut s = server_with(config, connect_packet(v, "round", true), now);
    let message = Message::new(publish("t", QoS::AtLeastOnce), None, now);
    let mut out = BytesMut::new();
    let mut send = |s: &mut ServerSession| {
        let id = send_qos1(s, now, &message);
        out.clear();
        s.poll_transmit(&mut out);
        id.get()
    };
    let ack = |s: &mut ServerSession, n: u16| {
        let mut buf = BytesMut::from(&[0x40, 2, (n >> 8) as u8, n as u8][..]);
        s.handle_input(now, &mut buf);
    };
    let in_flight =
        |s: &ServerSession| -> Vec<u16> { s.state().outgoing_ids().map(|i| i.get()).collect() };
    for expected in 1..=5 {
        assert_eq!(send(&mut s), expected);
    }
    for n in 1..=4 {
        ack(&mut s, n);
    }
    for expected in 6..=u16::MAX {
        assert_eq!(send(&mut s), expected);
        ack(&mut s, expected);
    }
    for expected in [1, 2, 3, 4, 6] {
        assert_eq!(send(&mut s), expected, "identifier 5 is still in flight");
    }
    assert_eq!(in_flight(&s), [5, 1, 2, 3, 4, 6]);
    for (n, left) in [
        (6, &[5, 1, 2, 3, 4][..]),
        (3, &[5, 1, 2, 4]),
        (5, &[1, 2, 4]),
        (9, &[1, 2, 4]),
        (4, &[1, 2]),
        (1, &[2]),
        (2, &[]),
    ] {
        ack(&mut s, n);
        assert_eq!(in_flight(&s), left, "after PUBACK {n}");
    }
}

#[test]
fn a_quiet_session_keeps_its_expiry_and_identifiers_when_its_queues_are_released() {
    // The engine drops its empty queues at a quiet moment (a PINGREQ); what the session is
    // stays: its Session Expiry Interval (section 3.1.2.11.2) and the next packet
    // identifier, so that a new message takes an unused one [MQTT-2.2.1-3] and the round
    // robin goes on.
    let now = t0();
    let mut connect = connect_packet(V5, "quiet", false);
    connect.properties.session_expiry_interval = Some(300);
    let config = ServerConfig {
        acknowledgement_events: false,
        ..ServerConfig::default()
    };
    let mut s = server_with(config, connect, now);
    assert_eq!(s.state().session_expiry_interval, 300);
    let message = Message::new(publish("t", QoS::AtLeastOnce), None, now);
    let round = |s: &mut ServerSession| {
        let id = send_qos1(s, now, &message);
        assert_eq!(s.state().outgoing_ids().collect::<Vec<_>>(), [id]);
        let _ = sent_by_server(s);
        let n = id.get();
        let mut puback = BytesMut::from(&[0x40, 2, (n >> 8) as u8, n as u8][..]);
        s.handle_input(now, &mut puback);
        s.handle_input(now, &mut encode(V5, &[Packet::PingReq]));
        assert_eq!(sent_by_server(s), [Packet::PingResp]);
        assert!(s.state().is_empty() && s.inflight() == 0);
        assert_eq!(s.session_expiry_interval(), 300);
        assert_eq!(s.state().session_expiry_interval, 300);
        n
    };
    assert_eq!(round(&mut s), 1);
    assert_eq!(
        round(&mut s),
        2,
        "the identifier after the released queues' last one"
    );
    let state = s.into_state();
    assert_eq!(
        (state.session_expiry_interval, state.next_packet_id),
        (300, 3)
    );
}

#[test]
fn the_client_identifier_does_not_keep_the_connect_packet() {
    // The session keeps its client identifier for its whole life (section 3.1.3.1); it is
    // copied out of the CONNECT packet, whose buffer (password and Will included) it would
    // otherwise keep alive.
    let now = t0();
    let mut connect = connect_packet(V5, "keeper", true);
    connect.password = Some(bytes::Bytes::from(vec![b'p'; 4096]));
    let mut input = encode(V5, &[Packet::from(connect)]);
    let buffer = input.as_ptr_range();
    let mut s = ServerSession::new(ServerConfig::default());
    s.handle_input(now, &mut input);
    assert!(matches!(
        events_server(&mut s).as_slice(),
        [Event::ConnectRequest(_)]
    ));
    s.accept(now, Accept::default()).unwrap();
    assert_eq!(s.client_id(), "keeper");
    assert!(!buffer.contains(&s.client_id().as_bytes().as_ptr()));
}

/// Delivers `message` at QoS 1, which must be sent at once; its packet identifier.
fn send_qos1(
    s: &mut ServerSession,
    now: std::time::Instant,
    message: &Message,
) -> tern_codec::PacketId {
    let outcome = s.deliver(
        now,
        message,
        QoS::AtLeastOnce,
        &[],
        DeliveryOptions::default(),
    );
    let DeliverOutcome::Sent(Some(id)) = outcome else {
        panic!("{outcome:?}")
    };
    id
}
