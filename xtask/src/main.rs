//! `cargo xtask`: see the library docs for the commands.

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  conformance   run the storage conformance suite against every backend
  bench [--full]  measure fsync, run the benches (quick unless --full), update docs/benchmarks.md
  crash [--kills N] [--seed S]  SIGKILL crash campaign, soak size (default 1000 kills per engine)
  fuzz [--seconds N] [TARGET ...]  run the cargo-fuzz targets (default 60 s each)
  soak [--minutes N]  crash + linearizability campaigns for N minutes (default 30)";

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
        Some("soak") => {
            let minutes = match args.get(1..) {
                Some([flag, n]) if flag == "--minutes" => n.parse().ok().filter(|m| *m > 0),
                Some([]) | None => Some(30),
                _ => None,
            };
            let Some(minutes) = minutes else {
                eprintln!("soak takes --minutes N (N at least 1)\n\n{USAGE}");
                return ExitCode::from(2);
            };
            let start = std::time::Instant::now();
            match xtask::soak::run(minutes) {
                Ok(Ok(totals)) => {
                    println!("{}", totals.render(start.elapsed()));
                    ExitCode::SUCCESS
                }
                Ok(Err(failure)) => {
                    eprintln!("soak failed: {failure}");
                    ExitCode::FAILURE
                }
                Err(e) => {
                    eprintln!("could not run the soak: {e}");
                    ExitCode::FAILURE
                }
            }
        }
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
