//! A node keeps serving, quietly and cheaply, while a peer is down — with
//! real processes and the binary's default logging.

use crate::common;

use std::time::{Duration, Instant};

use common::{Dirs, Http, ProcCluster, cli_ok, converged_hash, wait_until};

/// CPU time (user + system) the process has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at 3.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    let per_second = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(100);
    Duration::from_millis(ticks * 1000 / per_second)
}

fn log_lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Writes `<prefix>/<n>` to the node at `api`, 10 a second, for `secs`; each
/// must be acknowledged. How many, and how long it took.
fn write_for(api: &str, prefix: &str, secs: Duration) -> (usize, Duration) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = Http::new(Duration::from_secs(5));
    let start = Instant::now();
    let mut written = 0;
    while start.elapsed() < secs {
        let answer = rt
            .block_on(http.send(
                reqwest::Method::PUT,
                api,
                &format!("/v1/kv/{prefix}/{written}"),
                Some("v".into()),
            ))
            .unwrap();
        assert!(answer.status().is_success(), "{}", answer.status());
        written += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    (written, start.elapsed())
}

#[test]
fn a_down_follower_costs_the_leader_a_few_log_lines_and_little_cpu() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let mut cluster = ProcCluster::new(&dirs, &["lmdb", "fjall", "lmdb"]);
    cluster.default_logs = true;
    let mut nodes = cluster.form();
    let apis = cluster.apis();
    let leader = wait_leader(&apis[0]);
    let follower = (0..3).find(|&i| i as u64 + 1 != leader).unwrap();
    let leader_i = leader as usize - 1;
    cli_ok(&apis[leader_i], &["kv", "put", "before", "1"]);

    nodes[follower].kill();
    let leader_pid = nodes[leader_i].pid().unwrap();
    let (lines_before, cpu_before) = (log_lines(&nodes[leader_i].log).len(), cpu_time(leader_pid));
    // 10 s of writes, 10 a second, all acknowledged by the two others.
    let (written, elapsed) = write_for(&apis[leader_i], "during", Duration::from_secs(10));
    let cpu = cpu_time(leader_pid) - cpu_before;
    let lines = log_lines(&nodes[leader_i].log);
    let added = &lines[lines_before..];
    assert!(
        added.len() < 50,
        "the leader wrote {} log lines in 10 s with a follower down:\n{}",
        added.len(),
        added.join("\n")
    );
    let unreachable = lines
        .iter()
        .filter(|l| {
            l.contains(&format!("peer node {} at", follower + 1)) && l.contains("is unreachable")
        })
        .count();
    assert_eq!(
        unreachable,
        1,
        "one line says the peer went away:\n{}",
        added.join("\n")
    );
    let share = cpu.as_secs_f64() / elapsed.as_secs_f64();
    assert!(
        share < 0.2,
        "the leader used {:.0}% of a core ({cpu:?} in {elapsed:?}) for {written} writes with a follower down",
        share * 100.0
    );
    eprintln!(
        "degraded: leader wrote {} log lines and used {:.1}% of a core over {elapsed:.1?} ({written} writes)",
        added.len(),
        share * 100.0
    );

    // It comes back, catches up, and that is said once too.
    nodes[follower] = cluster.start(follower);
    let all: Vec<&common::Proc> = nodes.iter().collect();
    converged_hash(&all);
    wait_until(10, "the leader to log the peer's return", || {
        log_lines(&nodes[leader_i].log).iter().any(|l| {
            l.contains(&format!("peer node {} at", follower + 1)) && l.contains("reachable again")
        })
    });
}

/// A follower cut off from the leader for 30 s (its peer port unreachable
/// through the links) costs the leader a few log lines and little CPU;
/// once the link is back it catches up and holds what the others hold.
#[test]
fn a_follower_partitioned_for_30_s_costs_the_leader_little_and_catches_up() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let mut cluster = ProcCluster::with_links(&dirs, &["lmdb", "fjall", "lmdb"], 7);
    cluster.default_logs = true;
    let nodes = cluster.form();
    let apis = cluster.apis();
    let leader = wait_leader(&apis[0]);
    let follower = (0..3).find(|&i| i as u64 + 1 != leader).unwrap();
    let leader_i = leader as usize - 1;
    cli_ok(&apis[leader_i], &["kv", "put", "before", "1"]);
    let links = cluster.links.as_ref().unwrap();
    let leader_pid = nodes[leader_i].pid().unwrap();
    let (lines_before, cpu_before) = (log_lines(&nodes[leader_i].log).len(), cpu_time(leader_pid));
    links.cut(follower, true);
    let (written, elapsed) = write_for(&apis[leader_i], "partitioned", Duration::from_secs(30));
    let cpu = cpu_time(leader_pid) - cpu_before;
    let added = log_lines(&nodes[leader_i].log)[lines_before..].to_vec();
    assert!(
        added.len() < 50,
        "the leader wrote {} log lines in 30 s with a follower partitioned:\n{}",
        added.len(),
        added.join("\n")
    );
    let share = cpu.as_secs_f64() / elapsed.as_secs_f64();
    assert!(
        share < 0.2,
        "the leader used {:.0}% of a core ({cpu:?} in {elapsed:?}) with a follower partitioned",
        share * 100.0
    );
    links.cut(follower, false);
    let all: Vec<&common::Proc> = nodes.iter().collect();
    converged_hash(&all);
    let listed = cli_ok(
        &apis[follower],
        &["kv", "list", "partitioned/", "--limit", "100000"],
    );
    assert_eq!(listed["items"].as_array().unwrap().len(), written);
    eprintln!(
        "partition: leader wrote {} log lines and used {:.1}% of a core over {elapsed:.1?} \
         ({written} writes); the follower caught up",
        added.len(),
        share * 100.0
    );
}

