//! Leases and the change history, through the state machine on every
//! engine: what a lease binds ends with it at one revision; unknown leases
//! are refused; the history keeps the last revisions, survives a reopen,
//! says when it was compacted, restarts at an installed snapshot, and its
//! notices reach subscribers.

use std::collections::BTreeMap;

use meta_raft::model::{
    Change, ClusterNode, LeaseId, NodeState, Txn, TxnOp, TxnOpResult, TxnResponse,
};
use meta_raft::types::{Entry, TypeConfig};
use meta_raft::{
    Command, Cursor, Envelope, HistoryError, Notice, Rejection, Response, StateMachine,
};
use meta_testkit::{Engine, OpenForTests};
use openraft::EntryPayload;
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use openraft::testing::log_id;

/// Applies commands one entry each, from log index `*next`.
async fn apply(sm: &mut StateMachine, next: &mut u64, commands: Vec<Command>) -> Vec<Response> {
    let entries: Vec<Entry> = commands
        .iter()
        .map(|c| {
            *next += 1;
            Entry {
                log_id: log_id(1, 1, *next - 1),
                payload: EntryPayload::<TypeConfig>::Normal(Envelope::new(c)),
            }
        })
        .collect();
    sm.apply(entries).await.unwrap()
}

fn limits(revisions: u64) -> meta_raft::HistoryLimits {
    meta_raft::HistoryLimits {
        revisions,
        ..Default::default()
    }
}

fn put(key: &str, value: &str) -> Command {
    Command::Put {
        key: key.into(),
        value: value.into(),
    }
}

fn leased(key: &str, lease: LeaseId) -> Command {
    Command::PutLeased {
        key: key.into(),
        value: b"v".to_vec(),
        lease,
    }
}

