//! Leases (`/v1/leases`): grant, keepalive, read, list, revoke. Keepalives
//! and reads go to the leader (others answer `307` to it): only the leader
//! counts deadlines ([`crate::lease`]).
//!
//! Granting and keeping alive need some `kv:write` scope. Revoking deletes
//! the lease's keys, so the caller's `kv:write` must cover each of them
//! (and `cluster:write` if cluster nodes are bound to it). A read lists
//! only the keys the caller may read.

use axum::Json;
use axum::extract::{Extension, OriginalUri, Path, State};
use meta_client::wire;
use meta_raft::Command;
use meta_raft::model::Lease;

use crate::auth::{Area, Principal, Scope, kv_scope};
use crate::http::{ApiError, ApiResult, ApiState, JsonBody, propose, read_barrier, require_kv};

fn lease_not_found(id: u64) -> ApiError {
    crate::http::rejection(meta_raft::Rejection::LeaseNotFound { id })
}

/// The lease as answered, with what of it the caller may see.
fn shown(
    state: &ApiState,
    principal: Option<&Principal>,
    lease: &Lease,
    keys: Vec<Vec<u8>>,
    nodes: Vec<u64>,
) -> wire::LeaseResponse {
    let keys = keys
        .into_iter()
        .map(|k| String::from_utf8_lossy(&k).into_owned())
        .filter(|k| principal.is_some_and(|p| p.may(&kv_scope(false, k))))
        .collect();
    wire::LeaseResponse {
        id: lease.id,
        keys,
        nodes,
        remaining_secs: state.deadlines.remaining(lease).as_secs_f64().ceil() as u64,
        revision: state.reader.revision(),
        ttl_secs: lease.ttl_secs,
    }
}

/// `POST /v1/leases`.
pub(crate) async fn grant(
    State(state): State<ApiState>,
    uri: OriginalUri,
    body: JsonBody<wire::LeaseGrantRequest>,
) -> ApiResult<Json<wire::LeaseResponse>> {
    let JsonBody(body) = body;
    let ttl_secs = body.ttl_secs;
    match propose(&state, &uri, Command::LeaseGrant { ttl_secs }).await? {
        meta_raft::Response::LeaseGranted { id, revision } => Ok(Json(wire::LeaseResponse {
            id,
            keys: Vec::new(),
            nodes: Vec::new(),
            remaining_secs: ttl_secs,
            revision,
            ttl_secs,
        })),
        other => Err(ApiError::internal(format!(
            "a lease grant was answered {other:?}"
        ))),
    }
}

/// `POST /v1/leases/{id}/keepalive`.
pub(crate) async fn keepalive(
    State(state): State<ApiState>,
    uri: OriginalUri,
    Path(id): Path<u64>,
) -> ApiResult<Json<wire::LeaseResponse>> {
    // A read index proves this node leads (a follower answers 307), and
    // that its state holds every lease granted before.
    read_barrier(&state, &uri, false).await?;
    let term = state.raft.metrics().borrow().current_term;
    let info = state.reader.lease(id).ok_or_else(|| lease_not_found(id))?;
    state.deadlines.keep_alive(term, &info.lease);
    Ok(Json(shown(
        &state,
        None,
        &info.lease,
        Vec::new(),
        Vec::new(),
    )))
}

/// `GET /v1/leases/{id}`.
pub(crate) async fn get(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    uri: OriginalUri,
    Path(id): Path<u64>,
) -> ApiResult<Json<wire::LeaseResponse>> {
    read_barrier(&state, &uri, false).await?;
    let info = state.reader.lease(id).ok_or_else(|| lease_not_found(id))?;
    Ok(Json(shown(
        &state,
        Some(&principal),
        &info.lease,
        info.keys,
        info.nodes,
    )))
}

/// `GET /v1/leases`.
pub(crate) async fn list(
    State(state): State<ApiState>,
    uri: OriginalUri,
) -> ApiResult<Json<wire::LeasesResponse>> {
    read_barrier(&state, &uri, false).await?;
    let leases = state
        .reader
        .leases()
        .iter()
        .map(|lease| shown(&state, None, lease, Vec::new(), Vec::new()))
        .collect();
    Ok(Json(wire::LeasesResponse { leases }))
}

/// `DELETE /v1/leases/{id}`.
pub(crate) async fn revoke(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    uri: OriginalUri,
    Path(id): Path<u64>,
) -> ApiResult<Json<wire::WriteResponse>> {
    let info = state.reader.lease(id).ok_or_else(|| lease_not_found(id))?;
    for key in &info.keys {
        require_kv(&principal, true, &String::from_utf8_lossy(key))?;
    }
    let cluster_write = Scope::Access {
        area: Area::Cluster,
        write: true,
        prefix: String::new(),
    };
    if !info.nodes.is_empty() && !principal.may(&cluster_write) {
        return Err(ApiError::permission_denied(format!(
            "lease {id} holds cluster nodes {:?}: revoking it marks them down, which needs \
             `cluster:write`",
            info.nodes
        )));
    }
    match propose(&state, &uri, Command::LeaseRevoke { id }).await? {
        meta_raft::Response::Applied { revision } => Ok(Json(wire::WriteResponse {
            ok: true,
            revision,
            deleted: None,
        })),
        other => Err(ApiError::internal(format!(
            "a lease revocation was answered {other:?}"
        ))),
    }
}
