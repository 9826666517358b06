//! The cases of the conformance suite, one function per sentence of the
//! [`MetadataStore`] contract. Each takes a
//! [`HarnessFactory`] and panics on failure.

use std::io::{self, Read};
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::support::{dump, kv, load, open, sample, snapshot_bytes, snapshot_bytes_with, within};
use super::{Case, HarnessFactory};
use crate::keys::log_key;
use crate::snapshot::{Compression, SnapshotOptions, SnapshotReader};
use crate::{
    Direction, Durability, Error, KeyRange, KeyValue, MAX_KEY_LEN, MAX_VALUE_LEN, MetadataStore,
    WriteBatch,
};

/// Lists every case, once: the table below and the tests that
/// [`conformance_tests!`](crate::conformance_tests) emits both come from it.
#[doc(hidden)]
#[macro_export]
macro_rules! __with_conformance_cases {
    ($callback:ident ! ($($args:tt)*)) => {
        $crate::$callback! { ($($args)*)
            get_of_an_absent_key_is_none,
            set_then_get_returns_the_last_value,
            delete_removes_and_deleting_an_absent_key_is_fine,
            empty_values_are_distinct_from_absent_keys,
            keys_and_values_are_binary_safe,
            key_limits_are_enforced_by_every_operation,
            value_limit_is_enforced,
            an_invalid_operation_rejects_the_whole_batch,
            batch_applies_in_order_and_the_last_write_wins,
            empty_batch_is_a_no_op,
            batches_are_atomic_for_concurrent_readers,
            concurrent_writers_all_land,
            scan_returns_exactly_the_prefix_in_ascending_order,
            scan_with_empty_prefix_returns_everything,
            scan_handles_ff_prefixes,
            keys_that_prefix_other_keys_are_scanned_correctly,
            range_honours_every_kind_of_bound,
            reverse_range_returns_descending_keys,
            range_limit_applies_in_both_directions,
            empty_and_inverted_ranges_yield_nothing,
            last_log_entry_is_found_by_reverse_scan,
            scans_see_a_point_in_time_view_under_concurrent_writes,
            snapshot_is_point_in_time_and_does_not_block_writers,
            snapshot_round_trips_through_restore,
            snapshot_holds_only_its_prefix,
            dropping_a_snapshot_early_releases_it,
            snapshot_of_an_empty_prefix_restores_to_nothing,
            restore_replaces_the_prefix_and_leaves_the_rest,
            restore_with_a_flipped_bit_anywhere_leaves_store_unchanged,
            restore_of_a_truncated_stream_leaves_store_unchanged,
            restore_rejects_wrong_version_and_garbage,
            restore_rejects_records_outside_the_prefix,
            restore_of_a_failing_reader_leaves_store_unchanged,
            restore_is_atomic_for_concurrent_readers,
            writes_survive_reopen,
            restore_survives_reopen,
            close_persists_buffered_writes_and_rejects_later_calls,
            a_second_open_of_a_live_store_is_refused,
            model_matches_a_btreemap,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __emit_case_table {
    (() $($case:ident),* $(,)?) => {
        /// Every case, in the order the suite runs them.
        pub static CASES: &[Case] = &[
            $(Case { name: stringify!($case), run: $case },)*
        ];
    };
}

crate::__with_conformance_cases!(__emit_case_table!());

const D: Durability = Durability::Durable;
const B: Durability = Durability::Buffered;

fn key_error(result: crate::Result<impl std::fmt::Debug>, what: &str) {
    match result {
        Err(Error::InvalidKey { .. }) => {}
        other => panic!("{what}: expected InvalidKey, got {other:?}"),
    }
}

/// `get` of a key never written returns `None`.
pub fn get_of_an_absent_key_is_none(f: HarnessFactory<'_>) {
    let (_h, s) = open(f);
    assert_eq!(s.get(b"/meta/kv/absent").unwrap(), None);
    s.set(b"/meta/kv/present", b"v", D).unwrap();
    assert_eq!(s.get(b"/meta/kv/absent").unwrap(), None);
    assert_eq!(s.get(b"/meta/kv/presen").unwrap(), None);
    assert_eq!(s.get(b"/meta/kv/present2").unwrap(), None);
}

/// `set` then `get` returns the value; a second `set` overwrites it.
pub fn set_then_get_returns_the_last_value(f: HarnessFactory<'_>) {
    let (_h, s) = open(f);
    s.set(b"k", b"one", D).unwrap();
    assert_eq!(s.get(b"k").unwrap().as_deref(), Some(&b"one"[..]));
    s.set(b"k", b"two", B).unwrap();
    assert_eq!(s.get(b"k").unwrap().as_deref(), Some(&b"two"[..]));
}

/// `delete` removes a key; deleting an absent key is not an error.
pub fn delete_removes_and_deleting_an_absent_key_is_fine(f: HarnessFactory<'_>) {
    let (_h, s) = open(f);
    s.set(b"k", b"v", D).unwrap();
    s.delete(b"k", D).unwrap();
    assert_eq!(s.get(b"k").unwrap(), None);
    s.delete(b"k", D).unwrap();
    s.delete(b"never", B).unwrap();
    assert!(dump(&*s).is_empty());
}

/// An empty value is stored and read back as empty, not as absent.
pub fn empty_values_are_distinct_from_absent_keys(f: HarnessFactory<'_>) {
    let (_h, s) = open(f);
    s.set(b"empty", b"", D).unwrap();
    assert_eq!(s.get(b"empty").unwrap(), Some(Vec::new()));
    assert_eq!(s.scan(b"").unwrap(), vec![kv(b"empty", b"")]);
}

/// Any byte may appear in keys and values, including `0x00` and `0xFF`.
pub fn keys_and_values_are_binary_safe(f: HarnessFactory<'_>) {
    let (_h, s) = open(f);
    let entries = [
        kv(b"\x00", b"\x00\x00"),
        kv(b"\x00\x00", b"\xff"),
        kv(b"a\x00b", b"\x00a"),
        kv(b"\xff", b""),
        kv(b"\xff\xff\xff", b"\xfe\xff\x00"),
    ];
    for (k, v) in &entries {
        s.set(k, v, B).unwrap();
    }
    for (k, v) in &entries {
        assert_eq!(s.get(k).unwrap().as_ref(), Some(v));
    }
    assert_eq!(dump(&*s), entries.to_vec());
}

/// Empty keys and keys over 511 bytes are `InvalidKey` errors for every
/// operation; a 511-byte key works. Nothing is written by a failed call.
pub fn key_limits_are_enforced_by_every_operation(f: HarnessFactory<'_>) {
    let (_h, s) = open(f);
    let longest = vec![b'k'; MAX_KEY_LEN];
    let too_long = vec![b'k'; MAX_KEY_LEN + 1];
    s.set(&longest, b"ok", D).unwrap();
    assert_eq!(s.get(&longest).unwrap().as_deref(), Some(&b"ok"[..]));
    for bad in [&b""[..], &too_long[..]] {
        key_error(s.set(bad, b"v", D), "set");
        key_error(s.get(bad), "get");
        key_error(s.delete(bad, D), "delete");
        let mut batch = WriteBatch::new();
        batch.put(bad.to_vec(), b"v".to_vec());
        key_error(s.batch(&batch, D), "batch put");
        let mut batch = WriteBatch::new();
        batch.delete(bad.to_vec());
        key_error(s.batch(&batch, D), "batch delete");
    }
    assert_eq!(dump(&*s), vec![(longest, b"ok".to_vec())]);
}

/// Values up to `MAX_VALUE_LEN` are stored; one byte more is `InvalidValue`.
pub fn value_limit_is_enforced(f: HarnessFactory<'_>) {
    let (_h, s) = open(f);
    let biggest = vec![7u8; MAX_VALUE_LEN];
    s.set(b"big", &biggest, D).unwrap();
    assert_eq!(s.get(b"big").unwrap().map(|v| v.len()), Some(MAX_VALUE_LEN));
    match s.set(b"bigger", &vec![7u8; MAX_VALUE_LEN + 1], D) {
        Err(Error::InvalidValue { len, max, .. }) => {
            assert_eq!((len, max), (MAX_VALUE_LEN + 1, MAX_VALUE_LEN));
        }
        other => panic!("expected InvalidValue, got {other:?}"),
    }
    assert_eq!(s.get(b"bigger").unwrap(), None);
}

/// A batch with one invalid operation is rejected whole: no other
/// operation of it is applied.
pub fn an_invalid_operation_rejects_the_whole_batch(f: HarnessFactory<'_>) {
    let (_h, s) = open(f);
    s.set(b"keep", b"old", D).unwrap();
    let mut batch = WriteBatch::new();
    batch
        .put(b"new".to_vec(), b"v".to_vec())
        .delete(b"keep".to_vec())
        .put(vec![b'x'; MAX_KEY_LEN + 1], b"v".to_vec());
    key_error(s.batch(&batch, D), "batch");
    let mut batch = WriteBatch::new();
    batch
        .put(b"new".to_vec(), b"v".to_vec())
        .put(b"huge".to_vec(), vec![0u8; MAX_VALUE_LEN + 1]);
    assert!(matches!(
        s.batch(&batch, D),
        Err(Error::InvalidValue { .. })
    ));
    assert_eq!(dump(&*s), vec![kv(b"keep", b"old")]);
}

/// A batch applies its operations in order: for a key touched twice, the
/// last operation wins.
pub fn batch_applies_in_order_and_the_last_write_wins(f: HarnessFactory<'_>) {
    let (_h, s) = open(f);
    s.set(b"d", b"old", D).unwrap();
    let mut batch = WriteBatch::new();
    batch
        .put(b"a".to_vec(), b"1".to_vec())
        .put(b"a".to_vec(), b"2".to_vec())
        .put(b"b".to_vec(), b"x".to_vec())
        .delete(b"b".to_vec())
        .delete(b"c".to_vec())
        .put(b"c".to_vec(), b"3".to_vec())
        .delete(b"d".to_vec());
    s.batch(&batch, D).unwrap();
    assert_eq!(dump(&*s), vec![kv(b"a", b"2"), kv(b"c", b"3")]);
}

/// An empty batch succeeds and changes nothing.
pub fn empty_batch_is_a_no_op(f: HarnessFactory<'_>) {
    let (_h, s) = open(f);
    s.set(b"a", b"1", D).unwrap();
    s.batch(&WriteBatch::new(), D).unwrap();
    s.batch(&WriteBatch::new(), B).unwrap();
    assert_eq!(dump(&*s), vec![kv(b"a", b"1")]);
}

/// Readers see all of a batch or none of it, while batches are committed
/// concurrently.
pub fn batches_are_atomic_for_concurrent_readers(f: HarnessFactory<'_>) {
    let (_h, s) = open(f);
    let s: Arc<dyn MetadataStore> = Arc::from(s);
    let keys: Vec<Vec<u8>> = (0..16)
        .map(|i| format!("/meta/kv/{i:02}").into_bytes())
        .collect();
    let generation = |g: u32| {
        let mut batch = WriteBatch::new();
        for k in &keys {
            batch.put(k.clone(), g.to_be_bytes().to_vec());
        }
        batch
    };
    s.batch(&generation(0), B).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (s, stop) = (s.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut checks = 0u32;
            while !stop.load(Ordering::Acquire) || checks < 10 {
                let scan = s.scan(b"/meta/kv/").unwrap();
                assert_eq!(scan.len(), 16, "a scan saw a partial batch");
                let first = &scan[0].1;
                assert!(
                    scan.iter().all(|(_, v)| v == first),
                    "a scan saw two generations at once"
                );
                checks += 1;
            }
            checks
        })
    };
    for g in 1..200u32 {
        s.batch(&generation(g), B).unwrap();
    }
    stop.store(true, Ordering::Release);
    assert!(reader.join().expect("reader panicked") >= 10);
}

/// Writes from many threads at once all land.
pub fn concurrent_writers_all_land(f: HarnessFactory<'_>) {
    let (_h, s) = open(f);
    let s: Arc<dyn MetadataStore> = Arc::from(s);
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..100u32 {
                    let key = [&[t][..], &i.to_be_bytes()].concat();
                    let durability = if i % 25 == 0 { D } else { B };
                    s.set(&key, &i.to_le_bytes(), durability).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("writer panicked");
    }
    let all = dump(&*s);
    assert_eq!(all.len(), 400);
    for (k, v) in all {
        assert_eq!(
            k[1..],
            u32::from_le_bytes(v[..].try_into().unwrap()).to_be_bytes()
        );
    }
}

/// `scan(prefix)` returns every key starting with `prefix` and no other,
/// in ascending byte order, whatever the insertion order.
pub fn scan_returns_exactly_the_prefix_in_ascending_order(f: HarnessFactory<'_>) {
    let (_h, s) = open(f);
    for k in [
        &b"/meta/b"[..],
        b"/meta/a2",
        b"/meta",
        b"/metb",
        b"/meta/a1",
        b"/met",
        b"/meta/",
    ] {
        s.set(k, k, B).unwrap();
    }
    let keys: Vec<_> = s
        .scan(b"/meta/")
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        keys,
        vec![
            b"/meta/".to_vec(),
            b"/meta/a1".to_vec(),
            b"/meta/a2".to_vec(),
            b"/meta/b".to_vec()
        ]
    );
    assert!(s.scan(b"/nothing").unwrap().is_empty());
}

