//! `tern bench pubsub`: publishers and subscribers on raw connections.
//!
//! - `--count` messages in all, shared out over `--publishers`; publisher `i` publishes to
//!   `--topic` with `%i` replaced by `i`. Every subscriber subscribes to `--sub-topic`.
//! - The payload (`--size` bytes, at least 8) starts with the publish time (nanoseconds since
//!   the bench started, little endian): latency is publish to receipt, in one process.
//! - QoS 1/2 publishers keep up to `--inflight` messages unacknowledged (capped by the
//!   broker's Receive Maximum) and count PUBACK / PUBCOMP.
//! - `--rate` paces the total publish rate; without it publishers send as fast as they can.
//! - Expected receipts are the messages sent times the subscribers whose filter matches the
//!   publisher's topic; the bench waits until all arrived or none arrived for
//!   `--drain-timeout` seconds, then `lost` = expected − received.
//! - `msgs_per_s` is messages received per second from the first publish to the last receipt
//!   (messages sent per second when there are no subscribers).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use hdrhistogram::Histogram;
use tern_codec::{MqttString, Packet, PacketType, Publish, QoS};
use tokio::task::JoinSet;

use super::wire::{self, Wire};
use super::{Common, histogram, percentiles, print_json};
use crate::Failure;
use crate::connection::parse_qos;

/// `tern bench pubsub` flags.
#[derive(Args, Debug, Clone)]
#[command(disable_help_flag = true)]
pub(crate) struct PubsubArgs {
    #[command(flatten)]
    common: Common,
    /// Publishing connections.
    #[arg(long, default_value_t = 1)]
    publishers: usize,
    /// Subscribing connections.
    #[arg(long, default_value_t = 1)]
    subscribers: usize,
    /// QoS of the publishes and the subscriptions.
    #[arg(long, default_value = "0", value_parser = parse_qos)]
    qos: QoS,
    /// Payload size in bytes (at least 8: the timestamp).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// The publishers' topic; `%i` is the publisher's index.
    #[arg(long, default_value = "bench/%i")]
    topic: String,
    /// The subscribers' filter.
    #[arg(long = "sub-topic", default_value = "bench/#")]
    sub_topic: String,
    /// Messages published in all (over every publisher).
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Total publish rate in messages per second (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// QoS 1/2 messages in flight per publisher.
    #[arg(long, default_value_t = 64)]
    inflight: u16,
    /// Seconds without any receipt after which the remaining messages count as lost.
    #[arg(long = "drain-timeout", default_value_t = 10)]
    drain_timeout: u64,
    /// Extra wildcard subscriptions that match no bench topic, to load the router.
    #[arg(long = "extra-subs", default_value_t = 0)]
    extra_subs: usize,
    /// Connections holding the extra subscriptions.
    #[arg(long = "extra-sub-connections", default_value_t = 3)]
    extra_sub_connections: usize,
    /// Publishes encoded into one write at most.
    #[arg(long, default_value_t = 256)]
    batch: usize,
}

/// Counters shared with the progress bar and the coordinator.
#[derive(Default)]
struct Shared {
    sent: AtomicU64,
    received: AtomicU64,
    /// Nanoseconds since the start of the last receipt.
    last_receipt_ns: AtomicU64,
    stop: AtomicBool,
    stop_notify: tokio::sync::Notify,
}

impl Shared {
    fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.stop_notify.notify_waiters();
    }

