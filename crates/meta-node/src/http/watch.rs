//! Watches: `GET /v1/watch` (user keys) and `/v1/watch/{cluster,shards,
//! config}`, as Server-Sent Events ([`meta_client::wire::WatchEvent`]).
//!
//! A watch is served from this node's applied state: it first replays the
//! history from where the client starts (`from_revision`, or just after
//! the revision in `Last-Event-ID`, the SSE protocol's own resume; by
//! default only changes after now), then follows the state machine's
//! notices. Revisions are the same on every replica, so a client resumes
//! on any node. What it guarantees:
//!
//! - every change at most once and in revision order: positions are
//!   (revision, place in revision), compared before anything is sent;
//! - no gap: a start the history no longer covers is `410 compacted`
//!   (or, mid-stream, an `end` event `compacted`), never a silent skip;
//!   a snapshot installed under a live watch ends it the same way;
//! - a watcher that reads too slowly holds at most its channel's few
//!   messages plus its place in the notices; once it is more than the
//!   notices' capacity behind, it gets an `end` event `lagged` with the
//!   revision to resume after, and is disconnected.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Extension, OriginalUri, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use meta_client::wire;
use meta_raft::model::{Change, Event, WatchArea};
use meta_raft::{Cursor, History, HistoryError, Notice};
use serde::Deserialize;
use tokio::sync::{broadcast, mpsc};

use crate::auth::Principal;
use crate::http::{ApiError, ApiResult, ApiState, node_wire, read_barrier, require_kv};

/// Chunks a watcher's connection may have waiting to be sent (each at
/// most about [`OUT_BATCH_BYTES`]): with the socket's buffers, what a
/// watcher that does not read can hold of the node's memory.
const WATCH_BUFFER: usize = 4;
/// A busy watch sends at most one chunk per this long (its changes wait
/// at most this much; a quiet watch sends at once).
const DELIVERY_WINDOW: Duration = Duration::from_millis(100);
/// How long a message may wait for a client that does not read.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// History read at once, in changes and bytes.
const READ_EVENTS: usize = 256;
const READ_BYTES: usize = 1 << 20;

/// The query of a watch.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WatchQuery {
    /// Only records whose name starts with this (default: all).
    prefix: Option<String>,
    /// Only this record.
    key: Option<String>,
    /// The first revision to report (default: the next one).
    from_revision: Option<u64>,
    /// Add each record's previous version.
    #[serde(default)]
    prev: bool,
    /// Wait for a read index first, so the watch starts after every write
    /// acknowledged before it.
    #[serde(default)]
    linearizable: bool,
}

/// What a watcher follows.
#[derive(Clone, Debug)]
struct Filter {
    area: WatchArea,
    name: Vec<u8>,
    exact: bool,
}

impl Filter {
    fn matches(&self, change: &Change) -> bool {
        let (area, name) = change.address();
        self.matches_address(area, &name)
    }

    fn matches_address(&self, area: WatchArea, name: &[u8]) -> bool {
        area == self.area
            && match self.exact {
                true => name == self.name,
                false => name.starts_with(&self.name),
            }
    }
}

/// `GET /v1/watch`: user keys (the caller's `kv:read` must cover the key
/// or prefix).
pub(crate) async fn kv(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    uri: OriginalUri,
    query: Query<WatchQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let name = query
        .key
        .as_deref()
        .or(query.prefix.as_deref())
        .unwrap_or("");
    require_kv(&principal, false, name)?;
    watch(state, &principal, uri, query.0, &headers, WatchArea::Kv).await
}

/// The areas of `/v1/watch/{cluster,shards,config}`, as the const
/// parameter of [`area`].
pub(crate) const CLUSTER: u8 = 0;
/// See [`CLUSTER`].
pub(crate) const SHARDS: u8 = 1;
/// See [`CLUSTER`].
pub(crate) const CONFIG: u8 = 2;

/// `GET /v1/watch/cluster`, `/shards`, `/config` (the route's own read
/// scope is checked by the router).
pub(crate) async fn area<const AREA: u8>(
    State(state): State<ApiState>,
    Extension(principal): Extension<Principal>,
    uri: OriginalUri,
    query: Query<WatchQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let area = match AREA {
        CLUSTER => WatchArea::Cluster,
        SHARDS => WatchArea::Shards,
        _ => WatchArea::Config,
    };
    watch(state, &principal, uri, query.0, &headers, area).await
}

