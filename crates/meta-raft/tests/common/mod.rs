//! Shared test setup: opening each engine as the store of a Raft node.

// Test support: a poisoned lock is a failed test.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod cluster;

use std::path::Path;
use std::sync::Arc;

use meta_store_api::MetadataStore;
use meta_store_fjall::{FjallOptions, FjallStore};
use meta_store_lmdb::{LmdbOptions, LmdbStore};
use meta_store_mem::MemStore;

/// The engines under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Mem,
    Lmdb,
    Fjall,
}

impl Engine {
    pub const ALL: [Engine; 3] = [Engine::Mem, Engine::Lmdb, Engine::Fjall];

    /// Opens the engine in `dir` (ignored by mem).
    pub fn try_open(self, dir: &Path) -> meta_store_api::Result<Arc<dyn MetadataStore>> {
        Ok(match self {
            Engine::Mem => Arc::new(MemStore::new()),
            Engine::Lmdb => Arc::new(LmdbStore::open(dir, &LmdbOptions::default())?),
            Engine::Fjall => Arc::new(FjallStore::open(dir, &FjallOptions::default())?),
        })
    }

    /// [`try_open`](Self::try_open), for tests.
    pub fn open(self, dir: &Path) -> Arc<dyn MetadataStore> {
        self.try_open(dir)
            .unwrap_or_else(|e| panic!("opening {self:?}: {e}"))
    }
}
