//! The business model of the metadata store: cluster map, shard map, API
//! keys, config and user key-values, and the commands that change them.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

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

/// A change to the metadata. Time and random ids are chosen by the
/// proposer and carried here, never computed during apply, so every replica
/// applies exactly the same thing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Adds or replaces a node of the cluster map.
    UpsertNode(ClusterNode),
    /// Removes a node; rejected while the shard map references it.
    RemoveNode {
        /// The node.
        id: NodeId,
    },
    /// Replaces the shard map if its version is still `expected_version`;
    /// every referenced node must be in the cluster map.
    SetShardMap {
        /// The version this change replaces.
        expected_version: u64,
        /// The new shards.
        shards: BTreeMap<u64, ShardAssignment>,
    },
    /// Creates an API key (the record carries the secret's hash only).
    CreateApiKey(ApiKeyRecord),
    /// Revokes an API key.
    RevokeApiKey {
        /// The key.
        id: ApiKeyId,
        /// When, Unix milliseconds.
        at_ms: u64,
    },
    /// Sets a config entry.
    SetConfig {
        /// Entry name.
        name: String,
        /// Entry value.
        value: String,
    },
    /// Deletes a config entry.
    DeleteConfig {
        /// Entry name.
        name: String,
    },
    /// Sets a user key.
    Put {
        /// Key (within the user namespace).
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
    /// Deletes a user key.
    Delete {
        /// Key.
        key: Vec<u8>,
    },
    /// Sets (or deletes, for `new: None`) a user key if its current value is
    /// `expected` (`None`: absent).
    CompareAndSwap {
        /// Key.
        key: Vec<u8>,
        /// The value it must have now.
        expected: Option<Vec<u8>>,
        /// The value it gets.
        new: Option<Vec<u8>>,
    },
    /// Several proposals sharing one log entry (group commit, see
    /// [`Proposer`](crate::Proposer)). Each is applied in order exactly as
    /// if it had its own entry; a rejected one does not affect the others.
    /// Batches do not nest.
    Batch(Vec<Command>),
    /// Raises a space alarm (replaces one of the same kind and node):
    /// while any is raised, commands that add data are rejected with
    /// [`Rejection::NoSpace`] on every replica; deletes go on.
    RaiseAlarm(Alarm),
    /// Clears the alarms of `kind` (`None`: all) raised for `node` (`None`:
    /// any node).
    ClearAlarm {
        /// The kind, or every kind.
        kind: Option<AlarmKind>,
        /// The node, or every node.
        node: Option<NodeId>,
    },
    /// A transaction over user keys: if every compare holds, the `success`
    /// ops run, else the `failure` ops; atomically, at one revision.
    Txn(Txn),
    /// Grants a lease of `ttl_secs` seconds; its id is the revision it is
    /// granted at ([`Response::LeaseGranted`]).
    LeaseGrant {
        /// Time to live without a keepalive, in seconds
        /// (1..=[`MAX_LEASE_TTL_SECS`]).
        ttl_secs: u64,
        /// Who grants it (an API key id; empty on an insecure node): only
        /// they (or an admin) may keep it alive, bind to it or revoke it.
        owner: String,
    },
    /// Revokes a lease: its keys are deleted and its cluster nodes marked
    /// [`NodeState::Down`], all at one revision. Refused for an unknown
    /// lease.
    LeaseRevoke {
        /// The lease.
        id: LeaseId,
    },
    /// Expires a lease (proposed by the leader when its TTL ran out without
    /// a keepalive): what [`Command::LeaseRevoke`] does, and nothing for a
    /// lease that is already gone.
    LeaseExpire {
        /// The lease.
        id: LeaseId,
    },
    /// Sets a user key bound to a lease (it is deleted with the lease).
    PutLeased {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
        /// The lease; refused if it does not exist.
        lease: LeaseId,
    },
    /// Adds or replaces a node of the cluster map and binds it to a lease:
    /// when the lease ends, the node is marked [`NodeState::Down`] (not
    /// removed: the shard map may still name it).
    UpsertNodeLeased {
        /// The node.
        node: ClusterNode,
        /// The lease; refused if it does not exist.
        lease: LeaseId,
    },
}

