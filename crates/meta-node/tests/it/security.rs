//! The attack suite: what someone with network reach, a stolen or weak key,
//! or a lying node can and cannot do — against real `meta-node` processes.

use crate::common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{
    Dirs, Proc, ProcCluster, arg, bin_err, bin_ok, cli, cli_ok, free_port, runtime, wait_until,
};
use meta_node::auth::{self, Need, Principal, Scope};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

/// One request with an explicit token (or none), no redirects followed.
fn call(
    rt: &tokio::runtime::Runtime,
    api: &str,
    method: &Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (StatusCode, Value) {
    let http = meta_node::client::http_builder()
        .tls_backend_preconfigured(
            meta_node::tls::https_client_config(&common::test_ca().join("ca.pem")).unwrap(),
        )
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    rt.block_on(async {
        let mut request = http.request(method.clone(), format!("{}{path}", common::url(api)));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.body(match body {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        // A watch answers a stream that does not end: its status is enough.
        if response
            .headers()
            .get("content-type")
            .is_some_and(|t| t == "text/event-stream")
        {
            return (status, Value::Null);
        }
        (status, response.json().await.unwrap_or(Value::Null))
    })
}

/// A concrete request for each route of the table: a path and a body that
/// pass validation, so that only authorization decides the answer (the
/// destructive ones are aimed where they do no harm).
fn concrete(route: &auth::Route) -> (String, Option<Value>) {
    let path = route.path.replace("{*key}", "app/k").replace("{name}", "c");
    let path = match route.path {
        "/v1/cluster/nodes/{id}" => path.replace("{id}", "7"),
        "/v1/apikeys/{id}" => path.replace("{id}", "no-such-key"),
        "/v1/leases/{id}" | "/v1/leases/{id}/keepalive" => path.replace("{id}", "999999"),
        "/v1/watch" => "/v1/watch?prefix=app/k".into(),
        "/v1/kv" if route.method == reqwest::Method::DELETE => "/v1/kv?prefix=app/".into(),
        _ => path,
    };
    let body = match (route.method.as_str(), route.path) {
        ("PUT", "/v1/kv/{*key}") | ("PUT", "/v1/config/{name}") => Some(json!("v")),
        ("POST", "/v1/cas") => Some(json!({"key": "app/k", "expected": null, "new": "v"})),
        ("POST", "/v1/leases") => Some(json!({"ttl_secs": 60})),
        ("POST", "/v1/txn") => Some(json!({"success": [{"get": {"key": "app/k"}}]})),
        ("PUT", "/v1/cluster/nodes/{id}") => Some(json!({"address": "10.0.0.7:9000"})),
        ("PUT", "/v1/shards") => Some(json!({"expected_version": 99, "shards": {}})),
        ("POST", "/v1/apikeys") => Some(json!({"id": "made", "scopes": []})),
        ("POST", "/v1/apikeys/verify") => Some(json!({"id": "root", "secret": "guess"})),
        ("POST", "/v1/cluster/init") => Some(json!([{"id": 1, "raft": "a:1", "api": "b:1"}])),
        // Adding this node as its own learner, or keeping the voters as
        // they are: refused or a no-op, never harm.
        ("POST", "/v1/cluster/learners") => Some(json!({"id": 1, "raft": "x:1", "api": "y:1"})),
        ("POST", "/v1/cluster/membership") => Some(json!({"voters": [1], "retain": true})),
        _ => None,
    };
    (path, body)
}

const SCOPES: &[&str] = &[
    "admin",
    "read",
    "write",
    "monitor",
    "apikeys:verify",
    "apikeys:create",
    "kv:read",
    "kv:write",
    "kv:read:app/",
    "kv:write:other/",
    "config:read",
    "config:write",
    "cluster:read",
    "cluster:write",
    "shards:read",
    "shards:write",
];

/// Whether a key with `scope` may make the concrete request for `route`.
fn expected_allowed(route: &auth::Route, scope: &str) -> bool {
    let principal = Principal::Key {
        id: meta_raft::model::ApiKeyId("t".into()),
        scopes: vec![Scope::parse(scope).unwrap()],
        expires_at_ms: None,
    };
    match &route.need {
        // The concrete key of kv routes is `app/k` (and lists use no prefix).
        Need::Kv { write } => {
            let key = if route.path == "/v1/kv" { "" } else { "app/k" };
            principal.may(&auth::kv_scope(*write, key))
        }
        need => need.allows(&principal),
    }
}

#[test]
fn every_route_refuses_strangers_and_answers_each_scope_as_the_table_says() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let (api, raft) = (addr(), addr());
    let node = Proc::start(1, "lmdb", &dirs.node("n1"), true, &api, &raft, None);
    let rt = runtime();
    let root = common::token(&api).unwrap();
    let mut tokens = BTreeMap::new();
    for (i, scope) in SCOPES.iter().enumerate() {
        let created = cli_ok(
            &api,
            &["apikey", "create", &format!("k{i}"), "--scope", scope],
        );
        tokens.insert(*scope, created["token"].as_str().unwrap().to_string());
    }
    let mut checked = 0;
    for route in auth::routes() {
        let (path, body) = concrete(&route);
        let (status, answer) = call(&rt, &api, &route.method, &path, None, body.as_ref());
        if route.need == Need::Public {
            // `/` sends a browser to the dashboard.
            let expected = match path.as_str() {
                "/" => StatusCode::SEE_OTHER,
                _ => StatusCode::OK,
            };
            assert_eq!(status, expected, "{} {path}", route.method);
            continue;
        }
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "anonymous {} {path}",
            route.method
        );
        assert_eq!(answer["error"]["code"], "unauthenticated");
        for (bad, what) in [("root.wrong", "wrong secret"), ("nodot", "malformed")] {
            let (status, _) = call(&rt, &api, &route.method, &path, Some(bad), body.as_ref());
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{what} {} {path}",
                route.method
            );
        }
        for scope in SCOPES {
            let token = &tokens[scope];
            let (status, answer) =
                call(&rt, &api, &route.method, &path, Some(token), body.as_ref());
            let allowed = expected_allowed(&route, scope);
            if allowed {
                assert!(
                    status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN,
                    "`{scope}` must be allowed {} {path}: {status} {answer}",
                    route.method
                );
            } else {
                assert_eq!(
                    (status, answer["error"]["code"].as_str()),
                    (StatusCode::FORBIDDEN, Some("permission_denied")),
                    "`{scope}` must be refused {} {path}",
                    route.method
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 24 * SCOPES.len(), "only {checked} checks");

    // The cases an operator cares about, spelled out.
    let shards_reader = cli_ok(
        &api,
        &[
            "apikey",
            "create",
            "router",
            "--scope",
            "shards:read",
            "--scope",
            "cluster:read",
        ],
    );
    let router = shards_reader["token"].as_str().unwrap();
    let get = |path: &str, token: &str| call(&rt, &api, &Method::GET, path, Some(token), None).0;
    assert_eq!(get("/v1/shards", router), StatusCode::OK);
    assert_eq!(get("/v1/cluster/nodes", router), StatusCode::OK);
    assert_eq!(get("/v1/kv/app/k", router), StatusCode::FORBIDDEN);
    let put = |path: &str, token: &str| {
        call(
            &rt,
            &api,
            &Method::PUT,
            path,
            Some(token),
            Some(&json!("x")),
        )
        .0
    };
    assert_eq!(put("/v1/config/c", router), StatusCode::FORBIDDEN);
    let bot = cli_ok(
        &api,
        &["apikey", "create", "bot", "--scope", "kv:write:app/"],
    );
    let bot = bot["token"].as_str().unwrap();
    assert_eq!(put("/v1/kv/app/x", bot), StatusCode::OK);
    assert_eq!(put("/v1/kv/apple", bot), StatusCode::FORBIDDEN);
    assert_eq!(get("/v1/kv?prefix=app/", bot), StatusCode::OK);
    assert_eq!(get("/v1/kv", bot), StatusCode::FORBIDDEN);
    assert_eq!(get("/v1/kv?prefix=ap", bot), StatusCode::FORBIDDEN);
    let cas = json!({"key": "other/x", "expected": null, "new": "v"});
    let (status, _) = call(&rt, &api, &Method::POST, "/v1/cas", Some(bot), Some(&cas));
    assert_eq!(status, StatusCode::FORBIDDEN);

    // No key grants more than itself, and the root token never shows up in
    // what the node says about keys.
    let minter = cli_ok(
        &api,
        &[
            "apikey",
            "create",
            "minter",
            "--scope",
            "apikeys:create",
            "--scope",
            "kv:read:app/",
        ],
    );
    let minter = minter["token"].as_str().unwrap();
    let mint = |scope: &str| {
        let body =
            json!({"id": format!("m-{}", scope.replace([':', '/'], "-")), "scopes": [scope]});
        call(
            &rt,
            &api,
            &Method::POST,
            "/v1/apikeys",
            Some(minter),
            Some(&body),
        )
        .0
    };
    assert_eq!(mint("kv:read:app/sub/"), StatusCode::OK);
    // ... nor outlives it.
    let mortal = cli_ok(
        &api,
        &[
            "apikey",
            "create",
            "mortal",
            "--scope",
            "apikeys:create",
            "--expires-in-secs",
            "3600",
        ],
    );
    let body = json!({"id": "child", "scopes": []});
    let (status, child) = call(
        &rt,
        &api,
        &Method::POST,
        "/v1/apikeys",
        Some(mortal["token"].as_str().unwrap()),
        Some(&body),
    );
    assert_eq!(status, StatusCode::OK);
    let limit = mortal["expires_at_ms"].as_u64().unwrap();
    assert!(
        child["expires_at_ms"]
            .as_u64()
            .is_some_and(|at| at <= limit),
        "{child} vs {limit}"
    );
    // Key ids are printable and routable.
    for bad in ["a/b", "verify", "two\nlines"] {
        let body = json!({"id": bad, "scopes": []});
        let (status, _) = call(
            &rt,
            &api,
            &Method::POST,
            "/v1/apikeys",
            Some(&root),
            Some(&body),
        );
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}");
    }
    assert_eq!(mint("kv:write:app/"), StatusCode::FORBIDDEN);
    assert_eq!(mint("admin"), StatusCode::FORBIDDEN);
    let (status, listed) = call(&rt, &api, &Method::GET, "/v1/apikeys", Some(&root), None);
    assert_eq!(status, StatusCode::OK);
    let secret = root.rsplit_once('.').unwrap().1;
    assert!(!listed.to_string().contains(secret));
    let metrics = call(&rt, &api, &Method::GET, "/metrics", Some(&root), None);
    assert!(!format!("{metrics:?}").contains(secret));
    // Nor in the node's log (at info, openraft included), with every token
    // of this test sent to it many times, good and bad.
    let log = std::fs::read_to_string(&node.log).unwrap();
    for token in tokens.values().chain([&root]) {
        let secret = token.rsplit_once('.').unwrap().1;
        assert!(!log.contains(secret), "a secret is in the node's log");
    }
}

#[test]
fn a_revoked_key_stops_working_on_every_node_once_applied_there() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let cluster = ProcCluster::new(&dirs, &["lmdb", "fjall", "lmdb"]);
    let _nodes = cluster.form();
    let apis = cluster.apis();
    let rt = runtime();
    wait_until(20, "the root key on every node", || {
        apis.iter().all(|a| {
            let out = cli(a, &["kv", "get", "x", "--stale"]);
            String::from_utf8_lossy(&out.stderr).contains("not_found")
        })
    });
    let key = cli_ok(&apis[0], &["apikey", "create", "temp", "--scope", "read"]);
    let token = key["token"].as_str().unwrap().to_string();
    let stale_read = |api: &str| {
        call(
            &rt,
            api,
            &Method::GET,
            "/v1/kv/x?stale=true",
            Some(&token),
            None,
        )
        .0
    };
    for api in &apis {
        wait_until(20, "the new key on every node", || {
            stale_read(api) == StatusCode::NOT_FOUND
        });
    }
    // A narrow key follows a follower's redirect with the CLI (it may read
    // the members, nothing else of the cluster).
    let bot = cli_ok(
        &apis[0],
        &["apikey", "create", "bot", "--scope", "kv:write:app/"],
    );
    let bot = bot["token"].as_str().unwrap();
    let leader = cli_ok(&apis[0], &["cluster", "status"])["leader"]
        .as_u64()
        .unwrap();
    let follower = &apis[if leader == 1 { 1 } else { 0 }];
    let ca = common::test_ca().join("ca.pem");
    let (url, ca) = (common::url(follower), arg(&ca));
    bin_ok(&[
        "--addr", &url, "--ca", ca, "--token", bot, "kv", "put", "app/x", "1",
    ]);

    cli_ok(&apis[0], &["apikey", "revoke", "temp"]);
    for api in &apis {
        wait_until(20, "the revocation on every node", || {
            stale_read(api) == StatusCode::UNAUTHORIZED
        });
    }
}

#[test]
fn a_new_cluster_is_initialised_only_with_the_nodes_init_token() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let (api, raft) = (addr(), addr());
    let dir = dirs.node("n1");
    let _node = Proc::start(1, "fjall", &dir, false, &api, &raft, None);
    let rt = runtime();
    let members = json!([{"id": 1, "raft": raft, "api": api}]);
    let init = |token: Option<&str>| {
        call(
            &rt,
            &api,
            &Method::POST,
            "/v1/cluster/init",
            token,
            Some(&members),
        )
    };
    assert_eq!(init(None).0, StatusCode::UNAUTHORIZED);
    assert_eq!(init(Some("init.0000")).0, StatusCode::UNAUTHORIZED);
    let init_token = std::fs::read_to_string(dir.join("init.token")).unwrap();
    // The init token opens nothing else.
    let (status, _) = call(
        &rt,
        &api,
        &Method::GET,
        "/v1/cluster/status",
        Some(init_token.trim()),
        None,
    );
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, answer) = init(Some(init_token.trim()));
    assert_eq!(status, StatusCode::OK, "{answer}");
    let root = answer["root_token"].as_str().unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("root.token"))
            .unwrap()
            .trim(),
        root
    );
    assert!(
        !dir.join("init.token").exists(),
        "a spent init token is removed"
    );
    assert_eq!(init(Some(init_token.trim())).0, StatusCode::UNAUTHORIZED);
    let (status, _) = call(
        &rt,
        &api,
        &Method::PUT,
        "/v1/kv/a",
        Some(root),
        Some(&json!("1")),
    );
    assert_eq!(status, StatusCode::OK);
}

