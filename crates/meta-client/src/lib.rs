//! The metadata store's HTTP API as Rust types (`docs/api.md`).
//!
//! [`wire`] holds the JSON shape of every request and answer of the
//! user-key API: `meta-node` serves exactly these types and clients send
//! and read them, so the API has one definition.
//!
//! **Architecture invariant:** this crate depends on no engine and not on
//! `meta-raft`; it is what a program talking to a cluster links.

pub mod wire;
