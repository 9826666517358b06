//! `cargo xtask conformance`: the suite against every backend, one table.

use std::time::Instant;

use meta_store_api::conformance::{
    CaseOutcome, HarnessFactory, cross_engine_matrix, panic_message, run_all,
};

use crate::backends;

/// One row of the report.
#[derive(Debug)]
pub struct Row {
    /// Backend (or `"matrix"` for the cross-engine check).
    pub backend: String,
    /// Cases that passed.
    pub passed: usize,
    /// Cases that do not apply to the backend (they checked nothing).
    pub skipped: usize,
    /// Failed cases and their messages.
    pub failures: Vec<(String, String)>,
    /// Wall time of the row.
    pub seconds: f64,
}

/// Runs everything; panics inside cases are caught and reported, and the
/// default panic output is silenced meanwhile to keep the table readable.
pub fn run() -> Vec<Row> {
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut rows = Vec::new();
    let makers = backends::all();
    for (name, make) in &makers {
        let start = Instant::now();
        let outcomes = run_all(&**make);
        rows.push(row(
            name.to_string(),
            &outcomes,
            start.elapsed().as_secs_f64(),
        ));
    }
    let start = Instant::now();
    let factories: Vec<(&str, HarnessFactory<'_>)> = makers
        .iter()
        .map(|(name, make)| (*name, &**make as HarnessFactory<'_>))
        .collect();
    let matrix = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        cross_engine_matrix(&factories)
    }));
    let pairs = makers.len() * makers.len();
    rows.push(Row {
        backend: format!("matrix {n}x{n}", n = makers.len()),
        passed: if matrix.is_ok() { pairs } else { 0 },
        skipped: 0,
        failures: match matrix {
            Ok(_) => Vec::new(),
            Err(panic) => vec![("cross_engine_matrix".into(), panic_message(&*panic))],
        },
        seconds: start.elapsed().as_secs_f64(),
    });
    std::panic::set_hook(previous_hook);
    rows
}

fn row(backend: String, outcomes: &[CaseOutcome], seconds: f64) -> Row {
    Row {
        backend,
        passed: outcomes
            .iter()
            .filter(|o| o.failure.is_none() && o.skipped.is_none())
            .count(),
        skipped: outcomes.iter().filter(|o| o.skipped.is_some()).count(),
        failures: outcomes
            .iter()
            .filter_map(|o| o.failure.clone().map(|f| (o.name.to_string(), f)))
            .collect(),
        seconds,
    }
}

/// Renders the report; the last line is `conformance: N passed, M failed,
/// K skipped`.
pub fn render(rows: &[Row]) -> String {
    let mut out = format!(
        "{:<12} {:>7} {:>7} {:>8} {:>9}\n",
        "backend", "passed", "failed", "skipped", "seconds"
    );
    for r in rows {
        out += &format!(
            "{:<12} {:>7} {:>7} {:>8} {:>9.2}\n",
            r.backend,
            r.passed,
            r.failures.len(),
            r.skipped,
            r.seconds
        );
    }
    for r in rows {
        for (case, msg) in &r.failures {
            out += &format!(
                "\nFAILED {} / {}:\n  {}\n",
                r.backend,
                case,
                msg.replace('\n', "\n  ")
            );
        }
    }
    let passed: usize = rows.iter().map(|r| r.passed).sum();
    let failed: usize = rows.iter().map(|r| r.failures.len()).sum();
    let skipped: usize = rows.iter().map(|r| r.skipped).sum();
    out += &format!("\nconformance: {passed} passed, {failed} failed, {skipped} skipped\n");
    out
}
