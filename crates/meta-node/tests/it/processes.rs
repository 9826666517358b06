//! Real `meta-node` processes on 127.0.0.1: a cluster formed through the
//! CLI, writes through one node and reads through another, kill -9 of the
//! leader, restart and catch-up, and a rolling engine migration (a node
//! restarted on another engine with an empty data dir catches up by
//! snapshot). Every process is killed when the test ends, pass or fail.

use crate::common;

use common::{Dirs, Proc, cli, cli_ok, converged_hash, free_port, wait_until};
use serde_json::Value;

fn stale_get(api: &str, key: &str) -> Option<String> {
    let out = cli(api, &["kv", "get", key, "--stale"]);
    out.status.success().then(|| {
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["value"].as_str().unwrap().to_string()
    })
}

fn leader_of(api: &str) -> Option<u64> {
    let out = cli(api, &["cluster", "status"]);
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v["leader"].as_u64()
}

#[test]
fn a_three_process_cluster_survives_kill_9_and_migrates_engines_without_downtime() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let addr = || format!("127.0.0.1:{}", free_port());
    let (api1, raft1, api2, raft2, api3, raft3) = (addr(), addr(), addr(), addr(), addr(), addr());
    let mut n1 = Proc::start(1, "lmdb", &dirs.node("n1"), true, &api1, &raft1, None);
    let n2 = Proc::start(2, "fjall", &dirs.node("n2"), false, &api2, &raft2, None);
    let mut n3 = Proc::start(3, "lmdb", &dirs.node("n3"), false, &api3, &raft3, None);
    wait_until(20, "node 1 to lead", || leader_of(&api1) == Some(1));

    // Form the cluster through the CLI.
    cli_ok(&api1, &["cluster", "add-learner", "2", &raft2, &api2]);
    cli_ok(&api1, &["cluster", "add-learner", "3", &raft3, &api3]);
    cli_ok(&api1, &["cluster", "members", "1,2,3"]);
    let status = cli_ok(&api2, &["cluster", "status"]);
    assert_eq!(status["members"].as_object().unwrap().len(), 3);

    // Write through a follower (redirected to the leader), read through another.
    cli_ok(&api2, &["kv", "put", "greeting", "hello"]);
    assert_eq!(cli_ok(&api3, &["kv", "get", "greeting"])["value"], "hello");
    for i in 0..60 {
        cli_ok(&api1, &["kv", "put", &format!("k{i:03}"), &i.to_string()]);
    }
    wait_until(20, "node 3 to apply the writes", || {
        stale_get(&api3, "k059").as_deref() == Some("59")
    });

    // kill -9 the leader: another node takes over and writes continue.
    n1.kill();
    wait_until(30, "a new leader", || {
        matches!(leader_of(&api2), Some(2 | 3))
    });
    cli_ok(&api2, &["kv", "put", "after-kill", "yes"]);
    cli_ok(&api3, &["kv", "put", "after-kill-2", "yes"]);

    // The killed node restarts from its data dir and catches up.
    let mut n1 = Proc::start(1, "lmdb", &dirs.node("n1"), true, &api1, &raft1, None);
    wait_until(30, "node 1 to catch up", || {
        stale_get(&api1, "after-kill-2").is_some()
    });
    assert_eq!(stale_get(&api1, "k010").as_deref(), Some("10"));

    // Rolling engine migration: node 3 comes back on fjall with an empty
    // data dir and catches up by snapshot (the log was purged every 50
    // entries). A voter that lost its state must not vote again as if it
    // had not (it could help elect a leader missing committed entries), so
    // it leaves the voters first, rejoins as a learner, and is promoted.
    // The cluster keeps serving writes throughout.
    // (Sent to node 2; the CLI follows the redirect to the leader.)
    cli_ok(&api2, &["cluster", "members", "1,2"]);
    n3.stop();
    wait_until(30, "a leader among nodes 1 and 2", || {
        matches!(leader_of(&api2), Some(1 | 2))
    });
    for i in 60..120 {
        cli_ok(&api2, &["kv", "put", &format!("k{i:03}"), &i.to_string()]);
    }
    let n3 = Proc::start(
        3,
        "fjall",
        &dirs.node("n3-fjall"),
        false,
        &api3,
        &raft3,
        None,
    );
    cli_ok(&api2, &["cluster", "add-learner", "3", &raft3, &api3]);
    cli_ok(&api2, &["cluster", "members", "1,2,3"]);
    wait_until(30, "node 3 to catch up on fjall", || {
        stale_get(&api3, "k119").as_deref() == Some("119")
    });
    assert_eq!(stale_get(&api3, "greeting").as_deref(), Some("hello"));
    let status = cli_ok(&api3, &["cluster", "status"]);
    assert!(
        status["snapshot_index"].as_u64().is_some(),
        "node 3 should hold a snapshot: {status}"
    );

    let hash = converged_hash(&[&n1, &n2, &n3]);
    assert_eq!(hash.len(), 64);
    n1.stop();
}

