//! What a driver gets from the engine so that it never has to keep a shadow copy of session
//! state: refused messages stay the caller's, acknowledgements carry their properties, a lost
//! session hands back what was in flight, held-back reads suspend the keep-alive judgement, and
//! an inbound message left unacknowledged by an earlier connection arrives again.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use tern_codec::{
    Ack, AckProperties, ConnAck, MqttString, Packet, ProtocolVersion, Publish, QoS, ReasonCode,
};
use tern_proto::{
    Accept, AckMode, ClientConfig, ClientSession, ConnectionError, DeliverOutcome, DeliveryOptions,
    DropReason, Event, Message, OutgoingPhase, PublishError, ServerConfig, ServerSession,
};

use common::*;

const V5: ProtocolVersion = ProtocolVersion::V5;

#[test]
fn a_blocked_publish_leaves_the_message_with_the_caller() {
    // [MQTT-3.3.4-7]: the client sends no more QoS 1/2 PUBLISH packets than the server's
    // Receive Maximum; the refused message is still the caller's and goes out unchanged once
    // the window opens.
    let now = t0();
    let server = ServerConfig {
        receive_maximum: 1,
        ack_mode: AckMode::Manual,
        ..ServerConfig::default()
    };
    let (mut c, mut s) = pair_with(
        ClientConfig::new(V5, ms("c")),
        server,
        Accept::default(),
        now,
    );
    let first = c
        .publish(now, &publish("a", QoS::AtLeastOnce))
        .unwrap()
        .unwrap();
    let mut second = publish("b", QoS::AtLeastOnce);
    second.payload = "kept".into();
    let before = second.clone();
    assert_eq!(c.publish(now, &second), Err(PublishError::Blocked));
    assert_eq!(second, before, "the refused message is untouched");
    pump(now, &mut c, &mut s);
    events_server(&mut s);
    s.ack(now, first, ReasonCode::Success).unwrap();
    pump(now, &mut c, &mut s);
    assert!(events_client(&mut c).contains(&Event::Writable));
    c.publish(now, &second).unwrap().unwrap();
    pump(now, &mut c, &mut s);
    let got: Vec<_> = events_server(&mut s)
        .into_iter()
        .filter_map(|e| match e {
            Event::Publish { publish, .. } => Some((publish.topic.to_string(), publish.payload)),
            _ => None,
        })
        .collect();
    assert_eq!(got, [("b".to_string(), "kept".into())]);
}

#[test]
fn acknowledgements_carry_their_properties() {
    // [MQTT-3.4.2.2] (PUBACK properties) and 3.7.2.2 (PUBCOMP): the Reason String and User
    // Properties of the final acknowledgement reach the application with the event.
    let now = t0();
    let (mut c, _s) = connected_pair(V5, now);
    let one = c
        .publish(now, &publish("a", QoS::AtLeastOnce))
        .unwrap()
        .unwrap();
    let two = c
        .publish(now, &publish("b", QoS::ExactlyOnce))
        .unwrap()
        .unwrap();
    c.poll_transmit(&mut BytesMut::new());
    let properties = |text: &'static str| AckProperties {
        reason_string: Some(MqttString::from_static(text)),
        user_properties: vec![(ms("k"), ms("v"))],
    };
    let puback = Ack {
        packet_id: one,
        reason_code: ReasonCode::NoMatchingSubscribers,
        properties: properties("nobody listens"),
    };
    let pubrec = Ack::new(two);
    c.handle_input(
        now,
        &mut encode(V5, &[Packet::PubAck(puback), Packet::PubRec(pubrec)]),
    );
    c.poll_transmit(&mut BytesMut::new());
    let pubcomp = Ack {
        packet_id: two,
        reason_code: ReasonCode::Success,
        properties: properties("done"),
    };
    c.handle_input(now, &mut encode(V5, &[Packet::PubComp(pubcomp)]));
    assert_eq!(
        events_client(&mut c),
        vec![
            Event::PublishAcknowledged {
                packet_id: one,
                qos: QoS::AtLeastOnce,
                reason_code: ReasonCode::NoMatchingSubscribers,
                properties: properties("nobody listens"),
            },
            Event::PublishAcknowledged {
                packet_id: two,
                qos: QoS::ExactlyOnce,
                reason_code: ReasonCode::Success,
                properties: properties("done"),
            },
        ]
    );
}

