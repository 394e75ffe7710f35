//! SUBSCRIBE/SUBACK and UNSUBSCRIBE/UNSUBACK round trips on both sides (sections 3.8 to 3.11).

mod common;

use std::num::NonZeroU32;

use tern_codec::{
    AckProperties, Packet, ProtocolVersion, QoS, ReasonCode, RetainHandling, SubAck,
    SubscribeProperties, Subscription, SubscriptionOptions, UnsubAck, UnsubscribeProperties,
};
use tern_proto::{
    Accept, ClientConfig, ConnectionError, Event, ProtocolError, ServerConfig, UserError,
};

use common::*;

fn subscription(filter: &'static str, qos: QoS) -> Subscription {
    Subscription {
        filter: ms(filter),
        options: SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        },
    }
}

#[test]
fn v5_round_trip_with_options_and_identifier() {
    // [MQTT-2.2.1-6] same packet identifier, [MQTT-3.8.4-6] one reason code per filter,
    // [MQTT-3.9.3-1] / [MQTT-3.11.3-1] in order; options and the Subscription Identifier reach
    // the server as sent.
    let now = t0();
    let v = ProtocolVersion::V5;
    let (mut c, mut s) = connected_pair(v, now);
    let mut first = subscription("a/+", QoS::AtLeastOnce);
    first.options.no_local = true;
    first.options.retain_as_published = true;
    first.options.retain_handling = RetainHandling::DoNotSend;
    let subs = vec![first, subscription("b", QoS::ExactlyOnce)];
    let props = SubscribeProperties {
        subscription_identifier: NonZeroU32::new(7),
        ..SubscribeProperties::default()
    };
    let pid = c.subscribe(now, subs.clone(), props.clone()).unwrap();
    pump(now, &mut c, &mut s);
    let ev = events_server(&mut s);
    let [Event::Subscribe(sub)] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(
        (sub.packet_id, &sub.subscriptions[..], &sub.properties),
        (pid, &subs[..], &props)
    );
    let codes = vec![ReasonCode::GrantedQoS1, ReasonCode::NotAuthorized];
    s.suback(now, pid, codes.clone(), AckProperties::default())
        .unwrap();
    // Answered once: a second answer has no request left.
    assert_eq!(
        s.suback(now, pid, codes.clone(), AckProperties::default()),
        Err(UserError::UnknownPacketId(pid.get()))
    );
    pump(now, &mut c, &mut s);
    assert_eq!(
        events_client(&mut c),
        vec![Event::SubAck(SubAck {
            packet_id: pid,
            properties: AckProperties::default(),
            reason_codes: codes,
        })]
    );

    let filters = vec![ms("a/+"), ms("nope")];
    let pid = c
        .unsubscribe(now, filters.clone(), UnsubscribeProperties::default())
        .unwrap();
    pump(now, &mut c, &mut s);
    let ev = events_server(&mut s);
    assert!(
        matches!(ev.as_slice(), [Event::Unsubscribe(u)] if u.packet_id == pid && u.filters == filters)
    );
    let codes = vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted];
    s.unsuback(now, pid, codes.clone(), AckProperties::default())
        .unwrap();
    pump(now, &mut c, &mut s);
    assert_eq!(
        events_client(&mut c),
        vec![Event::UnsubAck(UnsubAck {
            packet_id: pid,
            properties: AckProperties::default(),
            reason_codes: codes,
        })]
    );
    assert!(c.is_connected() && s.is_connected());
}

#[test]
fn server_answers_one_code_per_filter() {
    // [MQTT-3.8.4-6], [MQTT-3.11.3-2]: the broker's answer must have one code per filter;
    // otherwise it is refused and nothing is sent.
    let now = t0();
    let (mut c, mut s) = connected_pair(ProtocolVersion::V5, now);
    let pid = c
        .subscribe(
            now,
            vec![
                subscription("a", QoS::AtMostOnce),
                subscription("b", QoS::AtMostOnce),
            ],
            SubscribeProperties::default(),
        )
        .unwrap();
    pump(now, &mut c, &mut s);
    events_server(&mut s);
    assert_eq!(
        s.suback(
            now,
            pid,
            vec![ReasonCode::Success],
            AckProperties::default()
        ),
        Err(UserError::ReasonCodeCount {
            expected: 2,
            given: 1
        })
    );
    assert!(!s.has_transmit());
    let upid = c
        .unsubscribe(now, vec![ms("a")], UnsubscribeProperties::default())
        .unwrap();
    pump(now, &mut c, &mut s);
    events_server(&mut s);
    assert!(matches!(
        s.unsuback(now, upid, vec![], AckProperties::default()),
        Err(UserError::ReasonCodeCount { .. })
    ));
    // The right answers still go through.
    s.suback(
        now,
        pid,
        vec![ReasonCode::Success; 2],
        AckProperties::default(),
    )
    .unwrap();
    s.unsuback(
        now,
        upid,
        vec![ReasonCode::Success],
        AckProperties::default(),
    )
    .unwrap();
    pump(now, &mut c, &mut s);
    assert_eq!(events_client(&mut c).len(), 2);
}

