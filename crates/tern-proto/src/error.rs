//! Errors in three tiers, after h2: protocol violations by the peer ([`ProtocolError`]),
//! misuse of the API by the application ([`UserError`], [`PublishError`]), and the one reason a
//! connection ended ([`ConnectionError`]), reported exactly once.

use tern_codec::{DecodeError, Disconnect, EncodeError, PacketType, ReasonCode};

/// Who caused a connection to end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Initiator {
    /// This side: the application closed it, or this engine gave up (keepalive).
    Local,
    /// The peer: it violated the protocol, disconnected or refused the connection.
    Remote,
    /// Neither side said anything: the transport failed.
    Transport,
}

/// A rule of MQTT the peer broke. Every variant cites its normative statement and maps to
/// the reason code this side sends in DISCONNECT (MQTT 5.0) before closing; MQTT 3.x simply
/// closes the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The bytes were not a valid packet; the codec's error says which rule.
    #[error("invalid packet: {0}")]
    Decode(DecodeError),
    /// A packet arrived that the peer must not send in the current state (CONNECT twice
    /// [MQTT-3.1.0-2], anything but CONNACK or AUTH first from a server [MQTT-3.2.0-1], a packet
    /// type this side never receives: section 2.1.2, direction of flow).
    #[error("unexpected {packet:?} [{citation}]")]
    UnexpectedPacket {
        /// The packet type received.
        packet: PacketType,
        /// The rule it breaks.
        citation: &'static str,
    },
    /// A PUBLISH from a client carries a Subscription Identifier [MQTT-3.3.4-6].
    #[error("PUBLISH from a client carries a subscription identifier [MQTT-3.3.4-6]")]
    SubscriptionIdFromClient,
    /// A Topic Alias of 0 or above the Topic Alias Maximum this side announced
    /// [MQTT-3.3.2-8], [MQTT-3.3.2-9] (from a client), [MQTT-3.3.2-11] (from a server).
    #[error("topic alias {alias} is 0 or above the maximum {maximum} [MQTT-3.3.2-9]")]
    TopicAliasInvalid {
        /// The alias received.
        alias: u16,
        /// The maximum announced.
        maximum: u16,
    },
    /// An empty topic name with a Topic Alias that has no mapping on this connection: a
    /// Protocol Error (section 3.3.2.3.4; mappings never outlive a connection [MQTT-3.3.2-7]).
    #[error("topic alias {0} has no mapping on this connection (MQTT 5.0 section 3.3.2.3.4)")]
    UnknownTopicAlias(u16),
    /// More unacknowledged QoS 1 and QoS 2 PUBLISH packets than the Receive Maximum this side
    /// announced: [MQTT-3.3.4-7] from a client, [MQTT-3.3.4-9] from a server.
    #[error("receive maximum {0} exceeded [MQTT-3.3.4-7], [MQTT-3.3.4-9]")]
    ReceiveMaximumExceeded(u16),
    /// A PUBLISH with a QoS above the Maximum QoS the server announced [MQTT-3.2.2-11].
    #[error("PUBLISH QoS above the server's maximum QoS [MQTT-3.2.2-11]")]
    QoSNotSupported,
    /// A retained PUBLISH although the server said Retain Available 0 [MQTT-3.2.2-14].
    #[error("retained PUBLISH while retain is not available [MQTT-3.2.2-14]")]
    RetainNotSupported,
    /// A DISCONNECT from the client sets a non-zero Session Expiry Interval although CONNECT
    /// set 0 (or none): a Protocol Error by section 3.14.2.2.2 (a statement without a number;
    /// [MQTT-3.14.2-2] is the server's side of the same property).
    #[error("DISCONNECT sets a session expiry after CONNECT set 0 (MQTT 5.0 section 3.14.2.2.2)")]
    SessionExpiryOnDisconnect,
    /// AUTH while no enhanced authentication was started by CONNECT: from a client
    /// [MQTT-4.12.0-7], from a server [MQTT-4.12.0-6]. Also an Authentication Method in a
    /// CONNACK after a CONNECT without one [MQTT-4.12.0-6].
    #[error("AUTH without an authentication method in CONNECT [MQTT-4.12.0-6], [MQTT-4.12.0-7]")]
    UnexpectedAuth,
    /// An AUTH reason code that is not allowed at this point of the exchange: Continue
    /// authentication during CONNECT [MQTT-4.12.0-2], [MQTT-4.12.0-3], Re-authenticate only
    /// from a connected client [MQTT-4.12.1-1], Success only from the server.
    #[error("AUTH reason code {0} not allowed here [MQTT-4.12.0-2], [MQTT-4.12.0-3]")]
    InvalidAuthReason(ReasonCode),
    /// An AUTH (or a successful CONNACK) without the Authentication Method of CONNECT, or with
    /// another one [MQTT-4.12.0-5], [MQTT-4.12.1-1].
    #[error("AUTH or CONNACK authentication method differs from CONNECT's [MQTT-4.12.0-5]")]
    AuthMethodMismatch,
    /// A SUBACK (or a 5.0 UNSUBACK) whose number of reason codes is not the number of topic
    /// filters of the request [MQTT-3.8.4-6], [MQTT-3.9.3-1], [MQTT-3.11.3-1].
    #[error("{received} reason codes for {expected} topic filters [MQTT-3.8.4-6]")]
    ReasonCodeCount {
        /// Topic filters in the request.
        expected: usize,
        /// Reason codes received.
        received: usize,
    },
    /// A CONNACK with Session Present 1 although this client asked for a clean start
    /// [MQTT-3.2.2-4].
    #[error("CONNACK session present after a clean start [MQTT-3.2.2-4]")]
    SessionPresentAfterCleanStart,
}

