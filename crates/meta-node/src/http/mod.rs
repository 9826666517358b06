//! The client API: JSON over HTTP (axum). `docs/api.md` documents every
//! route with `curl` examples.
//!
//! - Reads are linearizable by default (a Raft read index, batched); a
//!   follower serves them too, after asking the leader for the read index
//!   ([`crate::read_index`]). `?stale=true` answers from this node's
//!   applied state at once.
//! - Writes sent to a follower (and lease keepalives and reads, which only
//!   the leader can answer) are answered with a `307 Temporary Redirect`
//!   to the leader's API (`curl -L` and the CLI follow it), plus a JSON
//!   body saying so. So are linearizable reads on a follower that cannot
//!   reach the leader.
//! - Errors are JSON: `{"error": {"code": "...", "message": "..."}}` with a
//!   stable `code`; malformed input is a 4xx, never a crash.
//! - Every route but `/health` needs a bearer token whose scopes cover
//!   what the route needs ([`crate::auth`]): `401 unauthenticated` without
//!   one, `403 permission_denied` with too little.
//!
//! By audience: `data.rs` the user keys (revisions, transactions),
//! `leases.rs` and [`watch`] leases and watches, `maps.rs` the metadata
//! maps (cluster, shards, API keys, config, alarms), `admin.rs` the Raft
//! membership and leader transfer, `cluster.rs` status, init, hash and
//! health, [`ops`] metrics and backups, [`ui`] the dashboard's files,
//! `errors.rs` the JSON errors, `access.rs` authentication and the
//! authorization middleware; this file the shared parts (state, proposing,
//! read barriers) and the router. [`server`] serves it over hyper with request deadlines.
//! Request and answer shapes are [`meta_client::wire`]'s.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::FromRequest;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, OriginalUri, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use meta_raft::model::{ApiKeyId, ClusterNode, NodeState, ShardAssignment};
use meta_raft::types::{NodeAddr, Raft};
use meta_raft::{
    ApiKeyCheck, ApiKeySecret, Command, MetadataReader, Page, PageLimits, ProposeError, Proposer,
    Rejection, new_api_key,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::auth::{self, Principal, Scope, Token};
use crate::read_index::ReadError;
mod access;
mod admin;
mod cluster;
mod data;
mod errors;
mod leases;
mod maps;
pub mod ops;
pub mod server;
pub mod ui;
pub mod watch;

pub use access::AuthState;
pub(crate) use access::require_kv;
pub use admin::{CAUGHT_UP_LAG, DEFAULT_LEARNER_WAIT};
use cluster::*;
pub use errors::*;
pub use maps::now_ms;
pub(crate) use maps::*;
use meta_client::wire;

/// A streamed response body: the chunks a task sends, until it drops its
/// sender; an error aborts the response (the client sees a cut transfer,
/// never a complete one).
pub(crate) struct ChannelBody {
    pub(crate) rx: tokio::sync::mpsc::Receiver<std::io::Result<Bytes>>,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<std::io::Result<http_body::Frame<Bytes>>>> {
        self.rx
            .poll_recv(cx)
            .map(|chunk| chunk.map(|bytes| bytes.map(http_body::Frame::data)))
    }
}

/// Most items one list request returns.
pub const MAX_LIST: usize = 10_000;

/// What every handler can reach: one shared [`Services`]. Extractors,
/// middleware and handlers clone it for every request, so it is one
/// reference count, not one per service (cloning the services themselves
/// was a quarter of a node's CPU under stale reads).
#[derive(Clone)]
pub struct ApiState(Arc<Services>);

impl ApiState {
    /// Shares `services` with every request.
    pub fn new(services: Services) -> ApiState {
        ApiState(Arc::new(services))
    }
}

impl std::ops::Deref for ApiState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The node's services the client API uses.
pub struct Services {
    /// This node's Raft.
    pub raft: Raft,
    /// Group commit in front of `raft`: writes go through it.
    pub proposer: Proposer,
    /// This node's views.
    pub reader: MetadataReader,
    /// This node's id.
    pub node_id: u64,
    /// The peer network (for `TimeoutNow` in a leader transfer).
    pub network: crate::transport::TcpNetwork,
    /// The voter leadership is being handed to (0: none); writes wait.
    pub transfer: Arc<std::sync::atomic::AtomicU64>,
    /// Linearizable reads, batched: one leadership confirmation serves
    /// every read queued before it started.
    pub reads: crate::read_index::ReadIndex,
    /// Limits of backups and scrapes.
    pub ops: Arc<ops::OpsLimits>,
    /// This node's metrics.
    pub telemetry: Arc<crate::telemetry::Telemetry>,
    /// The state machine (for online backups and the content hash).
    pub state_machine: meta_raft::StateMachine,
    /// This node's stores, for their size on disk: which (`log`, `state`,
    /// or one for both), engine, directory.
    pub stores_on_disk: Arc<[(&'static str, crate::engine::Engine, PathBuf)]>,
    /// How long a request waits for Raft (a commit, a read index) before
    /// it is answered 503.
    pub request_timeout: std::time::Duration,
    /// `https` when the API serves TLS, else `http` (for redirects: all
    /// nodes of a cluster serve the same).
    pub scheme: &'static str,
    /// Which node and cluster this is (`cluster init` founds the cluster).
    pub identity: Arc<crate::identity::Identity>,
    /// Authentication settings and the node's one-time init token.
    pub auth: Arc<AuthState>,
    /// What the peer transport knows of each peer's answers.
    pub peers: crate::transport::PeerContacts,
    /// Size limits of values, bodies and pages.
    pub limits: crate::config::LimitsSection,
    /// The longest a request may wait on purpose (`add-learner`): under
    /// the idle deadline, which would cut the connection.
    pub longest_wait: std::time::Duration,
    /// This node's change history, which watches read.
    pub history: meta_raft::History,
    /// Its notices, rendered once for every watcher.
    pub fanout: watch::Fanout,
    /// Watch settings.
    pub watch: crate::config::WatchSection,
    /// The lease deadlines this node counts while it leads.
    pub deadlines: crate::lease::Deadlines,
}

impl Services {
    /// This node's engines.
    pub fn engines(&self) -> crate::identity::Engines {
        match &self.stores_on_disk[..] {
            [(_, one, _)] => crate::identity::Engines {
                log: *one,
                state: *one,
            },
            [(_, log, _), (_, state, _), ..] => crate::identity::Engines {
                log: *log,
                state: *state,
            },
            [] => unreachable!("a node has a store"),
        }
    }
}

/// A JSON request body, whatever its `Content-Type` (so a plain
/// `curl -d '{...}'` works); a parse error says where the JSON is wrong.
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// `503 leader_transfer` while this leader hands leadership over: a write
/// or a read index now would renew the followers' lease on it (or lengthen
/// its log) and make the transfer fail.
pub(crate) fn transfer_gate(state: &ApiState) -> ApiResult<()> {
    match state.transfer.load(std::sync::atomic::Ordering::Acquire) {
        0 => Ok(()),
        to => Err(transferring(to)),
    }
}

fn transferring(to: u64) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "leader_transfer",
        format!("leadership is moving to node {to}; retry shortly"),
    )
}

/// Proposes a command through Raft (group commit: concurrent requests share
/// one log entry and one fsync); a rejection becomes a 4xx.
pub(crate) async fn propose(
    state: &ApiState,
    uri: &OriginalUri,
    command: Command,
) -> ApiResult<meta_raft::Response> {
    transfer_gate(state)?;
    let Ok(proposed) =
        tokio::time::timeout(state.request_timeout, state.proposer.propose(command)).await
    else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "outcome_unknown",
            format!(
                "not committed within {:?} (no quorum?): the write may still be applied; \
                 read before retrying",
                state.request_timeout
            ),
        ));
    };
    match proposed {
        Ok(meta_raft::Response::Rejected(r)) | Err(ProposeError::Rejected(r)) => Err(rejection(r)),
        Ok(other) => Ok(other),
        Err(ProposeError::ForwardToLeader { leader_id, leader }) => {
            Err(ApiError::not_leader(state, leader_id, leader, uri))
        }
        // The write reached Raft but its fate is unknown: it may still commit.
        Err(e) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "outcome_unknown",
            e.to_string(),
        )),
    }
}

