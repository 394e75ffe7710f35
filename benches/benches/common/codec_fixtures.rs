//! The packets of the codec benchmark, built identically for tern-codec and rumqttc, and the
//! decode calls both compare: shared by `benches/codec.rs` (criterion, wall clock) and
//! `examples/codec_ir.rs` (instruction counts under callgrind), so both measure the same work.
//! See the docs of `benches/codec.rs` for what each packet holds.

#![allow(dead_code, unreachable_pub)]

use std::num::NonZeroU16;

use bytes::{Bytes, BytesMut};
use rumqttc::{mqttbytes as r4, v5::mqttbytes as r5};
use tern_codec::{
    Connect, ConnectProperties, Decoder, MAX_PACKET_SIZE, MqttString, Packet, ProtocolVersion,
    Publish, QoS, RetainHandling, Subscribe, SubscribeProperties, Subscription,
    SubscriptionOptions, Will,
};

/// The sizes of each group: payload bytes (PUBLISH), Will payload bytes (CONNECT), filter list
/// bytes (SUBSCRIBE).
pub const SIZES: [usize; 3] = [16, 1024, 64 * 1024];

/// CONNECT's Will Payload is Binary Data with a two-byte length, so its largest size is
/// 65,535 bytes: 64 KiB less one.
pub const CONNECT_SIZES: [usize; 3] = [16, 1024, u16::MAX as usize];

pub const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
pub const V5: ProtocolVersion = ProtocolVersion::V5;

