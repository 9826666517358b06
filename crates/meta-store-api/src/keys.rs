//! The key-space: the only place in the project that spells a key prefix.
//!
//! ```text
//! /meta/cluster/<name>   cluster map            /meta/apikey/<id>    API key records
//! /meta/shard/<name>     shard map (versioned)  /meta/config/<name>  config entries
//! /meta/kv/<name>        user key-value namespace
//! /meta/lease/<id>[/...] leases and what is attached to them
//! /meta/sys/<name>       the state machine's own records (last applied log id + membership)
//! /raft/log/<u64 BE>     log entries (8-byte big-endian index, so they sort)
//! /raft/vote  /raft/committed  /raft/purged  /raft/snapshot
//! /raft/history/...      this node's change history, for watches (not replicated)
//! ```
//!
//! The change history (`/raft/history/`) is derived from the applied
//! commands and written in the same batch as the data, but it is this
//! node's own record: its length is a node setting, so it is not part of
//! `/meta/` (not in snapshots, not in the content hash).
//!
//! The state machine's applied state lives under `/meta/` (not `/raft/`) on
//! purpose: a snapshot of `/meta/` then carries the data *and* the log id it
//! reflects, and a `restore` replaces both in one atomic step — a crash can
//! never leave new data with an old applied index (which would re-apply
//! entries) or the reverse.
//!
//! Build keys with [`Key`] (or the allocation-free [`log_key`] on the Raft
//! log's hot path) and read them back with [`Key::parse`], which says why a
//! malformed key is rejected.
//!
//! ```
//! use meta_store_api::keys::{Key, MetaNamespace, RaftKey};
//!
//! let key = Key::meta(MetaNamespace::Config, "max-shards")?;
//! assert_eq!(key.encode(), b"/meta/config/max-shards");
//! assert_eq!(Key::parse(b"/raft/log/\0\0\0\0\0\0\0\x07")?, Key::Raft(RaftKey::Log(7)));
//! assert!(Key::parse(b"/meta/nope/x").is_err());
//! # Ok::<(), meta_store_api::Error>(())
//! ```

use std::fmt;

use crate::error::{Error, KeyPreview, Result};
use crate::limits::{MAX_KEY_LEN, check_key};
use crate::store::KeyRange;

/// Root of the replicated metadata (the state machine's data).
pub const META_PREFIX: &[u8] = b"/meta/";
/// Root of the Raft layer's own state (log, vote, applied state).
pub const RAFT_PREFIX: &[u8] = b"/raft/";
/// Prefix of the Raft log entries.
pub const LOG_PREFIX: &[u8] = b"/raft/log/";

const VOTE: &[u8] = b"/raft/vote";
const COMMITTED: &[u8] = b"/raft/committed";
const PURGED: &[u8] = b"/raft/purged";
const SNAPSHOT: &[u8] = b"/raft/snapshot";
/// Prefix of the change history's events.
const HISTORY_EVENTS: &[u8] = b"/raft/history/e/";
/// Prefix of the previous values of the history's events.
const HISTORY_PREV: &[u8] = b"/raft/history/p/";
/// Prefix of the history's per-revision event counts.
const HISTORY_COUNTS: &[u8] = b"/raft/history/n/";
/// The history's compacted revision.
const HISTORY_COMPACTED: &[u8] = b"/raft/history/compacted";

/// Length of a log entry key: the prefix and an 8-byte index.
pub const LOG_KEY_LEN: usize = LOG_PREFIX.len() + 8;

