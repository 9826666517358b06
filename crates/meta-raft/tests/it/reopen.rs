//! What openraft's suite does not check: everything the log store and the
//! state machine persist survives closing and reopening the engine, and a
//! damaged log entry is reported as corruption.

use meta_raft::types::{Entry, Vote};
use meta_raft::{Command, Envelope, LogStore, StateMachine};
use meta_store_api::Durability;
use meta_store_api::keys::log_key;
use meta_testkit::{Engine, OpenForTests};
use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::log_id;
use openraft::{EntryPayload, Membership};

fn entries(from: u64, to: u64) -> Vec<Entry> {
    (from..=to)
        .map(|i| Entry {
            log_id: log_id(2, 1, i),
            payload: if i == 1 {
                EntryPayload::Membership(Membership::new(vec![[1u64, 2, 3].into()], ()))
            } else {
                EntryPayload::Normal(Envelope::new(&Command::Put {
                    key: format!("k{i}").into_bytes(),
                    value: b"v".to_vec(),
                }))
            },
        })
        .collect()
}

async fn reopen_keeps_everything(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = engine.store(dir.path());
        let mut log = LogStore::new(store.clone());
        let mut sm = StateMachine::open(store.clone()).await.unwrap();
        log.save_vote(&Vote::new_committed(2, 1)).await.unwrap();
        log.blocking_append(entries(1, 10)).await.unwrap();
        log.purge(log_id(2, 1, 3)).await.unwrap();
        log.save_committed(Some(log_id(2, 1, 8))).await.unwrap();
        // The committed id travels with the next durable log write.
        log.blocking_append(entries(11, 11)).await.unwrap();
        log.save_committed(Some(log_id(2, 1, 9))).await.unwrap();
        assert_eq!(log.read_committed().await.unwrap(), Some(log_id(2, 1, 9)));
        sm.apply(entries(1, 8)).await.unwrap();
        // Applies wait in memory, then in buffered store writes: a clean
        // stop flushes the state machine and closes the store.
        sm.flush().unwrap();
        store.close().unwrap();
    }
    let store = engine.store(dir.path());
    let mut log = LogStore::new(store.clone());
    let mut sm = StateMachine::open(store).await.unwrap();
    assert_eq!(
        log.read_vote().await.unwrap(),
        Some(Vote::new_committed(2, 1))
    );
    // 9 was never written: the store has the older committed id, which
    // is still a committed one.
    assert_eq!(log.read_committed().await.unwrap(), Some(log_id(2, 1, 8)));
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id, Some(log_id(2, 1, 3)));
    assert_eq!(state.last_log_id, Some(log_id(2, 1, 11)));
    let read = log.try_get_log_entries(4..=10).await.unwrap();
    assert_eq!(
        read.iter().map(|e| e.log_id.index).collect::<Vec<_>>(),
        (4..=10).collect::<Vec<_>>()
    );
    assert!(
        log.try_get_log_entries(1..4).await.unwrap().is_empty(),
        "purged entries are gone"
    );
    let (applied, membership) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(2, 1, 8)));
    assert_eq!(membership.log_id(), &Some(log_id(2, 1, 1)));
    assert_eq!(sm.reader().get(b"k8").as_deref(), Some(&b"v"[..]));
    assert_eq!(sm.reader().get(b"k9"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lmdb_log_and_state_survive_reopen() {
    reopen_keeps_everything(Engine::Lmdb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fjall_log_and_state_survive_reopen() {
    reopen_keeps_everything(Engine::Fjall).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupted_log_entry_is_reported_not_returned() {
    let dir = tempfile::tempdir().unwrap();
    let store = Engine::Lmdb.store(dir.path());
    let mut log = LogStore::new(store.clone());
    log.blocking_append(entries(1, 3)).await.unwrap();
    let key = log_key(2);
    let mut bytes = store.get(&key).unwrap().unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    store.set(&key, &bytes, Durability::Durable).unwrap();
    let err = log
        .try_get_log_entries(1..=3)
        .await
        .expect_err("a damaged entry must not be returned");
    assert!(err.to_string().contains("checksum"), "{err}");
    assert_eq!(
        log.try_get_log_entries(3..=3).await.unwrap().len(),
        1,
        "intact entries still read"
    );
}

/// Opening reads `/meta/` a page at a time into the views: more records
/// than a page come back whole, in order, with the applied state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_views_load_from_many_pages_of_records() {
    for engine in [Engine::Lmdb, Engine::Fjall] {
        let dir = tempfile::tempdir().unwrap();
        let store = engine.store(dir.path());
        let mut sm = StateMachine::open(store.clone()).await.unwrap();
        // 10,000 keys: two and a half pages of 4,096 records.
        sm.apply(entries(1, 10_001)).await.unwrap();
        sm.flush().unwrap();
        drop(sm);
        let sm = StateMachine::open(store).await.unwrap();
        let reader = sm.reader();
        let keys = reader.list(b"k", usize::MAX);
        assert_eq!(keys.len(), 10_000, "{engine:?}");
        assert_eq!(reader.get(b"k10001").as_deref(), Some(&b"v"[..]));
        assert_eq!(reader.revision(), 10_000, "{engine:?}");
        assert_eq!(sm.applied().last_applied, Some(log_id(2, 1, 10_001)));
    }
}
