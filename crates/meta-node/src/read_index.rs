//! Linearizable reads share leadership confirmations (read-index batching,
//! as etcd's `linearizableReadLoop` and TiKV do).
//!
//! A linearizable read needs a read index: the leader confirms with a
//! quorum that it still leads, and the read waits until the state machine
//! applied what was committed when the confirmation started. openraft's
//! `ensure_linearizable` does that, one heartbeat round per call: 64
//! concurrent reads cost 64 quorum rounds. Here one task makes the calls,
//! one at a time, and every read that arrived **before** a call started
//! takes that call's answer. A read that arrives while a call is in flight
//! waits for the next one: the confirmation it gets started after it
//! arrived, so whatever was committed before the read began is applied
//! before it is answered — linearizable, as one call per read is.

use std::time::Duration;

use meta_raft::types::{NodeAddr, Raft};
use tokio::sync::{mpsc, oneshot};

/// Why a read index could not be had.
#[derive(Clone, Debug)]
pub enum ReadError {
    /// This node does not lead; the leader, if known.
    NotLeader {
        /// Its id.
        leader_id: Option<u64>,
        /// Its addresses.
        leader: Option<NodeAddr>,
    },
    /// No confirmation within the deadline, or Raft failed.
    Unavailable(String),
}

type Waiter = oneshot::Sender<Result<(), ReadError>>;

/// The read-index batcher of one node. Cheap to clone.
#[derive(Clone)]
pub struct ReadIndex {
    tx: mpsc::Sender<Waiter>,
}

impl ReadIndex {
    /// Starts the batching task for `raft`; a confirmation that takes
    /// longer than `timeout` answers its reads `Unavailable`. `batch`
    /// records how many reads each confirmation served. Needs a tokio
    /// runtime.
    pub fn start(raft: Raft, timeout: Duration, batch: metrics::Histogram) -> ReadIndex {
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(run(raft, rx, timeout, batch));
        ReadIndex { tx }
    }

    /// Waits until this node may answer a linearizable read: it leads,
    /// confirmed after this call began, and applied everything committed
    /// before.
    pub async fn barrier(&self) -> Result<(), ReadError> {
        let (waiter, answer) = oneshot::channel();
        let stopped = || ReadError::Unavailable("the node is shutting down".into());
        self.tx.send(waiter).await.map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(
    raft: Raft,
    mut rx: mpsc::Receiver<Waiter>,
    timeout: Duration,
    batch: metrics::Histogram,
) {
    while let Some(first) = rx.recv().await {
        // Every read queued now arrived before the confirmation below
        // starts: its answer is theirs. Later ones wait for the next.
        let mut waiters = vec![first];
        while let Ok(waiter) = rx.try_recv() {
            waiters.push(waiter);
        }
        // A reader that gave up (its request timed out) needs no answer.
        waiters.retain(|w| !w.is_closed());
        if waiters.is_empty() {
            continue;
        }
        batch.record(waiters.len() as f64);
        let answer = match tokio::time::timeout(timeout, raft.ensure_linearizable()).await {
            Err(_) => Err(ReadError::Unavailable(format!(
                "no read index within {timeout:?} (no quorum?)"
            ))),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(match e.forward_to_leader() {
                Some(f) => ReadError::NotLeader {
                    leader_id: f.leader_id,
                    leader: f.leader_node.clone(),
                },
                None => ReadError::Unavailable(e.to_string()),
            }),
        };
        for waiter in waiters {
            let _ = waiter.send(answer.clone());
        }
    }
}