#[test]
fn a_lost_session_hands_back_what_was_in_flight() {
    // [MQTT-3.2.2-5] (3.1.1: [MQTT-3.2.2-4]): a client with session state that gets Session
    // Present 0 discards its state; the Connected event lists the outgoing messages dropped
    // with it, in the order they were first sent, with their phase.
    let now = t0();
    let mut config = ClientConfig::new(V5, ms("c"));
    config.connect.clean_start = false;
    config.connect.properties.session_expiry_interval = Some(600);
    let mut c = ClientSession::new(config.clone());
    c.connect(now).unwrap();
    c.poll_transmit(&mut BytesMut::new());
    let connack = |present| {
        Packet::from(ConnAck {
            session_present: present,
            reason_code: ReasonCode::Success,
            properties: Default::default(),
        })
    };
    c.handle_input(now, &mut encode(V5, &[connack(false)]));
    events_client(&mut c);
    let a = c
        .publish(now, &publish("a", QoS::ExactlyOnce))
        .unwrap()
        .unwrap();
    let b = c
        .publish(now, &publish("b", QoS::AtLeastOnce))
        .unwrap()
        .unwrap();
    c.poll_transmit(&mut BytesMut::new());
    c.handle_input(now, &mut encode(V5, &[Packet::PubRec(Ack::new(a))]));
    c.poll_transmit(&mut BytesMut::new());
    c.handle_transport_closed(now);
    events_client(&mut c);

    let mut c = ClientSession::with_state(config, c.into_state());
    c.connect(now).unwrap();
    c.poll_transmit(&mut BytesMut::new());
    c.handle_input(now, &mut encode(V5, &[connack(false)]));
    let events = events_client(&mut c);
    let [
        Event::Connected {
            session_present: false,
            discarded,
            ..
        },
    ] = events.as_slice()
    else {
        panic!("{events:?}")
    };
    let summary: Vec<_> = discarded
        .iter()
        .map(|o| (o.packet_id, o.phase, o.publish.topic.to_string()))
        .collect();
    assert_eq!(
        summary,
        [
            (a, OutgoingPhase::AwaitPubComp, "a".to_string()),
            (b, OutgoingPhase::AwaitPubAck, "b".to_string()),
        ]
    );
    assert_eq!(c.inflight(), 0);
    assert!(
        c.poll_transmit(&mut BytesMut::new()) == 0,
        "nothing of the old session is resent"
    );
}

#[test]
fn held_back_reads_suspend_the_servers_keep_alive_deadline() {
    // [MQTT-3.1.2-22]: the server closes a connection silent for 1.5 x Keep Alive. While the
    // driver is not reading, the client's packets are not silence: no close, and the deadline
    // starts again when reading resumes.
    let now = t0();
    let mut s = server_with(ServerConfig::default(), connect_packet(V5, "c", true), now);
    assert_eq!(s.poll_timeout(), Some(now + Duration::from_secs(15)));
    let paused = now + Duration::from_secs(5);
    s.set_reading(paused, false);
    assert_eq!(s.poll_timeout(), None);
    s.handle_timeout(now + Duration::from_secs(60));
    assert!(s.is_connected(), "not cut off while reads are held back");
    let resumed = now + Duration::from_secs(100);
    s.set_reading(resumed, true);
    assert_eq!(s.poll_timeout(), Some(resumed + Duration::from_secs(15)));
    s.handle_timeout(resumed + Duration::from_millis(14_999));
    assert!(s.is_connected());
    s.handle_timeout(resumed + Duration::from_secs(15));
    assert_eq!(
        events_server(&mut s),
        vec![Event::Disconnected(ConnectionError::KeepAliveTimeout)]
    );
}

