//! Hostile connections against a real process: a slowloris from one
//! address cannot take the node from other clients, and peer frames that
//! are oversized or trickled cost bounded memory and are cut off.

use crate::common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Dirs, Http, Proc};
use reqwest::{Method, StatusCode};

/// The `q`-quantile of `samples`.
fn quantile(samples: &mut [Duration], q: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * q) as usize]
}

/// `n` writes one after another from 127.0.0.1; their latencies.
fn write_latencies(
    rt: &tokio::runtime::Runtime,
    http: &Http,
    api: &str,
    n: usize,
) -> Vec<Duration> {
    (0..n)
        .map(|i| {
            let started = Instant::now();
            let response = rt
                .block_on(http.send(Method::PUT, api, &format!("/v1/kv/w{i}"), Some("v".into())))
                .unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            started.elapsed()
        })
        .collect()
}

/// A TCP connection from `source` (another loopback address) to `to`.
fn connect_from(source: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&format!("{source}:0").parse::<SocketAddr>().unwrap().into())?;
    socket.connect_timeout(&to.into(), Duration::from_secs(2))?;
    Ok(socket.into())
}

/// Whether the server closed `conn` (a read returns end of file or an
/// error at once).
fn closed_by_server(mut conn: &TcpStream) -> bool {
    conn.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut byte = [0u8; 1];
    match conn.read(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// A plain-HTTP node on loopback with `config`; its API and peer addresses.
fn start(dirs: &Dirs, config: &str) -> (Proc, String, String) {
    let api = format!("127.0.0.1:{}", common::free_port());
    let raft = format!("127.0.0.1:{}", common::free_port());
    let node = Proc::start_plain_configured("lmdb", &dirs.node("n1"), &api, &raft, config);
    (node, api, raft)
}

#[test]
fn a_slowloris_from_one_address_leaves_other_clients_unaffected() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let (_node, api, _) = start(
        &dirs,
        "[limits]\nheader_timeout_secs = 3\nmax_connections_per_address = 128\n",
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let http = Http::new(Duration::from_secs(10));
    let mut before = write_latencies(&rt, &http, &api, 200);
    let p99_before = quantile(&mut before, 0.99);

    // 500 connections from 127.0.0.2, each sending its headers a byte
    // every second for 20 s.
    let target: SocketAddr = api.parse().unwrap();
    let attack_started = Instant::now();
    let mut attackers: Vec<TcpStream> = (0..500)
        .filter_map(|_| {
            let mut conn = connect_from("127.0.0.2", target).ok()?;
            conn.write_all(b"PUT /v1/kv/slow HTTP/1.1\r\nHost: x\r\n")
                .ok()?;
            Some(conn)
        })
        .collect();
    assert!(!attackers.is_empty(), "the attack could not even connect");
    std::thread::sleep(Duration::from_millis(300));
    let refused_at_once = attackers.iter().filter(|c| closed_by_server(c)).count();
    let attack = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            for conn in &mut attackers {
                let _ = conn.write_all(b"X");
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        attackers.iter().filter(|c| closed_by_server(c)).count()
    });
    let mut during = write_latencies(&rt, &http, &api, 200);
    let p99_during = quantile(&mut during, 0.99);
    let closed = attack.join().unwrap();
    eprintln!(
        "slowloris: p99 {p99_before:?} before, {p99_during:?} during; {refused_at_once} of 500 \
         refused at once (per-address limit), {closed} closed after {:?}",
        attack_started.elapsed()
    );
    assert!(
        refused_at_once >= 500 - 128,
        "the per-address limit admitted {} connections",
        500 - refused_at_once
    );
    assert_eq!(closed, 500, "every trickling connection was cut off");
    assert!(
        p99_during <= p99_before * 2 + Duration::from_millis(25),
        "other clients' p99 went from {p99_before:?} to {p99_during:?}"
    );
}

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace()
        .nth(1)
        .unwrap()
        .parse::<u64>()
        .unwrap()
        * 1024
}

/// On an `insecure` node (plaintext peers: anyone can reach the peer
/// port), frames that claim 8 MiB and then trickle hold only what they
/// sent and are cut off at their deadline; a frame over the limit is
/// refused at once.
#[test]
fn oversized_and_trickled_peer_frames_cost_bounded_memory_and_are_cut_off() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let (node, api, raft) = start(&dirs, "insecure = true\n");
    let pid = node.pid().unwrap();
    let before = rss(pid);
    let target: SocketAddr = raft.parse().unwrap();
    let frame_start = |claimed: u32, sent: usize| {
        let mut conn = TcpStream::connect(target).unwrap();
        conn.write_all(b"MRP3").unwrap();
        conn.write_all(&claimed.to_be_bytes()).unwrap();
        conn.write_all(&vec![0u8; sent]).unwrap();
        conn
    };
    let oversized = frame_start(65 << 20, 0);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        closed_by_server(&oversized),
        "a 65 MiB frame is refused at once"
    );
    let started = Instant::now();
    let trickled: Vec<TcpStream> = (0..16).map(|_| frame_start(8 << 20, 1 << 20)).collect();
    std::thread::sleep(Duration::from_secs(2));
    let grown = rss(pid).saturating_sub(before);
    assert!(
        grown < 64 << 20,
        "16 trickled frames of 1 MiB sent grew RSS by {} MB",
        grown >> 20
    );
    // Cut off at their deadline (5 s + 2 s for 8 MiB), long before the
    // idle deadline.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        for conn in &trickled {
            let _ = (&*conn).write_all(b"x");
        }
        if trickled.iter().all(closed_by_server) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "trickled frames still open after 20 s"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "peer frames: RSS +{} MB for 16 trickled frames, all cut after {:?}",
        grown >> 20,
        started.elapsed()
    );
    // The node still serves.
    assert!(common::cli(&api, &["kv", "put", "a", "1"]).status.success());
}

/// A body trickled after its headers is answered `408` at its deadline.
#[test]
fn a_trickled_body_gets_a_408_at_its_deadline() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let (_node, api, _) = start(&dirs, "[limits]\nbody_timeout_secs = 2\n");
    let token = common::token(&api).unwrap();
    let mut conn = TcpStream::connect(&api).unwrap();
    let started = Instant::now();
    write!(
        conn,
        "PUT /v1/kv/slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nContent-Length: 1000\r\n\r\n0123456789"
    )
    .unwrap();
    conn.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut answer = Vec::new();
    while started.elapsed() < Duration::from_secs(10) {
        let _ = conn.write_all(b"x");
        let mut buf = [0u8; 4096];
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Err(_) => {}
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // Clients are told when an idle kept-alive connection will be closed
    // (the header deadline, 10 s by default).
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("keep-alive: timeout=9"),
        "{answer}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
