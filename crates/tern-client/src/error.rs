//! Errors: [`BuildError`] for a configuration that cannot work, [`Error`] for an operation
//! on a running client, and [`DisconnectReason`] for why a connection ended.

use std::io;
use std::sync::Arc;

use tern_codec::{ReasonCode, StringError};
use tern_proto::ConnectionError;
use tern_topic::TopicError;

/// A configuration that cannot work, found by [`ClientBuilder::build`](crate::ClientBuilder)
/// before anything is spawned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The URL is not `scheme://[user[:password]@]host[:port][/path]`.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The scheme is none of `mqtt`, `mqtts`, `ws`, `wss` (or `tcp`, `ssl`, `tls`).
    #[error("unsupported URL scheme {0:?} (expected mqtt, mqtts, ws or wss)")]
    UnsupportedScheme(String),
    /// A string option is not a valid MQTT string (U+0000, longer than 65,535 bytes).
    #[error("invalid {field}: {source}")]
    InvalidString {
        /// The option.
        field: &'static str,
        /// Why.
        source: StringError,
    },
    /// An option has a value the protocol cannot carry (e.g. a keep alive above 65,535 s).
    #[error("invalid {field}: {reason}")]
    InvalidValue {
        /// The option.
        field: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// A certificate or key file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: io::Error,
    },
    /// The TLS configuration is invalid (no certificate in a PEM file, a key that does not
    /// parse, a key that does not match its certificate, …).
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// `build` and `connect` spawn the driver task and must run inside a tokio runtime.
    #[error("no tokio runtime: build the client from inside a runtime")]
    NoRuntime,
}

/// Why a connection ended (or could not be made), in
/// [`ConnectionEvent::Disconnected`](crate::ConnectionEvent).
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The transport could not be established (TCP, TLS or WebSocket handshake) or failed.
    #[error("transport: {0}")]
    Transport(Arc<io::Error>),
    /// Establishing the transport or receiving CONNACK took longer than the connect timeout.
    #[error("connect timeout")]
    ConnectTimeout,
    /// The session engine ended the connection: the broker refused it (CONNACK reason code),
    /// sent DISCONNECT, broke the protocol, or stopped answering pings.
    #[error(transparent)]
    Session(ConnectionError),
    /// The enhanced authentication hook gave up.
    #[error("authentication: {0}")]
    Auth(String),
    /// The application called [`Client::disconnect`](crate::Client::disconnect).
    #[error("disconnected by the application")]
    Local,
}

impl DisconnectReason {
    /// The CONNACK reason code when the broker refused the connection.
    pub fn refused(&self) -> Option<ReasonCode> {
        match self {
            DisconnectReason::Session(ConnectionError::Refused(code)) => Some(*code),
            _ => None,
        }
    }

    /// Whether retrying cannot help, so the client stops instead of reconnecting: the broker
    /// refused the credentials or the client (Bad User Name or Password, Not Authorized,
    /// Banned, Bad Authentication Method, Client Identifier not valid, Unsupported Protocol
    /// Version), or the authentication hook failed.
    pub fn is_fatal(&self) -> bool {
        match self {
            DisconnectReason::Auth(_) => true,
            _ => self.refused().is_some_and(|code| {
                matches!(
                    code,
                    ReasonCode::BadUserNameOrPassword
                        | ReasonCode::NotAuthorized
                        | ReasonCode::Banned
                        | ReasonCode::BadAuthenticationMethod
                        | ReasonCode::ClientIdentifierNotValid
                        | ReasonCode::UnsupportedProtocolVersion
                )
            }),
        }
    }
}

/// An operation on a running client failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client stopped (after [`Client::disconnect`](crate::Client::disconnect), a fatal
    /// refusal, reconnects disabled or exhausted, or every handle dropped); the operation was
    /// not carried out (or its outcome is unknown).
    #[error("the client is closed")]
    Closed,
    /// The first connection of [`ClientBuilder::connect`](crate::ClientBuilder::connect)
    /// failed.
    #[error("connection failed: {0}")]
    Connect(DisconnectReason),
    /// A QoS 0 message was taken from the queue but the connection was lost before it was
    /// written; QoS 0 is never re-sent.
    #[error("the connection was lost before the QoS 0 message was written")]
    ConnectionLost,
    /// The offline queue is full ([`OverflowPolicy::Reject`](crate::OverflowPolicy), or
    /// `try_publish`).
    #[error("the offline queue is full")]
    QueueFull,
    /// The broker answered with an error reason code: PUBACK/PUBREC for a publish, SUBACK
    /// for a subscribe, UNSUBACK for an unsubscribe.
    #[error("refused by the broker: {0}")]
    Refused(ReasonCode),
    /// The topic name or filter is not valid.
    #[error("invalid topic: {0}")]
    InvalidTopic(#[from] TopicError),
    /// A string is not a valid MQTT string.
    #[error("invalid string: {0}")]
    InvalidString(#[from] StringError),
    /// The session engine refused the message (larger than the broker's Maximum Packet Size,
    /// QoS above the broker's Maximum QoS, retain not available, a v5 property in 3.1.1, …).
    #[error(transparent)]
    Publish(tern_proto::PublishError),
    /// The session engine refused the request.
    #[error(transparent)]
    Usage(#[from] tern_proto::UserError),
    /// [`Requester::request`](crate::Requester::request) got no response in time.
    #[error("no response in time")]
    Timeout,
    /// The operation needs MQTT 5.0 (or a feature the broker does not offer).
    #[error("not supported: {0}")]
    NotSupported(&'static str),
}
