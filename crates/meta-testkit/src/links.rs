//! Faulty links between real processes: a TCP proxy in front of each
//! node's peer port, advertised to the cluster as that node's Raft address,
//! so every Raft RPC to the node crosses it. The proxy can delay what it
//! forwards and drop connections (the RPCs in flight on them are lost;
//! the sender reconnects), from a seeded generator.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// What the links do to the bytes they carry; shared by all of them.
struct Faults {
    /// Chance, per forwarded chunk, to cut the connection instead (per
    /// mille).
    drop_per_mille: u64,
    /// Each forwarded chunk waits up to this long.
    max_delay_ms: u64,
    rng: crate::Rng,
}

impl Faults {
    fn roll(&mut self) -> (bool, u64) {
        if self.drop_per_mille == 0 && self.max_delay_ms == 0 {
            return (false, 0);
        }
        let drop = self.rng.below(1000) < self.drop_per_mille;
        let delay = self.rng.below(self.max_delay_ms + 1);
        (drop, delay)
    }
}

/// The proxies of one cluster, on their own runtime; stopped on drop.
pub struct Links {
    /// The address each node is reached at (the proxy), by node index.
    pub advertised: Vec<String>,
    faults: Arc<Mutex<Faults>>,
    dropped: Arc<AtomicU64>,
    /// Per node: its link is cut (nothing reaches its peer port).
    cut: Vec<Arc<AtomicBool>>,
    _runtime: tokio::runtime::Runtime,
}

impl Links {
    /// One proxy per target address (a node's real peer port).
    pub fn new(targets: &[String], seed: u64) -> Links {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let faults = Arc::new(Mutex::new(Faults {
            drop_per_mille: 0,
            max_delay_ms: 0,
            rng: crate::Rng::new(seed),
        }));
        let dropped = Arc::new(AtomicU64::new(0));
        let cut: Vec<Arc<AtomicBool>> = targets.iter().map(|_| Arc::default()).collect();
        let advertised = targets
            .iter()
            .zip(&cut)
            .map(|(target, cut)| {
                // A port no node of this process was or will be given.
                let port = super::free_port();
                let listener = runtime
                    .block_on(TcpListener::bind(("127.0.0.1", port)))
                    .unwrap();
                let addr = listener.local_addr().unwrap().to_string();
                runtime.spawn(serve(
                    listener,
                    target.clone(),
                    faults.clone(),
                    dropped.clone(),
                    cut.clone(),
                ));
                addr
            })
            .collect();
        Links {
            advertised,
            faults,
            dropped,
            cut,
            _runtime: runtime,
        }
    }

    /// Cuts (`true`) or restores node `i`'s link: while cut, every
    /// connection to its peer port is closed (a partition of that node
    /// from the leader's replication).
    pub fn cut(&self, i: usize, cut: bool) {
        self.cut[i].store(cut, Ordering::Relaxed);
    }

    /// From now on, each forwarded chunk cuts its connection with
    /// probability `drop_per_mille`/1000 and is delayed up to
    /// `max_delay_ms`; `(0, 0)` heals.
    pub fn set(&self, drop_per_mille: u64, max_delay_ms: u64) {
        let mut faults = self.faults.lock().unwrap();
        faults.drop_per_mille = drop_per_mille;
        faults.max_delay_ms = max_delay_ms;
    }

    /// Connections cut so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

async fn serve(
    listener: TcpListener,
    target: String,
    faults: Arc<Mutex<Faults>>,
    dropped: Arc<AtomicU64>,
    cut: Arc<AtomicBool>,
) {
    while let Ok((inbound, _)) = listener.accept().await {
        if cut.load(Ordering::Relaxed) {
            continue;
        }
        let (target, faults, dropped, cut) =
            (target.clone(), faults.clone(), dropped.clone(), cut.clone());
        tokio::spawn(async move {
            // A node that is down refuses: so does its link.
            let Ok(outbound) = TcpStream::connect(&target).await else {
                return;
            };
            // As the nodes' own sockets: Nagle's wait behind a delayed ACK
            // would add 40 ms to every RPC.
            let _ = inbound.set_nodelay(true);
            let _ = outbound.set_nodelay(true);
            let (from_client, to_client) = inbound.into_split();
            let (from_node, to_node) = outbound.into_split();
            // Either direction ending (or cut) closes both.
            tokio::select! {
                () = pump(from_client, to_node, &faults, &dropped) => {}
                () = pump(from_node, to_client, &faults, &dropped) => {}
                () = async {
                    while !cut.load(Ordering::Relaxed) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                } => {}
            }
        });
    }
}

async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    faults: &Mutex<Faults>,
    dropped: &AtomicU64,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let (drop, delay) = faults.lock().unwrap().roll();
        if drop {
            dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
