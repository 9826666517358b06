//! The metadata state machine (`RaftStateMachine`) over a
//! [`MetadataStore`], under `/meta/`.
//!
//! Apply runs each command through the pure rules of `apply.rs` against
//! the in-memory views, collects the resulting writes together with the
//! new applied state (last log id + membership, at `/meta/sys/applied`),
//! and publishes the new views. The writes reach the store later, several
//! applies in **one** buffered batch ([`Unflushed`]): at the first apply
//! (or timer tick of the node, [`StateMachine::flush_if_due`]) after
//! [`FLUSH_AFTER`], or once [`FLUSH_OPS`] operations or [`FLUSH_BYTES`]
//! bytes wait. A batch carries the applied state of its last apply, so a
//! crash can never separate the data from the log id it reflects; the durable Raft
//! log replays whatever a crash loses. So a write pays the log's fsync
//! only, not one of the state store too (`docs/raft.md`, "Durability").
//! Whatever reads the store itself (watch catch-up, backups, snapshots,
//! the content hash) flushes first; a log purge flushes and syncs first.
//!
//! A snapshot is `store.snapshot("/meta/")` — data and applied state in
//! one consistent view — and installing one is `restore("/meta/")` plus a
//! rebuild of the views ([`snapshot`]: build, install, spill files, and
//! seeding a new cluster from a backup). This file is the openraft
//! adapter around them and the pure rules of `apply.rs`.

mod snapshot;

use snapshot::{spill_error, spill_file};

pub use snapshot::{BUILD_RETRY_AFTER, SnapshotBuilder, seed_new_cluster};

use std::io::{BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};

use meta_store_api::keys::{Key, META_PREFIX, RaftKey, applied_key};
use meta_store_api::snapshot::SnapshotReader;
use meta_store_api::snapshot::SnapshotStream;
use meta_store_api::{Durability, MetadataStore, WriteBatch};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::{EntryPayload, ErrorSubject, ErrorVerb, OptionalSend};
use serde::{Deserialize, Serialize};

use crate::apply::{Effects, apply_command, kv_key};
use crate::blocking::blocking;
use crate::codec::{encode, storage_error};
use crate::history::{History, HistoryLimits, HistoryState};
use crate::instruments::Instruments;
use crate::model::{Rejection, Response};
use crate::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::views::{Format, MetadataReader, Views};

/// The state machine's last applied log id, membership and revision.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedState {
    /// The last applied log id.
    pub last_applied: Option<LogId>,
    /// The membership as of the last applied membership entry.
    pub membership: StoredMembership,
    /// The store's revision (see [`MetadataReader::revision`]).
    pub revision: u64,
}

