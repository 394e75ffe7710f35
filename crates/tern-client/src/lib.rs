//! An async MQTT 3.1.1 and 5.0 client for tokio: a thin driver around the sans-IO
//! [`tern_proto::ClientSession`].
//!
//! - **One driver task per client** owns the session, the transport (TCP, TLS, WebSocket)
//!   and one timer. The cloneable [`Client`] handle talks to it through a bounded queue of
//!   messages (the offline queue, see [`OverflowPolicy`]) and a queue of commands; answers come
//!   back through one-shot channels.
//! - **Acknowledgement futures**: [`Client::publish`] resolves when the message is done at its
//!   QoS (written for QoS 0, PUBACK for 1, PUBCOMP for 2) with the reason code. The broker's
//!   Receive Maximum is waited for, never buffered without bound.
//! - **Subscription streams**: [`Client::subscribe`] resolves after SUBACK with a
//!   [`Subscription`] stream of its messages; dropping it unsubscribes. [`Client::messages`]
//!   is a catch-all stream. A handler may publish and await the acknowledgement: the driver
//!   keeps reading the socket while streams are full (see [`ClientBuilder::inbound_limit`]).
//! - **Reconnection** with exponential backoff and jitter ([`ReconnectOptions`]); refused
//!   credentials stop it. When the broker has no session any more, subscriptions are restored
//!   and in-flight messages published again; when it has, they are re-sent with DUP by the
//!   session engine. [`Client::connection_events`] reports Connected, Disconnected and
//!   Reconnecting.
//! - **Manual acknowledgements** ([`AckMode::Manual`]; acknowledgements leave in arrival
//!   order), and MQTT 5.0 user properties, request/response ([`Requester`],
//!   [`Message::reply`]), subscription identifiers ([`Message::subscription_identifiers`]),
//!   topic aliases on send, and enhanced authentication ([`AuthHandler`]).
//!
//! # Example
//!
//! ```no_run
//! use tern_client::{Client, QoS};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder("mqtt://localhost:1883")?
//!     .client_id("thermostat")
//!     .connect()
//!     .await?;
//!
//! let mut commands = client.subscribe("home/thermostat/set", QoS::AtLeastOnce).await?;
//! let ack = client.publish("home/thermostat/state", QoS::AtLeastOnce, "21.5").await?;
//! println!("state acknowledged: {}", ack.reason_code);
//!
//! while let Some(message) = commands.recv().await {
//!     // Publishing from inside a handler cannot deadlock the client.
//!     client.publish("home/thermostat/state", QoS::AtLeastOnce, message.payload().clone()).await?;
//! }
//! # Ok(())
//! # }
//! ```

mod auth;
mod client;
mod driver;
mod error;
mod message;
mod options;
mod reconnect;
mod request;
mod subscription;
mod transport;

pub use auth::AuthHandler;
pub use client::{Client, ConnectionEvent, ConnectionEvents, PublishToken};
pub use error::{BuildError, DisconnectReason, Error};
pub use message::{Message, OutgoingMessage, PublishAck};
pub use options::{ClientBuilder, ConnectError, OverflowPolicy, SubscribeOptions};
pub use reconnect::ReconnectOptions;
pub use request::Requester;
pub use subscription::{Messages, Subscription};

pub use tern_codec::{
    Auth, ConnAck, ProtocolVersion, PublishProperties, QoS, ReasonCode, RetainHandling, Will,
};
pub use tern_proto::AckMode;
