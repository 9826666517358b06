//! The typed async client.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::ClientError;
use crate::wire::{self, ErrorResponse};

/// Redirects followed for one request, at most.
const MAX_REDIRECTS: usize = 3;
/// The deadline of a streamed answer (a watch), which ends when it ends:
/// the watch's own idle timeout notices a dead connection.
const STREAM_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// A key as read, and the store's revision at the read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Read {
    /// The key, or `None` if it does not exist.
    pub kv: Option<wire::KeyValue>,
    /// The store's revision when it was read.
    pub revision: u64,
}

/// A precondition of a conditional write (`If-Match` / `If-None-Match`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Precondition {
    /// The key exists and its `mod_revision` is this one.
    ModRevision(u64),
    /// The key exists.
    Exists,
    /// The key does not exist (create only).
    Absent,
}

impl Precondition {
    fn header(self) -> (&'static str, String) {
        match self {
            Precondition::ModRevision(r) => ("if-match", format!("\"{r}\"")),
            Precondition::Exists => ("if-match", "*".into()),
            Precondition::Absent => ("if-none-match", "*".into()),
        }
    }
}

/// How a read is served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Consistency {
    /// Linearizable: the leader confirms it leads (a Raft read index).
    #[default]
    Linearizable,
    /// From the contacted node's applied state: faster, possibly behind.
    Stale,
}

/// Builds a [`Client`].
#[derive(Clone)]
pub struct ClientBuilder {
    endpoints: Vec<String>,
    token: Option<String>,
    ca: Option<PathBuf>,
    timeout: Duration,
    retries: u32,
    backoff: Duration,
}

impl std::fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("endpoints", &self.endpoints)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca", &self.ca)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .finish()
    }
}

impl ClientBuilder {
    /// A client of these nodes: `host:port` (https with a CA, else http)
    /// or full `http://` / `https://` URLs, all of one scheme.
    pub fn new<I, S>(endpoints: I) -> ClientBuilder
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ClientBuilder {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            token: None,
            ca: None,
            timeout: Duration::from_secs(30),
            retries: 6,
            backoff: Duration::from_millis(100),
        }
    }

    /// The bearer token (`<id>.<secret>`) sent with every request.
    pub fn token(mut self, token: impl Into<String>) -> ClientBuilder {
        self.token = Some(token.into());
        self
    }

    /// The cluster CA (PEM) that the nodes' certificates must chain to;
    /// endpoints without a scheme are then `https://`.
    pub fn ca(mut self, ca: impl Into<PathBuf>) -> ClientBuilder {
        self.ca = Some(ca.into());
        self
    }

    /// How long one HTTP exchange may take (default 30 s).
    pub fn timeout(mut self, timeout: Duration) -> ClientBuilder {
        self.timeout = timeout;
        self
    }

    /// How many times a request is retried (default 6): on another
    /// endpoint when one cannot be reached, and after a pause (100 ms,
    /// doubling up to 2 s) when the cluster has no leader for a moment.
    pub fn retries(mut self, retries: u32, first_backoff: Duration) -> ClientBuilder {
        self.retries = retries;
        self.backoff = first_backoff;
        self
    }

    /// The client. Refuses endpoints of mixed or unknown schemes, an
    /// `https://` endpoint without a CA, and a token that would travel in
    /// plaintext to a host that is not loopback.
    pub fn build(self) -> Result<Client, ClientError> {
        if self.endpoints.is_empty() {
            return Err(ClientError::Config("no endpoint given".into()));
        }
        let default_scheme = if self.ca.is_some() { "https" } else { "http" };
        let mut bases = Vec::new();
        for endpoint in &self.endpoints {
            let endpoint = endpoint.trim().trim_end_matches('/');
            let base = if endpoint.contains("://") {
                endpoint.to_string()
            } else {
                format!("{default_scheme}://{endpoint}")
            };
            let url = reqwest::Url::parse(&base).map_err(|e| {
                ClientError::Config(format!(
                    "endpoint `{endpoint}` is not host:port or a URL: {e}"
                ))
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                return Err(ClientError::Config(format!(
                    "endpoint `{endpoint}` must be host:port, http://host:port or https://host:port"
                )));
            }
            bases.push(base);
        }
        let scheme = bases[0].split("://").next().unwrap_or("http").to_string();
        if bases
            .iter()
            .any(|b| !b.starts_with(&format!("{scheme}://")))
        {
            return Err(ClientError::Config(
                "all endpoints must use the same scheme (a cluster serves one)".into(),
            ));
        }
        let mut builder = http_builder()
            .timeout(self.timeout)
            .redirect(reqwest::redirect::Policy::none());
        if scheme == "https" {
            let ca = self.ca.as_deref().ok_or_else(|| {
                ClientError::Config(
                    "an https:// endpoint needs the cluster CA: pass --ca FILE (or META_CA), \
                     or run where <data-dir>/tls/ca.pem exists"
                        .into(),
                )
            })?;
            builder = builder
                .tls_backend_preconfigured(crate::tls::client_config(ca)?)
                .https_only(true);
        } else if self.token.is_some()
            && let Some(far) = bases.iter().find(|b| !is_loopback(b))
        {
            // A token in plaintext across a network is a token given away.
            return Err(ClientError::Config(format!(
                "refusing to send a token over plain http:// to `{far}`, which is not a \
                 loopback address: use https:// (the node needs [tls])"
            )));
        }
        let http = builder
            .build()
            .map_err(|e| ClientError::Config(format!("building the HTTP client: {e}")))?;
        Ok(Client {
            bases,
            http,
            token: self.token,
            preferred: AtomicUsize::new(0),
            retries: self.retries,
            backoff: self.backoff,
        })
    }
}

