//! Golden byte vectors: hand-written from the layouts of the MQTT 3.1, 3.1.1 and 5.0
//! specifications. Each valid vector must decode to exactly the packet given and re-encode to
//! exactly the same bytes; each malformed vector must fail with exactly the error given, map to
//! the reason code given and leave the input buffer untouched.

use bytes::{Bytes, BytesMut};
use core::num::{NonZeroU16, NonZeroU32};
use tern_codec::{
    Ack, AckProperties, Auth, AuthProperties, ConnAck, ConnAckProperties, Connect,
    ConnectProperties, DecodeError, Decoder, Disconnect, DisconnectProperties, EncodeError,
    MAX_PACKET_SIZE, MqttString, Packet, PacketType, PayloadFormat, ProtocolVersion, Publish,
    PublishProperties, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, SubscribeProperties,
    Subscription, SubscriptionOptions, UnsubAck, Unsubscribe, UnsubscribeProperties, Will,
    WillProperties, framing,
};

use ProtocolVersion::{V3_1, V3_1_1, V5};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Parses hex digits, ignoring whitespace.
fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(
        digits.len().is_multiple_of(2),
        "odd number of hex digits in {s:?}"
    );
    digits
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).unwrap();
            u8::from_str_radix(text, 16).unwrap_or_else(|_| panic!("bad hex {text:?}"))
        })
        .collect()
}

fn s(text: &'static str) -> MqttString {
    MqttString::from_static(text)
}

fn id(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap()
}

fn decoder_for(version: ProtocolVersion, packet: &Packet) -> Decoder {
    if matches!(packet, Packet::Connect(_)) {
        Decoder::new(MAX_PACKET_SIZE)
    } else {
        Decoder::with_version(version, MAX_PACKET_SIZE)
    }
}

/// Checks that `hex` decodes to exactly `packet` (incrementally and from a slice) and that
/// `packet` encodes to exactly `hex`.
fn golden(version: ProtocolVersion, hex_bytes: &str, packet: Packet) {
    let bytes = hex(hex_bytes);
    decodes_to(version, &bytes, &packet);
    assert_eq!(
        packet.encoded_len(version),
        Ok(bytes.len()),
        "encoded_len of {packet:?}"
    );
    let mut out = BytesMut::new();
    packet.encode(version, &mut out).unwrap();
    assert_eq!(hex_of(&out), hex_of(&bytes), "encoding of {packet:?}");
    // Encoding appends to what the buffer holds.
    let mut out = BytesMut::from(&b"xy"[..]);
    packet.encode(version, &mut out).unwrap();
    assert_eq!(&out[2..], &bytes[..]);
}

/// Checks that `bytes` decodes to exactly `packet`: every strict prefix is `Ok(None)`, the
/// whole is the packet, through `Decoder` and `Packet::decode`.
fn decodes_to(version: ProtocolVersion, bytes: &[u8], packet: &Packet) {
    let mut decoder = decoder_for(version, packet);
    for cut in 0..bytes.len() {
        let mut buf = BytesMut::from(&bytes[..cut]);
        assert_eq!(decoder.decode(&mut buf), Ok(None), "prefix of {cut} bytes");
        assert_eq!(buf.len(), cut, "a prefix is not consumed");
        assert!(decoder.needed() >= 1 && decoder.needed() <= bytes.len() - cut);
        assert!(
            buf.capacity() >= cut + decoder.needed(),
            "reserved for the rest"
        );
        assert_eq!(
            Packet::decode(version, &bytes[..cut], MAX_PACKET_SIZE),
            Ok(None)
        );
    }
    let mut buf = BytesMut::from(bytes);
    buf.extend_from_slice(&[0xC0, 0x00]); // a PINGREQ behind it stays in the buffer
    assert_eq!(decoder.decode(&mut buf).as_ref(), Ok(&Some(packet.clone())));
    assert_eq!(&buf[..], &[0xC0, 0x00]);
    assert_eq!(
        Packet::decode(version, &buf_with(bytes, &[0xC0, 0x00]), MAX_PACKET_SIZE),
        Ok(Some((packet.clone(), bytes.len())))
    );
}

fn buf_with(a: &[u8], b: &[u8]) -> Vec<u8> {
    [a, b].concat()
}

fn hex_of(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02X}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// How the malformed bytes are fed: to a server decoder that expects CONNECT, or to a decoder
/// of a known version.
#[derive(Clone, Copy)]
enum Side {
    Server,
    Version(ProtocolVersion),
}

/// Checks that `hex` fails with exactly `err`, whose reason code is `reason`, and that the
/// decoder leaves the buffer as it was.
fn malformed(side: Side, hex_bytes: &str, err: DecodeError, reason: ReasonCode) {
    let bytes = hex(hex_bytes);
    let mut decoder = match side {
        Side::Server => Decoder::new(MAX_PACKET_SIZE),
        Side::Version(v) => Decoder::with_version(v, MAX_PACKET_SIZE),
    };
    let mut buf = BytesMut::from(&bytes[..]);
    assert_eq!(decoder.decode(&mut buf), Err(err.clone()), "{hex_bytes}");
    assert_eq!(&buf[..], &bytes[..], "buffer unchanged after an error");
    assert_eq!(err.reason_code(), reason, "{err:?}");
    // The stateless slice API agrees, except on the connection-state errors.
    if !matches!(
        err,
        DecodeError::ExpectedConnect(_) | DecodeError::UnexpectedPacket { .. }
    ) {
        let version = match side {
            Side::Server => V5,
            Side::Version(v) => v,
        };
        assert_eq!(
            Packet::decode(version, &bytes, MAX_PACKET_SIZE),
            Err(err),
            "{hex_bytes}"
        );
    }
}

fn connect(protocol: ProtocolVersion, client_id: &'static str) -> Connect {
    Connect {
        protocol,
        clean_start: true,
        keep_alive: 60,
        client_id: s(client_id),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }
}

// ---------------------------------------------------------------------------------------------
// CONNECT
// ---------------------------------------------------------------------------------------------

#[test]
fn connect_v3_1_1_minimal() {
    // 3.1.2.1 protocol name "MQTT" [MQTT-3.1.2-1], level 4 [MQTT-3.1.2-2], Clean Session,
    // Keep Alive 60, Client Identifier "abc" [MQTT-3.1.3-3].
    golden(
        V3_1_1,
        "10 0F  00 04 4D 51 54 54  04  02  00 3C  00 03 61 62 63",
        Packet::from(connect(V3_1_1, "abc")),
    );
}

#[test]
fn connect_v3_1_mqisdp() {
    // MQTT 3.1: protocol name "MQIsdp", level 3.
    golden(
        V3_1,
        "10 11  00 06 4D 51 49 73 64 70  03  02  00 3C  00 03 61 62 63",
        Packet::from(connect(V3_1, "abc")),
    );
}

#[test]
fn connect_v3_1_1_will_username_password() {
    // Flags 0xEE: user name, password, will retain, will QoS 1, will flag, clean session
    // [MQTT-3.1.2-9], [MQTT-3.1.2-19], [MQTT-3.1.2-21]; payload order client id, will topic,
    // will message, user name, password [MQTT-3.1.3-1].
    let mut c = connect(V3_1_1, "c");
    c.keep_alive = 10;
    c.will = Some(Will {
        topic: s("w/t"),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: WillProperties::default(),
    });
    c.username = Some(s("u"));
    c.password = Some(Bytes::from_static(b"p"));
    golden(
        V3_1_1,
        "10 1D  00 04 4D 51 54 54 04 EE 00 0A
         00 01 63  00 03 77 2F 74  00 03 62 79 65  00 01 75  00 01 70",
        Packet::from(c),
    );
}

