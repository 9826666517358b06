//! `cargo xtask`: see the library docs for the commands.

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  conformance   run the storage conformance suite against every backend
  bench [--full]  measure fsync, run the benches (quick unless --full), update docs/benchmarks.md";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("conformance") => {
            let rows = xtask::conformance::run();
            print!("{}", xtask::conformance::render(&rows));
            if rows.iter().all(|r| r.failures.is_empty()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Some("bench") => match xtask::bench::run(args.iter().any(|a| a == "--full")) {
            Ok(doc) => {
                println!("wrote {}", doc.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("bench failed: {e}");
                ExitCode::FAILURE
            }
        },
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        other => {
            eprintln!("unknown command {other:?}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
