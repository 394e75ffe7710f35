//! UNSUBSCRIBE and UNSUBACK (sections 3.10, 3.11).

use alloc::vec::Vec;

use super::{AckProperties, PacketId, UserProperties};
use crate::{reason::ReasonCode, string::MqttString};

/// UNSUBSCRIBE: one or more topic filters to remove.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet Identifier.
    pub packet_id: PacketId,
    /// UNSUBSCRIBE properties (5.0).
    pub properties: UnsubscribeProperties,
    /// The topic filters; at least one [MQTT-3.10.3-2].
    pub filters: Vec<MqttString>,
}

/// UNSUBSCRIBE properties (3.10.2.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnsubscribeProperties {
    /// User Properties.
    pub user_properties: UserProperties,
}

/// UNSUBACK: in 5.0 one reason code per topic filter; in 3.x no payload, so `reason_codes`
/// is empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsubAck {
    /// Packet Identifier of the UNSUBSCRIBE.
    pub packet_id: PacketId,
    /// Properties (5.0).
    pub properties: AckProperties,
    /// One reason code per topic filter (5.0); empty in 3.x.
    pub reason_codes: Vec<ReasonCode>,
}
