//! The peer transport: Raft RPCs between nodes over TCP, inside mutually
//! authenticated TLS (plaintext only with `insecure = true`).
//!
//! **Who may speak.** A connection needs a client certificate from the
//! cluster CA ([`crate::tls`]); every request must come from the node its
//! certificate names (the vote's node id), and carry this node's cluster
//! id ([`crate::identity`]). Anything else closes the connection, changes
//! nothing, and is logged. The dialing side checks that the peer's
//! certificate names the node it meant to reach.
//!
//! Framing: every message is `[length: u32 BE][postcard payload]`, at most
//! [`MAX_FRAME`] bytes; a connection starts with the 4-byte magic
//! [`MAGIC`] from the client. Payloads are `(cluster id, request id,
//! request)` and `(request id, response)`: one request, one response, in order, on a
//! connection that is kept open and reused; an answer with the wrong id, a
//! failed, timed-out or cancelled call drops the connection and the next
//! call reconnects. An AppendEntries over [`MAX_APPEND_BYTES`] is sent in
//! smaller pieces. Snapshots travel as
//! openraft's chunked `InstallSnapshot` RPCs, so no message exceeds one
//! chunk. Garbage on the wire closes that connection, never the node.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use meta_raft::types::{NodeAddr, Raft, TypeConfig};
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::identity::{ClusterId, Identity};

/// The bytes a client sends first on a new connection (inside TLS).
pub const MAGIC: [u8; 4] = *b"MRP3";
/// How long a new connection may take to finish its TLS handshake and
/// send the magic.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// An AppendEntries larger than this (encoded) is split: the sender asks
/// openraft to retry with fewer entries (`PayloadTooLarge`), so one message
/// never carries a whole backlog and always fits its timeout.
pub const MAX_APPEND_BYTES: usize = 4 << 20;
/// The largest frame accepted (snapshot chunks are 3 MiB by default).
pub const MAX_FRAME: usize = 64 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A peer stream: TLS over TCP, or plain TCP when insecure.
trait PeerIo: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> PeerIo for T {}
type Stream = Box<dyn PeerIo>;

/// TLS settings of the peer transport (both directions).
#[derive(Clone)]
pub struct PeerTls {
    /// Dialing peers: trusts the cluster CA, presents this node's
    /// certificate.
    pub client: Arc<rustls::ClientConfig>,
    /// Accepting peers: requires a client certificate from the cluster CA.
    pub server: Arc<rustls::ServerConfig>,
}

/// How the peer transport authenticates: TLS (or none when insecure) and
/// the node's identity (its cluster id travels with every request).
#[derive(Clone)]
pub struct PeerSecurity {
    /// `None`: plaintext, no peer authentication (`insecure = true`).
    pub tls: Option<PeerTls>,
    /// This node's identity.
    pub identity: Arc<Identity>,
}
/// A Raft RPC.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Log replication and heartbeats.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Elections.
    Vote(VoteRequest<u64>),
    /// One chunk of a snapshot.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
    /// A node tells the leader its disk went under (`Some`: raise this
    /// alarm) or back over (`None`: clear it) its free-space watermark.
    /// Accepted only for the sender's own disk.
    DiskAlarm {
        /// The sender, proven by its certificate.
        node: u64,
        /// The alarm to raise, or `None` to clear the sender's.
        raise: Option<meta_raft::Alarm>,
    },
    /// The leader hands leadership to the receiver (a leader transfer):
    /// start an election now. Taken only from the leader the receiver
    /// knows, in its term, by a voter.
    TimeoutNow {
        /// The sender, proven by its certificate.
        node: u64,
        /// The sender's term.
        term: u64,
    },
    /// A node tells the leader what it runs on (for `cluster status` and
    /// the dashboard).
    NodeInfo {
        /// The sender, proven by its certificate.
        node: u64,
        /// Its engines, as `cluster status` shows them.
        engine: String,
    },
    /// A follower asks the leader for a read index, to serve linearizable
    /// reads itself (see [`crate::read_index`]).
    ReadIndex {
        /// The sender, proven by its certificate.
        node: u64,
    },
}

/// The answer to a [`PeerRequest`].
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerResponse {
    /// To `AppendEntries`.
    AppendEntries(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    /// To `Vote`.
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    /// To `InstallSnapshot`.
    InstallSnapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    /// To `DiskAlarm`: proposed and applied, or why not.
    DiskAlarm(Result<(), String>),
    /// To `TimeoutNow`: the election started, or why not.
    TimeoutNow(Result<(), String>),
    /// To `NodeInfo`.
    NodeInfo(Result<(), String>),
    /// To `ReadIndex`: the index to apply before reading, or why not.
    ReadIndex(Result<crate::read_index::Index, crate::read_index::ReadError>),
}

async fn write_frame<S: AsyncWrite + Unpin + ?Sized>(
    stream: &mut S,
    payload: &[u8],
) -> std::io::Result<()> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l as usize <= MAX_FRAME)
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "frame of {} bytes is over the limit",
                payload.len()
            ))
        })?;
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(payload).await?;
    stream.flush().await
}

