//! LMDB-specific behaviour the generic suite cannot reach: a full map.

use meta_store_api::{Durability, Error, MetadataStore};
use meta_store_lmdb::{LmdbOptions, LmdbStore};

#[test]
fn a_full_map_is_a_clear_error_and_the_store_stays_usable() {
    let dir = tempfile::tempdir().unwrap();
    let options = LmdbOptions {
        map_size: 1 << 20,
        ..LmdbOptions::default()
    };
    let store = LmdbStore::open(dir.path(), &options).unwrap();
    store.set(b"small", b"fits", Durability::Durable).unwrap();
    let value = vec![1u8; 64 * 1024];
    let mut full = None;
    for i in 0..64u32 {
        if let Err(e) = store.set(&i.to_be_bytes(), &value, Durability::Durable) {
            full = Some(e);
            break;
        }
    }
    match full {
        Some(e @ Error::MapFull { .. }) => {
            let text = e.to_string();
            let Error::MapFull {
                engine, map_size, ..
            } = e
            else {
                unreachable!()
            };
            assert_eq!((engine, map_size), ("lmdb", 1 << 20));
            assert!(text.contains("map_size"), "{text}");
        }
        other => panic!("expected MapFull from a 1 MiB map, got {other:?}"),
    }
    // Reads go on, and the failed write left nothing behind.
    assert_eq!(store.get(b"small").unwrap().as_deref(), Some(&b"fits"[..]));
    store
        .delete(&0u32.to_be_bytes(), Durability::Durable)
        .unwrap();
    store.set(b"after", b"ok", Durability::Durable).unwrap();
}

/// Space back: a full store reopened with a larger map keeps everything it
/// committed and takes the write that did not fit.
#[test]
fn a_full_map_recovers_when_reopened_larger() {
    let dir = tempfile::tempdir().unwrap();
    let small = LmdbOptions {
        map_size: 1 << 20,
        ..LmdbOptions::default()
    };
    let value = vec![7u8; 64 * 1024];
    let mut committed = 0u32;
    {
        let store = LmdbStore::open(dir.path(), &small).unwrap();
        while store
            .set(&committed.to_be_bytes(), &value, Durability::Durable)
            .is_ok()
        {
            committed += 1;
            assert!(committed < 64, "a 1 MiB map cannot hold 4 MiB");
        }
        store.close().unwrap();
    }
    let larger = LmdbOptions {
        map_size: 64 << 20,
        ..LmdbOptions::default()
    };
    let store = LmdbStore::open(dir.path(), &larger).unwrap();
    for i in 0..committed {
        assert_eq!(
            store.get(&i.to_be_bytes()).unwrap().as_deref(),
            Some(&value[..])
        );
    }
    for i in committed..committed + 16 {
        store
            .set(&i.to_be_bytes(), &value, Durability::Durable)
            .unwrap();
    }
}

#[test]
fn a_locked_directory_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let _first = LmdbStore::open(dir.path(), &LmdbOptions::default()).unwrap();
    let err = LmdbStore::open(dir.path(), &LmdbOptions::default())
        .err()
        .expect("a second open must fail");
    assert!(matches!(err, Error::Locked { .. }));
    assert!(err.to_string().contains(&dir.path().display().to_string()));
}
