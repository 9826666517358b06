//! The [`MetadataStore`] trait and the small types its methods take.

use std::io::Read;
use std::ops::Bound;

use crate::error::Result;
use crate::limits::check_entry;
use crate::snapshot::{SnapshotOptions, SnapshotStream};

/// A key and its value, as returned by scans.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// How durable a write must be when the call returns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Durability {
    /// The write is on stable storage (fsync'd) before the call returns; a
    /// crash or power loss right after cannot lose it.
    #[default]
    Durable,
    /// The write is visible to every reader at once, but may be lost by a
    /// crash until a later durable write or [`MetadataStore::sync`]. Writes are
    /// never reordered: a crash keeps a prefix of the acknowledged writes.
    Buffered,
}

/// One operation of a [`WriteBatch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BatchOp {
    /// Set `key` to `value`.
    Put {
        /// The key.
        key: Vec<u8>,
        /// The new value.
        value: Vec<u8>,
    },
    /// Remove `key` (absent keys are fine).
    Delete {
        /// The key.
        key: Vec<u8>,
    },
}

impl BatchOp {
    /// The key this operation touches.
    pub fn key(&self) -> &[u8] {
        match self {
            BatchOp::Put { key, .. } | BatchOp::Delete { key } => key,
        }
    }
}

/// An ordered list of puts and deletes applied atomically by
/// [`MetadataStore::batch`]. When several operations touch the same key, the
/// last one wins.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBatch {
    ops: Vec<BatchOp>,
}

impl WriteBatch {
    /// An empty batch.
    pub const fn new() -> Self {
        WriteBatch { ops: Vec::new() }
    }

    /// An empty batch with room for `n` operations.
    pub fn with_capacity(n: usize) -> Self {
        WriteBatch {
            ops: Vec::with_capacity(n),
        }
    }

    /// Adds a put.
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(BatchOp::Put {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Adds a delete.
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) -> &mut Self {
        self.ops.push(BatchOp::Delete { key: key.into() });
        self
    }

    /// The operations, in the order they were added.
    pub fn ops(&self) -> &[BatchOp] {
        &self.ops
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch has no operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Checks every operation against the uniform limits. Engines call this
    /// before touching anything, so a bad operation rejects the whole batch.
    pub fn validate(&self) -> Result<()> {
        for op in &self.ops {
            match op {
                BatchOp::Put { key, value } => check_entry(key, value)?,
                BatchOp::Delete { key } => crate::limits::check_key(key)?,
            }
        }
        Ok(())
    }

    /// The operations with only the last one per key kept, in key order.
    ///
    /// Engines that cannot express "in order, last wins" inside one atomic
    /// write (an LSM batch gives all its entries the same sequence number)
    /// apply this instead.
    pub fn last_write_per_key(&self) -> Vec<&BatchOp> {
        let mut last = std::collections::BTreeMap::new();
        for op in &self.ops {
            last.insert(op.key(), op);
        }
        last.into_values().collect()
    }
}

impl Extend<BatchOp> for WriteBatch {
    /// Adds operations after the ones already there.
    fn extend<I: IntoIterator<Item = BatchOp>>(&mut self, iter: I) {
        self.ops.extend(iter);
    }
}

impl IntoIterator for WriteBatch {
    type Item = BatchOp;
    type IntoIter = std::vec::IntoIter<BatchOp>;

    /// The operations, in the order they were added.
    fn into_iter(self) -> Self::IntoIter {
        self.ops.into_iter()
    }
}

impl FromIterator<BatchOp> for WriteBatch {
    fn from_iter<I: IntoIterator<Item = BatchOp>>(iter: I) -> Self {
        WriteBatch {
            ops: iter.into_iter().collect(),
        }
    }
}

/// Which way a range scan walks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Ascending byte order.
    #[default]
    Forward,
    /// Descending byte order (for "last entry" lookups).
    Reverse,
}

/// A range of keys in byte order. Bounds are arbitrary byte strings; they are
/// not subject to the key limits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRange {
    /// Lower bound.
    pub start: Bound<Vec<u8>>,
    /// Upper bound.
    pub end: Bound<Vec<u8>>,
}

impl KeyRange {
    /// Every key.
    pub fn all() -> Self {
        KeyRange {
            start: Bound::Unbounded,
            end: Bound::Unbounded,
        }
    }

    /// Every key that starts with `prefix` (every key, for an empty prefix).
    pub fn prefix(prefix: &[u8]) -> Self {
        KeyRange {
            start: if prefix.is_empty() {
                Bound::Unbounded
            } else {
                Bound::Included(prefix.to_vec())
            },
            end: match prefix_successor(prefix) {
                Some(end) => Bound::Excluded(end),
                None => Bound::Unbounded,
            },
        }
    }

