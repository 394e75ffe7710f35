//! PUBACK, PUBREC, PUBREL and PUBCOMP (sections 3.4 to 3.7): one body, four packet types.

use super::{PacketId, UserProperties};
use crate::{reason::ReasonCode, string::MqttString};

/// The body shared by PUBACK, PUBREC, PUBREL and PUBCOMP; [`Packet`](super::Packet) says which.
///
/// In 3.x only the packet identifier exists, and the reason code must be Success to encode.
/// The shortest form is written: no reason code when it is Success and there are no properties.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// Packet Identifier of the PUBLISH (or PUBREL) acknowledged.
    pub packet_id: PacketId,
    /// Reason Code (5.0).
    pub reason_code: ReasonCode,
    /// Properties (5.0).
    pub properties: AckProperties,
}

impl Ack {
    /// A successful acknowledgement without properties.
    pub fn new(packet_id: PacketId) -> Self {
        Ack {
            packet_id,
            reason_code: ReasonCode::Success,
            properties: AckProperties::default(),
        }
    }
}

/// Properties of the acknowledgement packets PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and
/// UNSUBACK: a Reason String and User Properties.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AckProperties {
    /// Reason String.
    pub reason_string: Option<MqttString>,
    /// User Properties.
    pub user_properties: UserProperties,
}
