//! meta-raft's integration tests, as one test binary (one link instead of
//! one per file). The failpoint campaign is a binary of its own
//! (`tests/failpoints.rs`): failpoints are global to a process and would
//! fire in the tests running beside it.

// Tests fail by panicking.
#![allow(clippy::unwrap_used)]

mod cluster;
mod corruption;
mod leases_and_history;
mod linearizability;
mod openraft_suite;
mod reopen;
mod revisions;
mod state_machine;
