//! The MQTT wire codec of Tern: every control packet of MQTT 3.1, 3.1.1 and 5.0.
//!
//! - One packet model ([`Packet`]) shaped after MQTT 5.0; the [`ProtocolVersion`] is passed to
//!   every encode and decode. Encoding a field that only 5.0 has for 3.x is an
//!   [`EncodeError`], never a silent drop.
//! - Incremental decoding ([`Decoder`]) from a [`BytesMut`](bytes::BytesMut): a partial packet
//!   is `Ok(None)` and [`Decoder::needed`] says how many bytes are missing; the maximum packet
//!   size is enforced from the fixed header before the body is buffered. Payloads, binary
//!   fields and strings are zero-copy slices of the input.
//! - Strict validation: every [`DecodeError`] cites the normative statement it enforces and
//!   maps to the reason code to send ([`DecodeError::reason_code`]). Peer bytes never panic.
//! - Exact [`Packet::encoded_len`]; [`Packet::encode`] writes into a `BytesMut` with one
//!   reservation and no intermediate allocation.
//! - `#![no_std]` with `alloc`; the default `std` feature only adds `std::error::Error`.
//!
//! ```
//! use bytes::BytesMut;
//! use tern_codec::{Decoder, MqttString, Packet, ProtocolVersion, Publish, QoS, MAX_PACKET_SIZE};
//!
//! let publish = Publish {
//!     qos: QoS::AtLeastOnce,
//!     topic: MqttString::from_static("home/ground/living/light"),
//!     packet_id: core::num::NonZeroU16::new(7),
//!     payload: "on".into(),
//!     ..Publish::default()
//! };
//! let mut buf = BytesMut::new();
//! Packet::Publish(publish.clone()).encode(ProtocolVersion::V5, &mut buf)?;
//!
//! let mut decoder = Decoder::with_version(ProtocolVersion::V5, MAX_PACKET_SIZE);
//! let mut partial = buf.split_to(5);
//! assert_eq!(decoder.decode(&mut partial)?, None); // a prefix is not an error
//! partial.unsplit(buf);
//! assert_eq!(decoder.decode(&mut partial)?, Some(Packet::Publish(publish)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod codec;
pub use codec::{EncodedPublish, PreparedPublish};
mod error;
mod frame;
pub mod packet;
mod property;
mod qos;
mod reason;
mod string;
mod version;
mod wire;

pub use error::{DecodeError, EncodeError};
pub use frame::{Decoder, FixedHeader, Framing, MAX_PACKET_SIZE, MAX_REMAINING_LENGTH, framing};
pub use packet::{
    Ack, AckKind, AckProperties, Auth, AuthProperties, ConnAck, ConnAckProperties, Connect,
    ConnectProperties, Disconnect, DisconnectProperties, Packet, PacketId, PacketType,
    PayloadFormat, Publish, PublishFlags, PublishProperties, RetainHandling, SubAck, Subscribe,
    SubscribeProperties, Subscription, SubscriptionOptions, Subscriptions, UnsubAck, Unsubscribe,
    UnsubscribeProperties, UserProperties, UserProperty, Will, WillProperties,
};
pub use qos::QoS;
pub use reason::ReasonCode;
/// The `smallvec` crate, whose `SmallVec` holds the [`Subscriptions`] of a SUBSCRIBE.
pub use smallvec;
pub use string::{MAX_STRING_LEN, MqttString, StringError};
pub use version::ProtocolVersion;
