//! Group commit: concurrent proposals share one log entry, hence one
//! durable log write (one fsync) and one apply batch.
//!
//! openraft appends and fsyncs every `client_write` on its own, so N
//! concurrent writers cost N fsyncs. The [`Proposer`] queues proposals;
//! while one entry is being written, the next ones wait in the queue, and
//! the next round takes all of them (up to a count and a size) as one
//! [`Command::Batch`]. Each caller gets its own [`Response`], exactly what
//! it would have got from an entry of its own. A lone proposal travels
//! alone, so a single writer pays nothing extra.

use std::sync::Arc;

use openraft::error::{ClientWriteError, RaftError};
use tokio::sync::{mpsc, oneshot};

use crate::instruments::Instruments;
use crate::model::{Command, Envelope, Rejection, Response};
use crate::types::{NodeAddr, Raft};

/// Why a proposal did not produce a [`Response`].
#[derive(Clone, Debug, thiserror::Error)]
pub enum ProposeError {
    /// The command can never be logged (too large).
    #[error("{0}")]
    Rejected(Rejection),
    /// This node is not the leader; retry there.
    #[error("not the leader (leader: {leader_id:?})")]
    ForwardToLeader {
        /// The leader, if known.
        leader_id: Option<u64>,
        /// Its addresses, if known.
        leader: Option<NodeAddr>,
    },
    /// The proposer's task ended (the node is stopping) after the
    /// command was queued: it may or may not be committed.
    #[error("outcome unknown: the proposer stopped")]
    Stopped,
    /// Raft failed after taking the write (shutting down, leadership lost,
    /// ...): the command may or may not be committed.
    #[error("outcome unknown: {0}")]
    Raft(#[source] Arc<RaftError<u64, ClientWriteError<u64, NodeAddr>>>),
    /// The state machine's answer to a round did not match the round (a
    /// bug): the commands were applied, their results are lost.
    #[error("outcome unknown: {got} for a round of {sent} proposals")]
    Mismatch {
        /// Proposals in the round.
        sent: usize,
        /// What came back instead of one response per proposal.
        got: String,
    },
}

impl ProposeError {
    /// Whether the command may or may not have been committed (so a
    /// caller must read before retrying a non-idempotent write).
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            ProposeError::Stopped | ProposeError::Raft(_) | ProposeError::Mismatch { .. }
        )
    }
}

type Reply = oneshot::Sender<Result<Response, ProposeError>>;

/// The group-commit front of a Raft node. Cheap to clone.
#[derive(Clone)]
pub struct Proposer {
    tx: mpsc::Sender<(Command, usize, Reply)>,
}

impl Proposer {
    /// Starts the batching task for `raft`; at most `max_batch` proposals
    /// share an entry. Needs a tokio runtime.
    pub fn new(raft: Raft, max_batch: usize) -> Proposer {
        Self::instrumented(raft, max_batch, &Instruments::noop())
    }

    /// [`new`](Self::new), counting proposals into `instruments.proposals`
    /// and the commands per entry into
    /// `instruments.proposal_batch_commands`.
    pub fn instrumented(raft: Raft, max_batch: usize, instruments: &Instruments) -> Proposer {
        let (tx, rx) = mpsc::channel(max_batch.max(1) * 4);
        tokio::spawn(run(raft, rx, max_batch.max(1), instruments.clone()));
        Proposer { tx }
    }

    /// Proposes `command` and waits for its result.
    ///
    /// If this returns an error whose
    /// [`outcome_unknown`](ProposeError::outcome_unknown) holds, the command
    /// may still be committed (by a new leader).
    pub async fn propose(&self, command: Command) -> Result<Response, ProposeError> {
        if matches!(command, Command::Batch(_)) {
            return Err(ProposeError::Rejected(Rejection::Malformed {
                reason: "batches are formed by the proposer, not proposed".into(),
            }));
        }
        // Checked alone first: a command too large on its own is refused
        // here, never poisoning a batch.
        let size = Envelope::checked(&command)
            .map_err(ProposeError::Rejected)?
            .command
            .len();
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((command, size, reply))
            .await
            .map_err(|_| ProposeError::Stopped)?;
        answer.await.map_err(|_| ProposeError::Stopped)?
    }
}

