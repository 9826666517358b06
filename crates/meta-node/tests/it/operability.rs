//! What an operator relies on, with real processes: every documented metric
//! exported in a stable order, an online backup taken under write load and
//! restored into a new cluster on another engine, leader transfer, and a
//! removed voter that keeps running without disturbing anyone.

use crate::common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Dirs, Http, ProcCluster, cli, cli_ok, converged_hash, runtime, url, wait_until};
use meta_node::telemetry::{Kind, METRICS};
use serde_json::Value;

/// Runs every future to completion, concurrently.
async fn futures_join_all<F: std::future::Future<Output = ()> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) {
    let tasks: Vec<_> = futures.map(tokio::spawn).collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// Two free loopback addresses: a node's client API and peer port.
fn loopback() -> (String, String) {
    let addr = || format!("127.0.0.1:{}", common::free_port());
    (addr(), addr())
}

/// A client with no token that follows no redirect.
fn anonymous() -> reqwest::Client {
    meta_node::client::http_builder()
        .tls_backend_preconfigured(
            meta_node::tls::https_client_config(&common::test_ca().join("ca.pem")).unwrap(),
        )
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn leader(api: &str) -> u64 {
    let mut leader = 0;
    wait_until(20, "a leader", || {
        leader = cli_ok(api, &["cluster", "status"])["leader"]
            .as_u64()
            .unwrap_or(0);
        leader != 0
    });
    leader
}

fn term(api: &str) -> u64 {
    cli_ok(api, &["cluster", "status"])["term"]
        .as_u64()
        .unwrap()
}

/// The `/metrics` text of the node at `api`.
fn scrape(rt: &tokio::runtime::Runtime, http: &Http, api: &str) -> String {
    rt.block_on(http.metrics(api))
}

/// The series of a scrape, in order, without their values.
fn series(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.rsplit_once(' ').unwrap().0.to_owned())
        .collect()
}

#[test]
fn every_documented_metric_is_exported_with_help_and_type_in_a_stable_order() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let cluster = ProcCluster::new(&dirs, &["lmdb", "fjall", "mem"]);
    let _nodes = cluster.form();
    let apis = cluster.apis();
    let lead = leader(&apis[0]) as usize - 1;
    for i in 0..20 {
        cli_ok(&apis[i % 3], &["kv", "put", &format!("k{i}"), "v"]);
    }
    let rt = runtime();
    let http = Http::new(Duration::from_secs(10));
    // Refused without a token, and counted.
    let anonymous = rt
        .block_on(
            anonymous()
                .get(format!("{}/metrics", url(&apis[lead])))
                .send(),
        )
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let _ = scrape(&rt, &http, &apis[lead]);
    let first = scrape(&rt, &http, &apis[lead]);
    let second = scrape(&rt, &http, &apis[lead]);
    assert_eq!(series(&first), series(&second), "the order is stable");
    for &(name, kind, ..) in METRICS {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        assert!(
            first.contains(&format!("# HELP {name} ")),
            "no HELP for {name}:\n{first}"
        );
        assert!(
            first.contains(&format!("# TYPE {name} {kind}\n")),
            "no TYPE {kind} for {name}:\n{first}"
        );
    }
    let value = |text: &str, series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    };
    assert_eq!(value(&first, "meta_raft_is_leader"), 1.0);
    assert!(
        value(
            &first,
            "meta_auth_failures_total{reason=\"unauthenticated\"}"
        ) >= 1.0
    );
    assert!(value(&first, "meta_proposals_total") >= 1.0);
    assert!(value(&first, "meta_log_append_duration_seconds_count") >= 1.0);
    for follower in (1..=3).filter(|id| *id != lead + 1) {
        let lag = value(
            &first,
            &format!("meta_raft_follower_lag_entries{{follower=\"{follower}\"}}"),
        );
        assert!(lag <= 1000.0, "follower {follower} lags {lag}");
    }
    assert!(
        first.contains(
            "meta_http_requests_total{route=\"/v1/kv/{*key}\",method=\"PUT\",status=\"200\"}"
        ),
        "{first}"
    );
    assert!(
        first.contains("meta_http_request_duration_seconds_bucket{route=\"/v1/kv/{*key}\",method=\"PUT\",le=\"0.001\"}"),
        "{first}"
    );
    // Concurrent linearizable reads share read-index rounds; each is
    // counted once.
    let before = value(
        &scrape(&rt, &http, &apis[lead]),
        "meta_read_index_batch_reads_sum",
    );
    rt.block_on(async {
        let reads = (0..64).map(|i| {
            let (http, api) = (http.clone(), apis[lead].clone());
            async move {
                let path = format!("/v1/kv/k{}", i % 20);
                let answer = http
                    .send(reqwest::Method::GET, &api, &path, None)
                    .await
                    .unwrap();
                assert_eq!(answer.status(), 200);
            }
        });
        futures_join_all(reads).await;
    });
    let after = scrape(&rt, &http, &apis[lead]);
    let served = value(&after, "meta_read_index_batch_reads_sum") - before;
    assert_eq!(served, 64.0, "every linearizable read took one read index");
    let rounds = value(&after, "meta_read_index_batch_reads_count");
    println!("64 concurrent reads: {rounds} read-index rounds in all so far");
    // A follower shows no per-follower series.
    let follower = scrape(&rt, &http, &apis[(lead + 1) % 3]);
    assert_eq!(value(&follower, "meta_raft_is_leader"), 0.0);
    assert!(
        !follower.contains("meta_raft_follower_lag_entries{"),
        "{follower}"
    );
}