#[test]
fn held_back_reads_suspend_the_clients_wait_for_pingresp() {
    // [MQTT-3.1.2-20]: the client sends PINGREQ when idle and treats a missing PINGRESP as a
    // dead link; a PINGRESP its driver has not read yet is not missing.
    let now = t0();
    let v = ProtocolVersion::V3_1_1;
    let (mut c, _s) = connected_pair(v, now);
    let k = Duration::from_secs(60);
    c.handle_timeout(now + k);
    let mut out = BytesMut::new();
    c.poll_transmit(&mut out);
    assert_eq!(decode_all(v, &mut out), vec![Packet::PingReq]);
    c.set_reading(now + k, false);
    c.handle_timeout(now + k * 5);
    assert!(c.is_connected(), "not dead while its reads are held back");
    let resumed = now + k * 5;
    c.set_reading(resumed, true);
    c.handle_timeout(resumed + k - Duration::from_millis(1));
    assert!(c.is_connected());
    c.handle_timeout(resumed + k);
    assert_eq!(
        events_client(&mut c),
        vec![Event::Disconnected(ConnectionError::KeepAliveTimeout)]
    );
}

#[test]
fn an_unacknowledged_inbound_message_arrives_again_on_the_next_connection() {
    // [MQTT-4.4.0-1]: on a resumed session the sender re-sends unacknowledged PUBLISH packets.
    // A message the application of the old connection never acknowledged (manual mode) is
    // surfaced again by the new one, once, and its acknowledgement goes out.
    let now = t0();
    let manual = ServerConfig {
        ack_mode: AckMode::Manual,
        ..ServerConfig::default()
    };
    let mut config = ClientConfig::new(V5, ms("c"));
    config.connect.properties.session_expiry_interval = Some(600);
    let (mut c, mut s) = pair_with(config.clone(), manual.clone(), Accept::default(), now);
    let pid = c
        .publish(now, &publish("t", QoS::AtLeastOnce))
        .unwrap()
        .unwrap();
    pump(now, &mut c, &mut s);
    assert!(matches!(
        events_server(&mut s).as_slice(),
        [Event::Publish {
            needs_ack: true,
            ..
        }]
    ));
    c.handle_transport_closed(now);
    s.handle_transport_closed(now);
    let server_state = s.into_state();

    let mut c = ClientSession::with_state(config, c.into_state());
    let mut s = ServerSession::new(manual);
    c.connect(now).unwrap();
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
    // The DUP re-delivery, twice: surfaced the first time only.
    let mut resent = BytesMut::new();
    c.poll_transmit(&mut resent);
    let again = resent.clone();
    s.handle_input(now, &mut resent);
    s.handle_input(now, &mut again.clone());
    let events = events_server(&mut s);
    let [Event::Publish { publish, needs_ack }] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert!(publish.dup && *needs_ack);
    assert_eq!(publish.packet_id, Some(pid));
    s.ack(now, pid, ReasonCode::Success).unwrap();
    assert_eq!(sent_by_server(&mut s), vec![Packet::PubAck(Ack::new(pid))]);
    assert_eq!(s.invariant_violation(), None);
}

