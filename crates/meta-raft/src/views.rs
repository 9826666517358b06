//! The in-memory views of the metadata, and the read API over them.
//!
//! Every record under `/meta/` is also held here, in persistent maps
//! (`imbl`: O(1) clones), so reads never touch the engine and apply can
//! build the next version on the side and publish it in one swap.

use std::ops::Bound;
use std::sync::{Arc, PoisonError, RwLock};

use imbl::{OrdMap, OrdSet};
use meta_store_api::keys::{Key, MetaNamespace};

use crate::apikey::ApiKeySecret;
use crate::codec::{CodecError, decode};
use crate::model::{
    Alarm, ApiKeyId, ApiKeyRecord, ClusterNode, KvEntry, Lease, LeaseId, NodeId, ShardMap, Txn,
    TxnResponse,
};
use crate::state_machine::{AppliedState, AppliedStateV1};

/// The name of the shard map's record in the shard namespace.
pub(crate) const SHARD_MAP: &str = "map";
/// The name of the applied state's record in the sys namespace.
pub(crate) const APPLIED: &str = "applied";
/// The name of the raised alarms' record in the sys namespace.
pub(crate) const ALARMS: &str = "alarms";

/// All metadata, in memory.
#[derive(Clone, Debug, Default)]
pub(crate) struct Views {
    pub(crate) cluster: OrdMap<NodeId, ClusterNode>,
    pub(crate) shards: Arc<ShardMap>,
    pub(crate) api_keys: OrdMap<ApiKeyId, ApiKeyRecord>,
    pub(crate) config: OrdMap<String, String>,
    /// User keys. Entries are shared (`Arc`): a change copies a B-tree
    /// node of pointers, not the values beside it. Changed only through
    /// [`Views::kv_insert`] and [`Views::kv_remove`] (and a load), which
    /// keep `kv_bytes`.
    pub(crate) kv: OrdMap<Vec<u8>, Arc<KvEntry>>,
    /// The bytes of `kv`'s keys and values, kept up to date by every
    /// change to it ([`Views::kv_insert`], [`Views::kv_remove`], a load), so
    /// [`MetadataReader::data_bytes`] walks no map of user keys.
    pub(crate) kv_bytes: u64,
    /// Raised space alarms, by kind and node.
    pub(crate) alarms: Arc<Vec<Alarm>>,
    /// The store's revision: +1 per applied command that changed something.
    pub(crate) revision: u64,
    /// Live leases, with what is bound to them.
    pub(crate) leases: OrdMap<LeaseId, LeaseState>,
    /// The lease of each user key bound to one.
    pub(crate) key_leases: OrdMap<Vec<u8>, LeaseId>,
    /// The lease of each cluster node bound to one.
    pub(crate) node_leases: OrdMap<NodeId, LeaseId>,
}

/// A live lease and what is bound to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LeaseState {
    pub(crate) lease: Lease,
    pub(crate) keys: OrdSet<Vec<u8>>,
    pub(crate) nodes: OrdSet<NodeId>,
}

/// What [`MetadataReader::lease`] answers: a lease and what is bound to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseInfo {
    /// The lease.
    pub lease: Lease,
    /// Its user keys, in order.
    pub keys: Vec<Vec<u8>>,
    /// Its cluster nodes, by id.
    pub nodes: Vec<NodeId>,
}

/// The name of a lease's record in the lease namespace: its id in 20
/// digits, so leases sort by id and come before what is bound to them.
fn lease_name(id: LeaseId) -> String {
    format!("{id:020}")
}

/// The store key of a lease's record.
pub(crate) fn lease_key(id: LeaseId) -> Vec<u8> {
    Key::meta(MetaNamespace::Lease, lease_name(id))
        .expect("a 20-digit name fits")
        .encode()
}

/// The store key binding user key `key` to lease `id` (the key's SHA-256,
/// so any key fits; the record's value is the key itself).
pub(crate) fn lease_key_binding(id: LeaseId, key: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(key));
    Key::meta(
        MetaNamespace::Lease,
        format!("{}/k/{digest}", lease_name(id)),
    )
    .expect("a fixed-length name fits")
    .encode()
}