impl ProtocolError {
    /// The MQTT 5.0 reason code sent in DISCONNECT for this violation.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            // The codec reports Topic Alias 0 as an invalid property value (0x82); MQTT 5.0
            // names 0x94 for it.
            ProtocolError::Decode(DecodeError::InvalidPropertyValue(0x23)) => {
                ReasonCode::TopicAliasInvalid
            }
            ProtocolError::Decode(e) => e.reason_code(),
            ProtocolError::TopicAliasInvalid { .. } => ReasonCode::TopicAliasInvalid,
            ProtocolError::ReceiveMaximumExceeded(_) => ReasonCode::ReceiveMaximumExceeded,
            ProtocolError::QoSNotSupported => ReasonCode::QoSNotSupported,
            ProtocolError::RetainNotSupported => ReasonCode::RetainNotSupported,
            ProtocolError::UnexpectedPacket { .. }
            | ProtocolError::SubscriptionIdFromClient
            | ProtocolError::UnknownTopicAlias(_)
            | ProtocolError::SessionExpiryOnDisconnect
            | ProtocolError::UnexpectedAuth
            | ProtocolError::InvalidAuthReason(_)
            | ProtocolError::AuthMethodMismatch
            | ProtocolError::ReasonCodeCount { .. }
            | ProtocolError::SessionPresentAfterCleanStart => ReasonCode::ProtocolError,
        }
    }
}

/// Why a connection ended; reported exactly once by [`Event::Disconnected`](crate::Event).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// The peer broke a rule; this side sent DISCONNECT (5.0) with
    /// [`ProtocolError::reason_code`] and closed.
    #[error("peer violated the protocol: {0}")]
    Protocol(ProtocolError),
    /// The peer sent DISCONNECT.
    #[error("peer disconnected: {}", .0.reason_code)]
    PeerDisconnected(Disconnect),
    /// The server refused the CONNECT (seen by the client), with this CONNACK reason code.
    #[error("connection refused: {0}")]
    Refused(ReasonCode),
    /// This server refused the CONNECT with this reason code (seen by the server).
    #[error("connection rejected: {0}")]
    Rejected(ReasonCode),
    /// The application closed the connection, with this DISCONNECT reason code.
    #[error("closed locally: {0}")]
    LocallyClosed(ReasonCode),
    /// Keepalive: the client got no PINGRESP in time, or the server heard nothing from the
    /// client for 1.5 times the keep alive [MQTT-3.1.2-22] (3.1.1: [MQTT-3.1.2-24]).
    #[error("keep alive timeout")]
    KeepAliveTimeout,
    /// CONNECT or CONNACK did not arrive within the configured connect timeout.
    #[error("connect timeout")]
    ConnectTimeout,
    /// The driver reported that the transport failed or was closed.
    #[error("transport lost")]
    TransportLost,
}

