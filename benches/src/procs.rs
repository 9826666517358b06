//! Real `meta-node` processes on loopback, for the cluster benches: build
//! the binary, start nodes, form a cluster over the HTTP API, find the
//! leader, read a process's peak RSS. The processes are the test kit's
//! ([`meta_testkit::procs::Proc`]), killed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

pub use meta_testkit::procs::{Proc, proc_status_kib};
pub use meta_testkit::wait_until;
use serde_json::{Value, json};

/// Chooses the `meta-node` binary the nodes run: `$META_NODE_BIN` if set
/// (`cargo xtask bench` sets it), else built now with `cargo build
/// --release -p meta-node`. Call it before starting a node.
pub fn use_node_binary() {
    meta_testkit::procs::use_binary(node_binary());
}

fn node_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("META_NODE_BIN") {
        return bin.into();
    }
    let target = crate::target_dir();
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--release",
            "-p",
            "meta-node",
            "--bin",
            "meta-node",
        ])
        .arg("--manifest-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .expect("running cargo build");
    assert!(status.success(), "building meta-node failed");
    target.join("release/meta-node")
}

/// Starts `meta-node serve --insecure` on `dir` and waits until it
/// answers: the engine and Raft path, without auth and TLS (their cost is
/// measured on its own, by the `security_ops` bench).
pub fn start_node(id: u64, engine: &str, dir: &Path, bootstrap: bool) -> Proc {
    start_node_with(id, engine, dir, bootstrap, &["--insecure"])
}

/// Starts `meta-node serve` with these extra flags (secure unless they say
/// `--insecure`) and waits until it answers (over HTTPS, only until it
/// accepts connections).
pub fn start_node_with(id: u64, engine: &str, dir: &Path, bootstrap: bool, extra: &[&str]) -> Proc {
    let node = Proc::launch(id, engine, dir, bootstrap, extra);
    let https = extra.contains(&"--tls-cert");
    wait_until(30, "a node to answer /health", || {
        if https {
            std::net::TcpStream::connect(&node.api).is_ok()
        } else {
            get(&node.api, "/health").is_some()
        }
    });
    node
}

/// A blocking GET of `path` on `api`; the JSON answer of a 2xx.
pub fn get(api: &str, path: &str) -> Option<Value> {
    http("GET", api, path, None)
}

/// A blocking POST of JSON; the JSON answer of a 2xx.
pub fn post(api: &str, path: &str, body: &Value) -> Option<Value> {
    http("POST", api, path, Some(body))
}

fn http(method: &str, api: &str, path: &str, body: Option<&Value>) -> Option<Value> {
    // A small blocking client: benches call this from plain threads, and
    // from inside a runtime, so no async client here.
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(api).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: {api}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let (head, body) = answer.split_once("\r\n\r\n")?;
    let ok = head
        .split_whitespace()
        .nth(1)
        .is_some_and(|code| code.starts_with('2'));
    ok.then(|| serde_json::from_str(body).unwrap_or(Value::Null))
}

/// A cluster of node processes on one engine.
pub struct Cluster {
    /// The nodes, by id order.
    pub nodes: Vec<Proc>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` nodes, initialises them as one cluster of `n` voters and
    /// waits for a leader.
    pub fn start(engine: &str, n: u64) -> Cluster {
        Self::start_configured(engine, n, "")
    }

    /// [`Cluster::start`], every node with this TOML config file (as
    /// `--config`; empty: none).
    pub fn start_configured(engine: &str, n: u64, config: &str) -> Cluster {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let file = dir.path().join("node.toml");
        std::fs::write(&file, config).expect("writing the nodes' config");
        let file = file.to_str().expect("a UTF-8 temporary path");
        let mut flags = vec!["--insecure"];
        if !config.is_empty() {
            flags.extend(["--config", file]);
        }
        let nodes: Vec<Proc> = (1..=n)
            .map(|id| {
                let data = dir.path().join(format!("n{id}"));
                start_node_with(id, engine, &data, false, &flags)
            })
            .collect();
        let members: Vec<Value> = nodes
            .iter()
            .map(|p| json!({"id": p.id, "raft": p.raft, "api": p.api}))
            .collect();
        post(&nodes[0].api, "/v1/cluster/init", &json!(members)).expect("initialising the cluster");
        let cluster = Cluster { nodes, _dir: dir };
        wait_until(30, "a leader", || cluster.leader().is_some());
        cluster
    }

    /// The leader node, if every node agrees on one.
    pub fn leader(&self) -> Option<&Proc> {
        let mut leaders = self
            .nodes
            .iter()
            .map(|n| get(&n.api, "/v1/cluster/status").and_then(|s| s["leader"].as_u64()));
        let first = leaders.next()??;
        if leaders.all(|l| l == Some(first)) {
            self.nodes.iter().find(|n| n.id == first)
        } else {
            None
        }
    }
}
