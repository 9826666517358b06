//! Every storage backend of the workspace, as conformance harnesses.

use meta_store_api::conformance::{DirHarness, Harness, VolatileHarness};
use meta_store_fjall::{FjallOptions, FjallStore};
use meta_store_lmdb::{LmdbOptions, LmdbStore};
use meta_store_mem::MemStore;

/// A backend's name and how to make a fresh harness for it.
pub type Backend = (&'static str, fn() -> Box<dyn Harness>);

fn mem() -> Box<dyn Harness> {
    Box::new(VolatileHarness(|| Box::new(MemStore::new())))
}

fn lmdb() -> Box<dyn Harness> {
    Box::new(DirHarness::new(|dir| {
        Ok(Box::new(LmdbStore::open(dir, &LmdbOptions::default())?))
    }))
}

fn fjall() -> Box<dyn Harness> {
    Box::new(DirHarness::new(|dir| {
        Ok(Box::new(FjallStore::open(dir, &FjallOptions::default())?))
    }))
}

/// Every backend, in the order reports list them.
pub const BACKENDS: [Backend; 3] = [("mem", mem), ("lmdb", lmdb), ("fjall", fjall)];
