//! Watches and leases with real node processes: watchers that reconnect
//! on their own and on purpose, while nodes and leaders are killed and
//! restarted under random writes, receive exactly the cluster's history;
//! a node serves its history window after a restart and answers `410
//! compacted` beyond it; a watcher that stops reading is cut off with
//! `lagged` and resumes; a kept-alive lease survives a leader kill while
//! an abandoned one ends on every node at one revision; the lock admits
//! one holder at a time and is released when its holder dies.
//!
//! `WATCH_SEED=<n>` replays a run of the model test.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{
    Dirs, Http, Proc, ProcCluster, Rng, cli, free_port, runtime, seed_from_env, wait_until,
};
use meta_client::{Client, ClientBuilder, Consistency, WatchMessage, WatchRequest, wire};

fn client(apis: &[String], first: usize) -> Arc<Client> {
    let mut endpoints = apis.to_vec();
    endpoints.rotate_left(first % apis.len());
    Arc::new(
        ClientBuilder::new(endpoints)
            .ca(common::test_ca().join("ca.pem"))
            .token(common::token(&apis[0]).unwrap())
            .retries(30, Duration::from_millis(100))
            .build()
            .unwrap(),
    )
}

/// A change as compared: revision, key, and the value after it (`None`:
/// deleted).
type Seen = (u64, String, Option<String>);

fn seen(e: &wire::WatchEvent) -> Seen {
    let value = match e.kind {
        wire::EventType::Put => Some(e.record.value.value.clone().unwrap_or_default()),
        wire::EventType::Delete => None,
    };
    (e.revision, e.key.clone(), value)
}

