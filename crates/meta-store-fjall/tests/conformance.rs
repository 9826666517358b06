//! The storage contract's conformance suite, run against the fjall engine.

use meta_store_api::conformance::Harness;
use meta_store_api::{MetadataStore, Result};
use meta_store_fjall::{FjallOptions, FjallStore};
use tempfile::TempDir;

struct FjallHarness(TempDir);

impl Harness for FjallHarness {
    fn open(&mut self) -> Result<Box<dyn MetadataStore>> {
        Ok(Box::new(FjallStore::open(
            self.0.path(),
            &FjallOptions::default(),
        )?))
    }

    fn persistent(&self) -> bool {
        true
    }
}

meta_store_api::conformance_tests!(FjallHarness(tempfile::tempdir().expect("a temp dir")));
