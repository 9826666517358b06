//! Snapshots of the state machine: building one (a pinned store view
//! streamed into an unnamed spill file), installing one (checked whole
//! before the store is touched, then restored in one step), and seeding a
//! new cluster from an online backup.

use super::*;

/// An unnamed temporary file in `dir`: the operating system deletes it
/// when the last handle closes, even after a crash.
pub(super) fn spill_file(dir: &Path) -> std::io::Result<std::fs::File> {
    tempfile::tempfile_in(dir)
}

/// A failed write of a spill file: on a full disk, says so (like the
/// stores' own write errors).
pub(super) fn spill_error(dir: &Path, e: std::io::Error) -> StorageError {
    let error = meta_store_api::disk::write_error(
        "snapshot",
        dir,
        meta_store_api::Error::io(
            format!("writing a snapshot spill file in {}", dir.display()),
            e,
        ),
    );
    storage_error(ErrorSubject::Snapshot(None), ErrorVerb::Write, &error)
}

/// A deterministic snapshot id: equal content at the same log id gets the
/// same id on every node and engine.
fn snapshot_id(last: &Option<LogId>) -> String {
    match last {
        Some(id) => format!(
            "{}-{}-{}",
            id.leader_id.term, id.leader_id.node_id, id.index
        ),
        None => "empty".into(),
    }
}

impl Shared {
    /// Pins a snapshot of `/meta/` with the applied state it reflects, makes
    /// that state durable, and reads the stream.
    ///
    /// A failed write to the state store (the flush of waiting applies,
    /// the sync, the snapshot's record) leaves this state machine failed,
    /// as a failed apply does: what the store holds is then unknown, and a
    /// later sync that succeeds proves nothing (the kernel may have dropped
    /// the pages that failed). A failure to read the store or to write the
    /// spill file leaves nothing behind.
    pub(super) fn build_snapshot(&self) -> Result<Snapshot, StorageError> {
        let store_failed = |e: meta_store_api::Error| {
            self.mark_failed();
            storage_error(ErrorSubject::StateMachine, ErrorVerb::Write, &e)
        };
        let (applied, mut stream) = {
            let _commit = self.flushed().map_err(store_failed)?;
            let applied = self
                .applied
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            (
                applied,
                self.store
                    .snapshot(META_PREFIX)
                    .map_err(sm_err(ErrorVerb::Read))?,
            )
        };
        // Apply writes are buffered; once a snapshot exists Raft may purge
        // the log it covers, so the state it covers must be durable first.
        let synced = (|| -> Result<(), StorageError> {
            failpoint!("sm.snapshot.build.synced");
            self.store.sync().map_err(sm_err(ErrorVerb::Write))
        })();
        synced.inspect_err(|_| self.mark_failed())?;
        let snap_err = |e: std::io::Error| spill_error(&self.spill_dir, e);
        let mut file = spill_file(&self.spill_dir).map_err(snap_err)?;
        {
            let mut writer = BufWriter::new(&mut file);
            std::io::copy(&mut stream, &mut writer).map_err(snap_err)?;
            writer.flush().map_err(snap_err)?;
        }
        failpoint!("sm.snapshot.build.streamed");
        file.seek(SeekFrom::Start(0)).map_err(snap_err)?;
        let meta = SnapshotMeta {
            snapshot_id: snapshot_id(&applied.last_applied),
            last_log_id: applied.last_applied,
            last_membership: applied.membership,
        };
        self.record_snapshot(&meta)
            .inspect_err(|_| self.mark_failed())?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(tokio::fs::File::from_std(file)),
        })
    }

    /// Remembers that a snapshot exists (its metadata), so the current
    /// snapshot is served again after a restart.
    fn record_snapshot(&self, meta: &SnapshotMeta) -> Result<(), StorageError> {
        self.store
            .set(
                &Key::Raft(RaftKey::Snapshot).encode(),
                &encode(meta),
                Durability::Durable,
            )
            .map_err(|e| {
                storage_error(
                    ErrorSubject::Snapshot(Some(meta.signature())),
                    ErrorVerb::Write,
                    &e,
                )
            })
    }

    pub(super) fn has_snapshot(&self) -> Result<bool, StorageError> {
        let key = Key::Raft(RaftKey::Snapshot).encode();
        Ok(self
            .store
            .get(&key)
            .map_err(sm_err(ErrorVerb::Read))?
            .is_some())
    }
}