impl Command {
    /// Whether the command can add data (refused during a space alarm,
    /// except changes of the cluster and shard maps that do not make them
    /// larger: see the state machine). Deletes, revocations and alarms
    /// themselves can always be applied.
    pub fn adds_data(&self) -> bool {
        matches!(
            self,
            Command::UpsertNode(_)
                | Command::UpsertNodeLeased { .. }
                | Command::LeaseGrant { .. }
                | Command::PutLeased { .. }
                | Command::SetShardMap { .. }
                | Command::CreateApiKey(_)
                | Command::SetConfig { .. }
                | Command::Put { .. }
                | Command::CompareAndSwap { new: Some(_), .. }
        ) || matches!(self, Command::Txn(txn) if txn.puts())
    }
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

/// The most compares of one transaction.
pub const MAX_TXN_COMPARES: usize = 128;
/// The most ops of one branch of a transaction.
pub const MAX_TXN_OPS: usize = 128;
/// The most value bytes the gets of one transaction may return (a single
/// value of the largest size always fits): a transaction reading more is
/// refused whole, so an answer's size is bounded whatever its ops.
pub const MAX_TXN_READ_BYTES: usize = MAX_COMMAND_LEN;
/// The most keys one transaction (or range delete) may delete: one log
/// entry must not stall every replica's apply. A larger range is deleted
/// in parts (by narrower prefixes).
pub const MAX_TXN_DELETES: usize = 100_000;

/// A transaction over user keys (etcd's `Txn`): `compares` decide which
/// branch runs; the branch's ops run in order, each seeing the effect of
/// the ones before it, and all of its changes share one revision.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    /// Conditions, all of which must hold for `success` to run.
    pub compares: Vec<Compare>,
    /// Ops run when every compare holds.
    pub success: Vec<TxnOp>,
    /// Ops run otherwise.
    pub failure: Vec<TxnOp>,
}

impl Txn {
    /// Whether either branch changes anything (a transaction that does not
    /// can be answered from a node's state, without a log entry).
    pub fn writes(&self) -> bool {
        self.success
            .iter()
            .chain(&self.failure)
            .any(|op| !matches!(op, TxnOp::Get { .. }))
    }

    /// Whether either branch writes a value (refused during a space alarm).
    pub fn puts(&self) -> bool {
        self.success
            .iter()
            .chain(&self.failure)
            .any(|op| matches!(op, TxnOp::Put { .. } | TxnOp::PutLeased { .. }))
    }
}

/// One condition of a [`Txn`]: `key`'s `target` compared with `op`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    /// The user key.
    pub key: Vec<u8>,
    /// What of the key is compared, and with what.
    pub target: CompareTarget,
    /// How.
    pub op: CompareOp,
}

/// What a [`Compare`] looks at. An absent key has revisions and version 0;
/// a value compare on an absent key is false whatever the op.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    /// The value (bytes, compared lexicographically).
    Value(Vec<u8>),
    /// The revision of its last change.
    ModRevision(u64),
    /// The revision that created it.
    CreateRevision(u64),
    /// Its writes since creation.
    Version(u64),
    /// Whether it exists (only `=` and `!=`).
    Exists(bool),
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `<` (the key's side is on the left).
    Less,
    /// `>`
    Greater,
}

/// One operation of a [`Txn`] branch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    /// Sets a key.
    Put {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
    },
    /// Deletes a key (if it exists).
    Delete {
        /// Key.
        key: Vec<u8>,
    },
    /// Deletes every key starting with `prefix` (an empty prefix: every
    /// user key).
    DeletePrefix {
        /// The prefix.
        prefix: Vec<u8>,
    },
    /// Reads a key, as of this point of the branch.
    Get {
        /// Key.
        key: Vec<u8>,
    },
    /// Sets a key bound to a lease (refused whole if the lease does not
    /// exist).
    PutLeased {
        /// Key.
        key: Vec<u8>,
        /// Value.
        value: Vec<u8>,
        /// The lease.
        lease: LeaseId,
    },
}

/// The result of one [`TxnOp`], in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOpResult {
    /// The key was set.
    Put,
    /// This many keys were deleted.
    Deleted(u64),
    /// The key as read (`None`: absent).
    Get(Option<KvEntry>),
}

/// What a [`Txn`] did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnResponse {
    /// Whether every compare held (the `success` branch ran).
    pub succeeded: bool,
    /// The store's revision after the transaction (unchanged if it changed
    /// nothing).
    pub revision: u64,
    /// One result per op of the branch that ran.
    pub results: Vec<TxnOpResult>,
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

/// What applying a log entry produced: identical on every replica.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// A Raft-internal entry (blank or membership change).
    #[default]
    Internal,
    /// The command was applied; the store is now at `revision` (unchanged
    /// if the command changed nothing, such as a delete of an absent key).
    Applied {
        /// The store's revision after the command.
        revision: u64,
    },
    /// The shard map was replaced; this is its new version.
    ShardMapVersion(u64),
    /// The command was valid but refused; nothing changed.
    Rejected(Rejection),
    /// One response per command of a [`Command::Batch`], in order.
    Batch(Vec<Response>),
    /// What a [`Command::Txn`] did.
    Txn(TxnResponse),
    /// A lease was granted.
    LeaseGranted {
        /// Its id.
        id: LeaseId,
        /// The store's revision after the grant (equal to the id).
        revision: u64,
    },
}

impl Response {
    /// Whether this is [`Response::Applied`] (at any revision).
    pub fn is_applied(&self) -> bool {
        matches!(self, Response::Applied { .. })
    }
}

