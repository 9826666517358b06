//! The node's own credentials on disk: the root token a bootstrapping node
//! (or `cluster init`, or `auth reset-root`) creates, and the one-time init
//! token of a node waiting for `cluster init`.
//!
//! The root token is written to `<data_dir>/root.token` (`0600`) *before*
//! the key is proposed, and a keeper task proposes the key whenever this
//! node leads and the store does not have it yet. So a crash between the
//! two, or a leadership change, only delays the key; it never loses it.

use std::path::Path;
use std::time::{Duration, Instant};

use meta_raft::model::{ApiKeyRecord, Command};
use meta_raft::{MetadataReader, Rejection, Response};
use tokio::task::JoinHandle;

use crate::auth::Token;
use crate::error::NodeError;
use crate::files;
use crate::http::ApiState;

/// Reads a token file (`<id>.<secret>`), `None` if it does not exist.
pub fn read_token(path: &Path) -> Result<Option<Token>, NodeError> {
    let Some(text) = files::read_optional(path)? else {
        return Ok(None);
    };
    Token::parse(&text).map(Some).ok_or_else(|| {
        NodeError::io(
            format!("reading {}", path.display()),
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not a token (expected `<id>.<secret>`)",
            ),
        )
    })
}

/// The token in `path`, or a new one for key `id` written there (`0600`).
pub fn load_or_create_token(path: &Path, id: &str) -> Result<Token, NodeError> {
    if let Some(token) = read_token(path)? {
        return Ok(token);
    }
    let token = Token::generate(id).map_err(|e| {
        NodeError::io(
            "generating a token",
            std::io::Error::other(format!("no randomness: {e}")),
        )
    })?;
    files::write_private(path, format!("{}\n", token.expose()).as_bytes())?;
    Ok(token)
}

/// `auth reset-root`: writes a new admin token, under a new key id, to
/// `<data_dir>/root.token` of a stopped node; the node installs the key
/// when it next leads. Filesystem access to a node is trust.
pub fn reset_root(data_dir: &Path) -> Result<std::path::PathBuf, NodeError> {
    if !data_dir.join(crate::identity::IDENTITY_FILE).exists() {
        return Err(NodeError::io(
            format!("resetting the root token in {}", data_dir.display()),
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "not a node's data directory (no identity.toml); pass --data-dir",
            ),
        ));
    }
    let mut suffix = [0u8; 4];
    getrandom::fill(&mut suffix)
        .map_err(|e| NodeError::io("generating a key id", std::io::Error::other(e.to_string())))?;
    let id = format!("{}-{}", crate::auth::ROOT_KEY_ID, hex::encode(suffix));
    let path = data_dir.join(crate::auth::ROOT_TOKEN_FILE);
    let token = Token::generate(&id)
        .map_err(|e| NodeError::io("generating a token", std::io::Error::other(e.to_string())))?;
    files::write_private(&path, format!("{}\n", token.expose()).as_bytes())?;
    Ok(path)
}

fn has_key(reader: &MetadataReader, token: &Token) -> bool {
    reader.api_keys().iter().any(|k| k.id == token.id)
}

/// Proposes an `admin` key for `token` whenever this node leads, until the
/// store has a key of that id (whatever its state: a revoked root key is
/// never re-created).
pub fn keep_root_key(state: ApiState, token: Token) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if has_key(&state.reader, &token) {
                return;
            }
            let leads = state.raft.metrics().borrow().current_leader == Some(state.node_id);
            if leads {
                let record = ApiKeyRecord {
                    id: token.id.clone(),
                    name: "root credential (root.token)".into(),
                    scopes: vec!["admin".into()],
                    created_at_ms: crate::http::now_ms(),
                    expires_at_ms: None,
                    revoked_at_ms: None,
                    secret_hash: token.secret.hash(),
                };
                match state.proposer.propose(Command::CreateApiKey(record)).await {
                    Ok(Response::Applied { .. })
                    | Ok(Response::Rejected(Rejection::DuplicateApiKey { .. })) => {
                        tracing::info!("installed the root API key `{}`", token.id);
                        return;
                    }
                    Ok(other) => tracing::debug!("root key proposal answered {other:?}"),
                    Err(e) => tracing::debug!("root key proposal: {e}"),
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// Waits up to `timeout` until the store holds a key for `token`.
pub async fn wait_for_key(reader: &MetadataReader, token: &Token, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if has_key(reader, token) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    has_key(reader, token)
}