/// Bytes of incoming peer frames held at once, over every connection of
/// the peer port: past it, reading a frame waits for memory to be given
/// back (a frame's bytes are counted as they arrive).
pub const FRAME_MEMORY: usize = 256 << 20;
/// An incoming frame must arrive whole within this, plus a second per
/// 4 MiB of it, once its length is read: a trickled frame is cut off.
pub const FRAME_TIME_BASE: Duration = Duration::from_secs(5);

/// The memory budget incoming frames share (permits of 1 KiB).
#[derive(Clone)]
pub struct FrameBudget(Arc<tokio::sync::Semaphore>);

impl FrameBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> FrameBudget {
        FrameBudget(Arc::new(tokio::sync::Semaphore::new(bytes.div_ceil(1024))))
    }
}

impl Default for FrameBudget {
    fn default() -> FrameBudget {
        FrameBudget::new(FRAME_MEMORY)
    }
}

/// Reads one frame. With a `budget` (the server side): its bytes are
/// counted against it as they arrive (the permit returned gives them back
/// when dropped) and the whole frame must arrive within its deadline.
async fn read_frame<S: AsyncRead + Unpin + ?Sized>(
    stream: &mut S,
    budget: Option<&FrameBudget>,
) -> std::io::Result<(Vec<u8>, Option<tokio::sync::OwnedSemaphorePermit>)> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the {MAX_FRAME}-byte limit"),
        ));
    }
    let within = FRAME_TIME_BASE + Duration::from_secs((len >> 22) as u64);
    let read = async {
        // Grown as the bytes arrive, not allocated up front from a length
        // a peer only claims (a trickled frame holds what it sent, no more).
        let mut payload = Vec::with_capacity(len.min(64 * 1024));
        let mut held: Option<tokio::sync::OwnedSemaphorePermit> = None;
        while payload.len() < len {
            let chunk = (len - payload.len()).min(64 * 1024);
            if let Some(budget) = budget {
                let permit = budget
                    .0
                    .clone()
                    .acquire_many_owned(chunk.div_ceil(1024) as u32)
                    .await
                    .map_err(std::io::Error::other)?;
                match held.as_mut() {
                    Some(held) => held.merge(permit),
                    None => held = Some(permit),
                }
            }
            let got = (&mut *stream)
                .take(chunk as u64)
                .read_to_end(&mut payload)
                .await?;
            if got == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("frame of {len} bytes cut after {}", payload.len()),
                ));
            }
        }
        Ok((payload, held))
    };
    if budget.is_none() {
        return read.await;
    }
    tokio::time::timeout(within, read).await.map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("a frame of {len} bytes did not arrive within {within:?}"),
        )
    })?
}

/// Decodes one request frame's payload: the sender's cluster id, a request
/// id and the RPC. Bytes from the network: anything malformed is an
/// `InvalidData` error (the connection is closed), never a panic.
pub fn decode_request(frame: &[u8]) -> std::io::Result<(ClusterId, u64, PeerRequest)> {
    postcard::from_bytes(frame).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("undecodable request: {e}"),
        )
    })
}

/// What the peer port serves requests with.
#[derive(Clone)]
pub struct PeerServices {
    /// Raft's RPCs, alarms, leader transfer.
    pub raft: Raft,
    /// Where a peer's reported engine is kept.
    pub contacts: PeerContacts,
    /// Read indexes for followers' reads.
    pub reads: crate::read_index::ReadIndex,
}

/// Serves peers' RPCs on `listener` until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    services: PeerServices,
    security: PeerSecurity,
    budget: Arc<crate::conn::Budget>,
) {
    let acceptor = security
        .tls
        .as_ref()
        .map(|tls| tokio_rustls::TlsAcceptor::from(tls.server.clone()));
    let identity = security.identity;
    let frames = FrameBudget::default();
    loop {
        let (tcp, peer) = budget.accept(&listener).await;
        let (services, acceptor, identity) = (services.clone(), acceptor.clone(), identity.clone());
        let frames = frames.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_connection(tcp, peer, acceptor, identity, frames, services).await
            {
                // Authenticated peers that break the rules are worth a
                // warning; strangers failing the handshake are noise.
                if e.kind() == std::io::ErrorKind::PermissionDenied {
                    tracing::warn!("peer connection from {peer} refused: {e}");
                } else {
                    tracing::debug!("peer connection from {peer} closed: {e}");
                }
            }
        });
    }
}

fn refused(message: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::PermissionDenied, message)
}

