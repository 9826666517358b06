//! Watches, leases and locks on the typed client.
//!
//! A [`Watch`] reads a watch's Server-Sent Events and hands out each
//! change once, in revision order: it passes on the changes of a revision
//! only once the revision is complete (its `id` arrived), and when the
//! stream breaks (a node stops, a connection drops, the watcher lagged)
//! it reconnects — to another endpoint if need be — and resumes after the
//! last complete revision with `Last-Event-ID`. A `compacted` answer is
//! the one thing it cannot repair: [`ClientError::is_compacted`] says to
//! list the current state and watch again from its revision.

use std::collections::VecDeque;
use std::time::Duration;

use reqwest::Method;

use crate::client::{Client, encode_query};
use crate::error::ClientError;
use crate::wire;

/// How long a watch waits for a byte before it takes the connection for
/// dead and resumes elsewhere (nodes send progress every few seconds).
pub const WATCH_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// What a watch follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchTarget {
    /// User keys (`/v1/watch`).
    Kv,
    /// The cluster map (`/v1/watch/cluster`; names are node ids).
    Cluster,
    /// The shard map (`/v1/watch/shards`; its name is `map`).
    Shards,
    /// Config entries (`/v1/watch/config`).
    Config,
}

/// A watch to start: what, from where, with what.
#[derive(Clone, Debug)]
pub struct WatchRequest {
    target: WatchTarget,
    name: String,
    exact: bool,
    from_revision: Option<u64>,
    prev: bool,
    linearizable: bool,
}

impl WatchRequest {
    /// Every record of `target` whose name starts with `prefix`.
    pub fn prefix(target: WatchTarget, prefix: impl Into<String>) -> WatchRequest {
        WatchRequest {
            target,
            name: prefix.into(),
            exact: false,
            from_revision: None,
            prev: false,
            linearizable: false,
        }
    }

    /// The user keys under `prefix`.
    pub fn kv_prefix(prefix: impl Into<String>) -> WatchRequest {
        Self::prefix(WatchTarget::Kv, prefix)
    }

    /// One user key.
    pub fn kv_key(key: impl Into<String>) -> WatchRequest {
        WatchRequest {
            exact: true,
            ..Self::prefix(WatchTarget::Kv, key)
        }
    }

    /// Starts at this revision (its changes included). Default: the
    /// changes after the node's current revision.
    pub fn from_revision(mut self, revision: u64) -> WatchRequest {
        self.from_revision = Some(revision);
        self
    }

    /// Also report each record as it was before the change.
    pub fn with_prev(mut self) -> WatchRequest {
        self.prev = true;
        self
    }

    /// Start after every write acknowledged before the watch (a read
    /// index first), not from the node's possibly older state.
    pub fn linearizable(mut self) -> WatchRequest {
        self.linearizable = true;
        self
    }

    fn path(&self, resuming: bool) -> String {
        let base = match self.target {
            WatchTarget::Kv => "/v1/watch",
            WatchTarget::Cluster => "/v1/watch/cluster",
            WatchTarget::Shards => "/v1/watch/shards",
            WatchTarget::Config => "/v1/watch/config",
        };
        let field = if self.exact { "key" } else { "prefix" };
        let mut path = format!("{base}?{field}={}", encode_query(&self.name));
        if let (Some(from), false) = (self.from_revision, resuming) {
            path += &format!("&from_revision={from}");
        }
        if self.prev {
            path += "&prev=true";
        }
        if self.linearizable && !resuming {
            path += "&linearizable=true";
        }
        path
    }
}

/// What a watch hands out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchMessage {
    /// A change.
    Event(Box<wire::WatchEvent>),
    /// Every change up to this revision was handed out.
    Progress(u64),
}

/// A running watch (see the module documentation): call
/// [`next`](Self::next) for each change.
///
/// ```no_run
/// # async fn demo(client: meta_client::Client) -> Result<(), meta_client::ClientError> {
/// use meta_client::{WatchMessage, WatchRequest};
/// // Everything under shards/ from revision 100 on, once each, in order.
/// let mut watch = client.watch(WatchRequest::kv_prefix("shards/").from_revision(100));
/// loop {
///     match watch.next().await {
///         Ok(WatchMessage::Event(e)) => println!("{} {:?} {}", e.revision, e.kind, e.key),
///         Ok(WatchMessage::Progress(r)) => println!("up to date at {r}"),
///         // Older than every node's history: list, then watch from the list's revision + 1.
///         Err(e) if e.is_compacted() => break,
///         // No endpoint answered (after the client's retries): call next() again.
///         Err(e) => return Err(e),
///     }
/// }
/// # Ok(()) }
/// ```
pub struct Watch<'c> {
    client: &'c Client,
    request: WatchRequest,
    response: Option<reqwest::Response>,
    buffer: Vec<u8>,
    /// Events of revisions not complete yet.
    incomplete: Vec<wire::WatchEvent>,
    ready: VecDeque<WatchMessage>,
    /// The last complete revision.
    last: Option<u64>,
    idle: Duration,
}

impl std::fmt::Debug for Watch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("request", &self.request)
            .field("last", &self.last)
            .finish()
    }
}

