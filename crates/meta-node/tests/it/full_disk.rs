//! A full disk, for real: the node's data directory is a small tmpfs, so
//! its engine meets `ENOSPC` from the kernel. Checked per disk engine: the
//! write that did not fit gets a clear error naming the cause, the node
//! stops (fail-stop: it exits rather than serve on a store it cannot
//! write) saying why, nothing acknowledged is lost, and once space is back
//! the restarted node serves everything and takes writes again.
//!
//! Mounting needs root (or `CAP_SYS_ADMIN`). Where `mount` is refused the
//! tests fail, saying why, unless `META_TEST_NO_MOUNT=1` opts them out
//! (then each says it checked nothing). Injected write errors that run
//! everywhere are in `meta-raft`'s `tests/failpoints.rs`
//! (`a_write_error_at_every_failpoint_…`).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Dirs, Proc, ProcCluster, Rng, cli, cli_ok, converged_hash, metric};

/// The disk is let fill for real: the free-space watermark (which would
/// raise the space alarm first, see `space_alarm.rs`) is off.
const NO_WATERMARK: &str = "[limits]\nmin_free_disk_bytes = 0\n";

/// A tmpfs mounted on a directory; unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. `"16m"`) on `dir`, or says why not.
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            // A node's data directory is its own (0700), not a shared,
            // sticky 1777 like a default tmpfs root.
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }

    /// Space back: grows the mounted filesystem to `size`.
    fn grow(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.0)
            .status()
            .unwrap();
        assert!(status.success(), "remounting {}", self.0.display());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A 12 MiB tmpfs on `dir`; where mounting is refused, a failure — or,
/// with `META_TEST_NO_MOUNT=1`, `None` and a line saying `what` checked
/// nothing.
fn mount_or_opt_out(dir: &Path, what: &str) -> Option<Tmpfs> {
    match Tmpfs::mount(dir, "12m") {
        Ok(tmpfs) => Some(tmpfs),
        Err(why) if std::env::var_os("META_TEST_NO_MOUNT").is_some_and(|v| v == "1") => {
            // Straight to stderr: `cargo test` captures `eprintln!` of a
            // passing test, and a skip must be seen.
            use std::io::Write as _;
            let _ = writeln!(
                std::io::stderr(),
                "{what}: SKIPPED (META_TEST_NO_MOUNT=1): cannot mount a tmpfs here: {why}"
            );
            None
        }
        Err(why) => panic!(
            "{what}: cannot mount a tmpfs here ({why}); run as root (or with CAP_SYS_ADMIN), \
             or set META_TEST_NO_MOUNT=1 to skip the full-disk tests"
        ),
    }
}

/// A one-node test's place: a data directory on a fresh 12 MiB tmpfs and
/// two free addresses. Fields drop in order: the mount goes before the
/// directories that hold it (which are kept if the test fails).
struct OnTmpfs {
    tmpfs: Tmpfs,
    dir: PathBuf,
    api: String,
    raft: String,
    _dirs: Dirs,
}

/// [`OnTmpfs`] for the test `what`, or `None` where mounting is opted out
/// (see [`mount_or_opt_out`]).
fn on_tmpfs(what: &str) -> Option<OnTmpfs> {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let dir = dirs.node("n1");
    let tmpfs = mount_or_opt_out(&dir, what)?;
    Some(OnTmpfs {
        tmpfs,
        dir,
        api: common::free_addr(),
        raft: common::free_addr(),
        _dirs: dirs,
    })
}

/// Waits up to `secs` for the node's process to exit by itself.
fn exits_within(node: &mut Proc, secs: u64) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if let Some(status) = node.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

/// A printable value LZ4 cannot shrink (snapshots are compressed): the
/// snapshot spill files then fill the disk as fast as the stores do, so
/// whichever write meets `ENOSPC` first must say so.
fn incompressible(len: usize) -> String {
    incompressible_seeded(len, 0x9E37_79B9_7F4A_7C15)
}

/// [`incompressible`], one of many: values of different seeds share
/// nothing LZ4 could find either.
fn incompressible_seeded(len: usize, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    (0..len)
        .map(|_| char::from(alphabet[rng.below(64) as usize]))
        .collect()
}

