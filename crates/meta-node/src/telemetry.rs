//! What a node tells its operator: Prometheus metrics (`GET /metrics`) and
//! the log lines of Raft events (leader and membership changes, snapshots,
//! purges).
//!
//! Every metric is listed once, in [`METRICS`], with its kind and meaning:
//! the recorder describes them from it (`# HELP`), `docs/operations.md`
//! documents them and the Grafana dashboard in `docs/` uses them, and tests
//! check both against this list. Counters and histograms live in one
//! recorder for the node's life; gauges are read at each scrape into a
//! fresh one, so a follower that went away, or a leader that stopped
//! leading, leaves no stale series behind. The output is sorted by name
//! and labels: two scrapes list the same series in the same order.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use meta_raft::Instruments;
use meta_raft::types::Raft;
use metrics::{Key, Label, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusRecorder};

/// The kind of a metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// A value read at the scrape.
    Gauge,
    /// A distribution, in buckets.
    Histogram,
}

/// Every metric a node exports: name, kind, labels and meaning.
pub const METRICS: &[(&str, Kind, &str, &str)] = &[
    (
        "meta_http_requests_total",
        Kind::Counter,
        "route, method, status",
        "HTTP requests answered, by route template (`unmatched` for none), method and status",
    ),
    (
        "meta_http_request_duration_seconds",
        Kind::Histogram,
        "route, method",
        "Time to answer an HTTP request (to the response head: a watch counts until its stream starts)",
    ),
    (
        "meta_auth_failures_total",
        Kind::Counter,
        "reason",
        "Requests refused by authentication (`unauthenticated`, 401) or authorization (`forbidden`, 403)",
    ),
    (
        "meta_proposals_total",
        Kind::Counter,
        "",
        "Commands proposed to Raft through group commit on this node",
    ),
    (
        "meta_proposal_batch_commands",
        Kind::Histogram,
        "",
        "Commands per log entry written by group commit",
    ),
    (
        "meta_read_index_batch_reads",
        Kind::Histogram,
        "",
        "Linearizable reads served by one leadership confirmation (read-index batching)",
    ),
    (
        "meta_log_append_duration_seconds",
        Kind::Histogram,
        "",
        "Time of one durable append to the Raft log, fsync included",
    ),
    (
        "meta_apply_duration_seconds",
        Kind::Histogram,
        "",
        "Time to apply one batch of committed entries to the state machine, store write included",
    ),
    (
        "meta_snapshot_build_duration_seconds",
        Kind::Histogram,
        "",
        "Time to build a Raft snapshot (its count is the number of snapshots built)",
    ),
    (
        "meta_snapshot_build_bytes_total",
        Kind::Counter,
        "",
        "Bytes of Raft snapshots built",
    ),
    (
        "meta_snapshot_build_failures_total",
        Kind::Counter,
        "",
        "Snapshot builds that failed or found too little disk room; the node goes on and keeps its log",
    ),
    (
        "meta_snapshot_install_duration_seconds",
        Kind::Histogram,
        "",
        "Time to install a snapshot sent by the leader (its count is the number installed)",
    ),
    (
        "meta_snapshot_install_bytes_total",
        Kind::Counter,
        "",
        "Bytes of snapshots installed",
    ),
    (
        "meta_raft_leader_changes_total",
        Kind::Counter,
        "",
        "Times this node saw the leader change (a new leader, or none) since it started",
    ),
    (
        "meta_node_info",
        Kind::Gauge,
        "node_id, version, log_engine, state_engine",
        "Always 1: this node's id, build and engines",
    ),
    ("meta_raft_term", Kind::Gauge, "", "The current Raft term"),
    (
        "meta_raft_is_leader",
        Kind::Gauge,
        "",
        "1 if this node leads, else 0",
    ),
    (
        "meta_raft_leader_id",
        Kind::Gauge,
        "",
        "The id of the leader this node knows, 0 for none",
    ),
    (
        "meta_raft_last_log_index",
        Kind::Gauge,
        "",
        "Index of the last entry in this node's log",
    ),
    (
        "meta_raft_applied_index",
        Kind::Gauge,
        "",
        "Index of the last entry applied to the state machine (openraft 0.9 does not export the commit index; applied follows it)",
    ),
    (
        "meta_raft_snapshot_index",
        Kind::Gauge,
        "",
        "Index the last snapshot covers",
    ),
    (
        "meta_raft_purged_index",
        Kind::Gauge,
        "",
        "Index up to which the log was purged",
    ),
    (
        "meta_raft_voters",
        Kind::Gauge,
        "",
        "Voters in the membership this node knows",
    ),
    (
        "meta_raft_learners",
        Kind::Gauge,
        "",
        "Learners in the membership this node knows",
    ),
    (
        "meta_raft_quorum_ack_age_seconds",
        Kind::Gauge,
        "",
        "On the leader: time since a quorum last acknowledged it",
    ),
    (
        "meta_raft_follower_matched_index",
        Kind::Gauge,
        "follower",
        "On the leader: the last log index known to be on each other member",
    ),
    (
        "meta_raft_follower_lag_entries",
        Kind::Gauge,
        "follower",
        "On the leader: entries each other member is behind the leader's log",
    ),
    (
        "meta_raft_follower_reachable",
        Kind::Gauge,
        "follower",
        "On the leader: 1 if the member answered recently, else 0",
    ),
    (
        "meta_store_disk_bytes",
        Kind::Gauge,
        "store, engine",
        "Disk space the store's files take (`store` is `log` or `state`; one series when both are one store)",
    ),
    (
        "meta_data_bytes",
        Kind::Gauge,
        "",
        "Logical size of the metadata (what `limits.quota_bytes` limits)",
    ),
    (
        "meta_quota_bytes",
        Kind::Gauge,
        "",
        "The configured `limits.quota_bytes`",
    ),
    (
        "meta_revision",
        Kind::Gauge,
        "",
        "The store's revision (the same on every replica once applied)",
    ),
    ("meta_keys", Kind::Gauge, "", "User keys stored"),
    (
        "meta_cluster_nodes",
        Kind::Gauge,
        "state",
        "Nodes in the cluster map, by state",
    ),
    (
        "meta_alarms_active",
        Kind::Gauge,
        "",
        "Alarms raised and not cleared (see `cluster alarms`)",
    ),
    ("meta_watchers", Kind::Gauge, "", "Open watch streams"),
    ("meta_leases", Kind::Gauge, "", "Live leases"),
];