/// The store key binding cluster node `node` to lease `id`.
pub(crate) fn lease_node_binding(id: LeaseId, node: NodeId) -> Vec<u8> {
    Key::meta(
        MetaNamespace::Lease,
        format!("{}/n/{node:020}", lease_name(id)),
    )
    .expect("a fixed-length name fits")
    .encode()
}

/// The layout of the records under `/meta/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// Written by this build: user keys carry their revisions, the applied
    /// state the store's revision.
    Current,
    /// Written by a build before revisions (user values stored raw). Loaded
    /// as if every key was written at revision 1; the state machine
    /// rewrites the store in the current layout when it opens it.
    BeforeRevisions,
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
    /// A record whose key does not name what it holds.
    #[error("the record at {key} holds {holds}")]
    Misnamed { key: String, holds: String },
    /// The records could not be read (the store, or a snapshot file).
    #[error("reading the records: {0}")]
    Read(String),
}

/// What [`Views::load`]'s source returns: the next `/meta/` record (key,
/// value), `None` after the last, or why it cannot be read.
pub(crate) type NextRecord = Result<Option<(Vec<u8>, Vec<u8>)>, LoadError>;

/// The bytes of the keys and values of `kv` (a walk: for a load).
fn kv_bytes_of(kv: &OrdMap<Vec<u8>, Arc<KvEntry>>) -> u64 {
    kv.iter().map(|(k, e)| entry_bytes(k, e)).sum()
}

fn entry_bytes(key: &[u8], entry: &KvEntry) -> u64 {
    (key.len() + entry.value.len()) as u64
}

impl Views {
    /// Sets user key `key` to `entry`; the entry it replaced, if any.
    pub(crate) fn kv_insert(&mut self, key: Vec<u8>, entry: Arc<KvEntry>) -> Option<Arc<KvEntry>> {
        let (key_len, value_len) = (key.len() as u64, entry.value.len() as u64);
        let prev = self.kv.insert(key, entry);
        match &prev {
            // The key is counted already: only its value changes.
            Some(prev) => self.kv_bytes = self.kv_bytes - prev.value.len() as u64 + value_len,
            None => self.kv_bytes += key_len + value_len,
        }
        prev
    }

    /// Removes user key `key`; the entry it held, if any.
    pub(crate) fn kv_remove(&mut self, key: &[u8]) -> Option<Arc<KvEntry>> {
        let old = self.kv.remove(key)?;
        self.kv_bytes -= entry_bytes(key, &old);
        Some(old)
    }

    /// The cluster node key of `id`: 20 decimal digits, so keys sort by id.
    pub(crate) fn node_key(id: NodeId) -> Key {
        Key::meta(MetaNamespace::Cluster, format!("{id:020}")).expect("a 20-digit name fits")
    }

