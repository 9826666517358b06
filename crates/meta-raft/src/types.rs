//! The openraft type configuration. openraft types stay behind this crate:
//! the aliases below are what the rest of the project names.

use std::io::Cursor;

use crate::model::{Envelope, Response};

openraft::declare_raft_types!(
    /// The Raft type configuration of the metadata store.
    pub TypeConfig:
        D = Envelope,
        R = Response,
        NodeId = u64,
        Node = openraft::BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
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
pub type StoredMembership = openraft::StoredMembership<u64, openraft::BasicNode>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<u64, openraft::BasicNode>;
/// A snapshot.
pub type Snapshot = openraft::Snapshot<TypeConfig>;