/// The revision after which `Last-Event-ID` resumes.
fn last_event_id(headers: &HeaderMap) -> ApiResult<Option<u64>> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(
                "`Last-Event-ID` must be a revision (the `id` of the last event received)",
            )
        })
}

async fn watch(
    state: ApiState,
    principal: &Principal,
    uri: OriginalUri,
    query: WatchQuery,
    headers: &HeaderMap,
    area: WatchArea,
) -> ApiResult<Response> {
    if query.key.is_some() && query.prefix.is_some() {
        return Err(ApiError::bad_request(
            "a watch takes `key` or `prefix`, not both",
        ));
    }
    let resume = last_event_id(headers)?;
    read_barrier(&state, &uri, !query.linearizable).await?;
    let history = state.history.clone();
    let start = match (resume, query.from_revision) {
        (Some(last), _) => last.saturating_add(1),
        (None, Some(from)) => from.max(1),
        (None, None) => history.revision() + 1,
    };
    let compacted = history.compacted();
    if start <= compacted {
        return Err(compacted_error(start, compacted, history.revision()));
    }
    let filter = Filter {
        area,
        exact: query.key.is_some(),
        name: query.key.or(query.prefix).unwrap_or_default().into_bytes(),
    };
    let (tx, rx) = mpsc::channel(WATCH_BUFFER);
    let watcher = Watcher {
        history,
        filter,
        prev: query.prev,
        tx,
        // Under half the idle deadline, which would close the connection.
        progress: Duration::from_millis(
            state
                .watch
                .progress_ms
                .min(state.limits.idle_timeout_secs.saturating_mul(500))
                .max(1),
        ),
        pending: None,
        out: Vec::new(),
        fanout: state.fanout.clone(),
        done: start - 1,
        last_sent: tokio::time::Instant::now(),
        key: match principal {
            Principal::Key { id, .. } => Some(id.clone()),
            _ => None,
        },
        reader: state.reader.clone(),
    };
    state.fanout.runtime.spawn(watcher.run(Cursor::at(start)));
    let mut response = Response::new(Body::new(super::ChannelBody { rx }));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Where the watch starts (after this revision): a client that loses
    // the stream before any message resumes from here.
    headers.insert(
        axum::http::HeaderName::from_static(wire::REVISION_HEADER),
        HeaderValue::from(start - 1),
    );
    Ok(response)
}

fn compacted_error(start: u64, compacted: u64, revision: u64) -> ApiError {
    ApiError::new(
        StatusCode::GONE,
        "compacted",
        format!(
            "revision {start} is compacted: this node keeps the changes after revision \
             {compacted}; list the current state and watch from its revision"
        ),
    )
    .with("oldest_revision", compacted + 1)
    .at_revision(revision)
}

/// Bytes queued before they are sent early (else a notice's messages go
/// out as one chunk).
const OUT_BATCH_BYTES: usize = 64 << 10;

/// A change rendered once for every watcher: its address (what filters
/// look at) and its message without and with the record it replaced.
pub struct Rendered {
    revision: u64,
    area: WatchArea,
    name: Vec<u8>,
    plain: Bytes,
    with_prev: Bytes,
}

/// What the fan-out tells watchers after each apply.
pub enum Fanned {
    /// Revisions up to `through` are applied; their changes, rendered (or
    /// `None`: read them from the history).
    Applied {
        /// The store's revision after the apply.
        through: u64,
        /// The changes.
        events: Option<Arc<[Rendered]>>,
    },
    /// A snapshot replaced the state at `revision`.
    Reset {
        /// Its revision.
        revision: u64,
    },
    /// The fan-out missed notices (it fell behind, or it starts
    /// listening again for a first watcher): read the history.
    Gap,
}

/// Renders each change once for all watchers: a task that follows the
/// state machine's notices and passes them on, rendered. Watchers of the
/// same change share its bytes, so a change costs each watcher a filter
/// check and a copy of a reference, not a JSON encoding.
///
/// The fan-out and every watcher run on a runtime of their own (one
/// thread): thousands of busy watchers then queue behind each other, not
/// in front of Raft and the other requests.
#[derive(Clone)]
pub struct Fanout {
    tx: broadcast::Sender<Arc<Fanned>>,
    /// Told when a watcher subscribes: the fan-out listens to the history
    /// only while someone watches.
    first: Arc<tokio::sync::Notify>,
    runtime: tokio::runtime::Handle,
    _stop: Arc<StopOnDrop>,
}

