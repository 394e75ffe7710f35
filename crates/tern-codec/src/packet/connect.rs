//! CONNECT (section 3.1).

use bytes::Bytes;
use core::num::{NonZeroU16, NonZeroU32};

use super::UserProperties;
use crate::{qos::QoS, string::MqttString, version::ProtocolVersion};

/// CONNECT: the first packet a client sends [MQTT-3.1.0-1].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connect {
    /// The protocol version; decides the protocol name and level written.
    pub protocol: ProtocolVersion,
    /// Clean Start (5.0) / Clean Session (3.x).
    pub clean_start: bool,
    /// Keep Alive in seconds; 0 turns the mechanism off.
    pub keep_alive: u16,
    /// The Client Identifier; may be empty (rules in [MQTT-3.1.3-6], [MQTT-3.1.3-7]).
    pub client_id: MqttString,
    /// The Will Message, if any.
    pub will: Option<Will>,
    /// User Name.
    pub username: Option<MqttString>,
    /// Password: binary data.
    pub password: Option<Bytes>,
    /// CONNECT properties (5.0).
    pub properties: ConnectProperties,
}

/// CONNECT properties (3.1.2.11).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnectProperties {
    /// Session Expiry Interval in seconds (absent means 0).
    pub session_expiry_interval: Option<u32>,
    /// Receive Maximum (absent means 65,535).
    pub receive_maximum: Option<NonZeroU16>,
    /// Maximum Packet Size the client accepts (absent means no limit).
    pub maximum_packet_size: Option<NonZeroU32>,
    /// Topic Alias Maximum (absent means 0).
    pub topic_alias_maximum: Option<u16>,
    /// Request Response Information.
    pub request_response_information: Option<bool>,
    /// Request Problem Information.
    pub request_problem_information: Option<bool>,
    /// User Properties.
    pub user_properties: UserProperties,
    /// Authentication Method (enhanced authentication).
    pub authentication_method: Option<MqttString>,
    /// Authentication Data; requires an Authentication Method.
    pub authentication_data: Option<Bytes>,
}

/// The Will Message of a CONNECT (3.1.2.5, 3.1.3.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Will {
    /// Will Topic: a topic name, no wildcards.
    pub topic: MqttString,
    /// Will Payload.
    pub payload: Bytes,
    /// Will QoS.
    pub qos: QoS,
    /// Will Retain.
    pub retain: bool,
    /// Will properties (5.0).
    pub properties: WillProperties,
}

/// Will properties (3.1.3.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WillProperties {
    /// Will Delay Interval in seconds (absent means 0).
    pub will_delay_interval: Option<u32>,
    /// Payload Format Indicator.
    pub payload_format_indicator: Option<super::PayloadFormat>,
    /// Message Expiry Interval in seconds.
    pub message_expiry_interval: Option<u32>,
    /// Content Type.
    pub content_type: Option<MqttString>,
    /// Response Topic: a topic name, no wildcards.
    pub response_topic: Option<MqttString>,
    /// Correlation Data.
    pub correlation_data: Option<Bytes>,
    /// User Properties.
    pub user_properties: UserProperties,
}
