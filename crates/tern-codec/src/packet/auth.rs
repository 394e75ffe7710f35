//! AUTH (section 3.15, MQTT 5.0 only).

use bytes::Bytes;

use super::UserProperties;
use crate::{reason::ReasonCode, string::MqttString};

/// AUTH: a step of enhanced authentication.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Auth {
    /// Authenticate Reason Code: Success, Continue authentication or Re-authenticate.
    pub reason_code: ReasonCode,
    /// Properties.
    pub properties: AuthProperties,
}

/// AUTH properties (3.15.2.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuthProperties {
    /// Authentication Method.
    pub authentication_method: Option<MqttString>,
    /// Authentication Data.
    pub authentication_data: Option<Bytes>,
    /// Reason String.
    pub reason_string: Option<MqttString>,
    /// User Properties.
    pub user_properties: UserProperties,
}
