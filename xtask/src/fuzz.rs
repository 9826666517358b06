//! `cargo xtask fuzz [--seconds N] [TARGET ...]`: runs each cargo-fuzz
//! target of `fuzz/` for N seconds (default 60; all four targets unless
//! named), installing `cargo-fuzz` first if it is missing. libFuzzer needs
//! the nightly toolchain (`cargo +nightly fuzz`). A crash leaves its input
//! in `fuzz/artifacts/<target>/`; copy it to `fuzz/regressions/<target>/`
//! (replayed by `crates/meta-node/tests/it/fuzz_regressions.rs`) and fix it.

use std::process::Command;

use crate::project_root;

/// The fuzz targets (`fuzz/fuzz_targets/<name>.rs`).
pub const TARGETS: [&str; 4] = [
    "snapshot_reader",
    "command_decoder",
    "log_entry",
    "peer_frame",
];

/// Options of a fuzz run.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct FuzzOptions {
    /// Seconds per target.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub seconds: u64,
    /// Targets to run (default: all).
    #[arg(value_parser = TARGETS)]
    pub targets: Vec<String>,
}

impl FuzzOptions {
    /// The targets to run: those named, or all of them.
    pub fn targets(&self) -> Vec<String> {
        if self.targets.is_empty() {
            TARGETS.iter().map(|t| t.to_string()).collect()
        } else {
            self.targets.clone()
        }
    }
}

fn cargo() -> Command {
    crate::cargo()
}

/// Runs the targets; returns the ones that found a crash.
pub fn run(options: &FuzzOptions) -> std::io::Result<Vec<String>> {
    let root = project_root();
    let installed = Command::new("cargo")
        .args(["+nightly", "fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        eprintln!("installing cargo-fuzz");
        let status = cargo()
            .args(["install", "cargo-fuzz", "--locked"])
            .status()?;
        if !status.success() {
            return Err(std::io::Error::other("cargo install cargo-fuzz failed"));
        }
    }
    let mut crashed = Vec::new();
    for target in &options.targets() {
        eprintln!("fuzzing {target} for {} s", options.seconds);
        // `cargo +nightly` needs rustup's proxy, not this cargo binary.
        let status = Command::new("cargo")
            .current_dir(&root)
            .args(["+nightly", "fuzz", "run", target, "--"])
            .arg(format!("-max_total_time={}", options.seconds))
            .status()?;
        if !status.success() {
            eprintln!(
                "{target}: crash; its input is in fuzz/artifacts/{target}/ — copy it to fuzz/regressions/{target}/"
            );
            crashed.push(target.clone());
        }
    }
    Ok(crashed)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::{Task, Xtask};

    fn parse(args: &[&str]) -> Result<FuzzOptions, String> {
        let argv = ["cargo xtask", "fuzz"].iter().chain(args);
        match Xtask::try_parse_from(argv).map_err(|e| e.to_string())?.task {
            Task::Fuzz(options) => Ok(options),
            other => Err(format!("parsed as {other:?}")),
        }
    }

    #[test]
    fn targets_and_seconds_parse_and_mistakes_are_named() {
        let all = parse(&[]).unwrap();
        assert_eq!((all.seconds, all.targets().len()), (60, 4));
        let one = parse(&["--seconds", "5", "log_entry"]).unwrap();
        assert_eq!(
            (one.seconds, one.targets()),
            (5, vec!["log_entry".to_string()])
        );
        assert!(
            parse(&["nope"])
                .unwrap_err()
                .contains("invalid value 'nope'")
        );
        assert!(
            parse(&["--seconds", "0"])
                .unwrap_err()
                .contains("0 is not in 1..")
        );
        assert!(
            parse(&["--seconds"])
                .unwrap_err()
                .contains("a value is required")
        );
    }

    #[test]
    fn every_target_has_a_source_and_a_regression_dir() {
        let root = project_root();
        for t in TARGETS {
            assert!(
                root.join(format!("fuzz/fuzz_targets/{t}.rs")).is_file(),
                "{t}"
            );
            assert!(root.join(format!("fuzz/regressions/{t}")).is_dir(), "{t}");
        }
    }
}
