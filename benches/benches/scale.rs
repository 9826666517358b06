//! Scale: snapshot build and install of about 1 GiB (1M keys x 1 KiB
//! values), restart of a node holding 1M keys, and the peak memory (RSS)
//! of each — measured in child processes so one step's memory does not
//! hide another's. Not a criterion bench (each step runs once per engine);
//! results go to `target/bench-scale.json` for `cargo xtask bench`.
//!
//! `META_SCALE_KEYS` / `META_SCALE_VALUE` override the snapshot data set
//! (default 1,000,000 keys x 1,024 bytes); `META_SCALE_RESTART_KEYS` the
//! restart one (default 1,000,000 keys x 100 bytes).

use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use meta_benches::procs::{get, proc_status_kib, start_node, use_node_binary, wait_until};
use meta_benches::runtime;
use meta_node::config::Config;
use meta_node::engine::Engine;
use meta_raft::types::SnapshotMeta;
use meta_raft::{Command as MetaCommand, Envelope, StateMachine};
use meta_store_api::keys::{Key, META_PREFIX, MetaNamespace};
use meta_store_api::{Durability, MetadataStore, WriteBatch};
use meta_testkit::env_u64;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use serde_json::{Value, json};

fn engine(name: &str) -> Engine {
    match name {
        "lmdb" => Engine::Lmdb,
        "fjall" => Engine::Fjall,
        other => panic!("no scale bench for engine {other}"),
    }
}

fn open(engine_name: &str, dir: &Path) -> Arc<dyn MetadataStore> {
    engine(engine_name)
        .open(dir, &Config::default().engine_options())
        .expect("opening the store")
}

fn self_kib(field: &str) -> u64 {
    proc_status_kib(std::process::id(), field).expect("reading /proc/self/status")
}