/// The empty prefix scans the whole store.
pub fn scan_with_empty_prefix_returns_everything(f: HarnessFactory<'_>) {
    let (_h, s) = open(f);
    let entries = [kv(b"\x00", b"a"), kv(b"m", b"b"), kv(b"\xff\xff", b"c")];
    load(&*s, &entries);
    assert_eq!(s.scan(b"").unwrap(), entries.to_vec());
}

/// Prefixes made of `0xFF` bytes (which have no successor) still bound
/// the scan correctly.
pub fn scan_handles_ff_prefixes(f: HarnessFactory<'_>) {
    let (_h, s) = open(f);
    let entries = [
        kv(b"\xfe\xff", b"1"),
        kv(b"\xff", b"2"),
        kv(b"\xff\x00", b"3"),
        kv(b"\xff\xff", b"4"),
        kv(b"\xff\xff\x01", b"5"),
    ];
    load(&*s, &entries);
    assert_eq!(s.scan(b"\xff").unwrap(), entries[1..].to_vec());
    assert_eq!(s.scan(b"\xff\xff").unwrap(), entries[3..].to_vec());
    assert_eq!(s.scan(b"\xfe").unwrap(), entries[..1].to_vec());
    assert!(s.scan(b"\xff\xff\xff").unwrap().is_empty());
}

