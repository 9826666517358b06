//! The conformance suite must fail on broken engines: a suite that passes
//! everything proves nothing. A small `BTreeMap` engine passes it whole;
//! each deliberately planted bug must make the named case fail.

// A poisoned lock in this test engine is a test failure.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use meta_store_api::conformance::{Harness, run_all};
use meta_store_api::snapshot::{SnapshotOptions, SnapshotStream, restore_records, spawn_snapshot};
use meta_store_api::{
    BatchOp, Direction, Durability, Error, KeyRange, KeyValue, MetadataStore, RestoreStats, Result,
    WriteBatch, limits,
};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Bug {
    None,
    NoKeyLimit,
    RestoreInPlace,
    ReverseIsForward,
    FirstWriteWins,
}

struct MapStore {
    map: Mutex<BTreeMap<Vec<u8>, Vec<u8>>>,
    closed: AtomicBool,
    bug: Bug,
}

impl MapStore {
    fn check(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }
}

impl MetadataStore for MapStore {
    fn engine(&self) -> &'static str {
        "test-map"
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check()?;
        limits::check_key(key)?;
        Ok(self.map.lock().unwrap().get(key).cloned())
    }

    fn batch(&self, batch: &WriteBatch, _: Durability) -> Result<()> {
        self.check()?;
        if self.bug != Bug::NoKeyLimit {
            batch.validate()?;
        }
        let mut map = self.map.lock().unwrap();
        let mut ops: Vec<&BatchOp> = batch.ops().iter().collect();
        if self.bug == Bug::FirstWriteWins {
            ops.reverse();
        }
        for op in ops {
            match op {
                BatchOp::Put { key, value } => {
                    map.insert(key.clone(), value.clone());
                }
                BatchOp::Delete { key } => {
                    map.remove(key);
                }
            }
        }
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.check()
    }

    fn range(
        &self,
        range: &KeyRange,
        dir: Direction,
        limit: Option<usize>,
    ) -> Result<Vec<KeyValue>> {
        self.check()?;
        let map = self.map.lock().unwrap();
        let all = map
            .iter()
            .filter(|(k, _)| range.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()));
        let limit = limit.unwrap_or(usize::MAX);
        Ok(
            if dir == Direction::Reverse && self.bug != Bug::ReverseIsForward {
                let mut v: Vec<_> = all.collect();
                v.reverse();
                v.truncate(limit);
                v
            } else {
                all.take(limit).collect()
            },
        )
    }

    fn snapshot_with(&self, prefix: &[u8], options: &SnapshotOptions) -> Result<SnapshotStream> {
        self.check()?;
        let view = self.scan(prefix)?;
        spawn_snapshot(prefix, options, move |sink| {
            sink.view_opened();
            view.iter().try_for_each(|(k, v)| sink.push(k, v))
        })
    }

    fn restore(&self, prefix: &[u8], reader: &mut dyn Read) -> Result<RestoreStats> {
        self.check()?;
        let mut map = self.map.lock().unwrap();
        let mut staged = map.clone();
        staged.retain(|k, _| !k.starts_with(prefix));
        if self.bug == Bug::RestoreInPlace {
            map.retain(|k, _| !k.starts_with(prefix));
            return restore_records(prefix, reader, |k, v| {
                map.insert(k.to_vec(), v.to_vec());
                Ok(())
            });
        }
        let stats = restore_records(prefix, reader, |k, v| {
            staged.insert(k.to_vec(), v.to_vec());
            Ok(())
        })?;
        *map = staged;
        Ok(stats)
    }

    fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        Ok(())
    }
}

fn failures(bug: Bug) -> Vec<&'static str> {
    struct H(Bug);
    impl Harness for H {
        fn open(&mut self) -> Result<Box<dyn MetadataStore>> {
            Ok(Box::new(MapStore {
                map: Mutex::new(BTreeMap::new()),
                closed: AtomicBool::new(false),
                bug: self.0,
            }))
        }
        fn persistent(&self) -> bool {
            false
        }
    }
    let factory = move || Box::new(H(bug)) as Box<dyn Harness>;
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let failed = run_all(&factory)
        .into_iter()
        .filter(|o| o.failure.is_some())
        .map(|o| o.name)
        .collect();
    std::panic::set_hook(hook);
    failed
}

#[test]
fn the_suite_passes_a_correct_engine_and_fails_each_planted_bug() {
    assert_eq!(
        failures(Bug::None),
        Vec::<&str>::new(),
        "the reference test engine must pass"
    );
    for (bug, case) in [
        (
            Bug::NoKeyLimit,
            "key_limits_are_enforced_by_every_operation",
        ),
        (
            Bug::RestoreInPlace,
            "restore_with_a_flipped_bit_anywhere_leaves_store_unchanged",
        ),
        (
            Bug::ReverseIsForward,
            "reverse_range_returns_descending_keys",
        ),
        (
            Bug::FirstWriteWins,
            "batch_applies_in_order_and_the_last_write_wins",
        ),
    ] {
        let failed = failures(bug);
        assert!(
            failed.contains(&case),
            "{bug:?} was not caught by {case}; failures: {failed:?}"
        );
    }
}