#[test]
fn connect_v5_properties_and_will() {
    // 3.1.2.11 CONNECT properties in increasing identifier order, 3.1.3.2 will properties
    // before the will topic.
    let mut c = connect(V5, "cid");
    c.properties = ConnectProperties {
        session_expiry_interval: Some(120),
        receive_maximum: NonZeroU16::new(20),
        topic_alias_maximum: Some(10),
        user_properties: vec![(s("a"), s("b"))],
        ..ConnectProperties::default()
    };
    c.will = Some(Will {
        topic: s("t"),
        payload: Bytes::from_static(b"x"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties {
            payload_format_indicator: Some(PayloadFormat::Utf8),
            will_delay_interval: Some(5),
            ..WillProperties::default()
        },
    });
    c.username = Some(s("u"));
    golden(
        V5,
        "10 33  00 04 4D 51 54 54  05  8E  00 3C
         12  11 00 00 00 78  21 00 14  22 00 0A  26 00 01 61 00 01 62
         00 03 63 69 64
         07  01 01  18 00 00 00 05
         00 01 74  00 01 78  00 01 75",
        Packet::from(c),
    );
}

#[test]
fn connect_v5_password_without_username_and_auth() {
    // 5.0 allows a password without a user name (3.1.2.9); Authentication Method and Data.
    let mut c = connect(V5, "");
    c.clean_start = false;
    c.keep_alive = 0;
    c.password = Some(Bytes::from_static(&[0xFF]));
    c.properties.authentication_method = Some(s("m"));
    c.properties.authentication_data = Some(Bytes::from_static(&[0x01]));
    golden(
        V5,
        "10 18  00 04 4D 51 54 54  05  40  00 00
         08  15 00 01 6D  16 00 01 01
         00 00  00 01 FF",
        Packet::from(c),
    );
}

#[test]
fn connect_sets_the_decoder_version() {
    // [MQTT-3.1.0-1] CONNECT first; its level sets the version; [MQTT-3.1.0-2] a second
    // CONNECT is a protocol violation.
    let mut decoder = Decoder::new(MAX_PACKET_SIZE);
    assert_eq!(decoder.version(), None);
    let mut buf =
        BytesMut::from(&hex("10 11 00 06 4D 51 49 73 64 70 03 02 00 3C 00 03 61 62 63")[..]);
    assert!(matches!(
        decoder.decode(&mut buf),
        Ok(Some(Packet::Connect(_)))
    ));
    assert_eq!(decoder.version(), Some(V3_1));
    let again = hex("10 11 00 06 4D 51 49 73 64 70 03 02 00 3C 00 03 61 62 63");
    let mut buf = BytesMut::from(&again[..]);
    let err = decoder.decode(&mut buf).unwrap_err();
    assert_eq!(
        err,
        DecodeError::UnexpectedPacket {
            packet_type: PacketType::Connect,
            version: V3_1
        }
    );
    assert_eq!(err.reason_code(), ReasonCode::ProtocolError);
    assert_eq!(&buf[..], &again[..]);
}

// ---------------------------------------------------------------------------------------------
// CONNACK
// ---------------------------------------------------------------------------------------------

#[test]
fn connack_v3_1_1() {
    // 3.2.2.2 Session Present, 3.2.2.3 return code 0 accepted.
    let ack = ConnAck {
        session_present: true,
        ..ConnAck::default()
    };
    golden(V3_1_1, "20 02 01 00", Packet::from(ack));
    // Return code 5: not authorized; Session Present 0 [MQTT-3.2.2-4].
    let ack = ConnAck {
        reason_code: ReasonCode::NotAuthorized,
        ..ConnAck::default()
    };
    golden(V3_1_1, "20 02 00 05", Packet::from(ack));
    // Return code 1: unacceptable protocol version.
    let ack = ConnAck {
        reason_code: ReasonCode::UnsupportedProtocolVersion,
        ..ConnAck::default()
    };
    golden(V3_1_1, "20 02 00 01", Packet::from(ack));
}

#[test]
fn connack_v3_1() {
    // MQTT 3.1: the first byte is reserved (no Session Present).
    golden(V3_1, "20 02 00 00", Packet::from(ConnAck::default()));
    let ack = ConnAck {
        reason_code: ReasonCode::ClientIdentifierNotValid,
        ..ConnAck::default()
    };
    golden(V3_1, "20 02 00 02", Packet::from(ack));
}

#[test]
fn connack_v5() {
    // 3.2.2.3: the Property Length is always present in a 5.0 CONNACK.
    golden(V5, "20 03 00 00 00", Packet::from(ConnAck::default()));
    let ack = ConnAck {
        reason_code: ReasonCode::NotAuthorized,
        ..ConnAck::default()
    };
    golden(V5, "20 03 00 87 00", Packet::from(ack));
    let ack = ConnAck {
        session_present: true,
        reason_code: ReasonCode::Success,
        properties: ConnAckProperties {
            server_keep_alive: Some(60),
            maximum_qos: Some(QoS::AtLeastOnce),
            retain_available: Some(false),
            ..ConnAckProperties::default()
        },
    };
    golden(
        V5,
        "20 0A 01 00 07  13 00 3C  24 01  25 00",
        Packet::from(ack),
    );
}

// ---------------------------------------------------------------------------------------------
// PUBLISH
// ---------------------------------------------------------------------------------------------

fn publish(qos: QoS, packet_id: Option<u16>, payload: &'static [u8]) -> Publish {
    Publish {
        qos,
        topic: s("a/b"),
        packet_id: packet_id.map(id),
        payload: Bytes::from_static(payload),
        ..Publish::default()
    }
}

#[test]
fn publish_qos0_every_version() {
    // 3.3.1: QoS 0 has no Packet Identifier [MQTT-2.2.1-2].
    for v in [V3_1, V3_1_1] {
        golden(
            v,
            "30 0A  00 03 61 2F 62  68 65 6C 6C 6F",
            Packet::Publish(publish(QoS::AtMostOnce, None, b"hello")),
        );
    }
    // 5.0: a Property Length of 0 after the topic.
    golden(
        V5,
        "30 0B  00 03 61 2F 62  00  68 65 6C 6C 6F",
        Packet::Publish(publish(QoS::AtMostOnce, None, b"hello")),
    );
}

#[test]
fn publish_qos1_retain_and_qos2_dup() {
    // [MQTT-3.3.1-3]-style flags: QoS 1 + RETAIN is 0x33; QoS 2 + DUP is 0x3C.
    let mut p = publish(QoS::AtLeastOnce, Some(10), b"hello");
    p.retain = true;
    golden(
        V3_1_1,
        "33 0C  00 03 61 2F 62  00 0A  68 65 6C 6C 6F",
        Packet::Publish(p),
    );
    let mut p = publish(QoS::ExactlyOnce, Some(11), b"hello");
    p.dup = true;
    golden(
        V3_1_1,
        "3C 0C  00 03 61 2F 62  00 0B  68 65 6C 6C 6F",
        Packet::Publish(p.clone()),
    );
    golden(
        V5,
        "3C 0D  00 03 61 2F 62  00 0B  00  68 65 6C 6C 6F",
        Packet::Publish(p),
    );
}

#[test]
fn publish_v5_topic_alias_with_empty_topic() {
    // [MQTT-3.3.2-1] / 3.3.2.3.4: an empty topic with a Topic Alias.
    let p = Publish {
        qos: QoS::AtLeastOnce,
        packet_id: Some(id(1)),
        properties: PublishProperties {
            topic_alias: NonZeroU16::new(5),
            ..Default::default()
        },
        payload: Bytes::from_static(b"hi"),
        ..Publish::default()
    };
    golden(
        V5,
        "32 0A  00 00  00 01  03 23 00 05  68 69",
        Packet::Publish(p),
    );
}

#[test]
fn publish_v5_properties() {
    // 3.3.2.3: payload format, message expiry, content type, subscription identifier.
    let p = Publish {
        topic: s("t"),
        properties: PublishProperties {
            payload_format_indicator: Some(PayloadFormat::Utf8),
            message_expiry_interval: Some(60),
            content_type: Some(s("text")),
            subscription_identifiers: vec![NonZeroU32::new(2).unwrap()],
            ..Default::default()
        },
        payload: Bytes::from_static(b"{}"),
        ..Publish::default()
    };
    golden(
        V5,
        "30 16  00 01 74  10  01 01  02 00 00 00 3C  03 00 04 74 65 78 74  0B 02  7B 7D",
        Packet::Publish(p),
    );
}

#[test]
fn publish_payload_is_a_zero_copy_slice() {
    let bytes = hex("30 0A 00 03 61 2F 62 68 65 6C 6C 6F");
    let mut buf = BytesMut::from(&bytes[..]);
    let start = buf.as_ptr() as usize;
    let Some(Packet::Publish(p)) = Decoder::with_version(V3_1_1, MAX_PACKET_SIZE)
        .decode(&mut buf)
        .unwrap()
    else {
        panic!("not a PUBLISH");
    };
    assert_eq!(p.payload.as_ptr() as usize, start + 7);
    assert_eq!(p.topic.as_bytes().as_ptr() as usize, start + 4);
}

// ---------------------------------------------------------------------------------------------
// PUBACK, PUBREC, PUBREL, PUBCOMP
// ---------------------------------------------------------------------------------------------

#[test]
fn acks_v3() {
    // 3.4 to 3.7: Remaining Length 2; PUBREL flags 0b0010 [MQTT-3.6.1-1].
    for v in [V3_1, V3_1_1] {
        golden(v, "40 02 00 01", Packet::PubAck(Ack::new(id(1))));
        golden(v, "50 02 00 01", Packet::PubRec(Ack::new(id(1))));
        golden(v, "62 02 00 01", Packet::PubRel(Ack::new(id(1))));
        golden(v, "70 02 00 01", Packet::PubComp(Ack::new(id(1))));
    }
}

#[test]
fn acks_v5_short_forms() {
    // 3.4.2.1: Remaining Length 2 means Success without properties.
    golden(V5, "40 02 00 01", Packet::PubAck(Ack::new(id(1))));
    golden(V5, "50 02 FF FF", Packet::PubRec(Ack::new(id(0xFFFF))));
    golden(V5, "62 02 00 01", Packet::PubRel(Ack::new(id(1))));
    golden(V5, "70 02 00 01", Packet::PubComp(Ack::new(id(1))));
    // 3.4.2.2.1: Remaining Length 3 means a reason code without properties.
    let ack = |code| Ack {
        reason_code: code,
        ..Ack::new(id(1))
    };
    golden(
        V5,
        "40 03 00 01 10",
        Packet::PubAck(ack(ReasonCode::NoMatchingSubscribers)),
    );
    golden(
        V5,
        "50 03 00 01 80",
        Packet::PubRec(ack(ReasonCode::UnspecifiedError)),
    );
    golden(
        V5,
        "62 03 00 01 92",
        Packet::PubRel(ack(ReasonCode::PacketIdentifierNotFound)),
    );
    golden(
        V5,
        "70 03 00 01 92",
        Packet::PubComp(ack(ReasonCode::PacketIdentifierNotFound)),
    );
    // The full form with a Reason String.
    let full = Ack {
        reason_code: ReasonCode::NotAuthorized,
        properties: AckProperties {
            reason_string: Some(s("no")),
            ..Default::default()
        },
        ..Ack::new(id(1))
    };
    golden(V5, "40 09 00 01 87 05 1F 00 02 6E 6F", Packet::PubAck(full));
}

#[test]
fn acks_v5_longer_forms_are_accepted() {
    // The reason code and an empty Property Length may be present even when they could be
    // omitted; the encoder writes the shortest form (3.4.2.1).
    let bytes = hex("40 04 00 01 00 00");
    decodes_to(V5, &bytes, &Packet::PubAck(Ack::new(id(1))));
    let bytes = hex("40 03 00 01 00");
    decodes_to(V5, &bytes, &Packet::PubAck(Ack::new(id(1))));
    let mut out = BytesMut::new();
    Ack::new(id(1))
        .encode(PacketType::PubAck, V5, &mut out)
        .unwrap();
    assert_eq!(&out[..], &hex("40 02 00 01")[..]);
}

#[test]
fn ack_encode_api() {
    let ack = Ack::new(id(7));
    let mut out = BytesMut::new();
    ack.encode(PacketType::PubRel, V3_1_1, &mut out).unwrap();
    assert_eq!(&out[..], &hex("62 02 00 07")[..]);
    assert_eq!(ack.encoded_len(PacketType::PubRel, V3_1_1), Ok(4));
    assert!(matches!(
        ack.encode(PacketType::SubAck, V5, &mut out),
        Err(EncodeError::InvalidValue(_))
    ));
}

// ---------------------------------------------------------------------------------------------
// SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK
// ---------------------------------------------------------------------------------------------

fn sub(filter: &'static str, qos: QoS) -> Subscription {
    Subscription {
        filter: s(filter),
        options: SubscriptionOptions {
            qos,
            ..Default::default()
        },
    }
}

#[test]
fn subscribe_v3() {
    // 3.8.1 flags 0b0010 [MQTT-3.8.1-1]; requested QoS byte [MQTT-3.8.3-4].
    let p = Subscribe {
        packet_id: id(10),
        properties: SubscribeProperties::default(),
        subscriptions: tern_codec::smallvec::smallvec![
            sub("a/b", QoS::AtLeastOnce),
            sub("#", QoS::ExactlyOnce)
        ],
    };
    for v in [V3_1, V3_1_1] {
        golden(
            v,
            "82 0C  00 0A  00 03 61 2F 62 01  00 01 23 02",
            Packet::Subscribe(p.clone()),
        );
    }
}

#[test]
fn subscribe_v5_options_and_identifier() {
    // 3.8.3.1 options: QoS 1, No Local, Retain As Published, Retain Handling 2 = 0x2D;
    // 3.8.2.1.2 Subscription Identifier 7.
    let p = Subscribe {
        packet_id: id(10),
        properties: SubscribeProperties {
            subscription_identifier: NonZeroU32::new(7),
            ..Default::default()
        },
        subscriptions: tern_codec::smallvec::smallvec![Subscription {
            filter: s("a/b"),
            options: SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::DoNotSend,
            },
        }],
    };
    golden(
        V5,
        "82 0B  00 0A  02 0B 07  00 03 61 2F 62 2D",
        Packet::Subscribe(p),
    );
}

