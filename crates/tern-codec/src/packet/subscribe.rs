//! SUBSCRIBE and SUBACK (sections 3.8, 3.9).

use alloc::vec::Vec;
use core::num::NonZeroU32;

use super::{AckProperties, PacketId, UserProperties};
use crate::{qos::QoS, reason::ReasonCode, string::MqttString};

/// SUBSCRIBE: one or more topic filters with their options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet Identifier.
    pub packet_id: PacketId,
    /// SUBSCRIBE properties (5.0).
    pub properties: SubscribeProperties,
    /// The subscriptions; at least one [MQTT-3.8.3-2].
    pub subscriptions: Subscriptions,
}

/// The subscriptions of a SUBSCRIBE: a vector that holds one in place, the common case, so
/// that decoding a SUBSCRIBE of one filter allocates nothing. Make one from a `Vec` with
/// `.into()`, from an iterator with `collect()`, or with [`smallvec::smallvec!`].
pub type Subscriptions = smallvec::SmallVec<[Subscription; 1]>;

/// One topic filter of a SUBSCRIBE with its options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    /// Topic Filter; syntax is checked by `tern-topic`, not here.
    pub filter: MqttString,
    /// Subscription Options.
    pub options: SubscriptionOptions,
}

/// Subscription Options (3.8.3.1). In 3.x only the QoS exists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SubscriptionOptions {
    /// Maximum QoS.
    pub qos: QoS,
    /// No Local (5.0): do not send the subscriber its own messages.
    pub no_local: bool,
    /// Retain As Published (5.0): keep the RETAIN flag of forwarded messages.
    pub retain_as_published: bool,
    /// Retain Handling (5.0).
    pub retain_handling: RetainHandling,
}

/// Retain Handling (3.8.3.1): when retained messages are sent for a new subscription.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RetainHandling {
    /// 0: send retained messages at the time of the subscribe.
    #[default]
    SendAtSubscribe = 0,
    /// 1: send them only if the subscription did not exist.
    SendIfNew = 1,
    /// 2: do not send them.
    DoNotSend = 2,
}

/// SUBSCRIBE properties (3.8.2.1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubscribeProperties {
    /// Subscription Identifier, 1 to 268,435,455.
    pub subscription_identifier: Option<NonZeroU32>,
    /// User Properties.
    pub user_properties: UserProperties,
}

/// SUBACK: one reason code per subscription, in order [MQTT-3.9.3-1].
///
/// In 3.x the codes are the granted QoS (0x00 to 0x02) or Failure (0x80, encoded from
/// [`ReasonCode::UnspecifiedError`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubAck {
    /// Packet Identifier of the SUBSCRIBE.
    pub packet_id: PacketId,
    /// Properties (5.0).
    pub properties: AckProperties,
    /// One reason code per topic filter.
    pub reason_codes: Vec<ReasonCode>,
}
