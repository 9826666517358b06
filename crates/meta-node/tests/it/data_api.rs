//! The user-key API with real processes: revisions and `ETag`s,
//! conditional writes (`412`), transactions, range deletes, binary values,
//! paged listings that stay exact while writes happen, and a model-based
//! run of random operations against a three-node cluster of three engines.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Dirs, Proc, ProcCluster, Rng};
use meta_client::wire::{self, Compare, CompareOp, CompareTarget, TxnOp, TxnRequest, TxnResult};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;

/// Talks to the nodes of a test with the first node's root token,
/// following redirects to the leader.
struct Api {
    rt: tokio::runtime::Runtime,
    client: reqwest::Client,
    apis: Vec<String>,
    token: String,
}

/// An answer: status, headers, body.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "{} {e}: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }

    fn revision(&self) -> u64 {
        self.header(wire::REVISION_HEADER)
            .expect("X-Meta-Revision")
            .parse()
            .unwrap()
    }

    fn error(&self) -> wire::ErrorBody {
        self.json::<wire::ErrorResponse>().error
    }
}

impl Api {
    fn new(apis: Vec<String>) -> Api {
        let token = common::token(&apis[0]).expect("the first node's root token");
        let client = meta_node::client::http_builder()
            .tls_backend_preconfigured(
                meta_node::tls::https_client_config(&common::test_ca().join("ca.pem")).unwrap(),
            )
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Api {
            rt: tokio::runtime::Runtime::new().unwrap(),
            client,
            apis,
            token,
        }
    }

