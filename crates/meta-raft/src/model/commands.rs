//! The commands that change the records (transactions among them), what
//! applying one answers, why one is refused, and the envelope a command
//! travels in through the Raft log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::*;

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
        #[serde(with = "crate::codec::bytes")]
        key: Vec<u8>,
        /// Value.
        #[serde(with = "crate::codec::bytes")]
        value: Vec<u8>,
    },
    /// Deletes a user key.
    Delete {
        /// Key.
        #[serde(with = "crate::codec::bytes")]
        key: Vec<u8>,
    },
    /// Sets (or deletes, for `new: None`) a user key if its current value is
    /// `expected` (`None`: absent).
    CompareAndSwap {
        /// Key.
        #[serde(with = "crate::codec::bytes")]
        key: Vec<u8>,
        /// The value it must have now.
        #[serde(with = "crate::codec::bytes::option")]
        expected: Option<Vec<u8>>,
        /// The value it gets.
        #[serde(with = "crate::codec::bytes::option")]
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
        #[serde(with = "crate::codec::bytes")]
        key: Vec<u8>,
        /// Value.
        #[serde(with = "crate::codec::bytes")]
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
    #[serde(with = "crate::codec::bytes")]
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
    Value(#[serde(with = "crate::codec::bytes")] Vec<u8>),
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
        #[serde(with = "crate::codec::bytes")]
        key: Vec<u8>,
        /// Value.
        #[serde(with = "crate::codec::bytes")]
        value: Vec<u8>,
    },
    /// Deletes a key (if it exists).
    Delete {
        /// Key.
        #[serde(with = "crate::codec::bytes")]
        key: Vec<u8>,
    },
    /// Deletes every key starting with `prefix` (an empty prefix: every
    /// user key).
    DeletePrefix {
        /// The prefix.
        #[serde(with = "crate::codec::bytes")]
        prefix: Vec<u8>,
    },
    /// Reads a key, as of this point of the branch.
    Get {
        /// Key.
        #[serde(with = "crate::codec::bytes")]
        key: Vec<u8>,
    },
    /// Sets a key bound to a lease (refused whole if the lease does not
    /// exist).
    PutLeased {
        /// Key.
        #[serde(with = "crate::codec::bytes")]
        key: Vec<u8>,
        /// Value.
        #[serde(with = "crate::codec::bytes")]
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
        #[serde(with = "crate::codec::bytes::option")]
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
    #[serde(with = "crate::codec::bytes")]
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
