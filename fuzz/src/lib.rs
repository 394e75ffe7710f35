//! Shared code of the Tern fuzz targets: a [`Packet`] builder over [`Unstructured`] and the
//! checks every codec target makes.
//!
//! The builder makes packets that are valid for MQTT 5.0, or for the version asked when
//! `constrained`; [`v3_obstacles`] says which fields of a 5.0 packet 3.x cannot carry, so the
//! round-trip target can tell an allowed encode error from a bug.

use arbitrary::{Result, Unstructured};
use bytes::{Bytes, BytesMut};
use core::num::{NonZeroU16, NonZeroU32};
use tern_codec::{
    Ack, AckProperties, Auth, AuthProperties, ConnAck, ConnAckProperties, Connect,
    ConnectProperties, DecodeError, Decoder, Disconnect, DisconnectProperties, MAX_PACKET_SIZE,
    MAX_REMAINING_LENGTH, MqttString, Packet, PacketType, PayloadFormat, ProtocolVersion, Publish,
    PublishProperties, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, SubscribeProperties,
    Subscription, SubscriptionOptions, UnsubAck, Unsubscribe, UnsubscribeProperties,
    UserProperties, Will, WillProperties,
};

/// The three versions, in the order the round-trip target picks them.
pub const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];

/// The longest string or binary field the builder makes; longer inputs only slow the fuzzer.
const MAX_FIELD: usize = 48;

// ---------------------------------------------------------------------------------------------
// Field builders
// ---------------------------------------------------------------------------------------------

fn chars(u: &mut Unstructured<'_>, map: impl Fn(char) -> char) -> Result<String> {
    let s: &str = u.arbitrary()?;
    // U+0000 is not allowed in an MQTT string [MQTT-1.5.4-2].
    Ok(s.chars()
        .take(MAX_FIELD)
        .map(|c| if c == '\0' { '\u{FFFD}' } else { map(c) })
        .collect())
}

fn mqtt(s: String) -> MqttString {
    MqttString::try_from(s).expect("the builder makes valid MQTT strings")
}

/// A UTF-8 string (1.5.4), possibly empty.
fn string(u: &mut Unstructured<'_>) -> Result<MqttString> {
    Ok(mqtt(chars(u, |c| c)?))
}

/// A non-empty topic name without wildcards [MQTT-4.7.3-1], [MQTT-3.3.2-2].
fn topic_name(u: &mut Unstructured<'_>) -> Result<MqttString> {
    let mut s = chars(u, |c| if c == '+' || c == '#' { '_' } else { c })?;
    if s.is_empty() {
        s.push('t');
    }
    Ok(mqtt(s))
}

/// A non-empty topic filter [MQTT-4.7.3-1]; its syntax is `tern-topic`'s business.
fn topic_filter(u: &mut Unstructured<'_>) -> Result<MqttString> {
    let mut s = chars(u, |c| c)?;
    if s.is_empty() {
        s.push('#');
    }
    Ok(mqtt(s))
}

fn binary(u: &mut Unstructured<'_>) -> Result<Bytes> {
    let b: &[u8] = u.arbitrary()?;
    Ok(Bytes::copy_from_slice(&b[..b.len().min(MAX_FIELD)]))
}

