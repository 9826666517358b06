//! `cargo xtask bench [--full]`: measures this machine's serial fsync rate,
//! runs the criterion benches (`--quick` unless `--full`), and regenerates
//! the measured section of `docs/benchmarks.md` and one SVG chart per group
//! in `docs/charts/`. Durable figures are also given as multiples of the
//! fsync rate measured in the same run.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use serde_json::Value;

use crate::project_root;

/// Marks the generated part of `docs/benchmarks.md`.
pub const BEGIN: &str = "<!-- xtask bench: generated section begins -->";
/// Ends it.
pub const END: &str = "<!-- xtask bench: generated section ends -->";

/// Groups whose figures are durable writes (compared with the fsync rate).
const DURABLE_GROUPS: [&str; 7] = [
    "durable_set",
    "durable_batch_100",
    "raft_log_append",
    "node_durable_writes",
    "node_durable_writes_grouped",
    "http_single_writes",
    "http_cluster3_writes",
];

/// Serial fsync latency: min, median and max over the run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fsync {
    /// Fastest write + fdatasync.
    pub min: Duration,
    /// Median.
    pub median: Duration,
    /// Slowest.
    pub max: Duration,
}

impl Fsync {
    /// Writes per second at the median latency.
    pub fn rate(&self) -> f64 {
        1.0 / self.median.as_secs_f64()
    }
}

/// Measures 4 KiB write + fdatasync, serially, for `duration`, in `dir`.
pub fn measure_fsync(dir: &Path, duration: Duration) -> std::io::Result<Fsync> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path)?;
    let block = [0x5Au8; 4096];
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < duration || samples.len() < 10 {
        let t = Instant::now();
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&block)?;
        file.sync_data()?;
        samples.push(t.elapsed());
    }
    std::fs::remove_file(&path)?;
    samples.sort();
    Ok(Fsync {
        min: samples[0],
        median: samples[samples.len() / 2],
        max: samples[samples.len() - 1],
    })
}

/// One criterion result.
#[derive(Clone, Debug, PartialEq)]
pub struct Result {
    /// Group.
    pub group: String,
    /// Function within the group (`lmdb/trait`, `fjall/64`).
    pub function: String,
    /// Median time per iteration, ns, and its 95% interval.
    pub median_ns: f64,
    /// Lower bound of the median's confidence interval.
    pub low_ns: f64,
    /// Upper bound.
    pub high_ns: f64,
    /// Elements per iteration, if the bench declared a throughput.
    pub elements: Option<f64>,
    /// Per-operation latency (p50, p99), for closed-loop client benches.
    pub latency: Option<(Duration, Duration)>,
}

impl Result {
    /// Elements (or iterations) per second at the median.
    pub fn per_second(&self) -> f64 {
        self.elements.unwrap_or(1.0) * 1e9 / self.median_ns
    }
}

/// Reads every `new/benchmark.json` + `new/estimates.json` under `dir`.
pub fn read_results(dir: &Path) -> Vec<Result> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "benchmark.json")
                && path.parent().is_some_and(|p| p.ends_with("new"))
            {
                out.extend(read_one(&path));
            }
        }
    }
    out.sort_by(|a, b| (&a.group, &a.function).cmp(&(&b.group, &b.function)));
    out
}

fn read_one(benchmark: &Path) -> Option<Result> {
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(benchmark).ok()?).ok()?;
    let estimates: Value = serde_json::from_str(
        &std::fs::read_to_string(benchmark.with_file_name("estimates.json")).ok()?,
    )
    .ok()?;
    let median = &estimates["median"];
    Some(Result {
        group: meta["group_id"].as_str()?.to_string(),
        // `BenchmarkId::new(engine, parameter)` stores the parameter apart.
        function: match (meta["function_id"].as_str(), meta["value_str"].as_str()) {
            (Some(f), Some(v)) => format!("{f}/{v}"),
            (Some(f), None) => f.to_string(),
            (None, Some(v)) => v.to_string(),
            (None, None) => return None,
        },
        median_ns: median["point_estimate"].as_f64()?,
        low_ns: median["confidence_interval"]["lower_bound"].as_f64()?,
        high_ns: median["confidence_interval"]["upper_bound"].as_f64()?,
        elements: meta["throughput"]["Elements"].as_f64(),
        latency: None,
    })
}