impl Client {
    /// Starts a watch (connecting on the first [`Watch::next`]).
    pub fn watch(&self, request: WatchRequest) -> Watch<'_> {
        Watch {
            client: self,
            request,
            response: None,
            buffer: Vec::new(),
            incomplete: Vec::new(),
            ready: VecDeque::new(),
            last: None,
            idle: WATCH_IDLE_TIMEOUT,
        }
    }
}

impl Watch<'_> {
    /// Takes the connection for dead after `idle` without a byte (default
    /// [`WATCH_IDLE_TIMEOUT`]; keep it above the nodes' `watch.progress_ms`).
    pub fn idle_timeout(mut self, idle: Duration) -> Self {
        self.idle = idle;
        self
    }

    /// A revision whose every change was handed out by
    /// [`next`](Self::next) (or reported by a progress message): a new
    /// watch from the next revision continues this one. When `next` has
    /// handed out only some changes of a revision, this is the revision
    /// before it, and the new watch hands those out again.
    pub fn revision(&self) -> Option<u64> {
        match self.ready.front() {
            Some(WatchMessage::Event(e)) => Some(e.revision - 1),
            Some(WatchMessage::Progress(r)) => Some(*r),
            None => self.last,
        }
    }

    /// The next change or progress report. Reconnects and resumes by
    /// itself; fails when no endpoint answers (after the client's
    /// retries: calling again tries again), or for good with a
    /// `compacted` error ([`ClientError::is_compacted`]).
    pub async fn next(&mut self) -> Result<WatchMessage, ClientError> {
        loop {
            if let Some(message) = self.ready.pop_front() {
                return Ok(message);
            }
            let Some(response) = self.response.as_mut() else {
                self.connect().await?;
                continue;
            };
            match tokio::time::timeout(self.idle, response.chunk()).await {
                Ok(Ok(Some(bytes))) => {
                    self.buffer.extend_from_slice(&bytes);
                    self.parse()?;
                }
                // Ended, broken or silent: resume after the last complete
                // revision.
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => self.disconnect(),
            }
        }
    }

    async fn connect(&mut self) -> Result<(), ClientError> {
        let path = self.request.path(self.last.is_some());
        let headers = self
            .last
            .map(|last| ("last-event-id", last.to_string()))
            .into_iter()
            .collect();
        let response = self.client.stream(Method::GET, &path, headers).await?;
        self.response = Some(response);
        Ok(())
    }

    fn disconnect(&mut self) {
        self.response = None;
        self.buffer.clear();
        // They come again after the resume.
        self.incomplete.clear();
    }

    /// Takes every whole message out of the buffer.
    fn parse(&mut self) -> Result<(), ClientError> {
        while let Some(end) = find_blank_line(&self.buffer) {
            let raw: Vec<u8> = self.buffer.drain(..end.1).collect();
            let text = String::from_utf8_lossy(&raw[..end.0]).into_owned();
            let (mut event, mut id, mut data) = (String::new(), None, String::new());
            for line in text.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse::<u64>().ok();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data += v.trim_start();
                }
            }
            self.message(&event, id, &data)?;
        }
        Ok(())
    }

    fn message(&mut self, event: &str, id: Option<u64>, data: &str) -> Result<(), ClientError> {
        let decode = |problem: String| ClientError::Decode {
            what: format!("a watch's `{event}` message"),
            problem,
        };
        match event {
            wire::event::PUT | wire::event::DELETE => {
                let change: wire::WatchEvent =
                    serde_json::from_str(data).map_err(|e| decode(e.to_string()))?;
                self.incomplete.push(change);
            }
            wire::event::PROGRESS => {
                let progress: wire::WatchProgress =
                    serde_json::from_str(data).map_err(|e| decode(e.to_string()))?;
                self.complete(id.unwrap_or(progress.revision));
                self.ready
                    .push_back(WatchMessage::Progress(progress.revision));
                return Ok(());
            }
            wire::event::END => {
                serde_json::from_str::<wire::WatchEnd>(data).map_err(|e| decode(e.to_string()))?;
                self.disconnect();
                // Resumed on another node (one whose history goes back far
                // enough, for `compacted`), after the last complete revision.
                self.client.skip_endpoint();
                return Ok(());
            }
            // Unknown kinds are for newer clients.
            _ => {}
        }
        if let Some(id) = id {
            self.complete(id);
        }
        Ok(())
    }

    /// Every change up to `revision` arrived: hand them out.
    fn complete(&mut self, revision: u64) {
        let (done, later): (Vec<_>, Vec<_>) = self
            .incomplete
            .drain(..)
            .partition(|e| e.revision <= revision);
        self.ready
            .extend(done.into_iter().map(|e| WatchMessage::Event(Box::new(e))));
        self.incomplete = later;
        self.last = Some(self.last.map_or(revision, |last| last.max(revision)));
    }
}

/// Where the first message of `buffer` ends: (its length, the length with
/// its blank line).
fn find_blank_line(buffer: &[u8]) -> Option<(usize, usize)> {
    let lf = buffer
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}
