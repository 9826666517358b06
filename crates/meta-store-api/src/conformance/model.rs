//! The model test: random operation sequences against the engine and a
//! `BTreeMap`, compared after every step.

use std::collections::BTreeMap;
use std::ops::Bound;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::HarnessFactory;
use crate::{Direction, Durability, KeyRange, KeyValue, WriteBatch};

/// Random cases per engine: `META_CONFORMANCE_CASES`, or 1,000.
pub fn model_cases() -> u32 {
    std::env::var("META_CONFORMANCE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000)
}

#[derive(Clone, Debug)]
enum Op {
    Set(Vec<u8>, Vec<u8>, Durability),
    Delete(Vec<u8>),
    Batch(Vec<(Vec<u8>, Option<Vec<u8>>)>),
    Get(Vec<u8>),
    Scan(Vec<u8>),
    Range(Bound<Vec<u8>>, Bound<Vec<u8>>, Direction, Option<usize>),
    SnapshotRestore(Vec<u8>),
}

/// Keys from a tiny alphabet, so keys collide and prefix one another, and
/// `0x00`/`0xFF` edges come up often.
fn key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop::sample::select(vec![0x00u8, 0x01, b'a', b'b', 0xFE, 0xFF]),
        1..5,
    )
}

fn prefix() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(prop::sample::select(vec![0x00u8, b'a', b'b', 0xFF]), 0..3)
}

fn bound() -> impl Strategy<Value = Bound<Vec<u8>>> {
    prop_oneof![
        Just(Bound::Unbounded),
        prefix().prop_map(Bound::Included),
        prefix().prop_map(Bound::Excluded),
    ]
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..24)
}

fn op() -> impl Strategy<Value = Op> {
    let durability = prop_oneof![Just(Durability::Buffered), Just(Durability::Durable)];
    let direction = prop_oneof![Just(Direction::Forward), Just(Direction::Reverse)];
    prop_oneof![
        6 => (key(), value(), durability).prop_map(|(k, v, d)| Op::Set(k, v, d)),
        2 => key().prop_map(Op::Delete),
        2 => proptest::collection::vec((key(), proptest::option::of(value())), 0..6).prop_map(Op::Batch),
        3 => key().prop_map(Op::Get),
        2 => prefix().prop_map(Op::Scan),
        3 => (bound(), bound(), direction, proptest::option::of(0usize..4))
            .prop_map(|(s, e, d, l)| Op::Range(s, e, d, l)),
        1 => prefix().prop_map(Op::SnapshotRestore),
    ]
}

fn model_range(
    model: &BTreeMap<Vec<u8>, Vec<u8>>,
    range: &KeyRange,
    dir: Direction,
    limit: Option<usize>,
) -> Vec<KeyValue> {
    let all = model
        .iter()
        .filter(|(k, _)| range.contains(k))
        .map(|(k, v)| (k.clone(), v.clone()));
    let limit = limit.unwrap_or(usize::MAX);
    match dir {
        Direction::Forward => all.take(limit).collect(),
        Direction::Reverse => {
            let mut v: Vec<_> = all.collect();
            v.reverse();
            v.truncate(limit);
            v
        }
    }
}

/// Each case works under its own 4-byte namespace, so one store serves the
/// whole run without a case seeing another's keys — and without scanning
/// the tombstones of every earlier case, which would make an LSM engine's
/// run quadratic.
struct Space([u8; 4]);

impl Space {
    fn key(&self, key: &[u8]) -> Vec<u8> {
        [&self.0[..], key].concat()
    }

    fn range(&self, start: Bound<Vec<u8>>, end: Bound<Vec<u8>>) -> KeyRange {
        let whole = KeyRange::prefix(&self.0);
        let inner = |b: Bound<Vec<u8>>, unbounded: Bound<Vec<u8>>| match b {
            Bound::Included(k) => Bound::Included(self.key(&k)),
            Bound::Excluded(k) => Bound::Excluded(self.key(&k)),
            Bound::Unbounded => unbounded,
        };
        KeyRange {
            start: inner(start, whole.start),
            end: inner(end, whole.end),
        }
    }

    fn strip(&self, entries: Vec<KeyValue>) -> Vec<KeyValue> {
        entries
            .into_iter()
            .map(|(k, v)| (k[self.0.len()..].to_vec(), v))
            .collect()
    }
}

pub(crate) fn run(factory: HarnessFactory<'_>) {
    let mut harness = factory();
    let store = harness.open().expect("opening a fresh store");
    let config = Config {
        cases: model_cases(),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let case = std::cell::Cell::new(0u32);
    let result = runner.run(&proptest::collection::vec(op(), 1..40), |ops| {
        case.set(case.get() + 1);
        let space = Space(case.get().to_be_bytes());
        let mut model = BTreeMap::new();
        for (step, op) in ops.into_iter().enumerate() {
            let ctx = |what: &str| format!("step {step} ({what})");
            match op {
                Op::Set(k, v, d) => {
                    store.set(&space.key(&k), &v, d).map_err(fail)?;
                    model.insert(k, v);
                }
                Op::Delete(k) => {
                    store
                        .delete(&space.key(&k), Durability::Buffered)
                        .map_err(fail)?;
                    model.remove(&k);
                }
                Op::Batch(ops) => {
                    let mut batch = WriteBatch::new();
                    for (k, v) in ops {
                        match v {
                            Some(v) => {
                                batch.put(space.key(&k), v.clone());
                                model.insert(k, v);
                            }
                            None => {
                                batch.delete(space.key(&k));
                                model.remove(&k);
                            }
                        }
                    }
                    store.batch(&batch, Durability::Buffered).map_err(fail)?;
                }
                Op::Get(k) => {
                    let got = store.get(&space.key(&k)).map_err(fail)?;
                    prop_assert_eq!(got, model.get(&k).cloned(), "{}", ctx("get"));
                }
                Op::Scan(p) => {
                    let expected =
                        model_range(&model, &KeyRange::prefix(&p), Direction::Forward, None);
                    let got = space.strip(store.scan(&space.key(&p)).map_err(fail)?);
                    prop_assert_eq!(got, expected, "{}", ctx("scan"));
                }
                Op::Range(start, end, dir, limit) => {
                    let expected = model_range(
                        &model,
                        &KeyRange {
                            start: start.clone(),
                            end: end.clone(),
                        },
                        dir,
                        limit,
                    );
                    let range = space.range(start, end);
                    let got = space.strip(store.range(&range, dir, limit).map_err(fail)?);
                    prop_assert_eq!(got, expected, "{}", ctx("range"));
                }
                Op::SnapshotRestore(p) => {
                    // Restoring a prefix from its own snapshot changes nothing.
                    let p = space.key(&p);
                    let mut bytes = Vec::new();
                    std::io::Read::read_to_end(&mut store.snapshot(&p).map_err(fail)?, &mut bytes)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    store.restore(&p, &mut &bytes[..]).map_err(fail)?;
                }
            }
        }
        let all: Vec<KeyValue> = model.into_iter().collect();
        let got = space.strip(store.scan(&space.0).map_err(fail)?);
        prop_assert_eq!(got, all, "final content");
        Ok(())
    });
    if let Err(e) = result {
        panic!(
            "{} engine diverged from the BTreeMap model: {e}",
            store.engine()
        );
    }
}

fn fail(e: crate::Error) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}
