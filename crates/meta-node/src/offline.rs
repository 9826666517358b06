//! Offline tools on a stopped node's stores: backup and restore through the
//! portable snapshot format, engine migration, and a content hash that is
//! equal across engines.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use meta_store_api::MetadataStore;
use meta_store_api::keys::META_PREFIX;
use sha2::{Digest, Sha256};

use crate::config::EngineOptions;
use crate::engine::StoreSpec;
use crate::error::NodeError;

fn open(spec: &StoreSpec) -> Result<std::sync::Arc<dyn MetadataStore>, NodeError> {
    if spec.engine == crate::engine::Engine::Mem {
        return Err(NodeError::config(
            "--store/--from/--to",
            "the mem engine keeps nothing on disk: offline tools need lmdb or fjall",
        ));
    }
    spec.engine.open(&spec.dir, &EngineOptions::default())
}

/// Opens a store that must already exist (a typo must not create an empty
/// source and copy nothing over real data).
fn open_existing(
    spec: &StoreSpec,
    flag: &str,
) -> Result<std::sync::Arc<dyn MetadataStore>, NodeError> {
    let exists = std::fs::read_dir(&spec.dir).is_ok_and(|mut entries| entries.next().is_some());
    if !exists {
        return Err(NodeError::config(
            flag,
            format!("no {} store in {}", spec.engine, spec.dir.display()),
        ));
    }
    open(spec)
}

/// Opens a target, refusing one that holds data unless `force`.
fn open_target(
    spec: &StoreSpec,
    flag: &str,
    force: bool,
) -> Result<std::sync::Arc<dyn MetadataStore>, NodeError> {
    let target = open(spec)?;
    let occupied = target
        .first(&meta_store_api::KeyRange::all())
        .map_err(store_err("reading the target"))?
        .is_some();
    if occupied && !force {
        return Err(NodeError::config(
            flag,
            format!(
                "{} already holds data; pass --force to replace it",
                spec.dir.display()
            ),
        ));
    }
    Ok(target)
}

fn store_err(context: impl Into<String>) -> impl FnOnce(meta_store_api::Error) -> NodeError {
    move |source| NodeError::Store {
        context: context.into(),
        source,
    }
}

/// Counts bytes through a reader onto a progress bar.
struct Progress<R> {
    inner: R,
    bar: ProgressBar,
}

impl<R: Read> Read for Progress<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.inc(n as u64);
        Ok(n)
    }
}