/// The node's log ends with its reason for stopping: a full disk.
fn assert_stopped_on_full_disk(node: &Proc) {
    let log = std::fs::read_to_string(&node.log).unwrap();
    let last_words = &log[log.len().saturating_sub(3_000)..];
    assert!(
        last_words.contains("error: Raft stopped:")
            && last_words.contains("storage is full: the disk holding"),
        "node {}'s last words say why it stopped: {last_words}",
        node.id
    );
}

fn full_disk_campaign(engine: &str) {
    let Some(OnTmpfs {
        tmpfs,
        dir,
        api,
        raft,
        _dirs,
    }) = on_tmpfs(&format!("full_disk/{engine}"))
    else {
        return;
    };
    let mut node = Proc::start_configured(1, engine, &dir, true, &api, &raft, NO_WATERMARK);
    let value = incompressible(32 * 1024);
    let mut acked = Vec::new();
    let mut refusal = None;
    for i in 0..2_000 {
        let key = format!("full/{i:05}");
        let out = cli(&api, &["kv", "put", &key, &value]);
        if out.status.success() {
            acked.push(key);
        } else {
            refusal = Some(format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ));
            break;
        }
    }
    let refusal = refusal.expect("12 MiB cannot hold 64 MiB of values");
    assert!(
        acked.len() > 10,
        "only {} writes fit: {refusal}",
        acked.len()
    );
    // An answer from the node names the cause and the directory. (A
    // background write, a snapshot build, may meet the full disk first:
    // then the node is already exiting, the request fails at the transport
    // — refused, reset or cut — and its last words, checked below, say why.)
    let answered = refusal.contains("(HTTP ");
    let names_cause = refusal.contains("storage is full: the disk holding")
        && refusal.contains(&dir.display().to_string());
    assert!(
        names_cause || !answered,
        "the refusal names the cause and the directory: {refusal}"
    );
    // Fail-stop: the node exits, and its last words say why and where.
    let status = exits_within(&mut node, 30).expect("the node exits once its disk is full");
    assert!(!status.success(), "{status}");
    assert_stopped_on_full_disk(&node);

    // Space back: the node restarts on its data, everything acknowledged
    // is there, and it takes writes again.
    tmpfs.grow("256m");
    let node = Proc::start_configured(1, engine, &dir, true, &api, &raft, NO_WATERMARK);
    for key in &acked {
        let out = cli(&api, &["kv", "get", key]);
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&value[..64]),
            "acknowledged {key} lost after the disk filled: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    cli_ok(&api, &["kv", "put", "after/space", "back"]);
    eprintln!(
        "full_disk/{engine}: {} writes acknowledged before ENOSPC, all present after restart; refusal: {}",
        acked.len(),
        refusal.lines().next().unwrap_or_default()
    );
    drop(node);
}

#[test]
fn lmdb_full_disk_is_a_clear_error_and_recovers_once_space_is_back() {
    full_disk_campaign("lmdb");
}

#[test]
fn fjall_full_disk_is_a_clear_error_and_recovers_once_space_is_back() {
    full_disk_campaign("fjall");
}

