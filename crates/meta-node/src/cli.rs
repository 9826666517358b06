//! The command line: `serve`, client commands talking to a running node,
//! and offline tools.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use comfy_table::Table;
use reqwest::Method;
use serde_json::{Value, json};

use crate::auth::Token;
use crate::client::{Body, Client, encode_path, encode_query};
use crate::config::Config;
use crate::credentials::read_token;
use crate::engine::{Engine, StoreSpec};

/// A Raft metadata store with pluggable embedded storage.
#[derive(Parser, Debug)]
#[command(name = "meta-node", version, about)]
pub struct Cli {
    /// The node to talk to (client commands).
    #[arg(
        long,
        global = true,
        env = "META_NODE_ADDR",
        default_value = "http://127.0.0.1:7700"
    )]
    pub addr: String,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Bearer token (`<id>.<secret>`) for client commands. Without it the
    /// CLI reads --token-file, then `DATA_DIR/root.token`, then
    /// `DATA_DIR/init.token`.
    #[arg(long, global = true, env = "META_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the bearer token.
    #[arg(long, global = true, env = "META_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// CA certificate (PEM) to trust for an https:// --addr (default:
    /// `DATA_DIR/tls/ca.pem` if it exists).
    #[arg(long, global = true, env = "META_CA")]
    pub ca: Option<PathBuf>,
    /// Data directory: `serve` stores its data there; client commands
    /// look for its root.token (default ./meta-data).
    #[arg(long, global = true, env = "META_NODE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a node (with no flags: a single-node cluster on LMDB in ./meta-data).
    Serve(ServeArgs),
    /// Whether the node runs (`GET /health`; needs no token).
    Health,
    /// User keys.
    #[command(subcommand)]
    Kv(KvCommand),
    /// Cluster membership and the cluster map.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// The versioned shard map.
    #[command(subcommand)]
    Shard(ShardCommand),
    /// API keys.
    #[command(subcommand)]
    Apikey(ApikeyCommand),
    /// Config entries.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Offline backup and restore of a stopped node's store.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
    /// Offline: convert a stopped node's store to another engine.
    Migrate {
        /// Source store, ENGINE:DIR (e.g. lmdb:./meta-data/lmdb).
        #[arg(long)]
        from: StoreSpec,
        /// Target store, ENGINE:DIR.
        #[arg(long)]
        to: StoreSpec,
        /// Replace a target that already holds data.
        #[arg(long)]
        force: bool,
    },
    /// Offline: the content hash of a store's metadata (equal across engines).
    Verify {
        /// The store, ENGINE:DIR.
        #[arg(long)]
        store: StoreSpec,
    },
    /// Certificates for HTTPS and peer mTLS (no OpenSSL needed).
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Offline credential recovery.
    #[command(subcommand)]
    Auth(AuthCommand),
}

