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
//! `admin.rs` the Raft membership, this file the shared parts (state,
//! errors, authorization, proposing, read barriers), the metadata maps,
//! operations and the router; [`server`] serves it over hyper with
//! request deadlines. Request and answer shapes are [`meta_client::wire`]'s.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::FromRequest;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, MatchedPath, OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
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
mod admin;
mod data;
mod leases;
pub mod ops;
pub mod server;
pub mod ui;
pub mod watch;

pub use admin::{CAUGHT_UP_LAG, DEFAULT_LEARNER_WAIT};
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

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiState {
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
    /// The state machine (for online backups).
    pub state_machine: meta_raft::StateMachine,
    /// This node's stores, for their size on disk: which (`log`, `state`,
    /// or one for both), engine, directory.
    pub stores_on_disk: Arc<[(&'static str, crate::engine::Engine, PathBuf)]>,
    /// The state machine's store (for the content hash).
    pub state_store: Arc<dyn meta_store_api::MetadataStore>,
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

impl ApiState {
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

/// How the API authenticates its callers.
#[derive(Debug)]
pub struct AuthState {
    /// `insecure = true`: no authentication at all.
    pub insecure: bool,
    /// The node's data directory (where `cluster init` writes the root
    /// token).
    pub data_dir: PathBuf,
    init_token: Mutex<Option<Token>>,
    init_lock: tokio::sync::Mutex<()>,
}

impl AuthState {
    /// Authentication as configured; `init_token` authorises only `cluster
    /// init`, and only until this node is part of a cluster.
    pub fn new(insecure: bool, data_dir: PathBuf, init_token: Option<Token>) -> AuthState {
        AuthState {
            insecure,
            data_dir,
            init_token: Mutex::new(init_token),
            init_lock: tokio::sync::Mutex::new(()),
        }
    }

    fn init_token_matches(&self, presented: &Token) -> bool {
        self.init_token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|t| t.id == presented.id && presented.secret.matches(&t.secret.hash()))
    }

    /// Forgets the init token (the node is now part of a cluster).
    pub fn retire_init_token(&self) {
        *self
            .init_token
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        let _ = std::fs::remove_file(self.data_dir.join(auth::INIT_TOKEN_FILE));
    }
}

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    leader: Option<Box<(u64, NodeAddr)>>,
    location: Option<String>,
    /// More fields of the error object (`mod_revision` on a failed
    /// precondition).
    extra: Vec<(&'static str, Value)>,
    /// The store's revision, for the `revision` field and the
    /// `X-Meta-Revision` header (answers about user keys).
    revision: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            leader: None,
            location: None,
            extra: Vec::new(),
            revision: None,
        }
    }

    /// Says the store's revision (field and header).
    pub(crate) fn at_revision(mut self, revision: u64) -> Self {
        self.revision = Some(revision);
        self
    }

    /// Adds a field to the error object.
    pub(crate) fn with(mut self, field: &'static str, value: impl Serialize) -> Self {
        self.extra.push((field, json!(value)));
        self
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub(crate) fn unauthenticated(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub(crate) fn permission_denied(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "permission_denied", message)
    }

    /// Sends the client to the leader, or says there is none.
    pub(crate) fn not_leader(
        state: &ApiState,
        leader_id: Option<u64>,
        leader: Option<NodeAddr>,
        uri: &OriginalUri,
    ) -> Self {
        match (leader_id, leader) {
            (Some(id), Some(node)) if !node.api.is_empty() => {
                let path = uri.0.path_and_query().map_or("/", |p| p.as_str());
                ApiError {
                    location: Some(format!("{}://{}{}", state.scheme, node.api, path)),
                    leader: Some(Box::new((id, node))),
                    ..ApiError::new(
                        StatusCode::TEMPORARY_REDIRECT,
                        "not_leader",
                        "this node is not the leader; retry on the leader",
                    )
                }
            }
            _ if crate::transport::in_no_cluster(&state.raft) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_leader",
                "this node is in no cluster yet: found one with `meta-node cluster init \
                     ID=RAFT_ADDR,API_ADDR ...` (the token is in its data directory's init.token), \
                     or add it to a running one with `meta-node cluster add-learner`",
            ),
            _ => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_leader",
                "no leader is known right now; retry shortly",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": {"code": self.code, "message": self.message}});
        if let Some((id, node)) = self.leader.as_deref() {
            body["error"]["leader"] = json!({"id": id, "api": node.api});
        }
        for (field, value) in self.extra {
            body["error"][field] = value;
        }
        if let Some(revision) = self.revision {
            body["error"]["revision"] = json!(revision);
        }
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        if let Some(location) = self.location.and_then(|l| l.parse().ok()) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        if let Some(revision) = self.revision {
            response.headers_mut().insert(
                header::HeaderName::from_static(meta_client::wire::REVISION_HEADER),
                header::HeaderValue::from(revision),
            );
        }
        response
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        let text = e.body_text();
        if text.contains(crate::http::server::BODY_TIMED_OUT) {
            return ApiError::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", text);
        }
        let status = e.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "bad_request"
        };
        ApiError::new(status, code, text)
    }
}

pub(crate) fn rejection(r: Rejection) -> ApiError {
    let code = match &r {
        Rejection::StaleShardMapVersion { .. } => "stale_version",
        Rejection::CasMismatch { .. } => "cas_mismatch",
        Rejection::UnknownNode { .. } => "unknown_node",
        Rejection::NodeInUse { .. } => "node_in_use",
        Rejection::DuplicateApiKey { .. } => "duplicate_api_key",
        Rejection::UnknownApiKey { .. } => "not_found",
        Rejection::InvalidKey { .. } => "invalid_key",
        Rejection::ValueTooLarge { .. } => "payload_too_large",
        Rejection::UnsupportedEnvelope { .. } | Rejection::Malformed { .. } => "bad_request",
        Rejection::NoSpace { .. } => "quota_exceeded",
        Rejection::LeaseNotFound { .. } => "lease_not_found",
        Rejection::LeaseFull { .. } => "lease_full",
        Rejection::TooManyLeases { .. } => "too_many_leases",
    };
    let status = match code {
        "not_found" | "lease_not_found" => StatusCode::NOT_FOUND,
        "quota_exceeded" => StatusCode::INSUFFICIENT_STORAGE,
        "invalid_key" | "bad_request" => StatusCode::BAD_REQUEST,
        "payload_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::CONFLICT,
    };
    ApiError::new(status, code, r.to_string())
}

/// A handler's answer.
pub(crate) type ApiResult<T = Json<Value>> = Result<T, ApiError>;

/// Who is calling, from the `Authorization` header. Never echoes a secret.
async fn authenticate(state: &ApiState, headers: &HeaderMap) -> ApiResult<Principal> {
    if state.auth.insecure {
        return Ok(Principal::Anyone);
    }
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthenticated(
            "missing credentials: send `Authorization: Bearer <id>.<secret>` \
             (a new node's admin token is in <data_dir>/root.token)",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .and_then(Token::parse)
        .ok_or_else(|| {
            ApiError::unauthenticated(
                "malformed credentials: expected `Authorization: Bearer <id>.<secret>`",
            )
        })?;
    if token.id.0 == auth::INIT_KEY_ID && state.auth.init_token_matches(&token) {
        // Spent once the node is part of a cluster (it may have joined one
        // as a learner, without `cluster init`).
        if state.raft.is_initialized().await.unwrap_or(true) {
            state.auth.retire_init_token();
            return Err(ApiError::unauthenticated(
                "the init token is spent: this node is part of a cluster",
            ));
        }
        return Ok(Principal::Init);
    }
    match state
        .reader
        .authenticate(&token.id, &token.secret, now_ms())
    {
        Ok(key) => Ok(Principal::Key {
            scopes: key
                .scopes
                .iter()
                .filter_map(|s| Scope::parse(s).ok())
                .collect(),
            expires_at_ms: key.expires_at_ms,
            id: token.id,
        }),
        Err(ApiKeyCheck::Revoked) => Err(ApiError::unauthenticated(format!(
            "API key `{}` is revoked",
            token.id
        ))),
        Err(ApiKeyCheck::Expired) => Err(ApiError::unauthenticated(format!(
            "API key `{}` has expired",
            token.id
        ))),
        Err(_) => Err(ApiError::unauthenticated(
            "invalid API key (unknown id or wrong secret)",
        )),
    }
}

/// The authorization middleware: looks the matched route up in
/// [`auth::routes`] (a route missing there is refused: deny by default),
/// authenticates the caller and checks the route's need. The handler gets
/// the [`Principal`] for finer checks (a `kv` key under a prefix).
async fn authorize(
    State(state): State<ApiState>,
    matched: Option<MatchedPath>,
    mut request: axum::extract::Request,
    next: Next,
) -> Response {
    let Some(path) = matched else {
        return next.run(request).await;
    };
    let method = if request.method() == Method::HEAD {
        Method::GET
    } else {
        request.method().clone()
    };
    let Some(need) = auth::need(&method, path.as_str()) else {
        return ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed on {}", path.as_str()),
        )
        .into_response();
    };
    if need == auth::Need::Public {
        return next.run(request).await;
    }
    let principal = match authenticate(&state, request.headers()).await {
        Ok(principal) => principal,
        Err(e) => return e.into_response(),
    };
    if !need.allows(&principal) {
        return ApiError::permission_denied(format!(
            "this key may not call {method} {} (it needs {})",
            path.as_str(),
            need.describe()
        ))
        .into_response();
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// The handler-level check of `kv` routes: the exact key (or list prefix).
pub(crate) fn require_kv(principal: &Principal, write: bool, key: &str) -> ApiResult<()> {
    if principal.may(&auth::kv_scope(write, key)) {
        return Ok(());
    }
    let access = if write { "write" } else { "read" };
    Err(ApiError::permission_denied(format!(
        "this key may not {access} `{key}`: no `kv:{access}` scope of it covers that key"
    )))
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

/// A cluster-map node as answered.
pub(crate) fn node_wire(n: &ClusterNode) -> wire::ClusterNode {
    wire::ClusterNode {
        address: n.address.clone(),
        id: n.id,
        labels: n.labels.clone(),
        state: match n.state {
            NodeState::Active => wire::NodeState::Active,
            NodeState::Draining => wire::NodeState::Draining,
            NodeState::Down => wire::NodeState::Down,
        },
    }
}

async fn nodes_get(
    State(state): State<ApiState>,
    uri: OriginalUri,
    Query(q): Query<ReadQuery>,
) -> ApiResult<Json<wire::NodesPage>> {
    let (limits, start_after) = (q.page(&state)?, q.start_after_id()?);
    read_barrier(&state, &uri, q.stale).await?;
    let page = state.reader.cluster_page(start_after, limits);
    Ok(Json(wire::NodesPage {
        next: next_cursor(&page, |n| n.id.to_string()),
        nodes: page.items.iter().map(node_wire).collect(),
    }))
}

/// The query of `PUT /v1/cluster/nodes/{id}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeQuery {
    /// Bind the node to this lease: it is marked `Down` when the lease
    /// ends.
    lease: Option<u64>,
}

async fn node_put(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    uri: OriginalUri,
    Path(id): Path<u64>,
    Query(q): Query<NodeQuery>,
    body: JsonBody<wire::NodeRequest>,
) -> ApiResult<Json<wire::ClusterNode>> {
    let JsonBody(body) = body;
    if let Some(lease) = q.lease {
        leases::owned_lease(&state, &principal, lease)?;
    }
    let node = ClusterNode {
        id,
        address: body.address,
        state: match body.state {
            wire::NodeState::Active => NodeState::Active,
            wire::NodeState::Draining => NodeState::Draining,
            wire::NodeState::Down => NodeState::Down,
        },
        labels: body.labels,
    };
    let shown = node_wire(&node);
    let command = match q.lease {
        Some(lease) => Command::UpsertNodeLeased { node, lease },
        None => Command::UpsertNode(node),
    };
    propose(&state, &uri, command).await?;
    Ok(Json(shown))
}

async fn node_delete(
    State(state): State<ApiState>,
    uri: OriginalUri,
    Path(id): Path<u64>,
) -> ApiResult<Json<wire::OkResponse>> {
    match propose_ok(&state, &uri, Command::RemoveNode { id }).await {
        // Nothing to remove: the resource is not there (404), as for keys.
        Err(e) if e.code == "unknown_node" => Err(ApiError::not_found(format!(
            "node {id} is not in the cluster map"
        ))),
        other => other,
    }
}

async fn shards_get(
    State(state): State<ApiState>,
    uri: OriginalUri,
    Query(q): Query<ReadQuery>,
) -> ApiResult<Json<wire::ShardsPage>> {
    let (limits, start_after) = (q.page(&state)?, q.start_after_id()?);
    read_barrier(&state, &uri, q.stale).await?;
    let map = state.reader.shard_map();
    // Pages of one map: each names its version; a client that passes it
    // on gets 409 if the map changed between its pages.
    if let Some(version) = q.version.filter(|v| *v != map.version) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "stale_version",
            format!(
                "the shard map is at version {}, not {version}: it changed between pages; \
                 read it again from the first page",
                map.version
            ),
        ));
    }
    let from = start_after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
    let page = meta_raft::take_page(
        map.shards.range((from, std::ops::Bound::Unbounded)),
        limits,
        |(_, a)| a.replicas.len() * 8,
    );
    Ok(Json(wire::ShardsPage {
        next: next_cursor(&page, |(id, _)| id.to_string()),
        shards: page
            .items
            .iter()
            .map(|(id, a)| {
                let replicas = a.replicas.clone();
                (**id, wire::ShardAssignment { replicas })
            })
            .collect(),
        version: map.version,
    }))
}

