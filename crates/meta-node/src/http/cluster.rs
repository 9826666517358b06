//! The cluster's own routes: status, initialisation, the content hash
//! and health.

use super::*;

pub(super) async fn status(State(state): State<ApiState>) -> ApiResult<Json<wire::StatusResponse>> {
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
pub(super) const INIT_LEADER_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

pub(super) async fn cluster_init(
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
pub(super) async fn content_hash(
    State(state): State<ApiState>,
) -> ApiResult<Json<wire::HashResponse>> {
    let sm = state.state_machine.clone();
    let (applied, hash) = tokio::task::spawn_blocking(move || {
        // A pinned view of the store with the applied state it holds: the
        // hash is of exactly that index, whatever is applied meanwhile.
        let backup = sm.backup().map_err(|e| ApiError::internal(e.to_string()))?;
        let hash = crate::offline::hash_stream(backup.stream)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok::<_, ApiError>((backup.applied.last_applied.map(|l| l.index), hash))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(Json(wire::HashResponse {
        applied_index: applied,
        hash,
        stable: true,
    }))
}

/// `{"status": "ok"}`, or 503 with the error once Raft has stopped.
pub(super) async fn health(
    State(state): State<ApiState>,
) -> (StatusCode, Json<wire::HealthResponse>) {
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
