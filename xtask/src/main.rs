//! `cargo xtask`: see the library docs for the commands.

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  conformance   run the storage conformance suite against every backend
  bench [--full]  measure fsync, run the benches (quick unless --full), update docs/benchmarks.md
  crash [--kills N] [--seed S]  SIGKILL crash campaign, soak size (default 1000 kills per engine)
  fuzz [--seconds N] [TARGET ...]  run the cargo-fuzz targets (default 60 s each)";

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
        Some("crash") => match xtask::crash::CrashOptions::parse(&args[1..]) {
            Ok(options) => match xtask::crash::run(&options) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::FAILURE,
                Err(e) => {
                    eprintln!("could not run the crash campaign: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("{e}\n\n{USAGE}");
                ExitCode::from(2)
            }
        },
        Some("fuzz") => match xtask::fuzz::FuzzOptions::parse(&args[1..]) {
            Ok(options) => match xtask::fuzz::run(&options) {
                Ok(crashed) if crashed.is_empty() => ExitCode::SUCCESS,
                Ok(crashed) => {
                    eprintln!("crashes in: {}", crashed.join(", "));
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("could not run the fuzzers: {e}");
                    ExitCode::FAILURE
                }
            },
            Err(e) => {
                eprintln!("{e}\n\n{USAGE}");
                ExitCode::from(2)
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
