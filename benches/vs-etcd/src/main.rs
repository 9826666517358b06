//! meta-node and etcd side by side, on this machine, in one run
//! (`cargo xtask bench --vs etcd` runs this and writes the table).
//!
//! Each system runs as one node and as a 3-node cluster on loopback, and
//! each is driven by the same closed-loop load (every client sends its next
//! operation when the previous one answered) through its own native client
//! and through HTTP/JSON:
//!
//! - meta-node (LMDB and fjall): HTTP with `reqwest`, and the typed client
//!   `meta-client` (LMDB);
//! - etcd: gRPC with the `etcd-client` crate, and its JSON gateway.
//!
//! Workloads: writes (100-byte values, new keys, to the leader),
//! linearizable reads, serializable (stale) reads, and a 90/10 mix of
//! linearizable reads and writes. Reads spread over every node (client `i`
//! reads from node `i mod n`); writes go to the leader. Both systems fsync
//! every write and run without TLS or authentication (their cost is
//! measured apart, by the `security_ops` bench).
//!
//! Usage: `meta-vs-etcd --out FILE [--seconds S] [--clients 1,16,64,256]
//! [--nodes 1,3] [--systems lmdb,fjall,etcd] [--workloads
//! writes,linearizable,serializable,mixed]` (subsets, for profiling one
//! case; `mem` is meta-node on the memory engine, no fsync, to tell the
//! disk's share from the rest).
//! Needs `etcd` on `PATH`; `META_NODE_BIN` names the `meta-node` binary
//! (else it is built).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use meta_benches::load::Latencies;
use meta_benches::procs::{Cluster, use_node_binary};
use meta_testkit::free_addr;
use serde_json::json;

/// Keys the reads read (written before the load starts).
const READ_KEYS: u64 = 1000;
/// The value of every write.
const VALUE: [u8; 100] = [b'v'; 100];
/// meta-node's config in this bench: an HTTP/1.1 client needs one
/// connection per request in flight, and every client here comes from
/// 127.0.0.1, so the connection limits (1,024 in all and 128 per address
/// by default, against a flood from one host) are raised for 256 clients
/// over two transports. etcd's gRPC multiplexes its clients on HTTP/2 and
/// has no such limits.
const CONFIG: &str =
    "[limits]\nmax_client_connections = 4096\nmax_connections_per_address = 2048\n";
/// Load before measuring, per row.
const WARM_UP: Duration = Duration::from_millis(500);

type Failure = String;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    Writes,
    ReadsLinearizable,
    ReadsSerializable,
    Mixed,
}

impl Workload {
    const ALL: [Workload; 4] = [
        Workload::Writes,
        Workload::ReadsLinearizable,
        Workload::ReadsSerializable,
        Workload::Mixed,
    ];

    /// Its name on the command line.
    fn arg(self) -> &'static str {
        match self {
            Workload::Writes => "writes",
            Workload::ReadsLinearizable => "linearizable",
            Workload::ReadsSerializable => "serializable",
            Workload::Mixed => "mixed",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Workload::Writes => "writes",
            Workload::ReadsLinearizable => "reads, linearizable",
            Workload::ReadsSerializable => "reads, serializable",
            Workload::Mixed => "mixed 90% reads / 10% writes",
        }
    }

    /// Whether operation `n` writes.
    fn writes(self, n: u64) -> bool {
        match self {
            Workload::Writes => true,
            Workload::Mixed => n.is_multiple_of(10),
            Workload::ReadsLinearizable | Workload::ReadsSerializable => false,
        }
    }
}

/// One system through one client, as the load sees it.
#[derive(Clone)]
enum Target {
    MetaHttp {
        http: reqwest::Client,
        leader: String,
        nodes: Vec<String>,
    },
    MetaClient {
        leader: Arc<meta_client::Client>,
        nodes: Vec<Arc<meta_client::Client>>,
    },
    EtcdGrpc {
        leader: etcd_client::KvClient,
        nodes: Vec<etcd_client::KvClient>,
    },
    EtcdHttp {
        http: reqwest::Client,
        leader: String,
        nodes: Vec<String>,
    },
}

