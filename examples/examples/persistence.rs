//! Measures what durability costs: QoS 1 throughput into persistent sessions with the redb
//! store and in memory, then startup recovery time and store size with 10k and 100k stored
//! messages.
//!
//! ```sh
//! cargo run --release -p tern-examples --example persistence [MESSAGES_PER_PUBLISHER]
//! ```
//!
//! Four publishers send QoS 1 messages (64-byte payloads, 64 in flight each, or `TERN_WINDOW`) over loopback
//! to an in-process broker; one persistent subscriber is online (and acknowledges), one is
//! offline (its queue grows), so each message makes two durable copies (`TERN_NO_ONLINE=1`:
//! the online one does not subscribe, one copy). The figure is messages acknowledged to the
//! publishers per second, the median of `TERN_RUNS` runs (default 3) of each mode,
//! alternated. Beside it: the store thread's CPU time per message (from `/proc`, so it does
//! not depend on how loaded the machine is) and the fsync latency of the store's file system,
//! which bounds a durable run at (messages in flight) / (fsync time).
//! `TERN_GROUP_MS` sets `persistence_group_commit_ms`. The store lives in a temporary
//! directory, removed at the end.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tern_broker::{Broker, BrokerHandle, Config, RedbStorage};
use tern_codec::{
    Ack, Connect, ConnectProperties, Decoder, MAX_PACKET_SIZE, MqttString, Packet, PacketId,
    ProtocolVersion, Publish, QoS, Subscribe, Subscription, SubscriptionOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PUBLISHERS: usize = 4;

/// QoS 1 messages each publisher keeps in flight (`TERN_WINDOW`, default 64).
fn window() -> usize {
    std::env::var("TERN_WINDOW")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(64)
}

struct Wire {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
    out: BytesMut,
}

impl Wire {
    async fn connect(addr: SocketAddr, client_id: &str, clean: bool, expiry: u32) -> Wire {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let mut wire = Wire {
            stream,
            decoder: Decoder::with_version(ProtocolVersion::V5, MAX_PACKET_SIZE),
            buf: BytesMut::new(),
            out: BytesMut::new(),
        };
        wire.queue(&Packet::from(Connect {
            protocol: ProtocolVersion::V5,
            clean_start: clean,
            keep_alive: 0,
            client_id: MqttString::try_from(client_id).expect("id"),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties {
                session_expiry_interval: Some(expiry),
                ..ConnectProperties::default()
            },
        }));
        wire.flush().await;
        assert!(matches!(wire.recv().await, Some(Packet::ConnAck(_))));
        wire
    }

    fn queue(&mut self, packet: &Packet) {
        packet
            .encode(ProtocolVersion::V5, &mut self.out)
            .expect("encodes");
    }

    async fn flush(&mut self) {
        self.stream.write_all(&self.out).await.expect("write");
        self.out.clear();
    }

    async fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.buf).expect("valid packet") {
                return Some(packet);
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// The packets already read and decodable, without waiting.
    fn try_recv(&mut self) -> Option<Packet> {
        self.decoder.decode(&mut self.buf).expect("valid packet")
    }

    /// DISCONNECT, then waits for the broker to close: the session is offline after it.
    async fn disconnect(mut self) {
        self.queue(&Packet::Disconnect(Default::default()));
        self.flush().await;
        while self.recv().await.is_some() {}
    }

    async fn subscribe(&mut self, filter: &str) {
        self.queue(&Packet::Subscribe(Subscribe {
            packet_id: PacketId::new(1).expect("nonzero"),
            subscriptions: tern_codec::smallvec::smallvec![Subscription {
                filter: MqttString::try_from(filter).expect("filter"),
                options: SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    ..SubscriptionOptions::default()
                },
            }],
            properties: Default::default(),
        }));
        self.flush().await;
        assert!(matches!(self.recv().await, Some(Packet::SubAck(_))));
    }
}

/// Publishes `count` QoS 1 messages with `window()` in flight; returns when all are acked.
async fn publish(addr: SocketAddr, name: String, count: usize) {
    let mut wire = Wire::connect(addr, &name, true, 0).await;
    let payload = Bytes::from(vec![b'x'; 64]);
    let topic = MqttString::try_from(format!("bench/{name}")).expect("topic");
    let window = window();
    let mut inflight = HashSet::new();
    let (mut sent, mut acked, mut next_id) = (0, 0, 0u16);
    while acked < count {
        while sent < count && inflight.len() < window {
            next_id = next_id % u16::MAX + 1;
            let id = PacketId::new(next_id).expect("nonzero");
            inflight.insert(id);
            wire.queue(&Packet::Publish(Publish {
                qos: QoS::AtLeastOnce,
                topic: topic.clone(),
                packet_id: Some(id),
                payload: payload.clone(),
                ..Publish::default()
            }));
            sent += 1;
        }
        wire.flush().await;
        let mut packet = wire.recv().await;
        while let Some(p) = packet {
            if let Packet::PubAck(a) = p {
                assert!(inflight.remove(&a.packet_id));
                acked += 1;
            }
            packet = wire.try_recv();
        }
    }
}

/// Acknowledges everything it gets until the connection ends.
async fn consume(mut wire: Wire) {
    while let Some(packet) = wire.recv().await {
        let mut next = Some(packet);
        while let Some(p) = next {
            if let Packet::Publish(p) = p
                && let Some(id) = p.packet_id
            {
                wire.queue(&Packet::PubAck(Ack::new(id)));
            }
            next = wire.try_recv();
        }
        if wire.stream.write_all(&wire.out).await.is_err() {
            return;
        }
        wire.out.clear();
    }
}

