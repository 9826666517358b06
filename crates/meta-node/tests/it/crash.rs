//! Crash test: clients write unique keys to real `meta-node` processes and
//! record every acknowledged write; the process is SIGKILLed at a random
//! moment or, for every other kill, provably inside a snapshot build, a
//! log purge or (cluster) a snapshot install: the node is started with the
//! `META_PAUSE_AT` hook, stops dead at that step and is killed there
//! (snapshots are built and the log purged every 50 entries). It restarts
//! on the same data and the checker verifies that it opens cleanly, that every acknowledged write
//! is there with its value, and that every key it holds is one a client
//! wrote, with the value that client wrote.
//!
//! Per disk engine on one node, and on a 3-node cluster (a random node,
//! often the leader, killed each time). `META_CRASH_KILLS` sets the kills
//! per run (default 20: the CI size; `cargo xtask crash` runs a soak),
//! `META_CRASH_SEED` replays a run (each run prints its seed).

use crate::common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    Dirs, Pause, Proc, ProcCluster, Rng, cli, env_u64, free_port, seed_from_env, wait_until,
};
use serde_json::Value;

/// Writers per run; each has one request in flight.
const WRITERS: u64 = 8;
/// Keys written per kill at most (the list API returns 10,000 at most).
const MAX_WRITES_PER_KILL: u64 = 8_000;

fn seed() -> u64 {
    seed_from_env("META_CRASH_SEED")
}

fn kills() -> u64 {
    env_u64("META_CRASH_KILLS", 20)
}

/// Where a kill lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Moment {
    /// Whenever the random delay ends.
    Random,
    /// Snapshot data written and synced, the snapshot not yet recorded.
    SnapshotBuild,
    /// A log purge decided, its deletions not yet written.
    Purge,
    /// A received snapshot restored into the store, the state machine's
    /// views and snapshot record not yet updated (cluster only).
    SnapshotInstall,
}

impl Moment {
    fn failpoint(self) -> Option<&'static str> {
        match self {
            Moment::Random => None,
            Moment::SnapshotBuild => Some("sm.snapshot.build.streamed"),
            Moment::Purge => Some("log.purge.before"),
            Moment::SnapshotInstall => Some("sm.snapshot.install.restored"),
        }
    }

    /// The pause to arm in a node so the kill lands at this moment.
    fn pause(self, dir: &std::path::Path) -> Option<Pause> {
        self.failpoint().map(|point| Pause::at(point, dir))
    }
}

/// How many kills landed at each moment, for the summary line.
#[derive(Default)]
struct Landed(BTreeMap<Moment, u64>);

impl Landed {
    fn add(&mut self, moment: Moment) {
        *self.0.entry(moment).or_default() += 1;
    }

    fn count(&self, moment: Moment) -> u64 {
        self.0.get(&moment).copied().unwrap_or(0)
    }

