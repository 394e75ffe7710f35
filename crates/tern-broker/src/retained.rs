//! Retained messages: one per topic name, in a [`RetainedTree`] that a new subscription's
//! filter is matched against, written through to the storage.

use std::sync::Arc;

use parking_lot::RwLock;
use tern_proto::Message;
use tern_topic::{RetainedTree, TopicName};

use crate::storage::writer::Persistence;
use crate::storage::{StorageOp, StoredMessage};

/// The retained messages of the broker.
#[derive(Debug, Default)]
pub(crate) struct RetainedStore {
    tree: RwLock<RetainedTree<Arc<Message>>>,
}

impl RetainedStore {
    /// Stores, replaces or (empty payload) deletes the retained message of the message's topic
    /// [MQTT-3.3.1-5], [MQTT-3.3.1-6], [MQTT-3.3.1-7]; written through to `store` unless it
    /// is `None` (no persistence, or the broker's own `$SYS` topics, which must not outlive
    /// the process). Returns whether it wrote to the store.
    pub(crate) fn update(&self, message: &Arc<Message>, store: Option<&Persistence>) -> bool {
        let topic = &message.publish.topic;
        if message.publish.payload.is_empty() {
            let removed = self.tree.write().remove(topic.as_str()).is_some();
            if removed && let Some(store) = store {
                store.send(StorageOp::RemoveRetained(topic.to_string()));
                return true;
            }
            return false;
        }
        let Ok(name) = TopicName::new(topic.as_str()) else {
            tracing::debug!(%topic, "invalid topic name not retained");
            return false;
        };
        self.tree.write().insert(name, message.clone());
        if let Some(store) = store {
            store.send(StorageOp::PutRetained(StoredMessage::new(
                (*message.publish).clone(),
                message.origin.as_ref().map(|o| o.to_string()),
                crate::broker::wall_clock(message.received_at),
            )));
            return true;
        }
        false
    }

    /// Loads a message at start, without writing it back.
    pub(crate) fn load(&self, message: Message) {
        if let Ok(name) = TopicName::new(message.publish.topic.as_str()) {
            self.tree.write().insert(name, Arc::new(message));
        }
    }

    /// Appends the retained messages whose topic matches `filter` to `out`.
    pub(crate) fn matching(&self, filter: &str, out: &mut Vec<Arc<Message>>) {
        self.tree
            .read()
            .for_each_matching(filter, |_, message| out.push(message.clone()));
    }

    /// Number of retained messages.
    pub(crate) fn len(&self) -> usize {
        self.tree.read().len()
    }
}
