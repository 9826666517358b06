//! The deterministic heart of the state machine: what applying a command
//! does to the views and which records it writes. Pure: no store call, no
//! clock, no randomness, no openraft — every replica that applies the same
//! commands from the same views writes the same records and answers the
//! same, on every engine. `state_machine/` runs it under openraft and
//! commits its batches; `views.rs` answers read-only transactions with it.

use std::sync::Arc;

use meta_store_api::WriteBatch;
use meta_store_api::keys::{Key, MetaNamespace};

use crate::codec::encode;
use crate::model::{
    Alarm, Change, ClusterNode, Command, Compare, CompareOp, CompareTarget, Event, KvEntry, Lease,
    LeaseId, MAX_ALARM_DETAIL, MAX_COMMAND_LEN, MAX_LEASE_KEYS, MAX_LEASE_TTL_SECS, MAX_LEASES,
    MAX_PREV_BYTES_PER_REVISION, MAX_TXN_COMPARES, MAX_TXN_DELETES, MAX_TXN_OPS,
    MAX_TXN_READ_BYTES, NodeId, NodeState, Rejection, Response, Txn, TxnOp, TxnOpResult,
    TxnResponse,
};
use crate::views::{
    ALARMS, LeaseState, SHARD_MAP, Views, lease_key, lease_key_binding, lease_node_binding,
};

/// What applying commands produced: the records to write, and the changes
/// a watch reports (in the order they were made).
#[derive(Debug, Default)]
pub(crate) struct Effects {
    /// The writes, committed in one store batch.
    pub(crate) batch: WriteBatch,
    /// The watchable changes.
    pub(crate) events: Vec<Event>,
    /// Bytes of previous values kept for the revision of the last change.
    prev_bytes: (u64, usize),
}

impl Effects {
    /// Records a watchable change made at `revision`, keeping the record
    /// it replaced within [`MAX_PREV_BYTES_PER_REVISION`] per revision.
    fn changed(&mut self, revision: u64, change: Change, prev: Option<Change>) {
        if self.prev_bytes.0 != revision {
            self.prev_bytes = (revision, 0);
        }
        let size = prev.as_ref().map_or(0, Change::size);
        let keep = self.prev_bytes.1.saturating_add(size) <= MAX_PREV_BYTES_PER_REVISION;
        if keep {
            self.prev_bytes.1 += size;
        }
        self.events.push(Event {
            revision,
            change,
            prev_omitted: prev.is_some() && !keep,
            prev: prev.filter(|_| keep),
        });
    }

    /// Adds `other`'s writes and changes after these.
    fn append(&mut self, other: Effects) {
        self.batch.extend(other.batch);
        self.events.extend(other.events);
        if other.prev_bytes.0 == self.prev_bytes.0 {
            self.prev_bytes.1 = self.prev_bytes.1.saturating_add(other.prev_bytes.1);
        } else if other.prev_bytes.0 > self.prev_bytes.0 {
            self.prev_bytes = other.prev_bytes;
        }
    }
}

/// Applies one command to `views`, adding its writes to `batch`. A
/// command that changes anything moves the store to the next revision; a
/// rejected one changes nothing at all.
pub(crate) fn apply_command(views: &mut Views, command: Command, fx: &mut Effects) -> Response {
    if let Command::Batch(commands) = command {
        if commands.iter().any(|c| matches!(c, Command::Batch(_))) {
            return Response::Rejected(Rejection::Malformed {
                reason: "batches do not nest".into(),
            });
        }
        return Response::Batch(
            commands
                .into_iter()
                .map(|c| apply_command(views, c, fx))
                .collect(),
        );
    }
    // Every command checks everything that can refuse it before it
    // changes anything, so a rejected command leaves no trace (copying the
    // views per command instead would copy tree nodes on every write).
    let before = fx.batch.len();
    let revision = views.revision + 1;
    match try_apply(views, command, fx, revision) {
        Ok(mut response) => {
            if fx.batch.len() > before {
                views.revision = revision;
            }
            match &mut response {
                Response::Applied { revision } => *revision = views.revision,
                Response::Txn(txn) => txn.revision = views.revision,
                _ => {}
            }
            response
        }
        Err(rejection) => Response::Rejected(rejection),
    }
}

