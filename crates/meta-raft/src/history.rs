//! This node's change history: what watches are served from.
//!
//! Every change a command makes to a watchable record (user keys, cluster
//! nodes, the shard map, config entries) is an [`Event`] at the store
//! revision that made it. Apply writes a command's events, with the
//! records they replaced, into the same store batch as the data
//! (`/raft/history/`), so the history is exactly as durable as the state
//! and is rebuilt identically when a crash makes Raft replay entries.
//! Revisions are the same on every replica, so a watcher can resume on any
//! node from the last revision it saw.
//!
//! The history keeps the last `retention` revisions: apply trims older
//! ones as it goes (a bounded number per apply), raising the *compacted
//! revision* first, so a reader never mistakes a trimmed range for an
//! empty one. A snapshot install empties it: the changes between the old
//! state and the snapshot's are unknown to this node, and its compacted
//! revision becomes the snapshot's. History is per node (not replicated,
//! not in snapshots or the content hash): its length is a node setting.
//!
//! After each apply the state machine broadcasts a [`Notice`] — the events
//! themselves when they are small, else only how far the history goes —
//! so live watchers need not read the store.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use meta_store_api::keys::{
    history_compacted_key, history_count_key, history_event_key, history_events_from,
    history_prev_key, history_revision,
};
use meta_store_api::{Direction, Durability, MetadataStore, WriteBatch};
use tokio::sync::broadcast;

use crate::codec::{CodecError, decode, encode};
use crate::model::{Change, Event};
use crate::views::Views;

/// How many revisions a node keeps by default (`watch.history_revisions`).
pub const DEFAULT_HISTORY_REVISIONS: u64 = 10_000;

/// The most revisions one apply trims: a node whose retention shrank
/// catches up over several applies instead of stalling one.
const TRIM_PER_APPLY: u64 = 1024;

/// Events of one apply larger than this (in [`Change::size`] bytes) are
/// not passed to watchers in memory; they read them from the history.
const INLINE_EVENT_BYTES: usize = 256 * 1024;

/// How many notices a watcher may be behind before it is told it lagged.
const NOTICE_CAPACITY: usize = 1024;

/// What the state machine tells watchers after each apply.
#[derive(Debug)]
pub enum Notice {
    /// Revisions up to `through` are applied. `events` are their changes
    /// (in order), or `None` when they were too large to pass around:
    /// read them from the history.
    Applied {
        /// The store's revision after the apply.
        through: u64,
        /// The changes, when small enough.
        events: Option<Arc<[Event]>>,
    },
    /// A snapshot replaced this node's state at `revision`: the changes
    /// before it are not in this node's history.
    Reset {
        /// The snapshot's revision (the new compacted revision).
        revision: u64,
    },
}

/// Why the history cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The changes asked for were trimmed (or never kept by this node).
    #[error("revision {from} is compacted: this node keeps the changes after revision {compacted}")]
    Compacted {
        /// The first revision asked for.
        from: u64,
        /// Changes at or before this revision may be gone.
        compacted: u64,
    },
    /// The store failed.
    #[error("reading the change history: {0}")]
    Store(#[from] meta_store_api::Error),
    /// A stored history record is damaged.
    #[error("damaged change history record at revision {revision}: {source}")]
    Record {
        /// The revision of the record.
        revision: u64,
        /// Why it cannot be read.
        source: CodecError,
    },
}

/// The history's shared state: retention, compacted revision, watchers.
pub(crate) struct HistoryState {
    retention: u64,
    compacted: AtomicU64,
    notices: broadcast::Sender<Arc<Notice>>,
}

impl HistoryState {
    /// Reads the compacted revision of `store` (a store without one — new,
    /// or written by a build without history — starts its history at
    /// `revision`, and records that).
    pub(crate) fn open(
        store: &dyn MetadataStore,
        revision: u64,
        retention: u64,
    ) -> Result<HistoryState, HistoryError> {
        let compacted = match store.get(&history_compacted_key())? {
            Some(bytes) => decode(&bytes).map_err(|source| HistoryError::Record {
                revision: 0,
                source,
            })?,
            None => {
                store.set(
                    &history_compacted_key(),
                    &encode(&revision),
                    Durability::Durable,
                )?;
                revision
            }
        };
        Ok(HistoryState {
            retention: retention.max(1),
            compacted: AtomicU64::new(compacted),
            notices: broadcast::channel(NOTICE_CAPACITY).0,
        })
    }

    /// Adds the history records of `events` (made by one apply that left
    /// the store at `revision`) to `batch`, and trims revisions that fell
    /// out of the retention window. The compacted revision is raised here,
    /// before the batch deletes anything.
    pub(crate) fn stage(
        &self,
        store: &dyn MetadataStore,
        events: &[Event],
        revision: u64,
        batch: &mut WriteBatch,
    ) -> Result<(), meta_store_api::Error> {
        let mut i = 0;
        while i < events.len() {
            let at = events[i].revision;
            let mut seq = 0u32;
            while let Some(event) = events.get(i).filter(|e| e.revision == at) {
                batch.put(history_event_key(at, seq), encode(&event.change));
                if let Some(prev) = &event.prev {
                    batch.put(history_prev_key(at, seq), encode(prev));
                }
                seq += 1;
                i += 1;
            }
            batch.put(history_count_key(at), encode(&seq));
        }
        let compacted = self.compacted();
        let target = revision
            .saturating_sub(self.retention)
            .min(compacted.saturating_add(TRIM_PER_APPLY));
        if target > compacted {
            for old in compacted + 1..=target {
                forget_revision(store, old, batch)?;
            }
            batch.put(history_compacted_key(), encode(&target));
            self.compacted.store(target, Ordering::Release);
        }
        Ok(())
    }