fn opt<T>(
    u: &mut Unstructured<'_>,
    f: impl FnOnce(&mut Unstructured<'_>) -> Result<T>,
) -> Result<Option<T>> {
    if u.arbitrary()? {
        Ok(Some(f(u)?))
    } else {
        Ok(None)
    }
}

fn nz16(u: &mut Unstructured<'_>) -> Result<NonZeroU16> {
    Ok(NonZeroU16::new(u.int_in_range(1..=u16::MAX)?).unwrap())
}

fn nz32(u: &mut Unstructured<'_>) -> Result<NonZeroU32> {
    Ok(NonZeroU32::new(u.int_in_range(1..=u32::MAX)?).unwrap())
}

/// A Subscription Identifier, 1 to 268,435,455 (3.3.2.3.8).
fn subscription_id(u: &mut Unstructured<'_>) -> Result<NonZeroU32> {
    Ok(NonZeroU32::new(u.int_in_range(1..=MAX_REMAINING_LENGTH)?).unwrap())
}

fn qos(u: &mut Unstructured<'_>) -> Result<QoS> {
    Ok(*u.choose(&[QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])?)
}

fn payload_format(u: &mut Unstructured<'_>) -> Result<PayloadFormat> {
    Ok(*u.choose(&[PayloadFormat::Unspecified, PayloadFormat::Utf8])?)
}

/// A reason code MQTT 5.0 allows in `packet` (2.4).
fn reason_code(u: &mut Unstructured<'_>, packet: PacketType) -> Result<ReasonCode> {
    let codes: Vec<_> = (0..=u8::MAX)
        .filter_map(ReasonCode::from_u8)
        .filter(|c| c.is_allowed_in(packet))
        .collect();
    Ok(*u.choose(&codes)?)
}

fn user_properties(u: &mut Unstructured<'_>) -> Result<UserProperties> {
    let n = u.int_in_range(0..=3)?;
    (0..n).map(|_| Ok((string(u)?, string(u)?))).collect()
}

/// Up to `max` items, at least `min`.
fn list<T>(
    u: &mut Unstructured<'_>,
    min: usize,
    max: usize,
    mut f: impl FnMut(&mut Unstructured<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let n = u.int_in_range(min..=max)?;
    (0..n).map(|_| f(u)).collect()
}

/// Authentication Method and Data: data only with a method (3.1.2.11.10).
fn authentication(u: &mut Unstructured<'_>) -> Result<(Option<MqttString>, Option<Bytes>)> {
    match opt(u, string)? {
        Some(method) => Ok((Some(method), opt(u, binary)?)),
        None => Ok((None, None)),
    }
}

// ---------------------------------------------------------------------------------------------
// Packet builders
// ---------------------------------------------------------------------------------------------

/// The packet types, as [`packet_of_kind`] numbers them.
pub const KINDS: usize = 15;

/// A packet that is valid for MQTT 5.0 (`v5` true) or for 3.x (no properties, Success-only
/// acknowledgements, QoS-only subscription options, no UNSUBACK codes).
pub fn packet(u: &mut Unstructured<'_>, version: ProtocolVersion) -> Result<Packet> {
    let kinds = if version.is_v5() { KINDS } else { KINDS - 1 };
    let kind = u.choose_index(kinds)?;
    packet_of_kind(u, version, kind)
}

/// A packet of kind `kind` (0 CONNECT … 14 AUTH) valid for `version`; AUTH only for 5.0.
pub fn packet_of_kind(
    u: &mut Unstructured<'_>,
    version: ProtocolVersion,
    kind: usize,
) -> Result<Packet> {
    let v5 = version.is_v5();
    Ok(match kind {
        0 => Packet::from(connect(u, version)?),
        1 => Packet::from(connack(u, version)?),
        2 => Packet::Publish(publish(u, v5)?),
        3 => Packet::PubAck(ack(u, v5, PacketType::PubAck)?),
        4 => Packet::PubRec(ack(u, v5, PacketType::PubRec)?),
        5 => Packet::PubRel(ack(u, v5, PacketType::PubRel)?),
        6 => Packet::PubComp(ack(u, v5, PacketType::PubComp)?),
        7 => Packet::Subscribe(subscribe(u, v5)?),
        8 => Packet::SubAck(suback(u, version)?),
        9 => Packet::Unsubscribe(unsubscribe(u, v5)?),
        10 => Packet::UnsubAck(unsuback(u, v5)?),
        11 => Packet::PingReq,
        12 => Packet::PingResp,
        13 => Packet::Disconnect(disconnect(u, v5)?),
        _ => Packet::Auth(auth(u)?),
    })
}

fn connect(u: &mut Unstructured<'_>, version: ProtocolVersion) -> Result<Connect> {
    let v5 = version.is_v5();
    let will = if u.arbitrary()? {
        Some(Will {
            topic: topic_name(u)?,
            payload: binary(u)?,
            qos: qos(u)?,
            retain: u.arbitrary()?,
            properties: if v5 {
                will_properties(u)?
            } else {
                WillProperties::default()
            },
        })
    } else {
        None
    };
    let mut connect = Connect {
        protocol: version,
        clean_start: u.arbitrary()?,
        keep_alive: u.arbitrary()?,
        client_id: string(u)?,
        will,
        username: opt(u, string)?,
        password: opt(u, binary)?,
        properties: if v5 {
            connect_properties(u)?
        } else {
            ConnectProperties::default()
        },
    };
    if !v5 && connect.password.is_some() && connect.username.is_none() {
        // In 3.x a password requires a user name [MQTT-3.1.2-22].
        connect.username = Some(MqttString::new());
    }
    Ok(connect)
}

/// Adjusts a CONNECT for `version`: its protocol, and the Client Identifier rules of 3.x
/// (1 to 23 characters in 3.1; empty only with Clean Session in 3.1.1 [MQTT-3.1.3-7]).
pub fn fit_connect(packet: &mut Packet, version: ProtocolVersion) {
    if let Packet::Connect(c) = packet {
        c.protocol = version;
        if c.client_id.is_empty() {
            match version {
                ProtocolVersion::V3_1 => c.client_id = MqttString::from_static("tern"),
                ProtocolVersion::V3_1_1 => c.clean_start = true,
                _ => {}
            }
        }
    }
}

fn connect_properties(u: &mut Unstructured<'_>) -> Result<ConnectProperties> {
    let (authentication_method, authentication_data) = authentication(u)?;
    Ok(ConnectProperties {
        session_expiry_interval: u.arbitrary()?,
        receive_maximum: opt(u, nz16)?,
        maximum_packet_size: opt(u, nz32)?,
        topic_alias_maximum: u.arbitrary()?,
        request_response_information: u.arbitrary()?,
        request_problem_information: u.arbitrary()?,
        user_properties: user_properties(u)?,
        authentication_method,
        authentication_data,
    })
}

fn will_properties(u: &mut Unstructured<'_>) -> Result<WillProperties> {
    Ok(WillProperties {
        will_delay_interval: u.arbitrary()?,
        payload_format_indicator: opt(u, payload_format)?,
        message_expiry_interval: u.arbitrary()?,
        content_type: opt(u, string)?,
        response_topic: opt(u, topic_name)?,
        correlation_data: opt(u, binary)?,
        user_properties: user_properties(u)?,
    })
}

fn connack(u: &mut Unstructured<'_>, version: ProtocolVersion) -> Result<ConnAck> {
    let reason_code = if version.is_v5() {
        reason_code(u, PacketType::ConnAck)?
    } else {
        ReasonCode::from_v3_connack(u.int_in_range(0..=5)?).unwrap()
    };
    let properties = if version.is_v5() {
        let (authentication_method, authentication_data) = authentication(u)?;
        ConnAckProperties {
            session_expiry_interval: u.arbitrary()?,
            receive_maximum: opt(u, nz16)?,
            maximum_qos: opt(u, |u| Ok(*u.choose(&[QoS::AtMostOnce, QoS::AtLeastOnce])?))?,
            retain_available: u.arbitrary()?,
            maximum_packet_size: opt(u, nz32)?,
            assigned_client_identifier: opt(u, string)?,
            topic_alias_maximum: u.arbitrary()?,
            reason_string: opt(u, string)?,
            user_properties: user_properties(u)?,
            wildcard_subscription_available: u.arbitrary()?,
            subscription_identifiers_available: u.arbitrary()?,
            shared_subscription_available: u.arbitrary()?,
            server_keep_alive: u.arbitrary()?,
            response_information: opt(u, string)?,
            server_reference: opt(u, string)?,
            authentication_method,
            authentication_data,
        }
    } else {
        ConnAckProperties::default()
    };
    let session_present: bool = u.arbitrary()?;
    Ok(ConnAck {
        // 0 on a refused connection [MQTT-3.2.2-4], [MQTT-3.2.2-6]; 3.1 has no such flag.
        session_present: session_present
            && !reason_code.is_error()
            && version != ProtocolVersion::V3_1,
        reason_code,
        properties,
    })
}

fn publish(u: &mut Unstructured<'_>, v5: bool) -> Result<Publish> {
    let qos = qos(u)?;
    let properties = if v5 {
        PublishProperties {
            payload_format_indicator: opt(u, payload_format)?,
            message_expiry_interval: u.arbitrary()?,
            topic_alias: opt(u, nz16)?,
            response_topic: opt(u, topic_name)?,
            correlation_data: opt(u, binary)?,
            user_properties: user_properties(u)?,
            subscription_identifiers: list(u, 0, 3, subscription_id)?,
            content_type: opt(u, string)?,
        }
    } else {
        PublishProperties::default()
    };
    let empty_topic: bool = u.arbitrary()?;
    let topic = if empty_topic && properties.topic_alias.is_some() {
        // Empty only with a Topic Alias [MQTT-3.3.2-1], 3.3.2.3.4.
        MqttString::new()
    } else {
        topic_name(u)?
    };
    let dup: bool = u.arbitrary()?;
    Ok(Publish {
        // DUP only with QoS > 0 [MQTT-3.3.1-2]; a packet identifier exactly then [MQTT-2.2.1-2].
        dup: dup && qos != QoS::AtMostOnce,
        qos,
        retain: u.arbitrary()?,
        topic,
        packet_id: if qos == QoS::AtMostOnce {
            None
        } else {
            Some(nz16(u)?)
        },
        properties,
        payload: binary(u)?,
    })
}

fn ack_properties(u: &mut Unstructured<'_>, v5: bool) -> Result<AckProperties> {
    if !v5 {
        return Ok(AckProperties::default());
    }
    Ok(AckProperties {
        reason_string: opt(u, string)?,
        user_properties: user_properties(u)?,
    })
}

fn ack(u: &mut Unstructured<'_>, v5: bool, packet: PacketType) -> Result<Ack> {
    Ok(Ack {
        packet_id: nz16(u)?,
        reason_code: if v5 {
            reason_code(u, packet)?
        } else {
            ReasonCode::Success
        },
        properties: ack_properties(u, v5)?,
    })
}

fn subscribe(u: &mut Unstructured<'_>, v5: bool) -> Result<Subscribe> {
    Ok(Subscribe {
        packet_id: nz16(u)?,
        properties: if v5 {
            SubscribeProperties {
                subscription_identifier: opt(u, subscription_id)?,
                user_properties: user_properties(u)?,
            }
        } else {
            SubscribeProperties::default()
        },
        // At least one [MQTT-3.8.3-2].
        subscriptions: list(u, 1, 4, |u| {
            let filter = topic_filter(u)?;
            let qos = qos(u)?;
            let options = if v5 {
                SubscriptionOptions {
                    qos,
                    no_local: u.arbitrary()?,
                    retain_as_published: u.arbitrary()?,
                    retain_handling: *u.choose(&[
                        RetainHandling::SendAtSubscribe,
                        RetainHandling::SendIfNew,
                        RetainHandling::DoNotSend,
                    ])?,
                }
            } else {
                SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                }
            };
            Ok(Subscription { filter, options })
        })?
        .into(),
    })
}

fn suback(u: &mut Unstructured<'_>, version: ProtocolVersion) -> Result<SubAck> {
    Ok(SubAck {
        packet_id: nz16(u)?,
        properties: ack_properties(u, version.is_v5())?,
        reason_codes: list(u, 1, 4, |u| match version {
            ProtocolVersion::V5 => reason_code(u, PacketType::SubAck),
            // 3.1: a granted QoS; 3.1.1 adds 0x80 Failure.
            ProtocolVersion::V3_1 => Ok(*u.choose(&[
                ReasonCode::Success,
                ReasonCode::GrantedQoS1,
                ReasonCode::GrantedQoS2,
            ])?),
            _ => Ok(*u.choose(&[
                ReasonCode::Success,
                ReasonCode::GrantedQoS1,
                ReasonCode::GrantedQoS2,
                ReasonCode::UnspecifiedError,
            ])?),
        })?,
    })
}

fn unsubscribe(u: &mut Unstructured<'_>, v5: bool) -> Result<Unsubscribe> {
    Ok(Unsubscribe {
        packet_id: nz16(u)?,
        properties: if v5 {
            UnsubscribeProperties {
                user_properties: user_properties(u)?,
            }
        } else {
            UnsubscribeProperties::default()
        },
        // At least one [MQTT-3.10.3-2].
        filters: list(u, 1, 4, topic_filter)?,
    })
}

fn unsuback(u: &mut Unstructured<'_>, v5: bool) -> Result<UnsubAck> {
    Ok(UnsubAck {
        packet_id: nz16(u)?,
        properties: ack_properties(u, v5)?,
        // 3.x UNSUBACK has no payload.
        reason_codes: if v5 {
            list(u, 1, 4, |u| reason_code(u, PacketType::UnsubAck))?
        } else {
            Vec::new()
        },
    })
}

fn disconnect(u: &mut Unstructured<'_>, v5: bool) -> Result<Disconnect> {
    if !v5 {
        return Ok(Disconnect::default());
    }
    Ok(Disconnect {
        reason_code: reason_code(u, PacketType::Disconnect)?,
        properties: DisconnectProperties {
            session_expiry_interval: u.arbitrary()?,
            reason_string: opt(u, string)?,
            user_properties: user_properties(u)?,
            server_reference: opt(u, string)?,
        },
    })
}

fn auth(u: &mut Unstructured<'_>) -> Result<Auth> {
    if u.arbitrary()? {
        // The bare form: Success without properties, Remaining Length 0 (3.15.2.1).
        return Ok(Auth::default());
    }
    Ok(Auth {
        reason_code: reason_code(u, PacketType::Auth)?,
        properties: AuthProperties {
            // Required in a non-empty AUTH (3.15.2.2.2).
            authentication_method: Some(string(u)?),
            authentication_data: opt(u, binary)?,
            reason_string: opt(u, string)?,
            user_properties: user_properties(u)?,
        },
    })
}

// ---------------------------------------------------------------------------------------------
// What 3.x cannot carry
// ---------------------------------------------------------------------------------------------

/// The fields of `packet` that the 3.x `version` cannot carry; empty when it can be encoded.
pub fn v3_obstacles(packet: &Packet, version: ProtocolVersion) -> Vec<&'static str> {
    let mut found = Vec::new();
    let mut check = |cond: bool, what: &'static str| {
        if cond {
            found.push(what);
        }
    };
    if version.is_v5() {
        return found;
    }
    match packet {
        Packet::Connect(c) => {
            check(
                c.properties != ConnectProperties::default(),
                "CONNECT properties",
            );
            check(
                c.will
                    .as_ref()
                    .is_some_and(|w| w.properties != WillProperties::default()),
                "will properties",
            );
            check(
                c.password.is_some() && c.username.is_none(),
                "password without user name",
            );
        }
        Packet::ConnAck(c) => {
            check(
                c.properties != ConnAckProperties::default(),
                "CONNACK properties",
            );
            check(
                c.reason_code.to_v3_connack().is_none(),
                "CONNACK reason code",
            );
            check(
                version == ProtocolVersion::V3_1 && c.session_present,
                "3.1 session present",
            );
        }
        Packet::Publish(p) => {
            check(
                p.properties != PublishProperties::default(),
                "PUBLISH properties",
            );
            check(p.topic.is_empty(), "empty topic without alias");
        }
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            check(a.properties != AckProperties::default(), "ack properties");
            check(a.reason_code != ReasonCode::Success, "ack reason code");
        }
        Packet::Subscribe(s) => {
            check(
                s.properties != SubscribeProperties::default(),
                "SUBSCRIBE properties",
            );
            check(
                s.subscriptions.iter().any(|s| {
                    s.options
                        != SubscriptionOptions {
                            qos: s.options.qos,
                            ..Default::default()
                        }
                }),
                "5.0 subscription options",
            );
        }
        Packet::SubAck(s) => {
            check(
                s.properties != AckProperties::default(),
                "SUBACK properties",
            );
            let v3 = |c: &ReasonCode| match version {
                ProtocolVersion::V3_1 => c.as_u8() <= 2,
                _ => c.is_v3_suback(),
            };
            check(!s.reason_codes.iter().all(v3), "SUBACK reason code");
        }
        Packet::Unsubscribe(p) => check(
            p.properties != UnsubscribeProperties::default(),
            "UNSUBSCRIBE properties",
        ),
        Packet::UnsubAck(p) => {
            check(
                p.properties != AckProperties::default(),
                "UNSUBACK properties",
            );
            check(!p.reason_codes.is_empty(), "UNSUBACK reason codes");
        }
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => {
            check(
                d.properties != DisconnectProperties::default(),
                "DISCONNECT properties",
            );
            check(
                d.reason_code != ReasonCode::Success,
                "DISCONNECT reason code",
            );
        }
        Packet::Auth(_) => check(true, "AUTH"),
        _ => check(true, "a packet type the builder does not make"),
    }
    found
}

