//! The fjall engine: an LSM tree, for write-heavy production nodes.
//!
//! - Reads go through a fjall snapshot (one sequence number), so `get`,
//!   `range` and snapshot streams see only fully committed batches and never
//!   block writers.
//! - Every write is one fjall batch, journaled atomically.
//!   [`Durability::Durable`] batches are fsync'd before they become
//!   visible (fjall's own default only hands writes to the OS; this crate
//!   asks for `PersistMode::SyncAll` explicitly); [`Durability::Buffered`]
//!   batches reach the OS at once and survive a process crash, and are
//!   fsync'd by the next durable write or [`MetadataStore::sync`].
//! - `restore` stages the stream in a side keyspace, and only once the
//!   whole stream verified does it durably record a *commit point* and swap
//!   the staged content in, with readers held off for the swap. A crash
//!   before the commit point leaves the old content; a crash after it is
//!   rolled forward when the store is next opened. Memory stays bounded
//!   whatever the snapshot's size.
//!
//! ```
//! use meta_store_api::{Durability, MetadataStore};
//! use meta_store_fjall::{FjallOptions, FjallStore};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let store = FjallStore::open(dir.path(), &FjallOptions::default())?;
//! store.set(b"/meta/kv/a", b"1", Durability::Durable)?;
//! assert_eq!(store.get(b"/meta/kv/a")?, Some(b"1".to_vec()));
//! # Ok::<(), meta_store_api::Error>(())
//! ```

use std::io::Read;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};
use meta_store_api::snapshot::{SnapshotOptions, SnapshotStream, restore_records, spawn_snapshot};
use meta_store_api::{
    BatchOp, DirLock, Direction, Durability, Error, KeyRange, KeyValue, MetadataStore,
    RestoreStats, Result, WriteBatch, disk, limits,
};

const ENGINE: &str = "fjall";
/// Subdirectory holding fjall's files, beside this crate's lock file.
const DB_DIR: &str = "fjall";
/// The user data.
const DATA: &str = "data";
/// Where `restore` stages a stream before swapping it in.
const STAGING: &str = "restore-staging";
/// This crate's own records (the restore commit point).
const SYS: &str = "sys";
/// Key in [`SYS`] whose presence means "staging holds a verified restore
/// of the prefix stored as its value; finish it".
const RESTORE_PENDING: &[u8] = b"restore-pending";
/// Bytes of keys and values per batch when staging or swapping a restore.
const RESTORE_CHUNK: usize = 4 << 20;

/// How a [`FjallStore`] is opened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FjallOptions {
    /// Block cache size in bytes. Default: 64 MiB.
    pub cache_size: u64,
    /// Background threads for flushes and compactions. Default: 2.
    pub worker_threads: usize,
    /// Table files kept open at most (fjall's own default is 900, more
    /// than a process with a low descriptor limit may spare). At least 10.
    /// Default: 64.
    pub max_cached_files: usize,
}

impl Default for FjallOptions {
    fn default() -> Self {
        FjallOptions {
            cache_size: 64 << 20,
            worker_threads: 2,
            max_cached_files: 64,
        }
    }
}

/// The fjall engine. See the [crate docs](crate).
pub struct FjallStore {
    db: Database,
    data: Keyspace,
    staging: Keyspace,
    sys: Keyspace,
    /// Serializes writers (including a whole `restore`).
    writer: Mutex<()>,
    /// Readers hold it shared; the swap phase of `restore` holds it
    /// exclusively so nobody sees half of a restore.
    gate: RwLock<()>,
    closed: AtomicBool,
    /// Set when a restore failed after its commit point: the data is half
    /// swapped, so the store refuses everything until it is reopened (which
    /// finishes the swap).
    failed: AtomicBool,
    dir: PathBuf,
    _lock: DirLock,
}

