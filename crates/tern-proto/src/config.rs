//! Configuration of the two sides.

use std::time::Duration;

use tern_codec::{Connect, ConnectProperties, MAX_PACKET_SIZE, MqttString, ProtocolVersion, QoS};

/// How inbound QoS 1 and QoS 2 messages are acknowledged.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AckMode {
    /// The engine acknowledges each message with Success as soon as it is surfaced.
    #[default]
    Auto,
    /// The application calls `ack(packet_id, reason)` for each message
    /// ([`Event::Publish`](crate::Event) has `needs_ack: true`), e.g. after persisting it.
    /// Acknowledgements still leave in arrival order.
    Manual,
}

/// Configuration of a [`ClientSession`](crate::ClientSession).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientConfig {
    /// The CONNECT sent on every `connect`: version, client identifier, clean start, keep
    /// alive, will, credentials and properties. Its Receive Maximum, Maximum Packet Size and
    /// Topic Alias Maximum are the limits this client enforces on input.
    pub connect: Connect,
    /// Acknowledgement of inbound messages.
    pub ack_mode: AckMode,
    /// Whether the client picks topic aliases for the topics it publishes (5.0, within the
    /// server's Topic Alias Maximum).
    pub outgoing_topic_aliases: bool,
    /// A cap on outgoing QoS 1/2 messages in flight, on top of the server's Receive Maximum
    /// (3.x has no Receive Maximum).
    pub max_inflight: u16,
    /// How long to wait for CONNACK; `None` waits for ever.
    pub connect_timeout: Option<Duration>,
    /// How long to wait for PINGRESP; `None` means one keep alive period.
    pub ping_timeout: Option<Duration>,
}

impl ClientConfig {
    /// A configuration for `version` with this client identifier, clean start off, keep alive
    /// 60 s, automatic acknowledgements and no other options.
    pub fn new(version: ProtocolVersion, client_id: MqttString) -> Self {
        ClientConfig {
            connect: Connect {
                protocol: version,
                clean_start: false,
                keep_alive: 60,
                client_id,
                will: None,
                username: None,
                password: None,
                properties: ConnectProperties::default(),
            },
            ack_mode: AckMode::Auto,
            outgoing_topic_aliases: true,
            max_inflight: u16::MAX,
            connect_timeout: None,
            ping_timeout: None,
        }
    }
}

/// Configuration of a [`ServerSession`](crate::ServerSession): the server's limits, announced
/// in CONNACK (5.0) unless [`Accept`](crate::Accept) overrides them, and the outgoing queue's
/// bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// Receive Maximum: inbound QoS 1/2 messages unacknowledged at once (enforced, 0x93).
    pub receive_maximum: u16,
    /// Maximum Packet Size accepted (enforced from the fixed header, 0x95).
    pub maximum_packet_size: u32,
    /// Topic Alias Maximum accepted from clients.
    pub topic_alias_maximum: u16,
    /// Maximum QoS accepted from clients (0x9B beyond it).
    pub maximum_qos: QoS,
    /// Whether retained messages are accepted (0x9A otherwise).
    pub retain_available: bool,
    /// Acknowledgement of inbound messages.
    pub ack_mode: AckMode,
    /// Whether the server picks topic aliases for the topics it delivers.
    pub outgoing_topic_aliases: bool,
    /// A cap on outgoing QoS 1/2 messages in flight, on top of the client's Receive Maximum.
    pub max_inflight: u16,
    /// Messages queued beyond the in-flight window, at most.
    pub max_queued_messages: usize,
    /// Bytes (topic + payload) queued beyond the in-flight window, at most.
    pub max_queued_bytes: usize,
    /// Bytes of PUBLISH packets waiting for `poll_transmit` beyond which a QoS 0 delivery is
    /// dropped ([`DropReason::Backlog`](crate::DropReason)) rather than buffered: a driver
    /// that stops draining output (a slow socket) does not grow the engine without bound.
    /// One message is always taken when nothing waits, whatever its size. QoS 1/2 messages
    /// are bounded by the in-flight window and the queue instead.
    pub max_transmit_backlog: usize,
    /// How long a connection may take to be accepted, from `start` to `accept`/`reject`:
    /// CONNECT and any enhanced-authentication exchange; `None` waits for ever.
    pub connect_timeout: Option<Duration>,
    /// Whether each outgoing message's final acknowledgement is reported as
    /// [`Event::PublishAcknowledged`](crate::Event::PublishAcknowledged). A broker that has no
    /// use for them turns them off: one event per delivered QoS 1/2 message is work on the
    /// hottest path for nothing.
    pub acknowledgement_events: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            receive_maximum: u16::MAX,
            maximum_packet_size: MAX_PACKET_SIZE,
            topic_alias_maximum: 0,
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
            ack_mode: AckMode::Auto,
            outgoing_topic_aliases: true,
            max_inflight: u16::MAX,
            max_queued_messages: 1000,
            max_queued_bytes: 16 * 1024 * 1024,
            max_transmit_backlog: 1024 * 1024,
            connect_timeout: None,
            acknowledgement_events: true,
        }
    }
}