/// [`propose`], answering `{"ok": true}` when the command was applied.
async fn propose_ok(
    state: &ApiState,
    uri: &OriginalUri,
    command: Command,
) -> ApiResult<Json<wire::OkResponse>> {
    propose(state, uri, command).await?;
    Ok(Json(wire::OkResponse { ok: true }))
}

/// The query of a read: consistency, paging, raw values.
#[derive(Deserialize, Default)]
pub(crate) struct ReadQuery {
    #[serde(default)]
    pub(crate) stale: bool,
    pub(crate) prefix: Option<String>,
    /// Answer a value's raw bytes (`GET /v1/kv/{key}`).
    #[serde(default)]
    pub(crate) raw: bool,
    /// Items per page at most (default 1000, at most [`MAX_LIST`]).
    pub(crate) limit: Option<usize>,
    /// The cursor: the `next` of the previous page (the last key, id or
    /// name it held).
    pub(crate) start_after: Option<String>,
    /// The shard-map version every page of a paged read must be at.
    pub(crate) version: Option<u64>,
}

impl ReadQuery {
    /// This request's page limits: `limit` items, and the node's byte cap.
    pub(crate) fn page(&self, state: &ApiState) -> ApiResult<PageLimits> {
        let max_items = self.limit.unwrap_or(1000);
        if max_items == 0 || max_items > MAX_LIST {
            return Err(ApiError::bad_request(format!(
                "`limit` is between 1 and {MAX_LIST}"
            )));
        }
        Ok(PageLimits {
            max_items,
            max_bytes: state.limits.max_page_bytes,
        })
    }

