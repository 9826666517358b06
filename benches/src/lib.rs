//! Shared setup for the criterion benches: every engine behind the trait
//! (the node's list, [`Engine::ALL`], opened as a node opens it), and the
//! disk engines driven with their own APIs ([`RawEngine`]) as baselines, so
//! each benchmark group shows the trait path next to the engine it wraps.

pub mod load;
pub mod procs;

use std::path::Path;
use std::sync::Arc;

use fjall::{KeyspaceCreateOptions, PersistMode, Readable};
use heed::types::Bytes;
use heed::{CommitOrAbort, EnvOpenOptions, WithoutTls};
pub use meta_node::Engine;
use meta_node::config::EngineOptions;
use meta_node::engine::FJALL_MAX_CACHED_FILES;
use meta_store_api::MetadataStore;
use meta_store_fjall::FjallOptions;
use meta_store_lmdb::LmdbOptions;
use meta_testkit::OpenForTests;
pub use meta_testkit::runtime;

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
    /// The engine.
    pub engine: Engine,
    /// The store.
    pub store: Arc<dyn MetadataStore>,
    _dir: tempfile::TempDir,
}

/// Opens `engine` in a fresh temporary directory, configured as a node
/// configures it.
pub fn open_trait(engine: Engine) -> TraitStore {
    let dir = tempfile::tempdir().expect("a temporary directory");
    TraitStore {
        engine,
        store: engine.store(dir.path()),
        _dir: dir,
    }
}

/// A disk engine driven by its own API, configured as the node configures
/// it behind the trait: the baseline of each store bench (redb's bench
/// crate compares databases the same way). Called through `dyn`, as the
/// trait path is.
pub trait RawEngine {
    /// Reads one key into an owned value, as the trait does.
    fn get(&self, key: &[u8]) -> Option<Vec<u8>>;

    /// Writes entries in one transaction or batch, on disk before it
    /// returns when `durable` (an LMDB commit always is).
    fn put_all(&self, entries: &[(Vec<u8>, Vec<u8>)], durable: bool);

    /// Owned entries under `prefix`, in order.
    fn scan(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)>;
}

/// Opens a fresh raw engine in a temporary directory.
pub type OpenRaw = fn() -> Box<dyn RawEngine>;

/// The raw baselines: the engine each wraps, and how to open one.
pub const RAW_ENGINES: [(Engine, OpenRaw); 2] = [
    (Engine::Lmdb, || Box::new(RawLmdb::open())),
    (Engine::Fjall, || Box::new(RawFjall::open())),
];

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
}

impl RawEngine for RawLmdb {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let rtxn = self.env.read_txn().expect("read txn");
        self.db.get(&rtxn, key).expect("get").map(<[u8]>::to_vec)
    }

    fn put_all(&self, entries: &[(Vec<u8>, Vec<u8>)], _durable: bool) {
        let mut wtxn = self.env.write_txn().expect("write txn");
        for (k, v) in entries {
            self.db.put(&mut wtxn, k, v).expect("put");
        }
        wtxn.commit().expect("commit");
    }

    fn scan(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
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
        .map_size((EngineOptions::default().lmdb_map_size_mib as usize) << 20)
        .max_readers(LmdbOptions::default().max_readers);
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
            .cache_size(EngineOptions::default().fjall_cache_size_mib << 20)
            .worker_threads(options.worker_threads)
            .max_cached_files(Some(FJALL_MAX_CACHED_FILES))
            .open()
            .expect("open fjall");
        let ks = db
            .keyspace("data", KeyspaceCreateOptions::default)
            .expect("keyspace");
        RawFjall { db, ks, _dir: dir }
    }
}

impl RawEngine for RawFjall {
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.ks.get(key).expect("get").map(|v| v.to_vec())
    }

    fn put_all(&self, entries: &[(Vec<u8>, Vec<u8>)], durable: bool) {
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

    fn scan(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
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