/// Why a key was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Keys must have at least one byte.
    #[error("keys must not be empty")]
    Empty,
    /// Keys are limited to [`MAX_KEY_LEN`] bytes.
    #[error("key is {len} bytes; the limit is {max}")]
    TooLong {
        /// The key's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The key starts with neither `/meta/` nor `/raft/`.
    #[error("key does not start with /meta/ or /raft/")]
    UnknownRoot,
    /// The segment after `/meta/` names no namespace.
    #[error(
        "unknown metadata namespace {found:?} (expected one of cluster, shard, apikey, config, kv, lease, sys)"
    )]
    UnknownNamespace {
        /// The segment found.
        found: String,
    },
    /// A metadata key has nothing after its namespace.
    #[error("empty name in the {namespace} namespace")]
    EmptyName {
        /// The namespace.
        namespace: MetaNamespace,
    },
    /// A log key's index is not exactly 8 bytes.
    #[error("a log index must be 8 big-endian bytes, found {len}")]
    BadLogIndex {
        /// The number of bytes after `/raft/log/`.
        len: usize,
    },
    /// A key under `/raft/` that the Raft layer does not define.
    #[error("unknown raft key")]
    UnknownRaftKey,
}

/// A namespace of the replicated metadata, under `/meta/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetaNamespace {
    /// Nodes of the cluster.
    Cluster,
    /// The versioned shard map.
    Shard,
    /// API key records (hashes only, never secrets).
    ApiKey,
    /// Runtime configuration entries.
    Config,
    /// Users' own key-value data.
    Kv,
    /// Leases, and the user keys and cluster nodes bound to them.
    Lease,
    /// The state machine's own records (its last applied log id).
    Sys,
}

impl MetaNamespace {
    /// Every namespace, in key order of their prefixes.
    pub const ALL: [MetaNamespace; 7] = [
        MetaNamespace::ApiKey,
        MetaNamespace::Cluster,
        MetaNamespace::Config,
        MetaNamespace::Kv,
        MetaNamespace::Lease,
        MetaNamespace::Shard,
        MetaNamespace::Sys,
    ];

    /// The namespace's segment (`"cluster"`, ...).
    pub const fn name(self) -> &'static str {
        match self {
            MetaNamespace::Cluster => "cluster",
            MetaNamespace::Shard => "shard",
            MetaNamespace::ApiKey => "apikey",
            MetaNamespace::Config => "config",
            MetaNamespace::Kv => "kv",
            MetaNamespace::Lease => "lease",
            MetaNamespace::Sys => "sys",
        }
    }

    /// The namespace's full prefix, e.g. `/meta/cluster/`.
    pub const fn prefix(self) -> &'static [u8] {
        match self {
            MetaNamespace::Cluster => b"/meta/cluster/",
            MetaNamespace::Shard => b"/meta/shard/",
            MetaNamespace::ApiKey => b"/meta/apikey/",
            MetaNamespace::Config => b"/meta/config/",
            MetaNamespace::Kv => b"/meta/kv/",
            MetaNamespace::Lease => b"/meta/lease/",
            MetaNamespace::Sys => b"/meta/sys/",
        }
    }

    /// Looks a namespace up by its segment.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|ns| ns.name() == name)
    }

    /// The longest name a key in this namespace can have.
    pub const fn max_name_len(self) -> usize {
        MAX_KEY_LEN - self.prefix().len()
    }
}