/// The node a peer's certificate chain proves to be (its leaf certificate).
fn proven_node(certs: Option<&[CertificateDer<'_>]>) -> Option<u64> {
    crate::tls::cert_node_id(certs?.first()?)
}

/// The node a request claims to come from (the vote's node id).
fn claimed_sender(request: &PeerRequest) -> Option<u64> {
    match request {
        PeerRequest::AppendEntries(rpc) => rpc.vote.leader_id.voted_for(),
        PeerRequest::Vote(rpc) => rpc.vote.leader_id.voted_for(),
        PeerRequest::InstallSnapshot(rpc) => rpc.vote.leader_id.voted_for(),
        PeerRequest::DiskAlarm { node, .. }
        | PeerRequest::TimeoutNow { node, .. }
        | PeerRequest::NodeInfo { node, .. }
        | PeerRequest::ReadIndex { node } => Some(*node),
    }
}

/// Whether `node` is a voter or learner of the membership `raft` knows.
fn is_member(raft: &Raft, node: u64) -> bool {
    raft.metrics()
        .borrow()
        .membership_config
        .membership()
        .get_node(&node)
        .is_some()
}

/// Whether `raft` knows no membership yet (a node waiting for `cluster
/// init` or for its first leader).
pub(crate) fn in_no_cluster(raft: &Raft) -> bool {
    raft.metrics()
        .borrow()
        .membership_config
        .membership()
        .nodes()
        .next()
        .is_none()
}

/// Starts an election on this node because its leader `node` asked in
/// `term` (a leader transfer), if this node is a voter that knows `node` as
/// its leader in that term.
async fn timeout_now(raft: &Raft, node: u64, term: u64) -> Result<(), String> {
    let (leader, current, voter, me) = {
        let m = raft.metrics();
        let m = m.borrow();
        (
            m.current_leader,
            m.current_term,
            m.membership_config
                .membership()
                .voter_ids()
                .any(|v| v == m.id),
            m.id,
        )
    };
    if leader != Some(node) || current != term {
        return Err(format!(
            "node {me} knows {} as the leader in term {current}, not node {node} in term {term}",
            leader.map_or("no node".into(), |l| format!("node {l}"))
        ));
    }
    if !voter {
        return Err(format!("node {me} is not a voter"));
    }
    tracing::info!("node {node} hands leadership over in term {term}: starting an election");
    raft.trigger().elect().await.map_err(|e| e.to_string())
}

/// Proposes a node's disk alarm (or its clearing) on the leader: only for
/// a member of the cluster, only for its own disk, with a short detail.
async fn disk_alarm(raft: &Raft, node: u64, raise: Option<meta_raft::Alarm>) -> Result<(), String> {
    if !is_member(raft, node) {
        return Err(format!("node {node} is not a member of this cluster"));
    }
    let command = match raise {
        Some(alarm)
            if alarm.kind == meta_raft::AlarmKind::Disk
                && alarm.node == node
                && alarm.detail.len() <= meta_raft::MAX_ALARM_DETAIL =>
        {
            meta_raft::Command::RaiseAlarm(alarm)
        }
        Some(_) => {
            return Err(format!(
                "a node may only raise the disk alarm of its own disk, with a detail of at most \
                 {} bytes",
                meta_raft::MAX_ALARM_DETAIL
            ));
        }
        None => meta_raft::Command::ClearAlarm {
            kind: Some(meta_raft::AlarmKind::Disk),
            node: Some(node),
        },
    };
    let envelope = meta_raft::Envelope::checked(&command).map_err(|e| e.to_string())?;
    raft.client_write(envelope)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn serve_connection(
    tcp: crate::conn::Guarded<TcpStream>,
    peer: SocketAddr,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    identity: Arc<Identity>,
    frames: FrameBudget,
    services: PeerServices,
) -> std::io::Result<()> {
    let PeerServices {
        raft,
        contacts,
        reads,
    } = services;
    let timed_out = |what: &str| {
        std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no {what} from {peer} within {HANDSHAKE_TIMEOUT:?}"),
        )
    };
    // With TLS: the one node the client certificate proves to be.
    let (mut stream, proven): (Stream, Option<u64>) = match acceptor {
        Some(acceptor) => {
            let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
                .await
                .map_err(|_| timed_out("TLS handshake"))??;
            let proven = proven_node(tls.get_ref().1.peer_certificates())
                .ok_or_else(|| refused("its certificate does not name exactly one node".into()))?;
            (Box::new(tls), Some(proven))
        }
        None => (Box::new(tcp), None),
    };
    let mut magic = [0u8; 4];
    tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.read_exact(&mut magic))
        .await
        .map_err(|_| timed_out("magic"))??;
    if magic != MAGIC {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a meta-node peer (bad magic)",
        ));
    }
    loop {
        let (frame, _held) = match read_frame(&mut stream, Some(&frames)).await {
            Ok(frame) => frame,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        let (cluster, id, request) = decode_request(&frame)?;
        // Who sends it first, then which cluster: nothing a refused message
        // carries is kept.
        let claimed = claimed_sender(&request);
        if let Some(proven) = proven
            && claimed != Some(proven)
        {
            return Err(refused(format!(
                "a message claiming to come from node {claimed:?} on a connection whose certificate does not name that node (it names node {proven})"
            )));
        }
        // A node without a cluster id takes it from a leader's message
        // (never from a vote), and only while it knows no membership yet:
        // its first leader's. (Not `is_initialized`: a granted vote counts
        // there, and a node's first contact with its cluster is often the
        // founder's vote request.)
        let from_leader = matches!(
            request,
            PeerRequest::AppendEntries(_) | PeerRequest::InstallSnapshot(_)
        );
        let adopt = from_leader && identity.cluster().is_none() && in_no_cluster(&raft);
        identity
            .admit(cluster, adopt)
            .map_err(|e| refused(e.to_string()))?;
        let response = match request {
            PeerRequest::AppendEntries(rpc) => {
                PeerResponse::AppendEntries(raft.append_entries(rpc).await)
            }
            PeerRequest::Vote(rpc) => PeerResponse::Vote(raft.vote(rpc).await),
            PeerRequest::InstallSnapshot(rpc) => {
                PeerResponse::InstallSnapshot(raft.install_snapshot(rpc).await)
            }
            PeerRequest::DiskAlarm { node, raise } => {
                PeerResponse::DiskAlarm(disk_alarm(&raft, node, raise).await)
            }
            PeerRequest::TimeoutNow { node, term } => {
                PeerResponse::TimeoutNow(timeout_now(&raft, node, term).await)
            }
            PeerRequest::NodeInfo { node, engine } => {
                PeerResponse::NodeInfo(if is_member(&raft, node) {
                    contacts.set_engine(node, engine)
                } else {
                    Err(format!("node {node} is not a member of this cluster"))
                })
            }
            PeerRequest::ReadIndex { node } => PeerResponse::ReadIndex(if is_member(&raft, node) {
                reads.leader_index().await
            } else {
                Err(crate::read_index::ReadError::Failed(format!(
                    "node {node} is not a member of this cluster"
                )))
            }),
        };
        let bytes = postcard::to_stdvec(&(id, response)).map_err(std::io::Error::other)?;
        write_frame(&mut stream, &bytes).await?;
    }
}

