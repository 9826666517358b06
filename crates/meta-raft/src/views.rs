//! The in-memory views of the metadata, and the read API over them.
//!
//! Every record under `/meta/` is also held here, in persistent maps
//! (`imbl`: O(1) clones), so reads never touch the engine and apply can
//! build the next version on the side and publish it in one swap.

use std::sync::{Arc, PoisonError, RwLock};

use imbl::OrdMap;
use meta_store_api::keys::{Key, MetaNamespace};

use crate::apikey::ApiKeySecret;
use crate::codec::{CodecError, decode};
use crate::model::{ApiKeyId, ApiKeyRecord, ClusterNode, NodeId, ShardMap};
use crate::state_machine::AppliedState;

/// The name of the shard map's record in the shard namespace.
pub(crate) const SHARD_MAP: &str = "map";
/// The name of the applied state's record in the sys namespace.
pub(crate) const APPLIED: &str = "applied";

/// All metadata, in memory.
#[derive(Clone, Debug, Default)]
pub(crate) struct Views {
    pub(crate) cluster: OrdMap<NodeId, ClusterNode>,
    pub(crate) shards: Arc<ShardMap>,
    pub(crate) api_keys: OrdMap<ApiKeyId, ApiKeyRecord>,
    pub(crate) config: OrdMap<String, String>,
    pub(crate) kv: OrdMap<Vec<u8>, Vec<u8>>,
}

/// Why a stored metadata record could not be loaded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadError {
    #[error("bad key: {0}")]
    Key(#[from] meta_store_api::Error),
    #[error("bad record at {key}: {source}")]
    Record { key: String, source: CodecError },
    #[error("unexpected key {0} under /meta/")]
    Unexpected(String),
}

impl Views {
    /// The cluster node key of `id`: 20 decimal digits, so keys sort by id.
    pub(crate) fn node_key(id: NodeId) -> Key {
        Key::meta(MetaNamespace::Cluster, format!("{id:020}")).expect("a 20-digit name fits")
    }

    /// Rebuilds the views (and reads the applied state) from the records of
    /// a `/meta/` scan.
    pub(crate) fn load(rows: Vec<(Vec<u8>, Vec<u8>)>) -> Result<(Views, AppliedState), LoadError> {
        let mut views = Views::default();
        let mut applied = AppliedState::default();
        for (raw_key, value) in rows {
            let key = Key::parse(&raw_key)?;
            let shown = || String::from_utf8_lossy(&raw_key).into_owned();
            let record = |source| LoadError::Record {
                key: shown(),
                source,
            };
            let Key::Meta { namespace, name } = key else {
                return Err(LoadError::Unexpected(shown()));
            };
            match namespace {
                MetaNamespace::Cluster => {
                    let node: ClusterNode = decode(&value).map_err(record)?;
                    views.cluster.insert(node.id, node);
                }
                MetaNamespace::Shard if name == SHARD_MAP.as_bytes() => {
                    views.shards = Arc::new(decode(&value).map_err(record)?);
                }
                MetaNamespace::ApiKey => {
                    let key: ApiKeyRecord = decode(&value).map_err(record)?;
                    views.api_keys.insert(key.id.clone(), key);
                }
                MetaNamespace::Config => {
                    let value: String = decode(&value).map_err(record)?;
                    views
                        .config
                        .insert(String::from_utf8_lossy(&name).into_owned(), value);
                }
                MetaNamespace::Kv => {
                    views.kv.insert(name, value);
                }
                MetaNamespace::Sys if name == APPLIED.as_bytes() => {
                    applied = decode(&value).map_err(record)?;
                }
                _ => return Err(LoadError::Unexpected(shown())),
            }
        }
        Ok((views, applied))
    }
}

/// The outcome of an API key check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiKeyCheck {
    /// The secret matches a live key.
    Valid,
    /// No key with this id, or the secret does not match (indistinguishable
    /// on purpose).
    Invalid,
    /// The key was revoked.
    Revoked,
    /// The key has expired.
    Expired,
}

