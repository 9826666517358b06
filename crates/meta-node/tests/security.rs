//! The attack suite: what someone with network reach, a stolen or weak key,
//! or a lying node can and cannot do — against real `meta-node` processes.

// Tests fail by panicking.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Dirs, Proc, ProcCluster, cli, cli_ok, free_port, wait_until};
use meta_node::auth::{self, Need, Principal, Scope};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn addr() -> String {
    format!("127.0.0.1:{}", free_port())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
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
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    rt.block_on(async {
        let mut request = http.request(method.clone(), format!("http://{api}{path}"));
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
        _ => path,
    };
    let body = match (route.method.as_str(), route.path) {
        ("PUT", "/v1/kv/{*key}") | ("PUT", "/v1/config/{name}") => Some(json!("v")),
        ("POST", "/v1/cas") => Some(json!({"key": "app/k", "expected": null, "new": "v"})),
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
    let _node = Proc::start(1, "lmdb", &dirs.node("n1"), true, &api, &raft, None);
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
            assert_eq!(status, StatusCode::OK, "{} {path}", route.method);
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
        let body = json!({"id": format!("m-{}", scope.replace(':', "-")), "scopes": [scope]});
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
    assert_eq!(mint("kv:write:app/"), StatusCode::FORBIDDEN);
    assert_eq!(mint("admin"), StatusCode::FORBIDDEN);
    let (status, listed) = call(&rt, &api, &Method::GET, "/v1/apikeys", Some(&root), None);
    assert_eq!(status, StatusCode::OK);
    let secret = root.rsplit_once('.').unwrap().1;
    assert!(!listed.to_string().contains(secret));
    let metrics = call(&rt, &api, &Method::GET, "/metrics", Some(&root), None);
    assert!(!format!("{metrics:?}").contains(secret));
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
    let out = std::process::Command::new(common::BIN)
        .args([
            "--addr",
            &format!("http://{fake}"),
            "--token",
            "root.s3cret",
        ])
        .args(["kv", "put", "a", "1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
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
        let mut node = Proc::start(1, engine, &dir, true, &api, &raft, None);
        // Past `--snapshot-every 50`: a snapshot and a purge happen.
        for i in 0..60 {
            cli_ok(&api, &["kv", "put", &format!("k{i}"), "v"]);
        }
        node.stop();
        assert_private(&dir);
        let backup = dirs.node("backup.snap");
        let store = format!("{engine}:{}", dir.join(engine).display());
        let out = std::process::Command::new(common::BIN)
            .args(["snapshot", "save", "--store", &store, "--out"])
            .arg(&backup)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
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