/// A key that is a prefix of other keys is included in their prefix scan,
/// and ordered before them.
pub fn keys_that_prefix_other_keys_are_scanned_correctly(f: HarnessFactory<'_>) {
    let (_h, s) = open(f);
    let entries = [
        kv(b"a", b"1"),
        kv(b"ab", b"2"),
        kv(b"abc", b"3"),
        kv(b"abd", b"4"),
        kv(b"b", b"5"),
    ];
    load(&*s, &entries);
    assert_eq!(s.scan(b"a").unwrap(), entries[..4].to_vec());
    assert_eq!(s.scan(b"ab").unwrap(), entries[1..4].to_vec());
    assert_eq!(s.scan(b"abc").unwrap(), entries[2..3].to_vec());
}

fn range_keys(
    s: &dyn MetadataStore,
    start: Bound<&[u8]>,
    end: Bound<&[u8]>,
    dir: Direction,
) -> Vec<Vec<u8>> {
    let owned = |b: Bound<&[u8]>| b.map(<[u8]>::to_vec);
    let range = KeyRange {
        start: owned(start),
        end: owned(end),
    };
    s.range(&range, dir, None)
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect()
}

fn five_keys(s: &dyn MetadataStore) -> Vec<Vec<u8>> {
    let keys: Vec<Vec<u8>> = [&b"a"[..], b"b", b"bb", b"c", b"d"]
        .iter()
        .map(|k| k.to_vec())
        .collect();
    load(
        s,
        &keys
            .iter()
            .map(|k| (k.clone(), k.clone()))
            .collect::<Vec<_>>(),
    );
    keys
}