#[test]
fn suback_every_version() {
    // 3.9.3: one code per filter [MQTT-3.9.3-1]; 3.1.1 adds 0x80 Failure.
    let ack = |codes: Vec<ReasonCode>| SubAck {
        packet_id: id(10),
        properties: AckProperties::default(),
        reason_codes: codes,
    };
    golden(
        V3_1,
        "90 04 00 0A 00 02",
        Packet::SubAck(ack(vec![
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GrantedQoS2,
        ])),
    );
    golden(
        V3_1_1,
        "90 05 00 0A 00 01 80",
        Packet::SubAck(ack(vec![
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GrantedQoS1,
            ReasonCode::UnspecifiedError,
        ])),
    );
    golden(
        V5,
        "90 06 00 0A 00 00 01 A2",
        Packet::SubAck(ack(vec![
            ReasonCode::GRANTED_QOS_0,
            ReasonCode::GrantedQoS1,
            ReasonCode::WildcardSubscriptionsNotSupported,
        ])),
    );
}

#[test]
fn unsubscribe_every_version() {
    // 3.10.1 flags 0b0010 [MQTT-3.10.1-1].
    let p = Unsubscribe {
        packet_id: id(11),
        properties: UnsubscribeProperties::default(),
        filters: vec![s("a")],
    };
    golden(V3_1, "A2 05 00 0B 00 01 61", Packet::Unsubscribe(p.clone()));
    golden(
        V3_1_1,
        "A2 05 00 0B 00 01 61",
        Packet::Unsubscribe(p.clone()),
    );
    golden(V5, "A2 06 00 0B 00 00 01 61", Packet::Unsubscribe(p));
}

