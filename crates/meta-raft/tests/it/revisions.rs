//! Revisions and transactions: random puts, deletes, compare-and-swaps,
//! transactions and batches, applied on every engine, answer exactly what a
//! model of the rules answers, and leave identical revisions, records and
//! content hashes; a transaction is refused whole or applied whole; a store
//! written before revisions is upgraded in place.

use std::collections::BTreeMap;

use meta_raft::model::{
    Change, Compare, CompareOp, CompareTarget, Event, KvEntry, MAX_TXN_OPS, Txn, TxnOp,
    TxnOpResult, TxnResponse,
};
use meta_raft::types::{Entry, TypeConfig};
use meta_raft::{Command, Cursor, Envelope, Rejection, Response, StateMachine};
use meta_store_api::keys::applied_key;
use meta_store_api::{Durability, WriteBatch};
use meta_testkit::router::content_hash;
use meta_testkit::{Engine, OpenForTests};
use openraft::EntryPayload;
use openraft::storage::RaftStateMachine;
use openraft::testing::log_id;
use proptest::prelude::*;

/// The rules, written out plainly: what every command answers and leaves,
/// and the changes a watch reports.
#[derive(Default, Debug)]
struct Model {
    kv: BTreeMap<Vec<u8>, KvEntry>,
    revision: u64,
    events: Vec<Event>,
}

fn kv_change(key: &[u8], entry: Option<&KvEntry>) -> Change {
    Change::Kv {
        key: key.to_vec(),
        entry: entry.cloned(),
    }
}

impl Model {
    fn put(&mut self, key: &[u8], value: &[u8], revision: u64) {
        let (create_revision, version) = match self.kv.get(key) {
            Some(old) => (old.create_revision, old.version + 1),
            None => (revision, 1),
        };
        let entry = KvEntry {
            create_revision,
            mod_revision: revision,
            version,
            value: value.to_vec(),
        };
        let prev = self.kv.insert(key.to_vec(), entry.clone());
        self.events.push(Event {
            revision,
            change: kv_change(key, Some(&entry)),
            prev: prev.as_ref().map(|p| kv_change(key, Some(p))),
            prev_omitted: false,
        });
    }

    /// The bytes of every key and value (no other map is written here).
    fn data_bytes(&self) -> u64 {
        self.kv
            .iter()
            .map(|(k, e)| (k.len() + e.value.len()) as u64)
            .sum()
    }

    fn remove(&mut self, key: &[u8], revision: u64) -> bool {
        let Some(prev) = self.kv.remove(key) else {
            return false;
        };
        self.events.push(Event {
            revision,
            change: kv_change(key, None),
            prev: Some(kv_change(key, Some(&prev))),
            prev_omitted: false,
        });
        true
    }

    fn holds(&self, c: &Compare) -> bool {
        let e = self.kv.get(&c.key);
        let (left, right): (Vec<u8>, Vec<u8>) = match &c.target {
            CompareTarget::Value(v) => match e {
                None => return false,
                Some(e) => (e.value.clone(), v.clone()),
            },
            CompareTarget::ModRevision(r) => num(e.map_or(0, |e| e.mod_revision), *r),
            CompareTarget::CreateRevision(r) => num(e.map_or(0, |e| e.create_revision), *r),
            CompareTarget::Version(r) => num(e.map_or(0, |e| e.version), *r),
            CompareTarget::Exists(want) => {
                let equal = e.is_some() == *want;
                return match c.op {
                    CompareOp::Equal => equal,
                    CompareOp::NotEqual => !equal,
                    _ => unreachable!("refused before"),
                };
            }
        };
        match c.op {
            CompareOp::Equal => left == right,
            CompareOp::NotEqual => left != right,
            CompareOp::Less => left < right,
            CompareOp::Greater => left > right,
        }
    }