impl ConnectionError {
    /// Who caused the end.
    pub fn initiator(&self) -> Initiator {
        match self {
            ConnectionError::Protocol(_)
            | ConnectionError::PeerDisconnected(_)
            | ConnectionError::Refused(_) => Initiator::Remote,
            ConnectionError::Rejected(_)
            | ConnectionError::LocallyClosed(_)
            | ConnectionError::KeepAliveTimeout
            | ConnectionError::ConnectTimeout => Initiator::Local,
            ConnectionError::TransportLost => Initiator::Transport,
        }
    }

    /// Whether the end is clean, so the Will Message is discarded: a DISCONNECT with Normal
    /// disconnection (0x00) from the client [MQTT-3.14.4-3].
    pub fn is_normal_disconnect(&self) -> bool {
        matches!(self, ConnectionError::PeerDisconnected(d) if d.reason_code == ReasonCode::Success)
    }
}

/// A misuse of the API: the call is refused and nothing changes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UserError {
    /// The operation needs an established connection.
    #[error("not connected")]
    NotConnected,
    /// The operation is not valid in the current state (e.g. `connect` while connected,
    /// `accept` without a pending CONNECT).
    #[error("invalid state for {0}")]
    InvalidState(&'static str),
    /// No inbound PUBLISH, SUBSCRIBE or UNSUBSCRIBE with this packet identifier waits for an
    /// answer.
    #[error("no pending packet with identifier {0}")]
    UnknownPacketId(u16),
    /// The packet cannot be encoded for the connection's version.
    #[error("cannot encode: {0}")]
    Encode(EncodeError),
    /// A reason code the packet cannot carry in this version.
    #[error("reason code {code} is not allowed in {packet:?} here")]
    ReasonCode {
        /// The packet type.
        packet: PacketType,
        /// The reason code given.
        code: ReasonCode,
    },
    /// The number of reason codes does not match the number of topic filters [MQTT-3.8.4-6],
    /// [MQTT-3.9.3-1], [MQTT-3.11.3-1], [MQTT-3.11.3-2].
    #[error("{given} reason codes for {expected} topic filters [MQTT-3.8.4-6]")]
    ReasonCodeCount {
        /// Filters in the request.
        expected: usize,
        /// Codes given.
        given: usize,
    },
    /// A feature the peer said it does not support (Maximum QoS, Retain Available,
    /// Subscription Identifiers Available, …) or that the version lacks.
    #[error("not supported by the peer or the version: {0}")]
    NotSupported(&'static str),
    /// The packet is larger than the peer's Maximum Packet Size and is not sent
    /// [MQTT-3.1.2-24], [MQTT-3.2.2-15].
    #[error("packet of {size} bytes exceeds the peer's maximum packet size {maximum}")]
    PacketTooLarge {
        /// The encoded size.
        size: usize,
        /// The peer's limit.
        maximum: u32,
    },
    /// A value the protocol forbids (an empty assigned client identifier, …).
    #[error("invalid value: {0}")]
    InvalidValue(&'static str),
}

/// Why [`publish`](crate::ClientSession::publish) did not send a message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// Back-pressure: the peer's Receive Maximum (or the configured in-flight window) is
    /// reached, or every packet identifier is in use. [`Event::Writable`](crate::Event) follows
    /// once a slot frees.
    #[error("blocked: the in-flight window is full")]
    Blocked,
    /// The packet is larger than the peer's Maximum Packet Size and is not sent
    /// [MQTT-3.1.2-24], [MQTT-3.2.2-15].
    #[error("packet of {size} bytes exceeds the peer's maximum packet size {maximum}")]
    PacketTooLarge {
        /// The encoded size.
        size: usize,
        /// The peer's limit.
        maximum: u32,
    },
    /// A misuse of the API.
    #[error(transparent)]
    User(#[from] UserError),
}
