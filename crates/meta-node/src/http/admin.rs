//! Changing the Raft membership so that a mistake can be undone and a
//! change cannot leave the cluster without a working majority:
//!
//! - `POST /v1/cluster/learners` adds a learner and waits (bounded) until
//!   it caught up, or says why not (never reached, or how far behind);
//! - `DELETE /v1/cluster/members/{id}` removes a learner, or a voter
//!   (through joint consensus);
//! - `POST /v1/cluster/membership` sets the voters.
//!
//! Before a change, the leader checks that every *new* voter is ready
//! (answered recently and caught up) and that the voters after the change
//! include a majority of ready nodes; otherwise the change is refused up
//! front with `409`, since a committed change to an unworkable voter set
//! stops every later write. `force` skips the check (a repair of last
//! resort). Every change runs on the leader; other nodes redirect.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Json;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::StatusCode;
use meta_client::wire;
use meta_raft::types::NodeAddr;
use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, RaftMetrics};
use serde::Deserialize;

use crate::http::{ApiError, ApiResult, ApiState, JsonBody};

/// A node whose replication is this many entries behind the leader's last
/// log entry still counts as caught up.
pub const CAUGHT_UP_LAG: u64 = 1000;

/// How long `add-learner` waits for the learner by default.
pub const DEFAULT_LEARNER_WAIT: Duration = Duration::from_secs(30);

type Metrics = RaftMetrics<u64, NodeAddr>;

/// Where a member stands, as the leader sees it.
pub(super) struct Progress {
    /// The last log index known to be on it (`None`: nothing yet).
    pub(super) matched: Option<u64>,
    /// Whether it answered within the readiness window.
    pub(super) answering: bool,
    /// The last error reaching it, if its last call failed.
    last_error: Option<String>,
}

impl Progress {
    pub(super) fn of(state: &ApiState, m: &Metrics, id: u64) -> Progress {
        if id == m.id {
            return Progress {
                matched: m.last_log_index,
                answering: true,
                last_error: None,
            };
        }
        let matched = m
            .replication
            .as_ref()
            .and_then(|r| r.get(&id).cloned().flatten())
            .map(|log| log.index);
        let contact = state.peers.get(id);
        Progress {
            matched,
            answering: state.peers.answered_within(id, recent(state)),
            last_error: contact.last_error,
        }
    }

    fn ready(&self, m: &Metrics) -> bool {
        let last = m.last_log_index.unwrap_or(0);
        self.answering
            && self
                .matched
                .is_some_and(|matched| matched.saturating_add(CAUGHT_UP_LAG) >= last)
    }

    /// Why it is not ready, in words.
    fn why_not(&self, m: &Metrics) -> String {
        match (&self.matched, self.answering) {
            (_, false) => match &self.last_error {
                Some(e) => format!("it does not answer ({e})"),
                None => "it has not answered recently".to_string(),
            },
            (None, true) => "it holds none of the log yet".to_string(),
            (Some(matched), true) => format!(
                "it is behind: it has the log up to index {matched} of {}",
                m.last_log_index.unwrap_or(0)
            ),
        }
    }
}

/// How recent an answer must be for a node to count as reachable.
fn recent(state: &ApiState) -> Duration {
    Duration::from_millis(state.raft.config().election_timeout_max.saturating_mul(2))
}

/// This node's metrics if it leads; else the redirect to the leader.
fn leading(state: &ApiState, uri: &OriginalUri) -> Result<Metrics, ApiError> {
    let m = state.raft.metrics().borrow().clone();
    if m.current_leader == Some(m.id) && m.replication.is_some() {
        return Ok(m);
    }
    let leader = m
        .current_leader
        .and_then(|id| m.membership_config.membership().get_node(&id).cloned());
    Err(ApiError::not_leader(state, m.current_leader, leader, uri))
}

