//! The command line: `serve`, client commands talking to a running node,
//! and offline tools.
//!
//! This module holds the arguments; `run.rs` sends each client command
//! through the typed client ([`meta_client::Client`]), one function per
//! command group, and `render.rs` turns the typed answers into text.

mod render;
mod run;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

pub(crate) use run::{ExitStatus, parse_members, raw_output, run_client, run_streaming};

use meta_node::auth::Token;
use meta_node::config::Config;
use meta_node::credentials::read_token;
use meta_node::engine::{Engine, StoreSpec};

/// A Raft metadata store with pluggable embedded storage.
#[derive(Parser, Debug)]
#[command(name = "meta-node", version, about)]
pub(crate) struct Cli {
    /// The nodes to talk to (client commands), comma-separated: host:port
    /// (https:// with --ca, else http://) or URLs. Unreachable ones are
    /// skipped; a follower sends the client to the leader.
    #[arg(
        long,
        global = true,
        alias = "endpoints",
        env = "META_NODE_ADDR",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:7700"
    )]
    pub(crate) addr: Vec<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    /// Bearer token (`<id>.<secret>`) for client commands. Without it the
    /// CLI reads --token-file, then `DATA_DIR/root.token`, then
    /// `DATA_DIR/init.token`.
    #[arg(long, global = true, env = "META_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// File holding the bearer token.
    #[arg(long, global = true, env = "META_TOKEN_FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// CA certificate (PEM) to trust for an https:// --addr (default:
    /// `DATA_DIR/tls/ca.pem` if it exists).
    #[arg(long, global = true, env = "META_CA")]
    pub(crate) ca: Option<PathBuf>,
    /// Data directory: `serve` stores its data there; client commands
    /// look for its root.token (default ./meta-data).
    #[arg(long, global = true, env = "META_NODE_DATA_DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The format of log lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Commands.