#[test]
fn unsuback_every_version() {
    // 3.11: 3.x has no payload; 5.0 has one reason code per filter [MQTT-3.11.3-1].
    let empty = UnsubAck {
        packet_id: id(11),
        properties: AckProperties::default(),
        reason_codes: vec![],
    };
    golden(V3_1, "B0 02 00 0B", Packet::UnsubAck(empty.clone()));
    golden(V3_1_1, "B0 02 00 0B", Packet::UnsubAck(empty.clone()));
    let v5 = UnsubAck {
        reason_codes: vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted],
        ..empty
    };
    golden(V5, "B0 05 00 0B 00 00 11", Packet::UnsubAck(v5));
}

// ---------------------------------------------------------------------------------------------
// PINGREQ, PINGRESP, DISCONNECT, AUTH
// ---------------------------------------------------------------------------------------------

#[test]
fn ping_every_version() {
    // 3.12, 3.13: Remaining Length 0.
    for v in [V3_1, V3_1_1, V5] {
        golden(v, "C0 00", Packet::PingReq);
        golden(v, "D0 00", Packet::PingResp);
    }
}

#[test]
fn disconnect_every_version() {
    // 3.14: 3.x has no variable header; 5.0 Remaining Length 0 is Normal disconnection
    // (3.14.2.1).
    for v in [V3_1, V3_1_1, V5] {
        golden(v, "E0 00", Packet::Disconnect(Disconnect::default()));
    }
    // Remaining Length 1: a reason code without properties (3.14.2.2.1).
    let with_will = Disconnect {
        reason_code: ReasonCode::DisconnectWithWillMessage,
        ..Disconnect::default()
    };
    golden(V5, "E0 01 04", Packet::Disconnect(with_will));
    let taken_over = Disconnect {
        reason_code: ReasonCode::SessionTakenOver,
        properties: DisconnectProperties {
            server_reference: Some(s("s2")),
            ..DisconnectProperties::default()
        },
    };
    golden(
        V5,
        "E0 07 8E 05 1C 00 02 73 32",
        Packet::Disconnect(taken_over),
    );
}

#[test]
fn auth_v5() {
    // 3.15.2.1: Remaining Length 0 means Success without properties.
    golden(V5, "F0 00", Packet::Auth(Auth::default()));
    let auth = Auth {
        reason_code: ReasonCode::ContinueAuthentication,
        properties: AuthProperties {
            authentication_method: Some(s("meth")),
            authentication_data: Some(Bytes::from_static(&[0xAB, 0xCD])),
            ..AuthProperties::default()
        },
    };
    golden(
        V5,
        "F0 0E 18 0C 15 00 04 6D 65 74 68 16 00 02 AB CD",
        Packet::Auth(auth),
    );
}

// ---------------------------------------------------------------------------------------------
// Framing and the decoder
// ---------------------------------------------------------------------------------------------

#[test]
fn max_packet_size_is_enforced_from_the_header() {
    // [MQTT-3.1.2-24]/[MQTT-3.2.2-15]: only the fixed header has arrived, announcing 2 + 11
    // bytes against a limit of 10.
    let mut decoder = Decoder::with_version(V3_1_1, 10);
    let mut buf = BytesMut::from(&hex("30 0B")[..]);
    let err = decoder.decode(&mut buf).unwrap_err();
    assert_eq!(err, DecodeError::PacketTooLarge { size: 13, max: 10 });
    assert_eq!(err.reason_code(), ReasonCode::PacketTooLarge);
    assert_eq!(buf.len(), 2);
    // A four-byte Remaining Length of 268,435,455 is refused before anything is reserved.
    let mut decoder = Decoder::with_version(V5, 1024);
    let mut buf = BytesMut::from(&hex("30 FF FF FF 7F")[..]);
    assert_eq!(
        decoder.decode(&mut buf),
        Err(DecodeError::PacketTooLarge {
            size: 268_435_460,
            max: 1024
        })
    );
    assert!(buf.capacity() < 1024);
    // Exactly at the limit is fine.
    let mut decoder = Decoder::with_version(V3_1_1, 4);
    let mut buf = BytesMut::from(&hex("40 02 00 01")[..]);
    assert!(decoder.decode(&mut buf).unwrap().is_some());
}

#[test]
fn framing_reports_what_is_missing() {
    use tern_codec::{FixedHeader, Framing};
    assert_eq!(
        framing(&[], MAX_PACKET_SIZE),
        Ok(Framing::Incomplete { needed: 1 })
    );
    assert_eq!(
        framing(&[0x30], MAX_PACKET_SIZE),
        Ok(Framing::Incomplete { needed: 1 })
    );
    assert_eq!(
        framing(&[0x30, 0x80], MAX_PACKET_SIZE),
        Ok(Framing::Incomplete { needed: 1 })
    );
    assert_eq!(
        framing(&[0x30, 0x80, 0x01, 0x00], MAX_PACKET_SIZE),
        Ok(Framing::Incomplete { needed: 127 })
    );
    assert_eq!(
        framing(&[0xC0, 0x00, 0xFF], MAX_PACKET_SIZE),
        Ok(Framing::Complete(FixedHeader {
            packet_type: PacketType::PingReq,
            flags: 0,
            remaining_length: 0,
            header_len: 2,
        }))
    );
}

#[test]
fn decoder_reserves_the_rest_of_the_packet() {
    let mut decoder = Decoder::with_version(V3_1_1, MAX_PACKET_SIZE);
    let mut buf = BytesMut::from(&hex("30 FF 01 00 01 61")[..]); // 255 + 3 bytes
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(decoder.needed(), 258 - 6);
    assert!(buf.capacity() >= 258);
}

#[test]
fn several_packets_in_one_buffer() {
    let mut decoder = Decoder::with_version(V5, MAX_PACKET_SIZE);
    let mut buf = BytesMut::from(&hex("C0 00 40 02 00 01 E0 00 D0")[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(Some(Packet::PingReq)));
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Packet::PubAck(Ack::new(id(1)))))
    );
    assert_eq!(
        decoder.decode(&mut buf),
        Ok(Some(Packet::Disconnect(Disconnect::default())))
    );
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(&buf[..], &[0xD0]);
}

// ---------------------------------------------------------------------------------------------
// Malformed packets: one or more per DecodeError variant the wire can reach
// ---------------------------------------------------------------------------------------------

