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

pub(crate) fn run(factory: HarnessFactory<'_>) {
    let mut harness = factory();
    let store = harness.open().expect("opening a fresh store");
    let config = Config {
        cases: model_cases(),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&proptest::collection::vec(op(), 1..40), |ops| {
        // One store for the whole run; each case starts from empty.
        let mut clear = WriteBatch::new();
        for (k, _) in store.scan(b"").map_err(fail)? {
            clear.delete(k);
        }
        store.batch(&clear, Durability::Buffered).map_err(fail)?;
        let mut model = BTreeMap::new();
        for (step, op) in ops.into_iter().enumerate() {
            let ctx = |what: &str| format!("step {step} ({what})");
            match op {
                Op::Set(k, v, d) => {
                    store.set(&k, &v, d).map_err(fail)?;
                    model.insert(k, v);
                }
                Op::Delete(k) => {
                    store.delete(&k, Durability::Buffered).map_err(fail)?;
                    model.remove(&k);
                }
                Op::Batch(ops) => {
                    let mut batch = WriteBatch::new();
                    for (k, v) in ops {
                        match v {
                            Some(v) => {
                                batch.put(k.clone(), v.clone());
                                model.insert(k, v);
                            }
                            None => {
                                batch.delete(k.clone());
                                model.remove(&k);
                            }
                        }
                    }
                    store.batch(&batch, Durability::Buffered).map_err(fail)?;
                }
                Op::Get(k) => {
                    prop_assert_eq!(
                        store.get(&k).map_err(fail)?,
                        model.get(&k).cloned(),
                        "{}",
                        ctx("get")
                    );
                }
                Op::Scan(p) => {
                    let expected =
                        model_range(&model, &KeyRange::prefix(&p), Direction::Forward, None);
                    prop_assert_eq!(store.scan(&p).map_err(fail)?, expected, "{}", ctx("scan"));
                }
                Op::Range(start, end, dir, limit) => {
                    let range = KeyRange { start, end };
                    let expected = model_range(&model, &range, dir, limit);
                    prop_assert_eq!(
                        store.range(&range, dir, limit).map_err(fail)?,
                        expected,
                        "{}",
                        ctx("range")
                    );
                }
                Op::SnapshotRestore(p) => {
                    // Restoring a prefix from its own snapshot changes nothing.
                    let mut bytes = Vec::new();
                    std::io::Read::read_to_end(&mut store.snapshot(&p).map_err(fail)?, &mut bytes)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    store.restore(&p, &mut &bytes[..]).map_err(fail)?;
                }
            }
        }
        let all: Vec<KeyValue> = model.into_iter().collect();
        prop_assert_eq!(store.scan(b"").map_err(fail)?, all, "final content");
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
