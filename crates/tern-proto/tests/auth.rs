//! MQTT 5.0 enhanced authentication (section 4.12): the AUTH exchange during CONNECT,
//! re-authentication once connected, and the Authentication Method rules.

mod common;

use bytes::Bytes;
use tern_codec::{
    Auth, AuthProperties, ConnAck, ConnAckProperties, Packet, PacketType, ProtocolVersion,
    ReasonCode,
};
use tern_proto::{
    Accept, ClientConfig, ClientSession, ConnectionError, Event, ProtocolError, ServerConfig,
    ServerSession, UserError,
};

use common::*;

const V5: ProtocolVersion = ProtocolVersion::V5;

fn auth(code: ReasonCode, method: Option<&'static str>, data: &'static [u8]) -> Auth {
    Auth {
        reason_code: code,
        properties: AuthProperties {
            authentication_method: method.map(ms),
            authentication_data: (!data.is_empty()).then(|| Bytes::from_static(data)),
            ..AuthProperties::default()
        },
    }
}

fn scram_client() -> ClientConfig {
    let mut config = ClientConfig::new(V5, ms("c1"));
    config.connect.properties.authentication_method = Some(ms("SCRAM-SHA-1"));
    config.connect.properties.authentication_data = Some(Bytes::from_static(b"client-first"));
    config
}

/// A client with an Authentication Method whose CONNECT the server has surfaced.
fn connecting(now: std::time::Instant) -> (ClientSession, ServerSession) {
    let mut c = ClientSession::new(scram_client());
    let mut s = ServerSession::new(ServerConfig::default());
    c.connect(now).unwrap();
    pump(now, &mut c, &mut s);
    let ev = events_server(&mut s);
    let [Event::ConnectRequest(connect)] = ev.as_slice() else {
        panic!("{ev:?}")
    };
    assert_eq!(
        connect.properties.authentication_method.as_deref(),
        Some("SCRAM-SHA-1")
    );
    (c, s)
}

#[test]
fn continue_steps_then_accept() {
    // [MQTT-4.12.0-2] the server's AUTH carries 0x18, [MQTT-4.12.0-3] the client answers with
    // 0x18, [MQTT-4.12.0-5] every AUTH and the successful CONNACK repeat the method of CONNECT.
    let now = t0();
    let (mut c, mut s) = connecting(now);

    // The method is left out by the application: the engine fills it in.
    s.auth(
        now,
        auth(ReasonCode::ContinueAuthentication, None, b"server-first"),
    )
    .unwrap();
    let wire = sent_by_server(&mut s);
    let [Packet::Auth(sent)] = wire.as_slice() else {
        panic!("{wire:?}")
    };
    assert_eq!(
        sent.properties.authentication_method.as_deref(),
        Some("SCRAM-SHA-1")
    );
    c.handle_input(now, &mut encode(V5, &wire));
    let ev = events_client(&mut c);
    assert!(
        matches!(ev.as_slice(), [Event::Auth(a)] if a.reason_code == ReasonCode::ContinueAuthentication
            && a.properties.authentication_data.as_deref() == Some(&b"server-first"[..])),
        "{ev:?}"
    );
    assert!(!c.is_connected());

    c.auth(
        now,
        auth(
            ReasonCode::ContinueAuthentication,
            Some("SCRAM-SHA-1"),
            b"client-final",
        ),
    )
    .unwrap();
    pump(now, &mut c, &mut s);
    let ev = events_server(&mut s);
    assert!(
        matches!(ev.as_slice(), [Event::Auth(a)] if a.properties.authentication_data.as_deref() == Some(&b"client-final"[..])),
        "{ev:?}"
    );
    assert!(!s.is_connected(), "AUTH alone does not connect");

    s.accept(now, Accept::default()).unwrap();
    let wire = sent_by_server(&mut s);
    let [Packet::ConnAck(connack)] = wire.as_slice() else {
        panic!("{wire:?}")
    };
    assert_eq!(connack.reason_code, ReasonCode::Success);
    assert_eq!(
        connack.properties.authentication_method.as_deref(),
        Some("SCRAM-SHA-1")
    );
    c.handle_input(now, &mut encode(V5, &wire));
    assert!(c.is_connected() && s.is_connected());
}