/// Followers answer linearizable reads themselves (a read index from the
/// leader, then their own apply), never older than a write the leader
/// acknowledged before the read began; what only the leader knows (lease
/// keepalives) still goes there.
#[test]
fn followers_serve_linearizable_reads_that_see_every_acknowledged_write() {
    use reqwest::{Method, StatusCode};

    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let cluster = common::ProcCluster::new(&dirs, &["lmdb", "fjall", "lmdb"]);
    let _nodes = cluster.form();
    let apis = cluster.apis();
    wait_until(30, "a leader", || leader_of(&apis[0]).is_some());
    let leader = leader_of(&apis[0]).unwrap() as usize - 1;
    let followers: Vec<&String> = (0..3).filter(|i| *i != leader).map(|i| &apis[i]).collect();
    let http = common::Http::new(std::time::Duration::from_secs(10));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let send = |method: Method, api: &str, path: &str, body: Option<&str>| {
            let (http, api, path) = (http.clone(), api.to_string(), path.to_string());
            let body = body.map(str::to_string);
            async move {
                let answer = http.send_once(method, &api, &path, body).await.unwrap();
                let status = answer.status();
                (status, answer.json::<Value>().await.unwrap_or_default())
            }
        };
        for i in 0..40 {
            let value = format!("v{i}");
            let (status, put) = send(Method::PUT, &apis[leader], "/v1/kv/k", Some(&value)).await;
            assert_eq!(status, StatusCode::OK, "{put}");
            // Acknowledged: a read that begins now, on any follower, sees it.
            for follower in &followers {
                let (status, got) = send(Method::GET, follower, "/v1/kv/k", None).await;
                assert_eq!(status, StatusCode::OK, "read {i} on {follower}: {got}");
                assert_eq!(got["value"], value, "read {i} on {follower}: {got}");
                assert!(
                    got["revision"].as_u64() >= put["revision"].as_u64(),
                    "{got} after {put}"
                );
            }
        }
        // A lease's deadline is the leader's: a keepalive on a follower is
        // redirected there.
        let (status, lease) = send(
            Method::POST,
            &apis[leader],
            "/v1/leases",
            Some(r#"{"ttl_secs":60}"#),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{lease}");
        let keepalive = format!("/v1/leases/{}/keepalive", lease["id"]);
        let (status, answer) = send(Method::POST, followers[0], &keepalive, None).await;
        assert_eq!(status, StatusCode::TEMPORARY_REDIRECT, "{answer}");
        assert_eq!(answer["error"]["code"], "not_leader", "{answer}");
        let (status, answer) = send(Method::POST, &apis[leader], &keepalive, None).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
    });
    // The follower's read-index requests were batched on its leader:
    // served by the peer port, counted by the batch metric.
    let metrics = rt.block_on(async {
        let answer = http
            .send_once(Method::GET, followers[0], "/metrics", None)
            .await
            .unwrap();
        answer.text().await.unwrap()
    });
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("meta_read_index_batch_reads_count") && !l.ends_with(" 0")),
        "{metrics}"
    );
}
