//! The dashboard in a real browser: headless Chromium, driven through
//! ChromeDriver (WebDriver), against a real three-node cluster. It signs in
//! with the root token, finds the three members and the leader, sees a
//! killed follower turn unreachable, sees a shard-map change made through
//! the API appear without a reload, browses keys, and checks that a
//! read-only token is offered no edit button. It takes the screenshots of
//! `docs/dashboard.md` as it goes.
//!
//! It needs Chromium and ChromeDriver, so `cargo test` leaves it out (and
//! says so); `cargo xtask ui-test` runs it, and fails without a browser
//! rather than passing. `.ci/run` installs the browser and runs it.

use crate::common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Dirs, ProcCluster, cli_ok, url, wait_until};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// ChromeDriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn driver() -> Driver {
    let binary = std::env::var("META_CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let port = common::free_port();
    let child = Command::new(&binary)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start `{binary}` ({e}): install Chromium and ChromeDriver \
                 (`apt-get install chromium chromium-driver`), or set META_CHROMEDRIVER"
            )
        });
    let driver = Driver { child, port };
    wait_until(20, "ChromeDriver to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    driver
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    let args = [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        // The nodes' certificates come from the test CA.
        "--ignore-certificate-errors",
        "--window-size=1280,900",
    ];
    let binary = std::env::var("META_CHROMIUM").ok();
    let mut options = json!({ "args": args });
    if let Some(binary) = binary {
        options["binary"] = json!(binary);
    }
    caps.insert("goog:chromeOptions".into(), options);
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("a ChromeDriver session (is Chromium installed?)")
}

