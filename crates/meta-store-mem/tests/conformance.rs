//! The storage contract's conformance suite, run against the mem engine.

use meta_store_api::conformance::VolatileHarness;
use meta_store_mem::MemStore;

meta_store_api::conformance_tests!(VolatileHarness(|| Box::new(MemStore::new())));