/// Encoded bytes a batch grows to at most (a single larger command still
/// travels alone): small entries replicate within their RPC timeouts.
pub const MAX_BATCH_BYTES: usize = 1 << 20;

async fn run(
    raft: Raft,
    mut rx: mpsc::Receiver<(Command, usize, Reply)>,
    max_batch: usize,
    instruments: Instruments,
) {
    let budget = MAX_BATCH_BYTES;
    let mut carried = None;
    loop {
        let first = match carried.take() {
            Some(item) => item,
            None => match rx.recv().await {
                Some(item) => item,
                None => return,
            },
        };
        let mut size = first.1;
        let mut round = vec![first];
        while round.len() < max_batch {
            match rx.try_recv() {
                Ok(item) if size + item.1 + 16 <= budget => {
                    size += item.1 + 16;
                    round.push(item);
                }
                Ok(item) => {
                    carried = Some(item);
                    break;
                }
                Err(_) => break,
            }
        }
        // A caller that gave up (the API answered it `outcome_unknown` on
        // its deadline) must not be written later behind its back: it may
        // have read, found nothing, and retried.
        round.retain(|(_, _, reply)| !reply.is_closed());
        if !round.is_empty() {
            instruments.proposals.increment(round.len() as u64);
            instruments
                .proposal_batch_commands
                .record(round.len() as f64);
            let many = round.len() > 1;
            write_round(&raft, round).await;
            // The writers of a round of many were just answered, and under
            // load most propose again at once, but the next round would
            // start with only those that queued meanwhile: writers would
            // split into two cohorts taking turns, each round half full.
            // Yielding while the queue still grows lets the answered
            // writers queue first, so rounds stay full (63 of 64 writers
            // rather than 33 in `node_durable_writes_grouped/*/64`). A lone
            // proposal does not wait.
            if many {
                for _ in 0..4 {
                    let before = rx.len();
                    tokio::task::yield_now().await;
                    if rx.len() == before {
                        break;
                    }
                }
            }
        }
    }
}

async fn write_round(raft: &Raft, mut round: Vec<(Command, usize, Reply)>) {
    let single = round.len() == 1;
    // The commands move into the entry; the round keeps the replies.
    let take = |c: &mut Command| std::mem::replace(c, Command::Batch(Vec::new()));
    let command = match &mut round[..] {
        [(command, _, _)] => take(command),
        _ => Command::Batch(round.iter_mut().map(|(c, _, _)| take(c)).collect()),
    };
    let outcome = raft.client_write(Envelope::new(&command)).await;
    let responses: Result<Vec<Response>, ProposeError> = match outcome {
        Ok(written) => match written.data {
            Response::Batch(responses) if !single => Ok(responses),
            response if single => Ok(vec![response]),
            other => Err(ProposeError::Mismatch {
                sent: round.len(),
                got: format!("{other:?}"),
            }),
        },
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
            Err(ProposeError::ForwardToLeader {
                leader_id: f.leader_id,
                leader: f.leader_node,
            })
        }
        Err(e) => Err(ProposeError::Raft(Arc::new(e))),
    };
    match responses {
        Ok(responses) if responses.len() == round.len() => {
            for ((_, _, reply), response) in round.drain(..).zip(responses) {
                // A caller that gave up waiting is no error.
                let _ = reply.send(Ok(response));
            }
        }
        Ok(responses) => {
            let e = ProposeError::Mismatch {
                sent: round.len(),
                got: format!("{} responses", responses.len()),
            };
            round
                .drain(..)
                .for_each(|(_, _, reply)| drop(reply.send(Err(e.clone()))));
        }
        Err(e) => round
            .drain(..)
            .for_each(|(_, _, reply)| drop(reply.send(Err(e.clone())))),
    }
}