    /// The cursor as a number (node and shard ids).
    fn start_after_id(&self) -> ApiResult<Option<u64>> {
        self.start_after
            .as_deref()
            .map(|s| {
                s.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!("`start_after` `{s}` is not a numeric id"))
                })
            })
            .transpose()
    }
}

/// The `next` cursor of a page: its last item's, if more follow.
pub(crate) fn next_cursor<T>(page: &Page<T>, cursor: impl Fn(&T) -> String) -> Option<String> {
    match page.items.last() {
        Some(last) if page.more => Some(cursor(last)),
        _ => None,
    }
}

/// Refuses a value over `max_value_bytes`.
pub(crate) fn check_value_len(state: &ApiState, what: &str, len: usize) -> ApiResult<()> {
    let max = state.limits.max_value_bytes;
    if len > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("{what} is {len} bytes; the limit (limits.max_value_bytes) is {max}"),
        ));
    }
    Ok(())
}

/// Makes a read linearizable unless the client asked for a stale one. A
/// follower serves it too, after the leader's read index.
pub(crate) async fn read_barrier(
    state: &ApiState,
    uri: &OriginalUri,
    stale: bool,
) -> ApiResult<()> {
    if stale {
        return Ok(());
    }
    barrier(state, uri, state.reads.barrier()).await
}

/// A linearizable read that only the leader may serve (a follower answers
/// `307` to it): for what only the leader knows, as lease deadlines.
pub(crate) async fn leader_read_barrier(state: &ApiState, uri: &OriginalUri) -> ApiResult<()> {
    barrier(state, uri, state.reads.leader_barrier()).await
}