#[test]
fn client_refuses_a_suback_with_the_wrong_count() {
    // [MQTT-3.8.4-6], [MQTT-3.11.3-1]: a SUBACK (or 5.0 UNSUBACK) with another number of reason
    // codes than filters is a protocol error (DISCONNECT 0x82).
    let now = t0();
    let v = ProtocolVersion::V5;
    for unsubscribe in [false, true] {
        let (mut c, _s) = connected_pair(v, now);
        let pid = if unsubscribe {
            c.unsubscribe(
                now,
                vec![ms("a"), ms("b")],
                UnsubscribeProperties::default(),
            )
            .unwrap()
        } else {
            c.subscribe(
                now,
                vec![
                    subscription("a", QoS::AtMostOnce),
                    subscription("b", QoS::AtMostOnce),
                ],
                SubscribeProperties::default(),
            )
            .unwrap()
        };
        sent_by_client(&mut c);
        let answer = if unsubscribe {
            Packet::UnsubAck(UnsubAck {
                packet_id: pid,
                properties: AckProperties::default(),
                reason_codes: vec![ReasonCode::Success],
            })
        } else {
            Packet::SubAck(SubAck {
                packet_id: pid,
                properties: AckProperties::default(),
                reason_codes: vec![ReasonCode::Success],
            })
        };
        c.handle_input(now, &mut encode(v, &[answer]));
        assert_eq!(
            events_client(&mut c),
            vec![Event::Disconnected(ConnectionError::Protocol(
                ProtocolError::ReasonCodeCount {
                    expected: 2,
                    received: 1
                }
            ))]
        );
        assert!(matches!(
            sent_by_client(&mut c).as_slice(),
            [Packet::Disconnect(d)] if d.reason_code == ReasonCode::ProtocolError
        ));
    }
}

#[test]
fn v311_suback_failure_is_0x80() {
    // 3.1.1 [MQTT-3.9.3-2]: return codes 0x00, 0x01, 0x02 and 0x80 (Failure) only; UNSUBACK
    // has no payload.
    let now = t0();
    let v = ProtocolVersion::V3_1_1;
    let (mut c, mut s) = connected_pair(v, now);
    let pid = c
        .subscribe(
            now,
            vec![
                subscription("a", QoS::AtLeastOnce),
                subscription("#", QoS::ExactlyOnce),
            ],
            SubscribeProperties::default(),
        )
        .unwrap();
    pump(now, &mut c, &mut s);
    events_server(&mut s);
    assert!(matches!(
        s.suback(
            now,
            pid,
            vec![ReasonCode::GrantedQoS1, ReasonCode::NotAuthorized],
            AckProperties::default()
        ),
        Err(UserError::ReasonCode { .. })
    ));
    s.suback(
        now,
        pid,
        vec![ReasonCode::GrantedQoS1, ReasonCode::UnspecifiedError],
        AckProperties::default(),
    )
    .unwrap();
    let mut wire = bytes::BytesMut::new();
    s.poll_transmit(&mut wire);
    assert_eq!(
        &wire[..],
        &[0x90, 4, (pid.get() >> 8) as u8, pid.get() as u8, 0x01, 0x80]
    );
    c.handle_input(now, &mut wire);
    assert!(matches!(
        events_client(&mut c).as_slice(),
        [Event::SubAck(a)] if a.reason_codes == [ReasonCode::GrantedQoS1, ReasonCode::UnspecifiedError]
    ));

    let upid = c
        .unsubscribe(
            now,
            vec![ms("a"), ms("#")],
            UnsubscribeProperties::default(),
        )
        .unwrap();
    pump(now, &mut c, &mut s);
    events_server(&mut s);
    s.unsuback(now, upid, vec![], AckProperties::default())
        .unwrap();
    pump(now, &mut c, &mut s);
    assert!(matches!(
        events_client(&mut c).as_slice(),
        [Event::UnsubAck(u)] if u.packet_id == upid && u.reason_codes.is_empty()
    ));
    assert!(c.is_connected());
}

