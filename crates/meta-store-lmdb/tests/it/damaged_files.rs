//! A damaged `data.mdb` is refused with an error naming the file and the
//! damage, before LMDB maps it — never a `SIGBUS` (which would kill this
//! test binary) and never an empty store served in its place.

use std::path::Path;

use meta_store_api::{Direction, Durability, Error, KeyRange, MetadataStore};
use meta_store_lmdb::{LmdbOptions, LmdbStore};

const RECORDS: usize = 3000;

fn open(dir: &Path) -> Result<LmdbStore, Error> {
    LmdbStore::open(dir, &LmdbOptions::default())
}

/// A closed store of `RECORDS` records of 512 bytes (a few hundred pages).
fn filled(dir: &Path) {
    let store = open(dir).unwrap();
    for i in 0..RECORDS {
        store
            .set(
                format!("/meta/kv/{i:05}").as_bytes(),
                &[b'v'; 512],
                Durability::Buffered,
            )
            .unwrap();
    }
    store.sync().unwrap();
    store.close().unwrap();
}

fn data_file(dir: &Path) -> std::path::PathBuf {
    dir.join("data.mdb")
}

fn corruption(result: Result<LmdbStore, Error>) -> String {
    match result {
        Err(Error::Corruption { engine, detail }) => {
            assert_eq!(engine, "lmdb");
            detail
        }
        Err(other) => panic!("expected a corruption error, got {other}"),
        Ok(_) => panic!("a damaged store opened"),
    }
}

#[test]
fn a_truncated_file_is_refused_and_left_as_found_never_a_sigbus() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    let file = data_file(dir.path());
    let original = std::fs::read(&file).unwrap();
    let len = original.len();
    // Half (tree roots gone), then one to eight pages (leaves, values, or
    // pages no tree uses any more): each is refused, or opens with every
    // record readable — never a SIGBUS, never fewer records.
    let mut refused = 0;
    for cut in std::iter::once(len / 2).chain((1..=8).map(|pages| len - pages * 4096)) {
        std::fs::write(&file, &original[..cut]).unwrap();
        match open(dir.path()) {
            Err(Error::Corruption { detail, .. }) => {
                assert!(detail.contains("truncated"), "cut at {cut}: {detail}");
                assert!(detail.contains("data.mdb"), "names the file: {detail}");
                assert_eq!(
                    std::fs::metadata(&file).unwrap().len(),
                    cut as u64,
                    "the damaged file is left as it was found"
                );
                refused += 1;
            }
            Err(other) => panic!("cut at {cut}: expected a corruption error, got {other}"),
            Ok(store) => {
                let all = store
                    .range(&KeyRange::all(), Direction::Forward, None)
                    .unwrap();
                assert_eq!(all.len(), RECORDS, "cut at {cut} lost records silently");
                store.close().unwrap();
            }
        }
    }
    assert!(refused >= 2, "only {refused} of 9 truncations were noticed");
}

#[test]
fn files_too_short_or_not_lmdb_are_refused_with_what_is_wrong() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    let file = data_file(dir.path());
    let original = std::fs::read(&file).unwrap();

    std::fs::write(&file, &original[..100]).unwrap();
    let detail = corruption(open(dir.path()));
    assert!(detail.contains("too short"), "{detail}");

    std::fs::write(&file, &original[..4200]).unwrap();
    let detail = corruption(open(dir.path()));
    assert!(detail.contains("two meta pages"), "{detail}");

    let mut bad_magic = original.clone();
    bad_magic[17] ^= 0xFF;
    std::fs::write(&file, &bad_magic).unwrap();
    let detail = corruption(open(dir.path()));
    assert!(
        detail.contains("first meta page has no LMDB magic"),
        "{detail}"
    );

    let mut bad_second = original.clone();
    bad_second[4096 + 10] = 0;
    std::fs::write(&file, &bad_second).unwrap();
    let detail = corruption(open(dir.path()));
    assert!(detail.contains("second meta page"), "{detail}");

    // Put back whole, it opens with every record.
    std::fs::write(&file, &original).unwrap();
    let store = open(dir.path()).unwrap();
    assert_eq!(
        store
            .range(&KeyRange::all(), Direction::Forward, None)
            .unwrap()
            .len(),
        RECORDS
    );
}

#[test]
fn an_empty_file_is_a_new_store() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(data_file(dir.path()), b"").unwrap();
    let store = open(dir.path()).unwrap();
    assert!(store.first(&KeyRange::all()).unwrap().is_none());
}

/// LMDB may leave never-written pages after the end of the file (pages
/// freed by the transaction that allocated them). Simulated by raising the
/// meta pages' last used page: the store opens with every record.
#[test]
fn a_file_short_only_of_unused_pages_opens_whole() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    let file = data_file(dir.path());
    let mut bytes = std::fs::read(&file).unwrap();
    let len = bytes.len() as u64;
    for meta in [0usize, 4096] {
        let last = u64::from_ne_bytes(bytes[meta + 136..meta + 144].try_into().unwrap());
        assert!((last + 1) * 4096 <= len, "a sound file to start from");
        bytes[meta + 136..meta + 144].copy_from_slice(&(last + 3).to_ne_bytes());
    }
    std::fs::write(&file, &bytes).unwrap();
    let store = open(dir.path()).unwrap();
    assert_eq!(
        store
            .range(&KeyRange::all(), Direction::Forward, None)
            .unwrap()
            .len(),
        RECORDS
    );
    store
        .set(b"/meta/kv/after", b"still writable", Durability::Durable)
        .unwrap();
}

/// Garbage where the tree pages should be, in a file shorter than its
/// meta pages say: the walk answers (an error, or a store that opens), it
/// never panics or crashes the process.
#[test]
fn garbage_pages_in_a_short_file_are_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    filled(dir.path());
    let file = data_file(dir.path());
    let original = std::fs::read(&file).unwrap();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..40 {
        let mut bytes = original.clone();
        // Keep the two meta pages, scramble up to 200 bytes elsewhere, and
        // cut a few pages so the file is walked.
        for _ in 0..(next() % 200) {
            let at = 8192 + (next() as usize % (bytes.len() - 8192));
            bytes[at] = next() as u8;
        }
        bytes.truncate(bytes.len() - 4096 * (1 + next() as usize % 4));
        std::fs::write(&file, &bytes).unwrap();
        match open(dir.path()) {
            Err(Error::Corruption { .. }) => {}
            Err(other) => panic!("expected a corruption error, got {other}"),
            Ok(store) => store.close().unwrap(),
        }
    }
}
