//! How the CLI shows typed answers as text (`--json` prints them as the
//! API answered instead).

use base64::Engine as _;
use comfy_table::Table;
use meta_client::wire;

/// A table with these column headers.
pub(super) fn table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_preset(comfy_table::presets::UTF8_BORDERS_ONLY);
    t.set_header(headers.to_vec());
    for row in rows {
        t.add_row(row);
    }
    t.to_string()
}

/// An optional number, `-` when absent.
fn opt(v: Option<u64>) -> String {
    v.map_or("-".into(), |v| v.to_string())
}

/// A value as text, or what a binary value is.
pub(super) fn value(v: &wire::WireValue) -> String {
    match (&v.value, &v.value_base64) {
        (Some(text), _) => text.clone(),
        (None, Some(b64)) => {
            let len = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_or(0, |b| b.len());
            format!("<{len} bytes, not UTF-8: `kv get --raw` writes them>")
        }
        (None, None) => "-".into(),
    }
}

/// `kv list`.
pub(super) fn key_values(items: &[wire::KeyValue]) -> String {
    let rows = items
        .iter()
        .map(|kv| vec![kv.key.clone(), value(&kv.value)])
        .collect();
    table(&["key", "value"], rows)
}

/// A delete's answer.
pub(super) fn deleted(w: &wire::WriteResponse) -> String {
    format!("deleted {}, revision {}", opt(w.deleted), w.revision)
}

/// A transaction's answer.
pub(super) fn txn(t: &wire::TxnResponse) -> String {
    let branch = if t.succeeded { "success" } else { "failure" };
    let mut out = format!("{branch}, revision {}", t.revision);
    for (i, result) in t.results.iter().enumerate() {
        out.push_str(&match result {
            wire::TxnResult::Put {} => format!("\n{i}: put"),
            wire::TxnResult::Delete { deleted } => format!("\n{i}: deleted {deleted}"),
            wire::TxnResult::Get { kv: Some(kv) } => format!(
                "\n{i}: {} = {} (mod_revision {})",
                kv.key,
                value(&kv.value),
                kv.mod_revision
            ),
            wire::TxnResult::Get { kv: None } => format!("\n{i}: absent"),
        });
    }
    out
}

/// A member's progress as the leader sees it (only the leader knows).
fn progress(p: Option<&wire::Progress>) -> String {
    let Some(p) = p else {
        return "-".into();
    };
    let matched = opt(p.matched_index);
    if !p.reachable {
        format!("unreachable (has {matched})")
    } else if p.caught_up {
        format!("caught up ({matched})")
    } else {
        format!("behind (has {matched})")
    }
}

/// `cluster status`.
pub(super) fn status(s: &wire::StatusResponse) -> String {
    let mut out = format!(
        "node {} ({}), leader {}, term {}, applied {}, last log {}\n",
        s.id,
        s.state,
        opt(s.leader),
        s.term,
        opt(s.applied_index),
        opt(s.last_log_index)
    );
    let rows = s
        .members
        .iter()
        .map(|(id, m)| {
            vec![
                id.clone(),
                m.raft.clone(),
                m.api.clone(),
                if m.voter { "voter" } else { "learner" }.into(),
                progress(m.progress.as_ref()),
            ]
        })
        .collect();
    out += &table(&["id", "raft", "api", "role", "progress"], rows);
    out
}

/// `cluster init`.
pub(super) fn init(v: &wire::InitResponse) -> String {
    let mut out = match v.leader {
        Some(leader) => format!("initialised; leader: node {leader}"),
        None => format!(
            "initialised\nwarning: {}",
            v.warning.as_deref().unwrap_or("-")
        ),
    };
    if let Some(token) = &v.root_token {
        out.push_str(&format!(
            "\nroot token: {token}\n(shown once; also in {} on that node)",
            v.root_token_file.as_deref().unwrap_or("root.token")
        ));
    }
    out
}

/// `cluster add-learner`.
pub(super) fn learner(v: &wire::LearnerResponse) -> String {
    if v.caught_up {
        format!("learner added; caught up (index {})", opt(v.matched_index))
    } else {
        "learner added (not waited for)".into()
    }
}