fn key(namespace: MetaNamespace, name: impl AsRef<[u8]>) -> Result<Vec<u8>, Rejection> {
    Key::meta(namespace, name)
        .map(|k| k.encode())
        .map_err(|e| Rejection::InvalidKey {
            reason: e.to_string(),
        })
}

/// Values are held to the command limit, not the store's: a value that
/// fits the store but not a log entry could never have been proposed.
fn check_value(len: usize) -> Result<(), Rejection> {
    if len > MAX_COMMAND_LEN {
        return Err(Rejection::ValueTooLarge {
            len,
            max: MAX_COMMAND_LEN,
        });
    }
    Ok(())
}

/// The store key of a user key.
pub(crate) fn kv_key(k: &[u8]) -> Result<Vec<u8>, Rejection> {
    key(MetaNamespace::Kv, k)
}

/// Applies `command` at `revision` (which it takes only if it writes).
fn try_apply(
    views: &mut Views,
    command: Command,
    fx: &mut Effects,
    revision: u64,
) -> Result<Response, Rejection> {
    if !views.alarms.is_empty() && command.adds_data() && !replaces_without_growing(views, &command)
    {
        let alarms: Vec<String> = views
            .alarms
            .iter()
            .map(|a| format!("{:?} alarm of node {}", a.kind, a.node))
            .collect();
        return Err(Rejection::NoSpace {
            alarms: alarms.join(", "),
        });
    }
    match command {
        Command::RaiseAlarm(alarm) => {
            if alarm.detail.len() > MAX_ALARM_DETAIL {
                return Err(Rejection::Malformed {
                    reason: format!(
                        "an alarm's detail is {} bytes, over {MAX_ALARM_DETAIL}",
                        alarm.detail.len()
                    ),
                });
            }
            let mut alarms: Vec<Alarm> = views
                .alarms
                .iter()
                .filter(|a| (a.kind, a.node) != (alarm.kind, alarm.node))
                .cloned()
                .collect();
            alarms.push(alarm);
            alarms.sort_by_key(|a| (a.kind, a.node));
            let bytes = encode(&alarms);
            check_value(bytes.len())?;
            fx.batch.put(key(MetaNamespace::Sys, ALARMS)?, bytes);
            views.alarms = Arc::new(alarms);
        }
        Command::ClearAlarm { kind, node } => {
            let alarms: Vec<Alarm> = views
                .alarms
                .iter()
                .filter(|a| !(kind.is_none_or(|k| k == a.kind) && node.is_none_or(|n| n == a.node)))
                .cloned()
                .collect();
            if alarms.len() == views.alarms.len() {
                // Nothing matched: nothing changes.
            } else if alarms.is_empty() {
                fx.batch.delete(key(MetaNamespace::Sys, ALARMS)?);
            } else {
                fx.batch
                    .put(key(MetaNamespace::Sys, ALARMS)?, encode(&alarms));
            }
            views.alarms = Arc::new(alarms);
        }
        Command::Batch(_) => {
            return Err(Rejection::Malformed {
                reason: "batches do not nest".into(),
            });
        }
        Command::Txn(txn) => return apply_txn(views, txn, fx, revision).map(Response::Txn),
        Command::UpsertNode(node) => upsert_node(views, fx, node, revision)?,
        Command::UpsertNodeLeased { node, lease } => {
            live_lease(views, lease)?;
            let id = node.id;
            upsert_node(views, fx, node, revision)?;
            bind_node(views, fx, id, Some(lease));
        }
        Command::LeaseGrant { ttl_secs, owner } => {
            if !(1..=MAX_LEASE_TTL_SECS).contains(&ttl_secs) {
                return Err(Rejection::Malformed {
                    reason: format!(
                        "a lease's ttl_secs must be 1 to {MAX_LEASE_TTL_SECS}, not {ttl_secs}"
                    ),
                });
            }
            if views.leases.len() >= MAX_LEASES {
                return Err(Rejection::TooManyLeases { max: MAX_LEASES });
            }
            let lease = Lease {
                id: revision,
                ttl_secs,
                owner,
            };
            fx.batch.put(lease_key(revision), encode(&lease));
            let state = LeaseState {
                lease,
                keys: Default::default(),
                nodes: Default::default(),
            };
            views.leases.insert(revision, state);
            return Ok(Response::LeaseGranted {
                id: revision,
                revision,
            });
        }
        Command::LeaseRevoke { id } => {
            live_lease(views, id)?;
            end_lease(views, fx, id, revision)?;
        }
        Command::LeaseExpire { id } => {
            if views.leases.contains_key(&id) {
                end_lease(views, fx, id, revision)?;
            }
        }
        Command::PutLeased {
            key: k,
            value,
            lease,
        } => put_kv(views, fx, k, value, revision, Some(lease))?,
        Command::RemoveNode { id } => {
            if !views.cluster.contains_key(&id) {
                return Err(Rejection::UnknownNode { id });
            }
            if let Some((shard, _)) = views
                .shards
                .shards
                .iter()
                .find(|(_, a)| a.replicas.contains(&id))
            {
                return Err(Rejection::NodeInUse { id, shard: *shard });
            }
            bind_node(views, fx, id, None);
            fx.batch.delete(Views::node_key(id).encode());
            let prev = views
                .cluster
                .remove(&id)
                .map(|n| Change::Node { id, node: Some(n) });
            fx.changed(revision, Change::Node { id, node: None }, prev);
        }
        Command::SetShardMap {
            expected_version,
            shards,
        } => {
            let current = views.shards.version;
            if expected_version != current {
                return Err(Rejection::StaleShardMapVersion {
                    expected: expected_version,
                    current,
                });
            }
            if let Some(id) = shards
                .values()
                .flat_map(|a| a.replicas.iter())
                .find(|id| !views.cluster.contains_key(*id))
            {
                return Err(Rejection::UnknownNode { id: *id });
            }
            let map = crate::model::ShardMap {
                version: current + 1,
                shards,
            };
            let bytes = encode(&map);
            check_value(bytes.len())?;
            fx.batch.put(key(MetaNamespace::Shard, SHARD_MAP)?, bytes);
            let version = map.version;
            let prev = Change::ShardMap(views.shards.as_ref().clone());
            fx.changed(revision, Change::ShardMap(map.clone()), Some(prev));
            views.shards = Arc::new(map);
            return Ok(Response::ShardMapVersion(version));
        }
        Command::CreateApiKey(record) => {
            if views.api_keys.contains_key(&record.id) {
                return Err(Rejection::DuplicateApiKey { id: record.id });
            }
            fx.batch
                .put(key(MetaNamespace::ApiKey, &record.id.0)?, encode(&record));
            views.api_keys.insert(record.id.clone(), record);
        }
        Command::RevokeApiKey { id, at_ms } => {
            let Some(mut record) = views.api_keys.get(&id).cloned() else {
                return Err(Rejection::UnknownApiKey { id });
            };
            if record.revoked_at_ms.is_some() {
                return Ok(Response::Applied { revision: 0 });
            }
            record.revoked_at_ms = Some(at_ms);
            fx.batch
                .put(key(MetaNamespace::ApiKey, &id.0)?, encode(&record));
            views.api_keys.insert(id, record);
        }
        Command::SetConfig { name, value } => {
            let bytes = encode(&value);
            check_value(bytes.len())?;
            fx.batch.put(key(MetaNamespace::Config, &name)?, bytes);
            let prev = views.config.insert(name.clone(), value.clone());
            let prev = prev.map(|v| Change::Config {
                name: name.clone(),
                value: Some(v),
            });
            let value = Some(value);
            fx.changed(revision, Change::Config { name, value }, prev);
        }
        Command::DeleteConfig { name } => {
            let store_key = key(MetaNamespace::Config, &name)?;
            if let Some(old) = views.config.remove(&name) {
                fx.batch.delete(store_key);
                let prev = Change::Config {
                    name: name.clone(),
                    value: Some(old),
                };
                fx.changed(revision, Change::Config { name, value: None }, Some(prev));
            }
        }
        Command::Put { key: k, value } => put_kv(views, fx, k, value, revision, None)?,
        Command::Delete { key: k } => {
            delete_kv(views, fx, k, revision)?;
        }
        Command::CompareAndSwap {
            key: k,
            expected,
            new,
        } => {
            let current = views.kv.get(&k).map(|e| e.value.clone());
            if current != expected {
                return Err(Rejection::CasMismatch { current });
            }
            match new {
                Some(value) => put_kv(views, fx, k, value, revision, None)?,
                None => {
                    delete_kv(views, fx, k, revision)?;
                }
            }
        }
    }
    // The revision is filled in by `apply_command`.
    Ok(Response::Applied { revision: 0 })
}

