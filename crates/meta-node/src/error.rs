//! The node's error type.

use std::path::PathBuf;

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
    /// The store holds no cluster, but the data directory belonged to one:
    /// starting would serve an empty (or another engine's) store as if it
    /// were this node's data.
    #[error(
        "the store in {} holds no data, but this data directory belongs to cluster {cluster}: \
         refusing to start empty over lost data (was the store damaged or removed, or is --engine \
         not the engine this node ran on? `meta-node verify --store ENGINE:DIR` checks a store, \
         `meta-node migrate` converts one; to really start over, remove identity.toml)",
        store.display()
    )]
    EmptyOverData {
        /// The store that is empty.
        store: PathBuf,
        /// The cluster the directory belongs to.
        cluster: String,
    },
    /// Raft failed.
    #[error("raft: {0}")]
    Raft(String),
}

impl NodeError {
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
