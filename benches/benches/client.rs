//! Client publish throughput: tern-client side by side with rumqttc against the same
//! in-process ternd, at QoS 0 and QoS 1 (issue #8).
//!
//! - The broker runs on its own multi-threaded tokio runtime (2 workers). Each client runs on
//!   a current-thread runtime on the benchmark's main thread, so the client's whole cost (the
//!   application's publish calls and the client's I/O task) is that thread's CPU time, read
//!   from `/proc/thread-self/schedstat` (nanoseconds on CPU) before and after each batch.
//! - One connection per client and QoS, MQTT 3.1.1, reused across iterations. An iteration
//!   publishes [`MESSAGES`] messages of 64 bytes to `bench/client` (no subscriber) and ends
//!   when the client reports all of them done: written (QoS 0) or PUBACKed (QoS 1).
//! - Same limits for both: 100 messages in flight, a request queue of 1,000.
//!   - tern: `Client::enqueue` for every message (pipelined), then every token awaited.
//!   - rumqttc: `AsyncClient::publish` for every message from one task while another polls
//!     the `EventLoop` until it saw the last `Outgoing::Publish` (QoS 0) or `PubAck` (QoS 1).
//!
//! Besides criterion's report, a summary line per case gives messages per second and client
//! CPU nanoseconds per message over all timed iterations.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use tern_broker::{Broker, BrokerHandle, Config};

/// Messages per iteration.
const MESSAGES: u64 = 10_000;
const PAYLOAD: [u8; 64] = [7; 64];
const INFLIGHT: u16 = 100;
const QUEUE: usize = 1000;

/// Nanoseconds this thread has spent on a CPU.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Totals of one case: (wall time, CPU ns, messages).
type Totals = BTreeMap<String, (Duration, u64, u64)>;

thread_local! {
    static TOTALS: RefCell<Totals> = const { RefCell::new(BTreeMap::new()) };
}

fn record(case: &str, wall: Duration, cpu: u64, messages: u64) {
    TOTALS.with(|t| {
        let mut t = t.borrow_mut();
        let entry = t.entry(case.to_owned()).or_default();
        entry.0 += wall;
        entry.1 += cpu;
        entry.2 += messages;
    });
}

fn broker() -> (tokio::runtime::Runtime, BrokerHandle, u16) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("broker runtime");
    let mut config = Config::with_listeners(["127.0.0.1:0".parse().unwrap()]);
    config.sys_interval = 0;
    let broker = runtime
        .block_on(Broker::new(config).start())
        .expect("ternd starts");
    let port = broker.local_addrs()[0].port();
    (runtime, broker, port)
}

fn tern_client(rt: &tokio::runtime::Runtime, port: u16) -> tern_client::Client {
    rt.block_on(
        tern_client::Client::builder(&format!("mqtt://127.0.0.1:{port}"))
            .expect("url")
            .protocol(tern_client::ProtocolVersion::V3_1_1)
            .client_id("bench-tern")
            .max_inflight(INFLIGHT)
            .offline_queue(QUEUE, tern_client::OverflowPolicy::Wait)
            .connect(),
    )
    .expect("tern-client connects")
}

async fn tern_batch(client: &tern_client::Client, qos: tern_client::QoS) {
    let mut tokens = std::collections::VecDeque::with_capacity(QUEUE);
    for _ in 0..MESSAGES {
        let message = tern_client::OutgoingMessage::new("bench/client", &PAYLOAD[..]).qos(qos);
        tokens.push_back(client.enqueue(message).await.expect("queued"));
        // Tokens are awaited as they complete, so that they stay bounded.
        while tokens.len() >= QUEUE {
            tokens.pop_front().unwrap().await.expect("published");
        }
    }
    for token in tokens {
        token.await.expect("published");
    }
}

struct Rumqtt {
    client: rumqttc::AsyncClient,
    eventloop: rumqttc::EventLoop,
}

fn rumqtt_client(rt: &tokio::runtime::Runtime, port: u16) -> Rumqtt {
    let mut options = rumqttc::MqttOptions::new("bench-rumqttc", "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(60));
    options.set_inflight(INFLIGHT);
    let (client, mut eventloop) = rumqttc::AsyncClient::new(options, QUEUE);
    rt.block_on(async {
        loop {
            match eventloop.poll().await.expect("rumqttc connects") {
                rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(_)) => break,
                _ => continue,
            }
        }
    });
    Rumqtt { client, eventloop }
}

async fn rumqtt_batch(r: &mut Rumqtt, qos: rumqttc::QoS) {
    let client = r.client.clone();
    let publish = async move {
        for _ in 0..MESSAGES {
            client
                .publish("bench/client", qos, false, &PAYLOAD[..])
                .await
                .expect("queued");
        }
    };
    let events = async {
        let mut done = 0;
        while done < MESSAGES {
            match r.eventloop.poll().await.expect("rumqttc runs") {
                rumqttc::Event::Outgoing(rumqttc::Outgoing::Publish(_))
                    if qos == rumqttc::QoS::AtMostOnce =>
                {
                    done += 1
                }
                rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) => done += 1,
                _ => {}
            }
        }
    };
    tokio::join!(publish, events);
}

fn client_publish(c: &mut Criterion) {
    let (_broker_rt, _broker, port) = broker();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("client runtime");
    let tern = tern_client(&rt, port);
    let mut rumqtt = rumqtt_client(&rt, port);

    let mut group = c.benchmark_group("client/publish");
    group.throughput(Throughput::Elements(MESSAGES));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    for (qos_name, tern_qos, rumqtt_qos) in [
        (
            "qos0",
            tern_client::QoS::AtMostOnce,
            rumqttc::QoS::AtMostOnce,
        ),
        (
            "qos1",
            tern_client::QoS::AtLeastOnce,
            rumqttc::QoS::AtLeastOnce,
        ),
    ] {
        group.bench_function(BenchmarkId::new("tern", qos_name), |b| {
            b.iter_custom(|iters| {
                let mut wall = Duration::ZERO;
                for _ in 0..iters {
                    let (cpu0, t0) = (thread_cpu_ns(), Instant::now());
                    rt.block_on(tern_batch(&tern, tern_qos));
                    let elapsed = t0.elapsed();
                    record(
                        &format!("{qos_name}/tern"),
                        elapsed,
                        thread_cpu_ns() - cpu0,
                        MESSAGES,
                    );
                    wall += elapsed;
                }
                wall
            });
        });
        group.bench_function(BenchmarkId::new("rumqttc", qos_name), |b| {
            b.iter_custom(|iters| {
                let mut wall = Duration::ZERO;
                for _ in 0..iters {
                    let (cpu0, t0) = (thread_cpu_ns(), Instant::now());
                    rt.block_on(rumqtt_batch(&mut rumqtt, rumqtt_qos));
                    let elapsed = t0.elapsed();
                    record(
                        &format!("{qos_name}/rumqttc"),
                        elapsed,
                        thread_cpu_ns() - cpu0,
                        MESSAGES,
                    );
                    wall += elapsed;
                }
                wall
            });
        });
    }
    group.finish();
    rt.block_on(tern.disconnect());
    TOTALS.with(|t| {
        println!("\nclient/publish summary (all timed iterations, warm-up included):");
        println!("| case | msg/s | client CPU ns per message |");
        println!("|---|---|---|");
        for (case, (wall, cpu, messages)) in t.borrow().iter() {
            println!(
                "| {case} | {:.0} | {:.0} |",
                *messages as f64 / wall.as_secs_f64(),
                *cpu as f64 / *messages as f64
            );
        }
    });
}

criterion_group!(benches, client_publish);
criterion_main!(benches);