/// Buckets of the duration histograms, in seconds.
const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];
/// Buckets of the group-commit batch size.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

fn builder() -> PrometheusBuilder {
    let builder = PrometheusBuilder::new();
    let builder = match builder.set_buckets(DURATION_BUCKETS) {
        Ok(b) => b,
        Err(_) => unreachable!("the duration buckets are not empty"),
    };
    let mut builder = builder;
    for batch in [
        "meta_proposal_batch_commands",
        "meta_read_index_batch_reads",
    ] {
        builder = match builder.set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(batch.into()),
            BATCH_BUCKETS,
        ) {
            Ok(b) => b,
            Err(_) => unreachable!("the batch buckets are not empty"),
        };
    }
    builder
}

/// Describes the metrics of `kinds` to `recorder` (the `# HELP` lines).
fn describe(recorder: &PrometheusRecorder, kinds: &[Kind]) {
    for &(name, kind, _, help) in METRICS {
        if !kinds.contains(&kind) {
            continue;
        }
        let help = SharedString::from(help);
        let unit = None::<Unit>;
        match kind {
            Kind::Counter => recorder.describe_counter(name.into(), unit, help),
            Kind::Gauge => recorder.describe_gauge(name.into(), unit, help),
            Kind::Histogram => recorder.describe_histogram(name.into(), unit, help),
        }
    }
}