/// Watches until a progress report reaches `until` (0: not known yet,
/// read from `target`), collecting the changes.
async fn collect(
    client: &Client,
    request: WatchRequest,
    target: &AtomicU64,
    reconnect_every: Option<&mut Rng>,
) -> Vec<Seen> {
    let mut events = Vec::new();
    let mut request = request;
    let mut rng = reconnect_every;
    loop {
        let mut watch = client
            .watch(request.clone())
            .idle_timeout(Duration::from_secs(5));
        let mut budget = rng.as_mut().map_or(u64::MAX, |r| 1 + r.below(40));
        // Dropped on purpose only between revisions (a new watch from the
        // next revision would hand out a partly seen one again).
        let between = |watch: &meta_client::Watch<'_>, events: &[Seen]| {
            events.last().is_none_or(|e| watch.revision() >= Some(e.0))
        };
        while budget > 0 || !between(&watch, &events) {
            match tokio::time::timeout(Duration::from_secs(90), watch.next()).await {
                Ok(Ok(WatchMessage::Event(e))) => events.push(seen(&e)),
                Ok(Ok(WatchMessage::Progress(r))) => {
                    if r >= target.load(Ordering::Acquire) {
                        return events;
                    }
                }
                // No endpoint answered this time (nodes restarting): the
                // next call tries again.
                Ok(Err(e)) => {
                    assert!(!e.is_compacted(), "no node kept the history: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(_) => panic!("a watch stalled for 90 s"),
            }
            budget = budget.saturating_sub(1);
        }
        // A new watch, on purpose, from where this one got to.
        if let Some(last) = watch.revision() {
            request = request.from_revision(last + 1);
        }
    }
}

#[test]
fn watchers_get_every_change_once_in_order_across_kills_restarts_and_leader_changes() {
    let seed = seed_from_env("WATCH_SEED");
    eprintln!("WATCH_SEED={seed}");
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let mut cluster = ProcCluster::new(&dirs, &["lmdb", "fjall", "lmdb"]);
    // Snapshots as often as by default: a restarted node catches up from
    // the log, history included (one that installs a snapshot has no
    // history before it: see the state machine's tests).
    cluster.config = Some("[raft]\nsnapshot_every = 10000\n[watch]\nprogress_ms = 300\n".into());
    let mut nodes = cluster.form();
    let apis = cluster.apis();
    let rt = runtime();
    let writer = client(&apis, 0);
    let start = rt.block_on(writer.put("w/start", b"0")).unwrap().revision;
    let target = Arc::new(AtomicU64::new(u64::MAX));

    // Watchers on every node, of several prefixes and keys; half of them
    // also drop their watch now and then and start a new one.
    let specs = [
        ("", false),
        ("w/a/", false),
        ("w/b/", false),
        ("w/a/1", true),
        ("w/", false),
        ("w/b/2", true),
    ];
    let watchers: Vec<_> = specs
        .iter()
        .enumerate()
        .map(|(i, (name, exact))| {
            let (client, target) = (client(&apis, i), target.clone());
            let mut rng = Rng::new(seed.wrapping_add(i as u64) | 1);
            let request = match exact {
                true => WatchRequest::kv_key(*name),
                false => WatchRequest::kv_prefix(*name),
            }
            .from_revision(start + 1);
            rt.spawn(async move {
                let reconnect = (i % 2 == 1).then_some(&mut rng);
                collect(&client, request, &target, reconnect).await
            })
        })
        .collect();

    // Random writes, acknowledged ones remembered.
    let stop = Arc::new(AtomicBool::new(false));
    let writes = {
        let (writer, stop) = (writer.clone(), stop.clone());
        let mut rng = Rng::new(seed);
        rt.spawn(async move {
            let mut acked: Vec<Seen> = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Acquire) {
                n += 1;
                let key = format!("w/{}/{}", ["a", "b"][rng.below(2) as usize], rng.below(4));
                let value = format!("v{n}");
                match rng.below(10) {
                    0..=5 => {
                        if let Ok(w) = writer.put(&key, value.as_bytes()).await {
                            acked.push((w.revision, key, Some(value)));
                        }
                    }
                    6 | 7 => {
                        let _ = writer.delete(&key).await;
                    }
                    8 => {
                        let txn = wire::TxnRequest {
                            compare: vec![],
                            success: vec![
                                wire::TxnOp::put("w/a/1", value.as_bytes()),
                                wire::TxnOp::put("w/b/2", value.as_bytes()),
                            ],
                            failure: vec![],
                        };
                        if let Ok(done) = writer.txn(&txn).await {
                            acked.push((done.revision, "w/a/1".into(), Some(value.clone())));
                            acked.push((done.revision, "w/b/2".into(), Some(value)));
                        }
                    }
                    _ => {
                        let _ = writer.delete_prefix("w/b/").await;
                    }
                }
            }
            acked
        })
    };

    // Chaos: kill a node (the leader every other time), restart it.
    let mut rng = Rng::new(seed ^ 0x9e37_79b9);
    for round in 0..4 {
        std::thread::sleep(Duration::from_millis(1500));
        let victim = if round % 2 == 0 {
            let status = rt.block_on(writer.status()).unwrap();
            status.leader.map_or(0, |l| l as usize - 1)
        } else {
            rng.below(3) as usize
        };
        nodes[victim].kill();
        std::thread::sleep(Duration::from_millis(1000 + rng.below(1000)));
        nodes[victim] = cluster.start(victim);
    }
    std::thread::sleep(Duration::from_millis(1000));
    stop.store(true, Ordering::Release);
    let acked = rt.block_on(writes).unwrap();
    let last = rt
        .block_on(writer.read("w/start", Consistency::Linearizable))
        .unwrap()
        .revision;
    target.store(last, Ordering::Release);
    assert!(acked.len() > 20, "only {} writes got through", acked.len());

    // The reference: the whole history, read at the end from one node.
    let reference = rt.block_on(async {
        let one = client(&apis, 0);
        let all = WatchRequest::kv_prefix("").from_revision(start + 1);
        collect(&one, all, &AtomicU64::new(last), None).await
    });
    // It is the cluster's: every acknowledged write is in it, at its
    // revision, and replaying it gives the state every node has.
    for write in &acked {
        assert!(reference.contains(write), "acknowledged {write:?} missing");
    }
    let mut state: BTreeMap<String, String> = BTreeMap::new();
    for (_, key, value) in &reference {
        match value {
            Some(v) => state.insert(key.clone(), v.clone()),
            None => state.remove(key),
        };
    }
    let listed = rt
        .block_on(writer.list_all("w/", 10_000, Consistency::Linearizable))
        .unwrap();
    let listed: BTreeMap<String, String> = listed
        .items
        .iter()
        .filter(|kv| kv.key != "w/start")
        .map(|kv| (kv.key.clone(), kv.value.value.clone().unwrap_or_default()))
        .collect();
    assert_eq!(state, listed, "the history replays to the state");
    assert!(
        reference.windows(2).all(|w| w[0].0 <= w[1].0),
        "in revision order"
    );

    // Each watcher got exactly its part of it: once, in order, no gap.
    for ((name, exact), handle) in specs.iter().zip(watchers) {
        let got = rt.block_on(handle).unwrap();
        let want: Vec<Seen> = reference
            .iter()
            .filter(|(_, k, _)| match exact {
                true => k == name,
                false => k.starts_with(name),
            })
            .cloned()
            .collect();
        same_history(
            &got,
            &want,
            &format!("watcher of {name:?} (exact: {exact})"),
        );
    }
    let hashes: Vec<&Proc> = nodes.iter().collect();
    common::converged_hash(&hashes);
}

