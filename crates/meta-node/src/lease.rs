//! Lease expiry: the leader's clock, Raft's decision.
//!
//! A lease's deadline is not replicated. The leader keeps one per lease
//! in memory — now + TTL when it first sees the lease, and again at every
//! keepalive (which only the leader accepts, after a read index proves it
//! still leads) — and when one passes, it proposes
//! [`Command::LeaseExpire`]: the expiry is then a log entry, applied at
//! the same revision on every replica and engine, never decided from a
//! follower's clock. A node that becomes leader starts every deadline
//! afresh (now + TTL), as etcd does: a failover never expires a lease
//! whose owner kept sending keepalives to the old leader.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use meta_raft::model::{Lease, LeaseId};
use meta_raft::types::Raft;
use meta_raft::{Command, MetadataReader, Proposer};
use tokio::time::Instant;

/// How often the leader looks for expired leases.
pub const CHECK_EVERY: Duration = Duration::from_millis(100);

/// How long the leader waits before proposing an expiry again, when a
/// proposal did not get through.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Expiries proposed per look at most (the rest at the next look).
const EXPIRE_PER_LOOK: usize = 1024;

/// The leader's lease deadlines (empty on other nodes).
#[derive(Clone, Debug, Default)]
pub struct Deadlines {
    inner: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    /// The term these deadlines were counted in (`None`: not leading).
    term: Option<u64>,
    deadlines: HashMap<LeaseId, Instant>,
    /// Leases whose deadline passed: their expiry is proposed (again at
    /// the instant given, if it is not applied by then).
    expiring: HashMap<LeaseId, Instant>,
}

impl Deadlines {
    /// A keepalive, on the leader of `term` (checked by a read index): the
    /// lease gets its full TTL again — unless its deadline already passed
    /// (its expiry is on its way): `false`, the lease is lost.
    #[must_use]
    pub fn keep_alive(&self, term: u64, lease: &Lease) -> bool {
        let mut state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if state.term != Some(term) {
            // A new term: every deadline starts afresh.
            state.term = Some(term);
            state.deadlines.clear();
            state.expiring.clear();
        }
        let now = Instant::now();
        if state.expiring.contains_key(&lease.id) {
            return false;
        }
        state
            .deadlines
            .insert(lease.id, now + Duration::from_secs(lease.ttl_secs));
        true
    }

    /// The time `lease` has left, as this leader counts it (its full TTL if
    /// it is not counted yet).
    pub fn remaining(&self, lease: &Lease) -> Duration {
        let state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        match state.deadlines.get(&lease.id) {
            Some(deadline) => deadline.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(lease.ttl_secs),
        }
    }

    /// One look: while leading in `term` (`None`: not leading), counts
    /// every live lease and returns those whose deadline passed (their
    /// next look is [`RETRY_AFTER`] away, in case the expiry fails).
    fn expired(&self, term: Option<u64>, leases: &[Lease], now: Instant) -> Vec<LeaseId> {
        let mut state = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if state.term != term {
            state.term = term;
            state.deadlines.clear();
            state.expiring.clear();
        }
        if term.is_none() {
            return Vec::new();
        }
        let live: HashMap<LeaseId, &Lease> = leases.iter().map(|l| (l.id, l)).collect();
        state.deadlines.retain(|id, _| live.contains_key(id));
        state.expiring.retain(|id, _| live.contains_key(id));
        let State {
            deadlines,
            expiring,
            ..
        } = &mut *state;
        let mut expired = Vec::new();
        for lease in leases {
            if let Some(retry) = expiring.get_mut(&lease.id) {
                if *retry <= now && expired.len() < EXPIRE_PER_LOOK {
                    expired.push(lease.id);
                    *retry = now + RETRY_AFTER;
                }
                continue;
            }
            let deadline = deadlines
                .entry(lease.id)
                .or_insert_with(|| now + Duration::from_secs(lease.ttl_secs));
            if *deadline <= now && expired.len() < EXPIRE_PER_LOOK {
                expired.push(lease.id);
                expiring.insert(lease.id, now + RETRY_AFTER);
            }
        }
        expired
    }
}

/// Runs the expiry loop of this node (it acts while it leads).
pub async fn run(
    node_id: u64,
    raft: Raft,
    proposer: Proposer,
    reader: MetadataReader,
    deadlines: Deadlines,
) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let term = {
            let metrics = raft.metrics().borrow().clone();
            (metrics.current_leader == Some(node_id) && metrics.state.is_leader())
                .then_some(metrics.current_term)
        };
        let expired = deadlines.expired(term, &reader.leases(), Instant::now());
        if expired.is_empty() {
            continue;
        }
        tracing::info!(
            count = expired.len(),
            first = expired[0],
            "expiring leases whose TTL passed without a keepalive"
        );
        // One proposal each: concurrent proposals share log entries (group
        // commit), and each lease still ends at its own revision. Not
        // awaited here: a slow commit must not hold up the next look.
        for id in expired {
            let proposer = proposer.clone();
            tokio::spawn(async move {
                if let Err(e) = proposer.propose(Command::LeaseExpire { id }).await {
                    tracing::warn!(lease = id, "proposing a lease expiry: {e}");
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(id: u64, ttl_secs: u64) -> Lease {
        Lease {
            id,
            ttl_secs,
            owner: String::new(),
        }
    }

    #[test]
    fn a_keepalive_after_the_deadline_does_not_revive_the_lease() {
        let deadlines = Deadlines::default();
        let t0 = Instant::now() - Duration::from_secs(5);
        let leases = [lease(1, 1)];
        assert!(deadlines.expired(Some(1), &leases, t0).is_empty());
        assert_eq!(deadlines.expired(Some(1), &leases, Instant::now()), [1]);
        assert!(
            !deadlines.keep_alive(1, &leases[0]),
            "its expiry is on its way"
        );
    }

    #[test]
    fn deadlines_count_only_while_leading_and_restart_with_each_term() {
        let deadlines = Deadlines::default();
        let t0 = Instant::now();
        let leases = [lease(1, 2), lease(2, 10)];
        assert!(deadlines.expired(Some(5), &leases, t0).is_empty());
        let later = t0 + Duration::from_secs(3);
        assert_eq!(deadlines.expired(Some(5), &leases, later), [1]);
        // Proposed once; tried again only after RETRY_AFTER.
        assert!(deadlines.expired(Some(5), &leases, later).is_empty());
        // A new term: every lease gets its full TTL again.
        assert!(deadlines.expired(Some(6), &leases, later).is_empty());
        assert!(
            deadlines
                .expired(Some(6), &leases, later + Duration::from_secs(1))
                .is_empty()
        );
        // Not leading: nothing, and nothing remembered.
        assert!(
            deadlines
                .expired(None, &leases, later + Duration::from_secs(60))
                .is_empty()
        );
        assert!(deadlines.inner.lock().unwrap().deadlines.is_empty());
    }

    #[test]
    fn a_keepalive_restarts_the_ttl_and_gone_leases_are_forgotten() {
        let deadlines = Deadlines::default();
        let t0 = Instant::now();
        let leases = [lease(1, 1)];
        assert!(deadlines.expired(Some(1), &leases, t0).is_empty());
        assert!(deadlines.keep_alive(1, &leases[0]));
        assert!(deadlines.remaining(&leases[0]) > Duration::from_millis(500));
        assert!(deadlines.expired(Some(1), &[], t0).is_empty());
        assert!(deadlines.inner.lock().unwrap().deadlines.is_empty());
        assert_eq!(deadlines.remaining(&lease(9, 7)), Duration::from_secs(7));
    }
}
