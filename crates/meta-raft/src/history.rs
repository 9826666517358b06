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
//! The history keeps the last revisions within its limits (a count and a
//! size): apply trims older ones as it goes (a bounded number per apply), raising the *compacted
//! revision* first, so a reader never mistakes a trimmed range for an
//! empty one. A snapshot install empties it: the changes between the old
//! state and the snapshot's are unknown to this node, and its compacted
//! revision becomes the snapshot's. History is per node (not replicated,
//! not in snapshots or the content hash): its length is a node setting.
//!
//! After each apply the state machine broadcasts a [`Notice`] — the events
//! themselves when they are small, else only how far the history goes —
//! so live watchers need not read the store.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use meta_store_api::keys::{
    history_compacted_key, history_count_key, history_count_revision, history_counts_from,
    history_event_key, history_events_from, history_prev_key, history_revision,
};
use meta_store_api::{Direction, Durability, MetadataStore, WriteBatch};
use tokio::sync::broadcast;

use crate::codec::{CodecError, decode, encode};
use crate::model::{Change, Event};
use crate::views::Views;

/// How many revisions a node keeps by default (`watch.history_revisions`).
pub const DEFAULT_HISTORY_REVISIONS: u64 = 10_000;

/// How many bytes of changes a node keeps by default
/// (`watch.history_bytes`).
pub const DEFAULT_HISTORY_BYTES: u64 = 1 << 30;

/// How much history a node keeps: the last `revisions` revisions, and no
/// more than about `bytes` of them (the oldest go first; the newest
/// revision always stays, whatever its size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Revisions kept (at least 1).
    pub revisions: u64,
    /// Bytes kept (changes and the records they replaced, as stored).
    pub bytes: u64,
}

impl Default for HistoryLimits {
    fn default() -> Self {
        HistoryLimits {
            revisions: DEFAULT_HISTORY_REVISIONS,
            bytes: DEFAULT_HISTORY_BYTES,
        }
    }
}

/// A change as stored: the change and what is known of the record it
/// replaced (the record itself is stored beside it). Written from a
/// borrowed change (`Stored<&Change>`, no copy of its value), read back
/// owned; both encode the same bytes.
#[derive(serde::Serialize, serde::Deserialize)]
struct Stored<C> {
    change: C,
    prev: PrevState,
}

#[derive(Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum PrevState {
    /// The record did not exist.
    Absent,
    /// It is stored at the change's prev key.
    Stored,
    /// It existed but is not kept (see [`Event::prev_omitted`]).
    Omitted,
}

/// What the history holds: its compacted revision and its size.
#[derive(Clone, Copy, Debug, Default, serde::Serialize, serde::Deserialize)]
struct Extent {
    compacted: u64,
    bytes: u64,
}

/// A revision the history holds: what trimming it deletes. Kept in memory
/// for every revision after the compacted one, so trimming reads nothing.
#[derive(Clone, Copy, Debug)]
struct Kept {
    revision: u64,
    /// Its changes (sequence numbers `0..count`).
    count: u32,
    /// Bytes of its records.
    bytes: u64,
    /// Whether any change has a stored previous record (assumed for
    /// revisions read back from the store, which does not say).
    prevs: bool,
}

/// The most revisions one apply trims: a node whose limits shrank
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

/// The history's shared state: limits, compacted revision, size, watchers.
pub(crate) struct HistoryState {
    limits: HistoryLimits,
    compacted: AtomicU64,
    /// Bytes held (changed only under the state machine's commit lock).
    bytes: AtomicU64,
    /// Every revision held, oldest first (changed only under the state
    /// machine's commit lock).
    kept: Mutex<VecDeque<Kept>>,
    notices: broadcast::Sender<Arc<Notice>>,
}