/// How long a node waits, after a snapshot build failed or found too
/// little room on its disk, before it tries again (at the first build
/// openraft asks for after that).
pub const BUILD_RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(5);

/// What stands between a snapshot build that cannot succeed now and the
/// node: openraft stops a node whose build fails, though a build is only
/// housekeeping once a snapshot exists (the log it would let go of stays,
/// whole and durable).
#[derive(Default)]
pub(super) struct BuildGate {
    /// Bytes of the last snapshot built or installed (0: none since the
    /// state machine opened): about what the next build writes.
    last_bytes: std::sync::atomic::AtomicU64,
    /// Bytes a build must leave free on the spill directory's disk (the
    /// node's free-space watermark; 0: as much again as the snapshot).
    keep_free: std::sync::atomic::AtomicU64,
    /// No build starts before then: one failed or lacked room.
    not_before: Mutex<Option<std::time::Instant>>,
}

impl BuildGate {
    /// Remembers the size of a snapshot just built or installed.
    pub(super) fn sized(&self, bytes: u64) {
        self.last_bytes
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    /// Sets the bytes a build must leave free.
    pub(super) fn keep_free(&self, bytes: u64) {
        self.keep_free
            .store(bytes, std::sync::atomic::Ordering::Relaxed);
    }

    fn waiting(&self) -> bool {
        self.not_before
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|t| std::time::Instant::now() < t)
    }

    fn retry_later(&self) {
        *self
            .not_before
            .lock()
            .unwrap_or_else(PoisonError::into_inner) =
            Some(std::time::Instant::now() + BUILD_RETRY_AFTER);
    }

    /// Refuses to start a build that would leave less than the watermark
    /// (or, without one, less than the snapshot's size) free in `dir`: the
    /// spill file would take what the Raft log's next appends need, and a
    /// failed append does stop the node. The snapshot's size is the last
    /// one's, or after a restart about the data's (`data_bytes`).
    fn room(&self, dir: &Path, data_bytes: impl FnOnce() -> u64) -> Result<(), StorageError> {
        let Some(free) = meta_store_api::disk::available_bytes(dir) else {
            return Ok(());
        };
        let expected = match self.last_bytes.load(std::sync::atomic::Ordering::Relaxed) {
            0 => data_bytes(),
            last => last,
        };
        let keep = match self.keep_free.load(std::sync::atomic::Ordering::Relaxed) {
            0 => expected,
            watermark => watermark,
        };
        if free >= expected.saturating_add(keep) {
            return Ok(());
        }
        Err(storage_error(
            ErrorSubject::Snapshot(None),
            ErrorVerb::Write,
            &std::io::Error::new(
                std::io::ErrorKind::StorageFull,
                format!(
                    "not enough room for a snapshot in {}: {free} bytes free, the snapshot \
                     takes about {expected} and {keep} must stay free",
                    dir.display()
                ),
            ),
        ))
    }
}

/// Builds snapshots of the state machine.
///
/// Once a snapshot exists, a build that fails (a full disk, an I/O error
/// on the spill file, a read error) or would leave too little room (see
/// [`StateMachine::keep_free_disk`](super::StateMachine::keep_free_disk))
/// does not stop the node: it is logged and counted
/// (`snapshot_build_failures`), the answer is a snapshot no newer than the
/// current one (no log id), which openraft ignores, and no build starts
/// again for [`BUILD_RETRY_AFTER`]. The log is not purged meanwhile. A
/// first snapshot is built whatever the room and its failure is an error:
/// openraft may need it (a log purged with no snapshot recorded). So is a
/// failed write to the state store, which also fails the state machine.
pub struct SnapshotBuilder {
    pub(super) shared: Arc<Shared>,
}

