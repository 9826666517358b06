//! `cargo xtask fuzz [--seconds N] [TARGET ...]`: runs each cargo-fuzz
//! target of `fuzz/` for N seconds (default 60; all four targets unless
//! named), installing `cargo-fuzz` first if it is missing. libFuzzer needs
//! the nightly toolchain (`cargo +nightly fuzz`). A crash leaves its input
//! in `fuzz/artifacts/<target>/`; copy it to `fuzz/regressions/<target>/`
//! (replayed by `crates/meta-node/tests/fuzz_regressions.rs`) and fix it.

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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FuzzOptions {
    /// Seconds per target.
    pub seconds: u64,
    /// Targets to run.
    pub targets: Vec<String>,
}

impl FuzzOptions {
    /// Parses `--seconds N` and target names.
    pub fn parse(args: &[String]) -> Result<FuzzOptions, String> {
        let mut options = FuzzOptions {
            seconds: 60,
            targets: Vec::new(),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            if arg == "--seconds" {
                let value = args.next().ok_or("--seconds needs a value")?;
                options.seconds =
                    value.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
                        format!("--seconds takes a positive number, got `{value}`")
                    })?;
            } else if TARGETS.contains(&arg.as_str()) {
                options.targets.push(arg.clone());
            } else {
                return Err(format!(
                    "unknown fuzz target `{arg}` (targets: {})",
                    TARGETS.join(", ")
                ));
            }
        }
        if options.targets.is_empty() {
            options.targets = TARGETS.iter().map(|t| t.to_string()).collect();
        }
        Ok(options)
    }
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
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
    for target in &options.targets {
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
    use super::*;

    fn parse(args: &[&str]) -> Result<FuzzOptions, String> {
        FuzzOptions::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn targets_and_seconds_parse_and_mistakes_are_named() {
        let all = parse(&[]).unwrap();
        assert_eq!((all.seconds, all.targets.len()), (60, 4));
        let one = parse(&["--seconds", "5", "log_entry"]).unwrap();
        assert_eq!(
            (one.seconds, one.targets),
            (5, vec!["log_entry".to_string()])
        );
        assert!(
            parse(&["nope"])
                .unwrap_err()
                .contains("unknown fuzz target `nope`")
        );
        assert!(parse(&["--seconds", "0"]).unwrap_err().contains("positive"));
        assert_eq!(
            parse(&["--seconds"]).unwrap_err(),
            "--seconds needs a value"
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
