//! The metadata store's HTTP API in Rust: its types and a typed client
//! (`docs/client.md`).
//!
//! - [`wire`]: the JSON shape of every request and answer. `meta-node`
//!   serves exactly these types and its CLI reads them, so the API has one
//!   definition.
//! - [`Client`] (built by [`ClientBuilder`]): several endpoints, leader
//!   redirects followed only to members, retries where they are safe,
//!   TLS with the cluster CA, bearer tokens, and [`ClientError`].
//!
//! **Architecture invariant:** this crate depends on no engine and not on
//! `meta-raft`; it is what a program talking to a cluster links.

mod backup;
mod client;
mod error;
mod lease;
mod tls;
mod watch;
pub mod wire;

pub use backup::Backup;
pub use client::{
    Client, ClientBuilder, Consistency, MAX_PAGE_ITEMS, Precondition, Read, encode_path,
    encode_query, http_builder,
};
pub use error::ClientError;
pub use lease::Lock;
pub use tls::client_config;
pub use watch::{WATCH_IDLE_TIMEOUT, Watch, WatchMessage, WatchRequest, WatchTarget};
