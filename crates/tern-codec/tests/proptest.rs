//! Property tests of the wire codec, for MQTT 3.1, 3.1.1 and 5.0.
//!
//! The strategies generate only packets that are valid for the version under test (see
//! [`packet`]); the properties are:
//!
//! - round trip: `decode(encode(p)) == p`, through [`Decoder`] and [`Packet::decode`];
//! - `encoded_len() == encode().len()`;
//! - canonical encoding: decode then encode is byte-identical;
//! - every strict prefix of an encoding is `Ok(None)`, with [`Decoder::needed`] a lower bound
//!   while the fixed header is incomplete and exact once it is;
//! - a concatenation of packets, fed in arbitrary chunks, decodes to the packets in order;
//! - a field that only MQTT 5.0 has is an [`EncodeError`] for 3.x and writes nothing;
//! - a packet larger than the decoder's maximum is `PacketTooLarge` from its fixed header.
//!
//! Case counts are small enough that the whole file runs in a few seconds in debug.

use bytes::{Bytes, BytesMut};
use core::num::{NonZeroU16, NonZeroU32};
use proptest::{collection::vec, option, prelude::*, sample::select, strategy::Union};
use tern_codec::{
    Ack, AckProperties, Auth, AuthProperties, ConnAck, ConnAckProperties, Connect,
    ConnectProperties, DecodeError, Decoder, Disconnect, DisconnectProperties, EncodeError,
    EncodedPublish, Framing, MAX_PACKET_SIZE, MAX_REMAINING_LENGTH, MqttString, Packet, PacketType,
    PayloadFormat, ProtocolVersion, Publish, PublishFlags, PublishProperties, QoS, ReasonCode,
    RetainHandling, SubAck, Subscribe, SubscribeProperties, Subscription, SubscriptionOptions,
    UnsubAck, Unsubscribe, UnsubscribeProperties, Will, WillProperties, framing,
};

const V3_1: ProtocolVersion = ProtocolVersion::V3_1;
const V3_1_1: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// The largest Subscription Identifier, a Variable Byte Integer (3.3.2.3.8).
const MAX_SUBSCRIPTION_ID: u32 = MAX_REMAINING_LENGTH;

/// Shared configuration: a fixed case count, and no regression files written next to the
/// sources (a failure prints its minimal input; add it as a plain `#[test]` below).
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies: strings, binary data, identifiers
// ---------------------------------------------------------------------------------------------

/// Any character an MQTT string may hold: mostly ASCII, often non-ASCII (2-, 3- and 4-byte
/// UTF-8), never U+0000 [MQTT-1.5.4-2]. `char` cannot be a surrogate [MQTT-1.5.4-1].
fn string_char() -> impl Strategy<Value = char> {
    prop_oneof![
        6 => proptest::char::range('a', 'z'),
        1 => Just('/'),
        1 => select(vec!['é', 'ß', '€', '中', '🦜', '\u{7F}', '\u{FEFF}', ' ']),
        2 => any::<char>().prop_map(|c| if c == '\0' { '\u{FFFD}' } else { c }),
    ]
}

/// A character of a topic name: no wildcard `+` or `#` [MQTT-3.3.2-2].
fn topic_char() -> impl Strategy<Value = char> {
    string_char().prop_map(|c| if c == '+' || c == '#' { '_' } else { c })
}

fn mqtt_string_of(
    chars: impl Strategy<Value = char>,
    len: std::ops::Range<usize>,
) -> impl Strategy<Value = MqttString> {
    vec(chars, len).prop_map(|cs| {
        MqttString::try_from(cs.into_iter().collect::<String>()).expect("valid MQTT string")
    })
}

/// A UTF-8 string as MQTT defines it (1.5.4), possibly empty.
fn mqtt_string() -> impl Strategy<Value = MqttString> {
    mqtt_string_of(string_char(), 0..10)
}

/// A non-empty topic name without wildcards [MQTT-4.7.3-1], [MQTT-3.3.2-2].
fn topic_name() -> impl Strategy<Value = MqttString> {
    mqtt_string_of(topic_char(), 1..12)
}

/// A non-empty topic filter [MQTT-4.7.3-1], with or without wildcards. Its syntax is
/// `tern-topic`'s business; the filters are well-formed all the same, and never `$share/`.
fn topic_filter() -> impl Strategy<Value = MqttString> {
    let level = prop_oneof![
        2 => Just("+".to_owned()),
        4 => "[a-z0-9]{0,4}",
        2 => vec(topic_char().prop_filter("one level", |c| *c != '/'), 1..4)
            .prop_map(|cs| cs.into_iter().collect::<String>()),
    ];
    prop_oneof![
        1 => Just(MqttString::from_static("#")),
        2 => topic_name(),
        4 => (vec(level, 1..4), any::<bool>()).prop_map(|(levels, multi)| {
            let mut filter = levels.join("/");
            if filter.is_empty() {
                // Empty levels are fine ("a//b"), an empty filter is not.
                filter.push('+');
            }
            if multi {
                filter.push_str("/#");
            }
            MqttString::try_from(filter).expect("valid filter")
        }),
    ]
}

/// Binary data (1.5.6): password, payloads, correlation and authentication data.
fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..24).prop_map(Bytes::from)
}

/// A packet identifier is non-zero [MQTT-2.2.1-3].
fn packet_id() -> impl Strategy<Value = NonZeroU16> {
    prop_oneof![Just(1u16), Just(u16::MAX), 1..=u16::MAX].prop_map(|n| NonZeroU16::new(n).unwrap())
}

fn non_zero_u16() -> impl Strategy<Value = NonZeroU16> {
    (1..=u16::MAX).prop_map(|n| NonZeroU16::new(n).unwrap())
}

fn non_zero_u32() -> impl Strategy<Value = NonZeroU32> {
    prop_oneof![Just(1u32), Just(u32::MAX), 1..=u32::MAX].prop_map(|n| NonZeroU32::new(n).unwrap())
}