    async fn stopped(&self) {
        loop {
            let notified = self.stop_notify.notified();
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }
}

/// What a publisher did.
struct PubReport {
    sent: u64,
    acked: u64,
    failed: u64,
}

/// Runs `tern bench pubsub`.
pub(crate) async fn run(args: PubsubArgs) -> Result<(), Failure> {
    if args.publishers == 0 {
        return Err(Failure::other("--publishers must be at least 1"));
    }
    tern_topic::validate_topic_filter(&args.sub_topic)
        .map_err(|e| Failure::other(format!("--sub-topic: {e}")))?;
    let topics: Vec<String> = (0..args.publishers)
        .map(|i| args.topic.replace("%i", &i.to_string()))
        .collect();
    for t in &topics {
        tern_topic::validate_topic_name(t)
            .map_err(|e| Failure::other(format!("--topic {t:?}: {e}")))?;
    }
    let addr = format!("{}:{}", args.common.host, args.common.port);
    let common = &args.common;
    let tag = format!("tb{}", std::process::id());
    let base = Instant::now();
    let shared = Arc::new(Shared::default());

    // Extra subscriptions first, so that the router holds them before the traffic starts.
    let mut extras = JoinSet::new();
    let extra_conns = if args.extra_subs == 0 {
        0
    } else {
        args.extra_sub_connections.clamp(1, args.extra_subs)
    };
    let mut ready = Vec::new();
    for c in 0..extra_conns {
        let (addr, tag, common, shared) =
            (addr.clone(), tag.clone(), common.clone(), shared.clone());
        let total = args.extra_subs;
        ready.push(tokio::spawn(async move {
            let mut wire = Wire::connect(
                &addr,
                common.version,
                &format!("{tag}-x{c}"),
                common.keep_alive,
                common.connect_timeout(),
            )
            .await?;
            // Filters n = c, c + conns, …: half `other/{n}/+/x`, half `other/+/{n}/#`.
            let filters = (c..total).step_by(extra_conns).map(|n| {
                if n % 2 == 0 {
                    format!("other/{n}/+/x")
                } else {
                    format!("other/+/{n}/#")
                }
            });
            wire.subscribe(filters, QoS::AtMostOnce, 100, 16).await?;
            Ok::<_, String>((wire, shared))
        }));
    }
    for handle in ready {
        let (wire, shared) = join(handle).await?;
        let keep_alive = common.keep_alive;
        extras.spawn(idle(wire, shared, keep_alive));
    }

    // Subscribers.
    let mut subscribing = Vec::new();
    for s in 0..args.subscribers {
        let (addr, tag, common) = (addr.clone(), tag.clone(), common.clone());
        let (filter, qos) = (args.sub_topic.clone(), args.qos);
        subscribing.push(tokio::spawn(async move {
            let mut wire = Wire::connect(
                &addr,
                common.version,
                &format!("{tag}-s{s}"),
                common.keep_alive,
                common.connect_timeout(),
            )
            .await?;
            wire.subscribe(std::iter::once(filter), qos, 1, 1).await?;
            Ok::<_, String>(wire)
        }));
    }
    let mut subscribers = JoinSet::new();
    for handle in subscribing {
        let wire = join(handle).await?;
        subscribers.spawn(subscriber(wire, shared.clone(), base, common.keep_alive));
    }

    // Publishers: connected first, then started together.
    let mut connecting = Vec::new();
    for p in 0..args.publishers {
        let (addr, tag, common) = (addr.clone(), tag.clone(), common.clone());
        connecting.push(tokio::spawn(async move {
            Wire::connect(
                &addr,
                common.version,
                &format!("{tag}-p{p}"),
                common.keep_alive,
                common.connect_timeout(),
            )
            .await
        }));
    }
    let mut wires = Vec::new();
    for handle in connecting {
        wires.push(join(handle).await?);
    }
    let matching = |t: &str| tern_topic::matches(&args.sub_topic, t);
    let per_pub = |p: usize| {
        args.count / args.publishers as u64
            + u64::from((p as u64) < args.count % args.publishers as u64)
    };
    let expected_total: u64 = (0..args.publishers)
        .filter(|&p| matching(&topics[p]))
        .map(per_pub)
        .sum::<u64>()
        * args.subscribers as u64;

    let progress = common.progress().then(|| {
        let bar = indicatif::ProgressBar::new(expected_total.max(args.count));
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} received {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        let (bar2, shared2) = (bar.clone(), shared.clone());
        let ticker = tokio::spawn(async move {
            loop {
                bar2.set_position(shared2.received.load(Ordering::Relaxed));
                bar2.set_message(format!("({} sent)", shared2.sent.load(Ordering::Relaxed)));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        (bar, ticker)
    });

    let start = Instant::now();
    let start_ns = nanos(base, start);
    let mut publishers = JoinSet::new();
    let rate_each = args.rate as f64 / args.publishers as f64;
    for (p, wire) in wires.into_iter().enumerate() {
        let plan = Plan {
            topic: MqttString::try_from(topics[p].clone()).map_err(Failure::other)?,
            count: per_pub(p),
            qos: args.qos,
            size: args.size.max(8),
            rate: rate_each,
            inflight: args.inflight.max(1),
            batch: args.batch.max(1),
        };
        publishers.spawn(publisher(wire, plan, shared.clone(), base, start));
    }
    let mut sent = 0;
    let mut acked = 0;
    let mut failed = 0;
    while let Some(report) = publishers.join_next().await {
        let report = report.map_err(Failure::other)?.map_err(Failure::other)?;
        sent += report.sent;
        acked += report.acked;
        failed += report.failed;
    }
    let publish_end = Instant::now();

    // Drain: until everything arrived, or nothing arrived for the drain timeout.
    let drain = Duration::from_secs(args.drain_timeout);
    let mut last_count = shared.received.load(Ordering::SeqCst);
    let mut last_change = Instant::now();
    while last_count < expected_total {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let now_count = shared.received.load(Ordering::SeqCst);
        if now_count != last_count {
            last_count = now_count;
            last_change = Instant::now();
        } else if last_change.elapsed() >= drain {
            break;
        }
    }
    shared.stop();
    let mut latency = histogram();
    let mut received = 0;
    while let Some(done) = subscribers.join_next().await {
        let (count, h) = done.map_err(Failure::other)?.map_err(Failure::other)?;
        received += count;
        let _ = latency.add(&h);
    }
    while let Some(done) = extras.join_next().await {
        done.map_err(Failure::other)?.map_err(Failure::other)?;
    }
    if let Some((bar, ticker)) = progress {
        ticker.abort();
        bar.finish_and_clear();
    }
    let last_receipt = shared.last_receipt_ns.load(Ordering::SeqCst);
    let end_ns = if args.subscribers > 0 && received > 0 {
        last_receipt.max(start_ns)
    } else {
        nanos(base, publish_end)
    };
    let elapsed_s = (end_ns - start_ns) as f64 / 1e9;
    let publish_s = publish_end.duration_since(start).as_secs_f64();
    let delivered = if args.subscribers > 0 { received } else { sent };
    let msgs_per_s = if elapsed_s > 0.0 {
        delivered as f64 / elapsed_s
    } else {
        0.0
    };
    let lost = expected_total.saturating_sub(received);
    let (fields, human) = percentiles(&latency);
    let mut json = serde_json::json!({
        "mode": "pubsub",
        "publishers": args.publishers,
        "subscribers": args.subscribers,
        "qos": args.qos.as_u8(),
        "size": args.size.max(8),
        "sent": sent,
        "acked": acked,
        "failed_acks": failed,
        "expected": expected_total,
        "received": received,
        "lost": lost,
        "duplicates": received.saturating_sub(expected_total),
        "msgs_per_s": msgs_per_s,
        "publish_rate": if publish_s > 0.0 { sent as f64 / publish_s } else { 0.0 },
        "elapsed_s": elapsed_s,
        "connect_rate": 0.0,
        "extra_subs": args.extra_subs,
    });
    for (key, value) in fields {
        json[key] = value.into();
    }
    if !common.quiet {
        eprintln!(
            "pubsub: {sent} sent, {received}/{expected_total} received, {lost} lost, \
             {msgs_per_s:.0} msg/s over {elapsed_s:.3} s\nlatency: {human}"
        );
    }
    print_json(&json);
    Ok(())
}

async fn join<T>(handle: tokio::task::JoinHandle<wire::Result<T>>) -> Result<T, Failure> {
    handle
        .await
        .map_err(Failure::other)?
        .map_err(Failure::other)
}

fn nanos(base: Instant, t: Instant) -> u64 {
    u64::try_from(t.duration_since(base).as_nanos()).unwrap_or(u64::MAX)
}

/// What one publisher does.
struct Plan {
    topic: MqttString,
    count: u64,
    qos: QoS,
    size: usize,
    /// Messages per second, 0 for no pacing.
    rate: f64,
    inflight: u16,
    batch: usize,
}

async fn publisher(
    mut wire: Wire,
    plan: Plan,
    shared: Arc<Shared>,
    base: Instant,
    start: Instant,
) -> wire::Result<PubReport> {
    let qos = plan.qos;
    let window = if qos == QoS::AtMostOnce {
        usize::MAX
    } else {
        usize::from(plan.inflight.min(wire.receive_maximum.max(1)))
    };
    // The header is encoded per message; the payload is the timestamp then zeros.
    let mut template = Publish {
        qos,
        topic: plan.topic.clone(),
        packet_id: None,
        payload: Bytes::from(vec![0u8; plan.size]),
        ..Publish::default()
    };
    let zeros = vec![0u8; plan.size - 8];
    let mut in_use = vec![false; 65_536];
    let mut next_id: u16 = 1;
    let mut inflight = 0usize;
    let (mut sent, mut acked, mut failed) = (0u64, 0u64, 0u64);
    loop {
        // How many may go now: the pacing, the window, the batch.
        let allowed = if plan.rate > 0.0 {
            let due = (start.elapsed().as_secs_f64() * plan.rate) as u64 + 1;
            due.min(plan.count).saturating_sub(sent)
        } else {
            plan.count - sent
        };
        let n = allowed
            .min(plan.batch as u64)
            .min(window.saturating_sub(inflight) as u64);
        for _ in 0..n {
            if qos != QoS::AtMostOnce {
                while in_use[usize::from(next_id)] {
                    next_id = next_id.checked_add(1).unwrap_or(1);
                }
                in_use[usize::from(next_id)] = true;
                template.packet_id = std::num::NonZeroU16::new(next_id);
                next_id = next_id.checked_add(1).unwrap_or(1);
                inflight += 1;
            }
            template
                .encode_header(wire.version, &mut wire.wbuf)
                .map_err(|e| e.to_string())?;
            let t = nanos(base, Instant::now());
            wire.wbuf.extend_from_slice(&t.to_le_bytes());
            wire.wbuf.extend_from_slice(&zeros);
        }
        sent += n;
        if n > 0 {
            wire.flush().await?;
            shared.sent.fetch_add(n, Ordering::Relaxed);
        }
        if sent == plan.count && inflight == 0 {
            break;
        }
        // Acknowledgements already read are handled without waiting.
        let mut handled = false;
        while let Some(packet) = wire.decoded()? {
            handled = true;
            match packet {
                Packet::PubAck(ack) | Packet::PubComp(ack)
                    if std::mem::take(&mut in_use[usize::from(ack.packet_id.get())]) =>
                {
                    inflight -= 1;
                    if ack.reason_code.as_u8() < 0x80 {
                        acked += 1;
                    } else {
                        failed += 1;
                    }
                }
                Packet::PubRec(rec) => {
                    if rec.reason_code.as_u8() < 0x80 {
                        wire.push_ack(PacketType::PubRel, rec.packet_id);
                    } else if std::mem::take(&mut in_use[usize::from(rec.packet_id.get())]) {
                        inflight -= 1;
                        failed += 1;
                    }
                }
                _ => {}
            }
        }
        if handled {
            wire.flush().await?;
            continue;
        }
        let can_send_more = sent < plan.count && inflight < window;
        if can_send_more && plan.rate <= 0.0 {
            continue;
        }
        if can_send_more {
            // Paced: wait for the next message's slot, or an acknowledgement.
            let slot = start + Duration::from_secs_f64((sent + 1) as f64 / plan.rate);
            tokio::select! {
                r = wire.fill() => if !r? { return Err("publisher: connection closed".into()); },
                () = tokio::time::sleep_until(slot.into()) => {}
            }
        } else if !wire.fill().await? {
            return Err("publisher: connection closed".into());
        }
    }
    wire.push_disconnect();
    let _ = wire.flush().await;
    Ok(PubReport {
        sent,
        acked,
        failed,
    })
}

async fn subscriber(
    mut wire: Wire,
    shared: Arc<Shared>,
    base: Instant,
    keep_alive: u16,
) -> wire::Result<(u64, Histogram<u64>)> {
    let mut latency = histogram();
    let mut received = 0u64;
    let mut ping = ping_interval(keep_alive);
    loop {
        tokio::select! {
            r = wire.fill() => if !r? { return Err("subscriber: connection closed".into()); },
            () = shared.stopped() => break,
            _ = ping.tick() => { wire.push_ping(); }
        }
        let mut batch = 0u64;
        while let Some(packet) = wire.decoded()? {
            match packet {
                Packet::Publish(publish) => {
                    let now = nanos(base, Instant::now());
                    if let Some(t) = publish.payload.get(..8) {
                        let sent = u64::from_le_bytes(t.try_into().unwrap_or([0; 8]));
                        let _ = latency.record((now.saturating_sub(sent) / 1000).max(1));
                    }
                    match (publish.qos, publish.packet_id) {
                        (QoS::AtLeastOnce, Some(id)) => wire.push_ack(PacketType::PubAck, id),
                        (QoS::ExactlyOnce, Some(id)) => wire.push_ack(PacketType::PubRec, id),
                        _ => {}
                    }
                    batch += 1;
                }
                Packet::PubRel(rel) => wire.push_ack(PacketType::PubComp, rel.packet_id),
                _ => {}
            }
        }
        wire.flush().await?;
        if batch > 0 {
            received += batch;
            shared
                .last_receipt_ns
                .fetch_max(nanos(base, Instant::now()), Ordering::SeqCst);
            shared.received.fetch_add(batch, Ordering::SeqCst);
        }
    }
    wire.push_disconnect();
    let _ = wire.flush().await;
    Ok((received, latency))
}

/// A connection that only keeps its subscriptions: reads and discards, pings.
async fn idle(mut wire: Wire, shared: Arc<Shared>, keep_alive: u16) -> wire::Result<()> {
    let mut ping = ping_interval(keep_alive);
    loop {
        tokio::select! {
            r = wire.fill() => if !r? { return Err("extra subscriptions: connection closed".into()); },
            () = shared.stopped() => break,
            _ = ping.tick() => { wire.push_ping(); }
        }
        while wire.decoded()?.is_some() {}
        wire.flush().await?;
    }
    wire.push_disconnect();
    let _ = wire.flush().await;
    Ok(())
}

/// Ticks at half the keep alive (never for 0), first tick after one period.
pub(crate) fn ping_interval(keep_alive: u16) -> tokio::time::Interval {
    let period = if keep_alive == 0 {
        Duration::from_secs(86_400 * 365)
    } else {
        Duration::from_millis(u64::from(keep_alive) * 500)
    };
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}
