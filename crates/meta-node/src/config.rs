//! Node configuration: defaults, then a TOML file, then environment
//! variables and flags (`serve --help` lists them; each flag has a
//! `META_NODE_*` variable). Every problem names the field.
//!
//! ```toml
//! node_id = 1
//! listen = "127.0.0.1:7700"        # client API (HTTP)
//! raft_listen = "127.0.0.1:7701"   # peer transport (TCP)
//! data_dir = "./meta-data"
//! engine = "lmdb"                  # lmdb | fjall | mem
//! # log_engine = "fjall"           # optional: a different engine for the Raft log
//! # state_engine = "lmdb"          # optional: a different engine for the state machine
//! bootstrap = true                 # initialise a single-node cluster on first start
//! insecure = false                # true: no client auth, plaintext peers (experiments only)
//!
//! [tls]                            # all three, or none (see docs/security.md)
//! # ca = "certs/ca.pem"            # the cluster CA: peers must present a certificate from it
//! # cert = "certs/node-1/node.pem" # this node's certificate: HTTPS on `listen`, mTLS to peers
//! # key = "certs/node-1/node.key"
//!
//! [limits]
//! max_client_connections = 1024   # fewer if the file-descriptor limit is low
//! max_peer_connections = 256
//! max_connections_per_address = 128 # from one IP address, on each port
//! header_timeout_secs = 10         # a request's headers must arrive within this
//! body_timeout_secs = 30           # and its body within this after them
//! idle_timeout_secs = 60           # a connection moving no byte this long is closed
//! request_timeout_secs = 5         # a request waiting this long for Raft gets a 503
//! max_value_bytes = 1048576        # the largest value a client may write (at most 16 MiB)
//! max_page_bytes = 4194304         # one page of a listing holds at most this many bytes
//! quota_bytes = 2147483648         # over it, the space alarm: new data refused (507)
//! min_free_disk_bytes = 268435456  # less free disk than this raises it too
//!
//! [lmdb]
//! map_size_mib = 16384
//!
//! [fjall]
//! cache_size_mib = 64
//!
//! [raft]
//! heartbeat_ms = 100
//! election_timeout_min_ms = 300
//! election_timeout_max_ms = 600
//! snapshot_every = 10000
//!
//! [watch]
//! history_revisions = 10000        # a watch may resume this many revisions back
//! history_bytes = 1073741824       # and the history holds about this much at most
//! progress_ms = 5000               # an idle watch gets a progress event this often
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::NodeError;

/// The whole configuration of a node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// This node's Raft id (at least 1).
    pub node_id: u64,
    /// Address the HTTP client API binds.
    pub listen: String,
    /// Address the peer transport binds.
    pub raft_listen: String,
    /// Address clients are told to use (default: `listen`).
    pub advertise: Option<String>,
    /// Address peers are told to use (default: `raft_listen`).
    pub advertise_raft: Option<String>,
    /// Where the stores live.
    pub data_dir: PathBuf,
    /// Engine of both stores, unless overridden below.
    pub engine: Engine,
    /// Engine of the Raft log store (default: `engine`).
    pub log_engine: Option<Engine>,
    /// Engine of the state machine store (default: `engine`).
    pub state_engine: Option<Engine>,
    /// Initialise a single-node cluster on first start. Turn it off for
    /// nodes that will join an existing cluster.
    pub bootstrap: bool,
    /// Turns security off: no client authentication, plaintext peers,
    /// non-loopback addresses without TLS. For local experiments only;
    /// the node logs a warning at start.
    pub insecure: bool,
    /// Certificates: HTTPS for clients and mTLS for peers.
    pub tls: TlsSection,
    /// Connection budgets and the idle deadline.
    pub limits: LimitsSection,
    /// LMDB options.
    pub lmdb: LmdbSection,
    /// fjall options.
    pub fjall: FjallSection,
    /// Raft timing and snapshots.
    pub raft: RaftSection,
    /// Watch history and progress events.
    pub watch: WatchSection,
}

/// `[tls]`: all three files, or none. With them, the client API serves
/// HTTPS and peers use them for mutual TLS. Without them, the node makes
/// its own CA and certificate in `<data_dir>/tls/` for its peer port, and
/// serves plain HTTP — which is refused on a non-loopback address.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSection {
    /// The cluster CA's certificate (PEM).
    pub ca: Option<PathBuf>,
    /// This node's certificate (PEM), signed by the CA.
    pub cert: Option<PathBuf>,
    /// This node's private key (PEM).
    pub key: Option<PathBuf>,
}

