//! The Raft layer on every engine: durable log appends of 1 / 64 / 1,024
//! entries, state-machine apply throughput per command kind, and end-to-end writes through a
//! single in-process node with 1 / 16 / 64 closed-loop writers, each
//! proposal on its own or through the group-commit proposer (p50/p99
//! latencies recorded for `cargo xtask bench`).

// openraft's RPC error types are large; they are its API.
#![allow(clippy::result_large_err)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use meta_benches::load::bench_clients;
use meta_benches::{Engine, open_trait, runtime};
use meta_raft::types::{Entry, NodeAddr, Raft, TypeConfig};
use meta_raft::{Command, Envelope, LogStore, StateMachine};
use openraft::EntryPayload;
use openraft::error::{InstallSnapshotError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::storage::{RaftLogStorageExt, RaftStateMachine};
use openraft::testing::log_id;

fn put(i: u64) -> Envelope {
    Envelope::new(&Command::Put {
        key: format!("bench/{i:012}").into_bytes(),
        value: vec![b'v'; 100],
    })
}

fn entries(from: u64, n: u64) -> Vec<Entry> {
    (from..from + n)
        .map(|i| Entry {
            log_id: log_id(1, 1, i),
            payload: EntryPayload::Normal(put(i)),
        })
        .collect()
}

/// The physical limit every durable figure is measured against: one 4 KiB
/// write plus `fdatasync`, serially, on the same filesystem as the stores.
fn fsync_4k(c: &mut Criterion) {
    use std::io::{Seek, SeekFrom, Write};
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut file = std::fs::File::create(dir.path().join("probe")).expect("probe file");
    let block = [0x5Au8; 4096];
    let mut group = c.benchmark_group("fsync_4k_serial");
    group.sample_size(20);
    group.throughput(Throughput::Elements(1));
    group.bench_function("write+fdatasync", |b| {
        b.iter(|| {
            file.seek(SeekFrom::Start(0)).expect("seek");
            file.write_all(&block).expect("write");
            file.sync_data().expect("fdatasync");
        })
    });
    group.finish();
}

/// Times only `work` on a fresh batch from `make` per iteration. `make`
/// returns `(setup, measured)`: building them is not measured, nor is
/// `work` on the (non-empty) setup entries.
fn timed_batches(
    b: &mut criterion::Bencher<'_>,
    mut make: impl FnMut() -> (Vec<Entry>, Vec<Entry>),
    mut work: impl FnMut(Vec<Entry>),
) {
    b.iter_custom(|iters| {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            let (setup, batch_entries) = make();
            if !setup.is_empty() {
                work(setup);
            }
            let start = Instant::now();
            work(batch_entries);
            total += start.elapsed();
        }
        total
    })
}

fn log_append(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("raft_log_append");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4));
    for batch in [1u64, 64, 1024] {
        group.throughput(Throughput::Elements(batch));
        for name in Engine::ALL {
            let s = open_trait(name);
            let store = s.store.clone();
            let mut log = LogStore::new(store);
            let mut next = 1u64;
            group.bench_function(BenchmarkId::new(name.name(), batch), |b| {
                let make = || {
                    next += batch;
                    (Vec::new(), entries(next - batch, batch))
                };
                timed_batches(b, make, |batch_entries| {
                    rt.block_on(log.blocking_append(batch_entries))
                        .expect("append");
                })
            });
        }
    }
    group.finish();
}

/// Command kinds of the apply bench; `command(kind, i)` builds the `i`-th.
const KINDS: [&str; 12] = [
    "put",
    "delete",
    "cas",
    "upsert_node",
    "remove_node",
    "set_shard_map",
    "create_api_key",
    "revoke_api_key",
    "set_config",
    "delete_config",
    "batch_of_16_puts",
    "rejected_cas",
];

/// What must exist before a removal can remove something: its creation,
/// applied (unmeasured) before the measured batch.
fn prerequisite(kind: &str) -> Option<&'static str> {
    match kind {
        "delete" => Some("put"),
        "remove_node" => Some("upsert_node"),
        "revoke_api_key" => Some("create_api_key"),
        "delete_config" => Some("set_config"),
        _ => None,
    }
}

