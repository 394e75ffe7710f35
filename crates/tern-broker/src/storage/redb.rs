//! [`RedbStorage`]: the records in a [redb](https://docs.rs/redb) database, one file in the
//! data directory. redb is pure Rust, ACID, and makes a commit durable (fsync) before it
//! returns, so one commit per batch of operations is the cost of durability.
//!
//! Tables: `meta` (`format` → [`FORMAT_VERSION`], `last_commit` → milliseconds since the
//! epoch), `retained` (topic → message), `sessions` (client → snapshot), `clients` (client →
//! a number of its own, given when its first delivery is logged), `log` (runs of logged
//! deliveries) and `removed` (single deliveries removed from a run that still lives). The
//! records are encoded as `codec` describes.
//!
//! ## The delivery log
//!
//! A commit writes the deliveries it logs for one client as one *run*: one record keyed by
//! the client's number in the high 64 bits and the run's first sequence in the low 64 bits
//! (a fixed-width `u128`), whose value is the run's last sequence followed by each delivery
//! (sequence, length, record). A batch of a thousand deliveries into two sessions is then
//! two B-tree inserts, not a thousand: per message, the store thread only encodes.
//!
//! Deliveries leave the log in order. A session snapshot says up to which sequence every
//! delivery is settled or in its in-flight state (`delivered`); the runs that end there are
//! removed, and a run straddling it stays until a later snapshot passes its end (loading
//! skips its settled part). A delivery removed on its own (dropped or expired while
//! queued) gets a `removed` mark until its run goes. Removing a session removes its runs
//! and marks.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use parking_lot::Mutex;
use redb::{Database, Durability, ReadableTable, TableDefinition, WriteTransaction};

use super::codec;
use super::{FORMAT_VERSION, Recovered, RecoveredSession, Storage, StorageError, StorageOp};

const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
const RETAINED: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("retained");
const SESSIONS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("sessions");
const CLIENTS: TableDefinition<'_, &str, u64> = TableDefinition::new("clients");
const LOG: TableDefinition<'_, u128, &[u8]> = TableDefinition::new("log");
const REMOVED: TableDefinition<'_, u128, ()> = TableDefinition::new("removed");

/// The log key of delivery `seq` of the client numbered `client`.
fn log_key(client: u64, seq: u64) -> u128 {
    (u128::from(client) << 64) | u128::from(seq)
}

/// The log keys of the client numbered `client`, sequences `from..=to`.
fn log_range(client: u64, from: u64, to: u64) -> RangeInclusive<u128> {
    log_key(client, from)..=log_key(client, to)
}

/// Removes the log entries in `range`. Their keys are read first, then removed one by one:
/// redb's `retain_in` copies the tree's path for every entry it removes (it may not change
/// the pages it iterates), which made it most of the writer's time; a plain `remove`
/// changes the pages this transaction already copied in place.
/// The last sequence of a run (the first eight bytes of its value).
fn run_end(value: &[u8]) -> Result<u64, StorageError> {
    let end = value
        .get(..8)
        .ok_or_else(|| StorageError::new("store: a log run is cut short"))?;
    Ok(u64::from_le_bytes(end.try_into().expect("eight bytes")))
}

/// The deliveries of a run: (sequence, record).
fn run_entries(value: &[u8]) -> impl Iterator<Item = Result<(u64, &[u8]), StorageError>> {
    let mut rest = value.get(8..).unwrap_or_default();
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let cut = || StorageError::new("store: a log run is cut short");
        let Some((head, tail)) = rest.split_at_checked(12) else {
            rest = &[];
            return Some(Err(cut()));
        };
        let seq = u64::from_le_bytes(head[..8].try_into().expect("eight bytes"));
        let len = u32::from_le_bytes(head[8..].try_into().expect("four bytes")) as usize;
        let Some((record, tail)) = tail.split_at_checked(len) else {
            rest = &[];
            return Some(Err(cut()));
        };
        rest = tail;
        Some(Ok((seq, record)))
    })
}

/// Removes the runs of client `id` that end at or before `upto`, and its removal marks up
/// to there.
fn drop_log(
    log: &mut redb::Table<'_, u128, &[u8]>,
    removed: &mut redb::Table<'_, u128, ()>,
    id: u64,
    upto: u64,
    keys: &mut Vec<u128>,
    e: &impl Fn(redb::Error) -> StorageError,
) -> Result<(), StorageError> {
    keys.clear();
    for entry in log.range(log_range(id, 0, upto)).map_err(|x| e(x.into()))? {
        let (key, value) = entry.map_err(|x| e(x.into()))?;
        if run_end(value.value())? <= upto {
            keys.push(key.value());
        }
    }
    for key in keys.iter() {
        log.remove(*key).map_err(|x| e(x.into()))?;
    }
    keys.clear();
    for entry in removed
        .range(log_range(id, 0, upto))
        .map_err(|x| e(x.into()))?
    {
        keys.push(entry.map_err(|x| e(x.into()))?.0.value());
    }
    for key in keys.iter() {
        removed.remove(*key).map_err(|x| e(x.into()))?;
    }
    Ok(())
}