/// Included, excluded and unbounded bounds select exactly the right keys.
pub fn range_honours_every_kind_of_bound(f: HarnessFactory<'_>) {
    let (_h, s) = open(f);
    let k = five_keys(&*s);
    use Bound::{Excluded as X, Included as I, Unbounded as U};
    let fw = Direction::Forward;
    assert_eq!(range_keys(&*s, I(b"b"), X(b"c"), fw), k[1..3].to_vec());
    assert_eq!(range_keys(&*s, X(b"b"), I(b"c"), fw), k[2..4].to_vec());
    assert_eq!(range_keys(&*s, I(b"b"), I(b"c"), fw), k[1..4].to_vec());
    assert_eq!(range_keys(&*s, X(b"b"), X(b"c"), fw), k[2..3].to_vec());
    assert_eq!(range_keys(&*s, U, X(b"bb"), fw), k[..2].to_vec());
    assert_eq!(range_keys(&*s, I(b"bb"), U, fw), k[2..].to_vec());
    assert_eq!(range_keys(&*s, U, U, fw), k.clone());
    // Bounds that are not keys themselves.
    assert_eq!(range_keys(&*s, I(b"ba"), I(b"cz"), fw), k[2..4].to_vec());
    assert_eq!(range_keys(&*s, I(b""), X(b"b"), fw), k[..1].to_vec());
    assert_eq!(range_keys(&*s, X(b""), X(b"b"), fw), k[..1].to_vec());
    // Bounds are not keys: they may be longer than the key limit.
    let long = [b"b".as_slice(), &[0x00; 600]].concat();
    assert_eq!(range_keys(&*s, I(&long), U, fw), k[2..].to_vec());
    assert_eq!(
        range_keys(&*s, U, I(&long), Direction::Reverse),
        vec![k[1].clone(), k[0].clone()]
    );
}

/// A reverse range returns the same keys as the forward one, descending.
pub fn reverse_range_returns_descending_keys(f: HarnessFactory<'_>) {
    let (_h, s) = open(f);
    let k = five_keys(&*s);
    use Bound::{Excluded as X, Included as I, Unbounded as U};
    let rev = Direction::Reverse;
    let mut expected = k[1..4].to_vec();
    expected.reverse();
    assert_eq!(range_keys(&*s, I(b"b"), I(b"c"), rev), expected);
    assert_eq!(range_keys(&*s, X(b"b"), X(b"c"), rev), vec![b"bb".to_vec()]);
    let mut all = k.clone();
    all.reverse();
    assert_eq!(range_keys(&*s, U, U, rev), all);
    assert_eq!(range_keys(&*s, U, X(b"b"), rev), vec![b"a".to_vec()]);
    assert_eq!(range_keys(&*s, X(b"c"), U, rev), vec![b"d".to_vec()]);
}

/// `limit` keeps the first entries in the scan's own direction.
pub fn range_limit_applies_in_both_directions(f: HarnessFactory<'_>) {
    let (_h, s) = open(f);
    let k = five_keys(&*s);
    let all = KeyRange::all();
    let fw: Vec<_> = s
        .range(&all, Direction::Forward, Some(2))
        .unwrap()
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(fw, k[..2].to_vec());
    let rev: Vec<_> = s
        .range(&all, Direction::Reverse, Some(2))
        .unwrap()
        .into_iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(rev, vec![k[4].clone(), k[3].clone()]);
    assert!(
        s.range(&all, Direction::Forward, Some(0))
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.range(&all, Direction::Forward, Some(99)).unwrap().len(),
        5
    );
    assert_eq!(s.first(&all).unwrap().map(|e| e.0), Some(k[0].clone()));
    assert_eq!(s.last(&all).unwrap().map(|e| e.0), Some(k[4].clone()));
}

