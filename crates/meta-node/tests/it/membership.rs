//! Membership mistakes can be repaired, and a change that would leave the
//! cluster without a working majority is refused up front — with real
//! processes, through the CLI.

use crate::common;

use std::time::{Duration, Instant};

use common::{Dirs, Proc, ProcCluster, cli, cli_ok, wait_until};
use serde_json::Value;

/// The CLI, which must fail; its stderr.
fn cli_err(api: &str, args: &[&str]) -> String {
    let out = cli(api, args);
    assert!(!out.status.success(), "meta-node {args:?} must fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn members(api: &str) -> Value {
    cli_ok(api, &["cluster", "status"])["members"].clone()
}

fn assert_says(text: &str, what: &[&str]) {
    for w in what {
        assert!(text.contains(w), "expected `{w}` in: {text}");
    }
}

#[test]
fn a_learner_at_a_wrong_address_can_be_removed_or_moved_and_add_learner_waits() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let addr = || format!("127.0.0.1:{}", common::free_port());
    let (api1, raft1) = (addr(), addr());
    let _n1 = Proc::start(1, "lmdb", &dirs.node("n1"), true, &api1, &raft1, None);
    for i in 0..50 {
        cli_ok(&api1, &["kv", "put", &format!("k{i}"), "v"]);
    }
    let (api2, raft2) = (addr(), addr());
    let nowhere = addr();

    // A wrong address: the answer says so after the wait, and how to undo it.
    let started = Instant::now();
    let stderr = cli_err(
        &api1,
        &[
            "cluster",
            "add-learner",
            "2",
            &nowhere,
            &api2,
            "--wait-secs",
            "3",
        ],
    );
    assert!(started.elapsed() >= Duration::from_secs(3), "it waited");
    assert_says(
        &stderr,
        &[
            "learner_not_caught_up",
            &format!("never reached at {nowhere}"),
            "remove-member 2",
        ],
    );
    assert_eq!(members(&api1)["2"]["voter"], false, "added as a learner");
    // It cannot be made a voter: not ready.
    let stderr = cli_err(&api1, &["cluster", "members", "1,2"]);
    assert_says(&stderr, &["voter_not_ready", "node 2"]);
    // Removed.
    let removed = cli_ok(&api1, &["cluster", "remove-member", "2"]);
    assert_eq!(removed["was"], "learner");
    assert!(members(&api1).get("2").is_none(), "{}", members(&api1));
    let stderr = cli_err(&api1, &["cluster", "remove-member", "2"]);
    assert_says(&stderr, &["not_a_member"]);

    // Wrong again, then added at the right address: moved, and waited for.
    cli_err(
        &api1,
        &[
            "cluster",
            "add-learner",
            "2",
            &nowhere,
            &api2,
            "--wait-secs",
            "1",
        ],
    );
    let _n2 = Proc::start(2, "fjall", &dirs.node("n2"), false, &api2, &raft2, None);
    let added = cli_ok(&api1, &["cluster", "add-learner", "2", &raft2, &api2]);
    assert_eq!(added["caught_up"], true, "{added}");
    assert!(added["matched_index"].as_u64().unwrap() >= 50, "{added}");
    assert_eq!(members(&api1)["2"]["raft"], raft2.as_str(), "moved");
    let progress = &members(&api1)["2"]["progress"];
    assert_eq!(progress["reachable"], true, "{progress}");
    cli_ok(&api1, &["cluster", "members", "1,2"]);
    assert_eq!(members(&api1)["2"]["voter"], true);
    cli_ok(&api1, &["kv", "put", "after", "ok"]);
}

#[test]
fn membership_changes_that_leave_no_working_majority_are_refused() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let cluster = ProcCluster::new(&dirs, &["lmdb", "fjall", "lmdb"]);
    let mut nodes = cluster.form();
    let apis = cluster.apis();
    // `cluster init` answered once a leader was elected: the next write
    // works at once, no retry.
    cli_ok(&apis[0], &["kv", "put", "first", "write"]);
    let leader = cli_ok(&apis[0], &["cluster", "status"])["leader"]
        .as_u64()
        .unwrap();
    let down = (1..=3).find(|id| *id != leader).unwrap();
    let alive = (1..=3).find(|id| *id != leader && *id != down).unwrap();
    nodes[(down - 1) as usize].kill();
    let api = &apis[(leader - 1) as usize];
    wait_until(10, "the leader to notice the down node", || {
        members(api)[down.to_string()]["progress"]["reachable"] == false
    });

    // Voters {leader, down}: one of two ready. Refused, unless forced.
    let voters = format!("{leader},{down}");
    let stderr = cli_err(api, &["cluster", "members", &voters]);
    assert_says(&stderr, &["no_quorum", &format!("node {down}")]);
    // Removing the live follower would leave {leader, down}: refused too.
    let stderr = cli_err(api, &["cluster", "remove-member", &alive.to_string()]);
    assert_says(&stderr, &["no_quorum"]);
    // Removing the down node leaves {leader, alive}: allowed, and asked of
    // a follower, it is redirected to the leader.
    let follower_api = &apis[(alive - 1) as usize];
    let removed = cli_ok(
        follower_api,
        &["cluster", "remove-member", &down.to_string()],
    );
    assert_eq!(removed["was"], "voter");
    let now = members(api);
    assert!(now.get(down.to_string()).is_none(), "{now}");
    cli_ok(api, &["kv", "put", "after", "removal"]);
    // The last voter cannot go; a stranger cannot become one.
    let stderr = cli_err(api, &["cluster", "members", "9"]);
    assert_says(&stderr, &["not_a_member", "add-learner 9"]);
}
