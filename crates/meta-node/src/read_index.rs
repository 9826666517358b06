//! Linearizable reads share leadership confirmations (read-index batching,
//! as etcd's `linearizableReadLoop` and TiKV do), on the leader and on
//! followers.
//!
//! A linearizable read needs a read index: the leader confirms with a
//! quorum that it still leads, and the read waits until the state machine
//! applied what was committed when the confirmation started. openraft's
//! confirmation costs one heartbeat round per call: 64 concurrent reads
//! would cost 64 quorum rounds. Here one task per node makes the calls,
//! one at a time, and every read that arrived **before** a call started
//! takes that call's answer. A read that arrives while a call is in flight
//! waits for the next one: the confirmation it gets started after it
//! arrived, so whatever was committed before the read began is applied
//! before it is answered — linearizable, as one call per read is.
//!
//! **Followers serve linearizable reads too.** A follower's task asks the
//! leader for a read index (one peer request per batch, which the leader
//! batches with its own reads), then each read waits until the follower
//! applied that index. The leader's confirmation starts after the request
//! left the follower, so after every read of the batch arrived: the same
//! argument holds. A follower that cannot reach the leader redirects its
//! reads there, as before.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use meta_raft::types::{NodeAddr, Raft};
use openraft::error::{CheckIsLeaderError, RaftError};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::transport::TcpNetwork;

/// Why a read index could not be had.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ReadError {
    /// This node does not lead (and could not ask the leader); the leader,
    /// if known.
    NotLeader {
        /// Its id.
        leader_id: Option<u64>,
        /// Its addresses.
        leader: Option<NodeAddr>,
    },
    /// No confirmation within this deadline (no quorum?).
    NoQuorum {
        /// The deadline.
        within: Duration,
    },
    /// The node is shutting down.
    Stopped,
    /// Raft could not confirm, as it said (here, or on the leader: the
    /// text crossed the network, so only the text is kept).
    Failed(String),
    /// The leader is handing leadership to this node: it confirms nothing
    /// meanwhile (a confirmation would reset the followers' election
    /// timers and hold the transfer up).
    LeaderTransfer {
        /// The node leadership moves to.
        to: u64,
    },
}

/// A read index: reads may be answered once the state machine applied this
/// log index (`None`: nothing was ever committed).
pub type Index = Option<u64>;

struct Waiter {
    answer: oneshot::Sender<Result<Index, ReadError>>,
    /// Whether a follower may ask its leader for this one (a leader's
    /// answer to a follower's request is never forwarded again).
    forward: bool,
}

/// The read-index batcher of one node. Cheap to clone.
#[derive(Clone)]
pub struct ReadIndex {
    tx: mpsc::Sender<Waiter>,
    raft: Raft,
    me: u64,
    /// How long a follower waits for its own apply before redirecting.
    apply_wait: Duration,
    task: tokio::task::AbortHandle,
}

impl ReadIndex {
    /// Ends the batching task: reads waiting or to come fail with
    /// [`ReadError::Stopped`].
    pub fn stop(&self) {
        self.task.abort();
    }

    /// Waits until this node may answer a linearizable read: its leader
    /// confirmed leading after this call began, and this node applied
    /// everything committed before.
    pub async fn barrier(&self) -> Result<(), ReadError> {
        let index = self.index(true).await?;
        self.applied(index).await
    }

    /// As [`barrier`](Self::barrier), but only as the leader (a follower
    /// answers [`ReadError::NotLeader`]): for what only the leader knows,
    /// as lease deadlines.
    pub async fn leader_barrier(&self) -> Result<(), ReadError> {
        let index = self.index(false).await?;
        self.applied(index).await
    }

    /// Waits until this node applied `index`. A follower still behind after
    /// `apply_wait` (catching up, installing a snapshot) redirects the read
    /// to its leader, who answers it sooner.
    async fn applied(&self, index: Index) -> Result<(), ReadError> {
        if self.raft.metrics().borrow().last_applied.map(|l| l.index) >= index {
            return Ok(());
        }
        let waited = self
            .raft
            .wait(Some(self.apply_wait))
            .applied_index_at_least(index, "a linearizable read")
            .await;
        match waited {
            Ok(_) => Ok(()),
            Err(openraft::metrics::WaitError::ShuttingDown) => Err(ReadError::Stopped),
            Err(openraft::metrics::WaitError::Timeout(..)) => {
                let metrics = self.raft.metrics().borrow().clone();
                let leader = metrics.current_leader.filter(|l| *l != self.me);
                match leader {
                    Some(id) => Err(ReadError::NotLeader {
                        leader_id: Some(id),
                        leader: metrics
                            .membership_config
                            .membership()
                            .get_node(&id)
                            .cloned(),
                    }),
                    None => Err(ReadError::Failed(format!(
                        "this node has not applied log index {} within {:?}",
                        index.unwrap_or_default(),
                        self.apply_wait
                    ))),
                }
            }
        }
    }

    /// A read index for a follower's request: confirmed by this node as
    /// leader, after this call began. Never forwarded.
    pub async fn leader_index(&self) -> Result<Index, ReadError> {
        self.index(false).await
    }