/// `[limits]`: what one connection, or many, may hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsSection {
    /// Open client API connections at most (fewer if the file-descriptor
    /// limit is lower: see `docs/operations.md`); more are closed at once.
    pub max_client_connections: usize,
    /// Open incoming peer connections at most.
    pub max_peer_connections: usize,
    /// Open connections from one IP address at most (on each port): one
    /// host cannot take every slot.
    pub max_connections_per_address: usize,
    /// A client must send a request's headers within this many seconds
    /// of starting it (or of the connection's previous answer): a
    /// trickling client (slowloris) is cut off well before the idle
    /// deadline.
    pub header_timeout_secs: u64,
    /// A request's body must arrive whole within this many seconds of its
    /// headers (`408 request_timeout` otherwise).
    pub body_timeout_secs: u64,
    /// A connection that moves no byte for this long is closed (clients
    /// and peers; peers' heartbeats keep theirs busy).
    pub idle_timeout_secs: u64,
    /// A request that waits this long for Raft (a commit, a read index) is
    /// answered `503` (`outcome_unknown` for a write, `unavailable` for a
    /// read) instead of hanging.
    pub request_timeout_secs: u64,
    /// The largest value a client may write (a key's value, a config
    /// entry), in bytes: a larger body is refused `413` before more of it
    /// is read. Request bodies are capped at twice this plus 64 KiB (a
    /// compare-and-swap carries two values; a shard map is one body).
    pub max_value_bytes: usize,
    /// One page of a listing holds at most this many bytes of keys and
    /// values (its first item always comes, whatever its size).
    pub max_page_bytes: usize,
    /// The storage quota: once the data (keys and values, counted the same
    /// on every node and engine) is larger, the leader raises the
    /// replicated space alarm: writes that add data get `507
    /// quota_exceeded` until it is back under 90% of this. The leader's
    /// setting applies: give every node the same.
    pub quota_bytes: u64,
    /// A node whose data directory's filesystem has fewer free bytes raises
    /// the same alarm (for its own disk), cleared once 10% above again.
    pub min_free_disk_bytes: u64,
}

/// The most `limits.max_value_bytes` may be: what fits in one Raft command
/// with its key.
pub const MAX_VALUE_BYTES_CEILING: usize = meta_raft::MAX_COMMAND_LEN - 4096;

impl LimitsSection {
    /// The largest request body accepted.
    pub fn max_request_bytes(&self) -> usize {
        self.max_value_bytes
            .saturating_mul(2)
            .saturating_add(64 << 10)
            .min(meta_raft::MAX_COMMAND_LEN)
    }
}

impl Default for LimitsSection {
    fn default() -> Self {
        LimitsSection {
            max_client_connections: 1024,
            max_peer_connections: 256,
            max_connections_per_address: 128,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            idle_timeout_secs: 60,
            request_timeout_secs: 5,
            max_value_bytes: 1 << 20,
            max_page_bytes: 4 << 20,
            quota_bytes: 2 << 30,
            min_free_disk_bytes: 256 << 20,
        }
    }
}

/// `[lmdb]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LmdbSection {
    /// Largest size the database may grow to, in MiB.
    pub map_size_mib: u64,
}

/// `[fjall]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FjallSection {
    /// Block cache size, in MiB.
    pub cache_size_mib: u64,
}

/// `[raft]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RaftSection {
    /// Leader heartbeat interval.
    pub heartbeat_ms: u64,
    /// Lower bound of the election timeout.
    pub election_timeout_min_ms: u64,
    /// Upper bound of the election timeout.
    pub election_timeout_max_ms: u64,
    /// Build a snapshot (and purge the log it covers) every this many
    /// applied entries.
    pub snapshot_every: u64,
}

/// `[watch]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WatchSection {
    /// This node keeps the changes of this many revisions: a watch may
    /// start (or resume) that far back; older is `410 compacted`.
    pub history_revisions: u64,
    /// A watch that had nothing to report for this long gets a `progress`
    /// event with the revision it is up to date with (at least every half
    /// `limits.idle_timeout_secs`, which would close an idle connection).
    pub progress_ms: u64,
    /// This node keeps about this many bytes of changes (and the records
    /// they replaced); the oldest revisions go first.
    pub history_bytes: u64,
}

