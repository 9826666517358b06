//! The metadata maps' routes: the cluster map, the shard map, API keys,
//! config entries and alarms.

use super::*;

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

pub(super) async fn nodes_get(
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
pub(super) struct NodeQuery {
    /// Bind the node to this lease: it is marked `Down` when the lease
    /// ends.
    lease: Option<u64>,
}

pub(super) async fn node_put(
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

pub(super) async fn node_delete(
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

pub(super) async fn shards_get(
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

pub(super) async fn shards_put(
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
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

pub(super) async fn apikey_create(
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

pub(super) async fn apikey_list(
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

pub(super) async fn apikey_revoke(
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

pub(super) async fn apikey_verify(
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

pub(super) async fn config_list(
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

pub(super) async fn config_get(
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

pub(super) async fn config_put(
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

pub(super) async fn config_delete(
    State(state): State<ApiState>,
    uri: OriginalUri,
    Path(name): Path<String>,
) -> ApiResult<Json<wire::OkResponse>> {
    propose_ok(&state, &uri, Command::DeleteConfig { name }).await
}

pub(super) fn alarm_wire(a: &meta_raft::Alarm) -> wire::Alarm {
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
pub(super) async fn alarms_get(
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
pub(super) async fn alarms_clear(
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
