//! Tidy checks that keep the architecture's invariants without anyone
//! having to remember them.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Workspace crate name -> its normal (non-dev) dependencies' names.
fn normal_dependencies() -> BTreeMap<String, Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(xtask::project_root())
        .output()
        .expect("running cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata JSON");
    let mut graph = BTreeMap::new();
    for package in meta["packages"].as_array().expect("packages") {
        let deps = package["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .filter(|d| d["kind"].is_null())
            .map(|d| d["name"].as_str().expect("dependency name").to_string())
            .collect();
        graph.insert(
            package["name"].as_str().expect("package name").to_string(),
            deps,
        );
    }
    graph
}

const ENGINES: [&str; 3] = ["meta-store-mem", "meta-store-lmdb", "meta-store-fjall"];

#[test]
fn the_layer_rule_holds() {
    let graph = normal_dependencies();
    let internal = |deps: &Vec<String>| -> Vec<String> {
        deps.iter()
            .filter(|d| graph.contains_key(*d))
            .cloned()
            .collect()
    };
    assert!(
        internal(&graph["meta-store-api"]).is_empty(),
        "meta-store-api must depend on no other crate of the workspace"
    );
    for engine in ENGINES {
        let deps = &graph[engine];
        assert_eq!(
            internal(deps),
            ["meta-store-api"],
            "{engine} may depend on meta-store-api only"
        );
        for forbidden in ["openraft", "tokio"] {
            assert!(
                !deps.iter().any(|d| d == forbidden),
                "{engine} must not depend on {forbidden}"
            );
        }
    }
    if let Some(raft) = graph.get("meta-raft") {
        for engine in ENGINES {
            assert!(
                !raft.iter().any(|d| d == engine),
                "meta-raft must not depend on {engine}"
            );
        }
    }
    // The client crate is a leaf: what a program talking to a cluster
    // links, with no storage and no Raft in it.
    let client = &graph["meta-client"];
    assert!(
        internal(client).is_empty(),
        "meta-client must depend on no other crate of the workspace, found {:?}",
        internal(client)
    );
    assert!(
        !client.iter().any(|d| d == "openraft"),
        "meta-client must not depend on openraft"
    );
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("reading a source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "target") {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let root = xtask::project_root();
    let mut files = Vec::new();
    for dir in ["crates", "xtask", "benches"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 10, "found only {} files", files.len());
    let missing: Vec<_> = files
        .iter()
        .filter(|f| {
            !std::fs::read_to_string(f)
                .expect("reading a source file")
                .starts_with("//!")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` module doc: {missing:?}"
    );
}