/// Whether `command` only replaces a cluster-map node or the shard map
/// with one no larger (by encoded size): allowed during a space alarm, so
/// an operator can still mark nodes down and move shards.
fn replaces_without_growing(views: &Views, command: &Command) -> bool {
    match command {
        Command::UpsertNode(node) => views
            .cluster
            .get(&node.id)
            .is_some_and(|old| encode(node).len() <= encode(old).len()),
        Command::SetShardMap { shards, .. } => {
            encode(shards).len() <= encode(&views.shards.shards).len()
        }
        _ => false,
    }
}

/// The lease `id`, or why it cannot be used.
fn live_lease(views: &Views, id: LeaseId) -> Result<&LeaseState, Rejection> {
    views.leases.get(&id).ok_or(Rejection::LeaseNotFound { id })
}

/// Adds or replaces a cluster node (keeping its lease binding).
fn upsert_node(
    views: &mut Views,
    fx: &mut Effects,
    node: ClusterNode,
    revision: u64,
) -> Result<(), Rejection> {
    let bytes = encode(&node);
    check_value(bytes.len())?;
    fx.batch.put(Views::node_key(node.id).encode(), bytes);
    let id = node.id;
    let prev = views.cluster.insert(id, node.clone());
    let prev = prev.map(|n| Change::Node { id, node: Some(n) });
    fx.changed(
        revision,
        Change::Node {
            id,
            node: Some(node),
        },
        prev,
    );
    Ok(())
}