#[test]
fn re_authentication_after_connect() {
    // [MQTT-4.12.1-1]: once CONNACK arrived the client may start a re-authentication with
    // 0x19 and the same method; the server ends it with Success; the connection stays up.
    let now = t0();
    let (mut c, mut s) = connecting(now);
    // Not before CONNACK.
    assert!(matches!(
        c.auth(now, auth(ReasonCode::ReAuthenticate, None, b"x")),
        Err(UserError::ReasonCode {
            packet: PacketType::Auth,
            ..
        })
    ));
    s.accept(now, Accept::default()).unwrap();
    pump(now, &mut c, &mut s);
    events_client(&mut c);

    c.auth(now, auth(ReasonCode::ReAuthenticate, None, b"again"))
        .unwrap();
    pump(now, &mut c, &mut s);
    let ev = events_server(&mut s);
    assert!(
        matches!(ev.as_slice(), [Event::Auth(a)] if a.reason_code == ReasonCode::ReAuthenticate
            && a.properties.authentication_method.as_deref() == Some("SCRAM-SHA-1")),
        "{ev:?}"
    );
    s.auth(
        now,
        auth(ReasonCode::ContinueAuthentication, None, b"challenge"),
    )
    .unwrap();
    pump(now, &mut c, &mut s);
    assert!(matches!(
        events_client(&mut c).as_slice(),
        [Event::Auth(a)] if a.reason_code == ReasonCode::ContinueAuthentication
    ));
    c.auth(
        now,
        auth(ReasonCode::ContinueAuthentication, None, b"response"),
    )
    .unwrap();
    pump(now, &mut c, &mut s);
    assert!(matches!(
        events_server(&mut s).as_slice(),
        [Event::Auth(a)] if a.reason_code == ReasonCode::ContinueAuthentication
    ));
    s.auth(now, auth(ReasonCode::Success, None, b"")).unwrap();
    pump(now, &mut c, &mut s);
    assert!(matches!(
        events_client(&mut c).as_slice(),
        [Event::Auth(a)] if a.reason_code == ReasonCode::Success
    ));
    assert!(c.is_connected() && s.is_connected());
    // Only the server ends an exchange with Success; only the client starts one with 0x19.
    assert!(c.auth(now, auth(ReasonCode::Success, None, b"")).is_err());
    assert!(
        s.auth(now, auth(ReasonCode::ReAuthenticate, None, b""))
            .is_err()
    );
}

#[test]
fn auth_from_a_client_without_a_method_is_a_protocol_error() {
    // [MQTT-4.12.0-7]: without an Authentication Method in CONNECT the client sends no AUTH;
    // the server answers 0x82. [MQTT-4.12.0-6]: nor does the server send one.
    let now = t0();
    let mut s = server_with(ServerConfig::default(), connect_packet(V5, "c", true), now);
    assert!(matches!(
        s.auth(now, auth(ReasonCode::ContinueAuthentication, None, b"")),
        Err(UserError::InvalidState(_))
    ));
    s.handle_input(
        now,
        &mut encode(
            V5,
            &[Packet::Auth(auth(
                ReasonCode::ReAuthenticate,
                Some("SCRAM-SHA-1"),
                b"",
            ))],
        ),
    );
    assert_eq!(
        events_server(&mut s),
        vec![Event::Disconnected(ConnectionError::Protocol(
            ProtocolError::UnexpectedAuth
        ))]
    );
    assert!(matches!(
        sent_by_server(&mut s).as_slice(),
        [Packet::Disconnect(d)] if d.reason_code == ReasonCode::ProtocolError
    ));
}

