//! Operations routes: `GET /metrics` (Prometheus text, see
//! [`crate::telemetry`]) and `GET /v1/snapshot` (an online backup).

use std::io::Read;
use std::path::Path;

use axum::body::{Body, Bytes};
use std::sync::Arc;

use axum::extract::{OriginalUri, Query, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use meta_client::wire;
use meta_raft::model::NodeState;

use crate::http::{ApiError, ApiResult, ApiState, ChannelBody};
use crate::telemetry::Gauges;

/// What the operations routes share: at most [`MAX_BACKUPS`] backups at
/// once (each holds an engine read view and two threads), one scrape at a
/// time (each walks the stores' directories).
pub struct OpsLimits {
    backups: Arc<tokio::sync::Semaphore>,
    scrape: tokio::sync::Mutex<()>,
}

/// Online backups a node serves at once; more get `503 backup_busy`.
pub const MAX_BACKUPS: usize = 2;

impl Default for OpsLimits {
    fn default() -> OpsLimits {
        OpsLimits {
            backups: Arc::new(tokio::sync::Semaphore::new(MAX_BACKUPS)),
            scrape: tokio::sync::Mutex::new(()),
        }
    }
}

impl std::fmt::Debug for OpsLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpsLimits").finish_non_exhaustive()
    }
}

/// `GET /metrics`.
pub(super) async fn prometheus(State(state): State<ApiState>) -> ApiResult<Response> {
    let ops = state.ops.clone();
    let _one_at_a_time = ops.scrape.lock().await;
    let text = tokio::task::spawn_blocking(move || {
        let gauges = Gauges::default();
        read_gauges(&state, &gauges);
        state.telemetry.render(&gauges)
    })
    .await
    .map_err(|e| ApiError::internal(format!("reading the metrics: {e}")))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// Reads every gauge of `crate::telemetry::METRICS` from the node.
fn read_gauges(state: &ApiState, g: &Gauges) {
    let m = state.raft.metrics().borrow().clone();
    let engines = state.engines();
    let (log_engine, state_engine) = (engines.log, engines.state);
    g.set(
        "meta_node_info",
        &[
            ("node_id", state.node_id.to_string()),
            ("version", env!("CARGO_PKG_VERSION").to_owned()),
            ("log_engine", log_engine.name().to_owned()),
            ("state_engine", state_engine.name().to_owned()),
        ],
        1.0,
    );
    let index = |l: Option<u64>| l.unwrap_or(0) as f64;
    g.set("meta_raft_term", &[], m.current_term as f64);
    let leads = m.current_leader == Some(m.id);
    g.set("meta_raft_is_leader", &[], f64::from(u8::from(leads)));
    g.set("meta_raft_leader_id", &[], index(m.current_leader));
    g.set("meta_raft_last_log_index", &[], index(m.last_log_index));
    g.set(
        "meta_raft_applied_index",
        &[],
        index(m.last_applied.map(|l| l.index)),
    );
    g.set(
        "meta_raft_snapshot_index",
        &[],
        index(m.snapshot.map(|l| l.index)),
    );
    g.set(
        "meta_raft_purged_index",
        &[],
        index(m.purged.map(|l| l.index)),
    );
    let membership = m.membership_config.membership();
    g.set(
        "meta_raft_voters",
        &[],
        membership.voter_ids().count() as f64,
    );
    g.set(
        "meta_raft_learners",
        &[],
        membership.learner_ids().count() as f64,
    );
    if leads && m.replication.is_some() {
        if let Some(ms) = m.millis_since_quorum_ack {
            g.set("meta_raft_quorum_ack_age_seconds", &[], ms as f64 / 1000.0);
        }
        let last = m.last_log_index.unwrap_or(0);
        for (&id, _) in membership.nodes().filter(|(id, _)| **id != m.id) {
            let p = super::admin::Progress::of(state, &m, id);
            let follower = [("follower", id.to_string())];
            g.set(
                "meta_raft_follower_matched_index",
                &follower,
                index(p.matched),
            );
            g.set(
                "meta_raft_follower_lag_entries",
                &follower,
                last.saturating_sub(p.matched.unwrap_or(0)) as f64,
            );
            g.set(
                "meta_raft_follower_reachable",
                &follower,
                f64::from(u8::from(p.answering)),
            );
        }
    }
    for (which, engine, dir) in state.stores_on_disk.iter() {
        g.set(
            "meta_store_disk_bytes",
            &[
                ("store", (*which).to_owned()),
                ("engine", engine.name().into()),
            ],
            disk_bytes(dir) as f64,
        );
    }
    g.set("meta_data_bytes", &[], state.reader.data_bytes() as f64);
    g.set("meta_quota_bytes", &[], state.limits.quota_bytes as f64);
    g.set("meta_revision", &[], state.reader.revision() as f64);
    g.set("meta_keys", &[], state.reader.key_count() as f64);
    let nodes = state.reader.cluster_map();
    for (name, wanted) in [
        ("active", NodeState::Active),
        ("draining", NodeState::Draining),
        ("down", NodeState::Down),
    ] {
        let count = nodes.iter().filter(|n| n.state == wanted).count();
        g.set(
            "meta_cluster_nodes",
            &[("state", name.into())],
            count as f64,
        );
    }
    g.set(
        "meta_alarms_active",
        &[],
        state.reader.alarms().len() as f64,
    );
    g.set("meta_watchers", &[], state.fanout.watchers() as f64);
    g.set("meta_leases", &[], state.reader.lease_count() as f64);
}

/// The disk space the files under `dir` take (allocated blocks: a sparse
/// LMDB map counts what it uses, not its size).
fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => dirs.push(entry.path()),
                Ok(meta) => total += meta.blocks() * 512,
                Err(_) => {}
            }
        }
    }
    total
}