/// Binds cluster node `id` to `lease` (`None`: to none), replacing any
/// binding it had. The lease must exist.
fn bind_node(views: &mut Views, fx: &mut Effects, id: NodeId, lease: Option<LeaseId>) {
    let old = views.node_leases.get(&id).copied();
    if old == lease {
        return;
    }
    if let Some(old) = old {
        views.node_leases.remove(&id);
        if let Some(state) = views.leases.get_mut(&old) {
            state.nodes.remove(&id);
        }
        fx.batch.delete(lease_node_binding(old, id));
    }
    if let Some(new) = lease
        && let Some(state) = views.leases.get_mut(&new)
    {
        state.nodes.insert(id);
        views.node_leases.insert(id, new);
        fx.batch.put(lease_node_binding(new, id), encode(&id));
    }
}

/// Binds user key `k` to `lease` (`None`: to none), replacing any binding
/// it had. The lease must exist (checked by the caller).
fn bind_key(views: &mut Views, fx: &mut Effects, k: &[u8], lease: Option<LeaseId>) {
    let old = views.key_leases.get(k).copied();
    if old == lease {
        return;
    }
    if let Some(old) = old {
        views.key_leases.remove(k);
        if let Some(state) = views.leases.get_mut(&old) {
            state.keys.remove(k);
        }
        fx.batch.delete(lease_key_binding(old, k));
    }
    if let Some(new) = lease
        && let Some(state) = views.leases.get_mut(&new)
    {
        state.keys.insert(k.to_vec());
        views.key_leases.insert(k.to_vec(), new);
        fx.batch.put(lease_key_binding(new, k), k.to_vec());
    }
}

/// Ends lease `id` (which exists) at `revision`: deletes its keys, marks
/// its nodes down, removes it.
fn end_lease(
    views: &mut Views,
    fx: &mut Effects,
    id: LeaseId,
    revision: u64,
) -> Result<(), Rejection> {
    let Some(state) = views.leases.get(&id).cloned() else {
        return Ok(());
    };
    for k in state.keys {
        delete_kv(views, fx, k, revision)?;
    }
    for node_id in state.nodes {
        bind_node(views, fx, node_id, None);
        if let Some(node) = views.cluster.get(&node_id).cloned()
            && node.state != NodeState::Down
        {
            let down = ClusterNode {
                state: NodeState::Down,
                ..node
            };
            upsert_node(views, fx, down, revision)?;
        }
    }
    views.leases.remove(&id);
    fx.batch.delete(lease_key(id));
    Ok(())
}

