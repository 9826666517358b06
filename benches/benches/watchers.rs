//! Watch fan-out: one node (the release build, `--insecure`: the engine
//! and the fan-out, not TLS), a steady write load (a fixed rate from a few
//! writers), first alone, then with N watchers of the written prefix
//! (default 10,000). Reports the writers' throughput and latency in both
//! phases, the events delivered per second, the node's memory per watcher,
//! and whether every watcher received every event. The readers share this
//! machine's cores with the node (on a runtime of their own, apart from
//! the writers'). Not a criterion bench
//! (one run of each phase); results go to `target/bench-watch.json` and
//! stdout, for `cargo xtask bench` and `docs/benchmarks.md`.
//!
//! `META_WATCHERS` (default 10,000), `META_WATCH_SECS` (seconds per phase,
//! default 10), `META_WATCH_RATE` (writes per second, default 50).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use meta_benches::load::Latencies;
use meta_benches::procs::{Proc, proc_status_kib, start_node_with, use_node_binary, wait_until};
use meta_benches::{runtime, target_dir};
use meta_testkit::env_u64;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a write phase achieved.
struct Phase {
    writes: u64,
    secs: f64,
    latencies: Latencies,
}

/// Writes to `bench/` at `rate` per second for `secs`, from 4 writers.
async fn write_phase(api: &str, rate: u64, secs: u64, phase: &str) -> Phase {
    const WRITERS: u64 = 4;
    let http = meta_node::client::http_builder()
        .build()
        .expect("an HTTP client");
    let latencies = Latencies::default();
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..WRITERS {
        let (http, url, done) = (http.clone(), format!("http://{api}"), done.clone());
        let every = Duration::from_secs_f64(WRITERS as f64 / rate as f64);
        let phase = phase.to_string();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut samples = Vec::new();
            let mut n = 0u64;
            while start.elapsed() < Duration::from_secs(secs) {
                tick.tick().await;
                let t = Instant::now();
                let key = format!("{url}/v1/kv/bench/{phase}/{w}/{}", n % 64);
                let ok = http
                    .put(&key)
                    .body(vec![b'v'; 100])
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    samples.push(t.elapsed().as_nanos() as u64);
                    done.fetch_add(1, Ordering::Relaxed);
                }
                n += 1;
            }
            samples
        });
    }
    while let Some(samples) = tasks.join_next().await {
        latencies.extend(samples.expect("a writer panicked"));
    }
    Phase {
        writes: done.load(Ordering::Relaxed),
        secs: start.elapsed().as_secs_f64(),
        latencies,
    }
}

/// Counts `event: put` in a stream cut into chunks anywhere.
struct Counter {
    tail: Vec<u8>,
}

impl Counter {
    const NEEDLE: &'static [u8] = b"event: put\n";

    fn count(&mut self, chunk: &[u8]) -> u64 {
        self.tail.extend_from_slice(chunk);
        let found = self
            .tail
            .windows(Self::NEEDLE.len())
            .filter(|w| *w == Self::NEEDLE)
            .count() as u64;
        let keep = self.tail.len().min(Self::NEEDLE.len() - 1);
        self.tail.drain(..self.tail.len() - keep);
        found
    }
}

/// One watcher: a raw HTTP/1.1 connection reading the event stream,
/// counting the changes it receives and whether it is caught up.
async fn watcher(api: String, received: Arc<AtomicU64>, ready: Arc<AtomicU64>) {
    let mut stream = tokio::net::TcpStream::connect(&api)
        .await
        .expect("a watcher connects");
    let request = format!("GET /v1/watch?prefix=bench/watched/ HTTP/1.1\r\nHost: {api}\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("a watcher sends its request");
    let mut buf = vec![0u8; 16 << 10];
    let mut counter = Counter { tail: Vec::new() };
    let mut caught_up = false;
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        if !caught_up && chunk.windows(15).any(|w| w == b"event: progress") {
            caught_up = true;
            ready.fetch_add(1, Ordering::Relaxed);
        }
        received.fetch_add(counter.count(chunk), Ordering::Relaxed);
    }
}