fn command(kind: &str, i: u64) -> Command {
    use meta_raft::model::{ApiKeyId, ApiKeyRecord, ClusterNode, NodeState, ShardAssignment};
    // Removals and their prerequisites use one record per `i`.
    let key = format!("bench/{i:012}").into_bytes();
    match kind {
        "put" => Command::Put {
            key,
            value: vec![b'v'; 100],
        },
        "delete" => Command::Delete { key },
        "cas" => Command::CompareAndSwap {
            key: format!("cas/{i:012}").into_bytes(),
            expected: None,
            new: Some(vec![b'v'; 100]),
        },
        "rejected_cas" => Command::CompareAndSwap {
            key: b"cas/never".to_vec(),
            expected: Some(b"not there".to_vec()),
            new: Some(vec![b'v'; 100]),
        },
        "upsert_node" => Command::UpsertNode(ClusterNode {
            id: i,
            address: format!("10.0.{}.{}:7700", i % 250, i % 200),
            state: NodeState::Active,
            labels: [("zone".to_string(), format!("z{}", i % 3))].into(),
        }),
        "remove_node" => Command::RemoveNode { id: i },
        // Versions follow the index: every change in the bench succeeds.
        "set_shard_map" => Command::SetShardMap {
            expected_version: i,
            shards: (0..16)
                .map(|s| {
                    let replicas = vec![(s + i) % 5, (s + i + 1) % 5, (s + i + 2) % 5];
                    (s, ShardAssignment { replicas })
                })
                .collect(),
        },
        "create_api_key" => Command::CreateApiKey(ApiKeyRecord {
            id: ApiKeyId(format!("key-{i:012}")),
            name: "bench".into(),
            scopes: vec!["read".into(), "write".into()],
            created_at_ms: 1,
            expires_at_ms: None,
            revoked_at_ms: None,
            secret_hash: [7; 32],
        }),
        "revoke_api_key" => Command::RevokeApiKey {
            id: ApiKeyId(format!("key-{i:012}")),
            at_ms: 2,
        },
        "set_config" => Command::SetConfig {
            name: format!("setting.{i}"),
            value: format!("value {i}"),
        },
        "delete_config" => Command::DeleteConfig {
            name: format!("setting.{i}"),
        },
        "batch_of_16_puts" => Command::Batch((0..16).map(|j| command("put", i * 16 + j)).collect()),
        other => panic!("unknown command kind {other}"),
    }
}

fn normal(index: u64, command: &Command) -> Entry {
    Entry {
        log_id: log_id(1, 1, index),
        payload: EntryPayload::Normal(Envelope::new(command)),
    }
}

/// State-machine apply throughput (commands/s) per command kind and engine,
/// 256 entries per `apply` call (one store batch, as under load).
fn apply(c: &mut Criterion) {
    let rt = runtime();
    let batch = 256u64;
    for kind in KINDS {
        let group_name = format!("sm_apply_{kind}");
        let mut group = c.benchmark_group(&group_name);
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(2));
        let per_entry = if kind == "batch_of_16_puts" { 16 } else { 1 };
        group.throughput(Throughput::Elements(batch * per_entry));
        for name in Engine::ALL {
            let s = open_trait(name);
            let store = s.store.clone();
            let mut sm = rt
                .block_on(StateMachine::open(store))
                .expect("state machine");
            let (mut index, mut i) = (1u64, 0u64);
            group.bench_function(name.name(), |b| {
                let make = || {
                    let setup: Vec<Entry> = prerequisite(kind)
                        .into_iter()
                        .flat_map(|before| (0..batch).map(move |n| (before, n)))
                        .map(|(before, n)| normal(index + n, &command(before, i + n)))
                        .collect();
                    index += setup.len() as u64;
                    let entries = (0..batch)
                        .map(|n| normal(index + n, &command(kind, i + n)))
                        .collect();
                    (index, i) = (index + batch, i + batch);
                    (setup, entries)
                };
                timed_batches(b, make, |entries| {
                    rt.block_on(sm.apply(entries)).expect("apply");
                })
            });
        }
        group.finish();
    }
}

/// Stale reads from the in-memory views (no engine call, no Raft round),
/// on one thread: the read path of `?stale=true`.
fn stale_reads(c: &mut Criterion) {
    let rt = runtime();
    let mem = open_trait(Engine::Mem);
    let mut sm = rt
        .block_on(StateMachine::open(mem.store.clone()))
        .expect("state machine");
    rt.block_on(sm.apply(entries(1, 10_000))).expect("apply");
    let reader = sm.reader();
    let keys: Vec<Vec<u8>> = (1..=10_000u64)
        .map(|i| format!("bench/{i:012}").into_bytes())
        .collect();
    let mut group = c.benchmark_group("stale_read");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("views/get", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            std::hint::black_box(reader.get(&keys[i]))
        })
    });
    group.finish();
}