#[test]
fn an_online_backup_under_load_starts_a_new_cluster_on_another_engine() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let old = ProcCluster::new(&dirs, &["lmdb", "lmdb", "lmdb"]);
    let mut old_nodes = old.form();
    let apis = old.apis();
    leader(&apis[0]);
    // A writer adds key after key and notes each one's revision.
    let acked = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop, api) = (acked.clone(), stop.clone(), apis[0].clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Acquire) {
                let key = format!("k{i:05}");
                let out = cli(&api, &["kv", "put", &key, &format!("v{i}")]);
                if out.status.success() {
                    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
                    let revision = answer["revision"].as_u64().unwrap();
                    acked.lock().unwrap().insert(key, revision);
                }
                i += 1;
            }
        })
    };
    wait_until(30, "some writes", || acked.lock().unwrap().len() >= 20);
    let file = dirs.node("backup.snap");
    // From a follower: any node serves a backup of what it applied.
    let saved = cli_ok(
        &apis[1],
        &["snapshot", "save", "--out", file.to_str().unwrap()],
    );
    wait_until(30, "writes after the backup", || {
        acked.lock().unwrap().len() >= 40
    });
    stop.store(true, Ordering::Release);
    writer.join().unwrap();
    let revision = saved["revision"].as_u64().unwrap();
    assert!(revision > 0, "{saved}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the backup is private");
    }

    // A survivor of a lost quorum still gives its backup (the way out).
    old_nodes[0].kill();
    old_nodes[2].kill();
    let survivor = dirs.node("survivor.snap");
    let out = cli(
        &apis[1],
        &["snapshot", "save", "--out", survivor.to_str().unwrap()],
    );
    assert!(!out.status.success(), "no leader: no linearizable backup");
    assert!(!survivor.exists(), "nothing left behind");
    let last = cli_ok(
        &apis[1],
        &[
            "snapshot",
            "save",
            "--stale",
            "--out",
            survivor.to_str().unwrap(),
        ],
    );
    assert!(last["revision"].as_u64().unwrap() >= revision, "{last}");

    // A new cluster: other addresses, another engine, from the backup.
    let new_dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let new = ProcCluster::new(&new_dirs, &["fjall", "fjall", "fjall"]);
    let members: Vec<String> = new
        .addrs
        .iter()
        .enumerate()
        .map(|(i, (api, raft))| format!("--member={}={raft},{api}", i + 1))
        .collect();
    // `snapshot restore-cluster` of `input` into `dir` as node `node`.
    let restore = |dir: &std::path::Path, node: &str, input: &std::path::Path| {
        let mut args = vec![
            "--data-dir".to_string(),
            dir.to_str().unwrap().into(),
            "snapshot".into(),
            "restore-cluster".into(),
            "--in".into(),
            input.to_str().unwrap().into(),
            "--node-id".into(),
            node.into(),
            "--engine".into(),
            "fjall".into(),
        ];
        args.extend(members.iter().cloned());
        common::bin(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    for i in 0..3 {
        let dir = new.dir(i);
        let out = restore(&dir, &(i + 1).to_string(), &file);
        assert!(out.status.success(), "{out:?}");
        // The old cluster's keys came along; so does its root token.
        std::fs::copy(old.dir(0).join("root.token"), dir.join("root.token")).unwrap();
    }
    // Refusals leave nothing behind: a node id not among the members, a
    // damaged backup, a directory that holds a store.
    let refused = |dir: &std::path::Path, node: &str, input: &std::path::Path| {
        let out = restore(dir, node, input);
        assert!(!out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let spare = new_dirs.node("spare");
    let error = refused(&spare, "9", &file);
    assert!(error.contains("not one of the --member list"), "{error}");
    assert!(!spare.exists(), "{error}");
    let damaged = new_dirs.node("damaged.snap");
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&damaged, &bytes).unwrap();
    let error = refused(&spare, "1", &damaged);
    assert!(error.contains("not a complete, intact snapshot"), "{error}");
    assert!(!spare.exists(), "{error}");
    let error = refused(&new.dir(0), "1", &file);
    assert!(error.contains("holds a store already"), "{error}");
    let id = |dir: std::path::PathBuf| -> String {
        let text = std::fs::read_to_string(dir.join("identity.toml")).unwrap();
        text.lines()
            .find(|l| l.starts_with("cluster_id"))
            .unwrap()
            .to_owned()
    };
    assert_eq!(id(new.dir(0)), id(new.dir(2)), "one new cluster");
    assert_ne!(id(new.dir(0)), id(old.dir(0)), "not the old one");
    let new_nodes: Vec<_> = (0..3).map(|i| new.start(i)).collect();
    let new_apis = new.apis();
    leader(&new_apis[0]);
    let expected: BTreeMap<String, String> = acked
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, r)| **r <= revision)
        .map(|(k, _)| (k.clone(), format!("v{}", &k[1..].parse::<u64>().unwrap())))
        .collect();
    assert!(!expected.is_empty());
    for api in &new_apis {
        let listed = cli_ok(api, &["kv", "list", "k", "--stale", "--limit", "100000"]);
        let got: BTreeMap<String, String> = listed["items"]
            .as_array()
            .unwrap_or_else(|| panic!("{listed}"))
            .iter()
            .map(|kv| {
                (
                    kv["key"].as_str().unwrap().to_owned(),
                    kv["value"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(
            got, expected,
            "node {api} holds exactly the keys written at or before the backup's revision {revision}"
        );
    }
    // The new cluster works, and its members agree.
    cli_ok(&new_apis[2], &["kv", "put", "after", "restore"]);
    let refs: Vec<&common::Proc> = new_nodes.iter().collect();
    converged_hash(&refs);
}

#[test]
fn leadership_moves_to_the_voter_asked_for() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let cluster = ProcCluster::new(&dirs, &["lmdb", "fjall", "lmdb"]);
    let _nodes = cluster.form();
    let apis = cluster.apis();
    let first = leader(&apis[0]);
    cli_ok(&apis[0], &["kv", "put", "a", "1"]);
    let to = first % 3 + 1;
    let moved = cli_ok(&apis[0], &["cluster", "transfer-leader", &to.to_string()]);
    assert_eq!(moved["leader"], to, "{moved}");
    for api in &apis {
        wait_until(10, "every node to know the new leader", || {
            cli_ok(api, &["cluster", "status"])["leader"] == to
        });
    }
    cli_ok(&apis[0], &["kv", "put", "a", "2"]);
    // Refusals: not a member; already the leader is fine.
    let out = cli(&apis[0], &["cluster", "transfer-leader", "9"]);
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains("not a member") && error.contains("404"),
        "{error}"
    );
    let same = cli_ok(&apis[0], &["cluster", "transfer-leader", &to.to_string()]);
    assert_eq!(same["leader"], to);
    // A client that gives up mid-way: whether the transfer finished or
    // not, nothing stays paused (writes are taken, heartbeats go on).
    let rt = runtime();
    let impatient = Http::new(Duration::from_millis(300));
    let gave_up = rt.block_on(impatient.send(
        reqwest::Method::POST,
        &apis[to as usize - 1],
        "/v1/cluster/leader",
        Some(format!("{{\"to\":{first}}}")),
    ));
    assert!(gave_up.is_err(), "the transfer takes longer than 300 ms");
    std::thread::sleep(Duration::from_secs(3));
    let status = cli_ok(&apis[0], &["cluster", "status"]);
    let now = status["leader"].as_u64().unwrap();
    cli_ok(&apis[0], &["kv", "put", "a", "2"]);
    let stable = term(&apis[now as usize - 1]);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        term(&apis[now as usize - 1]),
        stable,
        "heartbeats go on: no election"
    );
    // Back again.
    let back = cli_ok(
        &apis[0],
        &["cluster", "transfer-leader", &first.to_string()],
    );
    assert_eq!(back["leader"], first);
    assert_eq!(
        cli_ok(&apis[0], &["kv", "get", "a"])["value"],
        "2",
        "nothing was lost"
    );
}

#[test]
fn a_removed_voter_that_keeps_running_never_forces_an_election() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let cluster = ProcCluster::new(&dirs, &["lmdb", "lmdb", "fjall"]);
    let _nodes = cluster.form();
    let apis = cluster.apis();
    let first = leader(&apis[0]);
    // The removed one is a follower (a leader is asked to move first).
    let removed = (first % 3 + 1) as usize;
    let api = &apis[removed - 1];
    let out = cli(&apis[0], &["cluster", "remove-member", &first.to_string()]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("transfer-leader"),
        "removing the leader says to move it first"
    );
    cli_ok(
        &apis[0],
        &["cluster", "remove-member", &removed.to_string()],
    );
    let before = term(&apis[first as usize - 1]);
    let removed_term = term(api);
    // Many election timeouts (300-600 ms) with no leader to hear from.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(term(api), removed_term, "the removed node did not campaign");
    // Added back as it is, it does not unseat the leader.
    let (api_addr, raft_addr) = &cluster.addrs[removed - 1];
    cli_ok(
        &apis[0],
        &[
            "cluster",
            "add-learner",
            &removed.to_string(),
            raft_addr,
            api_addr,
        ],
    );
    std::thread::sleep(Duration::from_secs(2));
    let status = cli_ok(&apis[0], &["cluster", "status"]);
    assert_eq!(status["leader"], first, "{status}");
    assert_eq!(status["term"], before, "no election: {status}");
    cli_ok(&apis[0], &["kv", "put", "still", "working"]);
}