/// Empty and inverted ranges return nothing (and never panic).
pub fn empty_and_inverted_ranges_yield_nothing(f: HarnessFactory<'_>) {
    let (_h, s) = open(f);
    five_keys(&*s);
    use Bound::{Excluded as X, Included as I};
    for dir in [Direction::Forward, Direction::Reverse] {
        assert!(range_keys(&*s, I(b"c"), I(b"b"), dir).is_empty());
        assert!(range_keys(&*s, I(b"b"), X(b"b"), dir).is_empty());
        assert!(range_keys(&*s, X(b"b"), I(b"b"), dir).is_empty());
        assert!(range_keys(&*s, X(b"b"), X(b"b\x00"), dir).is_empty());
        assert!(range_keys(&*s, X(b"d"), X(b"a"), dir).is_empty());
        // No key is empty, so nothing lies at or below "".
        assert!(range_keys(&*s, Bound::Unbounded, I(b""), dir).is_empty());
        assert!(range_keys(&*s, Bound::Unbounded, X(b""), dir).is_empty());
    }
    assert!(
        s.last(&KeyRange::between(b"x".to_vec(), b"y".to_vec()))
            .unwrap()
            .is_none()
    );
}

/// The Raft log's "last entry" is the reverse scan of the log prefix, even
/// with keys after the log in the store.
pub fn last_log_entry_is_found_by_reverse_scan(f: HarnessFactory<'_>) {
    let (_h, s) = open(f);
    for i in [1u64, 2, 255, 256, 70_000] {
        s.set(&log_key(i), &i.to_le_bytes(), B).unwrap();
    }
    s.set(b"/raft/snapshot", b"x", B).unwrap();
    s.set(b"/raft/committed", b"x", B).unwrap();
    let log = crate::keys::all_log_entries();
    let last = s.last(&log).unwrap().expect("a last entry");
    assert_eq!(last.0, log_key(70_000).to_vec());
    let first = s.first(&log).unwrap().expect("a first entry");
    assert_eq!(first.0, log_key(1).to_vec());
    let middle = s
        .range(&crate::keys::log_range(2, 257), Direction::Forward, None)
        .unwrap();
    assert_eq!(middle.len(), 3);
}

/// A scan reflects one moment: while a writer keeps moving a value between
/// two keys, every scan sees it in exactly one place.
pub fn scans_see_a_point_in_time_view_under_concurrent_writes(f: HarnessFactory<'_>) {
    let (_h, s) = open(f);
    let s: Arc<dyn MetadataStore> = Arc::from(s);
    // Many keys between the two ends make each scan take a while.
    let filler: Vec<KeyValue> = (0..500)
        .map(|i| kv(format!("p/m{i:04}").as_bytes(), b"f"))
        .collect();
    load(&*s, &filler);
    s.set(b"p/a", b"token", B).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (s, done) = (s.clone(), done.clone());
        std::thread::spawn(move || {
            for i in 0..2000 {
                let (from, to) = if i % 2 == 0 {
                    (b"p/a", b"p/z")
                } else {
                    (b"p/z", b"p/a")
                };
                let mut batch = WriteBatch::new();
                batch
                    .delete(from.to_vec())
                    .put(to.to_vec(), b"token".to_vec());
                s.batch(&batch, B).unwrap();
            }
            done.store(true, Ordering::Release);
        })
    };
    let mut scans = 0;
    while !done.load(Ordering::Acquire) || scans < 20 {
        let scan = s.scan(b"p/").unwrap();
        let tokens = scan.iter().filter(|(_, v)| v == b"token").count();
        assert_eq!(tokens, 1, "a scan saw the token {tokens} times");
        assert_eq!(scan.len(), 501);
        scans += 1;
    }
    writer.join().expect("writer panicked");
}

fn decode(bytes: &[u8]) -> Vec<KeyValue> {
    let mut reader = SnapshotReader::new(bytes).expect("a valid snapshot header");
    let mut out = Vec::new();
    while let Some((k, v)) = reader.next_record().expect("a valid snapshot") {
        out.push((k.to_vec(), v.to_vec()));
    }
    out
}

/// A snapshot holds the store as of the call, even if writes follow before
/// it is read, and those writes are not blocked while it is open.
pub fn snapshot_is_point_in_time_and_does_not_block_writers(f: HarnessFactory<'_>) {
    let (_h, s) = open(f);
    let s: Arc<dyn MetadataStore> = Arc::from(s);
    let before = sample(b"/meta/kv/", 3000);
    load(&*s, &before);
    let options = SnapshotOptions {
        compression: Compression::None,
        block_size: 4096,
    };
    let mut stream = s.snapshot_with(b"/meta/", &options).unwrap();
    // Read a little so the producer is mid-way, then write around it.
    let mut head = vec![0u8; 10_000];
    stream.read_exact(&mut head).unwrap();
    let writer = s.clone();
    within(60, "writes while a snapshot is open", move || {
        let mut batch = WriteBatch::new();
        for (k, _) in sample(b"/meta/kv/", 3000).iter().step_by(2) {
            batch.delete(k.clone());
        }
        batch.put(b"/meta/kv/new".to_vec(), b"late".to_vec());
        writer.batch(&batch, D).unwrap();
        writer.set(b"/meta/kv/000001", b"changed", D).unwrap();
    });
    let mut rest = Vec::new();
    stream.read_to_end(&mut rest).unwrap();
    head.extend_from_slice(&rest);
    assert_eq!(decode(&head), before);
    assert_eq!(s.scan(b"/meta/").unwrap().len(), 1501);
}

