//! Connection limits for both listeners: a budget of open connections
//! (beyond it a new connection is closed at once, and that is logged at
//! most once a minute) and an idle deadline (a connection that moves no
//! byte for that long is closed), so idle, half-open or trickling clients
//! can neither pin file descriptors nor memory forever.
//!
//! The budgets come out of the process's file-descriptor limit, whose soft
//! value the binary raises to the hard one at start ([`raise_nofile`]),
//! minus a reserve for the stores, snapshots and peers' outgoing
//! connections: running out of descriptors must refuse a client, never
//! fail a snapshot and stop Raft.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;

/// Descriptors kept out of every connection budget: stores, snapshot and
/// spill files, outgoing peer connections, logs.
pub const RESERVED_FDS: u64 = 128;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and returns the soft
/// limit in effect.
pub fn raise_nofile() -> u64 {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        if let (Some(current), Some(hard)) = (limit.current, limit.maximum) {
            if current < hard {
                let raised = rustix::process::Rlimit {
                    current: Some(hard),
                    maximum: Some(hard),
                };
                if setrlimit(Resource::Nofile, raised).is_ok() {
                    return hard;
                }
            }
            return current;
        }
        // Unlimited (None): no limit to fit under.
        limit.current.unwrap_or(u64::MAX)
    }
    #[cfg(not(unix))]
    {
        u64::MAX
    }
}

/// The connection budgets of the client API and the peer port that fit
/// in `nofile` descriptors with [`RESERVED_FDS`] kept aside (two thirds
/// for clients, a third for peers), each at most as configured and at
/// least 8.
pub fn budgets(nofile: u64, clients: usize, peers: usize) -> (usize, usize) {
    let spare = nofile.saturating_sub(RESERVED_FDS);
    let fit = |share: u64, configured: usize| {
        usize::try_from(spare.saturating_mul(share) / 3)
            .unwrap_or(usize::MAX)
            .min(configured)
            .max(8)
    };
    (fit(2, clients), fit(1, peers))
}

/// A budget of open connections for one listener: in all, and from any
/// one address.
pub struct Budget {
    what: &'static str,
    slots: Arc<Semaphore>,
    max: usize,
    per_address: usize,
    by_address: Mutex<HashMap<IpAddr, usize>>,
    refused: AtomicU64,
    reported: Mutex<Option<Instant>>,
    idle: Duration,
}

/// One address's hold on its share of a [`Budget`], given back on drop.
struct AddressSlot {
    budget: Arc<Budget>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut by_address = self
            .budget
            .by_address
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = by_address.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                by_address.remove(&self.ip);
            }
        }
    }
}

impl Budget {
    /// `max` open connections at once on the `what` listener, at most
    /// `per_address` of them from one IP address, each closed after `idle`
    /// without a byte moving.
    pub fn new(what: &'static str, max: usize, per_address: usize, idle: Duration) -> Arc<Budget> {
        Arc::new(Budget {
            what,
            slots: Arc::new(Semaphore::new(max)),
            max,
            per_address: per_address.max(1),
            by_address: Mutex::new(HashMap::new()),
            refused: AtomicU64::new(0),
            reported: Mutex::new(None),
            idle,
        })
    }

    /// Admits `io` from `peer` if a slot is free, overall and for that
    /// address (it keeps them until dropped), else `None`: the caller drops
    /// the connection, which closes it.
    pub fn admit<S>(self: &Arc<Self>, io: S, peer: Option<IpAddr>) -> Option<Guarded<S>> {
        let address = match peer {
            Some(ip) => {
                let mut by_address = self
                    .by_address
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                let count = by_address.entry(ip).or_insert(0);
                if *count >= self.per_address {
                    drop(by_address);
                    self.refuse(&format!(
                        "{ip} holds its limit of {} connections",
                        self.per_address
                    ));
                    return None;
                }
                *count += 1;
                Some(AddressSlot {
                    budget: self.clone(),
                    ip,
                })
            }
            None => None,
        };
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => Some(Guarded {
                inner: io,
                _permit: permit,
                _address: address,
                idle: self.idle,
                deadline: Box::pin(tokio::time::sleep(self.idle)),
            }),
            Err(_) => {
                self.refuse(&format!("all {} connections are open", self.max));
                None
            }
        }
    }

    /// Counts a refusal; says so at most once a minute.
    fn refuse(&self, why: &str) {
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let mut reported = self.reported.lock().unwrap_or_else(PoisonError::into_inner);
        if reported.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
            tracing::warn!(
                "{} connections at their limit ({why}): refusing new ones ({refused} so far)",
                self.what,
            );
            *reported = Some(Instant::now());
        }
    }
}