/// Stops the watch runtime's thread when the last [`Fanout`] goes.
struct StopOnDrop(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            let _ = stop.send(());
        }
    }
}

impl Fanout {
    /// Starts the fan-out of `history`'s notices, on a thread and runtime
    /// of its own that its watchers share.
    pub fn start(history: &History) -> std::io::Result<Fanout> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("watch".into())
            .spawn(move || {
                // Until the node drops its fan-out; then every watcher ends.
                let _ = runtime.block_on(stopped);
            })?;
        let (tx, _) = broadcast::channel(FANOUT_CAPACITY);
        let first = Arc::new(tokio::sync::Notify::new());
        let (out, history, watcher_came) = (tx.clone(), history.clone(), first.clone());
        handle.spawn(async move {
            let mut listening = None;
            loop {
                // Nobody watches: the fan-out stops listening to the
                // history, so an apply wakes no thread here (a wake-up on
                // the apply path of every write otherwise).
                if out.receiver_count() == 0 {
                    listening = None;
                    watcher_came.notified().await;
                }
                let notices = match &mut listening {
                    Some(notices) => notices,
                    None => {
                        // Listening first: whatever is applied from now on
                        // comes as a notice. The new watchers read what
                        // came before from the history.
                        let notices = listening.insert(history.subscribe());
                        let _ = out.send(Arc::new(Fanned::Gap));
                        notices
                    }
                };
                let fanned = match notices.recv().await {
                    Ok(notice) => match &*notice {
                        Notice::Applied { through, events } => Fanned::Applied {
                            through: *through,
                            // Rendered only when someone watches (2.7% of a
                            // node's CPU under writes otherwise): a watcher
                            // that subscribes meanwhile gets `None` and
                            // reads the changes from the history.
                            events: events.as_ref().filter(|_| out.receiver_count() > 0).map(
                                |events| events.iter().map(rendered).collect::<Vec<_>>().into(),
                            ),
                        },
                        Notice::Reset { revision } => Fanned::Reset {
                            revision: *revision,
                        },
                    },
                    Err(broadcast::error::RecvError::Lagged(_)) => Fanned::Gap,
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                // No receiver: nobody watches.
                let _ = out.send(Arc::new(fanned));
            }
        });
        Ok(Fanout {
            tx,
            first,
            runtime: handle,
            _stop: Arc::new(StopOnDrop(Some(stop))),
        })
    }

    /// How many watches are open.
    pub fn watchers(&self) -> usize {
        self.tx.receiver_count()
    }

    fn subscribe(&self) -> broadcast::Receiver<Arc<Fanned>> {
        let notices = self.tx.subscribe();
        self.first.notify_one();
        notices
    }
}

/// How many applies a watcher may be behind before it is told it lagged.
const FANOUT_CAPACITY: usize = 1024;

fn rendered(event: &Event) -> Rendered {
    let (area, name) = event.change.address();
    let plain = render(event, false);
    let with_prev = match event.prev.is_some() || event.prev_omitted {
        true => render(event, true),
        false => plain.clone(),
    };
    Rendered {
        revision: event.revision,
        area,
        name: name.into_owned(),
        plain,
        with_prev,
    }
}

/// Why a watch stopped.
enum Stop {
    /// The client went away.
    Gone,
    /// The stream ends with this `end` message.
    End(wire::WatchEnd),
}

/// One watch's task.
struct Watcher {
    history: History,
    filter: Filter,
    prev: bool,
    tx: mpsc::Sender<std::io::Result<Bytes>>,
    progress: Duration,
    /// The last matching event, not sent yet: it carries the `id` if no
    /// later event of its revision follows.
    pending: Option<(u64, Bytes)>,
    /// Messages to send as one chunk.
    out: Vec<u8>,
    fanout: Fanout,
    /// Every change up to this revision was sent (or did not match).
    done: u64,
    /// When the last message went out (progress follows an idle spell).
    last_sent: tokio::time::Instant,
    /// The API key that opened the watch (`None`: an insecure node).
    key: Option<meta_raft::model::ApiKeyId>,
    reader: meta_raft::MetadataReader,
}

