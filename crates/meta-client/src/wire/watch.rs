//! The messages of a watch (`GET /v1/watch`, Server-Sent Events) and of
//! leases (`/v1/leases`).
//!
//! A watch answers `text/event-stream`. Each message's `event:` names its
//! kind and its `data:` is one JSON object:
//!
//! - `put` / `delete`: a [`WatchEvent`]. Its `id:` is its revision; when
//!   one revision changes several records a watch reports, only its last
//!   event carries the `id`, so `Last-Event-ID` always names a revision
//!   whose every event was received.
//! - `progress`: a [`WatchProgress`], with the revision as `id`: every
//!   change up to it was sent.
//! - `end`: a [`WatchEnd`], the stream's last message: why it ends
//!   (`compacted`, `lagged`, `shutting_down`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ClusterNode, ShardAssignment, WireValue};

/// The SSE `event:` names of a watch.
pub mod event {
    /// A record was set.
    pub const PUT: &str = "put";
    /// A record was deleted.
    pub const DELETE: &str = "delete";
    /// Nothing to report up to a revision.
    pub const PROGRESS: &str = "progress";
    /// The stream ends (last message).
    pub const END: &str = "end";
}

/// Whether an event set or deleted its record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventType {
    /// Set (created or replaced).
    Put,
    /// Deleted.
    Delete,
}

/// A record as a watch shows it: a user key's or config entry's value
/// (with a user key's revisions), a cluster node, or the shard map.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRecord {
    /// A user key's revision of creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_revision: Option<u64>,
    /// A user key's revision of its last change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mod_revision: Option<u64>,
    /// A cluster node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ClusterNode>,
    /// The shard map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard_map: Option<ShardMapRecord>,
    /// A user key's or config entry's value.
    #[serde(flatten)]
    pub value: WireValue,
    /// A user key's writes since creation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// The shard map in a watch event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardMapRecord {
    /// Shard id -> placement.
    pub shards: BTreeMap<u64, ShardAssignment>,
    /// The map's version.
    pub version: u64,
}

/// One change, as a `put` or `delete` message's data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// The record's name: the user key, the node's id, `map`, the config
    /// entry's name.
    pub key: String,
    /// The record before the change (`?prev=true`; absent if it did not
    /// exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev: Option<WatchRecord>,
    /// The record before the change existed but is not reported: its
    /// revision replaced more than 16 MiB of values (`?prev=true` only).
    #[serde(default, skip_serializing_if = "is_false")]
    pub prev_omitted: bool,
    /// The record after the change (empty for a delete).
    #[serde(flatten)]
    pub record: WatchRecord,
    /// The store revision of the change.
    pub revision: u64,
    /// Put or delete.
    #[serde(rename = "type")]
    pub kind: EventType,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A `progress` message's data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchProgress {
    /// Every change up to this revision was sent.
    pub revision: u64,
}

/// An `end` message's data: why the stream ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEnd {
    /// `compacted` (the changes after `revision` are gone from this node:
    /// relist and watch from `oldest_revision` or later), `lagged` (the
    /// watcher read too slowly: resume after `revision`), `shutting_down`,
    /// `unauthenticated` (the watch's API key was revoked or expired).
    pub code: String,
    /// In words.
    pub message: String,
    /// The oldest revision this node can still watch from (`compacted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_revision: Option<u64>,
    /// Every change up to this revision was sent: resume after it.
    pub revision: u64,
}

/// `POST /v1/leases`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaseGrantRequest {
    /// Seconds the lease lives without a keepalive.
    pub ttl_secs: u64,
}

/// A lease: `POST /v1/leases`, `POST /v1/leases/{id}/keepalive`,
/// `GET /v1/leases/{id}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseResponse {
    /// Its id.
    pub id: u64,
    /// Its user keys (`GET` only; only those the caller may read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// Its cluster nodes (`GET` only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nodes: Vec<u64>,
    /// Seconds left before it expires without a keepalive, as the leader
    /// counts them.
    pub remaining_secs: u64,
    /// The store's revision when answered.
    pub revision: u64,
    /// Its time to live.
    pub ttl_secs: u64,
}

/// `GET /v1/leases`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeasesResponse {
    /// Every live lease, by id (without keys and nodes).
    pub leases: Vec<LeaseResponse>,
}
