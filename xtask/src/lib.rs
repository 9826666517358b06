//! Project chores, in plain Rust (the rust-analyzer `xtask` pattern): run
//! them with `cargo xtask <command>`.
//!
//! - `cargo xtask conformance`: the storage conformance suite and the
//!   cross-engine snapshot matrix against every backend, as one table.
//! - `cargo xtask bench [--full]`: the serial fsync rate and the criterion
//!   benches, written into `docs/benchmarks.md` and `docs/charts/*.svg`.
//! - `cargo xtask crash [--kills N] [--seed S]`: the SIGKILL crash campaign
//!   at soak size.
//! - `cargo xtask fuzz [--seconds N] [TARGET ...]`: the cargo-fuzz targets.
//! - `cargo xtask soak [--minutes N]`: crash and linearizability campaigns
//!   at soak size for a time budget.
//!
//! The tidy checks (layer rule, module headers) live in `tests/tidy.rs` and
//! run with the test suite.

pub mod backends;
pub mod bench;
pub mod conformance;
pub mod crash;
pub mod fuzz;
pub mod soak;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The workspace root.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// `cargo test --release -p <package> --test <test> -- --nocapture
/// --test-threads 1`, from the workspace root.
pub fn release_test(package: &str, test: &str) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(project_root())
        .args(["test", "--release", "-p", package, "--test", test])
        .args(["--", "--nocapture", "--test-threads", "1"]);
    cmd
}