impl Target {
    async fn put(&self, key: String) -> Result<(), Failure> {
        match self {
            Target::MetaHttp { http, leader, .. } => {
                let answer = http
                    .put(format!("{leader}/v1/kv/{key}"))
                    .body(VALUE.to_vec())
                    .send()
                    .await;
                ok(answer).await
            }
            Target::MetaClient { leader, .. } => leader
                .put(&key, VALUE)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Target::EtcdGrpc { leader, .. } => leader
                .clone()
                .put(key, VALUE.to_vec(), None)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Target::EtcdHttp { http, leader, .. } => {
                let body = json!({"key": B64.encode(key), "value": B64.encode(VALUE)});
                let answer = http
                    .post(format!("{leader}/v3/kv/put"))
                    .json(&body)
                    .send()
                    .await;
                ok(answer).await
            }
        }
    }

    async fn get(&self, node: usize, key: String, serializable: bool) -> Result<(), Failure> {
        match self {
            Target::MetaHttp { http, nodes, .. } => {
                let stale = if serializable { "?stale=true" } else { "" };
                let url = format!("{}/v1/kv/{key}{stale}", nodes[node % nodes.len()]);
                ok(http.get(url).send().await).await
            }
            Target::MetaClient { nodes, .. } => {
                let consistency = if serializable {
                    meta_client::Consistency::Stale
                } else {
                    meta_client::Consistency::Linearizable
                };
                nodes[node % nodes.len()]
                    .read(&key, consistency)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
            Target::EtcdGrpc { nodes, .. } => {
                let options =
                    serializable.then(|| etcd_client::GetOptions::new().with_serializable());
                nodes[node % nodes.len()]
                    .clone()
                    .get(key, options)
                    .await
                    .map(drop)
                    .map_err(|e| e.to_string())
            }
            Target::EtcdHttp { http, nodes, .. } => {
                let body = json!({"key": B64.encode(key), "serializable": serializable});
                let url = format!("{}/v3/kv/range", nodes[node % nodes.len()]);
                ok(http.post(url).json(&body).send().await).await
            }
        }
    }

    /// Operation `n` of `workload` by client `client`.
    async fn op(&self, workload: Workload, client: usize, n: u64) -> Result<(), Failure> {
        if workload.writes(n) {
            self.put(format!("bench/{n:012}")).await
        } else {
            let key = format!("read/{:06}", n * 7919 % READ_KEYS);
            self.get(client, key, workload == Workload::ReadsSerializable)
                .await
        }
    }
}

/// A 2xx, its body read; anything else is a failure saying what.
async fn ok(answer: reqwest::Result<reqwest::Response>) -> Result<(), Failure> {
    let answer = answer.map_err(|e| e.to_string())?;
    let status = answer.status();
    let body = answer.bytes().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{status}: {}", String::from_utf8_lossy(&body)))
    }
}

/// What one row measured.
struct Measured {
    ops: u64,
    elapsed: Duration,
    latencies: Latencies,
    errors: u64,
    first_error: Option<String>,
}

