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
//! - `cargo xtask ui-test`: the dashboard's browser test (needs Chromium
//!   and ChromeDriver; fails, saying so, without them).
//!
//! The tidy checks (layer rule, module headers) live in `tests/it/tidy.rs` and
//! run with the test suite.

pub mod backends;
pub mod bench;
pub mod conformance;
pub mod crash;
pub mod fuzz;
pub mod soak;
pub mod ui_test;
pub mod vs_etcd;

use std::path::{Path, PathBuf};
use std::process::Command;

/// `cargo xtask`'s command line.
#[derive(clap::Parser, Debug)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Project chores"
)]
pub struct Xtask {
    /// The chore.
    #[command(subcommand)]
    pub task: Task,
}

/// The chores.
#[derive(clap::Subcommand, Debug)]
pub enum Task {
    /// Run the storage conformance suite against every backend.
    Conformance,
    /// Measure fsync, run the benches, update docs/benchmarks.md.
    Bench {
        /// Full criterion runs (quick ones otherwise), then the etcd
        /// comparison when etcd is on PATH.
        #[arg(long)]
        full: bool,
        /// Only the side-by-side comparison with this system (needs it
        /// and `protoc` on PATH).
        #[arg(long, value_enum)]
        vs: Option<Versus>,
        /// Seconds per row of the comparison.
        #[arg(long, default_value_t = 2.0)]
        seconds: f64,
    },
    /// SIGKILL crash campaign at soak size, on a release build.
    Crash(crash::CrashOptions),
    /// Run the cargo-fuzz targets.
    Fuzz(fuzz::FuzzOptions),
    /// Crash and linearizability campaigns for a time budget.
    Soak {
        /// Minutes to run.
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
        minutes: u64,
    },
    /// The dashboard's browser test, in headless Chromium.
    UiTest,
}

/// Systems `cargo xtask bench --vs` compares with.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Versus {
    /// etcd (`apt-get install etcd-server`), single node and 3 nodes.
    Etcd,
}

/// The workspace root.
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// `cargo`, as the one that runs xtask, for a command xtask starts, without
/// what `cargo run` set for xtask itself (`CARGO_PKG_*`, `CARGO_MANIFEST_*`, …):
/// a build script that watches one (ring's does) would otherwise see it change and
/// rebuild everything above it, back and forth with plain `cargo test`.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    let set_for_xtask = [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_CRATE_",
        "CARGO_BIN_",
        "CARGO_PRIMARY_PACKAGE",
    ];
    for (var, _) in std::env::vars_os() {
        if var
            .to_str()
            .is_some_and(|v| set_for_xtask.iter().any(|p| v.starts_with(p)))
        {
            cmd.env_remove(var);
        }
    }
    cmd
}

/// `cargo test --release -p <package> --test it <module>:: -- --nocapture
/// --test-threads 1`, from the workspace root: one module of a crate's
/// integration tests (each crate has one test binary, `it`).
pub fn release_test(package: &str, module: &str) -> Command {
    let mut cmd = cargo();
    cmd.current_dir(project_root())
        .args(["test", "--release", "-p", package, "--test", "it"])
        .arg(format!("{module}::"))
        .args(["--", "--nocapture", "--test-threads", "1"]);
    cmd
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory as _, Parser as _};

    use super::Xtask;

    #[test]
    fn every_command_has_a_working_help() {
        Xtask::command().debug_assert();
        for command in Xtask::command().get_subcommands() {
            let name = command.get_name();
            let help = Xtask::try_parse_from(["cargo xtask", name, "--help"]).unwrap_err();
            assert_eq!(
                help.kind(),
                clap::error::ErrorKind::DisplayHelp,
                "{name}: {help}"
            );
        }
    }
}