fn rss(node: &Proc) -> u64 {
    node.pid()
        .and_then(|pid| proc_status_kib(pid, "VmRSS:"))
        .unwrap_or(0)
        * 1024
}

fn main() {
    let watchers = env_u64("META_WATCHERS", 10_000);
    let secs = env_u64("META_WATCH_SECS", 10);
    let rate = env_u64("META_WATCH_RATE", 50);
    use_node_binary();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = dir.path().join("node.toml");
    let slots = watchers + 64;
    std::fs::write(
        &config,
        format!(
            "[limits]\nmax_client_connections = {slots}\nmax_connections_per_address = {slots}\n\
             [watch]\nprogress_ms = 2000\n"
        ),
    )
    .expect("writing the config");
    let config = config.to_str().expect("a UTF-8 path").to_string();
    let node = start_node_with(
        1,
        "lmdb",
        &dir.path().join("n1"),
        true,
        &["--insecure", "--config", &config],
    );
    // The writers and the watchers' readers on runtimes of their own: a
    // writer's answer must not wait behind 10,000 reader tasks of this
    // process (the node is what is measured).
    let rt = runtime();
    let readers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime for the readers");
    let api = node.api.clone();

    // Phase 1: the writers alone.
    let alone = rt.block_on(write_phase(&api, rate, secs, "alone"));

    // The watchers, connected and caught up.
    let before = rss(&node);
    let received = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(AtomicU64::new(0));
    let connect = Instant::now();
    for _ in 0..watchers {
        readers.spawn(watcher(api.clone(), received.clone(), ready.clone()));
    }
    wait_until(300, "every watcher to catch up", || {
        ready.load(Ordering::Relaxed) == watchers
    });
    let connect_secs = connect.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(1));
    let after = rss(&node);
    let per_watcher = after.saturating_sub(before) / watchers.max(1);

    // Phase 2: the same writers, watched (under bench/watched/).
    let start = Instant::now();
    let watched = rt.block_on(write_phase(&api, rate, secs, "watched"));
    let expected = watched.writes * watchers;
    let delivered_by = Instant::now() + Duration::from_secs(120);
    while received.load(Ordering::Relaxed) < expected && Instant::now() < delivered_by {
        std::thread::sleep(Duration::from_millis(50));
    }
    let delivery_secs = start.elapsed().as_secs_f64();
    let got = received.load(Ordering::Relaxed);
    let peak = node.peak_rss().unwrap_or(0);

    let ms = |l: &Latencies, q| l.quantile(q).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    let alone_rate = alone.writes as f64 / alone.secs;
    let watched_rate = watched.writes as f64 / watched.secs;
    let result = json!({
        "watchers": watchers,
        "target_writes_per_sec": rate,
        "alone": {"writes_per_sec": alone_rate, "p50_ms": ms(&alone.latencies, 0.5), "p99_ms": ms(&alone.latencies, 0.99)},
        "watched": {"writes_per_sec": watched_rate, "p50_ms": ms(&watched.latencies, 0.5), "p99_ms": ms(&watched.latencies, 0.99)},
        "throughput_drop": 1.0 - watched_rate / alone_rate,
        "events_expected": expected,
        "events_received": got,
        "every_watcher_got_every_event": got == expected,
        "events_per_sec": got as f64 / delivery_secs,
        "connect_secs": connect_secs,
        "node_rss_before_watchers": before,
        "node_rss_with_watchers": after,
        "node_bytes_per_watcher": per_watcher,
        "node_peak_rss": peak,
    });
    println!("{}", serde_json::to_string_pretty(&result).expect("JSON"));
    let out = target_dir().join("bench-watch.json");
    std::fs::write(&out, result.to_string()).expect("writing the result");
    assert_eq!(got, expected, "every watcher receives every event");
}