/// A fake node: answers every request with a redirect to `target`, and
/// `/v1/cluster/status` with a membership that does not include it.
fn fake_node(target: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let me = listener.local_addr().unwrap().to_string();
    let own = me.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buf = [0u8; 4096];
            let n = stream.read(&mut buf).unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]);
            let response = if request.starts_with("GET /v1/cluster/status") {
                let body = json!({"members": {"1": {"api": own, "raft": "x:1", "voter": true}}})
                    .to_string();
                format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                )
            } else {
                format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nlocation: http://{target}/v1/kv/a\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                )
            };
            let _ = stream.write_all(response.as_bytes());
        }
    });
    me
}

#[test]
fn the_cli_never_sends_a_token_to_an_address_that_is_not_a_member() {
    let attacker = TcpListener::bind("127.0.0.1:0").unwrap();
    let attacker_addr = attacker.local_addr().unwrap().to_string();
    let contacted = Arc::new(AtomicUsize::new(0));
    let seen = contacted.clone();
    attacker.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        for _ in 0..100 {
            if attacker.accept().is_ok() {
                seen.fetch_add(1, Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let fake = fake_node(attacker_addr);
    let fake = format!("http://{fake}");
    let stderr = bin_err(&[
        "--addr",
        &fake,
        "--token",
        "root.s3cret",
        "kv",
        "put",
        "a",
        "1",
    ]);
    assert!(stderr.contains("refusing to follow a redirect"), "{stderr}");
    assert!(
        !stderr.contains("s3cret"),
        "the token must not be printed: {stderr}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        contacted.load(Ordering::SeqCst),
        0,
        "the attacker was contacted"
    );
    // Nor in plaintext to an address beyond loopback.
    let stderr = bin_err(&[
        "--addr",
        "http://192.0.2.1:7700",
        "--token",
        "root.s3cret",
        "kv",
        "get",
        "a",
    ]);
    assert!(
        stderr.contains("refusing to send a token over plain http://"),
        "{stderr}"
    );
}

fn assert_private(dir: &Path) {
    let mut files = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{} is {mode:o}", dir.display());
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{} is {mode:o}", path.display());
                files += 1;
            }
        }
    }
    assert!(files > 0, "nothing checked under {}", dir.display());
}