/// `cluster alarms`.
pub(super) fn alarms(v: &wire::AlarmsResponse) -> String {
    let mut out = format!(
        "data: {} bytes of a {}-byte quota\n",
        v.data_bytes, v.quota_bytes
    );
    let rows = v
        .alarms
        .iter()
        .map(|a| vec![a.kind.clone(), a.node.to_string(), a.detail.clone()])
        .collect();
    out += &table(&["kind", "node", "detail"], rows);
    out
}

/// A cluster-map node's state as the CLI names it.
fn node_state(state: wire::NodeState) -> &'static str {
    match state {
        wire::NodeState::Active => "Active",
        wire::NodeState::Draining => "Draining",
        wire::NodeState::Down => "Down",
    }
}

/// `cluster nodes`.
pub(super) fn nodes(nodes: &[wire::ClusterNode]) -> String {
    let rows = nodes
        .iter()
        .map(|n| {
            vec![
                n.id.to_string(),
                n.address.clone(),
                node_state(n.state).into(),
                serde_json::to_string(&n.labels).unwrap_or_default(),
            ]
        })
        .collect();
    table(&["id", "address", "state", "labels"], rows)
}

/// `shard get`.
pub(super) fn shards(map: &wire::ShardsPage) -> String {
    let rows = map
        .shards
        .iter()
        .map(|(id, a)| {
            vec![
                id.to_string(),
                serde_json::to_string(&a.replicas).unwrap_or_default(),
            ]
        })
        .collect();
    format!(
        "version {}\n{}",
        map.version,
        table(&["shard", "replicas"], rows)
    )
}

/// An API key's state as `apikey list` shows it.
fn key_status(key: &wire::ApiKeyInfo, now_ms: u64) -> &'static str {
    if key.revoked_at_ms.is_some() {
        "revoked"
    } else if key.expires_at_ms.is_some_and(|at| now_ms >= at) {
        "expired"
    } else {
        "active"
    }
}

/// `apikey list`.
pub(super) fn api_keys(keys: &[wire::ApiKeyInfo], now_ms: u64) -> String {
    let rows = keys
        .iter()
        .map(|k| {
            vec![
                k.id.clone(),
                k.name.clone(),
                serde_json::to_string(&k.scopes).unwrap_or_default(),
                key_status(k, now_ms).into(),
            ]
        })
        .collect();
    table(&["id", "name", "scopes", "status"], rows)
}

/// `config list`.
pub(super) fn config(entries: &std::collections::BTreeMap<String, String>) -> String {
    let rows = entries
        .iter()
        .map(|(k, v)| vec![k.clone(), v.clone()])
        .collect();
    table(&["name", "value"], rows)
}

/// A lease: id, TTL, time left, and what is bound to it.
pub(super) fn lease(l: &wire::LeaseResponse) -> String {
    let mut out = format!(
        "lease {}: ttl {}s, {}s left",
        l.id, l.ttl_secs, l.remaining_secs
    );
    if !l.keys.is_empty() {
        out += &format!("\nkeys: {}", l.keys.join(", "));
    }
    if !l.nodes.is_empty() {
        let nodes: Vec<String> = l.nodes.iter().map(u64::to_string).collect();
        out += &format!("\nnodes: {}", nodes.join(", "));
    }
    out
}

/// The live leases.
pub(super) fn leases(leases: &[wire::LeaseResponse]) -> String {
    let rows = leases
        .iter()
        .map(|l| {
            vec![
                l.id.to_string(),
                l.ttl_secs.to_string(),
                l.remaining_secs.to_string(),
            ]
        })
        .collect();
    table(&["id", "ttl (s)", "left (s)"], rows)
}

/// A record of a watch event as text: a value, a node or the shard map.
fn watch_record(r: &wire::WatchRecord) -> String {
    if let Some(node) = &r.node {
        return serde_json::to_string(node).unwrap_or_default();
    }
    if let Some(map) = &r.shard_map {
        return serde_json::to_string(map).unwrap_or_default();
    }
    value(&r.value)
}

/// One watch event on one line: `REVISION put KEY VALUE` or `REVISION
/// delete KEY` (and `(was PREV)` when asked).
pub(super) fn watch_event(e: &wire::WatchEvent) -> String {
    let mut line = match e.kind {
        wire::EventType::Put => format!("{} put {} {}", e.revision, e.key, watch_record(&e.record)),
        wire::EventType::Delete => format!("{} delete {}", e.revision, e.key),
    };
    if let Some(prev) = &e.prev {
        line += &format!(" (was {})", watch_record(prev));
    }
    line
}