async fn shards_put(
    State(state): State<ApiState>,
    uri: OriginalUri,
    body: JsonBody<wire::ShardsRequest>,
) -> ApiResult<Json<wire::ShardsResponse>> {
    let JsonBody(body) = body;
    let command = Command::SetShardMap {
        expected_version: body.expected_version,
        shards: body
            .shards
            .into_iter()
            .map(|(id, a)| {
                (
                    id,
                    ShardAssignment {
                        replicas: a.replicas,
                    },
                )
            })
            .collect(),
    };
    match propose(&state, &uri, command).await? {
        meta_raft::Response::ShardMapVersion(version) => Ok(Json(wire::ShardsResponse { version })),
        other => Err(ApiError::internal(format!("unexpected response {other:?}"))),
    }
}

/// Wall-clock time, Unix milliseconds (chosen by proposers, never in apply).
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

async fn apikey_create(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    uri: OriginalUri,
    body: JsonBody<wire::ApiKeyRequest>,
) -> ApiResult<Json<wire::ApiKeyCreated>> {
    let JsonBody(body) = body;
    auth::check_key_id(&body.id).map_err(ApiError::bad_request)?;
    for text in &body.scopes {
        let scope = Scope::parse(text).map_err(ApiError::bad_request)?;
        // No key may grant more than the key that creates it.
        if !principal.may(&scope) {
            return Err(ApiError::permission_denied(format!(
                "this key cannot grant `{scope}`: a new key gets no more than its creator's scopes"
            )));
        }
    }
    // Time and the secret are chosen here, by the proposer, never in apply.
    let now = now_ms();
    let mut expires = body
        .expires_in_secs
        .map(|s| now.saturating_add(s.saturating_mul(1000)));
    // A key never outlives the key that creates it.
    if let Principal::Key {
        expires_at_ms: Some(limit),
        ..
    } = &principal
    {
        expires = Some(expires.map_or(*limit, |e| e.min(*limit)));
    }
    let (command, secret) = new_api_key(
        ApiKeyId(body.id.clone()),
        body.name,
        body.scopes,
        now,
        expires,
    )
    .map_err(|e| ApiError::internal(format!("no randomness for a secret: {e}")))?;
    propose(&state, &uri, command).await?;
    let token = Token {
        id: ApiKeyId(body.id.clone()),
        secret,
    };
    Ok(Json(wire::ApiKeyCreated {
        expires_at_ms: expires,
        id: body.id,
        note: "the token is shown once and cannot be recovered".into(),
        token: token.expose(),
    }))
}