/// The applied state as builds before revisions wrote it.
#[derive(Deserialize)]
pub(crate) struct AppliedStateV1 {
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

impl From<AppliedStateV1> for AppliedState {
    fn from(old: AppliedStateV1) -> AppliedState {
        AppliedState {
            last_applied: old.last_applied,
            membership: old.membership,
            revision: 0,
        }
    }
}

/// An online backup (see [`StateMachine::backup`]).
pub struct Backup {
    /// The applied state the copy holds: last log id, membership and
    /// revision.
    pub applied: AppliedState,
    /// The copy, in the portable snapshot format (checksummed per block
    /// and as a whole).
    pub stream: SnapshotStream,
}

struct Shared {
    store: Arc<dyn MetadataStore>,
    /// Where snapshot files are spilled (built, sent and received snapshots
    /// live in unnamed temporary files there, never whole in memory).
    spill_dir: PathBuf,
    views: Arc<RwLock<Views>>,
    applied: RwLock<AppliedState>,
    /// The applied writes not yet in the store. Held while an apply stages
    /// its writes and publishes its views, and while a snapshot pins its
    /// view, so a snapshot's applied state always matches its data.
    commit: Mutex<Unflushed>,
    /// Set when an apply or a snapshot install failed: openraft stops the
    /// node, and a purge waiting for this state machine gives up at once.
    failed: std::sync::atomic::AtomicBool,
    /// Every apply is written to the store at once (see
    /// [`StateMachine::write_through`]).
    write_through: std::sync::atomic::AtomicBool,
    /// The change history and the watchers' notices.
    history: Arc<HistoryState>,
    /// Where apply and snapshot timings go (set once by the node).
    instruments: OnceLock<Instruments>,
    /// Keeps a snapshot build that cannot succeed from stopping the node.
    gate: snapshot::BuildGate,
    /// An empty unnamed file in `spill_dir`, the data of the "nothing
    /// new" answer to a build that did not happen.
    placeholder: std::fs::File,
}

/// How long applied writes may wait before they are written to the store.
pub const FLUSH_AFTER: std::time::Duration = std::time::Duration::from_millis(100);
/// How many store operations may wait before they are written.
pub(crate) const FLUSH_OPS: usize = 4096;
/// How many bytes of keys and values may wait before they are written.
pub(crate) const FLUSH_BYTES: usize = 4 << 20;

/// Applied writes not yet in the store, in order (see the module
/// documentation).
#[derive(Default)]
struct Unflushed {
    batch: WriteBatch,
    /// Bytes of the keys and values in `batch`.
    bytes: usize,
    /// When the oldest write in `batch` was applied.
    since: Option<std::time::Instant>,
}

impl Unflushed {
    fn add(&mut self, batch: WriteBatch) {
        self.bytes += batch
            .ops()
            .iter()
            .map(|op| match op {
                meta_store_api::BatchOp::Put { key, value } => key.len() + value.len(),
                meta_store_api::BatchOp::Delete { key } => key.len(),
            })
            .sum::<usize>();
        self.batch.extend(batch);
        self.since.get_or_insert_with(std::time::Instant::now);
    }

    fn due(&self) -> bool {
        self.batch.len() >= FLUSH_OPS
            || self.bytes >= FLUSH_BYTES
            || self.since.is_some_and(|t| t.elapsed() >= FLUSH_AFTER)
    }

    /// Writes the waiting batch to `store` (buffered): the store then holds
    /// every revision applied. On failure nothing is dropped.
    fn flush(&mut self, store: &dyn MetadataStore) -> meta_store_api::Result<()> {
        if !self.batch.is_empty() {
            store.batch(&self.batch, Durability::Buffered)?;
        }
        *self = Unflushed::default();
        Ok(())
    }
}

/// Handles that record nothing, for a state machine never instrumented.
static NO_INSTRUMENTS: Instruments = Instruments::noop();

impl Shared {
    fn instruments(&self) -> &Instruments {
        self.instruments.get().unwrap_or(&NO_INSTRUMENTS)
    }

    /// Takes the commit lock and writes what waits in it to the store.
    /// Refused once an apply failed: what waits may then be ahead of the
    /// views and applied state this node serves.
    fn flushed(&self) -> meta_store_api::Result<std::sync::MutexGuard<'_, Unflushed>> {
        let mut unflushed = self.commit.lock().unwrap_or_else(PoisonError::into_inner);
        if self.failed() {
            return Err(meta_store_api::Error::io(
                "writing applied changes to the store",
                std::io::Error::other("an apply or snapshot install of this state machine failed"),
            ));
        }
        unflushed.flush(&*self.store)?;
        Ok(unflushed)
    }

    /// True once an apply, an install or a state-store write of a
    /// snapshot build failed (the node is stopping).
    fn failed(&self) -> bool {
        self.failed.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records such a failure (see [`failed`](Self::failed)).
    fn mark_failed(&self) {
        self.failed
            .store(true, std::sync::atomic::Ordering::Release);
    }

    fn revision(&self) -> u64 {
        self.views
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .revision
    }
}

/// The metadata state machine: applies commands to `/meta/` of a store,
/// data and applied state in one batch, and snapshots it (`docs/raft.md`).
#[derive(Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

fn sm_err(verb: ErrorVerb) -> impl Fn(meta_store_api::Error) -> StorageError {
    move |e| storage_error(ErrorSubject::StateMachine, verb, &e)
}

impl StateMachine {
    /// Opens the state machine over `store`, loading the views from
    /// `/meta/`; snapshot files go to the system's temporary directory.
    pub async fn open(store: Arc<dyn MetadataStore>) -> Result<StateMachine, StorageError> {
        Self::open_with_spill_dir(store, std::env::temp_dir()).await
    }