/// Sets a user key at `revision`, bound to `lease` (`None`: unbound, as a
/// put without a lease leaves it).
fn put_kv(
    views: &mut Views,
    fx: &mut Effects,
    k: Vec<u8>,
    value: Vec<u8>,
    revision: u64,
    lease: Option<LeaseId>,
) -> Result<(), Rejection> {
    let store_key = kv_key(&k)?;
    check_value(value.len())?;
    if let Some(id) = lease {
        let state = live_lease(views, id)?;
        if state.keys.len() >= MAX_LEASE_KEYS && !state.keys.contains(&k) {
            return Err(Rejection::LeaseFull {
                id,
                max: MAX_LEASE_KEYS,
            });
        }
    }
    let entry = match views.kv.get(&k) {
        Some(old) => KvEntry {
            create_revision: old.create_revision,
            mod_revision: revision,
            version: old.version + 1,
            value,
        },
        None => KvEntry {
            create_revision: revision,
            mod_revision: revision,
            version: 1,
            value,
        },
    };
    fx.batch.put(store_key, encode(&entry));
    bind_key(views, fx, &k, lease);
    let prev = views.kv_insert(k.clone(), Arc::new(entry.clone()));
    let prev = prev.map(|e| Change::Kv {
        key: k.clone(),
        entry: Some(Arc::unwrap_or_clone(e)),
    });
    fx.changed(
        revision,
        Change::Kv {
            key: k,
            entry: Some(entry),
        },
        prev,
    );
    Ok(())
}

/// Deletes a user key at `revision`; whether it existed.
fn delete_kv(
    views: &mut Views,
    fx: &mut Effects,
    k: Vec<u8>,
    revision: u64,
) -> Result<bool, Rejection> {
    let store_key = kv_key(&k)?;
    let Some(old) = views.kv_remove(&k) else {
        return Ok(false);
    };
    fx.batch.delete(store_key);
    bind_key(views, fx, &k, None);
    let prev = Change::Kv {
        key: k.clone(),
        entry: Some(Arc::unwrap_or_clone(old)),
    };
    fx.changed(
        revision,
        Change::Kv {
            key: k,
            entry: None,
        },
        Some(prev),
    );
    Ok(true)
}

/// Checks a transaction's shape before anything of it runs: counts, keys,
/// value sizes and operators, in both branches (so whether it is valid does
/// not depend on the data).
fn check_txn(txn: &Txn) -> Result<(), Rejection> {
    let malformed = |reason: String| Err(Rejection::Malformed { reason });
    if txn.compares.len() > MAX_TXN_COMPARES {
        return malformed(format!(
            "a transaction has {} compares, over {MAX_TXN_COMPARES}",
            txn.compares.len()
        ));
    }
    for (name, ops) in [("success", &txn.success), ("failure", &txn.failure)] {
        if ops.len() > MAX_TXN_OPS {
            return malformed(format!(
                "a transaction's {name} branch has {} ops, over {MAX_TXN_OPS}",
                ops.len()
            ));
        }
    }
    for compare in &txn.compares {
        kv_key(&compare.key)?;
        if matches!(compare.target, CompareTarget::Exists(_))
            && matches!(compare.op, CompareOp::Less | CompareOp::Greater)
        {
            return malformed("`exists` compares only with = or !=".into());
        }
    }
    for op in txn.success.iter().chain(&txn.failure) {
        match op {
            TxnOp::Put { key: k, value } | TxnOp::PutLeased { key: k, value, .. } => {
                kv_key(k)?;
                check_value(value.len())?;
            }
            TxnOp::Delete { key: k } | TxnOp::Get { key: k } => {
                kv_key(k)?;
            }
            // A prefix need not be a valid key (the empty one is not).
            TxnOp::DeletePrefix { .. } => {}
        }
    }
    Ok(())
}

