//! Where the broker's durable state is kept: the [`Storage`] trait, [`RedbStorage`] (an
//! embedded, crash-safe store on disk) and [`MemoryStorage`] (the same records in memory, for
//! tests and embedding).
//!
//! # What is stored
//!
//! - **Retained messages**, one per topic, with their properties and the wall-clock time they
//!   were received (Message Expiry counts from it across restarts).
//! - **Persistent sessions** (Session Expiry Interval > 0; Clean Session 0 in 3.x) as two
//!   kinds of records:
//!   - a *snapshot* ([`StoredSession`]): subscriptions, the in-flight messages (sent, not
//!     acknowledged; PUBREL pending), the inbound QoS 2 identifiers waiting for PUBREL, the
//!     expiry interval, and when the client went away;
//!   - a *log* of the QoS 1/2 deliveries routed to the session, keyed by (client, sequence).
//!     The snapshot says up to which sequence the log is already reflected in it
//!     ([`StoredSession::delivered`]); the deliveries after it are the session's queue.
//!
//! A delivery is logged when it is routed (before the publisher's PUBACK/PUBREC), the
//! snapshot is rewritten when the in-flight state changes (before a QoS 2 packet that depends
//! on it leaves) and when the client goes away; writing a snapshot drops the log entries it
//! covers. Messages for sessions without expiry, QoS 0 messages and the broker's `$SYS`
//! topics never reach the storage.
//!
//! # Group commit
//!
//! The broker sends every operation to one writer thread, which gathers them for up to
//! `persistence_group_commit_ms` (or `persistence_group_commit_ops` operations), hands the
//! batch to [`Storage::commit`] (one durable transaction) and then releases every
//! acknowledgement that waited for an operation of the batch.

use std::fmt;
use std::num::NonZeroU32;
use std::time::SystemTime;

use tern_codec::{ProtocolVersion, Publish, QoS, SubscriptionOptions};
use tern_proto::{DeliveryOptions, SessionState};

mod codec;
mod memory;
mod redb;
pub use self::redb::DATABASE_FILE;
pub(crate) mod writer;

pub use self::memory::MemoryStorage;
pub use self::redb::RedbStorage;

/// The version of the record format. A store written with another version is refused at
/// start (never silently replaced).
pub const FORMAT_VERSION: u32 = 3;

/// An application message as stored: retained, or inside a logged delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredMessage {
    /// The PUBLISH as the publisher sent it (topic resolved).
    pub publish: Publish,
    /// The publishing client, for No Local; `None` for the broker's own messages.
    pub origin: Option<String>,
    /// When the broker received it (wall clock): Message Expiry counts from here.
    pub received_at: SystemTime,
}

impl StoredMessage {
    /// A stored message.
    pub fn new(publish: Publish, origin: Option<String>, received_at: SystemTime) -> Self {
        StoredMessage {
            publish,
            origin,
            received_at,
        }
    }

    /// Whether its Message Expiry Interval passed at `now`.
    pub fn is_expired(&self, now: SystemTime) -> bool {
        self.publish
            .properties
            .message_expiry_interval
            .is_some_and(|secs| {
                now.duration_since(self.received_at)
                    .is_ok_and(|age| age.as_secs() >= u64::from(secs))
            })
    }
}

/// A QoS 1/2 message routed to a persistent session, with what the subscription asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredDelivery {
    /// The message.
    pub message: StoredMessage,
    /// The QoS of the subscription (the delivery is at the lower of it and the message's).
    pub qos: QoS,
    /// The subscription identifiers (5.0).
    pub subscription_ids: Vec<NonZeroU32>,
    /// No Local, Retain As Published, retained replay.
    pub options: DeliveryOptions,
}

impl StoredDelivery {
    /// A stored delivery.
    pub fn new(
        message: StoredMessage,
        qos: QoS,
        subscription_ids: Vec<NonZeroU32>,
        options: DeliveryOptions,
    ) -> Self {
        StoredDelivery {
            message,
            qos,
            subscription_ids,
            options,
        }
    }
}

/// The snapshot of a persistent session. See the [module docs](self).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredSession {
    /// The protocol version the client last connected with.
    pub version: ProtocolVersion,
    /// The engine's state without its queue (the queue is the log after `delivered`):
    /// in-flight messages, inbound QoS 2 identifiers waiting for PUBREL, the next packet
    /// identifier and the Session Expiry Interval.
    pub state: SessionState,
    /// The session's subscriptions.
    pub subscriptions: Vec<StoredSubscription>,
    /// Every logged delivery up to this sequence is in `state` or finished.
    pub delivered: u64,
    /// When the client went away; `None` while it was connected.
    pub disconnected_at: Option<SystemTime>,
    /// The client's Will, waiting for its Will Delay Interval (or the session's end).
    pub will: Option<StoredWill>,
    /// The authenticated username of the client's last connection: a session restored at
    /// start meets the ACL with it while its client is away (see [`crate::auth`]).
    pub username: Option<String>,
}

