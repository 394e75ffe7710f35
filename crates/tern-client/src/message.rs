//! Application messages: [`Message`] received, [`OutgoingMessage`] to publish, and the
//! [`PublishAck`] a publish resolves with.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use bytes::Bytes;
use tern_codec::{
    AckProperties, MqttString, PayloadFormat, Publish, PublishProperties, QoS, ReasonCode,
    UserProperties,
};
use tokio::sync::mpsc;

use crate::client::Command;
use crate::error::Error;

/// A message received from the broker, from a [`Subscription`](crate::Subscription) or the
/// catch-all [`Messages`](crate::Messages) stream.
///
/// In [`AckMode::Manual`](crate::AckMode) a QoS 1/2 message must be acknowledged with
/// [`ack`](Message::ack): acknowledgements leave in the order the messages arrived
/// [MQTT-4.6.0-2], so one that is never acknowledged holds back those after it, and the
/// broker's window (Receive Maximum) stays used until it is. A message delivered to several
/// streams is acknowledged once, from any copy.
#[derive(Clone)]
pub struct Message {
    pub(crate) publish: Publish,
    pub(crate) ack: Option<AckHandle>,
}

/// The way back to the driver for a manual acknowledgement.
#[derive(Clone)]
pub(crate) struct AckHandle {
    pub(crate) seq: u64,
    pub(crate) ctrl: mpsc::UnboundedSender<Command>,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("topic", &self.publish.topic)
            .field("qos", &self.publish.qos)
            .field("retain", &self.publish.retain)
            .field("dup", &self.publish.dup)
            .field("payload", &self.publish.payload)
            .field("properties", &self.publish.properties)
            .field("needs_ack", &self.ack.is_some())
            .finish()
    }
}

impl Message {
    /// The topic name (topic aliases already resolved).
    pub fn topic(&self) -> &str {
        self.publish.topic.as_str()
    }

    /// The payload.
    pub fn payload(&self) -> &Bytes {
        &self.publish.payload
    }

    /// The QoS it was delivered with.
    pub fn qos(&self) -> QoS {
        self.publish.qos
    }

    /// The RETAIN flag: a retained message sent for a new subscription (or, with Retain As
    /// Published, one published as retained).
    pub fn retain(&self) -> bool {
        self.publish.retain
    }

    /// The DUP flag: the broker may have sent it before.
    pub fn dup(&self) -> bool {
        self.publish.dup
    }

    /// Every MQTT 5.0 property of the PUBLISH.
    pub fn properties(&self) -> &PublishProperties {
        &self.publish.properties
    }

    /// MQTT 5.0 user properties, in order.
    pub fn user_properties(&self) -> &UserProperties {
        &self.publish.properties.user_properties
    }

    /// MQTT 5.0 Response Topic of a request.
    pub fn response_topic(&self) -> Option<&str> {
        self.publish
            .properties
            .response_topic
            .as_ref()
            .map(MqttString::as_str)
    }

    /// MQTT 5.0 Correlation Data of a request or response.
    pub fn correlation_data(&self) -> Option<&Bytes> {
        self.publish.properties.correlation_data.as_ref()
    }

    /// MQTT 5.0 Content Type.
    pub fn content_type(&self) -> Option<&str> {
        self.publish
            .properties
            .content_type
            .as_ref()
            .map(MqttString::as_str)
    }

    /// MQTT 5.0 Subscription Identifiers of the subscriptions it matched (set by the broker,
    /// one per matching subscription that has one [MQTT-3.3.4-3]).
    pub fn subscription_identifiers(&self) -> &[NonZeroU32] {
        &self.publish.properties.subscription_identifiers
    }

    /// The PUBLISH as received.
    pub fn publish(&self) -> &Publish {
        &self.publish
    }

    /// Whether the application must acknowledge it ([`AckMode::Manual`](crate::AckMode) and
    /// QoS 1/2).
    pub fn needs_ack(&self) -> bool {
        self.ack.is_some()
    }

    /// Acknowledges the message with Success (manual acknowledgement mode). A message that
    /// needs no acknowledgement, or was already acknowledged, is a no-op.
    ///
    /// # Errors
    /// [`Error::Closed`] when the client stopped.
    pub fn ack(&self) -> Result<(), Error> {
        self.ack_with(ReasonCode::Success)
    }

    /// Acknowledges with a reason code (MQTT 5.0: e.g. 0x80 Unspecified error, 0x87 Not
    /// authorized, 0x97 Quota exceeded to refuse the message; 3.1.1 accepts only Success).
    ///
    /// # Errors
    /// [`Error::Closed`] when the client stopped.
    pub fn ack_with(&self, reason: ReasonCode) -> Result<(), Error> {
        match &self.ack {
            None => Ok(()),
            Some(handle) => handle
                .ctrl
                .send(Command::Ack {
                    seq: handle.seq,
                    reason,
                })
                .map_err(|_| Error::Closed),
        }
    }