#[test]
fn everything_the_node_writes_is_private() {
    for engine in ["lmdb", "fjall"] {
        let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
        let (api, raft) = (addr(), addr());
        let dir = dirs.node("n1");
        let mut node = Proc::start_zero_config(engine, &dir, &api, &raft);
        // Past `--snapshot-every 50`: a snapshot and a purge happen.
        for i in 0..60 {
            cli_ok(&api, &["kv", "put", &format!("k{i}"), "v"]);
        }
        node.stop();
        assert_private(&dir);
        let backup = dirs.node("backup.snap");
        let store = format!("{engine}:{}", dir.join(engine).display());
        bin_ok(&["snapshot", "save", "--store", &store, "--out", arg(&backup)]);
        let mode = std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{engine}: snapshot save wrote {mode:o}");
    }
}

#[test]
fn docs_security_md_holds_the_routers_authorization_table() {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/security.md");
    let text = std::fs::read_to_string(&doc).unwrap();
    let table = auth::routes_markdown();
    assert!(
        text.contains(&table),
        "docs/security.md must contain the table of meta_node::auth::routes(), exactly:\n{table}"
    );
}

/// A raw peer connection to `raft`: TLS with `tls` (or plaintext), the
/// magic, then one `Vote` claiming to come from `claimed` with `term`, in
/// cluster `cluster`. Returns whether the node answered (it must not,
/// unless everything checks out).
fn peer_vote(
    rt: &tokio::runtime::Runtime,
    raft: &str,
    tls: Option<(Arc<rustls::ClientConfig>, u64)>,
    cluster: meta_node::identity::ClusterId,
    claimed: u64,
    term: u64,
) -> bool {
    let vote = openraft::raft::VoteRequest::new(openraft::Vote::new(term, claimed), None);
    let request = meta_node::transport::PeerRequest::Vote(vote);
    matches!(
        peer_call(rt, raft, tls, cluster, request),
        Some(meta_node::transport::PeerResponse::Vote(_))
    )
}