async fn apikey_list(
    State(state): State<ApiState>,
    uri: OriginalUri,
    Query(q): Query<ReadQuery>,
) -> ApiResult<Json<wire::ApiKeysPage>> {
    let limits = q.page(&state)?;
    read_barrier(&state, &uri, q.stale).await?;
    let page = state.reader.api_keys_page(q.start_after.as_deref(), limits);
    let next = next_cursor(&page, |k| k.id.0.clone());
    let api_keys = page
        .items
        .into_iter()
        .map(|k| wire::ApiKeyInfo {
            created_at_ms: k.created_at_ms,
            expires_at_ms: k.expires_at_ms,
            id: k.id.0,
            name: k.name,
            revoked_at_ms: k.revoked_at_ms,
            scopes: k.scopes,
        })
        .collect();
    Ok(Json(wire::ApiKeysPage { api_keys, next }))
}

async fn apikey_revoke(
    State(state): State<ApiState>,
    uri: OriginalUri,
    Path(id): Path<String>,
) -> ApiResult<Json<wire::OkResponse>> {
    propose_ok(
        &state,
        &uri,
        Command::RevokeApiKey {
            id: ApiKeyId(id),
            at_ms: now_ms(),
        },
    )
    .await
}

async fn apikey_verify(
    State(state): State<ApiState>,
    uri: OriginalUri,
    Query(q): Query<ReadQuery>,
    body: JsonBody<wire::VerifyRequest>,
) -> ApiResult<Json<wire::VerifyResponse>> {
    let JsonBody(body) = body;
    read_barrier(&state, &uri, q.stale).await?;
    let check = state.reader.verify_api_key(
        &ApiKeyId(body.id),
        &ApiKeySecret::from_presented(body.secret),
        now_ms(),
    );
    let status = match check {
        ApiKeyCheck::Valid => "valid",
        ApiKeyCheck::Invalid => "invalid",
        ApiKeyCheck::Revoked => "revoked",
        ApiKeyCheck::Expired => "expired",
    };
    Ok(Json(wire::VerifyResponse {
        status: status.into(),
        valid: check == ApiKeyCheck::Valid,
    }))
}

