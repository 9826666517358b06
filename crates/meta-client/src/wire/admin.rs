//! The JSON shapes of the cluster, shard-map, API-key, config and
//! administration routes.
//!
//! Fields are declared in alphabetical order: the order in which the API
//! has always written them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `{"ok": true}`: a change was applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OkResponse {
    /// Always true (failures are errors).
    pub ok: bool,
}

/// Whether a node of the cluster map takes work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeState {
    /// Serving.
    #[default]
    Active,
    /// Being emptied before removal.
    Draining,
    /// Known to be unavailable.
    Down,
}

/// A node of the cluster map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterNode {
    /// Where it can be reached (`host:port`).
    pub address: String,
    /// Its id.
    pub id: u64,
    /// Free-form labels (zone, rack, ...).
    pub labels: BTreeMap<String, String>,
    /// Its state.
    pub state: NodeState,
}

/// `PUT /v1/cluster/nodes/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRequest {
    /// Where it can be reached (`host:port`).
    pub address: String,
    /// Its state (default `Active`).
    #[serde(default)]
    pub state: NodeState,
    /// Free-form labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// `GET /v1/cluster/nodes`: one page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodesPage {
    /// The cursor of the next page, or `None` after the last.
    pub next: Option<String>,
    /// The nodes, by id.
    pub nodes: Vec<ClusterNode>,
}

/// A shard's placement: replica nodes, primary first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardAssignment {
    /// Replica nodes, primary first.
    pub replicas: Vec<u64>,
}

/// `GET /v1/shards`: one page of the shard map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardsPage {
    /// The cursor of the next page, or `None` after the last.
    pub next: Option<String>,
    /// Shard id -> placement.
    pub shards: BTreeMap<u64, ShardAssignment>,
    /// The map's version.
    pub version: u64,
}

/// `PUT /v1/shards`: replace the map if it is still at `expected_version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardsRequest {
    /// The version this change replaces.
    pub expected_version: u64,
    /// The new shards.
    pub shards: BTreeMap<u64, ShardAssignment>,
}

/// The shard map's new version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardsResponse {
    /// The new version.
    pub version: u64,
}

/// `POST /v1/apikeys`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyRequest {
    /// The key's id (1 to 64 of `A-Z a-z 0-9 . _ -`).
    pub id: String,
    /// A human-readable name.
    #[serde(default)]
    pub name: String,
    /// What it may do (`docs/security.md`).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Lifetime; absent: until revoked (or its creator's expiry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<u64>,
}

/// A new API key: its token is shown once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyCreated {
    /// Expiry, Unix milliseconds.
    pub expires_at_ms: Option<u64>,
    /// The key's id.
    pub id: String,
    /// A reminder that the token cannot be shown again.
    pub note: String,
    /// The bearer token `<id>.<secret>`.
    pub token: String,
}

/// An API key as listed (never its secret).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyInfo {
    /// Creation time, Unix milliseconds.
    pub created_at_ms: u64,
    /// Expiry, Unix milliseconds.
    pub expires_at_ms: Option<u64>,
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Revocation time, Unix milliseconds.
    pub revoked_at_ms: Option<u64>,
    /// Scopes.
    pub scopes: Vec<String>,
}

/// `GET /v1/apikeys`: one page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeysPage {
    /// The keys, by id.
    pub api_keys: Vec<ApiKeyInfo>,
    /// The cursor of the next page, or `None` after the last.
    pub next: Option<String>,
}

/// `POST /v1/apikeys/verify`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The key's id.
    pub id: String,
    /// The secret presented.
    pub secret: String,
}

/// Whether a presented key is live.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyResponse {
    /// `valid`, `invalid`, `revoked` or `expired`.
    pub status: String,
    /// Whether it is `valid`.
    pub valid: bool,
}

/// `GET /v1/config/{name}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigEntry {
    /// The entry's name.
    pub name: String,
    /// Its value.
    pub value: String,
}

/// `GET /v1/config`: one page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigPage {
    /// Name -> value.
    pub config: BTreeMap<String, String>,
    /// The cursor of the next page, or `None` after the last.
    pub next: Option<String>,
}

/// A raised space alarm.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alarm {
    /// What was measured, in words.
    pub detail: String,
    /// `quota` or `disk`.
    pub kind: String,
    /// The node that raised it.
    pub node: u64,
    /// When, Unix milliseconds.
    pub raised_at_ms: u64,
}

