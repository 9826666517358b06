//! Closed-loop load: `clients` tasks, each issuing its next operation as
//! soon as the previous one answered (as real clients do), with every
//! operation's latency recorded so the report can give p50 and p99 next
//! to criterion's throughput.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Throughput};

/// Latency samples (nanoseconds) of one benchmark, across all its runs.
#[derive(Clone, Default)]
pub struct Latencies(Arc<Mutex<Vec<u64>>>);

impl Latencies {
    /// Adds samples (nanoseconds).
    pub fn extend(&self, samples: Vec<u64>) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(samples);
    }

    /// The `q` quantile (0.0..=1.0), if any sample was taken.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let mut samples = self.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if samples.is_empty() {
            return None;
        }
        samples.sort_unstable();
        let i = ((samples.len() - 1) as f64 * q).round() as usize;
        Some(Duration::from_nanos(samples[i]))
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// True before any sample.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Runs `clients` closed-loop clients of `per_client` operations each;
/// `op(n)` gets a number unique across the whole benchmark. Returns the
/// wall time of the whole run.
pub async fn closed_loop<F, Fut>(
    clients: u64,
    per_client: u64,
    next: Arc<AtomicU64>,
    latencies: &Latencies,
    op: F,
) -> Duration
where
    F: Fn(u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (op, next) = (op.clone(), next.clone());
        tasks.spawn(async move {
            let mut samples = Vec::with_capacity(per_client as usize);
            for _ in 0..per_client {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let t = Instant::now();
                op(n).await;
                samples.push(t.elapsed().as_nanos() as u64);
            }
            samples
        });
    }
    while let Some(samples) = tasks.join_next().await {
        latencies.extend(samples.expect("a load client panicked"));
    }
    start.elapsed()
}

/// Where latency summaries go: `target/bench-latency/`, read by
/// `cargo xtask bench`.
pub fn latency_dir() -> PathBuf {
    crate::target_dir().join("bench-latency")
}

/// Benchmarks `op` with `clients` closed-loop clients as
/// `group/engine/clients` (throughput: operations per second), then writes
/// its p50/p99 to [`latency_dir`].
pub fn bench_clients<F, Fut>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    group_name: &str,
    rt: &tokio::runtime::Runtime,
    engine: &str,
    clients: u64,
    op: F,
) where
    F: Fn(u64) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let latencies = Latencies::default();
    let next = Arc::new(AtomicU64::new(0));
    group.throughput(Throughput::Elements(clients));
    group.bench_function(BenchmarkId::new(engine, clients), |b| {
        b.iter_custom(|iters| {
            rt.block_on(closed_loop(
                clients,
                iters,
                next.clone(),
                &latencies,
                op.clone(),
            ))
        })
    });
    let (Some(p50), Some(p99)) = (latencies.quantile(0.5), latencies.quantile(0.99)) else {
        return;
    };
    let summary = serde_json::json!({
        "group": group_name,
        "function": format!("{engine}/{clients}"),
        "samples": latencies.len(),
        "p50_ns": p50.as_nanos() as u64,
        "p99_ns": p99.as_nanos() as u64,
    });
    let dir = latency_dir();
    let written = std::fs::create_dir_all(&dir).and_then(|()| {
        std::fs::write(
            dir.join(format!("{group_name}__{engine}_{clients}.json")),
            summary.to_string(),
        )
    });
    if let Err(e) = written {
        eprintln!("could not record latencies in {}: {e}", dir.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_is_counted_once_with_unique_numbers() {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let latencies = Latencies::default();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let next = Arc::new(AtomicU64::new(0));
        let op_seen = seen.clone();
        rt.block_on(closed_loop(4, 25, next, &latencies, move |n| {
            let seen = op_seen.clone();
            async move { seen.lock().expect("lock").push(n) }
        }));
        let mut seen = seen.lock().expect("lock").clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..100).collect::<Vec<_>>());
        assert_eq!(latencies.len(), 100);
        let (p50, p99) = (latencies.quantile(0.5), latencies.quantile(0.99));
        assert!(p50.is_some() && p50 <= p99);
    }
}
