//! The Prometheus metrics endpoint: `GET /metrics` on `[metrics] bind`, in the OpenMetrics
//! text format (which Prometheus reads), encoded by `prometheus-client` and served by hyper.
//!
//! The figures are read at each scrape from the broker's [`Stats`](crate::Stats) (the source
//! of truth for every gauge and most counters) and from the counters that `Stats` does not
//! split by label (by QoS, by drop reason, by refusal reason):
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `mqtt_connections` | gauge | | network connections open now (CONNECT sent or not) |
//! | `mqtt_clients_connected` | gauge | | clients connected now (CONNECT accepted) |
//! | `mqtt_connections_opened_total` | counter | | connections accepted since start |
//! | `mqtt_connections_refused_total` | counter | `reason` | refused at accept: `max_connections`, `listener_max_connections` |
//! | `mqtt_sessions` | gauge | | sessions, online and offline |
//! | `mqtt_subscriptions` | gauge | | subscriptions |
//! | `mqtt_retained_messages` | gauge | | retained messages |
//! | `mqtt_queued_messages` | gauge | | messages in session queues |
//! | `mqtt_messages_received_total` | counter | `qos` | application messages received (clients, wills, in-process) |
//! | `mqtt_messages_sent_total` | counter | `qos` | PUBLISH packets written to clients (retransmissions included) |
//! | `mqtt_bytes_received_total`, `mqtt_bytes_sent_total` | counter | | bytes read from and written to clients |
//! | `mqtt_messages_dropped_total` | counter | `reason` | `mailbox_full` (QoS 0), `queue_full`, `expired`, `packet_too_large` (beyond the client's maximum), `offline` (QoS 0 for an absent client) |
//! | `mqtt_packets_received_total`, `mqtt_packets_sent_total` | counter | `type` | control packets read from and written to clients, by type (`connect`, `publish`, `puback`, …, `auth`) |
//! | `mqtt_slow_consumers_total` | counter | | clients disconnected because they did not read |
//! | `mqtt_sessions_expired_total` | counter | | sessions ended by their expiry interval |
//!
//! The current-connections gauge is `mqtt_connections` and the counter of connections since
//! start `mqtt_connections_opened_total` (RabbitMQ's pair of names): in OpenMetrics a counter
//! `mqtt_connections_total` belongs to the family `mqtt_connections`, which the gauge already
//! names.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tern_codec::{Framing, MAX_PACKET_SIZE, PacketType, QoS, framing};
use tern_proto::DropReason;
use tokio::net::TcpListener;

use crate::broker::{Shared, TaskGuard};
use crate::counter::Counter;
use crate::limits::Refusal;

/// The content type of the OpenMetrics text format.
const CONTENT_TYPE_OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Why a message was dropped, as the `reason` label says (the two drops `Stats` counts,
/// `mailbox_full` and `queue_full`, come from there).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dropped {
    Expired,
    PacketTooLarge,
    Offline,
}

const DROPPED: [(Dropped, &str); 3] = [
    (Dropped::Expired, "expired"),
    (Dropped::PacketTooLarge, "packet_too_large"),
    (Dropped::Offline, "offline"),
];

/// The `type` label of each control packet type, indexed by its four-bit value.
const PACKET_TYPES: [&str; 16] = [
    "reserved",
    "connect",
    "connack",
    "publish",
    "puback",
    "pubrec",
    "pubrel",
    "pubcomp",
    "subscribe",
    "suback",
    "unsubscribe",
    "unsuback",
    "pingreq",
    "pingresp",
    "disconnect",
    "auth",
];

/// The counters `Stats` does not split by label, updated with relaxed atomics.
///
/// Packets are counted by type from the bytes themselves: what a connection is about to write,
/// and what it read, before the engine decodes it (a fixed header is all it takes).
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    received: [Counter; 3],
    sent: [Counter; 3],
    dropped: [Counter; DROPPED.len()],
    packets_received: [Counter; 16],
    packets_sent: [Counter; 16],
}

impl Traffic {
    /// Counts an application message received at `qos`.
    pub(crate) fn received(&self, qos: QoS) {
        self.received[qos as usize].add(1);
    }

    /// Counts the whole packets at the start of `bytes` that a connection read, by type; a
    /// packet cut at the end is counted by the read that completes it (the engine keeps only
    /// such a remainder between reads).
    pub(crate) fn count_received(&self, packets: &[u8]) {
        let mut by_type = [0u64; 16];
        for_each_frame(packets, |t, _| by_type[t as usize] += 1);
        add_nonzero(&self.packets_received, &by_type);
    }

    /// Counts whole encoded packets about to be written, by type, and the PUBLISH packets
    /// among them by QoS.
    pub(crate) fn count_sent(&self, packets: &[u8]) {
        let (mut by_type, mut by_qos) = ([0u64; 16], [0u64; 3]);
        for_each_frame(packets, |t, flags| {
            by_type[t as usize] += 1;
            if t == PacketType::Publish {
                by_qos[usize::from((flags >> 1) & 0b11).min(2)] += 1;
            }
        });
        add_nonzero(&self.packets_sent, &by_type);
        add_nonzero(&self.sent, &by_qos);
    }