// ---------------------------------------------------------------------------------------------
// Checks
// ---------------------------------------------------------------------------------------------

/// The version to encode `packet` for: a CONNECT carries its own.
fn version_of(packet: &Packet, version: ProtocolVersion) -> ProtocolVersion {
    match packet {
        Packet::Connect(c) => c.protocol,
        _ => version,
    }
}

/// A packet the codec decoded must encode for its version, with `encoded_len` exact, and decode
/// back to itself; that second encoding is byte-identical (canonical form).
pub fn assert_reencodes(packet: &Packet, version: ProtocolVersion) {
    let version = version_of(packet, version);
    let mut first = BytesMut::new();
    if let Err(e) = packet.encode(version, &mut first) {
        panic!("decoded {packet:?} does not encode for {version}: {e}");
    }
    assert_eq!(
        packet.encoded_len(version),
        Ok(first.len()),
        "encoded_len of {packet:?}"
    );
    let again = Packet::decode(version, &first, MAX_PACKET_SIZE);
    assert_eq!(
        again,
        Ok(Some((packet.clone(), first.len()))),
        "re-decoding {first:02X?}"
    );
    let mut second = BytesMut::new();
    packet.encode(version, &mut second).unwrap();
    assert_eq!(first, second, "encoding is not deterministic");
}

