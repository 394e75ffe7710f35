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

/// Which of the four packets an [`Ack`] body belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AckKind {
    /// PUBACK: QoS 1 delivered.
    PubAck,
    /// PUBREC: QoS 2 received (step 1).
    PubRec,
    /// PUBREL: QoS 2 released (step 2).
    PubRel,
    /// PUBCOMP: QoS 2 complete (step 3).
    PubComp,
}

impl AckKind {
    /// The packet's type.
    pub fn packet_type(self) -> super::PacketType {
        match self {
            AckKind::PubAck => super::PacketType::PubAck,
            AckKind::PubRec => super::PacketType::PubRec,
            AckKind::PubRel => super::PacketType::PubRel,
            AckKind::PubComp => super::PacketType::PubComp,
        }
    }

    /// The kind of a packet type, if it is one of the four.
    pub fn of(packet_type: super::PacketType) -> Option<Self> {
        match packet_type {
            super::PacketType::PubAck => Some(AckKind::PubAck),
            super::PacketType::PubRec => Some(AckKind::PubRec),
            super::PacketType::PubRel => Some(AckKind::PubRel),
            super::PacketType::PubComp => Some(AckKind::PubComp),
            _ => None,
        }
    }

    /// The packet of this kind with `ack` as its body.
    pub fn packet(self, ack: Ack) -> super::Packet {
        match self {
            AckKind::PubAck => super::Packet::PubAck(ack),
            AckKind::PubRec => super::Packet::PubRec(ack),
            AckKind::PubRel => super::Packet::PubRel(ack),
            AckKind::PubComp => super::Packet::PubComp(ack),
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