impl FjallStore {
    /// Opens (creating if needed) the store in directory `dir`, finishing a
    /// restore that a crash interrupted after its commit point. Fails with
    /// [`Error::Locked`] if another handle or process has it open.
    pub fn open(dir: &Path, options: &FjallOptions) -> Result<FjallStore> {
        let lock = DirLock::acquire(dir)?;
        let err = |e| fjall_error(e, dir);
        let db = Database::builder(dir.join(DB_DIR))
            .cache_size(options.cache_size)
            .max_cached_files(Some(options.max_cached_files.max(10)))
            .worker_threads(options.worker_threads.max(1))
            .open()
            .map_err(err)?;
        let data = db
            .keyspace(DATA, || {
                KeyspaceCreateOptions::default().max_memtable_size(DATA_MEMTABLE)
            })
            .map_err(err)?;
        let staging = db
            .keyspace(STAGING, || {
                KeyspaceCreateOptions::default().max_memtable_size(STAGING_MEMTABLE)
            })
            .map_err(err)?;
        let sys = db
            .keyspace(SYS, KeyspaceCreateOptions::default)
            .map_err(err)?;
        let store = FjallStore {
            db,
            data,
            staging,
            sys,
            writer: Mutex::new(()),
            gate: RwLock::new(()),
            closed: AtomicBool::new(false),
            failed: AtomicBool::new(false),
            dir: dir.to_path_buf(),
            _lock: lock,
        };
        store.recover_restore()?;
        Ok(store)
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn err(&self, e: fjall::Error) -> Error {
        fjall_error(e, &self.dir)
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if self.failed.load(Ordering::Acquire) {
            return Err(Error::Corruption {
                engine: ENGINE,
                detail: format!(
                    "a restore failed half-way in {}; reopen the store to finish it",
                    self.dir.display()
                ),
            });
        }
        Ok(())
    }

    fn lock_writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn read_gate(&self) -> RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Commits one fjall batch with `durability`.
    fn commit(&self, batch: fjall::OwnedWriteBatch, durability: Durability) -> Result<()> {
        let mode = match durability {
            Durability::Durable => PersistMode::SyncAll,
            Durability::Buffered => PersistMode::Buffer,
        };
        batch
            .durability(Some(mode))
            .commit()
            .map_err(|e| self.write_err(e))
    }

    /// [`FjallStore::err`] for a write: on a full disk, `DiskFull`.
    fn write_err(&self, e: fjall::Error) -> Error {
        disk::write_error(ENGINE, &self.dir, self.err(e))
    }

    /// The restore: staged, then swapped in past a durable commit point.
    fn restore_staged(&self, prefix: &[u8], reader: &mut dyn Read) -> Result<RestoreStats> {
        self.check_open()?;
        let _writer = self.lock_writer();
        self.check_open()?;
        // A restore interrupted after its commit point is finished first, so
        // staging never holds two restores at once.
        self.recover_restore()?;
        let stats = match self.stage(prefix, reader) {
            Ok(stats) => stats,
            Err(e) => {
                // Best effort: the next open clears the staging anyway.
                let _ = self.staging.clear();
                return Err(e);
            }
        };
        self.mark_restore_committed(prefix)?;
        if let Err(e) = self.swap_in_staged(prefix) {
            // Past the commit point: the next open rolls the swap forward.
            // Until then nobody may see or build on the half-swapped data.
            self.failed.store(true, Ordering::Release);
            return Err(e);
        }
        Ok(stats)
    }

    /// Finishes a restore whose commit point was recorded, or discards the
    /// staging of one that never reached it.
    fn recover_restore(&self) -> Result<()> {
        match self.sys.get(RESTORE_PENDING).map_err(|e| self.err(e))? {
            Some(prefix) => self.swap_in_staged(&prefix),
            None => self.staging.clear().map_err(|e| self.err(e)),
        }
    }

    /// Replaces `prefix` in the data with the staged records. Idempotent,
    /// so a crash half-way is finished by running it again on open.
    fn swap_in_staged(&self, prefix: &[u8]) -> Result<()> {
        let _gate = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        let mut chunk = Chunk::new(self);
        self.for_each_in_slices(&self.data, prefix_bounds(prefix), |key, _| {
            chunk.remove(&self.data, key)
        })?;
        chunk.finish()?;
        let everything = (Bound::Unbounded, Bound::Unbounded);
        self.for_each_in_slices(&self.staging, everything, |key, value| {
            chunk.insert(&self.data, key, value)
        })?;
        chunk.finish()?;
        // Data first, durably; only then drop the commit point.
        self.db
            .persist(PersistMode::SyncAll)
            .map_err(|e| self.write_err(e))?;
        let mut batch = self.db.batch();
        batch.remove(&self.sys, RESTORE_PENDING);
        self.commit(batch, Durability::Durable)?;
        self.staging.clear().map_err(|e| self.err(e))
    }

    /// Calls `f` on every entry of `keyspace` in `range`, reading a bounded
    /// slice at a time, each through its own short-lived snapshot: one
    /// snapshot held over a whole swap would keep every memtable written
    /// meanwhile alive (1 GiB restored held 1 GiB of them).
    fn for_each_in_slices(
        &self,
        keyspace: &Keyspace,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
        mut f: impl FnMut(fjall::UserKey, fjall::UserValue) -> Result<()>,
    ) -> Result<()> {
        let (mut start, end) = range;
        loop {
            let mut slice = Vec::new();
            let mut bytes = 0;
            for guard in self
                .db
                .snapshot()
                .range(keyspace, (start.clone(), end.clone()))
            {
                let (key, value) = guard.into_inner().map_err(|e| self.err(e))?;
                bytes += key.len() + value.len();
                slice.push((key, value));
                if bytes >= RESTORE_CHUNK {
                    break;
                }
            }
            let Some((last, _)) = slice.last() else {
                return Ok(());
            };
            start = Bound::Excluded(last.to_vec());
            for (key, value) in slice {
                f(key, value)?;
            }
        }
    }

    /// Decodes `reader` into the staging keyspace; returns when the whole
    /// stream verified.
    fn stage(&self, prefix: &[u8], reader: &mut dyn Read) -> Result<RestoreStats> {
        self.staging.clear().map_err(|e| self.err(e))?;
        let mut chunk = Chunk::new(self);
        let stats = restore_records(prefix, reader, |key, value| {
            chunk.insert(&self.staging, key, value)
        })?;
        chunk.finish()?;
        Ok(stats)
    }

    /// Records the commit point: staging is complete and durable.
    fn mark_restore_committed(&self, prefix: &[u8]) -> Result<()> {
        self.db
            .persist(PersistMode::SyncAll)
            .map_err(|e| self.write_err(e))?;
        let mut batch = self.db.batch();
        batch.insert(&self.sys, RESTORE_PENDING, prefix);
        self.commit(batch, Durability::Durable)
    }
}

/// Buffered fjall batches of bounded size.
struct Chunk<'a> {
    store: &'a FjallStore,
    batch: Option<fjall::OwnedWriteBatch>,
    bytes: usize,
    /// The keyspace written, to wait for its memtable flushes.
    target: Option<Keyspace>,
}

