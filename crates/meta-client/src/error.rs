//! What can go wrong talking to a cluster.

use crate::wire::ErrorBody;

/// A failed call: the transport, the API's own answer, or its decoding.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The client could not be built (bad endpoint, unreadable CA file,
    /// a token that would travel in plaintext).
    #[error("{0}")]
    Config(String),
    /// No endpoint could be reached (or one stopped answering mid-way).
    #[error(
        "{method} {url}: {source} (is a meta-node running there? a node with [tls] serves https:// and needs the cluster CA)"
    )]
    Transport {
        /// The request's method.
        method: String,
        /// Where it went.
        url: String,
        /// Why it failed.
        #[source]
        source: reqwest::Error,
    },
    /// The node answered with an error (`docs/api.md` lists the codes).
    #[error("{}: {} (HTTP {status})", error.code, error.message)]
    Api {
        /// The HTTP status.
        status: u16,
        /// The error object: stable `code`, `message`, and details.
        error: ErrorBody,
    },
    /// A write reached Raft but whether it committed is unknown: it may
    /// still apply. Never retried by the client; read before retrying.
    #[error("outcome_unknown: {message} (HTTP {status})")]
    OutcomeUnknown {
        /// The HTTP status (503).
        status: u16,
        /// What the node said.
        message: String,
    },
    /// A redirect the client refuses to follow (not a member's API
    /// address, another scheme, or too many hops).
    #[error("{0}")]
    Redirect(String),
    /// The answer was not what the API defines.
    #[error("{what}: {problem}")]
    Decode {
        /// Which answer.
        what: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl ClientError {
    /// The API error code, if the node answered one (`not_found`,
    /// `precondition_failed`, ...; `outcome_unknown` too).
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { error, .. } => Some(&error.code),
            ClientError::OutcomeUnknown { .. } => Some("outcome_unknown"),
            _ => None,
        }
    }

    /// The HTTP status, if the node answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } | ClientError::OutcomeUnknown { status, .. } => {
                Some(*status)
            }
            _ => None,
        }
    }

    /// Whether a watch's start is older than the node's history
    /// (`compacted`): list the current state and watch from its revision
    /// ([`oldest_revision`](Self::oldest_revision) is the oldest possible).
    pub fn is_compacted(&self) -> bool {
        self.code() == Some("compacted")
    }

    /// The oldest revision a watch can start from, on `compacted`.
    pub fn oldest_revision(&self) -> Option<u64> {
        match self {
            ClientError::Api { error, .. } => error.oldest_revision,
            _ => None,
        }
    }

    /// Whether a precondition (`If-Match`, `If-None-Match`) failed.
    pub fn is_precondition_failed(&self) -> bool {
        self.code() == Some("precondition_failed")
    }

    /// Whether the node said the thing does not exist.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some("not_found")
    }
}