    fn apply(&mut self, command: &Command) -> Response {
        let next = self.revision + 1;
        let before = (self.kv.clone(), self.revision);
        let mut changed = false;
        let response = match command {
            Command::Put { key, value } => {
                self.put(key, value, next);
                changed = true;
                Response::Applied { revision: 0 }
            }
            Command::Delete { key } => {
                changed = self.remove(key, next);
                Response::Applied { revision: 0 }
            }
            Command::CompareAndSwap { key, expected, new } => {
                let current = self.kv.get(key).map(|e| e.value.clone());
                if current != *expected {
                    return Response::Rejected(Rejection::CasMismatch { current });
                }
                match new {
                    Some(v) => {
                        self.put(key, v, next);
                        changed = true;
                    }
                    None => changed = self.remove(key, next),
                }
                Response::Applied { revision: 0 }
            }
            Command::Txn(txn) => {
                let refused = txn.compares.iter().any(|c| {
                    matches!(c.target, CompareTarget::Exists(_))
                        && matches!(c.op, CompareOp::Less | CompareOp::Greater)
                }) || txn.success.len() > MAX_TXN_OPS;
                if refused {
                    return Response::Rejected(Rejection::Malformed { reason: "".into() });
                }
                let succeeded = txn.compares.iter().all(|c| self.holds(c));
                let ops = if succeeded {
                    &txn.success
                } else {
                    &txn.failure
                };
                let mut results = Vec::new();
                for op in ops {
                    results.push(match op {
                        TxnOp::Put { key, value } => {
                            self.put(key, value, next);
                            changed = true;
                            TxnOpResult::Put
                        }
                        TxnOp::Delete { key } => {
                            let gone = self.remove(key, next);
                            changed |= gone;
                            TxnOpResult::Deleted(gone as u64)
                        }
                        TxnOp::DeletePrefix { prefix } => {
                            let doomed: Vec<_> = self
                                .kv
                                .keys()
                                .filter(|k| k.starts_with(prefix))
                                .cloned()
                                .collect();
                            for k in &doomed {
                                self.remove(k, next);
                            }
                            changed |= !doomed.is_empty();
                            TxnOpResult::Deleted(doomed.len() as u64)
                        }
                        TxnOp::Get { key } => TxnOpResult::Get(self.kv.get(key).cloned()),
                        TxnOp::PutLeased { .. } => unreachable!("not generated"),
                    });
                }
                Response::Txn(TxnResponse {
                    succeeded,
                    revision: 0,
                    results,
                })
            }
            Command::Batch(commands) => {
                return Response::Batch(commands.iter().map(|c| self.apply(c)).collect());
            }
            other => unreachable!("not generated: {other:?}"),
        };
        if changed {
            self.revision = next;
        } else {
            assert_eq!((&self.kv, self.revision), (&before.0, before.1));
        }
        match response {
            Response::Applied { .. } => Response::Applied {
                revision: self.revision,
            },
            Response::Txn(t) => Response::Txn(TxnResponse {
                revision: self.revision,
                ..t
            }),
            other => other,
        }
    }
}

/// Numbers compared as big-endian bytes compare like the numbers.
fn num(a: u64, b: u64) -> (Vec<u8>, Vec<u8>) {
    (a.to_be_bytes().to_vec(), b.to_be_bytes().to_vec())
}

/// Rejections are compared by kind (their messages are not the model's
/// business).
fn same(actual: &Response, expected: &Response) -> bool {
    match (actual, expected) {
        (
            Response::Rejected(Rejection::Malformed { .. }),
            Response::Rejected(Rejection::Malformed { .. }),
        ) => true,
        (Response::Batch(a), Response::Batch(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same(a, b))
        }
        _ => actual == expected,
    }
}

fn key() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec!["a", "b", "ab", "abc", "b/1", "b/2"])
        .prop_map(|k| k.as_bytes().to_vec())
}

fn value() -> impl Strategy<Value = Vec<u8>> {
    prop::sample::select(vec![&b"x"[..], b"y", b"", b"\xff\x00binary"]).prop_map(<[u8]>::to_vec)
}