    /// Rebuilds the views (and reads the applied state) from the records of
    /// `/meta/`, which `next` returns one at a time in key order (so no copy
    /// of them all is held besides the views), and says in which layout
    /// they were. `applied_record` is the applied state's record, read
    /// first: it says which layout the others have.
    ///
    /// The result is built over `base` (the views a snapshot install
    /// replaces; empty when a store opens): an entry whose record did not
    /// change stays `base`'s, so the two share everything but the changes
    /// and a node holds about one copy of the metadata while both live.
    /// The result is the same whatever `base` is.
    pub(crate) fn load(
        base: Views,
        applied_record: Option<&[u8]>,
        mut next: impl FnMut() -> NextRecord,
    ) -> Result<(Views, AppliedState, Format), LoadError> {
        // Leases are rebuilt whole (their bindings arrive after them); the
        // large maps are refilled in place.
        let mut cluster = Refill::new(base.cluster);
        let mut api_keys = Refill::new(base.api_keys);
        let mut config = Refill::new(base.config);
        let mut kv = Refill::new(base.kv);
        let mut views = Views::default();
        let applied_key = meta_store_api::keys::applied_key();
        let (mut applied, format) = match applied_record {
            None => (AppliedState::default(), Format::Current),
            Some(bytes) => match decode::<AppliedState>(bytes) {
                Ok(applied) => (applied, Format::Current),
                // The layout before revisions: a shorter applied state,
                // which must be exactly that (a damaged current record is
                // an error, not an old one).
                Err(current) => match postcard::take_from_bytes::<AppliedStateV1>(bytes) {
                    Ok((old, [])) => (old.into(), Format::BeforeRevisions),
                    _ => {
                        return Err(LoadError::Record {
                            key: String::from_utf8_lossy(&applied_key).into_owned(),
                            source: current,
                        });
                    }
                },
            },
        };
        let mut records = 0usize;
        while let Some((raw_key, value)) = next()? {
            records += 1;
            let key = Key::parse(&raw_key)?;
            let shown = || String::from_utf8_lossy(&raw_key).into_owned();
            let record = |source| LoadError::Record {
                key: shown(),
                source,
            };
            let Key::Meta { namespace, name } = key else {
                return Err(LoadError::Unexpected(shown()));
            };
            let out_of_order =
                |OutOfOrder| LoadError::Unexpected(format!("{} (out of key order)", shown()));
            let misnamed = |holds: String| LoadError::Misnamed {
                key: shown(),
                holds,
            };
            match namespace {
                MetaNamespace::Cluster => {
                    let node: ClusterNode = decode(&value).map_err(record)?;
                    if Views::node_key(node.id).encode() != raw_key {
                        return Err(misnamed(format!("node {}", node.id)));
                    }
                    cluster.put(node.id, node).map_err(out_of_order)?;
                }
                MetaNamespace::Shard if name == SHARD_MAP.as_bytes() => {
                    views.shards = Arc::new(decode(&value).map_err(record)?);
                }
                MetaNamespace::ApiKey => {
                    let key: ApiKeyRecord = decode(&value).map_err(record)?;
                    if key.id.0.as_bytes() != name.as_slice() {
                        return Err(misnamed(format!("API key `{}`", key.id)));
                    }
                    api_keys.put(key.id.clone(), key).map_err(out_of_order)?;
                }
                MetaNamespace::Config => {
                    let value: String = decode(&value).map_err(record)?;
                    config
                        .put(String::from_utf8_lossy(&name).into_owned(), value)
                        .map_err(out_of_order)?;
                }
                MetaNamespace::Kv => {
                    let entry = match format {
                        Format::Current => decode(&value).map_err(record)?,
                        Format::BeforeRevisions => KvEntry {
                            create_revision: 1,
                            mod_revision: 1,
                            version: 1,
                            value,
                        },
                    };
                    kv.put(name, Arc::new(entry)).map_err(out_of_order)?;
                }
                MetaNamespace::Lease => views.load_lease_record(&name, &value, shown)?,
                MetaNamespace::Sys if name == APPLIED.as_bytes() => {}
                MetaNamespace::Sys if name == ALARMS.as_bytes() => {
                    views.alarms = Arc::new(decode(&value).map_err(record)?);
                }
                _ => return Err(LoadError::Unexpected(shown())),
            }
        }
        // The layout before revisions had none: every record is at 1, and
        // so is the store if it holds any besides the applied state.
        if format == Format::BeforeRevisions && records > 1 {
            applied.revision = 1;
        }
        views.revision = applied.revision;
        views.cluster = cluster.finish();
        views.api_keys = api_keys.finish();
        views.config = config.finish();
        views.kv = kv.finish();
        views.kv_bytes = kv_bytes_of(&views.kv);
        Ok((views, applied, format))
    }

