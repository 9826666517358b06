//! `meta-node`: the metadata store as a server, a library to embed one in
//! your own process, a CLI, and offline tools.
//!
//! - [`Node`]: opens the stores (one engine for everything, or one for the
//!   Raft log and another for the state machine), starts Raft, the peer
//!   transport ([`transport`], TCP) and the client API ([`http`], JSON over
//!   HTTP), and on first start can make itself a single-node cluster.
//! - [`Config`]: TOML file, `META_NODE_*` environment variables and flags;
//!   errors name the field.
//! - [`Engine`]: every engine, compiled in or not (Cargo features `lmdb`
//!   and `fjall`, both default; `mem` always) — a missing one is an error
//!   naming the feature.
//! - [`offline`]: backup/restore, engine migration and content hashes of a
//!   stopped node's stores, all through the portable snapshot format.
//!
//! Embedding a node:
//!
//! ```no_run
//! # async fn run() -> Result<(), meta_node::NodeError> {
//! let config = meta_node::Config { data_dir: "/var/lib/meta".into(), ..Default::default() };
//! let node = meta_node::Node::start(config).await?;
//! println!("client API on http://{}", node.api_addr);
//! let nodes = node.reader.cluster_map(); // in-memory read, no engine call
//! # drop(nodes);
//! node.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! **Architecture invariant:** this is the only crate that knows every
//! engine; everything below it sees `MetadataStore` only.

pub mod alarm;
pub mod auth;
pub mod client;
pub mod config;
pub mod conn;
pub mod credentials;
pub mod engine;
mod error;
pub mod files;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod http;
pub mod identity;
pub mod lease;
mod node;
pub mod offline;
#[cfg(feature = "failpoints")]
pub mod pause;
pub mod read_index;
pub mod telemetry;
pub mod tls;
pub mod transport;

pub use config::Config;
pub use engine::Engine;
pub use error::{EXIT_DATA_REFUSED, NodeError};
pub use node::Node;
