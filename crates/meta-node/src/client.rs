//! A small HTTP client for the node's API, used by the CLI. It follows
//! the leader redirects followers answer with.

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::Value;

/// Talks to one node's client API.
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client of the node at `base` (`http://host:port`).
    pub fn new(base: &str) -> anyhow::Result<Client> {
        let base = base.trim_end_matches('/').to_string();
        if !base.starts_with("http://") {
            bail!("--addr must be an http:// URL, got `{base}`");
        }
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        Ok(Client { base, http })
    }

    /// Sends a request and returns the JSON answer, or the API's error as
    /// `code: message`.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{}", self.base, path);
        let mut request = self.http.request(method.clone(), &url);
        request = match body {
            Some(Body::Json(v)) => request.json(&v),
            Some(Body::Text(t)) => request.body(t),
            None => request,
        };
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url}: is a meta-node running there?"))?;
        let status = response.status();
        let text = response.text().await.context("reading the answer")?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(value);
        }
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

/// A request body.
pub enum Body {
    /// JSON.
    Json(Value),
    /// Raw text (values of `kv put` and `config set`).
    Text(String),
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