/// A reusable connection to one peer.
struct PeerClient {
    addr: String,
    /// The node it is, which its certificate must name.
    target: u64,
    tls: Option<tokio_rustls::TlsConnector>,
    conn: tokio::sync::Mutex<Option<Stream>>,
    next_id: std::sync::atomic::AtomicU64,
    reachability: Reachability,
}

impl PeerClient {
    /// One request, one response. The stream is taken out of the cache for
    /// the duration of the call and put back only after a complete, matching
    /// answer: a call that fails, times out or is cancelled by its caller
    /// (openraft drops RPC futures on its own timeouts) drops the stream
    /// with it, so no later call can read an answer meant for another.
    async fn connect(&self) -> std::io::Result<Stream> {
        let tcp = TcpStream::connect(&self.addr).await?;
        tcp.set_nodelay(true)?;
        let mut stream: Stream = match &self.tls {
            Some(connector) => {
                let name = crate::tls::server_name(self.target)
                    .map_err(|e| std::io::Error::other(e.to_string()))?;
                let tls = connector.connect(name, tcp).await?;
                let proven = proven_node(tls.get_ref().1.peer_certificates());
                if proven != Some(self.target) {
                    return Err(refused(format!(
                        "{} answered with a certificate for node {proven:?}, not node {}",
                        self.addr, self.target
                    )));
                }
                Box::new(tls)
            }
            None => Box::new(tcp),
        };
        stream.write_all(&MAGIC).await?;
        Ok(stream)
    }

