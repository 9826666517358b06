//! The LMDB engine's integration tests, as one test binary: the whole
//! conformance suite, and what only LMDB has (checksums, damaged files,
//! a full map).

// Tests fail by panicking.
#![allow(clippy::unwrap_used)]

mod checksums;
mod conformance;
mod damaged_files;
mod lmdb_limits;
