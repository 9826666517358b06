//! Raft log storage (`RaftLogStorage`) over a [`MetadataStore`], under
//! `/raft/`.
//!
//! - Entries live at `/raft/log/<index BE>`, checksummed
//!   ([`codec`](crate::codec)); a range of entries is one range scan, the
//!   last entry one reverse scan.
//! - Appends are one durable batch: the flush callback fires only once the
//!   batch is on disk.
//! - Vote, committed and last-purged ids are durable single records.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use meta_store_api::keys::{Key, LOG_PREFIX, RaftKey, all_log_entries, log_key};
use meta_store_api::{
    Direction, Durability, KeyRange, MetadataStore, WriteBatch, prefix_successor,
};
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend};

use crate::blocking::blocking;
use crate::codec::{decode, decode_entry, encode, encode_entry, storage_error};
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// The Raft log over a store. Cheap to clone: clones share the store.
#[derive(Clone)]
pub struct LogStore {
    store: Arc<dyn MetadataStore>,
}

impl LogStore {
    /// A log store over `store` (which may be shared with the state machine).
    pub fn new(store: Arc<dyn MetadataStore>) -> Self {
        LogStore { store }
    }
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("engine", &self.store.engine())
            .finish()
    }
}

fn read_err(subject: ErrorSubject<u64>) -> impl Fn(meta_store_api::Error) -> StorageError {
    move |e| storage_error(subject.clone(), ErrorVerb::Read, &e)
}

fn write_err(subject: ErrorSubject<u64>) -> impl Fn(meta_store_api::Error) -> StorageError {
    move |e| storage_error(subject.clone(), ErrorVerb::Write, &e)
}

/// Reads and decodes the record at `key`.
fn read_record<T: serde::de::DeserializeOwned>(
    store: &dyn MetadataStore,
    key: RaftKey,
    subject: ErrorSubject<u64>,
) -> Result<Option<T>, StorageError> {
    let Some(bytes) = store
        .get(&Key::Raft(key).encode())
        .map_err(read_err(subject.clone()))?
    else {
        return Ok(None);
    };
    decode(&bytes)
        .map(Some)
        .map_err(|e| storage_error(subject, ErrorVerb::Read, &e))
}

fn write_record<T: serde::Serialize>(
    store: &dyn MetadataStore,
    key: RaftKey,
    value: &T,
    subject: ErrorSubject<u64>,
) -> Result<(), StorageError> {
    store
        .set(
            &Key::Raft(key).encode(),
            &encode(value),
            Durability::Durable,
        )
        .map_err(write_err(subject))
}

/// The store key range of log indexes `range`.
fn key_range(range: &impl RangeBounds<u64>) -> KeyRange {
    let start = match range.start_bound() {
        Bound::Included(&i) => Bound::Included(log_key(i).to_vec()),
        Bound::Excluded(&i) => match i.checked_add(1) {
            Some(next) => Bound::Included(log_key(next).to_vec()),
            None => Bound::Excluded(log_key(u64::MAX).to_vec()),
        },
        Bound::Unbounded => Bound::Included(LOG_PREFIX.to_vec()),
    };
    let end = match range.end_bound() {
        Bound::Included(&i) => Bound::Included(log_key(i).to_vec()),
        Bound::Excluded(&i) => Bound::Excluded(log_key(i).to_vec()),
        Bound::Unbounded => {
            Bound::Excluded(prefix_successor(LOG_PREFIX).expect("the log prefix has a successor"))
        }
    };
    KeyRange { start, end }
}

fn decode_logged(bytes: &[u8]) -> Result<Entry, StorageError> {
    decode_entry(bytes).map_err(|e| storage_error(ErrorSubject::Logs, ErrorVerb::Read, &e))
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let store = self.store.clone();
        let keys = key_range(&range);
        blocking(ErrorSubject::Logs, ErrorVerb::Read, move || {
            let rows = store
                .range(&keys, Direction::Forward, None)
                .map_err(read_err(ErrorSubject::Logs))?;
            rows.iter().map(|(_, v)| decode_logged(v)).collect()
        })
        .await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let store = self.store.clone();
        blocking(ErrorSubject::Logs, ErrorVerb::Read, move || {
            let purged: Option<LogId> = read_record(&*store, RaftKey::Purged, ErrorSubject::Logs)?;
            let last = match store
                .last(&all_log_entries())
                .map_err(read_err(ErrorSubject::Logs))?
            {
                Some((_, bytes)) => Some(decode_logged(&bytes)?.log_id),
                None => purged,
            };
            Ok(LogState {
                last_purged_log_id: purged,
                last_log_id: last,
            })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let (store, vote) = (self.store.clone(), *vote);
        blocking(ErrorSubject::Vote, ErrorVerb::Write, move || {
            write_record(&*store, RaftKey::Vote, &vote, ErrorSubject::Vote)
        })
        .await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        let store = self.store.clone();
        blocking(ErrorSubject::Vote, ErrorVerb::Read, move || {
            read_record(&*store, RaftKey::Vote, ErrorSubject::Vote)
        })
        .await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let store = self.store.clone();
        blocking(ErrorSubject::Store, ErrorVerb::Write, move || {
            write_record(&*store, RaftKey::Committed, &committed, ErrorSubject::Store)
        })
        .await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let store = self.store.clone();
        blocking(ErrorSubject::Store, ErrorVerb::Read, move || {
            Ok(
                read_record::<Option<LogId>>(&*store, RaftKey::Committed, ErrorSubject::Store)?
                    .flatten(),
            )
        })
        .await
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut batch = WriteBatch::new();
        for entry in entries {
            batch.put(log_key(entry.log_id.index).to_vec(), encode_entry(&entry));
        }
        let store = self.store.clone();
        let result = blocking(ErrorSubject::Logs, ErrorVerb::Write, move || {
            // Durable: the entries are on disk before the callback fires.
            store
                .batch(&batch, Durability::Durable)
                .map_err(write_err(ErrorSubject::Logs))
        })
        .await;
        match &result {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let store = self.store.clone();
        blocking(ErrorSubject::Logs, ErrorVerb::Delete, move || {
            let doomed = store
                .range(&key_range(&(log_id.index..)), Direction::Forward, None)
                .map_err(read_err(ErrorSubject::Logs))?;
            let mut batch = WriteBatch::with_capacity(doomed.len());
            for (key, _) in doomed {
                batch.delete(key);
            }
            store
                .batch(&batch, Durability::Durable)
                .map_err(write_err(ErrorSubject::Logs))
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let store = self.store.clone();
        blocking(ErrorSubject::Logs, ErrorVerb::Delete, move || {
            let doomed = store
                .range(&key_range(&(..=log_id.index)), Direction::Forward, None)
                .map_err(read_err(ErrorSubject::Logs))?;
            // The purged id and the deletions land together.
            let mut batch = WriteBatch::with_capacity(doomed.len() + 1);
            batch.put(Key::Raft(RaftKey::Purged).encode(), encode(&log_id));
            for (key, _) in doomed {
                batch.delete(key);
            }
            store
                .batch(&batch, Durability::Durable)
                .map_err(write_err(ErrorSubject::Logs))
        })
        .await
    }
}