impl HistoryState {
    /// Reads the history's extent in `store` (a store without one — new,
    /// or written by a build without history — starts its history at
    /// `revision`, and records that).
    pub(crate) fn open(
        store: &dyn MetadataStore,
        revision: u64,
        limits: HistoryLimits,
    ) -> Result<HistoryState, HistoryError> {
        let extent = match store.get(&history_compacted_key())? {
            Some(bytes) => decode::<Extent>(&bytes).map_err(|source| HistoryError::Record {
                revision: 0,
                source,
            })?,
            None => {
                let extent = Extent {
                    compacted: revision,
                    bytes: 0,
                };
                store.set(
                    &history_compacted_key(),
                    &encode(&extent),
                    Durability::Durable,
                )?;
                extent
            }
        };
        let mut kept = VecDeque::new();
        let counts = store.range(
            &history_counts_from(extent.compacted.saturating_add(1)),
            Direction::Forward,
            None,
        )?;
        for (key, value) in counts {
            let Some(revision) = history_count_revision(&key) else {
                continue;
            };
            // A damaged count cannot say which records exist: none are
            // deleted rather than fail (they stay behind, harmless, below
            // the compacted revision once it passes them).
            let (count, bytes): (u32, u64) = decode(&value).unwrap_or((0, 0));
            kept.push_back(Kept {
                revision,
                count,
                bytes,
                prevs: true,
            });
        }
        Ok(HistoryState {
            kept: Mutex::new(kept),
            limits: HistoryLimits {
                revisions: limits.revisions.max(1),
                bytes: limits.bytes,
            },
            compacted: AtomicU64::new(extent.compacted),
            bytes: AtomicU64::new(extent.bytes),
            notices: broadcast::channel(NOTICE_CAPACITY).0,
        })
    }