#[test]
fn offline_tools_say_which_store_of_a_split_node_holds_the_data() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let dir = dirs.node("n1");
    let (api, raft) = loopback();
    let mut node = common::Proc::start_configured(
        1,
        "lmdb",
        &dir,
        true,
        &api,
        &raft,
        "log_engine = \"fjall\"\n",
    );
    cli_ok(&api, &["kv", "put", "a", "1"]);
    // Removing a node the cluster map does not hold: 404, as for a key.
    let out = cli(&api, &["cluster", "remove-node", "99"]);
    let error: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(error["error"]["status"], 404, "{error}");
    let hash = cli_ok(&api, &["cluster", "hash"])["hash"]
        .as_str()
        .unwrap()
        .to_owned();
    node.stop();
    let verify = |store: String| {
        let out = common::bin_ok(&["verify", "--store", &store]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let state = verify(format!("lmdb:{}", dir.join("state-lmdb").display()));
    assert_eq!(state, hash, "the state store holds the data");
    let log = verify(format!("fjall:{}", dir.join("log-fjall").display()));
    assert!(
        log.contains("no metadata in this store: a Raft log store"),
        "{log}"
    );
}

#[test]
fn backups_at_once_are_bounded_and_a_stalled_one_holds_nothing_else_up() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let (api, raft) = loopback();
    let _node = common::Proc::start(1, "lmdb", &dirs.node("n1"), true, &api, &raft, None);
    // More than the socket buffers and the node's queue hold.
    let value = dirs.node("value");
    // Random bytes: the snapshot format compresses.
    let mut rng = common::Rng::new(0x9e37_79b9_7f4a_7c15);
    let bytes: Vec<u8> = (0..1 << 20).map(|_| rng.next() as u8).collect();
    std::fs::write(&value, bytes).unwrap();
    for i in 0..24 {
        let at = format!("@{}", value.display());
        cli_ok(&api, &["kv", "put", &format!("big/{i}"), &at]);
    }
    let rt = runtime();
    let http = Http::new(Duration::from_secs(30));
    let open = || {
        rt.block_on(http.send(reqwest::Method::GET, &api, "/v1/snapshot", None))
            .unwrap()
    };
    // Two clients that read nothing hold both slots...
    let stalled = [open(), open()];
    for response in &stalled {
        assert_eq!(response.status(), 200);
    }
    let busy = open();
    assert_eq!(busy.status(), 503);
    let body = rt.block_on(busy.text()).unwrap();
    assert!(body.contains("backup_busy"), "{body}");
    // ...while writes go on, and once they go, a backup works again.
    cli_ok(&api, &["kv", "put", "during", "backups"]);
    drop(stalled);
    let file = dirs.node("after.snap");
    let mut saved = None;
    wait_until(10, "a backup slot to free up", || {
        let out = cli(&api, &["snapshot", "save", "--out", file.to_str().unwrap()]);
        saved = out.status.success().then_some(out.stdout);
        saved.is_some()
    });
    let saved: Value = serde_json::from_slice(&saved.unwrap()).unwrap();
    assert!(saved["bytes"].as_u64().unwrap() > 24 << 20, "{saved}");
}

