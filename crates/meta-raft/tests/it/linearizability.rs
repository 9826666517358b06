//! Linearizability under faults: a 3-node in-process cluster (lmdb, fjall,
//! lmdb; snapshots and purges every 30 entries) serves concurrent clients
//! doing linearizable reads, writes and compare-and-swap on a few keys,
//! through every node, while a nemesis isolates the leader or any node,
//! drops and delays messages (requests and answers) and restarts nodes.
//! Every operation is recorded with its invocation and answer times (a
//! timed-out or interrupted write is an unknown outcome), and each key's
//! history must be linearizable (`linearizability/checker.rs`, itself
//! tested on known histories). A run must also complete a minimum number
//! of operations, so an unavailable cluster cannot pass.
//!
//! `META_LIN_SEEDS` (default 3), `META_LIN_SECONDS` (default 5) and
//! `META_LIN_SEED` (the first seed; each run prints its seeds) size and
//! replay the campaign.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meta_raft::model::Rejection;
use meta_raft::types::{NodeAddr, Raft};
use meta_raft::{Command, MetadataReader, ProposeError, Proposer, Response};
use meta_testkit::Engine;
use meta_testkit::checker::{History, Kind, Op, Value};
use meta_testkit::router::{Node, Router, config};
use meta_testkit::{Rng, checker, env_u64};

const KEYS: u64 = 3;
const CLIENTS: u64 = 6;
/// Completed operations (known outcome) a run must reach.
const MIN_COMPLETED: usize = 150;

/// What clients use to reach one node.
#[derive(Clone)]
struct Handle {
    raft: Raft,
    reader: MetadataReader,
    proposer: Proposer,
}

fn handle(node: &Node) -> Handle {
    Handle {
        raft: node.raft.clone(),
        reader: node.reader.clone(),
        proposer: Proposer::new(node.raft.clone(), 64),
    }
}

fn key(k: u64) -> Vec<u8> {
    format!("lin/{k}").into_bytes()
}

fn encode(v: Value) -> Option<Vec<u8>> {
    v.map(|id| id.to_string().into_bytes())
}

fn decode(bytes: Option<Vec<u8>>) -> Value {
    bytes.map(|b| String::from_utf8(b).unwrap().parse().unwrap())
}

/// One client: random operations on random keys through random nodes until
/// `deadline`.
async fn client(
    id: u64,
    mut rng: Rng,
    handles: Arc<Mutex<Vec<Option<Handle>>>>,
    history: History,
    clock: Instant,
    deadline: Instant,
) {
    let now = || clock.elapsed().as_nanos() as u64;
    let mut seq = 0u64;
    let mut last_seen: BTreeMap<u64, Value> = BTreeMap::new();
    while Instant::now() < deadline {
        let k = rng.below(KEYS);
        let Some(h) = handles.lock().unwrap()[rng.below(3) as usize].clone() else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        seq += 1;
        let fresh = Some((id << 32) | seq);
        let call = now();
        let choice = rng.below(10);
        let recorded = if choice < 4 {
            // A linearizable read: the read barrier, then the views.
            match tokio::time::timeout(Duration::from_secs(1), h.raft.ensure_linearizable()).await {
                Ok(Ok(_)) => {
                    let v = decode(h.reader.get(&key(k)));
                    last_seen.insert(k, v);
                    Some((Kind::Read(v), Some(now())))
                }
                // A failed read changed nothing: not recorded.
                _ => None,
            }
        } else {
            let (kind, command) = if choice < 7 {
                (
                    Kind::Write(fresh),
                    Command::Put {
                        key: key(k),
                        value: encode(fresh).unwrap(),
                    },
                )
            } else {
                let expected = if rng.below(3) == 0 {
                    None
                } else {
                    last_seen.get(&k).copied().flatten()
                };
                (
                    Kind::Cas {
                        expected,
                        new: fresh,
                        swapped: None,
                    },
                    Command::CompareAndSwap {
                        key: key(k),
                        expected: encode(expected),
                        new: encode(fresh),
                    },
                )
            };
            let answer =
                tokio::time::timeout(Duration::from_secs(2), h.proposer.propose(command)).await;
            let swapped = |s: bool| match kind {
                Kind::Cas { expected, new, .. } => Kind::Cas {
                    expected,
                    new,
                    swapped: Some(s),
                },
                other => other,
            };
            match answer {
                Ok(Ok(Response::Applied { .. })) => Some((swapped(true), Some(now()))),
                Ok(Ok(Response::Rejected(Rejection::CasMismatch { .. }))) => {
                    Some((swapped(false), Some(now())))
                }
                Ok(Ok(other)) => panic!("unexpected answer {other:?}"),
                // Refused before it was logged: it never happened.
                Ok(Err(ProposeError::ForwardToLeader { .. } | ProposeError::Rejected(_))) => None,
                // Taken, then lost sight of: it may or may not happen.
                Ok(Err(e)) if e.outcome_unknown() => Some((kind, None)),
                Ok(Err(e)) => panic!("unexpected error {e}"),
                Err(_) => Some((kind, None)),
            }
        };
        if let Some((kind, ret)) = recorded {
            checker::record(&history, k, Op { call, ret, kind });
        }
    }
}

