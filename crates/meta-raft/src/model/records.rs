//! The records the state machine keeps: cluster nodes, the shard map, API
//! keys, user keys with their revisions, leases, alarms, and the changes a
//! watch reports.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::*;

/// A Raft node id (also the id of a node in the cluster map).
pub type NodeId = u64;

/// Whether a node of the cluster map takes work.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeState {
    /// Serving.
    Active,
    /// Being emptied before removal.
    Draining,
    /// Known to be unavailable.
    Down,
}

/// A node of the cluster map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNode {
    /// Node id.
    pub id: NodeId,
    /// Where it can be reached (`host:port`).
    pub address: String,
    /// Its state.
    pub state: NodeState,
    /// Free-form labels (zone, rack, ...).
    pub labels: BTreeMap<String, String>,
}

/// A shard's placement: the nodes holding it, the first being its primary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardAssignment {
    /// Replica nodes, primary first.
    pub replicas: Vec<NodeId>,
}

/// The versioned shard map. Every change names the version it replaces and
/// produces the next one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMap {
    /// Version; 0 before the first write.
    pub version: u64,
    /// Shard id -> placement.
    pub shards: BTreeMap<u64, ShardAssignment>,
}

/// An API key's id (public, unlike its secret).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ApiKeyId(pub String);

impl fmt::Display for ApiKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stored API key: only the SHA-256 of its secret, never the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// Id.
    pub id: ApiKeyId,
    /// Human-readable name.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<String>,
    /// Creation time, Unix milliseconds (chosen by the proposer).
    pub created_at_ms: u64,
    /// Expiry, Unix milliseconds; `None` never expires.
    pub expires_at_ms: Option<u64>,
    /// When it was revoked, if it was.
    pub revoked_at_ms: Option<u64>,
    /// SHA-256 of the secret.
    pub secret_hash: [u8; 32],
}

/// A user key's value and its revisions (etcd's `KeyValue`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvEntry {
    /// The store revision that created the key (since it last did not
    /// exist).
    pub create_revision: u64,
    /// The store revision of its last change.
    pub mod_revision: u64,
    /// Writes since its creation: 1 when created.
    pub version: u64,
    /// The value.
    #[serde(with = "crate::codec::bytes")]
    pub value: Vec<u8>,
}

/// A lease's id: the revision it was granted at.
pub type LeaseId = u64;

/// The longest lease, in seconds (one year).
pub const MAX_LEASE_TTL_SECS: u64 = 365 * 24 * 3600;

/// The most user keys one lease may hold: revoking it deletes them all at
/// one revision, within the budget of one transaction.
pub const MAX_LEASE_KEYS: usize = MAX_TXN_DELETES;

/// The most live leases: the leader looks at each of them several times a
/// second.
pub const MAX_LEASES: usize = 100_000;

/// The most bytes of previous values one revision's history keeps: past
/// it (a range delete of many large values), the changes are reported
/// without their previous value ([`Event::prev_omitted`]), so neither apply
/// nor the history holds a second copy of everything deleted.
pub const MAX_PREV_BYTES_PER_REVISION: usize = 16 << 20;

/// A lease: what is bound to it ends with it. Its expiry is not stored:
/// the leader keeps the deadlines and proposes [`Command::LeaseExpire`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Id (the revision it was granted at).
    pub id: LeaseId,
    /// Time to live without a keepalive, in seconds.
    pub ttl_secs: u64,
    /// Who granted it (an API key id; empty on an insecure node).
    pub owner: String,
}

/// One record as a change of the history reports it (etcd's watch
/// events): a user key, a cluster node, the shard map or a config entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// A user key: its new entry, or `None` once deleted.
    Kv {
        /// The key.
        #[serde(with = "crate::codec::bytes")]
        key: Vec<u8>,
        /// The entry after the change.
        entry: Option<KvEntry>,
    },
    /// A node of the cluster map: `None` once removed.
    Node {
        /// Its id.
        id: NodeId,
        /// The node after the change.
        node: Option<ClusterNode>,
    },
    /// The shard map, as replaced.
    ShardMap(ShardMap),
    /// A config entry: `None` once deleted.
    Config {
        /// Its name.
        name: String,
        /// The value after the change.
        value: Option<String>,
    },
}

impl Change {
    /// Whether the record exists after the change (`false`: a delete).
    pub fn is_put(&self) -> bool {
        match self {
            Change::Kv { entry, .. } => entry.is_some(),
            Change::Node { node, .. } => node.is_some(),
            Change::ShardMap(_) => true,
            Change::Config { value, .. } => value.is_some(),
        }
    }

    /// The area the record belongs to and its name there (a node's decimal
    /// id, `map` for the shard map), which watches filter on.
    pub fn address(&self) -> (WatchArea, std::borrow::Cow<'_, [u8]>) {
        use std::borrow::Cow;
        match self {
            Change::Kv { key, .. } => (WatchArea::Kv, Cow::Borrowed(key)),
            Change::Node { id, .. } => {
                (WatchArea::Cluster, Cow::Owned(id.to_string().into_bytes()))
            }
            Change::ShardMap(_) => (WatchArea::Shards, Cow::Borrowed(b"map")),
            Change::Config { name, .. } => (WatchArea::Config, Cow::Borrowed(name.as_bytes())),
        }
    }

    /// Roughly how many bytes it holds (to bound buffers).
    pub fn size(&self) -> usize {
        64 + match self {
            Change::Kv { key, entry } => key.len() + entry.as_ref().map_or(0, |e| e.value.len()),
            Change::Node { node, .. } => node.as_ref().map_or(0, |n| {
                n.address.len()
                    + n.labels
                        .iter()
                        .map(|(k, v)| k.len() + v.len())
                        .sum::<usize>()
            }),
            Change::ShardMap(map) => map.shards.values().map(|a| 16 + 8 * a.replicas.len()).sum(),
            Change::Config { name, value } => name.len() + value.as_ref().map_or(0, String::len),
        }
    }
}

/// What a watch follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WatchArea {
    /// User keys.
    Kv,
    /// The cluster map.
    Cluster,
    /// The shard map.
    Shards,
    /// Config entries.
    Config,
}

/// One change, at the revision that made it, with the record as it was
/// before (`None`: it did not exist).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The store revision of the change.
    pub revision: u64,
    /// The record after it.
    pub change: Change,
    /// The record before it.
    pub prev: Option<Change>,
    /// The record before it is not kept: its revision replaced more than
    /// [`MAX_PREV_BYTES_PER_REVISION`] of previous values.
    pub prev_omitted: bool,
}

/// The longest [`Alarm::detail`], in bytes: a longer one is rejected.
pub const MAX_ALARM_DETAIL: usize = 512;

/// Why the cluster stopped taking new data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AlarmKind {
    /// The data outgrew the storage quota (`limits.quota_bytes`).
    Quota,
    /// A node's disk has less free space than its watermark.
    Disk,
}

/// A replicated space alarm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alarm {
    /// What raised it.
    pub kind: AlarmKind,
    /// The node that raised it (whose disk, for [`AlarmKind::Disk`]).
    pub node: NodeId,
    /// When, Unix milliseconds.
    pub raised_at_ms: u64,
    /// What was measured, in words.
    pub detail: String,
}
