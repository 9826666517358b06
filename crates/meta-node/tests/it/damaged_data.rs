//! A node never serves a data directory it should not: another engine's,
//! another node's, damaged, or emptied. Each case, on both disk engines,
//! with the real binary: `serve` exits with code 3 (the data is refused; a
//! supervisor should not restart it) and an error that says what is wrong
//! and what to do — never a SIGBUS, never an empty store served.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Dirs, Proc, arg, bin_ok, cli_ok};

const KEYS: usize = 300;

/// A stopped node of `engine` in `<dirs>/orig` holding `KEYS` keys.
fn node_with_data(dirs: &Dirs, engine: &str) -> PathBuf {
    let dir = dirs.node("orig");
    let (api, raft) = (common::free_port(), common::free_port());
    let (api, raft) = (format!("127.0.0.1:{api}"), format!("127.0.0.1:{raft}"));
    let mut node = Proc::start(1, engine, &dir, true, &api, &raft, None);
    for i in 0..KEYS {
        cli_ok(&api, &["kv", "put", &format!("k{i:04}"), &"v".repeat(400)]);
    }
    node.stop();
    dir
}

/// A copy of `dir` named `name`, to damage.
fn copy(dir: &Path, name: &str) -> PathBuf {
    let to = dir.with_file_name(name);
    let status = Command::new("cp")
        .args(["-a", arg(dir), arg(&to)])
        .status()
        .unwrap();
    assert!(status.success());
    to
}

/// `meta-node serve` on `dir` with `args`, which must exit with code 3
/// within 30 s; what it printed.
fn refused(dir: &Path, args: &[&str]) -> String {
    let (api, raft) = (common::free_port(), common::free_port());
    let mut child = Command::new(common::binary())
        .args(["serve", "--data-dir", arg(dir)])
        .args(["--listen", &format!("127.0.0.1:{api}")])
        .args(["--raft-listen", &format!("127.0.0.1:{raft}")])
        .args(args)
        .env_remove("META_NODE_DATA_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!(
                "serve {args:?} on {} started instead of refusing",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(
        status.code(),
        Some(3),
        "serve {args:?} on {}: {status}: {stderr}",
        dir.display()
    );
    assert!(stderr.contains("error: "), "{stderr}");
    stderr
}

fn assert_says(stderr: &str, what: &[&str]) {
    for w in what {
        assert!(stderr.contains(w), "expected `{w}` in: {stderr}");
    }
}

/// Rewrites `identity.toml` without the lines containing `field`.
fn drop_identity_field(dir: &Path, field: &str) {
    let path = dir.join("identity.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let kept: Vec<&str> = text.lines().filter(|l| !l.contains(field)).collect();
    std::fs::write(&path, kept.join("\n")).unwrap();
}

/// Mismatches every disk engine refuses the same way.
fn refuses_mismatches(dirs: &Dirs, engine: &str, other: &str) {
    let orig = node_with_data(dirs, engine);
    // Another engine, or mem, over the data: named, with the way out.
    for wrong in [other, "mem"] {
        let stderr = refused(&copy(&orig, &format!("as-{wrong}")), &["--engine", wrong]);
        assert_says(
            &stderr,
            &[
                &format!("data is on {engine}"),
                &format!("--engine {engine}"),
                "meta-node migrate",
            ],
        );
    }
    // Another node's directory.
    let stderr = refused(
        &copy(&orig, "node-5"),
        &["--engine", engine, "--node-id", "5"],
    );
    assert_says(&stderr, &["belongs to node 1", "--node-id 1"]);
    // An identity file of an older build (no engines recorded): the other
    // engine's store is found and named.
    let old = copy(&orig, "old-identity");
    drop_identity_field(&old, "engine");
    let stderr = refused(&old, &["--engine", other]);
    assert_says(&stderr, &["another engine's store", &format!("/{engine})")]);
    // After `migrate` in place, the old engine's flag is refused and the
    // new one serves every key.
    let migrated = copy(&orig, "migrated");
    let out = bin_ok(&[
        "migrate",
        "--from",
        &format!("{engine}:{}", arg(&migrated.join(engine))),
        "--to",
        &format!("{other}:{}", arg(&migrated.join(other))),
    ]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("identity.toml now names"),
        "{out:?}"
    );
    let stderr = refused(&migrated, &["--engine", engine]);
    assert_says(&stderr, &[&format!("data is on {other}")]);
    let (api, raft) = (common::free_port(), common::free_port());
    let (api, raft) = (format!("127.0.0.1:{api}"), format!("127.0.0.1:{raft}"));
    let mut node = Proc::start(1, other, &migrated, true, &api, &raft, None);
    let items = cli_ok(&api, &["kv", "list", "--limit", "10000"]);
    assert_eq!(items["items"].as_array().unwrap().len(), KEYS, "{items}");
    node.stop();
    // A store emptied under a directory that held data.
    let emptied = copy(&orig, "emptied");
    empty_store(&emptied, engine);
    let stderr = refused(&emptied, &["--engine", engine]);
    assert_says(
        &stderr,
        &["refusing to start empty over lost data", "cluster"],
    );
    // ... and with the identity file gone too, a store directory with an
    // (empty) data file is not new. (fjall's emptied directory holds only
    // its lock file: that one is new, and bootstraps.)
    if engine != "lmdb" {
        return;
    }
    let no_identity = copy(&orig, "no-identity");
    empty_store(&no_identity, engine);
    std::fs::remove_file(no_identity.join("identity.toml")).unwrap();
    let stderr = refused(&no_identity, &["--engine", engine]);
    assert_says(&stderr, &["refusing to start empty", "identity.toml"]);
}

/// Leaves the engine's store directory in place, with nothing of its data.
fn empty_store(dir: &Path, engine: &str) {
    match engine {
        "lmdb" => std::fs::write(dir.join("lmdb/data.mdb"), b"").unwrap(),
        "fjall" => std::fs::remove_dir_all(dir.join("fjall/fjall")).unwrap(),
        _ => unreachable!(),
    }
}

#[test]
fn lmdb_directories_that_are_not_this_nodes_data_are_refused() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    refuses_mismatches(&dirs, "lmdb", "fjall");
}

#[test]
fn fjall_directories_that_are_not_this_nodes_data_are_refused() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    refuses_mismatches(&dirs, "fjall", "lmdb");
}