/// An API key as listed: everything but the secret's hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyInfo {
    /// Id.
    pub id: ApiKeyId,
    /// Name.
    pub name: String,
    /// Scopes.
    pub scopes: Vec<String>,
    /// Creation time, Unix milliseconds.
    pub created_at_ms: u64,
    /// Expiry, Unix milliseconds.
    pub expires_at_ms: Option<u64>,
    /// Revocation time, Unix milliseconds.
    pub revoked_at_ms: Option<u64>,
}

/// Reads the replicated metadata from this node's in-memory views: no
/// engine call, no Raft round. What it returns is this node's applied
/// state (a stale read); for a linearizable read, first ask Raft for a read
/// index (`Raft::ensure_linearizable`).
#[derive(Clone)]
pub struct MetadataReader {
    pub(crate) views: Arc<RwLock<Views>>,
}

impl MetadataReader {
    fn views(&self) -> Views {
        self.views
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Every node of the cluster map, by id.
    pub fn cluster_map(&self) -> Vec<ClusterNode> {
        self.views().cluster.values().cloned().collect()
    }

    /// One node of the cluster map.
    pub fn node(&self, id: NodeId) -> Option<ClusterNode> {
        self.views
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .cluster
            .get(&id)
            .cloned()
    }

    /// The shard map and its version.
    pub fn shard_map(&self) -> Arc<ShardMap> {
        self.views
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .shards
            .clone()
    }

    /// Checks an API key's secret at time `now_ms` (constant-time compare).
    pub fn verify_api_key(&self, id: &ApiKeyId, secret: &ApiKeySecret, now_ms: u64) -> ApiKeyCheck {
        match self.authenticate(id, secret, now_ms) {
            Ok(_) => ApiKeyCheck::Valid,
            Err(check) => check,
        }
    }

    /// Checks a presented key like [`verify_api_key`](Self::verify_api_key)
    /// and, for a live key, returns it (its scopes say what the caller may
    /// do). The secret is compared in constant time.
    pub fn authenticate(
        &self,
        id: &ApiKeyId,
        secret: &ApiKeySecret,
        now_ms: u64,
    ) -> Result<ApiKeyInfo, ApiKeyCheck> {
        let record = self
            .views
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .api_keys
            .get(id)
            .cloned();
        let Some(record) = record else {
            return Err(ApiKeyCheck::Invalid);
        };
        if !secret.matches(&record.secret_hash) {
            return Err(ApiKeyCheck::Invalid);
        }
        if record.revoked_at_ms.is_some() {
            return Err(ApiKeyCheck::Revoked);
        }
        if record.expires_at_ms.is_some_and(|at| now_ms >= at) {
            return Err(ApiKeyCheck::Expired);
        }
        Ok(ApiKeyInfo {
            id: record.id,
            name: record.name,
            scopes: record.scopes,
            created_at_ms: record.created_at_ms,
            expires_at_ms: record.expires_at_ms,
            revoked_at_ms: record.revoked_at_ms,
        })
    }

    /// Every API key, without secrets or hashes.
    pub fn api_keys(&self) -> Vec<ApiKeyInfo> {
        self.views()
            .api_keys
            .values()
            .map(|r| ApiKeyInfo {
                id: r.id.clone(),
                name: r.name.clone(),
                scopes: r.scopes.clone(),
                created_at_ms: r.created_at_ms,
                expires_at_ms: r.expires_at_ms,
                revoked_at_ms: r.revoked_at_ms,
            })
            .collect()
    }

    /// A config entry.
    pub fn config(&self, name: &str) -> Option<String> {
        self.views
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .config
            .get(name)
            .cloned()
    }

    /// Every config entry, by name.
    pub fn config_all(&self) -> Vec<(String, String)> {
        self.views().config.into_iter().collect()
    }

    /// A user key's value.
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.views
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .kv
            .get(key)
            .cloned()
    }

    /// User keys starting with `prefix`, in order, at most `limit`.
    pub fn list(&self, prefix: &[u8], limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let kv = self.views().kv;
        kv.range::<_, Vec<u8>>(prefix.to_vec()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}
