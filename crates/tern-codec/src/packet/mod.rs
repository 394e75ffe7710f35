//! The control packets: one model shaped after MQTT 5.0 for every version.

mod ack;
mod auth;
mod connack;
mod connect;
mod disconnect;
mod publish;
mod subscribe;
mod unsubscribe;

pub use ack::{Ack, AckKind, AckProperties};
pub use auth::{Auth, AuthProperties};
pub use connack::{ConnAck, ConnAckProperties};
pub use connect::{Connect, ConnectProperties, Will, WillProperties};
pub use disconnect::{Disconnect, DisconnectProperties};
pub use publish::{PayloadFormat, Publish, PublishFlags, PublishProperties};
pub use subscribe::{
    RetainHandling, SubAck, Subscribe, SubscribeProperties, Subscription, SubscriptionOptions,
    Subscriptions,
};
pub use unsubscribe::{UnsubAck, Unsubscribe, UnsubscribeProperties};

use alloc::{boxed::Box, vec::Vec};
use core::num::NonZeroU16;

use crate::string::MqttString;

/// A packet identifier: non-zero wherever a packet carries one [MQTT-2.2.1-3].
pub type PacketId = NonZeroU16;

/// A User Property: a name/value pair of UTF-8 strings that may appear any number of times,
/// in order [MQTT-3.3.2-17].
pub type UserProperty = (MqttString, MqttString);

/// The user properties of a packet, in the order they appeared.
pub type UserProperties = Vec<UserProperty>;

/// The control packet type: the high four bits of the first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// Client request to connect.
    Connect = 1,
    /// Connect acknowledgement.
    ConnAck = 2,
    /// Publish message.
    Publish = 3,
    /// Publish acknowledgement (QoS 1).
    PubAck = 4,
    /// Publish received (QoS 2, part 1).
    PubRec = 5,
    /// Publish release (QoS 2, part 2).
    PubRel = 6,
    /// Publish complete (QoS 2, part 3).
    PubComp = 7,
    /// Subscribe request.
    Subscribe = 8,
    /// Subscribe acknowledgement.
    SubAck = 9,
    /// Unsubscribe request.
    Unsubscribe = 10,
    /// Unsubscribe acknowledgement.
    UnsubAck = 11,
    /// Ping request.
    PingReq = 12,
    /// Ping response.
    PingResp = 13,
    /// Disconnect notification.
    Disconnect = 14,
    /// Authentication exchange (MQTT 5.0 only).
    Auth = 15,
}

impl PacketType {
    /// The type with this four-bit value; `None` for the reserved 0.
    pub const fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => PacketType::Connect,
            2 => PacketType::ConnAck,
            3 => PacketType::Publish,
            4 => PacketType::PubAck,
            5 => PacketType::PubRec,
            6 => PacketType::PubRel,
            7 => PacketType::PubComp,
            8 => PacketType::Subscribe,
            9 => PacketType::SubAck,
            10 => PacketType::Unsubscribe,
            11 => PacketType::UnsubAck,
            12 => PacketType::PingReq,
            13 => PacketType::PingResp,
            14 => PacketType::Disconnect,
            15 => PacketType::Auth,
            _ => return None,
        })
    }
}

/// Any control packet of MQTT 3.1, 3.1.1 or 5.0.
///
/// Fields that only MQTT 5.0 has (properties, most reason codes) are simply left at their
/// defaults for 3.x; setting one and encoding for 3.x is an [`EncodeError`](crate::EncodeError).
///
/// CONNECT and CONNACK, the two largest packets and sent once per connection, are boxed, so
/// that a `Packet` is only as large as a [`Publish`] and moving one (out of
/// [`Decoder::decode`](crate::Decoder::decode), into a queue) copies less. Every packet
/// struct converts into its `Packet` with `From` (`Packet::from(connect)`, `connect.into()`).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Packet {
    /// CONNECT (boxed).
    Connect(Box<Connect>),
    /// CONNACK (boxed).
    ConnAck(Box<ConnAck>),
    /// PUBLISH.
    Publish(Publish),
    /// PUBACK.
    PubAck(Ack),
    /// PUBREC.
    PubRec(Ack),
    /// PUBREL.
    PubRel(Ack),
    /// PUBCOMP.
    PubComp(Ack),
    /// SUBSCRIBE.
    Subscribe(Subscribe),
    /// SUBACK.
    SubAck(SubAck),
    /// UNSUBSCRIBE.
    Unsubscribe(Unsubscribe),
    /// UNSUBACK.
    UnsubAck(UnsubAck),
    /// PINGREQ.
    PingReq,
    /// PINGRESP.
    PingResp,
    /// DISCONNECT.
    Disconnect(Disconnect),
    /// AUTH (MQTT 5.0 only).
    Auth(Auth),
}

// A guard, not a test of an exact layout: `Packet` stays as small as its largest unboxed
// variant (`Publish`, 232 bytes on 64-bit targets). Moving it is a `memcpy` of this size,
// three times per packet in a typical read loop; box a variant that would grow it.
const _: () = assert!(core::mem::size_of::<Packet>() <= core::mem::size_of::<Publish>() + 8);

impl From<Connect> for Packet {
    fn from(p: Connect) -> Self {
        Packet::Connect(Box::new(p))
    }
}

impl From<ConnAck> for Packet {
    fn from(p: ConnAck) -> Self {
        Packet::ConnAck(Box::new(p))
    }
}

/// `From` impls of the packet structs that a `Packet` holds as they are.
macro_rules! packet_from {
    ($($ty:ident => $variant:ident),*) => {$(
        impl From<$ty> for Packet {
            fn from(p: $ty) -> Self {
                Packet::$variant(p)
            }
        }
    )*};
}

packet_from!(
    Publish => Publish,
    Subscribe => Subscribe,
    SubAck => SubAck,
    Unsubscribe => Unsubscribe,
    UnsubAck => UnsubAck,
    Disconnect => Disconnect,
    Auth => Auth
);

impl Packet {
    /// The packet's type.
    pub const fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }
}