/// Decodes `data` with a client-side decoder for `version` until it needs more bytes or fails;
/// every packet must re-encode ([`assert_reencodes`]). The stateless [`Packet::decode`] of the
/// same bytes must re-encode what it decodes, and agree with the decoder on a first packet that
/// is not CONNECT (which a client-side decoder refuses [MQTT-3.1.0-2]).
pub fn decode_stream(version: ProtocolVersion, data: &[u8]) {
    // The stateless decoder takes CONNECT too, which a client-side `Decoder` refuses.
    let stateless = Packet::decode(version, data, MAX_PACKET_SIZE);
    if let Ok(Some((packet, len))) = &stateless {
        assert!(
            *len >= 2 && *len <= data.len(),
            "consumed {len} of {} bytes",
            data.len()
        );
        assert_reencodes(packet, version);
    }
    let mut decoder = Decoder::with_version(version, MAX_PACKET_SIZE);
    let mut buf = BytesMut::from(data);
    let mut first = true;
    loop {
        let before = buf.len();
        let result = decoder.decode(&mut buf);
        let first_type = data.first().map(|b| b >> 4);
        // Not a CONNECT (type 1), which a client-side decoder refuses [MQTT-3.1.0-2].
        if first && first_type != Some(1) {
            let stateless = stateless.clone().map(|o| o.map(|(p, _)| p));
            assert_eq!(result, stateless, "Decoder and Packet::decode disagree");
        }
        first = false;
        match result {
            Ok(Some(packet)) => {
                assert!(buf.len() < before, "a packet without bytes");
                assert_reencodes(&packet, version);
            }
            Ok(None) => {
                assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                assert!(decoder.needed() >= 1, "Ok(None) with needed() = 0");
                break;
            }
            Err(_) => {
                assert_eq!(buf.len(), before, "an error consumed bytes");
                break;
            }
        }
    }
}

