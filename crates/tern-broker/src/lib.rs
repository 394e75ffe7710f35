//! Tern's MQTT broker: an embeddable tokio library and the `ternd` binary.
//!
//! The protocol is `tern-proto`'s sans-IO [`ServerSession`](tern_proto::ServerSession), one
//! per connection; routing is `tern-topic`'s subscription trie. This crate is the thin layer
//! that drives them over sockets.
//!
//! # Architecture
//!
//! - **One task per connection** ([`connection`](crate) module) owns its `ServerSession` and
//!   its stream, and polls the stream (readable, and writable while bytes wait), its
//!   session's mailbox, the engine's next deadline and the stall deadlines. After each input
//!   it drains the engine: events first, then every packet to send into one write buffer. It
//!   never waits on a write, so it always reacts to takeover, shutdown and timeouts.
//! - **The router** holds every subscription in one `SubscriptionTree` behind a read-write
//!   lock; a publish takes the read lock only to collect the matching sessions into a reused
//!   `Vec`, then pushes into their mailboxes after releasing it. Overlapping subscriptions of a
//!   session are merged into one delivery at the highest QoS with every subscription
//!   identifier; a shared group delivers to one member, round robin.
//! - **The session registry** maps client identifiers to sessions; it is locked only on
//!   connect, takeover, disconnect and expiry. A session's mailbox (bounded by
//!   [`config::MailboxLimits`]) lives as long as the session: while the client is away the
//!   closed engine is kept in it and queues QoS 1/2 messages for the next connection.
//! - **Memory is bounded whatever a client does** (see [the policy in
//!   `config`](config#memory-bounds-and-slow-consumers)): a connection stops reading and
//!   stops taking deliveries while its write buffer is full, and a client whose socket takes
//!   nothing for the stall timeout is disconnected; QoS 0 beyond a full mailbox is dropped
//!   and counted; a QoS 1/2 message meeting a full mailbox holds its publisher back (no
//!   reading, acknowledgement withheld) until the subscriber makes room or, after the stall
//!   timeout, is disconnected as a slow consumer; a full offline queue refuses visibly (5.0:
//!   PUBACK/PUBREC 0x97). [`BrokerHandle::stats`] shows the gauges and peaks.
//! - **Limits** ([`config::Limits`], [the connection and topic
//!   limits](config#connection-limits)): connections over `max_connections` (global or per
//!   listener) are closed at accept; topics and filters beyond `max_topic_length` /
//!   `max_topic_levels`, subscriptions beyond `max_subscriptions` are refused with their
//!   reason codes; the inbound rate limits pause reading (never drop) and hold the keep-alive
//!   timer meanwhile.
//! - **Metrics**: with `[metrics] bind`, a Prometheus endpoint serves `GET /metrics`
//!   (OpenMetrics text; the names are listed in [`metrics`]), read from
//!   [`BrokerHandle::stats`] at each scrape.
//! - **`$SYS/broker/...`** topics (mosquitto's names) are published every `sys_interval`
//!   seconds, retained in memory.
//! - **One port, every version**: the protocol level of CONNECT selects MQTT 3.1, 3.1.1 or
//!   5.0; an unsupported level is answered with CONNACK 0x84 (5.0 format, level above 5) or
//!   return code 1 (3.1.1 format) [MQTT-3.1.2-2]. A socket that sends no complete CONNECT
//!   within `limits.connect_timeout` is closed.
//! - **Transports**: each configured listener speaks MQTT over TCP, TLS (rustls), WebSocket
//!   or WebSocket over TLS (see [`config`](config#listeners)); the handshakes run in the
//!   connection's task, bounded by `limits.connect_timeout`, and every transport feeds the
//!   same connection code as a byte stream. [`BrokerHandle::clients`] lists the connected
//!   clients with their transport and certificate identity.
//! - **Authentication and authorisation** ([`auth`]): a password file and an ACL file in
//!   mosquitto's formats (`[auth]`, reloaded by [`BrokerHandle::reload_auth`]), or any
//!   [`Authenticator`] / [`Authorizer`] of the application's; MQTT 5.0 enhanced
//!   authentication with [`AuthMethod`]s, SCRAM-SHA-256 built in.
//! - **Durable state** ([`storage`]): with a [`Storage`] ([`RedbStorage`] on disk, what
//!   `ternd` uses unless `persistence = false`), retained messages and persistent sessions
//!   (subscriptions, queued and in-flight QoS 1/2 messages) survive a restart or a crash. A
//!   writer thread commits the operations in groups; a QoS 1/2 PUBLISH is acknowledged once
//!   its durable copies are committed; sessions without expiry never touch the disk.
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
//! let mut config = Config::with_listeners(["127.0.0.1:0".parse()?]);
//! config.sys_interval = 0; // no `$SYS/broker/...` topics: only ours are retained
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

pub mod auth;
mod broker;
pub mod config;
mod connection;
mod counter;
mod limits;
mod listener;
pub mod metrics;
mod read_buffer;
mod retained;
mod router;
mod session;
pub mod storage;
mod sys;
mod transport;

pub use auth::{Access, AuthMethod, Authenticator, Authorizer, Decision, FileAuth, Identity};
pub use broker::{Broker, BrokerHandle, PublishError, StartError, Stats};
pub use config::{Config, ConfigError};
pub use listener::Listener;
pub use storage::{MemoryStorage, RedbStorage, Storage, StorageError};
pub use transport::{ClientInfo, Transport};
