//! End-to-end over HTTP against real `meta-node` processes on loopback:
//! a single node and a 3-node cluster per engine; durable writes,
//! linearizable reads and stale reads, with 1 / 16 / 64 closed-loop
//! clients (throughput from criterion, p50/p99 recorded for
//! `cargo xtask bench`). Clients talk to the leader.

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use meta_benches::load::bench_clients;
use meta_benches::procs::{Cluster, use_node_binary};
use meta_benches::{Engine, runtime};

const CLIENTS: [u64; 3] = [1, 16, 64];
/// Keys the read benches read (written before they start).
const READ_KEYS: u64 = 1000;

fn http_client() -> reqwest::Client {
    meta_node::client::http_builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

async fn put(http: &reqwest::Client, url: String) {
    let answer = http
        .put(url)
        .body(vec![b'v'; 100])
        .send()
        .await
        .expect("PUT sent");
    assert!(answer.status().is_success(), "PUT: {}", answer.status());
}

async fn read(http: &reqwest::Client, url: String) {
    let answer = http.get(url).send().await.expect("GET sent");
    assert!(answer.status().is_success(), "GET: {}", answer.status());
    answer.bytes().await.expect("GET body");
}

/// Every group for one topology (`single`: one node, `cluster3`: three).
fn topology(c: &mut Criterion, name: &str, nodes: u64) {
    let rt = runtime();
    let http = http_client();
    use_node_binary();
    let clusters: Vec<(&str, Cluster, String)> = Engine::ALL
        .iter()
        .map(|engine| {
            let cluster = Cluster::start(engine.name(), nodes);
            let leader = format!("http://{}", cluster.leader().expect("a leader").api);
            (engine.name(), cluster, leader)
        })
        .collect();
    for (_, _, leader) in &clusters {
        rt.block_on(async {
            for i in 0..READ_KEYS {
                put(&http, format!("{leader}/v1/kv/read/{i:06}")).await;
            }
        });
    }
    let groups = [
        ("writes", ""),
        ("reads_linearizable", ""),
        ("reads_stale", "?stale=true"),
    ];
    for (kind, query) in groups {
        let group_name = format!("http_{name}_{kind}");
        let mut group = c.benchmark_group(&group_name);
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(4));
        for (engine, _, leader) in &clusters {
            for clients in CLIENTS {
                let (http, leader) = (http.clone(), leader.clone());
                let writes = kind == "writes";
                bench_clients(&mut group, &group_name, &rt, engine, clients, move |i| {
                    let http = http.clone();
                    let url = if writes {
                        format!("{leader}/v1/kv/bench/{i:012}")
                    } else {
                        format!("{leader}/v1/kv/read/{:06}{query}", i * 7919 % READ_KEYS)
                    };
                    async move {
                        if writes {
                            put(&http, url).await
                        } else {
                            read(&http, url).await
                        }
                    }
                });
            }
        }
        group.finish();
    }
    record_peak_rss(name, &clusters);
}

/// Appends each cluster's largest node peak RSS (after all its groups) to
/// `target/bench-node-rss.json`, for `cargo xtask bench`.
fn record_peak_rss(topology: &str, clusters: &[(&str, Cluster, String)]) {
    let path = meta_benches::target_dir().join("bench-node-rss.json");
    let mut all: Vec<serde_json::Value> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    all.retain(|v| v["topology"] != topology);
    for (engine, cluster, _) in clusters {
        let peak = cluster.nodes.iter().filter_map(|n| n.peak_rss()).max();
        all.push(serde_json::json!({"topology": topology, "engine": engine, "peak_rss": peak}));
    }
    let written = serde_json::to_vec_pretty(&all)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&path, bytes));
    if let Err(e) = written {
        eprintln!("could not record peak RSS in {}: {e}", path.display());
    }
}

fn single_node(c: &mut Criterion) {
    topology(c, "single", 1);
}

fn three_nodes(c: &mut Criterion) {
    topology(c, "cluster3", 3);
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = single_node, three_nodes
}
criterion_main!(benches);