/// `certs`.
#[derive(Subcommand, Debug)]
pub enum CertsCommand {
    /// Create a cluster CA: DIR/ca.pem and DIR/ca.key (keep the key safe).
    CreateCa {
        /// Where to write it.
        #[arg(long, default_value = "./certs")]
        dir: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issue a node certificate from the CA: OUT/node.pem, OUT/node.key and
    /// a copy of ca.pem, for `--tls-ca/--tls-cert/--tls-key`.
    CreateNode {
        /// The node id the certificate proves.
        #[arg(long)]
        id: u64,
        /// A DNS name or IP address clients and peers use to reach the node
        /// (repeat).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        /// The CA's directory.
        #[arg(long, default_value = "./certs")]
        ca_dir: PathBuf,
        /// Where to write (default: CA_DIR/node-ID).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Validity in days.
        #[arg(long, default_value_t = 825)]
        days: u32,
    },
}

/// `auth`.
#[derive(Subcommand, Debug)]
pub enum AuthCommand {
    /// On a stopped node: write a new admin token to `DATA_DIR/root.token`.
    /// When the node runs again and leads, it installs the key (through
    /// Raft, so every node gets it). For when every admin key is lost.
    ResetRoot,
}

/// `serve` flags; each overrides the config file and has a `META_NODE_*`
/// environment variable.
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML config file.
    #[arg(long, env = "META_NODE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Raft node id.
    #[arg(long, env = "META_NODE_NODE_ID")]
    pub node_id: Option<u64>,
    /// Client API address.
    #[arg(long, env = "META_NODE_LISTEN")]
    pub listen: Option<String>,
    /// Peer transport address.
    #[arg(long, env = "META_NODE_RAFT_LISTEN")]
    pub raft_listen: Option<String>,
    /// Advertised client API address.
    #[arg(long, env = "META_NODE_ADVERTISE")]
    pub advertise: Option<String>,
    /// Advertised peer address.
    #[arg(long, env = "META_NODE_ADVERTISE_RAFT")]
    pub advertise_raft: Option<String>,
    /// Engine of both stores.
    #[arg(long, env = "META_NODE_ENGINE")]
    pub engine: Option<Engine>,
    /// Engine of the Raft log store.
    #[arg(long, env = "META_NODE_LOG_ENGINE")]
    pub log_engine: Option<Engine>,
    /// Engine of the state machine store.
    #[arg(long, env = "META_NODE_STATE_ENGINE")]
    pub state_engine: Option<Engine>,
    /// Initialise a single-node cluster on first start (true/false).
    #[arg(long, env = "META_NODE_BOOTSTRAP")]
    pub bootstrap: Option<bool>,
    /// Snapshot every this many entries.
    #[arg(long, env = "META_NODE_SNAPSHOT_EVERY")]
    pub snapshot_every: Option<u64>,
    /// Turn security off (no client auth, plaintext peers): experiments only.
    #[arg(long, env = "META_NODE_INSECURE")]
    pub insecure: bool,
    /// Close a connection that moves no byte for this many seconds.
    #[arg(long, env = "META_NODE_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Answer 503 to a request that waits this many seconds for Raft.
    #[arg(long, env = "META_NODE_REQUEST_TIMEOUT_SECS")]
    pub request_timeout_secs: Option<u64>,
    /// The cluster CA certificate (PEM).
    #[arg(long, env = "META_NODE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// This node's certificate (PEM).
    #[arg(long, env = "META_NODE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, env = "META_NODE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
}

impl ServeArgs {
    /// The effective config: defaults, file, then these flags (and the
    /// global `--data-dir`).
    pub fn config(&self, data_dir: Option<&PathBuf>) -> Result<Config, crate::NodeError> {
        let mut config = match &self.config {
            Some(path) => Config::from_file(path)?,
            None => Config::default(),
        };
        macro_rules! set {
            ($($field:ident),*) => { $(if let Some(v) = &self.$field { config.$field = v.clone(); })* };
        }
        set!(node_id, listen, raft_listen, engine, bootstrap);
        if let Some(dir) = data_dir {
            config.data_dir = dir.clone();
        }
        if self.advertise.is_some() {
            config.advertise = self.advertise.clone();
        }
        if self.advertise_raft.is_some() {
            config.advertise_raft = self.advertise_raft.clone();
        }
        if self.log_engine.is_some() {
            config.log_engine = self.log_engine;
        }
        if self.state_engine.is_some() {
            config.state_engine = self.state_engine;
        }
        if let Some(n) = self.snapshot_every {
            config.raft.snapshot_every = n;
        }
        config.insecure |= self.insecure;
        if let Some(secs) = self.idle_timeout_secs {
            config.limits.idle_timeout_secs = secs;
        }
        if let Some(secs) = self.request_timeout_secs {
            config.limits.request_timeout_secs = secs;
        }
        for (flag, field) in [
            (&self.tls_ca, &mut config.tls.ca),
            (&self.tls_cert, &mut config.tls.cert),
            (&self.tls_key, &mut config.tls.key),
        ] {
            if flag.is_some() {
                field.clone_from(flag);
            }
        }
        config.validate()?;
        Ok(config)
    }
}

