//! DISCONNECT both ways (section 3.14): reason codes and properties, the Session Expiry rule,
//! 3.x servers that never send DISCONNECT, and the Will on 0x04.

mod common;

use std::time::Duration;

use tern_codec::{
    Disconnect, DisconnectProperties, Packet, ProtocolVersion, QoS, ReasonCode, Will,
    WillProperties,
};
use tern_proto::{
    ClientConfig, ConnectionError, Event, Initiator, ProtocolError, ServerConfig, UserError,
};

use common::*;

const V5: ProtocolVersion = ProtocolVersion::V5;

fn will() -> Will {
    Will {
        topic: ms("will/t"),
        payload: "gone".into(),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties::default(),
    }
}

#[test]
fn client_disconnect_carries_reason_and_properties() {
    // [MQTT-3.14.2-1]: a DISCONNECT Reason Code; its properties reach the server, the Session
    // Expiry Interval of DISCONNECT replaces CONNECT's, and 0x04 publishes the Will
    // (only 0x00 discards it [MQTT-3.14.4-3]).
    let now = t0();
    let mut config = ClientConfig::new(V5, ms("c"));
    config.connect.properties.session_expiry_interval = Some(100);
    config.connect.will = Some(will());
    let (mut c, mut s) = pair_with(config, ServerConfig::default(), Default::default(), now);
    let d = Disconnect {
        reason_code: ReasonCode::DisconnectWithWillMessage,
        properties: DisconnectProperties {
            session_expiry_interval: Some(50),
            reason_string: Some(ms("bye")),
            user_properties: vec![(ms("k"), ms("v"))],
            server_reference: None,
        },
    };
    c.disconnect(now, d.clone()).unwrap();
    assert!(c.is_closed());
    pump(now, &mut c, &mut s);
    assert_eq!(
        events_client(&mut c),
        vec![Event::Disconnected(ConnectionError::LocallyClosed(
            ReasonCode::DisconnectWithWillMessage
        ))]
    );
    let ev = events_server(&mut s);
    assert_eq!(
        ev[0],
        Event::Disconnected(ConnectionError::PeerDisconnected(d))
    );
    assert!(matches!(&ev[1..], [Event::Will(p)] if p.topic == "will/t"));
    assert_eq!(s.session_expiry_interval(), 50);
    assert_eq!(c.state().session_expiry_interval, 50);
}

#[test]
fn server_disconnect_carries_reason_and_properties() {
    // [MQTT-3.14.2-1]: the server's DISCONNECT reaches the client with its reason code and
    // properties; [MQTT-3.14.2-2]: never with a Session Expiry Interval; 0x04 is the client's.
    let now = t0();
    let (mut c, mut s) = connected_pair(V5, now);
    let mut with_expiry = Disconnect::default();
    with_expiry.properties.session_expiry_interval = Some(0);
    assert!(matches!(
        s.disconnect(now, with_expiry),
        Err(UserError::InvalidValue(_))
    ));
    assert!(matches!(
        s.disconnect(
            now,
            Disconnect {
                reason_code: ReasonCode::DisconnectWithWillMessage,
                ..Disconnect::default()
            }
        ),
        Err(UserError::ReasonCode { .. })
    ));
    assert!(s.is_connected() && !s.has_transmit());
    let d = Disconnect {
        reason_code: ReasonCode::ServerMoved,
        properties: DisconnectProperties {
            reason_string: Some(ms("moving")),
            server_reference: Some(ms("other.example:1883")),
            ..DisconnectProperties::default()
        },
    };
    s.disconnect(now, d.clone()).unwrap();
    pump(now, &mut c, &mut s);
    let ev = events_client(&mut c);
    assert_eq!(
        ev,
        vec![Event::Disconnected(ConnectionError::PeerDisconnected(
            d.clone()
        ))]
    );
    let Event::Disconnected(e) = &ev[0] else {
        unreachable!()
    };
    assert_eq!(e.initiator(), Initiator::Remote);
    assert!(c.is_closed());
}

