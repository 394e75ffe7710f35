//! Errors: what the peer sent wrong ([`DecodeError`]) and what the caller asked wrongly
//! ([`EncodeError`]).

use crate::{packet::PacketType, reason::ReasonCode, version::ProtocolVersion};

/// Why bytes from the peer are not a valid control packet.
///
/// Every variant names the normative statement it enforces and maps to the MQTT 5.0 reason
/// code a server or client sends before closing the connection ([`DecodeError::reason_code`]).
/// Decoding never panics on peer bytes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The packet, by its fixed header, is longer than the maximum packet size the receiver
    /// allows; detected before the body is buffered [MQTT-3.1.2-24], [MQTT-3.2.2-15].
    #[error("packet of {size} bytes exceeds the maximum packet size {max} [MQTT-3.1.2-24]")]
    PacketTooLarge {
        /// The packet's full size, fixed header included.
        size: u64,
        /// The limit in force.
        max: u32,
    },
    /// A Variable Byte Integer longer than four bytes, or not in its shortest form
    /// [MQTT-1.5.5-1].
    #[error("malformed variable byte integer [MQTT-1.5.5-1]")]
    MalformedVarInt,
    /// The first byte's packet type is 0, or 15 before MQTT 5.0 [MQTT-2.1.2].
    #[error("invalid packet type {0} [MQTT-2.1.2]")]
    InvalidPacketType(u8),
    /// Reserved flag bits of the fixed header are not the specified values [MQTT-2.1.3-1].
    #[error("invalid fixed header flags 0x{flags:X} for {packet_type:?} [MQTT-2.1.3-1]")]
    InvalidHeaderFlags {
        /// The packet type.
        packet_type: PacketType,
        /// The low four bits of the first byte.
        flags: u8,
    },
    /// A QoS value of 3 [MQTT-3.3.1-4].
    #[error("QoS 3 is not a QoS [MQTT-3.3.1-4]")]
    InvalidQoS,
    /// DUP set on a QoS 0 PUBLISH [MQTT-3.3.1-2].
    #[error("DUP flag set on a QoS 0 PUBLISH [MQTT-3.3.1-2]")]
    DupOnQoS0,
    /// The packet ended before a field it announced [MQTT-1.5] (Malformed Packet).
    #[error("packet truncated: a field runs past the remaining length")]
    Truncated,
    /// Bytes left over after the last field of the packet (Malformed Packet).
    #[error("{0} trailing bytes after the last field of the packet")]
    TrailingBytes(usize),
    /// A string is not well-formed UTF-8 or encodes a surrogate [MQTT-1.5.4-1].
    #[error("ill-formed UTF-8 string [MQTT-1.5.4-1]")]
    InvalidUtf8,
    /// A string contains U+0000 [MQTT-1.5.4-2].
    #[error("string contains U+0000 [MQTT-1.5.4-2]")]
    NullCharacter,
    /// The CONNECT protocol name is neither `MQTT` nor `MQIsdp` for its level [MQTT-3.1.2-1].
    #[error("unknown protocol name [MQTT-3.1.2-1]")]
    InvalidProtocolName,
    /// The CONNECT protocol level is not 3, 4 or 5 [MQTT-3.1.2-2].
    #[error("unsupported protocol level {0} [MQTT-3.1.2-2]")]
    UnsupportedProtocolLevel(u8),
    /// The CONNECT flags' reserved bit is set [MQTT-3.1.2-3].
    #[error("reserved CONNECT flag set [MQTT-3.1.2-3]")]
    ConnectReservedFlag,
    /// Will QoS or Will Retain set without the Will Flag, or Will QoS 3
    /// [MQTT-3.1.2-11], [MQTT-3.1.2-13], [MQTT-3.1.2-14], [MQTT-3.1.2-15].
    #[error("invalid will flags [MQTT-3.1.2-11]")]
    InvalidWillFlags,
    /// A password without a user name in MQTT 3.1/3.1.1 [MQTT-3.1.2-22].
    #[error("password flag set without user name flag [MQTT-3.1.2-22]")]
    PasswordWithoutUsername,
    /// A packet other than CONNECT arrived before the protocol version was known
    /// [MQTT-3.1.0-1].
    #[error("expected CONNECT, got {0:?} [MQTT-3.1.0-1]")]
    ExpectedConnect(PacketType),
    /// A second CONNECT or a packet type that this direction or version never carries
    /// (AUTH before MQTT 5.0) [MQTT-3.1.0-2].
    #[error("{packet_type:?} is not allowed in {version} [MQTT-3.1.0-2]")]
    UnexpectedPacket {
        /// The packet type.
        packet_type: PacketType,
        /// The version in force.
        version: ProtocolVersion,
    },
    /// Reserved bits of the CONNACK acknowledge flags are set [MQTT-3.2.2-1].
    #[error("reserved CONNACK flags set [MQTT-3.2.2-1]")]
    ConnAckReservedFlags,
    /// Session Present set on a refused connection [MQTT-3.2.2-6].
    #[error("session present on a refused connection [MQTT-3.2.2-6]")]
    SessionPresentOnError,
    /// A packet identifier of 0 where a non-zero one is required [MQTT-2.2.1-3].
    #[error("packet identifier 0 [MQTT-2.2.1-3]")]
    ZeroPacketId,
    /// A PUBLISH topic name containing `+` or `#` [MQTT-3.3.2-2].
    #[error("wildcard in a topic name [MQTT-3.3.2-2]")]
    WildcardInTopicName,
    /// An empty topic name without a topic alias [MQTT-4.7.3-1], [MQTT-3.3.2-1].
    #[error("empty topic name without a topic alias [MQTT-4.7.3-1]")]
    EmptyTopicName,
    /// An empty topic filter [MQTT-4.7.3-1].
    #[error("empty topic filter [MQTT-4.7.3-1]")]
    EmptyTopicFilter,
    /// A SUBSCRIBE without any topic filter [MQTT-3.8.3-2].
    #[error("SUBSCRIBE without topic filters [MQTT-3.8.3-2]")]
    EmptySubscribe,
    /// An UNSUBSCRIBE without any topic filter [MQTT-3.10.3-2].
    #[error("UNSUBSCRIBE without topic filters [MQTT-3.10.3-2]")]
    EmptyUnsubscribe,
    /// Reserved bits of the subscription options are set, or 3.x upper bits [MQTT-3.8.3-5].
    #[error("reserved subscription option bits set [MQTT-3.8.3-5]")]
    SubscriptionOptionsReserved,
    /// Retain Handling 3 [MQTT-3.8.3-6] (Protocol Error).
    #[error("retain handling 3 [MQTT-3.8.3-6]")]
    InvalidRetainHandling,
    /// A property identifier the specification does not define (2.2.2.2).
    #[error("unknown property identifier 0x{0:02X} [MQTT-2.2.2-2]")]
    UnknownProperty(u8),
    /// A property that the packet may not carry (2.2.2.2: Malformed Packet).
    #[error("property 0x{property:02X} is not allowed in {packet:?} [MQTT-2.2.2-2]")]
    PropertyNotAllowed {
        /// The property identifier.
        property: u8,
        /// The packet (or will) it appeared in.
        packet: PacketType,
    },
    /// A property included twice where only one is allowed (Protocol Error).
    #[error("property 0x{0:02X} included more than once [MQTT-2.2.2-1]")]
    DuplicateProperty(u8),
    /// A property with a value outside its range: Receive Maximum 0, Maximum Packet Size 0,
    /// Topic Alias 0, Subscription Identifier 0, a boolean byte other than 0 or 1,
    /// Maximum QoS 2 and similar (Protocol Error).
    #[error("invalid value for property 0x{0:02X}")]
    InvalidPropertyValue(u8),
    /// Authentication Data without an Authentication Method (3.1.2.11.10, Protocol Error).
    #[error("authentication data without authentication method")]
    AuthDataWithoutMethod,
    /// A Response Topic containing wildcards [MQTT-3.3.2-14].
    #[error("wildcard in a response topic [MQTT-3.3.2-14]")]
    WildcardInResponseTopic,
    /// A reason code the packet may not carry, or no reason code at all (2.4).
    #[error("reason code 0x{code:02X} is not valid in {packet:?}")]
    InvalidReasonCode {
        /// The packet type.
        packet: PacketType,
        /// The byte received.
        code: u8,
    },
}

