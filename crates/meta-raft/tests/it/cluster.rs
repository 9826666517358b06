//! In-process clusters: real `openraft::Raft` instances over an in-memory
//! network, each node on its own engine.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use meta_raft::Command;
use meta_raft::types::NodeAddr;
use meta_testkit::Engine;
use meta_testkit::router::{Node, Router, applied_index, config, wait_applied, write};

fn put(i: u32) -> Command {
    Command::Put {
        key: format!("key-{i:05}").into_bytes(),
        value: format!("value-{i}").into_bytes(),
    }
}

/// Starts nodes 1..=n on `engines` (in order) and makes node 1 the leader
/// of all of them.
async fn cluster(
    router: &Router,
    dirs: &tempfile::TempDir,
    engines: &[Engine],
    snapshot_every: u64,
) -> Vec<Node> {
    let mut nodes = Vec::new();
    for (i, engine) in engines.iter().enumerate() {
        let id = i as u64 + 1;
        let dir = dirs.path().join(format!("node-{id}"));
        nodes.push(router.start(id, *engine, dir, config(snapshot_every)).await);
    }
    let members: BTreeMap<u64, NodeAddr> = nodes
        .iter()
        .map(|n| (n.id, NodeAddr::new(format!("node-{}", n.id), "")))
        .collect();
    nodes[0].raft.initialize(members).await.expect("initialize");
    nodes[0]
        .raft
        .wait(Some(Duration::from_secs(10)))
        .current_leader(1, "node 1 leads")
        .await
        .expect("a leader");
    nodes
}

