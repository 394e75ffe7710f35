//! DISCONNECT (section 3.14).

use super::UserProperties;
use crate::{reason::ReasonCode, string::MqttString};

/// DISCONNECT: in 3.x only from client to server and without a body; in 5.0 either way with
/// a reason code and properties.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Disconnect {
    /// Disconnect Reason Code (5.0); Success is Normal disconnection.
    pub reason_code: ReasonCode,
    /// Properties (5.0).
    pub properties: DisconnectProperties,
}

/// DISCONNECT properties (3.14.2.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DisconnectProperties {
    /// Session Expiry Interval (client to server only).
    pub session_expiry_interval: Option<u32>,
    /// Reason String.
    pub reason_string: Option<MqttString>,
    /// User Properties.
    pub user_properties: UserProperties,
    /// Server Reference.
    pub server_reference: Option<MqttString>,
}