    /// Keys `k` with `start <= k < end`.
    pub fn between(start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        KeyRange {
            start: Bound::Included(start.into()),
            end: Bound::Excluded(end.into()),
        }
    }

    /// Keys `k` with `start <= k <= end`.
    pub fn between_inclusive(start: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        KeyRange {
            start: Bound::Included(start.into()),
            end: Bound::Included(end.into()),
        }
    }

    /// Whether `key` lies in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        let above = match &self.start {
            Bound::Included(s) => key >= s.as_slice(),
            Bound::Excluded(s) => key > s.as_slice(),
            Bound::Unbounded => true,
        };
        let below = match &self.end {
            Bound::Included(e) => key <= e.as_slice(),
            Bound::Excluded(e) => key < e.as_slice(),
            Bound::Unbounded => true,
        };
        above && below
    }

    /// Whether no key can lie in the range: start after end, an empty
    /// half-open interval, or an upper bound of `""` (keys are never empty).
    /// Engines return an empty scan for such ranges without asking the
    /// engine, whose range APIs may panic or fail on them.
    pub fn is_empty(&self) -> bool {
        match (&self.start, &self.end) {
            (_, Bound::Included(e) | Bound::Excluded(e)) if e.is_empty() => true,
            (Bound::Unbounded, _) | (_, Bound::Unbounded) => false,
            (Bound::Included(s), Bound::Included(e)) => s > e,
            (Bound::Included(s), Bound::Excluded(e)) | (Bound::Excluded(s), Bound::Included(e)) => {
                s >= e
            }
            (Bound::Excluded(s), Bound::Excluded(e)) => {
                // (s, e) is empty when e <= s or e is the immediate successor
                // of s in byte order (s followed by 0x00).
                e <= s || (e.len() == s.len() + 1 && e.starts_with(s) && e[s.len()] == 0)
            }
        }
    }

    /// The bounds as borrowed slices, in the form `std` and engines take.
    pub fn as_slices(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        (as_slice(&self.start), as_slice(&self.end))
    }
}

