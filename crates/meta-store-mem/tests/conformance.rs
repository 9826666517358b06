//! The storage contract's conformance suite, run against the mem engine.

use meta_store_api::conformance::Harness;
use meta_store_api::{MetadataStore, Result};
use meta_store_mem::MemStore;

/// Each `open` is a new, empty store: the mem engine keeps nothing.
struct MemHarness;

impl Harness for MemHarness {
    fn open(&mut self) -> Result<Box<dyn MetadataStore>> {
        Ok(Box::new(MemStore::new()))
    }

    fn persistent(&self) -> bool {
        false
    }
}

meta_store_api::conformance_tests!(MemHarness);
