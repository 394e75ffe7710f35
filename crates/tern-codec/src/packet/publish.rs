//! PUBLISH (section 3.3).

use alloc::vec::Vec;
use bytes::Bytes;
use core::num::{NonZeroU16, NonZeroU32};

use super::{PacketId, UserProperties};
use crate::{qos::QoS, string::MqttString};

/// PUBLISH: an application message, in either direction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Publish {
    /// DUP: this may be a re-delivery; never set at QoS 0 [MQTT-3.3.1-2].
    pub dup: bool,
    /// QoS level.
    pub qos: QoS,
    /// RETAIN.
    pub retain: bool,
    /// Topic Name: no wildcards [MQTT-3.3.2-2]; empty only with a Topic Alias (5.0).
    pub topic: MqttString,
    /// Packet Identifier: present exactly when QoS > 0 [MQTT-2.2.1-2].
    pub packet_id: Option<PacketId>,
    /// PUBLISH properties (5.0).
    pub properties: PublishProperties,
    /// The application message; a slice of the input buffer when decoded.
    pub payload: Bytes,
}

impl PublishProperties {
    /// Whether no property is set: the PUBLISH encodes the same in 3.x and (with a zero
    /// Property Length) in 5.0.
    pub fn is_empty(&self) -> bool {
        self.payload_format_indicator.is_none()
            && self.message_expiry_interval.is_none()
            && self.topic_alias.is_none()
            && self.response_topic.is_none()
            && self.correlation_data.is_none()
            && self.user_properties.is_empty()
            && self.subscription_identifiers.is_empty()
            && self.content_type.is_none()
    }
}

/// The fields of a PUBLISH's fixed header and its packet identifier, which a sender sets for
/// each sending of one message: a broker delivers one message to many subscribers, each at
/// its QoS, with its own packet identifier and RETAIN flag, and resends it with DUP set.
/// [`Publish::encode_with`](crate::Publish::encode_with) encodes a message with them instead of its own, so the message
/// can stay shared (see [`Publish::flags`] for its own).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PublishFlags {
    /// DUP [MQTT-3.3.1-1]; never set at QoS 0 [MQTT-3.3.1-2].
    pub dup: bool,
    /// QoS level.
    pub qos: QoS,
    /// RETAIN.
    pub retain: bool,
    /// Packet Identifier: present exactly when QoS > 0 [MQTT-2.2.1-2].
    pub packet_id: Option<PacketId>,
}

impl Publish {
    /// The message's own fixed-header fields and packet identifier.
    pub fn flags(&self) -> PublishFlags {
        PublishFlags {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
            packet_id: self.packet_id,
        }
    }
}

/// The Payload Format Indicator (3.3.2.3.2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PayloadFormat {
    /// 0: unspecified bytes.
    #[default]
    Unspecified = 0,
    /// 1: UTF-8 encoded character data.
    Utf8 = 1,
}

/// PUBLISH properties (3.3.2.3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PublishProperties {
    /// Payload Format Indicator.
    pub payload_format_indicator: Option<PayloadFormat>,
    /// Message Expiry Interval in seconds.
    pub message_expiry_interval: Option<u32>,
    /// Topic Alias (non-zero).
    pub topic_alias: Option<NonZeroU16>,
    /// Response Topic: a topic name, no wildcards [MQTT-3.3.2-14].
    pub response_topic: Option<MqttString>,
    /// Correlation Data.
    pub correlation_data: Option<Bytes>,
    /// User Properties, in order [MQTT-3.3.2-17].
    pub user_properties: UserProperties,
    /// Subscription Identifiers (server to client only), each 1 to 268,435,455.
    pub subscription_identifiers: Vec<NonZeroU32>,
    /// Content Type.
    pub content_type: Option<MqttString>,
}