/// Attaches the p50/p99 summaries the closed-loop benches wrote to `dir`
/// (`meta_benches::load`) to their results.
pub fn attach_latencies(results: &mut [Result], dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Some(v) = std::fs::read_to_string(entry.path())
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        else {
            continue;
        };
        let (Some(group), Some(function), Some(p50), Some(p99)) = (
            v["group"].as_str(),
            v["function"].as_str(),
            v["p50_ns"].as_u64(),
            v["p99_ns"].as_u64(),
        ) else {
            continue;
        };
        if let Some(r) = results
            .iter_mut()
            .find(|r| r.group == group && r.function == function)
        {
            r.latency = Some((Duration::from_nanos(p50), Duration::from_nanos(p99)));
        }
    }
}

fn human_time(ns: f64) -> String {
    match ns {
        n if n >= 1e6 => format!("{:.2} ms", n / 1e6),
        n if n >= 1e3 => format!("{:.1} µs", n / 1e3),
        n => format!("{n:.0} ns"),
    }
}

fn human_rate(r: f64) -> String {
    match r {
        r if r >= 1e6 => format!("{:.2} M/s", r / 1e6),
        r if r >= 1e3 => format!("{:.1} k/s", r / 1e3),
        r => format!("{r:.0} /s"),
    }
}

/// The generated markdown section; `extra` goes at its end.
pub fn render(results: &[Result], fsync: &Fsync, header: &str, extra: &str) -> String {
    let mut out = format!("{BEGIN}\n\n{header}\n\n");
    let _ = writeln!(
        out,
        "Serial fsync (4 KiB write + fdatasync) in this run: median {} (min {}, max {}), **{}**.\n",
        human_time(fsync.median.as_nanos() as f64),
        human_time(fsync.min.as_nanos() as f64),
        human_time(fsync.max.as_nanos() as f64),
        human_rate(fsync.rate())
    );
    let mut groups: BTreeMap<&str, Vec<&Result>> = BTreeMap::new();
    for r in results {
        groups.entry(r.group.as_str()).or_default().push(r);
    }
    for (group, rows) in groups {
        let durable = DURABLE_GROUPS.contains(&group);
        let latency = rows.iter().any(|r| r.latency.is_some());
        let _ = writeln!(out, "### `{group}`\n\n![{group}](charts/{group}.svg)\n");
        out += "| bench | median | 95% interval | rate |";
        if durable {
            out += " × fsync rate |";
        }
        if latency {
            out += " p50 | p99 |";
        }
        let columns = 4 + usize::from(durable) + 2 * usize::from(latency);
        out += &format!("\n|{}\n", "---|".repeat(columns));
        for r in rows {
            let _ = write!(
                out,
                "| {} | {} | {} – {} | {} |",
                r.function,
                human_time(r.median_ns),
                human_time(r.low_ns),
                human_time(r.high_ns),
                human_rate(r.per_second())
            );
            if durable {
                let _ = write!(out, " {:.2}× |", r.per_second() / fsync.rate());
            }
            if latency {
                match r.latency {
                    Some((p50, p99)) => {
                        let _ = write!(
                            out,
                            " {} | {} |",
                            human_time(p50.as_nanos() as f64),
                            human_time(p99.as_nanos() as f64)
                        );
                    }
                    None => out += " – | – |",
                }
            }
            out.push('\n');
        }
        out.push('\n');
    }
    out + extra + END + "\n"
}

fn mb_per_s(bytes: f64, step: &Value) -> String {
    step["secs"]
        .as_f64()
        .filter(|s| *s > 0.0)
        .map_or("–".into(), |s| format!("{:.0} MB/s", bytes / s / 1e6))
}

fn mib(v: &Value) -> String {
    v.as_f64().map_or("–".into(), |b| {
        format!("{:.0} MiB", b / (1u64 << 20) as f64)
    })
}

/// Peak RSS of the node processes of the HTTP benches
/// (`target/bench-node-rss.json`, `benches/node_ops.rs`).
pub fn render_node_rss(rss: &Value) -> String {
    let Some(rows) = rss.as_array().filter(|a| !a.is_empty()) else {
        return String::new();
    };
    let mut out = String::from(
        "### Peak RSS of the node processes in the HTTP benches\n\n\
         Largest `VmHWM` of the cluster's nodes after all of its HTTP groups ran.\n\n\
         | topology | engine | peak RSS |\n|---|---|---|\n",
    );
    for r in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            r["topology"].as_str().unwrap_or("?"),
            r["engine"].as_str().unwrap_or("?"),
            mib(&r["peak_rss"])
        );
    }
    out + "\n"
}