impl DecodeError {
    /// The MQTT 5.0 reason code to send for this error (in CONNACK before the connection is
    /// accepted, in DISCONNECT after): 0x81 Malformed Packet, 0x82 Protocol Error,
    /// 0x84 Unsupported Protocol Version, 0x90 Topic Name invalid or 0x95 Packet too large.
    pub const fn reason_code(&self) -> ReasonCode {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            InvalidProtocolName | UnsupportedProtocolLevel(_) => {
                ReasonCode::UnsupportedProtocolVersion
            }
            WildcardInTopicName => ReasonCode::TopicNameInvalid,
            ExpectedConnect(_)
            | UnexpectedPacket { .. }
            | ZeroPacketId
            | EmptyTopicName
            | EmptySubscribe
            | EmptyUnsubscribe
            | InvalidRetainHandling
            | DuplicateProperty(_)
            | InvalidPropertyValue(_)
            | AuthDataWithoutMethod
            | WildcardInResponseTopic
            | SessionPresentOnError => ReasonCode::ProtocolError,
            MalformedVarInt
            | InvalidPacketType(_)
            | InvalidHeaderFlags { .. }
            | InvalidQoS
            | DupOnQoS0
            | Truncated
            | TrailingBytes(_)
            | InvalidUtf8
            | NullCharacter
            | ConnectReservedFlag
            | InvalidWillFlags
            | PasswordWithoutUsername
            | ConnAckReservedFlags
            | EmptyTopicFilter
            | SubscriptionOptionsReserved
            | UnknownProperty(_)
            | PropertyNotAllowed { .. }
            | InvalidReasonCode { .. } => ReasonCode::MalformedPacket,
        }
    }
}