impl Default for WatchSection {
    fn default() -> Self {
        WatchSection {
            history_revisions: meta_raft::DEFAULT_HISTORY_REVISIONS,
            progress_ms: 5000,
            history_bytes: meta_raft::DEFAULT_HISTORY_BYTES,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_id: 1,
            listen: "127.0.0.1:7700".into(),
            raft_listen: "127.0.0.1:7701".into(),
            advertise: None,
            advertise_raft: None,
            data_dir: PathBuf::from("./meta-data"),
            engine: Engine::Lmdb,
            log_engine: None,
            state_engine: None,
            bootstrap: true,
            insecure: false,
            tls: TlsSection::default(),
            limits: LimitsSection::default(),
            lmdb: LmdbSection::default(),
            fjall: FjallSection::default(),
            raft: RaftSection::default(),
            watch: WatchSection::default(),
        }
    }
}

impl Default for LmdbSection {
    fn default() -> Self {
        LmdbSection {
            map_size_mib: 16 * 1024,
        }
    }
}

impl Default for FjallSection {
    fn default() -> Self {
        FjallSection { cache_size_mib: 64 }
    }
}

impl Default for RaftSection {
    fn default() -> Self {
        RaftSection {
            heartbeat_ms: 100,
            election_timeout_min_ms: 300,
            election_timeout_max_ms: 600,
            snapshot_every: 10_000,
        }
    }
}

/// Engine options, as the engines take them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EngineOptions {
    /// LMDB map size, MiB.
    pub lmdb_map_size_mib: u64,
    /// fjall cache, MiB.
    pub fjall_cache_size_mib: u64,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Config::default().engine_options()
    }
}

/// Whether `addr` is `host:port` as nodes advertise themselves: no scheme,
/// a host, a port that is not 0.
pub fn is_host_port(addr: &str) -> bool {
    !addr.contains("://")
        && addr.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0)
        })
}

impl Config {
    /// Reads a TOML file over the defaults.
    pub fn from_file(path: &Path) -> Result<Config, NodeError> {
        let text = std::fs::read_to_string(path).map_err(|e| NodeError::ConfigFile {
            path: path.to_path_buf(),
            problem: e.to_string(),
        })?;
        Config::from_toml(&text).map_err(|problem| NodeError::ConfigFile {
            path: path.to_path_buf(),
            problem,
        })
    }

