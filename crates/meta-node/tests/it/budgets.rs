//! Size budgets with a real process: values over `max_value_bytes` are
//! refused before they are read, every listing pages (items and bytes)
//! with a cursor, and concurrent large listings no longer cost memory in
//! proportion to the data.

use crate::common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{Dirs, Http, Proc, cli_ok};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const MAX_VALUE: usize = 64 * 1024;
const MAX_PAGE: usize = 100_000;

fn start(dirs: &Dirs) -> (Proc, String) {
    let api = format!("127.0.0.1:{}", common::free_port());
    let raft = format!("127.0.0.1:{}", common::free_port());
    let node = Proc::start_configured(
        1,
        "lmdb",
        &dirs.node("n1"),
        true,
        &api,
        &raft,
        &format!("[limits]\nmax_value_bytes = {MAX_VALUE}\nmax_page_bytes = {MAX_PAGE}\n"),
    );
    (node, api)
}

struct Client {
    rt: tokio::runtime::Runtime,
    http: Http,
    api: String,
}

impl Client {
    fn new(api: &str) -> Client {
        Client {
            rt: tokio::runtime::Runtime::new().unwrap(),
            http: Http::new(Duration::from_secs(30)),
            api: api.to_string(),
        }
    }

    fn send(&self, method: Method, path: &str, body: Option<String>) -> (StatusCode, Value) {
        self.rt.block_on(async {
            let response = self.http.send(method, &self.api, path, body).await.unwrap();
            let status = response.status();
            (status, response.json().await.unwrap_or(Value::Null))
        })
    }

    fn ok(&self, method: Method, path: &str, body: Option<String>) -> Value {
        let (status, answer) = self.send(method, path, body);
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
        answer
    }

    /// Every page of `path` (which has a `?`), checking each against the
    /// byte budget; the items of `field` in order.
    fn all_pages(&self, path: &str, field: &str, limit: usize) -> Vec<Value> {
        let (mut items, mut after, mut pages) = (Vec::new(), None::<String>, 0);
        loop {
            let mut query = format!("{path}&limit={limit}");
            if let Some(after) = &after {
                query.push_str(&format!(
                    "&start_after={}",
                    meta_node::client::encode_query(after)
                ));
            }
            let page = self.ok(Method::GET, &query, None);
            let body_bytes = page.to_string().len();
            let count = match &page[field] {
                Value::Array(a) => {
                    items.extend(a.iter().cloned());
                    a.len()
                }
                Value::Object(o) => {
                    items.extend(o.iter().map(|(k, v)| json!({"id": k, "v": v})));
                    o.len()
                }
                other => panic!("{field}: {other}"),
            };
            assert!(count <= limit, "{count} items over the limit {limit}");
            assert!(
                count <= 1 || body_bytes <= MAX_PAGE + 16 * 1024,
                "a page of {body_bytes} bytes ({count} items) is over the budget"
            );
            pages += 1;
            match page["next"].as_str() {
                Some(next) => after = Some(next.to_string()),
                None => break,
            }
            assert!(pages < 10_000, "paging does not end");
        }
        items
    }
}

#[test]
fn values_over_the_limit_are_refused_before_they_are_read() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let (_node, api) = start(&dirs);
    let c = Client::new(&api);
    c.ok(Method::PUT, "/v1/kv/max", Some("v".repeat(MAX_VALUE)));
    let (status, answer) = c.send(Method::PUT, "/v1/kv/over", Some("v".repeat(MAX_VALUE + 1)));
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(answer["error"]["code"], "payload_too_large");
    // A body far over the limit is refused at once, not read whole: the
    // client gets the 413, or (if it was still sending) a connection the
    // node closed under it.
    let started = Instant::now();
    let huge = c.rt.block_on(async {
        let response = c
            .http
            .send(
                Method::PUT,
                &c.api,
                "/v1/kv/huge",
                Some("v".repeat(8 << 20)),
            )
            .await?;
        Ok::<_, reqwest::Error>(response.status())
    });
    match huge {
        Ok(status) => assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE),
        Err(e) => assert!(e.is_request(), "{e:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    // The same limit for compare-and-swap values and config entries.
    let cas = json!({"key": "max", "expected": null, "new": "v".repeat(MAX_VALUE + 1)});
    let (status, answer) = c.send(Method::POST, "/v1/cas", Some(cas.to_string()));
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limits.max_value_bytes"),
        "{answer}"
    );
    let (status, _) = c.send(
        Method::PUT,
        "/v1/config/big",
        Some("v".repeat(MAX_VALUE + 1)),
    );
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let (status, _) = c.send(Method::GET, "/v1/kv/over", None);
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing of it was written");
}