/// Why a packet cannot be encoded for the version asked: the caller's mistake, never the
/// peer's. Nothing is written to the buffer when encoding fails.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A field or property that exists only in MQTT 5.0 is set while encoding for 3.x. It is
    /// an error rather than a silent drop.
    #[error("{field} exists only in MQTT 5.0, cannot encode it for {version}")]
    V5Only {
        /// The field's name.
        field: &'static str,
        /// The version asked for.
        version: ProtocolVersion,
    },
    /// A packet type that the version does not have (AUTH before 5.0).
    #[error("{packet_type:?} does not exist in {version}")]
    PacketNotInVersion {
        /// The packet type.
        packet_type: PacketType,
        /// The version asked for.
        version: ProtocolVersion,
    },
    /// A reason code that the packet cannot carry in this version.
    #[error("reason code {code} cannot be sent in {packet:?} for {version}")]
    ReasonCodeNotAllowed {
        /// The packet type.
        packet: PacketType,
        /// The reason code.
        code: ReasonCode,
        /// The version asked for.
        version: ProtocolVersion,
    },
    /// QoS > 0 without a packet identifier, or QoS 0 with one [MQTT-2.2.1-2].
    #[error("packet identifier presence does not match QoS [MQTT-2.2.1-2]")]
    PacketIdMismatch,
    /// DUP set on a QoS 0 PUBLISH [MQTT-3.3.1-2].
    #[error("DUP flag on a QoS 0 PUBLISH [MQTT-3.3.1-2]")]
    DupOnQoS0,
    /// Binary data longer than 65,535 bytes.
    #[error("binary field {field} of {len} bytes is longer than 65,535")]
    BinaryTooLong {
        /// The field's name.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// A value outside its range (a Subscription Identifier over 268,435,455, a PUBLISH topic
    /// with wildcards, an empty topic without alias, a password without user name in 3.1.1…).
    #[error("invalid value for {0}")]
    InvalidValue(&'static str),
    /// A SUBSCRIBE or UNSUBSCRIBE without topic filters [MQTT-3.8.3-2], [MQTT-3.10.3-2].
    #[error("SUBSCRIBE/UNSUBSCRIBE without topic filters [MQTT-3.8.3-2]")]
    NoTopicFilters,
    /// The remaining length would exceed 268,435,455 bytes.
    #[error("packet of {0} bytes is larger than MQTT can carry")]
    PacketTooLarge(usize),
}
