//! Per-record checksums: LMDB keeps none, so the engine stores a crc32c of
//! key and value with every record and checks it on every read; a store
//! written before checksums is converted when first opened.

use std::path::Path;

use heed::CommitOrAbort;
use heed::types::Bytes;
use meta_store_api::{Durability, Error, MetadataStore};
use meta_store_lmdb::{LmdbOptions, LmdbStore};

const MARKER: &[u8] = b"the-value-whose-bit-gets-flipped";

fn open(dir: &Path) -> LmdbStore {
    LmdbStore::open(dir, &LmdbOptions::default()).unwrap()
}

/// Flips one bit inside the first copy of `needle` in the data file.
fn flip_bit_in(dir: &Path, needle: &[u8]) {
    let file = dir.join("data.mdb");
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the record's bytes are in data.mdb");
    bytes[at + needle.len() / 2] ^= 0x04;
    std::fs::write(&file, bytes).unwrap();
}

fn assert_corruption_named(result: Result<impl std::fmt::Debug, Error>, dir: &Path) {
    match result {
        Err(Error::Corruption { engine, detail }) => {
            assert_eq!(engine, "lmdb");
            assert!(detail.contains("checksum mismatch"), "{detail}");
            assert!(detail.contains("/meta/kv/b"), "names the key: {detail}");
            assert!(
                detail.contains(&dir.display().to_string()),
                "names the store: {detail}"
            );
        }
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

#[test]
fn a_flipped_bit_in_a_value_is_reported_by_every_read_path() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path());
        store
            .set(b"/meta/kv/a", b"left alone", Durability::Durable)
            .unwrap();
        store
            .set(b"/meta/kv/b", MARKER, Durability::Durable)
            .unwrap();
        store.close().unwrap();
    }
    flip_bit_in(dir.path(), MARKER);
    let store = open(dir.path());
    assert_corruption_named(store.get(b"/meta/kv/b"), dir.path());
    assert_corruption_named(store.scan(b"/meta/"), dir.path());
    assert_corruption_named(
        store.range(
            &meta_store_api::KeyRange::all(),
            meta_store_api::Direction::Reverse,
            None,
        ),
        dir.path(),
    );
    // The stream fails when it meets the record (here, before the first
    // block is out).
    let message = match store.snapshot(b"") {
        Err(e) => format!("{e}"),
        Ok(mut snapshot) => format!("{:?}", std::io::copy(&mut snapshot, &mut std::io::sink())),
    };
    assert!(
        message.contains("checksum mismatch"),
        "a snapshot must not carry the altered value: {message}"
    );
    // The intact record is still served, and rewriting the damaged one heals it.
    assert_eq!(
        store.get(b"/meta/kv/a").unwrap().as_deref(),
        Some(&b"left alone"[..])
    );
    store
        .set(b"/meta/kv/b", b"rewritten", Durability::Durable)
        .unwrap();
    assert_eq!(
        store.get(b"/meta/kv/b").unwrap().as_deref(),
        Some(&b"rewritten"[..])
    );
}

#[test]
fn a_flipped_bit_in_a_key_is_reported_by_scans() {
    let dir = tempfile::tempdir().unwrap();
    let key = b"/meta/kv/b-a-key-long-enough-to-find";
    {
        let store = open(dir.path());
        store.set(key, b"value", Durability::Durable).unwrap();
        store.close().unwrap();
    }
    flip_bit_in(dir.path(), key);
    let store = open(dir.path());
    assert_eq!(store.get(key).unwrap(), None, "the key is gone");
    assert!(
        matches!(store.scan(b""), Err(Error::Corruption { .. })),
        "and what is there instead does not pass as data"
    );
}

/// A store written by a build before checksums: records straight in LMDB's
/// main database. Opening converts it in one transaction, keeping every
/// byte; the converted store reopens as usual.
#[test]
fn a_store_from_before_checksums_is_converted_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<(Vec<u8>, Vec<u8>)> = (0..10_000u32)
        .map(|i| {
            (
                format!("/meta/kv/{i:06}").into_bytes(),
                i.to_le_bytes().repeat(i as usize % 50),
            )
        })
        .collect();
    {
        let mut options = heed::EnvOpenOptions::new();
        options.map_size(1 << 30);
        // SAFETY: a fresh directory no one else opens.
        #[allow(unsafe_code)]
        let env = unsafe { options.open(dir.path()) }.unwrap();
        let wtxn = env.write_txn().unwrap();
        env.create_databases_and_commit(wtxn, |opener, wtxn| {
            let db = opener.create_database::<Bytes, Bytes>(wtxn, None)?;
            for (key, value) in &records {
                db.put(wtxn, key, value)?;
            }
            Ok::<_, heed::Error>(CommitOrAbort::<_, ()>::Commit(()))
        })
        .unwrap();
        env.force_sync().unwrap();
    }
    for _ in 0..2 {
        let store = open(dir.path());
        assert_eq!(store.scan(b"").unwrap(), records);
        assert_eq!(
            store.get(b"/meta/kv/000049").unwrap().as_deref(),
            Some(&records[49].1[..])
        );
        store.close().unwrap();
    }
}