/// Fails at the first difference, showing what is around it.
fn same_history(got: &[Seen], want: &[Seen], what: &str) {
    if let Some(i) = (0..got.len().max(want.len())).find(|&i| got.get(i) != want.get(i)) {
        let around = |v: &[Seen]| v[i.saturating_sub(2)..(i + 3).min(v.len())].to_vec();
        panic!(
            "{what}: first difference at {i} of {} received / {} expected:\n  received {:?}\n  expected {:?}",
            got.len(),
            want.len(),
            around(got),
            around(want)
        );
    }
}

/// A single node with this config.
fn single(dirs: &Dirs, config: &str) -> (Proc, String) {
    let api = format!("127.0.0.1:{}", free_port());
    let raft = format!("127.0.0.1:{}", free_port());
    let dir = dirs.node("n1");
    let node = Proc::start_configured(1, "lmdb", &dir, true, &api, &raft, config);
    (node, raft)
}

async fn text_until(response: reqwest::Response, marker: &str) -> String {
    let mut response = response;
    let mut text = String::new();
    while !text.contains(marker) {
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk())
            .await
            .expect("the watch answers")
            .unwrap()
            .expect("the stream goes on");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

/// The `id:` lines of an event stream, in order.
fn ids(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|id| id.parse().unwrap())
        .collect()
}

#[test]
fn a_node_serves_its_history_window_after_a_restart_and_answers_410_beyond_it() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let config = "[watch]\nhistory_revisions = 20\nprogress_ms = 300\n";
    let (mut node, raft) = single(&dirs, config);
    let api = node.api.clone();
    let rt = runtime();
    let writer = client(std::slice::from_ref(&api), 0);
    let mut last = 0;
    for i in 0..50 {
        last = rt
            .block_on(writer.put(&format!("k/{i}"), b"v"))
            .unwrap()
            .revision;
    }
    let oldest = last - 20 + 1;
    let http = Http::new(Duration::from_secs(10));
    for round in ["before", "after"] {
        // Too old: 410 compacted, naming the oldest revision it can serve.
        let gone = rt
            .block_on(http.send(
                reqwest::Method::GET,
                &api,
                "/v1/watch?prefix=k/&from_revision=1",
                None,
            ))
            .unwrap();
        assert_eq!(gone.status(), 410, "{round} a restart");
        let body: wire::ErrorResponse = rt.block_on(gone.json()).unwrap();
        assert_eq!(
            (body.error.code.as_str(), body.error.oldest_revision),
            ("compacted", Some(oldest)),
            "{round} a restart"
        );
        let err = rt
            .block_on(
                writer
                    .watch(WatchRequest::kv_prefix("k/").from_revision(oldest - 1))
                    .next(),
            )
            .unwrap_err();
        assert!(
            err.is_compacted() && err.oldest_revision() == Some(oldest),
            "{err}"
        );
        let out = cli(
            &api,
            &["watch", "k/", "--from-revision", "1", "--count", "1"],
        );
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("compacted"));
        // Within the window: every change, once.
        let got = rt.block_on(async {
            let all = WatchRequest::kv_prefix("k/").from_revision(oldest);
            collect(&writer, all, &AtomicU64::new(last), None).await
        });
        let revisions: Vec<u64> = got.iter().map(|s| s.0).collect();
        assert_eq!(
            revisions,
            (oldest..=last).collect::<Vec<_>>(),
            "{round} a restart"
        );
        // `Last-Event-ID` resumes right after that revision.
        let resumed = rt.block_on(async {
            let token = common::token(&api).unwrap();
            let http = meta_node::client::http_builder()
                .tls_backend_preconfigured(
                    meta_node::tls::https_client_config(&common::test_ca().join("ca.pem")).unwrap(),
                )
                .build()
                .unwrap();
            let response = http
                .get(format!("{}/v1/watch?prefix=k/", common::url(&api)))
                .bearer_auth(token)
                .header("Last-Event-ID", (last - 3).to_string())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(
                response.headers()["content-type"],
                "text/event-stream",
                "an EventSource needs this"
            );
            text_until(response, "event: progress").await
        });
        assert_eq!(
            ids(&resumed),
            [last - 2, last - 1, last, last],
            "three events and a progress report: {resumed}"
        );
        if round == "before" {
            node.kill();
            node = Proc::start_configured(1, "lmdb", &dirs.node("n1"), true, &api, &raft, config);
        }
    }
}