fn raft_error(
    state: &ApiState,
    uri: &OriginalUri,
    e: RaftError<u64, ClientWriteError<u64, NodeAddr>>,
) -> ApiError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            ApiError::not_leader(state, f.leader_id, f.leader_node, uri)
        }
        e => ApiError::new(StatusCode::CONFLICT, "membership", e.to_string()),
    }
}

/// Refuses `voters` unless every voter not in `current` is ready and a
/// majority of `voters` is.
fn check_voters(
    state: &ApiState,
    m: &Metrics,
    current: &BTreeSet<u64>,
    voters: &BTreeSet<u64>,
) -> Result<(), ApiError> {
    let mut ready = 0;
    for &id in voters {
        let progress = Progress::of(state, m, id);
        if progress.ready(m) {
            ready += 1;
        } else if !current.contains(&id) {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "voter_not_ready",
                format!(
                    "node {id} cannot become a voter yet: {}; wait until `meta-node cluster \
                     status` shows it caught up, check that it runs and is reachable at its \
                     address, or remove it (`meta-node cluster remove-member {id}`)",
                    progress.why_not(m)
                ),
            ));
        }
    }
    if ready * 2 <= voters.len() {
        let not_ready: Vec<String> = voters
            .iter()
            .filter(|&&id| !Progress::of(state, m, id).ready(m))
            .map(|id| format!("node {id}: {}", Progress::of(state, m, *id).why_not(m)))
            .collect();
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_quorum",
            format!(
                "voters {voters:?} would have {ready} of {} ready, not a majority, and every \
                 write would stop ({}); `--force` (API: `force`) changes them anyway",
                voters.len(),
                not_ready.join("; ")
            ),
        ));
    }
    Ok(())
}

/// Adds a learner, then waits until it holds the log up to the entry that
/// added it.
pub(crate) async fn add_learner(
    State(state): State<ApiState>,
    uri: OriginalUri,
    body: JsonBody<wire::LearnerRequest>,
) -> ApiResult<Json<wire::LearnerResponse>> {
    let JsonBody(body) = body;
    if body.id == 0 {
        return Err(ApiError::bad_request("node ids start at 1"));
    }
    for (field, addr) in [("raft", &body.raft), ("api", &body.api)] {
        if !crate::config::is_host_port(addr) {
            return Err(ApiError::bad_request(format!(
                "`{field}`: `{addr}` is not host:port (no scheme, port not 0)"
            )));
        }
    }
    let wait = body
        .wait_secs
        .map_or(DEFAULT_LEARNER_WAIT, Duration::from_secs)
        .min(state.longest_wait);
    let m = leading(&state, &uri)?;
    super::transfer_gate(&state)?;
    let membership = m.membership_config.membership();
    if membership.voter_ids().any(|v| v == body.id) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_voter",
            format!("node {} is a voter already", body.id),
        ));
    }
    let node = NodeAddr::new(body.raft.clone(), body.api);
    // A learner added at a wrong address is moved, not kept (adding
    // never replaces a known node's address).
    let added = match membership.get_node(&body.id) {
        Some(known) if *known != node => {
            state
                .raft
                .change_membership(
                    ChangeMembers::SetNodes(BTreeMap::from([(body.id, node)])),
                    true,
                )
                .await
        }
        _ => state.raft.add_learner(body.id, node, false).await,
    }
    .map_err(|e| raft_error(&state, &uri, e))?;
    let index = added.log_id.index;
    let id = body.id;
    let mut metrics = state.raft.metrics();
    let caught_up = tokio::time::timeout(
        wait,
        metrics.wait_for(|m| {
            m.replication.is_none()
                || m.replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned().flatten())
                    .is_some_and(|log| log.index >= index)
        }),
    )
    .await;
    let m = state.raft.metrics().borrow().clone();
    let progress = Progress::of(&state, &m, id);
    match caught_up {
        Ok(Ok(_)) if m.replication.is_some() => Ok(Json(wire::LearnerResponse {
            caught_up: true,
            log_index: index,
            matched_index: progress.matched,
            ok: true,
        })),
        _ if wait.is_zero() => Ok(Json(wire::LearnerResponse {
            caught_up: false,
            log_index: index,
            matched_index: progress.matched,
            ok: true,
        })),
        Ok(_) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "leader_changed",
            format!(
                "node {id} was added as a learner (log index {index}), but this node stopped \
                 leading before it caught up; see `meta-node cluster status` on the new leader"
            ),
        )),
        Err(_) => {
            let why = match (&progress.matched, progress.answering) {
                (None, false) => format!(
                    "it was never reached at {}{}",
                    body.raft,
                    progress
                        .last_error
                        .as_deref()
                        .map(|e| format!(" ({e})"))
                        .unwrap_or_default()
                ),
                _ => progress.why_not(&m),
            };
            Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "learner_not_caught_up",
                format!(
                    "node {id} was added as a learner (log index {index}) but has not caught \
                     up within {wait:?}: {why}. It stays a learner (it does not vote, so the \
                     cluster is unaffected) until it catches up or you remove it with \
                     `meta-node cluster remove-member {id}`"
                ),
            ))
        }
    }
}