    fn call(
        &self,
        node: usize,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Answer {
        self.rt.block_on(async {
            let mut url = format!("{}{path}", common::url(&self.apis[node]));
            for _ in 0..4 {
                let mut request = self
                    .client
                    .request(method.clone(), &url)
                    .bearer_auth(&self.token);
                for (name, value) in headers {
                    request = request.header(*name, *value);
                }
                if let Some(body) = &body {
                    request = request.body(body.clone());
                }
                let response = request.send().await.unwrap();
                let status = response.status();
                let headers = response.headers().clone();
                if status.is_redirection()
                    && let Some(next) = headers.get("location")
                {
                    url = next.to_str().unwrap().to_string();
                    continue;
                }
                let body = response.bytes().await.unwrap().to_vec();
                return Answer {
                    status,
                    headers,
                    body,
                };
            }
            panic!("too many redirects for {path}");
        })
    }

    fn json<T: serde::Serialize>(
        &self,
        node: usize,
        method: Method,
        path: &str,
        body: &T,
    ) -> Answer {
        let bytes = serde_json::to_vec(body).unwrap();
        self.call(node, method, path, &[], Some(bytes))
    }
}

fn kv_path(key: &str) -> String {
    format!("/v1/kv/{}", meta_node::client::encode_path(key))
}

fn start_one(dirs: &Dirs) -> (Proc, Api) {
    let api = format!("127.0.0.1:{}", common::free_port());
    let raft = format!("127.0.0.1:{}", common::free_port());
    let node = Proc::start(1, "lmdb", &dirs.node("n1"), true, &api, &raft, None);
    (node, Api::new(vec![api]))
}

#[test]
fn revisions_preconditions_transactions_and_binary_values_over_http() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let (_node, api) = start_one(&dirs);
    // A put answers the new revision, as body, header and ETag.
    let put = api.call(0, Method::PUT, "/v1/kv/app/a", &[], Some(b"one".to_vec()));
    assert_eq!(put.status, StatusCode::OK);
    let written: wire::WriteResponse = put.json();
    let r1 = written.revision;
    assert!(r1 >= 1);
    assert_eq!(put.revision(), r1);
    assert_eq!(put.header("etag"), Some(format!("\"{r1}\"")));
    // A read answers the key's revisions and the store's.
    let got = api.call(0, Method::GET, "/v1/kv/app/a", &[], None);
    let answer: wire::GetResponse = got.json();
    assert_eq!(
        (
            answer.kv.value.value.as_deref(),
            answer.kv.create_revision,
            answer.kv.mod_revision,
            answer.kv.version,
            answer.revision,
        ),
        (Some("one"), r1, r1, 1, r1)
    );
    assert_eq!(got.header("etag"), Some(format!("\"{r1}\"")));
    // Unchanged since: 304.
    let tag = format!("\"{r1}\"");
    let same = api.call(
        0,
        Method::GET,
        "/v1/kv/app/a",
        &[("if-none-match", &tag)],
        None,
    );
    assert_eq!(same.status, StatusCode::NOT_MODIFIED);
    // If-Match with the current tag writes; with a stale one it is 412 and
    // says the current mod_revision.
    let ok = api.call(
        0,
        Method::PUT,
        "/v1/kv/app/a",
        &[("if-match", &tag)],
        Some(b"two".to_vec()),
    );
    assert_eq!(ok.status, StatusCode::OK);
    let r2 = ok.json::<wire::WriteResponse>().revision;
    assert_eq!(r2, r1 + 1);
    let stale = api.call(
        0,
        Method::PUT,
        "/v1/kv/app/a",
        &[("if-match", &tag)],
        Some(b"x".to_vec()),
    );
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    let error = stale.error();
    assert_eq!(
        (error.code.as_str(), error.mod_revision, error.revision),
        ("precondition_failed", Some(r2), Some(r2))
    );
    assert_eq!(stale.revision(), r2, "a 412 carries X-Meta-Revision too");
    // If-Match on an absent key fails even for its "0".
    let absent = api.call(
        0,
        Method::PUT,
        "/v1/kv/app/none",
        &[("if-match", "\"0\"")],
        Some(b"x".to_vec()),
    );
    assert_eq!(absent.status, StatusCode::PRECONDITION_FAILED);
    // Create-only.
    let create = |v: &[u8]| {
        api.call(
            0,
            Method::PUT,
            "/v1/kv/app/new",
            &[("if-none-match", "*")],
            Some(v.to_vec()),
        )
    };
    assert_eq!(create(b"first").status, StatusCode::OK);
    assert_eq!(create(b"second").status, StatusCode::PRECONDITION_FAILED);
    let value = api.call(0, Method::GET, "/v1/kv/app/new?raw=true", &[], None);
    assert_eq!(value.body, b"first");
    // Binary values: any bytes in, the same bytes out (raw), base64 in JSON.
    let bytes = vec![0u8, 0xff, 0xfe, b'\n', 0x80];
    let put = api.call(
        0,
        Method::PUT,
        "/v1/kv/app/bin",
        &[("content-type", "application/octet-stream")],
        Some(bytes.clone()),
    );
    assert_eq!(put.status, StatusCode::OK);
    let raw = api.call(
        0,
        Method::GET,
        "/v1/kv/app/bin",
        &[("accept", "application/octet-stream")],
        None,
    );
    assert_eq!(raw.body, bytes);
    assert_eq!(
        raw.header("content-type").as_deref(),
        Some("application/octet-stream")
    );
    assert!(raw.header("etag").is_some() && raw.header(wire::REVISION_HEADER).is_some());
    let json: wire::GetResponse = api.call(0, Method::GET, "/v1/kv/app/bin", &[], None).json();
    assert_eq!(json.kv.value.value, None);
    assert_eq!(json.kv.value.require().unwrap(), bytes);
    // Conditional delete: a stale tag refuses, the current one deletes.
    let cur = format!("\"{}\"", json.kv.mod_revision);
    let refused = api.call(
        0,
        Method::DELETE,
        "/v1/kv/app/bin",
        &[("if-match", "\"1\"")],
        None,
    );
    assert_eq!(refused.status, StatusCode::PRECONDITION_FAILED);
    let deleted = api.call(
        0,
        Method::DELETE,
        "/v1/kv/app/bin",
        &[("if-match", &cur)],
        None,
    );
    assert_eq!(deleted.json::<wire::WriteResponse>().deleted, Some(1));
    let again: wire::WriteResponse = api
        .call(0, Method::DELETE, "/v1/kv/app/bin", &[], None)
        .json();
    assert_eq!(again.deleted, Some(0), "deleting nothing");
    let before = again.revision;
    // A transaction: a lock taken once, at one revision for all its writes.
    let lock = TxnRequest {
        compare: vec![Compare::new(
            "app/lock",
            CompareOp::Equal,
            CompareTarget::Exists(false),
        )],
        success: vec![
            TxnOp::put("app/lock", b"me"),
            TxnOp::put("app/owner", b"\xffbinary"),
            TxnOp::get("app/owner"),
        ],
        failure: vec![TxnOp::get("app/lock")],
    };
    let first: wire::TxnResponse = api.json(0, Method::POST, "/v1/txn", &lock).json();
    assert!(first.succeeded);
    assert_eq!(first.revision, before + 1, "a transaction is one revision");
    let TxnResult::Get { kv: Some(owner) } = &first.results[2] else {
        panic!("{first:?}");
    };
    assert_eq!(owner.value.require().unwrap(), b"\xffbinary");
    assert_eq!(owner.mod_revision, first.revision);
    let second: wire::TxnResponse = api.json(0, Method::POST, "/v1/txn", &lock).json();
    assert!(!second.succeeded);
    assert_eq!(
        second.revision, first.revision,
        "a failed branch of reads writes nothing"
    );
    let TxnResult::Get { kv: Some(held) } = &second.results[0] else {
        panic!("{second:?}");
    };
    assert_eq!(held.value.value.as_deref(), Some("me"));
    // Range delete: one revision, the count.
    let gone = api.call(0, Method::DELETE, "/v1/kv?prefix=app/", &[], None);
    let gone: wire::WriteResponse = gone.json();
    assert_eq!((gone.deleted, gone.revision), (Some(4), first.revision + 1));
    let list: wire::ListResponse = api
        .call(0, Method::GET, "/v1/kv?prefix=app/", &[], None)
        .json();
    assert!(list.items.is_empty());
    assert_eq!(list.revision, gone.revision);
    // Value compare-and-swap still works, base64 included.
    let cas = wire::CasRequest {
        key: "app/c".into(),
        new_base64: Some("AAE=".into()),
        ..Default::default()
    };
    assert_eq!(
        api.json(0, Method::POST, "/v1/cas", &cas).status,
        StatusCode::OK
    );
    let raw = api.call(0, Method::GET, "/v1/kv/app/c?raw=true", &[], None);
    assert_eq!(raw.body, [0u8, 1]);
}

