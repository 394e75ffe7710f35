//! Allocation counts of the hot paths: decoding a stream of PUBLISH packets, encoding a
//! PUBLISH into a buffer that has room for it, and decoding SUBSCRIBE packets.
//!
//! The global allocator is `stats_alloc`'s instrumented `System`. Its counters are global, so
//! every measurement runs in the one `#[test]` of this file, sequentially; keep it that way (a
//! second test would run on another thread and its allocations would be counted too).
//!
//! Run with `--nocapture` to see the measured counts.

use std::{
    alloc::System,
    hint::black_box,
    num::{NonZeroU16, NonZeroU32},
};

use bytes::{Bytes, BytesMut};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use tern_codec::{
    Decoder, MAX_PACKET_SIZE, MqttString, Packet, PayloadFormat, ProtocolVersion, Publish,
    PublishProperties, QoS, Subscribe, SubscribeProperties, Subscription, SubscriptionOptions,
};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Allocations (`alloc`, `alloc_zeroed`, `realloc`) and frees made while `f` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Counts {
    allocs: usize,
    frees: usize,
}

fn count<R>(f: impl FnOnce() -> R) -> (R, Counts) {
    let region = Region::new(GLOBAL);
    let r = f();
    let stats = region.change();
    (
        r,
        Counts {
            allocs: stats.allocations + stats.reallocations,
            frees: stats.deallocations,
        },
    )
}

/// Packets per decoded stream.
const N: usize = 1000;

/// The one-off allocation allowed when decoding a stream: the first `split_to` of a `BytesMut`
/// that still owns a plain vector moves it to shared, reference-counted storage (one small
/// allocation of the `bytes` crate). Every later split only increments the reference count.
const ONE_OFF: usize = 1;