/// `?force=true`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct ForceQuery {
    #[serde(default)]
    force: bool,
}

/// Removes a learner, or a voter (the remaining voters must keep a ready
/// majority unless `force`).
pub(crate) async fn remove_member(
    State(state): State<ApiState>,
    uri: OriginalUri,
    Path(id): Path<u64>,
    Query(query): Query<ForceQuery>,
) -> ApiResult<Json<wire::RemoveMemberResponse>> {
    let m = leading(&state, &uri)?;
    super::transfer_gate(&state)?;
    let membership = m.membership_config.membership();
    if membership.get_node(&id).is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_a_member",
            format!("node {id} is not a member of this cluster"),
        ));
    }
    let voters: BTreeSet<u64> = membership.voter_ids().collect();
    let was_voter = voters.contains(&id);
    if id == m.id {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "is_leader",
            format!(
                "node {id} leads: move leadership first (`meta-node cluster transfer-leader N`), \
                 then remove it on the new leader"
            ),
        ));
    }
    let changes = if was_voter {
        let remaining: BTreeSet<u64> = voters.iter().copied().filter(|v| *v != id).collect();
        if remaining.is_empty() {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "last_voter",
                format!("node {id} is the last voter; a cluster needs one"),
            ));
        }
        if !query.force {
            check_voters(&state, &m, &voters, &remaining)?;
        }
        ChangeMembers::RemoveVoters(BTreeSet::from([id]))
    } else {
        ChangeMembers::RemoveNodes(BTreeSet::from([id]))
    };
    // A voter is first made a learner: as a learner it still receives the
    // entry that ends its vote, so, kept running, it never campaigns. (Cut
    // off as a voter, openraft leaves it in the joint configuration, where
    // it stays a voter in its own eyes and keeps raising its term, which
    // unseats the leader the day it is added back.)
    if was_voter {
        state
            .raft
            .change_membership(changes, true)
            .await
            .map_err(|e| raft_error(&state, &uri, e))?;
        wait_replicated_to(&state, id).await;
    }
    let changed = state
        .raft
        .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
        .await
        .map_err(|e| raft_error(&state, &uri, e))?;
    Ok(Json(wire::RemoveMemberResponse {
        log_index: changed.log_id.index,
        ok: true,
        removed: id,
        was: if was_voter { "voter" } else { "learner" }.into(),
    }))
}