/// Samples this process's anonymous RSS every millisecond until dropped;
/// `peak()` is the highest sample.
struct AnonSampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AnonSampler {
    fn start() -> AnonSampler {
        let (peak, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(self_kib("RssAnon:"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        AnonSampler {
            peak,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("sampler");
        }
        self.peak.load(Ordering::Relaxed).max(self_kib("RssAnon:")) * 1024
    }
}

/// Runs `work`, returning its wall time, the peak growth of anonymous
/// memory (heap) over the level before it, and of the whole RSS (heap plus
/// mapped file pages: LMDB reads through its memory map).
fn measured<T>(work: impl FnOnce() -> T) -> (T, Value) {
    let anon_before = self_kib("RssAnon:") * 1024;
    let rss_before = self_kib("VmRSS:") * 1024;
    // Resets VmHWM to the current RSS (Linux >= 4.0).
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let sampler = AnonSampler::start();
    let start = Instant::now();
    let out = work();
    let secs = start.elapsed().as_secs_f64();
    let anon_peak = sampler.finish();
    let hwm = self_kib("VmHWM:") * 1024;
    (
        out,
        json!({
            "secs": secs,
            "anon_growth": anon_peak.saturating_sub(anon_before),
            "rss_growth": if reset { Some(hwm.saturating_sub(rss_before)) } else { None },
            "rss_before": rss_before,
        }),
    )
}

/// Child: loads `keys` x `value` bytes into a fresh store at `dir`
/// (straight through the trait, not Raft: the data set of the snapshot
/// steps).
fn child_load(engine_name: &str, dir: &Path, keys: u64, value: u64) -> Value {
    let store = open(engine_name, dir);
    let mut batch = WriteBatch::new();
    let mut bytes = 0u64;
    let mut rng = meta_testkit::Rng::new(0x9E37_79B9_7F4A_7C15);
    for i in 0..keys {
        let key = Key::meta(MetaNamespace::Kv, format!("scale/{i:010}"))
            .expect("key")
            .encode();
        // Pseudo-random bytes: the snapshot's LZ4 gets no free ride.
        let v: Vec<u8> = (0..value).map(|_| rng.next() as u8).collect();
        bytes += (key.len() + v.len()) as u64;
        // As the state machine stores a key (its revisions and value).
        let record = meta_raft::codec::encode(&meta_raft::model::KvEntry {
            create_revision: 1,
            mod_revision: 1,
            version: 1,
            value: v,
        });
        batch.put(key, record);
        if batch.len() >= 8192 {
            store
                .batch(&batch, Durability::Buffered)
                .expect("load batch");
            batch = WriteBatch::new();
        }
    }
    store
        .batch(&batch, Durability::Durable)
        .expect("load batch");
    store.close().expect("close");
    json!({"bytes": bytes})
}

/// Child: opens the state machine on `dir` and builds a snapshot, copied
/// to `out` (its metadata to `out.meta.json`).
fn child_build(engine_name: &str, dir: &Path, out: &Path) -> Value {
    let rt = runtime();
    let store = open(engine_name, dir);
    let (mut sm, open_stats) = measured(|| {
        rt.block_on(StateMachine::open_with_spill_dir(
            store.clone(),
            dir.join("../spill"),
        ))
        .expect("state machine")
    });
    let (snapshot, build) = measured(|| {
        rt.block_on(async { sm.get_snapshot_builder().await.build_snapshot().await })
            .expect("build")
    });
    let mut file = snapshot.snapshot.try_into_std().expect("a std file");
    file.seek(SeekFrom::Start(0)).expect("seek");
    let mut copy = std::fs::File::create(out).expect("snapshot copy");
    let size = std::io::copy(&mut file, &mut copy).expect("copying the snapshot");
    std::fs::write(
        out.with_extension("meta.json"),
        serde_json::to_vec(&snapshot.meta).expect("meta"),
    )
    .expect("writing meta");
    json!({"views_load": open_stats, "build": build, "file_bytes": size})
}

/// Child: installs the snapshot at `file` into a fresh store at `dir`,
/// once through the store alone (`restore`: the streaming part) and once
/// through the state machine (received into its spill file — the transfer
/// without the network — then validation, restore, and the in-memory views
/// rebuilt), each in its own fresh store.
fn child_install(engine_name: &str, dir: &Path, file: &Path) -> Value {
    let rt = runtime();
    let meta: SnapshotMeta = serde_json::from_slice(
        &std::fs::read(file.with_extension("meta.json")).expect("reading meta"),
    )
    .expect("meta");
    let raw = open(engine_name, &dir.join("restore"));
    let ((), restore) = measured(|| {
        let mut reader = std::io::BufReader::new(std::fs::File::open(file).expect("snapshot"));
        raw.restore(META_PREFIX, &mut reader).expect("restore");
    });
    raw.close().expect("close");
    drop(raw);
    let store = open(engine_name, &dir.join("install"));
    let mut sm = rt
        .block_on(StateMachine::open_with_spill_dir(store, dir.join("spill")))
        .expect("state machine");
    // What the network transport does, minus the network: stream the
    // snapshot into the file the state machine receives it in.
    let (incoming, transfer) = measured(|| {
        rt.block_on(async {
            let mut incoming = sm.begin_receiving_snapshot().await.expect("receive");
            let mut source = tokio::io::BufReader::with_capacity(
                1 << 20,
                tokio::fs::File::open(file).await.expect("snapshot"),
            );
            tokio::io::copy_buf(&mut source, &mut *incoming)
                .await
                .expect("receiving");
            incoming
        })
    });
    let ((), install) = measured(|| {
        rt.block_on(sm.install_snapshot(&meta, incoming))
            .expect("install")
    });
    json!({"restore": restore, "transfer": transfer, "install": install})
}

fn child(args: &[String]) -> Value {
    let path = |i: usize| PathBuf::from(&args[i]);
    match args[0].as_str() {
        "load" => child_load(
            &args[1],
            &path(2),
            args[3].parse().expect("keys"),
            args[4].parse().expect("value"),
        ),
        "build" => child_build(&args[1], &path(2), &path(3)),
        "install" => child_install(&args[1], &path(2), &path(3)),
        other => panic!("unknown child step {other}"),
    }
}

/// Runs `step` in a child process (this binary, `--child`).
fn in_child(step: &[&str]) -> Value {
    let out = Command::new(std::env::current_exe().expect("this binary"))
        .arg("--child")
        .args(step)
        .output()
        .expect("running a child step");
    assert!(
        out.status.success(),
        "child step {step:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("child step {step:?} printed {text:?}: {e}"))
}

/// Writes `keys` x 100-byte values through a real in-process node (Raft
/// log, apply, snapshots as configured), stops it, then times a fresh
/// `meta-node serve` process on the same data until a linearizable read
/// of the last key answers.
fn restart(engine_name: &str, keys: u64) -> Value {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let rt = runtime();
    let config = Config {
        data_dir: dir.path().to_path_buf(),
        engine: engine(engine_name),
        listen: meta_testkit::free_addr(),
        raft_listen: meta_testkit::free_addr(),
        insecure: true,
        ..Config::default()
    };
    let load_start = Instant::now();
    rt.block_on(async {
        let node = meta_node::Node::start(config.clone()).await.expect("node");
        node.wait_for_leader(Duration::from_secs(10))
            .await
            .expect("a leader");
        let per_entry = 5000;
        for first in (0..keys).step_by(per_entry as usize) {
            let batch = (first..(first + per_entry).min(keys))
                .map(|i| MetaCommand::Put {
                    key: format!("restart/{i:010}").into_bytes(),
                    value: vec![b'r'; 100],
                })
                .collect();
            node.raft
                .client_write(Envelope::new(&MetaCommand::Batch(batch)))
                .await
                .expect("load write");
        }
        node.shutdown().await.expect("shutdown");
    });
    let load_secs = load_start.elapsed().as_secs_f64();
    let last = format!("/v1/kv/restart/{:010}", keys - 1);
    let start = Instant::now();
    let node = start_node(1, engine_name, dir.path(), true);
    wait_until(120, "the restarted node to serve", || {
        get(&node.api, &last).is_some()
    });
    let serving = start.elapsed().as_secs_f64();
    json!({
        "keys": keys,
        "load_secs": load_secs,
        "serving_secs": serving,
        "peak_rss": node.peak_rss(),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let out = child(&args[i + 1..]);
        println!("{out}");
        return;
    }
    // `cargo bench` passes `--bench` and any filter; `--list` asks what runs.
    if args.iter().any(|a| a == "--list") {
        println!("scale: bench");
        return;
    }
    let filter = args.iter().find(|a| !a.starts_with("--"));
    if filter.is_some_and(|f| !"scale".contains(f.as_str())) {
        return;
    }
    let keys = env_u64("META_SCALE_KEYS", 1_000_000);
    let value = env_u64("META_SCALE_VALUE", 1024);
    let restart_keys = env_u64("META_SCALE_RESTART_KEYS", 1_000_000);
    use_node_binary();
    let mut results = Vec::new();
    for engine_name in ["lmdb", "fjall"] {
        let work = tempfile::tempdir().expect("a temporary directory");
        let data = work.path().join("data");
        let file = work.path().join("snapshot.bin");
        let s = |p: &Path| p.display().to_string();
        eprintln!("scale/{engine_name}: loading {keys} keys x {value} B");
        let load = in_child(&[
            "load",
            engine_name,
            &s(&data),
            &keys.to_string(),
            &value.to_string(),
        ]);
        eprintln!("scale/{engine_name}: snapshot build");
        let build = in_child(&["build", engine_name, &s(&data), &s(&file)]);
        std::fs::remove_dir_all(&data).expect("dropping the source store");
        eprintln!("scale/{engine_name}: snapshot install");
        let install = in_child(&[
            "install",
            engine_name,
            &s(&work.path().join("target")),
            &s(&file),
        ]);
        drop(work);
        eprintln!("scale/{engine_name}: restart with {restart_keys} keys");
        let restart = restart(engine_name, restart_keys);
        let result = json!({
            "engine": engine_name,
            "keys": keys,
            "value_bytes": value,
            "data_bytes": load["bytes"],
            "snapshot": build,
            "install": install,
            "restart": restart,
        });
        eprintln!("{result:#}");
        results.push(result);
    }
    let out = meta_benches::target_dir().join("bench-scale.json");
    std::fs::write(&out, serde_json::to_vec_pretty(&results).expect("json"))
        .expect("writing results");
    eprintln!("scale: results in {}", out.display());
}
