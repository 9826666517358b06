//! The storage contract's conformance suite, run against the LMDB engine.

use meta_store_api::conformance::DirHarness;
use meta_store_lmdb::{LmdbOptions, LmdbStore};

meta_store_api::conformance_tests!(DirHarness::new(|dir| {
    Ok(Box::new(LmdbStore::open(dir, &LmdbOptions::default())?))
}));
