//! Crash safety of the real `ternd`: QoS 1 and QoS 2 publishers at full speed into persistent
//! sessions (online and offline) and retained topics, the broker killed with SIGKILL at
//! seeded random points, restarted on the same data directory, the subscribers resumed.
//! Every message whose PUBACK/PUBCOMP its publisher received must be delivered (QoS 1 at
//! least once, QoS 2 exactly once) and every acknowledged retained message must be there.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::num::NonZeroU16;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tern_codec::{
    Ack, Connect, ConnectProperties, Decoder, MAX_PACKET_SIZE, MqttString, Packet, PacketId,
    ProtocolVersion, Publish, QoS, ReasonCode, Subscribe, Subscription, SubscriptionOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The generous "in time" bound of every wait.
const IN_TIME: Duration = Duration::from_secs(20);
const ROUNDS: u64 = 4;
const SEED: u64 = 0x7e57_c0de_2026_0007;
/// QoS 1/2 messages a publisher keeps in flight.
const WINDOW: usize = 64;

/// xorshift64*: the kill points, reproducible from `SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// `ternd` on a loopback port with its data in `dir`.
struct Ternd {
    child: Child,
    addr: SocketAddr,
}

fn start_ternd(dir: &Path, config: &Path) -> Ternd {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ternd"))
        .arg("-c")
        .arg(config)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ternd starts");
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert!(line.contains("listening on"), "startup line: {line:?}");
    let addr = line.trim().rsplit(' ').next().unwrap().parse().unwrap();
    Ternd { child, addr }
}

impl Ternd {
    /// SIGKILL: no shutdown, no flush, nothing.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

/// A minimal MQTT 5.0 peer over TCP.
struct Wire {
    stream: TcpStream,
    decoder: Decoder,
    buf: BytesMut,
}

impl Wire {
    async fn connect(addr: SocketAddr, client_id: &str, clean: bool, expiry: u32) -> (Wire, bool) {
        let stream = tokio::time::timeout(IN_TIME, TcpStream::connect(addr))
            .await
            .expect("connect in time")
            .expect("connect");
        stream.set_nodelay(true).unwrap();
        let mut wire = Wire {
            stream,
            decoder: Decoder::with_version(ProtocolVersion::V5, MAX_PACKET_SIZE),
            buf: BytesMut::new(),
        };
        wire.send(&Packet::from(Connect {
            protocol: ProtocolVersion::V5,
            clean_start: clean,
            keep_alive: 0,
            client_id: MqttString::try_from(client_id).unwrap(),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties {
                session_expiry_interval: Some(expiry),
                ..ConnectProperties::default()
            },
        }))
        .await
        .expect("CONNECT sent");
        match wire.recv().await {
            Some(Packet::ConnAck(c)) => {
                assert_eq!(c.reason_code, ReasonCode::Success, "{client_id}: {c:?}");
                (wire, c.session_present)
            }
            other => panic!("{client_id}: expected CONNACK, got {other:?}"),
        }
    }

    async fn send(&mut self, packet: &Packet) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        packet.encode(ProtocolVersion::V5, &mut out).unwrap();
        self.stream.write_all(&out).await
    }

    /// The next packet; `None` once the connection is gone.
    async fn recv(&mut self) -> Option<Packet> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(packet)) => return Some(packet),
                Ok(None) => {}
                Err(e) => panic!("bad packet from ternd: {e}"),
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    async fn subscribe(&mut self, filter: &str, qos: QoS) {
        self.send(&Packet::Subscribe(Subscribe {
            packet_id: NonZeroU16::new(1).unwrap(),
            subscriptions: tern_codec::smallvec::smallvec![Subscription {
                filter: MqttString::try_from(filter).unwrap(),
                options: SubscriptionOptions {
                    qos,
                    ..SubscriptionOptions::default()
                },
            }],
            properties: Default::default(),
        }))
        .await
        .unwrap();
        match self.recv().await {
            Some(Packet::SubAck(_)) => {}
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }
}

/// What a subscriber received, and its own QoS 2 state (kept across its reconnects, as a
/// client's session state is).
#[derive(Default)]
struct Received {
    counts: HashMap<Bytes, usize>,
    /// Inbound QoS 2 identifiers answered with PUBREC, waiting for PUBREL [MQTT-4.3.3-8].
    awaiting_pubrel: HashSet<PacketId>,
}

