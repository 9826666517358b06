//! The console examples of `README.md` (the tour) and `docs/api.md` run, in
//! order, in one shell, against a fresh node started as the README says,
//! and print what the docs show — up to secrets, hashes and timestamps,
//! which are masked. A change of behaviour that the docs do not follow
//! fails here, naming the command and both outputs.
//!
//! Needs `bash`, `curl` and `jq` (`.ci/run` installs them when missing);
//! without them this test fails, it never passes unchecked.

use crate::common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// One `$ command` of a console block and the lines the docs show after it.
struct Example {
    line: usize,
    command: String,
    expected: Vec<String>,
}

fn examples(doc: &str) -> Vec<Example> {
    let mut out: Vec<Example> = Vec::new();
    let mut in_console = false;
    for (i, line) in doc.lines().enumerate() {
        if line.starts_with("```console") {
            in_console = true;
        } else if line.starts_with("```") {
            in_console = false;
        } else if in_console {
            match line.strip_prefix("$ ") {
                Some(command) => out.push(Example {
                    line: i + 1,
                    command: command.to_owned(),
                    expected: Vec::new(),
                }),
                None => out.last_mut().unwrap().expected.push(line.to_owned()),
            }
        }
    }
    out
}

/// What may differ between two runs, masked: secrets and tokens, hashes,
/// timestamps; and the widths of tables (ports differ in length).
fn masked(text: &str) -> String {
    let text = &text.replace('\r', "");
    let mut out = String::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        // A run of hex digits of 32 or more: a secret, a hash, an id.
        let hex = bytes[i..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            .count();
        let starts_word = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        if hex >= 32 && starts_word {
            out.push_str("<hex>");
            i += hex;
            continue;
        }
        // `..._ms":<digits>`: a timestamp in milliseconds.
        if text[i..].starts_with("_ms\":") {
            out.push_str("_ms\":");
            i += 5;
            let digits = bytes[i..].iter().take_while(|b| b.is_ascii_digit()).count();
            if digits > 0 {
                out.push_str("<ms>");
                i += digits;
            }
            continue;
        }
        let c = text[i..].chars().next().unwrap();
        // A table's padding and rules: one of each.
        if matches!(c, ' ' | '─' | '═') && out.ends_with(c) {
            i += c.len_utf8();
            continue;
        }
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Runs `doc`'s console examples against a fresh node; the mismatches.
fn run(doc_path: &str) -> Vec<String> {
    let doc = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(doc_path),
    )
    .unwrap();
    let examples = examples(&doc);
    assert!(examples.len() >= 5, "{doc_path}: no console examples found");
    let work = tempfile::tempdir().unwrap();
    let (api, raft) = (common::free_port(), common::free_port());
    let bin = Path::new(common::binary());
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut node = Command::new(bin)
        .args(["serve", "--listen", &format!("127.0.0.1:{api}")])
        .args(["--raft-listen", &format!("127.0.0.1:{raft}")])
        .current_dir(work.path())
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let addr = format!("127.0.0.1:{api}");
    common::wait_until(20, "the node to answer", || {
        Command::new(bin)
            .args(["--addr", &addr, "health"])
            .current_dir(work.path())
            .output()
            .is_ok_and(|o| o.status.success())
    });
    // Give the root key a moment to be in place, as a reader would.
    std::thread::sleep(Duration::from_millis(200));
    let mut script = String::new();
    for e in &examples {
        let command = e
            .command
            .replace("cargo run --release -q -p meta-node --", "meta-node")
            .replace("localhost:7700", &format!("localhost:{api}"))
            .replace("127.0.0.1:7700", &format!("127.0.0.1:{api}"));
        script += &format!("{{ {command}\n}} 2>&1\necho '@@END@@'\n");
    }
    let out = Command::new("bash")
        .current_dir(work.path())
        .env("PATH", &path)
        .env("META_NODE_ADDR", &addr)
        .env_remove("META_TOKEN")
        .env_remove("META_TOKEN_FILE")
        .env_remove("META_CA")
        .env_remove("META_NODE_DATA_DIR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(script.as_bytes())?;
            child.wait_with_output()
        })
        .expect("running bash");
    let _ = node.kill();
    let _ = node.wait();
    let text = String::from_utf8_lossy(&out.stdout)
        .replace(&format!("127.0.0.1:{api}"), "127.0.0.1:7700")
        .replace(&format!("127.0.0.1:{raft}"), "127.0.0.1:7701")
        .replace(&format!("localhost:{api}"), "localhost:7700");
    let parts: Vec<&str> = text.split("@@END@@\n").collect();
    let mut mismatches = Vec::new();
    for (e, got) in examples.iter().zip(&parts) {
        let want = masked(&e.expected.join("\n"));
        let got = masked(got.trim_end_matches('\n'));
        if want.trim_end() != got.trim_end() {
            mismatches.push(format!(
                "{doc_path}:{}: $ {}\n--- the docs show:\n{want}\n--- it printed:\n{got}\n",
                e.line, e.command
            ));
        }
    }
    if parts.len() < examples.len() {
        mismatches.push(format!(
            "{doc_path}: the shell stopped after {} of {} commands",
            parts.len(),
            examples.len()
        ));
    }
    mismatches
}

#[test]
fn masking_keeps_what_must_match() {
    assert_eq!(
        masked(
            r#"{"token":"bot.9d05320069fbed54f41f324bedbe4745fa501cfe1495e6eb53f77cd39c4960a7","created_at_ms":1764460000000,"revision":7}"#
        ),
        r#"{"token":"bot.<hex>","created_at_ms":<ms>,"revision":7}"#
    );
    assert_eq!(masked("deadbeef 12"), "deadbeef 12");
}

#[test]
fn the_readme_tour_prints_what_the_readme_shows() {
    let mismatches = run("README.md");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn the_api_examples_print_what_docs_api_md_shows() {
    let mismatches = run("docs/api.md");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}
