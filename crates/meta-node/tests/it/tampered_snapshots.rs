//! A tampered or truncated backup given to `snapshot restore` is refused
//! with an error that says what is wrong, and the store it was restored
//! over keeps its content (per disk engine).

use meta_node::Engine;
use meta_node::config::EngineOptions;
use meta_node::engine::StoreSpec;
use meta_node::offline::{content_hash, snapshot_restore, snapshot_save};
use meta_store_api::Durability;

fn filled(engine: Engine, dir: &std::path::Path, tag: &str) -> StoreSpec {
    let store = engine.open(dir, &EngineOptions::default()).unwrap();
    for i in 0..2000u32 {
        let key = format!("/meta/kv/{tag}/{i:05}");
        store
            .set(
                key.as_bytes(),
                format!("{tag} {i}").as_bytes(),
                Durability::Buffered,
            )
            .unwrap();
    }
    store.close().unwrap();
    StoreSpec {
        engine,
        dir: dir.to_path_buf(),
    }
}

fn hash(spec: &StoreSpec) -> String {
    let store = spec
        .engine
        .open(&spec.dir, &EngineOptions::default())
        .unwrap();
    let h = content_hash(&*store).unwrap();
    store.close().unwrap();
    h
}

fn check(engine: Engine) {
    let dir = tempfile::tempdir().unwrap();
    let source = filled(engine, &dir.path().join("source"), "new");
    let backup = dir.path().join("backup.snap");
    snapshot_save(&source, &backup, true).unwrap();
    let bytes = std::fs::read(&backup).unwrap();
    let target = filled(engine, &dir.path().join("target"), "old");
    let before = hash(&target);

    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x10;
    let truncated = bytes[..bytes.len() * 2 / 3].to_vec();
    for (what, damaged) in [("a flipped bit", flipped), ("a truncated file", truncated)] {
        let path = dir.path().join("damaged.snap");
        std::fs::write(&path, &damaged).unwrap();
        let err = snapshot_restore(&target, &path, true, true)
            .expect_err(&format!("{engine:?}: {what} must be refused"));
        let text = err.to_string();
        eprintln!("{engine:?}, {what}: {text}");
        assert!(
            text.contains("damaged.snap"),
            "{engine:?}: {what}: the error names the file: {text}"
        );
        assert_eq!(
            hash(&target),
            before,
            "{engine:?}: {what} changed the store"
        );
    }
    // The intact backup restores.
    snapshot_restore(&target, &backup, true, true).unwrap();
    assert_eq!(hash(&target), hash(&source));
}

#[test]
fn lmdb_refuses_damaged_backups_and_keeps_its_content() {
    check(Engine::Lmdb);
}

#[test]
fn fjall_refuses_damaged_backups_and_keeps_its_content() {
    check(Engine::Fjall);
}
