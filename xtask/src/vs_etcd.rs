//! `cargo xtask bench --vs etcd` (and `--full` when etcd is on `PATH`):
//! meta-node and etcd side by side on this machine, in one run, through
//! `benches/vs-etcd` (a crate of its own: etcd's gRPC client needs
//! `protoc`). Writes its own generated section of `docs/benchmarks.md`
//! and `docs/charts/vs_etcd.svg`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// Marks the generated etcd comparison in `docs/benchmarks.md`.
pub const BEGIN: &str = "<!-- xtask bench --vs etcd: generated section begins -->";
/// Ends it.
pub const END: &str = "<!-- xtask bench --vs etcd: generated section ends -->";

/// The systems compared, as the load driver names them, in column order:
/// (system prefix, transport, column title). meta-node's columns first.
const COLUMNS: [(&str, &str, &str, bool); 5] = [
    ("meta-node lmdb", "http", "meta-node lmdb, HTTP", true),
    (
        "meta-node lmdb",
        "meta-client",
        "meta-node lmdb, meta-client",
        true,
    ),
    ("meta-node fjall", "http", "meta-node fjall, HTTP", true),
    ("etcd", "grpc", "etcd, gRPC", false),
    ("etcd", "http", "etcd, HTTP gateway", false),
];

/// Why the comparison cannot run here, if it cannot: what to install.
pub fn missing_tools() -> Option<String> {
    let has = |tool: &str| Command::new(tool).arg("--version").output().is_ok();
    let missing: Vec<&str> = [("etcd", "etcd-server"), ("protoc", "protobuf-compiler")]
        .into_iter()
        .filter(|(tool, _)| !has(tool))
        .map(|(_, package)| package)
        .collect();
    (!missing.is_empty()).then(|| {
        format!(
            "the etcd comparison needs etcd and protoc on PATH: `apt-get install {}`",
            missing.join(" ")
        )
    })
}