async fn config_list(
    State(state): State<ApiState>,
    uri: OriginalUri,
    Query(q): Query<ReadQuery>,
) -> ApiResult<Json<wire::ConfigPage>> {
    let limits = q.page(&state)?;
    read_barrier(&state, &uri, q.stale).await?;
    let page = state.reader.config_page(q.start_after.as_deref(), limits);
    let next = next_cursor(&page, |(name, _)| name.clone());
    Ok(Json(wire::ConfigPage {
        config: page.items.into_iter().collect(),
        next,
    }))
}

async fn config_get(
    State(state): State<ApiState>,
    uri: OriginalUri,
    Path(name): Path<String>,
    Query(q): Query<ReadQuery>,
) -> ApiResult<Json<wire::ConfigEntry>> {
    read_barrier(&state, &uri, q.stale).await?;
    let value = state
        .reader
        .config(&name)
        .ok_or_else(|| ApiError::not_found(format!("no config entry `{name}`")))?;
    Ok(Json(wire::ConfigEntry { name, value }))
}

async fn config_put(
    State(state): State<ApiState>,
    uri: OriginalUri,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<wire::OkResponse>> {
    let body = body?;
    check_value_len(&state, "the value", body.len())?;
    let value = String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("the value must be UTF-8 text"))?;
    propose_ok(&state, &uri, Command::SetConfig { name, value }).await
}