fn config() -> Config {
    let mut config = Config::with_listeners(["127.0.0.1:0".parse().expect("addr")]);
    config.sys_interval = 0;
    config.session.max_queued_messages = 10_000_000;
    config.session.max_queued_bytes = 4 << 30;
    if let Some(ms) = std::env::var("TERN_GROUP_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.persistence_group_commit_ms = ms;
    }
    config
}

async fn start(store: Option<&Path>) -> BrokerHandle {
    let broker = Broker::new(config());
    let broker = match store {
        Some(dir) => broker.with_storage(Arc::new(RedbStorage::open(dir).expect("store opens"))),
        None => broker,
    };
    broker.start().await.expect("broker starts")
}

/// CPU seconds the thread named `name` of this process has used, if there is one (Linux).
fn thread_cpu(name: &str) -> Option<f64> {
    let ticks = 100.0; // USER_HZ on every Linux platform Rust supports
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
        // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        let utime: f64 = fields.get(11)?.parse().ok()?;
        let stime: f64 = fields.get(12)?.parse().ok()?;
        return Some((utime + stime) / ticks);
    }
    None
}

/// Median fsync latency of a small file in `dir` (after a 4 KiB write each time).
fn fsync_latency(dir: &Path) -> Duration {
    use std::io::Write;
    let _ = std::fs::create_dir_all(dir);
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).expect("probe file");
    let mut times: Vec<Duration> = (0..50)
        .map(|_| {
            file.write_all(&[0; 4096]).expect("probe write");
            let started = Instant::now();
            file.sync_data().expect("fsync");
            started.elapsed()
        })
        .collect();
    let _ = std::fs::remove_file(&path);
    times.sort();
    times[times.len() / 2]
}

/// Messages per second acknowledged to the publishers, and the store thread's CPU seconds.
async fn throughput(store: Option<&Path>, per_publisher: usize) -> (f64, f64) {
    let broker = start(store).await;
    let addr = broker.local_addrs()[0];
    let mut offline = Wire::connect(addr, "offline", true, 3600).await;
    offline.subscribe("bench/#").await;
    offline.disconnect().await;
    let mut online = Wire::connect(addr, "online", true, 3600).await;
    if std::env::var_os("TERN_NO_ONLINE").is_none() {
        online.subscribe("bench/#").await;
    }
    let consumer = tokio::spawn(consume(online));
    let started = Instant::now();
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|i| tokio::spawn(publish(addr, format!("p{i}"), per_publisher)))
        .collect();
    for p in publishers {
        p.await.expect("publisher");
    }
    let rate = (PUBLISHERS * per_publisher) as f64 / started.elapsed().as_secs_f64();
    // Read before the shutdown, which ends the thread.
    let store_cpu = thread_cpu("tern-store").unwrap_or(0.0);
    broker.shutdown().await;
    consumer.abort();
    (rate, store_cpu)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Stores `messages` for an offline session, restarts: (recovery time, store bytes).
async fn recovery(dir: &Path, messages: usize) -> (Duration, u64) {
    let broker = start(Some(dir)).await;
    let addr = broker.local_addrs()[0];
    let mut offline = Wire::connect(addr, "offline", true, 3600).await;
    offline.subscribe("bench/#").await;
    offline.disconnect().await;
    let per = messages / PUBLISHERS;
    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|i| tokio::spawn(publish(addr, format!("p{i}"), per)))
        .collect();
    for p in publishers {
        p.await.expect("publisher");
    }
    broker.shutdown().await;
    let bytes =
        std::fs::metadata(dir.join(tern_broker::storage::DATABASE_FILE)).map_or(0, |m| m.len());
    let started = Instant::now();
    let broker = start(Some(dir)).await;
    let elapsed = started.elapsed();
    let queued = broker.stats().queued_messages;
    assert_eq!(queued as usize, per * PUBLISHERS, "every message recovered");
    broker.shutdown().await;
    (elapsed, bytes)
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tern-persistence-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::main]
async fn main() {
    let per_publisher = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(25_000);
    let total = per_publisher * PUBLISHERS;
    let runs = std::env::var("TERN_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3_usize)
        .max(1);
    let (mut memory, mut durable, mut store_cpu) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        memory.push(throughput(None, per_publisher).await.0);
        let dir = scratch("throughput");
        let (rate, cpu) = throughput(Some(&dir), per_publisher).await;
        let _ = std::fs::remove_dir_all(&dir);
        durable.push(rate);
        store_cpu.push(cpu);
    }
    let (memory, durable, store_cpu) = (median(memory), median(durable), median(store_cpu));
    let fsync = fsync_latency(&scratch("fsync"));
    let _ = std::fs::remove_dir_all(scratch("fsync"));
    let in_flight = PUBLISHERS * window();
    println!(
        "QoS 1 into persistent sessions, {total} messages, {PUBLISHERS} publishers, {} in flight each, median of {runs} runs:",
        window()
    );
    println!("  in memory   {memory:>10.0} msg/s");
    println!(
        "  redb store  {durable:>10.0} msg/s  ({:.1}x slower), store thread {:.2} µs CPU/message",
        memory / durable,
        store_cpu * 1e6 / total as f64
    );
    println!(
        "  fsync {:.2} ms: {in_flight} messages in flight bound a durable run at {:.0} msg/s",
        fsync.as_secs_f64() * 1e3,
        in_flight as f64 / fsync.as_secs_f64()
    );
    for n in [10_000, 100_000] {
        let dir = scratch(&format!("recovery-{n}"));
        let (elapsed, bytes) = recovery(&dir, n).await;
        let _ = std::fs::remove_dir_all(&dir);
        println!(
            "  {n:>6} stored messages: recovered in {:.0} ms, store {:.1} MiB ({} bytes/message)",
            elapsed.as_secs_f64() * 1000.0,
            bytes as f64 / (1 << 20) as f64,
            bytes / n as u64
        );
    }
}