const MALFORMED: ReasonCode = ReasonCode::MalformedPacket;
const PROTOCOL: ReasonCode = ReasonCode::ProtocolError;

#[test]
fn malformed_var_int() {
    // [MQTT-1.5.5-1]: five bytes, and a non-minimal encoding.
    let v = Side::Version(V3_1_1);
    malformed(
        v,
        "30 FF FF FF FF 01",
        DecodeError::MalformedVarInt,
        MALFORMED,
    );
    malformed(v, "30 FF FF FF FF", DecodeError::MalformedVarInt, MALFORMED);
    malformed(v, "C0 80 00", DecodeError::MalformedVarInt, MALFORMED);
    // Property Length and Subscription Identifier are Variable Byte Integers too.
    malformed(
        Side::Version(V5),
        "40 05 00 01 00 80 00",
        DecodeError::MalformedVarInt,
        MALFORMED,
    );
}

#[test]
fn malformed_packet_type() {
    // [MQTT-2.1.2]: type 0 is reserved; AUTH (15) does not exist before 5.0.
    malformed(
        Side::Version(V3_1_1),
        "00 00",
        DecodeError::InvalidPacketType(0),
        MALFORMED,
    );
    malformed(
        Side::Server,
        "00 00",
        DecodeError::InvalidPacketType(0),
        MALFORMED,
    );
    malformed(
        Side::Version(V3_1_1),
        "F0 00",
        DecodeError::InvalidPacketType(15),
        MALFORMED,
    );
    malformed(
        Side::Version(V3_1),
        "F0 00",
        DecodeError::InvalidPacketType(15),
        MALFORMED,
    );
}

#[test]
fn malformed_header_flags() {
    // [MQTT-2.1.3-1]: reserved flags must be as specified.
    let v = Side::Version(V5);
    let flags = |packet_type, flags| DecodeError::InvalidHeaderFlags { packet_type, flags };
    malformed(v, "41 02 00 01", flags(PacketType::PubAck, 1), MALFORMED);
    malformed(v, "60 02 00 01", flags(PacketType::PubRel, 0), MALFORMED); // [MQTT-3.6.1-1]
    malformed(
        v,
        "80 06 00 01 00 01 61 00",
        flags(PacketType::Subscribe, 0),
        MALFORMED,
    ); // [MQTT-3.8.1-1]
    malformed(
        v,
        "A0 05 00 01 00 01 61",
        flags(PacketType::Unsubscribe, 0),
        MALFORMED,
    ); // [MQTT-3.10.1-1]
    malformed(v, "C8 00", flags(PacketType::PingReq, 8), MALFORMED);
    malformed(
        Side::Server,
        "12 00",
        flags(PacketType::Connect, 2),
        MALFORMED,
    );
}

#[test]
fn malformed_publish_flags() {
    // [MQTT-3.3.1-4]: QoS 3.
    malformed(
        Side::Version(V3_1_1),
        "36 07 00 01 61 00 01 68 69",
        DecodeError::InvalidQoS,
        MALFORMED,
    );
    // [MQTT-3.3.1-2]: DUP on QoS 0.
    malformed(
        Side::Version(V3_1_1),
        "38 03 00 01 61",
        DecodeError::DupOnQoS0,
        MALFORMED,
    );
}

#[test]
fn malformed_truncated() {
    // A field running past the Remaining Length (1.5.4: a string of 5 bytes in 2).
    let v = Side::Version(V3_1_1);
    malformed(v, "30 04 00 05 61 62", DecodeError::Truncated, MALFORMED);
    // A QoS 1 PUBLISH without room for its Packet Identifier.
    malformed(v, "32 04 00 01 61 00", DecodeError::Truncated, MALFORMED);
    // PUBACK with one byte of packet identifier.
    malformed(v, "40 01 00", DecodeError::Truncated, MALFORMED);
    // 5.0 CONNACK without Property Length.
    malformed(
        Side::Version(V5),
        "20 02 00 00",
        DecodeError::Truncated,
        MALFORMED,
    );
    // 5.0 AUTH with a reason code but no Property Length (3.15.2.2.1).
    malformed(
        Side::Version(V5),
        "F0 01 18",
        DecodeError::Truncated,
        MALFORMED,
    );
    // A Property Length beyond the packet.
    malformed(
        Side::Version(V5),
        "40 05 00 01 00 05 1F",
        DecodeError::Truncated,
        MALFORMED,
    );
    // SUBACK without any reason code ([MQTT-3.9.3-1]: one per filter).
    malformed(v, "90 02 00 01", DecodeError::Truncated, MALFORMED);
    // 5.0 PUBLISH ending before its Property Length (3.3.2.3.1), at QoS 0 and 1, also with an
    // empty topic: the missing length is not read as an empty property block.
    let v5 = Side::Version(V5);
    malformed(v5, "30 03 00 01 61", DecodeError::Truncated, MALFORMED);
    malformed(
        v5,
        "32 05 00 01 61 00 01",
        DecodeError::Truncated,
        MALFORMED,
    );
    malformed(v5, "30 02 00 00", DecodeError::Truncated, MALFORMED);
    // A Property Length running past the packet, and a truncated property in it.
    malformed(v5, "30 04 00 01 61 01", DecodeError::Truncated, MALFORMED);
    malformed(
        v5,
        "30 05 00 01 61 02 23",
        DecodeError::Truncated,
        MALFORMED,
    );
}

#[test]
fn malformed_trailing_bytes() {
    // Remaining Length 0 for PINGREQ (3.12.1), PINGRESP, 3.x DISCONNECT (3.14.1).
    let v = Side::Version(V3_1_1);
    malformed(v, "C0 01 00", DecodeError::TrailingBytes(1), MALFORMED);
    malformed(v, "D0 02 00 00", DecodeError::TrailingBytes(2), MALFORMED);
    malformed(v, "E0 01 00", DecodeError::TrailingBytes(1), MALFORMED);
    // 3.x PUBACK and UNSUBACK are Remaining Length 2.
    malformed(
        v,
        "40 03 00 01 00",
        DecodeError::TrailingBytes(1),
        MALFORMED,
    );
    malformed(
        v,
        "B0 03 00 01 00",
        DecodeError::TrailingBytes(1),
        MALFORMED,
    );
    // CONNACK 3.1.1 is Remaining Length 2.
    malformed(
        v,
        "20 03 00 00 00",
        DecodeError::TrailingBytes(1),
        MALFORMED,
    );
    // CONNECT with a byte after the client identifier.
    malformed(
        Side::Server,
        "10 10 00 04 4D 51 54 54 04 02 00 3C 00 03 61 62 63 00",
        DecodeError::TrailingBytes(1),
        MALFORMED,
    );
}

#[test]
fn malformed_strings() {
    let v = Side::Version(V3_1_1);
    // [MQTT-1.5.4-1]: 0xFF is never UTF-8; ED A0 80 encodes the surrogate U+D800.
    malformed(v, "30 03 00 01 FF", DecodeError::InvalidUtf8, MALFORMED);
    malformed(
        v,
        "30 05 00 03 ED A0 80",
        DecodeError::InvalidUtf8,
        MALFORMED,
    );
    // [MQTT-1.5.4-2]: U+0000.
    malformed(v, "30 03 00 01 00", DecodeError::NullCharacter, MALFORMED);
    // In a user property too.
    malformed(
        Side::Version(V5),
        "40 0B 00 01 00 07 26 00 01 00 00 01 62",
        DecodeError::NullCharacter,
        MALFORMED,
    );
}

