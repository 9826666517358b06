//! The Raft layer: openraft's log storage and the metadata state machine,
//! both over the [`MetadataStore`](meta_store_api::MetadataStore) trait, so
//! any engine (or two different ones, one for the log and one for the state
//! machine) can carry a node.
//!
//! - [`LogStore`]: `RaftLogStorage` under `/raft/` — durable appends,
//!   checksummed entries, range reads, reverse scan for the last entry.
//! - [`StateMachine`]: `RaftStateMachine` under `/meta/` — validates and
//!   applies [`Command`]s, writes data and applied state in one batch,
//!   snapshots through the portable snapshot format.
//! - [`MetadataReader`]: reads from the in-memory views, no engine call.
//! - [`Proposer`]: group commit — concurrent proposals share one log entry
//!   and one fsync.
//! - [`model`]: cluster map, shard map, API keys, config, user keys.
//!
//! **Architecture invariant:** this crate depends on `meta-store-api` and
//! `openraft`, never on an engine; engines appear only in its tests.
//! openraft types are re-exported through [`types`], so an openraft upgrade
//! touches this crate only.

// openraft's `StorageError` (224 bytes) is the error type its storage traits
// require; helpers return it as is rather than boxing and unboxing it.
#![allow(clippy::result_large_err)]

pub mod apikey;
mod blocking;
pub mod codec;
mod log_store;
pub mod model;
mod proposer;
mod state_machine;
pub mod types;
mod views;

pub use apikey::{ApiKeySecret, new_api_key};
pub use log_store::LogStore;
pub use model::{Command, Envelope, MAX_COMMAND_LEN, Rejection, Response};
pub use proposer::{MAX_BATCH_BYTES, ProposeError, Proposer};
pub use state_machine::{AppliedState, SnapshotBuilder, StateMachine};
pub use views::{ApiKeyCheck, ApiKeyInfo, MetadataReader};