impl Watcher {
    async fn run(mut self, from: Cursor) {
        let stop = match self.serve(from).await {
            Ok(never) => match never {},
            Err(stop) => stop,
        };
        if let Stop::End(end) = stop {
            // A pending event's revision may be incomplete: it comes again
            // after a resume from `end.revision`.
            self.pending = None;
            let end = message(wire::event::END, &end);
            if self.queue(&end, None).await.is_ok() {
                let _ = self.send_queued().await;
            }
        }
    }

    async fn serve(&mut self, mut cursor: Cursor) -> Result<Infallible, Stop> {
        // Catch up from the history, then subscribe, then read what was
        // applied meanwhile: once nothing was, the notices carry on.
        let mut notices = loop {
            cursor = self.replay(cursor).await?;
            let notices = self.fanout.subscribe();
            let applied = self.history.revision();
            if cursor.revision > applied {
                break notices;
            }
        };
        self.progress_message().await?;
        loop {
            // A busy stream (it sent less than a window ago) waits out the
            // window before it looks at the notices again: one wakeup per
            // window, not one per apply.
            let window_ends = self.last_sent + DELIVERY_WINDOW;
            if tokio::time::Instant::now() < window_ends {
                tokio::select! {
                    () = tokio::time::sleep_until(window_ends) => {}
                    () = self.tx.closed() => return Err(Stop::Gone),
                }
            }
            let notice = tokio::select! {
                notice = notices.recv() => notice,
                () = tokio::time::sleep_until(self.last_sent + self.progress) => {
                    self.still_authorized()?;
                    self.progress_message().await?;
                    continue;
                }
                () = self.tx.closed() => return Err(Stop::Gone),
            };
            self.still_authorized()?;
            cursor = self.handle(cursor, notice).await?;
            // Whatever else is there by now goes in the same chunk: a busy
            // stream sends one chunk per DELIVERY_WINDOW, so 10,000 busy
            // watchers cost the node a wakeup and a write each per window,
            // not per apply. A quiet stream sends at once.
            loop {
                let more = match notices.try_recv() {
                    Ok(notice) => Ok(notice),
                    Err(broadcast::error::TryRecvError::Empty) => break,
                    Err(broadcast::error::TryRecvError::Lagged(n)) => {
                        Err(broadcast::error::RecvError::Lagged(n))
                    }
                    Err(broadcast::error::TryRecvError::Closed) => {
                        Err(broadcast::error::RecvError::Closed)
                    }
                };
                cursor = self.handle(cursor, more).await?;
            }
            self.send_queued().await?;
        }
    }

    /// Takes one notice (or why there is none); returns the new cursor.
    async fn handle(
        &mut self,
        mut cursor: Cursor,
        notice: Result<Arc<Fanned>, broadcast::error::RecvError>,
    ) -> Result<Cursor, Stop> {
        match notice {
            Ok(notice) => match &*notice {
                Fanned::Applied { through, events } => {
                    match events {
                        Some(events) => cursor = self.live(cursor, events).await?,
                        None => cursor = self.replay(cursor).await?,
                    }
                    cursor = cursor.max(Cursor::at(through + 1));
                    self.complete(*through).await?;
                    Ok(cursor)
                }
                // The fan-out fell behind the state machine: catch up from
                // the history.
                Fanned::Gap => self.replay(cursor).await,
                Fanned::Reset { revision } if self.done < *revision => {
                    let compacted = self.history.compacted();
                    Err(Stop::End(wire::WatchEnd {
                        code: "compacted".into(),
                        message: format!(
                            "this node installed a snapshot at revision {revision}: the changes \
                             after {} are not in its history; list the current state and watch \
                             from its revision",
                            self.done
                        ),
                        oldest_revision: Some(compacted + 1),
                        revision: self.done,
                    }))
                }
                Fanned::Reset { .. } => Ok(cursor),
            },
            Err(broadcast::error::RecvError::Lagged(_)) => Err(Stop::End(wire::WatchEnd {
                code: "lagged".into(),
                message: format!(
                    "this watcher read too slowly and fell behind; resume after revision {} \
                     (Last-Event-ID)",
                    self.done
                ),
                oldest_revision: None,
                revision: self.done,
            })),
            Err(broadcast::error::RecvError::Closed) => Err(Stop::End(wire::WatchEnd {
                code: "shutting_down".into(),
                message: "this node is stopping; resume on another node".into(),
                oldest_revision: None,
                revision: self.done,
            })),
        }
    }

