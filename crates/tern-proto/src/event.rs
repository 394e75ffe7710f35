//! What the engines report: drained with `poll_event` after every input.

use tern_codec::{
    AckProperties, Auth, ConnAck, Connect, PacketId, Publish, PublishProperties, QoS, ReasonCode,
    SubAck, Subscribe, UnsubAck, Unsubscribe, Will,
};

use crate::error::ConnectionError;
use crate::state::OutgoingPublish;

/// An event from a [`ClientSession`](crate::ClientSession) or a
/// [`ServerSession`](crate::ServerSession). Each variant says which side reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// Client: the server accepted the connection. When `session_present` is false the
    /// session started anew and the application must subscribe again.
    Connected {
        /// Whether the server resumed an existing session [MQTT-3.2.2-2], [MQTT-3.2.2-3].
        session_present: bool,
        /// The CONNACK, with the server's limits and properties.
        connack: Box<ConnAck>,
        /// When the server had no session: the outgoing QoS 1/2 messages that were in flight
        /// and are now dropped with the session state, in the order they were first sent. A
        /// message in [`OutgoingPhase::AwaitPubComp`](crate::OutgoingPhase) had been received
        /// by the server (PUBREC); the others may not have been, and the application may
        /// publish them again as new messages. Empty when the session was resumed.
        discarded: Vec<OutgoingPublish>,
    },
    /// Server: a client asks to connect. Answer with
    /// [`ServerSession::accept`](crate::ServerSession::accept) or
    /// [`reject`](crate::ServerSession::reject); enhanced authentication may first exchange
    /// AUTH packets with [`ServerSession::auth`](crate::ServerSession::auth).
    ConnectRequest(Box<Connect>),
    /// Both: an application message arrived. Its topic is resolved (no topic alias left).
    /// When `needs_ack` is true (QoS 1 or 2 in manual-ack mode) the application answers with
    /// `ack(packet_id, reason)`; acknowledgements leave in arrival order [MQTT-4.6.0-2],
    /// [MQTT-4.6.0-3].
    Publish {
        /// The PUBLISH as received.
        publish: Publish,
        /// Whether the application must acknowledge it.
        needs_ack: bool,
    },
    /// Both: an outgoing QoS 1 or QoS 2 message is finished: PUBACK, PUBCOMP, or PUBREC with
    /// an error code arrived, and its packet identifier is free again. A message that became
    /// too large for the peer's Maximum Packet Size on a resumed session is dropped and reported
    /// with [`ReasonCode::PacketTooLarge`].
    PublishAcknowledged {
        /// The packet identifier.
        packet_id: PacketId,
        /// The message's QoS.
        qos: QoS,
        /// The reason code of the final acknowledgement (Success in 3.x).
        reason_code: ReasonCode,
        /// The properties of the final acknowledgement (5.0): Reason String and User
        /// Properties; empty in 3.x and for a message dropped as too large.
        properties: AckProperties,
    },
    /// Server: a SUBSCRIBE; answer with [`ServerSession::suback`](crate::ServerSession::suback).
    Subscribe(Subscribe),
    /// Server: an UNSUBSCRIBE; answer with
    /// [`ServerSession::unsuback`](crate::ServerSession::unsuback).
    Unsubscribe(Unsubscribe),
    /// Client: the answer to a SUBSCRIBE.
    SubAck(SubAck),
    /// Client: the answer to an UNSUBSCRIBE.
    UnsubAck(UnsubAck),
    /// Both (MQTT 5.0): a step of enhanced authentication; answer with `auth(..)`, or on the
    /// server with `accept`/`reject` during CONNECT.
    Auth(Auth),
    /// Client: a `publish` that returned [`PublishError::Blocked`](crate::PublishError) can be
    /// tried again.
    Writable,
    /// Both: the connection ended, reported exactly once. The driver closes the transport after
    /// draining `poll_transmit` (a final DISCONNECT may be there).
    Disconnected(ConnectionError),
    /// Server: the Will Message is due (the connection ended uncleanly and the Will Delay
    /// Interval passed) [MQTT-3.1.2-8], [MQTT-3.1.3-9]; the broker publishes it.
    Will(Publish),
}

/// The application message of a Will, as a PUBLISH for the broker to route.
pub fn will_to_publish(will: &Will) -> Publish {
    Publish {
        dup: false,
        qos: will.qos,
        retain: will.retain,
        topic: will.topic.clone(),
        packet_id: None,
        properties: PublishProperties {
            payload_format_indicator: will.properties.payload_format_indicator,
            message_expiry_interval: will.properties.message_expiry_interval,
            topic_alias: None,
            response_topic: will.properties.response_topic.clone(),
            correlation_data: will.properties.correlation_data.clone(),
            user_properties: will.properties.user_properties.clone(),
            subscription_identifiers: Vec::new(),
            content_type: will.properties.content_type.clone(),
        },
        payload: will.payload.clone(),
    }
}