async fn config_delete(
    State(state): State<ApiState>,
    uri: OriginalUri,
    Path(name): Path<String>,
) -> ApiResult<Json<wire::OkResponse>> {
    propose_ok(&state, &uri, Command::DeleteConfig { name }).await
}

fn alarm_wire(a: &meta_raft::Alarm) -> wire::Alarm {
    let kind = match a.kind {
        meta_raft::AlarmKind::Quota => "quota",
        meta_raft::AlarmKind::Disk => "disk",
    };
    wire::Alarm {
        detail: a.detail.clone(),
        kind: kind.into(),
        node: a.node,
        raised_at_ms: a.raised_at_ms,
    }
}

/// The raised space alarms, and the data's size against this node's quota.
async fn alarms_get(
    State(state): State<ApiState>,
    uri: OriginalUri,
    Query(q): Query<ReadQuery>,
) -> ApiResult<Json<wire::AlarmsResponse>> {
    read_barrier(&state, &uri, q.stale).await?;
    Ok(Json(wire::AlarmsResponse {
        alarms: state.reader.alarms().iter().map(alarm_wire).collect(),
        data_bytes: state.reader.data_bytes(),
        free_disk_bytes: meta_store_api::disk::available_bytes(state.identity.data_dir()),
        min_free_disk_bytes: state.limits.min_free_disk_bytes,
        quota_bytes: state.limits.quota_bytes,
    }))
}