/// Sends one peer message as [`peer_vote`] does; the answer, if one came.
fn peer_call(
    rt: &tokio::runtime::Runtime,
    raft: &str,
    tls: Option<(Arc<rustls::ClientConfig>, u64)>,
    cluster: meta_node::identity::ClusterId,
    request: meta_node::transport::PeerRequest,
) -> Option<meta_node::transport::PeerResponse> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
    impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}
    rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(raft).await.unwrap();
        let mut stream: Box<dyn Io> = match tls {
            Some((config, server)) => {
                let name = meta_node::tls::server_name(server).unwrap();
                match tokio_rustls::TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                {
                    Ok(tls) => Box::new(tls),
                    Err(_) => return None,
                }
            }
            None => Box::new(tcp),
        };
        let payload = postcard::to_stdvec(&(cluster, 1u64, request)).unwrap();
        let mut bytes = meta_node::transport::MAGIC.to_vec();
        bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&payload);
        if stream.write_all(&bytes).await.is_err() {
            return None;
        }
        // An answer is a whole response frame; a TLS alert or a closed
        // connection is not.
        let answer = async {
            let mut len = [0u8; 4];
            stream.read_exact(&mut len).await.ok()?;
            let mut frame = vec![0u8; (u32::from_be_bytes(len) as usize).min(1 << 20)];
            stream.read_exact(&mut frame).await.ok()?;
            postcard::from_bytes::<(u64, meta_node::transport::PeerResponse)>(&frame).ok()
        };
        match tokio::time::timeout(Duration::from_secs(5), answer).await {
            Ok(Some((1, response))) => Some(response),
            _ => None,
        }
    })
}

