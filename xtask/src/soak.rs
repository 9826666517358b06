//! `cargo xtask soak [--minutes N]`: the reliability campaigns at soak size
//! for a time budget (default 30 minutes), on a release build. Rounds
//! alternate the SIGKILL crash campaign (`meta-node`'s `tests/it/crash.rs`,
//! 50 kills per engine and for the cluster per round) and the
//! linearizability campaigns (`meta-raft`'s `tests/it/linearizability.rs`, 5
//! seeds of 10 s per round; `meta-node`'s `tests/it/linearizable_processes.rs`,
//! 20 s against processes), echo their output, and add up what they
//! checked. Any failure stops the soak; the failing run printed its seed.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::release_test;

/// Totals of a soak.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// SIGKILLs survived.
    pub kills: u64,
    /// Of those, kills that provably landed inside a snapshot build, a
    /// purge or a snapshot install.
    pub kills_inside_steps: u64,
    /// Acknowledged writes found intact after kills.
    pub writes_checked: u64,
    /// Linearizability runs (seeds) passed.
    pub histories: u64,
    /// Operations in those histories (known outcome).
    pub operations: u64,
    /// Operations with unknown outcome in them.
    pub unknown: u64,
}

fn number_before(line: &str, word: &str) -> Option<u64> {
    let head = &line[..line.find(word)?];
    head.split_whitespace().last()?.parse().ok()
}

impl Totals {
    /// Adds what one summary line of a campaign reports.
    pub fn add_line(&mut self, line: &str) {
        if line.starts_with("crash/") && line.contains(" kills (") {
            self.kills += number_before(line, " kills").unwrap_or(0);
            // "… 20 kills (10 Random, 5 SnapshotBuild, 5 Purge), …"
            let landed = line
                .split_once(" kills (")
                .and_then(|(_, rest)| rest.split_once(')'))
                .map_or("", |(inside, _)| inside);
            self.kills_inside_steps += landed
                .split(", ")
                .filter_map(|part| part.split_once(' '))
                .filter(|(_, moment)| *moment != "Random")
                .filter_map(|(n, _)| n.parse::<u64>().ok())
                .sum::<u64>();
            self.writes_checked += number_before(line, " acknowledged writes").unwrap_or(0);
        } else if line.starts_with("linearizability: seed")
            || (line.starts_with("linearizability/processes: seed") && line.contains(" completed"))
        {
            self.histories += 1;
            self.operations += number_before(line, " operations completed").unwrap_or(0);
            self.unknown += number_before(line, " unknown").unwrap_or(0);
        }
    }

    /// One line for humans (and `docs/reliability.md`).
    pub fn render(&self, elapsed: Duration) -> String {
        format!(
            "soak: {:.0} min: {} kills ({} inside a snapshot build, purge or install), {} acknowledged writes checked, none lost; {} linearizability runs, {} operations ({} with unknown outcome) checked, all linearizable",
            elapsed.as_secs_f64() / 60.0,
            self.kills,
            self.kills_inside_steps,
            self.writes_checked,
            self.histories,
            self.operations,
            self.unknown
        )
    }
}

/// Runs one campaign, echoing its output into `totals`; true if it passed.
fn campaign(
    package: &str,
    test: &str,
    env: &[(&str, String)],
    totals: &mut Totals,
) -> std::io::Result<bool> {
    let mut cmd = release_test(package, test);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stderr(Stdio::piped()).spawn()?;
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let line = line?;
            eprintln!("{line}");
            totals.add_line(&line);
        }
    }
    Ok(child.wait()?.success())
}

/// Soaks for `minutes`; returns the totals, or the campaign that failed.
pub fn run(minutes: u64) -> std::io::Result<Result<Totals, String>> {
    let start = Instant::now();
    let budget = Duration::from_secs(minutes * 60);
    let mut totals = Totals::default();
    while start.elapsed() < budget {
        let crash = [("META_CRASH_KILLS", "50".to_string())];
        if !campaign("meta-node", "crash", &crash, &mut totals)? {
            return Ok(Err(
                "the crash campaign failed (its seed is printed above)".into()
            ));
        }
        let lin = [
            ("META_LIN_SEEDS", "5".to_string()),
            ("META_LIN_SECONDS", "10".to_string()),
        ];
        if !campaign("meta-raft", "linearizability", &lin, &mut totals)? {
            return Ok(Err(
                "the linearizability campaign failed (its seed is printed above)".into(),
            ));
        }
        let processes = [("META_LINP_SECONDS", "20".to_string())];
        if !campaign(
            "meta-node",
            "linearizable_processes",
            &processes,
            &mut totals,
        )? {
            return Ok(Err(
                "the linearizability campaign against processes failed (its seed is printed above)"
                    .into(),
            ));
        }
        eprintln!("{}", totals.render(start.elapsed()));
    }
    Ok(Ok(totals))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lines_add_up() {
        let mut t = Totals::default();
        t.add_line("crash/lmdb: 20 kills (10 Random, 5 SnapshotBuild, 5 Purge), 8890 acknowledged writes all present, 9050 attempted, nothing foreign");
        t.add_line("crash/cluster: 20 kills (18 Random, 2 SnapshotInstall), 5646 acknowledged writes all present, 6508 attempted, nothing foreign");
        t.add_line("linearizability: seed 17: 3881 operations completed, 5 unknown, 8 faults, 61 messages dropped");
        t.add_line(
            "linearizability/processes: seed 9: 100 operations completed, 2 unknown, 5 kills",
        );
        t.add_line("linearizability/processes: seed 9 (META_LINP_SEED replays the schedule)");
        t.add_line("test crash ... ok");
        t.add_line("crash/lmdb: seed 42 (META_CRASH_SEED replays)");
        assert_eq!(
            t,
            Totals {
                kills: 40,
                kills_inside_steps: 12,
                writes_checked: 14536,
                histories: 2,
                operations: 3981,
                unknown: 7
            }
        );
        assert!(t.render(Duration::from_secs(1800)).starts_with(
            "soak: 30 min: 40 kills (12 inside a snapshot build, purge or install), 14536"
        ));
    }
}