    /// [`open`](Self::open), spilling snapshot files to `spill_dir`
    /// (created if needed; a node puts it in its data directory).
    pub async fn open_with_spill_dir(
        store: Arc<dyn MetadataStore>,
        spill_dir: impl Into<PathBuf>,
    ) -> Result<StateMachine, StorageError> {
        Self::open_with(store, spill_dir, HistoryLimits::default()).await
    }

    /// [`open_with_spill_dir`](Self::open_with_spill_dir), keeping the
    /// changes within `history` for watches (see [`History`]).
    pub async fn open_with(
        store: Arc<dyn MetadataStore>,
        spill_dir: impl Into<PathBuf>,
        history: HistoryLimits,
    ) -> Result<StateMachine, StorageError> {
        let spill_dir = spill_dir.into();
        std::fs::create_dir_all(&spill_dir)
            .map_err(|e| storage_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, &e))?;
        let loader = store.clone();
        let (views, applied, history) =
            blocking(ErrorSubject::StateMachine, ErrorVerb::Read, move || {
                let (views, applied) = load(&*loader)?;
                let history = HistoryState::open(&*loader, views.revision, history)
                    .map_err(|e| storage_error(ErrorSubject::StateMachine, ErrorVerb::Read, &e))?;
                Ok((views, applied, history))
            })
            .await?;
        let placeholder = spill_file(&spill_dir).map_err(|e| spill_error(&spill_dir, e))?;
        Ok(StateMachine {
            shared: Arc::new(Shared {
                store,
                spill_dir,
                views: Arc::new(RwLock::new(views)),
                applied: RwLock::new(applied),
                commit: Mutex::new(Unflushed::default()),
                failed: Default::default(),
                write_through: Default::default(),
                history: Arc::new(history),
                instruments: OnceLock::new(),
                gate: Default::default(),
                placeholder,
            }),
        })
    }

    /// Makes a snapshot build (once one snapshot exists) start only while
    /// it would leave `bytes` free on the spill directory's disk — a node
    /// passes its free-space watermark; 0 (the default) asks for as much
    /// again as the snapshot takes (see [`SnapshotBuilder`]).
    pub fn keep_free_disk(&self, bytes: u64) {
        self.shared.gate.keep_free(bytes);
    }

    /// Records apply and snapshot timings into `instruments` from now on
    /// (the first call wins; later ones change nothing).
    pub fn instrument(&self, instruments: &Instruments) {
        let _ = self.shared.instruments.set(instruments.clone());
    }

    /// A consistent copy of `/meta/` — the data with the applied state it
    /// reflects — as of now, streamed in the portable snapshot format: an
    /// online backup. Pinning the view takes the apply lock for as long
    /// as the engine takes to open a snapshot (a read transaction); the
    /// stream is read afterwards, without holding up writes, and never
    /// whole in memory.
    pub fn backup(&self) -> Result<Backup, StorageError> {
        let _commit = self.shared.flushed().map_err(sm_err(ErrorVerb::Write))?;
        let applied = self.applied();
        let stream = self
            .shared
            .store
            .snapshot(META_PREFIX)
            .map_err(sm_err(ErrorVerb::Read))?;
        Ok(Backup { applied, stream })
    }