/// Waits until `css` matches something, for at most `secs`.
async fn wait_for(client: &Client, css: &str, secs: u64) -> fantoccini::elements::Element {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Ok(found) = client.find(Locator::Css(css)).await {
            return found;
        }
        if Instant::now() > deadline {
            let source = client.source().await.unwrap_or_default();
            panic!("nothing matched `{css}` within {secs} s; the page:\n{source}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The text of everything `css` matches, read at once (the page
/// re-renders what it refreshes: elements found earlier go stale).
async fn texts(client: &Client, css: &str) -> Vec<String> {
    let found = client
        .execute(
            "return [...document.querySelectorAll(arguments[0])].map((e) => e.textContent);",
            vec![json!(css)],
        )
        .await
        .unwrap();
    serde_json::from_value(found).unwrap()
}

/// The text of the first thing `css` matches ("" if none).
async fn text(client: &Client, css: &str) -> String {
    texts(client, css)
        .await
        .into_iter()
        .next()
        .unwrap_or_default()
}

async fn click(client: &Client, css: &str) {
    client
        .find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Lists the keys under `prefix` in the Keys view.
async fn list(client: &Client, prefix: &str) {
    let input = wait_for(client, "#prefix", 10).await;
    input.clear().await.unwrap();
    input.send_keys(prefix).await.unwrap();
    click(client, "form.row button[type=submit]").await;
}

async fn count(client: &Client, css: &str) -> usize {
    client.find_all(Locator::Css(css)).await.unwrap().len()
}

fn docs_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../docs/dashboard");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(client: &Client, name: &str) {
    // Let the page settle (charts, a refresh in flight).
    tokio::time::sleep(Duration::from_millis(600)).await;
    let png = client.screenshot().await.unwrap();
    std::fs::write(docs_dir().join(format!("{name}.png")), png).unwrap();
}

async fn sign_in(client: &Client, base: &str, token: &str) {
    client.goto(&format!("{base}/")).await.unwrap();
    let input = wait_for(client, "#token", 10).await;
    input.send_keys(token).await.unwrap();
    click(client, "#login button[type=submit]").await;
    wait_for(client, "#nav:not([hidden])", 10).await;
    let at = client.current_url().await.unwrap();
    assert!(
        !at.as_str().contains(token.split('.').nth(1).unwrap()),
        "the token is never in a URL: {at}"
    );
}

async fn view(client: &Client, name: &str) {
    click(client, &format!("nav a[data-view={name}]")).await;
}

#[test]
#[ignore = "needs Chromium and ChromeDriver: run `cargo xtask ui-test`"]
fn the_dashboard_shows_the_live_cluster_in_a_real_browser() {
    let driver = driver();
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let cluster = ProcCluster::new(&dirs, &["lmdb", "fjall", "lmdb"]);
    let mut nodes = cluster.form();
    let apis = cluster.apis();
    let mut leader = 0;
    wait_until(20, "a leader", || {
        leader = cli_ok(&apis[0], &["cluster", "status"])["leader"]
            .as_u64()
            .unwrap_or(0);
        leader != 0
    });
    let leader_api = apis[leader as usize - 1].clone();
    let root = common::token(&leader_api).unwrap();
    for (key, value) in [
        ("app/feature-x", "on"),
        ("app/limits/max-conns", "512"),
        ("app/region", "eu-west"),
        ("svc/router", "10.0.0.7:9000"),
        // Shown as text, never run as markup.
        (
            "svc/<img src=x onerror=document.title='pwned'>",
            "<b>bold</b>",
        ),
    ] {
        cli_ok(&leader_api, &["kv", "put", key, value]);
    }
    for id in 1..=3 {
        cli_ok(
            &leader_api,
            &[
                "cluster",
                "set-node",
                &id.to_string(),
                &format!("10.0.0.{id}:9000"),
                "--label",
                &format!("zone={}", ["a", "b", "c"][id - 1]),
            ],
        );
    }
    let viewer: serde_json::Value = cli_ok(
        &leader_api,
        &["apikey", "create", "viewer", "--scope", "read"],
    );
    let viewer = viewer["token"].as_str().unwrap().to_owned();

    let rt = common::runtime();
    rt.block_on(async {
        let client = browser(&driver).await;
        let base = url(&leader_api);
        sign_in(&client, &base, &root).await;
        let stored: serde_json::Value = client
            .execute(
                "return sessionStorage.getItem('meta-node-token') !== null && localStorage.length === 0;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(stored, json!(true), "the token is in sessionStorage only");
        let load: serde_json::Value = client
            .execute(
                "const n = performance.getEntriesByType('navigation')[0]; return n ? n.duration : null;",
                vec![],
            )
            .await
            .unwrap();
        println!("dashboard: page loaded in {load} ms");

        // Cluster: three members, the right leader.
        wait_for(&client, &format!("#members tr.leader[data-node='{leader}']"), 10).await;
        wait_until_async(&client, 10, "three members, all reachable", || async {
            count(&client, "#members tbody tr").await == 3
                && count(&client, "#members tbody tr[data-reachable='true']").await == 3
        })
        .await;
        // Every node's engines, as each told the leader.
        wait_until_async(&client, 15, "every member's engine", || async {
            texts(&client, "#members tbody tr td:nth-child(3)").await == ["lmdb", "fjall", "lmdb"]
        })
        .await;
        let shown = text(&client, "#leader").await;
        assert_eq!(shown, format!("node {leader}"));
        screenshot(&client, "cluster").await;

        // A killed follower turns unreachable within seconds.
        let follower = (1..=3u64).find(|id| *id != leader).unwrap();
        nodes[follower as usize - 1].kill();
        let killed = Instant::now();
        wait_for(
            &client,
            &format!("#members tr[data-node='{follower}'][data-reachable='false']"),
            15,
        )
        .await;
        println!(
            "dashboard: node {follower} shown unreachable {:?} after its SIGKILL",
            killed.elapsed()
        );
        screenshot(&client, "cluster-follower-down").await;

        // Nodes and shards: a shard-map change through the API appears
        // without a reload.
        view(&client, "maps").await;
        wait_for(&client, "#nodes tr[data-node='3']", 10).await;
        let remaining: Vec<String> = apis
            .iter()
            .enumerate()
            .filter(|(i, _)| *i as u64 + 1 != follower)
            .map(|(_, a)| a.clone())
            .collect();
        tokio::task::spawn_blocking(move || {
            cli_ok(
                &remaining[0],
                &[
                    "shard",
                    "set",
                    "--expected-version",
                    "0",
                    "1=1,2,3",
                    "2=2,3,1",
                    "7=3,1",
                ],
            )
        })
        .await
        .unwrap();
        wait_for(&client, "#shard-grid tr[data-shard='7']", 10).await;
        let version = text(&client, "#shard-version").await;
        assert_eq!(version, "1");
        screenshot(&client, "nodes-and-shards").await;

        // Keys: browse a prefix, open one; an admin may edit.
        view(&client, "keys").await;
        list(&client, "app/").await;
        wait_until_async(&client, 10, "three keys under app/", || async {
            count(&client, "#keys tbody tr[data-key]").await == 3
        })
        .await;
        wait_for(&client, "#keys tr[data-key='app/region']", 10).await;
        click(&client, "#keys tr[data-key='app/region']").await;
        wait_until_async(&client, 10, "the value of app/region", || async {
            text(&client, "#value").await == "eu-west"
        })
        .await;
        assert!(count(&client, "button.edit").await >= 2, "an admin may edit");
        screenshot(&client, "keys").await;

        // Writes from the page: a conditional save, and a new key whose
        // name needs encoding.
        let editor = wait_for(&client, "#edit-value", 10).await;
        editor.clear().await.unwrap();
        editor.send_keys("eu-central").await.unwrap();
        click(&client, "#save").await;
        wait_until_async(&client, 10, "the saved value", || async {
            text(&client, "#value").await == "eu-central"
        })
        .await;
        let odd_name = "app/new key?#%&.";
        wait_for(&client, "#new-key", 10)
            .await
            .send_keys(odd_name)
            .await
            .unwrap();
        wait_for(&client, "#new-value", 10)
            .await
            .send_keys("made in the browser")
            .await
            .unwrap();
        client
            .find(Locator::Css("#new-key"))
            .await
            .unwrap()
            .send_keys("\u{E007}")
            .await
            .unwrap();
        let api = leader_api.clone();
        let name = odd_name.to_owned();
        wait_until_async(&client, 10, "the new key, through the CLI", || {
            let (api, name) = (api.clone(), name.clone());
            async move {
                tokio::task::spawn_blocking(move || {
                    common::cli(&api, &["kv", "get", &name]).status.success()
                })
                .await
                .unwrap()
            }
        })
        .await;
        let region = tokio::task::spawn_blocking({
            let api = leader_api.clone();
            move || cli_ok(&api, &["kv", "get", "app/region"])
        })
        .await
        .unwrap();
        assert_eq!(region["value"], "eu-central", "{region}");

        // Markup in keys and values is text.
        list(&client, "svc/").await;
        let odd = wait_for(&client, "#keys tr[data-key^='svc/<img']", 10).await;
        odd.click().await.unwrap();
        wait_until_async(&client, 10, "the value as text", || async {
            text(&client, "#value").await == "<b>bold</b>"
        })
        .await;
        assert_eq!(count(&client, "#main img, #main b:not(.facts b) + b").await, 0);
        assert_eq!(client.title().await.unwrap(), "meta-node", "no script ran");

        // Activity: charts from the node's own metrics, under some load.
        view(&client, "activity").await;
        wait_for(&client, "#activity-now b", 15).await;
        let http = common::Http::new(Duration::from_secs(5));
        let load = {
            let api = leader_api.clone();
            tokio::spawn(async move {
                let started = Instant::now();
                let mut i = 0u64;
                while started.elapsed() < Duration::from_secs(8) {
                    let key = format!("/v1/kv/load/{}", i % 50);
                    let _ = http
                        .send(reqwest::Method::PUT, &api, &key, Some(i.to_string()))
                        .await;
                    for _ in 0..3 {
                        let _ = http.send(reqwest::Method::GET, &api, &key, None).await;
                    }
                    i += 1;
                }
            })
        };
        load.await.unwrap();
        let now = texts(&client, "#activity-now b").await;
        let reads: f64 = now[0].parse().unwrap();
        let writes: f64 = now[1].parse().unwrap();
        assert!(reads > 0.0 && writes > 0.0, "the load shows: {now:?}");
        screenshot(&client, "activity").await;

        // On a phone-sized screen.
        view(&client, "cluster").await;
        wait_for(&client, &format!("#members tr.leader[data-node='{leader}']"), 10).await;
        client.set_window_size(390, 844).await.unwrap();
        screenshot(&client, "phone").await;
        client.set_window_size(1280, 900).await.unwrap();

        // A read-only token is offered no edit.
        click(&client, "#signout").await;
        wait_for(&client, "#login", 10).await;
        sign_in(&client, &base, &viewer).await;
        view(&client, "keys").await;
        wait_for(&client, "#keys tr[data-key='app/feature-x']", 10).await;
        click(&client, "#keys tr[data-key='app/feature-x']").await;
        wait_for(&client, "#value", 10).await;
        assert_eq!(count(&client, "button.edit").await, 0, "no edit for `read`");
        assert_eq!(count(&client, "#new-key").await, 0, "no new key for `read`");
        client.close().await.unwrap();
    });
}

/// Waits until `ok`, for at most `secs`; on a timeout, says what the page
/// showed in its status line and what it held.
async fn wait_until_async<F, Fut>(client: &Client, secs: u64, what: &str, mut ok: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if ok().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = text(client, "#status").await;
    let main = text(client, "#main").await;
    panic!("timed out after {secs} s waiting for {what}; status line: {status:?}; page: {main}");
}