impl SnapshotBuilder {
    async fn try_build(&self, check_room: bool) -> Result<Snapshot, StorageError> {
        failpoint!("sm.snapshot.build.before");
        let shared = self.shared.clone();
        let started = std::time::Instant::now();
        let snapshot = blocking(ErrorSubject::Snapshot(None), ErrorVerb::Read, move || {
            if check_room {
                let reader = MetadataReader {
                    views: shared.views.clone(),
                };
                shared
                    .gate
                    .room(&shared.spill_dir, || reader.data_bytes())?;
            }
            shared.build_snapshot()
        })
        .await?;
        let instruments = self.shared.instruments();
        instruments
            .snapshot_build_seconds
            .record(started.elapsed().as_secs_f64());
        if let Ok(m) = snapshot.snapshot.metadata().await {
            instruments.snapshot_build_bytes.increment(m.len());
            self.shared.gate.sized(m.len());
        }
        failpoint!("sm.snapshot.build.after");
        Ok(snapshot)
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let shared = self.shared.clone();
        let earlier = blocking(ErrorSubject::Snapshot(None), ErrorVerb::Read, move || {
            shared.has_snapshot()
        })
        .await?;
        if !earlier {
            return self.try_build(false).await;
        }
        let shared = &self.shared;
        if shared.gate.waiting() {
            return shared.no_newer_snapshot();
        }
        match self.try_build(true).await {
            Ok(snapshot) => Ok(snapshot),
            Err(e) if shared.failed() => Err(e),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    retry_in = ?BUILD_RETRY_AFTER,
                    "snapshot not built; the node goes on and keeps its log until a build succeeds"
                );
                shared.instruments().snapshot_build_failures.increment(1);
                shared.gate.retry_later();
                shared.no_newer_snapshot()
            }
        }
    }
}

impl Shared {
    /// A snapshot openraft takes for "nothing new": no log id (so never
    /// newer than the current one) and no data. Its file is a handle on
    /// the empty file made when the state machine opened, so answering
    /// needs no room on a full disk.
    fn no_newer_snapshot(&self) -> Result<Snapshot, StorageError> {
        let data = self
            .placeholder
            .try_clone()
            .map_err(|e| spill_error(&self.spill_dir, e))?;
        Ok(Snapshot {
            meta: SnapshotMeta {
                snapshot_id: "not-built".into(),
                last_log_id: None,
                last_membership: Default::default(),
            },
            snapshot: Box::new(tokio::fs::File::from_std(data)),
        })
    }
}

