//! Linearizability against real processes over TCP: a 3-node `meta-node`
//! cluster (lmdb, fjall, lmdb) serves HTTP clients doing linearizable
//! reads, writes and compare-and-swap on a few keys through random nodes
//! (followers serve the reads after the leader's read index, and redirect
//! writes to the leader) while a nemesis, every 0.5–1.5 s,
//! picks a node — the leader half the time — and SIGKILLs it (restarted on
//! its data after 0.2–0.8 s), or freezes it with SIGSTOP for 0.3–2 s (a
//! frozen leader is deposed and wakes up believing it still leads), or
//! makes the links lossy for 0.5–1.5 s: every Raft RPC crosses a proxy
//! ([`meta_testkit::links`]) that then cuts 5% of connections mid-stream and
//! delays what it forwards by up to 20 ms. Each key's
//! history (timed-out or `outcome_unknown` writes as unknown outcomes) must
//! be linearizable, checked by the WGL checker of `meta-raft`'s tests, and
//! a run must complete a minimum number of operations.
//!
//! `META_LINP_SECONDS` (default 8) and `META_LINP_SEED` size and replay a
//! run (it prints its seed).

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Dirs, Http, ProcCluster, Rng, cli, env_u64, seed_from_env, wait_until};
use meta_testkit::checker::{self, History, Kind, Op, Value};
use reqwest::Method;
use serde_json::json;

const KEYS: u64 = 8;
const CLIENTS: u64 = 4;
const MIN_COMPLETED: usize = 100;

/// What an answer means for a write.
enum Outcome {
    Done(bool),
    Refused,
    Unknown,
}

async fn outcome(answer: reqwest::Result<reqwest::Response>) -> Outcome {
    let answer = match answer {
        Ok(answer) => answer,
        // Never connected (the node is down): the request was not sent.
        Err(e) if e.is_connect() => return Outcome::Refused,
        Err(_) => return Outcome::Unknown,
    };
    if answer.status().is_success() {
        return Outcome::Done(true);
    }
    let body: serde_json::Value = answer.json().await.unwrap_or_default();
    match body.pointer("/error/code").and_then(|c| c.as_str()) {
        Some("cas_mismatch") => Outcome::Done(false),
        // Refused before it was logged (this node does not lead, knows
        // no leader, or cannot serve): it never happened.
        Some("not_leader" | "no_leader" | "unavailable") => Outcome::Refused,
        _ => Outcome::Unknown,
    }
}

async fn read(http: &Http, api: &str, k: u64) -> Option<Value> {
    let answer = http
        .send(Method::GET, api, &format!("/v1/kv/lin/{k}"), None)
        .await
        .ok()?;
    match answer.status().as_u16() {
        200 => {
            let v: serde_json::Value = answer.json().await.ok()?;
            Some(Some(v["value"].as_str()?.parse().ok()?))
        }
        404 => {
            let v: serde_json::Value = answer.json().await.ok()?;
            (v.pointer("/error/code")?.as_str()? == "not_found").then_some(None)
        }
        _ => None,
    }
}

async fn client(
    id: u64,
    mut rng: Rng,
    apis: Vec<String>,
    history: History,
    clock: Instant,
    deadline: Instant,
) {
    let http = Http::new(Duration::from_secs(2));
    let now = || clock.elapsed().as_nanos() as u64;
    let mut last_seen: BTreeMap<u64, Value> = BTreeMap::new();
    let mut seq = 0u64;
    while Instant::now() < deadline {
        let k = rng.below(KEYS);
        let api = &apis[rng.below(apis.len() as u64) as usize];
        seq += 1;
        let id_value = (id << 32) | seq;
        let fresh = Some(id_value);
        let call = now();
        let choice = rng.below(10);
        let recorded = if choice < 4 {
            read(&http, api, k).await.map(|v| {
                last_seen.insert(k, v);
                (Kind::Read(v), Some(now()))
            })
        } else {
            let (kind, answer) = if choice < 7 {
                let answer = http
                    .send(
                        Method::PUT,
                        api,
                        &format!("/v1/kv/lin/{k}"),
                        Some(id_value.to_string()),
                    )
                    .await;
                (Kind::Write(fresh), answer)
            } else {
                let expected = if rng.below(3) == 0 {
                    None
                } else {
                    last_seen.get(&k).copied().flatten()
                };
                let body = json!({
                    "key": format!("lin/{k}"),
                    "expected": expected.map(|v| v.to_string()),
                    "new": fresh.map(|v| v.to_string()),
                });
                let answer = http
                    .send(Method::POST, api, "/v1/cas", Some(body.to_string()))
                    .await;
                let kind = Kind::Cas {
                    expected,
                    new: fresh,
                    swapped: None,
                };
                (kind, answer)
            };
            let outcome = outcome(answer).await;
            if matches!(outcome, Outcome::Refused | Outcome::Unknown) {
                // As a real client would: back off while the cluster
                // elects or heals, rather than spin.
                tokio::time::sleep(Duration::from_millis(20 + rng.below(30))).await;
            }
            match (outcome, kind) {
                (Outcome::Refused, _) => None,
                (Outcome::Unknown, kind) => Some((kind, None)),
                (Outcome::Done(swapped), Kind::Cas { expected, new, .. }) => Some((
                    Kind::Cas {
                        expected,
                        new,
                        swapped: Some(swapped),
                    },
                    Some(now()),
                )),
                (Outcome::Done(true), kind) => Some((kind, Some(now()))),
                (Outcome::Done(false), kind) => panic!("{kind:?} cannot mismatch"),
            }
        };
        if let Some((kind, ret)) = recorded {
            checker::record(&history, k, Op { call, ret, kind });
        }
    }
}

