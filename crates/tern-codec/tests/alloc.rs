//! Allocation counts of the hot paths: decoding a stream of PUBLISH packets and encoding a
//! PUBLISH into a buffer that has room for it.
//!
//! A counting global allocator wraps `std::alloc::System`. Its counters are global, so every
//! measurement runs in the one `#[test]` of this file, sequentially; keep it that way (a second
//! test would run on another thread and its allocations would be counted too).
//!
//! Run with `--nocapture` to see the measured counts.

// SAFETY (of the `unsafe impl GlobalAlloc` below, the only unsafe code in this file): every
// method forwards its arguments unchanged to the same method of `std::alloc::System`, which is
// itself a sound `GlobalAlloc`, and returns System's result unchanged, so every contract of
// `GlobalAlloc` (layout, alignment, ownership of the returned block, deallocation with the
// layout it was allocated with) is upheld by System. The only addition is a relaxed atomic
// increment: it neither allocates nor touches the memory, so it cannot re-enter the allocator
// or affect the forwarded call.
#![allow(unsafe_code)]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    hint::black_box,
    num::{NonZeroU16, NonZeroU32},
    sync::atomic::{AtomicUsize, Ordering::Relaxed},
};

use bytes::{Bytes, BytesMut};
use tern_codec::{
    Decoder, MAX_PACKET_SIZE, MqttString, Packet, PayloadFormat, ProtocolVersion, Publish,
    PublishProperties, QoS,
};

/// `System`, counting allocations (`alloc`, `alloc_zeroed`, `realloc`) and frees.
struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);
static FREES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: see the comment at the top of the file; each method only counts and forwards.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: the caller's contract for `alloc_zeroed` is passed on unchanged.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: the caller's contract for `realloc` is passed on unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        FREES.fetch_add(1, Relaxed);
        // SAFETY: the caller's contract for `dealloc` is passed on unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations and frees made while `f` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Counts {
    allocs: usize,
    frees: usize,
}

fn count<R>(f: impl FnOnce() -> R) -> (R, Counts) {
    let (a0, f0) = (ALLOCS.load(Relaxed), FREES.load(Relaxed));
    let r = f();
    let (a1, f1) = (ALLOCS.load(Relaxed), FREES.load(Relaxed));
    (
        r,
        Counts {
            allocs: a1 - a0,
            frees: f1 - f0,
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
fn publish_hot_paths_do_not_allocate() {
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
}