/// Waits until every node applied `index` and then until they all hold
/// the same content (a node may briefly apply past `index`, e.g. a
/// membership entry), failing after 30 s with each node's applied state.
async fn converge(nodes: &[&Node], index: u64) -> String {
    for node in nodes {
        wait_applied(node, index).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let hashes: BTreeSet<String> = nodes.iter().map(|n| n.hash()).collect();
        if hashes.len() == 1 {
            return hashes.into_iter().next().expect("one hash");
        }
        if tokio::time::Instant::now() > deadline {
            let states: Vec<String> = nodes
                .iter()
                .map(|n| {
                    format!(
                        "node {}: {:?}",
                        n.id,
                        n.raft.metrics().borrow().last_applied
                    )
                })
                .collect();
            panic!("nodes diverged: {hashes:?}\n{}", states.join("\n"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_on_three_engines_replicate_to_identical_state() {
    let router = Router::default();
    let dirs = tempfile::tempdir().unwrap();
    let nodes = cluster(
        &router,
        &dirs,
        &[Engine::Mem, Engine::Lmdb, Engine::Fjall],
        0,
    )
    .await;
    let leader = nodes[0].raft.clone();
    // 1,000 commands, 50 in flight at a time.
    for chunk in (0..1000u32).collect::<Vec<_>>().chunks(50) {
        let writes = chunk.iter().map(|&i| {
            let leader = leader.clone();
            tokio::spawn(async move { write(&leader, &put(i)).await })
        });
        for w in writes {
            assert!(w.await.unwrap().is_applied());
        }
    }
    let index = applied_index(&leader);
    converge(&nodes.iter().collect::<Vec<_>>(), index).await;
    for node in &nodes {
        assert_eq!(
            node.reader.list(b"key-", usize::MAX).len(),
            1000,
            "node {}",
            node.id
        );
        assert_eq!(
            node.reader.get(b"key-00999").as_deref(),
            Some(&b"value-999"[..])
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restarted_node_recovers_its_state_from_its_data_dir() {
    let router = Router::default();
    let dirs = tempfile::tempdir().unwrap();
    let mut nodes = cluster(
        &router,
        &dirs,
        &[Engine::Lmdb, Engine::Fjall, Engine::Lmdb],
        0,
    )
    .await;
    for i in 0..100 {
        write(&nodes[0].raft, &put(i)).await;
    }
    let index = applied_index(&nodes[0].raft);
    let before = converge(&nodes.iter().collect::<Vec<_>>(), index).await;
    let (id, engine, dir) = router.stop(nodes.remove(1)).await;
    for i in 100..150 {
        write(&nodes[0].raft, &put(i)).await;
    }
    let restarted = router.start(id, engine, dir, config(0)).await;
    // Its own data dir already holds the first 100 writes.
    assert!(restarted.reader.get(b"key-00099").is_some());
    let index = applied_index(&nodes[0].raft);
    let after = converge(&[&nodes[0], &restarted, &nodes[1]], index).await;
    assert_ne!(before, after);
    assert_eq!(restarted.reader.list(b"key-", usize::MAX).len(), 150);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_added_after_the_log_was_purged_catches_up_by_snapshot() {
    let router = Router::default();
    let dirs = tempfile::tempdir().unwrap();
    let nodes = cluster(
        &router,
        &dirs,
        &[Engine::Fjall, Engine::Mem, Engine::Lmdb],
        20,
    )
    .await;
    for i in 0..120 {
        write(&nodes[0].raft, &put(i)).await;
    }
    let leader = &nodes[0].raft;
    leader
        .wait(Some(Duration::from_secs(20)))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index >= 100),
            "the leader purged its log",
        )
        .await
        .expect("purged");
    let learner = router
        .start(4, Engine::Lmdb, dirs.path().join("node-4"), config(20))
        .await;
    leader
        .add_learner(4, NodeAddr::new("node-4", ""), true)
        .await
        .expect("add learner");
    let index = applied_index(leader);
    wait_applied(&learner, index).await;
    let snapshot = learner.raft.metrics().borrow().snapshot;
    assert!(
        snapshot.is_some(),
        "the learner must have installed a snapshot"
    );
    converge(&[&nodes[0], &nodes[1], &nodes[2], &learner], index).await;
    assert_eq!(learner.reader.list(b"key-", usize::MAX).len(), 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_learner_becomes_a_voter_and_a_voter_is_removed() {
    let router = Router::default();
    let dirs = tempfile::tempdir().unwrap();
    let nodes = cluster(
        &router,
        &dirs,
        &[Engine::Mem, Engine::Fjall, Engine::Lmdb],
        0,
    )
    .await;
    let leader = nodes[0].raft.clone();
    write(&leader, &put(1)).await;
    let learner = router
        .start(4, Engine::Fjall, dirs.path().join("node-4"), config(0))
        .await;
    leader
        .add_learner(4, NodeAddr::new("node-4", ""), true)
        .await
        .expect("add learner");
    leader
        .change_membership([1u64, 2, 3, 4], false)
        .await
        .expect("promote node 4");
    leader
        .change_membership([1u64, 3, 4], false)
        .await
        .expect("remove node 2");
    let voters: BTreeSet<u64> = leader
        .metrics()
        .borrow()
        .membership_config
        .membership()
        .voter_ids()
        .collect();
    assert_eq!(voters, BTreeSet::from([1, 3, 4]));
    write(&leader, &put(2)).await;
    let index = applied_index(&leader);
    converge(&[&nodes[0], &nodes[2], &learner], index).await;
    assert!(learner.reader.get(b"key-00002").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_partitioned_follower_rejoins_and_converges() {
    let router = Router::default();
    let dirs = tempfile::tempdir().unwrap();
    let nodes = cluster(
        &router,
        &dirs,
        &[Engine::Lmdb, Engine::Mem, Engine::Fjall],
        0,
    )
    .await;
    write(&nodes[0].raft, &put(0)).await;
    router.isolate(3);
    for i in 1..100 {
        write(&nodes[0].raft, &put(i)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        nodes[2].reader.get(b"key-00099").is_none(),
        "an isolated node cannot have the new writes"
    );
    router.heal(3);
    let index = applied_index(&nodes[0].raft);
    converge(&nodes.iter().collect::<Vec<_>>(), index).await;
    assert!(nodes[2].reader.get(b"key-00099").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_api_key_secret_appears_nowhere_in_store_log_or_snapshot() {
    use meta_raft::model::{ApiKeyId, ApiKeyRecord};
    use meta_raft::{ApiKeyCheck, ApiKeySecret};
    use meta_store_api::snapshot::SnapshotReader;

    let router = Router::default();
    let dirs = tempfile::tempdir().unwrap();
    let nodes = cluster(
        &router,
        &dirs,
        &[Engine::Mem, Engine::Lmdb, Engine::Fjall],
        0,
    )
    .await;
    let secret = ApiKeySecret::generate().unwrap();
    let record = ApiKeyRecord {
        id: ApiKeyId("deploy-bot".into()),
        name: "deploy bot".into(),
        scopes: vec!["write".into()],
        created_at_ms: 1,
        expires_at_ms: None,
        revoked_at_ms: None,
        secret_hash: secret.hash(),
    };
    write(&nodes[0].raft, &Command::CreateApiKey(record)).await;
    let index = applied_index(&nodes[0].raft);
    converge(&nodes.iter().collect::<Vec<_>>(), index).await;
    let plain = secret.expose().as_bytes();
    let contains = |hay: &[u8]| hay.windows(plain.len()).any(|w| w == plain);
    for node in &nodes {
        assert_eq!(
            node.reader
                .verify_api_key(&ApiKeyId("deploy-bot".into()), &secret, 2),
            ApiKeyCheck::Valid
        );
        // Every key and value of the store: metadata, Raft log, vote, ...
        let all = node.store.scan(b"").unwrap();
        assert!(
            all.iter().any(|(k, _)| k.starts_with(b"/raft/log/")),
            "the log is in the store"
        );
        assert!(
            !all.iter().any(|(k, v)| contains(k) || contains(v)),
            "node {} stores the secret",
            node.id
        );
        // Every record of a snapshot.
        let mut stream = node.store.snapshot(b"/meta/").unwrap();
        let mut reader = SnapshotReader::new(&mut stream).unwrap();
        while let Some((k, v)) = reader.next_record().unwrap() {
            assert!(
                !contains(k) && !contains(v),
                "a snapshot of node {} holds the secret",
                node.id
            );
        }
    }
    assert!(!format!("{secret:?} {secret}").contains(secret.expose()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_proposals_share_log_entries_and_keep_their_own_results() {
    use meta_raft::{Proposer, Rejection, Response};

    let router = Router::default();
    let dirs = tempfile::tempdir().unwrap();
    let nodes = cluster(
        &router,
        &dirs,
        &[Engine::Lmdb, Engine::Fjall, Engine::Mem],
        0,
    )
    .await;
    let leader = nodes[0].raft.clone();
    let before = leader.metrics().borrow().last_log_index.unwrap_or(0);
    let proposer = Proposer::new(leader.clone(), 256);
    // 200 writers at once; every fourth one is a compare-and-swap that must
    // fail, and each caller must get its own answer.
    let tasks: Vec<_> = (0..200u32)
        .map(|i| {
            let proposer = proposer.clone();
            tokio::spawn(async move {
                let command = if i % 4 == 3 {
                    Command::CompareAndSwap {
                        key: b"never-set".to_vec(),
                        expected: Some(b"x".to_vec()),
                        new: Some(i.to_be_bytes().to_vec()),
                    }
                } else {
                    put(i)
                };
                (i, proposer.propose(command).await.unwrap())
            })
        })
        .collect();
    for task in tasks {
        let (i, response) = task.await.unwrap();
        if i % 4 == 3 {
            assert_eq!(
                response,
                Response::Rejected(Rejection::CasMismatch { current: None }),
                "proposal {i}"
            );
        } else {
            assert!(response.is_applied(), "proposal {i}: {response:?}");
        }
    }
    let entries = leader.metrics().borrow().last_log_index.unwrap_or(0) - before;
    assert!(
        entries < 200,
        "200 concurrent proposals took {entries} log entries: no grouping"
    );
    let index = applied_index(&leader);
    converge(&nodes.iter().collect::<Vec<_>>(), index).await;
    assert_eq!(nodes[2].reader.list(b"key-", usize::MAX).len(), 150);
    // A lone proposal still travels alone, and an oversized one is refused
    // before it can reach the log.
    assert!(proposer.propose(put(1000)).await.unwrap().is_applied());
    let huge = Command::Put {
        key: b"huge".to_vec(),
        value: vec![0; meta_raft::MAX_COMMAND_LEN],
    };
    assert!(matches!(
        proposer.propose(huge).await,
        Err(meta_raft::ProposeError::Rejected(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_proposal_whose_caller_gave_up_before_its_round_is_never_written() {
    use meta_raft::Proposer;

    let router = Router::default();
    let dirs = tempfile::tempdir().unwrap();
    let nodes = cluster(&router, &dirs, &[Engine::Mem, Engine::Mem, Engine::Mem], 0).await;
    let leader = nodes[0].raft.clone();
    let proposer = Proposer::new(leader.clone(), 256);
    // The followers cut off (for less than an election timeout): the next
    // round cannot commit, and the proposer waits on it.
    router.isolate(2);
    router.isolate(3);
    let blocked = {
        let proposer = proposer.clone();
        tokio::spawn(async move { proposer.propose(put(1)).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Callers that give up while queued behind it (the HTTP API answers
    // them `outcome_unknown` on its deadline; they may read and retry).
    for i in 100..105 {
        let gave_up =
            tokio::time::timeout(Duration::from_millis(10), proposer.propose(put(i))).await;
        assert!(gave_up.is_err(), "proposal {i} cannot have committed yet");
    }
    router.heal(2);
    router.heal(3);
    assert!(blocked.await.unwrap().unwrap().is_applied());
    assert!(proposer.propose(put(2)).await.unwrap().is_applied());
    let index = applied_index(&leader);
    converge(&nodes.iter().collect::<Vec<_>>(), index).await;
    let written = nodes[0].reader.list(b"key-", usize::MAX);
    assert_eq!(
        written.len(),
        2,
        "only the proposals whose callers waited: {written:?}"
    );
}