/// A single node never sends RPCs; this network only satisfies the types.
struct NoNetwork;

impl RaftNetworkFactory<TypeConfig> for NoNetwork {
    type Network = NoNetwork;
    async fn new_client(&mut self, _: u64, _: &NodeAddr) -> NoNetwork {
        NoNetwork
    }
}

type Rpc<T, E = openraft::error::Infallible> =
    Result<T, RPCError<u64, NodeAddr, RaftError<u64, E>>>;

fn unreachable<T, E: std::error::Error>() -> Rpc<T, E> {
    Err(RPCError::Unreachable(Unreachable::new(
        &std::io::Error::other("single node"),
    )))
}

impl RaftNetwork<TypeConfig> for NoNetwork {
    async fn append_entries(
        &mut self,
        _: AppendEntriesRequest<TypeConfig>,
        _: RPCOption,
    ) -> Rpc<AppendEntriesResponse<u64>> {
        unreachable()
    }
    async fn install_snapshot(
        &mut self,
        _: InstallSnapshotRequest<TypeConfig>,
        _: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        unreachable()
    }
    async fn vote(&mut self, _: VoteRequest<u64>, _: RPCOption) -> Rpc<VoteResponse<u64>> {
        unreachable()
    }
}

/// A single-node Raft with its log in `log` and its state machine in
/// `state` (the same store, or two: the split configurations).
async fn single_node(
    log: Arc<dyn meta_store_api::MetadataStore>,
    state: Arc<dyn meta_store_api::MetadataStore>,
) -> Raft {
    let config = Arc::new(openraft::Config::default().validate().expect("config"));
    let sm = StateMachine::open(state).await.expect("state machine");
    let raft = Raft::new(1, config, NoNetwork, LogStore::new(log), sm)
        .await
        .expect("raft");
    raft.initialize(BTreeMap::from([(1, NodeAddr::default())]))
        .await
        .expect("init");
    raft.wait(Some(Duration::from_secs(5)))
        .current_leader(1, "leader")
        .await
        .expect("leader");
    raft
}

fn end_to_end_writes(c: &mut Criterion) {
    node_writes(c, false);
    node_writes(c, true);
}

/// Durable writes through a single node by 1 / 16 / 64 closed-loop
/// writers, each proposal its own entry (`grouped == false`) or through
/// the group-commit [`Proposer`](meta_raft::Proposer).
fn node_writes(c: &mut Criterion, grouped: bool) {
    let rt = runtime();
    let group_name = if grouped {
        "node_durable_writes_grouped"
    } else {
        "node_durable_writes"
    };
    let mut group = c.benchmark_group(group_name);
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    // `log+state`: the split configurations, with group commit only.
    let splits: &[&str] = if grouped {
        &["fjall+lmdb", "lmdb+fjall"]
    } else {
        &[]
    };
    let names = Engine::ALL
        .iter()
        .map(|e| e.name())
        .chain(splits.iter().copied());
    for name in names {
        let (log_engine, state_engine) = name.split_once('+').unwrap_or((name, name));
        let engine = |name: &str| name.parse::<Engine>().expect("an engine");
        let (log, state) = (
            open_trait(engine(log_engine)),
            open_trait(engine(state_engine)),
        );
        let log_store: Arc<dyn meta_store_api::MetadataStore> = log.store;
        let state_store: Arc<dyn meta_store_api::MetadataStore> = if log_engine == state_engine {
            log_store.clone()
        } else {
            state.store.clone()
        };
        let raft = rt.block_on(single_node(log_store, state_store));
        let proposer = rt.block_on(async { meta_raft::Proposer::new(raft.clone(), 256) });
        for writers in [1u64, 16, 64] {
            let (raft, proposer) = (raft.clone(), proposer.clone());
            bench_clients(&mut group, group_name, &rt, name, writers, move |i| {
                let (raft, proposer) = (raft.clone(), proposer.clone());
                async move {
                    if grouped {
                        let command = Command::Put {
                            key: format!("bench/{i:012}").into_bytes(),
                            value: vec![b'v'; 100],
                        };
                        proposer.propose(command).await.expect("write");
                    } else {
                        raft.client_write(put(i)).await.expect("write");
                    }
                }
            });
        }
        rt.block_on(raft.shutdown()).expect("shutdown");
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = fsync_4k, log_append, apply, stale_reads, end_to_end_writes
}
criterion_main!(benches);