    /// Reads the history from `cursor` up to this node's applied revision
    /// (at least), sending what matches; returns where it stopped.
    async fn replay(&mut self, mut cursor: Cursor) -> Result<Cursor, Stop> {
        loop {
            // Read before the history: every revision up to here is in the
            // store once the read below flushed what waited.
            let applied = self.history.revision();
            if cursor.revision > applied {
                self.complete(applied).await?;
                return Ok(cursor);
            }
            let (history, prev, filter) = (self.history.clone(), self.prev, self.filter.clone());
            let read = tokio::task::spawn_blocking(move || {
                history.read(cursor, READ_EVENTS, READ_BYTES, prev, |c| filter.matches(c))
            })
            .await
            .map_err(|e| internal_end(self.done, format!("reading the history: {e}")))?;
            let (events, next) = match read {
                Ok(read) => read,
                Err(HistoryError::Compacted { compacted, .. }) => {
                    return Err(Stop::End(wire::WatchEnd {
                        code: "compacted".into(),
                        message: format!(
                            "the changes after revision {} were trimmed from this node's \
                             history before they were sent; list the current state and watch \
                             from its revision",
                            self.done
                        ),
                        oldest_revision: Some(compacted + 1),
                        revision: self.done,
                    }));
                }
                Err(e) => return Err(internal_end(self.done, e.to_string())),
            };
            if next == cursor {
                // Nothing (more) up to the applied revision.
                self.complete(applied).await?;
                return Ok(Cursor::at(applied + 1).max(cursor));
            }
            for (at, event) in events {
                if event.revision > applied {
                    // Not applied yet when this read began: its notice
                    // follows (this revision may be incomplete here).
                    self.complete(applied).await?;
                    return Ok(at);
                }
                // A revision whose last change was read is complete once
                // a later one shows up.
                self.complete(event.revision - 1).await?;
                self.offer(event.revision, render(&event, self.prev))
                    .await?;
            }
            // Whatever this read held goes out now.
            self.send_queued().await?;
            cursor = next;
        }
    }

    /// Sends the live `events` at or after `cursor`; returns the cursor
    /// after them.
    async fn live(&mut self, mut cursor: Cursor, events: &[Rendered]) -> Result<Cursor, Stop> {
        let mut seq = 0u32;
        let mut last = None;
        for event in events {
            if last != Some(event.revision) {
                (last, seq) = (Some(event.revision), 0);
            }
            let at = Cursor {
                revision: event.revision,
                seq,
            };
            seq += 1;
            if at < cursor {
                continue;
            }
            self.complete(event.revision - 1).await?;
            cursor = Cursor {
                revision: at.revision,
                seq: at.seq + 1,
            };
            if !self.filter.matches_address(event.area, &event.name) {
                continue;
            }
            let message = match self.prev {
                true => event.with_prev.clone(),
                false => event.plain.clone(),
            };
            self.offer(event.revision, message).await?;
        }
        Ok(cursor)
    }

    /// Takes one matching change in order: queues the pending one (with
    /// its `id` if this one is of a later revision) and keeps this one
    /// pending.
    async fn offer(&mut self, revision: u64, message: Bytes) -> Result<(), Stop> {
        if let Some((pending_revision, pending)) = self.pending.take() {
            let id = (pending_revision != revision).then_some(pending_revision);
            self.queue(&pending, id).await?;
        }
        self.pending = Some((revision, message));
        Ok(())
    }

    /// Every change up to `revision` was offered: the pending event is
    /// the last of its revision.
    async fn complete(&mut self, revision: u64) -> Result<(), Stop> {
        if revision <= self.done {
            return Ok(());
        }
        if self.pending.as_ref().is_some_and(|(r, _)| *r <= revision) {
            self.flush().await?;
        }
        self.done = revision;
        Ok(())
    }

    /// Queues the pending event with its `id`.
    async fn flush(&mut self) -> Result<(), Stop> {
        if let Some((revision, pending)) = self.pending.take() {
            self.queue(&pending, Some(revision)).await?;
        }
        Ok(())
    }

    async fn progress_message(&mut self) -> Result<(), Stop> {
        self.flush().await?;
        let done = self.done;
        let body = wire::WatchProgress { revision: done };
        let message = message(wire::event::PROGRESS, &body);
        self.queue(&message, Some(done)).await?;
        self.send_queued().await
    }