fn bar(hidden: bool, what: &str) -> ProgressBar {
    let bar = if hidden {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}: {bytes} ({bytes_per_sec}, {elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(what.to_string());
    bar
}

/// Writes a snapshot of the whole store (Raft log and metadata) to `out`.
/// Returns the bytes written.
pub fn snapshot_save(store: &StoreSpec, out: &Path, quiet: bool) -> Result<u64, NodeError> {
    let source = open_existing(store, "--store")?;
    let stream = source
        .snapshot(b"")
        .map_err(store_err("starting the snapshot"))?;
    let file = crate::files::private_file(out)?;
    let mut writer = BufWriter::new(file);
    let bar = bar(quiet, "saving");
    let bytes = std::io::copy(
        &mut Progress {
            inner: stream,
            bar: bar.clone(),
        },
        &mut writer,
    )
    .map_err(|e| NodeError::io("writing the snapshot", e))?;
    writer
        .flush()
        .map_err(|e| NodeError::io("writing the snapshot", e))?;
    writer
        .into_inner()
        .map_err(|e| NodeError::io("writing the snapshot", e.into_error()))?
        .sync_all()
        .map_err(|e| NodeError::io("syncing the snapshot file", e))?;
    bar.finish_and_clear();
    source.close().map_err(store_err("closing the store"))?;
    Ok(bytes)
}

/// Opens a snapshot file and reads its header.
fn open_snapshot(
    input: &Path,
) -> Result<(File, meta_store_api::snapshot::SnapshotHeader), NodeError> {
    let mut file =
        File::open(input).map_err(|e| NodeError::io(format!("opening {}", input.display()), e))?;
    let header = meta_store_api::snapshot::SnapshotReader::new(&mut file)
        .map_err(|e| store_err(format!("reading {}", input.display()))(e.into()))?
        .header()
        .clone();
    Ok((file, header))
}

/// Replaces the whole content of `store` with the snapshot in `input`
/// (atomically: a bad file leaves the store as it was). The file must be a
/// whole-store snapshot (`snapshot save`), and a store holding data is only
/// replaced with `force`.
pub fn snapshot_restore(
    store: &StoreSpec,
    input: &Path,
    force: bool,
    quiet: bool,
) -> Result<u64, NodeError> {
    let (mut file, header) = open_snapshot(input)?;
    // A snapshot of a prefix (a Raft snapshot of /meta/) restored over the
    // whole store would erase the Raft log and vote: refuse it.
    if !header.prefix.is_empty() {
        return Err(NodeError::config(
            "--in",
            format!(
                "{} is a snapshot of the prefix {:?}, not of a whole store (made by `snapshot save`)",
                input.display(),
                String::from_utf8_lossy(&header.prefix)
            ),
        ));
    }
    std::io::Seek::rewind(&mut file).map_err(|e| NodeError::io("rewinding the snapshot", e))?;
    let target = open_target(store, "--store", force)?;
    let bar = bar(quiet, "restoring");
    let mut reader = Progress {
        inner: BufReader::new(file),
        bar: bar.clone(),
    };
    let stats = target
        .restore(b"", &mut reader)
        .map_err(store_err(format!("restoring {}", input.display())))?;
    bar.finish_and_clear();
    target.close().map_err(store_err("closing the store"))?;
    Ok(stats.records)
}

/// What [`restore_new_cluster`] made.
#[derive(Debug)]
pub struct Seeded {
    /// Records restored.
    pub records: u64,
    /// The new cluster's id (the same on every member seeded from the same
    /// backup with the same members).
    pub cluster: crate::identity::ClusterId,
    /// The log index and revision the new cluster starts at.
    pub applied_index: u64,
    /// The store's revision.
    pub revision: u64,
}

/// Makes `data_dir` (new, or empty) node `node_id` of a **new** cluster of
/// `members` (all voters), holding the metadata of the online backup
/// `input` (`snapshot save --addr`): run on every new member, with the
/// same backup and members, then start them. The cluster id is derived
/// from the backup's bytes and the members, so every member gets the same
/// one, and it differs from the old cluster's: the new cluster never takes
/// a message from the old one.
pub fn restore_new_cluster(
    input: &Path,
    data_dir: &Path,
    engines: crate::identity::Engines,
    node_id: u64,
    members: &std::collections::BTreeMap<u64, meta_raft::types::NodeAddr>,
    quiet: bool,
) -> Result<Seeded, NodeError> {
    if !members.contains_key(&node_id) {
        return Err(NodeError::config(
            "--node-id",
            format!("node {node_id} is not one of the --member list"),
        ));
    }
    // Checked whole before anything is created: a damaged backup leaves
    // the data directory as it was.
    verify_file(input, "--in")?;
    let (mut file, header) = open_snapshot(input)?;
    if header.prefix != META_PREFIX {
        return Err(NodeError::config(
            "--in",
            format!(
                "{} is not an online backup (`snapshot save --addr`) but a snapshot of {}; \
                 a stopped node's whole store goes back with `snapshot restore --store`",
                input.display(),
                if header.prefix.is_empty() {
                    "a whole store".to_string()
                } else {
                    format!("the prefix {:?}", String::from_utf8_lossy(&header.prefix))
                }
            ),
        ));
    }
    // The cluster id: the backup's bytes and the members, hashed.
    std::io::Seek::rewind(&mut file).map_err(|e| NodeError::io("rewinding the backup", e))?;
    let mut digest = Sha256::new();
    std::io::copy(
        &mut BufReader::new(&mut file),
        &mut DigestWriter(&mut digest),
    )
    .map_err(|e| NodeError::io(format!("reading {}", input.display()), e))?;
    for (id, addr) in members {
        digest.update(format!("{id}={},{};", addr.raft, addr.api).as_bytes());
    }
    let hash = digest.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&hash[..16]);
    let cluster = crate::identity::ClusterId(id);

    crate::files::private_dir(data_dir)?;
    let (log_dir, state_dir) = engines.dirs(data_dir);
    for dir in [&log_dir, &state_dir] {
        if crate::identity::holds_files(dir) {
            return Err(NodeError::config(
                "--data-dir",
                format!(
                    "{} holds a store already: restore into a new data directory",
                    dir.display()
                ),
            ));
        }
    }
    let identity = crate::identity::Identity::open(data_dir, node_id, engines)?;
    let log_spec = StoreSpec {
        engine: engines.log,
        dir: log_dir.clone(),
    };
    let state_spec = StoreSpec {
        engine: engines.state,
        dir: state_dir.clone(),
    };
    let log = open_target(&log_spec, "--data-dir", false)?;
    let state = if log_dir == state_dir {
        log.clone()
    } else {
        open_target(&state_spec, "--data-dir", false)?
    };
    std::io::Seek::rewind(&mut file).map_err(|e| NodeError::io("rewinding the backup", e))?;
    let bar = bar(quiet, "restoring");
    let stats = state
        .restore(
            META_PREFIX,
            &mut Progress {
                inner: BufReader::new(file),
                bar: bar.clone(),
            },
        )
        .map_err(store_err(format!("restoring {}", input.display())))?;
    bar.finish_and_clear();
    let applied = meta_raft::seed_new_cluster(&*log, &*state, node_id, members.clone())
        .map_err(|e| NodeError::raft("seeding the new cluster", e))?;
    log.close().map_err(store_err("closing the store"))?;
    if log_dir != state_dir {
        state.close().map_err(store_err("closing the store"))?;
    }
    identity.start_cluster(cluster)?;
    identity.mark_held_data()?;
    Ok(Seeded {
        records: stats.records,
        cluster,
        applied_index: applied.last_applied.map_or(0, |l| l.index),
        revision: applied.revision,
    })
}

/// Feeds what is written into a digest.
struct DigestWriter<'a>(&'a mut Sha256);

