//! The API's errors: one JSON shape (`{"error": {"code", "message"}}`)
//! with stable codes, for handlers' errors, refused commands and axum's own
//! rejections.

use super::*;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) code: &'static str,
    pub(super) message: String,
    pub(super) leader: Option<Box<(u64, NodeAddr)>>,
    pub(super) location: Option<String>,
    /// More fields of the error object (`mod_revision` on a failed
    /// precondition).
    pub(super) extra: Vec<(&'static str, Value)>,
    /// The store's revision, for the `revision` field and the
    /// `X-Meta-Revision` header (answers about user keys).
    pub(super) revision: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            leader: None,
            location: None,
            extra: Vec::new(),
            revision: None,
        }
    }

    /// Says the store's revision (field and header).
    pub(crate) fn at_revision(mut self, revision: u64) -> Self {
        self.revision = Some(revision);
        self
    }

    /// Adds a field to the error object.
    pub(crate) fn with(mut self, field: &'static str, value: impl Serialize) -> Self {
        self.extra.push((field, json!(value)));
        self
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    pub(crate) fn unauthenticated(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub(crate) fn permission_denied(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "permission_denied", message)
    }

    /// Sends the client to the leader, or says there is none.
    pub(crate) fn not_leader(
        state: &ApiState,
        leader_id: Option<u64>,
        leader: Option<NodeAddr>,
        uri: &OriginalUri,
    ) -> Self {
        match (leader_id, leader) {
            (Some(id), Some(node)) if !node.api.is_empty() => {
                let path = uri.0.path_and_query().map_or("/", |p| p.as_str());
                ApiError {
                    location: Some(format!("{}://{}{}", state.scheme, node.api, path)),
                    leader: Some(Box::new((id, node))),
                    ..ApiError::new(
                        StatusCode::TEMPORARY_REDIRECT,
                        "not_leader",
                        "this node is not the leader; retry on the leader",
                    )
                }
            }
            _ if crate::transport::in_no_cluster(&state.raft) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_leader",
                "this node is in no cluster yet: found one with `meta-node cluster init \
                     ID=RAFT_ADDR,API_ADDR ...` (the token is in its data directory's init.token), \
                     or add it to a running one with `meta-node cluster add-learner`",
            ),
            _ => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_leader",
                "no leader is known right now; retry shortly",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": {"code": self.code, "message": self.message}});
        if let Some((id, node)) = self.leader.as_deref() {
            body["error"]["leader"] = json!({"id": id, "api": node.api});
        }
        for (field, value) in self.extra {
            body["error"][field] = value;
        }
        if let Some(revision) = self.revision {
            body["error"]["revision"] = json!(revision);
        }
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        if let Some(location) = self.location.and_then(|l| l.parse().ok()) {
            response.headers_mut().insert(header::LOCATION, location);
        }
        if let Some(revision) = self.revision {
            response.headers_mut().insert(
                header::HeaderName::from_static(meta_client::wire::REVISION_HEADER),
                header::HeaderValue::from(revision),
            );
        }
        response
    }
}

impl From<BytesRejection> for ApiError {
    fn from(e: BytesRejection) -> Self {
        let text = e.body_text();
        if text.contains(crate::http::server::BODY_TIMED_OUT) {
            return ApiError::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", text);
        }
        let status = e.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "payload_too_large"
        } else {
            "bad_request"
        };
        ApiError::new(status, code, text)
    }
}

pub(crate) fn rejection(r: Rejection) -> ApiError {
    let code = match &r {
        Rejection::StaleShardMapVersion { .. } => "stale_version",
        Rejection::CasMismatch { .. } => "cas_mismatch",
        Rejection::UnknownNode { .. } => "unknown_node",
        Rejection::NodeInUse { .. } => "node_in_use",
        Rejection::DuplicateApiKey { .. } => "duplicate_api_key",
        Rejection::UnknownApiKey { .. } => "not_found",
        Rejection::InvalidKey { .. } => "invalid_key",
        Rejection::ValueTooLarge { .. } => "payload_too_large",
        Rejection::UnsupportedEnvelope { .. } | Rejection::Malformed { .. } => "bad_request",
        Rejection::NoSpace { .. } => "quota_exceeded",
        Rejection::LeaseNotFound { .. } => "lease_not_found",
        Rejection::LeaseFull { .. } => "lease_full",
        Rejection::TooManyLeases { .. } => "too_many_leases",
    };
    let status = match code {
        "not_found" | "lease_not_found" => StatusCode::NOT_FOUND,
        "quota_exceeded" => StatusCode::INSUFFICIENT_STORAGE,
        "invalid_key" | "bad_request" => StatusCode::BAD_REQUEST,
        "payload_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::CONFLICT,
    };
    ApiError::new(status, code, r.to_string())
}

/// A handler's answer.
pub(crate) type ApiResult<T = Json<Value>> = Result<T, ApiError>;

/// Turns axum's own plain-text rejections (a bad path parameter, a bad
/// query string, a wrong method) into the API's JSON error shape.
pub(super) async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let text = axum::body::to_bytes(response.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        s if s.is_client_error() => "bad_request",
        _ => "internal",
    };
    let mut message = String::from_utf8_lossy(&text).into_owned();
    if message.is_empty() {
        message = status.canonical_reason().unwrap_or("error").to_lowercase();
    }
    ApiError::new(status, code, message).into_response()
}

pub(super) async fn fallback(uri: OriginalUri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.0.path()))
}