/// Bytes per chunk of a backup stream.
const BACKUP_CHUNK: usize = 64 * 1024;
/// Chunks queued ahead of a slow client: memory stays bounded by this.
const BACKUP_QUEUE: usize = 4;
/// A client that takes no chunk for this long is dropped, and the engine's
/// read view it held is released (an LMDB reader held open keeps the
/// store from reusing freed pages).
const BACKUP_SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// `?stale=true`.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct BackupQuery {
    #[serde(default)]
    stale: bool,
}

/// `GET /v1/snapshot`: a consistent copy of the metadata (data and applied
/// state, no Raft log) as of now, streamed in the portable snapshot format
/// with the applied index, term and revision it holds in the headers.
/// `meta-node snapshot save --addr` writes it to a file and verifies it;
/// `snapshot restore-cluster` starts a new cluster from it.
pub(super) async fn backup(
    State(state): State<ApiState>,
    uri: OriginalUri,
    Query(query): Query<BackupQuery>,
) -> ApiResult<Response> {
    // Everything acknowledged before the request is in it: a read index
    // (a follower redirects to the leader). `stale=true` takes what this
    // node applied, for a node with no leader (the last resort).
    super::read_barrier(&state, &uri, query.stale).await?;
    let Ok(permit) = state.ops.backups.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "backup_busy",
            format!("{MAX_BACKUPS} backups are under way on this node; retry when one ends"),
        ));
    };
    if state.state_machine.failed() {
        return Err(ApiError::internal(
            "this node's state machine failed: take the backup from another node",
        ));
    }
    let sm = state.state_machine.clone();
    let backup = tokio::task::spawn_blocking(move || sm.backup().map_err(|e| e.to_string()))
        .await
        .map_err(|e| ApiError::internal(format!("starting the backup: {e}")))?
        .map_err(|e| ApiError::internal(format!("starting the backup: {e}")))?;
    let applied = backup.applied.last_applied;
    let revision = backup.applied.revision;
    let (tx, rx) = tokio::sync::mpsc::channel(BACKUP_QUEUE);
    let mut stream = backup.stream;
    let runtime = tokio::runtime::Handle::current();
    std::thread::Builder::new()
        .name("backup".into())
        .spawn(move || {
            let _permit = permit;
            let send = |item| {
                // The timer is made inside the runtime (this thread is not).
                runtime
                    .block_on(async { tokio::time::timeout(BACKUP_SEND_TIMEOUT, tx.send(item)).await })
                    .is_ok_and(|sent| sent.is_ok())
            };
            loop {
                let mut chunk = vec![0; BACKUP_CHUNK];
                let sent = match stream.read(&mut chunk) {
                    Ok(0) => return,
                    Ok(n) => {
                        chunk.truncate(n);
                        send(Ok(Bytes::from(chunk)))
                    }
                    Err(e) => {
                        tracing::warn!("online backup failed while streaming: {e}");
                        send(Err(e));
                        return;
                    }
                };
                // The client went away or stopped reading: stop (and
                // release the engine's read view).
                if !sent {
                    tracing::warn!(
                        "online backup abandoned: the client took nothing for {BACKUP_SEND_TIMEOUT:?} or went away"
                    );
                    return;
                }
            }
        })
        .map_err(|e| ApiError::internal(format!("starting the backup thread: {e}")))?;
    tracing::info!(
        applied = applied.map(|l| l.index),
        revision,
        "online backup started"
    );
    let mut response = Response::new(Body::new(ChannelBody { rx }));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        HeaderName::from_static(wire::REVISION_HEADER),
        HeaderValue::from(revision),
    );
    headers.insert(
        HeaderName::from_static(wire::APPLIED_INDEX_HEADER),
        HeaderValue::from(applied.map_or(0, |l| l.index)),
    );
    headers.insert(
        HeaderName::from_static(wire::APPLIED_TERM_HEADER),
        HeaderValue::from(applied.map_or(0, |l| l.leader_id.term)),
    );
    Ok(response)
}