impl Budget {
    /// The next connection on `listener` this budget admits (with
    /// `TCP_NODELAY`): the surplus is closed, accept errors pause.
    pub async fn accept(
        self: &Arc<Self>,
        listener: &tokio::net::TcpListener,
    ) -> (Guarded<tokio::net::TcpStream>, std::net::SocketAddr) {
        loop {
            match listener.accept().await {
                Ok((tcp, peer)) => {
                    let _ = tcp.set_nodelay(true);
                    if let Some(io) = self.admit(tcp, Some(peer.ip())) {
                        return (io, peer);
                    }
                }
                Err(e) => {
                    // Out of descriptors, most likely: shed load for a
                    // moment instead of spinning; never stop.
                    tracing::warn!(
                        "{} accept failed: {e}; pausing new connections for 100 ms",
                        self.what
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

/// A connection holding a slot of its [`Budget`] and closed (a `TimedOut`
/// error) once no byte moved either way for the budget's idle time.
pub struct Guarded<S> {
    inner: S,
    _permit: OwnedSemaphorePermit,
    _address: Option<AddressSlot>,
    idle: Duration,
    deadline: Pin<Box<Sleep>>,
}

impl<S> Guarded<S> {
    fn moved(&mut self) {
        let next = tokio::time::Instant::now() + self.idle;
        self.deadline.as_mut().reset(next);
    }

    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }
}

fn idle_error(idle: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("connection idle for {idle:?}: closed"),
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.moved();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(idle_error(self.idle))),
            other => other,
        }
    }
}

impl<S> Guarded<S> {
    /// What a write that gave `written` means for the deadline: bytes
    /// moved reset it; waiting past it is an error.
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.moved();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Pending if self.expired(cx) => Poll::Ready(Err(idle_error(self.idle))),
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write(cx, data);
        self.after_write(cx, written)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.after_write(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The plain-HTTP client API listener with a [`Budget`].
pub struct BudgetedListener {
    inner: tokio::net::TcpListener,
    budget: Arc<Budget>,
}

impl BudgetedListener {
    /// `inner` within `budget`.
    pub fn new(inner: tokio::net::TcpListener, budget: Arc<Budget>) -> BudgetedListener {
        BudgetedListener { inner, budget }
    }
}

impl axum::serve::Listener for BudgetedListener {
    type Io = Guarded<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        self.budget.accept(&self.inner).await
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_fit_the_descriptor_limit() {
        assert_eq!(budgets(1 << 20, 1024, 256), (1024, 256));
        assert_eq!(budgets(256, 1024, 256), (85, 42));
        assert_eq!(budgets(100, 1024, 256), (8, 8));
    }

    #[tokio::test]
    async fn a_full_budget_refuses_and_an_idle_connection_is_closed() {
        use tokio::io::AsyncReadExt;
        let budget = Budget::new("test", 1, 1, Duration::from_millis(100));
        let (a, _a_peer) = tokio::io::duplex(64);
        let (b, _b_peer) = tokio::io::duplex(64);
        let mut first = budget.admit(a, None).expect("a free slot");
        assert!(budget.admit(b, None).is_none(), "the budget is full");
        let mut buf = [0u8; 8];
        let err = first.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(first);
        let (c, _c_peer) = tokio::io::duplex(64);
        assert!(
            budget.admit(c, None).is_some(),
            "a closed connection frees its slot"
        );
    }

    #[tokio::test]
    async fn one_address_gets_its_share_and_no_more() {
        let budget = Budget::new("test", 10, 2, Duration::from_secs(60));
        let (one, two) = ("10.0.0.1".parse().ok(), "10.0.0.2".parse().ok());
        let io = || tokio::io::duplex(64).0;
        let a = budget.admit(io(), one).expect("first");
        let _b = budget.admit(io(), one).expect("second");
        assert!(
            budget.admit(io(), one).is_none(),
            "a third from one address"
        );
        let _c = budget.admit(io(), two).expect("another address");
        drop(a);
        assert!(
            budget.admit(io(), one).is_some(),
            "a closed one frees the address's slot"
        );
    }
}