/// A snapshot restored into a fresh store reproduces the content exactly,
/// with and without compression.
pub fn snapshot_round_trips_through_restore(f: HarnessFactory<'_>) {
    let (_h, s) = open(f);
    let mut entries = sample(b"/meta/kv/", 500);
    entries.push(kv(b"/meta/kv/\xff\xff", &vec![1u8; 200_000]));
    load(&*s, &entries);
    for compression in [Compression::None, Compression::Lz4] {
        let options = SnapshotOptions {
            compression,
            block_size: 1000,
        };
        let bytes = snapshot_bytes_with(&*s, b"/meta/", &options);
        let (_h2, target) = open(f);
        let stats = target.restore(b"/meta/", &mut &bytes[..]).unwrap();
        assert_eq!(stats.records, entries.len() as u64);
        assert_eq!(dump(&*target), entries);
    }
}

/// A snapshot of a prefix holds exactly the keys under it.
pub fn snapshot_holds_only_its_prefix(f: HarnessFactory<'_>) {
    let (_h, s) = open(f);
    let inside = sample(b"/meta/", 20);
    load(&*s, &inside);
    load(
        &*s,
        &[
            kv(b"/meta", b"x"),
            kv(b"/metb", b"x"),
            kv(b"/raft/vote", b"x"),
            kv(b"\x00", b"x"),
        ],
    );
    assert_eq!(decode(&snapshot_bytes(&*s, b"/meta/")), inside);
    assert_eq!(decode(&snapshot_bytes(&*s, b"")).len(), 24);
}

/// Dropping a snapshot stream before its end is fine: the store keeps
/// working and a new snapshot is complete.
pub fn dropping_a_snapshot_early_releases_it(f: HarnessFactory<'_>) {
    let (_h, s) = open(f);
    load(&*s, &sample(b"k", 5000));
    for _ in 0..5 {
        let mut stream = s.snapshot(b"").unwrap();
        let mut some = [0u8; 100];
        stream.read_exact(&mut some).unwrap();
        drop(stream);
    }
    drop(s.snapshot(b"").unwrap());
    s.set(b"k-after", b"v", D).unwrap();
    assert_eq!(decode(&snapshot_bytes(&*s, b"")).len(), 5001);
}

/// A snapshot of an empty prefix is valid, and restoring it clears the
/// prefix.
pub fn snapshot_of_an_empty_prefix_restores_to_nothing(f: HarnessFactory<'_>) {
    let (_h, empty) = open(f);
    let bytes = snapshot_bytes(&*empty, b"/meta/");
    assert!(decode(&bytes).is_empty());
    let (_h2, s) = open(f);
    load(&*s, &sample(b"/meta/kv/", 10));
    s.set(b"/raft/vote", b"v", D).unwrap();
    let stats = s.restore(b"/meta/", &mut &bytes[..]).unwrap();
    assert_eq!(stats.records, 0);
    assert_eq!(dump(&*s), vec![kv(b"/raft/vote", b"v")]);
}

/// `restore` replaces everything under the prefix (old keys disappear,
/// new ones appear) and touches nothing outside it.
pub fn restore_replaces_the_prefix_and_leaves_the_rest(f: HarnessFactory<'_>) {
    let (_h, source) = open(f);
    let new = sample(b"/meta/kv/n", 300);
    load(&*source, &new);
    let bytes = snapshot_bytes(&*source, b"/meta/");
    let (_h2, s) = open(f);
    let outside = [
        kv(b"/meta", b"edge"),
        kv(b"/metb", b"edge"),
        kv(b"/raft/vote", b"v"),
        kv(b"\xff", b"z"),
    ];
    load(&*s, &outside);
    load(&*s, &sample(b"/meta/kv/o", 300));
    s.restore(b"/meta/", &mut &bytes[..]).unwrap();
    let mut expected = outside.to_vec();
    expected.extend(new);
    expected.sort();
    assert_eq!(dump(&*s), expected);
}

/// A store that a bad restore must leave as it is.
fn corruption_target(
    f: HarnessFactory<'_>,
) -> (
    Box<dyn super::Harness>,
    Box<dyn MetadataStore>,
    Vec<KeyValue>,
) {
    let (h, s) = open(f);
    load(&*s, &sample(b"/meta/kv/old", 50));
    s.set(b"/raft/vote", b"v", D).unwrap();
    let before = dump(&*s);
    (h, s, before)
}

fn corruption_source(f: HarnessFactory<'_>) -> Vec<u8> {
    let (_h, source) = open(f);
    load(&*source, &sample(b"/meta/kv/new", 200));
    // Small blocks: many block boundaries to corrupt.
    let options = SnapshotOptions {
        compression: Compression::Lz4,
        block_size: 2048,
    };
    snapshot_bytes_with(&*source, b"/meta/", &options)
}

