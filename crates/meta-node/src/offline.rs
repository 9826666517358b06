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
    spec.engine.open(&spec.dir, &EngineOptions::default())
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
    let source = open(store)?;
    let stream = source
        .snapshot(b"")
        .map_err(store_err("starting the snapshot"))?;
    let file =
        File::create(out).map_err(|e| NodeError::io(format!("creating {}", out.display()), e))?;
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

/// Replaces the whole content of `store` with the snapshot in `input`
/// (atomically: a bad file leaves the store as it was).
pub fn snapshot_restore(store: &StoreSpec, input: &Path, quiet: bool) -> Result<u64, NodeError> {
    let target = open(store)?;
    let file =
        File::open(input).map_err(|e| NodeError::io(format!("opening {}", input.display()), e))?;
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

/// Copies every record of `from` into `to` (which is replaced), through the
/// portable snapshot format: converts a store between engines.
pub fn migrate(from: &StoreSpec, to: &StoreSpec, quiet: bool) -> Result<u64, NodeError> {
    if from.dir == to.dir {
        return Err(NodeError::config(
            "--to",
            "must be another directory than --from",
        ));
    }
    let source = open(from)?;
    let target = open(to)?;
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
    Ok(stats.records)
}

/// A SHA-256 of the store's metadata (`/meta/`, data and applied state), in
/// the portable format: equal for equal content on every engine.
pub fn content_hash(store: &dyn MetadataStore) -> Result<String, NodeError> {
    let mut stream = store
        .snapshot(META_PREFIX)
        .map_err(store_err("starting the snapshot"))?;
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
    let opened = open(store)?;
    let hash = content_hash(&*opened)?;
    opened.close().map_err(store_err("closing the store"))?;
    Ok(hash)
}

#[cfg(all(test, feature = "lmdb", feature = "fjall"))]
mod tests {
    use super::*;
    use crate::engine::Engine;
    use meta_store_api::Durability;

    #[test]
    fn migrate_keeps_content_and_hash_and_backup_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let from = StoreSpec {
            engine: Engine::Lmdb,
            dir: dir.path().join("a"),
        };
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
        let to = StoreSpec {
            engine: Engine::Fjall,
            dir: dir.path().join("b"),
        };
        assert_eq!(migrate(&from, &to, true).unwrap(), 501);
        assert_eq!(verify(&from).unwrap(), verify(&to).unwrap());
        let file = dir.path().join("backup.snap");
        snapshot_save(&to, &file, true).unwrap();
        let restored = StoreSpec {
            engine: Engine::Mem,
            dir: dir.path().join("c"),
        };
        assert_eq!(snapshot_restore(&restored, &file, true).unwrap(), 501);
        // A damaged backup is refused and says why.
        let mut bytes = std::fs::read(&file).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&file, &bytes).unwrap();
        let err = snapshot_restore(&from, &file, true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("checksum"), "{err}");
        assert!(migrate(&from, &from, true).is_err());
    }
}
