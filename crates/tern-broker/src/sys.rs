//! The `$SYS/broker/...` topics: the broker's own statistics, published as retained QoS 0
//! messages (not retained when `limits.retain_available` is false) every `sys_interval` seconds under mosquitto's names (see mosquitto(8), "Broker
//! status"), so that tools written for mosquitto read them as they are.
//!
//! Like mosquitto, a topic is published again only when its value changed, and the static
//! `$SYS/broker/version` once. The load averages (`load/.../1min`, `5min`, `15min`) are
//! per-minute rates smoothed exponentially over those windows, as mosquitto computes them.
//! One difference: mosquitto's `messages/received` and `messages/sent` count MQTT packets of
//! every type, while the engine reports application messages only, so Tern counts PUBLISH
//! packets there (the same numbers as `publish/messages/...`).
//!
//! The messages are retained in memory only (never written to the [`Storage`](crate::Storage):
//! figures of an earlier run would be wrong) and do not count as received messages. Clients
//! cannot publish to `$` topics (section 4.7.2), so these figures are the broker's; a
//! subscription to `#` does not receive them [MQTT-4.7.2-1].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tern_codec::{MqttString, Publish, QoS};
use tern_proto::Message;
use tokio::time::{Instant, MissedTickBehavior};

use crate::broker::{Shared, Stats};

/// The averaging windows of the load topics, in seconds, with their topic suffixes.
const WINDOWS: [(f64, &str); 3] = [(60.0, "1min"), (300.0, "5min"), (900.0, "15min")];

/// Publishes the `$SYS` topics until shutdown.
pub(crate) async fn run(shared: Arc<Shared>) {
    let period = Duration::from_secs(shared.config.sys_interval);
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut shutdown = shared.shutdown.subscribe();
    let mut sys = Sys::default();
    sys.publish(
        &shared,
        "$SYS/broker/version",
        format!("tern version {}", env!("CARGO_PKG_VERSION")),
    );
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = ticker.tick() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        sys.update(&shared, Instant::now());
    }
}

/// What the publisher remembers between ticks.
#[derive(Debug, Default)]
struct Sys {
    /// The last payload published per topic.
    last: HashMap<String, String>,
    /// Counter values and smoothed loads at the previous tick.
    loads: HashMap<&'static str, Load>,
    previous: Option<Instant>,
}

#[derive(Debug, Default)]
struct Load {
    count: u64,
    averages: [f64; 3],
}

impl Sys {
    fn update(&mut self, shared: &Shared, now: Instant) {
        let stats = shared.stats();
        let uptime = now.duration_since(shared.started).as_secs();
        self.publish(shared, "$SYS/broker/uptime", format!("{uptime} seconds"));
        let disconnected = (stats.sessions as u64).saturating_sub(stats.clients_connected);
        let stored = stats.retained as u64 + stats.queued_messages;
        let dropped = stats.dropped_qos0 + stats.dropped_queue_full;
        let counts: [(&str, u64); 16] = [
            ("clients/connected", stats.clients_connected),
            ("clients/disconnected", disconnected),
            ("clients/total", stats.sessions as u64),
            ("clients/maximum", stats.clients_maximum),
            ("clients/expired", stats.sessions_expired),
            ("messages/received", stats.messages_received),
            ("messages/sent", stats.messages_sent),
            ("messages/stored", stored),
            ("publish/messages/received", stats.messages_received),
            ("publish/messages/sent", stats.messages_sent),
            ("publish/messages/dropped", dropped),
            ("bytes/received", stats.bytes_received),
            ("bytes/sent", stats.bytes_sent),
            ("subscriptions/count", stats.subscriptions as u64),
            ("retained messages/count", stats.retained as u64),
            ("store/messages/count", stored),
        ];
        for (name, value) in counts {
            self.publish(shared, &format!("$SYS/broker/{name}"), value.to_string());
        }
        self.update_loads(shared, &stats, now);
    }

    fn update_loads(&mut self, shared: &Shared, stats: &Stats, now: Instant) {
        let counters: [(&'static str, u64); 7] = [
            ("messages/received", stats.messages_received),
            ("messages/sent", stats.messages_sent),
            ("publish/received", stats.messages_received),
            ("publish/sent", stats.messages_sent),
            (
                "publish/dropped",
                stats.dropped_qos0 + stats.dropped_queue_full,
            ),
            ("bytes/received", stats.bytes_received),
            ("bytes/sent", stats.bytes_sent),
        ];
        let connections = ("connections", stats.connections);
        let elapsed = self
            .previous
            .map(|p| now.duration_since(p).as_secs_f64())
            .unwrap_or(0.0);
        self.previous = Some(now);
        for (name, count) in counters.into_iter().chain([connections]) {
            let load = self.loads.entry(name).or_default();
            if elapsed > 0.0 {
                let rate = count.saturating_sub(load.count) as f64 * 60.0 / elapsed;
                for (average, (window, _)) in load.averages.iter_mut().zip(WINDOWS) {
                    let decay = (-elapsed / window).exp();
                    *average = rate + decay * (*average - rate);
                }
            }
            load.count = count;
            let averages = load.averages;
            for (average, (_, suffix)) in averages.iter().zip(WINDOWS) {
                self.publish(
                    shared,
                    &format!("$SYS/broker/load/{name}/{suffix}"),
                    format!("{average:.2}"),
                );
            }
        }
    }

    /// Publishes `value` retained at QoS 0 on `topic` if it changed since the last time.
    fn publish(&mut self, shared: &Shared, topic: &str, value: String) {
        if self.last.get(topic) == Some(&value) {
            return;
        }
        let Ok(name) = MqttString::try_from(topic.to_owned()) else {
            return;
        };
        let now = Instant::now().into_std();
        // Retained, unless the broker has retained messages disabled: then it sends none at
        // subscribe (section 3.8.3.1).
        let retain = shared.config.limits.retain_available;
        let message = Arc::new(Message::new(
            Publish {
                qos: QoS::AtMostOnce,
                retain,
                topic: name,
                payload: Bytes::from(value.clone().into_bytes()),
                ..Publish::default()
            },
            None,
            now,
        ));
        if retain {
            shared.retained.update(&message, None);
        }
        let readable = shared.auth.readable(&message.publish.topic);
        let routed = shared.router.route(&message, now, None, &readable);
        shared.stats.deliveries.add(routed.taken as u64);
        self.last.insert(topic.to_owned(), value);
    }
}
