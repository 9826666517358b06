//! The openraft type configuration. openraft types stay behind this crate:
//! the aliases below are what the rest of the project names.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::{Envelope, Response};

/// Where a Raft member can be reached: its peer (Raft RPC) address and its
/// client API address. Stored in the membership, so every node knows where
/// to send peers and where to redirect clients.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeAddr {
    /// `host:port` of the peer transport.
    pub raft: String,
    /// `host:port` of the HTTP client API.
    pub api: String,
}

impl NodeAddr {
    /// A node reachable at these addresses.
    pub fn new(raft: impl Into<String>, api: impl Into<String>) -> Self {
        NodeAddr {
            raft: raft.into(),
            api: api.into(),
        }
    }
}

impl fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "raft={} api={}", self.raft, self.api)
    }
}

openraft::declare_raft_types!(
    /// The Raft type configuration of the metadata store.
    pub TypeConfig:
        D = Envelope,
        R = Response,
        NodeId = u64,
        Node = NodeAddr,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = tokio::fs::File,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A Raft node handle of this store.
pub type Raft = openraft::Raft<TypeConfig>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id.
pub type LogId = openraft::LogId<u64>;
/// A vote.
pub type Vote = openraft::Vote<u64>;
/// A storage error as openraft sees it.
pub type StorageError = openraft::StorageError<u64>;
/// The membership stored with the applied state.
pub type StoredMembership = openraft::StoredMembership<u64, NodeAddr>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<u64, NodeAddr>;
/// A snapshot.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
