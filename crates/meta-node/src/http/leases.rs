//! Leases (`/v1/leases`): grant, keepalive, read, list, revoke. Keepalives
//! and reads go to the leader (others answer `307` to it): only the leader
//! counts deadlines ([`crate::lease`]).
//!
//! A lease belongs to the API key that granted it: only that key (or an
//! `admin`) may keep it alive, bind keys or nodes to it, or revoke it;
//! reading one needs that, or the `read` scope. Granting needs some
//! `kv:write` scope. Revoking deletes the lease's keys, so the caller's
//! `kv:write` must also cover each of them (and `cluster:write` if cluster
//! nodes are bound to it). A read lists only the keys (and nodes) the
//! caller may read.

use axum::Json;
use axum::extract::{Extension, OriginalUri, Path, State};
use meta_client::wire;
use meta_raft::Command;
use meta_raft::model::Lease;

use crate::auth::{Area, Principal, Scope, kv_scope};
use crate::http::{
    ApiError, ApiResult, ApiState, JsonBody, leader_read_barrier, propose, require_kv,
};

fn lease_not_found(id: u64) -> ApiError {
    crate::http::rejection(meta_raft::Rejection::LeaseNotFound { id })
}

/// Who the caller is, as a lease's owner: its API key id (empty on an
/// insecure node).
pub(crate) fn owner_of(principal: &Principal) -> String {
    match principal {
        Principal::Key { id, .. } => id.0.clone(),
        Principal::Init | Principal::Anyone => String::new(),
    }
}

/// Whether `principal` may use lease `lease`: its owner, or an admin.
fn owns(principal: &Principal, lease: &Lease) -> bool {
    matches!(principal, Principal::Anyone)
        || principal.may(&Scope::Admin)
        || matches!(principal, Principal::Key { id, .. } if id.0 == lease.owner)
}

/// Lease `id`, if `principal` may use it (keep it alive, bind to it,
/// revoke it): `404` if it does not exist here, `403` if it is another
/// key's. Its owner never changes, so this node's state can say.
pub(crate) fn owned_lease(state: &ApiState, principal: &Principal, id: u64) -> ApiResult<Lease> {
    let info = state.reader.lease(id).ok_or_else(|| lease_not_found(id))?;
    if !owns(principal, &info.lease) {
        return Err(ApiError::permission_denied(format!(
            "lease {id} belongs to another API key: only it (or an admin) may use it"
        )));
    }
    Ok(info.lease)
}

/// Whether `principal` may read lease `lease`.
fn may_read(principal: &Principal, lease: &Lease) -> bool {
    owns(principal, lease) || principal.may(&Scope::Read)
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
    let cluster_read = Scope::Access {
        area: Area::Cluster,
        write: false,
        prefix: String::new(),
    };
    let nodes = match principal.is_some_and(|p| p.may(&cluster_read)) {
        true => nodes,
        false => Vec::new(),
    };
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
    Extension(principal): Extension<Principal>,
    uri: OriginalUri,
    body: JsonBody<wire::LeaseGrantRequest>,
) -> ApiResult<Json<wire::LeaseResponse>> {
    let JsonBody(body) = body;
    let ttl_secs = body.ttl_secs;
    let owner = owner_of(&principal);
    match propose(&state, &uri, Command::LeaseGrant { ttl_secs, owner }).await? {
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
    Extension(principal): Extension<Principal>,
    uri: OriginalUri,
    Path(id): Path<u64>,
) -> ApiResult<Json<wire::LeaseResponse>> {
    // A read index proves this node leads (a follower answers 307), and
    // that its state holds every lease granted before.
    leader_read_barrier(&state, &uri).await?;
    let term = state.raft.metrics().borrow().current_term;
    let lease = owned_lease(&state, &principal, id)?;
    // Too late: its deadline passed and its expiry is on its way.
    if !state.deadlines.keep_alive(term, &lease) {
        return Err(lease_not_found(id));
    }
    Ok(Json(shown(&state, None, &lease, Vec::new(), Vec::new())))
}

/// `GET /v1/leases/{id}`.
pub(crate) async fn get(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    uri: OriginalUri,
    Path(id): Path<u64>,
) -> ApiResult<Json<wire::LeaseResponse>> {
    leader_read_barrier(&state, &uri).await?;
    let info = state.reader.lease(id).ok_or_else(|| lease_not_found(id))?;
    if !may_read(&principal, &info.lease) {
        return Err(ApiError::permission_denied(format!(
            "lease {id} belongs to another API key: reading it needs that key, `read` or `admin`"
        )));
    }
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
    Extension(principal): Extension<Principal>,
    uri: OriginalUri,
) -> ApiResult<Json<wire::LeasesResponse>> {
    leader_read_barrier(&state, &uri).await?;
    let leases = state
        .reader
        .leases()
        .iter()
        .filter(|lease| may_read(&principal, lease))
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
    owned_lease(&state, &principal, id)?;
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
