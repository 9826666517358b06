//! The storage contract's conformance suite, run against the fjall engine.

use meta_store_api::conformance::DirHarness;
use meta_store_fjall::{FjallOptions, FjallStore};

meta_store_api::conformance_tests!(DirHarness::new(|dir| {
    Ok(Box::new(FjallStore::open(dir, &FjallOptions::default())?))
}));