/// The outcome of feeding a stream to a server-side decoder.
#[derive(Debug, PartialEq)]
pub struct ServerRun {
    /// The packets decoded, in order.
    pub packets: Vec<Packet>,
    /// The error that stopped decoding, if any.
    pub error: Option<DecodeError>,
    /// The version the CONNECT set.
    pub version: Option<ProtocolVersion>,
}

/// Feeds `stream` to a `Decoder::new(max)`: first in chunks of `chunks` sizes, then the rest at
/// once, decoding after each chunk. Every decoded packet must re-encode.
pub fn run_server(stream: &[u8], chunks: &[usize], max: u32) -> ServerRun {
    let mut decoder = Decoder::new(max);
    let mut buf = BytesMut::new();
    let mut rest = stream;
    let mut chunks = chunks.iter();
    let mut packets = Vec::new();
    loop {
        let n = chunks.next().map_or(rest.len(), |n| (*n).min(rest.len()));
        buf.extend_from_slice(&rest[..n]);
        rest = &rest[n..];
        loop {
            let before = buf.len();
            match decoder.decode(&mut buf) {
                Ok(Some(packet)) => {
                    let version = decoder
                        .version()
                        .expect("a decoded packet sets the version");
                    assert_reencodes(&packet, version);
                    packets.push(packet);
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                    break;
                }
                Err(e) => {
                    assert_eq!(buf.len(), before, "an error consumed bytes");
                    return ServerRun {
                        packets,
                        error: Some(e),
                        version: decoder.version(),
                    };
                }
            }
        }
        if rest.is_empty() {
            return ServerRun {
                packets,
                error: None,
                version: decoder.version(),
            };
        }
    }
}

