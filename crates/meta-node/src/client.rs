//! HTTP helpers shared with the typed client ([`meta_client`]): the CLI
//! and the tests talk to nodes through it.

pub use meta_client::{encode_path, encode_query, http_builder};