fn wait_leader(api: &str) -> u64 {
    let mut leader = None;
    wait_until(20, "a leader", || {
        leader = cli_ok(api, &["cluster", "status"])["leader"].as_u64();
        leader.is_some()
    });
    leader.unwrap()
}

#[test]
fn idle_and_surplus_connections_cannot_stop_a_node_short_of_descriptors() {
    use std::io::{Read, Write};
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let (api, raft) = (common::free_port(), common::free_port());
    let (api, raft) = (format!("127.0.0.1:{api}"), format!("127.0.0.1:{raft}"));
    let dir = dirs.node("n1");
    let log = dirs.node("n1.log");
    // 256 descriptors in all: room for about 85 clients beside the stores.
    let mut child = std::process::Command::new("prlimit")
        .args([
            "--nofile=256:256",
            common::binary().to_str().unwrap(),
            "serve",
            "--listen",
            &api,
            "--raft-listen",
            &raft,
        ])
        .args([
            "--snapshot-every",
            "50",
            "--idle-timeout-secs",
            "2",
            "--request-timeout-secs",
            "1",
            "--data-dir",
        ])
        .arg(&dir)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let url = format!("http://{api}");
    let token = dir.join("root.token");
    let client = |args: &[&str]| {
        let mut all = vec!["--addr", &url, "--token-file", common::arg(&token)];
        all.extend_from_slice(args);
        common::bin(&all)
    };
    wait_until(20, "the node to answer", || {
        client(&["health"]).status.success()
    });

    // 300 connections that send nothing, or half a request, and stall.
    let mut idle: Vec<std::net::TcpStream> = (0..300)
        .filter_map(|i| {
            let mut c = std::net::TcpStream::connect(&api).ok()?;
            if i % 2 == 0 {
                let _ = c.write_all(b"GET /v1/kv/x HTTP/1.1\r\nHost: x\r\n");
            }
            Some(c)
        })
        .collect();
    // The surplus was closed at once, the rest once idle for 2 s: every one
    // of them reads end-of-stream (or a reset) within a few seconds.
    for c in &mut idle {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 64];
        match c.read(&mut buf) {
            Ok(0) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                panic!("a stalled connection is still open after 10 s")
            }
            Err(_) => {} // reset: closed too
            Ok(n) => panic!("a stalled connection got {n} bytes: {:?}", &buf[..n]),
        }
    }
    // The node serves, builds a snapshot (60 writes, one every 50 entries),
    // and is still there.
    for i in 0..60 {
        let out = client(&["kv", "put", &format!("k{i}"), "v"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let status = client(&["--json", "cluster", "status"]);
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert!(status["snapshot_index"].as_u64().is_some(), "{status}");
    assert!(child.try_wait().unwrap().is_none(), "the node exited");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("client API connections at their limit"),
        "{text}"
    );
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn requests_without_a_quorum_get_an_answer_instead_of_hanging() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let cluster = ProcCluster::new(&dirs, &["lmdb", "fjall", "lmdb"]);
    let mut nodes = cluster.form();
    let apis = cluster.apis();
    let leader = wait_leader(&apis[0]) as usize - 1;
    cli_ok(&apis[leader], &["kv", "put", "before", "1"]);
    for (i, node) in nodes.iter_mut().enumerate() {
        if i != leader {
            node.kill();
        }
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = Http::new(Duration::from_secs(60));
    for (method, path, body, code) in [
        (
            reqwest::Method::PUT,
            "/v1/kv/lonely",
            Some("1".to_string()),
            "outcome_unknown",
        ),
        (reqwest::Method::GET, "/v1/kv/before", None, "unavailable"),
    ] {
        let start = Instant::now();
        let answer = rt
            .block_on(http.send(method.clone(), &apis[leader], path, body))
            .unwrap();
        let took = start.elapsed();
        assert_eq!(answer.status().as_u16(), 503, "{method} {path}");
        let body: serde_json::Value = rt.block_on(answer.json()).unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
        // The default deadline is 5 s; generous for a loaded machine.
        assert!(
            took < Duration::from_secs(20),
            "{method} {path} took {took:?}"
        );
    }
}