#[test]
fn a_watcher_that_stops_reading_is_cut_off_with_lagged_and_resumes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let (node, _raft) = single(&dirs, "[watch]\nprogress_ms = 300\n");
    let api = node.api.clone();
    let rt = runtime();
    let writer = client(std::slice::from_ref(&api), 0);
    let start = rt.block_on(writer.put("s/start", b"0")).unwrap().revision;

    // A reader that takes the headers and then stops reading, with a tiny
    // receive buffer.
    let mut stalled = rt.block_on(async {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let addr: std::net::SocketAddr = api.parse().unwrap();
        socket.connect(&addr.into()).unwrap();
        socket.set_nonblocking(true).unwrap();
        let tcp = tokio::net::TcpStream::from_std(socket.into()).unwrap();
        let config =
            meta_node::tls::https_client_config(&common::test_ca().join("ca.pem")).unwrap();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        let request = format!(
            "GET /v1/watch?prefix=s/&from_revision={} HTTP/1.1\r\nHost: {api}\r\n\
             Authorization: Bearer {}\r\n\r\n",
            start + 1,
            common::token(&api).unwrap()
        );
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut head = [0u8; 64];
        let n = tls.read(&mut head).await.unwrap();
        assert!(
            head[..n].starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&head[..n])
        );
        tls
    });
    // A reader that keeps up.
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let keeping_up = {
        let (writer, target) = (writer.clone(), target.clone());
        rt.spawn(async move {
            let request = WatchRequest::kv_prefix("s/").from_revision(start + 1);
            collect(&writer, request, &target, None).await
        })
    };
    // Enough bytes to fill every buffer on the way, then more notices
    // than a watcher may be behind.
    let big = vec![b'x'; 64 << 10];
    for i in 0..100 {
        rt.block_on(writer.put(&format!("s/big/{i}"), &big))
            .unwrap();
    }
    let mut last = 0;
    for i in 0..1100 {
        last = rt
            .block_on(writer.put(&format!("s/small/{}", i % 10), b"v"))
            .unwrap()
            .revision;
    }
    target.store(last, Ordering::Release);
    let caught_up = rt.block_on(keeping_up).unwrap();
    assert_eq!(
        caught_up.len() as u64,
        last - start,
        "the reader that kept up got everything"
    );

    // The stalled reader now reads: a prefix of the changes, then `end`.
    let text = rt.block_on(async {
        let mut text = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(
                Instant::now() < deadline,
                "no `end` message: the reader that stopped was never cut off"
            );
            let n = tokio::time::timeout(Duration::from_secs(30), stalled.read(&mut buf))
                .await
                .expect("the stream ends")
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            text.extend_from_slice(&buf[..n]);
            if String::from_utf8_lossy(&text).contains("event: end") {
                // Its data line follows in the same message.
                let s = String::from_utf8_lossy(&text).into_owned();
                if s[s.find("event: end").unwrap()..].contains("\n\n") {
                    break;
                }
            }
        }
        String::from_utf8_lossy(&text).into_owned()
    });
    let end = text.split("event: end\n").nth(1).expect("an end message");
    let data = end.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
    let end: wire::WatchEnd = serde_json::from_str(data).unwrap();
    assert_eq!(end.code, "lagged", "{data}");
    assert!(end.revision < last, "it was cut off before the end");
    // The first message is the progress report of a watch caught up.
    let got = ids(&text);
    assert_eq!(
        got[1..],
        (start + 1..=end.revision).collect::<Vec<_>>(),
        "a gapless prefix up to the revision it resumes after"
    );
    // It resumes from there and misses nothing.
    let rest = rt.block_on(async {
        let request = WatchRequest::kv_prefix("s/").from_revision(end.revision + 1);
        collect(&writer, request, &AtomicU64::new(last), None).await
    });
    assert_eq!(rest.len() as u64, last - end.revision);
    drop(node);
}

