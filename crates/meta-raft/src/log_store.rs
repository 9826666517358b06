//! Raft log storage (`RaftLogStorage`) over a [`MetadataStore`], under
//! `/raft/`.
//!
//! - Entries live at `/raft/log/<index BE>`, checksummed
//!   ([`codec`](crate::codec)); a range of entries is one range scan, the
//!   last entry one reverse scan.
//! - Appends are one durable batch: the flush callback fires only once the
//!   batch is on disk.
//! - Vote and last-purged ids are durable records.
//! - The committed id is kept in memory by `save_committed` and written
//!   with the next durable log write (append, purge or vote): openraft
//!   awaits `save_committed` before every apply, and a separate fsync there
//!   would cost one more disk flush per round for an optional hint. What is
//!   on disk is always an id that was committed (entries are durable before
//!   they commit), possibly an older one; on restart openraft re-applies
//!   from the state machine's applied id either way.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meta_store_api::keys::{Key, LOG_PREFIX, RaftKey, all_log_entries, log_key};
use meta_store_api::{
    Direction, Durability, KeyRange, MetadataStore, WriteBatch, prefix_successor,
};
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{ErrorSubject, ErrorVerb, OptionalSend};

use crate::blocking::blocking;
use crate::codec::{decode, decode_entry, encode, encode_entry, storage_error};
use crate::instruments::Instruments;
use crate::state_machine::StateMachine;
use crate::types::{Entry, LogId, StorageError, TypeConfig, Vote};

/// The Raft log over a store. Cheap to clone: clones share the store and
/// the committed id not yet written.
#[derive(Clone)]
pub struct LogStore {
    store: Arc<dyn MetadataStore>,
    committed: Arc<Mutex<Committed>>,
    purge_gate: Option<StateMachine>,
    instruments: Instruments,
}

/// How long a purge waits for the state machine to catch up before it
/// refuses (see [`LogStore::purging_only_applied`]); a failed install makes
/// it refuse at once. Longer than any snapshot install should take.
const PURGE_WAIT: Duration = Duration::from_secs(600);

/// The committed id as openraft last saved it, and whether it still has to
/// be written.
#[derive(Default)]
struct Committed {
    latest: Option<LogId>,
    dirty: bool,
}

impl LogStore {
    /// A log store over `store` (which may be shared with the state machine).
    pub fn new(store: Arc<dyn MetadataStore>) -> Self {
        LogStore {
            store,
            committed: Arc::default(),
            purge_gate: None,
            instruments: Instruments::noop(),
        }
    }

    /// Times durable appends into `instruments.log_append_seconds`.
    pub fn instrumented(mut self, instruments: &Instruments) -> Self {
        self.instruments = instruments.clone();
        self
    }

    /// Purges wait until `sm` has applied what they remove.
    ///
    /// openraft 0.9 has a follower purge its log up to an incoming
    /// snapshot's last entry as soon as it hands the snapshot to the state
    /// machine, without waiting for the install to finish. A crash in
    /// between left the log purged past the applied state: the entries in
    /// between were gone from both, and the node could not restart
    /// (found by the `sm.snapshot.install.*` failpoints). With the gate, a
    /// purge waits for the install, and refuses with a storage error if the
    /// install failed (or did not finish within 10 minutes), so the log
    /// always covers what the state machine has not applied. Every node wires its state
    /// machine here; openraft's storage suite runs without it.
    pub fn purging_only_applied(mut self, sm: &StateMachine) -> Self {
        self.purge_gate = Some(sm.clone());
        self
    }

