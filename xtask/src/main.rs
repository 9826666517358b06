//! `cargo xtask`: see the library docs for the commands (`--help` on each).

use std::process::ExitCode;

use clap::Parser as _;
use xtask::{Task, Xtask};

fn main() -> ExitCode {
    match Xtask::parse().task {
        Task::Conformance => {
            let rows = xtask::conformance::run();
            print!("{}", xtask::conformance::render(&rows));
            if rows.iter().all(|r| r.failures.is_empty()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Task::Bench { full, vs, seconds } => match xtask::bench::run(full, vs, seconds) {
            Ok(doc) => {
                println!("wrote {}", doc.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("bench failed: {e}");
                ExitCode::FAILURE
            }
        },
        Task::Crash(options) => match xtask::crash::run(&options) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("could not run the crash campaign: {e}");
                ExitCode::FAILURE
            }
        },
        Task::Fuzz(options) => match xtask::fuzz::run(&options) {
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
        Task::UiTest => match xtask::ui_test::run() {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("ui-test: {e}");
                ExitCode::FAILURE
            }
        },
        Task::Soak { minutes } => {
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
    }
}