    /// The response to this request: a message to its Response Topic carrying its
    /// Correlation Data (MQTT 5.0 request/response, section 4.10); `None` when it has no
    /// Response Topic.
    pub fn reply(&self, payload: impl Into<Bytes>) -> Option<OutgoingMessage> {
        let topic = self.response_topic()?;
        let mut reply = OutgoingMessage::new(topic, payload).qos(self.qos());
        if let Some(data) = self.correlation_data() {
            reply = reply.correlation_data(data.clone());
        }
        Some(reply)
    }
}

/// A message to publish, built step by step:
///
/// ```
/// use tern_client::{OutgoingMessage, QoS};
///
/// let message = OutgoingMessage::new("home/door", "open")
///     .qos(QoS::AtLeastOnce)
///     .retain(true)
///     .user_property("source", "hall sensor")
///     .message_expiry(std::time::Duration::from_secs(60));
/// assert_eq!(message.topic(), "home/door");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub(crate) topic: String,
    pub(crate) payload: Bytes,
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
    pub(crate) properties: PublishProperties,
    /// User properties kept as plain strings until the message is queued (then checked).
    pub(crate) user_properties: Vec<(String, String)>,
    pub(crate) response_topic: Option<String>,
    pub(crate) content_type: Option<String>,
}

impl OutgoingMessage {
    /// A QoS 0, non-retained message.
    pub fn new(topic: impl Into<String>, payload: impl Into<Bytes>) -> Self {
        OutgoingMessage {
            topic: topic.into(),
            payload: payload.into(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: PublishProperties::default(),
            user_properties: Vec::new(),
            response_topic: None,
            content_type: None,
        }
    }

    /// The QoS.
    pub fn qos(mut self, qos: QoS) -> Self {
        self.qos = qos;
        self
    }

    /// The RETAIN flag.
    pub fn retain(mut self, retain: bool) -> Self {
        self.retain = retain;
        self
    }

    /// Adds an MQTT 5.0 user property.
    pub fn user_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.user_properties.push((name.into(), value.into()));
        self
    }

    /// MQTT 5.0 Response Topic: where the receiver should answer.
    pub fn response_topic(mut self, topic: impl Into<String>) -> Self {
        self.response_topic = Some(topic.into());
        self
    }

    /// MQTT 5.0 Correlation Data: matches a response to its request.
    pub fn correlation_data(mut self, data: impl Into<Bytes>) -> Self {
        self.properties.correlation_data = Some(data.into());
        self
    }

    /// MQTT 5.0 Content Type.
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// MQTT 5.0 Message Expiry Interval (whole seconds).
    pub fn message_expiry(mut self, expiry: Duration) -> Self {
        self.properties.message_expiry_interval =
            Some(u32::try_from(expiry.as_secs()).unwrap_or(u32::MAX));
        self
    }

    /// MQTT 5.0 Payload Format Indicator: the payload is UTF-8 text.
    pub fn utf8_payload(mut self, utf8: bool) -> Self {
        self.properties.payload_format_indicator = Some(if utf8 {
            PayloadFormat::Utf8
        } else {
            PayloadFormat::Unspecified
        });
        self
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The payload.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Checks the strings and builds the PUBLISH.
    pub(crate) fn into_publish(self) -> Result<Publish, Error> {
        tern_topic::validate_topic_name(&self.topic)?;
        let mut properties = self.properties;
        for (name, value) in self.user_properties {
            properties
                .user_properties
                .push((MqttString::try_from(name)?, MqttString::try_from(value)?));
        }
        if let Some(topic) = self.response_topic {
            // A Response Topic is a topic name: no wildcards [MQTT-3.3.2-14].
            tern_topic::validate_topic_name(&topic)?;
            properties.response_topic = Some(MqttString::try_from(topic)?);
        }
        if let Some(content_type) = self.content_type {
            properties.content_type = Some(MqttString::try_from(content_type)?);
        }
        Ok(Publish {
            dup: false,
            qos: self.qos,
            retain: self.retain,
            topic: MqttString::try_from(self.topic)?,
            packet_id: None,
            properties,
            payload: self.payload,
        })
    }
}

/// A publish is done at its QoS: written (QoS 0), PUBACK (QoS 1) or PUBCOMP (QoS 2).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishAck {
    /// The QoS it was published with.
    pub qos: QoS,
    /// The reason code of PUBACK or PUBCOMP (MQTT 5.0; Success in 3.1.1 and for QoS 0). A
    /// success code below 0x80, e.g. 0x10 No matching subscribers; error codes are
    /// [`Error::Refused`] instead.
    pub reason_code: ReasonCode,
    /// The properties of PUBACK or PUBCOMP (MQTT 5.0): Reason String and User Properties;
    /// empty in 3.1.1, for QoS 0 and when the session was lost.
    pub properties: AckProperties,
    /// The broker lost the session after PUBREC (QoS 2), so PUBCOMP never came: the broker
    /// had taken the message, it was not sent again.
    pub session_lost: bool,
}