/// Clears every alarm (raised again at the next check if the cause is
/// still there).
async fn alarms_clear(
    State(state): State<ApiState>,
    uri: OriginalUri,
) -> ApiResult<Json<wire::OkResponse>> {
    propose_ok(
        &state,
        &uri,
        Command::ClearAlarm {
            kind: None,
            node: None,
        },
    )
    .await
}

async fn status(State(state): State<ApiState>) -> ApiResult<Json<wire::StatusResponse>> {
    let m = state.raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let mut progress = admin::progress(&state, &m);
    let members = membership
        .nodes()
        .map(|(id, n)| {
            let engine = match *id == m.id {
                true => Some(state.engines().to_string()),
                false => state.peers.get(*id).engine,
            };
            let member = wire::Member {
                api: n.api.clone(),
                engine,
                progress: progress.remove(id),
                raft: n.raft.clone(),
                voter: voters.contains(id),
            };
            (id.to_string(), member)
        })
        .collect();
    Ok(Json(wire::StatusResponse {
        alarms: state.reader.alarms().iter().map(alarm_wire).collect(),
        applied_index: m.last_applied.map(|l| l.index),
        id: m.id,
        last_log_index: m.last_log_index,
        leader: m.current_leader,
        members,
        purged_index: m.purged.map(|l| l.index),
        snapshot_index: m.snapshot.map(|l| l.index),
        state: format!("{:?}", m.state),
        term: m.current_term,
    }))
}

/// How long `cluster init` waits for the new cluster to elect a leader.
const INIT_LEADER_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