impl Write for DigestWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes an online backup from `backup` to `out` (`0600`), then reads it
/// back through the snapshot reader, which checks every block's checksum
/// and the whole file's: a cut or damaged download is an error, and the
/// file is removed. Returns the bytes written and the file's SHA-256.
pub async fn save_online(
    mut backup: meta_client::Backup,
    out: &Path,
) -> Result<(u64, String), NodeError> {
    // Written beside `out` and renamed over it once verified: a failed or
    // interrupted download never costs the previous backup.
    let partial = crate::files::sibling(out, "partial");
    let file = crate::files::private_file(&partial)?;
    let mut writer = BufWriter::new(file);
    let mut digest = Sha256::new();
    let mut bytes = 0u64;
    let fail = |e: String| NodeError::io("downloading the backup", std::io::Error::other(e));
    let result: Result<(), NodeError> = async {
        while let Some(chunk) = backup.chunk().await.map_err(|e| fail(e.to_string()))? {
            digest.update(&chunk);
            bytes += chunk.len() as u64;
            writer
                .write_all(&chunk)
                .map_err(|e| NodeError::io(format!("writing {}", out.display()), e))?;
        }
        writer
            .flush()
            .map_err(|e| NodeError::io(format!("writing {}", out.display()), e))?;
        writer
            .get_ref()
            .sync_all()
            .map_err(|e| NodeError::io(format!("syncing {}", out.display()), e))?;
        verify_file(&partial, "--out")?;
        crate::files::rename_durably(&partial, out)
    }
    .await;
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    Ok((bytes, hex::encode(digest.finalize())))
}

/// Reads a snapshot file to its end through the checksumming reader
/// (`flag` names it in the error).
fn verify_file(path: &Path, flag: &str) -> Result<(), NodeError> {
    let file =
        File::open(path).map_err(|e| NodeError::io(format!("opening {}", path.display()), e))?;
    let damaged = |e: meta_store_api::snapshot::SnapshotError| {
        NodeError::config(
            flag,
            format!("{} is not a complete, intact snapshot: {e}", path.display()),
        )
    };
    let mut reader =
        meta_store_api::snapshot::SnapshotReader::new(BufReader::new(file)).map_err(damaged)?;
    while reader.next_record().map_err(damaged)?.is_some() {}
    Ok(())
}

/// Copies every record of `from` into `to`, through the portable snapshot
/// format: converts a store between engines. A target holding data is only
/// replaced with `force`.
pub fn migrate(
    from: &StoreSpec,
    to: &StoreSpec,
    force: bool,
    quiet: bool,
) -> Result<Migrated, NodeError> {
    if from.dir == to.dir {
        return Err(NodeError::config(
            "--to",
            "must be another directory than --from",
        ));
    }
    let source = open_existing(from, "--from")?;
    let target = open_target(to, "--to", force)?;
    let stream = source
        .snapshot(b"")
        .map_err(store_err("starting the snapshot"))?;
    let bar = bar(quiet, "migrating");
    let stats = target
        .restore(
            b"",
            &mut Progress {
                inner: stream,
                bar: bar.clone(),
            },
        )
        .map_err(store_err("restoring into the target"))?;
    bar.finish_and_clear();
    source.close().map_err(store_err("closing the source"))?;
    target.close().map_err(store_err("closing the target"))?;
    let recorded =
        crate::identity::record_migration((&from.dir, from.engine), (&to.dir, to.engine))?;
    Ok(Migrated {
        records: stats.records,
        identity: recorded,
    })
}