#[test]
fn every_listing_pages_by_items_and_bytes_with_a_cursor() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let (node, api) = start(&dirs);
    let c = Client::new(&api);
    for i in 0..300 {
        c.ok(
            Method::PUT,
            &format!("/v1/kv/p/{i:03}"),
            Some("x".repeat(1000)),
        );
    }
    c.ok(Method::PUT, "/v1/kv/q/outside", Some("y".into()));
    // 300 keys of 1 KB: pages of at most ~100 KB, every key once, in order.
    let first = c.ok(Method::GET, "/v1/kv?prefix=p/&limit=10000", None);
    let n = first["items"].as_array().unwrap().len();
    assert!(n < 300 && n > 10, "a page by bytes, not by items: {n}");
    let keys: Vec<String> = c
        .all_pages("/v1/kv?prefix=p/", "items", 10_000)
        .iter()
        .map(|i| i["key"].as_str().unwrap().to_string())
        .collect();
    let expected: Vec<String> = (0..300).map(|i| format!("p/{i:03}")).collect();
    assert_eq!(keys, expected);
    assert_eq!(c.all_pages("/v1/kv?prefix=p/", "items", 7).len(), 300);
    // The CLI follows the pages up to --limit.
    let listed = cli_ok(&api, &["kv", "list", "p/", "--limit", "250"]);
    assert_eq!(listed["items"].as_array().unwrap().len(), 250);
    assert_eq!(listed["next"], "p/249");
    let listed = cli_ok(&api, &["kv", "list", "p/", "--limit", "100000"]);
    assert_eq!(listed["items"].as_array().unwrap().len(), 300);
    assert_eq!(listed["next"], Value::Null);

    // API keys, config, cluster map, shard map: the same cursor.
    for i in 0..5 {
        c.ok(
            Method::POST,
            "/v1/apikeys",
            Some(json!({"id": format!("k{i}"), "scopes": ["kv:read"]}).to_string()),
        );
        c.ok(
            Method::PUT,
            &format!("/v1/config/c{i}"),
            Some(i.to_string()),
        );
        c.ok(
            Method::PUT,
            &format!("/v1/cluster/nodes/{}", i + 1),
            Some(json!({"address": format!("10.0.0.{i}:9000")}).to_string()),
        );
    }
    let ids: BTreeSet<String> = c
        .all_pages("/v1/apikeys?", "api_keys", 2)
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        ids.is_superset(&(0..5).map(|i| format!("k{i}")).collect()),
        "{ids:?}"
    );
    assert_eq!(c.all_pages("/v1/config?", "config", 2).len(), 5);
    assert_eq!(c.all_pages("/v1/cluster/nodes?", "nodes", 2).len(), 5);
    let shards: serde_json::Map<String, Value> = (1..=10)
        .map(|i| (i.to_string(), json!({"replicas": [1]})))
        .collect();
    let set = json!({"expected_version": 0, "shards": shards});
    c.ok(Method::PUT, "/v1/shards", Some(set.to_string()));
    assert_eq!(c.all_pages("/v1/shards?", "shards", 3).len(), 10);
    // A map that changes between pages is refused, not stitched together.
    let first = c.ok(Method::GET, "/v1/shards?limit=3", None);
    let version = first["version"].as_u64().unwrap();
    let set = json!({"expected_version": version, "shards": {"1": {"replicas": [2]}}});
    c.ok(Method::PUT, "/v1/shards", Some(set.to_string()));
    let (status, answer) = c.send(
        Method::GET,
        &format!("/v1/shards?limit=3&start_after=3&version={version}"),
        None,
    );
    assert_eq!(status, StatusCode::CONFLICT, "{answer}");
    assert_eq!(answer["error"]["code"], "stale_version");
    // Bad paging input is a clear 400.
    for bad in [
        "/v1/kv?limit=0",
        "/v1/kv?limit=10001",
        "/v1/cluster/nodes?start_after=x",
    ] {
        let (status, answer) = c.send(Method::GET, bad, None);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {answer}");
    }
    drop(node);
}

/// Peak resident memory of a process, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kb: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kb * 1024
}

#[test]
fn concurrent_large_listings_cost_a_page_not_the_data() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let (node, api) = start(&dirs);
    let c = Client::new(&api);
    // 48 MB of values.
    for i in 0..768 {
        c.ok(
            Method::PUT,
            &format!("/v1/kv/big/{i:04}"),
            Some("z".repeat(MAX_VALUE)),
        );
    }
    let pid = node.pid().unwrap();
    let before = peak_rss(pid);
    // Eight clients list everything at once, four times each: unpaged,
    // each answer alone would be about 50 MB.
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                let c = Client::new(&api);
                for _ in 0..4 {
                    let page = c.ok(Method::GET, "/v1/kv?prefix=big/&limit=10000", None);
                    assert!(page["next"].is_string());
                }
            });
        }
    });
    let grown = peak_rss(pid).saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "peak RSS grew by {} MB serving paged listings",
        grown >> 20
    );
}
