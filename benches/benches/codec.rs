//! Wire codec throughput: tern-codec side by side with rumqttc's codec on identical packets.
//!
//! One `benchmark_group` per (packet, direction, version), e.g. `publish/decode/v3.1.1`, with a
//! `BenchmarkId` per implementation (`tern`, `rumqttc`) and size, and `Throughput::Bytes` of the
//! whole encoded packet. The compared calls:
//!
//! | | tern | rumqttc 0.25 |
//! |---|---|---|
//! | decode | `Decoder::decode` | `v4::Packet::read`, `v5::Packet::read` (`mqttbytes` modules) |
//! | encode | `Connect`/`Subscribe`/`Publish::encode` | `Connect`/`Subscribe`/`Publish::write` |
//! | encode, `tern (vectored)` | `Publish::encode_header` + `payload.clone()` | — |
//!
//! The packets (the size is the parameter of each `BenchmarkId`):
//!
//! - PUBLISH: QoS 1, packet id 42, topic `sensors/building-7/floor-3/room-12/temperature`, a
//!   payload of exactly `size` bytes; no properties in 5.0 (the common case on the wire).
//! - CONNECT: client id, keep alive 60, clean start, user name and a 14-byte password, and a Will
//!   (QoS 1, retained) whose payload is exactly `size` bytes; the largest size is 65,535 bytes,
//!   the most a Will Payload (Binary Data, two-byte length) can hold. In 5.0 the CONNECT
//!   carries Session Expiry Interval 3600 and Receive Maximum 100, the Will no properties.
//! - SUBSCRIBE: a list of topic filters whose payload (length prefixes, filters and option bytes)
//!   is as close to `size` bytes as the filters allow without going over: at 16 B the single
//!   filter `home/+/temp/#`; at 1 KiB and 64 KiB a rotation of four realistic shapes
//!   (`devices/00042/telemetry/+`, `fleet/eu-west-1/vehicle/42/gps`,
//!   `home/floor-2/room-42/+/state`, `sites/42/alarms/#`): 36 filters in 1,001 bytes and 2,249
//!   filters in 65,512 bytes, with QoS 0, 1 and 2 in turn. In 5.0 the options also vary (No
//!   Local, Retain As Published, Retain Handling) and the packet carries Subscription
//!   Identifier 1.
//!
//! Fairness:
//!
//! - Before anything is timed, each case asserts that both codecs encode the packet to the same
//!   bytes, that tern's `encoded_len` is exact, and that each codec decodes the other's bytes to
//!   the packet it started from; a mismatch panics.
//! - Decode: like a connection's read loop, each batch decodes packets back to back from one
//!   `BytesMut` that holds 64 to 256 copies of the packet (`iter_custom`; the stream is built
//!   before the clock starts, so the timed loop neither pays for it nor reads the clock, ~150
//!   ns here, more than once per 64 decodes). The stream is moved into shared storage first
//!   (`split_off` of an empty tail), so neither codec pays the one-off allocation that the first
//!   `split_to` of a `BytesMut` makes: the timed part is the steady state. Each decoded packet
//!   is pushed into a vector reused across batches; packets and stream are dropped after the
//!   clock stops. (Until 2026-12 each decode had a fresh one-packet `BytesMut`, kept next to
//!   the packet; a stream is what a broker or client decodes from, and the same for both.)
//! - Encode: both write into the same kind of buffer, reserved once and cleared each iteration.
//! - PUBLISH encode also has a `tern (vectored)` row: `Publish::encode_header` writes everything
//!   but the payload, and the payload `Bytes` is cloned (a reference-count update) to be sent
//!   alongside with `writev` or `Buf::chain`, as a broker's fan-out does. It produces the same
//!   wire bytes without copying the payload (asserted before timing), so it is not the same
//!   work as the copying rows, which are kept; compare each with rumqttc's copying `write`.
//! - Both enforce an effectively unlimited maximum packet size.
//!
//! Run: `cargo bench -p tern-benches --bench codec -- --warm-up-time 1 --measurement-time 2`.

