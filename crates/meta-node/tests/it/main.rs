//! meta-node's integration tests, as one test binary (one link instead of
//! one per file): real node processes (`meta_testkit::procs`), in-process
//! nodes, the CLI, the offline tools. A campaign runs alone with a filter:
//! `cargo test -p meta-node --test it crash::`.

// Tests fail by panicking.
#![allow(clippy::unwrap_used)]

/// What the tests share: the test kit's process harness and helpers.
mod common {
    pub(crate) use meta_testkit::procs::*;
    pub(crate) use meta_testkit::{
        Rng, env_u64, free_addr, free_port, runtime, seed_from_env, wait_until,
    };
}

mod bad_input;
mod budgets;
mod crash;
mod damaged_data;
mod dashboard;
mod data_api;
mod degraded;
mod docs_examples;
mod full_disk;
mod fuzz_regressions;
mod hostile;
mod linearizable_processes;
mod membership;
mod operability;
mod processes;
mod security;
mod space_alarm;
mod tampered_snapshots;
mod watch_leases;