/// `GET /v1/cluster/alarms`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlarmsResponse {
    /// The raised alarms.
    pub alarms: Vec<Alarm>,
    /// The data's logical size.
    pub data_bytes: u64,
    /// Free space on this node's data disk, if known.
    pub free_disk_bytes: Option<u64>,
    /// This node's disk watermark.
    pub min_free_disk_bytes: u64,
    /// The cluster's data quota.
    pub quota_bytes: u64,
}

/// A member's replication progress, as the leader sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Whether it is caught up (and reachable).
    pub caught_up: bool,
    /// The last error replicating to it.
    pub last_error: Option<String>,
    /// The last log index it holds.
    pub matched_index: Option<u64>,
    /// Whether it answered lately.
    pub reachable: bool,
}

/// A member of the Raft cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its client API address.
    pub api: String,
    /// The engines it runs on (`lmdb`, or `fjall (log) and lmdb (state)`):
    /// this node's own, and on the leader what the others told it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// Its progress (on the leader only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Its peer address.
    pub raft: String,
    /// Whether it votes.
    pub voter: bool,
}

/// `GET /v1/cluster/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResponse {
    /// Raised space alarms.
    pub alarms: Vec<Alarm>,
    /// The last applied log index.
    pub applied_index: Option<u64>,
    /// This node's id.
    pub id: u64,
    /// Its last log index.
    pub last_log_index: Option<u64>,
    /// The leader it knows.
    pub leader: Option<u64>,
    /// Members by id.
    pub members: BTreeMap<String, Member>,
    /// Up to where its log is purged.
    pub purged_index: Option<u64>,
    /// Its last snapshot's index.
    pub snapshot_index: Option<u64>,
    /// `Leader`, `Follower`, `Candidate`, `Learner`, `Shutdown`.
    pub state: String,
    /// Its term.
    pub term: u64,
}

/// `GET /v1/cluster/hash`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashResponse {
    /// The applied index the hash is of.
    pub applied_index: Option<u64>,
    /// SHA-256 of the metadata in the portable format.
    pub hash: String,
    /// Always `true`: the hash is of a pinned view at `applied_index`
    /// (older nodes said `false` when an entry was applied while hashing).
    pub stable: bool,
}

/// A member as named to `cluster init` (and to add a learner).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberSpec {
    /// Its client API address (`host:port`).
    pub api: String,
    /// Its node id (not 0).
    pub id: u64,
    /// Its peer address (`host:port`).
    pub raft: String,
}

/// `POST /v1/cluster/init` answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InitResponse {
    /// Whether the root key is in place on the new cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed: Option<bool>,
    /// The leader elected, if one was within the wait.
    pub leader: Option<u64>,
    /// A reminder that the root token is shown once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Always true.
    pub ok: bool,
    /// The root token (not with `insecure`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_token: Option<String>,
    /// Where the node keeps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_token_file: Option<String>,
    /// Why no leader is known yet, if none is.
    pub warning: Option<String>,
}

/// `POST /v1/cluster/learners`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnerRequest {
    /// Its node id.
    pub id: u64,
    /// Its peer address.
    pub raft: String,
    /// Its client API address.
    pub api: String,
    /// How long to wait for it to catch up (default 30 s; 0: do not wait).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_secs: Option<u64>,
}

/// A learner added.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnerResponse {
    /// Whether it caught up within the wait.
    pub caught_up: bool,
    /// The log index of the change.
    pub log_index: u64,
    /// The last log index known on it.
    pub matched_index: Option<u64>,
    /// Always true.
    pub ok: bool,
}

/// `DELETE /v1/cluster/members/{id}` answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveMemberResponse {
    /// The log index of the change.
    pub log_index: u64,
    /// Always true.
    pub ok: bool,
    /// The node removed.
    pub removed: u64,
    /// `voter` or `learner`.
    pub was: String,
}

/// `POST /v1/cluster/membership`: set the voters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipRequest {
    /// The voters.
    pub voters: std::collections::BTreeSet<u64>,
    /// Keep voters left out as learners (else they leave the cluster).
    #[serde(default)]
    pub retain: bool,
    /// Skip the readiness check.
    #[serde(default)]
    pub force: bool,
}

/// A membership change applied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembershipResponse {
    /// The log index of the change.
    pub log_index: u64,
    /// Always true.
    pub ok: bool,
}

/// `GET /health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthResponse {
    /// Why the node failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `ok`, or `failed`.
    pub status: String,
}