/// Sealed memtables a restore lets pile up before it waits for fjall's
/// flush workers: without the wait (fjall's write-buffer limit is off by
/// default) memtables pile up as fast as the snapshot decodes.
const MAX_SEALED_MEMTABLES: usize = 1;

/// The longest a restore waits for fjall's flush workers per chunk.
const FLUSH_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// Memtable size of the data keyspace (fjall's default is 64 MiB): a
/// metadata store's writes are small, and a restore's memory is bounded by
/// a couple of memtables.
const DATA_MEMTABLE: u64 = 16 << 20;

/// Memtable size of the staging keyspace (only restores write there).
const STAGING_MEMTABLE: u64 = 8 << 20;

impl<'a> Chunk<'a> {
    fn new(store: &'a FjallStore) -> Self {
        Chunk {
            store,
            batch: None,
            bytes: 0,
            target: None,
        }
    }

    fn insert(
        &mut self,
        keyspace: &Keyspace,
        key: impl Into<fjall::UserKey>,
        value: impl Into<fjall::UserValue>,
    ) -> Result<()> {
        let (key, value) = (key.into(), value.into());
        self.bytes += key.len() + value.len();
        self.target.get_or_insert_with(|| keyspace.clone());
        let db = &self.store.db;
        self.batch
            .get_or_insert_with(|| db.batch())
            .insert(keyspace, key, value);
        self.maybe_flush()
    }

