//! `cargo xtask crash [--kills N] [--seed S]`: the crash campaign of
//! `crates/meta-node/tests/it/crash.rs` at soak size (default 1,000 kills per
//! engine and for the 3-node cluster), on a release build. The test suite
//! runs the same campaign at CI size (20 kills each).

use crate::release_test;

/// Options of a crash campaign.
#[derive(clap::Args, Clone, Debug, PartialEq, Eq)]
pub struct CrashOptions {
    /// SIGKILLs per engine and for the cluster.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    pub kills: u64,
    /// Replays a run (each run prints its seed).
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Runs the campaign; true if it passed.
pub fn run(options: &CrashOptions) -> std::io::Result<bool> {
    let mut cmd = release_test("meta-node", "crash");
    cmd.env("META_CRASH_KILLS", options.kills.to_string());
    if let Some(seed) = options.seed {
        cmd.env("META_CRASH_SEED", seed.to_string());
    }
    Ok(cmd.status()?.success())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use crate::{Task, Xtask};

    fn parse(args: &[&str]) -> Result<super::CrashOptions, String> {
        let argv = ["cargo xtask", "crash"].iter().chain(args);
        match Xtask::try_parse_from(argv).map_err(|e| e.to_string())?.task {
            Task::Crash(options) => Ok(options),
            other => Err(format!("parsed as {other:?}")),
        }
    }

    #[test]
    fn flags_parse_and_bad_ones_say_what_is_wrong() {
        assert_eq!(parse(&[]).unwrap().kills, 1000);
        let o = parse(&["--kills", "50", "--seed", "7"]).unwrap();
        assert_eq!((o.kills, o.seed), (50, Some(7)));
        assert!(
            parse(&["--kills"])
                .unwrap_err()
                .contains("a value is required")
        );
        assert!(
            parse(&["--kills", "x"])
                .unwrap_err()
                .contains("invalid value 'x'")
        );
        assert!(
            parse(&["--kills", "0"])
                .unwrap_err()
                .contains("0 is not in 1..")
        );
        assert!(parse(&["--fast", "1"]).unwrap_err().contains("--fast"));
        let help = Xtask::try_parse_from(["cargo xtask", "crash", "--help"]).unwrap_err();
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
    }
}
