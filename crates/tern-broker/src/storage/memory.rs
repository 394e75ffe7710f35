//! [`MemoryStorage`]: the storage's records in memory. Nothing survives the process, but a
//! broker started again on the same `MemoryStorage` recovers from it as from a disk.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use parking_lot::Mutex;

use super::{Recovered, RecoveredSession, Storage, StorageError, StorageOp, StoredDelivery};
use super::{StoredMessage, StoredSession};

#[derive(Debug, Default)]
struct Tables {
    retained: HashMap<String, StoredMessage>,
    sessions: HashMap<String, StoredSession>,
    log: BTreeMap<(String, u64), StoredDelivery>,
    last_commit: Option<SystemTime>,
    commits: u64,
}

/// Keeps the records in memory. See the [module docs](self).
#[derive(Debug, Default)]
pub struct MemoryStorage {
    tables: Mutex<Tables>,
}

impl MemoryStorage {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStorage::default()
    }

    /// Number of batches committed so far.
    pub fn commits(&self) -> u64 {
        self.tables.lock().commits
    }

    /// Number of logged deliveries held now.
    pub fn logged(&self) -> usize {
        self.tables.lock().log.len()
    }
}

fn drop_log(log: &mut BTreeMap<(String, u64), StoredDelivery>, client_id: &str, upto: u64) {
    let keys: Vec<_> = log
        .range((client_id.to_owned(), 0)..=(client_id.to_owned(), upto))
        .map(|(k, _)| k.clone())
        .collect();
    for key in keys {
        log.remove(&key);
    }
}

impl Storage for MemoryStorage {
    fn commit(&self, ops: &[StorageOp]) -> Result<(), StorageError> {
        let mut t = self.tables.lock();
        for op in ops {
            match op {
                StorageOp::PutRetained(m) => {
                    t.retained.insert(m.publish.topic.to_string(), m.clone());
                }
                StorageOp::RemoveRetained(topic) => {
                    t.retained.remove(topic);
                }
                StorageOp::PutSession { client_id, session } => {
                    drop_log(&mut t.log, client_id, session.delivered);
                    t.sessions.insert(client_id.clone(), session.clone());
                }
                StorageOp::RemoveSession { client_id } => {
                    drop_log(&mut t.log, client_id, u64::MAX);
                    t.sessions.remove(client_id);
                }
                StorageOp::PutDelivery {
                    client_id,
                    seq,
                    delivery,
                } => {
                    t.log.insert((client_id.clone(), *seq), delivery.clone());
                }
                StorageOp::RemoveDelivery { client_id, seq } => {
                    t.log.remove(&(client_id.clone(), *seq));
                }
            }
        }
        t.last_commit = Some(SystemTime::now());
        t.commits += 1;
        Ok(())
    }

    fn load(&self) -> Result<Recovered, StorageError> {
        let t = self.tables.lock();
        let sessions = t
            .sessions
            .iter()
            .map(|(client_id, session)| RecoveredSession {
                client_id: client_id.clone(),
                session: session.clone(),
                deliveries: t
                    .log
                    .range((client_id.clone(), session.delivered.saturating_add(1))..)
                    .take_while(|((c, _), _)| c == client_id)
                    .map(|((_, seq), d)| (*seq, d.clone()))
                    .collect(),
            })
            .collect();
        Ok(Recovered {
            retained: t.retained.values().cloned().collect(),
            sessions,
            last_commit: t.last_commit,
        })
    }
}