use std::{
    hint::black_box,
    num::NonZeroU16,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rumqttc::{mqttbytes as r4, v5::mqttbytes as r5};
use tern_codec::{
    Connect, ConnectProperties, Decoder, MAX_PACKET_SIZE, MqttString, Packet, ProtocolVersion,
    Publish, QoS, RetainHandling, Subscribe, SubscribeProperties, Subscription,
    SubscriptionOptions, Will,
};

/// The sizes of each group: payload bytes (PUBLISH), Will payload bytes (CONNECT), filter list
/// bytes (SUBSCRIBE).
const SIZES: [usize; 3] = [16, 1024, 64 * 1024];

/// CONNECT's Will Payload is Binary Data with a two-byte length, so its largest size is
/// 65,535 bytes: 64 KiB less one.
const CONNECT_SIZES: [usize; 3] = [16, 1024, u16::MAX as usize];

const V311: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

const PUBLISH_TOPIC: &str = "sensors/building-7/floor-3/room-12/temperature";
const PACKET_ID: u16 = 42;
const CLIENT_ID: &str = "tern-bench-client-0001";
const WILL_TOPIC: &str = "clients/tern-bench-client-0001/status";
const USERNAME: &str = "bench-user";
const PASSWORD: &str = "bench-password";
const KEEP_ALIVE: u16 = 60;
const SESSION_EXPIRY: u32 = 3600;
const RECEIVE_MAXIMUM: u16 = 100;

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// `len` bytes of a non-constant pattern.
fn payload(len: usize) -> Bytes {
    (0..len)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into()
}

fn tern_qos(qos: u8) -> QoS {
    QoS::from_u8(qos).expect("QoS 0 to 2")
}

fn r4_qos(qos: u8) -> r4::QoS {
    r4::qos(qos).expect("QoS 0 to 2")
}

fn r5_qos(qos: u8) -> r5::QoS {
    r5::qos(qos).expect("QoS 0 to 2")
}

fn mqtt_string(s: &str) -> MqttString {
    MqttString::try_from(s).expect("valid MQTT string")
}

fn packet_id() -> NonZeroU16 {
    NonZeroU16::new(PACKET_ID).expect("non-zero")
}

fn tern_publish(size: usize) -> Publish {
    Publish {
        qos: QoS::AtLeastOnce,
        topic: mqtt_string(PUBLISH_TOPIC),
        packet_id: Some(packet_id()),
        payload: payload(size),
        ..Publish::default()
    }
}

fn r4_publish(size: usize) -> r4::v4::Publish {
    let mut p = r4::v4::Publish::from_bytes(PUBLISH_TOPIC, r4::QoS::AtLeastOnce, payload(size));
    p.pkid = PACKET_ID;
    p
}

fn r5_publish(size: usize) -> r5::v5::Publish {
    let mut p = r5::v5::Publish::new(PUBLISH_TOPIC, r5::QoS::AtLeastOnce, payload(size), None);
    p.pkid = PACKET_ID;
    p
}

fn tern_connect(version: ProtocolVersion, size: usize) -> Connect {
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

fn r4_connect(size: usize) -> r4::v4::Connect {
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
type R5Connect = (
    r5::v5::Connect,
    Option<r5::v5::LastWill>,
    Option<r5::v5::Login>,
);

fn r5_connect(size: usize) -> R5Connect {
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
struct FilterSpec {
    path: String,
    qos: u8,
    no_local: bool,
    retain_as_published: bool,
    retain_handling: u8,
}

/// Filters whose encoded list (2-byte length + filter + options byte each) is as close to
/// `target` bytes as possible without exceeding it. The 5.0-only options stay off for 3.1.1.
fn filter_specs(target: usize, v5: bool) -> Vec<FilterSpec> {
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

fn tern_subscribe(version: ProtocolVersion, size: usize) -> Subscribe {
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

fn r4_subscribe(size: usize) -> r4::v4::Subscribe {
    let filters = filter_specs(size, false)
        .into_iter()
        .map(|f| r4::v4::SubscribeFilter::new(f.path, r4_qos(f.qos)));
    let mut s = r4::v4::Subscribe::new_many(filters);
    s.pkid = PACKET_ID;
    s
}

fn r5_subscribe(size: usize) -> r5::v5::Subscribe {
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

// ---------------------------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------------------------

/// One side of a comparison: how a codec encodes its message and decodes whole packets.
struct Side<M, P, E, D> {
    /// The message for one size.
    make: fn(usize) -> M,
    /// The decoded packet the message must come back as.
    expected: fn(M) -> P,
    /// Encodes the message into the buffer.
    encode: E,
    /// Decodes one packet from the front of the buffer.
    decode: D,
}

fn version_label(version: ProtocolVersion) -> &'static str {
    if version.is_v5() { "v5" } else { "v3.1.1" }
}

/// A fresh copy of `wire` already in shared storage: splitting a packet off it increments a
/// reference count instead of allocating (see the module docs).
fn fresh_copy(wire: &[u8]) -> BytesMut {
    let mut buf = BytesMut::from(wire);
    drop(buf.split_off(wire.len()));
    buf
}

fn encode_to_bytes(encode: impl Fn(&mut BytesMut)) -> BytesMut {
    let mut buf = BytesMut::new();
    encode(&mut buf);
    buf
}

/// How many packets one timed decode batch takes: reading the clock costs ~150 ns on the
/// benchmark machine (a VM), so it is spread over 64 to 256 decodes, while the batch's stream
/// and decoded packets stay small enough for the caches (at most 256 packets or ~4 MiB).
fn decode_batch(wire_len: usize) -> u64 {
    ((4 << 20) / wire_len.max(1)).clamp(64, 256) as u64
}

/// Times `iters` decodes in batches, each batch from one stream of back-to-back copies of
/// `wire` made before the clock starts; the decoded packets and the emptied stream are dropped
/// after it stops. The output vector is reused across batches, so the timed loop does not
/// touch freshly allocated pages.
fn time_decodes<P>(
    iters: u64,
    wire: &[u8],
    mut decode: impl FnMut(&mut BytesMut) -> P,
) -> Duration {
    let batch = decode_batch(wire.len());
    let mut outputs: Vec<P> = Vec::with_capacity(batch as usize);
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(batch);
        let mut stream = fresh_copy(&wire.repeat(n as usize));
        let start = Instant::now();
        for _ in 0..n {
            outputs.push(decode(&mut stream));
        }
        total += start.elapsed();
        assert!(stream.is_empty(), "a stream decoded to its end");
        black_box(&outputs);
        outputs.clear();
        left -= n;
    }
    total
}

/// Asserts that both codecs agree on the packet and returns its encoding.
#[allow(clippy::too_many_arguments)]
fn verify<TM, TP, RM, RP>(
    name: &str,
    size: usize,
    tern_msg: &TM,
    tern_len: usize,
    rumq_msg: &RM,
    tern: &mut Side<TM, TP, impl Fn(&TM, &mut BytesMut), impl FnMut(&mut BytesMut) -> TP>,
    rumq: &mut Side<RM, RP, impl Fn(&RM, &mut BytesMut), impl FnMut(&mut BytesMut) -> RP>,
) -> Bytes
where
    TP: PartialEq + std::fmt::Debug,
    RP: PartialEq + std::fmt::Debug,
{
    let t = encode_to_bytes(|buf| (tern.encode)(tern_msg, buf));
    let r = encode_to_bytes(|buf| (rumq.encode)(rumq_msg, buf));
    if t != r {
        let at = t
            .iter()
            .zip(r.iter())
            .position(|(a, b)| a != b)
            .unwrap_or(t.len().min(r.len()));
        panic!(
            "{name}/{size}: tern and rumqttc encode differently: {} vs {} bytes, first \
             difference at byte {at}\n tern:    {:02x?}\n rumqttc: {:02x?}",
            t.len(),
            r.len(),
            &t[at..(at + 16).min(t.len())],
            &r[at..(at + 16).min(r.len())],
        );
    }
    assert_eq!(
        tern_len,
        t.len(),
        "{name}/{size}: tern encoded_len is not the encoded length"
    );

    let mut buf = fresh_copy(&r);
    let decoded = (tern.decode)(&mut buf);
    assert!(
        buf.is_empty(),
        "{name}/{size}: tern left {} bytes undecoded",
        buf.len()
    );
    assert_eq!(
        decoded,
        (tern.expected)((tern.make)(size)),
        "{name}/{size}: tern decode"
    );

    let mut buf = fresh_copy(&t);
    let decoded = (rumq.decode)(&mut buf);
    assert!(
        buf.is_empty(),
        "{name}/{size}: rumqttc left {} bytes undecoded",
        buf.len()
    );
    assert_eq!(
        decoded,
        (rumq.expected)((rumq.make)(size)),
        "{name}/{size}: rumqttc decode"
    );

    t.freeze()
}

/// Benchmarks one packet type in one version: a decode group and an encode group.
fn bench_packet<TM, TP, RM, RP>(
    c: &mut Criterion,
    packet: &str,
    version: ProtocolVersion,
    sizes: &[usize],
    tern_len: impl Fn(&TM) -> usize,
    mut tern: Side<TM, TP, impl Fn(&TM, &mut BytesMut), impl FnMut(&mut BytesMut) -> TP>,
    mut rumq: Side<RM, RP, impl Fn(&RM, &mut BytesMut), impl FnMut(&mut BytesMut) -> RP>,
) where
    TP: PartialEq + std::fmt::Debug,
    RP: PartialEq + std::fmt::Debug,
{
    let name = format!("{packet}/{}", version_label(version));
    let cases: Vec<(usize, TM, RM, Bytes)> = sizes
        .iter()
        .map(|&size| {
            let t = (tern.make)(size);
            let r = (rumq.make)(size);
            let wire = verify(&name, size, &t, tern_len(&t), &r, &mut tern, &mut rumq);
            (size, t, r, wire)
        })
        .collect();

    let mut group = c.benchmark_group(format!("{packet}/decode/{}", version_label(version)));
    for (size, _, _, wire) in &cases {
        group.throughput(Throughput::Bytes(wire.len() as u64));
        group.bench_with_input(BenchmarkId::new("tern", size), wire, |b, wire| {
            b.iter_custom(|iters| time_decodes(iters, wire, &mut tern.decode));
        });
        group.bench_with_input(BenchmarkId::new("rumqttc", size), wire, |b, wire| {
            b.iter_custom(|iters| time_decodes(iters, wire, &mut rumq.decode));
        });
    }
    group.finish();

    let mut group = c.benchmark_group(format!("{packet}/encode/{}", version_label(version)));
    for (size, t, r, wire) in &cases {
        group.throughput(Throughput::Bytes(wire.len() as u64));
        let mut buf = BytesMut::with_capacity(wire.len());
        group.bench_with_input(BenchmarkId::new("tern", size), t, |b, t| {
            b.iter(|| {
                buf.clear();
                (tern.encode)(black_box(t), &mut buf);
                black_box(&buf);
            });
        });
        group.bench_with_input(BenchmarkId::new("rumqttc", size), r, |b, r| {
            b.iter(|| {
                buf.clear();
                (rumq.encode)(black_box(r), &mut buf);
                black_box(&buf);
            });
        });
    }
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// The benchmarks
// ---------------------------------------------------------------------------------------------

/// A client-side decoder of a connection whose version is known, reused across iterations.
fn tern_decode(version: ProtocolVersion) -> impl FnMut(&mut BytesMut) -> Packet {
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
fn tern_decode_connect(buf: &mut BytesMut) -> Packet {
    let mut decoder = Decoder::new(MAX_PACKET_SIZE);
    decoder
        .decode(buf)
        .expect("tern decodes")
        .expect("a whole packet")
}

fn r4_decode(buf: &mut BytesMut) -> r4::v4::Packet {
    r4::v4::Packet::read(buf, MAX_PACKET_SIZE as usize).expect("rumqttc decodes")
}

fn r5_decode(buf: &mut BytesMut) -> r5::v5::Packet {
    r5::v5::Packet::read(buf, Some(MAX_PACKET_SIZE)).expect("rumqttc decodes")
}

fn publish(c: &mut Criterion) {
    bench_packet(
        c,
        "publish",
        V311,
        &SIZES,
        |p: &Publish| p.encoded_len(V311).expect("encodable"),
        Side {
            make: tern_publish,
            expected: Packet::Publish,
            encode: |p: &Publish, buf: &mut BytesMut| p.encode(V311, buf).expect("encodes"),
            decode: tern_decode(V311),
        },
        Side {
            make: r4_publish,
            expected: r4::v4::Packet::Publish,
            encode: |p: &r4::v4::Publish, buf: &mut BytesMut| {
                p.write(buf).expect("encodes");
            },
            decode: r4_decode,
        },
    );
    bench_packet(
        c,
        "publish",
        V5,
        &SIZES,
        |p: &Publish| p.encoded_len(V5).expect("encodable"),
        Side {
            make: tern_publish,
            expected: Packet::Publish,
            encode: |p: &Publish, buf: &mut BytesMut| p.encode(V5, buf).expect("encodes"),
            decode: tern_decode(V5),
        },
        Side {
            make: r5_publish,
            expected: r5::v5::Packet::Publish,
            encode: |p: &r5::v5::Publish, buf: &mut BytesMut| {
                p.write(buf).expect("encodes");
            },
            decode: r5_decode,
        },
    );
}

/// The `tern (vectored)` rows of the PUBLISH encode groups: the header written into the
/// buffer, the payload shared (see the module docs).
fn publish_vectored(c: &mut Criterion) {
    for version in [V311, V5] {
        let mut group = c.benchmark_group(format!("publish/encode/{}", version_label(version)));
        for size in SIZES {
            let p = tern_publish(size);
            let mut whole = BytesMut::new();
            p.encode(version, &mut whole).expect("encodes");
            let mut header = BytesMut::new();
            p.encode_header(version, &mut header).expect("encodes");
            assert_eq!(
                [&header[..], &p.payload[..]].concat(),
                &whole[..],
                "publish/{}/{size}: header + payload is not the packet",
                version_label(version)
            );
            group.throughput(Throughput::Bytes(whole.len() as u64));
            let mut buf = BytesMut::with_capacity(header.len());
            group.bench_with_input(BenchmarkId::new("tern (vectored)", size), &p, |b, p| {
                b.iter(|| {
                    buf.clear();
                    let p = black_box(p);
                    p.encode_header(version, &mut buf).expect("encodes");
                    black_box((&buf, p.payload.clone()));
                });
            });
        }
        group.finish();
    }
}

fn connect(c: &mut Criterion) {
    bench_packet(
        c,
        "connect",
        V311,
        &CONNECT_SIZES,
        |p: &Connect| p.encoded_len(V311).expect("encodable"),
        Side {
            make: |size| tern_connect(V311, size),
            expected: Packet::from,
            encode: |p: &Connect, buf: &mut BytesMut| p.encode(V311, buf).expect("encodes"),
            decode: tern_decode_connect,
        },
        Side {
            make: r4_connect,
            expected: r4::v4::Packet::Connect,
            encode: |p: &r4::v4::Connect, buf: &mut BytesMut| {
                p.write(buf).expect("encodes");
            },
            decode: r4_decode,
        },
    );
    bench_packet(
        c,
        "connect",
        V5,
        &CONNECT_SIZES,
        |p: &Connect| p.encoded_len(V5).expect("encodable"),
        Side {
            make: |size| tern_connect(V5, size),
            expected: Packet::from,
            encode: |p: &Connect, buf: &mut BytesMut| p.encode(V5, buf).expect("encodes"),
            decode: tern_decode_connect,
        },
        Side {
            make: r5_connect,
            expected: |(connect, will, login): R5Connect| {
                r5::v5::Packet::Connect(connect, will, login)
            },
            encode: |(connect, will, login): &R5Connect, buf: &mut BytesMut| {
                connect.write(will, login, buf).expect("encodes");
            },
            decode: r5_decode,
        },
    );
}

fn subscribe(c: &mut Criterion) {
    bench_packet(
        c,
        "subscribe",
        V311,
        &SIZES,
        |p: &Subscribe| p.encoded_len(V311).expect("encodable"),
        Side {
            make: |size| tern_subscribe(V311, size),
            expected: Packet::Subscribe,
            encode: |p: &Subscribe, buf: &mut BytesMut| p.encode(V311, buf).expect("encodes"),
            decode: tern_decode(V311),
        },
        Side {
            make: r4_subscribe,
            expected: r4::v4::Packet::Subscribe,
            encode: |p: &r4::v4::Subscribe, buf: &mut BytesMut| {
                p.write(buf).expect("encodes");
            },
            decode: r4_decode,
        },
    );
    bench_packet(
        c,
        "subscribe",
        V5,
        &SIZES,
        |p: &Subscribe| p.encoded_len(V5).expect("encodable"),
        Side {
            make: |size| tern_subscribe(V5, size),
            expected: Packet::Subscribe,
            encode: |p: &Subscribe, buf: &mut BytesMut| p.encode(V5, buf).expect("encodes"),
            decode: tern_decode(V5),
        },
        Side {
            make: r5_subscribe,
            expected: r5::v5::Packet::Subscribe,
            encode: |p: &r5::v5::Subscribe, buf: &mut BytesMut| {
                p.write(buf).expect("encodes");
            },
            decode: r5_decode,
        },
    );
}

criterion_group!(benches, connect, subscribe, publish, publish_vectored);
criterion_main!(benches);
