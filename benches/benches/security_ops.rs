//! What authentication and TLS cost on the request path: one `meta-node`
//! process (LMDB) per mode, 16 closed-loop clients on loopback, durable
//! writes and stale reads:
//!
//! - `insecure`: `--insecure`, plain HTTP, no token (the baseline);
//! - `auth`: the zero-config default, plain HTTP on loopback, a bearer
//!   token checked on every request (SHA-256 and a constant-time compare);
//! - `auth_tls`: `[tls]` configured, HTTPS (TLS 1.3, kept-alive
//!   connections) and the token.

use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use meta_benches::load::bench_clients;
use meta_benches::procs::{Proc, start_node, start_node_with, use_node_binary};
use meta_benches::runtime;

const CLIENTS: u64 = 16;
const READ_KEYS: u64 = 1000;

/// One node in `mode`, and a client that talks to it as that mode needs.
struct Setup {
    mode: &'static str,
    _node: Proc,
    base: String,
    http: reqwest::Client,
    token: Option<String>,
    _dir: tempfile::TempDir,
}

fn certs(bin: &Path, dir: &Path) -> [String; 3] {
    let run = |args: &[&str]| {
        let status = std::process::Command::new(bin)
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("running meta-node certs");
        assert!(status.success(), "meta-node {args:?}");
    };
    let ca = dir.join("certs");
    let ca = ca.to_str().expect("a UTF-8 path");
    run(&["certs", "create-ca", "--dir", ca]);
    run(&[
        "certs",
        "create-node",
        "--id",
        "1",
        "--host",
        "127.0.0.1",
        "--ca-dir",
        ca,
    ]);
    ["ca.pem", "node.pem", "node.key"].map(|f| format!("{ca}/node-1/{f}"))
}

fn setup(bin: &Path, mode: &'static str) -> Setup {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().join("data");
    let mut builder = meta_node::client::http_builder()
        .pool_max_idle_per_host(256)
        .timeout(Duration::from_secs(30));
    let (node, scheme) = match mode {
        "insecure" => (start_node(1, "lmdb", &data, true), "http"),
        "auth" => (start_node_with(1, "lmdb", &data, true, &[]), "http"),
        _ => {
            let [ca, cert, key] = certs(bin, dir.path());
            let flags = ["--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key];
            let config = meta_node::tls::https_client_config(Path::new(&ca)).expect("the CA");
            builder = builder.tls_backend_preconfigured(config);
            (start_node_with(1, "lmdb", &data, true, &flags), "https")
        }
    };
    let token = (mode != "insecure").then(|| {
        std::fs::read_to_string(data.join("root.token"))
            .expect("the root token")
            .trim()
            .to_string()
    });
    Setup {
        mode,
        base: format!("{scheme}://{}", node.api),
        _node: node,
        http: builder.build().expect("an HTTP client"),
        token,
        _dir: dir,
    }
}

async fn send(setup: (reqwest::Client, Option<String>), method: reqwest::Method, url: String) {
    let (http, token) = setup;
    let writes = method == reqwest::Method::PUT;
    let mut request = http.request(method, url);
    if let Some(token) = &token {
        request = request.bearer_auth(token);
    }
    if writes {
        request = request.body(vec![b'v'; 100]);
    }
    let answer = request.send().await.expect("request sent");
    assert!(answer.status().is_success(), "{}", answer.status());
    answer.bytes().await.expect("body");
}

fn security(c: &mut Criterion) {
    let rt = runtime();
    use_node_binary();
    let bin = meta_testkit::procs::binary();
    let setups: Vec<Setup> = ["insecure", "auth", "auth_tls"]
        .into_iter()
        .map(|mode| setup(bin, mode))
        .collect();
    for s in &setups {
        let client = (s.http.clone(), s.token.clone());
        rt.block_on(async {
            for i in 0..READ_KEYS {
                let url = format!("{}/v1/kv/read/{i:06}", s.base);
                send(client.clone(), reqwest::Method::PUT, url).await;
            }
        });
    }
    for (kind, method) in [
        ("writes", reqwest::Method::PUT),
        ("reads_stale", reqwest::Method::GET),
    ] {
        let group_name = format!("http_security_{kind}");
        let mut group = c.benchmark_group(&group_name);
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(4));
        for s in &setups {
            let (client, base, method) = (
                (s.http.clone(), s.token.clone()),
                s.base.clone(),
                method.clone(),
            );
            bench_clients(&mut group, &group_name, &rt, s.mode, CLIENTS, move |i| {
                let url = if method == reqwest::Method::PUT {
                    format!("{base}/v1/kv/bench/{i:012}")
                } else {
                    format!("{base}/v1/kv/read/{:06}?stale=true", i * 7919 % READ_KEYS)
                };
                send(client.clone(), method.clone(), url)
            });
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1));
    targets = security
}
criterion_main!(benches);