/// A client TLS configuration that trusts the test CA and presents the
/// certificate in `files`.
fn presenting(files: [std::path::PathBuf; 3]) -> Arc<rustls::ClientConfig> {
    let [_, cert, key] = files;
    let mut roots = rustls::RootCertStore::empty();
    for ca in meta_node::tls::load_certs(&common::test_ca().join("ca.pem")).unwrap() {
        roots.add(ca).unwrap();
    }
    let key =
        <rustls_pki_types::PrivateKeyDer<'_> as rustls_pki_types::pem::PemObject>::from_pem_file(
            key,
        )
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(meta_node::tls::load_certs(&cert).unwrap(), key)
    .unwrap();
    Arc::new(config)
}

#[test]
fn forged_peer_messages_are_refused_and_change_nothing() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let cluster = ProcCluster::new(&dirs, &["lmdb", "fjall", "lmdb"]);
    let nodes = cluster.form();
    let apis = cluster.apis();
    cli_ok(&apis[0], &["kv", "put", "before", "attack"]);
    let before = common::converged_hash(&nodes.iter().collect::<Vec<_>>());
    let term = |api: &str| {
        cli_ok(api, &["cluster", "status"])["term"]
            .as_u64()
            .unwrap()
    };
    let term_before = term(&apis[0]);
    // Every node took the founder's cluster id (also the ones whose first
    // contact was its vote request).
    let ids: Vec<String> = (0..3)
        .map(|i| {
            let identity = std::fs::read_to_string(cluster.dir(i).join("identity.toml")).unwrap();
            identity
                .lines()
                .find_map(|l| l.strip_prefix("cluster_id = "))
                .map(|id| id.trim_matches('"').to_string())
                .unwrap_or_default()
        })
        .collect();
    assert!(
        !ids[0].is_empty() && ids.iter().all(|id| *id == ids[0]),
        "{ids:?}"
    );
    let hex_id = ids[0].as_str();
    let ours = meta_node::identity::ClusterId(hex::decode(hex_id).unwrap().try_into().unwrap());
    let rt = runtime();
    let target = cluster.addrs[0].1.clone();
    let node2 = presenting(common::node_tls(&cluster.dir(1), 2));

    // The control: node 2's own certificate, our cluster, a stale term —
    // answered (and harmless), so the refusals below are real refusals.
    assert!(peer_vote(
        &rt,
        &target,
        Some((node2.clone(), 1)),
        ours,
        2,
        0
    ));

    // Plaintext.
    assert!(!peer_vote(&rt, &target, None, ours, 2, 1_000));
    // A certificate from another CA (same node id).
    let other = dirs.node("other-ca");
    bin_ok(&["certs", "create-ca", "--dir", arg(&other)]);
    bin_ok(&[
        "certs",
        "create-node",
        "--id",
        "2",
        "--host",
        "127.0.0.1",
        "--ca-dir",
        arg(&other),
    ]);
    let foreign =
        presenting(["ca.pem", "node.pem", "node.key"].map(|f| other.join("node-2").join(f)));
    assert!(!peer_vote(&rt, &target, Some((foreign, 1)), ours, 2, 1_000));
    // The right CA, but claiming to be another node (node 3) with node 2's
    // certificate.
    assert!(!peer_vote(
        &rt,
        &target,
        Some((node2.clone(), 1)),
        ours,
        3,
        1_000
    ));
    // A node certificate of the CA for a node that is not a member,
    // claiming a member's id.
    let stranger = presenting(common::node_tls(&dirs.node("n9"), 9));
    assert!(!peer_vote(
        &rt,
        &target,
        Some((stranger.clone(), 1)),
        ours,
        1,
        1_000
    ));
    // Read indexes (follower reads) are for members: a certificate of the
    // CA for a non-member gets a refusal, never an index; a member gets an
    // answer (an index, or who leads).
    let read_index = |tls, node| {
        peer_call(
            &rt,
            &target,
            Some((tls, 1)),
            ours,
            meta_node::transport::PeerRequest::ReadIndex { node },
        )
    };
    match read_index(stranger, 9) {
        Some(meta_node::transport::PeerResponse::ReadIndex(Err(
            meta_node::read_index::ReadError::Failed(why),
        ))) => assert!(why.contains("node 9 is not a member"), "{why}"),
        other => panic!("a non-member's read index: {other:?}"),
    }
    match read_index(node2.clone(), 2) {
        Some(meta_node::transport::PeerResponse::ReadIndex(
            Ok(Some(_)) | Err(meta_node::read_index::ReadError::NotLeader { .. }),
        )) => {}
        other => panic!("a member's read index: {other:?}"),
    }
    // The right certificate and node, but another cluster's id.
    let theirs = meta_node::identity::ClusterId([0xAB; 16]);
    assert!(!peer_vote(&rt, &target, Some((node2, 1)), theirs, 2, 1_000));

    // Nothing changed: same term, same content, and the refusals were logged.
    assert_eq!(term(&apis[0]), term_before);
    assert_eq!(
        common::converged_hash(&nodes.iter().collect::<Vec<_>>()),
        before
    );
    let log = std::fs::read_to_string(&nodes[0].log).unwrap();
    assert!(log.contains("does not name that node"), "{log}");
    assert!(
        log.contains("refused: this node belongs to cluster"),
        "{log}"
    );
}