/// The node whose API is `api`: its cluster-map entry, by a stale read of
/// that node.
fn node_state(rt: &tokio::runtime::Runtime, api: &str, id: u64) -> Option<wire::NodeState> {
    let one = client(&[api.to_string()], 0);
    let nodes = rt.block_on(one.nodes()).ok()?;
    nodes.nodes.iter().find(|n| n.id == id).map(|n| n.state)
}

#[test]
fn a_kept_lease_survives_a_leader_kill_and_an_abandoned_one_ends_everywhere_at_one_revision() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let mut cluster = ProcCluster::new(&dirs, &["lmdb", "fjall", "lmdb"]);
    cluster.config = Some("[watch]\nprogress_ms = 300\n".into());
    let mut nodes = cluster.form();
    let apis = cluster.apis();
    let rt = runtime();
    let c = client(&apis, 0);
    let kept = rt.block_on(c.grant_lease(5)).unwrap().id;
    let abandoned = rt.block_on(c.grant_lease(2)).unwrap().id;
    let node = |address: &str| wire::NodeRequest {
        address: address.into(),
        state: wire::NodeState::Active,
        labels: BTreeMap::new(),
    };
    rt.block_on(c.put_with_lease("svc/kept", b"up", kept))
        .unwrap();
    rt.block_on(c.set_node_with_lease(10, &node("10.0.0.10:1"), kept))
        .unwrap();
    let bound = rt
        .block_on(c.put_with_lease("svc/abandoned", b"up", abandoned))
        .unwrap();
    rt.block_on(c.set_node_with_lease(11, &node("10.0.0.11:1"), abandoned))
        .unwrap();
    let since = Instant::now();
    // A shard manager's view: the cluster map, watched.
    let down = rt.spawn({
        let c = client(&apis, 1);
        async move {
            let request = WatchRequest::prefix(meta_client::WatchTarget::Cluster, "")
                .from_revision(bound.revision);
            let mut watch = c.watch(request);
            loop {
                if let WatchMessage::Event(e) = watch.next().await.unwrap()
                    && e.key == "11"
                    && e.record.node.as_ref().map(|n| n.state) == Some(wire::NodeState::Down)
                {
                    return e.revision;
                }
            }
        }
    });
    let keeper = rt.spawn({
        let c = client(&apis, 2);
        async move { c.keep_alive(kept, 5).await }
    });
    // The leader dies a second in.
    std::thread::sleep(Duration::from_secs(1));
    let leader = rt.block_on(c.status()).unwrap().leader.unwrap() as usize - 1;
    nodes[leader].kill();
    let down_at = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(30), down).await })
        .expect("the abandoned lease ends")
        .unwrap();
    let took = since.elapsed();
    assert!(
        took < Duration::from_secs(2 + 10),
        "ended after {took:?}: TTL + an election, with room for a slow machine"
    );
    // At one revision: its key went at the revision its node went down.
    let gone = rt.block_on(async {
        let request = WatchRequest::kv_key("svc/abandoned").from_revision(bound.revision + 1);
        let mut watch = c.watch(request);
        loop {
            if let WatchMessage::Event(e) = watch.next().await.unwrap() {
                return (e.kind, e.revision);
            }
        }
    });
    assert_eq!(gone, (wire::EventType::Delete, down_at));
    // Well past the kept lease's TTL: it lives, on every live node.
    std::thread::sleep(Duration::from_secs(6));
    assert!(!keeper.is_finished(), "the keepalive goes on");
    nodes[leader] = cluster.start(leader);
    for api in &apis {
        let one = client(std::slice::from_ref(api), 0);
        wait_until(20, "the restarted node catches up", || {
            rt.block_on(one.get_with("svc/abandoned", Consistency::Stale))
                .is_ok_and(|kv| kv.is_none())
        });
        let kv = rt
            .block_on(one.get_with("svc/kept", Consistency::Stale))
            .unwrap()
            .expect("the kept lease's key lives");
        assert_eq!(kv.lease, Some(kept));
        assert_eq!(node_state(&rt, api, 10), Some(wire::NodeState::Active));
        assert_eq!(node_state(&rt, api, 11), Some(wire::NodeState::Down));
    }
    let leases: Vec<u64> = rt
        .block_on(c.leases())
        .unwrap()
        .leases
        .iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(leases, [kept]);
    let refs: Vec<&Proc> = nodes.iter().collect();
    common::converged_hash(&refs);
    keeper.abort();
}