static METADATA: Metadata<'static> =
    Metadata::new(module_path!(), metrics::Level::INFO, Some(module_path!()));

fn key(name: &'static str, labels: &[(&'static str, String)]) -> Key {
    debug_assert!(
        METRICS.iter().any(|(n, ..)| *n == name),
        "{name} is not in METRICS"
    );
    Key::from_parts(
        name,
        labels
            .iter()
            .map(|(k, v)| Label::new(*k, v.clone()))
            .collect::<Vec<_>>(),
    )
}

/// A node's metrics: the recorder of its counters and histograms, and the
/// handles the Raft layer records into.
pub struct Telemetry {
    recorder: PrometheusRecorder,
    /// Handed to the log store, the state machine and the proposer.
    pub raft: Instruments,
    /// Reads per read-index confirmation.
    pub read_batch: metrics::Histogram,
    leader_changes: metrics::Counter,
    /// `meta_auth_failures_total` by reason: unauthenticated, forbidden.
    auth_failures: [metrics::Counter; 2],
    /// The request series of each matched route, registered at its first
    /// request (the routes, methods and statuses are the server's own, so
    /// this stays small).
    requests: std::sync::Mutex<HashMap<String, RouteSeries>>,
}

/// One route's request series.
#[derive(Default)]
struct RouteSeries {
    /// `meta_http_requests_total` by method and status.
    counts: HashMap<(&'static str, u16), metrics::Counter>,
    /// `meta_http_request_duration_seconds` by method.
    durations: HashMap<&'static str, metrics::Histogram>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Telemetry {
    /// A node's metrics, nothing recorded yet. Needs a tokio runtime: a
    /// task folds recorded samples into the histograms every 5 seconds (so
    /// an unscraped node does not keep them all).
    pub fn start() -> Arc<Telemetry> {
        let recorder = builder().build_recorder();
        describe(&recorder, &[Kind::Counter, Kind::Histogram]);
        let counter = |name| recorder.register_counter(&key(name, &[]), &METADATA);
        let histogram = |name| recorder.register_histogram(&key(name, &[]), &METADATA);
        let raft = Instruments {
            log_append_seconds: histogram("meta_log_append_duration_seconds"),
            apply_seconds: histogram("meta_apply_duration_seconds"),
            proposal_batch_commands: histogram("meta_proposal_batch_commands"),
            proposals: counter("meta_proposals_total"),
            snapshot_build_seconds: histogram("meta_snapshot_build_duration_seconds"),
            snapshot_build_bytes: counter("meta_snapshot_build_bytes_total"),
            snapshot_build_failures: counter("meta_snapshot_build_failures_total"),
            snapshot_install_seconds: histogram("meta_snapshot_install_duration_seconds"),
            snapshot_install_bytes: counter("meta_snapshot_install_bytes_total"),
        };
        let leader_changes = counter("meta_raft_leader_changes_total");
        let read_batch = histogram("meta_read_index_batch_reads");
        // Present from the start, at 0: a dashboard finds every series.
        let auth_failures = ["unauthenticated", "forbidden"].map(|reason| {
            recorder.register_counter(
                &key("meta_auth_failures_total", &[("reason", reason.into())]),
                &METADATA,
            )
        });
        let telemetry = Arc::new(Telemetry {
            recorder,
            raft,
            read_batch,
            leader_changes,
            auth_failures,
            requests: Default::default(),
        });
        let upkeep = Arc::downgrade(&telemetry);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                match upkeep.upgrade() {
                    Some(t) => t.recorder.handle().run_upkeep(),
                    None => return,
                }
            }
        });
        telemetry
    }

    /// Records one answered HTTP request.
    pub fn request(&self, route: &str, method: &'static str, status: u16, took: Duration) {
        {
            let mut requests = self
                .requests
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !requests.contains_key(route) {
                requests.insert(route.to_owned(), RouteSeries::default());
            }
            if let Some(series) = requests.get_mut(route) {
                let labels = |status: Option<u16>| {
                    let mut labels = vec![("route", route.to_owned()), ("method", method.into())];
                    labels.extend(status.map(|s| ("status", s.to_string())));
                    labels
                };
                series
                    .counts
                    .entry((method, status))
                    .or_insert_with(|| {
                        let key = key("meta_http_requests_total", &labels(Some(status)));
                        self.recorder.register_counter(&key, &METADATA)
                    })
                    .increment(1);
                series
                    .durations
                    .entry(method)
                    .or_insert_with(|| {
                        let key = key("meta_http_request_duration_seconds", &labels(None));
                        self.recorder.register_histogram(&key, &METADATA)
                    })
                    .record(took.as_secs_f64());
            }
        }
        match status {
            401 => self.auth_failures[0].increment(1),
            403 => self.auth_failures[1].increment(1),
            _ => {}
        }
    }

    /// The Prometheus text of every metric: the recorded ones and
    /// `gauges`, read now, sorted.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut text = self.recorder.handle().render();
        text.push('\n');
        text.push_str(&gauges.recorder.handle().render());
        sorted(&text)
    }
}