#[test]
fn qos0_output_is_bounded_when_the_driver_does_not_drain() {
    // [MQTT-4.3.1] QoS 0 is "at most once": a server whose driver stops draining output drops
    // QoS 0 deliveries past `max_transmit_backlog` (reported as Backlog) instead of buffering
    // without bound; QoS 1 still goes out (bounded by the window and the queue), and once the
    // output is drained QoS 0 flows again. One message always fits when nothing waits.
    let now = t0();
    let config = ServerConfig {
        max_transmit_backlog: 3000,
        ..ServerConfig::default()
    };
    let mut s = server_with(config, connect_packet(V5, "c", true), now);
    let message = |qos, size: usize| {
        Message::new(
            tern_codec::Publish {
                qos,
                topic: ms("t"),
                payload: vec![0u8; size].into(),
                ..tern_codec::Publish::default()
            },
            None,
            now,
        )
    };
    let deliver = |s: &mut ServerSession, m: &Message| {
        s.deliver(now, m, m.publish.qos, &[], DeliveryOptions::default())
    };
    let big = message(QoS::AtMostOnce, 5000);
    assert_eq!(deliver(&mut s, &big), DeliverOutcome::Sent(None));
    assert_eq!(
        deliver(&mut s, &message(QoS::AtMostOnce, 10)),
        DeliverOutcome::Dropped(DropReason::Backlog)
    );
    assert!(matches!(
        deliver(&mut s, &message(QoS::AtLeastOnce, 10)),
        DeliverOutcome::Sent(Some(_))
    ));
    let sent = sent_by_server(&mut s);
    assert_eq!(sent.len(), 2, "{sent:?}");
    let small = message(QoS::AtMostOnce, 1000);
    assert_eq!(deliver(&mut s, &small), DeliverOutcome::Sent(None));
    assert_eq!(deliver(&mut s, &small), DeliverOutcome::Sent(None));
    assert_eq!(
        deliver(&mut s, &small),
        DeliverOutcome::Dropped(DropReason::Backlog)
    );
}

#[test]
fn acknowledgement_events_can_be_turned_off() {
    // [MQTT-4.3.2-3], [MQTT-4.3.3-12]: a PUBACK (QoS 1) or PUBCOMP (QoS 2) ends the flow and
    // frees the identifier and the window whether or not the driver hears of it; a driver
    // that turns the events off gets none.
    let now = t0();
    for events in [true, false] {
        let server = ServerConfig {
            acknowledgement_events: events,
            ..ServerConfig::default()
        };
        let (mut c, mut s) = pair_with(
            ClientConfig::new(V5, ms("c")),
            server,
            Accept::default(),
            now,
        );
        events_server(&mut s);
        for qos in [QoS::AtLeastOnce, QoS::ExactlyOnce] {
            let m = Message::new(publish("t", qos), None, now);
            let out = s.deliver(now, &m, qos, &[], DeliveryOptions::default());
            assert!(matches!(out, DeliverOutcome::Sent(Some(_))));
        }
        assert_eq!(s.inflight(), 2);
        pump(now, &mut c, &mut s);
        assert_eq!(s.inflight(), 0, "both flows ended");
        let acknowledged = events_server(&mut s)
            .iter()
            .filter(|e| matches!(e, Event::PublishAcknowledged { .. }))
            .count();
        assert_eq!(acknowledged, if events { 2 } else { 0 });
    }
}

#[test]
fn a_qos0_delivery_goes_as_sent_unless_the_subscriber_needs_it_changed() {
    // What a QoS 0 delivery may change, whether or not it can go out exactly as published:
    // RETAIN cleared without Retain As Published [MQTT-3.3.1-12], the subscription
    // identifiers added [MQTT-3.3.4-3], the remaining expiry written [MQTT-3.3.2-6], no 5.0
    // property to a 3.1.1 client, a topic alias where the client allows them [MQTT-3.3.2-12].
    let now = t0();
    let later = now + Duration::from_secs(10);
    let sent = |s: &mut ServerSession, message: &Message, ids: &[std::num::NonZeroU32]| {
        let out = s.deliver(
            later,
            message,
            QoS::AtLeastOnce,
            ids,
            DeliveryOptions::default(),
        );
        assert_eq!(out, DeliverOutcome::Sent(None));
        match sent_by_server(s).as_slice() {
            [Packet::Publish(p)] => p.clone(),
            other => panic!("expected one PUBLISH, got {other:?}"),
        }
    };
    let message = |publish: Publish| Message::new(publish, None, now);
    let plain = publish("a/b", QoS::AtMostOnce);
    let mut v5 = server_with(ServerConfig::default(), connect_packet(V5, "c", true), now);
    assert_eq!(sent(&mut v5, &message(plain.clone()), &[]), plain);

    let mut retained = plain.clone();
    retained.retain = true;
    assert!(!sent(&mut v5, &message(retained), &[]).retain);

    let one = std::num::NonZeroU32::MIN;
    let got = sent(&mut v5, &message(plain.clone()), &[one]);
    assert_eq!(got.properties.subscription_identifiers, [one]);

    let mut expiring = plain.clone();
    expiring.properties.message_expiry_interval = Some(60);
    let got = sent(&mut v5, &message(expiring), &[]);
    assert_eq!(got.properties.message_expiry_interval, Some(50));

    let mut with_property = plain.clone();
    with_property.properties.user_properties = vec![(ms("k"), ms("v"))];
    let v311 = ProtocolVersion::V3_1_1;
    let mut old = server_with(
        ServerConfig::default(),
        connect_packet(v311, "o", true),
        now,
    );
    assert!(
        sent(&mut old, &message(with_property), &[])
            .properties
            .is_empty()
    );

    let mut connect = connect_packet(V5, "a", true);
    connect.properties.topic_alias_maximum = Some(4);
    let mut aliased = server_with(ServerConfig::default(), connect, now);
    // An alias pays for topics longer than its 3-byte property.
    let long = publish("sensors/a/b", QoS::AtMostOnce);
    let first = sent(&mut aliased, &message(long.clone()), &[]);
    let second = sent(&mut aliased, &message(long), &[]);
    assert_eq!(
        (first.topic.as_str(), second.topic.as_str()),
        ("sensors/a/b", "")
    );
    assert!(first.properties.topic_alias.is_some());
    assert_eq!(first.properties.topic_alias, second.properties.topic_alias);
}