#[test]
fn the_lock_admits_one_holder_at_a_time_and_a_dead_holder_releases_it_within_its_ttl() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let (node, _raft) = single(&dirs, "");
    let api = node.api.clone();
    let log = dirs.node("holders.log");
    let script = format!(
        "echo start $$ >> {log}; sleep 0.3; echo end $$ >> {log}",
        log = log.display()
    );
    let contenders: Vec<_> = (0..4)
        .map(|_| {
            common::cli_command(
                &api,
                &["lock", "jobs/lock", "--ttl", "5", "--", "sh", "-c", &script],
            )
            .spawn()
            .unwrap()
        })
        .collect();
    for mut c in contenders {
        assert!(c.wait().unwrap().success());
    }
    let lines: Vec<String> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(lines.len(), 8, "{lines:?}");
    for pair in lines.chunks(2) {
        let (start, end) = (&pair[0], &pair[1]);
        assert!(
            start.starts_with("start ") && end.strip_prefix("end ") == start.strip_prefix("start "),
            "one holder at a time: {lines:?}"
        );
    }
    // The command's exit status is the lock's.
    let out = cli(&api, &["lock", "jobs/lock", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3));

    // A holder that dies: the lock is free within its TTL.
    let mut holder = common::cli_command(&api, &["lock", "jobs/held", "--ttl", "2"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first_line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut first_line,
    )
    .unwrap();
    assert!(first_line.starts_with("locked `jobs/held`"), "{first_line}");
    holder.kill().unwrap();
    let _ = holder.wait();
    let since = Instant::now();
    let out = cli(&api, &["lock", "jobs/held", "--ttl", "2", "--", "true"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        since.elapsed() < Duration::from_secs(2 + 6),
        "released {:?} after its holder died (TTL 2 s)",
        since.elapsed()
    );
}

#[test]
fn leases_and_their_keys_survive_an_engine_migration_and_a_backup() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let (mut node, raft) = single(&dirs, "");
    let api = node.api.clone();
    let rt = runtime();
    let c = client(std::slice::from_ref(&api), 0);
    let lease = rt.block_on(c.grant_lease(600)).unwrap().id;
    rt.block_on(c.put_with_lease("eph/a", b"1", lease)).unwrap();
    rt.block_on(c.put("plain", b"2")).unwrap();
    node.stop();
    let dir = dirs.node("n1");
    let lmdb = format!("lmdb:{}", dir.join("lmdb").display());
    let fjall = format!("fjall:{}", dir.join("fjall").display());
    let backup = dirs.node("backup.snap");
    common::bin_ok(&[
        "snapshot",
        "save",
        "--store",
        &lmdb,
        "--out",
        common::arg(&backup),
    ]);
    common::bin_ok(&["migrate", "--from", &lmdb, "--to", &fjall]);
    let check = |rt: &tokio::runtime::Runtime| {
        let kv = rt.block_on(c.get("eph/a")).unwrap().expect("kept");
        assert_eq!(kv.lease, Some(lease));
        let info = rt
            .block_on(c.lease(lease))
            .unwrap()
            .expect("the lease is there");
        assert_eq!(info.keys, ["eph/a"]);
    };
    // On the migrated store: the lease and its key are there.
    let mut node = Proc::start_configured(1, "fjall", &dir, true, &api, &raft, "");
    check(&rt);
    node.stop();
    // Restored from the backup (taken before the migration): there too.
    std::fs::remove_dir_all(dir.join("fjall")).unwrap();
    common::bin_ok(&[
        "snapshot",
        "restore",
        "--store",
        &fjall,
        "--in",
        common::arg(&backup),
    ]);
    let node = Proc::start_configured(1, "fjall", &dir, true, &api, &raft, "");
    check(&rt);
    // Its end still takes the key with it, and only that.
    rt.block_on(c.revoke_lease(lease)).unwrap();
    assert!(rt.block_on(c.get("eph/a")).unwrap().is_none());
    assert!(rt.block_on(c.get("plain")).unwrap().is_some());
    assert!(rt.block_on(c.lease(lease)).unwrap().is_none());
    drop(node);
}

