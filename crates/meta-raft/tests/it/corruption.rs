//! Bit flips in a state store's data files: opening the state machine
//! (which reads every record into the views) reports corruption instead
//! of serving altered data. fjall checksums every block; the LMDB engine
//! checksums every record (LMDB itself keeps no checksums).

use meta_raft::types::Entry;
use meta_raft::{Command, Envelope, StateMachine};
use meta_testkit::{Engine, OpenForTests};
use openraft::EntryPayload;
use openraft::storage::RaftStateMachine;
use openraft::testing::log_id;

fn files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Applies 200 puts of 4,000 `v`s through a state machine on `engine`,
/// lets `damage` alter the closed store's files, and returns the error
/// reopening the store or the state machine gives.
async fn damage_and_reopen(engine: Engine, damage: fn(&std::path::Path)) -> String {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = engine.store(dir.path());
        let mut sm = StateMachine::open(store.clone()).await.unwrap();
        let entries: Vec<Entry> = (1..=200u64)
            .map(|i| Entry {
                log_id: log_id(1, 1, i),
                payload: EntryPayload::Normal(Envelope::new(&Command::Put {
                    key: format!("k{i:05}").into_bytes(),
                    value: vec![b'v'; 4000],
                })),
            })
            .collect();
        sm.apply(entries).await.unwrap();
        sm.flush().unwrap();
        store.close().unwrap();
    }
    damage(dir.path());
    let err = match engine.try_store(dir.path()) {
        Err(e) => e.to_string(),
        Ok(store) => match StateMachine::open(store).await {
            Err(e) => e.to_string(),
            Ok(sm) => panic!(
                "corrupted data served: {:?}",
                sm.reader().get(b"k00100").map(|v| v.len())
            ),
        },
    };
    assert!(
        err.contains(&dir.path().display().to_string()),
        "says where: {err}"
    );
    err
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_bit_in_fjall_table_files_is_reported_not_served() {
    let err = damage_and_reopen(Engine::Fjall, |dir| {
        let mut all = Vec::new();
        files(dir, &mut all);
        let tables: Vec<_> = all
            .iter()
            .filter(|p| p.components().any(|c| c.as_os_str() == "tables"))
            .collect();
        assert!(!tables.is_empty(), "no table files in {all:?}");
        for table in tables {
            let mut bytes = std::fs::read(table).unwrap();
            let middle = bytes.len() / 3;
            bytes[middle] ^= 0x01;
            std::fs::write(table, bytes).unwrap();
        }
    })
    .await;
    assert!(
        err.contains("corruption in fjall store") && err.contains("ChecksumMismatch"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_bit_in_an_lmdb_record_is_reported_not_served() {
    let err = damage_and_reopen(Engine::Lmdb, |dir| {
        let file = dir.join("data.mdb");
        let mut bytes = std::fs::read(&file).unwrap();
        let value = [b'v'; 4000];
        let at = bytes
            .windows(value.len())
            .position(|w| w == value)
            .expect("a value in data.mdb");
        bytes[at + 2000] ^= 0x01;
        std::fs::write(&file, bytes).unwrap();
    })
    .await;
    assert!(
        err.contains("corruption in lmdb store") && err.contains("checksum mismatch"),
        "{err}"
    );
}