/// The watch fan-out section from `target/bench-watch.json`
/// (`benches/watchers.rs`).
pub fn render_watch(watch: &Value) -> String {
    if !watch.is_object() {
        return String::new();
    }
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let phase = |name: &str, v: &Value| {
        format!(
            "| {name} | {:.1} | {:.2} ms | {:.2} ms |\n",
            f(&v["writes_per_sec"]),
            f(&v["p50_ms"]),
            f(&v["p99_ms"])
        )
    };
    format!(
        "### Watch fan-out: {watchers} watchers under a steady write load\n\n\
         One LMDB node (`benches/benches/watchers.rs`), 4 writers at {rate} writes/s in all, \
         first alone, then with {watchers} watchers of the written prefix (raw HTTP/1.1 \
         connections in the bench process).\n\n\
         | phase | writes/s | p50 | p99 |\n|---|---|---|---|\n{alone}{watched}\n\
         Throughput drop: **{drop:.1}%**. Events delivered: {received} of {expected} \
         ({every}), **{eps:.0} events/s**. Node memory per watcher: **{per} bytes** \
         (RSS {before} → {after} with the watchers connected; peak {peak}).\n\n",
        watchers = watch["watchers"],
        rate = watch["target_writes_per_sec"],
        alone = phase("alone", &watch["alone"]),
        watched = phase("watched", &watch["watched"]),
        drop = f(&watch["throughput_drop"]) * 100.0,
        received = watch["events_received"],
        expected = watch["events_expected"],
        every = if watch["every_watcher_got_every_event"].as_bool() == Some(true) {
            "every watcher got every event"
        } else {
            "**some events were not delivered**"
        },
        eps = f(&watch["events_per_sec"]),
        per = watch["node_bytes_per_watcher"],
        before = mib(&watch["node_rss_before_watchers"]),
        after = mib(&watch["node_rss_with_watchers"]),
        peak = mib(&watch["node_peak_rss"]),
    )
}

/// The scale section from `target/bench-scale.json` (`benches/scale.rs`).
pub fn render_scale(scale: &Value) -> String {
    let Some(engines) = scale.as_array().filter(|a| !a.is_empty()) else {
        return String::new();
    };
    let mut out = String::from(
        "### Scale: snapshots of about 1 GiB, restart with 1M keys\n\n\
         Each step runs once per engine in its own process (`benches/benches/scale.rs`). \
         Throughput is data bytes (keys + values) per second; *heap growth* is the peak of \
         anonymous RSS during the step over its level before; *RSS growth* also counts \
         file pages mapped in (LMDB reads through its memory map).\n\n\
         | engine | step | data | time | throughput | heap growth | RSS growth |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for e in engines {
        let engine = e["engine"].as_str().unwrap_or("?");
        let bytes = e["data_bytes"].as_f64().unwrap_or(0.0);
        let data = format!("{} keys, {}", e["keys"], mib(&e["data_bytes"]));
        let steps = [
            (
                "views load (state machine open)",
                &e["snapshot"]["views_load"],
            ),
            ("snapshot build", &e["snapshot"]["build"]),
            ("snapshot restore (store)", &e["install"]["restore"]),
            (
                "snapshot transfer (into the receiving file)",
                &e["install"]["transfer"],
            ),
            ("snapshot install (state machine)", &e["install"]["install"]),
        ];
        for (name, step) in steps {
            let _ = writeln!(
                out,
                "| {engine} | {name} | {data} | {:.2} s | {} | {} | {} |",
                step["secs"].as_f64().unwrap_or(f64::NAN),
                mb_per_s(bytes, step),
                mib(&step["anon_growth"]),
                mib(&step["rss_growth"]),
            );
        }
        let r = &e["restart"];
        let _ = writeln!(
            out,
            "| {engine} | restart: `meta-node serve` until a linearizable read answers | {} keys | {:.2} s | – | peak RSS {} | – |",
            r["keys"],
            r["serving_secs"].as_f64().unwrap_or(f64::NAN),
            mib(&r["peak_rss"]),
        );
    }
    out + "\n"
}

/// Replaces the generated section of `doc` (or appends one).
pub fn splice(doc: &str, section: &str) -> String {
    splice_between(doc, BEGIN, END, section)
}