/// Why a command was refused. Deterministic: every replica refuses the same
/// command for the same reason.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    /// The shard map changed since the proposer read it.
    #[error("stale shard map version {expected} (current is {current})")]
    StaleShardMapVersion {
        /// The version named by the command.
        expected: u64,
        /// The current version.
        current: u64,
    },
    /// A node id not in the cluster map.
    #[error("unknown node {id}")]
    UnknownNode {
        /// The node.
        id: NodeId,
    },
    /// The node is still a replica in the shard map.
    #[error("node {id} still holds shard {shard}")]
    NodeInUse {
        /// The node.
        id: NodeId,
        /// A shard it holds.
        shard: u64,
    },
    /// An API key with this id exists.
    #[error("API key {id} already exists")]
    DuplicateApiKey {
        /// The id.
        id: ApiKeyId,
    },
    /// No API key with this id.
    #[error("unknown API key {id}")]
    UnknownApiKey {
        /// The id.
        id: ApiKeyId,
    },
    /// A compare-and-swap found another value.
    #[error("compare-and-swap failed: the key holds another value")]
    CasMismatch {
        /// The value found.
        current: Option<Vec<u8>>,
    },
    /// A name or key breaks the key-space rules.
    #[error("invalid key: {reason}")]
    InvalidKey {
        /// Why.
        reason: String,
    },
    /// A value over the store's limit.
    #[error("value of {len} bytes is over the {max}-byte limit")]
    ValueTooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The command envelope is of a version this node cannot read.
    #[error("command envelope version {version} is not supported")]
    UnsupportedEnvelope {
        /// The version found.
        version: u16,
    },
    /// The command bytes could not be decoded.
    #[error("malformed command: {reason}")]
    Malformed {
        /// Why.
        reason: String,
    },
    /// A space alarm is raised: the command would add data.
    #[error(
        "the cluster is out of space and takes no new data until the alarm clears \
         (deletes still work): {alarms}; see GET /v1/cluster/alarms"
    )]
    NoSpace {
        /// Which alarms are raised (kind and node; the details are in the
        /// alarms' record).
        alarms: String,
    },
    /// No lease with this id (never granted, revoked or expired).
    #[error("lease {id} does not exist (it expired, was revoked or was never granted)")]
    LeaseNotFound {
        /// The id.
        id: LeaseId,
    },
    /// No more leases may be granted until some end.
    #[error("{max} leases are live: no more can be granted until some end")]
    TooManyLeases {
        /// The limit ([`MAX_LEASES`]).
        max: usize,
    },
    /// A lease cannot hold another key.
    #[error("lease {id} already holds {max} keys: use another lease")]
    LeaseFull {
        /// The lease.
        id: LeaseId,
        /// The limit ([`MAX_LEASE_KEYS`]).
        max: usize,
    },
}

/// The versioned envelope a command travels in through the Raft log
/// (postcard-encoded). Decoding happens at apply time, so a command this
/// build cannot read becomes a deterministic [`Rejection`], not a crash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Encoding version of `command`.
    pub version: u16,
    /// The postcard-encoded [`Command`].
    pub command: Vec<u8>,
}

/// The largest encoded command, in bytes. A log entry is stored as one
/// value, so a command must leave room under the store's value limit for
/// the entry's own framing; proposers check with [`Envelope::checked`].
pub const MAX_COMMAND_LEN: usize = meta_store_api::MAX_VALUE_LEN - 64 * 1024;

impl Envelope {
    /// The envelope version this build writes and reads.
    pub const VERSION: u16 = 1;

    /// Wraps a command, refusing one too large to be logged
    /// ([`MAX_COMMAND_LEN`]). Proposers use this: an oversized entry would
    /// be a storage error on every node that tried to append it.
    pub fn checked(command: &Command) -> Result<Envelope, Rejection> {
        let envelope = Envelope::new(command);
        if envelope.command.len() > MAX_COMMAND_LEN {
            return Err(Rejection::ValueTooLarge {
                len: envelope.command.len(),
                max: MAX_COMMAND_LEN,
            });
        }
        Ok(envelope)
    }

    /// Wraps a command.
    pub fn new(command: &Command) -> Envelope {
        Envelope {
            version: Self::VERSION,
            command: postcard::to_stdvec(command).expect("commands always encode"),
        }
    }

    /// The command inside, or why it cannot be read.
    pub fn open(&self) -> Result<Command, Rejection> {
        if self.version != Self::VERSION {
            return Err(Rejection::UnsupportedEnvelope {
                version: self.version,
            });
        }
        postcard::from_bytes(&self.command).map_err(|e| Rejection::Malformed {
            reason: e.to_string(),
        })
    }
}

impl From<&Command> for Envelope {
    fn from(command: &Command) -> Envelope {
        Envelope::new(command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_too_large_to_log_are_refused_before_proposal() {
        let small = Command::Put {
            key: b"k".to_vec(),
            value: vec![0; 10],
        };
        assert_eq!(Envelope::checked(&small).unwrap().open().unwrap(), small);
        let big = Command::Put {
            key: b"k".to_vec(),
            value: vec![0; MAX_COMMAND_LEN],
        };
        assert!(matches!(
            Envelope::checked(&big),
            Err(Rejection::ValueTooLarge { .. })
        ));
    }
}