/// `kv`.
#[derive(Subcommand, Debug)]
pub enum KvCommand {
    /// Read a key (`--json`: with its revisions).
    Get {
        /// The key.
        key: String,
        /// Answer from the contacted node's state without a read index.
        #[arg(long)]
        stale: bool,
        /// Write the value's bytes to stdout as they are (binary values).
        #[arg(long)]
        raw: bool,
    },
    /// Set a key; prints the new revision.
    Put {
        /// The key.
        key: String,
        /// The value: text, `-` to read it from stdin, `@FILE` to read it
        /// from a file (any bytes).
        value: String,
        /// Only if the key's mod_revision is REV (its ETag, from `kv get --json`).
        #[arg(long, value_name = "REV", conflicts_with = "if_absent")]
        if_revision: Option<u64>,
        /// Only if the key does not exist (create only).
        #[arg(long)]
        if_absent: bool,
    },
    /// Delete a key; prints how many keys were deleted (0 or 1).
    Delete {
        /// The key.
        key: String,
        /// Only if the key's mod_revision is REV.
        #[arg(long, value_name = "REV")]
        if_revision: Option<u64>,
    },
    /// Delete every key under a (non-empty) prefix, at one revision.
    DeletePrefix {
        /// The prefix.
        prefix: String,
    },
    /// List keys under a prefix.
    List {
        /// The prefix.
        #[arg(default_value = "")]
        prefix: String,
        /// At most this many.
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// Answer from the contacted node's state without a read index.
        #[arg(long)]
        stale: bool,
    },
    /// Run a transaction (the JSON of `POST /v1/txn`, docs/api.md) from a
    /// file, or `-` for stdin.
    Txn {
        /// The file, or `-`.
        file: String,
    },
    /// Compare-and-swap: set KEY to --new (or delete it) if it holds --expected (or is absent).
    Cas {
        /// The key.
        key: String,
        /// The value it must hold now (omit: must be absent).
        #[arg(long)]
        expected: Option<String>,
        /// The new value (omit: delete).
        #[arg(long)]
        new: Option<String>,
    },
}

/// `cluster`.
#[derive(Subcommand, Debug)]
pub enum ClusterCommand {
    /// Leader, term, applied index and members.
    Status,
    /// The content hash of the node's metadata at its applied index (equal
    /// on every node and engine for equal content).
    Hash,
    /// Initialise a new cluster with these members: ID=RAFT_ADDR,API_ADDR ...
    Init {
        /// Members, each ID=RAFT_ADDR,API_ADDR.
        #[arg(required = true)]
        members: Vec<String>,
    },
    /// Add a learner (a non-voting member that catches up), and wait until
    /// it caught up. Adding a learner again with another address moves it.
    AddLearner {
        /// Its node id.
        id: u64,
        /// Its peer address.
        raft: String,
        /// Its client API address.
        api: String,
        /// How long to wait for it to catch up (0: do not wait).
        #[arg(long, default_value_t = 30)]
        wait_secs: u64,
    },
    /// Set the voters (learners not listed stay learners; voters left out
    /// leave the cluster). New voters must be caught up and reachable, and
    /// most voters must be.
    Members {
        /// Voter ids, comma-separated.
        #[arg(value_delimiter = ',', required = true)]
        voters: Vec<u64>,
        /// Skip the readiness check (a last-resort repair).
        #[arg(long)]
        force: bool,
    },
    /// The raised space alarms, and the data's size against the quota.
    Alarms,
    /// Clear every space alarm (raised again at the next check if its
    /// cause is still there).
    ClearAlarms,
    /// Remove a member of the Raft cluster: a learner, or a voter (the
    /// voters left must keep a reachable majority).
    RemoveMember {
        /// Node id.
        id: u64,
        /// Skip the readiness check of the voters left.
        #[arg(long)]
        force: bool,
    },
    /// The cluster map.
    Nodes,
    /// Add or update a node of the cluster map.
    SetNode {
        /// Node id.
        id: u64,
        /// Its address.
        address: String,
        /// active, draining or down.
        #[arg(long, default_value = "active")]
        state: String,
        /// Labels, KEY=VALUE.
        #[arg(long = "label")]
        labels: Vec<String>,
    },
    /// Remove a node from the cluster map.
    RemoveNode {
        /// Node id.
        id: u64,
    },
}

/// A member's progress as the leader sees it (only the leader knows).
fn progress(p: &Value) -> String {
    if p.is_null() {
        return "-".into();
    }
    let matched = text(&p["matched_index"]);
    match (p["reachable"].as_bool(), p["caught_up"].as_bool()) {
        (Some(false), _) => format!("unreachable (has {matched})"),
        (_, Some(true)) => format!("caught up ({matched})"),
        _ => format!("behind (has {matched})"),
    }
}

/// `shard`.
#[derive(Subcommand, Debug)]
pub enum ShardCommand {
    /// The shard map and its version.
    Get,
    /// Replace the shard map, if it is still at --expected-version.
    Set {
        /// The version this replaces.
        #[arg(long)]
        expected_version: u64,
        /// Shards, each SHARD=NODE,NODE,... (primary first).
        #[arg(required = true)]
        shards: Vec<String>,
    },
}