#[test]
fn the_dashboard_files_are_public_and_locked_down_and_whoami_needs_a_key() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let (api, raft) = loopback();
    let _node = common::Proc::start(1, "lmdb", &dirs.node("n1"), true, &api, &raft, None);
    let viewer = cli_ok(&api, &["apikey", "create", "viewer", "--scope", "read"]);
    let viewer = viewer["token"].as_str().unwrap().to_owned();
    let rt = runtime();
    let anonymous = anonymous();
    let get = |path: &str, token: Option<&str>| {
        let mut request = anonymous.get(format!("{}{path}", url(&api)));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        rt.block_on(request.send()).unwrap()
    };
    let root = get("/", None);
    assert!(root.status().is_redirection(), "{}", root.status());
    assert_eq!(root.headers()["location"], "/ui/");
    for (path, kind) in [
        ("/ui/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/style.css", "text/css"),
    ] {
        let page = get(path, None);
        assert_eq!(page.status(), 200, "{path}");
        let headers = page.headers();
        assert!(headers["content-type"].to_str().unwrap().starts_with(kind));
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
        let body = rt.block_on(page.text()).unwrap();
        let root = common::token(&api).unwrap();
        let secret = root.split('.').nth(1).unwrap();
        assert!(!body.contains(secret), "{path} holds no token");
    }
    assert_eq!(get("/v1/auth/whoami", None).status(), 401);
    assert_eq!(get("/v1/auth/whoami", Some("viewer.wrong")).status(), 401);
    let me: Value = rt
        .block_on(get("/v1/auth/whoami", Some(&viewer)).json())
        .unwrap();
    assert_eq!(me["id"], "viewer");
    assert_eq!(me["scopes"], serde_json::json!(["read"]));
}

/// A node whose Raft log is in memory has no log to replay after a crash:
/// it writes every apply to its state store at once, so even the write
/// acknowledged just before a SIGKILL is there when it starts again.
#[test]
fn a_node_with_its_log_in_memory_keeps_each_acknowledged_write_across_a_kill() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let dir = dirs.node("n1");
    let (api, raft) = loopback();
    let config = "log_engine = \"mem\"\n";
    let mut node = common::Proc::start_configured(1, "lmdb", &dir, true, &api, &raft, config);
    for i in 0..5 {
        cli_ok(&api, &["kv", "put", &format!("k{i}"), "v"]);
    }
    node.kill();
    let _node = common::Proc::start_configured(1, "lmdb", &dir, true, &api, &raft, config);
    for i in 0..5 {
        let got = cli_ok(&api, &["kv", "get", &format!("k{i}"), "--stale"]);
        assert_eq!(got["value"], "v", "k{i} after the kill: {got}");
    }
}