/// Builds and runs the driver against `node` (a release `meta-node`) for
/// `seconds` per row; its report (log in `target/vs-etcd.log`).
pub fn measure(
    root: &Path,
    node: &Path,
    seconds: f64,
) -> Result<Value, Box<dyn std::error::Error>> {
    let target = root.join("target");
    let log = std::fs::File::create(target.join("vs-etcd.log"))?;
    let status = crate::cargo()
        .current_dir(root)
        .args(["build", "--release", "--manifest-path"])
        .arg(root.join("benches/vs-etcd/Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .stdout(log.try_clone()?)
        .stderr(log.try_clone()?)
        .status()?;
    if !status.success() {
        return Err(
            format!("building benches/vs-etcd failed ({status}); see target/vs-etcd.log").into(),
        );
    }
    let out = target.join("vs-etcd.json");
    let status = Command::new(target.join("release/meta-vs-etcd"))
        .arg("--out")
        .arg(&out)
        .args(["--seconds", &seconds.to_string()])
        .env("META_NODE_BIN", node)
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()?;
    if !status.success() {
        return Err(
            format!("the etcd comparison failed ({status}); see target/vs-etcd.log").into(),
        );
    }
    Ok(serde_json::from_str(&std::fs::read_to_string(out)?)?)
}

/// One measured cell.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Cell {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
    errors: u64,
}

/// A table row: topology, workload, clients.
type RowKey = (u64, String, u64);

fn cells(report: &Value) -> BTreeMap<RowKey, [Option<Cell>; COLUMNS.len()]> {
    let mut table: BTreeMap<RowKey, [Option<Cell>; COLUMNS.len()]> = BTreeMap::new();
    for row in report["rows"].as_array().into_iter().flatten() {
        let system = row["system"].as_str().unwrap_or_default();
        let transport = row["transport"].as_str().unwrap_or_default();
        let Some(column) = COLUMNS
            .iter()
            .position(|(s, t, _, _)| system.starts_with(s) && *t == transport)
        else {
            continue;
        };
        let key = (
            row["nodes"].as_u64().unwrap_or_default(),
            row["workload"].as_str().unwrap_or_default().to_string(),
            row["clients"].as_u64().unwrap_or_default(),
        );
        table.entry(key).or_default()[column] = Some(Cell {
            rate: row["ops_per_sec"].as_f64().unwrap_or_default(),
            p50_us: row["p50_us"].as_f64().unwrap_or(f64::NAN),
            p99_us: row["p99_us"].as_f64().unwrap_or(f64::NAN),
            errors: row["errors"].as_u64().unwrap_or_default(),
        });
    }
    table
}

/// The fastest cell of meta-node's columns (`ours`) or etcd's.
fn best(row: &[Option<Cell>], ours: bool) -> Option<Cell> {
    row.iter()
        .zip(COLUMNS)
        .filter(|(_, (.., is_ours))| *is_ours == ours)
        .filter_map(|(cell, _)| *cell)
        .max_by(|a, b| a.rate.total_cmp(&b.rate))
}

/// Ours / etcd throughput of a row (best transport of each), and their p99s.
fn ratio(row: &[Option<Cell>]) -> Option<(f64, f64, f64)> {
    let (ours, etcd) = (best(row, true)?, best(row, false)?);
    (etcd.rate > 0.0).then(|| (ours.rate / etcd.rate, ours.p99_us, etcd.p99_us))
}

fn ms(us: f64) -> String {
    if us.is_nan() {
        "–".into()
    } else if us >= 1000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// The generated section: one table per topology and workload.
pub fn render(report: &Value, header: &str) -> String {
    let mut out = format!("{BEGIN}\n\n{header}\n\n");
    let _ = writeln!(
        out,
        "{}, {} s per row after a 0.5 s warm-up. Each cell: operations per second, then p50 / p99 latency. \
         **ours/etcd** divides meta-node's best column by etcd's best; the p99s are those two columns'.\n",
        report["etcd"].as_str().unwrap_or("etcd"),
        report["seconds_per_row"]
    );
    let table = cells(report);
    let mut last: Option<(u64, String)> = None;
    for ((nodes, workload, clients), row) in &table {
        if last.as_ref() != Some(&(*nodes, workload.clone())) {
            let _ = writeln!(
                out,
                "\n#### {} · {workload}\n",
                if *nodes == 1 {
                    "1 node".to_string()
                } else {
                    format!("{nodes} nodes")
                }
            );
            let titles: Vec<&str> = COLUMNS.iter().map(|(.., title, _)| *title).collect();
            let _ = writeln!(
                out,
                "| clients | {} | ours/etcd | p99 ours / etcd |",
                titles.join(" | ")
            );
            let _ = writeln!(out, "|---:|{}---:|---|", "---|".repeat(COLUMNS.len()));
            last = Some((*nodes, workload.clone()));
        }
        let shown: Vec<String> = row
            .iter()
            .map(|cell| match cell {
                None => "–".into(),
                Some(c) => {
                    let errors = if c.errors > 0 {
                        format!(", **{} errors**", c.errors)
                    } else {
                        String::new()
                    };
                    format!(
                        "{:.0}/s · {} / {}{errors}",
                        c.rate,
                        ms(c.p50_us),
                        ms(c.p99_us)
                    )
                }
            })
            .collect();
        let (r, p99) = match ratio(row) {
            Some((r, ours, etcd)) => (
                format!("**{r:.2}×**"),
                format!("{} / {}", ms(ours), ms(etcd)),
            ),
            None => ("–".into(), "–".into()),
        };
        let _ = writeln!(out, "| {clients} | {} | {r} | {p99} |", shown.join(" | "));
    }
    out.push_str("\n![ours/etcd per row](charts/vs_etcd.svg)\n\n");
    out.push_str(END);
    out.push('\n');
    out
}

/// `docs/charts/vs_etcd.svg`: ours/etcd per row, with 1× and 2× marked.
pub fn chart(report: &Value, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    let rows: Vec<(String, f64)> = cells(report)
        .iter()
        .filter_map(|((nodes, workload, clients), row)| {
            let (r, ..) = ratio(row)?;
            Some((format!("{nodes}n {workload}, {clients} cl."), r))
        })
        .collect();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let height = 60 + 20 * rows.len() as u32;
    let root = SVGBackend::new(path, (760, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = rows.iter().map(|r| r.1).fold(2.5, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "meta-node / etcd throughput, same run (2× dashed)",
            ("sans-serif", 16),
        )
        .margin(8)
        .x_label_area_size(24)
        .y_label_area_size(260)
        .build_cartesian_2d(0.0..max, 0..rows.len().max(1))?;
    let labels: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(rows.len().max(1))
        .y_label_formatter(&|i| labels.get(*i).cloned().unwrap_or_default())
        .draw()?;
    chart.draw_series(rows.iter().enumerate().map(|(i, (_, r))| {
        let color = if *r >= 2.0 {
            GREEN.mix(0.6)
        } else if *r >= 1.0 {
            BLUE.mix(0.5)
        } else {
            RED.mix(0.6)
        };
        Rectangle::new([(0.0, i), (*r, i + 1)], color.filled())
    }))?;
    for (x, style) in [
        (1.0, BLACK.stroke_width(1)),
        (2.0, BLACK.mix(0.5).stroke_width(1)),
    ] {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(x, 0), (x, rows.len().max(1))],
            style,
        )))?;
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(
        nodes: u64,
        system: &str,
        transport: &str,
        clients: u64,
        rate: f64,
        p99: f64,
        errors: u64,
    ) -> Value {
        json!({"nodes": nodes, "workload": "writes", "system": system, "transport": transport,
               "clients": clients, "ops_per_sec": rate, "p50_us": p99 / 2.0, "p99_us": p99, "errors": errors})
    }

    #[test]
    fn each_row_shows_every_column_and_the_best_against_the_best() {
        let report = json!({"etcd": "etcd 3.4.23", "seconds_per_row": 2.0, "rows": [
            row(1, "meta-node lmdb", "http", 64, 9000.0, 9000.0, 0),
            row(1, "meta-node lmdb", "meta-client", 64, 8000.0, 8000.0, 0),
            row(1, "meta-node fjall", "http", 64, 12000.0, 7000.0, 3),
            row(1, "etcd 3.4.23", "grpc", 64, 4000.0, 20000.0, 0),
            row(1, "etcd 3.4.23", "http", 64, 3000.0, 30000.0, 0),
            row(3, "meta-node lmdb", "http", 1, 500.0, 2000.0, 0),
        ]});
        let out = render(&report, "## header");
        assert!(
            out.starts_with(BEGIN) && out.trim_end().ends_with(END),
            "{out}"
        );
        assert!(out.contains("#### 1 node · writes"), "{out}");
        assert!(
            out.contains("| 64 | 9000/s · 4.5 ms / 9.0 ms | 8000/s"),
            "{out}"
        );
        assert!(
            out.contains("12000/s · 3.5 ms / 7.0 ms, **3 errors**"),
            "{out}"
        );
        // fjall's 12,000 against gRPC's 4,000, and those two p99s.
        assert!(out.contains("| **3.00×** | 7.0 ms / 20.0 ms |"), "{out}");
        // No etcd figure: no ratio, rather than a made-up one.
        assert!(out.contains("#### 3 nodes · writes"), "{out}");
        assert!(
            out.contains("| 1 | 500/s · 1.0 ms / 2.0 ms | – | – | – | – | – | – |"),
            "{out}"
        );
    }

    #[test]
    fn the_chart_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let report = json!({"rows": [
            row(1, "meta-node lmdb", "http", 1, 2.0, 1.0, 0),
            row(1, "etcd 3.4.23", "grpc", 1, 1.0, 1.0, 0),
        ]});
        let path = dir.path().join("vs_etcd.svg");
        chart(&report, &path).unwrap();
        assert!(std::fs::read_to_string(path).unwrap().contains("<svg"));
    }
}