#[test]
fn malformed_connect_protocol() {
    let unsupported = ReasonCode::UnsupportedProtocolVersion;
    // [MQTT-3.1.2-1]: "MQTX".
    malformed(
        Side::Server,
        "10 0F 00 04 4D 51 54 58 04 02 00 3C 00 03 61 62 63",
        DecodeError::InvalidProtocolName,
        unsupported,
    );
    // "MQIsdp" with level 4 and "MQTT" with level 3 do not go together.
    malformed(
        Side::Server,
        "10 11 00 06 4D 51 49 73 64 70 04 02 00 3C 00 03 61 62 63",
        DecodeError::InvalidProtocolName,
        unsupported,
    );
    malformed(
        Side::Server,
        "10 0F 00 04 4D 51 54 54 03 02 00 3C 00 03 61 62 63",
        DecodeError::InvalidProtocolName,
        unsupported,
    );
    // [MQTT-3.1.2-2]: level 6.
    malformed(
        Side::Server,
        "10 0F 00 04 4D 51 54 54 06 02 00 3C 00 03 61 62 63",
        DecodeError::UnsupportedProtocolLevel(6),
        unsupported,
    );
}

#[test]
fn malformed_connect_flags() {
    let connect = |flags: &str| format!("10 0F 00 04 4D 51 54 54 04 {flags} 00 3C 00 03 61 62 63");
    // [MQTT-3.1.2-3]: the reserved flag.
    malformed(
        Side::Server,
        &connect("03"),
        DecodeError::ConnectReservedFlag,
        MALFORMED,
    );
    // [MQTT-3.1.2-13] (3.1.1) / [MQTT-3.1.2-11]: Will QoS without the Will Flag.
    malformed(
        Side::Server,
        &connect("0A"),
        DecodeError::InvalidWillFlags,
        MALFORMED,
    );
    // [MQTT-3.1.2-15]: Will Retain without the Will Flag.
    malformed(
        Side::Server,
        &connect("22"),
        DecodeError::InvalidWillFlags,
        MALFORMED,
    );
    // [MQTT-3.1.2-14]: Will QoS 3.
    malformed(
        Side::Server,
        &connect("1E"),
        DecodeError::InvalidWillFlags,
        MALFORMED,
    );
    // [MQTT-3.1.2-22]: a password without a user name in 3.1.1.
    malformed(
        Side::Server,
        &connect("42"),
        DecodeError::PasswordWithoutUsername,
        MALFORMED,
    );
}

#[test]
fn malformed_will_topic() {
    // A will topic is a topic name: no wildcards [MQTT-3.3.2-2], not empty [MQTT-4.7.3-1].
    malformed(
        Side::Server,
        "10 13 00 04 4D 51 54 54 04 06 00 3C 00 01 61 00 01 23 00 01 78",
        DecodeError::WildcardInTopicName,
        ReasonCode::TopicNameInvalid,
    );
    malformed(
        Side::Server,
        "10 12 00 04 4D 51 54 54 04 06 00 3C 00 01 61 00 00 00 01 78",
        DecodeError::EmptyTopicName,
        PROTOCOL,
    );
}

#[test]
fn connection_state_errors() {
    // [MQTT-3.1.0-1]: the first packet must be CONNECT.
    malformed(
        Side::Server,
        "30 05 00 01 61 68 69",
        DecodeError::ExpectedConnect(PacketType::Publish),
        PROTOCOL,
    );
    malformed(
        Side::Server,
        "C0 00",
        DecodeError::ExpectedConnect(PacketType::PingReq),
        PROTOCOL,
    );
    // [MQTT-3.1.0-2]: a CONNECT on a connection whose version is known.
    malformed(
        Side::Version(V5),
        "10 0F 00 04 4D 51 54 54 04 02 00 3C 00 03 61 62 63",
        DecodeError::UnexpectedPacket {
            packet_type: PacketType::Connect,
            version: V5,
        },
        PROTOCOL,
    );
}

#[test]
fn malformed_connack() {
    // [MQTT-3.2.2-1]: reserved acknowledge flags.
    malformed(
        Side::Version(V3_1_1),
        "20 02 02 00",
        DecodeError::ConnAckReservedFlags,
        MALFORMED,
    );
    malformed(
        Side::Version(V5),
        "20 03 80 00 00",
        DecodeError::ConnAckReservedFlags,
        MALFORMED,
    );
    // MQTT 3.1 has no Session Present: the whole byte is reserved.
    malformed(
        Side::Version(V3_1),
        "20 02 01 00",
        DecodeError::ConnAckReservedFlags,
        MALFORMED,
    );
    // [MQTT-3.2.2-6] (5.0) / [MQTT-3.2.2-4] (3.1.1): Session Present on a refusal.
    malformed(
        Side::Version(V3_1_1),
        "20 02 01 05",
        DecodeError::SessionPresentOnError,
        PROTOCOL,
    );
    malformed(
        Side::Version(V5),
        "20 03 01 87 00",
        DecodeError::SessionPresentOnError,
        PROTOCOL,
    );
    // 3.2.2.3: return code 6 does not exist.
    malformed(
        Side::Version(V3_1_1),
        "20 02 00 06",
        DecodeError::InvalidReasonCode {
            packet: PacketType::ConnAck,
            code: 6,
        },
        MALFORMED,
    );
}

#[test]
fn malformed_packet_identifier() {
    // [MQTT-2.2.1-3]: a Packet Identifier of 0.
    let v = Side::Version(V3_1_1);
    malformed(v, "40 02 00 00", DecodeError::ZeroPacketId, PROTOCOL);
    malformed(
        v,
        "32 05 00 01 61 00 00",
        DecodeError::ZeroPacketId,
        PROTOCOL,
    );
    malformed(
        v,
        "82 06 00 00 00 01 61 00",
        DecodeError::ZeroPacketId,
        PROTOCOL,
    );
}

#[test]
fn malformed_publish_topic() {
    // [MQTT-3.3.2-2]: wildcards in a topic name.
    malformed(
        Side::Version(V3_1_1),
        "30 05 00 03 61 2F 23",
        DecodeError::WildcardInTopicName,
        ReasonCode::TopicNameInvalid,
    );
    malformed(
        Side::Version(V5),
        "30 06 00 03 2B 2F 61 00",
        DecodeError::WildcardInTopicName,
        ReasonCode::TopicNameInvalid,
    );
    // [MQTT-4.7.3-1]: empty topic name in 3.1.1; in 5.0 without a Topic Alias [MQTT-3.3.2-1].
    malformed(
        Side::Version(V3_1_1),
        "30 02 00 00",
        DecodeError::EmptyTopicName,
        PROTOCOL,
    );
    malformed(
        Side::Version(V5),
        "30 03 00 00 00",
        DecodeError::EmptyTopicName,
        PROTOCOL,
    );
}