    async fn call(
        &self,
        request: &[u8],
        id: u64,
        timeout: Duration,
    ) -> Result<PeerResponse, CallError> {
        let mut cached = self.conn.lock().await;
        let stream = cached.take();
        // Whether the call got as far as a connection: a failure before is
        // "unreachable", after it a failed exchange.
        let connected = std::sync::atomic::AtomicBool::new(false);
        let result = tokio::time::timeout(timeout, async {
            // A kept connection the peer closed meanwhile (idle deadline,
            // restart) fails at once: one fresh connection is tried before
            // the call counts as failed. Raft RPCs may be delivered twice.
            if let Some(stream) = stream {
                match self.exchange(stream, request, id).await {
                    Ok(answered) => return Ok(answered),
                    Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                        return Err(CallError::Exchange(e));
                    }
                    Err(_) => {}
                }
            }
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, self.connect())
                .await
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))
                .and_then(|connected| connected)
                .map_err(CallError::Connect)?;
            connected.store(true, std::sync::atomic::Ordering::Relaxed);
            self.exchange(stream, request, id)
                .await
                .map_err(CallError::Exchange)
        })
        .await
        .unwrap_or_else(|_| {
            let e = std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer from {} in {timeout:?}", self.addr),
            );
            Err(if connected.load(std::sync::atomic::Ordering::Relaxed) {
                CallError::Exchange(e)
            } else {
                CallError::Connect(e)
            })
        });
        let (stream, response) = result?;
        *cached = Some(stream);
        Ok(response)
    }

    /// Sends one request on `stream` and reads its answer.
    async fn exchange(
        &self,
        mut stream: Stream,
        request: &[u8],
        id: u64,
    ) -> std::io::Result<(Stream, PeerResponse)> {
        {
            write_frame(&mut stream, request).await?;
            let (frame, _) = read_frame(&mut stream, None).await?;
            let (answered, response): (u64, PeerResponse) =
                postcard::from_bytes(&frame).map_err(|e| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("undecodable response: {e}"),
                    )
                })?;
            if answered != id {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("answer to request {answered} received for request {id}"),
                ));
            }
            Ok((stream, response))
        }
    }
}

/// How a peer call failed.
enum CallError {
    /// No connection could be made (refused, timed out, TLS refused): the
    /// peer is unreachable, and openraft backs off.
    Connect(std::io::Error),
    /// A connection was made but the exchange failed (a slow peer, a cut
    /// connection): openraft retries at its next tick, as for any network
    /// error — a backoff here would starve a slow follower of heartbeats.
    Exchange(std::io::Error),
}

/// One reused connection per peer, by node id and address.
type Clients = HashMap<(u64, String), Arc<PeerClient>>;

/// When each peer last answered this node's Raft calls, and the last error
/// reaching it: what `cluster status` shows and what membership changes
/// check before they count a node as reachable.
#[derive(Clone, Default)]
pub struct PeerContacts(Arc<Mutex<HashMap<u64, Contact>>>);

/// One peer's [`PeerContacts`] entry.
#[derive(Clone, Debug, Default)]
pub struct Contact {
    /// When it last answered a call (any answer: it is up and reachable).
    pub last_answer: Option<std::time::Instant>,
    /// The last call's error, if the last call failed.
    pub last_error: Option<String>,
    /// The engines it said it runs on.
    pub engine: Option<String>,
}

impl PeerContacts {
    fn answered(&self, target: u64) {
        let mut contacts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let contact = contacts.entry(target).or_default();
        contact.last_answer = Some(std::time::Instant::now());
        contact.last_error = None;
    }

    fn failed(&self, target: u64, error: &std::io::Error) {
        let mut contacts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        contacts.entry(target).or_default().last_error = Some(error.to_string());
    }

    /// Records what node `node` says it runs on: a short text of engine
    /// names (`fjall (log) and lmdb (state)`), nothing else.
    fn set_engine(&self, node: u64, engine: String) -> Result<(), String> {
        let plain = engine
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || " ()".contains(c));
        if engine.len() > 64 || !plain {
            return Err("an engine description is at most 64 of a-z 0-9 space ( )".into());
        }
        let mut contacts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        contacts.entry(node).or_default().engine = Some(engine);
        Ok(())
    }

    /// What is known of `target` (nothing if this node never called it).
    pub fn get(&self, target: u64) -> Contact {
        let contacts = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        contacts.get(&target).cloned().unwrap_or_default()
    }

    /// Whether `target` answered within `recent`.
    pub fn answered_within(&self, target: u64, recent: Duration) -> bool {
        self.get(target)
            .last_answer
            .is_some_and(|at| at.elapsed() <= recent)
    }
}

/// Makes connections to peers, one reused connection per peer.
#[derive(Clone)]
pub struct TcpNetwork {
    clients: Arc<Mutex<Clients>>,
    /// Connections for read-index requests: apart, so that a slow answer
    /// never holds up a Raft call to the same peer.
    read_clients: Arc<Mutex<Clients>>,
    security: PeerSecurity,
    backoff_max: Duration,
    contacts: PeerContacts,
}

impl TcpNetwork {
    /// A network that dials peers as `security` says, backing off from an
    /// unreachable peer up to `backoff_max` (keep it under the election
    /// timeout: a peer back from a restart must hear its leader before it
    /// calls an election).
    pub fn new(security: PeerSecurity, backoff_max: Duration) -> TcpNetwork {
        TcpNetwork {
            clients: Arc::default(),
            read_clients: Arc::default(),
            security,
            backoff_max: backoff_max.min(BACKOFF_MAX),
            contacts: PeerContacts::default(),
        }
    }

    /// What this network knows of each peer's answers.
    pub fn contacts(&self) -> PeerContacts {
        self.contacts.clone()
    }