fn leader_of(api: &str) -> Option<u64> {
    let out = cli(api, &["cluster", "status"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    v["leader"].as_u64()
}

#[test]
fn histories_against_processes_killed_and_restarted_are_linearizable() {
    let seed = seed_from_env("META_LINP_SEED");
    eprintln!("linearizability/processes: seed {seed} (META_LINP_SEED replays the schedule)");
    let mut rng = Rng::new(seed);
    let seconds = env_u64("META_LINP_SECONDS", 8);
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let cluster = ProcCluster::with_links(&dirs, &["lmdb", "fjall", "lmdb"], seed);
    let links = cluster.links.as_ref().unwrap();
    let mut nodes = cluster.form();
    let start = |i: usize| cluster.start(i);
    let apis = cluster.apis();
    wait_until(30, "a leader", || leader_of(&apis[0]).is_some());

    let rt = tokio::runtime::Runtime::new().unwrap();
    let history: History = Arc::default();
    let clock = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            rt.spawn(client(
                c + 1,
                Rng::new(seed.wrapping_mul(c + 3) | 1),
                apis.clone(),
                history.clone(),
                clock,
                deadline,
            ))
        })
        .collect();
    let (mut kills, mut pauses, mut lossy) = (0, 0, 0);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500 + rng.below(1000)));
        let victim = match (rng.below(2), leader_of(&apis[rng.below(3) as usize])) {
            (0, Some(leader)) => leader as usize - 1,
            _ => rng.below(3) as usize,
        };
        match rng.below(3) {
            0 => {
                nodes[victim].kill();
                kills += 1;
                std::thread::sleep(Duration::from_millis(200 + rng.below(600)));
                nodes[victim] = start(victim);
            }
            1 => {
                nodes[victim].pause();
                pauses += 1;
                std::thread::sleep(Duration::from_millis(300 + rng.below(1700)));
                nodes[victim].resume();
            }
            _ => {
                links.set(50, 20);
                lossy += 1;
                std::thread::sleep(Duration::from_millis(500 + rng.below(1000)));
                links.set(0, 0);
            }
        }
    }
    for c in clients {
        rt.block_on(c).unwrap();
    }
    // One final linearizable read per key, once a leader serves.
    let http = Http::new(Duration::from_secs(30));
    for k in 0..KEYS {
        let mut done = false;
        for _ in 0..300 {
            let call = clock.elapsed().as_nanos() as u64;
            if let Some(v) = rt.block_on(read(&http, &apis[k as usize % 3], k)) {
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
                done = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(done, "no final read of key {k} within 30 s");
    }
    let history = std::mem::take(&mut *history.lock().unwrap());
    let (completed, unknown) = checker::counts(&history);
    eprintln!(
        "linearizability/processes: seed {seed}: {completed} operations completed, {unknown} unknown, \
         {kills} kills, {pauses} pauses, {lossy} lossy-link windows ({} connections cut)",
        links.dropped()
    );
    assert!(
        completed >= MIN_COMPLETED,
        "seed {seed}: only {completed} operations completed"
    );
    checker::assert_linearizable(
        &history,
        50_000_000,
        &format!("META_LINP_SEED={seed} replays"),
    );
    for mut n in nodes {
        n.stop();
    }
}
