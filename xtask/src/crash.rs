//! `cargo xtask crash [--kills N] [--seed S]`: the crash campaign of
//! `crates/meta-node/tests/crash.rs` at soak size (default 1,000 kills per
//! engine and for the 3-node cluster), on a release build. The test suite
//! runs the same campaign at CI size (20 kills each).

use crate::release_test;

/// Options of a crash campaign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrashOptions {
    /// SIGKILLs per engine and for the cluster.
    pub kills: u64,
    /// Replays a run (each run prints its seed).
    pub seed: Option<u64>,
}

impl CrashOptions {
    /// Parses `--kills N` and `--seed S`.
    pub fn parse(args: &[String]) -> Result<CrashOptions, String> {
        let mut options = CrashOptions {
            kills: 1000,
            seed: None,
        };
        let mut args = args.iter();
        while let Some(flag) = args.next() {
            let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let number: u64 = value
                .parse()
                .map_err(|_| format!("{flag} takes a number, got `{value}`"))?;
            match flag.as_str() {
                "--kills" if number > 0 => options.kills = number,
                "--kills" => return Err("--kills must be at least 1".into()),
                "--seed" => options.seed = Some(number),
                other => return Err(format!("unknown flag {other}")),
            }
        }
        Ok(options)
    }
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
    use super::*;

    fn parse(args: &[&str]) -> Result<CrashOptions, String> {
        CrashOptions::parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_parse_and_bad_ones_say_what_is_wrong() {
        assert_eq!(parse(&[]).unwrap().kills, 1000);
        let o = parse(&["--kills", "50", "--seed", "7"]).unwrap();
        assert_eq!((o.kills, o.seed), (50, Some(7)));
        assert_eq!(parse(&["--kills"]).unwrap_err(), "--kills needs a value");
        assert!(
            parse(&["--kills", "x"])
                .unwrap_err()
                .contains("takes a number")
        );
        assert!(parse(&["--kills", "0"]).unwrap_err().contains("at least 1"));
        assert!(
            parse(&["--fast", "1"])
                .unwrap_err()
                .contains("unknown flag --fast")
        );
    }
}