#[test]
fn malformed_subscribe() {
    let v3 = Side::Version(V3_1_1);
    let v5 = Side::Version(V5);
    // [MQTT-4.7.3-1]: an empty topic filter.
    malformed(
        v3,
        "82 05 00 01 00 00 01",
        DecodeError::EmptyTopicFilter,
        MALFORMED,
    );
    malformed(
        v3,
        "A2 04 00 01 00 00",
        DecodeError::EmptyTopicFilter,
        MALFORMED,
    );
    // [MQTT-3.8.3-2]: no topic filter at all.
    malformed(v3, "82 02 00 01", DecodeError::EmptySubscribe, PROTOCOL);
    malformed(v5, "82 03 00 01 00", DecodeError::EmptySubscribe, PROTOCOL);
    // [MQTT-3.10.3-2]
    malformed(v3, "A2 02 00 01", DecodeError::EmptyUnsubscribe, PROTOCOL);
    malformed(
        v5,
        "A2 03 00 01 00",
        DecodeError::EmptyUnsubscribe,
        PROTOCOL,
    );
    // [MQTT-3.8.3-5]: reserved option bits; 3.1.1 bits 2-7 ([MQTT-3-8.3-4] in 3.1.1).
    malformed(
        v3,
        "82 06 00 01 00 01 61 04",
        DecodeError::SubscriptionOptionsReserved,
        MALFORMED,
    );
    malformed(
        v5,
        "82 07 00 01 00 00 01 61 40",
        DecodeError::SubscriptionOptionsReserved,
        MALFORMED,
    );
    // Requested QoS 3 [MQTT-3.8.3-4].
    malformed(
        v3,
        "82 06 00 01 00 01 61 03",
        DecodeError::InvalidQoS,
        MALFORMED,
    );
    // [MQTT-3.8.3-6] (5.0 3.8.3.1): Retain Handling 3.
    malformed(
        v5,
        "82 07 00 01 00 00 01 61 30",
        DecodeError::InvalidRetainHandling,
        PROTOCOL,
    );
}

#[test]
fn malformed_properties() {
    let v5 = Side::Version(V5);
    // 2.2.2.2: identifier 0x05 is not defined.
    malformed(
        v5,
        "40 06 00 01 00 02 05 00",
        DecodeError::UnknownProperty(0x05),
        MALFORMED,
    );
    // A multi-byte identifier is not defined either.
    malformed(
        v5,
        "40 06 00 01 00 02 80 01",
        DecodeError::UnknownProperty(0x80),
        MALFORMED,
    );
    // 2.2.2.2: Topic Alias is not a PUBACK property.
    malformed(
        v5,
        "40 07 00 01 00 03 23 00 01",
        DecodeError::PropertyNotAllowed {
            property: 0x23,
            packet: PacketType::PubAck,
        },
        MALFORMED,
    );
    // A will-only property in the CONNECT properties.
    malformed(
        Side::Server,
        "10 12 00 04 4D 51 54 54 05 02 00 3C 05 18 00 00 00 01 00 00",
        DecodeError::PropertyNotAllowed {
            property: 0x18,
            packet: PacketType::Connect,
        },
        MALFORMED,
    );
    // 3.4.2.2.2: the Reason String twice.
    malformed(
        v5,
        "40 0C 00 01 00 08 1F 00 01 61 1F 00 01 62",
        DecodeError::DuplicateProperty(0x1F),
        PROTOCOL,
    );
    // 3.3.2.3.2 ... a single Topic Alias in a PUBLISH.
    malformed(
        v5,
        "30 0A 00 01 61 06 23 00 01 23 00 02",
        DecodeError::DuplicateProperty(0x23),
        PROTOCOL,
    );
    // 3.2.2.3.3: Receive Maximum 0 is a Protocol Error.
    malformed(
        v5,
        "20 06 00 00 03 21 00 00",
        DecodeError::InvalidPropertyValue(0x21),
        PROTOCOL,
    );
    // 3.2.2.3.4: Maximum QoS 2 is a Protocol Error.
    malformed(
        v5,
        "20 05 00 00 02 24 02",
        DecodeError::InvalidPropertyValue(0x24),
        PROTOCOL,
    );
    // 3.1.2.11.4: Maximum Packet Size 0.
    malformed(
        Side::Server,
        "10 12 00 04 4D 51 54 54 05 02 00 3C 05 27 00 00 00 00 00 00",
        DecodeError::InvalidPropertyValue(0x27),
        PROTOCOL,
    );
    // 3.1.2.11.7: Request Problem Information other than 0 or 1.
    malformed(
        Side::Server,
        "10 0F 00 04 4D 51 54 54 05 02 00 3C 02 17 02 00 00",
        DecodeError::InvalidPropertyValue(0x17),
        PROTOCOL,
    );
    // 3.3.2.3.4: Topic Alias 0; 3.3.2.3.8: Subscription Identifier 0.
    malformed(
        v5,
        "30 07 00 01 61 03 23 00 00",
        DecodeError::InvalidPropertyValue(0x23),
        PROTOCOL,
    );
    malformed(
        v5,
        "30 06 00 01 61 02 0B 00",
        DecodeError::InvalidPropertyValue(0x0B),
        PROTOCOL,
    );
    // 3.3.2.3.2: Payload Format Indicator 2.
    malformed(
        v5,
        "30 06 00 01 61 02 01 02",
        DecodeError::InvalidPropertyValue(0x01),
        PROTOCOL,
    );
    // 3.15.2.2.3: Authentication Data without Authentication Method.
    malformed(
        v5,
        "F0 06 18 04 16 00 01 AA",
        DecodeError::AuthDataWithoutMethod,
        PROTOCOL,
    );
    // [MQTT-3.3.2-14]: a wildcard in the Response Topic.
    malformed(
        v5,
        "30 09 00 01 61 05 08 00 02 61 2B",
        DecodeError::WildcardInResponseTopic,
        PROTOCOL,
    );
}

#[test]
fn malformed_reason_codes() {
    let v5 = Side::Version(V5);
    let invalid = |packet, code| DecodeError::InvalidReasonCode { packet, code };
    // 3.4.2.1: 0x04 is a DISCONNECT code, not a PUBACK one.
    malformed(
        v5,
        "40 03 00 01 04",
        invalid(PacketType::PubAck, 0x04),
        MALFORMED,
    );
    // 3.6.2.1: PUBREL allows only 0x00 and 0x92.
    malformed(
        v5,
        "62 03 00 01 80",
        invalid(PacketType::PubRel, 0x80),
        MALFORMED,
    );
    // 2.4: 0x03 is no reason code at all.
    malformed(
        v5,
        "E0 01 03",
        invalid(PacketType::Disconnect, 0x03),
        MALFORMED,
    );
    malformed(
        v5,
        "F0 02 01 00",
        invalid(PacketType::Auth, 0x01),
        MALFORMED,
    );
    malformed(
        v5,
        "20 03 00 10 00",
        invalid(PacketType::ConnAck, 0x10),
        MALFORMED,
    );
    malformed(
        v5,
        "90 04 00 01 00 11",
        invalid(PacketType::SubAck, 0x11),
        MALFORMED,
    );
    malformed(
        v5,
        "B0 04 00 01 00 02",
        invalid(PacketType::UnsubAck, 0x02),
        MALFORMED,
    );
    // 3.x SUBACK: 3.1.1 allows 0x00-0x02 and 0x80 [MQTT-3.9.3-2]; 3.1 has no 0x80.
    malformed(
        Side::Version(V3_1_1),
        "90 03 00 01 87",
        invalid(PacketType::SubAck, 0x87),
        MALFORMED,
    );
    malformed(
        Side::Version(V3_1),
        "90 03 00 01 80",
        invalid(PacketType::SubAck, 0x80),
        MALFORMED,
    );
}

// ---------------------------------------------------------------------------------------------
// Encode errors: never a silent drop, nothing written
// ---------------------------------------------------------------------------------------------

fn encode_err(packet: Packet, version: ProtocolVersion) -> EncodeError {
    let mut out = BytesMut::from(&b"keep"[..]);
    let err = packet.encode(version, &mut out).unwrap_err();
    assert_eq!(&out[..], b"keep", "nothing written on error");
    assert_eq!(packet.encoded_len(version), Err(err.clone()));
    err
}