/// The PUBLISH packets of a stream: payloads of 0 to ~20 KB (so the Remaining Length takes one
/// to three bytes) sliced from one buffer, a topic per packet, and for MQTT 5.0 on every other
/// packet the properties that decode as scalars or zero-copy slices (Payload Format Indicator,
/// Message Expiry Interval, Topic Alias, Response Topic, Correlation Data, Content Type).
fn publishes(version: ProtocolVersion, qos: QoS) -> Vec<Publish> {
    let data: Bytes = (0..20_000u32)
        .map(|i| (i % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    (0..N)
        .map(|i| {
            let properties = if version.is_v5() && i % 2 == 1 {
                PublishProperties {
                    payload_format_indicator: Some(PayloadFormat::Utf8),
                    message_expiry_interval: Some(3600),
                    topic_alias: NonZeroU16::new(1 + (i % 10) as u16),
                    response_topic: Some(MqttString::try_from(format!("replies/{i}")).unwrap()),
                    correlation_data: Some(Bytes::from(format!("corr-{i}"))),
                    content_type: Some(MqttString::from_static("application/json")),
                    ..PublishProperties::default()
                }
            } else {
                PublishProperties::default()
            };
            let len = (i * 997) % 20_000;
            Publish {
                dup: false,
                qos,
                retain: i % 7 == 0,
                topic: MqttString::try_from(format!("site/{}/device/{i}/telemetry", i % 13))
                    .unwrap(),
                packet_id: match qos {
                    QoS::AtMostOnce => None,
                    _ => NonZeroU16::new(1 + (i % 65_535) as u16),
                },
                properties,
                payload: data.slice(..len),
            }
        })
        .collect()
}

/// Decodes a stream of N PUBLISH packets from one `BytesMut`; returns the counts of the first
/// decode and of the N - 1 others.
fn decode_stream(version: ProtocolVersion, qos: QoS) -> (Counts, Counts) {
    let packets = publishes(version, qos);
    let total: usize = packets
        .iter()
        .map(|p| p.encoded_len(version).unwrap())
        .sum();
    let mut stream = BytesMut::with_capacity(total);
    for p in &packets {
        p.encode(version, &mut stream).unwrap();
    }
    assert_eq!(
        stream.len(),
        total,
        "{version} {qos:?}: encoded_len disagrees with encode"
    );

    let mut decoder = Decoder::with_version(version, MAX_PACKET_SIZE);
    // Decoded packets are kept (in a vector that does not grow) so that their drops, which
    // may free nothing but must not be counted as "decode" either, happen after measuring.
    let mut decoded: Vec<Packet> = Vec::with_capacity(N);

    let (first, first_counts) = count(|| decoder.decode(&mut stream));
    decoded.push(first.unwrap().expect("a whole packet"));
    let ((), rest_counts) = count(|| {
        for _ in 1..N {
            let packet = decoder.decode(&mut stream);
            decoded.push(packet.unwrap().expect("a whole packet"));
        }
    });

    assert!(
        stream.is_empty(),
        "{version} {qos:?}: {} bytes left over",
        stream.len()
    );
    assert_eq!(
        decoder.decode(&mut stream),
        Ok(None),
        "{version} {qos:?}: end of stream"
    );
    for (i, (got, want)) in decoded.into_iter().zip(packets).enumerate() {
        assert_eq!(got, Packet::Publish(want), "{version} {qos:?}: packet {i}");
    }
    (first_counts, rest_counts)
}

/// Encodes each PUBLISH into a buffer of exactly its `encoded_len` (one buffer reused, cleared
/// each time), then all of them into one buffer with room for all; returns the counts of both.
fn encode_publishes(version: ProtocolVersion, qos: QoS) -> (Counts, Counts) {
    let packets = publishes(version, qos);
    let lens: Vec<usize> = packets
        .iter()
        .map(|p| p.encoded_len(version).unwrap())
        .collect();
    let max = *lens.iter().max().unwrap();
    let total: usize = lens.iter().sum();

    let mut buf = BytesMut::with_capacity(max);
    let ((), one_by_one) = count(|| {
        for (p, len) in packets.iter().zip(&lens) {
            buf.clear();
            p.encode(version, &mut buf).unwrap();
            assert_eq!(buf.len(), *len);
            black_box(&buf);
        }
    });

    // Through `Packet::encode` too, into a buffer of exactly the total length.
    let wrapped: Vec<Packet> = packets.into_iter().map(Packet::Publish).collect();
    let mut stream = BytesMut::with_capacity(total);
    let ((), all) = count(|| {
        for p in &wrapped {
            p.encode(version, &mut stream).unwrap();
        }
        black_box(&stream);
    });
    assert_eq!(stream.len(), total);
    (one_by_one, all)
}

#[test]
fn hot_paths_do_not_allocate() {
    // The counter is live: an allocation made on purpose is seen.
    let (v, counts) = count(|| black_box(Vec::<u8>::with_capacity(64)));
    drop(v);
    assert_eq!(counts.allocs, 1, "the counting allocator is not installed");

    let cases = [
        (ProtocolVersion::V3_1_1, QoS::AtMostOnce),
        (ProtocolVersion::V3_1_1, QoS::AtLeastOnce),
        (ProtocolVersion::V5, QoS::AtMostOnce),
        (ProtocolVersion::V5, QoS::AtLeastOnce),
    ];
    let mut failures = Vec::new();
    for (version, qos) in cases {
        let (first, rest) = decode_stream(version, qos);
        let (encode_each, encode_all) = encode_publishes(version, qos);
        println!(
            "{version} {qos:?}: decode first packet {first:?}, next {} packets {rest:?}; \
             encode {N} one by one {encode_each:?}, all into one buffer {encode_all:?}",
            N - 1,
        );
        if first.allocs > ONE_OFF {
            failures.push(format!("{version} {qos:?}: first decode made {first:?}"));
        }
        if rest.allocs != 0 {
            failures.push(format!(
                "{version} {qos:?}: decoding {} packets made {rest:?}",
                N - 1
            ));
        }
        if encode_each.allocs != 0 || encode_all.allocs != 0 {
            failures.push(format!(
                "{version} {qos:?}: encoding made {encode_each:?} (one by one), {encode_all:?} \
                 (all into one buffer)"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "allocations on a hot path:\n{}",
        failures.join("\n")
    );

    // And a single PUBLISH into an empty buffer with enough capacity, through each entry point.
    let publish = Publish {
        qos: QoS::AtLeastOnce,
        topic: MqttString::from_static("home/ground/living/light"),
        packet_id: NonZeroU16::new(7),
        payload: Bytes::from_static(b"on"),
        properties: PublishProperties {
            message_expiry_interval: Some(60),
            subscription_identifiers: vec![NonZeroU32::new(3).unwrap()],
            ..PublishProperties::default()
        },
        ..Publish::default()
    };
    let packet = Packet::Publish(publish.clone());
    let len = publish.encoded_len(ProtocolVersion::V5).unwrap();
    let mut a = BytesMut::with_capacity(len);
    let mut b = BytesMut::with_capacity(len);
    let (res, counts) = count(|| {
        publish
            .encode(ProtocolVersion::V5, &mut a)
            .and(packet.encode(ProtocolVersion::V5, &mut b))
    });
    res.unwrap();
    assert_eq!(
        counts.allocs, 0,
        "encoding one PUBLISH into a buffer with room allocated"
    );
    assert_eq!((a.len(), &a), (len, &b));

    // The vectored form: the header into a buffer with room for it, the payload shared.
    let header_len = len - publish.payload.len();
    let mut c = BytesMut::with_capacity(header_len);
    let (res, counts) = count(|| {
        publish
            .encode_header(ProtocolVersion::V5, &mut c)
            .map(|()| publish.payload.clone())
    });
    let payload = res.unwrap();
    assert_eq!(
        counts.allocs, 0,
        "encoding a PUBLISH header into a buffer with room allocated"
    );
    assert_eq!([&c[..], &payload[..]].concat(), &a[..]);

    // A SUBSCRIBE of one filter, the common case, is decoded without an allocation (its list
    // holds one subscription in place); one of two filters makes one, for its list.
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        for (filters, allocs) in [(1, 0), (2, 1)] {
            let subscribe = Subscribe {
                packet_id: NonZeroU16::new(9).unwrap(),
                properties: SubscribeProperties::default(),
                subscriptions: (0..filters)
                    .map(|i| Subscription {
                        filter: MqttString::try_from(format!("home/+/room-{i}/#")).unwrap(),
                        options: SubscriptionOptions::default(),
                    })
                    .collect(),
            };
            let mut stream = BytesMut::new();
            for _ in 0..N {
                subscribe.encode(version, &mut stream).unwrap();
            }
            let mut decoder = Decoder::with_version(version, MAX_PACKET_SIZE);
            let mut decoded: Vec<Packet> = Vec::with_capacity(N);
            decoded.push(decoder.decode(&mut stream).unwrap().unwrap());
            let ((), counts) = count(|| {
                for _ in 1..N {
                    decoded.push(decoder.decode(&mut stream).unwrap().unwrap());
                }
            });
            println!(
                "{version} SUBSCRIBE of {filters}: next {} decodes {counts:?}",
                N - 1
            );
            assert_eq!(
                counts.allocs,
                allocs * (N - 1),
                "{version}: decoding SUBSCRIBE packets of {filters} filter(s)"
            );
            assert!(
                decoded
                    .iter()
                    .all(|p| *p == Packet::Subscribe(subscribe.clone()))
            );
        }
    }
}