/// Runs `clients` closed-loop clients for [`WARM_UP`] plus `run`, counting
/// what completed (and failed) after the warm-up.
async fn measure(target: &Target, workload: Workload, clients: usize, run: Duration) -> Measured {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let (from, until) = (start + WARM_UP, start + WARM_UP + run);
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let (target, next) = (target.clone(), next.clone());
        tasks.spawn(async move {
            let (mut samples, mut errors, mut first_error) = (Vec::new(), 0u64, None);
            loop {
                let t = Instant::now();
                if t >= until {
                    break;
                }
                let n = next.fetch_add(1, Ordering::Relaxed);
                let result = target.op(workload, client, n).await;
                if t < from {
                    continue;
                }
                match result {
                    Ok(()) => samples.push(t.elapsed().as_nanos() as u64),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (samples, errors, first_error)
        });
    }
    let latencies = Latencies::default();
    let (mut ops, mut errors, mut first_error) = (0, 0, None);
    while let Some(done) = tasks.join_next().await {
        let (samples, e, first) = done.expect("a load client panicked");
        ops += samples.len() as u64;
        latencies.extend(samples);
        errors += e;
        first_error = first_error.or(first);
    }
    Measured {
        ops,
        elapsed: start.elapsed().saturating_sub(WARM_UP).max(run),
        latencies,
        errors,
        first_error,
    }
}

/// etcd members on loopback; killed on drop.
struct Etcd {
    members: Vec<Child>,
    /// Client URLs, by member.
    endpoints: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Etcd {
    fn start(n: usize) -> Etcd {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let peers: Vec<(String, String)> = (0..n).map(|_| (free_addr(), free_addr())).collect();
        let cluster: Vec<String> = peers
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("e{i}=http://{peer}"))
            .collect();
        let members = peers
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                Command::new("etcd")
                    .args(["--name", &format!("e{i}")])
                    .arg("--data-dir")
                    .arg(dir.path().join(format!("e{i}")))
                    .args(["--listen-client-urls", &format!("http://{client}")])
                    .args(["--advertise-client-urls", &format!("http://{client}")])
                    .args(["--listen-peer-urls", &format!("http://{peer}")])
                    .args(["--initial-advertise-peer-urls", &format!("http://{peer}")])
                    .args(["--initial-cluster", &cluster.join(",")])
                    .args(["--initial-cluster-token", "meta-vs-etcd"])
                    .args(["--initial-cluster-state", "new"])
                    .args(["--logger", "zap", "--log-level", "error"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawning etcd (is it on PATH?)")
            })
            .collect();
        Etcd {
            members,
            endpoints: peers
                .iter()
                .map(|(client, _)| format!("http://{client}"))
                .collect(),
            _dir: dir,
        }
    }

    /// The leader's client URL, once every member names the same leader.
    async fn leader(&self) -> Option<String> {
        let mut leader = None;
        let mut by_id = Vec::new();
        for endpoint in &self.endpoints {
            let client = etcd_client::Client::connect([endpoint], None).await.ok()?;
            let status = client.maintenance_client().status().await.ok()?;
            let (id, says) = (status.header()?.member_id(), status.leader());
            if says == 0 || leader.is_some_and(|l| l != says) {
                return None;
            }
            leader = Some(says);
            by_id.push((id, endpoint.clone()));
        }
        let leader = leader?;
        by_id
            .into_iter()
            .find(|(id, _)| *id == leader)
            .map(|(_, e)| e)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for member in &mut self.members {
            let _ = member.kill();
            let _ = member.wait();
        }
    }
}

fn http_client() -> reqwest::Client {
    meta_node::client::http_builder()
        .pool_max_idle_per_host(512)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

async fn meta_targets(cluster: &Cluster, typed: bool) -> Vec<(&'static str, Target)> {
    let leader = cluster.leader().expect("a leader").api.clone();
    let nodes: Vec<String> = cluster.nodes.iter().map(|n| n.api.clone()).collect();
    let mut targets = vec![(
        "http",
        Target::MetaHttp {
            http: http_client(),
            leader: format!("http://{leader}"),
            nodes: nodes.iter().map(|n| format!("http://{n}")).collect(),
        },
    )];
    if typed {
        let client = |endpoint: &str| {
            Arc::new(
                meta_client::ClientBuilder::new([endpoint])
                    .timeout(Duration::from_secs(30))
                    .build()
                    .expect("a meta-client"),
            )
        };
        targets.push((
            "meta-client",
            Target::MetaClient {
                leader: client(&leader),
                nodes: nodes.iter().map(|n| client(n)).collect(),
            },
        ));
    }
    targets
}

async fn etcd_targets(etcd: &Etcd) -> Vec<(&'static str, Target)> {
    let mut leader = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    while leader.is_none() {
        assert!(Instant::now() < deadline, "etcd elected no leader in 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
        leader = etcd.leader().await;
    }
    let leader = leader.expect("a leader");
    let kv = |endpoint: String| async move {
        etcd_client::Client::connect([endpoint], None)
            .await
            .expect("connecting to etcd")
            .kv_client()
    };
    let mut nodes = Vec::new();
    for endpoint in &etcd.endpoints {
        nodes.push(kv(endpoint.clone()).await);
    }
    vec![
        (
            "grpc",
            Target::EtcdGrpc {
                leader: kv(leader.clone()).await,
                nodes,
            },
        ),
        (
            "http",
            Target::EtcdHttp {
                http: http_client(),
                leader,
                nodes: etcd.endpoints.clone(),
            },
        ),
    ]
}

/// Writes the keys the reads read, through `target`.
async fn preload(target: &Target) {
    for i in 0..READ_KEYS {
        target
            .put(format!("read/{i:06}"))
            .await
            .expect("writing the keys to read");
    }
}

fn etcd_version() -> String {
    Command::new("etcd")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("etcd Version: "))
                .map(str::to_string)
        })
        .unwrap_or_else(|| "?".into())
}

struct Options {
    out: std::path::PathBuf,
    seconds: f64,
    clients: Vec<usize>,
    nodes: Vec<usize>,
    systems: Vec<String>,
    workloads: Vec<Workload>,
}

