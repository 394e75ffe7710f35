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

    let qos1 = message(QoS::AtLeastOnce, now);
    for lag in [16usize, 1_000, 20_000] {
        let mut session = connected(now);
        let mut in_flight = std::collections::VecDeque::with_capacity(lag + 1);
        let mut ack = BytesMut::with_capacity(4);
        group.bench_with_input(
            BenchmarkId::new("qos1_acked_behind", lag),
            &lag,
            |b, &lag| {
                b.iter(|| {
                    let outcome = session.deliver(
                        now,
                        &qos1,
                        QoS::AtLeastOnce,
                        &[],
                        DeliveryOptions::default(),
                    );
                    let DeliverOutcome::Sent(Some(id)) = outcome else {
                        panic!("not sent at once: {outcome:?}");
                    };
                    in_flight.push_back(id);
                    out.clear();
                    session.poll_transmit(&mut out);
                    if in_flight.len() > lag {
                        let oldest = in_flight.pop_front().unwrap();
                        ack.put_slice(&[0x40, 2]);
                        ack.put_u16(oldest.get());
                        session.handle_input(now, &mut ack);
                    }
                    black_box(out.len())
                })
            },
        );
    }

    let qos2 = message(QoS::ExactlyOnce, now);
    for lag in [16usize, 5_000] {
        let mut session = connected(now);
        let mut awaiting = std::collections::VecDeque::with_capacity(lag + 1);
        let mut acks = BytesMut::with_capacity(8);
        group.bench_with_input(
            BenchmarkId::new("qos2_completed_behind", lag),
            &lag,
            |b, &lag| {
                b.iter(|| {
                    let outcome = session.deliver(
                        now,
                        &qos2,
                        QoS::ExactlyOnce,
                        &[],
                        DeliveryOptions::default(),
                    );
                    let DeliverOutcome::Sent(Some(id)) = outcome else {
                        panic!("not sent at once: {outcome:?}");
                    };
                    acks.put_slice(&[0x50, 2]);
                    acks.put_u16(id.get());
                    awaiting.push_back(id);
                    if awaiting.len() > lag {
                        acks.put_slice(&[0x70, 2]);
                        acks.put_u16(awaiting.pop_front().unwrap().get());
                    }
                    session.handle_input(now, &mut acks);
                    out.clear();
                    session.poll_transmit(&mut out);
                    black_box(out.len())
                })
            },
        );
    }
    group.finish();
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
            // PUBLISH QoS 1, topic "bench/engine" (12 bytes), packet id, 64-byte payload.
            input.put_slice(&[0x32, 2 + 12 + 2 + 64, 0, 12]);
            input.put_slice(b"bench/engine");
            input.put_u16(id);
            input.put_slice(&[7; 64]);
            session.handle_input(now, &mut input);
            let Some(Event::Publish { publish, .. }) = session.poll_event() else {
                panic!("no publish event");
            };
            out.clear();
            session.poll_transmit(&mut out);
            black_box((publish, out.len()))
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
                    input.put_slice(&[0x34, 2 + 12 + 2 + 64, 0, 12]);
                    input.put_slice(b"bench/engine");
                    input.put_u16(id);
                    input.put_slice(&[7; 64]);
                    awaiting.push_back(id);
                    if awaiting.len() > lag {
                        // PUBREL for the oldest.
                        input.put_slice(&[0x62, 2]);
                        input.put_u16(awaiting.pop_front().unwrap());
                    }
                    session.handle_input(now, &mut input);
                    let Some(Event::Publish { publish, .. }) = session.poll_event() else {
                        panic!("no publish event");
                    };
                    out.clear();
                    session.poll_transmit(&mut out);
                    black_box((publish, out.len()))
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, server_deliver, server_receive);
criterion_main!(benches);