    fn summary(&self) -> String {
        self.0
            .iter()
            .map(|(moment, n)| format!("{n} {moment:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Everything the clients did: key -> value for every write attempted,
/// and the subset that was acknowledged.
#[derive(Default)]
struct History {
    attempted: BTreeMap<String, String>,
    acked: BTreeMap<String, String>,
}

/// Runs `WRITERS` writers against `apis` (any node: followers redirect to
/// the leader) under `prefix` until `stop`, recording into `history`.
fn start_writers(
    rt: &tokio::runtime::Runtime,
    apis: Vec<String>,
    prefix: String,
    stop: Arc<AtomicBool>,
    history: Arc<Mutex<History>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let http = common::Http::new(Duration::from_secs(5));
    let written = Arc::new(AtomicU64::new(0));
    (0..WRITERS)
        .map(|w| {
            let (http, apis, prefix, stop, history, written) = (
                http.clone(),
                apis.clone(),
                prefix.clone(),
                stop.clone(),
                history.clone(),
                written.clone(),
            );
            rt.spawn(async move {
                let mut seq = 0u64;
                while !stop.load(Ordering::Relaxed)
                    && written.fetch_add(1, Ordering::Relaxed) < MAX_WRITES_PER_KILL
                {
                    let key = format!("{prefix}w{w}/{seq:06}");
                    let value = format!("value of {key}");
                    seq += 1;
                    history
                        .lock()
                        .unwrap()
                        .attempted
                        .insert(key.clone(), value.clone());
                    let api = &apis[(seq as usize + w as usize) % apis.len()];
                    let answer = http
                        .send(
                            reqwest::Method::PUT,
                            api,
                            &format!("/v1/kv/{key}"),
                            Some(value.clone()),
                        )
                        .await;
                    match answer {
                        Ok(a) if a.status().is_success() => {
                            history.lock().unwrap().acked.insert(key, value);
                        }
                        // Refused, timed out, connection reset: the outcome
                        // is unknown; back off a little (the node may be
                        // down or electing).
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            })
        })
        .collect()
}

/// The keys under `prefix` as the node at `api` serves them
/// (linearizable).
fn list(api: &str, prefix: &str) -> Option<BTreeMap<String, String>> {
    let out = cli(api, &["kv", "list", prefix, "--limit", "10000"]);
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    let items = v["items"].as_array()?;
    assert!(items.len() < 10_000, "a kill's prefix must list whole");
    Some(
        items
            .iter()
            .map(|i| {
                (
                    i["key"].as_str().unwrap().to_string(),
                    i["value"].as_str().unwrap().to_string(),
                )
            })
            .collect(),
    )
}

/// Checks the node's content under `prefix` against the history.
fn check(api: &str, prefix: &str, history: &History) -> usize {
    let mut served = None;
    wait_until(30, "a linearizable listing", || {
        served = list(api, prefix);
        served.is_some()
    });
    let served = served.unwrap();
    let mut checked = 0;
    for (key, value) in history.acked.range(prefix.to_string()..) {
        if !key.starts_with(prefix) {
            break;
        }
        assert_eq!(
            served.get(key),
            Some(value),
            "acknowledged write {key} lost or changed"
        );
        checked += 1;
    }
    for (key, value) in &served {
        assert_eq!(
            history.attempted.get(key),
            Some(value),
            "{key} = {value:?} was never written by a client"
        );
    }
    checked
}

/// Checks the first `kills` kills' prefixes again; returns the writes
/// checked.
fn check_all(api: &str, history: &History, kills: u64) -> usize {
    (0..kills)
        .map(|kill| check(api, &format!("crash/{kill:05}/"), history))
        .sum()
}

/// One node per engine: write, kill -9, restart, check; `kills` times.
fn single_node_campaign(engine: &str, kills: u64) {
    let seed = seed();
    eprintln!("crash/{engine}: seed {seed} (META_CRASH_SEED replays)");
    let mut rng = Rng::new(seed);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let (api, raft) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let dir = dirs.node("n1");
    // Every other kill lands inside a snapshot build or a purge.
    let moment = |kill: u64| {
        [
            Moment::Random,
            Moment::SnapshotBuild,
            Moment::Random,
            Moment::Purge,
        ][kill as usize % 4]
    };
    let start = |kill: u64| {
        let pause = moment(kill).pause(&dir);
        let node = Proc::start(1, engine, &dir, true, &api, &raft, pause.as_ref());
        (node, pause)
    };
    let (mut node, mut pause) = start(0);
    let mut landed = Landed::default();
    let history = Arc::new(Mutex::new(History::default()));
    let mut checked = 0;
    for kill in 0..kills {
        // Armed only now: the check of the previous kill is done.
        if let Some(p) = &pause {
            p.arm();
        }
        let prefix = format!("crash/{kill:05}/");
        let stop = Arc::new(AtomicBool::new(false));
        let writers = start_writers(
            &rt,
            vec![api.clone()],
            prefix.clone(),
            stop.clone(),
            history.clone(),
        );
        match &pause {
            None => std::thread::sleep(Duration::from_millis(50 + rng.below(500))),
            Some(p) => assert!(
                p.reached_within(30),
                "kill {kill}: the node never reached {}",
                p.point
            ),
        }
        node.kill();
        landed.add(moment(kill));
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            rt.block_on(w).unwrap();
        }
        (node, pause) = start(kill + 1);
        checked += check(&api, &prefix, &history.lock().unwrap());
    }
    // Nothing older went missing either.
    let history = history.lock().unwrap();
    assert_eq!(check_all(&api, &history, kills), checked);
    assert!(
        history.acked.len() > kills as usize,
        "too few acknowledged writes ({}) for a meaningful run",
        history.acked.len()
    );
    eprintln!(
        "crash/{engine}: {kills} kills ({}), {} acknowledged writes all present, {} attempted, nothing foreign",
        landed.summary(),
        history.acked.len(),
        history.attempted.len()
    );
    node.stop();
}

#[test]
fn lmdb_loses_no_acknowledged_write_across_kill_9() {
    single_node_campaign("lmdb", kills());
}

#[test]
fn fjall_loses_no_acknowledged_write_across_kill_9() {
    single_node_campaign("fjall", kills());
}

/// The checker has teeth: a node that forgets everything on restart (the
/// mem engine) fails the campaign on its first kill.
#[test]
fn the_checker_catches_a_node_that_loses_acknowledged_writes() {
    let failure = std::panic::catch_unwind(|| single_node_campaign("mem", 1))
        .expect_err("a mem node must fail the crash check");
    let message = failure
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(message.contains("lost or changed"), "{message}");
}

/// The node with the leader's id, as node `api` reports it.
fn leader_of(api: &str) -> Option<u64> {
    let out = cli(api, &["cluster", "status"]);
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v["leader"].as_u64()
}

#[test]
fn a_three_node_cluster_loses_no_acknowledged_write_when_nodes_are_killed() {
    let seed = seed();
    eprintln!("crash/cluster: seed {seed} (META_CRASH_SEED replays)");
    let mut rng = Rng::new(seed);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let cluster = ProcCluster::new(&dirs, &["lmdb", "fjall", "lmdb"]);
    let mut nodes = cluster.form();
    let start = |i: usize| cluster.start(i);
    let agreed_leader = |nodes: &[Proc]| -> Option<usize> {
        let leaders: Vec<Option<u64>> = nodes.iter().map(|n| leader_of(&n.api)).collect();
        let first = leaders[0]?;
        leaders
            .iter()
            .all(|l| *l == Some(first))
            .then(|| first as usize - 1)
    };
    wait_until(30, "a leader all nodes agree on", || {
        agreed_leader(&nodes).is_some()
    });
    let apis = cluster.apis();
    let history = Arc::new(Mutex::new(History::default()));
    let mut landed = Landed::default();
    let mut checked = 0;
    for kill in 0..kills() {
        let prefix = format!("crash/{kill:05}/");
        let stop = Arc::new(AtomicBool::new(false));
        let writers = start_writers(
            &rt,
            apis.clone(),
            prefix.clone(),
            stop.clone(),
            history.clone(),
        );
        std::thread::sleep(Duration::from_millis(100 + rng.below(600)));
        let install_round = kill % 3 == 2;
        // The leader half of the time, else any node; a follower when it
        // is to fall behind (writes go on without an election).
        let victim = match (install_round, rng.below(2), agreed_leader(&nodes)) {
            (true, _, Some(leader)) => (leader + 1 + rng.below(2) as usize) % 3,
            (false, 0, Some(leader)) => leader,
            _ => rng.below(3) as usize,
        };
        nodes[victim].kill();
        landed.add(Moment::Random);
        if install_round {
            // The victim falls behind a purge; restarted, it is sent a
            // snapshot, and dies again inside the install (or, if it
            // caught up from the log instead, whenever the wait ends).
            std::thread::sleep(Duration::from_millis(1500));
            let pause = Moment::SnapshotInstall.pause(&cluster.dir(victim));
            nodes[victim] = cluster.start_paused(victim, pause.as_ref());
            let reached = pause.is_some_and(|p| {
                p.arm();
                p.reached_within(20)
            });
            nodes[victim].kill();
            landed.add(if reached {
                Moment::SnapshotInstall
            } else {
                Moment::Random
            });
        } else {
            // Writes go on against the survivors for a moment.
            std::thread::sleep(Duration::from_millis(rng.below(300)));
        }
        stop.store(true, Ordering::Relaxed);
        for w in writers {
            rt.block_on(w).unwrap();
        }
        nodes[victim] = start(victim);
        let mut leader = None;
        wait_until(60, "a leader all nodes agree on after restart", || {
            leader = agreed_leader(&nodes);
            leader.is_some()
        });
        checked += check(&apis[leader.unwrap()], &prefix, &history.lock().unwrap());
    }
    let history = history.lock().unwrap();
    let leader = agreed_leader(&nodes).unwrap_or(0);
    assert_eq!(check_all(&apis[leader], &history, kills()), checked);
    assert!(history.acked.len() > kills() as usize);
    if kills() >= 3 {
        assert!(
            landed.count(Moment::SnapshotInstall) > 0,
            "no kill landed inside a snapshot install ({})",
            landed.summary()
        );
    }
    eprintln!(
        "crash/cluster: {} kills ({}), {} acknowledged writes all present, {} attempted, nothing foreign",
        landed.0.values().sum::<u64>(),
        landed.summary(),
        history.acked.len(),
        history.attempted.len()
    );
}

/// The pause hook refuses what it cannot do instead of ignoring it (a
/// crash test that silently never paused would prove nothing).
#[test]
fn the_pause_hook_rejects_an_unknown_failpoint_or_a_missing_marker() {
    let dir = tempfile::tempdir().unwrap();
    for (point, marker, expected) in [
        (
            "sm.nowhere",
            Some("m"),
            "META_PAUSE_AT=sm.nowhere: not a failpoint",
        ),
        ("log.purge.before", None, "needs META_PAUSE_MARKER"),
    ] {
        let mut command = std::process::Command::new(common::binary());
        command
            .args(["serve", "--data-dir"])
            .arg(dir.path())
            .env("META_PAUSE_AT", point)
            .env_remove("META_PAUSE_MARKER");
        if let Some(marker) = marker {
            command.env("META_PAUSE_MARKER", dir.path().join(marker));
        }
        let out = command.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{point}: {stderr}");
        assert!(stderr.contains(expected), "{point}: {stderr}");
    }
}
