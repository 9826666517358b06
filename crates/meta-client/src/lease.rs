//! Leases and locks on the typed client.
//!
//! A lease lives `ttl_secs` after its last keepalive, as the leader
//! counts; what is bound to it (keys, cluster nodes) ends with it.
//! [`Client::keep_alive`] keeps one alive until it is lost. A [`Lock`] is
//! a key bound to a lease, created by a transaction only if the key does
//! not exist: at most one holder at a time, and a holder that dies
//! releases it when its lease expires.

use std::time::Duration;

use reqwest::Method;

use crate::client::Client;
use crate::error::ClientError;
use crate::watch::{WatchMessage, WatchRequest};
use crate::wire;

/// A held lock: its key, bound to `lease` (keep the lease alive while
/// holding it; [`Client::unlock`] or the lease's end releases it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lock {
    /// The lock's key.
    pub key: String,
    /// The lease holding it.
    pub lease: u64,
    /// The revision it was taken at (a fencing token: it grows with every
    /// new holder).
    pub revision: u64,
}

/// How often a lease of `ttl_secs` is kept alive: three times per TTL.
pub(crate) fn keepalive_every(ttl_secs: u64) -> Duration {
    Duration::from_millis(ttl_secs.saturating_mul(1000) / 3).max(Duration::from_millis(100))
}

impl Client {
    /// `POST /v1/leases`: a new lease of `ttl_secs` seconds.
    pub async fn grant_lease(&self, ttl_secs: u64) -> Result<wire::LeaseResponse, ClientError> {
        let body = wire::LeaseGrantRequest { ttl_secs };
        self.request(Method::POST, "/v1/leases", Some(&body)).await
    }

    /// `POST /v1/leases/{id}/keepalive`: the lease gets its full TTL again.
    pub async fn keep_alive_once(&self, id: u64) -> Result<wire::LeaseResponse, ClientError> {
        let path = format!("/v1/leases/{id}/keepalive");
        self.request::<(), _>(Method::POST, &path, None).await
    }

    /// `GET /v1/leases/{id}`: the lease, its time left and what is bound to
    /// it; `None` if it does not exist.
    pub async fn lease(&self, id: u64) -> Result<Option<wire::LeaseResponse>, ClientError> {
        let path = format!("/v1/leases/{id}");
        match self.request::<(), _>(Method::GET, &path, None).await {
            Ok(lease) => Ok(Some(lease)),
            Err(e) if e.code() == Some("lease_not_found") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /v1/leases`: every live lease.
    pub async fn leases(&self) -> Result<wire::LeasesResponse, ClientError> {
        self.request::<(), _>(Method::GET, "/v1/leases", None).await
    }

    /// `DELETE /v1/leases/{id}`: ends the lease now, deleting its keys and
    /// marking its nodes down, at one revision.
    pub async fn revoke_lease(&self, id: u64) -> Result<wire::WriteResponse, ClientError> {
        let path = format!("/v1/leases/{id}");
        self.request::<(), _>(Method::DELETE, &path, None).await
    }

    /// Keeps lease `id` (of `ttl_secs`) alive three times per TTL until it
    /// is lost, and says why: it no longer exists, or no keepalive got
    /// through for nine tenths of a TTL (failed attempts are retried
    /// meanwhile; each one ends when the lease would).
    /// Run it beside the work the lease guards, and stop that work when it
    /// returns.
    pub async fn keep_alive(&self, id: u64, ttl_secs: u64) -> ClientError {
        let every = keepalive_every(ttl_secs);
        let ttl = Duration::from_secs(ttl_secs);
        // Counted from when the last successful keepalive was *sent*: the
        // leader restarted the TTL no earlier. Given up a tenth of the TTL
        // early, so the guarded work stops before anyone else may start.
        let mut lease_ends = tokio::time::Instant::now() + ttl;
        let margin = ttl / 10;
        loop {
            tokio::time::sleep(every).await;
            loop {
                let sent = tokio::time::Instant::now();
                let give_up = lease_ends.checked_sub(margin).unwrap_or(sent);
                if sent >= give_up {
                    return ClientError::Config(format!(
                        "lease {id} is lost: no keepalive got through for its whole TTL \
                         ({ttl_secs} s)"
                    ));
                }
                match tokio::time::timeout_at(give_up, self.keep_alive_once(id)).await {
                    Ok(Ok(_)) => {
                        lease_ends = sent + ttl;
                        break;
                    }
                    Ok(Err(e)) if e.code() == Some("lease_not_found") => return e,
                    Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(200)).await,
                    // The loop's first check gives up.
                    Err(_) => {}
                }
            }
        }
    }

    /// Takes the lock `key`: waits until no one holds it, then binds it to
    /// a new lease of `ttl_secs` (kept alive while waiting). Keep
    /// [`Lock::lease`] alive while holding the lock ([`keep_alive`](Self::keep_alive)).
    pub async fn lock(&self, key: &str, ttl_secs: u64) -> Result<Lock, ClientError> {
        let lease = self.grant_lease(ttl_secs).await?.id;
        let every = keepalive_every(ttl_secs);
        loop {
            let txn = wire::TxnRequest {
                compare: vec![wire::Compare::new(
                    key,
                    wire::CompareOp::Equal,
                    wire::CompareTarget::Exists(false),
                )],
                success: vec![wire::TxnOp::put_leased(
                    key,
                    lease.to_string().as_bytes(),
                    lease,
                )],
                failure: vec![wire::TxnOp::get(key)],
            };
            let done = self.txn(&txn).await?;
            if done.succeeded {
                return Ok(Lock {
                    key: key.to_string(),
                    lease,
                    revision: done.revision,
                });
            }
            // Held: wait for the key's deletion, keeping our lease alive.
            let request = WatchRequest::kv_key(key).from_revision(done.revision + 1);
            let mut watch = self.watch(request);
            let mut due = tokio::time::Instant::now() + every;
            loop {
                match tokio::time::timeout_at(due, watch.next()).await {
                    Ok(Ok(WatchMessage::Event(e))) if e.kind == wire::EventType::Delete => break,
                    Ok(Ok(_)) => {}
                    // History gone: try again from the current state.
                    Ok(Err(e)) if e.is_compacted() => break,
                    Ok(Err(e)) => return Err(e),
                    Err(_) => {
                        self.keep_alive_once(lease).await?;
                        due = tokio::time::Instant::now() + every;
                    }
                }
            }
        }
    }

    /// Releases a lock (revokes its lease).
    pub async fn unlock(&self, lock: &Lock) -> Result<(), ClientError> {
        self.revoke_lease(lock.lease).await.map(|_| ())
    }
}