impl fmt::Display for MetaNamespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A key under `/raft/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RaftKey {
    /// The log entry at this index.
    Log(u64),
    /// The last vote.
    Vote,
    /// The last committed log id.
    Committed,
    /// The last purged log id.
    Purged,
    /// The state machine's snapshot record (the last built or installed
    /// snapshot's metadata).
    Snapshot,
}

/// A well-formed key of the project's key-space. A `Key` that exists is
/// valid: it is within the key limits and its namespace is known.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// A metadata key: `/meta/<namespace>/<name>`.
    Meta {
        /// The namespace.
        namespace: MetaNamespace,
        /// The non-empty name after the namespace prefix (may contain `/`).
        name: Vec<u8>,
    },
    /// A Raft key.
    Raft(RaftKey),
}

impl Key {
    /// A metadata key; fails when `name` is empty or the key would be too
    /// long.
    pub fn meta(namespace: MetaNamespace, name: impl AsRef<[u8]>) -> Result<Key> {
        let name = name.as_ref();
        let reason = if name.is_empty() {
            KeyError::EmptyName { namespace }
        } else if name.len() > namespace.max_name_len() {
            KeyError::TooLong {
                len: namespace.prefix().len() + name.len(),
                max: MAX_KEY_LEN,
            }
        } else {
            return Ok(Key::Meta {
                namespace,
                name: name.to_vec(),
            });
        };
        Err(invalid(&[namespace.prefix(), name].concat(), reason))
    }

    /// The key of log entry `index`.
    pub fn log(index: u64) -> Key {
        Key::Raft(RaftKey::Log(index))
    }

    /// The key's bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Key::Meta { namespace, name } => [namespace.prefix(), name].concat(),
            Key::Raft(RaftKey::Log(index)) => log_key(*index).to_vec(),
            Key::Raft(RaftKey::Vote) => VOTE.to_vec(),
            Key::Raft(RaftKey::Committed) => COMMITTED.to_vec(),
            Key::Raft(RaftKey::Purged) => PURGED.to_vec(),
            Key::Raft(RaftKey::Snapshot) => SNAPSHOT.to_vec(),
        }
    }

    /// Parses bytes read from a store; the error says what is wrong.
    pub fn parse(bytes: &[u8]) -> Result<Key> {
        check_key(bytes)?;
        if let Some(rest) = bytes.strip_prefix(META_PREFIX) {
            let Some(slash) = rest.iter().position(|&b| b == b'/') else {
                let found = String::from_utf8_lossy(rest).into_owned();
                return Err(invalid(bytes, KeyError::UnknownNamespace { found }));
            };
            let segment = String::from_utf8_lossy(&rest[..slash]);
            let namespace = MetaNamespace::from_name(&segment).ok_or_else(|| {
                invalid(
                    bytes,
                    KeyError::UnknownNamespace {
                        found: segment.clone().into_owned(),
                    },
                )
            })?;
            return Key::meta(namespace, &rest[slash + 1..]);
        }
        if let Some(index) = bytes.strip_prefix(LOG_PREFIX) {
            let index: [u8; 8] = index
                .try_into()
                .map_err(|_| invalid(bytes, KeyError::BadLogIndex { len: index.len() }))?;
            return Ok(Key::log(u64::from_be_bytes(index)));
        }
        let raft = match bytes {
            VOTE => RaftKey::Vote,
            COMMITTED => RaftKey::Committed,
            PURGED => RaftKey::Purged,
            SNAPSHOT => RaftKey::Snapshot,
            _ if bytes.starts_with(RAFT_PREFIX) => {
                return Err(invalid(bytes, KeyError::UnknownRaftKey));
            }
            _ => return Err(invalid(bytes, KeyError::UnknownRoot)),
        };
        Ok(Key::Raft(raft))
    }
}

impl From<RaftKey> for Key {
    fn from(key: RaftKey) -> Key {
        Key::Raft(key)
    }
}

/// The key of log entry `index`, without allocating.
pub fn log_key(index: u64) -> [u8; LOG_KEY_LEN] {
    let mut key = [0u8; LOG_KEY_LEN];
    key[..LOG_PREFIX.len()].copy_from_slice(LOG_PREFIX);
    key[LOG_PREFIX.len()..].copy_from_slice(&index.to_be_bytes());
    key
}

/// The log index of a log entry key; the error says why `key` is not one.
pub fn parse_log_key(key: &[u8]) -> Result<u64> {
    match Key::parse(key)? {
        Key::Raft(RaftKey::Log(index)) => Ok(index),
        _ => Err(invalid(key, KeyError::UnknownRaftKey)),
    }
}

/// The keys of log entries `start..end`.
pub fn log_range(start: u64, end: u64) -> KeyRange {
    KeyRange::between(log_key(start).to_vec(), log_key(end).to_vec())
}

/// The key of the state machine's applied state (`/meta/sys/applied`).
pub fn applied_key() -> Vec<u8> {
    [MetaNamespace::Sys.prefix(), b"applied"].concat()
}

/// The keys of every log entry.
pub fn all_log_entries() -> KeyRange {
    KeyRange::prefix(LOG_PREFIX)
}

/// Where one change of the history is kept: the `seq`-th change made at
/// store revision `revision` (big-endian, so changes sort by revision, then
/// by the order they were made in).
pub fn history_event_key(revision: u64, seq: u32) -> Vec<u8> {
    [HISTORY_EVENTS, &revision.to_be_bytes(), &seq.to_be_bytes()].concat()
}

/// Where the value a history change replaced is kept (beside the change,
/// so a change and its previous value can each be as large as a value).
pub fn history_prev_key(revision: u64, seq: u32) -> Vec<u8> {
    [HISTORY_PREV, &revision.to_be_bytes(), &seq.to_be_bytes()].concat()
}

/// Where the number of history changes made at `revision` is kept (absent:
/// none), so trimming a revision needs no scan.
pub fn history_count_key(revision: u64) -> Vec<u8> {
    [HISTORY_COUNTS, &revision.to_be_bytes()].concat()
}

/// The history's per-revision counts from `revision` on, in order;
/// [`history_count_revision`] reads a key's revision back.
pub fn history_counts_from(revision: u64) -> KeyRange {
    KeyRange {
        start: std::ops::Bound::Included(history_count_key(revision)),
        end: std::ops::Bound::Excluded(
            crate::store::prefix_successor(HISTORY_COUNTS).expect("not all 0xff"),
        ),
    }
}

/// The revision of a history count's key (from [`history_count_key`]), or
/// `None` for any other key.
pub fn history_count_revision(key: &[u8]) -> Option<u64> {
    let rest: [u8; 8] = key.strip_prefix(HISTORY_COUNTS)?.try_into().ok()?;
    Some(u64::from_be_bytes(rest))
}

/// Where the history's compacted revision is kept: changes at or before it
/// may be gone.
pub fn history_compacted_key() -> Vec<u8> {
    HISTORY_COMPACTED.to_vec()
}

/// The history changes from the `seq`-th of revision `revision` on, in
/// order; [`history_revision`] reads a key's position back.
pub fn history_events_from(revision: u64, seq: u32) -> KeyRange {
    KeyRange {
        start: std::ops::Bound::Included(history_event_key(revision, seq)),
        end: std::ops::Bound::Excluded(
            crate::store::prefix_successor(HISTORY_EVENTS).expect("not all 0xff"),
        ),
    }
}

/// The revision and sequence number of a history change's key (from
/// [`history_event_key`]), or `None` for any other key.
pub fn history_revision(key: &[u8]) -> Option<(u64, u32)> {
    let rest = key.strip_prefix(HISTORY_EVENTS)?;
    let revision: [u8; 8] = rest.get(..8)?.try_into().ok()?;
    let seq: [u8; 4] = rest.get(8..)?.try_into().ok()?;
    Some((u64::from_be_bytes(revision), u32::from_be_bytes(seq)))
}

fn invalid(key: &[u8], reason: KeyError) -> Error {
    Error::InvalidKey {
        key: KeyPreview::new(key),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reason(err: Error) -> KeyError {
        match err {
            Error::InvalidKey { reason, .. } => reason,
            other => panic!("expected InvalidKey, got {other:?}"),
        }
    }

    #[test]
    fn every_fixed_key_round_trips() {
        for key in [
            Key::Raft(RaftKey::Vote),
            Key::Raft(RaftKey::Committed),
            Key::Raft(RaftKey::Purged),
            Key::Raft(RaftKey::Snapshot),
            Key::log(0),
            Key::log(u64::MAX),
        ] {
            assert_eq!(Key::parse(&key.encode()).unwrap(), key);
        }
        for ns in MetaNamespace::ALL {
            let key = Key::meta(ns, "a/b").unwrap();
            assert_eq!(Key::parse(&key.encode()).unwrap(), key);
            assert!(ns.prefix().starts_with(META_PREFIX));
        }
    }

    #[test]
    fn namespaces_are_listed_in_prefix_order() {
        let prefixes: Vec<_> = MetaNamespace::ALL.iter().map(|ns| ns.prefix()).collect();
        let mut sorted = prefixes.clone();
        sorted.sort();
        assert_eq!(prefixes, sorted);
    }

    #[test]
    fn history_keys_sort_by_revision_then_order() {
        assert!(history_event_key(1, 7) < history_event_key(2, 0));
        assert!(history_event_key(255, 0) < history_event_key(256, 0));
        assert!(history_event_key(3, 1) < history_event_key(3, 2));
        assert_eq!(history_revision(&history_event_key(9, 4)), Some((9, 4)));
        assert_eq!(history_revision(&history_prev_key(9, 4)), None);
        assert_eq!(history_revision(&history_count_key(9)), None);
        let from = history_events_from(5, 0);
        assert!(!from.contains(&history_event_key(4, u32::MAX)));
        assert!(from.contains(&history_event_key(5, 0)));
        assert!(!history_events_from(5, 1).contains(&history_event_key(5, 0)));
        assert!(from.contains(&history_event_key(u64::MAX, u32::MAX)));
        assert!(!from.contains(&history_prev_key(6, 0)));
        assert!(!from.contains(&history_count_key(6)));
        assert!(!from.contains(&history_compacted_key()));
        for key in [
            history_event_key(u64::MAX, u32::MAX),
            history_prev_key(1, 1),
        ] {
            assert!(check_key(&key).is_ok());
        }
    }

    #[test]
    fn log_keys_sort_by_index() {
        assert!(log_key(255) < log_key(256));
        assert!(log_key(u64::MAX - 1) < log_key(u64::MAX));
        assert_eq!(parse_log_key(&log_key(42)).unwrap(), 42);
        assert!(log_range(3, 5).contains(&log_key(4)));
        assert!(!log_range(3, 5).contains(&log_key(5)));
    }

    #[test]
    fn malformed_keys_say_why() {
        assert_eq!(reason(Key::parse(b"").unwrap_err()), KeyError::Empty);
        assert_eq!(
            reason(Key::parse(b"/other/x").unwrap_err()),
            KeyError::UnknownRoot
        );
        assert_eq!(
            reason(Key::parse(b"/meta/nope/x").unwrap_err()),
            KeyError::UnknownNamespace {
                found: "nope".into()
            }
        );
        assert_eq!(
            reason(Key::parse(b"/meta/cluster").unwrap_err()),
            KeyError::UnknownNamespace {
                found: "cluster".into()
            }
        );
        assert_eq!(
            reason(Key::parse(b"/meta/config/").unwrap_err()),
            KeyError::EmptyName {
                namespace: MetaNamespace::Config
            }
        );
        assert_eq!(
            reason(Key::parse(b"/raft/log/abc").unwrap_err()),
            KeyError::BadLogIndex { len: 3 }
        );
        assert_eq!(
            reason(Key::parse(b"/raft/votes").unwrap_err()),
            KeyError::UnknownRaftKey
        );
        assert!(matches!(
            reason(Key::meta(MetaNamespace::Kv, vec![b'x'; 600]).unwrap_err()),
            KeyError::TooLong { .. }
        ));
        assert!(matches!(
            parse_log_key(b"/raft/vote"),
            Err(Error::InvalidKey { .. })
        ));
        let msg = Key::parse(b"/meta/nope/x").unwrap_err().to_string();
        assert!(msg.contains("nope") && msg.contains("namespace"), "{msg}");
    }

    proptest! {
        #[test]
        fn parse_never_panics_and_accepts_what_encode_makes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            if let Ok(key) = Key::parse(&bytes) {
                prop_assert_eq!(key.encode(), bytes);
            }
        }

        #[test]
        fn meta_names_round_trip(name in proptest::collection::vec(any::<u8>(), 1..400)) {
            for ns in MetaNamespace::ALL {
                let key = Key::meta(ns, &name).unwrap();
                prop_assert_eq!(Key::parse(&key.encode()).unwrap(), key);
            }
        }
    }
}
