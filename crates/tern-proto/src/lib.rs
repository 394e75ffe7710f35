//! The sans-IO protocol engine of Tern: every rule of an MQTT 3.1, 3.1.1 and 5.0 session in
//! one deterministic state machine per side, with no I/O, no async, no clock and no threads.
//!
//! [`ClientSession`] is the client; [`ServerSession`] is the server's side of one network
//! connection (the broker core owns routing and sessions across connections). The tokio
//! client and the broker are thin drivers of them; tests and fuzzers drive them directly in
//! virtual time.
//!
//! # The model (after quinn-proto and str0m)
//!
//! - **Inputs are method calls** that take the current time: `handle_input(now, &mut bytes)`
//!   for bytes read from the transport, `handle_timeout(now)` when the deadline of
//!   `poll_timeout` passed, `handle_transport_closed(now)` when the transport failed, and the
//!   mutators (`connect`, `publish`, `ack`, `subscribe`, `accept`, `deliver`, `disconnect`, …).
//! - **Outputs are drained**: `poll_transmit(&mut BytesMut)` appends every packet to send to
//!   the caller's buffer (one write for many packets), `poll_timeout()` gives the next
//!   deadline, and `poll_event()` the next [`Event`].
//! - **One change, then drain.** After every input, the driver drains `poll_transmit`, reads
//!   `poll_timeout` and drains `poll_event` before the next input. Nothing happens between
//!   calls: the engine never reads a clock (`Instant::now` and `SystemTime::now` are banned by
//!   clippy in this crate) and never blocks.
//!
//! # Time
//!
//! Time is `std::time::Instant`, always passed in; the engine keeps the latest value it saw
//! and never goes backwards (an earlier `now` counts as the latest one). Timers are a small
//! table indexed by [`Timer`]: keepalive send and PINGRESP wait (client), 1.5 × keep alive
//! silence (server), connect timeout, and Will delay. A spurious `handle_timeout` is harmless.
//!
//! # Errors, in tiers
//!
//! - [`ProtocolError`]: the peer broke a rule. Each variant cites its `[MQTT-x.y.z-n]` and maps
//!   to a reason code; the engine sends DISCONNECT with it (5.0; 3.x just closes) and ends the
//!   connection.
//! - [`UserError`] and [`PublishError`]: the application asked for something invalid, or
//!   back-pressure ([`PublishError::Blocked`], later [`Event::Writable`]). Nothing changes.
//! - [`ConnectionError`]: why the connection ended, in [`Event::Disconnected`], reported exactly
//!   once, with [`ConnectionError::initiator`] telling who caused it.
//!
//! # Delivery
//!
//! QoS 1 and QoS 2 run the exact handshakes both ways. Packet identifiers are never reused
//! while in flight. Inbound messages are acknowledged by the application (`ack`) or
//! automatically ([`AckMode`]); acknowledgements leave in the order the messages arrived.
//! Inbound QoS 2 packet identifiers are kept until PUBREL so that a duplicate is never
//! delivered twice. On session resume, unacknowledged PUBLISH packets (with DUP) and PUBREL
//! packets are resent in their original order. MQTT 5.0 flow control (Receive Maximum),
//! Maximum Packet Size and topic aliases are honoured on send and enforced on receive.
//!
//! # Session state
//!
//! [`SessionState`] is plain data: taken out with `into_state`, put back with
//! [`ClientSession::with_state`] or [`Accept::session`], serializable by the broker.
//!
//! # Example
//!
//! A client and a server session connected back to back: one CONNECT and one QoS 1 publish.
//!
//! ```
//! use std::time::Instant;
//! use bytes::BytesMut;
//! use tern_codec::{MqttString, ProtocolVersion, Publish, QoS};
//! use tern_proto::{Accept, ClientConfig, ClientSession, Event, ServerConfig, ServerSession};
//!
//! let now = Instant::now(); // the driver's clock; the engine never reads one
//! let config = ClientConfig::new(ProtocolVersion::V5, MqttString::from_static("sensor-1"));
//! let mut client = ClientSession::new(config);
//! let mut server = ServerSession::new(ServerConfig::default());
//! let mut wire = BytesMut::new();
//!
//! client.connect(now)?;
//! client.poll_transmit(&mut wire);
//! server.handle_input(now, &mut wire);
//! let Some(Event::ConnectRequest(connect)) = server.poll_event() else { panic!() };
//! assert_eq!(connect.client_id, "sensor-1");
//! server.accept(now, Accept::default())?;
//! server.poll_transmit(&mut wire);
//! client.handle_input(now, &mut wire);
//! assert!(matches!(client.poll_event(), Some(Event::Connected { session_present: false, .. })));
//!
//! let publish = Publish {
//!     qos: QoS::AtLeastOnce,
//!     topic: MqttString::from_static("home/temperature"),
//!     payload: "21.5".into(),
//!     ..Publish::default()
//! };
//! let packet_id = client.publish(now, &publish)?.expect("QoS 1 has a packet identifier");
//! client.poll_transmit(&mut wire);
//! server.handle_input(now, &mut wire);
//! let Some(Event::Publish { publish, .. }) = server.poll_event() else { panic!() };
//! assert_eq!(publish.payload, "21.5");
//!
//! server.poll_transmit(&mut wire); // PUBACK (automatic acknowledgement)
//! client.handle_input(now, &mut wire);
//! assert!(matches!(
//!     client.poll_event(),
//!     Some(Event::PublishAcknowledged { packet_id: id, .. }) if id == packet_id
//! ));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod alias;
mod client;
mod config;
mod core;
mod error;
mod event;
mod message;
mod packet_id;
mod server;
mod state;
mod timer;

pub use client::{ClientSession, ServerLimits};
pub use config::{AckMode, ClientConfig, ServerConfig};
pub use error::{ConnectionError, Initiator, ProtocolError, PublishError, UserError};
pub use event::{Event, will_to_publish};
pub use message::Message;
pub use server::{Accept, DeliverOutcome, DeliveryOptions, DropReason, ServerSession};
pub use state::{InboundPublish, OutgoingPhase, OutgoingPublish, QueuedMessage, SessionState};
pub use timer::Timer;
