//! Who may call what: the authorization middleware every route goes
//! through ([`authorize`]: the route's need from [`crate::auth::routes`],
//! deny by default), bearer-token authentication against the API keys
//! and the one-time init token ([`AuthState`]), and the finer `kv` check
//! handlers make per key ([`require_kv`]).

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use axum::extract::{MatchedPath, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use meta_raft::ApiKeyCheck;

use super::{ApiError, ApiResult, ApiState, now_ms};
use crate::auth::{self, Principal, Scope, Token};

/// How the API authenticates its callers.
#[derive(Debug)]
pub struct AuthState {
    /// `insecure = true`: no authentication at all.
    pub insecure: bool,
    /// The node's data directory (where `cluster init` writes the root
    /// token).
    pub data_dir: PathBuf,
    init_token: Mutex<Option<Token>>,
    /// One `cluster init` at a time.
    pub(super) init_lock: tokio::sync::Mutex<()>,
}

impl AuthState {
    /// Authentication as configured; `init_token` authorises only `cluster
    /// init`, and only until this node is part of a cluster.
    pub fn new(insecure: bool, data_dir: PathBuf, init_token: Option<Token>) -> AuthState {
        AuthState {
            insecure,
            data_dir,
            init_token: Mutex::new(init_token),
            init_lock: tokio::sync::Mutex::new(()),
        }
    }

    fn init_token_matches(&self, presented: &Token) -> bool {
        self.init_token
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|t| t.id == presented.id && presented.secret.matches(&t.secret.hash()))
    }

    /// Forgets the init token (the node is now part of a cluster).
    pub fn retire_init_token(&self) {
        *self
            .init_token
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        let _ = std::fs::remove_file(self.data_dir.join(auth::INIT_TOKEN_FILE));
    }
}

/// Who is calling, from the `Authorization` header. Never echoes a secret.
async fn authenticate(state: &ApiState, headers: &HeaderMap) -> ApiResult<Principal> {
    if state.auth.insecure {
        return Ok(Principal::Anyone);
    }
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Err(ApiError::unauthenticated(
            "missing credentials: send `Authorization: Bearer <id>.<secret>` \
             (a new node's admin token is in <data_dir>/root.token)",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .and_then(Token::parse)
        .ok_or_else(|| {
            ApiError::unauthenticated(
                "malformed credentials: expected `Authorization: Bearer <id>.<secret>`",
            )
        })?;
    if token.id.0 == auth::INIT_KEY_ID && state.auth.init_token_matches(&token) {
        // Spent once the node is part of a cluster (it may have joined one
        // as a learner, without `cluster init`).
        if state.raft.is_initialized().await.unwrap_or(true) {
            state.auth.retire_init_token();
            return Err(ApiError::unauthenticated(
                "the init token is spent: this node is part of a cluster",
            ));
        }
        return Ok(Principal::Init);
    }
    match state
        .reader
        .authenticate(&token.id, &token.secret, now_ms())
    {
        Ok(key) => Ok(Principal::Key {
            scopes: key
                .scopes
                .iter()
                .filter_map(|s| Scope::parse(s).ok())
                .collect(),
            expires_at_ms: key.expires_at_ms,
            id: token.id,
        }),
        Err(ApiKeyCheck::Revoked) => Err(ApiError::unauthenticated(format!(
            "API key `{}` is revoked",
            token.id
        ))),
        Err(ApiKeyCheck::Expired) => Err(ApiError::unauthenticated(format!(
            "API key `{}` has expired",
            token.id
        ))),
        Err(_) => Err(ApiError::unauthenticated(
            "invalid API key (unknown id or wrong secret)",
        )),
    }
}

/// The authorization middleware: looks the matched route up in
/// [`auth::routes`] (a route missing there is refused: deny by default),
/// authenticates the caller and checks the route's need. The handler gets
/// the [`Principal`] for finer checks (a `kv` key under a prefix).
pub(super) async fn authorize(
    State(state): State<ApiState>,
    matched: Option<MatchedPath>,
    mut request: axum::extract::Request,
    next: Next,
) -> Response {
    let Some(path) = matched else {
        return next.run(request).await;
    };
    let method = if request.method() == Method::HEAD {
        Method::GET
    } else {
        request.method().clone()
    };
    let Some(need) = auth::need(&method, path.as_str()) else {
        return ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("{method} is not allowed on {}", path.as_str()),
        )
        .into_response();
    };
    if *need == auth::Need::Public {
        return next.run(request).await;
    }
    let principal = match authenticate(&state, request.headers()).await {
        Ok(principal) => principal,
        Err(e) => return e.into_response(),
    };
    if !need.allows(&principal) {
        return ApiError::permission_denied(format!(
            "this key may not call {method} {} (it needs {})",
            path.as_str(),
            need.describe()
        ))
        .into_response();
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// The handler-level check of `kv` routes: the exact key (or list prefix).
pub(crate) fn require_kv(principal: &Principal, write: bool, key: &str) -> ApiResult<()> {
    if principal.may(&auth::kv_scope(write, key)) {
        return Ok(());
    }
    let access = if write { "write" } else { "read" };
    Err(ApiError::permission_denied(format!(
        "this key may not {access} `{key}`: no `kv:{access}` scope of it covers that key"
    )))
}