#[test]
fn a_node_refuses_to_serve_a_network_without_tls_unless_told_insecure() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let port = free_port();
    let (listen, advertise) = (format!("0.0.0.0:{port}"), format!("127.0.0.1:{port}"));
    let n1 = dirs.node("n1");
    let stderr = bin_err(&[
        "serve",
        "--listen",
        &listen,
        "--advertise",
        &advertise,
        "--raft-listen",
        &addr(),
        "--data-dir",
        arg(&n1),
    ]);
    assert!(
        stderr.contains("`listen`")
            && stderr.contains("not a loopback address")
            && stderr.contains("--insecure"),
        "{stderr}"
    );
    assert!(!dirs.node("n1").exists(), "a refused start writes nothing");

    // `--insecure` is explicit and loud: it starts, warns, and lets anyone in.
    let (api, raft) = (addr(), addr());
    let log = dirs.node("insecure.log");
    let mut child = std::process::Command::new(common::binary())
        .args([
            "serve",
            "--insecure",
            "--listen",
            &api,
            "--raft-listen",
            &raft,
            "--data-dir",
        ])
        .arg(dirs.node("n2"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let rt = runtime();
    let http = meta_node::client::http_builder().build().unwrap();
    wait_until(20, "the insecure node to take a write", || {
        rt.block_on(
            http.put(format!("http://{api}/v1/kv/open"))
                .body("1")
                .send(),
        )
        .is_ok_and(|r| r.status().is_success())
    });
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("WARN") && text.contains("insecure"), "{text}");
    assert!(!dirs.node("n2").join("root.token").exists());
}