/// With the free-space watermark on (4 MiB of a 12 MiB disk), the node
/// raises the space alarm before its disk fills: writes get `507` while the
/// node keeps serving reads, and once the disk has room again the alarm
/// clears by itself and writes go on. Nothing acknowledged is lost.
fn watermark_campaign(engine: &str) {
    let Some(OnTmpfs {
        tmpfs,
        dir,
        api,
        raft,
        _dirs,
    }) = on_tmpfs(&format!("watermark/{engine}"))
    else {
        return;
    };
    // The watch history doubles what each write puts on disk; keeping one
    // revision of it keeps this filesystem's arithmetic that of the data
    // (docs/operations.md: size the watermark with the history in mind).
    // A snapshot every 20 entries while the disk fills: builds may meet a
    // disk with less room than a snapshot takes (up to 8 MiB of data, 4 MiB
    // kept free) and must not stop the node (see the next test).
    let config = "[raft]\nsnapshot_every = 20\n[limits]\nmin_free_disk_bytes = 4194304\n\
                  [watch]\nhistory_revisions = 1\n";
    let mut node = Proc::start_configured(1, engine, &dir, true, &api, &raft, config);
    let value = incompressible(32 * 1024);
    let mut acked = Vec::new();
    let refusal = loop {
        let key = format!("w/{:05}", acked.len());
        let out = cli(&api, &["kv", "put", &key, &value]);
        if out.status.success() {
            acked.push(key);
        } else {
            break String::from_utf8_lossy(&out.stderr).into_owned();
        }
        assert!(acked.len() < 2_000, "12 MiB cannot hold 64 MiB of values");
    };
    assert!(
        refusal.contains("quota_exceeded") && refusal.contains("Disk alarm of node 1"),
        "refused by the alarm, not by a full disk: {refusal}"
    );
    // Still serving: nothing stopped, though snapshot builds did not fit.
    std::thread::sleep(Duration::from_secs(2));
    assert!(node.try_wait().is_none(), "the node is still running");
    let failed_builds = metric(&api, "meta_snapshot_build_failures_total").unwrap();
    cli_ok(&api, &["health"]);
    cli_ok(&api, &["kv", "get", &acked[0]]);
    // Room again: the alarm clears, writes go on.
    tmpfs.grow("256m");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cli(&api, &["kv", "put", "after/room", "ok"])
        .status
        .success()
    {
        assert!(Instant::now() < deadline, "the alarm never cleared");
        std::thread::sleep(Duration::from_millis(200));
    }
    for key in &acked {
        assert!(
            cli(&api, &["kv", "get", key]).status.success(),
            "{key} lost"
        );
    }
    eprintln!(
        "watermark/{engine}: {} writes acknowledged, then refused with 507 before the disk filled; \
         {failed_builds} snapshot builds skipped or failed, the node went on",
        acked.len()
    );
}

#[test]
fn lmdb_the_disk_watermark_stops_new_data_before_the_disk_is_full() {
    watermark_campaign("lmdb");
}

#[test]
fn fjall_the_disk_watermark_stops_new_data_before_the_disk_is_full() {
    watermark_campaign("fjall");
}

/// A snapshot build that would not leave room for the Raft log stops
/// nothing: the disk is filled from outside (no watermark, so no alarm)
/// until less than a snapshot is free; the node skips its builds, counts
/// them, serves everything and takes small writes; once room is back it
/// builds again.
fn snapshot_without_room_campaign(engine: &str) {
    let Some(OnTmpfs {
        tmpfs: _tmpfs,
        dir,
        api,
        raft,
        _dirs,
    }) = on_tmpfs(&format!("snapshot_room/{engine}"))
    else {
        return;
    };
    let config = format!("[raft]\nsnapshot_every = 20\n{NO_WATERMARK}");
    let mut node = Proc::start_configured(1, engine, &dir, true, &api, &raft, &config);
    let built = |api: &str| metric(api, "meta_snapshot_build_duration_seconds_count").unwrap();
    let failed = |api: &str| metric(api, "meta_snapshot_build_failures_total").unwrap();
    // About 2 MiB that no compression shrinks, snapshotted along the way.
    let values: Vec<String> = (0..64)
        .map(|i| incompressible_seeded(32 * 1024, i + 1))
        .collect();
    for (i, value) in values.iter().enumerate() {
        cli_ok(&api, &["kv", "put", &format!("big/{i:02}"), value]);
    }
    common::wait_until(10, "a snapshot of the data", || built(&api) >= 2.0);
    let average = metric(&api, "meta_snapshot_build_bytes_total").unwrap() / built(&api);
    assert_eq!(failed(&api), 0.0, "builds failed on an empty disk");

    // Less free than one snapshot (the last is at least the average: the
    // data only grew), so less than the two the build asks for.
    let free = meta_store_api::disk::available_bytes(&dir).unwrap();
    let keep = (average as u64).max(512 << 10);
    let filler = dir.join("filler");
    {
        use std::io::Write as _;
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0x5a_u8; 64 << 10];
        let mut left = free.saturating_sub(keep);
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            file.write_all(&chunk[..n]).unwrap();
            left -= n as u64;
        }
        file.sync_all().unwrap();
    }
    let skipped_before = failed(&api);
    for i in 0..30 {
        cli_ok(&api, &["kv", "put", &format!("small/{i:02}"), "x"]);
    }
    common::wait_until(10, "a build skipped for lack of room", || {
        failed(&api) > skipped_before
    });
    assert!(node.try_wait().is_none(), "the node is still running");
    for (i, value) in values.iter().enumerate() {
        let out = cli_ok(&api, &["kv", "get", &format!("big/{i:02}")]);
        assert!(out.to_string().contains(&value[..64]), "big/{i:02} lost");
    }
    let log = std::fs::read_to_string(&node.log).unwrap();
    assert!(
        log.contains("snapshot not built") && log.contains("not enough room for a snapshot"),
        "the node says why it built no snapshot"
    );

    // Room again: within the retry delay and a few writes, it builds.
    std::fs::remove_file(&filler).unwrap();
    let built_before = built(&api);
    let mut next = 0;
    common::wait_until(30, "a snapshot once room is back", || {
        next += 1;
        cli_ok(&api, &["kv", "put", &format!("after/{next:03}"), "y"]);
        built(&api) > built_before
    });
    eprintln!(
        "snapshot_room/{engine}: snapshots of about {average:.0} bytes; with {keep} bytes free \
         {} builds were skipped and the node went on; it built again once room was back",
        failed(&api)
    );
}

