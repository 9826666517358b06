//! Tidy checks that keep the architecture's invariants without anyone
//! having to remember them.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// `cargo metadata` of the workspace, without dependencies.
fn metadata() -> Value {
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
    serde_json::from_slice(&out.stdout).expect("cargo metadata JSON")
}

/// Workspace crate name -> its normal (non-dev) dependencies' names.
fn normal_dependencies() -> BTreeMap<String, Vec<String>> {
    let meta = metadata();
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
    let raft = &graph["meta-raft"];
    for engine in ENGINES {
        assert!(
            !raft.iter().any(|d| d == engine),
            "meta-raft must not depend on {engine}"
        );
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

/// The code lines of a source file, numbered from 0 and trimmed: no
/// comment line, nothing of its unit tests (they sit at the end, in
/// `mod tests`).
fn code_lines(file: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(file).expect("reading a source file");
    let code = text.split("\nmod tests {").next().unwrap_or("");
    code.lines()
        .enumerate()
        .map(|(n, line)| (n, line.trim_start().to_string()))
        .filter(|(_, line)| !line.starts_with("//"))
        .collect()
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

#[test]
fn only_meta_node_names_engines() {
    // Only meta-node names the engines, behind its features (mem is always
    // there); everything else (the test kit, xtask) goes through
    // `meta_node::Engine`. Dev-dependencies do not count.
    let meta = metadata();
    let mut checked = 0;
    for package in meta["packages"].as_array().expect("packages") {
        let name = package["name"].as_str().expect("name");
        if ENGINES.contains(&name) {
            continue;
        }
        // The store benches compare each engine with the engine driven by
        // its own API, configured from the engine crate's own defaults.
        let tooling = name == "meta-benches";
        for dep in package["dependencies"].as_array().expect("dependencies") {
            let dep_name = dep["name"].as_str().expect("dependency name");
            if !ENGINES.contains(&dep_name) || !dep["kind"].is_null() || tooling {
                continue;
            }
            checked += 1;
            assert_eq!(
                name, "meta-node",
                "{name} names the engine {dep_name}: only meta-node may (and the benches' raw baselines)"
            );
            let optional = dep["optional"].as_bool().unwrap_or(false);
            assert!(
                optional || dep_name == "meta-store-mem",
                "meta-node must name {dep_name} behind a feature"
            );
        }
    }
    assert_eq!(checked, ENGINES.len(), "meta-node names every engine once");
}

#[test]
fn only_keys_rs_spells_a_key_prefix() {
    // Outside tests and docs: code builds keys through `Key`,
    // `MetaNamespace`, `log_key`. The conformance suite is test data by
    // nature (raw keys against the engine contract).
    let root = xtask::project_root();
    let mut files = Vec::new();
    for dir in ["crates", "xtask/src", "benches/src"] {
        rust_files(&root.join(dir), &mut files);
    }
    let mut found = Vec::new();
    for file in &files {
        let path = file.to_string_lossy();
        if path.ends_with("meta-store-api/src/keys.rs")
            || path.contains("/tests/")
            || path.contains("/conformance/")
            || path.contains("/examples/")
        {
            continue;
        }
        for (n, line) in code_lines(file) {
            if ["\"/meta/", "\"/raft/", "b\"/meta/", "b\"/raft/"]
                .iter()
                .any(|p| line.contains(p))
            {
                found.push(format!("{path}:{}: {line}", n + 1));
            }
        }
    }
    assert!(
        found.is_empty(),
        "key prefixes spelled outside keys.rs (use Key, MetaNamespace, log_key):\n{}",
        found.join("\n")
    );
}

#[test]
fn apply_reads_no_clock_and_no_random_source() {
    // docs/architecture.md: apply is deterministic; time and random ids
    // are chosen by the proposer and carried in the command. The files
    // apply runs (the rules, the views, the history, the model) name no
    // clock and no random source outside their tests.
    let root = xtask::project_root();
    let src = root.join("crates/meta-raft/src");
    let mut files = vec![
        src.join("apply.rs"),
        src.join("views.rs"),
        src.join("history.rs"),
    ];
    rust_files(&src.join("model"), &mut files);
    let forbidden = [
        "Instant",
        "SystemTime",
        "UNIX_EPOCH",
        "rand::",
        "getrandom",
        "thread_rng",
        "OsRng",
        "chrono::",
    ];
    let mut found = Vec::new();
    for file in &files {
        for (n, line) in code_lines(file) {
            if let Some(word) = forbidden.iter().find(|w| line.contains(**w)) {
                found.push(format!("{}:{}: {word}: {line}", file.display(), n + 1));
            }
        }
    }
    assert!(files.len() >= 5, "the files apply runs: {files:?}");
    assert!(
        found.is_empty(),
        "a clock or a random source in apply's code (the proposer chooses them):\n{}",
        found.join("\n")
    );
}

#[test]
fn every_engine_runs_the_conformance_suite_from_its_own_tests() {
    // docs/architecture.md: every engine passes the whole suite from its
    // own `tests/conformance.rs` (`tests/it/conformance.rs` in a crate
    // whose tests are one binary), with no engine-specific exception.
    let root = xtask::project_root();
    for engine in ENGINES {
        let tests = root.join("crates").join(engine).join("tests");
        let path = [
            tests.join("conformance.rs"),
            tests.join("it/conformance.rs"),
        ]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{engine} has no tests/conformance.rs"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        // The macro emits one test per case of the suite: all of them.
        assert!(
            text.contains("meta_store_api::conformance_tests!(") && !text.contains("#[ignore"),
            "{} does not run the whole conformance suite (`meta_store_api::conformance_tests!`)",
            path.display()
        );
    }
}

#[test]
fn anyhow_stays_in_the_binary() {
    // docs/architecture.md, "Errors": libraries return their own error
    // types with their sources; only the `meta-node` binary (`main.rs` and
    // the `cli/` modules it owns) flattens them into `anyhow`.
    let root = xtask::project_root();
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files);
    let binary = root.join("crates/meta-node/src");
    let mut checked = 0;
    let mut found = Vec::new();
    for file in &files {
        let in_binary = *file == binary.join("main.rs") || file.starts_with(binary.join("cli"));
        let library = file.components().any(|c| c.as_os_str() == "src");
        if in_binary || !library {
            continue;
        }
        checked += 1;
        for (n, line) in code_lines(file) {
            if line.contains("anyhow") {
                found.push(format!("{}:{}: {line}", file.display(), n + 1));
            }
        }
    }
    assert!(checked > 50, "only {checked} library files found");
    assert!(
        found.is_empty(),
        "anyhow in a library (give it its own error type):\n{}",
        found.join("\n")
    );
}