pub const PUBLISH_TOPIC: &str = "sensors/building-7/floor-3/room-12/temperature";
pub const PACKET_ID: u16 = 42;
pub const CLIENT_ID: &str = "tern-bench-client-0001";
pub const WILL_TOPIC: &str = "clients/tern-bench-client-0001/status";
pub const USERNAME: &str = "bench-user";
pub const PASSWORD: &str = "bench-password";
pub const KEEP_ALIVE: u16 = 60;
pub const SESSION_EXPIRY: u32 = 3600;
pub const RECEIVE_MAXIMUM: u16 = 100;

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// `len` bytes of a non-constant pattern.
pub fn payload(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

pub fn tern_qos(qos: u8) -> QoS {
    QoS::from_u8(qos).expect("QoS 0 to 2")
}

pub fn r4_qos(qos: u8) -> r4::QoS {
    r4::qos(qos).expect("QoS 0 to 2")
}

pub fn r5_qos(qos: u8) -> r5::QoS {
    r5::qos(qos).expect("QoS 0 to 2")
}

pub fn mqtt_string(s: &str) -> MqttString {
    MqttString::try_from(s).expect("valid MQTT string")
}

pub fn packet_id() -> NonZeroU16 {
    NonZeroU16::new(PACKET_ID).expect("non-zero")
}

pub fn tern_publish(size: usize) -> Publish {
    Publish {
        qos: QoS::AtLeastOnce,
        topic: mqtt_string(PUBLISH_TOPIC),
        packet_id: Some(packet_id()),
        payload: payload(size),
        ..Publish::default()
    }
}

pub fn r4_publish(size: usize) -> r4::v4::Publish {
    let mut p = r4::v4::Publish::from_bytes(PUBLISH_TOPIC, r4::QoS::AtLeastOnce, payload(size));
    p.pkid = PACKET_ID;
    p
}

pub fn r5_publish(size: usize) -> r5::v5::Publish {
    let mut p = r5::v5::Publish::new(PUBLISH_TOPIC, r5::QoS::AtLeastOnce, payload(size), None);
    p.pkid = PACKET_ID;
    p
}

pub fn tern_connect(version: ProtocolVersion, size: usize) -> Connect {
    let properties = if version.is_v5() {
        ConnectProperties {
            session_expiry_interval: Some(SESSION_EXPIRY),
            receive_maximum: NonZeroU16::new(RECEIVE_MAXIMUM),
            ..ConnectProperties::default()
        }
    } else {
        ConnectProperties::default()
    };
    Connect {
        protocol: version,
        clean_start: true,
        keep_alive: KEEP_ALIVE,
        client_id: mqtt_string(CLIENT_ID),
        will: Some(Will {
            topic: mqtt_string(WILL_TOPIC),
            payload: payload(size),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Default::default(),
        }),
        username: Some(mqtt_string(USERNAME)),
        password: Some(Bytes::from_static(PASSWORD.as_bytes())),
        properties,
    }
}

pub fn r4_connect(size: usize) -> r4::v4::Connect {
    r4::v4::Connect {
        protocol: r4::Protocol::V4,
        keep_alive: KEEP_ALIVE,
        client_id: CLIENT_ID.into(),
        clean_session: true,
        last_will: Some(r4::v4::LastWill {
            topic: WILL_TOPIC.into(),
            message: payload(size),
            qos: r4::QoS::AtLeastOnce,
            retain: true,
        }),
        login: Some(r4::v4::Login::new(USERNAME, PASSWORD)),
    }
}

/// rumqttc 5.0 splits CONNECT into the packet, the Will and the login.
pub type R5Connect = (
    r5::v5::Connect,
    Option<r5::v5::LastWill>,
    Option<r5::v5::Login>,
);

pub fn r5_connect(size: usize) -> R5Connect {
    let connect = r5::v5::Connect {
        keep_alive: KEEP_ALIVE,
        client_id: CLIENT_ID.into(),
        clean_start: true,
        properties: Some(r5::v5::ConnectProperties {
            session_expiry_interval: Some(SESSION_EXPIRY),
            receive_maximum: Some(RECEIVE_MAXIMUM),
            ..r5::v5::ConnectProperties::new()
        }),
    };
    let will = r5::v5::LastWill {
        topic: Bytes::from_static(WILL_TOPIC.as_bytes()),
        message: payload(size),
        qos: r5::QoS::AtLeastOnce,
        retain: true,
        properties: None,
    };
    (
        connect,
        Some(will),
        Some(r5::v5::Login::new(USERNAME, PASSWORD)),
    )
}

/// One topic filter of the SUBSCRIBE fixtures, independent of either codec.
pub struct FilterSpec {
    path: String,
    qos: u8,
    no_local: bool,
    retain_as_published: bool,
    retain_handling: u8,
}

/// Filters whose encoded list (2-byte length + filter + options byte each) is as close to
/// `target` bytes as possible without exceeding it. The 5.0-only options stay off for 3.1.1.
pub fn filter_specs(target: usize, v5: bool) -> Vec<FilterSpec> {
    let mut specs = Vec::new();
    let mut total = 0;
    for i in 0.. {
        let path = match (target, i % 4) {
            (..=16, _) => "home/+/temp/#".to_owned(),
            (_, 0) => format!("devices/{i:05}/telemetry/+"),
            (_, 1) => format!("fleet/eu-west-1/vehicle/{i}/gps"),
            (_, 2) => format!("home/floor-{}/room-{i}/+/state", i % 8),
            _ => format!("sites/{i}/alarms/#"),
        };
        let entry = 2 + path.len() + 1;
        if total + entry > target && !specs.is_empty() {
            break;
        }
        total += entry;
        specs.push(FilterSpec {
            path,
            qos: (i % 3) as u8,
            no_local: v5 && i % 3 == 1,
            retain_as_published: v5 && i % 4 == 2,
            retain_handling: if v5 { (i % 3) as u8 } else { 0 },
        });
    }
    specs
}

pub fn tern_subscribe(version: ProtocolVersion, size: usize) -> Subscribe {
    let v5 = version.is_v5();
    let subscriptions = filter_specs(size, v5)
        .into_iter()
        .map(|f| Subscription {
            filter: mqtt_string(&f.path),
            options: SubscriptionOptions {
                qos: tern_qos(f.qos),
                no_local: f.no_local,
                retain_as_published: f.retain_as_published,
                retain_handling: match f.retain_handling {
                    0 => RetainHandling::SendAtSubscribe,
                    1 => RetainHandling::SendIfNew,
                    _ => RetainHandling::DoNotSend,
                },
            },
        })
        .collect();
    let properties = SubscribeProperties {
        subscription_identifier: if v5 {
            core::num::NonZeroU32::new(1)
        } else {
            None
        },
        ..SubscribeProperties::default()
    };
    Subscribe {
        packet_id: packet_id(),
        properties,
        subscriptions,
    }
}

pub fn r4_subscribe(size: usize) -> r4::v4::Subscribe {
    let filters = filter_specs(size, false)
        .into_iter()
        .map(|f| r4::v4::SubscribeFilter::new(f.path, r4_qos(f.qos)));
    let mut s = r4::v4::Subscribe::new_many(filters);
    s.pkid = PACKET_ID;
    s
}

pub fn r5_subscribe(size: usize) -> r5::v5::Subscribe {
    let filters = filter_specs(size, true)
        .into_iter()
        .map(|f| r5::v5::Filter {
            path: f.path,
            qos: r5_qos(f.qos),
            nolocal: f.no_local,
            preserve_retain: f.retain_as_published,
            retain_forward_rule: match f.retain_handling {
                0 => r5::v5::RetainForwardRule::OnEverySubscribe,
                1 => r5::v5::RetainForwardRule::OnNewSubscribe,
                _ => r5::v5::RetainForwardRule::Never,
            },
        });
    let properties = r5::v5::SubscribeProperties {
        id: Some(1),
        user_properties: Vec::new(),
    };
    let mut s = r5::v5::Subscribe::new_many(filters, Some(properties));
    s.pkid = PACKET_ID;
    s
}

/// A fresh copy of `wire` already in shared storage: splitting a packet off it increments a
/// reference count instead of allocating (see the docs of `benches/codec.rs`).
pub fn fresh_copy(wire: &[u8]) -> BytesMut {
    let mut buf = BytesMut::from(wire);
    drop(buf.split_off(wire.len()));
    buf
}

/// A client-side decoder of a connection whose version is known, reused across iterations.
pub fn tern_decode(version: ProtocolVersion) -> impl FnMut(&mut BytesMut) -> Packet {
    let mut decoder = Decoder::with_version(version, MAX_PACKET_SIZE);
    move |buf| {
        decoder
            .decode(buf)
            .expect("tern decodes")
            .expect("a whole packet")
    }
}

/// CONNECT is the first packet of a connection and sets its version, so each one is decoded by
/// a new server-side decoder (making one is three stores).
pub fn tern_decode_connect(buf: &mut BytesMut) -> Packet {
    let mut decoder = Decoder::new(MAX_PACKET_SIZE);
    decoder
        .decode(buf)
        .expect("tern decodes")
        .expect("a whole packet")
}

pub fn r4_decode(buf: &mut BytesMut) -> r4::v4::Packet {
    r4::v4::Packet::read(buf, MAX_PACKET_SIZE as usize).expect("rumqttc decodes")
}

pub fn r5_decode(buf: &mut BytesMut) -> r5::v5::Packet {
    r5::v5::Packet::read(buf, Some(MAX_PACKET_SIZE)).expect("rumqttc decodes")
}