    /// Adds a message (and its `id`) to what goes out next; sends early
    /// once that is large.
    async fn queue(&mut self, message: &[u8], id: Option<u64>) -> Result<(), Stop> {
        self.out.extend_from_slice(message);
        if let Some(id) = id {
            self.out.extend_from_slice(format!("id: {id}\n").as_bytes());
        }
        self.out.push(b'\n');
        if self.out.len() >= OUT_BATCH_BYTES {
            self.send_queued().await?;
        }
        Ok(())
    }

    /// Sends what is queued, as one chunk.
    async fn send_queued(&mut self) -> Result<(), Stop> {
        if self.out.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.out));
        self.send(chunk).await
    }

    /// Queues a message for the connection. A client that takes none for
    /// [`SEND_TIMEOUT`] (it reads a byte now and then, so the idle deadline
    /// never cuts it) is dropped: it costs the node no more than that.
    async fn send(&mut self, bytes: Bytes) -> Result<(), Stop> {
        match tokio::time::timeout(SEND_TIMEOUT, self.tx.send(Ok(bytes))).await {
            Ok(Ok(())) => {
                self.last_sent = tokio::time::Instant::now();
                Ok(())
            }
            Ok(Err(_)) | Err(_) => Err(Stop::Gone),
        }
    }

    /// Whether the key that opened the watch still may (not revoked, not
    /// expired): checked at every notice and progress report, so a
    /// revocation ends open watches too.
    fn still_authorized(&self) -> Result<(), Stop> {
        let Some(id) = &self.key else {
            return Ok(());
        };
        if self.reader.api_key_live(id, crate::http::now_ms()) {
            return Ok(());
        }
        Err(Stop::End(wire::WatchEnd {
            code: "unauthenticated".into(),
            message: format!("the API key `{id}` was revoked or expired"),
            oldest_revision: None,
            revision: self.done,
        }))
    }
}

fn internal_end(done: u64, message: String) -> Stop {
    tracing::warn!("a watch ends: {message}");
    Stop::End(wire::WatchEnd {
        code: "internal".into(),
        message,
        oldest_revision: None,
        revision: done,
    })
}

/// One SSE message without its end: `event:` and one `data:` line of
/// JSON (the `id:` line, if any, and the blank line follow).
fn message(event: &str, data: &impl serde::Serialize) -> Bytes {
    let json = serde_json::to_string(data).expect("watch messages always serialize");
    Bytes::from(format!("event: {event}\ndata: {json}\n"))
}

/// A change's message, with or without the record it replaced.
fn render(event: &Event, prev: bool) -> Bytes {
    let mut shown = event_wire(event);
    if !prev {
        shown.prev = None;
        shown.prev_omitted = false;
    }
    let name = match shown.kind {
        wire::EventType::Put => wire::event::PUT,
        wire::EventType::Delete => wire::event::DELETE,
    };
    message(name, &shown)
}

/// A record as a watch shows it.
fn record_wire(change: &Change) -> wire::WatchRecord {
    let mut record = wire::WatchRecord::default();
    match change {
        Change::Kv { entry: Some(e), .. } => {
            record.create_revision = Some(e.create_revision);
            record.mod_revision = Some(e.mod_revision);
            record.version = Some(e.version);
            record.value = wire::WireValue::from_bytes(&e.value);
        }
        Change::Node { node: Some(n), .. } => record.node = Some(node_wire(n)),
        Change::ShardMap(map) => {
            record.shard_map = Some(wire::ShardMapRecord {
                version: map.version,
                shards: map
                    .shards
                    .iter()
                    .map(|(id, a)| {
                        let replicas = a.replicas.clone();
                        (*id, wire::ShardAssignment { replicas })
                    })
                    .collect(),
            });
        }
        Change::Config { value: Some(v), .. } => {
            record.value = wire::WireValue::from_bytes(v.as_bytes());
        }
        Change::Kv { entry: None, .. }
        | Change::Node { node: None, .. }
        | Change::Config { value: None, .. } => {}
    }
    record
}

/// A change as a watch shows it.
fn event_wire(event: &Event) -> wire::WatchEvent {
    let (_, name) = event.change.address();
    wire::WatchEvent {
        key: String::from_utf8_lossy(&name).into_owned(),
        prev: event.prev.as_ref().map(record_wire),
        prev_omitted: event.prev_omitted,
        record: record_wire(&event.change),
        revision: event.revision,
        kind: match event.change.is_put() {
            true => wire::EventType::Put,
            false => wire::EventType::Delete,
        },
    }
}
