//! What this crate measures of its own work, as handles of the `metrics`
//! facade that the embedding node registers with its recorder (see
//! `docs/operations.md` for the metric names). Every handle is a no-op
//! until then, so embedding this crate costs nothing unless asked.

use metrics::{Counter, Histogram};

/// Handles the log store, the state machine and the proposer record into.
/// Cheap to clone (each handle is an `Arc` or nothing).
#[derive(Clone, Debug)]
pub struct Instruments {
    /// Seconds per durable log append (the log's fsync included).
    pub log_append_seconds: Histogram,
    /// Seconds per applied batch of entries, the store write included.
    pub apply_seconds: Histogram,
    /// Commands per log entry the proposer writes (group commit).
    pub proposal_batch_commands: Histogram,
    /// Commands proposed through the proposer.
    pub proposals: Counter,
    /// Seconds to build a snapshot (pin, sync, spill to a file).
    pub snapshot_build_seconds: Histogram,
    /// Bytes of snapshots built.
    pub snapshot_build_bytes: Counter,
    /// Snapshot builds that failed or found too little disk room (the
    /// node goes on; see [`SnapshotBuilder`](crate::SnapshotBuilder)).
    pub snapshot_build_failures: Counter,
    /// Seconds to install a snapshot received from the leader.
    pub snapshot_install_seconds: Histogram,
    /// Bytes of snapshots installed.
    pub snapshot_install_bytes: Counter,
}

impl Instruments {
    /// Handles that record nothing.
    pub const fn noop() -> Instruments {
        Instruments {
            log_append_seconds: Histogram::noop(),
            apply_seconds: Histogram::noop(),
            proposal_batch_commands: Histogram::noop(),
            proposals: Counter::noop(),
            snapshot_build_seconds: Histogram::noop(),
            snapshot_build_bytes: Counter::noop(),
            snapshot_build_failures: Counter::noop(),
            snapshot_install_seconds: Histogram::noop(),
            snapshot_install_bytes: Counter::noop(),
        }
    }
}

impl Default for Instruments {
    fn default() -> Instruments {
        Instruments::noop()
    }
}