fn client_with(api: &str, token: &str) -> Client {
    ClientBuilder::new([api.to_string()])
        .ca(common::test_ca().join("ca.pem"))
        .token(token)
        .retries(5, Duration::from_millis(100))
        .build()
        .unwrap()
}

#[test]
fn leases_belong_to_their_key_and_a_revoked_key_loses_its_open_watches() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let (node, _raft) = single(&dirs, "[watch]\nprogress_ms = 200\n");
    let api = node.api.clone();
    let rt = runtime();
    let root = client(std::slice::from_ref(&api), 0);
    let key = |id: &str, scope: &str| {
        let made = common::cli_ok(&api, &["apikey", "create", id, "--scope", scope]);
        client_with(&api, made["token"].as_str().unwrap())
    };
    let (owner, other, reader) = (
        key("owner", "kv:write:app/"),
        key("other", "kv:write:app/"),
        key("reader", "kv:read:app/"),
    );
    let lease = rt.block_on(owner.grant_lease(30)).unwrap().id;
    rt.block_on(owner.put_with_lease("app/mine", b"1", lease))
        .unwrap();
    // Another writer, even of the same keys, cannot use it...
    let refused = |e: meta_client::ClientError| e.status() == Some(403);
    assert!(refused(
        rt.block_on(other.keep_alive_once(lease)).unwrap_err()
    ));
    assert!(refused(rt.block_on(other.revoke_lease(lease)).unwrap_err()));
    assert!(refused(
        rt.block_on(other.put_with_lease("app/x", b"1", lease))
            .unwrap_err()
    ));
    assert!(refused(rt.block_on(reader.lease(lease)).unwrap_err()));
    assert!(
        rt.block_on(other.leases()).unwrap().leases.is_empty(),
        "nor see it"
    );
    assert!(rt.block_on(other.get("app/x")).unwrap().is_none());
    // ...its owner and an admin can.
    assert_eq!(rt.block_on(owner.keep_alive_once(lease)).unwrap().id, lease);
    assert_eq!(rt.block_on(root.keep_alive_once(lease)).unwrap().id, lease);
    let seen = rt.block_on(owner.lease(lease)).unwrap().unwrap();
    assert_eq!(seen.keys, ["app/mine"]);
    assert_eq!(rt.block_on(owner.leases()).unwrap().leases.len(), 1);

    // A watch lives only as long as its key.
    let ended = rt.spawn(async move {
        let mut watch = reader.watch(WatchRequest::kv_prefix("app/"));
        loop {
            if let Err(e) = watch.next().await {
                return e;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(500));
    common::cli_ok(&api, &["apikey", "revoke", "reader"]);
    let error = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), ended).await })
        .expect("the watch ends once its key is revoked")
        .unwrap();
    assert_eq!(error.code(), Some("unauthenticated"), "{error}");
    rt.block_on(owner.revoke_lease(lease)).unwrap();
    assert!(rt.block_on(owner.get("app/mine")).unwrap().is_none());
}