#[test]
fn packet_ids_are_released_by_suback_and_unsuback() {
    // [MQTT-2.2.1-3]: a SUBSCRIBE/UNSUBSCRIBE identifier is in use until its SUBACK/UNSUBACK,
    // and free again after it. Every identifier is taken, then each answer frees exactly one.
    let now = t0();
    let v = ProtocolVersion::V3_1_1;
    let (mut c, _s) = connected_pair(v, now);
    let subs = || vec![subscription("a", QoS::AtMostOnce)];
    let mut ids = Vec::new();
    for _ in 0..u16::MAX {
        ids.push(
            c.subscribe(now, subs(), SubscribeProperties::default())
                .unwrap(),
        );
    }
    c.poll_transmit(&mut bytes::BytesMut::new());
    assert!(matches!(
        c.subscribe(now, subs(), SubscribeProperties::default()),
        Err(UserError::InvalidState(_))
    ));
    let freed = ids[1234];
    // An UNSUBACK does not answer a SUBSCRIBE.
    c.handle_input(
        now,
        &mut encode(
            v,
            &[Packet::UnsubAck(UnsubAck {
                packet_id: freed,
                properties: AckProperties::default(),
                reason_codes: vec![],
            })],
        ),
    );
    assert!(events_client(&mut c).is_empty());
    assert!(
        c.subscribe(now, subs(), SubscribeProperties::default())
            .is_err()
    );
    c.handle_input(
        now,
        &mut encode(
            v,
            &[Packet::SubAck(SubAck {
                packet_id: freed,
                properties: AckProperties::default(),
                reason_codes: vec![ReasonCode::Success],
            })],
        ),
    );
    assert!(matches!(
        events_client(&mut c).as_slice(),
        [Event::SubAck(_)]
    ));
    let again = c
        .unsubscribe(now, vec![ms("a")], UnsubscribeProperties::default())
        .unwrap();
    assert_eq!(again, freed);
    c.handle_input(
        now,
        &mut encode(
            v,
            &[Packet::UnsubAck(UnsubAck {
                packet_id: freed,
                properties: AckProperties::default(),
                reason_codes: vec![],
            })],
        ),
    );
    assert!(matches!(
        events_client(&mut c).as_slice(),
        [Event::UnsubAck(_)]
    ));
    assert_eq!(
        c.subscribe(now, subs(), SubscribeProperties::default()),
        Ok(freed)
    );
    assert_eq!(c.invariant_violation(), None);
}

#[test]
fn client_respects_subscription_identifiers_available() {
    // 5.0 section 3.2.2.3.12: with Subscription Identifiers Available 0 the client sends none
    // (the server would answer 0xA1).
    let now = t0();
    let v = ProtocolVersion::V5;
    let mut accept = Accept::default();
    accept.properties.subscription_identifiers_available = Some(false);
    let (mut c, _s) = pair_with(
        ClientConfig::new(v, ms("c")),
        ServerConfig::default(),
        accept,
        now,
    );
    let props = SubscribeProperties {
        subscription_identifier: NonZeroU32::new(1),
        ..SubscribeProperties::default()
    };
    assert!(matches!(
        c.subscribe(now, vec![subscription("a", QoS::AtMostOnce)], props),
        Err(UserError::NotSupported(_))
    ));
    assert!(!c.has_transmit());
    // In 3.1.1 the v5-only options cannot be encoded: refused, not silently dropped.
    let (mut c, _s) = connected_pair(ProtocolVersion::V3_1_1, now);
    let mut sub = subscription("a", QoS::AtMostOnce);
    sub.options.no_local = true;
    assert!(matches!(
        c.subscribe(now, vec![sub], SubscribeProperties::default()),
        Err(UserError::Encode(_))
    ));
    assert!(!c.has_transmit());
}