/// Reads and acknowledges until the connection ends (or, with `until`, until every one of
/// those payloads arrived and a ping round trip shows nothing more).
async fn consume(mut wire: Wire, got: Arc<Mutex<Received>>, until: Option<BTreeSet<Bytes>>) {
    let mut pinged = false;
    loop {
        if let Some(until) = &until
            && !pinged
            && until.iter().all(|p| got.lock().counts.contains_key(p))
        {
            // Everything expected arrived; what follows the PINGRESP is not waited for.
            wire.send(&Packet::PingReq).await.unwrap();
            pinged = true;
        }
        let Some(packet) = wire.recv().await else {
            assert!(until.is_none(), "connection lost during the final check");
            return;
        };
        let reply = match packet {
            Packet::Publish(p) => {
                let id = p.packet_id;
                let mut got = got.lock();
                match p.qos {
                    QoS::AtMostOnce => {
                        *got.counts.entry(p.payload.clone()).or_default() += 1;
                        None
                    }
                    QoS::AtLeastOnce => {
                        *got.counts.entry(p.payload.clone()).or_default() += 1;
                        Some(Packet::PubAck(Ack::new(id.unwrap())))
                    }
                    QoS::ExactlyOnce => {
                        // [MQTT-4.3.3-9]: a PUBLISH with an identifier waiting for PUBREL is
                        // the same message again; it is delivered once.
                        if got.awaiting_pubrel.insert(id.unwrap()) {
                            *got.counts.entry(p.payload.clone()).or_default() += 1;
                        }
                        Some(Packet::PubRec(Ack::new(id.unwrap())))
                    }
                }
            }
            Packet::PubRel(rel) => {
                got.lock().awaiting_pubrel.remove(&rel.packet_id);
                Some(Packet::PubComp(Ack::new(rel.packet_id)))
            }
            Packet::PingResp if pinged => return,
            other => panic!("unexpected {other:?}"),
        };
        if let Some(reply) = reply
            && wire.send(&reply).await.is_err()
        {
            assert!(until.is_none(), "connection lost during the final check");
            return;
        }
    }
}