/// Replaces what lies between `begin` and `end` (markers included) with
/// `section`, or appends it.
pub fn splice_between(doc: &str, begin: &str, end: &str, section: &str) -> String {
    match (doc.find(begin), doc.find(end)) {
        (Some(b), Some(e)) if e > b => format!(
            "{}{}{}",
            &doc[..b],
            section,
            &doc[e + end.len()..].trim_start_matches('\n')
        ),
        _ => format!("{}\n\n{}", doc.trim_end(), section),
    }
}

/// One bar chart (median time per bench) per group.
pub fn charts(
    results: &[Result],
    dir: &Path,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;
    std::fs::create_dir_all(dir)?;
    let mut groups: BTreeMap<&str, Vec<&Result>> = BTreeMap::new();
    for r in results {
        groups.entry(r.group.as_str()).or_default().push(r);
    }
    for (group, rows) in groups {
        let path = dir.join(format!("{group}.svg"));
        let height = 60 + 28 * rows.len() as u32;
        let root = SVGBackend::new(&path, (720, height)).into_drawing_area();
        root.fill(&WHITE)?;
        let max = rows.iter().map(|r| r.median_ns).fold(0.0, f64::max) * 1.15;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!("{group} (median time per iteration, ns)"),
                ("sans-serif", 16),
            )
            .margin(8)
            .x_label_area_size(24)
            .y_label_area_size(170)
            .build_cartesian_2d(0.0..max, 0..rows.len())?;
        let labels: Vec<String> = rows.iter().map(|r| r.function.clone()).collect();
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows.len())
            .y_label_formatter(&|i| labels.get(*i).cloned().unwrap_or_default())
            .draw()?;
        chart.draw_series(rows.iter().enumerate().map(|(i, r)| {
            Rectangle::new([(0.0, i), (r.median_ns, i + 1)], BLUE.mix(0.6).filled())
        }))?;
        root.present()?;
    }
    Ok(())
}