/// A Subscription Identifier, 1 to 268,435,455 (3.3.2.3.8), with the boundaries of each
/// Variable Byte Integer length.
fn subscription_id() -> impl Strategy<Value = NonZeroU32> {
    prop_oneof![
        select(vec![
            1u32,
            127,
            128,
            16_383,
            16_384,
            2_097_151,
            2_097_152,
            MAX_SUBSCRIPTION_ID
        ]),
        1..=MAX_SUBSCRIPTION_ID,
    ]
    .prop_map(|n| NonZeroU32::new(n).unwrap())
}

fn qos() -> impl Strategy<Value = QoS> {
    select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

/// Every reason code MQTT 5.0 defines.
fn all_reason_codes() -> Vec<ReasonCode> {
    (0..=u8::MAX).filter_map(ReasonCode::from_u8).collect()
}

/// A reason code that MQTT 5.0 allows in `packet` (2.4, `ReasonCode::is_allowed_in`).
fn reason_code_in(packet: PacketType) -> impl Strategy<Value = ReasonCode> {
    let codes: Vec<_> = all_reason_codes()
        .into_iter()
        .filter(|c| c.is_allowed_in(packet))
        .collect();
    assert!(!codes.is_empty(), "{packet:?} allows no reason code");
    select(codes)
}

fn user_properties() -> impl Strategy<Value = Vec<(MqttString, MqttString)>> {
    // Names may repeat: a User Property may appear any number of times, in order
    // [MQTT-3.3.2-17], [MQTT-3.3.2-18].
    prop_oneof![
        3 => vec((mqtt_string(), mqtt_string()), 0..4),
        1 => (mqtt_string(), vec(mqtt_string(), 2..4))
            .prop_map(|(name, values)| values.into_iter().map(|v| (name.clone(), v)).collect()),
    ]
}

/// `strategy` in MQTT 5.0, the default (no properties, Success) before it.
fn v5_or_default<T: Default + Clone + core::fmt::Debug + 'static>(
    version: ProtocolVersion,
    strategy: impl Strategy<Value = T> + 'static,
) -> BoxedStrategy<T> {
    if version.is_v5() {
        strategy.boxed()
    } else {
        Just(T::default()).boxed()
    }
}

// ---------------------------------------------------------------------------------------------
// Strategies: properties (MQTT 5.0 only)
// ---------------------------------------------------------------------------------------------

/// An Authentication Method with optional Authentication Data: data without a method is a
/// Protocol Error (3.1.2.11.10).
fn authentication() -> impl Strategy<Value = Option<(MqttString, Option<Bytes>)>> {
    option::of((mqtt_string(), option::of(binary())))
}

fn connect_properties() -> impl Strategy<Value = ConnectProperties> {
    (
        (
            option::of(any::<u32>()),
            option::of(non_zero_u16()),
            option::of(non_zero_u32()),
            option::of(any::<u16>()),
        ),
        (
            option::of(any::<bool>()),
            option::of(any::<bool>()),
            user_properties(),
            authentication(),
        ),
    )
        .prop_map(|((sei, rm, mps, tam), (rri, rpi, user_properties, auth))| {
            let (authentication_method, authentication_data) = split_auth(auth);
            ConnectProperties {
                session_expiry_interval: sei,
                receive_maximum: rm,
                maximum_packet_size: mps,
                topic_alias_maximum: tam,
                request_response_information: rri,
                request_problem_information: rpi,
                user_properties,
                authentication_method,
                authentication_data,
            }
        })
}

fn split_auth(auth: Option<(MqttString, Option<Bytes>)>) -> (Option<MqttString>, Option<Bytes>) {
    match auth {
        Some((method, data)) => (Some(method), data),
        None => (None, None),
    }
}

fn payload_format() -> impl Strategy<Value = PayloadFormat> {
    select(vec![PayloadFormat::Unspecified, PayloadFormat::Utf8])
}

fn will_properties() -> impl Strategy<Value = WillProperties> {
    (
        (
            option::of(any::<u32>()),
            option::of(payload_format()),
            option::of(any::<u32>()),
        ),
        (
            option::of(mqtt_string()),
            // The Response Topic is a topic name [MQTT-3.3.2-13], [MQTT-3.3.2-14].
            option::of(topic_name()),
            option::of(binary()),
            user_properties(),
        ),
    )
        .prop_map(
            |((wdi, pfi, mei), (ct, rt, cd, user_properties))| WillProperties {
                will_delay_interval: wdi,
                payload_format_indicator: pfi,
                message_expiry_interval: mei,
                content_type: ct,
                response_topic: rt,
                correlation_data: cd,
                user_properties,
            },
        )
}

fn connack_properties() -> impl Strategy<Value = ConnAckProperties> {
    (
        (
            option::of(any::<u32>()),
            option::of(non_zero_u16()),
            // Maximum QoS is 0 or 1; 2 is never sent (3.2.2.3.4).
            option::of(select(vec![QoS::AtMostOnce, QoS::AtLeastOnce])),
            option::of(any::<bool>()),
            option::of(non_zero_u32()),
            option::of(mqtt_string()),
        ),
        (
            option::of(any::<u16>()),
            option::of(mqtt_string()),
            user_properties(),
            option::of(any::<bool>()),
            option::of(any::<bool>()),
            option::of(any::<bool>()),
        ),
        (
            option::of(any::<u16>()),
            option::of(mqtt_string()),
            option::of(mqtt_string()),
            authentication(),
        ),
    )
        .prop_map(
            |((sei, rm, mq, ra, mps, aci), (tam, rs, up, wsa, sia, ssa), (ska, ri, sr, auth))| {
                let (authentication_method, authentication_data) = split_auth(auth);
                ConnAckProperties {
                    session_expiry_interval: sei,
                    receive_maximum: rm,
                    maximum_qos: mq,
                    retain_available: ra,
                    maximum_packet_size: mps,
                    assigned_client_identifier: aci,
                    topic_alias_maximum: tam,
                    reason_string: rs,
                    user_properties: up,
                    wildcard_subscription_available: wsa,
                    subscription_identifiers_available: sia,
                    shared_subscription_available: ssa,
                    server_keep_alive: ska,
                    response_information: ri,
                    server_reference: sr,
                    authentication_method,
                    authentication_data,
                }
            },
        )
}