    fn remove(&mut self, keyspace: &Keyspace, key: impl Into<fjall::UserKey>) -> Result<()> {
        let key = key.into();
        self.bytes += key.len();
        self.target.get_or_insert_with(|| keyspace.clone());
        let db = &self.store.db;
        self.batch
            .get_or_insert_with(|| db.batch())
            .remove(keyspace, key);
        self.maybe_flush()
    }

    fn maybe_flush(&mut self) -> Result<()> {
        if self.bytes >= RESTORE_CHUNK {
            self.finish()?;
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<()> {
        self.bytes = 0;
        if let Some(batch) = self.batch.take() {
            self.store.commit(batch, Durability::Buffered)?;
        }
        // Backpressure: memory stays bounded by a few memtables whatever
        // the snapshot's size. A flush worker that died (fjall poisons the
        // database) ends the wait with its error; flushes that are merely
        // slow end it after `FLUSH_WAIT` (memory grows, nothing hangs).
        if let Some(target) = &self.target {
            let deadline = std::time::Instant::now() + FLUSH_WAIT;
            while target.sealed_memtable_count() > MAX_SEALED_MEMTABLES
                && std::time::Instant::now() < deadline
            {
                self.store
                    .db
                    .persist(PersistMode::Buffer)
                    .map_err(|e| self.store.err(e))?;
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
        }
        Ok(())
    }
}

fn prefix_bounds(prefix: &[u8]) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let range = KeyRange::prefix(prefix);
    (range.start, range.end)
}

/// Whether a fjall error means the data on disk is damaged (as opposed to
/// I/O failing or the store being misused).
fn is_corruption(e: &fjall::Error) -> bool {
    use fjall::LsmError;
    match e {
        fjall::Error::Storage(inner) => matches!(
            inner,
            LsmError::ChecksumMismatch { .. }
                | LsmError::Decompress(_)
                | LsmError::InvalidTag(_)
                | LsmError::InvalidTrailer
                | LsmError::InvalidHeader(_)
                | LsmError::InvalidVersion(_)
                | LsmError::Unrecoverable
        ),
        fjall::Error::JournalRecovery(_)
        | fjall::Error::Unrecoverable
        | fjall::Error::Decompress(_)
        | fjall::Error::InvalidTrailer
        | fjall::Error::InvalidTag(_) => true,
        _ => false,
    }
}

fn fjall_error(e: fjall::Error, dir: &Path) -> Error {
    match e {
        fjall::Error::Locked => Error::Locked {
            path: dir.to_path_buf(),
        },
        fjall::Error::Io(io) => Error::io(format!("fjall I/O in {}", dir.display()), io),
        // Said after a background flush or journal write failed; fjall
        // logged that error, the caller only sees this.
        fjall::Error::Poisoned => Error::engine(
            ENGINE,
            format!(
                "the fjall store in {} refuses writes since a background flush or journal \
                 write failed (fjall logged the cause; a full disk is the usual one); reopen \
                 the store once it is fixed",
                dir.display()
            ),
        ),
        // Data that fails its checksum or does not decode: say so, and where.
        e @ (fjall::Error::Storage(_)
        | fjall::Error::Unrecoverable
        | fjall::Error::JournalRecovery(_)
        | fjall::Error::Decompress(_)
        | fjall::Error::InvalidTrailer
        | fjall::Error::InvalidTag(_))
            if is_corruption(&e) =>
        {
            let missing = matches!(
                e,
                fjall::Error::Unrecoverable | fjall::Error::Storage(fjall::LsmError::Unrecoverable)
            );
            Error::Corruption {
                engine: ENGINE,
                detail: if missing {
                    format!(
                        "files of the store at {} are missing or unreadable ({e})",
                        dir.display()
                    )
                } else {
                    format!("{e} in the store at {}", dir.display())
                },
            }
        }
        other => Error::engine(ENGINE, other),
    }
}

impl MetadataStore for FjallStore {
    fn engine(&self) -> &'static str {
        ENGINE
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_open()?;
        limits::check_key(key)?;
        let _gate = self.read_gate();
        // A snapshot read: a plain keyspace read could see a batch whose
        // sequence number is not published yet, and then a later scan
        // would not — reads must never go back in time.
        let value = self
            .db
            .snapshot()
            .get(&self.data, key)
            .map_err(|e| self.err(e))?;
        Ok(value.map(|v| v.to_vec()))
    }

    fn batch(&self, batch: &WriteBatch, durability: Durability) -> Result<()> {
        self.check_open()?;
        batch.validate()?;
        let _writer = self.lock_writer();
        // Checked again under the lock: a write that waited behind `close`
        // must not land after it.
        self.check_open()?;
        let mut fjall_batch = self.db.batch();
        // All entries of a fjall batch share one sequence number, so "in
        // order, last wins" is applied here.
        for op in batch.last_write_per_key() {
            match op {
                BatchOp::Put { key, value } => {
                    fjall_batch.insert(&self.data, key.as_slice(), value.as_slice());
                }
                BatchOp::Delete { key } => fjall_batch.remove(&self.data, key.as_slice()),
            }
        }
        self.commit(fjall_batch, durability)
    }

    fn sync(&self) -> Result<()> {
        self.check_open()?;
        self.db
            .persist(PersistMode::SyncAll)
            .map_err(|e| self.write_err(e))
    }

    fn range(
        &self,
        range: &KeyRange,
        direction: Direction,
        limit: Option<usize>,
    ) -> Result<Vec<KeyValue>> {
        self.check_open()?;
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let limit = limit.unwrap_or(usize::MAX);
        let iter = {
            let _gate = self.read_gate();
            self.db
                .snapshot()
                .range::<&[u8], _>(&self.data, range.as_slices())
        };
        let pair = |guard: fjall::Guard| {
            guard
                .into_inner()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(|e| self.err(e))
        };
        match direction {
            Direction::Forward => iter.take(limit).map(pair).collect(),
            Direction::Reverse => iter.rev().take(limit).map(pair).collect(),
        }
    }

    fn snapshot_with(&self, prefix: &[u8], options: &SnapshotOptions) -> Result<SnapshotStream> {
        self.check_open()?;
        let snapshot = {
            let _gate = self.read_gate();
            self.db.snapshot()
        };
        let (data, dir) = (self.data.clone(), self.dir.clone());
        let bounds = prefix_bounds(prefix);
        spawn_snapshot(prefix, options, move |sink| {
            sink.view_opened();
            for guard in snapshot.range(&data, bounds) {
                let (key, value) = guard.into_inner().map_err(|e| fjall_error(e, &dir))?;
                sink.push(&key, &value)?;
            }
            Ok(())
        })
    }

    fn restore(&self, prefix: &[u8], reader: &mut dyn Read) -> Result<RestoreStats> {
        self.restore_staged(prefix, reader)
            .map_err(|e| disk::write_error(ENGINE, &self.dir, e))
    }

    fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let _writer = self.lock_writer();
        self.db
            .persist(PersistMode::SyncAll)
            .map_err(|e| self.write_err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meta_store_api::snapshot::SnapshotWriter;

    fn stream(entries: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut w =
            SnapshotWriter::new(Vec::new(), b"/meta/", &SnapshotOptions::default()).unwrap();
        for (k, v) in entries {
            w.push(k, v).unwrap();
        }
        w.finish().unwrap().0
    }

    fn open(dir: &Path) -> FjallStore {
        FjallStore::open(dir, &FjallOptions::default()).unwrap()
    }

    #[test]
    fn a_restore_larger_than_a_slice_replaces_everything_under_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        // Old content: more than one slice (4 MiB) to remove, plus a key
        // outside the prefix that must survive.
        let mut old = WriteBatch::new();
        for i in 0..1500u32 {
            old.put(format!("/meta/old/{i:05}").into_bytes(), vec![1u8; 4096]);
        }
        old.put(b"/raft/vote".to_vec(), b"kept".to_vec());
        store.batch(&old, Durability::Durable).unwrap();
        let new: Vec<(Vec<u8>, Vec<u8>)> = (0..2500u32)
            .map(|i| {
                (
                    format!("/meta/new/{i:05}").into_bytes(),
                    vec![(i % 251) as u8; 4096],
                )
            })
            .collect();
        let pairs: Vec<(&[u8], &[u8])> = new.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        let bytes = stream(&pairs);
        let stats = store.restore(b"/meta/", &mut &bytes[..]).unwrap();
        assert_eq!(stats.records, 2500);
        let got = store.scan(b"/meta/").unwrap();
        assert_eq!(got, new);
        assert_eq!(
            store.get(b"/raft/vote").unwrap().as_deref(),
            Some(&b"kept"[..])
        );
    }

    #[test]
    fn a_crash_after_the_commit_point_is_rolled_forward_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.set(b"/meta/old", b"1", Durability::Durable).unwrap();
        let bytes = stream(&[(b"/meta/new", b"2")]);
        store.stage(b"/meta/", &mut &bytes[..]).unwrap();
        store.mark_restore_committed(b"/meta/").unwrap();
        // Crash: the swap never ran.
        drop(store);
        let store = open(dir.path());
        assert_eq!(
            store.scan(b"").unwrap(),
            vec![(b"/meta/new".to_vec(), b"2".to_vec())]
        );
        assert_eq!(store.sys.get(RESTORE_PENDING).unwrap(), None);
        assert!(store.staging.is_empty().unwrap());
    }