fn as_slice(b: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match b {
        Bound::Included(v) => Bound::Included(v.as_slice()),
        Bound::Excluded(v) => Bound::Excluded(v.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// The smallest byte string greater than every string starting with
/// `prefix`, or `None` when there is none (empty prefix or all `0xFF`).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != 0xFF)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

/// Statistics of a successful [`MetadataStore::restore`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RestoreStats {
    /// Records written.
    pub records: u64,
    /// Key and value bytes written.
    pub bytes: u64,
}

/// The storage contract every engine implements: an ordered, transactional
/// byte-string map.
///
/// The conformance suite (feature `conformance`) is the executable form of
/// this documentation; each sentence below has a test there.
///
/// # Keys and values
/// Keys are non-empty and at most [`MAX_KEY_LEN`](crate::MAX_KEY_LEN) (511)
/// bytes; values at most [`MAX_VALUE_LEN`](crate::MAX_VALUE_LEN). Every
/// engine rejects violations with [`Error::InvalidKey`](crate::Error::InvalidKey)
/// / [`Error::InvalidValue`](crate::Error::InvalidValue) before changing
/// anything. Nothing input can reach panics.
///
/// # Consistency
/// Every write (`set`, `delete`, `batch`) is atomic and, once it returns, is
/// visible to every later read from any thread. Reads (`get`, `range`,
/// `scan`) each see one consistent point-in-time view that concurrent writes
/// do not disturb. Writers are serialized; readers never wait for writers.
///
/// # Durability
/// Each write names a [`Durability`]. `Durable` writes survive a crash once
/// acknowledged; `Buffered` ones survive after a later durable write,
/// [`sync`](Self::sync) or [`close`](Self::close).
///
/// # Threads
/// Stores are `Send + Sync` and blocking: call them from a blocking context
/// (a dedicated thread or `spawn_blocking`), never on an async executor.
pub trait MetadataStore: Send + Sync {
    /// The engine's short name (`"mem"`, `"lmdb"`, `"fjall"`).
    fn engine(&self) -> &'static str;

    /// The value of `key`, or `None` when absent.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Sets `key` to `value`, atomically.
    fn set(&self, key: &[u8], value: &[u8], durability: Durability) -> Result<()> {
        let mut batch = WriteBatch::with_capacity(1);
        batch.put(key, value);
        self.batch(&batch, durability)
    }

    /// Removes `key`; removing an absent key is not an error.
    fn delete(&self, key: &[u8], durability: Durability) -> Result<()> {
        let mut batch = WriteBatch::with_capacity(1);
        batch.delete(key);
        self.batch(&batch, durability)
    }

    /// Applies every operation of `batch`, in order, or none of them: a
    /// reader sees either no effect or all of them, and so does the store
    /// after a crash. An invalid operation rejects the whole batch.
    fn batch(&self, batch: &WriteBatch, durability: Durability) -> Result<()>;

    /// Makes every acknowledged buffered write durable.
    fn sync(&self) -> Result<()>;

    /// Up to `limit` entries of `range` (all of them for `None`), in
    /// ascending key order for [`Direction::Forward`] and descending for
    /// [`Direction::Reverse`], from one consistent point-in-time view. An
    /// empty or inverted range yields nothing.
    fn range(
        &self,
        range: &KeyRange,
        direction: Direction,
        limit: Option<usize>,
    ) -> Result<Vec<KeyValue>>;

    /// Every entry whose key starts with `prefix`, in ascending key order,
    /// from one consistent view. The empty prefix scans the whole store.
    fn scan(&self, prefix: &[u8]) -> Result<Vec<KeyValue>> {
        self.range(&KeyRange::prefix(prefix), Direction::Forward, None)
    }

    /// The entry with the greatest key in `range`, if any.
    fn last(&self, range: &KeyRange) -> Result<Option<KeyValue>> {
        Ok(self.range(range, Direction::Reverse, Some(1))?.pop())
    }

    /// The entry with the smallest key in `range`, if any.
    fn first(&self, range: &KeyRange) -> Result<Option<KeyValue>> {
        Ok(self.range(range, Direction::Forward, Some(1))?.pop())
    }

    /// A stream, in the [portable snapshot format](crate::snapshot), of every
    /// entry under `prefix` as of the moment of the call. Writers are not
    /// blocked while the stream is read; memory stays bounded whatever the
    /// data size. Dropping the stream early releases the view.
    fn snapshot_with(&self, prefix: &[u8], options: &SnapshotOptions) -> Result<SnapshotStream>;

    /// [`snapshot_with`](Self::snapshot_with) with default options.
    fn snapshot(&self, prefix: &[u8]) -> Result<SnapshotStream> {
        self.snapshot_with(prefix, &SnapshotOptions::default())
    }

    /// Replaces everything under `prefix` with the content of a portable
    /// snapshot stream, atomically and durably: when this returns `Ok`, the
    /// store holds exactly the stream's records under `prefix` (keys outside
    /// `prefix` are untouched), on stable storage. On any error (bad
    /// checksum, truncation, wrong version, a record outside `prefix`, an I/O
    /// error) or a crash half-way, the old content stays: no reader ever sees
    /// a mix.
    fn restore(&self, prefix: &[u8], reader: &mut dyn Read) -> Result<RestoreStats>;

    /// Makes everything durable and closes the store; every later call
    /// returns [`Error::Closed`](crate::Error::Closed). Closing twice is fine.
    /// Dropping a store without closing it is safe too: only buffered writes
    /// may be lost.
    fn close(&self) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_successor_skips_trailing_ff() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(b"a\xff\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"\xff\xff"), None);
        assert_eq!(prefix_successor(b""), None);
    }

    #[test]
    fn prefix_range_contains_exactly_the_prefixed_keys() {
        let r = KeyRange::prefix(b"a\xff");
        assert!(r.contains(b"a\xff"));
        assert!(r.contains(b"a\xff\xff\x00"));
        assert!(!r.contains(b"a"));
        assert!(!r.contains(b"b"));
        assert!(KeyRange::prefix(b"").contains(b"\xff"));
    }

    #[test]
    fn empty_ranges_are_detected() {
        assert!(KeyRange::between(b"b".to_vec(), b"a".to_vec()).is_empty());
        assert!(KeyRange::between(b"a".to_vec(), b"a".to_vec()).is_empty());
        assert!(!KeyRange::between_inclusive(b"a".to_vec(), b"a".to_vec()).is_empty());
        let open = KeyRange {
            start: Bound::Excluded(b"a".to_vec()),
            end: Bound::Excluded(b"a\x00".to_vec()),
        };
        assert!(open.is_empty());
        assert!(!KeyRange::all().is_empty());
        let below_empty = KeyRange {
            start: Bound::Unbounded,
            end: Bound::Included(Vec::new()),
        };
        assert!(below_empty.is_empty());
    }

    #[test]
    fn last_write_per_key_keeps_the_last_op() {
        let mut b = WriteBatch::new();
        b.put(b"k".to_vec(), b"1".to_vec())
            .delete(b"k".to_vec())
            .put(b"a".to_vec(), b"x".to_vec());
        let ops = b.last_write_per_key();
        assert_eq!(ops.len(), 2);
        assert_eq!(ops[0].key(), b"a");
        assert_eq!(ops[1], &BatchOp::Delete { key: b"k".to_vec() });
    }
}
