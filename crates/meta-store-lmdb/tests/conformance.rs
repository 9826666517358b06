//! The storage contract's conformance suite, run against the LMDB engine.

use meta_store_api::conformance::Harness;
use meta_store_api::{MetadataStore, Result};
use meta_store_lmdb::{LmdbOptions, LmdbStore};
use tempfile::TempDir;

struct LmdbHarness(TempDir);

impl Harness for LmdbHarness {
    fn open(&mut self) -> Result<Box<dyn MetadataStore>> {
        Ok(Box::new(LmdbStore::open(
            self.0.path(),
            &LmdbOptions::default(),
        )?))
    }

    fn persistent(&self) -> bool {
        true
    }
}

meta_store_api::conformance_tests!(LmdbHarness(tempfile::tempdir().expect("a temp dir")));
