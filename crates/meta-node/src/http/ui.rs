//! The dashboard (`/ui/`): one page, one script, one style sheet, embedded
//! in the binary (no build step, no CDN: it works with no network). The
//! files hold no secret and are served to anyone; everything the page
//! shows it asks of the API with the token the user pastes, which it keeps
//! in the tab's `sessionStorage` (never in a URL). A strict Content
//! Security Policy allows nothing but these files and the node's own API.

use axum::Json;
use axum::extract::Extension;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use meta_client::wire;

use crate::auth::Principal;

const INDEX: &str = include_str!("../../ui/index.html");
const SCRIPT: &str = include_str!("../../ui/app.js");
const STYLE: &str = include_str!("../../ui/style.css");

/// Bytes of the dashboard's files (page, script, style sheet).
pub const SIZE: usize = INDEX.len() + SCRIPT.len() + STYLE.len();

/// What the dashboard may load and where it may connect: itself only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   connect-src 'self'; form-action 'none'; base-uri 'none'; \
                   frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// `GET /`: to the dashboard.
pub(super) async fn root() -> Redirect {
    Redirect::to("/ui/")
}

/// `GET /ui/`.
pub(super) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

/// `GET /ui/app.js`.
pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// `GET /ui/style.css`.
pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

/// `GET /v1/auth/whoami`: the calling key's id and scopes (what the
/// dashboard shows and offers).
pub(super) async fn whoami(Extension(principal): Extension<Principal>) -> Json<wire::WhoAmI> {
    Json(match principal {
        Principal::Key {
            id,
            scopes,
            expires_at_ms,
        } => wire::WhoAmI {
            id: id.to_string(),
            scopes: scopes.iter().map(ToString::to_string).collect(),
            expires_at_ms,
        },
        Principal::Anyone => wire::WhoAmI {
            id: "anyone (insecure node)".into(),
            scopes: vec!["admin".into()],
            expires_at_ms: None,
        },
        Principal::Init => wire::WhoAmI {
            id: "init".into(),
            scopes: Vec::new(),
            expires_at_ms: None,
        },
    })
}