#[test]
fn lmdb_a_snapshot_without_room_stops_nothing_and_resumes_with_room() {
    snapshot_without_room_campaign("lmdb");
}

#[test]
fn fjall_a_snapshot_without_room_stops_nothing_and_resumes_with_room() {
    snapshot_without_room_campaign("fjall");
}

/// In a 3-node cluster only node 2's disk fills: it stops, the other two
/// go on taking writes (electing a new leader if node 2 led), and once
/// its disk has room node 2 restarts, catches up and holds exactly what
/// they hold, every acknowledged write included.
#[test]
fn a_cluster_goes_on_when_one_disk_fills_and_that_node_catches_up_once_space_is_back() {
    let dirs = Dirs(Some(tempfile::tempdir().unwrap()));
    let mut cluster = ProcCluster::new(&dirs, &["lmdb", "fjall", "lmdb"]);
    cluster.config = Some(NO_WATERMARK.into());
    let full = 1;
    let Some(tmpfs) = mount_or_opt_out(&cluster.dir(full), "full_disk/cluster") else {
        return;
    };
    let mut nodes = cluster.form();
    let value = incompressible(16 * 1024);
    let (mut acked, mut after_stop, mut stopped) = (Vec::new(), 0, false);
    for i in 0..5_000 {
        // Through the nodes that keep their disks (followers redirect).
        let api = &cluster.addrs[if i % 2 == 0 { 0 } else { 2 }].0;
        let key = format!("full/{i:05}");
        if cli(api, &["kv", "put", &key, &value]).status.success() {
            acked.push(key);
            after_stop += u32::from(stopped);
        } else {
            // An election, most likely: retry shortly.
            std::thread::sleep(Duration::from_millis(100));
        }
        stopped = stopped || nodes[full].try_wait().is_some();
        if after_stop == 50 {
            break;
        }
    }
    assert!(
        stopped,
        "node 2 never filled its disk ({} writes)",
        acked.len()
    );
    assert_eq!(after_stop, 50, "the other two stopped taking writes");
    assert_stopped_on_full_disk(&nodes[full]);

    tmpfs.grow("256m");
    nodes[full] = cluster.start(full);
    converged_hash(&nodes.iter().collect::<Vec<_>>());
    // Every acknowledged write is there (and so on node 2: same hash).
    for key in &acked {
        cli_ok(&cluster.addrs[0].0, &["kv", "get", key]);
    }
    eprintln!(
        "full_disk/cluster: node 2 stopped on ENOSPC; {} writes acknowledged, 50 of them after it stopped; it caught up once space was back",
        acked.len()
    );
}