/// `apikey`.
#[derive(Subcommand, Debug)]
pub enum ApikeyCommand {
    /// Create a key; its secret is printed once.
    Create {
        /// Key id.
        id: String,
        /// Display name.
        #[arg(long, default_value = "")]
        name: String,
        /// Scopes (repeat).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long)]
        expires_in_secs: Option<u64>,
    },
    /// Revoke a key.
    Revoke {
        /// Key id.
        id: String,
    },
    /// List keys (never their secrets).
    List,
    /// Check a secret.
    Verify {
        /// Key id.
        id: String,
        /// The secret.
        secret: String,
    },
}

/// `config`.
#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Read an entry.
    Get {
        /// Entry name.
        name: String,
    },
    /// Set an entry.
    Set {
        /// Entry name.
        name: String,
        /// Its value.
        value: String,
    },
    /// Delete an entry.
    Delete {
        /// Entry name.
        name: String,
    },
    /// Every entry.
    List,
}

/// `snapshot`.
#[derive(Subcommand, Debug)]
pub enum SnapshotCommand {
    /// Save a stopped node's whole store to a file.
    Save {
        /// The store, ENGINE:DIR.
        #[arg(long)]
        store: StoreSpec,
        /// Output file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Replace a stopped node's whole store with a saved file.
    Restore {
        /// The store, ENGINE:DIR.
        #[arg(long)]
        store: StoreSpec,
        /// Input file.
        #[arg(long = "in")]
        input: PathBuf,
        /// Replace a store that already holds data.
        #[arg(long)]
        force: bool,
    },
}

fn split_pair<'a>(s: &'a str, what: &str) -> anyhow::Result<(&'a str, &'a str)> {
    s.split_once('=')
        .with_context(|| format!("`{s}` is not {what}"))
}

fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    t.set_header(headers.to_vec());
    for row in rows {
        t.add_row(row);
    }
    t.to_string()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// A key's value as the CLI shows it: the text, or what a binary value is.
fn shown_value(v: &Value) -> String {
    match (&v["value"], &v["value_base64"]) {
        (Value::String(s), _) => s.clone(),
        (_, Value::String(b64)) => {
            use base64::Engine as _;
            let len = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_or(0, |b| b.len());
            format!("<{len} bytes, not UTF-8: `kv get --raw` writes them>")
        }
        _ => "-".into(),
    }
}

/// What a delete answered.
fn deleted(v: &Value) -> String {
    format!(
        "deleted {}, revision {}",
        text(&v["deleted"]),
        text(&v["revision"])
    )
}

/// A value argument: `-` reads stdin, `@FILE` reads a file, anything else
/// is the value itself.
fn value_arg(arg: &str) -> anyhow::Result<Vec<u8>> {
    use std::io::Read as _;
    if arg == "-" || arg == "@-" {
        let mut bytes = Vec::new();
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading the value from stdin")?;
        return Ok(bytes);
    }
    match arg.strip_prefix('@') {
        Some(path) => std::fs::read(path).with_context(|| format!("reading the value from {path}")),
        None => Ok(arg.as_bytes().to_vec()),
    }
}

/// `kv get --raw`: the value's bytes, to write to stdout as they are;
/// `None` for every other command.
pub async fn raw_output(cli: &Cli) -> anyhow::Result<Option<Vec<u8>>> {
    let Command::Kv(KvCommand::Get {
        key,
        stale,
        raw: true,
    }) = &cli.command
    else {
        return Ok(None);
    };
    check_path_segments(key)?;
    let client = Client::new(&cli.addr, cli.client_token()?, cli.client_ca().as_deref())?;
    let path = format!(
        "/v1/kv/{}?raw=true{}",
        encode_path(key),
        if *stale { "&stale=true" } else { "" }
    );
    client
        .call_with(Method::GET, &path, None, &[])
        .await
        .map(Some)
}

/// An API key's state as `apikey list` shows it.
fn key_status(key: &Value) -> &'static str {
    let now = crate::api::now_ms();
    if !key["revoked_at_ms"].is_null() {
        "revoked"
    } else if key["expires_at_ms"].as_u64().is_some_and(|at| now >= at) {
        "expired"
    } else {
        "active"
    }
}

/// Renders an answer as text.
type Render = Box<dyn Fn(&Value) -> String>;

