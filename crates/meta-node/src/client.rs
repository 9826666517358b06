//! A small HTTP(S) client for the node's API, used by the CLI.
//!
//! It sends the bearer token it was given, and follows a follower's
//! redirect to the leader only if the target is the client API address of
//! a member of the cluster (as the contacted node reports it) and keeps the
//! scheme: a token never goes to a host that is not a member.

use anyhow::{Context, bail};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::auth::Token;

/// Redirects followed for one request, at most.
const MAX_REDIRECTS: usize = 3;

/// Talks to one node's client API.
pub struct Client {
    base: String,
    http: reqwest::Client,
    token: Option<Token>,
}

impl Client {
    /// A client of the node at `base` (`http://host:port` or
    /// `https://host:port`, the latter verified against `ca`).
    pub fn new(
        base: &str,
        token: Option<Token>,
        ca: Option<&std::path::Path>,
    ) -> anyhow::Result<Client> {
        let base = base.trim_end_matches('/').to_string();
        let mut builder = http_builder()
            .timeout(std::time::Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none());
        if base.starts_with("https://") {
            let ca = ca.context(
                "an https:// --addr needs the cluster CA: pass --ca FILE (or META_CA), \
                 or run where <data-dir>/tls/ca.pem exists",
            )?;
            builder = builder
                .tls_backend_preconfigured(crate::tls::https_client_config(ca)?)
                .https_only(true);
        } else if !base.starts_with("http://") {
            bail!("--addr must be an http:// or https:// URL, got `{base}`");
        } else if token.is_some() && !is_loopback(&base) {
            // A token in plaintext across a network is a token given away.
            bail!(
                "refusing to send a token over plain http:// to `{base}`, which is not a \
                 loopback address: use https:// (the node needs [tls])"
            );
        }
        let http = builder.build().context("building the HTTP client")?;
        Ok(Client { base, http, token })
    }

    async fn send(
        &self,
        method: &Method,
        url: &str,
        body: Option<&Body>,
        headers: &[(&str, String)],
    ) -> anyhow::Result<reqwest::Response> {
        let mut request = self.http.request(method.clone(), url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        request = match body {
            Some(Body::Json(v)) => request.json(v),
            Some(Body::Text(t)) => request.body(t.clone()),
            Some(Body::Bytes(b)) => request
                .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
                .body(b.clone()),
            None => request,
        };
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        request.send().await.with_context(|| {
            format!(
                "{method} {url}: is a meta-node running there? (a node with [tls] \
                     serves https://, and needs --ca)"
            )
        })
    }

    /// Whether `location` is a member's client API address (same scheme as
    /// ours, no user info), according to the node we were given.
    async fn is_member_api(&self, location: &str) -> anyhow::Result<bool> {
        let (Ok(base), Ok(target)) = (
            reqwest::Url::parse(&self.base),
            reqwest::Url::parse(location),
        ) else {
            return Ok(false);
        };
        let Some(host) = target.host_str().filter(|h| !h.is_empty()) else {
            return Ok(false);
        };
        if target.scheme() != base.scheme()
            || !target.username().is_empty()
            || target.password().is_some()
        {
            return Ok(false);
        }
        let port = target.port_or_known_default().unwrap_or(0);
        let authority = format!("{host}:{port}");
        let status = self
            .send(
                &Method::GET,
                &format!("{}/v1/cluster/status", self.base),
                None,
                &[],
            )
            .await?;
        if !status.status().is_success() {
            return Ok(false);
        }
        let status: Value = status.json().await.context("reading the cluster status")?;
        Ok(status["members"].as_object().is_some_and(|members| {
            members
                .values()
                .any(|m| m["api"].as_str() == Some(authority.as_str()))
        }))
    }

    /// GETs the pages of a listing at `path` (which ends in `?` or a
    /// query), up to `max_items` items of `field` (an array, or an object
    /// such as the shard map), following each page's `next`; a shard map is
    /// read at the version of its first page (409 if it changed meanwhile).
    /// The answer is the first page's, with `field` holding every item read
    /// and `next` the cursor after them (null once everything was read).
    pub async fn get_all(
        &self,
        path: &str,
        field: &str,
        max_items: usize,
    ) -> anyhow::Result<Value> {
        let sep = if path.ends_with('?') { "" } else { "&" };
        let page_path = |read: usize, after: Option<(&str, Option<u64>)>| {
            let mut p = format!(
                "{path}{sep}limit={}",
                (max_items - read).min(crate::api::MAX_LIST)
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
        let mut answer = self.call(Method::GET, &page_path(0, None), None).await?;
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
                .call(Method::GET, &page_path(read, Some((&next, version))), None)
                .await?;
            match (&mut answer[field], &page[field]) {
                (Value::Array(all), Value::Array(items)) => all.extend(items.iter().cloned()),
                (Value::Object(all), Value::Object(items)) => {
                    all.extend(items.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
                _ => bail!("a page of {path} has no `{field}`"),
            }
            answer["next"] = page["next"].clone();
        }
        Ok(answer)
    }

    /// Sends a request and returns the JSON answer, or the API's error as
    /// `code: message`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> anyhow::Result<Value> {
        let bytes = self.call_with(method, path, body, &[]).await?;
        let text = String::from_utf8_lossy(&bytes);
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text.into_owned())))
    }

    /// [`call`](Self::call) with extra request headers, answering the
    /// body's bytes as they came.
    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
        headers: &[(&str, String)],
    ) -> anyhow::Result<Vec<u8>> {
        let mut url = format!("{}{}", self.base, path);
        let mut response = self.send(&method, &url, body.as_ref(), headers).await?;
        for _ in 0..MAX_REDIRECTS {
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
            if !self.is_member_api(&location).await? {
                bail!(
                    "refusing to follow a redirect to {location}: it is not the client API \
                     address of a cluster member (credentials are only sent to members)"
                );
            }
            url = location;
            response = self.send(&method, &url, body.as_ref(), headers).await?;
        }
        let status = response.status();
        let bytes = response.bytes().await.context("reading the answer")?;
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        let text = String::from_utf8_lossy(&bytes);
        let value: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.into_owned()));
        match value.pointer("/error/code").and_then(Value::as_str) {
            Some(code) => {
                let message = value
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                bail!("{code}: {message} (HTTP {status})")
            }
            None => bail!("HTTP {status}: {value}"),
        }
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

/// A request body.
pub enum Body {
    /// JSON.
    Json(Value),
    /// Raw text (values of `config set`).
    Text(String),
    /// Raw bytes (values of `kv put`).
    Bytes(Vec<u8>),
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