    /// Waits until the gate's state machine applied `upto`, if gated.
    async fn wait_applied(&self, upto: &LogId) -> Result<(), StorageError> {
        let Some(sm) = &self.purge_gate else {
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + PURGE_WAIT;
        loop {
            let applied = sm.applied().last_applied;
            // A failed state machine may hold applies it never wrote: the
            // log is all that has them.
            if !sm.failed() && applied.is_some_and(|a| a.index >= upto.index) {
                // Applies reach the store in buffered batches: what the
                // purge removes must be in the store, durably, first.
                let sm = sm.clone();
                return blocking(ErrorSubject::Logs, ErrorVerb::Delete, move || sm.persist()).await;
            }
            if sm.failed() || tokio::time::Instant::now() >= deadline {
                return Err(storage_error(
                    ErrorSubject::Logs,
                    ErrorVerb::Delete,
                    &std::io::Error::other(format!(
                        "refusing to purge the log up to {upto}: the state machine failed, or has applied only up to {applied:?} (an unfinished snapshot install?)"
                    )),
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Adds the committed id to `batch` if it has not been written yet;
    /// returns what to mark written once the batch is durable.
    fn piggyback_committed(&self, batch: &mut WriteBatch) -> Option<Option<LogId>> {
        let committed = self.committed.lock().unwrap_or_else(|e| e.into_inner());
        committed.dirty.then(|| {
            batch.put(
                Key::Raft(RaftKey::Committed).encode(),
                encode(&committed.latest),
            );
            committed.latest
        })
    }

    /// Writes `batch`, with the committed id if it is pending, durably.
    async fn durable_write(
        &self,
        mut batch: WriteBatch,
        subject: ErrorSubject<u64>,
    ) -> Result<(), StorageError> {
        let committed = self.piggyback_committed(&mut batch);
        let store = self.store.clone();
        blocking(subject.clone(), ErrorVerb::Write, move || {
            store
                .batch(&batch, Durability::Durable)
                .map_err(write_err(subject))
        })
        .await?;
        self.committed_written(committed);
        Ok(())
    }

    /// Marks `written` as on disk, unless a newer id was saved meanwhile.
    fn committed_written(&self, written: Option<Option<LogId>>) {
        if let Some(written) = written {
            let mut committed = self.committed.lock().unwrap_or_else(|e| e.into_inner());
            if committed.latest == written {
                committed.dirty = false;
            }
        }
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
        let mut batch = WriteBatch::with_capacity(2);
        batch.put(Key::Raft(RaftKey::Vote).encode(), encode(vote));
        failpoint!("log.vote.before");
        self.durable_write(batch, ErrorSubject::Vote).await?;
        failpoint!("log.vote.after");
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        let store = self.store.clone();
        blocking(ErrorSubject::Vote, ErrorVerb::Read, move || {
            read_record(&*store, RaftKey::Vote, ErrorSubject::Vote)
        })
        .await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        // Written with the next durable log write (see the module docs).
        let mut saved = self.committed.lock().unwrap_or_else(|e| e.into_inner());
        if saved.latest != committed {
            *saved = Committed {
                latest: committed,
                dirty: true,
            };
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        {
            let saved = self.committed.lock().unwrap_or_else(|e| e.into_inner());
            if saved.dirty {
                return Ok(saved.latest);
            }
        }
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
        // Durable: the entries are on disk before the callback fires.
        failpoint!("log.append.before");
        let started = std::time::Instant::now();
        let result = self.durable_write(batch, ErrorSubject::Logs).await;
        self.instruments
            .log_append_seconds
            .record(started.elapsed().as_secs_f64());
        if result.is_ok() {
            failpoint!("log.append.after");
        }
        match &result {
            Ok(()) => callback.log_io_completed(Ok(())),
            Err(e) => callback.log_io_completed(Err(std::io::Error::other(e.to_string()))),
        }
        result
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        failpoint!("log.truncate.before");
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
        .await?;
        failpoint!("log.truncate.after");
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.wait_applied(&log_id).await?;
        failpoint!("log.purge.before");
        let store = self.store.clone();
        let batch = blocking(ErrorSubject::Logs, ErrorVerb::Read, move || {
            let doomed = store
                .range(&key_range(&(..=log_id.index)), Direction::Forward, None)
                .map_err(read_err(ErrorSubject::Logs))?;
            // The purged id and the deletions land together.
            let mut batch = WriteBatch::with_capacity(doomed.len() + 2);
            batch.put(Key::Raft(RaftKey::Purged).encode(), encode(&log_id));
            for (key, _) in doomed {
                batch.delete(key);
            }
            Ok(batch)
        })
        .await?;
        self.durable_write(batch, ErrorSubject::Logs).await?;
        failpoint!("log.purge.after");
        Ok(())
    }
}