/// Refuses keys and names whose path segments are `.` or `..`: URL
/// normalisation would silently turn `a/../b` into `b`.
fn check_path_segments(name: &str) -> anyhow::Result<()> {
    if name
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        anyhow::bail!(
            "`{name}` has a `.` or `..` segment, which HTTP paths cannot carry; use the library API for such keys"
        );
    }
    Ok(())
}

impl Cli {
    /// The data directory client commands look in (default `./meta-data`).
    pub fn client_data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("./meta-data"))
    }

    /// The bearer token for client commands: `--token` (or `META_TOKEN`),
    /// `--token-file`, `<data-dir>/root.token`, `<data-dir>/init.token`;
    /// `None` if there is none.
    pub fn client_token(&self) -> anyhow::Result<Option<Token>> {
        if let Some(text) = &self.token {
            return Token::parse(text)
                .map(Some)
                .context("--token (or META_TOKEN) is not `<id>.<secret>`");
        }
        if let Some(file) = &self.token_file {
            return read_token(file)?
                .map(Some)
                .with_context(|| format!("--token-file {} does not exist", file.display()));
        }
        let dir = self.client_data_dir();
        for name in [crate::auth::ROOT_TOKEN_FILE, crate::auth::INIT_TOKEN_FILE] {
            if let Some(token) = read_token(&dir.join(name))? {
                return Ok(Some(token));
            }
        }
        Ok(None)
    }

    /// The CA to trust for https:// addresses: `--ca`, else
    /// `<data-dir>/tls/ca.pem` if it exists.
    pub fn client_ca(&self) -> Option<PathBuf> {
        self.ca.clone().or_else(|| {
            Some(self.client_data_dir().join("tls").join("ca.pem")).filter(|p| p.exists())
        })
    }
}