/// Byte positions to damage: every one for short streams, else the first
/// and last 64 and 400 spread over the middle.
fn positions(len: usize) -> Vec<usize> {
    if len <= 600 {
        return (0..len).collect();
    }
    let mut p: Vec<usize> = (0..64).chain(len - 64..len).collect();
    p.extend((0..400).map(|i| 64 + i * (len - 128) / 400));
    p.sort_unstable();
    p.dedup();
    p
}

/// Flipping any single bit of a snapshot makes `restore` fail, and the
/// store keeps its old content.
pub fn restore_with_a_flipped_bit_anywhere_leaves_store_unchanged(f: HarnessFactory<'_>) {
    let bytes = corruption_source(f);
    let (_h, s, before) = corruption_target(f);
    for pos in positions(bytes.len()) {
        let mut bad = bytes.clone();
        bad[pos] ^= 1 << (pos % 8);
        let result = s.restore(b"/meta/", &mut &bad[..]);
        assert!(
            result.is_err(),
            "a bit flipped at byte {pos} of {} went unnoticed",
            bytes.len()
        );
    }
    assert_eq!(dump(&*s), before);
    s.restore(b"/meta/", &mut &bytes[..])
        .expect("the intact stream still restores");
}

/// A snapshot cut short anywhere makes `restore` fail with the store
/// unchanged.
pub fn restore_of_a_truncated_stream_leaves_store_unchanged(f: HarnessFactory<'_>) {
    let bytes = corruption_source(f);
    let (_h, s, before) = corruption_target(f);
    for len in positions(bytes.len()) {
        let result = s.restore(b"/meta/", &mut &bytes[..len]);
        match result {
            Err(Error::Snapshot(_)) => {}
            other => panic!("a stream cut at {len} of {} gave {other:?}", bytes.len()),
        }
    }
    assert_eq!(dump(&*s), before);
}

/// A stream of another format version, or not a snapshot at all, is
/// refused with a clear error and the store unchanged.
pub fn restore_rejects_wrong_version_and_garbage(f: HarnessFactory<'_>) {
    let bytes = corruption_source(f);
    let (_h, s, before) = corruption_target(f);
    // Rewrite the version and fix the header checksum, as a future writer would.
    let mut future = bytes.clone();
    future[8..10].copy_from_slice(&2u16.to_le_bytes());
    let prefix_len = usize::from(u16::from_le_bytes([future[12], future[13]]));
    let end = 14 + prefix_len;
    let crc = crc32c::crc32c(&future[..end]);
    future[end..end + 4].copy_from_slice(&crc.to_le_bytes());
    match s.restore(b"/meta/", &mut &future[..]) {
        Err(Error::Snapshot(crate::snapshot::SnapshotError::UnsupportedVersion {
            found: 2,
            ..
        })) => {}
        other => panic!("expected UnsupportedVersion, got {other:?}"),
    }
    for garbage in [
        &b""[..],
        b"METASNA",
        b"hello world, not a snapshot",
        &[0u8; 4096],
    ] {
        assert!(matches!(
            s.restore(b"/meta/", &mut &garbage[..]),
            Err(Error::Snapshot(_))
        ));
    }
    assert_eq!(dump(&*s), before);
}

/// Restoring into a prefix that does not cover the stream's keys is an
/// error, and nothing changes.
pub fn restore_rejects_records_outside_the_prefix(f: HarnessFactory<'_>) {
    let bytes = corruption_source(f);
    let (_h, s, before) = corruption_target(f);
    match s.restore(b"/meta/shard/", &mut &bytes[..]) {
        Err(Error::InvalidArgument(msg)) => assert!(msg.contains("outside"), "{msg}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert_eq!(dump(&*s), before);
}

/// A reader that fails half-way (a broken connection) leaves the store
/// unchanged.
pub fn restore_of_a_failing_reader_leaves_store_unchanged(f: HarnessFactory<'_>) {
    struct Failing<'a>(&'a [u8]);
    impl Read for Failing<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    "peer went away",
                ));
            }
            let n = buf.len().min(self.0.len()).min(1000);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }
    let bytes = corruption_source(f);
    let (_h, s, before) = corruption_target(f);
    let half = &bytes[..bytes.len() / 2];
    assert!(s.restore(b"/meta/", &mut Failing(half)).is_err());
    assert_eq!(dump(&*s), before);
}

