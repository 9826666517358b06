//! The peer transport: Raft RPCs between nodes over TCP.
//!
//! Framing: every message is `[length: u32 BE][postcard payload]`, at most
//! [`MAX_FRAME`] bytes; a connection starts with the 4-byte magic
//! [`MAGIC`] from the client. Payloads are `(request id, request)` and
//! `(request id, response)`: one request, one response, in order, on a
//! connection that is kept open and reused; an answer with the wrong id, a
//! failed, timed-out or cancelled call drops the connection and the next
//! call reconnects. An AppendEntries over [`MAX_APPEND_BYTES`] is sent in
//! smaller pieces. Snapshots travel as
//! openraft's chunked `InstallSnapshot` RPCs, so no message exceeds one
//! chunk. Garbage on the wire closes that connection, never the node.

use std::collections::HashMap;
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
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The bytes a client sends first on a new connection.
pub const MAGIC: [u8; 4] = *b"MRP2";
/// An AppendEntries larger than this (encoded) is split: the sender asks
/// openraft to retry with fewer entries (`PayloadTooLarge`), so one message
/// never carries a whole backlog and always fits its timeout.
pub const MAX_APPEND_BYTES: usize = 4 << 20;
/// The largest frame accepted (snapshot chunks are 3 MiB by default).
pub const MAX_FRAME: usize = 64 << 20;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A Raft RPC.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerRequest {
    /// Log replication and heartbeats.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Elections.
    Vote(VoteRequest<u64>),
    /// One chunk of a snapshot.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
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
}

async fn write_frame(stream: &mut TcpStream, payload: &[u8]) -> std::io::Result<()> {
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

async fn read_frame(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {len} bytes is over the {MAX_FRAME}-byte limit"),
        ));
    }
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await?;
    Ok(payload)
}

/// Decodes one request frame's payload: a request id and the RPC. Bytes
/// from the network: anything malformed is an `InvalidData` error (the
/// connection is closed), never a panic.
pub fn decode_request(frame: &[u8]) -> std::io::Result<(u64, PeerRequest)> {
    postcard::from_bytes(frame).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("undecodable request: {e}"),
        )
    })
}

/// Serves peers' RPCs on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, raft: Raft) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("peer transport accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let raft = raft.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_connection(stream, raft).await {
                tracing::debug!("peer connection from {peer} closed: {e}");
            }
        });
    }
}

async fn serve_connection(mut stream: TcpStream, raft: Raft) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut magic = [0u8; 4];
    stream.read_exact(&mut magic).await?;
    if magic != MAGIC {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "not a meta-node peer (bad magic)",
        ));
    }
    loop {
        let frame = match read_frame(&mut stream).await {
            Ok(frame) => frame,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        };
        let (id, request) = decode_request(&frame)?;
        let response = match request {
            PeerRequest::AppendEntries(rpc) => {
                PeerResponse::AppendEntries(raft.append_entries(rpc).await)
            }
            PeerRequest::Vote(rpc) => PeerResponse::Vote(raft.vote(rpc).await),
            PeerRequest::InstallSnapshot(rpc) => {
                PeerResponse::InstallSnapshot(raft.install_snapshot(rpc).await)
            }
        };
        let bytes = postcard::to_stdvec(&(id, response)).map_err(std::io::Error::other)?;
        write_frame(&mut stream, &bytes).await?;
    }
}

/// A reusable connection to one peer.
struct PeerClient {
    addr: String,
    conn: tokio::sync::Mutex<Option<TcpStream>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl PeerClient {
    /// One request, one response. The stream is taken out of the cache for
    /// the duration of the call and put back only after a complete, matching
    /// answer: a call that fails, times out or is cancelled by its caller
    /// (openraft drops RPC futures on its own timeouts) drops the stream
    /// with it, so no later call can read an answer meant for another.
    async fn call(
        &self,
        request: &[u8],
        id: u64,
        timeout: Duration,
    ) -> std::io::Result<PeerResponse> {
        let mut cached = self.conn.lock().await;
        let stream = cached.take();
        let result = tokio::time::timeout(timeout, async {
            let mut stream = match stream {
                Some(stream) => stream,
                None => {
                    let mut stream =
                        tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
                            .await
                            .map_err(|_| {
                                std::io::Error::new(
                                    std::io::ErrorKind::TimedOut,
                                    "connect timed out",
                                )
                            })??;
                    stream.set_nodelay(true)?;
                    stream.write_all(&MAGIC).await?;
                    stream
                }
            };
            write_frame(&mut stream, request).await?;
            let frame = read_frame(&mut stream).await?;
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
        })
        .await
        .unwrap_or_else(|_| {
            Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer from {} in {timeout:?}", self.addr),
            ))
        });
        let (stream, response) = result?;
        *cached = Some(stream);
        Ok(response)
    }
}

/// Makes connections to peers, one reused connection per peer address.
#[derive(Clone, Default)]
pub struct TcpNetwork {
    clients: Arc<Mutex<HashMap<String, Arc<PeerClient>>>>,
}

impl RaftNetworkFactory<TypeConfig> for TcpNetwork {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: u64, node: &NodeAddr) -> PeerConnection {
        let mut clients = self.clients.lock().unwrap_or_else(PoisonError::into_inner);
        let client = clients
            .entry(node.raft.clone())
            .or_insert_with(|| {
                Arc::new(PeerClient {
                    addr: node.raft.clone(),
                    conn: tokio::sync::Mutex::new(None),
                    next_id: std::sync::atomic::AtomicU64::new(1),
                })
            })
            .clone();
        PeerConnection { target, client }
    }
}

/// openraft's view of one peer.
pub struct PeerConnection {
    target: u64,
    client: Arc<PeerClient>,
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
        let bytes = postcard::to_stdvec(&(id, &request))
            .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        self.client
            .call(&bytes, id, option.hard_ttl())
            .await
            .map_err(|e| {
                if matches!(request, PeerRequest::Vote(_)) {
                    RPCError::Unreachable(Unreachable::new(&e))
                } else {
                    RPCError::Network(NetworkError::new(&e))
                }
            })
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