fn compare() -> impl Strategy<Value = Compare> {
    let target = prop_oneof![
        value().prop_map(CompareTarget::Value),
        (0u64..12).prop_map(CompareTarget::ModRevision),
        (0u64..12).prop_map(CompareTarget::CreateRevision),
        (0u64..4).prop_map(CompareTarget::Version),
        any::<bool>().prop_map(CompareTarget::Exists),
    ];
    let op = prop::sample::select(vec![
        CompareOp::Equal,
        CompareOp::NotEqual,
        CompareOp::Less,
        CompareOp::Greater,
    ]);
    (key(), target, op).prop_map(|(key, target, op)| Compare { key, target, op })
}

fn op() -> impl Strategy<Value = TxnOp> {
    prop_oneof![
        (key(), value()).prop_map(|(key, value)| TxnOp::Put { key, value }),
        key().prop_map(|key| TxnOp::Delete { key }),
        prop::sample::select(vec!["", "a", "b/", "zz"]).prop_map(|p| TxnOp::DeletePrefix {
            prefix: p.as_bytes().to_vec()
        }),
        key().prop_map(|key| TxnOp::Get { key }),
    ]
}

fn single() -> impl Strategy<Value = Command> {
    prop_oneof![
        3 => (key(), value()).prop_map(|(key, value)| Command::Put { key, value }),
        1 => key().prop_map(|key| Command::Delete { key }),
        1 => (key(), prop::option::of(value()), prop::option::of(value()))
            .prop_map(|(key, expected, new)| Command::CompareAndSwap { key, expected, new }),
        3 => (
            prop::collection::vec(compare(), 0..3),
            prop::collection::vec(op(), 0..4),
            prop::collection::vec(op(), 0..4),
        )
            .prop_map(|(compares, success, failure)| Command::Txn(Txn { compares, success, failure })),
    ]
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        6 => single(),
        1 => prop::collection::vec(single(), 1..4).prop_map(Command::Batch),
    ]
}