#[test]
fn damaged_lmdb_files_are_refused_not_mapped() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let orig = node_with_data(&dirs, "lmdb");
    let data = |dir: &Path| dir.join("lmdb/data.mdb");
    let bytes = std::fs::read(data(&orig)).unwrap();
    // Cut to half: a SIGBUS once mapped, before the check.
    let cut = copy(&orig, "cut");
    std::fs::write(data(&cut), &bytes[..bytes.len() / 2]).unwrap();
    let stderr = refused(&cut, &["--engine", "lmdb"]);
    assert_says(&stderr, &["truncated", "data.mdb"]);
    // A byte of the first meta page's header.
    let header = copy(&orig, "header");
    let mut damaged = bytes.clone();
    damaged[18] ^= 0x5a;
    std::fs::write(data(&header), &damaged).unwrap();
    let stderr = refused(&header, &["--engine", "lmdb"]);
    assert_says(
        &stderr,
        &["first meta page has no LMDB magic number", "data.mdb"],
    );
    // Shorter than a meta page.
    let stub = copy(&orig, "stub");
    std::fs::write(data(&stub), &bytes[..64]).unwrap();
    let stderr = refused(&stub, &["--engine", "lmdb"]);
    assert_says(&stderr, &["too short"]);
}

#[test]
fn damaged_fjall_files_are_refused() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let orig = node_with_data(&dirs, "fjall");
    let tables: Vec<PathBuf> = walk(&orig.join("fjall"))
        .into_iter()
        .filter(|p| p.parent().is_some_and(|d| d.ends_with("tables")))
        .collect();
    assert!(!tables.is_empty(), "the store flushed tables");
    // A table file gone.
    let missing = copy(&orig, "missing");
    let rel = tables[0].strip_prefix(&orig).unwrap();
    std::fs::remove_file(missing.join(rel)).unwrap();
    let stderr = refused(&missing, &["--engine", "fjall"]);
    assert_says(&stderr, &["missing or unreadable"]);
    // A byte flipped inside a table's data.
    let flipped = copy(&orig, "flipped");
    let table = flipped.join(rel);
    let mut bytes = std::fs::read(&table).unwrap();
    bytes[100] ^= 0xff;
    std::fs::write(&table, &bytes).unwrap();
    let stderr = refused(&flipped, &["--engine", "fjall"]);
    assert_says(&stderr, &["corruption in fjall store"]);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}