/// Builds the release `meta-node` the process benches start.
fn build_node(root: &Path) -> std::result::Result<PathBuf, Box<dyn std::error::Error>> {
    let status = crate::cargo()
        .current_dir(root)
        .args([
            "build",
            "--release",
            "-p",
            "meta-node",
            "--bin",
            "meta-node",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        return Err(format!("cargo build --release -p meta-node failed ({status})").into());
    }
    Ok(root.join("target/release/meta-node"))
}

/// The commit, date and machine a run reports.
fn provenance(root: &Path) -> (String, String, String) {
    let commit = Command::new("git")
        .current_dir(root)
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let machine = format!(
        "{} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    (commit, date, machine)
}

/// The etcd comparison (`benches/vs-etcd`): spliced into
/// `docs/benchmarks.md` with its chart.
fn compare_with_etcd(
    root: &Path,
    node: &Path,
    seconds: f64,
) -> std::result::Result<(), Box<dyn std::error::Error>> {
    let report = crate::vs_etcd::measure(root, node, seconds)?;
    let (commit, date, machine) = provenance(root);
    let header = format!(
        "### meta-node and etcd, side by side (`cargo xtask bench --vs etcd`)\n\nDate {date}, commit `{commit}`, {machine}. Generated: do not edit by hand."
    );
    let doc_path = root.join("docs/benchmarks.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap_or_default();
    let section = crate::vs_etcd::render(&report, &header);
    std::fs::write(
        &doc_path,
        splice_between(&doc, crate::vs_etcd::BEGIN, crate::vs_etcd::END, &section),
    )?;
    crate::vs_etcd::chart(&report, &root.join("docs/charts/vs_etcd.svg"))
}

/// Runs everything (or, with `vs`, only that comparison, `seconds` per
/// row); returns the path of the regenerated document.
pub fn run(
    full: bool,
    vs: Option<crate::Versus>,
    seconds: f64,
) -> std::result::Result<PathBuf, Box<dyn std::error::Error>> {
    let root = project_root();
    if vs == Some(crate::Versus::Etcd) {
        if let Some(missing) = crate::vs_etcd::missing_tools() {
            return Err(missing.into());
        }
        eprintln!("comparing with etcd; log in target/vs-etcd.log");
        compare_with_etcd(&root, &build_node(&root)?, seconds)?;
        return Ok(root.join("docs/benchmarks.md"));
    }
    let bar = ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(120));
    bar.set_message("measuring the serial fsync rate");
    let fsync = measure_fsync(
        &root.join("target/bench-probe"),
        Duration::from_secs(if full { 10 } else { 3 }),
    )?;
    bar.set_message(format!(
        "running criterion benches ({}); log in target/bench.log",
        if full { "full" } else { "quick" }
    ));
    let log = std::fs::File::create(root.join("target/bench.log"))?;
    let mut cmd = crate::cargo();
    cmd.current_dir(&root).args(["bench", "-p", "meta-benches"]);
    if !full {
        cmd.args(["--", "--quick"]);
    }
    let latency_dir = root.join("target/bench-latency");
    let scale_path = root.join("target/bench-scale.json");
    let rss_path = root.join("target/bench-node-rss.json");
    let watch_path = root.join("target/bench-watch.json");
    let _ = std::fs::remove_file(&watch_path);
    let _ = std::fs::remove_dir_all(&latency_dir);
    let _ = std::fs::remove_file(&scale_path);
    let _ = std::fs::remove_file(&rss_path);
    let status = cmd
        .env("META_NODE_BIN", build_node(&root)?)
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()?;
    if !status.success() {
        return Err(format!("cargo bench failed ({status}); see target/bench.log").into());
    }
    bar.set_message("writing docs/benchmarks.md and charts");
    let mut results = read_results(&root.join("target/criterion"));
    attach_latencies(&mut results, &latency_dir);
    let read_json = |path: &Path| {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null)
    };
    let extra = render_scale(&read_json(&scale_path))
        + &render_node_rss(&read_json(&rss_path))
        + &render_watch(&read_json(&watch_path));
    let (commit, date, machine) = provenance(&root);
    let header = format!(
        "## Latest `cargo xtask bench{}` run\n\nDate {date}, commit `{commit}`, {machine}. Generated: do not edit by hand.",
        if full { " --full" } else { "" }
    );
    let section = render(&results, &fsync, &header, &extra);
    let doc_path = root.join("docs/benchmarks.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap_or_default();
    std::fs::write(&doc_path, splice(&doc, &section))?;
    charts(&results, &root.join("docs/charts"))?;
    bar.finish_and_clear();
    if full {
        match crate::vs_etcd::missing_tools() {
            None => {
                eprintln!("comparing with etcd; log in target/vs-etcd.log");
                compare_with_etcd(&root, &build_node(&root)?, seconds)?;
            }
            Some(missing) => eprintln!("== NOTE: the etcd comparison is SKIPPED: {missing}"),
        }
    }
    Ok(doc_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(dir: &Path, group: &str, function: &str, median: f64, elements: Option<u64>) {
        let d = dir.join(group).join(function.replace('/', "_")).join("new");
        std::fs::create_dir_all(&d).unwrap();
        let throughput = elements.map_or(Value::Null, |n| serde_json::json!({"Elements": n}));
        let meta = serde_json::json!({"group_id": group, "function_id": function, "throughput": throughput});
        std::fs::write(d.join("benchmark.json"), meta.to_string()).unwrap();
        let est = serde_json::json!({"median": {"point_estimate": median, "confidence_interval": {"lower_bound": median * 0.9, "upper_bound": median * 1.1}}});
        std::fs::write(d.join("estimates.json"), est.to_string()).unwrap();
    }

    #[test]
    fn results_render_with_fsync_multiples_and_splice_in_place() {
        let dir = tempfile::tempdir().unwrap();
        fake(dir.path(), "get", "lmdb/trait", 350.0, None);
        fake(
            dir.path(),
            "node_durable_writes",
            "lmdb/64",
            2_000_000.0,
            Some(64),
        );
        let results = read_results(dir.path());
        assert_eq!(results.len(), 2);
        let fsync = Fsync {
            min: Duration::from_micros(80),
            median: Duration::from_micros(100),
            max: Duration::from_micros(300),
        };
        let section = render(&results, &fsync, "## Latest run", "");
        // 64 writes in 2 ms = 32 k/s; fsync 10 k/s: 3.20x.
        assert!(
            section.contains("| lmdb/64 | 2.00 ms | 1.80 ms – 2.20 ms | 32.0 k/s | 3.20× |"),
            "{section}"
        );
        assert!(section.contains("| lmdb/trait | 350 ns |"), "{section}");
        let doc = splice("# Benchmarks\n\nhand-written", &section);
        assert!(doc.starts_with("# Benchmarks") && doc.contains(BEGIN));
        let again = splice(&doc, &render(&results[..1], &fsync, "## Latest run", ""));
        assert_eq!(again.matches(BEGIN).count(), 1);
        assert!(!again.contains("lmdb/64"));
        charts(&results, &dir.path().join("charts")).unwrap();
        assert!(
            std::fs::read_to_string(dir.path().join("charts/get.svg"))
                .unwrap()
                .contains("<svg")
        );
    }

    #[test]
    fn latencies_become_columns_and_scale_results_a_table() {
        let dir = tempfile::tempdir().unwrap();
        fake(
            dir.path(),
            "http_single_writes",
            "fjall/64",
            2_000_000.0,
            Some(64),
        );
        fake(
            dir.path(),
            "http_single_writes",
            "lmdb/64",
            4_000_000.0,
            Some(64),
        );
        let mut results = read_results(dir.path());
        let latency = dir.path().join("latency");
        std::fs::create_dir_all(&latency).unwrap();
        let summary = serde_json::json!({"group": "http_single_writes", "function": "fjall/64",
            "samples": 10, "p50_ns": 1_500_000, "p99_ns": 4_000_000});
        std::fs::write(latency.join("a.json"), summary.to_string()).unwrap();
        std::fs::write(latency.join("garbage.json"), "not json").unwrap();
        attach_latencies(&mut results, &latency);
        let fsync = Fsync {
            min: Duration::from_micros(100),
            median: Duration::from_micros(100),
            max: Duration::from_micros(100),
        };
        let scale = serde_json::json!([{
            "engine": "lmdb", "keys": 1000, "data_bytes": 2_000_000,
            "snapshot": {"views_load": {"secs": 1.0, "anon_growth": 1048576, "rss_growth": 2097152},
                         "build": {"secs": 0.01, "anon_growth": 0, "rss_growth": null}},
            "install": {"restore": {"secs": 0.02}, "install": {"secs": 0.04}},
            "restart": {"keys": 1000, "serving_secs": 0.5, "peak_rss": 52428800}
        }]);
        let section = render(&results, &fsync, "## run", &render_scale(&scale));
        assert!(
            section.contains(
                "| fjall/64 | 2.00 ms | 1.80 ms – 2.20 ms | 32.0 k/s | 3.20× | 1.50 ms | 4.00 ms |"
            ),
            "{section}"
        );
        assert!(
            section
                .contains("| lmdb/64 | 4.00 ms | 3.60 ms – 4.40 ms | 16.0 k/s | 1.60× | – | – |"),
            "{section}"
        );
        assert!(
            section.contains(
                "| lmdb | snapshot build | 1000 keys, 2 MiB | 0.01 s | 200 MB/s | 0 MiB | – |"
            ),
            "{section}"
        );
        assert!(
            section.contains("| 1000 keys | 0.50 s | – | peak RSS 50 MiB |"),
            "{section}"
        );
        assert_eq!(render_scale(&Value::Null), "");
        assert_eq!(render_watch(&Value::Null), "");
        let watch = serde_json::json!({
            "watchers": 10000, "target_writes_per_sec": 50,
            "alone": {"writes_per_sec": 50.0, "p50_ms": 1.0, "p99_ms": 2.0},
            "watched": {"writes_per_sec": 45.0, "p50_ms": 3.0, "p99_ms": 9.0},
            "throughput_drop": 0.1, "events_received": 4500000, "events_expected": 4500000,
            "every_watcher_got_every_event": true, "events_per_sec": 440000.0,
            "node_bytes_per_watcher": 20480, "node_rss_before_watchers": 50_000_000,
            "node_rss_with_watchers": 250_000_000, "node_peak_rss": 300_000_000
        });
        let section = render_watch(&watch);
        assert!(
            section.contains("10000 watchers") && section.contains("**10.0%**"),
            "{section}"
        );
        assert!(
            section.contains("every watcher got every event") && section.contains("20480 bytes")
        );
        let rss =
            serde_json::json!([{"topology": "single", "engine": "fjall", "peak_rss": 104857600}]);
        assert!(render_node_rss(&rss).contains("| single | fjall | 100 MiB |"));
        assert_eq!(render_node_rss(&Value::Null), "");
    }

    #[test]
    fn the_fsync_probe_measures_something() {
        let dir = tempfile::tempdir().unwrap();
        let f = measure_fsync(dir.path(), Duration::from_millis(50)).unwrap();
        assert!(f.min <= f.median && f.median <= f.max && f.rate() > 0.0);
    }
}
