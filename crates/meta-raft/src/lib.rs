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
//! Applying a command directly (a node does this through Raft; see
//! `docs/raft.md`):
//!
//! ```
//! use std::sync::Arc;
//! use meta_raft::types::Entry;
//! use meta_raft::{Command, Envelope, Response, StateMachine};
//! use openraft::storage::RaftStateMachine;
//! use openraft::EntryPayload;
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let store = Arc::new(meta_store_mem::MemStore::new());
//! let mut sm = StateMachine::open(store).await?;
//! let put = Command::Put { key: b"region".to_vec(), value: b"eu-west".to_vec() };
//! let entry = Entry {
//!     log_id: openraft::testing::log_id(1, 1, 1),
//!     payload: EntryPayload::Normal(Envelope::new(&put)),
//! };
//! assert_eq!(sm.apply([entry]).await?, [Response::Applied { revision: 1 }]);
//! assert_eq!(sm.reader().get(b"region").as_deref(), Some(&b"eu-west"[..]));
//! # Ok::<(), meta_raft::types::StorageError>(())
//! # }).unwrap();
//! ```
//!
//! **Architecture invariant:** this crate depends on `meta-store-api` and
//! `openraft`, never on an engine; engines appear only in its tests.
//! openraft types are re-exported through [`types`], so an openraft upgrade
//! touches this crate only.

// openraft's `StorageError` (224 bytes) is the error type its storage traits
// require; helpers return it as is rather than boxing and unboxing it.
#![allow(clippy::result_large_err)]

pub mod apikey;
mod apply;
mod blocking;
pub mod history;
mod instruments;
/// A failpoint: counted and, when configured, fired (feature `failpoints`);
/// nothing at all without the feature. Configured `panic`, it panics;
/// configured `return`, the enclosing storage call fails with an injected
/// write error ([`failpoints::injected`]).
macro_rules! failpoint {
    ($name:literal) => {{
        #[cfg(feature = "failpoints")]
        {
            $crate::failpoints::hit($name);
            fail::fail_point!($name, |_| Err($crate::failpoints::injected($name)));
        }
    }};
}
pub mod codec;
#[cfg(feature = "failpoints")]
pub mod failpoints;
mod log_store;
pub mod model;
mod proposer;
mod state_machine;
pub mod types;
mod views;

pub use apikey::{ApiKeySecret, new_api_key};
pub use history::{
    Cursor, DEFAULT_HISTORY_BYTES, DEFAULT_HISTORY_REVISIONS, History, HistoryError, HistoryLimits,
    Notice,
};
pub use instruments::Instruments;
pub use log_store::LogStore;
pub use model::{
    Alarm, AlarmKind, Command, Envelope, MAX_ALARM_DETAIL, MAX_COMMAND_LEN, Rejection, Response,
};
pub use proposer::{MAX_BATCH_BYTES, ProposeError, Proposer};
pub use state_machine::{
    AppliedState, BUILD_RETRY_AFTER, Backup, FLUSH_AFTER, SnapshotBuilder, StateMachine,
    seed_new_cluster,
};
pub use views::{
    ApiKeyCheck, ApiKeyInfo, LeaseInfo, MetadataReader, PAGE_ITEM_OVERHEAD, Page, PageLimits,
    take_page,
};