/// A run is closed once it holds this many bytes and the next delivery starts another, so
/// that no record grows with the batch (a delivery may carry up to 256 MiB of payload).
const RUN_BYTES: usize = 1 << 20;

/// The deliveries one commit logs for one client, written as one run (or several, see
/// [`RUN_BYTES`]) before any other operation on the client and at the end of the commit.
#[derive(Debug)]
struct Run {
    first: u64,
    last: u64,
    /// The value: the last sequence (patched when the run is written), then the deliveries.
    bytes: Vec<u8>,
}

impl Run {
    fn new(seq: u64) -> Self {
        let mut bytes = Vec::with_capacity(1024);
        bytes.extend_from_slice(&[0; 8]);
        Run {
            first: seq,
            last: seq,
            bytes,
        }
    }

    fn push(&mut self, seq: u64, delivery: &super::StoredDelivery) -> Result<(), StorageError> {
        self.last = seq;
        self.bytes.extend_from_slice(&seq.to_le_bytes());
        let at = self.bytes.len();
        self.bytes.extend_from_slice(&[0; 4]);
        codec::put_delivery(&mut self.bytes, delivery)?;
        let len = u32::try_from(self.bytes.len() - at - 4)
            .map_err(|_| StorageError::new("a delivery record over 4 GiB"))?;
        self.bytes[at..at + 4].copy_from_slice(&len.to_le_bytes());
        Ok(())
    }

    /// Writes the run as client `id`'s record.
    fn write(
        mut self,
        log: &mut redb::Table<'_, u128, &[u8]>,
        id: u64,
        e: &impl Fn(redb::Error) -> StorageError,
    ) -> Result<(), StorageError> {
        self.bytes[..8].copy_from_slice(&self.last.to_le_bytes());
        log.insert(log_key(id, self.first), self.bytes.as_slice())
            .map_err(|x| e(x.into()))?;
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Clients {
    ids: HashMap<String, u64>,
    /// The number the next new client gets.
    next: u64,
}

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "tern.redb";

/// Durable storage in a redb database. See the [module docs](self).
#[derive(Debug)]
pub struct RedbStorage {
    db: Database,
    path: PathBuf,
    clients: Mutex<Clients>,
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
        let storage = RedbStorage {
            db,
            path,
            clients: Mutex::default(),
        };
        storage.check_format()?;
        storage.load_clients()?;
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
            txn.open_table(CLIENTS).map_err(|x| e(x.into()))?;
            txn.open_table(LOG).map_err(|x| e(x.into()))?;
            txn.open_table(REMOVED).map_err(|x| e(x.into()))?;
        }
        txn.commit().map_err(|x| e(x.into()))?;
        Ok(())
    }

    fn load_clients(&self) -> Result<(), StorageError> {
        let e = err("cannot read store", &self.path);
        let txn = self.db.begin_read().map_err(|x| e(x.into()))?;
        let table = txn.open_table(CLIENTS).map_err(|x| e(x.into()))?;
        let mut clients = Clients::default();
        for entry in table.iter().map_err(|x| e(x.into()))? {
            let (key, value) = entry.map_err(|x| e(x.into()))?;
            let id = value.value();
            clients.next = clients.next.max(id.saturating_add(1));
            clients.ids.insert(key.value().to_owned(), id);
        }
        *self.clients.lock() = clients;
        Ok(())
    }

    fn apply(&self, ops: &[StorageOp]) -> Result<(), StorageError> {
        let mut clients = self.clients.lock();
        // Client numbers given or taken back by this batch: they count once it committed.
        let mut changed: HashMap<String, Option<u64>> = HashMap::new();
        let mut next = clients.next;
        let txn = self.write(ops, &clients, &mut changed, &mut next)?;
        let e = err("cannot commit to store", &self.path);
        txn.commit().map_err(|x| e(x.into()))?;
        clients.next = next;
        for (client_id, id) in changed {
            match id {
                Some(id) => clients.ids.insert(client_id, id),
                None => clients.ids.remove(&client_id),
            };
        }
        Ok(())
    }

