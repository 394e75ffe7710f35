//! Tern's MQTT broker: an embeddable tokio library and the `ternd` binary.
//!
//! The protocol is `tern-proto`'s sans-IO [`ServerSession`](tern_proto::ServerSession), one
//! per connection; routing is `tern-topic`'s subscription trie. This crate is the thin layer
//! that drives them over sockets.
//!
//! # Architecture
//!
//! - **One task per connection** ([`connection`](crate) module) owns its `ServerSession` and
//!   its stream, and `select!`s on the stream, its session's mailbox and the engine's next
//!   deadline. After each input it drains the engine: events first, then every packet to send
//!   into one buffer written with one `write_all`.
//! - **The router** holds every subscription in one `SubscriptionTree` behind a read-write
//!   lock; a publish takes the read lock only to collect the matching sessions into a reused
//!   `Vec`, then pushes into their mailboxes after releasing it. Overlapping subscriptions of a
//!   session are merged into one delivery at the highest QoS with every subscription
//!   identifier; a shared group delivers to one member, round robin.
//! - **The session registry** maps client identifiers to sessions; it is locked only on
//!   connect, takeover, disconnect and expiry. A session's mailbox (bounded; see
//!   [`config::MailboxLimits`] for the policy) lives as long as the session: while the client is
//!   away the closed engine is kept in it and queues QoS 1/2 messages for the next connection.
//! - **Storage** ([`Storage`], [`MemoryStorage`]) receives retained messages and offline
//!   sessions, and gives retained messages back at start.
//!
//! # Example
//!
//! A broker on an ephemeral loopback port, a message published in-process, and a graceful
//! shutdown:
//!
//! ```
//! use tern_broker::{Broker, Config};
//! use tern_codec::{MqttString, Publish};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Config::with_listeners(["127.0.0.1:0".parse()?]);
//! let broker = Broker::new(config).start().await?;
//! let addr = broker.local_addrs()[0];
//! assert!(addr.ip().is_loopback() && addr.port() != 0);
//!
//! // Retained, so a client that subscribes later still gets it.
//! let publish = Publish {
//!     topic: MqttString::from_static("status/broker"),
//!     payload: "up".into(),
//!     retain: true,
//!     ..Publish::default()
//! };
//! assert_eq!(broker.publish(publish)?, 0); // nobody subscribed yet
//! assert_eq!(broker.stats().retained, 1);
//!
//! assert!(broker.shutdown().await);
//! # Ok(())
//! # }
//! ```

mod broker;
pub mod config;
mod connection;
mod listener;
mod retained;
mod router;
mod session;
mod storage;

pub use broker::{Broker, BrokerHandle, PublishError, StartError, Stats};
pub use config::{Config, ConfigError};
pub use listener::Listener;
pub use storage::{MemoryStorage, Storage, StorageError, StoredSession, StoredSubscription};