/// While a restore runs, readers see the whole old content or the whole
/// new content, never a mix.
pub fn restore_is_atomic_for_concurrent_readers(f: HarnessFactory<'_>) {
    /// Hands the stream over in small pieces, slowly, so readers run
    /// during the restore.
    struct Slow<'a>(&'a [u8]);
    impl Read for Slow<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.0.len()).min(512);
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            std::thread::yield_now();
            Ok(n)
        }
    }
    let (_h, source) = open(f);
    let keys: Vec<Vec<u8>> = (0..1000)
        .map(|i| format!("/meta/kv/{i:04}").into_bytes())
        .collect();
    load(
        &*source,
        &keys
            .iter()
            .map(|k| (k.clone(), b"new".to_vec()))
            .collect::<Vec<_>>(),
    );
    let options = SnapshotOptions {
        compression: Compression::None,
        block_size: 1024,
    };
    let bytes = snapshot_bytes_with(&*source, b"/meta/", &options);
    let (_h2, s) = open(f);
    let s: Arc<dyn MetadataStore> = Arc::from(s);
    load(
        &*s,
        &keys
            .iter()
            .step_by(2)
            .map(|k| (k.clone(), b"old".to_vec()))
            .collect::<Vec<_>>(),
    );
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (s, done) = (s.clone(), done.clone());
        std::thread::spawn(move || {
            let mut seen_new = false;
            loop {
                let finished = done.load(Ordering::Acquire);
                let scan = s.scan(b"/meta/").unwrap();
                let old = scan.iter().all(|(_, v)| v == b"old") && scan.len() == 500;
                let new = scan.iter().all(|(_, v)| v == b"new") && scan.len() == 1000;
                assert!(
                    old || new,
                    "a reader saw {} keys of mixed content",
                    scan.len()
                );
                seen_new |= new;
                if finished {
                    return seen_new;
                }
            }
        })
    };
    s.restore(b"/meta/", &mut Slow(&bytes)).unwrap();
    done.store(true, Ordering::Release);
    assert!(
        reader.join().expect("reader panicked"),
        "the reader never saw the restored content"
    );
}

/// Durable writes, and buffered writes followed by `sync`, survive
/// dropping the store and opening it again.
pub fn writes_survive_reopen(f: HarnessFactory<'_>) {
    let (mut h, s) = open(f);
    if !h.persistent() {
        super::skip("the engine keeps nothing from one open to the next");
    }
    s.set(b"durable", b"1", D).unwrap();
    let mut batch = WriteBatch::new();
    batch
        .put(b"batched".to_vec(), b"2".to_vec())
        .delete(b"durable-gone".to_vec());
    s.batch(&batch, D).unwrap();
    s.set(b"durable-gone", b"x", D).unwrap();
    s.delete(b"durable-gone", D).unwrap();
    s.set(b"buffered", b"3", B).unwrap();
    s.sync().unwrap();
    let expected = dump(&*s);
    drop(s);
    let s = h.open().expect("reopening");
    assert_eq!(dump(&*s), expected);
    assert_eq!(expected.len(), 3);
}

/// A completed restore is durable.
pub fn restore_survives_reopen(f: HarnessFactory<'_>) {
    let (mut h, s) = open(f);
    if !h.persistent() {
        super::skip("the engine keeps nothing from one open to the next");
    }
    let (_h2, source) = open(f);
    load(&*source, &sample(b"/meta/kv/", 100));
    let bytes = snapshot_bytes(&*source, b"/meta/");
    s.set(b"/meta/kv/stale", b"x", D).unwrap();
    s.restore(b"/meta/", &mut &bytes[..]).unwrap();
    drop(s);
    let s = h.open().expect("reopening");
    assert_eq!(dump(&*s), dump(&*source));
}

/// `close` makes buffered writes durable; later calls fail with `Closed`;
/// closing twice is fine.
pub fn close_persists_buffered_writes_and_rejects_later_calls(f: HarnessFactory<'_>) {
    let (mut h, s) = open(f);
    s.set(b"a", b"1", B).unwrap();
    s.close().unwrap();
    s.close().unwrap();
    assert!(matches!(s.get(b"a"), Err(Error::Closed)));
    assert!(matches!(s.set(b"a", b"2", D), Err(Error::Closed)));
    assert!(matches!(s.delete(b"a", D), Err(Error::Closed)));
    assert!(matches!(s.batch(&WriteBatch::new(), D), Err(Error::Closed)));
    assert!(matches!(s.scan(b""), Err(Error::Closed)));
    assert!(matches!(s.sync(), Err(Error::Closed)));
    assert!(matches!(s.snapshot(b""), Err(Error::Closed)));
    assert!(matches!(s.restore(b"", &mut &b""[..]), Err(Error::Closed)));
    if h.persistent() {
        drop(s);
        let s = h.open().expect("reopening");
        assert_eq!(s.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
    }
}

/// A persistent store cannot be opened twice at once: the second open is
/// `Locked` (and the first handle keeps working).
pub fn a_second_open_of_a_live_store_is_refused(f: HarnessFactory<'_>) {
    let (mut h, s) = open(f);
    if !h.persistent() {
        super::skip("the engine keeps nothing from one open to the next");
    }
    match h.open() {
        Err(Error::Locked { .. }) => {}
        Err(other) => panic!("expected Locked, got {other:?}"),
        Ok(_) => panic!("a second handle on a live store was allowed"),
    }
    s.set(b"still", b"works", D).unwrap();
    drop(s);
    let s = h.open().expect("opening once the first handle is gone");
    assert_eq!(s.get(b"still").unwrap().as_deref(), Some(&b"works"[..]));
}

/// Random operation sequences give the same results as a `BTreeMap`.
pub fn model_matches_a_btreemap(f: HarnessFactory<'_>) {
    super::model::run(f);
}