/// Runs a client command against `cli.addr`; returns what to print.
pub async fn run_client(cli: &Cli) -> anyhow::Result<String> {
    let client = Client::new(&cli.addr, cli.client_token()?, cli.client_ca().as_deref())?;
    match &cli.command {
        Command::Kv(
            KvCommand::Get { key, .. } | KvCommand::Put { key, .. } | KvCommand::Delete { key, .. },
        ) => check_path_segments(key)?,
        Command::Config(
            ConfigCommand::Get { name }
            | ConfigCommand::Set { name, .. }
            | ConfigCommand::Delete { name },
        ) => check_path_segments(name)?,
        Command::Apikey(ApikeyCommand::Revoke { id }) => check_path_segments(id)?,
        _ => {}
    }
    let (value, render): (Value, Render) = match &cli.command {
        Command::Health => (
            client.call(Method::GET, "/health", None).await?,
            Box::new(|v| text(&v["status"])),
        ),
        Command::Kv(cmd) => match cmd {
            KvCommand::Get { key, stale, .. } => {
                let path = format!(
                    "/v1/kv/{}{}",
                    encode_path(key),
                    if *stale { "?stale=true" } else { "" }
                );
                (
                    client.call(Method::GET, &path, None).await?,
                    Box::new(shown_value),
                )
            }
            KvCommand::Put {
                key,
                value,
                if_revision,
                if_absent,
            } => {
                let mut headers = Vec::new();
                if let Some(rev) = if_revision {
                    headers.push(("if-match", format!("\"{rev}\"")));
                }
                if *if_absent {
                    headers.push(("if-none-match", "*".to_string()));
                }
                let answer = client
                    .call_with(
                        Method::PUT,
                        &format!("/v1/kv/{}", encode_path(key)),
                        Some(Body::Bytes(value_arg(value)?)),
                        &headers,
                    )
                    .await?;
                (
                    serde_json::from_slice(&answer)?,
                    // The revision is in the `--json` answer.
                    Box::new(|_| "ok".into()),
                )
            }
            KvCommand::Delete { key, if_revision } => {
                let headers: Vec<(&str, String)> = if_revision
                    .iter()
                    .map(|rev| ("if-match", format!("\"{rev}\"")))
                    .collect();
                let answer = client
                    .call_with(
                        Method::DELETE,
                        &format!("/v1/kv/{}", encode_path(key)),
                        None,
                        &headers,
                    )
                    .await?;
                (serde_json::from_slice(&answer)?, Box::new(deleted))
            }
            KvCommand::DeletePrefix { prefix } => (
                client
                    .call(
                        Method::DELETE,
                        &format!("/v1/kv?prefix={}", encode_query(prefix)),
                        None,
                    )
                    .await?,
                Box::new(deleted),
            ),
            KvCommand::List {
                prefix,
                limit,
                stale,
            } => {
                let path = format!(
                    "/v1/kv?prefix={}{}",
                    encode_query(prefix),
                    if *stale { "&stale=true" } else { "" }
                );
                let render = |v: &Value| {
                    let rows = v["items"]
                        .as_array()
                        .map(|items| {
                            items
                                .iter()
                                .map(|i| vec![text(&i["key"]), shown_value(i)])
                                .collect()
                        })
                        .unwrap_or_default();
                    table(&["key", "value"], rows)
                };
                (
                    client.get_all(&path, "items", *limit).await?,
                    Box::new(render),
                )
            }
            KvCommand::Txn { file } => {
                let body: Value = serde_json::from_slice(&value_arg(&format!("@{file}"))?)
                    .with_context(|| format!("{file} is not the JSON of a transaction"))?;
                (
                    client
                        .call(Method::POST, "/v1/txn", Some(Body::Json(body)))
                        .await?,
                    Box::new(|v| {
                        let branch = if v["succeeded"] == json!(true) {
                            "success"
                        } else {
                            "failure"
                        };
                        format!(
                            "{branch}, revision {}\n{}",
                            text(&v["revision"]),
                            serde_json::to_string_pretty(&v["results"]).unwrap_or_default()
                        )
                    }),
                )
            }
            KvCommand::Cas { key, expected, new } => {
                let body = json!({"key": key, "expected": expected, "new": new});
                (
                    client
                        .call(Method::POST, "/v1/cas", Some(Body::Json(body)))
                        .await?,
                    Box::new(|_| "swapped".into()),
                )
            }
        },
        Command::Cluster(cmd) => match cmd {
            ClusterCommand::Status => {
                let render = |v: &Value| {
                    let mut out = format!(
                        "node {} ({}), leader {}, term {}, applied {}, last log {}\n",
                        text(&v["id"]),
                        text(&v["state"]),
                        text(&v["leader"]),
                        text(&v["term"]),
                        text(&v["applied_index"]),
                        text(&v["last_log_index"])
                    );
                    let rows = v["members"]
                        .as_object()
                        .map(|m| {
                            m.iter()
                                .map(|(id, n)| {
                                    vec![
                                        id.clone(),
                                        text(&n["raft"]),
                                        text(&n["api"]),
                                        if n["voter"] == json!(true) {
                                            "voter".into()
                                        } else {
                                            "learner".into()
                                        },
                                        progress(&n["progress"]),
                                    ]
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    out += &table(&["id", "raft", "api", "role", "progress"], rows);
                    out
                };
                (
                    client.call(Method::GET, "/v1/cluster/status", None).await?,
                    Box::new(render),
                )
            }
            ClusterCommand::Hash => {
                let render = |v: &Value| {
                    format!(
                        "{} at applied index {}",
                        text(&v["hash"]),
                        text(&v["applied_index"])
                    )
                };
                (
                    client.call(Method::GET, "/v1/cluster/hash", None).await?,
                    Box::new(render),
                )
            }
            ClusterCommand::Init { members } => {
                let mut list = Vec::new();
                for m in members {
                    let (id, addrs) = split_pair(m, "ID=RAFT_ADDR,API_ADDR")?;
                    let (raft, api) = addrs
                        .split_once(',')
                        .with_context(|| format!("`{m}` is not ID=RAFT_ADDR,API_ADDR"))?;
                    list.push(json!({"id": id.parse::<u64>().with_context(|| format!("`{id}` is not a node id"))?, "raft": raft, "api": api}));
                }
                (
                    client
                        .call(
                            Method::POST,
                            "/v1/cluster/init",
                            Some(Body::Json(json!(list))),
                        )
                        .await?,
                    Box::new(|v| {
                        let mut out = match v["leader"].as_u64() {
                            Some(leader) => format!("initialised; leader: node {leader}"),
                            None => format!("initialised\nwarning: {}", text(&v["warning"])),
                        };
                        if let Some(token) = v["root_token"].as_str() {
                            out.push_str(&format!(
                                "\nroot token: {token}\n(shown once; also in {} on that node)",
                                text(&v["root_token_file"])
                            ));
                        }
                        out
                    }),
                )
            }
            ClusterCommand::AddLearner {
                id,
                raft,
                api,
                wait_secs,
            } => {
                let body = json!({"id": id, "raft": raft, "api": api, "wait_secs": wait_secs});
                (
                    client
                        .call(Method::POST, "/v1/cluster/learners", Some(Body::Json(body)))
                        .await?,
                    Box::new(|v| {
                        if v["caught_up"] == json!(true) {
                            format!(
                                "learner added; caught up (index {})",
                                text(&v["matched_index"])
                            )
                        } else {
                            "learner added (not waited for)".into()
                        }
                    }),
                )
            }
            ClusterCommand::Alarms => (
                client.call(Method::GET, "/v1/cluster/alarms", None).await?,
                Box::new(|v| {
                    let mut out = format!(
                        "data: {} bytes of a {}-byte quota\n",
                        text(&v["data_bytes"]),
                        text(&v["quota_bytes"])
                    );
                    let rows = v["alarms"]
                        .as_array()
                        .map(|alarms| {
                            alarms
                                .iter()
                                .map(|a| {
                                    vec![text(&a["kind"]), text(&a["node"]), text(&a["detail"])]
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    out += &table(&["kind", "node", "detail"], rows);
                    out
                }),
            ),
            ClusterCommand::ClearAlarms => (
                client
                    .call(Method::DELETE, "/v1/cluster/alarms", None)
                    .await?,
                Box::new(|_| "alarms cleared".into()),
            ),
            ClusterCommand::RemoveMember { id, force } => (
                client
                    .call(
                        Method::DELETE,
                        &format!("/v1/cluster/members/{id}?force={force}"),
                        None,
                    )
                    .await?,
                Box::new(|v| format!("removed {} {}", text(&v["was"]), text(&v["removed"]))),
            ),
            ClusterCommand::Members { voters, force } => {
                let body = json!({"voters": voters, "force": force});
                (
                    client
                        .call(
                            Method::POST,
                            "/v1/cluster/membership",
                            Some(Body::Json(body)),
                        )
                        .await?,
                    Box::new(|_| "membership changed".into()),
                )
            }
            ClusterCommand::Nodes => {
                let render = |v: &Value| {
                    let rows = v["nodes"]
                        .as_array()
                        .map(|n| {
                            n.iter()
                                .map(|n| {
                                    vec![
                                        text(&n["id"]),
                                        text(&n["address"]),
                                        text(&n["state"]),
                                        n["labels"].to_string(),
                                    ]
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    table(&["id", "address", "state", "labels"], rows)
                };
                (
                    client
                        .get_all("/v1/cluster/nodes?", "nodes", usize::MAX)
                        .await?,
                    Box::new(render),
                )
            }
            ClusterCommand::SetNode {
                id,
                address,
                state,
                labels,
            } => {
                let mut map = serde_json::Map::new();
                for l in labels {
                    let (k, v) = split_pair(l, "KEY=VALUE")?;
                    map.insert(k.into(), json!(v));
                }
                let state = match state.as_str() {
                    "active" => "Active",
                    "draining" => "Draining",
                    "down" => "Down",
                    other => anyhow::bail!(
                        "unknown node state `{other}` (expected active, draining or down)"
                    ),
                };
                let body = json!({"address": address, "state": state, "labels": map});
                (
                    client
                        .call(
                            Method::PUT,
                            &format!("/v1/cluster/nodes/{id}"),
                            Some(Body::Json(body)),
                        )
                        .await?,
                    Box::new(|_| "ok".into()),
                )
            }
            ClusterCommand::RemoveNode { id } => (
                client
                    .call(Method::DELETE, &format!("/v1/cluster/nodes/{id}"), None)
                    .await?,
                Box::new(|_| "ok".into()),
            ),
        },
        Command::Shard(cmd) => match cmd {
            ShardCommand::Get => {
                let render = |v: &Value| {
                    let rows = v["shards"]
                        .as_object()
                        .map(|s| {
                            s.iter()
                                .map(|(id, a)| vec![id.clone(), a["replicas"].to_string()])
                                .collect()
                        })
                        .unwrap_or_default();
                    format!(
                        "version {}\n{}",
                        text(&v["version"]),
                        table(&["shard", "replicas"], rows)
                    )
                };
                (
                    client.get_all("/v1/shards?", "shards", usize::MAX).await?,
                    Box::new(render),
                )
            }
            ShardCommand::Set {
                expected_version,
                shards,
            } => {
                let mut map = serde_json::Map::new();
                for s in shards {
                    let (id, nodes) = split_pair(s, "SHARD=NODE,NODE,...")?;
                    let replicas: Vec<u64> = nodes
                        .split(',')
                        .map(|n| {
                            n.trim()
                                .parse()
                                .with_context(|| format!("`{n}` is not a node id"))
                        })
                        .collect::<anyhow::Result<_>>()?;
                    map.insert(id.into(), json!({"replicas": replicas}));
                }
                let body = json!({"expected_version": expected_version, "shards": map});
                (
                    client
                        .call(Method::PUT, "/v1/shards", Some(Body::Json(body)))
                        .await?,
                    Box::new(|v| format!("shard map version {}", text(&v["version"]))),
                )
            }
        },
        Command::Apikey(cmd) => match cmd {
            ApikeyCommand::Create {
                id,
                name,
                scopes,
                expires_in_secs,
            } => {
                let body = json!({"id": id, "name": name, "scopes": scopes, "expires_in_secs": expires_in_secs});
                let render = |v: &Value| {
                    format!(
                        "id:    {}\ntoken: {}\n(the token is shown once: store it now)",
                        text(&v["id"]),
                        text(&v["token"])
                    )
                };
                (
                    client
                        .call(Method::POST, "/v1/apikeys", Some(Body::Json(body)))
                        .await?,
                    Box::new(render),
                )
            }
            ApikeyCommand::Revoke { id } => (
                client
                    .call(
                        Method::DELETE,
                        &format!("/v1/apikeys/{}", encode_path(id)),
                        None,
                    )
                    .await?,
                Box::new(|_| "revoked".into()),
            ),
            ApikeyCommand::List => {
                let render = |v: &Value| {
                    let rows = v["api_keys"]
                        .as_array()
                        .map(|k| {
                            k.iter()
                                .map(|k| {
                                    vec![
                                        text(&k["id"]),
                                        text(&k["name"]),
                                        k["scopes"].to_string(),
                                        key_status(k).into(),
                                    ]
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    table(&["id", "name", "scopes", "status"], rows)
                };
                (
                    client
                        .get_all("/v1/apikeys?", "api_keys", usize::MAX)
                        .await?,
                    Box::new(render),
                )
            }
            ApikeyCommand::Verify { id, secret } => {
                let body = json!({"id": id, "secret": secret});
                (
                    client
                        .call(Method::POST, "/v1/apikeys/verify", Some(Body::Json(body)))
                        .await?,
                    Box::new(|v| text(&v["status"])),
                )
            }
        },
        Command::Config(cmd) => match cmd {
            ConfigCommand::Get { name } => (
                client
                    .call(
                        Method::GET,
                        &format!("/v1/config/{}", encode_path(name)),
                        None,
                    )
                    .await?,
                Box::new(|v| text(&v["value"])),
            ),
            ConfigCommand::Set { name, value } => {
                let v = client
                    .call(
                        Method::PUT,
                        &format!("/v1/config/{}", encode_path(name)),
                        Some(Body::Text(value.clone())),
                    )
                    .await?;
                (v, Box::new(|_| "ok".into()))
            }
            ConfigCommand::Delete { name } => (
                client
                    .call(
                        Method::DELETE,
                        &format!("/v1/config/{}", encode_path(name)),
                        None,
                    )
                    .await?,
                Box::new(|_| "ok".into()),
            ),
            ConfigCommand::List => {
                let render = |v: &Value| {
                    let rows = v["config"]
                        .as_object()
                        .map(|c| c.iter().map(|(k, v)| vec![k.clone(), text(v)]).collect())
                        .unwrap_or_default();
                    table(&["name", "value"], rows)
                };
                (
                    client.get_all("/v1/config?", "config", usize::MAX).await?,
                    Box::new(render),
                )
            }
        },
        _ => anyhow::bail!("not a client command"),
    };
    Ok(if cli.json {
        serde_json::to_string_pretty(&value)?
    } else {
        render(&value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_refused() {
        assert!(check_path_segments("a/../b").is_err());
        assert!(check_path_segments("./x").is_err());
        assert!(check_path_segments("a/b.c/..d").is_ok());
    }
}