fn entries(first: u64, commands: &[Command]) -> Vec<Entry> {
    commands
        .iter()
        .enumerate()
        .map(|(i, c)| Entry {
            log_id: log_id(1, 1, first + i as u64),
            payload: EntryPayload::<TypeConfig>::Normal(Envelope::new(c)),
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn random_writes_and_transactions_match_the_model_on_every_engine(
        commands in prop::collection::vec(command(), 1..40),
        split in 1usize..8,
    ) {
        let mut model = Model::default();
        let expected: Vec<Response> = commands.iter().map(|c| model.apply(c)).collect();
        let mut hashes = Vec::new();
        runtime().block_on(async {
            for engine in Engine::ALL {
                let dir = tempfile::tempdir().unwrap();
                let store = engine.store(dir.path());
                let mut sm = StateMachine::open(store.clone()).await.unwrap();
                let mut responses = Vec::new();
                // Several entries per apply call, as Raft hands them over.
                let mut first = 1;
                for chunk in commands.chunks(split) {
                    responses.extend(sm.apply(entries(first, chunk)).await.unwrap());
                    first += chunk.len() as u64;
                }
                for (i, (a, e)) in responses.iter().zip(&expected).enumerate() {
                    assert!(same(a, e), "{engine:?} command {i} {:?}: {a:?}, model {e:?}", commands[i]);
                }
                let reader = sm.reader();
                assert_eq!(reader.revision(), model.revision, "{engine:?}");
                let listed: BTreeMap<Vec<u8>, KvEntry> = reader
                    .list_page(b"", None, meta_raft::PageLimits::ALL)
                    .0
                    .items
                    .into_iter()
                    .collect();
                assert_eq!(listed, model.kv, "{engine:?}");
                // The size is kept as keys change, not summed on demand.
                assert_eq!(reader.data_bytes(), model.data_bytes(), "{engine:?}");
                // The history holds every change, in order, with what it replaced.
                let (events, _) = sm.history().read(Cursor::at(1), usize::MAX, usize::MAX, true, |_| true).unwrap();
                let events: Vec<Event> = events.into_iter().map(|(_, e)| e).collect();
                assert_eq!(events, model.events, "{engine:?} history");
                sm.flush().unwrap();
                hashes.push(content_hash(&*store));
                // Reopened: the same revision, records and history.
                sm.flush().unwrap();
                drop(sm);
                let sm = StateMachine::open(store.clone()).await.unwrap();
                assert_eq!(sm.reader().revision(), model.revision, "{engine:?} reopened");
                let (events, _) = sm.history().read(Cursor::at(1), usize::MAX, usize::MAX, true, |_| true).unwrap();
                let events: Vec<Event> = events.into_iter().map(|(_, e)| e).collect();
                assert_eq!(events, model.events, "{engine:?} history reopened");
                assert_eq!(sm.applied().revision, model.revision);
                assert_eq!(sm.reader().data_bytes(), model.data_bytes(), "{engine:?} reopened");
                for (k, e) in &model.kv {
                    assert_eq!(sm.reader().entry(k).as_ref(), Some(e), "{engine:?} reopened");
                }
            }
        });
        prop_assert!(hashes.windows(2).all(|w| w[0] == w[1]), "{:?}", hashes);
    }
}

fn put(key: &str, value: &str) -> TxnOp {
    TxnOp::Put {
        key: key.into(),
        value: value.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_transaction_changes_nothing_and_takes_no_revision() {
    for engine in Engine::ALL {
        let dir = tempfile::tempdir().unwrap();
        let store = engine.store(dir.path());
        let mut sm = StateMachine::open(store.clone()).await.unwrap();
        let setup = sm
            .apply(entries(
                1,
                &[Command::Put {
                    key: "k".into(),
                    value: "1".into(),
                }],
            ))
            .await
            .unwrap();
        assert_eq!(setup, [Response::Applied { revision: 1 }]);
        sm.flush().unwrap();
        let hash = content_hash(&*store);
        let invalid_key = vec![b'x'; 600];
        let refused = [
            // A bad key in the branch that does not run still refuses it.
            Txn {
                success: vec![put("k", "2")],
                failure: vec![TxnOp::Get {
                    key: invalid_key.clone(),
                }],
                ..Txn::default()
            },
            // A bad key after a good put: the put must not stay.
            Txn {
                success: vec![
                    put("k", "2"),
                    TxnOp::Put {
                        key: invalid_key,
                        value: "v".into(),
                    },
                ],
                ..Txn::default()
            },
            Txn {
                compares: vec![Compare {
                    key: "k".into(),
                    target: CompareTarget::Exists(true),
                    op: CompareOp::Greater,
                }],
                success: vec![put("k", "2")],
                ..Txn::default()
            },
            Txn {
                success: (0..=MAX_TXN_OPS)
                    .map(|i| put(&format!("k{i}"), "v"))
                    .collect(),
                ..Txn::default()
            },
        ];
        let commands: Vec<Command> = refused.into_iter().map(Command::Txn).collect();
        let responses = sm.apply(entries(2, &commands)).await.unwrap();
        for r in &responses {
            assert!(
                matches!(
                    r,
                    Response::Rejected(Rejection::InvalidKey { .. } | Rejection::Malformed { .. })
                ),
                "{engine:?}: {r:?}"
            );
        }
        let reader = sm.reader();
        assert_eq!(reader.revision(), 1, "{engine:?}");
        assert_eq!(reader.get(b"k").as_deref(), Some(&b"1"[..]));
        assert_eq!(reader.list(b"", usize::MAX).len(), 1);
        // Only the applied log id moved.
        sm.flush().unwrap();
        assert_ne!(content_hash(&*store), hash);
        sm.flush().unwrap();
        drop(sm);
        let sm = StateMachine::open(store).await.unwrap();
        assert_eq!(sm.reader().revision(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_is_one_revision_and_its_gets_see_its_own_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Engine::Lmdb.store(dir.path());
    let mut sm = StateMachine::open(store).await.unwrap();
    let txn = Txn {
        compares: vec![Compare {
            key: "a".into(),
            target: CompareTarget::Exists(false),
            op: CompareOp::Equal,
        }],
        success: vec![
            put("a", "1"),
            put("b/1", "x"),
            put("b/2", "y"),
            put("a", "2"),
            TxnOp::Get { key: "a".into() },
            TxnOp::DeletePrefix {
                prefix: "b/".into(),
            },
            TxnOp::Get { key: "b/1".into() },
        ],
        failure: vec![TxnOp::Get { key: "a".into() }],
    };
    let responses = sm
        .apply(entries(1, &[Command::Txn(txn.clone()), Command::Txn(txn)]))
        .await
        .unwrap();
    let a = KvEntry {
        create_revision: 1,
        mod_revision: 1,
        version: 2,
        value: "2".into(),
    };
    assert_eq!(
        responses,
        [
            Response::Txn(TxnResponse {
                succeeded: true,
                revision: 1,
                results: vec![
                    TxnOpResult::Put,
                    TxnOpResult::Put,
                    TxnOpResult::Put,
                    TxnOpResult::Put,
                    TxnOpResult::Get(Some(a.clone())),
                    TxnOpResult::Deleted(2),
                    TxnOpResult::Get(None),
                ],
            }),
            // The second finds `a` and runs its failure branch: a read, no
            // new revision.
            Response::Txn(TxnResponse {
                succeeded: false,
                revision: 1,
                results: vec![TxnOpResult::Get(Some(a))],
            }),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_written_before_revisions_is_upgraded_in_place() {
    // The layout before revisions: raw values, and an applied state of two
    // fields (last applied log id, membership).
    #[derive(serde::Serialize)]
    struct OldApplied {
        last_applied: Option<meta_raft::types::LogId>,
        membership: meta_raft::types::StoredMembership,
    }
    for engine in Engine::ALL {
        let dir = tempfile::tempdir().unwrap();
        let store = engine.store(dir.path());
        let mut batch = WriteBatch::new();
        batch.put(&b"/meta/kv/app/x"[..], &b"old value"[..]);
        batch.put(
            &b"/meta/config/region"[..],
            postcard::to_stdvec("eu").unwrap(),
        );
        let old = OldApplied {
            last_applied: Some(log_id(2, 1, 7)),
            membership: Default::default(),
        };
        batch.put(applied_key(), postcard::to_stdvec(&old).unwrap());
        store.batch(&batch, Durability::Durable).unwrap();

        let mut sm = StateMachine::open(store.clone()).await.unwrap();
        let entry = KvEntry {
            create_revision: 1,
            mod_revision: 1,
            version: 1,
            value: "old value".into(),
        };
        assert_eq!(sm.reader().entry(b"app/x"), Some(entry), "{engine:?}");
        assert_eq!(sm.reader().revision(), 1);
        assert_eq!(sm.applied().last_applied, Some(log_id(2, 1, 7)));
        assert_eq!(sm.reader().config("region").as_deref(), Some("eu"));
        let next = sm
            .apply(entries(
                8,
                &[Command::Put {
                    key: "app/x".into(),
                    value: "new".into(),
                }],
            ))
            .await
            .unwrap();
        assert_eq!(next, [Response::Applied { revision: 2 }]);
        sm.flush().unwrap();
        drop(sm);
        // Rewritten in the current layout: reopening reads it as such.
        let sm = StateMachine::open(store.clone()).await.unwrap();
        let e = sm.reader().entry(b"app/x").unwrap();
        assert_eq!(
            (e.create_revision, e.mod_revision, e.version, e.value),
            (1, 2, 2, b"new".to_vec())
        );
        assert_eq!(sm.reader().revision(), 2);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multi_node_store_written_before_revisions_is_refused_not_converted() {
    // Replicas would each convert at the index they happen to be at: their
    // revisions would differ for good. Only a single-node store converts.
    #[derive(serde::Serialize)]
    struct OldApplied {
        last_applied: Option<meta_raft::types::LogId>,
        membership: meta_raft::types::StoredMembership,
    }
    let members =
        openraft::Membership::new(vec![std::collections::BTreeSet::from([1, 2, 3])], None);
    let old = OldApplied {
        last_applied: Some(log_id(2, 1, 7)),
        membership: meta_raft::types::StoredMembership::new(Some(log_id(1, 1, 1)), members),
    };
    let store = Engine::Mem.store(std::path::Path::new("."));
    let mut batch = WriteBatch::new();
    batch.put(&b"/meta/kv/app/x"[..], &b"old value"[..]);
    batch.put(applied_key(), postcard::to_stdvec(&old).unwrap());
    store.batch(&batch, Durability::Durable).unwrap();
    let before = content_hash(&*store);
    let error = StateMachine::open(store.clone())
        .await
        .err()
        .expect("refused");
    assert!(
        error.to_string().contains("cluster of 3 members"),
        "{error}"
    );
    assert_eq!(content_hash(&*store), before, "nothing rewritten");
    // A damaged current record is an error, not taken for the old layout.
    let mut damaged = postcard::to_stdvec(&old).unwrap();
    damaged.push(0xFF); // an unfinished varint: neither layout
    let store = Engine::Mem.store(std::path::Path::new("."));
    let mut batch = WriteBatch::new();
    batch.put(applied_key(), damaged);
    store.batch(&batch, Durability::Durable).unwrap();
    assert!(StateMachine::open(store).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_over_its_read_or_delete_budget_is_refused_whole() {
    use meta_raft::model::{MAX_TXN_DELETES, MAX_TXN_READ_BYTES};
    let store = Engine::Mem.store(std::path::Path::new("."));
    let mut sm = StateMachine::open(store).await.unwrap();
    // One key more than a transaction may delete, in one batch entry.
    let puts: Vec<Command> = (0..=MAX_TXN_DELETES)
        .map(|i| Command::Put {
            key: format!("d/{i:07}").into_bytes(),
            value: b"v".to_vec(),
        })
        .collect();
    sm.apply(entries(1, &[Command::Batch(puts)])).await.unwrap();
    let big = vec![b'x'; MAX_TXN_READ_BYTES / 2 + 1];
    let setup = Command::Put {
        key: "big".into(),
        value: big,
    };
    sm.apply(entries(2, &[setup])).await.unwrap();
    let revision = sm.reader().revision();
    let too_many = Txn {
        success: vec![
            put("d/new", "1"),
            TxnOp::DeletePrefix {
                prefix: "d/".into(),
            },
        ],
        ..Txn::default()
    };
    let too_much = Txn {
        success: vec![
            put("other", "1"),
            TxnOp::Get { key: "big".into() },
            TxnOp::Get { key: "big".into() },
        ],
        ..Txn::default()
    };
    let answers = sm
        .apply(entries(
            3,
            &[Command::Txn(too_many), Command::Txn(too_much.clone())],
        ))
        .await
        .unwrap();
    for answer in &answers {
        assert!(
            matches!(answer, Response::Rejected(Rejection::Malformed { reason }) if reason.contains("more than")),
            "{answer:?}"
        );
    }
    let reader = sm.reader();
    assert_eq!(reader.revision(), revision, "nothing of them applied");
    assert_eq!(reader.list(b"d/", usize::MAX).len(), MAX_TXN_DELETES + 1);
    assert_eq!((reader.get(b"d/new"), reader.get(b"other")), (None, None));
    // Read-only, from the views: the same rules and answers, no revision.
    let read_only = Txn {
        success: vec![
            TxnOp::Get { key: "big".into() },
            TxnOp::Get { key: "big".into() },
        ],
        ..Txn::default()
    };
    assert!(matches!(
        reader.read_txn(read_only),
        Err(Rejection::Malformed { .. })
    ));
    let one = Txn {
        compares: vec![Compare {
            key: "big".into(),
            target: CompareTarget::Exists(true),
            op: CompareOp::Equal,
        }],
        success: vec![TxnOp::Get {
            key: "d/0000001".into(),
        }],
        ..Txn::default()
    };
    let done = reader.read_txn(one).unwrap();
    assert!(done.succeeded && done.revision == revision);
    assert!(matches!(&done.results[0], TxnOpResult::Get(Some(e)) if e.value == b"v"));
    assert!(
        reader.read_txn(too_much).is_err(),
        "a writing transaction is not read here"
    );
}