#[test]
fn session_expiry_raised_from_zero_is_a_protocol_error() {
    // Section 3.14.2.2.2: with Session Expiry 0 (or absent) in CONNECT, a non-zero one in
    // the client's DISCONNECT is a Protocol Error: DISCONNECT 0x82, and the DISCONNECT is not
    // a valid one, so the Will is published.
    let now = t0();
    let mut connect = connect_packet(V5, "c", true);
    connect.will = Some(will());
    let mut s = server_with(ServerConfig::default(), connect, now);
    let mut d = Disconnect::default();
    d.properties.session_expiry_interval = Some(10);
    s.handle_input(now, &mut encode(V5, &[Packet::Disconnect(d.clone())]));
    let ev = events_server(&mut s);
    assert_eq!(
        ev[0],
        Event::Disconnected(ConnectionError::Protocol(
            ProtocolError::SessionExpiryOnDisconnect
        ))
    );
    assert!(matches!(&ev[1..], [Event::Will(_)]));
    assert!(matches!(
        sent_by_server(&mut s).as_slice(),
        [Packet::Disconnect(x)] if x.reason_code == ReasonCode::ProtocolError
    ));
    assert_eq!(s.session_expiry_interval(), 0);

    // The client engine refuses to send it; a zero is fine.
    let (mut c, _s) = connected_pair(V5, now);
    assert!(matches!(
        c.disconnect(now, d),
        Err(UserError::InvalidValue(_))
    ));
    assert!(c.is_connected() && !c.has_transmit());
    let mut zero = Disconnect::default();
    zero.properties.session_expiry_interval = Some(0);
    c.disconnect(now, zero).unwrap();
}

#[test]
fn server_never_sends_disconnect_to_a_v3_client() {
    // MQTT 3.1 and 3.1.1 have no DISCONNECT from the server: the server just closes, whether
    // the broker closes, the client breaks a rule, or the keep alive runs out. (5.0 sends one.)
    let now = t0();
    for v in [ProtocolVersion::V3_1, ProtocolVersion::V3_1_1, V5] {
        let expect_disconnect = v.is_v5();
        let mut s = server_with(ServerConfig::default(), connect_packet(v, "c", true), now);
        s.disconnect(now, Disconnect::default()).unwrap();
        assert!(s.is_closed());
        let sent = sent_by_server(&mut s);
        assert_eq!(!sent.is_empty(), expect_disconnect, "{v:?}: {sent:?}");

        let mut s = server_with(ServerConfig::default(), connect_packet(v, "c", true), now);
        s.handle_input(
            now,
            &mut encode(v, &[Packet::from(connect_packet(v, "c", true))]),
        );
        assert!(s.is_closed());
        let sent = sent_by_server(&mut s);
        assert_eq!(!sent.is_empty(), expect_disconnect, "{v:?}: {sent:?}");

        let mut s = server_with(ServerConfig::default(), connect_packet(v, "c", true), now);
        s.handle_timeout(now + Duration::from_secs(15));
        assert!(s.is_closed());
        let sent = sent_by_server(&mut s);
        assert_eq!(!sent.is_empty(), expect_disconnect, "{v:?}: {sent:?}");
    }
}

#[test]
fn v3_client_disconnect_is_bare() {
    // 3.1.1 section 3.14: DISCONNECT has no variable header; a reason given for 5.0 is not
    // sent, and only a clean DISCONNECT discards the Will [MQTT-3.14.4-3].
    let now = t0();
    let v = ProtocolVersion::V3_1_1;
    let mut config = ClientConfig::new(v, ms("c"));
    config.connect.will = Some(will());
    let (mut c, mut s) = pair_with(config, ServerConfig::default(), Default::default(), now);
    c.disconnect(
        now,
        Disconnect {
            reason_code: ReasonCode::DisconnectWithWillMessage,
            ..Disconnect::default()
        },
    )
    .unwrap();
    let mut wire = bytes::BytesMut::new();
    c.poll_transmit(&mut wire);
    assert_eq!(&wire[..], &[0xE0, 0x00]);
    s.handle_input(now, &mut wire);
    let ev = events_server(&mut s);
    assert!(ev.iter().all(|e| !matches!(e, Event::Will(_))), "{ev:?}");
}
