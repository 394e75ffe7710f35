//! Where sessions and retained messages are kept beyond the broker's memory: the [`Storage`]
//! trait and [`MemoryStorage`], the in-memory implementation.
//!
//! The broker writes through to the storage: a retained message when it is stored, replaced
//! or deleted, a session when its client goes away (with its subscriptions and queued
//! messages) and when it ends. At start it loads the retained messages. The calls are made
//! from the broker's tasks and must be quick: a persistent store should buffer its writes
//! (a write-behind queue flushed by its own thread) rather than block on a disk.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroU32;

use parking_lot::Mutex;
use tern_codec::SubscriptionOptions;
use tern_proto::{Message, SessionState};

/// A session as it is stored while its client is away.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredSession {
    /// The engine's state: in-flight and queued messages, packet identifiers, expiry.
    pub state: SessionState,
    /// The session's subscriptions.
    pub subscriptions: Vec<StoredSubscription>,
}

impl StoredSession {
    /// A stored session.
    pub fn new(state: SessionState, subscriptions: Vec<StoredSubscription>) -> Self {
        StoredSession {
            state,
            subscriptions,
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

/// Persistence of sessions and retained messages.
///
/// The broker writes through to it: a retained message when it is stored, replaced or deleted,
/// a session when its client goes away (with its subscriptions and queued messages) and when it
/// ends; at start it loads the retained messages. Implementations are shared between tasks and
/// called from them, so they must not block for long: a persistent store should buffer its
/// writes (a write-behind queue flushed by its own thread) rather than wait for a disk.
pub trait Storage: Send + Sync + fmt::Debug + 'static {
    /// Stores the session of `client_id`, replacing any earlier one.
    ///
    /// # Errors
    ///
    /// The store failed; the broker logs it and keeps the session in memory.
    fn save_session(&self, client_id: &str, session: &StoredSession) -> Result<(), StorageError>;

    /// Forgets the session of `client_id` (it ended or was resumed).
    ///
    /// # Errors
    ///
    /// The store failed; the broker logs it.
    fn remove_session(&self, client_id: &str) -> Result<(), StorageError>;

    /// Every stored session, by client identifier.
    ///
    /// # Errors
    ///
    /// The store failed.
    fn load_sessions(&self) -> Result<Vec<(String, StoredSession)>, StorageError>;

    /// Stores a retained message, replacing the one of the same topic.
    ///
    /// # Errors
    ///
    /// The store failed; the broker logs it and keeps the message in memory.
    fn save_retained(&self, message: &Message) -> Result<(), StorageError>;

    /// Deletes the retained message of `topic`.
    ///
    /// # Errors
    ///
    /// The store failed; the broker logs it.
    fn remove_retained(&self, topic: &str) -> Result<(), StorageError>;

    /// Every retained message; the broker loads them at start.
    ///
    /// # Errors
    ///
    /// The store failed; the broker does not start.
    fn load_retained(&self) -> Result<Vec<Message>, StorageError>;
}

/// Keeps everything in memory: nothing survives the process. The default storage.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    sessions: Mutex<HashMap<String, StoredSession>>,
    retained: Mutex<HashMap<String, Message>>,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStorage::default()
    }
}

impl Storage for MemoryStorage {
    fn save_session(&self, client_id: &str, session: &StoredSession) -> Result<(), StorageError> {
        self.sessions
            .lock()
            .insert(client_id.to_owned(), session.clone());
        Ok(())
    }

    fn remove_session(&self, client_id: &str) -> Result<(), StorageError> {
        self.sessions.lock().remove(client_id);
        Ok(())
    }

    fn load_sessions(&self) -> Result<Vec<(String, StoredSession)>, StorageError> {
        Ok(self
            .sessions
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn save_retained(&self, message: &Message) -> Result<(), StorageError> {
        self.retained
            .lock()
            .insert(message.publish.topic.to_string(), message.clone());
        Ok(())
    }

    fn remove_retained(&self, topic: &str) -> Result<(), StorageError> {
        self.retained.lock().remove(topic);
        Ok(())
    }

    fn load_retained(&self) -> Result<Vec<Message>, StorageError> {
        Ok(self.retained.lock().values().cloned().collect())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use tern_codec::{MqttString, Publish};

    use super::*;

    #[test]
    fn memory_storage_round_trips() {
        let store = MemoryStorage::new();
        let message = Message {
            publish: Publish {
                topic: MqttString::from_static("a/b"),
                payload: "x".into(),
                retain: true,
                ..Publish::default()
            },
            origin: None,
            received_at: Instant::now(),
        };
        store.save_retained(&message).unwrap();
        assert_eq!(store.load_retained().unwrap(), [message]);
        store.remove_retained("a/b").unwrap();
        assert!(store.load_retained().unwrap().is_empty());

        let session = StoredSession::new(SessionState::new(), Vec::new());
        store.save_session("c", &session).unwrap();
        assert_eq!(store.load_sessions().unwrap(), [("c".to_owned(), session)]);
        store.remove_session("c").unwrap();
        assert!(store.load_sessions().unwrap().is_empty());
    }
}