#[test]
fn narrow_keys_cannot_reach_other_keys_through_transactions_or_range_deletes() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let (_node, api) = start_one(&dirs);
    let mint = |id: &str, scope: &str| -> String {
        let body = serde_json::json!({"id": id, "scopes": [scope]});
        let made = api.json(0, Method::POST, "/v1/apikeys", &body);
        assert_eq!(made.status, StatusCode::OK);
        made.json::<serde_json::Value>()["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let writer = mint("bot", "kv:write:app/");
    let reader = mint("ro", "kv:read:app/");
    assert_eq!(
        api.call(0, Method::PUT, "/v1/kv/secret/x", &[], Some(b"s".to_vec()))
            .status,
        StatusCode::OK
    );
    let as_key = |token: &str, method: Method, path: &str, body: Option<Vec<u8>>| {
        let with = Api {
            rt: tokio::runtime::Runtime::new().unwrap(),
            client: api.client.clone(),
            apis: api.apis.clone(),
            token: token.to_string(),
        };
        let answer = with.call(0, method, path, &[], body);
        (answer.status, answer.body)
    };
    let txn = |t: TxnRequest| Some(serde_json::to_vec(&t).unwrap());
    let refused = [
        // Reading another prefix through a compare or a get.
        (
            &writer,
            Method::POST,
            "/v1/txn",
            txn(TxnRequest {
                compare: vec![Compare::new(
                    "secret/x",
                    CompareOp::Equal,
                    CompareTarget::Value(b"s".to_vec()),
                )],
                ..Default::default()
            }),
        ),
        (
            &writer,
            Method::POST,
            "/v1/txn",
            txn(TxnRequest {
                success: vec![TxnOp::get("secret/x")],
                ..Default::default()
            }),
        ),
        // Writing elsewhere in either branch, even one that would not run.
        (
            &writer,
            Method::POST,
            "/v1/txn",
            txn(TxnRequest {
                failure: vec![TxnOp::delete("secret/x")],
                ..Default::default()
            }),
        ),
        (
            &writer,
            Method::POST,
            "/v1/txn",
            txn(TxnRequest {
                success: vec![TxnOp::delete_prefix("secret/")],
                ..Default::default()
            }),
        ),
        // A reader cannot write through a transaction.
        (
            &reader,
            Method::POST,
            "/v1/txn",
            txn(TxnRequest {
                success: vec![TxnOp::put("app/x", b"v")],
                ..Default::default()
            }),
        ),
        (&writer, Method::DELETE, "/v1/kv?prefix=secret/", None),
        (&writer, Method::DELETE, "/v1/kv?prefix=a", None),
        (&reader, Method::DELETE, "/v1/kv?prefix=app/", None),
    ];
    for (token, method, path, body) in refused {
        let (status, answer) = as_key(token, method.clone(), path, body);
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "{method} {path}: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    assert_eq!(
        api.call(0, Method::GET, "/v1/kv/secret/x?raw=true", &[], None)
            .body,
        b"s",
        "untouched"
    );
    // The same key does what its scope allows.
    let (status, _) = as_key(
        &writer,
        Method::POST,
        "/v1/txn",
        txn(TxnRequest {
            success: vec![TxnOp::put("app/x", b"v"), TxnOp::get("app/x")],
            ..Default::default()
        }),
    );
    assert_eq!(status, StatusCode::OK);
    let (status, _) = as_key(&writer, Method::DELETE, "/v1/kv?prefix=app/", None);
    assert_eq!(status, StatusCode::OK);
    // A reader may run a transaction of compares and gets: answered from
    // the leader's state, it adds nothing to the log.
    let last_log = || {
        let status: wire::StatusResponse = api
            .call(0, Method::GET, "/v1/cluster/status", &[], None)
            .json();
        status.last_log_index
    };
    let before = last_log();
    for _ in 0..20 {
        let (status, body) = as_key(
            &reader,
            Method::POST,
            "/v1/txn",
            txn(TxnRequest {
                compare: vec![Compare::new(
                    "app/x",
                    CompareOp::Equal,
                    CompareTarget::Exists(false),
                )],
                success: vec![TxnOp::get("app/y")],
                ..Default::default()
            }),
        );
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    }
    assert_eq!(last_log(), before, "read-only transactions are not logged");
}

#[test]
fn a_paged_listing_returns_each_key_once_in_order_while_writes_happen() {
    let keys: usize = common::env_u64("META_TEST_PAGED_KEYS", 100_000) as usize;
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let (_node, api) = start_one(&dirs);
    let name = |i: usize| format!("p/{i:07}");
    for chunk in (0..keys).collect::<Vec<_>>().chunks(128) {
        let txn = TxnRequest {
            success: chunk.iter().map(|&i| TxnOp::put(name(i), b"v")).collect(),
            ..Default::default()
        };
        assert_eq!(
            api.json(0, Method::POST, "/v1/txn", &txn).status,
            StatusCode::OK
        );
    }
    // A writer adds and removes other keys under the prefix meanwhile.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (stop, apis) = (stop.clone(), api.apis.clone());
        std::thread::spawn(move || {
            let api = Api::new(apis);
            let mut rng = Rng::new(7);
            let mut writes = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let key = format!("p/{:07}x", rng.below(keys as u64));
                let method = if rng.below(3) == 0 {
                    Method::DELETE
                } else {
                    Method::PUT
                };
                assert!(
                    api.call(0, method, &kv_path(&key), &[], Some(b"w".to_vec()))
                        .status
                        .is_success()
                );
                writes += 1;
            }
            writes
        })
    };
    let (mut seen, mut after, mut pages) = (Vec::with_capacity(keys), None::<String>, 0);
    loop {
        let mut path = "/v1/kv?prefix=p/&limit=1000".to_string();
        if let Some(after) = &after {
            path.push_str(&format!(
                "&start_after={}",
                meta_node::client::encode_query(after)
            ));
        }
        let page: wire::ListResponse = api.call(0, Method::GET, &path, &[], None).json();
        pages += 1;
        seen.extend(page.items.into_iter().map(|kv| kv.key));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let writes = writer.join().unwrap();
    assert!(writes > 0, "the writer never wrote during the listing");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "in order, each once");
    let original: Vec<String> = seen.iter().filter(|k| !k.ends_with('x')).cloned().collect();
    assert_eq!(
        original.len(),
        keys,
        "every key that was there throughout, once"
    );
    assert!(original.iter().enumerate().all(|(i, k)| *k == name(i)));
    eprintln!("{keys} keys in {pages} pages while {writes} writes happened");
}

