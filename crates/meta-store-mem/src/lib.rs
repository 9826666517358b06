//! The in-memory engine, and the reference implementation of
//! [`MetadataStore`]: the smallest correct engine, for tests, development
//! and ephemeral nodes.
//!
//! Data lives in a persistent ordered map ([`imbl::OrdMap`]): cloning it is
//! O(1), so every scan and snapshot reads its own frozen copy while writers
//! carry on — snapshot isolation for free. Nothing survives the process:
//! `Durability` only orders visibility here.
//!
//! ```
//! use meta_store_api::{Durability, MetadataStore};
//! use meta_store_mem::MemStore;
//!
//! let store = MemStore::new();
//! store.set(b"/meta/kv/a", b"1", Durability::Durable)?;
//! assert_eq!(store.get(b"/meta/kv/a")?, Some(b"1".to_vec()));
//! # Ok::<(), meta_store_api::Error>(())
//! ```
//!
//! # Adding an engine
//!
//! Copy this crate, rename `MemStore` after your engine and replace the map
//! with your engine's handles. Keep the shape of each method:
//!
//! 1. return [`Error::Closed`] after `close`;
//! 2. validate first (`check_key`, `WriteBatch::validate`) so nothing is
//!    half-applied;
//! 3. read from one point-in-time view per call;
//! 4. snapshot through [`spawn_snapshot`] and restore through
//!    [`restore_records`] into staging that becomes visible in one step.
//!
//! Then run the conformance suite from your crate's tests (see
//! `tests/conformance.rs` here): one macro call, and every sentence of the
//! contract is checked.

use std::io::Read;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use imbl::OrdMap;
use meta_store_api::snapshot::{SnapshotOptions, SnapshotStream, restore_records, spawn_snapshot};
use meta_store_api::{
    BatchOp, Direction, Durability, Error, KeyRange, KeyValue, MetadataStore, RestoreStats, Result,
    WriteBatch, limits,
};

type Map = OrdMap<Arc<[u8]>, Arc<[u8]>>;

const ENGINE: &str = "mem";

/// The in-memory engine. See the [crate docs](crate).
#[derive(Default)]
pub struct MemStore {
    /// The current map; readers clone it (O(1)) and read the clone.
    map: RwLock<Map>,
    /// Serializes writers, including a whole `restore`.
    writer: Mutex<()>,
    closed: AtomicBool,
}

impl MemStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// The current map, frozen.
    fn view(&self) -> Map {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn lock_writer(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl MetadataStore for MemStore {
    fn engine(&self) -> &'static str {
        ENGINE
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_open()?;
        limits::check_key(key)?;
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        Ok(map.get(key).map(|v| v.to_vec()))
    }

    fn batch(&self, batch: &WriteBatch, _durability: Durability) -> Result<()> {
        self.check_open()?;
        batch.validate()?;
        let _writer = self.lock_writer();
        self.check_open()?;
        // Validation passed and map updates cannot fail, so applying in
        // place under the write lock is atomic for every reader.
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        for op in batch.ops() {
            match op {
                BatchOp::Put { key, value } => {
                    map.insert(Arc::from(key.as_slice()), Arc::from(value.as_slice()));
                }
                BatchOp::Delete { key } => {
                    map.remove(key.as_slice());
                }
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.check_open()
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
        let view = self.view();
        let limit = limit.unwrap_or(usize::MAX);
        let iter = view.range::<(Bound<&[u8]>, Bound<&[u8]>), [u8]>(range.as_slices());
        let pair = |(k, v): (&Arc<[u8]>, &Arc<[u8]>)| (k.to_vec(), v.to_vec());
        Ok(match direction {
            Direction::Forward => iter.take(limit).map(pair).collect(),
            Direction::Reverse => iter.rev().take(limit).map(pair).collect(),
        })
    }

    fn snapshot_with(&self, prefix: &[u8], options: &SnapshotOptions) -> Result<SnapshotStream> {
        self.check_open()?;
        let view = self.view();
        let range = KeyRange::prefix(prefix);
        spawn_snapshot(prefix, options, move |sink| {
            sink.view_opened();
            for (key, value) in view.range::<(Bound<&[u8]>, Bound<&[u8]>), [u8]>(range.as_slices())
            {
                sink.push(key, value)?;
            }
            Ok(())
        })
    }

    fn restore(&self, prefix: &[u8], reader: &mut dyn Read) -> Result<RestoreStats> {
        self.check_open()?;
        let _writer = self.lock_writer();
        self.check_open()?;
        // Build the new map on the side; publish it in one swap.
        let mut staged = self.view();
        let old: Vec<Arc<[u8]>> = staged
            .range::<(Bound<&[u8]>, Bound<&[u8]>), [u8]>(KeyRange::prefix(prefix).as_slices())
            .map(|(k, _)| k.clone())
            .collect();
        for key in old {
            staged.remove(&key);
        }
        let stats = restore_records(prefix, reader, |key, value| {
            staged.insert(Arc::from(key), Arc::from(value));
            Ok(())
        })?;
        *self.map.write().unwrap_or_else(PoisonError::into_inner) = staged;
        Ok(stats)
    }

    fn close(&self) -> Result<()> {
        // Under the writer lock, so a write in flight finishes first.
        let _writer = self.lock_writer();
        self.closed.store(true, Ordering::Release);
        Ok(())
    }
}
