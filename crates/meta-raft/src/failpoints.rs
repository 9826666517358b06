//! Failpoints (feature `failpoints`): named places in the storage path
//! where a test can inject a panic (`fail::cfg(name, "1*panic")`) or a
//! failed write (`fail::cfg(name, "1*return")`: the storage call returns
//! the error of [`injected`], as a full disk would make it), and a count
//! of how often each was reached, so a test can prove it fired.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Every failpoint, in the order a write meets them. `….synced` is a
/// snapshot build's sync of the state store (its error a store failure);
/// `….streamed` is the middle of a snapshot build (the data written and
/// synced, the snapshot not yet recorded); `….restored` the middle of an install (the store
/// restored, the views and the snapshot record not yet updated).
pub const ALL: [&str; 19] = [
    "log.vote.before",
    "log.vote.after",
    "log.append.before",
    "log.append.after",
    "log.truncate.before",
    "log.truncate.after",
    "log.purge.before",
    "log.purge.after",
    "sm.apply.before",
    "sm.apply.after",
    "sm.membership.before",
    "sm.membership.after",
    "sm.snapshot.build.before",
    "sm.snapshot.build.synced",
    "sm.snapshot.build.streamed",
    "sm.snapshot.build.after",
    "sm.snapshot.install.before",
    "sm.snapshot.install.restored",
    "sm.snapshot.install.after",
];

/// The error a `return`-configured failpoint makes its storage call fail
/// with: an I/O error naming the failpoint.
pub fn injected(name: &'static str) -> openraft::StorageError<u64> {
    crate::codec::storage_error(
        openraft::ErrorSubject::Store,
        openraft::ErrorVerb::Write,
        &std::io::Error::other(format!("write error injected at failpoint {name}")),
    )
}

static HITS: Mutex<BTreeMap<&'static str, u64>> = Mutex::new(BTreeMap::new());

/// Counts a pass through `name`.
pub fn hit(name: &'static str) {
    *HITS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(name)
        .or_default() += 1;
}

/// How often `name` was reached in this process.
pub fn hits(name: &str) -> u64 {
    HITS.lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(name)
        .copied()
        .unwrap_or(0)
}