    /// Loads one record of the lease namespace: a lease (`<id>`), or a
    /// binding of a key (`<id>/k/<sha256>`) or a node (`<id>/n/<node>`),
    /// which sorts after its lease.
    fn load_lease_record(
        &mut self,
        name: &[u8],
        value: &[u8],
        shown: impl Fn() -> String,
    ) -> Result<(), LoadError> {
        let record = |source| LoadError::Record {
            key: shown(),
            source,
        };
        let id = std::str::from_utf8(name.get(..20).unwrap_or_default())
            .ok()
            .and_then(|id| id.parse::<LeaseId>().ok())
            .ok_or_else(|| LoadError::Unexpected(shown()))?;
        if name.len() == 20 {
            let lease: Lease = decode(value).map_err(record)?;
            if lease.id != id {
                return Err(LoadError::Unexpected(shown()));
            }
            let state = LeaseState {
                lease,
                keys: OrdSet::new(),
                nodes: OrdSet::new(),
            };
            self.leases.insert(id, state);
            return Ok(());
        }
        let Some(state) = self.leases.get_mut(&id) else {
            return Err(LoadError::Unexpected(shown()));
        };
        match &name[20..] {
            [b'/', b'k', b'/', ..] => {
                state.keys.insert(value.to_vec());
                self.key_leases.insert(value.to_vec(), id);
            }
            [b'/', b'n', b'/', ..] => {
                let node: NodeId = decode(value).map_err(record)?;
                state.nodes.insert(node);
                self.node_leases.insert(node, id);
            }
            _ => return Err(LoadError::Unexpected(shown())),
        }
        Ok(())
    }
}

/// Brings a map to exactly the entries put into it, in increasing key
/// order, leaving every entry it already held unchanged as it was: the
/// result shares all but the changes with the map it started from
/// (`imbl`'s structural sharing).
struct Refill<K: Ord + Clone, V: Clone + PartialEq> {
    map: OrdMap<K, V>,
    last: Option<K>,
}

/// A record whose key is not above the one before it in its map.
struct OutOfOrder;

impl<K: Ord + Clone, V: Clone + PartialEq> Refill<K, V> {
    fn new(map: OrdMap<K, V>) -> Self {
        Refill { map, last: None }
    }

    /// Puts `key` with `value` and drops the keys between the previous
    /// one and it; refuses a key not above the previous one.
    fn put(&mut self, key: K, value: V) -> Result<(), OutOfOrder> {
        let from = match &self.last {
            Some(last) if key <= *last => return Err(OutOfOrder),
            Some(last) => Bound::Excluded(last),
            None => Bound::Unbounded,
        };
        drop_range(&mut self.map, from, Bound::Excluded(&key));
        if self.map.get(&key) != Some(&value) {
            self.map.insert(key.clone(), value);
        }
        self.last = Some(key);
        Ok(())
    }

    /// The map, without the keys above the last one put.
    fn finish(mut self) -> OrdMap<K, V> {
        let last = self.last.take();
        let from = last.as_ref().map_or(Bound::Unbounded, Bound::Excluded);
        drop_range(&mut self.map, from, Bound::Unbounded);
        self.map
    }
}

/// Removes `map`'s keys in the range, one at a time (no list of them).
fn drop_range<K: Ord + Clone, V: Clone>(map: &mut OrdMap<K, V>, from: Bound<&K>, to: Bound<&K>) {
    while let Some(key) = map.range::<_, K>((from, to)).next().map(|(k, _)| k.clone()) {
        map.remove(&key);
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

/// How much one page of a listing may hold: at most `max_items` items and,
/// past its first item, at most `max_bytes` (keys and values, plus a fixed
/// overhead per item) — so an answer's size is bounded whatever the data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageLimits {
    /// Items at most.
    pub max_items: usize,
    /// Bytes at most (one item over it is still returned alone).
    pub max_bytes: usize,
}

impl PageLimits {
    /// No limit (for tests and offline tools).
    pub const ALL: PageLimits = PageLimits {
        max_items: usize::MAX,
        max_bytes: usize::MAX,
    };
}

/// Bytes counted per item on top of its key and value.
pub const PAGE_ITEM_OVERHEAD: usize = 64;

/// One page of a listing, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Whether more items follow the last one (ask again with it as the
    /// cursor).
    pub more: bool,
}

/// Takes items while `limits` allow; `size` is an item's bytes (without
/// [`PAGE_ITEM_OVERHEAD`]).
pub fn take_page<T>(
    items: impl Iterator<Item = T>,
    limits: PageLimits,
    size: impl Fn(&T) -> usize,
) -> Page<T> {
    let mut items = items.peekable();
    let (mut page, mut bytes) = (Vec::new(), 0usize);
    while let Some(next) = items.peek() {
        let len = size(next).saturating_add(PAGE_ITEM_OVERHEAD);
        if page.len() >= limits.max_items
            || (!page.is_empty() && bytes.saturating_add(len) > limits.max_bytes)
        {
            break;
        }
        bytes = bytes.saturating_add(len);
        page.extend(items.next());
    }
    Page {
        more: items.peek().is_some(),
        items: page,
    }
}