    /// Counts a message the engine did not deliver, for the reasons that are drops (No
    /// Local is not one; a full queue is counted in `Stats`).
    pub(crate) fn dropped(&self, reason: DropReason) {
        let dropped = match reason {
            DropReason::Expired => Dropped::Expired,
            DropReason::PacketTooLarge => Dropped::PacketTooLarge,
            DropReason::Offline => Dropped::Offline,
            _ => return,
        };
        self.dropped[dropped as usize].add(1);
    }
}

/// Calls `f` with the type and flags of each whole packet at the start of `bytes`. A packet
/// cut at the end, or malformed bytes, end the walk (the engine closes the connection for
/// those).
fn for_each_frame(mut bytes: &[u8], mut f: impl FnMut(PacketType, u8)) {
    while let Ok(Framing::Complete(header)) = framing(bytes, MAX_PACKET_SIZE) {
        f(header.packet_type, header.flags);
        bytes = &bytes[header.packet_len()..];
    }
}

/// Adds a batch counted locally: one update per figure that changed, not one per packet.
fn add_nonzero(counters: &[Counter], counts: &[u64]) {
    for (counter, &n) in counters.iter().zip(counts) {
        if n > 0 {
            counter.add(n);
        }
    }
}

/// Reads the broker's figures at each scrape.
#[derive(Debug)]
struct BrokerCollector {
    shared: Arc<Shared>,
}