fn node(id: u64) -> ClusterNode {
    ClusterNode {
        id,
        address: format!("10.0.0.{id}:7000"),
        state: NodeState::Active,
        labels: BTreeMap::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_ends_with_its_keys_deleted_and_its_nodes_down_at_one_revision() {
    for engine in Engine::ALL {
        let dir = tempfile::tempdir().unwrap();
        let store = engine.store(dir.path());
        let mut sm = StateMachine::open(store.clone()).await.unwrap();
        let mut next = 1;
        let granted = apply(
            &mut sm,
            &mut next,
            vec![Command::LeaseGrant {
                ttl_secs: 10,
                owner: "app".into(),
            }],
        )
        .await;
        assert_eq!(granted, [Response::LeaseGranted { id: 1, revision: 1 }]);
        let done = apply(
            &mut sm,
            &mut next,
            vec![
                leased("a", 1),
                leased("b", 1),
                put("c", "plain"),
                Command::UpsertNodeLeased {
                    node: node(7),
                    lease: 1,
                },
                // A put without the lease leaves the key unbound.
                put("b", "kept"),
            ],
        )
        .await;
        assert!(
            done.iter().all(Response::is_applied),
            "{engine:?}: {done:?}"
        );
        let reader = sm.reader();
        assert_eq!(reader.key_lease(b"a"), Some(1));
        assert_eq!(reader.key_lease(b"b"), None);
        let info = reader.lease(1).unwrap();
        assert_eq!((info.keys, info.nodes), (vec![b"a".to_vec()], vec![7]));

        // What is bound survives a reopen.
        sm.flush().unwrap();
        drop(sm);
        let mut sm = StateMachine::open(store.clone()).await.unwrap();
        let reader = sm.reader();
        assert_eq!(
            reader.lease(1).unwrap().keys,
            vec![b"a".to_vec()],
            "{engine:?}"
        );
        assert_eq!(reader.leases().len(), 1);

        let before = reader.revision();
        let revoked = apply(&mut sm, &mut next, vec![Command::LeaseRevoke { id: 1 }]).await;
        assert_eq!(
            revoked,
            [Response::Applied {
                revision: before + 1
            }],
            "{engine:?}"
        );
        assert_eq!(reader.get(b"a"), None);
        assert_eq!(reader.get(b"b").as_deref(), Some(&b"kept"[..]));
        assert_eq!(reader.node(7).unwrap().state, NodeState::Down, "{engine:?}");
        assert!(reader.lease(1).is_none() && reader.leases().is_empty());
        // Both changes are in the history, at the one revision.
        let (events, _) = sm
            .history()
            .read(Cursor::at(before + 1), 100, usize::MAX, true, |_| true)
            .unwrap();
        let changes: Vec<_> = events
            .iter()
            .map(|(_, e)| (e.revision, e.change.clone()))
            .collect();
        let down = ClusterNode {
            state: NodeState::Down,
            ..node(7)
        };
        assert_eq!(
            changes,
            [
                (
                    before + 1,
                    Change::Kv {
                        key: b"a".to_vec(),
                        entry: None
                    }
                ),
                (
                    before + 1,
                    Change::Node {
                        id: 7,
                        node: Some(down)
                    }
                ),
            ],
            "{engine:?}"
        );
        sm.flush().unwrap();
        drop(sm);
        let sm = StateMachine::open(store.clone()).await.unwrap();
        assert!(sm.reader().leases().is_empty(), "{engine:?} reopened");
        assert_eq!(sm.reader().key_lease(b"a"), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_leases_are_refused_and_expiring_a_gone_lease_changes_nothing() {
    let store = Engine::Mem.store(std::path::Path::new(""));
    let mut sm = StateMachine::open(store).await.unwrap();
    let mut next = 1;
    let txn = Command::Txn(Txn {
        compares: vec![],
        success: vec![
            TxnOp::Put {
                key: b"x".to_vec(),
                value: b"1".to_vec(),
            },
            TxnOp::PutLeased {
                key: b"y".to_vec(),
                value: b"1".to_vec(),
                lease: 42,
            },
        ],
        failure: vec![],
    });
    let answers = apply(
        &mut sm,
        &mut next,
        vec![
            leased("k", 42),
            Command::LeaseRevoke { id: 42 },
            Command::LeaseExpire { id: 42 },
            Command::LeaseGrant {
                ttl_secs: 0,
                owner: String::new(),
            },
            Command::UpsertNodeLeased {
                node: node(1),
                lease: 42,
            },
            txn,
        ],
    )
    .await;
    let gone = Response::Rejected(Rejection::LeaseNotFound { id: 42 });
    assert_eq!(answers[0], gone);
    assert_eq!(answers[1], gone);
    assert_eq!(answers[2], Response::Applied { revision: 0 });
    assert!(matches!(
        answers[3],
        Response::Rejected(Rejection::Malformed { .. })
    ));
    assert_eq!(answers[4], gone);
    // The transaction is refused whole: its first put did not happen.
    assert_eq!(answers[5], gone);
    let reader = sm.reader();
    assert_eq!((reader.revision(), reader.get(b"x")), (0, None));
    assert!(reader.node(1).is_none());

    // A transaction binds a key to a live lease.
    let granted = apply(
        &mut sm,
        &mut next,
        vec![Command::LeaseGrant {
            ttl_secs: 5,
            owner: String::new(),
        }],
    )
    .await;
    let Response::LeaseGranted { id, .. } = granted[0] else {
        panic!("{granted:?}")
    };
    let txn = Command::Txn(Txn {
        compares: vec![],
        success: vec![TxnOp::PutLeased {
            key: b"lock".to_vec(),
            value: b"me".to_vec(),
            lease: id,
        }],
        failure: vec![],
    });
    let done = apply(&mut sm, &mut next, vec![txn]).await;
    assert_eq!(
        done,
        [Response::Txn(TxnResponse {
            succeeded: true,
            revision: 2,
            results: vec![TxnOpResult::Put]
        })]
    );
    assert_eq!(reader.key_lease(b"lock"), Some(id));
    let expired = apply(&mut sm, &mut next, vec![Command::LeaseExpire { id }]).await;
    assert_eq!(expired, [Response::Applied { revision: 3 }]);
    assert_eq!(reader.get(b"lock"), None);
}

/// Applies reach the store in batches: until one is written, the store
/// holds nothing of it (the views and the history have it all), and the
/// history trims revisions still waiting exactly as written ones, leaving
/// no record behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applies_reach_the_store_in_batches_and_trimming_sees_the_waiting_ones() {
    use meta_store_api::keys::{applied_key, history_count_key, history_event_key};
    // The keys end with the revision (and an event's with its seq).
    let prefix = |key: Vec<u8>, tail: usize| key[..key.len() - tail].to_vec();
    let counts = prefix(history_count_key(0), 8);
    let events = prefix(history_event_key(0, 0), 12);
    let revisions = |rows: Vec<(Vec<u8>, Vec<u8>)>, at: usize| -> Vec<u64> {
        let at = |k: &[u8]| u64::from_be_bytes(k[at..at + 8].try_into().unwrap());
        rows.iter().map(|(k, _)| at(k)).collect()
    };
    for engine in Engine::ALL {
        let dir = tempfile::tempdir().unwrap();
        let store = engine.store(&dir.path().join("a"));
        let mut sm = StateMachine::open_with(store.clone(), dir.path().join("spill"), limits(3))
            .await
            .unwrap();
        let mut next = 1;
        apply(&mut sm, &mut next, vec![put("k0", "v")]).await;
        assert_eq!(sm.reader().get(b"k0").as_deref(), Some(&b"v"[..]));
        assert_eq!(store.get(&applied_key()).unwrap(), None, "{engine:?}");
        for i in 1..30 {
            apply(&mut sm, &mut next, vec![put(&format!("k{i}"), "v")]).await;
        }
        let history = sm.history();
        assert_eq!((history.revision(), history.compacted()), (30, 27));
        sm.flush().unwrap();
        assert_eq!(
            sm.applied().last_applied,
            store
                .get(&applied_key())
                .unwrap()
                .map(|bytes| postcard::from_bytes::<meta_raft::AppliedState>(&bytes).unwrap())
                .and_then(|applied| applied.last_applied),
            "{engine:?}: the store holds every apply once flushed"
        );
        assert_eq!(
            revisions(store.scan(&counts).unwrap(), counts.len()),
            [28, 29, 30],
            "{engine:?}: the trimmed revisions' records are gone"
        );
        assert_eq!(
            revisions(store.scan(&events).unwrap(), events.len()),
            [28, 29, 30],
            "{engine:?}"
        );

        // Five more wait, trimming 28..=32, when a snapshot is installed:
        // the history restarts there and no record of before stays behind.
        for i in 30..35 {
            apply(&mut sm, &mut next, vec![put(&format!("k{i}"), "v")]).await;
        }
        let other_store = engine.store(&dir.path().join("b"));
        let mut other = StateMachine::open_with(other_store, dir.path().join("spill"), limits(3))
            .await
            .unwrap();
        let mut other_next = 1;
        apply(
            &mut other,
            &mut other_next,
            vec![put("x", "1"), put("y", "2")],
        )
        .await;
        let snapshot = other
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        sm.install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .unwrap();
        assert_eq!(sm.reader().get(b"y").as_deref(), Some(&b"2"[..]));
        assert_eq!(
            revisions(store.scan(&counts).unwrap(), counts.len()),
            Vec::<u64>::new(),
            "{engine:?}: no history record outlives the install"
        );
        assert_eq!(
            revisions(store.scan(&events).unwrap(), events.len()),
            Vec::<u64>::new()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_keeps_its_window_across_reopens_and_restarts_at_a_snapshot() {
    for engine in Engine::ALL {
        let dir = tempfile::tempdir().unwrap();
        let store = engine.store(&dir.path().join("a"));
        let spill = dir.path().join("spill");
        let mut sm = StateMachine::open_with(store.clone(), &spill, limits(5))
            .await
            .unwrap();
        let mut notices = sm.history().subscribe();
        let mut next = 1;
        let puts = (1..=20).map(|i| put(&format!("k{i}"), "v")).collect();
        apply(&mut sm, &mut next, puts).await;
        let Notice::Applied { through, events } = &*notices.recv().await.unwrap() else {
            panic!("an apply is announced")
        };
        assert_eq!((*through, events.as_ref().map(|e| e.len())), (20, Some(20)));

        let history = sm.history();
        assert_eq!(
            (history.revision(), history.compacted()),
            (20, 15),
            "{engine:?}"
        );
        let compacted = history
            .read(Cursor::at(3), 10, usize::MAX, false, |_| true)
            .unwrap_err();
        assert!(
            matches!(
                compacted,
                HistoryError::Compacted {
                    from: 3,
                    compacted: 15
                }
            ),
            "{engine:?}: {compacted}"
        );
        assert!(compacted.to_string().contains("after revision 15"));
        // Pages: two at a time, resuming where the last one ended.
        let all = |_: &Change| true;
        let (first, cursor) = history
            .read(Cursor::at(16), 2, usize::MAX, false, all)
            .unwrap();
        let (rest, _) = history.read(cursor, 10, usize::MAX, false, all).unwrap();
        let revisions: Vec<u64> = first.iter().chain(&rest).map(|(_, e)| e.revision).collect();
        assert_eq!(revisions, [16, 17, 18, 19, 20], "{engine:?}");

        // Reopened: the same window (trimmed records stay gone).
        drop((sm, history));
        let mut sm = StateMachine::open_with(store.clone(), &spill, limits(5))
            .await
            .unwrap();
        assert_eq!(sm.history().compacted(), 15, "{engine:?} reopened");
        let (events, _) = sm
            .history()
            .read(Cursor::at(16), 10, usize::MAX, false, |_| true)
            .unwrap();
        assert_eq!(events.len(), 5);

        // A node that installs a snapshot at revision 20 knows nothing before it.
        let other_store = engine.store(&dir.path().join("b"));
        let mut other = StateMachine::open_with(other_store.clone(), &spill, limits(5))
            .await
            .unwrap();
        let mut other_next = 1;
        apply(&mut other, &mut other_next, vec![put("old", "1")]).await;
        let mut other_notices = other.history().subscribe();
        let snapshot = sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
            .unwrap();
        other
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .unwrap();
        assert!(matches!(
            *other_notices.recv().await.unwrap(),
            Notice::Reset { revision: 20 }
        ));
        let history = other.history();
        assert_eq!(
            (history.revision(), history.compacted()),
            (20, 20),
            "{engine:?}"
        );
        assert!(
            history
                .read(Cursor::at(1), 10, usize::MAX, false, |_| true)
                .is_err()
        );
        apply(&mut sm, &mut next, vec![put("new", "1")]).await;
        let entry = Entry {
            log_id: log_id(1, 1, 21),
            payload: EntryPayload::<TypeConfig>::Normal(Envelope::new(&put("new", "1"))),
        };
        other.apply([entry]).await.unwrap();
        let (events, _) = history
            .read(Cursor::at(21), 10, usize::MAX, false, |_| true)
            .unwrap();
        assert_eq!(events.len(), 1, "{engine:?}");
        // The records the snapshot replaced are gone from the store too.
        let leftover = other_store.scan(b"/raft/history/e/").unwrap();
        assert_eq!(leftover.len(), 1, "{engine:?}: only revision 21 remains");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_keeps_to_its_byte_limit_and_leaves_out_huge_previous_values() {
    let store = Engine::Mem.store(std::path::Path::new(""));
    let dir = tempfile::tempdir().unwrap();
    let limits = meta_raft::HistoryLimits {
        revisions: 1000,
        bytes: 4 << 20,
    };
    let mut sm = StateMachine::open_with(store, dir.path(), limits)
        .await
        .unwrap();
    let mut next = 1;
    let big = "x".repeat(512 << 10);
    for i in 0..40 {
        apply(&mut sm, &mut next, vec![put(&format!("big/{i:02}"), &big)]).await;
    }
    let history = sm.history();
    // Within the byte limit (one revision over it at most), the oldest gone.
    assert!(
        history.bytes() <= (4 << 20) + (1 << 20),
        "{}",
        history.bytes()
    );
    let compacted = history.compacted();
    assert!(
        compacted > 20,
        "the oldest revisions were trimmed: {compacted}"
    );
    let (kept, _) = history
        .read(Cursor::at(compacted + 1), 100, usize::MAX, false, |_| true)
        .unwrap();
    assert_eq!(kept.len() as u64, 40 - compacted);

    // One revision deletes 20 MiB: the first 16 MiB of replaced values are
    // kept, the rest reported as left out.
    let delete = Command::Txn(Txn {
        compares: vec![],
        success: vec![TxnOp::DeletePrefix {
            prefix: b"big/".to_vec(),
        }],
        failure: vec![],
    });
    apply(&mut sm, &mut next, vec![delete]).await;
    let (events, _) = history
        .read(Cursor::at(41), 100, usize::MAX, true, |_| true)
        .unwrap();
    assert_eq!(events.len(), 40);
    let with_prev = events.iter().filter(|(_, e)| e.prev.is_some()).count();
    let omitted = events.iter().filter(|(_, e)| e.prev_omitted).count();
    assert_eq!(with_prev + omitted, 40);
    assert!(
        (30..40).contains(&with_prev),
        "16 MiB of 512 KiB values: {with_prev}"
    );
    // Without asking for previous values, nothing is said about them.
    let (events, _) = history
        .read(Cursor::at(41), 100, usize::MAX, false, |_| true)
        .unwrap();
    assert!(
        events
            .iter()
            .all(|(_, e)| e.prev.is_none() && !e.prev_omitted)
    );
}

/// The revisions that have records of `kind` (`e` a change, `p` the record
/// it replaced, `n` a count) under `/raft/history/` in `store`.
fn stored_revisions(store: &dyn meta_store_api::MetadataStore, kind: char) -> Vec<u64> {
    let prefix = format!("/raft/history/{kind}/");
    let mut revisions: Vec<u64> = store
        .scan(prefix.as_bytes())
        .unwrap()
        .iter()
        .map(|(k, _)| u64::from_be_bytes(k[prefix.len()..prefix.len() + 8].try_into().unwrap()))
        .collect();
    revisions.dedup();
    revisions
}

/// Trimming deletes every record of a revision leaving the window — its
/// changes, the records they replaced, its count — without reading the
/// store, and after a reopen from what the store says it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trimming_leaves_no_record_behind_before_and_after_a_reopen() {
    for engine in Engine::ALL {
        let dir = tempfile::tempdir().unwrap();
        let store = engine.store(&dir.path().join("a"));
        let spill = dir.path().join("spill");
        let mut sm = StateMachine::open_with(store.clone(), &spill, limits(4))
            .await
            .unwrap();
        let mut next = 1;
        // Revisions 1..=6 create keys (no previous records), 7..=10
        // replace four of them (each keeps the record it replaced).
        let creates = (0..6).map(|i| put(&format!("k{i}"), "a")).collect();
        apply(&mut sm, &mut next, creates).await;
        let replaces = (0..4).map(|i| put(&format!("k{i}"), "b")).collect();
        apply(&mut sm, &mut next, replaces).await;
        sm.flush().unwrap();
        for kind in ['e', 'p', 'n'] {
            assert_eq!(
                stored_revisions(&*store, kind),
                [7, 8, 9, 10],
                "{engine:?}: records {kind}"
            );
        }

        drop(sm);
        let mut sm = StateMachine::open_with(store.clone(), &spill, limits(4))
            .await
            .unwrap();
        let replaces = (0..2).map(|i| put(&format!("k{i}"), "c")).collect();
        apply(&mut sm, &mut next, replaces).await;
        sm.flush().unwrap();
        for kind in ['e', 'p', 'n'] {
            assert_eq!(
                stored_revisions(&*store, kind),
                [9, 10, 11, 12],
                "{engine:?}: records {kind} after a reopen"
            );
        }
        assert_eq!(sm.history().compacted(), 8, "{engine:?}");
    }
}
