//! The node's error type.

use std::path::PathBuf;

/// The exit code of `meta-node serve` when it refuses its data directory
/// (see [`NodeError::refuses_data`]); a supervisor should not restart it
/// (systemd: `RestartPreventExitStatus=3`).
pub const EXIT_DATA_REFUSED: u8 = 3;

/// What can stop a node or an offline tool.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A configuration field is invalid.
    #[error("invalid configuration: `{field}`: {problem}")]
    Config {
        /// The field, as spelled in the config file.
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The config file could not be read or parsed.
    #[error("config file {path}: {problem}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What went wrong (the parser's message names the field and line).
        problem: String,
    },
    /// The engine asked for was not compiled into this binary.
    #[error(
        "engine `{engine}` is not available in this build: rebuild meta-node with the `{engine}` feature (cargo build -p meta-node --features {engine})"
    )]
    EngineNotCompiled {
        /// The engine.
        engine: &'static str,
    },
    /// Another process holds the data directory.
    #[error("data directory {} is locked by another process (is another meta-node running on it?)", path.display())]
    DataDirLocked {
        /// The directory.
        path: PathBuf,
    },
    /// A store operation failed.
    #[error("{context}: {source}")]
    Store {
        /// What was being done.
        context: String,
        /// The store's error.
        source: meta_store_api::Error,
    },
    /// An I/O error (binding a port, reading a file).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// A certificate, key or TLS setting is unusable.
    #[error("TLS: {what}: {problem}")]
    Tls {
        /// The file or setting.
        what: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The data directory belongs to another node.
    #[error(
        "this data directory ({}) belongs to node {owner}, not node {asked}; start it with \
         --node-id {owner} or use another --data-dir",
        data_dir.display()
    )]
    WrongNode {
        /// The directory.
        data_dir: PathBuf,
        /// The node it belongs to.
        owner: u64,
        /// The node id asked for.
        asked: u64,
    },
    /// The store holds no cluster, but the data directory belonged to one:
    /// starting would serve an empty (or another engine's) store as if it
    /// were this node's data.
    #[error(
        "the store in {} holds no data, but {why}: refusing to start empty over lost data (was \
         the store damaged or removed, or is --engine not the engine this node ran on? \
         `meta-node verify --store ENGINE:DIR` checks a store, `meta-node migrate` converts one; \
         to really start over, remove identity.toml and the store directory)",
        store.display()
    )]
    EmptyOverData {
        /// The store that is empty.
        store: PathBuf,
        /// Why it should not be: the cluster the directory belongs to, or
        /// a store found without an identity file.
        why: String,
    },
    /// The data directory's store held data on other engines than the
    /// ones configured.
    #[error(
        "this data directory's data is on {recorded} (identity.toml; in {}), not {configured}: \
         start with {}, or stop the node and convert the store with `meta-node migrate --from \
         ENGINE:DIR --to ENGINE:DIR` (which updates identity.toml)",
        list(stores),
        recorded.flags()
    )]
    EngineMismatch {
        /// The engines recorded in `identity.toml`.
        recorded: crate::identity::Engines,
        /// Their store directories.
        stores: Vec<PathBuf>,
        /// The engines asked for.
        configured: crate::identity::Engines,
    },
    /// The data directory holds another engine's store and none of the
    /// configured engines'.
    #[error(
        "this data directory holds another engine's store ({}) and none of {configured}: \
         start with the engine the node ran on, or stop it and convert the store with \
         `meta-node migrate --from ENGINE:DIR --to ENGINE:DIR`",
        list(stores)
    )]
    OtherEngineStore {
        /// The other engines' store directories.
        stores: Vec<PathBuf>,
        /// The engines asked for.
        configured: crate::identity::Engines,
    },
    /// Raft, or a task running for it, failed.
    #[error("{what}")]
    Raft {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl NodeError {
    /// A failure of `what`, keeping its cause.
    pub fn raft(
        what: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        NodeError::Raft {
            what: what.into(),
            source: source.into(),
        }
    }
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl NodeError {
    /// Whether this error refuses the data directory as it is (another
    /// node's, another engine's, damaged, or empty over lost data):
    /// restarting will not help until an operator acts. `meta-node serve`
    /// exits with [`EXIT_DATA_REFUSED`] then.
    pub fn refuses_data(&self) -> bool {
        match self {
            NodeError::EngineMismatch { .. }
            | NodeError::OtherEngineStore { .. }
            | NodeError::EmptyOverData { .. }
            | NodeError::WrongNode { .. } => true,
            NodeError::Store { source, .. } => {
                matches!(source, meta_store_api::Error::Corruption { .. })
            }
            _ => false,
        }
    }

    /// An invalid config field.
    pub fn config(field: impl Into<String>, problem: impl Into<String>) -> Self {
        NodeError::Config {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// An I/O error with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        NodeError::Io {
            context: context.into(),
            source,
        }
    }
}