/// Whether `compare` holds for `entry` (`None`: the key is absent).
fn compare_holds(compare: &Compare, entry: Option<&KvEntry>) -> bool {
    use std::cmp::Ordering;
    let ordering = match (&compare.target, entry) {
        // An absent key has no value: every value compare is false.
        (CompareTarget::Value(_), None) => return false,
        (CompareTarget::Value(v), Some(e)) => e.value.as_slice().cmp(v.as_slice()),
        (CompareTarget::ModRevision(r), e) => e.map_or(0, |e| e.mod_revision).cmp(r),
        (CompareTarget::CreateRevision(r), e) => e.map_or(0, |e| e.create_revision).cmp(r),
        (CompareTarget::Version(v), e) => e.map_or(0, |e| e.version).cmp(v),
        (CompareTarget::Exists(want), e) => {
            if e.is_some() == *want {
                Ordering::Equal
            } else {
                Ordering::Less
            }
        }
    };
    match compare.op {
        CompareOp::Equal => ordering == Ordering::Equal,
        CompareOp::NotEqual => ordering != Ordering::Equal,
        CompareOp::Less => ordering == Ordering::Less,
        CompareOp::Greater => ordering == Ordering::Greater,
    }
}

/// Runs a transaction at `revision`. Once [`check_txn`] passed, only the
/// branch's budgets can refuse it ([`MAX_TXN_READ_BYTES`] read,
/// [`MAX_TXN_DELETES`] deleted): the branch runs on O(1) copies of the
/// views, so a transaction is refused whole or applied whole.
pub(crate) fn apply_txn(
    views: &mut Views,
    txn: Txn,
    fx: &mut Effects,
    revision: u64,
) -> Result<TxnResponse, Rejection> {
    check_txn(&txn)?;
    let succeeded = txn
        .compares
        .iter()
        .all(|c| compare_holds(c, views.kv.get(&c.key).map(|e| &**e)));
    let ops = if succeeded { txn.success } else { txn.failure };
    let mut scratch = views.clone();
    let mut writes = Effects::default();
    let (mut read, mut deleted) = (0usize, 0usize);
    let mut results = Vec::with_capacity(ops.len());
    for op in ops {
        results.push(match op {
            TxnOp::Put { key: k, value } => {
                put_kv(&mut scratch, &mut writes, k, value, revision, None)?;
                TxnOpResult::Put
            }
            TxnOp::PutLeased {
                key: k,
                value,
                lease,
            } => {
                put_kv(&mut scratch, &mut writes, k, value, revision, Some(lease))?;
                TxnOpResult::Put
            }
            TxnOp::Delete { key: k } => {
                let gone = delete_kv(&mut scratch, &mut writes, k, revision)?;
                deleted += usize::from(gone);
                TxnOpResult::Deleted(gone.into())
            }
            TxnOp::DeletePrefix { prefix } => {
                // One past the budget is enough to know it is over.
                let doomed: Vec<Vec<u8>> = scratch
                    .kv
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(&prefix))
                    .take(MAX_TXN_DELETES.saturating_sub(deleted).saturating_add(1))
                    .map(|(k, _)| k.clone())
                    .collect();
                deleted += doomed.len();
                if deleted <= MAX_TXN_DELETES {
                    for k in &doomed {
                        delete_kv(&mut scratch, &mut writes, k.clone(), revision)?;
                    }
                }
                TxnOpResult::Deleted(doomed.len() as u64)
            }
            TxnOp::Get { key: k } => {
                let entry = scratch.kv.get(&k).map(|e| KvEntry::clone(e));
                read += entry.as_ref().map_or(0, |e| e.value.len());
                TxnOpResult::Get(entry)
            }
        });
        if deleted > MAX_TXN_DELETES {
            return Err(Rejection::Malformed {
                reason: format!(
                    "the transaction deletes more than {MAX_TXN_DELETES} keys: delete a large \
                     range in parts (by narrower prefixes)"
                ),
            });
        }
        if read > MAX_TXN_READ_BYTES {
            return Err(Rejection::Malformed {
                reason: format!(
                    "the transaction's gets return more than {MAX_TXN_READ_BYTES} bytes: read \
                     large values one by one"
                ),
            });
        }
    }
    *views = scratch;
    fx.append(writes);
    Ok(TxnResponse {
        succeeded,
        revision: 0,
        results,
    })
}