/// The maximum packet sizes the server target picks from (the high nibble of its first byte).
pub const SERVER_MAX_SIZES: [u32; 4] = [MAX_PACKET_SIZE, 16, 128, 4096];

/// Splits a server target input: byte 0 holds the number of chunk sizes (low nibble) and the
/// maximum packet size (bits 4-5); then one byte per chunk size (1 to 256); then the stream.
pub fn split_server_input(data: &[u8]) -> Option<(Vec<usize>, u32, &[u8])> {
    let (&head, rest) = data.split_first()?;
    let count = usize::from(head & 0x0F);
    let max = SERVER_MAX_SIZES[usize::from(head >> 4) & 3];
    if rest.len() < count {
        return None;
    }
    let (sizes, stream) = rest.split_at(count);
    Some((
        sizes.iter().map(|b| usize::from(*b) + 1).collect(),
        max,
        stream,
    ))
}

/// Builds a packet for a chosen version, encodes it (an error only for what the version cannot
/// carry), decodes it, and checks equality and a byte-identical re-encoding.
pub fn round_trip(u: &mut Unstructured<'_>) -> Result<()> {
    let version = *u.choose(&VERSIONS)?;
    // Half the time a packet made for the version, half the time a 5.0 one.
    let constrained: bool = u.arbitrary()?;
    let build_for = if constrained {
        version
    } else {
        ProtocolVersion::V5
    };
    let mut packet = packet(u, build_for)?;
    fit_connect(&mut packet, version);

    let obstacles = v3_obstacles(&packet, version);
    let mut buf = BytesMut::from(&b"\x5A"[..]);
    match packet.encode(version, &mut buf) {
        Err(e) => {
            assert!(
                !obstacles.is_empty(),
                "{packet:?} does not encode for {version}: {e}"
            );
            assert_eq!(&buf[..], b"\x5A", "a failed encode wrote bytes");
            assert!(
                packet.encoded_len(version).is_err(),
                "encoded_len Ok, encode Err"
            );
        }
        Ok(()) => {
            assert!(
                obstacles.is_empty(),
                "{obstacles:?} silently encoded for {version}: {packet:?}"
            );
            let bytes = buf.split_off(1);
            assert_eq!(packet.encoded_len(version), Ok(bytes.len()));
            let decoded = Packet::decode(version, &bytes, MAX_PACKET_SIZE);
            assert_eq!(
                decoded,
                Ok(Some((packet.clone(), bytes.len()))),
                "bytes {bytes:02X?}"
            );
            let mut again = BytesMut::new();
            packet.encode(version, &mut again).unwrap();
            assert_eq!(bytes, again);
        }
    }
    Ok(())
}

/// Encodes `packet` for `version`, panicking on error (seed generation).
pub fn encode(packet: &Packet, version: ProtocolVersion) -> BytesMut {
    let mut buf = BytesMut::new();
    if let Err(e) = packet.encode(version, &mut buf) {
        panic!("{packet:?} for {version}: {e}");
    }
    buf
}