#[test]
fn auth_from_a_server_without_a_method_is_a_protocol_error() {
    // [MQTT-4.12.0-6]: the server sends no AUTH, and no Authentication Method in CONNACK,
    // when CONNECT had none.
    let now = t0();
    let (mut c, _s) = connected_pair(V5, now);
    c.handle_input(
        now,
        &mut encode(
            V5,
            &[Packet::Auth(auth(
                ReasonCode::ContinueAuthentication,
                Some("SCRAM-SHA-1"),
                b"",
            ))],
        ),
    );
    assert_eq!(
        events_client(&mut c),
        vec![Event::Disconnected(ConnectionError::Protocol(
            ProtocolError::UnexpectedAuth
        ))]
    );

    let mut s = ServerSession::new(ServerConfig::default());
    s.handle_input(
        now,
        &mut encode(V5, &[Packet::from(connect_packet(V5, "c", true))]),
    );
    events_server(&mut s);
    let mut accept = Accept::default();
    accept.properties.authentication_method = Some(ms("SCRAM-SHA-1"));
    assert!(matches!(
        s.accept(now, accept),
        Err(UserError::InvalidValue(_))
    ));
    assert!(!s.is_connected() && !s.has_transmit(), "nothing changed");
}

#[test]
fn auth_with_another_or_no_method_is_refused() {
    // [MQTT-4.12.0-5]: every AUTH carries the method of CONNECT. A server that has not sent
    // CONNACK answers with CONNACK 0x82, not DISCONNECT [MQTT-3.14.0-1].
    let now = t0();
    for method in [Some("PLAIN"), None] {
        let (_c, mut s) = connecting(now);
        s.handle_input(
            now,
            &mut encode(
                V5,
                &[Packet::Auth(auth(
                    ReasonCode::ContinueAuthentication,
                    method,
                    b"",
                ))],
            ),
        );
        assert_eq!(
            events_server(&mut s),
            vec![Event::Disconnected(ConnectionError::Protocol(
                ProtocolError::AuthMethodMismatch
            ))]
        );
        assert!(matches!(
            sent_by_server(&mut s).as_slice(),
            [Packet::ConnAck(c)] if c.reason_code == ReasonCode::ProtocolError
        ));
    }

    // The application cannot name another method either, on either side.
    let (mut c, mut s) = connecting(now);
    assert!(matches!(
        s.auth(
            now,
            auth(ReasonCode::ContinueAuthentication, Some("PLAIN"), b"")
        ),
        Err(UserError::InvalidValue(_))
    ));
    assert!(matches!(
        c.auth(
            now,
            auth(ReasonCode::ContinueAuthentication, Some("PLAIN"), b"")
        ),
        Err(UserError::InvalidValue(_))
    ));
    let mut accept = Accept::default();
    accept.properties.authentication_method = Some(ms("PLAIN"));
    assert!(s.accept(now, accept).is_err());
    assert!(!s.has_transmit() && !c.has_transmit());
}

#[test]
fn connack_without_the_method_is_a_protocol_error() {
    // [MQTT-4.12.0-5]: a successful CONNACK repeats the Authentication Method of CONNECT.
    let now = t0();
    let mut c = ClientSession::new(scram_client());
    c.connect(now).unwrap();
    c.poll_transmit(&mut bytes::BytesMut::new());
    let connack = ConnAck {
        session_present: false,
        reason_code: ReasonCode::Success,
        properties: ConnAckProperties::default(),
    };
    c.handle_input(now, &mut encode(V5, &[Packet::from(connack)]));
    assert!(!c.is_connected());
    assert_eq!(
        events_client(&mut c),
        vec![Event::Disconnected(ConnectionError::Protocol(
            ProtocolError::AuthMethodMismatch
        ))]
    );
}

#[test]
fn only_continue_authentication_during_connect() {
    // [MQTT-4.12.0-2], [MQTT-4.12.0-3]: before CONNACK an AUTH carries 0x18; 0x19 from the
    // client is a protocol error, and the server cannot end the exchange with AUTH Success
    // (CONNACK does that).
    let now = t0();
    let (_c, mut s) = connecting(now);
    assert!(matches!(
        s.auth(now, auth(ReasonCode::Success, None, b"")),
        Err(UserError::ReasonCode { .. })
    ));
    s.handle_input(
        now,
        &mut encode(
            V5,
            &[Packet::Auth(auth(
                ReasonCode::ReAuthenticate,
                Some("SCRAM-SHA-1"),
                b"",
            ))],
        ),
    );
    assert_eq!(
        events_server(&mut s),
        vec![Event::Disconnected(ConnectionError::Protocol(
            ProtocolError::InvalidAuthReason(ReasonCode::ReAuthenticate)
        ))]
    );
}