    /// Parses TOML over the defaults; the error names the field and line.
    pub fn from_toml(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())
    }

    /// The engine of the Raft log store.
    pub fn log_engine(&self) -> Engine {
        self.log_engine.unwrap_or(self.engine)
    }

    /// The engine of the state machine store.
    pub fn state_engine(&self) -> Engine {
        self.state_engine.unwrap_or(self.engine)
    }

    /// The address clients are told to use.
    pub fn advertised_api(&self) -> &str {
        self.advertise.as_deref().unwrap_or(&self.listen)
    }

    /// The address peers are told to use.
    pub fn advertised_raft(&self) -> &str {
        self.advertise_raft.as_deref().unwrap_or(&self.raft_listen)
    }

    /// The configured certificate files, if `[tls]` is set.
    pub fn tls_files(&self) -> Option<crate::tls::TlsFiles> {
        match (&self.tls.ca, &self.tls.cert, &self.tls.key) {
            (Some(ca), Some(cert), Some(key)) => Some(crate::tls::TlsFiles {
                ca: ca.clone(),
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        }
    }

    /// The engine options.
    pub fn engine_options(&self) -> EngineOptions {
        EngineOptions {
            lmdb_map_size_mib: self.lmdb.map_size_mib,
            fjall_cache_size_mib: self.fjall.cache_size_mib,
        }
    }

    /// Where the store(s) live: one shared store `<data_dir>/<engine>` when
    /// log and state use the same engine, else `<data_dir>/log-<engine>` and
    /// `<data_dir>/state-<engine>`.
    pub fn store_dirs(&self) -> (PathBuf, PathBuf) {
        self.engines().dirs(&self.data_dir)
    }

    /// The engines of the log and the state machine.
    pub fn engines(&self) -> crate::identity::Engines {
        crate::identity::Engines {
            log: self.log_engine(),
            state: self.state_engine(),
        }
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), NodeError> {
        if self.node_id == 0 {
            return Err(NodeError::config("node_id", "must be at least 1"));
        }
        for (field, addr) in [("listen", &self.listen), ("raft_listen", &self.raft_listen)] {
            addr.parse::<SocketAddr>().map_err(|_| {
                NodeError::config(field, format!("`{addr}` is not an IP socket address (expected host:port, e.g. 127.0.0.1:7700)"))
            })?;
        }
        let valid = is_host_port;
        for (field, addr) in [
            ("advertise", &self.advertise),
            ("advertise_raft", &self.advertise_raft),
        ] {
            if let Some(addr) = addr.as_deref().filter(|a| !valid(a)) {
                return Err(NodeError::config(
                    field,
                    format!("`{addr}` is not host:port (no scheme, port not 0)"),
                ));
            }
        }
        // Peers and clients are told the advertised addresses; a wildcard or
        // port 0 there would send them to themselves.
        for (field, listen, advertised) in [
            ("advertise", &self.listen, &self.advertise),
            ("advertise_raft", &self.raft_listen, &self.advertise_raft),
        ] {
            let bound: Option<SocketAddr> = listen.parse().ok();
            if advertised.is_none()
                && bound.is_some_and(|a| a.ip().is_unspecified() || a.port() == 0)
            {
                return Err(NodeError::config(
                    field,
                    format!(
                        "required when listening on `{listen}` (a wildcard address or port 0 cannot be given to peers and clients)"
                    ),
                ));
            }
        }
        let set = [&self.tls.ca, &self.tls.cert, &self.tls.key];
        if set.iter().any(|f| f.is_some()) && set.iter().any(|f| f.is_none()) {
            let missing = ["tls.ca", "tls.cert", "tls.key"]
                .into_iter()
                .zip(set)
                .find(|(_, f)| f.is_none())
                .map_or("tls", |(name, _)| name);
            return Err(NodeError::config(
                missing,
                "required with the other [tls] files (ca, cert and key go together)",
            ));
        }
        // Security by default: without certificates a node serves only its
        // own machine.
        if !self.insecure && self.tls_files().is_none() {
            for (field, addr, why) in [
                (
                    "listen",
                    &self.listen,
                    "clients would send tokens in plaintext",
                ),
                (
                    "raft_listen",
                    &self.raft_listen,
                    "peers on other machines need certificates from one cluster CA",
                ),
            ] {
                let loopback = addr
                    .parse::<SocketAddr>()
                    .is_ok_and(|a| a.ip().is_loopback());
                if !loopback {
                    return Err(NodeError::config(
                        field,
                        format!(
                            "`{addr}` is not a loopback address and no [tls] is configured ({why}): \
                             make certificates with `meta-node certs` and set tls.ca, tls.cert and tls.key \
                             (docs/security.md), or pass --insecure for an experiment"
                        ),
                    ));
                }
            }
        }
        // Port 0 (any free port) on both is fine; anything else must differ.
        if self.listen == self.raft_listen && !self.listen.ends_with(":0") {
            return Err(NodeError::config(
                "raft_listen",
                "must differ from `listen`",
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(NodeError::config("data_dir", "must not be empty"));
        }
        for (field, engine) in [
            ("engine", self.engine),
            ("log_engine", self.log_engine()),
            ("state_engine", self.state_engine()),
        ] {
            if !engine.available() {
                return Err(NodeError::config(
                    field,
                    format!(
                        "engine `{engine}` is not available in this build: rebuild meta-node with the `{engine}` feature"
                    ),
                ));
            }
        }
        if self.limits.idle_timeout_secs == 0 {
            return Err(NodeError::config(
                "limits.idle_timeout_secs",
                "must be at least 1",
            ));
        }
        if self.limits.request_timeout_secs == 0 {
            return Err(NodeError::config(
                "limits.request_timeout_secs",
                "must be at least 1",
            ));
        }
        // A request waiting on Raft moves no byte: its connection must
        // outlive its deadline, or the client gets a reset, not the 503.
        if self.limits.idle_timeout_secs <= self.limits.request_timeout_secs {
            return Err(NodeError::config(
                "limits.idle_timeout_secs",
                "must be greater than limits.request_timeout_secs",
            ));
        }
        if self.limits.max_connections_per_address == 0
            || self.limits.header_timeout_secs == 0
            || self.limits.body_timeout_secs == 0
        {
            return Err(NodeError::config(
                "limits",
                "max_connections_per_address, header_timeout_secs and body_timeout_secs must be \
                 at least 1",
            ));
        }
        if self.limits.max_client_connections == 0 || self.limits.max_peer_connections == 0 {
            return Err(NodeError::config(
                "limits",
                "max_client_connections and max_peer_connections must be at least 1",
            ));
        }
        if self.limits.max_value_bytes == 0 || self.limits.max_value_bytes > MAX_VALUE_BYTES_CEILING
        {
            return Err(NodeError::config(
                "limits.max_value_bytes",
                format!(
                    "must be between 1 and {MAX_VALUE_BYTES_CEILING} (16 MiB less room for the key)"
                ),
            ));
        }
        if self.limits.quota_bytes == 0 {
            return Err(NodeError::config(
                "limits.quota_bytes",
                "must be at least 1",
            ));
        }
        if self.limits.max_page_bytes < 1024 {
            return Err(NodeError::config(
                "limits.max_page_bytes",
                "must be at least 1024",
            ));
        }
        if self.lmdb.map_size_mib == 0 {
            return Err(NodeError::config("lmdb.map_size_mib", "must be at least 1"));
        }
        let raft = &self.raft;
        if raft.heartbeat_ms == 0 {
            return Err(NodeError::config("raft.heartbeat_ms", "must be at least 1"));
        }
        if raft.election_timeout_min_ms <= raft.heartbeat_ms {
            return Err(NodeError::config(
                "raft.election_timeout_min_ms",
                "must be greater than raft.heartbeat_ms",
            ));
        }
        if raft.election_timeout_max_ms <= raft.election_timeout_min_ms {
            return Err(NodeError::config(
                "raft.election_timeout_max_ms",
                "must be greater than raft.election_timeout_min_ms",
            ));
        }
        if raft.snapshot_every == 0 {
            return Err(NodeError::config(
                "raft.snapshot_every",
                "must be at least 1",
            ));
        }
        if self.watch.history_revisions == 0 {
            return Err(NodeError::config(
                "watch.history_revisions",
                "must be at least 1",
            ));
        }
        if self.watch.progress_ms == 0 {
            return Err(NodeError::config("watch.progress_ms", "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(feature = "lmdb", feature = "fjall"))]
    #[test]
    fn defaults_are_valid_and_a_file_overrides_them() {
        Config::default().validate().unwrap();
        let c = Config::from_toml("node_id = 3\nengine = \"fjall\"\n[raft]\nsnapshot_every = 5")
            .unwrap();
        assert_eq!(
            (c.node_id, c.engine, c.raft.snapshot_every),
            (3, Engine::Fjall, 5)
        );
        assert_eq!(c.raft.heartbeat_ms, 100);
        c.validate().unwrap();
    }

    #[test]
    fn bad_config_names_the_field() {
        let err = Config::from_toml("engin = \"lmdb\"").unwrap_err();
        assert!(err.contains("engin"), "{err}");
        let err = Config::from_toml("engine = \"rocks\"").unwrap_err();
        assert!(err.contains("rocks") && err.contains("engine"), "{err}");
        let err = Config::from_toml("node_id = \"one\"").unwrap_err();
        assert!(err.contains("node_id"), "{err}");
        let c = Config {
            listen: "nowhere".into(),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("`listen`"));
        let c = Config {
            node_id: 0,
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("`node_id`"));
        let c = Config {
            listen: "0.0.0.0:7700".into(),
            ..Config::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("`advertise`: required")
        );
        let c = Config {
            listen: "0.0.0.0:7700".into(),
            advertise: Some("http://10.0.0.1:7700".into()),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("no scheme"));
        let c = Config {
            listen: "0.0.0.0:7700".into(),
            advertise: Some("10.0.0.1:7700".into()),
            ..Config::default()
        };
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("`listen`") && err.contains("not a loopback"),
            "{err}"
        );
        let c = Config {
            insecure: true,
            ..c
        };
        c.validate().unwrap();
        let mut c = Config::default();
        c.tls.cert = Some("n.pem".into());
        assert!(c.validate().unwrap_err().to_string().contains("`tls.ca`"));
        let mut c = Config::default();
        c.raft.election_timeout_max_ms = 1;
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("raft.election_timeout_max_ms")
        );
    }

    #[test]
    fn split_engines_get_their_own_dirs() {
        let mut c = Config::default();
        assert_eq!(c.store_dirs().0, c.store_dirs().1);
        c.log_engine = Some(Engine::Fjall);
        let (log, state) = c.store_dirs();
        assert!(log.ends_with("log-fjall") && state.ends_with("state-lmdb"));
    }
}