async fn cluster_init(
    State(state): State<ApiState>,
    body: JsonBody<Vec<wire::MemberSpec>>,
) -> ApiResult<Json<wire::InitResponse>> {
    let JsonBody(members) = body;
    if members.is_empty() {
        return Err(ApiError::bad_request("a cluster needs at least one member"));
    }
    for m in &members {
        for (field, addr) in [("raft", &m.raft), ("api", &m.api)] {
            if m.id == 0 || !crate::config::is_host_port(addr) {
                return Err(ApiError::bad_request(format!(
                    "member {}: `{field}` `{addr}` is not host:port (no scheme, port not 0), \
                     or the id is 0",
                    m.id
                )));
            }
        }
    }
    let members: BTreeMap<u64, NodeAddr> = members
        .into_iter()
        .map(|m| (m.id, NodeAddr::new(m.raft, m.api)))
        .collect();
    let already = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "already_initialized",
            "this node is already part of a cluster",
        )
    };
    // One init at a time on this node: two would write two root tokens.
    let _one_at_a_time = state.auth.init_lock.lock().await;
    if state.raft.is_initialized().await.unwrap_or(true) {
        return Err(already());
    }
    // The root token is on disk before the cluster exists: a crash in
    // between leaves a token this node installs when it restarts.
    let root_path = state.auth.data_dir.join(auth::ROOT_TOKEN_FILE);
    let had_root = root_path.exists();
    let root = if state.auth.insecure {
        None
    } else {
        Some(
            crate::credentials::load_or_create_token(&root_path, auth::ROOT_KEY_ID)
                .map_err(|e| ApiError::internal(e.to_string()))?,
        )
    };
    let cluster = state
        .identity
        .found_cluster()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    if let Err(e) = state.raft.initialize(members).await {
        // Not founded after all: keep nothing of it.
        let _ = state.identity.unfound_cluster(cluster);
        if !had_root {
            let _ = std::fs::remove_file(&root_path);
        }
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_initialized",
            e.to_string(),
        ));
    }
    state.auth.retire_init_token();
    // Answered once a leader is elected (the members must find each
    // other), so that the next write works.
    let mut metrics = state.raft.metrics();
    let leader = tokio::time::timeout(
        INIT_LEADER_WAIT,
        metrics.wait_for(|m| m.current_leader.is_some()),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .and_then(|m| m.current_leader);
    let warning = leader.is_none().then(|| {
        format!(
            "initialised, but no leader was elected within {INIT_LEADER_WAIT:?}: are the other \
             members running and reachable at the addresses given?"
        )
    });
    let Some(root) = root else {
        return Ok(Json(wire::InitResponse {
            installed: None,
            leader,
            note: None,
            ok: true,
            root_token: None,
            root_token_file: None,
            warning,
        }));
    };
    crate::credentials::keep_root_key(state.clone(), root.clone());
    let installed = leader.is_some()
        && crate::credentials::wait_for_key(
            &state.reader,
            &root,
            std::time::Duration::from_secs(10),
        )
        .await;
    Ok(Json(wire::InitResponse {
        installed: Some(installed),
        leader,
        note: Some(
            "the root token is shown once; it is also in root_token_file (0600) on this node"
                .into(),
        ),
        ok: true,
        root_token: Some(root.expose()),
        root_token_file: Some(
            state
                .auth
                .data_dir
                .join(auth::ROOT_TOKEN_FILE)
                .display()
                .to_string(),
        ),
        warning,
    }))
}

/// The content hash of this node's metadata at its applied index: equal on
/// every node (whatever its engine) once they applied the same entries.
async fn content_hash(State(state): State<ApiState>) -> ApiResult<Json<wire::HashResponse>> {
    let store = state.state_store.clone();
    let applied = state.raft.metrics().borrow().last_applied.map(|l| l.index);
    let hash = tokio::task::spawn_blocking(move || crate::offline::content_hash(&*store))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let after = state.raft.metrics().borrow().last_applied.map(|l| l.index);
    // Only meaningful if nothing was applied while hashing.
    let stable = applied == after;
    Ok(Json(wire::HashResponse {
        applied_index: applied,
        hash,
        stable,
    }))
}

/// `{"status": "ok"}`, or 503 with the error once Raft has stopped.
async fn health(State(state): State<ApiState>) -> (StatusCode, Json<wire::HealthResponse>) {
    match &state.raft.metrics().borrow().running_state {
        Ok(()) => (
            StatusCode::OK,
            Json(wire::HealthResponse {
                error: None,
                status: "ok".into(),
            }),
        ),
        Err(fatal) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(wire::HealthResponse {
                error: Some(fatal.to_string()),
                status: "failed".into(),
            }),
        ),
    }
}

/// Turns axum's own plain-text rejections (a bad path parameter, a bad
/// query string, a wrong method) into the API's JSON error shape.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        s if s.is_client_error() => "bad_request",
        _ => "internal",
    };
    let mut message = String::from_utf8_lossy(&text).into_owned();
    if message.is_empty() {
        message = status.canonical_reason().unwrap_or("error").to_lowercase();
    }
    ApiError::new(status, code, message).into_response()
}

async fn fallback(uri: OriginalUri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.0.path()))
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
            authorize,
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
