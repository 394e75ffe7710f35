//! CONNACK (section 3.2).

use bytes::Bytes;
use core::num::{NonZeroU16, NonZeroU32};

use super::UserProperties;
use crate::{qos::QoS, reason::ReasonCode, string::MqttString};

/// CONNACK: the server's answer to CONNECT.
///
/// In 3.x the reason code travels as a CONNACK return code (see
/// [`ReasonCode::to_v3_connack`]); MQTT 3.1 has no Session Present flag.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnAck {
    /// Session Present.
    pub session_present: bool,
    /// Connect Reason Code (5.0) / return code (3.x).
    pub reason_code: ReasonCode,
    /// CONNACK properties (5.0).
    pub properties: ConnAckProperties,
}

/// CONNACK properties (3.2.2.3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConnAckProperties {
    /// Session Expiry Interval the server uses, overriding the client's.
    pub session_expiry_interval: Option<u32>,
    /// Receive Maximum of the server (absent means 65,535).
    pub receive_maximum: Option<NonZeroU16>,
    /// Maximum QoS the server supports: only 0 or 1 may be sent (absent means 2).
    pub maximum_qos: Option<QoS>,
    /// Retain Available (absent means true).
    pub retain_available: Option<bool>,
    /// Maximum Packet Size the server accepts.
    pub maximum_packet_size: Option<NonZeroU32>,
    /// Assigned Client Identifier, when the client sent an empty one.
    pub assigned_client_identifier: Option<MqttString>,
    /// Topic Alias Maximum of the server (absent means 0).
    pub topic_alias_maximum: Option<u16>,
    /// Reason String.
    pub reason_string: Option<MqttString>,
    /// User Properties.
    pub user_properties: UserProperties,
    /// Wildcard Subscription Available (absent means true).
    pub wildcard_subscription_available: Option<bool>,
    /// Subscription Identifiers Available (absent means true).
    pub subscription_identifiers_available: Option<bool>,
    /// Shared Subscription Available (absent means true).
    pub shared_subscription_available: Option<bool>,
    /// Server Keep Alive, overriding the client's Keep Alive.
    pub server_keep_alive: Option<u16>,
    /// Response Information.
    pub response_information: Option<MqttString>,
    /// Server Reference.
    pub server_reference: Option<MqttString>,
    /// Authentication Method.
    pub authentication_method: Option<MqttString>,
    /// Authentication Data.
    pub authentication_data: Option<Bytes>,
}