async fn barrier(
    state: &ApiState,
    uri: &OriginalUri,
    read_index: impl Future<Output = Result<(), ReadError>>,
) -> ApiResult<()> {
    transfer_gate(state)?;
    let Ok(barrier) = tokio::time::timeout(state.request_timeout, read_index).await else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!(
                "no read index within {:?} (no quorum?); retry, or read with ?stale=true",
                state.request_timeout
            ),
        ));
    };
    match barrier {
        Ok(()) => Ok(()),
        Err(ReadError::NotLeader { leader_id, leader }) => {
            Err(ApiError::not_leader(state, leader_id, leader, uri))
        }
        Err(ReadError::NoQuorum { within }) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!(
                "no read index within {within:?} (no quorum?); retry, or read with ?stale=true"
            ),
        )),
        Err(ReadError::Stopped) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the node is shutting down; retry on another",
        )),
        Err(ReadError::Failed(why)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{why}; retry, or read with ?stale=true"),
        )),
        Err(ReadError::LeaderTransfer { to }) => Err(transferring(to)),
    }
}

/// The API's routes.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/", get(ui::root))
        .route("/ui/", get(ui::index))
        .route("/ui/app.js", get(ui::script))
        .route("/ui/style.css", get(ui::style))
        .route("/v1/auth/whoami", get(ui::whoami))
        .route("/metrics", get(ops::prometheus))
        .route("/v1/snapshot", get(ops::backup))
        .route("/v1/cluster/leader", post(admin::transfer_leader))
        .route("/v1/kv", get(data::list).delete(data::delete_prefix))
        .route(
            "/v1/kv/{*key}",
            get(data::get)
                .put(data::put)
                .delete(data::delete)
                // A value's body is the value: refused past the limit, before
                // more of it is read.
                .layer(DefaultBodyLimit::max(state.limits.max_value_bytes)),
        )
        .route("/v1/cas", post(data::cas))
        .route("/v1/leases", get(leases::list).post(leases::grant))
        .route("/v1/leases/{id}", get(leases::get).delete(leases::revoke))
        .route("/v1/leases/{id}/keepalive", post(leases::keepalive))
        .route("/v1/watch", get(watch::kv))
        .route("/v1/watch/cluster", get(watch::area::<{ watch::CLUSTER }>))
        .route("/v1/watch/shards", get(watch::area::<{ watch::SHARDS }>))
        .route("/v1/watch/config", get(watch::area::<{ watch::CONFIG }>))
        .route("/v1/txn", post(data::txn))
        .route("/v1/cluster/nodes", get(nodes_get))
        .route("/v1/cluster/nodes/{id}", put(node_put).delete(node_delete))
        .route("/v1/shards", get(shards_get).put(shards_put))
        .route("/v1/apikeys", get(apikey_list).post(apikey_create))
        .route("/v1/apikeys/verify", post(apikey_verify))
        .route("/v1/apikeys/{id}", axum::routing::delete(apikey_revoke))
        .route("/v1/config", get(config_list))
        .route(
            "/v1/config/{name}",
            get(config_get).put(config_put).delete(config_delete),
        )
        .route("/v1/cluster/status", get(status))
        .route("/v1/cluster/hash", get(content_hash))
        .route("/v1/cluster/init", post(cluster_init))
        .route("/v1/cluster/alarms", get(alarms_get).delete(alarms_clear))
        .route("/v1/cluster/learners", post(admin::add_learner))
        .route(
            "/v1/cluster/members/{id}",
            axum::routing::delete(admin::remove_member),
        )
        .route("/v1/cluster/membership", post(admin::change_membership))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::authorize,
        ))
        .fallback(fallback)
        .layer(axum::middleware::map_response(json_errors))
        .layer(DefaultBodyLimit::max(state.limits.max_request_bytes()))
        .layer(axum::middleware::from_fn_with_state(
            state.telemetry.clone(),
            crate::telemetry::observe,
        ))
        .with_state(state)
}
