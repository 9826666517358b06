//! The replicated space alarm with real processes: a cluster whose data
//! outgrows its quota, or one of whose nodes runs short of disk, refuses new
//! data on every node (`507 quota_exceeded`) while deletes go on, and takes
//! writes again once there is room — nothing acknowledged is lost.

use crate::common;

use std::time::Duration;

use common::{Dirs, Http, Proc, cli, cli_ok, wait_until};
use reqwest::{Method, StatusCode};
use serde_json::Value;

const QUOTA: u64 = 200_000;

/// Three nodes, node `i` with config `configs[i]`, made one cluster.
fn cluster(dirs: &Dirs, configs: [&str; 3]) -> (Vec<Proc>, Vec<(String, String)>) {
    let addr = || format!("127.0.0.1:{}", common::free_port());
    let addrs: Vec<(String, String)> = (0..3).map(|_| (addr(), addr())).collect();
    let nodes = start_all(dirs, &addrs, configs);
    let mut init = vec!["cluster".to_string(), "init".to_string()];
    for (i, (api, raft)) in addrs.iter().enumerate() {
        init.push(format!("{}={raft},{api}", i + 1));
    }
    let init: Vec<&str> = init.iter().map(String::as_str).collect();
    cli_ok(&addrs[0].0, &init);
    (nodes, addrs)
}

fn start_all(dirs: &Dirs, addrs: &[(String, String)], configs: [&str; 3]) -> Vec<Proc> {
    addrs
        .iter()
        .zip(configs)
        .enumerate()
        .map(|(i, ((api, raft), config))| start(dirs, i, api, raft, config))
        .collect()
}

fn start(dirs: &Dirs, i: usize, api: &str, raft: &str, config: &str) -> Proc {
    let engine = if i.is_multiple_of(2) { "lmdb" } else { "fjall" };
    let dir = dirs.node(&format!("n{}", i + 1));
    Proc::start_configured(i as u64 + 1, engine, &dir, false, api, raft, config)
}

struct Client {
    rt: tokio::runtime::Runtime,
    http: Http,
}

impl Client {
    fn new() -> Client {
        Client {
            rt: tokio::runtime::Runtime::new().unwrap(),
            http: Http::new(Duration::from_secs(30)),
        }
    }

    fn send(
        &self,
        method: Method,
        api: &str,
        path: &str,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        self.rt.block_on(async {
            let response = self
                .http
                .send(method, api, path, body.map(str::to_string))
                .await
                .unwrap();
            let status = response.status();
            (status, response.json().await.unwrap_or(Value::Null))
        })
    }
}

fn alarms(api: &str) -> Vec<Value> {
    cli_ok(api, &["cluster", "alarms"])["alarms"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn a_cluster_over_its_quota_refuses_new_data_everywhere_until_room_is_made() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let config = format!("[limits]\nquota_bytes = {QUOTA}\n");
    let (_nodes, addrs) = cluster(&dirs, [&config, &config, &config]);
    let c = Client::new();
    let value = "v".repeat(1000);
    // Fill until refused (the leader checks once a second).
    let mut written = Vec::new();
    let refused = loop {
        let key = format!("k{:04}", written.len());
        let (status, answer) = c.send(
            Method::PUT,
            &addrs[0].0,
            &format!("/v1/kv/{key}"),
            Some(&value),
        );
        match status {
            StatusCode::OK => written.push(key),
            StatusCode::INSUFFICIENT_STORAGE => break answer,
            other => panic!("{other}: {answer}"),
        }
        assert!(written.len() < 2000, "the quota was never enforced");
    };
    assert_eq!(refused["error"]["code"], "quota_exceeded", "{refused}");
    assert!(written.len() >= 150, "refused too early: {}", written.len());
    // On every node: the alarm is replicated, and a write through any
    // node is refused; a config entry too.
    for (api, _) in &addrs {
        wait_until(10, "the alarm on every node", || {
            alarms(api).iter().any(|a| a["kind"] == "quota")
        });
        let (status, _) = c.send(Method::PUT, api, "/v1/kv/more", Some("x"));
        assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "via {api}");
    }
    let (status, _) = c.send(Method::PUT, &addrs[1].0, "/v1/config/x", Some("1"));
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE);
    // Clearing by hand while still over: raised again at the next check.
    cli_ok(&addrs[0].0, &["cluster", "clear-alarms"]);
    wait_until(10, "the alarm to come back", || {
        !alarms(&addrs[0].0).is_empty()
    });
    // Deletes go on; under 90% of the quota the alarm clears by itself.
    let keep = written.len() / 2;
    for key in &written[keep..] {
        let (status, answer) = c.send(Method::DELETE, &addrs[2].0, &format!("/v1/kv/{key}"), None);
        assert_eq!(status, StatusCode::OK, "{answer}");
    }
    wait_until(10, "the alarm to clear", || alarms(&addrs[1].0).is_empty());
    let (status, answer) = c.send(Method::PUT, &addrs[1].0, "/v1/kv/after", Some("ok"));
    assert_eq!(status, StatusCode::OK, "{answer}");
    // Nothing acknowledged was lost.
    for key in &written[..keep] {
        let (status, _) = c.send(Method::GET, &addrs[2].0, &format!("/v1/kv/{key}"), None);
        assert_eq!(status, StatusCode::OK, "{key}");
    }
}

#[test]
fn a_follower_short_of_disk_raises_the_alarm_and_clears_it_once_it_has_room() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    // Node 3's watermark is more than any disk has.
    let short = "[limits]\nmin_free_disk_bytes = 1000000000000000000\n";
    let (mut nodes, addrs) = cluster(&dirs, ["", "", short]);
    wait_until(20, "node 3's disk alarm", || {
        alarms(&addrs[0].0)
            .iter()
            .any(|a| a["kind"] == "disk" && a["node"] == 3)
    });
    let c = Client::new();
    let (status, answer) = c.send(Method::PUT, &addrs[0].0, "/v1/kv/a", Some("1"));
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("node 3"),
        "{answer}"
    );
    // Restarted with room, it clears its alarm.
    nodes[2].stop();
    nodes[2] = start(&dirs, 2, &addrs[2].0, &addrs[2].1, "");
    wait_until(20, "the alarm to clear", || alarms(&addrs[0].0).is_empty());
    let out = cli(&addrs[1].0, &["kv", "put", "b", "2"]);
    assert!(out.status.success(), "{out:?}");
}