    /// Adds the history records of `events` (made by one apply that left
    /// the store at `revision`) to `batch`, and trims the oldest revisions
    /// while the history is longer than its limits. The compacted revision
    /// is raised here, before the batch deletes anything.
    pub(crate) fn stage(&self, events: &[Event], revision: u64, batch: &mut WriteBatch) {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let mut compacted = self.compacted();
        let mut bytes = self.bytes.load(Ordering::Acquire);
        // Revisions already out of the window are not written at all.
        let floor = revision
            .saturating_sub(self.limits.revisions)
            .max(compacted);
        let first_new = events.first().map_or(revision + 1, |e| e.revision);
        let mut i = 0;
        while i < events.len() {
            let at = events[i].revision;
            let (mut seq, mut size, mut prevs) = (0u32, 0u64, false);
            while let Some(event) = events.get(i).filter(|e| e.revision == at) {
                i += 1;
                if at <= floor {
                    continue;
                }
                let prev = match (&event.prev, event.prev_omitted) {
                    (Some(prev), _) => {
                        let record = encode(prev);
                        size += record.len() as u64;
                        batch.put(history_prev_key(at, seq), record);
                        prevs = true;
                        PrevState::Stored
                    }
                    (None, true) => PrevState::Omitted,
                    (None, false) => PrevState::Absent,
                };
                let record = encode(&Stored {
                    change: &event.change,
                    prev,
                });
                size += record.len() as u64;
                batch.put(history_event_key(at, seq), record);
                seq += 1;
            }
            if seq > 0 {
                batch.put(history_count_key(at), encode(&(seq, size)));
                bytes += size;
                kept.push_back(Kept {
                    revision: at,
                    count: seq,
                    bytes: size,
                    prevs,
                });
            }
        }
        // Trim the oldest revisions already in the store (not this batch's)
        // while the window or the size is exceeded, a bounded number at a
        // time — except that revisions this batch skipped (a batch longer
        // than the window) need every older one gone first.
        let in_store = first_new.saturating_sub(1);
        let skipped = floor >= first_new;
        let cap = TRIM_PER_APPLY.max(2 * revision.saturating_sub(in_store));
        let stop = compacted.saturating_add(cap).min(in_store);
        let stop = if skipped { in_store } else { stop };
        let mut trimmed = false;
        while compacted < stop && (skipped || compacted < floor || bytes > self.limits.bytes) {
            compacted += 1;
            bytes = bytes.saturating_sub(forget_through(&mut kept, compacted, batch));
            trimmed = true;
        }
        if skipped {
            compacted = floor;
            trimmed = true;
        }
        if trimmed {
            self.compacted.store(compacted, Ordering::Release);
        }
        self.bytes.store(bytes, Ordering::Release);
        batch.put(
            history_compacted_key(),
            encode(&Extent { compacted, bytes }),
        );
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
        let target = revision.max(self.compacted());
        self.compacted.store(target, Ordering::Release);
        let mut batch = WriteBatch::new();
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        forget_through(&mut kept, current.max(target), &mut batch);
        kept.clear();
        self.bytes.store(0, Ordering::Release);
        let extent = Extent {
            compacted: target,
            bytes: 0,
        };
        batch.put(history_compacted_key(), encode(&extent));
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

/// Adds the deletes of every history record of the revisions up to
/// `through` to `batch`, and forgets them; the bytes they held.
fn forget_through(kept: &mut VecDeque<Kept>, through: u64, batch: &mut WriteBatch) -> u64 {
    let mut bytes = 0;
    while let Some(old) = kept.front().copied().filter(|k| k.revision <= through) {
        kept.pop_front();
        for seq in 0..old.count {
            batch.delete(history_event_key(old.revision, seq));
            if old.prevs {
                batch.delete(history_prev_key(old.revision, seq));
            }
        }
        batch.delete(history_count_key(old.revision));
        bytes += old.bytes;
    }
    bytes
}

/// This node's change history and its live notices: what a watch is built
/// from (see the module documentation).
#[derive(Clone)]
pub struct History {
    pub(crate) store: Arc<dyn MetadataStore>,
    /// Writes the state machine's unflushed applies into `store`.
    pub(crate) flush: Arc<dyn Fn() -> Result<(), meta_store_api::Error> + Send + Sync>,
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

    /// How much history this node keeps.
    pub fn limits(&self) -> HistoryLimits {
        self.state.limits
    }

    /// Bytes the history holds now.
    pub fn bytes(&self) -> u64 {
        self.state.bytes.load(Ordering::Acquire)
    }

    /// Reads changes from `from` on, in order: at most `max_events`, and no
    /// more once `max_bytes` (of [`Change::size`]) are read; each with its
    /// position. Changes `wanted` rejects are skipped (without reading
    /// their previous records); the others come with the records they
    /// replaced if `with_prev`. Returns them and where the next read
    /// starts. A read may end inside a revision: a revision is complete
    /// once a read returns a later one, or once the read reaches
    /// [`revision`](Self::revision). Fails with [`HistoryError::Compacted`]
    /// when changes at `from` may be gone. Blocking (store reads).
    pub fn read(
        &self,
        from: Cursor,
        max_events: usize,
        max_bytes: usize,
        with_prev: bool,
        wanted: impl Fn(&Change) -> bool,
    ) -> Result<(Vec<(Cursor, Event)>, Cursor), HistoryError> {
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
        // Applies reach the store in batches: the ones not there yet go
        // first, so the read sees every revision applied before it.
        (self.flush)()?;
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
            let at = Cursor { revision, seq };
            next = Cursor {
                revision,
                seq: seq.saturating_add(1),
            };
            let record = |source| HistoryError::Record { revision, source };
            let stored: Stored<Change> = decode(&value).map_err(record)?;
            if !wanted(&stored.change) {
                continue;
            }
            let prev = match (with_prev, stored.prev) {
                (true, PrevState::Stored) => {
                    match self.store.get(&history_prev_key(revision, seq))? {
                        Some(bytes) => Some(decode::<Change>(&bytes).map_err(record)?),
                        None => None,
                    }
                }
                _ => None,
            };
            bytes += stored.change.size() + prev.as_ref().map_or(0, Change::size);
            events.push((
                at,
                Event {
                    revision,
                    change: stored.change,
                    prev,
                    prev_omitted: with_prev && stored.prev == PrevState::Omitted,
                },
            ));
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