fn gauge(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> FmtResult {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

fn counter(encoder: &mut DescriptorEncoder<'_>, name: &str, help: &str, value: u64) -> FmtResult {
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)
}

/// A counter family with one label.
fn counters<'a>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (&'a str, u64)>,
) -> FmtResult {
    let mut family = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Counter,
    )?;
    for (value_label, value) in values {
        let labels = [(label, value_label)];
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

type FmtResult = Result<(), std::fmt::Error>;

impl Collector for BrokerCollector {
    fn encode(&self, mut e: DescriptorEncoder<'_>) -> FmtResult {
        let shared = &self.shared;
        let stats = shared.stats();
        let traffic = &shared.stats.traffic;
        let load = Counter::get;
        gauge(
            &mut e,
            "mqtt_connections",
            "Network connections open now, CONNECT received or not",
            stats.connections_open as u64,
        )?;
        gauge(
            &mut e,
            "mqtt_clients_connected",
            "Clients connected now (CONNECT accepted)",
            stats.clients_connected,
        )?;
        counter(
            &mut e,
            "mqtt_connections_opened",
            "Network connections accepted since start",
            stats.connections,
        )?;
        counters(
            &mut e,
            "mqtt_connections_refused",
            "Connections closed at accept by a connection limit",
            "reason",
            [Refusal::Global, Refusal::Listener].map(|r| (r.label(), shared.refused.get(r))),
        )?;
        gauge(
            &mut e,
            "mqtt_sessions",
            "Sessions, online and offline",
            stats.sessions as u64,
        )?;
        gauge(
            &mut e,
            "mqtt_subscriptions",
            "Subscriptions",
            stats.subscriptions as u64,
        )?;
        gauge(
            &mut e,
            "mqtt_retained_messages",
            "Retained messages",
            stats.retained as u64,
        )?;
        gauge(
            &mut e,
            "mqtt_queued_messages",
            "Messages waiting in session queues",
            stats.queued_messages,
        )?;
        let qos = ["0", "1", "2"];
        counters(
            &mut e,
            "mqtt_messages_received",
            "Application messages received, by QoS",
            "qos",
            qos.into_iter().zip(traffic.received.iter().map(load)),
        )?;
        counters(
            &mut e,
            "mqtt_messages_sent",
            "PUBLISH packets sent to clients, by QoS",
            "qos",
            qos.into_iter().zip(traffic.sent.iter().map(load)),
        )?;
        counter(
            &mut e,
            "mqtt_bytes_received",
            "Bytes read from clients",
            stats.bytes_received,
        )?;
        counter(
            &mut e,
            "mqtt_bytes_sent",
            "Bytes written to clients",
            stats.bytes_sent,
        )?;
        let dropped = [
            ("mailbox_full", stats.dropped_qos0),
            ("queue_full", stats.dropped_queue_full),
        ]
        .into_iter()
        .chain(
            DROPPED
                .iter()
                .map(|&(d, label)| (label, load(&traffic.dropped[d as usize]))),
        );
        counters(
            &mut e,
            "mqtt_messages_dropped",
            "Messages not delivered, by reason",
            "reason",
            dropped,
        )?;
        let by_type = |counts: &[Counter; 16]| {
            PACKET_TYPES
                .into_iter()
                .zip(counts.iter().map(load))
                .skip(1)
                .collect::<Vec<_>>()
        };
        counters(
            &mut e,
            "mqtt_packets_received",
            "Control packets read from clients, by type",
            "type",
            by_type(&traffic.packets_received),
        )?;
        counters(
            &mut e,
            "mqtt_packets_sent",
            "Control packets written to clients, by type",
            "type",
            by_type(&traffic.packets_sent),
        )?;
        counter(
            &mut e,
            "mqtt_slow_consumers",
            "Clients disconnected because they did not read",
            stats.slow_consumers,
        )?;
        counter(
            &mut e,
            "mqtt_sessions_expired",
            "Sessions ended by their expiry interval",
            stats.sessions_expired,
        )?;
        Ok(())
    }
}

/// Binds the metrics endpoint.
pub(crate) async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `GET /metrics` on `listener` until shutdown; returns its address.
pub(crate) fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    guard: TaskGuard,
) -> io::Result<SocketAddr> {
    let addr = listener.local_addr()?;
    let mut registry = Registry::default();
    registry.register_collector(Box::new(BrokerCollector {
        shared: shared.clone(),
    }));
    let registry = Arc::new(registry);
    let mut shutdown = shared.shutdown.subscribe();
    tracing::info!(%addr, "metrics at http://{addr}/metrics");
    tokio::spawn(async move {
        loop {
            if *shutdown.borrow_and_update() {
                break;
            }
            let (stream, peer) = tokio::select! {
                _ = shutdown.changed() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(%addr, "metrics: accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let registry = registry.clone();
            let mut shutdown = shared.shutdown.subscribe();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let response = respond(&registry, &request);
                    async move { Ok::<_, Infallible>(response) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(connection);
                let result = tokio::select! {
                    result = connection.as_mut() => result,
                    _ = shutdown.changed() => {
                        connection.as_mut().graceful_shutdown();
                        connection.await
                    }
                };
                if let Err(e) = result {
                    tracing::debug!(%peer, "metrics: {e}");
                }
            });
        }
        drop(listener);
        drop(guard);
    });
    Ok(addr)
}

fn respond(registry: &Registry, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let status = |code: StatusCode| {
        let mut response = Response::new(Full::new(Bytes::new()));
        *response.status_mut() = code;
        response
    };
    if request.uri().path() != "/metrics" {
        return status(StatusCode::NOT_FOUND);
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = status(StatusCode::METHOD_NOT_ALLOWED);
        response
            .headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let mut body = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut body, registry) {
        tracing::error!("metrics: cannot encode: {e}");
        return status(StatusCode::INTERNAL_SERVER_ERROR);
    }
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(CONTENT_TYPE_OPENMETRICS),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use tern_codec::{Packet, ProtocolVersion, Publish};

    #[test]
    fn count_sent_counts_publish_packets_by_qos() {
        let traffic = Traffic::default();
        let mut out = BytesMut::new();
        for (qos, id) in [
            (QoS::AtMostOnce, None),
            (QoS::AtLeastOnce, Some(1)),
            (QoS::ExactlyOnce, Some(2)),
            (QoS::AtLeastOnce, Some(3)),
        ] {
            let publish = Publish {
                qos,
                packet_id: id.and_then(std::num::NonZeroU16::new),
                topic: tern_codec::MqttString::from_static("t"),
                payload: Bytes::from_static(b"x"),
                ..Publish::default()
            };
            Packet::Publish(publish)
                .encode(ProtocolVersion::V5, &mut out)
                .unwrap();
            Packet::PingResp
                .encode(ProtocolVersion::V5, &mut out)
                .unwrap();
        }
        traffic.count_sent(&out);
        let sent: Vec<u64> = traffic.sent.iter().map(Counter::get).collect();
        assert_eq!(sent, [1, 2, 1]);
        let load = Counter::get;
        assert_eq!(load(&traffic.packets_sent[PacketType::Publish as usize]), 4);
        assert_eq!(
            load(&traffic.packets_sent[PacketType::PingResp as usize]),
            4
        );
    }

    #[test]
    fn count_received_counts_whole_packets_by_type_once() {
        let traffic = Traffic::default();
        let mut bytes = BytesMut::new();
        Packet::PingReq
            .encode(ProtocolVersion::V3_1_1, &mut bytes)
            .unwrap();
        Packet::Publish(Publish {
            topic: tern_codec::MqttString::from_static("a/b"),
            payload: Bytes::from_static(b"xyz"),
            ..Publish::default()
        })
        .encode(ProtocolVersion::V3_1_1, &mut bytes)
        .unwrap();
        // A read that ends inside the PUBLISH counts only the PINGREQ; the read that completes
        // it counts the PUBLISH (the engine has taken the PINGREQ by then).
        traffic.count_received(&bytes[..4]);
        traffic.count_received(&bytes[2..]);
        let load = |t: PacketType| traffic.packets_received[t as usize].get();
        assert_eq!(load(PacketType::PingReq), 1);
        assert_eq!(load(PacketType::Publish), 1);
    }
}