/// A request body.
#[derive(Clone, Debug)]
enum Body {
    Json(Vec<u8>),
    Bytes(Vec<u8>),
}

/// One request, as the retry loop resends it.
struct Request<'a> {
    method: Method,
    path: &'a str,
    body: Option<Body>,
    headers: Vec<(&'static str, String)>,
    /// The answer is a stream read for as long as it lasts (a watch): no
    /// overall deadline.
    stream: bool,
}

impl Request<'_> {
    /// Whether it only reads: sending it again after it may have arrived
    /// changes nothing. (A `PUT` or `DELETE` is idempotent in HTTP's sense,
    /// but resending one can undo another client's write in between, or
    /// turn a conditional write that succeeded into a 412.)
    fn reads(&self) -> bool {
        matches!(self.method, Method::GET | Method::HEAD)
    }
}

/// A client of a cluster's HTTP API (`docs/client.md`): typed requests and
/// answers ([`wire`]), several endpoints, redirects followed to the
/// leader (only to a member's API address: a token never goes elsewhere),
/// retries where they are safe, and [`ClientError`] for everything else.
///
/// ```no_run
/// # async fn demo() -> Result<(), meta_client::ClientError> {
/// use meta_client::{ClientBuilder, Precondition};
/// let client = ClientBuilder::new(["127.0.0.1:7700"])
///     .token(std::fs::read_to_string("meta-data/root.token").unwrap().trim())
///     .build()?;
/// let put = client.put("app/limit", b"10").await?;
/// let kv = client.get("app/limit").await?.expect("just written");
/// assert_eq!(kv.mod_revision, put.revision);
/// // Read-modify-write without lost updates: 412 if someone wrote in between.
/// client
///     .put_if("app/limit", b"20", Precondition::ModRevision(kv.mod_revision))
///     .await?;
/// # Ok(()) }
/// ```
pub struct Client {
    bases: Vec<String>,
    http: reqwest::Client,
    token: Option<String>,
    /// The endpoint that answered last.
    preferred: AtomicUsize,
    retries: u32,
    backoff: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("endpoints", &self.bases)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Client {
    /// The endpoints, as URLs.
    pub fn endpoints(&self) -> &[String] {
        &self.bases
    }

    /// Sends `request`, retrying where safe; the successful answer.
    async fn send(&self, request: &Request<'_>) -> Result<reqwest::Response, ClientError> {
        let mut backoff = self.backoff;
        let mut attempt = 0;
        loop {
            let index = self.preferred.load(Ordering::Relaxed) % self.bases.len();
            let error = match self.send_to(index, request).await {
                Ok(response) => return Ok(response),
                Err(e) => e,
            };
            let retry = match &error {
                // Never sent: any request may go elsewhere.
                ClientError::Transport { source, .. } if source.is_connect() => {
                    self.preferred.store(index + 1, Ordering::Relaxed);
                    true
                }
                // It may have arrived: only a read goes again.
                ClientError::Transport { .. } => {
                    self.preferred.store(index + 1, Ordering::Relaxed);
                    request.reads()
                }
                // Refused before reaching Raft (no leader known, leadership
                // moving), or a read index that could not be had: nothing
                // happened.
                ClientError::Api { error, .. } => matches!(
                    error.code.as_str(),
                    "no_leader" | "unavailable" | "leader_transfer"
                ),
                _ => false,
            };
            if !retry || attempt >= self.retries {
                return Err(error);
            }
            attempt += 1;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// Sends `request` to endpoint `index`, following redirects to
    /// members.
    async fn send_to(
        &self,
        index: usize,
        request: &Request<'_>,
    ) -> Result<reqwest::Response, ClientError> {
        let base = &self.bases[index];
        let mut url = format!("{base}{}", request.path);
        let mut response = self.exchange(&url, request).await?;
        for hop in 0..=MAX_REDIRECTS {
            if !matches!(
                response.status(),
                StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
            ) {
                break;
            }
            let Some(location) = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .map(str::to_string)
            else {
                break;
            };
            if hop == MAX_REDIRECTS {
                return Err(ClientError::Redirect(format!(
                    "more than {MAX_REDIRECTS} redirects for {} {}",
                    request.method, request.path
                )));
            }
            if !self.is_member_api(base, &location).await? {
                return Err(ClientError::Redirect(format!(
                    "refusing to follow a redirect to {location}: it is not the client API \
                     address of a cluster member (credentials are only sent to members)"
                )));
            }
            url = location;
            response = self.exchange(&url, request).await?;
        }
        if response.status().is_success() || response.status() == StatusCode::NOT_MODIFIED {
            return Ok(response);
        }
        Err(api_error(response).await)
    }

    /// One HTTP exchange, whatever its status.
    async fn exchange(
        &self,
        url: &str,
        request: &Request<'_>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut builder = self.http.request(request.method.clone(), url);
        if let Some(token) = &self.token {
            builder = builder.bearer_auth(token);
        }
        builder = match &request.body {
            Some(Body::Json(bytes)) => builder
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes.clone()),
            Some(Body::Bytes(bytes)) => builder
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(bytes.clone()),
            None => builder,
        };
        for (name, value) in &request.headers {
            builder = builder.header(*name, value.as_str());
        }
        if request.stream {
            builder = builder.timeout(STREAM_TIMEOUT);
        }
        builder
            .send()
            .await
            .map_err(|source| ClientError::Transport {
                method: request.method.to_string(),
                url: url.to_string(),
                // The URL is in the message already.
                source: source.without_url(),
            })
    }

    /// Whether `location` is a member's client API address (same scheme,
    /// no user info), according to the node at `base`.
    async fn is_member_api(&self, base: &str, location: &str) -> Result<bool, ClientError> {
        let (Ok(base_url), Ok(target)) = (reqwest::Url::parse(base), reqwest::Url::parse(location))
        else {
            return Ok(false);
        };
        let Some(host) = target.host_str().filter(|h| !h.is_empty()) else {
            return Ok(false);
        };
        if target.scheme() != base_url.scheme()
            || !target.username().is_empty()
            || target.password().is_some()
            // The plaintext rule holds for redirects too.
            || (target.scheme() == "http" && self.token.is_some() && !is_loopback(location))
        {
            return Ok(false);
        }
        let authority = format!("{host}:{}", target.port_or_known_default().unwrap_or(0));
        let status = Request {
            method: Method::GET,
            path: "/v1/cluster/status",
            body: None,
            headers: Vec::new(),
            stream: false,
        };
        let response = self
            .exchange(&format!("{base}/v1/cluster/status"), &status)
            .await?;
        if !response.status().is_success() {
            return Ok(false);
        }
        // Only the members matter here.
        #[derive(serde::Deserialize)]
        struct Members {
            members: std::collections::BTreeMap<String, MemberApi>,
        }
        #[derive(serde::Deserialize)]
        struct MemberApi {
            api: String,
        }
        let status: Members = decode("/v1/cluster/status", response).await?;
        Ok(status.members.values().any(|m| m.api == authority))
    }

    /// Makes the next request go to the next endpoint first.
    pub(crate) fn skip_endpoint(&self) {
        self.preferred.fetch_add(1, Ordering::Relaxed);
    }

    /// Sends a `GET` whose answer is a stream (a watch), retrying where
    /// safe; the answer, whose body the caller reads.
    pub(crate) async fn stream(
        &self,
        method: Method,
        path: &str,
        headers: Vec<(&'static str, String)>,
    ) -> Result<reqwest::Response, ClientError> {
        let request = Request {
            method,
            path,
            body: None,
            headers,
            stream: true,
        };
        self.send(&request).await
    }

    /// Sends a request with an optional JSON body and decodes the answer.
    pub async fn request<B: Serialize, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let body = body
            .map(|b| serde_json::to_vec(b).map(Body::Json))
            .transpose()
            .map_err(|e| ClientError::Decode {
                what: format!("the body of {method} {path}"),
                problem: e.to_string(),
            })?;
        let request = Request {
            method,
            path,
            body,
            headers: Vec::new(),
            stream: false,
        };
        decode(path, self.send(&request).await?).await
    }

    /// [`request`](Self::request) answering JSON as it came (routes whose
    /// answer this crate does not type).
    pub async fn request_value(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        self.request(method, path, body).await
    }

    /// `GET /health` (public). A failed node answers 503, an error.
    pub async fn health(&self) -> Result<wire::HealthResponse, ClientError> {
        self.request::<(), _>(Method::GET, "/health", None).await
    }

    /// A key with its revisions; `None` if it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<wire::KeyValue>, ClientError> {
        self.get_with(key, Consistency::Linearizable).await
    }

    /// [`get`](Self::get) with this consistency.
    pub async fn get_with(
        &self,
        key: &str,
        consistency: Consistency,
    ) -> Result<Option<wire::KeyValue>, ClientError> {
        Ok(self.read(key, consistency).await?.kv)
    }

    /// A key (`None`: absent) and the store's revision it was read at.
    pub async fn read(&self, key: &str, consistency: Consistency) -> Result<Read, ClientError> {
        let path = format!(
            "/v1/kv/{}{}",
            encode_path(key),
            stale_query(consistency, '?')
        );
        match self
            .request::<(), wire::GetResponse>(Method::GET, &path, None)
            .await
        {
            Ok(answer) => Ok(Read {
                kv: Some(answer.kv),
                revision: answer.revision,
            }),
            Err(ClientError::Api { error, .. })
                if error.code == "not_found" && error.revision.is_some() =>
            {
                Ok(Read {
                    kv: None,
                    revision: error.revision.unwrap_or_default(),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// A key's value as raw bytes; `None` if it does not exist.
    pub async fn get_raw(
        &self,
        key: &str,
        consistency: Consistency,
    ) -> Result<Option<Vec<u8>>, ClientError> {
        let path = format!(
            "/v1/kv/{}?raw=true{}",
            encode_path(key),
            stale_query(consistency, '&')
        );
        let request = Request {
            method: Method::GET,
            path: &path,
            body: None,
            headers: Vec::new(),
            stream: false,
        };
        match self.send(&request).await {
            Ok(response) => response
                .bytes()
                .await
                .map(|b| Some(b.to_vec()))
                .map_err(|e| ClientError::Decode {
                    what: path.clone(),
                    problem: e.to_string(),
                }),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets a key (any bytes); the answer holds its new `mod_revision`.
    pub async fn put(
        &self,
        key: &str,
        value: impl AsRef<[u8]>,
    ) -> Result<wire::WriteResponse, ClientError> {
        self.write(Method::PUT, key, Some(value.as_ref().to_vec()), None)
            .await
    }

    /// Sets a key if `precondition` holds, else fails with
    /// `precondition_failed` ([`ClientError::is_precondition_failed`]).
    pub async fn put_if(
        &self,
        key: &str,
        value: impl AsRef<[u8]>,
        precondition: Precondition,
    ) -> Result<wire::WriteResponse, ClientError> {
        self.write(
            Method::PUT,
            key,
            Some(value.as_ref().to_vec()),
            Some(precondition),
        )
        .await
    }

    /// Sets a key bound to a lease: it is deleted when the lease ends
    /// (`lease_not_found` if it already did).
    pub async fn put_with_lease(
        &self,
        key: &str,
        value: impl AsRef<[u8]>,
        lease: u64,
    ) -> Result<wire::WriteResponse, ClientError> {
        let value = Some(value.as_ref().to_vec());
        self.write_leased(Method::PUT, key, value, None, Some(lease))
            .await
    }

    /// Deletes a key; `deleted` says whether it existed.
    pub async fn delete(&self, key: &str) -> Result<wire::WriteResponse, ClientError> {
        self.write(Method::DELETE, key, None, None).await
    }

    /// Deletes a key if `precondition` holds.
    pub async fn delete_if(
        &self,
        key: &str,
        precondition: Precondition,
    ) -> Result<wire::WriteResponse, ClientError> {
        self.write(Method::DELETE, key, None, Some(precondition))
            .await
    }

    async fn write(
        &self,
        method: Method,
        key: &str,
        value: Option<Vec<u8>>,
        precondition: Option<Precondition>,
    ) -> Result<wire::WriteResponse, ClientError> {
        self.write_leased(method, key, value, precondition, None)
            .await
    }

    async fn write_leased(
        &self,
        method: Method,
        key: &str,
        value: Option<Vec<u8>>,
        precondition: Option<Precondition>,
        lease: Option<u64>,
    ) -> Result<wire::WriteResponse, ClientError> {
        let mut path = format!("/v1/kv/{}", encode_path(key));
        if let Some(lease) = lease {
            path += &format!("?lease={lease}");
        }
        let request = Request {
            method,
            path: &path,
            body: value.map(Body::Bytes),
            headers: precondition.map(Precondition::header).into_iter().collect(),
            stream: false,
        };
        decode(&path, self.send(&request).await?).await
    }

    /// Deletes every key under a non-empty prefix, at one revision.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<wire::WriteResponse, ClientError> {
        let path = format!("/v1/kv?prefix={}", encode_query(prefix));
        self.request::<(), _>(Method::DELETE, &path, None).await
    }

    /// One page of the keys under `prefix`, after `start_after`.
    pub async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        consistency: Consistency,
    ) -> Result<wire::ListResponse, ClientError> {
        let mut path = format!(
            "/v1/kv?prefix={}&limit={limit}{}",
            encode_query(prefix),
            stale_query(consistency, '&')
        );
        if let Some(after) = start_after {
            path.push_str(&format!("&start_after={}", encode_query(after)));
        }
        self.request::<(), _>(Method::GET, &path, None).await
    }

    /// Up to `max` keys under `prefix`, following the pages: one answer
    /// with every key read, `next` the cursor after them (`None` once all
    /// were read) and the first page's revision.
    pub async fn list_all(
        &self,
        prefix: &str,
        max: usize,
        consistency: Consistency,
    ) -> Result<wire::ListResponse, ClientError> {
        let path = format!(
            "/v1/kv?prefix={}{}",
            encode_query(prefix),
            stale_query(consistency, '&')
        );
        let all = self.pages(&path, "items", max.max(1)).await?;
        from_value(&path, all)
    }

    /// Compare-and-swap by value (`/v1/cas`).
    pub async fn cas(
        &self,
        request: &wire::CasRequest,
    ) -> Result<wire::WriteResponse, ClientError> {
        self.request(Method::POST, "/v1/cas", Some(request)).await
    }

    /// Runs a transaction (`/v1/txn`).
    pub async fn txn(&self, request: &wire::TxnRequest) -> Result<wire::TxnResponse, ClientError> {
        self.request(Method::POST, "/v1/txn", Some(request)).await
    }

    /// GETs the pages of a listing at `path` (which ends in `?` or a
    /// query), up to `max_items` items of `field` (an array, or an object
    /// such as the shard map), following each page's `next`; a shard map is
    /// read at the version of its first page (409 if it changed meanwhile).
    /// The answer is the first page's, with `field` holding every item read
    /// and `next` the cursor after them (null once everything was read).
    pub async fn pages(
        &self,
        path: &str,
        field: &str,
        max_items: usize,
    ) -> Result<Value, ClientError> {
        let sep = if path.ends_with('?') { "" } else { "&" };
        let page_path = |read: usize, after: Option<(&str, Option<u64>)>| {
            let mut p = format!(
                "{path}{sep}limit={}",
                (max_items - read).min(MAX_PAGE_ITEMS)
            );
            if let Some((next, version)) = after {
                p.push_str(&format!("&start_after={}", encode_query(next)));
                if let Some(version) = version {
                    p.push_str(&format!("&version={version}"));
                }
            }
            p
        };
        let count = |v: &Value| match v {
            Value::Array(a) => a.len(),
            Value::Object(o) => o.len(),
            _ => 0,
        };
        let mut answer = self
            .request_value(Method::GET, &page_path(0, None), None)
            .await?;
        loop {
            let read = count(&answer[field]);
            let Some(next) = answer["next"].as_str().map(str::to_owned) else {
                break;
            };
            if read >= max_items {
                break;
            }
            let version = answer["version"].as_u64();
            let page = self
                .request_value(Method::GET, &page_path(read, Some((&next, version))), None)
                .await?;
            if count(&page[field]) == 0 && !page["next"].is_null() {
                return Err(empty_page(path));
            }
            match (&mut answer[field], &page[field]) {
                (Value::Array(all), Value::Array(items)) => all.extend(items.iter().cloned()),
                (Value::Object(all), Value::Object(items)) => {
                    all.extend(items.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                _ => {
                    return Err(ClientError::Decode {
                        what: path.to_string(),
                        problem: format!("a page has no `{field}`"),
                    });
                }
            }
            answer["next"] = page["next"].clone();
        }
        Ok(answer)
    }
}

/// The administration routes, typed.
impl Client {
    /// `GET /v1/cluster/status` of the node that answers.
    pub async fn status(&self) -> Result<wire::StatusResponse, ClientError> {
        self.request::<(), _>(Method::GET, "/v1/cluster/status", None)
            .await
    }

    /// The content hash of the answering node's metadata.
    pub async fn hash(&self) -> Result<wire::HashResponse, ClientError> {
        self.request::<(), _>(Method::GET, "/v1/cluster/hash", None)
            .await
    }

    /// Founds a cluster of `members` (on a node that is in none).
    pub async fn init(
        &self,
        members: &[wire::MemberSpec],
    ) -> Result<wire::InitResponse, ClientError> {
        self.request(Method::POST, "/v1/cluster/init", Some(&members))
            .await
    }

    /// Adds (or moves) a learner and waits for it as asked.
    pub async fn add_learner(
        &self,
        learner: &wire::LearnerRequest,
    ) -> Result<wire::LearnerResponse, ClientError> {
        self.request(Method::POST, "/v1/cluster/learners", Some(learner))
            .await
    }

    /// Removes a member (learner or voter).
    pub async fn remove_member(
        &self,
        id: u64,
        force: bool,
    ) -> Result<wire::RemoveMemberResponse, ClientError> {
        let path = format!("/v1/cluster/members/{id}?force={force}");
        self.request::<(), _>(Method::DELETE, &path, None).await
    }

    /// Sets the voters.
    pub async fn change_membership(
        &self,
        change: &wire::MembershipRequest,
    ) -> Result<wire::MembershipResponse, ClientError> {
        self.request(Method::POST, "/v1/cluster/membership", Some(change))
            .await
    }

    /// The raised space alarms and the data's size.
    pub async fn alarms(&self) -> Result<wire::AlarmsResponse, ClientError> {
        self.request::<(), _>(Method::GET, "/v1/cluster/alarms", None)
            .await
    }

    /// Clears every space alarm.
    pub async fn clear_alarms(&self) -> Result<wire::OkResponse, ClientError> {
        self.request::<(), _>(Method::DELETE, "/v1/cluster/alarms", None)
            .await
    }

    /// The whole cluster map (every page).
    pub async fn nodes(&self) -> Result<wire::NodesPage, ClientError> {
        let all = self
            .pages("/v1/cluster/nodes?", "nodes", usize::MAX)
            .await?;
        from_value("/v1/cluster/nodes", all)
    }

    /// Adds or replaces a node of the cluster map.
    pub async fn set_node(
        &self,
        id: u64,
        node: &wire::NodeRequest,
    ) -> Result<wire::ClusterNode, ClientError> {
        let path = format!("/v1/cluster/nodes/{id}");
        self.request(Method::PUT, &path, Some(node)).await
    }

    /// Adds or replaces a node of the cluster map, bound to a lease: it is
    /// marked down when the lease ends.
    pub async fn set_node_with_lease(
        &self,
        id: u64,
        node: &wire::NodeRequest,
        lease: u64,
    ) -> Result<wire::ClusterNode, ClientError> {
        let path = format!("/v1/cluster/nodes/{id}?lease={lease}");
        self.request(Method::PUT, &path, Some(node)).await
    }

    /// Removes a node of the cluster map.
    pub async fn remove_node(&self, id: u64) -> Result<wire::OkResponse, ClientError> {
        let path = format!("/v1/cluster/nodes/{id}");
        self.request::<(), _>(Method::DELETE, &path, None).await
    }

    /// The whole shard map, every page at one version.
    pub async fn shards(&self) -> Result<wire::ShardsPage, ClientError> {
        let all = self.pages("/v1/shards?", "shards", usize::MAX).await?;
        from_value("/v1/shards", all)
    }

    /// Replaces the shard map if it is still at `expected_version`.
    pub async fn set_shards(
        &self,
        request: &wire::ShardsRequest,
    ) -> Result<wire::ShardsResponse, ClientError> {
        self.request(Method::PUT, "/v1/shards", Some(request)).await
    }

    /// Creates an API key; the answer holds its token, shown once.
    pub async fn create_api_key(
        &self,
        request: &wire::ApiKeyRequest,
    ) -> Result<wire::ApiKeyCreated, ClientError> {
        self.request(Method::POST, "/v1/apikeys", Some(request))
            .await
    }

    /// Every API key (every page), never their secrets.
    pub async fn api_keys(&self) -> Result<wire::ApiKeysPage, ClientError> {
        let all = self.pages("/v1/apikeys?", "api_keys", usize::MAX).await?;
        from_value("/v1/apikeys", all)
    }

    /// Revokes an API key.
    pub async fn revoke_api_key(&self, id: &str) -> Result<wire::OkResponse, ClientError> {
        let path = format!("/v1/apikeys/{}", encode_path(id));
        self.request::<(), _>(Method::DELETE, &path, None).await
    }

    /// Checks a presented key.
    pub async fn verify_api_key(
        &self,
        request: &wire::VerifyRequest,
    ) -> Result<wire::VerifyResponse, ClientError> {
        self.request(Method::POST, "/v1/apikeys/verify", Some(request))
            .await
    }

    /// A config entry; `None` if there is none.
    pub async fn config(&self, name: &str) -> Result<Option<String>, ClientError> {
        let path = format!("/v1/config/{}", encode_path(name));
        match self
            .request::<(), wire::ConfigEntry>(Method::GET, &path, None)
            .await
        {
            Ok(entry) => Ok(Some(entry.value)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sets a config entry (UTF-8 text).
    pub async fn set_config(
        &self,
        name: &str,
        value: &str,
    ) -> Result<wire::OkResponse, ClientError> {
        let path = format!("/v1/config/{}", encode_path(name));
        let request = Request {
            method: Method::PUT,
            path: &path,
            body: Some(Body::Bytes(value.as_bytes().to_vec())),
            headers: Vec::new(),
            stream: false,
        };
        decode(&path, self.send(&request).await?).await
    }

    /// Deletes a config entry.
    pub async fn delete_config(&self, name: &str) -> Result<wire::OkResponse, ClientError> {
        let path = format!("/v1/config/{}", encode_path(name));
        self.request::<(), _>(Method::DELETE, &path, None).await
    }

    /// Every config entry (every page).
    pub async fn config_all(&self) -> Result<wire::ConfigPage, ClientError> {
        let all = self.pages("/v1/config?", "config", usize::MAX).await?;
        from_value("/v1/config", all)
    }
}

fn from_value<T: DeserializeOwned>(what: &str, value: Value) -> Result<T, ClientError> {
    serde_json::from_value(value).map_err(|e| ClientError::Decode {
        what: what.to_string(),
        problem: e.to_string(),
    })
}

/// A page with nothing on it but a cursor: a node that would keep the
/// client paging forever.
fn empty_page(what: &str) -> ClientError {
    ClientError::Decode {
        what: what.to_string(),
        problem: "a page with no items names a next page".into(),
    }
}

/// Most items one page may ask for (the server's limit).
pub const MAX_PAGE_ITEMS: usize = 10_000;

fn stale_query(consistency: Consistency, sep: char) -> String {
    match consistency {
        Consistency::Stale => format!("{sep}stale=true"),
        Consistency::Linearizable => String::new(),
    }
}

/// Decodes a successful answer.
async fn decode<T: DeserializeOwned>(
    what: &str,
    response: reqwest::Response,
) -> Result<T, ClientError> {
    let bytes = response.bytes().await.map_err(|e| ClientError::Decode {
        what: what.to_string(),
        problem: e.to_string(),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
        what: what.to_string(),
        // A bounded excerpt: an answer may be large, or hold a secret.
        problem: format!(
            "{e}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(256)])
        ),
    })
}

/// The error an unsuccessful answer carries.
async fn api_error(response: reqwest::Response) -> ClientError {
    let status = response.status();
    let bytes = response.bytes().await.unwrap_or_default();
    match serde_json::from_slice::<ErrorResponse>(&bytes) {
        Ok(e) if e.error.code == "outcome_unknown" => ClientError::OutcomeUnknown {
            status: status.as_u16(),
            message: e.error.message,
        },
        Ok(e) => ClientError::Api {
            status: status.as_u16(),
            error: e.error,
        },
        Err(_) => ClientError::Decode {
            what: format!("an HTTP {status} answer"),
            problem: format!(
                "not an API error: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(512)])
            ),
        },
    }
}

/// Whether the host of `url` is a loopback address (or `localhost`).
fn is_loopback(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    let host = url.host_str().unwrap_or("");
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A `reqwest` client builder for this crate's build of `reqwest` (TLS by
/// rustls with the *ring* provider, installed here as the process default
/// if none is). Use it instead of `reqwest::Client::builder()`.
pub fn http_builder() -> reqwest::ClientBuilder {
    // Fails only if a provider is installed already, which is as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// A query parameter's value, percent-encoded.
pub fn encode_query(value: &str) -> String {
    encode_path(value).replace('/', "%2F")
}

/// Percent-encodes a key for a URL path (keeps `/`, so nested keys read
/// naturally).
pub fn encode_path(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_checked_before_anything_is_sent() {
        let err = |b: ClientBuilder| b.build().unwrap_err().to_string();
        assert!(err(ClientBuilder::new(Vec::<String>::new())).contains("no endpoint"));
        assert!(err(ClientBuilder::new(["ftp://x:1"])).contains("must be host:port"));
        assert!(
            err(ClientBuilder::new([
                "http://127.0.0.1:1",
                "https://127.0.0.1:2"
            ]))
            .contains("same scheme")
        );
        assert!(err(ClientBuilder::new(["https://127.0.0.1:1"])).contains("cluster CA"));
        assert!(
            err(ClientBuilder::new(["10.1.2.3:7700"]).token("id.secret")).contains("plain http")
        );
        let ok = ClientBuilder::new(["127.0.0.1:7700", "localhost:7701/"])
            .token("id.secret")
            .build()
            .unwrap();
        assert_eq!(
            ok.endpoints(),
            ["http://127.0.0.1:7700", "http://localhost:7701"]
        );
    }

    #[test]
    fn keys_are_percent_encoded_for_paths_and_queries() {
        assert_eq!(encode_path("app/a b%"), "app/a%20b%25");
        assert_eq!(encode_query("app/a&b"), "app%2Fa%26b");
    }
}