/// The node every running node names as leader, if they agree.
fn agreed_leader(handles: &[Option<Handle>]) -> Option<u64> {
    let leaders: Vec<Option<u64>> = handles
        .iter()
        .flatten()
        .map(|h| h.raft.metrics().borrow().current_leader)
        .collect();
    let first = (*leaders.first()?)?;
    leaders.iter().all(|l| *l == Some(first)).then_some(first)
}

async fn run(seed: u64, seconds: u64) {
    let mut rng = Rng::new(seed);
    let router = Router::default();
    let dirs = tempfile::tempdir().unwrap();
    let engines = [Engine::Lmdb, Engine::Fjall, Engine::Lmdb];
    let mut nodes: Vec<Option<Node>> = Vec::new();
    for (i, engine) in engines.iter().enumerate() {
        let id = i as u64 + 1;
        let dir = dirs.path().join(format!("node-{id}"));
        nodes.push(Some(router.start(id, *engine, dir, config(30)).await));
    }
    let members: BTreeMap<u64, NodeAddr> = (1..=3)
        .map(|id| (id, NodeAddr::new(format!("node-{id}"), "")))
        .collect();
    let first = nodes[0].as_ref().unwrap();
    first.raft.initialize(members).await.unwrap();
    first
        .raft
        .wait(Some(Duration::from_secs(10)))
        .current_leader(1, "node 1 leads")
        .await
        .unwrap();
    let handles = Arc::new(Mutex::new(
        nodes
            .iter()
            .map(|n| n.as_ref().map(handle))
            .collect::<Vec<_>>(),
    ));
    let history: History = Arc::default();
    let clock = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            tokio::spawn(client(
                c + 1,
                Rng::new(seed.wrapping_mul(c + 7)),
                handles.clone(),
                history.clone(),
                clock,
                deadline,
            ))
        })
        .collect();

    // The nemesis.
    let faults = AtomicU64::new(0);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100 + rng.below(300))).await;
        faults.fetch_add(1, Ordering::Relaxed);
        let hold = Duration::from_millis(200 + rng.below(600));
        match rng.below(4) {
            0 | 1 => {
                // Isolate the leader (or, failing agreement, any node).
                let victim = match (rng.below(2), agreed_leader(&handles.lock().unwrap())) {
                    (0, Some(leader)) => leader,
                    _ => rng.below(3) + 1,
                };
                router.isolate(victim);
                tokio::time::sleep(hold).await;
                router.heal(victim);
            }
            2 => {
                router.set_faults(20, 20, rng.below(u64::MAX));
                tokio::time::sleep(hold).await;
                router.set_faults(0, 0, 1);
            }
            _ => {
                // Restart a node on its data.
                let i = rng.below(3) as usize;
                handles.lock().unwrap()[i] = None;
                let node = nodes[i].take().unwrap();
                let (id, engine, dir) = router.stop(node).await;
                tokio::time::sleep(hold / 2).await;
                let node = router.start(id, engine, dir, config(30)).await;
                handles.lock().unwrap()[i] = Some(handle(&node));
                nodes[i] = Some(node);
            }
        }
    }
    for c in clients {
        c.await.unwrap();
    }

    // Healed: one final linearizable read per key pins every unknown write
    // down against the end state.
    router.set_faults(0, 0, 1);
    let leader = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(l) = agreed_leader(&handles.lock().unwrap()) {
                return l;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("a leader after healing");
    let h = handles.lock().unwrap()[leader as usize - 1]
        .clone()
        .unwrap();
    for k in 0..KEYS {
        let call = clock.elapsed().as_nanos() as u64;
        h.raft.ensure_linearizable().await.unwrap();
        let v = decode(h.reader.get(&key(k)));
        let ret = Some(clock.elapsed().as_nanos() as u64);
        checker::record(
            &history,
            k,
            Op {
                call,
                ret,
                kind: Kind::Read(v),
            },
        );
    }

    let history = std::mem::take(&mut *history.lock().unwrap());
    let (completed, unknown) = checker::counts(&history);
    eprintln!(
        "linearizability: seed {seed}: {completed} operations completed, {unknown} unknown, {} faults, {} messages dropped",
        faults.load(Ordering::Relaxed),
        router.dropped()
    );
    assert!(
        completed >= MIN_COMPLETED,
        "seed {seed}: only {completed} operations completed; the cluster was not available enough to mean anything"
    );
    checker::assert_linearizable(
        &history,
        20_000_000,
        &format!("META_LIN_SEED={seed} META_LIN_SEEDS=1 replays the schedule"),
    );
    for node in nodes.into_iter().flatten() {
        router.stop(node).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_under_partitions_message_loss_and_restarts_are_linearizable() {
    let first = env_u64(
        "META_LIN_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64,
    );
    let seeds = env_u64("META_LIN_SEEDS", 3);
    let seconds = env_u64("META_LIN_SECONDS", 5);
    for i in 0..seeds {
        run(first.wrapping_add(i), seconds).await;
    }
}