/// The rules, for the model-based run: each key's value and revisions.
#[derive(Default)]
struct Model {
    kv: BTreeMap<String, (Vec<u8>, u64, u64, u64)>,
    revision: u64,
}

impl Model {
    fn put(&mut self, key: &str, value: &[u8], revision: u64) {
        let (create, version) = match self.kv.get(key) {
            Some(&(_, create, _, version)) => (create, version + 1),
            None => (revision, 1),
        };
        self.kv
            .insert(key.to_string(), (value.to_vec(), create, revision, version));
    }

    fn mod_revision(&self, key: &str) -> u64 {
        self.kv.get(key).map_or(0, |e| e.2)
    }

    fn holds(&self, c: &Compare) -> bool {
        let e = self.kv.get(&c.key);
        let ord = match c.target().unwrap() {
            CompareTarget::Value(v) => match e {
                None => return false,
                Some(e) => e.0.cmp(&v),
            },
            CompareTarget::ModRevision(r) => e.map_or(0, |e| e.2).cmp(&r),
            CompareTarget::CreateRevision(r) => e.map_or(0, |e| e.1).cmp(&r),
            CompareTarget::Version(r) => e.map_or(0, |e| e.3).cmp(&r),
            CompareTarget::Exists(want) => {
                return (e.is_some() == want) == (c.op == CompareOp::Equal);
            }
        };
        match c.op {
            CompareOp::Equal => ord.is_eq(),
            CompareOp::NotEqual => ord.is_ne(),
            CompareOp::Less => ord.is_lt(),
            CompareOp::Greater => ord.is_gt(),
        }
    }