/// Waits (a few seconds at most) until node `id` holds this leader's log:
/// the demoted voter then knows it is a learner. A node that is down does
/// not hold anything up: it learns when it comes back, or never if removed.
async fn wait_replicated_to(state: &ApiState, id: u64) {
    let last = state.raft.metrics().borrow().last_log_index;
    let mut metrics = state.raft.metrics();
    let _ = tokio::time::timeout(
        Duration::from_secs(3),
        metrics.wait_for(|m| {
            m.replication.is_none()
                || m.replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned().flatten())
                    .map(|l| l.index)
                    >= last
        }),
    )
    .await;
}

/// `POST /v1/cluster/leader`: hands leadership to voter `to`, which must
/// hold this leader's whole log, and answers once it leads.
///
/// openraft 0.9 has no leader transfer; this is the Raft thesis's
/// (§3.10): the leader stops taking writes (they are answered `503
/// leader_transfer`, retried by clients) and sending heartbeats, waits for
/// its followers' leader lease to run out, and tells `to` to start an
/// election at once (`TimeoutNow` on the peer port); `to`, up to date,
/// wins it before any other follower's election timer fires.
pub(crate) async fn transfer_leader(
    State(state): State<ApiState>,
    uri: OriginalUri,
    body: JsonBody<wire::TransferLeaderRequest>,
) -> ApiResult<Json<wire::TransferLeaderResponse>> {
    let JsonBody(wire::TransferLeaderRequest { to }) = body;
    let m = leading(&state, &uri)?;
    if to == m.id {
        return Ok(Json(wire::TransferLeaderResponse {
            ok: true,
            leader: m.id,
            term: m.current_term,
        }));
    }
    let membership = m.membership_config.membership();
    let Some(target) = membership.get_node(&to).cloned() else {
        return Err(ApiError::not_found(format!(
            "node {to} is not a member of this cluster"
        )));
    };
    if !membership.voter_ids().any(|v| v == to) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_a_voter",
            format!("node {to} is a learner: only a voter can lead (promote it first)"),
        ));
    }
    if state
        .transfer
        .compare_exchange(0, to, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "transfer_in_progress",
            "a leader transfer is under way already",
        ));
    }
    // Whatever happens, even if the client goes away and this future is
    // dropped mid-way: heartbeats and elections come back, writes resume.
    let _restore = Restore(&state);
    hand_over(&state, to, &target, m.current_term)
        .await
        .map(Json)
}

/// Undoes what a leader transfer paused, when dropped.
struct Restore<'a>(&'a ApiState);

impl Drop for Restore<'_> {
    fn drop(&mut self) {
        let runtime = self.0.raft.runtime_config();
        runtime.heartbeat(true);
        runtime.elect(true);
        self.0.transfer.store(0, Ordering::Release);
    }
}