/// The gauges of one scrape, in a recorder of their own.
pub struct Gauges {
    recorder: PrometheusRecorder,
}

impl Default for Gauges {
    fn default() -> Gauges {
        let recorder = PrometheusBuilder::new().build_recorder();
        describe(&recorder, &[Kind::Gauge]);
        Gauges { recorder }
    }
}

impl Gauges {
    /// Sets gauge `name` with `labels` to `value`.
    pub fn set(&self, name: &'static str, labels: &[(&'static str, String)], value: f64) {
        self.recorder
            .register_gauge(&key(name, labels), &METADATA)
            .set(value);
    }
}

/// `text` (the exporter's families, separated by blank lines) with the
/// families sorted by name and each family's samples sorted (a histogram's
/// samples keep their order, which is the buckets').
fn sorted(text: &str) -> String {
    let mut families: Vec<(String, Vec<&str>)> = Vec::new();
    for block in text.split("\n\n") {
        let lines: Vec<&str> = block.lines().filter(|l| !l.trim().is_empty()).collect();
        let Some(name) = lines.iter().find_map(|l| {
            l.strip_prefix("# TYPE ")
                .and_then(|rest| rest.split_whitespace().next())
        }) else {
            continue;
        };
        families.push((name.to_owned(), lines));
    }
    families.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::new();
    for (_, mut lines) in families {
        let head = lines.iter().take_while(|l| l.starts_with('#')).count();
        let histogram = lines[..head].iter().any(|l| l.ends_with(" histogram"));
        if !histogram {
            lines[head..].sort_unstable();
        } else {
            // Series by labels (without `le`), each series' lines in order.
            let mut series: Vec<(String, Vec<&str>)> = Vec::new();
            for line in &lines[head..] {
                let id = series_id(line);
                match series.iter_mut().find(|(s, _)| *s == id) {
                    Some((_, l)) => l.push(line),
                    None => series.push((id, vec![line])),
                }
            }
            series.sort_by(|a, b| a.0.cmp(&b.0));
            lines.truncate(head);
            lines.extend(series.into_iter().flat_map(|(_, l)| l));
        }
        for line in lines {
            out.push_str(line);
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

/// A histogram sample's labels without `le` (its series).
fn series_id(line: &str) -> String {
    let Some(open) = line.find('{') else {
        return String::new();
    };
    let close = line.rfind('}').unwrap_or(line.len());
    line[open + 1..close]
        .split(',')
        .filter(|l| !l.starts_with("le="))
        .collect::<Vec<_>>()
        .join(",")
}

/// Records every request's route, method, status and duration.
pub async fn observe(State(t): State<Arc<Telemetry>>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().cloned();
    // Only the methods the API knows, so a client cannot make labels.
    let method = match *req.method() {
        axum::http::Method::GET => "GET",
        axum::http::Method::PUT => "PUT",
        axum::http::Method::POST => "POST",
        axum::http::Method::DELETE => "DELETE",
        axum::http::Method::HEAD => "HEAD",
        _ => "other",
    };
    let started = Instant::now();
    let response = next.run(req).await;
    t.request(
        route.as_ref().map_or("unmatched", MatchedPath::as_str),
        method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Logs the Raft events an operator needs, once each, with their facts
/// (and counts leader changes), until `raft` shuts down.
pub async fn log_raft_events(raft: Raft, telemetry: Arc<Telemetry>) {
    // Woken when the server metrics change (vote, role, leader,
    // membership) or the core ends, and once a second for snapshots and
    // purges: Raft's full metrics change several times per write, and a
    // task woken by each of them cost every write its wake-ups.
    let mut server = raft.server_metrics();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seen = raft.metrics().borrow().clone();
    let me = seen.id;
    // What a restarted node remembers may be out of date: said as such.
    if let Some(leader) = seen.current_leader.filter(|l| *l != me) {
        tracing::info!(
            leader,
            term = seen.current_term,
            "node {leader} led term {} when this node last heard; waiting to hear from the leader",
            seen.current_term
        );
    }
    let mut running = true;
    while running {
        running = tokio::select! {
            changed = server.changed() => changed.is_ok(),
            _ = tick.tick() => true,
        };
        let mut now = raft.metrics().borrow().clone();
        // Leader, term, role and membership as the server metrics that
        // woke this task say: openraft sends the full metrics after them,
        // so these may not show the change yet.
        {
            let server = server.borrow_and_update();
            now.current_leader = server.current_leader;
            now.current_term = server.vote.leader_id().get_term();
            now.vote = server.vote;
            now.state = server.state;
            now.membership_config = server.membership_config.clone();
        }
        if now.current_leader != seen.current_leader {
            telemetry.leader_changes.increment(1);
            match now.current_leader {
                Some(leader) if leader == me => tracing::info!(
                    leader,
                    term = now.current_term,
                    "this node leads now (term {}, last log index {})",
                    now.current_term,
                    now.last_log_index.unwrap_or(0)
                ),
                Some(leader) => tracing::info!(
                    leader,
                    term = now.current_term,
                    "node {leader} leads now (term {})",
                    now.current_term
                ),
                None => tracing::warn!(
                    term = now.current_term,
                    previous = seen.current_leader,
                    "no leader known (term {}); an election is due",
                    now.current_term
                ),
            }
        }
        let (was, is) = (&seen.membership_config, &now.membership_config);
        if was.log_id() != is.log_id() {
            let m = is.membership();
            let voters: Vec<u64> = m.voter_ids().collect();
            let learners: Vec<u64> = m.learner_ids().collect();
            tracing::info!(
                index = is.log_id().map(|l| l.index),
                "membership changed at log index {}: voters {voters:?}, learners {learners:?}{}",
                is.log_id().map_or(0, |l| l.index),
                if m.get_joint_config().len() > 1 {
                    " (joint: the change is in progress)"
                } else {
                    ""
                }
            );
            if m.get_node(&me).is_none() && was.membership().get_node(&me).is_some() {
                tracing::warn!(
                    "this node is no longer a member of the cluster; it takes no part in it \
                     until it is added back (stop it, or wipe its data directory first)"
                );
            }
        }
        if now.snapshot != seen.snapshot
            && let Some(at) = now.snapshot
        {
            tracing::info!(
                index = at.index,
                term = at.leader_id.term,
                "snapshot at log index {}",
                at.index
            );
        }
        if now.purged != seen.purged
            && let Some(at) = now.purged
        {
            tracing::debug!(index = at.index, "log purged up to index {}", at.index);
        }
        if let (Ok(()), Err(fatal)) = (&seen.running_state, &now.running_state) {
            tracing::error!("Raft stopped: {fatal}");
        }
        seen = now;
    }
}

/// Waits until `raft`'s core stops and says why: a fatal error (a failed
/// log or state-machine write, a full disk, a panic in the core) or a
/// shutdown. Woken by the server metrics only (see [`log_raft_events`]);
/// their channel closes when the core ends, after its last full metrics
/// said why.
pub async fn raft_stopped(raft: &Raft) -> String {
    let mut server = raft.server_metrics();
    loop {
        if let Err(fatal) = &raft.metrics().borrow().running_state {
            return fatal.to_string();
        }
        if server.changed().await.is_err() {
            break;
        }
    }
    match &raft.metrics().borrow().running_state {
        Err(fatal) => fatal.to_string(),
        Ok(()) => "the Raft core stopped without reporting why".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_samples_come_out_sorted() {
        let text = "# TYPE b gauge\nb{x=\"2\"} 1\nb{x=\"1\"} 2\n\n# HELP a help\n# TYPE a counter\na 3\n\n\
                    # TYPE h histogram\nh_bucket{r=\"z\",le=\"1\"} 0\nh_bucket{r=\"z\",le=\"+Inf\"} 0\nh_sum{r=\"z\"} 0\n\
                    h_bucket{r=\"a\",le=\"1\"} 1\nh_bucket{r=\"a\",le=\"+Inf\"} 1\nh_sum{r=\"a\"} 1\n\n";
        assert_eq!(
            sorted(text),
            "# HELP a help\n# TYPE a counter\na 3\n\n# TYPE b gauge\nb{x=\"1\"} 2\nb{x=\"2\"} 1\n\n\
             # TYPE h histogram\nh_bucket{r=\"a\",le=\"1\"} 1\nh_bucket{r=\"a\",le=\"+Inf\"} 1\nh_sum{r=\"a\"} 1\n\
             h_bucket{r=\"z\",le=\"1\"} 0\nh_bucket{r=\"z\",le=\"+Inf\"} 0\nh_sum{r=\"z\"} 0\n\n"
        );
    }

    /// The metric names a PromQL expression refers to (a histogram's
    /// series by the histogram's name).
    fn referenced(expr: &str) -> Vec<String> {
        let mut names = Vec::new();
        let bytes = expr.as_bytes();
        let mut i = 0;
        while let Some(at) = expr[i..].find("meta_") {
            let start = i + at;
            let word_start = start == 0
                || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
            let end = expr[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(expr.len(), |e| start + e);
            if word_start {
                let name = &expr[start..end];
                let histogram = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .filter(|base| {
                        METRICS
                            .iter()
                            .any(|m| m.0 == *base && m.1 == Kind::Histogram)
                    });
                names.push(histogram.unwrap_or(name).to_owned());
            }
            i = end;
        }
        names
    }

    #[test]
    fn the_grafana_dashboard_uses_exactly_the_exported_metrics() {
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../../docs/grafana-dashboard.json")).unwrap();
        let mut used = std::collections::BTreeSet::new();
        for panel in dashboard["panels"].as_array().unwrap() {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                for name in referenced(expr) {
                    assert!(
                        METRICS.iter().any(|m| m.0 == name),
                        "the dashboard's `{expr}` uses `{name}`, which a node does not export"
                    );
                    used.insert(name);
                }
            }
        }
        for (name, ..) in METRICS {
            assert!(used.contains(*name), "no dashboard panel shows `{name}`");
        }
        assert_eq!(
            referenced("rate(meta_apply_duration_seconds_bucket[5m]) / xmeta_keys"),
            ["meta_apply_duration_seconds"]
        );
    }

    #[test]
    fn every_metric_is_named_once_and_documented() {
        let docs = include_str!("../../../docs/operations.md");
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.0).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), METRICS.len(), "a metric is listed twice");
        for (name, ..) in METRICS {
            assert!(
                docs.contains(&format!("`{name}`")),
                "docs/operations.md does not document `{name}`"
            );
        }
    }
}