fn publish_properties() -> impl Strategy<Value = PublishProperties> {
    (
        (
            option::of(payload_format()),
            option::of(any::<u32>()),
            option::of(non_zero_u16()),
        ),
        (
            option::of(topic_name()),
            option::of(binary()),
            user_properties(),
            vec(subscription_id(), 0..3),
            option::of(mqtt_string()),
        ),
    )
        .prop_map(
            |((pfi, mei, ta), (rt, cd, up, sids, ct))| PublishProperties {
                payload_format_indicator: pfi,
                message_expiry_interval: mei,
                topic_alias: ta,
                response_topic: rt,
                correlation_data: cd,
                user_properties: up,
                subscription_identifiers: sids,
                content_type: ct,
            },
        )
}

fn ack_properties() -> impl Strategy<Value = AckProperties> {
    (option::of(mqtt_string()), user_properties()).prop_map(|(reason_string, user_properties)| {
        AckProperties {
            reason_string,
            user_properties,
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Strategies: packets
// ---------------------------------------------------------------------------------------------

fn will(version: ProtocolVersion) -> impl Strategy<Value = Will> {
    (
        topic_name(),
        binary(),
        qos(),
        any::<bool>(),
        v5_or_default(version, will_properties()),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| Will {
            topic,
            payload,
            qos,
            retain,
            properties,
        })
}

fn connect(version: ProtocolVersion) -> impl Strategy<Value = Connect> {
    (
        (
            any::<bool>(),
            any::<u16>(),
            mqtt_string(),
            option::of(will(version)),
        ),
        (option::of(mqtt_string()), option::of(binary())),
        v5_or_default(version, connect_properties()),
    )
        .prop_map(
            move |(
                (clean_start, keep_alive, client_id, will),
                (username, password),
                properties,
            )| {
                let mut connect = Connect {
                    protocol: version,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                };
                match version {
                    // 3.1 requires a Client Identifier of 1 to 23 characters (3.1, section 3.1).
                    V3_1 if connect.client_id.is_empty() => {
                        connect.client_id = MqttString::from_static("tern");
                    }
                    // An empty Client Identifier requires Clean Session in 3.1.1 [MQTT-3.1.3-7].
                    V3_1_1 if connect.client_id.is_empty() => connect.clean_start = true,
                    _ => {}
                }
                // In 3.x a password requires a user name [MQTT-3.1.2-22].
                if !version.is_v5() && connect.password.is_some() && connect.username.is_none() {
                    connect.username = Some(MqttString::new());
                }
                connect
            },
        )
}

fn connack(version: ProtocolVersion) -> BoxedStrategy<ConnAck> {
    let reason_code = match version {
        V5 => reason_code_in(PacketType::ConnAck).boxed(),
        // The six 3.x return codes (3.1.1 section 3.2.2.3).
        _ => (0..=5u8)
            .prop_map(|c| ReasonCode::from_v3_connack(c).unwrap())
            .boxed(),
    };
    (
        any::<bool>(),
        reason_code,
        v5_or_default(version, connack_properties()),
    )
        .prop_map(move |(session_present, reason_code, properties)| ConnAck {
            // Session Present is 0 on a refused connection [MQTT-3.2.2-4] (3.1.1),
            // [MQTT-3.2.2-6] (5.0); 3.1 has no Session Present flag.
            session_present: session_present && !reason_code.is_error() && version != V3_1,
            reason_code,
            properties,
        })
        .boxed()
}

fn publish(version: ProtocolVersion) -> impl Strategy<Value = Publish> {
    (
        (qos(), any::<bool>(), any::<bool>(), packet_id()),
        (topic_name(), any::<bool>(), binary()),
        v5_or_default(version, publish_properties()),
    )
        .prop_map(
            |((qos, dup, retain, id), (topic, empty_topic, payload), properties)| {
                let at_least_once = qos != QoS::AtMostOnce;
                Publish {
                    // DUP is 0 for QoS 0 [MQTT-3.3.1-2].
                    dup: dup && at_least_once,
                    qos,
                    retain,
                    // The topic may be empty only with a Topic Alias [MQTT-3.3.2-1], 3.3.2.3.4.
                    topic: if empty_topic && properties.topic_alias.is_some() {
                        MqttString::new()
                    } else {
                        topic
                    },
                    // A packet identifier exactly when QoS > 0 [MQTT-2.2.1-2].
                    packet_id: at_least_once.then_some(id),
                    properties,
                    payload,
                }
            },
        )
}

fn ack(version: ProtocolVersion, packet: PacketType) -> BoxedStrategy<Ack> {
    if version.is_v5() {
        (packet_id(), reason_code_in(packet), ack_properties())
            .prop_map(|(packet_id, reason_code, properties)| Ack {
                packet_id,
                reason_code,
                properties,
            })
            .boxed()
    } else {
        packet_id().prop_map(Ack::new).boxed()
    }
}

fn subscription_options(version: ProtocolVersion) -> BoxedStrategy<SubscriptionOptions> {
    let retain_handling = select(vec![
        RetainHandling::SendAtSubscribe,
        RetainHandling::SendIfNew,
        RetainHandling::DoNotSend,
    ]);
    if version.is_v5() {
        (qos(), any::<bool>(), any::<bool>(), retain_handling)
            .prop_map(
                |(qos, no_local, retain_as_published, retain_handling)| SubscriptionOptions {
                    qos,
                    no_local,
                    retain_as_published,
                    retain_handling,
                },
            )
            .boxed()
    } else {
        // In 3.x only the QoS exists (3.1.1 section 3.8.3.1).
        qos()
            .prop_map(|qos| SubscriptionOptions {
                qos,
                ..SubscriptionOptions::default()
            })
            .boxed()
    }
}

fn subscribe(version: ProtocolVersion) -> impl Strategy<Value = Subscribe> {
    let properties = (option::of(subscription_id()), user_properties()).prop_map(
        |(subscription_identifier, user_properties)| SubscribeProperties {
            subscription_identifier,
            user_properties,
        },
    );
    (
        packet_id(),
        v5_or_default(version, properties),
        // At least one subscription [MQTT-3.8.3-2].
        vec(
            (topic_filter(), subscription_options(version))
                .prop_map(|(filter, options)| Subscription { filter, options }),
            1..4,
        ),
    )
        .prop_map(|(packet_id, properties, subscriptions)| Subscribe {
            packet_id,
            properties,
            subscriptions: subscriptions.into(),
        })
}

fn suback(version: ProtocolVersion) -> impl Strategy<Value = SubAck> {
    let codes = match version {
        V5 => reason_code_in(PacketType::SubAck).boxed(),
        // 3.1 grants a QoS; 3.1.1 adds 0x80 Failure (3.1.1 section 3.9.3).
        V3_1 => select(vec![
            ReasonCode::Success,
            ReasonCode::GrantedQoS1,
            ReasonCode::GrantedQoS2,
        ])
        .boxed(),
        _ => select(
            all_reason_codes()
                .into_iter()
                .filter(|c| c.is_v3_suback())
                .collect::<Vec<_>>(),
        )
        .boxed(),
    };
    (
        packet_id(),
        v5_or_default(version, ack_properties()),
        vec(codes, 1..5),
    )
        .prop_map(|(packet_id, properties, reason_codes)| SubAck {
            packet_id,
            properties,
            reason_codes,
        })
}

fn unsubscribe(version: ProtocolVersion) -> impl Strategy<Value = Unsubscribe> {
    let properties =
        user_properties().prop_map(|user_properties| UnsubscribeProperties { user_properties });
    // At least one topic filter [MQTT-3.10.3-2].
    (
        packet_id(),
        v5_or_default(version, properties),
        vec(topic_filter(), 1..4),
    )
        .prop_map(|(packet_id, properties, filters)| Unsubscribe {
            packet_id,
            properties,
            filters,
        })
}

fn unsuback(version: ProtocolVersion) -> impl Strategy<Value = UnsubAck> {
    // 3.x UNSUBACK has no payload (3.1.1 section 3.11.3); 5.0 has one code per filter.
    let codes = v5_or_default(version, vec(reason_code_in(PacketType::UnsubAck), 1..5));
    (packet_id(), v5_or_default(version, ack_properties()), codes).prop_map(
        |(packet_id, properties, reason_codes)| UnsubAck {
            packet_id,
            properties,
            reason_codes,
        },
    )
}

fn disconnect(version: ProtocolVersion) -> BoxedStrategy<Disconnect> {
    let properties = (
        option::of(any::<u32>()),
        option::of(mqtt_string()),
        user_properties(),
        option::of(mqtt_string()),
    )
        .prop_map(|(sei, rs, up, sr)| DisconnectProperties {
            session_expiry_interval: sei,
            reason_string: rs,
            user_properties: up,
            server_reference: sr,
        });
    v5_or_default(
        version,
        (reason_code_in(PacketType::Disconnect), properties).prop_map(
            |(reason_code, properties)| Disconnect {
                reason_code,
                properties,
            },
        ),
    )
}

fn auth() -> impl Strategy<Value = Auth> {
    let full = (
        reason_code_in(PacketType::Auth),
        mqtt_string(),
        option::of(binary()),
        option::of(mqtt_string()),
        user_properties(),
    )
        .prop_map(
            |(reason_code, method, data, reason_string, user_properties)| Auth {
                reason_code,
                // The Authentication Method is required in AUTH (3.15.2.2.2) unless the packet is
                // the bare Success form with Remaining Length 0 (3.15.2.1).
                properties: AuthProperties {
                    authentication_method: Some(method),
                    authentication_data: data,
                    reason_string,
                    user_properties,
                },
            },
        );
    prop_oneof![1 => Just(Auth::default()), 4 => full]
}

/// Every packet except CONNECT, valid for `version`.
fn packet_after_connect(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    let mut all = vec![
        connack(version).prop_map(Packet::from).boxed(),
        publish(version).prop_map(Packet::Publish).boxed(),
        ack(version, PacketType::PubAck)
            .prop_map(Packet::PubAck)
            .boxed(),
        ack(version, PacketType::PubRec)
            .prop_map(Packet::PubRec)
            .boxed(),
        ack(version, PacketType::PubRel)
            .prop_map(Packet::PubRel)
            .boxed(),
        ack(version, PacketType::PubComp)
            .prop_map(Packet::PubComp)
            .boxed(),
        subscribe(version).prop_map(Packet::Subscribe).boxed(),
        suback(version).prop_map(Packet::SubAck).boxed(),
        unsubscribe(version).prop_map(Packet::Unsubscribe).boxed(),
        unsuback(version).prop_map(Packet::UnsubAck).boxed(),
        Just(Packet::PingReq).boxed(),
        Just(Packet::PingResp).boxed(),
        disconnect(version).prop_map(Packet::Disconnect).boxed(),
    ];
    if version.is_v5() {
        // AUTH exists only in 5.0 (3.15).
        all.push(auth().prop_map(Packet::Auth).boxed());
    }
    Union::new(all).boxed()
}

/// Every packet type, valid for `version`.
fn packet(version: ProtocolVersion) -> BoxedStrategy<Packet> {
    prop_oneof![
        1 => connect(version).prop_map(Packet::from),
        12 => packet_after_connect(version),
    ]
    .boxed()
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn encode(packet: &Packet, version: ProtocolVersion) -> BytesMut {
    let mut buf = BytesMut::new();
    if let Err(e) = packet.encode(version, &mut buf) {
        panic!("encoding {packet:?} for {version}: {e}");
    }
    buf
}

/// A decoder that accepts `packet` as its first packet: a server-side one for CONNECT, which
/// sets the version from the protocol level, a client-side one otherwise.
fn decoder_for(packet: &Packet, version: ProtocolVersion, max: u32) -> Decoder {
    match packet {
        Packet::Connect(_) => Decoder::new(max),
        _ => Decoder::with_version(version, max),
    }
}

/// The fixed header's length: the type byte and a Variable Byte Integer of 1 to 4 bytes.
fn header_len(bytes: &[u8]) -> usize {
    1 + bytes[1..]
        .iter()
        .position(|b| b & 0x80 == 0)
        .expect("complete header")
        + 1
}

// ---------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------

/// Round trip, exact length and canonical re-encoding of one packet.
fn check_round_trip(packet: &Packet, version: ProtocolVersion) -> Result<(), TestCaseError> {
    let bytes = encode(packet, version);
    prop_assert_eq!(packet.encoded_len(version), Ok(bytes.len()), "encoded_len");

    // The Remaining Length is the packet's length after the fixed header (2.1.4).
    let hl = header_len(&bytes);
    prop_assert_eq!(
        framing(&bytes, MAX_PACKET_SIZE),
        Ok(Framing::Complete(tern_codec::FixedHeader {
            packet_type: packet.packet_type(),
            flags: bytes[0] & 0x0F,
            remaining_length: (bytes.len() - hl) as u32,
            header_len: hl as u8,
        }))
    );

    // Stateless decode of a slice.
    let decoded = Packet::decode(version, &bytes, MAX_PACKET_SIZE);
    prop_assert_eq!(decoded, Ok(Some((packet.clone(), bytes.len()))));

    // The incremental decoder consumes exactly the packet.
    let mut buf = bytes.clone();
    let mut decoder = decoder_for(packet, version, MAX_PACKET_SIZE);
    let decoded = decoder.decode(&mut buf);
    prop_assert_eq!(decoded.as_ref(), Ok(&Some(packet.clone())));
    prop_assert!(buf.is_empty(), "{} bytes left over", buf.len());
    if let Packet::Connect(_) = packet {
        // The CONNECT protocol level sets the version of the connection [MQTT-3.1.2-2].
        prop_assert_eq!(decoder.version(), Some(version));
    }

    // The packet structs encode the same bytes as the `Packet` around them.
    let mut direct = BytesMut::new();
    let direct_len = match packet {
        Packet::Connect(p) => p.encode(version, &mut direct).and(p.encoded_len(version)),
        Packet::ConnAck(p) => p.encode(version, &mut direct).and(p.encoded_len(version)),
        Packet::Publish(p) => p.encode(version, &mut direct).and(p.encoded_len(version)),
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            let t = packet.packet_type();
            a.encode(t, version, &mut direct)
                .and(a.encoded_len(t, version))
        }
        Packet::Subscribe(p) => p.encode(version, &mut direct).and(p.encoded_len(version)),
        Packet::SubAck(p) => p.encode(version, &mut direct).and(p.encoded_len(version)),
        Packet::Unsubscribe(p) => p.encode(version, &mut direct).and(p.encoded_len(version)),
        Packet::UnsubAck(p) => p.encode(version, &mut direct).and(p.encoded_len(version)),
        Packet::Disconnect(p) => p.encode(version, &mut direct).and(p.encoded_len(version)),
        Packet::Auth(p) => p.encode(version, &mut direct).and(p.encoded_len(version)),
        _ => Ok(bytes.len()),
    };
    if !direct.is_empty() {
        prop_assert_eq!(direct_len, Ok(bytes.len()));
        prop_assert_eq!(
            &direct[..],
            &bytes[..],
            "struct and Packet encodings differ"
        );
    }

    // Canonical: decoding then encoding gives back the same bytes.
    let decoded = decoded.unwrap().unwrap();
    prop_assert_eq!(
        &encode(&decoded, version)[..],
        &bytes[..],
        "re-encoding differs"
    );
    Ok(())
}

/// Every strict prefix is `Ok(None)` ("need more bytes"), never an error, and leaves the
/// buffer as it was; `needed()` is ≥ 1, and exact once the fixed header is complete.
fn check_prefixes(packet: &Packet, version: ProtocolVersion) -> Result<(), TestCaseError> {
    let bytes = encode(packet, version);
    let hl = header_len(&bytes);
    for k in 0..bytes.len() {
        let mut buf = BytesMut::from(&bytes[..k]);
        let mut decoder = decoder_for(packet, version, MAX_PACKET_SIZE);
        prop_assert_eq!(decoder.decode(&mut buf), Ok(None), "prefix of {} bytes", k);
        prop_assert_eq!(&buf[..], &bytes[..k], "a prefix must not be consumed");
        let needed = decoder.needed();
        prop_assert!(needed >= 1, "needed() = 0 for a prefix of {k} bytes");
        let framed = framing(&bytes[..k], MAX_PACKET_SIZE);
        if k >= hl {
            prop_assert_eq!(needed, bytes.len() - k, "needed() after the fixed header");
            prop_assert_eq!(
                framed,
                Ok(Framing::Incomplete {
                    needed: bytes.len() - k
                })
            );
        } else {
            prop_assert!(needed <= bytes.len() - k, "needed() overshoots: {needed}");
            prop_assert!(
                matches!(framed, Ok(Framing::Incomplete { needed: 1.. })),
                "framing a header prefix: {:?}",
                framed
            );
        }
    }

    // One decoder fed one byte at a time, as a socket may deliver them.
    let mut decoder = decoder_for(packet, version, MAX_PACKET_SIZE);
    let mut buf = BytesMut::new();
    for (i, b) in bytes.iter().enumerate() {
        buf.extend_from_slice(&[*b]);
        let decoded = decoder.decode(&mut buf);
        if i + 1 < bytes.len() {
            prop_assert_eq!(decoded, Ok(None));
        } else {
            prop_assert_eq!(decoded, Ok(Some(packet.clone())));
        }
    }
    Ok(())
}

/// Packets back to back, delivered in chunks of the given sizes, decode in order.
fn check_stream(
    mut decoder: Decoder,
    packets: &[Packet],
    version: ProtocolVersion,
    chunks: &[usize],
) -> Result<(), TestCaseError> {
    let mut stream = BytesMut::new();
    for p in packets {
        p.encode(version, &mut stream).unwrap();
    }
    let mut chunks = chunks.iter().cycle();
    let mut buf = BytesMut::new();
    let mut decoded = Vec::new();
    while !stream.is_empty() {
        let n = (*chunks.next().unwrap()).min(stream.len());
        buf.extend_from_slice(&stream.split_to(n));
        while let Some(p) = decoder
            .decode(&mut buf)
            .map_err(|e| TestCaseError::fail(e.to_string()))?
        {
            decoded.push(p);
        }
    }
    prop_assert!(buf.is_empty());
    prop_assert_eq!(decoded, packets);
    Ok(())
}

/// What keeps a (5.0-shaped) packet from being encoded for 3.x.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Obstacle {
    /// A property or other field that only 5.0 has.
    V5Field,
    /// A reason code that 3.x has no code for.
    ReasonCode,
    /// AUTH.
    PacketType,
    /// A combination 3.x forbids: a password without user name [MQTT-3.1.2-22],
    /// Session Present in 3.1, an empty topic name.
    Invalid,
}

/// Why `packet` cannot be encoded for the 3.x `version`, empty if it can.
fn v3_obstacles(packet: &Packet, version: ProtocolVersion) -> Vec<Obstacle> {
    use Obstacle::*;
    let mut found = Vec::new();
    let mut check = |cond: bool, o: Obstacle| {
        if cond {
            found.push(o);
        }
    };
    match packet {
        Packet::Connect(c) => {
            check(c.properties != ConnectProperties::default(), V5Field);
            check(
                c.will
                    .as_ref()
                    .is_some_and(|w| w.properties != WillProperties::default()),
                V5Field,
            );
            check(c.password.is_some() && c.username.is_none(), Invalid);
        }
        Packet::ConnAck(c) => {
            check(c.properties != ConnAckProperties::default(), V5Field);
            check(c.reason_code.to_v3_connack().is_none(), ReasonCode);
            check(version == V3_1 && c.session_present, Invalid);
        }
        Packet::Publish(p) => {
            check(p.properties != PublishProperties::default(), V5Field);
            // Without a Topic Alias (5.0 only) the topic is not empty [MQTT-4.7.3-1].
            check(p.topic.is_empty(), Invalid);
        }
        Packet::PubAck(a) | Packet::PubRec(a) | Packet::PubRel(a) | Packet::PubComp(a) => {
            check(a.properties != AckProperties::default(), V5Field);
            check(a.reason_code != tern_codec::ReasonCode::Success, ReasonCode);
        }
        Packet::Subscribe(s) => {
            check(s.properties != SubscribeProperties::default(), V5Field);
            check(
                s.subscriptions.iter().any(|s| {
                    s.options
                        != SubscriptionOptions {
                            qos: s.options.qos,
                            ..Default::default()
                        }
                }),
                V5Field,
            );
        }
        Packet::SubAck(s) => {
            check(s.properties != AckProperties::default(), V5Field);
            let v3 = |c: &tern_codec::ReasonCode| match version {
                V3_1 => c.as_u8() <= 2,
                _ => c.is_v3_suback(),
            };
            check(!s.reason_codes.iter().all(v3), ReasonCode);
        }
        Packet::Unsubscribe(u) => check(u.properties != UnsubscribeProperties::default(), V5Field),
        Packet::UnsubAck(u) => {
            check(u.properties != AckProperties::default(), V5Field);
            check(!u.reason_codes.is_empty(), V5Field);
        }
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => {
            check(d.properties != DisconnectProperties::default(), V5Field);
            check(d.reason_code != tern_codec::ReasonCode::Success, ReasonCode);
        }
        Packet::Auth(_) => check(true, PacketType),
        _ => unreachable!("a packet type the strategies do not generate"),
    }
    found
}

/// Whether `e` is the error expected for `obstacle`, reported for `version`.
fn error_matches(e: &EncodeError, obstacle: Obstacle, version: ProtocolVersion) -> bool {
    use EncodeError as E;
    match obstacle {
        Obstacle::V5Field => {
            matches!(e, E::V5Only { version: v, .. } | E::ReasonCodeNotAllowed { version: v, .. } if *v == version)
        }
        Obstacle::ReasonCode => {
            matches!(e, E::ReasonCodeNotAllowed { version: v, .. } | E::V5Only { version: v, .. } if *v == version)
        }
        Obstacle::PacketType => matches!(
            e,
            E::PacketNotInVersion { packet_type: PacketType::Auth, version: v } if *v == version
        ),
        Obstacle::Invalid => {
            matches!(e, E::InvalidValue(_))
                || matches!(e, E::V5Only { version: v, .. } if *v == version)
        }
    }
}

/// A 5.0 packet encoded for 3.x: an error exactly when it carries something 3.x cannot, never a
/// silent drop (the model's rule), and nothing written on error; otherwise it round-trips.
fn check_v5_for_v3(packet: &Packet, version: ProtocolVersion) -> Result<(), TestCaseError> {
    let mut packet = packet.clone();
    if let Packet::Connect(c) = &mut packet {
        c.protocol = version;
    }
    let obstacles = v3_obstacles(&packet, version);
    let sentinel = b"\xAA\xBB";
    let mut buf = BytesMut::from(&sentinel[..]);
    let result = packet.encode(version, &mut buf);
    let len = packet.encoded_len(version);
    if obstacles.is_empty() {
        prop_assert!(result.is_ok(), "{:?}", result);
        prop_assert_eq!(len, Ok(buf.len() - sentinel.len()));
        let skip = matches!(&packet, Packet::Connect(c) if c.client_id.is_empty());
        if !skip {
            let decoded = Packet::decode(version, &buf[sentinel.len()..], MAX_PACKET_SIZE);
            prop_assert_eq!(
                decoded,
                Ok(Some((packet.clone(), buf.len() - sentinel.len())))
            );
        }
    } else {
        let e = match result {
            Ok(()) => {
                return Err(TestCaseError::fail(format!(
                    "{obstacles:?} encoded for {version}"
                )));
            }
            Err(e) => e,
        };
        prop_assert!(
            obstacles.iter().any(|o| error_matches(&e, *o, version)),
            "{:?} for {:?}",
            e,
            obstacles
        );
        prop_assert_eq!(&buf[..], &sentinel[..], "an encode error wrote bytes");
        prop_assert!(
            len.is_err(),
            "encoded_len() is Ok for an unencodable packet"
        );
    }
    Ok(())
}

/// A packet announced larger than the maximum is refused from its fixed header alone, before
/// the body arrives [MQTT-3.1.2-24], [MQTT-3.2.2-15]; one of exactly the maximum is accepted.
fn check_too_large(packet: &Packet, version: ProtocolVersion) -> Result<(), TestCaseError> {
    let bytes = encode(packet, version);
    let size = bytes.len();
    let max = (size - 1) as u32;
    let expected = DecodeError::PacketTooLarge {
        size: size as u64,
        max,
    };
    for fed in [header_len(&bytes), size.min(5)] {
        let mut buf = BytesMut::from(&bytes[..fed]);
        let mut decoder = decoder_for(packet, version, max);
        prop_assert_eq!(decoder.decode(&mut buf), Err(expected.clone()));
        prop_assert_eq!(
            &buf[..],
            &bytes[..fed],
            "the buffer is left as it was on error"
        );
        prop_assert_eq!(framing(&bytes[..fed], max), Err(expected.clone()));
    }
    let mut buf = bytes.clone();
    let mut decoder = decoder_for(packet, version, size as u32);
    prop_assert_eq!(decoder.decode(&mut buf), Ok(Some(packet.clone())));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

macro_rules! per_version {
    ($module:ident, $version:expr) => {
        mod $module {
            use super::*;

            proptest! {
                #![proptest_config(config(256))]

                #[test]
                fn round_trip(p in packet($version)) {
                    check_round_trip(&p, $version)?;
                }
            }

            proptest! {
                #![proptest_config(config(64))]

                #[test]
                fn strict_prefixes_need_more(p in packet($version)) {
                    check_prefixes(&p, $version)?;
                }

                #[test]
                fn too_large_from_header(p in packet($version)) {
                    check_too_large(&p, $version)?;
                }

                /// Packets of one direction back to back, split at arbitrary points.
                #[test]
                fn concatenation_in_order(
                    packets in vec(packet_after_connect($version), 1..6),
                    chunks in vec(1usize..40, 1..6),
                ) {
                    check_stream(Decoder::with_version($version, MAX_PACKET_SIZE), &packets, $version, &chunks)?;
                }

                /// A server decoder: CONNECT first sets the version [MQTT-3.1.0-1],
                /// [MQTT-3.1.2-2], then the rest of the connection follows.
                #[test]
                fn server_stream_after_connect(
                    c in connect($version),
                    rest in vec(packet_after_connect($version), 0..5),
                    chunks in vec(1usize..40, 1..6),
                ) {
                    let mut packets = vec![Packet::from(c)];
                    packets.extend(rest);
                    check_stream(Decoder::new(MAX_PACKET_SIZE), &packets, $version, &chunks)?;
                }

                /// The first packet to a server must be CONNECT [MQTT-3.1.0-1], and a second
                /// CONNECT is a Protocol Error [MQTT-3.1.0-2].
                #[test]
                fn server_wants_one_connect_first(c in connect($version), p in packet_after_connect($version)) {
                    let mut buf = encode(&p, $version);
                    let before = buf.clone();
                    prop_assert_eq!(
                        Decoder::new(MAX_PACKET_SIZE).decode(&mut buf),
                        Err(DecodeError::ExpectedConnect(p.packet_type()))
                    );
                    prop_assert_eq!(buf, before);

                    let c = Packet::from(c);
                    let mut buf = encode(&c, $version);
                    buf.extend_from_slice(&encode(&c, $version));
                    let mut decoder = Decoder::new(MAX_PACKET_SIZE);
                    prop_assert_eq!(decoder.decode(&mut buf), Ok(Some(c)));
                    prop_assert_eq!(
                        decoder.decode(&mut buf),
                        Err(DecodeError::UnexpectedPacket {
                            packet_type: PacketType::Connect,
                            version: $version,
                        })
                    );
                }
            }
        }
    };
}

per_version!(v3_1, V3_1);
per_version!(v3_1_1, V3_1_1);
per_version!(v5, V5);

proptest! {
    #![proptest_config(config(256))]

    /// Encoding a 5.0-only field for 3.x is an error, never a silent drop.
    #[test]
    fn v5_only_fields_are_errors_for_v3(p in packet(V5)) {
        check_v5_for_v3(&p, V3_1_1)?;
        check_v5_for_v3(&p, V3_1)?;
    }
}

proptest! {
    #![proptest_config(config(512))]

    /// A PUBLISH encoded once and written with each sending's flags is, byte for byte, the
    /// PUBLISH encoded with those flags; flags of the other layout (a packet identifier when it
    /// was encoded without, or the reverse) are refused [MQTT-2.2.1-2], and so is DUP at QoS 0
    /// [MQTT-3.3.1-2], with nothing written.
    #[test]
    fn encoded_once_writes_what_encode_with_writes(
        p in publish(V5),
        v5 in any::<bool>(),
        template_qos in qos(),
        (dup, qos, retain, id) in (any::<bool>(), qos(), any::<bool>(), packet_id()),
    ) {
        let version = if v5 { V5 } else { V3_1_1 };
        let mut p = p;
        p.properties.topic_alias = None;
        if p.topic.is_empty() {
            p.topic = MqttString::from_static("t");
        }
        if !v5 {
            p.properties = PublishProperties::default();
        }
        let template = PublishFlags {
            dup: false,
            qos: template_qos,
            retain: false,
            packet_id: (template_qos != QoS::AtMostOnce).then_some(NonZeroU16::MAX),
        };
        let encoded = EncodedPublish::new(&p, template, version).unwrap();
        prop_assert_eq!(encoded.len(), p.encoded_len_with(template, version).unwrap());
        let flags = PublishFlags { dup, qos, retain, packet_id: (qos != QoS::AtMostOnce).then_some(id) };
        let mut expected = BytesMut::new();
        let expected_result = p.encode_with(flags, version, &mut expected);
        let mut got = BytesMut::from(&b"before"[..]);
        let result = encoded.write(flags, &mut got);
        let same_layout = (qos == QoS::AtMostOnce) == (template_qos == QoS::AtMostOnce);
        if same_layout {
            prop_assert_eq!(&result, &expected_result);
        } else {
            prop_assert_eq!(&result, &Err(EncodeError::PacketIdMismatch));
        }
        if result.is_ok() {
            prop_assert_eq!(&got[..6], b"before");
            prop_assert_eq!(&got[6..], &expected[..]);
        } else {
            prop_assert_eq!(&got[..], b"before");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Plain cases
// ---------------------------------------------------------------------------------------------

/// The largest Remaining Length, 268,435,455 (2.1.4), is refused from its five header bytes
/// under any smaller limit, and is otherwise a (long) incomplete packet.
#[test]
fn largest_remaining_length_from_header() {
    let header = [0x30, 0xFF, 0xFF, 0xFF, 0x7F];
    let size = u64::from(MAX_REMAINING_LENGTH) + 5;
    for max in [2, 1024, MAX_PACKET_SIZE - 1] {
        let mut buf = BytesMut::from(&header[..]);
        let mut decoder = Decoder::with_version(V5, max);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(DecodeError::PacketTooLarge { size, max })
        );
        assert_eq!(
            framing(&header, max),
            Err(DecodeError::PacketTooLarge { size, max })
        );
    }
    let mut buf = BytesMut::from(&header[..]);
    let mut decoder = Decoder::with_version(V5, MAX_PACKET_SIZE);
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(decoder.needed(), MAX_REMAINING_LENGTH as usize);
}

/// A Variable Byte Integer has at most four bytes [MQTT-1.5.5-1].
#[test]
fn five_byte_remaining_length_is_malformed() {
    let bytes = [0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01];
    let mut buf = BytesMut::from(&bytes[..]);
    let result = Decoder::with_version(V3_1_1, MAX_PACKET_SIZE).decode(&mut buf);
    assert_eq!(result, Err(DecodeError::MalformedVarInt));
    assert_eq!(&buf[..], &bytes[..]);
}

/// AUTH does not exist before 5.0 (3.15); encoding it for 3.x is an error.
#[test]
fn auth_is_v5_only() {
    for version in [V3_1, V3_1_1] {
        let mut buf = BytesMut::new();
        let e = Packet::Auth(Auth::default())
            .encode(version, &mut buf)
            .unwrap_err();
        assert_eq!(
            e,
            EncodeError::PacketNotInVersion {
                packet_type: PacketType::Auth,
                version
            }
        );
        assert!(buf.is_empty());
    }
}

/// AUTH (type 15) does not exist before 5.0 [MQTT-2.1.2]: the stateless decoder and the
/// incremental one report the same error, from the first byte. Found by `codec_decode_v3_1`
/// (for 3.x, `Decoder` says `InvalidPacketType(15)` while `Packet::decode` says
/// `InvalidHeaderFlags` for `FF F5 90 02` and `Ok(None)` for `F0 D0`).
#[test]
fn auth_type_before_v5_is_invalid_in_both_decoders() {
    for version in [V3_1, V3_1_1] {
        for bytes in [
            &[0xF0, 0x00][..],
            &[0xF0, 0xD0],
            &[0xFF, 0xF5, 0x90, 0x02],
            &[0xFF, 0x00],
        ] {
            let mut buf = BytesMut::from(bytes);
            let incremental = Decoder::with_version(version, MAX_PACKET_SIZE).decode(&mut buf);
            assert_eq!(
                incremental,
                Err(DecodeError::InvalidPacketType(15)),
                "{bytes:02X?}"
            );
            let stateless = Packet::decode(version, bytes, MAX_PACKET_SIZE);
            assert_eq!(
                stateless,
                Err(DecodeError::InvalidPacketType(15)),
                "{bytes:02X?}"
            );
        }
    }
}

/// The Remaining Length is a Variable Byte Integer of 1 to 4 bytes (2.1.4, 1.5.5): a PUBLISH
/// whose Remaining Length sits on each side of each length boundary round-trips, its fixed
/// header has the right length, and `needed()` is exact from that header on.
#[test]
fn remaining_length_boundaries() {
    for version in [V3_1, V3_1_1, V5] {
        // Topic length (2) + "t" (1), and the Property Length (1) in 5.0.
        let overhead = 3 + usize::from(version.is_v5());
        for (remaining, header) in [
            (127, 2),
            (128, 3),
            (16_383, 3),
            (16_384, 4),
            (2_097_151, 4),
            (2_097_152, 5),
        ] {
            let publish = Packet::Publish(Publish {
                topic: MqttString::from_static("t"),
                payload: Bytes::from(vec![0xA5; remaining - overhead]),
                ..Publish::default()
            });
            let bytes = encode(&publish, version);
            assert_eq!(bytes.len(), header + remaining, "{version}, {remaining}");
            assert_eq!(header_len(&bytes), header);
            assert_eq!(publish.encoded_len(version), Ok(bytes.len()));

            let mut decoder = Decoder::with_version(version, MAX_PACKET_SIZE);
            let mut buf = BytesMut::from(&bytes[..header - 1]);
            assert_eq!(decoder.decode(&mut buf), Ok(None));
            assert!(decoder.needed() >= 1);
            buf.extend_from_slice(&bytes[header - 1..header + 1]);
            assert_eq!(decoder.decode(&mut buf), Ok(None));
            assert_eq!(decoder.needed(), remaining - 1);
            buf.extend_from_slice(&bytes[header + 1..]);
            assert_eq!(decoder.decode(&mut buf), Ok(Some(publish)));
            assert!(buf.is_empty());
        }
    }
}