/// What [`migrate`] did.
#[derive(Debug)]
pub struct Migrated {
    /// Records copied.
    pub records: u64,
    /// The data directory's identity file, when the migration was one of a
    /// node's store in place and the file now names the new engine.
    pub identity: Option<std::path::PathBuf>,
}

/// A SHA-256 of the store's metadata (`/meta/`, data and applied state), in
/// the portable format: equal for equal content on every engine.
pub fn content_hash(store: &dyn MetadataStore) -> Result<String, NodeError> {
    let stream = store
        .snapshot(META_PREFIX)
        .map_err(store_err("starting the snapshot"))?;
    hash_stream(stream)
}

/// The SHA-256 of a snapshot stream of `/meta/`, hex: [`content_hash`]'s.
pub fn hash_stream(mut stream: impl Read) -> Result<String, NodeError> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = stream
            .read(&mut buf)
            .map_err(|e| NodeError::io("reading the snapshot", e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// [`content_hash`] of a stopped node's store.
pub fn verify(store: &StoreSpec) -> Result<String, NodeError> {
    let opened = open_existing(store, "--store")?;
    let hash = content_hash(&*opened)?;
    let metadata = opened
        .first(&meta_store_api::KeyRange::prefix(META_PREFIX))
        .map_err(store_err("reading the store"))?
        .is_some();
    opened.close().map_err(store_err("closing the store"))?;
    if !metadata {
        // A node on two engines: this is its Raft log's store.
        return Ok(format!(
            "{hash} (no metadata in this store: a Raft log store; verify the node's state store)"
        ));
    }
    Ok(hash)
}

#[cfg(all(test, feature = "lmdb", feature = "fjall"))]
mod tests {
    use super::*;
    use crate::engine::Engine;
    use meta_store_api::Durability;

    fn spec(engine: Engine, dir: &Path) -> StoreSpec {
        StoreSpec {
            engine,
            dir: dir.to_path_buf(),
        }
    }

    #[test]
    fn migrate_keeps_content_and_hash_and_backup_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let from = spec(Engine::Lmdb, &dir.path().join("a"));
        {
            let store = open(&from).unwrap();
            for i in 0..500 {
                store
                    .set(
                        format!("/meta/kv/{i:04}").as_bytes(),
                        b"v",
                        Durability::Buffered,
                    )
                    .unwrap();
            }
            store.set(b"/raft/vote", b"x", Durability::Durable).unwrap();
        }
        let to = spec(Engine::Fjall, &dir.path().join("b"));
        assert_eq!(migrate(&from, &to, false, true).unwrap().records, 501);
        assert_eq!(verify(&from).unwrap(), verify(&to).unwrap());
        // A second migration onto the now non-empty target needs --force.
        let err = migrate(&from, &to, false, true).unwrap_err().to_string();
        assert!(err.contains("--force"), "{err}");
        assert_eq!(migrate(&from, &to, true, true).unwrap().records, 501);
        let file = dir.path().join("backup.snap");
        snapshot_save(&to, &file, true).unwrap();
        let restored = spec(Engine::Lmdb, &dir.path().join("c"));
        assert_eq!(
            snapshot_restore(&restored, &file, false, true).unwrap(),
            501
        );
        assert_eq!(verify(&restored).unwrap(), verify(&from).unwrap());
        // A typo'd source is an error, not an empty store copied over data.
        let missing = spec(Engine::Lmdb, &dir.path().join("nope"));
        let err = migrate(&missing, &to, true, true).unwrap_err().to_string();
        assert!(err.contains("no lmdb store"), "{err}");
        // mem keeps nothing: refused.
        let mem = spec(Engine::Mem, &dir.path().join("m"));
        assert!(snapshot_restore(&mem, &file, true, true).is_err());
        // A prefix snapshot restored whole would erase the Raft log: refused.
        let prefix_file = dir.path().join("meta.snap");
        {
            let store = open(&from).unwrap();
            let mut bytes = Vec::new();
            store
                .snapshot(b"/meta/")
                .unwrap()
                .read_to_end(&mut bytes)
                .unwrap();
            std::fs::write(&prefix_file, bytes).unwrap();
        }
        let err = snapshot_restore(&restored, &prefix_file, true, true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not of a whole store"), "{err}");
        // A damaged backup is refused and says why.
        let mut bytes = std::fs::read(&file).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        let err = snapshot_restore(&from, &file, true, true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("checksum"), "{err}");
        assert!(migrate(&from, &from, true, true).is_err());
    }
}