    fn check(&self, kv: &wire::KeyValue) {
        let (value, create, modr, version) = self
            .kv
            .get(&kv.key)
            .unwrap_or_else(|| panic!("{} is not in the model", kv.key));
        assert_eq!(
            (
                &kv.value.require().unwrap(),
                kv.create_revision,
                kv.mod_revision,
                kv.version
            ),
            (value, *create, *modr, *version),
            "{}",
            kv.key
        );
    }
}

#[test]
fn random_operations_through_the_typed_client_on_a_three_node_cluster_match_a_model() {
    let ops = common::env_u64("META_TEST_MODEL_OPS", 400);
    let seed = common::seed_from_env("META_TEST_SEED");
    eprintln!("seed {seed} (META_TEST_SEED replays it)");
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let cluster = ProcCluster::new(&dirs, &["lmdb", "fjall", "mem"]);
    let nodes = cluster.form();
    let apis = cluster.apis();
    // Every client holds the first node's root token, aimed at one node.
    let token = common::token(&apis[0]).unwrap();
    let clients: Vec<meta_client::Client> = apis
        .iter()
        .map(|api| {
            meta_client::ClientBuilder::new([common::url(api)])
                .ca(common::test_ca().join("ca.pem"))
                .token(token.clone())
                .build()
                .unwrap()
        })
        .collect();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let linear = meta_client::Consistency::Linearizable;
    // Where the store starts (cluster init wrote the root key).
    let start = rt
        .block_on(clients[0].list("", None, 1, linear))
        .unwrap()
        .revision;
    let mut model = Model {
        revision: start,
        ..Model::default()
    };
    let mut rng = Rng::new(seed);
    let keys = ["a", "a/1", "a/2", "b", "b/1", "c"];
    let values: [&[u8]; 4] = [b"x", b"y", b"", b"\xff\x00"];
    for step in 0..ops {
        let client = &clients[rng.below(3) as usize];
        let key = keys[rng.below(keys.len() as u64) as usize];
        let value = values[rng.below(values.len() as u64) as usize];
        let next = model.revision + 1;
        match rng.below(7) {
            0 | 1 => {
                // A put, sometimes with a precondition (right or wrong).
                let current = model.mod_revision(key);
                use meta_client::Precondition::*;
                let (precondition, holds) = match rng.below(4) {
                    0 => (Some(ModRevision(current)), current != 0),
                    1 => (Some(ModRevision(current + 1)), false),
                    2 => (Some(Absent), current == 0),
                    _ => (None, true),
                };
                let answer = rt.block_on(async {
                    match precondition {
                        Some(p) => client.put_if(key, value, p).await,
                        None => client.put(key, value).await,
                    }
                });
                if holds {
                    model.put(key, value, next);
                    model.revision = next;
                    assert_eq!(answer.unwrap().revision, next, "step {step}");
                } else {
                    let error = answer.unwrap_err();
                    assert!(error.is_precondition_failed(), "step {step}: {error}");
                    let meta_client::ClientError::Api { error, .. } = error else {
                        unreachable!()
                    };
                    assert_eq!(
                        (error.mod_revision, error.revision),
                        (Some(current), Some(model.revision))
                    );
                }
            }
            2 => {
                let answer = rt.block_on(client.delete(key)).unwrap();
                let existed = model.kv.remove(key).is_some();
                if existed {
                    model.revision = next;
                }
                assert_eq!(
                    (answer.deleted, answer.revision),
                    (Some(existed as u64), model.revision),
                    "step {step}"
                );
            }
            3 | 4 => {
                let compare = (0..rng.below(3))
                    .map(|_| {
                        let key = keys[rng.below(keys.len() as u64) as usize];
                        let op = [
                            CompareOp::Equal,
                            CompareOp::NotEqual,
                            CompareOp::Less,
                            CompareOp::Greater,
                        ][rng.below(4) as usize];
                        let target = match rng.below(4) {
                            0 => CompareTarget::Value(values[rng.below(4) as usize].to_vec()),
                            1 => CompareTarget::ModRevision(rng.below(model.revision + 2)),
                            2 => CompareTarget::Version(rng.below(3)),
                            _ => CompareTarget::Exists(rng.below(2) == 0),
                        };
                        let op = match target {
                            CompareTarget::Exists(_) => {
                                [CompareOp::Equal, CompareOp::NotEqual][rng.below(2) as usize]
                            }
                            _ => op,
                        };
                        Compare::new(key, op, target)
                    })
                    .collect::<Vec<_>>();
                let branch = |rng: &mut Rng| -> Vec<TxnOp> {
                    (0..rng.below(4))
                        .map(|_| {
                            let key = keys[rng.below(keys.len() as u64) as usize];
                            match rng.below(4) {
                                0 => TxnOp::put(key, values[rng.below(4) as usize]),
                                1 => TxnOp::delete(key),
                                2 => TxnOp::delete_prefix(["a/", "b", "c"][rng.below(3) as usize]),
                                _ => TxnOp::get(key),
                            }
                        })
                        .collect()
                };
                let txn = TxnRequest {
                    success: branch(&mut rng),
                    failure: branch(&mut rng),
                    compare,
                };
                let answer = rt.block_on(client.txn(&txn)).unwrap();
                let succeeded = txn.compare.iter().all(|c| model.holds(c));
                assert_eq!(answer.succeeded, succeeded, "step {step}: {txn:?}");
                let mut changed = false;
                let ran = if succeeded {
                    &txn.success
                } else {
                    &txn.failure
                };
                assert_eq!(answer.results.len(), ran.len());
                for (op, result) in ran.iter().zip(&answer.results) {
                    match (op, result) {
                        (TxnOp::Put(p), TxnResult::Put {}) => {
                            model.put(&p.key, &p.value.require().unwrap(), next);
                            changed = true;
                        }
                        (TxnOp::Delete(k), TxnResult::Delete { deleted }) => {
                            let gone = model.kv.remove(&k.key).is_some();
                            assert_eq!(*deleted, gone as u64, "step {step}");
                            changed |= gone;
                        }
                        (TxnOp::DeletePrefix(p), TxnResult::Delete { deleted }) => {
                            let doomed: Vec<String> = model
                                .kv
                                .keys()
                                .filter(|k| k.starts_with(&p.prefix))
                                .cloned()
                                .collect();
                            for k in &doomed {
                                model.kv.remove(k);
                            }
                            assert_eq!(*deleted, doomed.len() as u64, "step {step}");
                            changed |= !doomed.is_empty();
                        }
                        (TxnOp::Get(k), TxnResult::Get { kv }) => match kv {
                            // Reads inside see the writes before them, at `next`.
                            Some(kv) => model.check(kv),
                            None => assert!(!model.kv.contains_key(&k.key), "step {step}"),
                        },
                        other => panic!("step {step}: {other:?}"),
                    }
                }
                if changed {
                    model.revision = next;
                }
                assert_eq!(answer.revision, model.revision, "step {step}");
            }
            5 => {
                let read = rt.block_on(client.read(key, linear)).unwrap();
                match (&read.kv, model.kv.get(key)) {
                    (Some(kv), Some(_)) => model.check(kv),
                    (None, None) => {}
                    other => panic!("step {step}: {other:?}"),
                }
                assert_eq!(
                    read.revision, model.revision,
                    "step {step}: a linearizable read"
                );
            }
            _ => {
                // A paged listing, each page through another node.
                let (mut seen, mut after) = (Vec::new(), None::<String>);
                loop {
                    let client = &clients[rng.below(3) as usize];
                    let page = rt
                        .block_on(client.list("", after.as_deref(), 2, linear))
                        .unwrap();
                    assert_eq!(page.revision, model.revision, "step {step}");
                    for kv in &page.items {
                        model.check(kv);
                    }
                    seen.extend(page.items.into_iter().map(|kv| kv.key));
                    match page.next {
                        Some(next) => after = Some(next),
                        None => break,
                    }
                }
                assert_eq!(
                    seen,
                    model.kv.keys().cloned().collect::<Vec<_>>(),
                    "step {step}"
                );
            }
        }
    }
    // Every node, every engine: the same revision and content.
    let refs: Vec<&Proc> = nodes.iter().collect();
    common::converged_hash(&refs);
    let stale = meta_client::Consistency::Stale;
    for (i, client) in clients.iter().enumerate() {
        let page = rt.block_on(client.list("", None, 1, stale)).unwrap();
        assert_eq!(page.revision, model.revision, "node {}", i + 1);
    }
}