/// The steps of [`transfer_leader`] once writes stop.
async fn hand_over(
    state: &ApiState,
    to: u64,
    target: &NodeAddr,
    term: u64,
) -> ApiResult<wire::TransferLeaderResponse> {
    let timeout_max = Duration::from_millis(state.raft.config().election_timeout_max);
    // Writes already taken finish; then `to` must hold the whole log.
    let mut metrics = state.raft.metrics();
    let caught_up = tokio::time::timeout(
        Duration::from_secs(5),
        metrics.wait_for(|m| {
            m.replication.as_ref().is_some_and(|r| {
                r.get(&to)
                    .cloned()
                    .flatten()
                    .map(|l| l.index)
                    .is_some_and(|matched| Some(matched) >= m.last_log_index)
            })
        }),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    if !caught_up {
        let m = state.raft.metrics().borrow().clone();
        let p = Progress::of(state, &m, to);
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_caught_up",
            format!(
                "node {to} does not hold this leader's log (index {}) within 5s: {}",
                m.last_log_index.unwrap_or(0),
                p.why_not(&m)
            ),
        ));
    }
    let runtime = state.raft.runtime_config();
    runtime.heartbeat(false);
    runtime.elect(false);
    tracing::info!("handing leadership over to node {to} (term {term})");
    // The followers' lease on this leader runs out one maximal election
    // timeout after its last message.
    tokio::time::sleep(timeout_max + Duration::from_millis(50)).await;
    // An entry proposed around the gate (a lease expiry, an alarm) must be
    // on the target too, or the others refuse it their votes.
    let m = state.raft.metrics().borrow().clone();
    let matched = Progress::of(state, &m, to).matched;
    if matched < m.last_log_index {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "transfer_failed",
            format!(
                "node {to} fell behind during the transfer (has {matched:?} of {:?}); \
                 this node still leads: retry",
                m.last_log_index
            ),
        ));
    }
    if let Err(e) = state
        .network
        .timeout_now(to, target, state.node_id, term)
        .await
    {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "transfer_failed",
            format!("node {to} did not start an election: {e}; this node still leads"),
        ));
    }
    let mut metrics = state.raft.metrics();
    let moved = tokio::time::timeout(
        timeout_max * 4 + Duration::from_secs(2),
        metrics.wait_for(|m| m.current_leader.is_some() && m.current_leader != Some(state.node_id)),
    )
    .await
    .is_ok_and(|r| r.is_ok());
    let m = state.raft.metrics().borrow().clone();
    match (moved, m.current_leader) {
        (true, Some(leader)) if leader == to => Ok(wire::TransferLeaderResponse {
            ok: true,
            leader,
            term: m.current_term,
        }),
        (_, Some(leader)) if leader != state.node_id => Err(ApiError::new(
            StatusCode::CONFLICT,
            "transfer_failed",
            format!(
                "node {leader} won the election (term {}), not node {to}",
                m.current_term
            ),
        )),
        _ => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "transfer_failed",
            format!(
                "node {to} did not take over within {:?}; leader now: {}",
                timeout_max * 4 + Duration::from_secs(2),
                m.current_leader
                    .map_or("none".into(), |l| format!("node {l}"))
            ),
        )),
    }
}

/// `POST /v1/cluster/membership`.
/// Sets the voters: every one must be a member already (a learner, or a
/// voter); new ones must be ready, and a majority of them.
pub(crate) async fn change_membership(
    State(state): State<ApiState>,
    uri: OriginalUri,
    body: JsonBody<wire::MembershipRequest>,
) -> ApiResult<Json<wire::MembershipResponse>> {
    let JsonBody(body) = body;
    if body.voters.is_empty() {
        return Err(ApiError::bad_request("a cluster needs at least one voter"));
    }
    let m = leading(&state, &uri)?;
    super::transfer_gate(&state)?;
    let membership = m.membership_config.membership();
    if let Some(stranger) = body
        .voters
        .iter()
        .find(|id| membership.get_node(id).is_none())
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_a_member",
            format!(
                "node {stranger} is not a member: add it as a learner first \
                 (`meta-node cluster add-learner {stranger} RAFT_ADDR API_ADDR`)"
            ),
        ));
    }
    let current: BTreeSet<u64> = membership.voter_ids().collect();
    if !body.force {
        check_voters(&state, &m, &current, &body.voters)?;
    }
    let changed = state
        .raft
        .change_membership(body.voters, body.retain)
        .await
        .map_err(|e| raft_error(&state, &uri, e))?;
    Ok(Json(wire::MembershipResponse {
        log_index: changed.log_id.index,
        ok: true,
    }))
}

/// Each member's progress as this node sees it, for `cluster status`:
/// known only on the leader.
pub(crate) fn progress(state: &ApiState, m: &Metrics) -> BTreeMap<u64, wire::Progress> {
    if m.replication.is_none() {
        return BTreeMap::new();
    }
    m.membership_config
        .membership()
        .nodes()
        .map(|(&id, _)| {
            let p = Progress::of(state, m, id);
            (
                id,
                wire::Progress {
                    caught_up: p.ready(m),
                    matched_index: p.matched,
                    reachable: p.answering,
                    last_error: p.last_error,
                },
            )
        })
        .collect()
}