    /// Tells watchers that revisions up to `through` are applied, with
    /// their changes.
    pub(crate) fn publish(&self, through: u64, events: Vec<Event>) {
        let size: usize = events
            .iter()
            .map(|e| e.change.size() + e.prev.as_ref().map_or(0, Change::size))
            .sum();
        let events = (size <= INLINE_EVENT_BYTES).then(|| Arc::from(events));
        // No receiver is not an error: nobody watches.
        let _ = self
            .notices
            .send(Arc::new(Notice::Applied { through, events }));
    }

    /// Empties the history before a snapshot at `revision` replaces the
    /// state (which was at `current`): durable, and before the state is
    /// replaced, so a crash in between only makes the history shorter.
    pub(crate) fn reset(
        &self,
        store: &dyn MetadataStore,
        current: u64,
        revision: u64,
    ) -> Result<(), meta_store_api::Error> {
        let compacted = self.compacted();
        let target = revision.max(compacted);
        self.compacted.store(target, Ordering::Release);
        let mut batch = WriteBatch::new();
        for old in compacted + 1..=current {
            forget_revision(store, old, &mut batch)?;
        }
        batch.put(history_compacted_key(), encode(&target));
        store.batch(&batch, Durability::Durable)
    }

    /// Tells watchers a snapshot replaced the state at `revision`.
    pub(crate) fn publish_reset(&self, revision: u64) {
        let _ = self.notices.send(Arc::new(Notice::Reset { revision }));
    }

    fn compacted(&self) -> u64 {
        self.compacted.load(Ordering::Acquire)
    }
}

/// Adds the deletes of every history record of revision `old` to `batch`.
fn forget_revision(
    store: &dyn MetadataStore,
    old: u64,
    batch: &mut WriteBatch,
) -> Result<(), meta_store_api::Error> {
    let Some(count) = store.get(&history_count_key(old))? else {
        return Ok(());
    };
    // A damaged count cannot say which records exist: delete none of them
    // rather than fail apply (they stay behind, harmless, below the
    // compacted revision).
    let count: u32 = decode(&count).unwrap_or(0);
    for seq in 0..count {
        batch.delete(history_event_key(old, seq));
        batch.delete(history_prev_key(old, seq));
    }
    batch.delete(history_count_key(old));
    Ok(())
}

/// This node's change history and its live notices: what a watch is built
/// from (see the module documentation).
#[derive(Clone)]
pub struct History {
    pub(crate) store: Arc<dyn MetadataStore>,
    pub(crate) state: Arc<HistoryState>,
    pub(crate) views: Arc<RwLock<Views>>,
}

impl History {
    /// Starts receiving a [`Notice`] after every apply. Subscribe *before*
    /// reading the history up to [`revision`](Self::revision): what is
    /// applied after that read is then in a notice.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Notice>> {
        self.state.notices.subscribe()
    }

    /// This node's applied revision; the history holds every change up to
    /// it (after [`compacted`](Self::compacted)).
    pub fn revision(&self) -> u64 {
        self.views
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .revision
    }

    /// Changes at or before this revision may be gone: a watch must start
    /// after it.
    pub fn compacted(&self) -> u64 {
        self.state.compacted()
    }

    /// How many revisions this node keeps.
    pub fn retention(&self) -> u64 {
        self.state.retention
    }

    /// Reads changes from `from` on, in order: at most `max_events`, and no
    /// more once `max_bytes` (of [`Change::size`]) are read; with the
    /// records they replaced if `with_prev`. Returns them and where the
    /// next read starts. A read may end inside a revision: a revision is
    /// complete once a read returns a later one, or once the read reaches
    /// [`revision`](Self::revision). Fails with [`HistoryError::Compacted`]
    /// when changes at `from` may be gone. Blocking (store reads).
    pub fn read(
        &self,
        from: Cursor,
        max_events: usize,
        max_bytes: usize,
        with_prev: bool,
    ) -> Result<(Vec<Event>, Cursor), HistoryError> {
        let from = Cursor {
            revision: from.revision.max(1),
            ..from
        };
        let compacted = || {
            let compacted = self.compacted();
            match from.revision <= compacted {
                true => Err(HistoryError::Compacted {
                    from: from.revision,
                    compacted,
                }),
                false => Ok(()),
            }
        };
        compacted()?;
        let rows = self.store.range(
            &history_events_from(from.revision, from.seq),
            Direction::Forward,
            Some(max_events.max(1)),
        )?;
        let mut events = Vec::with_capacity(rows.len());
        let (mut bytes, mut next) = (0usize, from);
        for (key, value) in rows {
            let Some((revision, seq)) = history_revision(&key) else {
                continue;
            };
            let record = |source| HistoryError::Record { revision, source };
            let change: Change = decode(&value).map_err(record)?;
            let prev = match with_prev {
                true => match self.store.get(&history_prev_key(revision, seq))? {
                    Some(bytes) => Some(decode::<Change>(&bytes).map_err(record)?),
                    None => None,
                },
                false => None,
            };
            bytes += change.size() + prev.as_ref().map_or(0, Change::size);
            events.push(Event {
                revision,
                change,
                prev,
            });
            next = Cursor {
                revision,
                seq: seq.saturating_add(1),
            };
            if bytes >= max_bytes {
                break;
            }
        }
        // Trimming raises the compacted revision before it deletes: if it
        // overtook `from` while we read, part of the range may be missing.
        compacted()?;
        Ok((events, next))
    }
}

/// A position in the history: the `seq`-th change of `revision`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    /// The revision.
    pub revision: u64,
    /// The change's place among those of its revision (from 0).
    pub seq: u32,
}

impl Cursor {
    /// The first change of `revision`.
    pub fn at(revision: u64) -> Cursor {
        Cursor { revision, seq: 0 }
    }
}
