//! Real `meta-node` processes on 127.0.0.1 for the process tests and the
//! benches: started with a certificate from one test CA (or exactly as
//! `serve` starts with no configuration), killed on drop; the CLI and an
//! HTTP client that find each node's credentials; clusters on fixed
//! addresses; failpoint pauses; data dirs kept when a test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::links::Links;
use crate::{free_port, wait_until};

static BINARY: OnceLock<PathBuf> = OnceLock::new();

/// The `meta-node` binary every process here runs: the one given to
/// [`use_binary`], else `$META_NODE_BIN`, else the one Cargo built beside
/// the running test (`target/<profile>/meta-node`, which Cargo builds for
/// meta-node's own tests).
pub fn binary() -> &'static Path {
    BINARY.get_or_init(|| {
        if let Some(bin) = std::env::var_os("META_NODE_BIN") {
            return bin.into();
        }
        let exe = std::env::current_exe().unwrap();
        let beside = exe
            .parent()
            .and_then(Path::parent)
            .map(|profile| profile.join("meta-node"))
            .filter(|bin| bin.exists());
        beside.unwrap_or_else(|| {
            panic!(
                "no meta-node binary beside {} (run meta-node's tests, or set META_NODE_BIN)",
                exe.display()
            )
        })
    })
}

/// Makes [`binary`] `bin` (a bench builds its own release binary); must
/// come before anything starts a process.
pub fn use_binary(bin: PathBuf) {
    let chosen = BINARY.get_or_init(|| bin.clone());
    assert_eq!(*chosen, bin, "the meta-node binary was chosen already");
}

/// The data directory of the node serving each client API address, and
/// whether it serves HTTPS, so that [`cli`] and [`Http`] find the
/// credentials and the scheme for it.
static NODE_DIRS: std::sync::Mutex<Vec<(String, PathBuf, bool)>> =
    std::sync::Mutex::new(Vec::new());

fn remember_node(api: &str, dir: &Path, https: bool) {
    let mut dirs = NODE_DIRS.lock().unwrap();
    dirs.retain(|(a, _, _)| a != api);
    dirs.push((api.to_string(), dir.to_path_buf(), https));
}

/// `https://{api}` or `http://{api}`, as the node at `api` serves.
pub fn url(api: &str) -> String {
    let https = NODE_DIRS
        .lock()
        .unwrap()
        .iter()
        .any(|(a, _, https)| a == api && *https);
    format!("{}://{api}", if https { "https" } else { "http" })
}

/// Runs the `meta-node` binary with `args` (an offline tool, or a client
/// command whose address and credentials `args` give).
pub fn bin(args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .env_remove("META_TOKEN")
        .env_remove("META_NODE_DATA_DIR")
        .output()
        .unwrap()
}

