//! The storage layer's contract: every byte of the metadata store — the Raft
//! log, the vote, the applied state, the metadata itself and its snapshots —
//! goes through the [`MetadataStore`] trait defined here, and interchangeable
//! embedded engines implement it (`meta-store-mem`, `meta-store-lmdb`,
//! `meta-store-fjall`).
//!
//! What this crate holds:
//!
//! - [`MetadataStore`]: an ordered, transactional byte map with atomic
//!   batches, per-write [`Durability`], consistent forward and reverse range
//!   scans, streaming snapshots and atomic restore. Its doc comment is the
//!   contract.
//! - [`Error`]: the one error type, the same for every engine.
//! - [`limits`]: the key and value limits every engine enforces identically.
//! - [`keys`]: the key-space (`/meta/...`, `/raft/...`), the only place that
//!   spells a prefix.
//! - [`snapshot`]: the portable snapshot format, so a snapshot of any engine
//!   restores into any other.
//! - `conformance` (feature `conformance`): the suite every engine runs in
//!   its own tests with one macro call, the executable form of the contract.
//!
//! **Architecture invariant:** this crate depends on no engine and knows no
//! engine's name; engines depend on it and on nothing else of the project.
//!
//! A taste, with the reference engine (`meta-store-mem`):
//!
//! ```
//! use meta_store_api::{Durability, MetadataStore, WriteBatch};
//!
//! let store = meta_store_mem::MemStore::new();
//! store.set(b"/meta/kv/a", b"1", Durability::Durable)?;
//! let mut batch = WriteBatch::new();
//! batch.put(b"/meta/kv/b".to_vec(), b"2".to_vec()).delete(b"/meta/kv/a".to_vec());
//! store.batch(&batch, Durability::Buffered)?;
//! assert_eq!(store.scan(b"/meta/kv/")?, vec![(b"/meta/kv/b".to_vec(), b"2".to_vec())]);
//! # Ok::<(), meta_store_api::Error>(())
//! ```

mod dir_lock;
pub mod disk;
mod error;
pub mod keys;
pub mod limits;
pub mod snapshot;
mod store;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use dir_lock::{DirLock, LOCK_FILE};
pub use error::{Error, KeyPreview, Result};
pub use limits::{MAX_KEY_LEN, MAX_VALUE_LEN};
pub use store::{
    BatchOp, Direction, Durability, KeyRange, KeyValue, MetadataStore, RestoreStats, WriteBatch,
    prefix_successor,
};
