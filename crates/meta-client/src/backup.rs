//! Online backups (`GET /v1/snapshot`) and leader transfer: what an
//! operator asks of a running cluster.

use reqwest::Method;

use crate::client::{Client, Consistency};
use crate::error::ClientError;
use crate::wire;

/// An online backup being downloaded: the metadata as of one applied log
/// entry, in the portable snapshot format (checksummed per block and as a
/// whole, so a cut or damaged download is detected when it is read).
#[derive(Debug)]
pub struct Backup {
    response: reqwest::Response,
    /// The log index the backup was taken at.
    pub applied_index: u64,
    /// The term of that entry.
    pub applied_term: u64,
    /// The store's revision it holds.
    pub revision: u64,
}

impl Backup {
    /// The next bytes of the file; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Vec<u8>>, ClientError> {
        self.response
            .chunk()
            .await
            .map(|c| c.map(|b| b.to_vec()))
            .map_err(|e| ClientError::Decode {
                what: "the backup stream".into(),
                problem: e.to_string(),
            })
    }
}

fn header(response: &reqwest::Response, name: &str) -> u64 {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Client {
    /// Starts an online backup (`admin`): read it with [`Backup::chunk`].
    /// [`Consistency::Linearizable`] holds everything acknowledged before
    /// the call (the leader serves it, after a read index);
    /// [`Consistency::Stale`] is what the node this client reaches first
    /// applied (the way out of a lost quorum).
    pub async fn backup(&self, consistency: Consistency) -> Result<Backup, ClientError> {
        let path = match consistency {
            Consistency::Linearizable => "/v1/snapshot",
            Consistency::Stale => "/v1/snapshot?stale=true",
        };
        let response = self.stream(Method::GET, path, Vec::new()).await?;
        Ok(Backup {
            applied_index: header(&response, wire::APPLIED_INDEX_HEADER),
            applied_term: header(&response, wire::APPLIED_TERM_HEADER),
            revision: header(&response, wire::REVISION_HEADER),
            response,
        })
    }

    /// Hands leadership to voter `to` (`admin`); answers once it leads.
    pub async fn transfer_leader(
        &self,
        to: u64,
    ) -> Result<wire::TransferLeaderResponse, ClientError> {
        self.request(
            Method::POST,
            "/v1/cluster/leader",
            Some(&wire::TransferLeaderRequest { to }),
        )
        .await
    }
}