/// A message shared by many deliveries (`Message::share_encoding`) is encoded once and copied:
/// each session still gets exactly the packet it would get from the message alone, with its
/// own packet identifier, its granted QoS [MQTT-3.8.4-8], RETAIN as its options say
/// [MQTT-3.3.1-12], a topic alias of its own (5.0), its Maximum Packet Size [MQTT-3.1.2-24]
/// and, for 3.x, without 5.0 properties.
#[test]
fn a_shared_encoding_sends_the_same_bytes_as_the_message_alone() {
    let now = t0();
    let retained_options = DeliveryOptions {
        retain_as_published: true,
        ..DeliveryOptions::default()
    };
    let mut with_user_property = publish("a/b", QoS::ExactlyOnce);
    with_user_property.properties.user_properties = vec![(ms("k"), ms("v"))];
    let mut retained = publish("sensors/room/1", QoS::AtLeastOnce);
    retained.retain = true;
    let messages = [
        publish("a/b", QoS::AtMostOnce),
        publish("a/b", QoS::AtLeastOnce),
        with_user_property,
        retained,
    ];
    let sessions = || {
        let mut aliased = connect_packet(V5, "aliased", true);
        aliased.properties.topic_alias_maximum = Some(4);
        let mut small = connect_packet(V5, "small", true);
        small.properties.maximum_packet_size = std::num::NonZeroU32::new(12);
        [
            connect_packet(V5, "v5", true),
            connect_packet(ProtocolVersion::V3_1_1, "v311", true),
            connect_packet(ProtocolVersion::V3_1, "v31", true),
            aliased,
            small,
        ]
        .map(|c| server_with(ServerConfig::default(), c, now))
    };
    let (mut alone, mut shared) = (sessions(), sessions());
    for publish in messages {
        let plain = Message::new(publish.clone(), None, now);
        let fanned = Message::new(publish, None, now);
        fanned.share_encoding();
        for granted in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            for options in [DeliveryOptions::default(), retained_options] {
                for (a, s) in alone.iter_mut().zip(shared.iter_mut()) {
                    let expected = a.deliver(now, &plain, granted, &[], options);
                    let got = s.deliver(now, &fanned, granted, &[], options);
                    assert_eq!(got, expected);
                    let (mut want, mut have) = (BytesMut::new(), BytesMut::new());
                    a.poll_transmit(&mut want);
                    s.poll_transmit(&mut have);
                    assert_eq!(have, want, "{granted:?} {options:?}");
                }
            }
        }
    }
}