/// A Will waiting for its delay, as stored with its session.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredWill {
    /// The Will as the PUBLISH to send.
    pub publish: Publish,
    /// The Will Delay Interval in seconds, counted from [`StoredSession::disconnected_at`].
    pub delay: u32,
}

impl StoredWill {
    /// A stored Will.
    pub fn new(publish: Publish, delay: u32) -> Self {
        StoredWill { publish, delay }
    }
}

impl StoredSession {
    /// A stored session.
    pub fn new(
        version: ProtocolVersion,
        state: SessionState,
        subscriptions: Vec<StoredSubscription>,
        delivered: u64,
        disconnected_at: Option<SystemTime>,
    ) -> Self {
        StoredSession {
            version,
            state,
            subscriptions,
            delivered,
            disconnected_at,
            will: None,
            username: None,
        }
    }
}

/// One subscription of a stored session.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredSubscription {
    /// The topic filter as the client sent it (`$share/...` included).
    pub filter: String,
    /// The options, with the granted QoS.
    pub options: SubscriptionOptions,
    /// The Subscription Identifier (5.0).
    pub identifier: Option<NonZeroU32>,
}

impl StoredSubscription {
    /// A stored subscription.
    pub fn new(
        filter: String,
        options: SubscriptionOptions,
        identifier: Option<NonZeroU32>,
    ) -> Self {
        StoredSubscription {
            filter,
            options,
            identifier,
        }
    }
}

/// One change to the durable state. A batch of them is committed at once.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageOp {
    /// Stores or replaces the retained message of the message's topic.
    PutRetained(StoredMessage),
    /// Deletes the retained message of this topic.
    RemoveRetained(String),
    /// Stores or replaces the snapshot of a session, and drops its log entries up to
    /// [`StoredSession::delivered`].
    PutSession {
        /// The client identifier.
        client_id: String,
        /// The snapshot.
        session: StoredSession,
    },
    /// Forgets a session: its snapshot and its whole log.
    RemoveSession {
        /// The client identifier.
        client_id: String,
    },
    /// Logs a delivery routed to a session.
    PutDelivery {
        /// The client identifier.
        client_id: String,
        /// Its sequence within the session, increasing.
        seq: u64,
        /// The delivery.
        delivery: StoredDelivery,
    },
    /// Drops one logged delivery (the session refused or finished it).
    RemoveDelivery {
        /// The client identifier.
        client_id: String,
        /// Its sequence.
        seq: u64,
    },
}

/// A persistent session as read back at start.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveredSession {
    /// The client identifier.
    pub client_id: String,
    /// Its last snapshot.
    pub session: StoredSession,
    /// Its logged deliveries after [`StoredSession::delivered`], by sequence.
    pub deliveries: Vec<(u64, StoredDelivery)>,
}

/// Everything a storage holds, as read at start.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Recovered {
    /// The retained messages.
    pub retained: Vec<StoredMessage>,
    /// The persistent sessions.
    pub sessions: Vec<RecoveredSession>,
    /// When the last batch was committed: the end of the sessions that were connected then.
    pub last_commit: Option<SystemTime>,
}

/// A storage operation failed.
#[derive(Debug, thiserror::Error)]
#[error("storage: {message}")]
pub struct StorageError {
    message: String,
}

impl StorageError {
    /// An error with this description.
    pub fn new(message: impl Into<String>) -> Self {
        StorageError {
            message: message.into(),
        }
    }
}

/// Durable storage of retained messages and persistent sessions. See the [module
/// docs](self).
///
/// Called from the broker's writer thread only (one batch at a time), and once at start.
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Applies `ops` in order as one atomic, durable transaction: when it returns `Ok`, all
    /// of them survive a crash; when it fails, none of them is applied.
    ///
    /// # Errors
    ///
    /// The store failed; the broker logs it and refuses the acknowledgements that waited for
    /// the batch.
    fn commit(&self, ops: &[StorageOp]) -> Result<(), StorageError>;

    /// Everything stored, read at start.
    ///
    /// # Errors
    ///
    /// The store cannot be read; the broker does not start.
    fn load(&self) -> Result<Recovered, StorageError>;
}