impl Shared {
    /// Installs the snapshot `meta` read from `file`: checks every record
    /// and the applied state first, so a snapshot this node cannot load
    /// leaves its state as it was, then restores `/meta/` atomically and
    /// durably and publishes the new views.
    pub(super) fn install(
        &self,
        meta: &SnapshotMeta,
        file: &mut std::fs::File,
    ) -> Result<(), StorageError> {
        let shared = self;
        let subject = ErrorSubject::Snapshot(Some(meta.signature()));
        failpoint!("sm.snapshot.install.before");
        let fail = |e: &dyn std::fmt::Display| {
            storage_error(
                subject.clone(),
                ErrorVerb::Write,
                &std::io::Error::other(e.to_string()),
            )
        };
        // Check everything before touching the store: a snapshot this
        // node cannot load must leave its state as it was, not replace it
        // with data it will fail to open.
        // Read twice, never held whole: first the applied state (which says
        // how to read the rest) while every block's checksum is verified,
        // then the records into the new views.
        let applied_key = applied_key();
        let mut applied_record = None;
        file.seek(SeekFrom::Start(0)).map_err(|e| fail(&e))?;
        let mut reader = SnapshotReader::new(BufReader::new(&mut *file)).map_err(|e| fail(&e))?;
        while let Some((k, v)) = reader.next_record().map_err(|e| fail(&e))? {
            if k == applied_key.as_slice() {
                applied_record = Some(v.to_vec());
            }
        }
        drop(reader);
        file.seek(SeekFrom::Start(0)).map_err(|e| fail(&e))?;
        let mut reader = SnapshotReader::new(BufReader::new(&mut *file)).map_err(|e| fail(&e))?;
        let next = || {
            reader
                .next_record()
                .map(|record| record.map(|(k, v)| (k.to_vec(), v.to_vec())))
                .map_err(|e| crate::views::LoadError::Read(e.to_string()))
        };
        // Built over the views that serve reads meanwhile: the two share
        // what the snapshot does not change.
        let base = shared
            .views
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let (views, applied, format) =
            Views::load(base, applied_record.as_deref(), next).map_err(|e| fail(&e))?;
        drop(reader);
        if format != Format::Current {
            return Err(fail(&format!(
                "snapshot {} was written by a build without revisions: every node of \
                 a cluster must run the same build",
                meta.snapshot_id
            )));
        }
        if applied.last_applied != meta.last_log_id {
            return Err(fail(&format!(
                "snapshot {} holds applied state {:?}, its metadata says {:?}",
                meta.snapshot_id, applied.last_applied, meta.last_log_id
            )));
        }
        // Held to the end: no apply runs during the install.
        let mut unflushed = shared.commit.lock().unwrap_or_else(PoisonError::into_inner);
        let current = shared.revision();
        // What the old state still had to write goes first: the store then
        // holds what the history's trimming saw (the reset below deletes
        // from there), and a failed install leaves the old state whole.
        unflushed
            .flush(&*shared.store)
            .map_err(|e| storage_error(subject.clone(), ErrorVerb::Write, &e))?;
        // The changes between the current state and the snapshot's are
        // not known here: the history restarts at the snapshot.
        let revision = views.revision;
        shared
            .history
            .reset(&*shared.store, current, revision)
            .map_err(|e| storage_error(subject.clone(), ErrorVerb::Write, &e))?;
        // Atomic and durable: the data and its applied state together.
        file.seek(SeekFrom::Start(0)).map_err(|e| fail(&e))?;
        shared
            .store
            .restore(META_PREFIX, &mut BufReader::new(&mut *file))
            .map_err(|e| storage_error(subject.clone(), ErrorVerb::Write, &e))?;
        failpoint!("sm.snapshot.install.restored");
        *shared.views.write().unwrap_or_else(PoisonError::into_inner) = views;
        *shared
            .applied
            .write()
            .unwrap_or_else(PoisonError::into_inner) = applied;
        shared.history.publish_reset(revision);
        shared.record_snapshot(meta)?;
        failpoint!("sm.snapshot.install.after");
        Ok(())
    }
}

/// Makes stores that hold an online backup's `/meta/` (restored into
/// `state`, with an empty Raft log in `log`) the starting state of node
/// `node_id` of a **new** cluster of `members`, all voters: the applied
/// state keeps its log id and revision and takes the new membership, and
/// the log store gets a vote in the backup's last term, so the new
/// cluster's first election runs in a later term and its entries follow
/// the backup's. Every member is seeded from the same backup with the same
/// `members`; openraft then starts each at the backup's log index, with
/// nothing to replay, and they elect a leader among themselves.
pub fn seed_new_cluster(
    log: &dyn MetadataStore,
    state: &dyn MetadataStore,
    node_id: u64,
    members: std::collections::BTreeMap<u64, crate::types::NodeAddr>,
) -> Result<AppliedState, StorageError> {
    let fail = |what: String| {
        storage_error(
            ErrorSubject::StateMachine,
            ErrorVerb::Write,
            &std::io::Error::other(what),
        )
    };
    if !members.contains_key(&node_id) {
        return Err(fail(format!("node {node_id} is not one of the members")));
    }
    let (_, mut applied) = load(state)?;
    let Some(last) = applied.last_applied else {
        return Err(fail("the backup holds no applied log entry".into()));
    };
    let voters: std::collections::BTreeSet<u64> = members.keys().copied().collect();
    applied.membership =
        StoredMembership::new(Some(last), openraft::Membership::new(vec![voters], members));
    state
        .set(&applied_key(), &encode(&applied), Durability::Durable)
        .map_err(sm_err(ErrorVerb::Write))?;
    log.set(
        &Key::Raft(RaftKey::Vote).encode(),
        &encode(&crate::types::Vote::new(last.leader_id.term, node_id)),
        Durability::Durable,
    )
    .map_err(sm_err(ErrorVerb::Write))?;
    Ok(applied)
}
