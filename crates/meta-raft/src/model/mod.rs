//! The business model of the metadata store: cluster map, shard map, API
//! keys, config and user key-values ([`records`]), and the commands that
//! change them ([`commands`]). Both are re-exported here.

pub mod commands;
pub mod records;

pub use commands::*;
pub use records::*;