/// Publishes numbered messages at full speed, `WINDOW` in flight, until the connection
/// ends; records the payloads whose PUBACK (QoS 1) or PUBCOMP (QoS 2) arrived.
async fn publish_until_killed(
    addr: SocketAddr,
    client_id: String,
    qos: QoS,
    round: u64,
    acked: Arc<Mutex<Vec<(String, Bytes)>>>,
) {
    let (mut wire, _) = Wire::connect(addr, &client_id, true, 0).await;
    let mut inflight: HashMap<PacketId, (String, Bytes)> = HashMap::new();
    let mut next = 0u64;
    let mut next_id = 0u16;
    loop {
        while inflight.len() < WINDOW {
            next_id = next_id % u16::MAX + 1;
            let id = PacketId::new(next_id).unwrap();
            if inflight.contains_key(&id) {
                break;
            }
            let topic = match qos {
                QoS::ExactlyOnce => "c/q2".to_owned(),
                _ => format!("c/q1/{round}/{next}"),
            };
            let payload = Bytes::from(format!("{client_id}-{round}-{next}"));
            next += 1;
            let publish = Publish {
                qos,
                // The QoS 1 messages are retained too, each on a topic of its own.
                retain: qos == QoS::AtLeastOnce,
                topic: MqttString::try_from(topic.as_str()).unwrap(),
                packet_id: Some(id),
                payload: payload.clone(),
                ..Publish::default()
            };
            if wire.send(&Packet::Publish(publish)).await.is_err() {
                return;
            }
            inflight.insert(id, (topic, payload));
        }
        let reply = match wire.recv().await {
            None => return,
            Some(Packet::PubAck(a)) => {
                assert_eq!(a.reason_code, ReasonCode::Success, "{a:?}");
                let done = inflight
                    .remove(&a.packet_id)
                    .expect("PUBACK of a sent message");
                acked.lock().push(done);
                None
            }
            Some(Packet::PubRec(r)) => {
                assert_eq!(r.reason_code, ReasonCode::Success, "{r:?}");
                Some(Packet::PubRel(Ack::new(r.packet_id)))
            }
            Some(Packet::PubComp(c)) => {
                let done = inflight
                    .remove(&c.packet_id)
                    .expect("PUBCOMP of a sent message");
                acked.lock().push(done);
                None
            }
            Some(other) => panic!("publisher got {other:?}"),
        };
        if let Some(reply) = reply
            && wire.send(&reply).await.is_err()
        {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_messages_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("ternd.toml");
    std::fs::write(
        &config,
        "sys_interval = 0\npersistence_group_commit_ms = 20\n\
         [session]\nmax_queued_messages = 10000000\nmax_queued_bytes = 1000000000\n",
    )
    .unwrap();
    let mut rng = Rng(SEED);
    // Persistent subscribers: online ones resume in every round, offline ones only at the end.
    let online = [
        ("on-q1", "c/q1/#", QoS::AtLeastOnce),
        ("on-q2", "c/q2", QoS::ExactlyOnce),
    ];
    let offline = [
        ("off-q1", "c/q1/#", QoS::AtLeastOnce),
        ("off-q2", "c/q2", QoS::ExactlyOnce),
    ];
    let received: HashMap<&str, Arc<Mutex<Received>>> = online
        .iter()
        .chain(&offline)
        .map(|(id, _, _)| (*id, Arc::default()))
        .collect();
    let acked_q1 = Arc::new(Mutex::new(Vec::new()));
    let acked_q2 = Arc::new(Mutex::new(Vec::new()));

    for round in 0..ROUNDS {
        let ternd = start_ternd(&data, &config);
        let addr = ternd.addr;
        let mut tasks = Vec::new();
        for (id, filter, qos) in online {
            let (mut wire, present) = Wire::connect(addr, id, round == 0, 3600).await;
            if round == 0 {
                wire.subscribe(filter, qos).await;
            } else {
                // [MQTT-3.2.2-3]: the session survived the crash.
                assert!(present, "round {round}: {id} lost its session");
            }
            tasks.push(tokio::spawn(consume(wire, received[id].clone(), None)));
        }
        if round == 0 {
            for (id, filter, qos) in offline {
                let (mut wire, _) = Wire::connect(addr, id, true, 3600).await;
                wire.subscribe(filter, qos).await;
                wire.send(&Packet::Disconnect(Default::default()))
                    .await
                    .unwrap();
            }
        }
        for (name, qos, acked) in [
            ("p1", QoS::AtLeastOnce, &acked_q1),
            ("p2", QoS::ExactlyOnce, &acked_q2),
        ] {
            tasks.push(tokio::spawn(publish_until_killed(
                addr,
                name.to_owned(),
                qos,
                round,
                acked.clone(),
            )));
        }
        // A random point within the first 1.2 s of full-speed publishing.
        let delay = Duration::from_millis(200 + rng.next() % 1000);
        tokio::time::sleep(delay).await;
        tokio::task::spawn_blocking(move || ternd.kill())
            .await
            .unwrap();
        for task in tasks {
            tokio::time::timeout(IN_TIME, task)
                .await
                .expect("clients notice the crash in time")
                .unwrap();
        }
        eprintln!(
            "round {round}: killed after {delay:?}; acknowledged so far: {} QoS 1, {} QoS 2",
            acked_q1.lock().len(),
            acked_q2.lock().len()
        );
    }

    // The last restart: every subscriber resumes and must get what was acknowledged.
    let ternd = start_ternd(&data, &config);
    let addr = ternd.addr;
    let q1: BTreeSet<Bytes> = acked_q1.lock().iter().map(|(_, p)| p.clone()).collect();
    let q2: BTreeSet<Bytes> = acked_q2.lock().iter().map(|(_, p)| p.clone()).collect();
    assert!(
        !q1.is_empty() && !q2.is_empty(),
        "the publishers got acknowledgements"
    );
    let mut checks = Vec::new();
    for (id, _, qos) in online.iter().chain(&offline) {
        let (wire, present) = Wire::connect(addr, id, false, 3600).await;
        assert!(present, "{id} lost its session");
        let expected = if *qos == QoS::ExactlyOnce { &q2 } else { &q1 };
        checks.push(tokio::spawn(consume(
            wire,
            received[id].clone(),
            Some(expected.clone()),
        )));
    }
    for check in checks {
        // On a timeout, the check below names what is missing.
        if let Ok(result) = tokio::time::timeout(IN_TIME, check).await {
            result.unwrap();
        }
    }
    for (id, _, qos) in online.iter().chain(&offline) {
        let got = received[id].lock();
        let expected = if *qos == QoS::ExactlyOnce { &q2 } else { &q1 };
        let missing: Vec<_> = expected
            .iter()
            .filter(|p| !got.counts.contains_key(*p))
            .collect();
        assert!(
            missing.is_empty(),
            "{id} misses {} acknowledged messages, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
        if *qos == QoS::ExactlyOnce {
            // Exactly once: no QoS 2 message, acknowledged or not, came twice.
            let twice: Vec<_> = got.counts.iter().filter(|(_, n)| **n > 1).collect();
            assert!(twice.is_empty(), "{id} got these more than once: {twice:?}");
        }
    }

    // Every acknowledged retained message is there.
    let (mut wire, _) = Wire::connect(addr, "retained-check", true, 0).await;
    wire.subscribe("c/q1/#", QoS::AtMostOnce).await;
    let retained = Arc::new(Mutex::new(Received::default()));
    let _ = tokio::time::timeout(IN_TIME, consume(wire, retained.clone(), Some(q1.clone()))).await;
    let retained = retained.lock();
    let missing: Vec<_> = q1
        .iter()
        .filter(|p| !retained.counts.contains_key(*p))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged retained messages missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    eprintln!(
        "checked {} QoS 1 (retained too) and {} QoS 2 acknowledged messages over {ROUNDS} crashes",
        q1.len(),
        q2.len()
    );
    ternd.kill();
}
