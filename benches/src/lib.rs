//! Shared setup for the criterion benches: every engine behind the trait,
//! and the same engines driven with their own APIs ("raw") as baselines,
//! so each benchmark group shows the trait path next to the engine it wraps.

pub mod load;
pub mod procs;

use std::path::Path;

use fjall::{KeyspaceCreateOptions, PersistMode, Readable};
use heed::types::Bytes;
use heed::{CommitOrAbort, EnvOpenOptions, WithoutTls};
use meta_store_api::MetadataStore;
use meta_store_fjall::{FjallOptions, FjallStore};
use meta_store_lmdb::{LmdbOptions, LmdbStore};
use meta_store_mem::MemStore;

/// The runtime the benches drive nodes with: multi-threaded, 2 workers
/// (the machines these run on have 2 cores).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Cargo's target directory (`$CARGO_TARGET_DIR`, else the workspace's
/// `target/`).
pub fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        Into::into,
    )
}

/// An engine behind the trait, with the directory it lives in.
pub struct TraitStore {
    /// Engine name.
    pub name: &'static str,
    /// The store.
    pub store: Box<dyn MetadataStore>,
    _dir: tempfile::TempDir,
}

/// Opens `name` (`mem`, `lmdb`, `fjall`) in a fresh temporary directory.
pub fn open_trait(name: &'static str) -> TraitStore {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store: Box<dyn MetadataStore> = match name {
        "mem" => Box::new(MemStore::new()),
        "lmdb" => Box::new(LmdbStore::open(dir.path(), &LmdbOptions::default()).expect("lmdb")),
        "fjall" => Box::new(FjallStore::open(dir.path(), &FjallOptions::default()).expect("fjall")),
        other => panic!("unknown engine {other}"),
    };
    TraitStore {
        name,
        store,
        _dir: dir,
    }
}

/// The engines every bench runs.
pub const ENGINES: [&str; 3] = ["mem", "lmdb", "fjall"];

/// Plain heed, configured like `LmdbStore` (same map size, no TLS).
pub struct RawLmdb {
    /// The environment.
    pub env: heed::Env<WithoutTls>,
    /// The unnamed database.
    pub db: heed::Database<'static, Bytes, Bytes>,
    _dir: tempfile::TempDir,
}

impl RawLmdb {
    /// Opens a fresh environment.
    pub fn open() -> RawLmdb {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let env = open_env(dir.path());
        let wtxn = env.write_txn().expect("write txn");
        let db = env
            .create_databases_and_commit(wtxn, |opener, wtxn| {
                opener
                    .create_database::<Bytes, Bytes>(wtxn, None)
                    .map(CommitOrAbort::<_, ()>::Commit)
            })
            .expect("create db")
            .unwrap_commit();
        RawLmdb { env, db, _dir: dir }
    }

    /// Reads one key into an owned value, as the trait does.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let rtxn = self.env.read_txn().expect("read txn");
        self.db.get(&rtxn, key).expect("get").map(<[u8]>::to_vec)
    }

    /// Writes entries in one transaction (LMDB commits are durable).
    pub fn put_all(&self, entries: &[(Vec<u8>, Vec<u8>)]) {
        let mut wtxn = self.env.write_txn().expect("write txn");
        for (k, v) in entries {
            self.db.put(&mut wtxn, k, v).expect("put");
        }
        wtxn.commit().expect("commit");
    }

    /// Owned entries under `prefix`, in order.
    pub fn scan(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let rtxn = self.env.read_txn().expect("read txn");
        self.db
            .prefix_iter(&rtxn, prefix)
            .expect("prefix iter")
            .map(|kv| {
                let (k, v) = kv.expect("entry");
                (k.to_vec(), v.to_vec())
            })
            .collect()
    }
}

fn open_env(dir: &Path) -> heed::Env<WithoutTls> {
    let mut options = EnvOpenOptions::new().read_txn_without_tls();
    options
        .map_size(LmdbOptions::default().map_size)
        .max_readers(1024);
    // SAFETY: a fresh temporary directory that nothing else opens.
    #[allow(unsafe_code)]
    unsafe { options.open(dir) }.expect("open env")
}

/// Plain fjall, configured like `FjallStore`.
pub struct RawFjall {
    /// The database.
    pub db: fjall::Database,
    /// The keyspace.
    pub ks: fjall::Keyspace,
    _dir: tempfile::TempDir,
}

impl RawFjall {
    /// Opens a fresh database.
    pub fn open() -> RawFjall {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let options = FjallOptions::default();
        let db = fjall::Database::builder(dir.path())
            .cache_size(options.cache_size)
            .worker_threads(options.worker_threads)
            .open()
            .expect("open fjall");
        let ks = db
            .keyspace("data", KeyspaceCreateOptions::default)
            .expect("keyspace");
        RawFjall { db, ks, _dir: dir }
    }

    /// Reads one key into an owned value (a plain keyspace read).
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.ks.get(key).expect("get").map(|v| v.to_vec())
    }

    /// Writes entries in one batch, fsync'd when `durable`.
    pub fn put_all(&self, entries: &[(Vec<u8>, Vec<u8>)], durable: bool) {
        let mut batch = self.db.batch();
        for (k, v) in entries {
            batch.insert(&self.ks, k.as_slice(), v.as_slice());
        }
        let mode = if durable {
            PersistMode::SyncAll
        } else {
            PersistMode::Buffer
        };
        batch.durability(Some(mode)).commit().expect("commit");
    }

    /// Owned entries under `prefix`, in order, from a snapshot.
    pub fn scan(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.db
            .snapshot()
            .prefix(&self.ks, prefix)
            .map(|g| {
                let (k, v) = g.into_inner().expect("entry");
                (k.to_vec(), v.to_vec())
            })
            .collect()
    }
}

/// `n` entries `prefix` + 8-digit index, with `value_len`-byte values.
pub fn entries(prefix: &str, n: usize, value_len: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..n)
        .map(|i| {
            (
                format!("{prefix}{i:08}").into_bytes(),
                vec![(i % 251) as u8; value_len],
            )
        })
        .collect()
}