#[test]
fn a_lost_root_is_recovered_offline_with_reset_root() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let (api, raft) = (addr(), addr());
    let dir = dirs.node("n1");
    let mut node = Proc::start(1, "lmdb", &dir, true, &api, &raft, None);
    let old = common::token(&api).unwrap();
    // Every admin key gone: the only one is revoked.
    cli_ok(&api, &["apikey", "revoke", "root"]);
    assert!(!cli(&api, &["kv", "put", "a", "1"]).status.success());
    node.stop();
    bin_ok(&["auth", "reset-root", "--data-dir", arg(&dir)]);
    let new = common::token(&api).unwrap();
    assert_ne!(new, old);
    let mode = std::fs::metadata(dir.join("root.token"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    let _node = Proc::start(1, "lmdb", &dir, true, &api, &raft, None);
    wait_until(20, "the new admin key to work", || {
        cli(&api, &["kv", "put", "a", "1"]).status.success()
    });
    let rt = runtime();
    let (status, _) = call(&rt, &api, &Method::GET, "/v1/kv/a", Some(&old), None);
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the revoked key stays revoked"
    );
    // Not a data directory: a clear error, nothing written.
    let nothing = dirs.node("nothing");
    let stderr = bin_err(&["auth", "reset-root", "--data-dir", arg(&nothing)]);
    assert!(stderr.contains("not a node's data directory"), "{stderr}");
}