    /// Asks the leader to raise (`Some`) or clear (`None`) this node's
    /// disk alarm.
    pub async fn report_disk_alarm(
        &self,
        leader: u64,
        leader_addr: &NodeAddr,
        node: u64,
        raise: Option<meta_raft::Alarm>,
    ) -> Result<(), String> {
        let connection = self.clone().new_client(leader, leader_addr).await;
        let request = PeerRequest::DiskAlarm { node, raise };
        match connection
            .call(request, &RPCOption::new(Duration::from_secs(5)))
            .await
        {
            Ok(PeerResponse::DiskAlarm(answer)) => answer,
            Ok(_) => Err("the leader answered another request".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The connection to `target` kept in `clients` (made on first use),
    /// whose answers and failures go to `contacts`.
    fn connection(
        &self,
        clients: &Mutex<Clients>,
        target: u64,
        node: &NodeAddr,
        contacts: PeerContacts,
    ) -> PeerConnection {
        let mut clients = clients.lock().unwrap_or_else(PoisonError::into_inner);
        let tls = self
            .security
            .tls
            .as_ref()
            .map(|tls| tokio_rustls::TlsConnector::from(tls.client.clone()));
        let client = clients
            .entry((target, node.raft.clone()))
            .or_insert_with(|| {
                Arc::new(PeerClient {
                    addr: node.raft.clone(),
                    target,
                    tls,
                    conn: tokio::sync::Mutex::new(None),
                    next_id: std::sync::atomic::AtomicU64::new(1),
                    reachability: Reachability::default(),
                })
            })
            .clone();
        PeerConnection {
            target,
            client,
            identity: self.security.identity.clone(),
            backoff_max: self.backoff_max,
            contacts,
        }
    }

    /// Tells the leader what this node runs on: at once when a leader is
    /// known, again every 10 seconds and whenever the leader changes
    /// (until the task is aborted).
    pub async fn announce(self, raft: Raft, node: u64, engine: String) {
        // The server metrics change with the leader, not with every write.
        let mut metrics = raft.server_metrics();
        loop {
            // The leader and its address from the same value as `known`
            // below: the full metrics are sent after the server metrics.
            let (known, leader) = {
                let m = metrics.borrow_and_update();
                let leader = m.current_leader.filter(|l| *l != node).and_then(|l| {
                    Some((l, m.membership_config.membership().get_node(&l)?.clone()))
                });
                (m.current_leader, leader)
            };
            if let Some((leader, addr)) = leader {
                let connection = self.clone().new_client(leader, &addr).await;
                let request = PeerRequest::NodeInfo {
                    node,
                    engine: engine.clone(),
                };
                // Best effort: the next round tries again.
                let _ = connection
                    .call(request, &RPCOption::new(Duration::from_secs(5)))
                    .await;
            }
            let changed = tokio::time::timeout(
                Duration::from_secs(10),
                metrics.wait_for(|m| m.current_leader != known),
            )
            .await;
            // Raft stopped: nothing more to tell.
            if let Ok(Err(_)) = changed {
                return;
            }
        }
    }

    /// Asks `leader` for a read index on behalf of this node `node`
    /// (follower reads). `Err` when the leader could not be asked.
    pub async fn read_index(
        &self,
        leader: u64,
        leader_addr: &NodeAddr,
        node: u64,
        timeout: Duration,
    ) -> Result<Result<crate::read_index::Index, crate::read_index::ReadError>, String> {
        // Its failures are not Raft's: `cluster status` shows Raft's.
        let connection = self.connection(
            &self.read_clients,
            leader,
            leader_addr,
            PeerContacts::default(),
        );
        match connection
            .call(PeerRequest::ReadIndex { node }, &RPCOption::new(timeout))
            .await
        {
            Ok(PeerResponse::ReadIndex(answer)) => Ok(answer),
            Ok(_) => Err(format!("node {leader} answered another request")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Asks voter `target` to start an election now (a leader transfer;
    /// this node leads in `term`).
    pub async fn timeout_now(
        &self,
        target: u64,
        target_addr: &NodeAddr,
        node: u64,
        term: u64,
    ) -> Result<(), String> {
        let connection = self.clone().new_client(target, target_addr).await;
        match connection
            .call(
                PeerRequest::TimeoutNow { node, term },
                &RPCOption::new(Duration::from_secs(5)),
            )
            .await
        {
            Ok(PeerResponse::TimeoutNow(answer)) => answer,
            Ok(_) => Err(format!("node {target} answered another request")),
            Err(e) => Err(e.to_string()),
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for TcpNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: u64, node: &NodeAddr) -> PeerConnection {
        self.connection(&self.clients, target, node, self.contacts.clone())
    }
}

/// openraft's view of one peer.
pub struct PeerConnection {
    target: u64,
    client: Arc<PeerClient>,
    identity: Arc<Identity>,
    backoff_max: Duration,
    contacts: PeerContacts,
}

type Rpc<T, E = openraft::error::Infallible> =
    Result<T, RPCError<u64, NodeAddr, RaftError<u64, E>>>;

impl PeerConnection {
    async fn call(
        &self,
        request: PeerRequest,
        option: &RPCOption,
    ) -> Result<PeerResponse, RPCError<u64, NodeAddr, RaftError<u64, InstallSnapshotError>>> {
        if let PeerRequest::AppendEntries(rpc) = &request {
            // Estimated before encoding, so a large backlog is never encoded whole.
            let estimate: usize = rpc
                .entries
                .iter()
                .map(|e| match &e.payload {
                    openraft::EntryPayload::Normal(envelope) => envelope.command.len() + 32,
                    _ => 256,
                })
                .sum();
            if estimate > MAX_APPEND_BYTES && rpc.entries.len() > 1 {
                // openraft retries at once with at most this many entries.
                let hint = (rpc.entries.len() as u64 / 2).max(1);
                return Err(RPCError::PayloadTooLarge(
                    PayloadTooLarge::new_entries_hint(hint),
                ));
            }
        }
        let id = self
            .client
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let bytes = postcard::to_stdvec(&(self.identity.cluster(), id, &request))
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.client
            .call(&bytes, id, option.hard_ttl())
            .await
            .map_err(|e| match e {
                // openraft then backs off (see `backoff`) instead of retrying
                // at every tick, so a down peer costs the leader neither a
                // core nor a disk of log lines.
                CallError::Connect(e) => {
                    self.client
                        .reachability
                        .failed(self.target, &self.client.addr, &e);
                    self.contacts.failed(self.target, &e);
                    RPCError::Unreachable(Unreachable::new(&e))
                }
                CallError::Exchange(e) => {
                    self.contacts.failed(self.target, &e);
                    RPCError::Network(NetworkError::new(&e))
                }
            })
            .inspect(|_| {
                self.client
                    .reachability
                    .answered(self.target, &self.client.addr);
                self.contacts.answered(self.target);
            })
    }
}

/// The first retry after a peer was unreachable waits this long (then
/// twice as long each time, up to a cap), give or take a quarter.
pub const BACKOFF_FIRST: Duration = Duration::from_millis(50);
/// The longest wait between retries to an unreachable peer, whatever the
/// Raft timing (the node caps it at half the election timeout).
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// While a peer stays unreachable, one line says so this often.
pub const UNREACHABLE_REPORT_EVERY: Duration = Duration::from_secs(60);

/// Exponential backoff from [`BACKOFF_FIRST`] to `max`, each delay
/// jittered by ±25% (so peers of a restarted node do not retry in step).
/// `seed` makes the jitter.
pub fn backoff_delays(seed: u64, max: Duration) -> impl Iterator<Item = Duration> {
    let mut state = seed | 1;
    (0u32..).map(move |i| {
        let base = BACKOFF_FIRST
            .saturating_mul(1 << i.min(16))
            .min(max)
            .as_millis() as u64;
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let quarter = base / 4;
        Duration::from_millis(base - quarter + state % (2 * quarter + 1))
    })
}

/// Whether a peer answers, so that its going and its return are each
/// logged once (and a reminder once a minute), not every retry.
#[derive(Default)]
struct Reachability {
    down: Mutex<Option<Down>>,
}

struct Down {
    since: std::time::Instant,
    failures: u64,
    reported: std::time::Instant,
}

impl Reachability {
    fn failed(&self, target: u64, addr: &str, error: &std::io::Error) {
        let mut down = self.down.lock().unwrap_or_else(PoisonError::into_inner);
        let now = std::time::Instant::now();
        match down.as_mut() {
            None => {
                tracing::warn!(
                    "peer node {target} at {addr} is unreachable: {error}; retrying with backoff, \
                     reported again every {UNREACHABLE_REPORT_EVERY:?} while it lasts"
                );
                *down = Some(Down {
                    since: now,
                    failures: 1,
                    reported: now,
                });
            }
            Some(d) => {
                d.failures += 1;
                if now.duration_since(d.reported) >= UNREACHABLE_REPORT_EVERY {
                    tracing::warn!(
                        "peer node {target} at {addr} still unreachable after {:.0?} ({} failed attempts; last: {error})",
                        now.duration_since(d.since),
                        d.failures
                    );
                    d.reported = now;
                }
            }
        }
    }

    fn answered(&self, target: u64, addr: &str) {
        let mut down = self.down.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(d) = down.take() {
            tracing::info!(
                "peer node {target} at {addr} is reachable again after {:.1?} ({} failed attempts)",
                d.since.elapsed(),
                d.failures
            );
        }
    }
}

fn mismatch<E: std::error::Error>() -> RPCError<u64, NodeAddr, RaftError<u64, E>> {
    RPCError::Network(NetworkError::new(&std::io::Error::other(
        "peer answered another RPC",
    )))
}

fn narrow<E: std::error::Error>(
    e: RPCError<u64, NodeAddr, RaftError<u64, InstallSnapshotError>>,
) -> RPCError<u64, NodeAddr, RaftError<u64, E>> {
    match e {
        RPCError::Unreachable(u) => RPCError::Unreachable(u),
        RPCError::Network(n) => RPCError::Network(n),
        other => RPCError::Network(NetworkError::new(&std::io::Error::other(other.to_string()))),
    }
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    fn backoff(&self) -> openraft::network::Backoff {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(self.target, |d| d.as_nanos() as u64 ^ self.target);
        openraft::network::Backoff::new(backoff_delays(seed, self.backoff_max))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<u64>> {
        match self
            .call(PeerRequest::AppendEntries(rpc), &option)
            .await
            .map_err(narrow)?
        {
            PeerResponse::AppendEntries(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(mismatch()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<u64>, InstallSnapshotError> {
        match self
            .call(PeerRequest::InstallSnapshot(rpc), &option)
            .await?
        {
            PeerResponse::InstallSnapshot(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(mismatch()),
        }
    }

    async fn vote(&mut self, rpc: VoteRequest<u64>, option: RPCOption) -> Rpc<VoteResponse<u64>> {
        match self
            .call(PeerRequest::Vote(rpc), &option)
            .await
            .map_err(narrow)?
        {
            PeerResponse::Vote(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            _ => Err(mismatch()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_engine_description_is_short_plain_text() {
        let contacts = PeerContacts::default();
        assert!(
            contacts
                .set_engine(2, "fjall (log) and lmdb (state)".into())
                .is_ok()
        );
        assert_eq!(
            contacts.get(2).engine.as_deref(),
            Some("fjall (log) and lmdb (state)")
        );
        for bad in [
            "\u{1b}[31mlmdb",
            "lmdb\nfjall",
            "<b>lmdb</b>",
            &"x".repeat(65),
        ] {
            assert!(contacts.set_engine(3, bad.to_string()).is_err(), "{bad:?}");
        }
        assert_eq!(contacts.get(3).engine, None);
    }

    fn frame(len: usize) -> Vec<u8> {
        let mut bytes = (len as u32).to_be_bytes().to_vec();
        bytes.extend(std::iter::repeat_n(7u8, len));
        bytes
    }

    #[tokio::test(start_paused = true)]
    async fn frames_share_a_memory_budget_and_a_trickled_one_is_cut_off() {
        let budget = FrameBudget::new(128 * 1024);
        let (mut a, mut a_peer) = tokio::io::duplex(1 << 20);
        let (mut b, mut b_peer) = tokio::io::duplex(1 << 20);
        a_peer.write_all(&frame(100 * 1024)).await.unwrap();
        b_peer.write_all(&frame(100 * 1024)).await.unwrap();
        let (first, held) = read_frame(&mut a, Some(&budget)).await.unwrap();
        assert_eq!(first.len(), 100 * 1024);
        // The second waits for the first's memory...
        let second = tokio::spawn({
            let budget = budget.clone();
            async move {
                read_frame(&mut b, Some(&budget))
                    .await
                    .map(|(f, _)| f.len())
            }
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(!second.is_finished(), "over the budget, it waits");
        drop(held);
        assert_eq!(second.await.unwrap().unwrap(), 100 * 1024);
        // ... and a frame whose bytes stop coming is cut off.
        let (mut c, mut c_peer) = tokio::io::duplex(1 << 20);
        c_peer.write_all(&frame(1 << 20)[..1000]).await.unwrap();
        let err = read_frame(&mut c, Some(&budget)).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
        // Over the limit: refused before any of it is read.
        let (mut d, mut d_peer) = tokio::io::duplex(64);
        d_peer
            .write_all(&((MAX_FRAME + 1) as u32).to_be_bytes())
            .await
            .unwrap();
        let err = read_frame(&mut d, Some(&budget)).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
    }

    #[test]
    fn backoff_doubles_to_its_cap_with_jitter() {
        let delays: Vec<Duration> = backoff_delays(42, BACKOFF_MAX).take(12).collect();
        for (i, d) in delays.iter().enumerate() {
            let base = BACKOFF_FIRST.saturating_mul(1 << i).min(BACKOFF_MAX);
            assert!(
                *d >= base * 3 / 4 && *d <= base * 5 / 4,
                "{i}: {d:?} vs {base:?}"
            );
        }
        assert!(delays[11] >= BACKOFF_MAX * 3 / 4, "capped, not stuck low");
        let other: Vec<Duration> = backoff_delays(7, BACKOFF_MAX).take(12).collect();
        let capped = backoff_delays(1, Duration::from_millis(150))
            .nth(10)
            .unwrap();
        assert!(capped <= Duration::from_millis(188), "{capped:?}");
        assert_ne!(delays, other, "jittered by the seed");
    }
}