impl From<&ApiKeyRecord> for ApiKeyInfo {
    /// Everything of the record but the secret's hash.
    fn from(r: &ApiKeyRecord) -> ApiKeyInfo {
        ApiKeyInfo {
            id: r.id.clone(),
            name: r.name.clone(),
            scopes: r.scopes.clone(),
            created_at_ms: r.created_at_ms,
            expires_at_ms: r.expires_at_ms,
            revoked_at_ms: r.revoked_at_ms,
        }
    }
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
        Ok(ApiKeyInfo::from(&record))
    }

    /// Whether API key `id` exists and is neither revoked nor expired at
    /// `now_ms` (for requests that outlive their authentication, such as a
    /// watch).
    pub fn api_key_live(&self, id: &ApiKeyId, now_ms: u64) -> bool {
        self.views
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .api_keys
            .get(id)
            .is_some_and(|r| {
                r.revoked_at_ms.is_none() && r.expires_at_ms.is_none_or(|at| now_ms < at)
            })
    }

    /// Every API key, without secrets or hashes.
    pub fn api_keys(&self) -> Vec<ApiKeyInfo> {
        self.api_keys_page(None, PageLimits::ALL).items
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
        self.entry(key).map(|e| e.value)
    }

    /// A user key's value and revisions.
    pub fn entry(&self, key: &[u8]) -> Option<KvEntry> {
        self.views
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .kv
            .get(key)
            .map(|e| KvEntry::clone(e))
    }

    /// A user key (`None`: absent) and the store's revision, read together.
    pub fn entry_at(&self, key: &[u8]) -> (Option<KvEntry>, u64) {
        let views = self.views.read().unwrap_or_else(PoisonError::into_inner);
        (views.kv.get(key).map(|e| KvEntry::clone(e)), views.revision)
    }

    /// Answers a transaction that changes nothing (only compares and gets:
    /// [`Txn::writes`] is false) from this node's views, at their revision,
    /// without a log entry; with the same rules and limits as applying it.
    pub fn read_txn(&self, txn: Txn) -> Result<TxnResponse, crate::Rejection> {
        if txn.writes() {
            return Err(crate::Rejection::Malformed {
                reason: "a transaction that writes goes through Raft".into(),
            });
        }
        let mut views = self.views();
        let revision = views.revision;
        let mut unused = crate::apply::Effects::default();
        let mut done = crate::apply::apply_txn(&mut views, txn, &mut unused, revision + 1)?;
        done.revision = revision;
        Ok(done)
    }

    /// The lease a user key is bound to.
    pub fn key_lease(&self, key: &[u8]) -> Option<LeaseId> {
        self.views
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .key_leases
            .get(key)
            .copied()
    }

    /// A live lease and what is bound to it.
    pub fn lease(&self, id: LeaseId) -> Option<LeaseInfo> {
        let state = self
            .views
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .leases
            .get(&id)
            .cloned()?;
        Some(LeaseInfo {
            lease: state.lease,
            keys: state.keys.into_iter().collect(),
            nodes: state.nodes.into_iter().collect(),
        })
    }

    /// How many leases are live.
    pub fn lease_count(&self) -> usize {
        self.views().leases.len()
    }

    /// How many user keys are stored.
    pub fn key_count(&self) -> usize {
        self.views().kv.len()
    }

    /// Every live lease, by id (without what is bound to them).
    pub fn leases(&self) -> Vec<Lease> {
        self.views()
            .leases
            .values()
            .map(|state| state.lease.clone())
            .collect()
    }

    /// The store's revision: +1 per applied command that changed
    /// something (a transaction counts once); the same on every replica.
    pub fn revision(&self) -> u64 {
        self.views
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .revision
    }

    /// The raised space alarms.
    pub fn alarms(&self) -> Vec<Alarm> {
        self.views
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .alarms
            .as_ref()
            .clone()
    }

    /// The logical size of the metadata: the bytes of every key and value
    /// (user keys, config, cluster map, shard map, API keys), the same on
    /// every replica and engine. What `quota_bytes` limits; the files on
    /// disk are larger (engine overhead, the Raft log, snapshots).
    pub fn data_bytes(&self) -> u64 {
        let views = self.views();
        let kv = views.kv_bytes as usize;
        let config: usize = views.config.iter().map(|(k, v)| k.len() + v.len()).sum();
        let cluster: usize = views
            .cluster
            .values()
            .map(|n| {
                8 + n.address.len()
                    + n.labels
                        .iter()
                        .map(|(k, v)| k.len() + v.len())
                        .sum::<usize>()
            })
            .sum();
        let keys: usize = views
            .api_keys
            .values()
            .map(|k| {
                64 + k.id.0.len() + k.name.len() + k.scopes.iter().map(String::len).sum::<usize>()
            })
            .sum();
        let shards: usize = views
            .shards
            .shards
            .values()
            .map(|a| 8 + 8 * a.replicas.len())
            .sum();
        (kv + config + cluster + keys + shards) as u64
    }

    /// A page of the cluster map, by id, after `start_after`.
    pub fn cluster_page(
        &self,
        start_after: Option<NodeId>,
        limits: PageLimits,
    ) -> Page<ClusterNode> {
        let cluster = self.views().cluster;
        let from = start_after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        take_page(
            cluster
                .range((from, std::ops::Bound::Unbounded))
                .map(|(_, n)| n.clone()),
            limits,
            |n| {
                n.address.len()
                    + n.labels
                        .iter()
                        .map(|(k, v)| k.len() + v.len())
                        .sum::<usize>()
            },
        )
    }

    /// A page of the API keys (without secrets or hashes), by id, after
    /// `start_after`.
    pub fn api_keys_page(&self, start_after: Option<&str>, limits: PageLimits) -> Page<ApiKeyInfo> {
        let keys = self.views().api_keys;
        let from = start_after.map_or(std::ops::Bound::Unbounded, |id| {
            std::ops::Bound::Excluded(ApiKeyId(id.to_string()))
        });
        take_page(
            keys.range((from, std::ops::Bound::Unbounded))
                .map(|(_, r)| ApiKeyInfo::from(r)),
            limits,
            |k| k.id.0.len() + k.name.len() + k.scopes.iter().map(String::len).sum::<usize>(),
        )
    }

    /// A page of the config entries, by name, after `start_after`.
    pub fn config_page(
        &self,
        start_after: Option<&str>,
        limits: PageLimits,
    ) -> Page<(String, String)> {
        let config = self.views().config;
        let from = start_after.map_or(std::ops::Bound::Unbounded, |name| {
            std::ops::Bound::Excluded(name.to_string())
        });
        take_page(
            config
                .range((from, std::ops::Bound::Unbounded))
                .map(|(k, v)| (k.clone(), v.clone())),
            limits,
            |(k, v)| k.len() + v.len(),
        )
    }

    /// A page of the user keys starting with `prefix`, in order, after
    /// `start_after` (a key before the prefix starts it), and the store's
    /// revision it was read at.
    pub fn list_page(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limits: PageLimits,
    ) -> (Page<(Vec<u8>, KvEntry)>, u64) {
        let views = self.views();
        let from = match start_after {
            Some(after) if after >= prefix => std::ops::Bound::Excluded(after.to_vec()),
            _ => std::ops::Bound::Included(prefix.to_vec()),
        };
        let page = take_page(
            views
                .kv
                .range((from, std::ops::Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(k, e)| (k.clone(), KvEntry::clone(e))),
            limits,
            |(k, e)| k.len() + e.value.len(),
        );
        (page, views.revision)
    }

    /// User keys starting with `prefix` and their values, in order, at
    /// most `limit`.
    pub fn list(&self, prefix: &[u8], limit: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        let limits = PageLimits {
            max_items: limit,
            max_bytes: usize::MAX,
        };
        let (page, _) = self.list_page(prefix, None, limits);
        page.items.into_iter().map(|(k, e)| (k, e.value)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(keys: &[(&str, usize)]) -> MetadataReader {
        let mut views = Views::default();
        for (key, len) in keys {
            let entry = KvEntry {
                create_revision: 1,
                mod_revision: 1,
                version: 1,
                value: vec![b'v'; *len],
            };
            views.kv_insert(key.as_bytes().to_vec(), Arc::new(entry));
        }
        MetadataReader {
            views: Arc::new(RwLock::new(views)),
        }
    }

    fn keys((page, _): &(Page<(Vec<u8>, KvEntry)>, u64)) -> Vec<String> {
        page.items
            .iter()
            .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
            .collect()
    }

    #[test]
    fn pages_stop_at_items_or_bytes_and_resume_after_the_cursor() {
        let r = reader(&[
            ("a/1", 10),
            ("a/2", 10),
            ("a/3", 1000),
            ("a/4", 10),
            ("b/1", 10),
        ]);
        let by_items = PageLimits {
            max_items: 2,
            max_bytes: usize::MAX,
        };
        let first = r.list_page(b"a/", None, by_items);
        assert_eq!(
            (keys(&first), first.0.more),
            (vec!["a/1".into(), "a/2".into()], true)
        );
        let second = r.list_page(b"a/", Some(b"a/2"), by_items);
        assert_eq!(
            (keys(&second), second.0.more),
            (vec!["a/3".into(), "a/4".into()], false)
        );
        // Bytes: a/3 does not fit after a/1 and a/2, and comes alone next.
        let by_bytes = PageLimits {
            max_items: 100,
            max_bytes: 300,
        };
        let first = r.list_page(b"a/", None, by_bytes);
        assert_eq!(
            (keys(&first), first.0.more),
            (vec!["a/1".into(), "a/2".into()], true)
        );
        let big = r.list_page(b"a/", Some(b"a/2"), by_bytes);
        assert_eq!(
            (keys(&big), big.0.more),
            (vec!["a/3".into()], true),
            "alone, never skipped"
        );
        // A cursor before the prefix starts at the prefix; one past it is empty.
        assert_eq!(keys(&r.list_page(b"a/", Some(b"0"), by_items)).len(), 2);
        let past = r.list_page(b"a/", Some(b"a/9"), by_items);
        assert!(past.0.items.is_empty() && !past.0.more);
    }

    /// What a store holds, in small numbers: user keys, config entries,
    /// cluster nodes and API keys, each `(name, version)`.
    #[derive(Clone, Debug, Default)]
    struct Content {
        kv: Vec<(u8, u8)>,
        config: Vec<(u8, u8)>,
        nodes: Vec<(u8, u8)>,
        api_keys: Vec<(u8, u8)>,
    }

    /// Node ids whose decimal digits differ in count (sorting by digits
    /// would get them wrong).
    const NODE_IDS: [u64; 6] = [1, 9, 10, 100, 12_345_678_901, u64::MAX];

    fn content() -> impl proptest::strategy::Strategy<Value = Content> {
        use proptest::collection::vec;
        use proptest::strategy::Strategy as _;
        (
            vec((0u8..40, 0u8..3), 0..40),
            vec((0u8..10, 0u8..3), 0..10),
            vec((0u8..6, 0u8..3), 0..6),
            vec((0u8..10, 0u8..3), 0..10),
        )
            .prop_map(|(kv, config, nodes, api_keys)| Content {
                kv,
                config,
                nodes,
                api_keys,
            })
    }

    /// The `/meta/` records of `content`, in key order, as a store returns
    /// them.
    fn records_of(content: &Content) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = records(&content.kv, &content.config);
        out.extend(content.nodes.iter().map(|&(i, v)| {
            let id = NODE_IDS[usize::from(i)];
            let node = ClusterNode {
                id,
                address: format!("10.0.0.{v}:7000"),
                state: crate::model::NodeState::Active,
                labels: Default::default(),
            };
            (Views::node_key(id).encode(), crate::codec::encode(&node))
        }));
        out.extend(content.api_keys.iter().map(|&(i, v)| {
            let record = ApiKeyRecord {
                id: ApiKeyId(format!("key-{i}")),
                name: format!("version {v}"),
                scopes: vec!["read".into()],
                created_at_ms: 1,
                expires_at_ms: None,
                revoked_at_ms: None,
                secret_hash: [v; 32],
            };
            let key = Key::meta(MetaNamespace::ApiKey, &record.id.0).unwrap();
            (key.encode(), crate::codec::encode(&record))
        }));
        out.sort();
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }

    /// The `/meta/` records of these user keys and config entries, in key
    /// order, as a store would return them.
    fn records(kv: &[(u8, u8)], config: &[(u8, u8)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out: Vec<(Vec<u8>, Vec<u8>)> = kv
            .iter()
            .map(|&(k, v)| {
                let entry = KvEntry {
                    create_revision: 1,
                    mod_revision: u64::from(v) + 1,
                    version: 1,
                    value: vec![v; 16],
                };
                let key = Key::meta(MetaNamespace::Kv, format!("k{k:03}")).unwrap();
                (key.encode(), crate::codec::encode(&entry))
            })
            .chain(config.iter().map(|&(k, v)| {
                let key = Key::meta(MetaNamespace::Config, format!("c{k:03}")).unwrap();
                (key.encode(), crate::codec::encode(&format!("value {v}")))
            }))
            .collect();
        out.sort();
        out.dedup_by(|a, b| a.0 == b.0);
        out
    }

    fn load_over(base: Views, records: &[(Vec<u8>, Vec<u8>)]) -> Result<Views, LoadError> {
        let mut it = records.iter().cloned();
        Views::load(base, None, || Ok(it.next())).map(|(views, _, _)| views)
    }

    proptest::proptest! {
        #[test]
        fn views_loaded_over_any_base_equal_views_loaded_from_nothing(
            old in content(),
            new in content(),
        ) {
            let base = load_over(Views::default(), &records_of(&old)).unwrap();
            let new = records_of(&new);
            let over = load_over(base.clone(), &new).unwrap();
            let fresh = load_over(Views::default(), &new).unwrap();
            proptest::prop_assert_eq!(format!("{over:?}"), format!("{fresh:?}"));
        }
    }

    #[test]
    fn an_unchanged_entry_stays_the_one_the_base_held() {
        let base = load_over(Views::default(), &records(&[(1, 0), (2, 0), (3, 0)], &[])).unwrap();
        let over = load_over(base.clone(), &records(&[(1, 0), (2, 1)], &[])).unwrap();
        let value = |views: &Views, k: &str| views.kv.get(k.as_bytes()).unwrap().value.as_ptr();
        // Not a copy: the same bytes in memory.
        assert_eq!(value(&base, "k001"), value(&over, "k001"));
        assert_ne!(value(&base, "k002"), value(&over, "k002"));
        assert_eq!(over.kv.get(b"k002".as_slice()).unwrap().value, vec![1; 16]);
        assert!(over.kv.get(b"k003".as_slice()).is_none());
    }

    #[test]
    fn a_record_whose_key_names_something_else_is_an_error() {
        let content = Content {
            nodes: vec![(1, 0)],
            api_keys: vec![(1, 0)],
            ..Content::default()
        };
        let good = records_of(&content);
        assert!(load_over(Views::default(), &good).is_ok());
        let mut errors: Vec<String> = (0..good.len())
            .map(|i| {
                let mut bad = good.clone();
                bad[i].0.push(b'0');
                load_over(Views::default(), &bad).unwrap_err().to_string()
            })
            .collect();
        errors.sort();
        assert!(errors[0].ends_with("holds API key `key-1`"), "{errors:?}");
        assert!(errors[1].ends_with("holds node 9"), "{errors:?}");
    }

    #[test]
    fn records_out_of_key_order_are_an_error() {
        let mut out_of_order = records(&[(1, 0), (2, 0)], &[]);
        out_of_order.swap(0, 1);
        let err = load_over(Views::default(), &out_of_order).unwrap_err();
        assert!(err.to_string().contains("out of key order"), "{err}");
    }
}
