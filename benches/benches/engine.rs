//! The sans-IO engine (`tern-proto`) alone, no socket: what a broker's connection pays per
//! message inside `ServerSession`.
//!
//! - `server_deliver`: one 64-byte message delivered to a connected MQTT 3.1.1 session and its
//!   bytes drained, at QoS 0, and at QoS 1 with the client's PUBACKs lagging
//!   16, 1,000 or 20,000 messages behind (a steady window of that many in flight). The runs
//!   go on for millions of messages, so the packet identifiers wrap past 65,535 many times.
//! - `server_deliver/qos2_completed_behind`: QoS 2 deliveries whose PUBREC comes at once and
//!   whose PUBCOMP comes 16 or 5,000 messages behind (each PUBREC is for the newest message,
//!   behind that many awaiting PUBCOMP).
//! - `server_receive`: one QoS 1 PUBLISH from the client decoded, surfaced as an event and
//!   acknowledged (the fan-in side); and one QoS 2 PUBLISH answered with PUBREC, with the
//!   client's PUBRELs 16 or 5,000 messages behind (that many identifiers awaiting PUBREL).

use std::hint::black_box;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tern_codec::{Connect, MqttString, Packet, ProtocolVersion, Publish, QoS};
use tern_proto::{
    Accept, DeliverOutcome, DeliveryOptions, Event, Message, ServerConfig, ServerSession,
};

const V311: ProtocolVersion = ProtocolVersion::V3_1_1;

/// A 3.1.1 session past CONNECT/CONNACK, with room for 65,535 messages in flight and, as
/// in the broker, no event per acknowledgement.
fn connected(now: Instant) -> ServerSession {
    let config = ServerConfig {
        max_inflight: u16::MAX,
        acknowledgement_events: false,
        ..ServerConfig::default()
    };
    let mut session = ServerSession::new(config);
    let connect = Connect {
        protocol: V311,
        clean_start: true,
        keep_alive: 0,
        client_id: MqttString::from_static("bench"),
        will: None,
        username: None,
        password: None,
        properties: Default::default(),
    };
    let mut buf = BytesMut::new();
    Packet::from(connect).encode(V311, &mut buf).unwrap();
    session.handle_input(now, &mut buf);
    while session.poll_event().is_some() {}
    session.accept(now, Accept::default()).unwrap();
    buf.clear();
    session.poll_transmit(&mut buf);
    session
}

fn message(qos: QoS, now: Instant) -> Message {
    let publish = Publish {
        qos,
        topic: MqttString::from_static("bench/engine"),
        payload: Bytes::from_static(&[7; 64]),
        ..Publish::default()
    };
    Message::new(publish, None, now)
}

fn server_deliver(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine/server_deliver");
    group.throughput(Throughput::Elements(1));
    let now = Instant::now();

    let mut session = connected(now);
    let qos0 = message(QoS::AtMostOnce, now);
    let mut out = BytesMut::with_capacity(4096);
    group.bench_function("qos0", |b| {
        b.iter(|| {
            let outcome =
                session.deliver(now, &qos0, QoS::AtMostOnce, &[], DeliveryOptions::default());
            out.clear();
            session.poll_transmit(&mut out);
            black_box((outcome, out.len()))
        })
    });

    // QoS 1: PUBACK `lag` messages behind. QoS 2: PUBREC at once, PUBCOMP `lag` behind.
    let flows = [
        (
            "qos1_acked_behind",
            QoS::AtLeastOnce,
            &[16usize, 1_000, 20_000][..],
            None,
            0x40,
        ),
        (
            "qos2_completed_behind",
            QoS::ExactlyOnce,
            &[16, 5_000],
            Some(0x50),
            0x70,
        ),
    ];
    for (name, qos, lags, at_once, behind) in flows {
        let message = message(qos, now);
        for &lag in lags {
            let mut session = connected(now);
            let mut in_flight = std::collections::VecDeque::with_capacity(lag + 1);
            let mut acks = BytesMut::with_capacity(8);
            group.bench_with_input(BenchmarkId::new(name, lag), &lag, |b, &lag| {
                b.iter(|| {
                    let outcome =
                        session.deliver(now, &message, qos, &[], DeliveryOptions::default());
                    let DeliverOutcome::Sent(Some(id)) = outcome else {
                        panic!("not sent at once: {outcome:?}");
                    };
                    if let Some(first) = at_once {
                        acks.put_slice(&[first, 2]);
                        acks.put_u16(id.get());
                    }
                    in_flight.push_back(id);
                    if in_flight.len() > lag {
                        acks.put_slice(&[behind, 2]);
                        acks.put_u16(in_flight.pop_front().unwrap().get());
                    }
                    session.handle_input(now, &mut acks);
                    out.clear();
                    session.poll_transmit(&mut out);
                    black_box(out.len())
                })
            });
        }
    }
    group.finish();
}

/// Appends a PUBLISH from the client: topic "bench/engine" (12 bytes), packet id `id`,
/// 64-byte payload.
fn put_publish(input: &mut BytesMut, qos: QoS, id: u16) {
    input.put_slice(&[0x30 | (qos as u8) << 1, 2 + 12 + 2 + 64, 0, 12]);
    input.put_slice(b"bench/engine");
    input.put_u16(id);
    input.put_slice(&[7; 64]);
}

/// Feeds `input`, takes the message the session surfaces and drains what it answers.
fn receive(
    session: &mut ServerSession,
    now: Instant,
    input: &mut BytesMut,
    out: &mut BytesMut,
) -> (Publish, usize) {
    session.handle_input(now, input);
    let Some(Event::Publish { publish, .. }) = session.poll_event() else {
        panic!("no publish event");
    };
    out.clear();
    session.poll_transmit(out);
    (publish, out.len())
}

fn server_receive(c: &mut Criterion) {
    let mut group = c.benchmark_group("engine/server_receive");
    group.throughput(Throughput::Elements(1));
    let now = Instant::now();
    let mut session = connected(now);
    let mut input = BytesMut::with_capacity(128);
    let mut out = BytesMut::with_capacity(64);
    let mut id = 0u16;
    group.bench_function("qos1", |b| {
        b.iter(|| {
            id = id.checked_add(1).unwrap_or(1);
            put_publish(&mut input, QoS::AtLeastOnce, id);
            black_box(receive(&mut session, now, &mut input, &mut out))
        })
    });

    for lag in [16usize, 5_000] {
        let mut session = connected(now);
        let mut id = 0u16;
        let mut awaiting = std::collections::VecDeque::with_capacity(lag + 1);
        group.bench_with_input(
            BenchmarkId::new("qos2_released_behind", lag),
            &lag,
            |b, &lag| {
                b.iter(|| {
                    id = id.checked_add(1).unwrap_or(1);
                    put_publish(&mut input, QoS::ExactlyOnce, id);
                    awaiting.push_back(id);
                    if awaiting.len() > lag {
                        // PUBREL for the oldest.
                        input.put_slice(&[0x62, 2]);
                        input.put_u16(awaiting.pop_front().unwrap());
                    }
                    black_box(receive(&mut session, now, &mut input, &mut out))
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, server_deliver, server_receive);
criterion_main!(benches);