/// [`bin`], which must succeed.
pub fn bin_ok(args: &[&str]) -> Output {
    let out = bin(args);
    assert!(
        out.status.success(),
        "meta-node {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// [`bin`], which must fail; what it printed on stderr.
pub fn bin_err(args: &[&str]) -> String {
    let out = bin(args);
    assert!(!out.status.success(), "meta-node {args:?} must fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A path as a command-line argument.
pub fn arg(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

/// The log levels of test nodes: openraft at info, for post-mortems.
pub const TEST_LOGS: &str = "info,openraft=info";

/// One cluster CA for every node this test binary starts (made with the
/// binary's own `certs create-ca`); clusters stay apart by cluster id.
pub fn test_ca() -> &'static Path {
    static CA: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CA.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("meta-test-ca")
            .tempdir()
            .unwrap()
            .keep();
        bin_ok(&["certs", "create-ca", "--dir", arg(&dir.join("ca"))]);
        dir.join("ca")
    })
}

/// Node `id`'s certificate files (from [`test_ca`]) for the node whose data
/// directory is `dir`, made on first use: `(ca, cert, key)`.
pub fn node_tls(dir: &Path, id: u64) -> [PathBuf; 3] {
    let out = dir.with_extension("tls");
    if !out.join("node.pem").exists() {
        bin_ok(&[
            "certs",
            "create-node",
            "--id",
            &id.to_string(),
            "--host",
            "127.0.0.1",
            "--host",
            "localhost",
            "--ca-dir",
            arg(test_ca()),
            "--out",
            arg(&out),
        ]);
    }
    ["ca.pem", "node.pem", "node.key"].map(|f| out.join(f))
}

/// The token file to use against the node at `api`: its own `root.token`
/// (it bootstrapped), else that of a node beside it (the one that ran
/// `cluster init` or bootstrapped the cluster it joined), else its
/// `init.token` (it waits for `cluster init`).
pub fn token_file(api: &str) -> Option<PathBuf> {
    let dir = NODE_DIRS
        .lock()
        .unwrap()
        .iter()
        .find(|(a, _, _)| a == api)
        .map(|(_, d, _)| d.clone())?;
    let own = dir.join("root.token");
    if own.exists() {
        return Some(own);
    }
    let siblings = std::fs::read_dir(dir.parent()?).ok()?;
    let mut roots: Vec<PathBuf> = siblings
        .filter_map(|e| Some(e.ok()?.path().join("root.token")))
        .filter(|p| p.exists())
        .collect();
    roots.sort();
    roots
        .into_iter()
        .next()
        .or_else(|| Some(dir.join("init.token")).filter(|p| p.exists()))
}

/// The bearer token for the node at `api` (see [`token_file`]).
pub fn token(api: &str) -> Option<String> {
    let text = std::fs::read_to_string(token_file(api)?).ok()?;
    Some(text.trim().to_string())
}

/// An HTTP client for the process tests: sends the node's token and
/// follows a follower's redirect to the leader with it (`reqwest` drops
/// credentials on a redirect to another port, as it should).
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
}

impl Http {
    /// A client that gives up on a request after `timeout`.
    pub fn new(timeout: Duration) -> Http {
        Http {
            client: meta_node::client::http_builder()
                .tls_backend_preconfigured(
                    meta_node::tls::https_client_config(&test_ca().join("ca.pem")).unwrap(),
                )
                .timeout(timeout)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
        }
    }

    /// Sends `method` to `http://{api}{path}` with `body` (JSON if it
    /// parses as such, else raw), following at most 3 redirects.
    pub async fn send(
        &self,
        method: reqwest::Method,
        api: &str,
        path: &str,
        body: Option<String>,
    ) -> reqwest::Result<reqwest::Response> {
        let token = token(api);
        let mut url = format!("{}{path}", url(api));
        let mut hops = 0;
        loop {
            let response = self
                .send_to(method.clone(), &url, token.as_deref(), body.clone())
                .await?;
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::to_string);
            match location {
                Some(next) if response.status().is_redirection() && hops < 3 => {
                    url = next;
                    hops += 1;
                }
                _ => return Ok(response),
            }
        }
    }

    /// Sends `method` to `http://{api}{path}` with the node's token and
    /// `body`, following no redirect.
    pub async fn send_once(
        &self,
        method: reqwest::Method,
        api: &str,
        path: &str,
        body: Option<String>,
    ) -> reqwest::Result<reqwest::Response> {
        let url = format!("{}{path}", url(api));
        self.send_to(method, &url, token(api).as_deref(), body)
            .await
    }

    /// The `/metrics` text of the node at `api` (a `200` asserted).
    pub async fn metrics(&self, api: &str) -> String {
        let response = self
            .send(reqwest::Method::GET, api, "/metrics", None)
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET /metrics of {api}");
        response.text().await.unwrap()
    }

    async fn send_to(
        &self,
        method: reqwest::Method,
        url: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> reqwest::Result<reqwest::Response> {
        let mut request = self.client.request(method, url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        request.send().await
    }
}

/// The value of the unlabelled series `name` the node at `api` exports
/// now, or `None` if it has none.
pub fn metric(api: &str, name: &str) -> Option<f64> {
    let text = crate::runtime().block_on(Http::new(Duration::from_secs(10)).metrics(api));
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// A node process; killed (SIGKILL) on drop.
pub struct Proc {
    /// Node id.
    pub id: u64,
    /// Client API address.
    pub api: String,
    /// Peer (Raft) address.
    pub raft: String,
    /// Its log file (all its lives, appended).
    pub log: PathBuf,
    child: Option<Child>,
}

/// Where a node should stop dead (the `META_PAUSE_AT` test hook, see
/// `src/pause.rs`): at its first pass through a failpoint it writes the
/// marker file and blocks, so the harness can kill it right there.
pub struct Pause {
    /// The failpoint's name.
    pub point: &'static str,
    marker: PathBuf,
    arm: PathBuf,
}

impl Pause {
    /// A pause at `point` for the node whose data directory is `dir`.
    pub fn at(point: &'static str, dir: &Path) -> Pause {
        let (marker, arm) = (dir.with_extension("paused"), dir.with_extension("armed"));
        let _ = std::fs::remove_file(&marker);
        let _ = std::fs::remove_file(&arm);
        Pause { point, marker, arm }
    }

    /// Lets the node pause from now on (until then it passes the point).
    pub fn arm(&self) {
        std::fs::write(&self.arm, self.point).unwrap();
    }

    /// Waits up to `secs` for the node to reach the point; whether it did.
    pub fn reached_within(&self, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self.marker.exists() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

/// `--config <dir>.toml`, with `config` written there.
fn config_args(dir: &Path, config: &str) -> Vec<std::ffi::OsString> {
    let file = dir.with_extension("toml");
    std::fs::write(&file, config).unwrap();
    vec!["--config".into(), file.into()]
}

/// A node's identity, addresses and data directory: what every start
/// needs.
#[derive(Clone, Copy)]
struct Who<'a> {
    id: u64,
    engine: &'a str,
    dir: &'a Path,
    bootstrap: bool,
    api: &'a str,
    raft: &'a str,
}

impl Proc {
    /// Starts a node with a certificate from [`test_ca`] (so it serves
    /// HTTPS and can join others) and waits until it answers; armed with
    /// `pause` if given.
    pub fn start(
        id: u64,
        engine: &str,
        dir: &Path,
        bootstrap: bool,
        api: &str,
        raft: &str,
        pause: Option<&Pause>,
    ) -> Proc {
        Proc::start_logging(
            id,
            engine,
            dir,
            bootstrap,
            api,
            raft,
            pause,
            Some(TEST_LOGS),
        )
    }

    /// [`Proc::start`] with this `RUST_LOG` (`None`: the binary's default).
    #[allow(clippy::too_many_arguments)]
    pub fn start_logging(
        id: u64,
        engine: &str,
        dir: &Path,
        bootstrap: bool,
        api: &str,
        raft: &str,
        pause: Option<&Pause>,
        logs: Option<&str>,
    ) -> Proc {
        let who = Who {
            id,
            engine,
            dir,
            bootstrap,
            api,
            raft,
        };
        Proc::start_tls(who, pause, None, logs)
    }

    /// [`Proc::start`] with `config` (TOML) as its config file.
    pub fn start_configured(
        id: u64,
        engine: &str,
        dir: &Path,
        bootstrap: bool,
        api: &str,
        raft: &str,
        config: &str,
    ) -> Proc {
        let who = Who {
            id,
            engine,
            dir,
            bootstrap,
            api,
            raft,
        };
        Proc::start_tls(who, None, Some(config), Some(TEST_LOGS))
    }

    /// A node with a certificate from [`test_ca`], optionally a config file.
    fn start_tls(
        who: Who<'_>,
        pause: Option<&Pause>,
        config: Option<&str>,
        logs: Option<&str>,
    ) -> Proc {
        let [ca, cert, key] = node_tls(who.dir, who.id);
        let mut extra: Vec<std::ffi::OsString> = Vec::new();
        for (flag, file) in [("--tls-ca", ca), ("--tls-cert", cert), ("--tls-key", key)] {
            extra.push(flag.into());
            extra.push(file.into());
        }
        if let Some(config) = config {
            extra.extend(config_args(who.dir, config));
        }
        Proc::start_with(who, pause, &extra, logs)
    }

    /// A node exactly as `serve` starts with no TLS configuration: its
    /// own CA and certificate in `<dir>/tls/`, plain HTTP on loopback.
    pub fn start_zero_config(engine: &str, dir: &Path, api: &str, raft: &str) -> Proc {
        Proc::start_plain(engine, dir, api, raft, &[])
    }

    /// [`Proc::start_zero_config`] (plain HTTP on loopback) with `config`
    /// (TOML) as its config file.
    pub fn start_plain_configured(
        engine: &str,
        dir: &Path,
        api: &str,
        raft: &str,
        config: &str,
    ) -> Proc {
        Proc::start_plain(engine, dir, api, raft, &config_args(dir, config))
    }

    /// Node 1, bootstrapping, with no TLS flags.
    fn start_plain(
        engine: &str,
        dir: &Path,
        api: &str,
        raft: &str,
        extra: &[std::ffi::OsString],
    ) -> Proc {
        let who = Who {
            id: 1,
            engine,
            dir,
            bootstrap: true,
            api,
            raft,
        };
        Proc::start_with(who, None, extra, Some(TEST_LOGS))
    }

    /// Starts a test node (frequent snapshots unless its config file
    /// chooses) and waits until it answers.
    fn start_with(
        who: Who<'_>,
        pause: Option<&Pause>,
        extra: &[std::ffi::OsString],
        logs: Option<&str>,
    ) -> Proc {
        let config_sets_snapshots = extra.windows(2).any(|w| {
            w[0] == "--config"
                && std::fs::read_to_string(&w[1]).is_ok_and(|t| t.contains("snapshot_every"))
        });
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        if !config_sets_snapshots {
            args.extend(["--snapshot-every".into(), "50".into()]);
        }
        args.extend(extra.iter().cloned());
        let proc = Proc::spawn(who, pause, &args, logs);
        remember_node(who.api, who.dir, extra.iter().any(|a| a == "--tls-cert"));
        wait_until(20, &format!("node {} to answer /health", who.id), || {
            cli(&proc.api, &["health"]).status.success()
        });
        proc
    }

    /// A node started with exactly `extra` besides its identity, addresses
    /// (fresh loopback ports) and data directory: no test CA, no test
    /// snapshot cadence, `warn` logs to `<dir>.log`; not waited for. What
    /// the benches measure.
    pub fn launch(id: u64, engine: &str, dir: &Path, bootstrap: bool, extra: &[&str]) -> Proc {
        let (api, raft) = (crate::free_addr(), crate::free_addr());
        let extra: Vec<std::ffi::OsString> = extra.iter().map(Into::into).collect();
        let who = Who {
            id,
            engine,
            dir,
            bootstrap,
            api: &api,
            raft: &raft,
        };
        Proc::spawn(who, None, &extra, Some("warn"))
    }

    /// Spawns `serve` with these arguments, logging to `<dir>.log`.
    fn spawn(
        who: Who<'_>,
        pause: Option<&Pause>,
        extra: &[std::ffi::OsString],
        logs: Option<&str>,
    ) -> Proc {
        let log_path = who.dir.with_extension("log");
        // Appended: a restarted node's log follows its earlier lives.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap();
        let mut command = Command::new(binary());
        if let Some(pause) = pause {
            command
                .env("META_PAUSE_AT", pause.point)
                .env("META_PAUSE_MARKER", &pause.marker)
                .env("META_PAUSE_ARM", &pause.arm);
        }
        let child = command
            .args([
                "serve",
                "--node-id",
                &who.id.to_string(),
                "--engine",
                who.engine,
            ])
            .args(["--listen", who.api, "--raft-listen", who.raft])
            .arg("--data-dir")
            .arg(who.dir)
            .args(["--bootstrap", if who.bootstrap { "true" } else { "false" }])
            .args(extra)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(log)
            .envs(logs.map(|l| ("RUST_LOG", l)))
            .spawn()
            .unwrap();
        Proc {
            id: who.id,
            api: who.api.to_string(),
            raft: who.raft.to_string(),
            log: log_path,
            child: Some(child),
        }
    }

    /// The process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Peak resident set size of the process so far (`VmHWM`), bytes.
    pub fn peak_rss(&self) -> Option<u64> {
        proc_status_kib(self.pid()?, "VmHWM:").map(|k| k * 1024)
    }

    /// The exit status, if the process has exited by itself.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// SIGSTOP: the process freezes (no thread runs, nothing is sent or
    /// received) until [`Proc::resume`], like a long GC or VM pause.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT after [`Proc::pause`].
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let pid = child.id().to_string();
            let status = Command::new("kill").args([signal, &pid]).status().unwrap();
            assert!(status.success(), "kill {signal} {pid}");
        }
    }

    /// kill -9.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = child.id().to_string();
            let _ = Command::new("kill").args(["-TERM", &pid]).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    assert!(
                        status.success(),
                        "node {} exited with {status} on SIGTERM",
                        self.id
                    );
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            panic!("node {} did not stop within 20 s of SIGTERM", self.id);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A field of `/proc/<pid>/status` given in kB.
pub fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Runs the CLI against the node at `api`, with the token
/// [`token_file`] finds for it.
pub fn cli(api: &str, args: &[&str]) -> Output {
    cli_command(api, args).output().unwrap()
}

/// The command [`cli`] runs, to spawn it.
pub fn cli_command(api: &str, args: &[&str]) -> Command {
    let mut command = Command::new(binary());
    command
        .args(["--addr", &url(api), "--json"])
        .arg("--ca")
        .arg(test_ca().join("ca.pem"))
        .env_remove("META_TOKEN")
        .env_remove("META_NODE_DATA_DIR");
    match token_file(api) {
        Some(file) => command.arg("--token-file").arg(file),
        // No credentials at all: the CLI must not find any by itself.
        None => command.arg("--data-dir").arg("/nonexistent"),
    };
    command.args(args);
    command
}

/// [`cli`], which must succeed; its JSON output.
pub fn cli_ok(api: &str, args: &[&str]) -> serde_json::Value {
    let out = cli(api, args);
    assert!(
        out.status.success(),
        "meta-node {args:?} on {api} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// The content hash every node reports once they all applied the same
/// index (and nothing moved while hashing).
pub fn converged_hash(nodes: &[&Proc]) -> String {
    let mut last = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        last = nodes
            .iter()
            .map(|n| cli_ok(&n.api, &["cluster", "hash"]))
            .collect();
        let same = last.iter().all(|v| {
            v["hash"] == last[0]["hash"] && v["applied_index"] == last[0]["applied_index"]
        });
        if same && last.iter().all(|v| v["stable"] == true) {
            return last[0]["hash"].as_str().unwrap().to_string();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let logs: Vec<String> = nodes
        .iter()
        .map(|n| {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            // Panics first (they explain the rest), then the tail.
            let panics: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("panicked"))
                .take(5)
                .collect();
            let tail: Vec<&str> = text.lines().rev().take(15).chain(panics).collect();
            format!(
                "--- node {} ---\n{}",
                n.id,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
        .collect();
    panic!("nodes did not converge: {last:?}\n{}", logs.join("\n"));
}

/// The test's data dirs and logs; kept (and named) if the test fails.
pub struct Dirs(pub Option<tempfile::TempDir>);

impl Dirs {
    /// The directory named `name` inside it (a node's data directory).
    pub fn node(&self, name: &str) -> PathBuf {
        self.0.as_ref().unwrap().path().join(name)
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take().filter(|_| std::thread::panicking()) {
            eprintln!("node data and logs kept in {}", dir.keep().display());
        }
    }
}

/// Node processes on loopback with fixed addresses (a node restarts where
/// it was), one data directory each under `dirs`.
pub struct ProcCluster<'a> {
    /// `(api, raft)` address of each node, by index (node id = index + 1).
    pub addrs: Vec<(String, String)>,
    engines: Vec<String>,
    dirs: &'a Dirs,
    /// Proxies the peers reach each node through, if any.
    pub links: Option<Links>,
    /// Nodes log as the binary does by default (not [`TEST_LOGS`]).
    pub default_logs: bool,
    /// Every node's config file, if any (TOML).
    pub config: Option<String>,
}

impl<'a> ProcCluster<'a> {
    /// Picks free addresses for one node per engine.
    pub fn new(dirs: &'a Dirs, engines: &[&str]) -> ProcCluster<'a> {
        let addr = || format!("127.0.0.1:{}", free_port());
        ProcCluster {
            addrs: engines.iter().map(|_| (addr(), addr())).collect(),
            engines: engines.iter().map(|e| e.to_string()).collect(),
            dirs,
            links: None,
            default_logs: false,
            config: None,
        }
    }

    /// [`ProcCluster::new`], with every Raft RPC to a node crossing a
    /// proxy that can delay it or cut its connection ([`Links`]).
    pub fn with_links(dirs: &'a Dirs, engines: &[&str], seed: u64) -> ProcCluster<'a> {
        let mut cluster = ProcCluster::new(dirs, engines);
        let targets: Vec<String> = cluster.addrs.iter().map(|(_, raft)| raft.clone()).collect();
        cluster.links = Some(Links::new(&targets, seed));
        cluster
    }

    /// Starts (or restarts) node `i` on its data directory.
    pub fn start(&self, i: usize) -> Proc {
        self.start_paused(i, None)
    }

    /// Node `i`'s data directory.
    pub fn dir(&self, i: usize) -> PathBuf {
        self.dirs.node(&format!("n{}", i + 1))
    }

    /// [`ProcCluster::start`], armed with `pause` if given.
    pub fn start_paused(&self, i: usize, pause: Option<&Pause>) -> Proc {
        let (api, raft) = &self.addrs[i];
        let (id, dir) = (i as u64 + 1, self.dir(i));
        let logs = (!self.default_logs).then_some(TEST_LOGS);
        let config = self.config.as_deref();
        let who = Who {
            id,
            engine: &self.engines[i],
            dir: &dir,
            bootstrap: false,
            api,
            raft,
        };
        Proc::start_tls(who, pause, config, logs)
    }

    /// Starts every node and makes them one cluster (`cluster init`).
    pub fn form(&self) -> Vec<Proc> {
        let nodes: Vec<Proc> = (0..self.addrs.len()).map(|i| self.start(i)).collect();
        let members: Vec<String> = self
            .addrs
            .iter()
            .enumerate()
            .map(|(i, (api, raft))| {
                let raft = self.links.as_ref().map_or(raft, |l| &l.advertised[i]);
                format!("{}={raft},{api}", i + 1)
            })
            .collect();
        let mut init = vec!["cluster", "init"];
        init.extend(members.iter().map(String::as_str));
        assert!(
            cli(&self.addrs[0].0, &init).status.success(),
            "cluster init"
        );
        nodes
    }

    /// The client API addresses.
    pub fn apis(&self) -> Vec<String> {
        self.addrs.iter().map(|(api, _)| api.clone()).collect()
    }
}
