//! [`RedbStorage`]: the records in a [redb](https://docs.rs/redb) database, one file in the
//! data directory. redb is pure Rust, ACID, and makes a commit durable (fsync) before it
//! returns, so one commit per batch of operations is the cost of durability.
//!
//! Tables: `meta` (`format` → [`FORMAT_VERSION`], `last_commit` → milliseconds since the
//! epoch), `retained` (topic → message), `sessions` (client → snapshot) and `log`
//! ((client, sequence) → delivery). The records are encoded as `codec` describes.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use redb::{Database, Durability, ReadableTable, ReadableTableMetadata, TableDefinition};

use super::codec;
use super::{FORMAT_VERSION, Recovered, RecoveredSession, Storage, StorageError, StorageOp};

const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const RETAINED: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("retained");
const SESSIONS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sessions");
const LOG: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("log");

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "tern.redb";

/// Durable storage in a redb database. See the [module docs](self).
#[derive(Debug)]
pub struct RedbStorage {
    db: Database,
    path: PathBuf,
}

fn err(context: &str, path: &Path) -> impl Fn(redb::Error) -> StorageError {
    let path = path.display().to_string();
    let context = context.to_owned();
    move |e| StorageError::new(format!("{context} {path}: {e}"))
}

impl RedbStorage {
    /// Opens the store in directory `dir` (created if missing, with its database file),
    /// checking the format version.
    ///
    /// # Errors
    ///
    /// The directory or database cannot be created or opened (permissions, corrupt file,
    /// another process holds it), or it was written with another format version. A store
    /// that cannot be opened is never replaced.
    pub fn open(dir: impl AsRef<Path>) -> Result<RedbStorage, StorageError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| {
            StorageError::new(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join(DATABASE_FILE);
        let db = Database::create(&path).map_err(|e| err("cannot open store", &path)(e.into()))?;
        let storage = RedbStorage { db, path };
        storage.check_format()?;
        Ok(storage)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check_format(&self) -> Result<(), StorageError> {
        let e = err("cannot use store", &self.path);
        let txn = self.db.begin_write().map_err(|x| e(x.into()))?;
        {
            let mut meta = txn.open_table(META).map_err(|x| e(x.into()))?;
            let found = meta
                .get("format")
                .map_err(|x| e(x.into()))?
                .map(|v| v.value());
            match found {
                Some(v) if v == u64::from(FORMAT_VERSION) => {}
                Some(v) => {
                    return Err(StorageError::new(format!(
                        "store {} has format version {v}; this ternd reads version {FORMAT_VERSION}",
                        self.path.display()
                    )));
                }
                None => {
                    // A new store, or one that is not ours: an existing table of another
                    // layout would fail below.
                    meta.insert("format", u64::from(FORMAT_VERSION))
                        .map_err(|x| e(x.into()))?;
                }
            }
            txn.open_table(RETAINED).map_err(|x| e(x.into()))?;
            txn.open_table(SESSIONS).map_err(|x| e(x.into()))?;
            txn.open_table(LOG).map_err(|x| e(x.into()))?;
        }
        txn.commit().map_err(|x| e(x.into()))?;
        Ok(())
    }

    fn apply(&self, ops: &[StorageOp]) -> Result<(), StorageError> {
        let e = err("cannot commit to store", &self.path);
        let mut txn = self.db.begin_write().map_err(|x| e(x.into()))?;
        txn.set_durability(Durability::Immediate);
        {
            let mut meta = txn.open_table(META).map_err(|x| e(x.into()))?;
            let mut retained = txn.open_table(RETAINED).map_err(|x| e(x.into()))?;
            let mut sessions = txn.open_table(SESSIONS).map_err(|x| e(x.into()))?;
            let mut log = txn.open_table(LOG).map_err(|x| e(x.into()))?;
            for op in ops {
                match op {
                    StorageOp::PutRetained(m) => {
                        let bytes = codec::encode_message(m)?;
                        retained
                            .insert(m.publish.topic.as_str(), bytes.as_slice())
                            .map_err(|x| e(x.into()))?;
                    }
                    StorageOp::RemoveRetained(topic) => {
                        retained.remove(topic.as_str()).map_err(|x| e(x.into()))?;
                    }
                    StorageOp::PutSession { client_id, session } => {
                        let bytes = codec::encode_session(session)?;
                        sessions
                            .insert(client_id.as_str(), bytes.as_slice())
                            .map_err(|x| e(x.into()))?;
                        let c = client_id.as_str();
                        log.retain_in((c, 0)..=(c, session.delivered), |_, _| false)
                            .map_err(|x| e(x.into()))?;
                    }
                    StorageOp::RemoveSession { client_id } => {
                        let c = client_id.as_str();
                        sessions.remove(c).map_err(|x| e(x.into()))?;
                        log.retain_in((c, 0)..=(c, u64::MAX), |_, _| false)
                            .map_err(|x| e(x.into()))?;
                    }
                    StorageOp::PutDelivery {
                        client_id,
                        seq,
                        delivery,
                    } => {
                        let bytes = codec::encode_delivery(delivery)?;
                        log.insert((client_id.as_str(), *seq), bytes.as_slice())
                            .map_err(|x| e(x.into()))?;
                    }
                    StorageOp::RemoveDelivery { client_id, seq } => {
                        log.remove((client_id.as_str(), *seq))
                            .map_err(|x| e(x.into()))?;
                    }
                }
            }
            meta.insert("last_commit", codec::to_millis(SystemTime::now()))
                .map_err(|x| e(x.into()))?;
        }
        txn.commit().map_err(|x| e(x.into()))?;
        Ok(())
    }

    /// Number of logged deliveries and of bytes the database file takes.
    ///
    /// # Errors
    ///
    /// The store cannot be read.
    pub fn size(&self) -> Result<(u64, u64), StorageError> {
        let e = err("cannot read store", &self.path);
        let txn = self.db.begin_read().map_err(|x| e(x.into()))?;
        let log = txn.open_table(LOG).map_err(|x| e(x.into()))?;
        let entries = log.len().map_err(|x| e(x.into()))?;
        let bytes = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        Ok((entries, bytes))
    }
}

impl Storage for RedbStorage {
    fn commit(&self, ops: &[StorageOp]) -> Result<(), StorageError> {
        self.apply(ops)
    }

    fn load(&self) -> Result<Recovered, StorageError> {
        let e = err("cannot read store", &self.path);
        let txn = self.db.begin_read().map_err(|x| e(x.into()))?;
        let meta = txn.open_table(META).map_err(|x| e(x.into()))?;
        let last_commit = meta
            .get("last_commit")
            .map_err(|x| e(x.into()))?
            .map(|v| codec::from_millis(v.value()));
        let mut recovered = Recovered {
            last_commit,
            ..Recovered::default()
        };
        let retained = txn.open_table(RETAINED).map_err(|x| e(x.into()))?;
        for entry in retained.iter().map_err(|x| e(x.into()))? {
            let (_, value) = entry.map_err(|x| e(x.into()))?;
            recovered
                .retained
                .push(codec::decode_message(value.value())?);
        }
        let sessions = txn.open_table(SESSIONS).map_err(|x| e(x.into()))?;
        let log = txn.open_table(LOG).map_err(|x| e(x.into()))?;
        for entry in sessions.iter().map_err(|x| e(x.into()))? {
            let (key, value) = entry.map_err(|x| e(x.into()))?;
            let client_id = key.value().to_owned();
            let session = codec::decode_session(value.value())?;
            let c = client_id.as_str();
            let mut deliveries = Vec::new();
            let from = session.delivered.saturating_add(1);
            for item in log
                .range((c, from)..=(c, u64::MAX))
                .map_err(|x| e(x.into()))?
            {
                let (k, v) = item.map_err(|x| e(x.into()))?;
                deliveries.push((k.value().1, codec::decode_delivery(v.value())?));
            }
            recovered.sessions.push(RecoveredSession {
                client_id,
                session,
                deliveries,
            });
        }
        Ok(recovered)
    }
}