    async fn index(&self, forward: bool) -> Result<Index, ReadError> {
        let (answer, rx) = oneshot::channel();
        self.tx
            .send(Waiter { answer, forward })
            .await
            .map_err(|_| ReadError::Stopped)?;
        rx.await.map_err(|_| ReadError::Stopped)?
    }
}

/// The batching task of one node, before it starts.
pub struct Batcher {
    /// This node.
    pub me: u64,
    /// Its Raft.
    pub raft: Raft,
    /// How it asks its leader for a read index when it does not lead.
    pub network: TcpNetwork,
    /// The node leadership is moving to (0: none): nothing is confirmed
    /// meanwhile.
    pub transfer: Arc<AtomicU64>,
    /// A confirmation that takes longer answers [`ReadError::NoQuorum`];
    /// a follower that has not applied the index within half of it
    /// redirects its reads.
    pub timeout: Duration,
    /// Asking the leader gives up after this (then the reads are
    /// redirected to it).
    pub ask_within: Duration,
    /// Records how many reads each confirmation served.
    pub batch: metrics::Histogram,
}

impl Batcher {
    /// Starts the task. Needs a tokio runtime; [`ReadIndex::stop`] ends it.
    pub fn start(mut self) -> ReadIndex {
        self.ask_within = self.ask_within.min(self.timeout);
        let (tx, rx) = mpsc::channel(4096);
        let (raft, me, apply_wait) = (self.raft.clone(), self.me, self.timeout / 2);
        let task = tokio::spawn(self.run(rx)).abort_handle();
        ReadIndex {
            tx,
            raft,
            me,
            apply_wait,
            task,
        }
    }

    async fn run(self, mut rx: mpsc::Receiver<Waiter>) {
        while let Some(first) = rx.recv().await {
            // Every read queued now arrived before the confirmation below
            // starts: its answer is theirs. Later ones wait for the next.
            let mut waiters = vec![first];
            while let Ok(waiter) = rx.try_recv() {
                waiters.push(waiter);
            }
            // A reader that gave up (its request timed out) needs no answer.
            waiters.retain(|w| !w.answer.is_closed());
            if waiters.is_empty() {
                continue;
            }
            self.batch.record(waiters.len() as f64);
            let local = self.confirm().await;
            let ask = match &local {
                Err(ReadError::NotLeader {
                    leader_id: Some(leader),
                    leader: Some(addr),
                }) if *leader != self.me => Some((*leader, addr.clone())),
                _ => None,
            };
            // Answered at once: every waiter when this node leads (or
            // cannot ask anyone), and always the leader-only ones (a peer's
            // request among them: a peer waiting on this node while this
            // node waits on it would hold both up until the timeout).
            let (forward, answered): (Vec<Waiter>, Vec<Waiter>) = waiters
                .into_iter()
                .partition(|w| w.forward && ask.is_some());
            for waiter in answered {
                let _ = waiter.answer.send(local.clone());
            }
            if let Some((leader, addr)) = ask.filter(|_| !forward.is_empty()) {
                let answer = match self.ask_leader(leader, &addr).await {
                    // Leadership came here meanwhile: confirm it.
                    Err(ReadError::NotLeader {
                        leader_id: Some(l), ..
                    }) if l == self.me => self.confirm().await,
                    answer => answer,
                };
                for waiter in forward {
                    let _ = waiter.answer.send(answer.clone());
                }
            }
        }
    }

    /// This node's read index as leader.
    async fn confirm(&self) -> Result<Index, ReadError> {
        let to = self.transfer.load(Ordering::Acquire);
        if to != 0 {
            return Err(ReadError::LeaderTransfer { to });
        }
        match tokio::time::timeout(self.timeout, self.raft.get_read_log_id()).await {
            Err(_) => Err(ReadError::NoQuorum {
                within: self.timeout,
            }),
            Ok(Ok((read_log_id, _applied))) => Ok(read_log_id.map(|l| l.index)),
            Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)))) => {
                Err(ReadError::NotLeader {
                    leader_id: f.leader_id,
                    leader: f.leader_node,
                })
            }
            // Said briefly: the error names every member's addresses,
            // which a read's answer (or a peer) need not learn.
            Ok(Err(RaftError::APIError(CheckIsLeaderError::QuorumNotEnough(_)))) => Err(
                ReadError::Failed("the leader could not reach a quorum".into()),
            ),
            Ok(Err(RaftError::Fatal(_))) => Err(ReadError::Stopped),
        }
    }

    /// A read index from the leader. If the leader cannot be asked (down,
    /// unreachable from here, or of a version without follower reads), the
    /// reads are redirected to it, as they were before followers served
    /// them.
    async fn ask_leader(&self, leader: u64, addr: &NodeAddr) -> Result<Index, ReadError> {
        let asked = tokio::time::timeout(
            self.ask_within,
            self.network
                .read_index(leader, addr, self.me, self.ask_within),
        )
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {:?}", self.ask_within)));
        // What the leader answered (maybe that it no longer leads), or,
        // when it could not be asked, a redirect to it.
        asked.unwrap_or_else(|why| {
            tracing::debug!("asking leader {leader} for a read index: {why}; redirecting reads");
            Err(ReadError::NotLeader {
                leader_id: Some(leader),
                leader: Some(addr.clone()),
            })
        })
    }
}
