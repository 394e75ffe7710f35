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

#[path = "common/codec_fixtures.rs"]
mod fixtures;

use std::{
    hint::black_box,
    time::{Duration, Instant},
};

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use fixtures::*;
use rumqttc::{mqttbytes as r4, v5::mqttbytes as r5};
use tern_codec::{Connect, Packet, ProtocolVersion, Publish, Subscribe};

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