    /// Writes every applied change still waiting into the store
    /// (buffered: the Raft log stays the durable record). Blocking. A node
    /// calls it when it stops, so the store it leaves holds what it
    /// applied.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.shared
            .flushed()
            .map(drop)
            .map_err(sm_err(ErrorVerb::Write))
    }

    /// [`flush`](Self::flush), then makes the store durable: before the
    /// log is purged of entries this state machine applied. Blocking.
    pub fn persist(&self) -> Result<(), StorageError> {
        // The sync covers what the flush wrote; applies go on meanwhile.
        drop(self.shared.flushed().map_err(sm_err(ErrorVerb::Write))?);
        self.shared.store.sync().map_err(sm_err(ErrorVerb::Write))
    }

    /// [`flush`](Self::flush) if what waits is due (older than
    /// [`FLUSH_AFTER`], or large): a node calls it on a timer, so an idle
    /// node's store catches up with what it applied. Blocking.
    pub fn flush_if_due(&self) -> Result<(), StorageError> {
        let due = self
            .shared
            .commit
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .due();
        if due && !self.failed() {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes every apply to the store at once (`true`), as when the Raft
    /// log is not durable (an in-memory log engine): the state store is
    /// then the only copy left after a crash.
    pub fn write_through(&self, on: bool) {
        self.shared
            .write_through
            .store(on, std::sync::atomic::Ordering::Release);
    }

    /// This node's change history and live notices, for watches.
    pub fn history(&self) -> History {
        let shared = self.shared.clone();
        History {
            flush: Arc::new(move || shared.flushed().map(drop)),
            store: self.shared.store.clone(),
            state: self.shared.history.clone(),
            views: self.shared.views.clone(),
        }
    }

    /// The read API over this node's views.
    pub fn reader(&self) -> MetadataReader {
        MetadataReader {
            views: self.shared.views.clone(),
        }
    }

    /// True once an apply or a snapshot install of this state machine
    /// failed (the node is stopping).
    pub fn failed(&self) -> bool {
        self.shared.failed()
    }

    /// Records that an apply or an install failed (see [`failed`](Self::failed)).
    fn mark_failed(&self) {
        self.shared.mark_failed();
    }

    /// The last applied log id and membership.
    pub fn applied(&self) -> AppliedState {
        self.shared
            .applied
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Loads the views. A store written before revisions is rewritten in the
/// current layout first (one durable batch: every user key at revision 1),
/// but only that of a single-node cluster: replicas of a larger one would
/// each convert at the log index they happen to be at, and their revisions
/// would differ for good. Those are refused, saying so.
fn load(store: &dyn MetadataStore) -> Result<(Views, AppliedState), StorageError> {
    let applied_record = store.get(&applied_key()).map_err(sm_err(ErrorVerb::Read))?;
    let (views, applied, format) = Views::load(
        Views::default(),
        applied_record.as_deref(),
        records_of(store),
    )
    .map_err(|e| storage_error(ErrorSubject::StateMachine, ErrorVerb::Read, &e))?;
    if format == Format::BeforeRevisions {
        let membership = applied.membership.membership();
        let members = membership.nodes().count();
        if members > 1 {
            return Err(storage_error(
                ErrorSubject::StateMachine,
                ErrorVerb::Read,
                &std::io::Error::other(format!(
                    "this state store was written by a build without revisions and belongs to \
                     a cluster of {members} members: upgrading its nodes one by one would give \
                     them different revisions, so this build does not serve it. Run the old \
                     build, or move the data to a new cluster (docs/operations.md, \"Upgrading\")"
                )),
            ));
        }
        let mut batch = WriteBatch::with_capacity(views.kv.len() + 1);
        for (k, entry) in &views.kv {
            batch.put(
                kv_key(k).map_err(|e| rejected_on_load(k, e))?,
                encode(&**entry),
            );
        }
        batch.put(applied_key(), encode(&applied));
        store
            .batch(&batch, Durability::Durable)
            .map_err(sm_err(ErrorVerb::Write))?;
        tracing::info!(
            keys = views.kv.len(),
            "rewrote the state store in the layout with revisions (every key at revision 1)"
        );
    }
    Ok((views, applied))
}

/// Records read from `/meta/` of `store` per [`LOAD_PAGE`], one at a time
/// (nothing writes while the state machine opens).
fn records_of(store: &dyn MetadataStore) -> impl FnMut() -> crate::views::NextRecord + '_ {
    let mut range = meta_store_api::KeyRange::prefix(META_PREFIX);
    let mut page = std::collections::VecDeque::new();
    let mut done = false;
    move || {
        if page.is_empty() && !done {
            let rows = store
                .range(&range, meta_store_api::Direction::Forward, Some(LOAD_PAGE))
                .map_err(|e| crate::views::LoadError::Read(e.to_string()))?;
            done = rows.len() < LOAD_PAGE;
            if let Some((last, _)) = rows.last() {
                range.start = std::ops::Bound::Excluded(last.clone());
            }
            page.extend(rows);
        }
        Ok(page.pop_front())
    }
}

/// How many records loading the views reads from the store at a time.
const LOAD_PAGE: usize = 4096;

fn rejected_on_load(k: &[u8], e: Rejection) -> StorageError {
    storage_error(
        ErrorSubject::StateMachine,
        ErrorVerb::Read,
        &std::io::Error::other(format!(
            "stored user key {}: {e}",
            String::from_utf8_lossy(k)
        )),
    )
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        let applied = self.applied();
        Ok((applied.last_applied, applied.membership))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        failpoint!("sm.apply.before");
        let started = std::time::Instant::now();
        // Work on O(1) copies; publish them only once the batch committed.
        let mut views = self
            .shared
            .views
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut applied = self.applied();
        let mut fx = Effects::default();
        let mut responses = Vec::new();
        let mut changes_membership = false;
        for entry in entries {
            applied.last_applied = Some(entry.log_id);
            responses.push(match entry.payload {
                EntryPayload::Blank => Response::Internal,
                EntryPayload::Normal(envelope) => match envelope.open() {
                    Ok(command) => apply_command(&mut views, command, &mut fx),
                    Err(rejection) => Response::Rejected(rejection),
                },
                EntryPayload::Membership(membership) => {
                    failpoint!("sm.membership.before");
                    changes_membership = true;
                    applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Response::Internal
                }
            });
        }
        // The applied state rides in the same batch as the data it reflects.
        applied.revision = views.revision;
        let Effects {
            mut batch, events, ..
        } = fx;
        batch.put(applied_key(), encode(&applied));
        let shared = self.shared.clone();
        let applied_batch = blocking(ErrorSubject::StateMachine, ErrorVerb::Write, move || {
            let mut unflushed = shared.commit.lock().unwrap_or_else(PoisonError::into_inner);
            let revision = views.revision;
            shared.history.stage(&events, revision, &mut batch);
            unflushed.add(batch);
            let write_through = shared
                .write_through
                .load(std::sync::atomic::Ordering::Acquire);
            if write_through || unflushed.due() {
                unflushed
                    .flush(&*shared.store)
                    .map_err(sm_err(ErrorVerb::Write))?;
            }
            *shared.views.write().unwrap_or_else(PoisonError::into_inner) = views;
            *shared
                .applied
                .write()
                .unwrap_or_else(PoisonError::into_inner) = applied;
            shared.history.publish(revision, events);
            Ok(())
        })
        .await;
        if let Err(e) = applied_batch {
            self.mark_failed();
            return Err(e);
        }
        self.shared
            .instruments()
            .apply_seconds
            .record(started.elapsed().as_secs_f64());
        if changes_membership {
            failpoint!("sm.membership.after");
        }
        failpoint!("sm.apply.after");
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            shared: self.shared.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<tokio::fs::File>, StorageError> {
        let dir = &self.shared.spill_dir;
        let file = spill_file(dir).map_err(|e| spill_error(dir, e))?;
        Ok(Box::new(tokio::fs::File::from_std(file)))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<tokio::fs::File>,
    ) -> Result<(), StorageError> {
        let shared = self.shared.clone();
        let meta = meta.clone();
        let subject = ErrorSubject::Snapshot(Some(meta.signature()));
        let mut file = snapshot.into_std().await;
        let started = std::time::Instant::now();
        let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
        let installed = blocking(subject, ErrorVerb::Write, move || {
            shared.install(&meta, &mut file)
        })
        .await;
        if installed.is_err() {
            self.mark_failed();
        } else {
            let instruments = self.shared.instruments();
            instruments
                .snapshot_install_seconds
                .record(started.elapsed().as_secs_f64());
            instruments.snapshot_install_bytes.increment(bytes);
            self.shared.gate.sized(bytes);
        }
        installed
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        // The store is the snapshot: a fresh one of the current state (at or
        // after the last one built or installed) serves every purpose of the
        // "current snapshot" and survives restarts without a second copy.
        let shared = self.shared.clone();
        blocking(ErrorSubject::Snapshot(None), ErrorVerb::Read, move || {
            if !shared.has_snapshot()? {
                return Ok(None);
            }
            shared.build_snapshot().map(Some)
        })
        .await
    }
}