const USAGE: &str = "usage: meta-vs-etcd --out FILE [--seconds S] [--clients 1,16,64,256] \
                     [--nodes 1,3] [--systems lmdb,fjall,etcd,mem] \
                     [--workloads writes,linearizable,serializable,mixed]";

/// A comma-separated list, each item parsed by `parse`.
fn list<T>(arg: &str, value: &str, parse: impl Fn(&str) -> Option<T>) -> Result<Vec<T>, String> {
    value
        .split(',')
        .map(|item| parse(item).ok_or(format!("{arg}: {item:?} is not one of them ({USAGE})")))
        .collect()
}

fn options() -> Result<Options, String> {
    let mut options = Options {
        out: "vs-etcd.json".into(),
        seconds: 2.0,
        clients: vec![1, 16, 64, 256],
        nodes: vec![1, 3],
        systems: vec!["lmdb".into(), "fjall".into(), "etcd".into()],
        workloads: Workload::ALL.to_vec(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--out" => options.out = value()?.into(),
            "--seconds" => {
                options.seconds = value()?.parse().map_err(|e| format!("--seconds: {e}"))?
            }
            "--clients" => options.clients = list(&arg, &value()?, |c| c.parse().ok())?,
            "--nodes" => options.nodes = list(&arg, &value()?, |n| n.parse().ok())?,
            "--systems" => {
                options.systems = list(&arg, &value()?, |s| {
                    ["lmdb", "fjall", "mem", "etcd"]
                        .contains(&s)
                        .then(|| s.to_string())
                })?
            }
            "--workloads" => {
                options.workloads = list(&arg, &value()?, |w| {
                    Workload::ALL.into_iter().find(|x| x.arg() == w)
                })?
            }
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(options)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let options = match options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    if Command::new("etcd").arg("--version").output().is_err() {
        eprintln!("etcd is not on PATH: install it (`apt-get install etcd-server`)");
        return std::process::ExitCode::from(2);
    }
    use_node_binary();
    let etcd = format!("etcd {}", etcd_version());
    let run = Duration::from_secs_f64(options.seconds);
    let mut rows = Vec::new();
    for &nodes in &options.nodes {
        // One system at a time on the machine: each gets both cores, and
        // is stopped before the next starts.
        for system in &options.systems {
            let (name, targets, running): (String, _, Box<dyn std::any::Any>) =
                match (system != "etcd").then_some(system.as_str()) {
                    Some(engine) => {
                        let cluster = Cluster::start_configured(engine, nodes as u64, CONFIG);
                        let targets = meta_targets(&cluster, engine == "lmdb").await;
                        (format!("meta-node {engine}"), targets, Box::new(cluster))
                    }
                    None => {
                        let cluster = Etcd::start(nodes);
                        let targets = etcd_targets(&cluster).await;
                        (etcd.clone(), targets, Box::new(cluster))
                    }
                };
            preload(&targets[0].1).await;
            for &workload in &options.workloads {
                for (transport, target) in &targets {
                    for &clients in &options.clients {
                        let m = measure(target, workload, clients, run).await;
                        let rate = m.ops as f64 / m.elapsed.as_secs_f64();
                        let us = |q| m.latencies.quantile(q).map(|d| d.as_secs_f64() * 1e6);
                        eprintln!(
                            "{nodes} node(s) | {} | {name} {transport} | {clients} clients: {rate:.0}/s, p50 {:.0} µs, p99 {:.0} µs, {} errors {}",
                            workload.name(),
                            us(0.5).unwrap_or(f64::NAN),
                            us(0.99).unwrap_or(f64::NAN),
                            m.errors,
                            m.first_error.as_deref().unwrap_or("")
                        );
                        rows.push(json!({
                            "nodes": nodes,
                            "workload": workload.name(),
                            "system": name,
                            "transport": transport,
                            "clients": clients,
                            "ops_per_sec": rate,
                            "p50_us": us(0.5),
                            "p99_us": us(0.99),
                            "errors": m.errors,
                            "first_error": m.first_error,
                        }));
                    }
                }
            }
            drop(running);
        }
    }
    let report = json!({"etcd": etcd, "seconds_per_row": options.seconds, "rows": rows});
    let written = serde_json::to_vec_pretty(&report)
        .map_err(std::io::Error::other)
        .and_then(|bytes| std::fs::write(&options.out, bytes));
    match written {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("writing {}: {e}", options.out.display());
            std::process::ExitCode::FAILURE
        }
    }
}