#[test]
fn encode_v5_only_fields_for_3x() {
    let mut p = publish(QoS::AtMostOnce, None, b"x");
    p.properties.message_expiry_interval = Some(5);
    assert_eq!(
        encode_err(Packet::Publish(p), V3_1_1),
        EncodeError::V5Only {
            field: "message_expiry_interval",
            version: V3_1_1
        }
    );
    let mut c = connect(V3_1, "a");
    c.properties.receive_maximum = NonZeroU16::new(5);
    assert_eq!(
        encode_err(Packet::from(c), V3_1),
        EncodeError::V5Only {
            field: "receive_maximum",
            version: V3_1
        }
    );
    let mut s1 = sub("a", QoS::AtLeastOnce);
    s1.options.no_local = true;
    let subscribe = Subscribe {
        packet_id: id(1),
        properties: Default::default(),
        subscriptions: tern_codec::smallvec::smallvec![s1],
    };
    assert_eq!(
        encode_err(Packet::Subscribe(subscribe), V3_1_1),
        EncodeError::V5Only {
            field: "no_local",
            version: V3_1_1
        }
    );
    let unsuback = UnsubAck {
        packet_id: id(1),
        properties: Default::default(),
        reason_codes: vec![ReasonCode::Success],
    };
    assert_eq!(
        encode_err(Packet::UnsubAck(unsuback), V3_1_1),
        EncodeError::V5Only {
            field: "reason_codes",
            version: V3_1_1
        }
    );
    assert_eq!(
        encode_err(Packet::Auth(Auth::default()), V3_1_1),
        EncodeError::PacketNotInVersion {
            packet_type: PacketType::Auth,
            version: V3_1_1
        }
    );
}

#[test]
fn encode_reason_codes_checked() {
    let ack = Ack {
        reason_code: ReasonCode::NotAuthorized,
        ..Ack::new(id(1))
    };
    assert_eq!(
        encode_err(Packet::PubAck(ack.clone()), V3_1_1),
        EncodeError::ReasonCodeNotAllowed {
            packet: PacketType::PubAck,
            code: ReasonCode::NotAuthorized,
            version: V3_1_1
        }
    );
    // Not allowed in PUBREL even in 5.0.
    assert!(matches!(
        encode_err(Packet::PubRel(ack), V5),
        EncodeError::ReasonCodeNotAllowed { .. }
    ));
    // A CONNACK reason without a 3.x return code.
    let connack = ConnAck {
        reason_code: ReasonCode::Banned,
        ..ConnAck::default()
    };
    assert!(matches!(
        encode_err(Packet::from(connack), V3_1_1),
        EncodeError::ReasonCodeNotAllowed { .. }
    ));
    let disconnect = Disconnect {
        reason_code: ReasonCode::ServerShuttingDown,
        ..Disconnect::default()
    };
    assert!(matches!(
        encode_err(Packet::Disconnect(disconnect), V3_1_1),
        EncodeError::ReasonCodeNotAllowed { .. }
    ));
}

#[test]
fn encode_publish_rules() {
    // [MQTT-2.2.1-2]: packet identifier iff QoS > 0.
    assert_eq!(
        encode_err(Packet::Publish(publish(QoS::AtLeastOnce, None, b"")), V5),
        EncodeError::PacketIdMismatch
    );
    assert_eq!(
        encode_err(Packet::Publish(publish(QoS::AtMostOnce, Some(1), b"")), V5),
        EncodeError::PacketIdMismatch
    );
    // [MQTT-3.3.1-2]
    let mut p = publish(QoS::AtMostOnce, None, b"");
    p.dup = true;
    assert_eq!(
        encode_err(Packet::Publish(p), V3_1_1),
        EncodeError::DupOnQoS0
    );
    // [MQTT-3.3.2-2], [MQTT-4.7.3-1]
    let mut p = publish(QoS::AtMostOnce, None, b"");
    p.topic = s("a/+");
    assert!(matches!(
        encode_err(Packet::Publish(p), V5),
        EncodeError::InvalidValue(_)
    ));
    let mut p = publish(QoS::AtMostOnce, None, b"");
    p.topic = MqttString::new();
    assert!(matches!(
        encode_err(Packet::Publish(p.clone()), V5),
        EncodeError::InvalidValue(_)
    ));
    assert!(matches!(
        encode_err(Packet::Publish(p), V3_1_1),
        EncodeError::InvalidValue(_)
    ));
}

#[test]
fn encode_lengths_checked() {
    let mut c = connect(V3_1_1, "a");
    c.username = Some(s("u"));
    c.password = Some(Bytes::from(vec![0; 65_536]));
    assert_eq!(
        encode_err(Packet::from(c), V3_1_1),
        EncodeError::BinaryTooLong {
            field: "password",
            len: 65_536
        }
    );
    let subscribe = Subscribe {
        packet_id: id(1),
        properties: SubscribeProperties {
            subscription_identifier: NonZeroU32::new(268_435_456),
            ..Default::default()
        },
        subscriptions: tern_codec::smallvec::smallvec![sub("a", QoS::AtMostOnce)],
    };
    assert!(matches!(
        encode_err(Packet::Subscribe(subscribe), V5),
        EncodeError::InvalidValue(_)
    ));
    // Remaining Length over 268,435,455: 5 bytes of topic plus 268,435,450 of payload is
    // exactly the maximum, one more is too large. The zeroed buffer is never touched.
    let mut p = publish(QoS::AtMostOnce, None, b"");
    p.payload = Bytes::from(vec![0u8; 268_435_450]);
    assert_eq!(p.encoded_len(V3_1_1), Ok(268_435_460));
    p.payload = Bytes::from(vec![0u8; 268_435_451]);
    assert!(matches!(
        encode_err(Packet::Publish(p), V3_1_1),
        EncodeError::PacketTooLarge(_)
    ));
}

#[test]
fn encode_empty_requests() {
    // [MQTT-3.8.3-2], [MQTT-3.10.3-2]
    let subscribe = Subscribe {
        packet_id: id(1),
        properties: Default::default(),
        subscriptions: tern_codec::smallvec::smallvec![],
    };
    assert_eq!(
        encode_err(Packet::Subscribe(subscribe), V5),
        EncodeError::NoTopicFilters
    );
    let unsubscribe = Unsubscribe {
        packet_id: id(1),
        properties: Default::default(),
        filters: vec![],
    };
    assert_eq!(
        encode_err(Packet::Unsubscribe(unsubscribe), V3_1_1),
        EncodeError::NoTopicFilters
    );
    // Connect with a password but no user name in 3.1.1 [MQTT-3.1.2-22].
    let mut c = connect(V3_1_1, "a");
    c.password = Some(Bytes::from_static(b"p"));
    assert!(matches!(
        encode_err(Packet::from(c), V3_1_1),
        EncodeError::InvalidValue(_)
    ));
}

#[test]
fn struct_encode_api_matches_packet() {
    let p = publish(QoS::ExactlyOnce, Some(9), b"payload");
    let mut a = BytesMut::new();
    let mut b = BytesMut::new();
    p.encode(V5, &mut a).unwrap();
    Packet::Publish(p.clone()).encode(V5, &mut b).unwrap();
    assert_eq!(a, b);
    assert_eq!(p.encoded_len(V5), Ok(a.len()));
    // Exact reservation: encoding into an empty buffer allocates exactly the packet.
    let mut c = BytesMut::new();
    p.encode(V3_1_1, &mut c).unwrap();
    assert_eq!(c.capacity(), c.len());
}