#[test]
fn the_typed_client_skips_dead_endpoints_follows_leaders_and_reports_unknown_outcomes() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let cluster = ProcCluster::new(&dirs, &["lmdb", "lmdb", "lmdb"]);
    let mut nodes = cluster.form();
    let apis = cluster.apis();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dead = format!("127.0.0.1:{}", common::free_port());
    // A dead endpoint first, then the nodes: requests land on a live one,
    // and a follower sends them to the leader (a member: followed).
    let client =
        meta_client::ClientBuilder::new(std::iter::once(dead.clone()).chain(apis.iter().cloned()))
            .ca(common::test_ca().join("ca.pem"))
            .token(common::token(&apis[0]).unwrap())
            .retries(10, Duration::from_millis(100))
            .build()
            .unwrap();
    assert!(
        client.endpoints()[0].starts_with("https://"),
        "host:port with a CA is https"
    );
    let first = rt.block_on(client.put("k", b"1")).unwrap();
    assert_eq!(
        rt.block_on(client.get("k")).unwrap().unwrap().mod_revision,
        first.revision
    );
    // A listing begun before the leader dies goes on after it: the cursor
    // is a position, not a session.
    for i in 1..=3 {
        rt.block_on(client.put(&format!("p/{i}"), b"v")).unwrap();
    }
    let linear = meta_client::Consistency::Linearizable;
    let first_page = rt.block_on(client.list("p/", None, 1, linear)).unwrap();
    assert_eq!(first_page.next.as_deref(), Some("p/1"));
    // The leader dies: the client finds the new one (elections answer
    // no_leader or fail to connect meanwhile; both are retried).
    let status = rt.block_on(client.status()).unwrap();
    let leader = status.leader.unwrap() as usize - 1;
    nodes[leader].kill();
    let rest = rt
        .block_on(client.list("p/", first_page.next.as_deref(), 10, linear))
        .unwrap();
    let keys: Vec<&str> = rest.items.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!((keys, rest.next), (vec!["p/2", "p/3"], None));
    let after = rt.block_on(client.put("k", b"2")).unwrap();
    assert!(after.revision > first.revision);
    // A stale precondition is its own error, not retried into success.
    let stale = rt
        .block_on(client.put_if(
            "k",
            b"3",
            meta_client::Precondition::ModRevision(first.revision),
        ))
        .unwrap_err();
    assert!(stale.is_precondition_failed(), "{stale}");
    // No quorum: the write may or may not commit; the client says so and
    // does not retry it.
    let survivors: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let new_leader = rt.block_on(client.status()).unwrap().leader.unwrap() as usize - 1;
    let follower = survivors.into_iter().find(|i| *i != new_leader).unwrap();
    nodes[follower].pause();
    let only_leader = meta_client::ClientBuilder::new([apis[new_leader].clone()])
        .ca(common::test_ca().join("ca.pem"))
        .token(common::token(&apis[0]).unwrap())
        .build()
        .unwrap();
    let unknown = rt.block_on(only_leader.put("k", b"4")).unwrap_err();
    nodes[follower].resume();
    assert!(
        matches!(unknown, meta_client::ClientError::OutcomeUnknown { .. }),
        "{unknown}"
    );
    assert_eq!(unknown.code(), Some("outcome_unknown"));
    // A client whose endpoints are all dead says where it tried.
    let nowhere = meta_client::ClientBuilder::new([dead])
        .retries(1, Duration::from_millis(10))
        .build()
        .unwrap();
    let error = rt.block_on(nowhere.health()).unwrap_err();
    assert!(
        matches!(error, meta_client::ClientError::Transport { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("is a meta-node running there?"));
}

/// The CLI against the node at `api`, without `--json`, with `stdin`.
fn cli_plain(api: &str, args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write as _;
    let mut child = std::process::Command::new(common::binary())
        .args(["--addr", &common::url(api), "--ca"])
        .arg(common::test_ca().join("ca.pem"))
        .arg("--token-file")
        .arg(common::token_file(api).unwrap())
        .args(args)
        .env_remove("META_TOKEN")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn the_cli_writes_binary_values_from_files_and_stdin_and_reads_them_raw() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let (_node, api) = start_one(&dirs);
    let addr = &api.apis[0];
    let bytes = vec![0u8, 0xff, b'\n', 0x80, 7];
    let file = dirs.node("value.bin");
    std::fs::write(&file, &bytes).unwrap();
    let put = common::cli_ok(
        addr,
        &["kv", "put", "app/f", &format!("@{}", file.display())],
    );
    let rev = put["revision"].as_u64().unwrap();
    let raw = cli_plain(addr, &["kv", "get", "app/f", "--raw"], b"");
    assert!(raw.status.success());
    assert_eq!(raw.stdout, bytes, "byte for byte, no newline added");
    let shown = cli_plain(addr, &["kv", "get", "app/f"], b"");
    assert_eq!(
        String::from_utf8_lossy(&shown.stdout).trim(),
        "<5 bytes, not UTF-8: `kv get --raw` writes them>"
    );
    let from_stdin = cli_plain(addr, &["kv", "put", "app/s", "-"], b"piped\xff");
    assert!(
        from_stdin.status.success(),
        "{}",
        String::from_utf8_lossy(&from_stdin.stderr)
    );
    assert_eq!(
        cli_plain(addr, &["kv", "get", "app/s", "--raw"], b"").stdout,
        b"piped\xff"
    );
    // Conditional writes: a stale revision is refused and says why.
    let stale = common::cli(
        addr,
        &[
            "kv",
            "put",
            "app/f",
            "x",
            "--if-revision",
            &(rev + 100).to_string(),
        ],
    );
    assert!(!stale.status.success());
    assert!(String::from_utf8_lossy(&stale.stderr).contains("precondition_failed"));
    common::cli_ok(
        addr,
        &["kv", "put", "app/f", "x", "--if-revision", &rev.to_string()],
    );
    let create = common::cli(addr, &["kv", "put", "app/f", "y", "--if-absent"]);
    assert!(!create.status.success());
    // A transaction from stdin, a listing from this node, a range delete.
    let txn = br#"{"success":[{"put":{"key":"app/t","value":"1"}},{"get":{"key":"app/t"}}]}"#;
    let done = cli_plain(addr, &["--json", "kv", "txn", "-"], txn);
    let done: wire::TxnResponse = serde_json::from_slice(&done.stdout).unwrap();
    assert!(done.succeeded && done.results.len() == 2);
    let list = common::cli_ok(addr, &["kv", "list", "app/", "--stale"]);
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
    let gone = common::cli_ok(addr, &["kv", "delete-prefix", "app/"]);
    assert_eq!(gone["deleted"], 3);
    let missing = common::cli(addr, &["kv", "txn", "/nonexistent/txn.json"]);
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/txn.json"));
}

#[test]
fn the_cli_answers_errors_in_json_exits_on_refusals_and_survives_a_closed_pipe() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let (_node, api) = start_one(&dirs);
    let addr = &api.apis[0];
    // `--json`: errors are JSON too, with the API's code and status.
    let missing = common::cli(addr, &["kv", "get", "absent"]);
    assert!(!missing.status.success());
    let error: serde_json::Value = serde_json::from_slice(&missing.stderr)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&missing.stderr)));
    assert_eq!(
        (&error["error"]["code"], &error["error"]["status"]),
        (&serde_json::json!("not_found"), &serde_json::json!(404))
    );
    let bad_token = std::process::Command::new(common::binary())
        .args(["--json", "--addr", &common::url(addr), "--ca"])
        .arg(common::test_ca().join("ca.pem"))
        .args(["--token", "root.wrong", "kv", "get", "x"])
        .output()
        .unwrap();
    let error: serde_json::Value = serde_json::from_slice(&bad_token.stderr).unwrap();
    assert_eq!(error["error"]["code"], "unauthenticated");
    // A secret that does not verify: printed, and the exit status says no.
    let verify = cli_plain(addr, &["apikey", "verify", "root", "wrong"], b"");
    assert_eq!(verify.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&verify.stdout).trim(), "invalid");
    // An address without a scheme (https with --ca).
    let put = std::process::Command::new(common::binary())
        .args(["--addr", addr.as_str(), "--ca"])
        .arg(common::test_ca().join("ca.pem"))
        .arg("--token-file")
        .arg(common::token_file(addr).unwrap())
        .args(["kv", "put", "s", "1"])
        .output()
        .unwrap();
    assert!(
        put.status.success(),
        "{}",
        String::from_utf8_lossy(&put.stderr)
    );
    // An error says each thing once: where, what, why.
    let nowhere = format!("127.0.0.1:{}", common::free_port());
    let refused = std::process::Command::new(common::binary())
        .args([
            "--addr",
            &nowhere,
            "--data-dir",
            "/nonexistent",
            "kv",
            "get",
            "x",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(stderr.matches(&nowhere).count(), 1, "{stderr}");
    assert_eq!(stderr.matches("refused").count(), 1, "{stderr}");
    // A reader that goes away early (`| head -1`) is no crash.
    let mut child = std::process::Command::new(common::binary())
        .args(["--addr", &common::url(addr), "--ca"])
        .arg(common::test_ca().join("ca.pem"))
        .arg("--token-file")
        .arg(common::token_file(addr).unwrap())
        .args(["cluster", "status"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("panicked"),
        "{:?}: {stderr}",
        out.status
    );
}