    /// The transaction that applies `ops`, not committed yet.
    fn write(
        &self,
        ops: &[StorageOp],
        clients: &Clients,
        changed: &mut HashMap<String, Option<u64>>,
        next: &mut u64,
    ) -> Result<WriteTransaction, StorageError> {
        let e = err("cannot commit to store", &self.path);
        let mut txn = self.db.begin_write().map_err(|x| e(x.into()))?;
        txn.set_durability(Durability::Immediate);
        {
            let mut meta = txn.open_table(META).map_err(|x| e(x.into()))?;
            let mut retained = txn.open_table(RETAINED).map_err(|x| e(x.into()))?;
            let mut sessions = txn.open_table(SESSIONS).map_err(|x| e(x.into()))?;
            let mut numbers = txn.open_table(CLIENTS).map_err(|x| e(x.into()))?;
            let mut log = txn.open_table(LOG).map_err(|x| e(x.into()))?;
            let mut removed = txn.open_table(REMOVED).map_err(|x| e(x.into()))?;
            let lookup = |changed: &HashMap<String, Option<u64>>, c: &str| match changed.get(c) {
                Some(id) => *id,
                None => clients.ids.get(c).copied(),
            };
            // The runs this commit writes, by client number: each is written before any
            // other operation on its client, and at the end.
            let mut runs: HashMap<u64, Run> = HashMap::new();
            let mut keys = Vec::new();
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
                        if let Some(id) = lookup(changed, client_id) {
                            let upto = session.delivered;
                            // A run the snapshot settles whole is never written.
                            if let Some(run) = runs.remove(&id).filter(|run| run.last > upto) {
                                run.write(&mut log, id, &e)?;
                            }
                            drop_log(&mut log, &mut removed, id, upto, &mut keys, &e)?;
                        }
                    }
                    StorageOp::RemoveSession { client_id } => {
                        sessions
                            .remove(client_id.as_str())
                            .map_err(|x| e(x.into()))?;
                        if let Some(id) = lookup(changed, client_id) {
                            runs.remove(&id);
                            drop_log(&mut log, &mut removed, id, u64::MAX, &mut keys, &e)?;
                            numbers
                                .remove(client_id.as_str())
                                .map_err(|x| e(x.into()))?;
                            changed.insert(client_id.clone(), None);
                        }
                    }
                    StorageOp::PutDelivery {
                        client_id,
                        seq,
                        delivery,
                    } => {
                        let id = match lookup(changed, client_id) {
                            Some(id) => id,
                            None => {
                                let id = *next;
                                *next = next
                                    .checked_add(1)
                                    .ok_or_else(|| StorageError::new("client numbers exhausted"))?;
                                numbers
                                    .insert(client_id.as_str(), id)
                                    .map_err(|x| e(x.into()))?;
                                changed.insert(client_id.clone(), Some(id));
                                id
                            }
                        };
                        let run = runs.entry(id).or_insert_with(|| Run::new(*seq));
                        if run.bytes.len() >= RUN_BYTES {
                            std::mem::replace(run, Run::new(*seq)).write(&mut log, id, &e)?;
                        }
                        run.push(*seq, delivery)?;
                    }
                    StorageOp::RemoveDelivery { client_id, seq } => {
                        if let Some(id) = lookup(changed, client_id) {
                            if let Some(run) = runs.remove(&id) {
                                run.write(&mut log, id, &e)?;
                            }
                            removed
                                .insert(log_key(id, *seq), ())
                                .map_err(|x| e(x.into()))?;
                        }
                    }
                }
            }
            for (id, run) in runs {
                run.write(&mut log, id, &e)?;
            }
            meta.insert("last_commit", codec::to_millis(SystemTime::now()))
                .map_err(|x| e(x.into()))?;
        }
        Ok(txn)
    }

    /// Number of logged deliveries a restart would recover, and of bytes the database file
    /// takes.
    ///
    /// # Errors
    ///
    /// The store cannot be read.
    pub fn size(&self) -> Result<(u64, u64), StorageError> {
        let recovered = self.load()?;
        let entries = recovered
            .sessions
            .iter()
            .map(|s| s.deliveries.len())
            .sum::<usize>();
        let bytes = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        Ok((entries as u64, bytes))
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
        let numbers = txn.open_table(CLIENTS).map_err(|x| e(x.into()))?;
        let log = txn.open_table(LOG).map_err(|x| e(x.into()))?;
        let removed = txn.open_table(REMOVED).map_err(|x| e(x.into()))?;
        for entry in sessions.iter().map_err(|x| e(x.into()))? {
            let (key, value) = entry.map_err(|x| e(x.into()))?;
            let client_id = key.value().to_owned();
            let session = codec::decode_session(value.value())?;
            let mut deliveries = Vec::new();
            let id = numbers
                .get(client_id.as_str())
                .map_err(|x| e(x.into()))?
                .map(|v| v.value());
            if let Some(id) = id {
                let mut gone = std::collections::HashSet::new();
                for item in removed
                    .range(log_range(id, 0, u64::MAX))
                    .map_err(|x| e(x.into()))?
                {
                    gone.insert(item.map_err(|x| e(x.into()))?.0.value() as u64);
                }
                for item in log
                    .range(log_range(id, 0, u64::MAX))
                    .map_err(|x| e(x.into()))?
                {
                    let (_, run) = item.map_err(|x| e(x.into()))?;
                    for entry in run_entries(run.value()) {
                        let (seq, record) = entry?;
                        if seq > session.delivered && !gone.contains(&seq) {
                            deliveries.push((seq, codec::decode_delivery(record)?));
                        }
                    }
                }
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

#[cfg(test)]
mod tests {
    use redb::ReadableTableMetadata;
    use tern_codec::{MqttString, ProtocolVersion, Publish, QoS};
    use tern_proto::{DeliveryOptions, SessionState};

    use super::*;
    use crate::storage::{StoredDelivery, StoredMessage, StoredSession};

    fn delivery(payload: &'static str) -> StoredDelivery {
        let publish = Publish {
            topic: MqttString::from_static("t"),
            payload: payload.into(),
            qos: QoS::AtLeastOnce,
            ..Publish::default()
        };
        StoredDelivery::new(
            StoredMessage::new(publish, None, SystemTime::UNIX_EPOCH),
            QoS::AtLeastOnce,
            Vec::new(),
            DeliveryOptions::default(),
        )
    }

    fn put(client: &str, seq: u64, payload: &'static str) -> StorageOp {
        StorageOp::PutDelivery {
            client_id: client.to_owned(),
            seq,
            delivery: delivery(payload),
        }
    }

    fn session(client: &str, delivered: u64) -> StorageOp {
        StorageOp::PutSession {
            client_id: client.to_owned(),
            session: StoredSession::new(
                ProtocolVersion::V5,
                SessionState::new(),
                Vec::new(),
                delivered,
                None,
            ),
        }
    }

    /// (client, [(seq, payload)]) of every stored session, by client.
    fn logs(storage: &RedbStorage) -> Vec<(String, Vec<(u64, String)>)> {
        let mut sessions: Vec<_> = storage
            .load()
            .unwrap()
            .sessions
            .into_iter()
            .map(|s| {
                let log = s
                    .deliveries
                    .into_iter()
                    .map(|(seq, d)| {
                        let payload = String::from_utf8(d.message.publish.payload.to_vec());
                        (seq, payload.unwrap())
                    })
                    .collect();
                (s.client_id, log)
            })
            .collect();
        sessions.sort();
        sessions
    }

    fn entries(log: &[(u64, &str)]) -> Vec<(u64, String)> {
        log.iter().map(|(s, p)| (*s, (*p).to_owned())).collect()
    }

    #[test]
    fn logs_of_clients_stay_apart_across_reopens_and_removals() {
        let dir = tempfile::tempdir().unwrap();
        {
            let storage = RedbStorage::open(dir.path()).unwrap();
            storage
                .commit(&[
                    session("a", 0),
                    session("b", 0),
                    put("a", 1, "a1"),
                    put("b", 1, "b1"),
                    put("a", 2, "a2"),
                    put("a", 3, "a3"),
                    put("b", 2, "b2"),
                ])
                .unwrap();
            // A snapshot drops the log up to what it covers, for its client only.
            storage.commit(&[session("a", 2)]).unwrap();
            storage
                .commit(&[StorageOp::RemoveDelivery {
                    client_id: "b".to_owned(),
                    seq: 1,
                }])
                .unwrap();
        }
        // The client numbers come back from the file: new deliveries join the old ones.
        let storage = RedbStorage::open(dir.path()).unwrap();
        storage
            .commit(&[put("a", 4, "a4"), put("b", 3, "b3")])
            .unwrap();
        assert_eq!(
            logs(&storage),
            vec![
                ("a".to_owned(), entries(&[(3, "a3"), (4, "a4")])),
                ("b".to_owned(), entries(&[(2, "b2"), (3, "b3")])),
            ]
        );
        // Forgotten and begun again in one batch: only the new session's log is left.
        storage
            .commit(&[
                StorageOp::RemoveSession {
                    client_id: "a".to_owned(),
                },
                session("a", 0),
                put("a", 1, "new"),
            ])
            .unwrap();
        drop(storage);
        let storage = RedbStorage::open(dir.path()).unwrap();
        assert_eq!(
            logs(&storage),
            vec![
                ("a".to_owned(), entries(&[(1, "new")])),
                ("b".to_owned(), entries(&[(2, "b2"), (3, "b3")])),
            ]
        );
        let (entries, _) = storage.size().unwrap();
        assert_eq!(entries, 3);
    }

    #[test]
    fn a_run_straddling_a_snapshot_keeps_only_its_unsettled_part() {
        let dir = tempfile::tempdir().unwrap();
        let storage = RedbStorage::open(dir.path()).unwrap();
        storage
            .commit(&[session("a", 0), put("a", 1, "a1"), put("a", 2, "a2")])
            .unwrap();
        storage
            .commit(&[put("a", 3, "a3"), put("a", 4, "a4"), put("a", 5, "a5")])
            .unwrap();
        // Settles the first run and part of the second: the second stays, read from 5 on.
        storage.commit(&[session("a", 4)]).unwrap();
        assert_eq!(
            logs(&storage),
            vec![("a".to_owned(), entries(&[(5, "a5")]))]
        );
        let txn = storage.db.begin_read().unwrap();
        assert_eq!(txn.open_table(LOG).unwrap().len().unwrap(), 1);
        drop(txn);
        // A delivery removed on its own inside a living run stays removed across a reopen,
        // and its mark goes with the run.
        storage
            .commit(&[
                put("a", 6, "a6"),
                put("a", 7, "a7"),
                StorageOp::RemoveDelivery {
                    client_id: "a".to_owned(),
                    seq: 6,
                },
            ])
            .unwrap();
        drop(storage);
        let storage = RedbStorage::open(dir.path()).unwrap();
        assert_eq!(
            logs(&storage),
            vec![("a".to_owned(), entries(&[(5, "a5"), (7, "a7")]))]
        );
        storage.commit(&[session("a", 7)]).unwrap();
        let txn = storage.db.begin_read().unwrap();
        assert_eq!(txn.open_table(LOG).unwrap().len().unwrap(), 0);
        assert_eq!(txn.open_table(REMOVED).unwrap().len().unwrap(), 0);
    }

    #[test]
    fn a_run_settled_in_its_own_commit_is_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let storage = RedbStorage::open(dir.path()).unwrap();
        storage
            .commit(&[
                session("a", 0),
                put("a", 1, "a1"),
                put("a", 2, "a2"),
                session("a", 2),
                put("a", 3, "a3"),
            ])
            .unwrap();
        assert_eq!(
            logs(&storage),
            vec![("a".to_owned(), entries(&[(3, "a3")]))]
        );
        let txn = storage.db.begin_read().unwrap();
        assert_eq!(txn.open_table(LOG).unwrap().len().unwrap(), 1);
    }

    #[test]
    fn a_damaged_run_is_an_error_not_a_panic() {
        let mut run = Run::new(1);
        run.push(1, &delivery("x")).unwrap();
        run.bytes[..8].copy_from_slice(&1_u64.to_le_bytes());
        for cut in 0..run.bytes.len() {
            let value = &run.bytes[..cut];
            if cut < 8 {
                assert!(run_end(value).is_err(), "{cut}");
            } else if cut > 8 {
                let parsed: Result<Vec<_>, _> = run_entries(value).collect();
                assert!(parsed.is_err(), "{cut}");
            }
        }
        let whole: Vec<_> = run_entries(&run.bytes).collect::<Result<_, _>>().unwrap();
        assert_eq!(whole.len(), 1);
        assert_eq!(codec::decode_delivery(whole[0].1).unwrap(), delivery("x"));
    }

    #[test]
    fn a_large_batch_is_cut_into_runs_of_bounded_size() {
        let dir = tempfile::tempdir().unwrap();
        let storage = RedbStorage::open(dir.path()).unwrap();
        let big: &'static str = Box::leak("x".repeat(300 << 10).into_boxed_str());
        let mut ops = vec![session("a", 0)];
        ops.extend((1..=10).map(|seq| put("a", seq, big)));
        storage.commit(&ops).unwrap();
        let txn = storage.db.begin_read().unwrap();
        // 300 KiB each, a run closed past 1 MiB: four deliveries per run.
        assert_eq!(txn.open_table(LOG).unwrap().len().unwrap(), 3);
        drop(txn);
        let seqs: Vec<u64> = logs(&storage)[0].1.iter().map(|(seq, _)| *seq).collect();
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
    }
}