    #[test]
    fn a_crash_before_the_commit_point_keeps_the_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store.set(b"/meta/old", b"1", Durability::Durable).unwrap();
        let bytes = stream(&[(b"/meta/new", b"2")]);
        store.stage(b"/meta/", &mut &bytes[..]).unwrap();
        store.db.persist(PersistMode::SyncAll).unwrap();
        // Crash: staged and durable, but no commit point.
        drop(store);
        let store = open(dir.path());
        assert_eq!(
            store.scan(b"").unwrap(),
            vec![(b"/meta/old".to_vec(), b"1".to_vec())]
        );
        assert!(store.staging.is_empty().unwrap());
    }

    #[test]
    fn a_new_restore_first_finishes_one_left_past_its_commit_point() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let first = stream(&[(b"/meta/a", b"1")]);
        store.stage(b"/meta/", &mut &first[..]).unwrap();
        store.mark_restore_committed(b"/meta/").unwrap();
        // The swap never ran; a new restore must not mix into that staging.
        let second = stream(&[(b"/meta/b", b"2")]);
        store.restore(b"/meta/", &mut &second[..]).unwrap();
        assert_eq!(
            store.scan(b"").unwrap(),
            vec![(b"/meta/b".to_vec(), b"2".to_vec())]
        );
        drop(store);
        let store = open(dir.path());
        assert_eq!(
            store.scan(b"").unwrap(),
            vec![(b"/meta/b".to_vec(), b"2".to_vec())]
        );
    }
}