#[derive(Subcommand, Debug)]
pub(crate) enum Command {
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
    /// Follow changes as they happen: one line per change (`--json`: one
    /// JSON object per line), until interrupted or --count changes.
    Watch(WatchArgs),
    /// Leases: keys and cluster nodes bound to one end with it.
    #[command(subcommand)]
    Lease(LeaseCommand),
    /// Take a lock (a key bound to a lease) and run a command while
    /// holding it, or hold it until interrupted.
    Lock(LockArgs),
    /// Backups: online from a running node (`save` without --store), or of
    /// a stopped node's store; restore into a new cluster or a node.
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
pub(crate) enum CertsCommand {
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
pub(crate) enum AuthCommand {
    /// On a stopped node: write a new admin token to `DATA_DIR/root.token`.
    /// When the node runs again and leads, it installs the key (through
    /// Raft, so every node gets it). For when every admin key is lost.
    ResetRoot,
}

/// `serve` flags; each overrides the config file and has a `META_NODE_*`
/// environment variable.
#[derive(Args, Debug, Default)]
pub(crate) struct ServeArgs {
    /// Log lines: text, or json (one object per line, for log shippers).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub(crate) log_format: LogFormat,
    /// TOML config file.
    #[arg(long, env = "META_NODE_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Raft node id [default: 1].
    #[arg(long, env = "META_NODE_NODE_ID")]
    pub(crate) node_id: Option<u64>,
    /// Client API address [default: 127.0.0.1:7700].
    #[arg(long, env = "META_NODE_LISTEN")]
    pub(crate) listen: Option<String>,
    /// Peer transport address [default: 127.0.0.1:7701].
    #[arg(long, env = "META_NODE_RAFT_LISTEN")]
    pub(crate) raft_listen: Option<String>,
    /// Advertised client API address [default: --listen].
    #[arg(long, env = "META_NODE_ADVERTISE")]
    pub(crate) advertise: Option<String>,
    /// Advertised peer address [default: --raft-listen].
    #[arg(long, env = "META_NODE_ADVERTISE_RAFT")]
    pub(crate) advertise_raft: Option<String>,
    /// Engine of both stores [default: lmdb].
    #[arg(long, env = "META_NODE_ENGINE")]
    pub(crate) engine: Option<Engine>,
    /// Engine of the Raft log store [default: --engine].
    #[arg(long, env = "META_NODE_LOG_ENGINE")]
    pub(crate) log_engine: Option<Engine>,
    /// Engine of the state machine store [default: --engine].
    #[arg(long, env = "META_NODE_STATE_ENGINE")]
    pub(crate) state_engine: Option<Engine>,
    /// Initialise a single-node cluster on first start (true/false)
    /// [default: true].
    #[arg(long, env = "META_NODE_BOOTSTRAP")]
    pub(crate) bootstrap: Option<bool>,
    /// Snapshot every this many entries [default: 10000].
    #[arg(long, env = "META_NODE_SNAPSHOT_EVERY")]
    pub(crate) snapshot_every: Option<u64>,
    /// Turn security off (no client auth, plaintext peers): experiments only.
    #[arg(long, env = "META_NODE_INSECURE")]
    pub(crate) insecure: bool,
    /// Close a connection that moves no byte for this many seconds
    /// [default: 60].
    #[arg(long, env = "META_NODE_IDLE_TIMEOUT_SECS")]
    pub(crate) idle_timeout_secs: Option<u64>,
    /// Answer 503 to a request that waits this many seconds for Raft
    /// [default: 5].
    #[arg(long, env = "META_NODE_REQUEST_TIMEOUT_SECS")]
    pub(crate) request_timeout_secs: Option<u64>,
    /// The cluster CA certificate (PEM).
    #[arg(long, env = "META_NODE_TLS_CA")]
    pub(crate) tls_ca: Option<PathBuf>,
    /// This node's certificate (PEM).
    #[arg(long, env = "META_NODE_TLS_CERT")]
    pub(crate) tls_cert: Option<PathBuf>,
    /// This node's private key (PEM).
    #[arg(long, env = "META_NODE_TLS_KEY")]
    pub(crate) tls_key: Option<PathBuf>,
}

impl ServeArgs {
    /// The effective config: defaults, file, then these flags (and the
    /// global `--data-dir`).
    pub(crate) fn config(
        &self,
        data_dir: Option<&PathBuf>,
    ) -> Result<Config, meta_node::NodeError> {
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
pub(crate) enum KvCommand {
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
        /// Bind the key to this lease (it is deleted when the lease ends).
        #[arg(long, value_name = "ID", conflicts_with_all = ["if_revision", "if_absent"])]
        lease: Option<u64>,
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

/// `watch`.
#[derive(clap::Args, Debug)]
pub(crate) struct WatchArgs {
    /// Only names starting with this (user keys by default).
    #[arg(default_value = "")]
    pub(crate) prefix: String,
    /// PREFIX is one exact name.
    #[arg(long)]
    pub(crate) exact: bool,
    /// Watch the cluster map (names are node ids) instead of user keys.
    #[arg(long, conflicts_with_all = ["shards", "config"])]
    pub(crate) cluster: bool,
    /// Watch the shard map instead of user keys.
    #[arg(long, conflicts_with = "config")]
    pub(crate) shards: bool,
    /// Watch config entries instead of user keys.
    #[arg(long)]
    pub(crate) config: bool,
    /// Start at this revision (default: the changes from now on).
    #[arg(long, value_name = "REV")]
    pub(crate) from_revision: Option<u64>,
    /// Show each record's previous version too.
    #[arg(long)]
    pub(crate) prev: bool,
    /// Print progress reports too (the revision the watch is up to date with).
    #[arg(long)]
    pub(crate) progress: bool,
    /// Stop after this many changes.
    #[arg(long, value_name = "N")]
    pub(crate) count: Option<u64>,
}

/// `lease`.
#[derive(Subcommand, Debug)]
pub(crate) enum LeaseCommand {
    /// Grant a lease; prints its id.
    Grant {
        /// Seconds it lives without a keepalive.
        ttl_secs: u64,
    },
    /// Keep a lease alive (three times per TTL) until interrupted or the
    /// lease is lost; --once sends one keepalive.
    Keepalive {
        /// The lease.
        id: u64,
        /// Send one keepalive and exit.
        #[arg(long)]
        once: bool,
    },
    /// A lease: time left, keys and nodes bound to it.
    Get {
        /// The lease.
        id: u64,
    },
    /// End a lease now: its keys are deleted and its nodes marked down.
    Revoke {
        /// The lease.
        id: u64,
    },
    /// Every live lease.
    List,
}

/// `lock`.
#[derive(clap::Args, Debug)]
pub(crate) struct LockArgs {
    /// The lock's key.
    pub(crate) name: String,
    /// Seconds the lock outlives a holder that stops keeping it alive.
    #[arg(long, default_value_t = 10)]
    pub(crate) ttl: u64,
    /// The command to run while holding the lock (after `--`); without
    /// one, hold it until interrupted (Ctrl-C) or stdin closes.
    #[arg(last = true)]
    pub(crate) command: Vec<String>,
}

/// `cluster`.
#[derive(Subcommand, Debug)]
pub(crate) enum ClusterCommand {
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
    /// Hand leadership to another voter that holds the whole log (before
    /// maintenance on the leader's machine); answers once it leads.
    TransferLeader {
        /// The voter to lead.
        to: u64,
    },
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
        /// Bind the node to this lease: it is marked down when the lease
        /// ends (register with a lease, keep it alive, and a dead node is
        /// marked down by itself).
        #[arg(long, value_name = "ID")]
        lease: Option<u64>,
    },
    /// Remove a node from the cluster map.
    RemoveNode {
        /// Node id.
        id: u64,
    },
}

/// `shard`.
#[derive(Subcommand, Debug)]
pub(crate) enum ShardCommand {
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
pub(crate) enum ApikeyCommand {
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
pub(crate) enum ConfigCommand {
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
pub(crate) enum SnapshotCommand {
    /// Save an online backup of a running node's metadata (`--addr`,
    /// admin), verified; or, with --store, a stopped node's whole store.
    Save {
        /// A stopped node's store, ENGINE:DIR (without it: online, from
        /// --addr).
        #[arg(long)]
        store: Option<StoreSpec>,
        /// Output file (written `0600`; replaced only once the new one is
        /// complete and verified).
        #[arg(long)]
        out: PathBuf,
        /// Online: what the node at --addr applied, without asking the
        /// leader (for a node that has none: a lost quorum).
        #[arg(long)]
        stale: bool,
    },
    /// Make a new data directory a member of a new cluster that starts
    /// from an online backup: run it for every member, with the same
    /// backup and the same --member list, then start the members.
    RestoreCluster {
        /// The online backup (`snapshot save` from a running node).
        #[arg(long = "in")]
        input: PathBuf,
        /// This member's id.
        #[arg(long)]
        node_id: u64,
        /// Every member of the new cluster, each ID=RAFT_ADDR,API_ADDR
        /// (repeat the flag).
        #[arg(long = "member", required = true, value_name = "ID=RAFT_ADDR,API_ADDR")]
        members: Vec<String>,
        /// The engine of this member's stores.
        #[arg(long, default_value = "lmdb")]
        engine: meta_node::engine::Engine,
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

/// Hides the client-only flags in `command` and its subcommands.
fn hide_client_flags(mut command: clap::Command) -> clap::Command {
    // In place: the built command indexes its arguments by position.
    command = command.mut_args(|a| {
        if CLIENT_FLAGS.iter().any(|f| a.get_id() == *f) {
            a.hide(true)
        } else {
            a
        }
    });
    let names: Vec<String> = command
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    for name in names {
        command = command.mut_subcommand(name, hide_client_flags);
    }
    command
}

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

/// Flags only client commands read: shown in every command's help by
/// clap (they are global, so they may follow any subcommand), hidden from
/// the help of commands that ignore them.
const CLIENT_FLAGS: [&str; 4] = ["addr", "token", "token_file", "ca"];

/// Commands that never talk to a node.
const OFFLINE_COMMANDS: [&str; 5] = ["serve", "migrate", "verify", "certs", "auth"];

/// Subcommands of `snapshot` that never talk to a node (`save` does,
/// without --store).
const OFFLINE_SNAPSHOT_COMMANDS: [&str; 2] = ["restore", "restore-cluster"];

impl Cli {
    /// The command line as clap parses it, with the client-only flags
    /// hidden from the help of offline commands (`serve`, `migrate`, ...).
    pub(crate) fn command() -> clap::Command {
        let mut command = <Cli as clap::CommandFactory>::command();
        // Globals are copied into subcommands when the command is built;
        // only then can the copies be hidden.
        command.build();
        for name in OFFLINE_COMMANDS {
            command = command.mut_subcommand(name, hide_client_flags);
        }
        command.mut_subcommand("snapshot", |mut snapshot| {
            for name in OFFLINE_SNAPSHOT_COMMANDS {
                snapshot = snapshot.mut_subcommand(name, hide_client_flags);
            }
            snapshot
        })
    }

    /// Parses the process's arguments (exits with clap's message on bad
    /// ones, as `Parser::parse` does).
    pub(crate) fn parse_args() -> Cli {
        use clap::FromArgMatches as _;
        let mut matches = Cli::command().get_matches();
        Cli::from_arg_matches_mut(&mut matches).unwrap_or_else(|e| e.exit())
    }

    /// The data directory client commands look in (default `./meta-data`).
    pub(crate) fn client_data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("./meta-data"))
    }

    /// The bearer token for client commands: `--token` (or `META_TOKEN`),
    /// `--token-file`, `<data-dir>/root.token`, `<data-dir>/init.token`;
    /// `None` if there is none.
    pub(crate) fn client_token(&self) -> anyhow::Result<Option<Token>> {
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
        for name in [
            meta_node::auth::ROOT_TOKEN_FILE,
            meta_node::auth::INIT_TOKEN_FILE,
        ] {
            if let Some(token) = read_token(&dir.join(name))? {
                return Ok(Some(token));
            }
        }
        Ok(None)
    }

    /// The CA to trust for https:// addresses: `--ca`, else
    /// `<data-dir>/tls/ca.pem` if it exists.
    pub(crate) fn client_ca(&self) -> Option<PathBuf> {
        self.ca.clone().or_else(|| {
            Some(self.client_data_dir().join("tls").join("ca.pem")).filter(|p| p.exists())
        })
    }

    /// The typed client for `--addr`, with the token and CA found. An
    /// address without a scheme is `https://` when `--ca` is given, else
    /// `http://`.
    pub(crate) fn client(&self) -> anyhow::Result<meta_client::Client> {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        let endpoints = self.addr.iter().map(|a| {
            if a.contains("://") {
                a.clone()
            } else {
                format!("{scheme}://{a}")
            }
        });
        // A person waits: retry through an election (about a second), not
        // for long against an address where nothing listens.
        let mut builder = meta_client::ClientBuilder::new(endpoints)
            .retries(4, std::time::Duration::from_millis(100));
        if let Some(token) = self.client_token()? {
            builder = builder.token(token.expose());
        }
        if let Some(ca) = self.client_ca() {
            builder = builder.ca(ca);
        }
        Ok(builder.build()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_commands_do_not_show_client_flags() {
        let mut cli = Cli::command();
        cli.clone().debug_assert();
        for path in [
            &["serve"][..],
            &["migrate"],
            &["verify"],
            &["snapshot", "restore"],
            &["snapshot", "restore-cluster"],
        ] {
            let mut command = cli.clone();
            for name in path {
                command = command.find_subcommand_mut(name).expect(name).clone();
            }
            let help = command.render_long_help().to_string();
            for flag in ["--addr", "--token ", "--token-file", "--ca "] {
                assert!(!help.contains(flag), "{path:?} help shows {flag}:\n{help}");
            }
        }
        // `snapshot save` talks to a node when it has no --store.
        let snapshot = cli.find_subcommand_mut("snapshot").expect("snapshot");
        let save = snapshot.find_subcommand_mut("save").expect("save");
        let help = save.render_long_help().to_string();
        assert!(
            help.contains("--addr") && help.contains("--store"),
            "{help}"
        );
        let kv = cli.find_subcommand_mut("kv").expect("kv");
        let get = kv.find_subcommand_mut("get").expect("get");
        let help = get.render_long_help().to_string();
        assert!(
            help.contains("--addr") && help.contains("--token-file"),
            "{help}"
        );
        // Parsing still takes them anywhere on a client command.
        use clap::FromArgMatches as _;
        let matches = Cli::command()
            .try_get_matches_from(["meta-node", "kv", "get", "k", "--addr", "h:1"])
            .unwrap();
        let parsed = Cli::from_arg_matches(&matches).unwrap();
        assert_eq!(parsed.addr, ["h:1"]);
        // And the offline commands still parse, help included.
        let serve = [
            "meta-node",
            "serve",
            "--engine",
            "mem",
            "--listen",
            "127.0.0.1:1",
        ];
        let matches = Cli::command().try_get_matches_from(serve).unwrap();
        assert!(matches!(
            Cli::from_arg_matches(&matches).unwrap().command,
            Command::Serve(_)
        ));
        let help = Cli::command()
            .try_get_matches_from(["meta-node", "serve", "--help"])
            .unwrap_err();
        assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp, "{help}");
    }

    #[test]
    fn serve_help_states_the_real_defaults() {
        let mut cli = Cli::command();
        let help = cli
            .find_subcommand_mut("serve")
            .expect("serve")
            .render_long_help()
            .to_string();
        let c = Config::default();
        for default in [
            c.node_id.to_string(),
            c.listen.clone(),
            c.raft_listen.clone(),
            c.engine.to_string(),
            c.bootstrap.to_string(),
            c.raft.snapshot_every.to_string(),
            c.limits.idle_timeout_secs.to_string(),
            c.limits.request_timeout_secs.to_string(),
        ] {
            assert!(
                help.contains(&format!("[default: {default}]")),
                "`serve --help` must state the default {default}:\n{help}"
            );
        }
    }

    #[test]
    fn dot_segments_are_refused() {
        assert!(check_path_segments("a/../b").is_err());
        assert!(check_path_segments("./x").is_err());
        assert!(check_path_segments("a/b.c/..d").is_ok());
    }
}
